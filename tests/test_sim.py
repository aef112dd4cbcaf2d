"""The simulated network: determinism by seed, fault semantics, virtual time, replay."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import trio
import trio.testing

import actorkube.sim as sim
from actorkube.actor import (
    Actor,
    ActorError,
    ActorRef,
    ActorSystem,
    AskTimeout,
    Terminated,
    Undeliverable,
    handler,
    message,
)
from actorkube.sim import Faults, ScenarioError, SimNetwork, simulate


@message(tag="test.sim.Note")
class Note:
    n: int


@message(tag="test.sim.Ping")
class Ping:
    n: int


@message(tag="test.sim.Hold")
class Hold:
    pass


@message(tag="test.sim.Watch")
class Watch:
    target: ActorRef


@message(tag="test.sim.Tick")
class Tick:
    pass


@message(tag="test.sim.GetStats")
class GetStats:
    pass


class Recorder(Actor):
    """Logs every Note it gets; answers Ping with n + 1; never answers Hold; records
    the Terminated of what it watches; logs its ``stopping`` hook."""

    def __init__(self, log: list) -> None:
        self.log = log

    async def stopping(self) -> None:
        self.log.append("stopping")

    @handler
    def on_note(self, msg: Note) -> None:
        self.log.append(msg.n)

    @handler
    def on_ping(self, msg: Ping) -> int:
        return msg.n + 1

    @handler
    def on_hold(self, msg: Hold) -> None:
        self.defer_reply()

    @handler
    def on_watch(self, msg: Watch) -> None:
        self.watch(msg.target)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        self.log.append((str(msg.actor.address), msg.reason))


def recorder_boot(logs: dict[str, list], boots: list | None = None):
    """A boot that spawns ``rec`` (a Recorder logging into ``logs[host]``)."""

    def boot(system: ActorSystem) -> None:
        if boots is not None:
            boots.append(system.name)
        log = logs.setdefault(system.name, [])
        system.spawn(lambda: Recorder(log), name="rec")

    return boot


def rec(net: SimNetwork, src: str, dst: str) -> ActorRef:
    """The reference, seen from host ``src``, of the recorder on host ``dst``."""
    return net.system(src).ref(f"ak://{dst}/rec")


def notes(log: list) -> list[int]:
    return [x for x in log if isinstance(x, int)]


# --- a chaotic scenario for the determinism tests ---------------------------------------

HOSTS = ("alpha", "bravo", "charlie")
CHAOS = Faults(drop=0.1, duplicate=0.05, delay=(0.001, 0.05), reorder=0.05)


class Pinger(Actor):
    """Every second: a burst of tells to each peer's recorder, then an ask to each."""

    def __init__(self, peers: list[str]) -> None:
        self.peers = peers
        self.sent = self.answered = self.failed = 0

    async def started(self) -> None:
        self.timers.start_periodic("tick", Tick(), 1.0)

    @handler
    async def on_tick(self, msg: Tick) -> None:
        for peer in self.peers:
            target = self.system.ref(f"ak://{peer}/rec")
            for _ in range(3):
                self.sent += 1
                target.tell(Note(self.sent))
            try:
                await target.ask(Ping(self.sent), timeout=0.5)
                self.answered += 1
            except (AskTimeout, Undeliverable):
                self.failed += 1

    @handler
    def on_stats(self, msg: GetStats) -> list:
        return [self.sent, self.answered, self.failed, self.system.clock.now()]


def chaos_boot(system: ActorSystem) -> None:
    system.spawn(lambda: Recorder([]), name="rec")
    system.spawn(lambda: Pinger([h for h in HOSTS if h != system.name]), name="pinger")


async def chaos(net: SimNetwork) -> dict:
    net.set_faults(CHAOS)
    for host in HOSTS:
        await net.add_host(host, chaos_boot)
    await trio.sleep(10)
    net.isolate("alpha")
    await trio.sleep(5)
    net.heal()
    await trio.sleep(5)
    await net.crash("charlie")
    await trio.sleep(3)
    await net.restart("charlie")
    await trio.sleep(5)
    # Groups given as sets: their order must not depend on PYTHONHASHSEED.
    net.partition({"charlie", "bravo"}, {"alpha"})
    await trio.sleep(2)
    net.heal()
    await trio.sleep(5)
    return {h: await net.system(h).lookup("pinger").ask(GetStats()) for h in HOSTS}


def chaos_digest(seed: int) -> str:
    """Entry point for the subprocess test."""
    return simulate(chaos, seed=seed).trace.digest()


