"""The HorizontalPodAutoscaler's arithmetic (kube-controller-manager's podautoscaler:
its replica calculator, its metric statuses and conditions, and the normalisation of
recommendations with and without ``spec.behavior``), pure.

Rules of this file:

- Amounts are whole thousandths (Kubernetes' ``MilliValue``: CPU in millicores, memory
  in thousandths of a byte), summed and divided as int64s are in Go; replica counts come
  from ``math.ceil`` of a ratio, as ``int32(math.Ceil(...))``.
- ``plan`` is one ``reconcileAutoscaler`` between reading the target's scale and writing
  it: given the HPA, the target's Scale, the namespace's pods and the PodMetrics the
  metrics API answered (or the error it gave), it says the desired replica count, the
  reason, the metric statuses, the conditions to set and the events to record. It
  records the recommendation in the HPA's ``History``; the caller records the scale
  event (``History.scaled``) once the scale write succeeded.
- Only Resource and ContainerResource metrics are computed: Pods, Object and External
  metrics need a custom or external metrics API, which nothing serves here, and fail
  with the condition and event Kubernetes gives when the API is missing.
- Times are seconds since the epoch, given as ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any

import attrs

from actorkube.apiserver import InvalidQuantity, Quantity
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.apiserver._quantity import QuantityFormat
from actorkube.apiserver._selectors import InvalidSelector, Selector

from ._cron import ScheduleError, parse_go_duration
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._fields import status as _status

# kube-controller-manager's defaults (--horizontal-pod-autoscaler-*).
TOLERANCE = 0.1
CPU_INITIALIZATION_PERIOD = 300.0
INITIAL_READINESS_DELAY = 30.0
DOWNSCALE_STABILIZATION = 300.0
SYNC_PERIOD = 15.0
# Without spec.behavior a scale-up goes at most to max(2 x current, 4) at once.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0

ABLE_TO_SCALE, SCALING_ACTIVE, SCALING_LIMITED = "AbleToScale", "ScalingActive", "ScalingLimited"
_CUSTOM_API_MISSING = "the server could not find the requested resource"


class MetricError(Exception):
    """A metric that gives no replica proposal; ``reason`` is the condition's and the
    event's reason, the message the event's."""

    def __init__(self, reason: str, message: str, outer: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.outer = outer or message  # what computeReplicasForMetric returns


@attrs.frozen
class PodMetric:
    value: int  # thousandths
    timestamp: float
    window: float


@attrs.frozen
class Condition:
    type: str
    status: str
    reason: str
    message: str


@attrs.frozen
class Event:
    type: str
    reason: str
    message: str


# --- the metrics API's answer ---------------------------------------------------------


def _milli(raw: object) -> int | None:
    try:
        return Quantity.parse(raw).milli_value()
    except (InvalidQuantity, TypeError):
        return None


def _window(raw: object) -> float:
    try:
        return parse_go_duration(raw) if isinstance(raw, str) else 0.0
    except ScheduleError:
        return 0.0


def resource_metrics(
    items: Sequence[Mapping[str, Any]], resource: str, container: str = ""
) -> tuple[dict[str, PodMetric], float]:
    """The metrics client's GetResourceMetric over a PodMetricsList's ``items``: each
    pod's usage of ``resource`` (the sum of its containers, or only ``container``'s),
    leaving out a pod that lacks it in some container; and the first item's timestamp.
    Raises ``ValueError`` for an empty list or a pod without ``container``."""
    if not items:
        raise ValueError("no metrics returned from resource metrics API")
    found: dict[str, PodMetric] = {}
    for item in items:
        name = _meta(item).get("name", "")
        at, window = parse_rfc3339(item.get("timestamp")) or 0.0, _window(item.get("window"))
        containers = [c for c in item.get("containers") or () if isinstance(c, Mapping)]
        if container:
            containers = [c for c in containers if c.get("name") == container][:1]
            if not containers:
                raise ValueError(f"container {container} not present in metrics for pod "
                                 f"{_meta(item).get('namespace', '')}/{name}")  # fmt: skip
        values = [_milli((c.get("usage") or {}).get(resource)) for c in containers]
        if containers and None not in values:
            found[name] = PodMetric(sum(values), at, window)
    return found, parse_rfc3339(items[0].get("timestamp")) or 0.0


# --- the replica calculator -----------------------------------------------------------


@attrs.frozen
class Groups:
    ready: int
    unready: frozenset[str]
    missing: frozenset[str]
    ignored: frozenset[str]


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in _status(pod).get("conditions") or ():
        if condition.get("type") == "Ready":
            return condition
    return None


def group_pods(
    pods: Iterable[Mapping[str, Any]], metrics: Mapping[str, PodMetric], resource: str,
    now: float,
) -> Groups:  # fmt: skip
    """groupPods: deleted and failed pods are ignored, pending ones unready, those
    without a metric missing; for CPU, a pod is unready if it is not Ready, or within
    its first 5 minutes its metric's window began before it turned Ready, or after
    them it is not Ready and never was (its readiness last changed within 30 s of its
    start)."""
    ready = 0
    unready, missing, ignored = set(), set(), set()
    for pod in pods:
        name = _meta(pod).get("name", "")
        phase = _status(pod).get("phase")
        if _meta(pod).get("deletionTimestamp") or phase == "Failed":
            ignored.add(name)
            continue
        if phase == "Pending":
            unready.add(name)
            continue
        metric = metrics.get(name)
        if metric is None:
            missing.add(name)
            continue
        if resource == "cpu":
            condition = _ready_condition(pod)
            started = parse_rfc3339(_status(pod).get("startTime"))
            if condition is None or started is None:
                is_unready = True
            else:
                changed = parse_rfc3339(condition.get("lastTransitionTime")) or 0.0
                if started + CPU_INITIALIZATION_PERIOD > now:
                    is_unready = (condition.get("status") == "False"
                                  or metric.timestamp < changed + metric.window)  # fmt: skip
                else:
                    is_unready = (condition.get("status") == "False"
                                  and started + INITIAL_READINESS_DELAY > changed)  # fmt: skip
            if is_unready:
                unready.add(name)
                continue
        ready += 1
    return Groups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def pod_requests(
    pods: Iterable[Mapping[str, Any]], container: str, resource: str
) -> dict[str, int]:
    """calculatePodRequests: each pod's request of ``resource`` over its containers and
    restartable (sidecar) init containers, or only ``container``. Raises ``ValueError``
    for a container without that request."""
    requests = {}
    for pod in pods:
        spec = _spec(pod)
        containers = list(spec.get("containers") or ())
        containers += [c for c in spec.get("initContainers") or ()
                       if c.get("restartPolicy") == "Always"]  # fmt: skip
        total = 0
        for c in containers:
            if container and c.get("name") != container:
                continue
            request = _milli(((c.get("resources") or {}).get("requests") or {}).get(resource))
            if request is None:
                raise ValueError(f"missing request for {resource} in container {c.get('name')} "
                                 f"of Pod {_meta(pod).get('name')}")  # fmt: skip
            total += request
        requests[_meta(pod).get("name", "")] = total
    return requests


def utilization_ratio(
    metrics: Mapping[str, PodMetric], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    """GetResourceUtilizationRatio: (usage / target utilisation, the utilisation in
    percent of the requests, the average usage); metrics of pods without a request do
    not count. Raises ``ValueError`` if none does."""
    used = requested = entries = 0
    for name, metric in metrics.items():
        if name in requests:
            used += metric.value
            requested += requests[name]
            entries += 1
    if requested == 0:
        raise ValueError("no metrics returned matched known pods")
    utilization = used * 100 // requested
    return utilization / target, utilization, used // entries


def _usage_ratio(metrics: Mapping[str, PodMetric], target: int) -> tuple[float, int]:
    average = sum(m.value for m in metrics.values()) // len(metrics)
    return average / target, average


def _usable(
    pods: Sequence[Mapping[str, Any]], metrics: Mapping[str, PodMetric], resource: str,
    now: float,
) -> tuple[dict[str, PodMetric], Groups]:  # fmt: skip
    if not pods:
        raise ValueError("no pods returned by selector while calculating replica count")
    groups = group_pods(pods, metrics, resource, now)
    usable = {n: m for n, m in metrics.items() if n not in groups.ignored | groups.unready}
    if not usable:
        raise ValueError("did not receive metrics for targeted pods (pods might be unready)")
    return usable, groups


def _settle(
    current: int, ratio: float, new_ratio: float, count: int, tolerance: float
) -> int:
    """The count once missing and unready pods were given their assumed usage: the
    current one if the change is small or would turn the direction."""
    if (abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio)
            or (ratio > 1.0 > new_ratio)):  # fmt: skip
        return current
    replicas = math.ceil(new_ratio * count)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        return current
    return replicas


def resource_replicas(
    current: int, target_utilization: int, resource: str, pods: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, PodMetric], now: float, container: str = "",
    tolerance: float = TOLERANCE,
) -> tuple[int, int, int]:  # fmt: skip
    """GetResourceReplicas: (replicas, utilisation in percent, average usage) for a
    Utilization target. On a scale-down a pod without a metric counts as using its
    request (or the target, above 100%); on a scale-up as using nothing, and so do
    unready pods. Raises ``ValueError``."""
    usable, groups = _usable(pods, metrics, resource, now)
    requests = pod_requests(pods, container, resource)
    ratio, utilization, raw = utilization_ratio(usable, requests, target_utilization)
    with_unready = bool(groups.unready) and ratio > 1.0
    if not with_unready and not groups.missing:
        if abs(1.0 - ratio) <= tolerance:
            return current, utilization, raw
        return math.ceil(ratio * groups.ready), utilization, raw
    if groups.missing:
        if ratio < 1.0:
            fallback = max(100, target_utilization)
            for name in groups.missing:
                usable[name] = PodMetric(requests[name] * fallback // 100, 0.0, 0.0)
        elif ratio > 1.0:
            for name in groups.missing:
                usable[name] = PodMetric(0, 0.0, 0.0)
    if with_unready:
        for name in groups.unready:
            usable[name] = PodMetric(0, 0.0, 0.0)
    new_ratio, _, _ = utilization_ratio(usable, requests, target_utilization)
    return _settle(current, ratio, new_ratio, len(usable), tolerance), utilization, raw


def raw_resource_replicas(
    current: int, target_value: int, resource: str, pods: Sequence[Mapping[str, Any]],
    metrics: Mapping[str, PodMetric], now: float, tolerance: float = TOLERANCE,
) -> tuple[int, int]:  # fmt: skip
    """GetRawResourceReplicas (calcPlainMetricReplicas): (replicas, average usage) for
    an AverageValue target of ``target_value`` thousandths. Raises ``ValueError``."""
    usable, groups = _usable(pods, metrics, resource, now)
    ratio, usage = _usage_ratio(usable, target_value)
    with_unready = bool(groups.unready) and ratio > 1.0
    if not with_unready and not groups.missing:
        if abs(1.0 - ratio) <= tolerance:
            return current, usage
        return math.ceil(ratio * groups.ready), usage
    for name in groups.missing:
        usable[name] = PodMetric(target_value if ratio < 1.0 else 0, 0.0, 0.0)
    if with_unready:
        for name in groups.unready:
            usable[name] = PodMetric(0, 0.0, 0.0)
    new_ratio, _ = _usage_ratio(usable, target_value)
    return _settle(current, ratio, new_ratio, len(usable), tolerance), usage


# --- one metric -------------------------------------------------------------------------


@attrs.frozen
class MetricInputs:
    """What the metrics of one HPA are computed from: the pods its target's selector
    picks, and the metrics API's PodMetrics items for that selector (or the error the
    API gave, as text)."""

    pods: Sequence[Mapping[str, Any]]
    pod_metrics: Sequence[Mapping[str, Any]] | None
    metrics_error: str = ""


def _millis_text(value: int) -> str:
    return str(Quantity(Fraction(value, 1000), QuantityFormat.DECIMAL_SI))


def _resource_metric(
    metric: Mapping[str, Any], current: int, inputs: MetricInputs, now: float,
    tolerance: float,
) -> tuple[int, str, dict]:  # fmt: skip
    """computeStatusForResourceMetric / ContainerResourceMetric."""
    kind = metric.get("type")
    source = metric.get("resource" if kind == "Resource" else "containerResource") or {}
    resource, container = source.get("name", ""), source.get("container", "")
    target = source.get("target") or {}
    reason = "FailedGetResourceMetric" if kind == "Resource" else "FailedGetContainerResourceMetric"
    outer = (f"failed to get {resource} resource metric value" if kind == "Resource"
             else f"failed to get {resource} container metric value")  # fmt: skip
    utilization = target.get("averageUtilization")
    average_value = _milli(target.get("averageValue")) if target.get("averageValue") is not None \
        else None  # fmt: skip
    what = "usage" if average_value is not None else "utilization"
    try:
        if average_value is None and utilization is None:
            raise ValueError("invalid resource metric source: neither an average utilization "
                             "target nor an average value (usage) target was set")  # fmt: skip
        try:
            if inputs.pod_metrics is None:
                raise ValueError("unable to fetch metrics from resource metrics API: "
                                 + inputs.metrics_error)  # fmt: skip
            metrics, _ = resource_metrics(inputs.pod_metrics, resource, container)
        except ValueError as e:
            raise ValueError(f"unable to get metrics for resource {resource}: {e}") from None
        if average_value is not None:
            replicas, raw = raw_resource_replicas(current, average_value, resource, inputs.pods,
                                                  metrics, now, tolerance)  # fmt: skip
            value_status: dict[str, Any] = {"averageValue": _millis_text(raw)}
            name = f"{resource} resource"
        else:
            replicas, percent, raw = resource_replicas(
                current, int(utilization), resource, inputs.pods, metrics, now, container,
                tolerance)  # fmt: skip
            value_status = {"averageUtilization": percent, "averageValue": _millis_text(raw)}
            scope = "resource" if kind == "Resource" else "container resource"
            name = f"{resource} {scope} utilization (percentage of request)"
    except (ValueError, ArithmeticError) as e:  # (a zero target passed validation: never)
        message = f"failed to get {resource} {what}: {e}"
        raise MetricError(reason, message, f"{outer}: {message}") from None
    key = "resource" if kind == "Resource" else "containerResource"
    described: dict[str, Any] = {"name": resource}
    if container:
        described["container"] = container
    return replicas, name, {"type": kind, key: {**described, "current": value_status}}


# The metric types only a custom or external metrics API answers: (reason, what the
# error calls the metric, which API, the outer error's words).
_CUSTOM = {
    "Pods": ("FailedGetPodsMetric", "metric", "custom", "pods metric value"),
    "Object": ("FailedGetObjectMetric", "metric", "custom", "object metric value"),
    "External": ("FailedGetExternalMetric", "external metric", "external",
                 "external metric value"),
}  # fmt: skip


def _custom_metric(metric: Mapping[str, Any]) -> MetricError:
    """The error of a metric no API here serves (see the module rules)."""
    kind = metric.get("type")
    if kind not in _CUSTOM:
        return MetricError("InvalidMetricSourceType", f'unknown metric source type "{kind}"')
    reason, called, api, outer = _CUSTOM[kind]
    name = ((metric.get(kind.lower()) or {}).get("metric") or {}).get("name", "")
    inner = (f"unable to get {called} {name}: unable to fetch metrics from {api} metrics "
             f"API: {_CUSTOM_API_MISSING}")  # fmt: skip
    return MetricError(reason, inner, f"failed to get {outer}: {inner}")


def needs_pod_metrics(hpa: Mapping[str, Any]) -> bool:
    """Whether any of the HPA's metrics reads the resource metrics API."""
    return any(m.get("type") in ("Resource", "ContainerResource")
               for m in _spec(hpa).get("metrics") or ())  # fmt: skip


