"""etcd membership (the Cluster API): members added as learners catch up and are
promoted, removed (the leader too), refused as etcd refuses them, and kept across
restarts; a removed member stops. In one actor system on trio's virtual clock, and a
member joining over the TCP transport from a second system.
"""

from __future__ import annotations

import math

import pytest
import trio
from virtual_time import wait_for

from actorkube.actor import ActorSystem, decode_message, serve_tcp
from actorkube.etcd import (
    ClusterMismatch,
    EtcdClient,
    InvalidPeerAddress,
    LearnerNotReady,
    Member,
    MemberNotFound,
    MemberNotLearner,
    MembershipChangePending,
    NotEnoughStartedMembers,
    PeerAddressExists,
    TooManyLearners,
    UnhealthyCluster,
    start_group,
    start_member,
)
from actorkube.etcd._members import (
    MemberAddRequest,
    MemberChange,
    MemberTable,
    refuse_add,
    refuse_remove,
)
from actorkube.raft import GetStatus, MemoryStorage


def cluster_of(group) -> dict[int, str]:
    return {node: str(ref.address) for node, ref in group.members.items()}


def view(members) -> list[tuple]:
    return [(m.id, m.name, m.address, m.is_learner, m.started) for m in members]


async def promote_when_ready(client: EtcdClient, node: int) -> tuple[Member, ...]:
    """Promote ``node``, waiting (virtual time) while it is still catching up."""
    while True:
        try:
            return await client.member_promote(node)
        except LearnerNotReady:
            await trio.sleep(0.2)


async def stopped(system: ActorSystem, name: str) -> bool:
    return system.lookup(name) is None


async def member_revision(system: ActorSystem, ref) -> int:
    """The revision the member's own store is at (a serializable read there)."""
    reader = EtcdClient(system, {0: ref}, name="probe", refresh_interval=math.inf)
    reader.leader = 0
    return (await reader.get(b"any", serializable=True)).header.revision


