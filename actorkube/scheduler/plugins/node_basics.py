"""NodeUnschedulable and NodeName: the two filters that read only the node's name and
its ``spec.unschedulable`` (a cordoned node takes only pods that tolerate the
``node.kubernetes.io/unschedulable`` taint)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._framework import SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo
from .taints import tolerates

UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}


class NodeUnschedulable:
    name = "NodeUnschedulable"

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        if not node.spec.get("unschedulable"):
            return SUCCESS
        if tolerates((pod.get("spec") or {}).get("tolerations") or (), UNSCHEDULABLE_TAINT):
            return SUCCESS
        return Status.unresolvable("node(s) were unschedulable")


class NodeName:
    name = "NodeName"

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        wanted = (pod.get("spec") or {}).get("nodeName")
        if wanted and wanted != node.name:
            return Status.unresolvable("node(s) didn't match the requested node name")
        return SUCCESS
