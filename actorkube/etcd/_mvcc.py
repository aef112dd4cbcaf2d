"""The MVCC key-value store: etcd's data model as a pure, deterministic state machine.

Rules of this file:

- No clock, no I/O, no randomness: every replica applies the same requests in the same
  order and ends in the same state (lease expiry is decided outside, by the leader, and
  arrives here as a revoke).
- The revision is cluster-wide: a fresh store is at revision 1; every request that
  changes something takes the next one (a txn takes one for all its writes, told apart
  by sub-revisions); a delete that deletes nothing, a read, a failed request take none.
- Each key keeps its versions since the last compaction (see ``Version``). A read at
  revision R sees, per key, the last version with ``main <= R``. Compaction at C keeps,
  per key, the last version at or below C (unless it is a deletion below C) and
  everything after it.
- Every change is also an event in revision order (the watch history): events from
  any revision at or after the compaction revision can be replayed. The history holds
  which version changed (revision, sub-revision, key): the ``Event`` is made from the
  key's versions when it is replayed (its ``prev_kv`` is the version before, unless
  compaction forgot it).
- The store holds a version and an event per change: they are kept as exact tuples and
  lists of ints and bytes, which CPython's cyclic collector stops tracking (tuples after
  one collection) or never looks into (lists of them), so a large store does not make
  every collection slower. ``KeyValue`` and ``Event`` objects are made for answers.
- Errors are raised as ``EtcdError`` with etcd's text and gRPC code, before anything is
  changed: a refused request changes nothing.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

import msgpack
from sortedcontainers import SortedList

from actorkube.heap import collector_paused

from ._types import (
    Code,
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    Failure,
    KeyValue,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesRequest,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

# etcd's error texts (api/v3rpc/rpctypes), the contract a client matches on.
COMPACTED = "etcdserver: mvcc: required revision has been compacted"
FUTURE_REV = "etcdserver: mvcc: required revision is a future revision"
DUPLICATE_KEY = "etcdserver: duplicate key given in txn request"
TOO_MANY_OPS = "etcdserver: too many operations in txn request"
EMPTY_KEY = "etcdserver: key is not provided"
KEY_NOT_FOUND = "etcdserver: key not found"
VALUE_PROVIDED = "etcdserver: value is provided"
LEASE_PROVIDED = "etcdserver: lease is provided"
LEASE_NOT_FOUND = "etcdserver: requested lease not found"
LEASE_EXISTS = "etcdserver: lease already exists"

PUT, DELETE = EventType.PUT, EventType.DELETE


class EtcdError(Exception):
    """A request etcd would refuse, with its gRPC code and text."""

    def __init__(self, code: Code, error: str) -> None:
        super().__init__(error)
        self.code = code
        self.error = error


class Lease:
    __slots__ = ("id", "keys", "ttl")

    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl  # granted TTL in seconds
        self.keys: set[bytes] = set()


# One version of a key: (main, sub, create_revision, version, value, lease), main being
# its mod_revision; ``version`` 0 marks a deletion (a live key's version counts from 1),
# whose other fields are 0 and b"". Only ints and bytes, see the module docstring.
Version = tuple[int, int, int, int, bytes, int]
_LIVE = 3  # the index of ``version`` in a Version: nonzero but for a deletion


def _kv(key: bytes, v: Version) -> KeyValue:
    """The ``KeyValue`` of live version ``v`` of ``key``."""
    return KeyValue(key, v[2], v[0], v[3], v[4], v[5])


def _kv_or_none(key: bytes, v: Version | None) -> KeyValue | None:
    """The ``KeyValue`` of version ``v`` of ``key``; None if absent or a deletion."""
    return KeyValue(key, v[2], v[0], v[3], v[4], v[5]) if v is not None and v[3] else None


class MVCCStore:
    """See the module docstring. ``max_txn_ops`` is etcd's ``--max-txn-ops`` (128);
    ``min_lease_ttl`` the shortest TTL a lease is granted (etcd derives it from the
    election timeout: 2 s with its defaults)."""

    def __init__(self, *, max_txn_ops: int = 128, min_lease_ttl: int = 2) -> None:
        self.max_txn_ops = max_txn_ops
        self.min_lease_ttl = min_lease_ttl
        self.revision = 1
        self.compact_revision = 0
        # Every key that has versions, in order (for ranges). Kept up to date lazily
        # (see ``_sorted``): a write only notes what changed, so that the writes of a
        # burst without ranges in between (and single-key requests, which look keys up
        # in ``_versions``) never pay for the ordering.
        self._index: SortedList = SortedList()
        # The keys whose latest version is not a deletion: a range at the current
        # revision (nearly all of them) counts and pages through these in O(log n + page)
        # instead of looking at every key in the range. Lazy too.
        self._live: SortedList = SortedList()
        self._new_keys: list[bytes] = []  # keys with versions, not in _index yet
        # Keys whose liveness changed since _live was last brought up to date: whether
        # each was in _live then.
        self._live_was: dict[bytes, bool] = {}
        self._versions: dict[bytes, list[Version]] = {}
        self.leases: dict[int, Lease] = {}
        self._last_lease_id = 0
        self.lease_changes = 0  # grants and revokes so far (for whoever tracks leases)
        # The watch history: event i is the version (_event_revs[i], _event_subs[i]) of
        # _event_keys[i] (see ``event``).
        self._event_revs: list[int] = []
        self._event_subs: list[int] = []
        self._event_keys: list[bytes] = []
        # (main, sub) -> version, of the events whose version the last compaction dropped
        # (see _keep_compacted_changes).
        self._compacted_changes: dict[tuple[int, int], Version] = {}
        # (main, sub) of the events whose prev_kv compaction forgot although their
        # version before is kept (see _keep_compacted_changes).
        self._prev_forgotten: set[tuple[int, int]] = set()
        # A txn in progress: its writes take (revision + 1, sub) and its reads see them.
        self._pending_sub = -1
        self._last_header = ResponseHeader(self.revision)

    # --- reads ---------------------------------------------------------------------------

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The key's value at ``revision`` (0: now), None if absent."""
        versions = self._versions.get(key)
        if not versions:
            return None
        return _kv_or_none(key, _visible(versions, revision or self._read_revision()))

    def range(self, req: RangeRequest) -> RangeResponse:
        if not req.key:
            raise EtcdError(Code.INVALID_ARGUMENT, EMPTY_KEY)
        current = self._read_revision()
        rev = req.revision if req.revision > 0 else current
        if rev > current:
            raise EtcdError(Code.OUT_OF_RANGE, FUTURE_REV)
        if rev < self.compact_revision:
            raise EtcdError(Code.OUT_OF_RANGE, COMPACTED)
        if rev == current and not _needs_every_key(req):
            return self._range_now(req, current)
        # Counted, filtered and sorted as versions: a ``KeyValue`` only for each row
        # returned.
        found = self._range_at(req.key, req.range_end, rev)
        count = len(found)  # before the filters, as etcd counts
        if req.count_only:
            # etcd counts without fetching, so nothing is left over to report as more.
            return RangeResponse(self._header(current), (), False, count)
        if (
            req.min_mod_revision
            or req.max_mod_revision
            or req.min_create_revision
            or req.max_create_revision
        ):
            found = _filtered(found, req)
        if req.sort_order != SortOrder.NONE or req.sort_target != SortTarget.KEY:
            # etcd sorts ascending when only a target is given.
            reverse = req.sort_order == SortOrder.DESCEND
            if req.sort_target != SortTarget.KEY or reverse:
                found.sort(key=_SORT_KEYS[req.sort_target], reverse=reverse)
        more = 0 < req.limit < len(found)
        if more:
            del found[req.limit :]
        if req.keys_only:
            kvs = tuple([KeyValue(k, v[2], v[0], v[3], b"", v[5]) for k, v in found])
        else:
            kvs = tuple([KeyValue(k, v[2], v[0], v[3], v[4], v[5]) for k, v in found])
        return RangeResponse(self._header(current), kvs, more, count)

    def _range_now(self, req: RangeRequest, current: int) -> RangeResponse:
        """``range`` at the current revision, without filters or sorting: the same answer
        from the live keys, touching only those returned."""
        if not req.range_end:
            # One key: its latest version, if not a deletion (nothing is later than the
            # current revision).
            versions = self._versions.get(req.key)
            v = versions[-1] if versions else None
            if v is None or not v[_LIVE]:
                return RangeResponse(self._header(current), (), False, 0)
            if req.count_only:
                return RangeResponse(self._header(current), (), False, 1)
            if req.keys_only:
                kv = KeyValue(req.key, v[2], v[0], v[3], b"", v[5])
            else:
                kv = KeyValue(req.key, v[2], v[0], v[3], v[4], v[5])
            return RangeResponse(self._header(current), (kv,), False, 1)
        self._sorted()
        keys = self._keys_in(req.key, req.range_end, self._live)
        count = _count_in(self._live, req.key, req.range_end)
        if req.count_only:
            return RangeResponse(self._header(current), (), False, count)
        take = req.limit if 0 < req.limit < count else count
        versions = self._versions
        # Making the KeyValues is nearly all the cost (the keys and versions are a tenth):
        # one comprehension, no call but the constructor's.
        page = itertools.islice(keys, take)
        if req.keys_only:
            kvs = tuple([KeyValue(k, v[2], v[0], v[3], b"", v[5])
                         for k in page for v in (versions[k][-1],)])  # fmt: skip
        else:
            kvs = tuple([KeyValue(k, v[2], v[0], v[3], v[4], v[5])
                         for k in page for v in (versions[k][-1],)])  # fmt: skip
        return RangeResponse(self._header(current), kvs, take < count, count)

    def events_since(self, revision: int) -> list[Event]:
        """Every event at or after ``revision``, in order. Raises EtcdError (compacted)
        if the history no longer reaches back that far."""
        start = self.history_index(revision)
        return self.events(range(start, len(self._event_revs)))

    def history_index(self, revision: int) -> int:
        """The position in the history of the first event at or after ``revision`` (the
        history's length if there is none yet). Raises EtcdError (compacted) if the
        history no longer reaches back that far. Positions hold until the next
        compaction."""
        if revision < self.compact_revision:
            raise EtcdError(Code.OUT_OF_RANGE, COMPACTED)
        return bisect.bisect_left(self._event_revs, revision)

    def history_keys(self, start: int) -> list[bytes]:
        """The key of each event from position ``start`` on (a copy): what a watch looks
        at to pick its events without making them."""
        return self._event_keys[start:]

    def event(self, i: int, prev_kv: bool = True) -> Event:
        """The event at position ``i`` of the history; without its ``prev_kv`` unless
        ``prev_kv``."""
        return self._events((i,), prev_kv, None)[0]

    def events(
        self, positions: Sequence[int], prev_kv: bool = True, made: dict[int, Event] | None = None
    ) -> list[Event]:
        """The events at ``positions`` of the history (increasing), as ``event`` makes
        them, in one walk: each key's place in its versions is kept from one of its
        events to the next (no search per event), and so is the ``KeyValue`` made for
        its version, which is the ``prev_kv`` of its next event. ``made``: events made
        before with the same ``prev_kv``, by position; the new ones are added."""
        if len(positions) < _MANY_EVENTS:
            return self._events(positions, prev_kv, made)
        # Thousands of new objects, all kept: collections on the way would only scan them
        # (and the rest of the heap) again and again.
        with collector_paused():
            return self._events(positions, prev_kv, made)

    def _events(
        self, positions: Sequence[int], prev_kv: bool, made: dict[int, Event] | None
    ) -> list[Event]:
        revs, subs, keys = self._event_revs, self._event_subs, self._event_keys
        all_versions = self._versions
        forgotten = self._prev_forgotten
        # key -> (index in its versions of its last event made here, its KeyValue or None)
        last: dict[bytes, tuple[int, KeyValue | None]] = {}
        events = []
        for i in positions:
            if made is not None:
                e = made.get(i)
                if e is not None:
                    events.append(e)
                    continue
            key, main, sub = keys[i], revs[i], subs[i]
            versions = all_versions[key]  # a key with events has versions (see compact)
            seen = last.get(key)
            if seen is None:
                j = len(versions) - 1
                v = versions[j]
                if v[0] != main or v[1] != sub:
                    j = bisect.bisect_left(versions, (main, sub))
            else:
                j = seen[0] + 1  # the key's next version, unless events were skipped
                if j >= len(versions) or versions[j][0] != main or versions[j][1] != sub:
                    j = bisect.bisect_left(versions, (main, sub), j)
            v = versions[j] if j < len(versions) else _ABSENT
            kept = v[0] == main and v[1] == sub
            if not kept:  # dropped by the last compaction, and so is the version before
                v, j = self._compacted_changes[main, sub], 0
            prev = None
            if prev_kv and j and not (forgotten and (main, sub) in forgotten):
                p = versions[j - 1]
                if p[_LIVE]:
                    if seen is not None and seen[0] == j - 1 and seen[1] is not None:
                        prev = seen[1]  # made for the key's previous event
                    else:
                        prev = KeyValue(key, p[2], p[0], p[3], p[4], p[5])
            if v[_LIVE]:
                kv = KeyValue(key, v[2], main, v[3], v[4], v[5])
                e = Event(PUT, kv, prev)
            else:
                kv = None
                e = Event(DELETE, KeyValue(key, 0, main, 0), prev)
            # (For a dropped version, the key's next event looks from its first on.)
            last[key] = (j, kv) if kept else (-1, None)
            if made is not None:
                made[i] = e
            events.append(e)
        return events

    def _read_revision(self) -> int:
        # Inside a write, once something was written, reads see it (as etcd's do).
        return self.revision + 1 if self._pending_sub > 0 else self.revision

    def _range_at(self, key: bytes, range_end: bytes, rev: int) -> list[tuple[bytes, Version]]:
        """Every key in [key, range_end) live at ``rev``, with its version then, in key
        order."""
        versions = self._versions
        if not range_end:
            history = versions.get(key)
            v = _visible(history, rev) if history else None
            return [] if v is None or not v[_LIVE] else [(key, v)]
        self._sorted()
        found = []
        append = found.append
        for k in self._keys_in(key, range_end, self._index):
            history = versions[k]
            v = history[-1]
            if v[0] > rev:  # changed since: ``_visible``, inline (a range may hold many)
                i = bisect.bisect_right(history, (rev, _MAX_SUB)) - 1
                if i < 0:
                    continue
                v = history[i]
            if v[_LIVE]:
                append((k, v))
        return found

    def _keys_in(self, key: bytes, range_end: bytes, index: SortedList) -> Iterable[bytes]:
        """The keys of ``index`` in [key, range_end) (``_sorted`` must have run)."""
        if not range_end:
            return (key,) if key in index else ()
        if range_end == b"\0":
            if key == b"\0":
                return index
            return index.irange(key)
        return index.irange(key, range_end, inclusive=(True, False))

    # --- writes ----------------------------------------------------------------------------

    def put(self, req: PutRequest) -> PutResponse:
        self._check_put(req)
        return self._in_write(lambda: self._put(req))

    def delete_range(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        if not req.key:
            raise EtcdError(Code.INVALID_ARGUMENT, EMPTY_KEY)
        return self._in_write(lambda: self._delete(req))

    def txn(self, req: TxnRequest) -> TxnResponse:
        # As etcd: every compare along the way (nested txns too) is evaluated against
        # the state before the txn, then the chosen branches are checked, then applied.
        if self._check_txn_arguments(req):
            return self._nested_txn(req)
        # No nested txn (nearly every txn: a compare and a put): the steps of
        # _nested_txn for the one branch taken, without a path to follow.
        _check_duplicates(req)  # after every argument check, as etcd does
        ok = True
        for c in req.compare:
            if not self._compare(c):
                ok = False
                break
        ops = req.success if ok else req.failure
        # Two passes, as etcd: every put, then every range.
        writes = ranges = False
        for op in ops:
            kind = type(op)
            if kind is PutRequest:
                writes = True
                if op.lease or op.ignore_value or op.ignore_lease:  # else nothing to check
                    self._check_put_state(op, lease_first=False)
            elif kind is RangeRequest:
                ranges = True
            else:
                writes = True
        if ranges:
            for op in ops:
                if type(op) is RangeRequest:
                    self._check_range_in_txn(op)
        if not writes:
            return TxnResponse(self._header(self.revision), ok, self._run_ops(ops))
        self._pending_sub = 0  # as _in_write, without a closure to build
        try:
            responses = self._run_ops(ops)
            return TxnResponse(self._header(self._read_revision()), ok, responses)
        finally:
            if self._pending_sub > 0:
                self.revision += 1
            self._pending_sub = -1

    def _run_ops(self, ops: tuple) -> tuple:
        """The responses to a branch without nested txns, run in order."""
        responses = []
        for op in ops:
            kind = type(op)
            if kind is PutRequest:
                responses.append(self._put(op))
            elif kind is RangeRequest:
                responses.append(self.range(op))
            else:
                responses.append(self._delete(op))
        return tuple(responses)

    def _nested_txn(self, req: TxnRequest) -> TxnResponse:
        """``txn`` of one whose branches hold txns (its arguments are checked)."""
        _check_duplicates(req)  # after every argument check, as etcd does
        path: list[bool] = []
        self._choose(req, path)
        # Two passes, as etcd: every put along the path, then every range.
        self._check_txn_state(req, iter(path), PutRequest)
        self._check_txn_state(req, iter(path), RangeRequest)
        if not _writes(req, iter(path)):
            return self._run_txn(req, iter(path))
        return self._in_write(lambda: self._run_txn(req, iter(path)))

    def compact(self, revision: int) -> None:
        """Forget versions superseded at or before ``revision``.

        Costs the changes since the last compaction, not the size of the store (etcd's
        compaction too walks the revisions it drops): only a key with an event in the
        history up to ``revision`` can have something to forget. The history reaches
        back to the last compaction's revision C0 (or holds every version after a
        ``load``), and after that compaction every key held its last version at or
        below C0 and the versions after C0; a key with no change in [C0, revision] still
        has that version as its last one at or below ``revision``, and it is a deletion
        only if it is at C0 (deletions below C0 were dropped then), which is in the
        history: so it has nothing to drop."""
        if revision <= self.compact_revision:
            raise EtcdError(Code.OUT_OF_RANGE, COMPACTED)
        if revision > self.revision:
            raise EtcdError(Code.OUT_OF_RANGE, FUTURE_REV)
        self.compact_revision = revision
        self._compacted_changes = {}  # those of an older compaction: out of the history
        self._prev_forgotten = {c for c in self._prev_forgotten if c[0] >= revision}
        # Each key once, in the history's order (what each key keeps does not depend on
        # the order; a fixed one keeps the replicas' work the same).
        changed = dict.fromkeys(self._event_keys[: bisect.bisect_right(self._event_revs, revision)])
        removed = []
        for key in changed:
            versions = self._versions[key]
            if len(versions) == 1 and versions[0][_LIVE]:
                continue  # nothing before it, and it is not a deletion (most keys)
            keep = bisect.bisect_right(versions, (revision, _MAX_SUB)) - 1
            if keep < 0:
                continue  # created after the compaction revision
            if not versions[keep][_LIVE] and versions[keep][0] < revision:
                keep += 1  # a deletion below it: nothing to remember (one at it stays,
                # for the watch history that starts there)
            if keep:
                self._keep_compacted_changes(versions, keep, revision)
                # A new list, never a cut in place: a snapshot under way holds the old one.
                versions = self._versions[key] = versions[keep:]
            if not versions:
                del self._versions[key]
                removed.append(key)
        if removed:
            # Out of the key index without bringing it up to date first (``_sorted``: the
            # keys written since the last range, sorted in one by one, had made most of
            # a compaction's time in a cluster that only lists from its API server's
            # cache); ``_live`` never held them, or ``_live_was`` says so.
            gone = set(removed)
            self._new_keys = [k for k in self._new_keys if k not in gone]
            for key in removed:
                self._index.discard(key)
        cut = bisect.bisect_left(self._event_revs, revision)
        del self._event_revs[:cut]
        del self._event_subs[:cut]
        del self._event_keys[:cut]

    def _keep_compacted_changes(self, versions: list[Version], keep: int, revision: int) -> None:
        """Compaction at ``revision`` drops ``versions[:keep]``: the first version kept
        has none before it any more, so its event has no prev_kv (as a store loaded from
        a snapshot derives it). Every event of the key at that version's revision loses
        its prev_kv, as this store always did: a txn may change a key twice (put it, then
        delete it with a range up to b"\\0"), and those are noted. Their events are
        cut from the history with the versions, but for changes at ``revision`` itself:
        those events stay, so their versions are kept aside for ``event``."""
        main = versions[keep][0] if keep < len(versions) else -1
        i = keep + 1
        while i < len(versions) and versions[i][0] == main:
            self._prev_forgotten.add((main, versions[i][1]))
            i += 1
        i = keep - 1
        while i >= 0 and versions[i][0] == revision:
            self._compacted_changes[revision, versions[i][1]] = versions[i]
            i -= 1

    def compaction(self, req: CompactionRequest) -> CompactionResponse:
        self.compact(req.revision)
        return CompactionResponse(ResponseHeader(self.revision))

    # --- leases ----------------------------------------------------------------------------

    def lease_grant(self, req: LeaseGrantRequest) -> LeaseGrantResponse:
        """Create a lease; ``id`` 0 picks the next one after every ID seen. The TTL is
        raised to the minimum."""
        lease_id = req.id or self._last_lease_id + 1
        if lease_id in self.leases:
            raise EtcdError(Code.FAILED_PRECONDITION, LEASE_EXISTS)
        lease = Lease(lease_id, max(req.ttl, self.min_lease_ttl))
        self.leases[lease_id] = lease
        self.lease_changes += 1
        self._last_lease_id = max(self._last_lease_id, lease_id)
        return LeaseGrantResponse(ResponseHeader(self.revision), lease_id, lease.ttl)

    def lease_revoke(self, req: LeaseRevokeRequest) -> LeaseRevokeResponse:
        """Remove the lease and delete its keys (one revision for all of them)."""
        lease = self.leases.get(req.id)
        if lease is None:
            raise EtcdError(Code.NOT_FOUND, LEASE_NOT_FOUND)
        keys = sorted(lease.keys)
        if keys:
            self._in_write(lambda: [self._delete_key(k) for k in keys])
        del self.leases[req.id]
        self.lease_changes += 1
        return LeaseRevokeResponse(ResponseHeader(self.revision))

    def lease_time_to_live(self, req: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        """What the store knows of a lease: its granted TTL (also as ``ttl``: the time
        left is the leader's to tell) and keys; ``ttl`` -1 if there is no such lease."""
        lease = self.leases.get(req.id)
        header = ResponseHeader(self.revision)
        if lease is None:
            return LeaseTimeToLiveResponse(header, req.id, -1)
        keys = tuple(sorted(lease.keys)) if req.keys else ()
        return LeaseTimeToLiveResponse(header, req.id, lease.ttl, lease.ttl, keys)

    def lease_leases(self, req: LeaseLeasesRequest) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(ResponseHeader(self.revision), tuple(sorted(self.leases)))

    # --- snapshots --------------------------------------------------------------------------

    def dump(self) -> bytes:
        """The whole state as bytes (a Raft snapshot); ``load`` makes an equal store."""
        return b"".join(run_steps(self.dump_steps()))

    def dump_steps(self, versions_per_step: int = 2000) -> Generator[None, None, list[bytes]]:
        """``dump`` a little at a time: the state is captured now (references only, O(keys)),
        and each ``next`` serialises about ``versions_per_step`` versions of it (whole keys
        at a time); the generator returns
        the parts whose concatenation is ``dump``'s bytes. The store may change between
        steps: a version list only ever grows at its end or is replaced by compaction,
        never cut in place, so the captured lengths keep the state as of this call."""
        head = [self.revision, self.compact_revision, self._last_lease_id]
        captured = [(key, vs, len(vs)) for key, vs in self._versions.items()]
        leases = [[lease.id, lease.ttl] for lease in self.leases.values()]
        return _dump(head, captured, leases, versions_per_step)

    @classmethod
    def load(cls, data: bytes, **options: Any) -> MVCCStore:
        """A store from ``dump``'s bytes. The watch history and the keys of each lease are
        derived from the versions, so they come back exactly as they were. Millions of
        new objects, all kept: built with the cyclic collector paused (with it on, a
        150,000-pod store took 3x as long, most of it in collections that scan them)."""
        with collector_paused():
            return cls._load(data, options)

    @classmethod
    def _load(cls, data: bytes, options: dict[str, Any]) -> MVCCStore:
        revision, compacted, last_lease, versions, leases = msgpack.unpackb(data, raw=False)
        store = cls(**options)
        store.revision, store.compact_revision = revision, compacted
        store._last_lease_id = last_lease
        for lease_id, ttl in leases:
            store.leases[lease_id] = Lease(lease_id, ttl)
        changes = []
        live = []
        for key, vs in versions:
            history = store._versions[key] = [_version_from_wire(*v) for v in vs]
            changes += [(main, sub, key) for main, sub, _ in vs]
            last = history[-1] if history else None
            if last is not None and last[_LIVE]:
                live.append(key)
                if last[5]:
                    store.leases[last[5]].keys.add(key)
        store._index.update(store._versions)  # sorted once, not key by key
        store._live.update(live)
        changes.sort()  # (main, sub) is unique: the keys are never compared
        store._event_revs = [main for main, _, _ in changes]
        store._event_subs = [sub for _, sub, _ in changes]
        store._event_keys = [key for _, _, key in changes]
        return store

    # --- one entry point -------------------------------------------------------------------

    def execute(self, req: Any) -> Any:
        """Apply one request: its response, or a ``Failure`` if etcd would refuse it
        (then nothing changed)."""
        method = _EXECUTE.get(type(req))
        if method is None:
            return Failure(Code.INVALID_ARGUMENT, f"unknown request {type(req).__qualname__}")
        try:
            return method(self, req)
        except EtcdError as exc:
            return Failure(exc.code, exc.error)

    # --- the write path ----------------------------------------------------------------------

    def _in_write(self, body):
        """Run ``body`` as one write: its changes share revision + 1 (sub-revisions
        0, 1, ...); the revision moves only if something changed."""
        self._pending_sub = 0
        try:
            return body()
        finally:
            if self._pending_sub > 0:
                self.revision += 1
            self._pending_sub = -1

    def _check_put(self, req: PutRequest) -> None:
        _check_put_arguments(req)
        self._check_put_state(req)

    def _check_put_state(self, req: PutRequest, *, lease_first: bool = True) -> None:
        # etcd checks a lone put's lease first, and a put inside a txn's key first.
        lease_missing = req.lease and req.lease not in self.leases
        if lease_missing and lease_first:
            raise EtcdError(Code.NOT_FOUND, LEASE_NOT_FOUND)
        if (req.ignore_value or req.ignore_lease) and self.get(req.key) is None:
            raise EtcdError(Code.INVALID_ARGUMENT, KEY_NOT_FOUND)
        if lease_missing:
            raise EtcdError(Code.NOT_FOUND, LEASE_NOT_FOUND)

    def _put(self, req: PutRequest) -> PutResponse:
        main = self.revision + 1
        sub = self._pending_sub
        self._pending_sub = sub + 1
        key = req.key
        versions = self._versions.get(key)
        prev = versions[-1] if versions else None
        if prev is None or not prev[_LIVE]:
            if req.ignore_value or req.ignore_lease:
                # Only a txn that deleted the key before gets here (the checks look at
                # the state before the txn), and etcd panics there ("unexpected error
                # during txn"); so did this store, from a None.
                raise AssertionError(f"txn put with ignore_value/lease of deleted key {key!r}")
            version = (main, sub, main, 1, req.value, req.lease)
        else:
            value = prev[4] if req.ignore_value else req.value
            lease = prev[5] if req.ignore_lease else req.lease
            version = (main, sub, prev[2], prev[3] + 1, value, lease)
            if prev[5] and prev[5] != lease:
                self.leases[prev[5]].keys.discard(key)
        if version[5]:
            self.leases[version[5]].keys.add(key)
        self._record(key, versions, version)
        return PutResponse(self._header(main), _kv_or_none(key, prev) if req.prev_kv else None)

    def _delete(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        found = self._range_at(req.key, req.range_end, self._read_revision())
        prevs = [self._delete_key(k) for k, _ in found]
        # Every response carries the revision as of just after its own operation.
        return DeleteRangeResponse(
            self._header(self._read_revision()),
            len(prevs),
            tuple(_kv(k, v) for (k, _), v in zip(found, prevs, strict=True)) if req.prev_kv else (),
        )

    def _delete_key(self, key: bytes) -> Version:
        """Delete live ``key``; its version before."""
        main, sub = self.revision + 1, self._next_sub()
        versions = self._versions[key]
        prev = versions[-1]
        if prev[5] and prev[5] in self.leases:
            self.leases[prev[5]].keys.discard(key)
        self._record(key, versions, (main, sub, 0, 0, b"", 0))
        return prev

    def _record(self, key: bytes, versions: list[Version] | None, version: Version) -> None:
        """Add ``version`` of ``key`` (``versions``: its list, None if it has none) and
        its event; note for ``_sorted`` what changes for the ordered indexes."""
        if versions is None:
            versions = self._versions[key] = []
            self._new_keys.append(key)
        was_live = bool(versions) and versions[-1][_LIVE] != 0
        if was_live is (version[_LIVE] == 0) and key not in self._live_was:
            self._live_was[key] = was_live  # _live, as last brought up to date
        versions.append(version)
        self._event_revs.append(version[0])
        self._event_subs.append(version[1])
        self._event_keys.append(key)

    def _sorted(self) -> None:
        """Bring ``_index`` and ``_live`` up to date with the writes since the last call
        (every use of either calls this first)."""
        if self._new_keys:
            self._index.update(self._new_keys)
            self._new_keys = []
        if self._live_was:
            versions = self._versions
            added = []
            for key, was_live in self._live_was.items():
                history = versions.get(key)
                if (bool(history) and history[-1][_LIVE] != 0) is not was_live:
                    if was_live:
                        self._live.remove(key)
                    else:
                        added.append(key)
            self._live.update(added)
            self._live_was = {}

    def _header(self, revision: int) -> ResponseHeader:
        """``ResponseHeader(revision)``, shared by the responses of one revision (they are
        immutable; a txn's puts and the txn itself all carry the same one)."""
        header = self._last_header
        if header.revision != revision:
            header = self._last_header = ResponseHeader(revision)
        return header

    def _next_sub(self) -> int:
        sub = self._pending_sub
        self._pending_sub += 1
        return sub

    # --- txn -------------------------------------------------------------------------------

    def _choose(self, req: TxnRequest, path: list[bool]) -> None:
        ok = all(self._compare(c) for c in req.compare)
        path.append(ok)
        for op in req.success if ok else req.failure:
            if type(op) is TxnRequest:
                self._choose(op, path)

    def _compare(self, c: Compare) -> bool:
        """``c`` against the state before the txn (compares run before its writes)."""
        if not c.range_end:
            # One key (the usual compare): its latest version, as nothing was written
            # at a later revision yet.
            versions = self._versions.get(c.key)
            v = versions[-1] if versions else None
            if v is None or not v[_LIVE]:
                if c.target == _VALUE:
                    return False  # a missing key has no value to compare
                v = _ABSENT
            return _compare_version(c, v)
        found = self._range_at(c.key, c.range_end, self.revision)
        if not found:
            if c.target == _VALUE:
                return False
            return _compare_version(c, _ABSENT)
        return all(_compare_version(c, v) for _, v in found)

    def _check_txn_arguments(self, req: TxnRequest) -> bool:
        """What etcd checks of a txn before looking at the store: both branches. True if
        a branch holds a txn."""
        compare, success, failure = req.compare, req.success, req.failure
        if max(len(compare), len(success), len(failure)) > self.max_txn_ops:
            raise EtcdError(Code.INVALID_ARGUMENT, TOO_MANY_OPS)
        for c in compare:
            if not c.key:
                raise EtcdError(Code.INVALID_ARGUMENT, EMPTY_KEY)
        nested = False
        for ops in (success, failure):
            for op in ops:
                kind = type(op)
                if kind is PutRequest:
                    if not op.key or op.ignore_value or op.ignore_lease:
                        _check_put_arguments(op)  # the usual put has nothing to refuse
                elif kind is TxnRequest:
                    self._check_txn_arguments(op)
                    nested = True
                elif not op.key:
                    raise EtcdError(Code.INVALID_ARGUMENT, EMPTY_KEY)
        return nested

    def _check_range_in_txn(self, op: RangeRequest) -> None:
        # Against the revision before the txn: a range cannot ask for the txn's own.
        if op.revision > self.revision:
            raise EtcdError(Code.OUT_OF_RANGE, FUTURE_REV)
        if 0 < op.revision < self.compact_revision:
            raise EtcdError(Code.OUT_OF_RANGE, COMPACTED)

    def _check_txn_state(self, req: TxnRequest, path: Iterator[bool], kind: type) -> None:
        """What depends on the store, for the ``kind`` of operation, along the branches
        the txn will take."""
        for op in req.success if next(path) else req.failure:
            if type(op) is TxnRequest:
                self._check_txn_state(op, path, kind)
            elif type(op) is not kind:
                continue
            elif kind is PutRequest:
                self._check_put_state(op, lease_first=False)
            else:
                self._check_range_in_txn(op)

    def _run_txn(self, req: TxnRequest, path: Iterator[bool], nested: bool = False) -> TxnResponse:
        ok = next(path)
        responses: list[Any] = []
        for op in req.success if ok else req.failure:
            kind = type(op)
            if kind is RangeRequest:
                responses.append(self.range(op))
            elif kind is PutRequest:
                responses.append(self._put(op))
            elif kind is DeleteRangeRequest:
                responses.append(self._delete(op))
            else:
                responses.append(self._run_txn(op, path, nested=True))
        # etcd leaves the header of a nested txn's response empty (revision 0).
        header = ResponseHeader(0) if nested else self._header(self._read_revision())
        return TxnResponse(header, ok, tuple(responses))


_MAX_SUB = 1 << 62
# From this many events, ``events`` makes them with the cyclic collector paused.
_MANY_EVENTS = 1024


def _dump(
    head: list, captured: list, leases: list, versions_per_step: int
) -> Generator[None, None, list[bytes]]:
    """The steps of ``MVCCStore.dump_steps``: the msgpack array [revision, compacted,
    last lease, versions, leases], its versions array written key by key."""
    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_array_header(5), *(packer.pack(x) for x in head)]
    parts.append(packer.pack_array_header(len(captured)))
    done = 0
    for key, vs, n in captured:
        wire = [_version_wire(v) for v in vs[:n]]
        parts.append(packer.pack([key, wire]))
        done += n
        if done >= versions_per_step:
            done = 0
            yield
    parts.append(packer.pack(leases))
    return parts


def run_steps(steps: Generator[None, None, Any]) -> Any:
    """Run a stepped job to its end; its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _version_wire(v: Version) -> list:
    """A version as a snapshot holds it: [main, sub, kv], kv being [create_revision,
    mod_revision, version, value, lease], or None for a deletion."""
    main, sub, create, version, value, lease = v
    return [main, sub, [create, main, version, value, lease] if version else None]


def _version_from_wire(main: int, sub: int, kv: list | None) -> Version:
    """The inverse of ``_version_wire``."""
    if kv is None:
        return (main, sub, 0, 0, b"", 0)
    create, _, version, value, lease = kv
    return (main, sub, create, version, value, lease)


def _visible(versions: list[Version], rev: int) -> Version | None:
    """The version of ``versions`` a read at ``rev`` sees (maybe a deletion); None if the
    key had none yet."""
    if versions[-1][0] <= rev:
        return versions[-1]
    i = bisect.bisect_right(versions, (rev, _MAX_SUB)) - 1
    return versions[i] if i >= 0 else None


def _check_put_arguments(req: PutRequest) -> None:
    if not req.key:
        raise EtcdError(Code.INVALID_ARGUMENT, EMPTY_KEY)
    if req.ignore_value and req.value:
        raise EtcdError(Code.INVALID_ARGUMENT, VALUE_PROVIDED)
    if req.ignore_lease and req.lease:
        raise EtcdError(Code.INVALID_ARGUMENT, LEASE_PROVIDED)


def _needs_every_key(req: RangeRequest) -> bool:
    """Filters and sorting look at every key in the range (and count before filtering)."""
    return bool(
        req.min_mod_revision
        or req.max_mod_revision
        or req.min_create_revision
        or req.max_create_revision
        or req.sort_order != SortOrder.NONE
        or req.sort_target != SortTarget.KEY
    )


def _count_in(index: SortedList, key: bytes, range_end: bytes) -> int:
    """How many keys of ``index`` the range [key, range_end) holds (etcd's conventions
    for an empty and a "\\0" range end), by bisection."""
    if not range_end:
        return 1 if key in index else 0
    low = 0 if key == b"\0" and range_end == b"\0" else index.bisect_left(key)
    high = len(index) if range_end == b"\0" else index.bisect_left(range_end)
    return max(0, high - low)


def _filtered(found: list[tuple[bytes, Version]], req: RangeRequest) -> list[tuple[bytes, Version]]:
    """The (key, version) pairs of ``found`` that pass the request's revision filters."""
    min_mod, max_mod = req.min_mod_revision, req.max_mod_revision
    min_create, max_create = req.min_create_revision, req.max_create_revision
    return [
        (k, v)
        for k, v in found
        if not (
            (min_mod and v[0] < min_mod)
            or (max_mod and v[0] > max_mod)
            or (min_create and v[2] < min_create)
            or (max_create and v[2] > max_create)
        )
    ]


# Sort keys of (key, version) pairs, by SortTarget.
_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv[0],
    SortTarget.VERSION: lambda kv: kv[1][3],
    SortTarget.CREATE: lambda kv: kv[1][2],
    SortTarget.MOD: lambda kv: kv[1][0],
    SortTarget.VALUE: lambda kv: kv[1][4],
}


# Enum members as module globals: an Enum class attribute is slow (see raft/_core.py).
_VERSION, _CREATE, _MOD, _VALUE = (
    CompareTarget.VERSION,
    CompareTarget.CREATE,
    CompareTarget.MOD,
    CompareTarget.VALUE,
)
_EQUAL, _NOT_EQUAL, _GREATER = CompareResult.EQUAL, CompareResult.NOT_EQUAL, CompareResult.GREATER
# What a compare sees of a missing key: zeros (a value compare fails before looking).
_ABSENT: Version = (0, 0, 0, 0, b"", 0)


def _compare_version(c: Compare, v: Version) -> bool:
    """``c`` against the live version ``v`` (or ``_ABSENT``)."""
    target = c.target
    # The targets Kubernetes compares first.
    if target == _MOD:
        ours, theirs = v[0], c.mod_revision
    elif target == _CREATE:
        ours, theirs = v[2], c.create_revision
    elif target == _VALUE:
        ours, theirs = v[4], c.value
    elif target == _VERSION:
        ours, theirs = v[3], c.version
    else:
        ours, theirs = v[5], c.lease
    result = c.result
    if result == _EQUAL:
        return ours == theirs
    if result == _NOT_EQUAL:
        return ours != theirs
    if result == _GREATER:
        return ours > theirs
    return ours < theirs


def _writes(req: TxnRequest, path: Iterator[bool]) -> bool:
    """Whether the branches the path takes contain a put or a delete."""
    found = False
    for op in req.success if next(path) else req.failure:
        kind = type(op)
        if kind is TxnRequest:
            found = _writes(op, path) or found  # consume the nested path either way
        elif kind is not RangeRequest:
            found = True
    return found


def _check_duplicates(req: TxnRequest) -> None:
    """etcd refuses a txn that may write one key twice, branch by branch."""
    if len(req.success) <= 1 and len(req.failure) <= 1:
        nested = req.success and type(req.success[0]) is TxnRequest
        if not nested and not (req.failure and type(req.failure[0]) is TxnRequest):
            return  # one write per branch at most: the usual conditional put
    _writes_of(req.success)
    _writes_of(req.failure)


def _writes_of(ops) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """The keys ``ops`` may put and the ranges they may delete; raises on a key put
    twice or put inside a deleted range. As etcd's checkIntervals: this level's deletes
    are gathered first (order does not matter); a nested txn's two branches may each put
    the same key (only one runs), and count for what follows; this level's puts last."""
    deletes = [(op.key, op.range_end) for op in ops if type(op) is DeleteRangeRequest]
    puts: set[bytes] = set()
    for op in ops:
        if type(op) is not TxnRequest:
            continue
        then_puts, then_deletes = _writes_of(op.success)
        else_puts, else_deletes = _writes_of(op.failure)
        for key in then_puts:
            _add_put(key, puts, deletes)
        for key in else_puts:
            if key in puts and key in then_puts:
                puts.discard(key)  # the then-branch's own put: the branches exclude
            _add_put(key, puts, deletes)
        deletes += then_deletes + else_deletes
    for op in ops:
        if type(op) is PutRequest:
            _add_put(op.key, puts, deletes)
    return puts, deletes


def _add_put(key: bytes, puts: set[bytes], deletes: list[tuple[bytes, bytes]]) -> None:
    if key in puts or any(_in_range(key, span) for span in deletes):
        raise EtcdError(Code.INVALID_ARGUMENT, DUPLICATE_KEY)
    puts.add(key)


def _in_range(key: bytes, span: tuple[bytes, bytes]) -> bool:
    """Whether a delete of ``span`` touches ``key``, as etcd's duplicate check sees it:
    there a range end of ``b"\\0"`` is taken literally (an empty interval), so "every
    key from here" never counts as overlapping a put."""
    start, end = span
    if not end:
        return key == start
    return start <= key < end


_EXECUTE = {
    RangeRequest: MVCCStore.range,
    PutRequest: MVCCStore.put,
    DeleteRangeRequest: MVCCStore.delete_range,
    TxnRequest: MVCCStore.txn,
    CompactionRequest: MVCCStore.compaction,
    LeaseGrantRequest: MVCCStore.lease_grant,
    LeaseRevokeRequest: MVCCStore.lease_revoke,
    LeaseTimeToLiveRequest: MVCCStore.lease_time_to_live,
    LeaseLeasesRequest: MVCCStore.lease_leases,
}
