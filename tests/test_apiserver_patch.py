"""Strategic merge patch on the built-in types' schema: what kubectl apply, edit and
patch send, and the directives Kubernetes defines."""

import pytest

from actorkube.apiserver._schema import builtin_schema
from actorkube.apiserver._smp import PatchError, strategic_merge

SCHEMA = builtin_schema()
POD = SCHEMA.kind("v1", "Pod")
DEPLOYMENT = SCHEMA.kind("apps/v1", "Deployment")


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_containers_merge_by_name_and_other_lists_are_replaced():
    original = pod(
        containers=[
            {"name": "a", "image": "nginx:1", "args": ["x", "y"]},
            {"name": "b", "image": "b"},
        ],
        tolerations=[{"key": "k1", "operator": "Exists"}],
    )
    patch = {
        "spec": {
            "containers": [{"name": "a", "image": "nginx:2", "args": ["z"]}],
            "tolerations": [{"key": "k2", "operator": "Exists"}],
        }
    }
    out = strategic_merge(SCHEMA, POD, original, patch)
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "nginx:2", "args": ["z"]},  # args has no strategy: replaced
        {"name": "b", "image": "b"},
    ]
    assert out["spec"]["tolerations"] == [{"key": "k2", "operator": "Exists"}]
    assert original["spec"]["containers"][0]["image"] == "nginx:1"  # never changed in place


