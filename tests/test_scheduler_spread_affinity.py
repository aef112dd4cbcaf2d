"""PodTopologySpread and InterPodAffinity against Kubernetes' documented behaviour:
skew per domain, minDomains, missing labels, soft spreading, the system default
constraints from a Service's selector; required (anti-)affinity per topology key, the
first pod of a self-affine group, existing pods' anti-affinity, namespaces, and the
scores of preferred terms and of existing pods' terms."""

from __future__ import annotations

import pytest

from actorkube.scheduler import FitError, NodeInfo, default_framework
from actorkube.scheduler._framework import ClusterView

HOST = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"


def node(name: str, zone: str | None = "a", cpu: str = "8") -> NodeInfo:
    labels = {HOST: name}
    if zone is not None:
        labels[ZONE] = zone
    return NodeInfo({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "110"}},
    })  # fmt: skip


def pod(name: str, labels: dict | None = None, namespace: str = "default", **spec) -> dict:
    c = {"name": "c", "image": "pause", "resources": {"requests": {"cpu": "100m"}}}
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"containers": [c], **spec},
    }


def spread(key: str, max_skew: int = 1, when: str = "DoNotSchedule", **extra) -> dict:
    return {"topologyKey": key, "maxSkew": max_skew, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}, **extra}  # fmt: skip


def cluster(placement: dict[str, int], zones: dict[str, str | None], app: str = "web"):
    nodes = {name: node(name, zone) for name, zone in zones.items()}
    for name, count in placement.items():
        for i in range(count):
            nodes[name].add_pod(pod(f"{name}-{i}", {"app": app}))
    return list(nodes.values())


def feasible(p: dict, nodes: list[NodeInfo]) -> set[str]:
    """Every node that passes the default profile's filters."""
    return set(default_framework().feasible_nodes(p, nodes))


def chosen(p: dict, nodes: list[NodeInfo], framework=None) -> set[str]:
    """Every node the default profile chooses, over many tie-breaking seeds."""
    framework = framework or default_framework(percentage=100)
    out = set()
    for seed in range(30):
        framework.rng.seed(seed)
        out.add(framework.schedule(p, nodes).node)
    return out


ZONES = {"n1": "a", "n2": "a", "n3": "b", "n4": "b"}


def test_the_documented_example_goes_to_the_emptier_zone():
    # Kubernetes' docs: two pods in zone a, one in zone b, maxSkew 1: only zone b.
    nodes = cluster({"n1": 1, "n2": 1, "n3": 1}, ZONES)
    p = pod("new", {"app": "web"}, topologySpreadConstraints=[spread(ZONE)])
    assert feasible(p, nodes) == {"n3", "n4"}
    # maxSkew 2 allows either zone.
    p2 = pod("new", {"app": "web"}, topologySpreadConstraints=[spread(ZONE, 2)])
    assert feasible(p2, nodes) == {"n1", "n2", "n3", "n4"}


def test_a_pod_that_does_not_match_its_own_selector_does_not_count_itself():
    nodes = cluster({"n1": 1, "n3": 0}, ZONES)
    p = pod("other", {"app": "db"}, topologySpreadConstraints=[spread(ZONE)])
    assert feasible(p, nodes) == {"n1", "n2", "n3", "n4"}  # skew 1 - 0 <= 1 anywhere


def test_min_domains_treats_the_minimum_as_zero_while_domains_are_missing():
    nodes = cluster({"n1": 1, "n3": 1}, ZONES)
    p = pod("new", {"app": "web"}, topologySpreadConstraints=[spread(ZONE, minDomains=3)])
    with pytest.raises(FitError) as e:
        default_framework().schedule(p, nodes)
    assert str(e.value) == (
        "0/4 nodes are available: 4 node(s) didn't match pod topology spread constraints. "
        "preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod."
    )


def test_nodes_without_the_key_are_unresolvable_and_do_not_count():
    nodes = cluster({"n1": 3}, {**ZONES, "bare": None})
    p = pod("new", {"app": "web"}, topologySpreadConstraints=[spread(ZONE, 3)])
    assert "bare" not in feasible(p, nodes)
    with pytest.raises(FitError) as e:
        default_framework().schedule(p, [nodes[-1]])
    assert "missing required label" in str(e.value)


def test_node_affinity_limits_the_domains_that_count():
    # Only zone a is allowed by the pod's nodeSelector (policy Honor): zone b's emptiness
    # does not hold the pod back, so zone a takes it although it has more pods.
    nodes = cluster({"n1": 2}, ZONES)
    p = pod("new", {"app": "web"}, nodeSelector={ZONE: "a"},
            topologySpreadConstraints=[spread(ZONE)])  # fmt: skip
    assert feasible(p, nodes) == {"n1", "n2"}
    ignore = pod("new", {"app": "web"}, nodeSelector={ZONE: "a"},
                 topologySpreadConstraints=[spread(ZONE, nodeAffinityPolicy="Ignore")])  # fmt: skip
    with pytest.raises(FitError):
        default_framework().schedule(ignore, nodes)


def test_soft_spreading_prefers_the_emptier_domain():
    nodes = cluster({"n1": 3, "n2": 3, "n3": 0}, ZONES)
    p = pod("new", {"app": "web"}, topologySpreadConstraints=[spread(ZONE, when="ScheduleAnyway")])
    assert feasible(p, nodes) == {"n1", "n2", "n3", "n4"}
    assert chosen(p, nodes) <= {"n3", "n4"}


