"""actorkube's controllers: kube-controller-manager's control loops as actors, each
with informers, a rate-limited work queue and a ``reconcile(key)`` (see
docs/controllers.md).

Everything public is re-exported here; ``Controller`` is the shape they share.
"""

from ._controller import Controller as Controller
from .deployment import DeploymentController as DeploymentController
from .endpoints import EndpointsController as EndpointsController
from .endpointslice import EndpointSliceController as EndpointSliceController
from .replicaset import ReplicaSetController as ReplicaSetController
