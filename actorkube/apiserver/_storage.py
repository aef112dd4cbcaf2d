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
- Deleting an object with finalizers only marks it (deletionTimestamp, grace period 0);
  it goes when an update leaves it with no finalizers. Deleting a pod with a grace
  period only marks it too; deleting it with grace period 0 (as the kubelet does)
  removes it, and a pod marked with a grace period stays, finalizers gone or not, until
  that delete (Kubernetes' BeforeDelete and ShouldDeleteDuringUpdate).
- A delete's propagation policy is the garbage collector's finalizers, set as the
  object is marked (Kubernetes' deletionFinalizersForGarbageCollection): Orphan adds
  ``orphan``, Foreground ``foregroundDeletion`` (the object then waits for the garbage
  collector), Background (every resource's default here) neither. Once a pod is in
  its grace period a delete changes nothing but a shorter grace period.
- A namespace is terminated, not deleted: the first delete sets its deletionTimestamp
  and status.phase Terminating; it goes once an update (namespaces/finalize) leaves it
  with no spec.finalizers and no metadata.finalizers, or a later delete finds none.
- Objects of a resource with a TTL (``ResourceType.ttl``: events) are written under an
  etcd lease that expires ``ttl`` seconds (``event_ttl``, kube-apiserver's --event-ttl,
  an hour) after the write, shared by the writes of a minute (``_leasereuse``): etcd
  deletes them then, and their watchers see them go. ``event_ttl`` 0: they never expire.
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

import trio

from actorkube import _json as fastjson
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
from actorkube.etcd._mvcc import LEASE_NOT_FOUND

from . import _errors as errors
from ._leasereuse import LeaseReuse
from ._meta import (
    meta,
    parse_rfc3339,
    prepare_for_create,
    prepare_for_update,
    rfc3339,
    with_meta,
)
from ._registry import ResourceType

Filter = Callable[[dict], bool]

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
# Resources whose strategy says the garbage collector has nothing to do with them
# (Kubernetes' event strategy: DefaultGarbageCollectionPolicy Unsupported).
EVENT_TTL = 3600  # kube-apiserver's --event-ttl default, in seconds
GC_UNSUPPORTED = frozenset({("", "events"), ("events.k8s.io", "events")})
# Resources whose strategy orphans by default (Kubernetes' batch/v1 Job: its pods stay
# unless the delete asks otherwise, or a cascade finalizer is on the Job already).
ORPHAN_BY_DEFAULT = frozenset({("batch", "jobs")})


def encode(obj: dict) -> bytes:
    """The stored form: JSON without resourceVersion."""
    m = meta(obj)
    if "resourceVersion" in m:
        obj = with_meta(obj, resourceVersion=None)
    return fastjson.dumps(obj)


def decode(value: bytes, mod_revision: int) -> dict:
    obj = fastjson.loads(value)
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
    and generated names (seed it for a deterministic simulation); ``event_ttl``: how
    long objects of a resource with a TTL live after their last write (seconds; 0:
    for ever)."""

    def __init__(self, etcd: EtcdClient, *, clock: Callable[[], float], rng: random.Random,
                 event_ttl: int = EVENT_TTL) -> None:  # fmt: skip
        self.etcd = etcd
        self.clock = clock
        self.rng = rng
        self.event_ttl = event_ttl
        self.leases = LeaseReuse()
        self._granting = trio.Lock()

    def new_uid(self) -> str:
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
        return (await self._count_keys(rt)).header.revision

    async def count(self, rt: ResourceType) -> int:
        """How many objects of ``rt`` etcd holds (a count, which reads no values)."""
        return (await self._count_keys(rt)).count

    async def _count_keys(self, rt: ResourceType):
        prefix = rt.prefix()
        try:
            return await self.etcd.get(prefix, prefix_end(prefix), count_only=True)
        except EtcdError as e:
            raise _read_error(e, "") from None

    async def check_history(self, rt: ResourceType, resource_version: int) -> None:
        """Raise 410 Gone unless etcd's history still holds every change after
        ``resource_version`` (a watch from it can be served); a version not reached yet
        passes (the watch waits for it)."""
        prefix = rt.prefix()
        try:
            await self.etcd.get(prefix, prefix_end(prefix), revision=resource_version + 1,
                                count_only=True)  # fmt: skip
        except EtcdError as e:
            error = _read_error(e, str(resource_version))
            if error.code != 504:  # (the future: nothing to miss)
                raise error from None

    # --- writes ------------------------------------------------------------------------

    async def create(
        self, rt: ResourceType, obj: dict, *, uid: str = "", dry_run: bool = False
    ) -> dict:
        """Store a new object (already defaulted, validated and admitted). 409
        AlreadyExists if the name is taken. ``uid``: the one the handler gave it before
        validation (a new one if empty). ``dry_run``: everything but the write (the
        object comes back without a resourceVersion)."""
        m = meta(obj)
        namespace, name = m.get("namespace", ""), m["name"]
        new = prepare_for_create(obj, uid=uid or self.new_uid(), now=self.clock(),
                                 generation=rt.generation)  # fmt: skip
        key = rt.key(namespace, name)
        if dry_run:
            if (await self.etcd.get(key, count_only=True)).count:
                raise errors.already_exists(rt.plural, rt.group, name)
            return new
        absent = Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0)
        answer = await self._put(rt, absent, key, encode(new))
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
        Conflict. An object being deleted that the change leaves with no finalizers is
        deleted (see ``should_delete_during_update``).
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
            if should_delete_during_update(rt, new, current):
                answer = await self.etcd.txn([unchanged], [DeleteRangeRequest(key)])
            else:
                data = encode(new)
                if stored is None and new == current:
                    continue  # perhaps a no-op: only a fresh read can say
                if data == stored:
                    return current  # a no-op update writes nothing and keeps the version
                answer = await self._put(rt, unchanged, key, data)
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
        propagation_policy: str = "",
        orphan_dependents: bool | None = None,
    ) -> tuple[dict, bool]:
        """Delete (or mark for deletion) one object. Returns the object and whether it
        is gone now (False: it carries a deletionTimestamp and waits for its finalizers
        or its grace period). ``uid`` / ``resource_version``: preconditions (409 if they
        do not hold). ``propagation_policy`` (Foreground, Background, Orphan; "" for the
        resource's default) or the legacy ``orphan_dependents``: what the garbage
        collector does with the object's dependents (the caller checked they are not
        both given). ``dry_run``: what the delete would do, done to nothing."""
        key = rt.key(namespace, name)
        expected = parse_resource_version(resource_version)
        cascade = (propagation_policy, orphan_dependents)
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
            if _is_namespace(rt) and not m.get("deletionTimestamp"):
                marked = terminating_namespace(current, self.clock(), *cascade)
            elif _is_namespace(rt) and (current.get("spec") or {}).get("finalizers"):
                marked = current  # terminating: it goes once its finalizers are done
            else:
                marked = self._mark_for_deletion(rt, current, grace_period, *cascade)
            if dry_run:
                return (current, True) if marked is None else (marked, False)
            unchanged = _unchanged(key, revision)
            if marked is None:
                answer = await self.etcd.txn([unchanged], [DeleteRangeRequest(key)])
                if answer.succeeded:
                    return current, True
            elif marked == current:
                return current, False  # marked already, nothing shortens
            else:
                answer = await self.etcd.txn([unchanged], [PutRequest(key, encode(marked))])
                if answer.succeeded:
                    return with_meta(marked, resourceVersion=str(answer.header.revision)), False

    async def _put(self, rt: ResourceType, condition: Compare, key: bytes, data: bytes):
        """Write ``data`` at ``key`` if ``condition`` holds (the etcd txn's answer), under
        a lease if ``rt`` has a TTL."""
        if not rt.ttl or self.event_ttl <= 0:
            return await self.etcd.txn([condition], [PutRequest(key, data)])
        lease = await self._lease()
        try:
            return await self.etcd.txn([condition], [PutRequest(key, data, lease=lease)])
        except EtcdError as e:
            # Gone before its time (revoked, or a restore from an older snapshot): this
            # write and the next ones get a new lease.
            if e.error != LEASE_NOT_FOUND:
                raise
            self.leases.forget(lease)
        return await self.etcd.txn([condition], [PutRequest(key, data, lease=await self._lease())])

    async def _lease(self) -> int:
        """The lease an expiring object's write attaches to (see ``_leasereuse``)."""
        ttl = self.event_ttl
        lease = self.leases.pick(ttl, trio.current_time())
        if lease:
            return lease
        async with self._granting:  # one grant for the writes that all need one now
            lease = self.leases.pick(ttl, trio.current_time())
            if not lease:
                at, granted_ttl = trio.current_time(), self.leases.grant_ttl(ttl)
                answer = await self.etcd.lease_grant(granted_ttl)
                self.leases.granted(answer.id, answer.ttl or granted_ttl, at)
                lease = answer.id
        return lease

    async def _read(self, rt: ResourceType, key: bytes, name: str) -> tuple[int, bytes, dict]:
        """The stored object as (mod_revision, stored bytes, object); 404 if absent."""
        got = await self.etcd.get(key)
        if not got.kvs:
            raise errors.not_found(rt.plural, rt.group, name)
        kv = got.kvs[0]
        return kv.mod_revision, kv.value, decode(kv.value, kv.mod_revision)

    def _mark_for_deletion(
        self, rt: ResourceType, obj: dict, grace: int | None, policy: str, orphan: bool | None
    ) -> dict | None:
        """What a delete makes of ``obj``: None to remove it now, or the object to
        store (``obj`` itself if nothing changes): with deletionTimestamp, grace period
        and the garbage collector's finalizers set (Kubernetes' BeforeDelete, then
        updateForGracefulDeletionAndFinalizers)."""
        m = meta(obj)
        now = self.clock()
        if grace is not None and grace < 0:
            grace = 1  # as Kubernetes reads a negative grace period
        new, graceful = obj, False
        if rt.graceful and m.get("deletionTimestamp"):
            old_grace = m.get("deletionGracePeriodSeconds") or 0
            if old_grace:
                if grace is None or grace >= old_grace:
                    return obj  # graceful deletion pending: only a shorter one changes it
                # A shorter grace period brings the deadline forward.
                start = (parse_rfc3339(m["deletionTimestamp"]) or now) - old_grace
                new = with_meta(obj, deletionTimestamp=rfc3339(start + grace),
                                deletionGracePeriodSeconds=grace)  # fmt: skip
                graceful = True
        elif rt.graceful:
            period = _pod_grace_period(obj, grace)
            new = with_meta(obj, deletionTimestamp=rfc3339(now + period),
                            deletionGracePeriodSeconds=period, **_next_generation(m))  # fmt: skip
            graceful = True
        finalizers = m.get("finalizers") or []
        which = (rt.group, rt.plural)
        wanted = gc_finalizers(finalizers, policy, orphan, supported=which not in GC_UNSUPPORTED,
                               orphan_by_default=which in ORPHAN_BY_DEFAULT)  # fmt: skip
        if set(wanted) != set(finalizers):
            new = with_meta(new, finalizers=wanted or None)
        pending = bool(meta(new).get("finalizers"))
        if not graceful:
            return _marked_as_deleting(new, now) if pending else None
        if not pending and not meta(new).get("deletionGracePeriodSeconds"):
            return None
        return new


def gc_finalizers(
    finalizers: list[str], policy: str, orphan: bool | None, *, supported: bool = True,
    orphan_by_default: bool = False,
) -> list[str]:  # fmt: skip
    """The finalizers an object gets as it is deleted: ``orphan`` and
    ``foregroundDeletion`` as ``policy`` or the legacy ``orphan`` flag ask, else as
    they were (Kubernetes' shouldOrphanDependents and shouldDeleteDependents), else
    Background, or Orphan for a resource ``orphan_by_default`` (a batch/v1 Job).
    ``supported``: False for resources the garbage collector ignores, which keep what
    they have."""
    if not supported:
        return list(finalizers)
    if orphan is not None:
        wants_orphan, wants_foreground = orphan, False
    elif policy:
        wants_orphan, wants_foreground = policy == "Orphan", policy == "Foreground"
    else:
        given = [f for f in finalizers if f in (ORPHAN, FOREGROUND)]
        wants_orphan = given[0] == ORPHAN if given else orphan_by_default
        wants_foreground = bool(given) and given[0] == FOREGROUND
    kept = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    return kept + [ORPHAN] * wants_orphan + [FOREGROUND] * wants_foreground


def terminating_namespace(ns: dict, now: float, policy: str, orphan: bool | None) -> dict:
    """A namespace's first delete: deletionTimestamp now, phase Terminating, and the
    garbage collector's finalizers only as the delete asks explicitly (Kubernetes'
    namespace storage Delete). Its spec.finalizers (``kubernetes``: the namespace
    controller's) keep it until its content is gone."""
    finalizers = list(meta(ns).get("finalizers") or [])
    wanted = [f for f in finalizers if f not in (ORPHAN, FOREGROUND)]
    for name, explicit in ((ORPHAN, _namespace_orphans(policy, orphan)),
                           (FOREGROUND, _namespace_foreground(policy, orphan))):  # fmt: skip
        if explicit if explicit is not None else name in finalizers:
            wanted.append(name)
    status = {**(ns.get("status") or {}), "phase": "Terminating"}
    marked = with_meta(ns, deletionTimestamp=rfc3339(now), finalizers=wanted or None)
    return {**marked, "status": status}


def _namespace_orphans(policy: str, orphan: bool | None) -> bool | None:
    if orphan is not None:
        return orphan
    return policy == "Orphan" if policy else None


def _namespace_foreground(policy: str, orphan: bool | None) -> bool | None:
    # (orphanDependents=false meant "delete them first" for namespaces, as Kubernetes.)
    if orphan is not None:
        return not orphan
    return policy == "Foreground" if policy else None


def should_delete_during_update(rt: ResourceType, new: dict, old: dict) -> bool:
    """Whether an update removes the object (Kubernetes' ShouldDeleteDuringUpdate): it
    was being deleted, the update leaves no finalizers, and no grace period is running
    (a pod's goes with the kubelet's delete). A namespace also needs no spec.finalizers."""
    before = meta(old)
    if meta(new).get("finalizers") or not before.get("deletionTimestamp"):
        return False
    if _is_namespace(rt) and (new.get("spec") or {}).get("finalizers"):
        return False
    return not before.get("deletionGracePeriodSeconds")


def _is_namespace(rt: ResourceType) -> bool:
    return rt.plural == "namespaces" and not rt.group


def _pod_grace_period(pod: dict, grace: int | None) -> int:
    """Kubernetes' pod CheckGracefulDelete: the grace period asked for, else the pod's
    own; none for a pod never scheduled (no kubelet to wait for) or already finished."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
        return 0
    return grace if grace is not None else spec.get("terminationGracePeriodSeconds") or 0


def _next_generation(m: dict) -> dict:
    """A resource that counts generations counts its deletion as one (Kubernetes)."""
    generation = m.get("generation") or 0
    return {"generation": generation + 1} if generation > 0 else {}


def _marked_as_deleting(obj: dict, now: float) -> dict:
    """An object that waits for its finalizers (Kubernetes' markAsDeleting): a
    deletionTimestamp no later than now and grace period 0."""
    m = meta(obj)
    stamp = m.get("deletionTimestamp")
    if stamp is None or (parse_rfc3339(stamp) or 0) > now:
        stamp = rfc3339(now)
    bump = {} if m.get("deletionTimestamp") else _next_generation(m)
    return with_meta(obj, deletionTimestamp=stamp, deletionGracePeriodSeconds=0, **bump)


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
