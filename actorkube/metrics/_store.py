"""The metrics server's pure core: which kubelets to scrape, which of their answers to
keep, and what to answer the API server.

Rules of this file:

- The kubelets to scrape are those named by their Node's
  ``kubelet.actorkube.io/server`` annotation (an actor address, as the API server
  finds a kubelet for ``pods/log``); a node without one has no metrics.
- An answer is kept only if it is a ``ResourceMetrics`` of the node that was asked,
  every amount at least 0, every time and window finite, every pod and container
  named and each named once. Anything else (an error answer, an answer of another type
  or for another node, no answer at all) counts as no answer: that node is left out.
- Each scrape replaces everything kept, as metrics-server's storage does: a node whose
  kubelet did not answer this time has no metrics (nor have its pods) until it
  answers again, and a pod its kubelet no longer reports is gone. A pod reported by
  two kubelets is kept from the first in node-name order.
- Queries (``MetricsQuery``) read what is kept: nodes by name, pods by namespace and
  name, sorted.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from actorkube.apiserver._kubeletclient import SERVER_ANNOTATION
from actorkube.apiserver._metricsapi import (
    MetricsAnswer,
    MetricsQuery,
    NodeMetrics,
    PodMetrics,
    Usage,
)

from ._messages import ResourceMetrics


def targets(nodes: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Node name -> the address of its kubelet's server, for the nodes that have one."""
    found = {}
    for node in nodes:
        m = node.get("metadata") or {}
        address = (m.get("annotations") or {}).get(SERVER_ANNOTATION)
        if m.get("name") and isinstance(address, str) and address:
            found[m["name"]] = address
    return found


def _valid_usage(usage: Usage) -> bool:
    return (usage.cpu_nanocores >= 0 and usage.memory_bytes >= 0
            and math.isfinite(usage.timestamp) and math.isfinite(usage.window)
            and usage.window >= 0)  # fmt: skip


def _valid_pods(pods: Iterable[PodMetrics]) -> bool:
    seen = set()
    for pod in pods:
        key = (pod.namespace, pod.name)
        names = [c.name for c in pod.containers]
        if not all(key) or key in seen or not all(names) or len(set(names)) != len(names):
            return False
        if not all(_valid_usage(c.usage) for c in pod.containers):
            return False
        seen.add(key)
    return True


def accepted(node: str, answer: object) -> ResourceMetrics | None:
    """``answer`` if it is one to keep from the kubelet of ``node`` (see the rules)."""
    if not isinstance(answer, ResourceMetrics) or answer.node != node:
        return None
    if not _valid_usage(answer.usage) or not _valid_pods(answer.pods):
        return None
    return answer


@attrs.define
class MetricsStore:
    """The latest metrics of each node and pod (see the rules)."""

    nodes: dict[str, NodeMetrics] = attrs.field(factory=dict)
    # By (namespace, name, node): a pod two kubelets both claim is kept as each says,
    # and the API server serves the claim of the node the pod is bound to.
    pods: dict[tuple[str, str, str], PodMetrics] = attrs.field(factory=dict)

    def replace(self, answers: Iterable[ResourceMetrics]) -> None:
        """Keep exactly what ``answers`` (accepted ones, one per node) say."""
        nodes: dict[str, NodeMetrics] = {}
        pods: dict[tuple[str, str, str], PodMetrics] = {}
        for answer in sorted(answers, key=lambda a: a.node):
            if answer.node in nodes:
                continue
            nodes[answer.node] = NodeMetrics(answer.node, answer.usage)
            for pod in answer.pods:
                key = (pod.namespace, pod.name, answer.node)
                pods.setdefault(key, attrs.evolve(pod, node=answer.node))
        self.nodes, self.pods = nodes, pods

    def query(self, query: MetricsQuery) -> MetricsAnswer:
        if query.resource == "nodes":
            if query.name:
                found = self.nodes.get(query.name)
                return MetricsAnswer(nodes=(found,) if found else ())
            return MetricsAnswer(nodes=tuple(self.nodes[n] for n in sorted(self.nodes)))
        if query.resource != "pods":
            return MetricsAnswer()
        return MetricsAnswer(pods=tuple(
            self.pods[key] for key in sorted(self.pods)
            if (not query.namespace or key[0] == query.namespace)
            and (not query.name or key[1] == query.name)
        ))  # fmt: skip
