"""The names the kubelet and the cloud controllers share (Kubernetes' k8s.io/cloud-provider
api package and the well-known node labels): the taints a cloud puts on nodes, the
annotation with the kubelet's node IP, and the labels the cloud node controller writes."""

from __future__ import annotations

# A kubelet with --cloud-provider=external registers its Node with this taint; the cloud
# node controller removes it once the node is initialised from the cloud.
UNINITIALIZED = "node.cloudprovider.kubernetes.io/uninitialized"
UNINITIALIZED_TAINT = {"key": UNINITIALIZED, "value": "true", "effect": "NoSchedule"}
# The cloud node lifecycle controller's taint on a node whose instance is shut down.
SHUTDOWN = "node.cloudprovider.kubernetes.io/shutdown"
SHUTDOWN_TAINT = {"key": SHUTDOWN, "effect": "NoSchedule"}
# The node IP the kubelet was given (--node-ip); the cloud's addresses must hold it.
PROVIDED_NODE_IP = "alpha.kubernetes.io/provided-node-ip"
# A node the cloud node lifecycle controller leaves alone.
EXCLUDE_FROM_LIFECYCLE = "node.kubernetes.io/exclude-from-lifecycle-management"

INSTANCE_TYPE = "node.kubernetes.io/instance-type"
ZONE = "topology.kubernetes.io/zone"
REGION = "topology.kubernetes.io/region"
BETA_INSTANCE_TYPE = "beta.kubernetes.io/instance-type"
BETA_ZONE = "failure-domain.beta.kubernetes.io/zone"
BETA_REGION = "failure-domain.beta.kubernetes.io/region"
