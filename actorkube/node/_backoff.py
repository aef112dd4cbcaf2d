"""Crash-loop backoff: how long the kubelet waits before it restarts a container that
exited (client-go's flowcontrol.Backoff, as the kubelet uses it).

Rules of this file:

- One entry per key (the pod uid, the container's name and its spec hash: a changed
  container starts over). ``next(key, now)`` is called when the container is
  restarted: the first restart waits ``initial`` (10 s), each later one twice the last,
  up to ``maximum`` (5 min).
- An entry not touched for ``2 * maximum`` (10 min) has expired: a container that ran
  that long since its last restart starts again at ``initial``.
- ``in_backoff_since(key, finished, now)``: a container that exited at ``finished``
  may not be restarted before ``finished + backoff``; ``remaining`` says how long is
  left. Times are wall-clock seconds (the actor system's clock: a container's
  ``finished_at`` is one), which follow trio's clock in simulations.
"""

from __future__ import annotations

import attrs

INITIAL = 10.0
MAXIMUM = 300.0


@attrs.define
class _Entry:
    backoff: float
    last_update: float


@attrs.define
class Backoff:
    initial: float = INITIAL
    maximum: float = MAXIMUM
    _entries: dict[tuple, _Entry] = attrs.field(factory=dict, init=False)

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.last_update > 2 * self.maximum

    def get(self, key: tuple, now: float) -> float:
        """The current backoff of ``key`` (0 when it has none or it expired)."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            return 0.0
        return entry.backoff

    def next(self, key: tuple, now: float) -> float:
        """Record a restart of ``key`` at ``now``; its new backoff."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry, now):
            entry = self._entries[key] = _Entry(self.initial, now)
        else:
            entry.backoff = min(entry.backoff * 2, self.maximum)
            entry.last_update = now
        return entry.backoff

    def remaining(self, key: tuple, finished: float, now: float) -> float:
        """Seconds before a container of ``key`` that exited at ``finished`` may be
        restarted (0: now): kubelet's IsInBackOffSince."""
        backoff = self.get(key, now)
        return max(0.0, finished + backoff - now) if backoff else 0.0

    def forget_key(self, key: tuple) -> None:
        self._entries.pop(key, None)

    def forget(self, uid: str) -> None:
        """Drop every entry of the pod ``uid`` (keys start with it)."""
        for key in [k for k in self._entries if k[0] == uid]:
            del self._entries[key]

    def gc(self, now: float) -> None:
        """Drop expired entries."""
        for key in [k for k, e in self._entries.items() if self._expired(e, now)]:
            del self._entries[key]
