"""The in-memory Raft log of one node.

Rules of this file:

- The log is a snapshot base (``snap_index``, ``snap_term``) followed by contiguous
  entries: ``entries[i].index == snap_index + 1 + i``. Everything at or below the base
  is compacted away.
- ``committed`` never decreases and never passes ``last_index()``.
- ``stable`` is the last index known to be persisted (the driver has written it);
  ``applied`` is the last index handed to the application. ``applied <= committed``.
- Appending an entry whose index already exists with another term truncates the log
  from there (Raft's conflict rule); a committed entry is never truncated (that would be
  a safety bug, so it raises).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._types import Entry


class RaftLog:
    def __init__(self, snap_index: int = 0, snap_term: int = 0) -> None:
        self.snap_index = snap_index
        self.snap_term = snap_term
        self.entries: list[Entry] = []
        self.committed = snap_index
        self.applied = snap_index
        self.stable = snap_index

    # --- reading -------------------------------------------------------------------------

    def first_index(self) -> int:
        return self.snap_index + 1

    def last_index(self) -> int:
        return self.snap_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snap_term

    def term(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if compacted away or not there yet."""
        if index == self.snap_index:
            return self.snap_term
        if index < self.snap_index or index > self.last_index():
            return None
        return self.entries[index - self.snap_index - 1].term

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi`` (lo must not be compacted)."""
        base = self.snap_index + 1
        return self.entries[lo - base : hi - base]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a candidate's log is at least as up to date as ours (§5.4.1)."""
        mine = self.last_term()
        return last_term > mine or (last_term == mine and last_index >= self.last_index())

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, and that term: where a
        leader probing with (index, term) may find a match (fast backtracking)."""
        index = min(index, self.last_index())
        while index > self.snap_index:
            ours = self.term(index)
            if ours <= term:
                return index, ours
            index -= 1
        return self.snap_index, self.snap_term

    # --- writing -------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append ``entries`` (contiguous), truncating any conflicting suffix first."""
        if not entries:
            return
        first = entries[0].index
        if first == self.snap_index + len(self.entries) + 1:
            self.entries.extend(entries)  # the usual case: right after our last entry
            return
        for e in entries:
            ours = self.term(e.index)
            if ours is None or ours != e.term:
                first = e.index
                break
        else:
            return  # everything is there already
        if first <= self.committed:
            raise AssertionError(
                f"raft: truncating committed entry {first} (commit {self.committed})"
            )
        if first <= self.snap_index:
            raise AssertionError(f"raft: appending below the snapshot at {self.snap_index}")
        if first > self.last_index() + 1:
            raise AssertionError(f"raft: gap: appending {first} after {self.last_index()}")
        del self.entries[first - self.snap_index - 1 :]
        self.entries.extend(e for e in entries if e.index >= first)
        self.stable = min(self.stable, first - 1)

    def maybe_append(
        self, index: int, log_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """A follower's handling of an append: if our log has (index, log_term), append
        ``entries`` and advance the commit index; return the last index now known to
        match the leader's log, or None when the consistency check fails."""
        if self.term(index) != log_term:
            return None
        last_new = index + len(entries)
        if entries and entries[0].index <= self.snap_index:
            entries = [e for e in entries if e.index > self.snap_index]
        self.append(entries)
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"raft: commit {index} beyond last {self.last_index()}")
            self.committed = index
            return True
        return False

    def restore(self, snap_index: int, snap_term: int) -> None:
        """Replace the whole log by a snapshot base (a snapshot from the leader)."""
        self.snap_index = snap_index
        self.snap_term = snap_term
        self.entries = []
        self.committed = self.applied = self.stable = snap_index

    def compact(self, index: int) -> None:
        """Forget entries up to ``index`` (the application took a snapshot there)."""
        if index <= self.snap_index:
            return
        if index > self.applied:
            raise AssertionError(f"raft: compacting {index} beyond applied {self.applied}")
        term = self.term(index)
        del self.entries[: index - self.snap_index]
        self.snap_index, self.snap_term = index, term
