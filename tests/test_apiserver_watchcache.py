"""The watch cache: one etcd watch per resource, any number of API watches served from
it with Kubernetes' semantics (watch events, synthetic ADDED for "0", 410 Gone for a
version older than the window, objects entering and leaving a filter, bookmarks, slow
watchers ended rather than skipped)."""

from __future__ import annotations

import contextlib
import json
import random

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.actor import ActorSystem
from actorkube.apiserver._errors import ApiError
from actorkube.apiserver._registry import ResourceType
from actorkube.apiserver._storage import ObjectStore
from actorkube.apiserver._watchcache import WatchCache, feed
from actorkube.etcd import start_group

CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)


def cm(name: str, labels: dict | None = None, **data: str) -> dict:
    m = {"name": name, "namespace": "default", "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m, "data": data}


def seen(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["object"]["metadata"].get("name")) for e in events]


async def drain(watcher, count: int) -> list[dict]:
    return [await watcher.receive() for _ in range(count)]


class Cluster:
    def __init__(self, system: ActorSystem, capacity: int = 1000, bookmarks: float = 60.0):
        self.group = start_group(system, 3)
        self.store = ObjectStore(
            self.group.client(timeout=30), clock=lambda: 1.79e9, rng=random.Random(2)
        )
        self.cache = WatchCache(CONFIGMAPS, capacity=capacity)
        self.bookmarks = bookmarks

    async def start(self, nursery: trio.Nursery) -> None:
        etcd = self.group.client(name="cache", timeout=30)
        await nursery.start(
            lambda task_status: feed(
                self.cache, etcd, bookmark_interval=self.bookmarks, task_status=task_status
            )
        )

    async def settle(self) -> None:
        await trio.sleep(1)  # virtual: the members apply and the watch delivers


async def test_a_watch_from_0_starts_with_the_state_then_goes_live(autojump_clock):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system)
        await c.store.create(CONFIGMAPS, cm("a"))
        await c.store.create(CONFIGMAPS, cm("b"))
        await c.start(nursery)
        w = c.cache.watch("0", lambda o: True)
        assert seen(await drain(w, 2)) == [("ADDED", "a"), ("ADDED", "b")]
        await c.store.update(CONFIGMAPS, "default", "a", lambda o: {**o, "data": {"k": "1"}})
        await c.store.delete(CONFIGMAPS, "default", "b")
        await c.store.create(CONFIGMAPS, cm("c"))
        live = await drain(w, 3)
        assert seen(live) == [("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c")]
        revs = [int(e["object"]["metadata"]["resourceVersion"]) for e in live]
        assert revs == sorted(revs) and len(set(revs)) == 3
        nursery.cancel_scope.cancel()


async def test_a_watch_from_a_version_gets_exactly_what_came_after(autojump_clock):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system, capacity=3)
        await c.start(nursery)
        made = [await c.store.create(CONFIGMAPS, cm(f"o{i}")) for i in range(5)]
        await c.settle()
        rv = made[2]["metadata"]["resourceVersion"]
        w = c.cache.watch(rv, lambda o: True)
        assert seen(await drain(w, 2)) == [("ADDED", "o3"), ("ADDED", "o4")]
        # The window holds 3 events: o1's version is too old to continue from.
        with pytest.raises(ApiError) as old:
            c.cache.watch(made[0]["metadata"]["resourceVersion"], lambda o: True)
        assert old.value.code == 410
        assert old.value.status["message"].startswith("too old resource version: ")
        with pytest.raises(ApiError) as bad:
            c.cache.watch("yesterday", lambda o: True)
        assert bad.value.code == 400
        nursery.cancel_scope.cancel()


async def test_objects_entering_and_leaving_a_selector_are_added_and_deleted(autojump_clock):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system)
        await c.start(nursery)

        def web(o: dict) -> bool:
            return o["metadata"].get("labels", {}).get("app") == "web"

        w = c.cache.watch("0", web)
        await c.store.create(CONFIGMAPS, cm("x"))  # not web: unseen

        def label(value: str):
            def change(o: dict) -> dict:
                return {**o, "metadata": {**o["metadata"], "labels": {"app": value}}}

            return change

        await c.store.update(CONFIGMAPS, "default", "x", label("web"))
        await c.store.update(CONFIGMAPS, "default", "x", lambda o: {**o, "data": {"k": "v"}})
        await c.store.update(CONFIGMAPS, "default", "x", label("db"))
        events = await drain(w, 3)
        assert seen(events) == [("ADDED", "x"), ("MODIFIED", "x"), ("DELETED", "x")]
        nursery.cancel_scope.cancel()


