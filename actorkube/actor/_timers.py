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
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._codec import encode_message
from ._park import park, trap, wake

if TYPE_CHECKING:
    from ._cell import Cell

log = logging.getLogger("actorkube.actor")

# The timer slack of a process that runs a cluster (``actorkube up``, the benchmarks):
# a 5,000-node cluster's Lease and status loops alone come due a thousand times a
# second; a few milliseconds late is nothing to a 10 s period or a 5 s ask.
SERVER_TIMER_SLACK = 0.005


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


class _Sleeper:
    """A task sleeping on the service (``TimerService.sleep_until``)."""

    __slots__ = ("deadline", "live", "service", "task")

    def __init__(self, service: TimerService, task: Any, deadline: float) -> None:
        self.service = service
        self.task = task
        self.deadline = deadline
        self.live = True

    def fire(self, service: TimerService, now: float) -> None:
        self.live = False
        wake(self.task)

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.live = False  # its heap entry is dropped when it comes due
        self.service.discard()
        return trio.lowlevel.Abort.SUCCEEDED


class Call:
    """A function the timer task calls at ``deadline`` (``ActorSystem.call_at``); the
    handle to ``cancel`` it."""

    __slots__ = ("deadline", "fn", "live", "service")

    def __init__(self, service: TimerService, deadline: float, fn: Callable[[], object]) -> None:
        self.service = service
        self.deadline = deadline
        self.fn = fn
        self.live = True

    def fire(self, service: TimerService, now: float) -> None:
        self.live = False
        try:
            self.fn()
        except Exception:
            # One caller's bug must not stop every timer of the system.
            log.exception("timer callback %r failed", self.fn)

    def cancel(self) -> None:
        """The function will not be called (no-op once it was)."""
        if self.live:
            self.live = False
            self.service.discard()


# The ``queue`` of an ask that went to the heap (see ``TimerService.schedule_ask``).
IN_HEAP: Any = object()


