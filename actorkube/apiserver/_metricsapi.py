"""The resource metrics API, metrics.k8s.io/v1beta1: what metrics-server serves through
kube-apiserver's aggregation layer (``kubectl top``, the HorizontalPodAutoscaler), here
read from a metrics server actor and joined with the API server's own caches.

Rules of this file:

- Served only when the API server was given a metrics server (``Handler.resource_metrics``,
  which resolves it anew for each request, so a restarted one is found). Without one
  the group is in no discovery document and every path under it is 404, as in a
  cluster without metrics-server (kubectl top then says the Metrics API is not
  available).
- Two resources, verbs get and list: ``nodes`` (NodeMetrics, cluster-scoped) and
  ``pods`` (PodMetrics, namespaced). ``labelSelector`` matches the node's or the pod's
  labels; ``fieldSelector`` takes ``metadata.name`` and ``metadata.namespace`` (any
  other field is 400, as the generic field conversion refuses it). Other verbs are
  405. Requests are authorized like any resource (RBAC on ``nodes``/``pods`` in
  ``metrics.k8s.io``), before anything here runs.
- The objects are the nodes and pods of the API server's watch caches that have
  metrics: a pod that no longer exists has none, whatever the metrics server still
  holds. They are shaped as metrics-server's: metadata name (namespace), the object's
  labels and creationTimestamp now; ``timestamp`` and ``window`` of the sample (a
  pod's: those of its earliest container); usage ``cpu`` in nanocores and ``memory``
  in bytes as metrics-server writes them (``"123456n"``, ``"1234Ki"``); lists sorted by
  (namespace,) name, with empty list metadata.
- Errors are metrics-server's: a pod or node the API server does not have is
  ``pods "web" not found``; one without metrics ``podmetrics.metrics.k8s.io
  "default/web" not found`` (``nodemetrics...`` for nodes); a metrics server that does
  not answer is 503 with the aggregator's wording.
- What the API server asks the metrics server is ``MetricsQuery``; it answers
  ``MetricsAnswer``. ``Usage``, ``ContainerMetrics``, ``PodMetrics`` and
  ``NodeMetrics`` are also what a kubelet reports (``actorkube.metrics``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from actorkube.actor import ActorError, message

from . import _errors as errors
from ._messages import ApiRequest
from ._meta import rfc3339
from ._quantity import Quantity, QuantityFormat
from ._selectors import FieldSelector, InvalidSelector, Selector, check_fields

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
ASK_TIMEOUT = 10.0  # seconds: the metrics server answers from memory
UNAVAILABLE = "the server is currently unable to handle the request"

# resource -> (kind, namespaced, singular name as metrics-server names it)
_RESOURCES = {"nodes": ("NodeMetrics", False, "node"), "pods": ("PodMetrics", True, "")}
_FIELDS = frozenset(("metadata.name", "metadata.namespace"))


# --- messages ------------------------------------------------------------------------------


@message(tag="metrics.Usage")
class Usage:
    """What was used: CPU in nanocores, averaged over the ``window`` seconds before
    ``timestamp`` (wall-clock seconds), and working-set memory in bytes at
    ``timestamp``."""

    cpu_nanocores: int
    memory_bytes: int
    timestamp: float
    window: float


@message(tag="metrics.ContainerMetrics")
class ContainerMetrics:
    """One running container's usage."""

    name: str
    usage: Usage


@message(tag="metrics.PodMetrics")
class PodMetrics:
    """The running containers of one pod, sorted by name; ``node``: the node whose
    kubelet reported them (the metrics server stamps it; a pod's metrics are served
    only from the node it is bound to, so no kubelet speaks for another's pods)."""

    namespace: str
    name: str
    containers: tuple[ContainerMetrics, ...]
    node: str = ""


@message(tag="metrics.NodeMetrics")
class NodeMetrics:
    """One node's usage (the sum of its running containers')."""

    name: str
    usage: Usage


