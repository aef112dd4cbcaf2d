"""The API server's handler, with CertificateSigningRequests' writes (see ``_csr``'s
rules: the requester, the subresources' strategies, ``approval``, and the certificate
admission plugins)."""

from __future__ import annotations

import attrs
from cryptography.x509.oid import NameOID

from . import _bodies as bodies
from . import _errors as errors
from ._csr import (
    CERTIFICATES,
    CSRS,
    KUBE_APISERVER_CLIENT_SIGNER,
    InvalidCSR,
    csr_certificate,
    csr_prepare_create,
    csr_prepare_update,
    csr_request,
    csr_subresource_errors,
    parse_csr,
)
from ._handler import Handler
from ._meta import meta, rfc3339
from ._rbac import SYSTEM_MASTERS, Attributes, UserInfo
from ._registry import ResourceType
from ._validation import as_dict, as_list


class CsrHandler(Handler):
    """The API server's handler, with CertificateSigningRequests' writes (see the
    module rules)."""

    async def _serve(self, req, user: UserInfo, warnings: list[str]):
        if req.path or (req.group, req.resource) != (CERTIFICATES, CSRS):
            return await super()._serve(req, user, warnings)
        if req.verb == "patch" and req.content_type == bodies.APPLY_PATCH:
            raise errors.method_not_allowed("server-side apply is not served for "
                                            "certificatesigningrequests")  # fmt: skip
        if req.verb == "create" and not req.subresource and isinstance(req.body, dict):
            body = csr_prepare_create(req.body, user)
            _restrict_subject(req.name or meta(body).get("name", ""), body)
            return await super()._serve(attrs.evolve(req, body=body), user, warnings)
        if req.verb in ("update", "patch") and req.subresource in ("", "status", "approval"):
            return await self._csr_update(req, user, warnings), 200, None
        if req.subresource == "approval":
            raise errors.method_not_allowed(f"{CSRS}/approval accepts update and patch")
        return await super()._serve(req, user, warnings)

    async def _csr_update(self, req, user: UserInfo, warnings: list[str]) -> dict:
        rt = self.registry.resource(req.group, req.resource)
        view = self.registry.at_version(rt, req.version)
        if view is None:
            raise errors.no_route()
        subresource = req.subresource

        def make(current: dict) -> dict:
            if req.verb == "update":
                if not isinstance(req.body, dict):
                    raise errors.bad_request("the request body must be an object")
                new = req.body
            else:
                shown = view.from_storage(current)
                new = bodies.patched(self.schema, view, req.content_type, req.body, shown)
            # Decoding's refusals, as Kubernetes' (the strategies below take the shapes).
            status_ = new.get("status")
            if status_ is not None and not isinstance(status_, dict):
                raise errors.bad_request("status: must be an object")
            conditions = (status_ or {}).get("conditions")
            if conditions is not None and not isinstance(conditions, list):
                raise errors.bad_request("status.conditions: must be a list")
            new = csr_prepare_update(new, current, subresource, rfc3339(self.clock()))
            problems = csr_subresource_errors(new, current, subresource)
            if problems:
                raise errors.invalid(rt.kind, rt.group, req.name, problems)
            self._admit_csr(rt, user, new, current, subresource)
            return new

        # The approval is written as a status is (all of the status, spec kept).
        stored = attrs.evolve(req, subresource="status") if subresource == "approval" else req
        return await self._update(rt, stored, make, warnings, view=view)

    def _admit_csr(self, rt: ResourceType, user: UserInfo, new: dict, old: dict,
                   subresource: str) -> None:  # fmt: skip
        """CertificateApproval and CertificateSigning (the latter for any change of the
        status subresource's certificate or conditions: a Failed condition is a
        signer's to set)."""
        signer = str((old.get("spec") or {}).get("signerName", ""))
        name = meta(old).get("name", "")
        if subresource == "approval":
            verb = "approve"
        elif csr_certificate(new) != csr_certificate(old) or _conditions(new) != _conditions(old):
            verb = "sign"
        else:
            return
        if not self._signer_allowed(user, verb, signer):
            raise errors.namespace_forbidden(CSRS, CERTIFICATES, name, f"user not permitted to "
                                             f'{verb} requests with signerName "{signer}"')

    def _signer_allowed(self, user: UserInfo, verb: str, signer: str) -> bool:
        """IsAuthorizedForSignerName: ``verb`` on the signer, or on every signer of its
        domain (``<domain>/*``)."""
        for name in (signer, signer.split("/", 1)[0] + "/*"):
            asked = Attributes(user, verb, api_group=CERTIFICATES, api_version="*",
                               resource="signers", name=name)  # fmt: skip
            if self.authorizer.authorize(asked).allowed:
                return True
        return False


def _conditions(csr: dict) -> list:
    return as_list(as_dict(csr.get("status")).get("conditions"))


def _restrict_subject(name: str, csr: dict) -> None:
    """CertificateSubjectRestriction: kubernetes.io/kube-apiserver-client does not make
    members of system:masters (a request that does not parse, or a spec that is not an
    object, is validation's to refuse)."""
    if as_dict(csr.get("spec")).get("signerName") != KUBE_APISERVER_CLIENT_SIGNER:
        return
    try:
        request = parse_csr(csr_request(csr))
    except InvalidCSR:
        return
    organizations = request.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if any(o.value == SYSTEM_MASTERS for o in organizations):
        raise errors.namespace_forbidden(CSRS, CERTIFICATES, name, "use of "
                                         f"{KUBE_APISERVER_CLIENT_SIGNER} signer with "
                                         f"{SYSTEM_MASTERS} group is not allowed")
