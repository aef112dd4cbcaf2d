"""The MVCC store on its own: the watch history, leases and compaction (the answers to
requests are compared with a real etcd in test_etcd_differential.py)."""

from __future__ import annotations

import gc

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.etcd import (
    CompactionRequest,
    DeleteRangeRequest,
    EtcdError,
    EventType,
    Failure,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    MVCCStore,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from actorkube.etcd._mvcc import run_steps


def test_every_change_is_an_event_in_revision_order() -> None:
    store = MVCCStore()
    store.put(PutRequest(b"a", b"1"))  # revision 2
    store.txn(TxnRequest(success=(PutRequest(b"b", b"2"), PutRequest(b"c", b"3"))))  # 3
    store.delete_range(DeleteRangeRequest(b"a", b"c"))  # 4: deletes a and b
    events = store.events_since(0)
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (EventType.PUT, b"a", 2),
        (EventType.PUT, b"b", 3),
        (EventType.PUT, b"c", 3),
        (EventType.DELETE, b"a", 4),
        (EventType.DELETE, b"b", 4),
    ]
    # A deletion's event names the key and its revision; the previous value rides along.
    delete = events[3]
    assert delete.kv.value == b"" and delete.kv.version == 0
    assert delete.prev_kv.value == b"1" and delete.prev_kv.mod_revision == 2
    assert [e.kv.key for e in store.events_since(3)] == [b"b", b"c", b"a", b"b"]


def test_a_limited_count_reports_no_more_as_etcd_does() -> None:
    # Found by the differential test: etcd counts without fetching, so count_only never
    # says `more`, while the same range with keys fetched does.
    store = MVCCStore()
    store.put(PutRequest(b"a", b""))
    store.put(PutRequest(b"ab", b""))
    counted = store.range(RangeRequest(b"a", b"b", limit=1, count_only=True))
    assert (counted.kvs, counted.more, counted.count) == ((), False, 2)
    fetched = store.range(RangeRequest(b"a", b"b", limit=1, keys_only=True))
    assert ([kv.key for kv in fetched.kvs], fetched.more, fetched.count) == ([b"a"], True, 2)


def test_compaction_keeps_the_latest_versions_and_cuts_the_history() -> None:
    store = MVCCStore()
    for value in (b"1", b"2", b"3"):
        store.put(PutRequest(b"k", value))  # revisions 2, 3, 4
    store.put(PutRequest(b"gone", b"x"))  # 5
    store.delete_range(DeleteRangeRequest(b"gone"))  # 6
    store.compact(4)
    assert store.range(RangeRequest(b"k", revision=4)).kvs[0].value == b"3"
    with pytest.raises(EtcdError, match="compacted"):
        store.range(RangeRequest(b"k", revision=3))
    with pytest.raises(EtcdError, match="compacted"):
        store.events_since(3)
    assert [e.kv.mod_revision for e in store.events_since(4)] == [4, 5, 6]
    store.compact(6)
    assert store.range(RangeRequest(b"\0", b"\0")).count == 1  # the deleted key is gone
    assert store.get(b"gone", 5) is None  # compacted away entirely
    with pytest.raises(EtcdError, match="future"):
        store.compact(7)


def test_compaction_at_a_revision_that_changed_a_key_twice_keeps_its_events() -> None:
    # A txn may put a key and delete it (a range up to b"\0" does not count as a
    # duplicate): compaction at that revision drops the put's version but not its event;
    # every event of the key at that revision loses its prev_kv.
    store = MVCCStore()
    store.put(PutRequest(b"k", b"1"))  # 2
    store.txn(TxnRequest(success=(PutRequest(b"k", b"2"), DeleteRangeRequest(b"k", b"\0"))))  # 3
    store.put(PutRequest(b"k", b"4"))  # 4
    before = store.events_since(3)
    assert [e.prev_kv.value for e in before[:2]] == [b"1", b"2"]
    store.compact(3)
    assert store.events_since(3) == [
        attrs.evolve(before[0], prev_kv=None),
        attrs.evolve(before[1], prev_kv=None),
        before[2],
    ]
    store.compact(4)
    assert store.events_since(4) == [attrs.evolve(before[2], prev_kv=None)]


