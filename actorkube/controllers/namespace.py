"""The namespace controller: empties a namespace being deleted, then lets it go
(kube-controller-manager's namespace controller and its NamespacedResourcesDeleter).

Rules of this file:

- An informer on Namespaces; a namespace with a deletionTimestamp is enqueued on every
  add and update (its condition updates included); no other is.
- ``reconcile(name)`` is Kubernetes' namespace deletion: a live read (gone, or not being
  deleted: done); status.phase Terminating written if it is not; done if ``kubernetes``
  is no longer in spec.finalizers. Then discovery (``discover``: aggregated, /api and
  /apis), and for every namespaced resource served with delete: list, delete each
  object in Background (the API serves no deletecollection), list again, and judge what
  remains (``_namespace_content.remaining``).
- The namespace's deletion conditions are written when they change. A failure
  (discovery, deletes, objects that nothing explains) is an error: the key comes back
  with backoff (5 ms doubling to 60 s, Kubernetes' namespace queue). Pods in their
  grace period, or objects held by finalizers, are waited for: the key comes back
  after estimate/2 + 1 seconds.
- Once nothing remains, ``PUT namespaces/{name}/finalize`` with spec.finalizers without
  ``kubernetes`` (a conflict: read again and retry); the API server removes the
  namespace once no finalizer is left.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError, ApiRequest
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.client import (
    ApiClient,
    BucketRateLimiter,
    InformerFactory,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
)

from . import _namespace_content as content
from ._controller import Controller

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "namespace-controller"
# The Accept header of aggregated discovery (apidiscovery.k8s.io/v2), as client-go sends.
DISCOVERY_ACCEPT = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


async def discover(client: ApiClient) -> list[dict]:
    """The aggregated discovery documents of ``/api`` and ``/apis``; ApiError if the
    server does not give them."""
    documents = []
    for path in ("/api", "/apis"):
        answer = await client.send(ApiRequest("get", "", path=path, accept=DISCOVERY_ACCEPT,
                                              token=client.token))  # fmt: skip
        if answer.code != 200:
            raise ApiError(answer.body)
        documents.append(answer.body)
    return documents


class NamespaceController(Controller):
    """The namespace controller (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, workers: int = 10) -> None:
        super().__init__(server, token=token, workers=workers)
        # Kubernetes retries a namespace at least once a minute, never longer.
        limiter = MaxOfRateLimiter([ItemExponentialFailureRateLimiter(0.005, 60.0),
                                    BucketRateLimiter(10, 100)])  # fmt: skip
        self.queue = RateLimitingQueue(rate_limiter=limiter)

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.namespaces = factory.informer("namespaces")
        self.namespaces.add_handler(self._changed, lambda old, new: self._changed(new), None)

    def now(self) -> float:
        return self.system.clock.now()

    def _changed(self, namespace: dict) -> None:
        if (namespace.get("metadata") or {}).get("deletionTimestamp"):
            self.enqueue(namespace["metadata"]["name"])

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        namespace = await self._get(key)
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        if (namespace.get("status") or {}).get("phase") != "Terminating":
            namespace = await self._write_status(namespace, phase="Terminating")
            if namespace is None:
                return
        if content.finalized(namespace):
            return
        estimate = await self._delete_all_content(namespace)
        if estimate > 0:
            self.requeue_after(key, estimate // 2 + 1)
            return
        await self._finalize(namespace)

    async def _delete_all_content(self, namespace: dict) -> int:
        """Delete everything in the namespace; the seconds to wait for what remains
        (raises if something failed)."""
        name = namespace["metadata"]["name"]
        deleted_at = parse_rfc3339(namespace["metadata"]["deletionTimestamp"]) or self.now()
        discovery_error = ""
        try:
            found = content.served_resources(await discover(self.client))
        except ApiError as e:
            # Not fatal in Kubernetes: what discovery gave is still deleted (here,
            # where one request fails the whole discovery, nothing).
            found, discovery_error = content.Discovered(), str(e)
        errors: list[str] = []
        remaining: list[tuple[str, int]] = []
        finalizers: dict[str, int] = {}
        estimate = 0
        for resource in found.resources:
            if not (resource.namespaced and resource.serves("delete")):
                continue
            try:
                left = await self._delete_resource(resource, name, deleted_at)
            except ApiError as e:
                errors.append(str(e))
                continue
            if left.error:
                errors.append(left.error)
            estimate = max(estimate, left.estimate)
            if left.count:
                remaining.append((f"{resource.resource}.{resource.group}", left.count))
                for finalizer, n in left.finalizers:
                    finalizers[finalizer] = finalizers.get(finalizer, 0) + n
        outcome = content.Failures(discovery_error, found.group_version_error, tuple(errors),
                                   tuple(remaining), tuple(sorted(finalizers.items())))  # fmt: skip
        conditions = content.deletion_conditions(
            (namespace.get("status") or {}).get("conditions") or [], outcome, rfc3339(self.now())
        )
        if conditions is not None:
            try:
                await self._write_status(namespace, conditions=conditions)
            except ApiError as e:
                log.warning("%s: could not write the conditions of namespace %s: %s",
                            self.name, name, e)  # fmt: skip
        if errors or outcome.discovery or outcome.group_version:
            problems = [outcome.discovery, outcome.group_version, *errors]
            raise RuntimeError("; ".join(p for p in problems if p))
        return estimate

    async def _delete_resource(self, resource: content.ServedResource, namespace: str,
                               deleted_at: float) -> content.Remaining:  # fmt: skip
        """Delete every object of ``resource`` in ``namespace`` (Kubernetes'
        deleteEachItem), then judge what a second list finds."""
        items = await self._list(resource, namespace)
        if items is None:
            return content.Remaining()
        estimate = 0
        if resource.group == "" and resource.resource == "pods":
            estimate = content.pods_estimate(items, deleted_at, self.now())
        for item in items:
            try:
                await self.client.request("delete", resource.resource, group=resource.group,
                                          version=resource.version, namespace=namespace,
                                          name=item["metadata"]["name"],
                                          body={"propagationPolicy": "Background"})  # fmt: skip
            except ApiError as e:
                if e.code not in (404, 405):
                    raise
        left = await self._list(resource, namespace)
        return content.remaining(resource, left or [], estimate, namespace)

    async def _list(self, resource: content.ServedResource, namespace: str) -> list[dict] | None:
        """The objects of ``resource`` in ``namespace``; None if it cannot be listed."""
        if not resource.serves("list"):
            return None
        try:
            listed = await self.client.request("list", resource.resource, group=resource.group,
                                               version=resource.version,
                                               namespace=namespace)  # fmt: skip
        except ApiError as e:
            if e.code in (404, 405):
                return None
            raise
        return listed["items"]

    # --- the namespace itself ----------------------------------------------------------

    async def _get(self, name: str) -> dict | None:
        return await self.client.get_if_exists("namespaces", name)

    async def _write_status(self, namespace: dict, *, phase: str = "",
                            conditions: list[dict] | None = None) -> dict | None:  # fmt: skip
        """Write the phase or the conditions, onto a fresh read after a conflict (as
        Kubernetes' retryOnConflictError); the namespace written, None once it is gone."""
        name = namespace["metadata"]["name"]
        for _ in range(5):
            status = dict(namespace.get("status") or {})
            if phase:
                status["phase"] = phase
            if conditions is not None:
                status["conditions"] = conditions
            try:
                return await self.client.update_status("namespaces",
                                                       {**namespace, "status": status})  # fmt: skip
            except ApiError as e:
                if e.code == 404:
                    return None
                if e.code != 409:
                    raise
            namespace = await self._get(name)
            if namespace is None:
                return None
        raise RuntimeError(f"namespace {name} kept changing while its status was written")

    async def _finalize(self, namespace: dict) -> None:
        """Remove ``kubernetes`` from spec.finalizers through namespaces/finalize."""
        name = namespace["metadata"]["name"]
        for _ in range(5):
            spec = dict(namespace.get("spec") or {})
            spec["finalizers"] = content.without_token(spec.get("finalizers") or ())
            try:
                await self.client.update("namespaces", {**namespace, "spec": spec},
                                         subresource="finalize")  # fmt: skip
                return
            except ApiError as e:
                if e.code == 404:
                    return  # finalized and gone already
                if e.code != 409:
                    raise
            namespace = await self._get(name)
            if namespace is None or content.finalized(namespace):
                return
        raise RuntimeError(f"namespace {name} kept changing while it was finalized")
