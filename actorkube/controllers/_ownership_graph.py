"""The garbage collector's ownership graph and its decisions (kube-controller-manager's
GraphBuilder and the choices of its attemptToDeleteItem), as plain synchronous code.

Rules of this file:

- One ``Node`` per uid: observed (an informer showed the object) or virtual (an
  ownerReference names it and nothing has shown it yet; its identity is the
  reference's coordinates in the dependent's namespace). A node holds its owners (its
  ownerReferences as last observed) and its dependents (the uids of the nodes whose
  ownerReferences name it).
- ``observe`` (an informer's add or update), ``forget`` (its delete) and
  ``virtual_delete`` (a live read found no object at a node's identity) change the
  graph and return the ``Work`` they make: uids for attemptToDelete and for
  attemptToOrphan. A virtual node is work at once: a live read decides whether its
  object exists. When a node goes, its dependents are work (their owner may be gone),
  and so is each owner that waits for its dependents.
- Work is level-based where Kubernetes reacts to transitions: an object being deleted
  with the ``orphan`` finalizer is orphaning work on every observation, and one with
  ``foregroundDeletion`` is deletion work (its dependents too, when it starts). Every
  attempt re-reads the cluster, so doing one twice changes nothing.
- ``decide`` is attemptToDeleteItem's choice for an object that has owners, given a
  live read of each owner (None: absent, or a different uid: the reference dangles).
  An owner with a live owner it does not wait for keeps the object and only sheds its
  dangling references; an object whose owners are all gone is deleted, with the
  policy its own finalizers ask for; one whose owners wait for it, if it has
  dependents of its own, is deleted in foreground.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"


@attrs.frozen(order=True)
class Ref:
    """An object's coordinates (Kubernetes' objectReference), ordered as Kubernetes'
    referenceLessThan: apiVersion, kind, namespace, name, uid."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of_owner(cls, reference: Mapping[str, Any], namespace: str) -> Ref:
        """The owner an ownerReference of an object in ``namespace`` names."""
        def text(field: str) -> str:
            return str(reference.get(field, ""))

        return cls(text("apiVersion"), text("kind"), namespace, text("name"), text("uid"))

    def matches(self, reference: Mapping[str, Any]) -> bool:
        """Whether ``reference`` names these coordinates (namespace aside)."""
        return (reference.get("uid"), reference.get("name"), reference.get("kind"),
                reference.get("apiVersion")) == (self.uid, self.name, self.kind,
                                                 self.api_version)  # fmt: skip


@attrs.frozen
class Work:
    """Uids to attempt to delete and to orphan, in order, each once."""

    delete: tuple[str, ...] = ()
    orphan: tuple[str, ...] = ()

    def __add__(self, other: Work) -> Work:
        return Work(tuple(dict.fromkeys(self.delete + other.delete)),
                    tuple(dict.fromkeys(self.orphan + other.orphan)))  # fmt: skip


@attrs.define
class Node:
    identity: Ref
    owners: tuple[dict, ...] = ()
    dependents: set[str] = attrs.field(factory=set)
    virtual: bool = False
    being_deleted: bool = False
    deleting_dependents: bool = False

    @property
    def uid(self) -> str:
        return self.identity.uid


