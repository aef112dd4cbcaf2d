"""Joining a node as kubeadm does it: a bootstrap token, the cluster-info ConfigMap
that the token's signature makes trustworthy, then a certificate signing request whose
certificate becomes the kubelet's credentials.

Rules of this file:

- The control plane's side (``kubeadm token create``, ``kubeadm init``'s cluster-info):
  ``new_token`` makes ``<id>.<secret>`` (6 and 16 characters of [a-z0-9]);
  ``token_secret`` is its Secret (kube-system/bootstrap-token-<id>, type
  bootstrap.kubernetes.io/token, expiring after ``ttl``, usages signing and
  authentication, groups system:bootstrappers:kubeadm:default-node-token by
  default); ``cluster_info`` is the ConfigMap kube-public/cluster-info holding a
  kubeconfig with the server and the CA and no credentials.
- ``ca_cert_hash`` is kubeadm's ``--discovery-token-ca-cert-hash``: ``sha256:`` and the
  hex SHA-256 of the CA certificate's DER SubjectPublicKeyInfo.
- Discovery (``verify_cluster_info``) trusts cluster-info, read anonymously over a
  connection that cannot check the server yet, only if its ``jws-kubeconfig-<id>``
  entry is the detached JWS of its kubeconfig under the token (only the server and
  whoever holds the token can make it), and, when a CA hash is given, only if the
  kubeconfig's CA has that public key. Each failure is a ``DiscoveryError`` with
  kubeadm's words.
- The node's key is ECDSA P-256; its request names O=system:nodes,
  CN=system:node:<node>, for the signer kubernetes.io/kube-apiserver-client-kubelet and
  the usages digital signature and client auth (what the approver recognizes). Its
  name is ``node-csr-`` and a digest of the request, as the kubelet names it.
- The steps of a join are functions of an ``ApiClient``-like object (``get``,
  ``create``, ``watch``): ``discover`` with an anonymous client, then, as the token,
  ``request_certificate`` and ``wait_for_certificate``; ``join`` runs them in order
  and returns the node's credentials. Nothing here sleeps: waiting is a watch.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from actorkube.apiserver._authn import (
    BOOTSTRAP_TOKEN,
    BOOTSTRAP_TOKEN_NAMESPACE,
    BOOTSTRAP_TOKEN_SECRET_PREFIX,
    BOOTSTRAP_TOKEN_TYPE,
)
from actorkube.apiserver._csr import (
    APPROVED,
    CERTIFICATES,
    DENIED,
    FAILED,
    KUBELET_CLIENT_SIGNER,
)
from actorkube.apiserver._meta import rfc3339
from actorkube.controllers._jws import signature_is_valid
from actorkube.pki import KeyPair

DEFAULT_TTL = 24 * 3600.0  # kubeadm token create's --ttl
DEFAULT_USAGES = ("signing", "authentication")
DEFAULT_GROUPS = ("system:bootstrappers:kubeadm:default-node-token",)
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
SIGNATURE_PREFIX = "jws-kubeconfig-"
CSRS = "certificatesigningrequests"
NODE_CLIENT_USAGES = ("digital signature", "client auth")
_ALPHABET = string.ascii_lowercase + string.digits


class DiscoveryError(Exception):
    """cluster-info cannot be trusted with this token and CA hash (a wrong or expired
    token, a server that is not the cluster's, or a CA that is not the pinned one)."""


class CertificateRefused(Exception):
    """The node's certificate request was denied or failed; the message says which and
    why (the cluster's decision, not the node's fault)."""


class Client(Protocol):
    """What the join needs of an API client (``actorkube.client.ApiClient`` has it)."""

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  group: str = "") -> dict: ...  # fmt: skip

    async def create(self, resource: str, body: dict, *, namespace: str = "",
                     group: str = "") -> dict: ...  # fmt: skip

    def watch(self, resource: str, *, namespace: str = "", group: str = "",
              field_selector: str = "", resource_version: str = "") -> Any: ...  # fmt: skip


@attrs.frozen
class ClusterInfo:
    """What discovery learned: the API server's address and the cluster CA (PEM)."""

    server: str
    ca: bytes


@attrs.frozen
class NodeCredentials:
    """What a join ends with: the cluster, and the node's client certificate and key."""

    cluster: ClusterInfo
    client: KeyPair


# --- the control plane's side ---------------------------------------------------------------


def new_token(rng: Callable[[Sequence[str]], str] = secrets.choice) -> str:
    """A fresh bootstrap token ``<id>.<secret>``."""
    return ("".join(rng(_ALPHABET) for _ in range(6)) + "."
            + "".join(rng(_ALPHABET) for _ in range(16)))  # fmt: skip


