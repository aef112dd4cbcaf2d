"""Raft storage: MemoryStorage and the write-ahead log against a trivial model, torn
writes at every byte, corruption, the fsync policy, crashes of the memory store."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actorkube.actor import encode_message
from actorkube.raft._storage import (
    CorruptLog,
    InvalidWrite,
    LogState,
    MemoryStorage,
    OpKind,
    Recovered,
    StorageClosed,
    StorageError,
)
from actorkube.raft._types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta
from actorkube.raft._wal import DiskStorage, encode_record, scan_records


def snap(index: int, term: int, data: bytes = b"state") -> Snapshot:
    return Snapshot(SnapshotMeta(index, term, ConfState(voters=(1, 2, 3))), data)


def ents(first: int, last: int, term: int) -> list[Entry]:
    return [Entry(term, i, data=f"cmd{i}".encode()) for i in range(first, last + 1)]


class Model:
    """The storage rules restated as plainly as possible: a dict of index -> entry."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.log: dict[int, Entry] = {}

    @property
    def snapshot_index(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return max(self.log, default=self.snapshot_index)

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot_index:
            return self.snapshot.meta.term if self.snapshot else 0
        return self.log[index].term if index in self.log else None

    def save(
        self,
        hard_state: HardState | None = None,
        entries: list[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        if snapshot is not None:
            describes_prefix = self.term_at(snapshot.meta.index) == snapshot.meta.term
            self.log = {
                i: e for i, e in self.log.items() if describes_prefix and i > snapshot.meta.index
            }
            self.snapshot = snapshot
        for entry in entries:
            if entry.index > self.snapshot_index:
                self.log = {i: e for i, e in self.log.items() if i < entry.index}
                self.log[entry.index] = entry
        if hard_state is not None:
            self.hard_state = hard_state

    def recovered(self) -> Recovered:
        return Recovered(
            self.hard_state, self.snapshot, tuple(self.log[i] for i in sorted(self.log))
        )


def image(directory: Path) -> dict[str, bytes]:
    """The directory's files (the lock file aside) by name."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "LOCK"}


def write_image(directory: Path, files: dict[str, bytes]) -> None:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)


def reopened(directory: Path, **kwargs: object) -> Recovered:
    with DiskStorage.open(directory, **kwargs) as storage:
        return storage.recover()


# --- round trips -----------------------------------------------------------------------


class Disk:
    """Runs each check on a DiskStorage and again on a reopened one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.storage = DiskStorage.open(directory, segment_bytes=300)

    def __getattr__(self, name: str) -> object:
        return getattr(self.storage, name)

    def recover(self) -> Recovered:
        live = self.storage.recover()
        self.storage.close()
        self.storage = DiskStorage.open(self.directory, segment_bytes=300)
        assert self.storage.recover() == live
        return live


@pytest.fixture(params=["memory", "disk"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    s = MemoryStorage() if request.param == "memory" else Disk(tmp_path / "wal")
    yield s
    s.close()


def test_empty_storage_recovers_nothing(storage) -> None:
    assert storage.recover() == Recovered(HardState(), None, ())


def test_entries_and_hard_state_round_trip(storage) -> None:
    storage.save(hard_state=HardState(term=1, vote=2), entries=ents(1, 3, 1))
    storage.save(hard_state=HardState(term=1, vote=2, commit=3), entries=ents(4, 5, 1))
    assert storage.recover() == Recovered(
        HardState(term=1, vote=2, commit=3), None, tuple(ents(1, 5, 1))
    )


def test_an_entry_below_the_last_replaces_the_suffix(storage) -> None:
    storage.save(entries=ents(1, 6, 1))
    storage.save(entries=ents(4, 4, 2))
    assert storage.recover().entries == (*ents(1, 3, 1), *ents(4, 4, 2))
    storage.save(entries=ents(1, 2, 3))
    assert storage.recover().entries == tuple(ents(1, 2, 3))


def test_compaction_keeps_the_entries_after_the_snapshot(storage) -> None:
    storage.save(hard_state=HardState(term=2, commit=8), entries=ents(1, 10, 2))
    storage.compact(snap(8, 2))
    assert storage.recover() == Recovered(
        HardState(term=2, commit=8), snap(8, 2), tuple(ents(9, 10, 2))
    )
    storage.compact(snap(10, 2, b"later"))
    assert storage.recover() == Recovered(HardState(term=2, commit=8), snap(10, 2, b"later"), ())
    storage.save(entries=ents(11, 12, 3))
    assert storage.recover().entries == tuple(ents(11, 12, 3))


def test_a_leader_snapshot_beyond_the_log_drops_every_entry(storage) -> None:
    storage.save(entries=ents(1, 5, 1))
    storage.save(snapshot=snap(20, 3), hard_state=HardState(term=3, commit=20))
    assert storage.recover() == Recovered(HardState(term=3, commit=20), snap(20, 3), ())


def test_a_snapshot_that_conflicts_with_the_log_drops_every_entry(storage) -> None:
    storage.save(entries=ents(1, 10, 1))
    storage.save(snapshot=snap(5, 2))  # our entry 5 has term 1: our suffix is not its
    assert storage.recover() == Recovered(HardState(), snap(5, 2), ())


def test_a_snapshot_that_matches_the_log_keeps_the_suffix(storage) -> None:
    storage.save(entries=ents(1, 10, 1))
    storage.save(snapshot=snap(5, 1), entries=ents(9, 11, 2))
    assert storage.recover().entries == (*ents(6, 8, 1), *ents(9, 11, 2))


def test_entries_covered_by_the_snapshot_are_ignored(storage) -> None:
    storage.save(snapshot=snap(5, 2), entries=ents(3, 7, 2))
    assert storage.recover() == Recovered(HardState(), snap(5, 2), tuple(ents(6, 7, 2)))


@pytest.mark.parametrize(
    "bad",
    [
        {"entries": ents(12, 13, 1)},  # gap after 10
        {"entries": [*ents(4, 5, 1), *ents(7, 8, 1)]},  # not contiguous
        {"snapshot": snap(2, 1)},  # older than the saved snapshot at 3
        {"snapshot": snap(30, 2), "entries": ents(32, 33, 2)},  # gap after the snapshot
    ],
)
def test_invalid_saves_write_nothing(storage, bad: dict) -> None:
    storage.save(hard_state=HardState(term=1), entries=ents(1, 10, 1))
    storage.compact(snap(3, 1))
    before = storage.recover()
    with pytest.raises(InvalidWrite):
        storage.save(hard_state=HardState(term=9), **bad)
    assert storage.recover() == before


@pytest.mark.parametrize("bad", [snap(5, 2), snap(11, 1), snap(2, 1)])
def test_compaction_must_describe_a_prefix_of_the_log(storage, bad: Snapshot) -> None:
    storage.save(entries=ents(1, 10, 1))
    storage.compact(snap(3, 1))
    with pytest.raises(InvalidWrite):
        storage.compact(bad)
    assert storage.recover() == Recovered(HardState(), snap(3, 1), tuple(ents(4, 10, 1)))


def test_a_closed_storage_refuses_use(storage) -> None:
    storage.close()
    with pytest.raises(StorageClosed):
        storage.save(entries=ents(1, 1, 1))
    with pytest.raises(StorageClosed):
        storage.recover()


def test_entry_types_and_binary_data_round_trip(tmp_path: Path) -> None:
    entries = [Entry(1, 1, EntryType.CONF_CHANGE, b"\x00\xff"), Entry(1, 2, data=bytes(5000))]
    with DiskStorage.open(tmp_path) as storage:
        storage.save(entries=entries)
    assert reopened(tmp_path).entries == tuple(entries)


def test_replay_from_a_later_segment_tracks_the_unknown_entries() -> None:
    # Replaying from a segment cut when the log ended at 10, older segments deleted.
    log = LogState(offset=10)
    assert not log.complete and log.last_index == 10
    log.apply(OpKind.SNAPSHOT, (4, 1))
    assert (log.offset, log.last_index) == (10, 10)
    log.apply(OpKind.TRUNCATE, 6)  # entries 7..10 go: 5..6 stay unknown
    assert (log.offset, log.last_index, log.complete) == (6, 6, False)
    with pytest.raises(InvalidWrite):
        log.apply(OpKind.ENTRY, Entry(2, 8))
    log.apply(OpKind.ENTRY, Entry(2, 6))  # replaces unknown 6; 5 stays unknown
    assert (log.offset, log.entries, log.complete) == (5, [Entry(2, 6)], False)
    log.apply(OpKind.SNAPSHOT, (5, 1))
    assert log.complete and log.recovered(None).entries == (Entry(2, 6),)


# --- the model, at random ----------------------------------------------------------------

terms = st.integers(1, 4)


class StorageMachine(RuleBasedStateMachine):
    """Random saves and compactions on both storages and the model; the disk storage is
    reopened and the memory storage crashed (fsync on: nothing lost) at random points."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="raft-storage-"))
        self.disk = DiskStorage.open(self.directory, fsync=False, segment_bytes=200)
        self.memory = MemoryStorage()
        self.model = Model()

    def teardown(self) -> None:
        self.disk.close()
        shutil.rmtree(self.directory)

    @rule(data=st.data())
    def save(self, data: st.DataObject) -> None:
        model = self.model
        snapshot = None
        if data.draw(st.booleans(), "with snapshot"):
            index = data.draw(st.integers(model.snapshot_index, model.last_index + 3), "index")
            known = model.term_at(index)
            term = data.draw(terms if known is None else st.just(known) | terms, "term")
            snapshot = snap(index, term, data.draw(st.binary(max_size=8), "data"))
        # Where the entries may start once the snapshot is in (a gap is an invalid save).
        preview = Model()
        preview.snapshot, preview.log = model.snapshot, dict(model.log)
        preview.save(snapshot=snapshot)
        first = data.draw(
            st.integers(max(1, preview.snapshot_index - 1), preview.last_index + 1), "first"
        )
        entries = [
            Entry(data.draw(terms), first + k, data=data.draw(st.binary(max_size=40)))
            for k in range(data.draw(st.integers(0, 4), "count"))
        ]
        hard_state = data.draw(
            st.none() | st.builds(HardState, terms, st.integers(0, 3), st.integers(0, 20)),
            "hard state",
        )
        for storage in (self.disk, self.memory, model):
            storage.save(hard_state=hard_state, entries=entries, snapshot=snapshot)

    @precondition(lambda self: self.model.log)
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        index = data.draw(st.sampled_from(sorted(self.model.log)), "index")
        snapshot = snap(index, self.model.log[index].term, data.draw(st.binary(max_size=8)))
        self.disk.compact(snapshot)
        self.memory.compact(snapshot)
        self.model.save(snapshot=snapshot)

    @rule()
    def reopen_disk(self) -> None:
        self.disk.close()
        self.disk = DiskStorage.open(self.directory, fsync=False, segment_bytes=200)

    @rule()
    def crash_memory(self) -> None:
        self.memory = self.memory.crash()

    @invariant()
    def storages_agree_with_the_model(self) -> None:
        expected = self.model.recovered()
        assert self.disk.recover() == expected
        assert self.memory.recover() == expected

    @invariant()
    def compaction_reclaims_segments(self) -> None:
        # Segments before the one cut when the log ended at or below the snapshot go.
        segments = sorted(self.directory.glob("wal-*.log"))
        firsts = [int(p.stem.split("-")[2]) for p in segments]
        assert all(first - 1 > self.model.snapshot_index for first in firsts[1:])
        assert len(list(self.directory.glob("snap-*.snap"))) == (self.model.snapshot is not None)


TestStorageMachine = StorageMachine.TestCase
TestStorageMachine.settings = settings(stateful_step_count=30)


# --- crashes at every byte ---------------------------------------------------------------

# Saves that exercise every kind of record, segment cuts and reclaims (segment_bytes=256).
SCRIPT: list[dict] = [
    {"hard_state": HardState(term=1, vote=1)},
    {"entries": ents(1, 3, 1), "hard_state": HardState(term=1, vote=1, commit=1)},
    {"entries": ents(4, 8, 1)},
    {"entries": ents(6, 7, 2), "hard_state": HardState(term=2, vote=2, commit=5)},
    {"compact": snap(5, 1)},
    {"entries": ents(8, 12, 2), "hard_state": HardState(term=2, vote=2, commit=11)},
    {"snapshot": snap(9, 3), "hard_state": HardState(term=3, commit=9)},  # conflicts
    {"entries": ents(10, 16, 3)},
    {"snapshot": snap(30, 4), "entries": ents(31, 32, 4)},  # beyond the log
    {"entries": ents(33, 36, 4), "hard_state": HardState(term=4, commit=36)},
    {"compact": snap(35, 4)},
]


def run_step(storage: object, step: dict) -> None:
    if "compact" in step:
        storage.compact(step["compact"])
    else:
        storage.save(**step)


def continue_after(directory: Path, state: Recovered) -> None:
    """A recovered log takes new entries, and they survive a reopen."""
    last = max(
        [0] + [e.index for e in state.entries] + [s.meta.index for s in [state.snapshot] if s]
    )
    with DiskStorage.open(directory, fsync=False) as storage:
        storage.save(entries=ents(last + 1, last + 1, 7))
    assert reopened(directory).entries == (*state.entries, *ents(last + 1, last + 1, 7))


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[dict, Recovered]]:
    """The directory image and the state after each step of SCRIPT (index 0: opened)."""
    directory = tmp_path_factory.mktemp("history")
    out = []
    with DiskStorage.open(directory, fsync=False, segment_bytes=256) as storage:
        out.append((image(directory), storage.recover()))
        for step in SCRIPT:
            run_step(storage, step)
            out.append((image(directory), storage.recover()))
    return out


def test_the_script_cuts_and_reclaims_segments(history) -> None:
    names = [set(files) for files, _ in history]
    assert any(
        len([n for n in now - before if n.startswith("wal-")])
        for before, now in itertools.pairwise(names)
    )
    assert any(
        len([n for n in before - now if n.startswith("wal-")])
        for before, now in itertools.pairwise(names)
    )
    assert history[-1][1] == Recovered(
        HardState(term=4, commit=36), snap(35, 4), tuple(ents(36, 36, 4))
    )


@pytest.mark.parametrize("step", range(1, len(SCRIPT) + 1))
def test_a_torn_write_recovers_the_previous_save(history, step: int, tmp_path: Path) -> None:
    (before, old), (after, new) = history[step - 1], history[step]
    active = max(n for n in before if n.startswith("wal-"))
    assert after[active].startswith(before[active])  # the save appended to the active one
    # At the crash, the snapshot file (written first) may be there; nothing was reclaimed.
    crashed = before | {n: d for n, d in after.items() if n.startswith("snap-") and n not in before}
    for length in range(len(before[active]), len(after[active]) + 1):
        write_image(tmp_path / "d", crashed | {active: after[active][:length]})
        expected = new if length == len(after[active]) else old
        assert reopened(tmp_path / "d") == expected, length
        continue_after(tmp_path / "d", expected)


@pytest.mark.parametrize("step", range(1, len(SCRIPT) + 1))
def test_an_interrupted_cut_or_reclaim_loses_nothing(history, step: int, tmp_path: Path) -> None:
    (before, _), (after, new) = history[step - 1], history[step]
    cut = [n for n in after if n.startswith("wal-") and n not in before]
    # Nothing is deleted before the new segment's header is durable: restore the deletions.
    undeleted = after | {name: data for name, data in before.items() if name not in after}
    for name in cut:  # the new segment's header, torn at every byte
        for length in range(len(after[name])):
            write_image(tmp_path / "d", undeleted | {name: after[name][:length]})
            assert reopened(tmp_path / "d") == new
            assert name not in image(tmp_path / "d"), "a segment without a header is removed"
            continue_after(tmp_path / "d", new)
    deleted = sorted(set(before) - set(after))
    for n in range(1, len(deleted) + 1):  # any subset of the unlinks may be lost
        for kept in itertools.combinations(deleted, n):
            write_image(tmp_path / "d", after | {name: before[name] for name in kept})
            assert reopened(tmp_path / "d") == new
            assert set(image(tmp_path / "d")) == set(after), "leftovers are removed"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_compaction_deletes_exactly_the_segments_recovery_does_not_need(
    tmp_path: Path, k: int
) -> None:
    with DiskStorage.open(tmp_path, fsync=False, segment_bytes=60) as storage:
        for i in range(1, 9):
            storage.save(entries=ents(i, i, 1))
        segments = sorted(tmp_path.glob("wal-*.log"))
        first = [int(p.stem.split("-")[2]) for p in segments]
        assert first[: k + 2] == list(range(first[0], first[0] + k + 2))  # one entry each
        storage.compact(snap(first[k] - 1, 1))  # covers what was there when k was cut
        assert sorted(tmp_path.glob("wal-*.log")) == segments[k:]
    assert reopened(tmp_path) == Recovered(
        HardState(), snap(first[k] - 1, 1), tuple(ents(first[k], 8, 1))
    )


def test_reopening_after_recovery_is_stable(history, tmp_path: Path) -> None:
    files, state = history[-1]
    write_image(tmp_path, files)
    for _ in range(3):
        assert reopened(tmp_path, fsync=True) == state
    assert image(tmp_path) == files


# --- corruption ----------------------------------------------------------------------------


def records(path: Path) -> list[tuple[int, int]]:
    """(start, end) of each record in a segment."""
    data = path.read_bytes()
    starts = [offset for offset, _ in scan_records(data, may_be_torn=False).records]
    return list(zip(starts, [*starts[1:], len(data)], strict=True))


def flipped(path: Path, at: int) -> Callable[[], None]:
    """Flip the byte at ``at``; return a function that restores the file."""
    original = path.read_bytes()
    path.write_bytes(original[:at] + bytes([original[at] ^ 0x40]) + original[at + 1 :])
    return lambda: path.write_bytes(original)


@pytest.fixture
def two_segments(tmp_path: Path) -> tuple[Path, list[Path], list[Recovered]]:
    states = []
    with DiskStorage.open(tmp_path, fsync=False, segment_bytes=200) as storage:
        for i in range(1, 6):
            storage.save(hard_state=HardState(term=1, commit=i - 1), entries=ents(i, i, 1))
            states.append(storage.recover())
    segments = sorted(tmp_path.glob("wal-*.log"))
    assert len(segments) == 2 and len(records(segments[-1])) >= 2
    return tmp_path, segments, states


def test_a_flipped_byte_in_an_earlier_record_refuses_to_start(two_segments) -> None:
    directory, segments, _ = two_segments
    for segment in segments:
        spans = records(segment)
        if segment == segments[-1]:
            spans = spans[:-1]
        for start, end in spans:
            for at in range(start, end):
                restore = flipped(segment, at)
                with pytest.raises(CorruptLog) as info:
                    DiskStorage.open(directory)
                restore()
                assert (info.value.path, info.value.offset) == (segment, start)
                assert f"{segment}: offset {start}:" in str(info.value)


def test_a_flipped_byte_in_the_last_records_payload_is_a_torn_write(two_segments) -> None:
    directory, segments, states = two_segments
    start, end = records(segments[-1])[-1]
    for at in range(start + 12, end):
        restore = flipped(segments[-1], at)
        assert reopened(directory) == states[-2]
        assert segments[-1].stat().st_size == start  # truncated there
        restore()
    assert reopened(directory) == states[-1]


def test_a_flipped_byte_in_the_last_records_header_refuses_to_start(two_segments) -> None:
    directory, segments, _ = two_segments
    start, _ = records(segments[-1])[-1]
    for at in range(start, start + 12):
        restore = flipped(segments[-1], at)
        with pytest.raises(CorruptLog) as info:
            DiskStorage.open(directory)
        restore()
        assert (info.value.path, info.value.offset) == (segments[-1], start)


def test_the_last_record_of_an_earlier_segment_is_never_torn(two_segments) -> None:
    directory, segments, _ = two_segments
    _, end = records(segments[0])[-1]
    flipped(segments[0], end - 1)
    with pytest.raises(CorruptLog, match="checksum"):
        DiskStorage.open(directory)
    segments[0].write_bytes(segments[0].read_bytes()[: end - 1])
    with pytest.raises(CorruptLog, match="past the end"):
        DiskStorage.open(directory)


def test_a_zero_filled_tail_is_a_torn_write(two_segments) -> None:
    directory, segments, states = two_segments
    size = segments[-1].stat().st_size
    with segments[-1].open("ab") as f:
        f.write(bytes(100))
    assert reopened(directory) == states[-1]
    assert segments[-1].stat().st_size == size
    start, end = records(segments[-1])[-1]
    data = segments[-1].read_bytes()
    segments[-1].write_bytes(data[: start + 20] + bytes(end - start - 20))  # zeroed mid-record
    assert reopened(directory) == states[-2]
    # Zeros from inside the last record to past its end: the file grew, data never came.
    segments[-1].write_bytes(data[: start + 20] + bytes(end - start - 20 + 50))
    assert reopened(directory) == states[-2]


def test_garbage_after_the_last_record_refuses_to_start(two_segments) -> None:
    directory, segments, _ = two_segments
    size = segments[-1].stat().st_size
    with segments[-1].open("ab") as f:
        f.write(b"\x01" * 40)
    with pytest.raises(CorruptLog) as info:
        DiskStorage.open(directory)
    assert info.value.offset == size


def test_a_missing_segment_is_detected(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, fsync=False, segment_bytes=100) as storage:
        for i in range(1, 8):
            storage.save(entries=ents(i, i, 1))
    segments = sorted(tmp_path.glob("wal-*.log"))
    assert len(segments) >= 3
    segments[1].unlink()  # a gap: the ones before it look like reclaim leftovers
    with pytest.raises(CorruptLog, match="missing") as info:
        DiskStorage.open(tmp_path)
    assert info.value.path == segments[2]


def test_an_empty_earlier_segment_refuses_to_start(two_segments) -> None:
    directory, segments, _ = two_segments
    segments[0].write_bytes(b"")
    with pytest.raises(CorruptLog, match="no record") as info:
        DiskStorage.open(directory)
    assert info.value.path == segments[0]


def test_a_segment_whose_name_disagrees_with_the_log_refuses_to_start(two_segments) -> None:
    directory, segments, _ = two_segments
    seq, first = segments[1].stem.split("-")[1:]
    renamed = segments[1].with_name(f"wal-{seq}-{int(first) + 1:016d}.log")
    segments[1].rename(renamed)
    with pytest.raises(CorruptLog, match="starts at index") as info:
        DiskStorage.open(directory)
    assert info.value.path == renamed


def test_a_snapshot_file_must_hold_the_snapshot_its_name_says(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, fsync=False) as storage:
        storage.save(entries=ents(1, 5, 1))
        storage.compact(snap(4, 1))
    path = tmp_path / f"snap-{4:016d}-{1:016d}.snap"
    path.write_bytes(encode_record(encode_message(snap(3, 1))))
    with pytest.raises(CorruptLog, match="holds snapshot 3/1") as info:
        DiskStorage.open(tmp_path)
    assert info.value.path == path


def test_a_corrupt_snapshot_file_is_named(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, fsync=False) as storage:
        storage.save(entries=ents(1, 5, 1))
        storage.compact(snap(4, 1, b"application state"))
    path = tmp_path / f"snap-{4:016d}-{1:016d}.snap"
    for at in range(path.stat().st_size):
        restore = flipped(path, at)
        with pytest.raises(CorruptLog) as info:
            DiskStorage.open(tmp_path)
        restore()
        assert info.value.path == path and info.value.offset == 0
    path.unlink()
    with pytest.raises(CorruptLog, match="missing") as info:
        DiskStorage.open(tmp_path)
    assert info.value.path == path


def test_an_orphan_snapshot_file_is_removed(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path, fsync=False) as storage:
        storage.save(entries=ents(1, 5, 1))
        storage.compact(snap(2, 1))
    # A crash after a newer snapshot file was written but before the log referred to it.
    (tmp_path / f"snap-{4:016d}-{1:016d}.snap").write_bytes(b"whatever")
    (tmp_path / f"snap-{4:016d}-{1:016d}.snap.tmp").write_bytes(b"half")
    assert reopened(tmp_path).snapshot == snap(2, 1)
    assert sorted(p.name for p in tmp_path.glob("snap-*")) == [f"snap-{2:016d}-{1:016d}.snap"]


# --- the fsync policy, failures, the lock --------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_without_fsync_nothing_is_fsynced(tmp_path: Path, fsyncs: list[int]) -> None:
    with DiskStorage.open(tmp_path / "new", fsync=False, segment_bytes=100) as storage:
        for step in SCRIPT:
            run_step(storage, step)
    assert reopened(tmp_path / "new", fsync=False).hard_state == HardState(term=4, commit=36)
    assert fsyncs == []


def test_with_fsync_every_save_is_fsynced(tmp_path: Path, fsyncs: list[int]) -> None:
    with DiskStorage.open(tmp_path / "new", fsync=True, segment_bytes=100) as storage:
        for step in SCRIPT:
            before = len(fsyncs)
            run_step(storage, step)
            assert len(fsyncs) > before, step
            if "snapshot" in step or "compact" in step:
                assert len(fsyncs) - before >= 3  # snapshot file, its directory, the record


def test_a_failed_write_makes_the_storage_unusable(tmp_path: Path, monkeypatch) -> None:
    storage = DiskStorage.open(tmp_path, fsync=False)
    storage.save(entries=ents(1, 2, 1))
    real_write = os.write

    def half_then_fail(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(OSError):
        storage.save(entries=ents(3, 4, 1))
    monkeypatch.setattr(os, "write", real_write)
    with pytest.raises(StorageError, match="reopen"):
        storage.save(entries=ents(3, 4, 1))
    storage.close()
    assert reopened(tmp_path).entries == tuple(ents(1, 2, 1))


def test_only_the_disk_storage_blocks(tmp_path: Path) -> None:
    # The replica actor runs the calls of a blocking storage in a worker thread.
    with DiskStorage.open(tmp_path) as storage:
        assert storage.blocking is True
    assert MemoryStorage().blocking is False


def test_a_directory_is_opened_once(tmp_path: Path) -> None:
    with DiskStorage.open(tmp_path), pytest.raises(StorageError, match="in use"):
        DiskStorage.open(tmp_path)
    DiskStorage.open(tmp_path).close()


# --- MemoryStorage.crash ---------------------------------------------------------------------


def test_memory_crash_with_fsync_keeps_every_save() -> None:
    storage = MemoryStorage(fsync=True)
    storage.save(hard_state=HardState(term=1), entries=ents(1, 4, 1))
    storage.compact(snap(2, 1))
    crashed = storage.crash()
    assert (
        crashed.recover()
        == storage.recover()
        == Recovered(HardState(term=1), snap(2, 1), tuple(ents(3, 4, 1)))
    )
    crashed.save(entries=ents(5, 5, 1))  # the crashed copy is a storage of its own
    assert storage.recover().entries == tuple(ents(3, 4, 1))


def test_memory_crash_without_fsync_keeps_what_was_synced() -> None:
    storage = MemoryStorage(fsync=False)
    storage.save(hard_state=HardState(term=1), entries=ents(1, 4, 1))
    assert storage.crash().recover() == Recovered()
    storage.sync()
    synced = storage.recover()
    storage.save(hard_state=HardState(term=2), entries=ents(3, 6, 2))
    storage.compact(snap(5, 2))
    crashed = storage.crash()
    assert crashed.recover() == synced
    crashed.save(entries=ents(5, 5, 3))
    assert crashed.crash().recover() == synced  # still unsynced in the new one
