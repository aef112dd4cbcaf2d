"""``kubectl port-forward`` with the real kubectl (SPDY inside a WebSocket) against an HTTPS
API server with one node whose pods are real processes: connections carried both ways
with their ends, several at once, the error kubectl prints for a port nothing listens
on, RBAC, and the raw protocol (PING, a frame that breaks SPDY, refusals)."""

from __future__ import annotations

import http.client
import os
import ssl
import struct
import zlib

import pytest
import trio
import websocket
from kubectl_node import WAIT, node_cluster
from kubectl_run import PortForward, free_port, round_trip

from actorkube.apiserver import _portforwardws
from actorkube.apiserver._spdy import DICTIONARY
from actorkube.pki import ClusterPki

ECHO = """
import os, socket, threading, time
def echo(conn):
    while (data := conn.recv(65536)) and data != b"close":
        conn.sendall(data)
    conn.close()
def idle(conn):
    time.sleep(1e9)  # never reads
def serve(port, handle):
    server = socket.create_server((os.environ["POD_IP"], port))
    while True:
        threading.Thread(target=handle, args=(server.accept()[0],), daemon=True).start()
threading.Thread(target=serve, args=(7003, idle), daemon=True).start()
serve(7000, echo)
"""
POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "echo", "namespace": "default"},
       "spec": {"nodeName": "n1", "containers": [{
           "name": "app", "image": "python:3.11", "command": ["python3", "-c", ECHO],
           "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
           "readinessProbe": {"tcpSocket": {"port": 7000}, "periodSeconds": 1}}]}}  # fmt: skip


@pytest.fixture
async def cluster(tmp_path, nursery):
    return await node_cluster(tmp_path, nursery, POD)


def port_forward(tmp_path, remote: int) -> PortForward:
    return PortForward(tmp_path / "admin.kubeconfig", tmp_path / "cache", "pod/echo", remote)


async def test_connections_are_carried_both_ways_several_at_once(cluster, tmp_path):
    payloads = [os.urandom(3_000_000), b"hello\n", os.urandom(500_000)]
    async with port_forward(tmp_path, 7000) as pf:
        await pf.ready()
        got: dict[int, bytes] = {}
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as nursery:
                for i, data in enumerate(payloads):

                    async def one(i=i, data=data) -> None:
                        got[i] = await round_trip(pf.local, data)

                    nursery.start_soon(one)
            # and again on the same session, after those ended
            assert await round_trip(pf.local, b"again") == b"again"
        assert [got[i] for i in range(len(payloads))] == payloads


async def test_a_connection_outlives_the_ones_that_end_beside_it(cluster, tmp_path):
    # kubectl resets both streams of a connection that ended; those resets must not
    # reach another connection (the first one's request id is 0).
    async with port_forward(tmp_path, 7000) as pf:
        await pf.ready()
        with trio.fail_after(WAIT):
            first = await trio.open_tcp_stream("127.0.0.1", pf.local)
            await first.send_all(b"one")
            assert await first.receive_some(10) == b"one"
            for _ in range(3):
                assert await round_trip(pf.local, b"two") == b"two"
                # the pod closes this one first (kubectl then resets its streams)
                second = await trio.open_tcp_stream("127.0.0.1", pf.local)
                await second.send_all(b"close")
                assert await second.receive_some(10) == b""
                await second.aclose()
            await first.send_all(b"still")
            assert await first.receive_some(10) == b"still"
            await first.aclose()


async def test_a_port_nothing_listens_on_is_an_error_kubectl_prints(cluster, tmp_path):
    async with port_forward(tmp_path, 7001) as pf:
        await pf.ready()
        with trio.fail_after(WAIT):
            assert await round_trip(pf.local, b"x") == b""
            assert await pf.process.wait() == 1  # kubectl gives up on an error, as it does
            err = (await pf.rest_of_stderr()).decode()
    assert "an error occurred forwarding" in err and "7001" in err, err
    assert "error forwarding port 7001 to pod default/echo" in err, err
    assert "Connection refused" in err, err


async def test_rbac_names_the_subresource(cluster, tmp_path):
    run, alice, _, _ = cluster
    for args in (("role", "reader", "--verb=get", "--resource=pods"),
                 ("rolebinding", "reader", "--role=reader", "--user=alice")):  # fmt: skip
        assert (await run("create", *args))[0] == 0
    code, _, err = await run("port-forward", "pod/echo", f"{free_port()}:7000", config=alice)
    assert code == 1 and 'cannot create resource "pods/portforward"' in err, err


