"""The process runtime: each container is a process group of this machine (the contract
is the module docstring of ``_api``; docs/node.md says what it isolates).

Rules of this file:

- ``run()`` must be running (in the kubelet's nursery: ``await nursery.start(
  runtime.run)``) for any call to be served; before it and after ``aclose`` calls raise
  ``RuntimeFailure``. ``run`` holds an exclusive lock on ``root_dir``, and on its way
  out, however it ends, kills every process the runtime started.
- A sandbox is a directory ``<root_dir>/sandboxes/<id>`` and a pod IP; it has no
  process (there is no network namespace to hold). A container is a directory
  ``<sandbox>/containers/<id>``, a log (``log_path``, relative to the sandbox's
  ``log_directory``; else ``container.log`` in its directory), and once started a
  process: its own session and process group (``_procs``), its cgroup or rlimits
  (``_limits``), its mount namespace when the machine allows (``_launcher``).
- Every change is written to the sandbox's or container's record (``_records``). A
  runtime started again on ``root_dir`` finds them: sandboxes ``NOTREADY``, and
  containers that were running ``EXITED`` with exit code 255 and reason ``Unknown`` (as
  containerd after a restart whose tasks are gone): their processes died with the
  runtime (``aclose`` kills them; a crash kills each main process by PR_SET_PDEATHSIG
  and, with cgroups, the rest when the runtime starts again).
- A task per started container (``_supervise``) reads the launcher's report, waits for
  the main process, kills what is left of the container (session, process group,
  cgroup, exec'd commands), reaps it and records the exit: the exit code (128 + signal
  for a signal), reason ``OOMKilled`` if the kernel's OOM killer killed a process of
  it, else ``Completed`` (0) or ``Error``. A start that failed before the exec is exit
  code 128, reason ``StartError`` (as containerd). Then it removes the cgroup.
- Two tasks per started container copy its stdout and stderr into the log
  (``_output``); log followers are woken when bytes are written and at the exit.
- One lock per container serialises start and remove, and the signalling of a stop;
  waiting (for an exit, for a stop's timeout) happens outside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import NoReturn

import attrs
import trio

from . import _crilog, _procs, _validate
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
    RuntimeFailure,
    SandboxState,
    SandboxStatus,
    StartError,
)
from ._exec import exec_in, exec_streaming
from ._images import ImageCatalogue, command_line
from ._limits import ContainerLimits, Limits, Rlimits, detect, remove
from ._output import Drain, pump_log
from ._podip import PodIPAllocator, PodIPsExhausted
from ._records import ContainerRecord, SandboxRecord

log = logging.getLogger("actorkube.node.runtime")

UNKNOWN_EXIT_CODE = 255  # containerd's, for a container whose process was lost
START_ERROR_EXIT_CODE = 128  # containerd's, for a container that failed to start
LOG_DRAIN_SECONDS = 2.0  # how long an escaped process may keep a container's log open
CLOSE_GRACE_SECONDS = 5.0


@attrs.frozen
class Isolation:
    """What the runtime uses on this machine (chosen when ``run`` starts)."""

    limits: str  # "cgroup v2", "cgroup v1" or "rlimit"
    limits_detail: str  # why the mechanisms before it were not used
    mount_namespaces: bool  # each container gets a private root, and its volumes
    mount_detail: str  # why not, when not


def _matches(wanted: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in (wanted or {}).items())


def _new_id() -> str:
    return secrets.token_hex(16)


def _remove_now(limits: ContainerLimits) -> None:
    """Removes a cgroup whose processes were just killed, waiting up to a second."""
    deadline = time.monotonic() + 1.0
    try:
        while not limits.remove() and time.monotonic() < deadline:
            time.sleep(0.005)  # the killed processes are leaving the cgroup
    except OSError as e:
        log.warning("cannot remove %s: %s", limits, e)


class ProcessRuntime:
    """A ``ContainerRuntime`` whose containers are process groups of this machine.

    ``root_dir`` holds its state (see the module rules); ``pod_cidr`` is the range of
    pod IPs, inside 127.0.0.0/8; ``images_file`` extends the image catalogue
    (``_images``); ``wall_clock`` gives timestamps (e.g. ``WallClock.now``);
    ``cgroup_root`` is where the cgroup hierarchies are mounted. A bad ``pod_cidr`` or
    ``images_file`` raises ``ValueError`` here.
    """

    name = "process"

    def __init__(
        self,
        root_dir: str | os.PathLike,
        pod_cidr: str,
        *,
        images_file: str | os.PathLike | None = None,
        wall_clock: Callable[[], float] = time.time,
        cgroup_root: str = "/sys/fs/cgroup",
    ) -> None:
        self.root_dir = Path(root_dir).absolute()
        self._ips = PodIPAllocator.from_cidr(pod_cidr)
        self._images = ImageCatalogue.load(images_file)
        self._clock = wall_clock
        self._cgroup_root = cgroup_root
        self._sandboxes: dict[str, SandboxRecord] = {}
        self._containers: dict[str, ContainerRecord] = {}
        self._send, self._receive = trio.open_memory_channel[ContainerEvent](math.inf)
        self._phase = "new"  # -> starting -> running -> closing -> closed
        self._nursery: trio.Nursery | None = None
        self._close_requested = trio.Event()
        self._closed = trio.Event()
        self._lock_fd = -1
        self._limits: Limits = Rlimits()
        self._mount_problem = "the runtime has not started"

    # --- life of the runtime ------------------------------------------------------------

    @property
    def isolation(self) -> Isolation:
        return Isolation(self._limits.name, self._limits.detail, not self._mount_problem,
                         self._mount_problem)  # fmt: skip

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serves the runtime until ``aclose`` (see the module rules)."""
        if self._phase != "new":
            raise RuntimeFailure("a ProcessRuntime runs once")
        self._phase = "starting"
        try:
            self._lock_root()
            self._limits = detect(self._cgroup_root, str(self.root_dir))
            self._limits.clean()
            self._mount_problem = await self._probe_mounts()
            self._load()
            log.info("process runtime at %s: limits by %s%s; mount namespaces: %s",
                     self.root_dir, self._limits.name,
                     f" ({self._limits.detail})" if self._limits.detail else "",
                     self._mount_problem or "yes")  # fmt: skip
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._phase = "running"
                task_status.started()
                await self._close_requested.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._phase = "closed"
            try:
                self._kill_everything_now()
                self._limits.close()
            finally:
                self._send.close()
                if self._lock_fd >= 0:
                    os.close(self._lock_fd)  # releases the lock
                self._closed.set()

    async def aclose(self) -> None:
        """Kills every process the runtime started, records their exits, closes the
        events channel and releases ``root_dir``."""
        if self._phase == "new":
            self._phase = "closed"
            self._send.close()
            return
        if self._phase in ("closing", "closed"):
            await self._closed.wait()
            return
        self._phase = "closing"
        running = [c for c in self._containers.values() if c.pid]
        for c in running:
            self._kill(c)
        with trio.move_on_after(CLOSE_GRACE_SECONDS):
            for c in running:
                await c.exited.wait()
        self._close_requested.set()
        await self._closed.wait()

    def _lock_root(self) -> None:
        sandboxes = self.root_dir / "sandboxes"
        sandboxes.mkdir(parents=True, exist_ok=True)
        sandboxes.chmod(0o700)  # records hold the containers' environments
        fd = os.open(self.root_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeFailure(f"{self.root_dir} is in use by another process runtime") from None
        self._lock_fd = fd

    def _check(self) -> None:
        if self._phase != "running":
            raise RuntimeFailure(
                "the process runtime is not running (start it with run())"
                if self._phase in ("new", "starting")
                else "the process runtime is closed"
            )

    def _kill_everything_now(self) -> None:
        """On the way out of ``run``: the supervisors are gone, so kill and reap here,
        synchronously, and record what was still running. Each container on its own:
        one that cannot be cleaned up does not spare the others."""
        for c in self._containers.values():
            try:
                self._kill_now(c)
            except Exception:
                log.exception("cannot end container %s as the runtime closes", c.id)

    def _kill_now(self, c: ContainerRecord) -> None:
        # Exec'd commands are killed, not reaped: the exec_sync call that started one
        # (in its caller's task, which outlives run) reaps it; a second reaper would
        # make its wait fail with ECHILD.
        for pid in c.execs:
            _procs.kill_session(pid)
        if c.pid:
            _procs.kill_session(c.pid)
            if c.limits is not None:
                c.limits.kill()
            _procs.reap(c.pid)
            c.pid = 0
        if c.limits is not None and not c.launched.is_set():  # closed while starting
            c.launch_error = {"stage": "launch", "message": "the runtime was closed"}
            c.launched.set()
        if c.limits is not None and not c.exited.is_set():
            self._exited(c, 128 + signal.SIGKILL, "Error", "killed: the runtime was closed")
        if c.limits is not None:
            _remove_now(c.limits)
        c.wake_log_readers()

    async def _probe_mounts(self) -> str:
        """Why containers cannot have a mount namespace here ("" if they can), found by
        launching a process with one and a volume at a path the host does not have."""
        if os.geteuid() != 0:
            return "mount namespaces need root (CAP_SYS_ADMIN); this runtime is not root"
        probe = self.root_dir / "probe"
        shutil.rmtree(probe, ignore_errors=True)
        (probe / "fs").mkdir(parents=True)
        (probe / "volume").mkdir()
        (probe / "volume" / "ok").touch()
        target = f"/.actorkube-probe-{_new_id()}"
        check = f"import os, sys; sys.exit(0 if os.path.exists({target + '/ok'!r}) else 3)"
        spec = {
            "mode": "run", "parent": os.getpid(), "cgroups": [], "rlimit_as": 0,
            "rootfs": {"scratch": str(probe / "fs"),
                       "mounts": [[str(probe / "volume"), target, True]]},
            "workdir": "/", "argv": [sys.executable, "-I", "-S", "-c", check], "env": [],
        }  # fmt: skip
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            pid, pidfd, status_fd = _procs.spawn(spec, devnull, devnull)
        except OSError as e:
            return f"cannot start a process to try one: {e}"
        finally:
            os.close(devnull)
        try:
            report = await _procs.read_status(status_fd)
            code = await _procs.wait_exited(pid, pidfd)
        finally:
            _procs.reap(pid)
            os.close(pidfd)
            shutil.rmtree(probe, ignore_errors=True)
        if report is not None:
            return report["message"]
        return "" if code == 0 else f"a volume mounted in a probe was not visible ({code})"

    def _load(self) -> None:
        """The sandboxes and containers of an earlier runtime on ``root_dir`` (see the
        module rules)."""
        for directory in sorted((self.root_dir / "sandboxes").iterdir()):
            if not directory.is_dir():
                continue
            try:
                s = SandboxRecord.load(directory)
            except (OSError, ValueError) as e:
                log.warning("ignoring the sandbox in %s: %s", directory, e)
                continue
            s.state = SandboxState.NOTREADY
            s.save()
            self._sandboxes[s.id] = s
            if s.ip:
                self._ips.reserve(s.ip)
            containers = directory / "containers"
            for container_dir in sorted(containers.iterdir()) if containers.is_dir() else ():
                try:
                    c = ContainerRecord.load(s.id, container_dir)
                except (OSError, ValueError) as e:
                    log.warning("ignoring the container in %s: %s", container_dir, e)
                    continue
                if c.state is ContainerState.RUNNING:
                    self._exited(c, UNKNOWN_EXIT_CODE, "Unknown",
                                 "its processes ended with an earlier runtime")  # fmt: skip
                self._containers[c.id] = c

    # --- events ---------------------------------------------------------------------------

    def events(self) -> trio.MemoryReceiveChannel[ContainerEvent]:
        return self._receive

    def _event(self, c: ContainerRecord, kind: EventType) -> None:
        # the runtime may be closing, or nobody listens any more
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send.send_nowait(ContainerEvent(c.id, c.sandbox_id, kind, self._clock()))

    # --- sandboxes ------------------------------------------------------------------------

    def _sandbox(self, sandbox_id: str) -> SandboxRecord:
        s = self._sandboxes.get(sandbox_id) if isinstance(sandbox_id, str) else None
        if s is None:
            raise NotFound(f"no pod sandbox {sandbox_id!r}")
        return s

    async def run_pod_sandbox(self, config: PodSandboxConfig) -> str:
        self._check()
        _validate.sandbox_config(config)
        try:
            ip = self._ips.allocate()
        except PodIPsExhausted as e:
            pod = f"{config.namespace}/{config.name}"
            raise RuntimeFailure(f"cannot give pod {pod} an IP: {e}") from e
        sandbox_id = _new_id()
        s = SandboxRecord(sandbox_id, config, self._clock(), ip,
                          self.root_dir / "sandboxes" / sandbox_id)  # fmt: skip
        (s.dir / "containers").mkdir(parents=True)
        self._sandboxes[sandbox_id] = s
        s.save()
        return sandbox_id

    async def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """Kills the sandbox's running containers (the kubelet has stopped them
        gracefully before) and makes it ``NOTREADY``."""
        self._check()
        s = self._sandbox(sandbox_id)
        async with trio.open_nursery() as nursery:
            for c in self._containers_of(s.id):
                nursery.start_soon(self._kill_quietly, c.id)
        self._check()  # closed meanwhile: aclose killed them
        if s.state is not SandboxState.NOTREADY:
            s.state = SandboxState.NOTREADY
            s.save()

    async def _kill_quietly(self, container_id: str) -> None:
        # Nothing may be raised in the nursery: stop_pod_sandbox would raise an
        # ExceptionGroup instead of the CriError the kubelet handles.
        with contextlib.suppress(NotFound, RuntimeFailure):  # removed, or closing, meanwhile
            await self.stop_container(container_id, 0)

    async def remove_pod_sandbox(self, sandbox_id: str) -> None:
        self._check()
        s = self._sandbox(sandbox_id)
        await self.stop_pod_sandbox(sandbox_id)
        for c in self._containers_of(s.id):
            with contextlib.suppress(NotFound):
                await self.remove_container(c.id)
        if self._sandboxes.pop(sandbox_id, None) is not None:
            s.removed = True
            self._ips.release(s.ip)
            shutil.rmtree(s.dir, ignore_errors=True)

    async def pod_sandbox_status(self, sandbox_id: str) -> SandboxStatus:
        self._check()
        return self._sandbox(sandbox_id).status()

    async def list_pod_sandboxes(
        self, labels: Mapping[str, str] | None = None
    ) -> list[SandboxStatus]:
        self._check()
        found = [s for s in self._sandboxes.values() if _matches(labels, s.config.labels)]
        return [s.status() for s in sorted(found, key=lambda s: s.created_at)]

    # --- containers -----------------------------------------------------------------------

    def _container(self, container_id: str) -> ContainerRecord:
        c = self._containers.get(container_id) if isinstance(container_id, str) else None
        if c is None:
            raise NotFound(f"no container {container_id!r}")
        return c

    def _containers_of(self, sandbox_id: str) -> list[ContainerRecord]:
        return [c for c in self._containers.values() if c.sandbox_id == sandbox_id]

    async def create_container(
        self, sandbox_id: str, config: ContainerConfig, sandbox: PodSandboxConfig
    ) -> str:
        """Makes the container (``sandbox`` is ignored: the runtime uses the config the
        sandbox was made with)."""
        self._check()
        s = self._sandbox(sandbox_id)
        _validate.container_config(config)
        if s.state is not SandboxState.READY:
            raise CreateContainerError(f"pod sandbox {sandbox_id} is not ready")
        if config.mounts and self._mount_problem:
            raise CreateContainerError(
                f"container {config.name!r} has volumes, and this runtime cannot mount "
                f"them here: {self._mount_problem}"
            )
        image = self._images.find(config.image) or self._images.pull(config.image)
        argv = command_line(image, config.command, config.args)
        if not argv:
            raise ImagePullError(
                f"image {config.image!r} is not in the local image catalogue, so it has no "
                f"entrypoint, and container {config.name!r} gives no command"
            )
        container_id = _new_id()
        directory = s.dir / "containers" / container_id
        c = ContainerRecord(
            container_id, sandbox_id, config, self._clock(), image.id, directory,
            self._log_path(s, config, directory), argv, self._env(s, image.env, config),
            config.working_dir or "/",
        )  # fmt: skip
        directory.mkdir(parents=True)
        self._containers[container_id] = c
        c.save()
        self._event(c, EventType.CREATED)
        return container_id

    @staticmethod
    def _log_path(s: SandboxRecord, config: ContainerConfig, directory: Path) -> str:
        if not config.log_path:
            return str(directory / "container.log")
        if os.path.isabs(config.log_path):
            return config.log_path
        if not s.config.log_directory:
            raise CreateContainerError(
                f"log_path {config.log_path!r} is relative and the pod sandbox has no log_directory"
            )
        return os.path.join(s.config.log_directory, config.log_path)

    @staticmethod
    def _env(
        s: SandboxRecord, image_env: tuple[tuple[str, str], ...], config: ContainerConfig
    ) -> tuple[tuple[str, str], ...]:
        """The image's environment, HOSTNAME, the container's (which wins), and HOME
        if none gave it (as containerd and runc)."""
        env = dict(image_env)
        env["HOSTNAME"] = s.config.hostname or s.config.name
        env.update(config.envs)
        env.setdefault("HOME", os.path.expanduser("~"))
        return tuple(env.items())

    async def start_container(self, container_id: str) -> None:
        self._check()
        c = self._container(container_id)
        async with c.lock:
            self._check()
            if c.removed:
                raise NotFound(f"no container {container_id!r}")
            if c.state is not ContainerState.CREATED:
                raise StartError(f"container {container_id} is in {c.state.value} state, "
                                 "not CONTAINER_CREATED")  # fmt: skip
            s = self._sandboxes.get(c.sandbox_id)
            if s is None or s.state is not SandboxState.READY:
                raise StartError(f"pod sandbox {c.sandbox_id} is not ready")
            self._launch(c)
            await c.launched.wait()
            if c.launch_error is not None:
                await c.exited.wait()
                stage, message = c.launch_error["stage"], c.launch_error["message"]
                raise (CreateContainerError if stage == "mount" else StartError)(message)

    def _launch(self, c: ContainerRecord) -> None:
        """Starts ``c``'s process and its supervisor (see the module rules)."""
        try:
            limits = self._limits.create(c.id, c.config.resources)
        except OSError as e:
            self._start_failed(c, f"cannot make the cgroup of container {c.id}: {e}", e)
        c.has_rootfs = not self._mount_problem
        spec = {
            "mode": "run", "parent": os.getpid(), "cgroups": list(limits.procs),
            "rlimit_as": limits.rlimit_as,
            "rootfs": {"scratch": str(c.dir / "fs"),
                       "mounts": [[m.host_path, os.path.normpath(m.container_path),
                                   m.readonly] for m in c.config.mounts]}
            if c.has_rootfs else None,
            "workdir": c.workdir, "argv": list(c.argv), "env": [list(e) for e in c.env],
        }  # fmt: skip
        fds: list[int] = []
        try:
            os.makedirs(os.path.dirname(c.log_path), exist_ok=True)
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
            fds.append(os.open(c.log_path, flags, 0o640))
            fds += os.pipe()
            fds += os.pipe()
            if c.has_rootfs:
                (c.dir / "fs").mkdir(exist_ok=True)
            pid, pidfd, status_fd = _procs.spawn(spec, fds[2], fds[4])
        except OSError as e:
            for fd in fds:
                os.close(fd)
            _remove_now(limits)
            self._start_failed(c, f"cannot start container {c.id}: {e}", e)
        log_fd, out_r, out_w, err_r, err_w = fds
        os.close(out_w)
        os.close(err_w)
        c.pid, c.limits = pid, limits
        assert self._nursery is not None
        self._nursery.start_soon(self._supervise, c, pidfd, status_fd, out_r, err_r, log_fd)

    def _start_failed(self, c: ContainerRecord, message: str, cause: OSError) -> NoReturn:
        """A start that failed before there was a process: the container ends as one
        whose launcher failed (see the module rules)."""
        self._exited(c, START_ERROR_EXIT_CODE, "StartError", message)
        raise StartError(message) from cause

    async def _supervise(
        self, c: ContainerRecord, pidfd: int, status_fd: int, out_r: int, err_r: int,
        log_fd: int,
    ) -> None:  # fmt: skip
        assert c.limits is not None
        code: int | None = None
        oom, finished_at = False, 0.0
        try:
            async with trio.open_nursery() as pumps:
                drain = Drain(2)
                for fd, stream in ((out_r, "stdout"), (err_r, "stderr")):
                    pumps.start_soon(pump_log, fd, stream,
                                     lambda data: self._write_log(c, log_fd, data),
                                     self._clock, drain)  # fmt: skip
                c.launch_error = await _procs.read_status(status_fd)
                if c.launch_error is None:
                    c.state, c.started_at = ContainerState.RUNNING, self._clock()
                    c.cpu_sample = (trio.current_time(), 0)
                    c.save()
                    self._event(c, EventType.STARTED)
                c.launched.set()
                code = await _procs.wait_exited(c.pid, pidfd)
                finished_at = self._clock()
                oom = self._oom_killed(c.limits)
                self._kill(c)
                _procs.reap(c.pid)
                c.pid = 0
                with trio.move_on_after(LOG_DRAIN_SECONDS):
                    await drain.done.wait()
                pumps.cancel_scope.cancel()
        finally:
            os.close(pidfd)
            os.close(log_fd)
            if code is not None:  # recorded even when cancelled
                if c.launch_error is not None:
                    self._exited(c, START_ERROR_EXIT_CODE, "StartError",
                                 c.launch_error["message"], finished_at)  # fmt: skip
                else:
                    reason = "OOMKilled" if oom else "Completed" if code == 0 else "Error"
                    self._exited(c, code, reason, "", finished_at)
        if not await remove(c.limits):
            log.warning("the cgroup of container %s could not be removed", c.id)

    @staticmethod
    def _oom_killed(limits: ContainerLimits) -> bool:
        try:
            return limits.oom_kills() > 0
        except (OSError, ValueError):
            return False

    def _write_log(self, c: ContainerRecord, fd: int, data: bytes) -> None:
        if not data:
            return
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError as e:  # a full disk loses log lines, never the container
            log.warning("cannot write the log of container %s: %s", c.id, e)
        c.wake_log_readers()

    def _exited(
        self, c: ContainerRecord, code: int, reason: str, message: str, at: float | None = None
    ) -> None:
        c.state, c.exit_code, c.reason, c.message = ContainerState.EXITED, code, reason, message
        c.finished_at = self._clock() if at is None else at
        c.save()
        self._event(c, EventType.STOPPED)
        c.exited.set()
        c.wake_log_readers()

    def _kill(self, c: ContainerRecord) -> None:
        """SIGKILL to everything of ``c``: its session and group, its cgroup, its exec'd
        commands."""
        if c.pid:
            _procs.kill_session(c.pid)
        if c.limits is not None:
            c.limits.kill()
        for pid in c.execs:
            _procs.kill_session(pid)

    async def stop_container(self, container_id: str, timeout: float) -> None:
        """SIGTERM to the container's process group, SIGKILL to all of it once
        ``timeout`` seconds have passed (at once for 0); returns once it has exited. A
        container that is not running is left as it is."""
        self._check()
        timeout = _validate.timeout(timeout, "stop timeout")
        c = self._container(container_id)
        async with c.lock:
            if c.state is not ContainerState.RUNNING:
                return
            if timeout > 0 and c.pid:
                _procs.signal_group(c.pid, signal.SIGTERM)
        if timeout > 0:
            with trio.move_on_after(timeout):
                await c.exited.wait()
        if not c.exited.is_set():
            self._kill(c)
        await c.exited.wait()

    async def remove_container(self, container_id: str) -> None:
        """Kills the container if it runs, then forgets it and deletes its directory
        and its log."""
        self._check()
        c = self._container(container_id)
        async with c.lock:
            if c.removed:
                raise NotFound(f"no container {container_id!r}")
            if c.state is ContainerState.RUNNING:  # its pid is 0 while its log drains
                self._kill(c)
                await c.exited.wait()
            c.removed = True
            del self._containers[container_id]
            if c.limits is not None:
                await remove(c.limits)
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # never made
                os.unlink(c.log_path)
            shutil.rmtree(c.dir, ignore_errors=True)
            c.wake_log_readers()
            self._event(c, EventType.DELETED)

    async def container_status(self, container_id: str) -> ContainerStatus:
        self._check()
        return self._container(container_id).status()

    async def list_containers(
        self, labels: Mapping[str, str] | None = None, sandbox_id: str = ""
    ) -> list[ContainerStatus]:
        self._check()
        found = [
            c for c in self._containers.values()
            if (not sandbox_id or c.sandbox_id == sandbox_id) and _matches(labels, c.config.labels)
        ]  # fmt: skip
        return [c.status() for c in sorted(found, key=lambda c: c.created_at)]

    async def container_stats(self, container_id: str) -> ContainerStats:
        """CPU over the window since the previous call for this container (or since
        its start), and working-set memory now; zeros for a container not running."""
        self._check()
        c = self._container(container_id)
        if not c.pid or c.limits is None or c.state is not ContainerState.RUNNING:
            return ContainerStats(c.id, 0, 0, self._clock())
        try:
            usage = c.limits.usage(c.pid)
        except (OSError, ValueError):  # it exited meanwhile
            return ContainerStats(c.id, 0, 0, self._clock())
        now = trio.current_time()
        then, cpu_then = c.cpu_sample
        c.cpu_sample = (now, usage.cpu_ns)
        millis = (usage.cpu_ns - cpu_then) / (now - then) / 1e6 if now > then else 0.0
        return ContainerStats(c.id, max(0, round(millis)), usage.memory_bytes, self._clock())

    async def exec_sync(
        self, container_id: str, command: tuple[str, ...], timeout: float
    ) -> ExecResult:
        """Runs ``command`` in the container (see ``_exec``)."""
        self._check()
        timeout = _validate.timeout(timeout, "exec timeout")
        return await exec_in(self._container(container_id), command, timeout)

    def exec_stream(
        self, container_id: str, command: tuple[str, ...], *, stdin: bool, tty: bool
    ) -> AbstractAsyncContextManager[ExecStream]:
        """Starts ``command`` in the container with its streams open (see ``_exec``)."""
        self._check()
        return exec_streaming(self._container(container_id), command, bool(stdin), bool(tty))

    async def port_forward(self, sandbox_id: str, port: int) -> trio.abc.Stream:
        """A TCP connection to ``port`` on the pod's IP (pods have no network namespace:
        what listens on the pod IP, or on every address, is reached)."""
        self._check()
        status = self._sandbox(sandbox_id).status()
        if status.state is not SandboxState.READY or not status.ip:
            raise CriError(f"pod sandbox {sandbox_id} is not ready")
        try:
            return await trio.open_tcp_stream(status.ip, port)
        except OSError as e:
            # trio's own message ("all attempts ... failed") hides the reason: its cause
            cause = e.__cause__ or e
            while isinstance(cause, BaseExceptionGroup):
                cause = cause.exceptions[0]
            raise CriError(f"failed to connect to {status.ip}:{port}: {cause}") from None

    # --- logs ---------------------------------------------------------------------------------

    async def read_log(self, container_id: str, offset: int = 0) -> LogChunk:
        self._check()
        c = self._container(container_id)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"log offset must be a non-negative integer, not {offset!r}")
        return _crilog.read_page(c.log_path, offset)

    async def wait_log(self, container_id: str, offset: int) -> None:
        self._check()
        while True:
            c = self._container(container_id)
            if c.state is ContainerState.EXITED or _crilog.size(c.log_path) > offset:
                return
            await c.log_changed.wait()
            self._check()

    # --- images -------------------------------------------------------------------------------

    async def pull_image(self, image: str) -> str:
        self._check()
        if not isinstance(image, str) or not image.strip():
            raise ImagePullError(f"{image!r} is not an image name")
        return self._images.pull(image).id

    async def image_status(self, image: str) -> Image | None:
        self._check()
        found = self._images.find(image) if isinstance(image, str) else None
        if found is None:
            return None
        return next(i for i in self._images.images() if i.id == found.id)

    async def list_images(self) -> list[Image]:
        self._check()
        return self._images.images()
