"""The CSR signer: issues certificates for approved requests of Kubernetes' signers,
with the cluster's CA (kube-controller-manager's csrsigning controllers, one
controller here for the signers it is given).

Rules of this file:

- An informer on CertificateSigningRequests; a request for one of ``signers`` that is
  approved, not denied, not failed and has no certificate is looked at.
- A request the signer refuses (``_certificates.signer_problem``: a node client
  request that is not one, usages a client certificate may not have) gets the
  condition Failed, reason SignerValidationFailure, with the reason why; one it accepts
  gets ``status.certificate`` (``_certificates.sign``), valid for
  min(``expirationSeconds``, ``duration``) and at least 10 minutes. Both are written
  through the status subresource on the version read (a conflict retries).
- ``ca`` is the cluster CA (certificate and key, PEM); the certificates it issues are
  those the API server's x509 authenticator accepts.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from actorkube.actor import ActorRef
from actorkube.apiserver._csr import (
    CERTIFICATES,
    KUBE_APISERVER_CLIENT_SIGNER,
    KUBELET_CLIENT_SIGNER,
    KUBELET_SERVING_SIGNER,
)
from actorkube.apiserver._meta import rfc3339
from actorkube.client import InformerFactory
from actorkube.pki import KeyPair

from . import _certificates as certificates
from ._controller import Controller
from ._fields import meta as _meta

CONTROLLER_NAME = "csrsigning"
CSRS = "certificatesigningrequests"
SIGNERS = (KUBELET_CLIENT_SIGNER, KUBE_APISERVER_CLIENT_SIGNER, KUBELET_SERVING_SIGNER)


class CSRSigningController(Controller):
    """The CSR signer (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, ca: KeyPair,
                 duration: float = certificates.YEAR, signers: Iterable[str] = SIGNERS,
                 workers: int = 5) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers)
        self.ca = ca
        self.duration = duration
        self.signers = frozenset(signers)

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.csrs = factory.informer(CSRS, group=CERTIFICATES)
        self.csrs.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, csr: dict) -> None:
        if self._mine(csr):
            self.enqueue(_meta(csr).get("name", ""))

    def _mine(self, csr: dict) -> bool:
        signer = (csr.get("spec") or {}).get("signerName")
        return signer in self.signers and certificates.needs_signing(csr)

    async def reconcile(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or not self._mine(csr):
            return
        request = certificates.request_of(csr, key)
        spec = csr.get("spec") or {}
        now = self.system.clock.now()
        problem = certificates.signer_problem(spec["signerName"], request, csr)
        if problem:
            failed = certificates.condition(certificates.FAILED, "SignerValidationFailure",
                                            problem, rfc3339(now))  # fmt: skip
            await self.client.update_status(CSRS, certificates.with_condition(csr, failed),
                                            group=CERTIFICATES)  # fmt: skip
            return
        lifetime = certificates.duration(spec.get("expirationSeconds"), self.duration)
        pem = certificates.sign(self.ca, request, [str(u) for u in spec.get("usages") or ()],
                                lifetime, now)  # fmt: skip
        status = {**(csr.get("status") or {}), "certificate": base64.b64encode(pem).decode()}
        await self.client.update_status(CSRS, {**csr, "status": status}, group=CERTIFICATES)
