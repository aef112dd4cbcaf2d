"""The status a kubelet writes for a pod, computed from what the runtime has (the
kubelet's generateAPIPodStatus, getPhase and convertToAPIContainerStatuses).

Rules of this file:

- Pure: the pod, its ``PodRuntime``, probe results, the reasons the kubelet recorded
  for containers it could not start, and the time in; the new ``status`` out.
- Phase, as Kubernetes' getPhase: Pending while an init container has not succeeded
  or an app container waits to be started for the first time; Running once every app
  container has started and one runs (or, under ``Always``/``OnFailure``, while they
  are being restarted); Succeeded when all exited 0 and none will be restarted; Failed
  when one failed and none will be restarted, or an init container failed under
  ``Never``. A terminal phase is never left.
- Container statuses: ``state`` is the newest container's (running, terminated) or
  waiting: ``ContainerCreating``/``PodInitializing`` before it exists, or the reason
  recorded for it (``CrashLoopBackOff``, ``ErrImagePull``, ``ImagePullBackOff``,
  ``CreateContainerError``, ...). ``lastState`` is the container before it;
  ``restartCount`` its attempt. ``started``: running and its startup probe (if any)
  succeeded; ``ready``: started and its readiness probe (if any) succeeded.
- Conditions the kubelet owns (PodReadyToStartContainers, Initialized,
  ContainersReady, Ready) are computed; every other condition (PodScheduled,
  DisruptionTarget, readiness gates' own) is kept. Ready also needs every readiness
  gate's condition True (else ReadinessGatesNotReady). The reason and message of the
  phase stay while the phase does. ``lastTransitionTime`` changes only
  when a condition's status does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from actorkube.apiserver._meta import rfc3339

from ._podstate import PodRuntime, restart_policy, succeeded
from .runtime import ContainerState, ContainerStatus, SandboxState

OWNED = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
TERMINAL = ("Succeeded", "Failed")


def _terminated(c: ContainerStatus, runtime_name: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "exitCode": c.exit_code,
        "reason": c.reason or ("Completed" if c.exit_code == 0 else "Error"),
        "startedAt": rfc3339(c.started_at) if c.started_at else None,
        "finishedAt": rfc3339(c.finished_at) if c.finished_at else None,
        "containerID": f"{runtime_name}://{c.id}",
    }
    if c.message:
        out["message"] = c.message
    return out


def _state(c: ContainerStatus | None, runtime_name: str) -> dict[str, Any]:
    if c is None:
        return {}
    if c.state is ContainerState.RUNNING:
        return {"running": {"startedAt": rfc3339(c.started_at)}}
    if c.state is ContainerState.EXITED:
        return {"terminated": _terminated(c, runtime_name)}
    return {"waiting": {"reason": "ContainerCreating"}}


def container_statuses(
    pod: Mapping[str, Any],
    field: str,
    runtime: PodRuntime,
    *,
    runtime_name: str,
    ready: Mapping[str, bool],
    started: Mapping[str, bool],
    reasons: Mapping[str, tuple[str, str]],
    initializing: bool,
) -> list[dict[str, Any]]:
    """The statuses of the containers of ``field`` (``containers`` or
    ``initContainers``), in spec order."""
    out = []
    for spec in (pod.get("spec") or {}).get(field) or ():
        name = spec["name"]
        latest = runtime.latest(name)
        previous = runtime.previous(name)
        status: dict[str, Any] = {
            "name": name,
            "image": spec.get("image", ""),
            "imageID": "",
            "ready": False,
            "restartCount": latest.config.attempt if latest else 0,
            "started": False,
            "state": {},
            "lastState": {},
        }
        if latest is not None:
            status["containerID"] = f"{runtime_name}://{latest.id}"
            status["imageID"] = latest.image_ref
        running = latest is not None and latest.state is ContainerState.RUNNING
        if field == "initContainers":
            # An init container is ready once it has completed (Kubernetes' rule).
            status["started"] = running
            status["ready"] = succeeded(latest)
        elif running:
            status["started"] = started.get(latest.id, True)
            status["ready"] = status["started"] and ready.get(latest.id, True)
        reason = reasons.get(name)
        if reason is not None and not running:
            status["state"] = {"waiting": {"reason": reason[0], "message": reason[1]}}
            # The last termination: the newest container's if it exited, else the one
            # before it.
            exited = latest.state is ContainerState.EXITED if latest is not None else False
            status["lastState"] = _state(latest if exited else previous, runtime_name)
        elif latest is None:
            waiting = "PodInitializing" if initializing or field == "initContainers" else (
                "ContainerCreating"
            )
            status["state"] = {"waiting": {"reason": waiting}}
        else:
            status["state"] = _state(latest, runtime_name)
            status["lastState"] = _state(previous, runtime_name)
        out.append(status)
    return out


def phase(pod: Mapping[str, Any], init: list[dict], apps: list[dict],
          terminal: bool = False) -> str:  # fmt: skip
    """Kubernetes' getPhase over computed container statuses. ``terminal``: the kubelet
    stopped the pod for good (it is being deleted): once nothing runs, it ends
    Succeeded if every container exited 0, else Failed."""
    old = (pod.get("status") or {}).get("phase")
    if old in TERMINAL:
        return old
    policy = restart_policy(pod)
    pending_init = failed_init = 0
    for s in init:
        state = s["state"]
        if "terminated" in state:
            failed_init += state["terminated"]["exitCode"] != 0
        elif "waiting" in state and "terminated" in s["lastState"]:
            failed_init += s["lastState"]["terminated"]["exitCode"] != 0
        else:
            pending_init += 1
    unknown = running = waiting = stopped = ok = 0
    for s in apps:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            ok += state["terminated"]["exitCode"] == 0
        elif "waiting" in state:
            if "terminated" in s["lastState"]:
                stopped += 1
            else:
                waiting += 1
        else:
            unknown += 1
    if failed_init and policy == "Never":
        return "Failed"
    started_any = any(s["restartCount"] or s.get("containerID") for s in apps)
    if (pending_init and not started_any) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if terminal and not running:
        return "Succeeded" if stopped == ok and not waiting else "Failed"
    if not running and stopped and not unknown:
        if policy == "Always":
            return "Running"
        if stopped == ok:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def qos_class(pod: Mapping[str, Any]) -> str:
    """Guaranteed, Burstable or BestEffort (Kubernetes' GetPodQOS)."""
    containers = [
        c
        for field in ("containers", "initContainers")
        for c in (pod.get("spec") or {}).get(field) or ()
    ]
    requests = [(c.get("resources") or {}).get("requests") or {} for c in containers]
    limits = [(c.get("resources") or {}).get("limits") or {} for c in containers]
    if not any(requests) and not any(limits):
        return "BestEffort"
    for req, lim in zip(requests, limits, strict=True):
        for name in ("cpu", "memory"):
            if name not in lim or str(req.get(name, lim[name])) != str(lim[name]):
                return "Burstable"
    return "Guaranteed"


def _condition(
    old: Mapping[str, Mapping], kind: str, ok: bool, now: float, reason: str = "",
    message: str = "",
) -> dict[str, Any]:  # fmt: skip
    status = "True" if ok else "False"
    before = old.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    out: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastTransitionTime": since or rfc3339(now),
    }
    if not ok and reason:
        out["reason"] = reason
        if message:
            out["message"] = message
    return out


