"""The pure core of the node lifecycle controller: whether a node still proves it is
alive, the conditions to write when it stopped, its taints, the health of its zone and
how fast NoExecute taints may be added there (kube-controller-manager's
pkg/controller/nodelifecycle, as Kubernetes 1.30+ behaves).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; every function returns new
  values. Time is given (``now``, seconds since the epoch, the controller's own clock);
  nothing here reads a clock.
- A node is alive while its Ready condition's ``lastHeartbeatTime`` or its Lease's
  ``renewTime`` keeps changing. What counts is when the *controller* saw the change
  (``Health.probe``, Kubernetes' probeTimestamp), never the time the kubelet wrote: a
  node's clock may be wrong, so its timestamps are only compared with their own
  previous values. A renewTime that moved backwards (a machine whose clock stepped
  back) is a change too.
- When nothing changed for ``node_monitor_grace_period`` (``node_startup_grace_period``
  for a node that never posted Ready, counted from its creationTimestamp), Ready,
  MemoryPressure, DiskPressure and PIDPressure become Unknown: reason NodeStatusUnknown,
  message "Kubelet stopped posting node status.", lastTransitionTime now, heartbeat
  kept; a condition the kubelet never posted is added as NodeStatusNeverUpdated.
  NetworkUnavailable is left alone (the network plugin owns it).
- NoSchedule taints follow the conditions at once (``no_schedule_diff``): Ready False
  -> not-ready, Ready Unknown -> unreachable, MemoryPressure, DiskPressure, PIDPressure
  or NetworkUnavailable True -> their taint, spec.unschedulable -> unschedulable. Only
  taints with those keys are the controller's; any other taint is left alone.
- NoExecute taints follow Ready as the controller last *observed* it before this pass
  (``no_execute_step``): not-ready for False, unreachable for Unknown, none for True.
  One replaces the other at once; a node that has neither waits its turn in its zone's
  ``Tainter`` (RateLimitedTimedQueue), whose token bucket (burst 1) sets the pace.
- Zones (``zone_key``: the region and zone labels) are Normal, PartialDisruption (more
  than two nodes and at least ``unhealthy_zone_threshold`` of them not Ready) or
  FullDisruption (none Ready). Their tainting rate: Normal and FullDisruption
  ``node_eviction_rate``; PartialDisruption ``secondary_node_eviction_rate`` if the zone
  has more than ``large_cluster_size_threshold`` nodes, else 0. When every zone is in
  FullDisruption the control plane is the likelier culprit: all NoExecute taints go and
  tainting stops, until a node is Ready again (``handle_disruption``).
- Every taint the controller adds carries ``timeAdded``; a taint it keeps keeps its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import parse_rfc3339, rfc3339

from ._fields import meta as _meta

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
EXCLUDE_DISRUPTION = "node.kubernetes.io/exclude-disruption"
LEASE_NAMESPACE = "kube-node-lease"

NO_SCHEDULE, NO_EXECUTE = "NoSchedule", "NoExecute"
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

NORMAL = "Normal"
PARTIAL_DISRUPTION = "PartialDisruption"
FULL_DISRUPTION = "FullDisruption"
INITIAL = "Initial"  # a zone seen for the first time, not yet assessed

# Which condition, in which status, means which taint (nodeConditionToTaintKeyStatusMap).
_CONDITION_TAINTS = {
    "Ready": {FALSE: NOT_READY, UNKNOWN: UNREACHABLE},
    "MemoryPressure": {TRUE: MEMORY_PRESSURE},
    "DiskPressure": {TRUE: DISK_PRESSURE},
    "NetworkUnavailable": {TRUE: NETWORK_UNAVAILABLE},
    "PIDPressure": {TRUE: PID_PRESSURE},
}
_CONTROLLER_KEYS = frozenset(k for m in _CONDITION_TAINTS.values() for k in m.values()) | {
    UNSCHEDULABLE
}
# The conditions a silent node has Unknown; NetworkUnavailable is the network plugin's.
_KUBELET_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")

NOT_READY_NO_EXECUTE = {"key": NOT_READY, "effect": NO_EXECUTE}
UNREACHABLE_NO_EXECUTE = {"key": UNREACHABLE, "effect": NO_EXECUTE}


@attrs.frozen
class NodeLifecycleConfig:
    """The node lifecycle controller's settings (kube-controller-manager's flags, in
    seconds and nodes per second)."""

    node_monitor_period: float = 5.0  # how often every node is looked at
    node_monitor_grace_period: float = 50.0  # silence before a node is Unknown
    node_startup_grace_period: float = 60.0  # the same, for a node that never posted Ready
    node_eviction_rate: float = 0.1  # NoExecute taintings per second in a healthy zone
    secondary_node_eviction_rate: float = 0.01  # ... in a partly disrupted large zone
    large_cluster_size_threshold: int = 50  # a zone above this many nodes is large
    unhealthy_zone_threshold: float = 0.55  # the not-Ready fraction of partial disruption

    def __attrs_post_init__(self) -> None:
        if not 0 < self.node_monitor_period < self.node_monitor_grace_period:
            raise ValueError("node_monitor_period must be positive and below the grace period")


# --- reading nodes ----------------------------------------------------------------------


def condition(node: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (node.get("status") or {}).get("conditions") or ():
        if c.get("type") == kind:
            return c
    return None


def ready_status(node: Mapping[str, Any]) -> str | None:
    """The Ready condition's status, None if the node has none."""
    c = condition(node, "Ready")
    return None if c is None else c.get("status") or UNKNOWN


