"""The node lifecycle and taint eviction controllers: their pure cores against
Kubernetes' documented behaviour (grace periods, the Unknown conditions, NoSchedule and
NoExecute taints, zone states and rates, the rate-limited tainting queue, toleration
matching and eviction times), and the whole cluster in the deterministic simulation (a
node that dies goes Unknown, is tainted, its pods are marked not ready, evicted after
their 300 s and replaced elsewhere, and the node is cleared when it comes back; a pod
that does not tolerate a NoExecute taint goes at once, one that tolerates it for ever
stays; when every node is lost nothing is evicted until one is back)."""

from __future__ import annotations

import pytest
import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.controllers import _node_health as nh
from actorkube.controllers import _taint_eviction as te
from actorkube.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController
from actorkube.controllers.replicaset import ReplicaSetController
from actorkube.controllers.tainteviction import TaintEvictionController
from actorkube.sim import SimNetwork, simulate

NOW = 1_800_000_000.0
CONFIG = NodeLifecycleConfig()


def node(name="n1", *, ready="True", heartbeat=NOW - 10, created=NOW - 3600, taints=None,
         labels=None, unschedulable=False, pressure=None, conditions=True):  # fmt: skip
    status = {}
    if conditions:
        kinds = {"Ready": ready, "MemoryPressure": "False", "DiskPressure": "False",
                 "PIDPressure": "False", **(pressure or {})}  # fmt: skip
        status["conditions"] = [{"type": k, "status": s, "reason": "Kubelet",
                                 "lastHeartbeatTime": rfc3339(heartbeat),
                                 "lastTransitionTime": rfc3339(created)}
                                for k, s in kinds.items()]  # fmt: skip
    spec = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "uid": f"uid-{name}", "labels": labels or {},
                         "creationTimestamp": rfc3339(created)},
            "spec": spec, "status": status}  # fmt: skip


def lease(renew: float) -> dict:
    return {"spec": {"renewTime": f"{rfc3339(renew)[:-1]}.000000Z"}}


def keys(taints) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in taints}


# --- node health ----------------------------------------------------------------------------


def test_a_node_first_seen_counts_from_now_and_is_not_judged_on_old_heartbeats():
    a = nh.assess(None, node(heartbeat=NOW - 1000), None, NOW, CONFIG)
    assert a.health.probe == NOW and a.conditions is None
    assert (a.observed, a.current) == ("True", "True")


