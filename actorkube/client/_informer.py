"""Informers: a local, indexed copy of one resource, kept by list-then-watch, with event
handlers, as client-go's shared informers.

Rules of this file:

- ``run`` lists, replaces the cache with the list (telling handlers what was added,
  updated and deleted since the last list), then watches from the list's
  resourceVersion. When the watch ends it watches again from the last resourceVersion
  seen; when that version is too old (410 Gone) it lists again. Errors back off
  (exponentially, capped) and retry: an informer never gives up while it runs.
- A list is streamed (``watch_list``, as client-go's WatchListClient): one watch with
  ``sendInitialEvents``, whose ADDED events are taken into the cache as they come and
  whose closing bookmark (annotated ``k8s.io/initial-events-end``) gives the state's
  resourceVersion; then what the cache holds that the stream did not name is deleted,
  and the same stream goes on as the watch. No single step holds every object: a
  relist of 150,000 pods is decoded and taken in event by event, in the watch's
  streaks, where a list's one response stopped the process for 10-19 s. A stream cut
  short before its end starts over. A server that refuses it (422) gets a list.
- The cache is keyed ``namespace/name`` (``name`` for cluster-scoped objects), as
  client-go's MetaNamespaceKeyFunc. Indexes map an index value to keys, kept in step
  with every change (``by_namespace`` always; custom ones such as ``spec.nodeName``).
- Handlers are plain callables run in the informer's task, in event order; a handler
  only records or enqueues (a controller's reconcile runs elsewhere, from a work
  queue). An exception in a handler is logged and does not stop the informer.
- ``resync`` (seconds, 0: never) re-delivers every cached object as an update, so
  level-triggered controllers look at everything again now and then.
- Bookmarks move the resourceVersion on without touching the cache. A watch that
  has been silent for ``watch_idle`` (three of the API server's bookmark intervals)
  is taken for dead and watched again; a watch that lost a message ends at once (see
  ``WatchEvent.seq``). Either way nothing is missed: the new watch starts from the last
  resourceVersion seen.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import trio

from actorkube import _json as fastjson
from actorkube.apiserver import ApiError
from actorkube.apiserver._watchcache import INITIAL_EVENTS_END

from ._client import ApiClient

log = logging.getLogger("actorkube.client")
WATCH_IDLE = 180.0  # seconds: three of the API server's bookmark intervals (60 s)

IndexFunc = Callable[[dict], list[str]]
Handler = Callable[..., Any]


def object_key(obj: dict) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (client-go's
    MetaNamespaceKeyFunc)."""
    m = obj.get("metadata") or {}
    namespace = m.get("namespace", "")
    return f"{namespace}/{m['name']}" if namespace else m["name"]


def by_namespace(obj: dict) -> list[str]:
    return [(obj.get("metadata") or {}).get("namespace", "")]


