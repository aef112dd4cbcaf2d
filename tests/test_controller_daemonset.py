"""The DaemonSet controller: its pure core against Kubernetes' documented behaviour
(eligibility by nodeSelector, node affinity and taints, the automatic tolerations, the
node-name affinity, duplicates and failed pods, the rolling update's arithmetic with and
without surge, history and status), and the whole cluster in the deterministic
simulation (one ready pod per node; nodes joining, leaving, tainted; a rolling update
node by node within maxUnavailable, rolled back; a surge update; OnDelete)."""

from __future__ import annotations

import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339
from actorkube.controllers import _daemons as daemons
from actorkube.controllers import _replicas as replicas
from actorkube.controllers.daemonset import DaemonSetController
from actorkube.node.runtime._sim_profile import SimProfile
from actorkube.sim import SimNetwork, simulate

NOW = 1_800_000_000.0
HASH = "abc123"
DS = {"apiVersion": "apps/v1", "kind": "DaemonSet",
      "metadata": {"name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 3},
      "spec": {"selector": {"matchLabels": {"app": "agent"}},
               "updateStrategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
               "template": {"metadata": {"labels": {"app": "agent"}},
                            "spec": {"containers": [{"name": "c", "image": "agent:v1"}]}}},
      "status": {"observedGeneration": 2}}  # fmt: skip


def node(name, *, labels=None, taints=()):
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": list(taints)}}  # fmt: skip


def taint(key, effect, value=""):
    return {"key": key, "value": value, "effect": effect}


def with_template(ds=DS, **spec):
    template = ds["spec"]["template"]
    template = {**template, "spec": {**template["spec"], **spec}}
    return {**ds, "spec": {**ds["spec"], "template": template}}


def with_strategy(ds=DS, **rolling):
    strategy = {"type": "RollingUpdate", "rollingUpdate": rolling}
    return {**ds, "spec": {**ds["spec"], "updateStrategy": strategy}}


def pod(name, node_name, *, hash_=HASH, phase="Running", ready=True, created=NOW - 1000,
        ready_at=NOW - 500, deleting=False, scheduled=True):  # fmt: skip
    m = {"name": name, "namespace": "default", "uid": f"uid-{name}",
         "labels": {"app": "agent", daemons.HASH_LABEL: hash_},
         "creationTimestamp": rfc3339(created),
         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                              "uid": "ds-uid", "controller": True}]}  # fmt: skip
    if deleting:
        m["deletionTimestamp"] = rfc3339(NOW)
    spec = {"affinity": daemons.with_node_name_affinity(None, node_name)}
    if scheduled:
        spec["nodeName"] = node_name
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": rfc3339(ready_at)}]  # fmt: skip
    return {"metadata": m, "spec": spec, "status": {"phase": phase, "conditions": conditions}}


def names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


# --- eligibility ----------------------------------------------------------------------------


def where(n, ds=DS):
    p = daemons.placement(n, ds)
    return p.should_run, p.should_continue_running


def test_node_selector_and_required_affinity_decide_eligibility():
    ds = with_template(nodeSelector={"disk": "ssd"})
    assert where(node("a", labels={"disk": "ssd"}), ds) == (True, True)
    assert where(node("b", labels={"disk": "hdd"}), ds) == (False, False)
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["z1", "z2"]}]}]}}}  # fmt: skip
    ds = with_template(affinity=affinity)
    assert where(node("a", labels={"zone": "z2"}), ds) == (True, True)
    assert where(node("b", labels={"zone": "z3"}), ds) == (False, False)
    ds = with_template(nodeName="a")
    assert where(node("a"), ds) == (True, True)
    assert where(node("b"), ds) == (False, False)


def test_taints_keep_new_pods_out_but_only_no_execute_evicts():
    assert where(node("a", taints=[taint("dedicated", "NoSchedule", "infra")])) == (False, True)
    assert where(node("a", taints=[taint("dedicated", "NoExecute", "infra")])) == (False, False)
    assert where(node("a", taints=[taint("dedicated", "PreferNoSchedule")])) == (True, True)
    tolerant = with_template(tolerations=[{"key": "dedicated", "operator": "Equal",
                                           "value": "infra"}])  # fmt: skip
    assert where(node("a", taints=[taint("dedicated", "NoExecute", "infra")]), tolerant) == (
        True, True)


