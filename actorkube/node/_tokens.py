"""The kubelet's service-account tokens for pods' projected volumes (its token manager).

Rules of this file:

- A token is asked for (TokenRequest, bound to the pod by name and uid) once per pod,
  audience and lifetime, and kept; it is asked for again once 80% of its lifetime has
  passed or it is 24 hours old, whichever comes first (Kubernetes' requiresRefresh),
  so the file a running container reads is replaced well before the token expires.
- A token whose renewal fails is used until it expires (the API server may be down for
  a while); only a pod with no valid token waits. The next sync asks again.
- ``forget(uid)`` drops a pod's tokens when the kubelet is done with the pod.
- Times are the caller's monotonic seconds.
"""

from __future__ import annotations

import attrs

MAX_AGE = 24 * 3600.0
REFRESH_FRACTION = 0.8

Key = tuple[str, str, int]  # (pod uid, audience, expirationSeconds)


@attrs.define
class _Token:
    token: str
    refresh_at: float
    expires_at: float


class TokenCache:
    """Tokens by pod, audience and lifetime (see the module rules)."""

    def __init__(self) -> None:
        self._tokens: dict[Key, _Token] = {}

    def get(self, key: Key, now: float) -> str | None:
        """The token kept for ``key``, None if there is none or it is due for refresh."""
        found = self._tokens.get(key)
        return found.token if found is not None and now < found.refresh_at else None

    def still_valid(self, key: Key, now: float) -> str | None:
        """The token kept for ``key`` if it has not expired (due for refresh or not)."""
        found = self._tokens.get(key)
        return found.token if found is not None and now < found.expires_at else None

    def put(self, key: Key, token: str, lifetime: float, now: float) -> None:
        """Keep ``token``, issued at ``now`` for ``lifetime`` seconds."""
        refresh_at = now + min(REFRESH_FRACTION * lifetime, MAX_AGE)
        self._tokens[key] = _Token(token, refresh_at, now + lifetime)

    def forget(self, uid: str) -> None:
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]

    def __len__(self) -> int:
        return len(self._tokens)
