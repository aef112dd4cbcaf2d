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
import ipaddress
import json
import os
import socket
import sys
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import trio
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from actorkube._duration import parse_duration
from actorkube.actor import Actor, ActorRef, ActorSystem, Address, Terminated, handler
from actorkube.actor._tcp import format_endpoint, parse_endpoint
from actorkube.apiserver import ApiError
from actorkube.apiserver._admission import ADMISSION_PLUGINS
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._kubernetesservice import advertise_address
from actorkube.apiserver._start import start_apiserver
from actorkube.apiserver._storage import EVENT_TTL
from actorkube.client import ApiServers
from actorkube.cloud import InMemoryCloud
from actorkube.cloud._wellknown import EXCLUDE_FROM_LIFECYCLE
from actorkube.controllers import NodeLifecycleConfig
from actorkube.etcd import EtcdClient, EtcdError, start_member
from actorkube.node._bootstrap import CertificateRefused, DiscoveryError
from actorkube.scheduler import load_config

from . import etcdctl
from ._cluster import (
    ADDON_USER,
    APISERVER,
    APISERVER_ACTOR,
    CLOUD_USER,
    CONTROL_PLANE,
    CONTROLLER_MANAGER_USER,
    DNS_USER,
    METRICS,
    METRICS_USER,
    NODE,
    PROXY_USER,
    SCHEDULER_USER,
    ClusterFiles,
    MissingFile,
    node_user,
)
from ._cluster import transport as cluster_transport
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
from ._join import NodeFiles, admin_client, join_node, new_join_command
from ._run import first_error

# What each command is to the transport (``_cluster.transport``).
_ROLES = {"apiserver": APISERVER, "metrics-server": METRICS, "kubelet": NODE, "proxy": NODE,
          "join": NODE, "cluster-dns": NODE}  # fmt: skip


def event_ttl(text: str) -> int:
    """--event-ttl: a Go duration (``1h0m0s``) or seconds, as whole seconds (etcd leases
    count whole seconds; a fraction is dropped, as kube-apiserver drops it)."""
    try:
        seconds = parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if not 0 <= seconds < 2**31:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range")
    return int(seconds)


def _endpoint(text: str) -> tuple[str, int]:
    found = parse_endpoint(text)
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return found


def _endpoints(text: str) -> list[tuple[str, int]]:
    return [_endpoint(part) for part in text.split(",") if part]


def _ipv4(text: str) -> str:
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None
    if address.is_unspecified:
        raise argparse.ArgumentTypeError(f"{text!r} is no address clients can reach")
    return str(address)