def test_the_automatic_tolerations_cover_node_conditions_and_cordons():
    for key, effect in [(daemons.NOT_READY, "NoExecute"), (daemons.UNREACHABLE, "NoExecute"),
                        (daemons.DISK_PRESSURE, "NoSchedule"),
                        (daemons.MEMORY_PRESSURE, "NoSchedule"),
                        (daemons.PID_PRESSURE, "NoSchedule"),
                        (daemons.UNSCHEDULABLE, "NoSchedule")]:  # fmt: skip
        assert where(node("a", taints=[taint(key, effect)])) == (True, True), key
    # network-unavailable only for pods on the host's network
    unavailable = node("a", taints=[taint(daemons.NETWORK_UNAVAILABLE, "NoSchedule")])
    assert where(unavailable) == (False, True)
    assert where(unavailable, with_template(hostNetwork=True)) == (True, True)
    # a cordoned node (spec.unschedulable) keeps and gets daemon pods
    assert where({**node("a"), "spec": {"unschedulable": True}}) == (True, True)


def test_automatic_tolerations_replace_a_matching_one_and_keep_the_rest():
    mine = [{"key": daemons.NOT_READY, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 30},
            {"key": "x", "operator": "Exists"}]  # fmt: skip
    got = daemons.with_daemon_tolerations({"tolerations": mine})["tolerations"]
    assert got[0] == {"key": daemons.NOT_READY, "operator": "Exists", "effect": "NoExecute"}
    assert got[1] == {"key": "x", "operator": "Exists"}
    assert len(got) == 7  # the two, then the other five automatic ones
    assert daemons.with_daemon_tolerations({"tolerations": got})["tolerations"] == got
    host = daemons.with_daemon_tolerations({"hostNetwork": True})["tolerations"]
    assert {"key": daemons.NETWORK_UNAVAILABLE, "operator": "Exists",
            "effect": "NoSchedule"} in host  # fmt: skip


