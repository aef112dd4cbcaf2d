"""The scheduler: Kubernetes' scheduling framework (filter, score, bind) as a pure core
with plugins; the actor that runs it against the API server comes with issue 7's next
steps (see docs/scheduler.md)."""

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

__all__ = [
    "DEFAULT_WEIGHTS",
    "Code",
    "CycleState",
    "FitError",
    "Framework",
    "NodeInfo",
    "Result",
    "Status",
    "default_framework",
    "feasible_nodes_to_find",
    "pod_requests",
]
