"""What every way of running a cluster shares: its directory's secrets and its
components' users.

Rules of this file:

- A cluster directory holds ``pki/`` (the CA, the API server's serving certificate, the
  admin's client certificate, the service-account signing key, the transport secret),
  ``tokens.csv`` (bearer tokens for people, kube-apiserver's token file format) and, for
  a cluster whose components run as processes, ``credentials/``: one token file per
  component user and ``credentials/tokens.csv`` naming them all for the API servers
  (as kubeadm writes one kubeconfig per component under /etc/kubernetes). Every secret
  is made on first use, whole or not at all, readable by its owner only, and kept.
- The in-process cluster (``actorkube up``) gives its components fresh tokens at each
  start and never writes them; processes need them on disk.
- Two transport secrets authenticate actor systems to each other over TCP
  (docs/tcp.md): the cluster's (``pki/transport.token``: whoever holds it can message
  any actor of the cluster, etcd members included, so only the control plane has it)
  and the nodes' (``pki/node-transport.token``: reaches the API servers' front actors
  only; nodes, and nodes that join, get this one).
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from actorkube.actor import ActorSystem
from actorkube.actor._tcp import TcpTransport
from actorkube.apiserver._authn import UserInfo, new_signing_key, parse_token_file
from actorkube.apiserver._rbac import (
    BOOTSTRAP_SIGNER_ACCOUNT,
    CLOUD_CONTROLLER_MANAGER_ACCOUNT,
    METRICS_SERVER_ACCOUNT,
    TOKEN_CLEANER_ACCOUNT,
)
from actorkube.controllers import (
    BootstrapSigner,
    CronJobController,
    CSRApprovingController,
    CSRSigningController,
    DaemonSetController,
    DeploymentController,
    DisruptionController,
    EndpointsController,
    EndpointSliceController,
    GarbageCollector,
    HorizontalPodAutoscalerController,
    JobController,
    NamespaceController,
    NodeLifecycleController,
    PodGCController,
    ReplicaSetController,
    RootCACertPublisher,
    ServiceAccountController,
    TaintEvictionController,
    TokenCleaner,
    TTLAfterFinishedController,
)
from actorkube.pki import SERVING_HOSTS, ClusterPki, write_private

SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
PROXY_USER = "system:kube-proxy"
ADDON_USER = "system:addon-manager"  # installs the DNS addon's objects, as kubeadm does
DNS_USER = "system:serviceaccount:kube-system:coredns"
CLOUD_USER = f"system:serviceaccount:kube-system:{CLOUD_CONTROLLER_MANAGER_ACCOUNT}"
METRICS_USER = f"system:serviceaccount:kube-system:{METRICS_SERVER_ACCOUNT}"
# The controllers the controller manager runs: name -> (service account, class).
CONTROLLERS = {
    "deployment-controller": ("deployment-controller", DeploymentController),
    "replicaset-controller": ("replicaset-controller", ReplicaSetController),
    "daemon-set-controller": ("daemon-set-controller", DaemonSetController),
    "job-controller": ("job-controller", JobController),
    "cronjob-controller": ("cronjob-controller", CronJobController),
    "ttl-after-finished-controller": ("ttl-after-finished-controller", TTLAfterFinishedController),
    "disruption-controller": ("disruption-controller", DisruptionController),
    "horizontal-pod-autoscaler": ("horizontal-pod-autoscaler", HorizontalPodAutoscalerController),
    "node-lifecycle-controller": ("node-controller", NodeLifecycleController),
    "taint-eviction-controller": ("node-controller", TaintEvictionController),
    "pod-garbage-collector": ("pod-garbage-collector", PodGCController),
    "namespace-controller": ("namespace-controller", NamespaceController),
    "garbage-collector-controller": ("generic-garbage-collector", GarbageCollector),
    "service-account-controller": ("service-account-controller", ServiceAccountController),
    # Publishes the cluster's CA (its ``root_ca`` option: kube-controller-manager's
    # --root-ca-file).
    "root-ca-certificate-publisher-controller": ("root-ca-cert-publisher", RootCACertPublisher),
    "endpointslice-controller": ("endpointslice-controller", EndpointSliceController),
    "endpoint-controller": ("endpoint-controller", EndpointsController),
    "bootstrap-signer-controller": (BOOTSTRAP_SIGNER_ACCOUNT, BootstrapSigner),
    "token-cleaner-controller": (TOKEN_CLEANER_ACCOUNT, TokenCleaner),
    "certificatesigningrequest-approving-controller": ("certificate-controller",
                                                       CSRApprovingController),
    # Signs with the cluster's CA: given as its ``ca`` option (kube-controller-manager's
    # --cluster-signing-cert-file and --cluster-signing-key-file).
    "certificatesigningrequest-signing-controller": ("certificate-controller",
                                                     CSRSigningController),
}  # fmt: skip
SIGNING_CONTROLLER = "certificatesigningrequest-signing-controller"
ROOT_CA_CONTROLLER = "root-ca-certificate-publisher-controller"


# The largest message between a cluster's processes: a LIST of every pod, an etcd
# snapshot (the transport's default, 4 MiB, is a few thousand pods).
MAX_FRAME = 256 << 20


# What a process is to the transport (see ``transport``).
CONTROL_PLANE = "control-plane"  # the cluster secret: reaches every actor
APISERVER = "apiserver"  # ... and takes nodes' connections, which reach its front actor only
METRICS = "metrics"  # ... and dials the kubelets, which may only answer it
NODE = "node"  # the node secret: reaches the API servers' front actors, nothing else
APISERVER_ACTOR = "apiserver"  # the API server's actor name in its process


def transport(system: ActorSystem, files: ClusterFiles, peer_timeout: float = 2.0, *,
              role: str = CONTROL_PLANE) -> TcpTransport:  # fmt: skip
    """The TCP transport of one of the cluster's processes (not started): frames up to
    ``MAX_FRAME``, another process taken for gone after ``peer_timeout`` seconds
    without a connection (which is what fails its clients over), redialled every second
    at most meanwhile; a connection silent for twice that (a hung process) is closed,
    which starts the same count.

    Two secrets (the transport's realms, docs/tcp.md): the control plane's processes
    hold the cluster secret and may message any actor, etcd's members included; nodes
    (kubelets, kube-proxies, the cluster DNS) hold the node secret, which only the API
    servers and the metrics server take, and on their connections a node may message
    the API server's front actor and nothing else, as Kubernetes' nodes reach the API
    servers and never etcd."""
    options = {"max_frame": MAX_FRAME, "unreachable_after": peer_timeout,
               "silence_timeout": 2 * peer_timeout, "reconnect_max": min(1.0, peer_timeout)}
    if role == NODE:
        return TcpTransport(system, token=files.node_transport_token(), realm="guest",
                            **options)  # fmt: skip
    if role in (APISERVER, METRICS):
        exports = (APISERVER_ACTOR,) if role == APISERVER else ()
        options.update(guest_token=files.node_transport_token(), guest_exports=exports)
    return TcpTransport(system, token=files.transport_token(), **options)


def controller_user(account: str) -> str:
    return f"system:serviceaccount:kube-system:{account}"


def node_user(node: str) -> str:
    return f"system:node:{node}"


def node_name(i: int) -> str:
    """The name of a cluster's node ``i``: this host's name, then ``-1``, ``-2``, ..."""
    return socket.gethostname().split(".")[0].lower() + ("" if i == 0 else f"-{i}")


def component_users(nodes: Iterable[str]) -> list[str]:
    """Every user a cluster's components act as: the control plane's, each controller's
    service account, and one per node."""
    users = [SCHEDULER_USER, CONTROLLER_MANAGER_USER, PROXY_USER, ADDON_USER, DNS_USER,
             METRICS_USER, CLOUD_USER]  # fmt: skip
    users += sorted({controller_user(account) for account, _ in CONTROLLERS.values()})
    users += [node_user(node) for node in nodes]
    return users


def token_lines(tokens: dict[str, str]) -> str:
    """The token file lines (kube-apiserver's format) that make the API server accept
    ``tokens`` (user -> token) with each user's groups."""
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
    return "".join(lines)


def fresh_tokens(users: Iterable[str]) -> dict[str, str]:
    return {user: secrets.token_urlsafe(32) for user in users}


def secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of ``path``, made (readable by its owner only, whole or not at all)
    if missing."""
    if not path.exists():
        write_private(path, make())
    return path.read_bytes()


def _admin_token_file() -> bytes:
    return f"{secrets.token_urlsafe(32)},admin,admin,system:masters\n".encode()


def _credential_file(user: str) -> str:
    return user.replace(":", "_") + ".token"


class MissingFile(Exception):
    """A secret or certificate a process needs is not in its cluster directory."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is missing: is {path.parent.parent} a cluster's directory? "
                         "(actorkube up --distributed makes one; actorkube join, a node's)")


class ClusterFiles:
    """The secrets of the cluster at ``data_dir`` (see the module rules). ``create``:
    make what is missing (what starts a cluster does); a component process only reads
    (``MissingFile`` if something is missing), so two processes never race to make or
    renew one file."""

    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        self.data_dir = data_dir
        self.create = create

    def _secret(self, path: Path, make: Callable[[], bytes]) -> bytes:
        if not self.create and not path.exists():
            raise MissingFile(path)
        return secret_file(path, make)

    def prepare(self) -> None:
        """The directory, readable by its owner only (etcd's log holds Secrets)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)

    def pki(self, host: str = "127.0.0.1") -> ClusterPki:
        """The certificates, the serving one naming ``host`` too (every local name when
        ``host`` listens everywhere)."""
        if not self.create:
            try:
                return ClusterPki.load(self.data_dir / "pki")
            except FileNotFoundError as e:
                raise MissingFile(Path(e.filename)) from None
        everywhere = host in ("0.0.0.0", "::", "")
        hosts = SERVING_HOSTS if everywhere or host in SERVING_HOSTS else (*SERVING_HOSTS, host)
        return ClusterPki.load_or_create(self.data_dir / "pki", hosts)

    def people_tokens(self) -> dict[str, UserInfo]:
        """``tokens.csv``: bearer tokens for clients without a certificate."""
        return parse_token_file(self._secret(self.data_dir / "tokens.csv",
                                             _admin_token_file).decode())  # fmt: skip

    def signing_key(self) -> bytes:
        return self._secret(self.data_dir / "pki" / "service-account.key", new_signing_key)

    def transport_token(self) -> bytes:
        if self.create:
            (self.data_dir / "pki").mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._secret(self.data_dir / "pki" / "transport.token",
                            lambda: secrets.token_urlsafe(32).encode())  # fmt: skip

    def node_transport_token(self) -> bytes:
        """The nodes' transport secret (``transport``), which joining nodes are given."""
        if self.create:
            (self.data_dir / "pki").mkdir(mode=0o700, parents=True, exist_ok=True)
        return self._secret(self.data_dir / "pki" / "node-transport.token",
                            lambda: secrets.token_urlsafe(32).encode())  # fmt: skip

    @property
    def credentials(self) -> Path:
        return self.data_dir / "credentials"

    def write_credentials(self, users: Iterable[str]) -> None:
        """Tokens on disk for every one of ``users`` that has none yet (kept across
        starts), and ``credentials/tokens.csv`` naming them all."""
        self.credentials.mkdir(mode=0o700, parents=True, exist_ok=True)
        tokens = {user: secret_file(self.credentials / _credential_file(user),
                                    lambda: secrets.token_urlsafe(32).encode()).decode()
                  for user in users}  # fmt: skip
        write_private(self.credentials / "tokens.csv", token_lines(tokens).encode())

    def token(self, user: str) -> str:
        """The token of component ``user`` (``MissingFile`` if it has none)."""
        path = self.credentials / _credential_file(user)
        if not path.exists():
            raise MissingFile(path)
        return path.read_text().strip()

    def api_tokens(self) -> dict[str, UserInfo]:
        """Every token the API servers accept: people's, and components' if written."""
        tokens = self.people_tokens()
        components = self.credentials / "tokens.csv"
        if components.exists():
            tokens.update(parse_token_file(components.read_text()))
        return tokens
