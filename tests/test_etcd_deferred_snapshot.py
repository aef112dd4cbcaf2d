"""Raft snapshots of a group kept in memory are serialised only when read."""

from __future__ import annotations

from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.etcd import EtcdStateMachine, start_group
from actorkube.raft._replica import Deferred


async def test_in_memory_snapshots_wait_to_be_read_and_read_as_the_state_then(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3, snapshot_every=20)
        client = group.client()
        for i in range(30):
            await client.put(b"k%02d" % i, b"first")

        async def compacted():
            snaps = [s.recover().snapshot for s in group.storages.values()]
            return all(s is not None and s.meta.index >= 20 for s in snaps) and snaps

        snaps = await wait_for(compacted)
        # The log was compacted, but no member serialised its state for it.
        assert all(type(s.data) is Deferred for s in snaps)
        # Writes after the capture are not in it, not even to keys it holds.
        for i in range(30):
            await client.put(b"k%02d" % i, b"second")
        for snap in snaps:
            machine = EtcdStateMachine()
            machine.restore(bytes(snap.data))
            store = machine.store
            # Each entry up to the snapshot's index is in the state it restores; the
            # snapshot was taken at its index, when every later put was still to come.
            assert 20 <= store.revision <= 31
            for i in range(store.revision - 1):
                assert store.get(b"k%02d" % i).value == b"first"
        assert bytes(snaps[0].data) is bytes(snaps[0].data)  # serialised once
        await group.stop()


async def test_a_group_on_disk_writes_its_snapshots_whole(autojump_clock, tmp_path):
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path, fsync=False, snapshot_every=20)
        client = group.client()
        for i in range(30):
            await client.put(b"k%02d" % i, b"v")

        async def compacted():
            snaps = [s.recover().snapshot for s in group.storages.values()]
            return all(s is not None for s in snaps) and snaps

        assert all(type(s.data) is bytes for s in await wait_for(compacted))
        await group.stop()
