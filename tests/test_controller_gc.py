"""Cascading deletion: the API server's DeleteOptions (propagationPolicy, the legacy
orphanDependents, the finalizers they set), the garbage collector's ownership graph and
decisions as a pure core, and the whole cluster in the deterministic simulation
(deleting a Deployment in background, foreground and orphan mode). Expected answers
are Kubernetes': apiserver's deletionFinalizersForGarbageCollection, BeforeDelete and
ValidateDeleteOptions, the garbage collector's GraphBuilder and attemptToDeleteItem."""

from __future__ import annotations

import pytest
import trio
from inproc_api import call, start_api
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.controllers import DeploymentController, ReplicaSetController
from actorkube.controllers import _ownership_graph as og
from actorkube.controllers import _replicas as replicas
from actorkube.controllers.garbagecollector import GarbageCollector
from actorkube.node.runtime._sim_profile import SimProfile
from actorkube.sim import SimNetwork, simulate

# --- the ownership graph ----------------------------------------------------------------


def ref(name: str, uid: str, *, kind: str = "ReplicaSet", api_version: str = "apps/v1",
        block: bool | None = True, controller: bool = True) -> dict:  # fmt: skip
    r = {"apiVersion": api_version, "kind": kind, "name": name, "uid": uid}
    if controller:
        r["controller"] = True
    if block is not None:
        r["blockOwnerDeletion"] = block
    return r


def obj(name: str, uid: str, *owners: dict, namespace: str = "default", deleting: bool = False,
        finalizers: tuple[str, ...] = ()) -> dict:  # fmt: skip
    m: dict = {"name": name, "uid": uid, "namespace": namespace}
    if owners:
        m["ownerReferences"] = list(owners)
    if deleting:
        m["deletionTimestamp"] = "2026-09-21T14:13:20Z"
    if finalizers:
        m["finalizers"] = list(finalizers)
    return {"metadata": m}


RS = og.Ref("apps/v1", "ReplicaSet", "default", "web", "rs-1")
DEPLOY = og.Ref("apps/v1", "Deployment", "default", "web", "d-1")


def pod_ref(name: str) -> og.Ref:
    return og.Ref("v1", "Pod", "default", name, f"pod-{name}")


def test_a_dependent_seen_first_makes_its_owner_a_virtual_node_to_verify():
    g = og.OwnershipGraph()
    work = g.observe(pod_ref("a"), obj("a", "pod-a", ref("web", "rs-1")))
    assert work == og.Work(delete=("rs-1",))  # a live read decides whether it exists
    owner = g.node("rs-1")
    assert owner.virtual and owner.identity == RS and owner.dependents == {"pod-a"}
    # Observed at the coordinates the pod named: a real node now, nothing to verify.
    assert g.observe(RS, obj("web", "rs-1", ref("web", "d-1", kind="Deployment"))) == og.Work(
        delete=("d-1",))
    assert not g.node("rs-1").virtual
    assert [n.uid for n in g.dependents("rs-1")] == ["pod-a"]


def test_an_owner_gone_makes_its_dependents_work_and_a_waiting_owner_too():
    g = og.OwnershipGraph()
    g.observe(DEPLOY, obj("web", "d-1", deleting=True, finalizers=("foregroundDeletion",)))
    g.observe(RS, obj("web", "rs-1", ref("web", "d-1", kind="Deployment")))
    for name in ("a", "b"):
        g.observe(pod_ref(name), obj(name, f"pod-{name}", ref("web", "rs-1")))
    # The ReplicaSet goes: its pods may be orphans now; the Deployment may be done.
    assert g.forget(RS) == og.Work(delete=("pod-a", "pod-b", "d-1"))
    assert g.node("rs-1") is None and g.dependents("d-1") == []


