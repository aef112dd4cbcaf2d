"""``pods/portforward`` over a WebSocket, in the HTTP front end: ``kubectl
port-forward``'s SPDY session (``_spdy``), or the channel protocol of the official
Python client, on one side, the kubelet's port-forward session (``_portforward``) on
the other.

Rules of this file:

- The upgrade is answered only after the API server has checked the request
  (authentication, RBAC's ``create`` on ``pods/portforward``, the pod, its node) and the
  kubelet has started a session for the pod; a refusal is an HTTP error with its
  ``Status``. A client that offers neither ``SPDY/3.1+portforward.k8s.io`` nor
  ``v4.channel.k8s.io`` (with a ``ports`` parameter) is refused with 400. The channel
  protocol is described at ``_ChannelBridge``; the rules below are SPDY's.
- Each local connection of kubectl is a pair of SPDY streams with the same
  ``requestid`` header: ``streamtype`` ``error`` and ``data``, both naming the
  ``port``. Every stream the client opens is answered (SYN_REPLY), as kubectl waits for
  it; once both of a pair are open, the kubelet is asked to connect. What arrives on
  the data stream is handed to the kubelet in order by the connection's own task
  (what waits joined, up to ``_wsstreams.CHUNK`` bytes a message), each once the last was
  written to the pod; up to ``INPUT_BACKLOG`` bytes wait for a slow connection, beyond
  which the client is no longer read (SPDY's flow control is not used: kubectl's
  library ignores it) and TCP holds it back; a pod that takes none of it for
  ``STALL_SECONDS`` loses the connection (closed as if by the pod; the reason is
  logged), and the client is read again. Its FIN is
  the client's end of the connection (data after it is dropped), a RST_STREAM drops it
  at once; a RST_STREAM for a stream no longer known is ignored.
- What the pod sends goes out on the data stream. When the connection ends, an error
  (a failed dial, a broken connection) is written on the error stream, which kubectl
  prints, and both streams are closed (FIN).
- PINGs are answered; a GOAWAY, a frame that breaks SPDY (the socket closes with
  1007), or the client's departure ends the session and every connection in it, as
  does the kubelet's session going away (1011). Once over, the socket is closed and the
  client read until it is gone (``CLOSE_WAIT`` seconds at most): Hypercorn lets the TCP
  connection go only then.
"""

from __future__ import annotations

import abc
import logging
from functools import partial

import attrs
import trio

from actorkube.actor import ActorError, ActorRef, Terminated, handler
from actorkube.client import ApiClient

from ._messages import ApiRequest
from ._portforward import (
    SUBPROTOCOL,
    V4,
    ForwardClose,
    ForwardData,
    ForwardEnded,
    ForwardOpen,
    ForwardOutput,
    ForwardReset,
    ForwardSession,
)
from ._spdy import (
    GOAWAY,
    PING,
    RST_STREAM,
    SYN_STREAM,
    Control,
    Data,
    SpdyError,
    SpdyReader,
    SpdyWriter,
)
from ._spdy import (
    PROTOCOL_ERROR as SPDY_PROTOCOL_ERROR,
)
from ._wsstreams import (
    PROTOCOL_ERROR,
    Backlog,
    Receiver,
    Stalled,
    kubelet_session,
    refuse_websocket,
)

log = logging.getLogger("actorkube.apiserver.http")

STALL_SECONDS = 30.0  # a pod may take none of a full backlog for this long
CLOSE_WAIT = 5.0  # seconds the client is read after the close, until it is gone
MAX_PORTS = 128  # the channel protocol: two channels a port, in one byte
INPUT_BACKLOG = 1024 * 1024  # bytes of a connection's input held while its pod is slow


@attrs.frozen
class _Gone:
    why: str


class _Receiver(Receiver):
    """A port-forward's: a session that goes away (its kubelet's process died, its host
    is cut off) ends the client's."""

    @handler
    async def on_session(self, msg: ForwardSession) -> None:
        self.watch(msg.session)
        await self.hand_over(msg)

    @handler
    async def on_output(self, msg: ForwardOutput) -> None:
        await self.hand_over(msg)

    @handler
    async def on_ended(self, msg: ForwardEnded) -> None:
        await self.hand_over(msg)

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        await self.hand_over(_Gone(f"the kubelet's port-forward session went away ({msg.reason})"))


