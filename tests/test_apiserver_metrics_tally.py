"""The API server's request metrics, tallied in plain Python and written into
prometheus_client's children when scraped, expose exactly what the library's own
``inc``/``observe`` on every request would: for random requests (verbs, groups,
resources, scopes, codes, latencies: bucket bounds, negatives, -0.0, NaN, infinity) and
scrapes at random points, both expositions are the same text, ``_created`` included."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as prometheus_metrics

from actorkube.apiserver import ApiRequest, _metrics
from actorkube.apiserver._metrics import ApiMetrics


class _Plain:
    """The metrics as they were: the library's objects, observed on every request."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        plain = ApiMetrics()  # for the same help texts
        self.requests = Counter("apiserver_request", plain.requests._documentation,
                                [*_metrics._LABELS, "code"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("apiserver_request_duration_seconds",
                                 plain.latency._documentation, _metrics._LABELS,
                                 buckets=_metrics._BUCKETS, registry=self.registry)  # fmt: skip
        self.objects = Gauge("apiserver_storage_objects", plain.objects._documentation,
                             ["resource"], registry=self.registry)  # fmt: skip

    def observe(self, req: ApiRequest, code: int, seconds: float) -> None:
        scope = "resource" if req.name else "namespace" if req.namespace else "cluster"
        labels = (_metrics._VERBS.get(req.verb, req.verb.upper()), "", req.group, req.version,
                  req.resource, req.subresource, scope, "apiserver")  # fmt: skip
        self.requests.labels(*labels, str(code)).inc()
        self.latency.labels(*labels).observe(max(seconds, 0.0))

    def text(self, stored) -> str:
        for resource, count in stored:
            self.objects.labels(resource).set(count)
        return generate_latest(self.registry).decode()


class _Clock:
    """prometheus_client's ``time`` module, with a time the test sets (for ``_created``)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(prometheus_metrics, "time", fake)
    return fake


SECONDS = st.one_of(
    st.sampled_from([*_metrics._BUCKETS, 0.0, -0.0, -1.0, 0, 3, math.inf, math.nan, 1e-9]),
    st.floats(min_value=-1.0, max_value=100.0),
    st.floats(allow_nan=True, allow_infinity=True),
)
REQUEST = st.builds(
    ApiRequest,
    verb=st.sampled_from(
        ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy"]
    ),
    resource=st.sampled_from(["pods", "nodes", "leases", "events"]),
    group=st.sampled_from(["", "coordination.k8s.io"]),
    version=st.sampled_from(["v1", "v1beta1"]),
    namespace=st.sampled_from(["", "default"]),
    name=st.sampled_from(["", "a"]),
    subresource=st.sampled_from(["", "status", "binding"]),
)
STEP = st.one_of(
    st.tuples(REQUEST, st.sampled_from([200, 201, 404, 409, 500, 503]), SECONDS),
    st.just("scrape"),
)


@given(steps=st.lists(STEP, max_size=60))
def test_the_tallies_expose_what_the_library_would(steps):
    clock = _Clock()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prometheus_metrics, "time", clock)
        tallied, plain = ApiMetrics(), _Plain()
        stored = [("pods", 3), ("coordination.k8s.io/leases", 1)]
        for i, step in enumerate([*steps, "scrape"]):
            clock.now = 1_700_000_000.0 + i  # a child made late or early shows in _created
            if step == "scrape":
                assert tallied.text(stored) == plain.text(stored)
                continue
            req, code, seconds = step
            tallied.observe(req, code, seconds)
            plain.observe(req, code, seconds)


def test_verbs_with_one_label_share_one_count(clock):
    # delete and deletecollection are both DELETE: one series, counting both (Hypothesis
    # found the tallies writing one of them over the other).
    metrics = ApiMetrics()
    metrics.observe(ApiRequest("delete", "pods"), 200, 0.005)
    metrics.observe(ApiRequest("deletecollection", "pods"), 200, 0.005)
    text = metrics.text([])
    assert ('apiserver_request_total{code="200",component="apiserver",dry_run="",group="",'
            'resource="pods",scope="cluster",subresource="",verb="DELETE",version="v1"} 2.0'
            in text)  # fmt: skip


def test_a_scrape_right_after_a_request_includes_it_and_scrapes_change_nothing(clock):
    metrics = ApiMetrics()
    req = ApiRequest("create", "pods", namespace="default")
    metrics.observe(req, 201, 0.003)
    text = metrics.text([])
    assert ('apiserver_request_total{code="201",component="apiserver",dry_run="",group="",'
            'resource="pods",scope="namespace",subresource="",verb="POST",version="v1"} 1.0'
            ) in text  # fmt: skip
    assert 'le="0.005",resource="pods"' in text and "_count{" in text
    assert metrics.text([]) == text  # nothing new: the same, written or not
    metrics.observe(req, 201, 7.0)
    again = metrics.text([])
    assert 'verb="POST",version="v1"} 2.0' in again
    assert 'le="8.0",resource="pods",scope="namespace",subresource="",verb="POST",' \
           'version="v1"} 2.0' in again  # fmt: skip
    # Any reader of the registry sees the tallies, not only ``text``.
    assert generate_latest(metrics.registry).decode() == again


def test_the_bounds_are_the_librarys():
    assert list(_metrics._BOUNDS) == ApiMetrics().latency._upper_bounds
