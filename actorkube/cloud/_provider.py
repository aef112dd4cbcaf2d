"""The cloud provider interface: what the cloud controller manager asks of a cloud
(Kubernetes' k8s.io/cloud-provider ``Interface``, in Python). A provider for a real
cloud implements these protocols; ``InMemoryCloud`` is the one that ships.

Rules of this file:

- A provider is a plain object with async methods (``Cloud``); each part it offers is
  one of ``instances()``, ``load_balancer()`` and ``routes()``, which return None when
  the cloud has no such thing (the controller that needs it then does not run), as
  Kubernetes' ``InstancesV2()``, ``LoadBalancer()`` and ``Routes()`` return false.
- Every method may be called from several controllers' tasks at once; each call is one
  request to the cloud and may take time or fail. Failures are ``CloudError``s (the
  controllers retry them with backoff and record an event; they never stop on one);
  ``InstanceNotFound`` says that an instance is gone, which the node controllers act on.
- Nodes and Services are passed as the API's objects (dicts), as Kubernetes passes
  ``*v1.Node`` and ``*v1.Service``; a provider reads what it needs (the node's name and
  ``spec.providerID``; the service's name, namespace, uid, ports and ``nodePort``s) and
  never writes them: the controllers write what the provider answers.
- ``cluster_name`` lets several clusters share one cloud: a provider names what it
  makes for a cluster with it and lists only that cluster's routes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

Node = Mapping[str, Any]
Service = Mapping[str, Any]


class CloudError(Exception):
    """A request to the cloud failed (unavailable, throttled, refused); retry later."""


class InstanceNotFound(CloudError):
    """The node's instance does not exist (Kubernetes' cloudprovider.InstanceNotFound)."""


@attrs.frozen
class NodeAddress:
    """One of a node's addresses: ``type`` is InternalIP, ExternalIP, Hostname,
    InternalDNS or ExternalDNS."""

    type: str
    address: str


@attrs.frozen
class InstanceMetadata:
    """What the cloud knows of a node's instance (cloudprovider.InstanceMetadata):
    ``provider_id`` (``<provider>://<id>``, written to spec.providerID), the instance
    type, zone and region (the node's well-known labels) and its addresses."""

    provider_id: str
    instance_type: str = ""
    zone: str = ""
    region: str = ""
    addresses: tuple[NodeAddress, ...] = ()


@attrs.frozen
class LoadBalancerIngress:
    """An address where a load balancer is reached (status.loadBalancer.ingress)."""

    ip: str = ""
    hostname: str = ""


@attrs.frozen
class LoadBalancerStatus:
    ingress: tuple[LoadBalancerIngress, ...] = ()


@attrs.frozen
class Route:
    """Traffic for ``destination_cidr`` (a node's pod CIDR) goes to ``target_node``.
    ``name`` is the cloud's (unique within the cluster); ``blackhole`` marks a route
    whose target instance is gone."""

    name: str
    target_node: str
    destination_cidr: str
    blackhole: bool = False


class Instances(Protocol):
    """The instances behind nodes (cloudprovider.InstancesV2)."""

    async def instance_exists(self, node: Node) -> bool:
        """Whether the node's instance exists (False once it is terminated)."""
        ...

    async def instance_shutdown(self, node: Node) -> bool:
        """Whether the node's instance exists but is shut down (stopped)."""
        ...

    async def instance_metadata(self, node: Node) -> InstanceMetadata:
        """The node's instance; raises ``InstanceNotFound`` if there is none."""
        ...


class LoadBalancers(Protocol):
    """Load balancers for Services of type LoadBalancer (cloudprovider.LoadBalancer)."""

    def load_balancer_name(self, cluster_name: str, service: Service) -> str:
        """The name the cloud gives the service's load balancer."""
        ...

    async def get_load_balancer(
        self, cluster_name: str, service: Service
    ) -> LoadBalancerStatus | None:
        """The service's load balancer's status, or None if it has none."""
        ...

    async def ensure_load_balancer(
        self, cluster_name: str, service: Service, nodes: Sequence[Node]
    ) -> LoadBalancerStatus:
        """Create or update the service's load balancer to forward its ports to the
        nodes' node ports; its status (where it is reached)."""
        ...

    async def update_load_balancer(
        self, cluster_name: str, service: Service, nodes: Sequence[Node]
    ) -> None:
        """Point an existing load balancer at ``nodes`` (the nodes changed)."""
        ...

    async def ensure_load_balancer_deleted(self, cluster_name: str, service: Service) -> None:
        """Delete the service's load balancer; no error if there is none."""
        ...


class Routes(Protocol):
    """Routes from pod CIDRs to nodes (cloudprovider.Routes)."""

    async def list_routes(self, cluster_name: str) -> list[Route]: ...

    async def create_route(self, cluster_name: str, name_hint: str, route: Route) -> None:
        """Create ``route``; ``name_hint`` (the node's uid) may name it."""
        ...

    async def delete_route(self, cluster_name: str, route: Route) -> None: ...


class Cloud(Protocol):
    """A cloud provider (cloudprovider.Interface)."""

    name: str

    def instances(self) -> Instances | None: ...
    def load_balancer(self) -> LoadBalancers | None: ...
    def routes(self) -> Routes | None: ...
