"""The in-memory cloud on its own: instances found as real providers find them, the
controls (failures, latency in virtual time, the record of calls), routes, load balancer
records without sockets, then real load balancers forwarding TCP and UDP to small echo
servers on 127.1.x addresses that stand in for node ports. Real-socket tests wait on
the socket, each within a ``trio.fail_after`` bound; none sleeps."""

from __future__ import annotations

import contextlib
import socket

import pytest
import trio

from actorkube.cloud import (
    CloudError,
    InstanceMetadata,
    InstanceNotFound,
    LoadBalancerIngress,
    LoadBalancerStatus,
    NodeAddress,
    Route,
)
from actorkube.cloud._memory import FOREVER, Call, InMemoryCloud, LoadBalancerPort
from actorkube.forwarding import Backend, Entry, Frontend

TIMEOUT = 30


def node(name: str, ip: str | None = None, provider_id: str = "") -> dict:
    n: dict = {"metadata": {"name": name}, "spec": {}, "status": {}}
    if provider_id:
        n["spec"]["providerID"] = provider_id
    if ip:
        n["status"]["addresses"] = [{"type": "Hostname", "address": name},
                                    {"type": "InternalIP", "address": ip}]  # fmt: skip
    return n


def service(name: str, *ports: dict, uid: str = "", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": "default",
                         "uid": uid or f"uid-{name}-0000-1111-2222-333344445555"},
            "spec": {"type": "LoadBalancer", "ports": list(ports), **spec}}  # fmt: skip


def port(number: int, node_port: int, protocol: str = "TCP", name: str = "") -> dict:
    return {"name": name, "port": number, "protocol": protocol, "nodePort": node_port}


# --- instances -----------------------------------------------------------------------------


async def test_instances_are_found_by_provider_id_or_by_node_name():
    cloud = InMemoryCloud(real_load_balancers=False)
    a = cloud.create_instance("a", instance_type="m1.small", zone="z1", region="r1",
                              addresses=[NodeAddress("InternalIP", "127.1.0.1")])  # fmt: skip
    cloud.create_instance("b")
    assert a.provider_id == "inmemory://i-00000001"
    want = InstanceMetadata("inmemory://i-00000001", "m1.small", "z1", "r1",
                            (NodeAddress("InternalIP", "127.1.0.1"),))  # fmt: skip
    assert await cloud.instance_metadata(node("a")) == want
    # The provider ID wins over the name: node "b" whose ID says instance a.
    assert await cloud.instance_metadata(node("b", provider_id=a.provider_id)) == want
    assert await cloud.instance_exists(node("b"))
    assert not await cloud.instance_exists(node("c"))
    with pytest.raises(InstanceNotFound):
        await cloud.instance_metadata(node("c"))
    with pytest.raises(CloudError, match="not one of the inmemory"):
        await cloud.instance_exists(node("a", provider_id="aws:///us-east-1a/i-1"))
    with pytest.raises(ValueError, match="exists already"):
        cloud.create_instance("a")


async def test_shutdown_start_and_terminate():
    cloud = InMemoryCloud(real_load_balancers=False)
    old = cloud.create_instance("a")
    assert not await cloud.instance_shutdown(node("a"))
    cloud.shutdown("a")
    assert await cloud.instance_exists(node("a")) and await cloud.instance_shutdown(node("a"))
    cloud.start("a")
    assert not await cloud.instance_shutdown(node("a"))
    cloud.terminate("a")
    assert not await cloud.instance_exists(node("a"))
    assert not await cloud.instance_shutdown(node("a"))
    # The name is free again, for a new machine: a node that knew the old one by its
    # provider ID finds nothing, a node known by name finds the new one.
    new = cloud.create_instance("a")
    assert new.id != old.id
    assert not await cloud.instance_exists(node("a", provider_id=old.provider_id))
    assert (await cloud.instance_metadata(node("a"))).provider_id == new.provider_id
    with pytest.raises(KeyError):
        cloud.terminate("nobody")


# --- controls ------------------------------------------------------------------------------


async def test_failures_are_used_up_in_call_order_and_recorded():
    cloud = InMemoryCloud(real_load_balancers=False)
    cloud.create_instance("a")
    cloud.fail("instance_exists", times=2)
    for _ in range(2):
        with pytest.raises(CloudError, match="injected"):
            await cloud.instance_exists(node("a"))
    assert await cloud.instance_exists(node("a"))
    # Forever, with an error of the test's choosing, until healed.
    cloud.fail("instance_metadata", FOREVER, error=InstanceNotFound("gone for the test"))
    for _ in range(5):
        with pytest.raises(InstanceNotFound, match="gone for the test"):
            await cloud.instance_metadata(node("a"))
    cloud.heal("instance_metadata")
    assert (await cloud.instance_metadata(node("a"))).provider_id == "inmemory://i-00000001"
    assert cloud.calls[:3] == [Call("instance_exists", "a", True)] * 2 + [
        Call("instance_exists", "a", False)]
    assert cloud.call_counts() == {"instance_exists": 3, "instance_metadata": 6}
    with pytest.raises(ValueError, match="not a provider call"):
        cloud.fail("instance_exist")
    with pytest.raises(ValueError):
        cloud.fail("list_routes", times=0)


