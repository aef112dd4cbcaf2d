"""The EndpointSlice and Endpoints controllers against a real API server on a 3-member
etcd group, in virtual time, each running as its Kubernetes service account with its
bootstrap RBAC role. Pods' status (podIP, Ready) is written through the status
subresource, as the kubelet writes it. Then the pure slice planner on its own."""

from __future__ import annotations

import pytest
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.client import ApiClient, Informer
from actorkube.controllers import EndpointsController, EndpointSliceController
from actorkube.controllers._pod_endpoints import EndpointPort, PodEndpoint, find_port
from actorkube.controllers._slices import MAX_ENDPOINTS_PER_SLICE, plan
from actorkube.etcd import start_group

SA = "system:serviceaccount:kube-system"
TOKENS = (
    "admin-token,admin,1,system:masters\n"
    f"slices-token,{SA}:endpointslice-controller,2,system:serviceaccounts\n"
    f"endpoints-token,{SA}:endpoint-controller,3,system:serviceaccounts\n"
    "nobody-token,nobody,4\n"
)
DISCOVERY = "discovery.k8s.io"


async def start(system: ActorSystem, slices_token: str = "slices-token"):
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), seed=5)  # fmt: skip
    await api.ready()
    slicer = EndpointSliceController(api.ref, token=slices_token)
    endpointer = EndpointsController(api.ref, token="endpoints-token")
    system.spawn(lambda: slicer, name="endpointslice-controller")
    system.spawn(lambda: endpointer, name="endpoint-controller")
    return ApiClient(system, api.ref, token="admin-token"), slicer


def service(name: str, ports=None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name},
                     "ports": ports or [{"name": "http", "port": 80, "targetPort": 8080}],
                     **spec}}  # fmt: skip


def pod(name: str, app: str, *ports: tuple[str, int], node: str = "n1") -> dict:
    container = {"name": "c", "image": "pause",
                 "ports": [{"name": n, "containerPort": p} for n, p in ports]}  # fmt: skip
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"containers": [container], "nodeName": node}}  # fmt: skip


async def run_pod(client: ApiClient, body: dict, ip: str, ready: bool = True) -> dict:
    """Create the pod, then write its status as the kubelet would."""
    await client.create("pods", body, namespace="default")
    return await set_ready(client, body["metadata"]["name"], ready, ip=ip)


