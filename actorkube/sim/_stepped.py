"""``SteppedSimulation``: a simulation driven one step at a time from synchronous code,
so that a Hypothesis ``RuleBasedStateMachine`` can partition, crash and heal a cluster
rule by rule and look at it between rules.

Rules of this file:

- The trio run lives in a worker thread, on a ``MockClock`` inside a ``SimNetwork``
  (so scheduling is seeded as in ``simulate``). The calling thread blocks while a step
  runs; only one thread does anything at a time.
- Virtual time passes only inside a step: between steps the clock's autojump is off
  (threshold infinite) and its rate is 0, so the run settles at the same instant and
  waits. A step therefore starts from a state that depends on the seed and the steps
  before it, never on how long the caller took.
- A failure in a background task (or a host) ends the run; the next ``run`` or
  ``close`` raises it, with the network's seed note.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from ._errors import ScenarioError
from ._faults import PERFECT, Faults
from ._network import DEFAULT_EPOCH, SimNetwork

Step = Callable[..., Awaitable[Any]]


class SteppedSimulation:
    """A ``SimNetwork(seed)`` in a trio run of its own, driven by ``run`` calls.

    ``run(fn, *args)`` runs ``await fn(net, *args)`` in the simulation and returns its
    result (or raises its exception); virtual time passes only while it runs.
    ``start_soon(fn, *args)`` starts ``fn(net, *args)`` as a background task that lives
    until ``close`` (it runs, like everything else, only during steps). ``close()``
    cancels everything, ends the run and joins the thread; it re-raises a failure of a
    background task. Use it as a context manager or call ``close`` in a ``teardown``.
    """

    def __init__(self, seed: int, *, faults: Faults = PERFECT, epoch: float = DEFAULT_EPOCH):
        self.seed = seed
        self._clock = trio.testing.MockClock(autojump_threshold=math.inf)
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._net: SimNetwork | None = None
        self._nursery: trio.Nursery | None = None
        self._done: trio.Event | None = None
        self._failure: BaseException | None = None
        self._closed = False
        replay = f"SteppedSimulation(seed={seed}) with the same steps"
        self._thread = threading.Thread(
            target=self._main, args=(faults, epoch, replay), name=f"sim {seed}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        self._raise_failure()

    # --- the caller's side ---------------------------------------------------------------

    def run(self, fn: Step, *args: Any) -> Any:
        """Run ``await fn(net, *args)`` inside the simulation, time flowing, and return
        what it returns. Raises ``ScenarioError`` once the simulation is closed."""
        self._check_open()
        try:
            return trio.from_thread.run(self._step, fn, args, trio_token=self._token)
        except (trio.RunFinishedError, trio.Cancelled):
            # The run ended (or is ending) under the step: a background task failed.
            self._closed = True
            self._thread.join()
            self._raise_failure()
            raise ScenarioError("the simulation's run has ended") from None

    def start_soon(self, fn: Step, *args: Any) -> Background:
        """Start ``fn(net, *args)`` in the background; it runs during later steps until
        it returns, ``close``, or the returned handle's ``cancel()``."""
        task = Background(self)

        async def start(net: SimNetwork) -> None:
            self._nursery.start_soon(task._run, fn, net, args)

        self.run(start)
        return task

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass."""
        self.run(_sleep, seconds)

    def close(self) -> None:
        """Cancel the background tasks and the hosts, end the run, join the thread;
        raise a background failure if there was one. Closing twice does nothing."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._finish, trio_token=self._token)
        self._thread.join()
        self._raise_failure()

    def __enter__(self) -> SteppedSimulation:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ScenarioError("the simulation is closed")

    def _raise_failure(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    # --- the run's side ------------------------------------------------------------------

    def _finish(self) -> None:
        # Time flows again while everything unwinds: a host whose shutdown waits on a
        # timer (a graceful stop, a bounded drain) would otherwise wait forever.
        self._clock.autojump_threshold = 0
        self._done.set()

    def _main(self, faults: Faults, epoch: float, replay: str) -> None:
        try:
            trio.run(self._serve, faults, epoch, replay, clock=self._clock)
        except BaseException as failure:
            self._failure = failure
        finally:
            self._ready.set()  # if the run failed before it was ready

    async def _serve(self, faults: Faults, epoch: float, replay: str) -> None:
        self._done = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        async with SimNetwork(self.seed, faults=faults, epoch=epoch, replay=replay) as net:
            self._net = net
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._ready.set()
                await self._done.wait()
                nursery.cancel_scope.cancel()

    async def _step(self, fn: Step, args: tuple) -> Any:
        self._clock.autojump_threshold = 0
        try:
            return await fn(self._net, *args)
        finally:
            # Settle at this instant: what became runnable runs, but no timer fires.
            self._clock.autojump_threshold = math.inf
            await trio.testing.wait_all_tasks_blocked()


class Background:
    """A task started by ``SteppedSimulation.start_soon``."""

    def __init__(self, sim: SteppedSimulation) -> None:
        self._sim = sim
        self._scope = trio.CancelScope()
        self.done = False

    def cancel(self) -> None:
        """Cancel the task (a step: what it was doing unwinds now)."""
        self._sim.run(_cancel, self._scope)

    async def _run(self, fn: Step, net: SimNetwork, args: tuple) -> None:
        with self._scope:
            await fn(net, *args)
        self.done = True


async def _cancel(_net: SimNetwork, scope: trio.CancelScope) -> None:
    scope.cancel()


async def _sleep(_net: SimNetwork, seconds: float) -> None:
    await trio.sleep(seconds)