def token_secret(token: str, *, now: float, ttl: float | None = DEFAULT_TTL,
                 usages: Sequence[str] = DEFAULT_USAGES, groups: Sequence[str] = DEFAULT_GROUPS,
                 description: str = "") -> dict[str, Any]:  # fmt: skip
    """The Secret that makes ``token`` valid (``ttl`` None: it never expires)."""
    parsed = BOOTSTRAP_TOKEN.fullmatch(token)
    if parsed is None:
        raise ValueError(f'the bootstrap token "{token}" was not of the form '
                         '"[a-z0-9]{6}.[a-z0-9]{16}"')  # fmt: skip
    token_id, token_value = parsed.groups()
    data = {"token-id": token_id, "token-secret": token_value}
    if description:
        data["description"] = description
    if ttl is not None:
        data["expiration"] = rfc3339(now + ttl)
    data.update({f"usage-bootstrap-{usage}": "true" for usage in usages})
    if groups:
        data["auth-extra-groups"] = ",".join(groups)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": BOOTSTRAP_TOKEN_SECRET_PREFIX + token_id,
                     "namespace": BOOTSTRAP_TOKEN_NAMESPACE},
        "type": BOOTSTRAP_TOKEN_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


async def create_token(client: Client, *, now: float, ttl: float | None = DEFAULT_TTL,
                       usages: Sequence[str] = DEFAULT_USAGES,
                       groups: Sequence[str] = DEFAULT_GROUPS,
                       description: str = "") -> str:  # fmt: skip
    """``kubeadm token create``: a new token, stored as its Secret; the token."""
    token = new_token()
    await client.create("secrets", token_secret(token, now=now, ttl=ttl, usages=usages,
                                                groups=groups, description=description),
                        namespace=BOOTSTRAP_TOKEN_NAMESPACE)  # fmt: skip
    return token


def cluster_kubeconfig(server: str, ca: bytes) -> str:
    """The kubeconfig cluster-info carries: one cluster (the server and its CA), no
    user, as kubeadm writes it."""
    config = {"apiVersion": "v1", "kind": "Config", "preferences": {},
              "clusters": [{"name": "", "cluster": {
                  "server": server,
                  "certificate-authority-data": base64.b64encode(ca).decode()}}],
              "contexts": None, "current-context": "", "users": None}  # fmt: skip
    return yaml.safe_dump(config, sort_keys=True)


def cluster_info(server: str, ca: bytes) -> dict[str, Any]:
    """The ConfigMap kube-public/cluster-info for the API server at ``server``."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CLUSTER_INFO, "namespace": CLUSTER_INFO_NAMESPACE},
            "data": {KUBECONFIG_KEY: cluster_kubeconfig(server, ca)}}  # fmt: skip


def ca_cert_hash(ca_pem: bytes) -> str:
    """``sha256:<hex>`` of the certificate's DER SubjectPublicKeyInfo."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


# --- the node's side --------------------------------------------------------------------------


def verify_cluster_info(config_map: dict, token: str, ca_hash: str | None) -> ClusterInfo:
    """The cluster ``config_map`` (cluster-info, read without trusting the server)
    describes, if this token signed it and its CA has ``ca_hash`` (None: not pinned,
    kubeadm's --discovery-token-unsafe-skip-ca-verification); ``DiscoveryError``
    otherwise."""
    parsed = BOOTSTRAP_TOKEN.fullmatch(token)
    if parsed is None:
        raise DiscoveryError(f'the bootstrap token "{token}" was not of the form '
                             '"[a-z0-9]{6}.[a-z0-9]{16}"')  # fmt: skip
    token_id, token_value = parsed.groups()
    # Read from a server not trusted yet: every shape is checked before it is used.
    data = config_map.get("data") if isinstance(config_map, dict) else None
    data = data if isinstance(data, dict) else {}
    content = data.get(KUBECONFIG_KEY)
    if not content or not isinstance(content, str):
        raise DiscoveryError(f"there is no {KUBECONFIG_KEY} key in the {CLUSTER_INFO} "
                             "ConfigMap. This API Server isn't set up for token "
                             "bootstrapping, can't connect")  # fmt: skip
    signature = data.get(SIGNATURE_PREFIX + token_id)
    if not signature or not isinstance(signature, str):
        raise DiscoveryError(f'token id "{token_id}" is invalid for this cluster or it has '
                             'expired. Use "actorkube token create" on the control-plane node '
                             "to create a new valid token")  # fmt: skip
    if not signature_is_valid(signature, content, token_id, token_value):
        raise DiscoveryError("failed to verify JWS signature of received cluster info "
                             "object, can't trust this API Server")  # fmt: skip
    try:
        config = yaml.safe_load(content)
        clusters = config.get("clusters") or []
    except (yaml.YAMLError, AttributeError):
        raise DiscoveryError(f"couldn't parse the kubeconfig file in the {CLUSTER_INFO} "
                             "ConfigMap") from None  # fmt: skip
    if not isinstance(clusters, list) or len(clusters) != 1:
        count = len(clusters) if isinstance(clusters, list) else 0
        raise DiscoveryError(f"expected exactly one cluster in bootstrap kubeconfig, got "
                             f"{count}")  # fmt: skip
    entry = clusters[0] if isinstance(clusters[0], dict) else {}
    cluster = entry.get("cluster") if isinstance(entry.get("cluster"), dict) else {}
    try:
        ca = base64.b64decode(str(cluster.get("certificate-authority-data", "")), validate=True)
        actual = ca_cert_hash(ca)
    except ValueError:
        raise DiscoveryError(f"failed to parse cluster CA from the {CLUSTER_INFO} "
                             "ConfigMap") from None  # fmt: skip
    if ca_hash is not None and actual != ca_hash:
        raise DiscoveryError(f"cluster CA found in {CLUSTER_INFO} ConfigMap is invalid: none "
                             f'of the public keys "{actual}" are pinned')  # fmt: skip
    return ClusterInfo(str(cluster.get("server", "")), ca)


