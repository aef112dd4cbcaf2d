"""The resource metrics pipeline: the kubelet's resource metrics (with the simulated
runtime), the metrics server's core (what it keeps of the kubelets' answers), and the
whole pipeline in the simulated cluster in virtual time: scraping every resolution, a
node that stops answering losing its metrics, a new pod appearing at the next scrape,
load groups, and metrics.k8s.io as the API serves it (get, list, selectors, 404s,
RBAC, discovery with and without a metrics server)."""

from __future__ import annotations

import math

import attrs
import pytest
import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.actor import Actor, ActorSystem, WallClock, handler
from actorkube.apiserver import ApiError, ApiRequest, parse_token_file, start_apiserver
from actorkube.apiserver._metricsapi import (
    cpu_quantity,
    go_duration,
    memory_quantity,
    metrics_request,
)
from actorkube.apiserver._rest import parse_request
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.metrics import (
    ContainerMetrics,
    GetResourceMetrics,
    MetricsQuery,
    MetricsStore,
    PodMetrics,
    ResourceMetrics,
    ResourceMetricsError,
    Usage,
)
from actorkube.metrics._store import accepted, targets
from actorkube.node._podstate import CONTAINER_NAME, NODE, POD_NAME, POD_NAMESPACE, POD_UID
from actorkube.node._resourcemetrics import MIN_INTERVAL
from actorkube.node._server import KubeletServer
from actorkube.node.runtime import (
    ContainerConfig,
    PodSandboxConfig,
    Resources,
    SimProfile,
    SimRuntime,
)
from actorkube.sim import SimNetwork, simulate

EPOCH = 1_700_000_000.0
GROUP = "metrics.k8s.io"
MI = 1 << 20

# --- the wire form ---------------------------------------------------------------------------


def test_durations_print_as_go_prints_them():
    cases = {0: "0s", 15: "15s", 15.5: "15.5s", 60: "1m0s", 90.25: "1m30.25s",
             3600: "1h0m0s", 3723: "1h2m3s", 0.25: "250ms", 1.5e-6: "1.5µs", 5e-7: "500ns",
             -2: "-2s"}  # fmt: skip
    for seconds, text in cases.items():
        assert go_duration(seconds) == text, seconds


def test_usage_prints_as_metrics_server_writes_it():
    assert cpu_quantity(123456) == "123456n"
    assert cpu_quantity(250_000_000) == "250m"
    assert cpu_quantity(1_500_000) == "1500u"
    assert cpu_quantity(2_000_000_000) == "2"
    assert cpu_quantity(0) == "0"
    assert memory_quantity(1234 * 1024) == "1234Ki"
    assert memory_quantity(64 * MI) == "64Mi"
    assert memory_quantity(1000) == "1k"  # below 1Ki, DecimalSI (Kubernetes' rule)
    assert memory_quantity(1025) == "1025"


def test_metrics_paths_parse_to_requests_and_others_are_404():
    req = parse_request(None, "GET", "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods/web", {})
    assert (req.verb, req.group, req.version, req.resource, req.namespace, req.name) == (
        "get", GROUP, "v1beta1", "pods", "ns", "web")  # fmt: skip
    req = parse_request(None, "GET", "/apis/metrics.k8s.io/v1beta1/pods", {"labelSelector": "a"})
    assert (req.verb, req.namespace, req.params) == ("list", "", {"labelSelector": "a"})
    req = parse_request(None, "GET", "/apis/metrics.k8s.io/v1beta1/nodes", {"watch": "1"})
    assert req.verb == "watch"  # (refused with 405 by the server)
    for path in ("/apis/metrics.k8s.io/v1/nodes", "/apis/metrics.k8s.io/v1beta1/services",
                 "/apis/metrics.k8s.io/v1beta1/namespaces/ns/nodes/n1",
                 "/apis/metrics.k8s.io/v1beta1/pods/web",
                 "/apis/metrics.k8s.io/v1beta1/nodes/n1/status"):  # fmt: skip
        with pytest.raises(ApiError) as e:
            parse_request(None, "GET", path, {})
        assert e.value.code == 404, path
    assert metrics_request("get", "v1beta1", "", "nodes", "n1", "", {}).params is None


