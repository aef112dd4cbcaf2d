"""The pure core of the Deployment controller: one sync of a Deployment, from the
Deployment, the ReplicaSets it owns and their pods to the writes that move it one step
on (kube-controller-manager's pkg/controller/deployment: syncDeployment, sync and scale,
rolloutRolling, rolloutRecreate, cleanupDeployment, syncRolloutStatus, and
deployment/util, as Kubernetes 1.33 behaves with its default feature gates).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; ``plan`` returns new ones. A
  Deployment field left out is read with the API server's default (replicas 1,
  RollingUpdate with maxSurge and maxUnavailable 25%, revisionHistoryLimit 10,
  progressDeadlineSeconds 600; 2147483647 for either of the last two means none).
  Counts are Go int32: sums and products wrap as Kubernetes' do, and no size written to a
  ReplicaSet is below 0. What validation rejects (an unknown strategy, a maxSurge or
  maxUnavailable that is neither an int nor "N%") raises ValueError.
- One step a sync, as syncDeployment takes it. A Deployment being deleted only has its
  status written (and its new ReplicaSet's annotations synced); one selecting everything
  only has observedGeneration written. A paused one, or one with an active ReplicaSet
  whose desired-replicas annotation is not spec.replicas (a scaling event), is only
  scaled (``sync``): the one active ReplicaSet takes all replicas; a saturated new one
  ends the old ones; else, for RollingUpdate, every active one grows or shrinks in
  proportion to its max-replicas annotation (replicas + maxSurge when it was last
  scaled), the leftover to the first of them, largest first and, among equals, newest
  first when growing and oldest first when shrinking. A paused one is then cleaned up.
  Otherwise the strategy rolls out.
- The new ReplicaSet is the oldest owned one whose template equals the Deployment's but
  for the pod-template-hash label; the others are old. The new one carries the
  Deployment's annotations (but those of the rollout itself), the highest old revision
  + 1 (the revision it had goes to revision-history, kept within 2000 characters) and
  the Deployment's minReadySeconds; then the Deployment's revision annotation follows
  its revision. One that does not exist is created as ``<name>-<template_hash>``,
  sized by ``new_rs_new_replicas``; a name taken by an owned ReplicaSet with another
  template is a hash collision: status.collisionCount goes up and nothing is created.
- RollingUpdate: scale the new ReplicaSet up, never past replicas + maxSurge pods in
  all; if it need not grow, scale old ones down: first their unavailable replicas, then
  oldest first, by no more than keeps replicas - maxUnavailable available, the new
  ReplicaSet's unavailable pods counted as lost. Recreate: scale the old ones to 0; while
  any of their pods is not Succeeded or Failed, wait; then create or scale the new one
  to replicas.
- A Deployment complete when the sync starts loses its old ReplicaSets beyond
  revisionHistoryLimit, lowest revision first, and of those only the ones with no
  replica wanted or running, observed by their controller and not being deleted.
- Status is calculateStatus (sums over the ReplicaSets' spec and status; Available
  from replicas - maxUnavailable) and, after a rollout step, syncRolloutStatus'
  Progressing (created or found the new ReplicaSet, progressing, complete, deadline
  exceeded) and a ReplicaFailure copied from a ReplicaSet. A condition whose status and
  reason stay is left as it was; paused and resumed are set before anything else.
- The caller's: adopting and releasing ReplicaSets, making the writes (an AlreadyExists
  on create, the name held by a ReplicaSet this Deployment does not own or whose
  template differs by ``equal_ignore_hash``, is a hash collision: bump
  status.collisionCount and write the status), events, and syncing again after
  ``requeue_after``.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import parse_rfc3339, rfc3339

from ._fields import meta as _meta
from ._fields import spec as _spec

REVISION = "deployment.kubernetes.io/revision"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
POD_TEMPLATE_HASH = "pod-template-hash"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The Deployment's annotations its new ReplicaSet does not copy (annotationsToSkip).
NOT_COPIED = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                        MAX_REPLICAS, ROLLBACK_TO})  # fmt: skip
MAX_REVISION_HISTORY_CHARS = 2000  # Kubernetes' maxRevHistoryLengthInChars
INT32_MAX = 2**31 - 1

AVAILABLE, PROGRESSING, REPLICA_FAILURE = "Available", "Progressing", "ReplicaFailure"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
MIN_AVAILABLE = "MinimumReplicasAvailable"
MIN_UNAVAILABLE = "MinimumReplicasUnavailable"

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # rand.SafeEncodeString's: no vowels
_SIGNED = re.compile(r"[+-]?[0-9]+")
_UNSIGNED = re.compile(r"[0-9]+")


@attrs.frozen
class Plan:
    """The writes of one sync, in the order to make them: create, updates (each a PUT
    with the resourceVersion it replaces), deletes, then the Deployment's annotations
    (when not None) and its status (when it differs from the stored one)."""

    create: dict | None
    updates: tuple[dict, ...]
    deletes: tuple[dict, ...]
    deployment_annotations: dict | None
    status: dict
    requeue_after: float | None


# --- Go's int32 and the fields of objects ----------------------------------------------------


def _int32(n: int) -> int:
    """``n`` wrapped as Go's int32 arithmetic wraps it."""
    return (n + 2**31) % 2**32 - 2**31


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sum(values: Any) -> int:
    return _int32(sum(values))


