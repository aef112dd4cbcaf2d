"""The pure core of the DaemonSet controller: which nodes should run a DaemonSet's pod,
what one sync creates and deletes (manage, then the rolling update), the history of its
templates as ControllerRevisions, and its status (kube-controller-manager's
pkg/controller/daemon, daemon_controller.go, update.go and util, as Kubernetes 1.30
behaves, the default scheduler placing daemon pods).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; every function returns new
  ones. Nothing here reads a clock: ``now`` is given (wall-clock seconds).
- Eligibility (NodeShouldRunDaemonPod) is that of the pod the DaemonSet would make for
  the node: its template plus the automatic tolerations. A template spec.nodeName that
  is another node's, or a nodeSelector or required node affinity the node does not
  match: neither run there nor keep running. An untolerated NoSchedule or NoExecute
  taint: start nothing there, but keep a running pod unless a NoExecute taint is
  untolerated (a running pod survives a new NoSchedule taint). spec.unschedulable is
  not read: daemon pods tolerate the unschedulable taint, so a cordoned node keeps them.
- The automatic tolerations (AddOrUpdateDaemonPodTolerations), operator Exists and for
  ever: not-ready and unreachable NoExecute; disk-pressure, memory-pressure,
  pid-pressure and unschedulable NoSchedule; network-unavailable NoSchedule for
  hostNetwork pods. A template toleration with the same key, operator, value and effect
  is replaced by it (its tolerationSeconds dropped).
- A new pod is the template with those tolerations, the controller-revision-hash label
  of the current revision, the DaemonSet as controller, and as required node affinity
  the single term ``matchFields metadata.name In [<node>]`` in place of the template's
  required terms (ReplaceDaemonSetPodNodeNameNodeAffinity; preferred terms stay). A
  pod's node is spec.nodeName, or that term's node while it is unscheduled.
- Which pods count, per node (getNodesToDaemonPods): the DaemonSet's pods but those
  both terminal (Succeeded, Failed) and marked for deletion.
- manage (podsShouldBeOnNode), node by node in name order: an eligible node without a
  pod gets one. Where a pod may keep running, pods marked for deletion are left alone;
  a Succeeded pod is deleted; a Failed one is deleted unless its node's failed-pod
  backoff (1 s doubling to 15 min, keyed by uid, observedGeneration and node) is on,
  in which case the sync comes back when it ends; of the rest, without surge, all but
  the oldest (scheduled first, then creation, then name) are deleted; with surge, the
  oldest of the current hash and the oldest of another are kept, the others deleted,
  and of those two the old one goes once it is not ready or the new one is available;
  with surge and no pod left an eligible node gets one. Where a pod may not keep
  running, every pod not already going is deleted. Unscheduled pods meant for nodes
  that no longer exist are deleted (nothing else would: PodGC only removes pods bound
  to a node).
- The rolling update runs in a sync only when manage has nothing to write, for
  strategy RollingUpdate (OnDelete only replaces pods deleted by others). maxSurge and
  maxUnavailable are ints or percents of the eligible nodes, rounded up; both 0 means
  maxUnavailable 1. A node counts by its pods not marked for deletion; more than one of
  the current hash or of an older one leaves it to manage, and counts as unavailable
  (without surge) or surging (with). Without surge: a node with no pod, or an old and a
  new one, or an unavailable new one, is unavailable; an unavailable old pod is
  deleted at once (and counts); available old pods are deleted, nodes in name order,
  as many as maxUnavailable less the unavailable nodes allows; manage then creates
  their replacements. With surge: a node whose old pod is unavailable gets a new pod at once
  (its old pod is deleted instead if the node is no longer eligible); up to maxSurge
  less the nodes still waiting for a new pod to be available get a new pod beside an
  available old one; an old pod whose new one is available is deleted; old pods on
  nodes no longer eligible are deleted only as far as more pods are available than
  nodes are eligible.
- At most ``BURST_REPLICAS`` creations and as many deletions a sync.
- History (constructHistory, dedupCurHistories, cleanupHistory): a ControllerRevision
  ``<ds>-<hash>`` holds the template in Kubernetes' patch form, ``{"spec": {"template":
  {..., "$patch": "replace"}}}``, which ``kubectl rollout undo`` applies as it is, and
  carries the template's labels, the DaemonSet's annotations and the hash label. The
  revisions that match the template (the stored template equal to the DaemonSet's by
  ``equal_ignore_hash``, JSON being compared as values here, not as bytes) are current;
  the one with the highest revision is kept, its revision raised to above every old
  one's, the others deleted once the pods labelled with their hash carry its hash
  (Kubernetes relabels every pod of another hash, old templates' too, which would then
  count as updated and never be rolled: here only the duplicates' pods). One without
  the hash label gets its name as label. None current: a new one, revision
  highest + 1, hash ``template_hash(template, status.collisionCount)``. Old revisions
  beyond spec.revisionHistoryLimit (10 by default) go, lowest revision first, but not
  one whose hash a pod still carries.
- Status (updateDaemonSetStatus), over the nodes: desiredNumberScheduled (eligible),
  currentNumberScheduled (eligible with a pod), numberMisscheduled (not eligible, with
  a pod); of each eligible node's oldest pod: numberReady, numberAvailable (ready for
  minReadySeconds) and updatedNumberScheduled (of the current hash);
  numberUnavailable is desired - available. observedGeneration moves only in a sync
  that was free to act (expectations met).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from actorkube.apiserver._meta import parse_rfc3339
from actorkube.scheduler import CycleState, NodeInfo
from actorkube.scheduler.plugins.node_affinity import NodeAffinity
from actorkube.scheduler.plugins.taints import tolerates

from ._fields import meta as _meta
from ._fields import spec as _spec
from ._replicas import (
    controller_reference,
    is_available,
    is_ready,
    pod_from_template,
    selector_of,
)
from ._rollout import equal_ignore_hash, scaled_value, template_hash

API_VERSION, KIND = "apps/v1", "DaemonSet"
HASH_LABEL = "controller-revision-hash"  # apps.DefaultDaemonSetUniqueLabelKey
BURST_REPLICAS = 250  # the DaemonSet controller's BurstReplicas
FAILED_POD_BACKOFF = 1.0  # failedPodsBackoff: 1 s doubling ...
FAILED_POD_BACKOFF_MAX = 15 * 60.0  # ... to 15 minutes
REVISION_HISTORY_LIMIT = 10
ROLLING_UPDATE = "RollingUpdate"

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"

_AUTOMATIC = (
    (NOT_READY, "NoExecute"),
    (UNREACHABLE, "NoExecute"),
    (DISK_PRESSURE, "NoSchedule"),
    (MEMORY_PRESSURE, "NoSchedule"),
    (PID_PRESSURE, "NoSchedule"),
    (UNSCHEDULABLE, "NoSchedule"),
)
_NODE_AFFINITY = NodeAffinity()
_NO_STATE = CycleState()  # NodeAffinity's filter keeps nothing between calls

Event = tuple[str, str, str]  # (type, reason, message)


def _name(obj: Mapping[str, Any]) -> str:
    return _meta(obj).get("name", "")


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return _meta(obj).get("labels") or {}


def _template(ds: Mapping[str, Any]) -> Mapping[str, Any]:
    return _spec(ds).get("template") or {}


def _phase(pod: Mapping[str, Any]) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


# --- where daemon pods go --------------------------------------------------------------------


def _same_toleration(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """MatchToleration: same key, operator, value and effect (as written, "" if absent)."""
    return all((a.get(f) or "") == (b.get(f) or "") for f in ("key", "operator", "value", "effect"))


def _with_toleration(tolerations: Sequence[Mapping[str, Any]], toleration: dict) -> list:
    """AddOrUpdateTolerationInPodSpec: replace the matching ones, else append."""
    out, replaced = [], False
    for t in tolerations:
        if _same_toleration(t, toleration):
            if t.get("tolerationSeconds") is None:
                return list(tolerations)  # already there as it should be
            out.append(toleration)
            replaced = True
        else:
            out.append(t)
    return out if replaced else [*out, toleration]


def with_daemon_tolerations(pod_spec: Mapping[str, Any]) -> dict:
    """``pod_spec`` with the automatic tolerations of daemon pods (see the module rules)."""
    tolerations = list(pod_spec.get("tolerations") or ())
    wanted = list(_AUTOMATIC)
    if pod_spec.get("hostNetwork"):
        wanted.append((NETWORK_UNAVAILABLE, "NoSchedule"))
    for key, effect in wanted:
        tolerations = _with_toleration(
            tolerations, {"key": key, "operator": "Exists", "effect": effect}
        )
    return {**pod_spec, "tolerations": tolerations}


def with_node_name_affinity(affinity: Mapping[str, Any] | None, node_name: str) -> dict:
    """ReplaceDaemonSetPodNodeNameNodeAffinity: ``affinity`` whose required node
    affinity is the one term selecting ``node_name`` by metadata.name."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_name]}]}
    affinity = dict(affinity or {})
    node = dict(affinity.get("nodeAffinity") or {})
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    node[key] = {**(node.get(key) or {}), "nodeSelectorTerms": [term]}
    return {**affinity, "nodeAffinity": node}


