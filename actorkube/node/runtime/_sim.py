"""The simulated container runtime: CRI's states, errors and timings, without processes.

Rules of this file (on top of the interface's, in ``_api.py``):

- A container runs nowhere: it is a record (state, times, exit code, log, profile)
  and, while it runs, entries in the runtime's one timer heap. ``run()`` is the one
  task of a runtime: it sleeps until the earliest timer and acts on what is due. It
  must be running for anything to happen on its own (exits, OOM kills, periodic log
  lines, exits after SIGTERM, SIGKILL at a stop's timeout); the kubelet starts it in
  its nursery, and a restarted kubelet starts it again (timers that fell due
  meanwhile act at once, stamped with the time they were due; a periodic log line
  that fell behind is written once more, now, and goes on every ``log_every`` from
  there, so the lines missed are not replayed).
- Timers act only on a RUNNING container; a container runs once (a restart is a new
  container), so the timers of an exited one are stale: dropped when due, or all at
  once when they make up most of the heap (the heap stays as large as what runs). Timers
  due at the same instant act in this order: SIGKILL, OOM kill, exit of its own,
  exit after SIGTERM, log line; in the order they were set within a kind.
- Delays a caller waits for anyway (``pull_delay``, ``start_delay``) are trio sleeps
  in the caller's task. Calls that need not wait return without a checkpoint (a
  simulation makes hundreds of thousands of them).
- The profile of a container (``SimProfile``) is fixed when it is created: its image's
  profile with the pod's and container's simulation annotations applied.
- CRI and containerd behaviour kept here: ``stop_*`` and ``remove_*`` of an unknown
  id are no-ops (CRI makes them idempotent); stopping a container that is not running
  is a no-op; a stop with timeout 0 is SIGKILL at once; a failed start leaves the
  container EXITED with code 128, reason ``StartError``; stopping a sandbox SIGKILLs
  its running containers and tears down its network (its IP is released and its
  status shows none); removing a sandbox or a running container kills first; a
  sandbox name (name, namespace, uid, attempt) and a container name (name, attempt)
  within a sandbox are reserved while they exist; a container needs its image pulled.
- A container whose profile names a ``load_group`` shares that group's load in the
  runtime's ``SimLoad`` (``load``) while it runs: it joins as it starts running and
  leaves as it exits, or when the runtime is closed; its stats report its share
  instead of the profile's CPU.
- Events: a buffer of ``EVENT_BUFFER`` events; when it is full (no kubelet reads),
  events are dropped and counted in ``dropped_events`` (containerd, too, drops the
  events nobody takes, and counts them). ``events()``
  called again (a restarted kubelet) closes the previous channel and opens a new one.
  Only containers have events: a sandbox changes only when the kubelet asks.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping

import trio

from ._api import (
    ContainerConfig,
    ContainerEvent,
    ContainerState,
    ContainerStats,
    ContainerStatus,
    CreateContainerError,
    CriError,
    EventType,
    ExecResult,
    ExecStream,
    Image,
    ImagePullError,
    LogChunk,
    NotFound,
    PodSandboxConfig,
    ProbeResult,
    Resources,
    RuntimeFailure,
    SandboxState,
    SandboxStatus,
    StartError,
)
from ._crilog import line_entries
from ._sim_ipam import PodIPs, PodIPsExhausted
from ._sim_load import SimLoad
from ._sim_log import LogBuffer
from ._sim_profile import (
    AnnotationError,
    SimProfile,
    image_name,
    profile_for_image,
    with_annotations,
)

EVENT_BUFFER = 1000
DEFAULT_LOG_LIMIT = 1 << 20
DEFAULT_PROFILE = SimProfile()

_CREATED = ContainerState.CREATED
_RUNNING = ContainerState.RUNNING
_EXITED = ContainerState.EXITED

# Timer kinds; the number orders timers due at the same instant.
_KILL, _OOM, _EXIT, _TERM, _LOG = range(5)

_SIGKILL_EXIT = 137
_START_FAILED_EXIT = 128


def _reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


class _Sandbox:
    __slots__ = ("config", "containers", "created_at", "id", "ip", "state")

    def __init__(self, id: str, config: PodSandboxConfig, created_at: float, ip: str) -> None:
        self.id = id
        self.config = config
        self.created_at = created_at
        self.ip = ip
        self.state = SandboxState.READY
        self.containers: dict[str, _Container] = {}


class _Container:
    __slots__ = ("changed", "config", "created_at", "exit_code", "finished_at", "id",
                 "image_ref", "load_member", "log", "message", "profile", "ran_at", "reason",
                 "sandbox", "started_at", "starting", "state", "timers")  # fmt: skip

    def __init__(
        self, id: str, sandbox: _Sandbox, config: ContainerConfig, profile: SimProfile,
        image_ref: str, created_at: float,
    ) -> None:  # fmt: skip
        self.id = id
        self.sandbox = sandbox
        self.config = config
        self.profile = profile
        self.image_ref = image_ref
        self.created_at = created_at
        self.state = _CREATED
        self.starting = False
        self.started_at = 0.0
        self.finished_at = 0.0
        self.ran_at = 0.0  # trio time it began running (probes count from it)
        self.exit_code = 0
        self.reason = ""
        self.message = ""
        self.log: LogBuffer | None = None  # made on the first line written
        self.changed: trio.Event | None = None  # made when someone waits for a change
        self.timers = 0  # its entries in the timer heap, while it runs
        self.load_member = 0  # its member number in its load group, while it runs


def _matches(labels: Mapping[str, str], selector: Mapping[str, str] | None) -> bool:
    return selector is None or all(labels.get(k) == v for k, v in selector.items())


class _ByLabel:
    """The ids of the sandboxes (or containers) that carry each label pair, in creation
    order. The kubelet lists one pod's sandboxes and containers at every sync of it: a
    listing with a selector reads the smallest set among its pairs, not everything on
    the node (30 pods a node made every sync cost as much as the sync itself). A pair
    that one item alone carries (a pod's uid, its name: most pairs) holds that id itself,
    not a dict of one: 150,000 pods would otherwise keep 600,000 more dicts."""

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        # pair -> an id, or a dict of ids (insertion-ordered) once two carry it.
        self._ids: dict[tuple[str, str], str | dict[str, None]] = {}

    def add(self, id: str, labels: Mapping[str, str]) -> None:
        index = self._ids
        for pair in labels.items():
            held = index.get(pair)
            if held is None:
                index[pair] = id
            elif type(held) is str:
                index[pair] = {held: None, id: None}
            else:
                held[id] = None

    def remove(self, id: str, labels: Mapping[str, str]) -> None:
        index = self._ids
        for pair in labels.items():
            held = index.get(pair)
            if held is None:
                continue
            if type(held) is str:
                if held == id:
                    del index[pair]
                continue
            held.pop(id, None)
            if not held:
                del index[pair]

    def candidates(self, selector: Mapping[str, str] | None) -> Iterable[str] | None:
        """Ids that may match ``selector`` (a superset, in creation order); None: no
        selector, or an empty one (everything matches)."""
        if not selector:
            return None
        best: Iterable[str] | None = None
        size = 0
        for pair in selector.items():
            try:
                held = self._ids.get(pair)
            except TypeError:  # an unhashable value: nothing's label equals it
                return ()
            if held is None:
                return ()
            if type(held) is str:
                return (held,)  # one item at most: nothing is smaller
            if best is None or len(held) < size:
                best, size = held, len(held)
        return best


def _check_selector(labels: object) -> None:
    if labels is not None and not isinstance(labels, Mapping):
        raise TypeError(f"labels must be a mapping or None, not {type(labels).__name__}")


class SimRuntime:
    """A ``ContainerRuntime`` (and ``NetworkProbes``) whose containers run in trio's
    clock only (see the module's rules).

    ``pod_cidr`` is the node's pod CIDR (pod IPs come from it); ``profiles`` maps image
    names (with or without tag) to their ``SimProfile``, ``default_profile`` serves
    other images; ``wall_clock`` stamps times (``WallClock.now`` of the actor system in
    a simulation); ``log_limit`` bounds each container's log in bytes; ``load`` is the
    ``SimLoad`` whose groups the containers with a ``load_group`` share (one for many
    runtimes).

    Run ``runtime.run`` in a nursery (``await nursery.start(runtime.run)``) for as long
    as the runtime is used; ``aclose()`` ends it for good.
    """

    name = "sim"

    def __init__(
        self,
        pod_cidr: str,
        *,
        profiles: Mapping[str, SimProfile] | None = None,
        default_profile: SimProfile = DEFAULT_PROFILE,
        wall_clock: Callable[[], float] = time.time,
        log_limit: int = DEFAULT_LOG_LIMIT,
        load: SimLoad | None = None,
    ) -> None:
        self._ips = PodIPs(pod_cidr)
        if load is not None and not isinstance(load, SimLoad):
            raise TypeError(f"load must be a SimLoad, not {load!r}")
        self._load = load
        self._profiles = dict(profiles or {})
        for image, profile in self._profiles.items():
            if not isinstance(image, str) or not isinstance(profile, SimProfile):
                raise TypeError(f"profiles map image names to SimProfiles, not {image!r}")
        if not isinstance(default_profile, SimProfile):
            raise TypeError(f"default_profile must be a SimProfile, not {default_profile!r}")
        if isinstance(log_limit, bool) or not isinstance(log_limit, int) or log_limit <= 0:
            raise ValueError(f"log_limit must be a positive number of bytes, not {log_limit!r}")
        self._default = default_profile
        self._wall = wall_clock
        self._log_limit = log_limit
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._sandbox_labels = _ByLabel()
        self._container_labels = _ByLabel()
        # (uid, attempt, name, namespace) -> the sandbox that holds the name.
        self._reserved: dict[tuple[str, int, str, str], str] = {}
        self._images: dict[str, Image] = {}  # by name and by id
        self._timers: list[tuple[float, int, int, _Container]] = []
        self._timer_seq = 0
        self._stale_timers = 0  # entries in the heap of containers no longer running
        self._id_seq = 0
        self._send, self._receive = trio.open_memory_channel[ContainerEvent](EVENT_BUFFER)
        self._events_taken = False
        self.dropped_events = 0
        self._closed = False
        self._run_scope: trio.CancelScope | None = None
        self._sleep: trio.CancelScope | None = None
        self._fire = {_KILL: self._sigkill, _OOM: self._oom_kill, _EXIT: self._exit_own,
                      _TERM: self._exit_on_term, _LOG: self._periodic_log}  # fmt: skip

    # --- the timer task ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Act on timers as they fall due, until ``aclose()`` (or cancellation: another
        ``run()`` may then take over)."""
        self._check_open()
        if self._run_scope is not None:
            raise RuntimeError("this SimRuntime's run() is already running")
        try:
            with trio.CancelScope() as self._run_scope:
                task_status.started()
                while True:
                    self._act_on_due()
                    deadline = self._timers[0][0] if self._timers else math.inf
                    with trio.CancelScope(deadline=deadline) as self._sleep:
                        await trio.sleep_forever()
                    self._sleep = None
        finally:
            self._run_scope = None
            self._sleep = None

    def _push(self, when: float, kind: int, container: _Container) -> None:
        heapq.heappush(self._timers, (when, kind, self._timer_seq, container))
        self._timer_seq += 1
        container.timers += 1
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when

    def _act_on_due(self) -> None:
        timers = self._timers
        now = trio.current_time()
        wall = None
        while timers and timers[0][0] <= now:
            when, kind, _, container = heapq.heappop(timers)
            if container.state is not _RUNNING:
                self._stale_timers -= 1
                continue
            container.timers -= 1
            if wall is None:
                wall = self._wall()
            self._fire[kind](container, when, wall - (now - when))

    def _sigkill(self, container: _Container, _when: float, at: float) -> None:
        self._exit(container, _SIGKILL_EXIT, "Error", at)

    def _oom_kill(self, container: _Container, _when: float, at: float) -> None:
        self._exit(container, _SIGKILL_EXIT, "OOMKilled", at)

    def _exit_own(self, container: _Container, _when: float, at: float) -> None:
        code = container.profile.exit_code
        self._exit(container, code, _reason(code), at)

    def _exit_on_term(self, container: _Container, _when: float, at: float) -> None:
        code = container.profile.term_exit_code
        self._exit(container, code, _reason(code), at)

    def _periodic_log(self, container: _Container, when: float, at: float) -> None:
        profile = container.profile
        self._write_log(container, (profile.periodic_log_line,), at)
        # Behind (run() was away, or late): the lines missed are not replayed one by one.
        self._push(max(when + profile.log_every, trio.current_time()), _LOG, container)

    # --- sandboxes --------------------------------------------------------------------------

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        self._check_open()
        _check_config(config, PodSandboxConfig, _SANDBOX_FIELDS, "config")
        name = (config.uid, config.attempt, config.name, config.namespace)
        holder = self._reserved.get(name)
        if holder is not None:
            raise RuntimeFailure(
                f"the sandbox name {config.namespace}/{config.name} (uid {config.uid}, "
                f"attempt {config.attempt}) is reserved for sandbox {holder}"
            )
        try:
            ip = self._ips.allocate()
        except PodIPsExhausted as error:
            raise RuntimeFailure(
                f"failed to set up the network of sandbox {config.namespace}/{config.name}: "
                f"{error}"
            ) from None
        sandbox = _Sandbox(self._new_id(), config, self._wall(), ip)
        self._sandboxes[sandbox.id] = sandbox
        self._sandbox_labels.add(sandbox.id, config.labels)
        self._reserved[name] = sandbox.id
        return sandbox.id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        self._check_open()
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is not None:
            self._stop_sandbox(sandbox)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._check_open()
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            return
        self._stop_sandbox(sandbox)
        for container in list(sandbox.containers.values()):
            self._remove(container)
        del self._sandboxes[sandbox_id]
        config = sandbox.config
        self._sandbox_labels.remove(sandbox_id, config.labels)
        del self._reserved[(config.uid, config.attempt, config.name, config.namespace)]

    async def pod_sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        self._check_open()
        return self._sandbox_status(self._sandbox(sandbox_id))

    async def list_pod_sandboxes(
        self, labels: Mapping[str, str] | None = None
    ) -> list[SandboxStatus]:
        self._check_open()
        _check_selector(labels)
        ids = self._sandbox_labels.candidates(labels)
        found = self._sandboxes.values() if ids is None else map(self._sandboxes.__getitem__, ids)
        return [self._sandbox_status(s) for s in found if _matches(s.config.labels, labels)]

    def _stop_sandbox(self, sandbox: _Sandbox) -> None:
        if sandbox.state is SandboxState.NOTREADY:
            return
        at = self._wall()
        for container in sandbox.containers.values():
            if container.state is _RUNNING:
                self._exit(container, _SIGKILL_EXIT, "Error", at)
        sandbox.state = SandboxState.NOTREADY
        self._ips.release(sandbox.ip)
        sandbox.ip = ""

    @staticmethod
    def _sandbox_status(sandbox: _Sandbox) -> SandboxStatus:
        return SandboxStatus(sandbox.id, sandbox.config, sandbox.state, sandbox.created_at,
                             sandbox.ip)  # fmt: skip

    def _sandbox(self, sandbox_id: str) -> _Sandbox:
        sandbox = self._sandboxes.get(sandbox_id)
        if sandbox is None:
            raise NotFound(f"no sandbox {sandbox_id!r}")
        return sandbox

    # --- containers -------------------------------------------------------------------------

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox: PodSandboxConfig
    ) -> str:
        self._check_open()
        _check_config(config, ContainerConfig, _CONTAINER_FIELDS, "config")
        _check_config(sandbox, PodSandboxConfig, _SANDBOX_FIELDS, "sandbox")
        if not config.image:
            raise CreateContainerError(f"container {config.name!r} has no image")
        owner = self._sandbox(sandbox_id)
        if owner.state is not SandboxState.READY:
            raise CreateContainerError(f"sandbox {sandbox_id} is not ready")
        for other in owner.containers.values():
            if other.config.name == config.name and other.config.attempt == config.attempt:
                raise CreateContainerError(
                    f"the container name {config.name!r} (attempt {config.attempt}) is "
                    f"reserved for container {other.id}"
                )
        image = self._image(config.image)
        if image is None:
            raise CreateContainerError(f'image "{config.image}" is not present: pull it first')
        profile = self._profile(config.image)
        try:
            profile = with_annotations(
                profile, config.name, (sandbox.annotations, config.annotations)
            )
        except AnnotationError as error:
            raise CreateContainerError(f"container {config.name}: {error}") from None
        container = _Container(self._new_id(), owner, config, profile, image.id, self._wall())
        self._containers[container.id] = container
        owner.containers[container.id] = container
        self._container_labels.add(container.id, config.labels)
        self._emit(container, EventType.CREATED, container.created_at)
        return container.id

    async def start_container(self, container_id: str) -> None:
        self._check_open()
        container = self._container(container_id)
        if container.state is not _CREATED:
            raise StartError(f"container {container_id} is in {container.state.value} state")
        if container.starting:
            raise StartError(f"container {container_id} is already starting")
        if container.sandbox.state is not SandboxState.READY:
            self._fail_start(container)
        delay = container.profile.start_delay
        if delay:
            container.starting = True
            try:
                await trio.sleep(delay)
            finally:
                container.starting = False
            self._check_open()
            if self._containers.get(container_id) is not container:
                raise NotFound(f"container {container_id} was removed while it started")
            if container.sandbox.state is not SandboxState.READY:
                self._fail_start(container)
        self._begin(container)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        self._check_open()
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, not {timeout!r}")
        container = self._containers.get(container_id)
        if container is None or container.state is not _RUNNING:
            return
        profile = container.profile
        if timeout <= 0:
            self._exit(container, _SIGKILL_EXIT, "Error", self._wall())
            return
        if profile.term_delay == 0:
            code = profile.term_exit_code
            self._exit(container, code, _reason(code), self._wall())
            return
        now = trio.current_time()
        if profile.term_delay < timeout:
            self._push(now + profile.term_delay, _TERM, container)
        else:
            self._push(now + timeout, _KILL, container)
        while container.state is not _EXITED:
            await self._changed(container)

    async def remove_container(self, container_id: str) -> None:
        self._check_open()
        container = self._containers.get(container_id)
        if container is not None:
            self._remove(container)

    async def container_status(self, container_id: str) -> ContainerStatus:
        self._check_open()
        return self._status(self._container(container_id))

    async def list_containers(
        self, labels: Mapping[str, str] | None = None, sandbox_id: str = ""
    ) -> list[ContainerStatus]:
        self._check_open()
        _check_selector(labels)
        if sandbox_id:
            owner = self._sandboxes.get(sandbox_id)
            candidates = owner.containers.values() if owner is not None else ()
        elif (ids := self._container_labels.candidates(labels)) is not None:
            candidates = map(self._containers.__getitem__, ids)
        else:
            candidates = self._containers.values()
        return [self._status(c) for c in candidates if _matches(c.config.labels, labels)]

    async def container_stats(self, container_id: str) -> ContainerStats:
        self._check_open()
        container = self._container(container_id)
        cpu = memory = 0
        if container.state is _RUNNING:
            cpu, memory = container.profile.cpu_millis, container.profile.memory_bytes
            if container.load_member:
                cpu = self._load.share(container.profile.load_group, container.load_member)
            limit = container.config.resources.cpu_millis
            if limit:
                cpu = min(cpu, limit)  # the CFS quota throttles it there
        return ContainerStats(container_id, cpu, memory, self._wall())

    def _container(self, container_id: str) -> _Container:
        container = self._containers.get(container_id)
        if container is None:
            raise NotFound(f"no container {container_id!r}")
        return container

    @staticmethod
    def _status(c: _Container) -> ContainerStatus:
        return ContainerStatus(c.id, c.sandbox.id, c.config, c.state, c.created_at,
                               c.started_at, c.finished_at, c.exit_code, c.reason, c.message,
                               c.image_ref)  # fmt: skip

    def _begin(self, container: _Container) -> None:
        now = trio.current_time()
        at = self._wall()
        profile = container.profile
        container.state = _RUNNING
        container.started_at = at
        container.ran_at = now
        if profile.load_group and self._load is not None:
            container.load_member = self._load.join(profile.load_group)
        self._emit(container, EventType.STARTED, at)
        if profile.log_lines:
            self._write_log(container, profile.log_lines, at)
        limit = container.config.resources.memory_bytes
        if limit and profile.memory_bytes > limit:
            self._push(now, _OOM, container)
        if profile.run_for != math.inf:
            self._push(now + profile.run_for, _EXIT, container)
        if profile.periodic_log_line and profile.log_every != math.inf:
            self._push(now + profile.log_every, _LOG, container)

    def _fail_start(self, container: _Container) -> None:
        message = f"sandbox {container.sandbox.id} is not ready"
        at = self._wall()
        container.message = message
        self._exit(container, _START_FAILED_EXIT, "StartError", at)
        raise StartError(f"failed to start container {container.id}: {message}")

    def _exit(self, container: _Container, exit_code: int, reason: str, at: float) -> None:
        self._drop_timers(container)
        self._leave_load(container)
        container.state = _EXITED
        container.exit_code = exit_code
        container.reason = reason
        container.finished_at = at
        self._emit(container, EventType.STOPPED, at)
        self._notify(container)

    def _leave_load(self, container: _Container) -> None:
        if container.load_member:
            self._load.leave(container.profile.load_group, container.load_member)
            container.load_member = 0

    def _drop_timers(self, container: _Container) -> None:
        """The container's timers are stale from now on; when stale entries make up
        most of the heap (containers stopped long before their own exit was due), the
        heap is rebuilt without them, so it stays as large as what still runs."""
        self._stale_timers += container.timers
        container.timers = 0
        timers = self._timers
        if self._stale_timers > 64 and 2 * self._stale_timers > len(timers):
            # In place: the timer task may be walking this very list.
            timers[:] = [t for t in timers if t[3].state is _RUNNING and t[3] is not container]
            heapq.heapify(timers)
            self._stale_timers = 0

    def _remove(self, container: _Container) -> None:
        at = self._wall()
        if container.state is _RUNNING:
            self._exit(container, _SIGKILL_EXIT, "Error", at)
        del self._containers[container.id]
        del container.sandbox.containers[container.id]
        self._container_labels.remove(container.id, container.config.labels)
        container.log = None
        self._emit(container, EventType.DELETED, at)
        self._notify(container)

    # --- exec and probes --------------------------------------------------------------------

    async def exec_sync(
        self, container_id: str, command: tuple[str, ...], timeout: float
    ) -> ExecResult:
        """Answers as the container's health says (see ``SimProfile``): exit 0 with no
        output while healthy, else exit 1 with the cause on stderr; the command itself
        is not run."""
        self._check_open()
        container = self._container(container_id)
        if not isinstance(command, tuple | list) or not command:
            raise ValueError(f"exec needs a command, not {command!r}")
        if container.state is not _RUNNING:
            raise CriError(f"container {container_id} is in {container.state.value} state")
        cause = self._unhealthy(container)
        if cause is None:
            return ExecResult(b"", b"", 0)
        return ExecResult(b"", f"{cause}\n".encode(), 1)

    @contextlib.asynccontextmanager
    async def exec_stream(
        self, container_id: str, command: tuple[str, ...], *, stdin: bool, tty: bool
    ) -> AsyncIterator[ExecStream]:
        """As ``exec_sync``, streamed: the command is not run, its input is dropped, and
        it exits at once as the container's health says (0 with no output, else 1 with
        the cause on stderr, or stdout with a terminal)."""
        result = await self.exec_sync(container_id, command, 0)
        yield _SimExec(result.stderr, result.exit_code, tty)

    async def port_forward(self, sandbox_id: str, port: int) -> trio.abc.Stream:
        """Refused: simulated containers listen nowhere."""
        self._check_open()
        self._sandbox(sandbox_id)  # NotFound for an unknown one
        raise CriError(f"the simulated runtime has no network: nothing listens on port {port}")

    async def probe_network(
        self, container_id: str, probe: Mapping, pod_ip: str, timeout: float
    ) -> ProbeResult:
        """A tcpSocket or httpGet probe, answered by the container's health: refused
        before ``ready_after`` (nothing listens yet) and when not running, HTTP 500 (or
        refused, for tcpSocket) from ``healthy_for`` on."""
        self._check_open()
        container = self._container(container_id)
        handler = probe.get("httpGet") if isinstance(probe, Mapping) else None
        http = isinstance(handler, Mapping)
        if not http:
            handler = probe.get("tcpSocket") if isinstance(probe, Mapping) else None
            if not isinstance(handler, Mapping):
                return ProbeResult(False, "missing probe handler: neither httpGet nor tcpSocket")
        host = handler.get("host") or pod_ip
        address = f"[{host}]:{handler.get('port')}" if ":" in str(host) else (
            f"{host}:{handler.get('port')}")  # fmt: skip
        refused = f"dial tcp {address}: connect: connection refused"
        cause = self._unhealthy(container) if container.state is _RUNNING else "not running"
        if cause is None:
            return ProbeResult(True)
        if not http:
            return ProbeResult(False, refused)
        if cause == "unhealthy":
            return ProbeResult(False, "HTTP probe failed with statuscode: 500")
        scheme = str(handler.get("scheme") or "HTTP").lower()
        url = f"{scheme}://{address}{handler.get('path') or '/'}"
        return ProbeResult(False, f'Get "{url}": {refused}')

    @staticmethod
    def _unhealthy(container: _Container) -> str | None:
        """Why probes of a running container fail now, or None if they succeed."""
        running_for = trio.current_time() - container.ran_at
        if running_for < container.profile.ready_after:
            return "not ready yet"
        if running_for >= container.profile.healthy_for:
            return "unhealthy"
        return None

    # --- logs and events --------------------------------------------------------------------

    async def read_log(self, container_id: str, offset: int = 0) -> LogChunk:
        """The log from ``offset`` to its end; an offset before the oldest line kept
        reads from that line (older ones were dropped past ``log_limit``)."""
        self._check_open()
        container = self._container(container_id)
        _check_offset(offset)
        if container.log is None:
            return LogChunk(b"", 0)
        data, end = container.log.read(offset)
        return LogChunk(data, end)

    async def wait_log(self, container_id: str, offset: int) -> None:
        self._check_open()
        _check_offset(offset)
        while True:
            container = self._container(container_id)
            end = container.log.end if container.log is not None else 0
            if end > offset or container.state is _EXITED:
                return
            await self._changed(container)

    def events(self) -> trio.MemoryReceiveChannel[ContainerEvent]:
        self._check_open()
        if self._events_taken:
            self._send.close()
            self._send, self._receive = trio.open_memory_channel[ContainerEvent](EVENT_BUFFER)
        self._events_taken = True
        return self._receive

    def _write_log(self, container: _Container, lines: tuple[str, ...], at: float) -> None:
        if container.log is None:
            container.log = LogBuffer(self._log_limit)
        container.log.write(b"".join(line_entries(at, "stdout", line.encode()) for line in lines))
        self._notify(container)

    def _emit(self, container: _Container, type: EventType, at: float) -> None:
        try:
            self._send.send_nowait(ContainerEvent(container.id, container.sandbox.id, type, at))
        except (trio.WouldBlock, trio.BrokenResourceError):
            self.dropped_events += 1

    @staticmethod
    def _notify(container: _Container) -> None:
        changed = container.changed
        if changed is not None:
            container.changed = None
            changed.set()

    async def _changed(self, container: _Container) -> None:
        """Wait for the container's next change (a state, a log line, its removal)."""
        if container.changed is None:
            container.changed = trio.Event()
        await container.changed.wait()
        self._check_open()

    # --- images -----------------------------------------------------------------------------

    async def pull_image(self, image: str) -> str:
        """Pull ``image`` (after its profile's ``pull_delay``) and return its id; an image
        already present is not pulled again."""
        self._check_open()
        if not isinstance(image, str):
            raise TypeError(f"an image name is text, not {image!r}")
        if not image.strip():
            raise ImagePullError("an image name is needed")
        present = self._image(image)
        if present is not None:
            return present.id
        profile = self._profile(image)
        if profile.pull_delay:
            await trio.sleep(profile.pull_delay)
        self._check_open()
        if profile.pull_fails:
            raise ImagePullError(
                f'failed to pull and unpack image "{image}": failed to resolve reference '
                f'"{image}": not found'
            )
        name = image_name(image)
        image_id = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
        known = self._images.get(name)
        if known is None:
            known = Image(image_id, (name,), profile.image_size)
            self._images[name] = self._images[image_id] = known
        return known.id

    async def image_status(self, image: str) -> Image | None:
        self._check_open()
        if not isinstance(image, str):
            raise TypeError(f"an image name is text, not {image!r}")
        return self._image(image)

    async def list_images(self) -> list[Image]:
        self._check_open()
        return [i for key, i in self._images.items() if key == i.id]

    def _image(self, image: str) -> Image | None:
        return self._images.get(image) or self._images.get(image_name(image))

    def _profile(self, image: str) -> SimProfile:
        return profile_for_image(image, self._profiles, self._default)

    # --- the runtime's own life -------------------------------------------------------------

    async def aclose(self) -> None:
        """Close for good: ``run()`` ends, the events channel closes, waiting calls and
        later calls raise RuntimeFailure. The containers are kept as they are (but share
        no load any more)."""
        if self._closed:
            return
        self._closed = True
        for container in self._containers.values():
            self._leave_load(container)
        self._send.close()
        if self._run_scope is not None:
            self._run_scope.cancel()
        for container in self._containers.values():
            self._notify(container)
        await trio.lowlevel.checkpoint()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeFailure("the simulated container runtime is closed")

    def _new_id(self) -> str:
        # Ids are deterministic (a simulation replays) and differ between nodes (seeded
        # by the pod CIDR), so a trace that mixes nodes stays readable.
        while True:
            self._id_seq += 1
            seed = f"{self._ips.cidr}/{self._id_seq}".encode()
            new = hashlib.blake2b(seed, digest_size=16).hexdigest()
            if new not in self._containers and new not in self._sandboxes:
                return new


# The fields of the configs that the runtime reads, and their types.
_SANDBOX_FIELDS = {"name": str, "namespace": str, "uid": str, "attempt": int,
                   "labels": Mapping, "annotations": Mapping}  # fmt: skip
_CONTAINER_FIELDS = {"name": str, "image": str, "attempt": int, "labels": Mapping,
                     "annotations": Mapping, "resources": Resources}  # fmt: skip


def _check_config(config: object, kind: type, fields: dict[str, type], what: str) -> None:
    """A config built wrong (the caller's bug) raises TypeError here, before it can break
    the runtime's state later."""
    if not isinstance(config, kind):
        raise TypeError(f"{what} must be a {kind.__name__}, not {type(config).__name__}")
    for name, expected in fields.items():
        value = getattr(config, name)
        if type(value) is expected or (type(value) is dict and expected is Mapping):
            continue  # the usual case, without the slower isinstance of an ABC
        if not isinstance(value, expected) or isinstance(value, bool):
            raise TypeError(f"{what}.{name} must be {expected.__name__}, not {value!r}")
    # Labels are CRI's map<string, string>, and the runtime indexes them.
    labels = config.labels
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise TypeError(f"{what}.labels must map strings to strings, not {labels!r}")


def _check_offset(offset: object) -> None:
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise TypeError(f"a log offset is an integer, not {offset!r}")
    if offset < 0:
        raise ValueError(f"a log offset is at least 0, not {offset}")


class _SimExec:
    """The ``ExecStream`` of a simulated command: output given, nothing run."""

    def __init__(self, output: bytes, exit_code: int, tty: bool) -> None:
        self._output = {1 if tty else 2: output}
        self.exit_code = exit_code

    async def write(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()

    async def close_stdin(self) -> None:
        await trio.lowlevel.checkpoint()

    async def read_stdout(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._output.pop(1, b"")

    async def read_stderr(self) -> bytes:
        await trio.lowlevel.checkpoint()
        return self._output.pop(2, b"")

    def resize(self, width: int, height: int) -> None:
        pass

    async def wait(self) -> int:
        await trio.lowlevel.checkpoint()
        return self.exit_code
