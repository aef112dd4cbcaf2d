"""Timers: one-shot and periodic messages to self on trio's clock."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.actor import Actor, ActorSystem, HandlerFailed, OneForOne, handler, message


@message(tag="test.timers.Tick")
class Tick:
    label: str


@message(tag="test.timers.Start")
class Start:
    key: str
    delay: float
    periodic: bool = False


@message(tag="test.timers.Cancel")
class Cancel:
    key: str


@message(tag="test.timers.Nap")
class Nap:
    seconds: float


@message(tag="test.timers.Crash")
class Crash:
    pass


class Clocked(Actor):
    def __init__(self, log: list) -> None:
        self.log = log

    @handler
    def start(self, msg: Start) -> None:
        if msg.periodic:
            self.timers.start_periodic(msg.key, Tick(msg.key), msg.delay)
        else:
            self.timers.start_single(msg.key, Tick(msg.key), msg.delay)

    @handler
    def cancel(self, msg: Cancel) -> bool:
        self.timers.cancel(msg.key)
        return self.timers.is_active(msg.key)

    @handler
    def tick(self, msg: Tick) -> None:
        self.log.append((msg.label, trio.current_time()))

    @handler
    async def nap(self, msg: Nap) -> None:
        await trio.sleep(msg.seconds)

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError("crash")


async def test_single_and_periodic(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked(log))
        t0 = trio.current_time()
        ref.tell(Start("once", 2.5))
        ref.tell(Start("every", 1.0, periodic=True))
        await trio.sleep(4.2)
        got = [(label, round(t - t0, 6)) for label, t in log]
        assert got == [
            ("every", 1.0),
            ("every", 2.0),
            ("once", 2.5),
            ("every", 3.0),
            ("every", 4.0),
        ]


async def test_restarting_a_key_replaces_the_timer(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked(log))
        t0 = trio.current_time()
        ref.tell(Start("k", 5.0))
        ref.tell(Start("k", 1.0))
        await trio.sleep(10.0)
        assert [(label, round(t - t0, 6)) for label, t in log] == [("k", 1.0)]


async def test_cancel_discards_a_message_already_queued(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked(log))
        ref.tell(Start("k", 1.0))
        ref.tell(Nap(2.0))  # the tick fires at 1.0 and waits in the mailbox
        ref.tell(Cancel("k"))
        await trio.sleep(5.0)
        assert log == []
        assert await ref.ask(Cancel("k")) is False


async def test_periodic_ticks_do_not_pile_up_behind_a_slow_handler(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked(log))
        t0 = trio.current_time()
        ref.tell(Start("p", 1.0, periodic=True))
        ref.tell(Nap(10.5))
        await trio.sleep(12.2)
        # One tick was queued during the nap; after it the rate resumes.
        assert [round(t - t0, 6) for _, t in log] == [10.5, 11.0, 12.0]


async def test_restart_cancels_timers(autojump_clock) -> None:
    log: list = []
    async with ActorSystem(supervision=OneForOne(intensity=5)) as system:
        ref = system.spawn(lambda: Clocked(log))
        ref.tell(Start("p", 1.0, periodic=True))
        await trio.sleep(2.5)
        ref.tell(Crash())
        await trio.sleep(5.0)
        assert len(log) == 2


async def test_an_hour_of_timers_runs_in_well_under_a_second(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        refs = [system.spawn(lambda: Clocked(log)) for _ in range(10)]
        for i, ref in enumerate(refs):
            ref.tell(Start(f"t{i}", 1.0, periodic=True))
        started = time.perf_counter()
        await trio.sleep(3600.5)
        elapsed = time.perf_counter() - started
    assert len(log) == 10 * 3600
    print(f"36,000 timer messages over one virtual hour in {elapsed:.2f} s")
    assert elapsed < 5.0  # typically ~0.3 s; a generous bound so it cannot flake


async def test_periodic_needs_a_positive_interval() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked([]))
        with pytest.raises(HandlerFailed, match="positive interval"):
            await ref.ask(Start("x", 0.0, periodic=True))


@pytest.mark.parametrize("delay", [-1.0, 0.0])
async def test_non_positive_single_delay_fires_at_once(autojump_clock, delay) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Clocked(log))
        t0 = trio.current_time()
        ref.tell(Start("k", delay))
        await trio.sleep(1.0)
        assert [round(t - t0, 6) for _, t in log] == [0.0]


async def test_system_sleep_wakes_each_sleeper_at_its_deadline_in_order(autojump_clock) -> None:
    woke: list[tuple[str, float]] = []
    async with ActorSystem() as system:

        async def sleeper(name: str, seconds: float) -> None:
            await system.sleep(seconds)
            woke.append((name, trio.current_time()))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for name, seconds in (("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.5)):
                nursery.start_soon(sleeper, name, seconds)
        assert [(n, t - start) for n, t in woke] == [("a", 1.0), ("a2", 1.5), ("b", 2.0),
                                                      ("c", 3.0)]  # fmt: skip


async def test_system_sleep_is_cancellable_and_a_checkpoint(autojump_clock) -> None:
    async with ActorSystem() as system:
        start = trio.current_time()
        with trio.move_on_after(1.5) as scope:
            await system.sleep(10.0)
        assert scope.cancelled_caught and trio.current_time() - start == 1.5
        # The cancelled sleep leaves nothing that wakes anyone later.
        await system.sleep(20.0)
        assert trio.current_time() - start == 21.5
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await system.sleep(0)  # a checkpoint even when not sleeping at all
        assert cancelled.cancelled_caught
        with pytest.raises(ValueError, match="non-negative"):
            await system.sleep(-1)


@pytest.mark.parametrize("slack", [0.0, 0.005])
async def test_a_thousand_cancelled_sleeps_are_dropped_from_the_heap(autojump_clock, slack):
    async with ActorSystem(timer_slack=slack) as system:
        for _ in range(3000):
            with trio.move_on_after(0.001):
                await system.sleep(3600.0)
        # Dead entries are compacted once they outnumber the live ones (discard).
        service = system._timer_service
        assert len(service._heap) < 3000 and service._entries < 3000
        done = trio.Event()
        system.call_later(3600.0, done.set)  # what is live after a compaction still fires
        await done.wait()


@settings(max_examples=80, deadline=None)
@given(
    slack=st.sampled_from([0.0, 0.001, 0.005, 0.01, 0.3]),
    start=st.floats(0, 50),
    deadlines=st.lists(st.floats(-1, 5), min_size=1, max_size=40),
    cancelled=st.sets(st.integers(0, 39)),
)
def test_each_call_fires_once_never_early_and_at_most_the_slack_late(
    slack, start, deadlines, cancelled
):  # fmt: skip
    fired: dict[int, list[float]] = {}
    order: list[int] = []

    async def main() -> float:
        await trio.sleep(start)  # slots lie on trio's clock, not on when timers began
        async with ActorSystem(timer_slack=slack) as system:
            now = trio.current_time()
            def note(i: int) -> None:
                fired.setdefault(i, []).append(trio.current_time())
                order.append(i)

            calls = [system.call_at(now + d, lambda i=i: note(i))
                     for i, d in enumerate(deadlines)]  # fmt: skip
            for i in cancelled & set(range(len(calls))):
                calls[i].cancel()
            await trio.sleep(6.0)
        return now

    now = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for i, d in enumerate(deadlines):
        if i in cancelled:
            assert i not in fired
            continue
        (at,) = fired[i]
        due = max(now + d, now)  # a deadline already past is served at once
        assert due <= at <= due + slack + 1e-9
    if not slack:  # exact: in deadline order, then the order scheduled
        assert order == sorted(fired, key=lambda i: (now + deadlines[i], i))
    else:  # slot by slot (those past at once, earliest first); a slot in scheduling order
        times = [fired[i][0] for i in order]
        assert times == sorted(times)
        ahead = [i for i in order if now + deadlines[i] > now]
        assert ahead == sorted(ahead, key=lambda i: (fired[i][0], i))


async def test_call_at_calls_in_deadline_then_call_order_and_cancel_stops_one(
    autojump_clock, caplog
) -> None:
    calls: list[tuple[str, float]] = []
    async with ActorSystem() as system:
        start = trio.current_time()

        def note(name: str):
            return lambda: calls.append((name, trio.current_time() - start))

        def broken() -> None:
            raise RuntimeError("a bug in one caller")

        system.call_later(2.0, note("b"))
        system.call_at(start + 1.0, note("a"))
        system.call_later(2.0, note("b2"))  # same deadline: after b, made before it
        system.call_later(1.5, broken)
        dropped = system.call_later(1.2, note("never"))
        dropped.cancel()
        dropped.cancel()  # twice is harmless
        done = system.call_later(3.0, note("c"))
        await trio.sleep(5.0)
        done.cancel()  # after it ran: a no-op
    assert calls == [("a", 1.0), ("b", 2.0), ("b2", 2.0), ("c", 3.0)]
    # The failing call was logged; the timers after it ran all the same.
    assert "a bug in one caller" in caplog.text


async def test_timer_slack_serves_deadlines_close_together_in_one_wake_up(autojump_clock) -> None:
    woke: list[tuple[str, float]] = []
    async with ActorSystem(timer_slack=0.01) as system:
        start = trio.current_time()

        async def sleeper(name: str, seconds: float) -> None:
            await system.sleep(seconds)
            woke.append((name, round(trio.current_time() - start, 6)))

        async with trio.open_nursery() as nursery:
            for name, seconds in (("a", 1.0), ("b", 1.004), ("c", 1.012)):
                nursery.start_soon(sleeper, name, seconds)
        # Deadlines share a wake-up at the end of their 10 ms slot: a and b in
        # [1.00, 1.01), c in [1.01, 1.02). Never early. (Tasks woken together run in an
        # order trio chooses.)
        assert dict(woke) == {"a": 1.01, "b": 1.01, "c": 1.02} and woke[-1][0] == "c"
    with pytest.raises(ValueError, match="non-negative"):
        ActorSystem(timer_slack=-0.001)