# --- the kubelet's answer, with the simulated runtime ----------------------------------------

PROFILES = {"app": SimProfile(cpu_millis=250, memory_bytes=64 * MI),
            "side": SimProfile(cpu_millis=50, memory_bytes=16 * MI),
            "job": SimProfile(run_for=1.0)}  # fmt: skip


async def _run_container(runtime, pod, container, image, *, node="n1", namespace="default",
                         labelled=True, limit=0):  # fmt: skip
    labels = {NODE: node, POD_NAMESPACE: namespace, POD_NAME: pod, POD_UID: f"uid-{pod}"}
    sandbox = PodSandboxConfig(pod, namespace, f"uid-{pod}", labels=labels)
    found = await runtime.list_pod_sandboxes({POD_UID: f"uid-{pod}"})
    sandbox_id = found[0].id if found else await runtime.run_pod_sandbox(sandbox)
    await runtime.pull_image(image)
    own = {**labels, CONTAINER_NAME: container} if labelled else {NODE: node}
    config = ContainerConfig(container, image, labels=own, resources=Resources(cpu_millis=limit))
    cid = await runtime.create_container(sandbox_id, config, sandbox)
    await runtime.start_container(cid)
    return cid


@pytest.fixture
async def kubelet(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        runtime = SimRuntime("10.244.1.0/24", profiles=PROFILES, wall_clock=system.clock.now)
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)
            server = system.spawn(lambda: KubeletServer(runtime, "n1"), name="kubelet-server")
            yield system, runtime, server
            nursery.cancel_scope.cancel()


async def test_the_kubelet_reports_each_running_container_and_their_sum(kubelet):
    system, runtime, server = kubelet
    await _run_container(runtime, "web", "app", "app")
    await _run_container(runtime, "web", "side", "side")
    await _run_container(runtime, "capped", "app", "app", namespace="other", limit=100)
    await _run_container(runtime, "done", "job", "job")
    await _run_container(runtime, "elsewhere", "app", "app", node="n2")  # another kubelet's
    await _run_container(runtime, "bare", "x", "app", labelled=False)  # no pod labels
    started = system.clock.now()
    await trio.sleep(5)  # "done" has exited by now
    answer = await server.ask(GetResourceMetrics())
    assert isinstance(answer, ResourceMetrics) and answer.node == "n1"
    shape = [(p.namespace, p.name, [(c.name, c.usage.cpu_nanocores, c.usage.memory_bytes)
                                    for c in p.containers]) for p in answer.pods]  # fmt: skip
    assert shape == [("default", "web", [("app", 250_000_000, 64 * MI),
                                         ("side", 50_000_000, 16 * MI)]),
                     ("other", "capped", [("app", 100_000_000, 64 * MI)])]  # the CPU limit
    usages = [c.usage for p in answer.pods for c in p.containers]
    assert [u.window for u in usages] == pytest.approx([5, 5, 5], abs=0.1)  # since started
    assert [u.timestamp for u in usages] == pytest.approx([started + 5] * 3, abs=0.1)
    total = answer.usage
    assert (total.cpu_nanocores, total.memory_bytes) == (400_000_000, 144 * MI)
    assert total.window == max(u.window for u in usages)

    # Asked again within a second: the same sample (a second scraper cuts no window).
    await trio.sleep(MIN_INTERVAL / 2)
    assert await server.ask(GetResourceMetrics()) == answer
    await trio.sleep(15 - MIN_INTERVAL / 2)
    again = await server.ask(GetResourceMetrics())
    windows = [c.usage.window for p in again.pods for c in p.containers]
    assert windows == pytest.approx([15, 15, 15], abs=0.1)  # since the previous sample
    assert again.usage.timestamp == pytest.approx(started + 20, abs=0.1)


