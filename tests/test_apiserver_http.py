"""The HTTP front end over a real socket: Kubernetes' REST paths, JSON bodies, Status
errors, discovery, a watch streamed as JSON lines, and bad input answered with a 4xx
while the server keeps serving. The client is the standard library's, in a thread
(the real kubectl and the official client come with their own tests)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import trio
from http_cluster import serve_cluster

from actorkube.actor import ActorSystem


class Http:
    def __init__(self, url: str) -> None:
        self.url = url
        self.headers = {}  # the last response's, names lowercased (repeats joined by \n)

    async def call(self, method, path, body=None, *, token="admin-token", raw=None,
                   content_type="application/json", headers=()):  # fmt: skip
        """(status, decoded JSON body) of one request."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method)
        for name, value in headers:
            req.add_header(name, value)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", content_type)

        def go():
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read(), r.headers
            except urllib.error.HTTPError as e:
                return e.code, e.read(), e.headers

        code, payload, headers = await trio.to_thread.run_sync(go)
        self.headers = {k.lower(): "\n".join(headers.get_all(k)) for k in headers}
        try:
            return code, json.loads(payload)
        except ValueError:
            return code, payload.decode()


async def start(system: ActorSystem, nursery: trio.Nursery, anonymous: bool = False) -> Http:
    return Http((await serve_cluster(system, nursery, anonymous=anonymous)).url)


def pod(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}  # fmt: skip


async def test_crud_over_http_with_kubernetes_status_errors():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, made = await http.call("POST", "/api/v1/namespaces/default/pods", pod("web"))
        assert code == 201 and made["spec"]["restartPolicy"] == "Always"
        code, got = await http.call("GET", "/api/v1/namespaces/default/pods/web")
        assert code == 200 and got == made
        code, listed = await http.call("GET", "/api/v1/namespaces/default/pods")
        assert code == 200 and listed["kind"] == "PodList"
        assert [p["metadata"]["name"] for p in listed["items"]] == ["web"]
        code, again = await http.call("POST", "/api/v1/namespaces/default/pods", pod("web"))
        assert code == 409 and again["kind"] == "Status" and again["reason"] == "AlreadyExists"
        stale = dict(made, metadata=dict(made["metadata"], resourceVersion="1"))
        code, conflict = await http.call("PUT", "/api/v1/namespaces/default/pods/web", stale)
        assert code == 409 and conflict["reason"] == "Conflict"
        code, patched = await http.call(
            "PATCH", "/api/v1/namespaces/default/pods/web", {"metadata": {"labels": {"a": "b"}}},
            content_type="application/merge-patch+json",
        )  # fmt: skip
        assert code == 200 and patched["metadata"]["labels"] == {"a": "b"}
        code, gone = await http.call("DELETE", "/api/v1/namespaces/default/pods/web")
        assert code == 200 and gone["metadata"]["name"] == "web"
        code, missing = await http.call("GET", "/api/v1/namespaces/default/pods/web")
        assert code == 404 and missing["message"] == 'pods "web" not found'
        pods = "/api/v1/namespaces/default/pods"
        code, denied = await http.call("GET", pods, token="alice-token")
        assert code == 403 and 'User "alice" cannot list' in denied["message"]
        code, nobody = await http.call("GET", pods, token="")
        assert code == 401 and nobody["reason"] == "Unauthorized"
        nursery.cancel_scope.cancel()


