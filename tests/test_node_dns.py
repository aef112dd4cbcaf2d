"""The cluster DNS: Kubernetes' DNS specification from Services and EndpointSlices
(the pure zone), the UDP server (answers, forwarding, bad datagrams), and the pods'
resolv.conf as the kubelet writes it."""

from __future__ import annotations

import dns.asyncbackend
import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.node._dnsconfig import resolv_conf
from actorkube.node.dns import ClusterDNS, ClusterZone


def service(name, ns="default", ip="127.96.0.20", **spec):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}], **spec}}  # fmt: skip


def endpoint_slice(service_name, addresses, ns="default", name=None, hostnames=None,
                   address_type="IPv4"):  # fmt: skip
    hostnames = hostnames or {}
    return {"metadata": {"name": name or f"{service_name}-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": address_type,
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready},
                           **({"hostname": hostnames[a]} if a in hostnames else {})}
                          for a, ready in addresses]}  # fmt: skip


def ask(zone, name, rdtype="A"):
    return zone.answer(dns.message.make_query(name, rdtype))


def records(response):
    return sorted(r.to_text() for rrset in response.answer for r in rrset)


def test_service_names_follow_the_dns_specification():
    zone = ClusterZone()
    zone.set_service(service("web"))
    zone.set_service(service("db", ip="None"))
    zone.set_slice(endpoint_slice("db", [("127.244.0.5", True), ("127.244.0.6", False)]))
    zone.set_service(service("ext", type="ExternalName", externalName="example.com"))
    assert records(ask(zone, "web.default.svc.cluster.local")) == ["127.96.0.20"]
    assert ask(zone, "web.default.svc.cluster.local").flags & dns.flags.AA
    assert records(ask(zone, "db.default.svc.cluster.local")) == ["127.244.0.5"]  # ready only
    assert records(ask(zone, "ext.default.svc.cluster.local")) == ["example.com."]
    srv = ask(zone, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert records(srv) == ["0 100 80 web.default.svc.cluster.local."]
    assert records(ask(zone, "127-244-0-9.default.pod.cluster.local")) == ["127.244.0.9"]


def test_missing_names_and_types_carry_the_soa():
    zone = ClusterZone()
    zone.set_service(service("web"))
    missing = ask(zone, "nope.default.svc.cluster.local")
    assert missing.rcode() == dns.rcode.NXDOMAIN and missing.authority
    nodata = ask(zone, "web.default.svc.cluster.local", "AAAA")
    assert nodata.rcode() == dns.rcode.NOERROR and not nodata.answer and nodata.authority
    assert ask(zone, "example.com") is None  # not ours: forwarded by the server
    zone.remove_service(service("web"))
    assert ask(zone, "web.default.svc.cluster.local").rcode() == dns.rcode.NXDOMAIN


def test_resolv_conf_by_dns_policy():
    pod = {"metadata": {"namespace": "shop"}, "spec": {}}
    host = "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
    assert resolv_conf(pod, ["127.96.0.10"], "cluster.local", host) == (
        "nameserver 127.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:5\n"
    )
    assert resolv_conf(pod, [], "cluster.local", host) is None  # no cluster DNS: the host's
    default = {"metadata": {}, "spec": {"dnsPolicy": "Default"}}
    assert resolv_conf(default, ["127.96.0.10"], "cluster.local", host) is None
    custom = {"metadata": {}, "spec": {"dnsPolicy": "None", "dnsConfig": {
        "nameservers": ["1.1.1.1"], "searches": ["a.b"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}}  # fmt: skip
    assert resolv_conf(custom, ["127.96.0.10"], "cluster.local", host) == (
        "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2 rotate\n"
    )


async def admin_api(system):
    """An API server on a 3-member etcd group, with the admin token ``t``."""
    group = start_group(system, 3)
    tokens = parse_token_file("t,admin,1,system:masters\n")
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=tokens)  # fmt: skip
    await api.ready()
    return api


async def _upstream(task_status=trio.TASK_STATUS_IGNORED):
    """A nameserver that answers every A query with 192.0.2.1."""
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    with sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname()[1])
        while True:
            data, peer = await sock.recvfrom(4096)
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            response.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A",
                                                       "192.0.2.1"))  # fmt: skip
            await sock.sendto(response.to_wire(), peer)


