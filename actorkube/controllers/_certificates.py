"""What kube-controller-manager's certificate controllers decide, as pure functions:
which requests the approver recognizes, which the signers accept, and the certificate
they issue.

Rules of this file:

- A node client request (kubernetes.io/kube-apiserver-client-kubelet) names exactly
  the organization ``system:nodes`` and a common name ``system:node:<name>``, no
  subject alternative names, and the usages {digital signature, client auth}, with
  key encipherment or without (Kubernetes' ValidateKubeletClientCSR and its messages).
  A kubelet serving request needs a DNS or IP name instead and {digital signature,
  server auth} (key encipherment optional); a kube-apiserver-client request may ask
  for client auth with digital signature and key encipherment only.
- The approver recognizes a node client request as ``selfnodeclient`` when the
  requester is the node it names (a renewal), and as ``nodeclient`` in any case, in
  that order; each needs the requester to be allowed ``create`` on
  ``certificatesigningrequests/<that>`` (asked by SubjectAccessReview). The approval
  is Kubernetes' condition: Approved, True, reason AutoApproved and its message.
- A request is pending while it has no certificate and is neither approved nor denied;
  a signer acts on one that is approved, not denied, not failed and has no certificate.
- The signer's certificate (Kubernetes' PermissiveSigningPolicy): the request's subject,
  public key and subject alternative names; key usages and extended key usages from
  the requested usages; not a CA; valid from 5 minutes before now for the duration
  (minus those 5 minutes when it is 8 hours or more), never past the CA's own end. The
  duration is ``expirationSeconds`` when given, within [10 minutes, the signer's
  maximum], else the maximum (kube-controller-manager's --cluster-signing-duration, a
  year).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from actorkube.apiserver._csr import (
    APPROVED,
    DENIED,
    FAILED,
    KUBE_APISERVER_CLIENT_SIGNER,
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
    InvalidCSR,
    csr_certificate,
    csr_has_condition,
    csr_request,
    parse_csr,
)
from actorkube.pki import KeyPair

YEAR = 365 * 24 * 3600.0
MIN_DURATION = 600.0
BACKDATE = 300.0  # 5 minutes: always less than the shortest duration honoured
SHORT = 8 * 3600.0
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
SELF_NODE_CLIENT_MESSAGE = ("Auto approving self kubelet client certificate after "
                            "SubjectAccessReview.")  # fmt: skip
NODE_CLIENT_MESSAGE = "Auto approving kubelet client certificate after SubjectAccessReview."
_SAN_KINDS = ((x509.DNSName, "DNS"), (x509.RFC822Name, "Email"), (x509.IPAddress, "IP"),
              (x509.UniformResourceIdentifier, "URI"))  # fmt: skip

_CLIENT_USAGES = ({"digital signature", "key encipherment", "client auth"},
                  {"digital signature", "client auth"})  # fmt: skip
_SERVING_USAGES = ({"digital signature", "key encipherment", "server auth"},
                   {"digital signature", "server auth"})  # fmt: skip
_KEY_USAGES = {"signing": "digital_signature", "digital signature": "digital_signature",
               "content commitment": "content_commitment",
               "key encipherment": "key_encipherment", "key agreement": "key_agreement",
               "data encipherment": "data_encipherment", "cert sign": "key_cert_sign",
               "crl sign": "crl_sign", "encipher only": "encipher_only",
               "decipher only": "decipher_only"}  # fmt: skip
# In Go's ExtKeyUsage order, which the certificate lists them in.
_EXT_KEY_USAGES = {
    "any": ObjectIdentifier("2.5.29.37.0"),
    "server auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "code signing": ExtendedKeyUsageOID.CODE_SIGNING,
    "email protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "s/mime": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsec end system": ObjectIdentifier("1.3.6.1.5.5.7.3.5"),
    "ipsec tunnel": ObjectIdentifier("1.3.6.1.5.5.7.3.6"),
    "ipsec user": ObjectIdentifier("1.3.6.1.5.5.7.3.7"),
    "timestamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "ocsp signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "microsoft sgc": ObjectIdentifier("1.3.6.1.4.1.311.10.3.3"),
    "netscape sgc": ObjectIdentifier("2.16.840.1.113730.4.1"),
}


class SigningError(ValueError):
    """The signer cannot issue this certificate (its CA expired, a usage it does not
    know): the request is retried, as Kubernetes retries a signing error."""



def request_of(csr: dict, key: str) -> x509.CertificateSigningRequest:
    """The parsed request of the CSR ``key``; ``InvalidCSR`` naming it otherwise."""
    try:
        return parse_csr(csr_request(csr))
    except InvalidCSR as e:
        raise InvalidCSR(f'unable to parse csr "{key}": {e}') from None


def _spec(csr: Mapping[str, Any]) -> Mapping[str, Any]:
    return csr.get("spec") or {}


def usages(csr: Mapping[str, Any]) -> set[str]:
    return {str(u) for u in _spec(csr).get("usages") or ()}


def _names(request: x509.CertificateSigningRequest) -> x509.SubjectAlternativeName | None:
    try:
        return request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def _subject(request: x509.CertificateSigningRequest, oid: ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in request.subject.get_attributes_for_oid(oid)]


def _common_name(request: x509.CertificateSigningRequest) -> str:
    names = _subject(request, NameOID.COMMON_NAME)
    return names[0] if names else ""


def kubelet_client_problem(request: x509.CertificateSigningRequest, wanted: set[str]) -> str:
    """ValidateKubeletClientCSR: "" for a node client request, else what is wrong."""
    if _subject(request, NameOID.ORGANIZATION_NAME) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    names = _names(request)
    for kind, what in _SAN_KINDS:
        if names is not None and names.get_values_for_type(kind):
            return f"{what} subjectAltNames are not allowed"
    if not _common_name(request).startswith(NODE_PREFIX):
        return "subject common name does not begin with system:node:"
    if wanted not in _CLIENT_USAGES:
        return "usages did not match [client auth digital signature key encipherment]"
    return ""


def kubelet_serving_problem(request: x509.CertificateSigningRequest, wanted: set[str]) -> str:
    """ValidateKubeletServingCSR: "" for a node serving request, else what is wrong."""
    if _subject(request, NameOID.ORGANIZATION_NAME) != [NODES_GROUP]:
        return "subject organization is not system:nodes"
    names = _names(request)
    dns = names.get_values_for_type(x509.DNSName) if names is not None else []
    ips = names.get_values_for_type(x509.IPAddress) if names is not None else []
    if not dns and not ips:
        return "DNS or IP subjectAltName is required"
    if names is not None and names.get_values_for_type(x509.RFC822Name):
        return "Email subjectAltNames are not allowed"
    if names is not None and names.get_values_for_type(x509.UniformResourceIdentifier):
        return "URI subjectAltNames are not allowed"
    if wanted not in _SERVING_USAGES:
        return "usages did not match [digital signature key encipherment server auth]"
    if not _common_name(request).startswith(NODE_PREFIX):
        return "subject common name does not begin with system:node:"
    return ""


def api_client_usages_problem(requested: Sequence[str]) -> str:
    """validAPIServerClientUsages: client auth, with digital signature and key
    encipherment at most."""
    for usage in requested:
        if usage not in ("digital signature", "key encipherment", "client auth"):
            return f"invalid usage for client certificate: {usage}"
    if "client auth" not in requested:
        return "missing required usage for client certificate: client auth"
    return ""


def signer_problem(signer: str, request: x509.CertificateSigningRequest,
                   csr: Mapping[str, Any]) -> str:  # fmt: skip
    """Why the signer ``signer`` (one of Kubernetes' three) refuses the request, or ""."""
    if signer == KUBELET_CLIENT_SIGNER:
        return kubelet_client_problem(request, usages(csr))
    if signer == KUBELET_SERVING_SIGNER:
        return kubelet_serving_problem(request, usages(csr))
    if signer == KUBE_APISERVER_CLIENT_SIGNER:
        return api_client_usages_problem([str(u) for u in _spec(csr).get("usages") or ()])
    raise ValueError(f'unrecognized signerName: "{signer}"')


def is_pending(csr: Mapping[str, Any]) -> bool:
    """No certificate yet, neither approved nor denied (what the approver looks at)."""
    obj = dict(csr)
    return not csr_certificate(obj) and not (csr_has_condition(obj, APPROVED)
                                             or csr_has_condition(obj, DENIED))  # fmt: skip


def needs_signing(csr: Mapping[str, Any]) -> bool:
    """Approved, not denied, not failed, no certificate yet (what a signer looks at)."""
    obj = dict(csr)
    return (csr_has_condition(obj, APPROVED) and not csr_has_condition(obj, DENIED)
            and not csr_has_condition(obj, FAILED) and not csr_certificate(obj))  # fmt: skip


def recognized(csr: Mapping[str, Any], request: x509.CertificateSigningRequest,
               ) -> list[tuple[str, str]]:  # fmt: skip
    """(subresource, approval message) of each way the approver recognizes the request,
    most specific first: ``selfnodeclient``, ``nodeclient``."""
    if _spec(csr).get("signerName") != KUBELET_CLIENT_SIGNER:
        return []
    if kubelet_client_problem(request, usages(csr)):
        return []
    ways = []
    if _spec(csr).get("username") == _common_name(request):
        ways.append(("selfnodeclient", SELF_NODE_CLIENT_MESSAGE))
    ways.append(("nodeclient", NODE_CLIENT_MESSAGE))
    return ways


def access_review(csr: Mapping[str, Any], subresource: str) -> dict[str, Any]:
    """The SubjectAccessReview that asks whether the requester may ``create``
    ``certificatesigningrequests/<subresource>``."""
    spec = _spec(csr)
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": spec.get("username", ""),
            "uid": spec.get("uid", ""),
            "groups": list(spec.get("groups") or ()),
            "extra": dict(spec.get("extra") or {}),
            "resourceAttributes": {"group": "certificates.k8s.io", "version": "*",
                                   "resource": "certificatesigningrequests",
                                   "subresource": subresource, "verb": "create"},
        },
    }  # fmt: skip