def test_a_silent_node_goes_unknown_after_the_grace_period_and_not_before():
    first = nh.assess(None, node(), None, NOW, CONFIG)
    quiet = nh.assess(first.health, node(), None, NOW + 50, CONFIG)
    assert quiet.conditions is None  # 50 s is the grace period itself: not yet
    late = nh.assess(first.health, node(), None, NOW + 50.5, CONFIG)
    assert (late.observed, late.current) == ("True", "Unknown")
    by_type = {c["type"]: c for c in late.conditions}
    for kind in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
        c = by_type[kind]
        assert (c["status"], c["reason"], c["message"]) == (
            "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
        assert c["lastTransitionTime"] == rfc3339(NOW + 50.5)
        assert c["lastHeartbeatTime"] == rfc3339(NOW - 10)  # kept: the kubelet's last word
    assert "NetworkUnavailable" not in by_type  # the network plugin's, not the kubelet's


def test_a_changed_heartbeat_or_lease_renewal_keeps_a_node_alive_whatever_its_clock():
    h = nh.assess(None, node(), lease(NOW), NOW, CONFIG).health
    # The heartbeat moves (even backwards: the node's clock is never trusted).
    h = nh.assess(h, node(heartbeat=NOW - 500), lease(NOW), NOW + 40, CONFIG).health
    assert h.probe == NOW + 40
    # Only the Lease moves: still alive.
    h = nh.assess(h, node(heartbeat=NOW - 500), lease(NOW + 30), NOW + 80, CONFIG).health
    assert h.probe == NOW + 80
    still = nh.assess(h, node(heartbeat=NOW - 500), lease(NOW + 30), NOW + 120, CONFIG)
    assert still.conditions is None
    gone = nh.assess(h, node(heartbeat=NOW - 500), lease(NOW + 30), NOW + 131, CONFIG)
    assert gone.current == "Unknown"


def test_a_node_that_never_posted_ready_gets_the_startup_grace_from_its_creation():
    young = node(conditions=False, created=NOW - 30)
    a = nh.assess(None, young, None, NOW, CONFIG)
    assert a.health.probe == NOW - 30 and a.conditions is None and a.current is None
    a = nh.assess(a.health, young, None, NOW + 30.5, CONFIG)  # 60.5 s after creation
    assert a.current == "Unknown" and a.observed == "Unknown"
    ready = next(c for c in a.conditions if c["type"] == "Ready")
    assert (ready["reason"], ready["message"], ready["lastHeartbeatTime"]) == (
        "NodeStatusNeverUpdated", "Kubelet never posted node status.", rfc3339(NOW - 30))
    assert len(a.conditions) == 4


def test_conditions_unknown_already_are_not_written_again():
    h = nh.Health(probe=NOW - 100, heartbeat=rfc3339(NOW - 10))
    a = nh.assess(h, node(ready="Unknown", pressure={"MemoryPressure": "Unknown",
                                                     "DiskPressure": "Unknown",
                                                     "PIDPressure": "Unknown"}),
                  None, NOW, CONFIG)  # fmt: skip
    assert a.conditions is None and a.current == "Unknown"


def test_the_config_refuses_a_monitor_period_above_the_grace_period():
    assert NodeLifecycleConfig(node_monitor_period=1, node_monitor_grace_period=5)
    with pytest.raises(ValueError):
        NodeLifecycleConfig(node_monitor_period=60)


# --- taints ---------------------------------------------------------------------------------


def test_no_schedule_taints_follow_conditions_and_unschedulable():
    add, remove = nh.no_schedule_diff(node(ready="False", unschedulable=True,
                                           pressure={"MemoryPressure": "True",
                                                     "DiskPressure": "True",
                                                     "PIDPressure": "True"}))  # fmt: skip
    assert keys(add) == {(nh.NOT_READY, "NoSchedule"), (nh.UNSCHEDULABLE, "NoSchedule"),
                         (nh.MEMORY_PRESSURE, "NoSchedule"), (nh.DISK_PRESSURE, "NoSchedule"),
                         (nh.PID_PRESSURE, "NoSchedule")}  # fmt: skip
    assert remove == []
    add, _ = nh.no_schedule_diff(node(ready="Unknown"))
    assert keys(add) == {(nh.UNREACHABLE, "NoSchedule")}
    stale = [{"key": nh.UNREACHABLE, "effect": "NoSchedule"},
             {"key": "example.com/gpu", "effect": "NoSchedule"},
             {"key": nh.UNREACHABLE, "effect": "NoExecute"}]  # fmt: skip
    add, remove = nh.no_schedule_diff(node(taints=stale))
    assert add == [] and keys(remove) == {(nh.UNREACHABLE, "NoSchedule")}  # others not ours


def test_swapping_taints_stamps_new_ones_and_keeps_the_time_of_those_kept():
    old = {"key": nh.UNREACHABLE, "effect": "NoSchedule", "timeAdded": rfc3339(NOW - 60)}
    other = {"key": "example.com/x", "value": "y", "effect": "NoExecute"}
    result = nh.swap_taints([old, other], [nh.UNREACHABLE_NO_EXECUTE, dict(old)],
                            [{"key": "example.com/x", "effect": "NoExecute"}], NOW)  # fmt: skip
    assert result == [old, {**nh.UNREACHABLE_NO_EXECUTE, "timeAdded": rfc3339(NOW)}]


@pytest.mark.parametrize(("observed", "taints", "expected"), [
    ("True", [nh.UNREACHABLE_NO_EXECUTE], nh.NoExecuteStep(clear=True)),
    ("False", [], nh.NoExecuteStep(queue=True, fresh=True)),
    ("False", [nh.NOT_READY_NO_EXECUTE], nh.NoExecuteStep(queue=True, fresh=False)),
    ("Unknown", [nh.NOT_READY_NO_EXECUTE],
     nh.NoExecuteStep(swap=(nh.UNREACHABLE_NO_EXECUTE, nh.NOT_READY_NO_EXECUTE))),
    ("False", [nh.UNREACHABLE_NO_EXECUTE],
     nh.NoExecuteStep(swap=(nh.NOT_READY_NO_EXECUTE, nh.UNREACHABLE_NO_EXECUTE))),
])  # fmt: skip
def test_no_execute_taints_mirror_ready_and_swap_at_once(observed, taints, expected):
    assert nh.no_execute_step(observed, taints) == expected


def test_marking_pods_not_ready_sets_ready_false_once():
    pod = {"status": {"conditions": [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": rfc3339(NOW - 100)},
                                     {"type": "PodScheduled", "status": "True"}]}}  # fmt: skip
    status = nh.pod_not_ready(pod, NOW)
    ready = status["conditions"][0]
    assert (ready["status"], ready["lastTransitionTime"]) == ("False", rfc3339(NOW))
    assert status["conditions"][1] == {"type": "PodScheduled", "status": "True"}
    assert nh.pod_not_ready({"status": status}, NOW + 5) is None


# --- zones ----------------------------------------------------------------------------------


def test_zone_keys_come_from_region_and_zone_labels():
    assert nh.zone_key(node()) == ""
    assert nh.zone_key(node(labels={"topology.kubernetes.io/region": "r",
                                     "topology.kubernetes.io/zone": "a"})) == "r:\x00:a"
    assert nh.zone_key(node(labels={"failure-domain.beta.kubernetes.io/zone": "b"})) == ":\x00:b"


@pytest.mark.parametrize(("ready", "expected"), [
    (["True", "True", "False"], (1, nh.NORMAL)),
    (["False", "False", "True"], (2, nh.NORMAL)),  # two are not enough for a disruption
    (["False", "Unknown", None, "True"], (3, nh.PARTIAL_DISRUPTION)),  # 75% >= 55%
    (["False", "Unknown", None, "True", "True", "True"], (3, nh.NORMAL)),  # 50% < 55%
    (["False", "Unknown", None], (3, nh.FULL_DISRUPTION)),
    (["Unknown"], (1, nh.FULL_DISRUPTION)),
])  # fmt: skip
def test_zone_states(ready, expected):
    assert nh.zone_state(ready, CONFIG) == expected


def test_zone_rates_slow_down_or_stop_in_partial_disruption():
    assert nh.zone_rate(nh.NORMAL, 10, CONFIG) == 0.1
    assert nh.zone_rate(nh.FULL_DISRUPTION, 10, CONFIG) == 0.1  # the zone alone is down
    assert nh.zone_rate(nh.PARTIAL_DISRUPTION, 50, CONFIG) == 0.0  # small: stop
    assert nh.zone_rate(nh.PARTIAL_DISRUPTION, 51, CONFIG) == 0.01  # large: slow down


def test_disruption_when_every_zone_is_down_and_when_it_ends():
    ok, down = ["True", "True"], ["Unknown", "Unknown"]
    first = nh.handle_disruption({}, {"a": ok, "b": ok}, CONFIG)
    assert first.states == {"a": nh.NORMAL, "b": nh.NORMAL}
    assert first.rates == {"a": 0.1, "b": 0.1} and first.mode is None
    one = nh.handle_disruption(first.states, {"a": down, "b": ok}, CONFIG)
    assert one.states["a"] == nh.FULL_DISRUPTION and one.rates == {"a": 0.1}
    both = nh.handle_disruption(one.states, {"a": down, "b": down}, CONFIG)
    assert both.mode == nh.ENTER_MASTER_DISRUPTION and both.rates == {"a": 0.0, "b": 0.0}
    stay = nh.handle_disruption(both.states, {"a": down, "b": down}, CONFIG)
    assert stay.mode is None and stay.rates == {}
    back = nh.handle_disruption(stay.states, {"a": down, "b": ["True", "Unknown"]}, CONFIG)
    assert back.mode == nh.EXIT_MASTER_DISRUPTION
    assert back.states == {"a": nh.FULL_DISRUPTION, "b": nh.NORMAL}
    assert back.rates == {"a": 0.1, "b": 0.1}
    gone = nh.handle_disruption(back.states, {"b": ok}, CONFIG)
    assert gone.states == {"b": nh.NORMAL} and gone.rates == {}


# --- the tainting queue ---------------------------------------------------------------------


def test_the_tainter_lets_one_node_through_per_token():
    t = nh.Tainter.at_rate(0.1, NOW).add("a", "ua", NOW).add("b", "ub", NOW)
    t, first = t.take(NOW)
    assert first.name == "a"
    t = t.done("a")
    t, second = t.take(NOW + 1)
    assert second is None  # no token for 10 s
    assert t.next_attempt(NOW + 1) == pytest.approx(NOW + 10)
    t, second = t.take(NOW + 10)
    assert second.name == "b"


def test_the_tainter_queues_a_node_once_until_it_is_removed():
    t = nh.Tainter.at_rate(1.0, NOW).add("a", "ua", NOW)
    t, _ = t.take(NOW)
    t = t.done("a").add("a", "ua", NOW + 5)
    assert t.queue == ()  # tainted once: not again every pass
    t = t.remove("a").add("a", "ua", NOW + 5)
    assert [q.name for q in t.queue] == ["a"]


def test_the_tainter_retries_later_and_a_rate_of_zero_stops_it():
    t = nh.Tainter.at_rate(1.0, NOW).add("a", "ua", NOW).add("b", "ub", NOW)
    t, due = t.take(NOW)
    t = t.retry(due.name, NOW + 5)
    assert [q.name for q in t.queue] == ["b", "a"]
    stopped = t.with_rate(0.0, NOW + 100)
    assert stopped.take(NOW + 1000)[1] is None and stopped.next_attempt(NOW + 1000) is None


def test_swapping_the_rate_gives_no_extra_token():
    bucket, ok = nh.TokenBucket(0.1, 1.0, NOW).take(NOW)
    assert ok
    assert not bucket.with_rate(0.01, NOW + 1).take(NOW + 1)[1]  # empty stays empty
    assert nh.TokenBucket(0.1, 1.0, NOW).with_rate(0.01, NOW).take(NOW)[1]


# --- taint eviction -------------------------------------------------------------------------

MAINTENANCE = {"key": "example.com/maintenance", "value": "x", "effect": "NoExecute",
               "timeAdded": rfc3339(NOW - 100)}  # fmt: skip


def pod_tolerating(*tolerations) -> dict:
    return {"spec": {"nodeName": "n1", "tolerations": list(tolerations)}}


@pytest.mark.parametrize(("toleration", "tolerated"), [
    ({"key": "example.com/maintenance", "operator": "Exists"}, True),
    ({"key": "example.com/maintenance", "operator": "Equal", "value": "x"}, True),
    ({"key": "example.com/maintenance", "value": "x"}, True),  # Equal is the default
    ({"key": "example.com/maintenance", "operator": "Equal", "value": "y"}, False),
    ({"key": "example.com/other", "operator": "Exists"}, False),
    ({"operator": "Exists"}, True),  # an empty key with Exists tolerates every taint
    ({"operator": "Exists", "effect": "NoExecute"}, True),
    ({"key": "example.com/maintenance", "operator": "Exists", "effect": "NoSchedule"}, False),
])  # fmt: skip
def test_toleration_matching(toleration, tolerated):
    used = te.matching_tolerations([MAINTENANCE], [toleration])
    assert (used is not None) == tolerated


def test_each_taint_takes_the_first_toleration_that_matches():
    short = {"key": "example.com/maintenance", "operator": "Exists", "tolerationSeconds": 10}
    forever = {"operator": "Exists"}
    assert te.matching_tolerations([MAINTENANCE], [forever, short]) == [forever]
    assert te.matching_tolerations([MAINTENANCE], [short, forever]) == [short]
    assert te.matching_tolerations([], []) == []


def test_min_toleration_seconds():
    assert te.min_toleration_seconds([{"tolerationSeconds": 30},
                                      {"tolerationSeconds": 10}, {}]) == 10  # fmt: skip
    assert te.min_toleration_seconds([{"tolerationSeconds": -5}]) == 0
    assert te.min_toleration_seconds([{}, {}]) is None  # for ever


def test_a_pod_that_does_not_tolerate_a_no_execute_taint_goes_now():
    assert te.eviction(pod_tolerating(), [MAINTENANCE], NOW) == te.Eviction(NOW, NOW)
    wrong = {"key": "example.com/maintenance", "operator": "Equal", "value": "y"}
    assert te.eviction(pod_tolerating(wrong), [MAINTENANCE], NOW).at == NOW


def test_a_pod_tolerating_for_a_while_gets_its_whole_toleration_from_when_it_is_found():
    # Kubernetes' processPodOnNode starts a countdown when it first finds the pod so,
    # whenever the taint was added: a pod bound to a node tainted long ago (MAINTENANCE
    # was added 100 s before NOW) still gets its 300 s.
    p = pod_tolerating({"key": "example.com/maintenance", "operator": "Exists",
                        "tolerationSeconds": 300})  # fmt: skip
    assert te.eviction(p, [MAINTENANCE], NOW) == te.Eviction(NOW + 300, NOW)
    zero = pod_tolerating({"operator": "Exists", "tolerationSeconds": 0})
    assert te.eviction(zero, [MAINTENANCE], NOW).at == NOW  # no time at all: goes now
    assert te.eviction(p, [MAINTENANCE], NOW + 60, scheduled=(NOW, NOW + 300)).at == NOW + 300


def test_a_pod_tolerating_for_ever_stays_and_no_taint_means_no_eviction():
    p = pod_tolerating({"key": "example.com/maintenance", "operator": "Exists"})
    assert te.eviction(p, [MAINTENANCE], NOW) == te.NEVER
    assert te.eviction(pod_tolerating(), [], NOW) == te.NEVER


def test_a_taint_tolerated_for_ever_does_not_hasten_another():
    p = pod_tolerating({"key": "example.com/maintenance", "operator": "Exists"},
                       {"key": nh.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": 300})  # fmt: skip
    unreachable = {**nh.UNREACHABLE_NO_EXECUTE, "timeAdded": rfc3339(NOW)}
    assert te.eviction(p, [MAINTENANCE, unreachable], NOW).at == NOW + 300


def test_a_running_countdown_is_kept_whatever_the_taints_do():
    defaults = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                for k in (nh.NOT_READY, nh.UNREACHABLE)]  # fmt: skip
    p = pod_tolerating(*defaults)
    first = te.eviction(p, [{**nh.UNREACHABLE_NO_EXECUTE, "timeAdded": rfc3339(NOW)}], NOW)
    assert first == te.Eviction(NOW + 300, NOW)
    # The swap of a flapping node neither restarts the countdown nor shortens it.
    swapped = [{**nh.NOT_READY_NO_EXECUTE, "timeAdded": rfc3339(NOW + 120)}]
    assert te.eviction(p, swapped, NOW + 120, scheduled=(NOW, NOW + 300)).at == NOW + 300
    # Nor does a new taint with a shorter toleration: the scheduled eviction stands, as
    # Kubernetes keeps it (a pod tolerating maintenance for an hour whose node then goes
    # NotReady is not deleted at once).
    p = pod_tolerating(*defaults, {"key": "example.com/maintenance", "operator": "Exists",
                                   "tolerationSeconds": 3600})  # fmt: skip
    hour = te.eviction(p, [MAINTENANCE], NOW)
    assert hour == te.Eviction(NOW + 3600, NOW)
    later = [MAINTENANCE, {**nh.NOT_READY_NO_EXECUTE, "timeAdded": rfc3339(NOW + 3000)}]
    assert te.eviction(p, later, NOW + 3000, scheduled=(NOW, NOW + 3600)).at == NOW + 3600
    # Only a countdown started at this very instant is worked out again.
    assert te.eviction(p, later, NOW, scheduled=(NOW, NOW + 3600)).at == NOW + 300


# --- the whole cluster ----------------------------------------------------------------------


def spawn_node_controllers(cluster: SimCluster, **options) -> tuple:
    """Both controllers as the node-controller service account, as kube-controller-manager
    runs them."""
    lifecycle = cluster.spawn_controller(NodeLifecycleController, "node-lifecycle-controller",
                                         account="node-controller", **options)  # fmt: skip
    eviction = cluster.spawn_controller(TaintEvictionController, "taint-eviction-controller",
                                        account="node-controller")  # fmt: skip
    return lifecycle, eviction


def replica_set(name: str, count: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": count, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause",
                                                           "resources": {"requests": {
                                                               "cpu": "100m"}}}],
                                           "terminationGracePeriodSeconds": 5}}}}  # fmt: skip


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or ()
                 if c["type"] == kind), None)  # fmt: skip


