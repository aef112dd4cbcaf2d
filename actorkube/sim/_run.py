"""``simulate``: one deterministic run of a scenario on a simulated network.

Rules of this file:

- The whole ``trio.run`` happens inside ``seeded_scheduling(seed)`` and on a
  ``MockClock(autojump_threshold=0)``: task order and virtual time are functions of
  the seed, from the first task on, and an idle run jumps straight to the next deadline.
- A failure leaves ``simulate`` as it was raised by the scenario (or by a host), with a
  note naming the seed and the call that replays it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio
import trio.testing

from ._faults import PERFECT, Faults
from ._network import DEFAULT_EPOCH, SimNetwork
from ._scheduling import seeded_scheduling
from ._trace import Trace

Scenario = Callable[[SimNetwork], Awaitable[Any]]


@attrs.frozen
class SimResult:
    """What a run produced: the scenario's return ``value``, the network ``trace``, and
    the virtual ``duration`` of the run in seconds."""

    seed: int
    value: Any
    trace: Trace
    duration: float


def simulate(
    scenario: Scenario,
    *,
    seed: int,
    faults: Faults = PERFECT,
    epoch: float = DEFAULT_EPOCH,
) -> SimResult:
    """Run ``await scenario(net)`` on a fresh ``SimNetwork(seed)`` in a new trio run.

    The same scenario with the same seed gives the same trace, byte for byte. If the
    scenario raises, the exception carries a note with the seed and the replay call,
    ``simulate(<scenario>, seed=<seed>)``. ``faults`` is the initial default of every
    link; ``epoch`` the wall-clock time the run starts at.
    """
    name = getattr(scenario, "__qualname__", "scenario")
    replay = f"simulate({name}, seed={seed})"

    async def main() -> SimResult:
        async with SimNetwork(seed, faults=faults, epoch=epoch, replay=replay) as net:
            value = await scenario(net)
            duration = net.now()
        return SimResult(seed, value, net.trace(), duration)

    with seeded_scheduling(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
