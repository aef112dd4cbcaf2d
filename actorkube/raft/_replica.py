"""The replica actor: the thin driver around one Raft core.

Rules of this file:

- Ticks come from a periodic timer (the actor system's clock, so MockClock works).
- Every Ready is handled as the core's contract says: persist (snapshot, entries, hard
  state) before sending its messages; then restore the state machine from a received
  snapshot, apply committed entries in order, answer what waits on them, and advance.
- Raft messages travel as actor messages (``Message`` is a registered message class):
  the replica of node N tells ``peers[N]``.
- A proposal is answered once its entry is applied (with the state machine's result),
  or at once with ``ok=False`` and a reason: not the leader (with a leader hint), or
  dropped (a transfer is under way, or the entry was overwritten by a new leader).
  Asks that get no answer in time raise ``AskTimeout`` at the caller, as any ask.
- A query is linearizable: it runs on the state machine only after a ReadIndex round
  confirmed leadership and the state machine applied up to the read index.
- Storage calls that may block (a disk with fsync) run in a worker thread, so other
  actors keep running; the replica handles one message at a time, so its Ready work
  stays in order.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Generator
from typing import Any, Protocol

import attrs
import trio

from actorkube.actor import Actor, ActorRef, handler, message

from ._core import (
    CONF_CHANGE,
    LEADER,
    NORMAL,
    Config,
    NotLeader,
    ProposalDropped,
    RaftNode,
    Ready,
    decode_conf_change,
)
from ._types import ConfChange, HardState, Message


class Deferred:
    """A snapshot's data not serialised yet: ``bytes(d)`` makes it at once, ``step()``
    a part at a time (the same bytes as the state machine's ``snapshot()`` at the moment
    it was captured; made once).

    A replica whose storage writes nothing (``in_memory``) takes its snapshots this way
    from a state machine that offers ``snapshot_steps()``: the log is compacted without
    waiting for bytes, and the state is serialised only if something reads it (a
    follower that fell behind the log, a restart from the storage), as etcd streams its
    database to such a follower rather than writing one per snapshot. Serialising a
    5,000-node cluster's store for every 100,000 entries cost seconds of CPU per member,
    a stall of 0.5-0.8 s to join the parts, and the bytes' memory, for a snapshot that
    nobody read. The compaction up to the capture waits until followers had time to
    read past it (``RaftReplica._after_catch_up``), as etcd keeps 5,000 entries after
    its snapshot index for followers a little behind. A follower further behind gets
    it serialised a step per idle (``RaftReplica._send_snapshots``): at 118,000 pods
    serialising it at once had stopped the process for 10.6 s."""

    __slots__ = ("_data", "_steps")

    def __init__(self, steps: Generator[None, None, bytes]) -> None:
        self._steps: Generator[None, None, bytes] | None = steps
        self._data = b""

    @property
    def made(self) -> bool:
        return self._steps is None

    def step(self) -> bool:
        """Serialise one more part; True once the bytes are made."""
        if self._steps is None:
            return True
        try:
            next(self._steps)
        except StopIteration as done:
            self._data, self._steps = done.value, None
            return True
        return False

    def __bytes__(self) -> bytes:
        while not self.step():
            pass
        return self._data


def _at_once(data: bytes) -> Generator[None, None, bytes]:
    """The snapshot of a state machine without ``snapshot_steps``, taken already."""
    return data
    yield  # a generator, whose only step returns the snapshot


class StateMachine(Protocol):
    """What the replica applies committed commands to (the etcd store, later)."""

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed command; the return value (msgpack-native) answers the
        proposer."""

    def query(self, data: bytes) -> Any:
        """Answer a read-only request from the current state."""

    def snapshot(self) -> bytes:
        """The whole state, for a Raft snapshot. A state machine may also offer
        ``snapshot_steps()``: a generator that captures the state when called and
        serialises it over several ``next`` calls, returning the same bytes; the replica
        then interleaves the steps with its other work."""

    def restore(self, data: bytes | None) -> None:
        """Replace the whole state by a snapshot's; ``None`` means the empty state (the
        replica calls it at every start, so that a restart replays onto a clean slate)."""

    # On storage that writes nothing (``in_memory``), a replica whose state machine
    # offers ``snapshot_steps()`` defers serialising its snapshots (see ``Deferred``):
    # the capture must then be cheap (references only, as etcd's store: O(keys)).

    # Optional: ``apply_unencoded(index, data)`` and ``encode_result(result)``, which
    # make ``apply`` in two halves: ``apply(i, d) == encode_result(apply_unencoded(i, d))``.
    # A state machine whose answers cost something to make offers them: the replica then
    # calls ``encode_result`` only for the results someone waits for (on the leader).
    #
    # Optional: ``apply_conf_change(index, change) -> Any``. A state machine that has it
    # is handed every committed membership change, in log order with the commands (the
    # core has already taken it into effect); its return value answers the proposer.
    # It must change the state only as a function of the change, as ``apply`` does.


