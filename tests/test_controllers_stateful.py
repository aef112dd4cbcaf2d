"""A Hypothesis state machine over the whole control plane in the deterministic
simulation: an etcd group and the API server, the scheduler, two controller managers
electing a leader (ReplicaSet, Deployment, DaemonSet, node lifecycle, taint eviction and
pod GC controllers), and four simulated nodes, running a Deployment, a ReplicaSet and a
DaemonSet.

The rules scale the workloads, delete pods, crash nodes and bring them back, cut nodes
or the leading controller manager off the network and heal it, kill the leading
controller manager and restart it, and let virtual time pass. Then the faults stop,
every host comes back and time passes; every ReplicaSet, Deployment and DaemonSet
must have converged to what it asks for
(the right number of running, ready pods, each on a live node, none left Terminating,
none more), and no pod is bound to a node that is gone.

A failure prints the steps, starting with the simulation's seed; Hypothesis shrinks
them and replays them exactly (virtual time, seeded scheduling).
"""

from __future__ import annotations

import contextlib
import random
import sys

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from sim_cluster import API, SimCluster
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError
from actorkube.controllers import (
    ControllerManager,
    DaemonSetController,
    DeploymentController,
    NodeLifecycleController,
    PodGCController,
    ReplicaSetController,
    TaintEvictionController,
)
from actorkube.sim import SimNetwork, SteppedSimulation

NODES = 4
MANAGERS = ("cm1", "cm2")
# Kubernetes' node-monitor grace period (50 s) and default toleration (300 s), the
# manager's lease (15 s), and room for the work: time to converge once faults stop.
SETTLE = 600.0


def _template(app: str) -> dict:
    return {"metadata": {"labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "pause"}],
                     "terminationGracePeriodSeconds": 5}}  # fmt: skip


def deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": _template("web")}}  # fmt: skip


def replica_set(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "cache"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "cache"}},
                     "template": _template("cache")}}  # fmt: skip


def daemon_set() -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": _template("agent")}}  # fmt: skip


def _manager_boot(name: str):
    def boot(system: ActorSystem) -> None:
        api = system.ref(API)

        def make(cls, account):
            return lambda: cls(api, token=f"{account}-token")

        controllers = {
            "replicaset-controller": make(ReplicaSetController, "replicaset-controller"),
            "deployment-controller": make(DeploymentController, "deployment-controller"),
            "daemon-set-controller": make(DaemonSetController, "daemon-set-controller"),
            "node-lifecycle-controller": make(NodeLifecycleController, "node-controller"),
            "taint-eviction-controller": make(TaintEvictionController, "node-controller"),
            "pod-garbage-collector": make(PodGCController, "pod-garbage-collector"),
        }
        manager = ControllerManager(api, controllers, token="controller-manager-token",
                                    identity=name)  # fmt: skip
        system.spawn(lambda: manager, name="kube-controller-manager")

    return boot


async def _boot(net: SimNetwork) -> SimCluster:
    cluster = await SimCluster.start(net, nodes=NODES, spare_nodes=0)
    for name in MANAGERS:
        await net.add_host(name, _manager_boot(name))
    await cluster.client.create("deployments", deployment(3), namespace="default", group="apps")
    await cluster.client.create("replicasets", replica_set(2), namespace="default", group="apps")
    await cluster.client.create("daemonsets", daemon_set(), namespace="default", group="apps")
    return cluster


async def _scale(net: SimNetwork, cluster: SimCluster, resource: str, name: str,
                 replicas: int) -> None:  # fmt: skip
    # The API may be unreachable for a moment; the test's steps go on.
    with contextlib.suppress(ApiError):
        await cluster.client.patch(resource, name, {"spec": {"replicas": replicas}},
                                   namespace="default", group="apps")  # fmt: skip


async def _delete_pod(net: SimNetwork, cluster: SimCluster, pick: float) -> None:
    try:
        pods = await cluster.pods()
        if pods:
            victim = pods[int(pick * len(pods))]["metadata"]["name"]
            await cluster.client.delete("pods", victim, namespace="default")
    except ApiError:
        pass


async def _leader(net: SimNetwork, cluster: SimCluster) -> str | None:
    try:
        lease = await cluster.client.get("leases", "kube-controller-manager",
                                         namespace="kube-system", group="coordination.k8s.io")
    except ApiError:
        return None
    return lease["spec"].get("holderIdentity")


async def _call(net: SimNetwork, method: str, *args) -> None:
    result = getattr(net, method)(*args)
    if hasattr(result, "__await__"):
        await result


