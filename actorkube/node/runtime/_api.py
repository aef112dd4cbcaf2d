"""The container runtime interface: what the kubelet asks of a runtime (CRI's
RuntimeService and ImageService, in Python).

Rules of this file:

- The kubelet is the only caller. A runtime is a plain object with async methods that
  one kubelet owns, not an actor: the kubelet is the actor, and a runtime may be
  called from several of its tasks at once (one pod worker per pod, probes, log
  readers), so each method is safe to run concurrently with any other.
- Sandboxes and containers are named by ids the runtime makes. Every container and
  sandbox carries the labels and annotations the kubelet gave it, and nothing else the
  kubelet relies on: ``list_*`` with ``labels`` finds what the kubelet created (it
  never touches what it did not), and a kubelet that restarts finds its pods again
  from them.
- States follow CRI. A sandbox is ``READY`` from ``run_pod_sandbox`` until
  ``stop_pod_sandbox`` (or until it dies), then ``NOTREADY``. A container is
  ``CREATED`` after ``create_container``, ``RUNNING`` after ``start_container``, and
  ``EXITED`` once it ended for any reason (its exit code, ``reason`` such as
  ``OOMKilled`` or ``Error`` or ``Completed``, ``finished_at``), and stays so until
  removed. Stopping a sandbox stops its containers. Removing a sandbox removes its
  containers.
- ``stop_container(id, timeout)`` is graceful termination: SIGTERM (or the runtime's
  equivalent), then SIGKILL after ``timeout`` seconds; it returns once the container
  is ``EXITED``. Stopping an exited container is a no-op.
- Times are wall-clock seconds (the actor system's clock: ``WallClock.now``); delays
  inside a runtime use trio's clock, so a simulated runtime under ``MockClock`` runs
  in virtual time.
- Logs are CRI's log format, one entry per line: ``<RFC 3339 nano time> <stdout|
  stderr> <F|P> <text>\\n`` (``P`` for a partial line, continued by the next entry).
  ``read_log`` pages through them by byte offset; ``wait_log`` blocks until there is
  more past an offset or the container has exited (that is how ``kubectl logs -f``
  follows). A removed container's log is gone.
- ``exec_sync`` runs a command to its end and returns its output (exec probes);
  ``exec_stream`` starts one with its standard streams open (``ExecStream``: ``kubectl
  exec``), for the length of a context. Both need a running container (``StartError``
  otherwise).
- ``events()`` is CRI's GetContainerEvents: one channel, for the one kubelet, of every
  container's life changes, so the kubelet needs no polling (an "evented PLEG").
  Closing the runtime closes it.
- Errors: ``NotFound`` (no such id: the caller's stale view), ``ImagePullError`` (the
  image cannot be had: ErrImagePull), ``CreateContainerError`` (the config cannot be
  run: CreateContainerError / CreateContainerConfigError), ``StartError``
  (RunContainerError), ``RuntimeFailure`` (the runtime itself failed). All are
  ``CriError``s, whose ``reason`` is the word the kubelet writes into a container
  status.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

# --- errors ------------------------------------------------------------------------------


class CriError(Exception):
    """A runtime call that failed; ``reason`` is Kubernetes' word for it."""

    reason = "RuntimeError"


class NotFound(CriError):
    """No sandbox, container or image with that id: the caller's view is stale."""

    reason = "NotFound"


class ImagePullError(CriError):
    """The image cannot be pulled (unknown to the runtime, or pulling failed)."""

    reason = "ErrImagePull"


class CreateContainerError(CriError):
    """The container's config cannot be run (no command for its image, a bad mount)."""

    reason = "CreateContainerError"


class StartError(CriError):
    """The container was created but could not start (its command cannot be executed)."""

    reason = "RunContainerError"


class RuntimeFailure(CriError):
    """The runtime itself failed (out of resources, closed)."""

    reason = "RuntimeError"


# --- configs ----------------------------------------------------------------------------


