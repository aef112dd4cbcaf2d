"""certificates.k8s.io/v1 CertificateSigningRequests: their validation and strategies
(pure; the handler that serves their writes is ``_csr_handler``).

Rules of this file:

- ``validate_csr`` is Kubernetes' validation (the request a signed PKCS#10 request in
  one PEM block, signerName, usages, expirationSeconds >= 600, conditions, the
  certificate); ``csr_prepare_create`` sets the requester (username, uid, groups, extra)
  from the authenticated user, whatever the client sent; ``csr_prepare_update`` and
  ``csr_subresource_errors`` are the strategies of a plain update (metadata only),
  ``status`` (conditions kept, the certificate set once) and ``approval`` (conditions
  only).
- The generic write path hands a strategy neither the requester nor a subresource it
  does not know, so ``CsrHandler`` (``_csr_handler``) serves CSR writes itself:
  a create gets its requester, an update its subresource's strategy, ``approval`` is
  served, and Kubernetes' certificate admission plugins run: CertificateApproval
  (approving needs ``approve`` on ``signers/<signerName>`` or ``signers/<domain>/*``),
  CertificateSigning (setting a certificate needs ``sign``) and
  CertificateSubjectRestriction (no ``system:masters`` client certificates from
  kubernetes.io/kube-apiserver-client). Server-side apply of CSRs is refused (it would
  bypass the requester and the strategy). It overrides the handler's ``_serve``: a hook
  in the handler for requester-aware strategies would be the cleaner shape.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm

from ._rbac import UserInfo
from ._validation import (
    FieldError,
    Path,
    as_dict,
    as_list,
    is_dns1123_label,
    is_dns1123_subdomain,
)

CSRS = "certificatesigningrequests"
_dict, _list = as_dict, as_list
_not_supported, _duplicate = FieldError.not_supported, FieldError.duplicate

# --- certificates.k8s.io/v1 ----------------------------------------------------------------

CERTIFICATES = "certificates.k8s.io"
KUBE_APISERVER_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client-kubelet"
KUBELET_SERVING_SIGNER = "kubernetes.io/kubelet-serving"
LEGACY_UNKNOWN_SIGNER = "kubernetes.io/legacy-unknown"
APPROVED, DENIED, FAILED = "Approved", "Denied", "Failed"
KEY_USAGES = ("signing", "digital signature", "content commitment", "key encipherment",
              "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
              "decipher only", "any", "server auth", "client auth", "code signing",
              "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
              "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")  # fmt: skip
MIN_EXPIRATION_SECONDS = 600
_PEM_BLOCK = re.compile(r"-----BEGIN ([^-\r\n]+)-----\r?\n(.*?)\r?\n?-----END \1-----", re.S)
_CONDITIONS = Path("status").child("conditions")
_CERTIFICATE = Path("status").child("certificate")


class InvalidCSR(ValueError):
    """A request that is not a signed PKCS#10 request in a PEM block (the requester's
    fault); the message is Kubernetes' or Go's."""


def pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Every PEM block of ``data`` as (type, DER), in order (text around them is
    skipped, as Go's pem.Decode skips it)."""
    blocks = []
    for found in _PEM_BLOCK.finditer(data.decode("latin-1")):
        body = found.group(2)
        if ":" in body.split("\n", 1)[0]:  # headers: not a block we accept
            blocks.append((found.group(1), b""))
            continue
        try:
            blocks.append((found.group(1), base64.b64decode("".join(body.split()), validate=True)))
        except ValueError:
            blocks.append((found.group(1), b""))
    return blocks


def parse_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """The certificate request of the first PEM block of ``pem``, its signature
    checked (Kubernetes' ParseCSR and CheckSignature); ``InvalidCSR`` otherwise."""
    blocks = pem_blocks(pem)
    if not blocks or blocks[0][0] != "CERTIFICATE REQUEST":
        raise InvalidCSR("PEM block type must be CERTIFICATE REQUEST")
    try:
        request = x509.load_der_x509_csr(blocks[0][1])
        signed = request.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidCSR("x509: malformed certificate request") from None
    if not signed:
        raise InvalidCSR("x509: signature of the certificate request is not valid")
    return request


def csr_request(obj: dict) -> bytes:
    """``spec.request`` of a stored CSR (base64 in JSON), as PEM bytes (b"" if not
    base64)."""
    raw = _dict(obj.get("spec")).get("request")
    try:
        return base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except ValueError:
        return b""


