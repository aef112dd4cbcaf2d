"""Server-side apply and field ownership on the built-in types' schema."""

import json

import pytest

from actorkube.apiserver._apply import ApplyConflict, apply, track_update
from actorkube.apiserver._fieldset import display, from_fields_v1, leaves, to_fields_v1
from actorkube.apiserver._schema import builtin_schema

SCHEMA = builtin_schema()
DEPLOYMENT = SCHEMA.kind("apps/v1", "Deployment")
CONFIGMAP = SCHEMA.kind("v1", "ConfigMap")
POD = SCHEMA.kind("v1", "Pod")
NOW = "2026-01-01T00:00:00Z"


def deployment(image="nginx:1", replicas=2, env=None, labels=None):
    container = {"name": "a", "image": image}
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", **({"labels": labels} if labels else {})},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [container]}},
        },
    }


def applied(live, config, manager="kubectl", force=False, t=DEPLOYMENT):
    return apply(
        SCHEMA,
        t,
        live,
        config,
        manager=manager,
        api_version="apps/v1",
        subresource="",
        force=force,
        now=NOW,
    )


def updated(old, new, manager, subresource="", t=DEPLOYMENT):
    return track_update(
        SCHEMA,
        t,
        old,
        new,
        manager=manager,
        api_version="apps/v1",
        subresource=subresource,
        now=NOW,
    )


def managers(obj):
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"]["managedFields"]}


def test_apply_records_the_fields_of_the_configuration_as_kubernetes_writes_them():
    obj = applied(None, deployment(env=[{"name": "X", "value": "1"}], labels={"app": "web"}))
    fields = managers(obj)[("kubectl", "Apply")]
    assert fields == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},  # a LabelSelector is atomic
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"a"}': {
                            ".": {},
                            "f:name": {},
                            "f:image": {},
                            "f:env": {'k:{"name":"X"}': {".": {}, "f:name": {}, "f:value": {}}},
                        }
                    }
                }
            },
        },
    }
    entry = obj["metadata"]["managedFields"][0]
    assert (
        entry["operation"] == "Apply" and entry["time"] == NOW and entry["fieldsType"] == "FieldsV1"
    )


def test_fields_a_manager_stops_applying_are_removed_unless_someone_else_owns_them():
    obj = applied(
        None,
        deployment(
            env=[{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
            labels={"app": "web", "tier": "fe"},
        ),
    )
    # Another manager takes label tier (same value: shared, no conflict).
    obj = applied(
        obj,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"tier": "fe"}},
        },
        manager="other",
    )
    obj = applied(obj, deployment(env=[{"name": "X", "value": "1"}], labels={"app": "web"}))
    assert obj["metadata"]["labels"] == {"app": "web", "tier": "fe"}  # still other's
    assert obj["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "X", "value": "1"}]


def test_changing_a_value_another_manager_owns_is_a_conflict_unless_forced():
    obj = applied(None, deployment(replicas=2))
    scaled = {**obj, "spec": {**obj["spec"], "replicas": 5}}
    obj = updated(obj, scaled, "kubectl-scale")
    assert obj["spec"]["replicas"] == 5
    assert "f:replicas" not in managers(obj)[("kubectl", "Apply")]["f:spec"]
    with pytest.raises(ApplyConflict) as e:
        applied(obj, deployment(replicas=3))
    assert str(e.value) == (
        'Apply failed with 1 conflict: conflict with "kubectl-scale" using apps/v1: .spec.replicas'
    )
    same = applied(obj, deployment(replicas=5))  # the same value: owned together
    assert "f:replicas" in managers(same)[("kubectl-scale", "Update")]["f:spec"]
    forced = applied(obj, deployment(replicas=3), force=True)
    assert forced["spec"]["replicas"] == 3
    assert ("kubectl-scale", "Update") not in managers(forced)  # it owned nothing else


def test_several_conflicts_are_listed_by_manager():
    obj = applied(None, deployment())
    new = deployment(image="nginx:9", replicas=7)
    new["metadata"]["managedFields"] = obj["metadata"]["managedFields"]
    obj = updated(obj, new, "editor")
    with pytest.raises(ApplyConflict) as e:
        applied(obj, deployment(image="nginx:2", replicas=3))
    assert str(e.value).startswith(
        'Apply failed with 2 conflicts: conflicts with "editor" using apps/v1:\n- '
    )
    assert '.spec.template.spec.containers[name="a"].image' in str(e.value)


def test_updates_take_ownership_of_what_they_change():
    obj = updated(None, deployment(labels={"app": "web"}), "kubectl-create")
    assert ("kubectl-create", "Update") in managers(obj)
    relabelled = deployment(labels={"app": "web", "env": "prod"})
    relabelled["metadata"]["managedFields"] = obj["metadata"]["managedFields"]
    obj = updated(obj, relabelled, "kubectl-label")
    assert managers(obj)[("kubectl-label", "Update")] == {"f:metadata": {"f:labels": {"f:env": {}}}}
    assert "f:env" not in managers(obj)[("kubectl-create", "Update")]["f:metadata"]["f:labels"]


def test_status_writes_own_only_the_status_and_main_writes_never_do():
    obj = updated(None, {**deployment(), "status": {"replicas": 2}}, "creator")
    assert "f:status" not in managers(obj)[("creator", "Update")]
    new = {**obj, "status": {"replicas": 3}}
    obj = updated(obj, new, "controller", subresource="status")
    entry = next(e for e in obj["metadata"]["managedFields"] if e["manager"] == "controller")
    assert entry["subresource"] == "status"
    assert entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}