def taint_keys(n: dict) -> set[tuple[str, str]]:
    return keys((n.get("spec") or {}).get("taints") or ())


@pytest.mark.parametrize("seed", [1, 2])
def test_a_dead_node_goes_unknown_its_pods_move_after_300s_and_it_is_cleared_when_back(seed):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3)
        client = cluster.client
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        lifecycle, eviction = spawn_node_controllers(cluster)
        await client.create("replicasets", replica_set("web", 6), namespace="default",
                            group="apps")  # fmt: skip

        async def running(count: int):
            pods = await cluster.running_pods()
            return pods if len(pods) == count else None

        before = await wait_for(lambda: running(6))
        dead = before[0]["spec"]["nodeName"]
        on_dead = {p["metadata"]["name"] for p in before if p["spec"]["nodeName"] == dead}
        heartbeat = condition(await client.get("nodes", dead), "Ready")["lastHeartbeatTime"]
        crashed = net.now()
        await net.crash(dead)

        async def unknown():
            n = await client.get("nodes", dead)
            return n if condition(n, "Ready")["status"] == "Unknown" else None

        silent = await wait_for(unknown, period=0.25)
        went_unknown = net.now() - crashed

        async def no_execute():
            n = await client.get("nodes", dead)
            return n if (nh.UNREACHABLE, "NoExecute") in taint_keys(n) else None

        tainted = await wait_for(no_execute, period=0.25)
        no_execute_at = parse_rfc3339(next(t["timeAdded"] for t in tainted["spec"]["taints"]
                                           if t["effect"] == "NoExecute"))  # fmt: skip
        marked = [p for p in await cluster.pods() if p["metadata"]["name"] in on_dead]

        async def evicted():
            pods = [p for p in await cluster.pods() if p["metadata"]["name"] in on_dead]
            return pods if all(p["metadata"].get("deletionTimestamp") for p in pods) else None

        gone = await wait_for(evicted, period=0.25)
        evicted_at = net.system("clients").clock.now()
        after = await wait_for(lambda: running(6))
        events = (await client.list("events", namespace="default"))["items"]

        # The node comes back: Ready, untainted, and its kubelet finishes the evicted pods.
        await net.restart(dead)

        async def cleared():
            n = await client.get("nodes", dead)
            ours = {nh.UNREACHABLE, nh.NOT_READY}
            clean = not {k for k, _ in taint_keys(n)} & ours
            return n if clean and condition(n, "Ready")["status"] == "True" else None

        back = await wait_for(cleared, limit=30)

        async def finished():
            names = {p["metadata"]["name"] for p in await cluster.pods()}
            return not names & on_dead

        await wait_for(finished, limit=60)
        return {"dead": dead, "on_dead": on_dead, "heartbeat": heartbeat, "silent": silent,
                "went_unknown": went_unknown, "tainted": tainted, "marked": marked,
                "no_execute_at": no_execute_at, "gone": gone, "evicted_at": evicted_at,
                "after": after, "events": events, "back": back,
                "zones": dict(lifecycle.zone_states), "evictions": dict(lifecycle.evictions),
                "deletions": eviction.deletions,
                "errors": (lifecycle.errors, eviction.errors)}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    # Unknown once the last renewal (at most 10 s before the crash) is 50 s old, at the
    # next 5 s monitor pass.
    assert 40 <= r["went_unknown"] <= 56
    ready = condition(r["silent"], "Ready")
    assert (ready["reason"], ready["message"]) == ("NodeStatusUnknown",
                                                   "Kubelet stopped posting node status.")
    assert ready["lastHeartbeatTime"] == r["heartbeat"]
    for kind in ("MemoryPressure", "DiskPressure", "PIDPressure"):
        assert condition(r["silent"], kind)["status"] == "Unknown"
    assert {(nh.UNREACHABLE, "NoSchedule"), (nh.UNREACHABLE, "NoExecute")} <= taint_keys(
        r["tainted"])
    assert all(condition(p, "Ready")["status"] == "False" for p in r["marked"])
    # The default toleration: 300 s after the NoExecute taint (stamped to the second).
    waited = r["evicted_at"] - r["no_execute_at"]
    assert 300 <= waited <= 302
    for p in r["gone"]:
        assert condition(p, "DisruptionTarget")["reason"] == "DeletionByTaintManager"
    replacements = {p["metadata"]["name"] for p in r["after"]} - r["on_dead"]
    assert len(r["after"]) == 6 and len(replacements) >= len(r["on_dead"])
    assert r["dead"] not in {p["spec"]["nodeName"] for p in r["after"]}
    messages = {e["message"] for e in r["events"] if e["reason"] == "TaintManagerEviction"}
    assert messages == {f"Marking for deletion Pod default/{n}" for n in r["on_dead"]}
    assert "NodeNotReady" in {e["reason"] for e in r["events"]}
    assert r["zones"] == {"": nh.NORMAL} and r["evictions"] == {"": 1}
    assert r["deletions"] == len(r["on_dead"]) and r["errors"] == (0, 0)


