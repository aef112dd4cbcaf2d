"""autoscaling/v1 HorizontalPodAutoscalers, served as conversions of the autoscaling/v2
ones the server stores (Kubernetes' pkg/apis/autoscaling/v1/conversion.go).

Rules of this file:

- What both versions say is copied: the target reference, the replica bounds, the
  status' generation, scale time and replica counts; the metadata as it is.
- v1 says one thing v2 says otherwise: spec.targetCPUUtilizationPercentage is the
  first Resource metric ``cpu`` with a target utilization, and
  status.currentCPUUtilizationPercentage the utilization of the current ``cpu``
  metric. A v1 object without any metric gets the CPU at 80%, the implicit default v1
  always had.
- What v1 cannot say travels in annotations of the v1 object, as JSON of Kubernetes'
  own shapes: ``autoscaling.alpha.kubernetes.io/metrics`` the other metrics (v1
  MetricSpecs: ``targetAverageValue``, ``metricName``...), ``.../current-metrics`` every
  current metric (v1 MetricStatuses), ``.../conditions`` the conditions (v1
  HorizontalPodAutoscalerConditions) and ``.../behavior`` the behavior (as Go encodes
  Kubernetes' internal type, which has no JSON names: ``{"ScaleUp":
  {"StabilizationWindowSeconds": 0, "SelectPolicy": "Max", "Policies": [...]}, ...}``).
  Converting to v2 consumes them: they are never stored, and never shown at v2 (a v2
  write drops them, as Kubernetes' v2 conversion does). One that does not parse as its
  type is ignored, as Kubernetes ignores an unmarshalling error.
- A v2 object converted to v1 and back is itself: every object the server stores
  (defaulted and valid, each metric target setting the field its type names). Where
  Kubernetes' conversion loses something of those, ours keeps it, in the same
  annotation shapes:

  - The cpu metric keeps its place. Kubernetes leaves every cpu utilization metric out
    of the metrics annotation and puts the one of targetCPUUtilizationPercentage last
    on the way back. Here the first one stays in the annotation unless it is the last
    metric (then the annotation is Kubernetes'), marking where
    targetCPUUtilizationPercentage goes back: its value is v1's, and without one it
    goes. Later cpu utilization metrics stay in the annotation as they are.
  - The zero ``targetValue`` (``currentValue``) v1 must write for an Object or
    External metric that has an average value is not read back as a value.

  An empty list of current metrics or conditions comes back as none (Go's nil).
"""

from __future__ import annotations

import json
from typing import Any

from ._decode import DecodeError, decode
from ._quantity import InvalidQuantity, Quantity
from ._schema import builtin_schema

V1, V2 = "autoscaling/v1", "autoscaling/v2"
KIND = "HorizontalPodAutoscaler"
METRICS = "autoscaling.alpha.kubernetes.io/metrics"
CURRENT_METRICS = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP_ANNOTATIONS = (METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR)
DEFAULT_CPU_UTILIZATION = 80
_COPIED_SPEC = ("scaleTargetRef", "minReplicas", "maxReplicas")
_COPIED_STATUS = ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
_V1_TYPES = "io.k8s.api.autoscaling.v1."


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def drop_round_trip_annotations(obj: dict) -> dict:
    """``obj`` without the annotations of the v1 round trip (no annotations left: none)."""
    m = _dict(obj.get("metadata"))
    annotations = _dict(m.get("annotations"))
    if not any(name in annotations for name in ROUND_TRIP_ANNOTATIONS):
        return obj
    kept = {k: v for k, v in annotations.items() if k not in ROUND_TRIP_ANNOTATIONS}
    m = {k: v for k, v in m.items() if k != "annotations"}
    return {**obj, "metadata": {**m, "annotations": kept} if kept else m}


def _with_annotations(obj: dict, added: dict[str, str]) -> dict:
    if not added:
        return obj
    m = _dict(obj.get("metadata"))
    return {**obj, "metadata": {**m, "annotations": {**_dict(m.get("annotations")), **added}}}


