"""The scheduler's plugins, one module per concern, each Kubernetes' plugin of the same
name (pkg/scheduler/framework/plugins)."""

from .image_locality import ImageLocality
from .inter_pod_affinity import InterPodAffinity
from .node_affinity import NodeAffinity
from .node_basics import NodeName, NodeUnschedulable
from .node_ports import NodePorts
from .node_resources import BalancedAllocation, NodeResourcesFit
from .taints import TaintToleration, tolerates
from .topology_spread import PodTopologySpread

__all__ = [
    "BalancedAllocation",
    "ImageLocality",
    "InterPodAffinity",
    "NodeAffinity",
    "NodeName",
    "NodePorts",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "PodTopologySpread",
    "TaintToleration",
    "tolerates",
]
