"""Resource limits and usage of containers, with what this machine offers.

Rules of this file:

- One mechanism per runtime, chosen at start: cgroup v2 when ``cgroup_root`` is a
  unified hierarchy offering the memory and cpu controllers where the runtime can
  enable them; else cgroup v1 when the memory, cpu and cpuacct hierarchies are
  mounted under ``cgroup_root`` and writable; else rlimits. ``Limits.detail`` says why
  the ones before were not used.
- The runtime's cgroups live under a parent named for its root_dir
  (``actorkube-<hash>``), made inside the cgroup the runtime's own process is in (so
  limits on the runtime also bound its containers), one child per container named by
  its id. A child found there at start was left by an earlier runtime on the same
  root_dir: its processes were started by this runtime's root_dir, are killed, and
  the child removed.
- cgroup v2 and the no-internal-process rule: controllers can be enabled for children
  only in a cgroup without processes. If the runtime's cgroup holds the runtime's
  process and nothing else, the runtime moves itself into a child
  (``<parent>-runtime``) first; with any other process there, cgroup v2 is not used.
- Kubernetes' conversions: ``cpu.shares`` = max(2, request * 1024 / 1000); CFS quota =
  limit * 100 us per 100 ms period (at least 1 ms); cgroup v2 ``cpu.weight`` = 1 +
  (shares - 2) * 9999 / 262142; the memory limit is ``memory.max`` /
  ``memory.limit_in_bytes``. Under v2 ``memory.oom.group`` is set, so an OOM kill
  takes the whole container, as Kubernetes does.
- OOM: an ``oom_kill`` count above zero (``memory.events`` under v2,
  ``memory.oom_control`` under v1) means the kernel's OOM killer killed a process of
  the container.
- Usage: CPU time and working set (memory in use minus inactive file cache) from the
  cgroup; under rlimits, CPU time and resident memory summed over the processes of the
  container's session in /proc.
- rlimits: RLIMIT_AS (address space) is set to the memory limit; nothing limits CPU.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Protocol

import attrs
import trio

from . import _procs
from ._api import Resources

log = logging.getLogger("actorkube.node.runtime")

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CFS_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000
MIN_SHARES, MAX_SHARES = 2, 262_144


@attrs.frozen
class Usage:
    cpu_ns: int
    memory_bytes: int


def cpu_shares(request_millis: int) -> int:
    return min(MAX_SHARES, max(MIN_SHARES, request_millis * 1024 // 1000))


def cpu_quota_us(limit_millis: int) -> int:
    return max(MIN_QUOTA_US, limit_millis * CFS_PERIOD_US // 1000)


def cpu_weight(shares: int) -> int:
    return 1 + (shares - 2) * 9999 // 262_142


class ContainerLimits(Protocol):
    """What limits one container, and what it uses."""

    procs: tuple[str, ...]  # the cgroup.procs files its processes join
    rlimit_as: int  # RLIMIT_AS for its processes (0: none)

    def oom_kills(self) -> int: ...
    def usage(self, sid: int) -> Usage: ...
    def kill(self) -> None: ...
    def remove(self) -> bool: ...


class Limits(Protocol):
    """The runtime's mechanism (see the module rules)."""

    name: str
    detail: str

    def create(self, container_id: str, resources: Resources) -> ContainerLimits: ...
    def clean(self) -> None: ...
    def close(self) -> None: ...


# --- helpers -------------------------------------------------------------------------


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (``key value`` per line)."""
    out = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def _pids(procs: Path) -> list[int]:
    try:
        return [int(p) for p in procs.read_text().split()]
    except FileNotFoundError:
        return []


def own_cgroup(hierarchy: Callable[[str], bool], proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup path in the hierarchy whose controller list (the second
    field of /proc/self/cgroup) ``hierarchy`` accepts; KeyError if there is none."""
    with open(proc_cgroup) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy(controllers):
                return path
    raise KeyError("no such hierarchy in /proc/self/cgroup")


