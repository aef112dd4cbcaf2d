"""The Job controller: its pure core against Kubernetes' documented behaviour (which pods
count as failed, the pod-failure backoff, backoffLimit under Never and OnFailure,
activeDeadlineSeconds, the pods to create and delete, Indexed Jobs, the two-step
accounting through the tracking finalizer, the interim and terminal conditions), and
the whole cluster in the deterministic simulation (Jobs that complete, fail at their
backoff limit with exponential delays, exceed their deadline, crash under OnFailure,
run Indexed, are suspended and resumed); the TTL-after-finished controller, which
deletes finished Jobs once their ttlSecondsAfterFinished ran out.

The simulated Jobs choose their selector (manualSelector): a generated one needs the
API server to give a new object its uid before defaulting (see
tests/test_apiserver_batch.py)."""

from __future__ import annotations

import pytest
import trio
from sim_cluster import SimCluster
from virtual_time import wait_for

from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.controllers import GarbageCollector
from actorkube.controllers import _jobs as jobs
from actorkube.controllers.job import JobController
from actorkube.controllers.ttlafterfinished import (
    TTLAfterFinishedController,
    needs_cleanup,
    time_left,
)
from actorkube.node.runtime import SimProfile
from actorkube.sim import SimNetwork, simulate

NOW = 1_800_000_000.0


def job(name: str = "pi", *, status: dict | None = None, policy: str = "Never", **spec) -> dict:
    spec = {"completions": 1, "parallelism": 1, "backoffLimit": 6,
            "completionMode": "NonIndexed", "suspend": False,
            "podReplacementPolicy": "TerminatingOrFailed", **spec}  # fmt: skip
    spec = {k: v for k, v in spec.items() if v is not None}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid"},
            "spec": {"selector": {"matchLabels": {"job": name}},
                     "template": {"metadata": {"labels": {"job": name}},
                                  "spec": {"containers": [{"name": "c", "image": "perl"}],
                                           "restartPolicy": policy}}, **spec},
            "status": status or {}}  # fmt: skip


def pod(name: str, phase: str = "Running", *, ready: bool = False, finalizer: bool = True,
        deleting: bool = False, finished: float | None = None, index: int | None = None,
        restarts: int = 0, node: str = "n1", created: float = NOW - 100) -> dict:  # fmt: skip
    m = {"name": name, "namespace": "default", "uid": f"u-{name}",
         "creationTimestamp": rfc3339(created),
         "finalizers": [jobs.TRACKING_FINALIZER] if finalizer else []}  # fmt: skip
    if deleting:
        m["deletionTimestamp"] = rfc3339(NOW - 5)
    if index is not None:
        m["annotations"] = {jobs.COMPLETION_INDEX: str(index)}
    state = {"running": {}}
    if finished is not None:
        state = {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1,
                                "finishedAt": rfc3339(finished)}}  # fmt: skip
    conditions = [{"type": "Ready", "status": "True" if ready else "False",
                   "lastTransitionTime": rfc3339(NOW - 50)}]  # fmt: skip
    return {"metadata": m, "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": conditions,
                       "containerStatuses": [{"name": "c", "restartCount": restarts,
                                              "state": state}]}}  # fmt: skip


def assess(j: dict, pods: list[dict], **options) -> jobs.Assessment:
    options.setdefault("backoff", jobs.BackoffRecord())
    return jobs.assess(j, pods, now=NOW, **options)


def names(pods) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


# --- the pure core --------------------------------------------------------------------------


def test_a_pod_is_failed_when_failed_or_deleted_unless_only_failed_pods_are_replaced():
    j = job()
    assert jobs.is_failed(pod("a", "Failed"), j)
    assert jobs.is_failed(pod("b", deleting=True), j)
    assert not jobs.is_failed(pod("c", "Succeeded", deleting=True), j)
    assert not jobs.is_failed(pod("d"), j)
    only_failed = job(podReplacementPolicy="Failed")
    assert not jobs.is_failed(pod("b", deleting=True), only_failed)
    assert jobs.is_terminating(pod("b", deleting=True))
    assert not jobs.is_terminating(pod("e", "Failed", deleting=True))