async def test_a_kubelet_without_containers_and_one_whose_runtime_failed(kubelet):
    _, runtime, server = kubelet
    answer = await server.ask(GetResourceMetrics())
    assert answer.pods == () and (answer.usage.cpu_nanocores, answer.usage.window) == (0, 0.0)
    await trio.sleep(10)
    assert (await server.ask(GetResourceMetrics())).usage.window == pytest.approx(10, abs=0.1)
    await runtime.aclose()
    await trio.sleep(10)
    for _ in range(2):  # an answer each time: the server never fails
        answer = await server.ask(GetResourceMetrics())
        assert isinstance(answer, ResourceMetricsError)
        assert "the container runtime failed" in answer.message


# --- what the metrics server keeps --------------------------------------------------------------


def _usage(cpu=1, memory=1, window=15.0, timestamp=EPOCH):
    return Usage(cpu, memory, timestamp, window)


def _answer(node, *pods, usage=None):
    pods = tuple(PodMetrics(ns, name, tuple(ContainerMetrics(c, _usage()) for c in cs))
                 for ns, name, cs in pods)  # fmt: skip
    return ResourceMetrics(node, usage or _usage(), pods)


def test_only_sound_answers_of_the_node_asked_are_kept():
    good = _answer("n1", ("default", "web", ("a", "b")))
    assert accepted("n1", good) is good
    bad = [
        None, "garbage", ResourceMetricsError("runtime down"), _answer("n2"),
        _answer("n1", usage=_usage(cpu=-1)), _answer("n1", usage=_usage(window=math.nan)),
        _answer("n1", usage=_usage(timestamp=math.inf)), _answer("n1", usage=_usage(window=-1)),
        _answer("n1", ("default", "web", ("a",)), ("default", "web", ("b",))),
        _answer("n1", ("default", "web", ("a", "a"))), _answer("n1", ("", "web", ("a",))),
        _answer("n1", ("default", "web", ("",))),
        ResourceMetrics("n1", _usage(), (PodMetrics("d", "w", (
            ContainerMetrics("a", _usage(memory=-5)),)),)),
    ]  # fmt: skip
    for answer in bad:
        assert accepted("n1", answer) is None, answer


def test_each_scrape_replaces_what_is_kept():
    store = MetricsStore()
    store.replace([_answer("n2", ("b", "y", ("c",))), _answer("n1", ("a", "x", ("c",)),
                                                               ("b", "z", ("c",)))])  # fmt: skip
    assert [n.name for n in store.query(MetricsQuery("nodes")).nodes] == ["n1", "n2"]
    assert [(p.namespace, p.name) for p in store.query(MetricsQuery("pods")).pods] == [
        ("a", "x"), ("b", "y"), ("b", "z")]  # fmt: skip
    assert [p.name for p in store.query(MetricsQuery("pods", "b")).pods] == ["y", "z"]
    assert [p.name for p in store.query(MetricsQuery("pods", "b", "y")).pods] == ["y"]
    assert store.query(MetricsQuery("pods", "a", "y")).pods == ()
    assert store.query(MetricsQuery("nodes", name="n3")).nodes == ()
    assert store.query(MetricsQuery("services")).nodes == ()
    store.replace([_answer("n1", ("a", "x", ("c",)))])  # n2 did not answer; z is gone
    assert [n.name for n in store.query(MetricsQuery("nodes")).nodes] == ["n1"]
    assert [p.name for p in store.query(MetricsQuery("pods")).pods] == ["x"]



def test_each_claim_is_kept_with_the_node_that_made_it():
    """A kubelet that reports another node's pod does not hide the true report: both
    are kept, stamped with their node, and the API server serves the one of the node
    the pod is bound to."""
    store = MetricsStore()
    store.replace([_answer("n1", ("a", "x", ("c",))), _answer("n0", ("a", "x", ("c",)))])
    claims = store.query(MetricsQuery("pods", "a", "x")).pods
    assert [(p.name, p.node) for p in claims] == [("x", "n0"), ("x", "n1")]


