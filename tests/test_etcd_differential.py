"""actorkube.etcd's store against a real etcd: the same single-client sequences of put,
range, delete, txn, compact and lease operations give the same revisions, versions,
counts, kvs and errors.

One etcd serves the whole module. Each example works in a key namespace of its own and
starts our store at etcd's revision and compaction, so that every answer, revisions
included, compares as it is.
"""

from __future__ import annotations

import itertools

import pytest
from etcd_real import canonical, real_etcd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actorkube.etcd import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    MVCCStore,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    prefix_end,
)


class Shared:
    """What the examples share: the one etcd, the namespace counter, the compaction."""

    etcd = None
    namespaces = itertools.count(1)
    compacted = 0


@pytest.fixture(scope="module")
def etcd():
    with real_etcd() as server:
        Shared.etcd = server
        yield server


SUFFIXES = [b"a", b"ab", b"b", b"c", b"d\xff"]


class Example:
    """One example's namespace, store and leases, and the strategies over them."""

    def __init__(self, etcd) -> None:
        self.etcd = etcd
        self.number = next(Shared.namespaces)
        self.ns = b"t%06d/" % self.number
        self.store = MVCCStore()
        self.store.revision = self.base = etcd.revision()
        self.store.compact_revision = Shared.compacted
        self.leases: list[int] = []

    def key(self) -> st.SearchStrategy[bytes]:
        return st.sampled_from(SUFFIXES).map(lambda s: self.ns + s)

    def range_end(self, key: bytes) -> st.SearchStrategy[bytes]:
        return st.one_of(
            st.just(b""),
            st.just(prefix_end(key)),
            st.just(prefix_end(self.ns)),
            st.just(b"\0"),  # every key >= key: later namespaces do not exist yet
            st.sampled_from(SUFFIXES).map(lambda s: self.ns + s),
        )

    # Revisions are drawn relative to the example's start: etcd's absolute revision
    # differs from run to run, and Hypothesis must draw the same way when it replays.
    def past_or_next(self) -> st.SearchStrategy[int]:
        base = self.base
        return st.integers(-1, self.store.revision - base + 1).map(lambda o: max(1, base + o))

    def revision(self) -> st.SearchStrategy[int]:
        return st.one_of(st.just(0), self.past_or_next())

    def lease(self) -> st.SearchStrategy[int]:
        return st.sampled_from([0, 0, *self.leases, 9_999_999])

    @st.composite
    def range_request(draw, self) -> RangeRequest:
        key = draw(self.key())
        current = self.store.revision
        filters = st.sampled_from([0, -1, 0]).map(lambda o: o and max(1, current + o))
        return RangeRequest(
            key,
            draw(self.range_end(key)),
            limit=draw(st.integers(0, 3)),
            revision=draw(self.revision()),
            sort_order=draw(st.sampled_from(SortOrder)),
            sort_target=draw(st.sampled_from(SortTarget)),
            serializable=draw(st.booleans()),
            keys_only=draw(st.booleans()),
            count_only=draw(st.booleans()),
            min_mod_revision=draw(filters),
            max_mod_revision=draw(filters),
            min_create_revision=draw(filters),
            max_create_revision=draw(filters),
        )

    @st.composite
    def put_request(draw, self) -> PutRequest:
        ignore_value = draw(st.booleans()) and draw(st.booleans())
        return PutRequest(
            draw(self.key()),
            b"" if ignore_value and draw(st.booleans()) else draw(st.binary(max_size=3)),
            lease=draw(self.lease()),
            prev_kv=draw(st.booleans()),
            ignore_value=ignore_value,
            ignore_lease=draw(st.booleans()) and draw(st.booleans()),
        )

    @st.composite
    def delete_request(draw, self) -> DeleteRangeRequest:
        key = draw(self.key())
        return DeleteRangeRequest(key, draw(self.range_end(key)), draw(st.booleans()))

    @st.composite
    def compare(draw, self) -> Compare:
        key = draw(self.key())
        target = draw(st.sampled_from(CompareTarget))
        base = self.base
        number = draw(st.integers(-1, self.store.revision - base + 1).map(lambda o: base + o))
        number = draw(st.sampled_from([0, 1, 2, number]))
        return Compare(
            key,
            target,
            draw(st.sampled_from(CompareResult)),
            version=number if target is CompareTarget.VERSION else 0,
            create_revision=number if target is CompareTarget.CREATE else 0,
            mod_revision=number if target is CompareTarget.MOD else 0,
            value=draw(st.binary(max_size=2)) if target is CompareTarget.VALUE else b"",
            lease=draw(self.lease()) if target is CompareTarget.LEASE else 0,
            range_end=draw(st.sampled_from([b"", prefix_end(key)])),
        )

    @st.composite
    def txn_request(draw, self, depth: int = 0) -> TxnRequest:
        simple = st.one_of(self.range_request(), self.put_request(), self.delete_request())
        op = simple if depth else st.one_of(simple, self.txn_request(depth=1))
        return TxnRequest(
            tuple(draw(st.lists(self.compare(), max_size=2))),
            tuple(draw(st.lists(op, max_size=3))),
            tuple(draw(st.lists(op, max_size=3))),
        )

    @st.composite
    def lease_request(draw, self):
        kind = draw(st.sampled_from(["grant", "grant", "revoke", "ttl"]))
        if kind == "grant":
            # Explicit IDs, unique to the example; long TTLs: expiry is not compared here.
            new = self.number * 100 + draw(st.integers(1, 4))
            return LeaseGrantRequest(draw(st.sampled_from([100, 300])), new)
        if kind == "revoke":
            return LeaseRevokeRequest(draw(self.lease()))
        return LeaseTimeToLiveRequest(draw(self.lease()), draw(st.booleans()))

    def request(self) -> st.SearchStrategy:
        return st.one_of(
            self.put_request(),
            self.put_request(),
            self.range_request(),
            self.delete_request(),
            self.txn_request(),
            self.lease_request(),
            st.builds(CompactionRequest, self.past_or_next()),
        )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_the_store_answers_as_etcd_does(etcd, data) -> None:
    example = Example(etcd)
    try:
        for step in range(data.draw(st.integers(1, 25), label="steps")):
            req = data.draw(example.request(), label=f"request {step}")
            ours = canonical(example.store.execute(req))
            theirs = etcd.request(req)
            assert ours == theirs, f"{req}\n ours: {ours}\n etcd: {theirs}"
            if type(req) is CompactionRequest and "error" not in ours:
                Shared.compacted = req.revision
            if type(req) is LeaseGrantRequest and "error" not in ours:
                example.leases.append(req.id)
    finally:
        for lease in example.leases:
            etcd.request(LeaseRevokeRequest(lease))


def test_short_lease_ttls_are_raised_to_the_minimum(etcd) -> None:
    store = MVCCStore()
    lease = 990_000_001
    ours = canonical(store.execute(LeaseGrantRequest(1, lease)))
    theirs = etcd.request(LeaseGrantRequest(1, lease))
    etcd.request(LeaseRevokeRequest(lease))
    assert ours["ttl"] == theirs["ttl"] == 2
