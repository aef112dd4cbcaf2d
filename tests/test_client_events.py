"""The event recorder against a real API server, in virtual time: events at one instant
are all written (their names never collide), and the same event again within the
window counts up on the first one instead of making another, as client-go does."""

from __future__ import annotations

import trio
from virtual_time import wait_for

from actorkube.actor import ActorSystem, WallClock
from actorkube.apiserver import parse_token_file, start_apiserver
from actorkube.client import ApiClient, EventRecorder
from actorkube.etcd import start_group


async def test_events_at_one_instant_are_all_kept_and_repeats_count_up(autojump_clock):
    async with ActorSystem(clock=WallClock(epoch=1_700_000_000.0)) as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file("t,admin,1,system:masters\n"),
                                    seed=4)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token="t")
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", "namespace": "default", "uid": "u1"}}  # fmt: skip
        recorder = EventRecorder(client, "test-controller")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.run)
            for reason in ("Created", "Started", "Pulled"):  # no time passes between them
                recorder.event(pod, "Normal", reason, f"{reason} it")

            async def written(count: int):
                items = (await client.list("events", namespace="default"))["items"]
                return items if len(items) == count else None

            async def all_three():
                # The recorder counts a write when its answer arrives, which may be
                # after a list already shows the event: wait for both.
                return await written(3) if recorder.written >= 3 else None

            items = await wait_for(all_three)
            assert len({e["metadata"]["name"] for e in items}) == 3
            assert recorder.written == 3
            recorder.event(pod, "Normal", "Started", "Started it")

            async def counted():
                return recorder.written == 4

            await wait_for(counted)
            items = await written(3)
            counts = {e["reason"]: e["count"] for e in items}
            assert counts == {"Created": 1, "Started": 2, "Pulled": 1}
            nursery.cancel_scope.cancel()
