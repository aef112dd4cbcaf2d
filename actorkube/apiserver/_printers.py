"""Server-side printing: objects as a ``meta.k8s.io/v1`` Table, the columns ``kubectl
get`` shows (``-o wide`` adds the columns of priority 1).

Rules of this file:

- Columns and cells are Kubernetes' own (pkg/printers/internalversion/printers.go) for
  the built-in resources, a subset where a cell needs what this cluster does not keep
  yet (a pod's restart times, a service's load balancer ingress names); resources
  without a printer get Kubernetes' default: Name and Created At.
- Ages are ``HumanDuration`` (k8s.io/apimachinery/pkg/util/duration): "45s", "3m20s",
  "5h", "12d".
- Each row carries its object as PartialObjectMetadata (the default
  ``includeObject=Metadata``), which kubectl uses for ``--show-labels``, ``-L`` and
  sorting.
- Pure functions of the objects and the time now.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

Cell = Callable[[dict, float], object]
_NONE = "<none>"


def human_duration(seconds: float) -> str:
    """Kubernetes' HumanDuration: about two significant figures."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _since(timestamp: str | None, now: float) -> str:
    if not timestamp:
        return "<unknown>"
    then = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
    return human_duration(now - then)


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def _name(obj: dict, now: float) -> str:
    return _meta(obj).get("name", "")


def _age(obj: dict, now: float) -> str:
    return _since(_meta(obj).get("creationTimestamp"), now)


def _or_none(value: object) -> object:
    return value if value not in (None, "", []) else _NONE


def _at(path: str) -> Cell:
    """A cell that is the value at a dotted path of the object, or <none>."""
    keys = path.split(".")

    def cell(obj: dict, now: float) -> object:
        value: object = obj
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return _or_none(value)

    return cell


def _count(path: str) -> Cell:
    def cell(obj: dict, now: float) -> int:
        return len(obj.get(path) or {})

    return cell


