"""``actorkube up`` supervises each component on its own: one that crash-loops is
restarted with a growing pause and never given up on, and never delays the restart of
another component."""

from __future__ import annotations

import itertools

import trio

from actorkube.actor import Actor, ActorSystem
from actorkube.cli._components import run_component


class Flaky(Actor):
    """Fails as it starts, as long as ``fail_until`` (virtual time) has not come."""

    def __init__(self, starts: list[float], fail_until: float) -> None:
        self.starts = starts
        self.fail_until = fail_until

    async def started(self) -> None:
        self.starts.append(trio.current_time())
        if trio.current_time() < self.fail_until:
            raise RuntimeError("not yet")


async def test_a_crash_looping_component_does_not_hold_back_another(autojump_clock):
    looping: list[float] = []
    once: list[float] = []
    async with ActorSystem() as system:
        run_component(system, lambda: Flaky(looping, fail_until=10_000), "looping")
        await trio.sleep(20)
        run_component(system, lambda: Flaky(once, fail_until=21), "once")
        await trio.sleep(300)
        # The other one failed once at t=20 and was back a second later, its own pause.
        assert len(once) == 2 and once[1] - once[0] <= 1.5
        # The looping one is still being restarted, its pauses grown from 1 s with the
        # restarts of the last minute.
        gaps = [b - a for a, b in itertools.pairwise(looping)]
        assert len(looping) > 10 and gaps[0] <= 1.5 and gaps[-1] >= 4
