"""Kubernetes protobuf bodies (what typed Go clients such as ``kubectl create
configmap`` send), decoded into JSON-shaped objects. The bodies here are encoded by
hand from generated.proto's field numbers; the kubectl tests send real ones."""

import pytest

from actorkube.apiserver._protobuf import ProtobufError, decode_body, go_duration
from actorkube.apiserver._schema import builtin_schema

SCHEMA = builtin_schema()


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def num(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def msg(number: int, *parts: bytes) -> bytes:
    payload = b"".join(parts)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str | bytes) -> bytes:
    return msg(number, value.encode() if isinstance(value, str) else value)


def body(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + msg(1, text(1, api_version), text(2, kind)) + msg(2, raw)


def test_a_configmap_as_kubectl_create_sends_it():
    meta = msg(
        1,
        text(1, "c"),
        text(3, "default"),
        num(7, 0),
        msg(8),
        msg(11, text(1, "app"), text(2, "web")),
    )
    raw = meta + msg(2, text(1, "k"), text(2, "v")) + msg(3, text(1, "b"), text(2, b"\x00\x01"))
    obj = decode_body(SCHEMA, body("v1", "ConfigMap", raw))
    assert obj == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        # Go writes zero fields (generation 0, an empty creationTimestamp); JSON would not.
        "metadata": {"name": "c", "namespace": "default", "labels": {"app": "web"}},
        "data": {"k": "v"},
        "binaryData": {"b": "AAE="},
    }


def test_embedded_types_int_or_string_quantities_and_times():
    volume = msg(1, text(1, "v"), msg(2, msg(2)))  # Volume{name, volumeSource{emptyDir{}}}
    ports = msg(6, num(3, 80), text(4, "TCP"))  # containerPort 3, protocol 4
    resources = msg(8, msg(1, text(1, "cpu"), msg(2, text(1, "500m"))))
    probe = msg(10, msg(1, msg(3, msg(1, num(1, 1), text(3, "http")))))  # tcpSocket.port
    container = msg(2, text(1, "a"), text(2, "nginx"), ports, resources, probe)
    spec = msg(2, volume, container, num(3, 2))  # restartPolicy is a string (3); see below
    created = msg(8, num(1, 1_700_000_000))
    raw = msg(1, text(1, "p"), created) + spec
    with pytest.raises(ProtobufError, match="not length-delimited"):
        decode_body(SCHEMA, body("v1", "Pod", raw))
    spec = msg(2, volume, container, text(3, "Never"))
    obj = decode_body(SCHEMA, body("v1", "Pod", msg(1, text(1, "p"), created) + spec))
    assert obj["metadata"] == {"name": "p", "creationTimestamp": "2023-11-14T22:13:20Z"}
    assert obj["spec"]["volumes"] == [{"name": "v", "emptyDir": {}}]
    assert obj["spec"]["restartPolicy"] == "Never"
    c = obj["spec"]["containers"][0]
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["resources"] == {"limits": {"cpu": "500m"}}
    assert c["livenessProbe"] == {"tcpSocket": {"port": "http"}}


def test_negative_int32_and_a_self_subject_access_review():
    attrs = msg(1, text(1, "default"), text(2, "create"), text(5, "pods"))
    obj = decode_body(
        SCHEMA, body("authorization.k8s.io/v1", "SelfSubjectAccessReview", msg(1) + msg(2, attrs))
    )
    assert obj["spec"] == {
        "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}
    }
    scale = decode_body(SCHEMA, body("autoscaling/v1", "Scale", msg(2, num(1, -1))))
    assert scale["spec"] == {"replicas": -1}


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"{}", "prefix"),
        (b"k8s\x00" + msg(2, b""), "names no kind"),
        (body("v1", "Widget", b""), 'no kind "Widget"'),
        (body("v1", "ConfigMap", b"\x0a\x05ab"), "truncated"),
        (body("v1", "ConfigMap", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), "varint"),
        (body("v1", "ConfigMap", msg(1, text(1, b"\xff\xfe"))), "UTF-8"),
        (body("v1", "ConfigMap", b"\x0b"), "wire type"),
    ],
)
def test_malformed_bodies_raise(raw, why):
    with pytest.raises(ProtobufError, match=why):
        decode_body(SCHEMA, raw)


def test_unknown_field_numbers_are_skipped_as_protobuf_says():
    obj = decode_body(SCHEMA, body("v1", "ConfigMap", msg(1, text(1, "c")) + text(99, "new")))
    assert obj["metadata"] == {"name": "c"}


@pytest.mark.parametrize(
    ("nanos", "shown"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
        (-2 * 10**9, "-2s"),
    ],
)
def test_durations_print_as_go_prints_them(nanos, shown):
    assert go_duration(nanos) == shown


def test_a_pointers_zero_is_set_and_an_omitempty_fields_zero_is_left_out():
    # DeploymentSpec.replicas is *int32: 0 on the wire is replicas: 0. Container.stdin
    # is a plain bool with omitempty: false on the wire is what Go's JSON leaves out.
    # ContainerPort.containerPort has no omitempty: Go's JSON writes even 0.
    security = msg(15, num(7, 0), num(4, 0))  # allowPrivilegeEscalation, runAsUser
    container = msg(2, text(1, "a"), num(16, 0), msg(6, num(3, 0)), security)
    template = msg(3, msg(1, msg(11, text(1, "app"), text(2, "x"))), msg(2, container))
    spec = msg(2, num(1, 0), msg(2, msg(1, msg(1, text(1, "app"), text(2, "x")))), template)
    obj = decode_body(SCHEMA, body("apps/v1", "Deployment", msg(1, text(1, "d")) + spec))
    assert obj["spec"]["replicas"] == 0
    [c] = obj["spec"]["template"]["spec"]["containers"]
    assert "stdin" not in c and c["ports"] == [{"containerPort": 0}]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "runAsUser": 0}