def make_node_csr(node_name: str) -> tuple[bytes, bytes]:
    """A new key and the node client certificate request for ``node_name`` (both
    PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                         x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(
        key, hashes.SHA256())  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return key_pem, request.public_bytes(serialization.Encoding.PEM)


def csr_object(csr_pem: bytes, *, expiration_seconds: int | None = None) -> dict[str, Any]:
    """The CertificateSigningRequest of a node client request, named as the kubelet
    names it (``node-csr-`` and a digest of the request and its usages)."""
    digest = hashlib.sha256(csr_pem + "|".join(NODE_CLIENT_USAGES).encode()).digest()
    spec: dict[str, Any] = {"request": base64.b64encode(csr_pem).decode(),
                            "signerName": KUBELET_CLIENT_SIGNER,
                            "usages": list(NODE_CLIENT_USAGES)}  # fmt: skip
    if expiration_seconds is not None:
        spec["expirationSeconds"] = expiration_seconds
    name = "node-csr-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return {"apiVersion": f"{CERTIFICATES}/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip


def issued_certificate(csr: dict) -> bytes | None:
    """The certificate of a CSR (PEM) once issued, None while pending;
    ``CertificateRefused`` if it was denied or failed."""
    for c in (csr.get("status") or {}).get("conditions") or ():
        if c.get("type") in (DENIED, FAILED) and c.get("status") == "True":
            what = "denied" if c["type"] == DENIED else "failed"
            raise CertificateRefused(f'certificate signing request {csr["metadata"]["name"]} '
                                     f"was {what}: {c.get('reason', '')} "
                                     f"{c.get('message', '')}".rstrip())  # fmt: skip
    certificate = (csr.get("status") or {}).get("certificate")
    if certificate and any(c.get("type") == APPROVED
                           for c in (csr.get("status") or {}).get("conditions") or ()):  # fmt: skip
        return base64.b64decode(certificate)
    return None


async def discover(anonymous: Client, token: str, ca_hash: str | None) -> ClusterInfo:
    """Step 1: read cluster-info as anyone may, and trust it only as
    ``verify_cluster_info`` does."""
    config_map = await anonymous.get("configmaps", CLUSTER_INFO, namespace=CLUSTER_INFO_NAMESPACE)
    return verify_cluster_info(config_map, token, ca_hash)


async def request_certificate(client: Client, node_name: str, *,
                              expiration_seconds: int | None = None,
                              ) -> tuple[str, bytes]:  # fmt: skip
    """Step 2, as the token: a new key and its CSR; (the CSR's name, the key PEM)."""
    key_pem, csr_pem = make_node_csr(node_name)
    made = await client.create(CSRS, csr_object(csr_pem, expiration_seconds=expiration_seconds),
                               group=CERTIFICATES)  # fmt: skip
    return made["metadata"]["name"], key_pem


async def wait_for_certificate(client: Client, name: str) -> bytes:
    """Step 3, as the token: the certificate once the CSR ``name`` has one (watched,
    from the version read, again when a watch ends)."""
    while True:
        csr = await client.get(CSRS, name, group=CERTIFICATES)
        issued = issued_certificate(csr)
        if issued is not None:
            return issued
        version = csr["metadata"].get("resourceVersion", "")
        async with client.watch(CSRS, group=CERTIFICATES, field_selector=f"metadata.name={name}",
                                resource_version=version) as events:  # fmt: skip
            async for event in events:
                if event.get("type") in ("ADDED", "MODIFIED"):
                    issued = issued_certificate(event["object"])
                    if issued is not None:
                        return issued


async def join(anonymous: Client, as_token: Callable[[ClusterInfo, str], Client], token: str,
               ca_hash: str | None, node_name: str, *,
               expiration_seconds: int | None = None) -> NodeCredentials:  # fmt: skip
    """``kubeadm join`` and the kubelet's TLS bootstrap: discover the cluster, ask for
    the node's client certificate as the token (``as_token(cluster, token)`` is a client
    for the discovered server with that bearer token), wait for it; the credentials."""
    cluster = await discover(anonymous, token, ca_hash)
    client = as_token(cluster, token)
    name, key_pem = await request_certificate(client, node_name,
                                              expiration_seconds=expiration_seconds)  # fmt: skip
    certificate = await wait_for_certificate(client, name)
    return NodeCredentials(cluster, KeyPair(certificate, key_pem))