async def serve_portforward(client: ApiClient, req: ApiRequest, scope: dict, receive,
                            send) -> None:  # fmt: skip
    """Serves one port-forward WebSocket (see the module rules); ``req`` is the
    checked-out request, credentials included."""
    if (await receive())["type"] != "websocket.connect":
        return
    offered = scope.get("subprotocols") or []
    protocol = next((p for p in (SUBPROTOCOL, V4) if p in offered), None)
    ports = _ports((req.params or {}).get("ports", ""))
    refusal = None
    if protocol is None:
        refusal = (f"unable to upgrade: no supported subprotocol: offered "
                   f"[{' '.join(offered)}], supported [{SUBPROTOCOL} {V4}]")  # fmt: skip
    elif protocol == V4 and not ports:
        refusal = (f"query parameter ports must name 1 to {MAX_PORTS} ports, each "
                   "1-65535")  # fmt: skip
    if refusal is not None:
        await refuse_websocket(scope, send, 400, _status(400, "BadRequest", refusal))
        return
    async with kubelet_session(client, req, _Receiver, "portforward") as (answer, output):
        if not 200 <= answer.code < 300:
            await refuse_websocket(scope, send, answer.code, answer.body)
            return
        first = await output.receive()  # asked of the receiver before the answer
        if not isinstance(first, ForwardSession):
            why = "the kubelet's port-forward session went away"
            await refuse_websocket(scope, send, 503, _status(503, "ServiceUnavailable", why))
            return
        await send({"type": "websocket.accept", "subprotocol": protocol})
        if protocol == SUBPROTOCOL:
            bridge: _Bridge = _SpdyBridge(first.session, send)
        else:
            bridge = _ChannelBridge(first.session, send, ports)
        await bridge.run(receive, output)


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip


def _port(text: str) -> int:
    """A port number written in ASCII digits, or 0."""
    port = int(text) if text.isascii() and text.isdigit() and len(text) <= 5 else 0
    return port if port < 65536 else 0


def _ports(value: str) -> list[int]:
    """The ``ports`` parameter's ports (comma-separated), or [] if any is not one or
    there are more than a channel byte can name."""
    ports = [_port(p.strip()) for p in value.split(",") if p.strip()]
    return ports if all(ports) and len(ports) <= MAX_PORTS else []


@attrs.define
class _Pair:
    """One of the client's connections: its port, its SPDY streams (ids, 0 until
    opened), and once it is open the input on its way to the kubelet."""

    port: str = ""
    data: int = 0
    error: int = 0
    backlog: Backlog | None = None  # once the kubelet is asked to connect
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    ended_input: bool = False  # the client's end of it came (what follows is dropped)


