"""The replica actor: Raft cores driven by actors, in one system and across simulated
hosts with crashes."""

from __future__ import annotations

import json

import trio
import trio.testing

from actorkube.actor import ActorSystem
from actorkube.raft import Config
from actorkube.raft._replica import GetStatus, Outcome, Propose, Query, RaftReplica
from actorkube.raft._storage import MemoryStorage
from actorkube.sim import SimNetwork


class KV:
    """A tiny key-value state machine: commands are JSON [key, value]."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied: list[int] = []

    def apply(self, index: int, data: bytes) -> int:
        key, value = json.loads(data)
        self.data[key] = value
        self.applied.append(index)
        return len(self.data)

    def query(self, data: bytes) -> str | None:
        return self.data.get(data.decode())

    def snapshot(self) -> bytes:
        return json.dumps(self.data).encode()

    def restore(self, data: bytes | None) -> None:
        self.data = json.loads(data) if data is not None else {}


def put(key: str, value: str) -> Propose:
    return Propose(json.dumps([key, value]).encode())


async def find_leader(refs: dict, rounds: int = 100) -> int:
    for _ in range(rounds):
        for node, ref in refs.items():
            status = await ref.ask(GetStatus())
            if status.role == "leader":
                return node
        await trio.sleep(0.1)
    raise AssertionError("no leader")


async def test_replicas_in_one_system_agree_and_serve_linearizable_reads(autojump_clock):
    async with ActorSystem() as system:
        machines = {n: KV() for n in (1, 2, 3)}
        refs = {}
        for n in (1, 2, 3):
            refs[n] = system.spawn(
                lambda n=n: RaftReplica(
                    Config(n, (1, 2, 3), seed=1), MemoryStorage(), machines[n], refs
                ),
                name=f"raft-{n}",
            )
        leader = await find_leader(refs)
        follower = next(n for n in refs if n != leader)
        outcome = await refs[follower].ask(put("a", "1"))
        assert outcome == Outcome(False, error=f"not the leader (leader: {leader})", leader=leader)
        results = [await refs[leader].ask(put(f"k{i}", str(i))) for i in range(20)]
        assert all(r.ok for r in results)
        assert [r.result for r in results] == list(range(1, 21))
        assert (await refs[leader].ask(Query(b"k7"))).result == "7"
        await trio.sleep(1)
        for n in (1, 2, 3):
            assert machines[n].data == {f"k{i}": str(i) for i in range(20)}


async def test_a_crashed_leader_is_replaced_and_nothing_acknowledged_is_lost(autojump_clock):
    storages = {n: MemoryStorage() for n in (1, 2, 3)}
    machines: dict[int, KV] = {}
    acknowledged: list[str] = []

    def boot(node: int):
        def start(system: ActorSystem) -> None:
            machines[node] = KV()
            peers = {n: system.ref(f"ak://host-{n}/raft") for n in (1, 2, 3)}
            system.spawn(
                lambda: RaftReplica(
                    Config(node, (1, 2, 3), seed=7), storages[node], machines[node], peers
                ),
                name="raft",
            )

        return start

    async with SimNetwork(seed=3) as net:
        for n in (1, 2, 3):
            await net.add_host(f"host-{n}", boot(n))
        await net.add_host("client", lambda system: None)
        client = net.system("client")
        refs = {n: client.ref(f"ak://host-{n}/raft") for n in (1, 2, 3)}
        leader = await find_leader(refs)
        for i in range(10):
            outcome = await refs[leader].ask(put(f"k{i}", "v"), timeout=5)
            if outcome.ok:
                acknowledged.append(f"k{i}")
        await net.crash(f"host-{leader}")
        storages[leader] = storages[leader].crash()
        survivors = {n: r for n, r in refs.items() if n != leader}
        new_leader = await find_leader(survivors)
        assert new_leader != leader
        outcome = await refs[new_leader].ask(put("after", "v"), timeout=5)
        assert outcome.ok
        acknowledged.append("after")
        await net.restart(f"host-{leader}")
        await trio.sleep(5)
        for n in (1, 2, 3):
            assert set(acknowledged) <= set(machines[n].data), n
