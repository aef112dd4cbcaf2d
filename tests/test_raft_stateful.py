"""Hypothesis drives a cluster of 3 to 5 Raft cores through faults; Raft's safety
properties are checked after every step, and liveness once the faults stop.

Faults: ticks in any order, messages delivered out of order, dropped, duplicated,
partitions (also one way), crashes that lose whatever a node had not persisted,
restarts, snapshots, membership changes and leadership transfers.
"""

from __future__ import annotations

import contextlib

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from raft_cluster import Cluster

from actorkube.raft._core import NotLeader, ProposalDropped, Role
from actorkube.raft._types import ConfChange, ConfChangeType

MAX_NODES = 5
positions = st.integers(min_value=0, max_value=10_000)


class RaftCluster(RuleBasedStateMachine):
    @initialize(size=st.integers(3, 5), seed=st.integers(0, 2**16), batch=st.integers(1, 3))
    def start(self, size: int, seed: int, batch: int) -> None:
        # Small batches let a fault split what a leader sends (the old-term entry from
        # the new leader's own), which the subtlest Raft bugs need.
        self.cluster = Cluster(
            size, seed=seed, election_tick=3, max_inflight=4, max_entries_per_msg=batch
        )
        self.proposals = 0
        # Start from a working cluster, so that the faults hit something.
        for _ in range(20):
            self.cluster.tick_all()
            self.cluster.settle()
            if self.cluster.leader() is not None:
                break

    def node(self, n: int) -> int:
        ids = sorted(self.cluster.nodes)
        return ids[n % len(ids)]

    # --- time and the network ------------------------------------------------------------

    @rule(n=positions)
    def tick(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.cluster.nodes[node].tick()

    @rule()
    def tick_all(self) -> None:
        self.cluster.tick_all()

    @rule(rounds=st.integers(1, 8))
    def run(self, rounds: int) -> None:
        """A stretch of normal operation (faults still in force): ticks and deliveries."""
        for _ in range(rounds):
            self.cluster.tick_all()
            self.cluster.settle(rounds=3)
            self.cluster.check()

    @rule(n=positions)
    def process(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.cluster.process(node)

    @rule(i=positions)
    def deliver(self, i: int) -> None:
        self.cluster.deliver(i)

    @rule()
    def deliver_all(self) -> None:
        self.cluster.process_all()
        while self.cluster.network:
            self.cluster.deliver(0)

    @rule(i=positions)
    def drop(self, i: int) -> None:
        if self.cluster.network:
            self.cluster.network.pop(i % len(self.cluster.network))

    @rule(i=positions)
    def duplicate(self, i: int) -> None:
        if self.cluster.network:
            net = self.cluster.network
            net.append(net[i % len(net)])

    @rule(members=st.sets(positions, min_size=1, max_size=2))
    def partition(self, members: set[int]) -> None:
        side = {self.node(n) for n in members}
        others = set(self.cluster.nodes) - side
        for a in side:
            for b in others:
                self.cluster.cut |= {(a, b), (b, a)}

    @rule(a=positions, b=positions)
    def block_one_way(self, a: int, b: int) -> None:
        self.cluster.cut.add((self.node(a), self.node(b)))

    @rule()
    def heal(self) -> None:
        self.cluster.cut.clear()

    # --- processes -----------------------------------------------------------------------

    @rule(n=positions)
    def crash(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.cluster.crash(node)

    @rule(n=positions)
    def restart(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is None:
            self.cluster.start(node)

    # --- the application ------------------------------------------------------------------

    @rule(n=positions)
    def propose(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.proposals += 1
            self.cluster.propose(node, f"cmd{self.proposals}".encode())

    @rule(n=positions)
    def read(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.cluster.read(node)

    @rule(n=positions)
    def snapshot(self, n: int) -> None:
        node = self.node(n)
        if self.cluster.nodes[node] is not None:
            self.cluster.compact(node)

    @rule(kind=st.sampled_from(ConfChangeType), n=positions)
    def change_membership(self, kind: ConfChangeType, n: int) -> None:
        leader = self.cluster.leader()
        if leader is None:
            return
        core = self.cluster.nodes[leader]
        if kind is ConfChangeType.ADD_LEARNER:
            if len(self.cluster.nodes) >= MAX_NODES:
                return
            node = max(self.cluster.nodes) + 1
        else:
            node = self.node(n)
        try:
            core.propose_conf_change(ConfChange(kind, node))
        except (NotLeader, ProposalDropped):
            return
        if kind is ConfChangeType.ADD_LEARNER:
            self.cluster.add_node(node)

    @rule(n=positions)
    def transfer_leadership(self, n: int) -> None:
        leader = self.cluster.leader()
        if leader is None:
            return
        with contextlib.suppress(NotLeader, ProposalDropped):
            self.cluster.nodes[leader].transfer_leadership(self.node(n))

    # --- properties ------------------------------------------------------------------------

    @invariant()
    def safety(self) -> None:
        self.cluster.check()

    def teardown(self) -> None:
        """Liveness: heal everything, restart everyone; a leader must emerge among the
        voters and a new proposal must commit on it."""
        cluster = self.cluster
        event(f"applied entries before healing: {_bucket(len(cluster.applied_at))}")
        event(f"terms with a leader before healing: {_bucket(len(cluster.leaders))}")
        event(f"nodes: {len(cluster.nodes)}")
        cluster.cut.clear()
        for node, core in list(cluster.nodes.items()):
            if core is None:
                cluster.start(node)
        committed = None
        for _ in range(300):
            cluster.tick_all()
            cluster.settle()
            cluster.check()
            leader = cluster.leader()
            if leader is None:
                continue
            core = cluster.nodes[leader]
            if committed is None:
                committed = cluster.propose(leader, b"liveness")
                continue
            if core.log.committed >= committed and core.log.term(committed) is not None:
                return
            if core.log.term(committed) is None or core.role is not Role.LEADER:
                committed = None  # that leader lost its entry or its place: try again
        raise AssertionError(
            "no progress after healing: "
            + ", ".join(f"{n}:{c.role.value}/t{c.term}" for n, c in cluster.nodes.items())
        )


# At least 200 examples of 100 steps in CI; the soak profile asks for far more.
RaftCluster.TestCase.settings = settings(
    stateful_step_count=100, max_examples=max(200, settings().max_examples), deadline=None
)
TestRaftCluster = RaftCluster.TestCase


def _bucket(n: int) -> str:
    return "0" if n == 0 else "1-4" if n < 5 else "5-19" if n < 20 else "20+"