async def test_latency_runs_in_virtual_time_and_failing_calls_take_it_too(autojump_clock):
    cloud = InMemoryCloud(real_load_balancers=False)
    cloud.create_instance("a")
    cloud.latency(7.5)
    start = trio.current_time()
    assert await cloud.instance_exists(node("a"))
    assert trio.current_time() - start == 7.5
    cloud.fail("ensure_load_balancer")
    with pytest.raises(CloudError):
        await cloud.ensure_load_balancer("k", service("web", port(8080, 30080)), [])
    assert trio.current_time() - start == 15.0
    assert cloud.load_balancers == {}  # the failed call changed nothing
    # Calls made at once wait side by side, not one after the other.
    async with trio.open_nursery() as nursery:
        for name in ("x", "y", "z"):
            nursery.start_soon(cloud.ensure_load_balancer, "k", service(name, port(80, 30080)),
                               [])  # fmt: skip
    assert trio.current_time() - start == 22.5
    assert sorted(lb.ip for lb in cloud.load_balancers.values()) == [
        "127.200.0.1", "127.200.0.2", "127.200.0.3"]
    with pytest.raises(ValueError):
        cloud.latency(-1)


# --- routes --------------------------------------------------------------------------------


async def test_routes_per_cluster_and_blackholes():
    cloud = InMemoryCloud(real_load_balancers=False)
    cloud.create_instance("a")
    cloud.create_instance("b")
    # Named by the hint (the node's uid) and the CIDR: a dual-stack node's two routes
    # share the hint.
    A, B = "k1-uid-a-127.244.0.0-24", "k1-uid-b-127.244.1.0-24"
    await cloud.create_route("k1", "uid-a", Route("", "a", "127.244.0.0/24"))
    await cloud.create_route("k1", "uid-b", Route("", "b", "127.244.1.0/24"))
    await cloud.create_route("k2", "uid-a", Route("", "a", "10.0.0.0/24"))
    assert await cloud.list_routes("k1") == [Route(A, "a", "127.244.0.0/24"),
                                             Route(B, "b", "127.244.1.0/24")]
    cloud.terminate("b")
    routes = await cloud.list_routes("k1")
    assert [(r.name, r.blackhole) for r in routes] == [(A, False), (B, True)]
    await cloud.delete_route("k1", routes[1])
    await cloud.delete_route("k1", routes[1])  # gone already: no error
    assert [r.name for r in await cloud.list_routes("k1")] == [A]
    assert [r.name for r in await cloud.list_routes("k2")] == ["k2-uid-a-10.0.0.0-24"]
    assert await cloud.list_routes("k3") == []
    cloud.fail("create_route")
    with pytest.raises(CloudError):
        await cloud.create_route("k1", "uid-c", Route("", "c", "127.244.2.0/24"))
    assert len(await cloud.list_routes("k1")) == 1
    await cloud.create_route("k1", "uid-a", Route("", "a", "fd00::/64"))  # its second CIDR
    assert len(await cloud.list_routes("k1")) == 2


# --- load balancer records -----------------------------------------------------------------