def csr_certificate(obj: dict) -> bytes:
    """``status.certificate`` of a CSR, as PEM bytes (b"" if none or not base64)."""
    raw = _dict(obj.get("status")).get("certificate")
    try:
        return base64.b64decode(raw, validate=True) if isinstance(raw, str) else b""
    except ValueError:
        return b""


def csr_conditions(obj: dict, kind: str) -> list[dict]:
    return [c for c in _list(_dict(obj.get("status")).get("conditions"))
            if isinstance(c, dict) and c.get("type") == kind]  # fmt: skip


def csr_has_condition(obj: dict, kind: str) -> bool:
    """Whether the CSR has a ``kind`` condition that is True (Approved, Denied, Failed
    are only ever True)."""
    return any(c.get("status") == "True" for c in csr_conditions(obj, kind))


def _certificate_problem(pem: bytes) -> str:
    """Kubernetes' validateCertificate: one or more CERTIFICATE blocks, no headers, each
    a certificate; "" if none or fine."""
    if not pem:
        return ""
    blocks = pem_blocks(pem)
    if not blocks:
        return "must contain at least one CERTIFICATE PEM block"
    for kind, der in blocks:
        if kind != "CERTIFICATE":
            return f'only CERTIFICATE PEM blocks are allowed, found "{kind}"'
        if not der:
            return "no PEM block headers are permitted"
        try:
            x509.load_der_x509_certificate(der)
        except ValueError:
            return "x509: malformed certificate"
    return ""


def validate_signer_name(path: Path, name: Any) -> list[FieldError]:
    """Kubernetes' ValidateSignerName: ``<domain with a dot>/<path of DNS subdomains>``,
    at most 571 characters."""
    if not name:
        return [FieldError.required(path)]
    if not isinstance(name, str):
        return [FieldError.type_invalid(path, name, "string")]
    segments = name.split("/")
    if len(segments) != 2:
        return [FieldError.invalid(path, name, "must be a fully qualified domain and path of "
                                   "the form 'example.com/signer-name'")]  # fmt: skip
    domain, rest = segments
    errors: list[FieldError] = []
    if len(domain) > 253:
        errors.append(FieldError.too_long(path, 253))
    labels = domain.split(".")
    for label in labels:
        problems = is_dns1123_label(label)
        if problems:
            errors += [FieldError.invalid(path, domain, f'validating label "{label}": {m}')
                       for m in problems]  # fmt: skip
            break
    if len(labels) < 2:
        errors.append(FieldError.invalid(path, domain, "should be a domain with at least two "
                                         "segments separated by dots"))  # fmt: skip
    for label in rest.split("."):
        problems = is_dns1123_subdomain(label)
        if problems:
            errors += [FieldError.invalid(path, rest, f'validating label "{label}": {m}')
                       for m in problems]  # fmt: skip
            break
    if len(name) > 253 + 63 + 1 + 253 + 1:
        errors.append(FieldError.too_long(path, 571))
    return errors


def _usage_errors(spec: dict, old_spec: dict) -> list[FieldError]:
    path = Path("spec").child("usages")
    usages, old_usages = _list(spec.get("usages")), _list(old_spec.get("usages"))
    if not usages:
        return [FieldError.required(path)]
    errors: list[FieldError] = []
    if not any(u not in KEY_USAGES for u in old_usages):  # tolerated if already stored
        errors += [_not_supported(path.index(i), u, KEY_USAGES)
                   for i, u in enumerate(usages) if u not in KEY_USAGES]  # fmt: skip
    if len(set(map(str, old_usages))) == len(old_usages):
        seen: set[str] = set()
        for i, usage in enumerate(usages):
            if str(usage) in seen:
                errors.append(_duplicate(path.index(i), usage))
            seen.add(str(usage))
    return errors


