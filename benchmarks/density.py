"""density: Kubernetes' density test on simulated nodes: pods created at a steady rate,
startup latency from creation to Running seen by a watch, and the process's memory.

    python -m benchmarks.density [--quick] [--json PATH]

Rules of this file:

- One ``ActorSystem`` on one trio thread holds the control plane (a 3-member etcd
  group in memory, the API server, the scheduler) and N nodes, each a real kubelet
  (its own user, Node, Lease, informers, pod workers, status writes) on its own
  simulated runtime, whose containers start at once and run until stopped.
- The nodes register first, 250 at a time (not measured). Then ``30 * N`` pods (the
  pause image, 10m CPU, 20Mi) are created at ``rate`` pods/s by closed-loop clients that never
  start a create before its turn; a watch on the pods records when each is first
  seen Running with every container ready. Startup latency is that moment minus
  the moment its create was sent (Kubernetes' e2e pod startup latency: creation to
  watch observation); Kubernetes' SLO is p99 <= 5 s.
- Pods get their service account's token volume (the ServiceAccount admission
  plugin's): each kubelet asks a TokenRequest for each pod and reads the namespace's
  ``kube-root-ca.crt`` (the root CA publisher runs beside), as Kubernetes' do.
- The kubelets keep Kubernetes' timings: a Lease renewed every 10 s (40 s lease),
  the node status checked every 10 s and written on change or every 5 minutes.
- Peak memory is the process's peak resident set (``ru_maxrss``); CPU is the
  process's CPU time over the measured phase.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
from typing import Any

import trio

from actorkube.actor import SERVER_TIMER_SLACK, ActorSystem
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._start import start_apiserver
from actorkube.client import ApiClient, Informer
from actorkube.controllers import RootCACertPublisher
from actorkube.etcd import start_group
from actorkube.heap import long_lived_heap_gc
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.runtime import SimRuntime
from actorkube.scheduler import Scheduler, SchedulerConfig

from ._report import Report, Result, environment, run_main

BENCHMARK = "density"
PACKAGES = ("actorkube", "trio", "msgpack", "attrs", "numpy")
TOKEN = "bench-admin-token"
NAMESPACE = "density"
BENCH_CA = b"-----BEGIN CERTIFICATE-----\nMIIBbench\n-----END CERTIFICATE-----\n"
PODS_PER_NODE = 30
SLO_P99 = 5.0
JOIN_BATCH = 250  # nodes started at once


def pod_cidr(i: int) -> str:
    return f"10.{64 + i // 256}.{i % 256}.0/24"


def density_pod(name: str) -> dict:
    resources = {"cpu": "10m", "memory": "20Mi"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "density"}},
        "spec": {"containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10",
                                 "resources": {"requests": resources, "limits": resources}}]},
    }  # fmt: skip


def _running(pod: dict) -> bool:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or ()
    return status.get("phase") == "Running" and bool(containers) and all(
        c.get("ready") for c in containers
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _recorder(seen: dict[str, float]):
    """An informer handler that records when each pod is first seen running."""

    def record(*objects: dict) -> None:
        pod = objects[-1]
        name = pod["metadata"]["name"]
        if name not in seen and _running(pod):
            seen[name] = time.perf_counter()

    return record


async def run(nodes: int, pods_per_node: int, rate: float, creators: int) -> dict[str, Any]:
    tokens = f"{TOKEN},admin,1,system:masters\n" + "".join(
        f"node-{i}-token,system:node:node-{i},n{i},system:nodes\n" for i in range(nodes)
    )
    async with ActorSystem(name="density", timer_slack=SERVER_TIMER_SLACK) as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=60),
                                    tokens=parse_token_file(tokens), seed=1)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token=TOKEN, timeout=120)
        await client.create("namespaces", {"metadata": {"name": NAMESPACE}})
        await client.create("serviceaccounts", {"metadata": {"name": "default"}},
                            namespace=NAMESPACE)  # fmt: skip
        # Pods mount their service account's token and the cluster CA, which the root CA
        # publisher of the controller manager puts in every namespace.
        publisher = RootCACertPublisher(api.ref, token=TOKEN, root_ca=BENCH_CA)
        system.spawn(lambda: publisher, name="root-ca-cert-publisher")
        scheduler = Scheduler(api.ref, token=TOKEN, identity="bench",
                              config=SchedulerConfig(leader_elect=False))  # fmt: skip
        system.spawn(lambda: scheduler, name="scheduler")
        async with trio.open_nursery() as running:
            got = await _measure(system, api, client, scheduler, running, nodes,
                                 pods_per_node, rate, creators)  # fmt: skip
            running.cancel_scope.cancel()
        return got


async def _measure(system, api, client, scheduler, running, nodes, pods_per_node, rate,
                   creators) -> dict[str, Any]:  # fmt: skip
    """Start the nodes (their runtimes in ``running``), then create and time the pods."""
    kubelets = []
    registered = time.perf_counter()
    for i in range(nodes):
        runtime = SimRuntime(pod_cidr(i), wall_clock=system.clock.now)
        running.start_soon(runtime.run)  # each node's runtime runs beside its kubelet
        config = KubeletConfig(NodeConfig(f"node-{i}", ip=f"127.1.{i // 256}.{i % 256}",
                                          capacity={"cpu": "4", "memory": "32Gi",
                                                    "pods": "110"}))  # fmt: skip
        kubelet = Kubelet(api.ref, runtime, config, token=f"node-{i}-token")
        kubelets.append(kubelet)
        system.spawn(lambda k=kubelet: k, name=f"kubelet-node-{i}")
        if i % JOIN_BATCH == JOIN_BATCH - 1 or i == nodes - 1:
            # Nodes join a few hundred at a time, as machines come up, rather than all
            # their lists and watches at one instant.
            with trio.fail_after(1800):
                while not all(k.state is not None and k.state.registered.is_set()
                              for k in kubelets[-JOIN_BATCH:]):  # fmt: skip
                    await trio.sleep(0.1)
    with trio.fail_after(1800):
        while scheduler.state is None or len(scheduler.state.cache.nodes()) < nodes:
            await trio.sleep(0.1)
    registered = time.perf_counter() - registered
    total = nodes * pods_per_node
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    gc.collect()
    async with trio.open_nursery() as nursery:
        # An informer, as Kubernetes' density test watches: it lists again when its
        # watch falls too far behind (410 Gone), so no pod is missed.
        informer = Informer(client, "pods", namespace=NAMESPACE)
        informer.add_handler(_recorder(seen), _recorder(seen))
        await nursery.start(informer.run)
        cpu0, start = time.process_time(), time.perf_counter()
        turns = iter(range(total))

        async def creator() -> None:
            for i in turns:
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await trio.sleep(delay)
                name = f"density-{i}"
                sent[name] = time.perf_counter()
                await client.create("pods", density_pod(name), namespace=NAMESPACE)

        async with trio.open_nursery() as creating:
            for _ in range(creators):
                creating.start_soon(creator)
        created = time.perf_counter() - start
        with trio.fail_after(1800):
            while len(seen) < total:
                await trio.sleep(0.1)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        nursery.cancel_scope.cancel()
    latencies = [seen[name] - sent[name] for name in sent]
    syncs = sum(k.state.syncs for k in kubelets if k.state is not None)
    return {
        "nodes": nodes,
        "pods": total,
        "register_seconds": registered,
        "create_rate": total / created,
        "elapsed": elapsed,
        "cpu_per_pod_ms": 1000 * cpu / total,
        "p50": percentile(latencies, 0.50),
        "p90": percentile(latencies, 0.90),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "syncs_per_pod": syncs / total,
    }


def build(quick: bool) -> Report:
    nodes = 1000 if quick else 5000
    rate = 100.0
    creators = 50
    print(f"density: {nodes} nodes, {nodes * PODS_PER_NODE} pods at {rate:g} pods/s ...",
          file=sys.stderr)  # fmt: skip
    with long_lived_heap_gc():
        got = trio.run(run, nodes, PODS_PER_NODE, rate, creators)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    met = got["p99"] <= SLO_P99 and got["create_rate"] >= 0.95 * rate
    common = {"nodes": nodes, "pods": got["pods"]}
    results = [
        Result("create_rate", round(got["create_rate"], 1), "pods/s",
               {**common, "asked": rate, "note": f"asked {rate:g}"}),
        Result("startup_latency.p50", round(got["p50"], 3), "s", common),
        Result("startup_latency.p90", round(got["p90"], 3), "s", common),
        Result("startup_latency.p99", round(got["p99"], 3), "s",
               {**common, "slo": SLO_P99, "met": got["p99"] <= SLO_P99,
                "note": f"Kubernetes' SLO: p99 <= {SLO_P99:g} s"}),
        Result("startup_latency.max", round(got["max"], 3), "s", common),
        Result("peak_rss", round(peak, 1), "MiB", {**common, "note": "whole process"}),
        Result("cpu_per_pod", round(got["cpu_per_pod_ms"], 3), "ms",
               {**common, "note": "whole process, measured phase"}),
        Result("register_time", round(got["register_seconds"], 1), "s",
               {**common, "note": "every node registered and seen by the scheduler"}),
        Result("kubelet_syncs_per_pod", round(got["syncs_per_pod"], 2), "syncs", common),
    ]  # fmt: skip
    verdict = "met" if met else "NOT met"
    summary = (
        f"{nodes} nodes, {got['pods']} pods created at {got['create_rate']:.0f} pods/s: "
        f"startup p50 {got['p50']:.2f} s, p99 {got['p99']:.2f} s (SLO 5 s), peak "
        f"{peak:,.0f} MiB; target (5,000 nodes, 150,000 pods, >= 100 pods/s, p99 <= 5 s): "
        f"{verdict if not quick else 'quick run, not judged'}",
    )
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        {"nodes": nodes, "pods_per_node": PODS_PER_NODE, "rate": rate, "creators": creators,
         "lease_duration": 40, "lease_renew": 10, "node_status_update": 10},
        notes={"method": "one ActorSystem, one trio thread: 3 etcd members, the API server, "
               "the scheduler and a kubelet with a simulated runtime per node; latency from "
               "each create sent to the watch seeing the pod Running and ready"},
        summary=summary,
    )  # fmt: skip


def main(argv=None) -> int:
    return run_main(__doc__.splitlines()[0], build, argv)


if __name__ == "__main__":
    raise SystemExit(main())