async def test_load_balancers_get_addresses_and_node_port_backends():
    cloud = InMemoryCloud(real_load_balancers=False)
    svc = service("web", port(80, 30080, name="http"), port(53, 30053, "UDP", name="dns"),
                  uid="0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9")  # fmt: skip
    nodes = [node("n2", "127.1.0.2"), node("n1", "127.1.0.1"), node("n3")]  # n3: no IP
    assert await cloud.get_load_balancer("k", svc) is None
    status = await cloud.ensure_load_balancer("k", svc, nodes)
    assert status == LoadBalancerStatus((LoadBalancerIngress(ip="127.200.0.1"),))
    assert await cloud.get_load_balancer("k", svc) == status
    assert cloud.load_balancer_name("k", svc) == "a0a1b2c3d4e5f60718293a4b5c6d7e8f"
    lb = cloud.load_balancer_of("default/web", "k")
    assert lb.nodes == ("n1", "n2", "n3") and lb.hosts == ("127.1.0.1", "127.1.0.2")
    assert lb.ports == (LoadBalancerPort("http", 80, "TCP", 30080),
                        LoadBalancerPort("dns", 53, "UDP", 30053))  # fmt: skip
    assert lb.frontends() == {
        Frontend("127.200.0.1", 80, "TCP"): Entry(
            "default/web:http", (Backend("127.1.0.1", 30080), Backend("127.1.0.2", 30080))),
        Frontend("127.200.0.1", 53, "UDP"): Entry(
            "default/web:dns", (Backend("127.1.0.1", 30053), Backend("127.1.0.2", 30053)))}
    # Another cluster's load balancer of the same service is another load balancer.
    assert (await cloud.ensure_load_balancer("k2", svc, [])).ingress[0].ip == "127.200.0.2"
    await cloud.update_load_balancer("k", svc, [node("n4", "127.1.0.4")])
    lb = cloud.load_balancer_of("default/web", "k")
    assert lb.ip == "127.200.0.1" and lb.hosts == ("127.1.0.4",)
    # Ensured again: the same address.
    assert (await cloud.ensure_load_balancer("k", svc, nodes)).ingress[0].ip == "127.200.0.1"
    await cloud.ensure_load_balancer_deleted("k", svc)
    await cloud.ensure_load_balancer_deleted("k", svc)  # none: no error
    assert await cloud.get_load_balancer("k", svc) is None
    with pytest.raises(CloudError, match="not found"):
        await cloud.update_load_balancer("k", svc, nodes)
    # The address is free again: the next load balancer gets it.
    other = await cloud.ensure_load_balancer("k", service("db", port(5432, 30432)), nodes)
    assert other.ingress[0].ip == "127.200.0.1"


async def test_requested_addresses_and_ports_that_cannot_be_balanced():
    cloud = InMemoryCloud(real_load_balancers=False, load_balancer_network="10.9.0.0/24")
    wants = service("a", port(80, 30080), loadBalancerIP="10.9.0.50")
    assert (await cloud.ensure_load_balancer("k", wants, [])).ingress[0].ip == "10.9.0.50"
    for bad, message in ((service("b", port(80, 30081), loadBalancerIP="10.9.0.50"), "not a free"),
                         (service("c", port(80, 30082), loadBalancerIP="10.8.0.1"), "not a free"),
                         (service("d", port(80, 30083), loadBalancerIP="x"), "not an IPv4"),
                         (service("e", {"port": 80}), "has no nodePort"),
                         (service("f", port(80, 30084, "SCTP")), "TCP and UDP only")):  # fmt: skip
        with pytest.raises(CloudError, match=message):
            await cloud.ensure_load_balancer("k", bad, [])
    assert [lb.service for lb in cloud.load_balancers.values()] == ["default/a"]
    # Asking for another address moves the load balancer there and frees the old one.
    moved = service("a", port(80, 30080), loadBalancerIP="10.9.0.7")
    assert (await cloud.ensure_load_balancer("k", moved, [])).ingress[0].ip == "10.9.0.7"
    assert cloud.addresses == {"10.9.0.7"}
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        InMemoryCloud(load_balancer_network="10.9.0.0/24")


# --- real load balancers -------------------------------------------------------------------


