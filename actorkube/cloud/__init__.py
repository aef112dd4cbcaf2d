"""actorkube's cloud controller manager: the cloud provider interface, an in-memory
cloud, and the controllers that keep the cluster in step with the cloud (see
docs/cloud.md)."""

from ._memory import FOREVER as FOREVER
from ._memory import Call as Call
from ._memory import InMemoryCloud as InMemoryCloud
from ._memory import Instance as Instance
from ._memory import LoadBalancer as LoadBalancer
from ._provider import Cloud as Cloud
from ._provider import CloudError as CloudError
from ._provider import InstanceMetadata as InstanceMetadata
from ._provider import InstanceNotFound as InstanceNotFound
from ._provider import Instances as Instances
from ._provider import LoadBalancerIngress as LoadBalancerIngress
from ._provider import LoadBalancers as LoadBalancers
from ._provider import LoadBalancerStatus as LoadBalancerStatus
from ._provider import NodeAddress as NodeAddress
from ._provider import Route as Route
from ._provider import Routes as Routes
from .manager import CloudControllerManager as CloudControllerManager
from .node import CloudNodeController as CloudNodeController
from .nodelifecycle import CloudNodeLifecycleController as CloudNodeLifecycleController
from .route import RouteController as RouteController
from .servicecontroller import ServiceController as ServiceController
