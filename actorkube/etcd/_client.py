"""The etcd client: finds the leader, retries safely, and never has a write applied
twice.

Rules of this file:

- Every write goes out as a ``Command`` on a *lane*: a session name and a sequence number
  that only grows. A retry resends the same number, and the state machine answers a
  number it applied already with the response it gave then. A lane carries one request
  at a time, so concurrent requests of one client take separate lanes.
- A request is retried, on the leader the last answer named or on the next member,
  until its deadline: after a timeout, a "not the leader", a dropped proposal, an
  outcome the member could not know, a leader change during a read.
- Errors that etcd itself would return (``Failure``) are raised as ``EtcdError`` at
  once: they are answers, not faults.
- Membership changes go on lanes too (a retried change is answered with its first
  answer). The client learns the members from ``member_list`` (as etcd's client syncs
  its endpoints): when a member names a leader it does not know, every
  ``refresh_interval`` seconds, and after each of its own membership changes.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import trio

from actorkube.actor import (
    Actor,
    ActorRef,
    ActorSystem,
    AskTimeout,
    Overflow,
    Terminated,
    Undeliverable,
    decode_message,
    encode_message,
    handler,
    message,
)
from actorkube.raft import GetStatus, Outcome, Propose, Query

from ._members import (
    Member,
    MemberAddRequest,
    MemberChange,
    MemberListRequest,
    MemberPromoteRequest,
    MemberRemoveRequest,
    MembershipChangePending,
    error_for,
)
from ._mvcc import EtcdError
from ._node import (
    CancelWatch,
    Command,
    LeaseKeepAlive,
    LeaseTimeToLive,
    RequestProgress,
    SerializableRead,
    SnapshotRequest,
    SnapshotResponse,
    Watch,
    WatchResponse,
    _no_refs,
)
from ._types import (
    Code,
    CompactionRequest,
    Compare,
    DeleteRangeRequest,
    Failure,
    LeaseGrantRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    ResponseHeader,
    TxnRequest,
)


class Unavailable(EtcdError):
    """No member answered the request before its deadline (its outcome is unknown for a
    write: the client retried it on one lane, so it was applied once or not at all)."""

    def __init__(self, why: str) -> None:
        super().__init__(Code.UNAVAILABLE, why)


class EtcdClient:
    """A client of the etcd group whose members are ``members`` (node id -> reference).

    ``timeout``: how long one request may take, retries included; ``attempt_timeout``:
    how long one try waits for a member; ``watch_check``: after how long without a
    response a watch stream asks its member for a progress notification (which reveals a
    response lost on the way); ``refresh_interval``: how often the client learns the
    members anew (``members`` are where it starts; it then uses the voters the cluster
    lists, as etcd's client does not send requests to learners).
    """

    def __init__(
        self,
        system: ActorSystem,
        members: Mapping[int, ActorRef],
        *,
        name: str = "client",
        timeout: float = 10.0,
        attempt_timeout: float = 1.0,
        watch_check: float = 2.0,
        refresh_interval: float = 60.0,
    ) -> None:
        self.system = system
        self.members = dict(members)
        self.session = f"{name}:{system.unique()}"
        self.timeout = timeout
        self.attempt_timeout = attempt_timeout
        self.watch_check = watch_check
        self.refresh_interval = refresh_interval
        self.leader: int | None = None
        self._lanes: list[list[Any]] = []  # free lanes: [name, next sequence number]
        self._lane_names = itertools.count()
        self._watch_ids = itertools.count(1)
        self._order = sorted(self.members)
        self._refresh_at: float | None = None  # when the members are due to be learnt
        self._refreshing = False

    # --- the KV API ---------------------------------------------------------------------------

    async def put(self, key: bytes, value: bytes = b"", **options: Any) -> Any:
        return await self.request(PutRequest(key, value, **options))

    async def get(self, key: bytes, range_end: bytes = b"", **options: Any) -> Any:
        return await self.request(RangeRequest(key, range_end, **options))

    async def delete(self, key: bytes, range_end: bytes = b"", **options: Any) -> Any:
        return await self.request(DeleteRangeRequest(key, range_end, **options))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Any], failure: Sequence[Any] = ()
    ) -> Any:
        return await self.request(TxnRequest(tuple(compare), tuple(success), tuple(failure)))

    async def compact(self, revision: int) -> Any:
        return await self.request(CompactionRequest(revision))

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> Any:
        return await self.request(LeaseGrantRequest(ttl, lease_id))

    async def lease_revoke(self, lease_id: int) -> Any:
        return await self.request(LeaseRevokeRequest(lease_id))

    async def lease_keepalive(self, lease_id: int) -> Any:
        return await self._leader_call(LeaseKeepAlive(lease_id))

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> Any:
        return await self._leader_call(LeaseTimeToLive(LeaseTimeToLiveRequest(lease_id, keys)))

    async def lease_leases(self) -> Any:
        return await self.request(LeaseLeasesRequest())

    async def request(self, req: Any) -> Any:
        """Send any request of ``actorkube.etcd``; its response, or ``EtcdError``."""
        if type(req) is RangeRequest:
            if req.serializable:
                return await self._attempts(SerializableRead(encode_message(req)))
            return await self._attempts(Query(encode_message(req)))
        if type(req) is LeaseLeasesRequest:  # a read too
            return await self._attempts(Query(encode_message(req)))
        lane = self._lanes.pop() if self._lanes else [f"{self.session}/{next(self._lane_names)}", 1]
        seq = lane[1]
        lane[1] += 1
        try:
            if type(req) in (MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest):
                return await self._attempts(MemberChange(lane[0], seq, req))
            command = Command(lane[0], seq, req)
            return await self._attempts(Propose(encode_message(command)))
        finally:
            self._lanes.append(lane)

    # --- the Cluster API -----------------------------------------------------------------------

    async def member_list(self) -> tuple[Member, ...]:
        """Every member (a linearizable read of the members table), by ID."""
        response = await self._attempts(Query(encode_message(MemberListRequest())))
        self._learn(response.members)
        return response.members

    async def member_add(self, address: str, *, learner: bool = False, name: str = "") -> int:
        """Add the member whose peer address is ``address`` (``ak://system/actor``);
        returns its ID (the next free one). Start it afterwards with ``state="existing"``.
        ``learner`` False: it becomes a voter once it has caught up (see
        ``Member.auto_promote``). Raises ``PeerAddressExists``, ``InvalidPeerAddress``,
        ``TooManyLearners``, ``NotEnoughStartedMembers``, ``UnhealthyCluster``,
        ``MembershipChangePending``."""
        response = await self.request(MemberAddRequest(address, learner, name))
        self._learn(response.members)
        return response.member.id

    async def member_promote(self, member_id: int) -> tuple[Member, ...]:
        """Make a learner a voter; the members after the change. Raises
        ``LearnerNotReady`` while the learner has not caught up with the leader, and
        ``MemberNotFound``, ``MemberNotLearner``, ``NotEnoughStartedMembers``,
        ``MembershipChangePending``."""
        response = await self.request(MemberPromoteRequest(member_id))
        self._learn(response.members)
        return response.members

    async def member_remove(self, member_id: int) -> tuple[Member, ...]:
        """Remove a member (the leader included); the members after the change. Raises
        ``MemberNotFound``, ``NotEnoughStartedMembers`` or ``UnhealthyCluster`` (the
        strict reconfiguration check), ``MembershipChangePending``."""
        response = await self.request(MemberRemoveRequest(member_id))
        self._learn(response.members)
        return response.members

    async def snapshot(self, member: int | None = None) -> SnapshotResponse:
        """A consistent copy of one member's store (etcd's ``snapshot save`` asks one
        endpoint too): ``member``'s, else the leader's, else the first member's that
        answers. The whole copy travels in one message: over TCP it must fit the
        transport's ``max_frame``."""
        if member is not None:
            return await self.members[member].ask(SnapshotRequest(), timeout=self.timeout)
        leader = await self.find_leader()
        order = [leader] if leader is not None else []
        order += [n for n in self._order if n != leader]
        for node in order:
            with contextlib.suppress(AskTimeout, Undeliverable):
                return await self.members[node].ask(SnapshotRequest(), timeout=self.timeout)
        raise Unavailable("no member answered a snapshot request")

    def _learn(self, members: Sequence[Member]) -> None:
        """Use the voters of ``members`` from now on (keeping the references of those
        whose address did not change)."""
        known = {n: ref for n, ref in self.members.items()}
        fresh: dict[int, ActorRef] = {}
        for m in members:
            if m.is_learner or not m.address:
                continue
            ref = known.get(m.id)
            if ref is None or str(ref.address) != m.address:
                try:
                    ref = self.system.ref(m.address)
                except ValueError:
                    continue
            fresh[m.id] = ref
        if not fresh:
            return
        self.members = fresh
        self._order = sorted(fresh)
        if self.leader not in fresh:
            self.leader = None

    async def _refresh(self) -> None:
        """Learn the members from a serializable member list (any member can answer: no
        leader needed). Every member is asked at once and the first answer counts, so a
        request pays at most one attempt's timeout for it. Failures leave the members
        as they were."""
        if self._refreshing:
            return
        self._refreshing = True
        self._refresh_at = trio.current_time() + self.refresh_interval
        read = SerializableRead(encode_message(MemberListRequest()))
        answers: list[tuple[Member, ...]] = []

        async def ask(ref: ActorRef, done: trio.CancelScope) -> None:
            with contextlib.suppress(AskTimeout, Undeliverable):
                outcome = await ref.ask(read, timeout=self.attempt_timeout)
                if outcome.ok:
                    answers.append(decode_message(outcome.result, _no_refs).members)
                    done.cancel()

        try:
            async with trio.open_nursery() as nursery:
                for ref in self.members.values():
                    nursery.start_soon(ask, ref, nursery.cancel_scope)
        finally:
            self._refreshing = False
        if answers:
            self._learn(answers[0])

    # --- watches -----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, key: bytes, range_end: bytes = b"", *, start_revision: int = 0, **options: Any
    ) -> AsyncIterator[WatchStream]:
        """Watch ``key`` (or [key, range_end)) from ``start_revision`` (0: from the next
        revision): yields a ``WatchStream``. Raises ``EtcdError`` if the watch cannot
        start (its start revision was compacted away)."""
        stream = WatchStream(self, key, range_end, start_revision, options)
        try:
            await stream.open()
            yield stream
        finally:
            await stream.aclose()

    async def find_leader(self) -> int | None:
        """The member that members say leads now: all are asked at once, and the first
        answer that names one counts; None if none does within one attempt's timeout."""
        found: list[int] = []
        unknown: list[int] = []  # leaders named that the client does not know

        async def ask(node: int, done: trio.CancelScope) -> None:
            with contextlib.suppress(AskTimeout, Undeliverable):
                status = await self.members[node].ask(GetStatus(), timeout=self.attempt_timeout)
                if status.leader in self.members:
                    found.append(status.leader)
                    done.cancel()
                elif status.leader:
                    unknown.append(status.leader)

        async with trio.open_nursery() as nursery:
            for node in self._order:
                nursery.start_soon(ask, node, nursery.cancel_scope)
        if not found and unknown:
            await self._refresh()  # a leader we do not know of: the members changed
            return unknown[0] if unknown[0] in self.members else None
        return found[0] if found else None

    # --- the retry loop ----------------------------------------------------------------------

    async def _leader_call(self, msg: Any) -> Any:
        def interpret(reply: Any, node: int, attempt: int) -> tuple[bool, Any]:
            if type(reply) is Failure:
                if reply.code == Code.UNAVAILABLE:  # not the leader: a hint may follow
                    return False, self._hint(_hinted(reply.error))
                raise error_for(reply)
            return True, reply

        return await self._retrying(msg, interpret)

    async def _attempts(self, msg: Any) -> Any:
        def interpret(outcome: Outcome, node: int, attempt: int) -> tuple[bool, Any]:
            if not outcome.ok:
                # Not the leader, a dropped proposal, an unknown outcome, a leader change:
                # all safe to retry (writes are deduplicated by their lane's number).
                return False, self._hint(outcome.leader)
            answer = decode_message(outcome.result, _no_refs)
            if type(answer) is Failure:
                if answer.error == MembershipChangePending.TEXT and attempt:
                    # Maybe our own change, proposed by an earlier attempt that got no
                    # answer: wait for it to be applied (its retry is then answered).
                    return False, node
                raise error_for(answer)
            return True, answer

        return await self._retrying(msg, interpret)

    def _hint(self, leader: int) -> int | None:
        """The member to try next for a leader hint; a leader the client does not know
        means the members changed: learn them before the next try."""
        if leader in self.members:
            return leader
        if leader:
            self._refresh_at = 0.0
        return None

    async def _retrying(self, msg: Any, interpret) -> Any:
        """Ask members until ``interpret(reply, node, attempt)`` says done (True, value) or
        the deadline passes; (False, hint) names the member to try next (or None). Retries
        back off from 5 ms to 200 ms: two members that each name the other as leader (a
        stale view during an election) must not be asked in a loop that never lets
        time pass."""
        # The deadline is arithmetic, not a cancel scope: entering and leaving one costs
        # about as much as a whole local ask, and this runs for every request.
        now = trio.current_time()
        deadline = now + self.timeout
        if self._refresh_at is None:
            self._refresh_at = now + self.refresh_interval
        failures = 0
        for attempt in itertools.count():
            if failures > 1:
                pause = min(0.005 * 2 ** (failures - 2), 0.2, deadline - trio.current_time())
                if pause > 0:
                    await trio.sleep(pause)
            if attempt:  # the first attempt goes at once: no need to read the clock again
                now = trio.current_time()
            if self._refresh_at <= now:
                await self._refresh()
                now = trio.current_time()
            left = deadline - now
            if left <= 0:
                break
            node = self._pick(attempt)
            try:
                reply = await self.members[node].ask(msg, timeout=min(self.attempt_timeout, left))
            except (AskTimeout, Undeliverable):
                self.leader = None
                failures += 1
                continue
            done, value = interpret(reply, node, attempt)
            if done:
                if type(msg) is not SerializableRead:
                    self.leader = node
                return value
            self.leader = value
            failures += 1
        raise Unavailable(f"no member answered within {self.timeout} s")

    def _pick(self, attempt: int) -> int:
        if self.leader is not None and attempt % 4 != 3:
            return self.leader
        return self._order[attempt % len(self._order)]


