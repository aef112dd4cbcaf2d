"""Commands run in the context of a running container: ``exec_in`` runs one to its end
and keeps its output (``exec_sync``: exec probes), ``exec_streaming`` starts one with
its standard streams open (``exec_stream``: ``kubectl exec``, see ``ExecStream``).

Rules of this file:

- The command runs with the container's environment and working directory, in its
  cgroup (so its limits apply) and in its mount namespace when it has one (it sees
  the container's root and volumes), under the container's RLIMIT_AS. It leads a
  session of its own.
- A command that cannot be executed gives exit code 127 (not found) or 126 (not
  executable) with the reason on stderr, as a shell would. A command still running
  ``timeout`` seconds after the call (0: no timeout, as in CRI) is killed with its
  session and gives exit code 137 with "timed out" on stderr.
- Nothing it starts outlives the call: when the command ends (or the call is
  cancelled) what is left of its session is killed. The container's end, and the
  runtime's, kill its running commands too (they are in ``ContainerRecord.execs``
  until reaped); only the call that started a command reaps it.
- A streamed command's stdin is a pipe (or /dev/null when not asked for); with a
  terminal, a new pseudo-terminal is its stdin, stdout and stderr and its controlling
  terminal. When the command exits, what is left of its session is killed, so its
  output ends (unless something escaped the session: the caller bounds its wait for
  the output, as ``exec_in`` does with ``DRAIN_SECONDS``). It is reaped when its
  context ends, which kills it first if it still runs.
- ``StartError`` when the container is not running or the call is malformed.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import struct
import termios
from collections.abc import AsyncIterator

import trio

from . import _procs
from ._api import ContainerState, ExecResult, StartError
from ._output import Drain, collect
from ._records import ContainerRecord

MAX_OUTPUT = 1024 * 1024  # bytes kept of each of the command's stdout and stderr
DRAIN_SECONDS = 2.0  # how long a background process may keep the output open


def _argv(command: object) -> tuple[str, ...]:
    if (
        not isinstance(command, tuple | list)
        or not command
        or not all(isinstance(a, str) and "\0" not in a for a in command)
        or not command[0]
    ):
        raise StartError(f"the exec command must be a non-empty tuple of strings, not {command!r}")
    return tuple(command)


def _spec(c: ContainerRecord, argv: tuple[str, ...]) -> dict:
    if c.state is not ContainerState.RUNNING or not c.pid or c.limits is None:
        raise StartError(f"container {c.id} is not running")
    return {
        "mode": "exec", "parent": os.getpid(), "cgroups": list(c.limits.procs),
        "rlimit_as": c.limits.rlimit_as, "enter": c.pid if c.has_rootfs else 0,
        "workdir": c.workdir, "argv": list(argv), "env": [list(e) for e in c.env],
    }  # fmt: skip


async def exec_in(c: ContainerRecord, command: tuple[str, ...], timeout: float) -> ExecResult:
    """Runs ``command`` in ``c`` (see the module rules)."""
    spec = _spec(c, _argv(command))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        pid, pidfd, status_fd = _procs.spawn(spec, out_w, err_w)
    except OSError as e:
        os.close(out_r)
        os.close(err_r)
        raise StartError(f"cannot exec in container {c.id}: {e}") from e
    finally:
        os.close(out_w)
        os.close(err_w)
    c.execs.add(pid)
    stdout, stderr = bytearray(), bytearray()
    report, timed_out, code = None, False, 0
    try:
        async with trio.open_nursery() as nursery:
            drain = Drain(2)
            nursery.start_soon(collect, out_r, stdout, MAX_OUTPUT, drain)
            nursery.start_soon(collect, err_r, stderr, MAX_OUTPUT, drain)
            with trio.move_on_after(timeout or math.inf) as deadline:
                report = await _procs.read_status(status_fd)
                code = await _procs.wait_exited(pid, pidfd)
            if deadline.cancelled_caught:
                timed_out = True
                _procs.kill_session(pid)
                code = await _procs.wait_exited(pid, pidfd)
            _procs.kill_session(pid)  # what the command left behind
            _procs.reap(pid)
            c.execs.discard(pid)
            with trio.move_on_after(DRAIN_SECONDS):
                await drain.done.wait()
            nursery.cancel_scope.cancel()
    finally:
        if pid in c.execs:  # cancelled: leave nothing behind
            _procs.kill_session(pid)
            _procs.reap(pid)
            c.execs.discard(pid)
        os.close(pidfd)
    return _result(c, report, timed_out, timeout, code, bytes(stdout), bytes(stderr))


def _result(
    c: ContainerRecord, report: dict | None, timed_out: bool, timeout: float, code: int,
    stdout: bytes, stderr: bytes,
) -> ExecResult:  # fmt: skip
    if report is not None:
        if report["stage"] == "exec":
            code = 126 if report["message"].endswith("permission denied") else 127
            return ExecResult(stdout, stderr + report["message"].encode() + b"\n", code)
        if report["stage"] in ("enter", "cgroup"):  # the container ended meanwhile
            raise StartError(f"container {c.id} is not running")
        raise StartError(report["message"])
    if timed_out:
        stderr += f"command timed out after {timeout:g}s\n".encode()
    return ExecResult(stdout, stderr, code)


@contextlib.asynccontextmanager
async def exec_streaming(
    c: ContainerRecord, command: tuple[str, ...], stdin: bool, tty: bool
) -> AsyncIterator[StreamedCommand]:
    """Starts ``command`` in ``c`` with its streams open (see the module rules)."""
    spec = _spec(c, _argv(command))
    spec["tty"] = tty
    theirs: list[int] = []  # the command's ends, closed here once it has them
    ours: list[int] = []
    try:
        if tty:
            master, slave = os.openpty()
            ours.append(master)
            theirs.append(slave)
            fds = (slave, slave, slave)
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            ours += [out_r, err_r]
            theirs += [out_w, err_w]
            in_r = None
            if stdin:
                in_r, in_w = os.pipe()
                ours.append(in_w)
                theirs.append(in_r)
            fds = (in_r, out_w, err_w)
        pid, pidfd, status_fd = _procs.spawn(spec, fds[1], fds[2], stdin=fds[0])
    except OSError as e:
        for fd in ours:
            os.close(fd)
        raise StartError(f"cannot exec in container {c.id}: {e}") from e
    finally:
        for fd in theirs:
            os.close(fd)
    c.execs.add(pid)
    command_ = StreamedCommand(pid, pidfd, ours, tty)
    try:
        report = await _procs.read_status(status_fd)
        if report is not None:  # the launcher said why and exits: no command runs
            result = _result(c, report, False, 0, 127, b"", b"")
            command_.failed(result.stderr, result.exit_code)
        yield command_
    finally:
        with trio.CancelScope(shield=True):
            await command_.aclose()
        c.execs.discard(pid)


class StreamedCommand:
    """The ``ExecStream`` of a command this runtime started (see ``_api.ExecStream``)."""

    def __init__(self, pid: int, pidfd: int, fds: list[int], tty: bool) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.tty = tty
        self._exited: int | None = None
        self._failure: bytes = b""  # the launcher's reason, given as output
        if tty:
            self._terminal = trio.lowlevel.FdStream(fds[0])
            self._stdout, self._stderr, self._stdin = self._terminal, None, self._terminal
        else:
            self._terminal = None
            self._stdout = trio.lowlevel.FdStream(fds[0])
            self._stderr = trio.lowlevel.FdStream(fds[1])
            self._stdin = trio.lowlevel.FdStream(fds[2]) if len(fds) > 2 else None

    def failed(self, reason: bytes, code: int) -> None:
        self._failure, self._exited = reason, code

    async def write(self, data: bytes) -> None:
        if self._stdin is None or not data:
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stdin.send_all(data)

    async def close_stdin(self) -> None:
        if self._stdin is not None and not self.tty:
            await self._stdin.aclose()

    async def _read(self, stream: trio.lowlevel.FdStream | None, failure: bool) -> bytes:
        if failure and self._failure:
            reason, self._failure = self._failure, b""
            return reason
        if stream is None:
            return b""
        try:
            return await stream.receive_some(65536)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""  # a terminal whose last holder is gone reads EIO

    async def read_stdout(self) -> bytes:
        return await self._read(self._stdout, self.tty)

    async def read_stderr(self) -> bytes:
        return await self._read(self._stderr, not self.tty)

    def resize(self, width: int, height: int) -> None:
        if self._terminal is None:
            return
        size = struct.pack("HHHH", max(0, min(height, 0xFFFF)), max(0, min(width, 0xFFFF)), 0, 0)
        with contextlib.suppress(OSError):
            fcntl.ioctl(self._terminal.fileno(), termios.TIOCSWINSZ, size)

    async def wait(self) -> int:
        if self._exited is None:
            code = await _procs.wait_exited(self.pid, self.pidfd)
            _procs.kill_session(self.pid)  # what the command left behind
            self._exited = code
        return self._exited

    async def aclose(self) -> None:
        _procs.kill_session(self.pid)
        await _procs.wait_exited(self.pid, self.pidfd)
        _procs.reap(self.pid)
        os.close(self.pidfd)
        for stream in {id(s): s for s in (self._stdout, self._stderr, self._stdin) if s}.values():
            await stream.aclose()
