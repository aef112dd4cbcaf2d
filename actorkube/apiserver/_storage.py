"""Objects in etcd with Kubernetes' semantics: create, get, update (optimistic
concurrency), delete (graceful and finalizer-blocked), list (selectors, pagination,
resourceVersion), as the API server's registry store does.

Rules of this file:

- An object is stored as compact JSON under its ``ResourceType.key``, without
  ``metadata.resourceVersion``: the resourceVersion a client sees is the key's etcd
  ``mod_revision`` (a list's is the revision it was read at), set on the way out.
- Every write is one etcd transaction conditioned on what the write was based on
  (``create_revision == 0`` to create, ``mod_revision == rv`` to update or delete), so
  no update based on a stale read is ever applied: the loser gets 409 Conflict.
- An update that does not name a resourceVersion is applied to the current object
  (Kubernetes' unconditional update), retried if the object moved meanwhile.
- Deleting an object with finalizers only marks it (deletionTimestamp); it goes when an
  update leaves it with no finalizers. Deleting a pod with a grace period only marks it
  too; deleting it with grace period 0 (as the kubelet does) removes it.
- Reads with resourceVersion "" are linearizable (a quorum read); "0" may be served
  from any member (serializable), as Kubernetes serves them from its cache; an exact
  resourceVersion reads at that etcd revision (410 Expired if it was compacted).
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from typing import Any

from actorkube.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    EtcdClient,
    EtcdError,
    PutRequest,
    prefix_end,
)

from . import _errors as errors
from ._meta import meta, prepare_for_create, prepare_for_update, rfc3339, with_meta
from ._registry import ResourceType

Filter = Callable[[dict], bool]


def encode(obj: dict) -> bytes:
    """The stored form: JSON without resourceVersion."""
    m = meta(obj)
    if "resourceVersion" in m:
        obj = with_meta(obj, resourceVersion=None)
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(value: bytes, mod_revision: int) -> dict:
    obj = json.loads(value)
    obj.setdefault("metadata", {})["resourceVersion"] = str(mod_revision)
    return obj


def parse_resource_version(text: Any) -> int:
    """A resourceVersion as the revision it names; 0 for "" (none given). 400 for
    anything that is not a decimal number (Kubernetes' "invalid resource version")."""
    if text in ("", None):
        return 0
    if not isinstance(text, str) or not text.isdigit():
        raise errors.bad_request(f"invalid resource version: {text!r}")
    return int(text)


def encode_continue(revision: int, start: bytes) -> str:
    """The continue token of a paged list: where the next page starts, and at which
    revision the whole list is read (so that its pages are one consistent snapshot)."""
    token = {"v": "meta.k8s.io/v1", "rv": revision, "start": start.decode()}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def decode_continue(token: str) -> tuple[int, bytes]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        if data.get("v") != "meta.k8s.io/v1":
            raise ValueError("unknown version")
        return int(data["rv"]), str(data["start"]).encode()
    except (ValueError, KeyError, TypeError) as e:
        raise errors.bad_request(f"continue key is not valid: {e}") from None


class ObjectStore:
    """Kubernetes objects of every registered type in etcd (see the module rules).

    ``clock`` returns wall-clock seconds (the actor system's clock); ``rng`` makes uids
    and generated names (seed it for a deterministic simulation)."""

    def __init__(self, etcd: EtcdClient, *, clock: Callable[[], float], rng: random.Random):
        self.etcd = etcd
        self.clock = clock
        self.rng = rng

    def _uid(self) -> str:
        b = self.rng.getrandbits(128).to_bytes(16, "big")
        h = bytearray(b)
        h[6] = (h[6] & 0x0F) | 0x40  # a version-4 UUID, as Kubernetes makes
        h[8] = (h[8] & 0x3F) | 0x80
        x = h.hex()
        return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"

    # --- reads -------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str, name: str, resource_version: str = ""):
        rev = parse_resource_version(resource_version)
        key = rt.key(namespace, name)
        try:
            if resource_version == "0":
                got = await self.etcd.get(key, serializable=True)
            else:
                got = await self.etcd.get(key, revision=rev)
        except EtcdError as e:
            raise _read_error(e, resource_version) from None
        if not got.kvs:
            raise errors.not_found(rt.plural, rt.group, name)
        kv = got.kvs[0]
        return decode(kv.value, kv.mod_revision)

    async def list(
        self,
        rt: ResourceType,
        namespace: str = "",
        *,
        keep: Filter | None = None,
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> dict:
        """A ``<Kind>List`` of the objects in ``namespace`` (all if ""), those that
        ``keep`` accepts, at most ``limit`` (0: all) with ``metadata.continue`` for the
        rest. With a continue token, the list goes on at the revision of its first page
        (410 Expired once that revision is compacted)."""
        prefix = rt.prefix(namespace)
        start, end = prefix, prefix_end(prefix)
        rev = 0
        if continue_token:
            rev, start = decode_continue(continue_token)
            if not start.startswith(prefix):
                raise errors.bad_request("continue key is not valid: it names another list")
        elif resource_version not in ("", "0"):
            rev = parse_resource_version(resource_version)
        serializable = resource_version == "0" and not continue_token
        items: list[dict] = []
        more_from = b""
        batch = max(limit, 500) if limit else 500
        while True:
            try:
                got = await self.etcd.get(start, end, revision=rev, limit=batch,
                                          serializable=serializable)  # fmt: skip
            except EtcdError as e:
                raise _read_error(e, resource_version, paging=bool(continue_token)) from None
            rev = rev or got.header.revision  # every page at the first one's revision
            for kv in got.kvs:
                obj = decode(kv.value, kv.mod_revision)
                if keep is None or keep(obj):
                    if limit and len(items) == limit:
                        more_from = kv.key
                        break
                    items.append(obj)
            if more_from or not got.more:
                break
            start = got.kvs[-1].key + b"\0"
        list_meta: dict[str, Any] = {"resourceVersion": str(rev)}
        if more_from:
            list_meta["continue"] = encode_continue(rev, more_from)
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta,
                "items": items}  # fmt: skip

    async def current_revision(self, rt: ResourceType) -> int:
        """etcd's revision now, by a linearizable read that fetches nothing (a count of
        the resource's keys, which etcd answers without reading them)."""
        prefix = rt.prefix()
        try:
            got = await self.etcd.get(prefix, prefix_end(prefix), count_only=True)
        except EtcdError as e:
            raise _read_error(e, "") from None
        return got.header.revision

    # --- writes ------------------------------------------------------------------------

    async def create(self, rt: ResourceType, obj: dict, *, dry_run: bool = False) -> dict:
        """Store a new object (already defaulted, validated and admitted). 409
        AlreadyExists if the name is taken. ``dry_run``: everything but the write (the
        object comes back without a resourceVersion)."""
        m = meta(obj)
        namespace, name = m.get("namespace", ""), m["name"]
        new = prepare_for_create(obj, uid=self._uid(), now=self.clock(), generation=rt.generation)
        key = rt.key(namespace, name)
        if dry_run:
            if (await self.etcd.get(key, count_only=True)).count:
                raise errors.already_exists(rt.plural, rt.group, name)
            return new
        absent = Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0)
        answer = await self.etcd.txn([absent], [PutRequest(key, encode(new))])
        if not answer.succeeded:
            raise errors.already_exists(rt.plural, rt.group, name)
        return with_meta(new, resourceVersion=str(answer.header.revision))

    async def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[dict], dict],
        *,
        expect: str = "",
        dry_run: bool = False,
        guess: dict | None = None,
    ) -> dict:
        """Apply ``change(current) -> new`` to the stored object and write the result if
        the object is still what it was read as. ``expect`` is the resourceVersion the
        caller based its change on ("": none, retry on races): a different one is 409
        Conflict. An object left with deletionTimestamp and no finalizers is deleted.
        ``change`` may raise ApiError (validation); it may be called more than once, and
        must not modify its argument. ``dry_run``: the result is returned, not written
        (at the version it was read).

        ``guess``: the object as the watch cache has it, tried first instead of a read
        (Kubernetes' cachedExistingObject): the write is conditional on its version, so
        a stale guess only costs a read and another try. A guess is never the reason for
        a 409, a no-op or a dry-run answer: those are decided on a fresh read."""
        key = rt.key(namespace, name)
        expected = parse_resource_version(expect)
        if dry_run:
            guess = None
        while True:
            if guess is not None:
                current, guess = guess, None
                revision, stored = parse_resource_version(meta(current)["resourceVersion"]), None
            else:
                revision, stored, current = await self._read(rt, key, name)
            if expected and revision != expected:
                if stored is None:
                    continue  # the guess may be stale: read
                raise errors.conflict(rt.plural, rt.group, name, errors.MODIFIED)
            try:
                new = prepare_for_update(change(current), current, generation=rt.generation)
            except errors.ApiError:
                if stored is None:
                    continue  # refused on the guess: only what etcd has decides
                raise
            if dry_run:
                return with_meta(new, resourceVersion=str(revision))
            unchanged = _unchanged(key, revision)
            m = meta(new)
            if m.get("deletionTimestamp") and not m.get("finalizers"):
                answer = await self.etcd.txn([unchanged], [DeleteRangeRequest(key)])
            else:
                data = encode(new)
                if stored is None and new == current:
                    continue  # perhaps a no-op: only a fresh read can say
                if data == stored:
                    return current  # a no-op update writes nothing and keeps the version
                answer = await self.etcd.txn([unchanged], [PutRequest(key, data)])
            if answer.succeeded:
                return with_meta(new, resourceVersion=str(answer.header.revision))
            if expected and stored is not None:
                raise errors.conflict(rt.plural, rt.group, name, errors.MODIFIED)

    async def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        grace_period: int | None = None,
        uid: str = "",
        resource_version: str = "",
        dry_run: bool = False,
    ) -> tuple[dict, bool]:
        """Delete (or mark for deletion) one object. Returns the object and whether it
        is gone now (False: it carries a deletionTimestamp and waits for its finalizers
        or its grace period). ``uid`` / ``resource_version``: preconditions (409 if they
        do not hold). ``dry_run``: what the delete would do, done to nothing."""
        key = rt.key(namespace, name)
        expected = parse_resource_version(resource_version)
        while True:
            revision, _, current = await self._read(rt, key, name)
            m = meta(current)
            if uid and m.get("uid") != uid:
                why = (f"Precondition failed: UID in precondition: {uid}, UID in object "
                       f"meta: {m.get('uid')}")  # fmt: skip
                raise errors.conflict(rt.plural, rt.group, name, why)
            if expected and revision != expected:
                why = (f"Precondition failed: ResourceVersion in precondition: {expected}, "
                       f"ResourceVersion in object meta: {revision}")  # fmt: skip
                raise errors.conflict(rt.plural, rt.group, name, why)
            marked = self._mark_for_deletion(rt, current, grace_period)
            if dry_run:
                return (current, True) if marked is None else (marked, False)
            unchanged = _unchanged(key, revision)
            if marked is None:
                answer = await self.etcd.txn([unchanged], [DeleteRangeRequest(key)])
                if answer.succeeded:
                    return current, True
            elif marked is current:
                return current, False  # marked already, nothing shortens
            else:
                answer = await self.etcd.txn([unchanged], [PutRequest(key, encode(marked))])
                if answer.succeeded:
                    return with_meta(marked, resourceVersion=str(answer.header.revision)), False

    async def _read(self, rt: ResourceType, key: bytes, name: str) -> tuple[int, bytes, dict]:
        """The stored object as (mod_revision, stored bytes, object); 404 if absent."""
        got = await self.etcd.get(key)
        if not got.kvs:
            raise errors.not_found(rt.plural, rt.group, name)
        kv = got.kvs[0]
        return kv.mod_revision, kv.value, decode(kv.value, kv.mod_revision)

    def _mark_for_deletion(self, rt: ResourceType, obj: dict, grace: int | None) -> dict | None:
        """What a delete makes of ``obj``: None to remove it now, ``obj`` itself if it
        stays as it is, or a copy with deletionTimestamp (and grace period) set."""
        m = meta(obj)
        now = self.clock()
        if rt.graceful:
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            # A pod never scheduled has no kubelet to wait for: it goes at once.
            if not (obj.get("spec") or {}).get("nodeName"):
                grace = 0
        else:
            grace = 0
        if grace == 0 and not m.get("finalizers"):
            return None
        if m.get("deletionTimestamp"):
            # Already going: a shorter grace period brings the deadline forward.
            old_grace = m.get("deletionGracePeriodSeconds", 0)
            if grace >= old_grace:
                return obj
        return with_meta(obj, deletionTimestamp=rfc3339(now + grace),
                         deletionGracePeriodSeconds=grace)  # fmt: skip


def _unchanged(key: bytes, revision: int) -> Compare:
    """The condition of a write based on the version at ``revision``."""
    return Compare(key, CompareTarget.MOD, CompareResult.EQUAL, mod_revision=revision)


def _read_error(e: EtcdError, resource_version: str, paging: bool = False) -> errors.ApiError:
    text = str(e)
    if "compacted" in text:
        if paging:
            return errors.gone("The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without "
                               "the continue parameter.")  # fmt: skip
        return errors.gone(f"too old resource version: {resource_version}")
    if "future revision" in text:
        message = f"Too large resource version: {resource_version}"
        return errors.ApiError(errors.status(504, "Timeout", message))
    return errors.unavailable(f"etcd: {text}")