def _hinted(error: str) -> int:
    """The leader a "not leader" failure names (0: none)."""
    hint = error.rsplit("leader: ", 1)[-1].rstrip(")")
    return int(hint) if hint.isdigit() else 0


@message(tag="etcd._MemberIs")
class _MemberIs:
    """Tells a watcher which member serves it (so that it notices the member stop)."""

    member: ActorRef


class WatchStream:
    """The responses of one watch, each revision once and in order (``receive``): events,
    or progress notifications (no events: everything up to ``header.revision`` was
    delivered). It resumes by itself, from the first revision it has not delivered,
    when a response was lost or came out of order on the way, when its member went away
    or found it too slow; it raises ``EtcdError`` when it cannot go on (the revisions it
    needs were compacted away)."""

    def __init__(self, client: EtcdClient, key: bytes, range_end: bytes, start: int, options):
        self.client = client
        self.key, self.range_end, self.options = key, range_end, options
        self.expected = start  # the first revision not delivered yet (0: not known yet)
        self.watch_id = 0
        self.member: ActorRef | None = None
        self.resumed = 0  # how many times it resumed (for tests and statistics)
        # A resume cut short (the caller's timeout cancelled it) is finished first thing
        # in the next receive: until then the stream is on no member.
        self._resuming = False
        self._left: ActorRef | None = None  # the member a resume left
        # When the stream last heard from its member: a quiet spell is measured from
        # here, across receive calls, so that a caller's short timeouts cannot keep
        # postponing the check forever.
        self._heard_at = trio.current_time()
        send, self._responses = trio.open_memory_channel(math.inf)
        self._watcher = client.system.spawn(
            lambda: _Watcher(send),
            name=f"watch-{client.session}-{next(client._watch_ids)}",
            overflow=Overflow.FAIL,
        )

    async def open(self, avoid: ActorRef | None = None) -> None:
        client = self.client
        order = client._order
        # Opened on the leader if there is one: a follower learns of a commit with the
        # leader's next append or heartbeat (no round of messages just for it), so its
        # watchers would hear of changes up to a heartbeat late. (The client's own
        # ``leader`` is only the member that last answered: a follower serves reads.)
        # A resume leaves the member it was on (``avoid``) for the next one in turn
        # unless another member leads.
        leader = await client.find_leader()
        if leader is None or client.members[leader] == avoid:
            leader = client.leader
        first = leader if leader is not None else order[0]
        start = order.index(first)
        with trio.move_on_after(client.timeout):
            for attempt in itertools.count():
                member = client.members[order[(start + attempt) % len(order)]]
                self.watch_id += 1
                watch = Watch(
                    self._watcher,
                    self.watch_id,
                    self.key,
                    self.range_end,
                    self.expected,
                    **self.options,
                )
                try:
                    reply = await member.ask(watch, timeout=client.attempt_timeout)
                except (AskTimeout, Undeliverable):
                    await trio.sleep(0.01)
                    continue
                if reply.canceled:
                    raise EtcdError(Code.OUT_OF_RANGE, reply.cancel_reason)
                if not self.expected:
                    self.expected = reply.header.revision + 1
                self.member = member
                self._watcher.tell(_MemberIs(member))
                return
        raise Unavailable(f"no member took the watch within {client.timeout} s")

    async def receive(self) -> WatchResponse:
        while True:
            if self._resuming:
                await self._resume()
            r = None
            with trio.move_on_at(self._heard_at + self.client.watch_check):
                r = await self._responses.receive()
            if r is None:
                # Quiet for a while: ask the member to say how far it is. If a response
                # went missing (the last one before a silence), this shows the gap; if
                # the member lost the watch (it restarted), it says so.
                self._heard_at = trio.current_time()
                self.request_progress()
                continue
            self._heard_at = trio.current_time()
            if r.watch_id == 0:  # a member stopped: ours?
                if self.member is not None and r.cancel_reason == str(self.member.address):
                    await self._resume()
                continue
            if r.watch_id != self.watch_id:
                continue  # from a watch this stream left behind
            if r.canceled:
                if r.compact_revision:
                    raise EtcdError(Code.OUT_OF_RANGE, r.cancel_reason)
                await self._resume()
                continue
            if r.header.revision < self.expected:
                continue  # delivered already (a duplicate on the way)
            if r.first_revision != self.expected:
                await self._resume()  # a response went missing: start again from there
                continue
            self.expected = r.header.revision + 1
            return r

    def request_progress(self) -> None:
        """Ask the member to report how far it is (a response with no events and its
        revision), as etcd's RequestWatchProgress; nothing if the stream is between
        members."""
        if self.member is not None:
            with contextlib.suppress(Exception):
                self.member.tell(RequestProgress(self._watcher))

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchResponse:
        return await self.receive()

    async def _resume(self) -> None:
        if not self._resuming:
            self._resuming = True
            self._cancel_current()
            self.resumed += 1
            client = self.client
            self._left = self.member
            nodes = [n for n, ref in client.members.items() if ref == self.member]
            if nodes:  # another member next time (unless the member left the cluster)
                order = client._order
                client.leader = order[(order.index(nodes[0]) + 1) % len(order)]
            self.member = None
        await self.open(avoid=self._left)
        self._resuming = False
        self._heard_at = trio.current_time()

    def _cancel_current(self) -> None:
        if self.member is not None:
            with contextlib.suppress(Exception):
                self.member.tell(CancelWatch(self._watcher, self.watch_id))

    async def aclose(self) -> None:
        self._cancel_current()
        await self.client.system.stop(self._watcher)


class _Watcher(Actor):
    """Receives a watch's responses and hands them to the client's channel."""

    def __init__(self, send: trio.MemorySendChannel) -> None:
        self.send = send

    @handler
    def on_response(self, msg: WatchResponse) -> None:
        self.send.send_nowait(msg)

    @handler
    def on_member(self, msg: _MemberIs) -> None:
        self.watch(msg.member)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        # Watch id 0: "this member stopped", named in the reason.
        self.send.send_nowait(
            WatchResponse(0, ResponseHeader(0), canceled=True, cancel_reason=str(msg.actor.address))
        )
