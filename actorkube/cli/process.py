"""``actorkube etcd|apiserver|controller-manager|scheduler|cloud-controller-manager|
metrics-server|cluster-dns|kubelet|proxy``: one component of a cluster as its own
process, reaching the others over the actor TCP transport (docs/operations.md).

Rules of this file:

- Every process reads the cluster's directory (``--data-dir``): the transport secret,
  and its own credentials (``credentials/``; see ``_cluster``). ``actorkube up
  --distributed`` writes them and starts every process with the right flags; an
  operator can run them by hand the same way.
- A process that serves others (an etcd member, an API server, a kubelet, the metrics
  server) names its actor system after the address it listens on (``HOST:PORT``), so
  that the others reach its actors by address alone (``ak://HOST:PORT/apiserver``). The
  others only dial out and take a name that is theirs alone.
- Components reach the API servers through ``ApiServers``: one server failing (its
  process gone, which the transport finds within ``--peer-timeout``) moves every client
  of the process to the next.
- SIGINT or SIGTERM stops the process cleanly; it prints one line once it serves
  (``actorkube COMPONENT is up: ...``), which is what a supervisor waits for.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio

from actorkube.actor import ActorSystem, Address
from actorkube.actor._tcp import TcpTransport, format_endpoint, parse_endpoint
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._start import start_apiserver
from actorkube.client import ApiServers
from actorkube.cloud import InMemoryCloud
from actorkube.controllers import NodeLifecycleConfig
from actorkube.etcd import EtcdClient, EtcdNode
from actorkube.raft import Config, DiskStorage

from ._cluster import (
    ADDON_USER,
    CLOUD_USER,
    CONTROLLER_MANAGER_USER,
    DNS_USER,
    METRICS_USER,
    PROXY_USER,
    SCHEDULER_USER,
    ClusterFiles,
    node_user,
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

APISERVER = "apiserver"  # the API server's actor name in its process
COMPONENTS = ("etcd", "apiserver", "controller-manager", "scheduler", "cloud-controller-manager",
              "metrics-server", "cluster-dns", "kubelet", "proxy")  # fmt: skip


def _endpoint(text: str) -> tuple[str, int]:
    found = parse_endpoint(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return found


def _endpoints(text: str) -> list[tuple[str, int]]:
    return [_endpoint(part) for part in text.split(",") if part]


def _members(text: str) -> dict[int, tuple[str, int]]:
    """``1=127.0.0.1:2380,2=...``: etcd's --initial-cluster, by member id."""
    members = {}
    for part in text.split(","):
        node, sep, address = part.partition("=")
        if not sep or not node.isdigit() or int(node) < 1:
            raise argparse.ArgumentTypeError(f"{part!r} is not ID=HOST:PORT (ID from 1)")
        members[int(node)] = _endpoint(address)
    return members


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The component subcommands, on ``actorkube``'s parser."""

    def component(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--data-dir", type=Path, default=Path(".actorkube"),
                       help="the cluster's directory: its secrets and this component's "
                       "credentials (default: .actorkube)")  # fmt: skip
        p.add_argument("--peer-timeout", type=float, default=2.0, metavar="SECONDS",
                       help="how long another process may stay unreachable before it is "
                       "taken for gone and its requests fail over (default: 2)")  # fmt: skip
        return p

    def client(name: str, text: str) -> argparse.ArgumentParser:
        p = component(name, text)
        p.add_argument("--apiservers", type=_endpoints, required=True, metavar="HOST:PORT,...",
                       help="the API servers' transport addresses")  # fmt: skip
        p.add_argument("--name", default="", help="this replica's name (logs, identities)")
        return p

    p = component("etcd", "an etcd member")
    p.add_argument("--id", type=int, required=True, help="this member's id in --initial-cluster")
    p.add_argument("--initial-cluster", type=_members, required=True,
                   metavar="ID=HOST:PORT,...", help="every member, this one included")  # fmt: skip
    p = component("apiserver", "an API server")
    p.add_argument("--listen", type=_endpoint, required=True, metavar="HOST:PORT",
                   help="its transport address (components reach it there)")  # fmt: skip
    p.add_argument("--etcd-servers", type=_members, required=True, metavar="ID=HOST:PORT,...")
    p.add_argument("--bind-address", default="127.0.0.1", help="where HTTPS listens")
    p.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (0: any)")
    p.add_argument("--metrics-server", type=_endpoint, metavar="HOST:PORT",
                   help="the metrics server's transport address (serves metrics.k8s.io)")
    p = client("controller-manager", "the controller manager (leader-elected)")
    p.add_argument("--node-monitor-grace-period", type=float, default=50.0, metavar="SECONDS",
                   help="silence before a node is taken as Unknown (default: 50)")  # fmt: skip
    client("scheduler", "the scheduler (leader-elected)")
    p = client("cloud-controller-manager", "the cloud controller manager on the in-memory "
               "cloud (leader-elected)")  # fmt: skip
    p.add_argument("--instances", type=_members_by_name, default={}, metavar="NAME=IP,...",
                   help="the cloud's machines: the nodes' names and addresses")  # fmt: skip
    p = client("metrics-server", "the metrics server (scrapes the kubelets)")
    p.add_argument("--listen", type=_endpoint, required=True, metavar="HOST:PORT")
    client("cluster-dns", "the cluster DNS on kube-dns's address, port 53 (root only)")
    p = client("kubelet", "a node's kubelet and its pods' runtime")
    node_flags(p)
    p.add_argument("--listen", type=_endpoint, metavar="HOST:PORT",
                   help="its server's transport address (logs, metrics; default "
                   "NODE_IP:10250)")  # fmt: skip
    p.add_argument("--pod-cidr", required=True, help="the node's pod addresses (in 127/8)")
    p.add_argument("--cloud-provider", choices=("", "external"), default="",
                   help="external: a cloud controller manager initialises the node")  # fmt: skip
    p.add_argument("--cluster-dns", action="store_true",
                   help="pods resolve names with the cluster DNS")  # fmt: skip
    p = client("proxy", "a node's kube-proxy")
    node_flags(p)


