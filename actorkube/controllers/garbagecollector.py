"""The garbage collector: deletes objects whose owners are gone, carries out foreground
deletion and orphaning (kube-controller-manager's garbagecollector controller).

Rules of this file:

- At start, discovery (``namespace.discover``) says what the API serves; every resource
  served with list, watch and delete gets an informer (its "monitor"), except events,
  which Kubernetes' collector ignores too. The same discovery maps an
  ownerReference's apiVersion and kind to its resource (Kubernetes' RESTMapper).
- Informer handlers feed the ownership graph (``_ownership_graph``, pure and
  synchronous: a cache the handlers keep, like an informer's index) and enqueue the
  work it returns as keys ``delete/<uid>`` (attemptToDelete) and ``orphan/<uid>``
  (attemptToOrphan). Reconciles start once every informer has listed, so the graph is
  whole before the first decision.
- ``delete/<uid>`` is attemptToDeleteItem: skip an object being deleted unless it
  waits for its dependents; read it live (gone, or another uid: a virtual delete in the
  graph); if it waits for its dependents, remove ``foregroundDeletion`` once none with
  blockOwnerDeletion remains, else attempt to delete those; otherwise read each owner
  live by name (404 or another uid: dangling, as Kubernetes checks) and do what
  ``_ownership_graph.decide`` says. Deletes carry uid and resourceVersion
  preconditions; a conflict is read again and retried without the version if the
  owners did not change.
- ``orphan/<uid>`` is attemptToOrphan: remove the owner's reference from each of its
  dependents (strategic merge patch, ``$patch: delete`` by uid), then the owner's
  ``orphan`` finalizer.
- Finalizers are removed by a merge patch carrying the resourceVersion read (a conflict:
  read again, a few times, then the queue's backoff). Any other failure is raised: the
  key comes back with backoff.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError, ApiRequest
from actorkube.client import ApiClient, InformerFactory, WatchStream

from . import _ownership_graph as graph
from ._controller import Controller, _Run
from ._namespace_content import ServedResource, served_resources
from .namespace import discover

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "generic-garbage-collector"
# Kubernetes' DefaultIgnoredResources: events are never owners worth watching.
IGNORED = frozenset({("", "events"), ("events.k8s.io", "events")})
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class _NamespacedOwnerOfClusterScopedObject(Exception):
    """A cluster-scoped object names a namespaced owner: no retry can resolve it."""


class GarbageCollector(Controller):
    """The garbage collector (see the module rules). ``graph`` is its ownership graph,
    ``monitored`` the resources it watches."""

    name = CONTROLLER_NAME

    def __init__(self, server: ActorRef, *, token: str, workers: int = 20) -> None:
        super().__init__(server, token=token, workers=workers)
        self.graph = graph.OwnershipGraph()
        self.monitored: list[ServedResource] = []
        self._kinds: dict[tuple[str, str], ServedResource] = {}

    async def on_run(self, msg: _Run) -> None:
        """Discovery first (retried until the API answers), then the controller."""
        client = ApiClient(self.system, self.server, token=self.token)
        backoff = 0.1
        while True:
            try:
                found = served_resources(await discover(client))
                break
            except ApiError as e:
                log.warning("%s: discovery failed (%s); retrying", self.name, e)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
        self._kinds = {(r.api_version, r.kind): r for r in found.resources}
        self.monitored = [r for r in found.resources
                          if r.serves("list", "watch", "delete")
                          and (r.group, r.resource) not in IGNORED]  # fmt: skip
        await super().on_run(msg)

    def watch_cluster(self, factory: InformerFactory) -> None:
        for served in self.monitored:
            informer = factory.informer(served.resource, group=served.group)
            if served.version != "v1":
                # (Informers list and watch at v1; this one's group serves another.)
                informer.client = _AtVersion(self.client, served.version)
            informer.add_handler(partial(self._observed, served),
                                 lambda old, new, s=served: self._observed(s, new),
                                 partial(self._forgotten, served))  # fmt: skip

    def _observed(self, served: ServedResource, obj: dict) -> None:
        self._schedule(self.graph.observe(_identity(served, obj), obj))

    def _forgotten(self, served: ServedResource, obj: dict) -> None:
        self._schedule(self.graph.forget(_identity(served, obj)))

    def _schedule(self, work: graph.Work) -> None:
        for uid in work.delete:
            self.enqueue(f"delete/{uid}")
        for uid in work.orphan:
            self.enqueue(f"orphan/{uid}")

    async def reconcile(self, key: str) -> None:
        verb, uid = key.split("/", 1)
        node = self.graph.node(uid)
        if node is None:
            return
        if verb == "orphan":
            await self._attempt_to_orphan(node)
            return
        try:
            await self._attempt_to_delete(node)
        except _NamespacedOwnerOfClusterScopedObject as e:
            log.warning("%s: %s", self.name, e)

    # --- attemptToDelete ---------------------------------------------------------------

    async def _attempt_to_delete(self, node: graph.Node) -> None:
        if node.being_deleted and not node.deleting_dependents:
            return  # on its way: its dependents are looked at once it is gone
        latest = await self._get(node.identity)
        if latest is None:
            self._schedule(self.graph.virtual_delete(node.identity))
            return
        if node.deleting_dependents:
            await self._process_deleting_dependents(node)
            return
        refs = graph.references(latest)
        if not refs:
            return
        namespace = node.identity.namespace
        owners = {ref["uid"]: await self._live_owner(ref, node.identity) for ref in refs}
        dependents = self.graph.dependents(node.uid)
        verdict = graph.decide(latest, owners, has_dependents=bool(dependents),
                               dependent_deletes_dependents=any(
                                   d.deleting_dependents for d in dependents))  # fmt: skip
        if verdict.remove:
            await self._remove_references(node.identity, verdict.remove)
        elif verdict.delete:
            if verdict.unblock:
                latest = await self._unblock(node.identity, latest)
            log.info("%s: deleting %s %s/%s (%s)", self.name, node.identity.kind, namespace,
                     node.identity.name, verdict.policy)  # fmt: skip
            await self._delete(node.identity, latest, verdict.policy)

    async def _process_deleting_dependents(self, node: graph.Node) -> None:
        blocking = self.graph.blocking_dependents(node.uid)
        if not blocking:
            await self._remove_finalizer(node.identity, graph.FOREGROUND)
            return
        for dependent in blocking:
            if not dependent.deleting_dependents:
                self.enqueue(f"delete/{dependent.uid}")

    async def _live_owner(self, ref: dict, dependent: graph.Ref) -> dict | None:
        """The owner ``ref`` names, read live; None if it dangles (Kubernetes'
        isDangling: 404, or another uid at that name)."""
        served = self._served(str(ref.get("apiVersion", "")), str(ref.get("kind", "")))
        if served.namespaced and not dependent.namespace:
            raise _NamespacedOwnerOfClusterScopedObject(
                f"{dependent.kind} {dependent.name} is cluster-scoped but names a namespaced "
                f"owner, {served.kind} {ref.get('name')}"
            )
        owner = graph.Ref.of_owner(ref, dependent.namespace if served.namespaced else "")
        return await self._get(owner)

    async def _delete(self, identity: graph.Ref, latest: dict, policy: str) -> None:
        """Delete with uid and resourceVersion preconditions; after a conflict, again
        without the version if the owners are still those the decision saw."""
        version = latest["metadata"].get("resourceVersion", "")
        for _ in range(2):
            preconditions = {"uid": identity.uid}
            if version:
                preconditions["resourceVersion"] = version
            try:
                options = {"propagationPolicy": policy, "preconditions": preconditions}
                await self._request("delete", identity, body=options)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409 or not version:
                    raise
            live = await self._get(identity)
            if live is None:
                return
            if graph.references(live) != graph.references(latest):
                raise RuntimeError(f"the owners of {identity.kind} {identity.name} changed")
            version = ""

    async def _unblock(self, identity: graph.Ref, latest: dict) -> dict:
        """Set blockOwnerDeletion false on its references: a dependent of it waits for
        its own dependents too, and foreground deletions must not wait in a circle."""
        refs = [{"uid": r["uid"], "blockOwnerDeletion": False}
                for r in graph.references(latest) if r.get("blockOwnerDeletion")]  # fmt: skip
        if not refs:
            return latest
        patch = {"metadata": {"ownerReferences": refs}}
        return await self._request("patch", identity, body=patch, content_type=STRATEGIC_PATCH)

    async def _remove_references(self, identity: graph.Ref, owners: tuple[str, ...]) -> None:
        patch = {"metadata": {"ownerReferences": [{"$patch": "delete", "uid": uid}
                                                  for uid in owners]}}  # fmt: skip
        try:
            await self._request("patch", identity, body=patch, content_type=STRATEGIC_PATCH)
        except ApiError as e:
            if e.code != 404:
                raise

    # --- attemptToOrphan ---------------------------------------------------------------

    async def _attempt_to_orphan(self, owner: graph.Node) -> None:
        failures: list[str] = []

        async def orphan(dependent: graph.Node) -> None:
            try:
                await self._remove_references(dependent.identity, (owner.uid,))
            except ApiError as e:
                failures.append(f"orphaning {dependent.identity.kind} "
                                f"{dependent.identity.name} failed: {e}")  # fmt: skip

        async with trio.open_nursery() as nursery:
            for dependent in self.graph.dependents(owner.uid):
                nursery.start_soon(orphan, dependent)
        if failures:
            raise RuntimeError("; ".join(failures))
        await self._remove_finalizer(owner.identity, graph.ORPHAN)

    # --- reads and writes --------------------------------------------------------------

    async def _remove_finalizer(self, identity: graph.Ref, finalizer: str) -> None:
        for _ in range(5):
            obj = await self._get(identity)
            if obj is None:
                return
            m = obj["metadata"]
            if finalizer not in (m.get("finalizers") or ()):
                return
            kept = graph.without(m.get("finalizers") or (), finalizer)
            patch = {"metadata": {"resourceVersion": m.get("resourceVersion", ""),
                                  "finalizers": kept or None}}  # fmt: skip
            try:
                await self._request("patch", identity, body=patch, content_type=MERGE_PATCH)
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise
        raise RuntimeError(f"{identity.kind} {identity.name} kept changing while its "
                           f"{finalizer} finalizer was removed")  # fmt: skip

    async def _get(self, identity: graph.Ref) -> dict | None:
        """The object at ``identity``, read live; None if absent or another uid."""
        try:
            obj = await self._request("get", identity)
        except ApiError as e:
            if e.code == 404:
                return None
            raise
        return obj if (obj.get("metadata") or {}).get("uid") == identity.uid else None

    async def _request(self, verb: str, identity: graph.Ref, **fields: Any) -> Any:
        served = self._served(identity.api_version, identity.kind)
        return await self.client.request(
            verb, served.resource, group=served.group, version=served.version,
            namespace=identity.namespace if served.namespaced else "", name=identity.name,
            **fields,
        )  # fmt: skip

    def _served(self, api_version: str, kind: str) -> ServedResource:
        served = self._kinds.get((api_version, kind))
        if served is None:
            # Kubernetes' restMappingError: retried, the API may serve it later.
            raise RuntimeError(f"no resource is served for {kind} in {api_version}")
        return served


class _AtVersion(ApiClient):
    """The same client, for a group served at ``version`` rather than v1."""

    def __init__(self, client: ApiClient, version: str) -> None:
        super().__init__(client.system, client.server, token=client.token,
                         timeout=client.timeout)  # fmt: skip
        self.version = version

    async def request(self, verb: str, resource: str, **fields: Any) -> Any:
        return await super().request(verb, resource, **{**fields, "version": self.version})

    @asynccontextmanager
    async def watch_request(self, req: ApiRequest) -> AsyncIterator[WatchStream]:
        async with super().watch_request(attrs.evolve(req, version=self.version)) as stream:
            yield stream


def _identity(served: ServedResource, obj: dict) -> graph.Ref:
    m = obj.get("metadata") or {}
    return graph.Ref(served.api_version, served.kind, m.get("namespace", ""),
                     m.get("name", ""), m.get("uid", ""))  # fmt: skip