def target_node(pod: Mapping[str, Any]) -> str | None:
    """GetTargetNodeName: spec.nodeName, or the node a still unscheduled daemon pod's
    ``metadata.name In [node]`` term names; None if neither says."""
    spec = _spec(pod)
    if spec.get("nodeName"):
        return spec["nodeName"]
    node_affinity = (spec.get("affinity") or {}).get("nodeAffinity") or {}
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or ():
        for expr in term.get("matchFields") or ():
            if expr.get("key") == "metadata.name" and expr.get("operator") == "In":
                values = expr.get("values") or ()
                return values[0] if len(values) == 1 else None
    return None


@attrs.frozen
class Placement:
    """NodeShouldRunDaemonPod's answer: whether a daemon pod should be started on the
    node, and whether one already there should keep running."""

    should_run: bool
    should_continue_running: bool


def placement(node: Mapping[str, Any], ds: Mapping[str, Any]) -> Placement:
    """Where ``ds`` may run (see the module rules)."""
    name = _name(node)
    template_spec = _spec(_template(ds))
    if template_spec.get("nodeName") not in (None, "", name):
        return Placement(False, False)
    pod = {"metadata": _template(ds).get("metadata") or {},
           "spec": {**with_daemon_tolerations(template_spec), "nodeName": name}}  # fmt: skip
    if not _NODE_AFFINITY.filter(_NO_STATE, pod, NodeInfo(node)).ok:
        return Placement(False, False)
    tolerations = pod["spec"]["tolerations"]
    untolerated = {t.get("effect") for t in _spec(node).get("taints") or ()
                   if t.get("effect") in ("NoSchedule", "NoExecute")
                   and not tolerates(tolerations, t)}  # fmt: skip
    if untolerated:
        return Placement(False, "NoExecute" not in untolerated)
    return Placement(True, True)


