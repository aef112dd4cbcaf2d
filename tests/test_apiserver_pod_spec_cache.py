"""Pod specs found valid are remembered by their JSON: a remembered answer must be the
one validation gives, whatever was validated before."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actorkube.apiserver import _builtin as builtin
from actorkube.apiserver._builtin import SPEC, _pod_spec_errors, validate_pod_spec


def spec(**fields):
    container = {"name": "c", "image": "pause:3.10", "ports": [{"containerPort": 80}]}
    return {"containers": [container], **fields}


@pytest.fixture(autouse=True)
def fresh():
    builtin._VALID_POD_SPECS.clear()
    yield
    builtin._VALID_POD_SPECS.clear()


def test_a_valid_spec_is_remembered_and_an_invalid_one_never():
    assert _pod_spec_errors(spec()) == []
    assert len(builtin._VALID_POD_SPECS) == 1
    assert _pod_spec_errors(spec()) == []
    bad = spec(restartPolicy="Sometimes")
    for _ in range(2):
        assert _pod_spec_errors(bad) == validate_pod_spec(bad, SPEC) != []
    assert len(builtin._VALID_POD_SPECS) == 1


def test_values_json_tells_apart_are_told_apart():
    assert _pod_spec_errors(spec(terminationGracePeriodSeconds=30)) == []
    for other in (spec(terminationGracePeriodSeconds=-30),
                  spec(terminationGracePeriodSeconds="30")):  # fmt: skip
        assert _pod_spec_errors(other) == validate_pod_spec(other, SPEC) != []


def test_a_spec_with_nulls_is_not_remembered():
    # (orjson writes NaN as null too: a null in the JSON may stand for another value.)
    assert _pod_spec_errors(spec(nodeName=None)) == []
    assert _pod_spec_errors(spec(terminationGracePeriodSeconds=float("nan"))) != []
    assert not builtin._VALID_POD_SPECS


def test_what_orjson_refuses_is_validated_every_time():
    huge = spec(terminationGracePeriodSeconds=2**70)
    assert _pod_spec_errors(huge) == validate_pod_spec(huge, SPEC)
    assert not builtin._VALID_POD_SPECS


NAMES = st.sampled_from(["Always", "Never", "ClusterFirst", "pause", "n-1"])
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**40), st.text(max_size=4), NAMES)
CONTAINERS = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["a", "b", "A"]),
                                             "image": st.sampled_from(["p:1", "", "x"])},
                                            optional={"ports": st.lists(st.fixed_dictionaries(
                                                {"containerPort": VALUES}), max_size=2)}),
                      max_size=2)  # fmt: skip
SPECS = st.fixed_dictionaries({"containers": CONTAINERS},
                              optional={"restartPolicy": VALUES, "dnsPolicy": VALUES,
                                        "terminationGracePeriodSeconds": VALUES,
                                        "nodeName": VALUES})  # fmt: skip


@settings(max_examples=300)
@given(st.lists(SPECS, min_size=1, max_size=6))
def test_remembered_answers_equal_fresh_ones(specs):
    builtin._VALID_POD_SPECS.clear()
    for s in specs * 2:
        assert _pod_spec_errors(s) == validate_pod_spec(s, SPEC)
