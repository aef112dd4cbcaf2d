"""A columnar view of the nodes for the framework's vectorised filters and scores.

Rules of this file:

- Row ``i`` is ``infos[i]``; the columns hold each node's allocatable and requested
  CPU (millicores), memory and ephemeral storage (bytes), its pod count and allowed
  pods, and its requests with the scoring defaults (``non_zero``), as NodeInfo counts
  them. ``refresh(info)`` copies one node's numbers again after a change.
- ``grouping(keys)`` groups the nodes that have the same spec (taints,
  unschedulable, ...) and the same values of the labels ``keys``: a plugin whose
  verdict reads nothing else of a node (see ``node_labels`` in the framework) is asked
  once per group, of a representative that holds just that, and its answer spread to
  every node of the group. Groupings are kept until a Node's spec or labels change.
- ``image_nodes`` counts, per image, the nodes that have it (ImageLocality's spread).
- ``label_codes(key)``: each node's value of label ``key`` as a small integer (-1:
  the node has no such label), so counts per topology domain are one ``bincount``.
- ``matching(namespaces, selector)``: how many pods on each node are in one of
  ``namespaces`` (None: any), match ``selector`` and are not being deleted (what
  PodTopologySpread and InterPodAffinity count). Built on first use, then kept: a
  refreshed row is counted again. ``terms()`` likewise counts the inter-pod affinity
  terms of the pods already placed, per topology domain.
- Other resources (extended resources, hugepages) have no column: a pod that asks for
  them is filtered node by node (the plugin's own ``filter``).
- ``derived(key, many, one)``: a column computed from the others (a filter's verdict or
  a score for one shape of pod, named by ``key``), kept from cycle to cycle: only the
  rows whose numbers, Node object or pods' claims (requests of every resource, host
  ports) changed since it was last asked are computed again (a refill that changes
  none, as a bind's confirmation replacing the assumed pod, is no change), in place
  unless a caller still holds the column. A
  Deployment's pods all ask the same, so a cycle pays for the one node the last pod
  went to, not for every node (Kubernetes re-runs its plugins on every node it scans;
  this is the same answer, remembered). ``spread(keys, answers)`` likewise keeps one
  answer per group of ``grouping(keys)`` spread over the rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from ._nodeinfo import NodeInfo
from ._resources import CPU, MEMORY, PODS

EPHEMERAL = "ephemeral-storage"
COLUMNS = (CPU, MEMORY, EPHEMERAL)  # the vectorised resources, in column order
DEFAULT_PODS = 110
MAX_MATCHING = 64  # selectors whose counts are kept
MAX_DERIVED = 256  # derived columns kept (pod shapes x plugins)
FEW_ROWS = 16  # stale rows at most computed one by one (numpy's per-call cost is higher)
REFILL_LOG = 4096  # refilled rows remembered for derived columns (see NodeTable.__init__)


def count_matching(info: NodeInfo, namespaces: frozenset[str] | None, selector,
                   deleting: bool = False) -> int:  # fmt: skip
    n = 0
    for pod in info.pods.values():
        m = pod.get("metadata") or {}
        if namespaces is not None and m.get("namespace", "") not in namespaces:
            continue
        if (m.get("deletionTimestamp") and not deleting) or not selector.matches(
            m.get("labels") or {}
        ):
            continue
        n += 1
    return n


def pod_terms(pod) -> list[tuple[str, int, dict]]:
    """A pod's inter-pod affinity terms as (kind, weight, PodAffinityTerm): kinds
    ``affinity``/``anti`` (required; weight 0) and ``affinity-preferred``/
    ``anti-preferred``."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    out = []
    for field, kind in (("podAffinity", "affinity"), ("podAntiAffinity", "anti")):
        rules = affinity.get(field) or {}
        for term in rules.get("requiredDuringSchedulingIgnoredDuringExecution") or ():
            out.append((kind, 0, term))
        for weighted in rules.get("preferredDuringSchedulingIgnoredDuringExecution") or ():
            out.append((kind + "-preferred", int(weighted.get("weight") or 0),
                        weighted.get("podAffinityTerm") or {}))  # fmt: skip
    return out


