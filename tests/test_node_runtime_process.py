"""The process runtime with real processes: lifecycle and exit codes, logs, pod IPs,
graceful stop, mounts, limits, exec, images, events, stats, closing and restarting,
and bad input; plus its pure parts (pod IPs, CRI log lines, the image catalogue, the
cgroup v2 driver on a fake cgroup tree).

These tests wait on real things (a container's exit through ``wait_log``, a log line,
a TCP connection, a pidfd), always inside ``trio.fail_after``, never on sleeps; they do
not use MockClock, whose autojump would race the processes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import random
import re
import signal
import sys
import uuid
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing
from pids import wait_exited

from actorkube.node.runtime import _process, _procs, _records
from actorkube.node.runtime._api import (
    ContainerConfig,
    ContainerState,
    CreateContainerError,
    EventType,
    ImagePullError,
    Mount,
    NotFound,
    PodSandboxConfig,
    Resources,
    RuntimeFailure,
    SandboxState,
    StartError,
)
from actorkube.node.runtime._crilog import MAX_LINE, StreamLines, read_page
from actorkube.node.runtime._images import ImageCatalogue, command_line, reference
from actorkube.node.runtime._limits import (
    CgroupV1,
    CgroupV2,
    _enable,
    cpu_weight,
    own_cgroup,
)
from actorkube.node.runtime._podip import PodIPAllocator, PodIPsExhausted
from actorkube.node.runtime._process import ProcessRuntime

WAIT = 15  # bound, in seconds, of every wait on a real process
POD_CIDR = "127.250.0.0/16"
PROGRAMS = Path(__file__).with_name("node_programs")
BEHAVE = str(PROGRAMS / "behave.py")
ENTRY = re.compile(
    rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (stdout|stderr) ([PF]) (.*)$"
)
ROOT = os.geteuid() == 0


# --- helpers ---------------------------------------------------------------------------


@pytest.fixture
async def runtime(tmp_path, nursery):
    rt = ProcessRuntime(tmp_path / "runtime", POD_CIDR)
    await nursery.start(rt.run)
    yield rt
    await rt.aclose()


def pod(name: str = "pod", **labels: str) -> PodSandboxConfig:
    return PodSandboxConfig(name=name, namespace="default", uid=f"uid-{name}",
                            labels=labels)  # fmt: skip


async def sandbox(rt: ProcessRuntime, name: str = "pod") -> tuple[str, str]:
    """A new sandbox: its id and IP."""
    sid = await rt.run_pod_sandbox(pod(name))
    return sid, (await rt.pod_sandbox_status(sid)).ip


def behave(*args: str, ip: str = "", **fields) -> ContainerConfig:
    envs = (("POD_IP", ip),) if ip else ()
    return ContainerConfig(name=fields.pop("name", "c"), image="python",
                           command=("python3", BEHAVE, *args), envs=envs, **fields)  # fmt: skip


def shell(script: str, **fields) -> ContainerConfig:
    return ContainerConfig(name=fields.pop("name", "c"), image="busybox",
                           command=("sh", "-c", script), **fields)  # fmt: skip


async def run(rt: ProcessRuntime, sid: str, config: ContainerConfig) -> str:
    cid = await rt.create_container(sid, config, pod())
    await rt.start_container(cid)
    return cid


async def exited(rt: ProcessRuntime, cid: str):
    """The container's status once it has exited (``wait_log`` returns at the exit)."""
    with trio.fail_after(WAIT):
        await rt.wait_log(cid, 2**62)
    return await rt.container_status(cid)


def entries(data: bytes) -> list[tuple[str, str, str]]:
    """``(stream, tag, text)`` of each CRI log entry, checking the format."""
    out = []
    for line in data.splitlines():
        m = ENTRY.match(line)
        assert m, line
        out.append((m[2].decode(), m[3].decode(), m[4].decode()))
    return out


async def read_all(rt: ProcessRuntime, cid: str) -> tuple[bytes, int]:
    """The whole log, and the offset after it."""
    data, offset = b"", 0
    while chunk := await rt.read_log(cid, offset):
        if not chunk.data:
            return data, offset
        data, offset = data + chunk.data, chunk.next_offset


async def log(rt: ProcessRuntime, cid: str) -> list[tuple[str, str, str]]:
    return entries((await read_all(rt, cid))[0])


async def wait_for_line(rt: ProcessRuntime, cid: str, text: str, count: int = 1) -> list[str]:
    """Follows the log until ``count`` lines hold ``text``; the lines so far."""
    with trio.fail_after(WAIT):
        while True:
            state = (await rt.container_status(cid)).state
            data, offset = await read_all(rt, cid)
            lines = [t for _, _, t in entries(data)]
            if sum(text in line for line in lines) >= count:
                return lines
            assert state is not ContainerState.EXITED, lines
            await rt.wait_log(cid, offset)


