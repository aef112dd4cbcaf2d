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
  (ES256 for an ECDSA P-256 key, what ``new_signing_key`` makes; RS256 for an RSA key,
  as kube-apiserver signs with either), with Kubernetes' claims: ``iss``, ``sub`` =
  ``system:serviceaccount:<namespace>:<name>``, ``aud``, ``iat``, ``nbf``, ``exp`` and
  ``kubernetes.io`` (namespace, serviceaccount name and uid). A token verifies only with
  the right key, issuer and audience, inside its lifetime; whether its service account
  still exists (same uid) is asked through ``account_exists`` so a deleted account's
  tokens stop working.
- Bootstrap tokens (kube-apiserver's ``--enable-bootstrap-token-auth``, always on here):
  a token ``<id>.<secret>`` (id ``[a-z0-9]{6}``, secret ``[a-z0-9]{16}``) is the user
  ``system:bootstrap:<id>`` when the Secret ``kube-system/bootstrap-token-<id>`` (asked
  through ``bootstrap_secret``) has type ``bootstrap.kubernetes.io/token``, is not being
  deleted, holds that token-id and token-secret (compared in constant time), says
  ``usage-bootstrap-authentication: "true"`` and has not expired (``expiration``,
  RFC 3339; one that does not parse has). Its groups are ``system:bootstrappers`` and
  the ``auth-extra-groups`` (comma-separated, each ``system:bootstrappers:...``; one
  that is not makes the whole token invalid), sorted, plus ``system:authenticated``.
  Like a static token it is valid for the API server's audience only.
- A request with no token is anonymous (``system:anonymous`` in
  ``system:unauthenticated``) only if anonymous access is enabled; a token nobody
  recognises is always 401, never anonymous.
- Static tokens are found by their SHA-256 digest, so lookup time says nothing about
  the secret; the wall clock comes from the caller.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import hmac
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import _errors as errors
from ._meta import parse_rfc3339
from ._rbac import ALL_AUTHENTICATED, UserInfo

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
# What a token may be bound to, by its claim (a bound token dies with its object).
_BOUND_KINDS = ("pod", "secret", "node")
_MAX_CHECKED_TOKENS = 4096  # signature checks remembered (see ServiceAccountTokens)


# Kubernetes' bootstrap token Secret format (k8s.io/cluster-bootstrap/token/api).
BOOTSTRAP_TOKEN_NAMESPACE = "kube-system"
BOOTSTRAP_TOKEN_SECRET_PREFIX = "bootstrap-token-"
EXTRA_PREFIX = "authentication.kubernetes.io/"
# A pod's projected token asked for 3607 s (the odd 7 s mark it) lives a year instead,
# as kube-apiserver's --service-account-extend-token-expiration makes it.
EXTENDED_TOKEN_SECONDS = 3607
EXTENSION_SECONDS = 365 * 24 * 3600  # a bound token's extra keys
BOOTSTRAP_TOKEN_TYPE = "bootstrap.kubernetes.io/token"
BOOTSTRAP_TOKEN_ID_KEY = "token-id"
BOOTSTRAP_TOKEN_SECRET_KEY = "token-secret"
BOOTSTRAP_TOKEN_EXPIRATION_KEY = "expiration"
BOOTSTRAP_TOKEN_EXTRA_GROUPS_KEY = "auth-extra-groups"
BOOTSTRAP_USAGE_AUTHENTICATION = "usage-bootstrap-authentication"
BOOTSTRAP_USAGE_SIGNING = "usage-bootstrap-signing"
BOOTSTRAP_USER_PREFIX = "system:bootstrap:"
BOOTSTRAP_DEFAULT_GROUP = "system:bootstrappers"
BOOTSTRAP_TOKEN = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
BOOTSTRAP_GROUP = re.compile(r"system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]")
_BOOTSTRAP_SECRET_NAME = re.compile(re.escape(BOOTSTRAP_TOKEN_SECRET_PREFIX) + r"([a-z0-9]{6})")


def secret_value(secret: dict, key: str) -> str:
    """A Secret's ``data[key]`` decoded ("" if missing or not base64 of UTF-8), as
    cluster-bootstrap's GetData reads it."""
    raw = ((secret.get("data") or {}) if isinstance(secret, dict) else {}).get(key)
    if not isinstance(raw, str):
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, ValueError):
        return ""


