"""Raft storage: the contract the core persists to, the log's rules, and an in-memory store.

Rules of this file:

- Storage holds three things: the hard state, the latest snapshot, and the entries after
  the snapshot's index, contiguous. ``recover()`` returns exactly what ``save``/``compact``
  made; the core is rebuilt from it at start-up.
- ``save`` persists one Ready atomically, in the order snapshot, entries, hard state.
  A snapshot whose (index, term) matches the log describes a prefix of it: the entries
  after it stay (Raft paper, section 7). Any other snapshot carries information the log
  does not have: every entry is dropped. An entry replaces the saved suffix from its
  index on; entries at or below the snapshot's index are committed and already covered
  by the snapshot, so they are ignored (as etcd's MemoryStorage does).
- These rules are written once, as ``plan_save`` (validates a save and turns it into a
  list of operations) and ``LogState.apply`` (carries one operation out, mechanically,
  without looking at terms). The memory store applies the operations; the write-ahead
  log writes them as one record and applies them; recovery replays them. So a replay
  is the same computation as the run that wrote the log.
- Nothing here does I/O.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Sequence
from typing import Protocol

import attrs

from ._types import Entry, HardState, Snapshot

__all__ = [
    "CorruptLog",
    "InvalidWrite",
    "LogState",
    "MemoryStorage",
    "OpKind",
    "Recovered",
    "Storage",
    "StorageClosed",
    "StorageError",
    "plan_save",
]


class StorageError(Exception):
    """Base class of the storage errors. Raised as such when the environment is at
    fault: the directory is in use by another DiskStorage, or an earlier write failed
    and the storage must be reopened."""


class CorruptLog(StorageError):
    """What is on disk is not what was written (environment: the disk, or someone
    editing the files). Raised by ``DiskStorage.open``, which refuses to start rather
    than skip data. ``path`` names the file, ``offset`` the byte where the bad record
    starts."""

    def __init__(self, path: object, offset: int, reason: str) -> None:
        super().__init__(f"{path}: offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class InvalidWrite(StorageError):
    """The caller asked for a write that would break the log's shape (caller's fault:
    a gap, entries out of order, a snapshot older than the saved one). Nothing was
    written."""


class StorageClosed(StorageError):
    """The storage was used after ``close()`` (caller's fault)."""


@attrs.frozen
class Recovered:
    """Everything a storage holds; what the core is rebuilt from."""

    hard_state: HardState = attrs.Factory(HardState)
    snapshot: Snapshot | None = None
    # Every saved entry after the snapshot's index, contiguous, in index order.
    entries: tuple[Entry, ...] = ()


class Storage(Protocol):
    # True if calls may block on the disk: the replica actor then runs them in a worker
    # thread (trio.to_thread), so its other tasks go on meanwhile.
    blocking: bool
    # True if nothing is written anywhere: a snapshot given to ``compact`` is only held,
    # so its data may be a ``Deferred`` that nobody serialises until it is read.
    in_memory: bool

    def recover(self) -> Recovered:
        """The state as of the last ``save``/``compact`` (after a restart: the last one
        that was durable)."""

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """Persist one Ready, atomically, in the order snapshot, entries, hard state.

        Entries are contiguous; the first one's index may be <= the last saved index:
        then every saved entry from that index on is replaced. A snapshot replaces the
        log up to its index; saved entries after it stay if the log holds the snapshot's
        (index, term), else all entries are dropped. With fsync on, everything given is
        durable when ``save`` returns. Raises ``InvalidWrite`` (nothing written).
        """

    def compact(self, snapshot: Snapshot) -> None:
        """The application took a snapshot of its state at ``snapshot.meta.index``: keep
        it and forget the entries up to that index. The snapshot must describe a prefix
        of the saved log (its (index, term) is in the log), else ``InvalidWrite``."""

    def close(self) -> None:
        """Release the storage; later calls raise ``StorageClosed``. Idempotent."""


class OpKind(enum.IntEnum):
    """The operations a save is made of; also the record kinds of the write-ahead log."""

    ENTRY = 1  # value: Entry; replaces the saved entries from its index on
    HARD_STATE = 2  # value: HardState
    SNAPSHOT = 3  # value: (index, term); forgets the entries up to index
    TRUNCATE = 4  # value: index; forgets the entries after index


Op = tuple[OpKind, object]

# Module globals: an Enum class attribute is slow in Python 3.11 (see _core.py).
ENTRY = OpKind.ENTRY
HARD_STATE = OpKind.HARD_STATE
SNAPSHOT = OpKind.SNAPSHOT
TRUNCATE = OpKind.TRUNCATE


@attrs.define
class LogState:
    """The log's shape: hard state, latest snapshot (index, term), entries after it.

    Invariants: ``snapshot_index <= offset``; ``entries[k].index == offset + 1 + k``.
    Indices ``snapshot_index + 1 .. offset`` are *unknown*: this only happens while the
    write-ahead log replays from a segment whose predecessors were deleted, and a
    complete replay always ends with ``offset == snapshot_index``.
    """

    hard_state: HardState = attrs.field(factory=HardState)
    snapshot: tuple[int, int] | None = None
    offset: int = 0
    entries: list[Entry] = attrs.field(factory=list)

    @classmethod
    def from_recovered(cls, recovered: Recovered) -> LogState:
        meta = recovered.snapshot.meta if recovered.snapshot is not None else None
        offset = meta.index if meta is not None else 0
        for k, entry in enumerate(recovered.entries):
            if entry.index != offset + 1 + k:
                raise InvalidWrite(f"entry {k} has index {entry.index}, not {offset + 1 + k}")
        return cls(
            recovered.hard_state,
            (meta.index, meta.term) if meta is not None else None,
            offset,
            list(recovered.entries),
        )

    @property
    def snapshot_index(self) -> int:
        return self.snapshot[0] if self.snapshot is not None else 0

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def complete(self) -> bool:
        """False while some entries are unknown (see the class docstring)."""
        return self.offset == self.snapshot_index

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``, the snapshot's term at its index (0 at
        index 0 without a snapshot), or None if the log does not know it."""
        if index == self.snapshot_index:
            return self.snapshot[1] if self.snapshot is not None else 0
        if self.offset < index <= self.last_index:
            return self.entries[index - self.offset - 1].term
        return None

    def recovered(self, snapshot: Snapshot | None) -> Recovered:
        """The state as a ``Recovered``, with ``snapshot`` (the object behind the
        (index, term) this log holds)."""
        assert self.complete, "a log with unknown entries cannot be recovered"
        return Recovered(self.hard_state, snapshot, tuple(self.entries))

    def apply(self, kind: OpKind, value: object) -> None:
        """Carry out one operation. Raises ``InvalidWrite`` if it breaks the invariants
        (which ``plan_save`` rules out; recovery reports it as corruption)."""
        if kind == ENTRY:
            self._append(value)
        elif kind == HARD_STATE:
            self.hard_state = value
        elif kind == SNAPSHOT:
            self._set_snapshot(*value)
        elif kind == TRUNCATE:
            self._truncate(value)
        else:
            raise InvalidWrite(f"unknown operation {kind!r}")

    def apply_all(self, ops: Iterable[Op]) -> None:
        """``apply`` each operation, in order. An entry right after the last one (nearly
        every operation) is appended at once: ``apply``'s checks hold for it."""
        for kind, value in ops:
            if kind is ENTRY and value.index == self.offset + len(self.entries) + 1:
                self.entries.append(value)
            else:
                self.apply(kind, value)

    def _append(self, entry: Entry) -> None:
        index = entry.index
        offset = self.offset
        snapshot_index = self.snapshot[0] if self.snapshot is not None else 0
        if not snapshot_index < index <= offset + len(self.entries) + 1:
            raise InvalidWrite(
                f"entry {index} is outside {snapshot_index + 1}..{self.last_index + 1}"
            )
        if index <= offset:
            # Replaces unknown entries: the ones before it stay unknown.
            self.offset = index - 1
            self.entries = [entry]
        elif index == offset + len(self.entries) + 1:
            self.entries.append(entry)  # the usual case: nothing to overwrite
        else:
            del self.entries[index - offset - 1 :]
            self.entries.append(entry)

    def _set_snapshot(self, index: int, term: int) -> None:
        if index < self.snapshot_index:
            raise InvalidWrite(f"snapshot {index} is older than snapshot {self.snapshot_index}")
        if index > self.offset:
            del self.entries[: index - self.offset]
            self.offset = index
        self.snapshot = (index, term)

    def _truncate(self, index: int) -> None:
        if index < self.snapshot_index:
            raise InvalidWrite(f"truncate at {index} is below snapshot {self.snapshot_index}")
        if index >= self.offset:
            del self.entries[index - self.offset :]
        else:
            self.offset = index
            self.entries.clear()


