"""The pure core of the CronJob controller: cron schedules (robfig/cron's standard
syntax, as Kubernetes parses them) and the decisions of a sync (kube-controller-manager's
pkg/controller/cronjob, the v2 controller of Kubernetes 1.30).

Rules of this file:

- Objects are Kubernetes JSON as dicts, never modified; times are seconds since the
  epoch, given, never read from a clock.
- A schedule is five fields (minute, hour, day of month, month, day of week) of
  values, ``*`` or ``?``, ranges ``a-b``, steps ``/n`` (``a/n`` runs from a to the
  field's maximum) and lists ``,``; months and weekdays also by their English names
  (``jan``, ``mon``). Or a descriptor: ``@yearly`` (``@annually``), ``@monthly``,
  ``@weekly``, ``@daily`` (``@midnight``), ``@hourly``, ``@every <Go duration>``
  (whole seconds, at least one). When the day of month or the day of week is ``*``
  both must match, otherwise either (Vixie cron's rule).
- ``Schedule.next(t)`` is the first run strictly after ``t``, at most five years on
  (None: none). Runs are wall-clock times in the schedule's zone (a ``TZ=``/``CRON_TZ=``
  prefix, else spec.timeZone, else UTC: the zone the controller manager runs in here).
  A wall time a DST change skips does not run that day; one it repeats runs at each
  instant it names, so ``*/15`` keeps its pace through the extra hour.
- A sync (syncCronJob) is these steps, the actor doing the I/O between them:
  ``history_to_delete`` (finished Jobs beyond the history limits, oldest first),
  ``observe`` (finished Jobs leave status.active, lastSuccessfulTime, Jobs the
  CronJob controls but does not list, listed Jobs to confirm gone with a live read),
  then ``plan`` (whether a run is due now: the most recent unmet schedule time no
  older than startingDeadlineSeconds, unless it started already or Forbid finds a Job
  running; Replace deletes the running ones first). A run older than the deadline is
  never looked for, so Kubernetes' MissSchedule event, whose test comes after that
  search, cannot happen and is left out. The actor then creates
  ``job_for(cronjob, time)`` and adds it to status.active with lastScheduleTime, and
  looks again ``next_run_in(cronjob, now)`` seconds later.
- A Job's name is ``<cronjob>-<scheduled time in minutes since the epoch>``: creating it
  twice for one time fails with AlreadyExists, which is how a crash between the create
  and the status write never starts a run twice.
- More than 100 missed start times is reported (TooManyMissedTimes) and the most
  recent one still runs; counting them is Kubernetes' estimate (the time since the
  first miss over the time between two runs).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from actorkube.apiserver._meta import parse_rfc3339, rfc3339

from . import _replicas as replicas
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._fields import status as _status

API_VERSION, KIND = "batch/v1", "CronJob"
JOB_API_VERSION, JOB_KIND = "batch/v1", "Job"
SCHEDULED_TIMESTAMP = "batch.kubernetes.io/cronjob-scheduled-timestamp"
TOO_MANY_MISSED = 100
NEXT_SCHEDULE_DELTA = 0.1  # nextScheduleDelta: a requeue lands just after the run time
SEARCH_YEARS = 5  # robfig/cron gives up on a schedule with no run within five years
_MARGIN = dt.timedelta(hours=3)  # wider than any DST shift

Event = tuple[str, str, str]  # (type, reason, message) of a Kubernetes Event


class ScheduleError(ValueError):
    """A schedule robfig/cron refuses, or one that never runs twice a second apart:
    the fault of whoever wrote the CronJob."""


# --- parsing --------------------------------------------------------------------------------

_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}  # fmt: skip
_MONTHS = {name: i + 1 for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (minimum, maximum, names) of minute, hour, day of month, month, day of week
_FIELDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _WEEKDAYS))
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
          "h": 3600.0}  # fmt: skip


def load_zone(name: str) -> ZoneInfo | None:
    """Go's time.LoadLocation: "" and "UTC" are UTC (None), others IANA names."""
    if name in ("", "UTC"):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ScheduleError(f"unknown time zone {name}") from e


