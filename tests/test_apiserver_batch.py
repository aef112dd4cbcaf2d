"""batch/v1 Jobs and CronJobs and autoscaling/v2 HorizontalPodAutoscalers in the API
server: their schema (generated from k8s.io/api v0.32.1), Kubernetes' defaults
(SetDefaults_Job, SetDefaults_CronJob, SetDefaults_HorizontalPodAutoscaler), the Job's
generated selector, validation with Kubernetes' paths and messages, immutability, the
status subresource, discovery, the printed table, and the real kubectl."""

from __future__ import annotations

import json

import trio
from http_cluster import serve_cluster
from kubectl_run import kubectl

from actorkube.actor import ActorSystem
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._builtin import (
    builtin_registry,
    cron_schedule_problem,
    default_hpa,
    default_job,
    prepare_job_for_create,
    validate_hpa,
    validate_job,
)
from actorkube.apiserver._messages import ApiRequest
from actorkube.apiserver._printers import table
from actorkube.apiserver._rest import api_group_list
from actorkube.apiserver._schema import builtin_schema
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group

TOKENS = "admin-token,admin,1,system:masters\n"
UID_LABEL = "batch.kubernetes.io/controller-uid"
NAME_LABEL = "batch.kubernetes.io/job-name"


def job(name: str = "pi", **spec) -> dict:
    template = {"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}],
                         "restartPolicy": "Never"}}  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": template, **spec}}  # fmt: skip


def manual_job(name: str = "manual", **spec) -> dict:
    j = job(name, manualSelector=True, selector={"matchLabels": {"app": name}}, **spec)
    j["spec"]["template"]["metadata"] = {"labels": {"app": name}}
    return j


async def start(system: ActorSystem):
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(TOKENS), seed=1)  # fmt: skip
    await api.ready()
    return api


async def call(api, verb, resource, **fields):
    fields.setdefault("namespace", "default")
    request = ApiRequest(verb, resource, token="admin-token", **fields)
    return await api.ref.ask(request, timeout=60)


def causes(answer) -> list[str]:
    return [f"{c['field']}: {c['message']}" for c in answer.body["details"]["causes"]]


# --- schema, registry, discovery ------------------------------------------------------------


def test_the_schema_has_the_batch_and_autoscaling_v2_types_with_their_markers():
    schema = builtin_schema()
    spec = schema["io.k8s.api.batch.v1.JobSpec"]
    assert (spec.fields["backoffLimit"].proto, spec.fields["backoffLimit"].pointer) == (7, True)
    assert spec.fields["template"].omitempty is False and spec.fields["template"].required
    assert spec.fields["managedBy"].proto == 15 and spec.fields["successPolicy"].proto == 16
    conditions = schema["io.k8s.api.batch.v1.JobStatus"].fields["conditions"]
    assert (conditions.list_type, conditions.patch_strategy, conditions.merge_key) == (
        "atomic", "merge", "type")
    uncounted = schema["io.k8s.api.batch.v1.UncountedTerminatedPods"].fields["failed"]
    assert (uncounted.type, uncounted.list_type) == ("[]string", "set")
    hpa = schema["io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus"].fields
    assert hpa["conditions"].list_keys == ("type",) and hpa["currentMetrics"].omitempty is False
    assert schema["io.k8s.api.autoscaling.v2.MetricTarget"].fields["value"].type == "quantity"
    for api_version, kind in (("batch/v1", "Job"), ("batch/v1", "CronJob"),
                              ("batch/v1", "JobList"),
                              ("autoscaling/v2", "HorizontalPodAutoscaler")):  # fmt: skip
        assert schema.kind(api_version, kind) is not None, kind
    # The types already served are untouched: autoscaling/v1 keeps its own.
    assert schema.kind("autoscaling/v1", "HorizontalPodAutoscaler") is not None


def test_the_resources_are_registered_with_their_names_and_discovered():
    registry = builtin_registry()
    jobs, cron, hpa = (registry.alias(n) for n in ("jobs", "cj", "hpa"))
    assert (jobs.api_version, jobs.has_status, jobs.generation, jobs.categories) == (
        "batch/v1", True, True, ("all",))
    assert (cron.kind, cron.short_names) == ("CronJob", ("cj",))
    assert (hpa.api_version, hpa.has_status, hpa.generation) == ("autoscaling/v2", True, False)
    groups = {g["name"]: g["preferredVersion"]["version"]
              for g in api_group_list(registry)["groups"]}  # fmt: skip
    assert groups["batch"] == "v1" and groups["autoscaling"] == "v2"


