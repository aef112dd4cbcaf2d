"""scheduler_perf: kube-scheduler's scheduler_perf workloads on the real in-process
control plane (a 3-member etcd group, the API server, the scheduler; no kubelets),
average pods/s next to Kubernetes' CI floors.

    python -m benchmarks.scheduler_perf [--quick] [--json PATH]

Rules of this file (test/integration/scheduler_perf/config/performance-config.yaml):

- One ``ActorSystem`` on one trio thread holds everything: etcd, the API server (its
  32 workers, admission, validation, watch caches), the scheduler actor (informers,
  queue, cache, framework, binds through pods/binding, Scheduled events) and the
  clients that create nodes and pods. Leader election is off, as in scheduler_perf.
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
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from actorkube.actor import ActorSystem
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
NAMESPACE = "sched-perf"


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


def pod_default(name: str, cpu: str = "100m", memory: str = "500Mi", **spec: Any) -> dict:
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
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"containers": [container], **spec},
    }


def unschedulable_pod(name: str) -> dict:
    """scheduler_perf's pod-large-cpu.yaml: more cpu than any node has."""
    return pod_default(name, cpu="9")


@attrs.frozen
class Workload:
    name: str
    nodes: int
    init_pods: int
    measure_pods: int
    floor: float  # Kubernetes' CI threshold, pods/s
    target: float
    init_pod: Callable[[str], dict] = pod_default
    measure_pod: Callable[[str], dict] = pod_default
    init_scheduled: bool = True  # False: the init pods stay pending


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [
            Workload("SchedulingBasic", 50, 20, 100, 270, 1000),
            Workload("Unschedulable", 50, 10, 100, 140, 3 * 140, init_pod=unschedulable_pod,
                     init_scheduled=False),
        ]  # fmt: skip
    return [
        Workload("SchedulingBasic", 5000, 1000, 10000, 270, 1000),
        Workload("Unschedulable", 5000, 200, 10000, 140, 3 * 140, init_pod=unschedulable_pod,
                 init_scheduled=False),
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
    async with ActorSystem(name="bench") as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=60),
                                    tokens=parse_token_file(f"{TOKEN},admin,1,system:masters\n"),
                                    seed=seed)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token=TOKEN, timeout=120)
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        await client.create("namespaces", namespace)
        account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}
        await client.create("serviceaccounts", account, namespace=NAMESPACE)  # as its controller
        await _create_all(client, "nodes", [node_default(f"node-{i}") for i in range(w.nodes)],
                          creators)  # fmt: skip
        scheduler = Scheduler(api.ref, token=TOKEN, identity="bench",
                              config=SchedulerConfig(leader_elect=False))  # fmt: skip
        system.spawn(lambda: scheduler, name="scheduler")
        await _until(lambda: scheduler.state is not None and len(scheduler.state.cache.nodes())
                     == w.nodes, 600)  # fmt: skip
        state = scheduler.state
        assert state is not None
        init = [w.init_pod(f"init-{i}") for i in range(w.init_pods)]
        await _create_all(client, "pods", init, creators, NAMESPACE)
        if w.init_scheduled:
            await _until(lambda: state.scheduled >= w.init_pods, 600)
        else:
            await _until(lambda: state.attempts >= w.init_pods, 600)
        base_binds, base_attempts = state.scheduled, state.attempts
        measured = [w.measure_pod(f"pod-{i}") for i in range(w.measure_pods)]
        gc.collect()
        cpu0, started = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_create_all, client, "pods", measured, creators, NAMESPACE)
            await _until(lambda: state.scheduled - base_binds >= w.measure_pods, 1800)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        pods = (await client.list("pods", namespace=NAMESPACE))["items"]
        nodes = (await client.list("nodes"))["items"]
        bound = sum(1 for p in pods if p["metadata"]["name"].startswith("pod-")
                    and p["spec"].get("nodeName"))  # fmt: skip
        result = {
            "throughput": w.measure_pods / elapsed,
            "elapsed": elapsed,
            "cpu_per_pod_ms": 1000 * cpu / w.measure_pods,
            "bound": bound,
            "overcommitted": _overcommitted(nodes, pods),
            "attempts": state.attempts - base_attempts,
            "events_dropped": state.events.dropped,
        }
        return result


def build(quick: bool) -> Report:
    creators = 20 if quick else 50
    results: list[Result] = []
    summary: list[str] = []
    parameters: dict[str, Any] = {"creators": creators, "workloads": {}}
    with long_lived_heap_gc():
        for w in workloads(quick):
            print(f"{w.name}: {w.nodes} nodes, {w.init_pods} init pods, "
                  f"{w.measure_pods} measured pods ...", file=__import__("sys").stderr)  # fmt: skip
            got = trio.run(_run_workload, w, creators, 1)
            parameters["workloads"][w.name] = {"nodes": w.nodes, "init_pods": w.init_pods,
                                               "measure_pods": w.measure_pods}  # fmt: skip
            met = got["throughput"] >= w.target
            checks_ok = got["bound"] == w.measure_pods and got["overcommitted"] == 0
            results.append(Result(f"{w.name}.throughput", round(got["throughput"], 1), "pods/s",
                                  {"workload": w.name, "kubernetes_floor": w.floor,
                                   "target": w.target, "met": met,
                                   "ratio_to_floor": round(got["throughput"] / w.floor, 2),
                                   "note": f"{w.nodes} nodes; floor {w.floor:g}"}))  # fmt: skip
            results.append(Result(f"{w.name}.cpu_per_pod", round(got["cpu_per_pod_ms"], 3),
                                  "ms", {"workload": w.name, "note": "whole process, create "
                                         "to bind"}))  # fmt: skip
            results.append(Result(f"{w.name}.bound", got["bound"], "pods",
                                  {"workload": w.name, "overcommitted_nodes":
                                   got["overcommitted"], "attempts": got["attempts"],
                                   "events_dropped": got["events_dropped"],
                                   "correct": checks_ok}))  # fmt: skip
            summary.append(
                f"{w.name}: {got['throughput']:,.0f} pods/s, {got['throughput'] / w.floor:.1f}x "
                f"Kubernetes' floor {w.floor:g} (target {w.target:g}): "
                f"{'met' if met else 'NOT met'}; {got['bound']}/{w.measure_pods} bound, "
                f"{got['overcommitted']} nodes overcommitted"
            )
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        parameters,
        notes={
            "method": "one ActorSystem, one trio thread: 3 etcd members in memory, the API "
            "server, the scheduler and the creators; throughput from the first measured "
            "create to the last measured bind",
        },
        summary=tuple(summary),
    )


def main(argv=None) -> int:
    return run_main(__doc__.splitlines()[0], build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