async def test_discovery_version_and_health():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, version = await http.call("GET", "/version")
        assert code == 200 and version["major"] == "1" and version["minor"] == "32"
        assert (await http.call("GET", "/healthz")) == (200, "ok")
        code, api = await http.call("GET", "/api")
        assert api["kind"] == "APIVersions" and api["versions"] == ["v1"]
        port = http.url.rsplit(":", 1)[1]
        [cidr] = api["serverAddressByClientCIDRs"]  # where this client reached the server
        assert cidr == {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{port}"}
        code, groups = await http.call("GET", "/apis")
        assert "apps" in [g["name"] for g in groups["groups"]]
        code, core = await http.call("GET", "/api/v1")
        assert "pods" in [r["name"] for r in core["resources"]]
        code, apps = await http.call("GET", "/apis/apps/v1")
        assert code == 200 and apps["groupVersion"] == "apps/v1"
        code, nothing = await http.call("GET", "/apis/storage.k8s.io/v1")
        assert code == 404 and nothing["kind"] == "Status"
        # Aggregated discovery, for the client that asks (kubectl does): one document, with
        # the exact media type, which kubectl checks before it reads it.
        accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
                  "application/json")  # fmt: skip
        code, listed = await http.call("GET", "/apis", headers=[("Accept", accept)])
        assert http.headers["content-type"] == (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        )
        apps = next(i for i in listed["items"] if i["metadata"].get("name") == "apps")
        [v1] = apps["versions"]
        deployments = next(r for r in v1["resources"] if r["resource"] == "deployments")
        assert deployments["scope"] == "Namespaced" and deployments["shortNames"] == ["deploy"]
        assert {"subresource": "scale", "verbs": ["get", "patch", "update"],
                "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"}} in (
            deployments["subresources"])  # fmt: skip
        code, core = await http.call("GET", "/api", headers=[("Accept", accept)])
        [group] = core["items"]
        assert group["metadata"] == {} and group["versions"][0]["version"] == "v1"
        pods = next(r for r in group["versions"][0]["resources"] if r["resource"] == "pods")
        assert pods["singularResource"] == "pod" and pods["categories"] == ["all"]
        # RBAC's bootstrap policy: health and version for anyone, discovery for the
        # authenticated (system:public-info-viewer, system:discovery), nothing else.
        code, alice = await http.call("GET", "/apis", token="alice-token")
        assert code == 200 and alice["kind"] == "APIGroupList"
        code, metrics = await http.call("GET", "/metrics", token="alice-token")
        assert code == 403
        assert metrics["message"] == 'forbidden: User "alice" cannot get path "/metrics"'
        # system:masters reads the metrics, under kube-apiserver's names.
        await http.call("POST", "/api/v1/namespaces/default/pods", pod("m"))
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e"},
                 "involvedObject": {"kind": "Pod", "name": "m"}, "reason": "Made"}
        await http.call("POST", "/api/v1/namespaces/default/events", event)
        # A consistent list returns once the cache holds the pod (the gauge reads it).
        await http.call("GET", "/api/v1/namespaces/default/pods")
        code, text = await http.call("GET", "/metrics")
        assert code == 200
        assert (
            'apiserver_request_total{code="201",component="apiserver",dry_run="",group="",'
            'resource="pods",scope="namespace",subresource="",verb="POST",version="v1"} 1.0'
        ) in text
        assert 'apiserver_storage_objects{resource="pods"} 1.0' in text
        assert 'apiserver_storage_objects{resource="events"} 1.0' in text  # from etcd
        assert "apiserver_request_duration_seconds_bucket{" in text

        def content_type(path):
            headers = {"Authorization": "Bearer admin-token"}
            req = urllib.request.Request(http.url + path, headers=headers)
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.headers["Content-Type"]

        kinds = [await trio.to_thread.run_sync(content_type, p) for p in ("/healthz", "/metrics")]
        assert kinds == ["text/plain; charset=utf-8", "text/plain; version=0.0.4; charset=utf-8"]
        code, _ = await http.call("POST", "/version", {})
        assert code == 405
        nursery.cancel_scope.cancel()


async def test_without_credentials_only_health_and_version_with_anonymous_access():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery, anonymous=True)
        assert (await http.call("GET", "/livez", token=""))[0] == 200
        assert (await http.call("GET", "/version", token=""))[0] == 200
        code, denied = await http.call("GET", "/api", token="")
        assert code == 403
        assert denied["message"] == 'forbidden: User "system:anonymous" cannot get path "/api"'
        nursery.cancel_scope.cancel()


