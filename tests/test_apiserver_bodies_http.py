"""Write bodies over HTTP: field validation (Strict, Warn with its Warning header,
Ignore), wrong types, the four patch types and their failures, apply patches (create,
update, conflict), the review resources and the OpenAPI documents. After every refused
request nothing was written and the server keeps serving."""

from __future__ import annotations

import json

import pytest
import trio
from test_apiserver_http import pod, start

from actorkube.actor import ActorSystem

PODS = "/api/v1/namespaces/default/pods"
CMS = "/api/v1/namespaces/default/configmaps"
APPLY = "application/apply-patch+yaml"


async def test_field_validation_strict_warn_and_ignore():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        body = pod("web")
        body["spec"]["containers"][0]["imagee"] = "typo"
        body["spec"]["bogus"] = 1
        code, status = await http.call("POST", PODS + "?fieldValidation=Strict", body)
        assert code == 400 and status["reason"] == "BadRequest"
        assert status["message"] == (
            'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
            'unknown field "spec.containers[0].imagee", unknown field "spec.bogus"'
        )
        assert (await http.call("GET", PODS + "/web"))[0] == 404  # nothing written
        code, made = await http.call("POST", PODS, body)  # Warn, the default
        assert code == 201 and "imagee" not in made["spec"]["containers"][0]
        assert http.headers["warning"] == (
            '299 - "unknown field \\"spec.containers[0].imagee\\""\n'
            '299 - "unknown field \\"spec.bogus\\""'
        )
        body["metadata"]["name"] = "quiet"
        code, made = await http.call("POST", PODS + "?fieldValidation=Ignore", body)
        assert code == 201 and "warning" not in http.headers and "bogus" not in made["spec"]
        code, status = await http.call("POST", PODS + "?fieldValidation=Loud", pod("x"))
        assert code == 400 and "fieldValidation must be one of" in status["message"]
        nursery.cancel_scope.cancel()


async def test_wrong_types_are_a_400_in_every_mode_and_write_nothing():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        body = pod("web")
        body["spec"]["containers"][0]["ports"] = [{"containerPort": "eighty"}]
        for mode in ("Strict", "Warn", "Ignore"):
            code, status = await http.call("POST", f"{PODS}?fieldValidation={mode}", body)
            assert code == 400
            assert status["message"] == (
                'Pod in version "v1" cannot be handled as a Pod: json: cannot unmarshal string '
                "into Go struct field ContainerPort.spec.containers.ports.containerPort of "
                "type int32"
            )
        code, listed = await http.call("GET", PODS)
        assert listed["items"] == []
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("content_type", "patch", "code", "message"),
    [
        (
            "application/strategic-merge-patch+json",
            {"spec": {"containers": [{"image": "x"}]}},
            400,
            "does not contain declared merge key: name",
        ),
        (
            "application/strategic-merge-patch+json",
            {"spec": {"$patch": "shred"}},
            400,
            "unknown patch type",
        ),
        (
            "application/json-patch+json",
            [{"op": "replace", "path": "/spec/nothing", "value": 1}],
            422,
            "the patch failed",
        ),
        ("application/json-patch+json", {"op": "add"}, 400, "must be a list of operations"),
        ("application/merge-patch+json", [1], 400, "a merge patch must be an object"),
        (
            "application/merge-patch+json",
            {"spec": {"containers": "none"}},
            400,
            "cannot unmarshal string into Go struct field PodSpec.spec.containers",
        ),
        (APPLY, {"apiVersion": "v1", "kind": "Pod"}, 422, "fieldManager: Required value"),
    ],
)
async def test_invalid_patches_are_refused_and_change_nothing(content_type, patch, code, message):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        _, made = await http.call("POST", PODS, pod("web"))
        got, status = await http.call("PATCH", PODS + "/web", patch, content_type=content_type)
        assert (got, status["kind"]) == (code, "Status")
        assert message in status["message"]
        assert (await http.call("GET", PODS + "/web"))[1] == made
        nursery.cancel_scope.cancel()


async def test_strategic_merge_patch_over_http():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        body = pod("web")
        body["spec"]["containers"].append({"name": "side", "image": "busybox"})
        await http.call("POST", PODS, body)
        patch = {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}
        code, patched = await http.call(
            "PATCH", PODS + "/web", patch, content_type="application/strategic-merge-patch+json"
        )
        assert code == 200
        images = [(c["name"], c["image"]) for c in patched["spec"]["containers"]]
        assert images == [("app", "nginx:1.27"), ("side", "busybox:2")]
        nursery.cancel_scope.cancel()


