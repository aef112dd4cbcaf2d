"""API watches served from etcd directly, for resources the API server keeps no watch
cache of (events, as kube-apiserver's default watch cache sizes have it): Kubernetes'
etcd3 watcher.

Rules of this file:

- One etcd watch per API watch, on the resource's prefix (the namespace's, if the
  watch names one), with the previous value of each change: ADDED, MODIFIED and
  DELETED are made as the watch cache makes them (``change``), and a filtered watch
  sees an object that enters or leaves its selectors as ADDED or DELETED
  (``filtered``), the same as a cached resource's watch.
- From resourceVersion "" or "0" (or with sendInitialEvents), the watch first lists
  the prefix and sends every object that matches as ADDED (then, for a streaming list,
  the bookmark that ends its initial events), and watches from the list's revision on.
  From a version N it watches from N + 1; a version etcd compacted away is 410 Gone at
  the request, as from the cache.
- The feed runs in the watch's pump (``run``), with backpressure: it waits while the
  pump's buffer is full (``BUFFER`` events, Kubernetes' etcd3 watcher buffers 100), so
  a long initial list is not an overflow. Periodic bookmarks are not sent (Kubernetes'
  clients do not need them; its etcd3 watcher sends none unless asked for progress).
- When etcd cannot go on (its history compacted past the watch), the watch ends, with
  the reason, and the client watches again (a 410 then sends it to list).
"""

from __future__ import annotations

import trio

from actorkube.etcd import EtcdClient, EtcdError, prefix_end

from ._registry import ResourceType
from ._storage import decode
from ._watchcache import (
    ADDED,
    BOOKMARK,
    INITIAL_EVENTS_END,
    Event,
    Filter,
    Watcher,
    change,
    filtered,
    marker,
)

BUFFER = 100


class StorageWatcher(Watcher):
    """One API watch fed from etcd by ``run`` (see the module rules). ``start``: the
    etcd revision to watch from, or 0 to list first (``initial_events_end``: then end
    the initial events with a bookmark)."""

    def __init__(self, etcd: EtcdClient, rt: ResourceType, namespace: str, keep: Filter, *,
                 start: int, initial_events_end: bool = False) -> None:  # fmt: skip
        super().__init__(keep, BUFFER, bookmarks=False)
        self.etcd = etcd
        self.rt = rt
        self.prefix = rt.prefix(namespace)
        self.start = start
        self.initial_events_end = initial_events_end

    async def run(self) -> None:
        """Feed the watch until it ends (its receiver ended it, or etcd could not go on);
        ends it on the way out."""
        reason = "the watch ended"
        try:
            await self._feed()
        except EtcdError as e:
            reason = f"etcd: {e}"
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # ended by its receiver
        finally:
            self.end(reason)

    async def _feed(self) -> None:
        etcd, end, keep = self.etcd, prefix_end(self.prefix), self.keep
        start = self.start
        if not start:
            listed = await etcd.get(self.prefix, end)
            for kv in listed.kvs:
                obj = decode(kv.value, kv.mod_revision)
                if keep(obj):
                    await self.send.send(Event(type=ADDED, object=obj))
            start = listed.header.revision + 1
            if self.initial_events_end:
                bookmark = marker(self.rt, start - 1, {"annotations": {INITIAL_EVENTS_END: "true"}})
                await self.send.send(Event(type=BOOKMARK, object=bookmark))
        async with etcd.watch(self.prefix, end, start_revision=start, prev_kv=True) as stream:
            async for response in stream:
                for e in response.events:
                    prev = e.prev_kv
                    old = decode(prev.value, prev.mod_revision) if prev is not None else None
                    event = change(e, old)
                    seen = filtered(event, old, keep) if event is not None else None
                    if seen is not None:
                        await self.send.send(seen)
