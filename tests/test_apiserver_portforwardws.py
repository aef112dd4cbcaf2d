"""The front end's port-forward bridge on its own, with a stand-in ASGI socket and a
stand-in kubelet session: once the session is over, the socket is closed and the client
read until it is gone (Hypercorn lets the TCP connection go only then), even when the
client was held back with input waiting."""

from __future__ import annotations

import math

import trio
import trio.testing

from actorkube.actor import Actor, ActorSystem, handler
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


async def test_the_client_is_read_until_it_is_gone_after_the_session_ends(
    autojump_clock, monkeypatch
):
    from actorkube.apiserver import _portforwardws

    monkeypatch.setattr(_portforwardws, "STALL_SECONDS", math.inf)
    sent: list[dict] = []
    read: list[str] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        await trio.lowlevel.checkpoint()
        if any(m["type"] == "websocket.close" for m in sent):
            read.append("disconnect")
            return {"type": "websocket.disconnect", "code": 1011}
        read.append("data")
        return {"type": "websocket.receive", "bytes": b"\x00" + bytes(64 * 1024)}

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
