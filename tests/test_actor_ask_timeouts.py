"""Ask timeouts kept by the timer service: per-timeout FIFOs, and the heap past
``TimerService.ASK_QUEUES`` distinct timeout values."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorkube.actor import Actor, ActorSystem, AskTimeout, handler, message
from actorkube.actor._cell import LocalReply
from actorkube.actor._timers import IN_HEAP, TimerService


@message(tag="test.asktimeouts.Nap")
class Nap:
    seconds: float


class Napper(Actor):
    @handler
    async def nap(self, msg: Nap) -> float:
        await trio.sleep(msg.seconds)
        return msg.seconds


def _pending(system: ActorSystem) -> int:
    service = system._timer_service
    return sum(len(q) for q in service._asks.values()) + len(service._heap)


async def _outcomes(system: ActorSystem, asks: list[tuple[float, float]]) -> list:
    """Ask one fresh actor per (nap, timeout) pair, all at once; per ask, its answer or
    ("timeout", when)."""
    out: list = [None] * len(asks)

    async def one(i: int, nap: float, timeout: float) -> None:
        ref = system.spawn(Napper)
        start = trio.current_time()
        try:
            out[i] = await ref.ask(Nap(nap), timeout=timeout)
        except AskTimeout:
            out[i] = ("timeout", trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        for i, (nap, timeout) in enumerate(asks):
            nursery.start_soon(one, i, nap, timeout)
    return out


async def test_asks_time_out_at_their_deadlines_with_many_timeout_values(autojump_clock) -> None:
    # More distinct timeout values than the service has FIFOs: some go to the heap.
    timeouts = [0.5 * k for k in range(1, 2 * TimerService.ASK_QUEUES + 2)]
    asks = [(t + 1.0, t) for t in timeouts] + [(t - 0.25, t) for t in timeouts]
    async with ActorSystem() as system:
        got = await _outcomes(system, asks)
        assert _pending(system) == 0
    late, early = got[: len(timeouts)], got[len(timeouts) :]
    assert late == [("timeout", pytest.approx(t)) for t in timeouts]
    assert early == [pytest.approx(t - 0.25) for t in timeouts]


async def test_answered_and_cancelled_asks_leave_nothing_behind(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Napper)
        for _ in range(50):
            assert await ref.ask(Nap(0.0), timeout=5.0) == 0.0
        with trio.move_on_after(1.0):
            await ref.ask(Nap(3.0), timeout=5.0)
        assert _pending(system) == 0
        await trio.sleep(10.0)  # the service wakes (for nothing) and drops empty FIFOs
        assert system._timer_service._asks == {}
        assert await ref.ask(Nap(0.0), timeout=5.0) == 0.0


def test_a_slot_answered_before_its_deadline_is_not_fired() -> None:
    # The reply came, but the deadline passed before the asker ran to forget the slot.
    service = TimerService()
    slot = LocalReply()
    slot.deadline = 1.0
    service.schedule_ask(slot, 1.0)
    slot.send_bytes(b"\x92\x00\xc0")
    assert service._fire_asks(2.0) == float("inf")
    assert not slot.timed_out and slot.queue is None
    service.forget(slot)  # a no-op now
    assert service._asks == {}


def test_fifo_heads_alone_decide_the_next_wake() -> None:
    service = TimerService()
    slots = []
    for deadline, timeout in [(1.0, 1.0), (2.0, 1.0), (1.5, 0.5)]:
        slot = LocalReply()
        slot.deadline = deadline
        service.schedule_ask(slot, timeout)
        slots.append(slot)
    assert service._wake_at == 1.0
    assert service._fire_asks(1.2) == 1.5
    assert [s.timed_out for s in slots] == [True, False, False]
    service.forget(slots[2])
    assert service._fire_asks(1.6) == 2.0
    assert 0.5 not in service._asks


def test_past_the_fifo_limit_an_ask_goes_to_the_heap() -> None:
    service = TimerService()
    for k in range(TimerService.ASK_QUEUES):
        slot = LocalReply()
        slot.deadline = float(k + 1)
        service.schedule_ask(slot, float(k + 1))
    extra = LocalReply()
    extra.deadline = 0.25
    service.schedule_ask(extra, 0.25)
    assert extra.queue is IN_HEAP and len(service._heap) == 1
    assert service._wake_at == 0.25
    service.forget(extra)
    assert extra.queue is None and service._discarded == 1


async def test_many_asks_in_flight_time_out_in_order(autojump_clock) -> None:
    async with ActorSystem() as system:
        got = await _outcomes(system, [(10.0, 2.0)] * 20 + [(1.0, 2.0)] * 20)
        assert _pending(system) == 0
    assert got == [("timeout", pytest.approx(2.0))] * 20 + [pytest.approx(1.0)] * 20
    await trio.testing.wait_all_tasks_blocked()