class Services(ClusterView):
    def services(self, namespace: str) -> list[dict]:
        return [{"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}}}]


def test_system_defaults_spread_a_services_pods_over_hosts():
    nodes = cluster({"n1": 2, "n2": 2, "n3": 2}, ZONES)
    # Make n4 the fullest by resources, so that only spreading can pick it.
    nodes[3].add_pod({**pod("big"), "spec": {"containers": [{"name": "c", "resources": {
        "requests": {"cpu": "1"}}}]}})  # fmt: skip
    p = pod("new", {"app": "web"})
    assert "n4" not in chosen(p, nodes)  # no Service: nothing to spread
    framework = default_framework(percentage=100)
    framework.cluster = Services()
    assert chosen(p, nodes, framework) == {"n4"}  # the only host without its pods


# --- InterPodAffinity ---------------------------------------------------------------------


def term(key: str, app: str, **extra) -> dict:
    return {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}, **extra}


def with_affinity(name: str, labels: dict, kind: str = "podAffinity", required=(),
                  preferred=(), namespace: str = "default") -> dict:  # fmt: skip
    rules: dict = {}
    if required:
        rules["requiredDuringSchedulingIgnoredDuringExecution"] = list(required)
    if preferred:
        rules["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": w, "podAffinityTerm": t} for w, t in preferred
        ]
    return pod(name, labels, namespace=namespace, affinity={kind: rules})


def test_required_anti_affinity_keeps_a_pod_off_hosts_with_matching_pods():
    nodes = cluster({"n1": 1, "n3": 1}, ZONES)
    p = with_affinity("new", {"app": "web"}, "podAntiAffinity", [term(HOST, "web")])
    assert feasible(p, nodes) == {"n2", "n4"}
    zoned = with_affinity("new", {"app": "web"}, "podAntiAffinity", [term(ZONE, "web")])
    with pytest.raises(FitError) as e:
        default_framework().schedule(zoned, nodes)
    assert str(e.value) == (
        "0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules. "
        "preemption: 0/4 nodes are available: 4 No preemption victims found for incoming pod."
    )


def test_required_affinity_needs_a_matching_pod_in_the_domain_except_for_the_first():
    nodes = cluster({"n3": 1}, ZONES, app="cache")
    p = with_affinity("new", {"app": "web"}, required=[term(ZONE, "cache")])
    assert feasible(p, nodes) == {"n3", "n4"}
    # The first of a group with affinity to itself may go anywhere...
    first = with_affinity("new", {"app": "web"}, required=[term(ZONE, "web")])
    assert feasible(first, nodes) == {"n1", "n2", "n3", "n4"}
    # ...but a pod whose terms select others only waits for them.
    waits = with_affinity("new", {"app": "web"}, required=[term(ZONE, "db")])
    with pytest.raises(FitError) as e:
        default_framework().schedule(waits, nodes)
    assert "4 node(s) didn't match pod affinity rules" in str(e.value)


def test_an_existing_pods_anti_affinity_keeps_others_out_of_its_domain():
    nodes = cluster({}, ZONES)
    nodes[0].add_pod(with_affinity("loner", {"app": "db"}, "podAntiAffinity",
                                   [term(ZONE, "web")]))  # fmt: skip
    assert feasible(pod("new", {"app": "web"}), nodes) == {"n3", "n4"}
    with pytest.raises(FitError) as e:
        default_framework().schedule(pod("new", {"app": "web"}), nodes[:2])
    assert "2 node(s) didn't satisfy existing pods anti-affinity rules" in str(e.value)
    assert feasible(pod("new", {"app": "other"}), nodes) == {"n1", "n2", "n3", "n4"}


def test_terms_look_in_their_namespaces():
    nodes = cluster({}, ZONES)
    nodes[0].add_pod(pod("web-elsewhere", {"app": "web"}, namespace="other"))
    p = with_affinity("new", {"app": "x"}, "podAntiAffinity", [term(HOST, "web")])
    assert feasible(p, nodes) == {"n1", "n2", "n3", "n4"}  # its own namespace only
    everywhere = with_affinity("new", {"app": "x"}, "podAntiAffinity",
                               [term(HOST, "web", namespaceSelector={})])  # fmt: skip
    assert feasible(everywhere, nodes) == {"n2", "n3", "n4"}
    listed = with_affinity("new", {"app": "x"}, "podAntiAffinity",
                           [term(HOST, "web", namespaces=["other"])])  # fmt: skip
    assert feasible(listed, nodes) == {"n2", "n3", "n4"}


def test_preferred_terms_and_existing_pods_terms_score():
    nodes = cluster({"n3": 2}, ZONES, app="cache")
    near = with_affinity("new", {"app": "web"}, preferred=[(100, term(ZONE, "cache"))])
    assert chosen(near, nodes) <= {"n3", "n4"}
    far = with_affinity("new", {"app": "web"}, "podAntiAffinity",
                        preferred=[(100, term(ZONE, "cache"))])  # fmt: skip
    assert chosen(far, nodes) <= {"n1", "n2"}
    # An existing pod's required affinity to web pods draws a web pod to its zone
    # (hardPodAffinityWeight 1), and so does its preferred term.
    for rules in ({"required": [term(ZONE, "web")]}, {"preferred": [(50, term(ZONE, "web"))]}):
        drawn = cluster({}, ZONES)
        drawn[2].add_pod(with_affinity("magnet", {"app": "m"}, **rules))
        assert chosen(pod("new", {"app": "web"}), drawn) == {"n4"}  # n3 holds the magnet


def test_an_empty_spread_selector_counts_no_pods():
    # Kubernetes' countPodsMatchSelector: an empty selector matches nothing to count.
    nodes = cluster({"n1": 2}, ZONES)
    everything = {**spread(HOST), "labelSelector": {}}
    assert feasible(pod("new", {"app": "web"}, topologySpreadConstraints=[everything]),
                    nodes) == {"n1", "n2", "n3", "n4"}  # fmt: skip