def test_node_name_affinity_replaces_required_terms_and_keeps_preferred_ones():
    preferred = [{"weight": 1, "preference": {"matchExpressions": [
        {"key": "z", "operator": "Exists"}]}}]  # fmt: skip
    affinity = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": preferred},
        "podAntiAffinity": {"x": 1}}  # fmt: skip
    got = daemons.with_node_name_affinity(affinity, "n7")
    required = got["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"] == [{"matchFields": [
        {"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]  # fmt: skip
    assert got["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"] == preferred
    assert got["podAntiAffinity"] == {"x": 1}
    assert affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]  # the original is untouched
    assert daemons.target_node({"spec": {"affinity": got}}) == "n7"
    assert daemons.target_node({"spec": {"nodeName": "n8", "affinity": got}}) == "n8"
    assert daemons.target_node({"spec": {}}) is None


def test_a_new_pod_is_owned_labelled_tolerant_and_bound_to_its_node():
    p = daemons.new_pod(with_template(nodeSelector={"disk": "ssd"}), "n1", HASH)
    m = p["metadata"]
    assert m["generateName"] == "agent-"
    assert m["labels"] == {"app": "agent", daemons.HASH_LABEL: HASH}
    ref = m["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("DaemonSet", "ds-uid", True)
    assert daemons.target_node(p) == "n1" and "nodeName" not in p["spec"]
    assert p["spec"]["nodeSelector"] == {"disk": "ssd"}
    assert len(p["spec"]["tolerations"]) == 6


# --- manage ---------------------------------------------------------------------------------


def test_manage_creates_on_eligible_nodes_and_deletes_where_no_longer_allowed():
    no_schedule, no_execute = [taint("k", "NoSchedule")], [taint("k", "NoExecute")]
    nodes = [node("a"), node("b"), node("c", taints=no_schedule),
             node("d", taints=no_execute), node("e", taints=no_schedule)]  # fmt: skip
    pods = [pod("on-a", "a"), pod("on-c", "c"), pod("on-d", "d")]
    step = daemons.manage(DS, nodes, pods, HASH, NOW, {})
    assert step.create_on == ("b",)  # not on c or e (NoSchedule), nor on d (NoExecute)
    assert names(step.delete) == ["on-d"]  # the one on c survives its NoSchedule taint


def test_manage_keeps_the_oldest_of_duplicates():
    pods = [pod("young", "a", created=NOW - 10), pod("old", "a", created=NOW - 100),
            pod("unscheduled", "a", created=NOW - 1000, scheduled=False),
            pod("going", "a", deleting=True)]  # fmt: skip
    step = daemons.manage(DS, [node("a")], pods, HASH, NOW, {})
    assert names(step.delete) == ["unscheduled", "young"]  # scheduled first, then age
    assert step.create_on == ()


def test_failed_pods_are_deleted_with_backoff_and_succeeded_ones_at_once():
    failed = pod("failed", "a", phase="Failed", ready=False)
    step = daemons.manage(DS, [node("a"), node("b")],
                          [failed, pod("done", "b", phase="Succeeded", ready=False)], HASH,
                          NOW, {})  # fmt: skip
    assert names(step.delete) == ["done", "failed"]
    assert {reason for _, reason, _ in step.events} == {"FailedDaemonPod", "SucceededDaemonPod"}
    ((key, entry),) = step.backoff
    assert key == "ds-uid/2/a" and entry == daemons.Backoff(1.0, NOW)
    # Again within the second: held back, and the sync comes back when it ends.
    held = daemons.manage(DS, [node("a")], [failed], HASH, NOW + 0.5, dict(step.backoff))
    assert held.delete == () and held.create_on == () and held.requeue_after == 1.0
    later = daemons.manage(DS, [node("a")], [failed], HASH, NOW + 1.5, dict(step.backoff))
    assert names(later.delete) == ["failed"] and later.backoff[0][1].delay == 2.0


def test_backoff_doubles_to_fifteen_minutes_and_is_forgotten_after_thirty():
    entry = None
    for i in range(20):
        entry = daemons.Backoff.next(entry, NOW + i)
    assert entry.delay == 900.0
    assert entry.active(NOW + 100) and not entry.active(NOW + 20 + 900)
    assert daemons.Backoff.next(entry, NOW + 19 + 1801).delay == 1.0


def test_unscheduled_pods_for_nodes_that_are_gone_are_deleted():
    pods = [pod("lost", "gone", scheduled=False), pod("bound", "gone2")]
    step = daemons.manage(DS, [node("a")], pods, HASH, NOW, {})
    assert names(step.delete) == ["lost"]  # a bound one is PodGC's
    assert step.create_on == ("a",)


def test_surge_keeps_an_old_pod_until_the_new_one_is_available():
    ds = with_strategy(maxSurge=1, maxUnavailable=0)
    old, new = pod("old", "a", hash_="old"), pod("new", "a", ready=False, created=NOW - 5)
    assert daemons.manage(ds, [node("a")], [old, new], HASH, NOW, {}).delete == ()
    ready_new = pod("new", "a", created=NOW - 5)
    assert names(daemons.manage(ds, [node("a")], [old, ready_new], HASH, NOW, {}).delete) == [
        "old"]
    sick_old = pod("old", "a", hash_="old", ready=False)
    assert names(daemons.manage(ds, [node("a")], [sick_old, new], HASH, NOW, {}).delete) == [
        "old"]
    extra = pod("extra", "a", hash_="older", created=NOW - 2000)
    assert names(daemons.manage(ds, [node("a")], [old, new, extra], HASH, NOW, {}).delete) == [
        "old"]  # the oldest of the other hashes is kept, the rest go
    # with surge, a node whose pods are all going gets a new one at once
    going = [pod("x", "a", deleting=True)]
    assert daemons.manage(ds, [node("a")], going, HASH, NOW, {}).create_on == ("a",)
    assert daemons.manage(DS, [node("a")], going, HASH, NOW, {}).create_on == ()


# --- the rolling update ---------------------------------------------------------------------


def test_rolling_update_replaces_within_max_unavailable_node_by_node():
    nodes = [node(n) for n in "abcd"]
    old = [pod(f"old-{n}", n, hash_="old") for n in "abcd"]
    step = daemons.sync_pods(DS, nodes, old, HASH, NOW, {})
    assert names(step.delete) == ["old-a"] and step.create_on == ()
    # a node being replaced counts as unavailable: nothing more until it is back
    going = [pod("old-a", "a", hash_="old", deleting=True), *old[1:]]
    assert daemons.sync_pods(DS, nodes, going, HASH, NOW, {}) == daemons.Step()
    # ... then manage creates the new pod; while it is not available, nothing more
    starting = [pod("new-a", "a", ready=False), *old[1:]]
    assert daemons.sync_pods(DS, nodes, starting, HASH, NOW, {}).delete == ()
    up = [pod("new-a", "a"), *old[1:]]
    assert names(daemons.sync_pods(DS, nodes, up, HASH, NOW, {}).delete) == ["old-b"]
    # percentages round up; an unavailable old pod is replaced whatever the budget
    half = with_strategy(maxUnavailable="50%")
    sick = [pod("old-a", "a", hash_="old", ready=False), *old[1:]]
    step = daemons.sync_pods(half, nodes, sick, HASH, NOW, {})
    assert names(step.delete) == ["old-a", "old-b"]
    assert daemons.unavailable_count(with_strategy(maxUnavailable="30%"), 4) == 2
    # both 0 means maxUnavailable 1
    assert names(daemons.sync_pods(with_strategy(maxUnavailable=0), nodes, old, HASH, NOW,
                                   {}).delete) == ["old-a"]  # fmt: skip


def test_min_ready_seconds_counts_a_ready_pod_as_unavailable_for_a_while():
    ds = {**DS, "spec": {**DS["spec"], "minReadySeconds": 60}}
    nodes = [node("a"), node("b")]
    pods = [pod("new-a", "a", ready_at=NOW - 10), pod("old-b", "b", hash_="old")]
    assert daemons.sync_pods(ds, nodes, pods, HASH, NOW, {}).delete == ()
    assert names(daemons.sync_pods(ds, nodes, pods, HASH, NOW + 60, {}).delete) == ["old-b"]


def test_surge_update_creates_beside_old_pods_then_deletes_them():
    ds = with_strategy(maxSurge=1, maxUnavailable=0)
    nodes = [node(n) for n in "abc"]
    old = [pod(f"old-{n}", n, hash_="old") for n in "abc"]
    step = daemons.sync_pods(ds, nodes, old, HASH, NOW, {})
    assert step.create_on == ("a",) and step.delete == ()
    waiting = [*old, pod("new-a", "a", ready=False)]
    assert daemons.sync_pods(ds, nodes, waiting, HASH, NOW, {}) == daemons.Step()
    # the new pod available: manage removes the old one (one per node with surge)
    available = [*old, pod("new-a", "a", created=NOW - 10)]
    assert names(daemons.sync_pods(ds, nodes, available, HASH, NOW, {}).delete) == ["old-a"]
    # an old pod that is not available gets its replacement at once, beyond maxSurge
    sick = [pod("old-a", "a", hash_="old"), pod("old-b", "b", hash_="old", ready=False),
            pod("old-c", "c", hash_="old")]  # fmt: skip
    assert daemons.sync_pods(ds, nodes, sick, HASH, NOW, {}).create_on == ("b", "a")


def test_on_delete_replaces_nothing_by_itself():
    ds = {**DS, "spec": {**DS["spec"], "updateStrategy": {"type": "OnDelete"}}}
    nodes = [node("a"), node("b")]
    pods = [pod("old-a", "a", hash_="old")]
    step = daemons.sync_pods(ds, nodes, pods, HASH, NOW, {})
    assert step.create_on == ("b",) and step.delete == ()  # the new node gets the new template


def test_at_most_burst_replicas_a_sync():
    nodes = [node(f"n{i:03}") for i in range(300)]
    step = daemons.sync_pods(DS, nodes, [], HASH, NOW, {})
    assert len(step.create_on) == daemons.BURST_REPLICAS and step.create_on[0] == "n000"


# --- history --------------------------------------------------------------------------------


def revision(ds, number, **labels):
    r = daemons.snapshot(ds, number)
    r["metadata"]["labels"].update(labels)
    return r


def test_a_first_sync_snapshots_the_template_in_kubernetes_patch_form():
    ds = {**DS, "metadata": {**DS["metadata"], "annotations": {"note": "x"}}}
    h = daemons.history(ds, [], [])
    r = h.create
    assert r["metadata"]["name"] == f"agent-{h.hash}" and r["revision"] == 1
    assert r["metadata"]["labels"] == {"app": "agent", daemons.HASH_LABEL: h.hash}
    assert r["metadata"]["annotations"] == {"note": "x"}
    assert r["data"] == {"spec": {"template": {**DS["spec"]["template"], "$patch": "replace"}}}
    assert r["metadata"]["ownerReferences"][0]["uid"] == "ds-uid"
    assert daemons.matches(ds, r) and not daemons.matches(with_template(hostNetwork=True), r)
    # a collision count gives another hash
    bumped = {**ds, "status": {"collisionCount": 1}}
    assert daemons.history(bumped, [], []).hash != h.hash


def test_a_new_template_gets_the_next_revision_and_an_old_one_is_renumbered():
    v1, v2 = DS, with_template(containers=[{"name": "c", "image": "agent:v2"}])
    r1 = revision(v1, 1)
    h = daemons.history(v2, [r1], [])
    assert h.create["revision"] == 2 and h.old == (r1,)
    r2 = h.create
    back = daemons.history(v1, [r1, r2], [])  # rolled back to v1
    assert back.create is None and back.hash == r1["metadata"]["labels"][daemons.HASH_LABEL]
    assert [u["revision"] for u in back.updates] == [3] and back.old == (r2,)


def test_duplicate_revisions_keep_the_highest_and_relabel_the_pods_of_the_others():
    a = revision(DS, 4)
    b = revision(DS, 7)
    b["metadata"]["name"], b["metadata"]["labels"][daemons.HASH_LABEL] = "agent-dup", "dup"
    unlabelled = revision(with_template(hostNetwork=True), 2)
    del unlabelled["metadata"]["labels"][daemons.HASH_LABEL]
    pods = [pod("p1", "a", hash_=a["metadata"]["labels"][daemons.HASH_LABEL]),
            pod("p2", "b", hash_="dup"), pod("p3", "c", hash_="ancient")]  # fmt: skip
    h = daemons.history(DS, [a, b, unlabelled], pods)
    assert h.hash == "dup"  # the highest revision is kept
    assert [r["metadata"]["name"] for r in h.duplicates] == [a["metadata"]["name"]]
    assert names(h.relabel) == ["p1"]  # pods of the other hashes stay as they are
    (labelled,) = h.updates
    assert labelled["metadata"]["labels"][daemons.HASH_LABEL] == unlabelled["metadata"]["name"]
    assert [r["revision"] for r in h.old] == [2]


def test_history_beyond_the_limit_goes_oldest_first_but_not_while_pods_use_it():
    ds = {**DS, "spec": {**DS["spec"], "revisionHistoryLimit": 2}}
    old = [revision(with_template(hostNetwork=True), n, **{daemons.HASH_LABEL: f"h{n}"})
           for n in (3, 1, 2, 4)]  # fmt: skip
    live = [pod("p", "a", hash_="h1", phase="Failed", deleting=True)]  # counted even so
    gone = daemons.revisions_to_clean(ds, old, live)
    assert [r["revision"] for r in gone] == [2, 3]
    assert daemons.revisions_to_clean(DS, old, []) == []  # within the default 10


# --- status ---------------------------------------------------------------------------------


def test_status_counts_nodes_by_their_oldest_pod():
    ds = {**DS, "spec": {**DS["spec"], "minReadySeconds": 60}}
    nodes = [node("a"), node("b"), node("c"), node("d"),
             node("e", taints=[taint("k", "NoSchedule")])]  # fmt: skip
    pods = [pod("a1", "a", created=NOW - 100), pod("a2", "a", hash_="old", ready=False,
                                                     created=NOW - 50),
            pod("b1", "b", hash_="old", ready_at=NOW - 10),
            pod("c1", "c", ready=False),
            pod("e1", "e"),
            pod("d1", "d", phase="Failed", ready=False, deleting=True)]  # fmt: skip
    counts = daemons.status_counts(ds, nodes, pods, HASH, NOW)
    assert counts == {"desiredNumberScheduled": 4, "currentNumberScheduled": 3,
                      "numberMisscheduled": 1, "numberReady": 2,
                      "updatedNumberScheduled": 2, "numberAvailable": 1,
                      "numberUnavailable": 3}  # fmt: skip
    assert daemons.needs_requeue_for_availability(ds, counts)
    status = daemons.updated_status(ds, counts, 3)
    assert status["observedGeneration"] == 3 and status["numberReady"] == 2
    written = {**ds, "status": status}
    assert daemons.updated_status(written, counts, 3) is None
    # expectations pending: the counts move, observedGeneration does not
    assert daemons.updated_status(ds, {**counts, "numberReady": 0}, None)[
        "observedGeneration"] == 2


# --- the whole cluster ----------------------------------------------------------------------

# An image that takes a while to start and to stop, so that a rollout has something to
# wait for.
PROFILES = {f"agent:v{i}": SimProfile(start_delay=2.0, term_delay=1.0) for i in (1, 2)}


def daemon_set(name: str, image: str = "agent:v1", **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}],
                                           "terminationGracePeriodSeconds": 5}},
                     **spec}}  # fmt: skip