# --- defaults and the generated selector (pure) ---------------------------------------------


def test_job_defaults_are_kubernetes_ones():
    spec = default_job(job())["spec"]
    assert {k: spec[k] for k in ("completions", "parallelism", "backoffLimit", "completionMode",
                                 "suspend", "manualSelector", "podReplacementPolicy")} == {
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": False, "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed",
    }  # fmt: skip
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] == 30
    # Completions stay unset when parallelism is given (a work-queue Job).
    assert "completions" not in default_job(job(parallelism=3))["spec"]
    per_index = default_job(job(completionMode="Indexed", completions=3, backoffLimitPerIndex=1))
    assert per_index["spec"]["backoffLimit"] == 2**31 - 1
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    defaulted = default_job(job(podFailurePolicy=policy))["spec"]
    assert defaulted["podReplacementPolicy"] == "Failed"
    assert defaulted["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"] == "True"


def test_the_selector_is_generated_from_the_uid_and_the_job_takes_the_labels():
    j = job()
    j["metadata"]["uid"] = "u-1"
    j["spec"]["template"]["metadata"] = {"labels": {"team": "a"}}
    got = prepare_job_for_create(default_job(j))
    assert got["spec"]["selector"] == {"matchLabels": {UID_LABEL: "u-1"}}
    labels = {"team": "a", UID_LABEL: "u-1", NAME_LABEL: "pi", "controller-uid": "u-1",
              "job-name": "pi"}  # fmt: skip
    assert got["spec"]["template"]["metadata"]["labels"] == labels
    assert got["metadata"]["labels"] == labels
    assert validate_job(got, None) == []
    assert prepare_job_for_create(default_job(got)) == got  # again: nothing changes
    # Labels of its own the Job keeps.
    j["metadata"]["labels"] = {"mine": "yes"}
    assert prepare_job_for_create(default_job(j))["metadata"]["labels"] == {"mine": "yes"}
    manual = default_job(manual_job())
    manual["metadata"]["uid"] = "u-2"
    assert prepare_job_for_create(manual) == manual


def test_generated_labels_the_user_changed_are_refused():
    j = job()
    j["metadata"]["uid"] = "u-1"
    j["spec"]["template"]["metadata"] = {"labels": {"controller-uid": "someone-else"}}
    problems = {e.field: e.detail for e in validate_job(prepare_job_for_create(default_job(j)),
                                                        None)}  # fmt: skip
    assert problems == {"spec.template.metadata.labels[controller-uid]": "must be 'u-1'"}
    # A selector the user gave that does not select the generated labels is refused too.
    j["spec"]["template"]["metadata"] = {}
    j["spec"]["selector"] = {"matchLabels": {"job-name": "other"}}
    generated = prepare_job_for_create(default_job(j))
    problems = {e.field: e.detail for e in validate_job(generated, None)}
    assert problems["spec.selector"] == "`selector` not auto-generated"


def test_cron_schedules_are_checked_as_robfig_cron_parses_them():
    for good in ("*/5 * * * *", "0 3 * * 1-5", "@hourly", "@every 1h30m", "0 0 1 JAN ?"):
        assert cron_schedule_problem(good) == "", good
    assert cron_schedule_problem("* * *") == "expected exactly 5 fields, found 3: [* * *]"
    assert cron_schedule_problem("@sometimes") == "unrecognized descriptor: @sometimes"


def test_hpa_defaults_fill_the_cpu_metric_and_a_given_behavior():
    hpa = {"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 5,
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}  # fmt: skip
    spec = default_hpa(hpa)["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": 80}}}]  # fmt: skip
    assert spec["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 60, "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}  # fmt: skip
    assert spec["behavior"]["scaleUp"]["policies"][0] == {"type": "Pods", "value": 4,
                                                          "periodSeconds": 15}  # fmt: skip
    assert "behavior" not in default_hpa({"spec": {"maxReplicas": 2}})["spec"]


def test_hpa_targets_must_be_positive():
    for value in ("0", "-1"):
        for kind, field in (("AverageValue", "averageValue"), ("Value", "value")):
            metric = {"type": "Object", "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "s"},
                "metric": {"name": "rps"}, "target": {"type": kind, field: value}}}
            hpa = {"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": "web"},
                            "maxReplicas": 5, "metrics": [metric]}}  # fmt: skip
            problems = [(p.field, p.detail) for p in validate_hpa(default_hpa(hpa), None)]
            assert problems == [(f"spec.metrics[0].object.target.{field}", "must be positive")]