def _status_of(obj: Mapping[str, Any] | None, field: str) -> int:
    return _count(((obj or {}).get("status") or {}).get(field))


def _name(obj: Mapping[str, Any]) -> str:
    return _meta(obj).get("name", "")


def _annotations(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(_meta(obj).get("annotations") or {})


def _replicas(rs: Mapping[str, Any]) -> int:
    replicas = _spec(rs).get("replicas")
    return 1 if replicas is None else _count(replicas)  # the API server's default


def _active(rss: Sequence[dict]) -> list[dict]:
    return [rs for rs in rss if _replicas(rs) > 0]


def _created(rs: Mapping[str, Any]) -> tuple[float, str]:
    """ReplicaSetsByCreationTimestamp's order (no timestamp is Go's zero time)."""
    since = parse_rfc3339(_meta(rs).get("creationTimestamp"))
    return (-math.inf if since is None else since, _name(rs))


def _parse_int(text: Any, bits: int = 64) -> int | None:
    """strconv.ParseInt(text, 10, bits), None on error."""
    if not isinstance(text, str) or not _SIGNED.fullmatch(text):
        return None
    value = int(text)
    return value if -(2 ** (bits - 1)) <= value < 2 ** (bits - 1) else None


def _replicas_annotation(rs: Mapping[str, Any], key: str) -> int | None:
    """getNonNegativeInt32FromAnnotation: a non-negative int32, None if absent or bad."""
    text = _annotations(rs).get(key)
    if not isinstance(text, str) or not _UNSIGNED.fullmatch(text) or int(text) > INT32_MAX:
        return None
    return int(text)


def _controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for ref in _meta(obj).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


# --- public helpers --------------------------------------------------------------------------


def revision(rs: Mapping[str, Any]) -> int:
    """The ReplicaSet's revision annotation; 0 when absent or not an integer (as
    Kubernetes' MaxRevision and ReplicaSetsByRevision read it)."""
    return _parse_int(_annotations(rs).get(REVISION)) or 0


def is_owned_by(rs: Mapping[str, Any], deployment: Mapping[str, Any]) -> bool:
    """Whether the ReplicaSet's controller ownerReference names the Deployment's uid."""
    ref = _controller_of(rs)
    uid = _meta(deployment).get("uid")
    return ref is not None and bool(uid) and ref.get("uid") == uid


def _semantic(value: Any) -> Any:
    """A JSON value as Go's semantic equality sees it: null, {} and [] count as absent."""
    if isinstance(value, Mapping):
        kept = {k: _semantic(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not None and v != {} and v != []}
    if isinstance(value, list):
        return [_semantic(v) for v in value]
    return value


def _without_hash(template: Any) -> dict:
    template = template if isinstance(template, Mapping) else {}
    m = template.get("metadata") or {}
    labels = {k: v for k, v in (m.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    return {**template, "metadata": {**m, "labels": labels}}


def equal_ignore_hash(t1: Any, t2: Any) -> bool:
    """Whether two pod templates are semantically equal once the pod-template-hash label
    is taken out of both (EqualIgnoreHash)."""
    return _semantic(_without_hash(t1)) == _semantic(_without_hash(t2))


def _fnv32a(data: bytes, h: int = 0x811C9DC5) -> int:
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: dict, collision_count: int | None) -> str:
    """Deterministic hash of a pod template (+ collision count), as a short safe string
    (Kubernetes: FNV-32a, the collision count as 8 little-endian bytes, then
    rand.SafeEncodeString of the decimal sum). Go's spew printing of the struct cannot
    be reproduced, so the template is hashed as canonical JSON (sorted keys, compact
    separators): same alphabet and length as Kubernetes', not the same values."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    h = _fnv32a(data)
    if collision_count is not None:
        h = _fnv32a((collision_count & 0xFFFFFFFF).to_bytes(4, "little") + bytes(4), h)
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in str(h).encode())


def scaled_value(value: Any, total: int, round_up: bool) -> int:
    """GetScaledValueFromIntOrPercent: an int as is, "N%" as N% of ``total`` rounded up
    or down (an absent value is 0)."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.endswith("%"):
        raise ValueError(f"invalid value for IntOrString: {value!r} is not a percentage")
    if not _SIGNED.fullmatch(value[:-1]):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    whole, part = divmod(int(value[:-1]) * total, 100)
    return whole + 1 if round_up and part else whole


def resolve_fenceposts(max_surge: Any, max_unavailable: Any, desired: int) -> tuple[int, int]:
    """ResolveFenceposts: (surge rounded up, unavailable rounded down); when both come to
    0, unavailable is 1, on the theory that a surge may not fit the quota."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return _int32(surge), _int32(unavailable)


def max_surge(deployment: Mapping[str, Any]) -> int:
    """MaxSurge: the pods a rolling update may run above replicas (0 for Recreate)."""
    return _Deployment.of(deployment).max_surge


def max_unavailable(deployment: Mapping[str, Any]) -> int:
    """MaxUnavailable: the pods a rolling update may lack, at most replicas (0 for
    Recreate or no replicas)."""
    return _Deployment.of(deployment).max_unavailable


def new_rs_new_replicas(deployment: Mapping[str, Any], replica_sets: Sequence[dict],
                        new_rs: Mapping[str, Any]) -> int:  # fmt: skip
    """NewRSNewReplicas: the size the new ReplicaSet may grow to now, ``replica_sets``
    being all the Deployment's (the new one included, if it is to count)."""
    return _new_replicas(_Deployment.of(deployment), replica_sets, new_rs)


def replica_set_fraction(rs: Mapping[str, Any], deployment: Mapping[str, Any]) -> int:
    """getReplicaSetFraction: by how much a proportional scaling would change ``rs``."""
    return _fraction(rs, _Deployment.of(deployment))


# --- the Deployment as the controller reads it -----------------------------------------------


@attrs.frozen
class _Deployment:
    """The Deployment with the API server's defaults, and what Kubernetes derives from
    its strategy (fenceposts resolved against replicas)."""

    obj: Mapping[str, Any]
    replicas: int
    rolling: bool
    max_surge: int
    max_unavailable: int
    history_limit: int | None  # None: keep every old ReplicaSet
    deadline: int | None  # None: progress is not estimated

    @classmethod
    def of(cls, deployment: Mapping[str, Any]) -> _Deployment:
        spec = _spec(deployment)
        replicas = _int_or(spec.get("replicas"), 1)
        strategy = spec.get("strategy") or {}
        kind = strategy.get("type") or "RollingUpdate"
        if kind not in ("RollingUpdate", "Recreate"):
            raise ValueError(f"unexpected deployment strategy type: {kind}")
        surge = unavailable = 0
        if kind == "RollingUpdate":
            rolling = strategy.get("rollingUpdate") or {}
            surge, unavailable = resolve_fenceposts(_or(rolling.get("maxSurge"), "25%"),
                                                    _or(rolling.get("maxUnavailable"), "25%"),
                                                    replicas)  # fmt: skip
            unavailable = 0 if replicas == 0 else min(unavailable, replicas)
        limit = _int_or(spec.get("revisionHistoryLimit"), 10)
        deadline = _int_or(spec.get("progressDeadlineSeconds"), 600)
        return cls(deployment, replicas, kind == "RollingUpdate", surge, unavailable,
                   None if limit == INT32_MAX else limit,
                   None if deadline == INT32_MAX else deadline)  # fmt: skip

    @property
    def name(self) -> str:
        return _name(self.obj)

    @property
    def generation(self) -> int:
        return _count(_meta(self.obj).get("generation"))

    @property
    def annotations(self) -> dict[str, str]:
        return _annotations(self.obj)

    @property
    def template(self) -> dict:
        return _spec(self.obj).get("template") or {}

    @property
    def min_ready_seconds(self) -> int:
        return _count(_spec(self.obj).get("minReadySeconds"))

    @property
    def status(self) -> Mapping[str, Any]:
        return self.obj.get("status") or {}

    @property
    def paused(self) -> bool:
        return bool(_spec(self.obj).get("paused"))

    @property
    def deleting(self) -> bool:
        return bool(_meta(self.obj).get("deletionTimestamp"))

    @property
    def max_replicas(self) -> int:
        """replicas + maxSurge: the max-replicas annotation."""
        return _int32(self.replicas + self.max_surge)

    def replica_annotations(self) -> dict[str, str]:
        return {DESIRED_REPLICAS: str(self.replicas), MAX_REPLICAS: str(self.max_replicas)}

    def selects_everything(self) -> bool:
        selector = _spec(self.obj).get("selector")
        return isinstance(selector, Mapping) and all(v is None for v in selector.values())


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _int_or(value: Any, default: int) -> int:
    return default if value is None else _count(value)


def _new_replicas(d: _Deployment, all_rss: Sequence[Mapping[str, Any]],
                  new: Mapping[str, Any]) -> int:  # fmt: skip
    if not d.rolling:
        return d.replicas
    current = _sum(_replicas(rs) for rs in all_rss)
    if current >= d.max_replicas:
        return _replicas(new)
    growth = min(_int32(d.max_replicas - current), _int32(d.replicas - _replicas(new)))
    return _int32(_replicas(new) + growth)


def _fraction(rs: Mapping[str, Any], d: _Deployment) -> int:
    if d.replicas == 0:
        return _int32(-_replicas(rs))
    before = _replicas_annotation(rs, MAX_REPLICAS)
    if not before:  # absent, bad or 0 (a third party's edit): the Deployment's size
        before = _status_of(d.obj, "replicas")
        if before == 0:
            return 0
    size = _int32(_replicas(rs) * d.max_replicas) / before
    rounded = math.trunc(size + 0.5) if size >= 0 else math.trunc(size - 0.5)
    return _int32(rounded - _replicas(rs))


def _proportion(rs: Mapping[str, Any], d: _Deployment, to_add: int, added: int) -> int:
    """GetReplicaSetProportion: the fraction, kept within what is still to be added."""
    if _replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    allowed = _int32(to_add - added)
    share = _fraction(rs, d)
    return min(share, allowed) if to_add > 0 else max(share, allowed)


def _saturated(d: _Deployment, rs: Mapping[str, Any] | None) -> bool:
    if rs is None:
        return False
    desired = _parse_int(_annotations(rs).get(DESIRED_REPLICAS), bits=32)
    return (desired == d.replicas and _replicas(rs) == d.replicas
            and _status_of(rs, "availableReplicas") == d.replicas)  # fmt: skip


def _active_or_latest(new: dict | None, olds: Sequence[dict]) -> dict | None:
    """FindActiveOrLatest: the one active ReplicaSet, or the latest if none is active;
    None when several are active."""
    if new is None and not olds:
        return None
    newest_first = sorted(olds, key=_created, reverse=True)
    active = _active([*newest_first, *([new] if new else [])])
    if not active:
        return new if new is not None else newest_first[0]
    return active[0] if len(active) == 1 else None


def _complete(d: _Deployment, status: Mapping[str, Any]) -> bool:
    """DeploymentComplete: every replica updated and available, no old one left."""
    return (_count(status.get("updatedReplicas")) == d.replicas
            and _count(status.get("replicas")) == d.replicas
            and _count(status.get("availableReplicas")) == d.replicas
            and _count(status.get("observedGeneration")) >= d.generation)  # fmt: skip


def _progressing(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """DeploymentProgressing: more updated, ready or available pods, or fewer old ones."""
    old_olds = _int32(_count(old.get("replicas")) - _count(old.get("updatedReplicas")))
    new_olds = _int32(new["replicas"] - new["updatedReplicas"])
    return (new["updatedReplicas"] > _count(old.get("updatedReplicas")) or new_olds < old_olds
            or new["readyReplicas"] > _count(old.get("readyReplicas"))
            or new["availableReplicas"] > _count(old.get("availableReplicas")))  # fmt: skip


# --- conditions ------------------------------------------------------------------------------


def _condition(conditions: Sequence[dict], kind: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _without(conditions: Sequence[dict], kind: str) -> list[dict]:
    return [c for c in conditions if c.get("type") != kind]


def _set_condition(conditions: Sequence[dict], cond: dict) -> list[dict]:
    """SetDeploymentCondition: the same status and reason leave the old one in place; the
    same status keeps its lastTransitionTime; the new one goes last."""
    current = _condition(conditions, cond["type"])
    if current is not None and current.get("status") == cond["status"]:
        if current.get("reason") == cond["reason"]:
            return list(conditions)
        cond = {**cond, "lastTransitionTime": current.get("lastTransitionTime")}
    return [*_without(conditions, cond["type"]), cond]


def _failure_of(rs_condition: Mapping[str, Any]) -> dict:
    """ReplicaSetToDeploymentCondition: both times are the ReplicaSet's transition."""
    c, moment = rs_condition, rs_condition.get("lastTransitionTime")
    return {"type": c.get("type"), "status": c.get("status"), "lastUpdateTime": moment,
            "lastTransitionTime": moment, "reason": c.get("reason"),
            "message": c.get("message")}  # fmt: skip


def _rs_failures(rs: Mapping[str, Any] | None) -> list[dict]:
    conditions = ((rs or {}).get("status") or {}).get("conditions") or ()
    return [c for c in conditions if isinstance(c, Mapping) and c.get("type") == REPLICA_FAILURE]


# --- the ReplicaSets a sync writes -----------------------------------------------------------


def _rescaled(rs: dict, size: int, annotations: dict[str, str]) -> dict:
    m = {**_meta(rs), "annotations": annotations}
    return {**rs, "metadata": m, "spec": {**_spec(rs), "replicas": max(0, size)}}


def _append_history(history: str, old: str) -> str:
    """The revision-history annotation with ``old`` appended, oldest entries dropped to
    keep it within MAX_REVISION_HISTORY_CHARS (unchanged if even that is not enough)."""
    entries = history.split(",")
    if not entries[0]:
        return old
    length, start = len(history) + len(old) + 1, 0
    while length > MAX_REVISION_HISTORY_CHARS and start < len(entries):
        length -= len(entries[start]) + 1
        start += 1
    if length > MAX_REVISION_HISTORY_CHARS:
        return history
    return ",".join([*entries[start:], old])


def _new_rs_annotations(d: _Deployment, rs: Mapping[str, Any], new_revision: int,
                        exists: bool) -> dict[str, str] | None:  # fmt: skip
    """SetNewReplicaSetAnnotations: the new ReplicaSet's annotations as they should be,
    or None if they are so already (or its revision is not a number: left alone)."""
    annotations = _annotations(rs)
    changed = False
    for key, value in d.annotations.items():
        if key not in NOT_COPIED and annotations.get(key) != value:
            annotations[key], changed = value, True
    old_text = annotations.get(REVISION)
    old = _parse_int(old_text) if old_text else 0
    if old is None:
        return None
    if old < new_revision:
        annotations[REVISION], changed = str(new_revision), True
        if old_text is not None:  # a revision reused: a rollback keeps its history
            history = annotations.get(REVISION_HISTORY, "")
            annotations[REVISION_HISTORY] = _append_history(history, old_text)
    if not exists:
        annotations.update(d.replica_annotations())
        changed = True
    return annotations if changed else None


def _new_replica_set(d: _Deployment, name: str, pod_hash: str) -> dict:
    """The new ReplicaSet as getNewReplicaSet builds it, before its size and annotations."""
    m = _meta(d.obj)
    template = copy.deepcopy(d.template)
    t_meta = template.get("metadata") or {}
    labels = {**(t_meta.get("labels") or {}), POD_TEMPLATE_HASH: pod_hash}
    selector = copy.deepcopy(dict(_spec(d.obj).get("selector") or {}))
    selector["matchLabels"] = {**(selector.get("matchLabels") or {}), POD_TEMPLATE_HASH: pod_hash}
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.get("name", ""),
             "uid": m.get("uid", ""), "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    metadata = {"name": name, "namespace": m.get("namespace", ""), "labels": dict(labels),
                "ownerReferences": [owner]}  # fmt: skip
    spec = {"replicas": 0, "minReadySeconds": d.min_ready_seconds, "selector": selector,
            "template": {**template, "metadata": {**t_meta, "labels": labels}}}  # fmt: skip
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": metadata, "spec": spec}


# --- one sync --------------------------------------------------------------------------------


@attrs.define
class _Sync:
    """One sync under way: the ReplicaSets as it leaves them, the Deployment's
    conditions as it leaves them in memory (Kubernetes' ``d.Status.Conditions``), and
    the writes so far."""

    d: _Deployment
    now: float
    given: dict[str, dict]
    current: dict[str, dict]
    conditions: list[dict]
    new_name: str | None = None
    old_names: list[str] = attrs.field(factory=list)
    found: bool = False
    collision: bool = False
    created: dict | None = None
    updated: list[str] = attrs.field(factory=list)
    deletes: list[dict] = attrs.field(factory=list)
    annotations: dict | None = None

    @classmethod
    def start(cls, d: _Deployment, replica_sets: Sequence[dict], now: float) -> _Sync:
        given = {_name(rs): rs for rs in replica_sets}
        conditions = [c for c in d.status.get("conditions") or () if isinstance(c, dict)]
        return cls(d, now, given, dict(given), conditions)

    @property
    def new(self) -> dict | None:
        return self.current[self.new_name] if self.new_name else None

    @property
    def olds(self) -> list[dict]:
        return [self.current[name] for name in self.old_names]

    @property
    def all(self) -> list[dict]:
        new = self.new
        return [*self.olds, *([new] if new else [])]

    def write(self, rs: dict) -> None:
        name = _name(rs)
        self.current[name] = rs
        if self.created is not None and name == _name(self.created):
            self.created = rs
        elif name not in self.updated:
            self.updated.append(name)

    def new_condition(self, kind: str, status: str, reason: str, message: str) -> dict:
        moment = rfc3339(self.now)
        return {"type": kind, "status": status, "lastUpdateTime": moment,
                "lastTransitionTime": moment, "reason": reason, "message": message}  # fmt: skip

    def set_condition(self, kind: str, status: str, reason: str, message: str) -> None:
        cond = self.new_condition(kind, status, reason, message)
        self.conditions = _set_condition(self.conditions, cond)

    def set_revision(self, text: str) -> None:
        annotations = self.annotations if self.annotations is not None else self.d.annotations
        if annotations.get(REVISION, "") != text:
            self.annotations = {**annotations, REVISION: text}

    # --- getAllReplicaSetsAndSyncRevision ------------------------------------------------

    def find_new(self) -> None:
        """Sort the ReplicaSets into the new one and the old ones, and sync the new one's
        annotations (once a sync)."""
        if self.found:
            return
        self.found = True
        ordered = sorted(self.current.values(), key=_created)
        template = self.d.template
        new = next((rs for rs in ordered if equal_ignore_hash(_spec(rs).get("template"), template)),
                   None)  # fmt: skip
        self.old_names = [_name(rs) for rs in ordered if rs is not new]
        if new is not None:
            self.new_name = _name(new)
            self.sync_new(new)

    def next_revision(self) -> int:
        return max((revision(rs) for rs in self.olds), default=0) + 1

    def sync_new(self, new: dict) -> None:
        d = self.d
        annotations = _new_rs_annotations(d, new, self.next_revision(), exists=True)
        stale = _count(_spec(new).get("minReadySeconds")) != d.min_ready_seconds
        if annotations is not None or stale:
            m = {**_meta(new), "annotations": annotations or _annotations(new)}
            spec = {**_spec(new), "minReadySeconds": d.min_ready_seconds}
            self.write({**new, "metadata": m, "spec": spec})
            return  # as Kubernetes: the Deployment's revision follows on the next sync
        self.set_revision(_annotations(new).get(REVISION, ""))
        if d.deadline is not None and _condition(self.conditions, PROGRESSING) is None:
            self.set_condition(PROGRESSING, "True", FOUND_NEW_RS,
                               f'Found new replica set "{_name(new)}"')  # fmt: skip

    def create_new(self) -> None:
        """Create the new ReplicaSet, or find its name taken (a hash collision)."""
        d = self.d
        count = d.status.get("collisionCount")
        pod_hash = template_hash(d.template, count if isinstance(count, int) else None)
        name = f"{d.name}-{pod_hash}"
        if name in self.current:
            self.collision = True
            return
        rs = _new_replica_set(d, name, pod_hash)
        rs["spec"]["replicas"] = max(0, _new_replicas(d, [*self.olds, rs], rs))
        new_revision = self.next_revision()
        rs["metadata"]["annotations"] = _new_rs_annotations(d, rs, new_revision, exists=False)
        self.created, self.current[name], self.new_name = rs, rs, name
        self.set_revision(str(new_revision))
        if d.deadline is not None:
            self.set_condition(PROGRESSING, "True", NEW_RS_CREATED,
                               f'Created new replica set "{name}"')  # fmt: skip

    # --- syncDeployment --------------------------------------------------------------------

    def check_paused(self) -> None:
        """checkPausedConditions: paused and resumed are said, so that a pause does not
        count against the progress deadline (a deadline exceeded stays said)."""
        cond = _condition(self.conditions, PROGRESSING)
        reason = cond.get("reason") if cond else None
        if self.d.deadline is None or reason == TIMED_OUT:
            return
        if self.d.paused and reason != PAUSED:
            self.set_condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused")
        elif not self.d.paused and reason == PAUSED:
            self.set_condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed")

    def is_scaling_event(self) -> bool:
        self.find_new()
        for rs in _active(self.all):
            desired = _replicas_annotation(rs, DESIRED_REPLICAS)
            if desired is not None and desired != self.d.replicas:
                return True
        return False

    def sync(self) -> Plan:
        """``sync``: scale (a scaling event, or paused), clean up if paused, status."""
        self.find_new()
        self.scale()
        if self.d.paused:
            self.cleanup()
        return self.finish(self.calculate_status())

    def roll_out(self, pods: Sequence[dict]) -> Plan:
        return self.rolling() if self.d.rolling else self.recreate(pods)

    # --- scaling ---------------------------------------------------------------------------

    def resize(self, rs: dict, size: int) -> bool:
        """scaleReplicaSetAndRecordEvent: ``rs`` at ``size``, unless it is that size."""
        return _replicas(rs) != size and self.rescale(rs, size)

    def rescale(self, rs: dict, size: int) -> bool:
        """scaleReplicaSet: ``rs`` at ``size`` with the replicas annotations of now, if
        either changes; whether the size did."""
        annotations = _annotations(rs)
        wanted = self.d.replica_annotations()
        resized = _replicas(rs) != size
        if resized or any(annotations.get(k) != v for k, v in wanted.items()):
            self.write(_rescaled(rs, size, {**annotations, **wanted}))
        return resized

    def scale(self) -> None:
        d, new, olds = self.d, self.new, self.olds
        only = _active_or_latest(new, olds)
        if only is not None:
            if _replicas(only) != d.replicas:
                self.resize(only, d.replicas)
            return
        if _saturated(d, new):
            for old in _active(olds):
                self.resize(old, 0)
            return
        if d.rolling:
            self.scale_proportionally(_active(self.all))

    def scale_proportionally(self, active: list[dict]) -> None:
        d = self.d
        allowed = d.max_replicas if d.replicas > 0 else 0
        to_add = _int32(allowed - _sum(_replicas(rs) for rs in active))
        if to_add > 0:  # largest first; among equals the newest gains first
            newest_first = sorted(active, key=_created, reverse=True)
            active = sorted(newest_first, key=lambda rs: -_replicas(rs))
        elif to_add < 0:  # largest first; among equals the oldest loses first
            active = sorted(active, key=lambda rs: (-_replicas(rs), _created(rs)))
        sizes, added = [], 0
        for rs in active:
            share = _proportion(rs, d, to_add, added)
            sizes.append(_int32(_replicas(rs) + share))
            added = _int32(added + share)
        if active and to_add:
            sizes[0] = max(0, _int32(sizes[0] + _int32(to_add - added)))
        for rs, size in zip(active, sizes, strict=True):
            self.rescale(rs, size)

    # --- RollingUpdate ---------------------------------------------------------------------

    def rolling(self) -> Plan:
        self.find_new()
        if self.new is None:
            self.create_new()
            if self.collision:
                return self.finish_collision()
        if self.reconcile_new() or self.reconcile_olds():
            return self.finish_rollout()
        if _complete(self.d, self.d.status):
            self.cleanup()
        return self.finish_rollout()

    def reconcile_new(self) -> bool:
        d, new = self.d, self.new
        assert new is not None
        if _replicas(new) == d.replicas:
            return False
        if _replicas(new) > d.replicas:
            return self.resize(new, d.replicas)
        return self.resize(new, _new_replicas(d, self.all, new))

    def reconcile_olds(self) -> bool:
        """reconcileOldReplicaSets: at most maxScaledDown = all pods - minAvailable - the
        new ReplicaSet's unavailable pods, unhealthy replicas first."""
        d, new = self.d, self.new
        olds = _active(self.olds)
        if _sum(_replicas(rs) for rs in olds) == 0:
            return False
        all_pods = _sum(_replicas(rs) for rs in self.all)
        min_available = _int32(d.replicas - d.max_unavailable)
        new_unavailable = _int32(_replicas(new) - _status_of(new, "availableReplicas"))
        max_scaled_down = _int32(_int32(all_pods - min_available) - new_unavailable)
        if max_scaled_down <= 0:
            return False
        cleaned = self.cleanup_unhealthy(olds, max_scaled_down)
        if cleaned is None:
            return False
        scaled = self.scale_down_olds([self.current[_name(rs)] for rs in olds])
        return cleaned + scaled > 0

    def cleanup_unhealthy(self, olds: list[dict], limit: int) -> int | None:
        """cleanupUnhealthyReplicas, oldest first; None where Kubernetes fails the step
        (a ReplicaSet with more available replicas than it wants, its status behind)."""
        total = 0
        for rs in sorted(olds, key=_created):
            if total >= limit:
                break
            replicas, available = _replicas(rs), _status_of(rs, "availableReplicas")
            if replicas == 0 or replicas == available:
                continue
            count = min(_int32(limit - total), _int32(replicas - available))
            if count < 0:
                return None
            self.resize(rs, replicas - count)
            total = _int32(total + count)
        return total

    def scale_down_olds(self, olds: list[dict]) -> int:
        """scaleDownOldReplicaSetsForRollingUpdate: oldest first, down to minAvailable."""
        d = self.d
        min_available = _int32(d.replicas - d.max_unavailable)
        counted = [*olds, *([self.new] if self.new else [])]
        available = _sum(_status_of(rs, "availableReplicas") for rs in counted)
        if available <= min_available:
            return 0
        wanted, total = _int32(available - min_available), 0
        for rs in sorted(olds, key=_created):
            if total >= wanted:
                break
            if _replicas(rs) == 0:
                continue
            count = min(_replicas(rs), _int32(wanted - total))
            self.resize(rs, _replicas(rs) - count)
            total = _int32(total + count)
        return total

    # --- Recreate --------------------------------------------------------------------------

    def recreate(self, pods: Sequence[dict]) -> Plan:
        self.find_new()
        scaled_down = False
        for old in _active(self.olds):
            scaled_down = self.resize(old, 0) or scaled_down
        if scaled_down or self.old_pods_running(pods):
            return self.finish_rollout()
        if self.new is None:
            self.create_new()
            if self.collision:
                return self.finish_collision()
        new = self.new
        assert new is not None
        self.resize(new, self.d.replicas)
        if _complete(self.d, self.d.status):
            self.cleanup()
        return self.finish_rollout()

    def old_pods_running(self, pods: Sequence[dict]) -> bool:
        """oldPodsRunning: an old ReplicaSet still counts replicas, or one of its pods is
        neither Succeeded nor Failed (Unknown counts: it may still run)."""
        if _sum(_status_of(rs, "replicas") for rs in self.olds) > 0:
            return True
        olds = {_meta(rs).get("uid") for rs in self.olds} - {None, ""}
        for pod in pods:
            ref = _controller_of(pod)
            phase = (pod.get("status") or {}).get("phase")
            if ref is not None and ref.get("uid") in olds and phase not in ("Succeeded",
                                                                             "Failed"):  # fmt: skip
                return True
        return False

    # --- cleanupDeployment -----------------------------------------------------------------

    def cleanup(self) -> None:
        limit = self.d.history_limit
        if limit is None:
            return
        alive = [self.given[name] for name in self.old_names
                 if not _meta(self.given[name]).get("deletionTimestamp")]  # fmt: skip
        excess = len(alive) - limit
        for rs in sorted(alive, key=lambda rs: (revision(rs), _created(rs)))[:max(0, excess)]:
            busy = _status_of(rs, "replicas") != 0 or _replicas(rs) != 0
            unobserved = _count(_meta(rs).get("generation")) > _status_of(rs, "observedGeneration")
            if not (busy or unobserved or _name(rs) in self.updated):
                self.deletes.append(rs)

    # --- status ----------------------------------------------------------------------------

    def calculate_status(self) -> dict:
        d, rss, new = self.d, self.all, self.new
        available = _sum(_status_of(rs, "availableReplicas") for rs in rss)
        status: dict[str, Any] = {
            "observedGeneration": d.generation,
            "replicas": _sum(_status_of(rs, "replicas") for rs in rss),
            "updatedReplicas": _status_of(new, "replicas"),
            "readyReplicas": _sum(_status_of(rs, "readyReplicas") for rs in rss),
            "availableReplicas": available,
            "unavailableReplicas": max(0, _int32(_sum(_replicas(rs) for rs in rss) - available)),
        }
        if available >= _int32(d.replicas - d.max_unavailable):
            cond = self.new_condition(AVAILABLE, "True", MIN_AVAILABLE,
                                      "Deployment has minimum availability.")  # fmt: skip
        else:
            cond = self.new_condition(AVAILABLE, "False", MIN_UNAVAILABLE,
                                      "Deployment does not have minimum availability.")  # fmt: skip
        status["conditions"] = _set_condition(self.conditions, cond)
        if isinstance(d.status.get("collisionCount"), int):
            status["collisionCount"] = d.status["collisionCount"]
        return status

    def finish_rollout(self) -> Plan:
        """syncRolloutStatus: the status with Progressing estimated and ReplicaFailure
        copied, and when to look again for the progress deadline."""
        d = self.d
        status = self.calculate_status()
        if d.deadline is None:
            status["conditions"] = _without(status["conditions"], PROGRESSING)
        current = _condition(self.conditions, PROGRESSING)
        settled = (status["replicas"] == status["updatedReplicas"] and current is not None
                   and current.get("reason") == NEW_RS_AVAILABLE)  # fmt: skip
        if d.deadline is not None and not settled:
            status["conditions"] = self.progress(status, current)
        failures = _rs_failures(self.new) or [c for rs in self.all for c in _rs_failures(rs)]
        if failures:
            status["conditions"] = _set_condition(status["conditions"], _failure_of(failures[0]))
        else:
            status["conditions"] = _without(status["conditions"], REPLICA_FAILURE)
        return self.finish(status, self.requeue_after(status))

    def progress(self, status: dict, current: dict | None) -> list[dict]:
        new = self.new
        subject = f'ReplicaSet "{_name(new)}"' if new else f'Deployment "{self.d.name}"'
        conditions = status["conditions"]
        if _complete(self.d, status):
            cond = self.new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                      f"{subject} has successfully progressed.")  # fmt: skip
            return _set_condition(conditions, cond)
        if _progressing(self.d.status, status):
            # Unlike the other reasons, progress renews lastUpdateTime every time.
            cond = self.new_condition(PROGRESSING, "True", RS_UPDATED, f"{subject} is progressing.")
            if current is not None:
                if current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                conditions = _without(conditions, PROGRESSING)
            return _set_condition(conditions, cond)
        if self.timed_out(status):
            cond = self.new_condition(PROGRESSING, "False", TIMED_OUT,
                                      f"{subject} has timed out progressing.")  # fmt: skip
            return _set_condition(conditions, cond)
        return conditions

    def timed_out(self, status: Mapping[str, Any]) -> bool:
        """DeploymentTimedOut: no progress since lastUpdateTime + progressDeadlineSeconds."""
        cond = _condition(status["conditions"], PROGRESSING)
        if cond is None or self.d.deadline is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        since = parse_rfc3339(cond.get("lastUpdateTime"))
        return since is None or since + self.d.deadline < self.now

    def requeue_after(self, status: Mapping[str, Any]) -> float | None:
        """requeueStuckDeployment: a rollout that may yet time out is looked at again a
        second after its deadline (that second is Kubernetes', against clock skew).
        Kubernetes also requeues, rate-limited, a Deployment whose condition says
        NewReplicaSetAvailable, which can never time out; that requeue is left out."""
        cond = _condition(status["conditions"], PROGRESSING)
        if self.d.deadline is None or cond is None or _complete(self.d, status):
            return None
        if cond.get("reason") in (TIMED_OUT, NEW_RS_AVAILABLE):
            return None
        since = parse_rfc3339(cond.get("lastUpdateTime"))
        after = -math.inf if since is None else since + self.d.deadline - self.now
        return max(after, 0.0) + 1.0

    def finish_collision(self) -> Plan:
        """The hash-collision path: only the status, with collisionCount one higher."""
        status = dict(self.d.status)
        if self.conditions or "conditions" in status:
            status["conditions"] = list(self.conditions)
        status["collisionCount"] = _int32(_count(status.get("collisionCount")) + 1)
        return self.finish(status)

    def finish(self, status: dict, requeue_after: float | None = None) -> Plan:
        updates = tuple(self.current[name] for name in self.updated)
        return Plan(self.created, updates, tuple(self.deletes), self.annotations, status,
                    requeue_after)  # fmt: skip


def plan(deployment: dict, replica_sets: list[dict], pods: list[dict], now: float) -> Plan:
    """One sync of the Deployment (Kubernetes' syncDeployment), given the ReplicaSets it
    owns (controller ownerReference to it; adoption/release is the caller's job), the pods
    of those ReplicaSets (for Recreate's wait and nothing else), and the wall-clock time
    now (seconds since the epoch; timestamps in objects are RFC 3339 'YYYY-MM-DDTHH:MM:SSZ').

    See the module rules for what it does; it raises ValueError where the API server's
    validation would have refused the Deployment."""
    d = _Deployment.of(deployment)
    sync = _Sync.start(d, replica_sets, now)
    if d.selects_everything():
        status = dict(d.status)
        status["observedGeneration"] = max(_count(status.get("observedGeneration")), d.generation)
        return sync.finish(status)
    if d.deleting:
        sync.find_new()
        return sync.finish(sync.calculate_status())
    sync.check_paused()
    if d.paused or sync.is_scaling_event():
        return sync.sync()
    return sync.roll_out(pods)
