"""Admission plugins as kube-apiserver's: NamespaceLifecycle, ServiceAccount,
DefaultTolerationSeconds (the wording of their refusals is Kubernetes')."""

from __future__ import annotations

import pytest

from actorkube.apiserver._admission import AdmissionRequest, default_chain
from actorkube.apiserver._errors import ApiError
from actorkube.apiserver._registry import ResourceType

PODS = ResourceType("", "v1", "Pod", "pods", namespaced=True)
CONFIGMAPS = ResourceType("", "v1", "ConfigMap", "configmaps", namespaced=True)
NAMESPACES = ResourceType("", "v1", "Namespace", "namespaces", namespaced=False)

WORLD = {
    ("namespaces", "", "default"): {"metadata": {"name": "default"}},
    ("namespaces", "", "going"): {
        "metadata": {"name": "going", "deletionTimestamp": "2026-01-01T00:00:00Z"}
    },
    ("serviceaccounts", "default", "default"): {"metadata": {"name": "default"}},
}


async def lookup(resource: str, namespace: str, name: str):
    return WORLD.get((resource, namespace, name))


def create(rt: ResourceType, namespace: str, obj: dict) -> AdmissionRequest:
    return AdmissionRequest("CREATE", rt, namespace, obj["metadata"]["name"], obj, None)


def pod(name: str, **spec) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [], **spec}}


async def test_no_new_objects_in_a_missing_or_terminating_namespace() -> None:
    chain = default_chain(lookup)
    await chain.run(create(CONFIGMAPS, "default", {"metadata": {"name": "a"}}))
    with pytest.raises(ApiError) as missing:
        await chain.run(create(CONFIGMAPS, "nowhere", {"metadata": {"name": "a"}}))
    assert missing.value.code == 404
    assert missing.value.status["message"] == 'namespaces "nowhere" not found'
    with pytest.raises(ApiError) as going:
        await chain.run(create(CONFIGMAPS, "going", {"metadata": {"name": "a"}}))
    assert going.value.code == 403
    assert going.value.status["message"] == (
        'configmaps "a" is forbidden: unable to create new content in namespace going '
        "because it is being terminated"
    )
    with pytest.raises(ApiError) as immortal:
        await chain.run(AdmissionRequest("DELETE", NAMESPACES, "", "kube-system", None, {}))
    assert immortal.value.code == 403 and "may not be deleted" in str(immortal.value)


async def test_pods_get_the_default_service_account_which_must_exist() -> None:
    chain = default_chain(lookup)
    admitted = await chain.run(create(PODS, "default", pod("p")))
    assert admitted["spec"]["serviceAccountName"] == "default"
    with pytest.raises(ApiError) as unknown:
        await chain.run(create(PODS, "default", pod("q", serviceAccountName="builder")))
    assert unknown.value.code == 403
    assert unknown.value.status["message"] == (
        'pods "q" is forbidden: error looking up service account default/builder: '
        'serviceaccount "builder" not found'
    )


async def test_pods_tolerate_lost_nodes_for_300_seconds_unless_they_say_otherwise() -> None:
    chain = default_chain(lookup)
    admitted = await chain.run(create(PODS, "default", pod("p")))
    assert admitted["spec"]["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]  # fmt: skip
    own = {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
           "effect": "NoExecute", "tolerationSeconds": 10}  # fmt: skip
    admitted = await chain.run(create(PODS, "default", pod("q", tolerations=[own])))
    assert [t["key"] for t in admitted["spec"]["tolerations"]] == [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
    ]
    assert admitted["spec"]["tolerations"][0]["tolerationSeconds"] == 10