def selects_everything(ds: Mapping[str, Any]) -> bool:
    """An empty spec.selector: Kubernetes refuses to act on such a DaemonSet."""
    selector = _spec(ds).get("selector") or {}
    return not selector.get("matchLabels") and not selector.get("matchExpressions")


def daemon_sets_for(obj: Mapping[str, Any], daemon_sets: Iterable[dict]) -> list[dict]:
    """The DaemonSets of ``obj``'s namespace whose selector matches its labels
    (GetPodDaemonSets, GetHistoryDaemonSets)."""
    namespace, labels = _meta(obj).get("namespace", ""), _labels(obj)
    return [ds for ds in daemon_sets
            if _meta(ds).get("namespace", "") == namespace and not selects_everything(ds)
            and selector_of(ds).matches(labels)]  # fmt: skip


def new_pod(ds: Mapping[str, Any], node_name: str, hash_: str) -> dict:
    """The pod ``ds`` creates for ``node_name`` (CreatePodTemplate, then the node-name
    affinity; see the module rules)."""
    template = _template(ds)
    tm = template.get("metadata") or {}
    spec = with_daemon_tolerations(_spec(template))
    spec["affinity"] = with_node_name_affinity(spec.get("affinity"), node_name)
    labels = {**(tm.get("labels") or {}), HASH_LABEL: hash_}
    owner = {**ds, "spec": {**_spec(ds), "template": {"metadata": {**tm, "labels": labels},
                                                      "spec": spec}}}  # fmt: skip
    return pod_from_template(owner, API_VERSION, KIND)