def test_the_kubelets_to_scrape_are_those_a_node_names():
    nodes = [{"metadata": {"name": "n1", "annotations": {
                 "kubelet.actorkube.io/server": "ak://node-1/kubelet-server-n1"}}},
             {"metadata": {"name": "n2"}},
             {"metadata": {"name": "n3", "annotations": {"kubelet.actorkube.io/server": ""}}}]
    assert targets(nodes) == {"n1": "ak://node-1/kubelet-server-n1"}  # fmt: skip


# --- the pipeline in the simulated cluster -------------------------------------------------------


def _pod(name, *, node="", labels=None, annotations=None, containers=(("app", "app"),),
         limit=""):  # fmt: skip
    spec = {"containers": [{"name": c, "image": image,
                            **({"resources": {"limits": {"cpu": limit}}} if limit else {})}
                           for c, image in containers]}  # fmt: skip
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "annotations": annotations or {}},
            "spec": spec}  # fmt: skip


async def _metrics(cluster, resource, name="", *, namespace="", **params):
    try:
        return await cluster.client.request(
            "list" if not name else "get", resource, group=GROUP, version="v1beta1",
            namespace=namespace, name=name, params=params or None)  # fmt: skip
    except ApiError as e:
        return e


async def _running(cluster, count):
    pods = await cluster.running_pods()
    return pods if len(pods) == count else None


