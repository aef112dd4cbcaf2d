"""The API's timestamps: metav1.Time and metav1.MicroTime texts and their parsing."""

from __future__ import annotations

import datetime

from hypothesis import example, given
from hypothesis import strategies as st

from actorkube.apiserver._meta import parse_rfc3339, rfc3339, rfc3339_micro


def _datetime_micro(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@given(st.floats(min_value=0, max_value=4e9) | st.integers(0, 4 * 10**15).map(lambda n: n / 1e6))
@example(1.9999995)  # rounds half to even into the next second
@example(1700000000.9999996)
@example(0.0)
def test_micro_time_is_what_datetime_makes_of_the_timestamp(seconds: float) -> None:
    text = rfc3339_micro(seconds)
    assert text == _datetime_micro(seconds)
    assert abs(parse_rfc3339(text) - seconds) <= 1e-6 + 1e-9 * seconds


def test_time_is_whole_seconds() -> None:
    assert rfc3339(1700000000.987) == "2023-11-14T22:13:20Z"
    assert rfc3339_micro(1700000000.987) == "2023-11-14T22:13:20.987000Z"