def node_pods(pods: Iterable[dict], *, include_deleted_terminal: bool = False) -> dict:
    """getNodesToDaemonPods: the DaemonSet's ``pods`` by target node (those with none
    left out), each node's in the order given."""
    out: dict[str, list[dict]] = {}
    for pod in pods:
        terminal = _phase(pod) in ("Succeeded", "Failed")
        if terminal and _deleting(pod) and not include_deleted_terminal:
            continue  # the kubelet or the garbage collector finishes it
        node = target_node(pod)
        if node is not None:
            out.setdefault(node, []).append(pod)
    return out


def _age(pod: Mapping[str, Any]) -> tuple:
    """podByCreationTimestampAndPhase: scheduled first, then older, then by name."""
    created = parse_rfc3339(_meta(pod).get("creationTimestamp"))
    return (not _spec(pod).get("nodeName"), created if created is not None else float("-inf"),
            _name(pod))  # fmt: skip


def _updated(pod: Mapping[str, Any], hash_: str) -> bool:
    return bool(hash_) and _labels(pod).get(HASH_LABEL) == hash_


# --- the rolling update's numbers ------------------------------------------------------------


def _scaled(value: Any, total: int) -> int:
    """GetScaledValueFromIntOrPercent rounding up (as the DaemonSet controller does)."""
    return scaled_value(value, total, round_up=True)


def _rolling(ds: Mapping[str, Any]) -> Mapping[str, Any] | None:
    strategy = _spec(ds).get("updateStrategy") or {"type": ROLLING_UPDATE}
    if (strategy.get("type") or ROLLING_UPDATE) != ROLLING_UPDATE:
        return None
    return strategy.get("rollingUpdate") or {"maxUnavailable": 1}  # the API's default


def surge_count(ds: Mapping[str, Any], eligible: int) -> int:
    """SurgeCount: the nodes a rolling update may run two pods on (0 for OnDelete)."""
    rolling = _rolling(ds)
    return 0 if rolling is None else _scaled(rolling.get("maxSurge"), eligible)


def unavailable_count(ds: Mapping[str, Any], eligible: int) -> int:
    """UnavailableCount: the nodes a rolling update may leave without an available pod."""
    rolling = _rolling(ds)
    return 0 if rolling is None else _scaled(rolling.get("maxUnavailable"), eligible)


def allows_surge(ds: Mapping[str, Any]) -> bool:
    try:
        return surge_count(ds, 1) > 0
    except ValueError:
        return False


# --- one sync's pod writes -------------------------------------------------------------------


@attrs.frozen
class Backoff:
    """One entry of the failed-pod backoff (client-go's flowcontrol.Backoff): the delay
    now in force and when it was last raised."""

    delay: float
    updated: float

    def expired(self, now: float) -> bool:
        """Forgotten after twice the longest delay without a failure (Backoff.GC)."""
        return now - self.updated > 2 * FAILED_POD_BACKOFF_MAX

    def active(self, now: float) -> bool:
        """IsInBackOffSinceUpdate."""
        return not self.expired(now) and now - self.updated < self.delay

    @staticmethod
    def next(entry: Backoff | None, now: float) -> Backoff:
        """The entry after one more failure at ``now`` (Backoff.Next)."""
        if entry is None or entry.expired(now):
            return Backoff(FAILED_POD_BACKOFF, now)
        return Backoff(min(entry.delay * 2, FAILED_POD_BACKOFF_MAX), now)


