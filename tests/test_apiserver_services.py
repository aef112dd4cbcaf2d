"""Service cluster IPs and node ports: allocated by the API server from its ranges, kept
in etcd (one key per value), released on delete and on a change of type, never handed
out twice, even by two API servers on one etcd group. Messages are Kubernetes'."""

from __future__ import annotations

import ipaddress
import json

import pytest
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.apiserver._services import (
    IP_PREFIX,
    PORT_PREFIX,
    Claims,
    IPRange,
    PortRange,
    Unclaimed,
    assign,
)
from actorkube.client import ApiClient
from actorkube.etcd import EtcdClient, prefix_end, start_group
from actorkube.sim import SimNetwork, simulate

TOKENS = "admin-token,admin,1,system:masters\n"


async def start(system: ActorSystem, group=None, **options):
    group = group or start_group(system, 3)
    name = f"apiserver-{system.unique()}"
    api = await start_apiserver(system, group.client(name=name, timeout=30), name=name,
                                tokens=parse_token_file(TOKENS), seed=1, **options)  # fmt: skip
    await api.ready()
    return api, ApiClient(system, api.ref, token="admin-token"), group


def service(name: str, *ports, **spec) -> dict:
    ports = ports or ({"port": 80},)
    if len(ports) > 1:
        ports = tuple({"name": f"p{i}", **p} for i, p in enumerate(ports))
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": list(ports), **spec}}  # fmt: skip


async def create(client: ApiClient, body: dict, **params) -> dict:
    return await client.request("create", "services", namespace="default", body=body,
                                params=params or None)  # fmt: skip


async def refused(client: ApiClient, body: dict) -> dict:
    with pytest.raises(ApiError) as e:
        await create(client, body)
    return e.value.status


async def claimed(api, prefix: bytes) -> dict[str, tuple[str, str]]:
    """Every allocation key in etcd: value -> (namespace, name) of its Service."""
    got = await api.store.etcd.get(prefix, prefix_end(prefix))
    found = {}
    for kv in got.kvs:
        parent = json.loads(kv.value)["spec"]["parentRef"]
        found[kv.key[len(prefix) :].decode()] = (parent["namespace"], parent["name"])
    return found


def in_range(ip: str, cidr: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)


