"""The ReplicaSet controller: its pure core against Kubernetes' documented behaviour
(claiming, deletion ranking, slow start, status), expectations, and the whole cluster
in the deterministic simulation (pods created, replaced, scaled down in rank order,
adopted and released; a node that dies has its pods replaced once they are gone)."""

from __future__ import annotations

import pytest
import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver._meta import rfc3339
from actorkube.apiserver._selectors import Selector
from actorkube.controllers import _replicas as replicas
from actorkube.controllers._expectations import Expectations
from actorkube.controllers.replicaset import ReplicaSetController
from actorkube.sim import SimNetwork, simulate

NOW = 1_800_000_000.0
RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
      "metadata": {"name": "web", "namespace": "default", "uid": "rs-uid", "generation": 2},
      "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
               "template": {"metadata": {"labels": {"app": "web", "tier": "front"}},
                            "spec": {"containers": [{"name": "c",
                                                     "image": "pause"}]}}}}  # fmt: skip


def pod(name, *, node="n1", phase="Running", ready=True, owner="rs-uid", labels=None,
        created=NOW - 1000, ready_at=NOW - 500, restarts=0, cost=None, deleting=False):  # fmt: skip
    m = {"name": name, "namespace": "default", "uid": f"uid-{name}",
         "labels": {"app": "web", "tier": "front"} if labels is None else labels,
         "creationTimestamp": rfc3339(created)}  # fmt: skip
    if owner:
        m["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                 "uid": owner, "controller": True}]  # fmt: skip
    if cost is not None:
        m["annotations"] = {replicas.DELETION_COST: str(cost)}
    if deleting:
        m["deletionTimestamp"] = rfc3339(NOW)
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": rfc3339(ready_at)}]  # fmt: skip
    return {"metadata": m, "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}  # fmt: skip


# --- the pure core --------------------------------------------------------------------------


def test_active_pods_exclude_finished_and_deleted_ones():
    assert replicas.is_active(pod("a"))
    assert not replicas.is_active(pod("b", phase="Succeeded"))
    assert not replicas.is_active(pod("c", phase="Failed"))
    assert not replicas.is_active(pod("d", deleting=True))


def test_claim_keeps_adopts_releases_and_leaves_others_alone():
    selector = replicas.selector_of(RS)
    pods = [pod("mine"), pod("orphan", owner=None), pod("relabelled", labels={"app": "db"}),
            pod("theirs", owner="other-uid"),
            pod("stranger", owner=None, labels={"x": "y"})]  # fmt: skip
    c = replicas.claim(RS, selector, pods)
    assert [p["metadata"]["name"] for p in c.owned] == ["mine"]
    assert [p["metadata"]["name"] for p in c.adopt] == ["orphan"]
    assert [p["metadata"]["name"] for p in c.release] == ["relabelled"]
    going = {**RS, "metadata": {**RS["metadata"], "deletionTimestamp": rfc3339(NOW)}}
    c = replicas.claim(going, selector, pods)
    assert not c.adopt and not c.release  # a ReplicaSet being deleted adopts nothing


def names(pods):
    return [p["metadata"]["name"] for p in pods]


@pytest.mark.parametrize(("first", "second"), [
    (pod("unassigned", node=""), pod("assigned")),
    (pod("pending", phase="Pending", ready=False), pod("running", ready=False)),
    (pod("unknown", phase="Unknown"), pod("running")),
    (pod("unready", ready=False), pod("ready")),
    (pod("cheap", cost=-10), pod("dear", cost=10)),
    (pod("recently-ready", ready_at=NOW - 10), pod("long-ready", ready_at=NOW - 10_000)),
    (pod("restarty", restarts=5), pod("steady", restarts=0)),
    (pod("young", created=NOW - 10, ready_at=NOW - 5000),
     pod("old", created=NOW - 10_000, ready_at=NOW - 5000)),
])  # fmt: skip
def test_deletion_ranking_follows_kubernetes_order(first, second):
    for pods in ([first, second], [second, first]):
        assert names(replicas.pods_to_delete(pods, pods, 1, NOW)) == names([first])


def test_pods_doubled_up_on_a_node_go_first():
    a, b, c = pod("a", node="n1"), pod("b", node="n1"), pod("c", node="n2")
    assert names(replicas.pods_to_delete([c, a, b], [a, b, c], 1, NOW)) == ["a"]


def test_ages_within_one_power_of_two_tie_and_fall_back_to_uid():
    # 1100 s and 1200 s old are in the same power of two of nanoseconds: the uid decides.
    x = pod("x", ready_at=NOW - 1100)
    w = pod("w", ready_at=NOW - 1200)
    assert names(replicas.pods_to_delete([x, w], [x, w], 1, NOW)) == ["w"]


def test_slow_start_batches_double():
    assert replicas.slow_start_batches(10) == [1, 2, 4, 3]
    assert replicas.slow_start_batches(0) == []


def test_a_pod_from_the_template_is_owned_and_named_after_the_set():
    p = replicas.pod_from_template(RS, "apps/v1", "ReplicaSet")
    assert p["metadata"]["generateName"] == "web-"
    assert p["metadata"]["labels"] == {"app": "web", "tier": "front"}
    ref = p["metadata"]["ownerReferences"][0]
    assert (ref["uid"], ref["controller"], ref["blockOwnerDeletion"]) == ("rs-uid", True, True)


def test_status_counts_ready_available_and_fully_labelled_pods():
    rs = {**RS, "spec": {**RS["spec"], "minReadySeconds": 60}}
    pods = [pod("a", ready_at=NOW - 100), pod("b", ready_at=NOW - 10), pod("c", ready=False),
            pod("d", labels={"app": "web"})]  # fmt: skip
    status = replicas.replica_set_status(rs, pods, NOW)
    assert status == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                      "availableReplicas": 2, "observedGeneration": 2}  # fmt: skip
    assert replicas.needs_requeue_for_availability(rs, status)
    failed = replicas.replica_set_status(rs, [], NOW, ("FailedCreate", "quota"))
    (condition,) = failed["conditions"]
    assert (condition["type"], condition["reason"], condition["message"]) == (
        "ReplicaFailure", "FailedCreate", "quota")
    assert "conditions" not in replicas.replica_set_status({**rs, "status": failed}, [], NOW)


def test_selector_that_does_not_parse_selects_nothing():
    broken = {**RS, "spec": {**RS["spec"], "selector": {"matchLabels": {"bad key!": "x"}}}}
    assert replicas.selector_of(broken) == Selector(selects_nothing=True)


def test_expectations_wait_for_what_was_asked_and_expire():
    now = [0.0]
    e = Expectations(clock=lambda: now[0])
    assert e.satisfied("k")
    e.expect_creations("k", 2)
    e.creation_observed("k")
    assert not e.satisfied("k")
    e.creation_observed("k")
    assert e.satisfied("k")
    e.expect_deletions("k", ["ns/a", "ns/b"])
    e.deletion_observed("k", "ns/a")
    e.deletion_observed("k", "ns/a")  # seen twice (marked, then gone): counted once
    assert e.pending("k") == (0, 1)
    now[0] = 301.0
    assert e.satisfied("k")  # an event that never came does not block for ever


# --- the whole cluster ----------------------------------------------------------------------


def replica_set(name: str, replicas_: int, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas_, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause",
                                                           "resources": {"requests": {
                                                               "cpu": "100m"}}}],
                                           "terminationGracePeriodSeconds": 5}},
                     **spec}}  # fmt: skip


