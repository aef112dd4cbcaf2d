"""DiskStorage: Raft storage as a write-ahead log of checksummed records plus snapshot files.

Layout of the directory (docs/raft-storage.md has the byte offsets and the reasons):

- ``wal-<seq>-<first index>.log``: segments, 16-digit zero-padded decimal numbers. ``seq``
  orders them; ``first index`` is the log's last index + 1 when the segment was cut.
- ``snap-<index>-<term>.snap``: the latest snapshot, one record; written to a ``.tmp``
  file, fsynced, renamed, and the directory fsynced.
- ``LOCK``: held (flock) while a DiskStorage has the directory open.

Rules of this file:

- One ``save`` is one record: a checksummed list of the operations ``plan_save`` made,
  written with one ``write`` call, then fsynced. A record is all or nothing, so a crash
  mid-save recovers the state before that save.
- Every segment starts with a header record (the snapshot marker and the hard state at
  the time of the cut), so the segments from any one on rebuild the state, provided the
  snapshot covers every entry that was in the log at that segment's cut. After each
  snapshot and each cut, the segments before the last one for which that holds are
  deleted, and every snapshot file but the current one.
- Recovery replays the segments from the first one (after the last gap in ``seq``: a
  gap is a compaction interrupted by a power cut) with ``LogState.apply``. A torn tail
  of the last segment (a crash mid-write) is truncated; any other damage raises
  ``CorruptLog`` naming the file and the byte offset, and nothing is skipped.
- fsync=False never calls fsync (not even on directories): a process crash loses
  nothing, a power cut may lose recent saves.
- Synchronous file I/O, one caller at a time (the replica actor calls it from a worker
  thread).
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import attrs
import msgpack

from actorkube.actor import DecodeError, decode_message, encode_message

from ._storage import (
    ENTRY,
    HARD_STATE,
    CorruptLog,
    InvalidWrite,
    LogState,
    Op,
    OpKind,
    Recovered,
    StorageClosed,
    StorageError,
    check_compaction,
    plan_save,
)
from ._types import Entry, HardState, Snapshot

__all__ = ["DiskStorage"]

# length of the payload, crc32 of the payload, crc32 of the first 8 header bytes.
_HEADER = struct.Struct(">III")
_HEAD = struct.Struct(">II")
_CRC = struct.Struct(">I")
# One packer for every record: msgpack.packb would build a new one per call.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_SEGMENT = re.compile(r"wal-(\d{16})-(\d{16})\.log")
_SNAPSHOT_GLOB = "snap-*.snap"


def _no_refs(system: str, name: str) -> None:
    return None  # Raft's values hold no actor references


# --- records (pure) --------------------------------------------------------------------


def encode_record(payload: bytes) -> bytes:
    """Frame ``payload``: a 12-byte header (length, payload checksum, header checksum)."""
    head = _HEAD.pack(len(payload), zlib.crc32(payload))
    return b"".join((head, _CRC.pack(zlib.crc32(head)), payload))


@attrs.frozen
class Scan:
    """What ``scan_records`` found: the intact records as (offset, payload); then either
    the end of the data, a torn tail at ``torn_at``, or damage at ``corrupt_at``."""

    records: list[tuple[int, bytes]]
    torn_at: int | None = None
    corrupt_at: int | None = None
    reason: str = ""


def scan_records(data: bytes, *, may_be_torn: bool) -> Scan:
    """Split ``data`` into records.

    A torn tail is only possible where the last write went (``may_be_torn``: the last
    segment). It is: fewer bytes than a header; a header whose length runs past the
    end; a record whose payload checksum fails with nothing but zeros after it; or a
    header that fails its checksum with nothing but zeros from it on (a file extended
    by the filesystem but never written). Anything else that fails is corruption.
    """
    records: list[tuple[int, bytes]] = []
    pos, size = 0, len(data)

    def bad(reason: str, torn: bool) -> Scan:
        if torn and may_be_torn:
            return Scan(records, torn_at=pos)
        return Scan(records, corrupt_at=pos, reason=reason)

    while pos < size:
        if size - pos < _HEADER.size:
            return bad(f"{size - pos} bytes left, less than a record header", torn=True)
        length, payload_crc, header_crc = _HEADER.unpack_from(data, pos)
        if zlib.crc32(data[pos : pos + 8]) != header_crc:
            return bad("record header checksum mismatch", torn=_zeros(data, pos))
        end = pos + _HEADER.size + length
        if end > size:
            return bad(f"record of {length} bytes runs past the end of the file", torn=True)
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != payload_crc:
            return bad("record checksum mismatch", torn=_zeros(data, end))
        records.append((pos, payload))
        pos = end
    return Scan(records)


def _zeros(data: bytes, start: int) -> bool:
    return not data[start:].strip(b"\0")


def encode_ops(ops: Sequence[Op]) -> bytes:
    """A record's payload: msgpack array of [kind, value] (docs/raft-storage.md)."""
    wire = []
    for kind, value in ops:
        if kind in (ENTRY, HARD_STATE):
            wire.append((int(kind), encode_message(value)))
        elif kind == OpKind.SNAPSHOT:
            wire.append([int(kind), list(value)])
        else:
            wire.append([int(kind), value])
    return _pack(wire)


