"""Events expire: each write attaches the event's etcd key to a lease that ends the
API server's ``event_ttl`` after it (kube-apiserver's --event-ttl), one lease shared by
the writes of a reuse period (its etcd3 lease manager); etcd deletes them then and
their watchers see them go. Other objects have no lease."""

from __future__ import annotations

from functools import partial

import trio
from inproc_api import start_api

from actorkube.actor import ActorSystem
from actorkube.apiserver._leasereuse import LeaseReuse, reuse_seconds
from actorkube.client import ApiClient

TTL = 200  # seconds: reused for 10 s (5%), granted for 210


def event(name: str, about: str) -> dict:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": about, "namespace": "default"},
            "reason": "Scheduled", "message": f"assigned {about}", "type": "Normal"}  # fmt: skip


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}  # fmt: skip


async def start(system: ActorSystem, event_ttl: int = TTL) -> tuple:
    """The server, its etcd client (to read keys' leases) and a client of the server."""
    api = await start_api(system, seed=3, event_ttl=event_ttl)
    return api, api.store.etcd, ApiClient(system, api.ref, token="admin-token")


async def lease_of(etcd, key: bytes) -> int:
    (kv,) = (await etcd.get(key)).kvs
    return kv.lease


def test_the_reuse_rule_is_kubernetes_lease_managers():
    assert reuse_seconds(3600) == 60 and reuse_seconds(600) == 30 and reuse_seconds(10) == 0
    leases = LeaseReuse(max_objects=3)
    assert leases.grant_ttl(3600) == 3660
    assert leases.pick(3600, 0.0) == 0  # nothing granted yet
    leases.granted(7, 3660, at=0.0)
    assert [leases.pick(3600, t) for t in (0.0, 30.0)] == [7, 7]  # handed out 3 times
    assert leases.pick(3600, 31.0) == 0  # the most a lease attaches
    leases.granted(8, 3660, at=100.0)
    assert leases.pick(3600, 159.0) == 8
    assert leases.pick(3600, 160.0) == 0  # would expire too close to the object's end
    assert leases.pick(7200, 101.0) == 0  # would expire before an object with a longer TTL
    leases.forget(8)
    assert leases.pick(3600, 101.0) == 0 and leases.grants == 2


async def test_events_expire_after_the_ttl_and_watchers_see_them_go(autojump_clock):
    async with ActorSystem() as system:
        api, etcd, client = await start(system)
        await client.create("events", event("e1", "a"), namespace="default")
        await client.create("events", event("e2", "b"), namespace="default")
        await client.create("pods", pod("p"), namespace="default")
        first = await lease_of(etcd, b"/registry/events/default/e1")
        assert first and await lease_of(etcd, b"/registry/events/default/e2") == first
        assert await lease_of(etcd, b"/registry/pods/default/p") == 0
        assert (await etcd.lease_time_to_live(first)).granted_ttl == TTL + 10
        await trio.sleep(11)  # past the reuse period: the next write gets a new lease
        await client.create("events", event("e3", "c"), namespace="default")
        assert await lease_of(etcd, b"/registry/events/default/e3") not in (0, first)
        assert api.store.leases.grants == 2
        gone = []
        async with client.watch("events", namespace="default") as stream:
            with trio.fail_after(TTL + 60):
                async for e in stream:
                    if e["type"] == "DELETED":
                        gone.append((e["object"]["metadata"]["name"], trio.current_time()))
                        if len(gone) == 3:
                            break
        names = [name for name, _ in gone]
        assert sorted(names[:2]) == ["e1", "e2"] and names[2] == "e3"
        # Not before the TTL from their write, not much after it (a lease ends TTL + 10 s
        # after its grant; etcd's leader checks every tick).
        assert all(TTL <= t < TTL + 12 for _, t in gone[:2])
        assert TTL + 11 <= gone[2][1] < TTL + 23
        assert (await client.list("events", namespace="default"))["items"] == []
        assert (await client.get("pods", "p", namespace="default"))["metadata"]["name"] == "p"


async def test_an_update_puts_the_event_under_a_new_lease(autojump_clock):
    async with ActorSystem() as system:
        _, etcd, client = await start(system)
        await client.create("events", event("e1", "a"), namespace="default")
        first = await lease_of(etcd, b"/registry/events/default/e1")
        await trio.sleep(TTL - 20)
        await client.patch("events", "e1", {"count": 2}, namespace="default")
        assert await lease_of(etcd, b"/registry/events/default/e1") not in (0, first)
        await trio.sleep(40)  # past the first lease's end: e1 lives on under its new one
        assert (await client.get("events", "e1", namespace="default"))["count"] == 2


async def test_a_lease_revoked_behind_the_servers_back_is_replaced(autojump_clock):
    async with ActorSystem() as system:
        api, etcd, client = await start(system)
        await client.create("events", event("e1", "a"), namespace="default")
        first = await lease_of(etcd, b"/registry/events/default/e1")
        await etcd.lease_revoke(first)  # e1 goes with it
        made = await client.create("events", event("e2", "b"), namespace="default")
        assert made["metadata"]["name"] == "e2"
        assert await lease_of(etcd, b"/registry/events/default/e2") not in (0, first)
        assert [e["metadata"]["name"] for e in
                (await client.list("events", namespace="default"))["items"]] == ["e2"]  # fmt: skip
        assert api.store.leases.grants == 2


async def test_a_ttl_of_zero_keeps_events_for_ever(autojump_clock):
    async with ActorSystem() as system:
        _, etcd, client = await start(system, event_ttl=0)
        await client.create("events", event("e1", "a"), namespace="default")
        assert await lease_of(etcd, b"/registry/events/default/e1") == 0


async def test_writes_that_need_a_lease_at_once_share_one_grant(autojump_clock):
    async with ActorSystem() as system:
        api, etcd, client = await start(system)
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(partial(client.create, "events", event(f"e{i}", "a"),
                                           namespace="default"))  # fmt: skip
        leases = {await lease_of(etcd, f"/registry/events/default/e{i}".encode())
                  for i in range(20)}  # fmt: skip
        assert len(leases) == 1 and api.store.leases.grants == 1
