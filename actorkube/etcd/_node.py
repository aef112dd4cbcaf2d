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
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Generator
from typing import Any

import msgpack
import trio

from actorkube.actor import ActorRef, MailboxFull, Terminated, decode_message, handler, message
from actorkube.actor import encode_message as _encode
from actorkube.raft import Config, Outcome, RaftReplica
from actorkube.raft._core import LEADER

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

STALE_SEQUENCE = "etcdserver: request is older than the session's last one"
NOT_LEADER = "etcdserver: not leader"


def _no_refs(system: str, name: str) -> None:
    return None


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
    )


class EtcdStateMachine:
    """The replica's state machine: the store plus the clients' sessions (the last
    sequence number and response of each, the most recent ``max_sessions`` kept)."""

    def __init__(self, *, max_sessions: int = 4096, **store_options: Any) -> None:
        self.store_options = store_options
        self.store = MVCCStore(**store_options)
        self.max_sessions = max_sessions
        self.sessions: collections.OrderedDict[str, tuple[int, bytes]] = collections.OrderedDict()

    def apply(self, index: int, data: bytes) -> bytes:
        cmd = decode_message(data, _no_refs)
        if cmd.client:
            last = self.sessions.get(cmd.client)
            if last is not None and cmd.seq <= last[0]:
                if cmd.seq == last[0]:
                    return last[1]  # a retry of what was applied: the same answer
                return _encode(Failure(Code.FAILED_PRECONDITION, STALE_SEQUENCE))
        response = _encode(self.store.execute(cmd.request))
        if cmd.client:
            self.sessions[cmd.client] = (cmd.seq, response)
            self.sessions.move_to_end(cmd.client)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)
        return response

    def query(self, data: bytes) -> bytes:
        return _encode(self.store.execute(decode_message(data, _no_refs)))

    def snapshot(self) -> bytes:
        return run_steps(self.snapshot_steps())

    def snapshot_steps(self) -> Generator[None, None, bytes]:
        """The snapshot of now, serialised a step at a time (see ``MVCCStore.dump_steps``):
        [store dump as bytes, sessions]."""
        sessions = [[c, s, r] for c, (s, r) in self.sessions.items()]
        sessions = msgpack.packb(sessions, use_bin_type=True)
        store = self.store.dump_steps()

        def steps() -> Generator[None, None, bytes]:
            parts = yield from store
            size = sum(map(len, parts))
            # msgpack's bin 32 header: the store's bytes go in as one binary, unjoined.
            header = b"\x92\xc6" + size.to_bytes(4, "big")
            return b"".join([header, *parts, sessions])

        return steps()

    def restore(self, data: bytes | None) -> None:
        self.sessions.clear()
        if data is None:
            self.store = MVCCStore(**self.store_options)
            return
        store, sessions = msgpack.unpackb(data, raw=False)
        self.store = MVCCStore.load(store, **self.store_options)
        for client, seq, response in sessions:
            self.sessions[client] = (seq, response)


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
    last compaction) on the member's thread, so it is a pause that grows with the data."""

    def __init__(
        self,
        config: Config,
        storage: Any,
        peers: dict[int, ActorRef],
        *,
        tick_interval: float = 0.1,
        snapshot_every: int = 100_000,
        progress_interval: float = 600.0,
        **store_options: Any,
    ) -> None:
        super().__init__(
            config,
            storage,
            EtcdStateMachine(**store_options),
            peers,
            tick_interval=tick_interval,
            snapshot_every=snapshot_every,
        )
        self.progress_interval = progress_interval
        self.watches: dict[tuple[ActorRef, int], _Watching] = {}
        self.lease_deadlines: dict[int, float] = {}
        self.revoking: set[int] = set()
        self.was_leader = False
        self.lease_changes_seen = -1

    @property
    def store(self) -> MVCCStore:
        return self.sm.store

    async def started(self) -> None:
        await super().started()
        if self.progress_interval:
            self.timers.start_periodic("progress", _Progress(), self.progress_interval)

    # --- reads -------------------------------------------------------------------------------

    @handler
    def on_serializable_read(self, msg: SerializableRead) -> Outcome:
        return Outcome(True, self.core.log.applied, self.sm.query(msg.data))

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
        if self._leads():
            self._expire_leases()

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
        self.watch(msg.watcher)
        self.drain_due = True  # history to send, if it starts in the past
        return WatchResponse(msg.watch_id, header, created=True)

    @handler
    def on_cancel_watch(self, msg: CancelWatch) -> WatchResponse:
        self.watches.pop((msg.watcher, msg.watch_id), None)
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
        if not self.watches:
            return
        header = ResponseHeader(store.revision, self.core.term)
        for w in list(self.watches.values()):
            if w.next_rev > store.revision:
                continue
            if w.next_rev < store.compact_revision:
                self._cancel(
                    w,
                    "etcdserver: mvcc: required revision has been compacted",
                    store.compact_revision,
                )
                continue
            events = tuple(
                e if w.options.prev_kv or e.prev_kv is None else Event(e.type, e.kv)
                for e in store.events_since(w.next_rev)
                if _wanted(w, e)
            )
            w.next_rev = store.revision + 1
            if events:
                self._send(w, WatchResponse(w.id, header, events, first_revision=w.reported))
                w.reported = w.next_rev

    def _send(self, w: _Watching, response: WatchResponse) -> None:
        try:
            w.watcher.tell(response)
        except MailboxFull:
            self._cancel(w, "watcher too slow: its mailbox is full; resume from the last revision")

    def _cancel(self, w: _Watching, reason: str, compact_revision: int = 0) -> None:
        self.watches.pop((w.watcher, w.id), None)
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


@message(tag="etcd._Progress")
class _Progress:
    pass


def _wanted(w: _Watching, e: Event) -> bool:
    key = e.kv.key
    if not w.range_end:
        if key != w.key:
            return False
    elif w.range_end == b"\0":
        if key < w.key and w.key != b"\0":
            return False
    elif not w.key <= key < w.range_end:
        return False
    if e.type is EventType.PUT:
        return not w.options.no_put
    return not w.options.no_delete