class Informer:
    """One resource's objects (see the module rules)."""

    def __init__(
        self,
        client: ApiClient,
        resource: str,
        *,
        group: str = "",
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resync: float = 0.0,
        indexers: dict[str, IndexFunc] | None = None,
        max_backoff: float = 30.0,
        watch_idle: float = WATCH_IDLE,
        watch_list: bool = True,
    ) -> None:
        self.client = client
        self.watch_idle = watch_idle
        self.max_backoff = max_backoff  # client-go's reflector backs off up to 30 s
        self.resource, self.group, self.namespace = resource, group, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync = resync
        self.indexers: dict[str, IndexFunc] = {"namespace": by_namespace, **(indexers or {})}
        self.items: dict[str, dict] = {}
        self.indexes: dict[str, dict[str, set[str]]] = {n: defaultdict(set) for n in self.indexers}
        self.handlers: list[tuple[Handler | None, Handler | None, Handler | None]] = []
        self.resource_version = ""
        self.synced = trio.Event()
        self.lists = 0  # how many times it listed, or streamed a list (after 410 too)
        # Lists are streamed (a watch with sendInitialEvents) unless the server refuses.
        self.watch_list = watch_list
        self._fresh: set[str] | None = None  # keys a streaming list named so far
        self._on_synced: Callable[[], None] = self.synced.set

    # --- reading ------------------------------------------------------------------------

    def get(self, key: str) -> dict | None:
        return self.items.get(key)

    def list(self) -> list[dict]:
        return list(self.items.values())

    def by_index(self, index: str, value: str) -> list[dict]:
        return [self.items[k] for k in sorted(self.indexes[index].get(value, ()))]

    def add_index(self, name: str, func: IndexFunc) -> None:
        """A new index, built over what is cached already."""
        self.indexers[name] = func
        index = self.indexes[name] = defaultdict(set)
        for key, obj in self.items.items():
            for value in func(obj):
                index[value].add(key)

    def add_handler(
        self,
        on_add: Handler | None = None,
        on_update: Handler | None = None,
        on_delete: Handler | None = None,
    ) -> None:
        """``on_add(obj)``, ``on_update(old, new)``, ``on_delete(obj)``. A handler added
        after the first sync is told about every cached object as added."""
        self.handlers.append((on_add, on_update, on_delete))
        if on_add is not None:
            for obj in list(self.items.values()):
                self._call(on_add, obj)

    # --- running ------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep the cache in step, forever; ``task_status.started()`` once synced."""
        started = False

        def synced() -> None:
            nonlocal started
            self.synced.set()
            if not started:
                started = True
                task_status.started()

        self._on_synced = synced
        backoff = 0.1
        async with trio.open_nursery() as nursery:
            if self.resync:
                nursery.start_soon(self._resync_loop)
            while True:
                try:
                    if not self.resource_version and not self.watch_list:
                        await self._list()
                        backoff = 0.1  # the server answers again
                    await self._watch()
                    backoff = 0.1
                except ApiError as e:
                    if e.code == 410:
                        self.resource_version = ""  # too old: list again
                        continue
                    if e.code == 422 and self._fresh is not None:
                        # A server that refuses streaming lists: list, then watch.
                        log.info("informer %s: no streaming list (%s); listing",
                                 self.resource, e)  # fmt: skip
                        self.watch_list = False
                        continue
                    log.warning("informer %s: %s; retrying in %.1fs", self.resource, e, backoff)
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                finally:
                    self._fresh = None  # a streaming list cut short starts over

    async def _list(self) -> None:
        got = await self.client.list(
            self.resource,
            namespace=self.namespace,
            group=self.group,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.lists += 1
        fresh = {object_key(o): o for o in got["items"]}
        for key in [k for k in self.items if k not in fresh]:
            self._delete(key)
        for key, obj in fresh.items():
            self._upsert(key, obj)
        self.resource_version = got["metadata"]["resourceVersion"]
        self._on_synced()

    async def _watch(self) -> None:
        """Watch from the resourceVersion; without one (``watch_list``), a streaming
        list: the current objects as ADDED events, taken into the cache as they come,
        then the bookmark that ends them, when what the cache holds and the stream did
        not name is deleted (``_apply``)."""
        streaming = not self.resource_version
        if streaming:
            self._fresh = set()
        async with self.client.watch(
            self.resource,
            namespace=self.namespace,
            group=self.group,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            resource_version=self.resource_version,
            bookmarks=True,
            send_initial_events=streaming,
        ) as stream:
            # A watch asked for bookmarks hears from the server at least every bookmark
            # interval; silence much longer means the stream is dead (its last
            # messages lost): watch again from what was seen. One cancel scope per
            # silence period, not per event (entering one costs more than an event).
            heard = trio.current_time()
            while True:
                with trio.move_on_at(heard + self.watch_idle):
                    while True:
                        data = await stream.next_json()
                        heard = trio.current_time()
                        if data is None:
                            return
                        self._apply(data)
                if trio.current_time() - heard >= self.watch_idle:
                    log.info("informer %s: the watch went silent; watching again",
                             self.resource)  # fmt: skip
                    return

    def _apply(self, data: bytes) -> None:
        event = fastjson.loads(data)
        obj = event["object"]
        m = obj.get("metadata") or {}
        kind = event["type"]
        fresh = self._fresh
        if kind == "DELETED":
            self._delete(object_key(obj))
        elif kind in ("ADDED", "MODIFIED"):
            key = object_key(obj)
            if fresh is not None:
                fresh.add(key)
            self._upsert(key, obj)
        elif fresh is not None and (m.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
            # The end of a streaming list's initial events: the state at its version.
            for key in [k for k in self.items if k not in fresh]:
                self._delete(key)
            self._fresh = None
            self.lists += 1
            self.resource_version = m.get("resourceVersion", "")
            self._on_synced()
            return
        # An initial event's version is its object's, not the state's: a stream cut
        # short before its end starts over rather than watching from one of them.
        rv = m.get("resourceVersion", "")
        if rv and fresh is None:
            self.resource_version = rv

    async def _resync_loop(self) -> None:
        while True:
            await trio.sleep(self.resync)
            for obj in list(self.items.values()):
                for _, on_update, _ in self.handlers:
                    if on_update is not None:
                        self._call(on_update, obj, obj)

    # --- the cache ----------------------------------------------------------------------

    def _upsert(self, key: str, obj: dict) -> None:
        old = self.items.get(key)
        if old is not None:
            if old["metadata"].get("resourceVersion") == obj["metadata"].get("resourceVersion"):
                return  # the same version again (a relist): nothing happened
            self._unindex(key, old)
        self.items[key] = obj
        indexes = self.indexes
        for name, func in self.indexers.items():
            index = indexes[name]
            for value in func(obj):
                index[value].add(key)
        # The handlers called here rather than through _call: this runs per event.
        for on_add, on_update, _ in self.handlers:
            try:
                if old is None:
                    if on_add is not None:
                        on_add(obj)
                elif on_update is not None:
                    on_update(old, obj)
            except Exception:
                log.exception("informer %s: a handler failed", self.resource)

    def _delete(self, key: str) -> None:
        old = self.items.pop(key, None)
        if old is None:
            return
        self._unindex(key, old)
        for _, _, on_delete in self.handlers:
            if on_delete is not None:
                self._call(on_delete, old)

    def _unindex(self, key: str, obj: dict) -> None:
        for name, func in self.indexers.items():
            for value in func(obj):
                keys = self.indexes[name].get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self.indexes[name][value]

    def _call(self, func: Handler, *args: Any) -> None:
        try:
            func(*args)
        except Exception:
            log.exception("informer %s: a handler failed", self.resource)


class InformerFactory:
    """Shared informers: one per (resource, group, namespace, selectors), however many
    controllers ask for it; ``start`` runs each in ``nursery`` and waits for their first
    sync."""

    def __init__(self, client: ApiClient, *, resync: float = 0.0) -> None:
        self.client = client
        self.resync = resync
        self.informers: dict[tuple, Informer] = {}
        self._running: set[tuple] = set()

    def informer(
        self,
        resource: str,
        *,
        group: str = "",
        namespace: str = "",
        label_selector: str = "",
        field_selector: str = "",
        indexers: dict[str, IndexFunc] | None = None,
    ) -> Informer:
        key = (resource, group, namespace, label_selector, field_selector)
        informer = self.informers.get(key)
        if informer is None:
            informer = Informer(
                self.client,
                resource,
                group=group,
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                resync=self.resync,
                indexers=indexers,
            )
            self.informers[key] = informer
        else:
            for name, func in (indexers or {}).items():
                if name not in informer.indexers:
                    informer.add_index(name, func)
        return informer

    async def start(self, nursery: trio.Nursery) -> None:
        for key, informer in self.informers.items():
            if key not in self._running:
                self._running.add(key)
                await nursery.start(informer.run)
