"""Kubernetes' REST paths to ApiRequests and the discovery documents, without HTTP.
Expected routes and shapes are kube-apiserver's (RequestInfoFactory; the discovery
types of apimachinery's meta/v1: APIVersions, APIGroupList, APIResourceList)."""

from __future__ import annotations

import pytest

from actorkube.apiserver._builtin import builtin_registry
from actorkube.apiserver._errors import ApiError
from actorkube.apiserver._rest import (
    api_group_list,
    api_resource_list,
    api_versions,
    parse_request,
)

REGISTRY = builtin_registry()

ROUTES = [
    # (method, path, query) -> (verb, group, resource, namespace, name, subresource)
    ("GET", "/api/v1/pods", {}, ("list", "", "pods", "", "", "")),
    ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "pods", "default", "", "")),
    ("GET", "/api/v1/namespaces/default/pods/web", {},
     ("get", "", "pods", "default", "web", "")),
    ("PUT", "/api/v1/namespaces/default/pods/web/status", {},
     ("update", "", "pods", "default", "web", "status")),
    ("POST", "/api/v1/namespaces/default/pods/web/binding", {},
     ("create", "", "pods", "default", "web", "binding")),
    ("POST", "/api/v1/namespaces/default/pods/web/eviction", {},
     ("create", "", "pods", "default", "web", "eviction")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"},
     ("watch", "", "pods", "default", "", "")),
    ("GET", "/api/v1/watch/namespaces/default/pods", {},
     ("watch", "", "pods", "default", "", "")),
    ("GET", "/api/v1/watch/pods", {}, ("watch", "", "pods", "", "", "")),
    # Booleans as Go's ParseBool reads them (the official Python client sends "True").
    ("GET", "/api/v1/pods", {"watch": "True"}, ("watch", "", "pods", "", "", "")),
    ("GET", "/api/v1/pods", {"watch": "false"}, ("list", "", "pods", "", "", "")),
    # The namespace itself, and its status.
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/default", {}, ("get", "", "namespaces", "", "default", "")),
    ("PUT", "/api/v1/namespaces/default/status", {},
     ("update", "", "namespaces", "", "default", "status")),
    ("DELETE", "/api/v1/namespaces/team", {}, ("delete", "", "namespaces", "", "team", "")),
    # Cluster-scoped.
    ("PATCH", "/api/v1/nodes/n1", {}, ("patch", "", "nodes", "", "n1", "")),
    ("PATCH", "/api/v1/nodes/n1/status", {}, ("patch", "", "nodes", "", "n1", "status")),
    # Named groups.
    ("POST", "/apis/apps/v1/namespaces/default/deployments", {},
     ("create", "apps", "deployments", "default", "", "")),
    ("PUT", "/apis/apps/v1/namespaces/default/deployments/web/scale", {},
     ("update", "apps", "deployments", "default", "web", "scale")),
    ("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", {},
     ("get", "coordination.k8s.io", "leases", "kube-node-lease", "n1", "")),
    ("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", {},
     ("get", "rbac.authorization.k8s.io", "clusterroles", "", "view", "")),
    # DELETE without a name is a collection delete (answered by the handler).
    ("DELETE", "/api/v1/namespaces/default/pods", {},
     ("deletecollection", "", "pods", "default", "", "")),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "query", "expected"), ROUTES,
                         ids=[f"{m} {p}" for m, p, _, _ in ROUTES])  # fmt: skip
def test_a_path_is_the_request_kubernetes_routes_it_to(method, path, query, expected):
    req = parse_request(REGISTRY, method, path, query)
    got = (req.verb, req.group, req.resource, req.namespace, req.name, req.subresource)
    assert got == expected
    assert req.version == "v1"


def test_query_parameters_pass_through_and_watch_is_the_verb():
    req = parse_request(
        REGISTRY,
        "GET",
        "/api/v1/pods",
        {"watch": "1", "labelSelector": "app=web", "resourceVersion": "5",
         "allowWatchBookmarks": "true"},
    )  # fmt: skip
    assert req.verb == "watch"
    assert req.params == {
        "labelSelector": "app=web",
        "resourceVersion": "5",
        "allowWatchBookmarks": "true",
    }


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/api",
        "/api/v2/pods",
        "/api/v1/widgets",
        "/apis/apps/v2/deployments",
        "/apis/apps/v1/pods",  # pods are core, not apps
        "/api/v1/pods/web",  # a namespaced object needs its namespace
        "/api/v1/namespaces/default/nodes/n1",  # nodes live in no namespace
        "/api/v1/namespaces/default/pods/web/scale",  # pods have no scale
        "/api/v1/namespaces/default/pods/web/status/more",
        "/healthz/../api/v1",
    ],
)
def test_paths_that_name_nothing_served_are_404(path):
    with pytest.raises(ApiError) as e:
        parse_request(REGISTRY, "GET", path, {})
    assert e.value.code == 404
    assert e.value.status["message"] == "the server could not find the requested resource"


def test_a_method_no_route_takes_is_405():
    with pytest.raises(ApiError) as e:
        parse_request(REGISTRY, "OPTIONS", "/api/v1/pods", {})
    assert e.value.code == 405


def test_api_versions_and_the_group_list():
    assert api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}
        ],
    }
    groups = api_group_list(REGISTRY)
    assert groups["kind"] == "APIGroupList"
    names = [g["name"] for g in groups["groups"]]
    assert names == sorted(
        ["apps", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch",
         "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "policy",
         "rbac.authorization.k8s.io"]
    )  # fmt: skip
    apps = groups["groups"][0]
    assert apps["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}


def test_a_resource_list_has_every_resource_and_the_subresources_served():
    core = api_resource_list(REGISTRY, "", "v1")
    assert core["groupVersion"] == "v1" and core["kind"] == "APIResourceList"
    by_name = {r["name"]: r for r in core["resources"]}
    pods = by_name["pods"]
    assert pods["kind"] == "Pod" and pods["namespaced"] and pods["singularName"] == "pod"
    assert "po" in pods["shortNames"] and "all" in pods["categories"]
    assert set(pods["verbs"]) == {"create", "delete", "get", "list", "patch", "update", "watch"}
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["pods/binding"] == {"name": "pods/binding", "singularName": "",
                                       "namespaced": True, "kind": "Binding",
                                       "verbs": ["create"]}  # fmt: skip
    eviction = by_name["pods/eviction"]
    assert (eviction["group"], eviction["version"]) == ("policy", "v1")
    assert eviction["kind"] == "Eviction"
    assert by_name["pods/log"] == {"name": "pods/log", "singularName": "", "namespaced": True,
                                   "kind": "Pod", "verbs": ["get"]}  # fmt: skip
    assert by_name["nodes"]["namespaced"] is False
    apps = {r["name"]: r for r in api_resource_list(REGISTRY, "apps", "v1")["resources"]}
    scale = apps["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    # Every registered resource is listed once, in its own group version.
    for rt in REGISTRY:
        listed = api_resource_list(REGISTRY, rt.group, rt.version)["resources"]
        assert [r["name"] for r in listed].count(rt.plural) == 1
    with pytest.raises(ApiError) as e:
        api_resource_list(REGISTRY, "storage.k8s.io", "v1")
    assert e.value.code == 404
