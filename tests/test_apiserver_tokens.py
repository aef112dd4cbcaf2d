"""TokenRequest (serviceaccounts/token) through the API server, and the rules around it
that keep it safe: a node may only get tokens bound to a pod on itself (Kubernetes'
NodeRestriction), a token bound to a pod must be of the account the pod runs as, and
what cannot be bound is a 400. Also DeleteOptions of the wrong types (400, not 500) and
a Job's orphaning default giving way to a cascade finalizer it already has."""

from __future__ import annotations

from inproc_api import TOKENS, call, start_api

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiRequest

NODE_TOKENS = TOKENS + "n1-token,system:node:n1,n1,system:nodes\n"


async def as_node(api, verb, resource, **fields):
    fields.setdefault("namespace", "default")
    return await api.ref.ask(ApiRequest(verb, resource, token="n1-token", **fields), timeout=60)


def pod(name: str, node: str, account: str = "default") -> dict:
    return {"metadata": {"name": name},
            "spec": {"nodeName": node, "serviceAccountName": account,
                     "containers": [{"name": "c", "image": "pause"}]}}  # fmt: skip


def token_request(ref: dict | None = None) -> dict:
    spec = {"boundObjectRef": ref} if ref is not None else {}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


async def test_a_node_gets_tokens_only_bound_to_pods_on_itself(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system, NODE_TOKENS)
        await call(api, "create", "serviceaccounts", namespace="kube-system",
                   body={"metadata": {"name": "powerful"}})  # fmt: skip
        mine = (await call(api, "create", "pods", namespace="default",
                           body=pod("mine", "n1"))).body  # fmt: skip
        theirs = (await call(api, "create", "pods", namespace="default",
                             body=pod("theirs", "n2"))).body  # fmt: skip

        def ref(p: dict, **extra) -> dict:
            return {"apiVersion": "v1", "kind": "Pod", "name": p["metadata"]["name"],
                    "uid": p["metadata"]["uid"], **extra}  # fmt: skip

        async def ask(namespace, account, body):
            return await as_node(api, "create", "serviceaccounts", namespace=namespace,
                                 name=account, subresource="token", body=body)  # fmt: skip

        unbound = await ask("kube-system", "powerful", token_request())
        assert unbound.code == 403
        assert unbound.body["message"] == ('serviceaccounts "powerful" is forbidden: node '
                                           "requested token not bound to a pod")  # fmt: skip
        no_uid = await ask("default", "default", token_request({**ref(mine), "uid": ""}))
        assert no_uid.code == 403 and "without a uid" in no_uid.body["message"]
        elsewhere = await ask("default", "default", token_request(ref(theirs)))
        assert elsewhere.code == 403
        assert "scheduled on a different node" in elsewhere.body["message"]
        granted = await ask("default", "default", token_request(ref(mine)))
        assert granted.code == 201 and granted.body["status"]["token"]


async def test_a_pod_bound_token_must_be_the_pods_account_and_of_a_core_kind(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "serviceaccounts", namespace="default",
                   body={"metadata": {"name": "other"}})  # fmt: skip
        p = (await call(api, "create", "pods", namespace="default", body=pod("p", "n1"))).body
        ref = {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": p["metadata"]["uid"]}

        async def ask(account, body):
            return await call(api, "create", "serviceaccounts", namespace="default",
                              name=account, subresource="token", body=body)  # fmt: skip

        wrong = await ask("other", token_request(ref))
        assert wrong.code == 400 and "different serviceaccount name" in wrong.body["message"]
        apps = await ask("default", token_request({**ref, "apiVersion": "apps/v1"}))
        assert apps.code == 400 and "cannot bind token for object of type" in apps.body["message"]
        assert (await ask("default", token_request(ref))).code == 201


async def test_delete_options_of_the_wrong_types_are_a_400(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        ns = "default"
        await call(api, "create", "configmaps", namespace=ns, body={"metadata": {"name": "c"}})
        bad = ({"gracePeriodSeconds": "abc"}, {"preconditions": "x"}, {"propagationPolicy": 3},
               {"dryRun": "All"}, {"orphanDependents": "yes"})  # fmt: skip
        for body in bad:
            answer = await call(api, "delete", "configmaps", namespace=ns, name="c", body=body)
            assert answer.code == 400, (body, answer.body)
        assert (await call(api, "get", "configmaps", namespace=ns, name="c")).code == 200


async def test_a_jobs_orphan_default_gives_way_to_its_foreground_finalizer(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        template = {"spec": {"containers": [{"name": "c", "image": "i"}],
                             "restartPolicy": "Never"}}  # fmt: skip
        for name in ("fore", "plain"):
            job = {"metadata": {"name": name}, "spec": {"template": template}}
            made = await call(api, "create", "jobs", namespace="default", group="batch", body=job)
            assert made.code == 201, made.body
        first = await call(api, "delete", "jobs", namespace="default", group="batch",
                           name="fore", body={"propagationPolicy": "Foreground"})  # fmt: skip
        assert first.body["metadata"]["finalizers"] == ["foregroundDeletion"]
        again = await call(api, "delete", "jobs", namespace="default", group="batch", name="fore")
        assert again.body["metadata"]["finalizers"] == ["foregroundDeletion"]
        assert "child pods are preserved" in again.warnings[0]
        plain = await call(api, "delete", "jobs", namespace="default", group="batch",
                           name="plain")  # fmt: skip
        assert plain.body["metadata"]["finalizers"] == ["orphan"]


async def test_a_token_review_checks_the_audiences_asked_for(autojump_clock):
    """TokenReview authenticates for spec.audiences (the API server's when none): a
    token made for another audience is valid there and only there, and a static token
    is the API server's alone; status.audiences says for which."""
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "serviceaccounts", namespace="default",
                   body={"metadata": {"name": "reader"}})  # fmt: skip
        made = await call(api, "create", "serviceaccounts", namespace="default", name="reader",
                          subresource="token", body={**token_request(), "spec": {
                              "audiences": ["vault", "other"]}})  # fmt: skip
        vault_token = made.body["status"]["token"]

        async def review(token, audiences=None):
            spec = {"token": token, **({"audiences": audiences} if audiences is not None else {})}
            got = await call(api, "create", "tokenreviews", group="authentication.k8s.io",
                             namespace="", body={"apiVersion": "authentication.k8s.io/v1",
                                                 "kind": "TokenReview", "spec": spec})  # fmt: skip
            assert got.code == 201, got.body
            return got.body["status"]

        status = await review(vault_token, ["vault", "elsewhere"])
        assert status["authenticated"] and status["audiences"] == ["vault"]
        assert status["user"]["username"] == "system:serviceaccount:default:reader"
        assert not (await review(vault_token))["authenticated"]  # not the API server's
        assert not (await review(vault_token, ["elsewhere"]))["authenticated"]
        admin = await review("admin-token")
        assert admin["authenticated"] and admin["audiences"] == [
            "https://kubernetes.default.svc.cluster.local"]
        assert not (await review("admin-token", ["vault"]))["authenticated"]
        # The token is no key to the API itself.
        denied = await api.ref.ask(ApiRequest("list", "pods", namespace="default",
                                              token=vault_token), timeout=60)  # fmt: skip
        assert denied.code == 401
        bad = await call(api, "create", "tokenreviews", group="authentication.k8s.io",
                         namespace="", body={"spec": {"token": "x", "audiences": "vault"}})
        assert bad.code == 400
