"""Authentication: who a request comes from, from its client certificate or its bearer
token.

Rules of this file:

- A client certificate signed by the cluster's client CA, valid now and meant for
  client authentication, names its user (the subject's common name) and groups (its
  organizations), plus ``system:authenticated``; it is checked before any token, and
  a certificate that fails any check is 401 (kube-apiserver's x509 authenticator).
- A static token file in kube-apiserver's ``--token-auth-file`` format (CSV lines
  ``token,user,uid[,"group1,group2"]``) names users; they are put in
  ``system:authenticated`` as well.
- Service-account tokens are JWTs signed with the cluster's service-account key
  (RS256), with Kubernetes' claims: ``iss``, ``sub`` =
  ``system:serviceaccount:<namespace>:<name>``, ``aud``, ``iat``, ``nbf``, ``exp`` and
  ``kubernetes.io`` (namespace, serviceaccount name and uid). A token verifies only with
  the right key, issuer and audience, inside its lifetime; whether its service account
  still exists (same uid) is asked through ``account_exists`` so a deleted account's
  tokens stop working.
- A request with no token is anonymous (``system:anonymous`` in
  ``system:unauthenticated``) only if anonymous access is enabled; a token nobody
  recognises is always 401, never anonymous.
- Static tokens are found by their SHA-256 digest, so lookup time says nothing about
  the secret; the wall clock comes from the caller.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable, Sequence
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import _errors as errors
from ._rbac import ALL_AUTHENTICATED, UserInfo

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
# What a token may be bound to, by its claim (a bound token dies with its object).
_BOUND_KINDS = ("pod", "secret", "node")


class InvalidTokenFile(ValueError):
    """The token file is malformed (the operator's fault); the message names the line."""


def parse_token_file(text: str) -> dict[str, UserInfo]:
    """token -> user, from kube-apiserver's token file format."""
    users: dict[str, UserInfo] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 3:
            raise InvalidTokenFile(f"token file line {number}: want token,user,uid[,groups]")
        token, name, uid = (field.strip() for field in row[:3])
        if not token or not name:
            raise InvalidTokenFile(f"token file line {number}: empty token or user name")
        groups = [g.strip() for g in row[3].split(",") if g.strip()] if len(row) > 3 else []
        users[token] = UserInfo(name, uid, (*groups, ALL_AUTHENTICATED))
    return users


def new_signing_key() -> bytes:
    """A fresh RSA key for signing service-account tokens, as PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ServiceAccountTokens:
    """Issues and verifies service-account JWTs with one RSA key (PEM)."""

    def __init__(self, private_key_pem: bytes, *, issuer: str = DEFAULT_ISSUER) -> None:
        self._private = serialization.load_pem_private_key(private_key_pem, password=None)
        self._public = self._private.public_key()
        self.issuer = issuer

    def issue(
        self,
        namespace: str,
        name: str,
        uid: str,
        *,
        now: float,
        expires_in: int = 3600,
        audiences: tuple[str, ...] = (DEFAULT_AUDIENCE,),
        bound: tuple[str, str, str] | None = None,
    ) -> str:
        """A token for service account ``namespace/name`` (uid ``uid``), valid from
        ``now`` for ``expires_in`` seconds (TokenRequest's default is one hour).
        ``bound``: (kind, name, uid) of a Pod, Secret or Node the token lives no longer
        than (its claim ``kubernetes.io.<kind>``, as Kubernetes' bound tokens)."""
        info: dict[str, Any] = {"namespace": namespace,
                                "serviceaccount": {"name": name, "uid": uid}}  # fmt: skip
        if bound is not None:
            kind, bound_name, bound_uid = bound
            info[kind.lower()] = {"name": bound_name, "uid": bound_uid}
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": list(audiences),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + expires_in,
            "kubernetes.io": info,
        }
        return jwt.encode(claims, self._private, algorithm="RS256")

    def verify(self, token: str, *, now: float,
               audience: str | Sequence[str] = DEFAULT_AUDIENCE) -> dict | None:  # fmt: skip
        """The token's claims if it is ours, valid at ``now`` and for ``audience`` (or
        one of them); None otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=["RS256"],
                audience=audience,
                issuer=self.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            return None
        # Lifetime checked against the caller's clock (virtual in simulations).
        if not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return None
        info = claims.get("kubernetes.io")
        if not isinstance(info, dict) or not isinstance(info.get("serviceaccount"), dict):
            return None
        return claims


class Authenticator:
    """Bearer token -> ``UserInfo`` (see the module rules)."""

    def __init__(
        self,
        *,
        tokens: dict[str, UserInfo] | None = None,
        service_accounts: ServiceAccountTokens | None = None,
        account_exists: Callable[[str, str, str], bool] = lambda ns, name, uid: True,
        bound_exists: Callable[[str, str, str, str], bool] = lambda ns, kind, name, uid: True,
        anonymous: bool = False,
        client_ca: bytes | None = None,
        clock: Callable[[], float],
    ) -> None:
        # Looked up by the token's digest: a dict lookup on the secret itself would leak
        # through its timing how much of a guess matched.
        self._tokens = {_digest(token): user for token, user in (tokens or {}).items()}
        self.service_accounts = service_accounts
        self.account_exists = account_exists
        self.bound_exists = bound_exists
        self.anonymous = anonymous
        self.clock = clock
        self._client_ca = x509.load_pem_x509_certificate(client_ca) if client_ca else None

    def authenticate(self, token: str, certificate: bytes = b"") -> UserInfo:
        """The user of a client ``certificate`` (DER) signed by the client CA, else the
        user behind ``token``; raises 401 Unauthorized."""
        if certificate and self._client_ca is not None:
            return self._x509(certificate)
        if not token:
            if self.anonymous:
                return UserInfo.anonymous()
            raise errors.unauthorized()
        return self.review(token)[0]

    def review(self, token: str, audiences: Sequence[str] = ()) -> tuple[UserInfo, list[str]]:
        """TokenReview: the user behind ``token`` if it is valid for one of
        ``audiences`` (none: the API server's own), and those of them it is valid for.
        A static token is valid for the API server's audience only (Kubernetes wraps
        audience-agnostic authenticators so). Raises 401 Unauthorized."""
        wanted = list(audiences) or [DEFAULT_AUDIENCE]
        user = self._static(token)
        if user is not None:
            if DEFAULT_AUDIENCE not in wanted:
                raise errors.unauthorized()
            return user, [DEFAULT_AUDIENCE]
        if self.service_accounts is not None:
            claims = self.service_accounts.verify(token, now=self.clock(), audience=wanted)
            if claims is not None:
                aud = claims.get("aud")
                matched = [a for a in wanted if a in (aud if isinstance(aud, list) else [aud])]
                info: dict[str, Any] = claims["kubernetes.io"]
                namespace, account = info.get("namespace", ""), info["serviceaccount"]
                name, uid = account.get("name", ""), account.get("uid", "")
                if namespace and name and self.account_exists(namespace, name, uid) and all(
                    isinstance(info.get(kind), dict)
                    and self.bound_exists(namespace, kind, info[kind].get("name", ""),
                                          info[kind].get("uid", ""))
                    for kind in _BOUND_KINDS if kind in info
                ):  # fmt: skip
                    return UserInfo.service_account(namespace, name, uid), matched
        raise errors.unauthorized()

    def _x509(self, der: bytes) -> UserInfo:
        """Kubernetes' x509 authenticator: a certificate the client CA signed, valid now,
        for client authentication; the user is its common name, the groups its
        organizations."""
        try:
            cert = x509.load_der_x509_certificate(der)
            cert.verify_directly_issued_by(self._client_ca)
        except (ValueError, TypeError, InvalidSignature):
            raise errors.unauthorized() from None
        now = self.clock()
        if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
            raise errors.unauthorized()
        try:
            usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if ExtendedKeyUsageOID.CLIENT_AUTH not in usage:
                raise errors.unauthorized()
        except x509.ExtensionNotFound:
            pass
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if not names or not names[0].value:
            raise errors.unauthorized()
        groups = [
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ]
        return UserInfo(str(names[0].value), "", (*groups, ALL_AUTHENTICATED))

    def _static(self, token: str) -> UserInfo | None:
        return self._tokens.get(_digest(token))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
