"""The CronJob controller: its pure core against robfig/cron's and Kubernetes'
documented behaviour (the schedule syntax, the next run in a time zone and across DST
changes, missed runs with and without startingDeadlineSeconds, the concurrency
policies, the history limits, the Jobs it makes), and the whole cluster in the
deterministic simulation (a Job a minute with its history trimmed, Forbid, Replace,
suspend), the controller running as its service account with Kubernetes' bootstrap
role system:controller:cronjob-controller."""

from __future__ import annotations

import datetime as dt

import pytest
import trio
from sim_cluster import SimCluster

from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.controllers import _cron as cron
from actorkube.controllers.cronjob import CronJobController
from actorkube.controllers.job import JobController
from actorkube.node.runtime import SimProfile
from actorkube.sim import SimNetwork, simulate


def at(text: str) -> float:
    """Seconds since the epoch of an ISO time (UTC unless it says otherwise)."""
    moment = dt.datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


def iso(seconds: float | None, zone: str = "UTC") -> str | None:
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.UTC).astimezone(
        None if zone == "UTC" else cron.load_zone(zone)).strftime("%Y-%m-%d %H:%M %z")


def runs(schedule: str, start: str, count: int, zone: str | None = None) -> list[str]:
    s, t, out = cron.parse_schedule(schedule, zone), at(start), []
    for _ in range(count):
        t = s.next(t)
        out.append(iso(t, zone or "UTC"))
    return out


# --- schedules ------------------------------------------------------------------------------


def test_fields_take_values_ranges_steps_lists_and_names():
    s = cron.parse_schedule("*/15 9-17/4 1,15 jan-MAR,dec mon-fri")
    assert s.minutes == (0, 15, 30, 45) and s.hours == (9, 13, 17)
    assert s.days == {1, 15} and s.months == {1, 2, 3, 12} and s.weekdays == {1, 2, 3, 4, 5}
    assert not s.any_day  # neither day field is "*": either may match
    assert cron.parse_schedule("5/20 * * * *").minutes == (5, 25, 45)  # "a/n": a to the end
    assert cron.parse_schedule("0 0 ? * sun").weekdays == {0}
    every_day = cron.parse_schedule("0 0 */1 * *")
    assert every_day.any_day and len(every_day.days) == 31
    assert not cron.parse_schedule("0 0 */2 * 1").any_day  # a step above 1 is not "*"


