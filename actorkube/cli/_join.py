"""Joining nodes to a running cluster, as kubeadm does: what the control plane
publishes for them, the bootstrap tokens, and the node's side.

Rules of this file:

- ``publish`` is kubeadm init's upload phases for this cluster: the ConfigMap
  kube-public/cluster-info (the load balancer's URL and the CA, for token discovery;
  the bootstrap signer signs it for every token), the ConfigMap
  kube-system/actorkube-config (the API servers' transport addresses) and the Secret
  kube-system/actorkube-transport (the nodes' transport secret: it reaches the API
  servers' front actors only), both readable by the group system:nodes only, and a
  binding of kube-proxy's role to system:nodes (a joined node's kube-proxy acts as its
  node). It runs at every start of a distributed cluster
  (the load balancer's port may be new), as the addon manager, over the transport.
- A node joins (``join_node``) over HTTPS, knowing only the server's URL, a bootstrap
  token and the CA's hash: discovery, a CSR approved and signed by the controllers,
  then, with its new client certificate, it reads actorkube-config and
  actorkube-transport. What it learned stays in its directory (``NodeFiles``), so a
  joined node started again does not join again (its token may have expired).
- A node gets the nodes' transport secret, never the cluster's: it reaches the API
  servers and nothing else (``_cluster.transport``), as Kubernetes' nodes never reach
  etcd.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import trio

from actorkube.actor import ActorSystem, Address
from actorkube.client import ApiClient, ApiServers
from actorkube.client._https import HttpsClient
from actorkube.node._bootstrap import (
    CertificateRefused,
    ClusterInfo,
    NodeCredentials,
    ca_cert_hash,
    cluster_info,
    create_token,
    join,
)
from actorkube.pki import KeyPair, write_private

from ._cluster import ADDON_USER, APISERVER_ACTOR, ClusterFiles
from ._cluster import transport as cluster_transport

CONFIG = "actorkube-config"  # kube-system: the API servers' transport addresses
TRANSPORT = "actorkube-transport"  # kube-system: the nodes' transport secret
RBAC = "rbac.authorization.k8s.io"
JOIN_TIMEOUT = 300.0  # kubeadm's TLS bootstrap timeout (5 minutes)


@asynccontextmanager
async def admin_client(files: ClusterFiles, apiservers: list[str],
                       peer_timeout: float = 2.0) -> AsyncIterator[ApiClient]:  # fmt: skip
    """A client of the cluster as its addon manager (system:masters), over the
    transport from a system of its own."""
    async with ActorSystem(name=f"admin-{uuid.uuid4().hex[:12]}") as system:
        transport = cluster_transport(system, files, peer_timeout)
        await transport.start()
        system.transport = transport
        servers = ApiServers([system.ref(str(Address(a, APISERVER_ACTOR)))
                              for a in apiservers])  # fmt: skip
        try:
            yield ApiClient(system, servers, token=files.token(ADDON_USER))
        finally:
            await transport.aclose()


async def _put(client: ApiClient, resource: str, body: dict, *, namespace: str = "",
               group: str = "") -> None:  # fmt: skip
    """Create ``body``, or replace what is there with it."""
    name = body["metadata"]["name"]
    current = await client.get_if_exists(resource, name, namespace=namespace, group=group)
    if current is None:
        await client.create(resource, body, namespace=namespace, group=group)
        return
    body = {**body, "metadata": {**body["metadata"],
                                 "resourceVersion": current["metadata"]["resourceVersion"]}}
    if current.get("data") != body.get("data") or resource.endswith(("roles", "bindings")):
        await client.update(resource, body, namespace=namespace, group=group)


async def publish(client: ApiClient, *, url: str, ca: bytes, apiservers: list[str],
                  transport_token: bytes) -> None:  # fmt: skip
    """What joining nodes read (see the module rules)."""
    await _put(client, "configmaps", cluster_info(url, ca), namespace="kube-public")
    await _put(client, "configmaps", {"metadata": {"name": CONFIG, "namespace": "kube-system"},
                                      "data": {"apiservers": ",".join(apiservers)}},
               namespace="kube-system")  # fmt: skip
    secret = {"metadata": {"name": TRANSPORT, "namespace": "kube-system"}, "type": "Opaque",
              "data": {"token": base64.b64encode(transport_token).decode()}}
    await _put(client, "secrets", secret, namespace="kube-system")
    role = {"metadata": {"name": "actorkube:nodes-config", "namespace": "kube-system"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"],
                       "resourceNames": [CONFIG]},
                      {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                       "resourceNames": [TRANSPORT]}]}  # fmt: skip
    nodes = [{"kind": "Group", "apiGroup": RBAC, "name": "system:nodes"}]
    binding = {"metadata": {"name": "actorkube:nodes-config", "namespace": "kube-system"},
               "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": "actorkube:nodes-config"},
               "subjects": nodes}  # fmt: skip
    await _put(client, "roles", role, namespace="kube-system", group=RBAC)
    await _put(client, "rolebindings", binding, namespace="kube-system", group=RBAC)
    proxier = {"metadata": {"name": "actorkube:node-proxier"},
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole",
                           "name": "system:node-proxier"},
               "subjects": nodes}  # fmt: skip
    await _put(client, "clusterrolebindings", proxier, group=RBAC)


async def new_join_command(client: ApiClient, *, url: str, ca: bytes, ttl: float) -> str:
    """``kubeadm token create --print-join-command``: a fresh bootstrap token (valid for
    ``ttl`` seconds; 0: forever) and the command that joins a node with it."""
    token = await create_token(client, now=time.time(), ttl=ttl or None,
                               description="made by actorkube token create")  # fmt: skip
    return (f"actorkube join {url} --token {token} "
            f"--discovery-token-ca-cert-hash {ca_cert_hash(ca)}")


@attrs.frozen
class NodeFiles:
    """What a joined node keeps in its directory: ``pki/ca.crt``,
    ``pki/node-transport.token`` and ``nodes/NAME/`` (``join.json``: the server and the
    API servers' addresses; ``pki/kubelet-client.crt`` and ``.key``), so that
    ``ClusterFiles`` of the directory serves the node's processes as it serves the
    control plane's."""

    data_dir: Path
    node: str

    @property
    def _state(self) -> Path:
        return self.data_dir / "nodes" / self.node / "join.json"

    def load(self) -> tuple[list[str], KeyPair] | None:
        """(API servers' transport addresses, client certificate) of a node that joined,
        None if it never did."""
        if not self._state.exists():
            return None
        state = json.loads(self._state.read_text())
        pki = self.data_dir / "nodes" / self.node / "pki"
        pair = KeyPair((pki / "kubelet-client.crt").read_bytes(),
                       (pki / "kubelet-client.key").read_bytes())  # fmt: skip
        return state["apiservers"], pair

    def save(self, credentials: NodeCredentials, apiservers: list[str],
             transport_token: bytes) -> None:  # fmt: skip
        pki = self.data_dir / "pki"
        pki.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(pki / "ca.crt", credentials.cluster.ca)
        write_private(pki / "node-transport.token", transport_token)
        node_pki = self.data_dir / "nodes" / self.node / "pki"
        node_pki.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(node_pki / "kubelet-client.crt", credentials.client.cert)
        write_private(node_pki / "kubelet-client.key", credentials.client.key)
        # Last: its presence says the join is complete.
        write_private(self._state, json.dumps({"server": credentials.cluster.server,
                                               "apiservers": apiservers}).encode())  # fmt: skip


async def join_node(server: str, token: str, ca_hash: str | None, node: str,
                    files: NodeFiles, *, timeout: float = JOIN_TIMEOUT,
                    ) -> tuple[list[str], KeyPair]:  # fmt: skip
    """``kubeadm join``: the node's credentials and the API servers' addresses, kept in
    ``files`` (see the module rules). A certificate not issued within ``timeout``
    seconds (nobody approves the request) is ``CertificateRefused``, as kubeadm gives
    up on its TLS bootstrap."""

    def as_token(cluster: ClusterInfo, bearer: str) -> HttpsClient:
        return HttpsClient(cluster.server, ca=cluster.ca, token=bearer)

    with trio.move_on_after(timeout) as waited:
        credentials = await join(HttpsClient(server, ca=None), as_token, token, ca_hash, node)
    if waited.cancelled_caught:
        raise CertificateRefused(f"no certificate issued for node {node} within {timeout:g} s: "
                                 "is its request approved? (kubectl get csr)")  # fmt: skip
    cluster = credentials.cluster
    as_node = HttpsClient(cluster.server, ca=cluster.ca, client_cert=credentials.client.cert,
                          client_key=credentials.client.key)  # fmt: skip
    config = await as_node.get("configmaps", CONFIG, namespace="kube-system")
    secret = await as_node.get("secrets", TRANSPORT, namespace="kube-system")
    apiservers = [a for a in config["data"]["apiservers"].split(",") if a]
    files.save(credentials, apiservers, base64.b64decode(secret["data"]["token"]))
    return apiservers, credentials.client
