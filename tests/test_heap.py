"""The long-lived-heap GC policy: survivors of a collection are frozen (every young one
by default), a regrown frozen set is scanned once more when the heap is quiet (or after
busy_rescan), cycles among frozen objects are reclaimed then, and leaving the block
restores the collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from actorkube.heap import QUIET_RATE, long_lived_heap_gc


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


def test_survivors_of_a_full_collection_are_frozen_and_unfrozen_on_leaving():
    before = gc.get_threshold()
    with long_lived_heap_gc(full_every=500) as policy:
        assert gc.get_threshold() == (before[0], before[1], 500)
        gc.collect()
        assert gc.get_freeze_count() > 0
        assert policy.full_scans == 1
    assert gc.get_freeze_count() == 0
    assert policy not in gc.callbacks
    assert gc.get_threshold() == before


def test_survivors_of_a_young_collection_are_frozen_once_there_is_a_baseline():
    with long_lived_heap_gc() as policy:
        kept = [[] for _ in range(100)]
        gc.collect(0)  # no complete scan yet: nothing is frozen before it
        assert gc.get_freeze_count() == 0 and policy.freezes == 0
        gc.collect()
        frozen = gc.get_freeze_count()
        kept += [[] for _ in range(100)]
        gc.collect(0)
        assert policy.freezes == 1
        assert gc.get_freeze_count() >= frozen + 100
        assert gc.get_count() == (0, 0, 0)  # freezing resets the collector's counts
        del kept


def test_with_freeze_after_two_only_full_collections_freeze():
    with long_lived_heap_gc(freeze_after=2) as policy:
        gc.collect()
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
        gc.collect()  # a complete scan: baseline taken, everything frozen
        alive = cycle()
        ref = weakref.ref(alive)
        gc.collect(0)  # the cycle survives a young collection, and is frozen
        assert policy.freezes == 1
        del alive
        gc.collect()  # garbage now, but frozen: not scanned
        assert ref() is not None
        # The frozen set regrows past 1.5x and stays so, quietly: the policy unfreezes,
        # the next full collection scans the whole heap and the cycle goes.
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()  # grown: watched
        assert policy.grown and policy.baseline > 0
        gc.collect()  # still grown, nothing added: unfrozen
        assert policy.baseline == 0
        gc.collect()
        assert ref() is None
        assert policy.full_scans == 2
        del ballast


def test_a_passing_growth_does_not_unfreeze():
    # A large response built and dropped between two looks: the frozen set was over
    # the bound only for a moment, so no complete scan follows.
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        gc.collect()
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()
        assert policy.grown
        del ballast
        gc.collect()  # quiet, and counted again: back under the bound
        assert not policy.grown and policy.baseline > 0
        assert policy.full_scans == 1


def test_a_heap_still_growing_is_not_scanned_until_it_settles():
    # A cluster filling up: the frozen set passed the bound and keeps growing, so a
    # complete scan (a pause as long as the heap is large) waits until it stops.
    with long_lived_heap_gc(regrow=2, settle=0) as policy:
        gc.collect()
        size = gc.get_freeze_count()
        ballast = [[[] for _ in range(size + size // 5)]]
        gc.collect()
        assert policy.grown and policy.baseline > 0
        for _ in range(3):
            ballast.append([[] for _ in range(size // 5)])
            gc.collect()  # grew by a fifth since the last look: still growing
            assert policy.baseline > 0 and policy.full_scans == 1
        gc.collect()  # nothing added since: quiet, so everything is unfrozen
        assert policy.baseline == 0
        gc.collect()
        assert policy.full_scans == 2
        del ballast


def test_a_churning_heap_is_not_quiet_though_its_size_holds():
    # Every look finds new objects frozen while as many frozen ones were freed (a
    # cluster's Leases: each renewal's version replaces the last): the frozen set's
    # size holds still, but the heap is busy and a complete scan would pause it.
    with long_lived_heap_gc(regrow=2, settle=0) as policy:
        gc.collect()
        size = gc.get_freeze_count()
        ballast = [[] for _ in range(size + size // 2)]
        gc.collect()
        assert policy.grown
        for _ in range(4):
            ballast = [[] for _ in range(size + size // 2)]  # the last ones freed
            gc.collect()
            assert policy.baseline > 0 and policy.full_scans == 1
        assert policy.grown
        del ballast


def test_a_heap_never_quiet_is_scanned_once_busy_rescan_has_passed():
    # Stray cycles among frozen objects must not wait forever on a busy process: some
    # time (an hour by default) after the last complete scan, a grown heap is scanned
    # though it is busy.
    now = [0.0]
    with long_lived_heap_gc(regrow=2, settle=10, busy_rescan=120) as policy:
        policy.clock = lambda: now[0]
        gc.collect()
        step = max(gc.get_freeze_count(), 2 * 10 * QUIET_RATE)  # twice a quiet 10 s
        ballast = []
        for tick in range(1, 12):
            now[0] = 10.0 * tick
            ballast.append([[] for _ in range(step)])  # busy, and grown
            gc.collect()
            assert policy.baseline > 0, tick
        assert policy.grown
        now[0] = 120.0
        ballast.append([[] for _ in range(step)])
        gc.collect()
        assert policy.baseline == 0
        gc.collect()
        assert policy.full_scans == 2
        del ballast


def test_the_frozen_set_is_looked_at_once_per_settle_period():
    now = [0.0]
    with long_lived_heap_gc(regrow=2, settle=30) as policy:
        policy.clock = lambda: now[0]
        gc.collect()
        ballast = [[] for _ in range(3 * gc.get_freeze_count())]
        for _ in range(5):
            gc.collect(0)  # grown, but not looked at before 30 s have passed
        assert not policy.grown and policy.counts == 0
        now[0] = 30.0
        gc.collect(0)
        assert policy.grown and policy.counts == 1
        del ballast


def test_without_the_policy_a_cycle_goes_at_once():
    ref = weakref.ref(cycle())
    gc.collect()
    assert ref() is None


def test_regrow_must_exceed_one_and_freeze_after_be_a_generation():
    with pytest.raises(ValueError, match="regrow"), long_lived_heap_gc(regrow=1):
        pass
    with pytest.raises(ValueError, match="freeze_after"), long_lived_heap_gc(freeze_after=3):
        pass


def test_the_frozen_set_is_counted_only_when_it_may_have_passed_the_bound():
    # Counting the frozen set walks all of it (millions of objects in a large cluster):
    # a look after little was frozen does not count it.
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        gc.collect()
        keep = [[] for _ in range(gc.get_freeze_count() // 10)]
        gc.collect()
        gc.collect()
        assert policy.freezes == 2 and policy.counts == 0
        assert not policy.grown
        keep.append([[] for _ in range(gc.get_freeze_count())])
        gc.collect()  # now past the bound: counted, and the growth seen
        assert policy.counts == 1 and policy.grown
        del keep
