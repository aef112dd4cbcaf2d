"""``ApiServers``: the clients of a process fail over between replicated API servers
(on simulated hosts sharing one etcd group; a host crash is a process killed)."""

from __future__ import annotations

import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, ApiRequest, parse_token_file, start_apiserver
from actorkube.client import ApiClient, ApiServers
from actorkube.etcd import EtcdClient, start_group
from actorkube.sim import SimNetwork, simulate

TOKENS = "admin-token,admin,1,system:masters\n"


async def _apiserver(system: ActorSystem) -> None:
    """An API server on the etcd group of host ``etcd``."""
    members = {n: system.ref(f"ak://etcd/etcd-{n}") for n in (1, 2, 3)}
    api = await start_apiserver(system, EtcdClient(system, members, name="apiserver",
                                                   timeout=30),
                                tokens=parse_token_file(TOKENS), name="apiserver")  # fmt: skip
    await api.ready()


def _etcd(system: ActorSystem) -> None:
    start_group(system, 3)


async def _cluster(net: SimNetwork) -> tuple[ActorSystem, ApiServers]:
    await net.add_host("etcd", _etcd)
    for host in ("api-1", "api-2"):
        await net.add_host(host, _apiserver)
    clients = await net.add_host("clients", lambda system: None)
    servers = ApiServers([clients.ref(f"ak://api-{i}/apiserver") for i in (1, 2)], seed=0)
    return clients, servers


def cm(name: str) -> dict:
    return {"metadata": {"name": name}, "data": {"k": name}}


def test_reads_fail_over_at_once_and_writes_on_the_next_call() -> None:
    async def scenario(net: SimNetwork) -> list:
        clients, servers = await _cluster(net)
        one = ApiClient(clients, servers, token="admin-token", timeout=5)
        other = ApiClient(clients, servers, token="admin-token", timeout=5)
        seen = []
        await one.create("configmaps", cm("a"), namespace="default")
        seen.append(servers.current.address.system)
        await net.crash("api-1")
        # A write to the dead server fails (it may have been applied: not retried) ...
        try:
            await one.create("configmaps", cm("b"), namespace="default")
        except ApiError as e:
            seen.append(e.code)
        # ... and every client of the process has moved on: the retry succeeds.
        seen.append(servers.current.address.system)
        await other.create("configmaps", cm("b"), namespace="default")
        # A read that meets a dead server is tried on the next one within the call.
        await net.restart("api-1")
        servers.failed(servers.current)  # back to api-1 ...
        await net.crash("api-1")  # ... which dies again
        got = await one.get("configmaps", "b", namespace="default")
        seen.append((got["data"], servers.current.address.system))
        return seen

    assert simulate(scenario, seed=2).value == [
        "api-1", 503, "api-2", ({"k": "b"}, "api-2")]


def test_a_watch_on_a_server_that_dies_ends_and_the_next_watch_goes_elsewhere() -> None:
    async def scenario(net: SimNetwork) -> tuple:
        clients, servers = await _cluster(net)
        client = ApiClient(clients, servers, token="admin-token", timeout=5)
        async with client.watch("configmaps", namespace="default") as events:
            await net.crash("api-1")
            with trio.fail_after(30):
                async for _ in events:
                    pass
            ended = events.ended
        with trio.fail_after(60):
            while True:  # the first try meets the dead server and fails over
                try:
                    async with client.watch("configmaps", namespace="default") as events:
                        await client.create("configmaps", cm("c"), namespace="default")
                        first = await events.__anext__()
                        break
                except ApiError:
                    continue
        return ended, first["object"]["metadata"]["name"], servers.current.address.system

    ended, name, server = simulate(scenario, seed=3).value
    assert "went away" in ended
    assert (name, server) == ("c", "api-2")


async def test_a_server_whose_caches_are_not_synced_answers_503_and_is_passed_over(
    autojump_clock,
):
    """A restarted API server reached over the transport before its watch caches have
    their first lists would authorize from empty RBAC caches: it answers 503 instead,
    and the client tries the other server."""
    async with ActorSystem() as system:
        group = start_group(system, 3)
        starting, ready = [
            await start_apiserver(system, group.client(name=name, timeout=30),
                                  tokens=parse_token_file(TOKENS), name=name)
            for name in ("apiserver-1", "apiserver-2")]  # fmt: skip
        for api in (starting, ready):
            await api.ready()
        handler = starting.handler
        cache = next(iter(handler.caches.values()))
        synced, cache.ready, handler._synced = cache.ready, trio.Event(), False
        servers = ApiServers([starting.ref, ready.ref], seed=0)
        client = ApiClient(system, servers, token="admin-token")
        assert (await client.list("namespaces"))["items"]  # from the second server
        assert servers.current == ready.ref
        answer = await ApiClient(system, starting.ref, token="admin-token").send(
            ApiRequest("list", "namespaces", token="admin-token"))
        assert answer.code == 503 and "starting" in answer.body["message"]
        health = await ApiClient(system, starting.ref).send(
            ApiRequest("get", "", path="/healthz", token="admin-token"))
        assert health.code == 200
        cache.ready = synced
        answer = await ApiClient(system, starting.ref).send(
            ApiRequest("list", "namespaces", token="admin-token"))
        assert answer.code == 200