def failed_pod_backoff_key(ds: Mapping[str, Any], node_name: str) -> str:
    generation = ((ds.get("status") or {}).get("observedGeneration")) or 0
    return f"{_meta(ds).get('uid', '')}/{generation}/{node_name}"


@attrs.frozen
class Step:
    """The pod writes of one sync: a pod for each node of ``create_on`` (in order,
    slow start), the pods to ``delete``, the ``events`` to record on the DaemonSet,
    the failed-pod ``backoff`` entries to store, and when to sync again
    (``requeue_after`` seconds; None: no need)."""

    create_on: tuple[str, ...] = ()
    delete: tuple[dict, ...] = ()
    events: tuple[Event, ...] = ()
    backoff: tuple[tuple[str, Backoff], ...] = ()
    requeue_after: float | None = None

    @property
    def writes(self) -> bool:
        return bool(self.create_on or self.delete)

    def then(self, other: Step) -> Step:
        """Both steps' writes, events and backoff; the earlier requeue."""
        requeue = [r for r in (self.requeue_after, other.requeue_after) if r is not None]
        return Step(self.create_on + other.create_on, self.delete + other.delete,
                    self.events + other.events, self.backoff + other.backoff,
                    min(requeue, default=None))  # fmt: skip


def _on_node(
    ds: Mapping[str, Any], node_name: str, should_run: bool, pods: Sequence[dict],
    hash_: str, now: float, backoff: Mapping[str, Backoff],
) -> Step:  # fmt: skip
    """podsShouldBeOnNode where the pods may keep running."""
    step, running = Step(), []
    for pod in pods:
        if _deleting(pod):
            continue
        where = f"{_meta(pod).get('namespace', '')}/{_name(pod)} on node {node_name}"
        if _phase(pod) == "Failed":
            key = failed_pod_backoff_key(ds, node_name)
            entry = backoff.get(key)
            if entry is not None and entry.active(now):
                step = step.then(Step(requeue_after=entry.delay))
                continue
            event = ("Warning", "FailedDaemonPod",
                     f"Found failed daemon pod {where}, will try to kill it")  # fmt: skip
            step = step.then(Step(delete=(pod,), events=(event,),
                                  backoff=((key, Backoff.next(entry, now)),)))  # fmt: skip
        elif _phase(pod) == "Succeeded":
            event = ("Normal", "SucceededDaemonPod",
                     f"Found succeeded daemon pod {where}, will try to delete it")  # fmt: skip
            step = step.then(Step(delete=(pod,), events=(event,)))
        else:
            running.append(pod)
    running.sort(key=_age)
    if not allows_surge(ds):
        return step.then(Step(delete=tuple(running[1:])))
    if not running:
        return step.then(Step(create_on=(node_name,) if should_run else ()))
    newest = [p for p in running if _labels(p).get(HASH_LABEL) == hash_]
    oldest = [p for p in running if _labels(p).get(HASH_LABEL) != hash_]
    surplus = tuple(newest[1:] + oldest[1:])
    if newest and oldest and (not is_ready(oldest[0]) or is_available(
            newest[0], _spec(ds).get("minReadySeconds") or 0, now)):  # fmt: skip
        surplus += (oldest[0],)
    return step.then(Step(delete=tuple(sorted(surplus, key=_age))))


