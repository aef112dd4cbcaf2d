"""Leader election on a Lease through a real API server, in virtual time: one leader
at a time, a standby waits out the lease of a silent leader (by its own clock), a
leader that cannot renew gives up after the renew deadline, and a leader that stops
releases the lease so that a standby takes over at once."""

from __future__ import annotations

import pytest
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.apiserver._errors import status
from actorkube.client import ApiClient
from actorkube.client._leader import LeaderElector, LeadershipLost
from actorkube.etcd import start_group

TOKENS = "admin-token,admin,1,system:masters\n"


class FlakyClient(ApiClient):
    """A client whose API server can be made unreachable, or to hang."""

    broken = False
    hanging = False

    async def request(self, verb, resource, **fields):
        if self.hanging:
            await trio.sleep_forever()
        if self.broken:
            raise ApiError(status(503, "ServiceUnavailable", "cut off"))
        return await super().request(verb, resource, **fields)


async def start(system: ActorSystem):
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), seed=3)  # fmt: skip
    await api.ready()
    return api


async def lease(client: ApiClient) -> dict:
    got = await client.get("leases", "demo", namespace="kube-system", group="coordination.k8s.io")
    return got["spec"]


async def test_a_released_lease_is_taken_at_once_and_a_silent_one_after_it_expires(
    autojump_clock,
):
    async with ActorSystem() as system:
        api = await start(system)
        log: list[tuple[str, float]] = []
        clients = {n: FlakyClient(system, api.ref, token="admin-token") for n in "abc"}
        electors = {n: LeaderElector(clients[n], "demo", n) for n in "abc"}
        stop_a = trio.Event()

        async def lead(name: str, until: trio.Event | None = None) -> None:
            log.append((name, trio.current_time()))
            await (until if until is not None else trio.Event()).wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(electors["a"].run, lambda: lead("a", stop_a))
            await trio.sleep(1)
            lost: list[float] = []

            async def run_b() -> None:
                try:
                    await electors["b"].run(lambda: lead("b"))
                except LeadershipLost:
                    lost.append(trio.current_time())

            nursery.start_soon(run_b)
            await trio.sleep(30)
            assert [n for n, _ in log] == ["a"]  # b waits while a renews
            stop_a.set()  # a's work ends: it releases the lease
            released_at = trio.current_time()
            await trio.sleep(5)
            assert [n for n, _ in log] == ["a", "b"]
            assert log[1][1] - released_at <= 2.4 + 0.1  # the next retry, not a whole lease later
            spec = await lease(clients["c"])
            assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
            # b goes silent: c waits a full lease duration from when it last saw a
            # change, and b (unable to renew) gives up after its renew deadline.
            nursery.start_soon(electors["c"].run, lambda: lead("c"))
            await trio.sleep(10)
            clients["b"].broken = True
            silent_at = trio.current_time()
            await trio.sleep(40)
            assert [n for n, _ in log] == ["a", "b", "c"]
            assert 8 <= lost[0] - silent_at <= 10 + 2.4
            # c counts the lease duration from when it saw b's last renewal, which it
            # sees at its next retry after it (up to 2.4 s late), and takes the lease at
            # the retry after the duration ran out (up to 2.4 s more).
            assert 15 - 2.4 <= log[2][1] - silent_at <= 15 + 2 * 2.4
            nursery.cancel_scope.cancel()


async def test_a_leader_that_cannot_renew_stops_leading(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        client = FlakyClient(system, api.ref, token="admin-token")
        elector = LeaderElector(client, "demo", "a")
        cancelled = []

        async def lead() -> None:
            try:
                await trio.sleep(5)
                client.broken = True
                await trio.sleep_forever()
            finally:
                cancelled.append(trio.current_time())

        with pytest.raises(LeadershipLost):
            await elector.run(lead)
        # Broken at ~5 s; the last renewal was at or before it; the deadline is 10 s.
        assert 5 + 8 <= cancelled[0] <= 5 + 10 + 2.4
        assert not elector.leading


async def test_a_renewal_that_hangs_is_given_up_at_the_deadline(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        client = FlakyClient(system, api.ref, token="admin-token")
        elector = LeaderElector(client, "demo", "a")
        stopped = []
        hung = []

        async def lead() -> None:
            try:
                await trio.sleep(5)
                client.hanging = True  # the API server takes requests and never answers
                hung.append(trio.current_time())
                await trio.sleep_forever()
            finally:
                stopped.append(trio.current_time())

        with pytest.raises(LeadershipLost):
            await elector.run(lead)
        # The last renewal ended at most a retry period before the hang; the leader
        # stops by its renew deadline (10 s) after it, before a standby's 15 s lease
        # could run out.
        assert 10 - 2.4 <= stopped[0] - hung[0] <= 10
