"""Edges of Raft found in review: replica answers (proposals, reads, restarts) and a
follower's answer to a snapshot it already holds."""

import contextlib
import json

import trio

from actorkube.actor import (
    Actor,
    ActorSystem,
    AskTimeout,
    HandlerFailed,
    Undeliverable,
    handler,
)
from actorkube.raft import ConfChange, ConfChangeType, Config
from actorkube.raft._core import RaftNode, Recovered
from actorkube.raft._replica import (
    GetStatus,
    Propose,
    ProposeChange,
    Query,
    RaftReplica,
    SetPeer,
    TransferLeadership,
)
from actorkube.raft._storage import MemoryStorage
from actorkube.raft._types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MsgType,
    Snapshot,
    SnapshotMeta,
)


class KV:
    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def apply(self, index, data):
        key, value = json.loads(data)
        self.data[key] = value
        return index

    def query(self, data):
        return self.data.get(data.decode())

    def snapshot(self):
        return json.dumps(self.data).encode()

    def restore(self, data):
        self.data = json.loads(data) if data is not None else {}


def put(key, value):
    return Propose(json.dumps([key, value]).encode())


class Hole(Actor):
    """Where messages across a cut go."""

    @handler
    def on_msg(self, msg: Message) -> None:
        pass


class Recorder(Actor):
    def __init__(self, box: list) -> None:
        self.box = box

    @handler
    def on_msg(self, msg: Message) -> None:
        self.box.append(msg)


async def status(ref):
    return await ref.ask(GetStatus())


async def wait_leader(refs, among, rounds=200):
    for _ in range(rounds):
        for n in among:
            s = await status(refs[n])
            if s.role == "leader":
                return n
        await trio.sleep(0.1)
    raise AssertionError("no leader")


async def cut(refs, hole, frm, to):
    """Messages from ``frm`` to ``to`` are lost."""
    refs[frm].tell(SetPeer(to, hole))
    await status(refs[frm])


async def mend(refs, frm, to):
    refs[frm].tell(SetPeer(to, refs[to]))
    await status(refs[frm])


def spawn3(system, machines, refs, **kw):
    for n in (1, 2, 3):
        refs[n] = system.spawn(
            lambda n=n: RaftReplica(
                Config(n, (1, 2, 3), seed=1), MemoryStorage(), machines[n], refs, **kw
            ),
            name=f"raft-{n}",
        )


async def test_a_proposal_is_answered_even_when_its_index_is_reused(autojump_clock):
    async with ActorSystem() as system:
        machines = {n: KV() for n in (1, 2, 3)}
        refs = {}
        spawn3(system, machines, refs)
        hole = system.spawn(Hole, name="hole")
        old = await wait_leader(refs, (1, 2, 3))
        assert (await refs[old].ask(put("a", "0"))).ok
        others = [n for n in (1, 2, 3) if n != old]
        for o in others:
            await cut(refs, hole, old, o)
            await cut(refs, hole, o, old)
        outcomes = {}

        async def ask(key):
            try:
                outcomes[key] = await refs[old].ask(put(key, "v"), timeout=60)
            except AskTimeout:
                outcomes[key] = "never answered"

        async with trio.open_nursery() as nursery:
            for key in ("p1", "p2", "p3"):
                nursery.start_soon(ask, key)
                await trio.sleep(0.01)
            new = await wait_leader(refs, others)
            for o in others:
                await mend(refs, old, o)
                await mend(refs, o, old)
            await trio.sleep(2)  # the old leader's uncommitted entries are truncated
            assert (await refs[new].ask(TransferLeadership(old))).ok
            assert await wait_leader(refs, (old,)) == old
            assert (await refs[old].ask(put("q", "v"), timeout=10)).ok
        assert outcomes["p3"] != "never answered", outcomes


