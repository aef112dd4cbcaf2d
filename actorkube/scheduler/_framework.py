"""The scheduling framework: extension points, their Status results, and one pod's
scheduling cycle over a snapshot of nodes. Pure: no I/O, no clock, no actors.

Rules of this file (Kubernetes' pkg/scheduler/framework and schedule_one.go):

- A plugin implements any of ``pre_filter(state, pod, table)`` (``table``: every
  node), ``filter(state, pod, node)``,
  ``pre_score(state, pod, table, rows)`` (``rows``: the feasible nodes of ``table``),
  ``score(state, pod, node) -> int`` and ``normalize(state, pod, scores) -> scores``
  (numpy arrays); the framework calls each in profile order. For speed a plugin may
  also answer for many nodes at once: ``filter_many(state, pod, table)``,
  ``score_many(state, pod, table, rows)``, or ``node_labels(state, pod)`` (the label
  keys its verdict reads besides the node's spec: it is then asked once per group of
  look-alike nodes). These must agree with the node-by-node answers (a property test
  checks it).
- A plugin that sets ``row_local = True`` promises that its ``filter`` and ``score``
  read only the pod's ``spec`` (and what its own ``pre_filter``/``pre_score`` wrote
  into the state from it) and, of the node, its Node object and what its pods claim
  (NodeInfo's requests, host ports, pod count): nothing of other nodes, of the
  cluster, or of the rows being scored. The framework then remembers those answers
  per pod spec (from the second pod with that spec on: a spec seen once would pay for
  every node) and asks a plugin again only about the nodes whose answer may have
  changed since (``NodeTable.derived``): a Deployment's pods pay for the node the
  last one went to, not for every node scanned. Normalizing still happens per cycle,
  over its rows.
  Filters return a ``Status``: success, ``unschedulable`` (another node, or preemption,
  may do) or ``unresolvable`` (nothing on this node will change that); an ``error`` is
  the plugin's own failure.
- Filtering stops at the first failing filter for a node, and scanning stops once
  ``feasible_nodes_to_find`` nodes fit (all nodes below 100; else 50 - nodes/125
  percent, at least 5 percent and at least 100 nodes), starting where the last cycle
  stopped, so that every node gets its turn.
- Scores are 0-100 per plugin after normalizing, weighted and summed; the highest
  total wins, ties broken by the cycle's random source (seeded: the same inputs and
  seed give the same node).
- After the choice (the scheduler drives these, around its cache): ``reserve(state,
  pod, node)`` / ``unreserve`` (undone in reverse when a later one fails or the pod is
  not bound after all), ``permit`` (SUCCESS, a refusal, or ``Status.wait(timeout)``:
  the pod waits, reserved, until ``SchedulingState.allow`` or ``reject`` or the
  timeout), ``pre_bind``, ``bind`` (async; SKIP passes to the next, the last is the
  DefaultBinder: ``pods/binding``) and ``post_bind``.
- A pod nominated to a node (a preemption freed it) is first tried there alone
  (Kubernetes' evaluateNominatedNode).
- A pod no node fits gets a ``FitError`` whose message is Kubernetes' ("0/5 nodes are
  available: 3 Insufficient cpu, 2 node(s) were unschedulable."), naming the plugins
  that turned it away.
"""

from __future__ import annotations

import enum
import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import orjson

from ._nodeinfo import PLAIN_JSON, NodeInfo
from ._table import NodeTable

MAX_NODE_SCORE = 100
MAX_SPECS = 4096  # pod specs remembered as seen, for row-local answers
_SERIALS = itertools.count(1)
_SPEC_TEXT = orjson.OPT_SORT_KEYS | PLAIN_JSON  # a spec's text, if it is plain JSON data
MIN_FEASIBLE_NODES = 100
MIN_FEASIBLE_PERCENT = 5


class Code(enum.IntEnum):
    SUCCESS = 0
    ERROR = 1
    UNSCHEDULABLE = 2
    UNRESOLVABLE = 3  # UnschedulableAndUnresolvable
    SKIP = 4
    WAIT = 5  # Permit: hold the pod until allowed, rejected or timed out