@pytest.mark.parametrize(("schedule", "problem"), [
    ("* * * *", "expected exactly 5 fields, found 4: * * * *"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("* 5-2 * * *", "beginning of range (5) beyond end of range (2): 5-2"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
    ("* * * * 7", "end of range (7) above maximum (6): 7"),
    ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
    ("* * * foo *", 'failed to parse int from foo: strconv.Atoi: parsing "foo": invalid syntax'),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("", "empty spec string"),
    ("TZ=Mars/Olympus * * * * *", "provided bad location Mars/Olympus: unknown time zone "
                                  "Mars/Olympus"),
])  # fmt: skip
def test_robfig_refuses_what_is_out_of_range_or_malformed(schedule, problem):
    with pytest.raises(cron.ScheduleError) as caught:
        cron.parse_schedule(schedule)
    assert str(caught.value) == problem


def test_descriptors_and_every():
    for descriptor, spelled in (("@yearly", "0 0 1 1 *"), ("@monthly", "0 0 1 * *"),
                                ("@weekly", "0 0 * * 0"), ("@daily", "0 0 * * *"),
                                ("@midnight", "0 0 * * *"), ("@hourly", "0 * * * *")):  # fmt: skip
        assert cron.parse_schedule(descriptor) == cron.parse_schedule(spelled)
    assert cron.parse_schedule("@every 1h30m").every == 5400
    assert cron.parse_schedule("@every 1.5s").every == 1  # whole seconds
    assert cron.parse_schedule("@every 10ms").every == 1  # at least one
    # @every counts from the whole second before the time it is asked about.
    assert cron.parse_schedule("@every 90s").next(at("2024-01-01T00:00:00") + 0.7) == (
        at("2024-01-01T00:01:30"))


def test_the_next_run_is_strictly_later_and_skips_to_matching_days():
    assert runs("*/1 * * * *", "2023-11-14T22:13:20", 2) == [
        "2023-11-14 22:14 +0000", "2023-11-14 22:15 +0000"]
    assert runs("0 9 * * mon-fri", "2024-01-05T10:00", 2) == [  # a Friday
        "2024-01-08 09:00 +0000", "2024-01-09 09:00 +0000"]
    # Neither day field "*": the 13th or a Friday.
    assert runs("0 0 13 * fri", "2024-09-10T00:00", 3) == [
        "2024-09-13 00:00 +0000", "2024-09-20 00:00 +0000", "2024-09-27 00:00 +0000"]
    assert runs("0 12 29 feb *", "2024-03-01T00:00", 1) == ["2028-02-29 12:00 +0000"]
    assert cron.parse_schedule("0 0 31 2 *").next(at("2024-01-01T00:00")) is None


def test_time_zones_run_on_local_wall_clock_time():
    # 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
    assert runs("0 9 * * *", "2024-03-09T15:00", 2, "America/New_York") == [
        "2024-03-10 09:00 -0400", "2024-03-11 09:00 -0400"]
    assert runs("0 9 * * *", "2024-01-09T15:00", 1, "America/New_York") == [
        "2024-01-10 09:00 -0500"]
    prefixed = cron.parse_schedule("CRON_TZ=Asia/Tokyo 0 9 * * *")
    assert iso(prefixed.next(at("2023-12-31T23:00")), "Asia/Tokyo") == "2024-01-01 09:00 +0900"
    assert cron.parse_schedule("TZ=UTC 0 9 * * *").zone is None


def test_dst_skips_a_vanished_wall_time_and_repeats_a_doubled_hour():
    # 2024-03-10 02:30 does not exist in New York: no run that day.
    assert runs("30 2 * * *", "2024-03-09T12:00", 2, "America/New_York") == [
        "2024-03-11 02:30 -0400", "2024-03-12 02:30 -0400"]
    # 2024-11-03 01:00-02:00 happens twice: */30 keeps running through both.
    assert runs("*/30 * * * *", "2024-11-03T04:40", 5, "America/New_York") == [
        "2024-11-03 01:00 -0400", "2024-11-03 01:30 -0400", "2024-11-03 01:00 -0500",
        "2024-11-03 01:30 -0500", "2024-11-03 02:00 -0500"]
    # A daily 01:30 asked about during the first pass runs again in the second.
    assert runs("30 1 * * *", "2024-11-03T05:35", 1, "America/New_York") == [
        "2024-11-03 01:30 -0500"]


# --- decisions ------------------------------------------------------------------------------

CREATED = at("2024-01-01T00:00:00")


def cronjob(name: str = "tick", *, status: dict | None = None, **spec) -> dict:
    spec = {"schedule": "*/1 * * * *", "concurrencyPolicy": "Allow", "suspend": False,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"team": "a"},
                                         "annotations": {"note": "x"}},
                            "spec": {"template": {"spec": {"containers": [
                                {"name": "c", "image": "busybox"}],
                                "restartPolicy": "Never"}}}}, **spec}  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": name, "namespace": "default", "uid": f"{name}-uid",
                         "creationTimestamp": rfc3339(CREATED)},
            "spec": {k: v for k, v in spec.items() if v is not None},
            "status": status or {}}  # fmt: skip


def job(name: str, condition: str | None = None, *, started: float = CREATED,
        owner: str = "tick") -> dict:  # fmt: skip
    status: dict = {"startTime": rfc3339(started)}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True"}]
    if condition == "Complete":
        status["completionTime"] = rfc3339(started + 5)
    ref = {"kind": "CronJob", "name": owner, "uid": f"{owner}-uid", "controller": True}
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}",
                         "ownerReferences": [ref]}, "status": status}  # fmt: skip


def ref(name: str) -> dict:
    return cron.job_reference(job(name))


def reasons(decision: cron.Plan) -> list[str]:
    return [reason for _, reason, _ in decision.events]