async def set_ready(client: ApiClient, name: str, ready: bool, ip: str | None = None) -> dict:
    status: dict = {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return await client.patch("pods", name, {"status": status}, namespace="default",
                              subresource="status")  # fmt: skip


async def until(client: ApiClient, resource: str, check, *, group: str = "",
                limit: float = 120.0):  # fmt: skip
    """Wait until ``check(objects)`` of ``resource`` in default is true, woken by each
    change an informer sees (no polling); return what it returned."""
    informer = Informer(client, resource, group=group, namespace="default")
    wake = trio.Event()

    def poke(*_: object) -> None:
        wake.set()

    informer.add_handler(poke, poke, poke)
    result = None
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            await nursery.start(informer.run)
            while not result:
                result = check(informer.list())
                if not result:
                    wake = trio.Event()
                    await wake.wait()
            nursery.cancel_scope.cancel()
    return result


def slices_of(name: str):
    def check(items: list[dict]) -> list[dict]:
        return [s for s in items
                if s["metadata"]["labels"].get("kubernetes.io/service-name") == name]  # fmt: skip

    return check


def endpoints_by_pod(found: list[dict]) -> dict[str, dict]:
    return {e["targetRef"]["name"]: e for s in found for e in s.get("endpoints") or []}


def slice_state(name: str, expected: dict[str, tuple[bool, bool, bool]]):
    """Slices of ``name`` whose endpoints are exactly ``expected``: pod -> (ready,
    serving, terminating)."""

    def check(items: list[dict]):
        found = slices_of(name)(items)
        eps = endpoints_by_pod(found)
        got = {pod: (e["conditions"]["ready"], e["conditions"]["serving"],
                     e["conditions"]["terminating"]) for pod, e in eps.items()}  # fmt: skip
        return found if found and got == expected else None

    return check


def endpoints_state(name: str, ready: list[str], not_ready: list[str]):
    def check(items: list[dict]):
        for ep in items:
            if ep["metadata"]["name"] != name:
                continue
            subsets = ep.get("subsets") or []
            got_ready = [a["targetRef"]["name"] for s in subsets for a in s.get("addresses") or []]
            got_not = [a["targetRef"]["name"]
                       for s in subsets for a in s.get("notReadyAddresses") or []]  # fmt: skip
            if got_ready == ready and got_not == not_ready:
                return ep
        return None

    return check


async def test_slices_and_endpoints_follow_pods_becoming_ready(autojump_clock):
    async with ActorSystem() as system:
        client, slicer = await start(system)
        svc = await client.create("services", service("web"), namespace="default")
        await run_pod(client, pod("web-a", "web"), "127.0.10.1")
        await run_pod(client, pod("web-b", "web", node="n2"), "127.0.10.2")
        await run_pod(client, pod("web-c", "web"), "127.0.10.3", ready=False)
        await run_pod(client, pod("other", "db"), "127.0.10.9")
        await client.create("pods", pod("no-ip", "web"), namespace="default")  # not running
        found = await until(client, "endpointslices", slice_state("web", {
            "web-a": (True, True, False), "web-b": (True, True, False),
            "web-c": (False, False, False)}), group=DISCOVERY)  # fmt: skip
        assert len(found) == 1
        (s,) = found
        assert s["addressType"] == "IPv4"
        assert s["metadata"]["name"].startswith("web-")
        assert s["metadata"]["labels"] == {
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        (owner,) = s["metadata"]["ownerReferences"]
        assert owner == {"apiVersion": "v1", "kind": "Service", "name": "web",
                         "uid": svc["metadata"]["uid"], "controller": True,
                         "blockOwnerDeletion": True}  # fmt: skip
        assert s["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        b = endpoints_by_pod(found)["web-b"]
        assert b["addresses"] == ["127.0.10.2"] and b["nodeName"] == "n2"
        assert b["targetRef"]["kind"] == "Pod" and b["targetRef"]["namespace"] == "default"
        ep = await until(client, "endpoints", endpoints_state("web", ["web-a", "web-b"],
                                                              ["web-c"]))  # fmt: skip
        assert ep["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["127.0.10.1", "127.0.10.2"]
        # web-c becomes ready, web-a stops being ready.
        await set_ready(client, "web-c", True)
        await set_ready(client, "web-a", False)
        again = await until(client, "endpointslices", slice_state("web", {
            "web-a": (False, False, False), "web-b": (True, True, False),
            "web-c": (True, True, False)}), group=DISCOVERY)  # fmt: skip
        assert [x["metadata"]["name"] for x in again] == [s["metadata"]["name"]]  # in place
        await until(client, "endpoints", endpoints_state("web", ["web-b", "web-c"], ["web-a"]))
        assert slicer.errors == 0


async def test_named_target_ports_are_looked_up_in_each_pod(autojump_clock):
    async with ActorSystem() as system:
        client, _ = await start(system)
        ports = [{"name": "http", "port": 80, "targetPort": "web"},
                 {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "UDP"}]
        await client.create("services", service("app", ports), namespace="default")
        await run_pod(client, pod("p1", "app", ("web", 8080)), "127.0.11.1")
        await run_pod(client, pod("p2", "app", ("web", 9090)), "127.0.11.2")
        await run_pod(client, pod("p3", "app", ("other", 7000)), "127.0.11.3")
        found = await until(client, "endpointslices", slice_state("app", {
            "p1": (True, True, False), "p2": (True, True, False), "p3": (True, True, False)}),
            group=DISCOVERY)  # fmt: skip
        by_ports = {tuple((p["name"], p["port"]) for p in s["ports"]):
                    [e["targetRef"]["name"] for e in s["endpoints"]] for s in found}  # fmt: skip
        # A named port of the wrong protocol does not count: UDP "dns" is nowhere.
        assert by_ports == {(("http", 8080),): ["p1"], (("http", 9090),): ["p2"], (): ["p3"]}
        ep = await until(client, "endpoints", endpoints_state("app", ["p1", "p2"], []))
        ports_of = {s["addresses"][0]["targetRef"]["name"]: s["ports"] for s in ep["subsets"]}
        assert ports_of == {"p1": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                            "p2": [{"name": "http", "port": 9090, "protocol": "TCP"}]}


async def test_publish_not_ready_addresses_and_terminating_pods(autojump_clock):
    async with ActorSystem() as system:
        client, _ = await start(system)
        await client.create("services", service("open", publishNotReadyAddresses=True),
                            namespace="default")  # fmt: skip
        await client.create("services", service("shut"), namespace="default")
        for app in ("open", "shut"):
            await run_pod(client, pod(f"{app}-up", app), f"127.0.12.{len(app)}")
            await run_pod(client, pod(f"{app}-down", app), f"127.0.12.{len(app) + 10}", False)
            await run_pod(client, pod(f"{app}-bye", app), f"127.0.12.{len(app) + 20}")
            # A graceful delete of a pod on a node only marks it: it is terminating.
            await client.delete("pods", f"{app}-bye", namespace="default", grace_period=60)
        await until(client, "endpointslices", slice_state("open", {
            "open-up": (True, True, False), "open-down": (True, False, False),
            "open-bye": (True, True, True)}), group=DISCOVERY)  # fmt: skip
        await until(client, "endpointslices", slice_state("shut", {
            "shut-up": (True, True, False), "shut-down": (False, False, False),
            "shut-bye": (False, True, True)}), group=DISCOVERY)  # fmt: skip
        # Endpoints: with publishNotReadyAddresses every pod is an address, terminating
        # ones too; without, a terminating pod is left out.
        await until(client, "endpoints", lambda items: any(
            e["metadata"]["name"] == "open" and sorted(
                a["targetRef"]["name"] for s in e.get("subsets") or ()
                for a in s.get("addresses") or ()) == ["open-bye", "open-down", "open-up"]
            for e in items))  # fmt: skip
        await until(client, "endpoints", endpoints_state("shut", ["shut-up"], ["shut-down"]))


async def test_deleted_pods_selector_changes_and_deleted_services(autojump_clock):
    async with ActorSystem() as system:
        client, _ = await start(system)
        await client.create("services", service("svc"), namespace="default")
        await run_pod(client, pod("a", "svc"), "127.0.13.1")
        await run_pod(client, pod("b", "svc"), "127.0.13.2")
        await run_pod(client, pod("c", "other"), "127.0.13.3")
        await until(client, "endpointslices", slice_state("svc", {
            "a": (True, True, False), "b": (True, True, False)}), group=DISCOVERY)  # fmt: skip
        await client.delete("pods", "a", namespace="default", grace_period=0)
        await until(client, "endpointslices", slice_state("svc", {"b": (True, True, False)}),
                    group=DISCOVERY)  # fmt: skip
        await client.patch("services", "svc", {"spec": {"selector": {"app": "other"}}},
                           namespace="default")  # fmt: skip
        await until(client, "endpointslices", slice_state("svc", {"c": (True, True, False)}),
                    group=DISCOVERY)  # fmt: skip
        await until(client, "endpoints", endpoints_state("svc", ["c"], []))
        await client.delete("pods", "c", namespace="default", grace_period=0)
        # No endpoints: one placeholder slice says so.
        (placeholder,) = await until(client, "endpointslices", lambda items: [
            s for s in slices_of("svc")(items) if not s.get("endpoints")] if len(
            slices_of("svc")(items)) == 1 else None, group=DISCOVERY)  # fmt: skip
        assert not placeholder.get("ports")
        await until(client, "endpoints", lambda items: any(
            e["metadata"]["name"] == "svc" and not e.get("subsets") for e in items))
        await client.delete("services", "svc", namespace="default")
        await until(client, "endpointslices", lambda items: not slices_of("svc")(items),
                    group=DISCOVERY)  # fmt: skip
        await until(client, "endpoints", lambda items: all(
            e["metadata"]["name"] != "svc" for e in items) or None)


async def test_more_than_a_hundred_pods_take_several_slices(autojump_clock):
    async with ActorSystem() as system:
        client, _ = await start(system)
        await client.create("services", service("big"), namespace="default")
        count = 2 * MAX_ENDPOINTS_PER_SLICE + 5
        for i in range(count):
            await run_pod(client, pod(f"big-{i}", "big"), f"127.1.{i // 250}.{i % 250 + 1}")
        found = await until(client, "endpointslices", lambda items: (
            slices_of("big")(items)
            if len(endpoints_by_pod(slices_of("big")(items))) == count else None),
            group=DISCOVERY)  # fmt: skip
        sizes = sorted(len(s["endpoints"]) for s in found)
        assert sizes == [5, 100, 100]
        ep = await until(client, "endpoints", lambda items: next(
            (e for e in items if e["metadata"]["name"] == "big"
             and len(e["subsets"][0]["addresses"]) == count), None))  # fmt: skip
        assert len(ep["subsets"]) == 1


async def test_malformed_pods_are_skipped_and_failures_retry_with_backoff(autojump_clock):
    async with ActorSystem() as system:
        # The slice controller first runs as a user who may read but not write.
        client, slicer = await start(system, slices_token="nobody-token")
        await client.create("clusterrolebindings", binding("nobody-view", "view"), group=RBAC)
        await client.create("services", service("web"), namespace="default")
        await run_pod(client, pod("good", "web"), "127.0.14.1")
        await client.create("pods", pod("bad", "web"), namespace="default")
        await client.patch("pods", "bad", {"status": {"podIP": "not-an-ip", "conditions": [
            {"type": "Ready", "status": "Maybe"}]}}, namespace="default",
            subresource="status")  # fmt: skip
        with trio.fail_after(60):
            await slicer.wait_until(lambda: slicer.errors >= 3)  # retried, backing off
        role = binding("nobody-slices", "system:controller:endpointslice-controller")
        await client.create("clusterrolebindings", role, group=RBAC)
        await until(client, "endpointslices", slice_state("web", {"good": (True, True, False)}),
                    group=DISCOVERY, limit=2000)  # fmt: skip
        await until(client, "endpoints", endpoints_state("web", ["good"], []))


RBAC = "rbac.authorization.k8s.io"


def binding(name: str, role: str) -> dict:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "User", "name": "nobody"}]}  # fmt: skip


# --- the pure planner ---------------------------------------------------------------------


SVC = {"metadata": {"name": "s", "namespace": "default", "uid": "u1"},
       "spec": {"selector": {"app": "s"}, "ports": [{"port": 80}]}}  # fmt: skip
PORT = (EndpointPort("", 80, "TCP"),)


def endpoint(i: int, ready: bool = True, ports=PORT) -> PodEndpoint:
    return PodEndpoint(f"127.0.0.{i}", "default", f"p{i}", f"uid{i}", "n", "", ready, ready,
                       False, ports)  # fmt: skip


def materialize(p, existing: list[dict]) -> list[dict]:
    """The slices after the plan's writes (new ones named in order)."""
    names = {s["metadata"]["name"] for s in p.delete}
    kept = {s["metadata"]["name"]: s for s in existing if s["metadata"]["name"] not in names}
    for s in p.update:
        kept[s["metadata"]["name"]] = s
    for i, s in enumerate(p.create):
        s = {**s, "metadata": {**s["metadata"], "name": f"new-{len(existing)}-{i}"}}
        kept[s["metadata"]["name"]] = s
    return list(kept.values())


def test_plan_keeps_endpoints_where_they_are():
    first = plan(SVC, [endpoint(1), endpoint(2)], [])
    assert len(first.create) == 1 and not first.update and not first.delete
    slices = materialize(first, [])
    assert plan(SVC, [endpoint(1), endpoint(2)], slices).empty
    # p1 changes readiness, p2 goes, p3 comes: one update of the one slice.
    second = plan(SVC, [endpoint(1, ready=False), endpoint(3)], slices)
    assert not second.create and not second.delete and len(second.update) == 1
    eps = second.update[0]["endpoints"]
    assert [e["targetRef"]["name"] for e in eps] == ["p1", "p3"]
    assert eps[0]["conditions"] == {"ready": False, "serving": False, "terminating": False}


def test_plan_splits_by_hundred_and_by_ports_and_leaves_a_placeholder():
    many = [endpoint(i) for i in range(1, 251)]
    slices = materialize(plan(SVC, many, []), [])
    assert sorted(len(s["endpoints"]) for s in slices) == [50, 100, 100]
    # One more endpoint fills the slice with room, nothing else moves.
    more = plan(SVC, [*many, endpoint(251)], slices)
    assert not more.create and not more.delete and len(more.update) == 1
    assert len(more.update[0]["endpoints"]) == 51
    other = (EndpointPort("", 81, "TCP"),)
    mixed = materialize(plan(SVC, [endpoint(1), endpoint(2, ports=other)], []), [])
    assert sorted(s["ports"][0]["port"] for s in mixed) == [80, 81]
    emptied = plan(SVC, [], mixed)
    assert len(emptied.delete) == 2 and len(emptied.create) == 1
    assert emptied.create[0]["endpoints"] == [] and emptied.create[0]["ports"] == []
    placeholder = materialize(emptied, mixed)
    assert plan(SVC, [], placeholder).empty


@pytest.mark.parametrize(("target", "expected"), [
    (8080, 8080), ("8080", 8080), ("web", 9000), ("dns", None), (0, None), (True, None),
    ("missing", None),
])  # fmt: skip
def test_find_port(target, expected):
    pod_ = {"spec": {"containers": [{"ports": [{"name": "web", "containerPort": 9000},
                                               {"name": "dns", "containerPort": 53,
                                                "protocol": "UDP"}]}]}}  # fmt: skip
    assert find_port(pod_, {"port": 80, "targetPort": target}) == expected