def taints_of(node: Mapping[str, Any]) -> list[dict]:
    return list((node.get("spec") or {}).get("taints") or ())


def has_taint(taints: Iterable[Mapping[str, Any]], wanted: Mapping[str, Any]) -> bool:
    """Whether a taint with ``wanted``'s key and effect is there (Taint.MatchTaint)."""
    return any(_same(t, wanted) for t in taints)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def zone_key(node: Mapping[str, Any]) -> str:
    """The node's zone (GetZoneKey): region and zone from the topology labels (or their
    deprecated failure-domain.beta names); "" when it has neither."""
    labels = _meta(node).get("labels") or {}
    zone = labels.get("topology.kubernetes.io/zone",
                      labels.get("failure-domain.beta.kubernetes.io/zone", ""))  # fmt: skip
    region = labels.get("topology.kubernetes.io/region",
                        labels.get("failure-domain.beta.kubernetes.io/region", ""))  # fmt: skip
    # A NUL never occurs in either, so no two (region, zone) pairs share a key.
    return f"{region}:\x00:{zone}" if region or zone else ""


def excluded_from_disruption(node: Mapping[str, Any]) -> bool:
    return EXCLUDE_DISRUPTION in (_meta(node).get("labels") or {})


# --- health -------------------------------------------------------------------------------


@attrs.frozen
class Health:
    """What the controller last saw of a node (nodeHealthData): when a heartbeat last
    changed by its own clock (``probe``), the Ready heartbeat and the Lease renewTime it
    saw then (None: none seen)."""

    probe: float
    heartbeat: str | None = None
    renew: str | None = None


@attrs.frozen
class Assessment:
    """One look at one node (tryUpdateNodeHealth). ``observed``: Ready as the node had
    it (Unknown when it has none); ``current``: Ready once ``conditions`` are written
    (None: still none). ``conditions``: the node's new status.conditions, None when
    nothing needs writing. ``health``: what to remember once they are."""

    health: Health
    observed: str
    current: str | None
    conditions: tuple[dict, ...] | None


def assess(
    saved: Health | None,
    node: Mapping[str, Any],
    lease: Mapping[str, Any] | None,
    now: float,
    config: NodeLifecycleConfig,
) -> Assessment:
    """Look at ``node`` (and its Lease) with what was ``saved`` from the last look."""
    ready = condition(node, "Ready")
    created = parse_rfc3339(_meta(node).get("creationTimestamp"))
    if ready is None:
        grace = config.node_startup_grace_period
        # Never posted: the startup grace counts from the node's creation.
        if saved is None:
            health = Health(probe=now if created is None else created)
        elif saved.heartbeat is not None:
            # Its Ready condition was there and is gone: a new start, as Kubernetes
            # ("ReadyCondition was removed from Status") resets the probe time.
            health = Health(probe=now)
        else:
            health = saved
        health = attrs.evolve(health, heartbeat=None)
    else:
        grace = config.node_monitor_grace_period
        heartbeat = ready.get("lastHeartbeatTime")
        health = saved or Health(probe=now)
        if saved is None or saved.heartbeat is None or saved.heartbeat != heartbeat:
            health = attrs.evolve(health, probe=now, heartbeat=heartbeat)
    renew = ((lease or {}).get("spec") or {}).get("renewTime")
    if renew and renew != health.renew:
        health = attrs.evolve(health, probe=now, renew=renew)
    observed = UNKNOWN if ready is None else ready.get("status") or UNKNOWN
    current = None if ready is None else observed
    if now <= health.probe + grace:
        return Assessment(health, observed, current, None)
    conditions = _silenced(node, now)
    if conditions is None:
        return Assessment(health, observed, current, None)
    written = next(c for c in conditions if c["type"] == "Ready")
    health = attrs.evolve(health, heartbeat=written.get("lastHeartbeatTime"))
    return Assessment(health, observed, UNKNOWN, conditions)


