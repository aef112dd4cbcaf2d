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

import json
from typing import Any

import jsonpatch
import yaml

from . import _errors as errors
from ._apply import ApplyConflict, Conflict, explicit_managed_fields
from ._apply import track_update as _track_update
from ._decode import DecodeError, decode
from ._fieldset import display
from ._protobuf import ProtobufError
from ._protobuf import decode_body as decode_protobuf
from ._registry import ResourceType
from ._schema import Schema, TypeDef
from ._smp import PatchError, strategic_merge
from ._validation import ErrorType, FieldError, Path

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
VALIDATION_MODES = ("Strict", "Warn", "Ignore")


PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_TYPES = ("", "application/json", MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH)
MAX_DEPTH = 100  # nesting a body may have (Kubernetes objects need a dozen levels)
MAX_YAML_ALIASES = 100  # more is a "billion laughs" expansion, as Go's YAML refuses


def parse(schema: Schema, data: bytes, content_type: str) -> tuple[Any, tuple[str, ...]]:
    """A body received as bytes: (the decoded body, the fields a JSON body gave twice).
    JSON for the JSON types, YAML (or JSON) for apply patches, protobuf; anything else
    is 415, anything malformed or nested deeper than ``MAX_DEPTH`` 400."""
    if not data:
        return None, ()
    try:
        if content_type == PROTOBUF:
            try:
                return decode_protobuf(schema, data), ()
            except ProtobufError as e:
                raise errors.bad_request(f"the request body is not valid protobuf: {e}") from None
        if content_type == APPLY_PATCH:
            body, duplicates = _yaml(data)
        elif content_type in JSON_TYPES:
            try:
                body, duplicates = _json(data)
            except (ValueError, UnicodeDecodeError) as e:
                raise errors.bad_request(f"the request body is not JSON: {e}") from None
        else:
            unsupported = (
                f'the body of a request cannot be "{content_type}": send JSON, YAML (apply '
                f"patches) or protobuf"
            )
            raise errors.ApiError(errors.status(415, "UnsupportedMediaType", unsupported))
    except RecursionError:
        raise errors.bad_request("the request body is nested too deeply") from None
    if _depth(body) > MAX_DEPTH:
        raise errors.bad_request(f"the request body is nested deeper than {MAX_DEPTH} levels")
    return body, duplicates


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (iteratively: the depth is what is being checked)."""
    deepest = 0
    todo = [(value, 1)]
    while todo:
        node, depth = todo.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            todo.extend((child, depth + 1) for child in node)
    return deepest


def _json(data: bytes) -> tuple[Any, tuple[str, ...]]:
    """A JSON body, and the names of the fields it gives twice (JSON allows it; the last
    one wins, as in Go; strict field validation refuses it). NaN and Infinity are
    Python's extensions, not JSON: refused, as Kubernetes does."""
    duplicates: list[str] = []

    def fields(pairs: list[tuple[str, Any]]) -> dict:
        obj: dict = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    body = json.loads(data, parse_constant=_not_json, object_pairs_hook=fields)
    return body, tuple(duplicates)


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, when built


def _yaml(data: bytes) -> tuple[Any, tuple[str, ...]]:
    """An apply configuration: JSON (what kubectl sends), else YAML, with few aliases."""
    try:
        return _json(data)
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        aliases = sum(isinstance(e, yaml.AliasEvent) for e in yaml.parse(data, Loader=_YAML_LOADER))
        if aliases > MAX_YAML_ALIASES:
            raise errors.bad_request(
                f"the request body uses more than {MAX_YAML_ALIASES} YAML aliases"
            )
        return yaml.load(data, Loader=_YAML_LOADER), ()
    except yaml.YAMLError as e:
        raise errors.bad_request(f"the request body is not YAML: {e}") from None


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
    try:
        decoded = decode(schema, t, obj)
    except DecodeError as e:
        raise errors.bad_request(f"{_preamble(rt)}: {e}") from None
    found = [f'duplicate field "{d}"' for d in duplicates]
    found += [f'unknown field "{p}"' for p in decoded.unknown]
    if found:
        if mode == "Strict":
            raise errors.bad_request(f"{_preamble(rt)}: strict decoding error: "
                                     f"{', '.join(found)}")  # fmt: skip
        if mode == "Warn":
            warnings.extend(found)
    return decoded.obj


def _preamble(rt: ResourceType) -> str:
    """What a decoding error starts with (made only for one: most bodies decode)."""
    return f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}'


