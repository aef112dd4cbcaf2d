"""One ``kubectl port-forward`` session on a node: the client's TCP connections carried
to a pod's ports (the kubelet's streaming server and CRI's PortForward, as actors). The
messages are ``actorkube.apiserver._portforward``'s.

Rules of this file:

- ``PortForwardSession`` runs its connections in one handler that lasts the session's
  life: it asks the receiver to take ``ForwardSession`` first, then answers the kubelet
  server's deferred reply (``PortForwardAccepted``), and stops when its receiver goes
  away (watched) or that first ask fails. Its child ``ForwardInputActor`` takes the
  front end's messages; its handlers never wait, so a slow pod holds back only the
  connection it belongs to.
- A connection (``ForwardOpen``) dials the pod through the runtime
  (``ContainerRuntime.port_forward``); its ``ForwardData`` and ``ForwardClose`` wait in
  order for a writer task, each answered once written (the end: once the pod's socket
  is shut for writing), so the front end sends the next only then. A reader task asks
  the receiver to take what the pod sends, one chunk at a time.
- A connection ends when the pod closes it, when it breaks, on ``ForwardReset``, or
  when the dial fails; then the receiver is asked to take one ``ForwardEnded`` (with
  Kubernetes' wording of the error, if any), and what still waits for the connection
  is answered and dropped, so its sender never waits for nothing.
"""

from __future__ import annotations

import contextlib
import math

import trio

from actorkube.actor import (
    Actor,
    ActorError,
    ActorRef,
    Reply,
    Restart,
    Terminated,
    handler,
    message,
)
from actorkube.apiserver._kubeletclient import LogsError
from actorkube.apiserver._portforward import (
    ForwardClose,
    ForwardData,
    ForwardEnded,
    ForwardOpen,
    ForwardOutput,
    ForwardReset,
    ForwardSession,
    ForwardTaken,
    PortForwardAccepted,
    PortForwardRequest,
)

from .runtime import ContainerRuntime, CriError

READ_SIZE = 64 * 1024


@message(tag="kubelet._PortForwardRun")
class _Run:
    pass


class _Connection:
    """One client connection: what waits to be written to the pod, and how to end it."""

    def __init__(self) -> None:
        # unbounded: the front end asks, so one item at most waits per connection
        self.send, self.receive = trio.open_memory_channel(math.inf)
        self.scope = trio.CancelScope()
        self.ended = False

    def put(self, data: bytes | None, reply: Reply | None) -> None:
        """Queues ``data`` (None: the client's end of it) for the writer; answered at
        once if the connection has ended."""
        if self.ended:
            if reply is not None:
                reply.send(ForwardTaken())
            return
        self.send.send_nowait((data, reply))

    def end(self) -> None:
        """Stops taking data and answers what waits (it is dropped)."""
        self.ended = True
        self.scope.cancel()
        while True:
            try:
                _, reply = self.receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            if reply is not None:
                reply.send(ForwardTaken())


class _Forwards:
    """The session's connections, shared by the session and its input actor (one
    process, one trio thread)."""

    def __init__(self, nursery: trio.Nursery, start) -> None:
        self.nursery = nursery
        self.start = start  # (request_id, port, connection) -> the connection's task
        self.connections: dict[int, _Connection] = {}

    def open(self, request_id: int, port: int) -> None:
        if request_id in self.connections:
            return  # the client's own duplicate: its first connection stands
        connection = self.connections[request_id] = _Connection()
        self.nursery.start_soon(self.start, request_id, port, connection)

    def put(self, request_id: int, data: bytes | None, reply: Reply | None) -> None:
        connection = self.connections.get(request_id)
        if connection is None:  # ended (or never opened): nothing will read it
            if reply is not None:
                reply.send(ForwardTaken())
            return
        connection.put(data, reply)

    def reset(self, request_id: int) -> None:
        connection = self.connections.get(request_id)
        if connection is not None:
            connection.end()


