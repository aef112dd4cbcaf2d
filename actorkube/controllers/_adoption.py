"""Adopting and releasing what a controller owns, through the API (Kubernetes'
ControllerRefManager): shared by every controller that owns objects by selector.

Rules of this file:

- Adoption happens only after a live read shows the owner is the one the cache has (same
  uid) and is not being deleted (RecheckDeletionTimestamp): a controller being deleted
  must not take new children the garbage collector would then have to find.
- Both are strategic merge patches of metadata.ownerReferences (merged by uid) that
  carry the child's uid as a precondition, so a child deleted and made again under the
  same name is never adopted or released by mistake.
- A child that is gone, or changed under the patch (404, 409, 422), is not an error:
  the next sync looks at it again. Other errors propagate.
"""

from __future__ import annotations

from collections.abc import Mapping

from actorkube.apiserver import ApiError
from actorkube.client import ApiClient

from ._fields import meta as _meta

SMP = "application/strategic-merge-patch+json"
_SKIPPED = (404, 409, 422)


async def can_adopt(client: ApiClient, resource: str, group: str, owner: Mapping) -> bool:
    """Whether ``owner`` (as cached) may adopt: still there, same uid, not going."""
    m = _meta(owner)
    try:
        fresh = await client.get(resource, m.get("name", ""), namespace=m.get("namespace", ""),
                                 group=group)  # fmt: skip
    except ApiError as e:
        if e.code == 404:
            return False
        raise
    fm = _meta(fresh)
    return fm.get("uid") == m.get("uid") and not fm.get("deletionTimestamp")


async def adopt(
    client: ApiClient, resource: str, group: str, child: Mapping, reference: dict
) -> dict | None:
    """Add the controller ``reference`` to ``child``; the child as written, or None if
    it was skipped (see the module rules)."""
    return await _patch(client, resource, group, child, reference)


async def release(
    client: ApiClient, resource: str, group: str, child: Mapping, owner_uid: str
) -> None:
    """Remove the ownerReference of ``owner_uid`` from ``child``."""
    await _patch(client, resource, group, child, {"$patch": "delete", "uid": owner_uid})


async def _patch(
    client: ApiClient, resource: str, group: str, child: Mapping, reference: dict
) -> dict | None:
    m = _meta(child)
    patch = {"metadata": {"ownerReferences": [reference], "uid": m.get("uid")}}
    try:
        return await client.patch(resource, m.get("name", ""), patch,
                                  namespace=m.get("namespace", ""), group=group,
                                  content_type=SMP)  # fmt: skip
    except ApiError as e:
        if e.code in _SKIPPED:
            return None
        raise
