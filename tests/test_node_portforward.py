"""The kubelet's port-forward sessions, as actors over a runtime whose pods are ends of
in-memory streams: bytes carried both ways with the client's end, input held back while
the pod does not read it, a reset, a failed dial in Kubernetes' words, the session
ending with its receiver, and the kubelet server's refusals."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorkube.actor import Actor, ActorSystem, Terminated, handler
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
from actorkube.node._podstate import NODE, POD_NAME, POD_NAMESPACE, POD_UID
from actorkube.node._server import KubeletServer
from actorkube.node.runtime import (
    CriError,
    PodSandboxConfig,
    SandboxState,
    SandboxStatus,
    SimRuntime,
)

WAIT = 30


class Pods:
    """A runtime with one ready sandbox (default/p, uid-p) whose port 80 hands the test
    the pod's end of each connection (lockstep: a send waits for the other side)."""

    def __init__(self) -> None:
        labels = {NODE: "n1", POD_NAMESPACE: "default", POD_NAME: "p", POD_UID: "uid-p"}
        config = PodSandboxConfig("p", "default", "uid-p", labels=labels)
        self.sandbox = SandboxStatus("s1", config, SandboxState.READY, 1.0, "127.0.0.9")
        self.send, self.accepted = trio.open_memory_channel(10)

    async def list_pod_sandboxes(self, labels=None):
        wanted = labels or {}
        ok = all(self.sandbox.labels.get(k) == v for k, v in wanted.items())
        return [self.sandbox] if ok else []

    async def port_forward(self, sandbox_id: str, port: int) -> trio.abc.Stream:
        assert sandbox_id == "s1"
        if port == 81:
            return Reset()
        if port != 80:
            raise CriError(f"failed to connect to 127.0.0.9:{port}: connection refused")
        ours, theirs = trio.testing.lockstep_stream_pair()
        self.send.send_nowait(theirs)
        return ours


class Reset(trio.abc.HalfCloseableStream):
    """A pod connection that was reset: writing fails, reading waits."""

    async def send_all(self, data) -> None:
        raise trio.BrokenResourceError("connection reset by peer")

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def send_eof(self) -> None:
        raise trio.BrokenResourceError("connection reset by peer")

    async def receive_some(self, max_bytes=None) -> bytes:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


class Collector(Actor):
    """A receiver: what it is sent, in order."""

    def __init__(self) -> None:
        self.got: list = []
        self.changed = trio.Event()

    @handler(ForwardSession, ForwardOutput, ForwardEnded)
    async def on_any(self, msg) -> None:
        self.got.append(msg)
        self.changed.set()
        self.changed = trio.Event()

    async def until(self, test) -> None:
        with trio.fail_after(WAIT):
            while not test(self.got):
                await self.changed.wait()

    def output(self, request_id: int) -> bytes:
        return b"".join(m.data for m in self.got
                        if isinstance(m, ForwardOutput) and m.request_id == request_id)  # fmt: skip

    def ended(self, request_id: int) -> list[ForwardEnded]:
        return [m for m in self.got if isinstance(m, ForwardEnded) and m.request_id == request_id]


@pytest.fixture
async def node():
    """(system, kubelet server, pods, collector, its ref, the session's input)."""
    pods = Pods()
    async with ActorSystem(name="portforward-session") as system:
        server = system.spawn(lambda: KubeletServer(pods, "n1"), name="kubelet-server")
        collector = Collector()
        receiver = system.spawn(lambda: collector, name="receiver")
        answer = await server.ask(PortForwardRequest("default", "p", "uid-p", receiver))
        assert isinstance(answer, PortForwardAccepted)
        assert isinstance(collector.got[0], ForwardSession)  # before the answer
        yield system, server, pods, collector, receiver, collector.got[0].session


async def test_bytes_go_both_ways_and_the_clients_end_reaches_the_pod(node):
    _, _, pods, collector, _, session = node
    assert isinstance(await session.ask(ForwardOpen(4, 80)), ForwardTaken)
    with trio.fail_after(WAIT):
        pod = await pods.accepted.receive()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.ask, ForwardData(4, b"hello"))
            assert await pod.receive_some(100) == b"hello"
        await pod.send_all(b"world")
        await collector.until(lambda got: collector.output(4) == b"world")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.ask, ForwardClose(4))
            assert await pod.receive_some(100) == b""  # the client's end
        await pod.send_all(b"bye")  # the other way still carries
        await pod.aclose()
        await collector.until(lambda got: collector.ended(4))
    assert collector.output(4) == b"worldbye"
    assert collector.ended(4) == [ForwardEnded(4, "")]
    # what comes for a connection that ended is answered, and dropped
    assert isinstance(await session.ask(ForwardData(4, b"late")), ForwardTaken)


