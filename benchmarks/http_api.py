"""http_api: get, list, create and update latency and throughput over HTTPS with
concurrent clients, and watch delivery latency, against ``actorkube up``.

    python -m benchmarks.http_api [--quick] [--json PATH]

Rules of this file:

- The server is ``actorkube up`` in a process of its own (a fresh data directory, a
  free port): the 3-member etcd group on disk, the API server and its HTTPS front end,
  as a user runs it. The clients are in this process: ``httpx`` on trio, HTTP/1.1
  keep-alive, the cluster CA verified, the admin's bearer token from ``tokens.csv``.
  On a 2-core machine the server and the clients share the cores; the client's own
  cost is in every number (noted in the report).
- Each operation runs for ``seconds`` with ``clients`` closed-loop clients (each sends
  its next request when the last is answered): get a random one of ``objects``
  ConfigMaps, list them all (one namespace, a consistent list), create new ones, update
  each client's own one (a PUT without resourceVersion: unconditional, as ``kubectl
  replace --force`` is not). Latency runs from sending the request to reading the whole
  answer; every answer must be 2xx (``errors`` counts those that were not).
- Watch delivery: one ``watch=true`` stream on a namespace; a writer creates ConfigMaps
  there at ``watch_rate`` per second; the latency of an event runs from the writer
  sending its create to the watcher reading the event's line. Both ends are in this
  process, on one clock.
- ``server_cpu``: the CPU time the server process used in a row, per request: what a
  request costs the server, whoever the client is (the throughput rows are bounded by
  the clients too: httpx takes about a core at 700 requests/s).
- No peer is named for the HTTP API in the issue; kube-apiserver's SLOs (1 s p99 for a
  single-object call, 5 s for a namespace list) are the yardstick, as for
  ``benchmarks.apiserver``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from ._report import Report, Result, environment, latency_results, percentile, run_main

BENCHMARK = "http_api"
PACKAGES = ("actorkube", "trio", "hypercorn", "httpx", "h11")
NAMESPACE = "bench"
WATCHED = "bench-watch"


async def _start_server(data_dir: Path) -> tuple[trio.Process, str]:
    """``actorkube up`` on a free port; its URL once it says it is up."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actorkube", "up", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = b""
    with trio.fail_after(120):
        while b"\n" not in seen.split(b"actorkube is up: ", 1)[-1] or b"is up" not in seen:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError(f"actorkube up stopped: {seen.decode()}")
            seen += chunk
    url = seen.split(b"actorkube is up: ", 1)[1].split(b"\n", 1)[0].decode().strip()
    return process, url


def _client(url: str, data_dir: Path, connections: int) -> httpx.AsyncClient:
    token = (data_dir / "tokens.csv").read_text().split(",", 1)[0]
    return httpx.AsyncClient(
        base_url=url,
        verify=str(data_dir / "pki" / "ca.crt"),
        headers={"Authorization": f"Bearer {token}"},
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=60,
    )


def _configmap(name: str, value: str = "v") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"key": value}}  # fmt: skip


class Load:
    """Closed-loop clients doing one operation; latencies in seconds."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.samples: list[float] = []
        self.errors = 0

    async def run(self, clients: int, seconds: float, request) -> float:
        """Run ``request(client, n)`` (an httpx request coroutine) in ``clients``
        closed loops for ``seconds``; the elapsed time."""
        started = time.perf_counter()
        deadline = started + seconds

        async def loop(client: int) -> None:
            n = 0
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                response = await request(client, n)
                await response.aread()
                if response.is_success:
                    self.samples.append(time.perf_counter() - sent)
                else:
                    self.errors += 1
                n += 1

        async with trio.open_nursery() as nursery:
            for client in range(clients):
                nursery.start_soon(loop, client)
        return time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    """The CPU time (user and system, every thread) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(url: str, data_dir: Path, p: dict, server: int) -> list[Result]:
    results: list[Result] = []
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    async with _client(url, data_dir, p["clients"] + 2) as http:
        for ns in (NAMESPACE, WATCHED):
            namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            (await http.post("/api/v1/namespaces", json=namespace)).raise_for_status()
        for i in range(p["objects"]):
            (await http.post(base, json=_configmap(f"cm-{i}"))).raise_for_status()
        fresh = itertools.count()
        operations = {
            "get": lambda c, n: http.get(f"{base}/cm-{random.randrange(p['objects'])}"),
            "list": lambda c, n: http.get(base),
            "create": lambda c, n: http.post(base, json=_configmap(f"new-{next(fresh)}")),
            "update": lambda c, n: http.put(f"{base}/cm-{c}", json=_configmap(f"cm-{c}", str(n))),
        }
        for op, request in operations.items():
            for clients in sorted({1, p["clients"]}):
                load = Load(http)
                cpu = _cpu_seconds(server)
                elapsed = await load.run(clients, p["seconds"], request)
                cpu = _cpu_seconds(server) - cpu
                prefix = f"{op}.c{clients}"
                results += latency_results(prefix, load.samples, elapsed)
                results.append(Result(f"{prefix}.errors", load.errors, "requests"))
                per_request = cpu / max(1, len(load.samples) + load.errors) * 1e6
                results.append(Result(f"{prefix}.server_cpu", per_request, "us/request"))
                _progress(f"{prefix}: {len(load.samples) / elapsed:,.0f}/s")
        results += await _watch_delivery(http, p)
    return results


