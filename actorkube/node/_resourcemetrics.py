"""The kubelet's resource metrics (its ``/metrics/resource``, what metrics-server
scrapes): one sample of every running container this kubelet made, and their sum for
the node.

Rules of this file:

- The kubelet's server is the only caller of the runtime's ``container_stats``: the
  process runtime averages a container's CPU since its previous call for it, so a
  second caller would cut the windows short. Samples are taken at most once every
  ``MIN_INTERVAL`` seconds; an ask within that of the previous sample gets that sample
  again (two metrics servers scraping at once share it, as they share the kubelet's
  cached cAdvisor stats in Kubernetes).
- A container's ``window`` is the time since the previous sample of it, or since it
  started for its first one (what the runtime averaged over). The node's usage is the
  sum of its containers' (processes outside pods are not counted); its window the
  longest of theirs, or with no container the time since the previous sample (0 for
  the first). Timestamps are the runtime's (wall clock).
- Containers without the kubelet's pod labels are left out. Within one pod two running
  containers of one name (a restart caught mid-way) count once: the newest attempt.
- Pure: the server passes in what the runtime said and the times (trio's ``now`` for
  intervals, the wall clock for the first windows).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from actorkube.apiserver._metricsapi import ContainerMetrics, PodMetrics, Usage
from actorkube.metrics._messages import ResourceMetrics

from ._podstate import CONTAINER_NAME, POD_NAME, POD_NAMESPACE
from .runtime import ContainerStats, ContainerStatus

MIN_INTERVAL = 1.0  # seconds between two samples of the runtime
NANOCORES_PER_MILLI = 1_000_000


@attrs.define
class Sampler:
    """The previous sample and when each container was last sampled."""

    last: float | None = None  # trio time of the previous sample
    answer: ResourceMetrics | None = None
    sampled: dict[str, float] = attrs.field(factory=dict)  # container id -> trio time

    def cached(self, now: float) -> ResourceMetrics | None:
        """The previous sample, if it is recent enough to answer with again."""
        if self.answer is not None and self.last is not None and now - self.last < MIN_INTERVAL:
            return self.answer
        return None

    def sample(self, node: str, stats: Iterable[tuple[ContainerStatus, ContainerStats]],
               now: float, wall: float) -> ResourceMetrics:  # fmt: skip
        """The node's metrics from ``stats`` (each running container's status and what
        the runtime measured just now); remembered as the latest sample."""
        pods: dict[tuple[str, str], dict[str, tuple[int, ContainerMetrics]]] = {}
        sampled: dict[str, float] = {}
        for status, measured in stats:
            labels = status.labels
            namespace, pod = labels.get(POD_NAMESPACE), labels.get(POD_NAME)
            name = labels.get(CONTAINER_NAME) or status.name
            if not namespace or not pod:
                continue
            since = self.sampled.get(status.id)
            if since is not None:
                window = now - since
            else:
                window = wall - status.started_at if status.started_at else 0.0
            sampled[status.id] = now
            usage = Usage(measured.cpu_millis * NANOCORES_PER_MILLI, measured.memory_bytes,
                          measured.timestamp, max(window, 0.0))  # fmt: skip
            containers = pods.setdefault((namespace, pod), {})
            kept = containers.get(name)
            if kept is None or kept[0] < status.config.attempt:
                containers[name] = (status.config.attempt, ContainerMetrics(name, usage))
        all_usages = [m.usage for c in pods.values() for _, m in c.values()]
        node_window = max((u.window for u in all_usages), default=None)
        if node_window is None:
            node_window = now - self.last if self.last is not None else 0.0
        total = Usage(sum(u.cpu_nanocores for u in all_usages),
                      sum(u.memory_bytes for u in all_usages), wall, node_window)  # fmt: skip
        answer = ResourceMetrics(node, total, tuple(
            PodMetrics(namespace, pod, tuple(m for _, (_, m) in sorted(containers.items())))
            for (namespace, pod), containers in sorted(pods.items())
        ))  # fmt: skip
        self.last, self.answer, self.sampled = now, answer, sampled
        return answer