def _admission_plugins(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(names) - set(ADMISSION_PLUGINS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown admission plugins: {', '.join(sorted(unknown))}")
    return names


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

    p = component("etcd", "an etcd member; with member or snapshot, etcdctl's and etcdutl's "
                  "operations on the members")  # fmt: skip
    p.add_argument("--id", type=int, help="this member's id in --initial-cluster")
    p.add_argument("--initial-cluster", type=_members, metavar="ID=HOST:PORT,...",
                   help="every member, this one included")  # fmt: skip
    p.add_argument("--initial-cluster-state", choices=("new", "existing"), default="new",
                   help="existing: join a running cluster that added this member")  # fmt: skip
    etcdctl.add_subcommands(p, _members)
    p = component("apiserver", "an API server")
    p.add_argument("--listen", type=_endpoint, required=True, metavar="HOST:PORT",
                   help="its transport address (components reach it there)")  # fmt: skip
    p.add_argument("--etcd-servers", type=_members, required=True, metavar="ID=HOST:PORT,...")
    p.add_argument("--bind-address", default="127.0.0.1", help="where HTTPS listens")
    p.add_argument("--secure-port", type=int, default=6443, help="HTTPS port (0: any)")
    p.add_argument("--advertise-address", type=_ipv4, default=None, metavar="IP",
                   help="the IPv4 address pods reach this server at, in the kubernetes "
                   "Service's endpoints (default: --bind-address, or 127.0.0.1 if that is "
                   "every address)")  # fmt: skip
    p.add_argument("--disable-admission-plugins", type=_admission_plugins, default=(),
                   metavar="NAME,...", help="admission plugins not to run (of "
                   f"{', '.join(ADMISSION_PLUGINS)})")  # fmt: skip
    p.add_argument("--anonymous-auth", choices=("true", "false"), default="true",
                   help="serve requests without credentials as system:anonymous, as "
                   "kube-apiserver does (joining nodes read cluster-info so)")  # fmt: skip
    p.add_argument("--metrics-server", type=_endpoint, metavar="HOST:PORT",
                   help="the metrics server's transport address (serves metrics.k8s.io)")
    p.add_argument("--event-ttl", type=event_ttl, default=EVENT_TTL, metavar="DURATION",
                   help="how long Events are kept after their last write (default: 1h0m0s; "
                   "0: for ever)")  # fmt: skip
    p = client("controller-manager", "the controller manager (leader-elected)")
    p.add_argument("--node-monitor-grace-period", type=float, default=50.0, metavar="SECONDS",
                   help="silence before a node is taken as Unknown (default: 50)")  # fmt: skip
    p = client("scheduler", "the scheduler (leader-elected)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="its KubeSchedulerConfiguration (YAML or JSON)")  # fmt: skip
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
    p = component("join", "join a node to a running cluster with a bootstrap token (as "
                  "kubeadm join), then run its kubelet and kube-proxy")  # fmt: skip
    p.add_argument("server", help="the cluster's API URL (https://HOST:PORT)")
    p.add_argument("--token", default="", help="a bootstrap token (actorkube token create)")
    p.add_argument("--discovery-token-ca-cert-hash", default="", metavar="sha256:HEX",
                   help="the cluster CA's public key hash (kubeadm's pin)")  # fmt: skip
    p.add_argument("--discovery-token-unsafe-skip-ca-verification", action="store_true",
                   help="trust cluster-info the token signed without pinning its CA")  # fmt: skip
    node_flags(p)
    p.add_argument("--listen", type=_endpoint, metavar="HOST:PORT",
                   help="the kubelet's transport address (default NODE_IP:10250)")  # fmt: skip
    p.add_argument("--pod-cidr", required=True, help="the node's pod addresses (in 127/8)")
    p.add_argument("--cloud-provider", choices=("", "external"), default="",
                   help="external: the node is one of the cloud's machines (its cloud "
                   "controller manager initialises it); otherwise it is labelled "
                   f"{EXCLUDE_FROM_LIFECYCLE}, or the cloud's lifecycle controller would "
                   "delete it as a machine the cloud does not know")  # fmt: skip
    p.add_argument("--cluster-dns", action="store_true")
    p = component("token", "bootstrap tokens for joining nodes (as kubeadm token)")
    p.add_argument("action", choices=("create",))
    p.add_argument("--ttl", type=float, default=24 * 3600.0, metavar="SECONDS",
                   help="how long the token is valid (0: forever; default: 24 h)")  # fmt: skip


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
    files = ClusterFiles(args.data_dir, create=False)
    run = {"etcd": _etcd, "apiserver": _apiserver, "controller-manager": _controller_manager,
           "scheduler": _scheduler, "cloud-controller-manager": _cloud_controller_manager,
           "metrics-server": _metrics_server, "cluster-dns": _cluster_dns,
           "kubelet": _kubelet, "proxy": _proxy, "join": _join_node,
           "token": _token}[args.command]  # fmt: skip
    # What a command cannot do anything about is one line, not a traceback: a missing
    # credential, a join refused, an address that cannot be bound.
    expected = (MissingFile, ApiError, DiscoveryError, CertificateRefused, EtcdError, OSError,
                ValueError)  # fmt: skip
    failed = first_error(expected, lambda: trio.run(partial(run, files, args)))
    if failed is not None:
        print(f"actorkube {args.command}: {failed}", file=sys.stderr)
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
        await outer.start(dump_on_sigusr1)
        if os.environ.get("ACTORKUBE_SUPERVISED") == "1":
            outer.start_soon(_stop_with_supervisor, outer.cancel_scope)
        async with ActorSystem(name=name) as system, trio.open_nursery() as nursery:
            transport = cluster_transport(system, files, args.peer_timeout,
                                          role=_ROLES.get(args.command, CONTROL_PLANE))  # fmt: skip
            await transport.start()
            if listen is not None:
                await transport.listen(*listen)
            system.transport = transport
            what = await body(system, nursery)
            print(f"actorkube {args.command} is up: {what} (pid {os.getpid()})", flush=True)
            await trio.sleep_forever()
        # The system's work ended (``nursery`` cancelled from inside): so does the process.
        outer.cancel_scope.cancel()


class _EndWith(Actor):
    """Ends its process (cancels ``scope``) when ``target`` stops."""

    def __init__(self, target: ActorRef, scope: trio.CancelScope) -> None:
        self.target = target
        self.scope = scope

    async def started(self) -> None:
        self.watch(self.target)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        print(f"actorkube: {self.target.name} stopped ({msg.reason or 'removed'}); exiting",
              flush=True)  # fmt: skip
        self.scope.cancel()


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
    return ApiServers([system.ref(str(Address(format_endpoint(*a), APISERVER_ACTOR)))
                       for a in args.apiservers])  # fmt: skip


def _member_refs(system: ActorSystem, members: dict[int, tuple[str, int]]):
    return {node: system.ref(etcdctl.member_address(address))
            for node, address in members.items()}  # fmt: skip


async def _etcd(files: ClusterFiles, args: argparse.Namespace) -> None:
    if args.etcd_command is not None:
        await etcdctl.run(files, args)
        return
    if args.id is None or args.initial_cluster is None:
        raise ValueError("a member needs --id and --initial-cluster")
    if args.id not in args.initial_cluster:
        raise ValueError(f"--id {args.id} is not in --initial-cluster")
    listen = args.initial_cluster[args.id]

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        cluster = {n: etcdctl.member_address(e) for n, e in args.initial_cluster.items()}
        group = await start_member(system, args.id, etcdctl.MEMBER, cluster,
                                   files.data_dir / "etcd", state=args.initial_cluster_state,
                                   member_name=f"etcd-{args.id}")  # fmt: skip
        # A member removed from the cluster stops; so does its process, as etcd's does.
        member = group.members[args.id]
        system.spawn(lambda: _EndWith(member, nursery.cancel_scope), name="end-with-member")
        return f"member {args.id} at {format_endpoint(*listen)}"

    await _serve(files, args, listen, body)


async def _apiserver(files: ClusterFiles, args: argparse.Namespace) -> None:
    pki = files.pki(args.bind_address)

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        etcd = EtcdClient(system, _member_refs(system, args.etcd_servers), name="apiserver",
                          timeout=30)  # fmt: skip
        metrics = None
        if args.metrics_server is not None:
            metrics = str(Address(format_endpoint(*args.metrics_server), METRICS_SERVER))
        api = await start_apiserver(system, etcd, name=APISERVER_ACTOR,
                                    tokens=files.api_tokens(),
                                    service_account_key=files.signing_key(),
                                    client_ca=pki.ca.cert, metrics_server=metrics,
                                    anonymous=args.anonymous_auth == "true",
                                    event_ttl=args.event_ttl,
                                    disable_admission_plugins=args.disable_admission_plugins)
        await api.ready()
        app = HttpFrontEnd(system, api.ref, api.registry)
        serve = partial(serve_http, app, args.bind_address, args.secure_port,
                        tls=pki.serving_files, client_ca=pki.ca_file)  # fmt: skip
        urls = await nursery.start(serve)
        api.advertise(advertise_address(args.bind_address, urls[0], args.advertise_address or ""))
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
        ca=files.pki().ca, options={"node-lifecycle-controller": {"config": NodeLifecycleConfig(
            node_monitor_grace_period=args.node_monitor_grace_period)}}))
_scheduler = _client_component(
    lambda system, api, files, args: start_scheduler(
        system, api, files.token(SCHEDULER_USER), name=args.name,
        config=load_config(args.config.read_text()) if args.config else None))


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


async def _token(files: ClusterFiles, args: argparse.Namespace) -> None:
    """``actorkube token create``: prints the command that joins a node."""
    from .distributed import Layout

    layout = Layout.load(files.data_dir / "cluster.json")
    apiservers = [a["listen"] for a in layout.apiservers]
    url = json.loads((files.data_dir / "admin.kubeconfig").read_text())["clusters"][0][
        "cluster"]["server"]
    async with admin_client(files, apiservers, args.peer_timeout) as client:
        print(await new_join_command(client, url=url, ca=files.pki().ca.cert, ttl=args.ttl))


async def _join_node(files: ClusterFiles, args: argparse.Namespace) -> None:
    """``actorkube join``: the node's credentials (joining first if it never did), then
    its kubelet and kube-proxy in this process."""
    node = NodeFiles(files.data_dir, args.node_name)
    joined = node.load()
    if joined is None:
        if not args.token:
            raise ValueError("this node has not joined yet: --token is needed")
        if not args.discovery_token_ca_cert_hash and \
                not args.discovery_token_unsafe_skip_ca_verification:
            raise ValueError("give --discovery-token-ca-cert-hash, or "
                             "--discovery-token-unsafe-skip-ca-verification")  # fmt: skip
        joined = await join_node(args.server, args.token, args.discovery_token_ca_cert_hash or None,
                                 args.node_name, node)  # fmt: skip
        print(f"actorkube join: node {args.node_name} joined {args.server}", flush=True)
    apiservers, client = joined
    args.apiservers = [_endpoint(a) for a in apiservers]
    certificate = x509.load_pem_x509_certificate(client.cert).public_bytes(Encoding.DER)
    listen = args.listen or (args.node_ip, 10250)
    # A machine that is not the cloud's (Kubernetes' cloud lifecycle controller deletes a
    # NotReady node the cloud does not know, and a new node is NotReady at first).
    labels = {} if args.cloud_provider == "external" else {EXCLUDE_FROM_LIFECYCLE: "true"}

    async def body(system: ActorSystem, nursery: trio.Nursery) -> str:
        api = _api(system, args)
        await start_kubelet(system, api, nursery, name=args.node_name, ip=args.node_ip,
                            pod_cidr=args.pod_cidr, root=files.data_dir / "nodes" / args.node_name,
                            certificate=certificate,
                            external_cloud=args.cloud_provider == "external",
                            dns=args.cluster_dns, labels=labels)  # fmt: skip
        start_proxy(system, api, certificate=certificate, name=args.node_name, ip=args.node_ip)
        return f"node {args.node_name} ({format_endpoint(*listen)})"

    await _serve(files, args, listen, body)