async def test_apply_creates_updates_and_reports_conflicts():
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: '1'\n"
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        url = CMS + "/cfg?fieldManager=tool"
        code, made = await http.call("PATCH", url, raw=config.encode(), content_type=APPLY)
        assert code == 201 and made["data"] == {"a": "1"}
        [entry] = made["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"], entry["fieldsV1"]) == (
            "tool",
            "Apply",
            {"f:data": {"f:a": {}}},
        )
        code, again = await http.call("PATCH", url, raw=config.encode(), content_type=APPLY)
        assert (
            code == 200
            and again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
        )  # nothing changed, nothing written
        await http.call(
            "PATCH",
            CMS + "/cfg?fieldManager=other",
            {"data": {"a": "2"}},
            content_type="application/merge-patch+json",
        )
        changed = config.replace("'1'", "'3'").encode()
        code, status = await http.call("PATCH", url, raw=changed, content_type=APPLY)
        assert code == 409 and status["reason"] == "Conflict"
        assert status["message"] == (
            'Apply failed with 1 conflict: conflict with "other" using v1: .data.a'
        )
        assert status["details"]["causes"] == [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "other" using v1',
                "field": ".data.a",
            }
        ]
        assert (await http.call("GET", CMS + "/cfg"))[1]["data"] == {"a": "2"}
        code, forced = await http.call(
            "PATCH", url + "&force=true", raw=changed, content_type=APPLY
        )
        assert code == 200 and forced["data"] == {"a": "3"}
        managers = {e["manager"] for e in forced["metadata"]["managedFields"]}
        assert managers == {"tool"}
        nursery.cancel_scope.cancel()


async def test_writes_over_http_are_owned_by_their_user_agents_manager():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, made = await http.call("POST", CMS, {"metadata": {"name": "c"}, "data": {"k": "v"}})
        assert code == 201
        [entry] = made["metadata"]["managedFields"]
        assert entry["manager"] == "Python-urllib" and entry["operation"] == "Update"
        assert entry["fieldsV1"] == {"f:data": {"f:k": {}}}
        nursery.cancel_scope.cancel()


async def test_access_and_token_reviews():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {"verb": "list", "resource": "pods", "namespace": "default"}
            },
        }
        ssar = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        code, answer = await http.call("POST", ssar, review, token="alice-token")
        assert code == 201 and answer["status"] == {"allowed": False}
        code, answer = await http.call("POST", ssar, review)
        assert code == 201 and answer["status"]["allowed"] is True
        sar = dict(review, kind="SubjectAccessReview")
        sar["spec"] = dict(review["spec"], user="bob", groups=["system:masters"])
        code, answer = await http.call(
            "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar
        )
        assert code == 201 and answer["status"]["allowed"] is True
        code, status = await http.call("GET", ssar)
        assert code == 405 and status["reason"] == "MethodNotAllowed"
        tokens = "/apis/authentication.k8s.io/v1/tokenreviews"
        code, answer = await http.call("POST", tokens, {"spec": {"token": "alice-token"}})
        assert answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == "alice"
        code, answer = await http.call("POST", tokens, {"spec": {"token": "forged"}})
        assert answer["status"]["authenticated"] is False
        code, status = await http.call("POST", ssar, {"spec": {}})
        assert code == 400 and "exactly one of" in status["message"]
        nursery.cancel_scope.cancel()


