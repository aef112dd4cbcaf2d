"""Namespace termination: the API server's side (a delete marks the namespace
Terminating, new content is refused, namespaces/finalize lets it go), the namespace
controller's pure core (discovery, what remains, the deletion conditions), and the
whole cluster in the deterministic simulation (a namespace with a Deployment, its
ReplicaSet and pods, a Service and ConfigMaps is emptied, then removed). Expected
answers are Kubernetes': the namespace storage and strategies, NamespaceLifecycle
admission, NamespacedResourcesDeleter and its namespaceConditionUpdater."""

from __future__ import annotations

import pytest
import trio
from inproc_api import call, start_api
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import builtin_registry
from actorkube.apiserver._rest import aggregated_discovery
from actorkube.controllers import DeploymentController, ReplicaSetController
from actorkube.controllers import _namespace_content as content
from actorkube.controllers.garbagecollector import GarbageCollector
from actorkube.controllers.namespace import NamespaceController
from actorkube.sim import SimNetwork, simulate

# --- the pure core ------------------------------------------------------------------------


def discovered() -> dict[str, content.ServedResource]:
    registry = builtin_registry()
    documents = [aggregated_discovery(registry, core=True),
                 aggregated_discovery(registry, core=False)]  # fmt: skip
    found = content.served_resources(documents)
    assert found.group_version_error == ""
    return {f"{r.resource}.{r.group}": r for r in found.resources}


def test_discovery_names_every_served_resource_with_its_scope_and_verbs():
    served = discovered()
    pods, deployments = served["pods."], served["deployments.apps"]
    assert (pods.api_version, pods.kind, pods.namespaced) == ("v1", "Pod", True)
    assert pods.serves("list", "delete") and pods.gvr == "/v1, Resource=pods"
    assert deployments.gvr == "apps/v1, Resource=deployments"
    assert not served["namespaces."].namespaced and not served["nodes."].namespaced
    # Reviews are namespaced but only created: nothing to delete in a namespace.
    assert not served["localsubjectaccessreviews.authorization.k8s.io"].serves("delete")
    assert "pods/status." not in served  # subresources are not resources


def test_a_group_version_that_does_not_parse_leaves_nothing_to_delete():
    bad = {"items": [{"metadata": {"name": "a/b"},
                      "versions": [{"version": "v1", "resources": []}]}]}  # fmt: skip
    found = content.served_resources([bad])
    assert found == content.Discovered(group_version_error="unexpected GroupVersion string: a/b/v1")


def pod(grace: int | None = 30, phase: str = "Running", finalizers: tuple[str, ...] = ()) -> dict:
    p: dict = {"metadata": {"name": "p"}, "spec": {}, "status": {"phase": phase}}
    if grace is not None:
        p["spec"]["terminationGracePeriodSeconds"] = grace
    if finalizers:
        p["metadata"]["finalizers"] = list(finalizers)
    return p


def test_pods_are_waited_for_as_long_as_their_longest_grace_period():
    pods = [pod(30), pod(60, phase="Succeeded"), pod(10), pod(None)]
    assert content.pods_estimate(pods, deleted_at=1000.0, now=1000.0) == 30
    assert content.pods_estimate(pods, deleted_at=1000.0, now=1029.0) == 30
    assert content.pods_estimate(pods, deleted_at=1000.0, now=1030.0) == 0  # waited enough
    assert content.pods_estimate([], deleted_at=1000.0, now=1000.0) == 0


def test_what_remains_is_waited_for_or_an_error():
    served = discovered()
    pods, configmaps = served["pods."], served["configmaps."]
    assert content.remaining(pods, [], 30, "shop") == content.Remaining(estimate=30)
    assert content.remaining(pods, [pod()], 30, "shop") == content.Remaining(1, (), 30)
    held = [pod(finalizers=("example.com/a",)), pod(finalizers=("example.com/a", "b.io/x"))]
    assert content.remaining(configmaps, held, 0, "shop") == content.Remaining(
        2, (("b.io/x", 1), ("example.com/a", 2)), content.FINALIZER_ESTIMATE)
    stuck = content.remaining(configmaps, [pod(finalizers=())], 0, "shop")
    assert stuck.count == 1 and stuck.error == (
        "unexpected items still remain in namespace: shop for gvr: /v1, Resource=configmaps")


