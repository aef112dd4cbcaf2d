"""The API server as actors: a front that takes requests, a pool of workers that serve
them, a pump per watch.

Rules of this file:

- The front (``ApiServer``) never awaits: it defers each reply, hands the request to a
  free worker, and replies when the worker says it is done. At most ``workers``
  requests are in flight (kube-apiserver's max-requests-inflight); the rest wait in
  arrival order.
- A worker serves one request at a time through the ``Handler``. The front and its
  workers share the queue of requests (``_Queue``; one trio thread): the front hands a
  request over in memory, as it shares the handler with its workers (sent in a
  message, the request and its body would be encoded and decoded once more: the ask
  that brought it did so already). A worker replies to the asker itself and then takes
  the next waiting request itself, going back to the free workers only when none
  waits; the front tells an idle worker ``_Work`` (naming the request) only when it
  hands one to it. A busy server so sends no message per request between the front
  and its workers (a ``_Work`` and a ``_Done`` for each were two of the ~17 messages
  of a scheduled pod). A watch gets a ``_WatchPump`` child that forwards the cache
  watcher's events to the watcher actor as ``WatchEvent``s (what is queued goes in one
  message, up to ``BATCH`` events) until the watch ends (then one last event with
  ``event=None`` and the reason), the watcher asks to stop, or the watcher goes away.
  A watch of a resource without a watch cache is fed from etcd by a task in its pump
  (``StorageWatcher.run``), which ends with the pump.
- A pump whose watcher's mailbox stays full for ``slow_after`` seconds ends the watch
  (the watcher is too slow): events are never dropped silently.
- A worker's report of a pump it started (``_PumpStarted``) is a control message
  (``Actor.control_messages``): a mailbox full of asks still takes it.
- A waiting request whose asker gave up (its ask timed out or was cancelled: the reply
  is settled already) is not served when its turn comes; ``abandoned`` counts them.
  kube-apiserver does the same (a request whose client has gone is not run, and API
  Priority and Fairness drops one that waited in its queue too long). Serving it would
  spend the server on an answer nobody reads while its client sends it again.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

import trio

from actorkube.actor import (
    Actor,
    ActorRef,
    CodecError,
    MailboxFull,
    Reply,
    Terminated,
    handler,
    message,
)
from actorkube.actor._codec import encode_value

from . import _errors as errors
from ._handler import Handler
from ._messages import ApiRequest, ApiResponse, StopWatch, WatchEvent
from ._watchcache import Watcher

STREAK = 64  # queued events a watch pump forwards in a row before it yields
BATCH = 64  # events a watch pump forwards in one message, at most
BATCH_BYTES = 256 * 1024  # ... and their size, at most (after the one that passes it)


@message(tag="apiserver._Work")
class _Work:
    """Serve the front's ``requests[request_id]`` (see the module rules)."""

    request_id: int


@message(tag="apiserver._PumpStarted")
class _PumpStarted:
    watcher: ActorRef
    watch_id: int
    pump: ActorRef


@message(tag="apiserver._Pump")
class _Pump:
    pass


class _Queue:
    """The requests of a front, shared with its workers (see the module rules)."""

    def __init__(self) -> None:
        self.waiting: deque[int] = deque()  # the ids of the requests no worker took yet
        self.pending: dict[int, Reply] = {}  # the replies not sent yet, by request id
        self.requests: dict[int, ApiRequest] = {}  # the requests not taken yet, by id
        self.free: list[ActorRef] = []  # the idle workers
        self.abandoned = 0  # requests not served: their askers had given up

    def take(self) -> int | None:
        """The next waiting request whose asker still waits (None: none waits); those
        whose askers gave up are dropped on the way (see the module rules)."""
        waiting, pending = self.waiting, self.pending
        while waiting:
            request_id = waiting.popleft()
            if pending[request_id].done:  # its asker gave up waiting
                del pending[request_id], self.requests[request_id]
                self.abandoned += 1
                continue
            return request_id
        return None


