"""The cloud controller manager: the cloud controllers under one supervisor, run only by
the replica that holds the ``kube-system/cloud-controller-manager`` Lease
(cloud-controller-manager's leader election).

Rules of this file:

- It is the controller manager (``controllers.manager``: leader election with
  Kubernetes' timings, the controllers as children restarted on failure, all of them
  stopped when the Lease is lost) with its own Lease and its own controllers.
- Which controllers run is what the cloud offers, as Kubernetes decides: with
  ``instances()``, cloud-node-controller (``CloudNodeController``) and
  cloud-node-lifecycle-controller (``CloudNodeLifecycleController``); with
  ``routes()``, node-route-controller (``RouteController``); with
  ``load_balancer()``, service-lb-controller (``ServiceController``).
- Every controller acts with the manager's credentials (``token``: the service account
  kube-system/cloud-controller-manager, bound to system:cloud-controller-manager), as
  cloud-controller-manager does without --use-service-account-credentials.
"""

from __future__ import annotations

from collections.abc import Callable

from actorkube.actor import Actor, ActorRef
from actorkube.controllers.manager import ControllerManager

from ._provider import Cloud
from .node import CloudNodeController
from .nodelifecycle import CloudNodeLifecycleController
from .route import RouteController
from .servicecontroller import ServiceController

LEASE = "cloud-controller-manager"


def cloud_controllers(server: ActorRef, cloud: Cloud, *, token: str,
                      cluster_name: str = "kubernetes", node_monitor_period: float = 5.0,
                      node_status_update_frequency: float = 300.0,
                      route_reconciliation_period: float = 10.0,
                      ) -> dict[str, Callable[[], Actor]]:  # fmt: skip
    """The controllers ``cloud`` calls for, by name, each as a function that makes it."""
    made: dict[str, Callable[[], Actor]] = {}
    if cloud.instances() is not None:
        made["cloud-node-controller"] = lambda: CloudNodeController(
            server, token=token, cloud=cloud,
            node_status_update_frequency=node_status_update_frequency)  # fmt: skip
        made["cloud-node-lifecycle-controller"] = lambda: CloudNodeLifecycleController(
            server, token=token, cloud=cloud, node_monitor_period=node_monitor_period)
    if cloud.routes() is not None:
        made["node-route-controller"] = lambda: RouteController(
            server, token=token, cloud=cloud, cluster_name=cluster_name,
            route_reconciliation_period=route_reconciliation_period)  # fmt: skip
    if cloud.load_balancer() is not None:
        made["service-lb-controller"] = lambda: ServiceController(
            server, token=token, cloud=cloud, cluster_name=cluster_name)
    return made


class CloudControllerManager(ControllerManager):
    """The cloud controllers of one replica (see the module rules): ``cloud`` is the
    provider, ``cluster_name`` names this cluster in it (what the cloud makes for the
    cluster carries it), ``identity`` this replica in the election; the periods are
    the controllers' (Kubernetes' flags of the same names, in seconds)."""

    def __init__(self, server: ActorRef, cloud: Cloud, *, token: str, identity: str,
                 cluster_name: str = "kubernetes", leader_elect: bool = True,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0,
                 retry_period: float = 2.0, node_monitor_period: float = 5.0,
                 node_status_update_frequency: float = 300.0,
                 route_reconciliation_period: float = 10.0) -> None:  # fmt: skip
        controllers = cloud_controllers(
            server, cloud, token=token, cluster_name=cluster_name,
            node_monitor_period=node_monitor_period,
            node_status_update_frequency=node_status_update_frequency,
            route_reconciliation_period=route_reconciliation_period)  # fmt: skip
        super().__init__(server, controllers, token=token, identity=identity,
                         leader_elect=leader_elect, lease=LEASE,
                         lease_duration=lease_duration, renew_deadline=renew_deadline,
                         retry_period=retry_period)  # fmt: skip
        self.cloud = cloud
        self.cluster_name = cluster_name
