"""NodeResourcesFit and NodeResourcesBalancedAllocation.

Rules (Kubernetes' noderesources plugins):

- Fit filters: one more pod than ``pods`` allocatable is "Too many pods"; any resource
  the pod requests beyond what is left of the node's allocatable is "Insufficient
  <resource>" (every such resource is named).
- Fit scores with a strategy over CPU and memory (weight 1 each): LeastAllocated (the
  default: the share left free, so pods spread), MostAllocated (the share used, so
  they pack) or RequestedToCapacityRatio (a piecewise-linear function of the share
  used). Requests count with the scheduler's non-zero defaults.
- BalancedAllocation scores how evenly the node's CPU and memory would be used:
  100 x (1 - the standard deviation of the two used shares).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from .._framework import MAX_NODE_SCORE, SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo
from .._resources import CPU, MEMORY, PODS, pod_requests

SCORED = (CPU, MEMORY)


def _requests(state: CycleState, pod: Mapping[str, Any], non_zero: bool) -> dict[str, int]:
    key = ("requests", non_zero)
    if key not in state:
        state[key] = pod_requests(pod, non_zero=non_zero)
    return state[key]


def _used_shares(
    state: CycleState, pod: Mapping[str, Any], node: NodeInfo
) -> list[tuple[int, int]]:
    asked = _requests(state, pod, True)
    return [(node.non_zero.get(r, 0) + asked.get(r, 0), node.allocatable.get(r, 0)) for r in SCORED]


class NodeResourcesFit:
    name = "NodeResourcesFit"

    def __init__(self, strategy: str = "LeastAllocated",
                 shape: Sequence[tuple[int, int]] = ((0, 0), (100, 10))) -> None:  # fmt: skip
        if strategy not in ("LeastAllocated", "MostAllocated", "RequestedToCapacityRatio"):
            raise ValueError(f"unknown scoring strategy {strategy!r}")
        self.strategy = strategy
        self.shape = tuple(shape)  # (utilization %, score 0-10) points, for the ratio

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        reasons = []
        if len(node.pods) + 1 > node.allocatable.get(PODS, 110):
            reasons.append("Too many pods")
        for name, wanted in _requests(state, pod, False).items():
            if wanted <= 0 or name == PODS:
                continue
            free = node.allocatable.get(name, 0) - node.requested.get(name, 0)
            if wanted > free:
                reasons.append(f"Insufficient {name}")
        return Status.unschedulable(*reasons) if reasons else SUCCESS

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        scores = [
            self._resource_score(used, capacity)
            for used, capacity in _used_shares(state, pod, node)
        ]
        return sum(scores) // len(scores)

    def _resource_score(self, used: int, capacity: int) -> int:
        if capacity <= 0:
            return 0
        if self.strategy == "LeastAllocated":
            return 0 if used > capacity else (capacity - used) * MAX_NODE_SCORE // capacity
        if self.strategy == "MostAllocated":
            return min(used, capacity) * MAX_NODE_SCORE // capacity
        utilization = min(used, capacity) * 100 // capacity
        return _piecewise(self.shape, utilization) * MAX_NODE_SCORE // 10


def _piecewise(shape: Sequence[tuple[int, int]], x: int) -> int:
    """The broken line through ``shape``'s (x, y) points, flat beyond its ends."""
    if x <= shape[0][0]:
        return shape[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(shape):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) // (x1 - x0)
    return shape[-1][1]


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        shares = [min(used / capacity, 1.0) for used, capacity in _used_shares(state, pod, node)
                  if capacity > 0]  # fmt: skip
        if len(shares) < 2:
            return MAX_NODE_SCORE
        mean = sum(shares) / len(shares)
        std = (sum((s - mean) ** 2 for s in shares) / len(shares)) ** 0.5
        return int((1 - std) * MAX_NODE_SCORE)