class ControlPlane(RuleBasedStateMachine):
    """The cluster and the fault rules (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.sim: SteppedSimulation | None = None

    @initialize(seed=st.integers(0, 2**32 - 1))
    def boot(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.down: set[str] = set()  # crashed hosts
        self.cut: set[str] = set()  # nodes cut off the network
        self.sim = SteppedSimulation(seed)
        self.cluster = self.sim.run(_boot)
        self.sim.advance(20)

    def _impaired(self) -> int:
        return len({h for h in self.down | self.cut if h.startswith("node-")})

    # --- the workloads -----------------------------------------------------------------

    @rule(replicas=st.integers(0, 6))
    def scale_deployment(self, replicas: int) -> None:
        self.sim.run(_scale, self.cluster, "deployments", "web", replicas)

    @rule(replicas=st.integers(0, 5))
    def scale_replica_set(self, replicas: int) -> None:
        self.sim.run(_scale, self.cluster, "replicasets", "cache", replicas)

    @rule(pick=st.floats(0, 0.999))
    def delete_pod(self, pick: float) -> None:
        self.sim.run(_delete_pod, self.cluster, pick)

    # --- faults and time ---------------------------------------------------------------

    @rule(seconds=st.sampled_from([1.0, 5.0, 20.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @precondition(lambda self: self._impaired() < 2)
    @rule(node=st.integers(0, NODES - 1))
    def crash_node(self, node: int) -> None:
        host = f"node-{node}"
        if host not in self.down:
            self.sim.run(_call, "crash", host)
            self.down.add(host)

    @precondition(lambda self: self._impaired() < 2)
    @rule(node=st.integers(0, NODES - 1))
    def cut_node_off(self, node: int) -> None:
        host = f"node-{node}"
        if host not in self.down | self.cut:
            self.sim.run(_call, "isolate", host)
            self.cut.add(host)

    @precondition(lambda self: self.cut)
    @rule()
    def heal(self) -> None:
        self.sim.run(_call, "heal")
        self.cut.clear()

    @precondition(lambda self: any(h.startswith("node-") for h in self.down))
    @rule(data=st.data())
    def restart_node(self, data) -> None:
        host = data.draw(st.sampled_from(sorted(h for h in self.down if h.startswith("node-"))))
        self._restart(host)

    @precondition(lambda self: not any(h in self.down for h in MANAGERS))
    @rule()
    def kill_leading_manager(self) -> None:
        leader = self.sim.run(_leader, self.cluster)
        if leader in MANAGERS:
            self.sim.run(_call, "crash", leader)
            self.down.add(leader)

    @precondition(lambda self: not any(h in self.down | self.cut for h in MANAGERS))
    @rule()
    def cut_leading_manager_off(self) -> None:
        """The leader keeps running but reaches nobody: its lease runs out and the
        other takes over, while it may still believe it leads (until its renew
        deadline), the case leader election exists for."""
        leader = self.sim.run(_leader, self.cluster)
        if leader in MANAGERS:
            self.sim.run(_call, "isolate", leader)
            self.cut.add(leader)

    @precondition(lambda self: any(h in self.down for h in MANAGERS))
    @rule()
    def restart_manager(self) -> None:
        for host in MANAGERS:
            if host in self.down:
                self._restart(host)

    def _restart(self, host: str) -> None:
        self.sim.run(_call, "restart", host)
        self.down.discard(host)
        if host in self.cut:
            self.sim.run(_call, "isolate", host)  # a restarted machine is still cut off

    # --- the end -------------------------------------------------------------------------

    def teardown(self) -> None:
        if self.sim is None:
            return
        failed = sys.exc_info()[1] is not None  # a rule failed: report that, check no more
        try:
            if not failed:
                self.sim.run(_call, "heal")
                self.cut.clear()
                for host in sorted(self.down):
                    self._restart(host)
                self.sim.run(_converged, self.cluster)
        finally:
            self.sim.close()


async def _converged(net: SimNetwork, cluster: SimCluster) -> None:
    """Wait (virtual time) until every workload has what it asks for; fail with the
    difference if it has not after ``SETTLE`` seconds."""
    last: list[str] = []

    async def check():
        last[:] = await _problems(cluster)
        return not last or None

    try:
        await wait_for(check, limit=SETTLE)
    except Exception as e:
        raise AssertionError(f"not converged after {SETTLE:g} s: {last}") from e


async def _problems(cluster: SimCluster) -> list[str]:
    client = cluster.client
    problems = []
    try:
        nodes = (await client.list("nodes"))["items"]
        pods = await cluster.pods()
        web = await client.get("deployments", "web", namespace="default", group="apps")
        cache = await client.get("replicasets", "cache", namespace="default", group="apps")
        agent = await client.get("daemonsets", "agent", namespace="default", group="apps")
    except ApiError as e:
        return [f"the API: {e}"]
    ready_nodes = {n["metadata"]["name"] for n in nodes
                   if any(c["type"] == "Ready" and c["status"] == "True"
                          for c in n.get("status", {}).get("conditions") or ())}  # fmt: skip
    if len(ready_nodes) != NODES:
        problems.append(f"ready nodes: {sorted(ready_nodes)}")

    def running(app: str) -> list[dict]:
        return [p for p in pods if p["metadata"].get("labels", {}).get("app") == app
                and p.get("status", {}).get("phase") == "Running"
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions") or ())]  # fmt: skip

    for p in pods:
        m = p["metadata"]
        if m.get("deletionTimestamp"):
            problems.append(f"pod {m['name']} still terminating")
        bound = p.get("spec", {}).get("nodeName")
        if bound and bound not in ready_nodes:
            problems.append(f"pod {m['name']} bound to {bound}, not a ready node")
    for app, obj in (("web", web), ("cache", cache)):
        wanted = obj["spec"]["replicas"]
        have = [p for p in pods if p["metadata"].get("labels", {}).get("app") == app]
        if len(running(app)) != wanted or len(have) != wanted:
            problems.append(f"{app}: {len(running(app))} running of {len(have)}, wants {wanted}")
        status = obj.get("status", {})
        if status.get("readyReplicas", 0) != wanted or status.get("replicas", 0) != wanted:
            problems.append(f"{app} status: {status}")
    agents = running("agent")
    if sorted(p["spec"]["nodeName"] for p in agents) != sorted(ready_nodes):
        problems.append(f"agent pods on {sorted(p['spec']['nodeName'] for p in agents)}")
    status = agent.get("status", {})
    if (status.get("desiredNumberScheduled"), status.get("numberReady"),
            status.get("numberMisscheduled", 0)) != (NODES, NODES, 0):  # fmt: skip
        problems.append(f"agent status: {status}")
    return problems


TestControlPlane = ControlPlane.TestCase
TestControlPlane.settings = settings(
    max_examples=max(8, settings().max_examples // 10), stateful_step_count=30, deadline=None
)
