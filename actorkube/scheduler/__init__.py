"""The scheduler: Kubernetes' scheduling framework (filter, score, bind) as a pure core
with plugins, and the actor that runs it against the API server (see
docs/scheduler.md)."""

from ._config import ConfigError, load_config
from ._framework import (
    Code,
    CycleState,
    FitError,
    Framework,
    Result,
    Status,
    feasible_nodes_to_find,
)
from ._nodeinfo import NodeInfo
from ._profiles import DEFAULT_WEIGHTS, default_framework
from ._resources import pod_requests
from ._scheduler import Scheduler, SchedulerConfig

__all__ = [
    "DEFAULT_WEIGHTS",
    "Code",
    "ConfigError",
    "CycleState",
    "FitError",
    "Framework",
    "NodeInfo",
    "Result",
    "Scheduler",
    "SchedulerConfig",
    "Status",
    "default_framework",
    "feasible_nodes_to_find",
    "load_config",
    "pod_requests",
]
