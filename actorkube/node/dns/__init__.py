"""The cluster DNS: Services' and pods' names in ``cluster.local`` over UDP, for the
pods' resolvers (what CoreDNS is to Kubernetes; see docs/node.md)."""

from ._server import ClusterDNS as ClusterDNS
from ._zone import ClusterZone as ClusterZone
