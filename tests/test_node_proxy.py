"""kube-proxy: first its pure parts (the table built from Services and EndpointSlices,
the round-robin balancer with ClientIP affinity), then real sockets through a real
API server, the EndpointSlice controller and the proxy, in real time: small trio echo
servers on their own 127.x addresses stand in for pods (their status written through
the status subresource, as the kubelet writes it) and answer with their name. No test
sleeps: each waits for the proxy's programmed state (``wait_until``)."""

from __future__ import annotations

import contextlib
import errno
import socket
import types
from collections import Counter
from collections.abc import AsyncIterator

import attrs
import pytest
import trio
import trio.testing

from actorkube.actor import ActorSystem
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.controllers import EndpointSliceController
from actorkube.etcd import start_group
from actorkube.forwarding import _tcp as tcp
from actorkube.forwarding import _udp as udp
from actorkube.node.proxy import (
    Backend,
    Balancer,
    Entry,
    Frontend,
    KubeProxy,
    ProxyStats,
    build,
    diff,
)

# --- the table ------------------------------------------------------------------------------


def svc(name: str, *ports: dict, namespace: str = "default", **spec) -> dict:
    spec.setdefault("clusterIP", "127.96.0.10")
    return {"metadata": {"name": name, "namespace": namespace},
            "spec": {"type": "ClusterIP", "ports": list(ports or [{"port": 80}]), **spec}}


def eps(service: str, *endpoints: dict, ports=None, namespace: str = "default") -> dict:
    return {"metadata": {"name": f"{service}-x", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "endpoints": list(endpoints),
            "ports": ports if ports is not None else [{"name": "", "port": 8080,
                                                       "protocol": "TCP"}]}  # fmt: skip


def ep(ip: str, ready=True, serving=None, terminating=False, node="n1") -> dict:
    conditions = {"ready": ready, "terminating": terminating}
    if serving is not None:
        conditions["serving"] = serving
    return {"addresses": [ip], "conditions": conditions, "nodeName": node}


def table(services, slices, node="n1"):
    return build(services, slices, node_name=node, node_ip="127.0.0.1")


def test_ready_endpoints_are_the_backends_of_the_cluster_ip():
    t = table([svc("web")], [eps("web", ep("127.0.5.2"), ep("127.0.5.1"),
                                     ep("127.0.5.3", ready=False))])  # fmt: skip
    assert t == {Frontend("127.96.0.10", 80, "TCP"): Entry(
        "default/web", (Backend("127.0.5.1", 8080), Backend("127.0.5.2", 8080)))}


def test_without_ready_endpoints_serving_terminating_ones_are_used():
    slices = [eps("web", ep("127.0.5.1", ready=False, serving=True, terminating=True),
                  ep("127.0.5.2", ready=False, serving=False, terminating=True),
                  ep("127.0.5.3", ready=False))]  # fmt: skip
    (entry,) = table([svc("web")], slices).values()
    assert entry.backends == (Backend("127.0.5.1", 8080),)
    (none,) = table([svc("web")], [eps("web", ep("127.0.5.3", ready=False))]).values()
    assert none.backends == ()


def test_node_ports_named_ports_protocols_and_affinity():
    service = svc("dns", {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                  {"name": "dns-tcp", "port": 53, "protocol": "TCP", "nodePort": 30053},
                  {"name": "sctp", "port": 99, "protocol": "SCTP"},
                  type="NodePort", sessionAffinity="ClientIP")  # fmt: skip
    ports = [{"name": "dns", "port": 5353, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 5354, "protocol": "TCP"}]  # fmt: skip
    t = table([service], [eps("dns", ep("127.0.6.1"), ports=ports)])
    assert t[Frontend("127.96.0.10", 53, "UDP")] == Entry(
        "default/dns:dns", (Backend("127.0.6.1", 5353),), 10800.0)
    assert t[Frontend("127.0.0.1", 30053, "TCP")].backends == (Backend("127.0.6.1", 5354),)
    assert len(t) == 4  # SCTP is not proxied
    custom = svc("s", sessionAffinity="ClientIP",
                 sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}})  # fmt: skip
    assert next(iter(table([custom], []).values())).affinity == 30.0


