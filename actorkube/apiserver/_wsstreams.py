"""What the HTTP front end's streams to and from kubelets share (exec: ``_execws``;
port-forward: ``_portforwardws``): starting a kubelet's session that streams to a
receiver of the front end's, the backlog that holds a client's input on its way, and
refusing a WebSocket with an HTTP answer.

Rules of this file:

- ``kubelet_session`` asks the API server (the request as ``create``, with the
  receiver as its watcher) to start the session; the receiver is a granted actor (the
  kubelet may be a guest of the API server's transport) and is stopped on the way out,
  which the session sees.
- A ``Backlog`` keeps input in order with its end (None) as a boundary, at most
  ``limit`` bytes: a filler then waits (and TCP holds its client back), or gives up
  after its ``patience`` (``Stalled``); a taker gets what waits joined up to ``CHUNK``
  bytes, so one message carries many small ones and none more than a frame may hold.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from actorkube.actor import Actor, ActorRef
from actorkube.client import ApiClient

from ._messages import ApiRequest, ApiResponse

OUTPUT_BUFFER = 16  # messages from a session held for a client that reads slowly
CHUNK = 256 * 1024  # bytes of input handed to a kubelet's session in one message at most
PROTOCOL_ERROR = 1007  # WebSocket close code: a message that breaks the protocol


class Receiver(Actor):
    """Where a kubelet's session streams to: hands its messages to the front end's task
    (``hand_over``), which reads them from ``send``'s other end. A subclass says what
    it takes."""

    def __init__(self, send: trio.MemorySendChannel) -> None:
        self.send = send

    async def hand_over(self, msg: object) -> None:
        # (a closed stream: the front end is done with this session)
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.send.send(msg)


@asynccontextmanager
async def kubelet_session(
    client: ApiClient, req: ApiRequest, receiver: type[Receiver], label: str
) -> AsyncIterator[tuple[ApiResponse, trio.MemoryReceiveChannel]]:
    """Asks the API server (``req`` as ``create``) to start the kubelet's session that
    streams to a ``receiver`` of its own: the answer, and what the receiver hands over;
    the receiver is stopped on the way out (the session sees it go)."""
    system = client.system
    out_send, out_receive = trio.open_memory_channel(OUTPUT_BUFFER)
    # granted: the kubelet, a guest of the API server's transport, streams to it
    ref = system.spawn(lambda: receiver(out_send), name=system.granted_name(label))
    try:
        answer = await client.send(attrs.evolve(req, verb="create", watcher=ref, watch_id=1))
        yield answer, out_receive
    finally:
        out_receive.close()
        await system.stop(ref)


class Backlog:
    """A client's input (and its end), in order, on its way to a kubelet's session: at
    most ``limit`` bytes wait here (then the reader waits, and TCP holds the client
    back). Once ``close``d, nothing will take it: what is put is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: deque[bytes | memoryview | None] = deque()  # None: the end of it
        self.size = 0
        self.closed = False
        self._changed = trio.Event()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def close(self) -> None:
        self.closed = True
        self._wake()

    async def put(self, item: bytes | None, patience: float = math.inf) -> None:
        """Queues ``item`` once there is room. Raises ``Stalled`` if nothing was taken
        for ``patience`` seconds meanwhile."""
        while self.size >= self.limit and not self.closed:
            with trio.move_on_after(patience) as waited:
                await self._changed.wait()
            if waited.cancelled_caught:
                raise Stalled(f"nothing was taken for {patience:g} s")
        if self.closed:
            return
        self.items.append(item)
        self.size += len(item or b"")
        self._wake()

    async def get(self, most: int = CHUNK) -> bytes | None:
        """What waits next, in order: the bytes at the front joined, up to ``most`` (so
        that one ask carries many of the client's small messages, and none carries
        more than a frame may hold), or None for the end."""
        while not self.items:
            await self._changed.wait()
        if self.items[0] is None:
            self.items.popleft()
            self._wake()
            return None
        parts: list[bytes | memoryview] = []
        taken = 0
        while self.items and self.items[0] is not None and taken < most:
            item = self.items.popleft()
            if taken + len(item) > most:  # the rest stays at the front, not copied
                rest = memoryview(item)
                self.items.appendleft(rest[most - taken :])
                item = rest[: most - taken]
            parts.append(item)
            taken += len(item)
        self.size -= taken
        self._wake()
        return bytes(parts[0]) if len(parts) == 1 else b"".join(parts)


    async def deliver(self, session: ActorRef, chunk: Callable[[bytes], object],
                      end: object) -> None:  # fmt: skip
        """Asks ``session`` to take what waits, in order, each once it took the last:
        ``chunk(data)`` for bytes, ``end`` for the end (then returns; asked too, so it
        cannot be lost). Raises ``ActorError`` if the session cannot take it."""
        while True:
            data = await self.get()
            if data is None:
                await session.ask(end, timeout=None)
                return
            await session.ask(chunk(data), timeout=None)


class Stalled(Exception):
    """A backlog's taker took nothing for as long as its filler would wait."""


async def refuse_websocket(scope: dict, send, code: int, status: object) -> None:
    """The upgrade refused with an HTTP answer (``status`` as its JSON), where the
    server can give one (ASGI's WebSocket denial response), else a bare 403."""
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    data = json.dumps(status, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(data)).encode())]  # fmt: skip
    await send({"type": "websocket.http.response.start", "status": code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": data})