async def _watch_delivery(http: httpx.AsyncClient, p: dict) -> list[Result]:
    base = f"/api/v1/namespaces/{WATCHED}/configmaps"
    listed = (await http.get(base)).json()
    version = listed["metadata"]["resourceVersion"]
    sent: dict[str, float] = {}
    latencies: list[float] = []
    count = p["watch_events"]
    done = trio.Event()

    async def watch() -> None:
        params = {"watch": "true", "resourceVersion": version}
        async with http.stream("GET", base, params=params, timeout=None) as stream:
            async for line in stream.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                name = event["object"]["metadata"]["name"]
                if event["type"] == "ADDED" and name in sent:
                    latencies.append(time.perf_counter() - sent[name])
                    if len(latencies) == count:
                        done.set()
                        return

    async def write() -> None:
        interval = 1 / p["watch_rate"]
        for i in range(count):
            name = f"w-{i}"
            sent[name] = time.perf_counter()
            (await http.post(base, json=_configmap(name))).raise_for_status()
            await trio.sleep(max(0.0, sent[name] + interval - time.perf_counter()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        await trio.sleep(0.2)  # the watch is open before the first write (a benchmark, not a test)
        nursery.start_soon(write)
        with trio.fail_after(60 + count / p["watch_rate"]):
            await done.wait()
        nursery.cancel_scope.cancel()
    _progress(f"watch: p99 {percentile(latencies, 0.99) * 1e3:.1f} ms")
    return [
        Result("watch.delivery_p50", percentile(latencies, 0.5) * 1e3, "ms"),
        Result("watch.delivery_p99", percentile(latencies, 0.99) * 1e3, "ms",
               {"events": len(latencies), "rate": p["watch_rate"]}),
    ]  # fmt: skip


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(quick: bool) -> Report:
    p = (
        {"clients": 4, "seconds": 1.0, "objects": 20, "watch_events": 20, "watch_rate": 50}
        if quick
        else {"clients": 16, "seconds": 10.0, "objects": 100, "watch_events": 500,
              "watch_rate": 50}
    )  # fmt: skip

    async def main() -> list[Result]:
        with tempfile.TemporaryDirectory(prefix="actorkube-bench-") as tmp:
            process, url = await _start_server(Path(tmp) / "data")
            try:
                return await _measure(url, Path(tmp) / "data", p, process.pid)
            finally:
                process.terminate()
                with trio.move_on_after(30):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    results = trio.run(main)
    by_name = {r.name: r.value for r in results}
    c = p["clients"]

    def rate(op: str) -> str:
        return f"{op} {by_name[f'{op}.c{c}.throughput']:,.0f}/s"

    summary = [
        f"{rate('get')} (p99 {by_name[f'get.c{c}.latency_p99']:.1f} ms), {rate('create')}, "
        f"{rate('update')}, {rate('list')} (of {p['objects']}) with {c} clients over HTTPS",
        f"watch delivery p99 {by_name['watch.delivery_p99']:.1f} ms at {p['watch_rate']} events/s",
    ]
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        p,
        notes={
            "server": "actorkube up in its own process (etcd on disk, HTTPS, bearer token)",
            "clients": "httpx on trio in this process, HTTP/1.1 keep-alive, closed loop; "
            "the client's CPU is part of every number (2 cores shared; httpx needs about "
            "a core at 700 requests/s): server_cpu is the server's own cost",
            "watch": "one watch stream; a writer creates at watch_rate/s; latency from the "
            "create's send to the event's line read",
        },
        summary=tuple(summary),
    )


def main(argv=None) -> int:
    return run_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