# --- the raw protocol ------------------------------------------------------------------------


def _connect(url: str, pki: ClusterPki, protocols=("SPDY/3.1+portforward.k8s.io",),
             query: str = ""):  # fmt: skip
    path = "/api/v1/namespaces/default/pods/echo/portforward" + query
    return websocket.create_connection(
        url.replace("https://", "wss://") + path,
        header=["Authorization: Bearer admin-token"], subprotocols=list(protocols),
        sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": str(pki.ca_file)}, timeout=WAIT,
    )  # fmt: skip


class Client:
    """The client's half of SPDY/3, as much as these tests need."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(p)) + p
            for name, value in headers.items() for p in (name.encode(), value.encode())
        )  # fmt: skip
        block = self.deflate.compress(raw) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        body = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
        return struct.pack(">HHI", 0x8003, 1, len(body)) + body

    @staticmethod
    def data(stream_id: int, data: bytes, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, (1 << 24 if fin else 0) | len(data)) + data


def _frames(ws: websocket.WebSocket, until) -> list[tuple[int, int, bytes]]:
    """(first word, flags, body) of each SPDY frame, until ``until(frames)`` holds."""
    buffer = b""
    frames: list[tuple[int, int, bytes]] = []
    while not until(frames):
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_BINARY, (opcode, data)
        buffer += data
        while len(buffer) >= 8 and len(buffer) >= 8 + (struct.unpack(">I", buffer[4:8])[0]
                                                        & 0xFFFFFF):  # fmt: skip
            first, second = struct.unpack(">II", buffer[:8])
            length = second & 0xFFFFFF
            frames.append((first, second >> 24, buffer[8 : 8 + length]))
            buffer = buffer[8 + length :]
    return frames


async def test_the_raw_protocol(cluster):
    _, _, url, pki = cluster

    def session() -> tuple[list, int]:
        ws = _connect(url, pki)
        assert ws.getsubprotocol() == "spdy/3.1+portforward.k8s.io"  # (lowercased by it)
        client = Client()
        ws.send_binary(struct.pack(">HHII", 0x8003, 6, 4, 7))  # PING 7
        # One connection (request 0) split over several messages, mid-frame.
        wire = (client.syn_stream(1, {"streamtype": "error", "port": "7000", "requestid": "0"})
                + client.syn_stream(3, {"streamtype": "data", "port": "7000", "requestid": "0"})
                + client.data(3, b"ping-pong", fin=True))  # fmt: skip
        for start in range(0, len(wire), 7):
            ws.send_binary(wire[start : start + 7])

        def done(frames) -> bool:  # FIN on both streams
            return sum(1 for first, flags, _ in frames
                       if first in (1, 3) and flags & 1) == 2  # fmt: skip

        frames = _frames(ws, done)
        ws.send_binary(b"\x80\x02\x00\x01" + bytes(4))  # SPDY/2: breaks the protocol
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        return frames, struct.unpack("!H", data[:2])[0]

    frames, closed = await trio.to_thread.run_sync(session)
    assert (0x80030006, 0, struct.pack(">I", 7)) in frames  # the PING came back
    replies = sorted(struct.unpack(">I", body[:4])[0] for first, _, body in frames
                     if first == 0x80030002)  # fmt: skip
    assert replies == [1, 3]  # a SYN_REPLY for each stream
    echoed = b"".join(body for first, _, body in frames if first == 3)
    assert echoed == b"ping-pong"
    assert b"".join(body for first, _, body in frames if first == 1) == b""  # no error
    assert closed == 1007


async def test_refusals_before_the_upgrade(cluster):
    _, _, url, pki = cluster

    def refused(protocols, query: str = "") -> tuple[int, bytes]:
        try:
            _connect(url, pki, protocols, query)
        except websocket.WebSocketBadStatusException as e:
            return e.status_code, e.resp_body
        raise AssertionError("upgraded")

    status, body = await trio.to_thread.run_sync(refused, ("v5.channel.k8s.io",))
    assert status == 400 and b"no supported subprotocol" in body
    many = ",".join(str(7000 + i) for i in range(129))  # one more than a byte names
    for query in ("", "?ports=http", "?ports=70000", "?ports=80&ports=0",
                  "?ports=%D9%A7%D9%A0%D9%A0%D9%A0", f"?ports={many}",
                  "?ports=" + "1" * 5000):  # fmt: skip
        status, body = await trio.to_thread.run_sync(refused, ("v4.channel.k8s.io",), query)
        assert status == 400 and b"query parameter ports" in body, query
    # A message on a channel that no port has breaks the channel protocol.

    def bad_channel() -> int:
        ws = _connect(url, pki, ("v4.channel.k8s.io",), "?ports=7000")
        assert [ws.recv(), ws.recv()] == [b"\x00" + (7000).to_bytes(2, "little"),
                                          b"\x01" + (7000).to_bytes(2, "little")]
        ws.send_binary(b"\x00ping")
        assert ws.recv() == b"\x00ping"
        ws.send_binary(b"\x02nobody")
        opcode, data = ws.recv_data(control_frame=True)
        assert opcode == websocket.ABNF.OPCODE_CLOSE
        return struct.unpack("!H", data[:2])[0]

    assert await trio.to_thread.run_sync(bad_channel) == 1007
    # kubectl's fallback, a plain (SPDY) upgrade, gets what the API server checked

    def post() -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(pki.ca_file))
        host = url.removeprefix("https://")
        conn = http.client.HTTPSConnection(host, context=context, timeout=WAIT)
        conn.request("POST", "/api/v1/namespaces/default/pods/echo/portforward",
                     headers={"Authorization": "Bearer admin-token"})  # fmt: skip
        response = conn.getresponse()
        return response.status, response.read()

    status, body = await trio.to_thread.run_sync(post)
    assert status == 400 and b"Upgrade request required" in body


async def test_the_official_python_client_forwards_over_channels(cluster, tmp_path):
    from kubernetes import client, config
    from kubernetes.stream import portforward

    def run() -> tuple[bytes, str | None, str | None]:
        api = client.CoreV1Api(config.new_client_from_config(str(tmp_path / "admin.kubeconfig")))
        pf = portforward(api.connect_get_namespaced_pod_portforward, "echo", "default",
                         ports="7000,7001")  # fmt: skip
        sock = pf.socket(7000)
        data = os.urandom(2_000_000)
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = sock.recv(65536)
            assert chunk, f"ended after {len(got)} bytes"
            got += chunk
        refused = pf.socket(7001)
        assert refused.recv(10) == b""  # its connection was refused
        sock.close()
        echo_error = pf.error(7000)
        return got == data, echo_error, pf.error(7001)

    same, echo_error, refused_error = await trio.to_thread.run_sync(run)
    assert same and echo_error is None
    assert "error forwarding port 7001 to pod default/echo" in refused_error
    assert "Connection refused" in refused_error


async def test_a_pod_that_reads_nothing_loses_its_connection_not_the_session(
    cluster, monkeypatch, caplog
):
    _, _, url, pki = cluster
    monkeypatch.setattr(_portforwardws, "STALL_SECONDS", 0.5)

    def session() -> list[tuple[int, int, bytes]]:
        ws = _connect(url, pki)
        client = Client()
        ws.send_binary(
            client.syn_stream(1, {"streamtype": "error", "port": "7003", "requestid": "1"})
            + client.syn_stream(3, {"streamtype": "data", "port": "7003", "requestid": "1"}))
        ws.send_binary(
            client.syn_stream(5, {"streamtype": "error", "port": "7000", "requestid": "2"})
            + client.syn_stream(7, {"streamtype": "data", "port": "7000", "requestid": "2"}))
        # More than the pod's socket, the kubelet and the backlog hold: the front end
        # stops reading until the stalled connection is dropped.
        for _ in range(64):
            ws.send_binary(client.data(3, bytes(1 << 20)))
        ws.send_binary(client.data(7, b"alive", fin=True))
        ws.send_binary(struct.pack(">HHII", 0x8003, 6, 4, 9))  # PING 9

        def done(frames) -> bool:
            return (0x80030006, 0, struct.pack(">I", 9)) in frames and sum(
                1 for first, flags, _ in frames if first in (1, 3, 5, 7) and flags & 1) == 4

        return _frames(ws, done)

    frames = await trio.to_thread.run_sync(session)
    # closed as if by the pod, without an error (kubectl would end everything on one)
    assert b"".join(body for first, _, body in frames if first in (1, 5)) == b""
    assert b"".join(body for first, _, body in frames if first == 7) == b"alive"
    assert "the pod read nothing for 0.5 s" in caplog.text

