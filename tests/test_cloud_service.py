"""The service controller against an in-process API server (a 3-member etcd group
under it) and an in-memory cloud, in virtual time: finalizer, ingress status and events
as Kubernetes writes them, provider failures retried with backoff, latency, nodes
coming and going, a Service that stops wanting its load balancer, one that names another
class. Then the pure decisions on their own, and one real-time test where a client
reaches a stand-in node port through the load balancer's ingress address. No test
sleeps: each waits for a state (an informer's view of the API, or the controller's
reconciles)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
import trio
from inproc_api import start_api

from actorkube.actor import ActorSystem
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.client import ApiClient, Informer
from actorkube.cloud import CloudError
from actorkube.cloud import _servicelb as lbs
from actorkube.cloud._memory import FOREVER, InMemoryCloud
from actorkube.cloud.servicecontroller import ServiceController
from actorkube.etcd import start_group

FINALIZER = "service.kubernetes.io/load-balancer-cleanup"


async def start(system: ActorSystem, cloud: InMemoryCloud):
    api = await start_api(system)
    controller = ServiceController(api.ref, token="admin-token", cloud=cloud,
                                   cluster_name="test")  # fmt: skip
    system.spawn(lambda: controller, name="service-controller")
    return ApiClient(system, api.ref, token="admin-token"), controller


def lb_service(name: str, node_port: int | None = None, **spec) -> dict:
    p: dict = {"name": "http", "port": 8080, "targetPort": 80}
    if node_port:
        p["nodePort"] = node_port
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [p],
                     **spec}}  # fmt: skip


async def add_node(client: ApiClient, name: str, ip: str, **labels: str) -> dict:
    return await client.create("nodes", {
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})  # fmt: skip


async def until(client: ApiClient, resource: str, check: Callable[[list[dict]], object], *,
                limit: float = 600.0):  # fmt: skip
    """Wait until ``check(objects)`` of ``resource`` in default (cluster-wide for
    nodes) is true, woken by each change an informer sees; return what it returned."""
    informer = Informer(client, resource, namespace="" if resource == "nodes" else "default")
    wake = trio.Event()

    def poke(*_: object) -> None:
        wake.set()

    informer.add_handler(poke, poke, poke)
    result = None
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            await nursery.start(informer.run)
            while not (result := check(informer.list())):
                wake = trio.Event()
                await wake.wait()
            nursery.cancel_scope.cancel()
    return result


def named(name: str, test: Callable[[dict], bool] = lambda _: True):
    def check(items: list[dict]) -> dict | None:
        return next((i for i in items if i["metadata"]["name"] == name and test(i)), None)

    return check


def ingress(svc: dict) -> list:
    return ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []


def gone(name: str):
    return lambda items: all(i["metadata"]["name"] != name for i in items)


def events(name: str, *reasons: str):
    """The events about ``name``, once every one of ``reasons`` is among them:
    reason -> (type, message, count)."""

    def check(items: list[dict]) -> dict | None:
        got = {e["reason"]: (e["type"], e["message"], e["count"])
               for e in items if e["involvedObject"]["name"] == name}  # fmt: skip
        return got if all(r in got for r in reasons) else None

    return check


# --- in virtual time -----------------------------------------------------------------------


async def test_a_load_balancer_service_gets_finalizer_ingress_and_events(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        await add_node(client, "n2", "127.1.0.2")
        await client.create("services", {**lb_service("plain"), "spec": {
            "type": "ClusterIP", "ports": [{"port": 80}]}}, namespace="default")  # fmt: skip
        created = await client.create("services", lb_service("web", 31080), namespace="default")
        svc = await until(client, "services", named("web", ingress))
        assert ingress(svc) == [{"ip": "127.200.0.1"}]
        assert svc["metadata"]["finalizers"] == [FINALIZER]
        lb = cloud.load_balancer_of("default/web", "test")
        assert lb.nodes == ("n1", "n2") and lb.hosts == ("127.1.0.1", "127.1.0.2")
        assert lb.name == "a" + created["metadata"]["uid"].replace("-", "")[:31]
        got = await until(client, "events", events("web", "EnsuringLoadBalancer",
                                                   "EnsuredLoadBalancer"))  # fmt: skip
        assert got == {"EnsuringLoadBalancer": ("Normal", "Ensuring load balancer", 1),
                       "EnsuredLoadBalancer": ("Normal", "Ensured load balancer", 1)}
        listed = await client.list("events", namespace="default")
        assert {(e["involvedObject"]["kind"], e["source"]["component"]) for e in listed["items"]
                } == {("Service", "service-controller")}  # fmt: skip
        plain = await client.get("services", "plain", namespace="default")
        assert "finalizers" not in plain["metadata"] and not ingress(plain)
        assert {c.subject for c in cloud.calls} == {"default/web"}
        # Deleting: the finalizer holds the Service until its load balancer is gone.
        cloud.fail("ensure_load_balancer_deleted")
        await client.delete("services", "web", namespace="default")
        await until(client, "events", events("web", "SyncLoadBalancerFailed"))
        held = await client.get("services", "web", namespace="default")
        assert held["metadata"]["deletionTimestamp"] and cloud.load_balancers
        await until(client, "services", gone("web"))
        assert cloud.load_balancers == {} and cloud.addresses == frozenset()
        got = await until(client, "events", events("web", "DeletingLoadBalancer",
                                                   "DeletedLoadBalancer"))  # fmt: skip
        assert got["SyncLoadBalancerFailed"] == (
            "Warning", "Error syncing load balancer: failed to delete load balancer: "
            "inmemory: ensure_load_balancer_deleted failed (injected)", 1)
        assert got["DeletedLoadBalancer"] == ("Normal", "Deleted load balancer", 1)
        assert controller.balanced == {}


async def test_provider_errors_are_retried_with_backoff_never_in_a_loop(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        await controller.synced.wait()
        start_time = trio.current_time()
        cloud.fail("ensure_load_balancer", times=3)
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        # Kubernetes' backoff: 5, 10 then 20 s before the fourth try succeeds.
        assert 35 <= trio.current_time() - start_time < 40
        assert cloud.call_counts()["ensure_load_balancer"] == 4
        got = await until(client, "events", events("web", "SyncLoadBalancerFailed"))
        assert got["SyncLoadBalancerFailed"] == (
            "Warning", "Error syncing load balancer: failed to ensure load balancer: "
            "inmemory: ensure_load_balancer failed (injected)", 3)
        # A cloud that keeps failing: tried less and less often (at most every 300 s).
        cloud.fail("ensure_load_balancer", FOREVER, error=CloudError("quota exceeded"))
        await client.create("services", lb_service("api"), namespace="default")
        await trio.sleep(1500)  # tries at 0, 5, 15, 35, 75, 155, 315, 615, 915, 1215 s
        tries = sum(1 for c in cloud.calls if c.subject == "default/api")
        assert 9 <= tries <= 11
        cloud.heal()
        await until(client, "services", named("api", ingress), limit=301)
        assert controller.errors == 3 + tries


async def test_latency_delays_the_status_in_virtual_time(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    cloud.latency(30)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await controller.synced.wait()
        start_time = trio.current_time()
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        assert 30 <= trio.current_time() - start_time < 35
        # No node at all: the load balancer is made, and a warning says it has no node.
        got = await until(client, "events", events("web", "UnAvailableLoadBalancer"))
        assert got["UnAvailableLoadBalancer"] == (
            "Warning", "There are no available nodes for LoadBalancer", 1)


async def test_nodes_joining_and_leaving_update_every_load_balancer(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        for name in ("web", "api"):
            await client.create("services", lb_service(name), namespace="default")
            await until(client, "services", named(name, ingress))

        def hosts(*expected: str) -> Callable[[], bool]:
            return lambda: all(cloud.load_balancer_of(f"default/{s}", "test").hosts == expected
                               for s in ("web", "api"))  # fmt: skip

        await add_node(client, "n2", "127.1.0.2")
        await controller.wait_until(hosts("127.1.0.1", "127.1.0.2"))
        got = await until(client, "events", events("api", "UpdatedLoadBalancer"))
        assert got["UpdatedLoadBalancer"] == ("Normal", "Updated load balancer with new hosts", 1)
        # A change a load balancer does not see updates nothing.
        updates = cloud.call_counts()["update_load_balancer"]
        await client.patch("nodes", "n1", {"metadata": {"labels": {"zone": "a"}}})
        await client.patch("nodes", "n1", {"spec": {"unschedulable": True}})
        # The exclusion label takes a node out; the autoscaler's taint too.
        await client.patch("nodes", "n2", {"metadata": {"labels": {lbs.EXCLUDE_LABEL: ""}}})
        await controller.wait_until(hosts("127.1.0.1"))
        assert cloud.call_counts()["update_load_balancer"] == updates + 2
        await client.patch("nodes", "n1", {"spec": {"taints": [
            {"key": lbs.TO_BE_DELETED_TAINT, "effect": "NoSchedule"}]}})  # fmt: skip
        await controller.wait_until(hosts())
        got = await until(client, "events", events("web", "UnAvailableLoadBalancer"))
        # A new node comes, and an old one goes.
        await add_node(client, "n3", "127.1.0.3")
        await controller.wait_until(hosts("127.1.0.3"))
        await client.delete("nodes", "n3")
        await controller.wait_until(hosts())
        assert controller.errors == 0


async def test_a_failed_node_update_is_retried_by_a_full_sync(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        cloud.fail("update_load_balancer")
        await add_node(client, "n2", "127.1.0.2")
        await controller.wait_until(lambda: cloud.load_balancer_of(
            "default/web", "test").nodes == ("n1", "n2"))  # fmt: skip
        got = await until(client, "events", events("web", "UpdateLoadBalancerFailed"))
        assert got["UpdateLoadBalancerFailed"] == (
            "Warning", "Error updating load balancer with new hosts [n1 n2] [node names "
            "limited, total number of nodes: 2], error: inmemory: update_load_balancer failed "
            "(injected)", 1)
        assert cloud.call_counts()["ensure_load_balancer"] == 2  # the full sync did it


async def test_a_service_switched_to_cluster_ip_loses_its_load_balancer(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, _ = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        await client.patch("services", "web", {"spec": {
            "type": "ClusterIP", "allocateLoadBalancerNodePorts": None}}, namespace="default")
        svc = await until(client, "services", named("web", lambda s: not ingress(s) and not s[
            "metadata"].get("finalizers")))  # fmt: skip
        assert svc["spec"]["type"] == "ClusterIP"
        assert cloud.load_balancers == {}
        await until(client, "events", events("web", "DeletingLoadBalancer", "DeletedLoadBalancer"))
        # And back: a new load balancer.
        await client.patch("services", "web", {"spec": {"type": "LoadBalancer"}},
                           namespace="default")  # fmt: skip
        svc = await until(client, "services", named("web", ingress))
        assert svc["metadata"]["finalizers"] == [FINALIZER]


async def test_a_service_deleted_without_its_finalizer_still_loses_its_lb(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        # Someone takes the finalizer off by hand, then deletes the Service: it goes at
        # once, and the controller, which made its load balancer, deletes that.
        await client.patch("services", "web", {"metadata": {"finalizers": None}},
                           namespace="default")  # fmt: skip
        await client.delete("services", "web", namespace="default")
        await controller.wait_until(lambda: not cloud.load_balancers)
        assert controller.balanced == {} and controller.errors == 0
        await until(client, "events", events("web", "DeletingLoadBalancer", "DeletedLoadBalancer"))


async def test_a_service_of_another_load_balancer_class_is_left_alone(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    async with ActorSystem() as system:
        client, controller = await start(system, cloud)
        await add_node(client, "n1", "127.1.0.1")
        await client.create("services", lb_service("other", loadBalancerClass="example.com/lb"),
                            namespace="default")  # fmt: skip
        await client.create("services", lb_service("web"), namespace="default")
        await until(client, "services", named("web", ingress))
        other = await client.get("services", "other", namespace="default")
        assert not ingress(other) and "finalizers" not in other["metadata"]
        assert {c.subject for c in cloud.calls} == {"default/web"}
        # A node sync does not touch it either.
        await add_node(client, "n2", "127.1.0.2")
        await controller.wait_until(lambda: len(cloud.load_balancer_of(
            "default/web", "test").nodes) == 2)  # fmt: skip
        assert {c.subject for c in cloud.calls} == {"default/web"}


# --- the decisions, pure -------------------------------------------------------------------


def svc(type_: str = "LoadBalancer", finalizers=(), deleting=False, **spec) -> dict:
    m: dict = {"name": "s", "namespace": "default", "uid": "u1"}
    if finalizers:
        m["finalizers"] = list(finalizers)
    if deleting:
        m["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": m, "spec": {"type": type_, "ports": [{"port": 80, "nodePort": 30080}],
                                    **spec}}  # fmt: skip


def test_which_services_want_a_load_balancer_and_which_need_cleanup():
    assert lbs.wants_load_balancer(svc())
    assert not lbs.wants_load_balancer(svc(loadBalancerClass="example.com/lb"))
    assert not lbs.wants_load_balancer(svc("NodePort"))
    assert not lbs.needs_cleanup(svc())
    assert lbs.needs_cleanup(svc(finalizers=[FINALIZER], deleting=True))
    assert lbs.needs_cleanup(svc("ClusterIP", finalizers=[FINALIZER]))
    assert not lbs.needs_cleanup(svc("ClusterIP", finalizers=["other"]))
    for junk in ({}, {"metadata": "x", "spec": None}, {"spec": {"ports": "x"}}):
        assert not lbs.wants_load_balancer(junk) and not lbs.needs_cleanup(junk)


def test_only_changes_a_load_balancer_is_made_of_need_a_sync():
    base = svc()
    status_only = {**base, "status": {"loadBalancer": {"ingress": [{"ip": "127.200.0.1"}]}}}
    assert not lbs.needs_update(base, status_only)
    assert not lbs.needs_update(svc("ClusterIP"), svc("NodePort"))
    assert lbs.needs_update(svc("ClusterIP"), base)
    assert lbs.needs_update(base, svc(sessionAffinity="ClientIP"))
    assert lbs.needs_update(base, svc(loadBalancerIP="127.200.0.9"))
    assert lbs.needs_update(base, {**base, "spec": {**base["spec"], "ports": [
        {"port": 80, "nodePort": 30081}]}})  # fmt: skip
    annotated = {**base, "metadata": {**base["metadata"], "annotations": {"a": "b"}}}
    assert lbs.needs_update(base, annotated)


def test_the_nodes_of_load_balancers_and_when_they_change():
    def node(name, ip="127.1.0.1", labels=None, taints=None, deleting=False, pid=""):
        m = {"name": name, "labels": labels or {}}
        if deleting:
            m["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": m, "spec": {"taints": taints or [], "providerID": pid},
                "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                           "conditions": [{"type": "Ready", "status": "False"}]}}  # fmt: skip

    nodes = [node("b"), node("a"), node("x", labels={lbs.EXCLUDE_LABEL: "true"}),
             node("y", taints=[{"key": lbs.TO_BE_DELETED_TAINT}]), node("z", deleting=True),
             "junk"]  # fmt: skip
    # Not ready counts: readiness is the load balancer's health checks' business.
    assert [n["metadata"]["name"] for n in lbs.load_balancer_nodes(nodes)] == ["a", "b"]
    assert not lbs.should_sync_node(node("a"), {**node("a"), "status": {
        "addresses": [{"type": "InternalIP", "address": "127.1.0.1"}]}})  # fmt: skip
    assert lbs.should_sync_node(node("a"), node("a", ip="127.1.0.2"))
    assert lbs.should_sync_node(node("a"), node("a", pid="inmemory://i-1"))
    assert lbs.should_sync_node(node("a"), node("a", labels={lbs.EXCLUDE_LABEL: ""}))
    many = [node(f"n{i:02}") for i in range(25)]
    assert lbs.node_names(many).endswith("n19 <5 more>]")


# --- real sockets --------------------------------------------------------------------------

TOKENS = "admin-token,admin,1,system:masters\n"


async def node_port_echo(name: str, ip: str, port: int, *, task_status) -> None:
    """A node's node port, as kube-proxy would serve it: says the node's name, echoes."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(f"{name}\n".encode())
                while data := await stream.receive_some(4096):
                    await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(port, host=ip)
    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def test_a_client_reaches_a_node_port_through_the_ingress_address():
    with trio.fail_after(60):
        async with ActorSystem() as system, \
                InMemoryCloud.open(load_balancer_network="127.200.221.0/24") as cloud, \
                trio.open_nursery() as nursery:  # fmt: skip
            group = start_group(system, 3, tick_interval=0.05)
            api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                        tokens=parse_token_file(TOKENS), seed=3)  # fmt: skip
            await api.ready()
            controller = ServiceController(api.ref, token="admin-token", cloud=cloud)
            system.spawn(lambda: controller, name="service-controller")
            client = ApiClient(system, api.ref, token="admin-token")
            await nursery.start(node_port_echo, "n1", "127.1.221.1", 31221)
            await add_node(client, "n1", "127.1.221.1")
            await client.create("services", lb_service("web", 31221), namespace="default")
            svc = await until(client, "services", named("web", ingress))
            (address,) = ingress(svc)
            stream = await trio.open_tcp_stream(address["ip"], 8080)
            async with stream:
                got = b""
                while not got.endswith(b"\n"):
                    got += await stream.receive_some(100)
                assert got == b"n1\n"
                await stream.send_all(b"through the load balancer")
                got = b""
                while len(got) < len(b"through the load balancer"):
                    got += await stream.receive_some(100)
                assert got == b"through the load balancer"
            await client.delete("services", "web", namespace="default")
            await until(client, "services", gone("web"))
            assert cloud.listening(address["ip"]) == {}
            with pytest.raises(OSError):
                await trio.open_tcp_stream(address["ip"], 8080)
            nursery.cancel_scope.cancel()


def test_a_cloud_without_load_balancers_is_refused():
    class NoBalancers(InMemoryCloud):
        def load_balancer(self):
            return None

    with pytest.raises(ValueError, match="has no load balancers"):
        ServiceController(None, token="t", cloud=NoBalancers(real_load_balancers=False))

