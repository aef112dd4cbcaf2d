"""The simulated container runtime: CRI's states, each profile knob in virtual time,
annotations, logs, events, IPs, and bad input."""

from __future__ import annotations

import contextlib
import inspect
import math
import re

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from actorkube.actor import WallClock
from actorkube.node.runtime._api import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    CreateContainerError,
    CriError,
    EventType,
    ImagePullError,
    NetworkProbes,
    NotFound,
    PodSandboxConfig,
    Resources,
    RuntimeFailure,
    SandboxState,
    StartError,
)
from actorkube.node.runtime._crilog import MAX_LINE, line_entries, timestamp
from actorkube.node.runtime._sim import EVENT_BUFFER, SimRuntime
from actorkube.node.runtime._sim_ipam import PodIPs, PodIPsExhausted
from actorkube.node.runtime._sim_load import SimLoad
from actorkube.node.runtime._sim_log import LogBuffer
from actorkube.node.runtime._sim_profile import (
    AnnotationError,
    SimProfile,
    image_repository,
    parse_duration,
    profile_for_image,
    with_annotations,
)

EPOCH = 1_700_000_000.0
CRI_LINE = re.compile(
    rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z) (stdout|stderr) ([FP]) (.*)"
)


def wall() -> float:
    """Wall time that follows trio's (mock) clock from EPOCH, for exact assertions."""
    return EPOCH + trio.current_time()


def pod(name: str = "web", *, uid: str = "", attempt: int = 0, labels=None, annotations=None):
    return PodSandboxConfig(
        name=name, namespace="default", uid=uid or f"uid-{name}", attempt=attempt,
        labels=labels or {"io.kubernetes.pod.name": name},
        annotations=annotations or {},
    )  # fmt: skip


def ctr(name: str = "app", image: str = "nginx:1.25", *, attempt: int = 0, labels=None,
        annotations=None, memory: int = 0, cpu: int = 0) -> ContainerConfig:  # fmt: skip
    return ContainerConfig(
        name=name, image=image, attempt=attempt,
        labels=labels or {"io.kubernetes.container.name": name},
        annotations=annotations or {},
        resources=Resources(cpu_millis=cpu, memory_bytes=memory),
    )  # fmt: skip


async def started(nursery, profiles=None, cidr="10.244.0.0/24", **options) -> SimRuntime:
    runtime = SimRuntime(cidr, profiles=profiles, wall_clock=wall, **options)
    await nursery.start(runtime.run)
    return runtime


async def run_pod(runtime: SimRuntime, sandbox=None, container=None) -> tuple[str, str]:
    """Pull, make the sandbox, create and start one container: (sandbox id, container id)."""
    sandbox = sandbox or pod()
    container = container or ctr()
    await runtime.pull_image(container.image)
    sandbox_id = await runtime.run_pod_sandbox(sandbox)
    container_id = await runtime.create_container(sandbox_id, container, sandbox)
    await runtime.start_container(container_id)
    return sandbox_id, container_id