def _selector(match: dict | None) -> str:
    labels = (match or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or _NONE


def _template_containers(obj: dict) -> list[dict]:
    return (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
        "containers"
    ) or []


def _containers(obj: dict, now: float) -> str:
    return ",".join(c.get("name", "") for c in _template_containers(obj)) or _NONE


def _images(obj: dict, now: float) -> str:
    return ",".join(c.get("image", "") for c in _template_containers(obj)) or _NONE


def _workload_selector(obj: dict, now: float) -> str:
    return _selector((obj.get("spec") or {}).get("selector"))


def _status_int(key: str) -> Cell:
    def cell(obj: dict, now: float) -> int:
        return int((obj.get("status") or {}).get(key) or 0)

    return cell


# --- pods -----------------------------------------------------------------------------


def _pod_ready(pod: dict, now: float) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return f"{sum(1 for s in statuses if s.get('ready'))}/{len(containers)}"


def _pod_status(pod: dict, now: float) -> str:
    """What kubectl prints as a pod's status: the phase, or the reason that best
    explains it (a waiting or terminated container, Terminating)."""
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for init in status.get("initContainerStatuses") or []:
        state = init.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode", 0) == 0:
            continue
        if terminated:
            reason = "Init:" + (terminated.get("reason") or f"ExitCode:{terminated['exitCode']}")
        elif waiting and waiting.get("reason") not in (None, "", "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            total = len((pod.get("spec") or {}).get("initContainers") or [])
            done = sum(
                1
                for s in status.get("initContainerStatuses") or []
                if ((s.get("state") or {}).get("terminated") or {}).get("exitCode") == 0
            )
            reason = f"Init:{done}/{total}"
        break
    else:
        running = False
        for container in reversed(status.get("containerStatuses") or []):
            state = container.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated:
                reason = terminated.get("reason") or f"ExitCode:{terminated.get('exitCode', 0)}"
            elif state.get("running") and container.get("ready"):
                running = True
        if reason == "Completed" and running:
            reason = "Running"
    if _meta(pod).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_restarts(pod: dict, now: float) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


# --- nodes ----------------------------------------------------------------------------


def _node_status(node: dict, now: float) -> str:
    conditions = (node.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    states = ["Unknown"]
    if ready is not None:
        states = ["Ready" if ready.get("status") == "True" else "NotReady"]
        if ready.get("status") == "Unknown":
            states = ["Unknown"]
    if (node.get("spec") or {}).get("unschedulable"):
        states.append("SchedulingDisabled")
    return ",".join(states)


def _node_roles(node: dict, now: float) -> str:
    labels = _meta(node).get("labels") or {}
    roles = sorted(
        k.split("/", 1)[1]
        for k in labels
        if k.startswith("node-role.kubernetes.io/") and "/" in k and k.split("/", 1)[1]
    )
    return ",".join(roles) or _NONE


def _node_address(kind: str) -> Cell:
    def cell(node: dict, now: float) -> str:
        for address in (node.get("status") or {}).get("addresses") or []:
            if address.get("type") == kind:
                return address.get("address", _NONE)
        return _NONE

    return cell


# --- services and endpoints -----------------------------------------------------------


def _service_external_ip(svc: dict, now: float) -> str:
    spec = svc.get("spec") or {}
    ips = list(spec.get("externalIPs") or [])
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    ips += [i.get("ip") or i.get("hostname") for i in ingress]
    if ips:
        return ",".join(ips)
    if spec.get("type") == "LoadBalancer":
        return "<pending>"
    if spec.get("type") == "ExternalName":
        return spec.get("externalName", _NONE)
    return _NONE


def _service_ports(svc: dict, now: float) -> str:
    ports = []
    for port in (svc.get("spec") or {}).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or _NONE


def _service_selector(svc: dict, now: float) -> str:
    selector = (svc.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or _NONE


def _endpoints(ep: dict, now: float) -> str:
    shown = []
    for subset in ep.get("subsets") or []:
        for address in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                ip = address.get("ip", "")
                shown.append(f"{ip}:{port['port']}" if "port" in port else ip)
    if not shown:
        return _NONE
    more = len(shown) - 3
    return ",".join(shown[:3]) + (f" + {more} more..." if more > 0 else "")


def _slice_ports(eps: dict, now: float) -> str:
    ports = [str(p.get("port")) for p in eps.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or _NONE


def _slice_endpoints(eps: dict, now: float) -> str:
    addresses = [a for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return _NONE
    more = len(addresses) - 3
    return ",".join(addresses[:3]) + (f" + {more} more..." if more > 0 else "")


# --- workloads, rbac, events ---------------------------------------------------------


def _deployment_ready(d: dict, now: float) -> str:
    ready = int((d.get("status") or {}).get("readyReplicas") or 0)
    return f"{ready}/{int((d.get('spec') or {}).get('replicas', 1))}"


def _spec_int(key: str, default: int = 0) -> Cell:
    def cell(obj: dict, now: float) -> int:
        return int((obj.get("spec") or {}).get(key, default))

    return cell


def _int_or_na(key: str) -> Cell:
    """A count or percentage of the spec, N/A when unset (a PDB's bounds)."""

    def cell(obj: dict, now: float) -> str:
        value = (obj.get("spec") or {}).get(key)
        return "N/A" if value is None else str(value)

    return cell


def _daemonset_node_selector(ds: dict, now: float) -> str:
    spec = (((ds.get("spec") or {}).get("template") or {}).get("spec")) or {}
    selector = spec.get("nodeSelector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or _NONE


def _role_ref(binding: dict, now: float) -> str:
    ref = binding.get("roleRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _subjects(kind: str) -> Cell:
    def cell(binding: dict, now: float) -> str:
        names = []
        for s in binding.get("subjects") or []:
            if s.get("kind") == kind:
                prefix = (
                    f"{s['namespace']}/" if kind == "ServiceAccount" and s.get("namespace") else ""
                )
                names.append(prefix + s.get("name", ""))
        return ", ".join(names)

    return cell


def _created_at(obj: dict, now: float) -> str:
    return _meta(obj).get("creationTimestamp", "")


def _event_last_seen(event: dict, now: float) -> str:
    stamp = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or _meta(event).get("creationTimestamp")
    )
    return _since(stamp, now)


def _event_object(event: dict, now: float) -> str:
    involved = event.get("involvedObject") or {}
    return f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}"


# --- batch, autoscaling ----------------------------------------------------------------


def _condition_true(obj: dict, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or ())  # fmt: skip


def _job_status(job: dict, now: float) -> str:
    """printJob's Status: the terminal condition, else Terminating, Suspended, the
    interim conditions, else Running."""
    for kind in ("Complete", "Failed"):
        if _condition_true(job, kind):
            return kind
    if _meta(job).get("deletionTimestamp"):
        return "Terminating"
    for kind in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _condition_true(job, kind):
            return kind
    return "Running"


def _job_completions(job: dict, now: float) -> str:
    spec, succeeded = job.get("spec") or {}, int((job.get("status") or {}).get("succeeded") or 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = int(spec.get("parallelism") or 0)
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _job_duration(job: dict, now: float) -> str:
    status = job.get("status") or {}
    if not status.get("startTime"):
        return ""
    end = _stamp(status["completionTime"]) if status.get("completionTime") else now
    return human_duration(end - _stamp(status["startTime"]))


def _job_template(cron: dict) -> dict:
    return ((cron.get("spec") or {}).get("jobTemplate")) or {}


def _cron_last_schedule(cron: dict, now: float) -> str:
    last = (cron.get("status") or {}).get("lastScheduleTime")
    return _since(last, now) if last else _NONE


def _cron_suspend(cron: dict, now: float) -> str:
    suspend = (cron.get("spec") or {}).get("suspend")
    return "<unset>" if suspend is None else str(bool(suspend))


def _hpa_reference(hpa: dict, now: float) -> str:
    ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _hpa_metric(spec: dict, status: dict) -> str:
    """One metric of formatHPAMetrics: current/target (a resource named first)."""
    kind = spec.get("type", "")
    field = kind[:1].lower() + kind[1:]
    source, current = spec.get(field) or {}, (status.get(field) or {}).get("current") or {}
    target = source.get("target") or {}
    prefix = f"{source['name']}: " if kind in ("Resource", "ContainerResource") else ""
    if target.get("averageUtilization") is not None or target.get("type") == "Utilization":
        now_ = current.get("averageUtilization")
        goal = target.get("averageUtilization")
        return (f"{prefix}{'<unknown>' if now_ is None else f'{now_}%'}/"
                f"{'<auto>' if goal is None else f'{goal}%'}")  # fmt: skip
    key = "averageValue" if target.get("averageValue") is not None else "value"
    return f"{prefix}{current.get(key, '<unknown>')}/{target.get(key, '<unknown>')}"


def _hpa_targets(hpa: dict, now: float) -> str:
    specs = (hpa.get("spec") or {}).get("metrics") or []
    statuses = (hpa.get("status") or {}).get("currentMetrics") or []
    if not specs:
        return _NONE
    cells = [_hpa_metric(s, statuses[i] if i < len(statuses) else {})
             for i, s in enumerate(specs)]  # fmt: skip
    shown = ", ".join(cells[:2])
    return f"{shown} + {len(cells) - 2} more..." if len(cells) > 2 else shown


def _csr_duration(csr: dict, now: float) -> str:
    seconds = (csr.get("spec") or {}).get("expirationSeconds")
    return _NONE if seconds is None else human_duration(seconds)


def _csr_condition(csr: dict, now: float) -> str:
    """extractCSRStatus: Denied, else Approved, else Pending; then ",Failed" and
    ",Issued"."""
    kinds = {c.get("type") for c in (csr.get("status") or {}).get("conditions") or ()
             if isinstance(c, dict)}  # fmt: skip
    shown = "Denied" if "Denied" in kinds else "Approved" if "Approved" in kinds else "Pending"
    if "Failed" in kinds:
        shown += ",Failed"
    if (csr.get("status") or {}).get("certificate"):
        shown += ",Issued"
    return shown


# --- the tables -------------------------------------------------------------------------

Column = tuple[str, int, Cell, str, str]  # (name, priority, cell, type, format)


def _c(name: str, cell: Cell, priority: int = 0, type_: str = "string", fmt: str = "") -> Column:
    return (name, priority, cell, type_, fmt)


_NAME = _c("Name", _name, fmt="name")
_AGE = _c("Age", _age)
_WORKLOAD_WIDE = [
    _c("Containers", _containers, 1),
    _c("Images", _images, 1),
    _c("Selector", _workload_selector, 1),
]

PRINTERS: dict[tuple[str, str], list[Column]] = {
    ("", "pods"): [
        _NAME,
        _c("Ready", _pod_ready),
        _c("Status", _pod_status),
        _c("Restarts", _pod_restarts, type_="string"),
        _AGE,
        _c("IP", _at("status.podIP"), 1),
        _c("Node", _at("spec.nodeName"), 1),
        _c("Nominated Node", _at("status.nominatedNodeName"), 1),
        _c("Readiness Gates", lambda p, now: _NONE, 1),
    ],
    ("", "namespaces"): [_NAME, _c("Status", _at("status.phase")), _AGE],
    ("", "nodes"): [
        _NAME,
        _c("Status", _node_status),
        _c("Roles", _node_roles),
        _AGE,
        _c("Version", _at("status.nodeInfo.kubeletVersion")),
        _c("Internal-IP", _node_address("InternalIP"), 1),
        _c("External-IP", _node_address("ExternalIP"), 1),
        _c("OS-Image", _at("status.nodeInfo.osImage"), 1),
        _c("Kernel-Version", _at("status.nodeInfo.kernelVersion"), 1),
        _c("Container-Runtime", _at("status.nodeInfo.containerRuntimeVersion"), 1),
    ],
    ("", "services"): [
        _NAME,
        _c("Type", _at("spec.type")),
        _c("Cluster-IP", _at("spec.clusterIP")),
        _c("External-IP", _service_external_ip),
        _c("Port(s)", _service_ports),
        _AGE,
        _c("Selector", _service_selector, 1),
    ],
    ("", "endpoints"): [_NAME, _c("Endpoints", _endpoints), _AGE],
    ("", "configmaps"): [_NAME, _c("Data", _count("data"), type_="integer"), _AGE],
    ("", "secrets"): [
        _NAME,
        _c("Type", _at("type")),
        _c("Data", _count("data"), type_="integer"),
        _AGE,
    ],
    ("", "serviceaccounts"): [_NAME, _c("Secrets", _count("secrets"), type_="integer"), _AGE],
    ("", "events"): [
        _c("Last Seen", _event_last_seen),
        _c("Type", _at("type")),
        _c("Reason", _at("reason")),
        _c("Object", _event_object),
        _c("Message", _at("message")),
    ],
    ("apps", "deployments"): [
        _NAME,
        _c("Ready", _deployment_ready),
        _c("Up-to-date", _status_int("updatedReplicas"), type_="integer"),
        _c("Available", _status_int("availableReplicas"), type_="integer"),
        _AGE,
        *_WORKLOAD_WIDE,
    ],
    ("policy", "poddisruptionbudgets"): [
        _NAME,
        _c("Min Available", _int_or_na("minAvailable")),
        _c("Max Unavailable", _int_or_na("maxUnavailable")),
        _c("Allowed Disruptions", _status_int("disruptionsAllowed"), type_="integer"),
        _AGE,
    ],
    ("apps", "replicasets"): [
        _NAME,
        _c("Desired", _spec_int("replicas", 1), type_="integer"),
        _c("Current", _status_int("replicas"), type_="integer"),
        _c("Ready", _status_int("readyReplicas"), type_="integer"),
        _AGE,
        *_WORKLOAD_WIDE,
    ],
    ("apps", "daemonsets"): [
        _NAME,
        _c("Desired", _status_int("desiredNumberScheduled"), type_="integer"),
        _c("Current", _status_int("currentNumberScheduled"), type_="integer"),
        _c("Ready", _status_int("numberReady"), type_="integer"),
        _c("Up-to-date", _status_int("updatedNumberScheduled"), type_="integer"),
        _c("Available", _status_int("numberAvailable"), type_="integer"),
        _c("Node Selector", _daemonset_node_selector),
        _AGE,
        *_WORKLOAD_WIDE,
    ],
    ("batch", "jobs"): [
        _NAME,
        _c("Status", _job_status),
        _c("Completions", _job_completions),
        _c("Duration", _job_duration),
        _AGE,
        *_WORKLOAD_WIDE,
    ],
    ("batch", "cronjobs"): [
        _NAME,
        _c("Schedule", _at("spec.schedule")),
        _c("Timezone", _at("spec.timeZone")),
        _c("Suspend", _cron_suspend, type_="boolean"),
        _c("Active", lambda cron, now: len((cron.get("status") or {}).get("active") or ()),
           type_="integer"),
        _c("Last Schedule", _cron_last_schedule),
        _AGE,
        _c("Containers", lambda cron, now: _containers(_job_template(cron), now), 1),
        _c("Images", lambda cron, now: _images(_job_template(cron), now), 1),
        _c("Selector", lambda cron, now: _workload_selector(_job_template(cron), now), 1),
    ],
    ("autoscaling", "horizontalpodautoscalers"): [
        _NAME,
        _c("Reference", _hpa_reference),
        _c("Targets", _hpa_targets),
        _c("MinPods", lambda hpa, now: str((hpa.get("spec") or {}).get("minReplicas", "<unset>"))),
        _c("MaxPods", _spec_int("maxReplicas"), type_="integer"),
        _c("Replicas", _status_int("currentReplicas"), type_="integer"),
        _AGE,
    ],
    ("certificates.k8s.io", "certificatesigningrequests"): [
        _NAME,
        _AGE,
        _c("SignerName", lambda csr, now: (csr.get("spec") or {}).get("signerName") or _NONE),
        _c("Requestor", lambda csr, now: (csr.get("spec") or {}).get("username", "")),
        _c("RequestedDuration", _csr_duration),
        _c("Condition", _csr_condition),
    ],
    ("coordination.k8s.io", "leases"): [_NAME, _c("Holder", _at("spec.holderIdentity")), _AGE],
    ("discovery.k8s.io", "endpointslices"): [
        _NAME,
        _c("AddressType", _at("addressType")),
        _c("Ports", _slice_ports),
        _c("Endpoints", _slice_endpoints),
        _AGE,
    ],
}
_ROLES = [_NAME, _c("Created At", _created_at, type_="date")]
_BINDINGS = [
    _NAME,
    _c("Role", _role_ref),
    _AGE,
    _c("Users", _subjects("User"), 1),
    _c("Groups", _subjects("Group"), 1),
    _c("ServiceAccounts", _subjects("ServiceAccount"), 1),
]
for _kind in ("roles", "clusterroles"):
    PRINTERS[("rbac.authorization.k8s.io", _kind)] = _ROLES
for _kind in ("rolebindings", "clusterrolebindings"):
    PRINTERS[("rbac.authorization.k8s.io", _kind)] = _BINDINGS
DEFAULT = [_NAME, _c("Created At", _created_at, type_="date")]


def table(group: str, resource: str, objects: Iterable[dict], now: float,
          resource_version: str = "") -> dict:  # fmt: skip
    """The ``meta.k8s.io/v1`` Table of ``objects`` of one resource, as of ``now``."""
    columns = PRINTERS.get((group, resource), DEFAULT)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": [
            {"name": name, "type": type_, "format": fmt, "description": "", "priority": priority}
            for name, priority, _, type_, fmt in columns
        ],
        "rows": [
            {
                "cells": [cell(obj, now) for _, _, cell, _, _ in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": _meta(obj),
                },
            }
            for obj in objects
        ],
    }