async def test_a_watch_streams_one_json_event_per_line():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, made = await http.call("POST", "/api/v1/namespaces/default/configmaps",
                                     {"metadata": {"name": "c"}, "data": {"k": "1"}})  # fmt: skip
        rv = made["metadata"]["resourceVersion"]
        req = urllib.request.Request(
            f"{http.url}/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
            headers={"Authorization": "Bearer admin-token"},
        )
        response = await trio.to_thread.run_sync(lambda: urllib.request.urlopen(req, timeout=30))
        for value in ("2", "3"):
            made["data"]["k"] = value
            code, made = await http.call("PUT", "/api/v1/namespaces/default/configmaps/c", made)
            assert code == 200
        lines = [await trio.to_thread.run_sync(response.readline) for _ in range(2)]
        events = [json.loads(line) for line in lines]
        assert [(e["type"], e["object"]["data"]["k"]) for e in events] == [
            ("MODIFIED", "2"),
            ("MODIFIED", "3"),
        ]
        response.close()
        nursery.cancel_scope.cancel()


JSON, PROTOBUF = "application/json", "application/vnd.kubernetes.protobuf"
PODS = "/api/v1/namespaces/default/pods"


@pytest.mark.parametrize(
    ("method", "path", "raw", "kind", "code", "reason"),
    [
        ("POST", PODS, b"{not json", JSON, 400, "BadRequest"),
        ("POST", PODS, b"[1, 2]", JSON, 400, "BadRequest"),
        ("POST", "/api/v1/namespaces/default/configmaps", b'{"metadata": {"name": NaN}}', JSON,
         400, "BadRequest"),
        ("POST", PODS, b"x" * (3 * 1024 * 1024 + 1), JSON, 413, "RequestEntityTooLarge"),
        ("POST", PODS, b"k8s\x00\n\x0f", PROTOBUF, 400, "BadRequest"),  # truncated
        ("POST", PODS, b"\x0a\x00", PROTOBUF, 400, "BadRequest"),  # no k8s prefix
        ("POST", PODS, b"\xa1\x01\x02", "application/cbor", 415, "UnsupportedMediaType"),
        ("PATCH", PODS + "/web", b"{: [", "application/apply-patch+yaml", 400, "BadRequest"),
        ("PATCH", PODS + "/web", b"{}", "application/x-unknown-patch", 415,
         "UnsupportedMediaType"),
        ("GET", "/api/v1/widgets", None, JSON, 404, "NotFound"),
        ("GET", "/api/v1/pods/web", None, JSON, 404, "NotFound"),
        ("OPTIONS", "/api/v1/pods", None, JSON, 405, "MethodNotAllowed"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_4xx_status_and_the_server_keeps_serving(
    method, path, raw, kind, code, reason
):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        got, status = await http.call(method, path, raw=raw, content_type=kind)
        assert got == code and status["kind"] == "Status" and status["reason"] == reason
        assert (await http.call("GET", "/api/v1/namespaces/default/pods"))[0] == 200
        code, listed = await http.call("GET", "/api/v1/namespaces/default/pods")
        assert listed["items"] == []  # nothing was written
        nursery.cancel_scope.cancel()


async def test_an_eviction_a_budget_refuses_is_429_with_retry_after_and_needs_its_name():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        running = {**pod("web"), "metadata": {"name": "web", "labels": {"app": "web"}}}
        running["spec"] = {**running["spec"], "nodeName": "n1"}
        code, made = await http.call("POST", "/api/v1/namespaces/default/pods", running)
        made["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        await http.call("PUT", "/api/v1/namespaces/default/pods/web/status", made)
        budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                  "metadata": {"name": "web"},
                  "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}}
        code, _ = await http.call("POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
                                  budget)  # fmt: skip
        assert code == 201
        path = "/api/v1/namespaces/default/pods/web/eviction"
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction"}
        code, unnamed = await http.call("POST", path, eviction)
        assert code == 400 and unnamed["message"] == (
            "name in URL does not match name in Eviction object")
        # No status yet (observedGeneration 0 < generation 1): come back in 10 s.
        code, refused = await http.call("POST", path, {**eviction, "metadata": {"name": "web"}})
        assert code == 429 and refused["reason"] == "TooManyRequests"
        assert refused["details"]["retryAfterSeconds"] == 10 and http.headers["retry-after"] == "10"
        nursery.cancel_scope.cancel()
