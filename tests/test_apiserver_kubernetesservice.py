"""The ``default/kubernetes`` Service and its endpoints, kept by every API server that
advertises an address (kube-apiserver's kubernetesservice controller and lease endpoint
reconciler): the Service's shape, a lease per server in etcd, Endpoints and
EndpointSlices of the servers alive, a server that stops or dies leaving them."""

from __future__ import annotations

import pytest
import trio
from inproc_api import TOKENS, start_api

from actorkube.actor import ActorSystem
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.apiserver._kubernetesservice import (
    INTERVAL,
    LEASE_TTL,
    endpoint_slices,
    parse_lease,
    subsets,
)
from actorkube.client import ApiClient
from actorkube.etcd import start_group

DISCOVERY = "discovery.k8s.io"


async def start_two(system: ActorSystem, *advertised: str) -> list:
    """API servers on one etcd group, one per advertised address."""
    group = start_group(system, 3)
    apis = []
    for i, address in enumerate(advertised):
        api = await start_apiserver(system, group.client(name=f"apiserver-{i}", timeout=30),
                                    name=f"apiserver-{i}", tokens=parse_token_file(TOKENS),
                                    seed=i, advertise=address)  # fmt: skip
        await api.ready()
        apis.append(api)
    return apis


async def state(client: ApiClient) -> tuple[dict, dict, dict]:
    """The Service, the Endpoints' subsets and the slices (by name: (addresses, ports))."""
    svc = await client.get("services", "kubernetes", namespace="default")
    ep = await client.get("endpoints", "kubernetes", namespace="default")
    found = await client.list("endpointslices", namespace="default", group=DISCOVERY,
                              label_selector="kubernetes.io/service-name=kubernetes")  # fmt: skip
    slices = {s["metadata"]["name"]: ([e["addresses"][0] for e in s["endpoints"]],
                                      [p["port"] for p in s["ports"]])
              for s in found["items"]}  # fmt: skip
    return svc, ep, slices