# --- conditions -------------------------------------------------------------------------


def set_condition(
    conditions: list[dict], condition: Condition, now: float
) -> list[dict]:
    """setConditionInList: the condition of that type replaced (its transition time
    kept unless its status changed), or added at the end."""
    result = [dict(c) for c in conditions]
    existing = next((c for c in result if c.get("type") == condition.type), None)
    if existing is None:
        existing = {"type": condition.type}
        result.append(existing)
    if existing.get("status") != condition.status:
        existing["lastTransitionTime"] = rfc3339(now)
    existing.update(status=condition.status, reason=condition.reason, message=condition.message)
    return result


# --- normalisation --------------------------------------------------------------------


@attrs.define
class History:
    """What the controller remembers of one HPA between syncs: its recent
    recommendations and scale events (each (time, count)), and the selector of its
    target (for AmbiguousSelector)."""

    recommendations: list[tuple[float, int]] = attrs.field(factory=list)
    scale_ups: list[tuple[float, int]] = attrs.field(factory=list)
    scale_downs: list[tuple[float, int]] = attrs.field(factory=list)
    selector: Selector | None = None

    def record_initial(self, current: int, now: float) -> None:
        """recordInitialRecommendation: the current size is the first recommendation."""
        if not self.recommendations:
            self.recommendations.append((now, current))

    def _record(self, desired: int, now: float, old: float) -> None:
        # One sample older than every window is replaced rather than the list growing.
        for i, (at, _) in enumerate(self.recommendations):
            if at < old:
                self.recommendations[i] = (now, desired)
                return
        self.recommendations.append((now, desired))

    def scaled(self, behavior: Mapping[str, Any] | None, before: int, after: int,
               now: float) -> None:  # fmt: skip
        """storeScaleEvent: remember a scale for the rate policies (only with a
        behavior; events older than the direction's longest policy period go)."""
        if not behavior or before == after:
            return
        # An event counts against the policies of both directions: it is kept for the
        # longest period of any of them.
        longest = max((int(p.get("periodSeconds") or 0)
                       for rules in (behavior.get("scaleUp"), behavior.get("scaleDown"))
                       for p in (rules or {}).get("policies") or ()), default=0)  # fmt: skip
        events = self.scale_ups if after > before else self.scale_downs
        events[:] = [(at, n) for at, n in events if at > now - longest]
        events.append((now, abs(after - before)))


