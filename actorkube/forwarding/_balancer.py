"""Choosing a backend for a new connection: round robin, with ClientIP session
affinity (kube-proxy's userspace LoadBalancerRR; pure, the time is passed in).

Rules of this file:

- Without affinity, each pick takes the next backend in order, wrapping around.
- With affinity, a client (by IP) that picked a backend less than ``affinity`` seconds
  ago gets it again, and the pick renews the session; otherwise it takes the next
  backend in order and starts a session on it.
- Sessions idle for ``affinity`` seconds are over; ``expire`` drops them (the proxy calls
  it now and then, so that clients seen once do not pile up).
- ``update`` with new backends keeps the sessions whose backend stays and the place in
  the rotation (modulo the new count); a removed backend's sessions end. A failed
  connection ``forget``s the client's session, so its retry may go elsewhere.
"""

from __future__ import annotations

import attrs

from ._types import Backend


@attrs.define
class Balancer:
    """The backends of one frontend and its rotation and sessions (see the rules)."""

    backends: tuple[Backend, ...]
    affinity: float | None = None
    _next: int = 0
    # client IP -> (backend, when last picked)
    _sessions: dict[str, tuple[Backend, float]] = attrs.field(factory=dict)

    def update(self, backends: tuple[Backend, ...], affinity: float | None) -> None:
        self.backends = backends
        self.affinity = affinity
        self._next = self._next % len(backends) if backends else 0
        if affinity is None:
            self._sessions.clear()
        else:
            alive = set(backends)
            self._sessions = {c: s for c, s in self._sessions.items() if s[0] in alive}

    def pick(self, client: str, now: float) -> Backend | None:
        """The backend for a new connection from ``client``; None if there is none."""
        if not self.backends:
            return None
        if self.affinity is not None:
            session = self._sessions.get(client)
            if session is not None and now - session[1] < self.affinity:
                self._sessions[client] = (session[0], now)
                return session[0]
        backend = self.backends[self._next % len(self.backends)]
        self._next = (self._next + 1) % len(self.backends)
        if self.affinity is not None:
            self._sessions[client] = (backend, now)
        return backend

    def forget(self, client: str) -> None:
        self._sessions.pop(client, None)

    def expire(self, now: float) -> None:
        if self.affinity is not None:
            limit = self.affinity
            self._sessions = {c: s for c, s in self._sessions.items() if now - s[1] < limit}

    @property
    def sessions(self) -> int:
        return len(self._sessions)
