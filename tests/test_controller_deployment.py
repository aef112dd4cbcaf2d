"""The Deployment controller on a whole cluster in the deterministic simulation (3 nodes
with kubelets on simulated runtimes, the scheduler, the ReplicaSet controller, virtual
time): a rolling update never leaves fewer than replicas - maxUnavailable ready pods nor
more than replicas + maxSurge pods; Recreate never runs old and new pods together;
rollback to an earlier revision, pause and resume, scaling in the middle of a rollout,
the revision history limit, and the status that ``kubectl rollout status`` reads."""

from __future__ import annotations

import pytest
import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver import ApiError
from actorkube.controllers import DeploymentController, ReplicaSetController
from actorkube.controllers import _replicas as replicas
from actorkube.controllers import _rollout as rollout
from actorkube.node.runtime._sim_profile import SimProfile
from actorkube.sim import SimNetwork, simulate

# Images that take a while to start, so that a rollout has something to wait for.
PROFILES = {f"app:v{i}": SimProfile(start_delay=2.0, term_delay=1.0) for i in range(1, 5)}


def deployment(name: str, replicas_: int, image: str, **spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": replicas_, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}],
                                           "terminationGracePeriodSeconds": 5}},
                     **spec}}  # fmt: skip


async def start(net: SimNetwork) -> SimCluster:
    cluster = await SimCluster.start(net, nodes=3, profiles=PROFILES)
    cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
    cluster.spawn_controller(DeploymentController, "deployment-controller")
    return cluster


async def get(cluster: SimCluster, name: str) -> dict:
    return await cluster.client.get("deployments", name, namespace="default", group="apps")


async def change(cluster: SimCluster, name: str, edit) -> dict:
    """``edit(deployment)`` written back, retried on conflicts."""
    while True:
        d = await get(cluster, name)
        try:
            return await cluster.client.update("deployments", edit(d), namespace="default",
                                               group="apps")  # fmt: skip
        except ApiError as e:
            if e.code != 409:  # a conflict with the controller's write: again
                raise


def with_image(image: str):
    def edit(d: dict) -> dict:
        template = d["spec"]["template"]
        spec = {**template["spec"], "containers": [{"name": "app", "image": image}]}
        return {**d, "spec": {**d["spec"], "template": {**template, "spec": spec}}}

    return edit


def with_spec(**fields):
    return lambda d: {**d, "spec": {**d["spec"], **fields}}


def rolled_out(d: dict) -> bool:
    """``kubectl rollout status``' test of a finished rollout."""
    spec, status = d["spec"], d.get("status") or {}
    return (status.get("observedGeneration", 0) >= d["metadata"]["generation"]
            and status.get("updatedReplicas", 0) == spec["replicas"]
            and status.get("replicas", 0) == status.get("updatedReplicas", 0)
            and status.get("availableReplicas", 0) == status.get("updatedReplicas", 0))  # fmt: skip


async def until_rolled_out(cluster: SimCluster, name: str) -> dict:
    async def check():
        d = await get(cluster, name)
        return d if rolled_out(d) else None

    return await wait_for(check)


def images(pods) -> list[str]:
    return sorted(p["spec"]["containers"][0]["image"] for p in pods)


