"""The TCP transport over real loopback sockets: two systems in one trio run, a second
OS process (tests/tcp_peer.py), authentication, and bad input from raw clients.

These tests wait on real I/O (always inside ``trio.fail_after``), never on sleeps; they
do not use MockClock, whose autojump would race the sockets.
"""

from __future__ import annotations

import math
import socket
import subprocess
import sys
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_peer import Boom, Echo, EchoActor, Forward, Hang, Hanging

from actorkube.actor import (
    Actor,
    ActorRef,
    ActorSystem,
    AskTimeout,
    AuthenticationError,
    DecodeError,
    HandlerFailed,
    ProtocolError,
    Terminated,
    Undeliverable,
    encode_message,
    handler,
    message,
)
from actorkube.actor import _protocol as P
from actorkube.actor._codec import decode_message, decode_value, encode_value
from actorkube.actor._tcp import (
    Handshake,
    TcpTransport,
    format_endpoint,
    parse_endpoint,
    serve_tcp,
)

TOKEN = "test-token"
HOST = "127.0.0.1"
PEER_SCRIPT = Path(__file__).with_name("tcp_peer.py")
WAIT = 5  # bound, in seconds, of every wait on real I/O


@message(tag="tcp_test.Watch")
class Watch:
    target: ActorRef


@message(tag="tcp_test.Seq")
class Seq:
    n: int


@message(tag="tcp_test.Blob")
class Blob:
    n: int
    data: bytes


class Inbox(Actor):
    """Watches what it is told to, and hands everything else it gets to the test."""

    def __init__(self, out: trio.MemorySendChannel) -> None:
        self.out = out

    @handler
    def watch_it(self, msg: Watch) -> None:
        self.watch(msg.target)

    @handler(Echo, Hanging, Terminated, Seq, Blob)
    def got(self, msg) -> None:
        self.out.send_nowait(msg)


class Farewell(EchoActor):
    """An echo actor that sends ``count`` big ``Blob``s to ``target`` as it stops."""

    def __init__(self, target: ActorRef, count: int) -> None:
        self.target = target
        self.count = count

    async def stopping(self) -> None:
        for n in range(self.count):
            self.target.tell(Blob(n, bytes(65536)))


def spawn_inbox(system: ActorSystem, name: str = "inbox"):
    send, receive = trio.open_memory_channel(math.inf)
    return system.spawn(partial(Inbox, send), name=name), receive


async def next_message(receive: trio.MemoryReceiveChannel):
    with trio.fail_after(WAIT):
        return await receive.receive()


def free_port() -> int:
    # The kernel does not hand a just-released port out again at once, and trio's
    # listeners set SO_REUSEADDR, so binding it right after is safe in practice.
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@asynccontextmanager
async def two_systems(**options):
    """Systems "a" and "b", both listening, each knowing where the other is."""
    async with ActorSystem(name="a") as a, ActorSystem(name="b") as b:
        ta = await serve_tcp(a, token=TOKEN, **options)
        tb = await serve_tcp(b, token=TOKEN, **options)
        ta.add_peer("b", HOST, tb.port)
        tb.add_peer("a", HOST, ta.port)
        yield a, b


# --- the handshake core and endpoint names ------------------------------------------------


def handshakes(token_a: bytes = b"t", token_b: bytes = b"t"):
    return (
        Handshake(token_a, "a", b"inc-a", b"A" * 16),
        Handshake(token_b, "b", b"inc-b", b"B" * 16),
    )


def test_handshake_completes_with_the_same_token():
    a, b = handshakes()
    assert a.receive_hello(b.hello()).name == "b"
    assert b.receive_hello(a.hello()).incarnation == b"inc-a"
    assert b.speaks_first and not a.speaks_first
    a.receive_auth(b.auth())
    b.receive_auth(a.auth())
    assert a.done and b.done


def test_handshake_rejects_a_wrong_token():
    a, b = handshakes(token_b=b"other")
    a.receive_hello(b.hello())
    b.receive_hello(a.hello())
    with pytest.raises(AuthenticationError):
        a.receive_auth(b.auth())
    with pytest.raises(AuthenticationError):
        b.receive_auth(a.auth())


def test_handshake_rejects_its_own_hello_and_proof_reflected():
    a, _ = handshakes()
    with pytest.raises(ProtocolError, match="own name"):
        a.receive_hello(a.hello())


@pytest.mark.parametrize(
    "hello, match",
    [
        ([P.HELLO, "other", P.WIRE_VERSION, "b", b"i", b"B" * 16, "member"], "not an actorkube"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION + 1, "b", b"i", b"B" * 16, "member"], "wire version"),
        ([P.HELLO, P.MAGIC, 2, "b", b"i", b"B" * 16], "wire version 2, we speak 3"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION, "", b"i", b"B" * 16, "member"], "name"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION, "b", b"", b"B" * 16, "member"], "incarnation"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION, "b", b"i", b"B" * 15, "member"], "nonce"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION, "b", b"i", b"B" * 16, "admin"], "unknown realm"),
        ([P.HELLO, P.MAGIC, P.WIRE_VERSION, "b", b"i", b"B" * 16], "needs 6 fields"),
        ([P.AUTH, b"x" * 32], "expected HELLO"),
    ],
)
def test_handshake_rejects_a_bad_hello(hello, match):
    a, _ = handshakes()
    with pytest.raises(ProtocolError, match=match):
        a.receive_hello(P.pack_frame(*hello))


def test_handshake_rejects_auth_before_hello():
    a, b = handshakes()
    b.receive_hello(a.hello())
    with pytest.raises(ProtocolError, match="AUTH before HELLO"):
        a.receive_auth(b.auth())


@pytest.mark.parametrize(
    "name, endpoint",
    [
        ("127.0.0.1:7400", ("127.0.0.1", 7400)),
        ("node-1.example:80", ("node-1.example", 80)),
        ("[::1]:7400", ("::1", 7400)),
        ("a", None),
        ("a:", None),
        (":80", None),
        ("a:0", None),
        ("a:65536", None),
        ("a:\uff18\uff10", None),  # digits, but not ASCII ones
        ("::1:80", None),
    ],
)
def test_parse_endpoint(name, endpoint):
    assert parse_endpoint(name) == endpoint
    if endpoint is not None:
        assert format_endpoint(*endpoint) == name


# --- two systems in one trio run ----------------------------------------------------------


