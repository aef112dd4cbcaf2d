"""Raft: actorkube's replicated log against PySyncObj, measured in the same run.

    python -m benchmarks.raft [--quick] [--json PATH]

Measures, for a three-node group of each system: proposals per second and commit
latency (p50, p99) with 1, 10 and 100 concurrent proposers, the CPU time spent per
proposal, and actorkube/PySyncObj throughput ratios against the Raft issue's target
(actorkube at least twice PySyncObj's throughput).

Rules of this file (what makes the comparison honest):

- Same work everywhere: three nodes, a state machine that counts commands and keeps the
  last payload, 100-byte payloads, each proposer a closed loop with one proposal
  outstanding (send, wait for the applied result, send the next). A proposal's latency
  runs from the send until its result is back; it only counts if it succeeded.
- A row is time-boxed: an unmeasured warm-up with the same proposers, then the measured
  phase. Proposers start no new proposal after the deadline; throughput is the number of
  proposals completed divided by the time until the last proposer returned.
- Nothing is credited that was not replicated: after its rows, every node of a group
  must have applied every proposal (checked). A failed proposal (refused, dropped, or
  not answered in time: a leader change under load) voids the repetition, which is run
  again, at most ``MAX_ATTEMPTS`` times in all; the failures are in the report.
- actorkube: one ``ActorSystem`` on one trio thread with three ``RaftReplica`` actors
  (tick 0.05 s, default ``Config``), proposers are trio tasks asking the leader.
  Storage: ``MemoryStorage``, ``DiskStorage(fsync=False)``, ``DiskStorage(fsync=True)``.
- PySyncObj: three processes (``multiprocessing`` "spawn"), one ``SyncObj`` each on
  127.0.0.1, its normal deployment; the proposers are threads in the leader's process
  calling a ``@replicated`` method with ``sync=True``. ``appendEntriesUseBatch=False``,
  which is PySyncObj's faster setting at every concurrency measured here; its default
  (``True``) and all three nodes in one process are measured for reference. Journal:
  ``MemoryJournal`` or ``FileJournal`` (an mmap'ed file that PySyncObj never fsyncs).
- CPU per proposal is the CPU time of every process of the group (all threads) during
  the measured phase, divided by the proposals: it does not depend on how many cores a
  system can use, which throughput does.
- Repetitions interleave the setups; each metric is the median of its repetitions.
  Statistics, ratios and verdicts are pure functions of the samples.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import attrs
import msgpack
import trio
from pysyncobj import SyncObj, SyncObjConf, replicated
from rich.console import Console

from actorkube.actor import ActorRef, ActorSystem, AskTimeout
from actorkube.raft import (
    Config,
    DiskStorage,
    GetStatus,
    MemoryStorage,
    Propose,
    RaftReplica,
    SetPeer,
)

from ._report import Report, Result, environment, percentile, run_main

BENCHMARK = "raft"
PACKAGES = ("actorkube", "trio", "msgpack", "attrs", "pysyncobj", "rich")
NODES = (1, 2, 3)
PAYLOAD_BYTES = 100
TICK_INTERVAL = 0.05  # seconds; PySyncObj's autoTickPeriod is 0.05 s too
PROPOSAL_TIMEOUT = 10.0  # seconds; a proposal slower than this has failed
LEADER_TIMEOUT = 30.0  # seconds to elect a leader (and to start PySyncObj's processes)
CONVERGE_TIMEOUT = 10.0  # seconds for every node to apply every proposal after a row
PYSYNCOBJ_LEADER = 2  # getStatus()["state"] of a leader (pysyncobj's _RAFT_STATE)

_progress = Console(stderr=True)


def payload() -> bytes:
    """The 100 bytes every proposal carries (built once per proposal by the caller)."""
    return b"p" * PAYLOAD_BYTES


@attrs.frozen
class Params:
    """How much work one run does. ``repeats`` is for the setups the targets are judged
    on, ``reference_repeats`` for the reference setups."""

    seconds: float
    warmup: float
    repeats: int
    reference_repeats: int
    proposers: tuple[int, ...] = (1, 10, 100)


FULL = Params(seconds=2.5, warmup=0.3, repeats=3, reference_repeats=1)
QUICK = Params(seconds=0.2, warmup=0.05, repeats=1, reference_repeats=1)


@attrs.frozen
class Setup:
    """One system with one storage setting. ``key`` is ``system.storage``."""

    key: str
    label: str
    reference: bool = False


SETUPS = (
    Setup("actorkube.memory", "actorkube, MemoryStorage"),
    Setup("actorkube.disk_nofsync", "actorkube, DiskStorage fsync=False"),
    Setup("actorkube.disk_fsync", "actorkube, DiskStorage fsync=True"),
    Setup("pysyncobj.memory", "PySyncObj, MemoryJournal, 3 processes"),
    Setup("pysyncobj.file", "PySyncObj, FileJournal (never fsynced), 3 processes"),
    Setup(
        "pysyncobj_default.memory",
        "PySyncObj defaults (appendEntriesUseBatch=True), MemoryJournal, 3 processes",
        reference=True,
    ),
    Setup(
        "pysyncobj_1proc.memory",
        "PySyncObj, MemoryJournal, 3 nodes in one process",
        reference=True,
    ),
)


@attrs.frozen
class Sample:
    """One measured row of one repetition: the proposals that completed in ``seconds``,
    their latencies (ns) and the CPU seconds every process of the group used."""

    proposers: int
    seconds: float
    latencies_ns: tuple[int, ...]
    cpu_seconds: float

    @property
    def proposals(self) -> int:
        return len(self.latencies_ns)


class BenchmarkError(RuntimeError):
    """A run that cannot give honest numbers: no leader, nodes that disagree, a node
    process that does not answer. The benchmark's fault or the system's; never a number
    to report."""


class ProposalFailed(BenchmarkError):
    """A proposal was refused, dropped or not answered in time (a leader change under
    load, usually). The repetition is run again, and the failure is reported."""


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc``, through any nesting of exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def _log(text: str) -> None:
    _progress.print(text, style="dim", markup=False, highlight=False)


# --- actorkube ---------------------------------------------------------------------------


class Counter:
    """The state machine of both systems: counts commands, keeps the last payload."""

    def __init__(self) -> None:
        self.count = 0
        self.last = b""

    def apply(self, index: int, data: bytes) -> int:
        self.count += 1
        self.last = data
        return self.count

    def query(self, data: bytes) -> int:
        return self.count

    def snapshot(self) -> bytes:
        return msgpack.packb([self.count, self.last])

    def restore(self, data: bytes | None) -> None:
        self.count, self.last = msgpack.unpackb(data) if data is not None else (0, b"")


def _open_storage(kind: str, directory: Path) -> Any:
    if kind == "memory":
        return MemoryStorage()
    if kind == "disk_nofsync":
        return DiskStorage.open(directory, fsync=False)
    if kind == "disk_fsync":
        return DiskStorage.open(directory, fsync=True)
    raise ValueError(f"unknown actorkube storage {kind!r}")


async def _actorkube_leader(refs: dict[int, ActorRef]) -> ActorRef:
    with trio.move_on_after(LEADER_TIMEOUT):
        while True:
            for ref in refs.values():
                if (await ref.ask(GetStatus())).role == "leader":
                    return ref
            await trio.sleep(0.01)
    raise BenchmarkError(f"actorkube: no leader within {LEADER_TIMEOUT} s")


async def _actorkube_load(ref: ActorRef, proposers: int, seconds: float) -> Sample:
    latencies: list[int] = []
    clock = time.perf_counter_ns

    async def proposer(deadline: int) -> None:
        while clock() < deadline:
            start = clock()
            try:
                outcome = await ref.ask(Propose(payload()), timeout=PROPOSAL_TIMEOUT)
            except AskTimeout as exc:
                raise ProposalFailed(f"actorkube: {exc}") from exc
            if not outcome.ok:
                raise ProposalFailed(f"actorkube: a proposal failed: {outcome}")
            latencies.append(clock() - start)

    cpu = time.process_time()
    start = clock()
    async with trio.open_nursery() as nursery:
        for _ in range(proposers):
            nursery.start_soon(proposer, start + int(seconds * 1e9))
    elapsed = (clock() - start) / 1e9
    return Sample(proposers, elapsed, tuple(latencies), time.process_time() - cpu)


async def _actorkube_converged(machines: dict[int, Counter], expected: int) -> None:
    with trio.move_on_after(CONVERGE_TIMEOUT):
        while any(m.count != expected for m in machines.values()):
            await trio.sleep(0.01)
        return
    counts = {n: m.count for n, m in machines.items()}
    raise BenchmarkError(f"actorkube: applied counts {counts}, expected {expected} each")


async def _actorkube_group(kind: str, params: Params, directory: Path) -> list[Sample]:
    storages = {n: _open_storage(kind, directory / f"node-{n}") for n in NODES}
    machines = {n: Counter() for n in NODES}
    samples = []
    try:
        async with ActorSystem("raftbench") as system:
            refs = {
                n: system.spawn(
                    functools.partial(
                        RaftReplica,
                        Config(n, NODES, seed=1),
                        storages[n],
                        machines[n],
                        {},
                        tick_interval=TICK_INTERVAL,
                    ),
                    name=f"raft-{n}",
                )
                for n in NODES
            }
            for ref in refs.values():
                for n, peer in refs.items():
                    ref.tell(SetPeer(n, peer))
            leader = await _actorkube_leader(refs)
            done = 0
            for proposers in params.proposers:
                done += (await _actorkube_load(leader, proposers, params.warmup)).proposals
                sample = await _actorkube_load(leader, proposers, params.seconds)
                done += sample.proposals
                samples.append(sample)
            await _actorkube_converged(machines, done)
    finally:
        for storage in storages.values():
            storage.close()
    return samples


def measure_actorkube(kind: str, params: Params) -> list[Sample]:
    """One group with ``kind`` storage: one sample per proposer count."""
    with tempfile.TemporaryDirectory(prefix="raftbench-") as tmp:
        try:
            return trio.run(_actorkube_group, kind, params, Path(tmp))
        except BaseExceptionGroup as group:
            # A failed proposal cancels the other proposers and leaves the nursery (and
            # the actor system) wrapped in groups; it is one failure all the same.
            leaves = list(_leaves(group))
            if all(isinstance(leaf, ProposalFailed) for leaf in leaves):
                raise leaves[0] from group
            raise


# --- PySyncObj ---------------------------------------------------------------------------


class PySyncObjCounter(SyncObj):
    """The same state machine as ``Counter``, as a PySyncObj replicated object."""

    def __init__(self, address: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(address, partners, conf=conf)
        self.count = 0
        self.last = b""

    @replicated
    def put(self, data: bytes) -> int:
        self.count += 1
        self.last = data
        return self.count


class _LogCounter(logging.Handler):
    """Counts what PySyncObj logs at WARNING or above, by message template."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = str(record.msg)
        self.counts[key] = self.counts.get(key, 0) + 1


