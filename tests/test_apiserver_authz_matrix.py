"""The authorization matrix through the API server: anonymous, a user with a namespaced
Role, a service account bound to the ClusterRole edit, and a member of system:masters,
each sending every verb on pods, pods/status, configmaps, secrets, deployments,
deployments/scale and nodes, in the namespace of their bindings and in another.

Expected answers are RBAC's (kubernetes.io/docs/reference/access-authn-authz/rbac/ and
the bootstrap policy): denied is 403 Forbidden; allowed is whatever the request itself
earns (201 made, 404 not there, 200), never 403. With anonymous access disabled, a
request without credentials is 401 before RBAC is asked."""

from __future__ import annotations

import itertools

import trio

from actorkube.actor import Actor, ActorSystem, handler
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._messages import ApiRequest, StopWatch, WatchEvent
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group

TOKENS = "root-token,root,1,system:masters\nalice-token,alice,2\n"
RBAC = "rbac.authorization.k8s.io"

# (resource, group, subresource, verbs the object takes)
TARGETS = [
    ("pods", "", ""),
    ("pods", "", "status"),
    ("configmaps", "", ""),
    ("secrets", "", ""),
    ("deployments", "apps", ""),
    ("deployments", "apps", "scale"),
    ("nodes", "", ""),
]
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete")
SUBRESOURCE_VERBS = ("get", "update", "patch")  # what a status or scale subresource takes

# alice's Role in team-a: pods read, create and delete (not update), configmaps get only.
ALICE_ROLE = [
    {"apiGroups": [""], "resources": ["pods"],
     "verbs": ["get", "list", "watch", "create", "delete"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
]  # fmt: skip


def expected(who: str, verb: str, resource: str, sub: str, namespace: str) -> bool:
    """What RBAC allows, worked out by hand from the bindings the test makes."""
    if who == "root":
        return True  # system:masters
    if who == "anonymous" or resource == "nodes" or namespace != "team-a":
        return False  # no binding for them; every binding here is a RoleBinding in team-a
    if who == "alice":
        if sub:
            return False  # a rule for "pods" does not cover "pods/status"
        if resource == "pods":
            return verb in ("get", "list", "watch", "create", "delete")
        return resource == "configmaps" and verb == "get"
    # builder: edit. It writes pods, configmaps, secrets, deployments and their scale; it
    # reads pods/status (from view) but never writes status.
    if sub == "status":
        return verb == "get"
    return True


def body_for(resource: str, sub: str, name: str) -> dict:
    if sub == "status":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "status": {}}
    if sub == "scale":
        return {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name},
                "spec": {"replicas": 1}}  # fmt: skip
    if resource == "pods":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}  # fmt: skip
    if resource == "deployments":
        labels = {"app": name}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                "spec": {"selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}  # fmt: skip
    kind = {"configmaps": "ConfigMap", "secrets": "Secret", "nodes": "Node"}[resource]
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}


class Sink(Actor):
    @handler
    def on_event(self, msg: WatchEvent) -> None:
        pass


async def test_every_verb_is_allowed_or_denied_exactly_as_rbac_says(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        api = await start_apiserver(
            system,
            group.client(name="apiserver", timeout=30),
            tokens=parse_token_file(TOKENS),
            anonymous=True,
            seed=1,
        )
        await api.ready()

        async def root(verb, resource, **fields):
            answer = await api.ref.ask(ApiRequest(verb, resource, token="root-token", **fields))
            assert answer.code in (200, 201), answer.body
            return answer.body

        for ns in ("team-a", "team-b"):
            await root("create", "namespaces", body={"metadata": {"name": ns}})
            await root("create", "serviceaccounts", namespace=ns,
                       body={"metadata": {"name": "default"}})  # fmt: skip
        account = await root("create", "serviceaccounts", namespace="team-a",
                             body={"metadata": {"name": "builder"}})  # fmt: skip
        builder_token = api.service_accounts.issue(
            "team-a", "builder", account["metadata"]["uid"], now=system.clock.now()
        )
        await root("create", "roles", group=RBAC, namespace="team-a", body={
            "metadata": {"name": "pod-worker"}, "rules": ALICE_ROLE})  # fmt: skip
        for name, ref, subject in (
            ("alice-works", {"kind": "Role", "name": "pod-worker"},
             {"kind": "User", "apiGroup": RBAC, "name": "alice"}),
            ("builder-edits", {"kind": "ClusterRole", "name": "edit"},
             {"kind": "ServiceAccount", "name": "builder", "namespace": "team-a"}),
        ):  # fmt: skip
            await root("create", "rolebindings", group=RBAC, namespace="team-a", body={
                "metadata": {"name": name}, "roleRef": {"apiGroup": RBAC, **ref},
                "subjects": [subject]})  # fmt: skip
        await trio.sleep(1)  # the authorizer's cache takes the bindings in

        sink = system.spawn(Sink, name="sink")
        tokens = {"anonymous": "", "alice": "alice-token", "builder": builder_token,
                  "root": "root-token"}  # fmt: skip
        names = itertools.count()
        wrong = []
        checked = 0
        for (who, token), (resource, group_, sub), namespace, verb in itertools.product(
            tokens.items(), TARGETS, ("team-a", "team-b"), VERBS
        ):
            if sub and verb not in SUBRESOURCE_VERBS:
                continue
            ns = "" if resource == "nodes" else namespace
            if resource == "nodes" and namespace == "team-b":
                continue  # cluster-scoped: once is enough
            name = f"obj-{next(names)}"
            fields = dict(group=group_, namespace=ns, subresource=sub)
            if verb in ("get", "delete", "update", "patch"):
                fields["name"] = name
            if verb in ("create", "update"):
                fields["body"] = body_for(resource, sub, name)
            if verb == "patch":
                fields["body"] = {"metadata": {"labels": {"x": "y"}}}
                fields["content_type"] = "application/merge-patch+json"
            if verb == "watch":
                fields.update(watcher=sink, watch_id=checked + 1)
            answer = await api.ref.ask(ApiRequest(verb, resource, token=token, **fields))
            if verb == "watch" and answer.code == 200:
                api.ref.tell(StopWatch(sink, checked + 1))
            allowed = expected(who, verb, resource, sub, ns)
            ok = answer.code != 403 if allowed else answer.code == 403
            # Allowed requests get what the request earns, never an error of ours.
            ok = ok and (not allowed or answer.code in (200, 201, 404))
            if not ok:
                message = answer.body.get("message")
                wrong.append((who, verb, resource, sub, ns, answer.code, message))
            checked += 1
        assert not wrong, "\n".join(map(str, wrong))
        assert checked > 200

        # Denials name the user as Kubernetes does.
        denied = await api.ref.ask(ApiRequest("list", "secrets", namespace="team-a", token=""))
        assert denied.body["message"] == (
            'secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in '
            'API group "" in the namespace "team-a"'
        )


async def test_without_anonymous_access_no_credentials_is_401(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file(TOKENS), seed=1)  # fmt: skip
        await api.ready()
        for verb, resource in (("list", "pods"), ("get", "nodes"), ("create", "configmaps")):
            answer = await api.ref.ask(
                ApiRequest(verb, resource, namespace="default", name="x", token="")
            )
            assert answer.code == 401 and answer.body["reason"] == "Unauthorized"
        wrong = await api.ref.ask(ApiRequest("list", "pods", namespace="default", token="nope"))
        assert wrong.code == 401
