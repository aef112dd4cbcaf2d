"""A garbage-collector policy for processes that hold a large, long-lived heap.

CPython's cyclic collector scans every tracked object at each full (generation 2)
collection. An API server with 150,000 pods holds millions of them (the watch cache's
decoded objects, each etcd member's versions, events and Raft log entries), so a full
collection stops the whole process for over a second, and one comes every few tens of
thousands of writes: request latency's p99 is then the collector's pause.

``long_lived_heap_gc`` makes each full collection freeze what survived it
(``gc.freeze``): later full collections scan only what was allocated since, so a pause
is proportional to the recent growth, not to the heap. Full collections come after
``full_every`` collections of the middle generation (CPython's default is 10): each
scans what the young collections promoted since the last one, so this bounds the
pause; more often costs more in all (objects promoted but about to die are scanned,
and frozen, while still alive), rarer makes longer pauses (at 1,000, a density run
met a 4.4 s pause scanning five minutes of growth). Young collections, which reclaim
nearly all cyclic garbage, run as before.

Objects freed by reference counting leave the frozen set as usual; what freezing costs
is that a *cycle* among frozen objects is not collected. So when the frozen set has
grown to ``regrow`` times its size after the last complete scan, and then stopped
growing (by fewer than ``STEADY_RATE`` objects a second over ``settle`` seconds), the
policy unfreezes everything and lets the next full collection scan (and clean) the
whole heap once.
Such a scan stops the process for a time proportional to the heap (seconds for
millions of objects), so it waits for a steady heap: not while a large response is
being built and dropped, nor while the heap keeps growing (a cluster filling up),
when a complete scan would come again and again at the worst moment. Stray cycles
wait until then.

It changes process-wide state, so it is opt-in: the benchmarks (and ``actorkube up``)
install it; a library user decides for their own process.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

# A frozen set growing by fewer objects a second than this is steady. An absolute rate:
# a relative one called a large heap steady while a cluster still filled it (at 100
# pods/s, density's heap grows by ~12,000 objects a second, under 10% per 30 s once it
# holds 4 million), and its complete rescan took 3.5 s in the middle of the run.
STEADY_RATE = 1_000


class _Policy:
    def __init__(self, regrow: float, settle: float) -> None:
        self.regrow = regrow
        self.settle = settle
        self.grown_since: float | None = None  # when the frozen set passed the bound
        self.grown_size = 0  # and how large it was then (or when it last grew much)
        self.baseline = 0  # frozen objects right after the last complete scan; 0: none yet
        self.frozen = 0  # the frozen set's size, or more (see __call__)
        self.freezes = 0
        self.full_scans = 0
        self.counts = 0  # exact counts of the frozen set (each a walk over it)

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop" or info["generation"] != 2:
            return
        if not self.baseline:
            # This collection scanned the whole heap: what it kept is the baseline.
            gc.freeze()
            self.frozen = self.baseline = max(gc.get_freeze_count(), 1)
            self.full_scans += 1
            return
        # A full collection merged the younger generations into the oldest: what
        # survived it is generation 2, all of it about to be frozen.
        survivors = len(gc.get_objects(2))
        gc.freeze()
        self.freezes += 1
        # An upper bound: frozen objects freed by reference counting since are not
        # subtracted. Counting exactly walks the whole frozen set (millions of objects,
        # tens of ms), so it is done only when the bound says the set may have grown
        # past the limit.
        self.frozen += survivors
        if self.frozen > self.regrow * self.baseline:
            self.frozen = gc.get_freeze_count()
            self.counts += 1
        frozen = self.frozen
        if frozen <= self.regrow * self.baseline:
            self.grown_since = None
            return
        now = time.monotonic()
        if self.grown_since is None:  # just grown past the bound: watch it for a period
            self.grown_since, self.grown_size = now, frozen
            return
        elapsed = now - self.grown_since
        if elapsed < self.settle:
            return
        if frozen - self.grown_size > STEADY_RATE * max(elapsed, 1.0):
            # Still growing: watch it for another period.
            self.grown_since, self.grown_size = now, frozen
            return
        gc.unfreeze()  # the next full collection scans everything once
        self.baseline = 0
        self.grown_since = None


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic GC paused inside the block, for decoding a large payload: every container
    it builds would otherwise set off collections that scan the others (unpacking a list of
    60,000 pods runs 7x slower with them; msgpack's README gives the same advice). The new
    containers are collected as usual afterwards, once. Nothing changes if the collector
    was off already."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@contextmanager
def long_lived_heap_gc(
    regrow: float = 2.0, settle: float = 30.0, full_every: int = 100
) -> Iterator[_Policy]:
    """Apply the policy (see the module) inside the block; leaving it removes the
    callback, restores the collector's thresholds and unfreezes every object. Yields the
    policy (``freezes``, ``full_scans`` and ``counts`` count what it did)."""
    if regrow <= 1:
        raise ValueError(f"regrow must be more than 1, not {regrow}")
    thresholds = gc.get_threshold()
    policy = _Policy(regrow, settle)
    gc.callbacks.append(policy)
    gc.set_threshold(thresholds[0], thresholds[1], full_every)
    try:
        yield policy
    finally:
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(policy)
        gc.unfreeze()
