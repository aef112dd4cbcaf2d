"""``actorkube up``: a cluster in one process, for kubectl and the official clients.

What it starts: a 3-member etcd group on disk (``DATA/etcd``), the API server on it, the
scheduler (user system:kube-scheduler, leader election on its Lease; profiles from
``--scheduler-config``, a KubeSchedulerConfiguration, if given), the controller manager
(leader election on its Lease; the Deployment, ReplicaSet, DaemonSet, Job, CronJob,
TTL-after-finished, HorizontalPodAutoscaler, node lifecycle, taint eviction, pod garbage
collector, namespace, garbage collector, service account, EndpointSlice and Endpoints
controllers, each as its service account), ``nodes`` worker nodes (default 1: a kubelet
whose pods are real processes, ``ProcessRuntime`` under ``DATA/nodes/NAME``, pod IPs
from 127.244.0.0/16 for the first node and the next /16 for each other one, node IPs
127.1.0.1, 127.1.0.2, ...; and a kube-proxy that forwards Service cluster IPs, from
127.96.0.0/12, and node ports), the metrics server (service account
kube-system/metrics-server, scraping every kubelet every 15 s; the API server serves
metrics.k8s.io from it, for ``kubectl top``), the cloud controller manager on the
in-memory cloud (each node an instance; kubelets register for an external cloud and the
cloud's node controller initialises their nodes; Services of type LoadBalancer get a
load balancer listening on its own address out of 127.200.0.0/16), and the API server's
HTTPS front end on ``HOST:PORT`` with the cluster's certificates (``DATA/pki``: a CA
made on the first start and kept). Run as root, it also runs the cluster DNS on
``kube-system/kube-dns`` (127.96.0.10:53; pods resolve
``<service>.<namespace>.svc.cluster.local``), whose RBAC and Service it installs as
kubeadm installs CoreDNS's. It writes an admin kubeconfig (``DATA/admin.kubeconfig``:
the CA and the admin's client certificate, user ``admin`` in ``system:masters``) and
prints how to use it; ``DATA/tokens.csv`` (kube-apiserver's token file format) holds
bearer tokens for clients without a certificate. Ctrl-C stops it, and every pod's
processes with it; started again on the same directory it carries on with the same data,
CA and credentials, and the kubelets start the pods again.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from actorkube.actor import Actor, ActorSystem, Address, Backoff, OneForOne
from actorkube.apiserver import ApiError
from actorkube.apiserver._authn import new_signing_key, parse_token_file
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._rbac import CLOUD_CONTROLLER_MANAGER_ACCOUNT, METRICS_SERVER_ACCOUNT
from actorkube.apiserver._start import start_apiserver
from actorkube.client import ApiClient
from actorkube.cloud import CloudControllerManager, InMemoryCloud, NodeAddress
from actorkube.controllers import (
    ControllerManager,
    CronJobController,
    DaemonSetController,
    DeploymentController,
    EndpointsController,
    EndpointSliceController,
    GarbageCollector,
    HorizontalPodAutoscalerController,
    JobController,
    NamespaceController,
    NodeLifecycleController,
    PodGCController,
    ReplicaSetController,
    ServiceAccountController,
    TaintEvictionController,
    TTLAfterFinishedController,
)
from actorkube.etcd import start_group
from actorkube.metrics import MetricsServer
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.dns import ClusterDNS
from actorkube.node.proxy import KubeProxy
from actorkube.node.runtime import ProcessRuntime
from actorkube.pki import SERVING_HOSTS, ClusterPki, kubeconfig, write_private
from actorkube.scheduler import Scheduler, SchedulerConfig

SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
PROXY_USER = "system:kube-proxy"
ADDON_USER = "system:addon-manager"  # installs the DNS addon's objects, as kubeadm does
DNS_USER = "system:serviceaccount:kube-system:coredns"
CLOUD_USER = f"system:serviceaccount:kube-system:{CLOUD_CONTROLLER_MANAGER_ACCOUNT}"
INSTANCE_TYPE, ZONE, REGION = "local.process", "local-a", "local"  # the in-memory cloud's
DNS_IP = "127.96.0.10"  # kube-dns's address, as 10.96.0.10 in a kubeadm cluster
METRICS_USER = f"system:serviceaccount:kube-system:{METRICS_SERVER_ACCOUNT}"
METRICS_SERVER = "metrics-server"  # the actor's name
# The controllers the controller manager runs: name -> (service account, class).
CONTROLLERS = {
    "deployment-controller": ("deployment-controller", DeploymentController),
    "replicaset-controller": ("replicaset-controller", ReplicaSetController),
    "daemon-set-controller": ("daemon-set-controller", DaemonSetController),
    "job-controller": ("job-controller", JobController),
    "cronjob-controller": ("cronjob-controller", CronJobController),
    "ttl-after-finished-controller": ("ttl-after-finished-controller", TTLAfterFinishedController),
    "horizontal-pod-autoscaler": ("horizontal-pod-autoscaler", HorizontalPodAutoscalerController),
    "node-lifecycle-controller": ("node-controller", NodeLifecycleController),
    "taint-eviction-controller": ("node-controller", TaintEvictionController),
    "pod-garbage-collector": ("pod-garbage-collector", PodGCController),
    "namespace-controller": ("namespace-controller", NamespaceController),
    "garbage-collector-controller": ("generic-garbage-collector", GarbageCollector),
    "service-account-controller": ("service-account-controller", ServiceAccountController),
    "endpointslice-controller": ("endpointslice-controller", EndpointSliceController),
    "endpoint-controller": ("endpoint-controller", EndpointsController),
}  # fmt: skip


def _secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of ``path``, made (readable by its owner only, whole or not at all)
    if missing."""
    if not path.exists():
        write_private(path, make())
    return path.read_bytes()