def test_the_store_keeps_no_object_the_cyclic_collector_looks_into() -> None:
    # Versions and the watch history are tuples and lists of ints and bytes: after one
    # collection, nothing per write is tracked (the lists themselves aside).
    store = MVCCStore()
    for i in range(20):
        store.put(PutRequest(b"k%d" % (i % 5), b"v"))
    store.delete_range(DeleteRangeRequest(b"k0"))
    gc.collect()
    for versions in store._versions.values():
        assert not any(gc.is_tracked(v) for v in versions)
    assert store.events_since(0)[-1].type is EventType.DELETE


def test_revoking_a_lease_deletes_its_keys_in_one_revision() -> None:
    store = MVCCStore()
    lease = store.lease_grant(LeaseGrantRequest(60)).id
    store.put(PutRequest(b"a", lease=lease))
    store.put(PutRequest(b"b", lease=lease))
    store.put(PutRequest(b"b", b"detached"))  # no longer on the lease
    store.lease_revoke(LeaseRevokeRequest(lease))  # revision 5, for every key it held
    assert store.revision == 5
    assert [(e.type, e.kv.key) for e in store.events_since(5)] == [(EventType.DELETE, b"a")]
    assert store.get(b"b").value == b"detached"
    assert isinstance(store.execute(LeaseRevokeRequest(lease)), Failure)


def test_a_refused_request_changes_nothing() -> None:
    store = MVCCStore()
    store.put(PutRequest(b"a", b"1"))
    before = (store.revision, store.events_since(0))
    bad = TxnRequest(success=(PutRequest(b"b"), RangeRequest(b"a", revision=99)))
    assert store.execute(bad).error.endswith("future revision")
    assert store.execute(PutRequest(b"b", lease=42)).code == 5
    assert (store.revision, store.events_since(0)) == before
    assert store.get(b"b") is None


def test_unknown_requests_are_refused_clearly() -> None:
    failure = MVCCStore().execute(b"not a request")
    assert failure.code == 3 and "unknown request" in failure.error


KEYS = st.sampled_from([b"a", b"b", b"c"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), KEYS, st.binary(max_size=2), st.booleans()),
        st.tuples(st.just("delete"), KEYS, st.sampled_from([b"", b"c"])),
        st.tuples(st.just("compact"), st.integers(0, 30)),
        st.tuples(st.just("revoke")),
    ),
    max_size=40,
)


@given(OPS)
def test_a_store_loaded_from_its_snapshot_is_the_same_store(ops) -> None:
    # Same answers, same watch history (prev_kv included), same leases and their keys.
    store = MVCCStore()
    lease = store.lease_grant(LeaseGrantRequest(60)).id
    for op in ops:
        if op[0] == "put":
            store.execute(PutRequest(op[1], op[2], lease=lease if op[3] else 0))
        elif op[0] == "delete":
            store.execute(DeleteRangeRequest(op[1], op[2]))
        elif op[0] == "compact":
            store.execute(CompactionRequest(min(op[1], store.revision)))
        else:
            store.execute(LeaseRevokeRequest(lease))
            lease = store.lease_grant(LeaseGrantRequest(60)).id
        loaded = MVCCStore.load(store.dump())
        assert loaded.dump() == store.dump()
        since = store.compact_revision
        assert loaded.events_since(since) == store.events_since(since)
        assert {i: x.keys for i, x in loaded.leases.items()} == {
            i: x.keys for i, x in store.leases.items()
        }
        everything = RangeRequest(b"\0", b"\0")
        assert loaded.range(everything) == store.range(everything)


RANGES = st.builds(
    RangeRequest,
    key=st.sampled_from([b"\0", b"a", b"b", b"c", b"d"]),
    range_end=st.sampled_from([b"", b"\0", b"b", b"c", b"d", b"a"]),
    limit=st.integers(0, 3),
    count_only=st.booleans(),
    keys_only=st.booleans(),
)