def node_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-name", required=True)
    p.add_argument("--node-ip", required=True)


def _members_by_name(text: str) -> dict[str, str]:
    found = {}
    for part in text.split(","):
        name, sep, ip = part.partition("=")
        if not sep or not name or not ip:
            raise argparse.ArgumentTypeError(f"{part!r} is not NAME=IP")
        found[name] = ip
    return found


def main(args: argparse.Namespace) -> int:
    """Run the component ``args.command`` until SIGINT or SIGTERM."""
    files = ClusterFiles(args.data_dir)
    run = {"etcd": _etcd, "apiserver": _apiserver, "controller-manager": _controller_manager,
           "scheduler": _scheduler, "cloud-controller-manager": _cloud_controller_manager,
           "metrics-server": _metrics_server, "cluster-dns": _cluster_dns,
           "kubelet": _kubelet, "proxy": _proxy}[args.command]  # fmt: skip
    try:
        trio.run(partial(run, files, args))
    except FileNotFoundError as e:  # a credential or certificate the cluster never made
        print(f"actorkube {args.command}: {e.strerror}: {e.filename}", file=sys.stderr)
        return 1
    return 0


async def _serve(
    files: ClusterFiles,
    args: argparse.Namespace,
    listen: tuple[str, int] | None,
    body: Callable[[ActorSystem, trio.Nursery], Awaitable[str]],
) -> None:
    """A system on the transport (listening on ``listen``, if given, and named after
    it), ``body`` run in it; then serve until a signal. ``body`` returns what the
    ready line says."""
    from .up import stop_on_signal  # the same handling as the one-process cluster's

    if listen is not None:
        name = format_endpoint(*listen)
    else:  # only dials out: a name nobody else has
        name = f"{args.command}-{args.name or socket.gethostname()}-{uuid.uuid4().hex[:12]}"
    async with trio.open_nursery() as outer:
        await outer.start(stop_on_signal, outer.cancel_scope)
        if os.environ.get("ACTORKUBE_SUPERVISED") == "1":
            outer.start_soon(_stop_with_supervisor, outer.cancel_scope)
        async with ActorSystem(name=name) as system, trio.open_nursery() as nursery:
            transport = TcpTransport(system, token=files.transport_token(),
                                     unreachable_after=args.peer_timeout,
                                     reconnect_max=min(1.0, args.peer_timeout))  # fmt: skip
            await transport.start()
            if listen is not None:
                await transport.listen(*listen)
            system.transport = transport
            what = await body(system, nursery)
            print(f"actorkube {args.command} is up: {what} (pid {os.getpid()})", flush=True)
            await trio.sleep_forever()


