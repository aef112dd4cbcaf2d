"""PodDisruptionBudgets: the disruption controller's arithmetic against Kubernetes'
(expected pods from the pods or their controllers' scales, desired healthy rounded up,
healthy pods, disruptions allowed, evictions awaited for two minutes), the eviction
subresource asking the budget (429 when it allows nothing, one disruption taken and
the pod noted when it does, unready pods by the budget's policy, terminal and pending
pods freely, two budgets refused), validation, and the controller in a simulated cluster
keeping a Deployment's budget in step as pods are evicted and replaced."""

from __future__ import annotations

import pytest
import trio
from inproc_api import start_api
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.actor._system import WallClock
from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339
from actorkube.apiserver._pdb import take_disruption
from actorkube.client import ApiClient
from actorkube.controllers import (
    DeploymentController,
    DisruptionController,
    ReplicaSetController,
)
from actorkube.controllers import _disruption as d
from actorkube.sim import SimNetwork, simulate

NOW = 1_000_000.0


def pod(name: str, *, ready: bool = True, phase: str = "Running", owner: str | None = "rs1",
        labels: dict | None = None, deleting: bool = False) -> dict:  # fmt: skip
    m: dict = {"name": name, "namespace": "default", "labels": labels or {"app": "web"}}
    if owner:
        m["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner,
                                 "uid": f"{owner}-uid", "controller": True}]  # fmt: skip
    if deleting:
        m["deletionTimestamp"] = rfc3339(NOW)
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": m, "status": {"phase": phase, "conditions": conditions}}


def budget(status: dict | None = None, generation: int = 1, **spec) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default", "generation": generation},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
            "status": status or {}}  # fmt: skip


def scales(**by_owner: int):
    return lambda p, ref: (ref["uid"], by_owner[ref["name"]]) if ref["name"] in by_owner else None


# --- the arithmetic -----------------------------------------------------------------------


def test_an_integer_min_available_counts_the_pods_there_are():
    pods = [pod("a"), pod("b"), pod("c")]
    assert d.expected_and_desired(budget(minAvailable=2), pods, scales()) == (3, 2, [])


@pytest.mark.parametrize("spec, expected", [
    ({"minAvailable": "50%"}, (5, 3, [])),  # 2.5 rounded up
    ({"maxUnavailable": "30%"}, (5, 3, [])),  # 1.5 unavailable rounded up: 2
    ({"maxUnavailable": 1}, (5, 4, [])),
    ({"maxUnavailable": "100%"}, (5, 0, [])),
    ({}, (0, 0, [])),
])  # fmt: skip
def test_percentages_and_max_unavailable_count_the_controllers_scales(spec, expected):
    pods = [pod("a"), pod("b", owner="rs2"), pod("c", owner="rs2")]
    assert d.expected_and_desired(budget(**spec), pods, scales(rs1=2, rs2=3)) == expected


def test_unmanaged_pods_are_left_out_and_a_controller_without_scale_fails():
    pods = [pod("a"), pod("lone", owner=None)]
    assert d.expected_and_desired(budget(minAvailable="100%"), pods, scales(rs1=4)) == (
        4, 4, ["lone"])  # fmt: skip
    with pytest.raises(d.ExpectedCountError, match='found no controllers for pod "a"'):
        d.expected_and_desired(budget(minAvailable="100%"), pods, scales())


def test_healthy_pods_are_ready_not_deleting_and_not_awaited_as_evicted():
    pods = [pod("a"), pod("b", ready=False), pod("c", deleting=True), pod("e"), pod("f")]
    noted = {"e": rfc3339(NOW - 30), "f": rfc3339(NOW - 200), "c": rfc3339(NOW - 10)}
    kept, recheck, overdue = d.disrupted_pods(budget({"disruptedPods": noted}), pods, NOW)
    assert kept == {"e": noted["e"]} and overdue == ["f"]  # c is on its way out
    assert recheck == NOW - 30 + d.DELETION_TIMEOUT
    assert d.count_healthy(pods, kept, NOW) == 2  # a and f
    assert d.count_healthy(pods, kept, NOW + 100) == 3  # e's two minutes are over
    # At its very timeout a noted pod is overdue (kept, it would be looked at again now,
    # and again, and time would never move on).
    assert d.disrupted_pods(budget({"disruptedPods": {"e": rfc3339(NOW - 120)}}), pods,
                            NOW) == ({}, None, ["e"])  # fmt: skip