async def test_openapi_v3_documents():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, index = await http.call("GET", "/openapi/v3")
        assert code == 200
        assert set(index["paths"]) >= {
            "api/v1",
            "apis/apps/v1",
            "apis/rbac.authorization.k8s.io/v1",
        }
        url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        assert url.startswith("/openapi/v3/apis/apps/v1?hash=")
        code, doc = await http.call("GET", url)
        assert code == 200 and doc["openapi"] == "3.0.0"
        patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
        assert patch["x-kubernetes-group-version-kind"] == {
            "group": "apps",
            "kind": "Deployment",
            "version": "v1",
        }
        assert {p["name"] for p in patch["parameters"]} >= {
            "fieldValidation",
            "fieldManager",
            "force",
        }
        schemas = doc["components"]["schemas"]
        deployment = schemas["io.k8s.api.apps.v1.Deployment"]
        assert deployment["x-kubernetes-group-version-kind"] == [
            {"group": "apps", "kind": "Deployment", "version": "v1"}
        ]
        containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
        assert containers["x-kubernetes-patch-merge-key"] == "name"
        assert containers["x-kubernetes-list-map-keys"] == ["name"]
        assert containers["items"]["allOf"] == [
            {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
        ]
        # Every reference resolves within the document.
        refs = set()

        def walk(node):
            if isinstance(node, dict):
                if "$ref" in node:
                    refs.add(node["$ref"].rsplit("/", 1)[-1])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(doc)
        assert refs <= set(schemas)
        assert (await http.call("GET", "/openapi/v3/apis/widgets/v1"))[0] == 404
        assert json.dumps(doc)  # plain JSON
        nursery.cancel_scope.cancel()


async def test_dry_run_values():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, made = await http.call("POST", PODS + "?dryRun=All", pod("web"))
        assert code == 201 and made["metadata"]["uid"] and "resourceVersion" not in made["metadata"]
        assert (await http.call("GET", PODS + "/web"))[0] == 404
        code, status = await http.call("POST", PODS + "?dryRun=Some", pod("web"))
        assert code == 400
        assert status["message"] == 'dryRun: Unsupported value: "Some": supported values: "All"'
        await http.call("POST", PODS, pod("web"))
        code, _ = await http.call("DELETE", PODS + "/web", {"dryRun": ["All"]})
        assert code == 200 and (await http.call("GET", PODS + "/web"))[0] == 200
        nursery.cancel_scope.cancel()


async def test_a_json_patch_that_sets_resource_version_makes_it_a_precondition():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        _, made = await http.call("POST", CMS, {"metadata": {"name": "c"}, "data": {"a": "1"}})
        version = made["metadata"]["resourceVersion"]
        patch = [
            {"op": "replace", "path": "/data/a", "value": "2"},
            {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        ]
        code, patched = await http.call(
            "PATCH", CMS + "/c", patch, content_type="application/json-patch+json"
        )
        assert code == 200 and patched["data"] == {"a": "2"}
        code, status = await http.call(
            "PATCH", CMS + "/c", patch, content_type="application/json-patch+json"
        )
        assert code == 409 and status["reason"] == "Conflict"  # the version moved on
        nursery.cancel_scope.cancel()


async def test_duplicate_fields_are_refused_when_strict_and_warned_about_otherwise():
    raw = b'{"metadata": {"name": "c", "name": "d"}, "data": {"a": "1", "a": "2"}}'
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        code, status = await http.call("POST", CMS + "?fieldValidation=Strict", raw=raw)
        assert code == 400
        assert status["message"] == (
            'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding '
            'error: duplicate field "name", duplicate field "a"'
        )
        code, made = await http.call("POST", CMS, raw=raw)  # Warn: the last one counts
        assert code == 201 and made["metadata"]["name"] == "d" and made["data"] == {"a": "2"}
        assert 'duplicate field \\"name\\"' in http.headers["warning"]
        nursery.cancel_scope.cancel()


async def test_bodies_are_read_only_for_callers_who_may_send_them():
    # Decoding comes after authentication and authorization: a stranger's malformed or
    # expensive body is a 401, and a forbidden caller's a 403, never parsed.
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        yaml_bomb = b"- 1\n" * 100_000
        code, status = await http.call("PATCH", CMS + "/x?fieldManager=m", raw=yaml_bomb,
                                       content_type=APPLY, token="")  # fmt: skip
        assert code == 401 and status["reason"] == "Unauthorized"
        code, status = await http.call("POST", CMS, raw=b"{not json", token="alice-token")
        assert code == 403 and status["reason"] == "Forbidden"
        code, status = await http.call("POST", CMS, raw=b"{not json")
        assert code == 400  # the admin may: now it is read, and refused
        nested = b'{"metadata": {"name": "deep"}, "data": ' + b'{"a": ' * 150 + b"1" + b"}" * 151
        code, status = await http.call("POST", CMS, raw=nested)
        assert code == 400 and "nested deeper than 100 levels" in status["message"]
        nursery.cancel_scope.cancel()


async def test_json_patches_within_kubernetes_limits():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        http = await start(system, nursery)
        await http.call("POST", CMS, {"metadata": {"name": "c"}, "data": {"a": "x" * 1000}})
        # Each copy doubles the object: 30 would ask for gigabytes.
        doubling = [{"op": "copy", "from": "/data", "path": f"/data/x{i}"} for i in range(30)]
        code, status = await http.call("PATCH", CMS + "/c", doubling,
                                       content_type="application/json-patch+json")  # fmt: skip
        assert code == 422 and "copy operations add up to more than" in status["message"]
        many = [{"op": "test", "path": "/kind", "value": "ConfigMap"}] * 10_001
        code, status = await http.call("PATCH", CMS + "/c", many,
                                       content_type="application/json-patch+json")  # fmt: skip
        assert code == 413 and "maximum operations in a JSON patch is 10000" in status["message"]
        nursery.cancel_scope.cancel()
