"""The watch path without an API server: the receiver actor hands events to the stream
without yielding while there is room, and the stream hands out ready events without
yielding for each, yet stays a cancellation point and yields now and then."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorkube.actor import Actor, ActorSystem
from actorkube.apiserver import WatchEvent
from actorkube.client._client import STREAK, WatchStream, _Receiver


class Server(Actor):
    """Stands for the API server: the receiver watches it."""


def _events(n: int) -> list[WatchEvent]:
    return [WatchEvent(7, b'{"n": %d}' % i, "", i + 1) for i in range(n)]


async def _read_all(stream: WatchStream) -> list[bytes]:
    got = []
    while (data := await stream.next_json()) is not None:
        got.append(data)
    return got


class _Steps(trio.abc.Instrument):
    """Counts the steps the current task takes."""

    def __init__(self) -> None:
        self.task = trio.lowlevel.current_task()
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.count += 1


async def _read_all_counting_steps(stream: WatchStream) -> tuple[list[bytes], int]:
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        return await _read_all(stream), steps.count
    finally:
        trio.lowlevel.remove_instrument(steps)


@pytest.mark.parametrize("buffer", [1, 3, 1000])
async def test_the_receiver_keeps_order_and_waits_for_room(autojump_clock, buffer) -> None:
    events = _events(50)
    async with ActorSystem() as system:
        server = system.spawn(Server)
        send, receive = trio.open_memory_channel(buffer)
        receiver = system.spawn(lambda: _Receiver(send, server))
        for event in events:
            receiver.tell(event)
        receiver.tell(WatchEvent(7, b"", "done"))
        stream = WatchStream(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert await _read_all(stream) == [e.data for e in events]
        assert stream.ended == "done"
        # Room again after a full buffer: the receiver carries on.
        assert receiver._cell.instance.expected == 51


async def test_a_closed_stream_drops_events_without_failing_the_receiver(autojump_clock) -> None:
    async with ActorSystem() as system:
        server = system.spawn(Server)
        send, receive = trio.open_memory_channel(2)
        receiver = system.spawn(lambda: _Receiver(send, server))
        receive.close()
        for event in _events(5):
            receiver.tell(event)
        await trio.testing.wait_all_tasks_blocked()
        assert receiver._cell.failed == 0 and receiver._cell.instance.expected == 6


async def test_a_burst_is_read_with_a_yield_every_streak_events() -> None:
    n = 3 * STREAK + 5
    send, receive = trio.open_memory_channel(n + 1)
    for event in [*_events(n), WatchEvent(7, b"", "done")]:
        send.send_nowait(event)
    got, steps = await _read_all_counting_steps(WatchStream(receive))
    assert len(got) == n
    assert steps == 3  # once per STREAK events, not once per event


async def test_next_json_is_a_cancellation_point_even_with_events_ready() -> None:
    send, receive = trio.open_memory_channel(10)
    for event in _events(3):
        send.send_nowait(event)
    stream = WatchStream(receive)
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.next_json()
    assert scope.cancelled_caught
    assert await stream.next_json() == b'{"n": 0}'  # nothing was taken by the cancelled call


async def test_a_message_of_several_events_is_read_event_by_event() -> None:
    # A pump sends what its watcher has queued in one message (``more``); the stream
    # hands them out in order, one per call, each call a cancellation point, and they
    # count towards the streak like events that came one per message.
    n = 2 * STREAK + 3
    batch = [b'{"n": %d}' % i for i in range(n)]
    send, receive = trio.open_memory_channel(10)
    send.send_nowait(WatchEvent(7, batch[0], "", 1, tuple(batch[1:])))
    send.send_nowait(WatchEvent(7, b'{"n": "last"}', "", 2))
    send.send_nowait(WatchEvent(7, b"", "done", 3))
    stream = WatchStream(receive)
    assert await stream.next_json() == batch[0]
    with trio.CancelScope() as scope:
        scope.cancel()
        await stream.next_json()
    assert scope.cancelled_caught  # and took nothing
    got, steps = await _read_all_counting_steps(stream)
    assert got == [*batch[1:], b'{"n": "last"}']
    assert steps == 2  # once per STREAK events, not once per event
    assert stream.ended == "done"