def patched(
    schema: Schema,
    rt: ResourceType,
    content_type: str,
    patch: Any,
    current: dict,
    t: TypeDef | None = None,
) -> dict:
    """``current`` (of the resource's type, or ``t``: a subresource's) with the patch
    applied (JSON, merge or strategic merge patch)."""
    base = dict(current)
    if content_type == JSON_PATCH:
        return _json_patched(base, patch)
    if content_type in (MERGE_PATCH, ""):
        if not isinstance(patch, dict):
            raise errors.bad_request("a merge patch must be an object")
        return merge_patch(base, patch)
    if content_type == STRATEGIC_PATCH:
        try:
            return strategic_merge(schema, t or type_of(schema, rt), base, patch)
        except PatchError as e:
            raise errors.bad_request(f"the strategic merge patch failed: {e}") from None
        except RecursionError:
            raise errors.bad_request("the strategic merge patch is nested too deeply") from None
    raise errors.ApiError(
        errors.status(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types "
            f"include: {', '.join(PATCH_TYPES)}",
        )
    )


MAX_PATCH_OPERATIONS = 10_000  # kube-apiserver's limit
MAX_COPY_BYTES = 3 * 1024 * 1024  # what copy operations may add up to, as Kubernetes limits


def _json_patched(base: dict, patch: Any) -> dict:
    """RFC 6902, one operation at a time, within Kubernetes' limits: at most 10,000
    operations (413), and copies that add up to at most 3 MiB (each copy can double
    the object: 30 operations would otherwise ask for gigabytes)."""
    if not isinstance(patch, list):
        raise errors.bad_request("a JSON patch must be a list of operations")
    if len(patch) > MAX_PATCH_OPERATIONS:
        limit = MAX_PATCH_OPERATIONS
        why = f"The allowed maximum operations in a JSON patch is {limit}, got {len(patch)}"
        raise errors.ApiError(errors.status(413, "RequestEntityTooLarge", why))
    doc: Any = json.loads(json.dumps(base))  # a private copy, patched in place
    copied = 0
    try:
        for op in patch:
            if isinstance(op, dict) and op.get("op") == "copy":
                source = jsonpatch.JsonPointer(op.get("from", "")).resolve(doc)
                copied += len(json.dumps(source))
                if copied > MAX_COPY_BYTES:
                    why = f"the patch's copy operations add up to more than {MAX_COPY_BYTES} bytes"
                    raise errors.ApiError(errors.status(422, "Invalid", why))
            doc = jsonpatch.apply_patch(doc, [op], in_place=True)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as e:
        raise errors.ApiError(errors.status(422, "Invalid", f"the patch failed: {e}")) from None
    if not isinstance(doc, dict):
        raise errors.bad_request("the patch must leave an object")
    return doc


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
    """``new`` with its managedFields as the write leaves them (see the module rules):
    ``[{}]`` clears them; an empty list (or none) keeps the stored ones; other entries
    the write gives replace them, once checked, and the write's own changes are then
    recorded on top, as Kubernetes does."""
    given = (new.get("metadata") or {}).get("managedFields")
    stored = ((old or {}).get("metadata") or {}).get("managedFields")
    if given == [{}]:
        return explicit_managed_fields(new)
    if not given:
        new = _with_managed_fields(new, stored)
    elif given != stored:
        _check_managed_fields(rt, new, given)
        old = _with_managed_fields(old or {}, given)
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


def _with_managed_fields(obj: dict, entries: list | None) -> dict:
    given = obj.get("metadata")
    if not entries and isinstance(given, dict) and "managedFields" not in given:
        return obj  # (most writes: no managedFields, before or after)
    m = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    if entries:
        m["managedFields"] = entries
    return {**obj, "metadata": m}


def _check_managed_fields(rt: ResourceType, obj: dict, entries: Any) -> None:
    """managedFields a client writes: a list of entries with a manager, an operation of
    Apply or Update and FieldsV1 (422 otherwise), so that nothing a client writes can
    break the object's later writes."""
    base = Path("metadata").child("managedFields")
    problems = []
    if not isinstance(entries, list):
        problems.append(FieldError.invalid(base, entries, "must be a list"))
        entries = []
    for i, entry in enumerate(entries):
        at = base.index(i)
        if not isinstance(entry, dict):
            problems.append(FieldError.invalid(at, entry, "must be an object"))
            continue
        if entry.get("operation") not in ("Apply", "Update"):
            supported = 'supported values: "Apply", "Update"'
            problems.append(FieldError(ErrorType.NOT_SUPPORTED, str(at.child("operation")),
                                       entry.get("operation"), supported))  # fmt: skip
        for name in ("manager", "apiVersion", "time", "subresource"):
            if not isinstance(entry.get(name, ""), str):
                problems.append(FieldError.invalid(at.child(name), entry[name], "must be a string"))
        if entry.get("fieldsType", "FieldsV1") != "FieldsV1":
            supported = 'supported values: "FieldsV1"'
            problems.append(FieldError(ErrorType.NOT_SUPPORTED, str(at.child("fieldsType")),
                                       entry.get("fieldsType"), supported))  # fmt: skip
        if not isinstance(entry.get("fieldsV1", {}), dict):
            problems.append(FieldError.invalid(at.child("fieldsV1"), "", "must be an object"))
    if problems:
        name = (obj.get("metadata") or {}).get("name", "")
        raise errors.invalid(rt.kind, rt.group, name, problems)


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
