"""DefaultPreemption against Kubernetes' documented behaviour: the fewest and least
important victims, the node chosen by its victims (PDB violations, highest priority,
sum, count, start time), reprieve of pods that can stay, preemptionPolicy Never,
nodes where eviction cannot help, budgets, and inter-pod anti-affinity resolved by
evicting the pod that repels."""

from __future__ import annotations

import pytest

from actorkube.scheduler import FitError, NodeInfo, default_framework
from actorkube.scheduler._framework import ClusterView
from actorkube.scheduler._preemption import split_by_budget


def node(name: str, cpu: str = "4", **spec) -> NodeInfo:
    return NodeInfo({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "110"}},
    })  # fmt: skip


def pod(name: str, cpu: str, priority: int = 0, start: str = "", labels=None, **spec) -> dict:
    c = {"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu}}}
    p = {"metadata": {"name": name, "namespace": "default", "labels": labels or {}},
         "spec": {"containers": [c], "priority": priority, **spec}, "status": {}}  # fmt: skip
    if start:
        p["status"]["startTime"] = start
    return p


def preempt(p: dict, nodes: list[NodeInfo], cluster: ClusterView | None = None):
    framework = default_framework()
    if cluster is not None:
        framework.cluster = cluster
    with pytest.raises(FitError) as e:
        framework.schedule(p, nodes)
    return e.value


def names(preemption) -> list[str]:
    return sorted(v["metadata"]["name"] for v in preemption.victims)


def test_the_fewest_lowest_victims_on_the_best_node():
    a, b = node("a"), node("b")
    for i in range(4):
        a.add_pod(pod(f"a{i}", "900m", priority=5))
        b.add_pod(pod(f"b{i}", "900m", priority=1))
    e = preempt(pod("high", "3", priority=10), [a, b])
    # Both nodes need three victims; b's are less important.
    assert e.preemption.node == "b" and len(e.preemption.victims) == 3
    assert e.preemption.pdb_violations == 0
    assert e.post_filter == ""  # preemption found: nothing more to say


def test_pods_that_can_stay_are_reprieved_most_important_first():
    n = node("n")
    n.add_pod(pod("big-low", "2", priority=1))
    n.add_pod(pod("small-mid", "1", priority=5))
    n.add_pod(pod("small-low", "1", priority=1))
    e = preempt(pod("high", "2", priority=10), [n])
    # Removing all three frees 4 cpu; small-mid (most important) comes back, then
    # big-low does not fit back while small-low does.
    assert names(e.preemption) == ["big-low"]


def test_node_choice_by_highest_victim_priority_then_count_then_start():
    low, mid = node("low"), node("mid")
    low.add_pod(pod("l1", "2", priority=3))
    low.add_pod(pod("l2", "2", priority=3))
    mid.add_pod(pod("m", "4", priority=4))
    assert preempt(pod("p", "3", priority=10), [mid, low]).preemption.node == "low"
    one, two = node("one"), node("two")
    one.add_pod(pod("o", "4", priority=3))
    two.add_pod(pod("t1", "2", priority=3))
    two.add_pod(pod("t2", "2", priority=3))
    # Same highest priority; the lower sum of priorities (one victim) wins.
    assert preempt(pod("p", "3", priority=10), [two, one]).preemption.node == "one"
    old, new = node("old"), node("new")
    old.add_pod(pod("o", "4", priority=3, start="2026-01-01T00:00:00Z"))
    new.add_pod(pod("n", "4", priority=3, start="2026-06-01T00:00:00Z"))
    # Everything else equal: the node whose victims started last.
    assert preempt(pod("p", "3", priority=10), [old, new]).preemption.node == "new"


def test_no_preemption_when_it_cannot_help_or_is_not_allowed():
    tainted = node("tainted", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    tainted.add_pod(pod("x", "4", priority=0))
    equal = node("equal")
    equal.add_pod(pod("y", "4", priority=10))
    e = preempt(pod("p", "1", priority=10), [tainted, equal])
    assert e.preemption is None
    assert str(e).endswith(
        "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming "
        "pod, 1 Preemption is not helpful for scheduling."
    )
    low = node("low")
    low.add_pod(pod("z", "4", priority=0))
    never = pod("p", "1", priority=10, preemptionPolicy="Never")
    e = preempt(never, [low])
    assert e.preemption is None
    assert str(e).endswith("preemption: not eligible due to preemptionPolicy=Never.")


class Budgets(ClusterView):
    def __init__(self, budgets: list[dict]) -> None:
        self.budgets = budgets

    def pod_disruption_budgets(self) -> list[dict]:
        return self.budgets


def budget(app: str, allowed: int, disrupted=()) -> dict:
    when = "2026-01-01T00:00:00Z"
    return {"metadata": {"name": f"pdb-{app}", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": app}}},
            "status": {"disruptionsAllowed": allowed,
                       "disruptedPods": dict.fromkeys(disrupted, when)}}  # fmt: skip


def test_budgets_are_broken_last():
    guarded, free = node("guarded"), node("free")
    guarded.add_pod(pod("g", "4", priority=1, labels={"app": "db"}))
    free.add_pod(pod("f", "4", priority=2, labels={"app": "web"}))
    # Without a budget the lower-priority victim (g) is chosen...
    assert preempt(pod("p", "3", priority=10), [guarded, free]).preemption.node == "guarded"
    # ...with one that allows no disruption, the other node, despite a higher priority.
    e = preempt(pod("p", "3", priority=10), [guarded, free], Budgets([budget("db", 0)]))
    assert e.preemption.node == "free" and e.preemption.pdb_violations == 0
    pods = [pod(f"d{i}", "1", labels={"app": "db"}) for i in range(3)]
    violating, fine = split_by_budget(pods, [budget("db", 1, disrupted=["d0"])])
    assert [p["metadata"]["name"] for p in fine] == ["d0", "d1"]  # d0 is counted already
    assert [p["metadata"]["name"] for p in violating] == ["d2"]


def test_evicting_the_pod_that_repels_resolves_anti_affinity():
    n = node("n")
    repeller = pod("repeller", "100m", priority=1, labels={"app": "db"}, affinity={
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname",
             "labelSelector": {"matchLabels": {"app": "web"}}}]}})  # fmt: skip
    n.add_pod(repeller)
    n.add_pod(pod("bystander", "100m", priority=1, labels={"app": "cache"}))
    e = preempt(pod("web", "100m", priority=10, labels={"app": "web"}), [n])
    assert names(e.preemption) == ["repeller"]  # the bystander stays