class TimerService:
    """The system's single timer task (see the module docstring).

    It also carries the deadlines of asks (``schedule_ask``). Asks made with one
    timeout value come due in the order they were made (trio's clock never goes back),
    so each such value has a FIFO of its own, an insertion-ordered dict: scheduling
    appends, an answer removes its entry (``forget``) in O(1), and only the head of
    each FIFO can be due. That costs an ask less than a heap entry, and leaves nothing
    behind. Past ``ASK_QUEUES`` distinct timeout values at once (timeouts computed per
    call), an ask takes the heap instead, like a timer.

    Anything else with ``deadline``, ``live`` and ``fire(service, now)`` goes in the
    heap (``schedule``). An entry that dies before its deadline stays there (removing it
    would cost more than it saves); dead entries are dropped when they come due, or all
    at once when they outnumber the live (``discard`` counts them).

    ``slack``: how late anything may come (Linux's timer slack). 0: every deadline
    exactly, in deadline order (then the order scheduled): a heap of
    ``(deadline, seq, item)``. Otherwise deadlines are grouped in slots of ``slack``
    seconds on trio's clock, and a slot is served in one wake-up at its end, its items
    in the order they were scheduled: never early, at most ``slack`` late. Each
    wake-up costs a cancel scope's deadline firing, about a third of what a sleeper's
    round costs, and thousands of nodes' timers come due a fraction of a millisecond
    apart. The heap then holds slot numbers, not entries: a 150,000-pod cluster keeps a
    resync per pod scheduled, and popping one entry from a heap of them (a tuple
    compare per level, each a miss in the cache) took 2.5% of the process.
    """

    ASK_QUEUES = 8

    def __init__(self, slack: float = 0.0) -> None:
        if slack < 0:
            raise ValueError(f"timer slack must be non-negative, not {slack}")
        self.slack = slack
        # slack 0: (deadline, seq, item) entries; else slot numbers, each a key of _slots.
        self._heap: list[Any] = []
        self._slots: dict[int, list[Any]] = {}  # slot -> its items, in the order scheduled
        self._entries = 0  # items in _slots, dead ones included
        self._seq = itertools.count()
        # ask timeout value -> the asks waiting with it, in deadline order.
        self._asks: dict[float, dict[Any, None]] = {}
        self._sleep: trio.CancelScope | None = None
        # The earliest deadline while the task sleeps, or with slack the earliest slot's
        # start (its scope's deadline is this plus the slack; read for every ask: a
        # float is cheaper than the scope's property).
        # It may be earlier than anything scheduled (an ask answered since): the task
        # then wakes for nothing and sleeps again.
        self._wake_at = math.inf
        self._discarded = 0

    def schedule(self, item: Any) -> None:
        deadline = item.deadline
        slack = self.slack
        if not slack:
            heapq.heappush(self._heap, (deadline, next(self._seq), item))
        elif deadline == math.inf:
            return  # never due
        else:
            # The slot ends after the deadline, with the same float arithmetic that
            # ``run`` and the wake-up use (so nothing fires early by a rounding).
            slot = int(deadline // slack)
            if slot * slack + slack <= deadline:
                slot += 1
            items = self._slots.get(slot)
            if items is None:
                self._slots[slot] = [item]
                heapq.heappush(self._heap, slot)
            else:
                items.append(item)
            self._entries += 1
            deadline = slot * slack  # the wake-up comes ``slack`` after: the slot's end
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline + slack

    async def sleep_until(self, deadline: float) -> None:
        """Sleep until trio's clock reaches ``deadline`` (a checkpoint, cancellable):
        what ``trio.sleep_until`` does, without a cancel scope per sleep, nor a
        ``Cancelled`` raised through the sleeper to wake it. Thousands of tasks that
        sleep for seconds (each node's Lease and status loops) each made some ten
        objects per sleep that outlived the young collections, and an exception at
        every wake-up."""
        if deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self, trio.lowlevel.current_task(), deadline)
        self.schedule(sleeper)
        await park(trap(sleeper.abort))

    def call_at(self, deadline: float, fn: Callable[[], object]) -> Call:
        call = Call(self, deadline, fn)
        self.schedule(call)
        return call

    def schedule_ask(self, slot: Any, timeout: float) -> None:
        """Fire ``slot`` (a ``LocalReply``: ``deadline`` = now + ``timeout``, ``live``,
        ``fire``, and a ``queue`` slot the service owns) at its deadline if it is still
        live then. Whoever scheduled it calls ``forget`` once it is done with it, unless
        it fired (``timed_out``)."""
        queue = self._asks.get(timeout)
        if queue is None:
            if len(self._asks) >= self.ASK_QUEUES:
                slot.queue = IN_HEAP
                self.schedule(slot)
                return
            queue = self._asks[timeout] = {}
        queue[slot] = None
        slot.queue = queue
        deadline = slot.deadline
        if deadline < self._wake_at:
            self._wake_at = deadline
            if self._sleep is not None:
                self._sleep.deadline = deadline + self.slack

    def forget(self, slot: Any) -> None:
        """``slot``, given to ``schedule_ask``, needs its deadline no more (no-op if the
        service took it out already)."""
        queue = slot.queue
        if queue is None:
            return
        slot.queue = None
        if queue is IN_HEAP:
            self.discard()
        else:
            del queue[slot]

    def discard(self) -> None:
        """Note that one scheduled item died before its deadline."""
        self._discarded += 1
        if self._discarded <= 1024:
            return
        if not self.slack:
            if self._discarded * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].live]
                heapq.heapify(self._heap)
                self._discarded = 0
        elif self._discarded * 2 > self._entries:
            slots = {slot: live for slot, items in self._slots.items()
                     if (live := [item for item in items if item.live])}  # fmt: skip
            self._slots, self._heap = slots, list(slots)
            heapq.heapify(self._heap)
            self._entries = sum(map(len, slots.values()))
            self._discarded = 0

    def _fire_asks(self, now: float) -> float:
        """Fire the asks that are due; the earliest deadline left (inf: none). A FIFO
        found empty is dropped, so that timeout values used once do not pile up."""
        earliest = math.inf
        for timeout, queue in list(self._asks.items()):
            while queue:
                slot = next(iter(queue))
                if slot.deadline > now:
                    earliest = min(earliest, slot.deadline)
                    break
                del queue[slot]
                slot.queue = None
                if slot.live:  # else answered, its asker not yet resumed to forget it
                    slot.fire(self, now)
            else:
                del self._asks[timeout]
        return earliest

    def _fire_slots(self, now: float) -> float:
        """Fire the items of every slot that has ended; the start of the earliest slot
        left (its wake-up is ``slack`` later), inf if none."""
        heap, slots, slack = self._heap, self._slots, self.slack
        # Read again at each turn: what fires may compact them (``discard``).
        while heap and heap[0] * slack + slack <= now:
            items = slots.pop(heapq.heappop(heap))
            self._entries -= len(items)
            for item in items:  # what fires may schedule: into later slots, or new ones
                if item.live:
                    item.fire(self, now)
            heap, slots = self._heap, self._slots
        return heap[0] * slack if heap else math.inf

    async def run(self) -> None:
        slack = self.slack
        while True:
            now = trio.current_time()
            if slack:
                next_at = self._fire_slots(now)
            else:
                heap = self._heap
                while heap and heap[0][0] <= now:
                    item = heapq.heappop(heap)[2]
                    if item.live:
                        item.fire(self, now)
                next_at = heap[0][0] if heap else math.inf
            asks_at = self._fire_asks(now) if self._asks else math.inf
            self._wake_at = min(next_at, asks_at)
            with trio.CancelScope(deadline=self._wake_at + self.slack) as self._sleep:
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
