"""An etcd member: a Raft replica whose state machine is the MVCC store, plus what a
member serves beside the log: watches, serializable reads and the leader's lessor.

Rules of this file:

- Writes travel as a ``Command`` in the Raft log; every replica applies it to its store.
  A command carries the client's session and sequence number: a retried command that
  was applied already answers with the response it got then, never applies twice.
- Linearizable reads are the replica's ReadIndex queries; serializable ones answer from
  this member's store at once (maybe stale, never torn).
- A watch lives on the member it was opened on and sees events as that member applies
  them: all of a revision's events in one response, in revision order, from its start
  revision on (from the store's history first). A watcher that cannot keep up (its
  mailbox is full) or falls behind a compaction is cancelled with a reason, never
  skipped.
- Lease expiry is the leader's call: it keeps a deadline per lease (on the actor
  system's clock), extends every lease when it takes office, and proposes a revoke
  when one runs out. Keep-alives and time-to-live go to the leader.
- Membership (see ``_members.py``) is part of the replicated state: the members table
  changes with the Raft membership changes, at the same log entries. A member's peers
  (whom it sends Raft messages) are rebuilt from the table whenever it changes: an
  added member's address is resolved, a removed member's goes. The leader alone takes
  membership requests and checks them first (etcd's checks, strict reconfiguration
  included). A member that learns it was removed (by applying its removal, or from a
  member it sends to) stops: a removed leader first steps down, after spreading the
  commit of its removal for an election timeout (see the Raft core).
- At its first start (empty storage) a member writes its base, the state at index 0
  with the initial members, into its storage as a snapshot: from then on its table
  comes from what it recovers, and its start-up arguments only say where peers are.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Generator, Iterable
from typing import Any

import msgpack
import trio

from actorkube.actor import ActorRef, MailboxFull, Terminated, decode_message, handler, message
from actorkube.actor import encode_message as _encode
from actorkube.raft import (
    ConfChange,
    Config,
    ConfState,
    HardState,
    Message,
    Outcome,
    RaftReplica,
    Recovered,
    Snapshot,
    SnapshotMeta,
)
from actorkube.raft._core import LEADER

from ._members import (
    JoinInfoRequest,
    Member,
    MemberAddRequest,
    MemberAttrSetRequest,
    MemberAttrSetResponse,
    MemberChange,
    MemberListRequest,
    MemberListResponse,
    MemberPromoteRequest,
    MemberRemoved,
    MembershipChangePending,
    MemberTable,
    change_for,
    decode_context,
    initial_member,
    refuse_add,
    refuse_promote,
    refuse_remove,
    response_for,
)
from ._mvcc import MVCCStore, run_steps
from ._types import (
    Code,
    CompactionRequest,
    DeleteRangeRequest,
    Event,
    EventType,
    Failure,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    PutRequest,
    ResponseHeader,
    TxnRequest,
)
from ._watchindex import WatchIndex

STALE_SEQUENCE = "etcdserver: request is older than the session's last one"
NOT_LEADER = "etcdserver: not leader"
HEALTH_INTERVAL = 5.0  # etcd's: a peer heard from within it counts as connected


def _no_refs(system: str, name: str) -> None:
    return None


def is_fresh(recovered: Recovered) -> bool:
    """Whether a storage holds nothing: a member's very first start."""
    return (
        recovered.snapshot is None
        and not recovered.entries
        and recovered.hard_state == HardState()
    )


@message(tag="etcd.Command")
class Command:
    """One write in the log. ``client`` "" means no session (no deduplication)."""

    client: str
    seq: int
    request: (
        PutRequest
        | DeleteRangeRequest
        | TxnRequest
        | CompactionRequest
        | LeaseGrantRequest
        | LeaseRevokeRequest
        | MemberAttrSetRequest
    )


def encode_result(response: Any) -> bytes:
    """A response of ``EtcdStateMachine.apply_unencoded`` as bytes."""
    return response if type(response) is bytes else _encode(response)