def test_the_status_allows_what_is_healthy_beyond_desired_and_is_written_on_change():
    status = d.new_status(budget(), healthy=3, desired=2, expected=3, disrupted={}, now=NOW)
    assert status["disruptionsAllowed"] == 1 and status["observedGeneration"] == 1
    (condition,) = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "DisruptionAllowed", "True", "SufficientPods")  # fmt: skip
    assert d.new_status(budget(status), healthy=3, desired=2, expected=3, disrupted={},
                        now=NOW + 5) is None  # fmt: skip
    fewer = d.new_status(budget(status), healthy=2, desired=2, expected=3, disrupted={},
                         now=NOW + 5)  # fmt: skip
    assert fewer["disruptionsAllowed"] == 0
    assert fewer["conditions"][0]["reason"] == "InsufficientPods"
    assert fewer["conditions"][0]["lastTransitionTime"] == rfc3339(NOW + 5)
    # No pod expected yet: nothing may be disrupted, however the sum comes out.
    assert d.new_status(budget(), healthy=1, desired=0, expected=0, disrupted={},
                        now=NOW)["disruptionsAllowed"] == 0  # fmt: skip
    failed = d.fail_safe_status(budget(status), "jobs.batch does not implement it", NOW)
    assert failed["disruptionsAllowed"] == 0
    assert failed["conditions"][0]["reason"] == "SyncFailed"
    assert failed["conditions"][0]["message"] == "jobs.batch does not implement it"


def test_taking_a_disruption_decrements_and_notes_the_pod():
    held = {"disruptionsAllowed": 1, "observedGeneration": 1, "currentHealthy": 3,
            "desiredHealthy": 2}
    taken = take_disruption(budget(held), "a", NOW)
    assert taken["status"]["disruptionsAllowed"] == 0
    assert taken["status"]["disruptedPods"] == {"a": rfc3339(NOW)}
    assert taken["status"]["conditions"][0]["reason"] == "InsufficientPods"
    with pytest.raises(ApiError) as refused:
        take_disruption(taken, "b", NOW)
    assert refused.value.code == 429
    assert refused.value.status["details"]["causes"][0]["message"] == (
        "The disruption budget web needs 2 healthy pods and has 3 currently")
    with pytest.raises(ApiError) as waiting:
        take_disruption(budget({"disruptionsAllowed": 5}, generation=2), "a", NOW)
    assert waiting.value.code == 429
    assert waiting.value.status["details"]["causes"][0]["message"] == (
        "The disruption budget web is still being processed by the server.")
    dry = take_disruption(budget({"disruptionsAllowed": 2, "observedGeneration": 1}), "a", NOW,
                          dry_run=True)  # fmt: skip
    assert dry["status"]["disruptionsAllowed"] == 1 and "disruptedPods" not in dry["status"]


# --- the eviction subresource -------------------------------------------------------------

async def start(system: ActorSystem) -> ApiClient:
    api = await start_api(system, seed=4)
    return ApiClient(system, api.ref, token="admin-token")


async def running(client: ApiClient, name: str, *, ready: bool = True, phase: str = "Running",
                  labels: dict | None = None) -> dict:  # fmt: skip
    m = {"name": name, "labels": labels or {"app": "web"}}
    spec = {"nodeName": "n1", "containers": [{"name": "c", "image": "pause"}]}  # bound
    made = await client.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": m,
                                        "spec": spec}, namespace="default")  # fmt: skip
    status = {"phase": phase, "conditions": [{"type": "Ready",
                                              "status": "True" if ready else "False"}]}  # fmt: skip
    return await client.update_status("pods", {**made, "status": status}, namespace="default")