async def _stop_with_supervisor(scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when stdin ends: the supervisor that holds its other end is gone
    (see distributed.py)."""
    stdin = trio.lowlevel.FdStream(os.dup(0))
    try:
        while await stdin.receive_some(1024):
            pass
    finally:
        await stdin.aclose()
    scope.cancel()


def _api(system: ActorSystem, args: argparse.Namespace) -> ApiServers:
    return ApiServers([system.ref(str(Address(format_endpoint(*a), APISERVER)))
                       for a in args.apiservers])  # fmt: skip


def _member_refs(system: ActorSystem, members: dict[int, tuple[str, int]]):
    return {node: system.ref(str(Address(format_endpoint(*address), f"etcd-{node}")))
            for node, address in members.items()}  # fmt: skip


async def _etcd(files: ClusterFiles, args: argparse.Namespace) -> None:
    if args.id not in args.initial_cluster:
        raise SystemExit(f"actorkube etcd: --id {args.id} is not in --initial-cluster")

    storage = DiskStorage.open(files.data_dir / "etcd" / f"member-{args.id}")

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        members = _member_refs(system, args.initial_cluster)
        ids = tuple(sorted(args.initial_cluster))
        system.spawn(lambda: EtcdNode(Config(args.id, ids), storage, members),
                     name=f"etcd-{args.id}")  # fmt: skip
        return f"member {args.id} at {format_endpoint(*args.initial_cluster[args.id])}"

    try:
        await _serve(files, args, args.initial_cluster[args.id], body)
    finally:  # after the member stopped with its system
        storage.close()


async def _apiserver(files: ClusterFiles, args: argparse.Namespace) -> None:
    pki = files.pki(args.bind_address)

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        etcd = EtcdClient(system, _member_refs(system, args.etcd_servers), name="apiserver",
                          timeout=30)  # fmt: skip
        metrics = None
        if args.metrics_server is not None:
            metrics = str(Address(format_endpoint(*args.metrics_server), METRICS_SERVER))
        api = await start_apiserver(system, etcd, name=APISERVER, tokens=files.api_tokens(),
                                    service_account_key=files.signing_key(),
                                    client_ca=pki.ca.cert, metrics_server=metrics)  # fmt: skip
        await api.ready()
        app = HttpFrontEnd(system, api.ref, api.registry)
        serve = partial(serve_http, app, args.bind_address, args.secure_port,
                        tls=pki.serving_files, client_ca=pki.ca_file)  # fmt: skip
        urls = await nursery.start(serve)
        return urls[0]

    await _serve(files, args, args.listen, body)


def _client_component(
    start: Callable[[ActorSystem, ApiServers, ClusterFiles, argparse.Namespace], None],
):
    """A component that only talks to the API servers: ``start`` in a dial-only system."""

    async def run(files: ClusterFiles, args: argparse.Namespace) -> None:
        async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
            start(system, _api(system, args), files, args)
            return system.name

        await _serve(files, args, None, body)

    return run


_controller_manager = _client_component(
    lambda system, api, files, args: start_controller_manager(
        system, api, files.token(CONTROLLER_MANAGER_USER), files.token, name=args.name,
        options={"node-lifecycle-controller": {"config": NodeLifecycleConfig(
            node_monitor_grace_period=args.node_monitor_grace_period)}}))
_scheduler = _client_component(
    lambda system, api, files, args: start_scheduler(
        system, api, files.token(SCHEDULER_USER), name=args.name))


async def _cluster_dns(files: ClusterFiles, args: argparse.Namespace) -> None:
    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        api = _api(system, args)
        # Its objects, as kubeadm installs CoreDNS's (left alone if there already).
        await install_dns(system, api, files.token(ADDON_USER))
        start_dns(system, api, files.token(DNS_USER))
        return system.name

    await _serve(files, args, None, body)


async def _cloud_controller_manager(files: ClusterFiles, args: argparse.Namespace) -> None:
    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        # The in-memory cloud lives in this process: its machines are the nodes named on
        # the command line, its load balancers listen here (127.200.0.0/16).
        cloud = InMemoryCloud()
        await nursery.start(cloud.run)
        for name, ip in args.instances.items():
            add_instance(cloud, name, ip)
        start_cloud_controller_manager(system, _api(system, args), cloud,
                                       files.token(CLOUD_USER), name=args.name)  # fmt: skip
        return system.name

    await _serve(files, args, None, body)


async def _metrics_server(files: ClusterFiles, args: argparse.Namespace) -> None:
    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        start_metrics_server(system, _api(system, args), files.token(METRICS_USER))
        return format_endpoint(*args.listen)

    await _serve(files, args, args.listen, body)


async def _kubelet(files: ClusterFiles, args: argparse.Namespace) -> None:
    listen = args.listen or (args.node_ip, 10250)

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        await start_kubelet(system, _api(system, args), nursery, name=args.node_name,
                            ip=args.node_ip, pod_cidr=args.pod_cidr,
                            root=files.data_dir / "nodes" / args.node_name,
                            token=files.token(node_user(args.node_name)),
                            external_cloud=args.cloud_provider == "external",
                            dns=args.cluster_dns)  # fmt: skip
        return f"node {args.node_name} ({format_endpoint(*listen)})"

    await _serve(files, args, listen, body)


_proxy = _client_component(
    lambda system, api, files, args: start_proxy(
        system, api, files.token(PROXY_USER), name=args.node_name, ip=args.node_ip))