def references(obj: Mapping[str, Any]) -> tuple[dict, ...]:
    """An object's ownerReferences (the well-formed ones: a dict with a uid)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return tuple(r for r in refs if isinstance(r, dict) and r.get("uid"))


def _blocks(reference: Mapping[str, Any]) -> bool:
    return reference.get("blockOwnerDeletion") is True


@attrs.define
class OwnershipGraph:
    """Owners and dependents of everything observed (see the module rules)."""

    nodes: dict[str, Node] = attrs.field(factory=dict)

    def node(self, uid: str) -> Node | None:
        return self.nodes.get(uid)

    def dependents(self, uid: str) -> list[Node]:
        node = self.nodes.get(uid)
        if node is None:
            return []
        return [self.nodes[d] for d in sorted(node.dependents) if d in self.nodes]

    def blocking_dependents(self, uid: str) -> list[Node]:
        """Dependents whose reference to ``uid`` has blockOwnerDeletion: what a
        foreground deletion of ``uid`` waits for."""
        return [d for d in self.dependents(uid)
                if any(r.get("uid") == uid and _blocks(r) for r in d.owners)]  # fmt: skip

    # --- what informers and live reads tell --------------------------------------------

    def observe(self, identity: Ref, obj: Mapping[str, Any]) -> Work:
        """An informer's add or update of ``obj`` at ``identity``."""
        m = obj.get("metadata") or {}
        refs = references(obj)
        being_deleted = bool(m.get("deletionTimestamp"))
        node = self.nodes.get(identity.uid)
        work = Work()
        if node is None:
            node = Node(identity, refs, being_deleted=being_deleted)
            self.nodes[identity.uid] = node
            work += self._add_to_owners(node, refs)
        else:
            if node.virtual:
                if identity != node.identity:
                    # Dependents that named it otherwise may hold a wrong reference.
                    _, wrong = self._partition(node.dependents, identity)
                    work += Work(delete=tuple(wrong))
                    node.identity = identity
                node.virtual = False
            work += self._references_changed(node, refs)
            node.being_deleted = node.being_deleted or being_deleted
        return work + self._transitions(node, being_deleted, m.get("finalizers") or ())

    def forget(self, identity: Ref) -> Work:
        """An informer's delete of the object at ``identity``."""
        node = self.nodes.get(identity.uid)
        return Work() if node is None else self._remove(node)

    def virtual_delete(self, identity: Ref) -> Work:
        """A live read found no object at ``identity`` (404, or another uid there).
        A node known by other coordinates stays; only the dependents that named it by
        these are work (Kubernetes' handling of virtual delete events)."""
        node = self.nodes.get(identity.uid)
        if node is None:
            return Work()
        if node.virtual:
            matching, wrong = self._partition(node.dependents, identity)
            if wrong:
                work = Work(delete=tuple(matching))
                if node.identity == identity:
                    alternate = self._alternate(wrong, identity)
                    if alternate is not None:
                        node.identity = alternate
                        work += Work(delete=(node.uid,))
                return work
        elif node.identity != identity:
            matching, _ = self._partition(node.dependents, identity)
            return Work(delete=tuple(matching))
        return self._remove(node)

    # --- the graph's bookkeeping ---------------------------------------------------------

    def _add_to_owners(self, node: Node, refs: Iterable[dict]) -> Work:
        """Make ``node`` a dependent of each owner ``refs`` name (virtual nodes for the
        unknown ones); the node itself is work if a reference may be wrong."""
        new_owners: list[str] = []
        suspect = False
        for ref in refs:
            owner = self.nodes.get(ref["uid"])
            if owner is None:
                owner = Node(Ref.of_owner(ref, node.identity.namespace), virtual=True)
                self.nodes[owner.uid] = owner
                new_owners.append(owner.uid)
            elif not suspect:
                suspect = self._suspect(node, ref, owner)
            owner.dependents.add(node.uid)
        return Work(delete=(*new_owners, node.uid) if suspect else tuple(new_owners))

    @staticmethod
    def _suspect(node: Node, ref: Mapping[str, Any], owner: Node) -> bool:
        """Whether ``ref`` may not name ``owner`` as it is known: another namespace (a
        namespaced owner), other coordinates, or a virtual cluster-scoped owner named
        from a namespace (which could be a namespaced kind misnamed)."""
        owner_namespace = owner.identity.namespace
        if owner_namespace and owner_namespace != node.identity.namespace:
            return True
        if not owner.identity.matches(ref):
            return True
        return not owner_namespace and owner.virtual and bool(node.identity.namespace)

    def _references_changed(self, node: Node, refs: tuple[dict, ...]) -> Work:
        old = {r["uid"]: r for r in node.owners}
        new = {r["uid"]: r for r in refs}
        added = [r for uid, r in new.items() if uid not in old]
        removed = [r for uid, r in old.items() if uid not in new]
        changed = [(old[uid], r) for uid, r in new.items() if uid in old and old[uid] != r]
        if not (added or removed or changed):
            return Work()
        # An owner waiting for its dependents may be waiting for this one no more.
        unblocked = [r["uid"] for r in removed if _blocks(r)]
        unblocked += [b["uid"] for a, b in changed if _blocks(a) and not _blocks(b)]
        work = Work(delete=tuple(uid for uid in unblocked if uid in self.nodes))
        node.owners = refs
        work += self._add_to_owners(node, added)
        for ref in removed:
            owner = self.nodes.get(ref["uid"])
            if owner is not None:
                owner.dependents.discard(node.uid)
        return work

    def _transitions(self, node: Node, being_deleted: bool, finalizers: Sequence[str]) -> Work:
        if not being_deleted:
            return Work()
        if ORPHAN in finalizers:
            return Work(orphan=(node.uid,))
        if FOREGROUND in finalizers:
            starting = not node.deleting_dependents
            node.deleting_dependents = True
            dependents = tuple(sorted(node.dependents)) if starting else ()
            return Work(delete=(*dependents, node.uid))
        return Work()

    def _remove(self, node: Node) -> Work:
        del self.nodes[node.uid]
        for ref in node.owners:
            owner = self.nodes.get(ref["uid"])
            if owner is not None:
                owner.dependents.discard(node.uid)
        owners = [self.nodes.get(ref["uid"]) for ref in node.owners]
        waiting = [o.uid for o in owners if o is not None and o.deleting_dependents]
        return Work(delete=(*sorted(node.dependents), *waiting))

    def _partition(self, dependents: Iterable[str], owner: Ref) -> tuple[list[str], list[str]]:
        """Dependents whose reference to ``owner.uid`` matches ``owner``, and those with
        one that does not (a dependent may be in both: Kubernetes' partitionDependents)."""
        matching: list[str] = []
        wrong: list[str] = []
        for uid in sorted(dependents):
            dep = self.nodes.get(uid)
            if dep is None:
                continue
            if owner.namespace and owner.namespace != dep.identity.namespace:
                wrong.append(uid)
                continue
            refs = [r for r in dep.owners if r["uid"] == owner.uid]
            if any(owner.matches(r) for r in refs):
                matching.append(uid)
            if any(not owner.matches(r) for r in refs):
                wrong.append(uid)
        return matching, wrong

    def _alternate(self, dependents: Iterable[str], absent: Ref) -> Ref | None:
        """Other coordinates the ``dependents`` name the owner by: the first after
        ``absent`` in order, else the first (Kubernetes' getAlternateOwnerIdentity)."""
        seen = {absent}
        for uid in dependents:
            dep = self.nodes[uid]
            for ref in dep.owners:
                if ref["uid"] != absent.uid:
                    continue
                namespace = dep.identity.namespace
                if absent.matches(ref) and (not absent.namespace or absent.namespace == namespace):
                    continue
                candidate = Ref.of_owner(ref, namespace)
                if (not absent.namespace and candidate.api_version == absent.api_version
                        and candidate.kind == absent.kind):  # fmt: skip
                    candidate = attrs.evolve(candidate, namespace="")  # a known cluster kind
                seen.add(candidate)
        others = sorted(seen - {absent})
        following = [r for r in others if absent < r]
        return following[0] if following else (others[0] if others else None)


