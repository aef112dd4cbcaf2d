"""The Node object a kubelet registers, the status it keeps up to date, its Lease, and
admission of pods on the node (pure: the kubelet actor writes what these return).

Rules of this file:

- Registration: the Node with its labels (kubernetes.io/hostname, os, arch and the
  configured ones), taints (``--register-with-taints``), podCIDR, and the annotation
  that names the kubelet's server actor (where the API server asks for logs). A
  kubelet for an external cloud (``--cloud-provider=external``) adds the taint
  ``node.cloudprovider.kubernetes.io/uninitialized=true:NoSchedule`` and the annotation
  ``alpha.kubernetes.io/provided-node-ip``; the cloud node controller initialises the
  node and removes the taint. A Node that exists already (``reregistered``) gets the
  labels, annotations, podCIDR and configured taints again, never the uninitialized
  taint: Kubernetes' kubelet taints a node for the cloud only when it creates it.
- Status: capacity, allocatable (capacity minus what is reserved), the four pressure
  conditions and Ready with Kubernetes' reasons and messages, addresses (InternalIP,
  Hostname), daemonEndpoints, nodeInfo, images. ``lastHeartbeatTime`` is the time of
  the write; ``lastTransitionTime`` moves only when a condition's status does. The
  conditions of others (NetworkUnavailable, the route controller's) are kept where
  they are; for an external cloud, the addresses the cloud node controller wrote are
  kept too (the kubelet's own are only the first ones, as Kubernetes').
- ``status_changed`` compares what matters (everything but heartbeat times), so the
  kubelet writes a status when it changed or when ``nodeStatusReportFrequency`` has
  passed, as Kubernetes does since node leases carry the heartbeat.
- The Lease lives in ``kube-node-lease`` under the node's name, owned by the Node.
- Admission (the kubelet's resource fit predicate): a pod whose requests, added to
  those of the pods the node runs, exceed allocatable is rejected with reason
  ``OutOf<resource>`` and Kubernetes' message.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from actorkube.apiserver._kubeletclient import SERVER_ANNOTATION
from actorkube.apiserver._meta import rfc3339, rfc3339_micro
from actorkube.cloud._wellknown import PROVIDED_NODE_IP, UNINITIALIZED_TAINT
from actorkube.scheduler._resources import pod_requests, resource_list

KUBELET_VERSION = "v1.32.0-actorkube"
LEASE_NAMESPACE = "kube-node-lease"


@attrs.frozen
class NodeConfig:
    """What the kubelet says about its node."""

    name: str
    ip: str = "127.0.0.1"
    capacity: Mapping[str, str] = attrs.field(
        factory=lambda: {"cpu": "4", "memory": "32Gi", "pods": "110",
                         "ephemeral-storage": "100Gi"}
    )
    reserved: Mapping[str, str] = attrs.field(factory=dict)
    labels: Mapping[str, str] = attrs.field(factory=dict)
    taints: tuple[Mapping[str, Any], ...] = ()
    pod_cidr: str = ""
    external_cloud_provider: bool = False  # kubelet --cloud-provider=external

    def allocatable(self) -> dict[str, str]:
        cap = resource_list(self.capacity)
        res = resource_list(self.reserved)
        out = {}
        for name, value in self.capacity.items():
            if name in res:
                left = max(0, cap[name] - res[name])
                out[name] = f"{left}m" if name == "cpu" else str(left)
            else:
                out[name] = value
        return out


def node_object(config: NodeConfig, server: str) -> dict[str, Any]:
    """The Node a kubelet registers (status follows with ``node_status``)."""
    labels = {
        "kubernetes.io/hostname": config.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": _arch(),
        **config.labels,
    }
    annotations = {
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        SERVER_ANNOTATION: server,
    }
    spec: dict[str, Any] = {}
    taints = [dict(t) for t in config.taints]
    if config.external_cloud_provider:
        annotations[PROVIDED_NODE_IP] = config.ip
        taints.append(dict(UNINITIALIZED_TAINT))
    if taints:
        spec["taints"] = taints
    if config.pod_cidr:
        spec["podCIDR"] = config.pod_cidr
        spec["podCIDRs"] = [config.pod_cidr]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": config.name, "labels": labels, "annotations": annotations},
        "spec": spec,
    }


def reregistered(config: NodeConfig, current: Mapping[str, Any], server: str) -> dict[str, Any]:
    """The Node ``current`` (it exists already) as the kubelet registering again writes
    it: its labels and annotations brought up to date and the podCIDR; its taints are
    left as they are (``--register-with-taints`` applies when the Node is created only,
    as in Kubernetes: the node lifecycle and cloud controllers' taints, and the
    uninitialized one while it is there, stay)."""
    wanted = node_object(config, server)
    meta = dict(current["metadata"])
    meta["labels"] = {**(meta.get("labels") or {}), **wanted["metadata"]["labels"]}
    meta["annotations"] = {**(meta.get("annotations") or {}),
                           **wanted["metadata"]["annotations"]}  # fmt: skip
    spec = dict(wanted["spec"])
    spec.pop("taints", None)
    return {**current, "metadata": meta, "spec": {**(current.get("spec") or {}), **spec}}


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory",
     "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)  # fmt: skip


def node_status(
    config: NodeConfig,
    old: Mapping[str, Any] | None,
    now: float,
    *,
    runtime_version: str,
    images: Iterable[Mapping[str, Any]] = (),
    ready: tuple[bool, str] = (True, ""),
) -> dict[str, Any]:
    """The node's new status (see the module rules). ``ready``: whether the runtime is
    up, and why not."""
    old_conditions = (old or {}).get("conditions") or ()
    before = {c.get("type"): c for c in old_conditions}
    stamp = rfc3339(now)
    mine = {}
    for kind, status, reason, message in _CONDITIONS:
        if kind == "Ready" and not ready[0]:
            status, reason, message = "False", "KubeletNotReady", ready[1]
        prior = before.get(kind) or {}
        since = prior.get("lastTransitionTime") if prior.get("status") == status else None
        mine[kind] = {"type": kind, "status": status, "reason": reason, "message": message,
                      "lastHeartbeatTime": stamp, "lastTransitionTime": since or stamp}
    # Each condition where it was, others' as they were; the kubelet's new ones last.
    conditions = [mine.pop(c.get("type")) if c.get("type") in mine else dict(c)
                  for c in old_conditions]  # fmt: skip
    conditions.extend(mine.values())
    addresses = [{"type": "InternalIP", "address": config.ip},
                 {"type": "Hostname", "address": config.name}]  # fmt: skip
    if config.external_cloud_provider and (old or {}).get("addresses"):
        addresses = [dict(a) for a in old["addresses"]]  # the cloud's take precedence
    return {
        "capacity": dict(config.capacity),
        "allocatable": config.allocatable(),
        "conditions": conditions,
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": "", "systemUUID": "", "bootID": "",
            "kernelVersion": platform.release(), "osImage": "actorkube",
            "containerRuntimeVersion": runtime_version, "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION, "operatingSystem": "linux",
            "architecture": _arch(),
        },
        "images": [dict(i) for i in images],
    }


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether ``new`` says anything ``old`` did not, heartbeats aside."""

    def strip(status: Mapping[str, Any] | None) -> dict:
        status = dict(status or {})
        status["conditions"] = [
            {k: v for k, v in c.items() if k != "lastHeartbeatTime"}
            for c in status.get("conditions") or ()
        ]
        return status

    return strip(old) != strip(new)