def test_headless_external_name_other_namespaces_and_local_policies():
    services = [svc("headless", clusterIP="None"), svc("ext", type="ExternalName"),
                svc("local", clusterIP="127.96.0.11", internalTrafficPolicy="Local")]
    slices = [eps("headless", ep("127.0.7.1")), eps("local", ep("127.0.7.2", node="n1"),
                                                    ep("127.0.7.3", node="n2")),
              eps("local", ep("127.0.7.4"), namespace="elsewhere")]  # fmt: skip
    t = table(services, slices)
    assert list(t) == [Frontend("127.96.0.11", 80, "TCP")]
    assert t[Frontend("127.96.0.11", 80, "TCP")].backends == (Backend("127.0.7.2", 8080),)
    assert table(services, slices, node="n3")[Frontend("127.96.0.11", 80, "TCP")].backends == ()


def test_malformed_objects_never_raise():
    junk = [None, "x", {"spec": "x"}, {"metadata": {"name": 3}, "spec": {"clusterIP": 5}},
            svc("bad", {"port": "80"}, {"port": 70000}, {"protocol": "TCP"}),
            svc("v6", clusterIP="fd00::1"), svc("words", clusterIP="not-an-ip")]
    slices = [None, {"metadata": "x"}, eps("bad", {"addresses": "x"}, "y",
                                           {"addresses": ["999.1.1.1"]}),
              {**eps("bad", ep("127.0.0.9")), "addressType": "IPv6"}]  # fmt: skip
    assert table(junk, slices) == {}


def test_diff_opens_closes_and_changes_only_frontends_with_backends():
    a, b, c = (Frontend("127.96.0.1", p, "TCP") for p in (1, 2, 3))
    one, two = (Backend("127.0.0.1", 1),), (Backend("127.0.0.2", 1),)
    old = {a: Entry("a", one), b: Entry("b", one), c: Entry("c", ())}
    new = {a: Entry("a", two), b: Entry("b", ()), c: Entry("c", one)}
    d = diff(old, new)
    assert (d.opened, d.closed, d.changed) == ({c}, {b}, {a})
    assert diff(new, new).empty


def test_balancer_round_robin_and_client_ip_affinity():
    backends = tuple(Backend(f"127.0.0.{i}", 80) for i in (1, 2, 3))
    rr = Balancer(backends)
    assert [rr.pick("c", 0).ip for _ in range(6)] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"] * 2
    assert Balancer(()).pick("c", 0) is None
    sticky = Balancer(backends, affinity=10.0)
    first = sticky.pick("c1", 0)
    assert all(sticky.pick("c1", t) == first for t in (1, 5, 14))  # each pick renews
    assert sticky.pick("c2", 15) != first
    assert sticky.pick("c1", 30) != first or len(backends) == 1  # 16 s idle: a new turn
    sticky.update(tuple(b for b in backends if b != sticky.pick("c2", 31)), 10.0)
    assert sticky.sessions == 1  # c2's backend went, and its session with it
    sticky.expire(100)
    assert sticky.sessions == 0


