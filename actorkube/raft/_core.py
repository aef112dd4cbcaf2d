"""The Raft core: a pure, deterministic state machine (no sockets, no clock, no disk).

The contract (as etcd-io/raft's RawNode):

- Inputs: ``tick()`` (one unit of logical time), ``step(message)`` (a message from a
  peer), ``propose(data)``, ``propose_conf_change(change)``, ``read_index(context)``,
  ``transfer_leadership(node)``, ``compact(index, data)``.
- Outputs: whenever ``has_ready()``, ``ready()`` returns a ``Ready`` batch. The driver
  must, in this order: (1) persist ``ready.snapshot``, ``ready.entries`` and
  ``ready.hard_state`` durably; (2) send ``ready.messages``; (3) restore the state
  machine from ``ready.snapshot`` if there is one, then apply
  ``ready.committed_entries`` in order; (4) call ``advance(ready)``. Only then may
  ``ready()`` be called again. Persisting before sending is what makes a vote or an
  acknowledged entry survive a crash. A hard state that differs from the last one
  persisted only in ``commit`` may be kept back and written with the next save: the
  commit index is volatile state in Raft (a restarted node learns it again from the
  leader), and etcd does not fsync it either.
- ``ready.read_states``: a read with that context is linearizable once the state
  machine has applied ``index``.
- Time is ticks. Elections time out after a random number of ticks in
  ``[election_tick, 2 * election_tick - 1]``, drawn from a generator seeded by
  ``Config.seed`` and the node id: the same inputs always give the same outputs.

Role behaviour is swapped by assigning ``self._step`` (as etcd does), not by ladders of
role checks. Safety rules enforced here: one vote per term (persisted before the vote
is sent); a candidate's log must be at least as up to date as the voter's; leaders only
commit entries of their own term by counting matches of a quorum of voters; committed
entries are never truncated; one membership change at a time (a new one only once the
previous one committed); a conf change takes effect when it commits.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

import attrs

from actorkube.actor import decode_message, encode_message

from ._log import RaftLog
from ._progress import Progress, ProgressState, committed_index, quorum
from ._storage import Recovered
from ._types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MsgType,
    ReadState,
    Snapshot,
    SnapshotMeta,
)

TRANSFER = b"transfer"  # vote context of a campaign started by a leadership transfer


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# Enum members as module globals: the hot paths compare them several times per message,
# and in Python 3.11 an Enum class attribute costs ~90 ns (EnumType defines __getattr__,
# which takes attribute lookups off the fast path) against ~6 ns for a global.
APP = MsgType.APP
APP_RESP = MsgType.APP_RESP
VOTE = MsgType.VOTE
VOTE_RESP = MsgType.VOTE_RESP
PRE_VOTE = MsgType.PRE_VOTE
PRE_VOTE_RESP = MsgType.PRE_VOTE_RESP
HEARTBEAT = MsgType.HEARTBEAT
HEARTBEAT_RESP = MsgType.HEARTBEAT_RESP
SNAP = MsgType.SNAP
TIMEOUT_NOW = MsgType.TIMEOUT_NOW
READ_INDEX = MsgType.READ_INDEX
READ_INDEX_RESP = MsgType.READ_INDEX_RESP
FOLLOWER = Role.FOLLOWER
PRE_CANDIDATE = Role.PRE_CANDIDATE
CANDIDATE = Role.CANDIDATE
LEADER = Role.LEADER
PROBE = ProgressState.PROBE
REPLICATE = ProgressState.REPLICATE
SNAPSHOT = ProgressState.SNAPSHOT
ADD_LEARNER = ConfChangeType.ADD_LEARNER
PROMOTE = ConfChangeType.PROMOTE
REMOVE = ConfChangeType.REMOVE
NORMAL = EntryType.NORMAL
CONF_CHANGE = EntryType.CONF_CHANGE


class RaftError(Exception):
    """Base of the errors the core raises to its caller."""


class NotLeader(RaftError):
    """This node is not the leader (caller's retry target: ``leader``, 0 if unknown)."""

    def __init__(self, leader: int) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class ProposalDropped(RaftError):
    """The leader cannot take this proposal now (a transfer is under way, or a
    membership change is pending or invalid)."""


@attrs.frozen
class Config:
    """How one node behaves. ``initial_voters`` is the cluster's first membership: every
    node, including one that joins later, is given it; later changes come from the log
    or from a snapshot."""

    id: int
    initial_voters: tuple[int, ...] = ()
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_inflight: int = 256
    max_entries_per_msg: int = 1024
    pre_vote: bool = True
    check_quorum: bool = True
    seed: int = 0


@attrs.define
class Ready:
    """One batch of work for the driver (see the module docstring for the order). The
    lists are the driver's to keep: the core never touches them again. (Not frozen: one
    is built per batch, and a frozen attrs class costs twice as much to build.)"""

    messages: list[Message]
    entries: list[Entry]
    hard_state: HardState | None
    snapshot: Snapshot | None
    committed_entries: list[Entry]
    read_states: list[ReadState]
    leader: int
    role: Role


def decode_conf_change(data: bytes) -> ConfChange:
    return decode_message(data, lambda system, name: None)


class RaftNode:
    """One Raft node's state machine. See the module docstring for the contract."""

    def __init__(self, config: Config, recovered: Recovered | None = None) -> None:
        recovered = recovered or Recovered()
        self.config = config
        self.id = config.id
        self._rng = random.Random(config.seed * 1_000_003 + config.id)
        snap = recovered.snapshot
        self.log = RaftLog(snap.meta.index, snap.meta.term) if snap else RaftLog()
        self.log.entries = list(recovered.entries)
        self.log.stable = self.log.last_index()
        hs = recovered.hard_state
        self.term = hs.term
        self.vote = hs.vote
        self.log.committed = min(max(hs.commit, self.log.snap_index), self.log.last_index())
        # Membership: the snapshot's (or the initial one), then committed changes.
        conf = snap.meta.conf if snap else ConfState(tuple(sorted(config.initial_voters)), ())
        self.conf_history: list[tuple[int, ConfState]] = [(self.log.snap_index, conf)]
        self._conf_scanned = self.log.snap_index
        self.voters: set[int] = set(conf.voters)
        self.learners: set[int] = set(conf.learners)
        self.snapshot = snap  # the latest snapshot, sent to followers that fell behind
        self.lead = NONE
        self.role = FOLLOWER
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = config.election_tick
        self.votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}
        self.lead_transferee = NONE
        self.removed = False  # a leader whose own removal committed (see _apply_conf_change)
        self._append_due = False
        self.pending_conf_index = 0
        # Reads waiting for this term's first commit: (context, requester).
        self.pending_reads: list[tuple[bytes, int]] = []
        # Reads waiting for a quorum of heartbeat acks: context -> (index, requester, acks).
        self.read_acks: dict[bytes, tuple[int, int, set[int]]] = {}
        self.read_order: list[bytes] = []
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.pending_snapshot: Snapshot | None = None  # received, to persist and restore
        self._prev_hard = hs
        # The leader and role of the last Ready (etcd's SoftState): a change of either
        # is news for the driver even when nothing is to be persisted or sent.
        self._prev_lead = NONE
        self._prev_role: Role | None = None
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election
        self._become_follower(self.term, NONE)
        self._apply_committed_conf()

    # --- inputs --------------------------------------------------------------------------

    def tick(self) -> None:
        self._tick()

    def propose(self, data: bytes) -> int:
        """Append a command; returns its log index. Raises NotLeader / ProposalDropped."""
        return self._propose(NORMAL, data)

    def propose_conf_change(self, change: ConfChange) -> int:
        """Propose one membership change; returns its log index. Raises NotLeader, or
        ProposalDropped when another change is pending or this one is not valid now
        (PROMOTE of a learner that has not caught up, ADD of a member, REMOVE of a
        stranger)."""
        if self.role is not LEADER:
            raise NotLeader(self.lead)
        if self.pending_conf_index > self.log.committed:
            raise ProposalDropped("a membership change is still pending")
        node = change.node
        if change.type is ADD_LEARNER and (
            node in self.voters or node in self.learners
        ):
            raise ProposalDropped(f"node {node} is a member already")
        if change.type is PROMOTE:
            if node not in self.learners:
                raise ProposalDropped(f"node {node} is not a learner")
            if self.progress[node].match < self.log.committed:
                raise ProposalDropped(f"learner {node} has not caught up yet")
        if change.type is REMOVE and node not in self.voters | self.learners:
            raise ProposalDropped(f"node {node} is not a member")
        if change.type is REMOVE and self.voters == {node}:
            raise ProposalDropped("cannot remove the last voter")
        index = self._propose(CONF_CHANGE, encode_message(change))
        self.pending_conf_index = index
        return index

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; a ReadState with this context comes out
        of a later Ready (or never, if leadership is lost: the caller times out).
        Raises NotLeader when no leader is known."""
        if self.role is LEADER and not self.removed:
            self._leader_read(context, self.id)
        elif self.lead != NONE and self.lead != self.id:
            self._send(Message(READ_INDEX, self.lead, self.id, self.term, context=context))
        else:
            raise NotLeader(NONE)

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to voter ``target`` (once its log is up to date)."""
        if self.role is not LEADER:
            raise NotLeader(self.lead)
        if target == self.id or target not in self.voters:
            raise ProposalDropped(f"cannot transfer leadership to {target}")
        self.lead_transferee = target
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.log.last_index():
            self._send(Message(TIMEOUT_NOW, target, self.id, self.term))
        else:
            self._send_append(target)

    def is_member(self) -> bool:
        """Whether this node is a voter or a learner of the membership it knows."""
        return self.id in self.voters or self.id in self.learners

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application's state as of applied ``index`` is ``data``: keep it as the
        latest snapshot and drop the log up to there. The driver persists the returned
        snapshot (storage.compact)."""
        if index <= self.log.snap_index:
            raise RaftError(f"index {index} is compacted already")
        if index > self.log.applied:
            raise RaftError(f"index {index} is not applied yet (applied {self.log.applied})")
        term = self.log.term(index)
        snap = Snapshot(SnapshotMeta(index, term, self._conf_at(index)), data)
        self.log.compact(index)
        later = [(i, c) for i, c in self.conf_history if i > index]
        self.conf_history = [(index, snap.meta.conf), *later]
        self.snapshot = snap
        return snap

    def step(self, m: Message) -> None:
        """Handle a message from a peer."""
        if m.term > self.term:
            if m.type in (VOTE, PRE_VOTE):
                force = m.context == TRANSFER
                in_lease = (
                    self.config.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.config.election_tick
                )
                if not force and in_lease:
                    return  # a leader is alive: ignore a disruptive candidate
            if m.type is PRE_VOTE or (m.type is PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote proposes a term; it does not move ours
            elif m.type in (APP, HEARTBEAT, SNAP):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.config.check_quorum or self.config.pre_vote) and m.type in (
                HEARTBEAT,
                APP,
            ):
                # A stale leader (partitioned away) learns our term and steps down.
                self._send(Message(APP_RESP, m.frm, self.id, self.term))
            elif m.type is PRE_VOTE:
                self._send(Message(PRE_VOTE_RESP, m.frm, self.id, self.term, reject=True))
            return
        if m.type in (VOTE, PRE_VOTE):
            self._handle_vote_request(m)
            return
        self._step(m)

    # --- outputs -------------------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def has_ready(self) -> bool:
        if self._append_due:
            self._flush_appends()
        log = self.log
        prev = self._prev_hard
        # Called after every input: plain field reads, cheapest and likeliest first.
        return bool(
            self.msgs
            or log.snap_index + len(log.entries) > log.stable
            or log.committed != prev.commit
            or log.committed > log.applied
            or self.term != prev.term
            or self.vote != prev.vote
            or self.read_states
            or self.pending_snapshot is not None
            or self.lead != self._prev_lead
            or self.role is not self._prev_role
        )

    def ready(self) -> Ready:
        if self._append_due:
            self._flush_appends()
        log = self.log
        prev = self._prev_hard
        term, vote, committed = self.term, self.vote, log.committed
        entries, base = log.entries, log.snap_index + 1
        ready = Ready(
            self.msgs,
            entries[log.stable + 1 - base :],  # not persisted yet
            HardState(term, vote, committed)
            if term != prev.term or vote != prev.vote or committed != prev.commit
            else None,
            self.pending_snapshot,
            entries[log.applied + 1 - base : committed + 1 - base],  # not applied yet
            self.read_states,
            self.lead,
            self.role,
        )
        self.msgs = []
        self.read_states = []
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied ``ready``."""
        if ready.hard_state is not None:
            self._prev_hard = ready.hard_state
        self._prev_lead = ready.leader
        self._prev_role = ready.role
        if ready.snapshot is not None and ready.snapshot is self.pending_snapshot:
            self.pending_snapshot = None
        log = self.log
        if ready.entries:
            last = ready.entries[-1]
            if last.index > log.stable and log.term(last.index) == last.term:
                log.stable = last.index
        if ready.committed_entries:
            index = ready.committed_entries[-1].index
            if index > log.applied:
                log.applied = index

    # --- roles ---------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = self.config.election_tick + self._rng.randrange(
            self.config.election_tick
        )
        self.votes = {}
        self.lead_transferee = NONE
        self.removed = False
        self.read_acks.clear()
        self.read_order.clear()
        self.pending_reads.clear()

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.role = FOLLOWER
        self.lead = lead
        self._step = self._step_follower
        self._tick = self._tick_election

    def _become_pre_candidate(self) -> None:
        # Term and vote stay: a pre-vote that fails must leave no trace.
        self.role = PRE_CANDIDATE
        self.lead = NONE
        self.votes = {}
        self._step = self._step_candidate
        self._tick = self._tick_election

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = CANDIDATE
        self._step = self._step_candidate
        self._tick = self._tick_election

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = LEADER
        self.lead = self.id
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        last = self.log.last_index()
        self.progress = {
            n: Progress(last + 1, self.config.max_inflight, learner=n in self.learners)
            for n in sorted(self.voters | self.learners)
        }
        if self.id in self.progress:
            me = self.progress[self.id]
            me.match, me.next = last, last + 1
            me.become_replicate()
            me.recent_active = True
        # Entries of earlier terms commit only through one of ours (§5.4.2); and any
        # conf change in the log must commit before a new one is accepted.
        self.pending_conf_index = last
        self._append([Entry(self.term, last + 1)])
        self._broadcast_append()

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _campaign(self, transfer: bool = False) -> None:
        if not self._promotable():
            return
        if self.config.pre_vote and not transfer:
            self._become_pre_candidate()
            self._request_votes(PRE_VOTE, self.term + 1, b"")
        else:
            self._start_real_election(TRANSFER if transfer else b"")

    def _start_real_election(self, context: bytes = b"") -> None:
        self._become_candidate()
        self._request_votes(VOTE, self.term, context)

    def _request_votes(self, kind: MsgType, term: int, context: bytes) -> None:
        self.votes[self.id] = True
        if self._won():  # a cluster of one
            if kind is PRE_VOTE:
                self._start_real_election()
            else:
                self._become_leader()
            return
        for peer in sorted(self.voters):
            if peer != self.id:
                self._send(
                    Message(
                        kind,
                        peer,
                        self.id,
                        term,
                        log_term=self.log.last_term(),
                        index=self.log.last_index(),
                        context=context,
                    )
                )

    def _won(self) -> bool:
        granted = sum(1 for n, v in self.votes.items() if v and n in self.voters)
        return granted >= quorum(len(self.voters))

    def _lost(self) -> bool:
        rejected = sum(1 for n, v in self.votes.items() if not v and n in self.voters)
        return rejected >= quorum(len(self.voters))

    # --- ticks ---------------------------------------------------------------------------

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_timeout:
            self.election_elapsed = 0
            self._campaign()

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.removed or (self.config.check_quorum and not self._quorum_active()):
                self._become_follower(self.term, NONE)
                return
            if self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer took too long: give up on it
            for pr in self.progress.values():
                if pr.state is SNAPSHOT:
                    pr.snapshot_ticks += 1
                    if pr.snapshot_ticks >= 2:
                        pr.become_probe()  # the snapshot was probably lost: try again
        if self.role is LEADER and self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat(b"")

    def _quorum_active(self) -> bool:
        active = 0
        for node, pr in self.progress.items():
            if node in self.voters and (node == self.id or pr.recent_active):
                active += 1
            if node != self.id:
                pr.recent_active = False
        return active >= quorum(len(self.voters))

    # --- voting --------------------------------------------------------------------------

    def _handle_vote_request(self, m: Message) -> None:
        pre = m.type is PRE_VOTE
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (pre and m.term > self.term)
        )
        resp = PRE_VOTE_RESP if pre else VOTE_RESP
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # A granted pre-vote answers at the proposed term, so the pre-candidate
            # counts it; a real vote is recorded (and persisted before it is sent).
            self._send(Message(resp, m.frm, self.id, m.term))
            if not pre:
                self.vote = m.frm
                self.election_elapsed = 0
        else:
            self._send(Message(resp, m.frm, self.id, self.term, reject=True))

    def _step_candidate(self, m: Message) -> None:
        expected = PRE_VOTE_RESP if self.role is PRE_CANDIDATE else VOTE_RESP
        if m.type in (APP, HEARTBEAT, SNAP):
            self._become_follower(m.term, m.frm)  # a leader of this term exists
            self._step_follower(m)
        elif m.type is expected:
            self.votes.setdefault(m.frm, not m.reject)
            if self._won():
                if self.role is PRE_CANDIDATE:
                    self._start_real_election()
                else:
                    self._become_leader()
            elif self._lost():
                self._become_follower(self.term, NONE)
        elif m.type is TIMEOUT_NOW:
            pass  # not a follower: ignore

    # --- follower --------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t is APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t is HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self.log.commit_to(min(m.commit, self.log.last_index()))
            self._apply_committed_conf()
            self._send(
                Message(HEARTBEAT_RESP, m.frm, self.id, self.term, context=m.context)
            )
        elif t is SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t is TIMEOUT_NOW:
            self._campaign(transfer=True)
        elif t is READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif t is READ_INDEX and self.lead != NONE:
            self._send(attrs.evolve(m, to=self.lead))  # forward to the leader we know

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(Message(APP_RESP, m.frm, self.id, self.term, index=log.committed))
            return
        last = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            if self._conf_scanned < log.committed:
                self._apply_committed_conf()
            self.msgs.append(Message(APP_RESP, m.frm, self.id, self.term, 0, last))
            return
        hint_index, hint_term = log.find_conflict_by_term(m.index, m.log_term)
        self._send(
            Message(
                APP_RESP,
                m.frm,
                self.id,
                self.term,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        meta = snap.meta
        log = self.log
        if meta.index <= log.committed:
            self._send(Message(APP_RESP, m.frm, self.id, self.term, index=log.committed))
            return
        if log.match_term(meta.index, meta.term):
            # We have that entry: just fast-forward the commit index, and claim no more
            # than that (what follows it in our log may not match the leader's).
            log.commit_to(meta.index)
            self._apply_committed_conf()
            self._send(Message(APP_RESP, m.frm, self.id, self.term, index=log.committed))
            return
        else:
            log.restore(meta.index, meta.term)
            log.applied = meta.index  # the driver restores the state machine from it
            self.snapshot = snap
            self.pending_snapshot = snap
            self.conf_history = [(meta.index, meta.conf)]
            self._conf_scanned = meta.index
            self.voters, self.learners = set(meta.conf.voters), set(meta.conf.learners)
        self._send(Message(APP_RESP, m.frm, self.id, self.term, index=log.last_index()))

    # --- leader ----------------------------------------------------------------------------

    def _propose(self, kind: EntryType, data: bytes) -> int:
        if self.role is not LEADER:
            raise NotLeader(self.lead)
        if self.removed:
            raise ProposalDropped("this leader was removed from the cluster")
        if self.lead_transferee != NONE:
            raise ProposalDropped(f"leadership is moving to {self.lead_transferee}")
        index = self.log.last_index() + 1
        self._append([Entry(self.term, index, kind, data)])
        self._append_due = True  # sent once per Ready, for every proposal since the last
        return index

    def _append(self, entries: list[Entry]) -> None:
        self.log.append(entries)
        if self.id in self.progress:
            self.progress[self.id].maybe_update(self.log.last_index())
        # The leader's own match is the highest: raising it moves the quorum's index
        # only when the leader alone is a quorum.
        if len(self.voters) <= 1:
            self._maybe_commit()

    def _maybe_commit(self) -> bool:
        matches = [pr.match for n, pr in self.progress.items() if n in self.voters]
        index = committed_index(matches)
        # Only entries of the current term commit by counting (§5.4.2).
        if index > self.log.committed and self.log.term(index) == self.term:
            self.log.commit_to(index)
            self._apply_committed_conf()
            self._release_pending_reads()
            return True
        return False

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t is READ_INDEX:
            self._leader_read(m.context, m.frm)
            return
        pr = self.progress.get(m.frm)
        if pr is None:
            return  # not a member (any more)
        if t is APP_RESP:
            pr.recent_active = True
            self._handle_append_response(m, pr)
        elif t is HEARTBEAT_RESP:
            pr.recent_active = True
            if pr.state is PROBE:
                pr.paused = False
            elif pr.state is REPLICATE and pr.is_paused():
                # Every append in flight may have been lost: let one more go, so that
                # a follower that never got them rejects it and we fall back to probing.
                pr.inflight.popleft()
            if pr.match < self.log.last_index():
                self._send_append(m.frm)
            if m.context:
                self._ack_read(m.context, m.frm)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decrease_to(m.index, hint):
                if pr.state is REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        old_paused = pr.is_paused()
        if pr.maybe_update(m.index):
            if pr.state is PROBE:
                pr.become_replicate()
            elif pr.state is SNAPSHOT and pr.match >= pr.pending_snapshot:
                pr.become_probe()
                pr.become_replicate()
            # A match at or below the commit index cannot move it: skip the count.
            if pr.match > self.log.committed and self._maybe_commit() and (
                self.role is not LEADER or m.frm not in self.progress
            ):
                return  # the commit took a membership change into effect
            # Followers learn a new commit index from the next append or heartbeat (at
            # most a heartbeat later): no round of messages just for it.
            if old_paused:
                self._send_append(m.frm)
            while self._send_append(m.frm, only_if_entries=True):
                pass
            if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                self._send(Message(TIMEOUT_NOW, m.frm, self.id, self.term))
        elif pr.state is SNAPSHOT and m.index >= pr.pending_snapshot:
            pr.become_probe()
            self._send_append(m.frm)

    def _flush_appends(self) -> None:
        """Appends are batched: proposals only mark them as due, and they go out once,
        when the driver next asks for a Ready."""
        self._append_due = False
        if self.role is LEADER:
            for node in self.progress:
                # Only entries: a follower that an acknowledgement already brought up to
                # date needs no empty append (heartbeats carry the commit index).
                if node != self.id:
                    self._send_append(node, only_if_entries=True)

    def _broadcast_append(self) -> None:
        for node in self.progress:
            if node != self.id:
                self._send_append(node)

    def _send_append(self, to: int, only_if_entries: bool = False) -> bool:
        """Send the next append (or the snapshot) to ``to`` if its progress allows;
        True if an append carrying entries went out."""
        pr = self.progress[to]
        log = self.log
        if only_if_entries and pr.next > log.snap_index + len(log.entries):
            return False  # nothing new to send
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None or pr.next < log.first_index():
            if only_if_entries:
                return False
            if self.snapshot is None or self.snapshot.meta.index < prev:
                return False  # not compacted: the term is just unknown yet (cannot happen)
            pr.become_snapshot(self.snapshot.meta.index)
            self._send(Message(SNAP, to, self.id, self.term, snapshot=self.snapshot))
            return False
        start = pr.next - log.snap_index - 1
        entries = tuple(log.entries[start : start + self.config.max_entries_per_msg])
        if only_if_entries and not entries:
            return False
        self.msgs.append(
            Message(APP, to, self.id, self.term, prev_term, prev, entries, log.committed)
        )
        pr.sent(entries[-1].index if entries else prev)
        return bool(entries)

    def _broadcast_heartbeat(self, context: bytes) -> None:
        for node, pr in self.progress.items():
            if node != self.id:
                self._send(
                    Message(
                        HEARTBEAT,
                        node,
                        self.id,
                        self.term,
                        commit=min(pr.match, self.log.committed),
                        context=context,
                    )
                )

    # --- linearizable reads ------------------------------------------------------------------

    def _leader_read(self, context: bytes, frm: int) -> None:
        if self.removed:
            return  # outside the cluster: it cannot confirm that it still leads
        if context in self.read_acks or any(c == context for c, _ in self.pending_reads):
            return  # a duplicate (the network may deliver a request twice)
        if self.log.term(self.log.committed) != self.term:
            # No entry of this term committed yet: our commit index may be stale.
            self.pending_reads.append((context, frm))
            return
        index = self.log.committed
        if self.voters == {self.id}:
            self._read_ready(index, context, frm)
            return
        self.read_acks[context] = (index, frm, {self.id})
        self.read_order.append(context)
        self._broadcast_heartbeat(context)

    def _release_pending_reads(self) -> None:
        if self.pending_reads and self.log.term(self.log.committed) == self.term:
            pending, self.pending_reads = self.pending_reads, []
            for context, frm in pending:
                self._leader_read(context, frm)

    def _ack_read(self, context: bytes, frm: int) -> None:
        entry = self.read_acks.get(context)
        if entry is None:
            return
        entry[2].add(frm)
        if sum(1 for n in entry[2] if n in self.voters) < quorum(len(self.voters)):
            return
        # This read and every one queued before it are confirmed by the same quorum.
        while self.read_order:
            ctx = self.read_order.pop(0)
            index, requester, _ = self.read_acks.pop(ctx)
            self._read_ready(index, ctx, requester)
            if ctx == context:
                break

    def _read_ready(self, index: int, context: bytes, frm: int) -> None:
        if frm == self.id:
            self.read_states.append(ReadState(index, context))
        else:
            self._send(
                Message(
                    READ_INDEX_RESP, frm, self.id, self.term, index=index, context=context
                )
            )

    # --- membership ---------------------------------------------------------------------------

    def _apply_committed_conf(self) -> None:
        """Take every conf change up to the commit index into effect (in log order)."""
        log = self.log
        while self._conf_scanned < log.committed:
            base = log.snap_index + 1
            end = log.committed
            start = max(self._conf_scanned + 1, base)
            # This runs for every commit: the entries are scanned in one tight loop.
            for e in log.entries[start - base : end - base + 1]:
                if e.type is CONF_CHANGE:
                    # Advance before applying: applying may commit more and come back
                    # here; then this loop starts again after what that call scanned.
                    self._conf_scanned = e.index
                    self._apply_conf_change(e.index, decode_conf_change(e.data))
                    break
            else:
                self._conf_scanned = end

    def _apply_conf_change(self, index: int, cc: ConfChange) -> None:
        node = cc.node
        if cc.type is ADD_LEARNER:
            self.learners.add(node)
        elif cc.type is PROMOTE:
            self.learners.discard(node)
            self.voters.add(node)
        else:
            self.voters.discard(node)
            self.learners.discard(node)
        conf = ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))
        self.conf_history.append((index, conf))
        if self.role is LEADER:
            if node == self.id and cc.type is REMOVE:
                # Removed: the others learn that the removal committed only from us, so
                # keep sending the commit index (appends, heartbeats) until the next
                # election timeout, and take no proposals; then step down.
                self.removed = True
                self.progress.pop(node, None)
                self._broadcast_append()
                return
            if cc.type is REMOVE:
                self.progress.pop(node, None)
                if self.lead_transferee == node:
                    self.lead_transferee = NONE
            else:
                pr = self.progress.get(node)
                if pr is None:
                    pr = self.progress[node] = Progress(
                        self.log.last_index() + 1, self.config.max_inflight
                    )
                pr.learner = node in self.learners
            self._maybe_commit()  # a smaller quorum may commit more now

    def _conf_at(self, index: int) -> ConfState:
        conf = self.conf_history[0][1]
        for i, c in self.conf_history:
            if i <= index:
                conf = c
        return conf

    # --- sending ------------------------------------------------------------------------------

    def _send(self, m: Message) -> None:
        self.msgs.append(m)
