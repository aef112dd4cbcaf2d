"""Events about objects, written in the background, as client-go's event recorder and
broadcaster do for every Kubernetes component.

Rules of this file:

- ``event(obj, type, reason, message)`` never blocks and never fails: the event goes
  to a bounded queue (1,000, client-go's) and a background task writes it. When the
  queue is full the event is dropped and counted (``dropped``), as client-go drops
  events rather than slow its component down.
- Written as core/v1 Events (what ``kubectl describe`` and ``kubectl get events``
  show): involvedObject, reason, message, type, source.component, reportingComponent,
  first/lastTimestamp, count; named ``<object>.<hex nanoseconds>`` as client-go names
  them.
- The same event again (same object, type, reason and message) within ten minutes
  is not a new Event: the existing one's count and lastTimestamp go up (client-go's
  EventCorrelator). A write that fails is logged and dropped: events are best effort.
"""

from __future__ import annotations

import logging
import math

import trio

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339

from ._client import ApiClient

log = logging.getLogger("actorkube.client")

QUEUE = 1000
WRITERS = 4
SAME_EVENT_WINDOW = 600.0  # seconds: client-go's aggregation window


class EventRecorder:
    """Records events for ``component`` (see the module rules); ``run`` writes them."""

    def __init__(self, client: ApiClient, component: str, *, host: str = "") -> None:
        self.client = client
        self.component = component
        self.host = host
        self._send, self._receive = trio.open_memory_channel(QUEUE)
        self._seen: dict[tuple, tuple[str, str, int, float]] = {}  # -> ns, name, count, at
        self.written = 0
        self.dropped = 0
        self._last_ns = 0

    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Queue an event about ``obj`` (``type_``: Normal or Warning)."""
        try:
            self._send.send_nowait((obj, type_, reason, message))
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self) -> None:
        """Write queued events, forever (a few at a time)."""
        async with trio.open_nursery() as nursery:
            for _ in range(WRITERS):
                nursery.start_soon(self._writer)

    async def _writer(self) -> None:
        async for obj, type_, reason, message in self._receive:
            try:
                await self._write(obj, type_, reason, message)
                self.written += 1
            except ApiError as e:
                log.debug("event %s on %s not written: %s", reason, obj["metadata"]["name"], e)

    async def _write(self, obj: dict, type_: str, reason: str, message: str) -> None:
        m = obj["metadata"]
        namespace = m.get("namespace") or "default"
        key = (m.get("uid", ""), m["name"], type_, reason, message)
        wall = self.client.system.clock.now()
        stamp = rfc3339(wall)
        seen = self._seen.get(key)
        if seen is not None and wall - seen[3] < SAME_EVENT_WINDOW:
            ns, name, count, _ = seen
            self._seen[key] = (ns, name, count + 1, wall)
            await self.client.patch(
                "events", name, {"count": count + 1, "lastTimestamp": stamp}, namespace=ns
            )
            return
        # Two events at one instant (virtual time has many) would share a name and the
        # second would be refused: this recorder's nanoseconds only ever go forward.
        self._last_ns = max(math.floor(wall * 1e9), self._last_ns + 1)
        name = f"{m['name']}.{self._last_ns:x}"
        source = {"component": self.component, **({"host": self.host} if self.host else {})}
        await self.client.create(
            "events",
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": obj.get("apiVersion", "v1"),
                    "kind": obj.get("kind", ""),
                    "namespace": m.get("namespace", ""),
                    "name": m["name"],
                    "uid": m.get("uid", ""),
                    "resourceVersion": m.get("resourceVersion", ""),
                },
                "reason": reason,
                "message": message,
                "type": type_,
                "source": source,
                "reportingComponent": self.component,
                "reportingInstance": self.host,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
            namespace=namespace,
        )
        if len(self._seen) >= 4 * QUEUE:  # forget the oldest half
            for old in sorted(self._seen, key=lambda k: self._seen[k][3])[: 2 * QUEUE]:
                del self._seen[old]
        self._seen[key] = (namespace, name, 1, wall)