def test_deletion_conditions_are_kubernetes_five_with_their_messages():
    ok = content.deletion_conditions([], content.Failures(), "2026-01-01T00:00:00Z")
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in ok] == [
        ("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered",
         "All resources successfully discovered"),
        ("NamespaceDeletionGroupVersionParsingFailure", "False", "ParsedGroupVersions",
         "All legacy kube types successfully parsed"),
        ("NamespaceDeletionContentFailure", "False", "ContentDeleted",
         "All content successfully deleted, may be waiting on finalization"),
        ("NamespaceContentRemaining", "False", "ContentRemoved",
         "All content successfully removed"),
        ("NamespaceFinalizersRemaining", "False", "ContentHasNoFinalizers",
         "All content-preserving finalizers finished"),
    ]  # fmt: skip
    assert content.deletion_conditions(ok, content.Failures(), "2026-01-01T00:00:09Z") is None
    failing = content.Failures(
        discovery="the server is currently unable to handle the request",
        content=("unexpected items still remain in namespace: shop for gvr: /v1, "
                 "Resource=configmaps", "a"),
        remaining=(("pods.", 2), ("configmaps.", 1)),
        finalizers=(("example.com/a", 1),),
    )  # fmt: skip
    later = content.deletion_conditions([*ok, {"type": "Other", "status": "True"}], failing,
                                        "2026-01-01T00:01:00Z")  # fmt: skip
    by_type = {c["type"]: c for c in later}
    assert by_type["Other"] == {"type": "Other", "status": "True"}  # not the controller's
    assert by_type["NamespaceDeletionDiscoveryFailure"]["reason"] == "DiscoveryFailed"
    assert by_type["NamespaceDeletionContentFailure"]["message"] == (
        "Failed to delete all resource types, 2 remaining: a, unexpected items still remain "
        "in namespace: shop for gvr: /v1, Resource=configmaps")
    assert by_type["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 "
        "resource instances")
    assert by_type["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/a in 1 resource "
        "instances")
    assert by_type["NamespaceFinalizersRemaining"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    # A message that changes without a change of status keeps the transition time.
    moved = content.deletion_conditions(later, content.Failures(remaining=(("pods.", 1),)),
                                        "2026-01-01T00:02:00Z")  # fmt: skip
    remaining = next(c for c in moved if c["type"] == "NamespaceContentRemaining")
    assert remaining["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert remaining["message"] == "Some resources are remaining: pods. has 1 resource instances"


def test_finalizing_removes_only_the_controllers_token():
    assert content.without_token(["kubernetes", "z.io/x", "a.io/y", "z.io/x"]) == [
        "a.io/y", "z.io/x"]
    assert not content.finalized({"spec": {"finalizers": ["kubernetes"]}})
    assert content.finalized({"spec": {"finalizers": ["a.io/y"]}})


# --- the API server ------------------------------------------------------------------------

def namespace(name: str, *finalizers: str) -> dict:
    spec = {"finalizers": list(finalizers)} if finalizers else {}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": spec}


async def test_a_deleted_namespace_terminates_refuses_content_and_goes_when_finalized(
    autojump_clock,
):
    async with ActorSystem() as system:
        api = await start_api(system)
        made = await call(api, "create", "namespaces", body=namespace("shop"))
        assert made.body["spec"]["finalizers"] == ["kubernetes"]
        assert made.body["status"] == {"phase": "Active"}
        answer = await call(api, "delete", "namespaces", name="shop")
        assert answer.code == 200
        marked = answer.body
        assert marked["metadata"]["deletionTimestamp"]
        assert "deletionGracePeriodSeconds" not in marked["metadata"]
        assert marked["status"]["phase"] == "Terminating"
        assert marked["spec"]["finalizers"] == ["kubernetes"]

        async def refused():
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}
            answer = await call(api, "create", "configmaps", namespace="shop", body=cm)
            return answer if answer.code == 403 else None

        answer = await wait_for(refused)  # once admission's cache shows it terminating
        assert answer.body["message"] == (
            'configmaps "late" is forbidden: unable to create new content in namespace shop '
            "because it is being terminated")
        # Deleting it again changes nothing; an update cannot drop the finalizer.
        again = await call(api, "delete", "namespaces", name="shop")
        assert again.code == 200
        current = again.body
        assert current["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
        edited = await call(api, "update", "namespaces", name="shop",
                            body={**current, "spec": {"finalizers": []}})  # fmt: skip
        assert edited.code == 200 and edited.body["spec"]["finalizers"] == ["kubernetes"]
        # namespaces/finalize takes updates only, of known or qualified finalizer names.
        wrong = await call(api, "patch", "namespaces", name="shop", subresource="finalize",
                           body={}, content_type="application/merge-patch+json")  # fmt: skip
        assert wrong.code == 405
        bogus = await call(api, "update", "namespaces", name="shop", subresource="finalize",
                           body={**edited.body, "spec": {"finalizers": ["bogus"]}})  # fmt: skip
        assert bogus.code == 422
        assert "name is neither a standard finalizer name nor is it fully qualified" in (
            bogus.body["message"])
        # Finalized with no finalizer left: gone.
        done = await call(api, "update", "namespaces", name="shop", subresource="finalize",
                          body={**edited.body, "spec": {"finalizers": []}})  # fmt: skip
        assert done.code == 200
        assert (await call(api, "get", "namespaces", name="shop")).code == 404


async def test_namespace_finalizers_and_the_orphan_policy(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        made = await call(api, "create", "namespaces", body=namespace("a", "example.com/x"))
        assert made.body["spec"]["finalizers"] == ["example.com/x", "kubernetes"]
        answer = await call(api, "delete", "namespaces", name="a",
                            body={"propagationPolicy": "Orphan"})  # fmt: skip
        assert answer.body["metadata"]["finalizers"] == ["orphan"]
        # Finalized by the namespace controller, another finalizer still holds it; the
        # status cannot be changed through finalize.
        ns = answer.body
        body = {**ns, "spec": {"finalizers": ["example.com/x"]}, "status": {"phase": "Active"}}
        step = await call(api, "update", "namespaces", name="a", subresource="finalize", body=body)
        assert step.code == 200 and step.body["status"]["phase"] == "Terminating"
        # The last spec finalizer gone, the GC's orphan finalizer still holds it ...
        last = await call(api, "update", "namespaces", name="a", subresource="finalize",
                          body={**step.body, "spec": {"finalizers": []}})  # fmt: skip
        assert last.code == 200
        assert (await call(api, "get", "namespaces", name="a")).code == 200
        # ... until the garbage collector removes it.
        gone = await call(api, "patch", "namespaces", name="a",
                          body={"metadata": {"finalizers": None}},
                          content_type="application/merge-patch+json")  # fmt: skip
        assert gone.code == 200
        assert (await call(api, "get", "namespaces", name="a")).code == 404


# --- the whole cluster ----------------------------------------------------------------------


def deployment(name: str, replicas_: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas_, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}],
                                           "terminationGracePeriodSeconds": 5}}}}  # fmt: skip