async def test_a_learner_catches_up_is_promoted_and_serves(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        for i in range(20):
            await client.put(b"key-%02d" % i, b"%d" % i)
        address = "ak://local/etcd-4"
        assert await client.member_add(address, learner=True) == 4
        listed = await client.member_list()
        assert view(listed) == [
            (1, "etcd-1", "ak://local/etcd-1", False, True),
            (2, "etcd-2", "ak://local/etcd-2", False, True),
            (3, "etcd-3", "ak://local/etcd-3", False, True),
            (4, "", address, True, False),  # added, not started yet: no name (etcd's too)
        ]
        joined = await start_member(
            system, 4, "etcd-4", {**cluster_of(group), 4: address}, state="existing"
        )
        member = joined.members[4]
        revision = (await client.get(b"key-00")).header.revision

        async def caught_up() -> bool:
            return await member_revision(system, member) == revision

        await wait_for(caught_up)
        await promote_when_ready(client, 4)

        async def published():
            return [m for m in await client.member_list() if m.id == 4 and m.started]

        (fourth,) = await wait_for(published)  # it publishes its name once it runs
        assert (fourth.name, fourth.is_learner) == ("etcd-4", False)
        status = await member.ask(GetStatus())
        assert status.voters == (1, 2, 3, 4) and status.learners == ()
        # A client that knows only the new member learns the others, writes and reads.
        through = joined.client(name="through-4")
        put = await through.put(b"new", b"v")
        assert put.header.revision == revision + 1
        assert (await through.get(b"new")).kvs[0].value == b"v"
        await through.member_list()
        assert sorted(through.members) == [1, 2, 3, 4]  # it learnt every voter
        await joined.stop()
        await group.stop()


async def test_a_member_added_as_a_voter_is_promoted_once_it_caught_up(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        await client.put(b"k", b"v")
        address = "ak://local/etcd-4"
        assert await client.member_add(address) == 4
        (fourth,) = [m for m in await client.member_list() if m.id == 4]
        assert fourth.is_learner and fourth.auto_promote  # a learner until it caught up
        joined = await start_member(
            system, 4, "etcd-4", {**cluster_of(group), 4: address}, state="existing"
        )

        async def promoted():
            return [m for m in await client.member_list() if m.id == 4 and not m.is_learner]

        (fourth,) = await wait_for(promoted)
        assert fourth.started and not fourth.auto_promote
        assert (await joined.members[4].ask(GetStatus())).voters == (1, 2, 3, 4)
        await joined.stop()
        await group.stop()


async def test_removed_members_leave_and_stop_the_leader_included(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 5)
        client = group.client(timeout=30)
        await client.put(b"k", b"1")
        leader = await group.leader()
        follower = next(n for n in group.members if n != leader)
        remaining = await client.member_remove(follower)
        assert follower not in [m.id for m in remaining]
        remaining = await client.member_remove(leader)
        assert sorted(m.id for m in remaining) == sorted(set(group.members) - {leader, follower})
        # Both stop: the follower when it learns it was removed, the leader once it has
        # stepped down (after spreading the commit of its removal).
        for node in (follower, leader):
            name = f"etcd-{node}"
            await wait_for(lambda name=name: stopped(system, name))
        # The three others go on, with a new leader.
        put = await client.put(b"k", b"2")
        assert put.header.revision == 3
        survivors = [n for n in group.members if n not in (leader, follower)]
        for node in survivors:
            status = await group.members[node].ask(GetStatus())
            assert status.voters == tuple(survivors)
        assert sorted(client.members) == survivors
        with pytest.raises(MemberNotFound, match="etcdserver: member not found"):
            await client.member_remove(leader)  # removed already


async def test_a_member_removed_while_down_is_told_when_it_comes_back(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client(timeout=30)
        await client.put(b"k", b"v")
        leader = await group.leader()
        down = next(n for n in group.members if n != leader)
        await system.stop(group.members[down])
        await client.member_remove(down)  # it is down: it cannot hear of this
        # Back from its own storage, it still thinks it is a voter, and asks the others
        # for votes; they answer that it was removed, and it stops.
        await start_member(
            system, down, f"etcd-{down}", cluster_of(group), storage=group.storages[down]
        )
        await wait_for(lambda: stopped(system, f"etcd-{down}"))
        assert (await client.put(b"k", b"w")).header.revision == 3


async def test_strict_reconfiguration_keeps_an_active_quorum(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client(timeout=30)
        await client.put(b"k", b"v")
        leader = await group.leader()
        down, up = [n for n in group.members if n != leader]
        await system.stop(group.members[down])
        await trio.sleep(10)  # longer than etcd's health interval (5 s)
        # Removing the other live member would leave one active voter of two.
        with pytest.raises(UnhealthyCluster, match="etcdserver: unhealthy cluster"):
            await client.member_remove(up)
        # Adding a voter needs every voter connected.
        with pytest.raises(UnhealthyCluster):
            await client.member_add("ak://local/etcd-4")
        # Removing the member that is down lowers nobody's quorum.
        assert sorted(m.id for m in await client.member_remove(down)) == sorted([leader, up])
        assert (await client.put(b"k", b"w")).header.revision == 3


async def test_the_last_voter_is_never_removed(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 1)
        client = group.client()
        with pytest.raises(NotEnoughStartedMembers, match="not enough started members"):
            await client.member_remove(1)
        await group.stop()


def test_strict_checks_count_started_members() -> None:
    # Two voters that never started (added, promoted, never ran): adding a third voter
    # or removing the one started member would leave no quorum of started members.
    table = MemberTable(
        [
            Member(1, "a", "ak://s/a", started=True),
            Member(2, "", "ak://s/b"),
            Member(3, "", "ak://s/c"),
        ]
    )
    add = MemberAddRequest("ak://s/d")
    kwargs = {"active": {1, 2, 3}, "me": 1, "max_learners": 1}
    assert refuse_add(table, add, strict=True, **kwargs) is NotEnoughStartedMembers
    assert refuse_add(table, add, strict=False, **kwargs) is None
    learner = MemberAddRequest("ak://s/d", is_learner=True)
    assert refuse_add(table, learner, strict=True, **kwargs) is None  # a learner never votes
    assert (
        refuse_remove(table, 2, active={1, 2, 3}, me=1, strict=True) is NotEnoughStartedMembers
    )
    assert refuse_remove(table, 2, active={1, 2, 3}, me=1, strict=False) is None


async def test_membership_requests_are_refused_as_etcd_refuses_them(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        with pytest.raises(MemberNotFound, match="etcdserver: member not found"):
            await client.member_remove(9)
        with pytest.raises(MemberNotFound):
            await client.member_promote(9)
        with pytest.raises(MemberNotLearner, match=r"can only promote a learner member$"):
            await client.member_promote(2)
        with pytest.raises(PeerAddressExists, match="Peer URLs already exists"):
            await client.member_add("ak://local/etcd-2")
        with pytest.raises(InvalidPeerAddress, match="given member URLs are invalid"):
            await client.member_add("http://127.0.0.1:2380")
        assert await client.member_add("ak://local/etcd-4", learner=True) == 4
        with pytest.raises(TooManyLearners, match="too many learner members in cluster"):
            await client.member_add("ak://local/etcd-5", learner=True)
        # Member 4 never started: it cannot have caught up.
        with pytest.raises(LearnerNotReady, match="which is in sync with leader"):
            await client.member_promote(4)
        # Raft-lite takes one change at a time: a second one while the first is pending
        # is refused (etcd lets it time out).
        outcomes: list[object] = []

        async def remove() -> None:
            try:
                outcomes.append([m.id for m in await client.member_remove(4)])
            except MembershipChangePending as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(remove)
            nursery.start_soon(remove)
        assert [1, 2, 3] in outcomes
        assert any(isinstance(o, MembershipChangePending) for o in outcomes)
        # IDs are never reused: the next one is above the removed 4.
        assert await client.member_add("ak://local/etcd-4", learner=True) == 5
        assert view(await client.member_list())[-1] == (5, "", "ak://local/etcd-4", True, False)
        await group.stop()


async def test_a_retried_change_is_applied_once(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        await client.put(b"k", b"v")
        # A retry (same lane, same sequence number) after the change was applied gets
        # the first answer instead of adding a second member.
        leader = group.members[await group.leader()]
        change = MemberChange("lane/0", 1, MemberAddRequest("ak://local/etcd-4", True))
        first = await leader.ask(change)
        again = await leader.ask(change)
        assert first.ok and again.ok and again.result == first.result
        response = decode_message(again.result, lambda system, name: None)
        assert response.member.id == 4
        assert [m.id for m in await client.member_list()] == [1, 2, 3, 4]
        await group.stop()


async def test_a_restart_keeps_the_membership_changes(autojump_clock, tmp_path) -> None:
    # fsync off: a storage that fsyncs works in threads, and the virtual clock would race
    # ahead while they run. What is tested is the restart from the files.
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path, fsync=False)
        client = group.client(timeout=30)
        await client.put(b"k", b"1")
        cluster = {**cluster_of(group), 4: "ak://local/etcd-4"}
        await client.member_add(cluster[4], learner=True)
        joined = await start_member(
            system, 4, "etcd-4", cluster, data_dir=tmp_path, fsync=False, state="existing"
        )
        await promote_when_ready(client, 4)
        await client.member_remove(1)
        await client.put(b"k", b"2")
        await wait_for(lambda: stopped(system, "etcd-1"))
        await joined.stop()
        await group.stop()
    async with ActorSystem() as system:
        # Everyone restarts with the arguments of their first start: they no longer
        # decide the membership, the recovered table does.
        group = start_group(system, 3, data_dir=tmp_path, fsync=False)
        joined = await start_member(
            system, 4, "etcd-4", cluster, data_dir=tmp_path, fsync=False, state="existing"
        )
        client = EtcdClient(system, {**group.members, **joined.members}, timeout=30)
        assert (await client.get(b"k")).kvs[0].value == b"2"
        assert [(m.id, m.is_learner) for m in await client.member_list()] == [
            (2, False),
            (3, False),
            (4, False),
        ]
        # The removed member, restarted, learns again that it was removed and stops.
        await wait_for(lambda: stopped(system, "etcd-1"))
        for node in (2, 3):
            status = await group.members[node].ask(GetStatus())
            assert status.voters == (2, 3, 4)
        assert (await client.put(b"k", b"3")).header.revision == 4
        await joined.stop()
        await group.stop()


async def test_a_member_that_was_not_added_refuses_to_join(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        await group.client().put(b"k", b"v")
        storage = MemoryStorage()
        with pytest.raises(ClusterMismatch):
            await start_member(
                system,
                4,
                "etcd-4",
                {**cluster_of(group), 4: "ak://local/etcd-4"},
                storage=storage,
                state="existing",
            )
        assert system.lookup("etcd-4") is None
        await group.stop()


# --- across two systems over TCP (real time: MockClock's autojump would race the sockets) ---

TOKEN = "etcd-membership"
WAIT = 30


async def test_a_member_in_another_system_joins_over_tcp() -> None:
    async with ActorSystem(name="a") as a, ActorSystem(name="b") as b:
        ta = await serve_tcp(a, token=TOKEN)
        tb = await serve_tcp(b, token=TOKEN)
        ta.add_peer("b", "127.0.0.1", tb.port)
        tb.add_peer("a", "127.0.0.1", ta.port)
        with trio.fail_after(WAIT):
            group = start_group(a, 3, tick_interval=0.02)
            client = group.client()
            for i in range(10):
                await client.put(b"key-%d" % i, b"%d" % i)
            address = "ak://b/etcd-4"
            assert await client.member_add(address, learner=True) == 4
            # Member 4, in system b, knows the cluster only by addresses.
            joined = await start_member(
                b,
                4,
                "etcd-4",
                {**cluster_of(group), 4: address},
                state="existing",
                tick_interval=0.02,
            )
            revision = (await client.get(b"key-0")).header.revision
            while await member_revision(b, joined.members[4]) < revision:
                await trio.sleep(0.05)
            while True:
                try:
                    await client.member_promote(4)
                    break
                except LearnerNotReady:
                    await trio.sleep(0.05)
            # A client in b that starts from member 4 alone writes and reads.
            remote = joined.client(name="b-client")
            assert (await remote.put(b"from-b", b"x")).header.revision == revision + 1
            assert (await remote.get(b"from-b")).kvs[0].value == b"x"
            while not view(await remote.member_list())[3][4]:  # until it published
                await trio.sleep(0.05)
            assert view(await remote.member_list())[3] == (4, "etcd-4", address, False, True)
            assert sorted(remote.members) == [1, 2, 3, 4]  # it learnt every voter
            await joined.stop()
            await group.stop()