def _number(text: str, names: Mapping[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": '
                            "invalid syntax")  # fmt: skip
    return int(text)


def _field(text: str, low: int, high: int, names: Mapping[str, int]) -> tuple[frozenset, bool]:
    """The values a field allows, and whether it is a plain ``*`` (robfig's star bit:
    ``*`` or ``?`` without a step above 1)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        range_and_step = part.split("/")
        if len(range_and_step) > 2:
            raise ScheduleError(f"too many slashes: {part}")
        bounds = range_and_step[0].split("-")
        if len(bounds) > 2:
            raise ScheduleError(f"too many hyphens: {part}")
        whole = bounds[0] in ("*", "?")
        if whole:
            start, end = low, high
        else:
            start = _number(bounds[0], names)
            end = _number(bounds[1], names) if len(bounds) == 2 else start
        step = 1
        if len(range_and_step) == 2:
            step = _number(range_and_step[1], {})
            if len(bounds) == 1 and not whole:
                end = high  # "a/n": from a to the maximum
        if start < low:
            raise ScheduleError(f"beginning of range ({start}) below minimum ({low}): {part}")
        if end > high:
            raise ScheduleError(f"end of range ({end}) above maximum ({high}): {part}")
        if start > end:
            raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): "
                                f"{part}")  # fmt: skip
        if step == 0:
            raise ScheduleError(f"step of range should be a positive number: {part}")
        values.update(range(start, end + 1, step))
        star = star or (whole and step == 1)
    return frozenset(values), star


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration (``1h30m``, ``90s``, ``1.5h``)."""
    pos, total = 0, 0.0
    if not text or text == "0":
        return 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None or m.group(1) in ("", "."):
            raise ScheduleError(f"failed to parse duration {text}: time: invalid duration "
                                f'"{text}"')  # fmt: skip
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


def parse_schedule(text: str, time_zone: str | None = None) -> Schedule:
    """robfig/cron's ParseStandard of ``text`` (see the module rules), in ``time_zone``
    (an IANA name) unless the text starts with ``TZ=`` or ``CRON_TZ=``."""
    text = text.strip()
    zone_name = time_zone or ""
    if text.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, text = text.partition(" ")
        zone_name = prefix.partition("=")[2]
        try:
            load_zone(zone_name)
        except ScheduleError as e:
            raise ScheduleError(f"provided bad location {zone_name}: {e}") from None
        text = text.strip()
    zone = load_zone(zone_name)
    if not text:
        raise ScheduleError("empty spec string")
    if text.startswith("@every "):
        seconds = max(1.0, parse_go_duration(text.removeprefix("@every ").strip()))
        return Schedule(every=float(math.floor(seconds)), zone=zone)
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        text = _DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    parsed = [_field(f, low, high, names)
              for f, (low, high, names) in zip(fields, _FIELDS, strict=True)]  # fmt: skip
    (minutes, _), (hours, _), (days, day_star), (months, _), (weekdays, weekday_star) = parsed
    return Schedule(minutes=tuple(sorted(minutes)), hours=tuple(sorted(hours)),
                    days=days, months=months, weekdays=weekdays,
                    any_day=day_star or weekday_star, zone=zone)  # fmt: skip


# --- next run -------------------------------------------------------------------------------


@attrs.frozen
class Schedule:
    """A parsed schedule: the allowed values of each field (``any_day``: day of month
    and day of week must both match), or ``every`` seconds; ``zone`` (None: UTC)."""

    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    any_day: bool = True
    zone: ZoneInfo | None = None
    every: float | None = None

    def next(self, t: float) -> float | None:
        """The first run strictly after ``t`` (see the module rules)."""
        if self.every is not None:
            return math.floor(t) + self.every
        lo = self._wall(t)
        if self._offset(t + _MARGIN.total_seconds()) < self._offset(t):
            lo -= _MARGIN  # the clock goes back soon: wall times before t's come again
        best: float | None = None
        limit: dt.datetime | None = None
        for wall in self._walls(lo):
            if limit is not None and wall > limit:
                break
            for instant in self._instants(wall):
                if instant > t and (best is None or instant < best):
                    best = instant
                    shifted = self._offset(best - _MARGIN.total_seconds()) > self._offset(best)
                    limit = wall + _MARGIN if shifted else wall
        return best

    def _offset(self, t: float) -> float:
        if self.zone is None:
            return 0.0
        return dt.datetime.fromtimestamp(t, self.zone).utcoffset().total_seconds()

    def _wall(self, t: float) -> dt.datetime:
        moment = dt.datetime.fromtimestamp(t, self.zone or dt.UTC)
        return moment.replace(tzinfo=None, second=0, microsecond=0)

    def _instants(self, wall: dt.datetime) -> list[float]:
        """The instants a wall time names: none in a DST gap, two in a repeated hour."""
        if self.zone is None:
            return [wall.replace(tzinfo=dt.UTC).timestamp()]
        out = []
        for fold in (0, 1):
            instant = wall.replace(tzinfo=self.zone, fold=fold).timestamp()
            back = dt.datetime.fromtimestamp(instant, self.zone).replace(tzinfo=None)
            if back == wall and instant not in out:
                out.append(instant)
        return sorted(out)

    def _day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        return dom and dow if self.any_day else dom or dow

    def _walls(self, lo: dt.datetime) -> Iterator[dt.datetime]:
        """Matching wall times from ``lo`` on, in order, for five years."""
        day, first = lo.date(), True
        end = day + dt.timedelta(days=366 * SEARCH_YEARS)
        while day <= end:
            if day.month not in self.months:
                day = (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                first = False
                continue
            if self._day_matches(day):
                for hour in self.hours:
                    if first and hour < lo.hour:
                        continue
                    for minute in self.minutes:
                        if first and hour == lo.hour and minute < lo.minute:
                            continue
                        yield dt.datetime(day.year, day.month, day.day, hour, minute)
            day += dt.timedelta(days=1)
            first = False


# --- the CronJob's times ----------------------------------------------------------------------


def schedule_of(cronjob: Mapping[str, Any]) -> Schedule:
    """formatSchedule and ParseStandard: spec.schedule in spec.timeZone, unless the
    schedule names its own zone."""
    spec = _spec(cronjob)
    text = str(spec.get("schedule") or "")
    return parse_schedule(text, None if "TZ" in text else spec.get("timeZone"))


def most_recent_schedule_time(cronjob: Mapping[str, Any], now: float, schedule: Schedule, *,
                              deadline: bool) -> tuple[float, float | None, int]:  # fmt: skip
    """mostRecentScheduleTime: the time unmet runs are counted from (lastScheduleTime,
    else the creation; with ``deadline``, no earlier than startingDeadlineSeconds ago),
    the most recent run due by ``now`` (None: none) and how many were missed. Raises
    ScheduleError for a schedule without two runs a second apart."""
    created = parse_rfc3339(_meta(cronjob).get("creationTimestamp"))
    earliest = parse_rfc3339(_status(cronjob).get("lastScheduleTime")) or created or now
    starting = _spec(cronjob).get("startingDeadlineSeconds")
    if deadline and starting is not None:
        earliest = max(earliest, now - starting)
    t1 = schedule.next(earliest)
    t2 = schedule.next(t1) if t1 is not None else None
    if t1 is not None and now < t1:
        return earliest, None, 0
    if t1 is not None and t2 is not None and now < t2:
        return earliest, t1, 1
    interval = round(t2 - t1) if t1 is not None and t2 is not None else 0
    if interval < 1:
        raise ScheduleError("time difference between two schedules is less than 1 second")
    missed = int(now - t1) // interval + 1
    # Start near now from Kubernetes' estimate, stepping back further when an uneven
    # schedule (weekdays only, say) made it overshoot.
    start, gap = t1 + (missed - 2) * interval, interval
    while start > earliest and (schedule.next(start) or math.inf) > now:
        start, gap = max(earliest, start - gap), gap * 2
    recent, t = None, schedule.next(start)
    while t is not None and t <= now:
        recent, t = t, schedule.next(t)
    return earliest, recent, missed


def next_run_in(cronjob: Mapping[str, Any], now: float, schedule: Schedule) -> float | None:
    """nextScheduleTimeDuration: seconds until the run after the most recent one
    (plus 100 ms); None for a schedule that never runs again."""
    try:
        earliest, recent, _ = most_recent_schedule_time(cronjob, now, schedule, deadline=False)
        base = recent if recent is not None else earliest
    except ScheduleError:
        base = now
    upcoming = schedule.next(base)
    return None if upcoming is None else upcoming + NEXT_SCHEDULE_DELTA - now


def requeue_delay(cronjob: Mapping[str, Any], now: float) -> float | None:
    """``next_run_in`` of the CronJob's own schedule; None if it does not parse."""
    try:
        return next_run_in(cronjob, now, schedule_of(cronjob))
    except ScheduleError:
        return None


# --- Jobs -----------------------------------------------------------------------------------


def job_name(cronjob: Mapping[str, Any], scheduled: float) -> str:
    """getJobName: the CronJob's name and the run's time in minutes since the epoch."""
    return f"{_meta(cronjob).get('name', '')}-{int(scheduled) // 60}"


def _rfc3339_in(seconds: float, zone: ZoneInfo | None) -> str:
    """Go's RFC 3339 of a time in a zone (``Z`` for a zero offset)."""
    text = dt.datetime.fromtimestamp(int(seconds), zone or dt.UTC).isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def job_for(cronjob: Mapping[str, Any], scheduled: float) -> dict:
    """getJobFromTemplate2: the Job of the run at ``scheduled``: the template's labels,
    annotations (with the scheduled time, RFC 3339 in the CronJob's zone) and spec, the
    CronJob as controller."""
    template = _spec(cronjob).get("jobTemplate") or {}
    tm = template.get("metadata") or {}
    try:
        zone = load_zone(_spec(cronjob).get("timeZone") or "")
    except ScheduleError:
        zone = None
    annotations = {**(tm.get("annotations") or {}),
                   SCHEDULED_TIMESTAMP: _rfc3339_in(scheduled, zone)}  # fmt: skip
    metadata: dict[str, Any] = {
        "name": job_name(cronjob, scheduled), "namespace": _meta(cronjob).get("namespace", ""),
        "annotations": annotations,
        "ownerReferences": [replicas.controller_reference(cronjob, API_VERSION, KIND)]}  # fmt: skip
    if tm.get("labels"):
        metadata["labels"] = dict(tm["labels"])
    return {"apiVersion": JOB_API_VERSION, "kind": JOB_KIND, "metadata": metadata,
            "spec": dict(template.get("spec") or {})}  # fmt: skip


def job_reference(job: Mapping[str, Any]) -> dict:
    """The ObjectReference status.active holds."""
    m = _meta(job)
    return {"apiVersion": JOB_API_VERSION, "kind": JOB_KIND, "namespace": m.get("namespace", ""),
            "name": m.get("name", ""), "uid": m.get("uid", ""),
            "resourceVersion": m.get("resourceVersion", "")}  # fmt: skip


def finished_condition(job: Mapping[str, Any]) -> str | None:
    """"Complete" or "Failed" once the Job has that condition true, else None."""
    for c in _status(job).get("conditions") or ():
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def controls(cronjob: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Whether the Job's controller reference names this CronJob (its uid)."""
    ref = replicas.controller_of(job) or {}
    return ref.get("kind") == KIND and ref.get("uid") == _meta(cronjob).get("uid")


def without_active(status: Mapping[str, Any], uid: str) -> dict:
    """The status with the Job of ``uid`` gone from status.active."""
    active = [r for r in status.get("active") or () if r.get("uid") != uid]
    out = {k: v for k, v in status.items() if k != "active"}
    return {**out, "active": active} if active else out


# --- the sync -------------------------------------------------------------------------------


def history_to_delete(cronjob: Mapping[str, Any], jobs: Sequence[dict]) -> tuple[dict, ...]:
    """cleanupFinishedJobs: the finished Jobs beyond successfulJobsHistoryLimit and
    failedJobsHistoryLimit (each unset: keep all), the earliest started first."""
    spec = _spec(cronjob)
    doomed: list[dict] = []
    for condition, field in (("Complete", "successfulJobsHistoryLimit"),
                             ("Failed", "failedJobsHistoryLimit")):  # fmt: skip
        limit = spec.get(field)
        if limit is None:
            continue
        done = [j for j in jobs if finished_condition(j) == condition]
        done.sort(key=lambda j: (parse_rfc3339(_status(j).get("startTime")) is None,
                                 parse_rfc3339(_status(j).get("startTime")) or 0.0,
                                 _meta(j).get("name", "")))  # fmt: skip
        doomed += done[: max(0, len(done) - limit)]
    return tuple(doomed)


@attrs.frozen
class Observation:
    """What the CronJob's Jobs say (the first part of syncCronJob): the ``status``
    with finished Jobs gone from active and lastSuccessfulTime, the ``events``, Jobs
    it controls but does not list (``unexpected``; the actor re-reads the CronJob
    before believing that), and the references of listed Jobs the informer lacks
    (``missing``; gone only if a live read says so)."""

    status: dict
    events: tuple[Event, ...]
    unexpected: tuple[dict, ...]
    missing: tuple[dict, ...]


def observe(cronjob: Mapping[str, Any], jobs: Sequence[dict]) -> Observation:
    """The CronJob's status as its Jobs (those it controls) leave it."""
    status = dict(_status(cronjob))
    events: list[Event] = []
    unexpected = []
    for job in jobs:
        uid, name = _meta(job).get("uid"), _meta(job).get("name", "")
        listed = any(r.get("uid") == uid for r in status.get("active") or ())
        finished = finished_condition(job)
        if not listed and finished is None:
            unexpected.append(job)
            events.append(("Warning", "UnexpectedJob",
                           f"Saw a job that the controller did not create or forgot: {name}"))
        elif listed and finished is not None:
            status = without_active(status, uid)
            events.append(("Normal", "SawCompletedJob",
                           f"Saw completed job: {name}, condition: {finished}"))  # fmt: skip
        elif finished == "Complete":
            completed = _status(job).get("completionTime")
            last = parse_rfc3339(status.get("lastSuccessfulTime"))
            if completed and (last is None or (parse_rfc3339(completed) or 0) > last):
                status["lastSuccessfulTime"] = completed
    children = {_meta(j).get("uid") for j in jobs}
    missing = tuple(r for r in status.get("active") or () if r.get("uid") not in children)
    return Observation(status, tuple(events), tuple(unexpected), missing)


@attrs.frozen
class Plan:
    """What the rest of syncCronJob decides at ``now``: start the run at
    ``scheduled`` (None: nothing to start) after deleting the ``replace``d active Jobs;
    the ``events``; ``requeue_after`` seconds when nothing starts (None: not at all:
    a schedule that cannot run, a suspended or deleted CronJob)."""

    scheduled: float | None = None
    replace: tuple[dict, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    schedule: Schedule | None = None


def plan(cronjob: Mapping[str, Any], now: float) -> Plan:
    """Whether a run starts now (see the module rules); ``cronjob`` carries the status
    ``observe`` left."""
    spec, status = _spec(cronjob), _status(cronjob)
    if _meta(cronjob).get("deletionTimestamp"):
        return Plan()
    zone = spec.get("timeZone")
    if zone is not None:
        try:
            load_zone(zone)
        except ScheduleError as e:
            problem = f'invalid timeZone: "{zone}": {e}'
            return Plan(events=(("Warning", "UnknownTimeZone", problem),))
    if spec.get("suspend"):
        return Plan()
    text = str(spec.get("schedule") or "")
    events: list[Event] = []
    if "TZ" in text:
        events.append(("Warning", "UnsupportedSchedule",
                       f'CRON_TZ or TZ used in schedule "{text}" is not officially supported, '
                       "see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/"
                       " for more details"))  # fmt: skip
    try:
        schedule = schedule_of(cronjob)
    except ScheduleError as e:
        events.append(("Warning", "UnparseableSchedule", f'unparseable schedule: "{text}" : {e}'))
        return Plan(events=tuple(events))
    try:
        _, scheduled, missed = most_recent_schedule_time(cronjob, now, schedule, deadline=True)
    except ScheduleError as e:
        events.append(("Warning", "InvalidSchedule", f"invalid schedule: {text} : {e}"))
        return Plan(events=tuple(events))
    if scheduled is not None and missed > TOO_MANY_MISSED:
        events.append(("Warning", "TooManyMissedTimes",
                       f"too many missed start times: {missed}. Set or decrease "
                       ".spec.startingDeadlineSeconds or check clock skew"))  # fmt: skip
    wait = Plan(events=tuple(events), requeue_after=next_run_in(cronjob, now, schedule))
    if scheduled is None:
        return wait
    active = tuple(status.get("active") or ())
    name = job_name(cronjob, scheduled)
    if (any(r.get("name") == name for r in active)
            or parse_rfc3339(status.get("lastScheduleTime")) == scheduled):  # fmt: skip
        return wait  # this run started already
    if spec.get("concurrencyPolicy") == "Forbid" and active:
        return attrs.evolve(wait, events=(*events, (
            "Normal", "JobAlreadyActive",
            "Not starting job because prior execution is running and concurrency policy is "
            "Forbid")))  # fmt: skip
    replace = active if spec.get("concurrencyPolicy") == "Replace" else ()
    return Plan(scheduled=scheduled, replace=replace, events=tuple(events), schedule=schedule)


def started(status: Mapping[str, Any], job: Mapping[str, Any], scheduled: float) -> dict:
    """The status once the run at ``scheduled`` started ``job``."""
    active = [*(status.get("active") or ()), job_reference(job)]
    return {**status, "active": active, "lastScheduleTime": rfc3339(scheduled)}