# Decoded commands, shared by the members in this process: the members of a group that
# run in one process each apply every command, from bytes of their own (each got its
# entry in a message) but equal. Decoding is a good part of applying a small write, and
# a decoded command is immutable, so the first member to apply one decodes it for all
# (their stores then hold the same value objects, not a copy each). The members apply
# an entry within a few rounds of messages of each other, so a short memory is enough:
# a ring of slots by log index, each with the bytes it was decoded from (comparing bytes
# costs far less than hashing them; members of different groups in one process only
# take each other's slots). Large commands are left out: the memory they would hold is
# not worth it.
DECODED_KEPT = 256
DECODED_MAX_SIZE = 16 * 1024
_decoded: list[tuple[int, bytes, Any] | None] = [None] * DECODED_KEPT


def _decode_command(index: int, data: bytes) -> Any:
    """The command of the entry at ``index`` whose data is ``data``."""
    slot = index % DECODED_KEPT
    known = _decoded[slot]
    if known is not None and known[0] == index and known[1] == data:
        return known[2]
    cmd = decode_message(data, _no_refs)
    if len(data) <= DECODED_MAX_SIZE:
        _decoded[slot] = (index, data, cmd)
    return cmd


class EtcdStateMachine:
    """The replica's state machine: the store, the clients' sessions (the last sequence
    number and response of each, the most recent ``max_sessions`` kept) and the members
    table, whose base is ``initial_members``."""

    def __init__(
        self,
        *,
        max_sessions: int = 4096,
        initial_members: Iterable[Member] = (),
        **store_options: Any,
    ) -> None:
        self.store_options = store_options
        self.store = MVCCStore(**store_options)
        self.max_sessions = max_sessions
        # client -> (its last sequence number, the response: bytes or a message)
        self.sessions: collections.OrderedDict[str, tuple[int, Any]] = collections.OrderedDict()
        self.members = MemberTable(initial_members)

    def apply(self, index: int, data: bytes) -> bytes:
        """Apply one command; the encoded response."""
        return encode_result(self.apply_unencoded(index, data))

    def apply_unencoded(self, index: int, data: bytes) -> Any:
        """``apply`` but for the encoding: the response as a message, or as bytes (what
        ``encode_result`` turns into ``apply``'s answer). Only the member whose client
        waits encodes it; the others keep it as it is, in the sessions too (it is
        immutable, so its bytes are the same whenever they are made)."""
        cmd = _decode_command(index, data)
        client = cmd.client
        if client:
            last = self.sessions.get(client)
            if last is not None and cmd.seq <= last[0]:
                if cmd.seq == last[0]:
                    return last[1]  # a retry of what was applied: the same answer
                return Failure(Code.FAILED_PRECONDITION, STALE_SEQUENCE)
        request = cmd.request
        if type(request) is MemberAttrSetRequest:
            self.members.publish(request.id, request.name)
            response = MemberAttrSetResponse(ResponseHeader(self.store.revision))
        else:
            response = self.store.execute(request)
        if client:
            self._remember(client, cmd.seq, response)
        return response

    encode_result = staticmethod(encode_result)

    def apply_conf_change(self, index: int, change: ConfChange) -> bytes:
        """A committed membership change: into the table (the core took it into the
        Raft configuration already); the response answers the client's lane."""
        context = decode_context(change)
        member = self.members.apply_change(change, context.member if context else None)
        header = ResponseHeader(self.store.revision)
        response = _encode(response_for(change, member, header, self.members.listed()))
        if context is not None and context.client:
            self._remember(context.client, context.seq, response)
        return response

    def _remember(self, client: str, seq: int, response: Any) -> None:
        self.sessions[client] = (seq, response)
        self.sessions.move_to_end(client)
        while len(self.sessions) > self.max_sessions:
            self.sessions.popitem(last=False)

    def query(self, data: bytes) -> bytes:
        request = decode_message(data, _no_refs)
        if type(request) is MemberListRequest:
            header = ResponseHeader(self.store.revision)
            return _encode(MemberListResponse(header, self.members.listed()))
        if type(request) is JoinInfoRequest:
            return _encode(self.members.join_info())
        return _encode(self.store.execute(request))

    def snapshot(self) -> bytes:
        return run_steps(self.snapshot_steps())

    def snapshot_steps(self) -> Generator[None, None, bytes]:
        """The snapshot of now, serialised a step at a time (see ``MVCCStore.dump_steps``):
        [store dump as bytes, sessions, members table]."""
        sessions = [[c, s, encode_result(r)] for c, (s, r) in self.sessions.items()]
        sessions = msgpack.packb(sessions, use_bin_type=True)
        members = msgpack.packb(self.members.dump(), use_bin_type=True)
        return snapshot_steps(self.store.dump_steps(), sessions, members)

    def restore(self, data: bytes | None) -> None:
        self.sessions.clear()
        if data is None:
            self.store = MVCCStore(**self.store_options)
            self.members.reset()
            return
        store, sessions, *members = msgpack.unpackb(data, raw=False)
        self.store = MVCCStore.load(store, **self.store_options)
        for client, seq, response in sessions:
            self.sessions[client] = (seq, response)
        if members:
            self.members.load(members[0])
        else:  # written before the table was replicated: the base is all there was
            self.members.reset()


