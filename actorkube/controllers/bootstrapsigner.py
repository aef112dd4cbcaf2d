"""The bootstrap signer: signs the ConfigMap kube-public/cluster-info with every
bootstrap token meant for signing, so that a joining node holding a token can trust
what it reads there (kube-controller-manager's bootstrap-signer controller).

Rules of this file:

- Informers on that one ConfigMap and on the token Secrets of kube-system (type
  ``bootstrap.kubernetes.io/token``); any change of either enqueues the one key.
- A Secret signs when its name is ``bootstrap-token-<id>``, it holds that ``token-id``
  and a ``token-secret``, says ``usage-bootstrap-signing: "true"`` and has not expired
  (Kubernetes' validateSecretForSigning).
- The ConfigMap's ``jws-kubeconfig-<id>`` entries are exactly those tokens' detached
  JWS over its ``kubeconfig`` entry (``_jws``): new ones added, changed ones replaced,
  stale ones removed; nothing is written when nothing changes, and nothing at all
  without a ``kubeconfig``. The update names the version read (a conflict retries).
- A token expires by the clock: the key comes back when the first signing token
  expires, so its signature goes even before the token cleaner deletes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from actorkube.apiserver import ApiError
from actorkube.apiserver._authn import (
    BOOTSTRAP_TOKEN_ID_KEY,
    BOOTSTRAP_TOKEN_NAMESPACE,
    BOOTSTRAP_TOKEN_SECRET_KEY,
    BOOTSTRAP_TOKEN_TYPE,
    BOOTSTRAP_USAGE_SIGNING,
    bootstrap_token_expired,
    bootstrap_token_expires,
    bootstrap_token_id,
    secret_value,
)
from actorkube.client import InformerFactory

from ._controller import Controller
from ._fields import meta as _meta
from ._jws import detached_signature

CONTROLLER_NAME = "bootstrap-signer"
CLUSTER_INFO_NAMESPACE = "kube-public"
CLUSTER_INFO = "cluster-info"
KUBECONFIG_KEY = "kubeconfig"
SIGNATURE_PREFIX = "jws-kubeconfig-"
KEY = f"{CLUSTER_INFO_NAMESPACE}/{CLUSTER_INFO}"


def signing_token(secret: Mapping[str, Any], now: float) -> tuple[str, str] | None:
    """(token id, token secret) if ``secret`` may sign now (see the module rules)."""
    named = bootstrap_token_id(_meta(secret).get("name", ""))
    token_id = secret_value(dict(secret), BOOTSTRAP_TOKEN_ID_KEY)
    token_secret = secret_value(dict(secret), BOOTSTRAP_TOKEN_SECRET_KEY)
    if named is None or not token_id or named != token_id or not token_secret:
        return None
    if bootstrap_token_expired(dict(secret), now):
        return None
    if secret_value(dict(secret), BOOTSTRAP_USAGE_SIGNING) != "true":
        return None
    return token_id, token_secret


def signed_data(data: Mapping[str, str], tokens: Mapping[str, str]) -> dict[str, str] | None:
    """The ConfigMap's data with a signature for each of ``tokens`` (id -> secret) and
    no other; None when it has no kubeconfig or its signatures are already these."""
    content = data.get(KUBECONFIG_KEY)
    if content is None:
        return None
    wanted = {SIGNATURE_PREFIX + token_id: detached_signature(content, token_id, secret)
              for token_id, secret in tokens.items()}  # fmt: skip
    kept = {k: v for k, v in data.items() if not k.startswith(SIGNATURE_PREFIX)}
    new = {**kept, **wanted}
    return None if new == dict(data) else new


def next_expiry(secrets: Iterable[Mapping[str, Any]], now: float) -> float | None:
    """When the first of the signing tokens expires (None if none ever does)."""
    times = [bootstrap_token_expires(dict(s)) for s in secrets if signing_token(s, now)]
    times = [t for t in times if t is not None]
    return min(times) if times else None


class BootstrapSigner(Controller):
    """The bootstrap signer (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server, *, token: str, workers: int = 1) -> None:
        super().__init__(server, token=token, workers=workers)

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.config_maps = factory.informer("configmaps", namespace=CLUSTER_INFO_NAMESPACE,
                                            field_selector=f"metadata.name={CLUSTER_INFO}")
        self.secrets = factory.informer("secrets", namespace=BOOTSTRAP_TOKEN_NAMESPACE,
                                        field_selector=f"type={BOOTSTRAP_TOKEN_TYPE}")
        for informer in (self.config_maps, self.secrets):
            informer.add_handler(lambda obj: self.enqueue(KEY),
                                 lambda old, new: self.enqueue(KEY),
                                 lambda obj: self.enqueue(KEY))  # fmt: skip

    def now(self) -> float:
        return self.system.clock.now()

    async def reconcile(self, key: str) -> None:
        now = self.now()
        secrets = self.secrets.list()
        expiry = next_expiry(secrets, now)
        if expiry is not None:
            self.requeue_after(KEY, max(expiry - now, 0.0) + 0.001)
        config_map = self.config_maps.get(KEY)
        if config_map is None:
            return
        tokens = dict(filter(None, (signing_token(s, now) for s in secrets)))
        data = signed_data(config_map.get("data") or {}, tokens)
        if data is None:
            return
        try:
            await self.client.update("configmaps", {**config_map, "data": data},
                                     namespace=CLUSTER_INFO_NAMESPACE)  # fmt: skip
        except ApiError as e:
            if e.code != 404:  # gone: nothing to sign; a conflict retries on the newer one
                raise