def manage(
    ds: Mapping[str, Any], nodes: Sequence[dict], pods: Sequence[dict], hash_: str,
    now: float, backoff: Mapping[str, Backoff],
) -> Step:  # fmt: skip
    """manage: the pods to create and delete so that each eligible node runs one
    (see the module rules). ``pods``: the DaemonSet's; ``backoff``: the stored
    failed-pod backoff entries."""
    by_node = node_pods(pods)
    step = Step()
    for node in sorted(nodes, key=_name):
        name = _name(node)
        where = placement(node, ds)
        here = by_node.get(name)
        if where.should_run and here is None:
            step = step.then(Step(create_on=(name,)))
        elif where.should_continue_running:
            step = step.then(_on_node(ds, name, where.should_run, here or (), hash_, now,
                                      backoff))  # fmt: skip
        elif here:
            step = step.then(Step(delete=tuple(p for p in here if not _deleting(p))))
    names = {_name(n) for n in nodes}
    lost = tuple(p for node, here in sorted(by_node.items()) if node not in names
                 for p in here if not _spec(p).get("nodeName") and not _deleting(p))  # fmt: skip
    return step.then(Step(delete=lost))


def _find_updated(pods: Sequence[dict], hash_: str) -> tuple[dict | None, dict | None, bool]:
    """findUpdatedPodsOnNode: (new, old, ok) among the pods not marked for deletion; not
    ok when there are two new or two old ones."""
    new = old = None
    for pod in pods:
        if _deleting(pod):
            continue
        if _updated(pod, hash_):
            if new is not None:
                return None, None, False
            new = pod
        else:
            if old is not None:
                return None, None, False
            old = pod
    return new, old, True


def rolling_update(
    ds: Mapping[str, Any], nodes: Sequence[dict], pods: Sequence[dict], hash_: str, now: float
) -> Step:
    """rollingUpdate: which old pods to delete, or (with surge) which nodes get a new
    pod beside an old one (see the module rules). Raises ValueError for a maxSurge or
    maxUnavailable that is neither an int nor a percent."""
    by_node = node_pods(pods)
    eligible = {_name(n): placement(n, ds).should_run for n in nodes}
    desired = sum(eligible.values())
    for name, run in eligible.items():
        if run:
            by_node.setdefault(name, [])
    max_surge, max_unavailable = surge_count(ds, desired), unavailable_count(ds, desired)
    if desired > 0 and max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    min_ready = _spec(ds).get("minReadySeconds") or 0
    ordered = sorted(by_node.items())
    if max_surge == 0:
        return _replace_in_place(ordered, hash_, max_unavailable, min_ready, now)
    return _surge(ordered, eligible, desired, hash_, max_surge, min_ready, now)


def _replace_in_place(
    ordered: list, hash_: str, max_unavailable: int, min_ready: int, now: float
) -> Step:
    unavailable, replace, candidates = 0, [], []
    for _node, pods in ordered:
        new, old, ok = _find_updated(pods, hash_)
        if not ok or (new is None) == (old is None):
            unavailable += 1  # manage's to settle
        elif new is not None:
            if not is_available(new, min_ready, now):
                unavailable += 1
        elif not is_available(old, min_ready, now):
            replace.append(old)
            unavailable += 1
        elif unavailable < max_unavailable:
            candidates.append(old)
    room = min(max(max_unavailable - unavailable, 0), len(candidates))
    return Step(delete=tuple(replace + candidates[:room]))


def _surge(
    ordered: list, eligible: Mapping[str, bool], desired: int, hash_: str, max_surge: int,
    min_ready: int, now: float,
) -> Step:  # fmt: skip
    delete, sunset, candidates, allowed = [], [], [], []
    surging = available = 0
    for node, pods in ordered:
        new, old, ok = _find_updated(pods, hash_)
        if not ok:
            surging += 1  # manage's to settle
            continue
        counted = old if old is not None else new
        if counted is not None and is_available(counted, min_ready, now):
            available += 1
        if old is None:
            continue
        if new is None:
            if not eligible.get(node):  # a node gone is no longer eligible either
                (delete if not is_available(old, min_ready, now) else sunset).append(old)
            elif not is_available(old, min_ready, now):
                allowed.append(node)
            elif surging < max_surge:
                candidates.append(node)
        elif not is_available(new, min_ready, now):
            surging += 1
        else:
            delete.append(old)
    deletable = min(max(available - desired, 0), len(sunset))
    room = min(max(max_surge - surging, 0), len(candidates))
    return Step(create_on=tuple(allowed + candidates[:room]),
                delete=tuple(delete + sunset[:deletable]))  # fmt: skip


