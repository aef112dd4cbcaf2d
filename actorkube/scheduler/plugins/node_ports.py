"""NodePorts: a pod's host ports must be free on the node. Two claims clash when they
have the same protocol and port and the same host IP, or either binds every address
(0.0.0.0)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._framework import SKIP, SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo, host_ports

ANY_IP = "0.0.0.0"


class NodePorts:
    name = "NodePorts"
    row_local = True  # the pod's host ports, the ports its node's pods hold

    def pre_filter(self, state: CycleState, pod: Mapping[str, Any], table) -> Status:
        state[self.name] = host_ports(pod)
        return SUCCESS if state[self.name] else SKIP  # no host ports: nothing to check

    def filter(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> Status:
        wanted = state.get(self.name)
        if wanted is None:
            wanted = host_ports(pod)
        used = node.ports
        for protocol, ip, port in wanted:
            for used_protocol, used_ip, used_port in used:
                if used_port != port or used_protocol != protocol:
                    continue
                if ip == used_ip or ANY_IP in (ip, used_ip):
                    return Status.unschedulable(
                        "node(s) didn't have free ports for the requested pod ports"
                    )
        return SUCCESS
