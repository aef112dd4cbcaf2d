"""Field errors and basic validators, against Kubernetes' messages and rules.

Expected values come from k8s.io/apimachinery: util/validation/field/errors.go
(ErrorBody), util/validation/validation.go and api/validate/content (the is_* checks and
their tests), api/validation/objectmeta.go and generic.go (ObjectMeta); and from
k8s.io/kubernetes pkg/apis/core/validation (ResourceRequirements).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.apiserver._validation import (
    ErrorType,
    FieldError,
    Path,
    is_c_identifier,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_qualified_name,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    name_is_dns1035_label,
    name_is_dns_label,
    validate_object_meta,
    validate_quantity,
    validate_resource_requirements,
)

META = Path("metadata")
RESOURCES = Path("spec").child("containers").index(0).child("resources")

DNS1123_LABEL_ERROR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    r"regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)
DNS1035_LABEL_ERROR = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)
NAME_PART_ERROR = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
MANY_SLASHES_ERROR = (
    "a valid label key must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
    "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
)
LABEL_VALUE_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


# --- FieldError and Path ------------------------------------------------------------


def test_error_types_are_kubernetes_strings() -> None:
    assert {t.name: t.value for t in ErrorType} == {
        "NOT_FOUND": "FieldValueNotFound",
        "REQUIRED": "FieldValueRequired",
        "DUPLICATE": "FieldValueDuplicate",
        "INVALID": "FieldValueInvalid",
        "NOT_SUPPORTED": "FieldValueNotSupported",
        "FORBIDDEN": "FieldValueForbidden",
        "TOO_LONG": "FieldValueTooLong",
        "TOO_MANY": "FieldValueTooMany",
        "INTERNAL": "InternalError",
        "TYPE_INVALID": "FieldValueTypeInvalid",
    }


def test_path_prints_like_field_path() -> None:
    path = Path("spec").child("containers").index(0).child("ports").index(1)
    assert str(path.child("containerPort")) == "spec.containers[0].ports[1].containerPort"
    assert str(META.child("labels").key("app")) == "metadata.labels[app]"
    assert str(Path("a").child("b", "c")) == "a.b.c"


# ErrorBody: which types show the value, and how Go prints it (%q, %v, json.Marshal).
@pytest.mark.parametrize(
    ("error", "message"),
    [
        (FieldError.required(META.child("name")), "metadata.name: Required value"),
        (
            FieldError.required(META.child("name"), "name or generateName is required"),
            "metadata.name: Required value: name or generateName is required",
        ),
        (
            FieldError.invalid(Path("spec").child("containers").index(0).child("name"), "A_B", "x"),
            'spec.containers[0].name: Invalid value: "A_B": x',
        ),
        (FieldError.invalid(Path("p"), 70000, "d"), "p: Invalid value: 70000: d"),
        (FieldError.invalid(Path("p"), True, "d"), "p: Invalid value: true: d"),
        (FieldError.invalid(Path("p"), 0.5, "d"), "p: Invalid value: 0.5: d"),
        (FieldError.invalid(Path("p"), 1e6, "d"), "p: Invalid value: 1e+06: d"),  # %v of float64
        (FieldError.invalid(Path("p"), 2.0, "d"), "p: Invalid value: 2: d"),
        (FieldError.invalid(Path("p"), 1e-5, "d"), "p: Invalid value: 1e-05: d"),
        (FieldError.invalid(Path("p"), None, "d"), "p: Invalid value: null: d"),
        (FieldError.invalid(Path("p"), ["a", "b"], "d"), 'p: Invalid value: ["a","b"]: d'),
        (
            FieldError.invalid(Path("p"), {"b": 1, "a": "<&>"}, "d"),
            r'p: Invalid value: {"a":"\u003c\u0026\u003e","b":1}: d',
        ),
        (FieldError.invalid(Path("p"), 'say "hi"\n', ""), r'p: Invalid value: "say \"hi\"\n"'),
        (FieldError.invalid(Path("p"), "\x00é\u200b", "d"), r'p: Invalid value: "\x00é\u200b": d'),
        (FieldError.forbidden(Path("p"), "not allowed"), "p: Forbidden: not allowed"),
        (FieldError.too_long(Path("p"), 262144), "p: Too long: may not be more than 262144 bytes"),
        (FieldError.too_long(Path("p"), 1), "p: Too long: may not be more than 1 byte"),
        (
            FieldError.type_invalid(Path("p"), [1], "object"),
            'p: Invalid value: "array": must be of type object',
        ),
        (FieldError(ErrorType.NOT_FOUND, "p", "x"), 'p: Not found: "x"'),
        (FieldError(ErrorType.DUPLICATE, "p", 80), "p: Duplicate value: 80"),
        (
            FieldError(ErrorType.NOT_SUPPORTED, "p", "x", 'supported values: "A", "B"'),
            'p: Unsupported value: "x": supported values: "A", "B"',
        ),
        (
            FieldError(ErrorType.TOO_MANY, "p", 5, "must have at most 4 items"),
            "p: Too many: 5: must have at most 4 items",
        ),
        (FieldError(ErrorType.INTERNAL, "p", "ignored", "boom"), "p: Internal error: boom"),
    ],
)
def test_messages(error: FieldError, message: str) -> None:
    assert error.message() == message


def test_field_errors_are_hashable_values() -> None:
    a = FieldError.invalid(Path("p"), {"k": [1]}, "d")
    assert a == FieldError.invalid(Path("p"), {"k": [1]}, "d")
    assert len({a, a}) == 1


# --- String validators --------------------------------------------------------------


# TestIsDNS1123Label.
@pytest.mark.parametrize(
    "value", ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "a" * 63]
)
def test_dns1123_label_valid(value: str) -> None:
    assert is_dns1123_label(value) == []


@pytest.mark.parametrize(
    "value", ["", "A", "aBc", "A-1", "-", "a-", "-a", "_", "a_b", " ", "a b", "a\n", "ä"]
)
def test_dns1123_label_invalid(value: str) -> None:
    assert is_dns1123_label(value) == [DNS1123_LABEL_ERROR]


def test_dns1123_label_dots_and_length() -> None:
    assert is_dns1123_label("a.b") == ["must not contain dots"]
    assert is_dns1123_label("a" * 64) == ["must be no more than 63 characters"]
    # Go's len counts bytes: 32 two-byte letters are 64 "characters".
    assert is_dns1123_label("é" * 32) == ["must be no more than 63 characters", DNS1123_LABEL_ERROR]


# TestIsDNS1123Subdomain.
@pytest.mark.parametrize(
    "value", ["a", "a.b", "a-1.b-2", "0.a", "1.2.3", "a" * 253, ".".join(["a" * 63] * 4)[:253]]
)
def test_dns1123_subdomain_valid(value: str) -> None:
    assert is_dns1123_subdomain(value) == []


@pytest.mark.parametrize("value", ["", "A", "a..b", ".a", "a.", "a_b", "a.-b", "a b"])
def test_dns1123_subdomain_invalid(value: str) -> None:
    assert is_dns1123_subdomain(value) == [DNS1123_SUBDOMAIN_ERROR]


def test_dns1123_subdomain_length() -> None:
    assert is_dns1123_subdomain("a" * 254) == ["must be no more than 253 characters"]


# TestIsDNS1035Label.
def test_dns1035_label() -> None:
    assert is_dns1035_label("my-name") == []
    assert is_dns1035_label("a" * 63) == []
    assert is_dns1035_label("1abc") == [DNS1035_LABEL_ERROR]
    assert is_dns1035_label("a.b") == [DNS1035_LABEL_ERROR]
    assert is_dns1035_label("a" * 64) == ["must be no more than 63 characters"]


# content.TestIsLabelKey (IsQualifiedName is IsLabelKey).
@pytest.mark.parametrize(
    "value",
    [
        "simple",
        "now-with-dashes",
        "1-starts-with-num",
        "1234",
        "simple/simple",
        "now.with.dots/simple",
        "1-num.2-num/3-num",
        "1.2.3.4/5678",
        "Uppercase_Is_OK_123",
        "example.com/Uppercase_Is_OK_123",
        "a" * 63,
        "a" * 253 + "/" + "b" * 63,
    ],
)
def test_qualified_name_valid(value: str) -> None:
    assert is_qualified_name(value) == []


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("cantendwithadash-", [NAME_PART_ERROR]),
        ("", ["name part must be non-empty", NAME_PART_ERROR]),
        ("example.com/", ["name part must be non-empty", NAME_PART_ERROR]),
        ("/simple", ["prefix part must be non-empty"]),
        ("a" * 64, ["name part must be no more than 63 bytes"]),
        ("Example.com/abc", ["prefix part " + DNS1123_SUBDOMAIN_ERROR]),
        ("a" * 254 + "/abc", ["prefix part must be no more than 253 bytes"]),
        ("only/one/slash", [MANY_SLASHES_ERROR]),
    ],
)
def test_qualified_name_invalid(value: str, errors: list[str]) -> None:
    assert is_qualified_name(value) == errors


# content.TestIsLabelValue.
def test_label_value() -> None:
    for valid in ["simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "", "a" * 63]:
        assert is_valid_label_value(valid) == []
    for invalid in ["nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "-starts", "ends.", "a b"]:
        assert is_valid_label_value(invalid) == [LABEL_VALUE_ERROR]
    assert is_valid_label_value("a" * 64) == ["must be no more than 63 bytes"]


# TestIsValidPortNum and TestIsValidPortName.
def test_port_numbers() -> None:
    assert is_valid_port_num(1) == is_valid_port_num(65535) == []
    for port in (0, -1, 65536):
        assert is_valid_port_num(port) == ["must be between 1 and 65535, inclusive"]


@pytest.mark.parametrize("value", ["telnet", "re-mail-ck", "pop3", "a", "a-1", "1-a", "a-1-b-2-c"])
def test_port_name_valid(value: str) -> None:
    assert is_valid_port_name(value) == []


@pytest.mark.parametrize(
    ("value", "errors"),
    [
        ("longerthan15characters", ["must be no more than 15 characters"]),
        ("12345", ["must contain at least one letter (a-z)"]),
        ("-begin", ["must not begin or end with a hyphen"]),
        ("end-", ["must not begin or end with a hyphen"]),
        ("two--hyphens", ["must not contain consecutive hyphens"]),
        ("whois++", ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]),
        (
            "",
            [
                "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "must contain at least one letter (a-z)",
            ],
        ),
    ],
)
def test_port_name_invalid(value: str, errors: list[str]) -> None:
    assert is_valid_port_name(value) == errors


# TestIsCIdentifier; environment variable names are IsRelaxedEnvVarName since 1.34.
def test_c_identifier_and_env_var_names() -> None:
    for valid in ["a", "AB", "_a", "a_b", "A1_b"]:
        assert is_c_identifier(valid) == []
    assert is_c_identifier("1a") == [
        "a valid C identifier must start with alphabetic character or '_', followed by a "
        "string of alphanumeric characters or '_' (e.g. 'my_name',  or 'MY_NAME',  or "
        "'MyName', regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')"
    ]
    assert is_env_var_name("1-my.env NAME!") == []
    assert is_env_var_name("") == ["environment variable name must be non-empty"]
    relaxed = (
        "a valid environment variable name must consist only of printable ASCII characters "
        "other than '='"
    )
    for invalid in ["A=B", "café", "tab\there"]:
        assert is_env_var_name(invalid) == [relaxed]


# --- ObjectMeta ---------------------------------------------------------------------


def messages(errors: list[FieldError]) -> list[str]:
    return [error.message() for error in errors]


def test_valid_meta() -> None:
    meta = {
        "name": "web-0",
        "namespace": "default",
        "generation": 3,
        "labels": {"app": "web", "example.com/tier": "", "empty": None},
        "annotations": {"Example.COM/Note": "anything at all"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": "1",
                "controller": True,
            }
        ],
        "finalizers": ["kubernetes.io/pvc-protection"],
    }
    assert validate_object_meta(meta, True, META) == []


def test_name_or_generate_name_required() -> None:
    assert messages(validate_object_meta({"namespace": "ns"}, True, META)) == [
        "metadata.name: Required value: name or generateName is required"
    ]
    assert validate_object_meta({"generateName": "web-"}, False, META) == []


def test_names_are_checked_by_the_given_validator() -> None:
    assert messages(validate_object_meta({"name": "A_B"}, False, META)) == [
        f'metadata.name: Invalid value: "A_B": {DNS1123_SUBDOMAIN_ERROR}'
    ]
    assert validate_object_meta({"name": "a.b"}, False, META) == []
    service = validate_object_meta(
        {"name": "1web"}, False, META, validate_name=name_is_dns1035_label
    )
    assert messages(service) == [f'metadata.name: Invalid value: "1web": {DNS1035_LABEL_ERROR}']
    namespace = validate_object_meta({"name": "a.b"}, False, META, validate_name=name_is_dns_label)
    assert messages(namespace) == ['metadata.name: Invalid value: "a.b": must not contain dots']


def test_generate_name_trailing_dash_quirk() -> None:
    # maskTrailingDash replaces the last two characters by "a": "a.-" is checked as "a".
    assert name_is_dns_label("a.-", True) == []
    assert name_is_dns_label("ab-", True) == []
    assert name_is_dns_label("-", True) == [DNS1123_LABEL_ERROR]
    errors = validate_object_meta({"generateName": "Web-"}, False, META)
    assert messages(errors) == [
        f'metadata.generateName: Invalid value: "Web-": {DNS1123_SUBDOMAIN_ERROR}'
    ]


def test_namespace_rules() -> None:
    assert messages(validate_object_meta({"name": "a"}, True, META)) == [
        "metadata.namespace: Required value"
    ]
    assert messages(validate_object_meta({"name": "a", "namespace": "x"}, False, META)) == [
        "metadata.namespace: Forbidden: not allowed on this type"
    ]
    assert messages(validate_object_meta({"name": "a", "namespace": "a.b"}, True, META)) == [
        'metadata.namespace: Invalid value: "a.b": must not contain dots'
    ]


def test_labels_are_reported_at_the_map() -> None:
    errors = validate_object_meta({"name": "a", "labels": {"a b": "c d"}}, False, META)
    assert messages(errors) == [
        f'metadata.labels: Invalid value: "a b": {NAME_PART_ERROR}',
        f'metadata.labels: Invalid value: "c d": {LABEL_VALUE_ERROR}',
    ]


def test_annotations() -> None:
    errors = validate_object_meta({"name": "a", "annotations": {"a/b/c": "v"}}, False, META)
    assert [e.bad_value for e in errors] == ["a/b/c"]
    # TotalAnnotationSizeLimitB: keys and values together, at most 256 KiB.
    at_limit = {"k": "v" * (256 * 1024 - 1)}
    assert validate_object_meta({"name": "a", "annotations": at_limit}, False, META) == []
    over = {"k": "é" * (128 * 1024)}  # bytes, not characters
    assert messages(validate_object_meta({"name": "a", "annotations": over}, False, META)) == [
        "metadata.annotations: Too long: may not be more than 262144 bytes"
    ]


def test_owner_references() -> None:
    refs = [
        {"apiVersion": "apps/", "controller": True},
        {"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u", "controller": True},
    ]
    assert messages(validate_object_meta({"name": "a", "ownerReferences": refs}, False, META)) == [
        'metadata.ownerReferences.apiVersion: Invalid value: "apps/": version must not be empty',
        'metadata.ownerReferences.kind: Invalid value: "": must not be empty',
        'metadata.ownerReferences.name: Invalid value: "": must not be empty',
        'metadata.ownerReferences.uid: Invalid value: "": must not be empty',
        'metadata.ownerReferences: Invalid value: {"apiVersion":"v1","controller":true,'
        '"kind":"Event","name":"e","uid":"u"}: /v1, Kind=Event is disallowed from being an owner',
        "metadata.ownerReferences: Invalid value: "
        '[{"apiVersion":"apps/","controller":true},{"apiVersion":"v1","controller":true,'
        '"kind":"Event","name":"e","uid":"u"}]: Only one reference can have Controller set to '
        'true. Found "true" in references for / and Event/e',
    ]


def test_finalizers() -> None:
    finalizers = ["orphan", "foregroundDeletion", "a/b/c"]
    errors = validate_object_meta({"name": "a", "finalizers": finalizers}, False, META)
    assert [(e.field, e.bad_value) for e in errors] == [
        ("metadata.finalizers", "a/b/c"),
        ("metadata.finalizers", finalizers),
    ]
    assert errors[1].detail == "finalizer orphan and foregroundDeletion cannot be both set"
    # A null entry is Go's zero value, the empty string, which is no qualified name.
    null = validate_object_meta({"name": "a", "finalizers": [None]}, False, META)
    assert [e.detail for e in null] == ["name part must be non-empty", NAME_PART_ERROR]


def test_generation_must_not_be_negative() -> None:
    assert messages(validate_object_meta({"name": "a", "generation": -1}, False, META)) == [
        "metadata.generation: Invalid value: -1: must be greater than or equal to 0"
    ]


def test_wrong_json_types_are_field_errors() -> None:
    meta = {
        "name": 5,
        "namespace": ["x"],
        "generation": "1",
        "labels": {"app": 1},
        "annotations": "a=b",
        "ownerReferences": [{"name": None, "controller": "yes"}, 7],
        "finalizers": [3],
    }
    assert messages(validate_object_meta(meta, True, META)) == [
        'metadata.name: Invalid value: "integer": must be of type string',
        'metadata.namespace: Invalid value: "array": must be of type string',
        'metadata.generation: Invalid value: "string": must be of type integer',
        'metadata.labels[app]: Invalid value: "integer": must be of type string',
        'metadata.annotations: Invalid value: "string": must be of type object',
        'metadata.ownerReferences[0].controller: Invalid value: "string": must be of type boolean',
        'metadata.ownerReferences[1]: Invalid value: "integer": must be of type object',
        'metadata.finalizers[0]: Invalid value: "integer": must be of type string',
    ]
    assert messages(validate_object_meta([], True, META)) == [
        'metadata: Invalid value: "array": must be of type object'
    ]


# --- Quantities and resource requirements --------------------------------------------


def test_validate_quantity() -> None:
    path = Path("q")
    assert validate_quantity("1.5Gi", path) == validate_quantity(0.5, path) == []
    assert validate_quantity(None, path) == []  # Go decodes null as a zero quantity
    # ValidateNonnegativeQuantity shows the canonical form.
    assert messages(validate_quantity("-0.1", path)) == [
        'q: Invalid value: "-100m": must be greater than or equal to 0'
    ]
    assert validate_quantity("-1", path, non_negative=False) == []
    assert messages(validate_quantity("1.5X", path)) == [
        'q: Invalid value: "1.5X": quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    ]
    assert messages(validate_quantity(True, path)) == [
        'q: Invalid value: "boolean": must be of type string or number'
    ]


def test_requests_must_not_exceed_limits() -> None:
    resources = {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": 1.5, "memory": "1Gi"}}
    assert messages(validate_resource_requirements(resources, RESOURCES)) == [
        'spec.containers[0].resources.requests: Invalid value: "1500m": '
        "must be less than or equal to cpu limit of 1"
    ]
    assert validate_resource_requirements({"requests": {"cpu": "100m"}}, RESOURCES) == []


def test_non_overcommitable_resources() -> None:
    resources = {
        "limits": {"example.com/gpu": 1},
        "requests": {"example.com/gpu": "0", "hugepages-2Mi": "2Mi", "kubernetes.io/x": 1},
    }
    assert messages(validate_resource_requirements(resources, RESOURCES)) == [
        'spec.containers[0].resources.requests: Invalid value: "0": '
        "must be equal to example.com/gpu limit of 1",
        "spec.containers[0].resources.limits: Required value: "
        "Limit must be set for non overcommitable resources",
    ]


def test_resource_list_entries() -> None:
    resources = {"limits": {"cpu": "-1", "a/b/c": "1", "memory": "lots"}, "requests": []}
    assert messages(validate_resource_requirements(resources, RESOURCES)) == [
        'spec.containers[0].resources.limits[cpu]: Invalid value: "-1": '
        "must be greater than or equal to 0",
        'spec.containers[0].resources.limits[a/b/c]: Invalid value: "a/b/c": ' + MANY_SLASHES_ERROR,
        'spec.containers[0].resources.limits[memory]: Invalid value: "lots": quantities must '
        "match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        'spec.containers[0].resources.requests: Invalid value: "array": must be of type object',
    ]


# --- Properties: arbitrary JSON never makes a validator raise ------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
META_KEYS = ["name", "generateName", "namespace", "generation", "labels", "annotations"]
META_KEYS += ["ownerReferences", "finalizers"]
OWNER_KEYS = ["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"]
NAMES = st.sampled_from(["a", "web-0", "A_B", "", "x.y", "-", "a-", "orphan", "v1", "Event"])
# JSON that looks like what the validators expect, so they get past their type checks.
PLAUSIBLE = st.recursive(
    JSON | NAMES | st.sampled_from(["1", "100m", "1.5Gi", "-1", "2Mi"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(NAMES | st.sampled_from(OWNER_KEYS), children, max_size=4)
    ),
    max_leaves=20,
)


def check(errors: list[FieldError], root: str) -> None:
    assert isinstance(errors, list)
    for error in errors:
        assert isinstance(error, FieldError)
        assert error.field.startswith(root)
        assert error.message().startswith(f"{error.field}: ")


@given(JSON | st.dictionaries(st.sampled_from(META_KEYS), PLAUSIBLE), st.booleans())
def test_object_meta_never_raises(meta: object, namespaced: bool) -> None:
    check(validate_object_meta(meta, namespaced, META), "metadata")


@given(
    JSON
    | st.fixed_dictionaries(
        {},
        optional={
            "limits": st.dictionaries(NAMES | st.sampled_from(["cpu", "x.io/y"]), PLAUSIBLE),
            "requests": st.dictionaries(NAMES | st.sampled_from(["cpu", "x.io/y"]), PLAUSIBLE),
        },
    )
)
def test_resource_requirements_never_raise(resources: object) -> None:
    check(validate_resource_requirements(resources, RESOURCES), str(RESOURCES))


@given(PLAUSIBLE, st.booleans())
def test_quantity_validation_never_raises(value: object, non_negative: bool) -> None:
    check(validate_quantity(value, Path("q"), non_negative=non_negative), "q")


@given(st.text())
def test_string_validators_never_raise(value: str) -> None:
    for validator in (
        is_dns1123_label,
        is_dns1123_subdomain,
        is_dns1035_label,
        is_qualified_name,
        is_valid_label_value,
        is_valid_port_name,
        is_c_identifier,
        is_env_var_name,
    ):
        assert all(isinstance(msg, str) and msg for msg in validator(value))


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True))
def test_every_dns1123_label_is_a_subdomain_label_and_qualified_name(value: str) -> None:
    assert is_dns1123_label(value) == []
    assert is_dns1123_subdomain(value) == []
    assert is_qualified_name(value) == []
    assert is_valid_label_value(value) == []


def test_rbac_names_are_path_segments_and_may_hold_colons():
    """Kubernetes' ValidateRBACName: ``system:coredns`` is a valid ClusterRole name; a
    slash, a percent sign, ``.`` and ``..`` are not."""
    from actorkube.apiserver._validation import name_is_path_segment

    assert name_is_path_segment("system:coredns", False) == []
    assert name_is_path_segment("a/b%c", False) == ["may not contain '/'", "may not contain '%'"]
    assert name_is_path_segment("..", False) == ["may not be '..'"]
