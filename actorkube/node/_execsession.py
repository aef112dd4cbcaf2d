"""One ``kubectl exec`` on a node: a command running in a container, its output
streamed to the API server's front end and its input taken from it (the kubelet's
streaming server and CRI's Exec, as actors). The messages are ``_remotecommand``'s.

Rules of this file:

- ``ExecSession`` owns the command (``ContainerRuntime.exec_stream``) for its whole
  life, in one handler that runs until the command has ended: it answers the kubelet
  server's deferred reply (``ExecAccepted``, or a ``LogsError`` if the command cannot
  be started), gives the receiver ``ExecOpened`` first (before that answer), then the
  output in order, then one ``ExecEnded``, and stops. Each is asked, one at a time:
  the receiver answers once its client has room, so a slow client holds the command
  back, nothing waits in a mailbox (a remote one would drop what does not fit), and a
  receiver that is gone ends the session. Output of a stream nobody asked for is read
  and dropped, so the command never blocks on it.
- The session ends when the command has exited and its output has ended. After the
  exit, a read that waits ``DRAIN_SECONDS`` for bytes ends the output (something the
  command started still holds it); the time spent handing chunks to a slow receiver
  never counts, so nothing written before the exit is lost.
- Input goes to the session's child ``ExecInputActor``, whose handlers never wait, so
  an ``ExecCancel``, or the receiver's ``Terminated`` (the front end or its process
  went away), is acted on at once: the command is killed and the session ends.
  ``ExecInput`` is answered when fewer than ``INPUT_BUFFER`` bytes wait for the
  command to read them; until then its sender waits (its client is held back). Input
  to a session that was not asked for stdin is dropped.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Awaitable, Callable

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
from actorkube.apiserver._remotecommand import (
    STDERR,
    STDOUT,
    ExecAccepted,
    ExecCancel,
    ExecEnded,
    ExecInput,
    ExecInputClosed,
    ExecInputTaken,
    ExecOpened,
    ExecOutput,
    ExecRequest,
    ExecResize,
)

from .runtime import ContainerRuntime, CriError, ExecStream

DRAIN_SECONDS = 2.0
INPUT_BUFFER = 256 * 1024


@message(tag="kubelet._ExecRun")
class _Run:
    pass


class _Input:
    """The input waiting for the command, shared by the session and its input actor
    (one process, one trio thread)."""

    def __init__(self, command: ExecStream, cancel: trio.CancelScope, wanted: bool) -> None:
        self.command = command
        self.cancel = cancel
        self.wanted = wanted  # the client asked for stdin: else its input is dropped
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.closed = False
        self.waiting: deque[Reply] = deque()  # asks answered once there is room
        self.wake = trio.Event()

    def take(self, data: bytes, reply: Reply | None) -> bool:
        """Queues ``data``; True if its sender may go on now (else ``reply`` is
        answered later)."""
        if self.wanted and not self.closed and data:
            self.chunks.append(data)
            self.size += len(data)
            self.wake.set()
        if self.size < INPUT_BUFFER or reply is None:
            return True
        self.waiting.append(reply)
        return False

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def write_all(self) -> None:
        """Gives the command its input as it comes, then closes its stdin."""
        while True:
            while self.chunks:
                data = self.chunks.popleft()
                await self.command.write(data)
                self.size -= len(data)
                while self.waiting and self.size < INPUT_BUFFER:
                    self.waiting.popleft().send(ExecInputTaken())
            if self.closed:
                await self.command.close_stdin()
                return
            self.wake = trio.Event()
            await self.wake.wait()


class ExecInputActor(Actor):
    """Where the front end sends a session's input (see the module rules)."""

    def __init__(self, state: _Input, receiver: ActorRef) -> None:
        self.state = state
        self.receiver = receiver

    async def started(self) -> None:
        self.watch(self.receiver)

    @handler
    async def on_input(self, msg: ExecInput) -> ExecInputTaken | None:
        reply = self.defer_reply()
        if self.state.take(msg.data, reply):
            reply.send(ExecInputTaken())

    @handler
    async def on_closed(self, msg: ExecInputClosed) -> ExecInputTaken:
        self.state.close()
        return ExecInputTaken()

    @handler
    async def on_resize(self, msg: ExecResize) -> None:
        self.state.command.resize(msg.width, msg.height)

    @handler
    async def on_cancel(self, msg: ExecCancel) -> None:
        self.state.cancel.cancel()

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        self.state.cancel.cancel()