def test_foreground_deletion_starts_with_the_dependents_and_waits_for_blocking_ones():
    g = og.OwnershipGraph()
    g.observe(RS, obj("web", "rs-1"))
    g.observe(pod_ref("a"), obj("a", "pod-a", ref("web", "rs-1")))
    g.observe(pod_ref("b"), obj("b", "pod-b", ref("web", "rs-1", block=False)))
    work = g.observe(RS, obj("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",)))
    assert work == og.Work(delete=("pod-a", "pod-b", "rs-1"))
    assert g.node("rs-1").deleting_dependents
    assert [n.uid for n in g.blocking_dependents("rs-1")] == ["pod-a"]
    # Seen again: only itself (its dependents were given their turn when it started).
    again = g.observe(RS, obj("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",)))
    assert again == og.Work(delete=("rs-1",))
    # A dependent that stops blocking lets the owner look again.
    unblocked = g.observe(pod_ref("a"), obj("a", "pod-a", ref("web", "rs-1", block=False)))
    assert unblocked == og.Work(delete=("rs-1",))
    assert g.blocking_dependents("rs-1") == []


def test_an_owner_with_the_orphan_finalizer_is_orphaning_work_every_time_it_is_seen():
    g = og.OwnershipGraph()
    g.observe(RS, obj("web", "rs-1"))
    g.observe(pod_ref("a"), obj("a", "pod-a", ref("web", "rs-1")))
    for _ in range(2):
        work = g.observe(RS, obj("web", "rs-1", deleting=True, finalizers=("orphan",)))
        assert work == og.Work(orphan=("rs-1",))
    # A dependent that drops the reference is no longer its dependent.
    assert g.observe(pod_ref("a"), obj("a", "pod-a")) == og.Work(delete=("rs-1",))
    assert g.dependents("rs-1") == []


def test_a_virtual_delete_keeps_an_owner_other_dependents_name_differently():
    g = og.OwnershipGraph()
    g.observe(pod_ref("a"), obj("a", "pod-a", ref("web", "rs-1")))
    g.observe(pod_ref("b"), obj("b", "pod-b", ref("web", "rs-1", kind="StatefulSet")))
    # No ReplicaSet "web" with that uid: pod a's reference dangles, pod b's may not.
    work = g.virtual_delete(RS)
    assert work == og.Work(delete=("pod-a", "rs-1"))
    assert g.node("rs-1").identity == og.Ref("apps/v1", "StatefulSet", "default", "web", "rs-1")
    # Pod a goes (its owner dangled); absent by pod b's coordinates too, the node goes
    # and pod b is work.
    assert g.forget(pod_ref("a")) == og.Work()
    gone = g.virtual_delete(g.node("rs-1").identity)
    assert gone == og.Work(delete=("pod-b",)) and g.node("rs-1") is None


def test_a_reference_across_namespaces_or_with_other_coordinates_is_verified():
    g = og.OwnershipGraph()
    g.observe(RS, obj("web", "rs-1"))
    elsewhere = og.Ref("v1", "Pod", "other", "x", "pod-x")
    assert g.observe(elsewhere, obj("x", "pod-x", ref("web", "rs-1"), namespace="other")) == (
        og.Work(delete=("pod-x",)))
    misnamed = obj("y", "pod-y", ref("db", "rs-1"))
    assert g.observe(pod_ref("y"), misnamed) == og.Work(delete=("pod-y",))


def live(name: str, uid: str, *, deleting: bool = False, finalizers=()) -> dict:
    return obj(name, uid, deleting=deleting, finalizers=finalizers)