async def test_tell_and_ask_between_systems():
    async with two_systems() as (a, b):
        b.spawn(EchoActor, name="echo")
        inbox, received = spawn_inbox(a)
        echo = a.ref("ak://b/echo")
        with trio.fail_after(WAIT):
            assert await echo.ask(Echo("hello")) == "hello"
        echo.tell(Forward(inbox, "told"))
        assert await next_message(received) == Echo("told")


async def test_remote_handler_failure_is_handler_failed():
    async with two_systems() as (a, b):
        b.spawn(EchoActor, name="echo")
        with trio.fail_after(WAIT), pytest.raises(HandlerFailed) as info:
            await a.ref("ak://b/echo").ask(Boom("bad input"))
        assert info.value.error_type == "ValueError"
        assert info.value.error == "bad input"
        assert "ValueError" in info.value.traceback


async def test_remote_ask_times_out():
    async with two_systems() as (a, b):
        b.spawn(EchoActor, name="echo")
        inbox, received = spawn_inbox(a)
        with trio.fail_after(WAIT), pytest.raises(AskTimeout):
            await a.ref("ak://b/echo").ask(Hang(inbox), timeout=0.2)
        assert await next_message(received) == Hanging()


async def test_ask_to_a_missing_remote_actor_is_undeliverable():
    async with two_systems() as (a, _):
        with trio.fail_after(WAIT), pytest.raises(Undeliverable) as info:
            await a.ref("ak://b/nobody").ask(Echo("x"))
        assert info.value.reason == "no such actor"


async def test_remote_watch_sees_the_actor_stop():
    async with two_systems() as (a, b):
        local_echo = b.spawn(EchoActor, name="echo")
        inbox, received = spawn_inbox(a)
        echo = a.ref("ak://b/echo")
        inbox.tell(Watch(echo))
        with trio.fail_after(WAIT):
            # Same connection, so b has the WATCH once this reply is back.
            assert await echo.ask(Echo("x")) == "x"
            await b.stop(local_echo)
        assert await next_message(received) == Terminated(echo, "stopped")


async def test_reference_in_a_message_is_usable_on_the_other_side():
    async with two_systems() as (a, b):
        b.spawn(EchoActor, name="echo")
        inbox, received = spawn_inbox(a)
        with trio.fail_after(WAIT):
            await a.ref("ak://b/echo").ask(Forward(inbox, "via a ref"))
        message = await next_message(received)
        assert message == Echo("via a ref")


async def test_a_system_that_does_not_listen_gets_replies_and_messages():
    async with ActorSystem(name="b") as b, ActorSystem(name="client") as client:
        tb = await serve_tcp(b, token=TOKEN)
        b.spawn(EchoActor, name="echo")
        transport = TcpTransport(client, token=TOKEN)
        await transport.start()
        with trio.fail_after(WAIT):
            assert await transport.connect(HOST, tb.port) == "b"
            inbox, received = spawn_inbox(client)
            assert await client.ref("ak://b/echo").ask(Forward(inbox, "back")) is None
        assert await next_message(received) == Echo("back")
        assert tb.connected_peers() == ["client"]


async def test_a_peer_is_dialled_by_its_host_port_name():
    port = free_port()
    async with ActorSystem(name="a") as a, ActorSystem(name=f"{HOST}:{port}") as b:
        await serve_tcp(a, token=TOKEN)
        tb = await serve_tcp(b, token=TOKEN, port=port)
        assert tb.address == b.name
        b.spawn(EchoActor, name="echo")
        with trio.fail_after(WAIT):
            assert await a.ref(f"ak://{HOST}:{port}/echo").ask(Echo("by name")) == "by name"


async def test_simultaneous_dials_keep_every_message_in_order():
    # Both systems start sending before either has a connection, so both dial at once.
    for _ in range(5):
        async with two_systems() as (a, b):
            _, received_a = spawn_inbox(a)
            _, received_b = spawn_inbox(b)
            to_b, to_a = a.ref("ak://b/inbox"), b.ref("ak://a/inbox")
            for n in range(300):
                to_b.tell(Seq(n))
                to_a.tell(Seq(n))
            for received in (received_a, received_b):
                assert [(await next_message(received)).n for _ in range(300)] == list(range(300))
            assert a.transport.connected_peers() == ["b"]
            assert b.transport.connected_peers() == ["a"]


async def test_a_dropped_connection_is_redialled_with_queue_and_watches_intact():
    async with two_systems(reconnect_min=0.05) as (a, b):
        local_echo = b.spawn(EchoActor, name="echo")
        inbox, received = spawn_inbox(a)
        echo = a.ref("ak://b/echo")
        inbox.tell(Watch(echo))
        with trio.fail_after(WAIT):
            assert await echo.ask(Echo("before")) == "before"
        # Cut the connection as a network fault would (there is no public way to).
        a.transport._peers["b"].conn.close()
        echo.tell(Forward(inbox, "queued while down"))
        assert await next_message(received) == Echo("queued while down")
        # Same incarnation on both sides: the watch survived the reconnect.
        with trio.fail_after(WAIT):
            await b.stop(local_echo)
        assert await next_message(received) == Terminated(echo, "stopped")


async def test_an_unreachable_peer_fails_asks_watches_and_tells():
    dead = f"{HOST}:{free_port()}"
    async with ActorSystem(name="a") as a:
        await serve_tcp(a, token=TOKEN, unreachable_after=0.3, reconnect_min=0.05)
        inbox, received = spawn_inbox(a)
        target = a.ref(f"ak://{dead}/echo")
        inbox.tell(Watch(target))
        target.tell(Echo("lost"))
        with trio.fail_after(WAIT), pytest.raises(Undeliverable) as info:
            await target.ask(Echo("x"), timeout=None)
        assert info.value.reason == "peer unreachable"
        assert await next_message(received) == Terminated(target, "peer unreachable")
        # The queued TELL is a dead letter; the ASK failed its asker instead.
        assert a.dead_letters.by_reason == {"peer unreachable": 1}


async def test_the_send_buffer_is_bounded_and_send_waits_for_room():
    dead = f"{HOST}:{free_port()}"
    async with ActorSystem(name="a") as a:
        await serve_tcp(a, token=TOKEN, send_buffer=4, unreachable_after=0.3, reconnect_min=0.05)
        target = a.ref(f"ak://{dead}/echo")
        for n in range(6):
            target.tell(Echo(str(n)))
        assert a.dead_letters.count == 2  # the queue took four
        with trio.fail_after(WAIT):
            await target.send(Echo("waits"))
        # It got room only when the four queued ones were given up on.
        assert a.dead_letters.count == 6


