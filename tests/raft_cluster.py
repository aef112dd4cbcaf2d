"""A cluster of pure Raft cores on an in-memory network, for tests.

The harness plays the driver for every node, exactly as the contract says: a node's
Ready is persisted to its "disk" first, then its messages go on the network, then its
committed entries are applied, then it advances. Processing a Ready is an explicit step
(``process``), so a node can crash with work not yet persisted, as a real process can.

The application is a list of applied commands; snapshots carry that list. Everything
the nodes apply is checked against one global record of what was applied at each index
(state machine safety), as it happens.
"""

from __future__ import annotations

import msgpack

from actorkube.raft._core import Config, NotLeader, ProposalDropped, RaftNode, Role
from actorkube.raft._storage import MemoryStorage
from actorkube.raft._types import EntryType, Message


class Violation(AssertionError):
    pass


class Cluster:
    def __init__(self, size: int, seed: int = 0, **config) -> None:
        self.initial = tuple(range(1, size + 1))
        self.seed = seed
        self.config = config
        self.disks: dict[int, MemoryStorage] = {}  # fsync on: what was saved survives
        self.nodes: dict[int, RaftNode | None] = {}
        self.apps: dict[int, list] = {}  # applied (index, term, data) per node
        self.network: list[Message] = []
        self.cut: set[tuple[int, int]] = set()
        self.applied_at: dict[int, tuple[int, bytes]] = {}  # index -> (term, data)
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.last_commit: dict[int, int] = {}
        # Reads in flight: context -> the highest index known committed when it began.
        # A linearizable read point may not be below it.
        self.reads: dict[bytes, int] = {}
        self.read_count = 0
        for node in self.initial:
            self.add_node(node)

    # --- nodes -------------------------------------------------------------------------

    def add_node(self, node: int) -> None:
        self.disks[node] = MemoryStorage()
        self.apps[node] = []
        self.nodes[node] = None
        self.start(node)

    def start(self, node: int) -> None:
        recovered = self.disks[node].recover()
        core = RaftNode(Config(node, self.initial, seed=self.seed, **self.config), recovered)
        app = _decode_app(recovered.snapshot.data) if recovered.snapshot else []
        self.apps[node] = app
        self.nodes[node] = core
        self.last_commit[node] = core.log.committed

    def crash(self, node: int) -> None:
        """Lose the process: whatever its core had not handed out in a Ready is gone."""
        self.nodes[node] = None
        self.network = [m for m in self.network if m.to != node]

    def live(self) -> list[int]:
        return [n for n, core in self.nodes.items() if core is not None]

    def leader(self) -> int | None:
        leaders = [n for n in self.live() if self.nodes[n].role is Role.LEADER]
        return max(leaders, key=lambda n: self.nodes[n].term) if leaders else None

    # --- the driver ----------------------------------------------------------------------

    def process(self, node: int) -> None:
        core = self.nodes[node]
        while core.has_ready():
            ready = core.ready()
            self.disks[node].save(
                hard_state=ready.hard_state, entries=ready.entries, snapshot=ready.snapshot
            )
            for m in ready.messages:
                if (m.frm, m.to) not in self.cut:
                    self.network.append(m)
            if ready.snapshot is not None:
                app = _decode_app(ready.snapshot.data)
                for index, term, data in app:
                    self._record_applied(node, index, term, data)
                self.apps[node] = app
            for state in ready.read_states:
                floor = self.reads.pop(state.context, None)
                if floor is not None and state.index < floor:
                    raise Violation(
                        f"stale read: read index {state.index} on {node}, but "
                        f"{floor} was committed before the read began"
                    )
            for e in ready.committed_entries:
                if e.type is EntryType.NORMAL and e.data:
                    self.apps[node].append((e.index, e.term, e.data))
                self._record_applied(node, e.index, e.term, e.data)
            core.advance(ready)

    def process_all(self) -> None:
        for node in self.live():
            self.process(node)

    def deliver(self, position: int) -> None:
        if not self.network:
            return
        m = self.network.pop(position % len(self.network))
        core = self.nodes.get(m.to)
        if core is not None and (m.frm, m.to) not in self.cut:
            core.step(m)

    def settle(self, rounds: int = 100) -> None:
        """Process and deliver until nothing moves (or ``rounds`` run out)."""
        for _ in range(rounds):
            self.process_all()
            if not self.network:
                return
            while self.network:
                self.deliver(0)

    def tick_all(self) -> None:
        for node in self.live():
            self.nodes[node].tick()

    def propose(self, node: int, data: bytes) -> int | None:
        try:
            return self.nodes[node].propose(data)
        except (NotLeader, ProposalDropped):
            return None

    def read(self, node: int) -> None:
        """Ask ``node`` for a linearizable read point (checked when it comes out)."""
        self.read_count += 1
        context = f"read-{self.read_count}".encode()
        floor = max((c.log.committed for c in self.nodes.values() if c is not None), default=0)
        try:
            self.nodes[node].read_index(context)
        except NotLeader:
            return
        self.reads[context] = floor

    def compact(self, node: int) -> None:
        core = self.nodes[node]
        index = core.log.applied
        if index <= core.log.snap_index:
            return
        app = [a for a in self.apps[node] if a[0] <= index]
        snap = core.compact(index, _encode_app(app))
        self.disks[node].compact(snap)

    # --- invariants ----------------------------------------------------------------------

    def _record_applied(self, node: int, index: int, term: int, data: bytes) -> None:
        seen = self.applied_at.setdefault(index, (term, data))
        if seen != (term, data):
            raise Violation(
                f"state machine safety: node {node} applied {(term, data)} at "
                f"{index}, another node applied {seen}"
            )

    def check(self) -> None:
        live = self.live()
        for node in live:
            core = self.nodes[node]
            if core.role is Role.LEADER:
                other = self.leaders.setdefault(core.term, node)
                if other != node:
                    raise Violation(f"election safety: {node} and {other} lead term {core.term}")
            if core.log.committed < self.last_commit[node]:
                raise Violation(
                    f"commit index of {node} went back from "
                    f"{self.last_commit[node]} to {core.log.committed}"
                )
            self.last_commit[node] = core.log.committed
            if core.log.committed > core.log.last_index():
                raise Violation(f"node {node} commits beyond its log")
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                _check_log_matching(self.nodes[a], self.nodes[b])
        for node in live:
            core = self.nodes[node]
            if core.role is not Role.LEADER:
                continue
            for index, (term, _) in self.applied_at.items():
                if index <= core.log.snap_index or term > core.term:
                    continue
                if core.log.term(index) != term:
                    raise Violation(
                        f"leader completeness: leader {node} (term {core.term}) "
                        f"lacks committed entry {index} of term {term}"
                    )


def _check_log_matching(x: RaftNode, y: RaftNode) -> None:
    lo = max(x.log.first_index(), y.log.first_index())
    hi = min(x.log.last_index(), y.log.last_index())
    same_seen = False
    for index in range(hi, lo - 1, -1):
        a, b = x.log.slice(index, index + 1)[0], y.log.slice(index, index + 1)[0]
        if a.term == b.term:
            same_seen = True
            if a != b:
                raise Violation(
                    f"log matching: nodes {x.id} and {y.id} differ at {index}: {a} / {b}"
                )
        elif same_seen:
            raise Violation(
                f"log matching: nodes {x.id} and {y.id} agree above {index} but not at it"
            )


def _encode_app(app: list) -> bytes:
    return msgpack.packb(app)


def _decode_app(data: bytes) -> list:
    return [tuple(a) for a in msgpack.unpackb(data)]