async def test_the_service_and_its_endpoints_name_the_server(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system, advertise="127.0.0.1:6443")
        with trio.fail_after(5):
            await api.kubernetes_service.wait_rounds(1)
        client = ApiClient(system, api.ref, token="admin-token")
        svc, ep, slices = await state(client)
        assert svc["metadata"]["labels"] == {"component": "apiserver", "provider": "kubernetes"}
        spec = svc["spec"]
        assert spec["clusterIP"] == "127.96.0.1"  # the service CIDR's first address
        assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
        assert spec["ports"] == [{"name": "https", "protocol": "TCP", "port": 443,
                                  "targetPort": 6443}]  # fmt: skip
        assert ep["metadata"]["labels"] == {"endpointslice.kubernetes.io/skip-mirror": "true"}
        assert ep["subsets"] == [{"addresses": [{"ip": "127.0.0.1"}],
                                  "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]
        assert slices == {"kubernetes": (["127.0.0.1"], [6443])}
        ep_version = ep["metadata"]["resourceVersion"]
        await api.kubernetes_service.wait_rounds(3)
        _, ep, _ = await state(client)
        assert ep["metadata"]["resourceVersion"] == ep_version  # nothing rewritten unchanged


async def test_changes_made_by_hand_are_put_back(autojump_clock):
    # The endpoints at the next round; the Service's ports and type when an API server
    # starts (Kubernetes corrects them at start only).
    async with ActorSystem() as system:
        api = await start_api(system)
        api.advertise("127.0.0.1:6443")
        keeper = api.kubernetes_service
        await keeper.wait_rounds(1)
        client = ApiClient(system, api.ref, token="admin-token")
        svc, ep, _ = await state(client)
        svc["spec"]["ports"] = [{"name": "web", "protocol": "TCP", "port": 80, "targetPort": 80}]
        svc["spec"]["type"] = "NodePort"
        edited = await client.update("services", svc, namespace="default")
        await client.delete("endpoints", "kubernetes", namespace="default")
        stray = endpoint_slices(subsets([("127.0.0.9", 9999)]))["kubernetes"]
        stray["metadata"]["name"] = "kubernetes-9999"
        await client.create("endpointslices", stray, namespace="default", group=DISCOVERY)
        await keeper.wait_rounds(keeper.rounds + 1)
        svc, ep, slices = await state(client)
        assert svc["metadata"]["resourceVersion"] == edited["metadata"]["resourceVersion"]
        assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["127.0.0.1"]
        assert slices == {"kubernetes": (["127.0.0.1"], [6443])}
        # The server starts again (its keeper, a new one): the Service is put back.
        await system.stop(api.kubernetes_service_ref)
        api.kubernetes_service = None
        api.advertise("127.0.0.1:6443")
        await api.kubernetes_service.wait_rounds(1)
        svc, _, _ = await state(client)
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["ports"] == [{"name": "https", "protocol": "TCP", "port": 443,
                                         "targetPort": 6443}]  # fmt: skip


async def test_servers_leave_the_endpoints_when_they_stop_or_die(autojump_clock):
    async with ActorSystem() as system:
        a, b, c = await start_two(system, "127.0.0.2:6443", "127.0.0.1:6443", "127.0.0.1:7443")
        for api in (a, b, c):
            await api.kubernetes_service.wait_rounds(2)  # each has seen the others' leases
        client = ApiClient(system, a.ref, token="admin-token")
        _, ep, slices = await state(client)
        assert [([x["ip"] for x in s["addresses"]], s["ports"][0]["port"])
                for s in ep["subsets"]] == [(["127.0.0.1", "127.0.0.2"], 6443),
                                            (["127.0.0.1"], 7443)]  # fmt: skip
        assert slices == {"kubernetes": (["127.0.0.1", "127.0.0.2"], [6443]),
                          "kubernetes-7443": (["127.0.0.1"], [7443])}  # fmt: skip
        # Servers on other ports do not take turns rewriting the Service.
        svc_version = (await state(client))[0]["metadata"]["resourceVersion"]
        await a.kubernetes_service.wait_rounds(a.kubernetes_service.rounds + 2)
        assert (await state(client))[0]["metadata"]["resourceVersion"] == svc_version
        # b stops: it takes itself out as it goes, without waiting for its lease.
        await system.stop(b.kubernetes_service_ref)
        _, ep, slices = await state(client)
        assert [a["ip"] for a in ep["subsets"][0]["addresses"]] == ["127.0.0.2"]
        # c dies (nothing cleaned up): its lease expires, and a round of a drops it.
        async def nothing() -> None:
            pass

        c.kubernetes_service.remove = nothing
        await system.stop(c.kubernetes_service_ref)
        died = trio.current_time()
        keeper = a.kubernetes_service
        with trio.fail_after(LEASE_TTL + INTERVAL + 1):
            while True:
                await keeper.wait_rounds(keeper.rounds + 1)
                _, ep, slices = await state(client)
                if len(ep["subsets"]) == 1:
                    break
        assert trio.current_time() - died > LEASE_TTL - 1  # not before its lease ended
        assert slices == {"kubernetes": (["127.0.0.2"], [6443])}


async def test_a_lease_etcd_lost_is_granted_again(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system, advertise="127.0.0.1:6443")
        keeper = api.kubernetes_service
        await keeper.wait_rounds(1)
        etcd = api.store.etcd
        await etcd.lease_revoke(keeper.lease)  # as if this server paused past its TTL
        lost = keeper.lease
        await keeper.wait_rounds(keeper.rounds + 1)
        assert keeper.lease not in (0, lost) and keeper.failures == 0
        (kv,) = (await etcd.get(b"/masterleases/127.0.0.1:6443")).kvs
        assert kv.lease == keeper.lease and parse_lease(kv.value) == ("127.0.0.1", 6443)


def test_lease_values_that_are_not_a_server_are_ignored():
    assert parse_lease(b'{"ip": "127.0.0.1", "port": 6443}') == ("127.0.0.1", 6443)
    for bad in (b"", b"[]", b"{}", b'{"ip": "x", "port": 1}', b'{"ip": "10.0.0.1"}',
                b'{"ip": "10.0.0.1", "port": 0}', b'{"ip": "10.0.0.1", "port": true}'):  # fmt: skip
        assert parse_lease(bad) is None


async def test_start_refuses_a_bad_advertise_address_or_admission_plugin():
    async with ActorSystem() as system:
        etcd = start_group(system, 1).client()
        for bad in ("6443", "localhost:6443", "0.0.0.0:6443", "127.0.0.1:0", "127.0.0.1:x"):
            with pytest.raises(ValueError, match="advertise"):
                await start_apiserver(system, etcd, advertise=bad)
        with pytest.raises(ValueError, match="unknown admission plugins: Nope"):
            await start_apiserver(system, etcd, disable_admission_plugins=["Nope"])


async def test_disabled_service_account_admission_leaves_pods_as_written(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system, disable_admission_plugins=["ServiceAccount"])
        client = ApiClient(system, api.ref, token="admin-token")
        await client.create("namespaces", {"metadata": {"name": "fresh"}})  # no account in it
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
        made = await client.create("pods", pod, namespace="fresh")
        assert "serviceAccountName" not in made["spec"]
        assert made["spec"]["tolerations"]  # the other plugins still run