@pytest.mark.parametrize(("owners", "finalizers", "dependents", "expected"), [
    # Every owner gone: deleted, with the policy its own finalizers ask for.
    ({"rs-1": None}, (), False, og.Verdict(delete=True, policy="Background")),
    ({"rs-1": None}, ("orphan",), False, og.Verdict(delete=True, policy="Orphan")),
    ({"rs-1": None}, ("foregroundDeletion",), False,
     og.Verdict(delete=True, policy="Foreground")),
    # A live owner keeps it; the dangling reference goes.
    ({"rs-1": live("web", "rs-1"), "cm-1": None}, (), False, og.Verdict(remove=("cm-1",))),
    ({"rs-1": live("web", "rs-1"), "cm-1": live("c", "cm-1")}, (), True, og.Verdict()),
    # An owner in foreground deletion: a dependent with dependents of its own goes in
    # foreground too; one without, in background.
    ({"rs-1": live("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",))}, (),
     True, og.Verdict(delete=True, policy="Foreground")),
    ({"rs-1": live("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",))}, (),
     False, og.Verdict(delete=True, policy="Background")),
    # ... unless another owner is alive: then only the waiting reference goes.
    ({"rs-1": live("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",)),
      "cm-1": live("c", "cm-1")}, (), True, og.Verdict(remove=("rs-1",))),
    # An owner being deleted in background or orphan mode is still an owner.
    ({"rs-1": live("web", "rs-1", deleting=True, finalizers=("orphan",))}, (), False,
     og.Verdict()),
])  # fmt: skip
def test_attempt_to_delete_decides_as_kubernetes(owners, finalizers, dependents, expected):
    refs = [ref("web", "rs-1")]
    if "cm-1" in owners:
        refs.append(ref("c", "cm-1", kind="ConfigMap", api_version="v1", controller=False))
    item = obj("a", "pod-a", *refs, finalizers=finalizers)
    verdict = og.decide(item, owners, has_dependents=dependents,
                        dependent_deletes_dependents=False)  # fmt: skip
    assert verdict == expected


def test_a_dependent_in_foreground_deletion_is_unblocked_to_break_cycles():
    waiting = live("web", "rs-1", deleting=True, finalizers=("foregroundDeletion",))
    item = obj("a", "pod-a", ref("web", "rs-1"))
    verdict = og.decide(item, {"rs-1": waiting}, has_dependents=True,
                        dependent_deletes_dependents=True)  # fmt: skip
    assert verdict == og.Verdict(delete=True, policy="Foreground", unblock=True)
    assert og.decide(obj("b", "pod-b"), {}, has_dependents=False,
                     dependent_deletes_dependents=False) == og.Verdict()  # fmt: skip


# --- the API server's DeleteOptions -------------------------------------------------------

def configmap(name: str, *finalizers: str) -> dict:
    m: dict = {"name": name}
    if finalizers:
        m["finalizers"] = list(finalizers)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m}


