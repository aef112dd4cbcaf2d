"""``kubectl top`` with the real kubectl (found on PATH; the tests fail loudly without
it): against an HTTPS API server with one simulated node and a metrics server scraping
it twice a second, and against ``actorkube up`` (real processes, the default 15 s
resolution); ``kubectl get --raw`` of a PodMetrics; the errors kubectl shows (a pod
without metrics, a user without RBAC, a cluster without a metrics server)."""

from __future__ import annotations

import json
import re

import trio
from http_cluster import serve_front_end
from kubectl_run import kubectl
from root_ca import publish_root_ca
from up_run import start, stop

from actorkube.actor import ActorSystem
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group
from actorkube.metrics import MetricsServer
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.runtime import SimProfile, SimRuntime
from actorkube.pki import ClusterPki, kubeconfig

TOKENS = """\
admin-token,admin,1,system:masters
alice-token,alice,2
node-token,system:node:n1,3,system:nodes
metrics-token,system:serviceaccount:kube-system:metrics-server,4,"system:serviceaccounts,system:serviceaccounts:kube-system"
"""
PROFILES = {"app": SimProfile(cpu_millis=250, memory_bytes=64 << 20),
            "side": SimProfile(cpu_millis=50, memory_bytes=16 << 20)}  # fmt: skip
POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default, labels: {app: web}}
spec:
  nodeName: n1
  containers:
  - {name: app, image: app}
  - {name: side, image: side}
