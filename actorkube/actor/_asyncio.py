"""Actors inside an asyncio application, through trio's guest mode.

``trio.lowlevel.start_guest_run`` runs a trio run on top of the asyncio event loop, on
the same thread. ``asyncio_actor_system`` starts an ``ActorSystem`` in such a guest run
and gives asyncio code a ``GuestSystem`` whose coroutines (``ask``, ``call``, ...) are
asyncio awaitables. Each call crosses into trio with ``TrioToken.run_sync_soon`` and
its result comes back through an asyncio future; cancelling the asyncio side cancels
the trio side of that call.

Rules:
- Actor code still runs in trio: handlers, hooks and timers see trio's world.
- Leaving the ``async with`` block shuts the system down gracefully and waits for the
  guest run to end; an error of the actor system (e.g. the root supervisor gave up) is
  raised there.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from ._actor import Actor
from ._ref import DEFAULT_TIMEOUT, ActorRef
from ._system import ActorSystem

T = TypeVar("T")


class GuestSystem:
    """An ``ActorSystem`` running as a trio guest, seen from asyncio."""

    def __init__(self, system: ActorSystem, token: trio.lowlevel.TrioToken, nursery) -> None:
        self.system = system
        self._token = token
        self._nursery = nursery

    async def call(self, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``async_fn(*args)`` in trio (inside the actor system's run) and return
        its result to asyncio. Cancelling this coroutine cancels the trio call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        scope = trio.CancelScope()

        async def run() -> None:
            try:
                with scope:
                    result = await outcome.acapture(async_fn, *args)
                    if isinstance(result, outcome.Error) and isinstance(
                        result.error, trio.Cancelled
                    ):
                        # trio's cancellation stays in trio (the system is closing);
                        # asyncio sees its call cancelled.
                        loop.call_soon(future.cancel)
                        result.unwrap()
                    loop.call_soon(_settle, future, result)
            finally:
                if scope.cancelled_caught:
                    loop.call_soon(future.cancel)

        self._token.run_sync_soon(self._nursery.start_soon, run)
        try:
            return await future
        except asyncio.CancelledError:
            self._token.run_sync_soon(scope.cancel)
            raise

    async def call_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run the plain function ``fn(*args)`` in trio's context (e.g. ``spawn``)."""

        async def wrapper() -> T:
            return fn(*args)

        return await self.call(wrapper)

    async def spawn(self, factory: Callable[[], Actor], **options: Any) -> ActorRef:
        """``ActorSystem.spawn`` from asyncio."""
        return await self.call_sync(lambda: self.system.spawn(factory, **options))

    async def ask(self, ref: ActorRef, msg: object, *, timeout: Any = DEFAULT_TIMEOUT) -> Any:
        """``ref.ask(msg)`` from asyncio."""
        return await self.call(lambda: ref.ask(msg, timeout=timeout))

    async def tell(self, ref: ActorRef, msg: object) -> None:
        """``ref.tell(msg)`` from asyncio (returns once the message is in the mailbox)."""
        await self.call_sync(ref.tell, msg)


def _settle(future: asyncio.Future, result: outcome.Outcome) -> None:
    if future.done():
        return
    if isinstance(result, outcome.Value):
        future.set_result(result.value)
    else:
        future.set_exception(result.error)


@contextlib.asynccontextmanager
async def asyncio_actor_system(**system_options: Any) -> AsyncIterator[GuestSystem]:
    """Start an ``ActorSystem(**system_options)`` as a trio guest of the running asyncio
    loop and yield a ``GuestSystem``; shut it down when the block ends."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future = loop.create_future()
    done: asyncio.Future = loop.create_future()
    stop = trio.Event()

    async def trio_main() -> None:
        async with ActorSystem(**system_options) as system, trio.open_nursery() as nursery:
            guest = GuestSystem(system, trio.lowlevel.current_trio_token(), nursery)
            loop.call_soon(_settle, ready, outcome.Value(guest))
            await stop.wait()
            nursery.cancel_scope.cancel()

    def finished(result: outcome.Outcome) -> None:
        _settle(done, result)
        if not ready.done():
            _settle(
                ready,
                result
                if isinstance(result, outcome.Error)
                else outcome.Error(RuntimeError("the actor system ended before it started")),
            )

    trio.lowlevel.start_guest_run(
        trio_main,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        done_callback=finished,
    )
    guest = await ready
    try:
        yield guest
    finally:
        guest._token.run_sync_soon(stop.set)
        await asyncio.shield(done)
