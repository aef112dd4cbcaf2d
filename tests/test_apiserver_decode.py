"""Decoding bodies into the built-in types: unknown fields, wrong types, Go's
messages, canonical quantities; and the schema itself."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.apiserver._decode import DecodeError, _fast, _Slow, _Walker, decode
from actorkube.apiserver._schema import SCALARS, builtin_schema

SCHEMA = builtin_schema()
POD = SCHEMA.kind("v1", "Pod")


def test_every_served_kind_and_every_referenced_type_is_in_the_schema():
    from actorkube.apiserver._builtin import builtin_registry

    for rt in builtin_registry():
        t = SCHEMA.kind(rt.api_version, rt.kind)
        assert t is not None, rt.kind
        assert {"apiVersion", "kind", "metadata"} <= set(t.fields), rt.kind
    for t in SCHEMA.types.values():
        for f in t.fields.values():
            assert f.item in SCALARS or f.item.startswith("[]") or f.item in SCHEMA.types, f


def test_the_schema_knows_what_kubernetes_declares():
    spec = SCHEMA["io.k8s.api.core.v1.PodSpec"].fields
    assert (spec["containers"].merge_key, spec["containers"].list_type) == ("name", "map")
    assert spec["volumes"].patch_strategy == "merge,retainKeys"
    assert spec["tolerations"].list_type == "atomic"
    ports = SCHEMA["io.k8s.api.core.v1.Container"].fields["ports"]
    assert ports.map_keys == ("containerPort", "protocol") and ports.merge_key == "containerPort"
    volume = SCHEMA["io.k8s.api.core.v1.Volume"]
    assert "emptyDir" in volume.fields and volume.proto[2] == "io.k8s.api.core.v1.VolumeSource"
    assert SCHEMA["io.k8s.api.core.v1.ObjectReference"].struct_type == "atomic"
    assert SCHEMA["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].fields["labels"].proto == 11


def pod(**spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


def test_unknown_fields_are_dropped_and_named_with_their_path():
    body = pod(containers=[{"name": "a", "image": "x", "imagee": "y"}], bogus=1)
    body["extra"] = {}
    decoded = decode(SCHEMA, POD, body)
    assert decoded.unknown == ("spec.containers[0].imagee", "spec.bogus", "extra")
    assert decoded.obj == pod(containers=[{"name": "a", "image": "x"}])


def test_nulls_are_left_out_and_quantities_come_out_canonical():
    body = pod(
        containers=[
            {
                "name": "a",
                "resources": {
                    "limits": {"cpu": 0.5, "memory": "1024Mi"},
                    "requests": {"cpu": "1000m"},
                },
            }
        ],
        nodeName=None,
    )
    body["metadata"]["labels"] = None
    out = decode(SCHEMA, POD, body).obj
    assert out["metadata"] == {"name": "p"} and "nodeName" not in out["spec"]
    resources = out["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "1"}}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"containers": [{"name": 5}]},
            "json: cannot unmarshal number into Go struct field Container.spec.containers.name "
            "of type string",
        ),
        (
            {"containers": {"name": "a"}},
            "json: cannot unmarshal object into Go struct field PodSpec.spec.containers of type "
            "[]v1.Container",
        ),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": "80"}]}]},
            "cannot unmarshal string into Go struct field ContainerPort.spec.containers.ports."
            "containerPort of type int32",
        ),
        (
            {"containers": [{"name": "a", "ports": [{"containerPort": 1.5}]}]},
            "cannot unmarshal number 1.5 into Go struct field",
        ),
        ({"containers": [{"name": "a", "ports": [{"containerPort": 2**40}]}]}, "of type int32"),
        (
            {"hostNetwork": "yes"},
            "cannot unmarshal string into Go struct field PodSpec.spec.hostNetwork of type bool",
        ),
        (
            {"containers": [{"name": "a", "resources": {"limits": {"cpu": "lots"}}}]},
            "quantities must match the regular expression",
        ),
        (
            {"containers": [{"name": "a", "resources": {"limits": {"cpu": True}}}]},
            "cannot unmarshal bool into Go struct field",
        ),
        ({"activeDeadlineSeconds": 5, "nodeSelector": ["a"]}, "of type map[string]string"),
        (
            {"containers": [{"name": "a", "livenessProbe": {"httpGet": {"port": 1.5}}}]},
            "of type int32",
        ),
    ],
)
def test_wrong_types_are_refused_with_gos_message(spec, message):
    with pytest.raises(DecodeError, match=message.replace(".", r"\.").replace("[", r"\[")):
        decode(SCHEMA, POD, pod(**spec))


def test_int_or_string_times_and_bytes():
    probe = {"httpGet": {"port": "http"}, "tcpSocket": {"port": 80}}
    out = decode(SCHEMA, POD, pod(containers=[{"name": "a", "livenessProbe": probe}])).obj
    assert out["spec"]["containers"][0]["livenessProbe"] == probe
    meta = {"name": "p", "creationTimestamp": "2024-01-01T00:00:00Z"}
    assert decode(SCHEMA, POD, {"metadata": meta}).obj == {"metadata": meta}
    with pytest.raises(DecodeError, match="parsing time"):
        decode(SCHEMA, POD, {"metadata": {"creationTimestamp": "yesterday"}})
    secret = SCHEMA.kind("v1", "Secret")
    assert decode(SCHEMA, secret, {"data": {"k": "aGk="}}).obj == {"data": {"k": "aGk="}}
    with pytest.raises(DecodeError, match="illegal base64"):
        decode(SCHEMA, secret, {"data": {"k": "not base64!"}})


def test_a_list_item_of_null_is_its_zero_value():
    out = decode(SCHEMA, POD, pod(containers=[None], imagePullSecrets=[None])).obj
    assert out["spec"] == {"containers": [{}], "imagePullSecrets": [{}]}


def test_the_schema_agrees_with_the_official_clients_models():
    # The field names of every type a served kind reaches are the JSON names the
    # official client (generated from Kubernetes' OpenAPI) knows: embedded types are
    # flattened, protobuf-only spellings (uID) renamed.
    from actorkube.apiserver._builtin import builtin_registry
    from actorkube.apiserver._schema_gen import json_fields, python_class, python_models

    models = python_models()
    roots = [SCHEMA.kind(rt.api_version, rt.kind).name for rt in builtin_registry()]
    checked = 0
    for name in SCHEMA.closure(roots):
        cls = python_class(models, "k8s.io." + name.removeprefix("io.k8s."))
        if cls is None:
            continue
        known = set(json_fields(cls))
        assert set(SCHEMA[name].fields) <= known, (name, set(SCHEMA[name].fields) - known)
        checked += 1
    assert checked > 150


# --- the fast path agrees with the walk ---------------------------------------------------

_SCALAR_VALUES = {
    "string": st.text(max_size=5),
    "boolean": st.booleans(),
    "int32": st.integers(-(2**31) - 1, 2**31),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "double": st.one_of(st.integers(-5, 5), st.floats(allow_nan=False)),
    "quantity": st.sampled_from(["1", "100m", "0.5", "1Gi", "1e3", "1.5Ki", "x", "", "07"]),
    "intstr": st.one_of(st.integers(0, 70000), st.sampled_from(["http", "50%"])),
    "byte": st.sampled_from(["", "aGk=", "not base64!", "aGk"]),
    "time": st.sampled_from(["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.5+01:00", "noon"]),
    "microtime": st.sampled_from(["2026-01-02T03:04:05.123456Z", "x"]),
    "duration": st.sampled_from(["1h2m", "5s", "0", "-1.5ms", "soon"]),
    "raw": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
    "fieldsv1": st.sampled_from([{}, {"f:spec": {}}, "f:spec"]),
}
_ODD = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                 st.text(max_size=3), st.just([]), st.just({}))  # fmt: skip


def _value_of(data, type_name: str, depth: int):
    """A value shaped like ``type_name``, now and then of the wrong shape, null, or with
    a field the type does not have."""
    if data.draw(st.integers(0, 19), label="odd") == 0:
        return data.draw(_ODD)
    if type_name in _SCALAR_VALUES:
        return data.draw(_SCALAR_VALUES[type_name])
    if type_name.startswith("[]") or type_name.startswith("{}"):
        n = 0 if depth > 4 else data.draw(st.integers(0, 2))
        items = [_value_of(data, type_name[2:], depth + 1) for _ in range(n)]
        return items if type_name.startswith("[]") else {f"k{i}": v for i, v in enumerate(items)}
    t = SCHEMA.types.get(type_name)
    if t is None:
        return data.draw(_ODD)
    names = sorted(t.fields)
    chosen = [] if depth > 4 else data.draw(st.lists(st.sampled_from(names), max_size=4))
    out = {name: _value_of(data, t.fields[name].type, depth + 1) for name in chosen}
    if data.draw(st.integers(0, 19), label="unknown") == 0:
        out["notAField"] = 1
    return out


def _walked(t, obj):
    unknown: list[str] = []
    try:
        return _Walker(SCHEMA, unknown).struct(t, obj, "", ""), tuple(unknown)
    except DecodeError as e:
        return "error", str(e)


@pytest.mark.parametrize("kind", ["Pod", "Service", "Node", "ConfigMap", "Secret", "Event"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_the_fast_path_decodes_exactly_as_the_walk(kind, data):
    t = SCHEMA.kind("v1", kind)
    obj = _value_of(data, t.name, 0)
    try:
        got = decode(SCHEMA, t, obj)
        fast = got.obj, got.unknown
    except DecodeError as e:
        fast = "error", str(e)
    assert fast == _walked(t, obj)


def test_a_well_formed_pod_takes_the_fast_path():
    body = pod(containers=[{"name": "c", "image": "i", "resources": {"limits": {"cpu": "0.5"}}}])
    assert _fast(SCHEMA, POD.name)(body)["spec"]["containers"][0]["resources"] == {
        "limits": {"cpu": "500m"}
    }
    with pytest.raises(_Slow):
        _fast(SCHEMA, POD.name)(pod(containerz=[]))