class ForwardInputActor(Actor):
    """Where the front end sends a session's connection messages (see the module
    rules)."""

    def __init__(self, forwards: _Forwards, cancel: trio.CancelScope, receiver: ActorRef) -> None:
        self.forwards = forwards
        self.cancel = cancel
        self.receiver = receiver

    async def started(self) -> None:
        self.watch(self.receiver)

    @handler
    async def on_open(self, msg: ForwardOpen) -> ForwardTaken:
        self.forwards.open(msg.request_id, msg.port)
        return ForwardTaken()

    @handler
    async def on_data(self, msg: ForwardData) -> ForwardTaken | None:
        self.forwards.put(msg.request_id, msg.data, self.defer_reply())

    @handler
    async def on_close(self, msg: ForwardClose) -> ForwardTaken | None:
        self.forwards.put(msg.request_id, None, self.defer_reply())

    @handler
    async def on_reset(self, msg: ForwardReset) -> None:
        self.forwards.reset(msg.request_id)

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        self.cancel.cancel()


class PortForwardSession(Actor):
    """One port-forward session (see the module rules): ``msg`` asked for it, ``reply``
    is the kubelet server's answer to it; ``sandbox_id`` is the pod's."""

    def __init__(self, runtime: ContainerRuntime, sandbox_id: str, msg: PortForwardRequest,
                 reply: Reply) -> None:  # fmt: skip
        assert msg.receiver is not None
        self.runtime = runtime
        self.sandbox_id = sandbox_id
        self.msg = msg
        self.receiver: ActorRef = msg.receiver
        self.reply = reply

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, _: _Run) -> None:
        try:
            with trio.CancelScope() as cancel:
                async with trio.open_nursery() as nursery:
                    forwards = _Forwards(nursery, self._connection)
                    self._forwards = forwards
                    self._cancel = cancel
                    input_ = self.spawn(lambda: ForwardInputActor(forwards, cancel,
                                                                  self.receiver),
                                        restart=Restart.TEMPORARY)  # fmt: skip
                    try:
                        await self.receiver.ask(ForwardSession(input_), timeout=None)
                    except ActorError:
                        self.reply.send(LogsError(500, "the port-forward's receiver is gone"))
                        return
                    self.reply.send(PortForwardAccepted())
                    await trio.sleep_forever()
        finally:
            if not self.reply.done:
                self.reply.send(LogsError(500, "the port-forward session ended before it started"))
            self.stop()

    async def _connection(self, request_id: int, port: int, connection: _Connection) -> None:
        error = ""
        with connection.scope:
            try:
                stream = await self.runtime.port_forward(self.sandbox_id, port)
            except CriError as e:
                msg = self.msg
                error = (f"error forwarding port {port} to pod {msg.namespace}/{msg.pod}, "
                         f"uid {msg.uid}: {e}")  # fmt: skip
            else:
                async with stream:
                    error = await self._carry(request_id, connection, stream)
        connection.end()
        self._forwards.connections.pop(request_id, None)
        try:
            await self.receiver.ask(ForwardEnded(request_id, error), timeout=None)
        except ActorError:  # the receiver is gone: the session ends
            self._cancel.cancel()

    async def _carry(self, request_id: int, connection: _Connection,
                     stream: trio.abc.Stream) -> str:  # fmt: skip
        """Carries the connection both ways until the pod closes it; why it broke, if
        it did (each direction catches its own errors: a nursery would wrap them)."""
        broke: list[str] = []
        async with trio.open_nursery() as nursery:

            def fail(e: Exception) -> None:
                broke.append(f"the connection to the pod broke: {e}")
                nursery.cancel_scope.cancel()

            nursery.start_soon(self._write, connection, stream, fail)
            while True:
                try:
                    data = bytes(await stream.receive_some(READ_SIZE))  # (a bytearray, some)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                    fail(e)
                    break
                if not data:
                    break
                try:
                    await self.receiver.ask(ForwardOutput(request_id, data), timeout=None)
                except ActorError:
                    self._cancel.cancel()
                    break
            nursery.cancel_scope.cancel()
        return broke[0] if broke else ""

    async def _write(self, connection: _Connection, stream: trio.abc.Stream, fail) -> None:
        async for data, reply in connection.receive:
            try:
                if data is None:
                    # best effort: a pod that is gone tells its reader as much
                    with contextlib.suppress(trio.BrokenResourceError, OSError):
                        if isinstance(stream, trio.abc.HalfCloseableStream):
                            await stream.send_eof()
                else:
                    await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                if reply is not None:
                    reply.send(ForwardTaken())
                fail(e)
                return
            if reply is not None:
                reply.send(ForwardTaken())
