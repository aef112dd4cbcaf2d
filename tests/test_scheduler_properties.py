"""Properties of the scheduling core on random clusters and pods (Hypothesis): no node
is ever overcommitted, a pod that fits some node is never left pending, the same
inputs and seed choose the same nodes, and every vectorised filter and score (over
the node table, or once per group of look-alike nodes) answers what the plugin
answers node by node."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.scheduler import Code, FitError, NodeInfo, default_framework
from actorkube.scheduler._framework import CycleState, Framework

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
                assert any(not f.filter(state, p, n).ok for f in framework._filters(state)), n.name
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


# --- the vectorised answers are the node-by-node answers ----------------------------------

label_values = st.sampled_from(["a", "b", "c"])
pod_terms = st.fixed_dictionaries({
    "topologyKey": st.sampled_from(["zone", "kubernetes.io/hostname", "disk"]),
    "labelSelector": st.sampled_from([{"matchLabels": {"app": "a"}},
                                      {"matchLabels": {"app": "b"}}, {}]),
}, optional={"namespaceSelector": st.just({})})  # fmt: skip
weighted_terms = st.tuples(st.integers(1, 100), pod_terms).map(
    lambda wt: {"weight": wt[0], "podAffinityTerm": wt[1]}
)
one_kind = st.fixed_dictionaries({}, optional={
    "requiredDuringSchedulingIgnoredDuringExecution": st.lists(pod_terms, max_size=2),
    "preferredDuringSchedulingIgnoredDuringExecution": st.lists(weighted_terms, max_size=2),
})  # fmt: skip
affinities = st.fixed_dictionaries({}, optional={"podAffinity": one_kind,
                                                 "podAntiAffinity": one_kind})  # fmt: skip
node_objects = st.lists(
    st.fixed_dictionaries({
        "zone": st.none() | label_values,
        "disk": st.none() | label_values,
        "cpu": st.integers(0, 8),
        "gib": st.integers(0, 16),
        "pods": st.integers(0, 4),
        "taint": st.sampled_from([None, "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "cordoned": st.booleans(),
        "used": st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 4096),
                                   st.sampled_from(["a", "b"]), st.none() | affinities),
                         max_size=3),
    }),
    min_size=1,
    max_size=10,
)  # fmt: skip
expressions = st.fixed_dictionaries({
    "key": st.sampled_from(["zone", "disk"]),
    "operator": st.sampled_from(["In", "NotIn", "Exists", "DoesNotExist"]),
    "values": st.lists(label_values, min_size=1, max_size=2),
})  # fmt: skip
pod_objects = st.fixed_dictionaries({
    "cpu": st.integers(0, 4000),
    "mem": st.integers(0, 8192),
    "selector": st.none() | st.dictionaries(st.sampled_from(["zone", "disk"]), label_values),
    "required": st.none() | st.lists(st.lists(expressions, min_size=1, max_size=2),
                                     min_size=1, max_size=2),
    "preferred": st.lists(st.tuples(st.integers(1, 100), expressions), max_size=2),
    "tolerate": st.booleans(),
    "node_name": st.none() | st.sampled_from(["n0", "n1", "elsewhere"]),
    "app": st.sampled_from(["a", "b"]),
    "pod_affinity": st.none() | affinities,
    "spread": st.lists(st.fixed_dictionaries({
        "topologyKey": st.sampled_from(["zone", "kubernetes.io/hostname", "disk"]),
        "maxSkew": st.integers(1, 3),
        "whenUnsatisfiable": st.sampled_from(["DoNotSchedule", "ScheduleAnyway"]),
        "labelSelector": st.sampled_from([{"matchLabels": {"app": "a"}}, {}, None]),
        "minDomains": st.integers(1, 4),
        "nodeTaintsPolicy": st.sampled_from(["Honor", "Ignore"]),
    }), max_size=2),
})  # fmt: skip


def node_from(i, d) -> NodeInfo:
    labels = {k: d[k] for k in ("zone", "disk") if d[k] is not None}
    labels["kubernetes.io/hostname"] = f"n{i}"
    spec: dict = {"unschedulable": d["cordoned"]}
    if d["taint"]:
        spec["taints"] = [{"key": "k", "value": "v", "effect": d["taint"]}]
    info = NodeInfo({
        "metadata": {"name": f"n{i}", "labels": labels},
        "spec": spec,
        "status": {"allocatable": {"cpu": str(d["cpu"]), "memory": f"{d['gib']}Gi",
                                   "pods": str(d["pods"])}},
    })  # fmt: skip
    for j, (cpu, mem, app, affinity) in enumerate(d["used"]):
        placed = make_pod(f"{i}-{j}", cpu, mem)
        placed["metadata"]["labels"] = {"app": app}
        if affinity:
            placed["spec"]["affinity"] = affinity
        info.add_pod(placed)
    return info


def pod_from(d) -> dict:
    p = make_pod("x", d["cpu"], d["mem"])
    spec = p["spec"]
    if d["selector"] is not None:
        spec["nodeSelector"] = d["selector"]
    affinity: dict = {}
    if d["required"] is not None:
        affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {
            "nodeSelectorTerms": [{"matchExpressions": term} for term in d["required"]]
        }
    if d["preferred"]:
        affinity["preferredDuringSchedulingIgnoredDuringExecution"] = [
            {"weight": w, "preference": {"matchExpressions": [e]}} for w, e in d["preferred"]
        ]
    if affinity:
        spec["affinity"] = {"nodeAffinity": affinity}
    if d["pod_affinity"]:
        spec.setdefault("affinity", {}).update(d["pod_affinity"])
    if d["tolerate"]:
        spec["tolerations"] = [{"operator": "Exists"}]
    if d["node_name"]:
        spec["nodeName"] = d["node_name"]
    p["metadata"]["labels"] = {"app": d["app"]}
    if d["spread"]:
        spec["topologySpreadConstraints"] = [
            {k: v for k, v in c.items() if v is not None} for c in d["spread"]
        ]
    return p


@settings(max_examples=200, deadline=None)
@given(node_objects, pod_objects)
def test_vectorised_filters_and_scores_agree_with_node_by_node(node_dicts, pod_dict):
    from actorkube.scheduler._framework import filter_verdicts, score_values
    from actorkube.scheduler._table import NodeTable

    infos = [node_from(i, d) for i, d in enumerate(node_dicts)]
    table = NodeTable(infos)
    p = pod_from(pod_dict)
    rows = np.arange(len(infos))
    for plugin in default_framework().plugins:
        state = CycleState()
        skip_filter = hasattr(plugin, "pre_filter") and (
            plugin.pre_filter(state, p, table).code is Code.SKIP
        )
        if hasattr(plugin, "filter") and not skip_filter:
            one_by_one = [plugin.filter(state, p, n).ok for n in infos]
            got = filter_verdicts(plugin, state, p, table)
            if got is not None:
                assert got.tolist() == one_by_one, plugin.name
        skip_score = hasattr(plugin, "pre_score") and (
            plugin.pre_score(state, p, table, rows).code is Code.SKIP
        )
        if hasattr(plugin, "score") and not skip_score:
            one_by_one = [plugin.score(state, p, n) for n in infos]
            got = score_values(plugin, state, p, table, rows)
            assert got.tolist() == one_by_one, plugin.name
            if hasattr(plugin, "normalize"):
                normalized = plugin.normalize(state, p, got)
                assert ((normalized >= 0) & (normalized <= 100)).all(), plugin.name


@settings(max_examples=200, deadline=None)
@given(node_objects, pod_objects)
def test_failure_statuses_are_each_nodes_first_failing_filter(node_dicts, pod_dict):
    from actorkube.scheduler._table import NodeTable

    infos = [node_from(i, d) for i, d in enumerate(node_dicts)]
    table = NodeTable(infos)
    p = pod_from(pod_dict)
    framework = default_framework()
    try:
        state = framework._pre_filter(p, table)
    except FitError:
        return  # refused before any node is looked at
    naive = {}
    for n in infos:
        for plugin in framework._filters(state):
            status = plugin.filter(state, p, n)
            if not status.ok:
                naive[n.name] = status
                break
    assert framework._statuses(state, p, table)[0] == naive


steps_st = st.lists(
    st.tuples(
        st.sampled_from(["place", "remove", "status", "labels", "spec"]),
        st.integers(0, 9),  # the node (modulo the nodes there are)
        pod_objects,  # the pod placed, and the pod whose answers are compared
        st.sampled_from(["pause", "nginx", "busybox"]),  # an image a status change adds
    ),
    min_size=1,
    max_size=8,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(node_objects, steps_st)
def test_a_table_kept_across_changes_answers_as_a_fresh_one(node_dicts, steps):
    """The node table keeps derived columns, groups and label codes from cycle to
    cycle (``NodeTable.derived``, ``spread``): after pods come and go and Node objects
    change (status only, labels, spec), a kept table must answer every vectorised
    filter and score exactly as a table built afresh and as the plugins node by node."""
    from actorkube.scheduler._framework import filter_verdicts, score_values
    from actorkube.scheduler._table import NodeTable

    infos = [node_from(i, d) for i, d in enumerate(node_dicts)]
    kept = NodeTable(infos)
    rows = np.arange(len(infos))
    placed: list[tuple[NodeInfo, dict]] = []

    def answers(table: NodeTable, p: dict) -> list:
        out = []
        for plugin in default_framework().plugins:
            state = CycleState()
            if hasattr(plugin, "pre_filter") and (
                plugin.pre_filter(state, p, table).code is Code.SKIP
            ):
                continue
            if hasattr(plugin, "filter"):
                got = filter_verdicts(plugin, state, p, table)
                out.append(None if got is None else got.tolist())
            if hasattr(plugin, "pre_score") and (
                plugin.pre_score(state, p, table, rows).code is Code.SKIP
            ):
                continue
            if hasattr(plugin, "score"):
                got = score_values(plugin, state, p, table, rows)
                assert got.tolist() == [plugin.score(state, p, n) for n in infos], plugin.name
                out.append(got.tolist())
        return out

    for n, (kind, which, pod_dict, image) in enumerate(steps):
        p = pod_from(pod_dict)
        p["metadata"]["name"] = f"step-{n}"
        p["spec"]["containers"][0]["image"] = image  # ImageLocality scores what nodes have
        answers(kept, p)  # the kept table remembers what this shape of pod got
        info = infos[which % len(infos)]
        node = info.node
        if kind == "place":
            info.add_pod(p)
            placed.append((info, p))
        elif kind == "remove" and placed:
            owner, gone = placed.pop(0)
            owner.remove_pod(gone)
            info = owner
        elif kind == "status":
            images = [{"names": [f"{image}:latest"], "sizeBytes": 300 * 1024 * 1024}]
            info.set_node({**node, "status": {**node["status"], "images": images}})
        elif kind == "labels":
            labels = {**node["metadata"]["labels"], "zone": image}
            info.set_node({**node, "metadata": {**node["metadata"], "labels": labels}})
        elif kind == "spec":
            info.set_node({**node, "spec": {**node["spec"], "unschedulable": True}})
        kept.refresh(info)
        assert answers(kept, p) == answers(NodeTable(infos), p)


class _Forgetful(Framework):
    """A framework that never remembers row-local answers: every cycle asks every
    plugin, as Kubernetes does."""

    def _spec_seen(self, pod):
        return None


def _twin(seed: int) -> _Forgetful:
    made = default_framework(seed=seed)
    return _Forgetful(made.plugins, made.weights, made.percentage, made.rng)


shapes_st = st.lists(
    st.tuples(pod_objects, st.sampled_from([None, 8080, 9090])), min_size=1, max_size=3
)
cluster_steps_st = st.lists(
    st.tuples(
        st.sampled_from(["schedule", "schedule", "schedule", "remove", "status", "labels",
                         "taint", "swap-ports"]),
        st.integers(0, 9),  # the shape scheduled, the node changed, the pod removed
    ),
    min_size=1,
    max_size=25,
)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(node_objects, shapes_st, cluster_steps_st, st.integers(0, 3))
def test_remembered_row_local_answers_choose_what_asking_every_plugin_chooses(
    node_dicts, shapes, steps, seed
):
    """Pods of a few shapes (their specs repeat, so row-local answers are remembered
    from the second on) are scheduled while pods come and go and Nodes change; a
    framework that remembers must choose, cycle after cycle, the node (or the failure)
    that a framework asking every plugin every time chooses, with the same seed."""
    from actorkube.scheduler._cache import SchedulerCache

    remembering, forgetful = default_framework(seed=seed), _twin(seed)
    caches = (SchedulerCache(), SchedulerCache())
    nodes = {}
    for i, d in enumerate(node_dicts):
        nodes[f"n{i}"] = node_from(i, d).node
        for cache in caches:
            cache.add_node(nodes[f"n{i}"])
    placed: list[dict] = []

    def both(act) -> None:
        for cache in caches:
            act(cache)

    for n, (kind, which) in enumerate(steps):
        name = f"n{which % len(nodes)}"
        node = nodes[name]
        if kind == "schedule":
            shape, port = shapes[which % len(shapes)]
            p = pod_from(shape)
            p["metadata"].update(name=f"s{n}", uid=f"u{n}", resourceVersion=str(n + 1))
            p["spec"].pop("nodeName", None)
            if port:
                p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port}]
            got, seen = [], []
            for framework, cache in zip((remembering, forgetful), caches, strict=True):
                try:
                    result = framework.schedule(p, cache.table())
                    got.append(result.node)
                    seen.append((result.evaluated, result.feasible, framework.next_start))
                except FitError as e:
                    got.append(e.message())
            assert got[0] == got[1] and seen[:1] == seen[1:], (n, kind)
            if got[0] in nodes:
                assumed = [cache.assume(p, got[0]) for cache in caches]
                placed.append(assumed[0])
        elif kind == "remove" and placed:
            gone = placed.pop(which % len(placed))
            both(lambda cache, gone=gone: cache.remove_pod(gone))
        elif kind == "swap-ports" and placed:
            # The same requests, another host port: no number of the node changes.
            p = placed.pop(which % len(placed))
            ports = p["spec"]["containers"][0].get("ports") or [{"containerPort": 80}]
            port = 8080 if ports[0].get("hostPort") != 8080 else None
            moved = {**p, "spec": {**p["spec"], "containers": [
                {**p["spec"]["containers"][0], "ports": [{"containerPort": 80, "hostPort": port}]
                 if port else []}]}}  # fmt: skip
            moved["metadata"] = {**p["metadata"], "resourceVersion": f"{n + 1}-moved"}
            both(lambda cache, moved=moved: cache.add_pod(moved))
            placed.append(moved)
        elif kind == "status":
            images = [{"names": ["pause:latest"], "sizeBytes": 300 * 1024 * 1024}]
            nodes[name] = {**node, "status": {**node["status"], "images": images}}
        elif kind == "labels":
            labels = {**node["metadata"]["labels"], "zone": f"z{n}"}
            nodes[name] = {**node, "metadata": {**node["metadata"], "labels": labels}}
        elif kind == "taint":
            taints = [{"key": "k", "value": "v", "effect": "NoSchedule"}]
            nodes[name] = {**node, "spec": {**node["spec"], "taints": taints}}
        if nodes[name] is not node:
            both(lambda cache, updated=nodes[name]: cache.add_node(updated))


def test_a_remembered_answer_follows_a_pod_whose_claims_changed_but_not_its_numbers():
    # A bound pod's new version gives up its host port (its requests unchanged): the
    # node's numbers stay as they were, yet NodePorts' remembered answer must change.
    from actorkube.scheduler._cache import SchedulerCache

    cache, framework = SchedulerCache(), default_framework()
    for name in ("n0", "n1"):
        allocatable = {"cpu": "4", "memory": "4Gi", "pods": "9"}
        cache.add_node({"metadata": {"name": name}, "status": {"allocatable": allocatable}})

    def shape(i: int, port: int | None) -> dict:
        p = make_pod(i, 100, 100)
        p["metadata"].update(uid=f"u{i}", resourceVersion="1")
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port}]
        return p

    first = cache.assume(shape(0, 8080), framework.schedule(shape(0, 8080), cache.table()).node)
    second = framework.schedule(shape(1, 8080), cache.table()).node  # remembered from here
    cache.assume(shape(1, 8080), second)
    with pytest.raises(FitError):
        framework.schedule(shape(2, 8080), cache.table())
    freed = {**first, "spec": {**first["spec"], "containers": [
        {**first["spec"]["containers"][0], "ports": [{"containerPort": 80}]}]}}  # fmt: skip
    cache.add_pod({**freed, "metadata": {**freed["metadata"], "resourceVersion": "2"}})
    assert framework.schedule(shape(3, 8080), cache.table()).node == first["spec"]["nodeName"]
