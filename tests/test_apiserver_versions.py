"""A resource served at two versions: autoscaling/v1 HorizontalPodAutoscalers as
conversions of the stored autoscaling/v2 ones. The conversion itself (Kubernetes'
pkg/apis/autoscaling/v1/conversion.go: targetCPUUtilizationPercentage, the round-trip
annotations, and a v2 object that comes back from v1 as itself), then every verb at v1
through the in-process API server, field ownership across the versions, and discovery
and OpenAPI listing both."""

from __future__ import annotations

import json

import trio
from hypothesis import given
from hypothesis import strategies as st
from inproc_api import start_api

from actorkube.actor import Actor, ActorSystem, handler
from actorkube.apiserver._autoscaling import (
    BEHAVIOR,
    CONDITIONS,
    CURRENT_METRICS,
    METRICS,
    to_v1,
    to_v2,
)
from actorkube.apiserver._bodies import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from actorkube.apiserver._builtin import builtin_registry, default_hpa, validate_hpa
from actorkube.apiserver._decode import decode
from actorkube.apiserver._messages import ApiRequest, StopWatch, WatchEvent
from actorkube.apiserver._openapi import OpenApi
from actorkube.apiserver._rest import (
    aggregated_discovery,
    api_group_list,
    api_resource_list,
    parse_request,
)
from actorkube.apiserver._schema import builtin_schema

SCHEMA = builtin_schema()
HPA = "horizontalpodautoscalers"
APPLY = "application/apply-patch+yaml"
REF = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}


def cpu(utilization: int) -> dict:
    return {"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": utilization}}}  # fmt: skip


MEMORY = {"type": "Resource", "resource": {"name": "memory", "target": {
    "type": "AverageValue", "averageValue": "500Mi"}}}  # fmt: skip
QUEUE = {"type": "External", "external": {"metric": {"name": "queue"}, "target": {
    "type": "AverageValue", "averageValue": "30"}}}  # fmt: skip


def v2(name: str = "web", metrics=None, **spec) -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": REF, "maxReplicas": 5,
                     **({"metrics": metrics} if metrics is not None else {}), **spec}}  # fmt: skip


def v1(name: str = "web", **spec) -> dict:
    return {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name},
            "spec": {"scaleTargetRef": REF, "maxReplicas": 5, **spec}}  # fmt: skip


# --- the conversion (pure) ------------------------------------------------------------------


def test_v1s_cpu_target_is_a_cpu_utilization_metric_and_back():
    stored = to_v2(v1(minReplicas=2, targetCPUUtilizationPercentage=50))
    assert stored["apiVersion"] == "autoscaling/v2"
    assert stored["spec"] == {"scaleTargetRef": REF, "minReplicas": 2, "maxReplicas": 5,
                              "metrics": [cpu(50)]}  # fmt: skip
    shown = to_v1(stored)
    assert shown == v1(minReplicas=2, targetCPUUtilizationPercentage=50)
    # v1 always had a CPU target: without one (and no other metric) it is 80%.
    assert to_v2(v1())["spec"]["metrics"] == [cpu(80)]