async def start(net: SimNetwork, nodes: int = 3) -> tuple[SimCluster, DaemonSetController]:
    cluster = await SimCluster.start(net, nodes=nodes, spare_nodes=1, profiles=PROFILES)
    return cluster, cluster.spawn_controller(DaemonSetController, "daemon-set-controller")


async def get(cluster: SimCluster, name: str) -> dict:
    return await cluster.client.get("daemonsets", name, namespace="default", group="apps")


async def change(cluster: SimCluster, name: str, edit) -> dict:
    """``edit(daemon set)`` written back, retried on conflicts."""
    while True:
        try:
            return await cluster.client.update("daemonsets", edit(await get(cluster, name)),
                                               namespace="default", group="apps")  # fmt: skip
        except ApiError as e:
            if e.code != 409:
                raise


def with_image(image: str):
    def edit(ds: dict) -> dict:
        template = ds["spec"]["template"]
        spec = {**template["spec"], "containers": [{"name": "c", "image": image}]}
        return {**ds, "spec": {**ds["spec"], "template": {**template, "spec": spec}}}

    return edit


async def daemon_pods(cluster: SimCluster, name: str) -> list[dict]:
    """The DaemonSet's pods not being deleted."""
    return [p for p in await cluster.pods(label_selector=f"app={name}")
            if not p["metadata"].get("deletionTimestamp")]  # fmt: skip