def test_the_public_surface_is_small_and_documented():
    import actorkube.controllers as controllers
    import actorkube.node.proxy as proxy

    for module, names in ((proxy, {"Backend", "Balancer", "Entry", "Frontend", "KubeProxy",
                                   "ProxyStats", "TableDiff", "build", "diff", "listening"}),
                          (controllers, {"Controller", "ControllerManager", "CronJobController",
                                         "DaemonSetController", "DeploymentController",
                                         "EndpointSliceController", "EndpointsController",
                                         "GarbageCollector", "JobController",
                                         "HorizontalPodAutoscalerController",
                                         "TTLAfterFinishedController", "DisruptionController",
                                         "NamespaceController",
                                         "NodeLifecycleConfig", "NodeLifecycleController",
                                         "PodGCConfig", "PodGCController",
                                         "ReplicaSetController", "ServiceAccountController",
                                         "RootCACertPublisher",
                                         "TaintEvictionController", "BootstrapSigner",
                                         "TokenCleaner", "CSRApprovingController",
                                         "CSRSigningController"})):  # fmt: skip
        public = {n for n in vars(module) if not n.startswith("_")
                  and not isinstance(getattr(module, n), types.ModuleType)}  # fmt: skip
        assert public == names
        assert all(getattr(module, n).__doc__ for n in names)


# --- the forwarders on their own ---------------------------------------------------------


async def test_a_udp_session_ends_after_its_idle_timeout(mock_clock):
    """Virtual time for the timeout (it moves only when the test jumps it), real
    sockets for the datagrams."""
    stats = ProxyStats()
    front = Frontend("127.83.0.1", 5300, "UDP")
    async with trio.open_nursery() as nursery:
        await nursery.start(udp_backend, "b", "127.83.0.2", 5301)
        sock = await udp.bind(front)
        nursery.start_soon(udp.serve, sock, "s", Balancer((Backend("127.83.0.2", 5301),)),
                           stats, 1.0)  # fmt: skip
        with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            await client.connect((front.ip, front.port))
            for _ in range(2):
                await client.send(b"x")
                assert await client.recv(100) == b"b:x"
            assert stats.udp_sessions == 1
            # Time moves only once the proxy is done with what it got (blocked).
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(0.5)
            await client.send(b"y")  # in time: the same session, its deadline renewed
            assert await client.recv(100) == b"b:y" and stats.udp_sessions == 1
            await trio.testing.wait_all_tasks_blocked()
            mock_clock.jump(1.5)
            await trio.testing.wait_all_tasks_blocked()
            await client.send(b"z")
            assert await client.recv(100) == b"b:z" and stats.udp_sessions == 2
        nursery.cancel_scope.cancel()
        sock.close()


async def test_a_datagram_as_its_session_idles_out_still_gets_its_reply(mock_clock):
    """The datagram arrives as the idle time ends: its session's idle time is renewed
    before it is sent, so the reply is not lost to a session ending meanwhile."""
    stats = ProxyStats()
    front = Frontend("127.83.0.5", 5300, "UDP")
    async with trio.open_nursery() as nursery:
        await nursery.start(udp_backend, "b", "127.83.0.6", 5301)
        sock = await udp.bind(front)
        nursery.start_soon(udp.serve, sock, "s", Balancer((Backend("127.83.0.6", 5301),)),
                           stats, 1.0)  # fmt: skip
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.setblocking(False)
            client.connect((front.ip, front.port))
            # Either task may run first once the clock jumps: try both orders often.
            for i in range(20):
                client.send(b"%d" % i)
                if i:
                    mock_clock.jump(1.0)  # the session's idle time ends just now
                await trio.testing.wait_all_tasks_blocked()
                assert client.recv(100) == b"b:%d" % i  # BlockingIOError: reply lost
        assert stats.udp_dropped == 0
        nursery.cancel_scope.cancel()
        sock.close()