def test_a_pod_only_nominated_is_never_a_victim_but_yields_its_room():
    n = node("n", cpu="1")
    n.add_pod(pod("low", "500m", priority=0))
    held = pod("a", "500m", priority=10)
    n.add_pod({**held, "spec": {**held["spec"], "nodeName": "n"}})
    n.nominated.add("default/a")  # as the cache holds a preemptor's room
    e = preempt(pod("b", "900m", priority=100), [n])
    assert names(e.preemption) == ["low"]  # the running pod goes; "a" is not running
    assert [p["metadata"]["name"] for p in e.preemption.displaced] == ["a"]


def test_a_nominated_pod_goes_to_its_node_when_it_fits():
    busy, empty = node("busy"), node("empty")
    busy.add_pod(pod("x", "2"))
    p = pod("p", "1", priority=10)
    p["status"]["nominatedNodeName"] = "busy"
    # Scoring alone would pick the empty node; the nomination is tried first.
    assert default_framework().schedule(p, [empty, busy]).node == "busy"


def test_remembered_answers_follow_the_node():
    # The plugin remembers each node's victims for a preemptor of the same shape; a
    # change to the node (any pod added or removed) must be seen.
    n = node("n", cpu="4")
    for i in range(4):
        n.add_pod(pod(f"low{i}", "900m", priority=1))
    framework = default_framework()
    first = preempt_with(framework, pod("h1", "3", priority=10), [n])
    assert len(first.victims) == 3
    n.remove_pod(pod("low0", "900m"))
    n.remove_pod(pod("low1", "900m"))  # now 1.8 cpu used: one victim is enough
    second = preempt_with(framework, pod("h2", "3", priority=10), [n])
    assert len(second.victims) == 1
    n.add_pod(pod("mid", "2", priority=5))
    third = preempt_with(framework, pod("h3", "3", priority=10), [n])
    assert [v["metadata"]["name"] for v in third.victims] != [
        v["metadata"]["name"] for v in second.victims]  # fmt: skip


def preempt_with(framework, p: dict, nodes: list[NodeInfo]):
    with pytest.raises(FitError) as e:
        framework.schedule(p, nodes)
    return e.value.preemption