async def create_budget(client: ApiClient, name: str = "web", **spec) -> dict:
    """A budget over the pods labelled app=web (``spec``: its bounds)."""
    return await client.create("poddisruptionbudgets",
                               {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                "metadata": {"name": name},
                                "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}},
                               namespace="default", group="policy")  # fmt: skip


async def pdb(client: ApiClient, status: dict, name: str = "web", **spec) -> dict:
    """A budget with ``status`` written as if the controller had (none runs here)."""
    made = await create_budget(client, name, **spec)
    return await client.update_status("poddisruptionbudgets",
                                      {**made, "status": {"observedGeneration": 1, **status}},
                                      namespace="default", group="policy")  # fmt: skip


async def evict(client: ApiClient, name: str, **options) -> dict:
    return await client.request("create", "pods", namespace="default", name=name,
                                subresource="eviction",
                                body={"apiVersion": "policy/v1", "kind": "Eviction",
                                      "metadata": {"name": name}, **options})  # fmt: skip


async def gone_or_going(client: ApiClient, name: str) -> bool:
    got = await client.get_if_exists("pods", name, namespace="default")
    return got is None or bool(got["metadata"].get("deletionTimestamp"))


async def test_an_eviction_takes_a_disruption_and_a_budget_with_none_refuses(autojump_clock):
    async with ActorSystem() as system:
        client = await start(system)
        for name in ("a", "b"):
            await running(client, name)
        await pdb(client, {"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1},
                  minAvailable=1)  # fmt: skip
        await evict(client, "a")
        evicted = await client.get("pods", "a", namespace="default")
        assert evicted["metadata"].get("deletionTimestamp")
        target = [c for c in evicted["status"]["conditions"] if c["type"] == "DisruptionTarget"]
        assert [(c["status"], c["reason"]) for c in target] == [("True", "EvictionByEvictionAPI")]
        status = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                   group="policy"))["status"]  # fmt: skip
        assert status["disruptionsAllowed"] == 0 and list(status["disruptedPods"]) == ["a"]
        with pytest.raises(ApiError) as refused:
            await evict(client, "b")
        assert refused.value.code == 429
        assert refused.value.status["message"] == (
            "Cannot evict pod as it would violate the pod's disruption budget.")
        assert not await gone_or_going(client, "b")
        # A dry run asks the budget too, and changes nothing.
        with pytest.raises(ApiError):
            await evict(client, "b", deleteOptions={"dryRun": ["All"]})


async def test_pods_that_disrupt_nothing_go_and_two_budgets_are_refused(autojump_clock):
    async with ActorSystem() as system:
        client = await start(system)
        await running(client, "pending", phase="Pending", ready=False)
        await running(client, "done", phase="Succeeded", ready=False)
        await running(client, "unready", ready=False)
        await running(client, "other", labels={"app": "other"})
        await pdb(client, {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 3},
                  minAvailable=3)  # fmt: skip
        for name in ("pending", "done"):
            await evict(client, name)
            assert await gone_or_going(client, name)
        with pytest.raises(ApiError) as refused:  # unready, but the budget is not healthy
            await evict(client, "unready")
        assert refused.value.code == 429
        await evict(client, "other")  # no budget covers it
        assert await gone_or_going(client, "other")
        await pdb(client, {"disruptionsAllowed": 5}, name="web2", maxUnavailable=5)
        await running(client, "two")
        with pytest.raises(ApiError) as refused:
            await evict(client, "two")
        assert refused.value.code == 500 and "more than one PodDisruptionBudget" in str(
            refused.value)  # fmt: skip


async def test_an_unready_pod_goes_by_the_budgets_policy_without_taking_a_disruption(
    autojump_clock,
):
    async with ActorSystem() as system:
        client = await start(system)
        await running(client, "sick", ready=False)
        await pdb(client, {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 1},
                  minAvailable=1, unhealthyPodEvictionPolicy="AlwaysAllow")  # fmt: skip
        await evict(client, "sick")
        assert await gone_or_going(client, "sick")
        status = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                   group="policy"))["status"]  # fmt: skip
        assert status["disruptionsAllowed"] == 0 and not status.get("disruptedPods")


