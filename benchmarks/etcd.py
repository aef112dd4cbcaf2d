"""etcd: put, range and txn throughput and latency against a 3-member group, and watch
fan-out (one writer, many watchers).

    python -m benchmarks.etcd [--quick] [--json PATH]

Rules of this file:

- One ``ActorSystem`` on one trio thread holds the three members (``start_group``, in
  memory) and the clients, with the long-lived-heap GC policy (``actorkube.heap``) on;
  each client task is a closed loop with one request outstanding. Throughput is requests
  completed / time until the last client returned; latency runs from the call to the
  answer (nearest-rank p50, p99).
- put: 100-byte values over 1,000 keys; range: linearizable single-key reads (ReadIndex)
  and, separately, serializable ones; txn: a compare-and-swap on the key's version.
- Watch fan-out: ``watchers`` watch streams on one key, spread over the members; one
  writer puts to it; delivery latency runs from the put's call to the moment a watcher
  receives the event; events/s counts deliveries to all watchers.
- Nothing is compared with a peer here (the issue names none for etcd): the reference
  numbers of etcd itself (its own performance page, 3 x 8 vCPU machines) are in
  docs/benchmarks.md for orientation only.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import trio

from actorkube.actor import ActorSystem
from actorkube.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    PutRequest,
    start_group,
)
from actorkube.heap import long_lived_heap_gc

from ._report import Report, Result, environment, fan_out_line, percentile, run_main

BENCHMARK = "etcd"
PACKAGES = ("actorkube", "trio", "msgpack", "attrs", "sortedcontainers", "rich")
VALUE = b"v" * 100


async def _loop(clients: int, seconds: float, request) -> tuple[int, float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def one(number: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await request(number, i)
            latencies.append(time.perf_counter() - t)
            i += 1

    async with trio.open_nursery() as nursery:
        for number in range(clients):
            nursery.start_soon(one, number)
    return len(latencies), time.perf_counter() - started, latencies


async def _measure(quick: bool) -> tuple[list[Result], dict]:
    seconds = 1.0 if quick else 3.0
    concurrency = (1, 10) if quick else (1, 10, 100)
    watchers = 100 if quick else 1000
    results: list[Result] = []
    async with ActorSystem() as system:
        group = start_group(system, 3, tick_interval=0.05)
        client = group.client(timeout=30)
        for k in range(1000):
            await client.put(b"key-%04d" % k, VALUE)

        async def put(number: int, i: int) -> None:
            await client.put(b"key-%04d" % ((number * 7919 + i) % 1000), VALUE)

        async def get(number: int, i: int) -> None:
            await client.get(b"key-%04d" % ((number * 7919 + i) % 1000))

        async def get_serializable(number: int, i: int) -> None:
            await client.get(b"key-%04d" % ((number * 7919 + i) % 1000), serializable=True)

        async def txn(number: int, i: int) -> None:
            key = b"txn-%04d" % number  # one key per client: the compare usually holds
            current = (await client.get(key, serializable=True)).kvs
            version = current[0].version if current else 0
            same = Compare(key, CompareTarget.VERSION, CompareResult.EQUAL, version=version)
            await client.txn([same], [PutRequest(key, VALUE)])

        for name, request in (
            ("put", put),
            ("range", get),
            ("range_serializable", get_serializable),
            ("txn", txn),
        ):
            for clients in concurrency:
                done, elapsed, lat = await _loop(clients, seconds, request)
                tag = f"{name}.c{clients}"
                results += [
                    Result(f"{tag}.throughput", done / elapsed, "requests/s"),
                    Result(f"{tag}.latency_p50", percentile(lat, 0.5) * 1e6, "us"),
                    Result(f"{tag}.latency_p99", percentile(lat, 0.99) * 1e6, "us"),
                ]
        results += await _fan_out(group, client, watchers, seconds)
        await group.stop()
    parameters = {
        "seconds_per_row": seconds,
        "concurrency": list(concurrency),
        "watchers": watchers,
        "value_bytes": len(VALUE),
        "members": 3,
    }
    return results, parameters


async def _fan_out(group, client, watchers: int, seconds: float) -> list[Result]:
    sent: dict[bytes, float] = {}
    delays: list[float] = []
    delivered = 0
    members = list(group.members)
    async with trio.open_nursery() as nursery:
        streams = []
        for n in range(watchers):
            watcher_client = group.client(name=f"w{n}", timeout=30)
            watcher_client.leader = members[n % len(members)]
            context = watcher_client.watch(b"hot")
            streams.append((context, await context.__aenter__()))

        async def listen(stream) -> None:
            nonlocal delivered
            async for response in stream:
                now = time.perf_counter()
                for event in response.events:
                    delays.append(now - sent[event.kv.value])
                    delivered += 1

        for _, stream in streams:
            nursery.start_soon(listen, stream)
        started = time.perf_counter()
        deadline = started + seconds
        writes = 0
        while time.perf_counter() < deadline:
            value = b"%d" % writes
            sent[value] = time.perf_counter()
            await client.put(b"hot", value)
            writes += 1
        # Every watcher receives every write before the clock stops.
        expected = writes * watchers
        with trio.move_on_after(60):
            while delivered < expected:
                await trio.sleep(0.01)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    for context, _ in streams:
        await context.__aexit__(None, None, None)
    return [
        Result("watch_fanout.writes", writes / seconds, "writes/s"),
        Result("watch_fanout.events_delivered", delivered / elapsed, "events/s"),
        Result("watch_fanout.delivery_p50", percentile(delays, 0.5) * 1e6, "us"),
        Result("watch_fanout.delivery_p99", percentile(delays, 0.99) * 1e6, "us"),
        Result("watch_fanout.lost", float(writes * watchers - delivered), "events"),
    ]


def run(quick: bool) -> Report:
    with long_lived_heap_gc():
        results, parameters = trio.run(_measure, quick)
    value = {r.name: r.value for r in results}
    summary = (
        f"put: {value['put.c1.throughput']:,.0f} requests/s with 1 client, "
        f"{value['put.c10.throughput']:,.0f} with 10",
        fan_out_line(
            value["watch_fanout.events_delivered"],
            parameters["watchers"],
            value["watch_fanout.lost"],
        ),
    )
    return Report(
        BENCHMARK,
        tuple(results),
        environment(PACKAGES),
        parameters,
        notes={
            "work": "three in-memory members and the clients in one ActorSystem (one "
            "thread); closed-loop clients; 100-byte values over 1,000 keys",
            "fan-out": "watchers spread over the members watch one key; one writer puts "
            "to it as fast as it can; delivery latency from the put's call to receipt",
        },
        summary=summary,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(__doc__.splitlines()[0], run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
