"""The scheduler's configuration file: kube-scheduler's KubeSchedulerConfiguration
(``kubescheduler.config.k8s.io/v1``), YAML or JSON.

Rules of this file:

- Top level: ``percentageOfNodesToScore``, ``podInitialBackoffSeconds``,
  ``podMaxBackoffSeconds``, ``leaderElection`` (``leaderElect``, ``leaseDuration``,
  ``renewDeadline``, ``retryPeriod`` as durations such as ``15s``,
  ``resourceName``, ``resourceNamespace``) and ``profiles``; no profiles means the
  default one.
- A profile: ``schedulerName``, its own ``percentageOfNodesToScore``, ``plugins`` and
  ``pluginConfig``. Plugins start from the default profile; ``multiPoint``
  ``enabled`` adds a plugin (with its score ``weight``) and ``disabled`` removes one
  (``*``: every default). Per extension point, ``score`` sets weights
  (``disabled``: not scored), ``filter``/``preFilter`` ``disabled`` skips a plugin's
  filtering and ``postFilter`` ``disabled`` turns preemption off.
- ``pluginConfig`` args: NodeResourcesFit ``scoringStrategy`` (``type``
  LeastAllocated, MostAllocated or RequestedToCapacityRatio with its ``shape``;
  ``resources`` cpu and memory with weights), InterPodAffinity
  ``hardPodAffinityWeight``, PodTopologySpread ``defaultConstraints`` with
  ``defaultingType: List`` (or ``System``, the default).
- Anything else (an unknown plugin, field or strategy, a bad value) is a
  ``ConfigError`` that names it: a scheduler never starts on a configuration it
  misreads.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from ._framework import Framework
from ._profiles import DEFAULT_WEIGHTS, PLUGINS, make_plugin
from ._scheduler import DEFAULT_SCHEDULER, SchedulerConfig
from .plugins import InterPodAffinity, NodeResourcesFit, PodTopologySpread

API_VERSION = "kubescheduler.config.k8s.io/v1"
ORDER = ("PrioritySort", *PLUGINS, "DefaultBinder")
# Always there: the queue sorts by priority and the scheduler binds through the API.
BUILT_IN = {"PrioritySort", "DefaultBinder"}
TOP_LEVEL = {"apiVersion", "kind", "percentageOfNodesToScore", "podInitialBackoffSeconds",
             "podMaxBackoffSeconds", "leaderElection", "profiles", "parallelism",
             "clientConnection", "enableProfiling", "enableContentionProfiling"}  # fmt: skip
POINTS = {"multiPoint", "queueSort", "preFilter", "filter", "postFilter", "preScore",
          "score", "reserve", "permit", "preBind", "bind", "postBind", "preEnqueue"}  # fmt: skip


DEFAULT_RESOURCES = ({"name": "cpu", "weight": 1}, {"name": "memory", "weight": 1})
DEFAULT_SHAPE = ({"utilization": 0, "score": 0}, {"utilization": 100, "score": 10})


class ConfigError(ValueError):
    """The configuration cannot be used; the message says where and why."""


def _duration(text: Any, where: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)(ms|s|m|h)\s*", str(text))
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not a duration such as 15s")
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2)]
    return float(match.group(1)) * scale


def _int(value: Any, where: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: {value!r} is not an integer")
    if value < low or (high is not None and value > high):
        raise ConfigError(f"{where}: {value} is out of range")
    return value


def _seconds(raw: Mapping[str, Any], key: str, default: int) -> float:
    return float(_int(raw.get(key, default), key, 1))


def _names(entries: Any, where: str) -> list[tuple[str, int | None]]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: a list of plugins is expected")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{where}[{i}]: each plugin needs a name")
        name = entry["name"]
        if name != "*" and name not in ORDER:
            raise ConfigError(f"{where}[{i}]: unknown plugin {name!r}")
        weight = entry.get("weight")
        out.append((name, None if weight is None else _int(weight, f"{where}[{i}].weight", 0, 100)))
    return out


def _fit(args: Mapping[str, Any], where: str) -> NodeResourcesFit:
    strategy = args.get("scoringStrategy") or {}
    kind = strategy.get("type", "LeastAllocated")
    resources = []
    for i, r in enumerate(strategy.get("resources") or DEFAULT_RESOURCES):
        if r.get("name") not in ("cpu", "memory"):
            raise ConfigError(f"{where}.scoringStrategy.resources[{i}]: only cpu and memory "
                              f"are scored, not {r.get('name')!r}")  # fmt: skip
        resources.append((r["name"], _int(r.get("weight", 1), f"{where}.resources[{i}].weight", 1)))
    points = (strategy.get("requestedToCapacityRatio") or {}).get("shape") or DEFAULT_SHAPE
    shape = [(_int(p.get("utilization"), f"{where}.shape.utilization", 0, 100),
              _int(p.get("score"), f"{where}.shape.score", 0, 10)) for p in points]  # fmt: skip
    try:
        return NodeResourcesFit(kind, shape, resources=tuple(resources))
    except ValueError as e:
        raise ConfigError(f"{where}.scoringStrategy: {e}") from None


def _plugin(name: str, args: Mapping[str, Any], seed: int, where: str):
    if name == "NodeResourcesFit":
        return _fit(args, where)
    if name == "InterPodAffinity":
        return InterPodAffinity(_int(args.get("hardPodAffinityWeight", 1),
                                     f"{where}.hardPodAffinityWeight", 0, 100))  # fmt: skip
    if name == "PodTopologySpread":
        defaulting = args.get("defaultingType", "System")
        if defaulting not in ("System", "List"):
            raise ConfigError(f"{where}.defaultingType: {defaulting!r} is not System or List")
        constraints = args.get("defaultConstraints")
        if defaulting == "List":
            return PodTopologySpread(defaults=list(constraints or ()))
        if constraints:
            raise ConfigError(f"{where}: defaultConstraints need defaultingType List")
        return PodTopologySpread()
    if args:
        raise ConfigError(f"{where}: {name} takes no args here")
    return make_plugin(name, seed)


def _profile(raw: Mapping[str, Any], percentage: int, seed: int, where: str):
    name = raw.get("schedulerName", DEFAULT_SCHEDULER)
    own = raw.get("percentageOfNodesToScore")
    if own is not None:
        percentage = _int(own, f"{where}.percentageOfNodesToScore", 0, 100)
    plugins = raw.get("plugins") or {}
    unknown = set(plugins) - POINTS
    if unknown:
        raise ConfigError(f"{where}.plugins: unknown extension point {sorted(unknown)[0]!r}")
    enabled = {n: DEFAULT_WEIGHTS.get(n, 0) for n in ORDER}
    multi = plugins.get("multiPoint") or {}
    for n, _ in _names(multi.get("disabled"), f"{where}.plugins.multiPoint.disabled"):
        if n == "*":
            enabled.clear()
        else:
            enabled.pop(n, None)
    for n, weight in _names(multi.get("enabled"), f"{where}.plugins.multiPoint.enabled"):
        enabled[n] = weight if weight is not None else DEFAULT_WEIGHTS.get(n, 0)
    score = plugins.get("score") or {}
    for n, _ in _names(score.get("disabled"), f"{where}.plugins.score.disabled"):
        for m in list(enabled) if n == "*" else [n]:
            if m in enabled:
                enabled[m] = 0
    for n, weight in _names(score.get("enabled"), f"{where}.plugins.score.enabled"):
        enabled[n] = weight if weight is not None else DEFAULT_WEIGHTS.get(n, 1)
    no_filter: set[str] = set()
    for point in ("preFilter", "filter"):
        for n, _ in _names((plugins.get(point) or {}).get("disabled"), f"{where}.{point}"):
            no_filter.update(ORDER if n == "*" else [n])
    for n, _ in _names((plugins.get("postFilter") or {}).get("disabled"), f"{where}.postFilter"):
        if n in ("*", "DefaultPreemption"):
            enabled.pop("DefaultPreemption", None)
    args_by_name: dict[str, Mapping[str, Any]] = {}
    for i, entry in enumerate(raw.get("pluginConfig") or ()):
        n = entry.get("name")
        if n not in ORDER:
            raise ConfigError(f"{where}.pluginConfig[{i}]: unknown plugin {n!r}")
        args_by_name[n] = entry.get("args") or {}
    built = [_plugin(n, args_by_name.get(n, {}), seed, f"{where}.pluginConfig[{n}].args")
             for n in ORDER if n in enabled and n not in BUILT_IN]  # fmt: skip
    weights = {n: w for n, w in enabled.items() if w}

    def make() -> Framework:
        return Framework(built, weights, percentage, random.Random(seed),
                         no_filter=frozenset(no_filter))  # fmt: skip

    return name, make


def load_config(text: str | Mapping[str, Any], *, seed: int = 0) -> SchedulerConfig:
    """A SchedulerConfig from a KubeSchedulerConfiguration (text or parsed)."""
    if isinstance(text, str):
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"not YAML or JSON: {e}") from None
    else:
        raw = text
    if not isinstance(raw, Mapping):
        raise ConfigError("a KubeSchedulerConfiguration object is expected")
    if raw.get("apiVersion", API_VERSION) != API_VERSION:
        raise ConfigError(f"apiVersion {raw.get('apiVersion')!r} is not {API_VERSION}")
    if raw.get("kind", "KubeSchedulerConfiguration") != "KubeSchedulerConfiguration":
        raise ConfigError(f"kind {raw.get('kind')!r} is not KubeSchedulerConfiguration")
    unknown = set(raw) - TOP_LEVEL
    if unknown:
        raise ConfigError(f"unknown field {sorted(unknown)[0]!r}")
    percentage = _int(raw.get("percentageOfNodesToScore", 0), "percentageOfNodesToScore", 0, 100)
    profiles: dict[str, Callable[[], Framework]] = {}
    for i, p in enumerate(raw.get("profiles") or [{}]):
        name, make = _profile(p or {}, percentage, seed, f"profiles[{i}]")
        if name in profiles:
            raise ConfigError(f"profiles[{i}]: schedulerName {name!r} is used twice")
        profiles[name] = make
    election = raw.get("leaderElection") or {}
    options: dict[str, Any] = {}
    for field, key in (("lease_duration", "leaseDuration"), ("renew_deadline", "renewDeadline"),
                       ("retry_period", "retryPeriod")):  # fmt: skip
        if key in election:
            options[field] = _duration(election[key], f"leaderElection.{key}")
    return SchedulerConfig(
        profiles=profiles,
        leader_elect=bool(election.get("leaderElect", True)),
        lease_name=election.get("resourceName", "kube-scheduler"),
        lease_namespace=election.get("resourceNamespace", "kube-system"),
        initial_backoff=_seconds(raw, "podInitialBackoffSeconds", 1),
        maximum_backoff=_seconds(raw, "podMaxBackoffSeconds", 10),
        **options,
    )