async def test_a_committed_proposal_is_not_reported_dropped(autojump_clock):
    async with ActorSystem() as system:
        machines = {n: KV() for n in (1, 2, 3)}
        refs = {}
        spawn3(system, machines, refs, snapshot_every=2)
        hole = system.spawn(Hole, name="hole")
        old = await wait_leader(refs, (1, 2, 3))
        others = [n for n in (1, 2, 3) if n != old]
        for o in others:  # the followers' answers are lost, the old leader's appends are not
            await cut(refs, hole, o, old)
        outcome = {}

        async def ask():
            try:
                outcome["p"] = await refs[old].ask(put("p", "v"), timeout=60)
            except AskTimeout:
                outcome["p"] = "never answered"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.sleep(0.05)  # the append reached the followers
            for o in others:
                await cut(refs, hole, old, o)
            new = await wait_leader(refs, others)
            for i in range(6):  # the new leader commits "p" and compacts past it
                assert (await refs[new].ask(put(f"k{i}", "v"))).ok
            assert machines[new].data["p"] == "v"
            for o in others:
                await mend(refs, old, o)
                await mend(refs, o, old)
        await trio.sleep(3)
        assert machines[old].data.get("p") == "v"  # applied everywhere (through the snapshot)
        assert outcome["p"] != "never answered"
        assert outcome["p"].ok or "dropped" not in outcome["p"].error, (
            f"'p' was committed and applied, yet its proposer was told: {outcome['p']}"
        )