def _admin_token_file() -> bytes:
    return f"{secrets.token_urlsafe(32)},admin,admin,system:masters\n".encode()


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


def _component_tokens(nodes: int) -> tuple[dict[str, str], str]:
    """Fresh credentials of the in-process components (never on disk): token by user,
    and the token file lines that make the API server accept them."""
    users = [SCHEDULER_USER, CONTROLLER_MANAGER_USER, PROXY_USER, ADDON_USER, DNS_USER,
             METRICS_USER, CLOUD_USER]  # fmt: skip
    users += [f"system:node:{node_name(i)}" for i in range(nodes)]
    users += sorted({f"system:serviceaccount:kube-system:{a}" for a, _ in CONTROLLERS.values()})
    tokens = {user: secrets.token_urlsafe(32) for user in users}
    lines = []
    for user, token in tokens.items():
        if user.startswith("system:node:"):
            groups = "system:nodes"
        elif user == ADDON_USER:
            groups = "system:masters"
        elif user.startswith("system:serviceaccount:"):
            groups = '"system:serviceaccounts,system:serviceaccounts:kube-system"'
        else:
            groups = user
        lines.append(f"{token},{user},{user},{groups}\n")
    return tokens, "".join(lines)


def node_name(i: int) -> str:
    return socket.gethostname().split(".")[0].lower() + ("" if i == 0 else f"-{i}")


async def _start_dns(system: ActorSystem, api, tokens: dict[str, str]) -> None:
    """The DNS addon: its RBAC, its ``kube-system/kube-dns`` Service (which holds its
    cluster IP), and the server itself on that IP."""
    client = ApiClient(system, api.ref, token=tokens[ADDON_USER])
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
        try:  # there from an earlier start? (a Service's IP would be refused as taken)
            await client.get(resource, body["metadata"]["name"], namespace=namespace,
                             group=group)  # fmt: skip
            continue
        except ApiError as e:
            if e.code != 404:
                raise
        await client.create(resource, body, namespace=namespace, group=group)
    run_component(system, lambda: ClusterDNS(api.ref, token=tokens[DNS_USER], ip=DNS_IP),
                  "cluster-dns")  # fmt: skip


async def _start_node(system: ActorSystem, api, data_dir: Path, i: int, tokens: dict[str, str],
                      nursery: trio.Nursery, cloud: InMemoryCloud, *,
                      dns: bool) -> None:  # fmt: skip
    """Node ``i``: its instance in the cloud, its process runtime (running in
    ``nursery``, as containerd runs beside the kubelet: when the cluster stops, every
    pod's processes stop with it), its kubelet (registering for an external cloud: the
    cloud controller manager initialises its node) and its kube-proxy."""
    name = node_name(i)
    ip = f"127.1.0.{i + 1}"
    cloud.create_instance(name, instance_type=INSTANCE_TYPE, zone=ZONE, region=REGION,
                          addresses=(NodeAddress("InternalIP", ip),
                                     NodeAddress("Hostname", name)))  # fmt: skip
    root = data_dir / "nodes" / name
    runtime = ProcessRuntime(root / "runtime", f"127.{244 + i}.0.0/16",
                             wall_clock=system.clock.now)  # fmt: skip
    config = KubeletConfig(NodeConfig(name, ip=ip, capacity=_capacity(),
                                      pod_cidr=f"127.{244 + i}.0.0/16",
                                      external_cloud_provider=True),
                           root_dir=root / "kubelet",
                           cluster_dns=(DNS_IP,) if dns else ())  # fmt: skip
    await nursery.start(runtime.run)
    run_component(system, lambda: Kubelet(api.ref, runtime, config,
                                           token=tokens[f"system:node:{name}"]),
                  f"kubelet-{name}")  # fmt: skip
    run_component(system, lambda: KubeProxy(api.ref, token=tokens[PROXY_USER], node_name=name,
                                            node_ip=ip), f"kube-proxy-{name}")  # fmt: skip