def _thread_load(node: PySyncObjCounter, proposers: int, seconds: float) -> tuple:
    """Run ``proposers`` threads against ``node`` for ``seconds``; returns (elapsed,
    latencies in ns, error or "")."""
    latencies: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()
    clock = time.perf_counter_ns
    started: list[int] = []
    barrier = threading.Barrier(proposers, action=lambda: started.append(clock()))

    def proposer() -> None:
        mine = []
        barrier.wait()
        deadline = started[0] + int(seconds * 1e9)
        try:
            while clock() < deadline:
                start = clock()
                node.put(payload(), sync=True, timeout=PROPOSAL_TIMEOUT)
                mine.append(clock() - start)
        except Exception as exc:  # reported to the parent, which aborts the run
            errors.append(f"{type(exc).__name__}: {exc}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=proposer) for _ in range(proposers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (clock() - started[0]) / 1e9, latencies, "; ".join(errors[:3])


def _pysyncobj_child(
    addresses: list[str], hosted: list[int], batch: bool, journal_dir: str | None, conn
) -> None:
    """A process hosting the nodes ``hosted`` (indexes into ``addresses``), answering
    the parent's commands on ``conn`` until told to stop."""
    counter = _LogCounter()
    log = logging.getLogger("pysyncobj")
    log.addHandler(counter)
    log.propagate = False  # counted and reported, not printed over the table
    nodes = {}
    for i in hosted:
        journal = None if journal_dir is None else os.path.join(journal_dir, f"node-{i}")
        conf = SyncObjConf(appendEntriesUseBatch=batch, journalFile=journal)
        partners = [a for j, a in enumerate(addresses) if j != i]
        nodes[i] = PySyncObjCounter(addresses[i], partners, conf)
    conn.send("ready")
    while True:
        command, *args = conn.recv()
        if command == "status":
            conn.send(
                {
                    i: (node.getStatus()["state"] == PYSYNCOBJ_LEADER, node.count)
                    for i, node in nodes.items()
                }
            )
        elif command == "cpu":
            conn.send(time.process_time())
        elif command == "load":
            index, proposers, seconds = args
            conn.send(_thread_load(nodes[index], proposers, seconds))
        elif command == "stop":
            for node in nodes.values():
                node.destroy_synchronous()
            conn.send(counter.counts)
            return


@attrs.frozen
class _Child:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    hosted: tuple[int, ...]

    def call(self, *command: Any, timeout: float = LEADER_TIMEOUT) -> Any:
        self.conn.send(command)
        return self.receive(timeout)

    def receive(self, timeout: float) -> Any:
        if not self.conn.poll(timeout):
            raise BenchmarkError(f"pysyncobj: a node process did not answer in {timeout} s")
        return self.conn.recv()


def _free_ports(count: int) -> list[int]:
    """Ports the OS hands out now (bound and released: PySyncObj binds them itself)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextlib.contextmanager
def _pysyncobj_cluster(
    processes: int, batch: bool, journal_dir: str | None, warnings: dict[str, int]
) -> Iterator[list[_Child]]:
    """Start three PySyncObj nodes in ``processes`` processes (1 or 3); stop them on
    exit and add what they logged at WARNING or above to ``warnings``."""
    ctx = multiprocessing.get_context("spawn")
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(len(NODES))]
    groups = [[i] for i in range(len(NODES))] if processes == 3 else [list(range(len(NODES)))]
    children: list[_Child] = []
    try:
        for hosted in groups:
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(
                target=_pysyncobj_child,
                args=(addresses, hosted, batch, journal_dir, child_end),
                daemon=True,
            )
            process.start()
            children.append(_Child(process, parent_end, tuple(hosted)))
        for child in children:
            if child.receive(LEADER_TIMEOUT) != "ready":
                raise BenchmarkError("pysyncobj: a node process did not start")
        yield children
    finally:
        for child in children:
            if child.process.is_alive():
                with contextlib.suppress(BenchmarkError, OSError, EOFError):
                    for text, n in child.call("stop").items():
                        warnings[text] = warnings.get(text, 0) + n
            child.process.join(10)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()


def _pysyncobj_status(children: list[_Child]) -> dict[int, tuple[bool, int]]:
    status: dict[int, tuple[bool, int]] = {}
    for child in children:
        status.update(child.call("status"))
    return status


def _pysyncobj_leader(children: list[_Child]) -> tuple[_Child, int]:
    deadline = time.monotonic() + LEADER_TIMEOUT
    while time.monotonic() < deadline:
        for child in children:
            for index, (leader, _) in child.call("status").items():
                if leader:
                    return child, index
        time.sleep(0.01)
    raise BenchmarkError(f"pysyncobj: no leader within {LEADER_TIMEOUT} s")


def _pysyncobj_load(
    children: list[_Child], leader: tuple[_Child, int], proposers: int, seconds: float
) -> Sample:
    child, index = leader
    cpu = [c.call("cpu") for c in children]
    elapsed, latencies, error = child.call(
        "load", index, proposers, seconds, timeout=seconds + 2 * PROPOSAL_TIMEOUT
    )
    used = sum(c.call("cpu") - before for c, before in zip(children, cpu, strict=True))
    if error:
        raise ProposalFailed(f"pysyncobj: a proposal failed: {error}")
    return Sample(proposers, elapsed, tuple(latencies), used)


def _pysyncobj_converged(children: list[_Child], expected: int) -> None:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        counts = {i: count for i, (_, count) in _pysyncobj_status(children).items()}
        if all(c == expected for c in counts.values()):
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"pysyncobj: applied counts {counts}, expected {expected}")
        time.sleep(0.01)


def measure_pysyncobj(
    processes: int, batch: bool, file_journal: bool, params: Params, warnings: dict[str, int]
) -> list[Sample]:
    """One three-node group: one sample per proposer count."""
    with tempfile.TemporaryDirectory(prefix="raftbench-") as tmp:
        journal_dir = tmp if file_journal else None
        with _pysyncobj_cluster(processes, batch, journal_dir, warnings) as children:
            leader = _pysyncobj_leader(children)
            samples = []
            done = 0
            for proposers in params.proposers:
                done += _pysyncobj_load(children, leader, proposers, params.warmup).proposals
                sample = _pysyncobj_load(children, leader, proposers, params.seconds)
                done += sample.proposals
                samples.append(sample)
            _pysyncobj_converged(children, done)
    return samples


def measurer(setup: Setup, warnings: dict[str, int]) -> Callable[[Params], list[Sample]]:
    """The function that measures one repetition of ``setup``."""
    system, storage = setup.key.split(".")
    if system == "actorkube":
        return functools.partial(measure_actorkube, storage)
    processes = 1 if system == "pysyncobj_1proc" else 3
    batch = system == "pysyncobj_default"
    file_journal = storage == "file"
    return lambda params: measure_pysyncobj(processes, batch, file_journal, params, warnings)


# --- statistics (pure) ---------------------------------------------------------------------


UNITS = {
    "proposals": "proposals/s",
    "latency_p50": "us",
    "latency_p99": "us",
    "cpu_per_proposal": "us",
}


def metrics(sample: Sample) -> dict[str, float]:
    """The metrics of ``UNITS`` for one sample."""
    if not sample.proposals:
        raise BenchmarkError(f"no proposal completed with {sample.proposers} proposers")
    return {
        "proposals": sample.proposals / sample.seconds,
        "latency_p50": percentile(sample.latencies_ns, 0.50) / 1_000,
        "latency_p99": percentile(sample.latencies_ns, 0.99) / 1_000,
        "cpu_per_proposal": sample.cpu_seconds / sample.proposals * 1e6,
    }


@attrs.frozen
class Comparison:
    """actorkube's throughput over a peer's, for one storage pairing. ``binding``
    comparisons are the issue's target; the others are shown for reference."""

    numerator: str
    denominator: str
    why: str
    binding: bool
    minimum: float = 2.0

    def name(self, proposers: int) -> str:
        return f"ratio.proposals.c{proposers}.{self.numerator}_vs_{self.denominator}"


COMPARISONS = (
    Comparison("actorkube.memory", "pysyncobj.memory", "both keep the log in memory", binding=True),
    Comparison(
        "actorkube.disk_nofsync",
        "pysyncobj.file",
        "both write the log to a file and never fsync",
        binding=True,
    ),
    Comparison(
        "actorkube.disk_fsync",
        "pysyncobj.file",
        "for reference: PySyncObj cannot fsync its journal",
        binding=False,
    ),
    Comparison(
        "actorkube.memory",
        "pysyncobj_default.memory",
        "for reference: PySyncObj with its defaults",
        binding=False,
    ),
    Comparison(
        "actorkube.memory",
        "pysyncobj_1proc.memory",
        "for reference: PySyncObj's three nodes in one process",
        binding=False,
    ),
)


def per_repetition(
    samples: dict[str, list[list[Sample]]],
) -> dict[tuple[str, int, str], list[float]]:
    """Per (setup, proposers, metric): the values of the repetitions."""
    reps: dict[tuple[str, int, str], list[float]] = {}
    for key, repetitions in samples.items():
        for repetition in repetitions:
            for sample in repetition:
                for metric, value in metrics(sample).items():
                    reps.setdefault((key, sample.proposers, metric), []).append(value)
    return reps


def build_results(measured: Measured, params: Params) -> list[Result]:
    """One result per setup, proposer count and metric (the median of the repetitions,
    which are listed too, with the failures of runs done again), then one per comparison
    and proposer count."""
    reps = per_repetition(measured.samples)
    results = []
    for metric, unit in UNITS.items():
        for proposers in params.proposers:
            for setup in SETUPS:
                values = reps[(setup.key, proposers, metric)]
                extra: dict[str, Any] = {
                    "system": setup.key.split(".")[0],
                    "storage": setup.key.split(".")[1],
                    "metric": metric,
                    "proposers": proposers,
                    "repetitions": values,
                    "failed_runs": measured.failures[setup.key],
                }
                if setup.reference:
                    extra["note"] = "reference"
                results.append(
                    Result(
                        f"{metric}.{setup.key}.c{proposers}",
                        statistics.median(values),
                        unit,
                        extra,
                    )
                )
    for comparison in COMPARISONS:
        for proposers in params.proposers:
            ours = statistics.median(reps[(comparison.numerator, proposers, "proposals")])
            theirs = statistics.median(reps[(comparison.denominator, proposers, "proposals")])
            ratio = ours / theirs
            met = ratio >= comparison.minimum
            kind = "target" if comparison.binding else "for reference"
            results.append(
                Result(
                    comparison.name(proposers),
                    ratio,
                    "x",
                    {
                        "metric": "proposals",
                        "proposers": proposers,
                        "target": comparison.minimum,
                        "met": met,
                        "binding": comparison.binding,
                        "pairing": comparison.why,
                        "note": f"{kind} >= {comparison.minimum:g}x: {'met' if met else 'NOT met'}",
                    },
                )
            )
    return results


def verdicts(results: Sequence[Result], params: Params) -> list[str]:
    """One line per binding comparison and proposer count: the ratio and its verdict."""
    by_name = {r.name: r for r in results}
    lines = []
    for comparison in COMPARISONS:
        if not comparison.binding:
            continue
        for proposers in params.proposers:
            r = by_name[comparison.name(proposers)]
            lines.append(
                f"throughput, {proposers} proposer{'s' if proposers > 1 else ''}: "
                f"{comparison.numerator}/{comparison.denominator} = {r.value:.2f}x "
                f"(target >= {comparison.minimum:g}x): {'met' if r.extra['met'] else 'NOT met'}"
            )
    return lines


NOTES = {
    "work": (
        f"three nodes; every proposal carries {PAYLOAD_BYTES} bytes; the state machine "
        "counts commands and keeps the last payload; each proposer keeps one proposal "
        "outstanding. A row is a warm-up, then a time-boxed phase: proposals/s = proposals "
        "completed / time until the last proposer returned; latency = send to applied "
        "result, nearest-rank p50/p99 of a repetition; cpu_per_proposal = CPU time of "
        "every process of the group during the phase / proposals."
    ),
    "checks": (
        "after its rows, every node of a group must have applied every proposal (warm-ups "
        "included). A failed proposal voids the repetition, which is run again (see "
        "failed_runs)."
    ),
    "actorkube": (
        f"one ActorSystem on one trio thread, three RaftReplica actors, tick "
        f"{TICK_INTERVAL} s, default Config (election after 10-19 ticks, heartbeat every "
        "tick) and snapshot_every; proposers are trio tasks asking the leader with "
        "Propose. DiskStorage runs its calls in trio worker threads; each node has its "
        "own directory under the system's temporary directory."
    ),
    "pysyncobj": (
        "three processes (multiprocessing spawn), one SyncObj each on 127.0.0.1 TCP; "
        "proposers are threads in the leader's process calling a @replicated method with "
        "sync=True. appendEntriesUseBatch=False (each command is sent at once; with the "
        "default True the leader sends every appendEntriesPeriod, 0.1 s, which caps a "
        "proposer at ~10 proposals/s); other settings default. FileJournal writes to an "
        "mmap'ed file and never calls fsync or msync (term and vote go to a .meta file "
        "replaced by rename, not fsynced either); PySyncObj has no fsync option."
    ),
    "fairness": (
        "actorkube runs all three replicas on one thread (one core); PySyncObj's three "
        "processes can use every core (the machine's count is in environment). "
        "cpu_per_proposal compares the work done independently of cores."
    ),
    "repetitions": (
        "the setups run in turn within each repetition and gc.collect() runs before each "
        "one; values are the medians of the repetitions (reference setups may have fewer "
        "repetitions, see parameters)."
    ),
}


def _filesystem(path: str) -> str:
    """The filesystem type that holds ``path`` (from /proc/mounts; "" if unknown)."""
    best, kind = "", ""
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount = fields[1]
            inside = path.startswith(mount.rstrip("/") + "/") or path == mount
            if inside and len(mount) >= len(best):
                best, kind = mount, fields[2]
    return kind


@attrs.define
class Measured:
    """Everything one run collected: per setup, one list of samples per repetition;
    the failures of repetitions that were run again; what PySyncObj logged."""

    samples: dict[str, list[list[Sample]]]
    failures: dict[str, list[str]]
    warnings: dict[str, int]


MAX_ATTEMPTS = 3  # runs of one repetition of one setup before a failed proposal aborts


def measure(params: Params) -> Measured:
    """Every setup, repetitions interleaved. A repetition in which a proposal failed is
    run again (at most ``MAX_ATTEMPTS`` runs); each failure is kept for the report."""
    measured = Measured({s.key: [] for s in SETUPS}, {s.key: [] for s in SETUPS}, {})
    run = {setup.key: measurer(setup, measured.warnings) for setup in SETUPS}
    for rep in range(1, max(params.repeats, params.reference_repeats) + 1):
        for setup in SETUPS:
            total = params.reference_repeats if setup.reference else params.repeats
            if rep > total:
                continue
            for attempt in range(1, MAX_ATTEMPTS + 1):
                _log(f"repetition {rep}/{total}: {setup.label}")
                gc.collect()
                try:
                    measured.samples[setup.key].append(run[setup.key](params))
                    break
                except ProposalFailed as exc:
                    measured.failures[setup.key].append(str(exc))
                    _log(f"  {exc} (attempt {attempt}/{MAX_ATTEMPTS})")
                    if attempt == MAX_ATTEMPTS:
                        raise
    return measured


def run(params: Params, quick: bool) -> Report:
    """Measure everything and build the report."""
    env = environment(PACKAGES)
    env["tmp_filesystem"] = _filesystem(os.path.realpath(tempfile.gettempdir()))
    measured = measure(params)
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = list(os.getloadavg())
    results = build_results(measured, params)
    parameters = {
        **attrs.asdict(params),
        "proposers": list(params.proposers),
        "nodes": len(NODES),
        "payload_bytes": PAYLOAD_BYTES,
        "tick_interval": TICK_INTERVAL,
        "max_attempts": MAX_ATTEMPTS,
        "setups": {s.key: s.label for s in SETUPS},
        "quick": quick,
    }
    notes = dict(NOTES)
    failed = {key: len(f) for key, f in measured.failures.items() if f}
    if failed:
        runs = ", ".join(f"{key}: {n}" for key, n in failed.items())
        notes["failed_runs"] = (
            f"repetitions run again after a failed proposal ({runs}); the messages are in "
            "each result's failed_runs"
        )
    if measured.warnings:
        logged = "; ".join(f"{n} x {text!r}" for text, n in sorted(measured.warnings.items()))
        notes["pysyncobj_log"] = f"PySyncObj logged (WARNING and above): {logged}"
    return Report(
        BENCHMARK, tuple(results), env, parameters, notes, tuple(verdicts(results, params))
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(
        __doc__.splitlines()[0], lambda quick: run(QUICK if quick else FULL, quick), argv
    )


if __name__ == "__main__":
    sys.exit(main())