async def owned_by(cluster: SimCluster, rs_name: str) -> list[dict]:
    rs = await cluster.client.get("replicasets", rs_name, namespace="default", group="apps")
    return [p for p in await cluster.pods()
            if (replicas.controller_of(p) or {}).get("uid") == rs["metadata"]["uid"]
            and replicas.is_active(p)]  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_a_replica_set_keeps_its_pods_through_deletes_scaling_and_a_dead_node(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3)
        controller = cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        client = cluster.client
        await client.create("replicasets", replica_set("web", 4), namespace="default",
                            group="apps")  # fmt: skip

        async def ready(count: int):
            rs = await client.get("replicasets", "web", namespace="default", group="apps")
            status = rs.get("status") or {}
            mine = await owned_by(cluster, "web")
            running = [p for p in mine if replicas.is_ready(p)]
            return (status.get("readyReplicas") == count and status.get("replicas") == count
                    and len(mine) == count and len(running) == count) or None  # fmt: skip

        await wait_for(lambda: ready(4))
        created_first = controller.expectations.pending("default/web")

        # A pod deleted by hand is replaced.
        victim = (await owned_by(cluster, "web"))[0]["metadata"]["name"]
        await client.delete("pods", victim, namespace="default")
        await wait_for(lambda: ready(4))
        assert victim not in {p["metadata"]["name"] for p in await owned_by(cluster, "web")}

        # Scale up and down through the scale subresource.
        rs = await client.get("replicasets", "web", namespace="default", group="apps")
        await client.update("replicasets", {**rs, "spec": {**rs["spec"], "replicas": 7}},
                            namespace="default", group="apps")  # fmt: skip
        await wait_for(lambda: ready(7))
        rs = await client.get("replicasets", "web", namespace="default", group="apps")
        await client.update("replicasets", {**rs, "spec": {**rs["spec"], "replicas": 2}},
                            namespace="default", group="apps")  # fmt: skip
        await wait_for(lambda: ready(2))

        # An orphan that matches is adopted (and the surplus deleted); a pod relabelled
        # out of the selector is released and replaced.
        orphan = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "stray", "labels": {"app": "web"}},
                  "spec": {"containers": [{"name": "c", "image": "pause"}]}}  # fmt: skip
        await client.create("pods", orphan, namespace="default")
        await wait_for(lambda: ready(2))
        mine = await owned_by(cluster, "web")
        released = mine[0]["metadata"]["name"]
        await client.patch("pods", released, {"metadata": {"labels": {"app": "elsewhere"}}},
                           namespace="default")  # fmt: skip
        await wait_for(lambda: ready(2))
        loose = await client.get("pods", released, namespace="default")
        assert replicas.controller_of(loose) is None

        # A node dies: its pods stay (no node lifecycle controller here) until someone
        # cordons the node and deletes them; then they are replaced on the nodes alive.
        rs_pods = await owned_by(cluster, "web")
        dead = rs_pods[0]["spec"]["nodeName"]
        await net.crash(dead)
        await client.patch("nodes", dead, {"spec": {"unschedulable": True}})
        for p in await owned_by(cluster, "web"):
            if p["spec"]["nodeName"] == dead:
                await client.delete("pods", p["metadata"]["name"], namespace="default",
                                    grace_period=0)  # fmt: skip
        await wait_for(lambda: ready(2))
        nodes = {p["spec"]["nodeName"] for p in await owned_by(cluster, "web")}
        events = await client.list("events", namespace="default")
        reasons = {e["reason"] for e in events["items"]
                   if e["involvedObject"]["kind"] == "ReplicaSet"}  # fmt: skip
        await trio.sleep(30)
        return {"created_first": created_first, "dead": dead, "nodes": nodes,
                "reasons": reasons, "errors": controller.errors,
                "final": len(await owned_by(cluster, "web"))}  # fmt: skip

    result = simulate(scenario, seed=seed).value
    assert result["created_first"] == (0, 0)
    assert result["dead"] not in result["nodes"]
    assert {"SuccessfulCreate", "SuccessfulDelete"} <= result["reasons"]
    assert result["final"] == 2