async def test_input_waits_for_the_pod_to_read_it(node):
    _, _, pods, _, _, session = node
    await session.ask(ForwardOpen(1, 80))
    pod = await pods.accepted.receive()
    answered = []

    async def send() -> None:
        answered.append(await session.ask(ForwardData(1, b"x" * 1000), timeout=None))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        await trio.testing.wait_all_tasks_blocked()
        assert answered == []  # the pod has not read it
        with trio.fail_after(WAIT):
            got = b""
            while len(got) < 1000:
                got += await pod.receive_some(4096)
    assert answered == [ForwardTaken()]


async def test_a_reset_drops_the_connection_and_a_failed_dial_says_why(node):
    _, _, pods, collector, _, session = node
    await session.ask(ForwardOpen(2, 80))
    pod = await pods.accepted.receive()
    session.tell(ForwardReset(2))
    with trio.fail_after(WAIT):
        await collector.until(lambda got: collector.ended(2))
        with pytest.raises(trio.BrokenResourceError):
            await pod.send_all(b"anyone?")
    await session.ask(ForwardOpen(3, 8080))
    await collector.until(lambda got: collector.ended(3))
    assert collector.ended(3) == [ForwardEnded(3, (
        "error forwarding port 8080 to pod default/p, uid uid-p: failed to connect to "
        "127.0.0.9:8080: connection refused"))]  # fmt: skip


async def test_a_broken_pod_connection_ends_only_itself(node):
    _, _, pods, collector, _, session = node
    await session.ask(ForwardOpen(1, 80))
    pod = await pods.accepted.receive()
    await session.ask(ForwardOpen(2, 81))
    assert isinstance(await session.ask(ForwardData(2, b"x")), ForwardTaken)
    await collector.until(lambda got: collector.ended(2))
    assert collector.ended(2) == [
        ForwardEnded(2, "the connection to the pod broke: connection reset by peer")]
    with trio.fail_after(WAIT):  # the other connection carries on
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.ask, ForwardData(1, b"still"))
            assert await pod.receive_some(100) == b"still"


async def test_the_session_ends_with_its_receiver(node):
    system, _, pods, _, receiver, session = node
    await session.ask(ForwardOpen(5, 80))
    pod = await pods.accepted.receive()

    class Watcher(Actor):
        def __init__(self) -> None:
            self.gone = trio.Event()

        async def started(self) -> None:
            self.watch(session)

        @handler
        async def on_terminated(self, msg: Terminated) -> None:
            self.gone.set()

    watcher = Watcher()
    system.spawn(lambda: watcher, name="watcher")
    await trio.testing.wait_all_tasks_blocked()
    await system.stop(receiver)
    with trio.fail_after(WAIT):
        await watcher.gone.wait()
        with pytest.raises(trio.BrokenResourceError):
            await pod.send_all(b"anyone?")  # the connection was closed


async def test_the_kubelet_server_refuses_what_it_cannot_forward(node):
    _, server, _, _, receiver, _ = node
    answer = await server.ask(PortForwardRequest("default", "other", "", receiver))
    assert isinstance(answer, LogsError) and answer.code == 404
    assert "no running sandbox" in answer.message
    wrong_uid = await server.ask(PortForwardRequest("default", "p", "uid-q", receiver))
    assert isinstance(wrong_uid, LogsError) and wrong_uid.code == 404
    no_receiver = await server.ask(PortForwardRequest("default", "p", "uid-p"))
    assert isinstance(no_receiver, LogsError) and no_receiver.code == 400


async def test_the_simulated_runtime_has_nothing_to_connect_to():
    runtime = SimRuntime("10.9.0.0/24")
    sid = await runtime.run_pod_sandbox(PodSandboxConfig("p", "default", "uid-p"))
    with pytest.raises(CriError, match="no network"):
        await runtime.port_forward(sid, 80)