def test_the_metrics_server_scrapes_every_resolution_and_the_api_serves_it():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES)
        await cluster.client.create("pods", _pod("web", node="node-0", labels={"app": "web"},
                                                 containers=(("app", "app"), ("side", "side"))),
                                    namespace="default")  # fmt: skip
        await cluster.client.create("pods", _pod("db", node="node-1", labels={"app": "db"}),
                                    namespace="default")  # fmt: skip
        await wait_for(lambda: _running(cluster, 2))

        async def served():
            got = await _metrics(cluster, "pods", namespace="default")
            return got if not isinstance(got, ApiError) and len(got["items"]) == 2 else None

        pods = await wait_for(served)
        first = await _metrics(cluster, "pods", "web", namespace="default")
        scrapes = cluster.metrics_server.scrapes
        await trio.sleep(60)
        return {"pods": pods, "first": first, "scrapes": cluster.metrics_server.scrapes - scrapes,
                "web": await _metrics(cluster, "pods", "web", namespace="default"),
                "nodes": await _metrics(cluster, "nodes"),
                "node": await _metrics(cluster, "nodes", "node-0"),
                "selected": await _metrics(cluster, "pods", namespace="default",
                                           labelSelector="app=db"),
                "named": await _metrics(cluster, "pods", namespace="default",
                                        fieldSelector="metadata.name=web"),
                "everywhere": await _metrics(cluster, "pods"),
                "elsewhere": await _metrics(cluster, "pods", namespace="kube-system"),
                "bad": await _metrics(cluster, "pods", namespace="default",
                                      fieldSelector="spec.nodeName=node-0"),
                "watch": await _ask(cluster, ApiRequest("watch", "nodes", group=GROUP,
                                                        version="v1beta1")),
                "table": await _ask(cluster, ApiRequest("list", "pods", group=GROUP,
                                                        version="v1beta1", namespace="default",
                                                        as_table=True))}  # fmt: skip

    r = simulate(scenario, seed=3).value
    assert r["scrapes"] == 4  # every 15 s
    web = r["web"]
    assert web["kind"] == "PodMetrics" and web["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert web["metadata"]["name"] == "web" and web["metadata"]["namespace"] == "default"
    assert web["metadata"]["labels"] == {"app": "web"}
    assert web["metadata"]["creationTimestamp"].endswith("Z")
    assert web["window"] == "15s" and web["timestamp"].endswith("Z")
    first = float(r["first"]["window"].rstrip("s"))  # since the containers started
    assert 0 < first <= 15
    assert web["containers"] == [{"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
                                 {"name": "side", "usage": {"cpu": "50m", "memory": "16Mi"}}]
    assert r["pods"]["kind"] == "PodMetricsList" and r["pods"]["metadata"] == {}
    assert [p["metadata"]["name"] for p in r["pods"]["items"]] == ["db", "web"]
    assert [n["metadata"]["name"] for n in r["nodes"]["items"]] == ["node-0", "node-1"]
    node = r["node"]
    assert node["kind"] == "NodeMetrics" and node["usage"] == {"cpu": "300m", "memory": "80Mi"}
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-0"
    assert "namespace" not in node["metadata"]
    assert [p["metadata"]["name"] for p in r["selected"]["items"]] == ["db"]
    assert [p["metadata"]["name"] for p in r["named"]["items"]] == ["web"]
    assert [p["metadata"]["name"] for p in r["everywhere"]["items"]] == ["db", "web"]
    assert r["elsewhere"]["items"] == []
    assert r["bad"].code == 400 and "field label not supported" in str(r["bad"])
    assert r["watch"].code == 405
    table = r["table"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "cpu", "memory", "Window"]
    assert [row["cells"] for row in table["rows"]] == [["db", "250m", "64Mi", "15s"],
                                                      ["web", "300m", "80Mi", "15s"]]


async def _ask(cluster, req):
    """The body of an admin's raw request, or the response if it failed."""
    answer = await cluster.client.send(attrs.evolve(req, token="admin-token"))
    return answer if answer.code >= 300 else answer.body


def test_a_node_that_stops_answering_loses_its_metrics_and_a_new_pod_comes_at_the_next_scrape():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES)
        for i in range(2):
            await cluster.client.create("pods", _pod(f"p{i}", node=f"node-{i}"),
                                        namespace="default")  # fmt: skip
        await wait_for(lambda: _running(cluster, 2))

        async def nodes_with_metrics(count):
            got = await _metrics(cluster, "nodes")
            return got["items"] if len(got["items"]) == count else None

        await wait_for(lambda: nodes_with_metrics(2))
        await wait_for(lambda: _count_pods(cluster, 2))
        await net.crash("node-1")
        crashed_at = trio.current_time()
        await wait_for(lambda: nodes_with_metrics(1), period=0.1)
        lost_after = trio.current_time() - crashed_at
        left = await _metrics(cluster, "pods", namespace="default")
        gone = await _metrics(cluster, "pods", "p1", namespace="default")
        gone_node = await _metrics(cluster, "nodes", "node-1")
        await net.restart("node-1")
        await wait_for(lambda: nodes_with_metrics(2))

        # A new pod: no metrics until the scrape after it runs, then there.
        await cluster.client.create("pods", _pod("late", node="node-0"), namespace="default")
        await wait_for(lambda: _running(cluster, 3), period=0.1)
        running_at = trio.current_time()
        before = await _metrics(cluster, "pods", "late", namespace="default")
        await wait_for(lambda: _count_pods(cluster, 3), period=0.1)
        return {"lost_after": lost_after, "left": left, "gone": gone, "gone_node": gone_node,
                "before": before, "appeared_after": trio.current_time() - running_at}

    r = simulate(scenario, seed=5).value
    assert r["lost_after"] <= 15 + 15 * 0.9 + 1  # the next scrape, once it timed out
    assert [p["metadata"]["name"] for p in r["left"]["items"]] == ["p0"]
    assert r["gone"].code == 404
    assert str(r["gone"]) == 'podmetrics.metrics.k8s.io "default/p1" not found'
    assert str(r["gone_node"]) == 'nodemetrics.metrics.k8s.io "node-1" not found'
    assert r["before"].code == 404
    assert r["appeared_after"] <= 15.5


async def _count_pods(cluster, count):
    got = await _metrics(cluster, "pods", namespace="default")
    return got if not isinstance(got, ApiError) and len(got["items"]) == count else None


def test_a_load_group_is_shared_by_its_running_pods_and_deleted_pods_have_no_metrics():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES, metric_resolution=5)
        load = {"sim.actorkube.io/load-group": "web"}
        for i in range(3):
            await cluster.client.create("pods", _pod(f"w{i}", node=f"node-{i % 2}",
                                                     annotations=load), namespace="default")
        await cluster.client.create("pods", _pod("capped", node="node-0", annotations=load,
                                                 limit="100m"), namespace="default")  # fmt: skip
        await wait_for(lambda: _running(cluster, 4))
        cluster.load.set("web", 1000)

        async def cpus(expected):
            got = await _metrics(cluster, "pods", namespace="default")
            found = {p["metadata"]["name"]: p["containers"][0]["usage"]["cpu"]
                     for p in got["items"]}  # fmt: skip
            return found if found == expected else None

        shared = await wait_for(lambda: cpus({"w0": "250m", "w1": "250m", "w2": "250m",
                                              "capped": "100m"}))  # fmt: skip
        await cluster.client.delete("pods", "capped", namespace="default", grace_period=0)
        # Gone from the API: no metrics, whatever the metrics server still holds.
        held = ("default", "capped", "node-0") in cluster.metrics_server.store.pods

        async def gone():
            got = await _metrics(cluster, "pods", "capped", namespace="default")
            return got if isinstance(got, ApiError) else None

        after = await wait_for(gone, period=0.1)
        resplit = await wait_for(lambda: cpus({"w0": "334m", "w1": "333m", "w2": "333m"}))
        return {"shared": shared, "held": held, "after": after, "resplit": resplit,
                "members": cluster.load.members("web")}

    r = simulate(scenario, seed=7).value
    assert r["held"] and r["after"].code == 404
    assert str(r["after"]) == 'pods "capped" not found'
    assert r["members"] == 3


