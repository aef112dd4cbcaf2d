"""scheduler_perf: kube-scheduler's scheduler_perf workloads on the real in-process
control plane (a 3-member etcd group, the API server, the scheduler; no kubelets),
average pods/s next to Kubernetes' CI floors.

    python -m benchmarks.scheduler_perf [--quick] [--json PATH]

Rules of this file (test/integration/scheduler_perf/config/performance-config.yaml):

- One ``ActorSystem`` on one trio thread holds everything: etcd, the API server (its
  32 workers, admission, validation, watch caches), the scheduler actor (informers,
  queue, cache, framework, binds through pods/binding, Scheduled events) and the
  clients that create nodes and pods. Leader election is off, and the ServiceAccount
  admission plugin is disabled, as in scheduler_perf (its pods name no account; no
  service account is made).
- Each workload creates its nodes (scheduler_perf's node-default: 4 cpu, 32 Gi, 110
  pods), then its init pods, and waits until the scheduler has handled them; then the
  measured pods are created by ``creators`` closed-loop clients while the scheduler
  runs. Throughput is measured pods bound / seconds from the first measured create to
  the last measured bind (scheduler_perf averages per-second samples of the same
  count over the same window).
- After each workload one list checks what was measured: every measured pod is bound
  and no node holds more than its allocatable cpu, memory and pod count.
- Kubernetes' floor is the CI threshold for the workload; the target is 1,000 pods/s
  for SchedulingBasic and three times the floor for the others.
- ``SchedulingBasic.one_etcd_member`` runs SchedulingBasic against a one-member etcd
  group, as Kubernetes' scheduler_perf runs against one etcd process: what the
  3-member group's replication costs (judged against the floor, not the target).
"""

from __future__ import annotations

import gc
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actorkube.actor import SERVER_TIMER_SLACK, ActorSystem
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._quantity import Quantity
from actorkube.apiserver._start import start_apiserver
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.heap import long_lived_heap_gc
from actorkube.scheduler import Scheduler, SchedulerConfig

from ._report import Report, Result, environment, run_main

BENCHMARK = "scheduler_perf"
PACKAGES = ("actorkube", "trio", "msgpack", "attrs", "numpy")
TOKEN = "bench-admin-token"
NAMESPACES = ("sched-0", "sched-1")


def node_default(name: str, labels: dict[str, str] | None = None) -> dict:
    """scheduler_perf's node-default.yaml."""
    resources = {"pods": "110", "cpu": "4", "memory": "32Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "status": {"capacity": resources, "allocatable": resources,
                   "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }  # fmt: skip


def pod_default(name: str, cpu: str = "100m", memory: str = "500Mi", labels=None,
                **spec: Any) -> dict:  # fmt: skip
    """scheduler_perf's pod-default.yaml."""
    container = {
        "name": "pause",
        "image": "registry.k8s.io/pause:3.10",
        "ports": [{"containerPort": 80}],
        "resources": {"limits": {"cpu": cpu, "memory": memory},
                      "requests": {"cpu": cpu, "memory": memory}},
    }  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"containers": [container], **spec},
    }


def pod_large_cpu(name: str) -> dict:
    """pod-large-cpu.yaml: more cpu than any node has."""
    return pod_default(name, cpu="9")


def pod_low_priority(name: str) -> dict:
    """pod-low-priority.yaml: four fill a node; deleted at once when preempted."""
    return pod_default(name, cpu="900m", priority=0, terminationGracePeriodSeconds=0)


def pod_high_priority(name: str) -> dict:
    """pod-high-priority.yaml: needs three low-priority pods of a node gone."""
    return pod_default(name, cpu="3", priority=10)


def _term(key: str, selector: dict) -> dict:
    return {"labelSelector": selector, "topologyKey": key, "namespaces": ["sched-0", "sched-1"]}


def pod_with_anti_affinity(name: str) -> dict:
    """pod-with-pod-anti-affinity.yaml: one such pod per host."""
    selector = {"matchLabels": {"color": "green"}}
    return pod_default(name, labels={"color": "green", "name": "test"}, affinity={
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            _term("kubernetes.io/hostname", selector)]}})  # fmt: skip