def drain(channel) -> list:
    """The events waiting in ``channel`` (up to its end, if it was closed)."""
    events = []
    while True:
        try:
            events.append(channel.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return events


def ended(status) -> tuple:
    return status.state, status.exit_code, status.reason


def log_lines(data: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(stream, tag, text) of each CRI entry, checking the format of every one."""
    out = []
    for line in data.split(b"\n")[:-1]:
        match = CRI_LINE.fullmatch(line)
        assert match, line
        out.append((match[2], match[3], match[4]))
    return out


# --- sandboxes ----------------------------------------------------------------------------


async def test_sandbox_lifecycle_and_ip(autojump_clock, nursery):
    runtime = await started(nursery)
    sandbox_id = await runtime.run_pod_sandbox(pod())
    status = await runtime.pod_sandbox_status(sandbox_id)
    assert status.state is SandboxState.READY
    assert status.ip == "10.244.0.2"
    assert status.created_at == EPOCH
    assert status.labels == {"io.kubernetes.pod.name": "web"}

    await runtime.stop_pod_sandbox(sandbox_id)
    status = await runtime.pod_sandbox_status(sandbox_id)
    assert status.state is SandboxState.NOTREADY
    assert status.ip == ""  # the network is torn down, as containerd reports it
    await runtime.stop_pod_sandbox(sandbox_id)  # again: a no-op

    await runtime.remove_pod_sandbox(sandbox_id)
    with pytest.raises(NotFound):
        await runtime.pod_sandbox_status(sandbox_id)
    assert await runtime.list_pod_sandboxes() == []
    await runtime.remove_pod_sandbox(sandbox_id)  # CRI: removal is idempotent
    await runtime.stop_pod_sandbox("no-such-sandbox")


async def test_ips_are_handed_out_round_robin_and_released(autojump_clock, nursery):
    runtime = await started(nursery, cidr="10.0.0.0/29")  # .2 to .6: five pods
    ids = [await runtime.run_pod_sandbox(pod(f"p{i}")) for i in range(5)]
    ips = [(await runtime.pod_sandbox_status(i)).ip for i in ids]
    assert ips == ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(RuntimeFailure, match="no IP addresses available"):
        await runtime.run_pod_sandbox(pod("p5"))
    assert len(await runtime.list_pod_sandboxes()) == 5  # the failure left nothing behind

    await runtime.stop_pod_sandbox(ids[1])
    new = await runtime.run_pod_sandbox(pod("p6"))
    assert (await runtime.pod_sandbox_status(new)).ip == "10.0.0.3"
    await runtime.remove_pod_sandbox(ids[3])  # removal stops it, which releases its IP
    newer = await runtime.run_pod_sandbox(pod("p7"))
    assert (await runtime.pod_sandbox_status(newer)).ip == "10.0.0.5"


def test_pod_ips_rules():
    ips = PodIPs("10.1.0.0/24")
    first, second = ips.allocate(), ips.allocate()
    assert (first, second) == ("10.1.0.2", "10.1.0.3")
    ips.release(first)
    assert ips.allocate() == "10.1.0.4"  # not the released one: round robin
    ips.release("10.1.0.99")  # not in use: a no-op
    assert ips.in_use == 2
    six = PodIPs("fd00::/125")
    assert [six.allocate() for _ in range(5)] == [f"fd00::{i}" for i in range(2, 7)]
    with pytest.raises(PodIPsExhausted):
        six.allocate()
    for bad in ("10.0.0.0/31", "10.0.0.1/24", "not-a-cidr"):
        with pytest.raises(ValueError):
            PodIPs(bad)


async def test_sandbox_and_container_names_are_reserved(autojump_clock, nursery):
    runtime = await started(nursery)
    sandbox_id, _ = await run_pod(runtime)
    with pytest.raises(RuntimeFailure, match="reserved"):
        await runtime.run_pod_sandbox(pod())
    await runtime.run_pod_sandbox(pod(attempt=1))  # the next attempt is another name
    with pytest.raises(CreateContainerError, match="reserved"):
        await runtime.create_container(sandbox_id, ctr(), pod())
    await runtime.create_container(sandbox_id, ctr(attempt=1), pod())


# --- containers: states and events ------------------------------------------------------------


async def test_container_lifecycle_and_events(autojump_clock, nursery):
    runtime = await started(nursery)
    events = runtime.events()
    await runtime.pull_image("nginx:1.25")
    sandbox_id = await runtime.run_pod_sandbox(pod())
    container_id = await runtime.create_container(sandbox_id, ctr(), pod())
    status = await runtime.container_status(container_id)
    assert status.state is ContainerState.CREATED
    assert (status.created_at, status.started_at, status.finished_at) == (EPOCH, 0.0, 0.0)
    assert status.sandbox_id == sandbox_id and status.name == "app"
    assert status.image_ref.startswith("sha256:")

    await trio.sleep(1)
    await runtime.start_container(container_id)
    status = await runtime.container_status(container_id)
    assert status.state is ContainerState.RUNNING
    assert status.started_at == EPOCH + 1

    await trio.sleep(1)
    await runtime.stop_container(container_id, timeout=30)
    status = await runtime.container_status(container_id)
    assert status.state is ContainerState.EXITED
    # The default process has no SIGTERM handler: it dies of the signal at once.
    assert (status.exit_code, status.reason, status.finished_at) == (143, "Error", EPOCH + 2)
    await runtime.stop_container(container_id, timeout=30)  # stopping an exited one: no-op

    await runtime.remove_container(container_id)
    with pytest.raises(NotFound):
        await runtime.container_status(container_id)
    await runtime.remove_container(container_id)  # idempotent
    await runtime.stop_container(container_id, timeout=1)  # idempotent

    seen = [(e.type, e.container_id, e.sandbox_id, e.at) for e in drain(events)]
    assert seen == [
        (EventType.CREATED, container_id, sandbox_id, EPOCH),
        (EventType.STARTED, container_id, sandbox_id, EPOCH + 1),
        (EventType.STOPPED, container_id, sandbox_id, EPOCH + 2),
        (EventType.DELETED, container_id, sandbox_id, EPOCH + 2),
    ]


async def test_start_rules(autojump_clock, nursery):
    runtime = await started(nursery)
    sandbox_id, container_id = await run_pod(runtime)
    with pytest.raises(StartError, match="CONTAINER_RUNNING"):
        await runtime.start_container(container_id)
    await runtime.stop_container(container_id, 0)
    with pytest.raises(StartError, match="CONTAINER_EXITED"):
        await runtime.start_container(container_id)
    # A created container is not running: stopping it changes nothing (as containerd).
    created = await runtime.create_container(sandbox_id, ctr("side"), pod())
    await runtime.stop_container(created, 10)
    assert (await runtime.container_status(created)).state is ContainerState.CREATED


async def test_timestamps_from_the_actor_wall_clock(autojump_clock, nursery):
    clock = WallClock(epoch=EPOCH)
    runtime = SimRuntime("10.244.0.0/24", wall_clock=clock.now)
    await nursery.start(runtime.run)
    await trio.sleep(3)
    sandbox_id = await runtime.run_pod_sandbox(pod())
    assert (await runtime.pod_sandbox_status(sandbox_id)).created_at == EPOCH


async def test_run_for_and_exit_codes(autojump_clock, nursery):
    runtime = await started(nursery, {
        "job": SimProfile(run_for=30),
        "failing": SimProfile(run_for=12.5, exit_code=3),
        "instant": SimProfile(run_for=0),
    })  # fmt: skip
    events = runtime.events()
    _, job = await run_pod(runtime, pod("a"), ctr(image="job"))
    _, failing = await run_pod(runtime, pod("b"), ctr(image="failing:v2"))
    _, instant = await run_pod(runtime, pod("c"), ctr(image="instant"))
    await runtime.wait_log(instant, 0)  # returns once it has exited
    status = await runtime.container_status(instant)
    assert ended(status) == (ContainerState.EXITED, 0, "Completed")
    assert status.finished_at == status.started_at == EPOCH

    await runtime.wait_log(failing, 0)
    assert trio.current_time() == 12.5
    status = await runtime.container_status(failing)
    assert (status.exit_code, status.reason, status.finished_at) == (3, "Error", EPOCH + 12.5)
    await runtime.wait_log(job, 0)
    assert trio.current_time() == 30
    status = await runtime.container_status(job)
    assert (status.exit_code, status.reason) == (0, "Completed")
    stops = [e.container_id for e in drain(events) if e.type is EventType.STOPPED]
    assert stops == [instant, failing, job]


async def test_start_delay_in_virtual_time(autojump_clock, nursery):
    runtime = await started(nursery, {"slow": SimProfile(start_delay=4)})
    await runtime.pull_image("slow")
    sandbox_id = await runtime.run_pod_sandbox(pod())
    container_id = await runtime.create_container(sandbox_id, ctr(image="slow"), pod())
    seen = []

    async def look():
        await trio.sleep(1)
        seen.append((await runtime.container_status(container_id)).state)
        with pytest.raises(StartError, match="already starting"):
            await runtime.start_container(container_id)

    nursery.start_soon(look)
    await runtime.start_container(container_id)
    assert trio.current_time() == 4
    assert seen == [ContainerState.CREATED]
    status = await runtime.container_status(container_id)
    assert (status.state, status.started_at) == (ContainerState.RUNNING, EPOCH + 4)


async def test_removed_or_stopped_sandbox_while_starting(autojump_clock, nursery):
    runtime = await started(nursery, {"slow": SimProfile(start_delay=4)})
    await runtime.pull_image("slow")
    sandbox_id = await runtime.run_pod_sandbox(pod())
    first = await runtime.create_container(sandbox_id, ctr("one", "slow"), pod())
    second = await runtime.create_container(sandbox_id, ctr("two", "slow"), pod())

    async def remove_first_then_stop_sandbox():
        await trio.sleep(1)
        await runtime.remove_container(first)
        await runtime.stop_pod_sandbox(sandbox_id)

    async with trio.open_nursery() as inner:
        inner.start_soon(remove_first_then_stop_sandbox)
        with pytest.raises(NotFound, match="removed while it started"):
            await runtime.start_container(first)
    with pytest.raises(StartError, match="not ready"):
        await runtime.start_container(second)
    status = await runtime.container_status(second)
    assert ended(status) == (ContainerState.EXITED, 128, "StartError")
    assert "not ready" in status.message
    with pytest.raises(CreateContainerError, match="not ready"):
        await runtime.create_container(sandbox_id, ctr("three", "slow"), pod())


async def test_cancelled_start_leaves_the_container_created(autojump_clock, nursery):
    runtime = await started(nursery, {"slow": SimProfile(start_delay=4)})
    await runtime.pull_image("slow")
    sandbox_id = await runtime.run_pod_sandbox(pod())
    container_id = await runtime.create_container(sandbox_id, ctr(image="slow"), pod())
    with trio.move_on_after(1):
        await runtime.start_container(container_id)
    assert (await runtime.container_status(container_id)).state is ContainerState.CREATED
    await runtime.start_container(container_id)  # not stuck in "starting"
    assert trio.current_time() == 5


# --- images -------------------------------------------------------------------------------------


async def test_pull_delay_and_images(autojump_clock, nursery):
    runtime = await started(nursery, {"nginx": SimProfile(pull_delay=7, image_size=50_000_000)})
    assert await runtime.image_status("nginx:1.25") is None
    image_id = await runtime.pull_image("nginx:1.25")
    assert trio.current_time() == 7
    again = await runtime.pull_image("nginx:1.25")  # present: no second pull
    assert again == image_id and trio.current_time() == 7
    image = await runtime.image_status("nginx:1.25")
    assert (image.id, image.names, image.size_bytes) == (image_id, ("nginx:1.25",), 50_000_000)
    assert await runtime.image_status(image_id) == image

    await runtime.pull_image("busybox")  # default profile: no delay; no tag means latest
    assert trio.current_time() == 7
    assert (await runtime.image_status("busybox:latest")).names == ("busybox:latest",)
    assert await runtime.image_status("busybox") == await runtime.image_status("busybox:latest")
    assert sorted(i.names[0] for i in await runtime.list_images()) == [
        "busybox:latest", "nginx:1.25"]  # fmt: skip


async def test_pull_failure(autojump_clock, nursery):
    runtime = await started(nursery, {"private/app": SimProfile(pull_delay=2, pull_fails=True)})
    with pytest.raises(ImagePullError, match='failed to pull and unpack image "private/app:v1"'):
        await runtime.pull_image("private/app:v1")
    assert trio.current_time() == 2
    assert await runtime.image_status("private/app:v1") is None
    assert ImagePullError.reason == "ErrImagePull"
    sandbox_id = await runtime.run_pod_sandbox(pod())
    with pytest.raises(CreateContainerError, match="not present"):
        await runtime.create_container(sandbox_id, ctr(image="private/app:v1"), pod())
    with pytest.raises(ImagePullError):
        await runtime.pull_image("  ")


def test_profile_chosen_by_image_name():
    exact, tagless, latest, default = (SimProfile(exit_code=i) for i in range(1, 5))
    profiles = {"nginx:1.25": exact, "nginx": tagless, "redis:latest": latest}
    assert profile_for_image("nginx:1.25", profiles, default) is exact
    assert profile_for_image("nginx:1.26", profiles, default) is tagless
    assert profile_for_image("nginx@sha256:abc", profiles, default) is tagless
    assert profile_for_image("redis", profiles, default) is latest
    assert profile_for_image("redis:7", profiles, default) is default
    assert profile_for_image("other", profiles, default) is default
    assert image_repository("registry:5000/team/app:v1") == "registry:5000/team/app"
    assert image_repository("registry:5000/team/app") == "registry:5000/team/app"


# --- resources: stats and OOM -------------------------------------------------------------------


async def test_stats_and_cpu_limit(autojump_clock, nursery):
    runtime = await started(nursery, {"busy": SimProfile(cpu_millis=1500, memory_bytes=300 << 20)})
    _, free = await run_pod(runtime, pod("a"), ctr(image="busy"))
    _, capped = await run_pod(runtime, pod("b"), ctr(image="busy", cpu=500, memory=1 << 30))
    stats = await runtime.container_stats(free)
    assert (stats.id, stats.cpu_millis, stats.memory_bytes, stats.timestamp) == (
        free, 1500, 300 << 20, EPOCH)  # fmt: skip
    stats = await runtime.container_stats(capped)
    assert (stats.cpu_millis, stats.memory_bytes) == (500, 300 << 20)
    await runtime.stop_container(free, 0)
    stats = await runtime.container_stats(free)
    assert (stats.cpu_millis, stats.memory_bytes) == (0, 0)


# --- load groups ---------------------------------------------------------------------------------


def test_a_load_is_shared_equally_and_exactly():
    load = SimLoad()
    assert load.total("web") == 0 and load.members("web") == 0
    members = [load.join("web") for _ in range(3)]
    other = load.join("db")
    assert [load.share("web", m) for m in members] == [0, 0, 0]
    load.set("web", 1000)
    assert [load.share("web", m) for m in members] == [334, 333, 333]  # the first joined first
    assert load.share("db", other) == 0 and load.share("web", other) == 0
    load.leave("web", members[0])
    load.leave("web", members[0])  # again: nothing
    assert [load.share("web", m) for m in members[1:]] == [500, 500]
    load.set("web", 7)
    members.append(load.join("web"))
    assert [load.share("web", m) for m in members[1:]] == [3, 2, 2]
    assert sum(load.share("web", m) for m in members) == 7
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError):
            load.set("web", bad)
    with pytest.raises(ValueError):
        load.set("", 1)


@given(st.integers(0, 10**6), st.integers(1, 50))
def test_shares_add_up_to_the_total(total, count):
    load = SimLoad()
    load.set("g", total)
    shares = [load.share("g", m) for m in [load.join("g") for _ in range(count)]]
    assert sum(shares) == total and max(shares) - min(shares) <= 1


async def test_running_containers_of_a_group_share_its_load_across_runtimes(autojump_clock,
                                                                              nursery):  # fmt: skip
    load = SimLoad()
    profiles = {"web": SimProfile(cpu_millis=10, memory_bytes=1 << 20, load_group="web"),
                "other": SimProfile(cpu_millis=10)}  # fmt: skip
    a = await started(nursery, profiles, cidr="10.1.0.0/24", load=load)
    b = await started(nursery, profiles, cidr="10.2.0.0/24", load=load)
    load.set("web", 900)
    _, one = await run_pod(a, pod("one"), ctr(image="web"))
    _, two = await run_pod(b, pod("two"), ctr(image="web"))
    _, capped = await run_pod(b, pod("capped"), ctr(image="web", cpu=100))
    # The annotation puts a container of another image in the group too.
    grouped = pod("three", annotations={"sim.actorkube.io/load-group": "web"})
    _, three = await run_pod(a, grouped, ctr(image="other"))
    _, alone = await run_pod(a, pod("alone"), ctr(image="other"))

    async def cpu(runtime, container_id):
        return (await runtime.container_stats(container_id)).cpu_millis

    assert load.members("web") == 4
    assert [await cpu(a, one), await cpu(b, two), await cpu(b, capped), await cpu(a, three),
            await cpu(a, alone)] == [225, 225, 100, 225, 10]  # the limit caps a share
    assert (await a.container_stats(one)).memory_bytes == 1 << 20  # memory stays the profile's
    await b.stop_container(two, 0)
    assert load.members("web") == 3
    assert [await cpu(a, one), await cpu(b, capped), await cpu(a, three)] == [300, 100, 300]
    assert await cpu(b, two) == 0
    load.set("web", 0)
    assert await cpu(a, one) == 0
    load.set("web", 600)
    await b.aclose()  # a runtime that closed (its machine died) shares no more load
    assert load.members("web") == 2 and await cpu(a, one) == 300
    # Without a SimLoad, the profile's CPU.
    c = await started(nursery, profiles, cidr="10.3.0.0/24")
    _, solo = await run_pod(c, pod("solo"), ctr(image="web"))
    assert await cpu(c, solo) == 10


def test_the_load_group_annotation():
    profile = with_annotations(SimProfile(), "app", [{"sim.actorkube.io/load-group": " web "}])
    assert profile.load_group == "web"
    profile = with_annotations(SimProfile(), "app", [
        {"sim.actorkube.io/load-group": "web", "sim.actorkube.io/load-group.app": "api"}])
    assert profile.load_group == "api"
    with pytest.raises(TypeError):
        SimRuntime("10.0.0.0/24", load="web")


async def test_memory_over_the_limit_is_oom_killed(autojump_clock, nursery):
    runtime = await started(nursery, {"hog": SimProfile(memory_bytes=200 << 20, run_for=0)})
    events = runtime.events()
    _, killed = await run_pod(runtime, pod("a"), ctr(image="hog", memory=100 << 20))
    _, fits = await run_pod(runtime, pod("b"), ctr(image="hog", memory=256 << 20))
    await runtime.wait_log(killed, 0)
    await runtime.wait_log(fits, 0)
    status = await runtime.container_status(killed)
    assert ended(status) == (ContainerState.EXITED, 137, "OOMKilled")
    status = await runtime.container_status(fits)
    assert (status.exit_code, status.reason) == (0, "Completed")  # it ran to its end
    kinds = [e.type for e in drain(events) if e.container_id == killed]
    assert kinds == [EventType.CREATED, EventType.STARTED, EventType.STOPPED]


# --- graceful termination -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "timeout", "took", "exit_code", "reason"),
    [
        (SimProfile(term_delay=5, term_exit_code=0), 30, 5, 0, "Completed"),
        (SimProfile(term_delay=2), 30, 2, 143, "Error"),
        (SimProfile(term_delay=math.inf), 10, 10, 137, "Error"),  # ignores SIGTERM
        (SimProfile(term_delay=45, term_exit_code=0), 30, 30, 137, "Error"),  # too slow
        (SimProfile(term_delay=30, term_exit_code=0), 30, 30, 137, "Error"),  # SIGKILL wins a tie
        (SimProfile(term_delay=math.inf), 0, 0, 137, "Error"),  # no grace: SIGKILL at once
    ],
)
async def test_stop_container(autojump_clock, nursery, profile, timeout, took, exit_code, reason):
    runtime = await started(nursery, {"app": profile})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))
    await runtime.stop_container(container_id, timeout)
    assert trio.current_time() == took
    status = await runtime.container_status(container_id)
    assert ended(status) == (ContainerState.EXITED, exit_code, reason)
    assert status.finished_at == EPOCH + took


async def test_exit_of_its_own_during_the_grace_period(autojump_clock, nursery):
    runtime = await started(nursery, {"app": SimProfile(run_for=3, term_delay=math.inf)})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))
    await runtime.stop_container(container_id, 30)
    assert trio.current_time() == 3
    assert (await runtime.container_status(container_id)).exit_code == 0


async def test_concurrent_stops_take_the_shorter_timeout(autojump_clock, nursery):
    runtime = await started(nursery, {"app": SimProfile(term_delay=math.inf)})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))
    done = []

    async def stop(timeout):
        await runtime.stop_container(container_id, timeout)
        done.append((timeout, trio.current_time()))

    async with trio.open_nursery() as inner:
        inner.start_soon(stop, 30)
        inner.start_soon(stop, 10)
    assert sorted(done) == [(10, 10), (30, 10)]


# --- probes ---------------------------------------------------------------------------------------


async def test_probes_follow_ready_after_and_healthy_for(autojump_clock, nursery):
    runtime = await started(nursery, {"app": SimProfile(ready_after=5, healthy_for=20)})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))
    http = {"httpGet": {"path": "/healthz", "port": 8080}}
    tcp = {"tcpSocket": {"port": 5432}}

    async def answers():
        h = await runtime.probe_network(container_id, http, "10.244.0.2", 1)
        t = await runtime.probe_network(container_id, tcp, "10.244.0.2", 1)
        e = await runtime.exec_sync(container_id, ("cat", "/tmp/healthy"), 1)
        return h, t, e

    h, t, e = await answers()
    assert not h.success
    assert h.message == (
        'Get "http://10.244.0.2:8080/healthz": dial tcp 10.244.0.2:8080: connect: '
        "connection refused"
    )
    assert not t.success
    assert t.message == "dial tcp 10.244.0.2:5432: connect: connection refused"
    assert (e.exit_code, e.stderr) == (1, b"not ready yet\n")

    await trio.sleep(5)
    h, t, e = await answers()
    assert h.success and t.success and e.exit_code == 0 and e.stdout == e.stderr == b""
    await trio.sleep(14.9)
    assert (await answers())[0].success

    await trio.sleep(0.1)
    h, t, e = await answers()
    assert (h.success, h.message) == (False, "HTTP probe failed with statuscode: 500")
    assert not t.success
    assert (e.exit_code, e.stderr) == (1, b"unhealthy\n")


async def test_probe_details_and_not_running(autojump_clock, nursery):
    runtime = await started(nursery)
    _, container_id = await run_pod(runtime)
    https = {"httpGet": {"scheme": "HTTPS", "host": "fd00::5", "port": 443}}
    assert (await runtime.probe_network(container_id, https, "10.0.0.1", 1)).success
    missing = await runtime.probe_network(container_id, {"exec": {}}, "10.0.0.1", 1)
    assert (missing.success, "missing probe handler" in missing.message) == (False, True)
    assert not (await runtime.probe_network(container_id, "nonsense", "10.0.0.1", 1)).success
    with pytest.raises(ValueError, match="command"):
        await runtime.exec_sync(container_id, (), 1)

    await runtime.stop_container(container_id, 0)
    result = await runtime.probe_network(container_id, https, "10.0.0.1", 1)
    assert result.message == (
        'Get "https://[fd00::5]:443/": dial tcp [fd00::5]:443: connect: connection refused'
    )
    with pytest.raises(CriError, match="CONTAINER_EXITED"):
        await runtime.exec_sync(container_id, ("true",), 1)


async def test_a_streamed_exec_answers_as_exec_sync_without_running_anything(
    autojump_clock, nursery
):  # fmt: skip
    runtime = await started(nursery, {"app": SimProfile(ready_after=5)})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))

    async def streamed(tty: bool) -> tuple[bytes, bytes, int]:
        async with runtime.exec_stream(container_id, ("cat",), stdin=True, tty=tty) as cmd:
            await cmd.write(b"dropped")
            await cmd.close_stdin()
            cmd.resize(80, 24)
            out, err = await cmd.read_stdout(), await cmd.read_stderr()
            assert await cmd.read_stdout() == await cmd.read_stderr() == b""
            return out, err, await cmd.wait()

    assert await streamed(False) == (b"", b"not ready yet\n", 1)
    assert await streamed(True) == (b"not ready yet\n", b"", 1)  # a terminal: one stream
    await trio.sleep(5)
    assert await streamed(False) == (b"", b"", 0)
    await runtime.stop_container(container_id, 0)
    with pytest.raises(CriError, match="CONTAINER_EXITED"):
        async with runtime.exec_stream(container_id, ("true",), stdin=False, tty=False):
            pass


# --- logs ---------------------------------------------------------------------------------------


async def test_log_lines_at_start_and_periodically(autojump_clock, nursery):
    profile = SimProfile(log_lines=("starting", "listening on :8080"), periodic_log_line="tick",
                         log_every=10)  # fmt: skip
    runtime = await started(nursery, {"app": profile})
    _, container_id = await run_pod(runtime, container=ctr(image="app"))
    chunk = await runtime.read_log(container_id)
    assert log_lines(chunk.data) == [(b"stdout", b"F", b"starting"),
                                     (b"stdout", b"F", b"listening on :8080")]  # fmt: skip
    assert chunk.data.startswith(timestamp(EPOCH) + b" stdout F starting\n")
    assert chunk.next_offset == len(chunk.data)

    offset = chunk.next_offset
    for expected_time in (10, 20):
        await runtime.wait_log(container_id, offset)
        assert trio.current_time() == expected_time
        more = await runtime.read_log(container_id, offset)
        assert more.data == line_entries(EPOCH + expected_time, "stdout", b"tick")
        offset = more.next_offset
    await runtime.stop_container(container_id, 0)
    await runtime.wait_log(container_id, offset)  # an exited container: no waiting
    assert trio.current_time() == 20
    assert (await runtime.read_log(container_id, offset)).data == b""


async def test_log_is_bounded_by_whole_lines(autojump_clock, nursery):
    line = "x" * 60
    entry = len(line_entries(EPOCH + 1, "stdout", line.encode()))
    profile = SimProfile(periodic_log_line=line, log_every=1)
    runtime = await started(nursery, {"chatty": profile}, log_limit=10 * entry + 5)
    _, container_id = await run_pod(runtime, container=ctr(image="chatty"))
    offset = 0
    while offset < 25 * entry:
        await runtime.wait_log(container_id, offset)
        offset = (await runtime.read_log(container_id, offset)).next_offset
    # Entries stamped at whole seconds all have the same length here.
    assert offset == 25 * entry
    chunk = await runtime.read_log(container_id, 0)  # from before the oldest line kept
    assert len(chunk.data) == 10 * entry  # whole entries only, within the limit
    assert chunk.next_offset == 25 * entry
    assert log_lines(chunk.data) == [(b"stdout", b"F", line.encode())] * 10
    tail = await runtime.read_log(container_id, 24 * entry)  # offsets still hold
    assert tail.data == line_entries(EPOCH + 25, "stdout", line.encode())
    past = await runtime.read_log(container_id, 99 * entry)
    assert (past.data, past.next_offset) == (b"", 25 * entry)


async def test_periodic_lines_that_fell_behind_are_not_replayed(autojump_clock, nursery):
    runtime = SimRuntime("10.244.0.0/24", profiles={"app": SimProfile(
        periodic_log_line="tick", log_every=0.001)}, wall_clock=wall)  # fmt: skip
    async with trio.open_nursery() as first_kubelet:
        await first_kubelet.start(runtime.run)
        _, container_id = await run_pod(runtime, container=ctr(image="app"))
        await runtime.wait_log(container_id, 0)
        first_kubelet.cancel_scope.cancel()  # the timer task is away...
    assert trio.current_time() == 0.001
    await trio.sleep(60)  # ...for a minute: 60,000 lines would be due
    await nursery.start(runtime.run)
    await trio.testing.wait_all_tasks_blocked()
    chunk = await runtime.read_log(container_id)
    # The line due first, one now, and on from there.
    assert chunk.data == b"".join(line_entries(EPOCH + t, "stdout", b"tick")
                                  for t in (0.001, 0.002, 60.001))  # fmt: skip
    await runtime.wait_log(container_id, chunk.next_offset)
    assert trio.current_time() == pytest.approx(60.002)


def test_log_buffer_rules():
    log = LogBuffer(limit=100)
    log.write(b"a" * 39 + b"\n" + b"b" * 39 + b"\n")
    assert (log.start, log.end) == (0, 80)
    log.write(b"c" * 29 + b"\n")  # 110 bytes: the oldest entry goes
    assert (log.start, log.end) == (40, 110)
    assert log.read(0) == (b"b" * 39 + b"\n" + b"c" * 29 + b"\n", 110)
    assert log.read(45) == (b"b" * 34 + b"\n" + b"c" * 29 + b"\n", 110)
    log.write(b"d" * 199 + b"\n")  # longer than the limit on its own: all gone
    assert (log.start, log.end, log.read(0)) == (310, 310, (b"", 310))


def test_long_lines_become_partial_entries():
    text = "y" * (2 * MAX_LINE + 10)
    entries = line_entries(EPOCH, "stdout", text.encode())
    parsed = log_lines(entries)
    assert [tag for _, tag, _ in parsed] == [b"P", b"P", b"F"]
    assert b"".join(piece for _, _, piece in parsed) == text.encode()


def test_cri_time_is_rfc3339_nano():
    assert timestamp(0) == b"1970-01-01T00:00:00Z"
    assert timestamp(1.5) == b"1970-01-01T00:00:01.5Z"
    assert timestamp(1_700_000_000.000123) == b"2023-11-14T22:13:20.000123Z"


async def test_wait_log_ends_on_removal(autojump_clock, nursery):
    runtime = await started(nursery)
    _, container_id = await run_pod(runtime)

    async def remove_later():
        await trio.sleep(3)
        await runtime.remove_container(container_id)

    nursery.start_soon(remove_later)
    with pytest.raises(NotFound):
        await runtime.wait_log(container_id, 0)
    assert trio.current_time() == 3


# --- annotations ----------------------------------------------------------------------------------


async def test_annotation_overrides(autojump_clock, nursery):
    runtime = await started(nursery, {"app": SimProfile(exit_code=0)})
    annotations = {
        "sim.actorkube.io/run-for": "1m30s",
        "sim.actorkube.io/run-for.fast": "5s",
        "sim.actorkube.io/exit-code": "2",
        "sim.actorkube.io/memory": "128Mi",
        "sim.actorkube.io/cpu": "250m",
        "sim.actorkube.io/log-lines": "hello\nworld",
        "sim.actorkube.io/exit-code.unrelated": "not even a number",  # another container's
        "example.com/other": "ignored",
    }
    sandbox = pod(annotations=annotations)
    await runtime.pull_image("app")
    sandbox_id = await runtime.run_pod_sandbox(sandbox)
    ids = {}
    own = ctr("own", "app", annotations={"sim.actorkube.io/run-for": "forever"})
    for config in (ctr("slow", "app"), ctr("fast", "app"), own):
        ids[config.name] = await runtime.create_container(sandbox_id, config, sandbox)
        await runtime.start_container(ids[config.name])
    stats = await runtime.container_stats(ids["slow"])
    assert (stats.cpu_millis, stats.memory_bytes) == (250, 128 << 20)
    assert log_lines((await runtime.read_log(ids["fast"])).data) == [
        (b"stdout", b"F", b"hello"), (b"stdout", b"F", b"world")]  # fmt: skip

    await runtime.wait_log(ids["fast"], 10**9)
    assert trio.current_time() == 5
    await runtime.wait_log(ids["slow"], 10**9)
    assert trio.current_time() == 90
    assert (await runtime.container_status(ids["slow"])).exit_code == 2
    assert (await runtime.container_status(ids["own"])).state is ContainerState.RUNNING


@pytest.mark.parametrize(
    ("key", "value", "complaint"),
    [
        ("sim.actorkube.io/run-for", "soon", "not a duration"),
        ("sim.actorkube.io/run-for.app", "-5s", "not a duration"),
        ("sim.actorkube.io/exit-code", "300", "0 to 255"),
        ("sim.actorkube.io/exit-code", "1.5", "exit code"),
        ("sim.actorkube.io/memory", "lots", "invalid quantity"),
        ("sim.actorkube.io/memory", "-1Gi", "at least 0"),
        ("sim.actorkube.io/log-every", "0s", "at least 1ms"),
        ("sim.actorkube.io/log-every", "1ns", "at least 1ms"),
        ("sim.actorkube.io/start-delay", "forever", "finite"),
        ("sim.actorkube.io/pull-delay", "5s", "cannot be set for a pod"),
        ("sim.actorkube.io/restart-me", "yes", "unknown simulation field"),
    ],
)
async def test_bad_annotations_are_create_container_errors(autojump_clock, nursery, key, value,
                                                           complaint):  # fmt: skip
    runtime = await started(nursery)
    await runtime.pull_image("nginx:1.25")
    sandbox = pod(annotations={key: value})
    sandbox_id = await runtime.run_pod_sandbox(sandbox)
    with pytest.raises(CreateContainerError, match=re.escape(key)) as caught:
        await runtime.create_container(sandbox_id, ctr(), sandbox)
    assert complaint in str(caught.value)
    assert caught.value.reason == "CreateContainerError"
    assert await runtime.list_containers() == []
    # The runtime goes on: the same pod without the annotation works.
    fine = await runtime.create_container(sandbox_id, ctr(), pod())
    await runtime.start_container(fine)


def test_annotation_precedence():
    base = SimProfile()
    sandbox = {"sim.actorkube.io/exit-code": "1", "sim.actorkube.io/exit-code.app": "2",
               "sim.actorkube.io/term-delay": "3"}  # fmt: skip
    container = {"sim.actorkube.io/exit-code": "4"}
    assert with_annotations(base, "app", (sandbox, {})).exit_code == 2
    assert with_annotations(base, "other", (sandbox, {})).exit_code == 1
    both = with_annotations(base, "app", (sandbox, container))
    assert (both.exit_code, both.term_delay) == (4, 3.0)
    assert with_annotations(base, "app", ({}, {})) is base
    with pytest.raises(AnnotationError, match="must be text"):
        with_annotations(base, "app", ({"sim.actorkube.io/cpu": 1},))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("500ms", 0.5), ("1.5h", 5400.0), ("2h45m", 9900.0), ("1us", 1e-6),
     ("3ns", 3e-9), ("0", 0.0), ("30", 30.0), ("2.5", 2.5), (" 7s ", 7.0), ("forever", math.inf)],
)  # fmt: skip
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "-1s", "1x", "1m30", "1.s.", "forever1", "1e3s", "."])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_profile_validation():
    for bad in ({"exit_code": 256}, {"exit_code": True}, {"log_every": 0},
                {"log_every": 0.0009}, {"log_every": float("nan")}, {"run_for": -1},
                {"pull_delay": math.inf}, {"memory_bytes": -1}, {"cpu_millis": 1.5},
                {"term_delay": float("nan")}, {"pull_fails": "yes"}):  # fmt: skip
        with pytest.raises((ValueError, TypeError)):
            SimProfile(**bad)
    with pytest.raises(TypeError):
        SimProfile(run_for="30s")
    assert SimProfile(log_lines="a\nb").log_lines == ("a", "b")
    assert SimProfile(run_for=3).run_for == 3.0


# --- not found, bad input, closing ---------------------------------------------------------------


async def test_not_found(autojump_clock, nursery):
    runtime = await started(nursery)
    await runtime.pull_image("nginx:1.25")
    calls = [
        runtime.pod_sandbox_status("nope"),
        runtime.create_container("nope", ctr(), pod()),
        runtime.start_container("nope"),
        runtime.container_status("nope"),
        runtime.container_stats("nope"),
        runtime.exec_sync("nope", ("true",), 1),
        runtime.probe_network("nope", {"tcpSocket": {"port": 1}}, "10.0.0.1", 1),
        runtime.read_log("nope"),
        runtime.wait_log("nope", 0),
    ]
    for call in calls:
        with pytest.raises(NotFound) as caught:
            await call
        assert caught.value.reason == "NotFound"
    assert await runtime.list_containers(sandbox_id="nope") == []


async def test_bad_input(autojump_clock, nursery):
    runtime = await started(nursery)
    sandbox_id, container_id = await run_pod(runtime)
    with pytest.raises(TypeError):
        await runtime.run_pod_sandbox({"name": "web"})
    with pytest.raises(TypeError):
        await runtime.create_container(sandbox_id, {"name": "app"}, pod())
    with pytest.raises(TypeError):
        await runtime.create_container(sandbox_id, ctr("x"), "sandbox")
    for broken in ({"image": None}, {"name": 3}, {"annotations": ["a"]}, {"resources": 1}):
        with pytest.raises(TypeError, match=re.escape(f"config.{next(iter(broken))}")):
            await runtime.create_container(sandbox_id, attrs.evolve(ctr("x"), **broken), pod())
    with pytest.raises(TypeError, match=re.escape("config.labels")):
        await runtime.run_pod_sandbox(attrs.evolve(pod("y"), labels=None))
    with pytest.raises(TypeError, match=re.escape("sandbox.uid")):
        await runtime.create_container(sandbox_id, ctr("x"), attrs.evolve(pod(), uid=None))
    with pytest.raises(CreateContainerError, match="no image"):
        await runtime.create_container(sandbox_id, ctr("x", image=""), pod())
    with pytest.raises(TypeError):
        await runtime.image_status(7)
    with pytest.raises(TypeError):
        await runtime.list_containers(labels=["app"])
    with pytest.raises(TypeError):
        await runtime.stop_container(container_id, "soon")
    with pytest.raises(ValueError):
        await runtime.read_log(container_id, -1)
    with pytest.raises(TypeError):
        await runtime.wait_log(container_id, "0")
    with pytest.raises(TypeError):
        await runtime.pull_image(None)
    for bad in ({"profiles": {"app": {"run_for": 1}}}, {"default_profile": None},
                {"log_limit": 0}, {"log_limit": "1Mi"}):  # fmt: skip
        with pytest.raises((TypeError, ValueError)):
            SimRuntime("10.244.0.0/24", **bad)
    # Nothing of that broke the runtime.
    assert (await runtime.container_status(container_id)).state is ContainerState.RUNNING


async def test_aclose(autojump_clock, nursery):
    runtime = SimRuntime("10.244.0.0/24", profiles={"app": SimProfile(term_delay=math.inf)},
                         wall_clock=wall)  # fmt: skip
    events = runtime.events()
    ran = trio.Event()

    async def run():
        await runtime.run()
        ran.set()

    nursery.start_soon(run)
    _, container_id = await run_pod(runtime, container=ctr(image="app"))

    async def close_later():
        await trio.sleep(2)
        await runtime.aclose()

    nursery.start_soon(close_later)
    with pytest.raises(RuntimeFailure, match="closed"):
        await runtime.stop_container(container_id, 60)
    await ran.wait()  # run() ended
    assert trio.current_time() == 2
    assert len(drain(events)) == 2
    with pytest.raises(trio.EndOfChannel):
        events.receive_nowait()
    for call in (runtime.list_pod_sandboxes(), runtime.pull_image("x"), runtime.run()):
        with pytest.raises(RuntimeFailure):
            await call
    with pytest.raises(RuntimeFailure):
        runtime.events()
    await runtime.aclose()  # again: nothing


# --- removal, stop of a sandbox, restart of the kubelet, scale -----------------------------------


async def test_removing_a_sandbox_removes_its_containers(autojump_clock, nursery):
    runtime = await started(nursery, {"log": SimProfile(log_lines=("hi",), run_for=1)})
    events = runtime.events()
    sandbox_id, running = await run_pod(runtime)
    exited = await runtime.create_container(sandbox_id, ctr("init", "nginx:1.25"), pod())
    await runtime.start_container(exited)
    await runtime.stop_container(exited, 0)
    created = await runtime.create_container(sandbox_id, ctr("late"), pod())
    other_sandbox, other = await run_pod(runtime, pod("other"), ctr())
    drain(events)

    await runtime.remove_pod_sandbox(sandbox_id)
    seen = [(e.type, e.container_id) for e in drain(events)]
    assert seen == [(EventType.STOPPED, running), (EventType.DELETED, running),
                    (EventType.DELETED, exited), (EventType.DELETED, created)]  # fmt: skip
    assert [c.id for c in await runtime.list_containers()] == [other]
    for gone in (running, exited, created):
        with pytest.raises(NotFound):
            await runtime.read_log(gone)
    status = await runtime.container_status(other)
    assert (status.sandbox_id, status.state) == (other_sandbox, ContainerState.RUNNING)


async def test_stopping_a_sandbox_kills_its_containers(autojump_clock, nursery):
    runtime = await started(nursery, {"app": SimProfile(term_delay=math.inf)})
    sandbox_id, container_id = await run_pod(runtime, container=ctr(image="app"))
    await runtime.stop_pod_sandbox(sandbox_id)
    assert trio.current_time() == 0  # SIGKILL, no grace (containerd's StopPodSandbox)
    status = await runtime.container_status(container_id)
    assert ended(status) == (ContainerState.EXITED, 137, "Error")


async def test_a_restarted_kubelet_finds_its_pods(autojump_clock, nursery):
    runtime = SimRuntime("10.244.0.0/24", profiles={"job": SimProfile(run_for=10)},
                         wall_clock=wall)  # fmt: skip
    mine = {"kubelet": "node-1"}
    first_events = runtime.events()
    async with trio.open_nursery() as first_kubelet:
        await first_kubelet.start(runtime.run)
        ids = {}
        for name in ("a", "b"):
            ids[name] = await run_pod(
                runtime, pod(name, labels={**mine, "pod": name}),
                ctr(image="job", labels={**mine, "pod": name}))  # fmt: skip
        await runtime.run_pod_sandbox(pod("foreign", labels={"kubelet": "other"}))
        first_kubelet.cancel_scope.cancel()  # the kubelet dies; the runtime lives on

    await trio.sleep(25)  # nothing runs the timers meanwhile
    events = runtime.events()  # the new kubelet's channel; the old one ends
    assert len(drain(first_events)) == 4
    with pytest.raises(trio.EndOfChannel):
        first_events.receive_nowait()
    await nursery.start(runtime.run)
    await trio.testing.wait_all_tasks_blocked()
    sandboxes = await runtime.list_pod_sandboxes(labels=mine)
    assert sorted(s.id for s in sandboxes) == sorted(s for s, _ in ids.values())
    containers = await runtime.list_containers(labels={"pod": "b"})
    assert [c.id for c in containers] == [ids["b"][1]]
    # The exits that fell due while no run() was there happened, stamped when due.
    status = containers[0]
    assert (status.state, status.finished_at) == (ContainerState.EXITED, EPOCH + 10)
    assert [e.type for e in drain(events)] == [EventType.STOPPED, EventType.STOPPED]
    with pytest.raises(RuntimeError, match="already running"):
        await runtime.run()


async def test_many_containers_start_concurrently(autojump_clock, nursery):
    runtime = await started(
        nursery, {"app": SimProfile(start_delay=1.5, pull_delay=3)}, cidr="10.244.0.0/16"
    )
    events = runtime.events()
    await runtime.pull_image("app")
    count = 300

    async def one(i):
        sandbox = pod(f"p{i}")
        sandbox_id = await runtime.run_pod_sandbox(sandbox)
        container_id = await runtime.create_container(sandbox_id, ctr(image="app"), sandbox)
        await runtime.start_container(container_id)

    async with trio.open_nursery() as starters:
        for i in range(count):
            starters.start_soon(one, i)
    assert trio.current_time() == 4.5
    containers = await runtime.list_containers()
    assert len(containers) == count
    assert {c.state for c in containers} == {ContainerState.RUNNING}
    assert len({(await runtime.pod_sandbox_status(c.sandbox_id)).ip for c in containers}) == count
    kinds = [e.type for e in drain(events)]
    assert kinds.count(EventType.CREATED) == kinds.count(EventType.STARTED) == count
    assert runtime.dropped_events == 0


async def test_timers_of_stopped_containers_do_not_pile_up(autojump_clock, nursery):
    profile = SimProfile(run_for=3600, periodic_log_line="tick", log_every=60)
    runtime = await started(nursery, {"job": profile}, cidr="10.244.0.0/16")
    ids = [(await run_pod(runtime, pod(f"p{i}"), ctr(image="job")))[1] for i in range(300)]
    assert len(runtime._timers) == 600
    for container_id in ids[:-10]:
        await runtime.stop_container(container_id, 0)
    # Stale entries are dropped once they make up most of the heap.
    assert len(runtime._timers) < 2 * 64 + 20
    await runtime.wait_log(ids[-1], 10**9)  # the rest still run to their end
    assert trio.current_time() == 3600
    assert [(await runtime.container_status(i)).reason for i in ids[-10:]] == ["Completed"] * 10
    assert runtime._timers == []


async def test_a_full_event_buffer_drops_and_counts(autojump_clock, nursery):
    runtime = await started(nursery)
    await runtime.pull_image("nginx:1.25")
    sandbox_id = await runtime.run_pod_sandbox(pod())
    for attempt in range(EVENT_BUFFER + 3):
        await runtime.create_container(sandbox_id, ctr(attempt=attempt), pod())
    assert runtime.dropped_events == 3
    events = drain(runtime.events())
    assert len(events) == EVENT_BUFFER


async def test_many_runtimes_in_one_process(autojump_clock, nursery):
    """A small version of the scale benchmark: 20 nodes of 30 pods, each pod a job."""
    profiles = {"job": SimProfile(run_for=60, log_lines=("done",))}
    runtimes = [await started(nursery, profiles, cidr=f"10.{i}.0.0/24") for i in range(20)]
    for runtime in runtimes:
        for i in range(30):
            await run_pod(runtime, pod(f"p{i}"), ctr(image="job"))
    for runtime in runtimes:
        for status in await runtime.list_containers():
            await runtime.wait_log(status.id, 10**9)  # until it exits
    assert trio.current_time() == 60
    for runtime in runtimes:
        statuses = await runtime.list_containers()
        assert [s.reason for s in statuses] == ["Completed"] * 30
    ids = {s.id for r in runtimes for s in await r.list_containers()}
    assert len(ids) == 600  # ids differ between nodes


def test_profile_is_a_frozen_value():
    profile = SimProfile()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        profile.run_for = 1
    assert attrs.evolve(profile, run_for=5).run_for == 5.0


@pytest.mark.parametrize("protocol", [ContainerRuntime, NetworkProbes])
def test_sim_runtime_offers_the_interface(protocol):
    methods = [n for n, m in vars(protocol).items() if not n.startswith("_") and callable(m)]
    assert methods
    for name in methods:
        ours, theirs = getattr(SimRuntime, name), getattr(protocol, name)
        assert inspect.iscoroutinefunction(ours) == inspect.iscoroutinefunction(theirs), name
        ours_params = list(inspect.signature(ours).parameters)
        assert ours_params == list(inspect.signature(theirs).parameters), name
    assert SimRuntime.name == "sim"


# --- random programs against CRI's rules ---------------------------------------------------------

PROFILES = (
    SimProfile(),
    SimProfile(term_delay=3, term_exit_code=0),
    SimProfile(term_delay=math.inf),
    SimProfile(run_for=2, exit_code=1),
    SimProfile(memory_bytes=2 << 30),  # over the 1Gi limit every container gets
    SimProfile(start_delay=1, log_lines=("up",), periodic_log_line="tick", log_every=0.5),
)
CONTAINER = st.integers(0, 15)
POD = st.integers(0, 5)
MAKE_POD = st.tuples(st.just("pod"))
CREATE = st.tuples(st.just("create"), POD, st.integers(0, len(PROFILES) - 1))
START = st.tuples(st.just("start"), CONTAINER)
# Making pods, creating and starting containers come up more often than the rest, so
# that programs reach running containers before they stop and remove them.
OPERATION = st.one_of(
    MAKE_POD, CREATE, CREATE, START, START,
    st.tuples(st.just("stop"), CONTAINER, st.sampled_from([0, 1, 5])),
    st.tuples(st.just("remove"), CONTAINER),
    st.tuples(st.just("stop_pod"), POD),
    st.tuples(st.just("remove_pod"), POD),
    st.tuples(st.just("wait"), st.sampled_from([0.5, 1, 3])),
)
EVENT_ORDER = [EventType.CREATED, EventType.STARTED, EventType.STOPPED, EventType.DELETED]
STATE_AFTER = {EventType.CREATED: ContainerState.CREATED,
               EventType.STARTED: ContainerState.RUNNING,
               EventType.STOPPED: ContainerState.EXITED}  # fmt: skip


@given(st.lists(OPERATION, min_size=10, max_size=40))
def test_random_programs_keep_cri_rules(program):
    """Any sequence of calls (starts and stops running concurrently, time passing)
    keeps CRI's rules: events in order, states as the events say, one IP per ready
    sandbox, no running container in a stopped sandbox."""
    trio.run(play, program, clock=trio.testing.MockClock(autojump_threshold=0))


async def play(program) -> None:
    profiles = {f"img{i}": p for i, p in enumerate(PROFILES)}
    runtime = SimRuntime("10.9.0.0/28", profiles=profiles, wall_clock=wall)  # 13 pod IPs
    events = runtime.events()
    seen: dict[str, list[EventType]] = {}
    pods: list[str] = []
    containers: list[str] = []

    async def start(container_id):
        # A start may lose a race with a stop of its sandbox or a removal.
        with contextlib.suppress(StartError, NotFound):
            await runtime.start_container(container_id)

    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        for image in profiles:
            await runtime.pull_image(image)
        for n, (kind, *args) in enumerate(program):
            if kind == "pod":
                try:
                    pods.append(await runtime.run_pod_sandbox(pod(f"p{n}")))
                except RuntimeFailure:
                    ready = await runtime.list_pod_sandboxes()
                    assert sum(s.state is SandboxState.READY for s in ready) == 13
            elif kind == "create" and pods:
                config = ctr(f"c{n}", f"img{args[1]}", memory=1 << 30)
                try:
                    sandbox_id = pods[args[0] % len(pods)]
                    containers.append(await runtime.create_container(sandbox_id, config, pod()))
                except (CreateContainerError, NotFound):
                    pass  # its sandbox was stopped or removed
            elif kind in ("start", "stop", "remove") and containers:
                container_id = containers[args[0] % len(containers)]
                if kind == "start":
                    nursery.start_soon(start, container_id)
                elif kind == "stop":
                    nursery.start_soon(runtime.stop_container, container_id, args[1])
                else:
                    await runtime.remove_container(container_id)
            elif kind in ("stop_pod", "remove_pod") and pods:
                sandbox_id = pods[args[0] % len(pods)]
                if kind == "stop_pod":
                    await runtime.stop_pod_sandbox(sandbox_id)
                else:
                    await runtime.remove_pod_sandbox(sandbox_id)
            elif kind == "wait":
                await trio.sleep(args[0])
            await trio.testing.wait_all_tasks_blocked()
            for event in drain(events):
                seen.setdefault(event.container_id, []).append(event.type)
            await check_rules(runtime, seen)
        nursery.cancel_scope.cancel()


async def check_rules(runtime: SimRuntime, seen: dict[str, list[EventType]]) -> None:
    assert runtime.dropped_events == 0
    sandboxes = {s.id: s for s in await runtime.list_pod_sandboxes()}
    ready_ips = [s.ip for s in sandboxes.values() if s.state is SandboxState.READY]
    assert all(ready_ips) and len(set(ready_ips)) == len(ready_ips)
    assert all(s.ip == "" for s in sandboxes.values() if s.state is SandboxState.NOTREADY)
    for types in seen.values():
        positions = [EVENT_ORDER.index(t) for t in types]
        assert positions[0] == 0 and positions == sorted(set(positions)), types
    listed = {c.id: c for c in await runtime.list_containers()}
    for container_id, types in seen.items():
        assert (types[-1] is EventType.DELETED) == (container_id not in listed)
    for c in listed.values():
        assert c.state is STATE_AFTER[seen[c.id][-1]]
        assert c.sandbox_id in sandboxes
        if c.state is ContainerState.CREATED:
            assert c.started_at == c.finished_at == 0
        elif c.state is ContainerState.RUNNING:
            assert sandboxes[c.sandbox_id].state is SandboxState.READY
            assert c.started_at >= c.created_at and c.finished_at == 0
        else:
            assert c.finished_at >= max(c.started_at, c.created_at)
            assert c.reason in ("Completed", "Error", "OOMKilled", "StartError")
            assert (c.reason == "Completed") == (c.exit_code == 0)


_LABEL_KEYS = ("pod", "node", "app")
_labels = st.dictionaries(st.sampled_from(_LABEL_KEYS), st.sampled_from("abc"), max_size=3)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("sandbox"), _labels),
        st.tuples(st.just("container"), st.integers(0, 20), _labels),
        st.tuples(st.just("remove sandbox"), st.integers(0, 20)),
        st.tuples(st.just("remove container"), st.integers(0, 40)),
    ),
    max_size=40,
)


@given(ops=_ops, selectors=st.lists(st.one_of(st.none(), _labels), min_size=1, max_size=5))
def test_listings_by_label_find_exactly_what_matches_in_creation_order(ops, selectors):
    # The runtime indexes labels; whatever was created and removed, a listing is what a
    # scan of everything would find, in the order the items were made.
    async def main() -> None:
        runtime = SimRuntime("10.244.0.0/24", wall_clock=wall)
        await runtime.pull_image("nginx:1.25")
        sandboxes: list[tuple[str, dict]] = []  # (id, labels), creation order
        containers: list[tuple[str, str, dict]] = []  # (id, sandbox id, labels)
        for n, op in enumerate(ops):
            if op[0] == "sandbox":
                sid = await runtime.run_pod_sandbox(pod(f"p{n}", labels=op[1] or {"x": "y"}))
                sandboxes.append((sid, op[1] or {"x": "y"}))
            elif op[0] == "container" and sandboxes:
                sid, _ = sandboxes[op[1] % len(sandboxes)]
                labels = op[2] or {"x": "y"}
                cid = await runtime.create_container(sid, ctr(f"c{n}", labels=labels), pod())
                containers.append((cid, sid, labels))
            elif op[0] == "remove sandbox" and sandboxes:
                sid, _ = sandboxes.pop(op[1] % len(sandboxes))
                await runtime.remove_pod_sandbox(sid)
                containers[:] = [c for c in containers if c[1] != sid]
            elif op[0] == "remove container" and containers:
                cid, _, _ = containers.pop(op[1] % len(containers))
                await runtime.remove_container(cid)
        for selector in selectors:
            def wanted(labels: dict, selector=selector) -> bool:
                return selector is None or all(labels.get(k) == v for k, v in selector.items())

            got = [s.id for s in await runtime.list_pod_sandboxes(selector)]
            assert got == [sid for sid, labels in sandboxes if wanted(labels)]
            got = [c.id for c in await runtime.list_containers(selector)]
            assert got == [cid for cid, _, labels in containers if wanted(labels)]

    trio.run(main)


async def test_labels_must_map_strings_to_strings(nursery):
    runtime = await started(nursery)
    with pytest.raises(TypeError, match=re.escape("config.labels must map strings")):
        await runtime.run_pod_sandbox(pod("y", labels={"app": 3}))
    sandbox_id = await runtime.run_pod_sandbox(pod("z"))
    with pytest.raises(TypeError, match=re.escape("config.labels must map strings")):
        await runtime.create_container(sandbox_id, ctr("x", labels={"app": ["a"]}), pod("z"))
    # Nothing was half made: the name is free, the listing empty of the failures.
    assert [s.id for s in await runtime.list_pod_sandboxes()] == [sandbox_id]
    assert await runtime.list_containers() == []
    # A selector with a value no label can have matches nothing.
    assert await runtime.list_pod_sandboxes({"io.kubernetes.pod.name": ["z"]}) == []
