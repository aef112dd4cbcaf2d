"""The kubelet's exec sessions, as actors over a process runtime: the messages a
receiver gets in order, input held back while the command does not read it, and the
command killed when the session is cancelled or its receiver goes away; the errors the
kubelet's server answers with."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from pids import wait_exited

from actorkube.actor import Actor, ActorError, ActorSystem, handler
from actorkube.actor._tcp import serve_tcp
from actorkube.apiserver._kubeletclient import LogsError
from actorkube.apiserver._remotecommand import (
    ExecAccepted,
    ExecCancel,
    ExecEnded,
    ExecInput,
    ExecInputClosed,
    ExecOpened,
    ExecOutput,
    ExecRequest,
)
from actorkube.node import _execsession
from actorkube.node._execsession import INPUT_BUFFER
from actorkube.node._podstate import CONTAINER_NAME, NODE, POD_NAME, POD_NAMESPACE
from actorkube.node._server import KubeletServer
from actorkube.node.runtime import ContainerConfig, PodSandboxConfig, ProcessRuntime

WAIT = 30


class Collector(Actor):
    """A receiver: what it is sent, in order."""

    def __init__(self) -> None:
        self.got: list = []
        self.changed = trio.Event()

    def _note(self, msg) -> None:
        self.got.append(msg)
        self.changed.set()
        self.changed = trio.Event()

    @handler
    async def on_opened(self, msg: ExecOpened) -> None:
        self._note(msg)

    @handler
    async def on_output(self, msg: ExecOutput) -> None:
        self._note(msg)

    @handler
    async def on_ended(self, msg: ExecEnded) -> None:
        self._note(msg)

    async def until(self, kind) -> object:
        with trio.fail_after(WAIT):
            while not any(isinstance(m, kind) for m in self.got):
                await self.changed.wait()
        return next(m for m in self.got if isinstance(m, kind))

    def output(self, channel: int = 1) -> bytes:
        return b"".join(m.data for m in self.got if isinstance(m, ExecOutput)
                        and m.channel == channel)  # fmt: skip


@pytest.fixture
async def node(tmp_path, nursery):
    """(the actor system, the kubelet server, the runtime) with pod default/p's
    container "app" running ``sleep``."""
    runtime = ProcessRuntime(tmp_path / "runtime", "127.251.0.0/16")
    await nursery.start(runtime.run)
    system = ActorSystem(name="exec-session")
    await system.__aenter__()
    labels = {NODE: "n1", POD_NAMESPACE: "default", POD_NAME: "p"}
    sandbox = PodSandboxConfig("p", "default", "uid-p", labels=labels)
    sid = await runtime.run_pod_sandbox(sandbox)
    config = ContainerConfig("app", "python:3.11", command=("sleep", "100000"),
                             labels={**labels, CONTAINER_NAME: "app"})  # fmt: skip
    cid = await runtime.create_container(sid, config, sandbox)
    await runtime.start_container(cid)
    server = system.spawn(lambda: KubeletServer(runtime, "n1"), name="kubelet-server")
    yield system, server, runtime
    await system.__aexit__(None, None, None)
    await runtime.aclose()


def request(receiver, *command: str, stdin: bool = False, container: str = "app") -> ExecRequest:
    return ExecRequest("default", "p", container, command, stdin=stdin, receiver=receiver,
                       stream_id=7)  # fmt: skip




async def test_a_session_streams_in_order_and_ends_with_the_exit_code(node):
    system, server, _ = node
    collector = Collector()
    receiver = system.spawn(lambda: collector, name="receiver")
    script = "read line; echo got $line; echo oops >&2; exit 6"
    assert isinstance(await server.ask(request(receiver, "sh", "-c", script, stdin=True)),
                      ExecAccepted)  # fmt: skip
    opened = await collector.until(ExecOpened)
    assert collector.got[0] is opened and opened.stream_id == 7
    await opened.input.ask(ExecInput(b"hello\n"))
    opened.input.tell(ExecInputClosed())
    ended = await collector.until(ExecEnded)
    assert (ended.stream_id, ended.exit_code, ended.error) == (7, 6, "")
    assert collector.got[-1] is ended
    assert (collector.output(1), collector.output(2)) == (b"got hello\n", b"oops\n")


async def test_input_waits_while_the_command_does_not_read_and_a_cancel_kills_it(node):
    system, server, _ = node
    collector = Collector()
    receiver = system.spawn(lambda: collector, name="receiver")
    await server.ask(request(receiver, "sh", "-c", "echo $$; exec sleep 100000", stdin=True))
    opened = await collector.until(ExecOpened)
    await collector.until(ExecOutput)
    pid = int(collector.output())
    chunk = b"x" * (INPUT_BUFFER // 2)
    await opened.input.ask(ExecInput(chunk))  # room for it
    taken = []

    async def more() -> None:
        try:
            await opened.input.ask(ExecInput(chunk), timeout=None)
            taken.append("taken")
        except ActorError:
            taken.append("ended")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(more)
        await trio.testing.wait_all_tasks_blocked(0.2)
        assert taken == []  # held: the command reads nothing, the buffer is full
        opened.input.tell(ExecCancel())
        await wait_exited(pid)
    assert taken == ["ended"]
    ended = await collector.until(ExecEnded)
    assert ended.error == "the command was cancelled"


async def test_a_receiver_that_goes_away_takes_the_command_with_it(node):
    system, server, _ = node
    collector = Collector()
    receiver = system.spawn(lambda: collector, name="receiver")
    await server.ask(request(receiver, "sh", "-c", "echo $$; exec sleep 100000"))
    await collector.until(ExecOutput)
    pid = int(collector.output())
    await system.stop(receiver)
    await wait_exited(pid)


async def test_sessions_run_side_by_side(node):
    system, server, _ = node
    collectors = [Collector() for _ in range(3)]
    for i, collector in enumerate(collectors):
        receiver = system.spawn(lambda c=collector: c, name=f"receiver-{i}")
        answer = await server.ask(request(receiver, "sh", "-c", f"read x; echo {i} $x",
                                          stdin=True))  # fmt: skip
        assert isinstance(answer, ExecAccepted)
    for collector in collectors:  # all three are running before any ends
        (await collector.until(ExecOpened)).input.tell(ExecInputClosed())
    for i, collector in enumerate(collectors):
        assert (await collector.until(ExecEnded)).exit_code == 0
        assert collector.output() == f"{i}\n".encode()


class Gated(Collector):
    """A receiver that takes nothing of the command's output until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    @handler
    async def on_output(self, msg: ExecOutput) -> None:
        await self.gate.wait()
        self._note(msg)