def stat(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` after the command name (0: state, 3: session), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie waiting for its parent has)."""
    fields = stat(pid)
    return fields is None or fields[0] == "Z"


def port() -> int:
    return random.randrange(20000, 60000)


# --- lifecycle ----------------------------------------------------------------------------


async def test_lifecycle_states_exit_codes_and_events(runtime):
    sid, _ = await sandbox(runtime)
    events = runtime.events()
    cid = await runtime.create_container(sid, shell("exit 0", name="ok"), pod())
    assert (await runtime.container_status(cid)).state is ContainerState.CREATED
    await runtime.start_container(cid)
    done = await exited(runtime, cid)
    assert (done.state, done.exit_code, done.reason) == (ContainerState.EXITED, 0, "Completed")
    assert done.created_at <= done.started_at <= done.finished_at
    failed = await exited(runtime, await run(runtime, sid, shell("exit 3", name="bad")))
    assert (failed.exit_code, failed.reason) == (3, "Error")
    assert [c.name for c in await runtime.list_containers(sandbox_id=sid)] == ["ok", "bad"]
    await runtime.remove_container(cid)
    with pytest.raises(NotFound):
        await runtime.container_status(cid)
    seen = []
    with trio.fail_after(WAIT):
        while len(seen) < 7:
            seen.append(await events.receive())
    mine = [e.type for e in seen if e.container_id == cid]
    assert mine == [EventType.CREATED, EventType.STARTED, EventType.STOPPED, EventType.DELETED]
    assert all(e.sandbox_id == sid for e in seen)


async def test_a_container_removed_while_its_log_drains_is_stopped_first(runtime, monkeypatch):
    """Its main process has exited (pid 0) but its log is still being read: removing
    it waits for the exit to be recorded, so STOPPED comes before DELETED."""
    outputs_ended, release = trio.Semaphore(0), trio.Event()
    real_pump = _process.pump_log

    async def slow_drain(fd, stream, write, clock, drain):
        await real_pump(fd, stream, write, clock, _process.Drain(1))
        outputs_ended.release()
        await release.wait()  # as an escaped process would keep the log open
        drain.finished()

    monkeypatch.setattr(_process, "pump_log", slow_drain)
    monkeypatch.setattr(_process, "LOG_DRAIN_SECONDS", WAIT)
    sid, _ = await sandbox(runtime)
    events = runtime.events()
    cid = await run(runtime, sid, shell("echo bye"))
    c = runtime._containers[cid]
    if c.pid:  # else the supervisor has reaped it already
        await wait_exited(c.pid)
    with trio.fail_after(WAIT):
        for _ in range(2):  # stdout and stderr
            await outputs_ended.acquire()
    await trio.testing.wait_all_tasks_blocked()  # the supervisor has seen the exit
    assert (c.pid, c.state) == (0, ContainerState.RUNNING)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(runtime.remove_container, cid)
            await trio.testing.wait_all_tasks_blocked()
            release.set()
    with trio.fail_after(WAIT):
        seen = [(await events.receive()).type for _ in range(4)]
    assert seen == [EventType.CREATED, EventType.STARTED, EventType.STOPPED, EventType.DELETED]
    with pytest.raises(NotFound):
        await runtime.container_status(cid)


async def test_a_killed_container_shows_128_plus_the_signal(runtime):
    sid, _ = await sandbox(runtime)
    status = await exited(runtime, await run(runtime, sid, shell("kill -SEGV $$")))
    assert (status.exit_code, status.reason) == (128 + signal.SIGSEGV, "Error")


async def test_command_args_env_and_working_dir(runtime, tmp_path):
    sid, _ = await sandbox(runtime, "envpod")
    script = ("import os, sys; print(sys.argv[1:], os.getcwd(), os.environ['GREETING'], "
              "os.environ['HOSTNAME'], os.path.dirname(sys.executable))")  # fmt: skip
    config = ContainerConfig(
        name="c", image="python:3.11", command=("python3", "-c", script), args=("a", "b c"),
        envs=(("GREETING", "hello"),), working_dir="/tmp",
    )  # fmt: skip
    cid = await run(runtime, sid, config)
    assert (await exited(runtime, cid)).exit_code == 0
    [(_, _, text)] = await log(runtime, cid)
    # python3 is the runtime's own interpreter, first on the python image's PATH
    assert text == f"['a', 'b c'] /tmp hello envpod {os.path.dirname(sys.executable)}"
    # the image's own entrypoint when the container gives none: pause sleeps until stopped
    pause_image = ContainerConfig(name="pause", image="registry.k8s.io/pause:3.9")
    pause = await run(runtime, sid, pause_image)
    assert (await runtime.exec_sync(pause, ("true",), WAIT)).exit_code == 0
    assert (await runtime.container_status(pause)).state is ContainerState.RUNNING
    start = trio.current_time()
    await runtime.stop_container(pause, WAIT)
    assert trio.current_time() - start < WAIT
    # 0 from its SIGTERM handler; 143 if SIGTERM came before the interpreter set it
    assert (await runtime.container_status(pause)).exit_code in (0, 143)


# --- logs ---------------------------------------------------------------------------------


async def test_logs_in_cri_format_with_stderr_and_partial_lines(runtime):
    sid, _ = await sandbox(runtime)
    long = "x" * (2 * MAX_LINE + 10)
    script = f"echo out; echo err >&2; printf 'dos\\r\\n'; echo {long}; printf unfinished"
    cid = await run(runtime, sid, shell(script))
    assert (await exited(runtime, cid)).exit_code == 0
    got = await log(runtime, cid)
    assert ("stdout", "F", "out") in got and ("stderr", "F", "err") in got
    stdout = [(tag, text) for stream, tag, text in got if stream == "stdout"]
    assert stdout == [
        ("F", "out"), ("F", "dos"),
        ("P", "x" * MAX_LINE), ("P", "x" * MAX_LINE), ("F", "x" * 10),
        ("P", "unfinished"),
    ]  # fmt: skip
    first = await runtime.read_log(cid, 0)
    rest = await runtime.read_log(cid, first.next_offset)
    assert rest.data == b"" and rest.next_offset == first.next_offset


async def test_a_follower_is_woken_by_new_lines_and_by_the_exit(runtime):
    sid, ip = await sandbox(runtime)
    p = port()
    cid = await run(runtime, sid, behave("wait-connection", str(p), ip=ip))
    with trio.fail_after(WAIT):
        await runtime.wait_log(cid, 0)
    first = await runtime.read_log(cid)
    assert entries(first.data) == [("stdout", "F", "ready")]
    woken = trio.Event()

    async def follow():
        await runtime.wait_log(cid, first.next_offset)
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await trio.testing.wait_all_tasks_blocked()
        assert not woken.is_set()
        with trio.fail_after(WAIT):
            await (await trio.open_tcp_stream(ip, p)).aclose()
            await woken.wait()
    more = await runtime.read_log(cid, first.next_offset)
    assert entries(more.data) == [("stdout", "F", "connected")]
    assert (await exited(runtime, cid)).exit_code == 0
    with trio.fail_after(WAIT):
        await runtime.wait_log(cid, more.next_offset)  # exited: returns at once


async def test_log_path_under_the_log_directory_and_labels(runtime, tmp_path):
    logs = tmp_path / "pods" / "default_pod_uid"
    config = attrs.evolve(pod("labelled", app="web", tier="front"), log_directory=str(logs))
    sid = await runtime.run_pod_sandbox(config)
    await runtime.run_pod_sandbox(pod("other", app="db"))
    cid = await runtime.create_container(
        sid, shell("echo hi", log_path="c/0.log", labels={"app": "web", "n": "1"}), config
    )
    await runtime.start_container(cid)
    await exited(runtime, cid)
    assert (logs / "c" / "0.log").read_bytes().endswith(b" stdout F hi\n")
    assert [s.id for s in await runtime.list_pod_sandboxes({"app": "web"})] == [sid]
    assert len(await runtime.list_pod_sandboxes()) == 2
    assert [c.id for c in await runtime.list_containers({"n": "1"})] == [cid]
    assert await runtime.list_containers({"n": "2"}) == []
    assert await runtime.list_containers(sandbox_id="elsewhere") == []
    await runtime.remove_container(cid)
    assert not (logs / "c" / "0.log").exists()  # a removed container's log is gone


# --- pod IPs ------------------------------------------------------------------------------


async def test_two_pods_listen_on_one_port_on_their_own_ips(runtime):
    p = port()
    pods = {}
    for name in ("alpha", "beta"):
        sid, ip = await sandbox(runtime, name)
        cid = await run(runtime, sid, behave("serve", name, str(p), ip=ip))
        pods[name] = (ip, cid)
    assert pods["alpha"][0] != pods["beta"][0]
    for name, (ip, cid) in pods.items():
        await wait_for_line(runtime, cid, "listening")
        with trio.fail_after(WAIT):
            stream = await trio.open_tcp_stream(ip, p)
            assert await stream.receive_some(100) == name.encode()
            await stream.aclose()


async def test_pod_ips_are_handed_out_once_and_released_with_the_sandbox(runtime):
    first, ip1 = await sandbox(runtime, "one")
    _, ip2 = await sandbox(runtime, "two")
    assert ip1 != ip2 and ip1.startswith("127.250.")
    await runtime.stop_pod_sandbox(first)
    assert (await runtime.pod_sandbox_status(first)).state is SandboxState.NOTREADY
    assert (await runtime.pod_sandbox_status(first)).ip == ip1  # kept until removed
    await runtime.remove_pod_sandbox(first)
    assert runtime._ips.used == {ipaddress.IPv4Address(ip2)}


def test_pod_ip_allocator():
    a = PodIPAllocator.from_cidr("127.0.0.0/29")  # .0 network, .1 the node, .7 broadcast
    got = [a.allocate() for _ in range(5)]
    assert got == [f"127.0.0.{i}" for i in (2, 3, 4, 5, 6)]
    with pytest.raises(PodIPsExhausted):
        a.allocate()
    a.release("127.0.0.3")
    assert a.allocate() == "127.0.0.3"
    for bad in ("10.0.0.0/8", "127.0.0.1/32", "127.0.0.0/33", "not a cidr", 12):
        with pytest.raises(ValueError):
            PodIPAllocator.from_cidr(bad)


async def test_no_ip_left_is_a_runtime_failure(tmp_path, nursery):
    rt = ProcessRuntime(tmp_path / "rt", "127.251.0.0/30")
    await nursery.start(rt.run)
    await rt.run_pod_sandbox(pod("a"))
    await rt.run_pod_sandbox(pod("b"))
    with pytest.raises(RuntimeFailure, match="IP"):
        await rt.run_pod_sandbox(pod("c"))
    await rt.aclose()


# --- stopping -----------------------------------------------------------------------------


async def test_graceful_stop_of_a_program_that_handles_sigterm(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, behave("handle-term"))
    await wait_for_line(runtime, cid, "ready")
    with trio.fail_after(WAIT):
        await runtime.stop_container(cid, WAIT)
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED, 0, "Completed"), await log(runtime, cid)  # fmt: skip
    assert [t for _, _, t in await log(runtime, cid)] == ["ready", "got SIGTERM"]
    await runtime.stop_container(cid, 1)  # stopping an exited container: nothing happens


async def test_a_program_that_ignores_sigterm_is_killed_at_the_timeout_with_its_group(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, behave("ignore-term"))
    [line] = await wait_for_line(runtime, cid, "ready")
    pid, child = (int(x.split("=")[1]) for x in line.split()[1:])
    start = trio.current_time()
    with trio.fail_after(WAIT):
        await runtime.stop_container(cid, 0.3)
    assert trio.current_time() - start >= 0.3
    status = await runtime.container_status(cid)
    assert (status.exit_code, status.reason) == (137, "Error")
    await wait_exited(child)
    assert gone(pid) and gone(child)


async def test_the_rest_of_a_container_dies_with_its_main_process(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("sleep 1000 & echo child=$!"))
    assert (await exited(runtime, cid)).exit_code == 0
    [(_, _, line)] = await log(runtime, cid)
    await wait_exited(int(line.split("=")[1]))


# --- mounts -------------------------------------------------------------------------------

needs_root = pytest.mark.skipif(not ROOT, reason="mount namespaces need root")


@needs_root
async def test_an_empty_dir_shared_by_two_containers_and_a_readonly_mount(runtime, tmp_path):
    assert runtime.isolation.mount_namespaces, runtime.isolation
    volume = tmp_path / "empty-dir"
    volume.mkdir()
    target = f"/data-{uuid.uuid4().hex[:8]}"
    sid, _ = await sandbox(runtime)
    writer = shell(f"echo hello > {target}/msg", name="writer",
                   mounts=(Mount(target, str(volume)),))  # fmt: skip
    assert (await exited(runtime, await run(runtime, sid, writer))).exit_code == 0
    assert (volume / "msg").read_text() == "hello\n"
    reader = shell(f"cat {target}/msg; touch {target}/other", name="reader",
                   mounts=(Mount(target, str(volume), readonly=True),))  # fmt: skip
    cid = await run(runtime, sid, reader)
    status = await exited(runtime, cid)
    texts = [t for _, _, t in await log(runtime, cid)]
    assert texts[0] == "hello" and "Read-only file system" in texts[1]
    assert status.exit_code != 0
    assert not (volume / "other").exists()
    assert not os.path.exists(target)  # made inside the containers only


@needs_root
async def test_the_root_filesystem_is_private_and_nothing_is_made_on_the_host(runtime, tmp_path):
    name = f"actorkube-test-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "file"
    source.write_text("mounted\n")
    sid, _ = await sandbox(runtime)
    # /dev is another filesystem of the host: files made there for mounts are made in
    # an overlay of it (three of them, to show it is made once)
    targets = [f"/dev/{name}", f"/dev/{name}-2", f"/dev/{name}-dir/3"]
    script = f"echo x > /etc/{name} && cat /etc/{name} {' '.join(targets)} && ls /dev/null"
    mounts = tuple(Mount(t, str(source)) for t in targets)
    cid = await run(runtime, sid, shell(script, mounts=mounts))
    assert (await exited(runtime, cid)).exit_code == 0, await log(runtime, cid)
    texts = [t for _, _, t in await log(runtime, cid)]
    assert texts == ["x", "mounted", "mounted", "mounted", "/dev/null"]
    assert not os.path.exists(f"/etc/{name}")
    assert not any(os.path.exists(t) for t in targets)
    assert not os.path.exists(f"/dev/{name}-dir")


@needs_root
async def test_a_mount_that_cannot_be_made_fails_the_container_not_the_volume(runtime, tmp_path):
    sid, _ = await sandbox(runtime)
    config = shell("echo ran", mounts=(Mount("/etc/hostname", str(tmp_path)),))
    cid = await runtime.create_container(sid, config, pod())
    with pytest.raises(CreateContainerError, match="cannot mount a directory at /etc/hostname"):
        await runtime.start_container(cid)
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED, 128, "StartError")  # fmt: skip
    assert await log(runtime, cid) == []  # the command never ran


@needs_root
async def test_exec_sees_the_container_env_working_dir_and_mounts(runtime, tmp_path):
    volume = tmp_path / "v"
    volume.mkdir()
    (volume / "f").write_text("in volume")
    sid, _ = await sandbox(runtime)
    config = shell("exec sleep 1000", envs=(("WHO", "me"),), working_dir="/work-here",
                   mounts=(Mount("/work-here", str(volume)),))  # fmt: skip
    cid = await run(runtime, sid, config)
    result = await runtime.exec_sync(cid, ("sh", "-c", "echo $WHO $(pwd) $(cat f)"), WAIT)
    assert (result.exit_code, result.stdout) == (0, b"me /work-here in volume\n")


# --- exec ---------------------------------------------------------------------------------


async def test_exec_sync_success_failure_not_found_and_timeout(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("exec sleep 1000"))
    ok = await runtime.exec_sync(cid, ("sh", "-c", "echo out; echo err >&2"), WAIT)
    assert (ok.exit_code, ok.stdout, ok.stderr) == (0, b"out\n", b"err\n")
    assert (await runtime.exec_sync(cid, ("sh", "-c", "exit 3"), WAIT)).exit_code == 3
    missing = await runtime.exec_sync(cid, ("no-such-command",), WAIT)
    assert missing.exit_code == 127 and b"not found" in missing.stderr
    start = trio.current_time()
    slow = await runtime.exec_sync(cid, ("sh", "-c", "echo started; exec sleep 1000"), 0.3)
    assert trio.current_time() - start < WAIT
    assert slow.exit_code == 137 and b"timed out" in slow.stderr and slow.stdout == b"started\n"
    for bad in ((), ("",), "sh", (1,)):
        with pytest.raises(StartError, match="exec command"):
            await runtime.exec_sync(cid, bad, 1)
    with pytest.raises(ValueError):
        await runtime.exec_sync(cid, ("true",), -1)
    await runtime.stop_container(cid, 0)
    with pytest.raises(StartError, match="not running"):
        await runtime.exec_sync(cid, ("true",), 1)


async def test_an_exec_running_when_run_ends_is_killed_not_an_error(tmp_path):
    """run() ends (its nursery cancelled, no aclose) during an exec: the command is
    killed with everything else and the call returns 137, never a raw ECHILD."""
    rt = ProcessRuntime(tmp_path / "rt", POD_CIDR)
    results = []
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as callers, trio.open_nursery() as kubelet:
            await kubelet.start(rt.run)
            sid, _ = await sandbox(rt)
            cid = await run(rt, sid, shell("exec sleep 1000"))

            async def exec_sleep():
                results.append(await rt.exec_sync(cid, ("sleep", "1000"), 0))

            callers.start_soon(exec_sleep)
            await trio.testing.wait_all_tasks_blocked()
            [pid] = rt._containers[cid].execs
            kubelet.cancel_scope.cancel()
    assert [r.exit_code for r in results] == [137]
    assert gone(pid) and not rt._containers[cid].execs


async def _drain(read) -> bytes:
    data = b""
    while chunk := await read():
        data += chunk
    return data


async def test_a_streamed_exec_reads_stdin_to_its_end_and_keeps_stdout_and_stderr_apart(
    runtime,
):  # fmt: skip
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("exec sleep 1000", envs=(("WHO", "me"),)))
    script = "cat; echo $WHO >&2; exit 5"
    with trio.fail_after(WAIT):
        async with runtime.exec_stream(cid, ("sh", "-c", script), stdin=True, tty=False) as cmd:
            await cmd.write(b"line one\n")
            await cmd.write(b"line two\n")
            await cmd.close_stdin()
            await cmd.write(b"after the end: dropped")
            assert await _drain(cmd.read_stdout) == b"line one\nline two\n"
            assert await _drain(cmd.read_stderr) == b"me\n"
            assert await cmd.wait() == 5
            pid = cmd.pid
        assert gone(pid) and not runtime._containers[cid].execs


async def test_a_streamed_exec_without_stdin_reads_dev_null_and_a_missing_command_says_so(
    runtime,
):  # fmt: skip
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("exec sleep 1000"))
    with trio.fail_after(WAIT):
        async with runtime.exec_stream(cid, ("cat",), stdin=False, tty=False) as cmd:
            await cmd.write(b"nobody reads this")
            assert await _drain(cmd.read_stdout) == b""
            assert await cmd.wait() == 0
        async with runtime.exec_stream(cid, ("no-such-command",), stdin=True,
                                       tty=False) as cmd:  # fmt: skip
            assert b"not found" in await _drain(cmd.read_stderr)
            assert await _drain(cmd.read_stdout) == b""
            assert await cmd.wait() == 127
    with pytest.raises(StartError, match="exec command"):
        async with runtime.exec_stream(cid, (), stdin=False, tty=False):
            pass
    await runtime.stop_container(cid, 0)
    with pytest.raises(StartError, match="not running"):
        async with runtime.exec_stream(cid, ("true",), stdin=False, tty=False):
            pass


async def test_a_streamed_exec_with_a_terminal_is_sized_and_is_the_controlling_tty(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("exec sleep 1000"))
    # stty reads the size set through the terminal; `tty` names the terminal of stdin;
    # ps -o tty shows that it is the session's controlling terminal (not "?")
    script = "read x; stty size; tty; ps -o tty= -p $$; echo err >&2; exit $x"
    with trio.fail_after(WAIT):
        async with runtime.exec_stream(cid, ("sh", "-c", script), stdin=True, tty=True) as cmd:
            cmd.resize(100, 30)
            await cmd.write(b"7\n")
            await cmd.close_stdin()  # a terminal's input does not end this way
            out = await _drain(cmd.read_stdout)
            assert await _drain(cmd.read_stderr) == b""
            assert await cmd.wait() == 7
    lines = out.decode().replace("\r", "").split("\n")
    assert lines[0] == "7"  # the terminal echoes what it was given
    assert lines[1] == "30 100"
    assert lines[2].startswith("/dev/pts/")
    assert lines[3].strip() == lines[2].removeprefix("/dev/")
    assert lines[4] == "err"


async def test_a_streamed_exec_left_running_is_killed_with_what_it_started(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, shell("exec sleep 1000"))
    with trio.fail_after(WAIT):
        async with runtime.exec_stream(cid, ("sh", "-c", "sleep 1000 & echo $!; wait"),
                                       stdin=False, tty=False) as cmd:  # fmt: skip
            child = int((await cmd.read_stdout()).decode())
            pid = cmd.pid
        assert gone(pid)
        await wait_exited(child)
    assert not runtime._containers[cid].execs


# --- limits and stats ---------------------------------------------------------------------


async def test_exceeding_the_memory_limit_ends_the_container(runtime):
    sid, _ = await sandbox(runtime)
    limited = behave("allocate", "256", resources=Resources(memory_bytes=64 * 1024 * 1024))
    status = await exited(runtime, await run(runtime, sid, limited))
    if runtime.isolation.limits.startswith("cgroup"):
        assert (status.exit_code, status.reason) == (137, "OOMKilled")
    else:
        assert (status.exit_code, status.reason) == (1, "Error")
    free = await exited(runtime, await run(runtime, sid, behave("allocate", "16")))
    assert (free.exit_code, free.reason) == (0, "Completed")


async def test_without_cgroups_memory_is_an_address_space_rlimit(tmp_path, nursery):
    rt = ProcessRuntime(tmp_path / "rt", POD_CIDR, cgroup_root=str(tmp_path / "no-cgroups"))
    await nursery.start(rt.run)
    assert rt.isolation.limits == "rlimit" and "cgroup v1" in rt.isolation.limits_detail
    sid, _ = await sandbox(rt)
    limited = behave("allocate", "256", resources=Resources(memory_bytes=128 * 1024 * 1024))
    cid = await run(rt, sid, limited)
    status = await exited(rt, cid)
    assert (status.exit_code, status.reason) == (1, "Error")
    assert any("MemoryError" in t for _, _, t in await log(rt, cid))
    holder = await run(rt, sid, behave("spin", "1000", "40"))
    await wait_for_line(rt, holder, "holding")
    stats = await rt.container_stats(holder)
    assert stats.memory_bytes >= 40 * 1024 * 1024
    await rt.aclose()


async def test_stats_of_a_busy_container(runtime):
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, behave("spin", "100", "40"))
    await wait_for_line(runtime, cid, "holding")
    start = trio.current_time()
    await runtime.container_stats(cid)  # the window starts here
    # three more marks (one may have been on its way to the log): at least 100 ms of
    # CPU were used in the window, however busy the machine is
    seen = sum(line == "spun" for line in await wait_for_line(runtime, cid, "holding"))
    await wait_for_line(runtime, cid, "spun", count=seen + 3)
    stats = await runtime.container_stats(cid)
    elapsed = trio.current_time() - start
    assert stats.id == cid and stats.cpu_millis >= 0.9 * 100 / elapsed
    assert stats.memory_bytes >= 40 * 1024 * 1024
    await runtime.stop_container(cid, 0)
    assert (await runtime.container_stats(cid)).cpu_millis == 0


async def test_a_cpu_limit_caps_the_usage(runtime):
    if not runtime.isolation.limits.startswith("cgroup"):
        pytest.skip(f"no CPU limit without cgroups ({runtime.isolation.limits_detail})")
    sid, _ = await sandbox(runtime)
    cid = await run(runtime, sid, behave("spin", "50", resources=Resources(cpu_millis=200)))
    start = trio.current_time()
    await runtime.container_stats(cid)  # the window starts here
    await wait_for_line(runtime, cid, "spun", count=3)
    elapsed = trio.current_time() - start
    stats = await runtime.container_stats(cid)
    assert stats.cpu_millis <= 300, stats
    assert elapsed >= 0.5  # 150 ms of CPU at 200m takes 750 ms


# --- images -------------------------------------------------------------------------------


async def test_unknown_images_with_and_without_a_command(runtime):
    sid, _ = await sandbox(runtime)
    assert await runtime.image_status("example.com/app:1") is None
    ref = await runtime.pull_image("example.com/app:1")
    assert (await runtime.image_status("example.com/app:1")).id == ref
    with pytest.raises(ImagePullError, match="not in the local image catalogue"):
        await runtime.create_container(sid, ContainerConfig(name="c", image="example.com/app:1"),
                                       pod())  # fmt: skip
    cid = await run(runtime, sid, ContainerConfig(name="c", image="example.com/app:1",
                                                  command=("sh", "-c", "exit 4")))  # fmt: skip
    assert (await exited(runtime, cid)).exit_code == 4
    names = {n for image in await runtime.list_images() for n in image.names}
    assert {"python", "busybox", "registry.k8s.io/pause", "example.com/app:1"} <= names
    with pytest.raises(ImagePullError):
        await runtime.pull_image("")


def test_image_references_and_kubernetes_command_rules(tmp_path):
    assert reference("python") == ("python", "latest")
    assert reference("docker.io/library/python:3.11@sha256:ab") == ("python", "3.11")
    assert reference("localhost:5000/app") == ("localhost:5000/app", "latest")
    catalogue = ImageCatalogue.load()
    python = catalogue.find("python:3.12-slim")
    assert python.cmd == (sys.executable,)
    assert dict(python.env)["PATH"].startswith(os.path.dirname(sys.executable) + ":")
    image = attrs.evolve(python, entrypoint=("ep",), cmd=("c1", "c2"))
    assert command_line(image, (), ()) == ("ep", "c1", "c2")
    assert command_line(image, (), ("a",)) == ("ep", "a")
    assert command_line(image, ("cmd",), ()) == ("cmd",)
    assert command_line(image, ("cmd",), ("a",)) == ("cmd", "a")
    extra = tmp_path / "images.yaml"
    extra.write_text("myorg/web:\n  entrypoint: [/bin/echo]\n  cmd: [hi]\n  env: {A: b}\n"
                     "python:2:\n  cmd: [/usr/bin/python2]\n")  # fmt: skip
    catalogue = ImageCatalogue.load(extra)
    web = catalogue.find("docker.io/myorg/web:7")
    assert (web.entrypoint, web.cmd, dict(web.env)["A"]) == (("/bin/echo",), ("hi",), "b")
    assert catalogue.find("python:2").cmd == ("/usr/bin/python2",)
    assert catalogue.find("python:3").cmd == (sys.executable,)
    for body in ("[1, 2]", "x: {entrypoint: echo}", "x: {cmd: [1]}", "x: {bogus: []}",
                 "x: {env: {A: 1}}", ": : :"):  # fmt: skip
        extra.write_text(body)
        with pytest.raises(ValueError):
            ImageCatalogue.load(extra)
    with pytest.raises(ValueError):
        ImageCatalogue.load(tmp_path / "missing.yaml")


# --- CRI log lines (pure) -----------------------------------------------------------------


def test_stream_lines_cut_and_keep_partial_lines():
    lines = StreamLines("stdout")
    assert lines.feed(b"ab", 0.0) == b""
    out = entries(lines.feed(b"c\nde", 1.5) + lines.close(2.0))
    assert out == [("stdout", "F", "abc"), ("stdout", "P", "de")]
    assert lines.feed(b"\n", 3.0) == b"1970-01-01T00:00:03Z stdout F \n"
    assert lines.close(4.0) == b""


def test_read_page_ends_after_a_whole_entry(tmp_path):
    path = tmp_path / "log"
    body = b"".join(StreamLines("stderr").feed(b"%d\n" % i, 0) for i in range(100))
    path.write_bytes(body)
    page = read_page(str(path), 0, limit=100)
    assert page.data.endswith(b"\n") and len(page.data) <= 100
    assert body.startswith(page.data)
    assert read_page(str(tmp_path / "none"), 5).next_offset == 5


# --- closing, restarting, crashing ---------------------------------------------------------


def _session_of(pid: int) -> int:
    return -1 if gone(pid) else int(stat(pid)[3])


def living_in_sessions(sessions: set[int]) -> list[int]:
    """The processes (not zombies) in /proc that belong to one of ``sessions``."""
    return [int(e.name) for e in os.scandir("/proc")
            if e.name.isdigit() and _session_of(int(e.name)) in sessions]  # fmt: skip


async def test_aclose_leaves_no_process_and_a_new_runtime_finds_them_exited(tmp_path, nursery):
    root = tmp_path / "rt"
    rt = ProcessRuntime(root, POD_CIDR)
    await nursery.start(rt.run)
    sid, ip = await sandbox(rt)
    stubborn = await run(rt, sid, behave("ignore-term", name="stubborn"))
    [stubborn_line] = await wait_for_line(rt, stubborn, "ready")
    script = "sleep 1000 & echo pid=$$ child=$!; exec sleep 1000"
    family = await run(rt, sid, shell(script, name="family"))
    [family_line] = await wait_for_line(rt, family, "child=")
    pids = [[int(x.split("=")[1]) for x in line.split()[-2:]]
            for line in (stubborn_line, family_line)]  # fmt: skip
    mains, children = {p[0] for p in pids}, {p[1] for p in pids}
    never = await rt.create_container(sid, shell("true", name="never"), pod())
    assert len(living_in_sessions(mains)) == 4
    await rt.aclose()
    for pid in children:
        await wait_exited(pid)
    assert living_in_sessions(mains) == []
    with pytest.raises(RuntimeFailure, match="closed"):
        await rt.list_containers()
    events = rt.events()
    with trio.fail_after(WAIT):
        kinds = [e.type async for e in events]
    assert kinds.count(EventType.STOPPED) == 2

    again = ProcessRuntime(root, POD_CIDR)
    await nursery.start(again.run)
    [s] = await again.list_pod_sandboxes()
    assert (s.id, s.state, s.ip) == (sid, SandboxState.NOTREADY, ip)
    found = {c.name: c for c in await again.list_containers()}
    assert (found["stubborn"].state, found["stubborn"].exit_code) == (ContainerState.EXITED, 137)
    assert found["never"].state is ContainerState.CREATED
    with pytest.raises(StartError, match="not ready"):
        await again.start_container(never)
    assert [t for _, _, t in await log(again, stubborn)] == [stubborn_line]  # logs stay
    await again.remove_pod_sandbox(sid)
    assert await again.list_containers() == [] and not again._ips.used
    await again.aclose()


async def test_a_crashed_runtime_leaves_nothing_running_once_restarted(tmp_path, nursery):
    root = tmp_path / "rt"
    crash = await trio.run_process(
        [sys.executable, str(PROGRAMS / "crashing_runtime.py"), str(root), POD_CIDR],
        capture_stdout=True, check=False,
    )  # fmt: skip
    assert crash.returncode == -signal.SIGKILL
    main, child = (int(x.split("=")[1]) for x in crash.stdout.decode().split())
    await wait_exited(main)  # PR_SET_PDEATHSIG: the main process died with the runtime
    rt = ProcessRuntime(root, POD_CIDR)
    await nursery.start(rt.run)
    if rt.isolation.limits.startswith("cgroup"):
        await wait_exited(child)  # found in the runtime's cgroup at start, and killed
    else:  # without cgroups a descendant outlives a crash: this test cleans it up
        os.kill(child, signal.SIGKILL)
    [c] = await rt.list_containers()
    assert (c.state, c.exit_code, c.reason) == (ContainerState.EXITED, 255, "Unknown")
    await rt.aclose()


async def test_a_record_that_cannot_be_written_stops_nothing(runtime, monkeypatch, caplog):
    sid, _ = await sandbox(runtime)
    other = await run(runtime, sid, shell("exec sleep 1000", name="other"))
    real_write = _records.write

    def disk_full(path, record):
        if path.name == "container.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, record)

    monkeypatch.setattr(_records, "write", disk_full)
    done = await exited(runtime, await run(runtime, sid, shell("echo hi")))
    assert (done.state, done.exit_code, done.reason) == (ContainerState.EXITED, 0, "Completed")
    assert "No space left on device" in caplog.text
    assert (await runtime.container_status(other)).state is ContainerState.RUNNING
    await runtime.stop_container(other, 0)  # the runtime still serves
    assert (await runtime.container_status(other)).exit_code == 137


async def test_a_container_that_cannot_be_ended_does_not_spare_the_others(tmp_path,
                                                                          monkeypatch):  # fmt: skip
    root = tmp_path / "rt"
    rt = ProcessRuntime(root, POD_CIDR)
    with trio.fail_after(WAIT):
        async with trio.open_nursery() as kubelet:
            await kubelet.start(rt.run)
            sid, _ = await sandbox(rt)
            stuck = await run(rt, sid, shell("exec sleep 1000", name="stuck"))
            other = await run(rt, sid, shell("exec sleep 1000", name="other"))
            stuck_pid, other_pid = rt._containers[stuck].pid, rt._containers[other].pid
            real_kill = _procs.kill_session

            def failing(session: int) -> None:
                if session == stuck_pid:
                    raise OSError(errno.EIO, "injected")
                real_kill(session)

            monkeypatch.setattr(_procs, "kill_session", failing)
            kubelet.cancel_scope.cancel()  # run() ends without aclose
        await rt.aclose()  # returns: the runtime is closed
    monkeypatch.undo()
    assert gone(other_pid)  # killed and reaped after the first one failed
    os.killpg(stuck_pid, signal.SIGKILL)  # what the injected failure left
    os.waitpid(stuck_pid, 0)
    again = ProcessRuntime(root, POD_CIDR)  # root_dir's lock was released
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        found = {c.name: c for c in await again.list_containers()}
        assert (found["other"].exit_code, found["stuck"].exit_code) == (137, 255)
        await again.aclose()


async def _stop_sandbox(rt: ProcessRuntime, sid: str, raised: list[Exception]) -> None:
    try:
        await rt.stop_pod_sandbox(sid)
    except RuntimeFailure as e:
        raised.append(e)


async def test_a_sandbox_stopped_as_the_runtime_closes_is_a_runtime_failure(tmp_path, nursery):
    # The two calls interleave either way at random; each attempt must hold.
    for attempt in range(12):
        rt = ProcessRuntime(tmp_path / f"rt{attempt}", POD_CIDR)
        await nursery.start(rt.run)
        sid, _ = await sandbox(rt)
        await rt.create_container(sid, shell("true"), pod())
        raised: list[Exception] = []
        with trio.fail_after(WAIT):
            async with trio.open_nursery() as calls:
                calls.start_soon(_stop_sandbox, rt, sid, raised)
                calls.start_soon(rt.aclose)
        assert [str(e) for e in raised] == ["the process runtime is closed"]


async def test_one_root_dir_one_runtime(tmp_path, nursery):
    first = ProcessRuntime(tmp_path / "rt", POD_CIDR)
    await nursery.start(first.run)
    second = ProcessRuntime(tmp_path / "rt", POD_CIDR)
    with pytest.raises(RuntimeFailure, match="in use"):
        await nursery.start(second.run)
    await first.aclose()


# --- bad input ----------------------------------------------------------------------------


async def test_bad_configs_are_clear_create_errors(runtime, tmp_path):
    sid, _ = await sandbox(runtime)
    good = shell("true")

    def evolve(**changes):
        return attrs.evolve(good, **changes)

    cases = {
        "command is empty": evolve(command=("",)),
        "must be a ContainerConfig": {"name": "c", "image": "busybox"},
        "envs\\[0\\] must be a \\(name, value\\) pair": evolve(envs=(("A",),)),
        "not a variable name": evolve(envs=(("A=B", "x"),)),
        "NUL": evolve(envs=(("A", "x\0y"),)),
        "must be an absolute path": evolve(working_dir="relative"),
        "mount path 'data' must be an absolute": evolve(mounts=(Mount("data", str(tmp_path)),)),
        "does not exist": evolve(mounts=(Mount("/x", "/no/such/host/path"),)),
        "two mounts at /x": evolve(mounts=(Mount("/x", str(tmp_path)), Mount("/x/", "/tmp"))),
        "cannot be mounted at /": evolve(mounts=(Mount("/", str(tmp_path)),)),
        "resources.memory_bytes": evolve(resources=Resources(memory_bytes=-1)),
        "image must not be empty": evolve(image=" "),
        "args": evolve(args=("ok", 3)),
    }
    for message, config in cases.items():
        with pytest.raises(CreateContainerError, match=message):
            await runtime.create_container(sid, config, pod())
    with pytest.raises(CreateContainerError, match="PodSandboxConfig"):
        await runtime.run_pod_sandbox("pod")
    assert await runtime.list_containers() == []


async def test_start_errors_are_clear_and_leave_an_exited_container(runtime):
    sid, _ = await sandbox(runtime)
    missing_dir = f"/no-such-dir-{uuid.uuid4().hex[:8]}"
    cid = await runtime.create_container(sid, shell("true", working_dir=missing_dir), pod())
    with pytest.raises(StartError, match=f"working directory {missing_dir} does not exist"):
        await runtime.start_container(cid)
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED, 128, "StartError")  # fmt: skip
    assert "does not exist" in status.message
    missing_binary = ContainerConfig(name="c", image="busybox", command=("no-such-binary",))
    cid = await runtime.create_container(sid, missing_binary, pod())
    with pytest.raises(StartError, match='"no-such-binary": executable file not found'):
        await runtime.start_container(cid)
    with pytest.raises(StartError, match="CONTAINER_EXITED"):
        await runtime.start_container(cid)
    ok = await exited(runtime, await run(runtime, sid, shell("exit 0")))
    assert ok.reason == "Completed"  # the runtime carries on


async def test_a_start_failing_before_its_launcher_leaves_an_exited_container(runtime, tmp_path):
    (tmp_path / "a-file").write_text("")
    config = shell("echo never", log_path=str(tmp_path / "a-file" / "c.log"))
    sid, _ = await sandbox(runtime)
    events = runtime.events()
    cid = await runtime.create_container(sid, config, pod())
    with pytest.raises(StartError, match=f"cannot start container {cid}"):
        await runtime.start_container(cid)  # its log cannot be opened
    status = await runtime.container_status(cid)
    assert (status.state, status.exit_code, status.reason) == (
        ContainerState.EXITED, 128, "StartError")  # fmt: skip
    assert status.message.startswith(f"cannot start container {cid}")
    assert status.finished_at >= status.created_at
    assert [events.receive_nowait().type for _ in range(2)] == [EventType.CREATED,
                                                                EventType.STOPPED]  # fmt: skip
    with trio.fail_after(WAIT):
        await runtime.wait_log(cid, 0)  # an exited container: no waiting
    with pytest.raises(StartError, match="CONTAINER_EXITED"):
        await runtime.start_container(cid)
    await runtime.remove_container(cid)


async def test_unknown_ids_wrong_arguments_and_a_closed_runtime(runtime, tmp_path):
    sid, _ = await sandbox(runtime)
    for call in (runtime.container_status("nope"), runtime.start_container("nope"),
                 runtime.remove_container(123), runtime.pod_sandbox_status("nope"),
                 runtime.create_container("nope", shell("true"), pod()),
                 runtime.read_log("nope"), runtime.container_stats("nope")):  # fmt: skip
        with pytest.raises(NotFound):
            await call
    cid = await run(runtime, sid, shell("exec sleep 1000"))
    with pytest.raises(ValueError):
        await runtime.stop_container(cid, "soon")
    with pytest.raises(ValueError):
        await runtime.read_log(cid, -1)
    await runtime.stop_pod_sandbox(sid)
    assert (await runtime.container_status(cid)).exit_code == 137
    with pytest.raises(CreateContainerError, match="not ready"):
        await runtime.create_container(sid, shell("true"), pod())
    fresh = ProcessRuntime(tmp_path / "fresh", POD_CIDR)
    with pytest.raises(RuntimeFailure, match="not running"):
        await fresh.list_pod_sandboxes()
    await fresh.aclose()
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        ProcessRuntime(tmp_path / "x", "10.244.0.0/16")
    (tmp_path / "images.yaml").write_text("- not a mapping")
    with pytest.raises(ValueError, match="image"):
        ProcessRuntime(tmp_path / "x", POD_CIDR, images_file=tmp_path / "images.yaml")


# --- cgroup v2 (on a fake tree: this machine's cgroups may be v1) ------------------------


def fake_cgroup_v2(root: Path) -> Path:
    """A directory laid out as a cgroup v2 mount whose cgroup for this process offers
    the memory and cpu controllers to its children; returns this process's cgroup."""
    with open("/proc/self/cgroup") as f:
        own = next(line.split(":", 2)[2].strip() for line in f if line.startswith("0::"))
    own_dir = root / own.lstrip("/")
    own_dir.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own_dir / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (own_dir / "cgroup.subtree_control").write_text("cpu memory\n")
    return own_dir


async def test_cgroup_v2_limits_usage_and_oom(tmp_path, nursery):
    own_dir = fake_cgroup_v2(tmp_path / "cgroup")
    rt = ProcessRuntime(tmp_path / "rt", POD_CIDR, cgroup_root=str(tmp_path / "cgroup"))
    await nursery.start(rt.run)
    assert rt.isolation.limits == "cgroup v2"
    [parent] = [p for p in own_dir.iterdir() if p.is_dir()]
    assert (parent / "cgroup.subtree_control").read_text() == "+memory +cpu"
    sid, _ = await sandbox(rt)
    limits = Resources(cpu_millis=500, memory_bytes=64 * 2**20, cpu_request_millis=250)
    cid = await run(rt, sid, behave("handle-term", resources=limits))
    await wait_for_line(rt, cid, "ready")
    group = parent / cid
    assert (group / "memory.max").read_text() == str(64 * 2**20)
    assert (group / "cpu.max").read_text() == "50000 100000"
    assert (group / "cpu.weight").read_text() == str(cpu_weight(256))
    main = int((group / "cgroup.procs").read_text())  # the launcher joined it
    assert _session_of(main) == main
    (group / "cpu.stat").write_text("usage_usec 0\nuser_usec 0\n")
    (group / "memory.current").write_text("100000000\n")
    (group / "memory.stat").write_text("anon 1\ninactive_file 30000000\n")
    assert (await rt.container_stats(cid)).memory_bytes == 70_000_000
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
    await rt.stop_container(cid, WAIT)
    status = await rt.container_status(cid)
    assert (status.exit_code, status.reason) == (0, "OOMKilled"), await log(rt, cid)
    await rt.aclose()


async def test_cgroup_kill_never_signals_a_process_outside_the_cgroup(tmp_path):
    own_dir = fake_cgroup_v2(tmp_path / "cgroup")
    driver = CgroupV2.detect(tmp_path / "cgroup", "actorkube-test")
    group = driver.create("c1", Resources())
    stranger = await trio.lowlevel.open_process(["sleep", "1000"])
    try:
        (group.path / "cgroup.procs").write_text(f"{stranger.pid}\n")
        group.kill()
        assert stranger.poll() is None  # its /proc/<pid>/cgroup is not ours
    finally:
        stranger.kill()
        await stranger.wait()
    assert driver.parent == own_dir / "actorkube-test"


def test_cgroup_v2_moves_the_runtime_out_of_its_cgroup_only_when_alone(tmp_path, monkeypatch):
    own = tmp_path / "own"
    own.mkdir()
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")
    busy = [1]  # the kernel refuses controllers for children while own holds processes
    write_text = Path.write_text

    def refusing(self, data, *args, **kwargs):
        if self.name == "cgroup.subtree_control" and busy[0]:
            busy[0] -= 1
            raise OSError(errno.EBUSY, "Device or resource busy")
        return write_text(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", refusing)
    _enable(own, "actorkube-x")
    assert (own / "actorkube-x-runtime" / "cgroup.procs").read_text() == str(os.getpid())
    assert (own / "cgroup.subtree_control").read_text() == "+memory +cpu"
    busy[0] = 1
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    with pytest.raises(OSError, match="other than the runtime"):
        _enable(own, "actorkube-x")


def test_cgroup_v1_with_cpu_and_cpuacct_mounted_together(tmp_path):
    try:
        own = {c: own_cgroup(lambda cs, c=c: c in cs.split(",")) for c in ("memory", "cpu")}
    except KeyError:
        pytest.skip("this machine has no cgroup v1 hierarchies to name this process's cgroups")
    root = tmp_path / "cgroup"
    for hierarchy, controller in (("memory", "memory"), ("cpu,cpuacct", "cpu")):
        (root / hierarchy / own[controller].lstrip("/")).mkdir(parents=True)
        for name in ("cgroup.procs", "tasks"):
            (root / hierarchy / name).write_text("")
    driver = CgroupV1.detect(root, "actorkube-t")
    assert driver.parents["cpu"] == driver.parents["cpuacct"] != driver.parents["memory"]
    limits = Resources(cpu_millis=250, memory_bytes=2**27, cpu_request_millis=100)
    group = driver.create("c1", limits)
    assert (group.dirs["memory"] / "memory.limit_in_bytes").read_text() == str(2**27)
    assert (group.dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "25000"
    assert (group.dirs["cpu"] / "cpu.shares").read_text() == "102"
    assert len(group.procs) == 2  # memory, and cpu,cpuacct once