def test_what_v1_cannot_say_goes_to_annotations_in_kubernetes_shapes():
    stored = default_hpa(v2(metrics=[MEMORY, cpu(60)], behavior={"scaleDown": {
        "stabilizationWindowSeconds": 60}}))  # fmt: skip
    stored["status"] = {
        "currentReplicas": 2, "desiredReplicas": 3,
        "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
            "averageUtilization": 40, "averageValue": "200m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale",
                        "message": "a < b & c"}]}  # fmt: skip
    shown = to_v1(stored)
    annotations = shown["metadata"]["annotations"]
    # The JSON is Go's, field for field (the cpu metric, last, is Kubernetes' own case).
    assert annotations[METRICS] == (
        '[{"type":"Resource","resource":{"name":"memory","targetAverageValue":"500Mi"}}]')
    assert annotations[CURRENT_METRICS] == (
        '[{"type":"Resource","resource":{"name":"cpu","currentAverageUtilization":40,'
        '"currentAverageValue":"200m"}}]')
    assert annotations[CONDITIONS] == (
        '[{"type":"AbleToScale","status":"True","lastTransitionTime":null,'
        '"reason":"ReadyForNewScale","message":"a \\u003c b \\u0026 c"}]')
    assert json.loads(annotations[BEHAVIOR]) == {
        "ScaleUp": {"StabilizationWindowSeconds": 0, "SelectPolicy": "Max", "Policies": [
            {"Type": "Pods", "Value": 4, "PeriodSeconds": 15},
            {"Type": "Percent", "Value": 100, "PeriodSeconds": 15}]},
        "ScaleDown": {"StabilizationWindowSeconds": 60, "SelectPolicy": "Max", "Policies": [
            {"Type": "Percent", "Value": 100, "PeriodSeconds": 15}]}}  # fmt: skip
    assert shown["spec"]["targetCPUUtilizationPercentage"] == 60
    assert shown["status"] == {"currentReplicas": 2, "desiredReplicas": 3,
                               "currentCPUUtilizationPercentage": 40}  # fmt: skip
    back = to_v2(shown)
    assert back == stored  # the annotations consumed, nothing else lost
    assert "annotations" not in back["metadata"]


def test_a_v1_object_as_kubernetes_writes_it_converts_as_kubernetes_does():
    # Kubernetes leaves the cpu metric out of the annotation and puts it back last.
    written = v1(targetCPUUtilizationPercentage=70)
    written["metadata"]["annotations"] = {
        "team": "a",
        METRICS: '[{"type":"Pods","pods":{"metricName":"qps","targetAverageValue":"1k"}}]',
        CURRENT_METRICS: '[{"type":"Pods","pods":{"metricName":"qps",'
                         '"currentAverageValue":"1500m"}}]',
        CONDITIONS: '[{"type":"ScalingActive","status":"True","lastTransitionTime":null}]',
        BEHAVIOR: '{"scaleUp":{"selectPolicy":"Min"},"ScaleDown":null}',  # any case, as Go
    }  # fmt: skip
    written["status"] = {"currentReplicas": 1, "desiredReplicas": 1,
                         "currentCPUUtilizationPercentage": 10}  # fmt: skip
    stored = to_v2(written)
    assert stored["metadata"]["annotations"] == {"team": "a"}
    pods = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
        "type": "AverageValue", "averageValue": "1k"}}}  # fmt: skip
    assert stored["spec"]["metrics"] == [pods, cpu(70)]
    assert stored["spec"]["behavior"] == {"scaleUp": {"selectPolicy": "Min"}}
    # The annotation says more than currentCPUUtilizationPercentage: it wins.
    assert stored["status"]["currentMetrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "qps"}, "current": {"averageValue": "1500m"}}}]  # fmt: skip
    assert stored["status"]["conditions"] == [{"type": "ScalingActive", "status": "True"}]


def test_an_annotation_that_does_not_parse_is_ignored_and_dropped():
    written = v1(targetCPUUtilizationPercentage=70)
    written["metadata"]["annotations"] = {
        METRICS: "not json", BEHAVIOR: '{"ScaleUp":{"SelectPolicy":3}}',
        CURRENT_METRICS: '[{"type":"Pods","pods":{"currentAverageValue":"lots"}}]'}  # fmt: skip
    written["status"] = {"currentCPUUtilizationPercentage": 10}
    stored = to_v2(written)
    assert "annotations" not in stored["metadata"]
    assert stored["spec"]["metrics"] == [cpu(70)] and "behavior" not in stored["spec"]
    assert stored["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageUtilization": 10}}}]  # fmt: skip