async def test_a_flood_of_udp_clients_costs_datagrams_not_the_frontend(mock_clock, monkeypatch):
    stats = ProxyStats()
    front = Frontend("127.83.0.7", 5300, "UDP")
    monkeypatch.setattr(udp, "MAX_SESSIONS", 2)
    async with trio.open_nursery() as nursery:
        await nursery.start(udp_backend, "b", "127.83.0.8", 5301)
        sock = await udp.bind(front)
        nursery.start_soon(udp.serve, sock, "s", Balancer((Backend("127.83.0.8", 5301),)),
                           stats, 1.0)  # fmt: skip
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
        for client in clients:
            client.setblocking(False)
            client.connect((front.ip, front.port))

        async def ask(client: socket.socket) -> bytes | None:
            client.send(b"x")
            await trio.testing.wait_all_tasks_blocked()
            try:
                return client.recv(100)
            except BlockingIOError:
                return None

        try:
            assert [await ask(c) for c in clients[:3]] == [b"b:x", b"b:x", None]  # the cap
            assert (stats.udp_sessions, stats.udp_dropped) == (2, 1)
            mock_clock.jump(1.0)  # the sessions idle out
            await trio.testing.wait_all_tasks_blocked()
            # Out of file descriptors: the session cannot be made, the datagram is lost.
            real_socket = trio.socket.socket
            with monkeypatch.context() as patch:

                def no_descriptor(*args, **kwargs):
                    raise OSError(errno.EMFILE, "Too many open files")

                patch.setattr(trio.socket, "socket", no_descriptor)
                assert await ask(clients[2]) is None
            assert trio.socket.socket is real_socket
            assert (stats.udp_sessions, stats.udp_dropped) == (2, 2)
            # The frontend still serves, up to the cap again.
            assert [await ask(c) for c in clients[2:]] == [b"b:x", b"b:x"]
            assert (stats.udp_sessions, stats.udp_dropped) == (4, 2)
        finally:
            for client in clients:
                client.close()
        nursery.cancel_scope.cancel()
        sock.close()


async def test_a_frontend_that_fails_is_logged_and_opened_again(autojump_clock, monkeypatch,
                                                                 caplog):  # fmt: skip
    """An error nobody expected in one frontend's serving is not the proxy's end: the
    frontend is closed, counted, logged, and the sync loop is woken RETRY later."""
    proxy = KubeProxy(None, token="t", node_name="n1", node_ip="127.0.0.1")
    front = Frontend("127.83.0.9", 5300, "UDP")

    async def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(udp, "serve", broken)
    entry = Entry("default/dns", (Backend("127.83.0.10", 53),))
    async with trio.open_nursery() as nursery:
        proxy._connections = nursery
        await proxy._open(front, entry)
        listener = proxy.listeners[front]
        await trio.testing.wait_all_tasks_blocked()
        assert proxy.programmed == {} and listener.sock.fileno() == -1
        assert proxy.stats.serve_errors == 1 and "a bug" in caplog.text
        assert not proxy._dirty.is_set()
        await trio.sleep(1.0)  # RETRY
        await trio.testing.wait_all_tasks_blocked()
        assert proxy._dirty.is_set()


async def test_a_frontend_that_cannot_be_bound_is_logged_once_per_error(caplog):
    """Retried every RETRY seconds for as long as it is wanted, a refusal (a port taken,
    or below 1024 without root) is counted each time and logged when it changes."""
    proxy = KubeProxy(None, token="t", node_name="n1", node_ip="127.0.0.1")
    entry = Entry("default/kubernetes:https", (Backend("127.0.0.1", 6443),))
    async with trio.open_nursery() as nursery:
        proxy._connections = nursery
        taken = trio.socket.socket()
        await taken.bind(("127.83.0.20", 0))
        taken.listen()
        front = Frontend("127.83.0.20", taken.getsockname()[1], "TCP")
        for _ in range(3):
            await proxy._open(front, entry)
        assert proxy.stats.bind_errors == 3 and front not in proxy.listeners
        assert caplog.text.count("cannot listen on") == 1
        taken.close()
        await proxy._open(front, entry)  # free now: bound, and forgotten as a failure
        assert front in proxy.listeners and front not in proxy.bind_failures
        proxy._close(front)
        nursery.cancel_scope.cancel()


