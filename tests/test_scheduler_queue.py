"""The scheduling queue: PrioritySort, per-pod exponential backoff, unschedulable pods
parked until a cluster event, and the five-minute flush."""

from __future__ import annotations

from actorkube.scheduler._queue import SchedulingQueue


def pod(name, priority=0):
    return {"metadata": {"name": name, "namespace": "default"}, "spec": {"priority": priority}}


def names(queue, now):
    out = []
    while (p := queue.pop(now)) is not None:
        out.append(p["metadata"]["name"])
    return out


def test_higher_priority_first_then_the_earlier_queued():
    q = SchedulingQueue()
    q.add(pod("low-old"), 0)
    q.add(pod("high", 100), 1)
    q.add(pod("low-new"), 2)
    q.add(pod("high-new", 100), 3)
    assert names(q, 5) == ["high", "high-new", "low-old", "low-new"]


def test_failed_pods_back_off_exponentially_up_to_the_maximum():
    q = SchedulingQueue()
    q.add(pod("p"), 0)
    waits = []
    now = 0.0
    for _ in range(6):
        assert q.pop(now)["metadata"]["name"] == "p"
        q.error(pod("p"), now)
        ready = q.next_ready()
        waits.append(ready - now)
        assert q.pop(ready - 0.01) is None  # not before its time
        now = ready
    assert waits == [1, 2, 4, 8, 10, 10]


def test_unschedulable_pods_wait_for_a_cluster_event():
    q = SchedulingQueue()
    q.add(pod("p"), 0)
    q.pop(0)
    q.unschedulable(pod("p"), 0)
    assert q.where(pod("p")) == "unschedulable"
    assert q.pop(100) is None  # nothing changed: it stays parked
    assert q.move_all(100) == 1
    assert names(q, 100) == ["p"]  # its 1 s backoff is long over
    q.unschedulable(pod("p"), 100)
    q.move_all(100.5)
    assert q.where(pod("p")) == "backoff"  # the event came inside its 2 s backoff
    assert q.pop(101) is None and names(q, 102) == ["p"]


def test_an_event_during_the_attempt_sends_the_pod_to_backoff_not_to_sleep():
    q = SchedulingQueue()
    q.add(pod("p"), 0)
    q.pop(0)
    q.move_all(0.1)  # e.g. a node was added while the cycle ran
    q.unschedulable(pod("p"), 0.2)
    assert q.where(pod("p")) == "backoff"


def test_unschedulable_pods_are_tried_again_after_five_minutes():
    q = SchedulingQueue()
    q.add(pod("p"), 0)
    q.pop(0)
    q.unschedulable(pod("p"), 0)
    assert q.pop(299) is None
    assert names(q, 300) == ["p"]


def test_updates_deletes_and_done():
    q = SchedulingQueue()
    q.add(pod("a"), 0)
    q.add(pod("b"), 1)
    q.delete(pod("a"))
    assert names(q, 2) == ["b"]
    q.unschedulable(pod("b"), 2)
    q.add(pod("b", 5), 2.5)  # changed: worth another try (after its 1 s backoff)
    assert q.where(pod("b")) == "backoff"
    assert names(q, 4) == ["b"]
    q.done(pod("b"))
    assert len(q) == 0 and q.where(pod("b")) is None


def test_events_move_only_the_pods_they_could_help():
    q = SchedulingQueue()
    for name, plugins in (("spread", {"PodTopologySpread"}), ("fit", {"NodeResourcesFit"}),
                          ("unknown", set())):  # fmt: skip
        q.add(pod(name), now=0)
        q.pop(now=0)
        q.unschedulable(pod(name), now=0, plugins=frozenset(plugins))
    # A bound pod added cannot free resources: only the spread-constrained pod (and the
    # one whose reasons are unknown) may now fit.
    assert q.move_all(now=20, event="AssignedPodAdd") == 2
    assert q.where(pod("fit")) == "unschedulable"
    assert q.move_all(now=20, event="AssignedPodDelete") == 1
    assert q.where(pod("fit")) == "active"


def test_a_parked_pod_is_due_after_five_minutes_even_without_events():
    q = SchedulingQueue()
    q.add(pod("a"), now=0)
    q.pop(now=0)
    q.unschedulable(pod("a"), now=10, plugins=frozenset({"NodeResourcesFit"}))
    assert q.next_ready() == 10 + 300  # the loop wakes for it
    assert q.pop(now=309) is None
    assert q.pop(now=310)["metadata"]["name"] == "a"


def test_a_parked_pod_deleted_leaves_no_trace():
    q = SchedulingQueue()
    q.add(pod("a"), now=0)
    q.pop(now=0)
    q.unschedulable(pod("a"), now=0, plugins=frozenset({"InterPodAffinity"}))
    q.delete(pod("a"))
    assert q.move_all(now=1, event="AssignedPodAdd") == 0 and len(q) == 0
    assert q.next_ready() is None
