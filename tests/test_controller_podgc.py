"""The pod garbage collector: its pure pass against Kubernetes' rules (orphans after a
quarantine and a live read, unscheduled terminating pods, out-of-service nodes, the
terminated-pod threshold), and on the whole simulated cluster: the pods of a node that
died and was deleted are marked Failed and removed, and their ReplicaSet replaces them."""

from __future__ import annotations

import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver._meta import rfc3339
from actorkube.controllers import ReplicaSetController
from actorkube.controllers.podgc import OUT_OF_SERVICE, PodGCConfig, PodGCController, plan
from actorkube.sim import SimNetwork, simulate

CONFIG = PodGCConfig(terminated_threshold=2)


def pod(name, node="n1", phase="Running", deleting=False, created=100.0):
    m = {"name": name, "namespace": "d", "uid": f"u-{name}", "creationTimestamp": rfc3339(created)}
    if deleting:
        m["deletionTimestamp"] = rfc3339(500.0)
    return {"metadata": m, "spec": {"nodeName": node}, "status": {"phase": phase}}


def node(name, ready=True, taints=()):
    return {"metadata": {"name": name}, "spec": {"taints": list(taints)},
            "status": {"conditions": [{"type": "Ready",
                                       "status": "True" if ready else "False"}]}}  # fmt: skip


def names(pods):
    return sorted(p["metadata"]["name"] for p in pods)


def test_an_orphan_is_checked_first_and_deleted_once_its_node_is_confirmed_gone():
    pods = [pod("a", node="ghost"), pod("b", node="n1"), pod("c", node="ghost", phase="Failed")]
    nodes = {"n1": node("n1")}
    first = plan(pods, nodes, (), CONFIG)
    assert first.delete == () and first.check_nodes == {"ghost"}
    then = plan(pods, nodes, {"ghost"}, CONFIG)
    assert names(then.delete) == ["a", "c"]
    assert set(then.fail) == {"d/a"}  # c has finished already: not marked again


def test_unscheduled_terminating_and_out_of_service_pods_go_at_once():
    out = {"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}
    pods = [pod("loose", node="", deleting=True), pod("stuck", node="n2", deleting=True),
            pod("fine", node="n1", deleting=True), pod("up", node="n2")]  # fmt: skip
    nodes = {"n1": node("n1"), "n2": node("n2", ready=False, taints=[out])}
    got = plan(pods, nodes, (), CONFIG)
    assert names(got.delete) == ["loose", "stuck"]
    assert got.fail == {"d/stuck": "PodGC: node is out of service", "d/loose": ""}


def test_finished_pods_beyond_the_threshold_go_oldest_first():
    pods = [pod(f"p{i}", phase="Succeeded", created=100.0 + i) for i in range(5)]
    got = plan(pods, {"n1": node("n1")}, (), CONFIG)
    assert names(got.delete) == ["p0", "p1", "p2"] and not got.fail
    assert plan(pods, {"n1": node("n1")}, (), PodGCConfig(terminated_threshold=0)).delete == ()


def test_the_pods_of_a_deleted_node_are_collected_and_replaced():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        gc = cluster.spawn_controller(PodGCController, "pod-garbage-collector")

        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": "web", "namespace": "default"},
              "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c",
                                                             "image": "pause"}]}}}}  # fmt: skip
        await cluster.client.create("replicasets", rs, namespace="default", group="apps")

        async def running(count: int):
            pods = await cluster.running_pods(label_selector="app=web")
            return pods if len(pods) == count else None

        pods = await wait_for(lambda: running(3))
        await gc.synced.wait()
        failed = []  # what each pod looked like, stored, just before the collector deleted it
        delete = gc.client.delete

        async def deleting(resource, name, **options):
            got = await cluster.client.get(resource, name, namespace=options["namespace"])
            reasons = [c.get("reason") for c in got["status"].get("conditions") or ()
                       if c["type"] == "DisruptionTarget"]  # fmt: skip
            failed.append((got["status"]["phase"], *reasons))
            return await delete(resource, name, **options)

        gc.client.delete = deleting
        dead = pods[0]["spec"]["nodeName"]
        doomed = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == dead}
        await net.crash(dead)
        await cluster.client.patch("nodes", dead, {"spec": {"unschedulable": True}})
        await cluster.client.delete("nodes", dead)
        deleted_at = trio.current_time()

        async def collected():
            left = {p["metadata"]["name"] for p in await cluster.pods()}
            return not (doomed & left) or None

        await wait_for(collected)
        took = trio.current_time() - deleted_at
        now = await wait_for(lambda: running(3))
        return {"took": took, "doomed": len(doomed), "dead": dead, "deleted": gc.deleted,
                "failed": failed,
                "nodes": {p["spec"]["nodeName"] for p in now}}  # fmt: skip

    r = simulate(scenario, seed=12).value
    assert r["doomed"] >= 1 and r["deleted"] == r["doomed"]
    assert 40 <= r["took"] <= 40 + 2 * 20 + 5  # the quarantine, then a pass or two
    assert r["dead"] not in r["nodes"]
    assert r["failed"] == [("Failed", "DeletionByPodGC")] * r["doomed"]