@attrs.frozen
class Status:
    """A plugin's verdict: ``code`` and the reasons a person reads."""

    code: Code = Code.SUCCESS
    reasons: tuple[str, ...] = ()
    plugin: str = ""
    timeout: float = 0.0  # how long a WAIT may last

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @classmethod
    def unschedulable(cls, *reasons: str) -> Status:
        return cls(Code.UNSCHEDULABLE, reasons)

    @classmethod
    def unresolvable(cls, *reasons: str) -> Status:
        return cls(Code.UNRESOLVABLE, reasons)

    @classmethod
    def error(cls, reason: str) -> Status:
        return cls(Code.ERROR, (reason,))

    @classmethod
    def wait(cls, timeout: float) -> Status:
        return cls(Code.WAIT, (), timeout=timeout)


SUCCESS = Status()
SKIP = Status(Code.SKIP)


class CycleState(dict):
    """What plugins note for one pod's cycle (pre_filter's work, read by filter), and
    ``cluster``: what the scheduler knows beyond nodes and pods (services, workloads,
    namespaces: ``ClusterView``)."""

    cluster: ClusterView

    def __init__(self, cluster: ClusterView | None = None) -> None:
        super().__init__()
        self.cluster = cluster if cluster is not None else ClusterView()

    def clone(self) -> CycleState:
        """A copy whose plugin states (those with a ``clone``) can change apart."""
        copy = CycleState(self.cluster)
        for key, value in self.items():
            copy[key] = value.clone() if hasattr(value, "clone") else value
        return copy


class FollowsPods:
    """For plugins whose pre-filter state counts pods across nodes (its ``update(pod,
    node, delta)``): the state follows a pod added to or removed from a node, as
    preemption's trials add and remove victims (Kubernetes' PreFilterExtensions)."""

    name: str

    def add_pod(self, state: CycleState, pod, other, node) -> None:
        state[self.name].update(other, node, +1)

    def remove_pod(self, state: CycleState, pod, other, node) -> None:
        state[self.name].update(other, node, -1)