def pod_status(
    pod: Mapping[str, Any],
    runtime: PodRuntime,
    *,
    runtime_name: str,
    host_ip: str,
    now: float,
    ready: Mapping[str, bool] | None = None,
    started: Mapping[str, bool] | None = None,
    reasons: Mapping[str, tuple[str, str]] | None = None,
    terminal: bool = False,
) -> dict[str, Any]:
    """The pod's new ``status`` (see the module rules). ``ready``/``started`` map a
    container id to its readiness/startup probe's latest result (absent: the
    container has no such probe); ``reasons`` a container name to (reason, message)
    of its last failed start; ``terminal``: the pod was stopped for good."""
    old = pod.get("status") or {}
    ready, started, reasons = ready or {}, started or {}, reasons or {}
    kw = dict(runtime_name=runtime_name, ready=ready, started=started, reasons=reasons)
    init = container_statuses(pod, "initContainers", runtime, initializing=True, **kw)
    inits_done = all(
        "terminated" in s["state"] and s["state"]["terminated"]["exitCode"] == 0 for s in init
    ) or all(succeeded(runtime.latest(s["name"])) for s in init)
    apps = container_statuses(pod, "containers", runtime, initializing=not inits_done, **kw)
    new_phase = phase(pod, init, apps, terminal)
    sandbox = runtime.sandbox
    ip = sandbox.ip if sandbox is not None and sandbox.state is SandboxState.READY else ""
    ip = ip or old.get("podIP", "")
    conditions_before = {c.get("type"): c for c in old.get("conditions") or () if c}
    conditions = [c for c in old.get("conditions") or () if c and c.get("type") not in OWNED]
    sandbox_ready = sandbox is not None and sandbox.state is SandboxState.READY
    conditions.append(
        _condition(conditions_before, "PodReadyToStartContainers", sandbox_ready, now)
    )
    waiting_init = [s["name"] for s in init if not _init_ok(s)]
    incomplete = f"containers with incomplete status: [{' '.join(waiting_init)}]"
    conditions.append(
        _condition(conditions_before, "Initialized", inits_done or not waiting_init, now,
                   "ContainersNotInitialized", incomplete)
    )  # fmt: skip
    unready = [s["name"] for s in apps if not s["ready"]]
    if new_phase in TERMINAL:
        reason, message = "PodCompleted", ""
    else:
        reason = "ContainersNotReady"
        message = f"containers with unready status: [{' '.join(unready)}]"
    all_ready = not unready and new_phase not in TERMINAL
    conditions.append(
        _condition(conditions_before, "ContainersReady", all_ready, now, reason, message)
    )
    gates = _unready_gates(pod, conditions_before)
    if all_ready and gates:
        reason, message = "ReadinessGatesNotReady", "; ".join(gates)
    conditions.append(
        _condition(conditions_before, "Ready", all_ready and not gates, now, reason, message)
    )
    status: dict[str, Any] = {
        "phase": new_phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}] if host_ip else [],
        "startTime": old.get("startTime") or rfc3339(now),
        "qosClass": old.get("qosClass") or qos_class(pod),
        "containerStatuses": apps,
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    if new_phase == old.get("phase"):
        # The reason and message that came with the phase (an admission's OutOfcpu)
        # stay as long as the phase does.
        for key in ("reason", "message"):
            if old.get(key):
                status[key] = old[key]
    if init:
        status["initContainerStatuses"] = init
    return status


def _unready_gates(pod: Mapping[str, Any], conditions: Mapping[str, Mapping]) -> list[str]:
    """Why the pod's readiness gates hold it back (Kubernetes' wording), if they do."""
    out = []
    for gate in (pod.get("spec") or {}).get("readinessGates") or ():
        kind = (gate or {}).get("conditionType", "")
        condition = conditions.get(kind)
        if condition is None:
            out.append(f'corresponding condition of pod readiness gate "{kind}" does not exist.')
        elif condition.get("status") != "True":
            out.append(f'the status of pod readiness gate "{kind}" is not "True", but '
                       f'{condition.get("status")}')  # fmt: skip
    return out


def _init_ok(s: Mapping[str, Any]) -> bool:
    term = s["state"].get("terminated")
    return term is not None and term["exitCode"] == 0
