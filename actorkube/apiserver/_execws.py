"""``pods/exec`` over a WebSocket, in the HTTP front end: the client's socket on one
side, the kubelet's exec session on the other (see ``_remotecommand`` for the protocol
and the messages).

Rules of this file:

- The upgrade is answered only after the API server has checked the request
  (authentication, RBAC's ``create`` on ``pods/exec``, the pod, its container, its
  node); a refusal is an HTTP error with its ``Status``, as any request's. A client
  that offers no subprotocol we speak is refused with 400.
- Once upgraded: an empty message on the first output channel says the session is
  open (as the kubelet's server does); output goes out in order as it comes, each
  chunk taken from the session (which asks) only when ``OUTPUT_BUFFER`` has room, so a
  slow client holds the command back; the end is a ``Status`` on the error channel and
  a normal close. If the kubelet would not run the command, or its session goes away
  (its process or its host), the Status says why.
- The client's stdin (and v5's end of it) is handed to the session in order, each
  chunk when the session has room (``ExecInput`` is asked); up to ``INPUT_BACKLOG``
  bytes wait here meanwhile, beyond which the client is no longer read and TCP holds
  it back. Until then a resize, a message that breaks the protocol (the socket closes
  with 1007 and the command is killed) or the client's departure (the command is
  killed) is acted on at once; past it, only once the command reads its input or ends
  (Hypercorn tells of a closed connection only through the messages read, as
  Kubernetes' streams wait on a blocked stdin too). Stdin sent to a command started
  without it is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from actorkube.actor import Actor, ActorError, Terminated, handler
from actorkube.client import ApiClient

from ._messages import ApiRequest, ApiResponse
from ._remotecommand import (
    ERROR,
    STDERR,
    STDIN,
    STDOUT,
    ExecCancel,
    ExecEnded,
    ExecInput,
    ExecInputClosed,
    ExecOpened,
    ExecOutput,
    ExecResize,
    choose_protocol,
    ended_status,
    frame,
    parse_frame,
    streams,
)

log = logging.getLogger("actorkube.apiserver.http")

OUTPUT_BUFFER = 16  # messages of output held for a client that reads slowly
INPUT_BACKLOG = 1024 * 1024  # bytes of a client's stdin held while its command is slow
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


class _Receiver(Receiver):
    """An exec's: a session that goes away without its ``ExecEnded`` (its kubelet's
    process died, its host is cut off) ends the stream with an error."""

    def __init__(self, send: trio.MemorySendChannel) -> None:
        super().__init__(send)
        self.ended = False

    @handler
    async def on_opened(self, msg: ExecOpened) -> None:
        self.watch(msg.input)
        await self.hand_over(msg)

    @handler
    async def on_output(self, msg: ExecOutput) -> None:
        await self.hand_over(msg)

    @handler
    async def on_ended(self, msg: ExecEnded) -> None:
        self.ended = True
        await self.hand_over(msg)

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        if not self.ended:
            self.ended = True
            why = f"the kubelet's exec session went away ({msg.reason})"
            await self.hand_over(ExecEnded(0, error=why))


async def serve_exec(client: ApiClient, req: ApiRequest, scope: dict, receive, send) -> None:
    """Serves one exec WebSocket (see the module rules); ``req`` is the checked-out
    request, credentials included."""
    if (await receive())["type"] != "websocket.connect":
        return
    protocol = choose_protocol(scope.get("subprotocols") or [])
    if protocol is None:
        offered = " ".join(scope.get("subprotocols") or [])
        await refuse_websocket(scope, send, 400, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "unable to upgrade: no supported subprotocol: offered "
                       f"[{offered}], supported [v5.channel.k8s.io v4.channel.k8s.io]",
            "reason": "BadRequest", "code": 400})  # fmt: skip
        return
    async with kubelet_session(client, req, _Receiver, "exec") as (answer, output):
        if not 200 <= answer.code < 300:
            await refuse_websocket(scope, send, answer.code, answer.body)
            return
        await send({"type": "websocket.accept", "subprotocol": protocol})
        status = answer.body
        if not isinstance(status, dict) or status.get("status") != "Success":
            await _finish(send, status)
            return
        await _bridge(req, protocol, receive, send, output)


async def _bridge(req: ApiRequest, protocol: str, receive, send,
                  output: trio.MemoryReceiveChannel) -> None:  # fmt: skip
    params = req.params or {}
    command = params.get("command") or []
    opened = await output.receive()
    if isinstance(opened, ExecEnded):  # the session went away before it said anything
        await _finish(send, ended_status(command, opened))
        return
    assert isinstance(opened, ExecOpened)
    stdin, stdout, stderr, tty = streams(params)  # (as the handler read them)
    first = STDOUT if stdout or tty else (STDERR if stderr else ERROR)
    await send({"type": "websocket.send", "bytes": frame(first)})
    ended: ExecEnded | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_from_client, receive, send, opened, protocol,
                           stdin, nursery.cancel_scope)  # fmt: skip
        async for msg in output:
            if isinstance(msg, ExecOutput):
                await send({"type": "websocket.send", "bytes": frame(msg.channel, msg.data)})
            elif isinstance(msg, ExecEnded):
                ended = msg
                nursery.cancel_scope.cancel()
                break
    if ended is not None:  # (else the client went away or broke the protocol)
        await _finish(send, ended_status(command, ended))


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


class Stalled(Exception):
    """A backlog's taker took nothing for as long as its filler would wait."""


async def _from_client(receive, send, opened: ExecOpened, protocol: str, stdin: bool,
                       done: trio.CancelScope) -> None:  # fmt: skip
    """Reads the client: its input goes to the session through a backlog, so that the
    reading goes on while the command is slow to take it (a resize, a protocol error or
    the client's departure is acted on at once) until ``INPUT_BACKLOG`` bytes wait."""
    session = opened.input
    backlog = Backlog(INPUT_BACKLOG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_to_session, session, backlog, done)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                session.tell(ExecCancel())
                done.cancel()
                return
            data = message.get("bytes")
            if data is None:  # a text message: the channel protocols are binary only
                data = (message.get("text") or "").encode()
            kind, value = parse_frame(data, protocol)
            if kind == "stdin" and stdin:
                await backlog.put(value)
            elif kind == "close" and value == STDIN and stdin:
                await backlog.put(None)
            elif kind == "resize":
                session.tell(ExecResize(*value))
            elif kind == "error":
                log.warning("exec: closing a client's WebSocket: %s", value)
                session.tell(ExecCancel())
                await send({"type": "websocket.close", "code": PROTOCOL_ERROR})
                done.cancel()
                return


async def _to_session(session, backlog: Backlog, done: trio.CancelScope) -> None:
    """Hands the backlog to the session in order, each chunk once it has room (the end
    of stdin too: asked, so it cannot be lost). A session that cannot take it (gone, or
    its mailbox full) ends the exec: the command is killed rather than left waiting for
    input that will never come."""
    while True:
        data = await backlog.get()
        try:
            await session.ask(ExecInput(data) if data is not None else ExecInputClosed(),
                              timeout=None)  # fmt: skip
        except ActorError as e:
            log.warning("exec: the session did not take the client's input: %s", e)
            session.tell(ExecCancel())
            done.cancel()
            return


async def _finish(send, status: object) -> None:
    data = json.dumps(status, separators=(",", ":")).encode()
    await send({"type": "websocket.send", "bytes": frame(ERROR, data)})
    await send({"type": "websocket.close", "code": 1000})


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