def rolled_out(ds: dict) -> bool:
    """``kubectl rollout status daemonset``'s test of a finished rollout."""
    status = ds.get("status") or {}
    return (status.get("observedGeneration", 0) >= ds["metadata"]["generation"]
            and status.get("updatedNumberScheduled", 0) >= status["desiredNumberScheduled"]
            and status.get("numberAvailable", 0) >= status["desiredNumberScheduled"])  # fmt: skip


async def settled(cluster: SimCluster, name: str, nodes: set[str], *, old: int = 0) -> dict:
    """Wait until ``name`` runs one ready pod on each of ``nodes`` and nowhere else,
    and its status says so, ``old`` of them not of the current template (else rolled
    out as ``kubectl rollout status`` sees it); the DaemonSet then."""

    async def check():
        ds = await get(cluster, name)
        pods = await daemon_pods(cluster, name)
        on = sorted(p["spec"].get("nodeName") for p in pods if replicas.is_ready(p))
        status = ds.get("status") or {}
        counted = (status.get("desiredNumberScheduled"), status.get("numberAvailable"),
                   status.get("updatedNumberScheduled"))  # fmt: skip
        done = rolled_out(ds) if not old else (
            status.get("observedGeneration") == ds["metadata"]["generation"]
            and counted == (len(nodes), len(nodes), len(nodes) - old))  # fmt: skip
        return ds if (on == sorted(nodes) and len(pods) == len(nodes) and done
                      and status.get("desiredNumberScheduled") == len(nodes)) else None  # fmt: skip

    return await wait_for(check)


