"""NodeUnschedulable and NodeName: the two filters that read only the node's name and
its ``spec.unschedulable`` (a cordoned node takes only pods that tolerate the
``node.kubernetes.io/unschedulable`` taint)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._framework import SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo
from .taints import tolerates

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = "NodeUnschedulable"
    row_local = True  # the pod's tolerations, the node's spec

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        if not node.spec.get("unschedulable"):
            return SUCCESS
        if tolerates((pod.get("spec") or {}).get("tolerations") or (), UNSCHEDULABLE_TAINT):
            return SUCCESS
        return Status.unresolvable("node(s) were unschedulable")

    def node_labels(self, state: CycleState, pod: Mapping[str, Any]) -> tuple[str, ...]:
        return ()  # it reads spec.unschedulable only


class NodeName:
    name = "NodeName"
    row_local = True  # the pod's spec.nodeName, the node's name

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node.name:
            return Status.unresolvable("node(s) didn't match the requested node name")
        return SUCCESS

    def filter_many(self, state: CycleState, pod: Mapping[str, Any], table) -> np.ndarray:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if not wanted:
            return np.ones(len(table), dtype=bool)
        mask = np.zeros(len(table), dtype=bool)
        row = table.row.get(wanted)
        if row is not None:
            mask[row] = True
        return mask