class _Bridge(abc.ABC):
    """What both protocols share: connections' input handed to the kubelet in order,
    the kubelet's output and ends written to the client. A protocol reads the client
    (``_on_message``) and writes ``_output`` and ``_ended``."""

    def __init__(self, session: ActorRef, send) -> None:
        self.session = session
        self._send = send
        self._lock = trio.Lock()  # frames go out whole and in the order they were made
        self.pairs: dict[int, _Pair] = {}
        self.disconnected = False  # the client went away
        self.close_code = 0  # the close we sent, if we did
        self.end_code = 1000  # the close to send when the session ends

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._send({"type": "websocket.send", "bytes": frame})

    @abc.abstractmethod
    async def _on_message(self, data: bytes) -> bool:
        """Acts on one message from the client; False when the session is over."""

    @abc.abstractmethod
    async def _output(self, pair: _Pair, request_id: int, data: bytes) -> None:
        """Writes what the pod sent on the connection."""

    @abc.abstractmethod
    async def _ended(self, pair: _Pair, request_id: int, error: str) -> bool:
        """Writes the connection's end (and why, if it broke); False when that ends
        the session."""

    async def run(self, receive, output: trio.MemoryReceiveChannel) -> None:
        """Carries the session until the client, the kubelet's session or the protocol
        ends it; then closes the socket and reads the client until it is gone (else
        Hypercorn keeps the TCP connection), for at most ``CLOSE_WAIT`` seconds."""
        await self._carry(receive, output)
        if self.disconnected:
            return
        if not self.close_code:
            await self._close(self.end_code)
        with trio.move_on_after(CLOSE_WAIT):
            while (await receive())["type"] != "websocket.disconnect":
                pass

    async def _close(self, code: int) -> None:
        self.close_code = code
        await self._send({"type": "websocket.close", "code": code})

    async def _carry(self, receive, output: trio.MemoryReceiveChannel) -> None:
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await self._started()  # (its connections exist before the client is read)
            nursery.start_soon(self._from_client, receive, nursery.cancel_scope)
            async for msg in output:
                if isinstance(msg, ForwardOutput):
                    pair = self.pairs.get(msg.request_id)
                    if pair is not None:
                        await self._output(pair, msg.request_id, msg.data)
                elif isinstance(msg, ForwardEnded):
                    pair = self._forget(msg.request_id)
                    if pair is not None and not await self._ended(pair, msg.request_id,
                                                                  msg.error):  # fmt: skip
                        break
                elif isinstance(msg, _Gone):
                    log.info("port-forward: %s", msg.why)
                    self.end_code = 1011
                    break
            nursery.cancel_scope.cancel()

    async def _started(self) -> None:  # noqa: B027 (a hook: SPDY has nothing to say)
        """What the protocol says once upgraded: nothing, unless a protocol says so."""

    def _open(self, request_id: int, port: int, pair: _Pair) -> None:
        pair.backlog = Backlog(INPUT_BACKLOG)
        self.nursery.start_soon(self._to_session, request_id, port, pair)

    def _forget(self, request_id: int) -> _Pair | None:
        """Drops the connection and stops handing its input on."""
        pair = self.pairs.pop(request_id, None)
        if pair is not None:
            pair.scope.cancel()
            if pair.backlog is not None:
                pair.backlog.close()  # (the reader may wait on its room)
        return pair

    async def _to_session(self, request_id: int, port: int, pair: _Pair) -> None:
        """Asks the kubelet to connect, then hands it the connection's input in order,
        each chunk once it has written the last; a kubelet session that does not answer
        ends the client's session."""
        backlog = pair.backlog
        assert backlog is not None
        with pair.scope:
            try:
                await self.session.ask(ForwardOpen(request_id, port), timeout=None)
                await backlog.deliver(self.session, partial(ForwardData, request_id),
                                      ForwardClose(request_id))  # fmt: skip
            except ActorError as e:
                log.info("port-forward: the kubelet's session did not answer: %s", e)
                self.end_code = 1011
                self.nursery.cancel_scope.cancel()

    async def _from_client(self, receive, done: trio.CancelScope) -> None:
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.disconnected = True
                    return
                data = message.get("bytes")
                if data is None:  # a text message: both protocols are binary only
                    data = (message.get("text") or "").encode()
                if not await self._on_message(data):
                    return
        finally:
            done.cancel()

    async def _protocol_error(self, why: str) -> bool:
        log.warning("port-forward: closing a client's WebSocket: %s", why)
        await self._close(PROTOCOL_ERROR)
        return False

    async def _input(self, request_id: int, pair: _Pair, data: bytes | None) -> None:
        """Queues the client's input for the connection (None: its end). A pod that takes
        nothing for ``STALL_SECONDS`` while ``INPUT_BACKLOG`` bytes wait loses the
        connection, so that the client is read again: its other connections, its resets
        and its departure. It is closed as if the pod had closed it, and the reason is
        logged, not sent: kubectl ends the whole port-forward on any error it is sent."""
        if pair.backlog is None or pair.ended_input or request_id not in self.pairs:
            return
        pair.ended_input = data is None
        try:
            await pair.backlog.put(data, patience=STALL_SECONDS)
        except Stalled:
            if self._forget(request_id) is None:
                return
            log.warning("port-forward: the pod read nothing for %g s while %d bytes waited "
                        "for it: connection %d to port %s dropped", STALL_SECONDS,
                        INPUT_BACKLOG, request_id, pair.port)  # fmt: skip
            self.session.tell(ForwardReset(request_id))
            if not await self._ended(pair, request_id, ""):
                self.nursery.cancel_scope.cancel()  # (its last connection)