def _burst(step: Step) -> Step:
    return attrs.evolve(step, create_on=step.create_on[:BURST_REPLICAS],
                        delete=step.delete[:BURST_REPLICAS])  # fmt: skip


def sync_pods(
    ds: Mapping[str, Any], nodes: Sequence[dict], pods: Sequence[dict], hash_: str,
    now: float, backoff: Mapping[str, Backoff],
) -> Step:  # fmt: skip
    """updateDaemonSet's pod writes: manage's; when it has none, the rolling update's
    (RollingUpdate only); at most ``BURST_REPLICAS`` of each kind."""
    step = manage(ds, nodes, pods, hash_, now, backoff)
    if step.writes or _rolling(ds) is None:
        return _burst(step)
    return _burst(step.then(rolling_update(ds, nodes, pods, hash_, now)))


# --- history ---------------------------------------------------------------------------------


def history_data(ds: Mapping[str, Any]) -> dict:
    """getPatch: what a ControllerRevision holds, a patch restoring the template."""
    return {"spec": {"template": {**_template(ds), "$patch": "replace"}}}


def matches(ds: Mapping[str, Any], revision: Mapping[str, Any]) -> bool:
    """Match: whether ``revision`` holds ``ds``'s template."""
    stored = ((revision.get("data") or {}).get("spec") or {}).get("template")
    if not isinstance(stored, Mapping) or stored.get("$patch") != "replace":
        return False
    template = {k: v for k, v in stored.items() if k != "$patch"}
    return equal_ignore_hash(template, _template(ds))


def revision_number(revision: Mapping[str, Any]) -> int:
    value = revision.get("revision")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def snapshot(ds: Mapping[str, Any], number: int) -> dict:
    """The ControllerRevision of ``ds``'s template as revision ``number``."""
    m = _meta(ds)
    hash_ = template_hash(dict(_template(ds)), (ds.get("status") or {}).get("collisionCount"))
    labels = {**((_template(ds).get("metadata") or {}).get("labels") or {}), HASH_LABEL: hash_}
    metadata: dict[str, Any] = {
        "name": f"{m.get('name', '')}-{hash_}", "namespace": m.get("namespace", ""),
        "labels": labels, "ownerReferences": [controller_reference(ds, API_VERSION, KIND)],
    }  # fmt: skip
    if m.get("annotations"):
        metadata["annotations"] = dict(m["annotations"])
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": metadata,
            "data": history_data(ds), "revision": number}  # fmt: skip


def _labelled(revision: dict, name: str) -> dict:
    m = _meta(revision)
    return {**revision, "metadata": {**m, "labels": {**(m.get("labels") or {}), HASH_LABEL: name}}}


@attrs.frozen
class History:
    """What constructHistory decides, writes in this order: ``updates`` (revisions
    given the hash label or a higher revision, each a PUT of the version read),
    ``create`` (the new current revision, if none is), ``relabel`` (pods to give the
    current ``hash``), ``duplicates`` (revisions to delete). ``old``: the revisions of
    other templates (as updated)."""

    updates: tuple[dict, ...]
    create: dict | None
    relabel: tuple[dict, ...]
    duplicates: tuple[dict, ...]
    old: tuple[dict, ...]
    hash: str


