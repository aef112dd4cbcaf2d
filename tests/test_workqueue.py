"""The work queue and rate limiters against client-go's rules: dedup, one worker per key,
dirty keys re-queued by done, delayed adds, backoff, the token bucket, shutdown and drain,
and a Hypothesis state machine comparing the queue with a plain model."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from actorkube.client._workqueue import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)


class FakeClock:
    """A clock the sync tests move by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain_nowait(queue: WorkQueue[str]) -> list[str]:
    """Take every queued key, marking each done."""
    keys = []
    while True:
        try:
            key = queue.get_nowait()
        except trio.WouldBlock:
            return keys
        queue.done(key)
        keys.append(key)


# The queue.


def test_add_stores_a_queued_key_once_in_fifo_order() -> None:
    queue = WorkQueue[str]()
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert queue.len() == queue.depth == 3
    assert queue.adds == 3
    assert drain_nowait(queue) == ["a", "b", "c"]


def test_key_added_while_processing_is_requeued_by_done() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    assert queue.get_nowait() == "a"
    queue.add("a")
    queue.add("a")
    # A dirty processing key is not queued, so no second worker can take it.
    assert queue.len() == 0
    with pytest.raises(trio.WouldBlock):
        queue.get_nowait()
    queue.done("a")
    assert queue.len() == 1
    assert queue.get_nowait() == "a"
    queue.done("a")
    assert queue.len() == 0


def test_done_refuses_a_key_not_being_processed() -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    with pytest.raises(ValueError, match="not being processed"):
        queue.done("a")
    assert queue.get_nowait() == "a"
    queue.done("a")
    with pytest.raises(ValueError, match="not being processed"):
        queue.done("a")


async def test_get_waits_for_an_add(autojump_clock: trio.testing.MockClock) -> None:
    queue = WorkQueue[str]()
    async with trio.open_nursery() as nursery:
        got = []

        async def getter() -> None:
            got.append(await queue.get())

        nursery.start_soon(getter)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        queue.add("a")
    assert got == ["a"]


async def test_cancelled_get_takes_no_key(autojump_clock: trio.testing.MockClock) -> None:
    queue = WorkQueue[str]()
    with trio.move_on_after(1):
        await queue.get()
    queue.add("a")
    with trio.CancelScope() as scope:
        scope.cancel()
        await queue.get()
    assert queue.get_nowait() == "a"


async def test_workers_never_process_one_key_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    rng = random.Random(7)
    events = itertools.count()
    last_add: dict[str, int] = {}
    last_start: dict[str, int] = {}
    in_flight: set[str] = set()
    most_in_flight = 0

    async def worker() -> None:
        nonlocal most_in_flight
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                assert key not in in_flight
                in_flight.add(key)
                most_in_flight = max(most_in_flight, len(in_flight))
                last_start[key] = next(events)
                await trio.sleep(rng.uniform(0, 0.3))
            finally:
                in_flight.discard(key)
                queue.done(key)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(worker)
        for _ in range(300):
            key = rng.choice("abcdef")
            queue.add(key)
            last_add[key] = next(events)
            await trio.sleep(rng.uniform(0, 0.05))
        with trio.fail_after(60):
            await queue.shut_down_with_drain()
    assert most_in_flight > 1
    # Every add is followed by a reconcile that starts after it: no add is lost.
    assert all(last_start[key] > last_add[key] for key in last_add)


# Delayed adds.


async def test_add_after_hands_keys_out_in_deadline_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    queue.add_after("a", 3)
    queue.add_after("b", 1)
    queue.add_after("c", 2)
    assert queue.len() == 0
    got = []
    for _ in range(3):
        key = await queue.get()
        got.append((key, trio.current_time()))
        queue.done(key)
    assert got == [("b", 1), ("c", 2), ("a", 3)]
    assert queue.retries == 3


async def test_add_after_keeps_the_earliest_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    queue.add_after("a", 5)
    queue.add_after("a", 2)
    queue.add_after("a", 10)
    assert await queue.get() == "a"
    assert trio.current_time() == 2
    queue.done("a")
    await trio.sleep(20)
    assert queue.len() == 0
    with pytest.raises(trio.WouldBlock):
        queue.get_nowait()