async def test_a_budget_is_validated_as_policy_v1(autojump_clock):
    async with ActorSystem() as system:
        client = await start(system)
        for spec, message in [
            ({"minAvailable": 1, "maxUnavailable": 1}, "cannot be both set"),
            ({"minAvailable": "150%"}, "must not be greater than 100%"),
            ({"maxUnavailable": -1}, "must be greater than or equal to 0"),
            ({"minAvailable": "half"}, "a valid percent string"),
            ({"unhealthyPodEvictionPolicy": "Sometimes"}, "Unsupported value"),
        ]:
            with pytest.raises(ApiError, match=message) as refused:
                await client.create("poddisruptionbudgets",
                                    {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                                     "metadata": {"name": "bad"}, "spec": spec},
                                    namespace="default", group="policy")  # fmt: skip
            assert refused.value.code == 422


async def controlled(system: ActorSystem) -> tuple[ApiClient, DisruptionController]:
    """An API server and the disruption controller (as the admin) beside it."""
    api = await start_api(system, seed=4)
    controller = DisruptionController(api.ref, token="admin-token")
    system.spawn(lambda: controller, name="disruption-controller")
    await controller.synced.wait()
    return ApiClient(system, api.ref, token="admin-token"), controller


async def budget_status(client: ApiClient, **wanted) -> dict:
    """The budget's status, once it says ``wanted`` (virtual time)."""
    with trio.fail_after(600):
        while True:
            got = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                    group="policy")).get("status") or {}  # fmt: skip
            if all(got.get(k) == v for k, v in wanted.items()):
                return got
            await trio.sleep(1)


async def test_a_pod_noted_by_an_eviction_but_never_deleted_counts_again_after_two_minutes(
    autojump_clock,
):
    async with ActorSystem(clock=WallClock(epoch=NOW)) as system:  # wall time in step
        client, _ = await controlled(system)
        for name in ("a", "b"):
            await running(client, name)
        await create_budget(client, minAvailable=1)
        held = await budget_status(client, disruptionsAllowed=1, currentHealthy=2)
        # What an eviction whose delete then failed leaves: the pod noted, marked.
        started = trio.current_time()
        pdb = await client.get("poddisruptionbudgets", "web", namespace="default",
                               group="policy")  # fmt: skip
        now = system.clock.now()
        noted = {**held, "disruptedPods": {"a": rfc3339(now)}, "disruptionsAllowed": 0}
        await client.update_status("poddisruptionbudgets", {**pdb, "status": noted},
                                   namespace="default", group="policy")  # fmt: skip
        pod = await client.get("pods", "a", namespace="default")
        target = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                  "lastTransitionTime": rfc3339(now)}  # fmt: skip
        conditions = [*pod["status"]["conditions"], target]
        await client.update_status("pods", {**pod, "status": {**pod["status"],
                                                              "conditions": conditions}},
                                   namespace="default")  # fmt: skip
        await budget_status(client, currentHealthy=1, disruptionsAllowed=0)
        after = await budget_status(client, currentHealthy=2, disruptionsAllowed=1)
        assert not after.get("disruptedPods")
        assert 120 <= trio.current_time() - started < 135
        with trio.fail_after(600):  # the mark is cleared too
            while any(c["type"] == "DisruptionTarget" and c["status"] == "True"
                      for c in (await client.get("pods", "a", namespace="default"))
                      ["status"]["conditions"]):  # fmt: skip
                await trio.sleep(1)


async def test_a_sync_never_writes_its_numbers_over_a_budget_that_changed(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=NOW)) as system:
        client, controller = await controlled(system)
        for name in ("a", "b"):
            await running(client, name)
        await create_budget(client, minAvailable=1)
        await budget_status(client, disruptionsAllowed=1)
        seen = await client.get("poddisruptionbudgets", "web", namespace="default",
                                group="policy")  # fmt: skip
        await evict(client, "b")  # takes the one disruption: the budget moves on
        stale = d.new_status(seen, healthy=2, desired=1, expected=2, disrupted={}, now=0.0)
        assert stale is None  # the numbers the sync had: what it read was up to date
        await controller._write("default/web", seen, lambda b: {**b["status"],
                                                                 "disruptionsAllowed": 1})
        status = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                   group="policy"))["status"]  # fmt: skip
        assert status["disruptionsAllowed"] == 0  # not the 1 that sync would have written


# --- the controller ---------------------------------------------------------------------------


def deployment(name: str, replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}],
                                           "terminationGracePeriodSeconds": 5}}}}  # fmt: skip