def _silenced(node: Mapping[str, Any], now: float) -> tuple[dict, ...] | None:
    """The node's conditions with the kubelet's four Unknown; None if they are already."""
    stamp = rfc3339(now)
    conditions = [dict(c) for c in (node.get("status") or {}).get("conditions") or ()]
    changed = False
    for kind in _KUBELET_CONDITIONS:
        c = next((c for c in conditions if c.get("type") == kind), None)
        if c is None:
            conditions.append({"type": kind, "status": UNKNOWN,
                               "reason": "NodeStatusNeverUpdated",
                               "message": "Kubelet never posted node status.",
                               "lastHeartbeatTime": _meta(node).get("creationTimestamp"),
                               "lastTransitionTime": stamp})  # fmt: skip
            changed = True
        elif c.get("status") != UNKNOWN:
            c.update(status=UNKNOWN, reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.",
                     lastTransitionTime=stamp)  # fmt: skip
            changed = True
    return tuple(conditions) if changed else None


# --- taints -------------------------------------------------------------------------------


def swap_taints(
    taints: Sequence[Mapping[str, Any]],
    add: Iterable[Mapping[str, Any]],
    remove: Iterable[Mapping[str, Any]],
    now: float,
) -> list[dict]:
    """``taints`` without those matching ``remove`` (key and effect) and with ``add``
    (SwapNodeControllerTaint). A taint added is stamped ``timeAdded`` now; one already
    there is kept as it is, its timeAdded with it (the eviction clock keeps running)."""
    remove = list(remove)
    result = [dict(t) for t in taints if not any(_same(t, r) for r in remove)]
    for taint in add:
        if not has_taint(result, taint):
            result.append({**taint, "timeAdded": rfc3339(now)})
    return result


def no_schedule_diff(node: Mapping[str, Any]) -> tuple[list[dict], list[dict]]:
    """(to add, to remove): the NoSchedule taints the node's conditions and
    spec.unschedulable call for, against the controller's NoSchedule taints it has
    (doNoScheduleTaintingPass)."""
    wanted = []
    for c in (node.get("status") or {}).get("conditions") or ():
        key = _CONDITION_TAINTS.get(c.get("type"), {}).get(c.get("status"))
        if key is not None:
            wanted.append({"key": key, "effect": NO_SCHEDULE})
    if (node.get("spec") or {}).get("unschedulable"):
        wanted.append({"key": UNSCHEDULABLE, "effect": NO_SCHEDULE})
    have = [t for t in taints_of(node)
            if t.get("effect") == NO_SCHEDULE and t.get("key") in _CONTROLLER_KEYS]  # fmt: skip
    add = [t for t in wanted if not has_taint(have, t)]
    remove = [t for t in have if not has_taint(wanted, t)]
    return add, remove


@attrs.frozen
class NoExecuteStep:
    """What one pass does about a node's NoExecute taints (processTaintBaseEviction):
    ``swap`` (add, remove) at once; or ``queue`` it for rate-limited tainting, as a new
    entry if ``fresh`` (its taint is missing, so an old entry is stale); or ``clear``
    both taints and its queue entry (it is Ready)."""

    swap: tuple[dict, dict] | None = None
    queue: bool = False
    fresh: bool = False
    clear: bool = False