def test_one_pod_per_node_as_nodes_join_leave_and_are_tainted():
    async def scenario(net: SimNetwork) -> dict:
        cluster, controller = await start(net)
        client = cluster.client
        infra = [taint("dedicated", "NoSchedule", "infra")]
        await client.patch("nodes", "node-0", {"spec": {"taints": infra}})
        await client.create("daemonsets", daemon_set("agent"), namespace="default",
                            group="apps")  # fmt: skip
        first = await settled(cluster, "agent", {"node-1", "node-2"})
        sample = (await daemon_pods(cluster, "agent"))[0]

        joined = await cluster.add_node()
        await settled(cluster, "agent", {"node-1", "node-2", joined})

        # A NoSchedule taint keeps a running pod; a NoExecute one removes it.
        before = {p["spec"]["nodeName"]: p["metadata"]["uid"]
                  for p in await daemon_pods(cluster, "agent")}  # fmt: skip
        await client.patch("nodes", "node-1", {"spec": {"taints": infra}})
        await trio.sleep(10)
        kept = {p["spec"]["nodeName"]: p["metadata"]["uid"]
                for p in await daemon_pods(cluster, "agent")}  # fmt: skip
        await client.patch("nodes", "node-1",
                           {"spec": {"taints": [taint("dedicated", "NoExecute", "infra")]}})
        await settled(cluster, "agent", {"node-2", joined})

        # node-2 dies and its Node is deleted: it is no longer counted; its pod is left
        # to the pod garbage collector (played here), and nothing replaces it.
        await net.crash("node-2")
        await client.delete("nodes", "node-2")

        async def counted_out():
            status = (await get(cluster, "agent")).get("status") or {}
            return status.get("desiredNumberScheduled") == 1 or None

        await wait_for(counted_out)
        for p in await daemon_pods(cluster, "agent"):
            if p["spec"]["nodeName"] == "node-2":
                await client.delete("pods", p["metadata"]["name"], namespace="default",
                                    grace_period=0)  # fmt: skip
        last = await settled(cluster, "agent", {joined})
        await trio.sleep(10)
        events = await client.list("events", namespace="default")
        revisions = await client.list("controllerrevisions", namespace="default", group="apps")
        return {"first": first, "sample": sample, "before": before, "kept": kept,
                "last": last, "final": await daemon_pods(cluster, "agent"),
                "reasons": {e["reason"] for e in events["items"]
                            if e["involvedObject"]["kind"] == "DaemonSet"},
                "revisions": revisions["items"], "errors": controller.errors}  # fmt: skip

    r = simulate(scenario, seed=1).value
    status = r["first"]["status"]
    assert (status["desiredNumberScheduled"], status["currentNumberScheduled"],
            status["numberReady"], status["numberMisscheduled"]) == (2, 2, 2, 0)  # fmt: skip
    assert r["kept"]["node-1"] == r["before"]["node-1"]  # survived the NoSchedule taint
    assert [p["spec"]["nodeName"] for p in r["final"]] == ["node-3"]
    assert r["last"]["status"]["desiredNumberScheduled"] == 1
    (rev,) = r["revisions"]
    hash_ = rev["metadata"]["labels"][daemons.HASH_LABEL]
    assert rev["metadata"]["name"] == f"agent-{hash_}" and rev["revision"] == 1
    sample = r["sample"]
    assert sample["metadata"]["labels"][daemons.HASH_LABEL] == hash_
    assert daemons.target_node(sample) == sample["spec"]["nodeName"]
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= r["reasons"]
    assert r["errors"] == 0


