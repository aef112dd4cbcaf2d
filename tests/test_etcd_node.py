"""actorkube.etcd replicated: a group of members in one actor system, used through the
client, on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio

from actorkube.actor import Actor, ActorSystem, encode_message, handler
from actorkube.etcd import (
    CancelWatch,
    Command,
    Compare,
    CompareResult,
    CompareTarget,
    EtcdClient,
    EtcdError,
    EtcdStateMachine,
    EventType,
    PutRequest,
    RangeRequest,
    Unavailable,
    campaign,
    leader,
    lock,
    observe,
    proclaim,
    resign,
    start_group,
    unlock,
)
from actorkube.etcd._node import Watch
from actorkube.raft import GetStatus, Outcome, Propose


async def test_writes_and_reads_through_the_client(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        put = await client.put(b"a", b"1")
        assert put.header.revision == 2
        got = await client.get(b"a")
        assert [kv.value for kv in got.kvs] == [b"1"] and got.header.revision == 2
        txn = await client.txn(
            [Compare(b"a", CompareTarget.VALUE, CompareResult.EQUAL, value=b"1")],
            [PutRequest(b"a", b"2"), RangeRequest(b"a")],
        )
        assert txn.succeeded and txn.responses[1].kvs[0].value == b"2"
        with pytest.raises(EtcdError, match="future revision"):
            await client.get(b"a", revision=99)
        # Every member applied the same: a serializable read on each agrees.
        for node in group.members:
            one = group.client(name=f"reader-{node}")
            one.leader = node
            answer = await one.get(b"a", serializable=True)
            if answer.header.revision == 3:
                assert answer.kvs[0].value == b"2"
        await group.stop()


def test_a_retried_command_is_applied_once() -> None:
    machine = EtcdStateMachine()
    first = encode_message(Command("c/0", 1, PutRequest(b"k", b"v")))
    answer = machine.apply(1, first)
    assert machine.apply(2, first) == answer  # the retry: same answer, nothing applied
    assert machine.store.revision == 2
    stale = machine.apply(3, encode_message(Command("c/0", 0, PutRequest(b"k", b"w"))))
    assert b"older than" in stale and machine.store.get(b"k").value == b"v"
    # The sessions survive a snapshot.
    again = EtcdStateMachine()
    again.restore(machine.snapshot())
    assert again.apply(4, first) == answer and again.store.revision == 2


async def test_a_watch_sees_every_revision_whole_and_in_order(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        await client.put(b"k/a", b"0")  # revision 2, before the watch starts
        async with client.watch(b"k/", b"k0", start_revision=2, prev_kv=True) as stream:
            await client.txn([], [PutRequest(b"k/b", b"1"), PutRequest(b"k/c", b"2")])  # 3
            await client.put(b"other", b"x")  # 4: not watched
            await client.delete(b"k/a")  # 5
            seen = []
            while len(seen) < 4:
                response = await stream.receive()
                assert not response.canceled
                seen += [(e.type, e.kv.key, e.kv.mod_revision) for e in response.events]
                # A revision's events never straddle two responses.
                revs = [e.kv.mod_revision for e in response.events]
                assert revs == sorted(revs)
        assert seen == [
            (EventType.PUT, b"k/a", 2),
            (EventType.PUT, b"k/b", 3),
            (EventType.PUT, b"k/c", 3),
            (EventType.DELETE, b"k/a", 5),
        ]
        await client.compact(4)
        with pytest.raises(EtcdError, match="compacted"):
            async with client.watch(b"k/", b"k0", start_revision=3):
                pass
        await group.stop()


async def test_watches_opened_and_closed_between_deliveries_each_get_theirs(autojump_clock):
    # The member indexes its watches by range once and keeps the index while only events
    # come: each watch opened or closed since must be in it, or out of it, at once. (One
    # member, so that every watch is on it: a client spreads its watches.)
    async with ActorSystem() as system:
        group = start_group(system, 1)
        client = group.client()

        async def values(stream, n: int) -> list[bytes]:
            seen: list[bytes] = []
            with trio.fail_after(30):  # a watch the member left out never hears
                while len(seen) < n:
                    seen += [e.kv.value for e in (await stream.receive()).events]
            return seen

        async with client.watch(b"a") as on_a:
            await client.put(b"a", b"1")
            assert await values(on_a, 1) == [b"1"]
            async with client.watch(b"b", b"c") as on_b:
                async with client.watch(b"a", b"\0") as from_a:
                    await client.put(b"b/1", b"2")
                    await client.put(b"a", b"3")
                    assert await values(on_b, 1) == [b"2"]
                    assert await values(from_a, 2) == [b"2", b"3"]
                    assert from_a.resumed == 0
                await client.put(b"b/2", b"4")  # from_a is closed: on_b alone takes it
                assert await values(on_b, 1) == [b"4"]
                assert on_b.resumed == 0  # (a resumed stream would hide a lost event)
            await client.put(b"a", b"5")
            assert await values(on_a, 2) == [b"3", b"5"]
            assert on_a.resumed == 0
        await group.stop()


async def test_leases_expire_on_the_leader_and_keepalives_hold_them(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        short = (await client.lease_grant(5)).id
        held = (await client.lease_grant(5)).id
        await client.put(b"short", b"x", lease=short)
        await client.put(b"held", b"x", lease=held)
        async with client.watch(b"short") as stream:
            for _ in range(8):
                await trio.sleep(1)
                assert (await client.lease_keepalive(held)).ttl == 5
            response = await stream.receive()
            assert [(e.type, e.kv.key) for e in response.events] == [(EventType.DELETE, b"short")]
        assert (await client.get(b"short")).count == 0
        assert (await client.get(b"held")).count == 1
        ttl = await client.lease_time_to_live(held, keys=True)
        assert 0 < ttl.ttl <= 5 and ttl.keys == (b"held",)
        assert (await client.lease_time_to_live(short)).ttl == -1
        await group.stop()


async def test_the_group_restarts_from_its_data_directories(autojump_clock, tmp_path) -> None:
    # fsync off: a storage that fsyncs works in threads, and the virtual clock would race
    # ahead while they run. What is tested is the restart from the files.
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path, fsync=False)
        client = group.client()
        for i in range(20):
            await client.put(b"key-%02d" % i, b"%d" % i)
        await group.stop()
    async with ActorSystem() as system:
        group = start_group(system, 3, data_dir=tmp_path, fsync=False)
        client = group.client()
        everything = await client.get(b"key-", b"key.")
        assert [kv.value for kv in everything.kvs] == [b"%d" % i for i in range(20)]
        assert everything.header.revision == 21
        await group.stop()


async def test_a_watch_its_member_forgot_resumes_under_short_receive_timeouts(autojump_clock):
    # Found by the stateful fault test: a member that restarts loses its watches, and a
    # caller polling receive() with timeouts shorter than the stream's quiet check (2 s)
    # kept postponing the check forever; a resume cut short by such a timeout left the
    # stream on no member at all.
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        async with client.watch(b"k", b"l", start_revision=1) as stream:
            # The member drops the watch without a word to the watcher.
            stream.member.tell(CancelWatch(stream._watcher, stream.watch_id))
            await client.put(b"k", b"1")
            got = None
            for _ in range(20):
                with trio.move_on_after(0.5):
                    got = await stream.receive()
                    break
            assert got is not None and [e.kv.value for e in got.events] == [b"1"]
            assert stream.resumed == 1
        await group.stop()


async def test_a_write_survives_the_loss_of_the_leader(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client(timeout=30)
        await client.put(b"before", b"1")
        leader = await group.leader()
        await system.stop(group.members[leader])
        put = await client.put(b"after", b"2")  # retried until a new leader takes it
        assert put.header.revision == 3
        assert (await client.get(b"before")).kvs[0].value == b"1"


class Confused(Actor):
    """A member that always names the other one as the leader (a stale view)."""

    def __init__(self, other: int, asked: list) -> None:
        self.other = other
        self.asked = asked

    @handler
    def on_propose(self, msg: Propose) -> Outcome:
        self.asked.append(trio.current_time())
        if len(self.asked) > 5000:
            raise AssertionError("the client asks in a loop that lets no time pass")
        return Outcome(False, error="not the leader", leader=self.other)


async def test_a_client_backs_off_between_members_that_name_each_other(autojump_clock):
    async with ActorSystem() as system:
        asked: list[float] = []
        members = {
            1: system.spawn(lambda: Confused(2, asked), name="m1"),
            2: system.spawn(lambda: Confused(1, asked), name="m2"),
        }
        client = EtcdClient(system, members, timeout=5)
        with pytest.raises(Unavailable):
            await client.put(b"k", b"v")
        assert 5 <= len(asked) < 100
        assert asked[-1] - asked[0] >= 4  # time went by between the tries


async def test_a_lock_passes_from_holder_to_holder_with_growing_tokens(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        leases = [(await client.lease_grant(10)).id for _ in range(3)]
        order: list[tuple[int, int]] = []

        async def contender(i: int) -> None:
            held = await lock(client, b"job", leases[i])
            order.append((i, held.revision))
            await trio.sleep(1)  # hold it a while
            await unlock(client, held)

        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(contender, i)
                await trio.sleep(0.1)
        assert [i for i, _ in order] == [0, 1, 2]
        tokens = [token for _, token in order]
        assert tokens == sorted(tokens) and len(set(tokens)) == 3
        # A holder whose lease runs out loses the lock to the next contender.
        held = await lock(client, b"job", leases[0])
        taken = trio.Event()

        async def next_one() -> None:
            await lock(client, b"job", leases[1])
            taken.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(next_one)
            for _ in range(5):  # leases[1] is kept alive; leases[0] is not
                await trio.sleep(3)
                await client.lease_keepalive(leases[1])
            await taken.wait()
        assert (await client.get(held.key)).count == 0
        await group.stop()


async def test_an_election_has_one_leader_at_a_time(autojump_clock) -> None:
    async with ActorSystem() as system:
        group = start_group(system, 3)
        client = group.client()
        a, b = (await client.lease_grant(30)).id, (await client.lease_grant(30)).id
        won = await campaign(client, b"svc", a, b"a")
        assert (await leader(client, b"svc")).value == b"a"
        await proclaim(client, won, b"a2")
        assert (await leader(client, b"svc")).value == b"a2"
        seen = []

        async def watch_leaders() -> None:
            async for kv in observe(client, b"svc"):
                seen.append(kv.value)
                if kv.value == b"b":
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_leaders)
            nursery.start_soon(campaign, client, b"svc", b, b"b")  # waits for the first
            await trio.sleep(1)
            assert (await leader(client, b"svc")).value == b"a2"
            await resign(client, won)
        assert seen[0] == b"a2" and seen[-1] == b"b"
        with pytest.raises(EtcdError, match="not leader"):
            await proclaim(client, won, b"late")
        await group.stop()


async def test_watches_open_on_the_leader_and_a_silent_member_does_not_delay_them(
    autojump_clock,
) -> None:
    # A follower hears of a commit with the leader's next append or heartbeat: watches
    # open on the leader. Members are asked at once, so one that never answers costs
    # nothing when another names the leader.
    class Silent(Actor):
        @handler
        async def on_status(self, msg: GetStatus) -> None:
            await trio.sleep_forever()

        @handler
        async def on_watch(self, msg: Watch) -> None:
            await trio.sleep_forever()

    async with ActorSystem() as system:
        group = start_group(system, 3)
        writer = group.client()
        await writer.put(b"k", b"v")
        leader = await group.leader()
        follower = next(n for n in group.members if n != leader)
        members = dict(group.members)
        members[follower] = system.spawn(lambda: Silent(), name="silent")
        client = EtcdClient(system, members)
        assert await client.find_leader() == leader
        started = trio.current_time()
        async with client.watch(b"k") as stream:
            assert trio.current_time() - started < 0.1
            assert stream.member == group.members[leader]
            await writer.put(b"k", b"w")
            response = await stream.receive()
            assert [e.kv.value for e in response.events] == [b"w"]
        await group.stop()
