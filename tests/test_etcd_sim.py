"""etcd members on simulated hosts under a seeded schedule of faults (drops, duplicates,
delays, partitions, crashes and restarts that lose what was not fsynced), in virtual
time, with concurrent clients and a watcher.

Checked at the end: the clients' history is linearizable (actorkube.testing); the
watcher, resuming on another member whenever its member goes away, saw every event of
the watched keys once, in order, whole revisions at a time; every member holds every
acknowledged write. A failure's message carries the seed: ``simulate(scenario, seed=N)``
replays it exactly.
"""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_faults import fault_step

from actorkube.actor import Actor, ActorSystem, handler, message
from actorkube.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    EtcdClient,
    EtcdError,
    EtcdNode,
    PutRequest,
    lock,
    prefix_end,
    unlock,
)
from actorkube.raft import Config, MemoryStorage
from actorkube.sim import Faults, SimNetwork, simulate
from actorkube.testing import UNKNOWN, Operation, check_linearizable, check_watch

KEYS = [b"k/a", b"k/b", b"k/c"]


class Violation(AssertionError):
    pass


def etcd_scenario(size: int):
    nodes = list(range(1, size + 1))

    async def scenario(net: SimNetwork) -> dict:
        rng = random.Random(net.seed)
        storages = {n: MemoryStorage(fsync=rng.random() < 0.5) for n in nodes}
        members: dict[int, EtcdNode] = {}

        def boot(node: int):
            def start(system: ActorSystem) -> None:
                peers = {n: system.ref(f"ak://n{n}/etcd") for n in nodes}

                def make() -> EtcdNode:
                    member = EtcdNode(
                        Config(node, tuple(nodes), seed=net.seed),
                        storages[node],
                        peers,
                        tick_interval=0.05,
                        snapshot_every=40,
                        progress_interval=1.0,
                    )
                    members[node] = member
                    return member

                system.spawn(make, name="etcd")

            return start

        net.set_faults(Faults(drop=0.03, duplicate=0.02, delay=(0.001, 0.02), reorder=0.02))
        for n in nodes:
            await net.add_host(f"n{n}", boot(n))
        await net.add_host("clients", lambda system: None)
        system = net.system("clients")
        refs = {n: system.ref(f"ak://n{n}/etcd") for n in nodes}
        history: list[Operation] = []
        acknowledged: dict[bytes, bytes] = {}  # value -> key, of acknowledged puts
        watched: list = []
        stop = trio.Event()

        async def client(number: int) -> None:
            etcd = EtcdClient(system, refs, name=f"c{number}", timeout=4, attempt_timeout=0.5)
            for i in range(1_000_000):
                if stop.is_set():
                    return
                key = rng.choice(KEYS)
                value = b"c%d-%d" % (number, i)
                kind = rng.choice(["put", "put", "get", "get", "cas", "delete"])
                expected = rng.choice([None, *list(acknowledged)[-3:]])
                inp = {
                    "put": ("put", key, value),
                    "get": ("get", key),
                    "delete": ("delete", key),
                    "cas": ("cas", key, expected, value),
                }[kind]
                call = trio.current_time()
                try:
                    out = await _run(etcd, inp)
                except EtcdError:  # gave up: the outcome is unknown
                    history.append(Operation(number, call, call, inp, UNKNOWN))
                    continue
                if kind == "put":
                    acknowledged[value] = key
                history.append(Operation(number, call, trio.current_time(), inp, out))
                await trio.sleep(rng.uniform(0, 0.05))

        async def watcher() -> None:
            # The stream resumes by itself (lost responses, stopped members); when no
            # member takes it for a while (a partition), open it again from where it was.
            etcd = EtcdClient(system, refs, name="watcher", timeout=4, attempt_timeout=0.5)
            start = 1
            while not stop.is_set():
                etcd.leader = rng.choice(nodes)
                try:
                    async with etcd.watch(
                        b"k/", prefix_end(b"k/"), start_revision=start, progress_notify=True
                    ) as stream:
                        while not stop.is_set():
                            with trio.move_on_after(1):
                                watched.append(await stream.receive())
                            start = stream.expected
                except EtcdError:
                    await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            for number in range(3):
                nursery.start_soon(client, number)
            nursery.start_soon(watcher)
            down: set[int] = set()
            for _ in range(10):
                action = rng.choice(["partition", "heal", "crash", "restart", "calm"])
                await fault_step(net, rng, action, nodes, storages, down, ["clients"])
                await trio.sleep(rng.uniform(0.5, 3.0))
            # The faults stop; everything comes back; the clients finish.
            net.heal()
            net.set_faults(Faults())
            for n in sorted(down):
                await net.restart(f"n{n}")
            await trio.sleep(10)
            stop.set()

        # Liveness: a write goes through once the faults stopped.
        final = EtcdClient(system, refs, name="final", timeout=60)
        last = await final.put(b"k/final", b"done")
        await trio.sleep(5)  # every member applies it
        result = check_linearizable(history)
        if not result.ok:
            raise Violation(result.explain())
        truth = members[nodes[0]].store.events_since(1)
        problems = check_watch(watched, [e for e in truth if e.kv.key.startswith(b"k/")], 1)
        if problems:
            raise Violation("watch: " + "; ".join(problems[:3]))
        for n in nodes:
            store = members[n].store
            if store.revision != last.header.revision:
                raise Violation(f"member {n} is at revision {store.revision}, not {last}")
        return {
            "operations": len(history),
            "acknowledged": len(acknowledged),
            "events": len(truth),
        }

    return scenario