def test_the_cpu_metric_keeps_its_place_and_v1_sets_its_value():
    stored = default_hpa(v2(metrics=[cpu(50), MEMORY, cpu(90)]))
    shown = to_v1(stored)
    assert shown["spec"]["targetCPUUtilizationPercentage"] == 50
    assert to_v2(shown) == stored
    # A v1 client changes the target: the first cpu metric takes it, in its place.
    shown["spec"]["targetCPUUtilizationPercentage"] = 65
    assert to_v2(shown)["spec"]["metrics"] == [cpu(65), MEMORY, cpu(90)]
    # Or removes it: that metric goes.
    del shown["spec"]["targetCPUUtilizationPercentage"]
    assert to_v2(shown)["spec"]["metrics"] == [MEMORY, cpu(90)]


def test_an_object_metrics_zero_target_value_beside_an_average_is_not_read_back():
    rps = {"type": "Object", "object": {
        "describedObject": {"kind": "Ingress", "name": "main"}, "metric": {"name": "rps"},
        "target": {"type": "AverageValue", "averageValue": "10"}}}  # fmt: skip
    shown = to_v1(default_hpa(v2(metrics=[rps])))
    assert json.loads(shown["metadata"]["annotations"][METRICS]) == [{"type": "Object", "object": {
        "target": {"kind": "Ingress", "name": "main"}, "metricName": "rps",
        "targetValue": "0", "averageValue": "10"}}]  # fmt: skip
    assert to_v2(shown)["spec"]["metrics"] == [rps]


def test_a_v2_write_drops_the_round_trip_annotations_and_targets_set_one_field():
    hpa = v2(metrics=[cpu(50)])
    hpa["metadata"]["annotations"] = {METRICS: "[]", "keep": "me"}
    assert default_hpa(hpa)["metadata"]["annotations"] == {"keep": "me"}
    both = {"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "1Gi", "averageUtilization": 50}}}  # fmt: skip
    [problem] = validate_hpa(default_hpa(v2(metrics=[both])), None)
    assert (problem.field, problem.detail) == (
        "spec.metrics[0].resource.target.averageValue",
        "may not set both a target raw value and a target utilization")


# --- the round trip, over generated stored objects ----------------------------------------

names = st.from_regex(r"[a-z]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
quantities = st.sampled_from(["0", "1", "250m", "1500m", "2", "100Mi", "1Gi", "10k"])
# Targets must be positive (validation); what is measured may be 0.
positive = st.sampled_from(["1", "250m", "1500m", "2", "100Mi", "1Gi", "10k"])
times = st.sampled_from(["2025-01-01T00:00:00Z", "2026-11-26T12:30:00Z"])
selectors = st.builds(lambda k, v: {"matchLabels": {k: v}}, names, names)
identifiers = st.fixed_dictionaries({"name": names}, optional={"selector": selectors})
references = st.fixed_dictionaries(
    {"kind": st.sampled_from(["Deployment", "Service", "Ingress"]), "name": names},
    optional={"apiVersion": st.sampled_from(["apps/v1", "v1", "networking.k8s.io/v1"])})
resource_names = st.sampled_from(["cpu", "memory", "ephemeral-storage"])
utilization = st.integers(1, 200)
resource_targets = st.one_of(
    st.builds(lambda u: {"type": "Utilization", "averageUtilization": u}, utilization),
    st.builds(lambda q: {"type": "AverageValue", "averageValue": q}, positive))
value_targets = st.one_of(st.builds(lambda q: {"type": "Value", "value": q}, positive),
                          st.builds(lambda q: {"type": "AverageValue", "averageValue": q},
                                    positive))  # fmt: skip
metrics = st.one_of(
    st.builds(lambda n, t: {"type": "Resource", "resource": {"name": n, "target": t}},
              resource_names, resource_targets),
    st.builds(lambda n, c, t: {"type": "ContainerResource", "containerResource": {
        "name": n, "container": c, "target": t}}, resource_names, names, resource_targets),
    st.builds(lambda i, q: {"type": "Pods", "pods": {"metric": i, "target": {
        "type": "AverageValue", "averageValue": q}}}, identifiers, positive),
    st.builds(lambda r, i, t: {"type": "Object", "object": {
        "describedObject": r, "metric": i, "target": t}}, references, identifiers, value_targets),
    st.builds(lambda i, t: {"type": "External", "external": {"metric": i, "target": t}},
              identifiers, value_targets))  # fmt: skip
resource_current = st.fixed_dictionaries({"averageValue": quantities},
                                         optional={"averageUtilization": utilization})
value_current = st.one_of(st.builds(lambda q: {"value": q}, quantities),
                          st.builds(lambda q: {"averageValue": q}, quantities))
current_metrics = st.one_of(
    st.builds(lambda n, c: {"type": "Resource", "resource": {"name": n, "current": c}},
              resource_names, resource_current),
    st.builds(lambda n, k, c: {"type": "ContainerResource", "containerResource": {
        "name": n, "container": k, "current": c}}, resource_names, names, resource_current),
    st.builds(lambda i, q: {"type": "Pods", "pods": {"metric": i, "current": {
        "averageValue": q}}}, identifiers, quantities),
    st.builds(lambda i, r, c: {"type": "Object", "object": {
        "metric": i, "current": c, "describedObject": r}}, identifiers, references, value_current),
    st.builds(lambda i, c: {"type": "External", "external": {"metric": i, "current": c}},
              identifiers, value_current))  # fmt: skip
policies = st.fixed_dictionaries({"type": st.sampled_from(["Pods", "Percent"]),
                                  "value": st.integers(1, 100),
                                  "periodSeconds": st.integers(1, 1800)})  # fmt: skip
rules = st.fixed_dictionaries({}, optional={
    "stabilizationWindowSeconds": st.integers(0, 3600),
    "selectPolicy": st.sampled_from(["Max", "Min", "Disabled"]),
    "policies": st.lists(policies, min_size=1, max_size=3)})  # fmt: skip
conditions = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["AbleToScale", "ScalingActive", "ScalingLimited"]),
     "status": st.sampled_from(["True", "False", "Unknown"])},
    optional={"lastTransitionTime": times, "reason": names, "message": st.text(max_size=20)}),
    min_size=1, max_size=3, unique_by=lambda c: c["type"])  # fmt: skip