class ApiServer(Actor):
    """Serves ``ApiRequest`` asks (the reply is an ``ApiResponse``) and ``StopWatch``
    tells (see the module rules)."""

    # A worker's report comes even when the mailbox is full of asks.
    control_messages = (_PumpStarted,)

    def __init__(self, handler: Handler, *, workers: int = 32, slow_after: float = 5.0):
        self.handler = handler
        self.size = workers
        self.slow_after = slow_after
        self.queue = _Queue()
        self.free, self.waiting = self.queue.free, self.queue.waiting
        self.pending, self.requests = self.queue.pending, self.queue.requests
        self.next_id = 0
        self.pumps: dict[tuple[ActorRef, int], ActorRef] = {}
        # The other way round: a pump's watch, so that its end is one lookup, not a
        # scan of every watch (thousands of kubelets' watches end and start again).
        self.watch_of: dict[ActorRef, tuple[ActorRef, int]] = {}

    @property
    def abandoned(self) -> int:
        """Requests not served: their askers had given up (see the module rules)."""
        return self.queue.abandoned

    async def started(self) -> None:
        for i in range(self.size):
            worker = _Worker(self.handler, self.slow_after, self.queue, self._assign)
            # Actor names are the system's: each server's workers carry its name.
            name = f"{self.ref.name}-worker-{i}"
            self.free.append(self.spawn(lambda worker=worker: worker, name=name))

    @handler
    def on_request(self, msg: ApiRequest) -> None:
        self.next_id += 1
        self.pending[self.next_id] = self.defer_reply()
        self.requests[self.next_id] = msg
        self.waiting.append(self.next_id)
        self._assign()

    @handler
    def on_pump_started(self, msg: _PumpStarted) -> None:
        self.pumps[(msg.watcher, msg.watch_id)] = msg.pump
        self.watch_of[msg.pump] = (msg.watcher, msg.watch_id)
        self.watch(msg.pump)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        key = self.watch_of.pop(msg.actor, None)
        if key is not None and self.pumps.get(key) == msg.actor:
            del self.pumps[key]

    @handler
    async def on_stop_watch(self, msg: StopWatch) -> None:
        pump = self.pumps.pop((msg.watcher, msg.watch_id), None)
        if pump is not None:
            self.watch_of.pop(pump, None)
            await self.system.stop(pump)

    def _assign(self) -> None:
        queue = self.queue
        while queue.free and queue.waiting:
            request_id = queue.take()
            if request_id is None:
                break
            queue.free.pop().tell(_Work(request_id))


class _Worker(Actor):
    def __init__(self, handler: Handler, slow_after: float, queue: _Queue,
                 assign: Callable[[], None]) -> None:  # fmt: skip
        self.handler = handler
        self.slow_after = slow_after
        self.queue = queue  # the front's (see the module rules)
        self.assign = assign  # the front's: hands waiting requests to idle workers
        self.pumps = 0

    @handler
    async def on_work(self, msg: _Work) -> None:
        request_id: int | None = msg.request_id
        try:
            while request_id is not None:
                await self._serve(request_id)
                request_id = self.queue.take()
        finally:
            # Whatever happens, the worker is free again: one that never came back
            # would be lost to the pool for good (and requests left waiting, if every
            # worker was, would wait for the next to come).
            self.queue.free.append(self.ref)
            if self.queue.waiting:
                self.assign()

    async def _serve(self, request_id: int) -> None:
        # Whatever happens, the asker hears back.
        response = None
        try:
            request = self.queue.requests.pop(request_id)
            response, watcher = await self.handler.handle(request)
            if watcher is not None:
                response = self._start_pump(request, watcher, response)
        finally:
            if response is None:  # (made only then: handle answers nearly always)
                response = ApiResponse(500, errors.internal("the request was not served").status)
            reply = self.queue.pending.pop(request_id, None)
            if reply is not None:
                reply.send_bytes(_encoded(response))

    def _start_pump(self, request: ApiRequest, watcher: Watcher, response: ApiResponse):
        if request.watcher is None:
            watcher.end("no watcher to send events to")
            return ApiResponse(400, errors.bad_request("a watch needs a watcher").status)
        self.pumps += 1
        # Actor names are the system's: the worker's own name keeps them apart.
        name = f"{self.ref.name}-watch-{self.pumps}"
        try:
            pump = self.spawn(
                lambda: _WatchPump(watcher, request.watcher, request.watch_id, self.slow_after),
                name=name,
            )
        except Exception:
            watcher.end("the watch could not be started")
            raise
        self.parent.tell(_PumpStarted(request.watcher, request.watch_id, pump))
        return response