async def test_a_restarted_follower_does_not_take_an_old_read_answer(autojump_clock):
    """Follower 2 asks the leader (node 1, scripted) for a read index; before the
    answer arrives, the replica restarts (a crash and a supervisor restart, or a host
    restart). The restarted replica numbers its reads from 1 again, so the late answer to
    the old read answers a new read that started after a newer write was acknowledged."""
    box: list = []
    storage = MemoryStorage()
    async with ActorSystem() as system:
        leader = system.spawn(lambda: Recorder(box), name="leader")
        machine = KV()
        peers = {1: leader}
        ref = system.spawn(
            lambda: RaftReplica(Config(2, (1, 2, 3), seed=1), storage, machine, peers),
            name="raft-2",
        )
        cmd = json.dumps(["x", "old"]).encode()
        ref.tell(Message(MsgType.APP, 2, 1, 1, entries=(Entry(1, 1, data=cmd),), commit=1))
        await status(ref)
        assert machine.data == {"x": "old"}
        results = {}

        async def query(name, r):
            try:
                results[name] = await r.ask(Query(b"x"), timeout=30)
            except (AskTimeout, Undeliverable) as exc:
                results[name] = repr(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(query, "q1", ref)
            await trio.sleep(0.01)
            [old_req] = [m for m in box if m.type is MsgType.READ_INDEX]
            await system.stop(ref)  # restart of the replica (same storage)
            machine2 = KV()
            ref2 = system.spawn(
                lambda: RaftReplica(Config(2, (1, 2, 3), seed=1), storage, machine2, peers),
                name="raft-2b",
            )
            await status(ref2)
            # The leader appends x=new at 2 and commits it with node 3 (the client is
            # told "ok"); node 2 gets the entry, not yet the new commit index.
            cmd2 = json.dumps(["x", "new"]).encode()
            ref2.tell(
                Message(
                    MsgType.APP,
                    2,
                    1,
                    1,
                    index=1,
                    log_term=1,
                    entries=(Entry(1, 2, data=cmd2),),
                    commit=1,
                )
            )
            await status(ref2)
            box.clear()
            nursery.start_soon(query, "q2", ref2)  # starts after x=new was acknowledged
            await trio.sleep(0.01)
            [new_req] = [m for m in box if m.type is MsgType.READ_INDEX]
            # The late answer to the first read arrives now (index 1, its context).
            ref2.tell(Message(MsgType.READ_INDEX_RESP, 2, 1, 1, index=1, context=old_req.context))
            await status(ref2)
            # ... and the answer to the new read (index 2, with the commit).
            ref2.tell(Message(MsgType.HEARTBEAT, 2, 1, 1, commit=2))
            ref2.tell(Message(MsgType.READ_INDEX_RESP, 2, 1, 1, index=2, context=new_req.context))
            await status(ref2)
        assert results["q2"].result == "new", (
            f"contexts {old_req.context!r} / {new_req.context!r}: the read that started "
            f"after x=new was acknowledged returned {results['q2']}"
        )


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def apply(self, index, data):
        self.n += 1
        return self.n

    def query(self, data):
        if data == b"boom":
            raise RuntimeError("a bad query")  # any failure of the replica's handler
        return self.n

    def snapshot(self):
        return str(self.n).encode()

    def restore(self, data):
        self.n = int(data) if data is not None else 0


async def test_a_supervisor_restart_does_not_apply_entries_twice(autojump_clock):
    sm = Counter()
    storage = MemoryStorage()
    async with ActorSystem() as system:
        ref = system.spawn(lambda: RaftReplica(Config(1, (1,)), storage, sm, {}), name="raft-1")
        for _ in range(50):
            if (await ref.ask(GetStatus())).role == "leader":
                break
            await trio.sleep(0.1)
        for _ in range(3):
            assert (await ref.ask(Propose(b"+1"))).ok
        with contextlib.suppress(HandlerFailed, Undeliverable, RuntimeError):
            await ref.ask(Query(b"boom"), timeout=5)
        await trio.sleep(2)  # restarted; re-elected; committed entries re-applied
        out = await ref.ask(Query(b"n"), timeout=5)
        assert out.result == 3, f"3 commands committed, the state machine counts {out.result}"


CONF = ConfState((1, 2, 3), ())


def test_snapshot_ack_claims_only_what_matches():
    # F: 1..3 of term 1 (also on the leader), 4..5 of term 2 (a deposed leader's, not
    # on the leader). F knows commit 1.
    log = (Entry(1, 1), Entry(1, 2), Entry(1, 3), Entry(2, 4), Entry(2, 5))
    f = RaftNode(Config(2, (1, 2, 3)), Recovered(HardState(3, 0, 1), None, log))
    snap = Snapshot(SnapshotMeta(3, 1, CONF), b"")
    f.step(Message(MsgType.SNAP, 2, 1, 3, snapshot=snap))
    [resp] = [m for m in f.ready().messages if m.type is MsgType.APP_RESP]
    # etcd answers with its commit index (3 here): only that is known to match.
    assert resp.index <= 3, f"follower acked index {resp.index} with entries 4,5 of term 2"


def test_a_snapshot_ack_never_leads_a_follower_to_commit_a_divergent_entry():
    # The leader (term 3) holds 1..5 of term 1 and its own empty entry 6; node 3 acked it.
    lead_log = tuple(Entry(1, i) for i in range(1, 6))
    leader = RaftNode(Config(1, (1, 2, 3)), Recovered(HardState(2, 1, 0), None, lead_log))
    leader._become_candidate()
    leader.votes[3] = True
    leader._become_leader()
    leader.ready()
    leader.step(Message(MsgType.APP_RESP, 1, 3, 3, index=6))
    assert leader.log.committed == 6
    # F answers a snapshot (3, term 1) the way _handle_snapshot does: index = last_index.
    log = (Entry(1, 1), Entry(1, 2), Entry(1, 3), Entry(2, 4), Entry(2, 5))
    f = RaftNode(Config(2, (1, 2, 3)), Recovered(HardState(3, 0, 1), None, log))
    f.step(Message(MsgType.SNAP, 2, 1, 3, snapshot=Snapshot(SnapshotMeta(3, 1, CONF), b"")))
    for m in f.ready().messages:
        leader.step(m)
    leader.ready()
    leader.tick()  # heartbeat carries commit min(match, committed)
    for m in leader.ready().messages:
        if m.to == 2:
            f.step(m)
    assert f.log.committed <= 3 or f.log.term(f.log.committed) == leader.log.term(
        f.log.committed
    ), (
        f"F committed index {f.log.committed} of term {f.log.term(f.log.committed)}; "
        f"leader's entry there has term {leader.log.term(f.log.committed)}"
    )


async def test_a_removed_leader_answers_what_it_can_no_longer_see_commit(autojump_clock):
    """A leader that proposed past its own removal steps down without learning whether
    those proposals commit: it says "outcome unknown" instead of leaving the asker to
    time out. Its two peers are played by hand, message by message."""
    sent: list[Message] = []

    async def next_sent(kind):
        for _ in range(1000):
            for m in sent:
                if m.type is kind:
                    sent.remove(m)
                    return m
            await trio.sleep(0.01)
        raise AssertionError(f"no {kind.name} sent")

    async with ActorSystem() as system:
        refs = {}
        recorder = system.spawn(lambda: Recorder(sent), name="peers")
        refs[2] = refs[3] = recorder
        refs[1] = system.spawn(
            lambda: RaftReplica(Config(1, (1, 2, 3), seed=1), MemoryStorage(), KV(), refs),
            name="raft-1",
        )
        leader = refs[1]
        # Node 1 campaigns; node 2 grants the pre-vote and the vote.
        pre = await next_sent(MsgType.PRE_VOTE)
        leader.tell(Message(MsgType.PRE_VOTE_RESP, 1, 2, pre.term))
        vote = await next_sent(MsgType.VOTE)
        leader.tell(Message(MsgType.VOTE_RESP, 1, 2, vote.term))
        term = vote.term
        first = await next_sent(MsgType.APP)  # the new leader's empty entry, index 1
        leader.tell(Message(MsgType.APP_RESP, 1, first.to, term, index=1))
        assert (await leader.ask(GetStatus())).commit == 1

        outcomes = {}

        async def ask(name, msg):
            try:
                outcomes[name] = await leader.ask(msg, timeout=60)
            except AskTimeout:
                outcomes[name] = "never answered"

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "removal", ProposeChange(ConfChange(ConfChangeType.REMOVE, 1)))
            await trio.sleep(0.001)
            nursery.start_soon(ask, "after", put("k", "v"))  # index 3, after the removal
            await trio.sleep(0.001)
            # Node 2 acknowledges the removal (index 2) only: it commits; index 3 needs
            # both remaining voters now, and never gets them.
            leader.tell(Message(MsgType.APP_RESP, 1, 2, term, index=2))
        assert outcomes["removal"].ok, outcomes
        after = outcomes["after"]
        assert after != "never answered"
        assert not after.ok and after.index == 3
        assert after.error == "outcome unknown: this node left the cluster"
        assert (await leader.ask(GetStatus())).role == "follower"


