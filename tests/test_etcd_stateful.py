"""Hypothesis state machines over 3- and 5-member etcd groups on simulated hosts.

Each rule is one step of a ``SteppedSimulation``: clients submit operations, virtual
time passes, links drop, duplicate, delay and reorder messages, the network partitions
and heals, members crash (a process crash: their data directory stays as written) and
restart from disk. After every step the members agree on their common history. At the
end the faults stop and everything comes back: a write goes through, the clients'
history is linearizable, the watcher saw every event once, in order, a revision at a
time, every member holds every write, and (for the lock) the fenced resource never took
two holders' writes out of order.

A failure prints the steps, starting with the simulation's seed; Hypothesis shrinks
them and replays them exactly (virtual time, seeded scheduling).
"""

from __future__ import annotations

import random
import shutil
import sys
import tempfile
from pathlib import Path

from etcd_workload import (
    Resource,
    Violation,
    check_agreement,
    check_converged,
    check_fenced,
    check_history,
    check_watched,
    contend,
    member_boot,
    member_refs,
    random_ops,
    watch_keys,
)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from actorkube.etcd import EtcdClient, EtcdNode
from actorkube.raft import DiskStorage
from actorkube.sim import Faults, SimNetwork, SteppedSimulation
from actorkube.testing import Operation

LINKS = {
    "perfect": Faults(),
    "lossy": Faults(drop=0.05, duplicate=0.02, delay=(0.001, 0.02), reorder=0.05),
    "bad": Faults(drop=0.3, duplicate=0.1, delay=(0.005, 0.2), reorder=0.2),
    "slow": Faults(delay=(0.05, 0.4), reorder=0.3),
}