class ClusterView:
    """The objects some plugins read besides nodes and pods; this one has none. The
    scheduler's own reads its informers."""

    def services(self, namespace: str) -> list[Mapping[str, Any]]:
        return []

    def get(self, resource: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        return None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        return None

    def namespace_names(self) -> list[str]:
        return []

    def pod_disruption_budgets(self) -> list[Mapping[str, Any]]:
        """Every PodDisruptionBudget (each covers pods of its own namespace)."""
        return []


def feasible_nodes_to_find(nodes: int, percentage: int = 0) -> int:
    """How many feasible nodes a cycle looks for before it stops filtering
    (``percentageOfNodesToScore``; 0: Kubernetes' adaptive default)."""
    if nodes < MIN_FEASIBLE_NODES or percentage >= 100:
        return nodes
    if percentage <= 0:
        percentage = max(50 - nodes // 125, MIN_FEASIBLE_PERCENT)
    return max(nodes * percentage // 100, MIN_FEASIBLE_NODES)


def first_feasible(mask: np.ndarray, start: int, want: int) -> np.ndarray:
    """The rows of the first ``want`` True entries of ``mask`` (fewer if it has fewer),
    in scan order: from ``start`` to the end, then from 0. Looks at the ``want`` rows
    from ``start`` first: when nearly every node fits (the usual case), that is all
    it reads, not the rest of the table."""
    end = min(len(mask), start + want)
    rows = np.flatnonzero(mask[start:end]) + start
    if len(rows) < want:
        more = np.flatnonzero(mask[end:])[: want - len(rows)] + end
        rows = np.concatenate((rows, more))
        if len(rows) < want:
            rows = np.concatenate((rows, np.flatnonzero(mask[:start])[: want - len(rows)]))
    return rows


class FitError(Exception):
    """No node fits. ``statuses`` holds each filtered node's failing Status."""

    def __init__(self, pod: Mapping[str, Any], nodes: int, statuses: dict[str, Status],
                 pre_filter: str = "", post_filter: str = "", preemption=None,
                 plugins: frozenset[str] = frozenset()) -> None:  # fmt: skip
        self.pod = pod
        self.plugins = plugins  # the plugins that turned the pod away (for requeueing)
        self.preemption = preemption  # what a PostFilter plugin chose to evict, if any
        self.nodes = nodes
        self.statuses = statuses
        self.pre_filter = pre_filter
        self.post_filter = post_filter
        self._message = ""
        super().__init__(self.message())

    def histogram(self) -> Counter:
        counts: Counter = Counter()
        for status in self.statuses.values():
            counts.update(status.reasons)
        return counts

    def message(self) -> str:
        if not self._message:
            self._message = self._compose()
        return self._message

    def _compose(self) -> str:
        text = f"0/{self.nodes} nodes are available:"
        if self.pre_filter:
            text += f" {self.pre_filter}."
        else:
            reasons = sorted(f"{n} {reason}" for reason, n in self.histogram().items())
            text += f" {', '.join(reasons)}."
        if self.post_filter:
            text += f" {self.post_filter}."
        return text


@attrs.frozen
class Result:
    node: str
    evaluated: int
    feasible: int
    state: CycleState | None = attrs.field(default=None, eq=False)  # for reserve, permit

@attrs.define
class Framework:
    """A profile: plugins in order, with score weights (see the module rules)."""

    plugins: Sequence[Any]
    weights: Mapping[str, int] = attrs.field(factory=dict)
    percentage: int = 0
    rng: random.Random = attrs.field(factory=lambda: random.Random(0))
    next_start: int = 0
    cluster: ClusterView = attrs.field(factory=ClusterView)
    no_filter: frozenset[str] = frozenset()  # plugins whose filtering is turned off
    # Names this profile's remembered answers in a table (profiles share the cache's);
    # with each plugin object's identity, as plugins are not changed once made.
    _serial: int = attrs.field(init=False, eq=False, factory=lambda: next(_SERIALS))
    _specs: dict[bytes, None] = attrs.field(init=False, eq=False, factory=dict)  # seen

    def schedule(self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo] | NodeTable) -> Result:
        """The node for ``pod`` among ``nodes``; raises FitError if none fits."""
        table = nodes if isinstance(nodes, NodeTable) else NodeTable(nodes)
        n = len(table)
        if not n:
            raise FitError(pod, 0, {}, pre_filter="no nodes available to schedule pods")
        state = self._pre_filter(pod, table)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        row = table.row.get(nominated) if nominated else None
        if row is not None and all(p.filter(state, pod, table.infos[row]).ok
                                   for p in self._filters(state)):  # fmt: skip
            return Result(nominated, 1, 1, state)  # the node a preemption freed for it
        start = self.next_start % n
        spec = self._spec_seen(pod)
        feasible, checked = self._find_feasible(state, pod, table, start, spec)
        self.next_start = (start + checked) % n
        if not len(feasible):
            statuses, rejected = self._statuses(state, pod, table)
            preemption, message = None, ""
            for p in self.plugins:
                post = getattr(p, "post_filter", None)
                if post is not None and preemption is None:
                    preemption, message = post(self, state, pod, table, statuses)
            raise FitError(pod, n, statuses, post_filter=message, preemption=preemption,
                           plugins=frozenset(rejected))  # fmt: skip
        if len(feasible) == 1:
            return Result(table.names[feasible[0]], checked, 1, state)
        totals = self._score(state, pod, table, feasible, spec)
        winners = feasible[totals == totals.max()]  # in scan order: deterministic
        return Result(table.names[winners[self.rng.randrange(len(winners))]], checked,
                      len(feasible), state)  # fmt: skip

    # --- after a node is chosen: Reserve, Permit, PreBind, Bind, PostBind -------------

    def reserve(self, state: CycleState, pod: Mapping[str, Any], node: str) -> Status:
        """Every Reserve plugin in order; when one fails, every plugin's Unreserve runs
        (in reverse; Unreserve must be idempotent) and its status is returned (with its
        plugin's name)."""
        for p in self.plugins:
            reserve = getattr(p, "reserve", None)
            if reserve is None:
                continue
            status = reserve(state, pod, node)
            if not status.ok:
                self.unreserve(state, pod, node)  # all of them, as Kubernetes: idempotent
                return attrs.evolve(status, plugin=p.name)
        return SUCCESS

    def unreserve(self, state: CycleState, pod, node: str) -> None:
        """Undo Reserve (every plugin's ``unreserve``, in reverse order)."""
        for p in reversed(list(self.plugins)):
            undo = getattr(p, "unreserve", None)
            if undo is not None:
                undo(state, pod, node)

    def permit(self, state: CycleState, pod: Mapping[str, Any], node: str) -> Status:
        """Every Permit plugin: a refusal wins (with its plugin's name); else WAIT with
        the shortest timeout if any plugin waits (``reasons``: the waiting plugins, each
        of which must allow the pod); else SUCCESS."""
        waits: dict[str, float] = {}
        for p in self.plugins:
            permit = getattr(p, "permit", None)
            if permit is None:
                continue
            status = permit(state, pod, node)
            if status.code is Code.WAIT:
                waits[p.name] = status.timeout
            elif not status.ok:
                return attrs.evolve(status, plugin=p.name)
        if not waits:
            return SUCCESS
        return Status(Code.WAIT, tuple(waits), timeout=min(waits.values()))

    def binders(self) -> list:
        """The plugins with an async ``bind(state, pod, node) -> Status`` (SKIP: leave
        it to the next); after them the scheduler's DefaultBinder."""
        return [p for p in self.plugins if hasattr(p, "bind")]

    def feasible_nodes(self, pod: Mapping[str, Any], nodes: Sequence[NodeInfo] | NodeTable
                       ) -> list[str]:  # fmt: skip
        """Every node that passes the filters (no sampling; FitError if a pre-filter
        refuses the pod)."""
        table = nodes if isinstance(nodes, NodeTable) else NodeTable(nodes)
        state = self._pre_filter(pod, table)
        mask = np.ones(len(table), dtype=bool)
        for p in self._filters(state):
            mask &= filter_mask(p, state, pod, table)
        return [table.names[i] for i in np.flatnonzero(mask)]

    def _pre_filter(self, pod: Mapping[str, Any], table: NodeTable) -> CycleState:
        state = CycleState(self.cluster)
        for p in self.plugins:
            pre = getattr(p, "pre_filter", None)
            if pre is not None and p.name not in self.no_filter:
                status = pre(state, pod, table)
                if status.code is Code.SKIP:
                    state[("skip", p.name)] = True
                elif not status.ok:
                    raise FitError(pod, len(table), {}, pre_filter=", ".join(status.reasons),
                                   plugins=frozenset((p.name,)))  # fmt: skip
        return state

    def _filters(self, state: CycleState) -> list:
        return [p for p in self.plugins if hasattr(p, "filter") and p.name not in self.no_filter
                and not state.get(("skip", p.name))]  # fmt: skip

    def _spec_seen(self, pod) -> bytes | None:
        """The pod's spec as a key of remembered row-local answers, if a pod with this
        spec was scheduled before (see the module rules); else None."""
        try:
            spec = orjson.dumps(pod.get("spec") or {}, option=_SPEC_TEXT)
        except TypeError:  # not plain JSON data: nothing to remember it by
            return None
        if spec in self._specs:
            return spec
        if len(self._specs) >= MAX_SPECS:
            self._specs.clear()
        self._specs[spec] = None
        return None

    def _row_local_mask(self, state: CycleState, pod, table: NodeTable, plugins: list,
                        spec: bytes) -> np.ndarray:  # fmt: skip
        """Whether each node passes every one of ``plugins`` (row-local filters),
        remembered for ``spec``."""

        def many(rows: np.ndarray) -> np.ndarray:
            mask = np.ones(len(rows), dtype=bool)
            for p in plugins:
                mask &= filter_mask(p, state, pod, table)[rows]
            return mask

        def one(i: int) -> bool:
            info = table.infos[i]
            return all(p.filter(state, pod, info).ok for p in plugins)

        key = ("filters", self._serial, spec, tuple(map(id, plugins)))
        return table.derived(key, many, one, bool)

    def _row_local_scores(self, plugins: list, weights: list[int], state: CycleState, pod,
                          table: NodeTable, spec: bytes) -> np.ndarray:  # fmt: skip
        """Each node's raw scores of row-local ``plugins`` times ``weights``, summed,
        remembered for ``spec`` (a column over every row)."""

        def many(rows: np.ndarray) -> np.ndarray:
            total = np.zeros(len(rows), dtype=np.int64)
            for p, weight in zip(plugins, weights, strict=True):
                total += score_values(p, state, pod, table, rows) * weight
            return total

        def one(i: int) -> int:
            info = table.infos[i]
            return sum(p.score(state, pod, info) * weight
                       for p, weight in zip(plugins, weights, strict=True))  # fmt: skip

        key = ("scores", self._serial, spec, tuple(map(id, plugins)), tuple(weights))
        return table.derived(key, many, one, np.int64)

    def _find_feasible(self, state: CycleState, pod, table: NodeTable, start: int,
                       spec: bytes | None = None):  # fmt: skip
        """The rows of the first ``feasible_nodes_to_find`` nodes that pass every
        filter, scanning from ``start``, and how many nodes the scan covered
        (``spec``: remember the row-local filters' answers under it)."""
        n = len(table)
        mask = np.ones(n, dtype=bool)
        one_by_one = []
        filters = self._filters(state)
        if spec is not None:
            local = [p for p in filters if getattr(p, "row_local", False)]
            if local:
                mask &= self._row_local_mask(state, pod, table, local, spec)
                filters = [p for p in filters if not getattr(p, "row_local", False)]
        for p in filters:
            verdict = filter_verdicts(p, state, pod, table)
            if verdict is None:
                one_by_one.append(p)
            else:
                mask &= verdict
        want = feasible_nodes_to_find(n, self.percentage)
        if one_by_one:
            rows = np.flatnonzero(mask)
            rows = np.concatenate((rows[rows >= start], rows[rows < start]))
        else:  # only the first ``want`` from ``start`` are needed
            rows = first_feasible(mask, start, want)
        if one_by_one:
            found = []
            for i in rows:
                info = table.infos[i]
                if all(p.filter(state, pod, info).ok for p in one_by_one):
                    found.append(i)
                    if len(found) >= want:
                        break
            rows = np.array(found, dtype=np.int64)
        feasible = rows[:want]
        checked = int((feasible[-1] - start) % n) + 1 if len(feasible) >= want else n
        return feasible, checked

    def _statuses(self, state: CycleState, pod, table: NodeTable):
        """Each node's first failing filter (for FitError's message and preemption; only
        asked when no node fits, so every node was checked), and the names of the
        plugins that failed some node. Vectorised like the scan: a plugin is asked node
        by node only where it has no faster exact answer."""
        names, infos = table.names, table.infos
        pending = np.ones(len(table), dtype=bool)  # no failing filter found yet
        statuses: dict[str, Status] = {}
        rejected: set[str] = set()
        for p in self._filters(state):
            verdict = filter_verdicts(p, state, pod, table)
            failing = np.flatnonzero(pending if verdict is None else pending & ~verdict)
            explain = getattr(p, "statuses_many", None)
            found = explain(state, pod, table, failing) if explain and verdict is not None else None
            if found is None:
                found = _group_statuses(p, state, pod, table, failing)
            if found is None:
                found = [p.filter(state, pod, infos[i]) for i in failing]
            for i, status in zip(failing, found, strict=True):
                if not status.ok:
                    statuses[names[i]] = status
                    pending[i] = False
                    rejected.add(p.name)
            if not pending.any():
                break
        return statuses, rejected

    def _score(self, state: CycleState, pod, table: NodeTable, rows: np.ndarray,
               spec: bytes | None = None) -> np.ndarray:  # fmt: skip
        totals = np.zeros(len(rows), dtype=np.int64)
        summed, weights = [], []  # row-local, not normalized: one remembered column
        for p in self.plugins:
            weight = self.weights.get(p.name, 0)
            if not hasattr(p, "score") or weight == 0:
                continue
            if self._skips_scoring(p, state, pod, table, rows):
                continue
            normalize = getattr(p, "normalize", None)
            if spec is not None and getattr(p, "row_local", False):
                if normalize is None:
                    summed.append(p)
                    weights.append(weight)
                    continue
                scores = self._row_local_scores([p], [1], state, pod, table, spec)[rows]
            else:
                scores = score_values(p, state, pod, table, rows)
            if normalize is not None:
                scores = normalize(state, pod, scores)
            totals += scores * weight
        if summed:
            assert spec is not None
            totals += self._row_local_scores(summed, weights, state, pod, table, spec)[rows]
        return totals

    @staticmethod
    def _skips_scoring(p, state: CycleState, pod, table: NodeTable, rows) -> bool:
        pre = getattr(p, "pre_score", None)
        return pre is not None and pre(state, pod, table, rows).code is Code.SKIP


def filter_verdicts(plugin, state: CycleState, pod, table: NodeTable) -> np.ndarray | None:
    """Whether each node passes ``plugin``'s filter, answered for all nodes at once
    (its ``filter_many``, or once per group of look-alike nodes); None: the plugin
    must be asked node by node."""
    many = getattr(plugin, "filter_many", None)
    verdict = many(state, pod, table) if many is not None else None
    if verdict is None:
        verdict = _by_group(plugin, state, pod, table, None)
    return verdict


def filter_mask(plugin, state: CycleState, pod, table: NodeTable) -> np.ndarray:
    """Whether each node passes ``plugin``'s filter: ``filter_verdicts``, else asked
    node by node."""
    verdict = filter_verdicts(plugin, state, pod, table)
    if verdict is None:
        verdict = np.array([plugin.filter(state, pod, i).ok for i in table.infos], dtype=bool)
    return verdict


def score_values(plugin, state: CycleState, pod, table: NodeTable, rows: np.ndarray):
    """``plugin``'s raw score of each node of ``rows``, by the cheapest exact way."""
    many = getattr(plugin, "score_many", None)
    scores = many(state, pod, table, rows) if many is not None else None
    if scores is None:
        scores = _by_group(plugin, state, pod, table, rows)
    if scores is None:
        infos = table.infos
        scores = np.array([plugin.score(state, pod, infos[i]) for i in rows], dtype=np.int64)
    return scores


def _group_statuses(plugin, state: CycleState, pod, table: NodeTable, rows) -> list | None:
    """``plugin``'s filter status of each node of ``rows``, asked once per group of
    look-alike nodes (None: the plugin reads more than labels and spec)."""
    reads = getattr(plugin, "node_labels", None)
    keys = reads(state, pod) if reads is not None else None
    if keys is None:
        return None
    group_of, representatives = table.grouping(keys)
    known: dict[int, Status] = {}
    out = []
    for g in group_of[rows]:
        status = known.get(g)
        if status is None:
            status = known[g] = plugin.filter(state, pod, representatives[g])
        out.append(status)
    return out


FEW_GROUPS = 32  # groups at most whose every answer is computed to score some rows


def _by_group(plugin, state: CycleState, pod, table: NodeTable, rows: np.ndarray | None):
    """Ask ``plugin`` (its filter when ``rows`` is None, else its score of ``rows``)
    once per group of nodes that look the same to it (its ``node_labels`` says which
    labels it reads besides the spec; None: it reads more, so there is no shortcut)."""
    reads = getattr(plugin, "node_labels", None)
    keys = reads(state, pod) if reads is not None else None
    if keys is None:
        return None
    group_of, representatives = table.grouping(keys)
    if rows is None or len(representatives) <= FEW_GROUPS:
        # Every group asked: the answers spread over the table are then remembered.
        answers = np.zeros(len(representatives), dtype=bool if rows is None else np.int64)
        for g, rep in enumerate(representatives):
            if rows is None:
                answers[g] = plugin.filter(state, pod, rep).ok
            else:
                answers[g] = plugin.score(state, pod, rep)
        spread = table.spread(keys, answers)
        return spread if rows is None else spread[rows]
    wanted = group_of[rows]
    answers = np.zeros(len(representatives), dtype=np.int64)
    for g in np.flatnonzero(np.bincount(wanted)):
        answers[g] = plugin.score(state, pod, representatives[g])
    return answers[wanted]


def normalize_to_max(scores: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Kubernetes' DefaultNormalizeScore: scale so the highest is 100 (``reverse``:
    then flip, so the lowest raw score is best)."""
    highest = int(scores.max()) if len(scores) else 0
    if highest == 0:
        return np.full(len(scores), MAX_NODE_SCORE, dtype=np.int64) if reverse else scores
    scaled = MAX_NODE_SCORE * scores // highest
    return MAX_NODE_SCORE - scaled if reverse else scaled