def _capacity() -> dict[str, str]:
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {"cpu": str(os.cpu_count() or 1), "memory": f"{pages // 1024}Ki", "pods": "110",
            "ephemeral-storage": "100Gi"}  # fmt: skip


async def run(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 6443,
    *,
    scheduler_config: SchedulerConfig | None = None,
    nodes: int = 1,
    say: Callable[[str], None] = print,
) -> None:
    """Run the control plane on ``data_dir`` until Ctrl-C or SIGTERM (see the module)."""
    # The directory holds etcd's log (Secrets among it), keys and tokens: its owner's only.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    everywhere = host in ("0.0.0.0", "::", "")
    hosts = SERVING_HOSTS if everywhere or host in SERVING_HOSTS else (*SERVING_HOSTS, host)
    pki = ClusterPki.load_or_create(data_dir / "pki", hosts)
    tokens = parse_token_file(_secret_file(data_dir / "tokens.csv", _admin_token_file).decode())
    # The in-process components' own credentials: fresh at every start, never on disk.
    component_tokens, token_lines = _component_tokens(nodes)
    tokens.update(parse_token_file(token_lines))
    scheduler_token = component_tokens[SCHEDULER_USER]
    signing_key = _secret_file(data_dir / "pki" / "service-account.key", new_signing_key)
    async with trio.open_nursery() as outer:
        # Ctrl-C and SIGTERM are read as messages, not raised wherever the code happens
        # to be: the shutdown is a cancellation of the whole tree, at any moment, even
        # while the start waits for etcd.
        await outer.start(_stop_on_signal, outer.cancel_scope)
        async with ActorSystem() as system, trio.open_nursery() as nursery:
            group = start_group(system, 3, data_dir=data_dir / "etcd")
            api = await start_apiserver(
                system,
                group.client(name="apiserver", timeout=30),
                tokens=tokens,
                service_account_key=signing_key,
                client_ca=pki.ca.cert,
                metrics_server=str(Address(system.name, METRICS_SERVER)),
            )
            await api.ready()
            run_component(system, lambda: Scheduler(
                api.ref, token=scheduler_token,
                identity=f"{socket.gethostname()}_{uuid.uuid4()}", config=scheduler_config,
            ), "scheduler")  # fmt: skip
            controllers = {
                name: lambda make=make, account=account: make(
                    api.ref, token=component_tokens[f"system:serviceaccount:kube-system:{account}"])
                for name, (account, make) in CONTROLLERS.items()
            }  # fmt: skip
            run_component(system, lambda: ControllerManager(
                api.ref, controllers, token=component_tokens[CONTROLLER_MANAGER_USER],
                identity=f"{socket.gethostname()}_{uuid.uuid4()}",
            ), "kube-controller-manager")  # fmt: skip
            # The cluster DNS serves port 53, which only root may bind.
            dns = os.geteuid() == 0
            if dns:
                await _start_dns(system, api, component_tokens)
            # The in-memory cloud: nodes' instances, routes, and load balancers that
            # listen on their own loopback addresses (127.200.0.0/16).
            cloud = InMemoryCloud()
            await nursery.start(cloud.run)
            run_component(system, lambda: CloudControllerManager(
                api.ref, cloud, token=component_tokens[CLOUD_USER],
                identity=f"{socket.gethostname()}_{uuid.uuid4()}",
            ), "cloud-controller-manager")  # fmt: skip
            for i in range(nodes):
                await _start_node(system, api, data_dir, i, component_tokens, nursery, cloud,
                                  dns=dns)  # fmt: skip
            run_component(system, lambda: MetricsServer(
                api.ref, token=component_tokens[METRICS_USER]), METRICS_SERVER)  # fmt: skip
            app = HttpFrontEnd(system, api.ref, api.registry)
            serve = partial(serve_http, app, host, port, tls=pki.serving_files,
                            client_ca=pki.ca_file)  # fmt: skip
            urls = await nursery.start(serve)
            # A server listening everywhere is reached on this machine at 127.0.0.1.
            url = urls[0].replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
            config = data_dir / "admin.kubeconfig"
            # The admin authenticates with a client certificate, as kubeadm's admin.conf
            # does; the token in tokens.csv is for clients without one (curl).
            write_private(config, kubeconfig(url, pki.ca.cert, client=pki.admin).encode())
            say(f"actorkube is up: {url}")
            say(f"  kubeconfig: {config}")
            say(f"  try: kubectl --kubeconfig {config} get namespaces")
            say(f"Ctrl-C stops it; the data stays in {data_dir}.")
            sys.stdout.flush()  # whoever reads our output (a pipe) learns at once


async def _stop_on_signal(scope: trio.CancelScope, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
