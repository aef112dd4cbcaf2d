"""The token cleaner: deletes bootstrap-token Secrets once they expire
(kube-controller-manager's token-cleaner controller).

Rules of this file:

- An informer on the token Secrets of kube-system (type
  ``bootstrap.kubernetes.io/token``). A Secret with an ``expiration`` is looked at; one
  that has not expired comes back when it does (Kubernetes' AddAfter of the time
  remaining), so it goes at its expiration, not at the next periodic pass. An
  expiration that does not parse counts as expired, as Kubernetes treats it.
- The delete carries the Secret's uid as a precondition: a token Secret made again
  under the same name is never taken. Gone already, or another uid: done.
"""

from __future__ import annotations

from actorkube.apiserver import ApiError
from actorkube.apiserver._authn import (
    BOOTSTRAP_TOKEN_NAMESPACE,
    BOOTSTRAP_TOKEN_TYPE,
    bootstrap_token_expires,
)
from actorkube.client import InformerFactory, object_key

from ._controller import Controller
from ._fields import meta as _meta

CONTROLLER_NAME = "token-cleaner"


class TokenCleaner(Controller):
    """The token cleaner (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server, *, token: str, workers: int = 1) -> None:
        super().__init__(server, token=token, workers=workers)

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.secrets = factory.informer("secrets", namespace=BOOTSTRAP_TOKEN_NAMESPACE,
                                        field_selector=f"type={BOOTSTRAP_TOKEN_TYPE}")
        self.secrets.add_handler(lambda obj: self.enqueue(object_key(obj)),
                                 lambda old, new: self.enqueue(object_key(new)))  # fmt: skip

    def now(self) -> float:
        return self.system.clock.now()

    async def reconcile(self, key: str) -> None:
        secret = self.secrets.get(key)
        if secret is None:
            return
        expires = bootstrap_token_expires(secret)
        if expires is None:
            return
        left = expires - self.now()
        if left > 0:
            self.requeue_after(key, left)
            return
        m = _meta(secret)
        try:
            await self.client.delete("secrets", m.get("name", ""), namespace=m.get("namespace", ""),
                                     uid=m.get("uid", ""))  # fmt: skip
        except ApiError as e:
            if e.code not in (404, 409):  # gone, or the name is another Secret's now
                raise