statuses = st.fixed_dictionaries({}, optional={
    "observedGeneration": st.integers(0, 10), "lastScaleTime": times,
    "currentReplicas": st.integers(0, 10), "desiredReplicas": st.integers(0, 10),
    "currentMetrics": st.lists(current_metrics, min_size=1, max_size=4),
    "conditions": conditions})  # fmt: skip


@st.composite
def stored_hpas(draw) -> dict:
    """An autoscaling/v2 HorizontalPodAutoscaler as the server stores one: defaulted,
    valid, each target setting the field its type names."""
    high = draw(st.integers(1, 50))
    spec = {"scaleTargetRef": draw(references), "maxReplicas": high,
            "metrics": draw(st.lists(metrics, min_size=1, max_size=5))}  # fmt: skip
    if draw(st.booleans()):
        spec["minReplicas"] = draw(st.integers(1, high))
    if draw(st.booleans()):
        spec["behavior"] = draw(st.fixed_dictionaries({}, optional={"scaleUp": rules,
                                                                    "scaleDown": rules}))
    annotations = draw(st.dictionaries(st.sampled_from(["example.com/a", "b"]), st.text()))
    m = {"name": draw(names), "namespace": "default", "uid": "u-1", "resourceVersion": "7",
         "creationTimestamp": "2025-01-01T00:00:00Z",
         **({"annotations": annotations} if annotations else {})}  # fmt: skip
    hpa = default_hpa({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                       "metadata": m, "spec": spec})  # fmt: skip
    status = draw(st.none() | statuses)
    if status is not None:
        hpa["status"] = status
    return hpa


V1_TYPE = SCHEMA.kind("autoscaling/v1", "HorizontalPodAutoscaler")
V2_TYPE = SCHEMA.kind("autoscaling/v2", "HorizontalPodAutoscaler")