def test_metrics_are_rbac_checked_and_absent_from_discovery_without_a_metrics_server():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=1, profiles=PROFILES)
        await cluster.client.create("pods", _pod("web", node="node-0"), namespace="default")
        await wait_for(lambda: _count_pods(cluster, 1))
        clients = net.system("clients")
        api = clients.ref("ak://api/apiserver")
        nobody = ApiClient(clients, api, token="node-0-token")  # a kubelet: no metrics rights
        hpa = ApiClient(clients, api, token="horizontal-pod-autoscaler-token")
        out = {}
        for who, client in (("node", nobody), ("hpa", hpa)):
            for verb, name in (("list", ""), ("get", "web")):
                try:
                    await client.request(verb, "pods", group=GROUP, version="v1beta1",
                                         namespace="default", name=name)  # fmt: skip
                    out[who, verb] = 200
                except ApiError as e:
                    out[who, verb] = (e.code, str(e))
        out["discovery"] = await _ask(cluster, ApiRequest("get", "", path="/apis"))
        out["resources"] = await _ask(cluster, ApiRequest(
            "get", "", path="/apis/metrics.k8s.io/v1beta1"))  # fmt: skip
        out["aggregated"] = await _ask(cluster, ApiRequest(
            "get", "", path="/apis",
            accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"))
        # Cluster-scoped things have no namespace: asked with one (which RBAC would
        # check as a namespaced read), they are not found, metrics or not.
        for group, version in ((GROUP, "v1beta1"), ("", "v1")):
            try:
                await cluster.client.request("list", "nodes", group=group, version=version,
                                             namespace="default")  # fmt: skip
                out["namespaced nodes", group] = 200
            except ApiError as e:
                out["namespaced nodes", group] = e.code
        # The metrics server's host goes down: 503, as the aggregator says it.
        await net.crash("metrics")
        out["down"] = await _metrics(cluster, "nodes")
        return out

    r = simulate(scenario, seed=9).value
    assert r["node", "list"][0] == 403
    assert 'cannot list resource "pods" in API group "metrics.k8s.io"' in r["node", "list"][1]
    assert r["hpa", "list"] == 200  # its bootstrap role lists pod metrics, and only that
    assert r["hpa", "get"][0] == 403
    names = [g["name"] for g in r["discovery"]["groups"]]
    assert "metrics.k8s.io" in names and names == sorted(names)
    assert r["resources"]["resources"] == [
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "NodeMetrics",
         "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
         "verbs": ["get", "list"]}]  # fmt: skip
    [item] = [i for i in r["aggregated"]["items"] if i["metadata"]["name"] == GROUP]
    assert [v["version"] for v in item["versions"]] == ["v1beta1"]
    assert r["namespaced nodes", GROUP] == r["namespaced nodes", ""] == 404
    assert r["down"].code == 503
    assert str(r["down"]) == "the server is currently unable to handle the request"


async def test_without_a_metrics_server_the_api_does_not_exist(autojump_clock):
    tokens = parse_token_file("admin-token,admin,1,system:masters\n")
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        api = await start_apiserver(system, start_group(system, 3).client(name="apiserver"),
                                    tokens=tokens)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token="admin-token")
        groups = await client.send(ApiRequest("get", "", path="/apis", token="admin-token"))
        assert GROUP not in [g["name"] for g in groups.body["groups"]]
        for req in (ApiRequest("get", "", path="/apis/metrics.k8s.io/v1beta1"),
                    ApiRequest("list", "nodes", group=GROUP, version="v1beta1")):
            answer = await client.send(attrs.evolve(req, token="admin-token"))
            assert answer.code == 404
            assert answer.body["message"] == "the server could not find the requested resource"