class ExecSession(Actor):
    """One exec (see the module rules): ``msg`` asked for it, ``reply`` is the kubelet
    server's answer to it."""

    def __init__(self, runtime: ContainerRuntime, container_id: str, msg: ExecRequest,
                 reply: Reply) -> None:  # fmt: skip
        assert msg.receiver is not None
        self.runtime = runtime
        self.container_id = container_id
        self.msg = msg
        self.receiver: ActorRef = msg.receiver
        self.reply = reply
        self.reads: set[trio.CancelScope] = set()  # the output reads under way
        self.exited = False

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, _: _Run) -> None:
        msg = self.msg
        opened = False
        ended = ExecEnded(msg.stream_id, error="the command was cancelled")
        try:
            streams = self.runtime.exec_stream(self.container_id, msg.command,
                                               stdin=msg.stdin, tty=msg.tty)  # fmt: skip
            async with streams as command:
                with trio.CancelScope() as cancel:
                    state = _Input(command, cancel, msg.stdin)
                    input_ = self.spawn(lambda: ExecInputActor(state, self.receiver),
                                        restart=Restart.TEMPORARY)  # fmt: skip
                    # Asked, as everything sent to the receiver: its answer comes when
                    # the front end has room, so nothing waits in a mailbox that could
                    # overflow (a remote one drops what does not fit).
                    await self.receiver.ask(ExecOpened(msg.stream_id, input_), timeout=None)
                    opened = True
                    self.reply.send(ExecAccepted())
                    ended = await self._run(command, state)
        except CriError as e:  # the container is gone, or was never running
            why = f"error executing command in container: {e}"
            ended = ExecEnded(msg.stream_id, error=why)
            if not self.reply.done:
                self.reply.send(LogsError(500, why))
        except ActorError:  # the receiver is gone: nobody to tell
            opened = False
        finally:
            if not self.reply.done:
                self.reply.send(LogsError(500, "the exec session ended before it started"))
            if opened:
                with contextlib.suppress(ActorError):  # the receiver went away meanwhile
                    await self.receiver.ask(ended, timeout=None)
            self.stop()

    async def _run(self, command: ExecStream, state: _Input) -> ExecEnded:
        msg = self.msg
        async with trio.open_nursery() as nursery:
            if msg.stdin:
                nursery.start_soon(state.write_all)
            async with trio.open_nursery() as output:
                output.start_soon(self._pump, command.read_stdout, STDOUT, msg.stdout or msg.tty,
                                  state)  # fmt: skip
                output.start_soon(self._pump, command.read_stderr, STDERR, msg.stderr, state)
                code = await command.wait()
                self.exited = True
                for scope in self.reads:
                    scope.deadline = trio.current_time() + DRAIN_SECONDS
            nursery.cancel_scope.cancel()
        return ExecEnded(msg.stream_id, code)

    async def _pump(self, read: Callable[[], Awaitable[bytes]], channel: int, wanted: bool,
                    state: _Input) -> None:  # fmt: skip
        while True:
            # Once the command has exited, a read that waits DRAIN_SECONDS for bytes is
            # cut (something it started still holds its output); time spent handing a
            # chunk to a slow receiver never counts.
            wait = DRAIN_SECONDS if self.exited else math.inf
            with trio.move_on_after(wait) as scope:
                self.reads.add(scope)
                try:
                    data = await read()
                finally:
                    self.reads.discard(scope)
            if scope.cancelled_caught or not data:
                return
            if wanted:
                try:
                    await self.receiver.ask(ExecOutput(self.msg.stream_id, channel, data),
                                            timeout=None)  # fmt: skip
                except ActorError:  # the receiver is gone: so is the client
                    state.cancel.cancel()
                    return
