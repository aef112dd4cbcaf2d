"""Events have no watch cache (as kube-apiserver's default watch cache sizes): they are
listed and watched from etcd, one etcd watch per API watch, with the same contracts as
a cached resource's watch (ADDED / MODIFIED / DELETED, selectors entered and left,
streaming lists, 410 Gone for a version etcd compacted away)."""

from __future__ import annotations

import pytest
import trio

from actorkube.actor import Actor, ActorSystem, handler
from actorkube.apiserver import ApiError, WatchEvent, parse_token_file, start_apiserver
from actorkube.apiserver._server import _WatchPump
from actorkube.apiserver._watchcache import Watcher
from actorkube.client import ApiClient
from actorkube.etcd import start_group

TOKENS = "admin-token,admin,1,system:masters\n"


async def start(system: ActorSystem) -> tuple:
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), seed=5)  # fmt: skip
    await api.ready()
    return api, group, ApiClient(system, api.ref, token="admin-token")


def event(name: str, about: str, reason: str = "Scheduled") -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": about, "namespace": "default"},
            "reason": reason, "message": f"{reason} {about}", "type": "Normal"}  # fmt: skip


async def _seen(stream, count: int) -> list[tuple]:
    got: list[tuple] = []
    with trio.fail_after(30):
        async for e in stream:
            m = e["object"]["metadata"]
            got.append((e["type"], m.get("name", ""), m["resourceVersion"],
                        e["object"].get("reason")))  # fmt: skip
            if len(got) == count:
                break
    return got


def _watches(group) -> int:
    """The etcd watches the members hold, all together."""
    return sum(len(m._cell.instance.watches) for m in group.members.values())


async def test_events_are_not_cached_and_are_listed_and_watched_from_etcd(autojump_clock):
    async with ActorSystem() as system:
        api, group, client = await start(system)
        assert ("", "events") not in api.caches and ("", "pods") in api.caches
        first = await client.create("events", event("e1", "a"), namespace="default")
        listed = await client.list("events", namespace="default")
        assert [o["metadata"]["name"] for o in listed["items"]] == ["e1"]
        before = _watches(group)
        async with client.watch("events", namespace="default") as stream:
            (initial,) = await _seen(stream, 1)  # the state first, as ADDED
            assert initial == ("ADDED", "e1", first["metadata"]["resourceVersion"], "Scheduled")
            await client.create("events", event("e2", "b"), namespace="default")
            await client.patch("events", "e1", {"reason": "Pulled"}, namespace="default")
            await client.delete("events", "e2", namespace="default")
            changes = await _seen(stream, 3)
            assert _watches(group) == before + 1  # its own, on one member
        assert [c[:2] for c in changes] == [("ADDED", "e2"), ("MODIFIED", "e1"), ("DELETED", "e2")]
        assert changes[1][3] == "Pulled" and changes[2][3] == "Scheduled"  # the deleted one
        versions = [int(c[2]) for c in changes]
        assert versions == sorted(versions) and versions[0] > int(initial[2])
        with trio.fail_after(30):  # closing the API watch closes its etcd watch
            while _watches(group) != before:
                await trio.sleep(0.1)


async def test_a_filtered_event_watch_sees_objects_enter_and_leave_its_selector(autojump_clock):
    async with ActorSystem() as system:
        _, _, client = await start(system)
        await client.create("events", event("e1", "a"), namespace="default")
        async with client.watch("events", namespace="default",
                                field_selector="reason=Failed") as stream:  # fmt: skip
            await client.patch("events", "e1", {"reason": "Failed"}, namespace="default")
            await client.patch("events", "e1", {"message": "again"}, namespace="default")
            await client.patch("events", "e1", {"reason": "Scheduled"}, namespace="default")
            await client.create("events", event("e2", "b"), namespace="default")  # not seen
            await client.create("events", event("e3", "c", "Failed"), namespace="default")
            seen = await _seen(stream, 4)
        # Entered (ADDED), changed (MODIFIED), left (DELETED, as it was, at the
        # version that took it out); e2 never matched.
        assert [s[:2] for s in seen] == [("ADDED", "e1"), ("MODIFIED", "e1"), ("DELETED", "e1"),
                                         ("ADDED", "e3")]  # fmt: skip
        assert seen[2][3] == "Failed" and int(seen[2][2]) > int(seen[1][2])


async def test_an_event_watch_from_a_version_and_from_one_etcd_compacted(autojump_clock):
    async with ActorSystem() as system:
        _, group, client = await start(system)
        first = await client.create("events", event("e1", "a"), namespace="default")
        since = first["metadata"]["resourceVersion"]
        await client.create("events", event("e2", "b"), namespace="default")
        async with client.watch("events", namespace="default", resource_version=since) as stream:
            (after,) = await _seen(stream, 1)  # only what changed after it
        assert after[:2] == ("ADDED", "e2")
        for i in range(3):
            await client.create("events", event(f"x{i}", "c"), namespace="default")
        latest = await client.list("events", namespace="default")
        await group.client().compact(int(latest["metadata"]["resourceVersion"]))
        with pytest.raises(ApiError) as gone:
            async with client.watch("events", namespace="default", resource_version=since):
                pass
        assert gone.value.code == 410
        # The latest version is still watchable: nothing is lost after it.
        now = latest["metadata"]["resourceVersion"]
        async with client.watch("events", namespace="default", resource_version=now) as stream:
            await client.create("events", event("e9", "d"), namespace="default")
            assert [s[:2] for s in await _seen(stream, 1)] == [("ADDED", "e9")]


async def test_a_streaming_list_of_events_ends_its_state_with_a_bookmark(autojump_clock):
    async with ActorSystem() as system:
        _, _, client = await start(system)
        await client.create("events", event("e2", "b"), namespace="default")
        await client.create("events", event("e1", "a"), namespace="default")
        async with client.watch("events", namespace="default",
                                send_initial_events=True) as stream:  # fmt: skip
            initial = await _seen(stream, 3)
            await client.create("events", event("e3", "c"), namespace="default")
            (later,) = await _seen(stream, 1)
        listed = await client.list("events", namespace="default")
        assert [i[:2] for i in initial] == [("ADDED", "e1"), ("ADDED", "e2"), ("BOOKMARK", "")]
        assert int(initial[2][2]) >= max(int(i[2]) for i in initial[:2])
        assert later[:2] == ("ADDED", "e3")
        assert int(listed["metadata"]["resourceVersion"]) >= int(later[2])


async def test_a_pump_ends_its_feed_when_the_watch_ends_while_the_feed_waits(autojump_clock):
    # A feed waiting on etcd (no change to send) must not keep the pump, and so its
    # etcd watch, alive once the watch ended on the pump's side.
    got: list[WatchEvent] = []
    fed = trio.Event()
    left = trio.Event()

    class Target(Actor):
        @handler
        def on_event(self, msg: WatchEvent) -> None:
            got.append(msg)

    class Waiting(Watcher):
        async def run(self) -> None:
            fed.set()
            try:
                await trio.sleep_forever()  # as a feed waits for etcd's next change
            finally:
                left.set()

    watcher = Waiting(lambda o: True, 10, False)
    async with ActorSystem() as system:
        target = system.spawn(Target, name="target")
        pump = system.spawn(lambda: _WatchPump(watcher, target, 1, 5.0), name="pump")
        await fed.wait()
        watcher.end("too slow")
        with trio.fail_after(30):
            await left.wait()
            await system.stop(pump)
        assert [m.reason for m in got] == ["too slow"]