class SteppedKV(KV):
    """A KV whose snapshots are captured at once and serialised in ``PARTS`` steps, each
    noted in ``log`` with how many entries the machine had applied by then."""

    PARTS = 6

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log
        self.applied = 0

    def apply(self, index, data):
        self.applied += 1
        return super().apply(index, data)

    def snapshot_steps(self):
        captured = dict(self.data)

        def steps():
            for _ in range(self.PARTS):
                self.log.append(self.applied)
                yield
            return json.dumps(captured).encode()

        return steps()


async def test_a_snapshot_read_for_a_follower_is_serialised_a_step_at_a_time(autojump_clock):
    """In memory, snapshots are captured and serialised only when a follower behind the
    log needs one; the leader then makes the bytes a step per idle, serving proposals in
    between, and sends them once made."""
    logs = {n: [] for n in (1, 2, 3)}
    machines = {n: SteppedKV(logs[n]) for n in (1, 2, 3)}
    refs = {}
    async with ActorSystem() as system:
        spawn3(system, machines, refs, snapshot_every=20)
        hole = system.spawn(Hole, name="hole")
        leader = await wait_leader(refs, (1, 2, 3))
        behind = next(n for n in (1, 2, 3) if n != leader)
        for other in (1, 2, 3):
            if other != behind:
                await cut(refs, hole, other, behind)
                await cut(refs, hole, behind, other)
        for i in range(60):  # past two snapshots and their catch-up margin
            assert (await refs[leader].ask(put(f"k{i}", "v"))).ok
        assert not logs[leader], "a snapshot nobody read was serialised"

        async def keep_writing():
            for i in range(100):
                assert (await refs[leader].ask(put(f"w{i}", "v"))).ok

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_writing)
            for other in (1, 2, 3):
                if other != behind:
                    await mend(refs, other, behind)
                    await mend(refs, behind, other)
        for _ in range(100):
            if all(f"w{i}" in machines[behind].data for i in range(100)):
                break
            await trio.sleep(0.1)
        assert all(machines[behind].data[f"k{i}"] == "v" for i in range(60))
        steps = logs[leader]
        # One snapshot or more (with snapshots this frequent, the log may be compacted
        # past the first before the follower has it), each made of all its parts.
        assert steps and len(steps) % SteppedKV.PARTS == 0, steps
        # Proposals were applied between the first snapshot's first step and its last:
        # the leader kept serving while it serialised.
        assert steps[SteppedKV.PARTS - 1] > steps[0], steps
