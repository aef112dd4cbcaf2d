"""Container runtimes behind a CRI-like interface (``ContainerRuntime``): a simulated
one for benchmarks and simulations, and one that runs containers as real processes
(see docs/node.md)."""

from ._api import (
    ContainerConfig,
    ContainerEvent,
    ContainerRuntime,
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
    Mount,
    NetworkProbes,
    NotFound,
    PodSandboxConfig,
    PortMapping,
    ProbeResult,
    Resources,
    RuntimeFailure,
    SandboxState,
    SandboxStatus,
    StartError,
)
from ._process import Isolation, ProcessRuntime
from ._sim import SimRuntime
from ._sim_load import SimLoad
from ._sim_profile import SimProfile

__all__ = [
    "ContainerConfig",
    "ContainerEvent",
    "ContainerRuntime",
    "ContainerState",
    "ContainerStats",
    "ContainerStatus",
    "CreateContainerError",
    "CriError",
    "EventType",
    "ExecResult",
    "ExecStream",
    "Image",
    "ImagePullError",
    "Isolation",
    "LogChunk",
    "Mount",
    "NetworkProbes",
    "NotFound",
    "PodSandboxConfig",
    "PortMapping",
    "ProbeResult",
    "ProcessRuntime",
    "Resources",
    "RuntimeFailure",
    "SandboxState",
    "SandboxStatus",
    "SimLoad",
    "SimProfile",
    "SimRuntime",
    "StartError",
]