# --- attemptToDeleteItem's choice --------------------------------------------------------


@attrs.frozen
class Verdict:
    """What to do with an object that has owners: nothing, drop the references to
    ``remove`` (owner uids), or delete it with ``policy`` (after setting
    blockOwnerDeletion false on its references if ``unblock``: a dependent of it also
    waits for its own dependents, which could otherwise wait for ever in a cycle)."""

    remove: tuple[str, ...] = ()
    delete: bool = False
    policy: str = ""
    unblock: bool = False


def classify(
    refs: Iterable[dict], owners: Mapping[str, Mapping[str, Any] | None]
) -> tuple[list[dict], list[dict], list[dict]]:
    """The references split as Kubernetes' classifyReferences: solid (a live owner),
    dangling (no owner by that uid), waiting (the owner is being deleted in
    foreground)."""
    solid: list[dict] = []
    dangling: list[dict] = []
    waiting: list[dict] = []
    for ref in refs:
        owner = owners.get(ref["uid"])
        if owner is None:
            dangling.append(ref)
            continue
        m = owner.get("metadata") or {}
        if m.get("deletionTimestamp") and FOREGROUND in (m.get("finalizers") or ()):
            waiting.append(ref)
        else:
            solid.append(ref)
    return solid, dangling, waiting


def decide(
    obj: Mapping[str, Any],
    owners: Mapping[str, Mapping[str, Any] | None],
    *,
    has_dependents: bool,
    dependent_deletes_dependents: bool,
) -> Verdict:
    """attemptToDeleteItem's choice for ``obj`` (its live copy) given a live read of
    each owner its ownerReferences name, by uid (None: dangling). ``has_dependents``:
    something in the graph names ``obj`` as owner; ``dependent_deletes_dependents``:
    one of those is itself being deleted in foreground."""
    refs = references(obj)
    if not refs:
        return Verdict()
    solid, dangling, waiting = classify(refs, owners)
    if solid:
        # Kept by a live owner; references to owners gone or waiting for it go (an
        # owner in foreground deletion would otherwise wait for it for ever).
        return Verdict(remove=tuple(r["uid"] for r in (*dangling, *waiting)))
    if waiting and has_dependents:
        return Verdict(delete=True, policy="Foreground", unblock=dependent_deletes_dependents)
    finalizers = (obj.get("metadata") or {}).get("finalizers") or ()
    if ORPHAN in finalizers:
        policy = "Orphan"
    elif FOREGROUND in finalizers:
        policy = "Foreground"
    else:
        policy = "Background"
    return Verdict(delete=True, policy=policy)


def without(finalizers: Iterable[str], name: str) -> list[str]:
    """``finalizers`` without ``name``, in order."""
    return [f for f in finalizers if f != name]