def bootstrap_token_id(secret_name: str) -> str | None:
    """The token id a Secret's name says (``bootstrap-token-<id>``), None if none."""
    found = _BOOTSTRAP_SECRET_NAME.fullmatch(secret_name)
    return found.group(1) if found else None


def bootstrap_token_expires(secret: dict) -> float | None:
    """When the token expires (seconds since the epoch); None if never. An
    ``expiration`` that does not parse expired at the epoch, as Kubernetes treats it."""
    text = secret_value(secret, BOOTSTRAP_TOKEN_EXPIRATION_KEY)
    if not text:
        return None
    moment = parse_rfc3339(text)
    return 0.0 if moment is None else moment


def bootstrap_token_expired(secret: dict, now: float) -> bool:
    expires = bootstrap_token_expires(secret)
    return expires is not None and now >= expires


def bootstrap_groups(secret: dict) -> tuple[str, ...] | None:
    """``system:bootstrappers`` and the token's extra groups, sorted and without
    duplicates; None if an extra group is not a bootstrap group."""
    groups = {BOOTSTRAP_DEFAULT_GROUP}
    extra = secret_value(secret, BOOTSTRAP_TOKEN_EXTRA_GROUPS_KEY)
    if extra:
        for group in extra.split(","):
            if not BOOTSTRAP_GROUP.fullmatch(group):
                return None
            groups.add(group)
    return tuple(sorted(groups))


