"""etcd's values, requests and responses, as registered actor messages.

The shapes follow etcd's v3 API (``etcdserverpb`` and ``mvccpb``) field by field, so a
test can put a real etcd's JSON answers next to ours: keys and values are bytes, a lease
ID of 0 means "no lease", a revision of 0 means "the current one". Where etcd uses a
protobuf ``oneof`` (a compare's target value, a txn's operations) the class has one field
per choice, or a union of message classes.
"""

from __future__ import annotations

import enum

from actorkube.actor import message


class EventType(enum.IntEnum):
    PUT = 0
    DELETE = 1


@message(tag="etcd.KeyValue")
class KeyValue:
    """One version of a key. ``version`` counts modifications since the key was
    (re)created: a deletion resets it, so a recreated key starts again at 1."""

    key: bytes
    create_revision: int
    mod_revision: int
    version: int
    value: bytes = b""
    lease: int = 0


@message(tag="etcd.Event")
class Event:
    """A change of one key. For a DELETE, ``kv`` holds the key and the deletion's
    revision (``mod_revision``), with no value."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@message(tag="etcd.ResponseHeader")
class ResponseHeader:
    """``revision``: the store's revision when the request was applied (for a write, the
    revision it created; for a read, the one it read at if none was asked)."""

    revision: int
    raft_term: int = 0
    member_id: int = 0


class SortOrder(enum.IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(enum.IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


@message(tag="etcd.RangeRequest")
class RangeRequest:
    """``range_end``: empty for the single key ``key``; ``b"\\0"`` for every key >= key
    (with ``key == b"\\0"``: every key); otherwise the end, exclusive (``prefix_end``
    turns a prefix into one)."""

    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@message(tag="etcd.RangeResponse")
class RangeResponse:
    """``count``: how many keys the range holds at that revision (limit aside);
    ``more``: whether ``limit`` left some out."""

    header: ResponseHeader
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@message(tag="etcd.PutRequest")
class PutRequest:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@message(tag="etcd.PutResponse")
class PutResponse:
    header: ResponseHeader
    prev_kv: KeyValue | None = None


@message(tag="etcd.DeleteRangeRequest")
class DeleteRangeRequest:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@message(tag="etcd.DeleteRangeResponse")
class DeleteRangeResponse:
    header: ResponseHeader
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


class CompareTarget(enum.IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class CompareResult(enum.IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


@message(tag="etcd.Compare")
class Compare:
    """``target`` picks which of the value fields is compared (etcd's oneof). With a
    ``range_end``, every key of the range must satisfy it."""

    key: bytes
    target: CompareTarget
    result: CompareResult
    version: int = 0
    create_revision: int = 0
    mod_revision: int = 0
    value: bytes = b""
    lease: int = 0
    range_end: bytes = b""


@message(tag="etcd.TxnRequest")
class TxnRequest:
    compare: tuple[Compare, ...] = ()
    success: tuple[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest, ...] = ()
    failure: tuple[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest, ...] = ()


@message(tag="etcd.TxnResponse")
class TxnResponse:
    header: ResponseHeader
    succeeded: bool = False
    responses: tuple[RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse, ...] = ()


@message(tag="etcd.CompactionRequest")
class CompactionRequest:
    revision: int
    physical: bool = False


@message(tag="etcd.CompactionResponse")
class CompactionResponse:
    header: ResponseHeader


@message(tag="etcd.LeaseGrantRequest")
class LeaseGrantRequest:
    """``id`` 0: the store picks one."""

    ttl: int
    id: int = 0


@message(tag="etcd.LeaseGrantResponse")
class LeaseGrantResponse:
    header: ResponseHeader
    id: int = 0
    ttl: int = 0


@message(tag="etcd.LeaseRevokeRequest")
class LeaseRevokeRequest:
    id: int


@message(tag="etcd.LeaseRevokeResponse")
class LeaseRevokeResponse:
    header: ResponseHeader


@message(tag="etcd.LeaseTimeToLiveRequest")
class LeaseTimeToLiveRequest:
    id: int
    keys: bool = False


@message(tag="etcd.LeaseTimeToLiveResponse")
class LeaseTimeToLiveResponse:
    """``ttl`` -1: no such lease (etcd answers so rather than failing)."""

    header: ResponseHeader
    id: int = 0
    ttl: int = -1
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()


@message(tag="etcd.LeaseLeasesRequest")
class LeaseLeasesRequest:
    pass


@message(tag="etcd.LeaseLeasesResponse")
class LeaseLeasesResponse:
    header: ResponseHeader
    leases: tuple[int, ...] = ()


class Code(enum.IntEnum):
    """gRPC status codes, as etcd uses them."""

    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    FAILED_PRECONDITION = 9
    OUT_OF_RANGE = 11
    UNAVAILABLE = 14


@message(tag="etcd.Failure")
class Failure:
    """A request the store refused: etcd's error text and gRPC code."""

    code: Code
    error: str


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``
    (etcd's ``GetPrefixRangeEnd``): the prefix with its last byte below 0xff incremented
    and the rest dropped; ``b"\\0"`` (every key) when there is no such byte."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"
