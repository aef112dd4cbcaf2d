"""The store's answers about the past against those it gave when that past was the
present: a range at an old revision (counted, filtered, sorted, limited as versions)
against the whole key space read at that revision's time and put through a plain
model of etcd's range options; the replayed history (``events_since``, and watches
sharing the events of one delivery) against the events read as they happened, with
what compaction takes away (prev_kv of the events at or just after it)."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.etcd import (
    DeleteRangeRequest,
    EtcdError,
    EventType,
    MVCCStore,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from actorkube.etcd._node import Watch, _events_due, _Watching
from actorkube.etcd._types import SortOrder, SortTarget
from actorkube.etcd._watchindex import WatchIndex

KEYS = [b"a", b"b", b"c", b"d"]
ENDS = [b"", b"\0", b"c", b"e"]

keys = st.sampled_from(KEYS)
values = st.sampled_from([b"0", b"1", b"22"])
writes = st.one_of(
    st.builds(lambda k, v: ("put", k, v), keys, values),
    st.builds(lambda k, e: ("delete", k, e), keys, st.sampled_from(ENDS)),
    # A txn that changes one key twice (the range to b"\0" is no duplicate).
    st.builds(lambda k, v: ("put+delete", k, v), keys, values),
    st.builds(lambda k, v, k2: ("put2", k, v, k2), keys, values, keys),
    st.builds(lambda back: ("compact", back), st.integers(0, 6)),
)
ranges = st.builds(
    lambda key, end, back, limit, order, target, keys_only, count_only, min_mod, max_create: (
        RangeRequest(
            key, end, limit=limit, sort_order=order, sort_target=target, keys_only=keys_only,
            count_only=count_only, min_mod_revision=min_mod, max_create_revision=max_create,
        ),
        back,
    ),
    st.sampled_from([*KEYS, b"\0"]), st.sampled_from(ENDS), st.integers(0, 8),
    st.sampled_from([0, 0, 1, 2]), st.sampled_from(list(SortOrder)),
    st.sampled_from(list(SortTarget)), st.booleans(), st.booleans(),
    st.sampled_from([0, 0, 3]), st.sampled_from([0, 0, 5]),
)  # fmt: skip
watches = st.tuples(
    st.sampled_from([*KEYS, b"\0"]), st.sampled_from(ENDS), st.booleans(), st.booleans(),
    st.booleans(), st.integers(0, 8),
)  # fmt: skip


def _apply(store: MVCCStore, op: tuple) -> None:
    kind = op[0]
    if kind == "put":
        store.put(PutRequest(op[1], op[2]))
    elif kind == "delete":
        store.delete_range(DeleteRangeRequest(op[1], op[2]))
    elif kind == "put+delete":
        store.txn(TxnRequest(success=(PutRequest(op[1], op[2]), DeleteRangeRequest(op[1], b"\0"))))
    elif kind == "put2":
        puts = (PutRequest(op[1], op[2]),) + ((PutRequest(op[3], op[2]),) if op[3] != op[1] else ())
        store.txn(TxnRequest(success=puts))
    else:
        revision = store.revision - op[1]
        if store.compact_revision < revision:
            store.compact(revision)


def _in(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\0":
        return start == b"\0" or key >= start
    return start <= key < end


_SORT = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def _expected_range(everything: tuple, req: RangeRequest) -> tuple[tuple, bool, int]:
    """etcd's range options over every key at a revision (as read then): kvs, more,
    count."""
    kvs = [kv for kv in everything if _in(kv.key, req.key, req.range_end)]
    count = len(kvs)
    if req.count_only:
        return (), False, count
    kvs = [
        kv
        for kv in kvs
        if not (req.min_mod_revision and kv.mod_revision < req.min_mod_revision)
        and not (req.max_create_revision and kv.create_revision > req.max_create_revision)
    ]
    if req.sort_order != SortOrder.NONE or req.sort_target != SortTarget.KEY:
        kvs.sort(key=_SORT[req.sort_target], reverse=req.sort_order == SortOrder.DESCEND)
    more = 0 < req.limit < len(kvs)
    if more:
        kvs = kvs[: req.limit]
    if req.keys_only:
        kvs = [attrs.evolve(kv, value=b"") for kv in kvs]
    return tuple(kvs), more, count


SORTED = [
    RangeRequest(b"\0", b"\0", limit=3, sort_order=order, sort_target=target)
    for order in SortOrder
    for target in SortTarget
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(writes, st.lists(ranges, max_size=3), st.lists(watches, max_size=3)),
                min_size=1, max_size=25))  # fmt: skip
def test_the_past_reads_as_it_was_read_when_it_was_the_present(steps) -> None:
    store = MVCCStore()
    at: dict[int, tuple] = {1: ()}  # revision -> every key then, read at the time
    happened: list = []  # every event, as read right after its write
    forgotten_before = 0  # a compaction revision: events up to it lose their prev_kv
    for op, range_reqs, watch_specs in steps:
        revision = store.revision
        _apply(store, op)
        if op[0] == "compact":
            forgotten_before = store.compact_revision
        if store.revision != revision:
            at[store.revision] = store.range(RangeRequest(b"\0", b"\0")).kvs
            happened += store.events_since(store.revision)
        for req, back in range_reqs:
            rev = max(store.revision - back, store.compact_revision, 1)
            resp = store.range(attrs.evolve(req, revision=rev))
            assert (resp.kvs, resp.more, resp.count) == _expected_range(at[rev], req)
            assert resp.header.revision == store.revision
        # Every sort, at every revision still held.
        for rev in range(max(store.compact_revision, 1), store.revision + 1):
            for req in SORTED:
                resp = store.range(attrs.evolve(req, revision=rev))
                assert (resp.kvs, resp.more, resp.count) == _expected_range(at[rev], req)
        # The history from every revision still held, and watches from some of them
        # sharing the events they make.
        compacted = store.compact_revision
        expected = []
        for e in happened:
            if e.kv.mod_revision < compacted:
                continue
            # Compaction takes the prev_kv of the events at its revision, and of the
            # second change of a key in one txn just after a deletion it forgot (see
            # test_etcd_mvcc.py for that one).
            forget = e.kv.mod_revision == forgotten_before or (
                (e.kv.mod_revision, _sub(store, e)) in store._prev_forgotten
            )
            expected.append(attrs.evolve(e, prev_kv=None) if forget else e)
        for rev in range(compacted, store.revision + 2):
            assert store.events_since(rev) == [e for e in expected if e.kv.mod_revision >= rev]
        # Some of the events, each key's not one after the other.
        if expected:
            start = store.history_index(compacted)
            some = list(range(start, start + len(expected)))[len(steps) % 3 :: 2]
            assert store.events(some) == [expected[i - start] for i in some]
        # All of this step's watches in one index, as a member keeps them, delivered
        # by the revision each looks from, sharing the events made.
        made: tuple[dict, dict] = ({}, {})
        wants = {}
        for n, (key, end, prev_kv, no_put, no_delete, back) in enumerate(watch_specs):
            rev = max(store.revision - back, compacted)
            w = _Watching(Watch(None, n, key, end, prev_kv=prev_kv, no_put=no_put,
                                no_delete=no_delete), rev)  # fmt: skip
            wants[w] = tuple(
                e if prev_kv else attrs.evolve(e, prev_kv=None)
                for e in expected
                if e.kv.mod_revision >= rev
                and _in(e.kv.key, key, end)
                and not (no_put if e.type is EventType.PUT else no_delete)
            )
        index = WatchIndex(wants)
        for rev in sorted({w.next_rev for w in wants}):
            due = [w for w in wants if w.next_rev == rev]
            got = _events_due(index, due, store, store.history_index(rev), made)
            assert [w for w, _ in got] == [w for w in due if wants[w]]
            assert dict(got) == {w: wants[w] for w in due if wants[w]}
    try:
        store.events_since(store.compact_revision - 1)
    except EtcdError:
        pass
    else:
        assert store.compact_revision == 0


def _sub(store: MVCCStore, e) -> int:
    """The sub-revision of event ``e`` (still in the history) in its revision."""
    i = store.history_index(e.kv.mod_revision)
    while store._event_keys[i] != e.kv.key:
        i += 1
    # A key changes twice in one revision only as a put then a delete.
    if e.type is EventType.DELETE and store._event_keys[i + 1 : i + 2] == [e.kv.key]:
        i += 1
    return store._event_subs[i]


def _left_by_compaction(versions: list, revision: int) -> list:
    """What compaction at ``revision`` leaves of one key's versions, by etcd's rule: the
    last version at or below it (unless a deletion below it) and every later one."""
    upto = [v for v in versions if v[0] <= revision]
    after = [v for v in versions if v[0] > revision]
    last = upto[-1:]
    if last and last[0][3] == 0 and last[0][0] < revision:  # version 0: a deletion
        last = []
    return last + after


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(writes, st.booleans()), min_size=1, max_size=40))
def test_compaction_leaves_of_every_key_what_reads_after_it_need(steps) -> None:
    """Compaction looks only at the keys changed since the one before (its cost is the
    changes, not the store); what it leaves must be what looking at every key leaves,
    also when the store was loaded from a snapshot in between."""
    store = MVCCStore()
    for op, reload in steps:
        before = {key: list(versions) for key, versions in store._versions.items()}
        compacted = store.compact_revision
        _apply(store, op)
        if store.compact_revision != compacted:
            revision = store.compact_revision
            expected = {key: _left_by_compaction(vs, revision) for key, vs in before.items()}
            assert store._versions == {key: vs for key, vs in expected.items() if vs}
            store._sorted()
            assert list(store._index) == sorted(store._versions)
        if reload:
            store = MVCCStore.load(store.dump())
