"""The cluster DNS: Kubernetes' DNS specification from Services and EndpointSlices
(the pure zone), the UDP server (answers, forwarding, bad datagrams), and the pods'
resolv.conf as the kubelet writes it."""

from __future__ import annotations

import dns.asyncbackend
import dns.asyncquery
import dns.flags
import dns.message
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


def endpoint_slice(service_name, addresses, ns="default", name=None):
    return {"metadata": {"name": name or f"{service_name}-x", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}}
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
        group = start_group(system, 3)
        tokens = parse_token_file("t,admin,1,system:masters\n")
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=tokens)  # fmt: skip
        await api.ready()
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
        nursery.cancel_scope.cancel()
