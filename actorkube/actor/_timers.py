"""Timers: one-shot and periodic messages to self, on trio's clock.

Rules:
- One task per actor system keeps every timer in a heap and sleeps until the earliest
  deadline, so a thousand actors with timers cost one task, and
  ``trio.testing.MockClock(autojump_threshold=0)`` jumps straight from one deadline
  to the next.
- A timer has a key; starting a timer with a key in use replaces the old one.
- After ``cancel(key)`` (or a restart or stop of the actor), no message from that
  timer is handled, even one already queued in the mailbox.
- A periodic timer keeps at most one tick queued: while its previous message waits in
  the mailbox, a tick is skipped rather than piled up. Ticks are scheduled at a fixed
  rate; after a stall the next one comes one interval after the stall.
- Timer messages do not count against the mailbox bound (there is at most one queued
  per timer).
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, Any

import trio

from ._codec import encode_message

if TYPE_CHECKING:
    from ._cell import Cell


class Timer:
    """One scheduled message; ``live`` is cleared when it is cancelled or replaced."""

    __slots__ = ("cell", "data", "deadline", "interval", "key", "live", "queued")

    def __init__(self, cell: Cell, key: Any, data: bytes, deadline: float, interval: float | None):
        self.cell = cell
        self.key = key
        self.data = data
        self.deadline = deadline
        self.interval = interval
        self.live = True
        self.queued = False

    def fire(self, service: TimerService, now: float) -> None:
        if not self.queued:
            self.queued = True
            self.cell.enqueue_timer(self)
        if self.interval is not None:
            self.deadline += self.interval
            if self.deadline <= now:
                self.deadline = now + self.interval
            service.schedule(self)


class TimerService:
    """The system's single timer task (see the module docstring).

    It also carries the deadlines of asks: anything with ``deadline``, ``live`` and
    ``fire(service, now)`` can be scheduled. An ask that is answered in time leaves a
    dead entry behind (removing it from the heap would cost more than it saves); dead
    entries are dropped when they come due, or all at once when they outnumber the live.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._seq = itertools.count()
        self._sleep: trio.CancelScope | None = None
        # The deadline of _sleep while it sleeps (read for every ask: a float is cheaper
        # than the scope's property).
        self._wake_at = math.inf
        self._discarded = 0

    def schedule(self, item: Any) -> None:
        deadline = item.deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline

    def discard(self) -> None:
        """Note that one scheduled item died before its deadline."""
        self._discarded += 1
        if self._discarded > 1024 and self._discarded * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].live]
            heapq.heapify(self._heap)
            self._discarded = 0

    async def run(self) -> None:
        while True:
            heap = self._heap
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                item = heapq.heappop(heap)[2]
                if item.live:
                    item.fire(self, now)
            self._wake_at = heap[0][0] if heap else math.inf
            with trio.CancelScope(deadline=self._wake_at) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None


class Timers:
    """The timers of one actor, reached as ``self.timers`` inside the actor."""

    __slots__ = ("_active", "_cell", "_service")

    def __init__(self, cell: Cell, service: TimerService) -> None:
        self._cell = cell
        self._service = service
        self._active: dict[Any, Timer] = {}

    def start_single(self, key: Any, msg: object, delay: float) -> None:
        """Send ``msg`` to self once, ``delay`` seconds from now."""
        self._start(key, msg, delay, None)

    def start_periodic(
        self, key: Any, msg: object, interval: float, *, initial_delay: float | None = None
    ) -> None:
        """Send ``msg`` to self every ``interval`` seconds (first after ``initial_delay``,
        by default one interval)."""
        if interval <= 0:
            raise ValueError("a periodic timer needs a positive interval")
        self._start(key, msg, interval if initial_delay is None else initial_delay, interval)

    def cancel(self, key: Any) -> None:
        """Cancel the timer ``key`` if it is active; its queued message is discarded."""
        timer = self._active.pop(key, None)
        if timer is not None:
            timer.live = False

    def cancel_all(self) -> None:
        for timer in self._active.values():
            timer.live = False
        self._active.clear()

    def is_active(self, key: Any) -> bool:
        return key in self._active

    def _start(self, key: Any, msg: object, delay: float, interval: float | None) -> None:
        data = encode_message(msg)
        self.cancel(key)
        timer = Timer(self._cell, key, data, trio.current_time() + max(0.0, delay), interval)
        self._active[key] = timer
        self._service.schedule(timer)

    def fired(self, timer: Timer) -> bool:
        """Called as a timer's message is taken from the mailbox: handle it or not."""
        timer.queued = False
        if not timer.live:
            return False
        if timer.interval is None:
            timer.live = False
            if self._active.get(timer.key) is timer:
                del self._active[timer.key]
        return True