def history(ds: Mapping[str, Any], revisions: Sequence[dict], pods: Sequence[dict]) -> History:
    """The DaemonSet's history from the ``revisions`` it owns and its ``pods`` (see
    the module rules)."""
    updates: dict[str, dict] = {}
    current, old = [], []
    for revision in revisions:
        if HASH_LABEL not in _labels(revision):
            revision = updates[_name(revision)] = _labelled(revision, _name(revision))
        (current if matches(ds, revision) else old).append(revision)
    number = max((revision_number(r) for r in old), default=0) + 1
    if not current:
        create = snapshot(ds, number)
        return History(tuple(updates.values()), create, (), (), tuple(old),
                       _labels(create)[HASH_LABEL])  # fmt: skip
    keep = current[0]
    for revision in current:
        if revision_number(revision) >= revision_number(keep):
            keep = revision
    hash_ = _labels(keep)[HASH_LABEL]
    duplicates = tuple(r for r in current if _name(r) != _name(keep))
    stale = {_labels(r)[HASH_LABEL] for r in duplicates} - {hash_}
    relabel = tuple(p for p in pods if _labels(p).get(HASH_LABEL) in stale)
    if revision_number(keep) < number:
        updates[_name(keep)] = {**keep, "revision": number}
    return History(tuple(updates.values()), None, relabel, duplicates, tuple(old), hash_)


def revisions_to_clean(
    ds: Mapping[str, Any], old: Sequence[dict], pods: Sequence[dict]
) -> list[dict]:
    """cleanupHistory: the old revisions to delete (see the module rules). ``pods``:
    all the DaemonSet's, those terminal and being deleted included."""
    limit = _spec(ds).get("revisionHistoryLimit")
    limit = REVISION_HISTORY_LIMIT if limit is None else limit
    excess = len(old) - limit
    if excess <= 0:
        return []
    live = {_labels(p).get(HASH_LABEL)
            for here in node_pods(pods, include_deleted_terminal=True).values()
            for p in here}  # fmt: skip
    by_age = sorted(old, key=revision_number)
    return [r for r in by_age if _labels(r).get(HASH_LABEL) not in live][:excess]


# --- status ----------------------------------------------------------------------------------


def status_counts(
    ds: Mapping[str, Any], nodes: Sequence[dict], pods: Sequence[dict], hash_: str, now: float
) -> dict[str, int]:
    """updateDaemonSetStatus' counts (see the module rules)."""
    by_node = node_pods(pods)
    min_ready = _spec(ds).get("minReadySeconds") or 0
    desired = current = misscheduled = ready = available = updated = 0
    for node in nodes:
        here = by_node.get(_name(node)) or []
        if not placement(node, ds).should_run:
            misscheduled += bool(here)
            continue
        desired += 1
        if not here:
            continue
        current += 1
        pod = min(here, key=_age)
        if is_ready(pod):
            ready += 1
            available += is_available(pod, min_ready, now)
        updated += _updated(pod, hash_)
    return {"desiredNumberScheduled": desired, "currentNumberScheduled": current,
            "numberMisscheduled": misscheduled, "numberReady": ready,
            "updatedNumberScheduled": updated, "numberAvailable": available,
            "numberUnavailable": desired - available}  # fmt: skip


def updated_status(
    ds: Mapping[str, Any], counts: Mapping[str, int], observed_generation: int | None
) -> dict | None:
    """``ds``'s status with ``counts`` and, when given, ``observed_generation``; None
    when there is nothing to write (storeDaemonSetStatus: counts unchanged and the
    generation observed, or nothing changed at all)."""
    old = ds.get("status") or {}
    generation = _meta(ds).get("generation", 0)
    same = all(old.get(k, 0) == v for k, v in counts.items())
    if same and old.get("observedGeneration", 0) >= generation:
        return None
    status = {**old, **counts}
    if observed_generation is not None:
        status["observedGeneration"] = observed_generation
    return None if status == old else status


def needs_requeue_for_availability(ds: Mapping[str, Any], counts: Mapping[str, int]) -> bool:
    """A ready pod that becomes available after minReadySeconds: look again then."""
    min_ready = _spec(ds).get("minReadySeconds") or 0
    return min_ready > 0 and counts["numberReady"] != counts["numberAvailable"]