def condition(kind: str, reason: str, message: str, now: str) -> dict[str, str]:
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastUpdateTime": now}  # fmt: skip


def with_condition(csr: Mapping[str, Any], added: Mapping[str, str]) -> dict[str, Any]:
    """``csr`` with one more condition."""
    status = dict(csr.get("status") or {})
    status["conditions"] = [*(status.get("conditions") or ()), dict(added)]
    return {**csr, "status": status}


def duration(expiration_seconds: Any, maximum: float) -> float:
    """How long the certificate is valid for (see the module rules)."""
    if expiration_seconds is None:
        return maximum
    return min(max(float(expiration_seconds), MIN_DURATION), maximum)


def _key_usage(requested: Sequence[str]) -> x509.KeyUsage | None:
    bits = {_KEY_USAGES[u] for u in requested if u in _KEY_USAGES}
    if not bits:
        return None
    names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")
    return x509.KeyUsage(**{name: name in bits for name in names})


def _ext_key_usage(requested: Sequence[str]) -> x509.ExtendedKeyUsage | None:
    wanted = {_EXT_KEY_USAGES[u] for u in requested if u in _EXT_KEY_USAGES}
    ordered = list(dict.fromkeys(oid for oid in _EXT_KEY_USAGES.values() if oid in wanted))
    return x509.ExtendedKeyUsage(ordered) if ordered else None


