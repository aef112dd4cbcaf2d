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
import signal
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from actorkube.actor import SERVER_TIMER_SLACK, ActorSystem, Address
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._kubernetesservice import advertise_address
from actorkube.apiserver._start import start_apiserver
from actorkube.apiserver._storage import EVENT_TTL
from actorkube.cloud import InMemoryCloud
from actorkube.etcd import start_group
from actorkube.pki import kubeconfig, write_private
from actorkube.scheduler import SchedulerConfig

from ._cluster import (
    ADDON_USER,
    CLOUD_USER,
    CONTROLLER_MANAGER_USER,
    DNS_USER,
    METRICS_USER,
    PROXY_USER,
    SCHEDULER_USER,
    ClusterFiles,
    component_users,
    fresh_tokens,
    node_name,
    node_user,
    token_lines,
)
from ._components import (
    METRICS_SERVER,
    add_instance,
    install_dns,
    start_cloud_controller_manager,
    start_controller_manager,
    start_dns,
    start_kubelet,
    start_metrics_server,
    start_proxy,
    start_scheduler,
)
from ._debug import dump_on_sigusr1


async def run(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 6443,
    *,
    scheduler_config: SchedulerConfig | None = None,
    nodes: int = 1,
    event_ttl: int = EVENT_TTL,
    say: Callable[[str], None] = print,
) -> None:
    """Run the control plane on ``data_dir`` until Ctrl-C or SIGTERM (see the module)."""
    files = ClusterFiles(data_dir)
    files.prepare()
    pki = files.pki(host)
    tokens = files.people_tokens()
    # The in-process components' own credentials: fresh at every start, never on disk.
    names = [node_name(i) for i in range(nodes)]
    component_tokens = fresh_tokens(component_users(names))
    tokens.update(parse_token_file(token_lines(component_tokens)))
    async with trio.open_nursery() as outer:
        # Ctrl-C and SIGTERM are read as messages, not raised wherever the code happens
        # to be: the shutdown is a cancellation of the whole tree, at any moment, even
        # while the start waits for etcd.
        await outer.start(stop_on_signal, outer.cancel_scope)
        await outer.start(dump_on_sigusr1)
        system = ActorSystem(timer_slack=SERVER_TIMER_SLACK)
        async with system, trio.open_nursery() as nursery:
            group = start_group(system, 3, data_dir=data_dir / "etcd")
            api = await start_apiserver(
                system,
                group.client(name="apiserver", timeout=30),
                tokens=tokens,
                service_account_key=files.signing_key(),
                client_ca=pki.ca.cert,
                metrics_server=str(Address(system.name, METRICS_SERVER)),
                event_ttl=event_ttl,
            )
            await api.ready()
            start_scheduler(system, api.ref, component_tokens[SCHEDULER_USER],
                            config=scheduler_config)  # fmt: skip
            start_controller_manager(system, api.ref, component_tokens[CONTROLLER_MANAGER_USER],
                                     component_tokens.__getitem__, ca=pki.ca)  # fmt: skip
            # The cluster DNS serves port 53, which only root may bind.
            dns = os.geteuid() == 0
            if dns:
                await install_dns(system, api.ref, component_tokens[ADDON_USER])
                start_dns(system, api.ref, component_tokens[DNS_USER])
            # The in-memory cloud: nodes' instances, routes, and load balancers that
            # listen on their own loopback addresses (127.200.0.0/16).
            cloud = InMemoryCloud()
            await nursery.start(cloud.run)
            start_cloud_controller_manager(system, api.ref, cloud, component_tokens[CLOUD_USER])
            for i, name in enumerate(names):
                ip = f"127.1.0.{i + 1}"
                add_instance(cloud, name, ip)
                await start_kubelet(system, api.ref, nursery, name=name, ip=ip,
                                    pod_cidr=f"127.{244 + i}.0.0/16",
                                    root=data_dir / "nodes" / name,
                                    token=component_tokens[node_user(name)],
                                    external_cloud=True, dns=dns)  # fmt: skip
                start_proxy(system, api.ref, component_tokens[PROXY_USER], name=name, ip=ip)
            start_metrics_server(system, api.ref, component_tokens[METRICS_USER])
            app = HttpFrontEnd(system, api.ref, api.registry)
            serve = partial(serve_http, app, host, port, tls=pki.serving_files,
                            client_ca=pki.ca_file)  # fmt: skip
            urls = await nursery.start(serve)
            api.advertise(advertise_address(host, urls[0]))
            announce(data_dir, pki, urls[0], say)


def announce(data_dir: Path, pki, url: str, say: Callable[[str], None]) -> None:
    """Write the admin kubeconfig for the cluster at ``url`` and say how to use it."""
    # A server listening everywhere is reached on this machine at 127.0.0.1.
    url = url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
    config = data_dir / "admin.kubeconfig"
    # The admin authenticates with a client certificate, as kubeadm's admin.conf does;
    # the token in tokens.csv is for clients without one (curl).
    write_private(config, kubeconfig(url, pki.ca.cert, client=pki.admin).encode())
    say(f"actorkube is up: {url}")
    say(f"  kubeconfig: {config}")
    say(f"  try: kubectl --kubeconfig {config} get namespaces")
    say(f"Ctrl-C stops it; the data stays in {data_dir}.")
    sys.stdout.flush()  # whoever reads our output (a pipe) learns at once


async def stop_on_signal(scope: trio.CancelScope, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