def _member(pid: int, hierarchy: Callable[[str], bool], path: str) -> bool:
    try:
        current = own_cgroup(hierarchy, f"/proc/{pid}/cgroup")
    except (OSError, KeyError):
        return False
    return current == path or current.startswith(path.rstrip("/") + "/")


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno == errno.EBUSY:
            return False
        raise
    return True


async def remove(group: ContainerLimits, attempts: int = 200, delay: float = 0.005) -> bool:
    """Removes ``group`` once its killed processes are gone (a SIGKILLed process
    leaves its cgroup a moment later); False if they never went or it cannot be
    removed."""
    for _ in range(attempts):
        try:
            if group.remove():
                return True
        except OSError as e:
            log.warning("cannot remove %s: %s", group, e)
            return False
        await trio.sleep(delay)
    return False


def _clean(group: ContainerLimits) -> None:
    """Kills and removes a cgroup left by an earlier runtime."""
    try:
        group.kill()
        deadline = time.monotonic() + 1.0
        while not group.remove() and time.monotonic() < deadline:
            time.sleep(0.005)  # the killed processes are leaving it
    except OSError as e:
        log.warning("cannot clean up %s: %s", group, e)


def _remove_parent(parent: Path) -> None:
    try:
        if not _rmdir(parent):
            log.warning("%s still holds processes; it stays", parent)
    except OSError as e:
        log.warning("cannot remove %s: %s", parent, e)


def parent_name(root_dir: str) -> str:
    digest = hashlib.sha256(os.path.realpath(root_dir).encode()).hexdigest()
    return f"actorkube-{digest[:12]}"


# --- cgroup v2 -----------------------------------------------------------------------


def _v2(controllers: str) -> bool:
    return controllers == ""


@attrs.frozen
class V2Group:
    path: Path
    cgroup: str  # its path as /proc/<pid>/cgroup shows it
    rlimit_as: ClassVar[int] = 0

    @property
    def procs(self) -> tuple[str, ...]:
        return (str(self.path / "cgroup.procs"),)

    def oom_kills(self) -> int:
        return _keyed(self.path / "memory.events").get("oom_kill", 0)

    def usage(self, sid: int) -> Usage:
        cpu = _keyed(self.path / "cpu.stat").get("usage_usec", 0) * 1000
        current = int((self.path / "memory.current").read_text())
        inactive = _keyed(self.path / "memory.stat").get("inactive_file", 0)
        return Usage(cpu, max(0, current - inactive))

    def kill(self) -> None:
        kill_file = self.path / "cgroup.kill"
        if kill_file.exists():
            kill_file.write_text("1")
            return
        _procs.signal_verified(_pids(self.path / "cgroup.procs"), signal.SIGKILL,
                               lambda pid: _member(pid, _v2, self.cgroup))  # fmt: skip

    def remove(self) -> bool:
        return _rmdir(self.path)