async def test_a_slow_receiver_loses_nothing_written_before_the_exit(node, monkeypatch):
    """The command writes "a" (the session reads it and waits at the closed gate), then
    the rest into the pipe, and exits; the gate opens only after the drain time has
    passed since the exit: everything arrives."""
    system, server, runtime = node
    monkeypatch.setattr(_execsession, "DRAIN_SECONDS", 0.1)
    collector = Gated()
    receiver = system.spawn(lambda: collector, name="receiver")
    script = "printf a; sleep 0.5; head -c 60000 /dev/zero"  # the rest fits in the pipe
    await server.ask(request(receiver, "sh", "-c", script))
    await collector.until(ExecOpened)
    [pid] = [pid for c in runtime._containers.values() for pid in c.execs]
    await wait_exited(pid)
    # Not waiting for a state: letting the drain time pass, which must not matter.
    await trio.sleep(5 * _execsession.DRAIN_SECONDS)
    collector.gate.set()
    ended = await collector.until(ExecEnded)
    assert ended.exit_code == 0 and collector.output() == b"a" + bytes(60000)


class Slow(Collector):
    """A receiver that takes its time over each chunk of output."""

    @handler
    async def on_output(self, msg: ExecOutput) -> None:
        await trio.sleep(0.002)  # a slow client, not a wait for anything
        self._note(msg)


async def test_a_slow_receiver_over_the_transport_loses_nothing(node):
    """The kubelet's server in another system, over TCP: a receiver with a small
    mailbox that drains slowly still gets every byte (the session asks it to take each
    chunk; a remote mailbox drops what does not fit)."""
    system = node[0]
    async with ActorSystem(name="apiserver") as there:
        here_port = (await serve_tcp(system, token="t", host="127.0.0.1", port=0)).port
        there_port = (await serve_tcp(there, token="t", host="127.0.0.1", port=0)).port
        system.transport.add_peer("apiserver", "127.0.0.1", there_port)
        there.transport.add_peer(system.name, "127.0.0.1", here_port)
        collector = Slow()
        receiver = there.spawn(lambda: collector, name=there.granted_name("exec"),
                               mailbox_size=4)  # fmt: skip
        server = there.ref(f"ak://{system.name}/kubelet-server")
        await server.ask(request(receiver, "head", "-c", "3000000", "/dev/zero"))
        ended = await collector.until(ExecEnded)
        assert ended.exit_code == 0 and collector.output() == bytes(3_000_000)
        assert not there.dead_letters.by_reason


async def test_input_to_a_session_without_stdin_is_dropped(node):
    system, server, _ = node
    collector = Collector()
    receiver = system.spawn(lambda: collector, name="receiver")
    await server.ask(request(receiver, "sh", "-c", "exec sleep 100000"))
    opened = await collector.until(ExecOpened)
    with trio.fail_after(WAIT):  # never held back: nothing will ever read it
        for _ in range(4):
            await opened.input.ask(ExecInput(b"x" * INPUT_BUFFER))
    opened.input.tell(ExecCancel())
    assert (await collector.until(ExecEnded)).error == "the command was cancelled"


async def test_the_server_refuses_what_cannot_run(node):
    system, server, runtime = node
    receiver = system.spawn(Collector, name="receiver")
    missing = await server.ask(request(receiver, "true", container="nope"))
    assert isinstance(missing, LogsError) and "waiting to start" in missing.message
    assert isinstance(await server.ask(request(None, "true")), LogsError)
    [app] = await runtime.list_containers({CONTAINER_NAME: "app"})
    await runtime.stop_container(app.id, 0)
    stopped = await server.ask(request(receiver, "true"))
    assert isinstance(stopped, LogsError) and "is not running" in stopped.message
