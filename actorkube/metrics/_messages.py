"""What a metrics server asks a kubelet (kubelet's ``/metrics/resource``, which
metrics-server scrapes), and what the kubelet answers.

The values inside (``Usage``, ``PodMetrics``, ``ContainerMetrics``) are the resource
metrics API's (``actorkube.apiserver._metricsapi``): a kubelet reports them as the API
serves them.
"""

from __future__ import annotations

from actorkube.actor import message
from actorkube.apiserver._metricsapi import PodMetrics, Usage


@message(tag="kubelet.GetResourceMetrics")
class GetResourceMetrics:
    """Asks a kubelet's server for its node's resource metrics."""


@message(tag="kubelet.ResourceMetrics")
class ResourceMetrics:
    """A kubelet's resource metrics: ``node`` its node's name; ``usage`` the node's
    (the sum of its running containers'); ``pods`` the running containers of each pod
    it made, sorted by namespace and name."""

    node: str
    usage: Usage
    pods: tuple[PodMetrics, ...] = ()


@message(tag="kubelet.ResourceMetricsError")
class ResourceMetricsError:
    """The kubelet could not measure (its container runtime failed): ``message`` says
    why."""

    message: str
