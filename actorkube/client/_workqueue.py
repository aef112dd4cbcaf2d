"""The controllers' work queue, rate limited, as client-go's ``util/workqueue`` behaves.

A controller's event handlers only compute a key and ``add`` it; worker tasks take keys
and reconcile them::

    async def worker(queue: RateLimitingQueue[str]) -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await reconcile(key)
            except Exception:
                queue.add_rate_limited(key)  # retry later, with backoff
            else:
                queue.forget(key)  # success: reset the key's backoff
            finally:
                queue.done(key)

Rules of this file:

- A key is in at most one of three places: **queued** (waiting for a worker, stored
  once however often it was added), **processing** (handed out by ``get``, not yet
  ``done``), or neither. ``dirty`` holds every queued key, plus processing keys that
  were added again while processing.
- A key is never processed by two workers at once: adding a processing key only marks
  it dirty, and ``done`` puts a dirty key back at the end of the queue.
- Keys are handed out first in, first out. Keys from ``add_after`` join the queue when
  their time comes, in deadline order, before anything added after that time.
- ``add_after`` keeps one waiting entry per key, with the earliest deadline asked for.
  It does not look at the queue: a key both queued now and waiting is processed twice.
- After ``shut_down`` the queue takes no new keys and drops waiting ones, but ``get``
  still hands out the queued keys (and dirty keys that ``done`` puts back); only an
  empty shut-down queue raises ``ShutDown``.
- Deadlines are read from ``clock``, which must be trio's clock (the default) for the
  async methods, since they sleep on it. Waiting keys are moved to the queue lazily, by
  the next call that looks at the queue, so no background task is needed.
- Rate limiters are pure bookkeeping: ``when(key)`` says how long to wait before
  retrying ``key`` and records the attempt; time comes from an injected clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

import trio
from attrs import define, field, validators

K = TypeVar("K", bound=Hashable)

Clock = Callable[[], float]


class ShutDown(Exception):
    """The queue was shut down (by your code) and holds no more keys: the worker should
    return."""


@define
class WorkQueue(Generic[K]):
    """A FIFO of keys with deduplication, per-key mutual exclusion and delayed adds.

    ``adds`` counts keys newly marked dirty, ``retries`` counts accepted ``add_after``
    calls and ``depth`` reads the number of queued keys: numbers for metrics to read.
    """

    clock: Clock = field(default=trio.current_time, kw_only=True)
    adds: int = field(default=0, init=False)
    retries: int = field(default=0, init=False)
    shutting_down: bool = field(default=False, init=False)

    # Invariant: every key in _queue is in _dirty, not in _processing, and in _queue once.
    _queue: deque[K] = field(factory=deque, init=False)
    _dirty: set[K] = field(factory=set, init=False)
    _processing: set[K] = field(factory=set, init=False)
    # Waiting keys: _waiting maps each to its live (ready_at, seq); the heap also holds
    # stale entries, replaced by earlier deadlines, which are skipped when they come due.
    _waiting: dict[K, tuple[float, int]] = field(factory=dict, init=False)
    _heap: list[tuple[float, int, K]] = field(factory=list, init=False)
    _seq: itertools.count[int] = field(factory=itertools.count, init=False)
    # Set by shut_down_with_drain; shut_down clears it to release the drain's waiters.
    _draining: bool = field(default=False, init=False)
    _getters: trio.lowlevel.ParkingLot = field(factory=trio.lowlevel.ParkingLot, init=False)
    _drainers: trio.lowlevel.ParkingLot = field(factory=trio.lowlevel.ParkingLot, init=False)

    @property
    def depth(self) -> int:
        """The queue depth metric: the same as ``len()``."""
        return self.len()

    def len(self) -> int:
        """The number of queued keys (not those processing or waiting), for information:
        it can change before the caller acts on it."""
        self._promote_due()
        return len(self._queue)

    def add(self, key: K) -> None:
        """Mark ``key`` as needing processing; ignored once shutting down."""
        self._promote_due()
        self._add(key)

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed (now if ``delay <= 0``). A key
        already waiting keeps the earlier of its two deadlines."""
        if self.shutting_down:
            return
        self.retries += 1
        if delay <= 0:
            self.add(key)
            return
        ready_at = self.clock() + delay
        existing = self._waiting.get(key)
        if existing is not None and existing[0] <= ready_at:
            return
        if not self._heap or ready_at < self._heap[0][0]:
            # Parked getters sleep until the old earliest deadline; let them re-arm.
            self._getters.unpark_all()
        seq = next(self._seq)
        self._waiting[key] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, key))

    def get_nowait(self) -> K:
        """Take the first queued key; the caller must call ``done(key)`` after processing.

        Raises ``ShutDown`` if the queue is shutting down and empty, else
        ``trio.WouldBlock`` if it is empty.
        """
        self._promote_due()
        if self._queue:
            key = self._queue.popleft()
            self._dirty.remove(key)
            self._processing.add(key)
            return key
        if self.shutting_down:
            raise ShutDown
        raise trio.WouldBlock

    async def get(self) -> K:
        """Wait for a key, as ``get_nowait``; a cancelled ``get`` takes no key."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                key = self.get_nowait()
            except trio.WouldBlock:
                pass
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return key
            with trio.move_on_at(self._next_ready_at()):
                await self._getters.park()

    def done(self, key: K) -> None:
        """End the processing of ``key``; if it was added meanwhile, queue it again.

        Raises ``ValueError`` if ``key`` is not being processed: calling ``done`` twice
        would otherwise let a dirty key into the queue twice.
        """
        if key not in self._processing:
            raise ValueError(f"done({key!r}): the key is not being processed")
        self._promote_due()
        self._processing.remove(key)
        if key in self._dirty:
            self._queue.append(key)
            self._getters.unpark()
        elif self._draining and not self._processing and not self._queue:
            self._drainers.unpark_all()

    def shut_down(self) -> None:
        """Refuse new keys, drop waiting ones, wake every getter and end any drain now.
        Queued keys are still handed out (see the module docstring)."""
        self._draining = False
        self._begin_shut_down()
        self._drainers.unpark_all()

    async def shut_down_with_drain(self) -> None:
        """Shut down as ``shut_down``, then wait until no key is queued or processing
        (workers must keep calling ``get`` and ``done``), or until ``shut_down`` is
        called to stop waiting."""
        self._draining = True
        self._begin_shut_down()
        await trio.lowlevel.checkpoint()
        while self._draining and (self._processing or self._queue):
            await self._drainers.park()

    def _begin_shut_down(self) -> None:
        self.shutting_down = True
        self._waiting.clear()
        self._heap.clear()
        self._getters.unpark_all()

    def _add(self, key: K) -> None:
        if self.shutting_down or key in self._dirty:
            return
        self.adds += 1
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._getters.unpark()

    def _promote_due(self) -> None:
        """Queue the waiting keys whose time has come, as client-go's waiting loop would
        have done already."""
        if not self._heap:
            return
        now = self.clock()
        while self._heap and self._heap[0][0] <= now:
            ready_at, seq, key = heapq.heappop(self._heap)
            if self._waiting.get(key) == (ready_at, seq):
                del self._waiting[key]
                self._add(key)

    def _next_ready_at(self) -> float:
        return self._heap[0][0] if self._heap else math.inf


class RateLimiter(Protocol):
    """How long a key should wait before it is retried."""

    def when(self, key: Hashable) -> float:
        """The delay in seconds before retrying ``key``; records one more attempt."""
        ...

    def forget(self, key: Hashable) -> None:
        """Stop tracking ``key`` (it succeeded, or was given up on)."""
        ...

    def num_requeues(self, key: Hashable) -> int:
        """How many times ``key`` has been retried since it was last forgotten."""
        ...


@define
class ItemExponentialFailureRateLimiter:
    """Per key: ``base * 2**failures`` seconds, at most ``cap``; ``forget`` resets."""

    base: float = 0.005
    cap: float = 1000.0
    _failures: dict[Hashable, int] = field(factory=dict, init=False)

    def when(self, key: Hashable) -> float:
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # A float power overflows past 2**1023, long after any sane cap is reached.
        return min(self.base * 2.0 ** min(failures, 1023), self.cap)

    def forget(self, key: Hashable) -> None:
        self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        return self._failures.get(key, 0)


@define
class BucketRateLimiter:
    """One token bucket for all keys: ``burst`` tokens, refilled at ``qps`` per second.

    Every ``when`` takes a token, going into debt when none is left, and returns how
    long that reservation must wait for its token; the bucket starts full. Keys are not
    tracked: ``num_requeues`` is always 0.
    """

    qps: float = field(default=10.0, validator=validators.gt(0))
    burst: int = field(default=100, validator=validators.ge(1))
    clock: Clock = field(default=trio.current_time, kw_only=True)
    _tokens: float = field(init=False)
    _last: float | None = field(default=None, init=False)

    @_tokens.default
    def _full(self) -> float:
        return float(self.burst)

    def when(self, key: Hashable) -> float:
        now = self.clock()
        if self._last is not None:
            refill = max(0.0, now - self._last) * self.qps
            self._tokens = min(float(self.burst), self._tokens + refill)
        self._last = now
        self._tokens -= 1
        return max(0.0, -self._tokens / self.qps)

    def forget(self, key: Hashable) -> None:
        pass

    def num_requeues(self, key: Hashable) -> int:
        return 0


@define
class MaxOfRateLimiter:
    """The longest delay of several limiters; every one of them records each ``when``."""

    limiters: tuple[RateLimiter, ...] = field(converter=tuple)

    def when(self, key: Hashable) -> float:
        # Ask every limiter, not just until the worst: each one counts the attempt.
        return max([limiter.when(key) for limiter in self.limiters], default=0.0)

    def forget(self, key: Hashable) -> None:
        for limiter in self.limiters:
            limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        return max((limiter.num_requeues(key) for limiter in self.limiters), default=0)


def default_controller_rate_limiter(clock: Clock = trio.current_time) -> MaxOfRateLimiter:
    """client-go's default: per key 5 ms doubling up to 1000 s, and overall 10 retries
    per second with bursts of 100."""
    return MaxOfRateLimiter(
        [ItemExponentialFailureRateLimiter(0.005, 1000.0), BucketRateLimiter(10, 100, clock=clock)]
    )


@define
class RateLimitingQueue(WorkQueue[K]):
    """A work queue that retries keys after the delays its ``rate_limiter`` decides."""

    rate_limiter: RateLimiter

    def add_rate_limited(self, key: K) -> None:
        """Add ``key`` after ``rate_limiter.when(key)`` seconds. The limiter records the
        attempt even when the queue is shutting down and drops the key."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Reset ``key``'s backoff; it does not remove ``key`` from the queue."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        return self.rate_limiter.num_requeues(key)