async def test_a_connection_with_no_backend_is_reset():
    stats = ProxyStats()
    front = Frontend("127.83.0.3", 8080, "TCP")
    sock = await tcp.listen(front)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(tcp.accept, sock, "s", Balancer(()), nursery, stats)
        stream = await connect(front.ip, front.port)
        with pytest.raises(trio.BrokenResourceError):
            await stream.receive_some(10)  # the connection reset
        await stream.aclose()
        assert stats.tcp_rejected == 1 and stats.tcp_accepted == 1
        nursery.cancel_scope.cancel()
    sock.close()


# --- real sockets -------------------------------------------------------------------------------

TOKENS = (
    "admin-token,admin,1,system:masters\n"
    "slices-token,system:serviceaccount:kube-system:endpointslice-controller,2\n"
    "proxy-token,system:kube-proxy,3\n"
)
NODE_IP = "127.0.0.1"
TIMEOUT = 60


@attrs.frozen
class Cluster:
    client: ApiClient
    proxy: KubeProxy
    nursery: trio.Nursery


@contextlib.asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        group = start_group(system, 3, tick_interval=0.05)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file(TOKENS), seed=7)  # fmt: skip
        await api.ready()
        controller = EndpointSliceController(api.ref, token="slices-token")
        system.spawn(lambda: controller, name="endpointslice-controller")
        # A UDP session lasts 5 s idle here (kube-proxy's default is 250 ms), so that a
        # machine busy with other work never ends one between a datagram and its reply.
        proxy = KubeProxy(api.ref, token="proxy-token", node_name="n1", node_ip=NODE_IP,
                          udp_idle_timeout=5.0)  # fmt: skip
        system.spawn(lambda: proxy, name="kube-proxy")
        yield Cluster(ApiClient(system, api.ref, token="admin-token"), proxy, nursery)
        nursery.cancel_scope.cancel()