class FaultyGroup(RuleBasedStateMachine):
    """An etcd group on simulated hosts with data directories, and the fault rules.
    Subclasses define ``start_clients()`` (called once the hosts are up) and
    ``finish()`` (their checks, once the faults have stopped and everything is back)."""

    member_options: dict = {}

    def __init__(self) -> None:
        super().__init__()
        self.sim: SteppedSimulation | None = None

    @initialize(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([3, 5]))
    def boot(self, seed: int, size: int) -> None:
        self.rng = random.Random(seed)
        self.nodes = list(range(1, size + 1))
        self.down: set[int] = set()
        self.members: dict[int, EtcdNode] = {}
        self.data = Path(tempfile.mkdtemp(prefix="actorkube-etcd-stateful-"))
        self.disks: dict[int, DiskStorage] = {}
        self.sim = SteppedSimulation(seed)
        self.sim.run(self._add_hosts)
        self.start_clients()

    def storage(self, node: int) -> DiskStorage:
        """The member's storage: its data directory, opened on (re)start."""
        if node not in self.disks:
            self.disks[node] = DiskStorage.open(self.data / f"n{node}", fsync=False)
        return self.disks[node]

    async def _add_hosts(self, net: SimNetwork) -> None:
        for n in self.nodes:
            options = self.member_options
            boot = member_boot(net, n, self.nodes, self.storage, self.members, **options)
            await net.add_host(f"n{n}", boot)
        self.system = await net.add_host("clients", lambda system: None)
        self.refs = member_refs(self.system, self.nodes)

    # --- faults and time -------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0]))
    def time_passes(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @rule(kind=st.sampled_from(sorted(LINKS)))
    def links(self, kind: str) -> None:
        self.sim.run(_set_faults, LINKS[kind])

    @rule(data=st.data())
    def partition(self, data) -> None:
        side = data.draw(
            st.sets(st.sampled_from(self.nodes), min_size=1, max_size=len(self.nodes) // 2)
        )
        rest = [f"n{n}" for n in self.nodes if n not in side] + ["clients"]
        self.sim.run(_partition, [f"n{n}" for n in sorted(side)], rest)

    @rule(data=st.data())
    def cut_one_way(self, data) -> None:
        src, dst = data.draw(st.permutations([f"n{n}" for n in self.nodes]))[:2]
        self.sim.run(_block, src, dst)

    @rule()
    def heal(self) -> None:
        self.sim.run(_heal)

    @precondition(lambda self: len(self.down) < len(self.nodes) // 2)
    @rule(data=st.data())
    def crash(self, data) -> None:
        victim = data.draw(st.sampled_from([n for n in self.nodes if n not in self.down]))
        self.sim.run(_crash, f"n{victim}")
        self.disks.pop(victim).close()
        self.members.pop(victim, None)
        self.down.add(victim)

    @precondition(lambda self: self.down)
    @rule(data=st.data())
    def restart(self, data) -> None:
        back = data.draw(st.sampled_from(sorted(self.down)))
        self.sim.run(_restart, f"n{back}")
        self.down.discard(back)

    @invariant()
    def members_agree(self) -> None:
        if self.sim is not None:
            check_agreement(self.members, self.nodes)

    # --- the end ---------------------------------------------------------------------------

    def teardown(self) -> None:
        if self.sim is None:
            return
        failed = sys.exc_info()[1] is not None  # a rule failed: report that, check no more
        try:
            if failed:
                return
            # The faults stop and everything comes back; then the machine's checks.
            self.sim.run(_heal)
            self.sim.run(_set_faults, Faults())
            for n in sorted(self.down):
                self.sim.run(_restart, f"n{n}")
            self.down.clear()
            self.sim.advance(10)
            self.finish()
        finally:
            self.sim.close()
            for disk in self.disks.values():
                disk.close()
            shutil.rmtree(self.data, ignore_errors=True)


async def _set_faults(net: SimNetwork, faults: Faults) -> None:
    net.set_faults(faults)


async def _partition(net: SimNetwork, side: list[str], rest: list[str]) -> None:
    net.partition(side, rest)


async def _block(net: SimNetwork, src: str, dst: str) -> None:
    net.block(src, dst)


async def _heal(net: SimNetwork) -> None:
    net.heal()


async def _crash(net: SimNetwork, host: str) -> None:
    await net.crash(host)


async def _restart(net: SimNetwork, host: str) -> None:
    await net.restart(host)


class KeyValueGroup(FaultyGroup):
    """Three clients doing puts, gets, deletes and compare-and-sets on three keys, as
    fast as they can (their choices drawn from the seed), and a watcher on their prefix."""

    member_options = {"snapshot_every": 40, "progress_interval": 1.0}

    def start_clients(self) -> None:
        self.history: list[Operation] = []
        self.watched: list = []
        self.clients = []
        for number in range(3):
            etcd = EtcdClient(
                self.system, self.refs, name=f"c{number}", timeout=4, attempt_timeout=0.5
            )
            rng = random.Random(self.rng.random())
            self.clients.append(self.sim.start_soon(_client, etcd, number, rng, self.history))
        watcher = EtcdClient(self.system, self.refs, name="w", timeout=4, attempt_timeout=0.5)
        self.sim.start_soon(_watch, watcher, self.nodes, self.rng, self.watched)

    def finish(self) -> None:
        for client in self.clients:  # what they were doing counts as outcome unknown
            client.cancel()
        final = EtcdClient(self.system, self.refs, name="final", timeout=60)
        last = self.sim.run(_put, final, b"k/final", b"done")
        self.sim.advance(5)  # every member applies it
        check_history(self.history)
        check_watched(self.watched, self.members, self.nodes[0], last.header.revision)
        check_converged(self.members, self.nodes, last.header.revision)


async def _put(net: SimNetwork, etcd: EtcdClient, key: bytes, value: bytes):
    return await etcd.put(key, value)


async def _client(net: SimNetwork, etcd: EtcdClient, number: int, rng, history) -> None:
    await random_ops(etcd, number, rng, history, pause=0.2)


async def _watch(net: SimNetwork, etcd: EtcdClient, nodes, rng, watched) -> None:
    await watch_keys(etcd, nodes, rng, watched)


class LockGroup(FaultyGroup):
    """Three contenders for one lock, each writing to a fenced resource with its token;
    a rule makes one of them stall past its lease."""

    member_options = {"min_lease_ttl": 1}

    def start_clients(self) -> None:
        self.log: list = []
        self.violations: list[str] = []
        self.stalls = [0, 0, 0]
        resource = self.sim.run(_spawn_resource, self.system, self.log)
        for number in range(3):
            etcd = EtcdClient(
                self.system, self.refs, name=f"l{number}", timeout=5, attempt_timeout=0.5
            )
            self.sim.start_soon(_contend, etcd, number, self.rng, resource, self.violations,
                                self._staller(number))  # fmt: skip

    def _staller(self, number: int):
        def stall() -> bool:
            if self.stalls[number]:
                self.stalls[number] -= 1
                return True
            return False

        return stall

    @rule(contender=st.integers(0, 2))
    def stall(self, contender: int) -> None:
        self.stalls[contender] += 1

    @invariant()
    def fenced(self) -> None:
        if self.sim is not None:
            if self.violations:
                raise Violation("; ".join(self.violations[:3]))
            check_fenced(self.log)

    def finish(self) -> None:
        self.fenced()
        if not self.log:
            raise Violation("no contender ever wrote to the resource")


async def _spawn_resource(net: SimNetwork, system, log: list):
    return system.spawn(lambda: Resource(log), name="resource")


async def _contend(net: SimNetwork, *args) -> None:
    await contend(*args)


TestKeyValueGroup = KeyValueGroup.TestCase
TestKeyValueGroup.settings = settings(
    max_examples=max(6, settings().max_examples // 10), stateful_step_count=40, deadline=None
)
TestLockGroup = LockGroup.TestCase
TestLockGroup.settings = settings(
    max_examples=max(4, settings().max_examples // 20), stateful_step_count=30, deadline=None
)
