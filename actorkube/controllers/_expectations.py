"""Expectations: what a controller has asked for and not yet seen in its informers, so
that it never acts twice on a cache that is behind (kube-controller-manager's
ControllerExpectations and UIDTrackingControllerExpectations).

Rules of this file:

- A controller that creates ``n`` pods for ``key`` first records ``expect_creations(key,
  n)``; each pod it sees arrive in its informer calls ``creation_observed(key)``. A
  delete of pods records their keys with ``expect_deletions(key, pod_keys)``; each pod
  seen gone (or marked for deletion) calls ``deletion_observed(key, pod_key)``, which
  counts a pod key once however often its deletion is seen.
- ``satisfied(key)`` is true when nothing is pending for ``key``, when ``key`` has no
  record, or when the record is older than ``ttl`` (Kubernetes' 5 minutes: a watch
  event that never comes must not block the controller for ever). Until then the
  controller only writes status, never creates or deletes again.
- A create or delete that failed was never going to be observed: the controller
  lowers the expectation itself (``creation_observed`` / ``deletion_observed``).
- Time comes from the injected clock (trio's by default), so virtual time expires
  expectations as it would real ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs
import trio

EXPECTATIONS_TTL = 5 * 60.0  # Kubernetes' ExpectationsTimeout


@attrs.define
class _Record:
    adds: int
    deletes: set[str]
    set_at: float


class Expectations:
    """Pending creations and deletions per controller key (see the module rules)."""

    def __init__(
        self, *, ttl: float = EXPECTATIONS_TTL, clock: Callable[[], float] = trio.current_time
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._records: dict[str, _Record] = {}

    def satisfied(self, key: str) -> bool:
        record = self._records.get(key)
        if record is None:
            return True
        if record.adds <= 0 and not record.deletes:
            return True
        return self.clock() - record.set_at > self.ttl

    def expect(self, key: str, creations: int, deletions: Iterable[str] = ()) -> None:
        """``creations`` creations and the deletions of the pods ``deletions`` are on
        their way, both at once (replacing what was pending: Kubernetes'
        SetExpectations), for a sync that creates on some nodes and deletes on others."""
        self._records[key] = _Record(creations, set(deletions), self.clock())

    def expect_creations(self, key: str, count: int) -> None:
        """``count`` creations are on their way (replacing what was pending)."""
        self.expect(key, count)

    def expect_deletions(self, key: str, pod_keys: Iterable[str]) -> None:
        """The deletions of ``pod_keys`` are on their way (replacing what was pending)."""
        self.expect(key, 0, pod_keys)

    def creation_observed(self, key: str) -> None:
        record = self._records.get(key)
        if record is not None and record.adds > 0:
            record.adds -= 1

    def deletion_observed(self, key: str, pod_key: str) -> None:
        record = self._records.get(key)
        if record is not None:
            record.deletes.discard(pod_key)

    def pending(self, key: str) -> tuple[int, int]:
        """(creations, deletions) still expected for ``key``."""
        record = self._records.get(key)
        return (0, 0) if record is None else (max(record.adds, 0), len(record.deletes))

    def forget(self, key: str) -> None:
        """The controller's object is gone: nothing is expected for it any more."""
        self._records.pop(key, None)
