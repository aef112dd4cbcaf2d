"""JSON for the hot paths (objects stored in etcd, watch events, the client's watch
streams): orjson, several times faster than the standard library, with its exact
output where both can write a value.

Rules of this file:

- ``dumps(obj) -> bytes``: compact JSON (no spaces), non-ASCII written as UTF-8. A
  value orjson refuses (an integer beyond 64 bits, a non-string key) is written by the
  standard library instead, so nothing that ``json.dumps`` accepts fails here.
- ``loads(data) -> Any``: as ``json.loads``, except that an integer beyond 64 bits
  comes back as a float, as Go's decoder (kube-apiserver's) makes it a float64; typed
  fields never hold one (the API server refuses them on the way in).
- NaN and the infinities are not JSON: the API server refuses them in bodies, and
  ``loads`` refuses them with a ``ValueError`` (``json.JSONDecodeError``).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


loads = orjson.loads
