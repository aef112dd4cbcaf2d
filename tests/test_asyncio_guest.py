"""The actor system inside an asyncio application (trio guest mode)."""

from __future__ import annotations

import asyncio

import pytest
import trio

from actorkube.actor import Actor, HandlerFailed, asyncio_actor_system, handler, message


@message(tag="test.guest.Ping")
class Ping:
    n: int


@message(tag="test.guest.Boom")
class Boom:
    pass


class Echo(Actor):
    @handler
    async def ping(self, msg: Ping) -> int:
        await trio.sleep(0)  # a real trio checkpoint inside the handler
        return msg.n * 2

    @handler
    def boom(self, msg: Boom) -> None:
        raise ValueError("boom")


def test_an_asyncio_coroutine_asks_an_actor() -> None:
    async def app() -> list:
        async with asyncio_actor_system(name="guest") as guest:
            ref = await guest.spawn(Echo, name="echo")
            replies = [await guest.ask(ref, Ping(i)) for i in range(5)]
            # Many concurrent asks from asyncio tasks.
            replies += await asyncio.gather(*(guest.ask(ref, Ping(i)) for i in range(100)))
            return replies

    replies = asyncio.run(app())
    assert replies[:5] == [0, 2, 4, 6, 8]
    assert replies[5:] == [2 * i for i in range(100)]


def test_handler_errors_reach_asyncio_typed() -> None:
    async def app() -> None:
        async with asyncio_actor_system() as guest:
            ref = await guest.spawn(Echo)
            with pytest.raises(HandlerFailed, match="ValueError: boom"):
                await guest.ask(ref, Boom())
            assert await guest.ask(ref, Ping(1)) == 2

    asyncio.run(app())


def test_cancelling_on_the_asyncio_side_cancels_the_trio_call() -> None:
    async def app() -> None:
        loop = asyncio.get_running_loop()
        started, finished = loop.create_future(), loop.create_future()

        async def forever() -> None:
            loop.call_soon(started.set_result, None)
            try:
                await trio.sleep_forever()
            finally:
                loop.call_soon(finished.set_result, "cleaned up")

        async with asyncio_actor_system() as guest:
            task = asyncio.create_task(guest.call(forever))
            await started
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.wait_for(finished, 5.0) == "cleaned up"

    asyncio.run(app())
