"""The service account controller: every namespace has a ``default`` ServiceAccount,
made again if it is deleted (kube-controller-manager's serviceaccounts controller).

Rules of this file:

- Informers on Namespaces and ServiceAccounts; a namespace added or changed, or a
  ServiceAccount deleted, enqueues its namespace.
- ``reconcile(namespace)`` creates each account of ``accounts`` (``default``) the
  namespace lacks, unless the namespace is gone or terminating (Kubernetes skips those:
  a namespace being deleted must empty, not refill). AlreadyExists means someone made
  it first: done. The pod admission plugin refuses pods whose account is missing, so
  this is what lets pods run in a new namespace.
"""

from __future__ import annotations

from actorkube.apiserver import ApiError
from actorkube.client import InformerFactory

from ._controller import Controller, namespace_active

CONTROLLER_NAME = "service-account-controller"


class ServiceAccountController(Controller):
    """The service account controller (see the module rules)."""

    name = CONTROLLER_NAME
    accounts: tuple[str, ...] = ("default",)

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.namespaces = factory.informer("namespaces")
        self.service_accounts = factory.informer("serviceaccounts")
        self.namespaces.add_handler(self._namespace, lambda old, new: self._namespace(new), None)
        self.service_accounts.add_handler(None, None, self._account_deleted)

    def _namespace(self, namespace: dict) -> None:
        self.enqueue(namespace["metadata"]["name"])

    def _account_deleted(self, account: dict) -> None:
        if account["metadata"].get("name") in self.accounts:
            self.enqueue(account["metadata"].get("namespace", ""))

    async def reconcile(self, key: str) -> None:
        if not namespace_active(self.namespaces.get(key)):
            return
        for name in self.accounts:
            if self.service_accounts.get(f"{key}/{name}") is not None:
                continue
            try:
                await self.client.create("serviceaccounts", {"metadata": {"name": name}},
                                         namespace=key)  # fmt: skip
            except ApiError as e:
                if e.code != 409:  # AlreadyExists: made since the cache saw it
                    raise
