"""A whole cluster in the deterministic simulation, for the controllers' tests: a host
"api" (a 3-member etcd group and the API server), a host "scheduler", a host
"controllers" (the root CA publisher from the start, which pods' token volumes need;
tests add the controllers they test), a host "metrics" (the metrics server, which the
API server serves metrics.k8s.io from), and one host per node (a kubelet beside its
simulated runtime), all on one SimNetwork in virtual time. Crashing a node's host stops
its kubelet and its runtime, as a machine that dies. Every node's runtime shares one ``SimLoad``
(``cluster.load``): ``cluster.load.set("web", 1500)`` spreads 1.5 cores over the
running containers of pods annotated ``sim.actorkube.io/load-group: web``.

With ``cloud=True`` the cluster lives in an ``InMemoryCloud`` (``cluster.cloud``, no real
load balancers): each node's host, when it boots, finds (or makes) the instance named
as the node, in ``ZONE`` of ``REGION``, with the node's IP; its kubelet registers for an
external cloud (tainted uninitialized, with a podCIDR) and no pod lands on it until a
cloud controller manager has initialised it. ``spawn_cloud_controller_manager(host)``
starts one on its own host ("cloud" by default) as the service account
kube-system/cloud-controller-manager; ``terminate_instance``, ``shutdown_instance`` and
``start_instance`` act on a node's machine (its host crashes or boots with it).

    async def scenario(net):
        cluster = await SimCluster.start(net, nodes=3)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        ...

    simulate(scenario, seed=seed)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio
from root_ca import TEST_CA
from virtual_time import wait_for

from actorkube.actor import Actor, ActorSystem, handler, message
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.apiserver._rbac import (
    CLOUD_CONTROLLER_MANAGER_ACCOUNT,
    CONTROLLER_ACCOUNTS,
    METRICS_SERVER_ACCOUNT,
)
from actorkube.client import ApiClient
from actorkube.cloud import NodeAddress
from actorkube.cloud._memory import InMemoryCloud
from actorkube.cloud.manager import CloudControllerManager
from actorkube.controllers import RootCACertPublisher
from actorkube.etcd import start_group
from actorkube.metrics import METRIC_RESOLUTION, MetricsServer
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.runtime import SimLoad, SimRuntime
from actorkube.scheduler import Scheduler, SchedulerConfig
from actorkube.sim import SimNetwork

API = "ak://api/apiserver"
METRICS_SERVER = "ak://metrics/metrics-server"
INSTANCE_TYPE = "sim.standard"
REGION = "sim-1"
ZONE = "sim-1a"
CCM_TOKEN = f"{CLOUD_CONTROLLER_MANAGER_ACCOUNT}-token"


def _tokens(nodes: int) -> str:
    lines = ["admin-token,admin,1,system:masters",
             "scheduler-token,system:kube-scheduler,2",
             "controller-manager-token,system:kube-controller-manager,3"]  # fmt: skip
    for name in (*CONTROLLER_ACCOUNTS, METRICS_SERVER_ACCOUNT, CLOUD_CONTROLLER_MANAGER_ACCOUNT):
        lines.append(f"{name}-token,system:serviceaccount:kube-system:{name},{name},"
                     f'"system:serviceaccounts,system:serviceaccounts:kube-system"')  # fmt: skip
    for i in range(nodes):
        lines.append(f"node-{i}-token,system:node:node-{i},node-{i},system:nodes")
    return "\n".join(lines) + "\n"


@message(tag="tests.sim_cluster._Go")
class _Go:
    pass


class RuntimeTask(Actor):
    """Runs a node's runtime for as long as the node's host lives; closes it when the
    host dies (its containers then share no load)."""

    def __init__(self, runtime: SimRuntime) -> None:
        self.runtime = runtime

    async def started(self) -> None:
        self.ref.tell(_Go())

    @handler
    async def on_go(self, msg: _Go) -> None:
        try:
            await self.runtime.run()
        finally:
            with trio.CancelScope(shield=True):
                await self.runtime.aclose()


def pod_cidr(i: int) -> str:
    return f"10.244.{i}.0/24"


class SimCluster:
    """The cluster of one simulation (see the module docstring)."""

    def __init__(self, net: SimNetwork, nodes: int, client_system: ActorSystem) -> None:
        self.net = net
        self.nodes = nodes
        self.client = ApiClient(client_system, client_system.ref(API), token="admin-token")
        self.controllers: dict[str, Any] = {}
        self.load = SimLoad()
        self.metrics_server: MetricsServer | None = None
        self.cloud: InMemoryCloud | None = None
        self.cloud_managers: dict[str, CloudControllerManager] = {}  # by host, as booted

    @classmethod
    async def start(cls, net: SimNetwork, *, nodes: int = 3, spare_nodes: int = 2,
                    cpu: str = "4", profiles: dict | None = None,
                    metric_resolution: float = METRIC_RESOLUTION,
                    cloud: bool = False) -> SimCluster:  # fmt: skip
        """The cluster with ``nodes`` nodes up and Ready; ``spare_nodes`` more have
        credentials and can join later (``add_node``). The metrics server scrapes the
        kubelets every ``metric_resolution`` seconds. ``cloud``: the nodes are the
        instances of an in-memory cloud (see the module docstring)."""
        tokens = parse_token_file(_tokens(nodes + spare_nodes))

        async def boot_api(system: ActorSystem) -> None:
            group = start_group(system, 3)
            api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                        tokens=tokens, seed=1,
                                        metrics_server=METRICS_SERVER)  # fmt: skip
            await api.ready()

        def boot_scheduler(system: ActorSystem) -> None:
            scheduler = Scheduler(system.ref(API), token="scheduler-token", identity="s1",
                                  config=SchedulerConfig(leader_elect=False))  # fmt: skip
            system.spawn(lambda: scheduler, name="scheduler")

        await net.add_host("api", boot_api)
        clients = await net.add_host("clients", lambda system: None)
        cluster = cls(net, nodes, clients)
        cluster.profiles = profiles or {}
        cluster.cpu = cpu
        if cloud:
            cluster.cloud = InMemoryCloud(real_load_balancers=False)
        await net.add_host("scheduler", boot_scheduler)
        await net.add_host("controllers", cluster.controllers_boot)
        await net.add_host("metrics", cluster.metrics_boot(metric_resolution))
        for i in range(nodes):
            await net.add_host(f"node-{i}", cluster.node_boot(i))
        await wait_for(cluster._nodes_ready)
        return cluster

    def controllers_boot(self, system: ActorSystem) -> None:
        """The host of the controllers: the root CA publisher runs there from the start
        (pods' token volumes read its ConfigMap); tests add the controllers they test."""
        publisher = RootCACertPublisher(system.ref(API), token="root-ca-cert-publisher-token",
                                        root_ca=TEST_CA)  # fmt: skip
        system.spawn(lambda: publisher, name="root-ca-cert-publisher")

    async def add_node(self) -> str:
        """Another node joins (its host boots; it registers by itself); its name."""
        i = self.nodes
        self.nodes += 1
        await self.net.add_host(f"node-{i}", self.node_boot(i))
        return f"node-{i}"

    def metrics_boot(self, resolution: float) -> Callable[[ActorSystem], None]:
        """What starts the metrics server on its host (again, after a restart)."""

        def boot(system: ActorSystem) -> None:
            token = f"{METRICS_SERVER_ACCOUNT}-token"
            server = MetricsServer(system.ref(API), token=token, metric_resolution=resolution)
            system.spawn(lambda: server, name="metrics-server")
            self.metrics_server = server

        return boot

    def node_boot(self, i: int) -> Callable[[ActorSystem], None]:
        """What starts node ``i`` on its host (again, after a restart)."""

        def boot(system: ActorSystem) -> None:
            runtime = SimRuntime(pod_cidr(i), profiles=self.profiles, wall_clock=system.clock.now,
                                 load=self.load)  # fmt: skip
            system.spawn(lambda: RuntimeTask(runtime), name="runtime")
            capacity = {"cpu": self.cpu, "memory": "8Gi", "pods": "110"}
            name, ip = f"node-{i}", f"127.1.0.{i + 1}"
            node = NodeConfig(name, ip=ip, capacity=capacity)
            if self.cloud is not None:
                if self.cloud.instance(name) is None:
                    self.cloud.create_instance(
                        name, instance_type=INSTANCE_TYPE, zone=ZONE, region=REGION,
                        addresses=(NodeAddress("InternalIP", ip), NodeAddress("Hostname", name)))
                node = attrs.evolve(node, pod_cidr=pod_cidr(i), external_cloud_provider=True)
            kubelet = Kubelet(system.ref(API), runtime, KubeletConfig(node),
                              token=f"node-{i}-token")  # fmt: skip
            system.spawn(lambda: kubelet, name="kubelet")

        return boot

    async def _nodes_ready(self) -> bool:
        try:
            listed = await self.client.list("nodes")
        except ApiError:
            return False
        ready = [n for n in listed["items"]
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in (n.get("status") or {}).get("conditions") or ())]  # fmt: skip
        return len(ready) == self.nodes

    async def spawn_cloud_controller_manager(self, host: str = "cloud",
                                             **options: Any) -> CloudControllerManager:  # fmt: skip
        """A cloud controller manager for ``cluster.cloud`` on a host of its own,
        ``host`` (its identity in the election too), started again when the host is;
        ``options`` go to ``CloudControllerManager``. The manager as first booted (the
        one running now is ``cloud_managers[host]``)."""

        def boot(system: ActorSystem) -> None:
            manager = CloudControllerManager(system.ref(API), self.cloud, token=CCM_TOKEN,
                                             identity=host, **options)  # fmt: skip
            system.spawn(lambda: manager, name="cloud-controller-manager")
            self.cloud_managers[host] = manager

        await self.net.add_host(host, boot)
        return self.cloud_managers[host]

    async def terminate_instance(self, name: str) -> None:
        """Node ``name``'s instance is terminated: gone from the cloud, its host down."""
        self.cloud.terminate(name)
        await self.net.crash(name)

    async def shutdown_instance(self, name: str) -> None:
        """Node ``name``'s instance is shut down (stopped): its host goes down with it."""
        self.cloud.shutdown(name)
        await self.net.crash(name)

    async def start_instance(self, name: str) -> None:
        """Node ``name``'s instance, shut down, starts again: its host boots."""
        self.cloud.start(name)
        await self.net.restart(name)

    def spawn_controller(self, cls: type, name: str, *, account: str = "",
                         **options: Any) -> Any:  # fmt: skip
        """Start controller ``cls`` on the host "controllers" as the service account
        ``account`` (default: its ``name``, as kube-controller-manager's controllers
        are); the instance (its informers and counters are there to look at)."""
        system = self.net.system("controllers")
        controller = cls(system.ref(API), token=f"{account or name}-token", **options)
        system.spawn(lambda: controller, name=name)
        self.controllers[name] = controller
        return controller

    async def pods(self, namespace: str = "default", **options: Any) -> list[dict]:
        return (await self.client.list("pods", namespace=namespace, **options))["items"]

    async def running_pods(self, namespace: str = "default", **options: Any) -> list[dict]:
        """Pods Running and ready, not being deleted."""
        return [p for p in await self.pods(namespace, **options)
                if not p["metadata"].get("deletionTimestamp")
                and p.get("status", {}).get("phase") == "Running"
                and any(c["type"] == "Ready" and c["status"] == "True"
                        for c in p["status"].get("conditions") or ())]  # fmt: skip