async def test_parked_getter_wakes_for_an_earlier_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    queue.add_after("late", 10)
    got = []

    async def getter() -> None:
        got.append((await queue.get(), trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(getter)
        await trio.testing.wait_all_tasks_blocked()
        queue.add_after("early", 1)
    assert got == [("early", 1)]


def test_due_keys_queue_before_keys_added_after_their_deadline() -> None:
    clock = FakeClock()
    queue = WorkQueue[str](clock=clock)
    queue.add_after("a", 1)
    clock.now = 2
    queue.add("b")
    assert drain_nowait(queue) == ["a", "b"]


def test_add_after_without_delay_adds_now() -> None:
    queue = WorkQueue[str](clock=FakeClock())
    queue.add_after("a", 0)
    queue.add_after("b", -1)
    assert drain_nowait(queue) == ["a", "b"]


def test_add_after_does_not_cancel_a_queued_key() -> None:
    # As in client-go: the waiting entry is independent of the queue.
    clock = FakeClock()
    queue = WorkQueue[str](clock=clock)
    queue.add_after("a", 1)
    queue.add("a")
    assert drain_nowait(queue) == ["a"]
    clock.now = 1
    assert drain_nowait(queue) == ["a"]


# Rate limiters.


def test_exponential_backoff_doubles_up_to_the_cap_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=0.005, cap=1000)
    delays = [limiter.when("a") for _ in range(20)]
    # 0.005 * 2**18 = 1310.72 passes the cap.
    assert delays[:18] == [0.005 * 2**n for n in range(18)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    assert delays[18:] == [1000, 1000]
    assert limiter.num_requeues("a") == 20
    assert limiter.when("b") == 0.005
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005
    assert limiter.num_requeues("b") == 1


def test_exponential_backoff_survives_many_failures() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=1.0, cap=60)
    for _ in range(3000):
        delay = limiter.when("a")
    assert delay == 60


def test_bucket_allows_a_burst_then_qps() -> None:
    clock = FakeClock()
    limiter = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert [limiter.when(n) for n in range(100)] == [0.0] * 100
    assert [limiter.when(n) for n in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    # One second refills 10 tokens and pays the debt of 3.
    clock.now = 1
    assert [limiter.when(n) for n in range(7)] == [0.0] * 7
    assert limiter.when("x") == pytest.approx(0.1)
    # A long idle refills the bucket to its burst, no further.
    clock.now = 1000
    assert [limiter.when(n) for n in range(100)] == [0.0] * 100
    assert limiter.when("x") == pytest.approx(0.1)
    assert limiter.num_requeues("x") == 0


def test_bucket_rejects_a_bad_configuration() -> None:
    with pytest.raises(ValueError):
        BucketRateLimiter(qps=0)
    with pytest.raises(ValueError):
        BucketRateLimiter(burst=0)


def test_max_of_takes_the_worst_and_every_limiter_counts() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock)
    assert [limiter.when(n) for n in range(100)] == [0.005] * 100
    # The bucket is empty now: its delay wins over a first failure's 5 ms.
    assert limiter.when("a") == pytest.approx(0.1)
    assert limiter.num_requeues("a") == 1
    clock.now = 1000
    assert limiter.when("a") == 0.01
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert MaxOfRateLimiter([]).when("a") == 0.0


async def test_rate_limited_queue_retries_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = RateLimitingQueue[str](default_controller_rate_limiter())
    queue.add("a")
    times = []
    for _ in range(4):
        key = await queue.get()
        times.append(trio.current_time())
        queue.add_rate_limited(key)
        queue.done(key)
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.005, 0.01, 0.02])
    assert queue.num_requeues("a") == 4
    assert queue.retries == 4
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    # forget resets the backoff but leaves the retry already waiting.
    assert await queue.get() == "a"


# Shutdown.


async def test_shut_down_wakes_every_blocked_getter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    queue.add_after("a", 10)
    woken = []

    async def getter(n: int) -> None:
        with pytest.raises(ShutDown):
            await queue.get()
        woken.append(n)

    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(getter, n)
        await trio.testing.wait_all_tasks_blocked()
        queue.shut_down()
    assert sorted(woken) == [0, 1, 2]
    assert trio.current_time() == 0


def test_shut_down_hands_out_queued_keys_and_refuses_new_ones() -> None:
    clock = FakeClock()
    queue = WorkQueue[str](clock=clock)
    queue.add("a")
    queue.add_after("waiting", 1)
    queue.shut_down()
    assert queue.shutting_down
    queue.add("b")
    queue.add_after("c", 0)
    clock.now = 5
    assert queue.get_nowait() == "a"
    with pytest.raises(ShutDown):
        queue.get_nowait()
    queue.done("a")


