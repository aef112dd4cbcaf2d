"""The checkers of actorkube.testing, on histories whose answer is known."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from actorkube.etcd import (
    DeleteRangeRequest,
    Event,
    EventType,
    KeyValue,
    MVCCStore,
    PutRequest,
    ResponseHeader,
    WatchResponse,
)
from actorkube.testing import (
    UNKNOWN,
    KVModel,
    Operation,
    check_atomic,
    check_bookmarkable,
    check_linearizable,
    check_ordered,
    check_reliable,
    check_unique,
    linearizable,
)


def op(client, call, ret, inp, out=UNKNOWN):
    return Operation(client, call, ret, inp, out)


def test_overlapping_operations_may_take_effect_in_either_order() -> None:
    history = [
        op(1, 0, 10, ("put", "x", 1), "ok"),
        op(2, 1, 2, ("get", "x"), 1),  # inside the put: may see it
        op(3, 3, 4, ("get", "x"), 1),
    ]
    assert check_linearizable(history).ok


def test_a_stale_read_is_caught_and_shrunk_to_its_cause() -> None:
    history = [
        op(1, 0, 1, ("put", "x", 1), "ok"),
        op(2, 2, 3, ("put", "x", 2), "ok"),
        op(3, 4, 5, ("get", "x"), 1),  # after the second put returned: stale
        op(4, 0, 9, ("get", "y"), None),  # another key: not part of the failure
        op(5, 6, 7, ("put", "x", 3), "ok"),
    ]
    result = check_linearizable(history)
    assert not result.ok
    assert [o.client for o in result.failure] == [1, 2, 3]
    assert "not linearizable" in result.explain()


def test_an_operation_without_an_answer_may_have_happened_or_not() -> None:
    history = [
        op(1, 0, 1, ("put", "x", 1), "ok"),
        op(2, 2, 3, ("cas", "x", 1, 2)),  # timed out: unknown
        op(3, 10, 11, ("get", "x"), 2),  # it happened
        op(4, 12, 13, ("get", "x"), 2),
    ]
    assert check_linearizable(history).ok
    never = [*history[:2], op(3, 10, 11, ("get", "x"), 1)]  # it did not happen
    assert check_linearizable(never).ok
    both = [*history[:2], op(3, 10, 11, ("get", "x"), 2), op(4, 12, 13, ("get", "x"), 1)]
    assert not check_linearizable(both).ok  # it cannot be undone


@given(st.randoms(use_true_random=False), st.integers(1, 4), st.integers(2, 25))
def test_histories_of_a_real_register_are_linearizable(rnd: random.Random, clients, length):
    # Operations take effect at a random instant inside their interval: linearizable by
    # construction. Changing one read's answer to a value never written breaks it.
    model = KVModel()
    state = None
    ops = []
    t = 0.0
    for i in range(length):
        call = t + rnd.random()
        point = call + rnd.random()
        ret = point + rnd.random() * 3
        t = point
        kind = rnd.choice(["put", "get", "cas", "delete"])
        inp = {
            "put": ("put", "k", i),
            "get": ("get", "k"),
            "cas": ("cas", "k", state, i),
            "delete": ("delete", "k"),
        }[kind]
        _ok, after = model.step(state, inp, UNKNOWN)
        out = {"put": "ok", "get": state, "cas": True, "delete": state is not None}[kind]
        state = after
        ops.append(Operation(i % clients, call, ret, inp, out))
    assert linearizable(ops, model)
    reads = [i for i, o in enumerate(ops) if o.input[0] == "get"]
    if reads:
        i = rnd.choice(reads)
        ops[i] = Operation(ops[i].client, ops[i].call, ops[i].ret, ("get", "k"), "never written")
        assert not linearizable(ops, model)


def _responses_from(store: MVCCStore) -> list:
    return [
        WatchResponse(1, ResponseHeader(e.kv.mod_revision), (e,)) for e in store.events_since(0)
    ]


def test_watch_validators_catch_each_broken_guarantee() -> None:
    store = MVCCStore()
    store.put(PutRequest(b"a", b"1"))
    store.put(PutRequest(b"b", b"1"))
    store.delete_range(DeleteRangeRequest(b"a"))
    truth = store.events_since(0)
    good = [WatchResponse(1, ResponseHeader(4), tuple(truth))]
    assert not (
        check_ordered(good) + check_unique(good) + check_atomic(good) + check_bookmarkable(good)
    )
    assert not check_reliable(good, truth, 2)
    swapped = [WatchResponse(1, ResponseHeader(4), (truth[1], truth[0], truth[2]))]
    assert check_ordered(swapped)
    assert check_unique(good + good)
    assert check_reliable([WatchResponse(1, ResponseHeader(4), (truth[0], truth[2]))], truth, 2)
    split = Event(EventType.PUT, KeyValue(b"c", 4, 4, 1))
    twice = [
        WatchResponse(1, ResponseHeader(4), (truth[2],)),
        WatchResponse(1, ResponseHeader(4), (split,)),
    ]
    assert check_atomic(twice)
    late = [WatchResponse(1, ResponseHeader(3)), WatchResponse(1, ResponseHeader(3), (truth[1],))]
    assert check_bookmarkable(late)
