"""Object metadata as the API server maintains it (pure functions over JSON-like dicts).

Rules of this file:

- Objects are plain dicts in Kubernetes' JSON shape (apiVersion, kind, metadata, spec,
  status). Functions here never mutate their arguments: they return new dicts (copies
  are shallow except where a nested dict is changed).
- The server owns uid, creationTimestamp, resourceVersion, generation and
  deletionTimestamp: what a client sends in those fields is replaced, as Kubernetes'
  ``BeforeCreate`` / ``BeforeUpdate`` do.
- Timestamps are RFC 3339 in UTC with second precision (``2026-11-26T07:12:08Z``), from
  the actor system's wall clock, never ``time.time()``.
"""

from __future__ import annotations

import datetime
import functools
import math
import random
from typing import Any

# Kubernetes' generateName alphabet: no vowels (no words), no 0/1/3 (confusable).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
GENERATED_SUFFIX = 5

SERVER_OWNED = ("uid", "creationTimestamp", "resourceVersion", "deletionTimestamp",
                "deletionGracePeriodSeconds", "generation", "selfLink")  # fmt: skip


def rfc3339(seconds: float) -> str:
    """``seconds`` since the epoch as Kubernetes writes a metav1.Time."""
    return _rfc3339_second(int(seconds))


@functools.lru_cache(maxsize=64)
def _rfc3339_second(second: int) -> str:
    # Every request stamps a few times (audit, managedFields, conditions), mostly within
    # the same second; formatting a datetime costs microseconds each time.
    moment = datetime.datetime.fromtimestamp(second, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(seconds: float) -> str:
    """``seconds`` since the epoch as Kubernetes writes a metav1.MicroTime."""
    # The second's text is cached; the microseconds are rounded as datetime rounds a
    # timestamp (half to even, carried into the second). Every Lease renewal stamps one.
    frac, whole = math.modf(seconds)
    micros = round(frac * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    return f"{_rfc3339_second(int(whole))[:-1]}.{micros:06d}Z"


def parse_rfc3339(text: object) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp (``rfc3339``'s or
    ``rfc3339_micro``'s form, or any offset); None for anything else (a missing or
    malformed time is Go's zero time to the callers)."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def generate_name(prefix: str, rng: random.Random) -> str:
    """``prefix`` plus five random characters, as the name generator of Kubernetes
    (the prefix is cut so that the whole name stays within 63 characters)."""
    room = 63 - GENERATED_SUFFIX
    suffix = "".join(rng.choice(_NAME_ALPHABET) for _ in range(GENERATED_SUFFIX))
    return prefix[:room] + suffix


def meta(obj: dict) -> dict:
    """The object's metadata (an empty dict if it has none or it is not a dict)."""
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def with_meta(obj: dict, **fields: Any) -> dict:
    """A copy of ``obj`` with metadata fields set (None removes one)."""
    new = dict(obj)
    m = dict(meta(obj))
    for name, value in fields.items():
        if value is None:
            m.pop(name, None)
        else:
            m[name] = value
    new["metadata"] = m
    return new


def prepare_for_create(obj: dict, *, uid: str, now: float, generation: bool) -> dict:
    """What the server writes for a new object: server-owned fields replaced, uid and
    creationTimestamp set, generation 1 if the resource tracks it."""
    m = {k: v for k, v in meta(obj).items() if k not in SERVER_OWNED}
    m["uid"] = uid
    m["creationTimestamp"] = rfc3339(now)
    if generation:
        m["generation"] = 1
    new = dict(obj)
    new["metadata"] = m
    return new


def spec_of(obj: dict) -> dict:
    """Everything but metadata and status: what a change of bumps the generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def prepare_for_update(new: dict, old: dict, *, generation: bool) -> dict:
    """``new`` with the server-owned fields of ``old`` carried over (a client cannot
    change uid, creationTimestamp or deletionTimestamp by an update), and the
    generation bumped if the spec changed."""
    m = dict(meta(new))
    old_meta = meta(old)
    for name in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if name in old_meta:
            m[name] = old_meta[name]
        else:
            m.pop(name, None)
    m.pop("selfLink", None)
    if generation:
        m["generation"] = old_meta.get("generation", 1) + (spec_of(new) != spec_of(old))
    else:
        m.pop("generation", None)
    result = dict(new)
    result["metadata"] = m
    return result
