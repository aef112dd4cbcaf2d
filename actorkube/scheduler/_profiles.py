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


# Every plugin by name, in kube-scheduler's default order (filters: cheap checks first).
PLUGINS: dict[str, type] = {
    "NodeUnschedulable": NodeUnschedulable,
    "NodeName": NodeName,
    "TaintToleration": TaintToleration,
    "NodeAffinity": NodeAffinity,
    "NodePorts": NodePorts,
    "NodeResourcesFit": NodeResourcesFit,
    "PodTopologySpread": PodTopologySpread,
    "InterPodAffinity": InterPodAffinity,
    "DefaultPreemption": DefaultPreemption,
    "NodeResourcesBalancedAllocation": BalancedAllocation,
    "ImageLocality": ImageLocality,
}


def make_plugin(name: str, seed: int = 0, **args):
    """A plugin by name (DefaultPreemption gets a random source seeded ``seed``)."""
    if name == "DefaultPreemption":
        return DefaultPreemption(random.Random(seed))
    return PLUGINS[name](**args)


def default_framework(*, seed: int = 0, percentage: int = 0) -> Framework:
    """kube-scheduler's default profile (the plugins that exist)."""
    plugins = [make_plugin(name, seed) for name in PLUGINS]
    return Framework(plugins, dict(DEFAULT_WEIGHTS), percentage, random.Random(seed))
