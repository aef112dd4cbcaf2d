"""The cluster's certificates: a CA, the API server's serving certificate, client
certificates, and the kubeconfig that carries them to kubectl.

Rules of this file:

- Keys are ECDSA P-256, certificates X.509 v3 signed SHA-256 by the cluster CA, as
  kubeadm's are in spirit (it uses RSA 2048; P-256 is smaller and as widely accepted).
- A serving certificate names its hosts as subject alternative names (DNS names and IP
  addresses): clients such as kubectl ignore the common name.
- A client certificate says who the user is as Kubernetes reads it: the common name is
  the user name, each organization a group (``O=system:masters`` makes an admin).
- Everything is PEM bytes; ``ClusterPki.load_or_create`` keeps them in a directory, so a
  restarted cluster keeps its CA (and every kubeconfig made from it stays valid).
"""

from __future__ import annotations

import base64
import datetime
import errno
import ipaddress
import json
import os
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_DAY = datetime.timedelta(days=1)
_SKEW = datetime.timedelta(minutes=5)  # a certificate is valid a little before it was made


@attrs.frozen
class KeyPair:
    """A certificate and its private key, both PEM."""

    cert: bytes
    key: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """``name.key`` then ``name.crt`` in ``directory``, each whole or not at all (the
        key readable by its owner only); their paths."""
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        write_private(key, self.key)
        write_private(cert, self.cert)
        return cert, key


def write_private(path: Path, data: bytes) -> None:
    """``data`` into ``path``, readable by its owner only, atomically: a crash leaves the
    old file or the new one, never a part (which a restart would take for a whole)."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs_ = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    return x509.Name([*attrs_, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def new_ca(common_name: str = "actorkube-ca", *, days: int = 3650) -> KeyPair:
    """A self-signed certificate authority."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def issue(
    ca: KeyPair,
    common_name: str,
    *,
    organizations: tuple[str, ...] = (),
    hosts: tuple[str, ...] = (),
    server: bool = False,
    days: int = 365,
) -> KeyPair:
    """A certificate signed by ``ca``: for a server (``hosts``: its DNS names and IP
    addresses) or for a client (``common_name`` the user, ``organizations`` its
    groups)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    purpose = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([purpose]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_host(h) for h in hosts]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _pem_key(key))


def _host(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


# The names pods reach the API server by too: the ``kubernetes`` Service's cluster IP
# (the first address of the default service CIDR, 127.96.0.0/12) and DNS names.
SERVING_HOSTS = ("localhost", "127.0.0.1", "127.96.0.1", "kubernetes", "kubernetes.default",
                 "kubernetes.default.svc", "kubernetes.default.svc.cluster.local")  # fmt: skip


@attrs.frozen
class ClusterPki:
    """The files of one cluster: its CA, the API server's serving certificate and the
    admin's client certificate."""

    directory: Path
    ca: KeyPair
    serving: KeyPair
    admin: KeyPair  # a client certificate for the user admin in system:masters

    @classmethod
    def load_or_create(cls, directory: Path, hosts: tuple[str, ...] = SERVING_HOSTS) -> ClusterPki:
        """The certificates under ``directory``, made (and written) if missing. A serving
        or client certificate that the CA did not sign (the CA was made again), that
        ends within 30 days, or (serving) that does not name every one of ``hosts``, is
        issued again."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        ca = _load(directory, "ca") or _store(directory, "ca", new_ca())
        serving = _load(directory, "apiserver")
        if serving is None or not _serves(serving, ca, hosts):
            serving = _store(
                directory, "apiserver", issue(ca, "kube-apiserver", hosts=hosts, server=True)
            )
        admin = _load(directory, "admin")
        if admin is None or not _signed_by(admin, ca):
            admin = issue(ca, "admin", organizations=("system:masters",))
            admin = _store(directory, "admin", admin)
        return cls(directory, ca, serving, admin)

    @classmethod
    def load(cls, directory: Path) -> ClusterPki:
        """The certificates under ``directory`` as they are, for a process that uses them
        and must not make or renew them (another process may be doing so);
        ``FileNotFoundError`` names the first one missing."""
        pairs = []
        for name in ("ca", "apiserver", "admin"):
            pair = _load(directory, name)
            if pair is None:
                raise FileNotFoundError(errno.ENOENT, "no such certificate",
                                        str(directory / f"{name}.crt"))  # fmt: skip
            pairs.append(pair)
        return cls(directory, *pairs)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_files(self) -> tuple[Path, Path]:
        return self.directory / "apiserver.crt", self.directory / "apiserver.key"


RENEW_BEFORE = 30 * _DAY  # certificates closer than this to their end are issued again


def _signed_by(pair: KeyPair, ca: KeyPair) -> bool:
    """Whether ``ca`` signed the certificate and it has a while to live yet."""
    cert = x509.load_pem_x509_certificate(pair.cert)
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert))
    except (ValueError, TypeError, InvalidSignature):
        return False
    now = datetime.datetime.now(datetime.UTC)
    return cert.not_valid_after_utc - now > RENEW_BEFORE


def _serves(serving: KeyPair, ca: KeyPair, hosts: tuple[str, ...]) -> bool:
    if not _signed_by(serving, ca):
        return False
    cert = x509.load_pem_x509_certificate(serving.cert)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(_host(h) in names for h in hosts)


def _load(directory: Path, name: str) -> KeyPair | None:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    if cert.exists() and key.exists():
        return KeyPair(cert.read_bytes(), key.read_bytes())
    return None


def _store(directory: Path, name: str, pair: KeyPair) -> KeyPair:
    pair.write(directory, name)
    return pair


def kubeconfig(
    server: str,
    ca_cert: bytes,
    *,
    user: str = "admin",
    token: str = "",
    client: KeyPair | None = None,
    cluster: str = "actorkube",
) -> str:
    """A kubeconfig (as JSON, which kubectl reads as YAML) for ``server``, trusting
    ``ca_cert``, with a bearer ``token`` or a ``client`` certificate."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    credentials: dict[str, str] = {}
    if token:
        credentials["token"] = token
    if client is not None:
        credentials["client-certificate-data"] = b64(client.cert)
        credentials["client-key-data"] = b64(client.key)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster,
             "cluster": {"server": server, "certificate-authority-data": b64(ca_cert)}}
        ],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
        "preferences": {},
    }  # fmt: skip
    return json.dumps(config, indent=2)