async def test_a_slow_watcher_is_ended_not_skipped(autojump_clock):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system)
        await c.start(nursery)
        w = c.cache.watch("0", lambda o: True, buffer=2)
        for i in range(4):
            await c.store.create(CONFIGMAPS, cm(f"o{i}"))
        await c.settle()
        assert w.ended == "the watcher did not keep up"
        got = []
        with pytest.raises(trio.EndOfChannel):
            while True:
                got.append(await w.receive())
        # What it did get is a prefix, so it can watch again from the last version.
        assert seen(got) == [("ADDED", "o0"), ("ADDED", "o1")]
        again = c.cache.watch(got[-1]["object"]["metadata"]["resourceVersion"], lambda o: True)
        assert seen(await drain(again, 2)) == [("ADDED", "o2"), ("ADDED", "o3")]
        nursery.cancel_scope.cancel()


async def test_bookmarks_say_how_far_a_quiet_watch_is(autojump_clock):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system, bookmarks=5)
        await c.start(nursery)
        quiet = c.cache.watch("0", lambda o: o["metadata"]["name"] == "nothing", bookmarks=True)
        plain = c.cache.watch("0", lambda o: o["metadata"]["name"] == "nothing")
        made = await c.store.create(CONFIGMAPS, cm("other"))
        event = await quiet.receive()
        assert event["type"] == "BOOKMARK"
        assert event["object"]["kind"] == "ConfigMap"
        rv = int(event["object"]["metadata"]["resourceVersion"])
        assert rv >= int(made["metadata"]["resourceVersion"])
        with trio.move_on_after(20):
            await plain.receive()
            raise AssertionError("a watch that did not ask for bookmarks got one")
        nursery.cancel_scope.cancel()


def test_each_watcher_gets_its_bookmarks_an_interval_after_its_own_start():
    # Told all at once, the thousands of kubelets' watches made a burst of work every
    # interval; each watcher's turn now comes from its own start, as in Kubernetes.
    cache = WatchCache(CONFIGMAPS)
    cache.replace({}, 10)
    early = cache.watch("0", lambda o: True, bookmarks=True)
    cache.bookmarks_due(1, 3)  # early's first turn: tick 4
    late = cache.watch("0", lambda o: True, bookmarks=True)
    plain = cache.watch("0", lambda o: True)
    cache.progress(11)
    told: dict = {}

    def look(tick: int) -> None:
        cache.bookmarks_due(tick, 3)
        for name, w in (("early", early), ("late", late), ("plain", plain)):
            with contextlib.suppress(trio.WouldBlock):
                event = w.receive_channel.receive_nowait()
                told[name] = (tick, event["type"], event["object"]["metadata"]["resourceVersion"])

    for tick in (2, 3):
        look(tick)
    assert told == {}
    look(4)
    assert told == {"early": (4, "BOOKMARK", "11")}
    look(5)  # late's first turn: the tick after it started, plus the interval
    assert told["late"] == (5, "BOOKMARK", "11")
    cache.progress(12)
    for tick in (6, 7):
        look(tick)
    assert told["early"] == (7, "BOOKMARK", "12") and told["late"][0] == 5
    look(8)
    assert told["late"] == (8, "BOOKMARK", "12")
    assert "plain" not in told


async def test_a_consistent_read_waits_for_the_cache_to_reach_etcds_revision(autojump_clock):
    # Kubernetes 1.31's consistent reads from the cache: the cache serves a list at ""
    # only once it holds every change up to a revision read from etcd just before.
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system)
        await c.start(nursery)
        made = await c.store.create(CONFIGMAPS, cm("a"))
        current = await c.store.current_revision(CONFIGMAPS)
        assert current == int(made["metadata"]["resourceVersion"])
        assert await c.cache.wait_fresh(current)
        assert [o["metadata"]["name"] for o in c.cache.snapshot()] == ["a"]
        # Nothing changes past etcd's revision: the cache waits, asks etcd for progress
        # reports meanwhile, and gives up after the timeout (the caller reads etcd).
        asked = []
        real = c.cache.request_progress
        c.cache.request_progress = lambda: (asked.append(1), real())
        started = trio.current_time()
        assert not await c.cache.wait_fresh(current + 5, timeout=1.0)
        assert trio.current_time() - started == pytest.approx(1.0)
        assert len(asked) >= 10
        nursery.cancel_scope.cancel()