@given(stored_hpas())
def test_a_stored_hpa_converted_to_v1_and_back_is_itself(hpa):
    assert validate_hpa(hpa, None) == []
    assert decode(SCHEMA, V2_TYPE, hpa).obj == hpa  # as the server stores it
    shown = to_v1(hpa)
    # A proper v1 object: nothing v1 does not have, every quantity canonical.
    decoded = decode(SCHEMA, V1_TYPE, shown)
    assert (decoded.obj, decoded.unknown) == (shown, ())
    assert to_v2(shown) == hpa


# --- through the API server ----------------------------------------------------------------


async def call(api, verb: str, version: str, **fields):
    fields.setdefault("namespace", "default")
    request = ApiRequest(verb, HPA, group="autoscaling", version=version, token="admin-token",
                         **fields)  # fmt: skip
    return await api.ref.ask(request, timeout=60)


async def test_created_at_v1_read_at_both_versions_deleted_at_v1(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        made = await call(api, "create", "v1", body=v1(targetCPUUtilizationPercentage=50),
                          params={"fieldManager": "kubectl-autoscale"})  # fmt: skip
        assert made.code == 201, made.body
        assert made.body["apiVersion"] == "autoscaling/v1"
        assert made.body["spec"] == {"scaleTargetRef": REF, "minReplicas": 1, "maxReplicas": 5,
                                     "targetCPUUtilizationPercentage": 50}  # fmt: skip
        (entry,) = made.body["metadata"]["managedFields"]
        assert entry["apiVersion"] == "autoscaling/v1"
        assert "f:targetCPUUtilizationPercentage" in entry["fieldsV1"]["f:spec"]
        got = await call(api, "get", "v1", name="web")
        assert got.body == made.body
        stored = await call(api, "get", "v2", name="web")
        assert stored.body["spec"]["metrics"] == [cpu(50)]
        for key in ("uid", "resourceVersion", "creationTimestamp", "managedFields"):
            assert stored.body["metadata"][key] == made.body["metadata"][key]
        # The printed table is the same at either version.
        tables = [(await call(api, "get", v, name="web", as_table=True)).body
                  for v in ("v1", "v2")]  # fmt: skip
        assert tables[0] == tables[1] and tables[0]["rows"][0]["cells"][:2] == [
            "web", "Deployment/web"]
        gone = await call(api, "delete", "v1", name="web")
        assert gone.code == 200 and gone.body["apiVersion"] == "autoscaling/v1"
        assert gone.body["spec"]["targetCPUUtilizationPercentage"] == 50
        assert (await call(api, "get", "v2", name="web")).code == 404


async def test_a_v1_body_is_decoded_as_v1_and_checked_as_v2(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        sent = v1(targetCPUUtilizationPercentage=50, metrics=[cpu(10)])  # not a v1 field
        strict = await call(api, "create", "v1", body=sent, params={"fieldValidation": "Strict"})
        assert strict.code == 400 and 'unknown field "spec.metrics"' in strict.body["message"]
        wrong = await call(api, "create", "v1", body=v2(metrics=[cpu(10)]))
        assert wrong.code == 400 and "autoscaling/v2" in wrong.body["message"]
        upside_down = await call(api, "create", "v1", body=v1(minReplicas=9))
        assert upside_down.code == 422
        [cause] = upside_down.body["details"]["causes"]
        assert cause["field"] == "spec.maxReplicas"


async def test_lists_at_v1_from_the_cache_and_from_etcd(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        for name in ("a", "b"):
            await call(api, "create", "v2", body=v2(name, metrics=[MEMORY, cpu(60)]))
        for params in ({}, {"resourceVersion": "0"}, {"limit": "1"}):
            listed = await call(api, "list", "v1", params=params)
            assert listed.code == 200, listed.body
            body = listed.body if isinstance(listed.body, dict) else json.loads(listed.raw)
            assert (body["kind"], body["apiVersion"]) == ("HorizontalPodAutoscalerList",
                                                          "autoscaling/v1")  # fmt: skip
            item = body["items"][0]
            assert item["apiVersion"] == "autoscaling/v1"
            assert item["spec"]["targetCPUUtilizationPercentage"] == 60
            assert METRICS in item["metadata"]["annotations"]
            assert len(body["items"]) == (1 if params.get("limit") else 2)
        assert "continue" in body["metadata"]


class Collector(Actor):
    """Keeps the events of a watch; ``enough`` is set once it has ``wanted`` of them."""

    def __init__(self, wanted: int, enough: trio.Event) -> None:
        self.events: list[dict] = []
        self.wanted = wanted
        self.enough = enough

    @handler
    def on_event(self, msg: WatchEvent) -> None:
        if msg.event is not None:
            self.events.append(msg.event)
        if len(self.events) >= self.wanted:
            self.enough.set()


async def test_a_watch_at_v1_sees_every_change_converted(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "v2", body=v2("before", metrics=[cpu(40)]))
        enough = trio.Event()
        collector = Collector(4, enough)
        me = system.spawn(lambda: collector, name="v1-watcher")
        answer = await call(api, "watch", "v1", watcher=me, watch_id=3,
                            params={"resourceVersion": "0"})  # fmt: skip
        assert answer.code == 200
        await call(api, "create", "v1", body=v1("a", targetCPUUtilizationPercentage=50))
        await call(api, "patch", "v2", name="a", content_type=MERGE_PATCH,
                   body={"spec": {"metrics": [MEMORY]}})  # fmt: skip
        await call(api, "delete", "v2", name="a")
        await enough.wait()
        seen = [(e["type"], e["object"]["metadata"]["name"]) for e in collector.events]
        assert seen == [("ADDED", "before"), ("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]
        assert {e["object"]["apiVersion"] for e in collector.events} == {"autoscaling/v1"}
        shown = [e["object"]["spec"].get("targetCPUUtilizationPercentage")
                 for e in collector.events]  # fmt: skip
        assert shown == [40, 50, None, None]
        modified = collector.events[2]["object"]["metadata"]["annotations"]
        assert json.loads(modified[METRICS])[0]["resource"]["name"] == "memory"
        api.ref.tell(StopWatch(me, 3))


async def test_updates_and_patches_at_v1_keep_the_metrics_v1_cannot_show(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "v2", body=v2(metrics=[cpu(50), MEMORY, QUEUE]))
        # kubectl edit at v1: read, change, write back (the annotation goes with it).
        shown = (await call(api, "get", "v1", name="web")).body
        shown["spec"]["targetCPUUtilizationPercentage"] = 55
        shown["spec"]["maxReplicas"] = 7
        updated = await call(api, "update", "v1", name="web", body=shown)
        assert updated.code == 200, updated.body
        assert updated.body["spec"]["targetCPUUtilizationPercentage"] == 55
        stored = (await call(api, "get", "v2", name="web")).body
        assert stored["spec"]["metrics"] == [cpu(55), MEMORY, QUEUE]
        assert stored["spec"]["maxReplicas"] == 7
        assert "annotations" not in stored["metadata"]
        # Each kind of patch applies to the object as v1 has it.
        patches = [
            (MERGE_PATCH, {"spec": {"targetCPUUtilizationPercentage": 60}}),
            (JSON_PATCH, [{"op": "replace", "path": "/spec/targetCPUUtilizationPercentage",
                           "value": 65}]),
            (STRATEGIC_PATCH, {"spec": {"targetCPUUtilizationPercentage": 70}}),
        ]  # fmt: skip
        for content_type, patch in patches:
            answer = await call(api, "patch", "v1", name="web", content_type=content_type,
                                body=patch)  # fmt: skip
            assert answer.code == 200, answer.body
            stored = (await call(api, "get", "v2", name="web")).body
            target = patch[0]["value"] if content_type == JSON_PATCH else patch["spec"][
                "targetCPUUtilizationPercentage"]  # fmt: skip
            assert stored["spec"]["metrics"] == [cpu(target), MEMORY, QUEUE]
        # A stale update at v1 is refused as at v2: resourceVersion is the object's.
        stale = await call(api, "update", "v1", name="web", body=shown)
        assert stale.code == 409
        # A v1 body without the annotation replaces the metrics with what it says.
        plain = v1(targetCPUUtilizationPercentage=80)
        replaced = await call(api, "update", "v1", name="web", body=plain)
        assert replaced.code == 200
        stored = (await call(api, "get", "v2", name="web")).body
        assert stored["spec"]["metrics"] == [cpu(80)]


async def test_the_status_at_v1(autojump_clock):
    async with ActorSystem() as system:
        api = await start_api(system)
        await call(api, "create", "v2", body=v2(metrics=[MEMORY, cpu(50)]))
        stored = (await call(api, "get", "v2", name="web")).body
        stored["status"] = {
            "currentReplicas": 2, "desiredReplicas": 2,
            "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {
                "averageUtilization": 30, "averageValue": "150m"}}}],
            "conditions": [{"type": "AbleToScale", "status": "True",
                            "lastTransitionTime": "2025-01-01T00:00:00Z"}]}  # fmt: skip
        answer = await call(api, "update", "v2", name="web", subresource="status", body=stored)
        assert answer.code == 200, answer.body
        shown = (await call(api, "get", "v1", name="web", subresource="status")).body
        assert shown["status"] == {"currentReplicas": 2, "desiredReplicas": 2,
                                   "currentCPUUtilizationPercentage": 30}  # fmt: skip
        assert {CURRENT_METRICS, CONDITIONS, METRICS} <= shown["metadata"]["annotations"].keys()
        # A status update at v1 changes the replicas; the rest comes back from the
        # annotations it was read with.
        shown["status"]["desiredReplicas"] = 4
        answer = await call(api, "update", "v1", name="web", subresource="status", body=shown)
        assert answer.code == 200, answer.body
        after = (await call(api, "get", "v2", name="web")).body
        assert after["status"] == {**stored["status"], "desiredReplicas": 4}
        assert after["spec"]["metrics"] == [MEMORY, cpu(50)]
        # A v1 status patch without the annotations says the cpu utilization only.
        patch = {"metadata": {"annotations": {CURRENT_METRICS: None, CONDITIONS: None}},
                 "status": {"currentCPUUtilizationPercentage": 90}}  # fmt: skip
        answer = await call(api, "patch", "v1", name="web", subresource="status",
                            content_type=MERGE_PATCH, body=patch)  # fmt: skip
        assert answer.code == 200, answer.body
        after = (await call(api, "get", "v2", name="web")).body
        assert after["status"]["currentMetrics"] == [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": 90}}}]  # fmt: skip
        assert "conditions" not in after["status"]


async def test_server_side_apply_at_v1_owns_v1_fields_and_conflicts_across_versions(
        autojump_clock):  # fmt: skip
    async with ActorSystem() as system:
        api = await start_api(system)
        config = v1(targetCPUUtilizationPercentage=50)
        applied = await call(api, "patch", "v1", name="web", content_type=APPLY,
                             body=config, params={"fieldManager": "ops"})  # fmt: skip
        assert applied.code == 201, applied.body
        (entry,) = applied.body["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"], entry["apiVersion"]) == (
            "ops", "Apply", "autoscaling/v1")
        assert set(entry["fieldsV1"]["f:spec"]) == {
            "f:scaleTargetRef", "f:maxReplicas", "f:targetCPUUtilizationPercentage"}
        # Someone changes the metrics at v2: the cpu target is theirs now, at v1 too.
        changed = await call(api, "patch", "v2", name="web", content_type=MERGE_PATCH,
                             body={"spec": {"metrics": [cpu(75), MEMORY]}},
                             params={"fieldManager": "tuner"})  # fmt: skip
        assert changed.code == 200, changed.body
        managers = {e["manager"]: e for e in changed.body["metadata"]["managedFields"]}
        assert "f:targetCPUUtilizationPercentage" not in managers["ops"]["fieldsV1"]["f:spec"]
        assert managers["tuner"]["apiVersion"] == "autoscaling/v2"
        # Applying another target at v1 would change what tuner set at v2.
        config["spec"]["targetCPUUtilizationPercentage"] = 40
        refused = await call(api, "patch", "v1", name="web", content_type=APPLY,
                             body=config, params={"fieldManager": "ops"})  # fmt: skip
        assert refused.code == 409, refused.body
        assert refused.body["details"]["causes"][0]["message"] == (
            'conflict with "tuner" using autoscaling/v2')
        forced = await call(api, "patch", "v1", name="web", content_type=APPLY, body=config,
                            params={"fieldManager": "ops", "force": "true"})  # fmt: skip
        assert forced.code == 200, forced.body
        stored = (await call(api, "get", "v2", name="web")).body
        assert stored["spec"]["metrics"] == [cpu(40), MEMORY]


# --- discovery, request paths, OpenAPI ----------------------------------------------------


def test_discovery_lists_both_versions_v2_preferred():
    registry = builtin_registry()
    [group] = [g for g in api_group_list(registry)["groups"] if g["name"] == "autoscaling"]
    assert [v["version"] for v in group["versions"]] == ["v2", "v1"]
    assert group["preferredVersion"] == {"groupVersion": "autoscaling/v2", "version": "v2"}
    listed = api_resource_list(registry, "autoscaling", "v1")
    assert [r["name"] for r in listed["resources"]] == [HPA, f"{HPA}/status"]
    assert listed["resources"][0]["shortNames"] == ["hpa"]
    [aggregated] = [g for g in aggregated_discovery(registry, core=False)["items"]
                    if g["metadata"]["name"] == "autoscaling"]  # fmt: skip
    assert [v["version"] for v in aggregated["versions"]] == ["v2", "v1"]
    kinds = [r["responseKind"] for v in aggregated["versions"] for r in v["resources"]]
    assert kinds == [{"group": "autoscaling", "version": v, "kind": "HorizontalPodAutoscaler"}
                     for v in ("v2", "v1")]  # fmt: skip
    # One storage type per resource, whatever it is served as.
    assert [rt.version for rt in registry if rt.plural == HPA] == ["v2"]
    path = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/web/status"
    request = parse_request(registry, "GET", path, {})
    assert (request.version, request.subresource) == ("v1", "status")


def test_the_schema_has_the_v1_kind_as_k8s_io_api_declares_it():
    # (In schema.json since autoscaling/v1 was first generated, for Scale: protobuf
    # numbers as kubectl 1.32's compiled descriptors, so its protobuf bodies decode.)
    hpa = SCHEMA.kind("autoscaling/v1", "HorizontalPodAutoscaler")
    spec = SCHEMA[hpa.fields["spec"].type]
    assert {n: (f.proto, f.pointer) for n, f in spec.fields.items()} == {
        "scaleTargetRef": (1, False), "minReplicas": (2, True), "maxReplicas": (3, False),
        "targetCPUUtilizationPercentage": (4, True)}  # fmt: skip
    status = SCHEMA[hpa.fields["status"].type]
    assert {n: f.proto for n, f in status.fields.items()} == {
        "observedGeneration": 1, "lastScaleTime": 2, "currentReplicas": 3,
        "desiredReplicas": 4, "currentCPUUtilizationPercentage": 5}  # fmt: skip
    assert SCHEMA[spec.fields["scaleTargetRef"].type].struct_type == "atomic"
    assert SCHEMA.kind("autoscaling/v1", "HorizontalPodAutoscalerList") is not None


def test_the_openapi_documents_describe_the_v1_kind():
    registry = builtin_registry()
    documents = OpenApi(registry, SCHEMA)
    assert ("autoscaling", "v1") in documents.group_versions()
    doc = json.loads(documents.document("autoscaling", "v1"))
    item = doc["paths"][f"/apis/autoscaling/v1/namespaces/{{namespace}}/{HPA}/{{name}}"]
    assert item["put"]["x-kubernetes-group-version-kind"] == {
        "group": "autoscaling", "kind": "HorizontalPodAutoscaler", "version": "v1"}
    spec = doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.HorizontalPodAutoscalerSpec"]
    assert "targetCPUUtilizationPercentage" in spec["properties"]
