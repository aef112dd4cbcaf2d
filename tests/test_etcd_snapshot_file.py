"""Backups: ``save_snapshot`` writes a member's store to a checksummed file,
``restore_snapshot`` makes the data directories of a new cluster from it (as etcdctl
``snapshot save`` and etcdutl ``snapshot restore``). Groups run on trio's virtual clock;
the restored ones on disk (fsync off for the members: their storage would work in
threads, and the virtual clock would race ahead meanwhile)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.etcd import (
    CorruptSnapshot,
    EtcdStateMachine,
    MVCCStore,
    PutRequest,
    RangeRequest,
    restore_snapshot,
    save_snapshot,
    snapshot_status,
    start_group,
    start_member,
)
from actorkube.etcd._snapshot import encode_snapshot
from actorkube.etcd._types import DeleteRangeRequest, LeaseGrantRequest
from actorkube.raft import DiskStorage

CLUSTER = {n: f"ak://local/etcd-{n}" for n in (1, 2, 3)}


async def fill(client) -> int:
    """Keys with a history, a deletion, a compaction and a lease; the revision after."""
    lease = (await client.lease_grant(60)).id
    for i in range(10):
        await client.put(b"/k/%d" % i, b"v%d" % i)
    await client.put(b"/k/1", b"changed")
    await client.delete(b"/k/2")
    await client.put(b"/leased", b"x", lease=lease)
    await client.compact(4)
    return (await client.get(b"/k/0")).header.revision


async def everything(client) -> list[tuple]:
    got = await client.get(b"\0", b"\0")
    return [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
            for kv in got.kvs]  # fmt: skip


async def test_a_saved_snapshot_restores_into_a_new_cluster(autojump_clock, tmp_path) -> None:
    backup = tmp_path / "backup.db"
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        revision = await fill(client)
        before = await everything(client)
        old = await client.get(b"/k/1", revision=revision - 2)  # history survives too
        leases = (await client.lease_leases()).leases
        info = await save_snapshot(client, backup)
        await group.stop()
    assert info.revision == revision and info.size == backup.stat().st_size
    assert not list(tmp_path.glob("*.part"))
    assert snapshot_status(backup) == info

    restored = restore_snapshot(backup, tmp_path / "cluster", initial_cluster=CLUSTER)
    assert restored == info
    assert sorted(p.name for p in (tmp_path / "cluster").iterdir()) == [
        "member-1",
        "member-2",
        "member-3",
    ]
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path / "cluster", fsync=False)
        client = group.client()
        assert await everything(client) == before
        assert (await client.get(b"/k/0")).header.revision == revision
        again = await client.get(b"/k/1", revision=revision - 2)
        assert again.kvs == old.kvs
        assert (await client.lease_leases()).leases == leases
        ttl = await client.lease_time_to_live(leases[0], keys=True)
        assert ttl.keys == (b"/leased",)
        # Writes continue from the restored revision; the membership is the new one.
        assert (await client.put(b"/after", b"1")).header.revision == revision + 1
        members = await client.member_list()
        assert [(m.id, m.address, m.is_learner, m.started) for m in members] == [
            (n, a, False, True) for n, a in CLUSTER.items()
        ]
        # A member joining the restored cluster gets its state as a Raft snapshot (the
        # log before the restored base exists nowhere).
        cluster = {**CLUSTER, 4: "ak://local/etcd-4"}
        assert await client.member_add(cluster[4], learner=True) == 4
        joined = await start_member(system, 4, "etcd-4", cluster, state="existing")
        reader = joined.client(name="reader", refresh_interval=math.inf)
        reader.leader = 4

        async def caught_up() -> bool:
            got = await reader.get(b"/after", serializable=True)
            return got.header.revision == revision + 1

        await wait_for(caught_up)
        assert await everything(reader) == await everything(client)
        await joined.stop()
        await group.stop()


async def test_members_restored_one_at_a_time_form_one_cluster(autojump_clock, tmp_path):
    backup = tmp_path / "backup.db"
    async with ActorSystem() as system:
        group = start_group(system, 1)
        client = group.client()
        await client.put(b"a", b"1")
        await client.put(b"b", b"2")
        info = await save_snapshot(client, backup, member=1)
        await group.stop()
    # As etcdutl is run once per member, each with its --name: the same file and cluster.
    for node in CLUSTER:
        restore_snapshot(backup, tmp_path / "data", initial_cluster=CLUSTER, member=node)
    async with ActorSystem() as system:
        # Each member on its own, as separate processes would start them.
        groups = [
            await start_member(
                system, node, f"etcd-{node}", CLUSTER, data_dir=tmp_path / "data", fsync=False
            )
            for node in CLUSTER
        ]
        client = groups[0].client()
        got = await client.get(b"a", b"c")
        assert [kv.value for kv in got.kvs] == [b"1", b"2"]
        assert got.header.revision == info.revision == 3
        assert (await client.put(b"c", b"3")).header.revision == 4
        assert sorted(client.members) == [1, 2, 3]
        for g in groups:
            await g.stop()


async def test_a_damaged_snapshot_is_refused_and_nothing_is_written(autojump_clock, tmp_path):
    backup = tmp_path / "backup.db"
    async with ActorSystem() as system:
        group = start_group(system, 3)
        await fill(group.client())
        await save_snapshot(group.client(), backup)
        await group.stop()
    good = backup.read_bytes()
    target = tmp_path / "cluster"
    damaged = {
        "flipped": good[:40] + bytes([good[40] ^ 1]) + good[41:],
        "truncated": good[: len(good) // 2],
        "trailer cut": good[:-1],
        "empty": b"",
        "foreign": b"SQLite format 3\0" + good[16:],
    }
    for what, data in damaged.items():
        backup.write_bytes(data)
        with pytest.raises(CorruptSnapshot):
            restore_snapshot(backup, target, initial_cluster=CLUSTER)
        with pytest.raises(CorruptSnapshot):
            snapshot_status(backup)
        assert not target.exists(), what
    # A file whose checksum holds but whose store does not decode is refused too.
    backup.write_bytes(encode_snapshot(7, b"not a store"))
    with pytest.raises(CorruptSnapshot, match="does not decode"):
        restore_snapshot(backup, target, initial_cluster=CLUSTER)
    assert not target.exists()


async def test_a_restore_never_writes_into_a_member_directory_in_use(autojump_clock, tmp_path):
    backup = tmp_path / "backup.db"
    async with ActorSystem() as system:
        group = start_group(system, 1)
        await group.client().put(b"k", b"v")
        await save_snapshot(group.client(), backup)
        await group.stop()
    target = tmp_path / "cluster"
    (target / "member-2").mkdir(parents=True)
    (target / "member-2" / "wal-0000000000000000-0000000000000001.log").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not empty"):
        restore_snapshot(backup, target, initial_cluster=CLUSTER)
    assert sorted(p.name for p in target.iterdir()) == ["member-2"]  # member-1 not written
    # An empty directory is fine (etcdutl allows it too).
    (target / "member-2" / "wal-0000000000000000-0000000000000001.log").unlink()
    restore_snapshot(backup, target, initial_cluster=CLUSTER)
    assert sorted(p.name for p in target.iterdir()) == ["member-1", "member-2", "member-3"]


keys = st.binary(min_size=1, max_size=6)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, st.binary(max_size=8), st.booleans()),
        st.tuples(st.just("delete"), keys, st.just(b""), st.just(False)),
    ),
    max_size=25,
)


@settings(max_examples=50)
@given(operations, st.integers(min_value=0, max_value=30), st.sampled_from([1, 3]))
def test_a_restored_store_is_the_saved_one(ops, compact_at, size) -> None:
    store = MVCCStore()
    lease = store.execute(LeaseGrantRequest(30, 0)).id
    for kind, key, value, leased in ops:
        if kind == "put":
            store.execute(PutRequest(key, value, lease=lease if leased else 0))
        else:
            store.execute(DeleteRangeRequest(key))
    if 0 < compact_at < store.revision:
        store.compact(compact_at)
    cluster = {n: f"ak://sys/m{n}" for n in range(1, size + 1)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "backup.db"
        path.write_bytes(encode_snapshot(store.revision, store.dump()))
        info = restore_snapshot(path, Path(tmp) / "data", initial_cluster=cluster, fsync=False)
        assert info.revision == store.revision
        for node in cluster:
            with DiskStorage.open(Path(tmp) / "data" / f"member-{node}", fsync=False) as disk:
                recovered = disk.recover()
            assert recovered.snapshot.meta.conf.voters == tuple(cluster)
            assert recovered.hard_state.commit == recovered.snapshot.meta.index
            machine = EtcdStateMachine()
            machine.restore(recovered.snapshot.data)
            assert machine.store.dump() == store.dump()
            assert [(m.id, m.address) for m in machine.members.listed()] == list(cluster.items())
            every_key = machine.store.execute(RangeRequest(b"\0", b"\0"))
            assert every_key.header.revision == store.revision