def test_a_run_due_now_starts_and_the_next_is_a_minute_later():
    now = CREATED + 90
    decision = cron.plan(cronjob(), now)
    assert decision.scheduled == CREATED + 60 and decision.replace == () and not decision.events
    j = {**cron.job_for(cronjob(), decision.scheduled), "status": {}}
    j["metadata"]["uid"] = "u-new"
    status = cron.started({}, j, decision.scheduled)
    assert status["lastScheduleTime"] == rfc3339(CREATED + 60)
    assert [r["name"] for r in status["active"]] == [cron.job_name(cronjob(), CREATED + 60)]
    assert cron.next_run_in(cronjob(status=status), now, decision.schedule) == pytest.approx(30.1)
    # The same run is not started twice.
    again = cron.plan(cronjob(status=status), now)
    assert again.scheduled is None and again.requeue_after == pytest.approx(30.1)


def test_missed_runs_start_only_the_most_recent_and_too_many_are_reported():
    now = CREATED + 200 * 60 + 30
    decision = cron.plan(cronjob(), now)
    assert decision.scheduled == CREATED + 200 * 60
    assert reasons(decision) == ["TooManyMissedTimes"]
    assert decision.events[0][2].startswith("too many missed start times: 200. Set or decrease")
    # startingDeadlineSeconds bounds the search: no report, the same run.
    bounded = cron.plan(cronjob(startingDeadlineSeconds=60), now)
    assert bounded.scheduled == CREATED + 200 * 60 and not bounded.events
    # A run older than the deadline is not started; the key comes back for the next.
    late = cron.plan(cronjob(startingDeadlineSeconds=20), now + 15)
    assert late.scheduled is None and late.requeue_after == pytest.approx(15.1)


def test_an_uneven_schedule_finds_its_most_recent_run():
    weekdays = cronjob(schedule="0 9 * * 1-5",
                       status={"lastScheduleTime": rfc3339(at("2024-01-08T09:00"))})  # fmt: skip
    decision = cron.plan(weekdays, at("2024-01-13T10:00"))  # a Saturday
    assert iso(decision.scheduled) == "2024-01-12 09:00 +0000"


def test_concurrency_policies_decide_about_a_running_job():
    status = {"active": [ref("tick-old")], "lastScheduleTime": rfc3339(CREATED + 60)}
    now = CREATED + 125
    allow = cron.plan(cronjob(status=status), now)
    assert allow.scheduled == CREATED + 120 and allow.replace == ()
    forbid = cron.plan(cronjob(status=status, concurrencyPolicy="Forbid"), now)
    assert forbid.scheduled is None and reasons(forbid) == ["JobAlreadyActive"]
    assert forbid.requeue_after == pytest.approx(55.1)
    replace = cron.plan(cronjob(status=status, concurrencyPolicy="Replace"), now)
    assert replace.scheduled == CREATED + 120
    assert [r["name"] for r in replace.replace] == ["tick-old"]


def test_suspended_unparseable_or_zoneless_cronjobs_start_nothing():
    now = CREATED + 90
    assert cron.plan(cronjob(suspend=True), now) == cron.Plan()
    unknown = cron.plan(cronjob(timeZone="Mars/Olympus"), now)
    assert reasons(unknown) == ["UnknownTimeZone"] and unknown.scheduled is None
    never = cron.plan(cronjob(schedule="0 0 31 2 *"), now)
    assert reasons(never) == ["InvalidSchedule"] and never.requeue_after is None
    prefixed = cron.plan(cronjob(schedule="TZ=UTC */1 * * * *"), now)
    assert reasons(prefixed) == ["UnsupportedSchedule"] and prefixed.scheduled == CREATED + 60


def test_observing_jobs_settles_the_active_list_and_the_last_success():
    status = {"active": [ref("done"), ref("running"), ref("vanished")],
              "lastSuccessfulTime": rfc3339(CREATED)}  # fmt: skip
    jobs = [job("done", "Complete", started=CREATED + 60), job("running"),
            job("old", "Complete", started=CREATED + 30), job("stray")]  # fmt: skip
    seen = cron.observe(cronjob(status=status), jobs)
    assert [r["name"] for r in seen.status["active"]] == ["running", "vanished"]
    assert [r["name"] for r in seen.missing] == ["vanished"]
    assert [j["metadata"]["name"] for j in seen.unexpected] == ["stray"]
    assert [reason for _, reason, _ in seen.events] == ["SawCompletedJob", "UnexpectedJob"]
    assert seen.events[0][2] == "Saw completed job: done, condition: Complete"
    # A Job finished and no longer listed gives lastSuccessfulTime (the latest one).
    assert seen.status["lastSuccessfulTime"] == rfc3339(CREATED + 35)
    later = cron.observe(cronjob(status=seen.status), jobs)
    assert later.status["lastSuccessfulTime"] == rfc3339(CREATED + 65)