def test_the_pod_failure_backoff_doubles_from_10_seconds_to_10_minutes_and_resets():
    record = jobs.BackoffRecord()
    for failures, delay in ((1, 10), (2, 20), (3, 40), (6, 320), (7, 600), (12, 600)):
        r = jobs.BackoffRecord(failures, NOW)
        assert r.remaining(NOW) == delay
        assert r.remaining(NOW + delay / 2) == delay / 2
        assert r.remaining(NOW + delay + 1) == 0
    record = record.after([], [pod("a", "Failed", finished=NOW - 30)], NOW)
    record = record.after([], [pod("b", "Failed", finished=NOW - 3)], NOW)
    assert record == jobs.BackoffRecord(2, NOW - 3)
    # A success counts only the failures after it.
    record = record.after([pod("c", "Succeeded", finished=NOW - 2)],
                          [pod("d", "Failed", finished=NOW - 4),
                           pod("e", "Failed", finished=NOW - 1)], NOW)  # fmt: skip
    assert record == jobs.BackoffRecord(1, NOW - 1)
    assert record.after([pod("f", "Succeeded", finished=NOW)], [], NOW).remaining(NOW) == 0


def test_counts_take_the_status_the_new_and_the_uncounted_pods_once():
    status = {"succeeded": 2, "failed": 1,
              "uncountedTerminatedPods": {"succeeded": ["u-s1"], "failed": ["u-f1"]}}  # fmt: skip
    pods = [pod("s1", "Succeeded"), pod("f1", "Failed"), pod("s2", "Succeeded"),
            pod("f2", "Failed"), pod("gone", "Failed", finalizer=False),
            pod("removing", "Failed"), pod("run")]  # fmt: skip
    view = assess(job(completions=10, parallelism=3, status=status), pods,
                  removing=frozenset({"u-removing"}))  # fmt: skip
    assert names(view.new_succeeded) == ["s2"] and names(view.new_failed) == ["f2"]
    assert (view.succeeded, view.failed) == (4, 3)
    assert names(view.active) == ["run"]
    assert view.start_time == rfc3339(NOW) and view.finish is None


