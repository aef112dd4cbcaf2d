"""A garbage-collector policy for processes that hold a large, long-lived heap.

CPython's cyclic collector scans every tracked object it holds at each collection of
its generation: an object that lives long is scanned by a young collection, again by a
middle one, again by each full one. An API server with 150,000 pods holds millions of
them (the watch cache's decoded objects, each etcd member's versions, the informers'
copies), so a full collection stops the whole process for seconds; and in a large heap
each scan is slow (visiting an object's references touches memory all over the heap):
at 5,000 nodes, young and middle collections took 15% of the process and full ones,
of 0.7-1.5 s every 15-20 s, another 6%.

``long_lived_heap_gc`` freezes (``gc.freeze``) what survives a collection of
``freeze_after`` or an older generation, so that no later collection scans it again.
With the default, 0, that is every young collection: an object is scanned once, at
the first young collection it lives through, and middle and full collections find
nothing to do (freezing also resets the collector's counts, so they no longer come by
themselves). In a 1,000-node density run this halved the collector's time, and the
full collections' pauses went with them. ``freeze_after=2`` freezes only what a full
collection kept, which come after ``full_every`` middle collections (CPython's default
is 10): young and middle collections run as usual.

Objects freed by reference counting leave the frozen set as usual (nearly all do); what
freezing costs is that a *cycle* that becomes garbage after it was frozen is not
collected: in that 1,000-node run, middle collections would have found ~140 objects a
second of such cycles, full ones none. So the policy looks at the frozen set every
``settle`` seconds (at the first collection after), and when it has grown to ``regrow``
times its size after the last complete scan (as far as an upper bound says: counting it
exactly is a walk over millions of objects, done only in a quiet heap), and stayed so,
and the heap was quiet over the period (fewer than ``QUIET_RATE`` objects a second
frozen), the whole heap is scanned (and cleaned) once: a thread the policy keeps for it
unfreezes everything and collects at once. (A collection cannot be started from a
collection's callback, and left to the collector the full collection after an unfreeze
would come only after some 800,000 new objects, later still for CPython's rule that a
full collection waits until a quarter of the heap is new: a quiet heap would wait for
its next busy moment, the worst time for the pause.) Entering the block makes the first
such scan, the first baseline. Such a scan stops the process for a time proportional to
the heap (6 s for 4.6 million objects in a 5,000-node density run, which it freed none
of), so it waits for a quiet heap: not while a large response is being built and
dropped, nor while a cluster fills up or churns. Quiet is judged by what is *added* to
the frozen set, not by its net size: under churn (every Lease renewal's stored version
frozen, then freed by reference counting when the next replaces it) the net size holds
still while over a million objects a minute are frozen, and a net judgement called that
steady and paused a busy process for seconds. A process that is never quiet gets its
complete scan anyway once ``busy_rescan`` seconds (an hour) have passed since the last,
if it has grown: stray cycles are bounded by what one hour leaks, and a cluster filling
up for minutes is not paused.

It changes process-wide state, so it is opt-in: the benchmarks (and ``actorkube up``)
install it; a library user decides for their own process.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Freezing fewer objects a second than this is a quiet heap. An absolute rate: a
# relative one called a large heap quiet while a cluster still filled it (at 100
# pods/s, density's heap grows by ~12,000 objects a second, under 10% per 30 s once
# it holds 4 million), and its complete rescan took 3.5 s mid-run.
QUIET_RATE = 1_000

# The young generation's threshold under the policy: net new container objects between
# young collections (CPython's default is 700). With survivors frozen, what a young
# collection costs is what it finds alive, and in a busy server most of that is not data
# but what waits: each request in flight is a chain of coroutines, its messages, its
# reply slot, freed by reference counting a few milliseconds later. Every collection
# scanned (and froze) that set again; ten times fewer collections scan it a tenth as
# often, while data is scanned once either way. SchedulingBasic at 5,000 nodes: 3.7%
# fewer instructions per pod; density at 1,000 nodes: the collector from 4.5% to 3.4%
# of the time. The price: a young collection's pause grows with it (a few milliseconds
# here), and garbage cycles wait ten times longer to be found.
YOUNG_EVERY = 7_000


class _Policy:
    def __init__(
        self,
        regrow: float,
        settle: float,
        freeze_after: int,
        busy_rescan: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.regrow = regrow
        self.settle = settle
        self.freeze_after = freeze_after
        self.busy_rescan = busy_rescan
        self.clock = clock
        self.baseline = 0  # frozen objects right after the last complete scan
        self.frozen = 0  # the frozen set's size, or more (see _check)
        self.added = 0  # objects frozen since the last check
        self.grown = False  # past regrow * baseline at the last check
        self.checked = 0.0  # when the last check (or complete scan) was
        self.scanned = 0.0  # when the last complete scan was
        # A complete scan is asked for (nothing is frozen until it is done); ``unfrozen``
        # once the heap is unfrozen for it, so that the next full collection is it.
        self.scanning = False
        self.unfrozen = False
        self.idle = threading.Event()  # set while no complete scan is asked for
        self.freezes = 0
        self.full_scans = 0
        self.counts = 0  # exact counts of the frozen set (each a walk over it)
        self._wake = threading.Event()
        self._closing = False
        self._scanner: threading.Thread | None = None

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "stop":
            return
        generation = info["generation"]
        if self.scanning:
            if generation == 2 and self.unfrozen:
                self._take_baseline()
            return
        if generation < self.freeze_after:
            return
        # The survivors are in the next generation (a full collection's in its own).
        survivors = len(gc.get_objects(min(generation + 1, 2)))
        gc.freeze()
        self.freezes += 1
        self.frozen += survivors
        self.added += survivors
        now = self.clock()
        if now - self.checked >= self.settle:
            self._check(now)

    def _take_baseline(self) -> None:
        # This collection scanned the whole heap: what it kept is the baseline.
        gc.freeze()
        self.frozen = self.baseline = max(gc.get_freeze_count(), 1)
        self.full_scans += 1
        self.checked = self.scanned = self.clock()
        self.added, self.grown = 0, False
        self.scanning = self.unfrozen = False
        self.idle.set()

    def _check(self, now: float) -> None:
        quiet = self.added <= QUIET_RATE * max(now - self.checked, 1.0)
        self.checked, self.added = now, 0
        # ``frozen`` is an upper bound: frozen objects freed by reference counting are
        # not subtracted. Counting exactly walks the whole frozen set, a pause of its own
        # (1 s at 4 million objects in a 5,000-node cluster: the walk misses the cache at
        # every object), so it is done only in a quiet heap, and only when the bound
        # says the set may be past the limit; a busy heap goes by the bound.
        limit = self.regrow * self.baseline
        if quiet and self.frozen > limit:
            self.frozen = gc.get_freeze_count()
            self.counts += 1
        grown = self.frozen > limit
        if grown and self.grown and (quiet or now - self.scanned >= self.busy_rescan):
            self._ask_scan()
            grown = False
        self.grown = grown

    def _ask_scan(self) -> None:
        """Have the whole heap scanned now, by the scanner thread (not left to the
        collector: see the module)."""
        self._mark_scanning()
        self._wake.set()

    def scan_now(self) -> None:
        """A complete scan, in the calling thread; the collection's callback takes the
        new baseline."""
        self._mark_scanning()
        self._scan()

    def _mark_scanning(self) -> None:
        self.scanning, self.unfrozen = True, False
        self.idle.clear()

    def _scan(self) -> None:
        while self.scanning and not self._closing:
            gc.unfreeze()
            self.unfrozen = True
            gc.collect()
            if self.scanning:
                # Another thread's collection was running (``gc.collect`` does nothing
                # then): try again in a moment.
                self._wake.wait(0.01)

    def start(self) -> None:
        self._scanner = threading.Thread(
            target=self._scan_when_asked, name="actorkube-heap-rescan", daemon=True
        )
        self._scanner.start()

    def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._scanner is not None:
            self._scanner.join()

    def _scan_when_asked(self) -> None:
        while not self._closing:
            self._wake.wait()
            self._wake.clear()
            self._scan()


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
    regrow: float = 2.0,
    settle: float = 30.0,
    full_every: int = 100,
    freeze_after: int = 0,
    busy_rescan: float = 3600.0,
    clock: Callable[[], float] = time.monotonic,
    young_every: int | None = YOUNG_EVERY,
) -> Iterator[_Policy]:
    """Apply the policy (see the module) inside the block: entering it scans the whole
    heap once (the first baseline) and starts the thread that runs later complete
    scans; leaving it stops that thread, removes the callback, restores the
    collector's thresholds and unfreezes every object. The block owns the frozen
    generation (what was frozen before is unfrozen on entry) and may not be nested.
    Yields the policy (``freezes``, ``full_scans`` and ``counts`` count what it did;
    ``idle`` is set while no complete scan is pending). ``clock``: seconds, for the
    ``settle`` and ``busy_rescan`` periods (a test's own)."""
    if regrow <= 1:
        raise ValueError(f"regrow must be more than 1, not {regrow}")
    if young_every is not None and young_every < 1:
        raise ValueError(f"young_every must be at least 1, not {young_every}")
    if freeze_after not in (0, 1, 2):
        raise ValueError(f"freeze_after must be a generation (0, 1 or 2), not {freeze_after}")
    if any(isinstance(callback, _Policy) for callback in gc.callbacks):
        raise RuntimeError("long_lived_heap_gc is already active in this process")
    thresholds = gc.get_threshold()
    policy = _Policy(regrow, settle, freeze_after, busy_rescan, clock)
    gc.callbacks.append(policy)
    young = thresholds[0] if young_every is None else young_every
    gc.set_threshold(young, thresholds[1], full_every)
    try:
        policy.scan_now()
        policy.start()
        yield policy
    finally:
        policy.close()
        gc.set_threshold(*thresholds)
        gc.callbacks.remove(policy)
        gc.unfreeze()