def snapshot_steps(
    store: Generator[None, None, list[bytes]], sessions: bytes, members: bytes
) -> Generator[None, None, bytes]:
    """A state machine snapshot from a store dump (in steps) and the packed sessions and
    members table: the msgpack array [store dump as bytes, sessions, members]."""
    parts = yield from store
    size = sum(map(len, parts))
    # msgpack's bin 32 header: the store's bytes go in as one binary, unjoined.
    header = b"\x93\xc6" + size.to_bytes(4, "big")
    return b"".join([header, *parts, sessions, members])


# --- the member's own requests ---------------------------------------------------------------


@message(tag="etcd.SerializableRead")
class SerializableRead:
    """A range answered from this member's store at once (``Outcome.result`` holds the
    encoded response, as for a linearizable ``Query``)."""

    data: bytes


@message(tag="etcd.LeaseKeepAlive")
class LeaseKeepAlive:
    id: int


@message(tag="etcd.LeaseKeepAliveResponse")
class LeaseKeepAliveResponse:
    """``ttl`` 0: the lease does not exist (any more)."""

    header: ResponseHeader
    id: int
    ttl: int


@message(tag="etcd.LeaseTimeToLive")
class LeaseTimeToLive:
    request: LeaseTimeToLiveRequest


@message(tag="etcd.Watch")
class Watch:
    """Open watch ``watch_id`` for ``watcher`` (which receives ``WatchResponse``
    messages): every change of ``key`` (or of [key, range_end)) from ``start_revision``
    (0: the next one), both ends inclusive of etcd's conventions."""

    watcher: ActorRef
    watch_id: int
    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False


@message(tag="etcd.CancelWatch")
class CancelWatch:
    watcher: ActorRef
    watch_id: int


@message(tag="etcd.RequestProgress")
class RequestProgress:
    """Send every caught-up watch of ``watcher`` a progress notification now. A member
    with no watch of ``watcher`` (it restarted since, or dropped them) answers with the
    "member lost your watches" response: watch id 0, canceled, the reason naming the
    member's address."""

    watcher: ActorRef


@message(tag="etcd.WatchResponse")
class WatchResponse:
    """Events of whole revisions, in order; no events: a progress notification (the
    watch has seen everything up to ``header.revision``); ``created``: the watch is open
    (and starts after the revision in the header, or at its start revision); ``canceled``:
    the watch is over, ``cancel_reason`` says why (``compact_revision`` is set when its
    history was compacted away).

    A response covers the revisions from ``first_revision`` to ``header.revision``: the
    next one of the same watch starts right after. A watcher that sees a gap lost a
    response on the way (the client then resumes the watch from where it was)."""

    watch_id: int
    header: ResponseHeader
    events: tuple[Event, ...] = ()
    created: bool = False
    canceled: bool = False
    cancel_reason: str = ""
    compact_revision: int = 0
    first_revision: int = 0


@message(tag="etcd.SnapshotRequest")
class SnapshotRequest:
    """Ask a member for a consistent copy of its store (etcd's Maintenance.Snapshot),
    answered with a ``SnapshotResponse``."""


@message(tag="etcd.SnapshotResponse")
class SnapshotResponse:
    """The member's store as of ``header.revision``: ``MVCCStore.dump`` bytes (every
    version since the last compaction, and the leases). No membership, no sessions."""

    header: ResponseHeader
    data: bytes


