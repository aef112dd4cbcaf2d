"""What the process runtime keeps of each sandbox and container: in memory, and as a
JSON record in its directory under ``root_dir``.

Rules of this file:

- A record is written whole to a temporary file that then replaces the old one, so a
  crash leaves the old record or the new one, never half of one. A removed sandbox or
  container is never written again.
- A record that cannot be written (a full disk) is logged, never raised: the state in
  memory is the truth while the runtime runs, and a runtime started again later reads
  the last record that was written.
- Configs survive the round trip: a config read back equals the config written (tuples
  stay tuples, mappings become dicts).
- Reading a malformed record raises ``ValueError`` (the caller skips it).
- A container's ``pid`` is its main process while that is unreaped, else 0; its
  ``execs`` are the exec'd commands not yet reaped. Neither is written: processes do
  not outlive the runtime.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import attrs
import trio

from ._api import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    Mount,
    PodSandboxConfig,
    PortMapping,
    Resources,
    SandboxState,
    SandboxStatus,
)
from ._limits import ContainerLimits

log = logging.getLogger("actorkube.node.runtime")


def write(path: Path, record: dict[str, Any]) -> None:
    """Writes ``record`` at ``path`` atomically (see the module rules)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def _save(path: Path, record: dict[str, Any]) -> None:
    try:
        write(path, record)
    except OSError as e:  # see the module rules
        log.warning("cannot write %s, kept in memory only: %s", path, e)


def read(path: Path) -> dict[str, Any]:
    """The record at ``path``; ``ValueError`` if it is not a JSON object, ``OSError``
    if it cannot be read."""
    with open(path, encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a record")
    return record


def sandbox_config(data: dict[str, Any]) -> PodSandboxConfig:
    return PodSandboxConfig(**{
        **data,
        "labels": dict(data["labels"]),
        "annotations": dict(data["annotations"]),
        "port_mappings": tuple(PortMapping(**p) for p in data["port_mappings"]),
    })  # fmt: skip


def container_config(data: dict[str, Any]) -> ContainerConfig:
    return ContainerConfig(**{
        **data,
        "command": tuple(data["command"]),
        "args": tuple(data["args"]),
        "envs": tuple((str(k), str(v)) for k, v in data["envs"]),
        "mounts": tuple(Mount(**m) for m in data["mounts"]),
        "labels": dict(data["labels"]),
        "annotations": dict(data["annotations"]),
        "resources": Resources(**data["resources"]),
    })  # fmt: skip


@attrs.define(eq=False)
class SandboxRecord:
    id: str
    config: PodSandboxConfig
    created_at: float
    ip: str
    dir: Path
    state: SandboxState = SandboxState.READY
    removed: bool = False

    def status(self) -> SandboxStatus:
        return SandboxStatus(self.id, self.config, self.state, self.created_at, self.ip)

    def save(self) -> None:
        if not self.removed:
            _save(self.dir / "sandbox.json", {
                "config": attrs.asdict(self.config), "created_at": self.created_at,
                "ip": self.ip, "state": self.state.value,
            })  # fmt: skip

    @classmethod
    def load(cls, directory: Path) -> SandboxRecord:
        """The sandbox recorded in ``directory``; ``ValueError`` or ``OSError`` if
        its record cannot be read."""
        r = read(directory / "sandbox.json")
        try:
            return cls(directory.name, sandbox_config(r["config"]), float(r["created_at"]),
                       str(r["ip"]), directory, SandboxState(r["state"]))  # fmt: skip
        except (KeyError, TypeError) as e:
            raise ValueError(f"{directory}: malformed sandbox record ({e!r})") from None


@attrs.define(eq=False)
class ContainerRecord:
    id: str
    sandbox_id: str
    config: ContainerConfig
    created_at: float
    image_ref: str
    dir: Path
    log_path: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: str
    state: ContainerState = ContainerState.CREATED
    started_at: float = 0.0
    finished_at: float = 0.0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    removed: bool = False
    # the running process (see the module rules)
    pid: int = 0
    has_rootfs: bool = False  # it has a mount namespace of its own
    limits: ContainerLimits | None = None
    launch_error: dict | None = None  # the launcher's report of a failed start
    cpu_sample: tuple[float, int] = (0.0, 0)  # (trio time, CPU ns) at the last stats
    execs: set[int] = attrs.field(factory=set)
    lock: trio.Lock = attrs.field(factory=trio.Lock)
    launched: trio.Event = attrs.field(factory=trio.Event)  # launch_error is known
    exited: trio.Event = attrs.field(factory=trio.Event)  # state is EXITED
    log_changed: trio.Event = attrs.field(factory=trio.Event)

    def status(self) -> ContainerStatus:
        return ContainerStatus(
            id=self.id, sandbox_id=self.sandbox_id, config=self.config, state=self.state,
            created_at=self.created_at, started_at=self.started_at,
            finished_at=self.finished_at, exit_code=self.exit_code, reason=self.reason,
            message=self.message, image_ref=self.image_ref,
        )  # fmt: skip

    def wake_log_readers(self) -> None:
        self.log_changed.set()
        self.log_changed = trio.Event()

    def save(self) -> None:
        if self.removed:
            return
        _save(self.dir / "container.json", {
            "sandbox_id": self.sandbox_id, "config": attrs.asdict(self.config),
            "created_at": self.created_at, "image_ref": self.image_ref,
            "log_path": self.log_path, "argv": list(self.argv),
            "env": [list(e) for e in self.env], "workdir": self.workdir,
            "state": self.state.value, "started_at": self.started_at,
            "finished_at": self.finished_at, "exit_code": self.exit_code,
            "reason": self.reason, "message": self.message,
        })  # fmt: skip

    @classmethod
    def load(cls, sandbox_id: str, directory: Path) -> ContainerRecord:
        """The container recorded in ``directory``; ``ValueError`` or ``OSError`` if
        its record cannot be read."""
        r = read(directory / "container.json")
        try:
            c = cls(
                directory.name, sandbox_id, container_config(r["config"]),
                float(r["created_at"]), str(r["image_ref"]), directory, str(r["log_path"]),
                tuple(map(str, r["argv"])), tuple((str(k), str(v)) for k, v in r["env"]),
                str(r["workdir"]), ContainerState(r["state"]), float(r["started_at"]),
                float(r["finished_at"]), int(r["exit_code"]), str(r["reason"]),
                str(r["message"]),
            )  # fmt: skip
        except (KeyError, TypeError) as e:
            raise ValueError(f"{directory}: malformed container record ({e!r})") from None
        if c.state is ContainerState.EXITED:
            c.exited.set()
        return c