def plan_save(
    log: LogState,
    *,
    hard_state: HardState | None,
    entries: Sequence[Entry],
    snapshot: Snapshot | None,
) -> list[Op]:
    """Validate one save against ``log`` and return the operations that carry it out,
    in order. Raises ``InvalidWrite``; does not change ``log``."""
    ops: list[Op] = []
    snapshot_index = log.snapshot[0] if log.snapshot is not None else 0
    last = log.offset + len(log.entries)
    if snapshot is not None:
        index, term = snapshot.meta.index, snapshot.meta.term
        if index < snapshot_index:
            raise InvalidWrite(f"snapshot {index} is older than saved snapshot {snapshot_index}")
        ops.append((SNAPSHOT, (index, term)))
        if log.term_at(index) != term:
            # Not a prefix of our log: what follows it in our log is not to be trusted.
            if last > index:
                ops.append((TRUNCATE, index))
            last = index
        snapshot_index = index
    if len(entries) > 1:
        for before, after in itertools.pairwise(entries):
            if after.index != before.index + 1:
                raise InvalidWrite(
                    f"entries are not contiguous: {before.index} then {after.index}"
                )
    if entries:
        first = entries[0].index
        if first <= snapshot_index:
            entries = [entry for entry in entries if entry.index > snapshot_index]
            first = entries[0].index if entries else 0
        if entries and first > last + 1:
            raise InvalidWrite(f"entry {first} leaves a gap after the last entry {last}")
        ops += [(ENTRY, entry) for entry in entries]
    if hard_state is not None:
        ops.append((HARD_STATE, hard_state))
    return ops