async def test_propagation_policy_sets_the_garbage_collectors_finalizers(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        for name in ("fg", "orphan", "bg", "query", "legacy"):
            made = await call(api, "create", "configmaps", namespace="default",
                              body=configmap(name))  # fmt: skip
            assert made.code == 201
        # Foreground: marked (grace period 0) and kept for the garbage collector.
        answer = await call(api, "delete", "configmaps", namespace="default", name="fg",
                            body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.code == 200
        m = answer.body["metadata"]
        assert m["finalizers"] == ["foregroundDeletion"] and m["deletionTimestamp"]
        assert m["deletionGracePeriodSeconds"] == 0
        answer = await call(api, "delete", "configmaps", namespace="default", name="orphan",
                            body={"kind": "DeleteOptions", "apiVersion": "v1",
                                  "propagationPolicy": "Orphan"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["orphan"]
        # Background (and no policy at all): gone at once.
        answer = await call(api, "delete", "configmaps", namespace="default", name="bg",
                            body={"propagationPolicy": "Background"})  # fmt: skip
        assert answer.code == 200
        gone = await call(api, "get", "configmaps", namespace="default", name="bg")
        assert gone.code == 404
        # Without a body the query parameters say it.
        answer = await call(api, "delete", "configmaps", namespace="default", name="query",
                            params={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["foregroundDeletion"]
        # The legacy orphanDependents: true is Orphan.
        answer = await call(api, "delete", "configmaps", namespace="default", name="legacy",
                            params={"orphanDependents": "true"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["orphan"]
        # A second delete changes the policy of an object that is not a pod.
        answer = await call(api, "delete", "configmaps", namespace="default", name="legacy",
                            body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["foregroundDeletion"]
        # Removing the last finalizer removes the object.
        answer = await call(api, "patch", "configmaps", namespace="default", name="fg",
                            body={"metadata": {"finalizers": None}},
                            content_type="application/merge-patch+json")  # fmt: skip
        assert answer.code == 200
        assert (await call(api, "get", "configmaps", namespace="default", name="fg")).code == 404


async def test_other_finalizers_stay_and_legacy_cascade_answers_202(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "configmaps", namespace="default",
                   body=configmap("held", "example.com/hold"))  # fmt: skip
        answer = await call(api, "delete", "configmaps", namespace="default", name="held",
                            body={"orphanDependents": False})  # fmt: skip
        # Still there (its own finalizer), and the client asked for a cascade: 202.
        assert answer.code == 202
        assert answer.body["metadata"]["finalizers"] == ["example.com/hold"]
        answer = await call(api, "delete", "configmaps", namespace="default", name="held",
                            body={"propagationPolicy": "Orphan"})  # fmt: skip
        assert answer.code == 200
        assert answer.body["metadata"]["finalizers"] == ["example.com/hold", "orphan"]


async def test_a_deployment_deleted_in_foreground_counts_a_generation(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"selector": {"matchLabels": {"app": "web"}},
                      "template": {"metadata": {"labels": {"app": "web"}},
                                   "spec": {"containers": [{"name": "c",
                                                            "image": "i"}]}}}}  # fmt: skip
        made = await call(api, "create", "deployments", group="apps", namespace="default", body=d)
        assert made.body["metadata"]["generation"] == 1
        answer = await call(api, "delete", "deployments", group="apps", namespace="default",
                            name="web", body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.body["metadata"]["generation"] == 2  # Kubernetes' markAsDeleting


async def test_delete_options_are_validated_as_kubernetes_does(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "configmaps", namespace="default", body=configmap("a"))
        answer = await call(api, "delete", "configmaps", namespace="default", name="a",
                            body={"propagationPolicy": "Sideways"})  # fmt: skip
        assert answer.code == 422
        assert answer.body["message"] == (
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
            '"Sideways": supported values: "Foreground", "Background", "Orphan", "nil"')
        both = {"propagationPolicy": "Orphan", "orphanDependents": True}
        answer = await call(api, "delete", "configmaps", namespace="default", name="a", body=both)
        assert answer.code == 422
        assert answer.body["message"] == (
            'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Invalid value: '
            '"Orphan": orphanDependents and deletionPropagation cannot be both set')
        answer = await call(api, "delete", "configmaps", namespace="default", name="a",
                            params={"orphanDependents": "maybe"})  # fmt: skip
        assert answer.code == 400
        assert (await call(api, "get", "configmaps", namespace="default", name="a")).code == 200


async def test_events_and_pods_in_their_grace_period_take_no_gc_finalizers(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                 "involvedObject": {"kind": "Pod", "name": "p"}}  # fmt: skip
        await call(api, "create", "events", namespace="default", body=event)
        answer = await call(api, "delete", "events", namespace="default", name="e",
                            body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.code == 200  # the event strategy: garbage collection Unsupported
        assert (await call(api, "get", "events", namespace="default", name="e")).code == 404
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "finalizers": ["example.com/hold"]},
               "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30,
                        "containers": [{"name": "c", "image": "i"}]}}  # fmt: skip
        await call(api, "create", "pods", namespace="default", body=pod)
        answer = await call(api, "delete", "pods", namespace="default", name="p")
        assert answer.body["metadata"]["deletionGracePeriodSeconds"] == 30
        # In its grace period a delete changes nothing (no finalizer is added) ...
        answer = await call(api, "delete", "pods", namespace="default", name="p",
                            body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["example.com/hold"]
        # ... and losing its finalizers does not cut it short: the kubelet's delete does.
        await call(api, "patch", "pods", namespace="default", name="p",
                   body={"metadata": {"finalizers": None}},
                   content_type="application/merge-patch+json")  # fmt: skip
        assert (await call(api, "get", "pods", namespace="default", name="p")).code == 200
        answer = await call(api, "delete", "pods", namespace="default", name="p",
                            body={"gracePeriodSeconds": 0})  # fmt: skip
        assert answer.code == 200
        assert (await call(api, "get", "pods", namespace="default", name="p")).code == 404


# --- the garbage collector on an API server ------------------------------------------------


def owned(name: str, *owners: dict, finalizers: tuple[str, ...] = ()) -> dict:
    """A ConfigMap naming ``owners`` (live ConfigMaps) in its ownerReferences."""
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "blockOwnerDeletion": True} for o in owners]  # fmt: skip
    body = configmap(name, *finalizers)
    body["metadata"]["ownerReferences"] = refs
    return body


async def test_a_dependent_with_another_live_owner_only_loses_the_dangling_reference(
    autojump_clock,
):
    async with ActorSystem() as system:
        api = await start_api(system)
        gc = GarbageCollector(api.ref, token="admin-token")
        system.spawn(lambda: gc, name="generic-garbage-collector")
        a = (await call(api, "create", "configmaps", namespace="default",
                        body=configmap("a"))).body  # fmt: skip
        b = (await call(api, "create", "configmaps", namespace="default",
                        body=configmap("b"))).body  # fmt: skip
        await call(api, "create", "configmaps", namespace="default", body=owned("c", a, b))
        await gc.synced.wait()
        await call(api, "delete", "configmaps", namespace="default", name="a")

        async def refs_of_c():
            c = await call(api, "get", "configmaps", namespace="default", name="c")
            names = [r["name"] for r in c.body["metadata"].get("ownerReferences") or ()]
            return names if names == ["b"] else None

        await wait_for(refs_of_c)  # b is alive: c stays, without its reference to a

        async def c_gone():
            c = await call(api, "get", "configmaps", namespace="default", name="c")
            return c.code == 404

        await call(api, "delete", "configmaps", namespace="default", name="b")
        await wait_for(c_gone)  # its last owner gone: c goes too
        # An owner whose dependent appears after it is gone: the dependent goes at once.
        await call(api, "create", "configmaps", namespace="default", body=owned("late", a))
        late_gone = await wait_for(lambda: _gone(api, "late"))
        assert late_gone and gc.errors == 0


async def _gone(api, name: str) -> bool:
    return (await call(api, "get", "configmaps", namespace="default", name=name)).code == 404


# --- the whole cluster --------------------------------------------------------------------


def deployment(name: str, replicas_: int, image: str = "pause") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas_, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}],
                                           "terminationGracePeriodSeconds": 5}}}}  # fmt: skip