def test_same_seed_same_trace_and_the_trace_has_every_fault() -> None:
    first = simulate(chaos, seed=42)
    again = simulate(chaos, seed=42)
    assert first.trace.to_bytes() == again.trace.to_bytes()
    assert first.trace.digest() == again.trace.digest()
    assert first.value == again.value
    assert first.duration == again.duration >= 33.0

    trace = first.trace
    assert trace.of_kind("drop", "random")
    assert trace.of_kind("drop", "partition")
    assert trace.of_kind("drop", "host down")
    assert trace.of_kind("duplicate")
    assert trace.of_kind("reorder")
    assert trace.reordered(), "no delivery was overtaken"
    assert len(trace.render().splitlines()) == len(trace.events)
    assert [e.src for e in trace.of_kind("crash")] == ["charlie"]
    assert [e.src for e in trace.of_kind("restart")] == ["charlie"]
    # Work got done across hosts despite the faults, and some of it failed because of them.
    for sent, answered, failed, _ in first.value.values():
        assert sent > 0 and answered > 0 and failed > 0

    other = simulate(chaos, seed=43)
    assert other.trace.to_bytes() != first.trace.to_bytes()


def test_same_seed_same_trace_in_other_processes_with_other_hash_seeds() -> None:
    here = chaos_digest(7)
    tests = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {tests!r}); "
        "import test_sim; print(test_sim.chaos_digest(7))"
    )
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == here, f"PYTHONHASHSEED={hash_seed}"


def test_network_inside_an_existing_run_matches_simulate() -> None:
    """The async form, entered in a run that ``simulate`` did not set up (and that ran
    other tasks first), gives the trace ``simulate`` gives for the same seed."""

    async def body() -> str:
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(_busy, i)
        async with SimNetwork(11) as net:
            await chaos(net)
        return net.trace().digest()

    digest = trio.run(body, clock=trio.testing.MockClock(autojump_threshold=0))
    assert digest == simulate(chaos, seed=11).trace.digest()


async def _busy(n: int) -> None:
    for _ in range(n):
        await trio.lowlevel.checkpoint()


def test_a_failing_scenario_carries_its_seed() -> None:
    async def doomed(net: SimNetwork) -> None:
        await net.add_host("a", recorder_boot({}))
        await trio.sleep(1)
        raise RuntimeError("invariant violated")

    with pytest.raises(RuntimeError, match="invariant violated") as info:
        simulate(doomed, seed=9876)
    notes_ = getattr(info.value, "__notes__", [])
    assert any("9876" in n and "simulate(" in n and "seed=9876" in n for n in notes_), notes_


async def test_a_failing_network_block_carries_its_seed(autojump_clock) -> None:
    with pytest.raises(ValueError) as info:
        async with SimNetwork(555):
            raise ValueError("boom")
    assert any("SimNetwork(seed=555)" in n for n in info.value.__notes__)


def test_an_hour_of_virtual_time_takes_well_under_a_second() -> None:
    ticks: dict[str, int] = {}

    class Heartbeat(Actor):
        async def started(self) -> None:
            self.timers.start_periodic("beat", Tick(), 10.0, initial_delay=5.0)

        @handler
        async def on_tick(self, msg: Tick) -> None:
            ticks[self.system.name] = ticks.get(self.system.name, 0) + 1
            for peer in HOSTS:
                if peer != self.system.name:
                    self.system.ref(f"ak://{peer}/rec").tell(Note(1))
                    assert await self.system.ref(f"ak://{peer}/rec").ask(Ping(1)) == 2

    def boot(system: ActorSystem) -> None:
        system.spawn(lambda: Recorder([]), name="rec")
        system.spawn(Heartbeat, name="heartbeat")

    async def hour(net: SimNetwork) -> float:
        net.set_faults(Faults(delay=(0.001, 0.01)))
        for host in HOSTS:
            await net.add_host(host, boot)
        await trio.sleep(3600)
        return net.system("alpha").clock.now()

    start = time.perf_counter()
    result = simulate(hour, seed=1)
    real = time.perf_counter() - start
    print(f"1 h of virtual time in {real:.3f} s of real time: {3600 / real:,.0f}x")
    assert result.duration == 3600
    assert result.value == sim.DEFAULT_EPOCH + 3600
    assert ticks == {h: 360 for h in HOSTS}
    assert len(result.trace.of_kind("deliver")) == 6 * 360 * len(HOSTS)
    assert real < 10


# --- fault semantics -----------------------------------------------------------------


