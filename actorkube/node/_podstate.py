"""What the kubelet must do next for one pod: the pure core of a pod sync (the
kubelet's computePodActions and ShouldContainerBeRestarted).

Rules of this file:

- Input: the pod (the API object), what the runtime has for it (``PodRuntime``: its
  sandboxes and containers, found by the kubelet's labels) and the probe results of
  its containers. Output: ``PodActions``. Nothing here does I/O or reads a clock.
- The sandbox first. No sandbox, a sandbox that is not ready or has no IP, or more
  than one ready sandbox: kill the pod and make a new sandbox, attempt + 1. Then
  everything starts again: the init containers from the first, then the app
  containers. Under ``restartPolicy: Never`` a pod whose sandbox died after its
  containers ran gets no new sandbox; under ``OnFailure`` the app containers that
  succeeded are not run again.
- Init containers run one at a time, in order, each to success before the next, in
  each sandbox (those of an old sandbox count for nothing). A failed one is run again
  unless the policy is ``Never``: then the pod is killed (and its phase is Failed).
- App containers: one that is not running is started if it should be restarted:
  never started, ``Always``, or ``OnFailure`` after a non-zero exit; never once the
  pod is being deleted. A running one is killed (and restarted if the policy allows)
  when its spec changed (its hash), its liveness probe failed, or its startup probe
  failed. No container running and nothing to start: kill the pod.
- Crash-loop backoff is not decided here: the kubelet holds each start back by its
  backoff (``Backoff``) when it carries the actions out.
"""

from __future__ import annotations

import json
import operator
import zlib
from collections.abc import Mapping
from typing import Any

import attrs

from .runtime import ContainerState, ContainerStatus, SandboxState, SandboxStatus

# Labels and annotations the kubelet puts on what it creates (Kubernetes' names), and
# the one that says which kubelet made it.
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
RESTART_COUNT = "io.kubernetes.container.restartCount"
NODE = "kubelet.actorkube.io/node"
INIT = "kubelet.actorkube.io/init"

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"


def container_hash(container: Mapping[str, Any]) -> str:
    """A container spec's hash (resources left out: they may change in place)."""
    spec = {k: v for k, v in container.items() if k != "resources"}
    return format(zlib.crc32(json.dumps(spec, sort_keys=True).encode()), "08x")


def restart_policy(pod: Mapping[str, Any]) -> str:
    return (pod.get("spec") or {}).get("restartPolicy") or "Always"


# Every field of a status, as one tuple (see ``PodRuntime.__eq__``).
_SANDBOX_FIELDS = operator.attrgetter(*attrs.fields_dict(SandboxStatus))
_CONTAINER_FIELDS = operator.attrgetter(*attrs.fields_dict(ContainerStatus))


@attrs.frozen(eq=False)
class PodRuntime:
    """What the runtime has for one pod: sandboxes and containers, newest first. Two
    are equal when their sandboxes and containers are, field by field."""

    sandboxes: tuple[SandboxStatus, ...] = ()
    containers: tuple[ContainerStatus, ...] = ()

    def __eq__(self, other: object) -> bool:
        # attrs' __eq__ compares nested attrs values field by field even when they are
        # one object: every resync of a settled pod compared each container's config
        # (command, env, mounts, labels) with itself. Tuples of the fields compare one
        # object as equal without looking into it.
        if other.__class__ is not PodRuntime:
            return NotImplemented
        return (list(map(_SANDBOX_FIELDS, self.sandboxes))
                == list(map(_SANDBOX_FIELDS, other.sandboxes))
                and list(map(_CONTAINER_FIELDS, self.containers))
                == list(map(_CONTAINER_FIELDS, other.containers)))  # fmt: skip

    @classmethod
    def of(cls, sandboxes: list[SandboxStatus], containers: list[ContainerStatus]) -> PodRuntime:
        return cls(
            tuple(sorted(sandboxes, key=lambda s: (-s.config.attempt, -s.created_at))),
            tuple(sorted(containers, key=lambda c: (-c.config.attempt, -c.created_at))),
        )

    def latest(self, name: str) -> ContainerStatus | None:
        """The newest container of ``name``."""
        for c in self.containers:
            if c.name == name:
                return c
        return None

    def previous(self, name: str) -> ContainerStatus | None:
        """The one before the newest, if any (``lastState``, ``kubectl logs -p``)."""
        seen = False
        for c in self.containers:
            if c.name == name:
                if seen:
                    return c
                seen = True
        return None

    def running(self) -> list[ContainerStatus]:
        return [c for c in self.containers if c.state is ContainerState.RUNNING]

    @property
    def sandbox(self) -> SandboxStatus | None:
        return self.sandboxes[0] if self.sandboxes else None


@attrs.frozen
class Kill:
    container_id: str
    name: str
    message: str
    reason: str = ""


@attrs.frozen
class PodActions:
    """What a sync does, in order: kill the pod (every container, then the sandbox),
    make a sandbox (``attempt``), kill ``kill``, start ``next_init`` or ``start``."""

    kill_pod: bool = False
    create_sandbox: bool = False
    sandbox_id: str = ""
    attempt: int = 0
    next_init: str = ""
    start: tuple[str, ...] = ()
    kill: tuple[Kill, ...] = ()

    @property
    def none(self) -> bool:
        """Nothing to do: the pod's sandbox and containers stay as they are."""
        return not (self.kill_pod or self.create_sandbox or self.next_init or self.start
                    or self.kill)  # fmt: skip