def pinned_pod(name: str, *tolerations) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": "node-0"},
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "c", "image": "pause"}],
                     "tolerations": list(tolerations)}}  # fmt: skip


def test_pods_go_at_once_after_their_seconds_or_never_as_they_tolerate_a_no_execute_taint():
    maintenance = "example.com/maintenance"

    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        client = cluster.client
        _, eviction = spawn_node_controllers(cluster)
        pods = {
            "intolerant": pinned_pod("intolerant"),
            "wrong-value": pinned_pod("wrong-value", {"key": maintenance, "operator": "Equal",
                                                      "value": "y", "effect": "NoExecute"}),
            "forever": pinned_pod("forever", {"key": maintenance, "operator": "Exists",
                                              "effect": "NoExecute"}),
            "patient": pinned_pod("patient", {"key": maintenance, "value": "x",
                                              "effect": "NoExecute", "tolerationSeconds": 20}),
            "reprieved": pinned_pod("reprieved", {"key": maintenance, "operator": "Exists",
                                                  "tolerationSeconds": 60}),
        }  # fmt: skip
        for body in pods.values():
            await client.create("pods", body, namespace="default")

        async def all_running():
            return len(await cluster.running_pods()) == len(pods)

        await wait_for(all_running)
        start = net.system("clients").clock.now()
        taint = {"key": maintenance, "value": "x", "effect": "NoExecute",
                 "timeAdded": rfc3339(start)}  # fmt: skip
        await client.patch("nodes", "node-0", {"spec": {"taints": [taint]}})
        deleted_at: dict[str, float] = {}

        async def note_deletions(until: float) -> None:
            """Record when each pod is first seen marked for deletion or gone (its
            kubelet stops it at once), until ``until``."""
            while net.now() < until:
                present = {p["metadata"]["name"]: p for p in await cluster.pods()}
                for name in pods:
                    if name not in present or present[name]["metadata"].get("deletionTimestamp"):
                        deleted_at.setdefault(name, net.now())
                await trio.sleep(0.5)  # virtual

        t0 = net.now()
        await note_deletions(t0 + 40)
        await client.patch("nodes", "node-0", {"spec": {"taints": None}})
        await note_deletions(t0 + 120)
        events = (await client.list("events", namespace="default"))["items"]
        alive = {p["metadata"]["name"] for p in await cluster.running_pods()}
        return {"deleted": {n: at - t0 for n, at in deleted_at.items()}, "alive": alive,
                "events": events, "errors": eviction.errors}  # fmt: skip

    r = simulate(scenario, seed=3).value
    deleted = r["deleted"]
    assert deleted["intolerant"] <= 1.5 and deleted["wrong-value"] <= 1.5
    assert 19 <= deleted["patient"] <= 21.5
    assert "forever" not in deleted and "reprieved" not in deleted
    assert {"forever", "reprieved"} <= r["alive"]
    messages = {e["message"] for e in r["events"] if e["reason"] == "TaintManagerEviction"}
    assert "Cancelling deletion of Pod default/reprieved" in messages
    assert "Marking for deletion Pod default/patient" in messages
    assert r["errors"] == 0



