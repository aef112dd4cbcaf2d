"""What the cloud node controller writes on a node (k8s.io/cloud-provider's node
controller), pure: the actor asks the cloud and writes what these return.

Rules of this file:

- A node is the cloud's to initialise while it has the uninitialized taint
  (``cloud_taint``); without it, it is initialised, and only its addresses and labels
  are kept in step.
- ``initialized(node, metadata)``: the node as the initialising update writes it:
  spec.providerID from the cloud if the node has none (it is never changed once set),
  the instance type, zone and region labels, each both as its GA label and as the
  beta one Kubernetes still writes, and the uninitialized taint gone; nothing else.
  ``NodeInitError`` instead when the node cannot be initialised yet: the cloud gave no
  provider ID and the node has none, or the node IP the kubelet provided is not among
  the cloud's addresses (Kubernetes keeps such a node tainted and tries again).
- ``addresses(node, metadata)``: status.addresses as the cloud says, or None when they
  would not change (or the node is still tainted, or the cloud gave none): the
  cloud's addresses, then the node's Hostname address if the cloud gave none; the
  provided node IP first and the only address of its type.
- ``reconciled_labels(labels)``: the beta labels are the source of truth: each GA
  label is set where it is missing or differs (reconcileNodeLabels).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from actorkube.controllers._fields import meta, spec

from . import _wellknown as wk
from ._provider import InstanceMetadata

Node = Mapping[str, Any]

# (beta label, GA label): written together, the beta one is the source of truth.
_LABELS = ((wk.BETA_ZONE, wk.ZONE), (wk.BETA_REGION, wk.REGION),
           (wk.BETA_INSTANCE_TYPE, wk.INSTANCE_TYPE))  # fmt: skip


class NodeInitError(Exception):
    """The cloud's answer does not let the node be initialised yet (the cloud's or the
    kubelet's configuration); the node stays tainted and is tried again."""


def taints_of(node: Node) -> list[dict]:
    return [dict(t) for t in spec(node).get("taints") or ()]


def cloud_taint(node: Node) -> dict | None:
    return next((t for t in taints_of(node) if t.get("key") == wk.UNINITIALIZED), None)


def initialized(node: Node, metadata: InstanceMetadata) -> dict:
    """``node`` initialised from ``metadata`` (see the module rules)."""
    name = meta(node).get("name", "")
    provider_id = spec(node).get("providerID") or metadata.provider_id
    if not provider_id:
        raise NodeInitError(f"cloud provider does not set node provider ID for node {name}")
    _provided_ip_first(node, metadata.addresses)
    labels = dict(meta(node).get("labels") or {})
    for value, keys in ((metadata.instance_type, (wk.INSTANCE_TYPE, wk.BETA_INSTANCE_TYPE)),
                        (metadata.zone, (wk.ZONE, wk.BETA_ZONE)),
                        (metadata.region, (wk.REGION, wk.BETA_REGION))):  # fmt: skip
        if value:
            labels.update(dict.fromkeys(keys, value))
    new_spec = {**spec(node), "providerID": provider_id}
    taints = [t for t in taints_of(node) if t.get("key") != wk.UNINITIALIZED]
    if taints:
        new_spec["taints"] = taints
    else:
        new_spec.pop("taints", None)
    return {**node, "metadata": {**meta(node), "labels": labels}, "spec": new_spec}


def addresses(node: Node, metadata: InstanceMetadata) -> list[dict] | None:
    """The node's addresses from the cloud, or None (see the module rules)."""
    if cloud_taint(node) is not None or not metadata.addresses:
        return None
    wanted = [{"type": a.type, "address": a.address} for a in metadata.addresses]
    current = [dict(a) for a in (node.get("status") or {}).get("addresses") or ()]
    if not any(a["type"] == "Hostname" for a in wanted):
        wanted += [a for a in current if a.get("type") == "Hostname"]
    try:
        wanted = _provided_ip_first(node, metadata.addresses, wanted)
    except NodeInitError:
        return None  # the node keeps the addresses it has (Kubernetes logs it)
    return wanted if _changed(current, wanted) else None


def _provided_ip_first(node: Node, cloud: Sequence[Any],
                       wanted: list[dict] | None = None) -> list[dict]:  # fmt: skip
    """``wanted`` (default: the cloud's addresses) with the node IP the kubelet provided
    first and alone of its type (GetNodeAddressesFromNodeIP); NodeInitError if the cloud
    does not have it."""
    if wanted is None:
        wanted = [{"type": a.type, "address": a.address} for a in cloud]
    provided = (meta(node).get("annotations") or {}).get(wk.PROVIDED_NODE_IP)
    if not provided:
        return wanted
    try:
        ip = ipaddress.ip_address(provided)
    except ValueError:
        raise NodeInitError(f"failed to parse node IP {provided!r}") from None
    matching = [a for a in wanted if _same_ip(a["address"], ip)]
    if not matching:
        raise NodeInitError(f"provided node ip for node {meta(node).get('name', '')!r} is "
                            f"not valid: failed to get node address from cloud provider that "
                            f"matches ip: {provided}")  # fmt: skip
    types = {a["type"] for a in matching}
    return matching + [a for a in wanted if a["type"] not in types]


def _same_ip(address: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    try:
        return ipaddress.ip_address(address) == ip
    except ValueError:
        return False


def _changed(old: Iterable[Mapping[str, str]], new: Sequence[Mapping[str, str]]) -> bool:
    """nodeAddressesChangeDetected: a different count, or an address of a type that
    differs (the order alone is no change)."""
    old = list(old)
    if len(old) != len(new):
        return True
    by_type = {a.get("type"): a.get("address") for a in old}
    return any(by_type.get(a.get("type")) != a.get("address") for a in new)


def reconciled_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The GA labels to set so that they agree with the beta ones (see the module rules)."""
    return {ga: labels[beta] for beta, ga in _LABELS
            if beta in labels and labels.get(ga) != labels[beta]}  # fmt: skip
