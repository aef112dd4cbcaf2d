"""Kubernetes' REST API over HTTP, without the HTTP: request paths to ``ApiRequest``s,
and the discovery documents. Sans-IO; the HTTP front end is a thin layer over this.

Rules of this file:

- Resource paths are Kubernetes' own: ``/api/v1/...`` for the core group,
  ``/apis/{group}/{version}/...`` for the others; then ``[namespaces/{ns}/]{resource}
  [/{name}[/{subresource}]]``. ``/api/v1/namespaces/{name}[/{subresource}]`` is the
  namespace itself. The legacy ``/api/v1/watch/...`` prefix makes a watch.
- The verb comes from the method, as kube-apiserver's RequestInfoFactory decides: GET is
  get with a name, list without, watch with ``watch=true`` (or ``1``) or the watch
  prefix; POST create; PUT update; PATCH patch; DELETE delete with a name,
  deletecollection without.
- A path that names nothing served is a 404 ``Status``; a namespaced object addressed
  without its namespace, or a cluster-scoped one inside a namespace, too (Kubernetes
  has no such route). Which resources exist is the registry's to say (but for
  metrics.k8s.io, served beside it: ``_metricsapi``).
- Query parameters reach ``ApiRequest.params`` as they came (strings); the handler reads
  the ones it knows (labelSelector, fieldSelector, limit, continue, resourceVersion,
  allowWatchBookmarks, ...).
- Discovery lists what the server serves, with the verbs it really answers (no
  deletecollection yet): ``/api`` (APIVersions), ``/apis`` (APIGroupList), and an
  APIResourceList per group version, subresources included. A group's versions are
  listed as Kubernetes prefers them (GA before beta before alpha, higher first: v2,
  v1, v1beta1), the first one preferred; a resource served at several versions
  (autoscaling/v2 and v1 HorizontalPodAutoscalers) is in the list of each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from . import _errors as errors
from ._messages import ApiRequest
from ._metricsapi import GROUP as METRICS_GROUP
from ._metricsapi import metrics_request
from ._registry import Registry, ResourceType, UnknownResource

_METHOD_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}

# What each subresource answers, and the kind (with its group/version) it speaks.
_SUBRESOURCES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "status": (("get", "patch", "update"), "", "", ""),
    "scale": (("get", "patch", "update"), "Scale", "autoscaling", "v1"),
    "binding": (("create",), "Binding", "", ""),
    "eviction": (("create",), "Eviction", "policy", "v1"),
    "log": (("get",), "", "", ""),
    "finalize": (("update",), "", "", ""),  # namespaces/finalize
    "token": (("create",), "TokenRequest", "authentication.k8s.io", "v1"),
}
_RESOURCE_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")


def parse_request(
    registry: Registry, method: str, path: str, query: Mapping[str, str]
) -> ApiRequest:
    """The ``ApiRequest`` for ``method path?query`` (no body, no token: the caller adds
    them). Raises ``ApiError`` 404 for a path that names no resource, 405 for a method
    no resource path takes."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise errors.no_route()
    watch_prefix = bool(rest) and rest[0] == "watch"
    if watch_prefix:
        rest = rest[1:]
    namespace = ""
    # namespaces/{ns}/{resource}..., unless it is a namespace's own subresource.
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise errors.no_route()
    resource, name, subresource = rest[0], "", ""
    if len(rest) >= 2:
        name = rest[1]
    if len(rest) == 3:
        subresource = rest[2]
    if group == METRICS_GROUP:  # metrics-server's API, not the registry's: see _metricsapi
        verb = _verb(method, bool(name), watch_prefix or is_true(query.get("watch")))
        params = {k: v for k, v in query.items() if k != "watch"}
        return metrics_request(verb, version, namespace, resource, name, subresource, params)
    try:
        rt = registry.resource(group, resource)
    except UnknownResource:
        raise errors.no_route() from None
    served = registry.at_version(rt, version) is not None
    if not served or (subresource and subresource not in rt.subresources):
        raise errors.no_route()
    if namespace and not rt.namespaced:
        raise errors.no_route()
    if rt.namespaced and name and not namespace:
        raise errors.no_route()
    verb = _verb(method, bool(name), watch_prefix or is_true(query.get("watch")))
    params = {k: v for k, v in query.items() if k != "watch"}
    return ApiRequest(
        verb,
        resource,
        group=group,
        version=version,
        namespace=namespace,
        name=name,
        subresource=subresource,
        params=params or None,
    )


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))


def is_true(value: object) -> bool:
    """A boolean query parameter as Go's strconv.ParseBool reads it (the official Python
    client sends ``watch=True``)."""
    return value is True or value in _TRUE


def _verb(method: str, named: bool, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    verb = _METHOD_VERBS.get(method)
    if verb is None:
        raise errors.method_not_allowed(f"the method {method} is not supported")
    return verb


# --- discovery ------------------------------------------------------------------------

HEALTH = ("/healthz", "/livez", "/readyz")
# kubectl's dispatcher picks its own minor version from the server's.
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-actorkube",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-11-26T00:00:00Z",
    "goVersion": "",
    "compiler": "cpython",
    "platform": "linux/amd64",
}