async def test_the_server_answers_forwards_and_survives_bad_datagrams(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        api = await admin_api(system)
        client = ApiClient(system, api.ref, token="t")
        await client.create("services", service("web", ip="127.96.0.21"), namespace="default")
        port = await nursery.start(_upstream)
        server = ClusterDNS(api.ref, token="t", ip="127.53.0.1", port=0,
                            upstream=[f"127.0.0.1:{port}"])  # fmt: skip
        lonely = ClusterDNS(api.ref, token="t", ip="127.53.0.2", port=0, upstream=[])
        system.spawn(lambda: server, name="dns")
        system.spawn(lambda: lonely, name="dns-without-upstream")
        with trio.fail_after(30):
            await server.ready.wait()
            await lonely.ready.wait()
        backend = dns.asyncbackend.get_backend("trio")

        async def query(name, at=server):
            return await dns.asyncquery.udp(dns.message.make_query(name, "A"), at.ip,
                                            port=at.bound_port, timeout=5,
                                            backend=backend)  # fmt: skip

        with trio.fail_after(30):
            answer = await query("web.default.svc.cluster.local")
            assert records(answer) == ["127.96.0.21"]
            # Garbage gets FORMERR (a readable header) or nothing; the server goes on.
            raw = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with raw:
                await raw.sendto(b"\x12\x34" + b"\x01\x00" + b"\xff" * 20,
                                 ("127.53.0.1", server.bound_port))  # fmt: skip
                reply, _ = await raw.recvfrom(512)
                assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
                await raw.sendto(b"\x00", ("127.53.0.1", server.bound_port))
            assert records(await query("web.default.svc.cluster.local")) == ["127.96.0.21"]
            # Other names go upstream; without one, SERVFAIL.
            assert records(await query("example.org")) == ["192.0.2.1"]
            assert server.forwarded == 1
            assert (await query("example.org", at=lonely)).rcode() == dns.rcode.SERVFAIL
            # An ExternalName's CNAME comes with its target's records.
            await client.create("services", {"metadata": {"name": "ext"}, "spec": {
                "type": "ExternalName", "externalName": "example.org"}}, namespace="default")
            await server.wait_until(lambda zone: zone.has_service("default", "ext"))
            chased = await query("ext.default.svc.cluster.local")
            assert records(chased) == ["192.0.2.1", "example.org."]
            # Hostile datagrams: a response (QR set) and a label that is not text are
            # dropped or answered, and the server goes on.
            bad = dns.message.make_query("x.default.svc.cluster.local", "A")
            bad.flags |= dns.flags.QR
            raw = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with raw:
                await raw.sendto(bad.to_wire(), (server.ip, server.bound_port))
                binary = dns.message.make_query(dns.name.Name([b"\xff\xfe", b"default", b"svc",
                                                              b"cluster", b"local", b""]), "A")
                await raw.sendto(binary.to_wire(), (server.ip, server.bound_port))
                reply, _ = await raw.recvfrom(512)
                assert dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
            assert records(await query("web.default.svc.cluster.local")) == ["127.96.0.21"]
        nursery.cancel_scope.cancel()


async def test_big_answers_are_truncated_over_udp_and_whole_over_tcp():
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        api = await admin_api(system)
        server = ClusterDNS(api.ref, token="t", ip="127.53.0.3", port=0, upstream=[])
        system.spawn(lambda: server, name="dns")
        with trio.fail_after(30):
            await server.ready.wait()
        # 3,000 ready endpoints of one headless Service, straight into the zone.
        server.zone.set_service(service("big", ip="None"))
        many = [(f"127.245.{i // 250}.{i % 250 + 1}", True) for i in range(3000)]
        server.zone.set_slice(endpoint_slice("big", many))
        name = "big.default.svc.cluster.local"
        backend = dns.asyncbackend.get_backend("trio")
        with trio.fail_after(30):
            started = trio.current_time()
            udp = await dns.asyncquery.udp(dns.message.make_query(name, "A"), server.ip,
                                           port=server.bound_port, timeout=10,
                                           backend=backend)  # fmt: skip
            assert udp.flags & dns.flags.TC and 0 < len(records(udp)) < 3000
            assert trio.current_time() - started < 5  # a few renderings, not 3,000
            edns = dns.message.make_query(name, "A", use_edns=0, payload=4096)
            bigger = await dns.asyncquery.udp(edns, server.ip, port=server.bound_port,
                                              timeout=10,
                                              backend=backend)  # fmt: skip
            assert len(records(bigger)) > len(records(udp))
            tcp = await dns.asyncquery.tcp(dns.message.make_query(name, "A"), server.ip,
                                           port=server.bound_port, timeout=10,
                                           backend=backend)  # fmt: skip
            assert len(records(tcp)) == 3000 and not tcp.flags & dns.flags.TC
        nursery.cancel_scope.cancel()


def test_headless_endpoints_have_their_own_names_and_srv_records():
    zone = ClusterZone()
    zone.set_service(service("web", ip="None"))
    zone.set_slice(endpoint_slice("web", [("127.244.0.5", True), ("127.244.0.6", True)],
                                  hostnames={"127.244.0.5": "web-0"}))  # fmt: skip
    assert records(ask(zone, "web-0.web.default.svc.cluster.local")) == ["127.244.0.5"]
    assert records(ask(zone, "127-244-0-6.web.default.svc.cluster.local")) == ["127.244.0.6"]
    srv = ask(zone, "_http._tcp.web.default.svc.cluster.local", "SRV")
    assert records(srv) == ["0 100 80 127-244-0-6.web.default.svc.cluster.local.",
                            "0 100 80 web-0.web.default.svc.cluster.local."]  # fmt: skip
    # Names are case-insensitive.
    assert records(ask(zone, "WEB-0.Web.Default.svc.cluster.local")) == ["127.244.0.5"]


def test_slices_that_cannot_make_a_records_are_left_out():
    zone = ClusterZone()
    zone.set_service(service("db", ip="None"))
    zone.set_slice(endpoint_slice("db", [("db.example.com", True)], name="fqdn",
                                  address_type="FQDN"))  # fmt: skip
    zone.set_slice(endpoint_slice("db", [("127.244.0.7", True)], name="v4"))
    assert records(ask(zone, "db.default.svc.cluster.local")) == ["127.244.0.7"]
    # A slice moved to another Service leaves the first one.
    moved = endpoint_slice("other", [("127.244.0.7", True)], name="v4")
    zone.update_slice(endpoint_slice("db", [("127.244.0.7", True)], name="v4"), moved)
    assert not ask(zone, "db.default.svc.cluster.local").answer


def test_upstream_addresses():
    from actorkube.node.dns._server import _host_port

    assert _host_port("10.0.0.2") == ("10.0.0.2", 53)
    assert _host_port("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert _host_port("2001:4860:4860::8888") == ("2001:4860:4860::8888", 53)
    assert _host_port("[2001:db8::1]:5300") == ("2001:db8::1", 5300)
