"""The HorizontalPodAutoscaler's arithmetic against Kubernetes' documented behaviour
(the replica calculator's cases, tolerance, missing and unready pods, the rate limits
with and without spec.behavior, stabilisation windows, conditions and events)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver._meta import rfc3339
from actorkube.controllers import (
    DeploymentController,
    HorizontalPodAutoscalerController,
    ReplicaSetController,
)
from actorkube.controllers import _autoscaling as hpa
from actorkube.sim import SimNetwork, simulate

NOW = 1_800_000_000.0
STARTED = NOW - 3600  # long past the CPU initialisation period


def pod(name, cpu_request="1", *, phase="Running", ready=True, started=STARTED,
        ready_since=None, labels=None, deleted=False, containers=None):  # fmt: skip
    meta = {"name": name, "namespace": "default", "labels": labels or {"app": "web"}}
    if deleted:
        meta["deletionTimestamp"] = rfc3339(NOW - 1)
    if containers is None:
        containers = [{"name": "c", "resources": {"requests": {"cpu": cpu_request}}}]
    status = {"phase": phase}
    if started is not None:
        status["startTime"] = rfc3339(started)
    if ready is not None:
        since = started + 10 if ready_since is None else ready_since
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                 "lastTransitionTime": rfc3339(since)}]  # fmt: skip
    return {"metadata": meta, "spec": {"containers": containers}, "status": status}


def usage(name, *cpus, at=NOW - 5, window="15s"):
    return {"metadata": {"name": name, "namespace": "default"}, "timestamp": rfc3339(at),
            "window": window,
            "containers": [{"name": f"c{i}" if i else "c", "usage": {"cpu": c, "memory": "1Mi"}}
                           for i, c in enumerate(cpus)]}  # fmt: skip


def metrics_of(*items):
    found, _ = hpa.resource_metrics(items, "cpu")
    return found


# --- the replica calculator (Kubernetes' replica_calculator_test cases) ---------------


def test_scale_up_to_the_ratio_of_utilisation_to_target():
    pods = [pod("a"), pod("b"), pod("c")]
    metrics = metrics_of(usage("a", "300m"), usage("b", "500m"), usage("c", "700m"))
    assert hpa.resource_replicas(3, 30, "cpu", pods, metrics, NOW) == (5, 50, 500)


def test_scale_down_rounds_up():
    pods = [pod(n) for n in "abcde"]
    cpus = ["100m", "300m", "500m", "250m", "250m"]
    metrics = metrics_of(*(usage(n, c) for n, c in zip("abcde", cpus, strict=True)))
    assert hpa.resource_replicas(5, 50, "cpu", pods, metrics, NOW) == (3, 28, 280)


def test_a_change_within_the_tolerance_keeps_the_count():
    pods = [pod("a"), pod("b"), pod("c")]
    metrics = metrics_of(usage("a", "1010m"), usage("b", "1030m"), usage("c", "1020m"))
    assert hpa.resource_replicas(3, 100, "cpu", pods, metrics, NOW) == (3, 102, 1020)
    # Just outside it, the count moves.
    metrics = metrics_of(usage("a", "1110m"), usage("b", "1130m"), usage("c", "1120m"))
    assert hpa.resource_replicas(3, 100, "cpu", pods, metrics, NOW)[0] == 4


def test_unready_pods_count_as_idle_on_a_scale_up():
    pods = [pod("a", ready=False), pod("b"), pod("c")]
    metrics = metrics_of(usage("a", "300m"), usage("b", "500m"), usage("c", "700m"))
    # Ready pods alone: 60% of a 30% target; with the unready one at 0: 40%, 4 pods.
    assert hpa.resource_replicas(3, 30, "cpu", pods, metrics, NOW) == (4, 60, 600)


def test_pending_deleted_and_failed_pods():
    pods = [pod("a"), pod("b", phase="Pending"), pod("c", deleted=True),
            pod("d", phase="Failed")]  # fmt: skip
    metrics = metrics_of(usage("a", "800m"), usage("c", "900m"), usage("d", "900m"))
    groups = hpa.group_pods(pods, metrics, "cpu", NOW)
    assert (groups.ready, groups.unready, groups.ignored) == (1, {"b"}, {"c", "d"})
    # a alone: 80% of a 50% target -> 1.6, the pending pod at 0 -> 0.8: would turn the
    # direction, so the count stays.
    assert hpa.resource_replicas(4, 50, "cpu", pods, metrics, NOW)[0] == 4


def test_missing_pods_count_as_their_request_on_a_scale_down_and_zero_on_a_scale_up():
    pods = [pod("a"), pod("b"), pod("c"), pod("d")]
    low = metrics_of(usage("a", "100m"), usage("b", "100m"), usage("c", "100m"))
    # 10% of a 50% target; d counted at 100%: (300 + 1000) / 4000 = 32.5% -> 3.
    assert hpa.resource_replicas(4, 50, "cpu", pods, low, NOW)[0] == 3
    high = metrics_of(usage("a", "900m"), usage("b", "900m"), usage("c", "900m"))
    # 90% of 50%; d at 0: 2700 / 4000 = 67.5% -> ceil(1.35 * 4) = 6.
    assert hpa.resource_replicas(4, 50, "cpu", pods, high, NOW)[0] == 6


def test_a_target_above_100_percent_counts_missing_pods_at_the_target():
    pods = [pod("a"), pod("b")]
    metrics = metrics_of(usage("a", "500m"))
    # 50% of a 200% target; b counted at 200%: (500 + 2000) / 2000 = 125% -> 0.625 * 2
    assert hpa.resource_replicas(2, 200, "cpu", pods, metrics, NOW)[0] == 2
    metrics = metrics_of(usage("a", "100m"))
    assert hpa.resource_replicas(4, 200, "cpu", [*pods, pod("x"), pod("y")], metrics,
                                 NOW)[0] == 4  # fmt: skip


def test_cpu_readiness_within_and_after_the_initialisation_period():
    young = NOW - 60
    # Ready, but turned Ready after the metric's window began: not counted yet.
    fresh = pod("a", started=young, ready_since=NOW - 10)
    settled = pod("b", started=young, ready_since=NOW - 40)
    metrics = metrics_of(usage("a", "100m", at=NOW - 5), usage("b", "100m", at=NOW - 5))
    groups = hpa.group_pods([fresh, settled], metrics, "cpu", NOW)
    assert groups.unready == {"a"} and groups.ready == 1
    # After 5 minutes, a pod not ready is unready only if it never was ready (its
    # readiness last changed within 30 s of its start).
    never = pod("c", ready=False, ready_since=STARTED + 5)
    lost = pod("d", ready=False, ready_since=NOW - 100)
    metrics = metrics_of(usage("c", "1"), usage("d", "1"))
    assert hpa.group_pods([never, lost], metrics, "cpu", NOW).unready == {"c"}
    # Memory does not look at readiness.
    assert hpa.group_pods([never], metrics_of(usage("c", "1")), "memory", NOW).ready == 1


def test_requests_and_their_errors():
    sidecar = pod("a", containers=[{"name": "c", "resources": {"requests": {"cpu": "200m"}}}])
    sidecar["spec"]["initContainers"] = [
        {"name": "log", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}},
        {"name": "init", "resources": {"requests": {"cpu": "5"}}}]
    assert hpa.pod_requests([sidecar], "", "cpu") == {"a": 250}
    assert hpa.pod_requests([sidecar], "log", "cpu") == {"a": 50}
    bare = pod("b", containers=[{"name": "c"}])
    with pytest.raises(ValueError, match="missing request for cpu in container c of Pod b"):
        hpa.pod_requests([bare], "", "cpu")


def test_container_metrics_take_the_named_container():
    item = usage("a", "100m", "300m")  # containers c and c1
    assert hpa.resource_metrics([item], "cpu")[0]["a"].value == 400
    assert hpa.resource_metrics([item], "cpu", "c1")[0]["a"].value == 300
    with pytest.raises(ValueError, match="container nope not present in metrics for pod "
                                         "default/a"):  # fmt: skip
        hpa.resource_metrics([item], "cpu", "nope")
    assert hpa.resource_metrics([item], "cpu")[0]["a"].window == 15.0
    with pytest.raises(ValueError, match="no metrics returned from resource metrics API"):
        hpa.resource_metrics([], "cpu")


def test_average_value_targets():
    pods = [pod("a"), pod("b")]
    metrics = metrics_of(usage("a", "300m"), usage("b", "500m"))
    # 400m average of a 200m target -> 4 pods.
    assert hpa.raw_resource_replicas(2, 200, "cpu", pods, metrics, NOW) == (4, 400)
    assert hpa.raw_resource_replicas(2, 390, "cpu", pods, metrics, NOW) == (2, 400)


@given(st.lists(st.integers(1, 4000), min_size=1, max_size=20), st.integers(1, 200),
       st.integers(1, 20))  # fmt: skip
def test_with_every_pod_ready_the_count_is_the_ceiling_of_ratio_times_pods(
    cpus, target, current
):
    pods = [pod(f"p{i}") for i in range(len(cpus))]
    metrics = metrics_of(*(usage(f"p{i}", f"{c}m") for i, c in enumerate(cpus)))
    replicas, utilization, raw = hpa.resource_replicas(current, target, "cpu", pods, metrics, NOW)
    assert utilization == sum(cpus) * 100 // (1000 * len(cpus))
    assert raw == sum(cpus) // len(cpus)
    ratio = utilization / target
    expected = current if abs(1 - ratio) <= hpa.TOLERANCE else math.ceil(ratio * len(cpus))
    assert replicas == expected


# --- normalisation ----------------------------------------------------------------------


def autoscaler(*, min_replicas=1, max_replicas=10, behavior=None, target=50, metrics=None):
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min_replicas, "maxReplicas": max_replicas,
            "metrics": metrics if metrics is not None else [
                {"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": target}}}]}  # fmt: skip
    if behavior is not None:
        spec["behavior"] = behavior
    return {"metadata": {"name": "web", "namespace": "default"}, "spec": spec}


DEFAULT_BEHAVIOR = {
    "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]},
    "scaleDown": {"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]},
}  # fmt: skip


def reasons(conditions):
    return {c.type: (c.status, c.reason) for c in conditions}


def test_without_a_behavior_a_scale_up_is_at_most_double_or_four():
    history = hpa.History()
    desired, conditions = hpa.normalize(autoscaler(max_replicas=100), history, 1, 20, 1, NOW)
    assert desired == 4
    assert reasons(conditions)[hpa.SCALING_LIMITED] == ("True", "ScaleUpLimit")
    desired, _ = hpa.normalize(autoscaler(max_replicas=100), history, 10, 50, 1, NOW)
    assert desired == 20
    desired, conditions = hpa.normalize(autoscaler(max_replicas=5), history, 4, 8, 1, NOW)
    assert desired == 5 and reasons(conditions)[hpa.SCALING_LIMITED] == ("True",
                                                                          "TooManyReplicas")


def test_without_a_behavior_scale_downs_wait_five_minutes():
    history = hpa.History()
    history.record_initial(6, NOW)
    desired, conditions = hpa.normalize(autoscaler(), history, 6, 2, 1, NOW + 15)
    assert desired == 6
    assert reasons(conditions)[hpa.ABLE_TO_SCALE] == ("True", "ScaleDownStabilized")
    desired, _ = hpa.normalize(autoscaler(), history, 6, 2, 1, NOW + 200)
    assert desired == 6
    # The first recommendation (6) is older than 5 minutes; the later ones say 2.
    desired, conditions = hpa.normalize(autoscaler(), history, 6, 2, 1, NOW + 301)
    assert desired == 2
    assert reasons(conditions)[hpa.ABLE_TO_SCALE] == ("True", "ReadyForNewScale")
    desired, conditions = hpa.normalize(autoscaler(min_replicas=3), history, 6, 2, 3, NOW + 302)
    assert desired == 3
    assert reasons(conditions)[hpa.SCALING_LIMITED] == ("True", "TooFewReplicas")


def test_the_default_behavior_adds_four_pods_or_doubles_every_15_seconds():
    history = hpa.History()
    target = autoscaler(max_replicas=100, behavior=DEFAULT_BEHAVIOR)
    desired, conditions = hpa.normalize(target, history, 1, 30, 1, NOW)
    assert desired == 5  # max(1 + 4, 1 * 2)
    assert reasons(conditions)[hpa.SCALING_LIMITED] == ("True", "ScaleUpLimit")
    history.scaled(DEFAULT_BEHAVIOR, 1, 5, NOW)
    # Within the same 15 s the period began at 1: no more than 5.
    assert hpa.normalize(target, history, 5, 30, 1, NOW + 10)[0] == 5
    # A new period: from 5, to max(9, 10).
    assert hpa.normalize(target, history, 5, 30, 1, NOW + 16)[0] == 10


def test_a_behavior_rate_limits_scale_downs_and_can_disable_them():
    behavior = {**DEFAULT_BEHAVIOR, "scaleDown": {
        "stabilizationWindowSeconds": 0, "selectPolicy": "Min", "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60},
            {"type": "Percent", "value": 50, "periodSeconds": 60}]}}  # fmt: skip
    history = hpa.History()
    target = autoscaler(behavior=behavior)
    # Min picks the smaller change: 1 pod rather than half of 10.
    desired, conditions = hpa.normalize(target, history, 10, 2, 1, NOW)
    assert desired == 9
    assert reasons(conditions)[hpa.SCALING_LIMITED] == ("True", "ScaleDownLimit")
    history.scaled(behavior, 10, 9, NOW)
    assert hpa.normalize(target, history, 9, 2, 1, NOW + 30)[0] == 9  # the period's 1 is used
    assert hpa.normalize(target, history, 9, 2, 1, NOW + 61)[0] == 8
    disabled = {**behavior, "scaleDown": {**behavior["scaleDown"], "selectPolicy": "Disabled"}}
    assert hpa.normalize(autoscaler(behavior=disabled), hpa.History(), 10, 2, 1, NOW)[0] == 10


def test_a_scale_up_stabilisation_window_takes_the_lowest_recent_recommendation():
    behavior = {**DEFAULT_BEHAVIOR, "scaleUp": {**DEFAULT_BEHAVIOR["scaleUp"],
                                                "stabilizationWindowSeconds": 60}}  # fmt: skip
    history = hpa.History()
    history.record_initial(2, NOW)
    target = autoscaler(behavior=behavior)
    desired, conditions = hpa.normalize(target, history, 2, 6, 1, NOW + 15)
    assert desired == 2
    assert reasons(conditions)[hpa.ABLE_TO_SCALE] == ("True", "ScaleUpStabilized")
    assert hpa.normalize(target, history, 2, 6, 1, NOW + 61)[0] == 6


# --- one sync --------------------------------------------------------------------------


def scale(replicas, selector="app=web"):
    return {"spec": {"replicas": replicas}, "status": {"replicas": replicas,
                                                         "selector": selector}}  # fmt: skip


def test_a_plan_scales_up_with_kubernetes_words():
    pods = [pod("a"), pod("b")]
    inputs = hpa.MetricInputs(pods, [usage("a", "900m"), usage("b", "700m")])
    plan = hpa.plan(autoscaler(), scale(2), inputs, hpa.History(), NOW)
    assert (plan.current, plan.desired, plan.rescale) == (2, 4, True)  # 80% of 50% -> 3.2
    assert plan.reason == "cpu resource utilization (percentage of request) above target"
    assert plan.statuses == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 80, "averageValue": "800m"}}}]
    assert reasons(plan.conditions)[hpa.SCALING_ACTIVE] == ("True", "ValidMetricFound")


def test_a_plan_without_metrics_fails_as_kubernetes_says():
    inputs = hpa.MetricInputs([pod("a")], None, "the server could not find the requested "
                              "resource (get pods.metrics.k8s.io)")  # fmt: skip
    plan = hpa.plan(autoscaler(), scale(1), inputs, hpa.History(), NOW)
    assert plan.stop and not plan.rescale
    assert [(e.reason, e.message) for e in plan.events] == [
        ("FailedGetResourceMetric", "failed to get cpu utilization: unable to get metrics for "
         "resource cpu: unable to fetch metrics from resource metrics API: the server could "
         "not find the requested resource (get pods.metrics.k8s.io)"),
        ("FailedComputeMetricsReplicas", "invalid metrics (1 invalid out of 1), first error is: "
         "failed to get cpu resource metric value: failed to get cpu utilization: unable to get "
         "metrics for resource cpu: unable to fetch metrics from resource metrics API: the "
         "server could not find the requested resource (get pods.metrics.k8s.io)")]
    (active,) = plan.conditions
    assert (active.status, active.reason) == ("False", "FailedGetResourceMetric")
    assert active.message.startswith("the HPA was unable to compute the replica count: failed")
    assert plan.statuses == [{"type": ""}]


def test_one_failing_metric_does_not_stop_a_scale_up_but_stops_a_scale_down():
    metrics = [autoscaler()["spec"]["metrics"][0],
               {"type": "Pods", "pods": {"metric": {"name": "qps"},
                                         "target": {"type": "AverageValue", "averageValue": "1"}}}]
    hot = hpa.MetricInputs([pod("a")], [usage("a", "900m")])
    plan = hpa.plan(autoscaler(metrics=metrics), scale(1), hot, hpa.History(), NOW)
    assert plan.rescale and plan.desired == 2 and not plan.stop
    assert "invalid metrics (1 invalid out of 2)" in plan.error
    assert [e.reason for e in plan.events] == ["FailedGetPodsMetric"]
    cold = hpa.MetricInputs([pod("a"), pod("b")], [usage("a", "10m"), usage("b", "10m")])
    plan = hpa.plan(autoscaler(metrics=metrics), scale(2), cold, hpa.History(), NOW)
    assert plan.stop and reasons(plan.conditions)[hpa.SCALING_ACTIVE] == (
        "False", "FailedGetPodsMetric")


def test_plans_outside_the_range_and_at_zero():
    inputs = hpa.MetricInputs([], None)
    plan = hpa.plan(autoscaler(max_replicas=3), scale(7), inputs, hpa.History(), NOW)
    assert (plan.desired, plan.rescale, plan.reason) == (
        3, True, "Current number of replicas above Spec.MaxReplicas")
    plan = hpa.plan(autoscaler(min_replicas=2), scale(1), inputs, hpa.History(), NOW)
    assert (plan.desired, plan.reason) == (2, "Current number of replicas below Spec.MinReplicas")
    plan = hpa.plan(autoscaler(), scale(0), inputs, hpa.History(), NOW)
    assert not plan.rescale and reasons(plan.conditions)[hpa.SCALING_ACTIVE] == (
        "False", "ScalingDisabled")


def test_selector_problems():
    inputs = hpa.MetricInputs([pod("a")], [usage("a", "100m")])
    plan = hpa.plan(autoscaler(), scale(1, selector=""), inputs, hpa.History(), NOW)
    assert plan.stop and [e.reason for e in plan.events] == ["SelectorRequired",
                                                              "FailedComputeMetricsReplicas"]
    assert reasons(plan.conditions)[hpa.SCALING_ACTIVE] == ("False", "InvalidSelector")
    others = {"other": hpa.Selector.parse("app=web")}
    plan = hpa.plan(autoscaler(), scale(1), inputs, hpa.History(), NOW, others=others)
    assert plan.stop and plan.events[0].message == (
        "pods by selector app=web are controlled by multiple HPAs: "
        "[{other default} {web default}]")


def test_conditions_keep_their_transition_time_while_their_status_holds():
    first = hpa.set_condition([], hpa.Condition("AbleToScale", "True", "A", "a"), NOW)
    again = hpa.set_condition(first, hpa.Condition("AbleToScale", "True", "B", "b"), NOW + 60)
    assert again[0]["lastTransitionTime"] == rfc3339(NOW) and again[0]["reason"] == "B"
    flipped = hpa.set_condition(again, hpa.Condition("AbleToScale", "False", "C", "c"), NOW + 90)
    assert flipped[0]["lastTransitionTime"] == rfc3339(NOW + 90)
    both = hpa.set_condition(flipped, hpa.Condition("ScalingActive", "True", "D", "d"), NOW)
    assert [c["type"] for c in both] == ["AbleToScale", "ScalingActive"]


# --- the whole cluster ----------------------------------------------------------------


def web_deployment() -> dict:
    template = {"metadata": {"labels": {"app": "web"},
                             "annotations": {"sim.actorkube.io/load-group": "web"}},
                "spec": {"containers": [{"name": "c", "image": "server", "resources": {
                    "requests": {"cpu": "200m"}, "limits": {"cpu": "1"}}}]}}  # fmt: skip
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": template}}  # fmt: skip


def test_a_deployment_follows_its_load_up_at_once_and_down_after_five_minutes():
    """600m of load over pods requesting 200m at a 50% target: 6 pods (1 -> 4, the
    most one step may add without a behavior, then 6); the load dropped to 100m: the
    HPA holds 6 for the 5-minute window, then goes down to 1."""

    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        cluster.spawn_controller(DeploymentController, "deployment-controller")
        controller = cluster.spawn_controller(HorizontalPodAutoscalerController,
                                              "horizontal-pod-autoscaler")  # fmt: skip
        client, clock = cluster.client, net.system("clients").clock
        await client.create("deployments", web_deployment(), namespace="default", group="apps")
        await client.create("horizontalpodautoscalers", autoscaler(), namespace="default",
                            group="autoscaling")  # fmt: skip
        cluster.load.set("web", 600)
        sizes: list[tuple[float, int]] = []  # (time, spec.replicas) at every change

        async def replicas(wanted: int, utilization: int | None = None):
            d = await client.get("deployments", "web", namespace="default", group="apps")
            size = d["spec"]["replicas"]
            if not sizes or sizes[-1][1] != size:
                sizes.append((clock.now(), size))
            h = await client.get("horizontalpodautoscalers", "web", namespace="default",
                                 group="autoscaling")  # fmt: skip
            running = len(await cluster.running_pods(label_selector="app=web"))
            status = h.get("status", {})
            settled = status.get("desiredReplicas") == wanted == running
            if utilization is not None:
                current = [(m.get("resource") or {}).get("current") or {}
                           for m in status.get("currentMetrics") or ()]  # fmt: skip
                settled = settled and [c.get("averageUtilization") for c in current] == [
                    utilization]
            return h if size == wanted and settled else None

        start = clock.now()
        high = await wait_for(lambda: replicas(6, 50), limit=600)
        cluster.load.set("web", 100)
        dropped = clock.now()
        low = await wait_for(lambda: replicas(1), limit=900)
        listed = await client.list("events", namespace="default")
        rescales = [e["message"] for e in listed["items"]
                    if e["involvedObject"]["name"] == "web" and e["reason"] == "SuccessfulRescale"]
        return {"sizes": [(t - start, n) for t, n in sizes], "dropped": dropped - start,
                "high": high["status"], "low": low["status"], "rescales": rescales,
                "errors": controller.errors}  # fmt: skip

    result = simulate(scenario, seed=1).value
    up = [(t, n) for t, n in result["sizes"] if t <= result["dropped"]]
    down = [(t, n) for t, n in result["sizes"] if t > result["dropped"]]
    assert [n for _, n in up] == [1, 4, 6], result["sizes"]
    # Nothing went down until five minutes after the load fell (the highest
    # recommendation of the window is taken, so it may go down in steps), then to 1.
    assert down[-1][1] == 1 and all(n < 6 for _, n in down), result["sizes"]
    assert down[0][0] - result["dropped"] >= 300, result
    assert down[-1][0] - result["dropped"] <= 300 + 4 * hpa.SYNC_PERIOD, result
    (metric,) = result["high"]["currentMetrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["current"]["averageUtilization"] == 50
    assert metric["resource"]["current"]["averageValue"] == "100m"
    assert (result["high"]["currentReplicas"], result["low"]["desiredReplicas"]) == (6, 1)
    assert result["low"]["lastScaleTime"] > result["high"]["lastScaleTime"]
    conditions = {c["type"]: c["reason"] for c in result["low"]["conditions"]}
    assert conditions["ScalingActive"] == "ValidMetricFound"
    assert result["rescales"][0] == ("New size: 4; reason: cpu resource utilization "
                                     "(percentage of request) above target")
    assert result["rescales"][-1] == "New size: 1; reason: All metrics below target"
    # The first sync may come before the first pod's readiness is a metric window old:
    # Kubernetes' "did not receive metrics for targeted pods (pods might be unready)".
    assert result["errors"] <= 1