class _SpdyBridge(_Bridge):
    """kubectl's SPDY session inside the WebSocket (see the module rules)."""

    def __init__(self, session: ActorRef, send) -> None:
        super().__init__(session, send)
        self.reader = SpdyReader()
        self.writer = SpdyWriter()
        self.streams: dict[int, tuple[str, int]] = {}  # stream id -> (type, request id)

    def _forget(self, request_id: int) -> _Pair | None:
        pair = super()._forget(request_id)
        if pair is not None:
            for stream_id in (pair.error, pair.data):
                self.streams.pop(stream_id, None)
        return pair

    async def _output(self, pair: _Pair, request_id: int, data: bytes) -> None:
        await self.send(SpdyWriter.data(pair.data, data))

    async def _ended(self, pair: _Pair, request_id: int, error: str) -> bool:
        """The error (if any) on the connection's error stream, then FIN on both."""
        await self.send(SpdyWriter.data(pair.error, error.encode(), fin=True)
                        + SpdyWriter.data(pair.data, b"", fin=True))  # fmt: skip
        return True

    async def _on_message(self, data: bytes) -> bool:
        try:
            frames = self.reader.feed(data)
        except SpdyError as e:
            return await self._protocol_error(str(e))
        for frame in frames:
            if not await self._on_frame(frame):
                return False
        return True

    async def _on_frame(self, frame: Control | Data) -> bool:
        if isinstance(frame, Data):
            kind, request_id = self.streams.get(frame.stream_id, ("", -1))
            pair = self.pairs.get(request_id)
            if kind == "data" and pair is not None:
                if frame.data:
                    await self._input(request_id, pair, frame.data)
                if frame.fin:
                    await self._input(request_id, pair, None)
            return True  # (the error stream carries nothing from the client)
        if frame.type == SYN_STREAM:
            await self._syn_stream(frame)
        elif frame.type == RST_STREAM:
            # (a stream we no longer know, as kubectl resets both of a connection that
            # ended, is no connection's: request ids start at 0)
            _, request_id = self.streams.get(frame.stream_id, ("", -1))
            if self._forget(request_id) is not None:
                self.session.tell(ForwardReset(request_id))
        elif frame.type == PING:
            await self.send(self.writer.ping(frame.value))
        elif frame.type == GOAWAY:
            return False  # (the session ends with a normal close)
        return True

    async def _syn_stream(self, frame: Control) -> None:
        headers = {name: values[0] for name, values in frame.headers.items() if values}
        kind = headers.get("streamtype", "")
        try:
            request_id = int(headers.get("requestid", ""))
        except ValueError:
            request_id = -1
        if kind not in ("data", "error") or request_id < 0:
            await self.send(self.writer.rst_stream(frame.stream_id, SPDY_PROTOCOL_ERROR))
            return
        async with self._lock:  # the reply's header block must go out in order
            await self._send({"type": "websocket.send",
                              "bytes": self.writer.syn_reply(frame.stream_id)})  # fmt: skip
        self.streams[frame.stream_id] = (kind, request_id)
        pair = self.pairs.setdefault(request_id, _Pair())
        setattr(pair, kind, frame.stream_id)
        pair.port = headers.get("port", pair.port)
        if pair.data and pair.error and pair.backlog is None:
            port = _port(pair.port)
            if not port:
                self._forget(request_id)
                await self._ended(pair, request_id, f"invalid port {pair.port!r}")
                return
            self._open(request_id, port, pair)


class _ChannelBridge(_Bridge):
    """The channel protocol (``v4.channel.k8s.io``, the official Python client's): the
    ``ports`` parameter names the connections, one per port for the socket's life, the
    ``i``-th on channels ``2i`` (data) and ``2i + 1`` (error), each first sent the
    port (2 bytes, little-endian). An error goes on the error channel; the socket
    closes (1000) once every connection has ended."""

    def __init__(self, session: ActorRef, send, ports: list[int]) -> None:
        super().__init__(session, send)
        self.ports = ports

    async def _started(self) -> None:
        for i, port in enumerate(self.ports):
            pair = self.pairs[i] = _Pair(port=str(port))
            self._open(i, port, pair)
        for i, port in enumerate(self.ports):
            number = port.to_bytes(2, "little")
            await self.send(bytes([2 * i]) + number)
            await self.send(bytes([2 * i + 1]) + number)

    async def _output(self, pair: _Pair, request_id: int, data: bytes) -> None:
        await self.send(bytes([2 * request_id]) + data)

    async def _ended(self, pair: _Pair, request_id: int, error: str) -> bool:
        if error:
            await self.send(bytes([2 * request_id + 1]) + error.encode())
        return bool(self.pairs)  # (the socket closes normally once none is left)

    async def _on_message(self, data: bytes) -> bool:
        if not data or data[0] >= 2 * len(self.ports):
            return await self._protocol_error(f"no channel {data[:1]!r} for these ports")
        pair = self.pairs.get(data[0] // 2)
        if data[0] % 2 == 0 and pair is not None and data[1:]:
            await self._input(data[0] // 2, pair, bytes(data[1:]))
        return True