class Watcher:
    """Samples the pods every 0.25 s (virtual) and keeps the extremes."""

    def __init__(self, cluster: SimCluster, app: str) -> None:
        self.cluster, self.app = cluster, app
        self.min_ready = 10**9
        self.max_pods = 0
        self.mixed = False  # two images running at once

    async def run(self) -> None:
        while True:
            pods = await self.cluster.pods(label_selector=f"app={self.app}")
            alive = [p for p in pods if replicas.is_active(p)]
            self.min_ready = min(self.min_ready, sum(1 for p in alive if replicas.is_ready(p)))
            self.max_pods = max(self.max_pods, len(alive))
            # Terminating pods included: a pod still running is running, going or not.
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            self.mixed |= len(set(images(running))) > 1
            await trio.sleep(0.25)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_rolling_update_keeps_its_bounds_and_can_be_rolled_back(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await start(net)
        client = cluster.client
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                "maxUnavailable": 1}}  # fmt: skip
        await client.create("deployments", deployment("web", 5, "app:v1", strategy=strategy,
                                                      revisionHistoryLimit=2),
                            namespace="default", group="apps")  # fmt: skip
        first = await until_rolled_out(cluster, "web")
        watcher = Watcher(cluster, "web")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            await change(cluster, "web", with_image("app:v2"))
            second = await until_rolled_out(cluster, "web")
            nursery.cancel_scope.cancel()
        v2 = images(await cluster.running_pods(label_selector="app=web"))

        # Roll back as `kubectl rollout undo` does: the old ReplicaSet's template back.
        sets = (await client.list("replicasets", namespace="default", group="apps"))["items"]
        old = next(rs for rs in sets if rs["metadata"]["annotations"][rollout.REVISION] == "1")
        template = {**old["spec"]["template"]}
        labels = {k: v for k, v in template["metadata"]["labels"].items()
                  if k != rollout.POD_TEMPLATE_HASH}  # fmt: skip
        template["metadata"] = {**template["metadata"], "labels": labels}
        await client.patch("deployments", "web",
                           [{"op": "replace", "path": "/spec/template", "value": template}],
                           namespace="default", group="apps",
                           content_type="application/json-patch+json")  # fmt: skip
        third = await until_rolled_out(cluster, "web")
        back = images(await cluster.running_pods(label_selector="app=web"))

        # Two more rollouts: the history keeps revisionHistoryLimit old ReplicaSets.
        for image in ("app:v3", "app:v4"):
            await change(cluster, "web", with_image(image))
            await until_rolled_out(cluster, "web")
        await trio.sleep(5)
        sets = (await client.list("replicasets", namespace="default", group="apps"))["items"]
        return {"first": first, "second": second, "third": third, "v2": v2, "back": back,
                "min_ready": watcher.min_ready, "max_pods": watcher.max_pods,
                "sets": {rs["metadata"]["annotations"][rollout.REVISION]:
                         rs["spec"]["replicas"] for rs in sets}}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    assert r["first"]["metadata"]["annotations"][rollout.REVISION] == "1"
    assert r["second"]["metadata"]["annotations"][rollout.REVISION] == "2"
    assert r["v2"] == ["app:v2"] * 5 and r["back"] == ["app:v1"] * 5
    assert r["third"]["metadata"]["annotations"][rollout.REVISION] == "3"  # v1's, renumbered
    assert r["min_ready"] >= 5 - 1  # replicas - maxUnavailable
    assert r["max_pods"] <= 5 + 1  # replicas + maxSurge
    assert r["sets"] == {"3": 0, "4": 0, "5": 5}  # two old ones kept, the oldest deleted
    conditions = {c["type"]: c for c in r["second"]["status"]["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert (conditions["Progressing"]["reason"], conditions["Progressing"]["status"]) == (
        "NewReplicaSetAvailable", "True")


def test_recreate_never_runs_old_and_new_pods_together():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await start(net)
        await cluster.client.create("deployments", deployment("db", 3, "app:v1",
                                                              strategy={"type": "Recreate"}),
                                    namespace="default", group="apps")  # fmt: skip
        await until_rolled_out(cluster, "db")
        watcher = Watcher(cluster, "db")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watcher.run)
            await change(cluster, "db", with_image("app:v2"))
            await until_rolled_out(cluster, "db")
            nursery.cancel_scope.cancel()
        return {"mixed": watcher.mixed, "min_ready": watcher.min_ready,
                "now": images(await cluster.running_pods(label_selector="app=db"))}  # fmt: skip

    r = simulate(scenario, seed=5).value
    assert not r["mixed"]
    assert r["min_ready"] == 0  # Recreate takes everything down first
    assert r["now"] == ["app:v2"] * 3


def test_pause_resume_and_scaling_in_the_middle_of_a_rollout():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await start(net)
        client = cluster.client
        await client.create("deployments", deployment("api", 4, "app:v1"), namespace="default",
                            group="apps")  # fmt: skip
        await until_rolled_out(cluster, "api")
        await change(cluster, "api", with_spec(paused=True))
        await change(cluster, "api", with_image("app:v2"))
        await trio.sleep(20)
        paused = await get(cluster, "api")
        paused_images = images(await cluster.running_pods(label_selector="app=api"))
        await change(cluster, "api", with_spec(paused=False))
        await trio.sleep(1)  # the rollout under way: old and new ReplicaSets both active
        await change(cluster, "api", with_spec(replicas=8))
        done = await until_rolled_out(cluster, "api")
        return {"paused": paused, "paused_images": paused_images, "done": done,
                "now": images(await cluster.running_pods(label_selector="app=api"))}  # fmt: skip

    r = simulate(scenario, seed=6).value
    assert r["paused_images"] == ["app:v1"] * 4  # nothing rolled while paused
    progressing = {c["type"]: c for c in r["paused"]["status"]["conditions"]}["Progressing"]
    assert (progressing["status"], progressing["reason"]) == ("Unknown", "DeploymentPaused")
    assert r["now"] == ["app:v2"] * 8
    assert r["done"]["status"]["availableReplicas"] == 8
