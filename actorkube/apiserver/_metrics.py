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
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ._messages import ApiRequest

_VERBS = {"get": "GET", "list": "LIST", "watch": "WATCH", "create": "POST", "update": "PUT",
          "patch": "PATCH", "delete": "DELETE", "deletecollection": "DELETE"}  # fmt: skip
_LABELS = ["verb", "dry_run", "group", "version", "resource", "subresource", "scope", "component"]
# kube-apiserver's buckets for request latency.
_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8,
            10, 15, 20, 30, 45, 60)  # fmt: skip
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ApiMetrics:
    """The counters of one API server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
        # The counter and histogram children of each label set seen: prometheus_client
        # checks and looks up labels for microseconds on each ``labels()``, and every
        # request is counted. (Children are never removed, so these stay theirs.)
        self._children: dict[tuple, tuple] = {}

    def observe(self, req: ApiRequest, code: int, seconds: float) -> None:
        """Count one resource request and its latency."""
        scope = "resource" if req.name else "namespace" if req.namespace else "cluster"
        key = (req.verb, req.group, req.version, req.resource, req.subresource, scope, code)
        children = self._children.get(key)
        if children is None:
            labels = (_VERBS.get(req.verb, req.verb.upper()), "", req.group, req.version,
                      req.resource, req.subresource, scope, "apiserver")  # fmt: skip
            children = (self.requests.labels(*labels, str(code)), self.latency.labels(*labels))
            self._children[key] = children
        count, latency = children
        count.inc()
        latency.observe(max(seconds, 0.0))

    def text(self, stored: Iterable[tuple[str, int]]) -> str:
        """The exposition, with ``stored``: (resource, object count) pairs."""
        for resource, count in stored:
            self.objects.labels(resource).set(count)
        return generate_latest(self.registry).decode()