class _Garbage(Actor):
    """A kubelet server that answers nonsense."""

    @handler
    def on_ask(self, msg: GetResourceMetrics) -> str:
        return "not metrics"


def test_a_kubelet_answering_garbage_or_nothing_loses_only_its_own_metrics():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3, spare_nodes=0, profiles=PROFILES)
        await wait_for(lambda: _nodes_with_metrics(cluster, 3))
        # node-1's kubelet answers garbage; node-2's names a kubelet that is not there.
        garbage = net.system("node-1").spawn(_Garbage, name="garbage")
        for node, address in (("node-1", str(garbage.address)), ("node-2", "ak://nowhere/x")):
            await _point_kubelet_at(cluster, node, address)
        kept = await wait_for(lambda: _nodes_with_metrics(cluster, 1))
        server = cluster.metrics_server
        failures = server.failures
        await trio.sleep(30)
        return {"kept": [n["metadata"]["name"] for n in kept],
                "failures": server.failures - failures,
                "still": await _metrics(cluster, "nodes", "node-0")}

    r = simulate(scenario, seed=11).value
    assert r["kept"] == ["node-0"]
    assert r["failures"] == 4  # two kubelets, two scrapes
    assert r["still"]["usage"]["cpu"] == "0"


async def _nodes_with_metrics(cluster, count):
    got = await _metrics(cluster, "nodes")
    return got["items"] if not isinstance(got, ApiError) and len(got["items"]) == count else None


async def _point_kubelet_at(cluster, node, address):
    # The kubelet writes its own annotation back only when it registers again, so this
    # stays (a node whose annotation is wrong is what is being simulated).
    await cluster.client.patch("nodes", node, {"metadata": {"annotations": {
        "kubelet.actorkube.io/server": address}}})  # fmt: skip


def test_the_metrics_server_address_must_be_one():
    with pytest.raises(ValueError):
        trio.run(_start_with_bad_address)


async def _start_with_bad_address():
    async with ActorSystem() as system:
        await start_apiserver(system, start_group(system, 3).client(name="apiserver"),
                              metrics_server="metrics-server")

