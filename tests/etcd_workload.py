"""The parts of the etcd fault tests that the seeded scenarios (test_etcd_sim.py) and the
Hypothesis state machines (test_etcd_stateful.py) share: members on simulated hosts,
clients whose operations form a key-value history, a watcher that resumes wherever it
can, a fenced resource for the lock, and the checks at the end."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import trio

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
from actorkube.raft import Config
from actorkube.sim import SimNetwork
from actorkube.testing import UNKNOWN, Operation, check_linearizable, check_watch

KEYS = [b"k/a", b"k/b", b"k/c"]


class Violation(AssertionError):
    pass


def member_boot(
    net: SimNetwork,
    node: int,
    nodes: list[int],
    storage: Callable[[int], object],
    members: dict[int, EtcdNode],
    **options,
):
    """The boot of host ``n<node>``: an etcd member named ``etcd`` on ``storage(node)``,
    recorded in ``members``; ``options`` go to ``EtcdNode``."""

    def start(system: ActorSystem) -> None:
        peers = {n: system.ref(f"ak://n{n}/etcd") for n in nodes}

        def make() -> EtcdNode:
            member = EtcdNode(
                Config(node, tuple(nodes), seed=net.seed),
                storage(node),
                peers,
                tick_interval=0.05,
                **options,
            )
            members[node] = member
            return member

        system.spawn(make, name="etcd")

    return start


def member_refs(system: ActorSystem, nodes: list[int]) -> dict:
    return {n: system.ref(f"ak://n{n}/etcd") for n in nodes}


async def run_op(etcd: EtcdClient, inp: tuple):
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


async def record_op(etcd: EtcdClient, client: int, inp: tuple, history: list[Operation]) -> bool:
    """Run ``inp`` and append it to ``history``, its outcome unknown if the client gave
    up or was cancelled (the write may still take effect). True if acknowledged."""
    call = trio.current_time()
    out = UNKNOWN
    try:
        out = await run_op(etcd, inp)
    except EtcdError:
        pass
    finally:
        end = call if out is UNKNOWN else trio.current_time()
        history.append(Operation(client, call, end, inp, out))
    return out is not UNKNOWN


async def random_ops(
    etcd: EtcdClient,
    number: int,
    rng: random.Random,
    history: list[Operation],
    pause: float = 0.05,
) -> None:
    """Forever: a put, get, delete or compare-and-set (expecting one of the last
    values this client wrote, or an absent key) on one of KEYS, drawn from ``rng``;
    each recorded in ``history``; a pause of up to ``pause`` seconds between them."""
    written: list[bytes] = []
    for i in itertools.count():
        key = rng.choice(KEYS)
        value = b"c%d-%d" % (number, i)
        kind = rng.choice(["put", "put", "get", "get", "cas", "delete"])
        expected = rng.choice([None, *written[-3:]])
        inp = {
            "put": ("put", key, value),
            "get": ("get", key),
            "delete": ("delete", key),
            "cas": ("cas", key, expected, value),
        }[kind]
        if await record_op(etcd, number, inp, history) and kind == "put":
            written.append(value)
        await trio.sleep(rng.uniform(0, pause))


async def watch_keys(etcd: EtcdClient, nodes: list[int], rng: random.Random, watched: list) -> None:
    """Watch the prefix ``k/`` from revision 1 into ``watched``, forever. The stream
    resumes by itself (lost responses, stopped members); when no member takes it for a
    while (a partition), open it again, on a random member, from where it was."""
    start = 1
    while True:
        etcd.leader = rng.choice(nodes)
        try:
            async with etcd.watch(
                b"k/", prefix_end(b"k/"), start_revision=start, progress_notify=True
            ) as stream:
                while True:
                    with trio.move_on_after(1):
                        watched.append(await stream.receive())
                    start = stream.expected
        except EtcdError:
            await trio.sleep(0.5)


def check_history(history: list[Operation]) -> None:
    result = check_linearizable(history)
    if not result.ok:
        raise Violation(result.explain())


def check_watched(watched: list, members: dict[int, EtcdNode], node: int, upto: int) -> None:
    """The watcher's responses keep every guarantee (against member ``node``'s
    history) and reached revision ``upto`` (by an event or a progress notification)."""
    truth = [e for e in members[node].store.events_since(1) if e.kv.key.startswith(b"k/")]
    problems = check_watch(watched, truth, 1)
    if problems:
        raise Violation("watch: " + "; ".join(problems[:3]))
    heard = max((r.header.revision for r in watched if not r.canceled), default=0)
    if heard < upto:
        raise Violation(f"the watcher never caught up: it heard of revision {heard}, not {upto}")


def check_converged(members: dict[int, EtcdNode], nodes: list[int], revision: int) -> None:
    for n in nodes:
        store = members[n].store
        if store.revision != revision:
            raise Violation(f"member {n} is at revision {store.revision}, not {revision}")


def check_agreement(members: dict[int, EtcdNode], nodes: list[int]) -> None:
    """State machine safety: any two members' histories agree up to the lower of their
    revisions (no compaction in these tests, so the whole history is there)."""
    stores = [(n, members[n].store) for n in nodes if n in members]
    if len(stores) < 2:
        return
    upto = min(store.revision for _, store in stores)
    base_node, base = stores[0]
    expected = [e for e in base.events_since(1) if e.kv.mod_revision <= upto]
    for n, store in stores[1:]:
        mine = [e for e in store.events_since(1) if e.kv.mod_revision <= upto]
        if mine != expected:
            raise Violation(f"members {base_node} and {n} disagree at or below revision {upto}")


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


def check_fenced(log: list) -> None:
    """The resource accepted tokens in order, and no token from two clients."""
    accepted = [token for _, token, ok in log if ok]
    if accepted != sorted(accepted):
        raise Violation(f"the resource accepted tokens out of order: {accepted}")
    holders: dict[int, int] = {}
    for client, token, ok in log:
        if ok and holders.setdefault(token, client) != client:
            raise Violation(f"token {token} used by clients {holders[token]} and {client}")


async def contend(
    etcd: EtcdClient,
    number: int,
    rng: random.Random,
    resource,
    violations: list[str],
    stall: Callable[[], bool],
) -> None:
    """Forever: take the lock ``lock`` on a 2 s lease, write to ``resource`` with the
    fencing token a few times (keeping the lease alive, except when ``stall()`` says to
    sleep past it), unlock. A refused write must come from a holder that had lost the
    lock: if its key is still there afterwards, two holders held it at once."""
    while True:
        try:
            lease = (await etcd.lease_grant(2)).id
            held = await lock(etcd, b"lock", lease)
            for _ in range(rng.randint(1, 4)):
                if stall():
                    await trio.sleep(3)  # the lease runs out meanwhile
                else:
                    await etcd.lease_keepalive(lease)
                    await trio.sleep(rng.uniform(0.05, 0.5))
                if not await resource.ask(Write(number, held.revision)):
                    still = await etcd.get(held.key)
                    if still.kvs and still.kvs[0].create_revision == held.revision:
                        violations.append(
                            f"token {held.revision} of {number} refused while it still "
                            "held the lock"
                        )
                    break
            await unlock(etcd, held)
        except EtcdError:
            await trio.sleep(0.5)