@attrs.frozen
class Mount:
    """A directory or file the kubelet prepared (``host_path``), seen by the container
    at ``container_path``."""

    container_path: str
    host_path: str
    readonly: bool = False


@attrs.frozen
class Resources:
    """What the container may use (from its limits; 0: no limit). ``cpu_millis`` is
    the CPU limit in thousandths of a core, ``memory_bytes`` the memory limit;
    ``cpu_request_millis`` the request (CPU shares)."""

    cpu_millis: int = 0
    memory_bytes: int = 0
    cpu_request_millis: int = 0


@attrs.frozen
class PortMapping:
    container_port: int
    protocol: str = "TCP"
    host_port: int = 0
    host_ip: str = ""


@attrs.frozen
class PodSandboxConfig:
    """CRI's PodSandboxConfig: what the kubelet knows of the pod when it makes its
    sandbox. ``attempt`` counts the sandboxes made for this pod uid."""

    name: str
    namespace: str
    uid: str
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    port_mappings: tuple[PortMapping, ...] = ()


@attrs.frozen
class ContainerConfig:
    """CRI's ContainerConfig. ``command``/``args`` are the pod spec's (empty: the
    image's own entrypoint and arguments, which the runtime knows from its image
    catalogue); ``envs`` already holds everything the kubelet injects (POD_IP,
    service variables, downward API). ``attempt`` is the restart count."""

    name: str
    image: str
    attempt: int = 0
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str = ""
    envs: tuple[tuple[str, str], ...] = ()
    mounts: tuple[Mount, ...] = ()
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    log_path: str = ""
    resources: Resources = Resources()


# --- statuses ---------------------------------------------------------------------------


class SandboxState(enum.Enum):
    READY = "SANDBOX_READY"
    NOTREADY = "SANDBOX_NOTREADY"


class ContainerState(enum.Enum):
    CREATED = "CONTAINER_CREATED"
    RUNNING = "CONTAINER_RUNNING"
    EXITED = "CONTAINER_EXITED"
    UNKNOWN = "CONTAINER_UNKNOWN"


@attrs.frozen
class SandboxStatus:
    id: str
    config: PodSandboxConfig
    state: SandboxState
    created_at: float
    ip: str = ""

    @property
    def labels(self) -> Mapping[str, str]:
        return self.config.labels


@attrs.frozen
class ContainerStatus:
    """CRI's ContainerStatus. ``started_at``/``finished_at`` are 0 until they happen;
    ``reason`` for an exited container is ``Completed`` (exit 0), ``Error``,
    ``OOMKilled``, or what the runtime knows better."""

    id: str
    sandbox_id: str
    config: ContainerConfig
    state: ContainerState
    created_at: float
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    image_ref: str = ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def labels(self) -> Mapping[str, str]:
        return self.config.labels


@attrs.frozen
class ContainerStats:
    """What a container uses now: CPU in thousandths of a core (averaged over the
    runtime's last sample window) and working-set memory in bytes."""

    id: str
    cpu_millis: int
    memory_bytes: int
    timestamp: float


@attrs.frozen
class ExecResult:
    stdout: bytes
    stderr: bytes
    exit_code: int