async def test_partition_drops_both_ways_and_heal_restores(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1) as net:
        for host in ("a", "b", "c"):
            await net.add_host(host, recorder_boot(logs))
        net.partition(["a"], ["b"])
        rec(net, "a", "b").tell(Note(1))
        rec(net, "b", "a").tell(Note(2))
        rec(net, "a", "c").tell(Note(3))  # not in the partition
        with pytest.raises(AskTimeout):
            await rec(net, "b", "a").ask(Ping(0), timeout=1)
        await trio.sleep(1)
        assert notes(logs["a"]) == [] and notes(logs["b"]) == [] and notes(logs["c"]) == [3]
        assert len(net.trace().of_kind("drop", "partition")) == 3

        net.heal()
        rec(net, "a", "b").tell(Note(4))
        rec(net, "b", "a").tell(Note(5))
        assert await rec(net, "b", "a").ask(Ping(1)) == 2
        assert notes(logs["b"]) == [4] and notes(logs["a"]) == [5]


async def test_frames_in_flight_are_lost_when_a_partition_starts(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1, faults=Faults(delay=(1.0, 1.0))) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        rec(net, "a", "b").tell(Note(1))
        await trio.sleep(0.5)
        net.partition(["a"], ["b"])
        await trio.sleep(1)
        net.heal()
        rec(net, "a", "b").tell(Note(2))
        await trio.sleep(2)
        assert notes(logs["b"]) == [2]
        (dropped,) = net.trace().of_kind("drop")
        assert (dropped.time, dropped.detail) == (1.0, "partition")


async def test_block_cuts_one_direction_only(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        net.block("a", "b")
        rec(net, "a", "b").tell(Note(1))
        rec(net, "b", "a").tell(Note(2))
        await trio.sleep(1)
        assert notes(logs["b"]) == []
        assert notes(logs["a"]) == [2]
        # An ask from b reaches a, but a's reply travels a -> b and is lost.
        with pytest.raises(AskTimeout):
            await rec(net, "b", "a").ask(Ping(0), timeout=1)


async def test_crash_fails_asks_and_tells_watchers(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        rec(net, "a", "a").tell(Watch(rec(net, "a", "b")))
        crashed = net.system("b")
        pending: list[BaseException] = []

        async def ask_and_keep_error() -> None:
            try:
                await rec(net, "a", "b").ask(Hold(), timeout=None)
            except Undeliverable as exc:
                pending.append(exc)

        # Virtual-time bounds: without the crash news these asks would wait forever.
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_and_keep_error)
                await trio.sleep(1)
                assert pending == []
                await net.crash("b")
                with pytest.raises((RuntimeError, ActorError)):
                    crashed.spawn(lambda: Recorder([]))  # torn down: its nursery is closed
            assert not net.is_up("b")
            assert len(pending) == 1 and pending[0].reason == "peer unreachable"
            with pytest.raises(Undeliverable, match="peer unreachable"):
                await rec(net, "a", "b").ask(Ping(1), timeout=None)
        await trio.sleep(1)
        assert ("ak://b/rec", "peer unreachable") in logs["a"]
        assert "stopping" not in logs["b"], "a crash must not run stopping hooks"
        with pytest.raises(ScenarioError):
            net.system("b")


async def test_frames_in_flight_to_a_crashed_host_are_lost(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1, faults=Faults(delay=(1.0, 1.0))) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        rec(net, "a", "b").tell(Note(1))
        await net.crash("b")
        await net.restart("b")
        await trio.sleep(2)
        assert notes(logs["b"]) == []
        assert [e.detail for e in net.trace().of_kind("drop")] == ["host down"]


async def test_restart_brings_the_host_back_with_its_boot_actors(autojump_clock) -> None:
    logs: dict[str, list] = {}
    boots: list[str] = []
    async with SimNetwork(1) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs, boots))
        old = net.system("b")
        await net.crash("b")
        system = await net.restart("b")
        assert net.system("b") is system is not old
        assert system.name == "b" and system.incarnation != old.incarnation
        assert boots == ["a", "b", "b"]
        assert system.lookup("rec") is not None
        assert await rec(net, "a", "b").ask(Ping(41)) == 42
        rec(net, "a", "b").tell(Note(7))
        await trio.sleep(0.1)
        assert notes(logs["b"]) == [7]