async def _run(etcd: EtcdClient, inp: tuple):
    """Carry out one operation of the KV model; its output as the model states it."""
    kind, key = inp[0], inp[1]
    if kind == "put":
        await etcd.put(key, inp[2])
        return "ok"
    if kind == "get":
        got = await etcd.get(key)
        return got.kvs[0].value if got.kvs else None
    if kind == "delete":
        return (await etcd.delete(key)).deleted
    expected, new = inp[2], inp[3]
    if expected is None:
        same = Compare(key, CompareTarget.VERSION, CompareResult.EQUAL, version=0)
    else:
        same = Compare(key, CompareTarget.VALUE, CompareResult.EQUAL, value=expected)
    return (await etcd.txn([same], [PutRequest(key, new)])).succeeded


@settings(max_examples=max(8, settings().max_examples // 12), deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([3, 5]))
def test_etcd_under_simulated_faults(seed: int, size: int) -> None:
    result = simulate(etcd_scenario(size), seed=seed)
    assert result.value["operations"] > 0


def test_the_same_seed_replays_the_same_run() -> None:
    a = simulate(etcd_scenario(3), seed=7)
    b = simulate(etcd_scenario(3), seed=7)
    assert a.trace.digest() == b.trace.digest()
    assert a.value == b.value


@message(tag="test.sim.Write")
class Write:
    client: int
    token: int


class Resource(Actor):
    """What a lock protects: it refuses a write whose fencing token is older than one
    it has accepted."""

    def __init__(self, log: list) -> None:
        self.highest = 0
        self.log = log

    @handler
    def on_write(self, msg: Write) -> bool:
        accepted = msg.token >= self.highest
        if accepted:
            self.highest = msg.token
        self.log.append((msg.client, msg.token, accepted))
        return accepted


def lock_scenario(size: int):
    """Contenders take a lock (leases of 2 s, kept alive, but sometimes they stall past
    them) and write to a resource with their fencing token, under partitions and
    crashes. A write the resource refuses must come from a holder that had lost the
    lock: if its key is still there afterwards, two holders held it at once."""
    nodes = list(range(1, size + 1))

    async def scenario(net: SimNetwork) -> dict:
        rng = random.Random(net.seed)
        storages = {n: MemoryStorage() for n in nodes}

        def boot(node: int):
            def start(system: ActorSystem) -> None:
                peers = {n: system.ref(f"ak://n{n}/etcd") for n in nodes}
                system.spawn(
                    lambda: EtcdNode(
                        Config(node, tuple(nodes), seed=net.seed),
                        storages[node],
                        peers,
                        tick_interval=0.05,
                        min_lease_ttl=1,
                    ),
                    name="etcd",
                )

            return start

        net.set_faults(Faults(drop=0.02, delay=(0.001, 0.01)))
        for n in nodes:
            await net.add_host(f"n{n}", boot(n))
        await net.add_host("clients", lambda system: None)
        system = net.system("clients")
        refs = {n: system.ref(f"ak://n{n}/etcd") for n in nodes}
        log: list = []
        resource = system.spawn(lambda: Resource(log), name="resource")
        violations: list[str] = []
        done = trio.Event()

        async def contender(number: int) -> None:
            etcd = EtcdClient(system, refs, name=f"l{number}", timeout=5, attempt_timeout=0.5)
            while not done.is_set():
                try:
                    lease = (await etcd.lease_grant(2)).id
                    held = await lock(etcd, b"lock", lease)
                    for _ in range(rng.randint(1, 4)):
                        if rng.random() < 0.2:
                            await trio.sleep(3)  # a stall: the lease runs out meanwhile
                        else:
                            await etcd.lease_keepalive(lease)
                            await trio.sleep(rng.uniform(0.05, 0.5))
                        if not await resource.ask(Write(number, held.revision)):
                            still = await etcd.get(held.key)
                            if still.kvs and still.kvs[0].create_revision == held.revision:
                                violations.append(
                                    f"token {held.revision} of {number} refused while it "
                                    "still held the lock"
                                )
                            break
                    await unlock(etcd, held)
                except EtcdError:
                    await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            for number in range(3):
                nursery.start_soon(contender, number)
            for _ in range(8):
                action = "partition" if rng.random() < 0.5 else "heal"
                await fault_step(net, rng, action, nodes, storages, set(), ["clients"])
                await trio.sleep(rng.uniform(1, 3))
            net.heal()
            await trio.sleep(5)
            done.set()
        if violations:
            raise Violation("; ".join(violations[:3]))
        accepted = [token for _, token, ok in log if ok]
        if accepted != sorted(accepted):
            raise Violation(f"the resource accepted tokens out of order: {accepted}")
        holders = {}
        for client, token, ok in log:
            if ok and holders.setdefault(token, client) != client:
                raise Violation(f"token {token} used by clients {holders[token]} and {client}")
        return {"writes": len(log), "refused": sum(1 for *_, ok in log if not ok)}

    return scenario


@settings(max_examples=max(4, settings().max_examples // 25), deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_fenced_lock_is_safe_under_faults(seed: int) -> None:
    result = simulate(lock_scenario(3), seed=seed)
    assert result.value["writes"] > 0