class ExecStream(Protocol):
    """A command running in a container with its standard streams open (what
    ``kubectl exec`` drives; ``ContainerRuntime.exec_stream`` starts it).

    - ``write`` gives bytes to its stdin (dropped when it was started without stdin,
      or once it closed its stdin); ``close_stdin`` ends its input (EOF). With a
      terminal, stdin, stdout and stderr are the terminal: closing does nothing (the
      end of a terminal's input is a ^D it reads), stderr is always empty, and
      ``resize`` sets its size.
    - ``read_stdout`` / ``read_stderr`` return the next bytes the command wrote, b""
      once that stream has ended (every process holding it exited or closed it).
    - ``wait`` returns the exit code (128 + signal for a signal) once the command has
      exited; what it left running in its session is killed then, so its output ends.
      A command that cannot be executed is exit code 127 (not found) or 126 (not
      executable), the reason on stderr (stdout with a terminal), as a shell says it.
    - Leaving the context kills the command and everything it started."""

    async def write(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def read_stdout(self) -> bytes: ...
    async def read_stderr(self) -> bytes: ...
    def resize(self, width: int, height: int) -> None: ...
    async def wait(self) -> int: ...


@attrs.frozen
class Image:
    """An image the runtime holds: its id and the names it answers to, and its size
    (Node status.images)."""

    id: str
    names: tuple[str, ...]
    size_bytes: int = 0


class EventType(enum.Enum):
    CREATED = "CONTAINER_CREATED_EVENT"
    STARTED = "CONTAINER_STARTED_EVENT"
    STOPPED = "CONTAINER_STOPPED_EVENT"
    DELETED = "CONTAINER_DELETED_EVENT"


@attrs.frozen
class ContainerEvent:
    """One life change of a container (CRI's ContainerEventResponse)."""

    container_id: str
    sandbox_id: str
    type: EventType
    at: float


@attrs.frozen
class LogChunk:
    """Log bytes from ``offset`` up to ``next_offset`` (CRI log format lines)."""

    data: bytes
    next_offset: int


# --- the interface ------------------------------------------------------------------------


class ContainerRuntime(Protocol):
    """What a runtime offers (see the module rules)."""

    name: str

    # sandboxes
    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str: ...
    async def stop_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def remove_pod_sandbox(self, sandbox_id: str) -> None: ...
    async def pod_sandbox_status(self, sandbox_id: str) -> SandboxStatus: ...
    async def list_pod_sandboxes(
        self, labels: Mapping[str, str] | None = None
    ) -> list[SandboxStatus]: ...

    # containers
    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox: PodSandboxConfig
    ) -> str: ...
    async def start_container(self, container_id: str) -> None: ...
    async def stop_container(self, container_id: str, timeout: float) -> None: ...
    async def remove_container(self, container_id: str) -> None: ...
    async def container_status(self, container_id: str) -> ContainerStatus: ...
    async def list_containers(
        self, labels: Mapping[str, str] | None = None, sandbox_id: str = ""
    ) -> list[ContainerStatus]: ...
    async def container_stats(self, container_id: str) -> ContainerStats: ...
    async def exec_sync(
        self, container_id: str, command: tuple[str, ...], timeout: float
    ) -> ExecResult: ...
    def exec_stream(
        self, container_id: str, command: tuple[str, ...], *, stdin: bool, tty: bool
    ) -> AbstractAsyncContextManager[ExecStream]: ...

    async def port_forward(self, sandbox_id: str, port: int) -> trio.abc.Stream:
        """CRI's PortForward: a connection to ``port`` of the pod (the caller closes
        it). Raises ``CriError`` (``NotFound`` for an unknown sandbox) with why it
        could not connect."""

    # logs and events
    async def read_log(self, container_id: str, offset: int = 0) -> LogChunk: ...
    async def wait_log(self, container_id: str, offset: int) -> None: ...
    def events(self) -> trio.MemoryReceiveChannel[ContainerEvent]: ...

    # images
    async def pull_image(self, image: str) -> str: ...
    async def image_status(self, image: str) -> Image | None: ...
    async def list_images(self) -> list[Image]: ...

    async def aclose(self) -> None: ...


@attrs.frozen
class ProbeResult:
    """One probe's answer: ``success``, and what failed if not (the event's message)."""

    success: bool
    message: str = ""


class NetworkProbes(Protocol):
    """tcpSocket and httpGet probes of a container. The kubelet's own prober connects
    to the pod's IP; a simulated runtime, whose containers listen nowhere, answers them
    itself (``probe`` is the pod spec's probe object, with ``tcpSocket`` or
    ``httpGet``)."""

    async def probe_network(
        self, container_id: str, probe: Mapping, pod_ip: str, timeout: float
    ) -> ProbeResult: ...