@attrs.frozen
class CgroupV2:
    parent: Path
    cgroup: str  # the parent's path as /proc/<pid>/cgroup shows it
    detail: str = ""
    name: ClassVar[str] = "cgroup v2"

    @classmethod
    def detect(cls, cgroup_root: Path, parent_name: str) -> CgroupV2:
        """The v2 mechanism; OSError saying why it cannot be used."""
        if not (cgroup_root / "cgroup.controllers").exists():
            raise OSError(f"no cgroup v2 hierarchy at {cgroup_root}")
        own = own_cgroup(_v2)
        own_dir = cgroup_root / own.lstrip("/")
        wanted = {"memory", "cpu"}
        missing = wanted - set((own_dir / "cgroup.controllers").read_text().split())
        if missing:
            raise OSError(f"controllers {sorted(missing)} are not available in {own_dir}")
        if wanted - set((own_dir / "cgroup.subtree_control").read_text().split()):
            _enable(own_dir, parent_name)
        parent = own_dir / parent_name
        parent.mkdir(exist_ok=True)
        (parent / "cgroup.subtree_control").write_text("+memory +cpu")
        return cls(parent, f"{own.rstrip('/')}/{parent_name}")

    def create(self, container_id: str, resources: Resources) -> V2Group:
        path = self.parent / container_id
        path.mkdir(exist_ok=True)
        if resources.memory_bytes:
            (path / "memory.max").write_text(str(resources.memory_bytes))
        if (path / "memory.oom.group").exists():
            (path / "memory.oom.group").write_text("1")
        quota = cpu_quota_us(resources.cpu_millis) if resources.cpu_millis else "max"
        (path / "cpu.max").write_text(f"{quota} {CFS_PERIOD_US}")
        shares = cpu_shares(resources.cpu_request_millis)
        (path / "cpu.weight").write_text(str(cpu_weight(shares)))
        return V2Group(path, f"{self.cgroup}/{container_id}")

    def clean(self) -> None:
        for child in self.parent.iterdir():
            if child.is_dir():
                _clean(V2Group(child, f"{self.cgroup}/{child.name}"))

    def close(self) -> None:
        _remove_parent(self.parent)


def _enable(own_dir: Path, parent_name: str) -> None:
    """Enables memory and cpu for the children of ``own_dir``, moving this process out
    of it first if it is the only one there (see the module rules)."""
    try:
        (own_dir / "cgroup.subtree_control").write_text("+memory +cpu")
        return
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
    others = set(_pids(own_dir / "cgroup.procs")) - {os.getpid()}
    if others:
        raise OSError(
            f"cannot enable controllers in {own_dir}: it holds processes other than the "
            f"runtime ({sorted(others)[:5]}); run the runtime in a cgroup of its own"
        ) from None
    home = own_dir / f"{parent_name}-runtime"
    home.mkdir(exist_ok=True)
    (home / "cgroup.procs").write_text(str(os.getpid()))
    (own_dir / "cgroup.subtree_control").write_text("+memory +cpu")


# --- cgroup v1 -----------------------------------------------------------------------

V1_CONTROLLERS = ("memory", "cpu", "cpuacct")


def _v1(controller: str) -> Callable[[str], bool]:
    return lambda controllers: controller in controllers.split(",")


def _v1_hierarchy(cgroup_root: Path, controller: str) -> Path:
    """Where the v1 hierarchy of ``controller`` is mounted (alone, or with others as
    in ``cpu,cpuacct``)."""
    candidates = [cgroup_root / controller]
    if cgroup_root.is_dir():
        candidates += [p for p in sorted(cgroup_root.iterdir())
                       if controller in p.name.split(",")]  # fmt: skip
    for candidate in candidates:
        if (candidate / "cgroup.procs").exists() and (candidate / "tasks").exists():
            return candidate
    raise OSError(f"no cgroup v1 {controller} hierarchy under {cgroup_root}")


@attrs.frozen
class V1Group:
    dirs: dict[str, Path]  # controller -> directory (cpu and cpuacct may share one)
    cgroup: str  # its path in the memory hierarchy as /proc/<pid>/cgroup shows it
    rlimit_as: ClassVar[int] = 0

    @property
    def procs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(d / "cgroup.procs") for d in self.dirs.values()))

    def oom_kills(self) -> int:
        return _keyed(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0)

    def usage(self, sid: int) -> Usage:
        cpu = int((self.dirs["cpuacct"] / "cpuacct.usage").read_text())
        memory = self.dirs["memory"]
        used = int((memory / "memory.usage_in_bytes").read_text())
        stat = _keyed(memory / "memory.stat")
        inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        return Usage(cpu, max(0, used - inactive))

    def kill(self) -> None:
        _procs.signal_verified(_pids(self.dirs["memory"] / "cgroup.procs"), signal.SIGKILL,
                               lambda pid: _member(pid, _v1("memory"), self.cgroup))  # fmt: skip

    def remove(self) -> bool:
        return all([_rmdir(d) for d in dict.fromkeys(self.dirs.values())])


