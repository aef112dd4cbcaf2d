"""The API server's metrics, in Prometheus' text format at ``/metrics``, with the names,
labels and buckets of kube-apiserver's stable metrics, so that dashboards and alerts
written for Kubernetes read them unchanged.

Rules of this file:

- ``apiserver_request_total`` counts every resource request by verb (Kubernetes' metric
  verbs: GET, LIST, WATCH, POST, PUT, PATCH, DELETE), group, version, resource,
  subresource, scope (resource, namespace, cluster) and response code;
  ``apiserver_request_duration_seconds`` is its latency histogram (a watch's duration is
  the time to start it); ``apiserver_storage_objects`` the objects stored per resource,
  read from the watch caches when scraped.
- One registry per API server (not prometheus_client's global one), so that several
  servers in one process (tests, the simulation) keep apart.
- Every request is counted, so ``observe`` tallies in plain Python (ints and a float per
  label set, the bucket found by bisection) and the tallies are written into
  prometheus_client's children only when the registry is collected (``_Flush``, the
  registry's first collector): a scrape sees every request observed before it, and the
  exposition is byte for byte what the library's own ``inc``/``observe`` would give (the
  same float additions in the same order; children made at a label set's first request,
  so ``_created`` is unchanged). Observing and collecting both run in the API server's
  trio thread, so the tallies need no lock; the children keep theirs. Writing them
  sets the children's private values (``_value``, ``_sum``, ``_buckets``): a library
  that renamed them would fail tests/test_apiserver_metrics_tally.py, which compares
  the exposition with the library's own ``inc``/``observe``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._messages import ApiRequest

_VERBS = {"get": "GET", "list": "LIST", "watch": "WATCH", "create": "POST", "update": "PUT",
          "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE"}  # fmt: skip
_LABELS = ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"]
# kube-apiserver's buckets for request latency.
_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8,
            10, 15, 20, 30, 45, 60)  # fmt: skip
# The histogram's upper bounds as prometheus_client keeps them (+Inf last).
_BOUNDS = (*(float(b) for b in _BUCKETS), float("inf"))
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Flush:
    """The registry's first collector: writes the tallies into the children it precedes."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []  # no series of its own

    def collect(self) -> list:
        self.metrics.flush()
        return []


class ApiMetrics:
    """The counters of one API server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Flush(self))
        self.requests = Counter(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, "
            "version, resource, scope, component, and HTTP response code.",
            [*_LABELS, "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, "
            "version, resource, subresource, scope and component.",
            _LABELS,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.objects = Gauge(
            "apiserver_storage_objects",
            "Number of stored objects at the time of last check split by kind.",
            ["resource"],
            registry=self.registry,
        )
        # Per request key: its count tally ``[count, written, child]`` (one per label set
        # and code) and its label set's latency tally ``[sum, bucket counts, (sum, counts)
        # written, child]`` (shared by the codes). Keys that differ only where the labels
        # do not (delete and deletecollection are both DELETE) share their tallies.
        # Children are never removed, so these stay theirs.
        self._tallies: dict[tuple, tuple[list, list]] = {}
        self._counts: dict[tuple, list] = {}
        self._latencies: dict[tuple, list] = {}

    def observe(self, req: ApiRequest, code: int, seconds: float) -> None:
        """Count one resource request and its latency."""
        scope = "resource" if req.name else "namespace" if req.namespace else "cluster"
        key = (req.verb, req.group, req.version, req.resource, req.subresource, scope, code)
        tallies = self._tallies.get(key)
        if tallies is None:
            tallies = self._tally(key, req, scope, code)
        count, latency = tallies
        count[0] += 1
        amount = 0.0 if seconds < 0.0 else seconds  # max(seconds, 0.0), NaN kept
        latency[0] += amount
        if amount == amount:  # a NaN, like prometheus_client's, falls in no bucket
            latency[1][bisect_left(_BOUNDS, amount)] += 1

    def _tally(self, key: tuple, req: ApiRequest, scope: str, code: int) -> tuple[list, list]:
        labels = (_VERBS.get(req.verb, req.verb.upper()), "", req.group, req.version,
                  req.resource, req.subresource, scope, "apiserver")  # fmt: skip
        count = self._counts.get((labels, code))
        if count is None:
            count = [0, 0, self.requests.labels(*labels, str(code))]
            self._counts[(labels, code)] = count
        latency = self._latencies.get(labels)
        if latency is None:
            latency = [0.0, [0] * len(_BOUNDS), None, self.latency.labels(*labels)]
            self._latencies[labels] = latency
        tallies = self._tallies[key] = (count, latency)
        return tallies

    def flush(self) -> None:
        """Write the tallies changed since the last flush into their children."""
        for count in self._counts.values():
            if count[0] != count[1]:
                count[2]._value.set(float(count[0]))
                count[1] = count[0]
        for latency in self._latencies.values():
            total, buckets, written, child = latency
            if written != (total, buckets):  # (a NaN sum is unchanged only as the same object)
                child._sum.set(total)
                for value, bucket in zip(child._buckets, buckets, strict=True):
                    value.set(float(bucket))
                latency[2] = (total, buckets.copy())

    def text(self, stored: Iterable[tuple[str, int]]) -> str:
        """The exposition, with ``stored``: (resource, object count) pairs."""
        for resource, count in stored:
            self.objects.labels(resource).set(count)
        return generate_latest(self.registry).decode()