# An image whose containers take a while to stop, so that foreground deletion waits.
PROFILES = {"slow": SimProfile(term_delay=3.0)}


async def start_cluster(net: SimNetwork) -> tuple[SimCluster, GarbageCollector]:
    cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES)
    cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
    cluster.spawn_controller(DeploymentController, "deployment-controller")
    gc = cluster.spawn_controller(GarbageCollector, "generic-garbage-collector")
    return cluster, gc


async def rollout(cluster: SimCluster, name: str, count: int,
                  image: str = "pause") -> tuple[dict, list[dict]]:  # fmt: skip
    """Create Deployment ``name``; its ReplicaSet and running pods once all are up."""
    await cluster.client.create("deployments", deployment(name, count, image),
                                namespace="default", group="apps")  # fmt: skip

    async def up():
        sets = [rs for rs in (await cluster.client.list("replicasets", namespace="default",
                                                        group="apps"))["items"]
                if rs["metadata"]["name"].startswith(f"{name}-")]  # fmt: skip
        pods = await cluster.running_pods(label_selector=f"app={name}")
        return (sets[0], pods) if len(sets) == 1 and len(pods) == count else None

    return await wait_for(up)


async def delete(cluster: SimCluster, resource: str, name: str, policy: str,
                 group: str = "apps") -> dict:  # fmt: skip
    return await cluster.client.request("delete", resource, group=group, namespace="default",
                                        name=name, body={"propagationPolicy": policy})  # fmt: skip


async def absent(cluster: SimCluster, resource: str, name: str, group: str = "apps") -> bool:
    names = [o["metadata"]["name"] for o in (await cluster.client.list(
        resource, namespace="default", group=group))["items"]]  # fmt: skip
    return name not in names


