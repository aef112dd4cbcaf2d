"""A node as the scheduler sees it: the Node object and the pods on it (bound or
assumed), with the totals the plugins ask about kept up to date as pods come and go.

Rules of this file:

- Adding and removing a pod updates the requested resources (exact and with the
  scoring defaults), the host ports in use and the pod count; removing a pod that is
  not there changes nothing. Pods are keyed by namespace/name.
- ``generation`` changes with every change, to a number no NodeInfo had before (one
  counter for all), so that a generation names one state of one node.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import orjson

from ._resources import CPU, MEMORY, allocatable, pod_requests


def pod_key(pod: Mapping[str, Any]) -> str:
    m = pod.get("metadata") or {}
    return f"{m.get('namespace', '')}/{m.get('name', '')}"


def host_ports(pod: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    """The (protocol, hostIP, hostPort) the pod's containers claim on their node."""
    out = []
    spec = pod.get("spec") or {}
    for c in (*(spec.get("initContainers") or ()), *(spec.get("containers") or ())):
        for p in c.get("ports") or ():
            port = p.get("hostPort") or 0
            if port:
                out.append((p.get("protocol") or "TCP", p.get("hostIP") or "0.0.0.0", port))
    return out


Claims = tuple[dict[str, int], dict[str, int], list[tuple[str, str, int]]]
_CLAIMS: dict[tuple[str, str], tuple[tuple, Claims]] = {}  # (uid, version) -> (read, claims)
_CLAIMS_KEPT = 200_000
_BY_TEXT: dict[bytes, Claims] = {}  # the JSON of what claims are read from -> claims
_TEXTS_KEPT = 4096
# Values orjson would write as something else (dataclasses, dates, subclasses of str or
# dict) are refused rather than named by a text that another value may share.
PLAIN_JSON = (orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
               | orjson.OPT_PASSTHROUGH_SUBCLASS)  # fmt: skip


def claims_of(pod: Mapping[str, Any]) -> Claims:
    """What a pod takes of its node: ``pod_requests`` exact and with the scoring
    defaults (cpu and memory only), and its host ports. Remembered per pod version (uid
    and resourceVersion; its assumed and nominated copies share it) together with what
    they were read from (the containers, init containers and overhead), and reused only
    when those are equal (the same objects, at best): one process may hold several
    clusters (tests, benchmarks, simulations) whose seeded uids and versions repeat with
    other pods. Do not modify what is returned."""
    m = pod.get("metadata") or {}
    uid, version = m.get("uid"), m.get("resourceVersion")
    key = (uid, version) if uid and version else None
    spec = pod.get("spec") or {}
    read = (spec.get("containers"), spec.get("initContainers"), spec.get("overhead"))
    if key is not None:
        kept = _CLAIMS.get(key)
        if kept is not None and all(a is b or a == b for a, b in zip(kept[0], read, strict=True)):
            return kept[1]
    # A new pod of a template met before (a Deployment's next pod, a bound pod's new
    # version) claims what its look-alikes claim: found by the text of what it reads.
    try:
        text = orjson.dumps(read, option=PLAIN_JSON)
    except TypeError:  # not plain JSON data (as pods from the API are): computed every time
        text = None
    found = _BY_TEXT.get(text) if text is not None else None
    if found is None:
        non_zero = pod_requests(pod, non_zero=True)
        found = (pod_requests(pod), {k: v for k, v in non_zero.items() if k in (CPU, MEMORY)},
                 host_ports(pod))  # fmt: skip
        if text is not None:
            if len(_BY_TEXT) >= _TEXTS_KEPT:
                _BY_TEXT.clear()
            _BY_TEXT[text] = found
    if key is not None:
        if len(_CLAIMS) >= _CLAIMS_KEPT:
            _CLAIMS.clear()
        _CLAIMS[key] = (read, found)
    return found


_GENERATIONS = itertools.count(1)


def normalized_image(name: str) -> str:
    """An image name with the ``:latest`` tag it implies (none given, no digest)."""
    return name if name.rfind(":") > name.rfind("/") or "@" in name else name + ":latest"


class NodeInfo:
    """One node and its pods (see the module rules)."""

    __slots__ = ("allocatable", "generation", "images", "node", "nominated", "non_zero",
                 "pods", "ports", "requested")  # fmt: skip

    def __init__(self, node: Mapping[str, Any]) -> None:
        self.pods: dict[str, Mapping[str, Any]] = {}
        self.requested: dict[str, int] = {}
        self.non_zero: dict[str, int] = {}
        self.ports: dict[tuple[str, str, int], int] = {}
        self.nominated: set[str] = set()  # keys of pods held here, not running (preemptors)
        self.generation = next(_GENERATIONS)
        self.set_node(node)

    def set_node(self, node: Mapping[str, Any]) -> None:
        self.node = node
        self.allocatable = allocatable(node)
        status = node.get("status") or {}
        self.images: dict[str, int] = {}
        for image in status.get("images") or ():
            for name in image.get("names") or ():
                self.images[normalized_image(name)] = image.get("sizeBytes") or 0
        self.generation = next(_GENERATIONS)

    @property
    def name(self) -> str:
        return (self.node.get("metadata") or {}).get("name", "")

    @property
    def labels(self) -> Mapping[str, str]:
        return (self.node.get("metadata") or {}).get("labels") or {}

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.node.get("spec") or {}

    def clone(self) -> NodeInfo:
        """A copy whose pods and totals can change apart (the Node object is shared)."""
        copy = NodeInfo.__new__(NodeInfo)
        copy.node, copy.allocatable, copy.images = self.node, self.allocatable, self.images
        copy.pods, copy.requested = dict(self.pods), dict(self.requested)
        copy.non_zero, copy.ports = dict(self.non_zero), dict(self.ports)
        copy.nominated = set(self.nominated)
        copy.generation = self.generation
        return copy

    def add_pod(self, pod: Mapping[str, Any]) -> None:
        key = pod_key(pod)
        if key in self.pods:
            self.remove_pod(self.pods[key])
        self.pods[key] = pod
        self._count(pod, +1)

    def remove_pod(self, pod: Mapping[str, Any]) -> None:
        key = pod_key(pod)
        self.nominated.discard(key)
        stored = self.pods.pop(key, None)
        if stored is not None:
            self._count(stored, -1)

    def _count(self, pod: Mapping[str, Any], sign: int) -> None:
        exact, non_zero, ports = claims_of(pod)
        requested = self.requested
        for name, v in exact.items():
            requested[name] = requested.get(name, 0) + sign * v
        for name, v in non_zero.items():
            self.non_zero[name] = self.non_zero.get(name, 0) + sign * v
        for port in ports:
            self.ports[port] = self.ports.get(port, 0) + sign
            if not self.ports[port]:
                del self.ports[port]
        self.generation = next(_GENERATIONS)
