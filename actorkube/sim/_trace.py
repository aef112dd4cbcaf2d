"""The trace of a simulation: every network event, in the order it happened.

Rules of this file:

- An event is a value (``TraceEvent``); a ``Trace`` is an immutable sequence of them.
- Times are seconds of virtual time since the network started.
- ``to_bytes`` is the canonical form: msgpack of a version tag and one array per event,
  with floats kept as 64-bit floats and frames as ``bin``. Two runs are the same run
  exactly when their ``to_bytes`` are equal; ``digest`` is its SHA-256.
- Frame events (send, deliver, drop, duplicate, delay, reorder) carry the frame's id (its send
  number, shared by both copies of a duplicated frame) and its bytes; host events
  (boot, crash, restart) name the host in ``src``; link events (partition, block,
  heal, faults) describe the change in ``detail``.
"""

from __future__ import annotations

import hashlib

import attrs
import msgpack

FORMAT = "actorkube.sim.trace/1"

# Event kinds.
SEND = "send"
DELIVER = "deliver"
DROP = "drop"
DUPLICATE = "duplicate"
DELAY = "delay"
REORDER = "reorder"
BOOT = "boot"
CRASH = "crash"
RESTART = "restart"
PARTITION = "partition"
BLOCK = "block"
HEAL = "heal"
FAULTS = "faults"

# Why a frame was dropped (the ``detail`` of a DROP event).
RANDOM = "random"
PARTITIONED = "partition"
HOST_DOWN = "host down"
NO_SUCH_HOST = "no such host"


@attrs.frozen
class TraceEvent:
    """One thing the network did. ``detail``: the drop reason, the delay of a copy in
    seconds (``delay``; ``reorder`` when the copy was also held back), the incarnation
    (hex) of a booted or restarted host, or the new faults of a link."""

    time: float
    kind: str
    src: str
    dst: str = ""
    frame_id: int = 0
    frame: bytes = b""
    detail: str | float | None = None

    def to_wire(self) -> list:
        return [self.time, self.kind, self.src, self.dst, self.frame_id, self.detail, self.frame]

    def __str__(self) -> str:
        where = f"{self.src}->{self.dst}" if self.dst else self.src
        frame = f" #{self.frame_id} {self.frame.hex()}" if self.frame_id else ""
        detail = f" ({self.detail})" if self.detail is not None else ""
        return f"{self.time:12.6f} {self.kind:<9} {where}{frame}{detail}"


@attrs.frozen
class Trace:
    """Every event of a run (see the module rules)."""

    events: tuple[TraceEvent, ...]

    def to_bytes(self) -> bytes:
        """The canonical encoding: equal bytes mean identical runs."""
        wire = [FORMAT, [e.to_wire() for e in self.events]]
        return msgpack.packb(wire, use_bin_type=True)

    def digest(self) -> str:
        """SHA-256 of ``to_bytes()``, in hex: a short fingerprint of the run."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def of_kind(self, kind: str, detail: str | float | None = None) -> tuple[TraceEvent, ...]:
        """The events of one kind (and, if given, one detail such as a drop reason)."""
        return tuple(
            e for e in self.events if e.kind == kind and (detail is None or e.detail == detail)
        )

    def reordered(self) -> tuple[TraceEvent, ...]:
        """The overtaken deliveries: each first delivery of a frame that arrived after
        a frame sent later on the same link had arrived."""
        latest: dict[tuple[str, str], int] = {}
        seen: dict[int, None] = {}
        out = []
        for e in self.events:
            if e.kind != DELIVER or e.frame_id in seen:
                continue
            seen[e.frame_id] = None
            link = (e.src, e.dst)
            if e.frame_id < latest.get(link, 0):
                out.append(e)
            else:
                latest[link] = e.frame_id
        return tuple(out)

    def render(self) -> str:
        """One line per event, for reading a failing run."""
        return "\n".join(str(e) for e in self.events)
