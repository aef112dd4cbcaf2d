"""Profiles: which plugins run, in which order, with which score weights. The default
is kube-scheduler's (weights: TaintToleration 3, NodeAffinity 2, PodTopologySpread 2,
InterPodAffinity 2, NodeResourcesFit 1, NodeResourcesBalancedAllocation 1,
ImageLocality 1); the volume plugins are not built (actorkube has no volumes to
bind)."""

from __future__ import annotations

import random

from ._framework import Framework
from ._preemption import DefaultPreemption
from .plugins import (
    BalancedAllocation,
    ImageLocality,
    InterPodAffinity,
    NodeAffinity,
    NodeName,
    NodePorts,
    NodeResourcesFit,
    NodeUnschedulable,
    PodTopologySpread,
    TaintToleration,
)

DEFAULT_WEIGHTS = {
    "TaintToleration": 3,
    "NodeAffinity": 2,
    "NodeResourcesFit": 1,
    "PodTopologySpread": 2,
    "InterPodAffinity": 2,
    "NodeResourcesBalancedAllocation": 1,
    "ImageLocality": 1,
}


def default_framework(*, seed: int = 0, percentage: int = 0) -> Framework:
    """kube-scheduler's default profile (the plugins that exist so far), filters in
    its order: cheap checks first."""
    plugins = [
        NodeUnschedulable(),
        NodeName(),
        TaintToleration(),
        NodeAffinity(),
        NodePorts(),
        NodeResourcesFit(),
        PodTopologySpread(),
        InterPodAffinity(),
        BalancedAllocation(),
        ImageLocality(),
        DefaultPreemption(random.Random(seed)),
    ]
    return Framework(plugins, dict(DEFAULT_WEIGHTS), percentage, random.Random(seed))