"""
ROW = re.compile(r"\S+\s+\d+m\s+.*\d+(Ki|Mi|Gi)")  # a name, CPU in millicores, memory


async def _cluster(tmp_path, nursery, system, *, metrics: bool = True):
    """The API server (with a metrics server, or without), one simulated node, HTTPS;
    ``run(*args)`` runs kubectl as the admin, ``run(..., config=alice)`` as alice."""
    pki = ClusterPki.load_or_create(tmp_path / "pki")
    api = await start_apiserver(
        system, start_group(system, 3, tick_interval=0.05).client(name="apiserver", timeout=30),
        tokens=parse_token_file(TOKENS), client_ca=pki.ca.cert, seed=1,
        metrics_server=f"ak://{system.name}/metrics-server" if metrics else None,
    )  # fmt: skip
    await api.ready()
    await publish_root_ca(system, api, pki.ca.cert)
    runtime = SimRuntime("10.244.1.0/24", profiles=PROFILES, wall_clock=system.clock.now)
    await nursery.start(runtime.run)
    node = NodeConfig("n1", capacity={"cpu": "2", "memory": "4Gi", "pods": "10"})
    system.spawn(lambda: Kubelet(api.ref, runtime, KubeletConfig(node), token="node-token"),
                 name="kubelet")  # fmt: skip
    if metrics:
        system.spawn(lambda: MetricsServer(api.ref, token="metrics-token",
                                           metric_resolution=0.5), name="metrics-server")

    url = await serve_front_end(system, nursery, api, pki)
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(kubeconfig(url, pki.ca.cert, user="admin", token="admin-token"))
    alice = tmp_path / "alice.kubeconfig"
    alice.write_text(kubeconfig(url, pki.ca.cert, user="alice", token="alice-token"))

    async def run(*args: str, stdin: str = "", config=admin):
        return await kubectl(config, tmp_path / "cache", *args, stdin=stdin.encode())

    return run, alice


async def _until_ok(run, *args: str, shows: str = "", limit: float = 60.0) -> str:
    """kubectl's output once it succeeds and ``shows`` is in it (metrics come with the
    first scrape after the containers run)."""
    with trio.fail_after(limit):
        while True:
            code, out, _ = await run(*args)
            if code == 0 and out.strip() and shows in out:
                return out
            await trio.sleep(0.5)


async def test_kubectl_top_nodes_and_pods(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, alice = await _cluster(tmp_path, nursery, system)
        code, _, err = await run("apply", "-f", "-", stdin=POD)
        assert code == 0, err
        code, _, err = await run("wait", "--for=condition=Ready", "pod/web", "--timeout=60s")
        assert code == 0, err

        out = await _until_ok(run, "top", "node", shows="300m")
        header, *rows = out.splitlines()
        assert header.split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
        [row] = rows
        assert row.split()[:2] == ["n1", "300m"] and row.split()[3] == "80Mi"
        assert row.split()[2] == "15%"  # of the node's 2 allocatable cores

        out = await _until_ok(run, "top", "pod")
        header, *rows = out.splitlines()
        assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        assert [r.split() for r in rows] == [["web", "300m", "80Mi"]]
        assert all(ROW.match(r) for r in rows)
        out = await _until_ok(run, "top", "pod", "web", "--containers")
        assert [r.split() for r in out.splitlines()[1:]] == [["web", "app", "250m", "64Mi"],
                                                             ["web", "side", "50m", "16Mi"]]
        out = await _until_ok(run, "top", "pod", "-l", "app=web", "-A")
        assert out.splitlines()[1].split() == ["default", "web", "300m", "80Mi"]

        code, out, err = await run("get", "--raw",
                                   "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
        assert code == 0, err
        metrics = json.loads(out)
        assert (metrics["kind"], metrics["apiVersion"]) == ("PodMetrics", "metrics.k8s.io/v1beta1")
        assert set(metrics) == {"kind", "apiVersion", "metadata", "timestamp", "window",
                                "containers"}  # fmt: skip
        assert metrics["metadata"]["name"] == "web" and metrics["metadata"]["labels"] == {
            "app": "web"}  # fmt: skip
        assert set(metrics["metadata"]) == {"name", "namespace", "creationTimestamp", "labels"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", metrics["timestamp"])
        assert re.fullmatch(r"[0-9.]+m?s", metrics["window"])
        assert metrics["containers"] == [
            {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "side", "usage": {"cpu": "50m", "memory": "16Mi"}}]  # fmt: skip

        # kubectl get asks for a Table: metrics-server's columns.
        code, out, err = await run("get", "pods.metrics.k8s.io")
        assert code == 0, err
        header, row = out.splitlines()
        assert header.split() == ["NAME", "CPU", "MEMORY", "WINDOW"]
        assert row.split()[:3] == ["web", "300m", "80Mi"]

        code, out, err = await run("top", "pod", "nosuch")
        assert code == 1 and 'pods "nosuch" not found' in err
        code, out, err = await run("top", "pod", config=alice)
        assert code == 1 and "Forbidden" in err and 'User "alice" cannot list' in err
        code, out, err = await run("api-resources", "--api-group=metrics.k8s.io")
        assert code == 0, err
        assert [r.split()[0] for r in out.splitlines()[1:]] == ["nodes", "pods"]
        nursery.cancel_scope.cancel()


async def test_without_a_metrics_server_kubectl_top_says_the_api_is_missing(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system, metrics=False)
        for what in ("node", "pod"):
            code, _, err = await run("top", what)
            assert code == 1 and "Metrics API not available" in err, err
        nursery.cancel_scope.cancel()


async def test_kubectl_top_and_autoscale_against_actorkube_up(tmp_path):
    process, config = await start(tmp_path / "cluster")
    cache = tmp_path / "cache"

    async def run(*args: str):
        return await kubectl(config, cache, *args)

    try:
        code, _, err = await run("run", "sleeper", "--image=busybox", "--", "sleep", "3600")
        assert code == 0, err
        code, _, err = await run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
        assert code == 0, err
        # The first scrape comes as the metrics server starts, the next 15 s later.
        out = await _until_ok(run, "top", "node")
        [row] = out.splitlines()[1:]
        assert re.fullmatch(r"\S+\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%", row.strip()), row
        out = await _until_ok(run, "top", "pod", shows="sleeper")
        [row] = out.splitlines()[1:]
        assert ROW.match(row), row
        # The autoscaler reads the same metrics: an idle Deployment shows 0% of its
        # target once its pod's readiness is a metric window old (Kubernetes' CPU
        # initialisation rule), and stays at its minimum.
        for args in (("create", "deployment", "idle", "--image=busybox", "--", "sleep", "3600"),
                     ("set", "resources", "deployment", "idle", "--requests=cpu=100m"),
                     ("autoscale", "deployment", "idle", "--cpu-percent=50", "--min=1",
                      "--max=3")):  # fmt: skip
            code, _, err = await run(*args)
            assert code == 0, err
        out = await _until_ok(run, "get", "hpa", "idle", shows="cpu: 0%/50%", limit=120)
        header, row = out.splitlines()
        assert header.split()[:6] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                                      "REPLICAS"]  # fmt: skip
        assert row.split()[:7] == ["idle", "Deployment/idle", "cpu:", "0%/50%", "1", "3", "1"]
    finally:
        assert await stop(process) == 0
