"""The front end's port-forward bridge on its own, with a stand-in ASGI socket and a
stand-in kubelet session: once the session is over, the socket is closed and the client
read until it is gone (Hypercorn lets the TCP connection go only then), even when the
client was held back with input waiting; a connection whose pod reads nothing is
dropped, and with it the channel protocol's session when it was the last."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from actorkube.actor import Actor, ActorSystem, handler
from actorkube.apiserver import _portforwardws
from actorkube.apiserver._portforward import ForwardData, ForwardOpen, ForwardTaken
from actorkube.apiserver._portforwardws import _ChannelBridge, _Gone


class Deaf(Actor):
    """A kubelet session whose pod takes nothing: connections open, data never taken."""

    @handler
    async def on_open(self, msg: ForwardOpen) -> ForwardTaken:
        return ForwardTaken()

    @handler
    async def on_data(self, msg: ForwardData) -> None:
        self.defer_reply()  # never answered


class Socket:
    """A client that sends data on channel 0 for ever, until it is sent a close."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.read: list[str] = []

    async def send(self, message: dict) -> None:
        self.sent.append(message)

    async def receive(self) -> dict:
        await trio.lowlevel.checkpoint()
        if any(m["type"] == "websocket.close" for m in self.sent):
            self.read.append("disconnect")
            return {"type": "websocket.disconnect", "code": 1000}
        self.read.append("data")
        return {"type": "websocket.receive", "bytes": b"\x00" + bytes(64 * 1024)}


async def test_the_client_is_read_until_it_is_gone_after_the_session_ends(
    autojump_clock, monkeypatch
):
    monkeypatch.setattr(_portforwardws, "STALL_SECONDS", math.inf)
    socket = Socket()
    send, receive, sent, read = socket.send, socket.receive, socket.sent, socket.read
    async with ActorSystem(name="bridge") as system:
        session = system.spawn(Deaf, name="session")
        output_send, output = trio.open_memory_channel(16)
        bridge = _ChannelBridge(session, send, [7000])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.run, receive, output)
            await trio.testing.wait_all_tasks_blocked()
            held = len(read)
            assert read[-1] == "data"  # the reader waits: input is held back
            await output_send.send(_Gone("the kubelet's session went away"))
    assert sent[-1] == {"type": "websocket.close", "code": 1011}
    assert read[held:] == ["disconnect"]  # read again after the close, until gone


async def test_a_stalled_last_connection_ends_the_channel_session(autojump_clock, monkeypatch):
    monkeypatch.setattr(_portforwardws, "STALL_SECONDS", 30)
    socket = Socket()
    async with ActorSystem(name="bridge") as system:
        session = system.spawn(Deaf, name="session")
        _, output = trio.open_memory_channel(16)
        bridge = _ChannelBridge(session, socket.send, [7000])
        started = trio.current_time()
        with trio.fail_after(600):
            await bridge.run(socket.receive, output)
    assert trio.current_time() - started == pytest.approx(30, abs=1)
    assert socket.sent[-1] == {"type": "websocket.close", "code": 1000}
    assert socket.read[-1] == "disconnect"
