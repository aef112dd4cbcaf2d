"""Properties of the scheduling core on random clusters and pods (Hypothesis): no node
is ever overcommitted, a pod that fits some node is never left pending, and the same
inputs and seed choose the same nodes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.scheduler import FitError, NodeInfo, default_framework
from actorkube.scheduler._framework import CycleState

nodes_st = st.lists(
    st.tuples(st.integers(1, 8), st.integers(1, 16), st.integers(1, 6), st.booleans()),
    min_size=1,
    max_size=12,
)
pods_st = st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 4096)), max_size=40)


def build(spec):
    out = []
    for i, (cpu, gib, max_pods, tainted) in enumerate(spec):
        taints = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}] if tainted else []
        out.append(NodeInfo({
            "metadata": {"name": f"n{i}", "labels": {"zone": "ab"[i % 2]}},
            "spec": {"taints": taints},
            "status": {"allocatable": {"cpu": str(cpu), "memory": f"{gib}Gi",
                                       "pods": str(max_pods)}},
        }))  # fmt: skip
    return out


def make_pod(i, cpu, mem):
    c = {"name": "c", "resources": {"requests": {"cpu": f"{cpu}m", "memory": f"{mem}Mi"}}}
    return {"metadata": {"name": f"p{i}", "namespace": "default"}, "spec": {"containers": [c]}}


def run(node_spec, pod_spec, seed):
    nodes = build(node_spec)
    framework = default_framework(seed=seed)
    placed = []
    for i, (cpu, mem) in enumerate(pod_spec):
        p = make_pod(i, cpu, mem)
        try:
            result = framework.schedule(p, nodes)
        except FitError:
            # Pending only if no node passes every filter.
            for n in nodes:
                state = CycleState()
                assert any(not f(state, p, n).ok for f in framework._filters(state)), n.name
            placed.append(None)
            continue
        target = next(n for n in nodes if n.name == result.node)
        target.add_pod(p)
        placed.append(result.node)
    return nodes, placed


@settings(max_examples=150, deadline=None)
@given(nodes_st, pods_st, st.integers(0, 3))
def test_no_node_is_overcommitted_and_no_fitting_pod_is_left_pending(node_spec, pod_spec, seed):
    nodes, placed = run(node_spec, pod_spec, seed)
    for n in nodes:
        for resource in ("cpu", "memory"):
            assert n.requested.get(resource, 0) <= n.allocatable[resource]
        assert len(n.pods) <= n.allocatable["pods"]
        assert not (n.spec.get("taints") and n.pods)  # nobody tolerates the taint
    assert run(node_spec, pod_spec, seed)[1] == placed  # deterministic
