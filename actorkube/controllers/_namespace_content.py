"""What a terminating namespace still holds, and what the namespace controller says
about it: the resources the API serves (read from discovery), how long its pods may
still take, what remains of each resource once deleted, and the namespace's deletion
conditions (kube-controller-manager's NamespacedResourcesDeleter and its
namespaceConditionUpdater).

Rules of this file:

- Pure: discovery documents, objects and times in, values out; no I/O, no clock.
- ``served_resources`` reads aggregated discovery documents (apidiscovery.k8s.io/v2,
  ``GET /api`` and ``GET /apis``), each group at its preferred (first) version, as
  client-go's ServerPreferredResources. A group version that does not parse leaves
  nothing to work on, as Kubernetes' GroupVersionResources fails whole.
- ``remaining`` is deleteAllContentForGroupVersionResource's verdict on what a list
  found after the deletes: pods still in their grace period are waited for (their
  estimate), objects held by finalizers are given ``FINALIZER_ESTIMATE`` seconds, and
  anything else left is an error.
- ``deletion_conditions`` keeps the five condition types Kubernetes maintains on a
  terminating namespace, each "True" with its failure or "False" with the ok reason
  and message; a condition's lastTransitionTime changes only with its status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

FINALIZER = "kubernetes"  # the namespace controller's token in spec.finalizers
FINALIZER_ESTIMATE = 15  # seconds allowed for objects held by finalizers

DISCOVERY_FAILURE = "NamespaceDeletionDiscoveryFailure"
GROUP_VERSION_PARSING_FAILURE = "NamespaceDeletionGroupVersionParsingFailure"
CONTENT_FAILURE = "NamespaceDeletionContentFailure"
CONTENT_REMAINING = "NamespaceContentRemaining"
FINALIZERS_REMAINING = "NamespaceFinalizersRemaining"
CONDITION_TYPES = (DISCOVERY_FAILURE, GROUP_VERSION_PARSING_FAILURE, CONTENT_FAILURE,
                   CONTENT_REMAINING, FINALIZERS_REMAINING)  # fmt: skip
_OK = {
    DISCOVERY_FAILURE: ("ResourcesDiscovered", "All resources successfully discovered"),
    GROUP_VERSION_PARSING_FAILURE: ("ParsedGroupVersions",
                                    "All legacy kube types successfully parsed"),
    CONTENT_FAILURE: ("ContentDeleted",
                      "All content successfully deleted, may be waiting on finalization"),
    CONTENT_REMAINING: ("ContentRemoved", "All content successfully removed"),
    FINALIZERS_REMAINING: ("ContentHasNoFinalizers",
                           "All content-preserving finalizers finished"),
}  # fmt: skip


@attrs.frozen
class ServedResource:
    """One resource the API serves, as discovery lists it."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    subresources: frozenset[str] = frozenset()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gvr(self) -> str:
        """Go's GroupVersionResource.String(): ``apps/v1, Resource=deployments``."""
        return f"{self.group}/{self.version}, Resource={self.resource}"

    def serves(self, *verbs: str) -> bool:
        return all(v in self.verbs for v in verbs)


@attrs.frozen
class Discovered:
    """What discovery found; ``group_version_error``: why a group version did not
    parse (then ``resources`` is empty)."""

    resources: tuple[ServedResource, ...] = ()
    group_version_error: str = ""


def served_resources(documents: Iterable[Any]) -> Discovered:
    """Every resource of the APIGroupDiscoveryList ``documents`` (with the names of
    its subresources, which are not resources of their own), each group at its
    preferred version."""
    found: list[ServedResource] = []
    for document in documents:
        for group in _dicts((document or {}).get("items")):
            name = (group.get("metadata") or {}).get("name", "")
            versions = _dicts(group.get("versions"))
            if not versions:
                continue
            version = str(versions[0].get("version", ""))
            if "/" in name or "/" in version or not version:
                gv = f"{name}/{version}" if name else version
                return Discovered(group_version_error=f"unexpected GroupVersion string: {gv}")
            for r in _dicts(versions[0].get("resources")):
                kind = (r.get("responseKind") or {}).get("kind", "")
                subresources = frozenset(str(sub.get("subresource", ""))
                                         for sub in _dicts(r.get("subresources")))  # fmt: skip
                verbs = frozenset(r.get("verbs") or ())
                found.append(ServedResource(name, version, str(r.get("resource", "")), kind,
                                            r.get("scope") == "Namespaced", verbs,
                                            subresources))  # fmt: skip
    return Discovered(tuple(found))


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def pods_estimate(pods: Iterable[Mapping[str, Any]], deleted_at: float, now: float) -> int:
    """Seconds the namespace's pods may still take (Kubernetes'
    estimateGracefulTermination): the longest terminationGracePeriodSeconds of the pods
    not finished, 0 once that long has passed since the namespace's deletion."""
    estimate = 0
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
        if isinstance(grace, int) and grace > estimate:
            estimate = grace
    return 0 if now - deleted_at >= estimate else estimate


