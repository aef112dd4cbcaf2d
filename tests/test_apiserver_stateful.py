"""A Hypothesis state machine over the API server on simulated hosts: three etcd
members, one API server, one host of clients. Clients create, update (read, modify,
write with the resourceVersion read), patch and delete ConfigMaps; an informer and a
watcher follow them; meanwhile the API server crashes and restarts (its caches rebuilt
from etcd), etcd members crash and restart and leadership moves.

Checked at the end, once everything is back: every update the server accepted was
based on the version it replaced (no stale read was written), the informer's cache is
the store, and the watcher saw, between two relists, exactly the changes etcd made, in
increasing resourceVersion (a resume either continues without a gap or is told 410
Gone and lists again: never a silent gap).
"""

from __future__ import annotations

import json
import random
import sys

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.client import ApiClient, Informer
from actorkube.etcd import EtcdClient, EtcdNode
from actorkube.raft import Config, MemoryStorage
from actorkube.sim import SimNetwork, SteppedSimulation

NODES = [1, 2, 3]
NAMES = ["a", "b", "c", "d"]
TOKENS = parse_token_file("admin-token,admin,1,system:masters\n")
PREFIX = b"/registry/configmaps/default/"


class Violation(AssertionError):
    pass


class ApiServerUnderFaults(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim: SteppedSimulation | None = None

    @initialize(seed=st.integers(0, 2**32 - 1))
    def boot(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.storages = {n: MemoryStorage() for n in NODES}
        self.members: dict[int, EtcdNode] = {}
        self.down: set[int] = set()
        self.api_up = True
        self.watched: list = []  # events, and "relist" markers with the list's version
        self.sim = SteppedSimulation(seed)
        self.sim.run(self._hosts)
        self.writers = []
        for _ in range(2):  # two writers
            rng = random.Random(self.rng.random())
            self.writers.append(self.sim.start_soon(_writer, self.client(), rng))
        # Back-off capped at 2 s (client-go: 30 s) so that 15 s after the faults stop is
        # enough to converge.
        self.informer = Informer(self.client(), "configmaps", namespace="default", max_backoff=2.0)
        self.sim.start_soon(_run_informer, self.informer)
        self.sim.start_soon(_watcher, self.client(), self.watched)

    def client(self) -> ApiClient:
        return ApiClient(
            self.clients, self.clients.ref("ak://api/apiserver"), token="admin-token", timeout=5
        )

    async def _hosts(self, net: SimNetwork) -> None:
        for n in NODES:
            await net.add_host(f"e{n}", self._member_boot(net, n))
        await net.add_host("api", self._api_boot)
        self.clients = await net.add_host("clients", lambda system: None)

    def _member_boot(self, net: SimNetwork, node: int):
        def start(system) -> None:
            peers = {n: system.ref(f"ak://e{n}/etcd") for n in NODES}

            def make() -> EtcdNode:
                member = EtcdNode(
                    Config(node, tuple(NODES), seed=self.seed),
                    self.storages[node],
                    peers,
                    tick_interval=0.05,
                    snapshot_every=200,
                )
                self.members[node] = member
                return member

            system.spawn(make, name="etcd")

        return start

    async def _api_boot(self, system) -> None:
        refs = {n: system.ref(f"ak://e{n}/etcd") for n in NODES}
        etcd = EtcdClient(system, refs, name="apiserver", timeout=5, attempt_timeout=0.5)
        self.api = await start_apiserver(
            system, etcd, tokens=TOKENS, seed=self.seed, workers=8, bookmark_interval=2
        )

    # --- rules ----------------------------------------------------------------------------

    @rule(seconds=st.sampled_from([0.2, 1.0, 3.0]))
    def time_passes(self, seconds: float) -> None:
        self.sim.advance(seconds)

    @precondition(lambda self: self.api_up)
    @rule()
    def crash_apiserver(self) -> None:
        self.sim.run(_crash, "api")
        self.api_up = False

    @precondition(lambda self: not self.api_up)
    @rule()
    def restart_apiserver(self) -> None:
        self.sim.run(_restart, "api")
        self.api_up = True

    @precondition(lambda self: not self.down)
    @rule(data=st.data())
    def crash_member(self, data) -> None:
        victim = data.draw(st.sampled_from(NODES))
        self.sim.run(_crash, f"e{victim}")
        self.storages[victim] = self.storages[victim].crash()
        self.members.pop(victim, None)
        self.down.add(victim)

    @precondition(lambda self: self.down)
    @rule()
    def restart_member(self) -> None:
        back = self.down.pop()
        self.sim.run(_restart, f"e{back}")

    @precondition(lambda self: not self.down)
    @rule()
    def move_leadership(self) -> None:
        # Cutting the leader off for longer than an election timeout moves it.
        leader = next((n for n, m in self.members.items() if m.core.role.name == "LEADER"), None)
        if leader is not None:
            self.sim.run(_isolate_for, f"e{leader}", 1.5)

    # --- the end --------------------------------------------------------------------------

    def teardown(self) -> None:
        if self.sim is None:
            return
        failed = sys.exc_info()[1] is not None
        try:
            if not failed:
                if not self.api_up:
                    self.sim.run(_restart, "api")
                for n in sorted(self.down):
                    self.sim.run(_restart, f"e{n}")
                self.down.clear()
                self.sim.advance(10)
                for writer in self.writers:  # writes stop, so that every member has all
                    writer.cancel()
                self.sim.advance(10)
                self.check()
        finally:
            self.sim.close()

    def check(self) -> None:
        store = max((m.store for m in self.members.values()), key=lambda st: st.revision)
        history = [e for e in store.events_since(1) if e.kv.key.startswith(PREFIX)]
        # 1. No update based on a stale read was accepted.
        for e in history:
            if e.prev_kv is None or e.type.name != "PUT":
                continue
            base = json.loads(e.kv.value).get("data", {}).get("base")
            if base is not None and int(base) != e.prev_kv.mod_revision:
                raise Violation(
                    f"update at {e.kv.mod_revision} of {e.kv.key!r} was based on {base}, "
                    f"but replaced version {e.prev_kv.mod_revision}"
                )
        # 2. The informer's cache is the store.
        truth = self.sim.run(_list, self.client())
        mine = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in truth["items"]}
        theirs = {
            o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in self.informer.list()
        }
        if mine != theirs:
            raise Violation(f"informer {theirs} != store {mine}")
        # 3. Between relists the watcher saw exactly etcd's changes, in order.
        _check_watched(self.watched, history)


def _check_watched(watched: list, history: list) -> None:
    segment: list = []
    start = None
    for item in [*watched, ("relist", None)]:
        if isinstance(item, tuple):
            if start is not None and segment:
                end = int(segment[-1]["object"]["metadata"]["resourceVersion"])
                expected = [
                    (e.kv.key.rsplit(b"/", 1)[-1].decode(), e.kv.mod_revision)
                    for e in history
                    if start < e.kv.mod_revision <= end
                ]
                got = [
                    (
                        ev["object"]["metadata"]["name"],
                        int(ev["object"]["metadata"]["resourceVersion"]),
                    )
                    for ev in segment
                ]
                if got != expected:
                    at = next(
                        (i for i, (g, x) in enumerate(zip(got, expected, strict=False)) if g != x),
                        min(len(got), len(expected)),
                    )
                    raise Violation(
                        f"watch from {start}: first difference at #{at}: got "
                        f"{got[max(0, at - 2) : at + 4]}, etcd had "
                        f"{expected[max(0, at - 2) : at + 4]} ({len(got)} vs {len(expected)})"
                    )
            segment, start = [], item[1]
        elif item["type"] != "BOOKMARK":
            segment.append(item)


async def _writer(net: SimNetwork, client: ApiClient, rng: random.Random) -> None:
    while True:
        name = rng.choice(NAMES)
        try:
            kind = rng.choice(["create", "update", "update", "patch", "delete"])
            if kind == "create":
                body = {"metadata": {"name": name}, "data": {"v": str(rng.random())}}
                await client.create("configmaps", body, namespace="default")
            elif kind == "update":
                current = await client.get("configmaps", name, namespace="default")
                rv = current["metadata"]["resourceVersion"]
                new = {**current, "data": {"v": str(rng.random()), "base": rv}}
                await client.update("configmaps", new, namespace="default")
            elif kind == "patch":
                # A patch is not based on a read: it drops the update's "base" mark.
                labels = {"p": str(rng.randrange(100))}
                patch = {"metadata": {"labels": labels}, "data": {"base": None}}
                await client.patch("configmaps", name, patch, namespace="default")
            else:
                await client.delete("configmaps", name, namespace="default")
        except ApiError:
            pass  # refused, conflicting, or the server was away: go on
        await trio.sleep(rng.uniform(0.01, 0.2))


async def _run_informer(net: SimNetwork, informer: Informer) -> None:
    await informer.run()


async def _watcher(net: SimNetwork, client: ApiClient, watched: list) -> None:
    """Watch from the last version seen; on 410 (or at first) list and mark a relist."""
    rv = ""
    while True:
        try:
            if not rv:
                listed = await client.list("configmaps", namespace="default")
                rv = listed["metadata"]["resourceVersion"]
                watched.append(("relist", int(rv)))
            async with client.watch(
                "configmaps", namespace="default", resource_version=rv, bookmarks=True
            ) as events:
                async for event in events:
                    watched.append(event)
                    rv = event["object"]["metadata"]["resourceVersion"]
        except ApiError as e:
            if e.code == 410:
                rv = ""
            else:
                await trio.sleep(0.5)


async def _list(net: SimNetwork, client: ApiClient) -> dict:
    return await client.list("configmaps", namespace="default")


async def _crash(net: SimNetwork, host: str) -> None:
    await net.crash(host)


async def _restart(net: SimNetwork, host: str) -> None:
    await net.restart(host)


async def _isolate_for(net: SimNetwork, host: str, seconds: float) -> None:
    net.isolate(host)
    await trio.sleep(seconds)
    net.heal()


TestApiServerUnderFaults = ApiServerUnderFaults.TestCase
TestApiServerUnderFaults.settings = settings(
    max_examples=max(5, settings().max_examples // 20), stateful_step_count=20, deadline=None
)
