"""What a leader knows of each follower's log, and quorum arithmetic.

A follower's progress is in one of three states (as in etcd-io/raft):

- PROBE: we do not know where its log matches ours; send one append at a time (from
  ``next``) and wait for the answer (or a heartbeat response) before the next one.
- REPLICATE: its log matches up to ``match``; stream appends optimistically, advancing
  ``next`` at send time, with at most ``max_inflight`` unacknowledged appends.
- SNAPSHOT: it needs entries we compacted away; a snapshot is on its way, nothing else
  is sent until it is acknowledged (or given up on after an election timeout).

Invariant: ``match < next``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Iterable


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


# Module globals: an Enum class attribute is slow in Python 3.11 (see _core.py).
PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT


class Progress:
    __slots__ = (
        "inflight",
        "learner",
        "match",
        "max_inflight",
        "next",
        "paused",
        "pending_snapshot",
        "recent_active",
        "snapshot_ticks",
        "state",
    )

    def __init__(self, next_index: int, max_inflight: int, learner: bool = False) -> None:
        self.match = 0
        self.next = next_index
        self.state = PROBE
        self.paused = False  # PROBE: an append is out, wait for its answer
        self.inflight: deque[int] = deque()  # REPLICATE: last index of each append out
        self.max_inflight = max_inflight
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.recent_active = False
        self.learner = learner

    def __repr__(self) -> str:
        return f"<Progress {self.state.value} match={self.match} next={self.next}>"

    def become_probe(self) -> None:
        if self.state is SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(REPLICATE)

    def become_snapshot(self, index: int) -> None:
        self._reset(SNAPSHOT)
        self.pending_snapshot = index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.paused = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.inflight.clear()

    def is_paused(self) -> bool:
        if self.state is PROBE:
            return self.paused
        if self.state is REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def sent(self, last: int) -> None:
        """An append ending at ``last`` went out (``last == next - 1`` if it was empty)."""
        if self.state is REPLICATE:
            if last >= self.next:
                self.next = last + 1
                self.inflight.append(last)
        elif self.state is PROBE:
            self.paused = True

    def maybe_update(self, index: int) -> bool:
        """An append was acknowledged up to ``index``; False if that is old news."""
        updated = index > self.match
        if updated:
            self.match = index
            self.paused = False
        self.next = max(self.next, index + 1)
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        return updated

    def maybe_decrease_to(self, rejected: int, hint: int) -> bool:
        """An append at ``rejected`` failed; the follower's log may match up to ``hint``.
        False if the rejection is stale (an answer to an older probe)."""
        if self.state is REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        next_index = max(min(rejected, hint + 1), self.match + 1)
        if next_index == self.next:
            # It rejects what it acknowledged: a stale answer, or a follower that lost
            # entries it had persisted (storage without fsync, a power cut: outside
            # Raft's model, not repairable here). Probing again at once would only
            # repeat the exchange as fast as the network goes; the probe stays paused
            # until the next heartbeat answer.
            return False
        self.next = next_index
        self.paused = False
        return True


def quorum(voters: int) -> int:
    return voters // 2 + 1


def committed_index(matches: Iterable[int]) -> int:
    """The largest index that a majority of the given voters' matches reach."""
    ordered = sorted(matches, reverse=True)
    if not ordered:
        return 0
    return ordered[quorum(len(ordered)) - 1]
