"""The watch cache: one etcd watch per resource feeds the current objects and a window
of recent events, from which any number of API watches are served.

Rules of this file:

- ``WatchCache`` is pure and synchronous: ``replace`` (a list at a revision), ``apply``
  (one etcd watch response), ``progress`` (an etcd progress notification) in;
  ``events_since``, ``snapshot`` and the dispatch to watchers out. The async part
  (``feed``) only lists, watches and hands over.
- Events are Kubernetes watch events: ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK,
  "object": ...}``, the object's resourceVersion being the etcd revision of the change
  (for a deletion, the revision of the delete, as Kubernetes reports it).
- The window keeps the last ``capacity`` events. A watch from a resourceVersion older
  than the window can not be served: 410 Gone ("too old resource version"), and the
  client lists again. A watch from "" or "0" starts with a synthetic ADDED event for
  every object that matches, then goes on live.
- The capacity follows the traffic, as Kubernetes' watch cache sizes itself: from
  ``LOWER_CAPACITY`` events it doubles (up to ``UPPER_CAPACITY``) when the window is
  full and its oldest event is less than ``FRESH`` seconds old, and halves when the
  newest quarter of a full window is older than that. So a watch that ended (too
  slow, or timed out) and comes back within ``FRESH`` seconds carries on from where
  it was, rather than listing every object again: with a fixed window of 1,000 pod
  events (3 s of a 100 pods/s density run), the scheduler's informer fell further
  behind than that at 100,000 pods and listed them all again, 10-19 s of the
  process's time each. The times are the feed's, passed in (``apply(..., now)``).
- A watch with a filter (namespace, label and field selectors) sees an object that
  starts matching as ADDED and one that stops matching as DELETED, as Kubernetes'
  cacheWatcher does, so that a client's view of "the matching objects" stays exact.
- A watcher that does not keep up (its buffer full) is ended, never silently skipped:
  its stream closes and the client watches again from the last resourceVersion it saw.
  The buffer holds ``WATCHER_BUFFER`` events (references to the cache's shared ones):
  a scheduler watching every pod of a busy cluster sees thousands a second, and a
  watch ended after a pause of a fraction of a second came back after the window had
  moved on, so its informer listed every pod again (twice per 8,000 pods measured in
  scheduler_perf, 5% of the process's CPU, before the buffer grew from 1,000).
- Indexed triggers, as Kubernetes' cacher has them: a resource may name one field
  (``TRIGGERS``: pods by ``spec.nodeName``, nodes by name); a watcher whose field
  selector asks for one value of it (every kubelet's watches) is only offered the
  events whose object had or has that value. Thousands of kubelets' watches then
  cost nothing for the events of other nodes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

import trio
from sortedcontainers import SortedDict

from actorkube import _json as fastjson
from actorkube.etcd import EtcdClient, EtcdError, EventType, prefix_end

from . import _errors as errors
from ._registry import ResourceType
from ._storage import decode, parse_resource_version

ADDED, MODIFIED, DELETED, BOOKMARK = "ADDED", "MODIFIED", "DELETED", "BOOKMARK"
# The annotation of the bookmark that ends a streaming list's initial events, and the
# resourceVersionMatch such a watch asks with (Kubernetes' names).
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
NOT_OLDER_THAN = "NotOlderThan"
RESET = "RESET"
_PROGRESS_EVERY = 0.05  # seconds between progress requests while reads wait

Filter = Callable[[dict], bool]

WATCHER_BUFFER = 10_000  # events a watcher may fall behind before it is ended
# The window's sizing (Kubernetes' watch cache: 100 to 100 * 1024 events, sized to
# hold the last 75 s: eventFreshDuration).
LOWER_CAPACITY = 100
UPPER_CAPACITY = 100 * 1024
FRESH = 75.0
BOOKMARK_TICKS = 60  # a bookmark interval's ticks (each watcher's turn is on one of them)

# The field a resource's watchers may be indexed by (Kubernetes' trigger functions).
TRIGGERS: dict[tuple[str, str], str] = {
    ("", "pods"): "spec.nodeName",  # every kubelet watches its node's pods
    ("", "nodes"): "metadata.name",  # and its own Node
}


def _pod_node_name(pod: dict) -> str:
    spec = pod.get("spec")
    return str(spec.get("nodeName", "")) if isinstance(spec, dict) else ""


def _object_name(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("name", "")


# Each trigger's value read directly, for every event (as ``rt.field_labels(obj)[field]``
# gives it, without making every other field of the object too).
_TRIGGER_VALUES: dict[tuple[str, str], Callable[[dict], str]] = {
    ("", "pods"): _pod_node_name,
    ("", "nodes"): _object_name,
}


class Event(dict):
    """A watch event, ``{"type": ..., "object": ...}``, that also keeps its JSON once
    made: one change goes to every watcher, and encoding it once for all of them (as
    Kubernetes' cachingObject does) spares encoding the object again per watcher."""

    __slots__ = ("_json",)

    def __init__(self, **fields: object) -> None:
        super().__init__(**fields)
        self._json: bytes | None = None

    def json(self) -> bytes:
        if self._json is None:
            self._json = fastjson.dumps(self)
        return self._json


def _rv(obj: dict) -> int:
    return int(obj["metadata"]["resourceVersion"])


class Watcher:
    """One API watch served by the cache: events reach ``receive`` through a buffer of
    ``buffer`` events; ``ended`` says why the stream closed (too slow, cache gone)."""

    def __init__(self, keep: Filter, buffer: int, bookmarks: bool) -> None:
        self.keep = keep
        self.bookmarks = bookmarks
        self.send, self.receive_channel = trio.open_memory_channel(buffer)
        self.ended = ""
        self.trigger: str | None = None  # the trigger value it is indexed by
        self.seen_rv = 0  # every change up to here was delivered or filtered out
        self.told_rv = 0  # the last version the watcher was told (an event or a bookmark)
        # How this watcher's client wants events shown (a Table of one row, say); the
        # cache's shared events stay as they are.
        self.present: Callable[[Event], Event] | None = None

    def offer(self, event: dict) -> bool:
        """Queue ``event``; False (and the stream ended) if the buffer is full."""
        try:
            self.send.send_nowait(event)
        except trio.WouldBlock:
            self.end("the watcher did not keep up")
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def end(self, why: str) -> None:
        if not self.ended:
            self.ended = why
            self.send.close()

    async def receive(self) -> Event:
        """The next event (as ``present`` shows it); raises ``trio.EndOfChannel`` once
        the stream has ended."""
        event = await self.receive_channel.receive()
        return event if self.present is None else self.present(event)

    def receive_nowait(self) -> Event:
        """``receive`` without waiting: ``trio.WouldBlock`` if no event is queued."""
        event = self.receive_channel.receive_nowait()
        return event if self.present is None else self.present(event)


class WatchCache:
    """The objects of one resource and its recent events (see the module rules)."""

    def __init__(self, rt: ResourceType, *, capacity: int | None = None) -> None:
        """``capacity``: the window's size, fixed; None sizes it by the traffic (see the
        module rules)."""
        self.rt = rt
        self.capacity = LOWER_CAPACITY if capacity is None else capacity
        self.sized = capacity is None
        # By etcd key, in key order: a namespace's objects are one slice of it.
        self.objects: SortedDict = SortedDict()
        # Each object's JSON, made at its first list and dropped when it changes: a list
        # is then these bytes joined, not every object encoded again.
        self._json: dict[bytes, bytes] = {}
        # (rv, event, old object, when the feed had it)
        self.window: deque[tuple[int, dict, dict | None, float]] = deque()
        self.revision = 0  # everything up to here is in the cache
        self.ready = trio.Event()
        self.watchers: set[Watcher] = set()  # all of them
        # Watchers that asked for bookmarks, by the bookmark tick of their next one, and
        # those not given a tick yet (see ``bookmarks_due``).
        self._bookmark_due: dict[int, list[Watcher]] = {}
        self._bookmark_new: list[Watcher] = []
        self._plain: set[Watcher] = set()  # those offered every event
        self._indexed: dict[str, set[Watcher]] = {}  # by the trigger value they ask for
        self.trigger_field = TRIGGERS.get((rt.group, rt.plural))
        self._trigger: Callable[[dict], str] | None = _TRIGGER_VALUES.get((rt.group, rt.plural))
        self._oldest = 0  # the revision the window starts after
        # No halving before this time (see ``_resize``).
        self._halve_after = -math.inf
        # Called with (type, object) for every change, and ("RESET", None) then ADDED
        # for every object when the cache starts over (an authorizer keeps its roles so).
        self.listeners: list[Callable[[str, dict | None], None]] = []
        # Reads waiting for the cache to reach a revision: (revision, event).
        self._waiting: list[tuple[int, trio.Event]] = []
        # Asks etcd to report its progress on the cache's watch (set by ``feed``).
        self.request_progress: Callable[[], None] = lambda: None
        self._asked_at = -math.inf

    # --- fed by etcd ------------------------------------------------------------------

    def replace(self, objects: dict[bytes, dict], revision: int) -> None:
        """Start (or start over) from a full list read at ``revision``. Watchers from
        before a restart cannot be continued exactly: they are ended."""
        self.objects = SortedDict(objects)
        self._json.clear()
        self.window.clear()
        self.revision = self._oldest = revision
        self.close("the watch cache was reinitialised")
        for listener in self.listeners:
            listener(RESET, None)
            for obj in self.objects.values():
                listener(ADDED, obj)
        self.ready.set()
        self._wake()

    def apply(self, events: list, revision: int, now: float = 0.0) -> None:
        """One etcd watch response: its events (in revision order), then the revision
        it covers up to; ``now``: the time it came (sizes the window)."""
        for e in events:
            kv = e.kv
            old = self.objects.get(kv.key)
            self._json.pop(kv.key, None)
            event = change(e, old)
            if event is None:
                continue
            if event["type"] == DELETED:
                del self.objects[kv.key]
            else:
                self.objects[kv.key] = event["object"]
            self._push(kv.mod_revision, event, old, now)
        self.revision = max(self.revision, revision)
        self._wake()

    def progress(self, revision: int) -> None:
        """etcd says nothing else happened up to ``revision``: bookmarks may say so."""
        self.revision = max(self.revision, revision)
        self._wake()

    def _wake(self) -> None:
        if self._waiting:
            for rv, event in self._waiting:
                if rv <= self.revision:
                    event.set()
            self._waiting = [(rv, e) for rv, e in self._waiting if not e.is_set()]

    async def wait_fresh(self, revision: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has every change up to ``revision`` (an etcd revision a
        linearizable read just returned), asking etcd for progress reports meanwhile, as
        Kubernetes' consistent reads from the cache do; False if ``timeout`` passed
        first (the caller then reads etcd)."""
        if self.revision >= revision:
            return True
        event = trio.Event()
        entry = (revision, event)
        self._waiting.append(entry)
        try:
            with trio.move_on_after(timeout):
                while not event.is_set():
                    # One question to etcd per interval for the whole cache, however
                    # many reads wait (as Kubernetes' progress requester).
                    now = trio.current_time()
                    if now - self._asked_at >= _PROGRESS_EVERY:
                        self._asked_at = now
                        self.request_progress()
                    with trio.move_on_after(_PROGRESS_EVERY):
                        await event.wait()
        finally:
            if not event.is_set():
                self._waiting.remove(entry)
        return event.is_set()

    def _push(self, rv: int, event: dict, old: dict | None, now: float = 0.0) -> None:
        for listener in self.listeners:
            listener(event["type"], event["object"])
        window = self.window
        if self.sized and len(window) >= self.capacity:
            self._resize(now)
        window.append((rv, event, old, now))
        while len(window) > self.capacity:
            self._oldest = window.popleft()[0]
        for w in list(self._plain):
            self._deliver(w, rv, event, old)
        if self._indexed:
            values = {self._trigger(event["object"])}
            if old is not None:
                values.add(self._trigger(old))
            for value in values:
                for w in list(self._indexed.get(value, ())):
                    self._deliver(w, rv, event, old)

    def _resize(self, now: float) -> None:
        """The window is full: double it if it holds less than ``FRESH`` seconds, halve
        it if its newest quarter is older (see the module rules)."""
        window = self.window
        if now - window[0][3] < FRESH:
            self.capacity = min(self.capacity * 2, UPPER_CAPACITY)
            self._halve_after = -math.inf
        elif now > self._halve_after:
            # A deque is read in the middle block by block (25,600 events in, at full
            # size): a steady full window read it at every event. The event a quarter
            # from the newest only gets newer as events come, at the same capacity, so
            # none can be stale before this one's time is FRESH old.
            quarter = window[-(self.capacity // 4) or -1][3]
            if now - quarter > FRESH:
                self.capacity = max(self.capacity // 2, LOWER_CAPACITY)
                self._halve_after = -math.inf
            else:
                self._halve_after = quarter + FRESH

    def _deliver(self, w: Watcher, rv: int, event: dict, old: dict | None) -> None:
        """Offer ``w`` the event of revision ``rv`` (its object's resourceVersion)."""
        if rv <= w.seen_rv:
            return  # a watch from a version the cache had not reached yet: seen already
        converted = filtered(event, old, w.keep)
        if converted is not None and not w.offer(converted):
            self._forget(w)
            return
        w.seen_rv = rv
        if converted is not None:
            w.told_rv = rv

    # --- served to the API --------------------------------------------------------------

    def snapshot(self, keep: Filter | None = None, prefix: bytes = b"") -> list[dict]:
        """The current objects under the etcd key ``prefix`` (a namespace's, say) that
        ``keep`` accepts, in key order; only the objects under the prefix are looked at."""
        objects = self.objects
        keys = self._keys(prefix)
        if keep is None:
            return [objects[k] for k in keys]
        return [o for o in map(objects.__getitem__, keys) if keep(o)]

    def snapshot_json(self, keep: Filter | None = None, prefix: bytes = b"") -> list[bytes]:
        """``snapshot``, as each object's JSON (encoded once per version of the object)."""
        objects, made = self.objects, self._json
        out = []
        for k in self._keys(prefix):
            text = made.get(k)
            if text is None:
                obj = objects[k]
                if keep is not None and not keep(obj):
                    continue
                text = made[k] = fastjson.dumps(obj)
            elif keep is not None and not keep(objects[k]):
                continue
            out.append(text)
        return out

    def _keys(self, prefix: bytes):
        """The keys under ``prefix`` (all if empty), in order, looking at no other."""
        if not prefix:
            return self.objects.keys()
        return self.objects.irange(prefix, prefix_end(prefix), inclusive=(True, False))

    def watch(self, resource_version: str, keep: Filter, *, buffer: int = WATCHER_BUFFER,
              bookmarks: bool = False, prefix: bytes = b"", trigger: str | None = None,
              initial_events_end: bool = False) -> Watcher:  # fmt: skip
        """A new watcher from ``resource_version`` (see the module rules); its buffer
        holds what it must catch up on plus ``buffer`` live events. Raises 410 Gone
        when that version is older than the window, 400 if it is not a version.
        ``prefix`` only narrows the initial snapshot; ``keep`` must reject what is
        outside it. ``trigger``: the one value of the cache's trigger field that
        ``keep`` requires (None: no such requirement). ``initial_events_end``: from ""
        or "0", a bookmark annotated ``INITIAL_EVENTS_END`` follows the snapshot's ADDED
        events (a streaming list's end), whether or not bookmarks were asked for."""
        if resource_version in ("", "0"):
            initial = [Event(type=ADDED, object=o) for o in self.snapshot(keep, prefix)]
            start = self.revision
            if initial_events_end:
                initial.append(Event(type=BOOKMARK, object=self._marker(
                    start, {"annotations": {INITIAL_EVENTS_END: "true"}})))  # fmt: skip
        else:
            start = parse_resource_version(resource_version)
            if start < self._oldest:
                raise errors.gone(f"too old resource version: {start} ({self._oldest + 1})")
            initial = []
            for rv, event, old, _ in self.window:
                seen = filtered(event, old, keep) if rv > start else None
                if seen is not None:
                    initial.append(seen)
            # Events the cache has not reached yet arrive live; those up to ``start``
            # are skipped then (the watch began after them).
        w = Watcher(keep, len(initial) + max(buffer, 1), bookmarks)
        for event in initial:
            w.offer(event)
        w.seen_rv = w.told_rv = max([start] + [_rv(e["object"]) for e in initial[-1:]])
        self.watchers.add(w)
        if bookmarks:
            self._bookmark_new.append(w)
        w.trigger = trigger if self._trigger is not None else None
        if w.trigger is None:
            self._plain.add(w)
        else:
            self._indexed.setdefault(w.trigger, set()).add(w)
        return w

    def _forget(self, w: Watcher) -> None:
        self.watchers.discard(w)
        self._plain.discard(w)
        if w.trigger is not None:
            group = self._indexed.get(w.trigger)
            if group is not None:
                group.discard(w)
                if not group:
                    del self._indexed[w.trigger]

    def bookmarks_due(self, tick: int, period: int) -> None:
        """Tick ``tick`` of the bookmark clock, ``period`` ticks to a bookmark interval:
        tell each watcher whose turn it is (one interval after it started, then after
        its last turn) how far the cache is, if it was not told so already. Kubernetes'
        cacher times each watcher's bookmarks from its own start in the same way: told
        all at once, the thousands of kubelets' watches made a burst of work (0.3-0.8 s
        of a 5,000-node cluster's time) every interval."""
        due = self._bookmark_due
        if self._bookmark_new:
            due.setdefault(tick + period, []).extend(self._bookmark_new)
            self._bookmark_new.clear()
        turn = due.pop(tick, None)
        if not turn:
            return
        watchers, event = self.watchers, None
        for w in turn:
            if w not in watchers:
                continue  # ended since
            if self.revision > w.told_rv:
                if event is None:
                    event = Event(type=BOOKMARK, object=self._marker(self.revision))
                if w.offer(event):
                    w.told_rv = self.revision
                elif w.ended:
                    self._forget(w)
                    continue
            due.setdefault(tick + period, []).append(w)

    def _marker(self, revision: int, more: dict | None = None) -> dict:
        return marker(self.rt, revision, more)

    def stop(self, w: Watcher) -> None:
        w.end("stopped")
        self._forget(w)

    def close(self, why: str) -> None:
        for w in list(self.watchers):
            w.end(why)
        self.watchers.clear()
        self._plain.clear()
        self._indexed.clear()
        self._bookmark_due.clear()
        self._bookmark_new.clear()


def change(e, old: dict | None) -> Event | None:
    """The watch event of etcd event ``e`` (``old``: the object before it, None if there
    was none): ADDED or MODIFIED with the new object, or DELETED with the old one at the
    revision of the delete (None for the delete of an object not known)."""
    kv = e.kv
    if e.type is EventType.PUT:
        return Event(type=MODIFIED if old else ADDED, object=decode(kv.value, kv.mod_revision))
    if old is None:
        return None
    gone = dict(old)
    gone["metadata"] = {**old["metadata"], "resourceVersion": str(kv.mod_revision)}
    return Event(type=DELETED, object=gone)


def marker(rt: ResourceType, revision: int, more: dict | None = None) -> dict:
    """A bookmark's object: the kind, and metadata with only the version (and
    ``more``)."""
    return {"kind": rt.kind, "apiVersion": rt.api_version,
            "metadata": {"resourceVersion": str(revision), **(more or {})}}  # fmt: skip


def filtered(event: dict, old: dict | None, keep: Filter) -> dict | None:
    """What a watcher with filter ``keep`` sees of ``event`` (``old``: the object
    before the change): the event, None, or ADDED / DELETED when the object enters or
    leaves the filter."""
    new = event["object"]
    kind = event["type"]
    if kind == DELETED:
        return event if keep(old) else None
    now_in = keep(new)
    was_in = old is not None and keep(old)
    if now_in and was_in:
        return event
    if now_in:
        return Event(type=ADDED, object=new)
    if was_in:
        gone = dict(old)
        rv = new["metadata"]["resourceVersion"]
        gone["metadata"] = {**old["metadata"], "resourceVersion": rv}
        return Event(type=DELETED, object=gone)
    return None


async def feed(cache: WatchCache, etcd: EtcdClient, *, bookmark_interval: float = 60.0,
               task_status=trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """Keep ``cache`` in step with etcd, forever: list the resource's prefix, then watch
    it from the next revision; start over (``replace``) when the watch cannot go on
    (its history compacted away). Each watcher that asked for bookmarks gets one every
    ``bookmark_interval``, counted from its own start."""
    prefix = cache.rt.prefix()
    end = prefix_end(prefix)
    started = False
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_bookmarks, cache, bookmark_interval)
        backoff = 0.1
        while True:
            try:
                got = await etcd.get(prefix, end)
            except EtcdError:  # no leader for now: the cache waits, and so do its readers
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            objects = {kv.key: decode(kv.value, kv.mod_revision) for kv in got.kvs}
            cache.replace(objects, got.header.revision)
            if not started:
                started = True
                task_status.started()
            try:
                async with etcd.watch(prefix, end, start_revision=got.header.revision + 1,
                                      prev_kv=False, progress_notify=True) as stream:  # fmt: skip
                    cache.request_progress = stream.request_progress
                    async for response in stream:
                        if response.events:
                            cache.apply(list(response.events), response.header.revision,
                                        trio.current_time())  # fmt: skip
                        else:
                            cache.progress(response.header.revision)
            except EtcdError:
                await trio.sleep(0.1)  # compacted past us, or no member: list again
            finally:
                cache.request_progress = lambda: None


async def _bookmarks(cache: WatchCache, interval: float) -> None:
    if math.isinf(interval):
        return
    tick = 0
    while True:
        await trio.sleep(interval / BOOKMARK_TICKS)
        tick += 1
        cache.bookmarks_due(tick, BOOKMARK_TICKS)