def _spec_key(info: NodeInfo) -> str:
    return json.dumps(info.spec, sort_keys=True, separators=(",", ":"))


class NodeTable:
    """See the module rules."""

    def __init__(self, infos: Sequence[NodeInfo]) -> None:
        self.infos = list(infos)
        n = len(self.infos)
        self.names = [info.name for info in self.infos]
        self.row = {name: i for i, name in enumerate(self.names)}
        self.allocatable = np.zeros((n, len(COLUMNS)), dtype=np.int64)
        self.requested = np.zeros((n, len(COLUMNS)), dtype=np.int64)
        self.non_zero = np.zeros((n, 2), dtype=np.int64)  # cpu, memory
        self.pods = np.zeros(n, dtype=np.int64)
        self.allowed_pods = np.zeros(n, dtype=np.int64)
        self._seen: list[object] = [None] * n  # the Node object of each row's spec key
        self._numbers: list[tuple[int, ...]] = [()] * n  # each row's numbers, as filled
        self._claims: list[tuple[dict, dict]] = [({}, {})] * n  # its requests and ports
        self._spec_keys: list[str] = [""] * n
        self._groupings: dict[tuple[str, ...], tuple[np.ndarray, list[NodeInfo]]] = {}
        self.image_nodes: dict[str, int] = {}  # image -> how many nodes have it
        self._codes: dict[str, tuple[np.ndarray, list[str], dict[str, int]]] = {}
        self._matching: dict[tuple, np.ndarray] = {}
        self._terms: dict[tuple, dict[str, int]] | None = None  # built on first use
        self._row_terms: list[list[tuple[tuple, str]]] = []
        self._images: list[dict[str, int]] = [{}] * n
        self.generations = [-1] * n
        # Row i was last refilled at change ``_row_epochs[i]``; a derived column knows
        # the change it is current to.
        self._epoch = 0
        self._row_epochs = np.zeros(n, dtype=np.int64)
        # The row refilled at each change, in order: entry k is change
        # ``_refilled_from + k + 1``. A column current to change e recomputes the rows of
        # the entries after e (a cycle's few) without scanning every row's epoch; older
        # entries are dropped past REFILL_LOG, and a column older than what is left
        # scans ``_row_epochs``.
        self._refilled: list[int] = []
        self._refilled_from = 0
        self._derived: dict[Hashable, tuple[np.ndarray, int]] = {}
        self._spreads: dict[tuple, np.ndarray] = {}
        for i in range(n):
            self._fill(i)

    def __len__(self) -> int:
        return len(self.infos)

    def refresh(self, info: NodeInfo) -> None:
        i = self.row.get(info.name)
        if i is not None and self.generations[i] != info.generation:
            self._fill(i)

    def _fill(self, i: int) -> None:
        info = self.infos[i]
        a, r, nz = info.allocatable, info.requested, info.non_zero
        numbers = (*[a.get(name, 0) for name in COLUMNS], *[r.get(name, 0) for name in COLUMNS],
                   nz.get(CPU, 0), nz.get(MEMORY, 0), len(info.pods),
                   a.get(PODS, DEFAULT_PODS))  # fmt: skip
        k = len(COLUMNS)
        # A refill that leaves the numbers, what the pods claim (every resource, host
        # ports) and the Node object as they were (a bind's confirmation replacing the
        # assumed pod) is no change to the derived columns.
        claims = self._claims[i]
        changed = (numbers != self._numbers[i] or info.node is not self._seen[i]
                   or r != claims[0] or info.ports != claims[1])  # fmt: skip
        if changed:
            self._numbers[i] = numbers
            self._claims[i] = (dict(r), dict(info.ports))
            self.allocatable[i] = numbers[:k]
            self.requested[i] = numbers[k : 2 * k]
            self.non_zero[i] = numbers[2 * k : 2 * k + 2]
            self.pods[i] = numbers[-2]
            self.allowed_pods[i] = numbers[-1]
        for (namespaces, selector, deleting), counts in self._matching.items():
            counts[i] = count_matching(info, namespaces, selector, deleting)
        if self._terms is not None:
            self._count_terms(i, -1)
            self._row_terms[i] = self._terms_of(info)
            self._count_terms(i, +1)
        if changed:
            self._epoch += 1
            self._row_epochs[i] = self._epoch
            self._refilled.append(i)
            if len(self._refilled) > REFILL_LOG:
                drop = len(self._refilled) // 2
                del self._refilled[:drop]
                self._refilled_from += drop
        if info.node is not self._seen[i]:
            old = self._seen[i]
            self._seen[i] = info.node
            spec_key = _spec_key(info)
            # Most Node changes are status only (heartbeats, images, conditions):
            # groups and label codes then stay as they are.
            if spec_key != self._spec_keys[i] or old is None or (
                (old.get("metadata") or {}).get("labels") or {}
            ) != info.labels:
                self._groupings.clear()
                self._spreads.clear()
                self._codes.clear()
            self._spec_keys[i] = spec_key
            for image in self._images[i]:
                self.image_nodes[image] -= 1
                if not self.image_nodes[image]:
                    del self.image_nodes[image]
            self._images[i] = info.images
            for image in info.images:
                self.image_nodes[image] = self.image_nodes.get(image, 0) + 1
        self.generations[i] = info.generation

    def derived(self, key: Hashable, many: Callable[[np.ndarray], np.ndarray],
                one: Callable[[int], object], dtype: type) -> np.ndarray:  # fmt: skip
        """The column ``key`` names (see the module rules): ``many(rows)`` computes it
        for an array of rows, ``one(i)`` for a single row, both from this table's
        numbers, the rows' Node objects and their pods' claims and count only; ``key``
        must name everything else they read (the pod's requests, the plugin's
        settings). Read-only."""
        found = self._derived.get(key)
        if found is None:
            if len(self._derived) >= MAX_DERIVED:
                self._derived.pop(next(iter(self._derived)))
            column = np.asarray(many(np.arange(len(self.infos))), dtype=dtype)
        else:
            column, epoch = found
            if epoch != self._epoch:
                if epoch >= self._refilled_from:
                    refilled = self._refilled[epoch - self._refilled_from:]
                    # Most cycles find one row refilled: the last pod's node.
                    stale = refilled if len(refilled) == 1 else sorted(set(refilled))
                else:
                    stale = np.flatnonzero(self._row_epochs > epoch).tolist()
                # Updated in place unless a caller still holds the column (then it
                # keeps what it was given: the references are the cache's tuple,
                # ``column`` and getrefcount's argument) or it is a view of another.
                if sys.getrefcount(column) > 3 or not column.flags.owndata:
                    column = column.copy()
                else:
                    column.setflags(write=True)
                if len(stale) <= FEW_ROWS:
                    for i in stale:
                        column[i] = one(i)
                else:
                    rows = np.array(stale, dtype=np.int64)
                    column[rows] = many(rows)
        column.setflags(write=False)
        self._derived[key] = (column, self._epoch)
        return column

    def spread(self, keys: Sequence[str], answers: np.ndarray) -> np.ndarray:
        """``answers`` (one per group of ``grouping(keys)``) spread over every row.
        Read-only; kept until a Node's spec or labels change."""
        key = (tuple(keys), answers.dtype.str, answers.tobytes())
        found = self._spreads.get(key)
        if found is None:
            if len(self._spreads) >= MAX_DERIVED:
                self._spreads.pop(next(iter(self._spreads)))
            found = self._spreads[key] = answers[self.grouping(keys)[0]]
            found.flags.writeable = False
        return found

    def label_codes(self, key: str) -> tuple[np.ndarray, list[str]]:
        """Each row's value of label ``key`` as an index into the returned values
        (-1: no such label)."""
        codes, values, _ = self._label(key)
        return codes, values

    def label_index(self, key: str) -> dict[str, int]:
        """Label ``key``'s values and their codes (``label_codes``)."""
        return self._label(key)[2]

    def _label(self, key: str) -> tuple[np.ndarray, list[str], dict[str, int]]:
        found = self._codes.get(key)
        if found is None:
            index: dict[str, int] = {}
            codes = np.full(len(self.infos), -1, dtype=np.int64)
            for i, info in enumerate(self.infos):
                value = info.labels.get(key)
                if value is not None:
                    codes[i] = index.setdefault(value, len(index))
            found = self._codes[key] = (codes, list(index), index)
        return found

    def matching(self, namespaces: frozenset[str] | None, selector,
                 deleting: bool = False) -> np.ndarray:  # fmt: skip
        """See the module rules (``deleting``: count pods being deleted too); do not
        modify the array returned."""
        key = (namespaces, selector, deleting)
        counts = self._matching.get(key)
        if counts is None:
            if len(self._matching) >= MAX_MATCHING:
                self._matching.pop(next(iter(self._matching)))
            counts = np.array([count_matching(info, namespaces, selector, deleting)
                               for info in self.infos], dtype=np.int64)  # fmt: skip
            self._matching[key] = counts
        return counts

    def terms(self) -> dict[tuple, dict[str, int]]:
        """The inter-pod affinity terms of the pods on the nodes, counted per
        topology domain: ``(kind, weight, owner namespace, term as JSON, topology
        key) -> {domain value: pods}`` (see ``pod_terms``; a node without the
        topology key adds nothing). Built on first use, then kept row by row."""
        if self._terms is None:
            self._terms = {}
            self._row_terms = [self._terms_of(info) for info in self.infos]
            for i in range(len(self.infos)):
                self._count_terms(i, +1)
        return self._terms

    def _terms_of(self, info: NodeInfo) -> list[tuple[tuple, str]]:
        out = []
        labels = info.labels
        for pod in info.pods.values():
            affinity = (pod.get("spec") or {}).get("affinity")
            if not affinity or not (affinity.get("podAffinity") or affinity.get("podAntiAffinity")):
                continue
            namespace = (pod.get("metadata") or {}).get("namespace", "")
            for kind, weight, term in pod_terms(pod):
                key = term.get("topologyKey") or ""
                value = labels.get(key)
                if value is not None:
                    text = json.dumps(term, sort_keys=True, separators=(",", ":"))
                    out.append(((kind, weight, namespace, text, key), value))
        return out

    def _count_terms(self, i: int, sign: int) -> None:
        assert self._terms is not None
        for key, value in self._row_terms[i]:
            counts = self._terms.setdefault(key, {})
            counts[value] = counts.get(value, 0) + sign
            if not counts[value]:
                del counts[value]
                if not counts:
                    del self._terms[key]

    def grouping(self, keys: Sequence[str]) -> tuple[np.ndarray, list[NodeInfo]]:
        """Each row's group, and a representative per group (see the module rules)."""
        keys = tuple(keys)
        found = self._groupings.get(keys)
        if found is None:
            ids: dict[tuple, int] = {}
            representatives: list[NodeInfo] = []
            group_of = np.zeros(len(self.infos), dtype=np.int64)
            for i, info in enumerate(self.infos):
                labels = info.labels
                values = tuple(labels.get(k) for k in keys)
                g = ids.get((self._spec_keys[i], values))
                if g is None:
                    g = ids[(self._spec_keys[i], values)] = len(representatives)
                    kept = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
                    representatives.append(
                        NodeInfo({"metadata": {"labels": kept}, "spec": info.spec})
                    )
                group_of[i] = g
            found = self._groupings[keys] = (group_of, representatives)
        return found