@pytest.mark.parametrize("seed", [1, 2])
def test_the_controller_keeps_a_deployments_budget_in_step_through_evictions(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        cluster.spawn_controller(DeploymentController, "deployment-controller")
        cluster.spawn_controller(DisruptionController, "disruption-controller")
        client = cluster.client
        await client.create("deployments", deployment("web", 3), namespace="default",
                            group="apps")  # fmt: skip
        await create_budget(client, maxUnavailable="33%")  # of 3, rounded up: 1

        async def status(**wanted):
            got = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                    group="policy")).get("status") or {}  # fmt: skip
            return got if all(got.get(k) == v for k, v in wanted.items()) else None

        first = await wait_for(lambda: status(expectedPods=3, desiredHealthy=2,
                                              currentHealthy=3, disruptionsAllowed=1))  # fmt: skip
        # With the nodes cordoned, an evicted pod's replacement cannot start.
        for node in ("node-0", "node-1"):
            await client.patch("nodes", node, {"spec": {"unschedulable": True}})
        pods = await cluster.running_pods(label_selector="app=web")
        await evict(client, pods[0]["metadata"]["name"])
        with pytest.raises(ApiError) as refused:
            await evict(client, pods[1]["metadata"]["name"])
        short = await wait_for(lambda: status(currentHealthy=2, disruptionsAllowed=0))
        for node in ("node-0", "node-1"):
            await client.patch("nodes", node, {"spec": {"unschedulable": False}})
        after = await wait_for(lambda: status(currentHealthy=3, disruptionsAllowed=1))
        return {"first": first, "refused": refused.value, "short": short, "after": after}

    result = simulate(scenario, seed=seed).value
    assert result["refused"].code == 429
    assert result["refused"].status["details"]["causes"][0]["message"] == (
        "The disruption budget web needs 2 healthy pods and has 2 currently")
    assert result["first"]["conditions"][0]["reason"] == "SufficientPods"
    assert result["short"]["conditions"][0]["reason"] == "InsufficientPods"
    assert not result["after"].get("disruptedPods")


def test_a_controller_without_a_scale_makes_the_fail_safe_status():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=1)
        cluster.spawn_controller(DisruptionController, "disruption-controller")
        client = cluster.client
        await create_budget(client, minAvailable="50%")
        job = await client.create("jobs", {"apiVersion": "batch/v1", "kind": "Job",
                                           "metadata": {"name": "j"},
                                           "spec": {"template": {"spec": {
                                               "restartPolicy": "Never",
                                               "containers": [{"name": "c", "image": "pause"}]}}}},
                                  namespace="default", group="batch")  # fmt: skip
        owner = {"apiVersion": "batch/v1", "kind": "Job", "name": "j",
                 "uid": job["metadata"]["uid"], "controller": True}  # fmt: skip
        await client.create("pods", {"apiVersion": "v1", "kind": "Pod",
                                     "metadata": {"name": "p", "labels": {"app": "web"},
                                                  "ownerReferences": [owner]},
                                     "spec": {"containers": [{"name": "c", "image": "pause"}]}},
                            namespace="default")  # fmt: skip

        async def failed():
            got = (await client.get("poddisruptionbudgets", "web", namespace="default",
                                    group="policy")).get("status") or {}  # fmt: skip
            return next((c for c in got.get("conditions") or ()
                         if c.get("reason") == "SyncFailed"), None)  # fmt: skip

        condition = await wait_for(failed)
        # An integer minAvailable counts the pods: no controller is asked for a scale.
        await create_budget(client, "count", minAvailable=1)

        async def counted():
            got = (await client.get("poddisruptionbudgets", "count", namespace="default",
                                    group="policy")).get("status") or {}  # fmt: skip
            return got if got.get("expectedPods") == 1 else None

        counted_status = await wait_for(counted)
        assert counted_status["desiredHealthy"] == 1
        assert [c["reason"] for c in counted_status["conditions"]] == ["InsufficientPods"]
        return condition

    condition = simulate(scenario, seed=3).value
    assert condition["status"] == "False"
    assert condition["message"] == "jobs.batch does not implement the scale subresource"
