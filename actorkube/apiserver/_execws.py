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
  chunk taken from the session (which asks) only when ``_wsstreams.OUTPUT_BUFFER`` has
  room, so a slow client holds the command back; the end is a ``Status`` on the error
  channel and a normal close. If the kubelet would not run the command, or its session goes away
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

import json
import logging

import trio

from actorkube.actor import ActorError, Terminated, handler
from actorkube.client import ApiClient

from ._messages import ApiRequest
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
from ._wsstreams import PROTOCOL_ERROR, Backlog, Receiver, kubelet_session, refuse_websocket

log = logging.getLogger("actorkube.apiserver.http")

INPUT_BACKLOG = 1024 * 1024  # bytes of a client's stdin held while its command is slow


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
    try:
        await backlog.deliver(session, ExecInput, ExecInputClosed())
    except ActorError as e:
        log.warning("exec: the session did not take the client's input: %s", e)
        session.tell(ExecCancel())
        done.cancel()


async def _finish(send, status: object) -> None:
    data = json.dumps(status, separators=(",", ":")).encode()
    await send({"type": "websocket.send", "bytes": frame(ERROR, data)})
    await send({"type": "websocket.close", "code": 1000})