def _encoded(response: ApiResponse) -> bytes:
    try:
        return encode_value(response)
    except CodecError as e:  # a body the codec refuses: the client still hears back
        return encode_value(ApiResponse(500, errors.internal(f"response: {e}").status))


class _WatchPump(Actor):
    """Forwards one cache watcher's events to its watcher actor (see the module rules).
    The forwarding loop runs in a handler, so that it holds up no sibling."""

    def __init__(self, watcher: Watcher, target: ActorRef, watch_id: int, slow_after: float):
        self.watcher = watcher
        self.target = target
        self.watch_id = watch_id
        self.slow_after = slow_after
        self.finished = False
        self.sent = 0  # the messages numbered so far (``WatchEvent.seq``)

    async def started(self) -> None:
        self.ref.tell(_Pump())

    async def stopping(self) -> None:
        if not self.finished:  # stopped from outside: the watcher still hears the end
            self.watcher.end("stopped")
            with contextlib.suppress(MailboxFull):
                self.target.tell(WatchEvent(self.watch_id, b"", "stopped", self.sent + 1))

    @handler
    async def on_pump(self, msg: _Pump) -> None:
        feed = getattr(self.watcher, "run", None)
        if feed is None:  # the watch cache feeds the watcher
            await self._pump()
            return
        # A watch served from etcd: its feed runs beside the forwarding, and goes with it.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            await self._pump()
            nursery.cancel_scope.cancel()

    async def _pump(self) -> None:
        # The events queued are forwarded in batches (up to BATCH in one message), and
        # yielding once per STREAK events: a receive() per event yields to every other
        # ready task for each one, and with a busy process (thousands of ready tasks a
        # round) a pump forwarded a few dozen events a second while the cache queued
        # hundreds, until its watcher was ended for not keeping up (the scheduler's
        # informer at 100,000 pods).
        reason = ""
        streak = 0
        while not reason:
            try:
                try:
                    event = self.watcher.receive_nowait()
                except trio.WouldBlock:
                    event = None  # waited for below: awaited in here, the exception, its
                    # traceback and frames would live as long as the wait (see _client)
                if event is None:
                    streak = 0
                    event = await self.watcher.receive()
                elif streak >= STREAK:
                    streak = 0
                    await trio.lowlevel.checkpoint()
            except trio.EndOfChannel:
                reason = self.watcher.ended or "the watch ended"
                break
            batch = [event.json()]
            size = len(batch[0])
            while len(batch) < BATCH and size < BATCH_BYTES:
                try:
                    data = self.watcher.receive_nowait().json()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break  # (an end is seen by the next receive)
                batch.append(data)
                size += len(data)
            streak += len(batch)
            if not await self._forward(batch[0], more=tuple(batch[1:])):
                reason = "the watcher did not keep up"
                self.watcher.end(reason)
        await self._forward(b"", reason)
        self.finished = True
        self.stop()

    async def _forward(self, data: bytes, reason: str = "", more: tuple[bytes, ...] = ()) -> bool:
        """Send the watcher the next ``WatchEvent`` (``data`` and ``more``, or the end
        and its ``reason``); False if its mailbox stayed full for ``slow_after``
        seconds."""
        deadline = trio.current_time() + self.slow_after
        event = WatchEvent(self.watch_id, data, reason, self.sent + 1, more)
        while True:
            try:
                self.target.tell(event)
                self.sent += 1
                return True
            except MailboxFull:
                if trio.current_time() >= deadline:
                    return False
                await trio.sleep(0.01)