def is_non_resource(path: str) -> bool:
    """Whether ``path`` is a URL that names no resource (discovery, version, health),
    as kube-apiserver's request info tells them apart."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return True
    if parts[0] == "api":
        return len(parts) <= 2
    return len(parts) <= 3


def non_resource(
    registry: Registry, path: str, server_address: str, aggregated: bool = False
) -> object:
    """The document at a non-resource ``path`` (a dict, or "ok" for health); for
    ``/api`` and ``/apis`` the aggregated discovery document if the client accepts it
    (``aggregated``). Raises ``ApiError`` 404 for one that is not served."""
    path = "/" + "/".join(p for p in path.split("/") if p)
    if path in HEALTH:
        return "ok"
    if path == "/version":
        return VERSION
    if path in ("/api", "/apis") and aggregated:
        return aggregated_discovery(registry, core=path == "/api")
    if path == "/api":
        return api_versions(server_address)
    if path == "/apis":
        return api_group_list(registry)
    parts = path.strip("/").split("/")
    if parts == ["api", "v1"]:
        return api_resource_list(registry, "", "v1")
    if len(parts) == 3 and parts[0] == "apis":
        return api_resource_list(registry, parts[1], parts[2])
    raise errors.no_route()


def api_versions(server_address: str) -> dict:
    """``GET /api``: the core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def api_group_list(registry: Registry) -> dict:
    """``GET /apis``: every named group, with the versions it serves."""
    groups: dict[str, set[str]] = {}
    for rt in registry.served():
        if rt.group:
            groups.setdefault(rt.group, set()).add(rt.version)
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in sorted(groups.items())],
    }


def _group(name: str, versions: set[str]) -> dict:
    ordered = sorted(versions, key=_preference)
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in ordered]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


_KUBE_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?\Z")


def _preference(version: str) -> tuple:
    """Sorts versions as Kubernetes prefers them (its kube-aware version order): GA,
    then beta, then alpha, higher numbers first; other names last, alphabetically."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (1, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (0, stability, -int(m.group(1)), -int(m.group(3) or 0))


def api_resource_list(registry: Registry, group: str, version: str) -> dict:
    """``GET /api/v1`` or ``/apis/{group}/{version}``: the resources of that group
    version and their subresources. Raises ``ApiError`` 404 if it serves none."""
    types = sorted(
        (rt for rt in registry.served() if rt.group == group and rt.version == version),
        key=lambda rt: rt.plural,
    )
    if not types:
        raise errors.no_route()
    resources = []
    for rt in types:
        resources.append(_resource(rt))
        served = sorted(rt.subresources & _SUBRESOURCES.keys())
        resources += [_subresource(rt, sub) for sub in served]
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def accepts_aggregated(accept: str) -> bool:
    """Whether an Accept header asks for aggregated discovery (kubectl's does first)."""
    return any(part.strip().replace(" ", "") == AGGREGATED for part in accept.split(","))


def aggregated_discovery(registry: Registry, core: bool) -> dict:
    """``GET /api`` or ``/apis`` as aggregated discovery (apidiscovery.k8s.io/v2): every
    group, version, resource and subresource in one document, so that a client needs
    one request where the legacy documents take one per group version."""
    groups: dict[str, dict[str, list[ResourceType]]] = {}
    for rt in registry.served():
        if bool(rt.group) != core:
            groups.setdefault(rt.group, {}).setdefault(rt.version, []).append(rt)
    items = []
    for name in sorted(groups):
        versions = []
        for version in sorted(groups[name], key=_preference):
            types = groups[name][version]
            resources = [_discovered(rt) for rt in sorted(types, key=lambda t: t.plural)]
            versions.append({"version": version, "freshness": "Current", "resources": resources})
        items.append({"metadata": {"name": name} if name else {}, "versions": versions})
    return {"apiVersion": "apidiscovery.k8s.io/v2", "kind": "APIGroupDiscoveryList",
            "metadata": {}, "items": items}  # fmt: skip


def _discovered(rt: ResourceType) -> dict:
    legacy = _resource(rt)
    entry = {
        "resource": rt.plural,
        "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "scope": "Namespaced" if rt.namespaced else "Cluster",
        "singularResource": legacy["singularName"],
        "verbs": legacy["verbs"],
    }
    for key in ("shortNames", "categories"):
        if key in legacy:
            entry[key] = legacy[key]
    subresources = []
    for sub in sorted(rt.subresources & _SUBRESOURCES.keys()):
        verbs, kind, group, version = _SUBRESOURCES[sub]
        kind_of = entry["responseKind"]
        if kind:
            kind_of = {"group": group, "version": version, "kind": kind}
        subresources.append(
            {"subresource": sub, "responseKind": kind_of, "verbs": list(verbs)}
        )
    if subresources:
        entry["subresources"] = subresources
    return entry


def _resource(rt: ResourceType) -> dict:
    entry = {
        "name": rt.plural,
        "singularName": rt.singular or rt.kind.lower(),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": list(rt.verbs or _RESOURCE_VERBS),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    return entry


def _subresource(rt: ResourceType, sub: str) -> dict:
    verbs, kind, group, version = _SUBRESOURCES[sub]
    entry = {
        "name": f"{rt.plural}/{sub}",
        "singularName": "",
        "namespaced": rt.namespaced,
        "kind": kind or rt.kind,
        "verbs": list(verbs),
    }
    if group:
        entry["group"], entry["version"] = group, version
    return entry