async def populate(cluster: SimCluster, ns: str, *held: str) -> None:
    """Namespace ``ns`` with a Deployment (and so a ReplicaSet and running pods), a
    Service, ConfigMaps (``held`` ones with a finalizer) and a Secret."""
    client = cluster.client
    await client.create("namespaces", namespace(ns))
    await client.create("serviceaccounts", {"metadata": {"name": "default"}}, namespace=ns)
    await client.create("deployments", deployment("web", 3), namespace=ns, group="apps")
    service = {"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}  # fmt: skip
    await client.create("services", service, namespace=ns)
    for name in ("settings", "flags", *held):
        m: dict = {"name": name}
        if name in held:
            m["finalizers"] = ["example.com/hold"]
        await client.create("configmaps", {"metadata": m, "data": {"k": "v"}}, namespace=ns)
    await client.create("secrets", {"metadata": {"name": "creds"}, "stringData": {"pw": "x"}},
                        namespace=ns)  # fmt: skip
    await wait_for(lambda: _running(cluster, ns, 3))


async def _running(cluster: SimCluster, ns: str, count: int) -> bool:
    return len(await cluster.running_pods(ns)) == count


async def contents(cluster: SimCluster, ns: str) -> dict[str, list[str]]:
    found = {}
    for resource, group in (("deployments", "apps"), ("replicasets", "apps"), ("pods", ""),
                            ("services", ""), ("configmaps", ""), ("secrets", ""),
                            ("serviceaccounts", "")):  # fmt: skip
        items = (await cluster.client.list(resource, namespace=ns, group=group))["items"]
        found[resource] = sorted(o["metadata"]["name"] for o in items)
    return found


async def gone(cluster: SimCluster, name: str) -> bool:
    listed = await cluster.client.list("namespaces")
    return name not in [n["metadata"]["name"] for n in listed["items"]]


@pytest.mark.parametrize("seed", [1, 2])
def test_deleting_a_namespace_removes_everything_in_it_then_the_namespace(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        cluster.spawn_controller(DeploymentController, "deployment-controller")
        cluster.spawn_controller(GarbageCollector, "generic-garbage-collector")
        controller = cluster.spawn_controller(NamespaceController, "namespace-controller")
        await populate(cluster, "shop")
        await populate(cluster, "other")
        before = await contents(cluster, "shop")
        marked = await cluster.client.delete("namespaces", "shop")
        phases: list[str] = []

        async def namespace_gone():
            try:
                ns = await cluster.client.get("namespaces", "shop")
            except Exception:
                return True
            phases.append(ns["status"]["phase"])
            return False

        await wait_for(namespace_gone, limit=300)
        await trio.sleep(10)
        return {"before": before, "marked": marked, "phases": phases,
                "after": await contents(cluster, "shop"),
                "other": await contents(cluster, "other"),
                "errors": controller.errors}  # fmt: skip

    result = simulate(scenario, seed=seed).value
    before = result["before"]
    assert len(before["pods"]) == 3 and len(before["replicasets"]) == 1
    # kube-root-ca.crt: the root CA publisher's, in every namespace.
    assert before["configmaps"] == ["flags", "kube-root-ca.crt", "settings"]
    assert before["services"] == ["web"]
    assert result["marked"]["status"]["phase"] == "Terminating"
    assert set(result["phases"]) == {"Terminating"}
    assert all(not names for names in result["after"].values()), result["after"]
    assert result["other"] == {**before, "pods": result["other"]["pods"],
                               "replicasets": result["other"]["replicasets"]}  # fmt: skip
    assert len(result["other"]["pods"]) == 3


def test_a_namespace_waits_for_content_held_by_a_finalizer_and_says_so():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        cluster.spawn_controller(DeploymentController, "deployment-controller")
        cluster.spawn_controller(NamespaceController, "namespace-controller")
        await populate(cluster, "shop", "pinned")
        await cluster.client.delete("namespaces", "shop")

        async def only_the_pinned_one_left():
            ns = await cluster.client.get("namespaces", "shop")
            left = await contents(cluster, "shop")
            conditions = {c["type"]: c for c in ns["status"].get("conditions") or ()}
            held = conditions.get("NamespaceFinalizersRemaining", {}).get("status") == "True"
            rest = {k: v for k, v in left.items() if k != "configmaps"}
            if held and left["configmaps"] == ["pinned"] and not any(rest.values()):
                return conditions
            return None

        conditions = await wait_for(only_the_pinned_one_left, limit=300)
        await trio.sleep(60)  # it waits as long as the finalizer holds
        still = await cluster.client.get("namespaces", "shop")
        await cluster.client.patch("configmaps", "pinned", {"metadata": {"finalizers": None}},
                                   namespace="shop")  # fmt: skip
        await wait_for(lambda: gone(cluster, "shop"), limit=120)
        return {"conditions": conditions, "still": still}

    result = simulate(scenario, seed=5).value
    conditions = result["conditions"]
    assert conditions["NamespaceContentRemaining"]["message"] == (
        "Some resources are remaining: configmaps. has 1 resource instances")
    assert conditions["NamespaceFinalizersRemaining"]["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances")
    assert conditions["NamespaceDeletionContentFailure"]["status"] == "False"
    assert conditions["NamespaceDeletionDiscoveryFailure"]["status"] == "False"
    assert result["still"]["status"]["phase"] == "Terminating"
