"""``actorkube up --distributed`` end to end: every component its own process, killed
with SIGKILL while a client keeps working through the API load balancer.

1. The etcd leader, an API server, the active controller manager and the active
   scheduler are killed one after the other: the client (the official Python client
   behind a retry policy, ``distributed_run.ZeroDowntimeClient``) sees no request fail
   beyond that policy, every acknowledged object is there, and the workload it scales
   converges (its last scale-up needs the new scheduler and controller manager). The
   longest gap between two successful requests is printed: that is the downtime.
2. The whole control plane killed at once during writes comes back (restarted by the
   supervisor) with every acknowledged write.
3. A node's processes killed and held down: its pods are evicted once the node is
   Unknown (grace period shortened by a flag) and their tolerations run out, and the
   Deployment's pods run on the other nodes.
"""

from __future__ import annotations

import json

import trio
from distributed_run import ZeroDowntimeClient, distributed_cluster, etcd_leader, kill
from kubectl_run import kubectl

PAUSE = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "load"}},
             "template": {"metadata": {"labels": {"app": "load"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "pause",
                                                   "image": "registry.k8s.io/pause:3.10"}]}}},
}  # fmt: skip


def _k(config, cache):
    async def k(*args: str, stdin: bytes = b"") -> str:
        code, out, err = await kubectl(config, cache, *args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out

    return k


async def _until(condition, what: str, timeout: float = 60.0) -> None:
    """Poll a real cluster's ``condition`` (an async callable) until it holds."""
    with trio.fail_after(timeout):
        while not await condition():
            await trio.sleep(0.2)


class Writer:
    """Creates ConfigMaps ``cm-0``, ``cm-1``, ... and reads each back; every fifth one
    it scales the ``load`` Deployment to ``replicas`` (when set)."""

    def __init__(self, client: ZeroDowntimeClient) -> None:
        self.client = client
        self.acknowledged: dict[str, dict] = {}
        self.replicas: int | None = None
        self.done = False

    async def run(self) -> None:
        i = 0
        while not self.done:
            name = f"cm-{i}"
            body = {"metadata": {"name": name}, "data": {"i": str(i)}}
            created = await self.client.call(f"create {name}",
                                             self.client.core.create_namespaced_config_map,
                                             "default", body, created=body)  # fmt: skip
            if created is not None:
                self.acknowledged[name] = body["data"]
                read = await self.client.call(f"read {name}",
                                              self.client.core.read_namespaced_config_map,
                                              name, "default")  # fmt: skip
                assert read is None or read.data == body["data"]
            if i % 5 == 0 and self.replicas is not None:
                await self.client.call("scale load",
                                       self.client.apps.patch_namespaced_deployment_scale,
                                       "load", "default", {"spec": {"replicas": self.replicas}})
            i += 1

    async def wait_acks(self, more: int) -> None:
        target = len(self.acknowledged) + more
        await _until(lambda: _true(len(self.acknowledged) >= target), f"{more} writes", 90)


async def _true(value: bool) -> bool:
    return value


async def _holder(k, lease: str) -> str:
    out = await k("get", "lease", "-n", "kube-system", lease, "-o",
                  "jsonpath={.spec.holderIdentity}")  # fmt: skip
    return out.split("_")[0]  # the replica's name (see _components.identity)


async def _all_there(client: ZeroDowntimeClient, acknowledged: dict[str, dict]) -> None:
    items = await client.call("list", client.core.list_namespaced_config_map, "default")
    assert items is not None
    found = {cm.metadata.name: cm.data for cm in items.items}
    lost = {n for n, data in acknowledged.items() if found.get(n) != data}
    assert not lost, f"acknowledged writes lost: {sorted(lost)}"


async def test_killing_each_leader_in_turn_fails_no_request(tmp_path):
    async with distributed_cluster(tmp_path / "cluster", nodes=3, apiservers=2) as (cluster,
                                                                                     config):
        k = _k(config, tmp_path / "cache")
        await k("create", "-f", "-", stdin=json.dumps(PAUSE).encode())
        await k("rollout", "status", "deployment/load", "--timeout=120s")
        client = ZeroDowntimeClient(config)
        writer = Writer(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.wait_acks(10)
            writer.replicas = 3
            killed = [f"etcd-{await etcd_leader(cluster)}", "apiserver-1",
                      await _holder(k, "kube-controller-manager")]  # fmt: skip
            for name in killed:
                kill(cluster, name)
                await writer.wait_acks(20)
            killed.append(await _holder(k, "kube-scheduler"))
            kill(cluster, killed[-1])
            await writer.wait_acks(20)
            # A scale-up after every kill: new pods need the new leaders.
            writer.replicas = 5
            await writer.wait_acks(20)
            writer.done = True
        print(f"killed {killed}; {len(client.successes)} requests succeeded, "
              f"{client.retries} retried; longest gap {client.longest_gap():.2f} s")
        assert not client.failures, client.failures
        await _all_there(client, writer.acknowledged)
        await k("rollout", "status", "deployment/load", "--timeout=120s")
        status = json.loads(await k("get", "deployment", "load", "-o", "json"))["status"]
        assert status["readyReplicas"] == 5
        # The killed leaders were replaced: the leases name other replicas now.
        assert await _holder(k, "kube-controller-manager") != killed[2]
        assert await _holder(k, "kube-scheduler") != killed[3]


async def test_the_whole_control_plane_killed_during_writes_loses_nothing_acknowledged(tmp_path):
    async with distributed_cluster(tmp_path / "cluster", nodes=1, apiservers=2) as (cluster,
                                                                                     config):
        client = ZeroDowntimeClient(config, budget=90.0)
        writer = Writer(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.wait_acks(30)
            control_plane = [n for n in cluster.processes
                             if n.startswith(("etcd-", "apiserver-", "controller-manager-",
                                              "scheduler-"))]  # fmt: skip
            for name in control_plane:
                kill(cluster, name)
            await writer.wait_acks(30)
            writer.done = True
        print(f"{len(writer.acknowledged)} writes acknowledged; longest gap "
              f"{client.longest_gap():.2f} s")
        assert not client.failures, client.failures
        await _all_there(client, writer.acknowledged)


async def test_a_killed_node_has_its_pods_rescheduled(tmp_path):
    grace = {"controller-manager": ["--node-monitor-grace-period", "8"]}
    async with distributed_cluster(tmp_path / "cluster", nodes=3, apiservers=1,
                                   extra_args=grace) as (cluster, config):  # fmt: skip
        k = _k(config, tmp_path / "cache")
        deployment = json.loads(json.dumps(PAUSE))
        spec = deployment["spec"]
        spec["replicas"] = 4
        spec["template"]["spec"]["tolerations"] = [
            {"key": f"node.kubernetes.io/{key}", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 2} for key in ("not-ready", "unreachable")]  # fmt: skip
        await k("create", "-f", "-", stdin=json.dumps(deployment).encode())
        await k("rollout", "status", "deployment/load", "--timeout=120s")
        pods = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
        victim = pods[0]["spec"]["nodeName"]
        on_victim = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
        for name in (f"kubelet-{victim}", f"proxy-{victim}"):
            cluster.supervisor.hold(name)
            kill(cluster, name)

        async def moved() -> bool:
            items = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
            running = [p for p in items if not p["metadata"].get("deletionTimestamp")
                       and p["status"].get("phase") == "Running"
                       and any(c["type"] == "Ready" and c["status"] == "True"
                               for c in p["status"].get("conditions") or ())]  # fmt: skip
            return len(running) == 4 and all(p["spec"]["nodeName"] != victim for p in running)

        await _until(moved, "the pods to run elsewhere", timeout=120)
        node = json.loads(await k("get", "node", victim, "-o", "json"))
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown"
        taints = {t["key"] for t in node["spec"].get("taints") or ()}
        assert "node.kubernetes.io/unreachable" in taints
        # The victim's pods were evicted: gone, or Terminating until the node answers
        # again (nobody can confirm they stopped), as in Kubernetes.
        items = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
        assert on_victim
        assert all(p["metadata"].get("deletionTimestamp") for p in items
                   if p["metadata"]["name"] in on_victim)  # fmt: skip
