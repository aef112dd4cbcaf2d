"""Checks of what the kubelet hands the process runtime, before anything is made from
it: a malformed config is the caller's error, said clearly, and never reaches a
process.

Rules of this file:

- Each check raises ``CreateContainerError`` naming the field and what is wrong.
- Strings that become argv, environment or paths must not hold NUL bytes (the kernel
  cannot take them).
- Paths inside the container are absolute; a mount's host path must exist (the kubelet
  prepares it before it creates the container).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from ._api import (
    ContainerConfig,
    CreateContainerError,
    Mount,
    PodSandboxConfig,
    PortMapping,
    Resources,
)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise CreateContainerError(f"{what} must be a string, not {type(value).__name__}")
    if "\0" in value:
        raise CreateContainerError(f"{what} must not contain a NUL byte")
    return value


def _texts(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, tuple | list):
        raise CreateContainerError(f"{what} must be a tuple of strings")
    return tuple(_text(v, f"{what}[{i}]") for i, v in enumerate(value))


def _labels(value: object, what: str) -> None:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise CreateContainerError(f"{what} must map strings to strings")


def _absolute(path: str, what: str) -> str:
    if not os.path.isabs(path):
        raise CreateContainerError(f"{what} {path!r} must be an absolute path")
    return path


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CreateContainerError(f"{what} must be a non-negative integer, not {value!r}")
    return value


def sandbox_config(config: object) -> PodSandboxConfig:
    if not isinstance(config, PodSandboxConfig):
        raise CreateContainerError(
            f"a pod sandbox config must be a PodSandboxConfig, not {type(config).__name__}"
        )
    for name in ("name", "namespace", "uid", "hostname", "log_directory"):
        _text(getattr(config, name), f"sandbox {name}")
    _count(config.attempt, "sandbox attempt")
    _labels(config.labels, "sandbox labels")
    _labels(config.annotations, "sandbox annotations")
    if not isinstance(config.port_mappings, tuple | list) or not all(
        isinstance(p, PortMapping) for p in config.port_mappings
    ):
        raise CreateContainerError("sandbox port_mappings must be a tuple of PortMapping")
    if config.log_directory:
        _absolute(config.log_directory, "sandbox log_directory")
    return config


def container_config(config: object) -> ContainerConfig:
    if not isinstance(config, ContainerConfig):
        raise CreateContainerError(
            f"a container config must be a ContainerConfig, not {type(config).__name__}"
        )
    _text(config.name, "container name")
    if not _text(config.image, "image").strip():
        raise CreateContainerError(f"container {config.name!r}: image must not be empty")
    _count(config.attempt, "attempt")
    command = _texts(config.command, "command")
    if command and not command[0]:
        raise CreateContainerError(
            f"container {config.name!r}: the command is empty (its first word names the executable)"
        )
    _texts(config.args, "args")
    if _text(config.working_dir, "working_dir"):
        _absolute(config.working_dir, "working_dir")
    _envs(config.envs)
    _mounts(config.mounts)
    _labels(config.labels, "labels")
    _labels(config.annotations, "annotations")
    _text(config.log_path, "log_path")
    if not isinstance(config.resources, Resources):
        raise CreateContainerError("resources must be a Resources")
    for name in ("cpu_millis", "memory_bytes", "cpu_request_millis"):
        _count(getattr(config.resources, name), f"resources.{name}")
    return config


def _envs(envs: object) -> None:
    if not isinstance(envs, tuple | list):
        raise CreateContainerError("envs must be a tuple of (name, value) pairs")
    for i, pair in enumerate(envs):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise CreateContainerError(f"envs[{i}] must be a (name, value) pair, not {pair!r}")
        name = _text(pair[0], f"envs[{i}] name")
        _text(pair[1], f"envs[{i}] value")
        if not name or "=" in name:
            raise CreateContainerError(f"envs[{i}]: {name!r} is not a variable name")


def _mounts(mounts: object) -> None:
    if not isinstance(mounts, tuple | list):
        raise CreateContainerError("mounts must be a tuple of Mount")
    seen = set()
    for i, m in enumerate(mounts):
        if not isinstance(m, Mount):
            raise CreateContainerError(f"mounts[{i}] must be a Mount, not {m!r}")
        target = os.path.normpath(_absolute(_text(m.container_path, f"mounts[{i}] "
                                                  "container_path"), "mount path"))  # fmt: skip
        if target == "/":
            raise CreateContainerError("a volume cannot be mounted at /")
        if target in seen:
            raise CreateContainerError(f"two mounts at {target}")
        seen.add(target)
        host = _absolute(_text(m.host_path, f"mounts[{i}] host_path"), "volume host path")
        if not os.path.lexists(host):
            raise CreateContainerError(f"cannot mount {host} at {target}: {host} does not exist")
        if not isinstance(m.readonly, bool):
            raise CreateContainerError(f"mounts[{i}] readonly must be a bool")


def timeout(value: object, what: str) -> float:
    """A timeout in seconds; ``ValueError`` for anything but a non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{what} must be a number of seconds, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, not {value!r}")
    return float(value)
