"""Properties of placement with inter-pod constraints (Hypothesis), checked against a
naive model written here from Kubernetes' documented rules, not from the plugins: a
placed pod never breaks its required anti-affinity, an existing pod's anti-affinity,
its required affinity or its hard spread constraint; and a pod left pending has no
node where all of those and its resources would hold. Preemption is off: a pending pod
stays pending."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.scheduler import FitError, NodeInfo, default_framework

HOST, ZONE = "kubernetes.io/hostname", "topology.kubernetes.io/zone"
ZONES = ["a", "a", "b", "b", "c", "c"]

constraint = st.one_of(
    st.none(),
    st.tuples(st.just("anti"), st.sampled_from([HOST, ZONE]), st.sampled_from(["x", "y"])),
    st.tuples(st.just("affinity"), st.sampled_from([HOST, ZONE]), st.sampled_from(["x", "y"])),
    st.tuples(st.just("spread"), st.sampled_from([HOST, ZONE]), st.integers(1, 2)),
)
pods_st = st.lists(st.tuples(st.sampled_from(["x", "y"]), constraint, st.integers(1, 3)),
                   min_size=1, max_size=25)  # fmt: skip


def make_node(i: int) -> NodeInfo:
    return NodeInfo({
        "metadata": {"name": f"n{i}", "labels": {HOST: f"n{i}", ZONE: ZONES[i]}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    })  # fmt: skip


def make_pod(i: int, app: str, rule, cpu: int) -> dict:
    spec: dict = {"containers": [{"name": "c", "resources": {"requests": {"cpu": str(cpu)}}}]}
    if rule is not None:
        kind, key, arg = rule
        if kind in ("anti", "affinity"):
            field = "podAntiAffinity" if kind == "anti" else "podAffinity"
            term = {"topologyKey": key, "labelSelector": {"matchLabels": {"app": arg}}}
            spec["affinity"] = {field: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
        else:
            spec["topologySpreadConstraints"] = [{
                "topologyKey": key, "maxSkew": arg, "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": {"matchLabels": {"app": app}}}]  # fmt: skip
    return {"metadata": {"name": f"p{i}", "namespace": "default", "labels": {"app": app}},
            "spec": spec}  # fmt: skip


def domain(node: NodeInfo, key: str) -> str:
    return node.labels[key]


def allowed(p: dict, rule, node: NodeInfo, nodes: list[NodeInfo], placed: list) -> bool:
    """The naive model: may ``p`` (with ``rule``) go to ``node``, given ``placed``
    (pod, node, its rule) so far, resources aside?"""
    app = p["metadata"]["labels"]["app"]
    for _, where, other_rule in placed:  # existing pods' anti-affinity
        if (other_rule and other_rule[0] == "anti" and other_rule[2] == app
                and domain(where, other_rule[1]) == domain(node, other_rule[1])):  # fmt: skip
            return False
    if rule is None:
        return True
    kind, key, arg = rule
    if kind == "anti":
        return not any(o["metadata"]["labels"]["app"] == arg and domain(w, key) == domain(node, key)
                       for o, w, _ in placed)  # fmt: skip
    if kind == "affinity":
        matching = [w for o, w, _ in placed if o["metadata"]["labels"]["app"] == arg]
        if any(domain(w, key) == domain(node, key) for w in matching):
            return True
        return not matching and app == arg  # the first of a self-affine group
    counts = {domain(n, key): 0 for n in nodes}
    for o, w, _ in placed:
        if o["metadata"]["labels"]["app"] == app:
            counts[domain(w, key)] += 1
    return counts[domain(node, key)] + 1 - min(counts.values()) <= arg


def fits(p: dict, node: NodeInfo) -> bool:
    wanted = int(p["spec"]["containers"][0]["resources"]["requests"]["cpu"]) * 1000
    return node.requested.get("cpu", 0) + wanted <= node.allocatable["cpu"]


@settings(max_examples=150, deadline=None)
@given(pods_st, st.integers(0, 5))
def test_placements_keep_every_required_rule_and_pending_pods_fit_nowhere(pod_specs, seed):
    nodes = [make_node(i) for i in range(len(ZONES))]
    framework = default_framework(seed=seed)
    framework.plugins = [p for p in framework.plugins if p.name != "DefaultPreemption"]
    placed: list = []
    for i, (app, rule, cpu) in enumerate(pod_specs):
        p = make_pod(i, app, rule, cpu)
        try:
            result = framework.schedule(p, nodes)
        except FitError:
            assert not any(fits(p, n) and allowed(p, rule, n, nodes, placed) for n in nodes), i
            continue
        node = next(n for n in nodes if n.name == result.node)
        assert fits(p, node), i
        assert allowed(p, rule, node, nodes, placed), (i, rule, result.node)
        node.add_pod(p)
        placed.append((p, node, rule))