def _names(pod: Mapping[str, Any], field: str) -> list[Mapping[str, Any]]:
    return [c for c in (pod.get("spec") or {}).get(field) or () if isinstance(c, dict)]


def succeeded(status: ContainerStatus | None) -> bool:
    return (
        status is not None and status.state is ContainerState.EXITED and status.exit_code == 0
    )


def should_restart(pod: Mapping[str, Any], name: str, runtime: PodRuntime) -> bool:
    """Kubernetes' ShouldContainerBeRestarted for the app container ``name``."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = runtime.latest(name)
    if status is None or status.state in (ContainerState.CREATED, ContainerState.UNKNOWN):
        return True
    if status.state is ContainerState.RUNNING:
        return False
    policy = restart_policy(pod)
    if policy == "Never":
        return False
    return not (policy == "OnFailure" and status.exit_code == 0)


def sandbox_changed(runtime: PodRuntime) -> tuple[bool, int, str]:
    """(must make a new sandbox, its attempt, the current sandbox's id)."""
    if not runtime.sandboxes:
        return True, 0, ""
    ready = [s for s in runtime.sandboxes if s.state is SandboxState.READY]
    latest = runtime.sandboxes[0]
    if len(ready) > 1 or latest.state is not SandboxState.READY or not latest.ip:
        return True, latest.config.attempt + 1, latest.id
    return False, latest.config.attempt, latest.id


def next_init_container(
    pod: Mapping[str, Any], runtime: PodRuntime
) -> tuple[ContainerStatus | None, str, bool]:
    """(the last init container's status, the next one to run, all done): the
    kubelet's findNextInitContainerToRun."""
    inits = _names(pod, "initContainers")
    if not inits:
        return None, "", True
    # The last init container that ran in the current sandbox decides what is next: a
    # new sandbox runs them all again (the kubelet purges the old ones).
    sandbox = runtime.sandbox
    current = sandbox.id if sandbox is not None else ""
    for i in range(len(inits) - 1, -1, -1):
        status = runtime.latest(inits[i]["name"])
        if status is not None and status.sandbox_id != current:
            status = None
        if status is None:
            continue
        if status.state is ContainerState.RUNNING:
            return status, "", False
        if succeeded(status):
            if i == len(inits) - 1:
                return None, "", True
            return status, inits[i + 1]["name"], False
        return status, inits[i]["name"], False  # failed (or unknown): run it again
    return None, inits[0]["name"], False


def compute_actions(
    pod: Mapping[str, Any],
    runtime: PodRuntime,
    probes: Mapping[str, Mapping[str, bool]] | None = None,
) -> PodActions:
    """What to do for ``pod`` now (see the module rules). ``probes`` maps a container
    id to its probe results by kind (``liveness``/``startup``: False means failed)."""
    probes = probes or {}
    policy = restart_policy(pod)
    apps = _names(pod, "containers")
    new_sandbox, attempt, sandbox_id = sandbox_changed(runtime)
    if new_sandbox:
        if policy == "Never" and attempt != 0 and runtime.containers:
            return PodActions(kill_pod=True, sandbox_id=sandbox_id, attempt=attempt)
        start = tuple(
            c["name"]
            for c in apps
            if not (policy == "OnFailure" and succeeded(runtime.latest(c["name"])))
        )
        if not start:
            return PodActions(kill_pod=True, sandbox_id=sandbox_id, attempt=attempt)
        inits = _names(pod, "initContainers")
        return PodActions(
            kill_pod=True,
            create_sandbox=True,
            sandbox_id=sandbox_id,
            attempt=attempt,
            next_init=inits[0]["name"] if inits else "",
            start=() if inits else start,
        )
    last, following, done = next_init_container(pod, runtime)
    if not done:
        failed = last is not None and last.state is ContainerState.EXITED and last.exit_code != 0
        if failed and policy == "Never":
            return PodActions(kill_pod=True, sandbox_id=sandbox_id, attempt=attempt)
        return PodActions(sandbox_id=sandbox_id, attempt=attempt, next_init=following)
    start: list[str] = []
    kill: list[Kill] = []
    keep = 0
    for container in apps:
        name = container["name"]
        status = runtime.latest(name)
        if status is None or status.state is not ContainerState.RUNNING:
            if should_restart(pod, name, runtime):
                start.append(name)
                if status is not None and status.state is ContainerState.UNKNOWN:
                    kill.append(Kill(status.id, name, "Container is in unknown state"))
            continue
        restart = policy != "Never"
        results = probes.get(status.id, {})
        if status.labels.get(CONTAINER_HASH) not in (None, container_hash(container)):
            message, reason, restart = f"Container {name} definition changed", "", True
        elif results.get(LIVENESS) is False:
            message, reason = f"Container {name} failed liveness probe", "Unhealthy"
        elif results.get(STARTUP) is False:
            message, reason = f"Container {name} failed startup probe", "Unhealthy"
        else:
            keep += 1
            continue
        if restart:
            message += ", will be restarted"
            start.append(name)
        kill.append(Kill(status.id, name, message, reason))
    if keep == 0 and not start:
        return PodActions(kill_pod=True, sandbox_id=sandbox_id, attempt=attempt, kill=tuple(kill))
    return PodActions(
        sandbox_id=sandbox_id, attempt=attempt, start=tuple(start), kill=tuple(kill)
    )
