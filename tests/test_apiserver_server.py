"""The API server end to end through its actor: requests as the HTTP front end and the
in-cluster client will send them, on a 3-member etcd group, in virtual time. Expected
codes, reasons and messages are Kubernetes' (api-conventions.md, apimachinery's
StatusError, the RBAC and admission plugins' wording)."""

from __future__ import annotations

import json

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from actorkube.actor import Actor, ActorSystem, AskTimeout, handler
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._messages import ApiRequest, ApiResponse, StopWatch, WatchEvent
from actorkube.apiserver._server import ApiServer
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group

TOKENS = "admin-token,admin,1,system:masters\nalice-token,alice,2\n"


async def start(system: ActorSystem, audit=None):
    group = start_group(system, 3)
    api = await start_apiserver(
        system,
        group.client(name="apiserver", timeout=30),
        tokens=parse_token_file(TOKENS),
        seed=1,
        audit=audit or (lambda event: None),
    )
    await api.ready()
    return api


async def call(api, verb, resource, *, token="admin-token", **fields):
    return await api.ref.ask(ApiRequest(verb, resource, token=token, **fields), timeout=60)


def pod(name: str, **labels: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]},
    }


async def test_pods_are_created_defaulted_and_read_back(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        made = await call(api, "create", "pods", namespace="default", body=pod("web", app="w"))
        assert made.code == 201, made.body
        p = made.body
        assert p["spec"]["restartPolicy"] == "Always"
        assert p["spec"]["terminationGracePeriodSeconds"] == 30
        assert p["spec"]["serviceAccountName"] == "default"
        assert p["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
        assert {t["key"] for t in p["spec"]["tolerations"]} == {
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
        }
        assert p["metadata"]["namespace"] == "default" and p["metadata"]["uid"]
        got = await call(api, "get", "pods", namespace="default", name="web")
        assert got.code == 200 and got.body == p
        await call(api, "create", "pods", namespace="default", body=pod("db", app="d"))
        listed = await call(
            api, "list", "pods", namespace="default", params={"labelSelector": "app in (w)"}
        )
        assert [o["metadata"]["name"] for o in listed.body["items"]] == ["web"]
        assert listed.body["kind"] == "PodList"
        again = await call(api, "create", "pods", namespace="default", body=pod("web"))
        assert again.code == 409 and again.body["reason"] == "AlreadyExists"


async def test_invalid_objects_are_422_with_every_field_named(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        bad = pod("Bad_Name")
        bad["spec"] = {"containers": [{"name": "x"}], "restartPolicy": "Sometimes"}
        answer = await call(api, "create", "pods", namespace="default", body=bad)
        assert answer.code == 422 and answer.body["reason"] == "Invalid"
        fields = {c["field"] for c in answer.body["details"]["causes"]}
        assert fields == {"metadata.name", "spec.containers[0].image", "spec.restartPolicy"}
        assert answer.body["message"].startswith('Pod "Bad_Name" is invalid: [')
        assert 'spec.restartPolicy: Unsupported value: "Sometimes"' in answer.body["message"]
        nowhere = await call(api, "create", "pods", namespace="nowhere", body=pod("p"))
        assert nowhere.code == 404 and nowhere.body["message"] == 'namespaces "nowhere" not found'
        # Garbage in, a clear error out, and the server goes on serving.
        for request in (
            dict(verb="create", resource="pods", namespace="default", body=["not", "an", "object"]),
            dict(verb="list", resource="pods", params={"labelSelector": "a in (("}),
            dict(verb="get", resource="widgets", namespace="default", name="x"),
            dict(verb="frobnicate", resource="pods", namespace="default"),
        ):
            answer = await api.ref.ask(ApiRequest(token="admin-token", **request))
            assert answer.code in (400, 404, 405), (request, answer)
            assert answer.body["kind"] == "Status"
        assert (await call(api, "get", "namespaces", name="default")).code == 200


async def test_stale_updates_conflict_and_status_is_written_apart(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        made = (await call(api, "create", "pods", namespace="default", body=pod("web"))).body
        labelled = {**made, "metadata": {**made["metadata"], "labels": {"tier": "front"}}}
        labelled["status"] = {"phase": "Running"}  # ignored by an update of the pod itself
        first = await call(api, "update", "pods", namespace="default", name="web", body=labelled)
        assert first.code == 200 and first.body["status"]["phase"] == "Pending"
        stale = await call(api, "update", "pods", namespace="default", name="web", body=labelled)
        assert stale.code == 409 and stale.body["reason"] == "Conflict"
        running = {**first.body, "status": {"phase": "Running"}}
        running["metadata"] = {**running["metadata"], "labels": {"tier": "changed"}}
        status = await call(
            api,
            "update",
            "pods",
            namespace="default",
            name="web",
            subresource="status",
            body=running,
        )
        assert status.code == 200
        assert status.body["status"]["phase"] == "Running"
        assert status.body["metadata"]["labels"] == {"tier": "front"}  # only status changed
        moved = {**status.body, "spec": {**status.body["spec"], "restartPolicy": "Never"}}
        forbidden = await call(api, "update", "pods", namespace="default", name="web", body=moved)
        assert forbidden.code == 422 and "pod updates may not change fields" in str(forbidden.body)
        patched = await call(
            api,
            "patch",
            "pods",
            namespace="default",
            name="web",
            content_type="application/merge-patch+json",
            body={"metadata": {"labels": {"patched": "yes"}}},
        )
        assert patched.code == 200 and patched.body["metadata"]["labels"]["patched"] == "yes"


async def test_authentication_and_rbac(autojump_clock):
    events: list[dict] = []
    async with ActorSystem() as system:
        api = await start(system, audit=events.append)
        nobody = await call(api, "list", "pods", token="", namespace="default")
        assert nobody.code == 401
        denied = await call(api, "list", "pods", token="alice-token", namespace="default")
        assert denied.code == 403
        assert denied.body["message"] == (
            'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in '
            'the namespace "default"'
        )
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-views"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [
                {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}
            ],
        }
        made = await call(
            api,
            "create",
            "rolebindings",
            group="rbac.authorization.k8s.io",
            namespace="default",
            body=binding,
        )
        assert made.code == 201, made.body
        await trio.sleep(1)  # the authorizer's cache catches up
        allowed = await call(api, "list", "pods", token="alice-token", namespace="default")
        assert allowed.code == 200
        elsewhere = await call(api, "list", "pods", token="alice-token", namespace="kube-system")
        assert elsewhere.code == 403
        secrets = await call(api, "list", "secrets", token="alice-token", namespace="default")
        assert secrets.code == 403  # view does not read secrets
        write = await call(
            api, "create", "pods", token="alice-token", namespace="default", body=pod("p")
        )
        assert write.code == 403
        last = events[-1]
        assert last["user"]["username"] == "alice" and last["verb"] == "create"
        assert last["responseStatus"]["code"] == 403
        assert last["annotations"]["authorization.k8s.io/decision"] == "forbid"
        ok = next(
            e
            for e in events
            if e["responseStatus"]["code"] == 200 and e["user"].get("username") == "alice"
        )
        assert "RoleBinding" in ok["annotations"]["authorization.k8s.io/reason"]


class Collector(Actor):
    def __init__(self, events: list, done: trio.Event) -> None:
        self.events = events
        self.done = done

    @handler
    def on_event(self, msg: WatchEvent) -> None:
        self.events.append(msg)
        if msg.event is None:
            self.done.set()


async def test_a_watch_through_the_actor_sees_every_change_in_order(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        events: list[WatchEvent] = []
        done = trio.Event()
        me = system.spawn(lambda: Collector(events, done), name="collector")
        await call(
            api, "create", "configmaps", namespace="default", body={"metadata": {"name": "before"}}
        )
        answer = await call(
            api,
            "watch",
            "configmaps",
            namespace="default",
            watcher=me,
            watch_id=7,
            params={"resourceVersion": "0"},
        )
        assert answer.code == 200
        await call(
            api,
            "create",
            "configmaps",
            namespace="default",
            body={"metadata": {"name": "a"}, "data": {"k": "1"}},
        )
        await call(
            api, "patch", "configmaps", namespace="default", name="a", body={"data": {"k": "2"}}
        )
        await call(api, "delete", "configmaps", namespace="default", name="a")
        await trio.sleep(1)
        seen = [(e.event["type"], e.event["object"]["metadata"]["name"]) for e in events]
        assert seen == [("ADDED", "before"), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
        versions = [int(e.event["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions)
        assert {e.watch_id for e in events} == {7}
        api.ref.tell(StopWatch(me, 7))
        await done.wait()
        assert events[-1].event is None


@pytest.mark.parametrize("namespace", ["default", "kube-system"])
async def test_the_bootstrap_namespaces_cannot_be_deleted(autojump_clock, namespace):
    async with ActorSystem() as system:
        api = await start(system)
        answer = await call(api, "delete", "namespaces", name=namespace)
        assert answer.code == 403


async def test_binding_scale_and_eviction_subresources(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        await call(api, "create", "pods", namespace="default", body=pod("web"))
        bind = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "web"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"},
        }
        bound = await call(
            api, "create", "pods", namespace="default", name="web", subresource="binding", body=bind
        )
        assert bound.code == 201
        got = await call(api, "get", "pods", namespace="default", name="web")
        assert got.body["spec"]["nodeName"] == "n1"
        scheduled = [c for c in got.body["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert [c["status"] for c in scheduled] == ["True"]  # set by the binding
        # A binding for another incarnation of the pod (its uid) is refused.
        await call(api, "create", "pods", namespace="default", body=pod("other"))
        stale = {**bind, "metadata": {"name": "other", "uid": "not-its-uid"}}
        refused = await call(api, "create", "pods", namespace="default", name="other",
                             subresource="binding", body=stale)  # fmt: skip
        assert refused.code == 409 and "Precondition failed: UID" in refused.body["message"]
        again = await call(
            api, "create", "pods", namespace="default", name="web", subresource="binding", body=bind
        )
        assert again.code == 409 and "already assigned to node" in again.body["message"]
        evicted = await call(
            api,
            "create",
            "pods",
            namespace="default",
            name="web",
            subresource="eviction",
            body={"metadata": {"name": "web"}, "deleteOptions": {"gracePeriodSeconds": 0}},
        )
        assert evicted.code == 201
        gone = await call(api, "get", "pods", namespace="default", name="web")
        assert gone.code == 404
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        }
        made = await call(
            api, "create", "deployments", group="apps", namespace="default", body=deployment
        )
        assert made.code == 201, made.body
        assert made.body["spec"]["replicas"] == 1
        assert made.body["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == "25%"
        scale = await call(
            api,
            "get",
            "deployments",
            group="apps",
            namespace="default",
            name="web",
            subresource="scale",
        )
        assert scale.body["kind"] == "Scale" and scale.body["spec"]["replicas"] == 1
        assert scale.body["status"]["selector"] == "app=web"
        scaled = await call(
            api,
            "patch",
            "deployments",
            group="apps",
            namespace="default",
            name="web",
            subresource="scale",
            body={"spec": {"replicas": 5}},
        )
        assert scaled.code == 200 and scaled.body["spec"]["replicas"] == 5
        dep = await call(api, "get", "deployments", group="apps", namespace="default", name="web")
        assert dep.body["spec"]["replicas"] == 5 and dep.body["metadata"]["generation"] == 2
        bad = await call(
            api,
            "patch",
            "deployments",
            group="apps",
            namespace="default",
            name="web",
            subresource="scale",
            body={"spec": {"replicas": -1}},
        )
        assert bad.code == 422


async def test_concurrent_watches_on_different_workers_all_start(autojump_clock):
    # Found by the API server fault test: each worker named its pumps watch-1, watch-2,
    # ...; actor names are the system's, so a second worker's first watch failed, the
    # worker never reported back, and the pool shrank until requests hung.
    async with ActorSystem() as system:
        api = await start(system)
        me = system.spawn(lambda: Collector([], trio.Event()), name="collector")
        answers = []

        async def watch(watch_id: int) -> None:
            answers.append(
                await call(
                    api, "watch", "configmaps", namespace="default", watcher=me, watch_id=watch_id
                )
            )

        async with trio.open_nursery() as nursery:
            for watch_id in range(4):
                nursery.start_soon(watch, watch_id)
        assert [a.code for a in answers] == [200] * 4
        for _ in range(40):  # every worker still serves
            assert (await call(api, "get", "namespaces", name="default")).code == 200


async def test_a_service_account_token_is_authorized_by_its_bindings(autojump_clock):
    # Kubernetes: a service account authenticates as system:serviceaccount:<ns>:<name>
    # and is matched by ServiceAccount subjects and by the system:serviceaccounts groups.
    async with ActorSystem() as system:
        api = await start(system)
        account = (
            await call(api, "get", "serviceaccounts", namespace="default", name="default")
        ).body
        token = api.service_accounts.issue(
            "default", "default", account["metadata"]["uid"], now=system.clock.now()
        )
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "default-reads-pods"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
        }
        rbac = "rbac.authorization.k8s.io"
        assert (
            await call(api, "create", "roles", group=rbac, namespace="default", body=role)
        ).code == 201
        assert (
            await call(api, "create", "rolebindings", group=rbac, namespace="default", body=binding)
        ).code == 201
        await trio.sleep(1)
        matrix = [
            (dict(verb="list", resource="pods", namespace="default"), 200),
            (dict(verb="list", resource="pods", namespace="kube-system"), 403),
            (dict(verb="create", resource="pods", namespace="default", body=pod("p")), 403),
            (dict(verb="list", resource="secrets", namespace="default"), 403),
            (dict(verb="get", resource="namespaces", name="default"), 403),
        ]
        for request, code in matrix:
            answer = await api.ref.ask(ApiRequest(token=token, **request))
            assert answer.code == code, (request, answer.body)
        denied = await api.ref.ask(ApiRequest("list", "secrets", namespace="default", token=token))
        assert 'User "system:serviceaccount:default:default" cannot list' in denied.body["message"]
        # A token for an account that is gone (deleted, then made again) no longer works.
        await call(api, "delete", "serviceaccounts", namespace="default", name="default")
        await call(
            api,
            "create",
            "serviceaccounts",
            namespace="default",
            body={"metadata": {"name": "default"}},
        )
        await trio.sleep(1)
        stale = await api.ref.ask(ApiRequest("list", "pods", namespace="default", token=token))
        assert stale.code == 401


async def test_lists_from_the_cache_and_from_etcd_hold_the_same_objects(autojump_clock):
    # A list at "" or "0" is the cache's JSON spliced; one with a limit reads etcd.
    async with ActorSystem() as system:
        api = await start(system)
        for i in range(5):
            await call(api, "create", "pods", namespace="default", body=pod(f"p{i}", i=str(i)))
        await call(api, "delete", "pods", namespace="default", name="p3")
        await trio.sleep(1)
        from_etcd = await call(api, "list", "pods", namespace="default", params={"limit": "100"})
        for rv in ("", "0"):
            cached = await call(
                api, "list", "pods", namespace="default", params={"resourceVersion": rv}
            )
            assert cached.raw and cached.body["kind"] == "PodList"
            assert cached.body["items"] == from_etcd.body["items"]
        assert [p["metadata"]["name"] for p in from_etcd.body["items"]] == ["p0", "p1", "p2", "p4"]
        chosen = await call(
            api, "list", "pods", namespace="default", params={"labelSelector": "i in (1,4)"}
        )
        assert [p["metadata"]["name"] for p in chosen.body["items"]] == ["p1", "p4"]


async def test_a_watch_of_one_named_object_sees_that_object_only(autojump_clock):
    # RBAC may grant a watch on one name (resourceNames); the watch must then carry that
    # object's events and no other's, as Kubernetes turns the name into a field selector.
    async with ActorSystem() as system:
        api = await start(system)
        rbac = "rbac.authorization.k8s.io"
        role = {"metadata": {"name": "only-a"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"],
             "verbs": ["get", "watch"]}]}  # fmt: skip
        binding = {"metadata": {"name": "alice-only-a"},
                   "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "only-a"},
                   "subjects": [{"kind": "User", "apiGroup": rbac, "name": "alice"}]}  # fmt: skip
        assert (await call(api, "create", "roles", group=rbac, namespace="default",
                           body=role)).code == 201  # fmt: skip
        assert (await call(api, "create", "rolebindings", group=rbac, namespace="default",
                           body=binding)).code == 201  # fmt: skip
        await trio.sleep(1)
        for name in ("a", "b"):
            assert (
                await call(api, "create", "pods", namespace="default", body=pod(name))
            ).code == 201
        events: list = []
        done = trio.Event()
        collector = system.spawn(lambda: Collector(events, done), name="named-watch")
        answer = await call(api, "watch", "pods", token="alice-token", namespace="default",
                            name="a", watcher=collector, watch_id=1)  # fmt: skip
        assert answer.code == 200, answer.body
        await trio.sleep(1)
        names = [e.event["object"]["metadata"]["name"] for e in events if e.event]
        assert names == ["a"]
        other = await call(api, "get", "pods", token="alice-token", namespace="default", name="b")
        assert other.code == 403


class _HeldHandler:
    """Serves every request at once, but the first only when ``release`` is set: the
    one worker is busy until then and the others wait at the front."""

    def __init__(self) -> None:
        self.release = trio.Event()
        self.served: list[str] = []
        self.then = lambda: None  # run as the first request's answer is made

    async def handle(self, req: ApiRequest):
        self.served.append(req.name)
        if len(self.served) == 1:
            await self.release.wait()
            self.then()
        return ApiResponse(200, {"name": req.name}), None


async def test_a_request_whose_asker_gave_up_is_not_served(autojump_clock):
    # Under overload the queue at the front holds requests whose clients timed out and
    # will retry; serving them as well would double the load exactly when the server is
    # behind (kube-apiserver drops them too).
    held = _HeldHandler()
    async with ActorSystem() as system:
        front = ApiServer(held, workers=1)
        ref = system.spawn(lambda: front, name="front")

        async def ask(name: str, timeout: float):
            return await ref.ask(ApiRequest("get", "pods", name=name), timeout=timeout)

        answers: dict[str, object] = {}

        async def keep(name: str, timeout: float) -> None:
            try:
                answers[name] = (await ask(name, timeout)).body["name"]
            except AskTimeout:
                answers[name] = "timed out"

        cancel_me = trio.CancelScope()

        async def cancelled() -> None:
            with cancel_me:
                await ask("cancelled", 60)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep, "first", 60)
            await wait_all_tasks_blocked()  # the one worker holds "first"
            nursery.start_soon(keep, "impatient", 1)
            nursery.start_soon(cancelled)
            nursery.start_soon(keep, "patient", 60)
            await wait_all_tasks_blocked()  # all three wait at the front
            cancel_me.cancel()
            await trio.sleep(5)  # the impatient ask times out while the worker is busy
            held.release.set()
        assert answers["impatient"] == "timed out"
        assert answers["first"] == "first" and answers["patient"] == "patient"
        assert held.served == ["first", "patient"]
        assert front.abandoned == 2
        assert not front.pending and not front.requests and not front.waiting


async def test_a_busy_worker_takes_the_next_request_itself(autojump_clock):
    # The worker replies to each asker itself and takes the next waiting request
    # without a message: the front handles only the asks, the worker one _Work.
    held = _HeldHandler()
    async with ActorSystem() as system:
        front = ApiServer(held, workers=1)
        ref = system.spawn(lambda: front, name="front")
        answers: list[str] = []

        async def ask(name: str) -> None:
            answers.append((await ref.ask(ApiRequest("get", "pods", name=name))).body["name"])

        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c", "d"):
                nursery.start_soon(ask, name)
                await wait_all_tasks_blocked()  # in this order
            held.release.set()
        assert held.served == ["a", "b", "c", "d"] and sorted(answers) == held.served
        actors = system.stats().actors
        assert actors["front"].processed == 4
        assert actors["front-worker-0"].processed == 1
        assert front.free and not front.pending and not front.requests and not front.waiting


async def test_a_worker_reports_back_to_a_front_whose_mailbox_is_full(autojump_clock):
    # Found by the 5,000-node density run: the front's mailbox full of waiting asks
    # dropped a worker's _Done (mailbox full: dead letters), the worker was never free
    # again, and once all 32 were lost every request waited forever at 15% CPU.
    held = _HeldHandler()
    async with ActorSystem() as system:
        front = ApiServer(held, workers=1)
        ref = system.spawn(lambda: front, name="front", mailbox_size=2)
        nobody = system.spawn(lambda: Collector([], trio.Event()), name="nobody")
        # The worker's report comes the instant the front's mailbox is full.
        held.then = lambda: [ref.tell(StopWatch(nobody, i)) for i in range(3)]
        answers: dict[str, int] = {}

        async def ask(name: str) -> None:
            answers[name] = (await ref.ask(ApiRequest("get", "pods", name=name), timeout=60)).code

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "first")
            await wait_all_tasks_blocked()
            nursery.start_soon(ask, "second")
            await wait_all_tasks_blocked()
            held.release.set()
        assert answers == {"first": 200, "second": 200}
        assert held.served == ["first", "second"]
        # (a StopWatch: a worker that finishes reports through no mailbox)
        assert system.dead_letters.by_reason["mailbox full"] == 1


async def test_a_watch_pump_forwards_a_burst_without_yielding_per_event(autojump_clock):
    """A pump that yielded for each queued event forwarded one per round of every ready
    task in the process: busy, it fell behind its cache until its watcher was ended.
    A burst goes in streaks instead: far fewer rounds than events."""
    from actorkube.apiserver._server import BATCH, STREAK, _WatchPump
    from actorkube.apiserver._watchcache import Event, Watcher

    got: list[WatchEvent] = []

    class Target(Actor):
        @handler
        def on_event(self, msg: WatchEvent) -> None:
            got.append(msg)

    burst = 20 * STREAK
    watcher = Watcher(lambda o: True, burst, False)
    for i in range(burst):
        assert watcher.offer(Event(type="ADDED", object={"metadata": {"name": f"p{i}"}}))
    rounds = 0
    async with ActorSystem() as system:
        target = system.spawn(Target, name="target")
        system.spawn(lambda: _WatchPump(watcher, target, 1, 5.0), name="pump")
        while sum(1 + len(m.more) for m in got) < burst:
            rounds += 1  # this task runs once per round of the ready tasks
            await trio.lowlevel.checkpoint()
        assert [m.seq for m in got] == list(range(1, len(got) + 1))
        names = [json.loads(data)["object"]["metadata"]["name"]
                 for m in got for data in (m.data, *m.more)]  # fmt: skip
        assert names == [f"p{i}" for i in range(burst)]
        # What was queued went in batches: a message per BATCH events, not per event.
        assert len(got) == burst // BATCH
        assert rounds < burst // 4, rounds
        watcher.end("done")