async def tcp_echo(name: str, ip: str, port: int, *, task_status) -> None:
    """Says its name, then echoes."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(f"{name}\n".encode())
                while data := await stream.receive_some(4096):
                    await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(port, host=ip)
    task_status.started()
    await trio.serve_listeners(handle, listeners)


async def udp_echo(name: str, ip: str, port: int, *, task_status) -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((ip, port))
    task_status.started()
    with sock:
        while True:
            data, client = await sock.recvfrom(4096)
            await sock.sendto(name.encode() + b":" + data, client)


async def dial(ip: str, port: int) -> tuple[trio.SocketStream, str]:
    """A connection and the name the node behind it said."""
    stream = await trio.open_tcp_stream(ip, port)
    line = b""
    while not line.endswith(b"\n"):
        data = await stream.receive_some(100)
        assert data, "closed before the backend said its name"
        line += data
    return stream, line.decode().strip()


async def echo(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    got = b""
    while len(got) < len(data):
        got += await stream.receive_some(100)
    return got


async def test_a_real_load_balancer_forwards_tcp_round_robin_and_skips_refusing_nodes():
    with trio.fail_after(TIMEOUT):
        async with InMemoryCloud.open(load_balancer_network="127.200.211.0/24") as cloud, \
                trio.open_nursery() as nursery:  # fmt: skip
            await nursery.start(tcp_echo, "n1", "127.1.211.1", 31080)
            await nursery.start(tcp_echo, "n2", "127.1.211.2", 31080)
            # n3 has no node port listener: it refuses, and the balancer goes on.
            nodes = [node(f"n{i}", f"127.1.211.{i}") for i in (1, 2, 3)]
            status = await cloud.ensure_load_balancer("k", service("web", port(8080, 31080)),
                                                      nodes)  # fmt: skip
            ip = status.ingress[0].ip
            assert ip == "127.200.211.1"
            assert set(cloud.listening(ip)) == {Frontend(ip, 8080, "TCP")}
            seen = []
            for i in range(6):
                stream, name = await dial(ip, 8080)
                assert await echo(stream, b"hello %d" % i) == b"hello %d" % i
                await stream.aclose()
                seen.append(name)
            assert sorted(set(seen)) == ["n1", "n2"] and seen.count("n1") >= 2
            stats = cloud.load_balancer_stats
            assert stats.tcp_spliced == 6 and stats.tcp_dial_errors >= 1
            assert stats.tcp_rejected == 0
            nursery.cancel_scope.cancel()
    assert cloud.listening(ip) == {}  # the cloud stopped: its listeners closed


async def test_a_real_load_balancer_forwards_udp():
    with trio.fail_after(TIMEOUT):
        async with InMemoryCloud.open(load_balancer_network="127.200.212.0/24") as cloud, \
                trio.open_nursery() as nursery:  # fmt: skip
            await nursery.start(udp_echo, "n1", "127.1.212.1", 31053)
            svc = service("dns", port(5353, 31053, "UDP"), port(5353, 31054, "TCP"))
            status = await cloud.ensure_load_balancer("k", svc, [node("n1", "127.1.212.1")])
            ip = status.ingress[0].ip
            assert set(cloud.listening(ip)) == {Frontend(ip, 5353, "UDP"),
                                                Frontend(ip, 5353, "TCP")}  # fmt: skip
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                await client.connect((ip, 5353))
                for data in (b"a", b"b"):
                    await client.send(data)
                    assert await client.recv(100) == b"n1:" + data
            assert cloud.load_balancer_stats.udp_sessions == 1
            nursery.cancel_scope.cancel()


async def test_new_nodes_take_new_connections_and_live_ones_stay_until_delete_frees_all():
    with trio.fail_after(TIMEOUT):
        async with InMemoryCloud.open(load_balancer_network="127.200.213.0/24") as cloud, \
                trio.open_nursery() as nursery:  # fmt: skip
            await nursery.start(tcp_echo, "n1", "127.1.213.1", 31080)
            await nursery.start(tcp_echo, "n2", "127.1.213.2", 31080)
            svc = service("web", port(8080, 31080))
            ip = (await cloud.ensure_load_balancer("k", svc, [node("n1", "127.1.213.1")])
                  ).ingress[0].ip  # fmt: skip
            live, name = await dial(ip, 8080)
            assert name == "n1"
            await cloud.update_load_balancer("k", svc, [node("n2", "127.1.213.2")])
            assert await echo(live, b"still there") == b"still there"
            fresh, name = await dial(ip, 8080)
            assert name == "n2"
            await fresh.aclose()
            # Deleted: no listener, the address free; the live connection drains.
            await cloud.ensure_load_balancer_deleted("k", svc)
            assert cloud.listening(ip) == {} and ip not in cloud.addresses
            with pytest.raises(OSError):
                await trio.open_tcp_stream(ip, 8080)
            assert await echo(live, b"draining") == b"draining"
            await live.aclose()
            # The next load balancer takes the address, and serves on it.
            other = service("api", port(8080, 31080))
            assert (await cloud.ensure_load_balancer("k", other, [node("n2", "127.1.213.2")])
                    ).ingress[0].ip == ip  # fmt: skip
            stream, name = await dial(ip, 8080)
            assert name == "n2"
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_real_load_balancers_need_the_cloud_running_and_free_ports():
    cloud = InMemoryCloud(load_balancer_network="127.200.214.0/24")
    with pytest.raises(RuntimeError, match="not running"):
        await cloud.ensure_load_balancer("k", service("web", port(8080, 31080)), [])
    assert cloud.load_balancers == {} and cloud.addresses == frozenset()
    with trio.fail_after(TIMEOUT):
        async with InMemoryCloud.open(load_balancer_network="127.200.214.0/24") as cloud:
            # Something else holds the port on the address the cloud hands out next.
            with socket.socket() as squatter:
                squatter.bind(("127.200.214.1", 8080))
                squatter.listen()
                with pytest.raises(CloudError, match=r"cannot listen on 127\.200\.214\.1:8080/TCP"):
                    await cloud.ensure_load_balancer("k", service("web", port(8080, 31080)), [])
            # Once it is gone, ensuring again programs the listener.
            await cloud.ensure_load_balancer("k", service("web", port(8080, 31080)), [])
            assert set(cloud.listening("127.200.214.1")) == {
                Frontend("127.200.214.1", 8080, "TCP")}