def test_the_patch_kubectl_apply_sent_for_a_changed_manifest():
    # Observed from kubectl 1.32: w1 -> w2 removes label tier, finalizer b, container b,
    # env Y and port 443, swaps emptyDir for hostPath and changes the tolerations.
    original = {
        "metadata": {
            "name": "p",
            "labels": {"app": "x", "tier": "fe"},
            "finalizers": ["example.com/a", "example.com/b"],
        },
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "nginx:1",
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                    "ports": [
                        {"containerPort": 80, "protocol": "TCP"},
                        {"containerPort": 443, "protocol": "TCP"},
                    ],
                },
                {"name": "b", "image": "busybox"},
            ],
            "tolerations": [{"key": "k1", "operator": "Exists"}],
            "volumes": [{"name": "v", "emptyDir": {}}],
        },
    }
    patch = {
        "metadata": {
            "$deleteFromPrimitiveList/finalizers": ["example.com/b"],
            "$setElementOrder/finalizers": ["example.com/a"],
            "labels": {"tier": None},
        },
        "spec": {
            "$setElementOrder/containers": [{"name": "a"}],
            "$setElementOrder/volumes": [{"name": "v"}],
            "containers": [
                {
                    "$setElementOrder/env": [{"name": "X"}],
                    "$setElementOrder/ports": [{"containerPort": 80}],
                    "env": [{"$patch": "delete", "name": "Y"}],
                    "image": "nginx:2",
                    "name": "a",
                    "ports": [{"$patch": "delete", "containerPort": 443}],
                },
                {"$patch": "delete", "name": "b"},
            ],
            "tolerations": [{"key": "k2", "operator": "Exists"}],
            "volumes": [
                {
                    "$retainKeys": ["hostPath", "name"],
                    "emptyDir": None,
                    "hostPath": {"path": "/tmp"},
                    "name": "v",
                }
            ],
        },
    }
    out = strategic_merge(SCHEMA, POD, original, patch)
    assert out["metadata"] == {"name": "p", "labels": {"app": "x"}, "finalizers": ["example.com/a"]}
    assert out["spec"] == {
        "containers": [
            {
                "name": "a",
                "image": "nginx:2",
                "env": [{"name": "X", "value": "1"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
            }
        ],
        "tolerations": [{"key": "k2", "operator": "Exists"}],
        "volumes": [{"name": "v", "hostPath": {"path": "/tmp"}}],
    }


def test_the_order_is_kubernetes_named_items_in_order_merged_with_the_others():
    # Kubernetes' mergeSortedSlice: the items a patch names, in $setElementOrder's order,
    # merged with the others in their old order (b was before c: it stays before).
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    patch = {
        "spec": {
            "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
            "containers": [{"name": "c", "image": "new"}],
        }
    }
    out = strategic_merge(SCHEMA, POD, original, patch)
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "c", "a"]
    assert out["spec"]["containers"][1]["image"] == "new"
    # Without an order the patch's own counts: a new container goes first, as
    # kubectl patch shows for a real cluster.
    added = strategic_merge(
        SCHEMA,
        POD,
        pod(containers=[{"name": "nginx"}]),
        {"spec": {"containers": [{"name": "side"}]}},
    )
    assert [c["name"] for c in added["spec"]["containers"]] == ["side", "nginx"]


def test_finalizers_are_a_set_and_new_items_go_first():
    original = {"metadata": {"finalizers": ["a"]}}
    out = strategic_merge(SCHEMA, POD, original, {"metadata": {"finalizers": ["b", "a"]}})
    assert out["metadata"]["finalizers"] == ["b", "a"]
    out = strategic_merge(SCHEMA, POD, original, {"metadata": {"finalizers": ["b"]}})
    assert out["metadata"]["finalizers"] == ["b", "a"]


def test_long_lists_merge_in_linear_time():
    many = [f"example.com/f{i}" for i in range(40_000)]
    patch = {
        "metadata": {"finalizers": many[10:], "$deleteFromPrimitiveList/finalizers": many[:10]}
    }
    out = strategic_merge(SCHEMA, POD, {"metadata": {"finalizers": many[:20_000]}}, patch)
    assert len(out["metadata"]["finalizers"]) == 40_000 - 10
    containers = [{"name": f"c{i}"} for i in range(20_000)]
    out = strategic_merge(
        SCHEMA, POD, pod(containers=containers[:10_000]), {"spec": {"containers": containers}}
    )
    assert len(out["spec"]["containers"]) == 20_000


def test_patch_replace_directives():
    original = pod(containers=[{"name": "a"}, {"name": "b"}], nodeSelector={"x": "1", "y": "2"})
    patch = {
        "spec": {
            "containers": [{"$patch": "replace"}, {"name": "z"}],
            "nodeSelector": {"$patch": "replace", "only": "this"},
        }
    }
    out = strategic_merge(SCHEMA, POD, original, patch)
    assert out["spec"]["containers"] == [{"name": "z"}]
    assert out["spec"]["nodeSelector"] == {"only": "this"}


def test_a_map_deleted_with_patch_delete():
    original = pod(containers=[{"name": "a", "securityContext": {"privileged": True}}])
    patch = {"spec": {"containers": [{"name": "a", "securityContext": {"$patch": "delete"}}]}}
    out = strategic_merge(SCHEMA, POD, original, patch)
    assert out["spec"]["containers"] == [{"name": "a"}]


def test_deployment_strategy_retain_keys_clears_the_other_member():
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge(SCHEMA, DEPLOYMENT, original, patch)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_new_items_have_their_directives_removed():
    out = strategic_merge(
        SCHEMA,
        POD,
        pod(),
        {
            "spec": {
                "containers": [{"name": "a", "$setElementOrder/env": [], "env": [{"name": "X"}]}]
            }
        },
    )
    assert out["spec"]["containers"] == [{"name": "a", "env": [{"name": "X"}]}]


@pytest.mark.parametrize(
    ("patch", "why"),
    [
        ([1, 2], "must be a JSON object"),
        ({"spec": {"containers": [{"image": "x"}]}}, "does not contain declared merge key: name"),
        ({"spec": {"$patch": "explode"}}, "unknown patch type"),
        ({"spec": {"$bogus": 1}}, "unknown directive"),
        (
            {"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "hostPath": {}}]}},
            "does not contain the field 'hostPath'",
        ),
        ({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, "must be a list"),
        ({"spec": {"containers": ["a"]}}, "must be objects"),
    ],
)
def test_malformed_patches_raise_and_change_nothing(patch, why):
    original = pod(containers=[{"name": "a"}])
    with pytest.raises(PatchError, match=why):
        strategic_merge(SCHEMA, POD, original, patch)
    assert original == pod(containers=[{"name": "a"}])


def test_a_type_the_schema_does_not_know_merges_maps_and_replaces_lists():
    out = strategic_merge(SCHEMA, None, {"a": {"b": 1}, "l": [1]}, {"a": {"c": 2}, "l": [2]})
    assert out == {"a": {"b": 1, "c": 2}, "l": [2]}
