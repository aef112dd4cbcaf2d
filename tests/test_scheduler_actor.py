"""The scheduler actor against a real API server on a 3-member etcd group, in virtual
time: pods are bound through pods/binding, never overcommitting a node; a pod that
fits nowhere gets PodScheduled=False and a FailedScheduling event with Kubernetes'
message, and is scheduled once a node makes room; with two replicas only the leader
binds, and when it crashes the standby takes over and every pod is bound exactly
once."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.scheduler import Scheduler, SchedulerConfig, Status, default_framework
from actorkube.scheduler._framework import SUCCESS
from actorkube.sim import SimNetwork, simulate

TOKENS = (
    "admin-token,admin,1,system:masters\n"
    "scheduler-token,system:kube-scheduler,2\n"  # RBAC's system:kube-scheduler role only
)


def node(name: str, cpu: str = "1", memory: str = "4Gi", pods: str = "110") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": pods},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": pods},
        },
    }


def pod(name: str, cpu: str = "300m", **spec) -> dict:
    container = {"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu}}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [container], **spec},
    }


async def start_cluster(system: ActorSystem, audit=lambda event: None):
    group = start_group(system, 3)
    api = await start_apiserver(
        system,
        group.client(name="apiserver", timeout=30),
        tokens=parse_token_file(TOKENS),
        seed=3,
        audit=audit,
    )
    await api.ready()
    return api, ApiClient(system, api.ref, token="admin-token")


def spawn_scheduler(system: ActorSystem, api, config: SchedulerConfig | None = None):
    """A scheduler without leader election, as system:kube-scheduler; the instance."""
    scheduler = Scheduler(api.ref, token="scheduler-token", identity="s1",
                          config=config or SchedulerConfig(leader_elect=False))  # fmt: skip
    system.spawn(lambda: scheduler)
    return scheduler


async def pod_scheduled(client: ApiClient, name: str) -> dict | None:
    """The pod's PodScheduled condition, if it has one."""
    got = await client.get("pods", name, namespace="default")
    for c in got.get("status", {}).get("conditions") or ():
        if c["type"] == "PodScheduled":
            return c
    return None


async def bound_pods(client: ApiClient, want: int):
    items = (await client.list("pods", namespace="default"))["items"]
    bound = [p for p in items if p["spec"].get("nodeName")]
    return bound if len(bound) >= want else None


async def test_pods_are_bound_without_overcommitting(autojump_clock):
    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        for i in range(3):
            await client.create("nodes", node(f"n{i}"))
        spawn_scheduler(system, api)
        for i in range(9):
            await client.create("pods", pod(f"p{i}"), namespace="default")
        bound = await wait_for(lambda: bound_pods(client, 9))
        per_node = Counter(p["spec"]["nodeName"] for p in bound)
        assert per_node == {"n0": 3, "n1": 3, "n2": 3}  # 3 x 300m fit in 1 cpu, 4 do not
        events = (await client.list("events", namespace="default"))["items"]
        scheduled = [e for e in events if e["reason"] == "Scheduled"]
        assert len(scheduled) == 9
        assert scheduled[0]["source"]["component"] == "default-scheduler"
        assert scheduled[0]["message"].startswith("Successfully assigned default/p")


async def test_an_unschedulable_pod_is_told_why_and_waits_for_room(autojump_clock):
    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        await client.create("nodes", node("small", cpu="1"))
        tainted = node("tainted", cpu="8")
        tainted["spec"] = {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}
        await client.create("nodes", tainted)
        spawn_scheduler(system, api)
        await client.create("pods", pod("big", cpu="2"), namespace="default")
        expected = (
            "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
            "{k: v}. preemption: 0/2 nodes are available: 1 No preemption victims found for "
            "incoming pod, 1 Preemption is not helpful for scheduling."
        )

        c = await wait_for(lambda: pod_scheduled(client, "big"))
        assert (c["status"], c["reason"], c["message"]) == ("False", "Unschedulable", expected)

        async def failed_event():
            items = (await client.list("events", namespace="default"))["items"]
            return [e for e in items if e["reason"] == "FailedScheduling"]

        (event,) = await wait_for(failed_event)
        assert event["type"] == "Warning" and event["message"] == expected
        assert event["involvedObject"]["name"] == "big"
        # A node with room arrives: the pod leaves the unschedulable pods at once.
        await client.create("nodes", node("large", cpu="4"))
        (placed,) = await wait_for(lambda: bound_pods(client, 1), limit=5)
        assert placed["spec"]["nodeName"] == "large"


