"""etcd's cluster membership: the members table of the replicated state, the Cluster
API's requests, responses and errors, and the checks a leader makes before a change.

Rules of this file:

- The table changes only by applying log entries, on every member alike: a Raft
  membership change (ADD_LEARNER, PROMOTE, REMOVE) whose context names the member (etcd
  carries the Member in ConfChange.Context), or a member's publication of its own name
  once it runs (etcd's ClusterMemberAttrSetRequest). The table and the Raft
  configuration change at the same entries, so the table's voters and learners are the
  core's.
- Its base, the table at the start of the log, is the initial cluster (every member a
  started voter, as etcd's ``--initial-cluster``) or a restored snapshot's members. A
  member writes its base into its storage at its first start (see ``EtcdNode``), so a
  restart rebuilds the table from what it recovered, never from start-up arguments.
- Member IDs are never reused: a removed member's ID stays in ``removed`` (etcd keeps
  removed IDs too), so a removed member that comes back can be told so, and the next
  ID is above every ID the cluster ever had.
- The checks (``refuse_add``, ``refuse_promote``, ``refuse_remove``) are pure functions
  of the table and what the leader sees; they return the error class etcd would answer
  with, or None.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from actorkube.actor import Address, DecodeError, decode_message, encode_message, message
from actorkube.raft import ConfChange, ConfChangeType

from ._mvcc import EtcdError
from ._types import Code, Failure, ResponseHeader

ADD_LEARNER = ConfChangeType.ADD_LEARNER
PROMOTE = ConfChangeType.PROMOTE
REMOVE = ConfChangeType.REMOVE


def _no_refs(system: str, name: str) -> None:
    return None


# --- values -----------------------------------------------------------------------------


@message(tag="etcd.Member")
class Member:
    """One member, as ``member list`` shows it.

    ``address`` is its peer address (etcd's peer URL): the actor address other members
    send Raft messages to, ``ak://system/actor``. ``name`` is empty until the member
    has started and published it (etcd's "unstarted" members); ``started`` says whether
    it did (the initial members count as started, as in etcd). ``auto_promote``: it was
    added as a voter; Raft-lite adds voters through a learner stage only, so it is a
    learner until it has started and caught up, and then the leader promotes it.
    """

    id: int
    name: str
    address: str
    is_learner: bool = False
    started: bool = False
    auto_promote: bool = False


def initial_member(member_id: int, address: str) -> Member:
    """A member of the initial cluster: a started voter named after its actor."""
    try:
        name = Address.parse(address).name
    except ValueError:
        name = ""
    return Member(member_id, name, address, started=True)


# --- requests and responses (etcd's Cluster service) -------------------------------------


@message(tag="etcd.MemberListRequest")
class MemberListRequest:
    pass


@message(tag="etcd.MemberAddRequest")
class MemberAddRequest:
    """Add the member at ``address``; it gets the next free ID. ``is_learner`` False: a
    voter (through a learner stage, see ``Member.auto_promote``)."""

    address: str
    is_learner: bool = False
    name: str = ""


@message(tag="etcd.MemberPromoteRequest")
class MemberPromoteRequest:
    id: int


@message(tag="etcd.MemberRemoveRequest")
class MemberRemoveRequest:
    id: int


@message(tag="etcd.MemberChange")
class MemberChange:
    """A membership request on a client's lane (as ``Command`` for writes): a retry with
    the same ``seq`` is answered with the first answer, never applied twice."""

    client: str
    seq: int
    request: MemberAddRequest | MemberPromoteRequest | MemberRemoveRequest


@message(tag="etcd.MemberListResponse")
class MemberListResponse:
    header: ResponseHeader
    members: tuple[Member, ...]


@message(tag="etcd.MemberAddResponse")
class MemberAddResponse:
    header: ResponseHeader
    member: Member
    members: tuple[Member, ...]


@message(tag="etcd.MemberPromoteResponse")
class MemberPromoteResponse:
    header: ResponseHeader
    members: tuple[Member, ...]


@message(tag="etcd.MemberRemoveResponse")
class MemberRemoveResponse:
    header: ResponseHeader
    members: tuple[Member, ...]


@message(tag="etcd.MemberAttrSetRequest")
class MemberAttrSetRequest:
    """A started member publishes its name (etcd's ClusterMemberAttrSetRequest). It
    travels in a ``Command`` and takes no MVCC revision."""

    id: int
    name: str


@message(tag="etcd.MemberAttrSetResponse")
class MemberAttrSetResponse:
    header: ResponseHeader


@message(tag="etcd.ChangeContext")
class ChangeContext:
    """What a Raft ConfChange carries for etcd: the member as the change leaves it, and
    the lane of the client that asked (empty: a change of the leader's own, such as an
    automatic promotion)."""

    member: Member
    client: str = ""
    seq: int = 0


@message(tag="etcd.JoinInfoRequest")
class JoinInfoRequest:
    """What a member starting with ``state="existing"`` asks a running one (etcd asks its
    peers for the cluster's members the same way)."""


@message(tag="etcd.JoinInfo")
class JoinInfo:
    """The table's base (the members at the start of the log), its members now, and the
    IDs removed so far."""

    initial: tuple[Member, ...]
    members: tuple[Member, ...]
    removed: tuple[int, ...]


# --- errors -----------------------------------------------------------------------------


class MemberError(EtcdError):
    """Base of the Cluster API's refusals; each subclass has etcd's text and code. A
    refused change changed nothing."""

    CODE = Code.FAILED_PRECONDITION
    TEXT = ""

    @classmethod
    def failure(cls) -> Failure:
        return Failure(cls.CODE, cls.TEXT)


class MemberNotFound(MemberError):
    """No member has that ID (or it was removed already). Caller's fault."""

    CODE = Code.NOT_FOUND
    TEXT = "etcdserver: member not found"


class MemberNotLearner(MemberError):
    """Only a learner can be promoted. Caller's fault."""

    TEXT = "etcdserver: can only promote a learner member"


class LearnerNotReady(MemberError):
    """The learner has not caught up with the leader's log yet: try again later."""

    TEXT = "etcdserver: can only promote a learner member which is in sync with leader"


class PeerAddressExists(MemberError):
    """A member with that address exists already. Caller's fault."""

    TEXT = "etcdserver: Peer URLs already exists"


class InvalidPeerAddress(MemberError):
    """The address is not an actor address (``ak://system/name``). Caller's fault."""

    CODE = Code.INVALID_ARGUMENT
    TEXT = "etcdserver: given member URLs are invalid"


class TooManyLearners(MemberError):
    """The cluster has as many learners as it allows (etcd's ``--max-learners``, 1)."""

    TEXT = "etcdserver: too many learner members in cluster"


class NotEnoughStartedMembers(MemberError):
    """Strict reconfiguration check: after the change, the started members would not be
    a quorum (etcd's ``--strict-reconfig-check``)."""

    TEXT = "etcdserver: re-configuration failed due to not enough started members"


class UnhealthyCluster(MemberError):
    """Strict reconfiguration check: the leader has not heard from enough members lately
    for the change to keep an active quorum."""

    CODE = Code.UNAVAILABLE
    TEXT = "etcdserver: unhealthy cluster"


class MembershipChangePending(MemberError):
    """Another membership change is not applied yet: Raft-lite takes one at a time.
    (etcd drops such a proposal and the request times out; here it is refused at once.)
    Retry once the other change is done. The client raises it only when its first
    attempt meets it: a retry may be meeting its own change, and waits for it."""

    CODE = Code.UNAVAILABLE
    TEXT = "etcdserver: another membership change is still pending"


class MemberRemoved(MemberError):
    """This member was removed from the cluster; it serves nothing any more."""

    TEXT = "etcdserver: the member has been permanently removed from the cluster"


class ClusterMismatch(MemberError):
    """A member started with ``state="existing"`` found a cluster whose members differ
    from its ``initial_cluster`` (operator's fault: add it with ``member_add`` first, and
    list every member with its address)."""

    TEXT = "etcdserver: error validating peer addresses: the cluster does not match"


_BY_TEXT = {
    cls.TEXT: cls
    for cls in (
        MemberNotFound,
        MemberNotLearner,
        LearnerNotReady,
        PeerAddressExists,
        InvalidPeerAddress,
        TooManyLearners,
        NotEnoughStartedMembers,
        UnhealthyCluster,
        MembershipChangePending,
        MemberRemoved,
        ClusterMismatch,
    )
}


def error_for(failure: Failure) -> EtcdError:
    """The exception a client raises for ``failure``: the Cluster API's own class when
    the text is one of its errors, else a plain ``EtcdError``."""
    cls = _BY_TEXT.get(failure.error, EtcdError)
    return cls(failure.code, failure.error)


# --- the table --------------------------------------------------------------------------


class MemberTable:
    """The members as the replicated state has them (see the module docstring).
    ``version`` grows with every change, so that a member sees when to rebuild its
    peers from the table."""

    def __init__(self, initial: Iterable[Member] = ()) -> None:
        self.initial = tuple(sorted(initial, key=lambda m: m.id))
        self.members: dict[int, Member] = {}
        self.removed: dict[int, str] = {}  # id -> its last address
        self.version = 0
        self.reset()

    def reset(self) -> None:
        """Back to the base: the initial members, nobody removed."""
        self.members = {m.id: m for m in self.initial}
        self.removed = {}
        self.version += 1

    def listed(self) -> tuple[Member, ...]:
        return tuple(self.members[i] for i in sorted(self.members))

    def voters(self) -> list[Member]:
        return [m for m in self.members.values() if not m.is_learner]

    def learners(self) -> list[Member]:
        return [m for m in self.members.values() if m.is_learner]

    def next_id(self) -> int:
        """Above every ID the cluster ever had (removed IDs are never reused)."""
        used = [*self.members, *self.removed, *(m.id for m in self.initial)]
        return max(used, default=0) + 1

    def join_info(self) -> JoinInfo:
        return JoinInfo(self.initial, self.listed(), tuple(sorted(self.removed)))

    # --- changes (log entries only) ------------------------------------------------------

    def apply_change(self, change: ConfChange, member: Member | None) -> Member:
        """Take a committed Raft membership change into the table, as the core took it
        into the configuration; returns the member as the change leaves it. ``member``
        is the one named in the change's context (None: a change proposed without one,
        whose member then has no address)."""
        node = change.node
        if change.type is ADD_LEARNER:
            base = member or Member(node, "", "")
            changed = attrs.evolve(base, id=node, is_learner=True)
            self.members[node] = changed
        elif change.type is PROMOTE:
            base = self.members.get(node) or member or Member(node, "", "")
            changed = attrs.evolve(base, is_learner=False, auto_promote=False)
            self.members[node] = changed
        else:
            changed = self.members.pop(node, None) or member or Member(node, "", "")
            self.removed[node] = changed.address
        self.version += 1
        return changed

    def publish(self, member_id: int, name: str) -> None:
        """A member started and published its name (nothing if it is not a member)."""
        m = self.members.get(member_id)
        if m is not None and not (m.started and m.name == name):
            self.members[member_id] = attrs.evolve(m, name=name, started=True)
            self.version += 1

    # --- snapshots ------------------------------------------------------------------------

    def dump(self) -> list:
        return [
            [encode_message(m) for m in self.initial],
            [encode_message(m) for m in self.listed()],
            [[i, a] for i, a in sorted(self.removed.items())],
        ]

    def load(self, wire: list) -> None:
        initial, members, removed = wire
        self.initial = tuple(decode_message(m, _no_refs) for m in initial)
        self.members = {m.id: m for m in (decode_message(b, _no_refs) for b in members)}
        self.removed = {i: a for i, a in removed}
        self.version += 1


# --- the leader's checks ------------------------------------------------------------------


def refuse_add(
    table: MemberTable,
    request: MemberAddRequest,
    *,
    active: set[int],
    me: int,
    strict: bool,
    max_learners: int,
) -> type[MemberError] | None:
    """etcd's checks of a MemberAdd: the address, an existing member with it, the
    number of learners, and with ``strict`` (``--strict-reconfig-check``) that a new
    voter keeps a quorum of started members and that every voter is connected."""
    try:
        Address.parse(request.address)
    except ValueError:
        return InvalidPeerAddress
    if any(m.address == request.address for m in table.members.values()):
        return PeerAddressExists
    if request.is_learner and len(table.learners()) >= max_learners:
        return TooManyLearners
    if not strict:
        return None
    voters = table.voters()
    if not request.is_learner and not _ready_to_add_voter(voters):
        return NotEnoughStartedMembers
    if any(m.id != me and m.id not in active for m in voters):
        return UnhealthyCluster
    return None


def _ready_to_add_voter(voters: list[Member]) -> bool:
    members = len(voters) + 1
    started = sum(1 for m in voters if m.started)
    if started == 1 and members == 2:
        return True  # etcd: adding a second member to a one-member cluster (a restore)
    return started >= members // 2 + 1


def refuse_promote(
    table: MemberTable, member_id: int, *, caught_up: bool, strict: bool
) -> type[MemberError] | None:
    """etcd's checks of a MemberPromote: a learner, in sync with the leader, and with
    ``strict`` a quorum of started members counting it."""
    member = table.members.get(member_id)
    if member is None:
        return MemberNotFound
    if not member.is_learner:
        return MemberNotLearner
    if not caught_up:
        return LearnerNotReady
    if strict:
        voters = table.voters()
        members = len(voters) + 1
        started = 1 + sum(1 for m in voters if m.started)
        if started < members // 2 + 1:
            return NotEnoughStartedMembers
    return None


def refuse_remove(
    table: MemberTable, member_id: int, *, active: set[int], me: int, strict: bool
) -> type[MemberError] | None:
    """etcd's checks of a MemberRemove. The last voter is never removed (nothing would
    be left to decide). With ``strict``, removing a voter must leave a quorum of started
    members among the others, and, unless the member is down already (not heard from
    lately: removing it cannot lower the active quorum), the active voters after the
    removal must still be a quorum."""
    member = table.members.get(member_id)
    if member is None:
        return MemberNotFound
    if member.is_learner:
        return None
    voters = table.voters()
    if len(voters) == 1:
        return NotEnoughStartedMembers
    if not strict:
        return None
    others = [m for m in voters if m.id != member_id]
    if sum(1 for m in others if m.started) < len(others) // 2 + 1:
        return NotEnoughStartedMembers
    if member_id != me and member_id not in active:
        return None
    connected = sum(1 for m in voters if m.id == me or m.id in active)
    if connected - 1 < 1 + (len(voters) - 1) // 2:
        return UnhealthyCluster
    return None


def response_for(
    change: ConfChange, member: Member, header: ResponseHeader, members: tuple[Member, ...]
) -> MemberAddResponse | MemberPromoteResponse | MemberRemoveResponse:
    if change.type is ADD_LEARNER:
        return MemberAddResponse(header, member, members)
    if change.type is PROMOTE:
        return MemberPromoteResponse(header, members)
    return MemberRemoveResponse(header, members)


def change_for(
    request: MemberAddRequest | MemberPromoteRequest | MemberRemoveRequest,
    table: MemberTable,
    client: str,
    seq: int,
) -> ConfChange:
    """The Raft change that carries out ``request`` (already checked), with the member
    as the change leaves it in its context."""
    if type(request) is MemberAddRequest:
        member = Member(
            table.next_id(),
            request.name,
            request.address,
            is_learner=True,
            auto_promote=not request.is_learner,
        )
        kind = ADD_LEARNER
    elif type(request) is MemberPromoteRequest:
        member = attrs.evolve(table.members[request.id], is_learner=False, auto_promote=False)
        kind = PROMOTE
    else:
        member = table.members[request.id]
        kind = REMOVE
    context = encode_message(ChangeContext(member, client, seq))
    return ConfChange(kind, member.id, context)


def decode_context(change: ConfChange) -> ChangeContext | None:
    """The etcd context of a committed change; None when it has none that etcd wrote
    (a change proposed through the bare Raft API): the change still happened, and the
    table follows it with what it knows."""
    if not change.context:
        return None
    try:
        context = decode_message(change.context, _no_refs)
    except DecodeError:
        return None
    return context if type(context) is ChangeContext else None
