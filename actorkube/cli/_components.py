"""Starting each component of a cluster in an actor system, given its API server.

One set of functions for both ways of running a cluster: ``actorkube up`` calls them
all in one system, and each ``actorkube COMPONENT`` process calls its own in a system
of its own that reaches the API servers over TCP. ``api`` is an ``ActorRef`` (one
server) or ``ApiServers`` (replicas, failed over between by the clients).

Every component runs under a ``Component`` supervisor with its own restart history, as
systemd or the kubelet restart Kubernetes' components.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import trio

from actorkube.actor import Actor, ActorRef, ActorSystem, Backoff, OneForOne
from actorkube.client import ApiClient, ApiServers
from actorkube.cloud import CloudControllerManager, InMemoryCloud, NodeAddress
from actorkube.controllers import ControllerManager
from actorkube.metrics import MetricsServer
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.dns import ClusterDNS
from actorkube.node.proxy import KubeProxy
from actorkube.node.runtime import ProcessRuntime
from actorkube.pki import KeyPair
from actorkube.scheduler import Scheduler, SchedulerConfig

from ._cluster import CONTROLLERS, ROOT_CA_CONTROLLER, SIGNING_CONTROLLER, controller_user

Api = ActorRef | ApiServers
INSTANCE_TYPE, ZONE, REGION = "local.process", "local-a", "local"  # the in-memory cloud's
DNS_IP = "127.96.0.10"  # kube-dns's address, as 10.96.0.10 in a kubeadm cluster
METRICS_SERVER = "metrics-server"  # the actor's name


class Component(Actor):
    """Supervises one component of the cluster, with its own restart history: a
    component that fails is started again after a pause that doubles from 1 s with each
    restart in the last minute (at most 30 s, so it is never given up on), as systemd
    or the kubelet restart Kubernetes' components; one that crash-loops never delays
    or stops the others."""

    supervision = OneForOne(intensity=10, period=60.0, backoff=Backoff(min=1.0, max=30.0))

    def __init__(self, make: Callable[[], Actor], name: str) -> None:
        self.make = make
        self.child_name = name

    async def started(self) -> None:
        self.spawn(self.make, name=self.child_name)


def run_component(system: ActorSystem, make: Callable[[], Actor], name: str) -> None:
    system.spawn(lambda: Component(make, name), name=f"{name}-supervisor")


def identity(component: str = "") -> str:
    """A leader-election identity, Kubernetes' ``hostname_uuid`` (with the component's
    instance name in front when given, so an operator can tell replicas apart)."""
    prefix = f"{component}_" if component else ""
    return f"{prefix}{socket.gethostname()}_{uuid.uuid4()}"


def start_scheduler(system: ActorSystem, api: Api, token: str, *,
                    config: SchedulerConfig | None = None, name: str = "") -> None:  # fmt: skip
    run_component(system, lambda: Scheduler(api, token=token, identity=identity(name),
                                            config=config), "scheduler")  # fmt: skip


def start_controller_manager(system: ActorSystem, api: Api, token: str,
                             tokens: Callable[[str], str], *, ca: KeyPair, name: str = "",
                             options: Mapping[str, Mapping[str, Any]] = {}) -> None:  # fmt: skip
    """The controller manager (``token``) and its controllers, each as its service
    account (``tokens(user)``) with its ``options`` (by controller name: keywords for its
    class, such as the node lifecycle controller's ``config``); the CSR signer signs
    with ``ca``, and the root CA publisher publishes its certificate."""
    options = {**options, SIGNING_CONTROLLER: {**options.get(SIGNING_CONTROLLER, {}), "ca": ca},
               ROOT_CA_CONTROLLER: {**options.get(ROOT_CA_CONTROLLER, {}), "root_ca": ca.cert}}
    controllers = {
        controller: lambda controller=controller, make=make, account=account: make(
            api, token=tokens(controller_user(account)), **options.get(controller, {}))
        for controller, (account, make) in CONTROLLERS.items()
    }  # fmt: skip
    run_component(system, lambda: ControllerManager(api, controllers, token=token,
                                                    identity=identity(name)),
                  "kube-controller-manager")  # fmt: skip


def start_cloud_controller_manager(system: ActorSystem, api: Api, cloud: InMemoryCloud,
                                   token: str, *, name: str = "") -> None:  # fmt: skip
    run_component(system, lambda: CloudControllerManager(api, cloud, token=token,
                                                         identity=identity(name)),
                  "cloud-controller-manager")  # fmt: skip


def start_metrics_server(system: ActorSystem, api: Api, token: str) -> None:
    run_component(system, lambda: MetricsServer(api, token=token), METRICS_SERVER)


def add_instance(cloud: InMemoryCloud, name: str, ip: str) -> None:
    """Node ``name`` as a machine of the in-memory cloud."""
    cloud.create_instance(name, instance_type=INSTANCE_TYPE, zone=ZONE, region=REGION,
                          addresses=(NodeAddress("InternalIP", ip),
                                     NodeAddress("Hostname", name)))  # fmt: skip


async def start_kubelet(system: ActorSystem, api: Api, nursery: trio.Nursery, *, name: str,
                        ip: str, pod_cidr: str, root: Path, token: str = "",
                        certificate: bytes = b"", external_cloud: bool, dns: bool,
                        labels: Mapping[str, str] = {}) -> None:  # fmt: skip
    """A node's kubelet and its process runtime (running in ``nursery``, as containerd
    runs beside the kubelet: when the node stops, every pod's processes stop with it).
    ``external_cloud``: the kubelet registers for an external cloud (a cloud controller
    manager initialises its node). It authenticates with ``token`` or, a joined node,
    with its client ``certificate`` (DER)."""
    runtime = ProcessRuntime(root / "runtime", pod_cidr, wall_clock=system.clock.now)
    config = KubeletConfig(NodeConfig(name, ip=ip, capacity=capacity(), pod_cidr=pod_cidr,
                                      external_cloud_provider=external_cloud,
                                      labels=dict(labels)),
                           root_dir=root / "kubelet",
                           cluster_dns=(DNS_IP,) if dns else ())  # fmt: skip
    await nursery.start(runtime.run)
    run_component(system, lambda: Kubelet(api, runtime, config, token=token,
                                           certificate=certificate), f"kubelet-{name}")  # fmt: skip


def start_proxy(system: ActorSystem, api: Api, token: str = "", *, certificate: bytes = b"",
                name: str, ip: str) -> None:  # fmt: skip
    """A node's kube-proxy (as ``token``'s user, or as its node's ``certificate``)."""
    run_component(system, lambda: KubeProxy(api, token=token, certificate=certificate,
                                            node_name=name, node_ip=ip),
                  f"kube-proxy-{name}")  # fmt: skip


def capacity() -> dict[str, str]:
    """This machine, as a node's capacity."""
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{pages // 1024}Ki", "pods": "110",
            "ephemeral-storage": "100Gi"}  # fmt: skip


async def install_dns(system: ActorSystem, api: Api, addon_token: str) -> None:
    """The DNS addon's objects, as kubeadm installs CoreDNS's: its RBAC and its
    ``kube-system/kube-dns`` Service (which holds its cluster IP). Objects already there
    (an earlier start, another replica) are left as they are."""
    client = ApiClient(system, api, token=addon_token)
    rbac = "rbac.authorization.k8s.io"
    role = {"metadata": {"name": "system:coredns"}, "rules": [
        {"apiGroups": [""], "resources": ["services", "endpoints", "pods", "namespaces"],
         "verbs": ["list", "watch"]},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
         "verbs": ["list", "watch"]}]}  # fmt: skip
    binding = {"metadata": {"name": "system:coredns"},
               "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "system:coredns"},
               "subjects": [{"kind": "ServiceAccount", "name": "coredns",
                             "namespace": "kube-system"}]}  # fmt: skip
    service = {"metadata": {"name": "kube-dns", "namespace": "kube-system",
                            "labels": {"k8s-app": "kube-dns"}},
               "spec": {"clusterIP": DNS_IP, "ports": [
                   {"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}}  # fmt: skip
    for resource, group, namespace, body in (
        ("serviceaccounts", "", "kube-system", {"metadata": {"name": "coredns"}}),
        ("clusterroles", rbac, "", role),
        ("clusterrolebindings", rbac, "", binding),
        ("services", "", "kube-system", service),
    ):
        # There from an earlier start? (a Service's IP would be refused as taken)
        name = body["metadata"]["name"]
        if await client.get_if_exists(resource, name, namespace=namespace, group=group) is None:
            await client.create(resource, body, namespace=namespace, group=group)


def start_dns(system: ActorSystem, api: Api, token: str) -> None:
    """The cluster DNS server on kube-dns's IP (port 53: root only)."""
    run_component(system, lambda: ClusterDNS(api, token=token, ip=DNS_IP), "cluster-dns")