@message(tag="raft.Propose")
class Propose:
    data: bytes


@message(tag="raft.ProposeChange")
class ProposeChange:
    change: ConfChange


@message(tag="raft.Query")
class Query:
    data: bytes


@message(tag="raft.TransferLeadership")
class TransferLeadership:
    node: int


@message(tag="raft.SetPeer")
class SetPeer:
    node: int
    ref: ActorRef


@message(tag="raft.GetStatus")
class GetStatus:
    pass


@message(tag="raft.Outcome")
class Outcome:
    """The answer to a proposal or a query. ``ok=False``: ``error`` says why, and
    ``leader`` is the node to try instead (0 if unknown)."""

    ok: bool
    index: int = 0
    result: Any = None
    error: str = ""
    leader: int = 0


@message(tag="raft.Status")
class Status:
    id: int
    role: str
    term: int
    leader: int
    commit: int
    applied: int
    voters: tuple[int, ...]
    learners: tuple[int, ...]


@message(tag="raft.Tick")
class _Tick:
    pass


@message(tag="raft.Continue")
class _Continue:
    """Told to itself by a replica with work to do a step at a time (see ``idle``)."""


class RaftReplica(Actor):
    """One Raft node as an actor. ``peers`` maps node ids (this one included or not)
    to the replicas' references."""

    def __init__(
        self,
        config: Config,
        storage: Any,
        state_machine: StateMachine,
        peers: dict[int, ActorRef],
        *,
        tick_interval: float = 0.1,
        snapshot_every: int = 10_000,
    ) -> None:
        self.config = config
        self.storage = storage
        self.sm = state_machine
        self.peers = dict(peers)
        self.tick_interval = tick_interval
        self.snapshot_every = snapshot_every
        self.core: RaftNode | None = None
        self.proposals: dict[int, tuple[int, Any]] = {}  # index -> (term, reply)
        self.reads: dict[bytes, tuple[bytes, Any]] = {}  # context -> (query, reply)
        self.ready_reads: list[tuple[int, bytes]] = []  # (read index, context)
        self.read_ids = itertools.count(1)
        self.read_prefix = ""
        self.since_snapshot = 0
        self.known_leader = 0
        self.leadership = (0, 0)  # (term, leader) of the last Ready handled
        self.drain_due = False
        self.snapshot_job: tuple[int, Generator[None, None, bytes]] | None = None
        # Snapshot messages whose Deferred data is being serialised, in order.
        self.snapshot_sends: list[Message] = []

    async def started(self) -> None:
        recovered = await self._io(self.storage.recover)
        # The committed entries after the snapshot are applied again from the log, so
        # the state machine must start from the snapshot (or empty), whatever it held.
        self.sm.restore(bytes(recovered.snapshot.data) if recovered.snapshot else None)
        self.core = RaftNode(self.config, recovered)
        self.saved_hard = recovered.hard_state  # the last hard state written
        self.unsaved_hard: HardState | None = None  # a newer one differing in commit only
        # Read contexts must never repeat, not even across restarts of this actor: a late
        # answer to an old read must not answer a new one.
        self.read_prefix = f"{self.config.id}:{self.system.unique()}"
        self.timers.start_periodic("tick", _Tick(), self.tick_interval)

    async def stopping(self) -> None:
        self._fail_waiting("replica stopped")

    # --- inputs --------------------------------------------------------------------------

    @handler
    def on_tick(self, msg: _Tick) -> None:
        self.core.tick()
        self.drain_due = True

    @handler
    def on_continue(self, msg: _Continue) -> None:
        """Nothing: handling it makes the replica busy, so ``idle`` runs again."""

    @handler
    def on_message(self, msg: Message) -> None:
        self.core.step(msg)
        self.drain_due = True

    @handler
    def on_propose(self, msg: Propose) -> Outcome | None:
        return self._propose(lambda: self.core.propose(msg.data))

    @handler
    def on_propose_change(self, msg: ProposeChange) -> Outcome | None:
        return self._propose(lambda: self.core.propose_conf_change(msg.change))

    @handler
    def on_query(self, msg: Query) -> Outcome | None:
        context = f"{self.read_prefix}:{next(self.read_ids)}".encode()
        try:
            self.core.read_index(context)
        except NotLeader as exc:
            return Outcome(False, error=str(exc), leader=exc.leader)
        self.reads[context] = (msg.data, self.defer_reply())
        self.drain_due = True
        return None

    @handler
    def on_transfer(self, msg: TransferLeadership) -> Outcome:
        try:
            self.core.transfer_leadership(msg.node)
        except (NotLeader, ProposalDropped) as exc:
            return Outcome(False, error=str(exc), leader=self.core.lead)
        self.drain_due = True
        return Outcome(True)

    @handler
    def on_set_peer(self, msg: SetPeer) -> None:
        self.peers[msg.node] = msg.ref

    @handler
    def on_status(self, msg: GetStatus) -> Status:
        core = self.core
        return Status(
            core.id,
            core.role.value,
            core.term,
            core.lead,
            core.log.committed,
            core.log.applied,
            tuple(sorted(core.voters)),
            tuple(sorted(core.learners)),
        )

    def _propose(self, append) -> Outcome | None:
        try:
            index = append()
        except NotLeader as exc:
            return Outcome(False, error=str(exc), leader=exc.leader)
        except ProposalDropped as exc:
            return Outcome(False, error=f"dropped: {exc}", leader=self.core.lead)
        old = self.proposals.pop(index, None)
        if old is not None:  # a new leader overwrote that index before we applied it
            old[1].send(
                Outcome(
                    False,
                    index,
                    error="dropped: overwritten by a new leader",
                    leader=self.core.lead,
                )
            )
        self.proposals[index] = (self.core.term, self.defer_reply())
        self.drain_due = True
        return None

    # --- the Ready loop ------------------------------------------------------------------

    async def idle(self) -> None:
        """The mailbox ran empty: handle the core's Ready once for the whole burst of
        messages (one save, one round of messages), not once per message; then take
        one step of a snapshot under way."""
        if self.drain_due:
            self.drain_due = False
            await self._drain()
        if self.snapshot_sends:
            await self._send_snapshots()
        if self.snapshot_job is not None:
            await self._snapshot_step()

    async def _drain(self) -> None:
        core = self.core
        storage = self.storage
        peers = self.peers
        while core.has_ready():
            ready = core.ready()
            hard = ready.hard_state or self.unsaved_hard
            if hard is not None and ready.snapshot is None and not ready.entries:
                saved = self.saved_hard
                if hard.term == saved.term and hard.vote == saved.vote:
                    # Only the commit index moved: it rides with the next save (see the
                    # core's contract), which spares a leader one write per commit.
                    self.unsaved_hard = hard
                    hard = None
            if ready.snapshot is not None or ready.entries or hard is not None:
                if storage.blocking:
                    await self._io(
                        storage.save,
                        hard_state=hard,
                        entries=ready.entries,
                        snapshot=ready.snapshot,
                    )
                else:  # as _io does, without a coroutine to make for every Ready
                    storage.save(hard_state=hard, entries=ready.entries, snapshot=ready.snapshot)
                if hard is not None:
                    self.saved_hard = hard
                    self.unsaved_hard = None
            for m in ready.messages:
                peer = peers.get(m.to)
                if peer is not None:
                    if m.snapshot is not None and type(m.snapshot.data) is Deferred:
                        # A follower behind the log: now the snapshot is read, and sent
                        # once serialised (the core waits for the follower's answer).
                        self.snapshot_sends.append(m)
                        continue
                    peer.tell(m)
            if ready.snapshot is not None or ready.committed_entries:
                self._apply(ready)
            core.advance(ready)
            # Reads in flight belong to one term and one leader: the core forgets them
            # when either changes, so the replica must fail them then.
            if core.term != self.leadership[0] or ready.leader != self.leadership[1]:
                self.leadership = (core.term, ready.leader)
                self.known_leader = ready.leader
                self._fail_reads("the leader changed: retry")
                if self.proposals and ready.role is not LEADER and not core.is_member():
                    # Removed from the cluster: no leader sends this node entries any
                    # more, so what it proposed last may commit elsewhere unseen.
                    self._unknown_up_to(core.log.last_index(), "this node left the cluster")
            if ready.read_states:
                self.ready_reads += [(s.index, s.context) for s in ready.read_states]
            if self.ready_reads:
                self._answer_reads()
            if self.since_snapshot >= self.snapshot_every and self.snapshot_job is None:
                self._start_snapshot()

    def _apply(self, ready: Ready) -> None:
        if ready.snapshot is not None:
            self.snapshot_job = None  # of a state that is gone; the new one is newer
            self.sm.restore(bytes(ready.snapshot.data))
            self._unknown_up_to(ready.snapshot.meta.index)
        proposals = self.proposals
        sm = self.sm
        apply_change = getattr(sm, "apply_conf_change", None)
        apply = getattr(sm, "apply_unencoded", None)
        encode = getattr(sm, "encode_result", None)
        if apply is None or encode is None:
            apply, encode = sm.apply, None
        for entry in ready.committed_entries:
            result = None
            if entry.type is NORMAL and entry.data:
                result = apply(entry.index, entry.data)
                self.since_snapshot += 1
                if encode is not None and entry.index in proposals:
                    result = encode(result)  # someone waits for it
            elif entry.type is CONF_CHANGE and apply_change is not None:
                result = apply_change(entry.index, decode_conf_change(entry.data))
            if proposals:
                waiting = proposals.pop(entry.index, None)
                if waiting is not None:
                    term, reply = waiting
                    if term == entry.term:
                        reply.send(Outcome(True, entry.index, result))
                    else:
                        reply.send(
                            Outcome(
                                False,
                                entry.index,
                                error="dropped: overwritten by a new leader",
                                leader=ready.leader,
                            )
                        )

    def _unknown_up_to(self, index: int, why: str = "replaced by a snapshot") -> None:
        """Whether these proposals were (or will be) committed cannot be told here: a
        snapshot replaced their entries, or this node left the cluster. Say so, rather
        than "dropped" (which invites a retry that might apply the command twice)."""
        for i in [i for i in self.proposals if i <= index]:
            _, reply = self.proposals.pop(i)
            reply.send(Outcome(False, i, error=f"outcome unknown: {why}", leader=self.core.lead))

    def _answer_reads(self) -> None:
        applied = self.core.log.applied
        keep = []
        for index, context in self.ready_reads:
            waiting = self.reads.pop(context, None)
            if waiting is None:
                continue
            if index <= applied:
                query, reply = waiting
                reply.send(Outcome(True, index, self.sm.query(query)))
            else:
                self.reads[context] = waiting
                keep.append((index, context))
        self.ready_reads = keep

    def _start_snapshot(self) -> None:
        """Capture the state as of the applied index; it is serialised a step per idle
        (``snapshot_steps``), so a large state never stops the replica for long, or not
        at all until read (on in-memory storage: ``Deferred``)."""
        self.since_snapshot = 0
        stepped = getattr(self.sm, "snapshot_steps", None)
        if stepped is not None and getattr(self.storage, "in_memory", False):
            index = self.core.log.applied
            data = Deferred(stepped())
            self.snapshot_job = (index, self._after_catch_up(index, data))
            return
        # Either way the state is captured now, at the applied index the job records.
        steps = stepped() if stepped is not None else _at_once(self.sm.snapshot())
        self.snapshot_job = (self.core.log.applied, steps)

    def _after_catch_up(self, index: int, data: Deferred) -> Generator[None, None, Deferred]:
        """``data`` once ``snapshot_every / 20`` more entries are applied (5,000 of
        100,000: etcd's SnapshotCatchUpEntries): the log is compacted only up to where
        followers a little behind have read, or each of them would need the snapshot
        read for it. A serialised snapshot's own steps gave them that time."""
        while self.core.log.applied < index + self.snapshot_every // 20:
            yield
        return data

    async def _send_snapshots(self) -> None:
        """One step of serialising the first waiting snapshot message's data; each
        message whose data is made goes, in order. Until all are gone, the replica tells
        itself to come back (steps paced by its ticks alone would take minutes on a
        quiet cluster), yielding to other tasks between steps."""
        sends = self.snapshot_sends
        if sends[0].snapshot.data.step():
            while sends and sends[0].snapshot.data.made:
                m = sends.pop(0)
                peer = self.peers.get(m.to)
                if peer is not None:
                    snap = attrs.evolve(m.snapshot, data=bytes(m.snapshot.data))
                    peer.tell(attrs.evolve(m, snapshot=snap))
        if sends:
            self.ref.tell(_Continue())
            await trio.lowlevel.checkpoint()

    async def _snapshot_step(self) -> None:
        index, steps = self.snapshot_job
        try:
            next(steps)
            return
        except StopIteration as done:
            data = done.value
        self.snapshot_job = None
        if index <= self.core.log.snap_index:
            return  # a newer snapshot came from the leader meanwhile
        snap = self.core.compact(index, data)
        await self._io(self.storage.compact, snap)

    def _fail_waiting(self, why: str) -> None:
        for _, reply in self.proposals.values():
            reply.send(Outcome(False, error=why))
        self.proposals.clear()
        self._fail_reads(why)

    def _fail_reads(self, why: str) -> None:
        """Reads in flight die with the leadership that was to confirm them."""
        for _, reply in self.reads.values():
            reply.send(Outcome(False, error=why, leader=self.known_leader))
        self.reads.clear()
        self.ready_reads.clear()

    async def _io(self, fn, *args, **kwargs):
        """Run a storage call; in a worker thread if the storage blocks (a disk), else
        inline (a thread hop costs ~130 us here: too much for every Ready)."""
        if self.storage.blocking:
            return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
        return fn(*args, **kwargs)