def decode_ops(payload: bytes) -> list[Op]:
    """The inverse of ``encode_ops``. Raises ``ValueError`` (or ``DecodeError``)."""
    try:
        wire = msgpack.unpackb(payload, raw=False)
    except Exception as exc:
        raise ValueError(f"payload is not msgpack: {exc}") from None
    if type(wire) is not list or not wire:
        raise ValueError("payload is not a non-empty list of operations")
    ops: list[Op] = []
    for item in wire:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            raise ValueError(f"malformed operation {item!r:.80}")
        kind, value = item
        if kind == OpKind.ENTRY:
            ops.append((OpKind.ENTRY, _decode(value, Entry)))
        elif kind == OpKind.HARD_STATE:
            ops.append((OpKind.HARD_STATE, _decode(value, HardState)))
        elif kind == OpKind.SNAPSHOT and _ints(value, 2):
            ops.append((OpKind.SNAPSHOT, (value[0], value[1])))
        elif kind == OpKind.TRUNCATE and type(value) is int:
            ops.append((OpKind.TRUNCATE, value))
        else:
            raise ValueError(f"unknown or malformed operation of kind {kind}")
    return ops


def _decode(value: object, cls: type) -> object:
    if type(value) is not bytes:
        raise ValueError(f"{cls.__name__} is not encoded as bytes")
    decoded = decode_message(value, _no_refs)
    if type(decoded) is not cls:
        raise ValueError(f"expected {cls.__name__}, found {type(decoded).__name__}")
    return decoded


def _ints(value: object, n: int) -> bool:
    return type(value) is list and len(value) == n and all(type(v) is int for v in value)


# --- files ------------------------------------------------------------------------------


@attrs.frozen
class _Segment:
    seq: int
    first_index: int  # the log's last index + 1 when this segment was cut
    path: Path


def _segment_path(directory: Path, seq: int, first_index: int) -> Path:
    return directory / f"wal-{seq:016d}-{first_index:016d}.log"


def _snapshot_path(directory: Path, index: int, term: int) -> Path:
    return directory / f"snap-{index:016d}-{term:016d}.snap"


def _list_segments(directory: Path) -> list[_Segment]:
    found = []
    for path in directory.iterdir():
        match = _SEGMENT.fullmatch(path.name)
        if match:
            found.append(_Segment(int(match[1]), int(match[2]), path))
    return sorted(found, key=lambda segment: segment.seq)


def _write_all(fd: int, data: bytes) -> None:
    written = os.write(fd, data)
    if written == len(data):
        return  # the usual case: one write took it all
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(directory: Path) -> int:
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StorageError(f"{directory} is in use by another DiskStorage") from None
    return fd