async def test_a_progress_report_lets_a_consistent_read_through_without_a_change():
    cache = WatchCache(CONFIGMAPS)
    cache.replace({}, 10)
    reported = []
    cache.request_progress = lambda: reported.append(cache.progress(12))
    assert await cache.wait_fresh(12)  # etcd says nothing happened up to 12
    assert reported and cache.revision == 12
    assert await cache.wait_fresh(11)  # already there: no question asked
    assert len(reported) == 1


async def test_a_namespace_list_from_the_cache_reads_only_that_namespace():
    cache = WatchCache(CONFIGMAPS)
    objects = {}
    for ns in ("a", "b", "c"):
        for name in ("x", "y"):
            obj = cm(name)
            obj["metadata"].update(namespace=ns, resourceVersion="5")
            objects[CONFIGMAPS.key(ns, name)] = obj
    cache.replace(objects, 5)
    looked_at = []

    def keep(obj: dict) -> bool:
        looked_at.append(obj["metadata"]["namespace"])
        return obj["metadata"]["name"] == "y"

    got = cache.snapshot(keep, CONFIGMAPS.prefix("b"))
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in got] == [("b", "y")]
    assert looked_at == ["b", "b"]
    assert len(cache.snapshot()) == 6


async def test_a_list_from_the_cache_is_each_objects_json_as_of_its_latest_version(
    autojump_clock,
):
    # The cache keeps each object's JSON once made; a change must drop it.
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        c = Cluster(system)
        await c.start(nursery)
        await c.store.create(CONFIGMAPS, cm("a", v="1"))
        await c.store.create(CONFIGMAPS, cm("b", v="1"))
        await c.settle()
        first = [json.loads(t) for t in c.cache.snapshot_json()]
        assert first == c.cache.snapshot()
        await c.store.update(CONFIGMAPS, "default", "a", lambda o: {**o, "data": {"v": "2"}})
        await c.store.delete(CONFIGMAPS, "default", "b")
        await c.settle()
        again = [json.loads(t) for t in c.cache.snapshot_json()]
        assert again == c.cache.snapshot()
        assert [o["data"]["v"] for o in again] == ["2"]
        assert c.cache.snapshot_json(lambda o: False) == []
        nursery.cancel_scope.cancel()


def test_indexed_watchers_see_exactly_what_a_filtered_watcher_sees():
    """Pods' watchers that ask for one spec.nodeName are offered only that node's
    events (Kubernetes' indexed triggers), and see the same events as an unindexed
    watcher with the same filter, including pods moving onto and off the node."""
    from actorkube.apiserver._builtin import builtin_registry

    pods = builtin_registry().resource("", "pods")
    cache = WatchCache(pods)
    cache.replace({}, 1)

    def on(node: str):
        return lambda o: o["spec"].get("nodeName", "") == node

    indexed = cache.watch("", on("n1"), trigger="n1")
    plain = cache.watch("", on("n1"))
    other = cache.watch("", on("n2"), trigger="n2")
    rng = random.Random(7)
    objects: dict[str, dict] = {}
    for rv in range(2, 300):
        name = f"p{rng.randrange(20)}"
        old = objects.get(name)
        if old is not None and rng.random() < 0.2:
            gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(rv)}}
            cache._push(rv, {"type": "DELETED", "object": gone}, old)
            del objects[name]
            continue
        new = {"metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)},
               "spec": {"nodeName": rng.choice(["", "n1", "n2", "n3"])}}  # fmt: skip
        cache._push(rv, {"type": "MODIFIED" if old else "ADDED", "object": new}, old)
        objects[name] = new

    def events(w):
        out = []
        while True:
            try:
                e = w.receive_channel.receive_nowait()
            except trio.WouldBlock:
                return out
            out.append((e["type"], e["object"]["metadata"]["resourceVersion"]))

    mine = events(indexed)
    assert mine == events(plain) and mine
    assert all(e not in mine for e in events(other))
    assert cache._indexed.keys() == {"n1", "n2"}
    cache.stop(indexed)
    assert cache._indexed.keys() == {"n2"} and indexed not in cache.watchers