class Watcher:
    """Samples the DaemonSet's pods every 0.25 s (virtual) and keeps the extremes: the
    most nodes at once without a ready pod (not being deleted), and the most pods."""

    def __init__(self, cluster: SimCluster, name: str, nodes: set[str]) -> None:
        self.cluster, self.name, self.nodes = cluster, name, nodes
        self.max_unready_nodes = 0
        self.max_pods = 0

    async def run(self) -> None:
        while True:
            pods = await daemon_pods(self.cluster, self.name)
            ready = {p["spec"].get("nodeName") for p in pods if replicas.is_ready(p)}
            self.max_unready_nodes = max(self.max_unready_nodes, len(self.nodes - ready))
            self.max_pods = max(self.max_pods, len(pods))
            await trio.sleep(0.25)


def images(pods) -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in pods)


def test_a_rolling_update_goes_node_by_node_and_rolls_back():
    async def scenario(net: SimNetwork) -> dict:
        cluster, controller = await start(net, nodes=4)
        nodes = {f"node-{i}" for i in range(4)}
        client = cluster.client
        await client.create("daemonsets", daemon_set("agent"), namespace="default",
                            group="apps")  # fmt: skip
        await settled(cluster, "agent", nodes)
        watcher = Watcher(cluster, "agent", nodes)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            await change(cluster, "agent", with_image("agent:v2"))
            rolled = await settled(cluster, "agent", nodes)
            nursery.cancel_scope.cancel()
        v2 = images(await daemon_pods(cluster, "agent"))

        # `kubectl rollout undo`: the first revision's data applied as a strategic
        # merge patch; the old revision becomes the current one, renumbered.
        listed = await client.list("controllerrevisions", namespace="default", group="apps")
        first = next(r for r in listed["items"] if r["revision"] == 1)
        await client.patch("daemonsets", "agent", first["data"], namespace="default",
                           group="apps",
                           content_type="application/strategic-merge-patch+json")  # fmt: skip
        back = await settled(cluster, "agent", nodes)
        await trio.sleep(5)
        listed = await client.list("controllerrevisions", namespace="default", group="apps")
        return {"max_unready": watcher.max_unready_nodes, "max_pods": watcher.max_pods,
                "rolled": rolled, "v2": v2, "back": back, "first": first,
                "v1": images(await daemon_pods(cluster, "agent")),
                "revisions": {r["metadata"]["name"]: r["revision"] for r in listed["items"]},
                "errors": controller.errors}  # fmt: skip

    r = simulate(scenario, seed=2).value
    assert r["max_unready"] == 1  # maxUnavailable: one node at a time, and seen so
    assert r["max_pods"] == 4  # no surge: never two pods on a node
    assert r["v2"] == ["agent:v2"] * 4 and r["v1"] == ["agent:v1"] * 4
    assert r["rolled"]["status"]["updatedNumberScheduled"] == 4
    assert r["back"]["status"]["updatedNumberScheduled"] == 4
    assert len(r["revisions"]) == 2
    assert r["revisions"][r["first"]["metadata"]["name"]] == 3  # v1's, renumbered