def pod_with_affinity(name: str) -> dict:
    """pod-with-pod-affinity.yaml: every such pod in one zone."""
    selector = {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}
    return pod_default(name, labels={"foo": "bar"}, affinity={
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            _term("topology.kubernetes.io/zone", selector)]}})  # fmt: skip


def pod_with_topology_spreading(name: str) -> dict:
    """pod-with-topology-spreading.yaml: hard spreading over hosts and zones."""
    selector = {"matchLabels": {"foo": "bar"}}
    return pod_default(name, labels={"foo": "bar"}, topologySpreadConstraints=[
        {"maxSkew": 5, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
         "labelSelector": selector}
        for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")])  # fmt: skip


def one_zone(i: int) -> dict[str, str]:
    return {"topology.kubernetes.io/zone": "zone1"}


def three_zones(i: int) -> dict[str, str]:
    return {"topology.kubernetes.io/zone": f"moon-{i % 3 + 1}"}


@attrs.frozen
class Workload:
    name: str
    nodes: int
    init_pods: int
    measure_pods: int
    floor: float | None  # Kubernetes' CI threshold, pods/s (None: not published)
    target: float | None
    init_pod: Callable[[str], dict] = pod_default
    measure_pod: Callable[[str], dict] = pod_default
    init_scheduled: bool = True  # False: the init pods stay pending
    node_labels: Callable[[int], dict[str, str]] | None = None
    init_namespace: str = "sched-0"
    measure_namespace: str = "sched-0"
    etcd_members: int = 3


def workloads(quick: bool) -> list[Workload]:
    """scheduler_perf's workloads at their 5000-node sizes (PreemptionBasic: 500 nodes,
    its only size), or tiny ones with ``quick``."""
    big = 5000
    sizes = {  # name: (nodes, init pods, measured pods)
        "SchedulingBasic": (big, 1000, 10000),
        "SchedulingPodAntiAffinity": (big, 1000, 1000),
        "SchedulingPodAffinity": (big, 5000, 1000),
        "TopologySpreading": (big, 5000, 2000),
        "PreemptionBasic": (500, 2000, 500),
        "Unschedulable": (big, 200, 5000),
    }
    if quick:  # anti-affinity and preemption place at most one measured pod per node
        sizes = {name: (40, 20, 60) for name in sizes}
        sizes["SchedulingPodAntiAffinity"] = (40, 10, 20)
        sizes["PreemptionBasic"] = (40, 160, 20)

    def w(name: str, floor, target, **options) -> Workload:
        nodes, init, measure = sizes[name]
        return Workload(name, nodes, init, measure, floor, target, **options)

    basic = w("SchedulingBasic", 270, 1000)
    return [
        basic,
        # Kubernetes' scheduler_perf runs against one etcd: the same workload so, to show
        # what replication costs (judged against the floor only; the target is the
        # 3-member group's).
        attrs.evolve(basic, name="SchedulingBasic.one_etcd_member", target=None,
                     etcd_members=1),
        w("SchedulingPodAntiAffinity", None, None, init_pod=pod_with_anti_affinity,
          measure_pod=pod_with_anti_affinity, measure_namespace="sched-1"),
        w("SchedulingPodAffinity", None, None, init_pod=pod_with_affinity,
          measure_pod=pod_with_affinity, node_labels=one_zone, measure_namespace="sched-1"),
        w("TopologySpreading", 85, 3 * 85, measure_pod=pod_with_topology_spreading,
          node_labels=three_zones),
        w("PreemptionBasic", 18, 3 * 18, init_pod=pod_low_priority,
          measure_pod=pod_high_priority),
        w("Unschedulable", 140, 3 * 140, init_pod=pod_large_cpu, init_scheduled=False),
    ]  # fmt: skip


async def _create_all(client: ApiClient, resource: str, objects: list[dict], creators: int,
                      namespace: str = "") -> None:  # fmt: skip
    queue = iter(objects)

    async def creator() -> None:
        for obj in queue:
            await client.create(resource, obj, namespace=namespace)

    async with trio.open_nursery() as nursery:
        for _ in range(creators):
            nursery.start_soon(creator)


async def _until(check: Callable[[], bool], limit: float) -> None:
    with trio.fail_after(limit):
        while not check():
            await trio.sleep(0.01)


def _overcommitted(nodes: list[dict], pods: list[dict]) -> int:
    """How many nodes hold more than their allocatable cpu, memory or pods."""
    used: dict[str, list[int]] = {}
    for p in pods:
        node = p["spec"].get("nodeName")
        if not node:
            continue
        u = used.setdefault(node, [0, 0, 0])
        for c in p["spec"]["containers"]:
            req = (c.get("resources") or {}).get("requests") or {}
            u[0] += Quantity.parse(req.get("cpu", "0")).milli_value()
            u[1] += Quantity.parse(req.get("memory", "0")).value()
        u[2] += 1
    bad = 0
    for n in nodes:
        a = n["status"]["allocatable"]
        u = used.get(n["metadata"]["name"], [0, 0, 0])
        limits = (Quantity.parse(a["cpu"]).milli_value(), Quantity.parse(a["memory"]).value(),
                  int(a["pods"]))  # fmt: skip
        bad += any(x > limit for x, limit in zip(u, limits, strict=True))
    return bad


async def _run_workload(w: Workload, creators: int, seed: int) -> dict[str, Any]:
    async with ActorSystem(name="bench", timer_slack=SERVER_TIMER_SLACK) as system:
        group = start_group(system, w.etcd_members)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=60),
                                    tokens=parse_token_file(f"{TOKEN},admin,1,system:masters\n"),
                                    seed=seed,
                                    disable_admission_plugins=["ServiceAccount"])  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token=TOKEN, timeout=120)
        for ns in NAMESPACES:
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            await client.create("namespaces", namespace)
        labels = w.node_labels or (lambda i: {})
        nodes = [node_default(f"node-{i}", labels(i)) for i in range(w.nodes)]
        await _create_all(client, "nodes", nodes, creators)
        scheduler = Scheduler(api.ref, token=TOKEN, identity="bench",
                              config=SchedulerConfig(leader_elect=False))  # fmt: skip
        system.spawn(lambda: scheduler, name="scheduler")
        await _until(lambda: scheduler.state is not None and len(scheduler.state.cache.nodes())
                     == w.nodes, 600)  # fmt: skip
        state = scheduler.state
        assert state is not None
        init = [w.init_pod(f"init-{i}") for i in range(w.init_pods)]
        await _create_all(client, "pods", init, creators, w.init_namespace)
        if w.init_scheduled:
            await _until(lambda: state.scheduled >= w.init_pods, 600)
        else:
            await _until(lambda: state.attempts >= w.init_pods, 600)
        base_binds, base_attempts = state.scheduled, state.attempts
        measured = [w.measure_pod(f"pod-{i}") for i in range(w.measure_pods)]
        gc.collect()
        cpu0, started = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_create_all, client, "pods", measured, creators,
                               w.measure_namespace)  # fmt: skip
            await _until(lambda: state.scheduled - base_binds >= w.measure_pods, 1800)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        pods = (await client.list("pods"))["items"]
        nodes = (await client.list("nodes"))["items"]
        measured_pods = [p for p in pods if p["metadata"]["name"].startswith("pod-")]
        bound = sum(1 for p in measured_pods if p["spec"].get("nodeName"))
        result = {
            "violations": _violations(w, nodes, measured_pods),
            "preemptions": state.preemptions,
            "throughput": w.measure_pods / elapsed,
            "elapsed": elapsed,
            "cpu_per_pod_ms": 1000 * cpu / w.measure_pods,
            "bound": bound,
            "overcommitted": _overcommitted(nodes, pods),
            "attempts": state.attempts - base_attempts,
            "events_dropped": state.events.dropped,
        }
        return result