@given(OPS, st.lists(RANGES, min_size=1, max_size=5))
def test_ranges_at_the_current_revision_answer_as_a_scan_of_every_key(ops, ranges) -> None:
    # A range now is served from the live keys; min_mod_revision=1 excludes nothing but
    # takes the path that looks at every key, as a range at an old revision does.
    store = MVCCStore()
    for op in ops:
        _apply(store, op)
        for req in ranges:
            assert store.range(req) == store.range(attrs.evolve(req, min_mod_revision=1))


@given(OPS, OPS)
def test_a_stepped_dump_is_the_state_when_it_began(before, after) -> None:
    # Writes and compactions between the steps do not leak into the snapshot.
    store = MVCCStore()
    for op in before:
        _apply(store, op)
    expected = store.dump()
    steps = store.dump_steps(versions_per_step=1)
    parts = None
    for op in after:
        _apply(store, op)
        try:
            next(steps)
        except StopIteration as done:
            parts = done.value
            break
    if parts is None:
        parts = run_steps(steps)
    assert b"".join(parts) == expected


def _apply(store: MVCCStore, op: tuple) -> None:
    if op[0] == "put":
        store.execute(PutRequest(op[1], op[2]))
    elif op[0] == "delete":
        store.execute(DeleteRangeRequest(op[1], op[2]))
    elif op[0] == "compact":
        store.execute(CompactionRequest(min(op[1], store.revision)))


def test_compaction_forgets_the_prev_kv_of_a_second_change_after_a_deletion() -> None:
    # Compaction at 4 keeps nothing of k at or below 4 (its last version there is a
    # deletion below 4), so the put at 5 is k's first version; the delete in the same
    # txn has that put before it, yet loses its prev_kv, as this store always did.
    store = MVCCStore()
    store.put(PutRequest(b"k", b"1"))  # 2
    store.delete_range(DeleteRangeRequest(b"k"))  # 3
    store.put(PutRequest(b"x", b"1"))  # 4
    store.txn(TxnRequest(success=(PutRequest(b"k", b"2"), DeleteRangeRequest(b"k", b"\0"))))  # 5
    before = store.events_since(5)
    assert [(e.type, e.kv.key) for e in before] == [
        (EventType.PUT, b"k"),
        (EventType.DELETE, b"k"),
        (EventType.DELETE, b"x"),
    ]
    assert before[1].prev_kv is not None and before[1].prev_kv.value == b"2"
    store.compact(4)
    after = store.events_since(5)
    assert after == [before[0], attrs.evolve(before[1], prev_kv=None), before[2]]
    at = store.history_index(5)
    assert store.event(at + 1) == after[1]  # one event on its own, as in the replay
    assert store.events([at, at + 1]) == after[:2]
    # A later compaction below 5 keeps it forgotten.
    store.compact(5)
    assert store.events_since(5)[1].prev_kv is None


def test_watches_of_one_delivery_with_and_without_prev_kv_each_get_theirs() -> None:
    # Events made for one watch are shared with the others of the delivery, but only
    # with those that asked for prev_kv alike; in either order.
    from actorkube.etcd._node import Watch, _events_due, _Watching
    from actorkube.etcd._watchindex import WatchIndex

    store = MVCCStore()
    store.put(PutRequest(b"a", b"1"))  # 2
    store.put(PutRequest(b"a", b"2"))  # 3
    store.delete_range(DeleteRangeRequest(b"a"))  # 4
    start = store.history_index(3)
    plain = _Watching(Watch(None, 1, b"a"), 3)
    with_prev = _Watching(Watch(None, 2, b"a", b"b", prev_kv=True), 3)
    for order in ((plain, with_prev), (with_prev, plain)):
        made: tuple[dict, dict] = ({}, {})
        got = {w.id: e for w, e in _events_due(WatchIndex(order), list(order), store, start, made)}
        assert [e.prev_kv for e in got[1]] == [None, None]
        assert [e.prev_kv.value for e in got[2]] == [b"1", b"2"]
        assert [(e.type, e.kv) for e in got[1]] == [(e.type, e.kv) for e in got[2]]