def test_a_surge_update_never_leaves_a_node_without_a_ready_pod():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await start(net)
        nodes = {f"node-{i}" for i in range(3)}
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                "maxUnavailable": 0}}  # fmt: skip
        await cluster.client.create("daemonsets", daemon_set("agent", updateStrategy=strategy),
                                    namespace="default", group="apps")  # fmt: skip
        await settled(cluster, "agent", nodes)
        watcher = Watcher(cluster, "agent", nodes)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            await change(cluster, "agent", with_image("agent:v2"))
            await settled(cluster, "agent", nodes)
            nursery.cancel_scope.cancel()
        return {"max_unready": watcher.max_unready_nodes, "max_pods": watcher.max_pods,
                "now": images(await daemon_pods(cluster, "agent"))}  # fmt: skip

    r = simulate(scenario, seed=3).value
    assert r["max_unready"] == 0
    assert r["max_pods"] == 3 + 1  # maxSurge
    assert r["now"] == ["agent:v2"] * 3


def test_on_delete_updates_only_pods_deleted_and_adopts_and_releases_by_selector():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await start(net)
        client = cluster.client
        nodes = {f"node-{i}" for i in range(3)}
        # A pod that matches, there before the DaemonSet: adopted, and node-0's.
        stray = {"apiVersion": "v1", "kind": "Pod",
                 "metadata": {"name": "stray", "labels": {"app": "agent"}},
                 "spec": {"nodeName": "node-0",
                          "containers": [{"name": "c", "image": "agent:v1"}]}}  # fmt: skip
        await client.create("pods", stray, namespace="default")
        await client.create("daemonsets", daemon_set("agent", updateStrategy={"type": "OnDelete"}),
                            namespace="default", group="apps")  # fmt: skip
        first = await settled(cluster, "agent", nodes, old=1)
        adopted = await client.get("pods", "stray", namespace="default")

        await change(cluster, "agent", with_image("agent:v2"))
        await trio.sleep(20)
        untouched = await daemon_pods(cluster, "agent")
        on = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in untouched}
        await client.delete("pods", on["node-1"], namespace="default")
        # Relabelled out of the selector: released, and node-2 gets a new pod.
        await client.patch("pods", on["node-2"], {"metadata": {"labels": {"app": "other"}}},
                           namespace="default")  # fmt: skip

        async def replaced():
            pods = await daemon_pods(cluster, "agent")
            return pods if len([p for p in pods if replicas.is_ready(p)]) == 3 and (
                images(pods) == ["agent:v1", "agent:v2", "agent:v2"]) else None

        pods = await wait_for(replaced)
        await trio.sleep(5)
        released = await client.get("pods", on["node-2"], namespace="default")
        return {"first": first, "adopted": adopted, "untouched": images(untouched),
                "pods": pods, "ds": await get(cluster, "agent"), "released": released}

    r = simulate(scenario, seed=4).value
    uid = r["ds"]["metadata"]["uid"]
    assert replicas.controller_of(r["adopted"])["uid"] == uid
    assert r["first"]["status"]["updatedNumberScheduled"] == 2  # the stray has no hash
    assert r["untouched"] == ["agent:v1"] * 3
    by_node = {p["spec"]["nodeName"]: p for p in r["pods"]}
    assert by_node["node-0"]["metadata"]["name"] == "stray"
    assert [by_node[n]["spec"]["containers"][0]["image"] for n in ("node-1", "node-2")] == [
        "agent:v2", "agent:v2"]
    assert replicas.controller_of(r["released"]) is None
    status = r["ds"]["status"]
    assert (status["updatedNumberScheduled"], status["numberAvailable"]) == (2, 3)
