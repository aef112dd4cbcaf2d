"""The long-lived-heap GC policy: survivors of a full collection are frozen, a regrown
frozen set is scanned once more, cycles among frozen objects are reclaimed then, and
leaving the block restores the collector."""

from __future__ import annotations

import gc
import weakref

import pytest

from actorkube.heap import long_lived_heap_gc


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


def test_a_frozen_cycle_waits_for_the_next_complete_scan():
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        gc.collect()  # a complete scan: baseline taken, everything frozen
        alive = cycle()
        ref = weakref.ref(alive)
        gc.collect()  # the cycle survives, and is frozen with the rest
        assert policy.freezes == 1
        del alive
        gc.collect()  # garbage now, but frozen: not scanned
        assert ref() is not None
        # The frozen set regrows past 1.5x and stays so: the policy unfreezes, the next
        # full collection scans the whole heap and the cycle goes.
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()
        gc.collect()
        assert policy.baseline == 0
        gc.collect()
        assert ref() is None
        assert policy.full_scans == 2
        del ballast


def test_a_passing_growth_does_not_unfreeze():
    # A large response built and dropped between two full collections: the frozen set
    # was over the bound only for a moment, so no complete scan follows.
    with long_lived_heap_gc(regrow=1.5, settle=3600) as policy:
        gc.collect()
        ballast = [[] for _ in range(gc.get_freeze_count())]
        gc.collect()
        assert policy.grown_since is not None
        del ballast
        gc.collect()
        assert policy.grown_since is None and policy.baseline > 0
        assert policy.full_scans == 1


def test_a_heap_still_growing_is_not_scanned_until_it_settles():
    # A cluster filling up: the frozen set passed the bound and keeps growing, so a
    # complete scan (a pause as long as the heap is large) waits until it stops.
    with long_lived_heap_gc(regrow=1.5, settle=0) as policy:
        gc.collect()
        ballast = [[[] for _ in range(gc.get_freeze_count())]]
        gc.collect()
        assert policy.grown_since is not None and policy.baseline > 0
        for _ in range(3):
            ballast.append([[] for _ in range(gc.get_freeze_count() // 5)])
            gc.collect()  # grew by a fifth since the last look: still growing
            assert policy.baseline > 0 and policy.full_scans == 1
        gc.collect()  # no growth since: steady, so everything is unfrozen
        assert policy.baseline == 0
        gc.collect()
        assert policy.full_scans == 2
        del ballast


def test_without_the_policy_a_cycle_goes_at_once():
    ref = weakref.ref(cycle())
    gc.collect()
    assert ref() is None


def test_regrow_must_exceed_one():
    with pytest.raises(ValueError, match="regrow"), long_lived_heap_gc(regrow=1):
        pass


def test_the_frozen_set_is_counted_only_when_it_may_have_passed_the_bound():
    # Counting the frozen set walks all of it (millions of objects in a large cluster):
    # a full collection that froze little does not count it.
    with long_lived_heap_gc(regrow=1.5, settle=3600) as policy:
        gc.collect()
        keep = [[] for _ in range(gc.get_freeze_count() // 10)]
        gc.collect()
        gc.collect()
        assert policy.freezes == 2 and policy.counts == 0
        assert policy.grown_since is None
        keep.append([[] for _ in range(gc.get_freeze_count())])
        gc.collect()  # now past the bound: counted, and the growth seen
        assert policy.counts == 1 and policy.grown_since is not None
        del keep