def test_history_limits_delete_the_oldest_finished_jobs():
    jobs = [job(f"ok-{i}", "Complete", started=CREATED + i) for i in (5, 1, 4, 2, 3)]
    jobs += [job("bad-1", "Failed", started=CREATED + 1),
             job("bad-2", "Failed", started=CREATED + 2), job("running")]  # fmt: skip
    doomed = cron.history_to_delete(cronjob(), jobs)
    assert [j["metadata"]["name"] for j in doomed] == ["ok-1", "ok-2", "bad-1"]
    keep_all = cronjob(successfulJobsHistoryLimit=None, failedJobsHistoryLimit=None)
    assert cron.history_to_delete(keep_all, jobs) == ()
    assert len(cron.history_to_delete(cronjob(failedJobsHistoryLimit=0), jobs)) == 4


def test_a_job_carries_the_template_the_owner_and_the_scheduled_time():
    scheduled = at("2024-06-01T12:34:00")
    made = cron.job_for(cronjob(timeZone="Europe/Berlin"), scheduled)
    m = made["metadata"]
    assert m["name"] == f"tick-{int(scheduled) // 60}" == "tick-28620754"
    assert m["labels"] == {"team": "a"}
    assert m["annotations"] == {"note": "x", cron.SCHEDULED_TIMESTAMP: "2024-06-01T14:34:00+02:00"}
    (owner,) = m["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "CronJob", "tick-uid", True, True)
    assert made["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    utc = cron.job_for(cronjob(), scheduled)["metadata"]["annotations"]
    assert utc[cron.SCHEDULED_TIMESTAMP] == "2024-06-01T12:34:00Z"


# --- the whole cluster ----------------------------------------------------------------------

PROFILES = {"worker": SimProfile(run_for=5.0), "server": SimProfile()}


def cron_job(name: str, image: str, **spec) -> dict:
    template = {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": image}], "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 5}}}}  # fmt: skip
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "*/1 * * * *", "jobTemplate": template, **spec}}