def test_the_job_table_has_kubectls_columns():
    j = default_job(manual_job())
    j["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    j["status"] = {"startTime": "2025-01-01T00:00:00Z",
                   "completionTime": "2025-01-01T00:01:05Z", "succeeded": 1,
                   "conditions": [{"type": "Complete", "status": "True"}]}  # fmt: skip
    rows = table("batch", "jobs", [j], 1735689900.0)
    names = [c["name"] for c in rows["columnDefinitions"]]
    assert names == ["Name", "Status", "Completions", "Duration", "Age", "Containers", "Images",
                     "Selector"]  # fmt: skip
    assert rows["rows"][0]["cells"][:5] == ["manual", "Complete", "1/1", "65s", "5m"]
    running = {**j, "spec": {**j["spec"], "completions": None, "parallelism": 3},
               "status": {"startTime": "2025-01-01T00:00:00Z"}}  # fmt: skip
    assert table("batch", "jobs", [running], 1735689610.0)["rows"][0]["cells"][1:4] == [
        "Running", "0/1 of 3", "10s"]


def test_the_cronjob_and_hpa_tables_have_kubectls_columns():
    cron = {"metadata": {"name": "nightly", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "spec": {"schedule": "0 3 * * *", "suspend": False},
            "status": {"active": [{"name": "j"}],
                       "lastScheduleTime": "2025-01-01T00:04:00Z"}}  # fmt: skip
    rows = table("batch", "cronjobs", [cron], 1735689900.0)
    assert rows["rows"][0]["cells"][:7] == ["nightly", "0 3 * * *", "<none>", "False", 1, "60s",
                                            "5m"]  # fmt: skip
    hpa = default_hpa({"metadata": {"name": "web", "creationTimestamp": "2025-01-01T00:00:00Z"},
                       "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
                                "maxReplicas": 5}})  # fmt: skip
    rows = table("autoscaling", "horizontalpodautoscalers", [hpa], 1735689900.0)
    assert [c["name"] for c in rows["columnDefinitions"]] == [
        "Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
    assert rows["rows"][0]["cells"] == ["web", "Deployment/web", "cpu: <unknown>/80%", "1", 5, 0,
                                        "5m"]  # fmt: skip
    hpa["status"] = {"currentReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 45}}}]}
    assert table("autoscaling", "horizontalpodautoscalers", [hpa], 1735689900.0)["rows"][0][
        "cells"][2] == "cpu: 45%/80%"  # fmt: skip


# --- through the API server -----------------------------------------------------------------


async def test_a_manual_selector_job_is_stored_defaulted_with_generation_and_no_status(
    autojump_clock,
):
    async with ActorSystem() as system:
        api = await start(system)
        body = manual_job()
        body["status"] = {"succeeded": 5}
        made = await call(api, "create", "jobs", group="batch", body=body)
        assert made.code == 201, made.body
        assert made.body["metadata"]["generation"] == 1 and "status" not in made.body
        assert made.body["spec"]["backoffLimit"] == 6
        assert made.body["metadata"]["labels"] == {"app": "manual"}
        assert made.body["spec"]["selector"] == {"matchLabels": {"app": "manual"}}
        listed = await call(api, "list", "jobs", group="batch",
                            params={"fieldSelector": "status.successful=0"})  # fmt: skip
        assert [j["metadata"]["name"] for j in listed.body["items"]] == ["manual"]


async def test_invalid_jobs_are_422_with_kubernetes_messages(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        always = manual_job("always")
        always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
        answer = await call(api, "create", "jobs", group="batch", body=always)
        assert answer.code == 422
        assert causes(answer) == ["spec.template.spec.restartPolicy: Required value: valid "
                                  'values: "OnFailure", "Never"']  # fmt: skip
        mismatch = manual_job("mismatch")
        mismatch["spec"]["selector"] = {"matchLabels": {"app": "other"}}
        answer = await call(api, "create", "jobs", group="batch", body=mismatch)
        assert answer.code == 422
        assert causes(answer) == ["spec.template.metadata.labels: Invalid value: "
                                  '{"app":"mismatch"}: `selector` does not match template '
                                  "`labels`"]  # fmt: skip
        negative = manual_job("negative", backoffLimit=-1, parallelism=-2)
        answer = await call(api, "create", "jobs", group="batch", body=negative)
        assert sorted(causes(answer)) == [
            "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            "spec.parallelism: Invalid value: -2: must be greater than or equal to 0"]
        # (Without parallelism either, completions would default to 1.)
        indexed = manual_job("indexed", completionMode="Indexed", parallelism=2)
        answer = await call(api, "create", "jobs", group="batch", body=indexed)
        assert causes(answer) == ["spec.completions: Required value: when completion mode is "
                                  "Indexed"]  # fmt: skip


async def test_the_template_and_selector_are_immutable_but_parallelism_is_not(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        made = (await call(api, "create", "jobs", group="batch", body=manual_job())).body
        changed = json.loads(json.dumps(made))
        changed["spec"]["template"]["spec"]["containers"][0]["image"] = "perl:5.36"
        answer = await call(api, "update", "jobs", group="batch", name="manual", body=changed)
        assert answer.code == 422
        assert [c["field"] for c in answer.body["details"]["causes"]] == ["spec.template"]
        assert answer.body["details"]["causes"][0]["message"].endswith("field is immutable")
        patch = {"spec": {"selector": {"matchLabels": {"app": "manual", "x": "y"}}}}
        answer = await call(api, "patch", "jobs", group="batch", name="manual", body=patch,
                            content_type="application/merge-patch+json")  # fmt: skip
        assert "spec.selector" in [c["field"] for c in answer.body["details"]["causes"]]
        answer = await call(api, "patch", "jobs", group="batch", name="manual",
                            body={"spec": {"parallelism": 3}},
                            content_type="application/merge-patch+json")  # fmt: skip
        assert answer.code == 200, answer.body
        assert answer.body["metadata"]["generation"] == 2


async def test_a_suspended_job_that_never_ran_may_change_its_scheduling(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        await call(api, "create", "jobs", group="batch", body=manual_job(suspend=True))
        patch = {"spec": {"template": {"spec": {"nodeSelector": {"zone": "a"}}}}}
        answer = await call(api, "patch", "jobs", group="batch", name="manual", body=patch,
                            content_type="application/merge-patch+json")  # fmt: skip
        assert answer.code == 200, answer.body


async def test_the_status_subresource_keeps_the_counters_from_going_down(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        made = (await call(api, "create", "jobs", group="batch", body=manual_job())).body
        status = {"succeeded": 1, "startTime": "2025-01-01T00:00:00Z"}
        answer = await call(api, "update", "jobs", group="batch", name="manual",
                            subresource="status", body={**made, "status": status})  # fmt: skip
        assert answer.code == 200 and answer.body["status"]["succeeded"] == 1
        answer = await call(api, "update", "jobs", group="batch", name="manual",
                            subresource="status",
                            body={**answer.body, "status": {"succeeded": 0}})  # fmt: skip
        assert answer.code == 422
        assert causes(answer) == ["status.succeeded: Invalid value: 0: cannot decrease the "
                                  "succeeded counter"]  # fmt: skip


async def test_cronjobs_and_hpas_are_defaulted_and_checked(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        template = job()["spec"]
        cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": template}}}  # fmt: skip
        made = await call(api, "create", "cronjobs", group="batch", body=cron)
        assert made.code == 201, made.body
        spec = made.body["spec"]
        assert (spec["concurrencyPolicy"], spec["suspend"], spec["successfulJobsHistoryLimit"],
                spec["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)  # fmt: skip
        bad = json.loads(json.dumps(cron))
        bad["metadata"]["name"] = "bad"
        bad["spec"]["schedule"] = "every day"
        bad["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
        answer = await call(api, "create", "cronjobs", group="batch", body=bad)
        assert sorted(causes(answer)) == [
            'spec.jobTemplate.spec.selector: Invalid value: {"matchLabels":{"a":"b"}}: '
            "`selector` will be auto-generated",
            'spec.schedule: Invalid value: "every day": expected exactly 5 fields, found 2: '
            "[every day]"]
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
               "metadata": {"name": "web"},
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "name": "web"}, "maxReplicas": 4}}  # fmt: skip
        made = await call(api, "create", "horizontalpodautoscalers", group="autoscaling",
                          version="v2", body=hpa)  # fmt: skip
        assert made.code == 201, made.body
        assert made.body["spec"]["minReplicas"] == 1
        assert made.body["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
        hpa["metadata"]["name"] = "upside-down"
        hpa["spec"]["minReplicas"] = 5
        answer = await call(api, "create", "horizontalpodautoscalers", group="autoscaling",
                            version="v2", body=hpa)  # fmt: skip
        assert causes(answer) == ["spec.maxReplicas: Invalid value: 4: must be greater than or "
                                  "equal to `minReplicas`"]  # fmt: skip


async def test_a_job_gets_its_selector_and_labels_from_its_uid(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        made = await call(api, "create", "jobs", group="batch", body=job())
        assert made.code == 201, made.body
        uid = made.body["metadata"]["uid"]
        assert made.body["spec"]["selector"] == {"matchLabels": {UID_LABEL: uid}}
        labels = made.body["spec"]["template"]["metadata"]["labels"]
        assert labels == {UID_LABEL: uid, NAME_LABEL: "pi", "controller-uid": uid,
                          "job-name": "pi"}  # fmt: skip
        assert made.body["metadata"]["labels"] == labels
        got = await call(api, "get", "jobs", group="batch", name="pi")
        assert got.body == made.body


async def test_a_job_deleted_without_a_policy_orphans_its_pods_and_says_so(autojump_clock):
    async with ActorSystem() as system:
        api = await start(system)
        await call(api, "create", "jobs", group="batch", body=job("keep"))
        await call(api, "create", "jobs", group="batch", body=job("drop"))
        kept = await call(api, "delete", "jobs", group="batch", name="keep")
        assert kept.code == 200 and "child pods are preserved" in kept.warnings[0]
        assert kept.body["metadata"]["finalizers"] == ["orphan"]  # the collector's to act on
        dropped = await call(api, "delete", "jobs", group="batch", name="drop",
                             body={"propagationPolicy": "Background"})  # fmt: skip
        assert dropped.code == 200 and not dropped.warnings


async def test_kubectl_creates_and_lists_jobs(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
        cache = tmp_path / "cache"
        code, out, err = await kubectl(admin, cache, "create", "job", "hello", "--image=busybox")
        assert (code, out.strip()) == (0, "job.batch/hello created"), err
        code, out, err = await kubectl(admin, cache, "get", "jobs")
        assert code == 0, err
        header, row = out.strip().split("\n")
        assert header.split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
        assert row.split()[:3] == ["hello", "Running", "0/1"]
        code, out, err = await kubectl(admin, cache, "get", "job", "hello", "-o", "json")
        got = json.loads(out)
        assert got["spec"]["selector"]["matchLabels"] == {UID_LABEL: got["metadata"]["uid"]}
        code, out, err = await kubectl(admin, cache, "get", "cj,hpa")
        assert code == 0, err
        nursery.cancel_scope.cancel()


async def test_a_body_without_kind_gets_the_kind_of_its_url(autojump_clock):
    """Kubernetes' decoder defaults apiVersion and kind from the request's URL, so every
    stored object names its kind (an event about it needs it)."""
    async with ActorSystem() as system:
        api = await start(system)
        body = manual_job()
        del body["apiVersion"], body["kind"]
        made = await call(api, "create", "jobs", group="batch", body=body)
        assert (made.body["apiVersion"], made.body["kind"]) == ("batch/v1", "Job")
        got = await call(api, "get", "jobs", group="batch", name="manual")
        assert (got.body["apiVersion"], got.body["kind"]) == ("batch/v1", "Job")
        listed = await call(api, "list", "jobs", group="batch")
        assert [(j["apiVersion"], j["kind"]) for j in listed.body["items"]] == [("batch/v1",
                                                                                 "Job")]
        put = {k: v for k, v in got.body.items() if k not in ("apiVersion", "kind")}
        put["metadata"]["labels"] = {"app": "manual", "x": "y"}
        updated = await call(api, "update", "jobs", group="batch", name="manual", body=put)
        assert updated.code == 200 and updated.body["kind"] == "Job"
        wrong = {**body, "kind": "CronJob", "apiVersion": "batch/v1"}
        assert (await call(api, "create", "jobs", group="batch", body=wrong)).code == 400
        # Each half is filled on its own; what is given must be the URL's.
        bogus = {**body, "apiVersion": "bogus/v9", "metadata": {"name": "bogus"}}
        assert (await call(api, "create", "jobs", group="batch", body=bogus)).code == 400
        null = {**body, "kind": None, "metadata": {"name": "null"}}
        made = await call(api, "create", "jobs", group="batch", body=null)
        assert (made.body["apiVersion"], made.body["kind"]) == ("batch/v1", "Job")