async def tcp_backend(name: str, ip: str, port: int = 8080, *, task_status) -> None:
    """Says its name, echoes what it gets, and says bye when the client has finished."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(f"{name}\n".encode())
                while data := await stream.receive_some(4096):
                    await stream.send_all(data)
                await stream.send_all(b"bye\n")

    listeners = await trio.open_tcp_listeners(port, host=ip)
    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def udp_backend(name: str, ip: str, port: int = 8053, *, task_status) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((ip, port))
    task_status.started()
    with sock:
        while True:
            data, client = await sock.recvfrom(4096)
            await sock.sendto(name.encode() + b":" + data, client)


def pod(name: str, app: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"containers": [{"name": "c", "image": "echo"}], "nodeName": "n1"}}


async def run_pod(client: ApiClient, name: str, app: str, ip: str, ready: bool = True) -> None:
    await client.create("pods", pod(name, app), namespace="default")
    await set_ready(client, name, ready, ip)


async def set_ready(client: ApiClient, name: str, ready: bool, ip: str | None = None) -> None:
    status: dict = {"phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    await client.patch("pods", name, {"status": status}, namespace="default",
                       subresource="status")  # fmt: skip


async def service(client: ApiClient, name: str, *ports: dict, **spec) -> dict:
    body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": list(ports), **spec}}
    return await client.create("services", body, namespace="default")


def serving(frontend: Frontend, *ips: str):
    """A predicate: ``frontend`` is open with exactly the backends at ``ips``."""

    def check(programmed) -> bool:
        entry = programmed.get(frontend)
        return entry is not None and {b.ip for b in entry.backends} == set(ips)

    return check


async def connect(ip: str, port: int, source: str | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if source:
            await sock.bind((source, 0))
        await sock.connect((ip, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def read_line(stream: trio.SocketStream, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        data = await stream.receive_some(4096)
        if not data:
            raise EOFError(bytes(buffer))
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


async def name_at(ip: str, port: int, source: str | None = None) -> str:
    async with await connect(ip, port, source) as stream:
        return await read_line(stream, bytearray())


async def udp_name(ip: str, port: int, source: str) -> str:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        await sock.bind((source, 0))
        await sock.connect((ip, port))
        await sock.send(b"hi")
        reply = await sock.recv(4096)
    name, _, echoed = reply.decode().partition(":")
    assert echoed == "hi"
    return name


def even(counts: Counter, names: list[str], total: int) -> bool:
    share = total / len(names)
    return set(counts) == set(names) and all(0.8 * share <= counts[n] <= 1.2 * share
                                             for n in names)  # fmt: skip


async def test_tcp_connections_spread_over_ready_backends_and_survive_changes():
    backends = {"web-a": "127.77.0.1", "web-b": "127.77.0.2", "web-c": "127.77.0.3"}
    with trio.fail_after(TIMEOUT):
        async with cluster() as c:
            for name, ip in backends.items():
                await c.nursery.start(tcp_backend, name, ip)
                await run_pod(c.client, name, "web", ip)
            made = await service(c.client, "web", {"port": 80, "targetPort": 8080})
            vip = made["spec"]["clusterIP"]
            frontend = Frontend(vip, 80, "TCP")
            await c.proxy.wait_until(serving(frontend, *backends.values()))
            counts = Counter([await name_at(vip, 80) for _ in range(300)])
            assert even(counts, list(backends), 300), counts
            assert c.proxy.stats.tcp_spliced == 300
            assert c.proxy.stats.connections["default/web"] == 300
            # web-c stops being ready: no new connection reaches it.
            await set_ready(c.client, "web-c", False)
            await c.proxy.wait_until(serving(frontend, "127.77.0.1", "127.77.0.2"))
            counts = Counter([await name_at(vip, 80) for _ in range(100)])
            assert set(counts) == {"web-a", "web-b"}, counts
            # An open connection is not cut when an endpoint is added.
            held = await connect(vip, 80)
            buffer = bytearray()
            first = await read_line(held, buffer)
            await c.nursery.start(tcp_backend, "web-d", "127.77.0.4")
            await run_pod(c.client, "web-d", "web", "127.77.0.4")
            await c.proxy.wait_until(serving(frontend, "127.77.0.1", "127.77.0.2",
                                             "127.77.0.4"))  # fmt: skip
            await held.send_all(b"still there?\n")
            assert await read_line(held, buffer) == "still there?"
            # Half-close: the client's end-of-file reaches the backend, whose last
            # words still come back.
            await held.send_eof()
            assert await read_line(held, buffer) == "bye"
            assert await held.receive_some(10) == b""
            await held.aclose()
            assert first in ("web-a", "web-b")
            counts = Counter([await name_at(vip, 80) for _ in range(30)])
            assert set(counts) == {"web-a", "web-b", "web-d"}, counts


async def test_udp_datagrams_spread_and_each_client_keeps_its_backend():
    backends = {"dns-a": "127.78.0.1", "dns-b": "127.78.0.2", "dns-c": "127.78.0.3"}
    with trio.fail_after(TIMEOUT):
        async with cluster() as c:
            for name, ip in backends.items():
                await c.nursery.start(udp_backend, name, ip)
                await run_pod(c.client, name, "dns", ip)
            made = await service(c.client, "dns", {"port": 53, "targetPort": 8053,
                                                   "protocol": "UDP"})  # fmt: skip
            vip = made["spec"]["clusterIP"]
            await c.proxy.wait_until(serving(Frontend(vip, 53, "UDP"), *backends.values()))
            # Each datagram from a client address of its own: 300 sessions.
            sources = [f"127.82.{i // 200}.{i % 200 + 1}" for i in range(300)]
            counts = Counter([await udp_name(vip, 53, source) for source in sources])
            assert even(counts, list(backends), 300), counts
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                await sock.connect((vip, 53))
                names = set()
                for i in range(5):
                    await sock.send(f"{i}".encode())
                    names.add((await sock.recv(4096)).decode().split(":")[0])
                assert len(names) == 1  # one client, one session, one backend
                # Its backend stops being ready: the session moves to another one.
                (gone,) = names
                await set_ready(c.client, gone, False)
                rest = [ip for name, ip in backends.items() if name != gone]
                await c.proxy.wait_until(serving(Frontend(vip, 53, "UDP"), *rest))
                await sock.send(b"again")
                moved = (await sock.recv(4096)).decode()
                assert moved.endswith(":again") and not moved.startswith(gone)
            stats = c.proxy.stats
            assert stats.udp_forwarded == stats.udp_replies == 306 and stats.udp_dropped == 0
            assert stats.udp_sessions == 302 == stats.connections["default/dns"]


async def test_client_ip_session_affinity_sticks():
    backends = {"s-a": "127.79.0.1", "s-b": "127.79.0.2", "s-c": "127.79.0.3"}
    with trio.fail_after(TIMEOUT):
        async with cluster() as c:
            for name, ip in backends.items():
                await c.nursery.start(tcp_backend, name, ip)
                await run_pod(c.client, name, "s", ip)
            made = await service(c.client, "s", {"port": 80, "targetPort": 8080},
                                 sessionAffinity="ClientIP")  # fmt: skip
            vip = made["spec"]["clusterIP"]
            await c.proxy.wait_until(serving(Frontend(vip, 80, "TCP"), *backends.values()))
            seen = {}
            for client in range(1, 7):
                source = f"127.80.0.{client}"
                seen[source] = {await name_at(vip, 80, source) for _ in range(10)}
            assert all(len(names) == 1 for names in seen.values()), seen
            assert len(set().union(*seen.values())) == 3  # new clients still take turns


async def test_node_port_and_no_endpoints_and_deleted_services():
    with trio.fail_after(TIMEOUT):
        async with cluster() as c:
            await c.nursery.start(tcp_backend, "np-a", "127.81.0.1")
            await run_pod(c.client, "np-a", "np", "127.81.0.1")
            made = await service(c.client, "np", {"port": 80, "targetPort": 8080},
                                 type="NodePort")  # fmt: skip
            vip, node_port = made["spec"]["clusterIP"], made["spec"]["ports"][0]["nodePort"]
            at_node = Frontend(NODE_IP, node_port, "TCP")
            await c.proxy.wait_until(serving(at_node, "127.81.0.1"))
            assert await name_at(NODE_IP, node_port) == "np-a"
            assert await name_at(vip, 80) == "np-a"
            # A Service without endpoints refuses connections, as Kubernetes rejects them.
            empty = await service(c.client, "empty", {"port": 80, "targetPort": 8080})
            empty_vip = empty["spec"]["clusterIP"]
            with pytest.raises(OSError) as refused:
                await connect(empty_vip, 80)
            assert refused.value.errno == errno.ECONNREFUSED
            await c.nursery.start(tcp_backend, "empty-a", "127.81.0.2")
            await run_pod(c.client, "empty-a", "empty", "127.81.0.2")
            await c.proxy.wait_until(serving(Frontend(empty_vip, 80, "TCP"), "127.81.0.2"))
            assert await name_at(empty_vip, 80) == "empty-a"
            # Deleting the Service closes its listeners.
            await c.client.delete("services", "np", namespace="default")
            await c.proxy.wait_until(lambda t: at_node not in t
                                     and Frontend(vip, 80, "TCP") not in t)  # fmt: skip
            for ip, port in ((NODE_IP, node_port), (vip, 80)):
                with pytest.raises(OSError) as gone:
                    await connect(ip, port)
                assert gone.value.errno == errno.ECONNREFUSED
            assert c.proxy.stats.bind_errors == 0


def test_a_proxy_needs_an_ipv4_node_address():
    with pytest.raises(ValueError):
        KubeProxy(None, token="", node_name="n1", node_ip="localhost")