@message(tag="tcp_test.Flood")
class Flood:
    """Tell ``count`` ``Seq`` messages to ``to``, then reply with ``count``."""

    to: ActorRef
    count: int


class Flooder(Actor):
    @handler
    def flood(self, msg: Flood) -> int:
        for n in range(msg.count):
            msg.to.tell(Seq(n))
        return msg.count


async def test_a_reply_is_queued_past_a_send_buffer_full_of_tells():
    # The flooder fills b's queue for a with TELLs in the same step as its reply (the
    # writer cannot run in between): the TELLs past the bound are dead letters, the
    # reply is not, or a would wait on it for nothing.
    async with two_systems(send_buffer=4) as (a, b):
        _, received = spawn_inbox(a)
        b.spawn(Flooder, name="flooder")
        flooder = a.ref("ak://b/flooder")
        with trio.fail_after(WAIT):
            assert await flooder.ask(Flood(b.ref("ak://a/inbox"), 6), timeout=None) == 6
        assert [(await next_message(received)).n for _ in range(4)] == [0, 1, 2, 3]
        assert b.dead_letters.by_reason == {"peer unreachable": 2}


async def test_control_frames_have_a_bounded_headroom(caplog):
    dead = f"{HOST}:{free_port()}"
    async with ActorSystem(name="a") as a:
        transport = await serve_tcp(a, token=TOKEN, send_buffer=4, unreachable_after=WAIT)
        tell = P.pack_frame(P.TELL, "echo", encode_message(Echo("x")))
        reply = P.pack_frame(P.REPLY, 1, True, encode_value("x"))
        assert [transport.send_frame(dead, tell) for _ in range(5)] == [True] * 4 + [False]
        assert [transport.send_frame(dead, reply, True) for _ in range(5)] == [True] * 4 + [False]
        assert transport.send_frame(dead, tell) is False
        assert "8 frames wait for" in caplog.text and "is lost" in caplog.text


async def test_graceful_shutdown_flushes_queued_frames():
    # More than the socket buffers hold, queued by ``stopping`` just before the close.
    blobs = 200
    async with ActorSystem(name="b") as b:
        tb = await serve_tcp(b, token=TOKEN)
        inbox, received = spawn_inbox(b)
        async with ActorSystem(name="client") as client:
            transport = TcpTransport(client, token=TOKEN)
            await transport.start()
            with trio.fail_after(WAIT):
                await transport.connect(HOST, tb.port)
            target = client.ref("ak://b/inbox")
            client.spawn(partial(Farewell, target, blobs), name="worker")
            worker = b.ref("ak://client/worker")
            inbox.tell(Watch(worker))
            with trio.fail_after(WAIT):
                assert await worker.ask(Echo("x")) == "x"
        assert [(await next_message(received)).n for _ in range(blobs)] == list(range(blobs))
        assert await next_message(received) == Terminated(worker, "shutdown")


# --- a peer in another OS process -----------------------------------------------------------


async def read_line(stream: trio.abc.ReceiveStream) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some(100)
        if not chunk:
            raise AssertionError(f"the peer process exited (stdout: {line!r})")
        line += chunk
    return line


@asynccontextmanager
async def peer_process(port: int):
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(PEER_SCRIPT), str(port), TOKEN], stdout=subprocess.PIPE
    )
    try:
        with trio.fail_after(15):
            assert int(await read_line(proc.stdout)) == port
        yield proc
    finally:
        proc.kill()
        with trio.CancelScope(shield=True):
            await proc.wait()
            await proc.stdout.aclose()


async def test_a_killed_peer_process_is_unreachable():
    port = free_port()
    async with ActorSystem(name="a") as a:
        await serve_tcp(a, token=TOKEN, unreachable_after=0.5, reconnect_min=0.05)
        inbox, received = spawn_inbox(a)
        echo = a.ref(f"ak://{HOST}:{port}/echo")
        outcome = []

        async def ask_forever():
            try:
                await echo.ask(Hang(inbox), timeout=None)
            except Undeliverable as exc:
                outcome.append(exc)

        async with peer_process(port) as proc:
            with trio.fail_after(WAIT):
                assert await echo.ask(Echo("hi")) == "hi"
            inbox.tell(Watch(echo))
            with trio.fail_after(2 * WAIT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ask_forever)
                    # The other process has the ask (and, before it, the WATCH).
                    assert await next_message(received) == Hanging()
                    proc.kill()
                    await proc.wait()
        assert [e.reason for e in outcome] == ["peer unreachable"]
        assert await next_message(received) == Terminated(echo, "peer unreachable")


async def test_a_restarted_peer_process_is_reached_again_as_a_new_incarnation():
    port = free_port()
    async with ActorSystem(name="a") as a:
        # Unreachable only after far longer than the test waits: the watch can only end
        # because the redial reaches a new incarnation.
        await serve_tcp(a, token=TOKEN, unreachable_after=60, reconnect_min=0.05, reconnect_max=0.2)
        inbox, received = spawn_inbox(a)
        echo = a.ref(f"ak://{HOST}:{port}/echo")
        async with peer_process(port) as proc:
            inbox.tell(Watch(echo))
            with trio.fail_after(WAIT):
                assert await echo.ask(Echo("first")) == "first"
            proc.kill()
            with trio.fail_after(WAIT):
                await proc.wait()
        async with peer_process(port):
            assert await next_message(received) == Terminated(echo, "peer unreachable")
            with trio.fail_after(WAIT):
                assert await echo.ask(Echo("again")) == "again"
            assert a.transport.connected_peers() == [f"{HOST}:{port}"]


# --- authentication --------------------------------------------------------------------------


async def test_a_wrong_token_is_rejected_and_good_peers_are_still_served(caplog):
    async with ActorSystem(name="b") as b:
        tb = await serve_tcp(b, token=TOKEN)
        b.spawn(EchoActor, name="echo")
        # "a-bad" < "b" checks b's proof first; "z-bad" > "b" is checked by b.
        for name in ("a-bad", "z-bad"):
            async with ActorSystem(name=name) as bad:
                transport = TcpTransport(bad, token="wrong", handshake_timeout=0.5)
                await transport.start()
                with trio.fail_after(WAIT), pytest.raises(ProtocolError):
                    await transport.connect(HOST, tb.port)
                assert tb.connected_peers() == []
        assert any("AuthenticationError" in r.getMessage() for r in caplog.records)
        async with ActorSystem(name="good") as good:
            transport = TcpTransport(good, token=TOKEN)
            await transport.start()
            with trio.fail_after(WAIT):
                assert await transport.connect(HOST, tb.port) == "b"
                assert await good.ref("ak://b/echo").ask(Echo("ok")) == "ok"
            assert tb.connected_peers() == ["good"]


