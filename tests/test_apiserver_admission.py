"""Admission plugins as kube-apiserver's: NamespaceLifecycle, ServiceAccount,
DefaultTolerationSeconds (the wording of their refusals is Kubernetes')."""

from __future__ import annotations

import random
import re

import pytest

from actorkube.apiserver._admission import AdmissionRequest, default_chain, token_volume
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
    assert going.value.status["details"]["causes"] == [{
        "reason": "NamespaceTerminating", "field": "metadata.namespace",
        "message": "namespace going is being terminated"}]  # fmt: skip
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


MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def mounts_of(container: dict) -> list[tuple]:
    return [(m["name"], m["mountPath"], m.get("readOnly"))
            for m in container.get("volumeMounts", ())]  # fmt: skip


async def test_pods_get_the_token_volume_in_every_container_that_has_none() -> None:
    chain = default_chain(lookup, rng=random.Random(4))
    own = {"name": "own", "mountPath": MOUNT}
    spec = {"initContainers": [{"name": "init"}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/d"}]},
                           {"name": "b", "volumeMounts": [own]}],
            "volumes": [{"name": "data", "emptyDir": {}},
                        {"name": "own", "emptyDir": {}}]}  # fmt: skip
    admitted = await chain.run(create(PODS, "default", pod("p", **spec)))
    volume = admitted["spec"]["volumes"][-1]
    name = volume["name"]
    assert re.fullmatch(r"kube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}", name)
    assert volume == token_volume(name)
    assert volume["projected"]["defaultMode"] == 0o644
    sources = volume["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    init, a, b = (*admitted["spec"]["initContainers"], *admitted["spec"]["containers"])
    assert mounts_of(init) == [(name, MOUNT, True)]
    assert mounts_of(a) == [("data", "/d", None), (name, MOUNT, True)]
    assert mounts_of(b) == [("own", MOUNT, None)]  # it mounts something there itself
    assert len(admitted["spec"]["volumes"]) == 3
    assert spec["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/d"}]


async def test_a_token_volume_the_pod_has_is_used_not_added() -> None:
    chain = default_chain(lookup)
    spec = {"containers": [{"name": "a"}], "volumes": [token_volume("kube-api-access-mine")]}
    admitted = await chain.run(create(PODS, "default", pod("p", **spec)))
    assert [v["name"] for v in admitted["spec"]["volumes"]] == ["kube-api-access-mine"]
    assert mounts_of(admitted["spec"]["containers"][0]) == [("kube-api-access-mine", MOUNT, True)]


async def test_automount_false_on_the_pod_or_else_its_account_means_no_token() -> None:
    world = {**WORLD, ("serviceaccounts", "default", "quiet"):
             {"metadata": {"name": "quiet"}, "automountServiceAccountToken": False}}  # fmt: skip

    async def look(resource: str, namespace: str, name: str):
        return world.get((resource, namespace, name))

    chain = default_chain(look)
    one = [{"name": "a"}]
    cases = [({"automountServiceAccountToken": False}, False),
             ({"serviceAccountName": "quiet"}, False),
             ({"serviceAccountName": "quiet", "automountServiceAccountToken": True}, True),
             ({}, True)]  # fmt: skip
    for spec, mounted in cases:
        admitted = await chain.run(create(PODS, "default", pod("p", containers=one, **spec)))
        assert bool(admitted["spec"].get("volumes")) is mounted, spec
        assert bool(admitted["spec"]["containers"][0].get("volumeMounts")) is mounted, spec


async def test_projected_tokens_are_validated_as_kubernetes_does(autojump_clock) -> None:
    from inproc_api import call, start_api

    from actorkube.actor import ActorSystem

    async with ActorSystem() as system:
        api = await start_api(system)
        sources = [{"serviceAccountToken": {"expirationSeconds": 300, "path": "t"}},
                   {"serviceAccountToken": {"expirationSeconds": 2**33}}]  # fmt: skip
        volume = {"name": "v", "projected": {"sources": sources}}
        body = {"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i"}], "volumes": [volume]}}
        answer = await call(api, "create", "pods", namespace="default", body=body)
        assert answer.code == 422
        at = "spec.volumes[0].projected.sources"
        assert answer.body["message"] == (
            'Pod "p" is invalid: ['
            f"{at}[0].serviceAccountToken.expirationSeconds: Invalid value: 300: may not "
            "specify a duration less than 10 minutes, "
            f"{at}[1].serviceAccountToken.expirationSeconds: Invalid value: 8589934592: may "
            "not specify a duration larger than 2^32 seconds, "
            f"{at}[1].serviceAccountToken.path: Required value]")