def sign(ca: KeyPair, request: x509.CertificateSigningRequest, requested: Sequence[str],
         lifetime: float, now: float) -> bytes:  # fmt: skip
    """The certificate ``ca`` issues for ``request`` (see the module rules), as PEM;
    ``SigningError`` if it cannot."""
    unknown = [u for u in requested if u not in _KEY_USAGES and u not in _EXT_KEY_USAGES]
    if unknown:
        raise SigningError(f"unrecognized usage values: {unknown}")
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    ca_end = ca_cert.not_valid_after_utc.timestamp()
    if now - BACKDATE >= ca_end or now >= ca_end:
        raise SigningError(f"the signer has expired: NotAfter={ca_cert.not_valid_after_utc}")
    end = now + lifetime if lifetime < SHORT else now + lifetime - BACKDATE
    moment = datetime.datetime.fromtimestamp
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(ca_cert.subject)
        .public_key(request.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment(now - BACKDATE, datetime.UTC))
        .not_valid_after(moment(min(end, ca_end), datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    issuer = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = builder.add_extension(issuer, critical=False)
    key_usage, ext_key_usage = _key_usage(requested), _ext_key_usage(requested)
    try:
        if key_usage is not None:
            builder = builder.add_extension(key_usage, critical=True)
    except ValueError as e:  # encipher/decipher only without key agreement
        raise SigningError(str(e)) from None
    if ext_key_usage is not None:
        builder = builder.add_extension(ext_key_usage, critical=False)
    names = _names(request)
    if names is not None:
        builder = builder.add_extension(names, critical=False)
    plain = isinstance(ca_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    cert = builder.sign(ca_key, None if plain else hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)
