"""What the cloud node lifecycle controller does with one node (k8s.io/cloud-provider's
node lifecycle controller, MonitorNodes), pure: the actor asks the cloud what these
say to ask and writes what they return.

Rules of this file:

- ``look_at(node, now)`` says what a pass does with a node before asking the cloud:
  ``EXCLUDED`` (labelled node.kubernetes.io/exclude-from-lifecycle-management: left
  alone), ``READY`` (Ready True: its shutdown taint, if any, goes; the cloud is not
  asked), ``WAIT`` (not Ready, uninitialised, without a providerID and registered
  less than a minute ago: the cloud may not know it yet) or ``CHECK`` (not Ready,
  whatever else: ask the cloud whether its instance exists, then whether it is shut
  down). A node with no Ready condition counts as Unknown, so as not Ready.
- After CHECK: an instance that does not exist (``instance_exists`` False, or
  ``InstanceNotFound``) means the Node is deleted; one shut down means the shutdown
  taint ``node.cloudprovider.kubernetes.io/shutdown:NoSchedule`` is added (once).
- ``with_shutdown_taint`` / ``without_shutdown_taint`` give the node's taints with or
  without it, or None when nothing changes; other taints are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver._meta import parse_rfc3339
from actorkube.controllers._fields import meta, spec, status

from . import _wellknown as wk

Node = Mapping[str, Any]

EXCLUDED = "excluded"
READY = "ready"
WAIT = "wait"
CHECK = "check"
UNINITIALIZED_NODE_DELAY = 60.0  # seconds: Kubernetes' uninitializedNodeDelay


def ready_status(node: Node) -> str:
    ready = next((c for c in status(node).get("conditions") or () if c.get("type") == "Ready"),
                 None)  # fmt: skip
    return (ready or {}).get("status") or "Unknown"


def look_at(node: Node, now: float) -> str:
    """What a monitor pass does with ``node`` first (see the module rules)."""
    if wk.EXCLUDE_FROM_LIFECYCLE in (meta(node).get("labels") or {}):
        return EXCLUDED
    if ready_status(node) == "True":
        return READY
    if not spec(node).get("providerID") and _has(node, wk.UNINITIALIZED):
        created = meta(node).get("creationTimestamp")
        if created and now - parse_rfc3339(created) < UNINITIALIZED_NODE_DELAY:
            return WAIT
    return CHECK


def _taints(node: Node) -> list[dict]:
    return [dict(t) for t in spec(node).get("taints") or ()]


def _has(node: Node, key: str) -> bool:
    return any(t.get("key") == key for t in _taints(node))


def _is_shutdown_taint(taint: Mapping[str, Any]) -> bool:
    return taint.get("key") == wk.SHUTDOWN and taint.get("effect") == "NoSchedule"


def with_shutdown_taint(node: Node) -> list[dict] | None:
    taints = _taints(node)
    if any(_is_shutdown_taint(t) for t in taints):
        return None
    return [*taints, dict(wk.SHUTDOWN_TAINT)]


def without_shutdown_taint(node: Node) -> list[dict] | None:
    taints = _taints(node)
    kept = [t for t in taints if not _is_shutdown_taint(t)]
    return None if kept == taints else kept