def _violations(w: Workload, nodes: list[dict], pods: list[dict]) -> int:
    """Broken placement rules among the measured workload's pods: two anti-affine
    pods on one host, or a spread skew beyond 5 over hosts or zones."""
    placed = [p for p in pods if p["spec"].get("nodeName")]
    if w.measure_pod is pod_with_anti_affinity:
        hosts = Counter(p["spec"]["nodeName"] for p in placed
                        if (p["metadata"].get("labels") or {}).get("color") == "green")  # fmt: skip
        return sum(1 for n in hosts.values() if n > 1)
    if w.measure_pod is pod_with_topology_spreading:
        zone_of = {n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/zone"]
                   for n in nodes}  # fmt: skip
        spread = [p["spec"]["nodeName"] for p in placed
                  if (p["metadata"].get("labels") or {}).get("foo") == "bar"]  # fmt: skip
        hosts = Counter({name: 0 for name in zone_of}) + Counter(spread)
        hosts.update({name: 0 for name in zone_of})
        zones = Counter({z: 0 for z in zone_of.values()})
        zones.update(zone_of[h] for h in spread)
        return int(max(hosts.values()) - min(hosts.values()) > 5) + int(
            max(zones.values()) - min(zones.values()) > 5
        )
    return 0


def build(quick: bool) -> Report:
    creators = 20 if quick else 50
    results: list[Result] = []
    summary: list[str] = []
    parameters: dict[str, Any] = {"creators": creators, "workloads": {}}
    with long_lived_heap_gc():
        for w in workloads(quick):
            print(f"{w.name}: {w.nodes} nodes, {w.init_pods} init pods, "
                  f"{w.measure_pods} measured pods ...", file=sys.stderr)  # fmt: skip
            got = trio.run(_run_workload, w, creators, 1)
            parameters["workloads"][w.name] = {"nodes": w.nodes, "init_pods": w.init_pods,
                                               "measure_pods": w.measure_pods}  # fmt: skip
            rate = got["throughput"]
            correct = (got["bound"] == w.measure_pods and got["overcommitted"] == 0
                       and got["violations"] == 0)  # fmt: skip
            extra: dict[str, Any] = {"workload": w.name, "nodes": w.nodes,
                                     "etcd_members": w.etcd_members}  # fmt: skip
            if w.floor is not None:
                extra.update(kubernetes_floor=w.floor, ratio_to_floor=round(rate / w.floor, 2))
                verdict = f"{rate / w.floor:.1f}x Kubernetes' floor {w.floor:g}"
                if w.target is not None:
                    met = "met" if rate >= w.target else "NOT met"
                    extra.update(target=w.target, met=rate >= w.target,
                                 note=f"floor {w.floor:g}, target {w.target:g}")  # fmt: skip
                    verdict += f" (target {w.target:g}): {met}"
                else:
                    extra["note"] = f"floor {w.floor:g}"
            else:
                extra["note"] = "no published floor"
                verdict = "no published Kubernetes floor"
            results.append(Result(f"{w.name}.throughput", round(rate, 1), "pods/s", extra))
            cpu = round(got["cpu_per_pod_ms"], 3)
            results.append(Result(f"{w.name}.cpu_per_pod", cpu, "ms", {
                "workload": w.name, "note": "whole process, create to bind"}))  # fmt: skip
            results.append(Result(f"{w.name}.bound", got["bound"], "pods", {
                "workload": w.name, "overcommitted_nodes": got["overcommitted"],
                "rule_violations": got["violations"], "attempts": got["attempts"],
                "preemptions": got["preemptions"], "events_dropped": got["events_dropped"],
                "correct": correct}))  # fmt: skip
            summary.append(
                f"{w.name} ({w.nodes} nodes): {rate:,.0f} pods/s, {verdict}; "
                f"{got['bound']}/{w.measure_pods} bound, {got['overcommitted']} nodes "
                f"overcommitted, {got['violations']} rule violations"
            )
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        parameters,
        notes={
            "method": "one ActorSystem, one trio thread: 3 etcd members in memory (1 in the "
            "one_etcd_member row, as Kubernetes' scheduler_perf runs), the API "
            "server, the scheduler and the creators; throughput from the first measured "
            "create to the last measured bind",
            "templates": "scheduler_perf's node-default, pod-default, pod-large-cpu, "
            "pod-low/high-priority, pod-with-pod-(anti-)affinity and "
            "pod-with-topology-spreading, as actorkube reads them",
        },
        summary=tuple(summary),
    )


def main(argv=None) -> int:
    return run_main(__doc__.splitlines()[0], build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
