"""etcd compaction by the API server, as kube-apiserver does it: every interval, the
server whose conditional write of compact_rev_key wins compacts to the revision it
recorded one interval earlier, so watchers always keep an interval of history, and two
API servers on one etcd compact once per interval, not twice."""

from __future__ import annotations

import pytest
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver._compaction import COMPACT_REV_KEY, Compactor, compact_round
from actorkube.etcd import EtcdError, start_group


async def test_a_round_compacts_to_what_the_round_before_recorded(autojump_clock):
    async with ActorSystem() as system:
        etcd = start_group(system, 3).client(timeout=30)
        for i in range(5):
            await etcd.put(b"/k", str(i).encode())
        version, recorded = await compact_round(etcd, 0, 0)  # the first round: no compaction
        assert version == 1
        old = (await etcd.get(b"/k")).header.revision - 1
        assert (await etcd.get(b"/k", revision=old)).kvs  # history still there
        for i in range(5):
            await etcd.put(b"/k", str(i).encode())
        version, _ = await compact_round(etcd, version, recorded)
        assert version == 2
        with pytest.raises(EtcdError):
            await etcd.get(b"/k", revision=recorded - 1)  # compacted away
        assert (await etcd.get(b"/k", revision=recorded)).kvs  # kept: one interval's worth


async def test_two_servers_compact_once_per_interval(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        etcd = group.client(timeout=30)
        one = Compactor(group.client(name="c1", timeout=30), interval=60)
        two = Compactor(group.client(name="c2", timeout=30), interval=60)
        system.spawn(lambda: one, name="compactor-1")
        system.spawn(lambda: two, name="compactor-2")
        for _ in range(5):
            for i in range(10):
                await etcd.put(b"/k", str(i).encode())
            await trio.sleep(60)
        key = (await etcd.get(COMPACT_REV_KEY)).kvs[0]
        # One successful write per round (the first one of each server's round), not two.
        assert key.version <= 6
        assert max(one.compacted_to, two.compacted_to) > 0