def lease_object(node: str, node_uid: str, duration: int, now: float) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node,
                                 "uid": node_uid}],
        },
        "spec": {"holderIdentity": node, "leaseDurationSeconds": duration,
                 "renewTime": rfc3339_micro(now)},
    }


_UNITS = {"cpu": "millicores", "memory": "bytes"}


def admit(
    pod: Mapping[str, Any], running: Iterable[Any], allocatable: Mapping[str, str],
    requests_of: Callable[[Any], Mapping[str, int]] = pod_requests,
) -> tuple[str, str] | None:
    """None if ``pod`` fits beside the ``running`` pods; else (reason, message) as the
    kubelet's admission writes them. ``requests_of`` gives what each of ``running`` asks
    (``pod_requests`` of a pod; a caller that keeps them computed passes its own)."""
    have = resource_list(allocatable)
    used: dict[str, int] = {"pods": 0}
    for other in running:
        used["pods"] += 1
        for name, v in requests_of(other).items():
            used[name] = used.get(name, 0) + v
    want = {**pod_requests(pod), "pods": 1}
    for name, amount in want.items():
        if not amount:
            continue
        capacity = have.get(name)
        if capacity is None:
            if name in ("cpu", "memory", "pods", "ephemeral-storage"):
                continue
            return ("UnexpectedAdmissionError", f"Pod was rejected: Allocate failed due to "
                    f"no such resource {name}")  # fmt: skip
        if used.get(name, 0) + amount > capacity:
            reason = "OutOfpods" if name == "pods" else f"OutOf{name}"
            if name == "pods":
                message = "Pod was rejected: Node didn't have enough resource: pods"
            else:
                message = (f"Pod was rejected: Node didn't have enough resource: {name}, "
                           f"requested: {amount}, used: {used.get(name, 0)}, "
                           f"capacity: {capacity}")  # fmt: skip
            return reason, message
    return None
