"""What a pod asks of a node and what a node has to give, as the scheduler counts them.

Rules of this file (Kubernetes' resource helpers, k8s.io/component-helpers):

- Amounts are integers in the unit the scheduler compares: CPU in millicores, memory
  and storage in bytes, everything else (pods, extended resources) in units.
- A pod's request is, per resource, the larger of the sum over its app containers plus
  its restartable (sidecar) init containers, and the most the init phase asks at once
  (init containers run one at a time, before the app containers, beside the sidecars
  started before them), plus the pod's overhead (Kubernetes' PodRequests).
- For scoring, a container that requests no CPU or memory counts as asking 100m CPU
  and 200Mi memory (the scheduler's non-zero defaults), so that empty pods still
  spread.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from actorkube.apiserver._quantity import InvalidQuantity, Quantity

CPU, MEMORY, PODS = "cpu", "memory", "pods"
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


def amount(name: str, value: Any) -> int:
    """A quantity as the scheduler counts it: millicores for CPU, units otherwise; 0 for
    a value that is not a quantity (validation refuses those before they are stored)."""
    if isinstance(value, str):
        return _amount_of_text(name == CPU, value)
    return _amount(name == CPU, value)


@functools.lru_cache(maxsize=4096)
def _amount_of_text(milli: bool, value: str) -> int:
    # Pods of one workload ask for the same few quantities, and parsing one costs
    # tens of microseconds.
    return _amount(milli, value)


def _amount(milli: bool, value: Any) -> int:
    try:
        q = Quantity.parse(value)
    except (InvalidQuantity, TypeError, ValueError):
        return 0
    return q.milli_value() if milli else q.value()


def resource_list(values: Mapping[str, Any] | None) -> dict[str, int]:
    return {name: amount(name, v) for name, v in (values or {}).items()}


def _add(into: dict[str, int], more: Mapping[str, int]) -> None:
    for name, v in more.items():
        into[name] = into.get(name, 0) + v


def _container_requests(c: Mapping[str, Any], non_zero: bool) -> dict[str, int]:
    requests = resource_list((c.get("resources") or {}).get("requests"))
    if non_zero:
        if not requests.get(CPU):
            requests[CPU] = DEFAULT_MILLI_CPU
        if not requests.get(MEMORY):
            requests[MEMORY] = DEFAULT_MEMORY
    return requests


def pod_requests(pod: Mapping[str, Any], *, non_zero: bool = False) -> dict[str, int]:
    """What ``pod`` asks of its node (see the module rules); ``non_zero``: with the
    scoring defaults for containers that ask for no CPU or memory."""
    spec = pod.get("spec") or {}
    total: dict[str, int] = {}
    for c in spec.get("containers") or ():
        _add(total, _container_requests(c, non_zero))
    sidecars: dict[str, int] = {}  # the sidecars started so far
    busiest: dict[str, int] = {}  # the most the init phase ever asks at once
    for c in spec.get("initContainers") or ():
        asked = _container_requests(c, non_zero)
        if c.get("restartPolicy") == "Always":  # a sidecar: runs beside the app
            _add(total, asked)
            _add(sidecars, asked)
            at_once = dict(sidecars)
        else:  # a plain init container runs alone, beside the sidecars before it
            at_once = dict(sidecars)
            _add(at_once, asked)
        for name, v in at_once.items():
            busiest[name] = max(busiest.get(name, 0), v)
    for name, v in busiest.items():
        total[name] = max(total.get(name, 0), v)
    _add(total, resource_list(spec.get("overhead")))
    return total


def allocatable(node: Mapping[str, Any]) -> dict[str, int]:
    """What the node offers pods (status.allocatable, else status.capacity)."""
    status = node.get("status") or {}
    return resource_list(status.get("allocatable") or status.get("capacity"))