def check_compaction(log: LogState, snapshot: Snapshot) -> None:
    """``compact`` takes the application's own snapshot: it must describe a prefix of
    the log. Raises ``InvalidWrite``."""
    meta = snapshot.meta
    if meta.index < log.snapshot_index or log.term_at(meta.index) != meta.term:
        raise InvalidWrite(
            f"snapshot ({meta.index}, term {meta.term}) is not a prefix of the log "
            f"(snapshot {log.snapshot_index}, last {log.last_index})"
        )


class MemoryStorage:
    """Storage in memory, for tests and the simulation; models what a crash keeps.

    With ``fsync=True`` every save is durable when it returns. With ``fsync=False`` only
    what was saved before the last ``sync()`` survives ``crash()``.
    """

    blocking = False
    in_memory = True

    def __init__(self, *, fsync: bool = True, initial: Recovered | None = None) -> None:
        initial = initial if initial is not None else Recovered()
        self._fsync = fsync
        self._log = LogState.from_recovered(initial)
        self._snapshot = initial.snapshot
        self._synced = initial
        self._closed = False

    def recover(self) -> Recovered:
        self._check_open()
        return self._log.recovered(self._snapshot)

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        self._check_open()
        ops = plan_save(self._log, hard_state=hard_state, entries=entries, snapshot=snapshot)
        self._log.apply_all(ops)
        if snapshot is not None:
            self._snapshot = snapshot

    def compact(self, snapshot: Snapshot) -> None:
        self._check_open()
        check_compaction(self._log, snapshot)
        self.save(snapshot=snapshot)

    def sync(self) -> None:
        """Make everything saved so far durable (what fsync does for a file)."""
        self._check_open()
        self._synced = self.recover()

    def crash(self) -> MemoryStorage:
        """A new storage holding what a disk would still hold after a power cut now:
        everything saved (fsync on), or what was saved up to the last ``sync()``."""
        durable = self._log.recovered(self._snapshot) if self._fsync else self._synced
        return MemoryStorage(fsync=self._fsync, initial=durable)

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosed("MemoryStorage is closed")