def _go_json(value: Any) -> str:
    """JSON as Go's encoding/json writes it (compact, UTF-8, HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                          ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escaped)
    return text


def _is_zero(quantity: Any) -> bool:
    try:
        return Quantity.parse(quantity).amount == 0
    except InvalidQuantity:
        return False


def _cpu_utilization(metric: Any) -> Any:
    """The target utilization of a Resource ``cpu`` metric that has one, else None."""
    metric = _dict(metric)
    source = _dict(metric.get("resource"))
    if metric.get("type") != "Resource" or source.get("name") != "cpu":
        return None
    return _dict(source.get("target")).get("averageUtilization")


def _set(out: dict, key: str, value: Any) -> None:
    if value is not None:
        out[key] = value


# --- autoscaling/v2 to autoscaling/v1 -------------------------------------------------------


def to_v1(hpa: dict) -> dict:
    """An autoscaling/v2 HorizontalPodAutoscaler as autoscaling/v1 (see the rules)."""
    spec = _dict(hpa.get("spec"))
    out = {k: v for k, v in hpa.items() if k not in ("spec", "status")}
    out = drop_round_trip_annotations({**out, "apiVersion": V1, "kind": KIND})
    v1_spec = {k: spec[k] for k in _COPIED_SPEC if k in spec}
    metrics = _list(spec.get("metrics"))
    cpu = next((i for i, m in enumerate(metrics) if _cpu_utilization(m) is not None), None)
    others = metrics
    if cpu is not None:
        v1_spec["targetCPUUtilizationPercentage"] = _cpu_utilization(metrics[cpu])
        if cpu == len(metrics) - 1:
            others = metrics[:-1]
    added = {}
    if others:
        added[METRICS] = _go_json([_metric_to_v1(_dict(m)) for m in others])
    if isinstance(spec.get("behavior"), dict):
        added[BEHAVIOR] = _go_json(_behavior_to_go(spec["behavior"]))
    out["spec"] = v1_spec
    if isinstance(hpa.get("status"), dict):
        status = hpa["status"]
        v1_status = {k: status[k] for k in _COPIED_STATUS if k in status}
        current = _list(status.get("currentMetrics"))
        for metric in map(_dict, current):  # (the last cpu metric says, as in Kubernetes)
            source = _dict(metric.get("resource"))
            if metric.get("type") == "Resource" and source.get("name") == "cpu":
                _set(v1_status, "currentCPUUtilizationPercentage",
                     _dict(source.get("current")).get("averageUtilization"))  # fmt: skip
        if current:
            added[CURRENT_METRICS] = _go_json([_status_to_v1(_dict(m)) for m in current])
        conditions = _list(status.get("conditions"))
        if conditions:
            added[CONDITIONS] = _go_json([_condition_to_v1(_dict(c)) for c in conditions])
        out["status"] = v1_status
    return _with_annotations(out, added)


def _reference(ref: Any) -> dict:
    ref = _dict(ref)
    out = {"kind": ref.get("kind", ""), "name": ref.get("name", "")}
    _set(out, "apiVersion", ref.get("apiVersion"))
    return out


def _metric_to_v1(metric: dict) -> dict:
    """A v2 MetricSpec as a v1 MetricSpec (the metrics annotation's items)."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if isinstance(metric.get("object"), dict):
        source = metric["object"]
        ident, target = _dict(source.get("metric")), _dict(source.get("target"))
        out["object"] = {"target": _reference(source.get("describedObject")),
                         "metricName": ident.get("name", ""),
                         "targetValue": target.get("value", "0")}  # fmt: skip
        _set(out["object"], "selector", ident.get("selector"))
        _set(out["object"], "averageValue", target.get("averageValue"))
    if isinstance(metric.get("pods"), dict):
        ident, target = _dict(metric["pods"].get("metric")), _dict(metric["pods"].get("target"))
        out["pods"] = {"metricName": ident.get("name", ""),
                       "targetAverageValue": target.get("averageValue", "0")}  # fmt: skip
        _set(out["pods"], "selector", ident.get("selector"))
    if isinstance(metric.get("resource"), dict):
        out["resource"] = _resource_to_v1(metric["resource"])
    if isinstance(metric.get("external"), dict):
        source = metric["external"]
        ident, target = _dict(source.get("metric")), _dict(source.get("target"))
        out["external"] = {"metricName": ident.get("name", "")}
        _set(out["external"], "metricSelector", ident.get("selector"))
        _set(out["external"], "targetValue", target.get("value"))
        _set(out["external"], "targetAverageValue", target.get("averageValue"))
    if isinstance(metric.get("containerResource"), dict):
        source = metric["containerResource"]
        out["containerResource"] = {**_resource_to_v1(source),
                                    "container": source.get("container", "")}  # fmt: skip
    return out


def _resource_to_v1(source: dict) -> dict:
    target = _dict(source.get("target"))
    out = {"name": source.get("name", "")}
    _set(out, "targetAverageUtilization", target.get("averageUtilization"))
    _set(out, "targetAverageValue", target.get("averageValue"))
    return out


def _status_to_v1(metric: dict) -> dict:
    """A v2 MetricStatus as a v1 MetricStatus (the current-metrics annotation's items)."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if isinstance(metric.get("object"), dict):
        source = metric["object"]
        ident, current = _dict(source.get("metric")), _dict(source.get("current"))
        out["object"] = {"target": _reference(source.get("describedObject")),
                         "metricName": ident.get("name", ""),
                         "currentValue": current.get("value", "0")}  # fmt: skip
        _set(out["object"], "selector", ident.get("selector"))
        _set(out["object"], "averageValue", current.get("averageValue"))
    if isinstance(metric.get("pods"), dict):
        ident, current = _dict(metric["pods"].get("metric")), _dict(metric["pods"].get("current"))
        out["pods"] = {"metricName": ident.get("name", ""),
                       "currentAverageValue": current.get("averageValue", "0")}  # fmt: skip
        _set(out["pods"], "selector", ident.get("selector"))
    if isinstance(metric.get("resource"), dict):
        out["resource"] = _resource_status_to_v1(metric["resource"])
    if isinstance(metric.get("external"), dict):
        source = metric["external"]
        ident, current = _dict(source.get("metric")), _dict(source.get("current"))
        out["external"] = {"metricName": ident.get("name", "")}
        _set(out["external"], "metricSelector", ident.get("selector"))
        out["external"]["currentValue"] = current.get("value", "0")
        _set(out["external"], "currentAverageValue", current.get("averageValue"))
    if isinstance(metric.get("containerResource"), dict):
        source = metric["containerResource"]
        out["containerResource"] = {**_resource_status_to_v1(source),
                                    "container": source.get("container", "")}  # fmt: skip
    return out


def _resource_status_to_v1(source: dict) -> dict:
    current = _dict(source.get("current"))
    out = {"name": source.get("name", "")}
    _set(out, "currentAverageUtilization", current.get("averageUtilization"))
    out["currentAverageValue"] = current.get("averageValue", "0")
    return out


def _condition_to_v1(condition: dict) -> dict:
    # Go writes a missing time as null (a zero time).
    out = {"type": condition.get("type", ""), "status": condition.get("status", ""),
           "lastTransitionTime": condition.get("lastTransitionTime")}  # fmt: skip
    for key in ("reason", "message"):
        _set(out, key, condition.get(key))
    return out


def _behavior_to_go(behavior: dict) -> dict:
    return {"ScaleUp": _rules_to_go(behavior.get("scaleUp")),
            "ScaleDown": _rules_to_go(behavior.get("scaleDown"))}  # fmt: skip


def _rules_to_go(rules: Any) -> dict | None:
    if not isinstance(rules, dict):
        return None
    policies = rules.get("policies")
    return {
        "StabilizationWindowSeconds": rules.get("stabilizationWindowSeconds"),
        "SelectPolicy": rules.get("selectPolicy"),
        "Policies": None if not isinstance(policies, list) else [
            {"Type": _dict(p).get("type", ""), "Value": _dict(p).get("value", 0),
             "PeriodSeconds": _dict(p).get("periodSeconds", 0)} for p in policies],
    }  # fmt: skip


# --- autoscaling/v1 to autoscaling/v2 -------------------------------------------------------


def to_v2(hpa: dict) -> dict:
    """An autoscaling/v1 HorizontalPodAutoscaler as autoscaling/v2 (see the rules): the
    annotations of the round trip consumed."""
    annotations = _dict(_dict(hpa.get("metadata")).get("annotations"))
    spec = _dict(hpa.get("spec"))
    out = {k: v for k, v in hpa.items() if k not in ("spec", "status")}
    out = drop_round_trip_annotations({**out, "apiVersion": V2, "kind": KIND})
    v2_spec = {k: spec[k] for k in _COPIED_SPEC if k in spec}
    others = _annotation(annotations, METRICS, "MetricSpec")
    metrics = [_metric_to_v2(m) for m in others or ()]
    metrics = _with_cpu_target(metrics, spec.get("targetCPUUtilizationPercentage"))
    v2_spec["metrics"] = metrics or [_cpu_metric(DEFAULT_CPU_UTILIZATION)]
    behavior = _behavior_from_go(annotations.get(BEHAVIOR))
    if behavior:
        v2_spec["behavior"] = behavior
    out["spec"] = v2_spec
    status = _dict(hpa.get("status"))
    v2_status = {k: status[k] for k in _COPIED_STATUS if k in status}
    current = _annotation(annotations, CURRENT_METRICS, "MetricStatus")
    if current is not None:  # it says more than currentCPUUtilizationPercentage
        v2_status["currentMetrics"] = [_status_to_v2(m) for m in current]
    elif status.get("currentCPUUtilizationPercentage") is not None:
        v2_status["currentMetrics"] = [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": status["currentCPUUtilizationPercentage"]}}}]  # fmt: skip
    conditions = _annotation(annotations, CONDITIONS, "HorizontalPodAutoscalerCondition")
    if conditions is not None:
        v2_status["conditions"] = conditions
    if "status" in hpa or v2_status:
        out["status"] = v2_status
    return out


def _annotation(annotations: dict, name: str, type_name: str) -> list[dict] | None:
    """The annotation's list of v1 ``type_name``s, decoded as their type; None if there
    is none, or it does not decode (as Go's unmarshalling fails)."""
    text = annotations.get(name)
    if not isinstance(text, str):
        return None
    try:
        items = json.loads(text)
    except ValueError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    schema = builtin_schema()
    t = schema[_V1_TYPES + type_name]
    try:
        return [decode(schema, t, item).obj for item in items]
    except DecodeError:
        return None


def _cpu_metric(utilization: Any) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": utilization}}}  # fmt: skip


def _with_cpu_target(metrics: list[dict], target: Any) -> list[dict]:
    """The metrics with targetCPUUtilizationPercentage in the place of the annotation's
    first cpu utilization metric (its value v1's, gone without one), or last."""
    at = next((i for i, m in enumerate(metrics) if _cpu_utilization(m) is not None), None)
    if at is None:
        return metrics if target is None else [*metrics, _cpu_metric(target)]
    rest = metrics[at + 1 :]
    return [*metrics[:at], *([] if target is None else [_cpu_metric(target)]), *rest]


def _identifier(name: Any, selector: Any) -> dict:
    out = {"name": name if name is not None else ""}
    _set(out, "selector", selector)
    return out


def _value_unless_zero_beside_average(value: Any, average: Any) -> Any:
    return None if average is not None and _is_zero(value) else value


def _metric_to_v2(metric: dict) -> dict:
    """A v1 MetricSpec (decoded) as a v2 MetricSpec."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if "object" in metric:
        source = metric["object"]
        average = source.get("averageValue")
        target = {"type": "Value" if average is None else "AverageValue"}
        _set(target, "value", _value_unless_zero_beside_average(source.get("targetValue", "0"),
                                                                 average))  # fmt: skip
        _set(target, "averageValue", average)
        ident = _identifier(source.get("metricName"), source.get("selector"))
        out["object"] = {"describedObject": _reference(source.get("target")), "target": target,
                         "metric": ident}  # fmt: skip
    if "pods" in metric:
        source = metric["pods"]
        target = {"type": "AverageValue", "averageValue": source.get("targetAverageValue", "0")}
        out["pods"] = {"metric": _identifier(source.get("metricName"), source.get("selector")),
                       "target": target}  # fmt: skip
    if "resource" in metric:
        out["resource"] = _resource_to_v2(metric["resource"])
    if "containerResource" in metric:
        source = metric["containerResource"]
        out["containerResource"] = {**_resource_to_v2(source),
                                    "container": source.get("container", "")}  # fmt: skip
    if "external" in metric:
        source = metric["external"]
        value = source.get("targetValue")
        target = {"type": "AverageValue" if value is None else "Value"}
        _set(target, "value", value)
        _set(target, "averageValue", source.get("targetAverageValue"))
        out["external"] = {"metric": _identifier(source.get("metricName"),
                                                 source.get("metricSelector")),
                           "target": target}  # fmt: skip
    return out


def _resource_to_v2(source: dict) -> dict:
    utilization = source.get("targetAverageUtilization")
    target = {"type": "AverageValue" if utilization is None else "Utilization"}
    _set(target, "averageUtilization", utilization)
    _set(target, "averageValue", source.get("targetAverageValue"))
    return {"name": source.get("name", ""), "target": target}


def _status_to_v2(metric: dict) -> dict:
    """A v1 MetricStatus (decoded) as a v2 MetricStatus."""
    out: dict[str, Any] = {"type": metric.get("type", "")}
    if "object" in metric:
        source = metric["object"]
        average = source.get("averageValue")
        current: dict[str, Any] = {}
        _set(current, "value", _value_unless_zero_beside_average(source.get("currentValue", "0"),
                                                                  average))  # fmt: skip
        _set(current, "averageValue", average)
        out["object"] = {"metric": _identifier(source.get("metricName"), source.get("selector")),
                         "current": current,
                         "describedObject": _reference(source.get("target"))}  # fmt: skip
    if "pods" in metric:
        source = metric["pods"]
        current = {"averageValue": source.get("currentAverageValue", "0")}
        out["pods"] = {"metric": _identifier(source.get("metricName"), source.get("selector")),
                       "current": current}  # fmt: skip
    if "resource" in metric:
        out["resource"] = _resource_status_to_v2(metric["resource"])
    if "containerResource" in metric:
        source = metric["containerResource"]
        out["containerResource"] = {**_resource_status_to_v2(source),
                                    "container": source.get("container", "")}  # fmt: skip
    if "external" in metric:
        source = metric["external"]
        average = source.get("currentAverageValue")
        current = {}
        _set(current, "value", _value_unless_zero_beside_average(source.get("currentValue", "0"),
                                                                  average))  # fmt: skip
        _set(current, "averageValue", average)
        out["external"] = {"metric": _identifier(source.get("metricName"),
                                                 source.get("metricSelector")),
                           "current": current}  # fmt: skip
    return out


def _resource_status_to_v2(source: dict) -> dict:
    current = {"averageValue": source.get("currentAverageValue", "0")}
    _set(current, "averageUtilization", source.get("currentAverageUtilization"))
    return {"name": source.get("name", ""), "current": current}


# Go's encoding of Kubernetes' internal HorizontalPodAutoscalerBehavior: its field names
# (matched regardless of case when read, as Go's decoder does), and the type of each.
_RULES = {"stabilizationwindowseconds": ("stabilizationWindowSeconds", int),
          "selectpolicy": ("selectPolicy", str), "policies": ("policies", list)}  # fmt: skip
_POLICY = {"type": ("type", str), "value": ("value", int),
           "periodseconds": ("periodSeconds", int)}  # fmt: skip


class _NotGo(ValueError):
    """The behavior annotation is not what Go's decoder would read."""


def _behavior_from_go(text: Any) -> dict | None:
    """The behavior annotation as a v2 behavior; None if it is absent, does not parse,
    or sets no direction (as Kubernetes ignores an empty behavior)."""
    if not isinstance(text, str):
        return None
    try:
        behavior = _go_struct(json.loads(text), {"scaleup": ("scaleUp", dict),
                                                 "scaledown": ("scaleDown", dict)})  # fmt: skip
        for direction, rules in behavior.items():
            rules = _go_struct(rules, _RULES)
            if "policies" in rules:
                rules["policies"] = [_go_struct(p, _POLICY) for p in rules["policies"]]
            behavior[direction] = rules
    except (ValueError, _NotGo):
        return None
    return behavior or None


def _go_struct(value: Any, fields: dict[str, tuple[str, type]]) -> dict:
    """A JSON object read into a Go struct of ``fields`` (by lowercased Go name: our
    name and the JSON type); nulls and unknown fields left out."""
    if not isinstance(value, dict):
        raise _NotGo("not an object")
    out = {}
    for key, item in value.items():
        known = fields.get(key.lower())
        if known is None or item is None:
            continue
        name, kind = known
        if not isinstance(item, kind) or (kind is int and isinstance(item, bool)):
            raise _NotGo(f"{key} is not a {kind.__name__}")
        out[name] = item
    return out