@attrs.frozen
class CgroupV1:
    parents: dict[str, Path]  # controller -> the runtime's parent cgroup directory
    cgroup: str  # the parent's path in the memory hierarchy as /proc shows it
    detail: str = ""
    name: ClassVar[str] = "cgroup v1"

    @classmethod
    def detect(cls, cgroup_root: Path, parent_name: str) -> CgroupV1:
        """The v1 mechanism; OSError saying why it cannot be used."""
        parents = {}
        for controller in V1_CONTROLLERS:
            hierarchy = _v1_hierarchy(cgroup_root, controller)
            own = own_cgroup(_v1(controller))
            parent = hierarchy / own.lstrip("/") / parent_name
            parent.mkdir(exist_ok=True)
            parents[controller] = parent
        own = own_cgroup(_v1("memory"))
        return cls(parents, f"{own.rstrip('/')}/{parent_name}")

    def _group(self, container_id: str) -> V1Group:
        dirs = {c: p / container_id for c, p in self.parents.items()}
        return V1Group(dirs, f"{self.cgroup}/{container_id}")

    def create(self, container_id: str, resources: Resources) -> V1Group:
        group = self._group(container_id)
        for path in group.dirs.values():
            path.mkdir(exist_ok=True)
        if resources.memory_bytes:
            (group.dirs["memory"] / "memory.limit_in_bytes").write_text(str(resources.memory_bytes))
        cpu = group.dirs["cpu"]
        (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
        quota = cpu_quota_us(resources.cpu_millis) if resources.cpu_millis else -1
        (cpu / "cpu.cfs_quota_us").write_text(str(quota))
        (cpu / "cpu.shares").write_text(str(cpu_shares(resources.cpu_request_millis)))
        return group

    def clean(self) -> None:
        names = {c.name for p in self.parents.values() for c in p.iterdir() if c.is_dir()}
        for name in names:
            _clean(self._group(name))

    def close(self) -> None:
        for parent in dict.fromkeys(self.parents.values()):
            _remove_parent(parent)


# --- rlimits -------------------------------------------------------------------------


@attrs.frozen
class RlimitGroup:
    rlimit_as: int
    procs: ClassVar[tuple[str, ...]] = ()

    def oom_kills(self) -> int:
        return 0

    def usage(self, sid: int) -> Usage:
        ticks = rss = 0
        for _, fields in _procs.session_members(sid):
            ticks += int(fields[11]) + int(fields[12])
            rss += int(fields[21])
        return Usage(ticks * 1_000_000_000 // CLOCK_TICKS, rss * PAGE_SIZE)

    def kill(self) -> None:
        """Nothing beyond the session kill the runtime does itself."""

    def remove(self) -> bool:
        return True


@attrs.frozen
class Rlimits:
    detail: str = ""
    name: ClassVar[str] = "rlimit"

    def create(self, container_id: str, resources: Resources) -> RlimitGroup:
        return RlimitGroup(resources.memory_bytes)

    def clean(self) -> None:
        """Nothing is left to find: without cgroups, processes are known only by pid."""

    def close(self) -> None:
        """Nothing to remove."""


def detect(cgroup_root: str, root_dir: str) -> Limits:
    """The mechanism this machine offers (see the module rules)."""
    name = parent_name(root_dir)
    reasons = []
    for mechanism in (CgroupV2, CgroupV1):
        try:
            found = mechanism.detect(Path(cgroup_root), name)
        except (OSError, KeyError, ValueError) as e:
            reasons.append(f"{mechanism.name}: {e}")
            continue
        return attrs.evolve(found, detail="; ".join(reasons))
    return Rlimits("; ".join(reasons))
