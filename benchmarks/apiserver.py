"""apiserver: create, get, update and list latency and throughput, Kubernetes' API call
latency SLOs with 150,000 pods stored, and watch fan-out (one writer, 1,000 watchers),
through the in-process client.

    python -m benchmarks.apiserver [--quick] [--json PATH]

Rules of this file:

- One ``ActorSystem`` on one trio thread holds a 3-member etcd group (in memory), the API
  server (``start_apiserver``, its default 32 workers) and the clients (``ApiClient``
  with the admin token, so every request passes authentication, RBAC, admission,
  validation and etcd). The long-lived-heap GC policy (``actorkube.heap``) is on, as in
  ``actorkube up``.
- Load: ``pods`` pods spread over ``namespaces`` namespaces, created by ``loaders``
  closed-loop clients; that row is the create throughput and latency while the store
  grows from empty to full.
- Rows at full size: closed-loop clients (1 and ``clients``) for ``seconds`` each doing
  one kind of request: get a random pod, update a random pod (a read, then the update
  whose latency counts; each client updates its own pods, so conflicts are rare and
  counted), create, delete, and list one namespace's pods.
- SLO: Kubernetes' API call latency SLOs (sig-scalability/slos/api_call_latency.md,
  99th percentile over the run): mutating and single-object read calls <= 1 s; list
  calls <= 5 s per namespace and <= 30 s cluster-wide. For ``slo_seconds`` a mixed load
  runs at once (mutators, readers, a namespace lister, and a cluster-wide lister that
  walks every pod in pages of 500 as kubectl does) and each call's latency goes to its
  SLO's category; ``met`` says whether the p99 is within the SLO. A stress run
  (``stress_seconds``) repeats it with the cluster-wide lister listing every pod in one
  call, back to back: not the SLO's load, but what a process pays when it does that.
- Watch fan-out: ``watchers`` watches (each through its own client watch stream) on the
  ConfigMaps of one namespace; one writer updates a ConfigMap there as fast as it can;
  delivery latency runs from the update's call to a watcher receiving the event; every
  watcher must get every event (``watch_fanout.lost`` counts those that did not).
- No peer is named for the API server: the SLO thresholds are the yardstick.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._start import start_apiserver
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.heap import long_lived_heap_gc

from ._report import (
    Report,
    Result,
    environment,
    fan_out_line,
    latency_results,
    percentile,
    run_main,
)

BENCHMARK = "apiserver"
PACKAGES = ("actorkube", "trio", "msgpack", "attrs", "sortedcontainers", "rich")
TOKEN = "bench-admin-token"

# (category, SLO seconds): Kubernetes' API call latency SLOs.
SLOS = {
    "mutating": 1.0,
    "read_single": 1.0,
    "list_namespace": 5.0,
    "list_cluster": 30.0,
}

FULL = {
    "pods": 150_000,
    "namespaces": 50,
    "loaders": 100,
    "clients": 50,
    "seconds": 5.0,
    "slo_seconds": 45.0,
    "stress_seconds": 30.0,
    "watchers": 1000,
    "fanout_seconds": 5.0,
}
QUICK = FULL | {
    "pods": 2_000,
    "namespaces": 4,
    "loaders": 20,
    "clients": 10,
    "seconds": 0.5,
    "slo_seconds": 2.0,
    "stress_seconds": 1.0,
    "watchers": 50,
    "fanout_seconds": 0.5,
}


def pod(name: str, namespace: str, index: int) -> dict:
    """A pod as a Deployment's template makes them: labels, one container with requests
    and limits, a port, an environment variable (about 1 KB of JSON stored)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": f"app-{index % 20}", "tier": "backend", "bench": "apiserver"},
            "annotations": {"bench.actorkube.io/index": str(index)},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.k8s.io/pause:3.9",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "env": [{"name": "POD_INDEX", "value": str(index)}],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "200m", "memory": "256Mi"},
                    },
                }
            ]
        },
    }


def _ns(i: int) -> str:
    return f"bench-{i:03d}"