def test_when_every_node_is_lost_nothing_is_evicted_until_one_comes_back():
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2)
        client = cluster.client
        lifecycle, _ = spawn_node_controllers(cluster)
        for i in range(2):
            body = pinned_pod(f"p{i}")
            body["spec"]["nodeSelector"]["kubernetes.io/hostname"] = f"node-{i}"
            await client.create("pods", body, namespace="default")

        async def all_running():
            return len(await cluster.running_pods()) == 2

        await wait_for(all_running)
        await net.crash("node-0")
        await net.crash("node-1")
        await trio.sleep(420)  # virtual: past the grace period and the 300 s toleration
        nodes = {n["metadata"]["name"]: n for n in (await client.list("nodes"))["items"]}
        pods = await cluster.pods()
        lost = {"ready": {name: condition(n, "Ready")["status"] for name, n in nodes.items()},
                "taints": set().union(*map(taint_keys, nodes.values())),
                "going": [p["metadata"]["name"] for p in pods
                          if p["metadata"].get("deletionTimestamp")],
                "zones": dict(lifecycle.zone_states)}  # fmt: skip

        # node-0 is back: the control plane works after all, and node-1 is lost alone.
        await net.restart("node-0")
        back = net.now()

        async def node_1_tainted():
            n = await client.get("nodes", "node-1")
            return (nh.UNREACHABLE, "NoExecute") in taint_keys(n)

        await wait_for(node_1_tainted, period=0.25)
        return {**lost, "tainted_after": net.now() - back, "errors": lifecycle.errors}

    r = simulate(scenario, seed=4).value
    assert r["ready"] == {"node-0": "Unknown", "node-1": "Unknown"}
    assert (nh.UNREACHABLE, "NoSchedule") in r["taints"]
    assert not {k for k in r["taints"] if k[1] == "NoExecute"} and r["going"] == []
    assert r["zones"] == {"": nh.FULL_DISRUPTION}
    # Once a node is Ready again, tainting resumes: node-1, Unknown all along, is
    # tainted within a few monitor passes.
    assert r["tainted_after"] <= 20 and r["errors"] == 0
