"""The simulated network: hosts (one ``ActorSystem`` each) joined by faulty links.

Rules of this file:

- Every host lives in the network's nursery, all in one trio run. Every choice the
  network makes (loss, duplication, delay, hold-back, incarnations) is drawn from one
  ``random.Random(seed)``, in the order frames are sent; frames are sent in the order
  trio runs tasks, which ``seeded_scheduling`` makes a function of the same seed.
- A frame handed to the network gets an id (its send number) and becomes zero, one or
  two *copies* (``plan_copies``) in a heap keyed by (delivery time, sequence number).
  One task sleeps on trio's clock until the earliest copy is due and delivers every
  due copy in heap order by calling the destination's ``_on_frame``.
- A copy is checked again when it is due: if the link is cut by then, or either end
  crashed or restarted since the send (the host's *generation* changed), it is dropped.
- A frame to a host that is down or unknown is refused at once (``send_frame`` returns
  False, as a refused connection would tell a TCP transport); a frame over a cut link
  is accepted and lost, as in a real partition where the sender learns nothing.
- Frames between actors of one host never reach the network: the ``ActorSystem``
  delivers them in-process, without faults.
- A crash is instantaneous: the host is marked down (its generation changes, so its
  frames in flight, to or from it, are lost), every other live system is told
  ``_peer_down`` as a reset connection would tell it, and the host's system is
  cancelled where it stands (no ``stopping`` hooks). A restart builds a new
  ``ActorSystem`` under the same name with a new incarnation and runs ``boot`` again.
- Leaving the network cancels every host at once (the end of the world is a power cut
  for everybody); no events are recorded for it.
- Nothing here iterates a set or orders by ``id()``; hosts are kept in the order they
  were added.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio

from actorkube.actor import ActorSystem, WallClock
from actorkube.actor._groups import single_error

from . import _trace as T
from ._errors import ScenarioError
from ._faults import PERFECT, Faults, Links, plan_copies
from ._scheduling import seeded_scheduling
from ._trace import Trace, TraceEvent

DEFAULT_EPOCH = 1_700_000_000.0  # 2023-11-14T22:13:20Z: where wall clocks start

Boot = Callable[[ActorSystem], Awaitable[None] | None]


@attrs.define(eq=False)
class _Host:
    """One simulated machine. ``system`` is None while it is down; ``generation``
    changes at every crash, which invalidates every copy in flight to or from it."""

    name: str
    boot: Boot
    options: dict[str, Any]
    generation: int = 0
    system: ActorSystem | None = None
    scope: trio.CancelScope | None = None
    gone: trio.Event | None = None


@attrs.frozen
class _InFlight:
    src: str
    src_generation: int
    dst: str
    dst_generation: int
    frame_id: int
    payload: bytes


class _SimTransport:
    """The transport of one incarnation of a host: it hands frames to the network."""

    def __init__(self, net: SimNetwork, system: ActorSystem, generation: int) -> None:
        self._net = net
        self._system = system
        self._generation = generation

    def send_frame(self, system: str, payload: bytes, control: bool = False) -> bool:
        # The simulated links have no bound, so control frames need no headroom.
        return self._net._send(self._system.name, self._generation, system, payload)

    async def send_frame_wait(self, system: str, payload: bytes) -> bool:
        # The simulated links have no buffers to fill, so this never waits.
        return self.send_frame(system, payload)

    async def aclose(self) -> None:
        """Nothing to close: the network outlives its hosts."""


class SimNetwork:
    """A deterministic network of simulated hosts (see the module rules).

    Use it as ``async with SimNetwork(seed) as net:`` inside a trio run whose clock is
    ``trio.testing.MockClock(autojump_threshold=0)``, or let ``simulate`` build the run.
    ``faults`` is the default for every link; ``epoch`` is the wall-clock time
    (``system.clock.now()``) at which the network starts; ``replay`` is the call named
    in the note added to an exception that leaves the block (``simulate`` passes its
    own).

    Entering it seeds trio's scheduler (``seeded_scheduling``) until it exits; leaving
    it cancels every host. Its trace is exactly ``simulate``'s for the same seed when
    it is entered first thing in a quiet run on a fresh ``MockClock``.
    """

    def __init__(
        self,
        seed: int,
        *,
        faults: Faults = PERFECT,
        epoch: float = DEFAULT_EPOCH,
        replay: str | None = None,
    ) -> None:
        self.seed = seed
        self._replay = replay or f"SimNetwork(seed={seed})"
        self._rng = random.Random(seed)
        self._links = Links(default=faults)
        self._clock = WallClock(epoch=epoch)
        self._hosts: dict[str, _Host] = {}
        self._heap: list[tuple[float, int, _InFlight]] = []
        self._seq = itertools.count()
        self._frame_ids = itertools.count(1)
        self._events: list[TraceEvent] = []
        self._sleep: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        self._t0 = 0.0

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> SimNetwork:
        if self._stack is not None:
            raise ScenarioError("a SimNetwork can be entered once")
        self._stack = AsyncExitStack()
        self._stack.enter_context(seeded_scheduling(self.seed))
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._t0 = trio.current_time()
        self._clock.now()  # pin the wall clock's epoch to this instant
        self._nursery.start_soon(self._deliver_loop, name="sim network")
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._nursery.cancel_scope.cancel()
        try:
            with single_error():  # the scenario's own error, or a host's, as raised
                return await self._stack.__aexit__(exc_type, exc, tb)
        except Exception as failure:
            failure.add_note(
                f"simulated network seed: {self.seed} (replay this run with {self._replay})"
            )
            raise

    # --- hosts -------------------------------------------------------------------------

    @property
    def hosts(self) -> tuple[str, ...]:
        """The names of every host ever added, up or down, in the order added."""
        return tuple(self._hosts)

    def is_up(self, name: str) -> bool:
        return self._host(name).system is not None

    def system(self, name: str) -> ActorSystem:
        """The running ``ActorSystem`` of host ``name``. Raises ``ScenarioError`` if the
        host is unknown or down."""
        system = self._host(name).system
        if system is None:
            raise ScenarioError(f"host {name!r} is down")
        return system

    async def add_host(self, name: str, boot: Boot, **options: Any) -> ActorSystem:
        """Start a host: a new ``ActorSystem(name)`` on the network, then ``boot(system)``
        (a function or a coroutine function) to spawn its actors. ``options`` go to
        ``ActorSystem`` (``supervision``, ``ask_timeout``) at every (re)start."""
        if name in self._hosts:
            raise ScenarioError(f"host {name!r} exists already")
        if self._nursery is None:
            raise ScenarioError("the network is not running (use `async with`)")
        host = _Host(name, boot, options)
        self._hosts[name] = host
        return await self._start(host, T.BOOT)

    async def crash(self, name: str) -> None:
        """Crash host ``name`` now (see the module rules); returns once its system is
        torn down. Raises ``ScenarioError`` if it is down already."""
        host = self._host(name)
        if host.system is None:
            raise ScenarioError(f"host {name!r} is down already")
        self._record(T.CRASH, name)
        host.system = None
        host.generation += 1
        for other in self._hosts.values():
            if other.system is not None:
                other.system._peer_down(name)
        host.scope.cancel()
        await host.gone.wait()

    async def restart(self, name: str) -> ActorSystem:
        """Bring a crashed host back: a new system with the same name and a new
        incarnation, booted by the same ``boot``. Raises ``ScenarioError`` if it is up."""
        host = self._host(name)
        if host.system is not None:
            raise ScenarioError(f"host {name!r} is up; crash it first")
        return await self._start(host, T.RESTART)

    def _host(self, name: str) -> _Host:
        host = self._hosts.get(name)
        if host is None:
            raise ScenarioError(f"no host named {name!r}")
        return host

    async def _start(self, host: _Host, kind: str) -> ActorSystem:
        incarnation = self._rng.randbytes(8)
        system = ActorSystem(host.name, incarnation=incarnation, clock=self._clock, **host.options)
        system.transport = _SimTransport(self, system, host.generation)
        booted = trio.Event()
        await self._nursery.start(self._run_host, host, system, booted, name=f"host {host.name}")
        self._record(kind, host.name, detail=incarnation.hex())
        await booted.wait()
        return system

    async def _run_host(
        self, host: _Host, system: ActorSystem, booted: trio.Event, *, task_status
    ) -> None:
        """The host's task: its system, and ``boot`` inside it, so that a crash during
        an async boot cancels the boot too."""
        gone = trio.Event()
        try:
            with trio.CancelScope() as scope:
                async with system:
                    host.scope, host.gone, host.system = scope, gone, system
                    task_status.started()
                    try:
                        result = host.boot(system)
                        if inspect.isawaitable(result):
                            await result
                    finally:
                        booted.set()
                    await trio.sleep_forever()
        finally:
            gone.set()
            booted.set()

    # --- links -------------------------------------------------------------------------

    def set_faults(self, faults: Faults) -> None:
        """Make ``faults`` the default of every link without an override."""
        self._links.default = faults
        self._record(T.FAULTS, "*", "*", detail=repr(faults))

    def set_link_faults(self, src: str, dst: str, faults: Faults | None) -> None:
        """Override the faults of the directed link ``src -> dst`` (None: use the
        default again)."""
        self._host(src)
        self._host(dst)
        if faults is None:
            self._links.overrides.pop((src, dst), None)
        else:
            self._links.overrides[(src, dst)] = faults
        self._record(T.FAULTS, src, dst, detail=repr(faults))

    def partition(self, group_a: Iterable[str], group_b: Iterable[str]) -> None:
        """Cut every link between a host of ``group_a`` and one of ``group_b``, both
        ways. Copies in flight on those links are lost when they fall due."""
        a, b = sorted(group_a), sorted(group_b)  # sets must not make the trace vary
        for name in a + b:
            self._host(name)
        for x in a:
            for y in b:
                self._links.cut[(x, y)] = None
                self._links.cut[(y, x)] = None
        self._record(T.PARTITION, ",".join(a), ",".join(b))

    def isolate(self, name: str) -> None:
        """Partition host ``name`` from every other host."""
        self.partition([name], [h for h in self._hosts if h != name])

    def block(self, src: str, dst: str) -> None:
        """Cut the link ``src -> dst`` only; ``dst -> src`` keeps working."""
        self._host(src)
        self._host(dst)
        self._links.cut[(src, dst)] = None
        self._record(T.BLOCK, src, dst)

    def heal(self) -> None:
        """Restore every cut link (partitions and blocks)."""
        self._links.cut.clear()
        self._record(T.HEAL, "*", "*")

    # --- the trace ---------------------------------------------------------------------

    def now(self) -> float:
        """Seconds of virtual time since the network started."""
        return trio.current_time() - self._t0

    def trace(self) -> Trace:
        """The events so far."""
        return Trace(tuple(self._events))

    def _record(
        self,
        kind: str,
        src: str,
        dst: str = "",
        frame_id: int = 0,
        frame: bytes = b"",
        detail: str | float | None = None,
    ) -> None:
        self._events.append(TraceEvent(self.now(), kind, src, dst, frame_id, frame, detail))

    # --- frames ------------------------------------------------------------------------

    def _send(self, src: str, generation: int, dst: str, payload: bytes) -> bool:
        """Route one frame (see the module rules); False if it cannot be routed now."""
        frame_id = next(self._frame_ids)
        self._record(T.SEND, src, dst, frame_id, payload)
        source, target = self._hosts[src], self._hosts.get(dst)
        if target is None:
            self._record(T.DROP, src, dst, frame_id, payload, T.NO_SUCH_HOST)
            return False
        if source.generation != generation or target.system is None:
            self._record(T.DROP, src, dst, frame_id, payload, T.HOST_DOWN)
            return False
        if self._links.is_cut(src, dst):
            self._record(T.DROP, src, dst, frame_id, payload, T.PARTITIONED)
            return True
        copies = plan_copies(self._links.faults_for(src, dst), self._rng)
        if len(copies) > 1:
            self._record(T.DUPLICATE, src, dst, frame_id, payload)
        now = trio.current_time()
        for copy in copies:
            if copy.delay is None:
                self._record(T.DROP, src, dst, frame_id, payload, T.RANDOM)
                continue
            if copy.held:
                self._record(T.REORDER, src, dst, frame_id, payload, copy.delay)
            elif copy.delay > 0:
                self._record(T.DELAY, src, dst, frame_id, payload, copy.delay)
            flight = _InFlight(src, generation, dst, target.generation, frame_id, payload)
            self._schedule(now + copy.delay, flight)
        return True

    def _schedule(self, due: float, flight: _InFlight) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), flight))
        if self._sleep is not None and due < self._sleep.deadline:
            self._sleep.deadline = due

    async def _deliver_loop(self) -> None:
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, flight = heapq.heappop(heap)
                self._deliver(flight)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None

    def _deliver(self, f: _InFlight) -> None:
        source, target = self._hosts[f.src], self._hosts[f.dst]
        if source.generation != f.src_generation or target.generation != f.dst_generation:
            self._record(T.DROP, f.src, f.dst, f.frame_id, f.payload, T.HOST_DOWN)
        elif self._links.is_cut(f.src, f.dst):
            self._record(T.DROP, f.src, f.dst, f.frame_id, f.payload, T.PARTITIONED)
        else:
            self._record(T.DELIVER, f.src, f.dst, f.frame_id, f.payload)
            target.system._on_frame(f.src, f.payload)