@message(tag="etcd.MemberRemovedNotice")
class MemberRemovedNotice:
    """To a member that sent Raft messages after the cluster removed it (etcd's peers
    answer such a member the same way): ``member`` was removed."""

    member: int


@message(tag="etcd.PublishMember")
class PublishMember:
    """A started member asks the leader to record its name (and that it started)."""

    id: int
    name: str


@message(tag="etcd._BackupStep")
class _BackupStep:
    pass


class _Watching:
    """A watch: ``next_rev`` is the first revision not yet looked at; ``reported`` the
    first revision not yet covered by a response (ranges without matching events are
    covered by the next response, so that the watcher can tell a lost one)."""

    __slots__ = ("id", "key", "next_rev", "options", "range_end", "reported", "watcher")

    def __init__(self, msg: Watch, next_rev: int) -> None:
        self.watcher = msg.watcher
        self.id = msg.watch_id
        self.key = msg.key
        self.range_end = msg.range_end
        self.next_rev = self.reported = next_rev
        self.options = msg


class EtcdNode(RaftReplica):
    """One etcd member. See the module docstring. ``progress_interval``: seconds between
    progress notifications to watches that asked for them (etcd: 10 minutes).
    ``snapshot_every``: applied entries between snapshots, 100,000 as etcd's
    ``--snapshot-count``; a snapshot serialises the whole store (every version since the
    last compaction) on the member's thread, so it is a pause that grows with the data.

    ``peers`` says where members are (node id -> reference; its addresses also reach
    members the table does not know yet, such as those a joining member was told of).
    ``initial_members``: the table's base, used only at the first start (empty storage);
    by default the initial voters of ``config`` at their addresses in ``peers``.
    ``name``: the name this member publishes once it runs, if the table does not list
    it as started yet (default: its actor name). ``strict_reconfig_check`` and ``max_learners`` are
    etcd's flags of the same names."""

    def __init__(
        self,
        config: Config,
        storage: Any,
        peers: dict[int, ActorRef],
        *,
        initial_members: Iterable[Member] | None = None,
        name: str = "",
        strict_reconfig_check: bool = True,
        max_learners: int = 1,
        tick_interval: float = 0.1,
        snapshot_every: int = 100_000,
        progress_interval: float = 600.0,
        **store_options: Any,
    ) -> None:
        if initial_members is None:
            initial_members = [
                initial_member(i, str(peers[i].address))
                if i in peers
                else Member(i, "", "", started=True)
                for i in config.initial_voters
            ]
        super().__init__(
            config,
            storage,
            EtcdStateMachine(initial_members=initial_members, **store_options),
            peers,
            tick_interval=tick_interval,
            snapshot_every=snapshot_every,
        )
        self.progress_interval = progress_interval
        self.watches: dict[tuple[ActorRef, int], _Watching] = {}
        # ``watches`` by key range, built when a delivery needs it after they changed
        # (every change of ``watches`` drops it).
        self._index: WatchIndex[_Watching] | None = None
        # The store's revision when _deliver last brought every watch up to it: until
        # the revision moves or a watch opens, it has nothing to do.
        self.delivered = -1
        self.lease_deadlines: dict[int, float] = {}
        self.revoking: set[int] = set()
        self.was_leader = False
        self.lease_changes_seen = -1
        # Membership.
        self.address_book = {node: str(ref.address) for node, ref in peers.items()}
        self.member_name = name
        self.strict_reconfig_check = strict_reconfig_check
        self.max_learners = max_learners
        self.members_seen = -1  # the table's version the peers were built from
        self.unresolved: set[int] = set()  # peers in this system not spawned yet
        self.left_cluster = False
        self.ticks = 0
        self.last_heard: dict[int, int] = {}  # node -> the tick we last heard from it
        self.health_ticks = max(1, math.ceil(HEALTH_INTERVAL / tick_interval))
        self.told_removed: dict[int, int] = {}
        # Backups under way: (header, dump steps, reply).
        self.backups: list[tuple[ResponseHeader, Generator, Any]] = []

    @property
    def store(self) -> MVCCStore:
        return self.sm.store

    async def started(self) -> None:
        recovered = await self._io(self.storage.recover)
        if is_fresh(recovered):
            # The first start: the base (the state at index 0, initial members
            # included) goes to storage, so every later start recovers the table from
            # there instead of trusting start-up arguments that may have changed.
            voters = tuple(sorted(self.config.initial_voters))
            base = Snapshot(SnapshotMeta(0, 0, ConfState(voters)), self.sm.snapshot())
            await self._io(self.storage.save, snapshot=base)
        await super().started()
        self._sync_peers()
        if self.progress_interval:
            self.timers.start_periodic("progress", _Progress(), self.progress_interval)

    # --- reads -------------------------------------------------------------------------------

    @handler
    def on_serializable_read(self, msg: SerializableRead) -> Outcome:
        if self.left_cluster:
            return Outcome(False, error=MemberRemoved.TEXT)
        return Outcome(True, self.core.log.applied, self.sm.query(msg.data))

    # --- membership ----------------------------------------------------------------------------

    @handler
    def on_message(self, msg: Message) -> None:
        frm = msg.frm
        self.last_heard[frm] = self.ticks
        if frm in self.sm.members.removed:
            self._tell_removed(frm)
            return
        super().on_message(msg)

    @handler
    def on_member_change(self, msg: MemberChange) -> Outcome | None:
        """A membership request, on the leader only: answered once the change is applied
        (or at once with etcd's refusal, as a ``Failure`` in the result)."""
        if not self._leads():
            return Outcome(False, error=NOT_LEADER, leader=self.core.lead)
        sm = self.sm
        if msg.client:
            last = sm.sessions.get(msg.client)
            if last is not None and msg.seq <= last[0]:
                if msg.seq == last[0]:  # a retry of what was applied
                    return Outcome(True, result=encode_result(last[1]))
                stale = Failure(Code.FAILED_PRECONDITION, STALE_SEQUENCE)
                return Outcome(True, result=_encode(stale))
        # The checks read the table as applied: every change the core knows of must be
        # in it (a change may have committed but not yet been applied).
        if self.core.pending_conf_index > self.core.log.applied:
            return Outcome(True, result=_encode(MembershipChangePending.failure()))
        refused = self._refuse(msg.request)
        if refused is not None:
            return Outcome(True, result=_encode(refused.failure()))
        change = change_for(msg.request, sm.members, msg.client, msg.seq)
        return self._propose(lambda: self.core.propose_conf_change(change))

    def _refuse(self, request: Any) -> Any:
        table = self.sm.members
        me = self.config.id
        strict = self.strict_reconfig_check
        if type(request) is MemberAddRequest:
            return refuse_add(
                table,
                request,
                active=self._active(),
                me=me,
                strict=strict,
                max_learners=self.max_learners,
            )
        if type(request) is MemberPromoteRequest:
            return refuse_promote(
                table, request.id, caught_up=self._caught_up(request.id), strict=strict
            )
        return refuse_remove(table, request.id, active=self._active(), me=me, strict=strict)

    def _caught_up(self, node: int) -> bool:
        """The core's rule for a promotion: the learner matched the commit index."""
        progress = self.core.progress.get(node)
        return progress is not None and progress.match >= self.core.log.committed

    def _active(self) -> set[int]:
        """The members heard from within etcd's health interval."""
        since = self.ticks - self.health_ticks
        return {node for node, tick in self.last_heard.items() if tick >= since}

    @handler
    def on_publish_member(self, msg: PublishMember) -> None:
        member = self.sm.members.members.get(msg.id)
        if self._leads() and member is not None and not member.started:
            with contextlib.suppress(Exception):  # not the leader after all: it asks again
                self.core.propose(_encode(Command("", 0, MemberAttrSetRequest(msg.id, msg.name))))
                self.drain_due = True

    @handler
    def on_removed_notice(self, msg: MemberRemovedNotice) -> None:
        if msg.member == self.config.id:
            self.left_cluster = True

    def _tell_removed(self, node: int) -> None:
        if self.told_removed.get(node) == self.ticks:
            return  # once a tick is enough
        self.told_removed[node] = self.ticks
        address = self.sm.members.removed[node]
        with contextlib.suppress(Exception):  # best effort: it keeps sending, we keep telling
            self.system.ref(address).tell(MemberRemovedNotice(node))

    def _sync_peers(self) -> None:
        """Rebuild the peers from the table (and the address book for members it does
        not list yet); see whether this member was removed."""
        table = self.sm.members
        self.members_seen = table.version
        addresses = dict(self.address_book)
        for m in table.members.values():
            if m.address:
                addresses[m.id] = m.address
        for node in table.removed:
            addresses.pop(node, None)
        peers: dict[int, ActorRef] = {}
        for node, address in addresses.items():
            old = self.peers.get(node)
            if old is not None and str(old.address) == address:
                peers[node] = old
                continue
            with contextlib.suppress(ValueError):
                peers[node] = self.system.ref(address)
        self.peers = peers
        here = self.system.name
        self.unresolved = {
            n for n, ref in peers.items() if not ref.is_local and ref.address.system == here
        }
        if self.config.id in table.removed:
            self.left_cluster = True

    def _resolve_local_peers(self) -> None:
        """A member added in this system before its actor was spawned had no cell to
        resolve to: look again."""
        for node in list(self.unresolved):
            ref = self.system.ref(self.peers[node].address)
            if ref.is_local:
                self.peers[node] = ref
                self.unresolved.discard(node)

    def _membership_chores(self) -> None:
        """Every election timeout: publish this member's name until the table has it;
        on the leader, promote a learner that was added as a voter once it has started
        and caught up."""
        table = self.sm.members
        me = table.members.get(self.config.id)
        if me is not None and not me.started and not self.left_cluster:
            publish = PublishMember(self.config.id, self.member_name or self.ref.name)
            if self._leads():
                self.on_publish_member(publish)
            elif self.core.lead in self.peers:
                self.peers[self.core.lead].tell(publish)
        if not self._leads() or self.core.pending_conf_index > self.core.log.applied:
            return
        for m in table.learners():
            # Once it runs (it published its name) and has caught up.
            if m.auto_promote and m.started and self._refuse(MemberPromoteRequest(m.id)) is None:
                change = change_for(MemberPromoteRequest(m.id), table, "", 0)
                with contextlib.suppress(Exception):  # a transfer under way: next time
                    self.core.propose_conf_change(change)
                    self.drain_due = True
                return

    # --- backups -----------------------------------------------------------------------------

    @handler
    def on_snapshot_request(self, msg: SnapshotRequest) -> None:
        """The store is captured now and serialised a step per turn of the mailbox, as
        the Raft snapshots are: a backup of a large store does not stop the member."""
        header = ResponseHeader(self.store.revision, self.core.term)
        self.backups.append((header, self.store.dump_steps(), self.defer_reply()))
        self.ref.tell(_BackupStep())

    @handler
    def on_backup_step(self, msg: _BackupStep) -> None:
        pass  # only wakes the member up: idle() takes the step

    def _backup_step(self) -> None:
        header, steps, reply = self.backups[0]
        try:
            next(steps)
        except StopIteration as done:
            self.backups.pop(0)
            reply.send(SnapshotResponse(header, b"".join(done.value)))
        if self.backups:
            self.ref.tell(_BackupStep())

    # --- leases ------------------------------------------------------------------------------

    @handler
    def on_keepalive(self, msg: LeaseKeepAlive) -> Any:
        if not self._leads():
            return Failure(Code.UNAVAILABLE, f"{NOT_LEADER} (leader: {self.core.lead or 0})")
        lease = self.store.leases.get(msg.id)
        header = ResponseHeader(self.store.revision, self.core.term)
        if lease is None or msg.id in self.revoking:
            return LeaseKeepAliveResponse(header, msg.id, 0)
        self.lease_deadlines[msg.id] = trio.current_time() + lease.ttl
        return LeaseKeepAliveResponse(header, msg.id, lease.ttl)

    @handler
    def on_time_to_live(self, msg: LeaseTimeToLive) -> Any:
        if not self._leads():
            return Failure(Code.UNAVAILABLE, f"{NOT_LEADER} (leader: {self.core.lead or 0})")
        answer = self.store.lease_time_to_live(msg.request)
        deadline = self.lease_deadlines.get(msg.request.id)
        if answer.ttl != -1 and deadline is not None:
            left = max(0, math.ceil(deadline - trio.current_time()))
            answer = LeaseTimeToLiveResponse(
                answer.header, answer.id, left, answer.granted_ttl, answer.keys
            )
        return answer

    def _leads(self) -> bool:
        return self.core.role is LEADER and self.core.is_member()

    def on_tick(self, msg: Any) -> None:
        super().on_tick(msg)
        self.ticks += 1
        if self._leads():
            self._expire_leases()
        if self.unresolved:
            self._resolve_local_peers()
        if self.ticks % self.config.election_tick == 0:
            self._membership_chores()

    def _expire_leases(self) -> None:
        now = trio.current_time()
        for lease_id, deadline in list(self.lease_deadlines.items()):
            if deadline <= now and lease_id not in self.revoking:
                if lease_id not in self.store.leases:
                    del self.lease_deadlines[lease_id]
                    continue
                self.revoking.add(lease_id)
                cmd = Command("", 0, LeaseRevokeRequest(lease_id))
                try:
                    self.core.propose(_encode(cmd))
                except Exception:  # not the leader after all (a transfer): next tick
                    self.revoking.discard(lease_id)
                self.drain_due = True

    def _track_leases(self) -> None:
        """After applying: the leader keeps a deadline for every lease it knows."""
        leads = self._leads()
        store = self.store
        if leads == self.was_leader and store.lease_changes == self.lease_changes_seen:
            return  # nothing new: this runs after every burst of messages
        self.lease_changes_seen = store.lease_changes
        leases = store.leases
        if leads and not self.was_leader:
            # Taking office: every lease gets its full TTL again, so none expires early
            # for want of the old leader's keep-alives.
            now = trio.current_time()
            self.lease_deadlines = {i: now + lease.ttl for i, lease in leases.items()}
            self.revoking.clear()
        elif leads:
            now = trio.current_time()
            for lease_id, lease in leases.items():
                if lease_id not in self.lease_deadlines:
                    self.lease_deadlines[lease_id] = now + lease.ttl
            for lease_id in [i for i in self.lease_deadlines if i not in leases]:
                del self.lease_deadlines[lease_id]
                self.revoking.discard(lease_id)
        else:
            self.lease_deadlines.clear()
            self.revoking.clear()
        self.was_leader = leads

    # --- watches -----------------------------------------------------------------------------

    @handler
    def on_watch(self, msg: Watch) -> WatchResponse:
        store = self.store
        header = ResponseHeader(store.revision, self.core.term)
        start = msg.start_revision or store.revision + 1
        if start < store.compact_revision:
            return WatchResponse(
                msg.watch_id,
                header,
                canceled=True,
                cancel_reason="etcdserver: mvcc: required revision has been compacted",
                compact_revision=store.compact_revision,
            )
        self.watches[(msg.watcher, msg.watch_id)] = _Watching(msg, start)
        self._index = None
        self.delivered = -1  # it may start in the past: _deliver looks at every watch
        self.watch(msg.watcher)
        self.drain_due = True  # history to send, if it starts in the past
        return WatchResponse(msg.watch_id, header, created=True)

    @handler
    def on_cancel_watch(self, msg: CancelWatch) -> WatchResponse:
        if self.watches.pop((msg.watcher, msg.watch_id), None) is not None:
            self._index = None
        header = ResponseHeader(self.store.revision, self.core.term)
        return WatchResponse(msg.watch_id, header, canceled=True, cancel_reason="canceled")

    @handler
    def on_request_progress(self, msg: RequestProgress) -> None:
        if not any(watcher == msg.watcher for watcher, _ in self.watches):
            header = ResponseHeader(self.store.revision, self.core.term)
            lost = WatchResponse(0, header, canceled=True, cancel_reason=str(self.ref.address))
            with contextlib.suppress(MailboxFull):
                msg.watcher.tell(lost)
            return
        self._notify_progress(lambda w: w.watcher == msg.watcher)

    @handler
    def on_progress(self, msg: _Progress) -> None:
        self._notify_progress(lambda w: w.options.progress_notify)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        for key in [k for k in self.watches if k[0] == msg.actor]:
            del self.watches[key]
            self._index = None

    def _notify_progress(self, which) -> None:
        store = self.store
        header = ResponseHeader(store.revision, self.core.term)
        for w in list(self.watches.values()):
            # Only a watch that has seen everything, and no more: one that starts past
            # this member's revision (the member lags) has nothing to report yet.
            if which(w) and w.next_rev == store.revision + 1:
                self._send(w, WatchResponse(w.id, header, first_revision=w.reported))
                w.reported = w.next_rev

    def _deliver(self) -> None:
        store = self.store
        revision = store.revision
        if not self.watches or revision == self.delivered:
            return  # every watch has seen this revision (or starts later): nothing new
        self.delivered = revision
        # The watches due, by the revision they look from (nearly always all at one).
        due: dict[int, list[_Watching]] = {}
        for w in list(self.watches.values()):
            if w.next_rev > revision:
                continue
            if w.next_rev < store.compact_revision:
                self._cancel(
                    w,
                    "etcdserver: mvcc: required revision has been compacted",
                    store.compact_revision,
                )
                continue
            due.setdefault(w.next_rev, []).append(w)
        if not due:
            return
        if self._index is None:
            self._index = WatchIndex(self.watches.values())
        index = self._index  # (a send that cancels a watch drops ``_index``)
        header = None
        # Events made for one watch, for the others (none to share them with: no memory):
        # by position, without and with prev_kv.
        made: tuple[dict[int, Event], dict[int, Event]] | None = (
            ({}, {}) if len(self.watches) > 1 else None
        )
        for rev, watches in due.items():
            start = store.history_index(rev)
            for w, events in _events_due(index, watches, store, start, made):
                if header is None:
                    header = ResponseHeader(revision, self.core.term)
                self._send(w, WatchResponse(w.id, header, events, first_revision=w.reported))
                w.reported = revision + 1
            for w in watches:
                w.next_rev = revision + 1

    def _send(self, w: _Watching, response: WatchResponse) -> None:
        try:
            w.watcher.tell(response)
        except MailboxFull:
            self._cancel(w, "watcher too slow: its mailbox is full; resume from the last revision")

    def _cancel(self, w: _Watching, reason: str, compact_revision: int = 0) -> None:
        if self.watches.pop((w.watcher, w.id), None) is not None:
            self._index = None
        header = ResponseHeader(self.store.revision, self.core.term)
        response = WatchResponse(
            w.id, header, canceled=True, cancel_reason=reason, compact_revision=compact_revision
        )
        with contextlib.suppress(MailboxFull):  # it finds the watch gone when it asks
            w.watcher.tell(response)

    async def idle(self) -> None:
        await super().idle()
        self._track_leases()
        self._deliver()
        if self.sm.members.version != self.members_seen:
            self._sync_peers()
        if self.backups:
            self._backup_step()
        if self.left_cluster and self.core.role is not LEADER:
            # Removed: a leader stays until it steps down (it spreads the commit of its
            # removal meanwhile); then the member stops, as etcd's does.
            self.stop()