def test_sets_and_granular_maps():
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["a"]},
        "data": {"k1": "v1", "k2": "v2"},
    }
    obj = applied(None, cm, t=CONFIGMAP)
    fields = managers(obj)[("kubectl", "Apply")]
    assert fields == {
        "f:data": {"f:k1": {}, "f:k2": {}},
        "f:metadata": {"f:finalizers": {'v:"a"': {}}},
    }
    other = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "finalizers": ["b"]},
    }
    obj = applied(obj, other, manager="m2", t=CONFIGMAP)
    assert obj["metadata"]["finalizers"] == ["a", "b"]
    cm["metadata"]["finalizers"] = []
    del cm["data"]["k2"]
    obj = applied(obj, cm, t=CONFIGMAP)
    assert obj["metadata"]["finalizers"] == ["b"] and obj["data"] == {"k1": "v1"}


def test_field_sets_round_trip_through_fields_v1():
    obj = {
        "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
        "spec": {
            "containers": [{"name": "c", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
            "securityContext": {},
        },
    }
    paths = set(leaves(SCHEMA, POD, obj))
    assert from_fields_v1(to_fields_v1(paths)) == paths
    port = next(p for p in paths if len(p) > 4 and p[-1] == ("f", "protocol"))
    assert (
        display(port)
        == '.spec.containers[name="c"].ports[containerPort=80,protocol="TCP"].protocol'
    )


def test_a_write_that_sets_managed_fields_itself_is_checked_and_tracked_on_top():
    from actorkube.apiserver._bodies import track
    from actorkube.apiserver._builtin import builtin_registry
    from actorkube.apiserver._errors import ApiError

    rt = builtin_registry().resource("apps", "deployments")

    def write(old, new, manager="m2"):
        return track(SCHEMA, rt, old, new, params={"fieldManager": manager}, subresource="",
                     now=NOW)  # fmt: skip

    obj = applied(None, deployment())
    cleared = {**obj, "metadata": {**obj["metadata"], "managedFields": [{}]}}
    assert "managedFields" not in write(obj, cleared)["metadata"]
    emptied = {**obj, "metadata": {**obj["metadata"], "managedFields": []}}
    kept = write(obj, emptied)  # an empty list changes nothing
    assert kept["metadata"]["managedFields"] == obj["metadata"]["managedFields"]
    renamed = [{**e, "manager": "renamed"} for e in obj["metadata"]["managedFields"]]
    relabelled = deployment(labels={"x": "1"})
    relabelled["metadata"]["managedFields"] = renamed
    out = write(obj, relabelled)
    assert managers(out)[("renamed", "Apply")]["f:spec"]["f:replicas"] == {}
    assert managers(out)[("m2", "Update")] == {"f:metadata": {"f:labels": {"f:x": {}}}}
    for bad in (
        [{"operation": "Bogus", "fieldsV1": {}}],
        [{"operation": "Apply", "fieldsV1": 5}],
        [{"operation": "Update", "fieldsType": "FieldsV2"}],
        "everything",
    ):
        broken = {**obj, "metadata": {**obj["metadata"], "managedFields": bad}}
        with pytest.raises(ApiError) as e:
            write(obj, broken)
        assert e.value.code == 422 and "metadata.managedFields" in e.value.status["message"]
    # What a client stored wrong before counts for nothing and breaks nothing.
    odd = {"f:data": {"i:abc": {}, 'k:{"not json': {}, "f:a": {}}}
    from actorkube.apiserver._fieldset import from_fields_v1

    assert from_fields_v1(odd) == {(("f", "data"), ("f", "a"))}


def test_defaulted_key_fields_identify_items_so_apply_is_idempotent():
    config = deployment()
    config["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    obj = applied(None, config)
    stored = json.loads(json.dumps(obj))  # the server defaults the protocol
    stored["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] = "TCP"
    again = applied(stored, config)
    assert again["spec"]["template"]["spec"]["containers"][0]["ports"] == [
        {"containerPort": 80, "protocol": "TCP"}
    ]


def test_an_empty_struct_in_a_configuration_conflicts_with_nothing_below_it():
    config = deployment()
    obj = applied(None, config)
    limited = json.loads(json.dumps(obj))
    limited["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    obj = updated(obj, limited, "vpa")
    config["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    out = applied(obj, config)  # no conflict: {} changes nothing
    [container] = out["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {"limits": {"cpu": "1"}}


def test_conflict_checks_take_time_linear_in_the_fields():
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
          "data": {f"k{i}": "a" for i in range(8000)}}  # fmt: skip
    obj = updated(None, cm, "u", t=CONFIGMAP)
    changed = {**cm, "data": {f"k{i}": "b" for i in range(8000)}}
    with pytest.raises(ApplyConflict) as e:
        applied(obj, changed, t=CONFIGMAP)
    assert len(e.value.conflicts) == 8000


def test_applying_the_same_configuration_again_changes_nothing_not_even_the_time():
    obj = applied(None, deployment())
    later = apply(
        SCHEMA,
        DEPLOYMENT,
        obj,
        deployment(),
        manager="kubectl",
        api_version="apps/v1",
        subresource="",
        force=False,
        now="2030-01-01T00:00:00Z",
    )
    assert later == obj
    moved = apply(
        SCHEMA,
        DEPLOYMENT,
        obj,
        deployment(replicas=4),
        manager="kubectl",
        api_version="apps/v1",
        subresource="",
        force=False,
        now="2030-01-01T00:00:00Z",
    )
    assert moved["metadata"]["managedFields"][0]["time"] == "2030-01-01T00:00:00Z"