def _condition_errors(status: dict, old_status: dict) -> list[FieldError]:
    """validateConditions: each condition has a type and a status (True only for
    Approved, Denied and Failed), one of each type, never both Approved and Denied (each
    tolerated where the stored object already has it)."""
    old = _list(old_status.get("conditions"))
    old_types = [c.get("type") for c in old if isinstance(c, dict)]
    allow_both = APPROVED in old_types and DENIED in old_types
    allow_duplicates = len(set(old_types)) < len(old_types)
    allow_empty = "" in old_types or None in old_types
    errors: list[FieldError] = []
    seen: set = set()
    approved = denied = False
    for i, c in enumerate(_list(status.get("conditions"))):
        at = _CONDITIONS.index(i)
        if not isinstance(c, dict):
            errors.append(FieldError.type_invalid(at, c, "object"))
            continue
        kind, state = c.get("type") or "", c.get("status") or ""
        if not kind and not allow_empty:
            errors.append(FieldError.required(at.child("type")))
        allowed = ("True",) if kind in (APPROVED, DENIED, FAILED) else ("True", "False", "Unknown")
        if not state:
            errors.append(FieldError.required(at.child("status")))
        elif state not in allowed:
            errors.append(_not_supported(at.child("status"), state, allowed))
        if not allow_both and kind in (APPROVED, DENIED):
            if (kind == APPROVED and denied) or (kind == DENIED and approved):
                errors.append(FieldError.invalid(at.child("type"), kind, "Approved and Denied "
                                                 "conditions are mutually exclusive"))  # fmt: skip
            approved, denied = approved or kind == APPROVED, denied or kind == DENIED
        if not allow_duplicates:
            if kind in seen:
                errors.append(_duplicate(at.child("type"), kind))
            seen.add(kind)
    return errors