def test_more_failures_than_the_backoff_limit_fail_the_job():
    j = job(backoffLimit=2, status={"failed": 2, "startTime": rfc3339(NOW - 60)})
    assert assess(j, [pod("a")]).finish is None
    finish = assess(j, [pod("b", "Failed")]).finish
    assert (finish["type"], finish["reason"], finish["message"]) == (
        "FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
    # A FailureTarget recorded before leads to Failed with its reason.
    target = jobs.new_condition("FailureTarget", "BackoffLimitExceeded", "m", NOW - 1)
    failing = job(status={"conditions": [target]})
    assert assess(failing, []).finish["type"] == "Failed"


def test_under_on_failure_container_restarts_count_against_the_limit():
    j = job(backoffLimit=3, policy="OnFailure")
    assert not jobs.past_backoff_limit_on_failure(j, [pod("a", restarts=2)])
    assert jobs.past_backoff_limit_on_failure(j, [pod("a", restarts=2), pod("b", restarts=1)])
    assert not jobs.past_backoff_limit_on_failure(j, [pod("a", "Succeeded", restarts=5)])
    assert jobs.past_backoff_limit_on_failure(job(backoffLimit=0, policy="OnFailure"),
                                              [pod("a", restarts=1)])  # fmt: skip
    assert not jobs.past_backoff_limit_on_failure(job(backoffLimit=1), [pod("a", restarts=4)])
    assert assess(j, [pod("a", restarts=3)]).finish["reason"] == "BackoffLimitExceeded"


def test_the_active_deadline_counts_from_the_start_time():
    started = {"startTime": rfc3339(NOW - 25)}
    view = assess(job(activeDeadlineSeconds=30, status=started), [pod("a")])
    assert view.finish is None and view.deadline_in == 5
    view = assess(job(activeDeadlineSeconds=20, status=started), [pod("a")])
    assert view.finish["reason"] == "DeadlineExceeded"
    assert view.finish["message"] == "Job was active longer than specified deadline"
    suspended = assess(job(activeDeadlineSeconds=20, suspend=True), [])
    assert suspended.finish is None and suspended.start_time is None


def test_manage_creates_up_to_parallelism_and_what_is_left_to_complete():
    view = assess(job(completions=5, parallelism=2), [])
    assert jobs.manage(job(completions=5, parallelism=2), view, NOW) == jobs.Management(create=2)
    done = job(completions=5, parallelism=2, status={"succeeded": 4})
    assert jobs.manage(done, assess(done, []), NOW) == jobs.Management(create=1)
    # Surplus goes, the pods furthest from running first.
    many = [pod("running-ready", ready=True), pod("unscheduled", node=""),
            pod("pending", "Pending")]  # fmt: skip
    plan = jobs.manage(job(completions=5, parallelism=1), assess(job(), many), NOW)
    assert names(plan.delete) == ["unscheduled", "pending"]
    # Without completions, once a pod succeeded nothing new starts.
    queue = job(completions=None, parallelism=3, status={"succeeded": 1})
    assert jobs.manage(queue, assess(queue, [pod("a")]), NOW) == jobs.Management()
    suspended = job(completions=3, parallelism=3, suspend=True)
    assert len(jobs.manage(suspended, assess(suspended, [pod("a"), pod("b")]), NOW).delete) == 2


def test_failures_hold_new_pods_back_by_the_backoff():
    j = job(completions=3, status={"failed": 1, "uncountedTerminatedPods": {}})
    view = assess(j, [], backoff=jobs.BackoffRecord(2, NOW - 5))
    assert jobs.manage(j, view, NOW) == jobs.Management(wait=15)
    failed = pod("x", "Failed", finished=NOW - 1)
    view = assess(j, [failed], backoff=jobs.BackoffRecord(1, NOW - 9))
    assert view.backoff == jobs.BackoffRecord(2, NOW - 1)
    assert jobs.manage(j, view, NOW) == jobs.Management(wait=19)


def test_only_failed_pods_are_replaced_when_the_policy_says_failed():
    j = job(completions=2, parallelism=2, podReplacementPolicy="Failed")
    view = assess(j, [pod("going", deleting=True), pod("a")])
    assert jobs.manage(j, view, NOW) == jobs.Management()
    eager = job(completions=2, parallelism=2)
    assert jobs.manage(eager, assess(eager, [pod("going", deleting=True), pod("a")]), NOW) == (
        jobs.Management(create=1))


def test_indexed_jobs_start_the_lowest_free_indexes_and_drop_duplicates():
    j = job(completionMode="Indexed", completions=5, parallelism=3,
            status={"completedIndexes": "0"})  # fmt: skip
    view = assess(j, [pod("a", index=2), pod("done", "Succeeded", index=1)])
    assert view.completed_indexes == (0, 1) and view.succeeded == 2
    assert jobs.manage(j, view, NOW) == jobs.Management(create=2, indexes=(3, 4))
    pods = [pod("dup-old", index=2, created=NOW - 500), pod("dup-new", index=2),
            pod("none"), pod("far", index=9), pod("ok", index=3)]  # fmt: skip
    assert sorted(names(jobs.pods_to_remove(j, pods, 0))) == ["dup-new", "far", "none"]


def test_a_pod_of_the_job_carries_the_finalizer_and_its_index():
    p = jobs.pod_for(job("pi", completionMode="Indexed", completions=3), index=2)
    m = p["metadata"]
    assert m["finalizers"] == [jobs.TRACKING_FINALIZER]
    assert m["generateName"] == "pi-2-" and p["spec"]["hostname"] == "pi-2"
    assert m["annotations"][jobs.COMPLETION_INDEX] == "2" == m["labels"][jobs.COMPLETION_INDEX]
    path = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert p["spec"]["containers"][0]["env"] == [
        {"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"fieldPath": path}}}]
    ref = m["ownerReferences"][0]
    assert (ref["kind"], ref["uid"], ref["controller"]) == ("Job", "pi-uid", True)
    assert jobs.pod_for(job("pi"))["metadata"]["generateName"] == "pi-"


def test_indexes_print_as_kubernetes_prints_them():
    assert jobs.format_indexes([7, 1, 3, 4, 5]) == "1,3-5,7"
    assert jobs.format_indexes([1, 2]) == "1,2"
    assert jobs.parse_indexes("1,3-5,7,9-12", 11) == [1, 3, 4, 5, 7, 9, 10]


def test_finished_pods_are_uncounted_released_then_counted_once():
    j = job(completions=3, parallelism=2, status={"startTime": rfc3339(NOW - 9)})
    pods = [pod("ok", "Succeeded"), pod("bad", "Failed"), pod("run", ready=True)]
    view = assess(j, pods)
    t = jobs.track(j, view, finish=None, active=1, ready=1, terminating=0, conditions=[],
                   now=NOW)  # fmt: skip
    assert t.write and names(t.release) == ["ok", "bad"]
    assert t.status["uncountedTerminatedPods"] == {"succeeded": ["u-ok"], "failed": ["u-bad"]}
    assert (t.status["active"], t.status["ready"], t.status["terminating"]) == (1, 1, 0)
    assert "succeeded" not in t.status and "failed" not in t.status
    settled, changed = jobs.settle(t.status, t.held - {"u-ok", "u-bad"}, t.finish, 0, NOW)
    assert changed and settled["uncountedTerminatedPods"] == {}
    assert (settled["succeeded"], settled["failed"]) == (1, 1)
    # A finalizer that could not be removed keeps its pod uncounted.
    settled, _ = jobs.settle(t.status, t.held - {"u-ok"}, None, 0, NOW)
    assert settled["uncountedTerminatedPods"] == {"failed": ["u-bad"]}


def test_a_failing_job_gets_failure_target_now_and_failed_when_its_pods_are_gone():
    j = job(backoffLimit=0, status={"startTime": rfc3339(NOW - 9)})
    view = assess(j, [pod("bad", "Failed")])
    t = jobs.track(j, view, finish=view.finish, active=0, ready=0, terminating=1,
                   conditions=[], now=NOW)  # fmt: skip
    assert [c["type"] for c in t.status["conditions"]] == ["FailureTarget"]
    assert t.finish["type"] == "Failed" and t.finish["reason"] == "BackoffLimitExceeded"
    # Still a pod terminating: not Failed yet.
    waiting, _ = jobs.settle(t.status, set(), t.finish, 1, NOW)
    assert [c["type"] for c in waiting["conditions"]] == ["FailureTarget"]
    failed, changed = jobs.settle(t.status, set(), t.finish, 0, NOW + 2)
    assert changed and [c["type"] for c in failed["conditions"]] == ["FailureTarget", "Failed"]
    assert failed["failed"] == 1 and "completionTime" not in failed


def test_a_job_that_succeeds_gets_success_criteria_met_then_complete_with_its_time():
    j = job(completions=2, status={"succeeded": 2, "startTime": rfc3339(NOW - 9)})
    view = assess(j, [])
    assert jobs.has_succeeded(j, view, active=0) and not jobs.has_succeeded(j, view, active=1)
    met = jobs.new_condition("SuccessCriteriaMet", *jobs.COMPLETIONS_REACHED, NOW)
    t = jobs.track(j, view, finish=met, active=0, ready=0, terminating=0, conditions=[],
                   now=NOW)  # fmt: skip
    done, _ = jobs.settle(t.status, t.held, t.finish, 0, NOW)
    assert [(c["type"], c["reason"]) for c in done["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    assert done["completionTime"] == rfc3339(NOW)
    assert jobs.finished_event(t.finish) == ("Normal", "Completed", "Job completed")


def test_an_indexed_job_records_its_completed_indexes():
    j = job(completionMode="Indexed", completions=4, parallelism=4,
            status={"completedIndexes": "0", "succeeded": 1})  # fmt: skip
    pods = [pod("one", "Succeeded", index=1), pod("two", "Succeeded", index=2), pod("x", index=3)]
    view = assess(j, pods)
    t = jobs.track(j, view, finish=None, active=1, ready=0, terminating=0, conditions=[],
                   now=NOW)  # fmt: skip
    assert (t.status["completedIndexes"], t.status["succeeded"]) == ("0-2", 3)
    assert t.status["uncountedTerminatedPods"] == {}


def test_the_pod_failure_policy_ignores_or_fails_as_its_rules_say():
    rules = [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget",
                                                        "status": "True"}]},
             {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]  # fmt: skip
    j = job(podFailurePolicy={"rules": rules}, podReplacementPolicy="Failed", backoffLimit=0)
    evicted = pod("evicted", "Failed")
    evicted["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True"})
    view = assess(j, [evicted])
    assert view.failed == 0 and view.finish is None
    fatal = pod("fatal", "Failed", finished=NOW)
    fatal["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] = 42
    finish = assess(j, [fatal]).finish
    assert (finish["type"], finish["reason"]) == ("FailureTarget", "PodFailurePolicy")
    assert finish["message"] == ("Container c for pod default/fatal failed with exit code 42 "
                                 "matching FailJob rule at index 1")  # fmt: skip


# --- the whole cluster ----------------------------------------------------------------------

PROFILES = {"worker": SimProfile(run_for=3.0), "crash": SimProfile(run_for=1.0, exit_code=1),
            "server": SimProfile()}  # fmt: skip


def batch_job(name: str, image: str, *, policy: str = "Never", **spec) -> dict:
    """A Job that chooses its selector (manualSelector)."""
    template = {"metadata": {"labels": {"job": name}},
                "spec": {"containers": [{"name": "c", "image": image}],
                         "restartPolicy": policy, "terminationGracePeriodSeconds": 5}}  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"manualSelector": True, "selector": {"matchLabels": {"job": name}},
                     "template": template, **spec}}  # fmt: skip


class Run:
    """One Job in a simulated cluster, watched every half second: the pods it ever
    had, the most active at once, and its status when it finished."""

    def __init__(self, cluster: SimCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.pods: dict[str, dict] = {}
        self.most_active = 0

    async def start(self, body: dict) -> None:
        await self.cluster.client.create("jobs", body, namespace="default", group="batch")

    async def job(self) -> dict:
        return await self.cluster.client.get("jobs", self.name, namespace="default",
                                             group="batch")  # fmt: skip

    async def until(self, condition: str, limit: float = 600) -> dict:
        async def check():
            mine = [p for p in await self.cluster.pods()
                    if (p["metadata"].get("labels") or {}).get("job") == self.name]  # fmt: skip
            self.pods.update({p["metadata"]["name"]: p for p in mine})
            running = [p for p in mine if p["status"].get("phase") in ("Pending", "Running")]
            self.most_active = max(self.most_active, len(running))
            j = await self.job()
            return j if jobs.condition_true(j.get("status") or {}, condition) else None

        return await wait_for(check, limit=limit)

    async def events(self) -> list[tuple[str, str]]:
        listed = await self.cluster.client.list("events", namespace="default")
        return [(e["reason"], e["message"]) for e in listed["items"]
                if e["involvedObject"]["name"] == self.name]  # fmt: skip


async def cluster_with_controller(net: SimNetwork) -> tuple[SimCluster, JobController]:
    cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES)
    return cluster, cluster.spawn_controller(JobController, "job-controller")


def test_a_job_completes_five_pods_two_at_a_time():
    async def scenario(net: SimNetwork) -> dict:
        cluster, controller = await cluster_with_controller(net)
        run = Run(cluster, "five")
        await run.start(batch_job("five", "worker", completions=5, parallelism=2))
        done = await run.until("Complete")
        return {"job": done, "pods": run.pods, "most": run.most_active,
                "events": await run.events(), "errors": controller.errors}  # fmt: skip

    result = simulate(scenario, seed=1).value
    status = result["job"]["status"]
    assert status["succeeded"] == 5 and "failed" not in status and "active" not in status
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("SuccessCriteriaMet", "CompletionsReached"), ("Complete", "CompletionsReached")]
    assert status["completionTime"] >= status["startTime"]
    assert (status["ready"], status["terminating"], status["uncountedTerminatedPods"]) == (0, 0, {})
    assert len(result["pods"]) == 5 and result["most"] == 2
    assert all(p["status"]["phase"] == "Succeeded" for p in result["pods"].values())
    reasons = {reason for reason, _ in result["events"]}
    assert {"SuccessfulCreate", "Completed"} <= reasons
    assert result["errors"] == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_a_failing_job_stops_at_its_backoff_limit_with_growing_delays(seed: int):
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        run = Run(cluster, "crash")
        await run.start(batch_job("crash", "crash", backoffLimit=3))
        failed = await run.until("Failed")
        await trio.sleep(120)  # no pod comes after the end
        pods = await cluster.pods()
        return {"job": failed, "pods": run.pods, "later": len(pods)}

    result = simulate(scenario, seed=seed).value
    status = result["job"]["status"]
    assert status["failed"] == 4 and "succeeded" not in status
    assert [(c["type"], c["reason"], c["message"]) for c in status["conditions"]] == [
        ("FailureTarget", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
        ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")]
    assert "completionTime" not in status
    pods = sorted(result["pods"].values(), key=lambda p: p["metadata"]["creationTimestamp"])
    assert len(pods) == 4 and result["later"] == 4
    # Each replacement waits 10 s, 20 s, 40 s after the failure before it (the times are
    # whole seconds; the controller looks a second after a pod changes).
    for before, after, delay in zip(pods, pods[1:], (10, 20, 40), strict=False):
        ended = parse_rfc3339(before["status"]["containerStatuses"][0]["state"]["terminated"]
                              ["finishedAt"])  # fmt: skip
        waited = parse_rfc3339(after["metadata"]["creationTimestamp"]) - ended
        assert delay <= waited <= delay + 3, (delay, waited)


def test_the_active_deadline_ends_a_long_job_and_deletes_its_pods():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        run = Run(cluster, "forever")
        await run.start(batch_job("forever", "server", completions=4, parallelism=2,
                                  activeDeadlineSeconds=30))  # fmt: skip
        failed = await run.until("Failed")
        await trio.sleep(10)
        left = [p for p in await cluster.pods() if p["metadata"]["labels"].get("job") == "forever"]
        return {"job": failed, "pods": run.pods, "left": left}

    result = simulate(scenario, seed=1).value
    status = result["job"]["status"]
    target, failed = status["conditions"]
    assert (target["type"], target["reason"]) == ("FailureTarget", "DeadlineExceeded")
    assert (failed["type"], failed["reason"]) == ("Failed", "DeadlineExceeded")
    started = parse_rfc3339(status["startTime"])
    assert 30 <= parse_rfc3339(target["lastTransitionTime"]) - started <= 32
    assert status["failed"] == 2 and len(result["pods"]) == 2  # the two it ran, deleted
    assert all(p["status"]["phase"] == "Failed" or p["metadata"].get("deletionTimestamp")
               for p in result["left"])  # fmt: skip
    assert all(jobs.TRACKING_FINALIZER not in (p["metadata"].get("finalizers") or ())
               for p in result["left"])  # fmt: skip


def test_under_on_failure_container_restarts_reach_the_backoff_limit():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        run = Run(cluster, "restarts")
        await run.start(batch_job("restarts", "crash", policy="OnFailure", backoffLimit=3))
        failed = await run.until("Failed")
        return {"job": failed, "pods": run.pods}

    result = simulate(scenario, seed=1).value
    status = result["job"]["status"]
    assert status["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    # One pod, restarted in place by the kubelet (at once, then after 10 s and 20 s of
    # crash-loop backoff, each run a second) until its restarts reached the limit of 3,
    # about 33 s in; deleted then, it counts as the one failure.
    (only,) = result["pods"].values()
    assert status["failed"] == 1
    assert max(c["restartCount"] for c in only["status"]["containerStatuses"]) >= 2
    took = parse_rfc3339(status["conditions"][0]["lastTransitionTime"]) - parse_rfc3339(
        status["startTime"])  # fmt: skip
    assert 32 <= took <= 37, took


def test_an_indexed_job_runs_each_index_once_with_its_hostname():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        run = Run(cluster, "indexed")
        await run.start(batch_job("indexed", "worker", completionMode="Indexed", completions=4,
                                  parallelism=2))  # fmt: skip
        return {"job": await run.until("Complete"), "pods": run.pods}

    result = simulate(scenario, seed=1).value
    status = result["job"]["status"]
    assert (status["completedIndexes"], status["succeeded"]) == ("0-3", 4)
    pods = result["pods"].values()
    indexes = sorted(int(p["metadata"]["annotations"][jobs.COMPLETION_INDEX]) for p in pods)
    assert indexes == [0, 1, 2, 3]
    assert sorted(p["spec"]["hostname"] for p in pods) == [f"indexed-{i}" for i in range(4)]
    assert all(p["metadata"]["name"].startswith(p["spec"]["hostname"] + "-") for p in pods)


def test_a_suspended_job_runs_nothing_until_resumed_and_stops_when_suspended_again():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        client = cluster.client
        run = Run(cluster, "later")
        await run.start(batch_job("later", "server", completions=2, parallelism=2, suspend=True))
        suspended = await run.until("Suspended")
        await trio.sleep(5)
        idle = len(await cluster.pods())
        merge = "application/merge-patch+json"
        await client.patch("jobs", "later", {"spec": {"suspend": False}}, namespace="default",
                           group="batch", content_type=merge)  # fmt: skip

        async def running():
            j = await run.job()
            return j if (j.get("status") or {}).get("ready") == 2 else None

        resumed = await wait_for(running)
        await client.patch("jobs", "later", {"spec": {"suspend": True}}, namespace="default",
                           group="batch", content_type=merge)  # fmt: skip
        again = await run.until("Suspended")
        await trio.sleep(10)
        left = await cluster.pods()
        return {"suspended": suspended, "idle": idle, "resumed": resumed, "again": again,
                "left": left}  # fmt: skip

    result = simulate(scenario, seed=1).value
    assert "startTime" not in result["suspended"]["status"] and result["idle"] == 0
    (cond,) = result["suspended"]["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Suspended", "True", "JobSuspended")
    resumed = result["resumed"]["status"]
    assert (resumed["active"], resumed["conditions"][0]["reason"]) == (2, "JobResumed")
    assert resumed["startTime"]
    again = result["again"]["status"]
    assert again["conditions"][0]["reason"] == "JobSuspended" and "failed" not in again
    assert result["left"] == []  # its pods were deleted, and not counted as failures


def test_a_deleted_job_lets_the_garbage_collector_take_its_pods():
    async def scenario(net: SimNetwork) -> dict:
        cluster, controller = await cluster_with_controller(net)
        cluster.spawn_controller(GarbageCollector, "generic-garbage-collector")
        run = Run(cluster, "doomed")
        await run.start(batch_job("doomed", "server", completions=2, parallelism=2))

        async def running():
            return ((await run.job()).get("status") or {}).get("ready") == 2

        await wait_for(running)
        # kubectl asks for Background propagation (a Job's own default orphans its pods).
        await cluster.client.delete("jobs", "doomed", namespace="default", group="batch",
                                    propagation_policy="Background")  # fmt: skip

        async def gone():
            return not [p for p in await cluster.pods()
                        if p["metadata"]["labels"].get("job") == "doomed"]  # fmt: skip

        await wait_for(gone, limit=120)
        return {"took": net.now(), "errors": controller.errors}

    # The pods go only once their tracking finalizer is removed: their Job is gone, so
    # nothing would count them.
    assert simulate(scenario, seed=1).value["errors"] == 0


# --- TTL after finished ---------------------------------------------------------------------


def finished(kind: str = "Complete", at: float = NOW, **spec) -> dict:
    condition = {"type": kind, "status": "True", "lastTransitionTime": rfc3339(at)}
    return job(status={"conditions": [condition]}, **spec)


def test_only_finished_jobs_with_a_ttl_and_not_being_deleted_need_cleanup():
    assert needs_cleanup(finished(ttlSecondsAfterFinished=0))
    assert needs_cleanup(finished("Failed", ttlSecondsAfterFinished=10))
    assert not needs_cleanup(finished())  # no TTL
    assert not needs_cleanup(job(ttlSecondsAfterFinished=10))  # running
    gone = finished(ttlSecondsAfterFinished=10)
    gone["metadata"]["deletionTimestamp"] = rfc3339(NOW)
    assert not needs_cleanup(gone)


def test_the_ttl_counts_from_the_finish_condition():
    assert time_left(finished(ttlSecondsAfterFinished=100), NOW + 30) == 70
    assert time_left(finished(ttlSecondsAfterFinished=100), NOW + 130) == -30
    # A finish in the future (clock skew) defers the cleanup by as much.
    assert time_left(finished(at=NOW + 50, ttlSecondsAfterFinished=10), NOW) == 60
    broken = finished(ttlSecondsAfterFinished=1)
    del broken["status"]["conditions"][0]["lastTransitionTime"]
    with pytest.raises(ValueError, match="unable to find the time when the Job default/pi"):
        time_left(broken, NOW)


def test_a_finished_job_and_its_pods_go_when_its_ttl_runs_out():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controller(net)
        cluster.spawn_controller(GarbageCollector, "generic-garbage-collector")
        ttl = cluster.spawn_controller(TTLAfterFinishedController, "ttl-after-finished-controller")
        short, kept = Run(cluster, "short"), Run(cluster, "kept")
        await short.start(batch_job("short", "worker", ttlSecondsAfterFinished=30))
        await kept.start(batch_job("kept", "worker"))
        done = await short.until("Complete")
        finished_at = parse_rfc3339(done["status"]["completionTime"])
        await kept.until("Complete")

        async def gone():
            listed = await cluster.client.list("jobs", namespace="default", group="batch")
            return "short" not in {j["metadata"]["name"] for j in listed["items"]} or None

        await wait_for(gone, limit=120)
        deleted_at = net.system("clients").clock.now()
        pods = [p["metadata"]["name"] for p in await cluster.pods()]
        return {"after": deleted_at - finished_at, "pods": pods, "kept": await kept.job(),
                "errors": ttl.errors}  # fmt: skip

    result = simulate(scenario, seed=1).value
    assert 30 <= result["after"] <= 32
    assert not [p for p in result["pods"] if p.startswith("short")]
    assert [p for p in result["pods"] if p.startswith("kept")]  # no TTL: kept, pods too
    assert result["kept"]["metadata"]["name"] == "kept" and result["errors"] == 0