async def test_drain_waits_for_done_and_requeues_dirty_keys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    assert await queue.get() == "a"
    queue.add("a")
    drained = trio.Event()

    async def drain() -> None:
        with trio.fail_after(60):
            await queue.shut_down_with_drain()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await trio.testing.wait_all_tasks_blocked()
        assert not drained.is_set()
        queue.done("a")
        # The dirty key comes back even though the queue is shutting down.
        assert await queue.get() == "a"
        await trio.testing.wait_all_tasks_blocked()
        assert not drained.is_set()
        queue.done("a")
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shut_down_ends_a_drain(autojump_clock: trio.testing.MockClock) -> None:
    queue = WorkQueue[str]()
    queue.add("a")
    assert await queue.get() == "a"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(queue.shut_down_with_drain)
            await trio.testing.wait_all_tasks_blocked()
            queue.shut_down()
    queue.done("a")


async def test_drain_of_an_idle_queue_returns_at_once() -> None:
    queue = WorkQueue[str]()
    await queue.shut_down_with_drain()
    with pytest.raises(ShutDown):
        await queue.get()


# The queue against a model.

KEYS = st.sampled_from("abcd")


class QueueAgainstModel(RuleBasedStateMachine):
    """Drives a WorkQueue and a plain model: a list, a set of keys processing, a set of
    keys added while processing, and a dict of waiting keys to (deadline, order)."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.real = WorkQueue[str](clock=self.clock)
        self.queue: list[str] = []
        self.processing: set[str] = set()
        self.readded: set[str] = set()
        self.waiting: dict[str, tuple[float, int]] = {}
        self.order = itertools.count()
        self.shut = False
        self.adds = 0
        self.retries = 0

    def model_add(self, key: str) -> None:
        if self.shut:
            return
        if key in self.processing:
            if key not in self.readded:
                self.readded.add(key)
                self.adds += 1
        elif key not in self.queue:
            self.queue.append(key)
            self.adds += 1

    def promote(self) -> None:
        due = sorted((when, key) for key, when in self.waiting.items() if when[0] <= self.clock())
        for _, key in due:
            del self.waiting[key]
            self.model_add(key)

    @rule(key=KEYS)
    def add(self, key: str) -> None:
        self.promote()
        self.model_add(key)
        self.real.add(key)

    @rule(key=KEYS, delay=st.sampled_from([0, 0.5, 1, 2, 3]))
    def add_after(self, key: str, delay: float) -> None:
        self.real.add_after(key, delay)
        if self.shut:
            return
        self.retries += 1
        if delay <= 0:
            self.promote()
            self.model_add(key)
            return
        deadline = self.clock() + delay
        if key not in self.waiting or self.waiting[key][0] > deadline:
            self.waiting[key] = (deadline, next(self.order))

    @rule(dt=st.sampled_from([0.5, 1, 2]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def get(self) -> None:
        self.promote()
        if self.queue:
            key = self.queue.pop(0)
            self.processing.add(key)
            assert self.real.get_nowait() == key
        else:
            with pytest.raises(ShutDown if self.shut else trio.WouldBlock):
                self.real.get_nowait()

    @precondition(lambda self: self.processing)
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.processing)))
        self.promote()
        self.processing.remove(key)
        if key in self.readded:
            self.readded.remove(key)
            self.queue.append(key)
        self.real.done(key)

    @rule(key=KEYS)
    def done_unknown(self, key: str) -> None:
        if key not in self.processing:
            with pytest.raises(ValueError):
                self.real.done(key)

    @rule()
    def shut_down(self) -> None:
        self.shut = True
        self.waiting.clear()
        self.real.shut_down()

    @rule()
    def length(self) -> None:
        # A rule, not an invariant: len() queues due keys, which would hide a method
        # that forgot to do so first.
        self.promote()
        assert self.real.len() == self.real.depth == len(self.queue)

    @invariant()
    def same_counters(self) -> None:
        assert self.real.adds == self.adds
        assert self.real.retries == self.retries


TestQueueAgainstModel = QueueAgainstModel.TestCase
TestQueueAgainstModel.settings = settings(stateful_step_count=50, deadline=None)
