"""Backups: a member's store saved to a file (etcdctl ``snapshot save``), checked
(``etcdutl snapshot status``), and restored into the data directories of a new cluster
(``etcdutl snapshot restore``).

Rules of this file:

- A snapshot file holds data only: the MVCC store with its revision history since the
  last compaction, and its leases. Not the membership, not the clients' sessions: a
  restore makes a new cluster, whose members are the restore's ``initial_cluster``.
- The file is written to ``<path>.part``, fsynced, renamed, and its directory fsynced:
  a file at ``path`` is always whole. Its SHA-256 trailer covers every byte before it
  (etcd appends a SHA-256 to its db file the same way), so a damaged or truncated file
  is refused before anything is written.
- A restore writes each member's directory as ``.member-N.restoring`` and renames it to
  ``member-N`` once complete, so an interrupted restore leaves no directory a member
  would start from. It refuses to write into a member directory that is not empty.
- A restored member's storage holds one Raft snapshot at index 1, term 1 (the new
  cluster's voters as its configuration) and the hard state (term 1, commit 1): every
  member starts from the same committed base and the first leader is elected at term
  2, as after etcdutl's restore. The store keeps its revision: writes continue at the
  next one.

File layout (integers big-endian):

| offset | size | field |
|---|---|---|
| 0 | 8 | magic ``AKETCDSN`` |
| 8 | 4 | format version, 1 |
| 12 | 8 | the store's revision |
| 20 | 8 | payload length ``n`` |
| 28 | n | payload: ``MVCCStore.dump()`` bytes |
| 28 + n | 32 | SHA-256 of bytes 0 .. 28 + n |
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from actorkube.actor import Address
from actorkube.raft import ConfState, DiskStorage, HardState, Snapshot, SnapshotMeta

from ._client import EtcdClient
from ._members import initial_member
from ._mvcc import MVCCStore
from ._node import EtcdStateMachine

MAGIC = b"AKETCDSN"
VERSION = 1
_HEADER = struct.Struct(">8sIQQ")
_DIGEST = 32
RESTORED_INDEX = 1  # the Raft index (and term) of a restored cluster's base
NOT_EMPTY = "data-dir {!r} not empty or could not be read"  # etcdutl's words


class CorruptSnapshot(Exception):
    """The file is not a whole snapshot as ``save_snapshot`` wrote it (the environment's
    fault: a damaged, truncated or foreign file). Nothing was restored."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@attrs.frozen
class SnapshotInfo:
    """A snapshot file: the store's ``revision``, the file's ``size`` in bytes and its
    ``sha256`` (hex, the trailer)."""

    revision: int
    size: int
    sha256: str


def encode_snapshot(revision: int, dump: bytes) -> bytes:
    """The file's bytes for a store dump at ``revision`` (see the module docstring)."""
    body = _HEADER.pack(MAGIC, VERSION, revision, len(dump)) + dump
    return body + hashlib.sha256(body).digest()


def decode_snapshot(data: bytes, path: object = "<bytes>") -> tuple[int, bytes]:
    """(revision, store dump) from a file's bytes. Raises ``CorruptSnapshot``."""
    if len(data) < _HEADER.size + _DIGEST:
        raise CorruptSnapshot(path, f"{len(data)} bytes: too short for a snapshot file")
    magic, version, revision, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptSnapshot(path, "not an actorkube etcd snapshot (bad magic)")
    if version != VERSION:
        raise CorruptSnapshot(path, f"unknown format version {version}")
    expected = _HEADER.size + length + _DIGEST
    if len(data) != expected:
        raise CorruptSnapshot(path, f"{len(data)} bytes, expected {expected} (truncated?)")
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise CorruptSnapshot(path, "SHA-256 mismatch: the file is damaged")
    return revision, body[_HEADER.size :]


async def save_snapshot(
    client: EtcdClient, path: str | os.PathLike[str], *, member: int | None = None
) -> SnapshotInfo:
    """Save the store of ``member`` (default: the leader) to ``path``, atomically and
    durably (see the module docstring); what was saved."""
    response = await client.snapshot(member)
    data = encode_snapshot(response.header.revision, response.data)
    await trio.to_thread.run_sync(_write_durably, Path(path), data)
    return SnapshotInfo(response.header.revision, len(data), data[-_DIGEST:].hex())


def snapshot_status(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Check a snapshot file whole (checksum and store); what it holds. Raises
    ``CorruptSnapshot``."""
    data = Path(path).read_bytes()
    revision, dump = decode_snapshot(data, path)
    _load_store(dump, revision, path)
    return SnapshotInfo(revision, len(data), data[-_DIGEST:].hex())


def restore_snapshot(
    path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str],
    *,
    initial_cluster: Mapping[int, str],
    member: int | None = None,
    fsync: bool = True,
    **store_options: Any,
) -> SnapshotInfo:
    """Make a new cluster from a snapshot file: write ``data_dir/member-N`` for every
    member of ``initial_cluster`` (node id -> peer address), or for ``member`` alone (as
    etcdutl restores one member per call, each with the same file and cluster), so that
    ``start_group(data_dir=...)`` or ``start_member`` opens a cluster of exactly those
    members, holding the snapshot's keys, leases and revision history at its revision.

    The file is checked whole first (``CorruptSnapshot``), and every target directory
    must be missing or empty (``FileExistsError``); either refusal writes nothing.
    ``store_options`` are the members' store options (``min_lease_ttl``...)."""
    data = Path(path).read_bytes()
    revision, dump = decode_snapshot(data, path)
    store = _load_store(dump, revision, path, **store_options)
    if not initial_cluster:
        raise ValueError("initial_cluster names no member")
    for address in initial_cluster.values():
        Address.parse(address)  # ValueError: not an actor address
    if member is not None and member not in initial_cluster:
        raise ValueError(f"member {member} is not in initial_cluster")
    targets = [member] if member is not None else sorted(initial_cluster)
    root = Path(data_dir)
    for node in targets:
        directory = root / f"member-{node}"
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise FileExistsError(NOT_EMPTY.format(str(directory)))
    members = [initial_member(node, a) for node, a in sorted(initial_cluster.items())]
    machine = EtcdStateMachine(initial_members=members, **store_options)
    machine.store = store
    meta = SnapshotMeta(RESTORED_INDEX, RESTORED_INDEX, ConfState(tuple(sorted(initial_cluster))))
    base = Snapshot(meta, machine.snapshot())
    hard = HardState(term=RESTORED_INDEX, commit=RESTORED_INDEX)
    for node in targets:
        _write_member(root, node, base, hard, fsync)
    return SnapshotInfo(revision, len(data), data[-_DIGEST:].hex())


def _load_store(dump: bytes, revision: int, path: object, **store_options: Any) -> MVCCStore:
    try:
        store = MVCCStore.load(dump, **store_options)
    except Exception as exc:  # checksummed but undecodable: not written by save_snapshot
        raise CorruptSnapshot(path, f"the store does not decode: {exc!r}") from None
    if store.revision != revision:
        raise CorruptSnapshot(path, f"header says revision {revision}, store {store.revision}")
    return store


def _write_member(root: Path, node: int, base: Snapshot, hard: HardState, fsync: bool) -> None:
    final = root / f"member-{node}"
    partial = root / f".member-{node}.restoring"
    if partial.exists():
        shutil.rmtree(partial)  # what an interrupted restore of ours left
    with DiskStorage.open(partial, fsync=fsync) as storage:
        storage.save(snapshot=base, hard_state=hard)
    os.replace(partial, final)  # over a missing or empty directory
    if fsync:
        _fsync_dir(root)


def _write_durably(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with open(partial, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