@message(tag="etcd._Progress")
class _Progress:
    pass


def _events_due(
    index: WatchIndex[_Watching],
    due: list[_Watching],
    store: MVCCStore,
    start: int,
    made: tuple[dict[int, Event], dict[int, Event]] | None,
) -> list[tuple[_Watching, tuple[Event, ...]]]:
    """The watches of ``due`` (all looking from position ``start`` of the store's
    history; ``index`` holds them, and maybe others) that take any of its events, each
    with those events, as it asked for them (without ``prev_kv`` unless it asked), in
    the order of ``due``. Each new event's key is looked up once in the index; only the
    events some watch takes are made, once for all watches of this delivery (``made``:
    by position, one dict without prev_kv and one with, if given)."""
    # (Positions are noted for every taker, due or not: nearly always all are due.)
    found: dict[_Watching, list[int]] = {}
    for i, key in enumerate(store.history_keys(start), start):
        for w in index.takers(key):
            positions = found.get(w)
            if positions is None:
                found[w] = [i]
            else:
                positions.append(i)
    answers = []
    for w in due:
        positions = found.get(w)
        if positions is None:
            continue
        options = w.options
        prev_kv = options.prev_kv
        events = store.events(positions, prev_kv, None if made is None else made[prev_kv])
        if options.no_put or options.no_delete:
            no_put, no_delete = options.no_put, options.no_delete
            events = [e for e in events if not (no_put if e.type is _PUT else no_delete)]
        if events:
            answers.append((w, tuple(events)))
    return answers


_PUT = EventType.PUT