def no_execute_step(observed: str, taints: Sequence[Mapping[str, Any]]) -> NoExecuteStep:
    """The step for a node whose Ready was ``observed`` before this pass."""
    if observed == TRUE:
        return NoExecuteStep(clear=True)
    wanted, opposite = no_execute_taints_for(observed)
    if has_taint(taints, opposite):
        # The two mirror Ready, so one replaces the other without waiting for a token.
        return NoExecuteStep(swap=(wanted, opposite))
    return NoExecuteStep(queue=True, fresh=not has_taint(taints, wanted))


def no_execute_taints_for(ready: str) -> tuple[dict, dict]:
    """(the NoExecute taint for Ready ``ready`` (False or Unknown), the opposite one)."""
    if ready == FALSE:
        return NOT_READY_NO_EXECUTE, UNREACHABLE_NO_EXECUTE
    return UNREACHABLE_NO_EXECUTE, NOT_READY_NO_EXECUTE


def pod_not_ready(pod: Mapping[str, Any], now: float) -> dict | None:
    """The pod's status with its Ready condition False (MarkPodsNotReady), its
    lastTransitionTime now; None if it is False already or the pod has none."""
    status = dict(pod.get("status") or {})
    conditions = []
    changed = False
    for c in status.get("conditions") or ():
        if c.get("type") == "Ready" and c.get("status") != FALSE:
            c = {**c, "status": FALSE, "lastTransitionTime": rfc3339(now)}
            changed = True
        conditions.append(c)
    if not changed:
        return None
    return {**status, "conditions": conditions}


# --- zones --------------------------------------------------------------------------------


def zone_state(ready: Sequence[str | None], config: NodeLifecycleConfig) -> tuple[int, str]:
    """(how many nodes are not Ready, the zone's state) of a zone whose nodes' Ready
    statuses are ``ready`` (ComputeZoneState; None: a node with no Ready condition)."""
    not_ready = sum(1 for r in ready if r != TRUE)
    if not_ready and not_ready == len(ready):
        return not_ready, FULL_DISRUPTION
    if not_ready > 2 and not_ready / len(ready) >= config.unhealthy_zone_threshold:
        return not_ready, PARTIAL_DISRUPTION
    return not_ready, NORMAL


def zone_rate(state: str, size: int, config: NodeLifecycleConfig) -> float:
    """NoExecute taintings per second in a zone of ``size`` nodes in ``state``."""
    if state == PARTIAL_DISRUPTION:
        # A small zone half down is likelier a network problem than dead machines.
        large = size > config.large_cluster_size_threshold
        return config.secondary_node_eviction_rate if large else 0.0
    return config.node_eviction_rate


ENTER_MASTER_DISRUPTION = "enter"
EXIT_MASTER_DISRUPTION = "exit"


@attrs.frozen
class Disruption:
    """What one pass decides about zones (handleDisruption): their ``states`` from now
    on, the new ``rates`` of the zones whose rate changes, and ``mode``:
    ENTER_MASTER_DISRUPTION (every zone lost all its nodes: clear every NoExecute taint,
    ``rates`` are all 0), EXIT_MASTER_DISRUPTION (some node is back: every node's
    ``probe`` restarts now, so none is judged on the silence of the outage), or None."""

    states: Mapping[str, str]
    rates: Mapping[str, float]
    mode: str | None = None


def handle_disruption(
    previous: Mapping[str, str],
    zones: Mapping[str, Sequence[str | None]],
    config: NodeLifecycleConfig,
) -> Disruption:
    """Zone states and rates after a pass that saw, per zone, the Ready statuses
    ``zones`` (excluded nodes left out); ``previous``: the states before it."""
    new = {zone: zone_state(ready, config)[1] for zone, ready in zones.items()}
    before = {zone: previous.get(zone, INITIAL) for zone in zones}  # zones gone are dropped
    all_are = all(s == FULL_DISRUPTION for s in new.values())
    all_were = all(s == FULL_DISRUPTION for s in before.values())
    if all_are and all_were:
        return Disruption(before, {})
    if all_are:
        return Disruption({z: FULL_DISRUPTION for z in before}, {z: 0.0 for z in before},
                          ENTER_MASTER_DISRUPTION)  # fmt: skip
    if all_were:
        rates = {z: zone_rate(new[z], len(zones[z]), config) for z in before}
        return Disruption(new, rates, EXIT_MASTER_DISRUPTION)
    rates = {z: zone_rate(new[z], len(zones[z]), config) for z in before if new[z] != before[z]}
    return Disruption(new, rates)