# --- bad input from raw clients --------------------------------------------------------------


def _resolve(system: str, name: str) -> tuple[str, str]:
    return (system, name)


class RawPeer:
    """A tiny hand-written client of the wire protocol. Its names sort after any
    server name used here, so it sends its AUTH first and the server decides."""

    count = 0

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = P.FrameReader(1 << 30)
        self.frames: list[bytes] = []
        self.corr = 10**12  # far from the correlation ids random frames carry
        self.others: list[list] = []  # frames that came while ``ask`` waited for its reply
        RawPeer.count += 1
        self.name = f"~raw-{RawPeer.count}"

    @classmethod
    async def open(cls, port: int) -> RawPeer:
        return cls(await trio.open_tcp_stream(HOST, port))

    @classmethod
    async def connect(cls, port: int, token: str = TOKEN, realm: str = P.MEMBER) -> RawPeer:
        raw = await cls.open(port)
        await raw.handshake(token, realm)
        return raw

    async def handshake(self, token: str, realm: str = P.MEMBER) -> None:
        shake = Handshake(token.encode(), self.name, b"raw", bytes(range(16)), realm=realm)
        await self.send_frame(shake.hello())
        shake.receive_hello(await self.receive_frame())
        await self.send_frame(shake.auth())
        shake.receive_auth(await self.receive_frame())

    async def send_frame(self, payload: bytes) -> None:
        await self.send_raw(P.with_length(payload))

    async def send_raw(self, data: bytes, *, eof: bool = False) -> None:
        """Send bytes; a server that has hung up already is not an error here: what
        the tests check is that it does hang up."""
        try:
            await self.stream.send_all(data)
            if eof:
                await self.stream.send_eof()
        except trio.BrokenResourceError:
            pass

    async def receive_frame(self) -> bytes | None:
        """The next frame, or None once the server has closed the connection."""
        with trio.fail_after(WAIT):
            while not self.frames:
                try:
                    data = await self.stream.receive_some()
                except trio.BrokenResourceError:
                    return None
                if not data:
                    return None
                self.frames.extend(self.reader.feed(data))
        return self.frames.pop(0)

    async def ask(self, target: str, msg: object):
        """The reply to an ASK, or None if the server closed the connection."""
        self.corr += 1
        await self.send_frame(P.pack_frame(P.ASK, target, encode_message(msg), self.corr))
        while (payload := await self.receive_frame()) is not None:
            frame = P.parse_frame(payload)
            if frame[0] == P.REPLY and frame[1] == self.corr:
                assert frame[2] is True
                return decode_value(frame[3], _resolve)
            self.others.append(frame)
        return None

    async def cut_off(self) -> bool:
        """Wait (bounded) until the server closes the connection."""
        while await self.receive_frame() is not None:
            pass
        return True

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def server(**options):
    """System "b" with an echo actor, and a raw client already connected to it."""
    async with ActorSystem(name="b") as b:
        tb = await serve_tcp(b, token=TOKEN, **options)
        b.spawn(EchoActor, name="echo")
        good = await RawPeer.connect(tb.port)
        assert await good.ask("echo", Echo("ready")) == "ready"
        yield tb, good
        # The already-open connection and a new one both still work.
        assert await good.ask("echo", Echo("still")) == "still"
        fresh = await RawPeer.connect(tb.port)
        assert await fresh.ask("echo", Echo("fresh")) == "fresh"
        await fresh.aclose()
        await good.aclose()


async def test_a_raw_peer_with_a_wrong_proof_gets_no_proof_back(caplog):
    async with server() as (tb, _):
        raw = await RawPeer.open(tb.port)
        shake = Handshake(b"wrong", raw.name, b"raw", bytes(16))
        await raw.send_frame(shake.hello())
        shake.receive_hello(await raw.receive_frame())
        await raw.send_frame(shake.auth())
        assert await raw.receive_frame() is None  # closed, and no AUTH of the server
        assert any("AuthenticationError" in r.getMessage() for r in caplog.records)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
async def test_random_first_bytes_are_refused(data):
    async with server() as (tb, _):
        raw = await RawPeer.open(tb.port)
        await raw.send_raw(data, eof=True)
        assert await raw.cut_off()


@settings(max_examples=40, deadline=None)
@given(payload=st.binary(max_size=300))
async def test_a_random_first_frame_is_refused_at_once(payload):
    # A complete frame, so the server must decide now and not wait for more bytes.
    async with server() as (tb, _):
        raw = await RawPeer.open(tb.port)
        await raw.send_frame(payload)
        with trio.fail_after(2):
            assert await raw.cut_off()


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout():
    async with server(handshake_timeout=0.3) as (tb, _):
        raw = await RawPeer.open(tb.port)
        start = trio.current_time()
        assert await raw.cut_off()
        assert trio.current_time() - start >= 0.25