@pytest.mark.parametrize("seed", [1, 2])
def test_background_deletion_removes_the_replica_set_and_its_pods(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster, gc = await start_cluster(net)
        rs, _ = await rollout(cluster, "web", 3)
        await delete(cluster, "deployments", "web", "Background")
        assert await absent(cluster, "deployments", "web")  # at once

        async def all_gone():
            return (await absent(cluster, "replicasets", rs["metadata"]["name"])
                    and not await cluster.pods(label_selector="app=web"))  # fmt: skip

        await wait_for(all_gone, limit=120)
        await trio.sleep(10)  # and nothing comes back
        return {"pods": await cluster.pods(), "graph": len(gc.graph.nodes), "errors": gc.errors}

    result = simulate(scenario, seed=seed).value
    assert result["pods"] == [] and result["errors"] == 0


def test_foreground_deletion_keeps_the_deployment_until_its_dependents_are_gone():
    async def scenario(net: SimNetwork) -> dict:
        cluster, gc = await start_cluster(net)
        rs, _ = await rollout(cluster, "web", 3, image="slow")
        marked = await delete(cluster, "deployments", "web", "Foreground")
        seen: list[tuple[dict | None, dict | None, list[dict]]] = []

        async def state(resource: str, name: str) -> dict | None:
            items = (await cluster.client.list(resource, namespace="default",
                                               group="apps"))["items"]  # fmt: skip
            return next((o for o in items if o["metadata"]["name"] == name), None)

        async def watch_it_go():
            seen.append((await state("deployments", "web"),
                         await state("replicasets", rs["metadata"]["name"]),
                         await cluster.pods(label_selector="app=web")))  # fmt: skip
            return seen[-1] == (None, None, [])

        await wait_for(watch_it_go, period=0.5, limit=120)
        return {"marked": marked, "seen": seen, "errors": gc.errors}

    result = simulate(scenario, seed=3).value
    assert result["errors"] == 0
    assert result["marked"]["metadata"]["finalizers"] == ["foregroundDeletion"]
    seen = result["seen"]
    # The Deployment outlives its ReplicaSet, which outlives its pods.
    for d, rs, pods in seen:
        assert d is not None or rs is None
        assert rs is not None or not pods
    # While the pods terminate, both wait for them, marked and held in foreground.
    terminating = [(d, rs) for d, rs, pods in seen
                   if pods and all(p["metadata"].get("deletionTimestamp")
                                   for p in pods)]  # fmt: skip
    assert terminating
    for d, rs in terminating:
        for owner in (d, rs):
            assert owner["metadata"]["deletionTimestamp"]
            assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]


def test_orphan_deletion_leaves_the_dependents_without_their_owner():
    async def scenario(net: SimNetwork) -> dict:
        cluster, gc = await start_cluster(net)
        rs, _ = await rollout(cluster, "web", 2)
        rs_name = rs["metadata"]["name"]
        await delete(cluster, "deployments", "web", "Orphan")
        await wait_for(lambda: absent(cluster, "deployments", "web"), limit=60)
        kept = await cluster.client.get("replicasets", rs_name, namespace="default",
                                        group="apps")  # fmt: skip
        # The ReplicaSet's pods are still the ReplicaSet's: only direct dependents orphan.
        owned = [replicas.controller_of(p)["uid"] for p in await cluster.pods()]
        # Now the ReplicaSet, orphaning its pods.
        await delete(cluster, "replicasets", rs_name, "Orphan")
        await wait_for(lambda: absent(cluster, "replicasets", rs_name), limit=60)
        await trio.sleep(10)
        return {"rs": kept, "owned": owned, "pods": await cluster.running_pods(),
                "errors": gc.errors}  # fmt: skip

    result = simulate(scenario, seed=4).value
    assert result["errors"] == 0
    assert not result["rs"]["metadata"].get("ownerReferences")
    assert result["owned"] == [result["rs"]["metadata"]["uid"]] * 2
    assert len(result["pods"]) == 2
    assert all(not p["metadata"].get("ownerReferences") for p in result["pods"])