@attrs.frozen
class Remaining:
    """What one resource still holds after its objects were deleted: how many, by
    finalizer, how long to wait for them, and the error if nothing explains them."""

    count: int = 0
    finalizers: tuple[tuple[str, int], ...] = ()
    estimate: int = 0
    error: str = ""


def remaining(resource: ServedResource, items: list[dict], estimate: int,
              namespace: str) -> Remaining:  # fmt: skip
    """The verdict on ``items``, the objects a list found after the deletes
    (``estimate``: the pods' estimate for pods, else 0)."""
    if not items:
        return Remaining(estimate=estimate)
    counts = Counter(f for item in items
                     for f in (item.get("metadata") or {}).get("finalizers") or ())  # fmt: skip
    finalizers = tuple(sorted(counts.items()))
    if estimate:
        return Remaining(len(items), finalizers, estimate)
    if finalizers:
        return Remaining(len(items), finalizers, FINALIZER_ESTIMATE)
    error = f"unexpected items still remain in namespace: {namespace} for gvr: {resource.gvr}"
    return Remaining(len(items), (), 0, error)


@attrs.frozen
class Failures:
    """What one pass over a namespace's content found wrong or remaining, for its
    conditions. ``remaining`` counts objects by resource (``pods.``, ``deployments.apps``:
    resource.group, as Kubernetes words it), ``finalizers`` by finalizer."""

    discovery: str = ""
    group_version: str = ""
    content: tuple[str, ...] = ()
    remaining: tuple[tuple[str, int], ...] = ()
    finalizers: tuple[tuple[str, int], ...] = ()


def deletion_conditions(old: list[dict], failures: Failures, now: str) -> list[dict] | None:
    """The namespace's status.conditions after a pass (Kubernetes' updateConditions:
    conditions of other types kept, missing ones appended in order), or None if none
    changed. ``now``: the RFC 3339 time of a transition."""
    wanted = _failed_conditions(failures)
    conditions = [dict(c) for c in old if isinstance(c, dict)]
    changed = False
    for kind in CONDITION_TYPES:
        new = wanted.get(kind) or ("False", *_OK[kind])
        current = next((c for c in conditions if c.get("type") == kind), None)
        if current is None:
            conditions.append({"type": kind, "status": new[0], "lastTransitionTime": now,
                               "reason": new[1], "message": new[2]})  # fmt: skip
            changed = True
        elif (current.get("status"), current.get("reason"), current.get("message")) != new:
            if current.get("status") != new[0]:
                current["lastTransitionTime"] = now
            current.update(status=new[0], reason=new[1], message=new[2])
            changed = True
    return conditions if changed else None


def _failed_conditions(f: Failures) -> dict[str, tuple[str, str, str]]:
    failed: dict[str, tuple[str, str, str]] = {}
    if f.discovery:
        failed[DISCOVERY_FAILURE] = ("True", "DiscoveryFailed", f.discovery)
    if f.group_version:
        failed[GROUP_VERSION_PARSING_FAILURE] = ("True", "GroupVersionParsingFailed",
                                                 f.group_version)  # fmt: skip
    if f.content:
        errors = sorted(f.content)
        message = f"Failed to delete all resource types, {len(errors)} remaining: "
        failed[CONTENT_FAILURE] = ("True", "ContentDeletionFailed", message + ", ".join(errors))
    if f.remaining:
        left = ", ".join(sorted(f"{name} has {n} resource instances"
                                for name, n in f.remaining if n))  # fmt: skip
        failed[CONTENT_REMAINING] = ("True", "SomeResourcesRemain",
                                     f"Some resources are remaining: {left}")
    if f.finalizers:
        held = sorted(f"{name} in {n} resource instances" for name, n in f.finalizers if n)
        failed[FINALIZERS_REMAINING] = ("True", "SomeFinalizersRemain",
                                        "Some content in the namespace has finalizers "
                                        "remaining: " + ", ".join(held))  # fmt: skip
    return failed


def finalized(namespace: Mapping[str, Any]) -> bool:
    """Whether the namespace controller is done with it (its token is gone)."""
    return FINALIZER not in ((namespace.get("spec") or {}).get("finalizers") or ())


def without_token(finalizers: Iterable[str]) -> list[str]:
    """spec.finalizers once the controller is done: the others, sorted and unique (as
    Kubernetes' finalizeNamespace builds them)."""
    return sorted({f for f in finalizers if f != FINALIZER})