# Random msgpack data, and arrays that look like frames (a kind, then fields).
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.sampled_from(["echo", "tcp_test.Echo", "nobody"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
_messages = st.one_of(
    _values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    st.binary(max_size=20),
)
_fields = _scalars | _messages | _values
_frame_like = st.builds(
    lambda kind, fields: msgpack.packb([kind, *fields], use_bin_type=True),
    st.integers(0, 20),
    st.lists(_fields, max_size=5),
)
_payloads = st.one_of(
    _frame_like,
    _values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    st.binary(max_size=40),
    st.builds(
        lambda target, msg: P.pack_frame(P.TELL, target, msg),
        st.sampled_from(["echo", "nobody"]),
        _messages,
    ),
)


def acceptable(payload: bytes) -> bool:
    """The model: which frames a system must accept after the handshake (the others
    break the protocol and cost the sender its connection)."""
    try:
        frame = P.parse_frame(payload)
    except ProtocolError:
        return False
    kind = frame[0]
    if kind in (P.TELL, P.ASK):
        try:
            decode_message(frame[2], _resolve)
        except DecodeError:
            return False
        return True
    if kind == P.REPLY:
        if frame[2]:
            return type(frame[3]) is bytes
        try:
            P.error_from_wire(frame[3])
        except ProtocolError:
            return False
        return True
    return kind in (P.WATCH, P.UNWATCH, P.TERMINATED, P.HEARTBEAT)


@settings(max_examples=60, deadline=None)
@given(payload=_payloads)
async def test_random_frames_after_the_handshake(payload):
    async with server() as (tb, _):
        raw = await RawPeer.connect(tb.port)
        await raw.send_frame(payload)
        reply = await raw.ask("echo", Echo("after"))
        assert reply == ("after" if acceptable(payload) else None)
        await raw.aclose()


_ECHO_TAG = "tcp_test.Echo"


@pytest.mark.parametrize(
    "payload",
    [
        P.pack_frame(99, "x"),
        P.pack_frame(P.HELLO, P.MAGIC, P.WIRE_VERSION, "x", b"i", bytes(16), P.MEMBER),
        P.pack_frame(P.AUTH, bytes(32)),
        P.pack_frame(P.TELL, 5, b"x"),
        P.pack_frame(P.TELL, "echo"),
        P.pack_frame(P.ASK, "echo", "not bytes", 1),
        P.pack_frame(P.TELL, "echo", msgpack.packb(["no.such.tag", "x"])),
        P.pack_frame(P.TELL, "echo", msgpack.packb([_ECHO_TAG, 5])),
        P.pack_frame(P.ASK, "echo", msgpack.packb([_ECHO_TAG]), 7),
        P.pack_frame(P.REPLY, 1, False, ["failed", "x"]),
        P.pack_frame(P.REPLY, 1, True, "not bytes"),
        msgpack.packb({"kind": P.TELL}),
        b"\xc1",
    ],
    ids=[
        "unknown kind",
        "hello after the handshake",
        "auth after the handshake",
        "wrong field type",
        "missing field",
        "ask message not bytes",
        "unknown message tag",
        "message field of the wrong type",
        "message missing a field",
        "malformed error reply",
        "reply value not bytes",
        "not an array",
        "not msgpack",
    ],
)
async def test_a_bad_frame_closes_only_its_connection(payload):
    async with server() as (tb, _):
        raw = await RawPeer.connect(tb.port)
        await raw.send_frame(payload)
        assert await raw.cut_off()


async def test_a_frame_above_max_frame_is_refused_before_its_body():
    limit = 8192
    async with server(max_frame=limit) as (tb, _):
        overhead = len(P.pack_frame(P.WATCH, "w" * limit, "nobody")) - limit
        near = P.pack_frame(P.WATCH, "w" * (limit - overhead), "nobody")
        assert len(near) == limit
        raw = await RawPeer.connect(tb.port)
        await raw.send_frame(near)  # exactly the limit: fine
        assert await raw.ask("echo", Echo("fits")) == "fits"
        await raw.send_raw((limit + 1).to_bytes(4, "big"))
        with trio.fail_after(2):  # well before frame_timeout: it does not wait for a body
            assert await raw.cut_off()


async def test_a_peer_stalling_inside_a_frame_is_cut_off():
    async with server(frame_timeout=0.3) as (tb, good):
        raw = await RawPeer.connect(tb.port)
        await raw.send_raw((100).to_bytes(4, "big") + b"x" * 10)
        start = trio.current_time()
        assert await raw.cut_off()
        assert trio.current_time() - start >= 0.25
        # ``good`` sat idle (between frames) for longer than frame_timeout: still open.
        assert await good.ask("echo", Echo("idle is fine")) == "idle is fine"


async def test_a_hung_peer_is_cut_off_and_an_idle_live_one_is_not():
    """A hung process keeps its socket open (the kernel acknowledges for it): silence
    tells. A live but idle system is never silent: it sends heartbeats."""
    async with ActorSystem(name="a") as a, ActorSystem(name="b") as b:
        options = {"token": TOKEN, "silence_timeout": 0.4}
        ta, tb = await serve_tcp(a, **options), await serve_tcp(b, **options)
        b.spawn(EchoActor, name="echo")
        echo = a.ref("ak://b/echo")
        ta.add_peer("b", HOST, tb.port)
        assert await echo.ask(Echo("hi")) == "hi"
        connection = ta._peers["b"].conn
        hung = await RawPeer.connect(tb.port)  # handshakes, then says nothing at all
        start = trio.current_time()
        assert await hung.cut_off()
        assert trio.current_time() - start >= 0.35
        await trio.sleep(1.2)  # idle for three silence timeouts
        assert ta._peers["b"].conn is connection  # never closed: heartbeats
        assert await echo.ask(Echo("still")) == "still"


# --- found in review -------------------------------------------------------------------------


class NullTransport:
    """Accepts every frame and keeps it: a connected peer that never answers."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send_frame(self, system: str, payload: bytes, control: bool = False) -> bool:
        self.sent.append((system, payload))
        return True

    async def send_frame_wait(self, system: str, payload: bytes) -> bool:
        return self.send_frame(system, payload)

    async def aclose(self) -> None:
        pass


async def test_unsolicited_terminated_frames_are_ignored() -> None:
    async with ActorSystem(name="me") as system:
        system.transport = NullTransport()
        inbox, _ = spawn_inbox(system)
        for n in range(1000):
            system._on_frame("peer", P.pack_frame(P.TERMINATED, "inbox", f"t{n}", "x"))
        assert len(inbox._cell.mailbox) == 0
        system._nursery.cancel_scope.cancel()


async def test_a_reply_is_accepted_only_from_the_system_that_was_asked() -> None:
    async with ActorSystem(name="me") as system:
        system.transport = transport = NullTransport()
        with trio.move_on_after(0.5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(system.ref("ak://x/echo").ask, Echo("hi"))
                await trio.testing.wait_all_tasks_blocked()
                ((_, frame),) = transport.sent
                corr = P.parse_frame(frame)[3]
                forged = P.pack_frame(P.REPLY, corr, True, encode_value("forged"))
                system._on_frame("y", forged)  # y was never asked
                await trio.testing.wait_all_tasks_blocked()
                assert system._asks  # still waiting for x
                system._on_frame("x", forged)  # x answers: now it is accepted
        assert not system._asks
        system._nursery.cancel_scope.cancel()


async def test_a_watch_survives_a_reconnect_of_a_peer_that_cannot_be_dialled() -> None:
    async with ActorSystem(name="b") as b, ActorSystem(name="client") as client:
        tb = await serve_tcp(b, token=TOKEN, host=HOST)
        echo = b.spawn(EchoActor, name="echo")
        tc = TcpTransport(client, token=TOKEN, reconnect_min=0.05)
        await tc.start()
        inbox, received = spawn_inbox(client)
        remote = client.ref("ak://b/echo")
        with trio.fail_after(WAIT):
            await tc.connect(HOST, tb.port)
            inbox.tell(Watch(remote))
            assert await remote.ask(Echo("before")) == "before"
            # A fault cuts the connection: b cannot dial client, so it declares client
            # down (and forgets client's watches); client dials b again.
            tc._peers["b"].conn.close()
            await trio.testing.wait_all_tasks_blocked()
            while "b" not in tc.connected_peers():
                await tc._adoptions.park()
            # The WATCH sent again on adoption travels ahead of this ask.
            assert await remote.ask(Echo("after")) == "after"
            assert echo._cell.watchers
        await b.stop(echo)
        with trio.fail_after(WAIT):
            assert await received.receive() == Terminated(remote, "stopped")


async def test_a_message_too_large_for_the_peer_is_lost_alone() -> None:
    async with two_systems(max_frame=64 * 1024) as (a, b):
        _, received = spawn_inbox(b)
        remote = a.ref("ak://b/inbox")
        with trio.fail_after(WAIT):
            await remote.send(Seq(1))
            assert await received.receive() == Seq(1)
            remote.tell(Blob(2, bytes(100_000)))  # above the limit: refused here
            await remote.send(Seq(3))
            assert await received.receive() == Seq(3)
        assert a.dead_letters.by_reason == {"peer unreachable": 1}


def test_an_envelope_of_many_small_containers_is_refused() -> None:
    with pytest.raises(ProtocolError, match="malformed frame"):
        P.parse_frame(msgpack.packb([P.TELL, "x", b"", [[]] * 100_000]))
    with pytest.raises(ProtocolError, match="malformed frame"):
        P.parse_frame(msgpack.packb([P.TELL, {"a": 1}, b""]))


# --- realms: a second, restricted secret for guests ------------------------------------------

GUEST_TOKEN = "guest-token"
REFUSED = "not permitted for guests"


def member_shake(name: str = "m", guest_token: bytes | None = b"g", token: bytes = b"t"):
    return Handshake(token, name, b"inc-" + name.encode(), name[0].encode() * 16,
                     guest_token=guest_token)  # fmt: skip


def guest_shake(name: str = "n", token: bytes = b"g", realm: str = P.GUEST):
    return Handshake(token, name, b"inc-" + name.encode(), name[0].encode() * 16, realm=realm)


def complete(x: Handshake, y: Handshake) -> None:
    """Both sides of a handshake, in the order the transport runs them."""
    x.receive_hello(y.hello())
    y.receive_hello(x.hello())
    first, second = (x, y) if x.speaks_first else (y, x)
    second.receive_auth(first.auth())
    first.receive_auth(second.auth())


@pytest.mark.parametrize("guest_name", ["a-node", "z-node"])  # it checks first, or second
def test_a_guest_with_the_guest_secret_is_taken(guest_name):
    member, guest = member_shake(), guest_shake(guest_name)
    complete(member, guest)
    assert member.done and guest.done
    assert member.realm == guest.realm == P.GUEST
    assert member.peer.realm == P.GUEST and guest.peer.realm == P.MEMBER


@pytest.mark.parametrize("guest_name", ["a-node", "z-node"])
def test_a_guest_holding_the_member_secret_is_refused(guest_name):
    with pytest.raises(AuthenticationError, match="guest realm"):
        complete(member_shake(), guest_shake(guest_name, token=b"t"))


def test_the_member_secret_on_a_guest_hello_is_refused():
    member, guest = member_shake(), guest_shake()
    guest.receive_hello(member.hello())
    member.receive_hello(guest.hello())
    for realm in P.REALMS:  # the member secret proves nothing here, in either realm's MAC
        proof = P.auth_proof(b"t", realm, member.nonce, "n", "m")
        with pytest.raises(AuthenticationError):
            member.receive_auth(P.pack_frame(P.AUTH, proof))
    assert not member.done


def test_a_guest_claiming_to_be_a_member_is_refused():
    # Its HELLO says member, so the connection is a member's: the guest secret fails.
    with pytest.raises(AuthenticationError, match="member realm"):
        complete(member_shake(), guest_shake(token=b"g", realm=P.MEMBER))


def test_a_member_without_the_guest_secret_refuses_guests_before_any_auth():
    member, guest = member_shake(guest_token=None), guest_shake()
    with pytest.raises(AuthenticationError, match="takes no guests"):
        member.receive_hello(guest.hello())
    with pytest.raises(ProtocolError, match="AUTH before HELLO"):
        member.auth()  # there is nothing to send


def test_two_guests_refuse_each_other():
    one, other = guest_shake("n"), guest_shake("o")
    for x, y in ((one, other), (other, one)):
        with pytest.raises(ProtocolError, match="guests connect only to members"):
            x.receive_hello(y.hello())


def test_a_proof_for_one_realm_is_no_proof_for_the_other():
    nonce = b"N" * 16
    for realm, other in (P.REALMS, reversed(P.REALMS)):
        proof = P.auth_proof(b"same secret", realm, nonce, "a", "b")
        assert P.check_proof(b"same secret", realm, nonce, "a", "b", proof)
        assert not P.check_proof(b"same secret", other, nonce, "a", "b", proof)


def test_members_meet_as_members_whatever_guest_secrets_they_hold():
    one, other = member_shake("m"), member_shake("o", guest_token=None)
    complete(one, other)
    assert one.realm == other.realm == P.MEMBER


@pytest.mark.parametrize(
    "options, error",
    [
        ({"realm": "admin"}, ValueError),
        ({"realm": "guest", "guest_token": GUEST_TOKEN}, ValueError),
        ({"guest_token": TOKEN}, ValueError),
        ({"guest_token": ""}, ValueError),
        ({"guest_exports": ["apiserver"]}, ValueError),
        ({"realm": "guest", "guest_exports": ["apiserver"]}, ValueError),
        ({"guest_token": GUEST_TOKEN, "guest_exports": "apiserver"}, TypeError),
    ],
)
def test_realm_options_that_make_no_sense_are_refused(options, error):
    with pytest.raises(error):
        TcpTransport(ActorSystem(name="x"), token=TOKEN, **options)


@asynccontextmanager
async def member_and_guest(guest: str = "node", **options):
    """Member "m" (actors "echo", exported to guests, and "etcd", not exported) and
    guest ``guest``; both listen and know where the other is."""
    async with ActorSystem(name="m") as m, ActorSystem(name=guest) as n:
        tm = await serve_tcp(m, token=TOKEN, guest_token=GUEST_TOKEN, guest_exports={"echo"},
                             **options)  # fmt: skip
        m.spawn(EchoActor, name="echo")
        m.spawn(EchoActor, name="etcd")
        tn = await serve_tcp(n, token=GUEST_TOKEN, realm="guest", **options)
        tm.add_peer(guest, HOST, tn.port)
        tn.add_peer("m", HOST, tm.port)
        yield m, n


@pytest.mark.parametrize("guest", ["a-node", "z-node"])  # the guest decides, or the member
async def test_a_guest_asks_exported_actors_only_and_keeps_its_connection(guest):
    async with member_and_guest(guest) as (m, n):
        echo, etcd = n.ref("ak://m/echo"), n.ref("ak://m/etcd")
        with trio.fail_after(WAIT):
            assert await echo.ask(Echo("hi")) == "hi"
            connection = n.transport._peers["m"].conn
            for target in (etcd, n.ref("ak://m/nobody")):  # existence is not told
                with pytest.raises(Undeliverable) as info:
                    await target.ask(Echo("secret"))
                assert info.value.reason == REFUSED
            etcd.tell(Echo("lost"))
            assert await echo.ask(Echo("again")) == "again"
        assert n.transport._peers["m"].conn is connection
        assert m.dead_letters.by_reason == {REFUSED: 3}
        assert m.stats().actors["etcd"].received == 0
        assert m.transport.peer_realm(guest) == n.transport.peer_realm("m") == P.GUEST


async def test_a_guest_watching_an_actor_it_may_not_address_gets_terminated():
    async with member_and_guest() as (m, n):
        inbox, received = spawn_inbox(n)
        etcd, echo = n.ref("ak://m/etcd"), n.ref("ak://m/echo")
        inbox.tell(Watch(etcd))
        inbox.tell(Watch(echo))
        assert await next_message(received) == Terminated(etcd, REFUSED)
        with trio.fail_after(WAIT):
            assert await echo.ask(Echo("x")) == "x"  # behind both WATCHes
            assert not m.lookup("etcd")._cell.watchers
            await m.stop(m.lookup("echo"))
        assert await next_message(received) == Terminated(echo, "stopped")


async def test_a_member_dials_a_guest_and_the_guest_may_only_answer():
    async with member_and_guest() as (m, n):
        local = n.spawn(EchoActor, name="kubelet")
        inbox, received = spawn_inbox(m)
        kubelet = m.ref("ak://node/kubelet")
        inbox.tell(Watch(kubelet))
        with trio.fail_after(WAIT):
            assert await kubelet.ask(Echo("logs")) == "logs"
            assert m.transport._peers["node"].conn.endpoint is not None  # m dialled
            assert m.transport.peer_realm("node") == P.GUEST
            # The guest's actor may not tell the member's inbox (not exported); the TELL
            # travels ahead of the reply.
            assert await kubelet.ask(Forward(inbox, "not allowed")) is None
            assert m.dead_letters.by_reason == {REFUSED: 1}
            await n.stop(local)
        assert await next_message(received) == Terminated(kubelet, "stopped")


async def test_a_guest_may_message_and_watch_an_actor_whose_granted_name_it_was_told():
    async with member_and_guest() as (m, n):
        n.spawn(EchoActor, name="kubelet")
        name = m.granted_name("receiver")
        assert name.startswith("granted:receiver-") and name != m.granted_name("receiver")
        inbox, received = spawn_inbox(m, name=name)
        kubelet = m.ref("ak://node/kubelet")
        with trio.fail_after(WAIT):
            # the member hands the guest the granted ref: the guest's TELL arrives
            assert await kubelet.ask(Forward(inbox, "streamed back")) is None
            assert await next_message(received) == Echo("streamed back")
        # another token is another name: nobody there (guests learn no more than that)
        guessed = n.ref(f"ak://m/{name[:-1]}{'1' if name.endswith('0') else '0'}")
        with pytest.raises(Undeliverable, match="no such actor"):
            await guessed.ask(Echo("x"))
        watcher, watched = spawn_inbox(n, name="watcher")
        watcher.tell(Watch(n.ref(f"ak://m/{name}")))
        with trio.fail_after(WAIT):
            assert await n.ref("ak://m/echo").ask(Echo("behind the watch")) == "behind the watch"
            await m.stop(inbox)
        assert await next_message(watched) == Terminated(n.ref(f"ak://m/{name}"), "stopped")
        assert m.dead_letters.by_reason.get(REFUSED, 0) == 0
    # names are keyed by a secret of the system (not its incarnation, which its HELLO
    # tells every peer): another system's are not the same
    same = b"12345678"
    one, two = ActorSystem(name="m", incarnation=same), ActorSystem(name="m", incarnation=same)
    assert one.granted_name("x") != two.granted_name("x")
    keyed = [ActorSystem(name="s", grant_key=b"k" * 32).granted_name("x") for _ in "ab"]
    assert keyed[0] == keyed[1]  # given a key (a simulation), they repeat


async def test_members_are_unchanged_by_guest_options():
    async with two_systems(guest_token=GUEST_TOKEN, guest_exports={"echo"}) as (a, b):
        etcd = b.spawn(EchoActor, name="etcd")
        inbox, received = spawn_inbox(a)
        remote = a.ref("ak://b/etcd")
        inbox.tell(Watch(remote))
        with trio.fail_after(WAIT):
            assert await remote.ask(Echo("member")) == "member"
            assert a.transport.peer_realm("b") == b.transport.peer_realm("a") == P.MEMBER
            await b.stop(etcd)
        assert await next_message(received) == Terminated(remote, "stopped")


async def test_a_reconnected_guest_is_still_a_guest():
    async with member_and_guest(reconnect_min=0.05) as (m, n):
        n.spawn(EchoActor, name="kubelet")

        async def guest_is_refused():
            with pytest.raises(Undeliverable, match=REFUSED):
                await n.ref("ak://m/etcd").ask(Echo("x"))

        async def member_is_answered():
            assert await m.ref("ak://node/kubelet").ask(Echo("y")) == "y"

        with trio.fail_after(WAIT):
            assert await n.ref("ak://m/echo").ask(Echo("x")) == "x"
            # Who cut the connection asks first: its frames wait for the new connection
            # (the other side might hand them to the dead one).
            for system, peer, first, then in (
                (n, "m", guest_is_refused, member_is_answered),
                (m, "node", member_is_answered, guest_is_refused),
            ):
                system.transport._peers[peer].conn.close()
                await first()
                await then()
                assert m.transport.peer_realm("node") == n.transport.peer_realm("m") == P.GUEST


@pytest.mark.parametrize("guest", ["a-node", "z-node"])
async def test_a_member_without_the_guest_secret_refuses_guests(guest, caplog):
    async with ActorSystem(name="m") as m, ActorSystem(name=guest) as n:
        tm = await serve_tcp(m, token=TOKEN)
        tn = await serve_tcp(n, token=GUEST_TOKEN, realm="guest", handshake_timeout=0.5)
        with trio.fail_after(WAIT):
            with pytest.raises(ProtocolError):
                await tn.connect(HOST, tm.port)
            with pytest.raises(AuthenticationError, match="takes no guests"):
                await tm.connect(HOST, tn.port)
        assert tm.connected_peers() == tn.connected_peers() == []
        assert any("takes no guests" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "listener, dialler, logged",
    [
        ("node", {"token": GUEST_TOKEN, "realm": "guest"}, "guests connect only to members"),
        ("node", {"token": TOKEN, "guest_token": "wrong"}, "AuthenticationError"),
        ("m", {"token": TOKEN, "realm": "guest"}, "AuthenticationError"),
        ("m", {"token": GUEST_TOKEN}, "AuthenticationError"),
    ],
    ids=[
        "a guest refuses a guest",
        "a guest refuses a member with the wrong guest secret",
        "a member refuses a guest holding the member secret",
        "a member refuses a guest that says it is a member",
    ],
)
async def test_who_is_refused(listener, dialler, logged, caplog):
    # "other" sorts after "m" and "node": the listener checks the proof, and logs it.
    async with member_and_guest() as (m, n), ActorSystem(name="other") as other:
        target = {"m": m, "node": n}[listener].transport
        transport = TcpTransport(other, handshake_timeout=0.5, **dialler)
        await transport.start()
        with trio.fail_after(WAIT), pytest.raises(ProtocolError):
            await transport.connect(HOST, target.port)
        assert "other" not in target.connected_peers()
        assert any(logged in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("name", ["a", "b"])
async def test_a_guest_cannot_take_the_name_of_a_member(name, caplog):
    async with two_systems(guest_token=GUEST_TOKEN, guest_exports={"echo"}) as (a, b):
        member = {"a": a, "b": b}[name]
        other = b if member is a else a
        other.spawn(EchoActor, name="etcd")
        remote = member.ref(f"ak://{other.name}/etcd")
        with trio.fail_after(WAIT):
            assert await remote.ask(Echo("x")) == "x"
        connection = other.transport._peers[name].conn
        async with ActorSystem(name=name) as impostor:  # a new incarnation, as a restart
            ti = TcpTransport(impostor, token=GUEST_TOKEN, realm="guest", handshake_timeout=0.5)
            await ti.start()
            with trio.fail_after(WAIT), pytest.raises(ProtocolError):
                await ti.connect(HOST, other.transport.port)
        assert any("claims the name of member" in r.getMessage() for r in caplog.records)
        assert other.transport._peers[name].conn is connection
        with trio.fail_after(WAIT):
            assert await remote.ask(Echo("still mine")) == "still mine"


async def test_a_guest_that_comes_back_as_a_member_starts_afresh(caplog):
    async with member_and_guest() as (m, n):
        with trio.fail_after(WAIT):
            inbox, _ = spawn_inbox(n)
            inbox.tell(Watch(n.ref("ak://m/echo")))
            assert await n.ref("ak://m/echo").ask(Echo("x")) == "x"
            assert m.lookup("echo")._cell.watchers
            # The same incarnation, now with the member secret.
            async with ActorSystem(name="node", incarnation=n.incarnation) as promoted:
                tp = TcpTransport(promoted, token=TOKEN)
                await tp.start()
                await tp.connect(HOST, m.transport.port)
                assert await promoted.ref("ak://m/etcd").ask(Echo("y")) == "y"
                assert m.transport.peer_realm("node") == P.MEMBER
                assert not m.lookup("echo")._cell.watchers  # nothing of its guest days
        assert any("was a guest" in r.getMessage() for r in caplog.records)


@asynccontextmanager
async def guest_server():
    """Member "b" with "echo" exported to guests and "etcd" not, and a raw guest."""
    async with ActorSystem(name="b") as b:
        tb = await serve_tcp(b, token=TOKEN, guest_token=GUEST_TOKEN, guest_exports={"echo"})
        b.spawn(EchoActor, name="echo")
        b.spawn(EchoActor, name="etcd")
        raw = await RawPeer.connect(tb.port, GUEST_TOKEN, P.GUEST)
        yield b, raw
        await raw.aclose()


_guest_frames = st.lists(
    st.tuples(
        st.sampled_from([P.TELL, P.ASK, P.WATCH, P.UNWATCH, P.TERMINATED, P.REPLY]),
        st.sampled_from(["etcd", "echo", "nobody", "ETCD", "etcd\0", ""]),
    ),
    min_size=1,
    max_size=8,
)


def guest_frame(kind: int, target: str, n: int) -> bytes:
    message = encode_message(Echo(f"#{n}"))
    fields = {
        P.TELL: (target, message),
        P.ASK: (target, message, n),
        P.WATCH: ("watcher", target),
        P.UNWATCH: ("watcher", target),
        P.TERMINATED: ("inbox", target, "forged"),
        P.REPLY: (n, True, encode_value(target)),
    }
    return P.pack_frame(kind, *fields[kind])


@settings(max_examples=30, deadline=None)
@given(frames=_guest_frames)
async def test_a_guest_cannot_reach_an_unexported_actor_by_any_frame(frames):
    async with guest_server() as (b, raw):
        for n, (kind, target) in enumerate(frames):
            await raw.send_frame(guest_frame(kind, target, n))
        assert await raw.ask("echo", Echo("after")) == "after"  # same connection
        refused = [(k, t) for k, t in frames if k in (P.TELL, P.ASK) and t != "echo"]
        assert b.stats().actors["etcd"].received == 0
        assert not b.lookup("etcd")._cell.watchers
        assert b.dead_letters.by_reason.get(REFUSED, 0) == len(refused)
        answers = [f for f in raw.others if f[0] == P.TERMINATED or f[:3] == [P.REPLY, f[1], False]]
        expected = [(k, t) for k, t in frames if k in (P.ASK, P.WATCH) and t != "echo"]
        assert len(answers) == len(expected)
        for frame in answers:
            reason = P.error_from_wire(frame[3]).reason if frame[0] == P.REPLY else frame[3]
            assert reason == REFUSED
