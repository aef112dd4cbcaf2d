"""The long-lived-heap GC policy: survivors of a collection are frozen (every young one
by default), a regrown frozen set is scanned once more when the heap is quiet (or after
busy_rescan), cycles among frozen objects are reclaimed then, and leaving the block
restores the collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from actorkube.heap import QUIET_RATE, YOUNG_EVERY, long_lived_heap_gc


@pytest.fixture(autouse=True)
def only_explicit_collections():
    """Automatic collections (which a large heap sets off while the test builds its
    ballast) would move the policy at unknown moments: only gc.collect() runs here."""
    was = gc.isenabled()
    gc.disable()
    yield
    if was:
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


SCAN_TIMEOUT = 60  # seconds a test waits for the scanner thread's scan (it takes ms)


def test_entering_scans_the_heap_and_leaving_unfreezes_it():
    before = gc.get_threshold()
    with long_lived_heap_gc(full_every=500) as policy:
        assert gc.get_threshold() == (YOUNG_EVERY, before[1], 500)
        assert policy.full_scans == 1 and policy.baseline > 0
        assert 0 < gc.get_freeze_count() <= policy.baseline
        gc.collect()
        assert policy.freezes == 1
    assert gc.get_freeze_count() == 0
    assert policy not in gc.callbacks
    assert gc.get_threshold() == before
    with long_lived_heap_gc(young_every=None):  # the collector's own young threshold
        assert gc.get_threshold() == (before[0], before[1], 100)
    with pytest.raises(ValueError, match="young_every"), long_lived_heap_gc(young_every=0):
        pass


def test_survivors_of_a_young_collection_are_frozen():
    with long_lived_heap_gc() as policy:
        frozen = gc.get_freeze_count()
        kept = [[] for _ in range(100)]
        gc.collect(0)
        assert policy.freezes == 1
        assert gc.get_freeze_count() >= frozen + 100
        assert gc.get_count() == (0, 0, 0)  # freezing resets the collector's counts
        del kept


def test_with_freeze_after_two_only_full_collections_freeze():
    with long_lived_heap_gc(freeze_after=2) as policy:
        frozen = gc.get_freeze_count()
        kept = [[] for _ in range(100)]
        gc.collect(0)
        gc.collect(1)
        assert policy.freezes == 0 and gc.get_freeze_count() == frozen
        gc.collect()
        assert policy.freezes == 1 and gc.get_freeze_count() >= frozen + 100
        del kept


def test_a_frozen_cycle_waits_for_the_next_complete_scan():
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        alive = cycle()
        ref = weakref.ref(alive)
        gc.collect(0)  # the cycle survives a young collection, and is frozen
        assert policy.freezes == 1
        del alive
        gc.collect()  # garbage now, but frozen: not scanned
        assert ref() is not None
        # The frozen set regrows past 1.5x and stays so, quietly: the scanner thread
        # unfreezes and scans the whole heap at once, and the cycle goes.
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()  # grown: watched
        assert policy.grown and policy.idle.is_set()
        gc.collect()  # still grown, nothing added: a complete scan is asked for
        assert policy.idle.wait(SCAN_TIMEOUT)
        assert ref() is None
        assert policy.full_scans == 2
        del ballast


def test_with_the_collector_on_a_scan_asked_for_is_done_without_more_allocation():
    # Left to the collector, the full collection after an unfreeze would come only
    # after hundreds of thousands of new objects, which a quiet heap never makes.
    clock = FakeClock()
    gc.enable()
    with long_lived_heap_gc(regrow=1.5, settle=10, clock=clock) as policy:
        gc.set_threshold(100, 10, 100)
        alive = cycle()
        ref = weakref.ref(alive)
        # Young collections freeze the cycle and the ballast (no look yet: the clock
        # stands still).
        ballast = [[] for _ in range(2 * gc.get_freeze_count())]
        del alive
        clock.now = 10.0
        nudge = [[] for _ in range(300)]  # a young collection, and a look: grown
        assert policy.grown
        clock.now = 20.0
        nudge += [[] for _ in range(300)]  # grown at this look too, and quiet
        assert policy.idle.wait(SCAN_TIMEOUT)
        assert ref() is None
        assert policy.full_scans == 2
        del ballast, nudge


def test_growth_seen_at_one_look_only_is_not_enough():
    # Grown at a look, then quiet: the next look (another settle period on) decides.
    clock = FakeClock()
    with long_lived_heap_gc(regrow=2, settle=30, clock=clock) as policy:
        ballast = [[] for _ in range(2 * gc.get_freeze_count())]
        clock.now = 30.0
        gc.collect(0)  # frozen, and looked at: grown (the growth counts as busy)
        assert policy.grown
        clock.now = 60.0
        gc.collect(0)  # grown at this look too, and nothing added: quiet
        assert policy.idle.wait(SCAN_TIMEOUT)
        assert policy.full_scans == 2
        del ballast


def test_a_passing_growth_does_not_unfreeze():
    # A large response built and dropped between two looks: the frozen set was over
    # the bound only for a moment, so no complete scan follows.
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()
        assert policy.grown
        del ballast
        gc.collect()  # quiet, and counted again: back under the bound
        assert not policy.grown and policy.idle.is_set()
        assert policy.full_scans == 1


def test_a_heap_still_growing_is_not_scanned_until_it_settles():
    # A cluster filling up: the frozen set passed the bound and keeps growing, so a
    # complete scan (a pause as long as the heap is large) waits until it stops.
    with long_lived_heap_gc(regrow=2, settle=0) as policy:
        size = gc.get_freeze_count()
        ballast = [[[] for _ in range(size + size // 5)]]
        gc.collect()
        assert policy.grown
        for _ in range(3):
            ballast.append([[] for _ in range(size // 5)])
            gc.collect()  # grew by a fifth since the last look: still growing
            assert policy.idle.is_set() and policy.full_scans == 1
        gc.collect()  # nothing added since: quiet, so the whole heap is scanned
        assert policy.idle.wait(SCAN_TIMEOUT)
        assert policy.full_scans == 2
        del ballast


def test_a_churning_heap_is_not_quiet_though_its_size_holds():
    # Every look finds new objects frozen while as many frozen ones were freed (a
    # cluster's Leases: each renewal's version replaces the last): the frozen set's
    # size holds still, but the heap is busy and a complete scan would pause it.
    with long_lived_heap_gc(regrow=2, settle=0) as policy:
        size = gc.get_freeze_count()
        ballast = [[] for _ in range(size + size // 2)]
        gc.collect()
        assert policy.grown
        for _ in range(4):
            ballast = [[] for _ in range(size + size // 2)]  # the last ones freed
            gc.collect()
            assert policy.idle.is_set() and policy.full_scans == 1
        assert policy.grown
        del ballast


def test_a_heap_never_quiet_is_scanned_once_busy_rescan_has_passed():
    # Stray cycles among frozen objects must not wait forever on a busy process: some
    # time (an hour by default) after the last complete scan, a grown heap is scanned
    # though it is busy.
    clock = FakeClock()
    with long_lived_heap_gc(regrow=2, settle=10, busy_rescan=120, clock=clock) as policy:
        step = max(gc.get_freeze_count(), 2 * 10 * QUIET_RATE)  # twice a quiet 10 s
        ballast = []
        for tick in range(1, 12):
            clock.now = 10.0 * tick
            ballast.append([[] for _ in range(step)])  # busy, and grown
            gc.collect()
            assert policy.idle.is_set() and policy.full_scans == 1, tick
        assert policy.grown
        clock.now = 120.0
        ballast.append([[] for _ in range(step)])
        gc.collect()
        assert policy.idle.wait(SCAN_TIMEOUT)
        assert policy.full_scans == 2
        del ballast


def test_the_frozen_set_is_looked_at_once_per_settle_period():
    clock = FakeClock()
    with long_lived_heap_gc(regrow=2, settle=30, clock=clock) as policy:
        ballast = [[] for _ in range(3 * gc.get_freeze_count())]
        for _ in range(5):
            gc.collect(0)  # grown, but not looked at before 30 s have passed
        assert not policy.grown
        clock.now = 30.0
        gc.collect(0)
        assert policy.grown
        del ballast


def test_without_the_policy_a_cycle_goes_at_once():
    ref = weakref.ref(cycle())
    gc.collect()
    assert ref() is None


def test_bad_arguments_and_nesting_are_refused():
    with pytest.raises(ValueError, match="regrow"), long_lived_heap_gc(regrow=1):
        pass
    with pytest.raises(ValueError, match="freeze_after"), long_lived_heap_gc(freeze_after=3):
        pass
    with long_lived_heap_gc(), pytest.raises(RuntimeError, match="already active"), \
            long_lived_heap_gc():  # fmt: skip
        pass
    assert gc.get_freeze_count() == 0


def test_the_frozen_set_is_counted_only_when_quiet_and_maybe_past_the_bound():
    # Counting the frozen set walks all of it (1 s at 4 million objects, a pause of its
    # own): never while the heap is busy, nor when little was frozen.
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        keep = [[] for _ in range(gc.get_freeze_count() // 10)]
        gc.collect()
        gc.collect()
        assert policy.freezes == 2 and policy.counts == 0
        assert not policy.grown
        keep.append([[] for _ in range(gc.get_freeze_count())])
        gc.collect()  # past the bound, but busy: the bound says grown, uncounted
        assert policy.counts == 0 and policy.grown
        keep.pop()
        gc.collect()  # quiet: counted, and back under the limit
        assert policy.counts == 1 and not policy.grown
        assert policy.idle.is_set() and policy.full_scans == 1
        del keep
