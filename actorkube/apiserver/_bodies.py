"""What the API server does with a write's body before the object's own rules see it:
decode it into its type (field validation), apply a patch of any of Kubernetes' four
kinds, and record field ownership.

Rules of this file:

- ``fieldValidation`` is Kubernetes': ``Strict`` refuses unknown and duplicate fields
  (400, every one named), ``Warn`` (the default) drops them and says so in a warning, ``Ignore``
  drops them silently. A value of the wrong type is a 400 whatever the mode.
- Patches: JSON patch (RFC 6902, a failed operation is 422), JSON merge patch (RFC
  7386), strategic merge patch (merge keys from the schema; a malformed one is 400);
  apply patches are ``_apply``'s. Any other body type is 415.
- ``dryRun=All`` runs a write to the end without storing it.
- The field manager of a write is the ``fieldManager`` parameter (the HTTP front end
  defaults it from the User-Agent, as Kubernetes does); ownership is recorded when the
  write names one or the object already records some.
"""

from __future__ import annotations

from typing import Any

import jsonpatch

from . import _errors as errors
from ._apply import ApplyConflict, Conflict, explicit_managed_fields, managed_fields_set
from ._apply import track_update as _track_update
from ._decode import DecodeError, decode
from ._fieldset import display
from ._registry import ResourceType
from ._schema import Schema, TypeDef
from ._smp import PatchError, strategic_merge

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
VALIDATION_MODES = ("Strict", "Warn", "Ignore")


def type_of(schema: Schema, rt: ResourceType) -> TypeDef | None:
    return schema.kind(rt.api_version, rt.kind)


def field_validation(params: dict) -> str:
    mode = params.get("fieldValidation") or "Warn"
    if mode not in VALIDATION_MODES:
        raise errors.bad_request(
            f'fieldValidation must be one of "Ignore", "Warn" or "Strict", not "{mode}"'
        )
    return mode


def decode_body(
    schema: Schema,
    rt: ResourceType,
    obj: Any,
    params: dict,
    warnings: list[str],
    duplicates: tuple[str, ...] = (),
) -> Any:
    """``obj`` decoded as the resource's type, unknown fields (and ``duplicates``,
    fields the body gave twice) handled as the request's field validation says (see
    the module rules)."""
    t = type_of(schema, rt)
    mode = field_validation(params)
    if t is None:
        return obj
    preamble = f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}'
    try:
        decoded = decode(schema, t, obj)
    except DecodeError as e:
        raise errors.bad_request(f"{preamble}: {e}") from None
    found = [f'duplicate field "{d}"' for d in duplicates]
    found += [f'unknown field "{p}"' for p in decoded.unknown]
    if found:
        if mode == "Strict":
            raise errors.bad_request(f"{preamble}: strict decoding error: {', '.join(found)}")
        if mode == "Warn":
            warnings.extend(found)
    return decoded.obj


def patched(schema: Schema, rt: ResourceType, content_type: str, patch: Any, current: dict) -> dict:
    """``current`` with the patch applied (JSON, merge or strategic merge patch)."""
    base = dict(current)
    if content_type == JSON_PATCH:
        try:
            result = jsonpatch.apply_patch(base, patch)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as e:
            raise errors.ApiError(errors.status(422, "Invalid", f"the patch failed: {e}")) from None
        if not isinstance(result, dict):
            raise errors.bad_request("the patch must leave an object")
        return result
    if content_type in (MERGE_PATCH, ""):
        if not isinstance(patch, dict):
            raise errors.bad_request("a merge patch must be an object")
        return merge_patch(base, patch)
    if content_type == STRATEGIC_PATCH:
        try:
            return strategic_merge(schema, type_of(schema, rt), base, patch)
        except PatchError as e:
            raise errors.bad_request(f"the strategic merge patch failed: {e}") from None
    raise errors.ApiError(
        errors.status(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}",
        )
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else
    replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def track(
    schema: Schema,
    rt: ResourceType,
    old: dict | None,
    new: dict,
    *,
    params: dict,
    subresource: str,
    now: str,
) -> dict:
    """``new`` with its managedFields as the write leaves them (see the module rules)."""
    if managed_fields_set(old, new):
        return explicit_managed_fields(new)
    manager = params.get("fieldManager", "")
    if not manager and not ((old or {}).get("metadata") or {}).get("managedFields"):
        return new
    return _track_update(
        schema,
        type_of(schema, rt),
        old,
        new,
        manager=manager,
        api_version=rt.api_version,
        subresource=subresource,
        now=now,
    )


def dry_run(params: dict) -> bool:
    """Whether the write is a dry run (``dryRun=All``: everything but the write, as
    ``kubectl --dry-run=server`` asks); any other value is a 400."""
    value = params.get("dryRun", "")
    if value in ("", None):
        return False
    if value != "All":
        raise errors.bad_request(f'dryRun: Unsupported value: "{value}": supported values: "All"')
    return True


def check_manager(params: dict, apply: bool) -> str:
    manager = params.get("fieldManager", "")
    if apply and not manager:
        raise errors.ApiError(
            errors.status(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                "is required for apply patch",
            )
        )
    if len(manager) > 128:
        raise errors.ApiError(
            errors.status(
                422,
                "Invalid",
                'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: '
                "may not be more than 128 bytes",
            )
        )
    return manager


def conflict(rt: ResourceType, name: str, e: ApplyConflict) -> errors.ApiError:
    """The 409 Kubernetes answers an apply conflict with."""
    causes = [_cause(c) for c in e.conflicts]
    details = {"name": name, "group": rt.group, "kind": rt.plural, "causes": causes}
    return errors.ApiError(errors.status(409, "Conflict", str(e), details))


def _cause(c: Conflict) -> dict:
    return {
        "reason": "FieldManagerConflict",
        "message": f"conflict with {c.manager}",
        "field": display(c.path),
    }
