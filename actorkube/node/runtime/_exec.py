"""``exec_sync``: a command run in the context of a running container (what exec probes
and ``kubectl exec`` without a terminal use).

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
- ``StartError`` when the container is not running or the call is malformed.
"""

from __future__ import annotations

import math
import os

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
