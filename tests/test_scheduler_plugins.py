"""The scheduling framework and its plugins against Kubernetes' documented behaviour:
requests (init containers, sidecars, overhead), taints and tolerations, node affinity
operators, host ports, resource fit and its scoring strategies, balanced allocation,
the percentage of nodes to score, rotation, tie breaking and the FitError message."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.scheduler import (
    Code,
    CycleState,
    FitError,
    NodeInfo,
    default_framework,
    feasible_nodes_to_find,
    pod_requests,
)
from actorkube.scheduler._framework import first_feasible
from actorkube.scheduler._table import NodeTable
from actorkube.scheduler.plugins import (
    BalancedAllocation,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    TaintToleration,
    tolerates,
)

GI = 1024**3


def node(name="n1", cpu="4", memory="8Gi", pods="110", labels=None, taints=None, **spec):
    return NodeInfo({
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {**({"taints": taints} if taints else {}), **spec},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": pods}},
    })  # fmt: skip


def container(name="c", cpu=None, memory=None, ports=(), **extra):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    c = {"name": name, "image": "nginx", **extra}
    if requests:
        c["resources"] = {"requests": requests}
    if ports:
        c["ports"] = list(ports)
    return c


def pod(name="p", containers=None, **spec):
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": containers or [container()], **spec},
    }


def check(plugin, p, n, nodes=None):
    """``plugin``'s verdict on node ``n`` for pod ``p`` (``nodes``: the whole cluster,
    for the plugins whose pre-filter looks at it)."""
    state = CycleState()
    pre = getattr(plugin, "pre_filter", None)
    if pre is not None:
        status = pre(state, p, NodeTable(nodes or [n]))
        if status.code is Code.SKIP:
            return status
        assert status.ok
    return plugin.filter(state, p, n)


# --- requests -----------------------------------------------------------------------------


def test_requests_sum_containers_take_the_largest_init_container_and_add_overhead():
    p = pod(
        containers=[container("a", "500m", "1Gi"), container("b", "250m")],
        initContainers=[container("i1", "2", "64Mi"), container("i2", "100m", "3Gi")],
        overhead={"cpu": "10m"},
    )
    assert pod_requests(p) == {"cpu": 2010, "memory": 3 * GI}


def test_sidecars_run_beside_everything_after_them():
    sidecar = container("log", "200m", "100Mi", restartPolicy="Always")
    p = pod(containers=[container("a", "1")], initContainers=[sidecar, container("init", "1")])
    # The init container runs beside the sidecar (1.2 CPU); the app beside it too (1.2).
    assert pod_requests(p)["cpu"] == 1200
    # A plain init container before a sidecar does not run beside it: app + sidecar
    # (300m) against the init phase's peak (500m), as Kubernetes' PodRequests.
    early = pod(containers=[container("a", "100m")],
                initContainers=[container("init", "500m"), sidecar])  # fmt: skip
    assert pod_requests(early)["cpu"] == 500
    assert pod_requests(pod(containers=[container("a")]), non_zero=True) == {
        "cpu": 100,
        "memory": 200 * 1024 * 1024,
    }


# --- node basics and taints ---------------------------------------------------------------


def test_a_cordoned_node_takes_only_pods_that_tolerate_it():
    cordoned = node(unschedulable=True)
    status = check(NodeUnschedulable(), pod(), cordoned)
    assert status.code is Code.UNRESOLVABLE and status.reasons == ("node(s) were unschedulable",)
    tolerant = pod(tolerations=[{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                                 "effect": "NoSchedule"}])  # fmt: skip
    assert check(NodeUnschedulable(), tolerant, cordoned).ok
    assert check(NodeUnschedulable(), pod(), node()).ok


def test_node_name():
    assert check(NodeName(), pod(nodeName="n1"), node("n1")).ok
    status = check(NodeName(), pod(nodeName="n2"), node("n1"))
    assert status.reasons == ("node(s) didn't match the requested node name",)


def taint(key, effect="NoSchedule", value=""):
    return {"key": key, "value": value, "effect": effect}


@pytest.mark.parametrize(
    ("toleration", "taint_", "tolerated"),
    [
        ({"key": "k", "operator": "Equal", "value": "v"}, taint("k", value="v"), True),
        ({"key": "k", "value": "v"}, taint("k", value="v"), True),  # Equal by default
        ({"key": "k", "value": "x"}, taint("k", value="v"), False),
        ({"key": "k", "operator": "Exists"}, taint("k", "NoExecute", "v"), True),
        ({"operator": "Exists"}, taint("any", value="v"), True),  # every key
        ({"key": "", "operator": "Equal"}, taint("any"), False),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, taint("k"), False),
        ({"key": "k", "operator": "Exists", "effect": "NoSchedule"}, taint("k"), True),
        ({"key": "other", "operator": "Exists"}, taint("k"), False),
    ],
)
def test_toleration_matching(toleration, taint_, tolerated):
    assert tolerates([toleration], taint_) is tolerated


def test_taints_keep_out_what_does_not_tolerate_them_and_prefer_no_schedule_only_scores():
    tainted = node(taints=[{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])
    status = check(TaintToleration(), pod(), tainted)
    assert status.code is Code.UNRESOLVABLE
    assert status.reasons == ("node(s) had untolerated taint {dedicated: gpu}",)
    gpu = pod(tolerations=[{"key": "dedicated", "operator": "Equal", "value": "gpu"}])
    assert check(TaintToleration(), gpu, tainted).ok
    soft = node("soft", taints=[{"key": "spot", "value": "yes", "effect": "PreferNoSchedule"}])
    assert check(TaintToleration(), pod(), soft).ok  # never filters
    plugin = TaintToleration()
    raw = np.array([plugin.score(CycleState(), pod(), n) for n in (soft, node("clean"))])
    assert plugin.normalize(CycleState(), pod(), raw).tolist() == [0, 100]
    # Scoring is skipped where no node has a PreferNoSchedule taint (all would tie).
    rows = np.arange(2)
    table = NodeTable([tainted, node("clean")])
    assert plugin.pre_score(CycleState(), pod(), table, rows).code is Code.SKIP
    table = NodeTable([soft, node("clean")])
    assert plugin.pre_score(CycleState(), pod(), table, rows).code is Code.SUCCESS
    # The answer is kept per grouping of the nodes: a Node that gains the taint in a
    # kept table makes a new grouping, and the answer follows it.
    from actorkube.scheduler._cache import SchedulerCache

    cache = SchedulerCache()
    for name in ("a", "b"):
        cache.add_node(node(name).node)
    assert plugin.pre_score(CycleState(), pod(), cache.table(), rows).code is Code.SKIP
    cache.add_node({**node("b").node, "spec": {"taints": soft.spec["taints"]}})
    assert plugin.pre_score(CycleState(), pod(), cache.table(), rows).code is Code.SUCCESS


# --- node affinity ------------------------------------------------------------------------


def affinity(*terms, preferred=()):
    na = {}
    if terms:
        na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": list(terms)}
    if preferred:
        na["preferredDuringSchedulingIgnoredDuringExecution"] = list(preferred)
    return {"nodeAffinity": na}


def expr(key, operator, *values):
    return {"key": key, "operator": operator, **({"values": list(values)} if values else {})}


@pytest.mark.parametrize(
    ("term", "fits"),
    [
        ({"matchExpressions": [expr("zone", "In", "a", "b")]}, True),
        ({"matchExpressions": [expr("zone", "NotIn", "a")]}, False),
        ({"matchExpressions": [expr("gpu", "DoesNotExist")]}, True),
        ({"matchExpressions": [expr("zone", "Exists")]}, True),
        ({"matchExpressions": [expr("cores", "Gt", "8")]}, True),
        ({"matchExpressions": [expr("cores", "Lt", "8")]}, False),
        ({"matchExpressions": [expr("zone", "In", "a"), expr("cores", "Gt", "32")]}, False),
        ({"matchFields": [expr("metadata.name", "In", "n1")]}, True),
        ({"matchFields": [expr("metadata.name", "NotIn", "n1")]}, False),
        ({}, False),  # an empty term matches nothing
    ],
)
def test_required_node_affinity_operators(term, fits):
    n = node(labels={"zone": "a", "cores": "16"})
    status = check(NodeAffinity(), pod(affinity=affinity(term)), n)
    assert status.ok is fits
    if not fits:
        assert status.reasons == ("node(s) didn't match Pod's node affinity/selector",)


def test_terms_are_ored_node_selector_anded_and_preferences_score():
    n = node(labels={"zone": "a", "disk": "ssd"})
    either = affinity({"matchExpressions": [expr("zone", "In", "b")]},
                      {"matchExpressions": [expr("zone", "In", "a")]})  # fmt: skip
    assert check(NodeAffinity(), pod(affinity=either), n).ok
    assert check(NodeAffinity(), pod(nodeSelector={"disk": "ssd"}), n).ok
    assert not check(NodeAffinity(), pod(nodeSelector={"disk": "ssd", "zone": "b"}), n).ok
    prefers = pod(affinity=affinity(preferred=[
        {"weight": 80, "preference": {"matchExpressions": [expr("disk", "In", "ssd")]}},
        {"weight": 20, "preference": {"matchExpressions": [expr("zone", "In", "b")]}},
    ]))  # fmt: skip
    plugin = NodeAffinity()
    other = node("n2", labels={"zone": "b"})
    scores = {x.name: plugin.score(CycleState(), prefers, x) for x in (n, other)}
    assert scores == {"n1": 80, "n2": 20}
    raw = np.array(list(scores.values()))
    assert plugin.normalize(CycleState(), prefers, raw).tolist() == [100, 25]
    # As Kubernetes' PreScore: nothing preferred, nothing to score.
    table, rows = NodeTable([n, other]), np.arange(2)
    assert plugin.pre_score(CycleState(), prefers, table, rows).code is Code.SUCCESS
    assert plugin.pre_score(CycleState(), pod(affinity=either), table, rows).code is Code.SKIP


# --- host ports ---------------------------------------------------------------------------


def test_host_ports_clash_on_protocol_port_and_address():
    n = node()
    n.add_pod(pod("web", [container(ports=[{"containerPort": 80, "hostPort": 8080}])]))
    wanted = {"containerPort": 80, "hostPort": 8080}
    assert not check(NodePorts(), pod(containers=[container(ports=[wanted])]), n).ok
    udp = {**wanted, "protocol": "UDP"}
    assert check(NodePorts(), pod(containers=[container(ports=[udp])]), n).ok
    n2 = node("n2")
    n2.add_pod(pod("a", [container(ports=[{**wanted, "hostIP": "10.0.0.1"}])]))
    assert check(
        NodePorts(), pod(containers=[container(ports=[{**wanted, "hostIP": "10.0.0.2"}])]), n2
    ).ok
    assert not check(NodePorts(), pod(containers=[container(ports=[wanted])]), n2).ok  # 0.0.0.0
    n.remove_pod(pod("web"))
    assert check(NodePorts(), pod(containers=[container(ports=[wanted])]), n).ok


# --- resources ----------------------------------------------------------------------------


def test_fit_names_every_resource_short_and_counts_pods():
    n = node(cpu="2", memory="1Gi", pods="1")
    n.add_pod(pod("old", [container(cpu="1500m", memory="512Mi")]))
    status = check(NodeResourcesFit(), pod(containers=[container(cpu="1", memory="1Gi")]), n)
    assert status.code is Code.UNSCHEDULABLE
    assert status.reasons == ("Too many pods", "Insufficient cpu", "Insufficient memory")
    roomy = node(cpu="2", memory="1Gi")
    roomy.add_pod(pod("old", [container(cpu="1500m", memory="512Mi")]))
    assert check(
        NodeResourcesFit(), pod(containers=[container(cpu="500m", memory="512Mi")]), roomy
    ).ok


@pytest.mark.parametrize(
    ("strategy", "best"),
    [("LeastAllocated", "empty"), ("MostAllocated", "busy"), ("RequestedToCapacityRatio", "busy")],
)
def test_scoring_strategies(strategy, best):
    busy, empty = node("busy"), node("empty")
    busy.add_pod(pod("old", [container(cpu="3", memory="6Gi")]))
    plugin = NodeResourcesFit(strategy)
    new = pod(containers=[container(cpu="500m", memory="1Gi")])
    scores = {n.name: plugin.score(CycleState(), new, n) for n in (busy, empty)}
    assert max(scores, key=scores.get) == best
    if strategy == "LeastAllocated":
        # (4000-500)/4000 and (8-1)/8 of free: 87 and 87.
        assert scores["empty"] == (87 + 87) // 2


def test_balanced_allocation_prefers_even_use():
    even, skewed = node("even"), node("skewed")
    even.add_pod(pod("a", [container(cpu="2", memory="4Gi")]))
    skewed.add_pod(pod("a", [container(cpu="3", memory="1Gi")]))
    plugin = BalancedAllocation()
    new = pod(containers=[container(cpu="100m", memory="200Mi")])
    assert plugin.score(CycleState(), new, even) > plugin.score(CycleState(), new, skewed)


# --- the framework ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "found"),
    [(50, 50), (99, 99), (100, 100), (500, 230), (1000, 420), (5000, 500), (6000, 300),
     (20000, 1000)],
)  # fmt: skip
def test_feasible_nodes_to_find_follows_kubernetes_rule(nodes, found):
    assert feasible_nodes_to_find(nodes) == found
    assert feasible_nodes_to_find(nodes, 100) == nodes


@given(st.lists(st.booleans(), max_size=40), st.integers(0, 39), st.integers(1, 45))
def test_the_first_feasible_rows_are_found_in_scan_order(bits, start, want):
    mask = np.array(bits, dtype=bool)
    start = start % len(bits) if bits else 0
    order = [*range(start, len(bits)), *range(start)]
    expected = [i for i in order if bits[i]][:want]
    assert first_feasible(mask, start, want).tolist() == expected


def test_a_pod_no_node_fits_gets_kubernetes_message():
    nodes = [
        node("small1", cpu="1"),
        node("small2", cpu="1"),
        node("cordoned", unschedulable=True),
        node("tainted", taints=[taint("k", "NoExecute", "v")]),
    ]
    with pytest.raises(FitError) as e:
        default_framework().schedule(pod(containers=[container(cpu="2")]), nodes)
    assert str(e.value) == (
        "0/4 nodes are available: 1 node(s) had untolerated taint {k: v}, "
        "1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/4 nodes are "
        "available: 2 No preemption victims found for incoming pod, 2 Preemption is not "
        "helpful for scheduling."
    )
    with pytest.raises(FitError) as e:
        default_framework().schedule(pod(), [])
    assert str(e.value) == "0/0 nodes are available: no nodes available to schedule pods."


def test_the_best_node_wins_ties_break_by_seed_and_scans_rotate():
    nodes = [node(f"n{i}") for i in range(300)]
    nodes[7].add_pod(pod("x", [container(cpu="3")]))
    framework = default_framework(seed=1)
    result = framework.schedule(pod(containers=[container(cpu="1")]), nodes)
    assert result.node != "n7" and result.evaluated == result.feasible == 144  # 48% of 300
    again = default_framework(seed=1).schedule(pod(containers=[container(cpu="1")]), nodes)
    assert again.node == result.node  # deterministic for the same inputs and seed
    big = [node(f"m{i}") for i in range(1000)]
    framework = default_framework()
    first = framework.schedule(pod(), big)
    assert first.feasible == 420 and first.evaluated == 420
    assert framework.next_start == 420  # the next cycle starts where this one stopped
    framework.schedule(pod(), big)
    assert framework.next_start == 840
