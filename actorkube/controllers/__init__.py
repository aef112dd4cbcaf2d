"""actorkube's controllers: kube-controller-manager's control loops as actors, each
with informers, a rate-limited work queue and a ``reconcile(key)`` (see
docs/controllers.md).

Everything public is re-exported here; ``Controller`` is the shape they share.
"""

from ._controller import Controller as Controller
from .bootstrapsigner import BootstrapSigner as BootstrapSigner
from .cronjob import CronJobController as CronJobController
from .csrapproving import CSRApprovingController as CSRApprovingController
from .csrsigning import CSRSigningController as CSRSigningController
from .daemonset import DaemonSetController as DaemonSetController
from .deployment import DeploymentController as DeploymentController
from .disruption import DisruptionController as DisruptionController
from .endpoints import EndpointsController as EndpointsController
from .endpointslice import EndpointSliceController as EndpointSliceController
from .garbagecollector import GarbageCollector as GarbageCollector
from .horizontalpodautoscaler import (
    HorizontalPodAutoscalerController as HorizontalPodAutoscalerController,
)
from .job import JobController as JobController
from .manager import ControllerManager as ControllerManager
from .namespace import NamespaceController as NamespaceController
from .nodelifecycle import NodeLifecycleConfig as NodeLifecycleConfig
from .nodelifecycle import NodeLifecycleController as NodeLifecycleController
from .podgc import PodGCConfig as PodGCConfig
from .podgc import PodGCController as PodGCController
from .replicaset import ReplicaSetController as ReplicaSetController
from .rootca import RootCACertPublisher as RootCACertPublisher
from .serviceaccounts import ServiceAccountController as ServiceAccountController
from .tainteviction import TaintEvictionController as TaintEvictionController
from .tokencleaner import TokenCleaner as TokenCleaner
from .ttlafterfinished import TTLAfterFinishedController as TTLAfterFinishedController
