"""Processes of containers: starting them through the launcher, waiting for them, and
signalling them, never any other process.

Rules of this file:

- Every process this runtime starts is the launcher (``_launcher.py``, run by this
  Python interpreter, isolated: ``-I -S``), which prepares the process (cgroup, mount
  namespace, working directory, limits) and then execs the command in place. It is
  given its spec on fd 4 (a memfd) and reports a failure before the exec on fd 3 (a
  pipe closed by the exec: EOF without data means the command is running).
- A started process leads its own session and process group (sid = pgid = pid).
- A main process is waited for without being reaped (``waitid(WNOWAIT)``), the rest of
  its group and session are killed, and only then is it reaped. While it is unreaped
  (a zombie at worst) its pid cannot be reused, so its group and session ids name only
  processes this runtime started.
- Processes found by scanning (``/proc``, ``cgroup.procs``) are signalled through a
  pidfd opened *before* checking that they still belong; a pid that was reused in
  between is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

LAUNCHER = Path(__file__).with_name("_launcher.py")
STATUS_FD = 3
SPEC_FD = 4
# launched fds are dup'ed above this first, so that the dup2 of one into 0..4 never
# overwrites another that is still to be placed
_HIGH_FD = 10


def _high(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, _HIGH_FD)


def spawn(spec: dict, stdout: int, stderr: int, stdin: int | None = None) -> tuple[int, int, int]:
    """Starts the launcher on ``spec`` with the given stdout, stderr and stdin (None:
    /dev/null). Returns ``(pid, pidfd, status_fd)``: read ``status_fd`` to its end
    (``read_status``) to learn whether the command was started."""
    body = json.dumps(spec).encode()
    spec_fd = os.memfd_create("actorkube-launch", os.MFD_CLOEXEC)
    status_r, status_w = os.pipe()
    opened = []
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(spec_fd, view) :]
        os.lseek(spec_fd, 0, os.SEEK_SET)
        if stdin is None:
            stdin = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            opened.append(stdin)
        placed = {0: stdin, 1: stdout, 2: stderr, STATUS_FD: status_w, SPEC_FD: spec_fd}
        actions = []
        for target, fd in placed.items():
            opened.append(_high(fd))
            actions.append((os.POSIX_SPAWN_DUP2, opened[-1], target))
        argv = [sys.executable, "-I", "-S", str(LAUNCHER)]
        pid = os.posix_spawn(sys.executable, argv, {}, file_actions=actions, setsid=True,
                             setsigmask=())  # fmt: skip
    except BaseException:
        os.close(status_r)
        raise
    finally:
        for fd in (*opened, spec_fd, status_w):
            os.close(fd)
    return pid, os.pidfd_open(pid), status_r


async def read_status(status_fd: int) -> dict | None:
    """The launcher's report on ``status_fd`` (closed here): None once the command
    runs, else ``{"stage": ..., "message": ...}`` saying what failed."""
    stream = trio.lowlevel.FdStream(status_fd)
    data = b""
    async with stream:
        while chunk := await stream.receive_some(65536):
            data += chunk
    if not data:
        return None
    try:
        report = json.loads(data)
    except ValueError:
        report = None
    if not isinstance(report, dict):
        return {"stage": "launch", "message": data.decode(errors="replace")}
    return report


async def wait_exited(pid: int, pidfd: int) -> int:
    """Waits until ``pid`` (a child of this process) has exited and returns its exit
    code as Kubernetes shows it (128 + signal number for a signal), leaving it
    unreaped."""
    while True:
        result = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if result is not None and result.si_pid == pid:
            if result.si_code == os.CLD_EXITED:
                return result.si_status
            return 128 + result.si_status
        await trio.lowlevel.wait_readable(pidfd)


def reap(pid: int) -> None:
    """Reaps ``pid`` (which has exited: see ``wait_exited``)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def signal_group(pgid: int, sig: int) -> None:
    """``sig`` to the process group ``pgid``, whose leader this runtime has not reaped."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def signal_verified(pids: Iterable[int], sig: int, belongs: Callable[[int], bool]) -> None:
    """``sig`` to each of ``pids`` that still ``belongs`` once a pidfd pins it."""
    for pid in pids:
        try:
            pidfd = os.pidfd_open(pid)
        except (ProcessLookupError, OSError):
            continue
        try:
            if belongs(pid):
                signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)


def stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (index 0 is the state,
    2 the process group, 3 the session, 11/12 utime/stime, 21 rss), or None if the
    process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rfind(b")") + 2 :].decode().split()


def session_members(sid: int) -> list[tuple[int, list[str]]]:
    """The processes of session ``sid`` with their ``stat`` fields."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = stat(int(entry.name))
        if fields is not None and fields[3] == str(sid):
            members.append((int(entry.name), fields))
    return members


def kill_session(sid: int) -> None:
    """SIGKILL to the group ``sid`` and to every process of the session ``sid`` (which
    leave the group but not the session with ``setpgid``); the session's leader must
    be unreaped."""
    signal_group(sid, signal.SIGKILL)

    def in_session(pid: int) -> bool:
        fields = stat(pid)
        return fields is not None and fields[3] == str(sid)

    signal_verified((pid for pid, _ in session_members(sid)), signal.SIGKILL, in_session)
