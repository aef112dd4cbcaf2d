"""The scheduling queue: which pending pod the scheduler tries next. Pure: the caller
says what time it is.

Rules of this file (Kubernetes' PriorityQueue, pkg/scheduler/internal/queue):

- Three places a pending pod can be: the active queue (ready to try), the backoff
  queue (tried and failed recently: it waits out its backoff) and the unschedulable
  pods (no node fitted; they wait for a cluster event that could change that).
- The active queue pops by PrioritySort: higher ``spec.priority`` first, then the
  earlier queued.
- A pod's backoff after its n-th failed attempt is ``initial * 2**(n-1)`` seconds,
  at most ``maximum`` (1 s and 10 s, kube-scheduler's podInitialBackoffSeconds and
  podMaxBackoffSeconds).
- A pod that no node fitted goes to the unschedulable pods with the plugins that
  turned it away, unless a cluster event arrived while it was being tried (the event
  may have made room): then to backoff. ``move_all(now, event)`` moves the
  unschedulable pods that ``event`` could help (``EVENTS``: which plugins each kind of
  event concerns, Kubernetes' EventsToRegister; no event: every pod) to the backoff
  queue if their backoff has not passed, else to the active queue. A pod stays
  unschedulable at most ``max_unschedulable`` seconds (5 minutes) before it is tried
  again anyway (``next_ready`` says when that is due too).
- Adding a pod that is already queued updates it where it is; deleting forgets it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Mapping
from typing import Any

import attrs

from ._nodeinfo import pod_key

# Which plugins' verdicts each kind of cluster event can change (a pod turned away by
# none of them stays where it is). Node events concern every plugin.
EVENTS: dict[str, frozenset[str] | None] = {
    "NodeAdd": None,
    "NodeUpdate": None,
    "AssignedPodAdd": frozenset({"PodTopologySpread", "InterPodAffinity"}),
    "AssignedPodUpdate": frozenset({"PodTopologySpread", "InterPodAffinity"}),
    "AssignedPodDelete": frozenset(
        {"NodeResourcesFit", "NodePorts", "PodTopologySpread", "InterPodAffinity"}
    ),
}


def priority(pod: Mapping[str, Any]) -> int:
    return (pod.get("spec") or {}).get("priority") or 0


@attrs.define
class QueuedPod:
    """A pending pod and its scheduling history."""

    pod: Mapping[str, Any]
    queued_at: float  # when it was first queued (PrioritySort's tie break)
    attempts: int = 0
    failed_at: float = 0.0
    cycle: int = 0  # the move cycle when it was last popped
    plugins: frozenset[str] = frozenset()  # what turned it away last (empty: unknown)


class SchedulingQueue:
    """See the module rules."""

    def __init__(self, *, initial_backoff: float = 1.0, maximum_backoff: float = 10.0,
                 max_unschedulable: float = 300.0) -> None:  # fmt: skip
        self.initial_backoff = initial_backoff
        self.maximum_backoff = maximum_backoff
        self.max_unschedulable = max_unschedulable
        self._active: list[tuple[int, float, int, str]] = []  # (-priority, queued, seq, key)
        self._backoff: list[tuple[float, int, str]] = []  # (ready at, seq, key)
        self._where: dict[
            str, str
        ] = {}  # key -> "active" | "backoff" | "unschedulable" | "in-flight"
        self._pods: dict[str, QueuedPod] = {}
        self._seq = itertools.count()
        # The unschedulable pods, in the order they were parked (oldest first).
        self._parked: dict[str, None] = {}
        # How many parked pods each plugin turned away ("": for reasons unknown), so an
        # event that concerns none of them costs nothing.
        self._parked_by: dict[str, int] = {}
        self._moves = 0  # bumped by every move_all: a cycle that saw one retries sooner

    def __len__(self) -> int:
        return sum(1 for where in self._where.values() if where != "in-flight")

    def where(self, pod: Mapping[str, Any]) -> str | None:
        return self._where.get(pod_key(pod))

    # --- arrivals -----------------------------------------------------------------------

    def add(self, pod: Mapping[str, Any], now: float, *, changed: bool = True) -> None:
        """A pending pod arrived or changed (``changed`` False: only its status or
        resourceVersion did, which cannot make it fit)."""
        key = pod_key(pod)
        queued = self._pods.get(key)
        if queued is not None:
            queued.pod = pod
            if changed and self._where[key] == "unschedulable":  # a change may make it fit
                self._requeue(key, now)
            return
        self._pods[key] = QueuedPod(pod, now)
        self._push_active(key)

    def delete(self, pod: Mapping[str, Any]) -> None:
        key = pod_key(pod)
        self._unpark(key)
        self._where.pop(key, None)  # stale heap entries are skipped when popped
        self._pods.pop(key, None)

    # --- the scheduler's side -----------------------------------------------------------

    def pop(self, now: float) -> Mapping[str, Any] | None:
        """The next pod to try (None: nothing is ready); it is in flight until the
        scheduler says how its attempt went."""
        self.flush(now)
        while self._active:
            _, _, _, key = heapq.heappop(self._active)
            if self._where.get(key) != "active":
                continue  # deleted or moved since it was pushed
            self._where[key] = "in-flight"
            queued = self._pods[key]
            queued.attempts += 1
            queued.cycle = self._moves
            return queued.pod
        return None

    def done(self, pod: Mapping[str, Any]) -> None:
        """The pod was bound (or given up on): it leaves the queue."""
        if self._same(pod):
            self.delete(pod)

    def _same(self, pod: Mapping[str, Any]) -> bool:
        """Whether the queued pod of this name is ``pod`` (its uid), not a later one."""
        queued = self._pods.get(pod_key(pod))
        uid = (pod.get("metadata") or {}).get("uid")
        if queued is None or not uid:
            return queued is not None
        return (queued.pod.get("metadata") or {}).get("uid", uid) == uid

    def unschedulable(self, pod: Mapping[str, Any], now: float,
                      plugins: frozenset[str] = frozenset()) -> None:  # fmt: skip
        """No node fitted ``pod`` (see the module rules)."""
        key = pod_key(pod)
        queued = self._pods.get(key)
        if queued is None or not self._same(pod) or self._where.get(key) != "in-flight":
            return  # deleted (or replaced) while in flight
        queued.failed_at = now
        queued.plugins = plugins
        if queued.cycle != self._moves:  # something changed while it was tried
            self._push_backoff(key)
        else:
            self._where[key] = "unschedulable"
            self._parked[key] = None
            for plugin in queued.plugins or ("",):
                self._parked_by[plugin] = self._parked_by.get(plugin, 0) + 1

    def error(self, pod: Mapping[str, Any], now: float) -> None:
        """The attempt failed for another reason (a bind refused): retry after backoff."""
        key = pod_key(pod)
        queued = self._pods.get(key)
        if queued is not None and self._same(pod) and self._where.get(key) == "in-flight":
            queued.failed_at = now
            self._push_backoff(key)

    def move_all(self, now: float, event: str = "") -> int:
        """A cluster event that could make unschedulable pods fit; how many moved."""
        self._moves += 1
        concerned = EVENTS.get(event) if event else None
        if concerned is not None and not self._parked_by.get("") and not any(
            self._parked_by.get(p) for p in concerned
        ):
            return 0
        moving = [k for k in self._parked if concerned is None or not self._pods[k].plugins
                  or self._pods[k].plugins & concerned]  # fmt: skip
        for key in moving:
            self._requeue(key, now)
        return len(moving)

    def flush(self, now: float) -> None:
        """Backed-off pods whose time has come, and pods unschedulable for too long,
        to the active queue."""
        while self._backoff and self._backoff[0][0] <= now:
            _, _, key = heapq.heappop(self._backoff)
            if self._where.get(key) == "backoff":
                self._push_active(key)
        for key in list(self._parked):  # oldest first
            if now - self._pods[key].failed_at < self.max_unschedulable:
                break
            self._push_active(key)

    def next_ready(self) -> float | None:
        """When the next pod is due: the earliest backed-off pod, or the oldest
        unschedulable pod's time to be tried anyway (None: nothing waits)."""
        oldest = next(iter(self._parked), None)
        due = [] if oldest is None else [self._pods[oldest].failed_at + self.max_unschedulable]
        while self._backoff and self._where.get(self._backoff[0][2]) != "backoff":
            heapq.heappop(self._backoff)  # moved or deleted since it was pushed
        if self._backoff:
            due.append(self._backoff[0][0])
        return min(due) if due else None

    # --- internals ----------------------------------------------------------------------

    def backoff_of(self, queued: QueuedPod) -> float:
        steps = max(queued.attempts - 1, 0)
        return min(self.initial_backoff * 2**steps, self.maximum_backoff)

    def _requeue(self, key: str, now: float) -> None:
        queued = self._pods[key]
        if queued.attempts and now < queued.failed_at + self.backoff_of(queued):
            self._push_backoff(key)
        else:
            self._push_active(key)

    def _unpark(self, key: str) -> None:
        if self._parked.pop(key, 0) is None:  # it was parked
            for plugin in self._pods[key].plugins or ("",):
                self._parked_by[plugin] -= 1

    def _push_active(self, key: str) -> None:
        queued = self._pods[key]
        self._where[key] = "active"
        self._unpark(key)
        entry = (-priority(queued.pod), queued.queued_at, next(self._seq), key)
        heapq.heappush(self._active, entry)

    def _push_backoff(self, key: str) -> None:
        queued = self._pods[key]
        self._where[key] = "backoff"
        self._unpark(key)
        ready = queued.failed_at + self.backoff_of(queued)
        heapq.heappush(self._backoff, (ready, next(self._seq), key))