async def test_a_pod_for_another_scheduler_is_left_alone(autojump_clock):
    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        await client.create("nodes", node("n0"))
        spawn_scheduler(system, api)
        await client.create("pods", pod("mine"), namespace="default")
        await client.create("pods", pod("theirs", schedulerName="other"), namespace="default")
        await wait_for(lambda: bound_pods(client, 1))
        await trio.sleep(30)
        theirs = await client.get("pods", "theirs", namespace="default")
        assert not theirs["spec"].get("nodeName")


@pytest.mark.parametrize("seed", [7, 11, 23])
def test_the_standby_takes_over_when_the_leader_crashes(seed: int) -> None:
    pods = 60

    async def scenario(net: SimNetwork) -> dict:
        binds: Counter = Counter()

        def audit(event: dict) -> None:
            ref = event.get("objectRef", {})
            if ref.get("subresource") == "binding" and event["responseStatus"]["code"] < 300:
                binds[ref["name"]] += 1

        async def boot_api(system: ActorSystem) -> None:
            await start_cluster(system, audit=audit)

        def boot_scheduler(name: str):
            def boot(system: ActorSystem) -> None:
                system.spawn(
                    lambda: Scheduler(
                        system.ref("ak://api/apiserver"), token="scheduler-token", identity=name
                    ),
                    name="scheduler",
                )

            return boot

        await net.add_host("api", boot_api)
        clients = await net.add_host("clients", lambda system: None)
        client = ApiClient(clients, clients.ref("ak://api/apiserver"), token="admin-token")
        for i in range(4):
            await client.create("nodes", node(f"n{i}", cpu="16"))
        await net.add_host("s1", boot_scheduler("s1"))
        await net.add_host("s2", boot_scheduler("s2"))

        async def holder():
            try:
                lease = await client.get(
                    "leases", "kube-scheduler", namespace="kube-system", group="coordination.k8s.io"
                )
            except ApiError:
                return None  # nobody has created it yet
            return lease["spec"]["holderIdentity"]

        first = await wait_for(holder)
        for i in range(pods // 2):
            await client.create("pods", pod(f"p{i}"), namespace="default")
        await wait_for(lambda: bound_pods(client, 5), period=0.05)
        await net.crash(first)
        crashed_at = trio.current_time()
        for i in range(pods // 2, pods):
            await client.create("pods", pod(f"p{i}"), namespace="default")
        await wait_for(lambda: bound_pods(client, pods))
        second = await holder()
        lease = await client.get(
            "leases", "kube-scheduler", namespace="kube-system", group="coordination.k8s.io"
        )
        return {
            "first": first,
            "second": second,
            "transitions": lease["spec"]["leaseTransitions"],
            "binds": binds,
            "takeover": trio.current_time() - crashed_at,
        }

    result = simulate(scenario, seed=seed).value
    assert {result["first"], result["second"]} == {"s1", "s2"}
    assert result["transitions"] == 1
    assert sorted(result["binds"]) == sorted(f"p{i}" for i in range(pods))
    assert set(result["binds"].values()) == {1}  # every pod bound exactly once
    assert result["takeover"] <= 15 + 2 * 2 + 10  # lease, retries, the work itself


async def test_a_higher_priority_pod_preempts_through_the_api(autojump_clock):
    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        await client.create("nodes", node("n0", cpu="4"))
        spawn_scheduler(system, api)
        for i in range(4):
            low = pod(f"low{i}", cpu="900m", priority=0, terminationGracePeriodSeconds=0)
            await client.create("pods", low, namespace="default")
        await wait_for(lambda: bound_pods(client, 4))
        high = pod("high", cpu="3", priority=10)
        await client.create("pods", high, namespace="default")

        async def placed():
            got = await client.get("pods", "high", namespace="default")
            return got if got["spec"].get("nodeName") else None

        got = await wait_for(placed)
        assert got["spec"]["nodeName"] == "n0"
        assert got["status"].get("nominatedNodeName") == "n0"
        left = (await client.list("pods", namespace="default"))["items"]
        lows = sorted(p["metadata"]["name"] for p in left if p["metadata"]["name"] != "high")
        assert len(lows) == 1  # three had to go: 4 - 3 x 0.9 leaves room for 3 cpu

        async def preempted():
            items = (await client.list("events", namespace="default"))["items"]
            return [e for e in items if e["reason"] == "Preempted"] or None

        events = await wait_for(preempted)
        assert len(events) == 3
        assert events[0]["message"] == f"Preempted by pod {got['metadata']['uid']} on node n0"


class RecordingClient:
    """Stands in for the API client where a test drives the scheduler's handlers."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.system = type("S", (), {"clock": type("C", (), {"now": staticmethod(lambda: 0.0)})})

    async def request(self, verb, resource, **fields):
        self.calls.append((verb, resource, fields.get("name"), fields.get("subresource")))
        return {}

    async def patch(self, resource, name, body, **fields):
        self.calls.append(("patch", resource, name, fields.get("subresource")))
        return {}


async def test_a_pod_recreated_under_its_name_replaces_the_old_one_in_the_cache(autojump_clock):
    # What a relist after 410 Gone delivers when a bound pod was deleted and made again
    # under the same name (a StatefulSet's web-0): an update from bound to pending.
    from actorkube.scheduler._scheduler import SchedulingState

    client = RecordingClient()
    state = SchedulingState(client, SchedulerConfig(leader_elect=False), "s1")
    async with trio.open_nursery() as nursery:
        state._nursery = nursery
        state._node_added(node("n0", cpu="1"))
        old = pod("web-0", cpu="800m", nodeName="n0")
        old["metadata"].update(uid="u1", resourceVersion="5")
        state._pod_added(old)
        assert state.cache.node("n0").requested["cpu"] == 800
        new = pod("web-0", cpu="800m")
        new["metadata"].update(uid="u2", resourceVersion="9")
        state._pod_updated(old, new)
        assert state.cache.node("n0").requested.get("cpu", 0) == 0
        state.schedule_one(state.queue.pop(trio.current_time()))
        await trio.testing.wait_all_tasks_blocked()
        assert ("create", "pods", "web-0", "binding") in client.calls
        nursery.cancel_scope.cancel()


class Gate:
    """A plugin at Reserve, Permit (it holds every pod up to 10 s) and PostBind."""

    name = "Gate"

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def reserve(self, state, pod, node):
        self.log.append(("reserve", pod["metadata"]["name"]))
        return SUCCESS

    def unreserve(self, state, pod, node):
        self.log.append(("unreserve", pod["metadata"]["name"]))

    def permit(self, state, pod, node):
        return Status.wait(10)

    def post_bind(self, state, pod, node):
        self.log.append(("post_bind", pod["metadata"]["name"]))


async def test_reserve_permit_and_post_bind_plugins(autojump_clock):
    gate = Gate()

    def profile():
        framework = default_framework()
        framework.plugins = [*framework.plugins, gate]
        return framework

    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        await client.create("nodes", node("n0", cpu="4"))
        config = SchedulerConfig(profiles={"default-scheduler": profile}, leader_elect=False)
        scheduler = spawn_scheduler(system, api, config)
        for name in ("let-in", "kept-out"):
            await client.create("pods", pod(name), namespace="default")

        async def both_waiting():
            state = scheduler.state
            return state is not None and sorted(state.waiting_pods()) == [
                "default/kept-out", "default/let-in"]  # fmt: skip

        await wait_for(both_waiting, period=0.1, limit=5)
        assert await bound_pods(client, 1) is None  # held at Permit: nothing bound yet
        assert scheduler.state.allow(pod("let-in"))
        (placed,) = await wait_for(lambda: bound_pods(client, 1), period=0.1, limit=5)
        assert placed["metadata"]["name"] == "let-in"
        await trio.sleep(10)  # kept-out's wait times out: unreserved, retried later

        async def refused():
            items = (await client.list("events", namespace="default"))["items"]
            return [e for e in items if e["reason"] == "FailedScheduling"]

        (event,) = await wait_for(refused, limit=5)
        assert event["message"] == "rejected due to timeout after waiting 10s at plugin Gate"
        c = await pod_scheduled(client, "kept-out")
        assert (c["status"], c["reason"]) == ("False", "Unschedulable")
        assert ("unreserve", "kept-out") in gate.log and ("post_bind", "let-in") in gate.log
        assert ("unreserve", "let-in") not in gate.log
        # Retried, it waits again; deleted while it waits, it is let go at once (not at
        # its timeout) and its room freed.
        await wait_for(lambda: _waits(scheduler, "kept-out"), limit=20)
        await client.delete("pods", "kept-out", namespace="default", grace_period=0)
        await wait_for(lambda: _waits(scheduler, "kept-out", present=False), limit=2)
        assert scheduler.state.cache.node("n0").requested["cpu"] == 300  # let-in's only


async def _waits(scheduler, name: str, present: bool = True) -> bool:
    state = scheduler.state
    return state is not None and (f"default/{name}" in state.waiting_pods()) == present


class Refuse:
    name = "Refuse"

    def __init__(self, at: str) -> None:
        self.at = at

    def reserve(self, state, pod, node):
        return Status.unschedulable("no room in the ledger") if self.at == "reserve" else SUCCESS

    def permit(self, state, pod, node):
        return Status.unschedulable("not today") if self.at == "permit" else SUCCESS


@pytest.mark.parametrize(
    ("at", "message"),
    [("reserve", 'running Reserve plugin "Refuse": no room in the ledger'),
     ("permit", 'rejected pod "p" by Permit plugin "Refuse": not today')],
)  # fmt: skip
async def test_a_refusal_at_reserve_or_permit_leaves_the_pod_pending(autojump_clock, at, message):
    def profile():
        framework = default_framework()
        framework.plugins = [*framework.plugins, Refuse(at)]
        return framework

    async with ActorSystem() as system:
        api, client = await start_cluster(system)
        await client.create("nodes", node("n0", cpu="4"))
        config = SchedulerConfig(profiles={"default-scheduler": profile}, leader_elect=False)
        spawn_scheduler(system, api, config)
        await client.create("pods", pod("p"), namespace="default")

        c = await wait_for(lambda: pod_scheduled(client, "p"))
        assert (c["status"], c["message"]) == ("False", message)
        assert await bound_pods(client, 1) is None


async def test_a_victim_held_at_permit_is_turned_away_not_deleted(autojump_clock):
    # Kubernetes' prepareCandidate: a waiting pod is rejected; only running ones are
    # deleted. Here the low-priority pod waits at Permit when a higher one needs room.
    from actorkube.scheduler._scheduler import SchedulingState

    class Holds(Gate):
        def permit(self, state, pod, node):
            return Status.wait(60) if pod["spec"].get("priority", 0) == 0 else SUCCESS

    def profile():
        framework = default_framework()
        framework.plugins = [*framework.plugins, Holds()]
        return framework

    client = RecordingClient()

    async def delete(resource, name, **fields):
        client.calls.append(("delete", resource, name, None))

    client.delete = delete
    config = SchedulerConfig(profiles={"default-scheduler": profile}, leader_elect=False)
    state = SchedulingState(client, config, "s1")
    async with trio.open_nursery() as nursery:
        state._nursery = nursery
        state._node_added(node("n0", cpu="1"))
        low = pod("low", cpu="800m", priority=0)
        low["metadata"].update(uid="u-low", resourceVersion="1")
        state._pod_added(low)
        state.schedule_one(state.queue.pop(trio.current_time()))
        assert state.waiting_pods() == ["default/low"]
        high = pod("high", cpu="800m", priority=10)
        high["metadata"].update(uid="u-high", resourceVersion="2")
        state._pod_added(high)
        state.schedule_one(state.queue.pop(trio.current_time()))
        await trio.testing.wait_all_tasks_blocked()
        assert state.preemptions == 1 and state.waiting_pods() == []
        assert not [c for c in client.calls if c[0] == "delete"]  # nothing deleted
        assert not state.cache.is_assumed(low) and state.cache.nominated(high) == "n0"
        assert state.cache.node("n0").requested["cpu"] == 800  # the preemptor's room only
        # Back to the queue; its own freed room was a cluster event during its attempt,
        # so it waits out a backoff (Kubernetes' moveRequestCycle rule).
        assert state.queue.where(low) == "backoff"
        nursery.cancel_scope.cancel()
