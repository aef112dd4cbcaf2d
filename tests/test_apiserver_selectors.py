"""Label and field selectors against Kubernetes' documented and tested behaviour.

Citations: "selector_test.go" is k8s.io/apimachinery/pkg/labels/selector_test.go,
"fields_test" is .../pkg/fields/selector_test.go, "labels doc" is the "Labels and
Selectors" concept page on kubernetes.io, "field doc" the "Field Selectors" page,
"nodeaffinity" is k8s.io/component-helpers/scheduling/corev1/nodeaffinity.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.apiserver._selectors import (
    FieldRequirement,
    FieldSelector,
    InvalidSelector,
    Operator,
    Requirement,
    Selector,
    check_fields,
    node_selector_term_matches,
    validate_node_selector_term,
)

# --- label selectors: parsing and the canonical string ------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # selector_test.go TestSelectorParse: good strings print back without spaces.
        ("x=a,y=b,z=c", "x=a,y=b,z=c"),
        ("", ""),
        ("x!=a,y=b", "x!=a,y=b"),
        ("x=", "x="),
        ("x= ", "x="),
        ("x=,z= ", "x=,z="),
        ("x= ,z= ", "x=,z="),
        ("!x", "!x"),
        ("x>1", "x>1"),
        ("x>1,z<5", "x>1,z<5"),
        # TestDeterministicParse: requirements are sorted by key.
        ("x=a,a=x", "a=x,x=a"),
        # TestToString: == is kept as written; set values are sorted.
        ("y==jkl,x=abc,z!=a,z", "x=abc,y==jkl,z!=a,z"),
        ("x in (def,abc),y notin (jkl),z", "x in (abc,def),y notin (jkl),z"),
        # TestSetSelectorParser: whitespace is space, tab, CR or LF.
        ("\rx", "x"),
        ("foo  in\t (abc)", "foo in (abc)"),
        ("x notin\n (abc)", "x notin (abc)"),
        # ... an empty slot in a set is the empty value; "()" is {""}.
        ("x in (abc,)", "x in (,abc)"),
        ("x in ()", "x in ()"),
        ("x notin ( )", "x notin ()"),
        ("x notin (, a)", "x notin (,a)"),
        ("x notin (abc,,def),bar,z in (),w", "bar,w,x notin (,abc,def),z in ()"),
        # ... "in" and "notin" are identifiers outside the operator position.
        ("a in (x,y,notin, z,in)", "a in (in,notin,x,y,z)"),
        ("notin=in", "notin=in"),
        ("in in (in)", "in in (in)"),
        # ... keys may carry a DNS-subdomain prefix.
        ("this-is-a-dns.domain.com/key-with-dash", "this-is-a-dns.domain.com/key-with-dash"),
        (
            "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
            "0.1.2.domain/99 notin (10.10.100.1,tick.tack.clock)",
        ),
        # Current parser: a bare key after a comma is an exists requirement.
        ("x,y", "x,y"),
        ("a ", "a"),
        # Duplicate set values collapse (the parser collects a set).
        ("a in (x,x,y)", "a in (x,y)"),
    ],
)
def test_label_selector_parses_to_canonical_string(text: str, canonical: str) -> None:
    assert str(Selector.parse(text)) == canonical


def test_label_selector_parse_builds_sorted_requirements() -> None:
    # TestSetSelectorParser: "x,y in (a)" gives y In {a} and x Exists, sorted by key.
    selector = Selector.parse("y in (a),x")
    assert selector.requirements == (
        Requirement("x", Operator.EXISTS),
        Requirement("y", Operator.IN, ("a",)),
    )


_NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', "
    "'_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  "
    "or 'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Messages quoted in Kubernetes' own tests and in kubectl output:
        # networkpolicy validation test ("invalid pod separator").
        ("app: nginx", f'unable to parse requirement: <nil>: Invalid value: "app:": {_NAME_PART}'),
        # authorizer attributes tests.
        ("&foo", f'unable to parse requirement: <nil>: Invalid value: "&foo": {_NAME_PART}'),
        ("*bar", f'unable to parse requirement: <nil>: Invalid value: "*bar": {_NAME_PART}'),
        # selector_test.go bad strings, with the parser's own messages.
        (
            "x=a||y=b",
            f'unable to parse requirement: values[0][x]: Invalid value: "a||y": {_LABEL_VALUE}',
        ),
        ("x==a==b", "found '==', expected: ',' or 'end of string'"),
        ("!x=a", "found '=', expected: ',' or 'end of string'"),
        (
            "x<a",
            'unable to parse requirement: values[0]: Invalid value: "a": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (",x,y", "found ',', expected: !, identifier, or 'end of string'"),
        (
            "x nott in (y)",
            "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt",
        ),
        ("a in (xyz),", "found '', expected: identifier after ','"),
        ("a in (xyz)b notin ()", "found 'b', expected: ',' or 'end of string'"),
        ("a in (xyz abc)", "unable to parse requirement: found 'abc', expected: ',' or ')'"),
        (
            "a notin(",
            "unable to parse requirement: found '', expected: ',', ')' or identifier",
        ),
        (
            "a (",
            "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
        ),
        ("(", "found '(', expected: !, identifier, or 'end of string'"),
        ("x in", "unable to parse requirement: found '' expected: '('"),
        ("a in (x,", "unable to parse requirement: found '', expected: ',', or identifier"),
        ("a=(", "unable to parse requirement: found '(', expected: identifier"),
        ("!!a", "unable to parse requirement: found '!', expected: identifier"),
        (
            "a=" + "v" * 64,
            f'unable to parse requirement: values[0][a]: Invalid value: "{"v" * 64}": '
            "must be no more than 63 bytes",
        ),
        (
            "k" * 64,
            f'unable to parse requirement: <nil>: Invalid value: "{"k" * 64}": '
            "name part must be no more than 63 bytes",
        ),
        (
            "/a",
            'unable to parse requirement: <nil>: Invalid value: "/a": '
            "prefix part must be non-empty",
        ),
    ],
)
def test_label_selector_parse_errors_carry_kubernetes_messages(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector) as raised:
        Selector.parse(text)
    assert str(raised.value) == message


def test_several_problems_in_one_requirement_are_aggregated() -> None:
    # NewRequirement returns an aggregate: "[first, second]".
    with pytest.raises(InvalidSelector, match=r"^unable to parse requirement: \[values\[0\]: "):
        Selector.parse("x>a/b")


def test_prefix_must_be_a_lowercase_dns_subdomain() -> None:
    # Seen in kubectl output: "app.kubernetes_io/name" has an underscore in the prefix.
    with pytest.raises(InvalidSelector, match="prefix part a lowercase RFC 1123 subdomain"):
        Selector.parse("app.kubernetes_io/name=vault")


def test_invalid_selector_is_a_value_error() -> None:
    assert issubclass(InvalidSelector, ValueError)


# --- label selectors: matching -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "selected"),
    [
        # selector_test.go TestSelectorMatches.
        ("", {"x": "y"}, True),
        ("x=y", {"x": "y"}, True),
        ("x=y,z=w", {"x": "y", "z": "w"}, True),
        ("x!=y,z!=w", {"x": "z", "z": "a"}, True),
        ("notin=in", {"notin": "in"}, True),
        ("x", {"x": "z"}, True),
        ("!x", {"y": "z"}, True),
        ("x>1", {"x": "2"}, True),
        ("x<1", {"x": "0"}, True),
        ("x=z", {}, False),
        ("x=y", {"x": "z"}, False),
        ("x=y,z=w", {"x": "w", "z": "w"}, False),
        ("x!=y,z!=w", {"x": "z", "z": "w"}, False),
        ("x", {"y": "z"}, False),
        ("!x", {"x": "z"}, False),
        ("x>1", {"x": "0"}, False),
        ("x<1", {"x": "2"}, False),
        ("foo=bar,foobar=bar,baz=blah", {"foo": "bar", "baz": "blah"}, False),
        # labels doc: "environment!=production" also selects objects without the key,
        # and "tier notin (frontend,backend)" selects those without a tier label.
        ("environment!=production", {}, True),
        ("tier notin (frontend,backend)", {"app": "web"}, True),
        ("tier notin (frontend,backend)", {"tier": "frontend"}, False),
        ("environment in (production, qa)", {"environment": "qa"}, True),
        ("environment in (production, qa)", {}, False),
        # TestRequirementSelectorMatching: "x in ()" needs x == "".
        ("x notin (),y", {"y": ""}, True),
        ("x in ()", {"y": "baz"}, False),
        ("x in ()", {"x": ""}, True),
        ("x=", {"x": ""}, True),
        ("x=", {}, False),
        # ... gt/lt need a present, integer label.
        ("z>1", {"z": "2"}, True),
        ("z>1", {"z": "v2"}, False),
        ("z>1", {}, False),
        ("z<10", {"z": "9"}, True),
        ("z<10", {"z": "010"}, False),
        ("z>1", {"z": str(2**63)}, False),
    ],
)
def test_label_selector_matches(text: str, labels: dict[str, str], selected: bool) -> None:
    assert Selector.parse(text).matches(labels) is selected


def test_empty_selector_is_empty_and_matches_everything() -> None:
    # TestEverything / TestSetIsEmpty.
    assert Selector().empty
    assert Selector.parse("").empty
    assert not Selector.parse("x").empty
    assert Selector().matches({"x": "y"})


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("a=x", "a", "x"),
        ("a==x", "a", "x"),
        ("a in (x)", "a", "x"),
        ("a in (x,y)", "a", None),
        ("a!=x", "a", None),
        ("b=y", "a", None),
        # Only the first requirement on the key counts, as in RequiresExactMatch.
        ("a!=y,a=x", "a", None),
        ("a=x,b=y", "b", "y"),
    ],
)
def test_requires_exact_match(text: str, key: str, value: str | None) -> None:
    assert Selector.parse(text).requires_exact_match(key) == value


def test_selector_from_set_is_equality_on_every_entry() -> None:
    # TestSetMatches; SelectorFromSet does not validate.
    selector = Selector.from_set({"foo": "bar", "baz": "blah"})
    assert str(selector) == "baz=blah,foo=bar"
    assert selector.matches({"foo": "bar", "baz": "blah", "x": "y"})
    assert not selector.matches({"foo": "bar"})
    assert Selector.from_set({}).empty


# --- metav1.LabelSelector ------------------------------------------------------------------


def test_nil_label_selector_selects_nothing_and_empty_one_everything() -> None:
    nothing = Selector.from_label_selector(None)
    assert not nothing.matches({})
    assert not nothing.empty
    assert str(nothing) == ""
    everything = Selector.from_label_selector({})
    assert everything.empty
    assert everything.matches({"a": "b"})
    assert Selector.from_label_selector({"matchLabels": {}, "matchExpressions": []}).empty


def test_label_selector_struct_becomes_sorted_requirements() -> None:
    selector = Selector.from_label_selector(
        {
            "matchLabels": {"tier": "web", "app": "shop"},
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b", "a"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "gpu", "operator": "Exists", "values": []},
            ],
        }
    )
    assert str(selector) == "app=shop,!canary,env notin (dev),gpu,tier=web,zone in (a,b)"
    assert selector.matches({"app": "shop", "tier": "web", "zone": "a", "gpu": "1"})
    assert not selector.matches({"app": "shop", "tier": "web", "zone": "a", "canary": "y"})
    assert selector.requires_exact_match("app") == "shop"


@pytest.mark.parametrize(
    ("label_selector", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
            "values: Invalid value: []string{}: "
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
            "values: Invalid value: []string{}: "
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'values: Invalid value: []string{"x"}: '
            "values set must be empty for exists and does not exist",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "DoesNotExist", "values": [""]}]},
            'values: Invalid value: []string{""}: '
            "values set must be empty for exists and does not exist",
        ),
        # Gt and Lt exist for node affinity only.
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
            '"Gt" is not a valid pod selector operator',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "in", "values": ["x"]}]},
            '"in" is not a valid pod selector operator',
        ),
        ({"matchLabels": {"a b": "x"}}, f'key: Invalid value: "a b": {_NAME_PART}'),
        ({"matchLabels": {"a": "x y"}}, f'values[0][a]: Invalid value: "x y": {_LABEL_VALUE}'),
    ],
)
def test_label_selector_struct_errors(label_selector: dict, message: str) -> None:
    with pytest.raises(InvalidSelector) as raised:
        Selector.from_label_selector(label_selector)
    assert str(raised.value) == message


# --- field selectors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        (",,", ""),
        ("metadata.name=foo", "metadata.name=foo"),
        # "==" is the same as "=" and prints as "=".
        ("status.phase==Running", "status.phase=Running"),
        (
            "status.phase!=Running,spec.restartPolicy=Always",
            "spec.restartPolicy=Always,status.phase!=Running",
        ),
        ("spec.nodeName=", "spec.nodeName="),
        # fields_test: \, \= and \\ are the only escapes, kept when printed.
        (r"x=a\,b,y=c\=d\\", r"x=a\,b,y=c\=d\\"),
        # Whitespace is not trimmed: it belongs to the field and the value.
        ("a = b", "a = b"),
        # A '!' in a value needs no escape.
        ("a=b!", "a=b!"),
    ],
)
def test_field_selector_parses_to_string(text: str, canonical: str) -> None:
    assert str(FieldSelector.parse(text)) == canonical


def test_field_selector_unescapes_values() -> None:
    selector = FieldSelector.parse(r"x=a\,b,y!=c\=d\\")
    assert selector.requirements == (
        FieldRequirement("x", Operator.EQUALS, "a,b"),
        FieldRequirement("y", Operator.NOT_EQUALS, "c=d\\"),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        # fields_test: an unescaped "=" in a value; Go prints the rune as a number.
        ("a=b=c", "invalid field selector: unescaped character in value: 61"),
        ("a=x!=y", "invalid field selector: unescaped character in value: 61"),
        (r"a=\!", r"invalid field selector: invalid escape sequence: \!"),
        (r"a=\n", r"invalid field selector: invalid escape sequence: \n"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
        # The field name takes no escapes: "a\" is the field, "b=c" the bad value.
        (r"a\=b=c", "invalid field selector: unescaped character in value: 61"),
    ],
)
def test_field_selector_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidSelector) as raised:
        FieldSelector.parse(text)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("text", "fields", "selected"),
    [
        ("", {"metadata.name": "a"}, True),
        ("metadata.name=a", {"metadata.name": "a"}, True),
        ("metadata.name=a", {"metadata.name": "b"}, False),
        ("metadata.name!=a", {"metadata.name": "b"}, True),
        # field doc: "status.phase!=Running,spec.restartPolicy=Always" chains with AND.
        (
            "status.phase!=Running,spec.restartPolicy=Always",
            {"status.phase": "Pending", "spec.restartPolicy": "Always"},
            True,
        ),
        (
            "status.phase!=Running,spec.restartPolicy=Always",
            {"status.phase": "Running", "spec.restartPolicy": "Always"},
            False,
        ),
        # A missing field reads as "": "spec.nodeName=" selects unscheduled pods.
        ("spec.nodeName=", {}, True),
        ("spec.nodeName=", {"spec.nodeName": "n1"}, False),
        ("spec.nodeName!=n1", {}, True),
        ("x=a,y=b", {"x": "a"}, False),
        (r"x=a\,b", {"x": "a,b"}, True),
    ],
)
def test_field_selector_matches(text: str, fields: dict[str, str], selected: bool) -> None:
    assert FieldSelector.parse(text).matches(fields) is selected


def test_field_selector_requires_exact_match_and_empty() -> None:
    selector = FieldSelector.parse("spec.nodeName==n1,status.phase!=Failed")
    assert selector.requires_exact_match("spec.nodeName") == "n1"
    assert selector.requires_exact_match("status.phase") is None
    assert selector.requires_exact_match("metadata.name") is None
    assert not selector.empty
    assert FieldSelector.parse("").empty


def test_check_fields_names_the_unsupported_field() -> None:
    pod_fields = {"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"}
    check_fields(FieldSelector.parse("spec.nodeName=n1,status.phase=Running"), pod_fields)
    with pytest.raises(InvalidSelector, match=r"^field label not supported: spec\.foo$"):
        check_fields(FieldSelector.parse("metadata.name=a,spec.foo=b"), pod_fields)


# --- node selector terms -------------------------------------------------------------------

_TERM = {
    "matchExpressions": [
        {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]},
        {"key": "cpus", "operator": "Gt", "values": ["4"]},
        {"key": "spot", "operator": "DoesNotExist"},
    ],
    "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n9"]}],
}


@pytest.mark.parametrize(
    ("term", "labels", "name", "selected"),
    [
        (_TERM, {"topology.kubernetes.io/zone": "a", "cpus": "8"}, "n1", True),
        (_TERM, {"topology.kubernetes.io/zone": "a", "cpus": "8"}, "n9", False),
        (_TERM, {"topology.kubernetes.io/zone": "c", "cpus": "8"}, "n1", False),
        (_TERM, {"topology.kubernetes.io/zone": "a", "cpus": "4"}, "n1", False),
        (_TERM, {"topology.kubernetes.io/zone": "a", "cpus": "8", "spot": ""}, "n1", False),
        # nodeaffinity: an empty term matches no node.
        ({}, {"a": "b"}, "n1", False),
        ({"matchExpressions": [], "matchFields": []}, {}, "n1", False),
        # matchFields alone, on metadata.name.
        (
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            {},
            "n1",
            True,
        ),
        (
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            {},
            "n2",
            False,
        ),
        # ... which a node without a name skips.
        (
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
            {},
            "",
            True,
        ),
        # Lt compares integers; a non-integer label does not match.
        (
            {"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["3"]}]},
            {"gen": "2"},
            "n",
            True,
        ),
        (
            {"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["3"]}]},
            {"gen": "x"},
            "n",
            False,
        ),
        # A term that fails to parse matches nothing.
        (
            {"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["x"]}]},
            {"gen": "9"},
            "n",
            False,
        ),
        ({"matchExpressions": [{"key": "a", "operator": "Within"}]}, {"a": ""}, "n", False),
    ],
)
def test_node_selector_term_matches(
    term: dict, labels: dict[str, str], name: str, selected: bool
) -> None:
    assert node_selector_term_matches(term, labels, name) is selected


def test_valid_node_selector_terms_pass_validation() -> None:
    validate_node_selector_term(_TERM)
    validate_node_selector_term({})


@pytest.mark.parametrize(
    ("term", "message"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Within"}]},
            'matchExpressions[0].operator: Unsupported value: "Within": supported values: '
            '"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"',
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "In"}]},
            "matchExpressions[0].values: Invalid value: []string{}: "
            "for 'in', 'notin' operators, values set can't be empty",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
            'matchExpressions[0].values: Invalid value: []string{"x"}: '
            "values set must be empty for exists and does not exist",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Lt", "values": ["1", "2"]}]},
            'matchExpressions[0].values: Invalid value: []string{"1", "2"}: '
            "for 'Gt', 'Lt' operators, exactly one value is required",
        ),
        (
            {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["x"]}]},
            'matchExpressions[0].values[0]: Invalid value: "x": '
            "for 'Gt', 'Lt' operators, the value must be an integer",
        ),
        (
            {"matchFields": [{"key": "metadata.name", "operator": "Exists"}]},
            'matchFields[0].operator: Unsupported value: "Exists": supported values: "In", "NotIn"',
        ),
        (
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]},
            'matchFields[0].values: Invalid value: []string{"a", "b"}: must have one element',
        ),
        (
            {"matchFields": [{"key": "spec.unschedulable", "operator": "In", "values": ["a"]}]},
            'matchFields[0].key: Invalid value: "spec.unschedulable": '
            "not a valid field selector key",
        ),
    ],
)
def test_node_selector_term_validation_errors(term: dict, message: str) -> None:
    with pytest.raises(InvalidSelector) as raised:
        validate_node_selector_term(term)
    assert str(raised.value) == message


def test_node_selector_term_validation_lists_every_problem() -> None:
    term = {
        "matchExpressions": [{"key": "a", "operator": "Within"}],
        "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["Not_A_Name"]}],
    }
    with pytest.raises(InvalidSelector) as raised:
        validate_node_selector_term(term)
    message = str(raised.value)
    assert message.startswith("[matchExpressions[0].operator: Unsupported value")
    assert 'matchFields[0].values[0]: Invalid value: "Not_A_Name": a lowercase RFC 1123' in message


# --- properties ----------------------------------------------------------------------------

_KEYS = ["a", "b", "in", "notin", "example.com/c"]
_VALUES = ["", "x", "y", "in", "1", "10", "007"]

_label_maps = st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES), max_size=5)


def _model(key: str, form: str, values: list[str], labels: dict[str, str]) -> bool:
    """What the labels doc and selector_test.go say each requirement means."""
    present = key in labels
    value = labels.get(key)
    if form in ("exists", "!"):
        return present == (form == "exists")
    if form in ("=", "==", "in"):
        return present and value in values
    if form in ("!=", "notin"):
        return not present or value not in values
    if not present or not value.isdigit():
        return False
    return int(value) > int(values[0]) if form == ">" else int(value) < int(values[0])


@st.composite
def _requirement_texts(draw: st.DrawFn) -> tuple[str, tuple[str, str, list[str]]]:
    """One requirement in any of its spellings, with stray whitespace, and its meaning."""
    key = draw(st.sampled_from(_KEYS))
    space = draw(st.sampled_from(["", " ", "\t", " \n "]))
    form = draw(st.sampled_from(["exists", "!", "=", "==", "!=", "in", "notin", ">", "<"]))
    if form == "exists":
        return f"{space}{key}{space}", (key, form, [])
    if form == "!":
        return f"{space}!{space}{key}", (key, form, [])
    if form in ("in", "notin"):
        values = draw(st.lists(st.sampled_from(_VALUES), min_size=1, max_size=3))
        return f"{key} {form}{space}({space}{f'{space},'.join(values)})", (key, form, values)
    value = draw(st.sampled_from(["0", "1", "10", "007"] if form in "<>" else _VALUES))
    return f"{key}{space}{form}{space}{value}", (key, form, [value])


_requirement_lists = st.lists(_requirement_texts(), max_size=4)


def _joined(requirements: list[tuple[str, tuple[str, str, list[str]]]]) -> str:
    return ",".join(text for text, _meaning in requirements)


@given(_requirement_lists, st.lists(_label_maps, min_size=1, max_size=5))
def test_parse_of_str_is_the_same_selector(
    requirements: list[tuple[str, tuple[str, str, list[str]]]],
    label_maps: list[dict[str, str]],
) -> None:
    selector = Selector.parse(_joined(requirements))
    again = Selector.parse(str(selector))
    assert again == selector
    for labels in label_maps:
        assert again.matches(labels) == selector.matches(labels)


@given(_requirement_lists, _label_maps)
def test_a_selector_is_the_and_of_its_requirements(
    requirements: list[tuple[str, tuple[str, str, list[str]]]], labels: dict[str, str]
) -> None:
    expected = all(_model(*meaning, labels) for _text, meaning in requirements)
    assert Selector.parse(_joined(requirements)).matches(labels) == expected


_api_expressions = st.fixed_dictionaries(
    {
        "key": st.sampled_from(_KEYS),
        "operator": st.sampled_from(["In", "NotIn"]),
        "values": st.lists(st.sampled_from(_VALUES), min_size=1, max_size=3),
    }
) | st.fixed_dictionaries(
    {"key": st.sampled_from(_KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}
)
_api_selectors = st.fixed_dictionaries(
    {},
    optional={
        "matchLabels": st.dictionaries(st.sampled_from(_KEYS), st.sampled_from(_VALUES)),
        "matchExpressions": st.lists(_api_expressions, max_size=4),
    },
)


@given(_api_selectors, st.lists(_label_maps, min_size=1, max_size=5))
def test_label_selector_struct_round_trips_through_its_string(
    label_selector: dict, label_maps: list[dict[str, str]]
) -> None:
    selector = Selector.from_label_selector(label_selector)
    again = Selector.parse(str(selector))
    for labels in label_maps:
        assert again.matches(labels) == selector.matches(labels)


_selector_alphabet = st.sampled_from(
    [*"ab/.-_=!(),<> \t\r\n\x00", "in", "notin", " in ", "==", "!=", "é", "1"]
)


@given(st.text() | st.lists(_selector_alphabet, max_size=20).map("".join))
def test_label_parser_raises_only_invalid_selector(text: str) -> None:
    try:
        selector = Selector.parse(text)
    except InvalidSelector:
        return
    assert Selector.parse(str(selector)) == selector


_field_alphabet = st.sampled_from([*"ab.=!,\\ ", "==", "!=", "\\,", "\\=", "\\\\"])
_field_texts = st.text() | st.lists(_field_alphabet, max_size=20).map("".join)


@given(_field_texts)
def test_field_parser_raises_only_invalid_selector(text: str) -> None:
    try:
        FieldSelector.parse(text)
    except InvalidSelector:
        return


@given(
    _field_texts,
    st.dictionaries(st.sampled_from(["a", "b", "a.b", " a"]), st.text(",=\\!ab", max_size=4)),
)
def test_field_selector_round_trips_through_its_string(text: str, fields: dict[str, str]) -> None:
    try:
        selector = FieldSelector.parse(text)
    except InvalidSelector:
        return
    again = FieldSelector.parse(str(selector))
    assert sorted(again.requirements, key=str) == sorted(selector.requirements, key=str)
    assert again.matches(fields) == selector.matches(fields)


@given(
    st.dictionaries(
        st.sampled_from(["matchExpressions", "matchFields"]),
        st.lists(
            st.fixed_dictionaries(
                {
                    "key": st.sampled_from(["a", "metadata.name", "a b"]),
                    "operator": st.sampled_from(
                        ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt", "X"]
                    ),
                },
                optional={"values": st.lists(st.sampled_from(["", "1", "n1", "x y"]), max_size=2)},
            ),
            max_size=3,
        ),
    ),
    _label_maps,
    st.sampled_from(["", "n1", "n2"]),
)
def test_an_invalid_node_term_never_matches(term: dict, labels: dict[str, str], name: str) -> None:
    try:
        validate_node_selector_term(term)
    except InvalidSelector:
        assert not node_selector_term_matches(term, labels, name)