# --- the rate-limited tainting queue ------------------------------------------------------------


@attrs.frozen
class TokenBucket:
    """client-go's token bucket with a burst of one (the eviction limiter): ``rate``
    tokens a second, at most one saved; a rate of 0 never gives one. ``tokens`` is what
    it held at time ``at``."""

    rate: float
    tokens: float = 1.0
    at: float = 0.0

    def _now(self, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        return min(1.0, self.tokens + max(0.0, now - self.at) * self.rate)

    def take(self, now: float) -> tuple[TokenBucket, bool]:
        """(the bucket after, whether a token was there to take)."""
        tokens = self._now(now)
        if tokens < 1.0:
            return attrs.evolve(self, tokens=tokens, at=now), False
        return attrs.evolve(self, tokens=tokens - 1.0, at=now), True

    def next_token(self, now: float) -> float | None:
        """When a token is there (now or later); None: never."""
        if self.rate <= 0:
            return None
        return now + (1.0 - self._now(now)) / self.rate

    def with_rate(self, rate: float, now: float) -> TokenBucket:
        """The bucket at another rate (SwapLimiter): full, unless this one is empty now,
        so swapping never hands out an extra token."""
        if rate == self.rate:
            return self
        if rate <= 0:
            return TokenBucket(0.0, 0.0, now)
        return TokenBucket(rate, 1.0 if self._now(now) >= 1.0 else 0.0, now)


@attrs.frozen
class Queued:
    """A node waiting for its NoExecute taint: its name and uid, and when it may be
    tried (``process_at``)."""

    name: str
    uid: str
    process_at: float


@attrs.frozen
class Tainter:
    """One zone's RateLimitedTimedQueue: nodes to taint, in ``process_at`` order (ties
    in the order they came), one per token. ``members`` are the nodes queued or done
    and not removed since: a node is queued once until ``remove``d, so a node tainted
    once is not tainted again every pass."""

    bucket: TokenBucket
    queue: tuple[Queued, ...] = ()
    members: frozenset[str] = frozenset()

    @classmethod
    def at_rate(cls, rate: float, now: float) -> Tainter:
        return cls(TokenBucket(rate, 1.0, now))

    def add(self, name: str, uid: str, now: float) -> Tainter:
        if name in self.members:
            return self
        return attrs.evolve(self, queue=self._sorted((*self.queue, Queued(name, uid, now))),
                            members=self.members | {name})  # fmt: skip

    def remove(self, name: str) -> Tainter:
        """Off the queue, and free to come back."""
        return attrs.evolve(self, queue=tuple(q for q in self.queue if q.name != name),
                            members=self.members - {name})  # fmt: skip

    def done(self, name: str) -> Tainter:
        """Off the queue, still a member (RemoveFromQueue): not queued again until
        removed."""
        return attrs.evolve(self, queue=tuple(q for q in self.queue if q.name != name))

    def retry(self, name: str, at: float) -> Tainter:
        queue = tuple(attrs.evolve(q, process_at=at) if q.name == name else q
                      for q in self.queue)  # fmt: skip
        return attrs.evolve(self, queue=self._sorted(queue))

    def take(self, now: float) -> tuple[Tainter, Queued | None]:
        """The first node due now, if a token lets it go (the token is spent); the
        caller then calls ``done`` or ``retry`` for it."""
        if not self.queue or self.queue[0].process_at > now:
            return self, None
        bucket, ok = self.bucket.take(now)
        return attrs.evolve(self, bucket=bucket), self.queue[0] if ok else None

    def next_attempt(self, now: float) -> float | None:
        """When ``take`` may next give a node; None: not until something changes."""
        if not self.queue:
            return None
        token = self.bucket.next_token(now)
        return None if token is None else max(token, self.queue[0].process_at)

    def with_rate(self, rate: float, now: float) -> Tainter:
        return attrs.evolve(self, bucket=self.bucket.with_rate(rate, now))

    @staticmethod
    def _sorted(queue: Iterable[Queued]) -> tuple[Queued, ...]:
        return tuple(sorted(queue, key=lambda q: q.process_at))  # stable: ties keep order