def validate_csr(obj: dict, old: dict | None) -> list[FieldError]:
    """validateCertificateSigningRequest, and on update the rules every path shares
    (Approved, Denied and Failed conditions are never removed); what only a subresource
    may change is ``csr_subresource_errors``'. Problems the stored object already has
    are tolerated, as Kubernetes tolerates them for compatibility."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    old_spec, old_status = _dict((old or {}).get("spec")), _dict((old or {}).get("status"))
    errors: list[FieldError] = []
    try:
        parse_csr(csr_request(obj))
    except InvalidCSR as e:
        errors.append(FieldError.invalid(Path("spec").child("request"), spec.get("request"),
                                         str(e)))  # fmt: skip
    errors += _usage_errors(spec, old_spec)
    signer = spec.get("signerName")
    signer_path = Path("spec").child("signerName")
    if signer == LEGACY_UNKNOWN_SIGNER and old_spec.get("signerName") != signer:
        errors.append(FieldError.invalid(signer_path, signer, "the legacy signerName is not "
                                         "allowed via this API version"))  # fmt: skip
    elif signer != LEGACY_UNKNOWN_SIGNER:
        errors += validate_signer_name(signer_path, signer)
    seconds = spec.get("expirationSeconds")
    seconds_path = Path("spec").child("expirationSeconds")
    if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
        errors.append(FieldError.type_invalid(seconds_path, seconds, "integer"))
    elif seconds is not None and seconds < MIN_EXPIRATION_SECONDS:
        errors.append(FieldError.invalid(seconds_path, seconds, "may not specify a duration "
                                         "less than 600 seconds (10 minutes)"))  # fmt: skip
    errors += _condition_errors(status, old_status)
    certificate = csr_certificate(obj)
    unchanged = old is not None and certificate == csr_certificate(old)
    stored_bad = old is not None and bool(_certificate_problem(csr_certificate(old)))
    problem = "" if unchanged or stored_bad else _certificate_problem(certificate)
    if problem:
        errors.append(FieldError.invalid(_CERTIFICATE, "<certificate data>", problem))
    if old is not None:
        for kind in (APPROVED, DENIED, FAILED):
            if len(csr_conditions(obj, kind)) < len(csr_conditions(old, kind)):
                errors.append(FieldError.forbidden(_CONDITIONS, f'updates may not remove a '
                                                   f'condition of type "{kind}"'))  # fmt: skip
    return errors


def csr_subresource_errors(new: dict, old: dict, subresource: str) -> list[FieldError]:
    """What an update through ``subresource`` ("" for the object itself, "status",
    "approval") may not change: Approved and Denied conditions only through approval,
    the certificate only through status, once, and (beyond Kubernetes, which leaves it
    to signers) only on an approved request."""
    errors: list[FieldError] = []
    if subresource != "approval":
        for kind in (APPROVED, DENIED):
            before, after = csr_conditions(old, kind), csr_conditions(new, kind)
            if len(after) > len(before):
                errors.append(FieldError.forbidden(_CONDITIONS, f'updates may not add a '
                                                   f'condition of type "{kind}"'))  # fmt: skip
            elif len(after) == len(before) and after != before:
                errors.append(FieldError.forbidden(_CONDITIONS, f'updates may not modify a '
                                                   f'condition of type "{kind}"'))  # fmt: skip
    certificate, before = csr_certificate(new), csr_certificate(old)
    if certificate != before:
        if subresource != "status":
            errors.append(FieldError.forbidden(_CERTIFICATE, "updates may not set certificate "
                                               "content"))  # fmt: skip
        elif before:
            errors.append(FieldError.forbidden(_CERTIFICATE, "updates may not modify existing "
                                               "certificate content"))  # fmt: skip
        elif not csr_has_condition(old, APPROVED) or csr_has_condition(old, DENIED):
            errors.append(FieldError.forbidden(_CERTIFICATE, "a certificate may only be set "
                                               "on an approved request"))  # fmt: skip
    return errors


def csr_prepare_create(obj: dict, user: UserInfo) -> dict:
    """PrepareForCreate: who asks is the API server's to say, never the client's
    (username, uid, groups, extra from the authenticated requester), and a new request
    has no status (nobody creates a pre-approved request)."""
    if obj.get("spec") is not None and not isinstance(obj.get("spec"), dict):
        return obj  # left for decoding to refuse
    spec = {k: v for k, v in _dict(obj.get("spec")).items()
            if k not in ("username", "uid", "groups", "extra")}  # fmt: skip
    spec["username"] = user.name
    if user.uid:
        spec["uid"] = user.uid
    if user.groups:
        spec["groups"] = list(user.groups)
    if user.extra:
        spec["extra"] = {key: list(values) for key, values in user.extra}
    return {**{k: v for k, v in obj.items() if k != "status"}, "spec": spec}


def _condition_timestamps(conditions: list, old_conditions: list, now: str) -> list:
    """populateConditionTimestamps (and v1's default status True): a condition without
    lastUpdateTime gets now; one without lastTransitionTime keeps the stored one of the
    same type and status, else now."""
    out = []
    for c in conditions:
        if not isinstance(c, dict):
            out.append(c)
            continue
        c = {**c, "status": c.get("status") or "True"}
        c.setdefault("lastUpdateTime", now)
        if not c.get("lastTransitionTime"):
            same = [o.get("lastTransitionTime") for o in old_conditions if isinstance(o, dict)
                    and (o.get("type"), o.get("status")) == (c.get("type"), c["status"])
                    and o.get("lastTransitionTime")]  # fmt: skip
            c["lastTransitionTime"] = same[0] if same else now
        out.append(c)
    return out


def csr_prepare_update(new: dict, old: dict, subresource: str, now: str) -> dict:
    """PrepareForUpdate of the CSR strategies: the spec never changes; the object
    itself keeps its status; status keeps the stored Approved and Denied conditions
    (when as many are given); approval changes the conditions only. Conditions get
    their timestamps (``now``, RFC 3339)."""
    spec = old.get("spec")
    if subresource == "":
        return {**new, "spec": spec, "status": old.get("status") or {}}
    old_status = _dict(old.get("status"))
    old_conditions = _list(old_status.get("conditions"))
    status = _dict(new.get("status"))
    conditions = _list(status.get("conditions"))
    if subresource == "status":
        conditions = list(conditions)
        for kind in (APPROVED, DENIED):
            stored = [c for c in old_conditions if isinstance(c, dict) and c.get("type") == kind]
            places = [i for i, c in enumerate(conditions)
                      if isinstance(c, dict) and c.get("type") == kind]  # fmt: skip
            if len(stored) == len(places):
                for i, c in zip(places, stored, strict=True):
                    conditions[i] = c
        status = {**status, "conditions": _condition_timestamps(conditions, old_conditions, now)}
    else:  # approval
        conditions = _condition_timestamps(conditions, old_conditions, now)
        status = {**old_status, "conditions": conditions}
    if not status.get("conditions"):
        status = {k: v for k, v in status.items() if k != "conditions"}
    return {**new, "spec": spec, "status": status}


def csr_fields(obj: dict) -> dict[str, str]:
    """The field a CSR list may select on beyond its name (spec.signerName)."""
    return {"spec.signerName": str(_dict(obj.get("spec")).get("signerName", ""))}