class Cron:
    """One CronJob in a simulated cluster, its Jobs and events read through the API."""

    def __init__(self, cluster: SimCluster, name: str) -> None:
        self.client, self.name = cluster.client, name
        self.seen: set[str] = set()

    async def create(self, body: dict) -> None:
        await self.client.create("cronjobs", body, namespace="default", group="batch")

    async def get(self) -> dict:
        return await self.client.get("cronjobs", self.name, namespace="default", group="batch")

    async def patch(self, spec: dict) -> None:
        await self.client.patch("cronjobs", self.name, {"spec": spec}, namespace="default",
                                group="batch", content_type="application/merge-patch+json")

    async def jobs(self) -> list[dict]:
        listed = await self.client.list("jobs", namespace="default", group="batch")
        mine = sorted((j for j in listed["items"] if j["metadata"]["name"].startswith(self.name)),
                      key=lambda j: j["metadata"]["name"])  # fmt: skip
        self.seen.update(j["metadata"]["name"] for j in mine)
        return mine

    async def watch(self, seconds: float) -> None:
        """Note the Jobs every five seconds for ``seconds``."""
        for _ in range(int(seconds // 5)):
            await self.jobs()
            await trio.sleep(5)

    async def events(self) -> list[str]:
        """The reasons of the CronJob's events, each as often as it happened (a repeated
        event is one Event with a count)."""
        listed = await self.client.list("events", namespace="default")
        return [e["reason"] for e in listed["items"] if e["involvedObject"]["name"] == self.name
                for _ in range(e.get("count", 1))]  # fmt: skip


async def cluster_with_controllers(net: SimNetwork) -> tuple[SimCluster, CronJobController]:
    cluster = await SimCluster.start(net, nodes=2, profiles=PROFILES)
    cluster.spawn_controller(JobController, "job-controller")
    controller = cluster.spawn_controller(CronJobController, "cronjob-controller")
    return cluster, controller


def minute_of(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def test_a_job_a_minute_completes_and_the_history_keeps_three():
    async def scenario(net: SimNetwork) -> dict:
        cluster, controller = await cluster_with_controllers(net)
        tick = Cron(cluster, "tick")
        await tick.create(cron_job("tick", "worker"))
        await tick.watch(5 * 60 + 30)
        return {"cronjob": await tick.get(), "jobs": await tick.jobs(), "seen": tick.seen,
                "events": await tick.events(), "errors": controller.errors}  # fmt: skip

    result = simulate(scenario, seed=1).value
    seen = sorted(result["seen"], key=minute_of)
    minutes = [minute_of(n) for n in seen]
    assert len(seen) == 5 and minutes == list(range(minutes[0], minutes[0] + 5))
    jobs = result["jobs"]
    assert [j["metadata"]["name"] for j in jobs] == seen[-3:]  # the two oldest deleted
    assert all(cron.finished_condition(j) == "Complete" for j in jobs)
    for j in jobs:
        stamp = j["metadata"]["annotations"][cron.SCHEDULED_TIMESTAMP]
        assert parse_rfc3339(stamp) == minute_of(j["metadata"]["name"]) * 60
        assert j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    status = result["cronjob"]["status"]
    assert "active" not in status
    assert parse_rfc3339(status["lastScheduleTime"]) == minutes[-1] * 60
    assert parse_rfc3339(status["lastSuccessfulTime"]) > minutes[-1] * 60
    events = result["events"]
    assert events.count("SuccessfulCreate") == 5 and events.count("SuccessfulDelete") == 2
    # A sync whose cache does not show its own last status write yet may see a completion
    # again (as Kubernetes' may); what it writes is the same.
    assert events.count("SawCompletedJob") >= 5
    assert result["errors"] == 0


def test_forbid_skips_runs_while_the_previous_job_runs():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controllers(net)
        once = Cron(cluster, "once")
        await once.create(cron_job("once", "server", concurrencyPolicy="Forbid"))
        await once.watch(3 * 60 + 30)
        return {"cronjob": await once.get(), "seen": once.seen, "events": await once.events()}

    result = simulate(scenario, seed=1).value
    (only,) = result["seen"]
    assert [r["name"] for r in result["cronjob"]["status"]["active"]] == [only]
    # Created a few seconds into the minute before 22:14: runs at 22:14, :15 and :16.
    assert result["events"].count("JobAlreadyActive") == 2
    assert result["events"].count("SuccessfulCreate") == 1


def test_replace_deletes_the_running_job_and_starts_the_next():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controllers(net)
        swap = Cron(cluster, "swap")
        await swap.create(cron_job("swap", "server", concurrencyPolicy="Replace"))
        await swap.watch(2 * 60 + 30)
        return {"cronjob": await swap.get(), "jobs": await swap.jobs(), "seen": swap.seen,
                "events": await swap.events()}  # fmt: skip

    result = simulate(scenario, seed=1).value
    seen = sorted(result["seen"], key=minute_of)
    assert len(seen) == 2
    assert [j["metadata"]["name"] for j in result["jobs"]] == seen[-1:]
    assert [r["name"] for r in result["cronjob"]["status"]["active"]] == seen[-1:]
    assert result["events"].count("SuccessfulDelete") == 1


def test_suspend_stops_new_jobs():
    async def scenario(net: SimNetwork) -> dict:
        cluster, _ = await cluster_with_controllers(net)
        pause = Cron(cluster, "pause")
        await pause.create(cron_job("pause", "worker"))
        while not await pause.jobs():
            await trio.sleep(5)
        await pause.patch({"suspend": True})
        await pause.watch(3 * 60)
        return {"seen": pause.seen, "cronjob": await pause.get()}

    result = simulate(scenario, seed=1).value
    assert len(result["seen"]) == 1
    assert "active" not in result["cronjob"]["status"]  # the one started still finished
