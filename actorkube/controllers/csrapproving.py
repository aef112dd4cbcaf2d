"""The CSR approver: approves node client certificate requests that their requester is
allowed to have approved (kube-controller-manager's csrapproving controller).

Rules of this file:

- An informer on CertificateSigningRequests; a pending request (no certificate, not
  approved, not denied) is looked at.
- A request the core recognizes (``_certificates.recognized``: ``selfnodeclient`` for
  a node renewing its own certificate, then ``nodeclient``) is approved when a
  SubjectAccessReview, asked of the API server, says its requester (the CSR's
  username, uid, groups and extra) may ``create`` that subresource. The approval is
  written through ``certificatesigningrequests/approval`` on the version read.
- A request recognized but not allowed fails the sync, as Kubernetes' ignorable error
  does: it comes back with backoff (a binding may yet allow it). Anything else is left
  to people (``kubectl certificate approve``).
"""

from __future__ import annotations

from actorkube.apiserver._csr import CERTIFICATES
from actorkube.apiserver._meta import rfc3339
from actorkube.client import InformerFactory

from . import _certificates as certificates
from ._controller import Controller
from ._fields import meta as _meta

CONTROLLER_NAME = "csrapproving"
CSRS = "certificatesigningrequests"


class NotAllowed(Exception):
    """A recognized request whose requester may not have it approved (yet)."""


class CSRApprovingController(Controller):
    """The CSR approver (see the module rules)."""

    name = CONTROLLER_NAME

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.csrs = factory.informer(CSRS, group=CERTIFICATES)
        self.csrs.add_handler(self._changed, lambda old, new: self._changed(new))

    def _changed(self, csr: dict) -> None:
        if certificates.is_pending(csr):
            self.enqueue(_meta(csr).get("name", ""))

    async def reconcile(self, key: str) -> None:
        csr = self.csrs.get(key)
        if csr is None or not certificates.is_pending(csr):
            return
        request = certificates.request_of(csr, key)
        tried = []
        for subresource, message in certificates.recognized(csr, request):
            tried.append(subresource)
            review = await self.client.create("subjectaccessreviews",
                                              certificates.access_review(csr, subresource),
                                              group="authorization.k8s.io")  # fmt: skip
            if (review.get("status") or {}).get("allowed"):
                approval = certificates.condition(certificates.APPROVED, "AutoApproved", message,
                                                  rfc3339(self.system.clock.now()))  # fmt: skip
                await self.client.update(CSRS, certificates.with_condition(csr, approval),
                                         group=CERTIFICATES, subresource="approval")  # fmt: skip
                return
        if tried:
            raise NotAllowed(f'recognized csr "{key}" as {tried} but subject access review was '
                             "not approved")