def bootstrap_token_user(token: str, secret: dict | None, now: float) -> UserInfo | None:
    """The user of bootstrap ``token`` given its Secret (looked up by the token's id),
    or None if the Secret does not make it valid (see the module rules)."""
    parsed = BOOTSTRAP_TOKEN.fullmatch(token)
    if parsed is None or not isinstance(secret, dict):
        return None
    token_id, token_secret = parsed.groups()
    if (secret.get("metadata") or {}).get("deletionTimestamp"):
        return None
    if secret.get("type") != BOOTSTRAP_TOKEN_TYPE or not secret.get("data"):
        return None
    stored = secret_value(secret, BOOTSTRAP_TOKEN_SECRET_KEY)
    if not hmac.compare_digest(stored.encode(), token_secret.encode()):
        return None
    if secret_value(secret, BOOTSTRAP_TOKEN_ID_KEY) != token_id:
        return None
    if bootstrap_token_expired(secret, now):
        return None
    if secret_value(secret, BOOTSTRAP_USAGE_AUTHENTICATION) != "true":
        return None
    groups = bootstrap_groups(secret)
    if groups is None:
        return None
    return UserInfo(BOOTSTRAP_USER_PREFIX + token_id, "", (*groups, ALL_AUTHENTICATED))


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
    """A fresh ECDSA P-256 key for signing service-account tokens, as PEM. Not RSA: a
    kubelet asks a token for every pod it starts, and an ES256 signature costs a tenth
    of an RS256 one (0.1 ms against 1.0 ms here)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class ServiceAccountTokens:
    """Issues and verifies service-account JWTs with one key (PEM): RSA (RS256) or ECDSA
    P-256 (ES256); ``ValueError`` for another kind."""

    def __init__(self, private_key_pem: bytes, *, issuer: str = DEFAULT_ISSUER) -> None:
        self._private = serialization.load_pem_private_key(private_key_pem, password=None)
        if isinstance(self._private, rsa.RSAPrivateKey):
            self.algorithm = "RS256"
        elif (isinstance(self._private, ec.EllipticCurvePrivateKey)
              and isinstance(self._private.curve, ec.SECP256R1)):  # fmt: skip
            self.algorithm = "ES256"
        else:
            raise ValueError("the service-account key must be RSA or ECDSA P-256")
        self._public = self._private.public_key()
        self.issuer = issuer
        # What the signature check made of each token lately, by (token, audience): the
        # check is a pure function of them (and of the key and issuer), and it costs an
        # RSA verification, on every request a pod's client makes. The lifetime, which
        # depends on the time, is checked on each use.
        self._checked: dict[tuple[str, str | tuple[str, ...]], dict | None] = {}

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
        warn_after: int | None = None,
    ) -> str:
        """A token for service account ``namespace/name`` (uid ``uid``), valid from
        ``now`` for ``expires_in`` seconds (TokenRequest's default is one hour).
        ``bound``: (kind, name, uid) of a Pod, Secret or Node the token lives no longer
        than (its claim ``kubernetes.io.<kind>``, as Kubernetes' bound tokens).
        ``warn_after``: seconds after which an extended token is past the lifetime its
        requester was told (the claim ``kubernetes.io.warnafter``)."""
        info: dict[str, Any] = {"namespace": namespace,
                                "serviceaccount": {"name": name, "uid": uid}}  # fmt: skip
        if bound is not None:
            kind, bound_name, bound_uid = bound
            info[kind.lower()] = {"name": bound_name, "uid": bound_uid}
        if warn_after is not None:
            info["warnafter"] = int(now) + warn_after
        claims = {
            "iss": self.issuer,
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": list(audiences),
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now) + expires_in,
            "kubernetes.io": info,
        }
        return jwt.encode(claims, self._private, algorithm=self.algorithm)

    def verify(self, token: str, *, now: float,
               audience: str | Sequence[str] = DEFAULT_AUDIENCE) -> dict | None:  # fmt: skip
        """The token's claims if it is ours, valid at ``now`` and for ``audience`` (or
        one of them); None otherwise. The claims are shared: not to be changed."""
        claims = self._signed_claims(token, audience)
        if claims is None:
            return None
        # Lifetime checked against the caller's clock (virtual in simulations).
        if not claims.get("nbf", 0) <= now < claims.get("exp", 0):
            return None
        info = claims.get("kubernetes.io")
        if not isinstance(info, dict) or not isinstance(info.get("serviceaccount"), dict):
            return None
        return claims

    def _signed_claims(self, token: str, audience: str | Sequence[str]) -> dict | None:
        """The claims of ``token`` if it is signed with our key, by our issuer, for
        ``audience`` (or one of them), its lifetime not checked; None otherwise.
        Remembered (see ``__init__``)."""
        key = (token, audience if isinstance(audience, str) else tuple(audience))
        if key in self._checked:
            return self._checked[key]
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[self.algorithm],
                audience=audience,
                issuer=self.issuer,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
        except jwt.PyJWTError:
            claims = None
        if len(self._checked) >= _MAX_CHECKED_TOKENS:
            self._checked.clear()
        self._checked[key] = claims
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
        bootstrap_secret: Callable[[str], dict | None] = lambda name: None,
        clock: Callable[[], float],
    ) -> None:
        # Looked up by the token's digest: a dict lookup on the secret itself would leak
        # through its timing how much of a guess matched.
        self._tokens = {_digest(token): user for token, user in (tokens or {}).items()}
        self.service_accounts = service_accounts
        self.account_exists = account_exists
        self.bound_exists = bound_exists
        self.anonymous = anonymous
        self.bootstrap_secret = bootstrap_secret  # kube-system Secret by name
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
        A static or bootstrap token is valid for the API server's audience only
        (Kubernetes wraps audience-agnostic authenticators so). Raises 401 Unauthorized."""
        wanted = list(audiences) or [DEFAULT_AUDIENCE]
        user = self._static(token) or self._bootstrap(token)
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
                    # What the token is bound to, as Kubernetes tells authorizers and
                    # TokenReviews (the pod a kubelet got it for, the node).
                    extra = {f"{EXTRA_PREFIX}{kind}-{field}": [str(info[kind][field])]
                             for kind in ("pod", "node") if isinstance(info.get(kind), dict)
                             for field in ("name", "uid") if info[kind].get(field)}  # fmt: skip
                    return UserInfo.service_account(namespace, name, uid, extra), matched
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

    def _bootstrap(self, token: str) -> UserInfo | None:
        parsed = BOOTSTRAP_TOKEN.fullmatch(token)
        if parsed is None:
            return None
        secret = self.bootstrap_secret(BOOTSTRAP_TOKEN_SECRET_PREFIX + parsed.group(1))
        return bootstrap_token_user(token, secret, self.clock())


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