async def test_a_duplicated_tell_is_delivered_twice(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        net.set_link_faults("a", "b", Faults(duplicate=1.0))
        rec(net, "a", "b").tell(Note(1))
        rec(net, "b", "a").tell(Note(2))  # the other direction keeps the default
        await trio.sleep(1)
        assert notes(logs["b"]) == [1, 1]
        assert notes(logs["a"]) == [2]
        assert len(net.trace().of_kind("duplicate")) == 1

        net.set_link_faults("a", "b", None)
        rec(net, "a", "b").tell(Note(3))
        await trio.sleep(1)
        assert notes(logs["b"]) == [1, 1, 3]


async def test_delays_make_later_messages_arrive_first(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1) as net:
        for host in ("a", "b"):
            await net.add_host(host, recorder_boot(logs))
        for n in range(20):
            rec(net, "a", "b").tell(Note(n))
        await trio.sleep(1)
        assert notes(logs["b"]) == list(range(20)), "a perfect link keeps the order"

        logs["b"].clear()
        net.set_faults(Faults(delay=(0.0, 1.0)))
        for n in range(20):
            rec(net, "a", "b").tell(Note(n))
        await trio.sleep(2)
        assert sorted(notes(logs["b"])) == list(range(20))
        assert notes(logs["b"]) != list(range(20))
        assert net.trace().reordered()


async def test_messages_inside_one_host_are_not_faulted(autojump_clock) -> None:
    logs: dict[str, list] = {}
    async with SimNetwork(1, faults=Faults(drop=1.0)) as net:
        await net.add_host("a", recorder_boot(logs))
        await net.add_host("b", recorder_boot(logs))
        rec(net, "a", "a").tell(Note(1))
        assert await rec(net, "a", "a").ask(Ping(1)) == 2
        with pytest.raises(AskTimeout):
            await rec(net, "a", "b").ask(Ping(1), timeout=1)
        assert notes(logs["a"]) == [1]
        assert net.trace().of_kind("deliver") == ()


async def test_wall_clock_starts_at_the_epoch_and_follows_virtual_time(autojump_clock) -> None:
    async with SimNetwork(1, epoch=1000.0) as net:
        await trio.sleep(5)
        system = await net.add_host("a", recorder_boot({}))
        assert system.clock.now() == 1005.0
        await trio.sleep(2.5)
        assert system.clock.now() == 1007.5 and net.now() == 7.5


async def test_misuse_is_a_scenario_error(autojump_clock) -> None:
    async with SimNetwork(1) as net:
        await net.add_host("a", recorder_boot({}))
        with pytest.raises(ScenarioError):
            await net.add_host("a", recorder_boot({}))
        with pytest.raises(ScenarioError):
            await net.restart("a")
        with pytest.raises(ScenarioError):
            net.partition(["a"], ["nobody"])
        with pytest.raises(ScenarioError):
            net.system("nobody")
        await net.crash("a")
        with pytest.raises(ScenarioError):
            await net.crash("a")
        with pytest.raises(ScenarioError):
            rec(net, "a", "a")
        assert net.hosts == ("a",)


async def test_a_tell_to_an_unknown_host_is_a_dead_letter(autojump_clock) -> None:
    async with SimNetwork(1) as net:
        system = await net.add_host("a", recorder_boot({}))
        system.ref("ak://nowhere/rec").tell(Note(1))
        await system.ref("ak://nowhere/rec").send(Note(2))
        assert system.dead_letters.by_reason == {"peer unreachable": 2}
        drops = net.trace().of_kind("drop")
        assert [e.detail for e in drops] == ["no such host", "no such host"]


def test_faults_are_validated() -> None:
    for bad in (
        {"drop": 1.5},
        {"duplicate": -0.1},
        {"reorder": 2},
        {"delay": (0.2, 0.1)},
        {"delay": (-1, 1)},
        {"reorder_delay": -1},
    ):
        with pytest.raises(ValueError):
            Faults(**bad)


def test_scheduling_hook_is_restored_and_required(monkeypatch) -> None:
    run = trio._core._run
    monkeypatch.setattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    state = run._r.getstate()
    simulate(chaos, seed=3)
    assert run._ALLOW_DETERMINISTIC_SCHEDULING is False
    assert run._r.getstate() == state

    monkeypatch.delattr(run, "_ALLOW_DETERMINISTIC_SCHEDULING")
    with pytest.raises(sim.DeterminismUnavailable):
        simulate(chaos, seed=3)


def test_public_surface() -> None:
    assert sorted(name for name in vars(sim) if not name.startswith("_")) == [
        "Background",
        "DEFAULT_EPOCH",
        "DeterminismUnavailable",
        "Faults",
        "ScenarioError",
        "SimError",
        "SimNetwork",
        "SimResult",
        "SteppedSimulation",
        "Trace",
        "TraceEvent",
        "seeded_scheduling",
        "simulate",
    ]


async def test_a_crash_during_an_async_boot_cancels_the_boot(autojump_clock) -> None:
    booted = []

    async def slow_boot(system: ActorSystem) -> None:
        await trio.sleep(1)
        booted.append(system.spawn(lambda: Recorder([]), name="rec"))

    async with SimNetwork(1) as net:
        await net.add_host("a", lambda system: None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(net.add_host, "b", slow_boot)
            await trio.sleep(0.5)
            await net.crash("b")
        await trio.sleep(2)
        assert not net.is_up("b")
        assert booted == []