def _changed_within(events: Sequence[tuple[float, int]], period: float, now: float) -> int:
    return sum(n for at, n in events if at > now - period)


def _rate_limit(rules: Mapping[str, Any], current: int, history: History, now: float,
                up: bool) -> int:  # fmt: skip
    """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
    select = rules.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    # Max picks the biggest change: the highest limit up, the lowest down.
    biggest = select != "Min"
    pick = (max if biggest else min) if up else (min if biggest else max)
    result = None
    for policy in rules.get("policies") or ():
        period = float(policy.get("periodSeconds") or 0)
        value = int(policy.get("value") or 0)
        start = (current - _changed_within(history.scale_ups, period, now)
                 + _changed_within(history.scale_downs, period, now))  # fmt: skip
        if policy.get("type") == "Pods":
            proposed = start + value if up else start - value
        elif up:
            proposed = math.ceil(start * (1 + value / 100))
        else:
            proposed = int(start * (1 - value / 100))
        result = proposed if result is None else pick(result, proposed)
    if result is None:  # no policy: Go's starting value, which the caller clamps
        return -(2**31) if up == biggest else 2**31 - 1
    return result


def _stabilize_with_behavior(
    behavior: Mapping[str, Any], history: History, current: int, desired: int, now: float
) -> tuple[int, str, str]:
    up_window = float((behavior.get("scaleUp") or {}).get("stabilizationWindowSeconds") or 0)
    down_rules = behavior.get("scaleDown") or {}
    down_window = down_rules.get("stabilizationWindowSeconds")
    down_window = DOWNSCALE_STABILIZATION if down_window is None else float(down_window)
    up_cutoff, down_cutoff = now - up_window, now - down_window
    up_rec = down_rec = desired
    for at, recommended in history.recommendations:
        if at > up_cutoff:
            up_rec = min(recommended, up_rec)
        if at > down_cutoff:
            down_rec = max(recommended, down_rec)
    stabilized = max(current, up_rec)
    stabilized = min(stabilized, down_rec)
    history._record(desired, now, min(up_cutoff, down_cutoff))
    if desired >= current:
        return stabilized, "ScaleUpStabilized", ("recent recommendations were lower than "
                                                 "current one, applying the lowest recent "
                                                 "recommendation")  # fmt: skip
    return stabilized, "ScaleDownStabilized", ("recent recommendations were higher than "
                                               "current one, applying the highest recent "
                                               "recommendation")  # fmt: skip


_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_SCALE_UP_LIMIT = ("ScaleUpLimit", "the desired replica count is increasing faster than the "
                   "maximum scale rate")  # fmt: skip
_SCALE_DOWN_LIMIT = ("ScaleDownLimit", "the desired replica count is decreasing faster than "
                     "the maximum scale rate")  # fmt: skip
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")


def _limit_with_behavior(
    behavior: Mapping[str, Any], history: History, current: int, desired: int,
    min_replicas: int, max_replicas: int, now: float,
) -> tuple[int, tuple[str, str]]:  # fmt: skip
    """convertDesiredReplicasWithBehaviorRate."""
    if desired > current:
        limit = max(_rate_limit(behavior.get("scaleUp") or {}, current, history, now, True),
                    current)  # fmt: skip
        allowed, why = (limit, _SCALE_UP_LIMIT) if max_replicas > limit else (
            max_replicas, _TOO_MANY)  # fmt: skip
        if desired > allowed:
            return allowed, why
    elif desired < current:
        limit = min(_rate_limit(behavior.get("scaleDown") or {}, current, history, now, False),
                    current)  # fmt: skip
        allowed, why = (limit, _SCALE_DOWN_LIMIT) if min_replicas < limit else (
            min_replicas, _TOO_FEW)  # fmt: skip
        if desired < allowed:
            return allowed, why
    return desired, _WITHIN


def _limit_without_behavior(
    current: int, desired: int, min_replicas: int, max_replicas: int
) -> tuple[int, tuple[str, str]]:
    """convertDesiredReplicasWithRules."""
    limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    allowed, why = (limit, _SCALE_UP_LIMIT) if max_replicas > limit else (max_replicas, _TOO_MANY)
    if desired < min_replicas:
        return min_replicas, _TOO_FEW
    if desired > allowed:
        return allowed, why
    return desired, _WITHIN


_READY_FOR_NEW_SCALE = ("ReadyForNewScale", "recommended size matches current size")


def normalize(
    hpa: Mapping[str, Any], history: History, current: int, desired: int, min_replicas: int,
    now: float,
) -> tuple[int, list[Condition]]:  # fmt: skip
    """normalizeDesiredReplicas(WithBehaviors): the recommendation stabilised over the
    windows (only the 5-minute scale-down one without a behavior), then limited by the
    scaling rate and the replica range; the AbleToScale and ScalingLimited conditions
    that say which of these applied."""
    spec = _spec(hpa)
    behavior = spec.get("behavior")
    max_replicas = int(spec.get("maxReplicas") or 0)
    if behavior:
        stabilized, reason, message = _stabilize_with_behavior(behavior, history, current,
                                                               desired, now)  # fmt: skip
        able = Condition(ABLE_TO_SCALE, "True", reason, message)
        final, why = _limit_with_behavior(behavior, history, current, stabilized, min_replicas,
                                          max_replicas, now)  # fmt: skip
    else:
        cutoff = now - DOWNSCALE_STABILIZATION
        stabilized = max([desired] + [r for at, r in history.recommendations if at >= cutoff])
        history._record(desired, now, cutoff)
        able = Condition(ABLE_TO_SCALE, "True", "ScaleDownStabilized",
                         "recent recommendations were higher than current one, applying the "
                         "highest recent recommendation")  # fmt: skip
        final, why = _limit_without_behavior(current, stabilized, min_replicas, max_replicas)
    if stabilized == desired:
        able = Condition(ABLE_TO_SCALE, "True", *_READY_FOR_NEW_SCALE)
    limited = Condition(SCALING_LIMITED, "False" if final == stabilized else "True", *why)
    return final, [able, limited]


# --- one sync -------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """What one sync decided (see ``plan``). ``rescale``: write ``desired`` to the
    target's scale for ``reason``. ``statuses`` is None when no metric was computed.
    ``error`` (text) makes the sync a failure after its status is written; with
    ``stop`` nothing is scaled."""

    current: int
    desired: int
    rescale: bool
    reason: str = ""
    statuses: list[dict] | None = None
    conditions: list[Condition] = attrs.field(factory=list)
    events: list[Event] = attrs.field(factory=list)
    error: str = ""
    stop: bool = False


def _selector(
    hpa: Mapping[str, Any], scale: Mapping[str, Any], pods: Sequence[Mapping[str, Any]],
    others: Mapping[str, Selector],
) -> Selector:  # fmt: skip
    """validateAndParseSelector; raises ``MetricError`` (reason InvalidSelector,
    SelectorRequired or AmbiguousSelector: an event and a ScalingActive condition)."""
    text = _status(scale).get("selector") or ""
    if not text:
        raise MetricError("SelectorRequired", "selector is required",
                          "the HPA target's scale is missing a selector")  # fmt: skip
    try:
        selector = Selector.parse(text)
    except InvalidSelector as e:
        message = f"couldn't convert selector into a corresponding internal selector object: {e}"
        raise MetricError("InvalidSelector", message, message) from None
    name, namespace = _meta(hpa).get("name", ""), _meta(hpa).get("namespace", "")
    selecting = {name}
    for pod in pods:
        labels = _meta(pod).get("labels") or {}
        if selector.matches(labels):
            selecting |= {other for other, s in others.items() if s.matches(labels)}
    if len(selecting) > 1:
        listed = " ".join(f"{{{n} {namespace}}}" for n in sorted(selecting))
        message = f"pods by selector {text} are controlled by multiple HPAs: [{listed}]"
        raise MetricError("AmbiguousSelector", message, message)
    return selector


def plan(
    hpa: Mapping[str, Any], scale: Mapping[str, Any], inputs: MetricInputs, history: History,
    now: float, *, others: Mapping[str, Selector] | None = None, tolerance: float = TOLERANCE,
) -> Plan:  # fmt: skip
    """reconcileAutoscaler from the target's scale on (see the module rules). ``inputs``
    holds every pod of the namespace; ``others`` the selectors of the namespace's other
    HPAs."""
    spec = _spec(hpa)
    current = int(_spec(scale).get("replicas") or 0)
    min_replicas = spec.get("minReplicas")
    min_replicas = 1 if min_replicas is None else int(min_replicas)
    max_replicas = int(spec.get("maxReplicas") or 0)
    history.record_initial(current, now)
    if current == 0 and min_replicas != 0:
        return Plan(current, 0, False, conditions=[Condition(
            SCALING_ACTIVE, "False", "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero")])  # fmt: skip
    if current > max_replicas:
        return Plan(current, max_replicas, True,
                    "Current number of replicas above Spec.MaxReplicas")  # fmt: skip
    if current < min_replicas:
        return Plan(current, min_replicas, True,
                    "Current number of replicas below Spec.MinReplicas")  # fmt: skip
    try:
        selector = _selector(hpa, scale, inputs.pods, others or {})
    except MetricError as e:
        reason = "InvalidSelector" if e.reason == "SelectorRequired" else e.reason
        return Plan(current, current, False,
                    conditions=[Condition(SCALING_ACTIVE, "False", reason, e.outer)],
                    events=[Event("Warning", e.reason, str(e)),
                            Event("Warning", "FailedComputeMetricsReplicas", str(e))],
                    error=str(e), stop=True)  # fmt: skip
    history.selector = selector
    pods = [p for p in inputs.pods if selector.matches(_meta(p).get("labels") or {})]
    selected = attrs.evolve(inputs, pods=pods)
    proposal, metric_name, statuses, conditions, events, error = _metrics(
        spec.get("metrics") or (), current, selected, now, tolerance)  # fmt: skip
    if proposal < 0:
        events.append(Event("Warning", "FailedComputeMetricsReplicas", error))
        return Plan(current, current, False, statuses=statuses, conditions=conditions,
                    events=events, error=error, stop=True)  # fmt: skip
    desired, reason = 0, ""
    rescale_metric = ""
    if proposal > desired:
        desired, rescale_metric = proposal, metric_name
    if desired > current:
        reason = f"{rescale_metric} above target"
    if desired < current:
        reason = "All metrics below target"
    desired, normalized = normalize(hpa, history, current, desired, min_replicas, now)
    return Plan(current, desired, desired != current, reason, statuses,
                conditions + normalized, events, error)  # fmt: skip


def _metrics(
    metrics: Sequence[Mapping[str, Any]], current: int, inputs: MetricInputs, now: float,
    tolerance: float,
) -> tuple[int, str, list[dict], list[Condition], list[Event], str]:  # fmt: skip
    """computeReplicasForMetrics: the largest proposal of the metrics; with a metric
    that failed, -1 if every metric failed or the others would scale down."""
    replicas, name = 0, ""
    statuses: list[dict] = []
    events: list[Event] = []
    invalid: list[MetricError] = []
    for metric in metrics:
        try:
            if metric.get("type") not in ("Resource", "ContainerResource"):
                raise _custom_metric(metric)
            proposal, proposal_name, status = _resource_metric(metric, current, inputs, now,
                                                               tolerance)  # fmt: skip
        except MetricError as e:
            events.append(Event("Warning", e.reason, str(e)))
            invalid.append(e)
            statuses.append({"type": ""})
            continue
        statuses.append(status)
        if replicas == 0 or proposal > replicas:
            replicas, name = proposal, proposal_name
    error = ""
    if invalid:
        error = (f"invalid metrics ({len(invalid)} invalid out of {len(metrics)}), first error "
                 f"is: {invalid[0].outer}")  # fmt: skip
    if invalid and (len(invalid) >= len(metrics) or replicas < current):
        first = invalid[0]
        why = f"the HPA was unable to compute the replica count: {first}"
        condition = Condition(SCALING_ACTIVE, "False", first.reason, why)
        return -1, "", statuses, [condition], events, error
    found = f"the HPA was able to successfully calculate a replica count from {name}"
    active = Condition(SCALING_ACTIVE, "True", "ValidMetricFound", found)
    return replicas, name, statuses, [active], events, error