@pytest.mark.parametrize("obj", [
    {"metadata": {"name": "a", "namespace": "ns"}, "spec": {"nodeName": "n1"}},
    {"metadata": {"name": "a", "namespace": "ns"}, "spec": {}},
    {"metadata": {"name": "a"}, "spec": None},
    {"metadata": None},
    {"spec": {"nodeName": 5}},
    {},
])  # fmt: skip
def test_trigger_values_are_the_field_selectors_values(obj):
    """Each cache's trigger reads its field as a field selector sees it (what indexed
    watchers are offered must be what their filter keeps)."""
    from actorkube.apiserver._builtin import builtin_registry
    from actorkube.apiserver._watchcache import _TRIGGER_VALUES, TRIGGERS

    registry = builtin_registry()
    assert set(_TRIGGER_VALUES) == set(TRIGGERS)
    for (group, plural), field in TRIGGERS.items():
        rt = registry.resource(group, plural)
        assert _TRIGGER_VALUES[group, plural](obj) == rt.field_labels(obj).get(field, "")



@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 400), st.floats(0, 40)), min_size=1, max_size=12))
def test_the_window_sizes_itself_by_the_rule_at_every_event(bursts):
    """The cache skips rereading the window's newest quarter while it cannot be stale:
    the capacity after every event must still be the rule's, applied to the event
    times in full (bursts of events at a rate, then a gap)."""
    from collections import deque

    from actorkube.apiserver import _watchcache as wc
    from actorkube.apiserver._storage import encode
    from actorkube.etcd import Event, EventType, KeyValue

    cache = WatchCache(CONFIGMAPS)
    cache.replace({}, 1)
    value = encode(cm("c"))
    times: deque[float] = deque()
    capacity, rev, now = wc.LOWER_CAPACITY, 1, 0.0
    for count, gap in bursts:
        now += gap
        for i in range(count):
            at = now + i * gap / count
            if len(times) >= capacity:  # the rule, reading the window as it stands
                if at - times[0] < wc.FRESH:
                    capacity = min(capacity * 2, wc.UPPER_CAPACITY)
                elif at - list(times)[-(capacity // 4) or -1] > wc.FRESH:
                    capacity = max(capacity // 2, wc.LOWER_CAPACITY)
            times.append(at)
            while len(times) > capacity:
                times.popleft()
            rev += 1
            kv = KeyValue(CONFIGMAPS.key("default", "c"), 2, rev, 1, value)
            cache.apply([Event(EventType.PUT, kv)], rev, at)
            assert cache.capacity == capacity, (rev, at)
        now += gap


def test_the_window_grows_to_hold_the_last_75_seconds_and_shrinks_when_quiet():
    """Kubernetes' sizing: a full window whose oldest event is under 75 s old doubles
    (up to 102,400 events); one whose newest quarter is older halves (down to 100). A
    watch from a version that the busy traffic of the last minute would have pushed
    out of a fixed window is still served."""
    from actorkube.apiserver import _watchcache as wc
    from actorkube.apiserver._storage import encode
    from actorkube.etcd import Event, EventType, KeyValue

    cache = WatchCache(CONFIGMAPS)
    cache.replace({}, 1)
    rev = 1

    def write(count: int, now: float) -> None:
        nonlocal rev
        for _ in range(count):
            rev += 1
            kv = KeyValue(CONFIGMAPS.key("default", f"c{rev % 50}"), 2, rev, 1,
                          encode(cm(f"c{rev % 50}")))  # fmt: skip
            cache.apply([Event(EventType.PUT, kv)], rev, now)

    assert cache.capacity == wc.LOWER_CAPACITY
    # 100 events a second for a minute: the window doubles until it holds them all.
    for second in range(60):
        write(100, float(second))
    assert cache.capacity == 6400 and len(cache.window) == 6000
    early = cache.watch("3", lambda o: True)  # a version from the first second
    assert early.receive_channel.statistics().current_buffer_used == 6001 - 3
    # The same rate for 2 minutes more: the window stops growing once it holds 75 s.
    for second in range(60, 180):
        write(100, float(second))
    assert cache.capacity == 12800 and len(cache.window) == 12800
    # Then quiet, a write a second: once its newest quarter is older than 75 s, a
    # full window halves, and again, down to where the traffic needs.
    for second in range(180, 400):
        write(1, float(second))
    assert cache.capacity < 12800
    with pytest.raises(ApiError) as gone:
        cache.watch("3", lambda o: True)
    assert gone.value.code == 410
    # A fixed capacity stays as it is.
    fixed = WatchCache(CONFIGMAPS, capacity=100)
    fixed.replace({}, 1)
    for r in range(2, 1000):
        kv = KeyValue(CONFIGMAPS.key("default", "c"), 2, r, 1, encode(cm("c")))
        fixed.apply([Event(EventType.PUT, kv)], r, 0.0)
    assert fixed.capacity == 100 and len(fixed.window) == 100
