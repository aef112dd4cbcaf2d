"""The controller manager's leader election in the deterministic simulation: of two
replicas only the one holding the Lease runs the controllers; when its host crashes
the standby takes over, and the ReplicaSet it inherits is kept at its size, never
above it."""

from __future__ import annotations

import pytest
import trio
from sim_cluster import API, SimCluster
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError
from actorkube.controllers import ControllerManager, ReplicaSetController
from actorkube.controllers import _replicas as replicas
from actorkube.sim import SimNetwork, simulate


def replica_set(count: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": count, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c",
                                                           "image": "pause"}]}}}}  # fmt: skip


@pytest.mark.parametrize("seed", [8, 9])
def test_the_standby_manager_takes_over_when_the_leader_dies(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        client = cluster.client
        managers: dict[str, ControllerManager] = {}

        def boot(name: str):
            def start(system: ActorSystem) -> None:
                controllers = {"replicaset-controller": lambda: ReplicaSetController(
                    system.ref(API), token="replicaset-controller-token")}  # fmt: skip
                manager = ControllerManager(system.ref(API), controllers,
                                            token="controller-manager-token", identity=name)
                managers[name] = manager
                system.spawn(lambda: manager, name="kube-controller-manager")

            return start

        await net.add_host("cm1", boot("cm1"))
        await net.add_host("cm2", boot("cm2"))

        async def holder():
            try:
                lease = await client.get("leases", "kube-controller-manager",
                                         namespace="kube-system", group="coordination.k8s.io")
            except ApiError:
                return None
            return lease["spec"].get("holderIdentity")

        first = await wait_for(holder)
        await client.create("replicasets", replica_set(3), namespace="default", group="apps")

        async def pods_of_web(count: int):
            pods = [p for p in await cluster.pods(label_selector="app=web")
                    if replicas.is_active(p)]  # fmt: skip
            return pods if len(pods) == count else None

        await wait_for(lambda: pods_of_web(3))
        most = 0

        async def sample() -> None:
            nonlocal most
            while True:
                active = [p for p in await cluster.pods(label_selector="app=web")
                          if replicas.is_active(p)]  # fmt: skip
                most = max(most, len(active))
                await trio.sleep(0.5)

        standby = "cm2" if first == "cm1" else "cm1"
        running_before = (managers[first].leading, managers[standby].leading)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sample)
            await net.crash(first)
            crashed = trio.current_time()
            rs = await client.get("replicasets", "web", namespace="default", group="apps")
            await client.update("replicasets", {**rs, "spec": {**rs["spec"], "replicas": 5}},
                                namespace="default", group="apps")  # fmt: skip
            await wait_for(lambda: pods_of_web(5))
            took = trio.current_time() - crashed
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
        return {"first": first, "second": await holder(), "before": running_before,
                "after": managers[standby].leading, "took": took, "most": most}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    assert r["before"] == (True, False)  # only the leader runs controllers
    assert r["second"] != r["first"] and r["after"]
    assert r["took"] <= 15 + 2 * 2 + 10  # the lease runs out, a retry, the work
    assert r["most"] == 5  # never more than asked, before or after the takeover