def _truncate(path: Path, size: int, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _keep_from(segments: list[_Segment], snapshot_index: int) -> int:
    """The position of the first segment recovery needs: the last one cut when every
    entry in the log was at or below the snapshot's index (see the module docstring)."""
    return max(
        (n for n, s in enumerate(segments) if s.first_index - 1 <= snapshot_index), default=0
    )


def _stale_snapshots(directory: Path, log: LogState) -> list[Path]:
    """Every snapshot file but the one the log refers to (older ones, orphans of a crash
    between writing a snapshot file and the record that refers to it)."""
    current = _snapshot_path(directory, *log.snapshot).name if log.snapshot else None
    return [p for p in sorted(directory.glob(_SNAPSHOT_GLOB)) if p.name != current]


def _header_ops(log: LogState) -> list[Op]:
    ops: list[Op] = []
    if log.snapshot is not None:
        ops.append((OpKind.SNAPSHOT, log.snapshot))
    ops.append((OpKind.HARD_STATE, log.hard_state))
    return ops


def _replay(segments: list[_Segment]) -> tuple[LogState, int | None]:
    """Replay ``segments`` (consecutive ``seq``); returns the log and where the last
    segment's torn tail starts (None if it has none; 0 if it holds no whole record).
    Raises ``CorruptLog``."""
    log = LogState(offset=segments[0].first_index - 1)
    torn_at = None
    for n, segment in enumerate(segments):
        last = n == len(segments) - 1
        if n and log.last_index != segment.first_index - 1:
            raise CorruptLog(
                segment.path,
                0,
                f"segment starts at index {segment.first_index} but the log before it "
                f"ends at {log.last_index}",
            )
        scan = scan_records(segment.path.read_bytes(), may_be_torn=last)
        if scan.corrupt_at is not None:
            raise CorruptLog(segment.path, scan.corrupt_at, scan.reason)
        if not scan.records and not last:
            raise CorruptLog(segment.path, 0, "segment holds no record")
        for offset, payload in scan.records:
            try:
                log.apply_all(decode_ops(payload))
            except (ValueError, DecodeError, InvalidWrite) as exc:
                raise CorruptLog(segment.path, offset, f"bad record: {exc}") from None
        # A last segment without a whole record is a cut interrupted before its header.
        torn_at = scan.torn_at if scan.records else 0
    return log, torn_at


def _load_snapshot(path: Path, index: int, term: int) -> Snapshot:
    if not path.exists():
        raise CorruptLog(path, 0, "snapshot file is missing; the log refers to it")
    scan = scan_records(path.read_bytes(), may_be_torn=False)
    if scan.corrupt_at is not None:
        raise CorruptLog(path, scan.corrupt_at, scan.reason)
    if len(scan.records) != 1:
        raise CorruptLog(path, 0, f"{len(scan.records)} records, expected one snapshot")
    try:
        snapshot = _decode(scan.records[0][1], Snapshot)
    except (ValueError, DecodeError) as exc:
        raise CorruptLog(path, 0, f"bad snapshot: {exc}") from None
    if (snapshot.meta.index, snapshot.meta.term) != (index, term):
        raise CorruptLog(path, 0, f"holds snapshot {snapshot.meta.index}/{snapshot.meta.term}")
    return snapshot


# --- the storage -----------------------------------------------------------------------


class DiskStorage:
    """Raft storage in a directory: see the module docstring. Create with ``open``."""

    # Whether a call may block long enough to need a worker thread: with fsync, yes; a
    # write to the page cache costs less (~10 us) than a hop to a thread (~130 us).
    blocking = True
    in_memory = False

    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool,
        segment_bytes: int,
        lock_fd: int,
        log: LogState,
        snapshot: Snapshot | None,
        segments: list[_Segment],
    ) -> None:
        self._directory = directory
        self._fsync = fsync
        self.blocking = fsync
        self._segment_bytes = segment_bytes
        self._lock_fd: int | None = lock_fd
        self._log = log
        self._snapshot = snapshot
        self._segments = segments
        active = segments[-1].path
        self._fd = os.open(active, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._size = os.fstat(self._fd).st_size
        self._failure: OSError | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = True,
        segment_bytes: int = 64 * 2**20,
    ) -> DiskStorage:
        """Open the storage in ``directory``, creating it, or recovering what is there.

        Raises ``CorruptLog`` if the files are damaged other than by a torn last write,
        ``StorageError`` if another DiskStorage has the directory open.
        """
        if segment_bytes <= 0:
            raise ValueError("segment_bytes must be positive")
        directory = Path(directory)
        if not directory.is_dir():
            directory.mkdir(parents=True)
            if fsync:
                _fsync_dir(directory.parent)
        lock_fd = _lock(directory)
        try:
            return cls._recover(directory, fsync, segment_bytes, lock_fd)
        except BaseException:
            os.close(lock_fd)
            raise

    @classmethod
    def _recover(
        cls, directory: Path, fsync: bool, segment_bytes: int, lock_fd: int
    ) -> DiskStorage:
        removed = list(directory.glob("*.tmp"))
        segments = _list_segments(directory)
        if not segments and any(directory.glob(_SNAPSHOT_GLOB)):
            raise CorruptLog(directory, 0, "snapshot files but no log segment")
        # Segments before the last gap in seq are what an interrupted compaction left.
        start = max(
            (n for n in range(1, len(segments)) if segments[n].seq != segments[n - 1].seq + 1),
            default=0,
        )
        removed += [segment.path for segment in segments[:start]]
        segments = segments[start:]
        log, torn_at, snapshot = LogState(), None, None
        first_path = segments[0].path if segments else directory
        if segments:
            log, torn_at = _replay(segments)
        if not log.complete:
            raise CorruptLog(
                first_path,
                0,
                f"entries {log.snapshot_index + 1}..{log.offset} are missing "
                "(a segment before this one was deleted or lost)",
            )
        if log.snapshot is not None:
            index, term = log.snapshot
            snapshot = _load_snapshot(_snapshot_path(directory, index, term), index, term)
        # Only now that the files are known good, repair: cut the torn tail, remove what
        # an interrupted cut, compaction or snapshot write left behind.
        if torn_at == 0:
            removed.append(segments.pop().path)
        elif torn_at is not None:
            _truncate(segments[-1].path, torn_at, fsync)
        keep = _keep_from(segments, log.snapshot_index)
        removed += [segment.path for segment in segments[:keep]]
        removed += _stale_snapshots(directory, log)
        del segments[:keep]
        for path in removed:
            path.unlink()
        if not segments:
            segments.append(_create_segment(directory, 0, log, fsync))
        elif removed and fsync:
            _fsync_dir(directory)
        return cls(
            directory,
            fsync=fsync,
            segment_bytes=segment_bytes,
            lock_fd=lock_fd,
            log=log,
            snapshot=snapshot,
            segments=segments,
        )

    def recover(self) -> Recovered:
        """The state as of the last save (just after ``open``: what was on disk)."""
        self._check_usable()
        return self._log.recovered(self._snapshot)

    def save(
        self,
        *,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        snapshot: Snapshot | None = None,
    ) -> None:
        """See ``Storage.save``. One record, one write, one fsync (plus the snapshot
        file's, when there is a snapshot). A save with nothing to persist writes nothing."""
        self._check_usable()
        ops = plan_save(self._log, hard_state=hard_state, entries=entries, snapshot=snapshot)
        if ops:
            self._persist(ops, snapshot)

    def compact(self, snapshot: Snapshot) -> None:
        """See ``Storage.compact``: also deletes the segments and snapshot files that
        recovery no longer needs."""
        self._check_usable()
        check_compaction(self._log, snapshot)
        ops = plan_save(self._log, hard_state=None, entries=(), snapshot=snapshot)
        self._persist(ops, snapshot)

    def close(self) -> None:
        """Close the files and release the directory. Idempotent."""
        if self._lock_fd is None:
            return
        os.close(self._fd)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> DiskStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_usable(self) -> None:
        if self._lock_fd is None:
            raise StorageClosed(f"DiskStorage {self._directory} is closed")
        if self._failure is not None:
            raise StorageError(
                f"an earlier write to {self._directory} failed; reopen the storage"
            ) from self._failure

    def _persist(self, ops: list[Op], snapshot: Snapshot | None) -> None:
        # Encode before touching the disk: a value that cannot be encoded writes nothing.
        record = encode_record(encode_ops(ops))
        snapshot_file = encode_record(encode_message(snapshot)) if snapshot else None
        try:
            if snapshot is not None:
                self._write_snapshot_file(snapshot, snapshot_file)
            _write_all(self._fd, record)
            if self._fsync:
                os.fsync(self._fd)
            self._size += len(record)
            self._log.apply_all(ops)
            if snapshot is not None:
                self._snapshot = snapshot
                self._reclaim()
            if self._size >= self._segment_bytes:
                self._cut()
        except OSError as exc:
            # The file may hold part of a record now: only recovery can tell what is
            # durable, so the storage refuses further use until it is reopened.
            self._failure = exc
            raise

    def _write_snapshot_file(self, snapshot: Snapshot, data: bytes) -> None:
        path = _snapshot_path(self._directory, snapshot.meta.index, snapshot.meta.term)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        if self._fsync:
            _fsync_dir(self._directory)

    def _reclaim(self) -> None:
        """Delete the segments and snapshot files recovery no longer needs."""
        keep = _keep_from(self._segments, self._log.snapshot_index)
        removed = [segment.path for segment in self._segments[:keep]]
        removed += _stale_snapshots(self._directory, self._log)
        del self._segments[:keep]
        for path in removed:  # oldest segment first: an interruption leaves a gap at most
            path.unlink()
        if removed and self._fsync:
            _fsync_dir(self._directory)

    def _cut(self) -> None:
        seq = self._segments[-1].seq + 1
        segment = _create_segment(self._directory, seq, self._log, self._fsync)
        fd = os.open(segment.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        os.close(self._fd)
        self._fd, self._size = fd, os.fstat(fd).st_size
        self._segments.append(segment)
        self._reclaim()


def _create_segment(directory: Path, seq: int, log: LogState, fsync: bool) -> _Segment:
    """A new segment starting with the header record; durable when fsync is on."""
    segment = _Segment(seq, log.last_index + 1, _segment_path(directory, seq, log.last_index + 1))
    fd = os.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        _write_all(fd, encode_record(encode_ops(_header_ops(log))))
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    if fsync:
        _fsync_dir(directory)
    return segment
