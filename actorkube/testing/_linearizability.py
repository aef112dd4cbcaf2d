"""A linearizability checker for histories of concurrent operations.

The search is Wing and Gong's, with Lowe's cache of visited configurations (as in
Porcupine and Knossos): walk the history in time order; at each point try, as the next
operation to take effect, each operation that was called before the earliest pending
return; apply it to the model; if the model agrees with what the operation returned,
go on, otherwise backtrack. A configuration (the set of operations already linearized,
and the model's state) is never explored twice.

Rules of this file:

- An operation whose outcome is unknown (the client gave up waiting: ``output`` is
  ``UNKNOWN``) may take effect at any time after its call, or never: it is given an
  endless return time and the model accepts any outcome for it.
- A model may split a history into independent parts (one per key for a key-value
  store): each part is checked alone, which keeps the search small.
- A history that is not linearizable is reported with a smallest failing part: the
  operations of the failing part, shrunk one by one while what remains still fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol

import attrs

UNKNOWN = "unknown"  # the output of an operation whose outcome the client never learnt


@attrs.frozen
class Operation:
    """One call: who made it, when it was called and when it returned (any clock, as
    long as one clock serves the whole history), what it asked and what it got."""

    client: Any
    call: float
    ret: float
    input: Any
    output: Any = UNKNOWN

    @property
    def unknown(self) -> bool:
        return self.output is UNKNOWN


class Model(Protocol):
    """What a linearizable object does, one operation at a time."""

    def init(self) -> Hashable:
        """The state before any operation."""

    def step(self, state: Hashable, input: Any, output: Any) -> tuple[bool, Hashable]:
        """Whether the object in ``state`` could answer ``input`` with ``output``, and
        its state after. ``output`` may be ``UNKNOWN``: then any answer goes."""

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        """Independent parts of the history (or the whole history as one part)."""

    def explained(self, history: Sequence[Operation]) -> bool:
        """Whether a sub-history still makes sense on its own (say, every value read
        was written by one of its operations): the shrinker keeps only those, so that
        a report shows a cause, not a read of a value from nowhere."""


class KVModel:
    """A key-value map with single-key operations, partitioned by key. Inputs:

    - ``("put", key, value)`` -> output ignored (any acknowledgement)
    - ``("get", key)`` -> the value, or None if absent
    - ``("delete", key)`` -> how many keys it deleted (0 or 1), or None to ignore
    - ``("cas", key, expected, new)`` -> whether it swapped (``expected`` None: absent)
    """

    def init(self) -> Hashable:
        return None

    def step(self, state: Hashable, input: Any, output: Any) -> tuple[bool, Hashable]:
        kind = input[0]
        unknown = output is UNKNOWN
        if kind == "put":
            return True, input[2]
        if kind == "get":
            return unknown or output == state, state
        if kind == "delete":
            return unknown or output is None or output == (state is not None), None
        if kind == "cas":
            swapped = state == input[2]
            return unknown or output == swapped, input[3] if swapped else state
        raise ValueError(f"unknown operation {input!r}")

    def partition(self, history: Sequence[Operation]) -> list[list[Operation]]:
        parts: dict[Any, list[Operation]] = {}
        for op in history:
            parts.setdefault(op.input[1], []).append(op)
        return list(parts.values())

    def explained(self, history: Sequence[Operation]) -> bool:
        written = {op.input[2] for op in history if op.input[0] == "put"}
        written |= {op.input[3] for op in history if op.input[0] == "cas"}
        return all(
            op.output in written
            for op in history
            if op.input[0] == "get" and op.output is not None and not op.unknown
        )


class SearchExhausted(Exception):
    """The search visited more configurations than its budget allowed."""


@attrs.frozen
class CheckResult:
    """``ok``: the history is linearizable. Otherwise ``failure`` is a smallest failing
    part (sorted by call time) and ``part_size`` the size of the part it came from; or,
    with ``inconclusive``, the part the search could not finish within its budget."""

    ok: bool
    failure: tuple[Operation, ...] = ()
    part_size: int = 0
    inconclusive: bool = False

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        if self.inconclusive:
            return (
                f"inconclusive: the search exceeded its budget on a part of "
                f"{self.part_size} operations (raise the budget, or check fewer at once)"
            )
        lines = [
            f"not linearizable: these {len(self.failure)} operations (of a part of "
            f"{self.part_size}) cannot be put in any order that respects real time:"
        ]
        for op in self.failure:
            ret = "never returned" if math.isinf(op.ret) else f"returned at {op.ret:g}"
            lines.append(
                f"  client {op.client}: {op.input!r} -> {op.output!r} "
                f"(called at {op.call:g}, {ret})"
            )
        return "\n".join(lines)


def check_linearizable(
    history: Iterable[Operation], model: Model | None = None, *, budget: int = 2_000_000
) -> CheckResult:
    """Check that ``history`` is linearizable for ``model`` (a ``KVModel`` by default).
    ``budget``: the most configurations one search may visit (the search is exponential
    in the worst case; past the budget the answer is "inconclusive", never a pass)."""
    model = model or KVModel()
    explained = getattr(model, "explained", lambda sub: True)
    ops = [
        attrs.evolve(op, ret=math.inf) if op.unknown else op for op in history
    ]
    for part in model.partition(ops):
        try:
            if linearizable(part, model, budget):
                continue
            # The shortest failing prefix (by call time) first: few checks, and the
            # operation by operation shrink that follows works on far less.
            def fails(sub: list[Operation]) -> bool:
                return explained(sub) and not linearizable(sub, model, budget)

            part = sorted(part, key=lambda o: o.call)
            lo, hi = 1, len(part)
            while lo < hi:  # part[:hi] always fails
                mid = (lo + hi) // 2
                if fails(part[:mid]):
                    hi = mid
                else:
                    lo = mid + 1
            failure = _shrink(part[:hi], fails) if fails(part[:hi]) else _shrink(part, fails)
        except SearchExhausted:
            return CheckResult(False, (), len(part), inconclusive=True)
        return CheckResult(False, tuple(sorted(failure, key=lambda o: o.call)), len(part))
    return CheckResult(True)


def linearizable(ops: Sequence[Operation], model: Model, budget: int | None = None) -> bool:
    """Whether one part of a history is linearizable (no partitioning). Raises
    ``SearchExhausted`` after visiting ``budget`` configurations."""
    for op in ops:
        if op.ret < op.call:
            raise ValueError(f"an operation returns before its call: {op!r}")
    # Events in time order; at equal times calls come first (the intervals overlap).
    events = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)] + [(op.ret, 1, i) for i, op in enumerate(ops)]
    )
    n = len(ops)
    order = [i for _, kind, i in events if kind == 0]  # calls in time order
    ret_rank = {}
    for rank, (_, kind, i) in enumerate(events):
        if kind == 1:
            ret_rank[i] = rank
    call_rank = {i: rank for rank, (_, kind, i) in enumerate(events) if kind == 0}
    full = (1 << n) - 1
    seen: set[tuple[int, Hashable]] = set()
    # Depth-first search over (linearized set, state); explicit stack, no recursion.
    stack: list[tuple[int, Hashable]] = [(0, model.init())]
    while stack:
        done, state = stack.pop()
        if done == full:
            return True
        if (done, state) in seen:
            continue
        seen.add((done, state))
        if budget is not None and len(seen) > budget:
            raise SearchExhausted(f"more than {budget} configurations")
        # The earliest return among the operations not yet linearized bounds which
        # operations may go next: those called before it.
        horizon = min(ret_rank[i] for i in range(n) if not done >> i & 1)
        for i in order:
            if call_rank[i] > horizon:
                break
            if done >> i & 1:
                continue
            op = ops[i]
            ok, after = model.step(state, op.input, op.output)
            if ok:
                stack.append((done | 1 << i, after))
    return False


def _shrink(ops: list[Operation], fails: Callable[[list[Operation]], bool]) -> list[Operation]:
    """Drop operations one at a time while what remains still fails."""
    current = list(ops)
    i = 0
    while i < len(current):
        candidate = current[:i] + current[i + 1 :]
        if candidate and fails(candidate):
            current = candidate
        else:
            i += 1
    return current