class Stalls:
    """What stops the whole process during a phase: the event loop's longest stall (a
    task asks to wake every 10 ms) and the cyclic GC's full collections."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.full_collections: list[float] = []
        self._started = 0.0

    def __enter__(self) -> Stalls:
        gc.callbacks.append(self._on_gc)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.full_collections.append(time.perf_counter() - self._started)

    async def watch_loop(self) -> None:
        while True:
            asked = time.perf_counter()
            await trio.sleep(0.01)
            self.longest = max(self.longest, time.perf_counter() - asked - 0.01)

    def results(self, prefix: str) -> list[Result]:
        pauses = self.full_collections
        return [
            Result(f"{prefix}.loop_stall_max", self.longest * 1e3, "ms"),
            Result(f"{prefix}.gc_full_collections", float(len(pauses)), "collections",
                   {"longest_ms": max(pauses, default=0.0) * 1e3,
                    "total_ms": sum(pauses) * 1e3}),
        ]  # fmt: skip


class Timings:
    """Latencies by category, and what failed."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}

    async def time(self, category: str, call: Awaitable) -> object:
        started = time.perf_counter()
        try:
            answer = await call
        except ApiError as e:
            self.errors[f"{category}.{e.reason or e.code}"] = (
                self.errors.get(f"{category}.{e.reason or e.code}", 0) + 1
            )
            return None
        self.samples.setdefault(category, []).append(time.perf_counter() - started)
        return answer


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _closed_loop(clients: int, seconds: float, request: Callable[[int, int], Awaitable]):
    """``clients`` tasks each calling ``request(client, i)`` until ``seconds`` pass; the
    wall time until the last returned."""
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def one(number: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            await request(number, i)
            i += 1

    async with trio.open_nursery() as nursery:
        for number in range(clients):
            nursery.start_soon(one, number)
    return time.perf_counter() - started


class Bench:
    def __init__(self, client: ApiClient, p: dict) -> None:
        self.client = client
        self.p = p
        self.rng = random.Random(1)
        self.names = [(_ns(i % p["namespaces"]), f"pod-{i:06d}") for i in range(p["pods"])]
        self.extra = 0  # pods made by the create rows, deleted by the delete rows
        self.made: list[tuple[str, str]] = []

    async def setup(self) -> None:
        for i in range(self.p["namespaces"]):
            await self.client.create("namespaces", {"metadata": {"name": _ns(i)}})
            # The service-account controller's job, which does not exist yet.
            await self.client.create("serviceaccounts", {"metadata": {"name": "default"}},
                                     namespace=_ns(i))  # fmt: skip

    async def load(self) -> list[Result]:
        timings = Timings()
        todo = iter(range(self.p["pods"]))
        step = max(self.p["pods"] // 10, 1)
        started = time.perf_counter()

        async def loader() -> None:
            for i in todo:
                ns, name = self.names[i]
                await timings.time("create", self.client.create("pods", pod(name, ns, i),
                                                                namespace=ns))  # fmt: skip
                if (i + 1) % step == 0:
                    _progress(f"  loaded {i + 1:,} pods ({time.perf_counter() - started:.0f} s)")

        async with trio.open_nursery() as nursery:
            for _ in range(self.p["loaders"]):
                nursery.start_soon(loader)
        elapsed = time.perf_counter() - started
        self._check(timings, "load")
        return latency_results("load.create", timings.samples["create"], elapsed)

    def _check(self, timings: Timings, what: str) -> None:
        if timings.errors:
            raise RuntimeError(f"{what}: requests failed: {timings.errors}")

    # --- one kind of request at a time ------------------------------------------------

    def _random_pod(self) -> tuple[str, str]:
        return self.names[self.rng.randrange(len(self.names))]

    async def get(self, timings: Timings, number: int, i: int) -> None:
        ns, name = self._random_pod()
        await timings.time("read_single", self.client.get("pods", name, namespace=ns))

    async def update(self, timings: Timings, number: int, i: int) -> None:
        # Each client updates pods of its own (index = number mod clients), so two
        # clients never race for one pod; a conflict would be a real one.
        k = self.rng.randrange(len(self.names) // 64) * 64 + number % 64
        ns, name = self.names[k]
        current = await self.client.get("pods", name, namespace=ns)
        current["metadata"]["labels"]["revision"] = str(i)
        await timings.time("mutating", self.client.update("pods", current, namespace=ns))

    async def create(self, timings: Timings, number: int, i: int) -> None:
        self.extra += 1
        ns, name = _ns(self.extra % self.p["namespaces"]), f"extra-{self.extra:06d}"
        if await timings.time("mutating", self.client.create("pods", pod(name, ns, self.extra),
                                                             namespace=ns)):  # fmt: skip
            self.made.append((ns, name))

    async def delete(self, timings: Timings, number: int, i: int) -> None:
        if not self.made:
            await trio.sleep(0)
            return
        ns, name = self.made.pop()
        await timings.time("mutating", self.client.delete("pods", name, namespace=ns))

    async def list_namespace(self, timings: Timings, number: int, i: int) -> None:
        ns = _ns(self.rng.randrange(self.p["namespaces"]))
        await timings.time("list_namespace", self.client.list("pods", namespace=ns))

    async def list_cluster(self, timings: Timings, number: int, i: int) -> None:
        await timings.time("list_cluster", self.client.list("pods"))

    async def list_cluster_paged(
        self, timings: Timings, number: int = 0, i: int = 0, category: str = "list_cluster_paged"
    ) -> None:
        """A walk through every pod in pages of 500, as kubectl's --chunk-size does; each
        page is one LIST call."""
        token = ""
        while True:
            page = await timings.time(category, self.client.list(
                "pods", limit=500, continue_token=token))  # fmt: skip
            token = page["metadata"].get("continue", "") if page else ""
            if not token:
                return

    async def rows(self) -> list[Result]:
        results = []
        seconds = self.p["seconds"]
        for name, request, category, concurrency in (
            ("get", self.get, "read_single", (1, self.p["clients"])),
            ("update", self.update, "mutating", (1, self.p["clients"])),
            ("create", self.create, "mutating", (1, self.p["clients"])),
            ("delete", self.delete, "mutating", (1, self.p["clients"])),
            ("list_namespace", self.list_namespace, "list_namespace", (1, 5)),
        ):
            for clients in concurrency:
                timings = Timings()
                elapsed = await _closed_loop(clients, seconds, partial(request, timings))
                self._check(timings, name)
                samples = timings.samples.get(category, [])
                results += latency_results(f"{name}.c{clients}", samples, elapsed)
                _progress(f"  {name} x{clients}: {len(samples) / elapsed:,.0f}/s")
        # Every pod in one call: consistent (from the cache once it has caught up with
        # etcd), at "any version" (as informers list), and page by page from etcd.
        for name, call in (
            ("list_cluster", self.client.list("pods")),
            ("list_cluster_rv0", self.client.list("pods", resource_version="0")),
        ):
            timings = Timings()
            started = time.perf_counter()
            await timings.time(name, call)
            self._check(timings, name)
            results += latency_results(f"{name}.c1", timings.samples[name],
                                        time.perf_counter() - started)  # fmt: skip
            _progress(f"  {name}: {time.perf_counter() - started:.1f} s")
        timings = Timings()
        started = time.perf_counter()
        await self.list_cluster_paged(timings)
        walk = time.perf_counter() - started
        self._check(timings, "list_cluster_paged")
        pages = timings.samples["list_cluster_paged"]
        results += latency_results("list_cluster_paged.page", pages, None)
        results.append(Result("list_cluster_paged.walk", walk * 1e3, "ms", {"pages": len(pages)}))
        _progress(f"  list_cluster_paged: {len(pages)} pages in {walk:.1f} s")
        return results

    # --- the SLOs under a mixed load ------------------------------------------------------

    async def slo(self, *, unpaged: bool = False) -> list[Result]:
        """The mixed load: mutators, readers, a namespace lister and a cluster-wide lister
        at once. The cluster-wide lister walks the pods in pages of 500 as kubectl does,
        or, with ``unpaged`` (a stress run, not the SLO's load), lists all of them in one
        call back to back."""
        timings = Timings()
        seconds = self.p["stress_seconds" if unpaged else "slo_seconds"]
        clients = self.p["clients"]
        if unpaged:
            cluster_lister = partial(self.list_cluster, timings)
        else:
            cluster_lister = partial(self.list_cluster_paged, timings, category="list_cluster")

        async def mutator(number: int, i: int) -> None:
            kind = i % 3
            if kind == 0:
                await self.create(timings, number, i)
            elif kind == 1:
                await self.update(timings, number, i)
            else:
                await self.delete(timings, number, i)

        with Stalls() as stalls:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stalls.watch_loop)
                async with trio.open_nursery() as load:
                    load.start_soon(_closed_loop, clients // 2, seconds, mutator)
                    load.start_soon(_closed_loop, clients // 2, seconds, partial(self.get, timings))
                    load.start_soon(_closed_loop, 1, seconds, partial(self.list_namespace, timings))
                    load.start_soon(_closed_loop, 1, seconds, cluster_lister)
                nursery.cancel_scope.cancel()
        self._check(timings, "slo")
        prefix = "stress" if unpaged else "slo"
        results = stalls.results(prefix)
        for category, limit in SLOS.items():
            samples = timings.samples.get(category, [])
            p99 = percentile(samples, 0.99)
            name = f"{prefix}.{category}.latency_p99"
            results.append(Result(name, p99 * 1e3, "ms", {
                "slo_ms": limit * 1e3, "met": p99 <= limit, "samples": len(samples),
                "max_ms": max(samples) * 1e3}))  # fmt: skip
        return results

    # --- watch fan-out --------------------------------------------------------------------

    async def fan_out(self) -> list[Result]:
        client, watchers = self.client, self.p["watchers"]
        ns = "bench-fanout"
        await client.create("namespaces", {"metadata": {"name": ns}})
        hot = await client.create("configmaps", {"metadata": {"name": "hot"}, "data": {"n": ""}},
                                  namespace=ns)  # fmt: skip
        sent: dict[str, float] = {}
        delays: list[float] = []
        delivered = 0
        ended = 0
        all_in = trio.Event()

        async def watch(task_status=trio.TASK_STATUS_IGNORED) -> None:
            nonlocal delivered, ended
            async with client.watch(
                "configmaps", namespace=ns, resource_version=hot["metadata"]["resourceVersion"]
            ) as s:
                task_status.started()
                async for event in s:
                    now = time.perf_counter()
                    n = event["object"]["data"]["n"]
                    delays.append(now - sent[n])
                    delivered += 1
                    if delivered == expected[0]:
                        all_in.set()
                if s.ended:
                    ended += 1

        expected = [-1]
        async with trio.open_nursery() as nursery:
            for _ in range(watchers):
                await nursery.start(watch)
            started = time.perf_counter()
            deadline = started + self.p["fanout_seconds"]
            writes = 0
            current = hot
            while time.perf_counter() < deadline:
                value = str(writes)
                current["data"]["n"] = value
                sent[value] = time.perf_counter()
                current = await client.update("configmaps", current, namespace=ns)
                writes += 1
            expected[0] = writes * watchers
            with trio.move_on_after(120):
                if delivered < expected[0]:
                    await all_in.wait()
            elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
        return [
            Result("watch_fanout.writes", writes / self.p["fanout_seconds"], "writes/s"),
            Result("watch_fanout.events_delivered", delivered / elapsed, "events/s"),
            Result("watch_fanout.delivery_p50", percentile(delays, 0.5) * 1e3, "ms"),
            Result("watch_fanout.delivery_p99", percentile(delays, 0.99) * 1e3, "ms"),
            Result("watch_fanout.lost", float(writes * watchers - delivered), "events",
                   {"watches_ended": ended}),
        ]  # fmt: skip


async def _measure(quick: bool) -> tuple[list[Result], dict]:
    p = QUICK if quick else FULL
    results: list[Result] = []
    async with ActorSystem() as system:
        group = start_group(system, 3, tick_interval=0.05)
        api = await start_apiserver(
            system,
            group.client(name="apiserver-etcd", timeout=120),
            tokens=parse_token_file(f"{TOKEN},bench-admin,1,system:masters\n"),
            seed=1,
        )
        await api.ready()
        bench = Bench(ApiClient(system, api.ref, token=TOKEN, timeout=120), p)
        await bench.setup()
        _progress(f"loading {p['pods']:,} pods into {p['namespaces']} namespaces")
        results += await bench.load()
        _progress("request rows")
        results += await bench.rows()
        _progress(f"SLOs under a mixed load ({p['slo_seconds']:.0f} s)")
        results += await bench.slo()
        _progress(f"stress: the same with unpaged cluster-wide lists ({p['stress_seconds']:.0f} s)")
        results += await bench.slo(unpaged=True)
        _progress(f"watch fan-out to {p['watchers']} watchers")
        results += await bench.fan_out()
        await group.stop()
    return results, dict(p, members=3, apiserver_workers=32)


def run(quick: bool) -> Report:
    with long_lived_heap_gc():
        results, parameters = trio.run(_measure, quick)
    value = {r.name: r for r in results}
    summary = [
        f"{parameters['pods']:,} pods created at {value['load.create.throughput'].value:,.0f}/s "
        f"(p99 {value['load.create.latency_p99'].value:,.0f} ms)",
    ]
    for category, limit in SLOS.items():
        r = value[f"slo.{category}.latency_p99"]
        verdict = "met" if r.extra["met"] else "NOT met"
        summary.append(f"SLO {category}: p99 {r.value / 1e3:.2f} s (<= {limit:.0f} s): {verdict}")
    stress = {c: value[f"stress.{c}.latency_p99"].value / 1e3 for c in SLOS}
    summary.append(
        "stress, unpaged cluster-wide lists back to back: p99 "
        + ", ".join(f"{c} {v:.2f} s" for c, v in stress.items())
    )
    summary.append(
        fan_out_line(
            value["watch_fanout.events_delivered"].value,
            parameters["watchers"],
            value["watch_fanout.lost"].value,
        )
    )
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        parameters,
        notes={
            "work": "3 in-memory etcd members, the API server and the clients in one "
            "ActorSystem on one thread; every request authenticated, authorized, "
            "admitted, validated and written through etcd",
            "slo": "Kubernetes' API call latency SLOs, p99 per category over a mixed load",
            "fan-out": "watchers of one namespace's ConfigMaps; one writer updates one of "
            "them as fast as it can; delivery latency from the update's call to receipt",
        },
        summary=tuple(summary),
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
