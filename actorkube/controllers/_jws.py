"""Detached JSON Web Signatures over cluster-info, as Kubernetes' bootstrap signer makes
them and kubeadm's discovery checks them.

Rules of this file:

- A signature is a compact JWS (RFC 7515) with the payload left out (its Appendix F):
  ``<protected header>..<signature>``, both base64url without padding. The header is
  ``{"alg":"HS256","kid":"<token id>"}`` (go-jose's: keys sorted, no spaces), the key
  the token's secret, the payload the ConfigMap's ``kubeconfig`` text.
- Computing one twice gives the same text (HMAC is deterministic), so the signer
  compares signatures as strings and a verifier recomputes and compares in constant
  time.
- Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def detached_signature(content: str, token_id: str, token_secret: str) -> str:
    """The detached JWS of ``content`` for the bootstrap token ``token_id``."""
    header = _b64(json.dumps({"alg": "HS256", "kid": token_id}, separators=(",", ":")).encode())
    signing_input = f"{header}.{_b64(content.encode())}".encode()
    mac = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}..{_b64(mac)}"


def signature_is_valid(signature: str, content: str, token_id: str, token_secret: str) -> bool:
    """Whether ``signature`` is the detached JWS of ``content`` for this token."""
    expected = detached_signature(content, token_id, token_secret)
    return hmac.compare_digest(signature.encode(), expected.encode())