@message(tag="metrics.Query")
class MetricsQuery:
    """What the API server asks a metrics server: the latest metrics of ``resource``
    ("nodes" or "pods"), in ``namespace`` (pods; "" for every namespace), of the one
    object ``name`` ("" for all)."""

    resource: str
    namespace: str = ""
    name: str = ""


@message(tag="metrics.Answer")
class MetricsAnswer:
    """The metrics server's answer: what it holds of what was asked, sorted."""

    nodes: tuple[NodeMetrics, ...] = ()
    pods: tuple[PodMetrics, ...] = ()


# --- the wire form -------------------------------------------------------------------------


def cpu_quantity(nanocores: int) -> str:
    """CPU as metrics-server writes it: a DecimalSI quantity of nanocores (``"1500u"``
    is canonical for 1500000n, ``"250m"`` for 250000000n)."""
    return str(Quantity(Fraction(nanocores, 10**9), QuantityFormat.DECIMAL_SI))


def memory_quantity(amount: int) -> str:
    """Memory as metrics-server writes it: a BinarySI quantity of bytes (``"1234Ki"``)."""
    return str(Quantity(Fraction(amount), QuantityFormat.BINARY_SI))


def go_duration(seconds: float) -> str:
    """``seconds`` as Go's ``time.Duration`` prints itself: ``15s``, ``1m0s``,
    ``2.5s``, ``250ms``, ``0s``."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_fraction(ns, 3)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_fraction(ns, 6)}ms"
    text = f"{_fraction(ns % 60_000_000_000, 9)}s"
    minutes = ns // 60_000_000_000
    if minutes:
        text = f"{minutes % 60}m{text}"
        if minutes >= 60:
            text = f"{minutes // 60}h{text}"
    return sign + text


def _fraction(value: int, digits: int) -> str:
    whole, part = divmod(value, 10**digits)
    return f"{whole}.{part:0{digits}d}".rstrip("0") if part else str(whole)


def _window(seconds: float) -> str:
    return go_duration(round(seconds, 3))  # to the millisecond: no float noise


def _usage(usage: Usage) -> dict[str, str]:
    return {"cpu": cpu_quantity(usage.cpu_nanocores), "memory": memory_quantity(usage.memory_bytes)}


def _metadata(obj: Mapping[str, Any], now: float) -> dict[str, Any]:
    m = obj.get("metadata") or {}
    out: dict[str, Any] = {"name": m.get("name", "")}
    if m.get("namespace"):
        out["namespace"] = m["namespace"]
    out["creationTimestamp"] = rfc3339(now)
    if m.get("labels"):
        out["labels"] = dict(m["labels"])
    return out


def node_metrics_object(node: Mapping[str, Any], metrics: NodeMetrics, now: float) -> dict:
    """The NodeMetrics of ``node`` (the API object) as metrics-server serves it."""
    return {"kind": "NodeMetrics", "apiVersion": API_VERSION, "metadata": _metadata(node, now),
            "timestamp": rfc3339(metrics.usage.timestamp), "window": _window(metrics.usage.window),
            "usage": _usage(metrics.usage)}  # fmt: skip


def pod_metrics_object(pod: Mapping[str, Any], metrics: PodMetrics, now: float) -> dict:
    """The PodMetrics of ``pod`` as metrics-server serves it (time of its earliest
    container's sample)."""
    earliest = min((c.usage for c in metrics.containers), key=lambda u: u.timestamp, default=None)
    timestamp, window = (earliest.timestamp, earliest.window) if earliest else (0.0, 0.0)
    return {"kind": "PodMetrics", "apiVersion": API_VERSION, "metadata": _metadata(pod, now),
            "timestamp": rfc3339(timestamp), "window": _window(window),
            "containers": [{"name": c.name, "usage": _usage(c.usage)}
                           for c in metrics.containers]}  # fmt: skip


# --- requests ------------------------------------------------------------------------------


def metrics_request(verb: str, version: str, namespace: str, resource: str, name: str,
                    subresource: str, params: dict) -> ApiRequest:  # fmt: skip
    """The request for a path under ``/apis/metrics.k8s.io`` (``_rest.parse_request``
    hands it over). 404 for a path that names nothing served."""
    _check_shape(version, namespace, resource, name, subresource)
    return ApiRequest(verb, resource, group=GROUP, version=version, namespace=namespace,
                      name=name, params=params or None)  # fmt: skip


def _check_shape(version: str, namespace: str, resource: str, name: str,
                 subresource: str) -> None:  # fmt: skip
    """404 unless the request names something served: a known resource at the served
    version, no subresource, a namespace only for pods and always for one pod."""
    shape = _RESOURCES.get(resource)
    if version != VERSION or shape is None or subresource:
        raise errors.no_route()
    namespaced = shape[1]
    if (namespace and not namespaced) or (namespaced and name and not namespace):
        raise errors.no_route()


async def serve(handler: Any, req: ApiRequest) -> dict:
    """Answer ``req`` (already authenticated and authorized) for ``handler``, the API
    server's ``Handler`` (its metrics server, caches, registry and clock)."""
    resolve = handler.resource_metrics
    if resolve is None:
        raise errors.no_route()
    # Requests come from the actor interface too, not only through ``metrics_request``:
    # a namespace on node metrics would be authorized as a namespaced read.
    _check_shape(req.version, req.namespace, req.resource, req.name, req.subresource)
    if req.verb not in ("get", "list"):
        raise errors.method_not_allowed(
            "the server does not allow this method on the requested resource"
        )
    keep = _filter(req.params or {})
    objects = await _objects(handler, req)
    if not req.name:  # (a get ignores selectors)
        objects = [o for o in objects if keep(o)]
    answer = await _ask(resolve, MetricsQuery(req.resource, req.namespace, req.name))
    now = handler.clock()
    kind = _RESOURCES[req.resource][0]
    if req.resource == "nodes":
        by_name = {n.name: n for n in answer.nodes}
        found = [node_metrics_object(o, by_name[o["metadata"]["name"]], now)
                 for o in objects if o["metadata"]["name"] in by_name]  # fmt: skip
    else:
        by_key = {(p.namespace, p.name, p.node): p for p in answer.pods}
        found = [pod_metrics_object(o, by_key[k], now) for o in objects
                 if (k := (*_key(o), (o.get("spec") or {}).get("nodeName"))) in by_key]
    if req.name:
        if not found:
            name = f"{req.namespace}/{req.name}" if req.namespace else req.name
            raise errors.not_found(kind.lower(), GROUP, name)
        return _table(found, req.resource) if req.as_table else found[0]
    if req.as_table:
        return _table(found, req.resource)
    return {"kind": f"{kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": found}


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    m = obj.get("metadata") or {}
    return m.get("namespace", ""), m.get("name", "")


def _filter(params: Mapping[str, str]) -> Callable[[dict], bool]:
    try:
        labels = Selector.parse(params.get("labelSelector", ""))
        fields = FieldSelector.parse(params.get("fieldSelector", ""))
        check_fields(fields, _FIELDS)
    except InvalidSelector as e:
        raise errors.bad_request(str(e)) from None

    def keep(obj: dict) -> bool:
        m = obj["metadata"]
        if not labels.empty and not labels.matches(m.get("labels") or {}):
            return False
        named = {"metadata.name": m.get("name", ""), "metadata.namespace": m.get("namespace", "")}
        return fields.empty or fields.matches(named)

    return keep


async def _objects(handler: Any, req: ApiRequest) -> list[dict]:
    """The nodes or pods the request is about, from the API server's watch cache: the
    named one (404 as metrics-server's listers answer if there is none), or all (in the
    namespace), sorted."""
    rt = handler.registry.resource("", req.resource)
    cache = handler.caches[("", req.resource)]
    await cache.ready.wait()
    namespace = req.namespace if rt.namespaced else ""
    if req.name:
        found = cache.objects.get(rt.key(namespace, req.name))
        if found is None:
            raise errors.not_found(req.resource, "", req.name)
        return [found]
    return sorted(cache.snapshot(None, rt.prefix(namespace)), key=_key)


async def _ask(resolve: Callable[[], Any], query: MetricsQuery) -> MetricsAnswer:
    answer = None
    with contextlib.suppress(ActorError, ValueError):  # gone, slow, or a bad address
        answer = await resolve().ask(query, timeout=ASK_TIMEOUT)
    if not isinstance(answer, MetricsAnswer):
        raise errors.ApiError(errors.status(503, "ServiceUnavailable", UNAVAILABLE))
    return answer


def _table(objects: list[dict], resource: str) -> dict:
    """A ``meta.k8s.io/v1`` Table, with metrics-server's columns (Name, cpu, memory,
    Window; a pod's usage summed over its containers)."""
    columns = [("Name", "name"), ("cpu", "quantity"), ("memory", "quantity"),
               ("Window", "duration")]  # fmt: skip
    rows = []
    for obj in objects:
        if resource == "nodes":
            usage = obj["usage"]
        else:
            cpu = sum((Quantity.parse(c["usage"]["cpu"]) for c in obj["containers"]),
                      Quantity.parse("0"))  # fmt: skip
            memory = sum((Quantity.parse(c["usage"]["memory"]) for c in obj["containers"]),
                         Quantity.parse("0"))  # fmt: skip
            usage = {"cpu": str(cpu), "memory": str(memory)}
        rows.append({"cells": [obj["metadata"]["name"], usage["cpu"], usage["memory"],
                               obj["window"]],
                     "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                "metadata": obj["metadata"]}})  # fmt: skip
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {},
            "columnDefinitions": [{"name": n, "type": "string", "format": f, "description": "",
                                   "priority": 0} for n, f in columns],
            "rows": rows}  # fmt: skip


# --- discovery -----------------------------------------------------------------------------


def _group_version() -> dict[str, str]:
    return {"groupVersion": API_VERSION, "version": VERSION}


def resource_list() -> dict:
    """``GET /apis/metrics.k8s.io/v1beta1``, as metrics-server's APIResourceList."""
    resources = [{"name": plural, "singularName": singular, "namespaced": namespaced,
                  "kind": kind, "verbs": ["get", "list"]}
                 for plural, (kind, namespaced, singular) in _RESOURCES.items()]  # fmt: skip
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": API_VERSION,
            "resources": resources}


def _discovered() -> dict:
    """The group in aggregated discovery (apidiscovery.k8s.io/v2)."""
    resources = [{"resource": plural, "responseKind": {"group": GROUP, "version": VERSION,
                                                       "kind": kind},
                  "scope": "Namespaced" if namespaced else "Cluster",
                  "singularResource": singular, "verbs": ["get", "list"]}
                 for plural, (kind, namespaced, singular) in _RESOURCES.items()]  # fmt: skip
    return {"metadata": {"name": GROUP},
            "versions": [{"version": VERSION, "freshness": "Current", "resources": resources}]}


def discovery(path: str, document: Callable[[], Any]) -> Any:
    """The discovery document at ``path`` when metrics.k8s.io is served: its own
    APIResourceList, or ``document()`` (what the registry serves there) with the group
    added to ``/apis`` (legacy or aggregated), in name order."""
    parts = [p for p in path.split("/") if p]
    if parts == ["apis", GROUP, VERSION]:
        return resource_list()
    served = document()
    if parts != ["apis"] or not isinstance(served, dict):
        return served
    if served.get("kind") == "APIGroupList":
        group = {"name": GROUP, "versions": [_group_version()],
                 "preferredVersion": _group_version()}  # fmt: skip
        groups = sorted([*served.get("groups", ()), group], key=lambda g: g["name"])
        return {**served, "groups": groups}
    if served.get("kind") == "APIGroupDiscoveryList":
        items = [*served.get("items", ()), _discovered()]
        items.sort(key=lambda i: (i.get("metadata") or {}).get("name", ""))
        return {**served, "items": items}
    return served