async def test_a_cluster_ip_service_gets_an_ip_and_kubernetes_defaults(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        made = await create(client, service("web"))
        spec = made["spec"]
        ip = spec["clusterIP"]
        assert in_range(ip, "127.96.0.0/12")
        # Fresh IPs come from above the band kept for IPs asked for by name.
        assert ipaddress.ip_address(ip) > ipaddress.ip_address("127.96.1.0")
        assert spec["clusterIPs"] == [ip]
        assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
        assert spec["internalTrafficPolicy"] == "Cluster"
        assert spec["sessionAffinity"] == "None" and spec["type"] == "ClusterIP"
        assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
        assert await claimed(api, IP_PREFIX) == {ip: ("default", "web")}
        got = await client.get("services", "web", namespace="default")
        assert got["spec"]["clusterIP"] == ip


async def test_headless_and_external_name_services_get_no_ip(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        headless = await create(client, service("db", clusterIP="None"))
        assert headless["spec"]["clusterIPs"] == ["None"]
        assert headless["spec"]["ipFamilyPolicy"] == "SingleStack"
        lone = service("lone", clusterIP="None")
        del lone["spec"]["selector"]
        lone = await create(client, lone)
        # Headless without a selector: its endpoints may be of any family (Kubernetes).
        assert lone["spec"]["ipFamilyPolicy"] == "RequireDualStack"
        assert lone["spec"]["ipFamilies"] == ["IPv4", "IPv6"]
        external = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext"},
                    "spec": {"type": "ExternalName", "externalName": "example.com"}}  # fmt: skip
        external = await create(client, external)
        assert "clusterIP" not in external["spec"] and "ipFamilies" not in external["spec"]
        assert "internalTrafficPolicy" not in external["spec"]
        assert await claimed(api, IP_PREFIX) == {}
        no_name = await refused(client, {**external, "metadata": {"name": "ext2"},
                                         "spec": {"type": "ExternalName"}})  # fmt: skip
        assert no_name["message"] == 'Service "ext2" is invalid: spec.externalName: Required value'


async def test_requested_ips_must_be_in_range_and_free(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        made = await create(client, service("a", clusterIP="127.96.0.10"))
        assert made["spec"]["clusterIPs"] == ["127.96.0.10"]
        taken = await refused(client, service("b", clusterIP="127.96.0.10"))
        assert taken["code"] == 422 and taken["reason"] == "Invalid"
        assert taken["message"] == (
            'Service "b" is invalid: spec.clusterIPs: Invalid value: ["127.96.0.10"]: failed '
            "to allocate IP 127.96.0.10: provided IP is already allocated"
        )
        outside = await refused(client, service("c", clusterIP="10.0.0.1"))
        assert outside["message"] == (
            'Service "c" is invalid: spec.clusterIPs: Invalid value: ["10.0.0.1"]: failed to '
            "allocate IP 10.0.0.1: the provided IP (10.0.0.1) is not in the valid range. The "
            "range of valid IPs is 127.96.0.0/12"
        )
        assert outside["details"]["causes"][0]["field"] == "spec.clusterIPs"
        # The network and broadcast addresses are never handed out.
        network = await refused(client, service("d", clusterIP="127.96.0.0"))
        assert "not in the valid range" in network["message"]
        bad = await refused(client, service("e", clusterIP="300.1.1.1"))
        assert bad["message"] == (
            'Service "e" is invalid: spec.clusterIPs[0]: Invalid value: "300.1.1.1": must be '
            "a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        )
        v6 = await refused(client, service("f", ipFamilies=["IPv6"]))
        assert v6["message"] == ('Service "f" is invalid: spec.ipFamilies[0]: Invalid value: '
                                 '"IPv6": not configured on this cluster')  # fmt: skip
        dual = await refused(client, service("g", ipFamilyPolicy="RequireDualStack"))
        assert "this cluster is not configured for dual-stack services" in dual["message"]
        assert await claimed(api, IP_PREFIX) == {"127.96.0.10": ("default", "a")}


async def test_node_ports_are_allocated_checked_and_shared_by_one_port_number(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        dns = service("dns", {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"},
                      {"port": 9153}, type="NodePort")  # fmt: skip
        made = await create(client, dns)
        ports = made["spec"]["ports"]
        assert ports[0]["nodePort"] == ports[1]["nodePort"] != ports[2]["nodePort"]
        # Fresh node ports come from above the band kept for ports asked for by name.
        assert all(30086 <= p["nodePort"] <= 32767 for p in ports)
        assert made["spec"]["externalTrafficPolicy"] == "Cluster"
        assert set(await claimed(api, PORT_PREFIX)) == {str(p["nodePort"]) for p in ports}
        fixed = await create(client, service("fixed", {"port": 80, "nodePort": 30001},
                                             type="NodePort"))  # fmt: skip
        assert fixed["spec"]["ports"][0]["nodePort"] == 30001
        taken = await refused(client, service("again", {"port": 81, "nodePort": 30001},
                                              type="NodePort"))  # fmt: skip
        assert taken["message"] == ('Service "again" is invalid: spec.ports[0].nodePort: '
                                    "Invalid value: 30001: provided port is already allocated")
        outside = await refused(client, service("low", {"port": 80, "nodePort": 8080},
                                                type="NodePort"))  # fmt: skip
        assert outside["message"] == (
            'Service "low" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided '
            "port is not in the valid range. The range of valid ports is 30000-32767"
        )
        wrong_type = await refused(client, service("cip", {"port": 80, "nodePort": 30002}))
        assert wrong_type["message"] == (
            'Service "cip" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when '
            "`type` is 'ClusterIP'"
        )
        balancer = await create(client, service("lb", type="LoadBalancer"))
        assert balancer["spec"]["allocateLoadBalancerNodePorts"] is True
        assert balancer["spec"]["ports"][0]["nodePort"]
        bare = await create(client, service("bare", type="LoadBalancer",
                                            allocateLoadBalancerNodePorts=False))  # fmt: skip
        assert "nodePort" not in bare["spec"]["ports"][0]


async def test_deleting_a_service_releases_its_ip_and_node_ports(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        await create(client, service("a", {"port": 80, "nodePort": 30100},
                                     clusterIP="127.96.0.20", type="NodePort"))  # fmt: skip
        await client.delete("services", "a", namespace="default")
        assert await claimed(api, IP_PREFIX) == {} and await claimed(api, PORT_PREFIX) == {}
        again = await create(client, service("b", {"port": 80, "nodePort": 30100},
                                             clusterIP="127.96.0.20", type="NodePort"))  # fmt: skip
        assert again["spec"]["clusterIP"] == "127.96.0.20"
        assert await claimed(api, PORT_PREFIX) == {"30100": ("default", "b")}


async def test_a_change_of_type_claims_and_releases(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        made = await create(client, service("web"))
        ip = made["spec"]["clusterIP"]
        as_node_port = await client.patch("services", "web", {"spec": {"type": "NodePort"}},
                                          namespace="default")  # fmt: skip
        node_port = as_node_port["spec"]["ports"][0]["nodePort"]
        assert as_node_port["spec"]["clusterIP"] == ip
        assert await claimed(api, PORT_PREFIX) == {str(node_port): ("default", "web")}
        # A replace that leaves out the IP and node port keeps them (patchAllocatedValues).
        replaced = service("web", type="NodePort")
        replaced["metadata"]["resourceVersion"] = as_node_port["metadata"]["resourceVersion"]
        replaced = await client.update("services", replaced, namespace="default")
        assert replaced["spec"]["clusterIP"] == ip
        assert replaced["spec"]["ports"][0]["nodePort"] == node_port
        # A node port changed by name: the new one is claimed, the old one released.
        moved = await client.patch("services", "web",
                                   {"spec": {"ports": [{"port": 80, "nodePort": 30500}]}},
                                   namespace="default")  # fmt: skip
        assert moved["spec"]["ports"][0]["nodePort"] == 30500
        assert await claimed(api, PORT_PREFIX) == {"30500": ("default", "web")}
        # Back to ClusterIP with the node port left in: it is dropped and released.
        back = await client.patch("services", "web", {"spec": {"type": "ClusterIP"}},
                                  namespace="default")  # fmt: skip
        assert "nodePort" not in back["spec"]["ports"][0]
        assert await claimed(api, PORT_PREFIX) == {}
        named = await client.patch("services", "web",
                                   {"spec": {"type": "ExternalName", "externalName": "x.io"}},
                                   namespace="default")  # fmt: skip
        assert "clusterIP" not in named["spec"]
        assert await claimed(api, IP_PREFIX) == {}
        unnamed = await client.patch("services", "web",
                                     {"spec": {"type": "ClusterIP", "externalName": None}},
                                     namespace="default")  # fmt: skip
        assert in_range(unnamed["spec"]["clusterIP"], "127.96.0.0/12")
        assert await claimed(api, IP_PREFIX) == {unnamed["spec"]["clusterIP"]: ("default", "web")}
        with pytest.raises(ApiError) as e:
            await client.patch("services", "web", {"spec": {"clusterIP": "127.96.0.9"}},
                               namespace="default")  # fmt: skip
        assert e.value.code == 422 and "field is immutable" in e.value.status["message"]


async def test_a_failed_write_leaks_nothing(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        await create(client, service("a", clusterIP="127.96.0.30"))
        await create(client, service("b", {"port": 80, "nodePort": 30200}, type="NodePort"))
        # The name is taken: what this create claimed goes back.
        again = service("a", {"port": 80, "nodePort": 30300}, clusterIP="127.96.0.31",
                        type="NodePort")  # fmt: skip
        exists = await refused(client, again)
        assert exists["reason"] == "AlreadyExists"
        # The IP was free but the node port was not: the IP goes back.
        clash = service("c", {"port": 80, "nodePort": 30200}, clusterIP="127.96.0.32",
                        type="NodePort")  # fmt: skip
        taken = await refused(client, clash)
        assert taken["reason"] == "Invalid"
        # An update refused as stale releases what it claimed.
        current = await client.get("services", "a", namespace="default")
        stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "1"},
                 "spec": {**current["spec"], "type": "NodePort"}}  # fmt: skip
        with pytest.raises(ApiError) as e:
            await client.update("services", stale, namespace="default")
        assert e.value.reason == "Conflict"
        assert set(await claimed(api, IP_PREFIX)) == {"127.96.0.30", (await client.get(
            "services", "b", namespace="default"))["spec"]["clusterIP"]}  # fmt: skip
        assert await claimed(api, PORT_PREFIX) == {"30200": ("default", "b")}


async def test_a_dry_run_claims_nothing_but_checks(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        await create(client, service("a", clusterIP="127.96.0.40"))
        dry = await create(client, service("b", type="NodePort"), dryRun="All")
        assert dry["spec"]["clusterIP"] and dry["spec"]["ports"][0]["nodePort"]
        assert await claimed(api, PORT_PREFIX) == {}
        assert set(await claimed(api, IP_PREFIX)) == {"127.96.0.40"}
        with pytest.raises(ApiError) as e:
            await create(client, service("c", clusterIP="127.96.0.40"), dryRun="All")
        assert "provided IP is already allocated" in e.value.status["message"]


@pytest.mark.parametrize("seed", [3, 17])
def test_two_api_servers_on_one_etcd_never_hand_out_one_ip(seed: int) -> None:
    """Two API servers, each on its own host, share a 3-member etcd group on a third.
    Both have the same seed, so they try the same fresh IPs in the same order: only the
    conditional writes keep them apart. The range holds 14 addresses."""
    cidr = "127.100.0.0/28"

    async def scenario(net: SimNetwork) -> dict:
        await net.add_host("etcd", lambda system: start_group(system, 3))

        def boot_api(host: str):
            async def boot(system: ActorSystem) -> None:
                members = {i: system.ref(f"ak://etcd/etcd-{i}") for i in (1, 2, 3)}
                etcd = EtcdClient(system, members, name=host, timeout=30)
                await start_apiserver(system, etcd, tokens=parse_token_file(TOKENS), seed=1,
                                      service_cidr=cidr)  # fmt: skip

            return boot

        await net.add_host("api1", boot_api("api1"))
        await net.add_host("api2", boot_api("api2"))
        clients = await net.add_host("clients", lambda system: None)
        one = ApiClient(clients, clients.ref("ak://api1/apiserver"), token="admin-token")
        two = ApiClient(clients, clients.ref("ak://api2/apiserver"), token="admin-token")
        made: dict[str, str] = {}

        async def make(client: ApiClient, name: str) -> None:
            made[name] = (await create(client, service(name)))["spec"]["clusterIP"]

        async with trio.open_nursery() as nursery:
            for i in range(7):
                nursery.start_soon(make, one, f"one-{i}")
                nursery.start_soon(make, two, f"two-{i}")
        full = await refused(two, service("full"))
        await one.delete("services", "one-3", namespace="default")
        last = (await create(two, service("last")))["spec"]["clusterIP"]
        listed = (await one.list("services", namespace="default"))["items"]
        return {"made": made, "full": full, "freed": made["one-3"], "last": last,
                "held": sorted(s["spec"]["clusterIP"] for s in listed)}  # fmt: skip

    result = simulate(scenario, seed=seed).value
    ips = list(result["made"].values())
    assert len(set(ips)) == 14 and all(in_range(ip, cidr) for ip in ips)
    assert "127.100.0.0" not in ips and "127.100.0.15" not in ips
    assert result["full"]["code"] == 500
    assert result["full"]["message"] == ("Internal error occurred: failed to allocate a "
                                         "serviceIP: range is full")  # fmt: skip
    assert result["last"] == result["freed"]
    assert len(result["held"]) == len(set(result["held"])) == 14


async def test_a_restarted_server_knows_what_is_taken_from_etcd(autojump_clock):
    async with ActorSystem() as system:
        first, one, group = await start(system)
        await create(one, service("a", {"port": 80, "nodePort": 30400}, type="NodePort",
                                  clusterIP="127.96.0.50"))  # fmt: skip
        await system.stop(first.ref)
        _, two, _ = await start(system, group)
        taken = await refused(two, service("b", {"port": 80, "nodePort": 30400}, type="NodePort",
                                           clusterIP="127.96.0.50"))  # fmt: skip
        assert "provided IP is already allocated" in taken["message"]


async def test_repair_releases_orphans_seen_twice_and_reclaims_missing_keys(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        made = await create(client, service("a", type="NodePort"))
        etcd = api.store.etcd
        allocations = api.store.allocations
        services = api.registry.resource("", "services")
        # A claim whose create never happened (the server crashed in between).
        orphan = IP_PREFIX + b"127.96.0.60"
        await etcd.put(orphan, b'{"spec":{"parentRef":{"namespace":"default","name":"gone"}}}')
        # A Service whose node port key went missing.
        node_port = made["spec"]["ports"][0]["nodePort"]
        await etcd.delete(PORT_PREFIX + str(node_port).encode())
        first = await allocations.repair(services)
        assert first.suspected == (orphan,) and first.released == ()
        assert first.claimed == (PORT_PREFIX + str(node_port).encode(),)
        assert await claimed(api, PORT_PREFIX) == {str(node_port): ("default", "a")}
        second = await allocations.repair(services)
        assert second.released == (orphan,)
        assert set(await claimed(api, IP_PREFIX)) == {made["spec"]["clusterIP"]}


async def test_affinity_defaults_and_bad_specs_are_refused_without_claims(autojump_clock):
    async with ActorSystem() as system:
        api, client, _ = await start(system)
        sticky = await create(client, service("sticky", sessionAffinity="ClientIP"))
        assert sticky["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 10800}}
        too_long = await refused(client, service(
            "long", sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}))  # fmt: skip
        assert too_long["message"] == (
            'Service "long" is invalid: spec.sessionAffinityConfig.clientIP.timeoutSeconds: '
            "Invalid value: 86401: must be greater than 0 and less than 86400"
        )
        headless_node_port = await refused(client, service("hnp", clusterIP="None",
                                                           type="NodePort"))  # fmt: skip
        assert "may not be set to 'None' for NodePort services" in headless_node_port["message"]
        bad_target = await refused(client, service("bt", {"port": 80, "targetPort": "Not_A_Name"}))
        assert "spec.ports[0].targetPort" in bad_target["message"]
        twice = await refused(client, service("twice", {"port": 80, "nodePort": 30600},
                                              {"port": 81, "nodePort": 30600},
                                              type="NodePort"))  # fmt: skip
        assert twice["message"] == ('Service "twice" is invalid: spec.ports[1].nodePort: '
                                    "Duplicate value: 30600")
        wrong = await refused(client, service("wrong", {"port": 80, "nodePort": "x"},
                                              type="NodePort"))  # fmt: skip
        assert wrong["code"] in (400, 422)
        assert set(await claimed(api, IP_PREFIX)) == {sticky["spec"]["clusterIP"]}
        assert await claimed(api, PORT_PREFIX) == {}


async def test_ranges_are_checked_at_start(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 1)
        for cidr in ("127.96.0.0/33", "fd00::/108", "127.96.0.1/12", "127.0.0.0/31"):
            with pytest.raises(ValueError):
                await start_apiserver(system, group.client(), service_cidr=cidr)
        with pytest.raises(ValueError):
            await start_apiserver(system, group.client(), service_node_port_range="32767-30000")


def test_the_static_bands_follow_kubernetes():
    assert IPRange.parse("127.96.0.0/12").band == 256
    assert IPRange.parse("10.0.0.0/24").band == 16  # 254 / 16 < 16
    assert IPRange.parse("10.0.0.0/28").band == 0  # too small to keep a band
    assert PortRange.parse("30000-32767").band == 86  # 2768 / 32
    assert PortRange.parse("30000-30009").band == 0
    assert PortRange.parse("30000-30015").band == 0  # 16 ports: no band (Kubernetes' <=)
    assert PortRange.parse("30000-30016").band == 16


async def test_a_range_of_16_node_ports_hands_out_all_of_them(autojump_clock):
    async with ActorSystem() as system:
        _, client, _ = await start(system, service_node_port_range="30000-30015")
        made = [await create(client, service(f"s{i}", type="NodePort")) for i in range(16)]
        ports = sorted(m["spec"]["ports"][0]["nodePort"] for m in made)
        assert ports == list(range(30000, 30016))
        full = await refused(client, service("one-more", type="NodePort"))
        assert (full["code"], full["message"]) == (
            500, "Internal error occurred: failed to allocate a nodePort: range is full")


def test_assign_asks_for_what_is_missing_then_fills_it():
    svc = service("a", {"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"},
                  type="NodePort")  # fmt: skip
    svc["metadata"]["namespace"] = "default"
    claims = Claims()
    with pytest.raises(Unclaimed) as e:
        assign(svc, None, claims)
    assert e.value.fresh_ip and e.value.fresh_ports == 1 and not e.value.ips
    claims.fresh_ips.append("127.96.8.8")
    claims.fresh_ports.append(31000)
    done = assign(svc, None, claims)
    assert done["spec"]["clusterIPs"] == ["127.96.8.8"]
    assert [p["nodePort"] for p in done["spec"]["ports"]] == [31000, 31000]
    # An update that keeps everything needs nothing new.
    assert assign(svc, done, Claims())["spec"] == done["spec"]
