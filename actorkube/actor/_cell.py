"""The cell: what the runtime keeps for one actor, and the task that runs it.

Rules of this file:

- A cell lives from spawn to stop; its actor *instance* may be replaced by restarts.
  The mailbox, the reference and the name stay the same across restarts.
- One task per cell runs everything the actor does: hooks, handlers, teardown. Other
  tasks never run actor code; they set a *directive* and interrupt the cell:
  ``FAIL`` (a handler raised), ``EXIT`` (the actor stopped itself), ``SUSPEND`` (its
  supervisor is restarting a sibling group), ``STOP`` (stop for good; wins over all).
- A failed or exiting cell tears its instance down (timers, children, ``stopping``),
  *parks*, and asks its supervisor what next in a supervision job; the job either
  resumes it (a fresh instance, ``restarted`` hook) or stops it.
- Supervision jobs of one supervisor are serialised by its lock, so the restarts of a
  group (stop in reverse start order, start in start order) never interleave.
- Messages are taken in batches: a batch ends when the mailbox is empty, or after
  ``BATCH`` messages, when the cell yields to trio's scheduler so that one busy actor
  does not starve the rest.
"""

from __future__ import annotations

import abc
import logging
import traceback
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio
from trio.lowlevel import Abort, current_task

from ._actor import Actor, Overflow
from ._codec import decode_message, decode_value, encode_value, message_tag, wire_tag
from ._errors import (
    ActorError,
    CodecError,
    DecodeError,
    HandlerFailed,
    MailboxFull,
    RestartIntensityExceeded,
    Undeliverable,
)
from ._messages import Terminated
from ._park import park, trap, wake
from ._ref import ActorRef, Address
from ._supervision import Restart, RestartHistory, Strategy
from ._timers import Timer, Timers

if TYPE_CHECKING:
    from ._system import ActorSystem

log = logging.getLogger("actorkube.actor")

BATCH = 256

# The "reply" slot of a mailbox entry that the runtime delivered outside the bound.
OUTSIDE = object()

# Directives.
FAIL, EXIT, SUSPEND, STOP = "fail", "exit", "suspend", "stop"
# States.
STARTING, RUNNING, STOPPING, PARKED, STOPPED = (
    "starting",
    "running",
    "stopping",
    "parked",
    "stopped",
)


def failure_of(ref: ActorRef, exc: BaseException) -> HandlerFailed:
    """The error an asker sees when the handler raised ``exc`` (also when ``exc`` is the
    HandlerFailed of an ask the handler made: this actor failed, not the other one)."""
    tb = "".join(traceback.format_exception(exc))
    return HandlerFailed(ref.address, type(exc).__qualname__, str(exc), tb)


# --- replies ---------------------------------------------------------------------------


class Reply:
    """Where the reply to one ask goes. ``send`` or ``fail`` completes it, once."""

    __slots__ = ("_done", "_owner")

    def __init__(self) -> None:
        self._done = False
        self._owner: Cell | None = None

    @property
    def done(self) -> bool:
        return self._done

    def send(self, value: Any) -> None:
        """Reply with ``value`` (a message, an ActorRef or msgpack-native data)."""
        self.send_bytes(encode_value(value))

    def fail(self, exc: BaseException) -> None:
        """Make the ask raise: ``exc`` itself if it is an ActorError, else HandlerFailed."""
        if not isinstance(exc, ActorError):
            owner = self._owner
            exc = (
                failure_of(owner.ref, exc)
                if owner is not None
                else HandlerFailed("?", type(exc).__qualname__, str(exc))
            )
        if self._settle():
            self._error(exc)

    def send_bytes(self, data: bytes) -> None:
        if self._settle():
            self._ok(data)

    def _settle(self) -> bool:
        """Forget the reply in its actor's deferred table; True if it was still open
        (an ask that timed out or was cancelled is settled already)."""
        owner = self._owner
        if owner is not None:
            owner.deferred.pop(id(self), None)
            self._owner = None
        if self._done:
            return False
        self._done = True
        return True

    def _ok(self, data: bytes) -> None:
        """Deliver encoded reply bytes (subclasses)."""

    def _error(self, exc: ActorError) -> None:
        """Deliver an error (subclasses)."""


class NoReply(Reply):
    """The reply of a ``tell``: nobody is waiting, so nothing happens."""

    __slots__ = ()


class LocalReply(Reply):
    """A reply awaited by a task of this process.

    Its timeout is an entry of the system's timer service (``deadline``, ``fire``, and
    ``queue``, the service's FIFO that holds it, see ``TimerService.schedule_ask``),
    which costs far less per ask than a trio cancel scope with a deadline.
    """

    __slots__ = ("_data", "_exc", "_task", "deadline", "queue", "timed_out")

    def __init__(self) -> None:
        # Reply's slots too, without a call to Reply.__init__: one is made per ask.
        self._done = False
        self._owner = None
        self._task = None
        self._data: bytes | None = None
        self._exc: ActorError | None = None
        self.deadline = 0.0
        self.queue: Any = None  # the timer service's: a FIFO, IN_HEAP or None
        self.timed_out = False

    @property
    def live(self) -> bool:
        return not self._done

    def fire(self, service: Any, now: float) -> None:
        """The deadline passed with no reply: give up waiting."""
        self.timed_out = True
        self._settle()
        self._wake()

    def send_bytes(self, data: bytes) -> None:
        # Reply.send_bytes with _settle, _ok (keep the data) and _wake inlined: this
        # runs once per answered ask.
        owner = self._owner
        if owner is not None:
            owner.deferred.pop(id(self), None)
            self._owner = None
        if self._done:
            return
        self._done = True
        self._data = data
        task = self._task
        if task is not None:
            self._task = None
            if task.custom_sleep_data is self:
                wake(task)

    def _error(self, exc: ActorError) -> None:
        self._exc = exc
        self._wake()

    def _wake(self) -> None:
        task = self._task
        if task is not None:
            self._task = None
            if task.custom_sleep_data is self:
                wake(task)

    def wait(self) -> Awaitable[None]:
        """Wait until completed (a checkpoint even if it already is): ``await
        reply.wait()``, at once. Not a coroutine function: it returns a generator-based
        awaitable (``_park.park``), which saves a coroutine per ask.

        The waiting task's ``custom_sleep_data`` (trio's slot for custom sleeps, cleared
        whenever the task is rescheduled) names this reply while it waits: so every ask
        shares one abort function and one run-loop message, and a reply that comes
        after the wait was cancelled does not wake the task."""
        if self._done:
            return trio.lowlevel.checkpoint()
        task = self._task = current_task()
        task.custom_sleep_data = self
        return park(_ASK_TRAP)

    def result(self, resolve: Callable[[str, str], ActorRef]) -> Any:
        if self._exc is not None:
            raise self._exc
        return decode_value(self._data, resolve)


def _abort_ask(_: Any) -> Abort:
    # Trio reschedules the task with Cancelled, which clears its custom_sleep_data: a
    # reply that comes later sees that and leaves the task alone (LocalReply._wake).
    return Abort.SUCCEEDED


_ASK_TRAP = trap(_abort_ask)


# --- the cell --------------------------------------------------------------------------


class Supervisor(abc.ABC):
    """What a supervisor needs to supervise its children: the root, or any cell."""

    __slots__ = ()

    name: str
    system: ActorSystem
    children: dict[str, Cell]
    _last_hooked: Cell | None
    _history: RestartHistory | None
    _sup_lock: trio.Lock | None

    @property
    @abc.abstractmethod
    def strategy(self) -> Strategy:
        """The strategy applied to this supervisor's children."""

    async def supervise_child(
        self, child: Cell, failure: BaseException | None, generation: int
    ) -> None:
        """Decide and carry out what happens after ``child`` failed (or exited normally,
        when ``failure`` is None) in its instance number ``generation``. Runs as its own
        task, one at a time per supervisor."""
        if self._sup_lock is None:
            self._sup_lock = trio.Lock()
        async with self._sup_lock:
            if child.state is STOPPED or self.children.get(child.name) is not child:
                return
            if child.restarts != generation:
                return  # a group restart since the failure replaced that instance already
            if not self._accepting_restarts():
                return  # our own teardown stops the child
            if not child.restart.restarts_after(failed=failure is not None):
                reason = "normal" if failure is None else f"failed: {failure!r}"
                await child.stop_and_wait(reason)
                return
            strategy = self.strategy
            if self._history is None:
                self._history = RestartHistory()
            if not self._history.allow(strategy, trio.current_time()):
                err = RestartIntensityExceeded(
                    f"{self.name}: more than {strategy.intensity} restart(s) in "
                    f"{strategy.period} s; last: {child.name}: {failure!r}"
                )
                log.error("%s", err)
                for c in reversed(list(self.children.values())):
                    await c.stop_and_wait("shutdown")
                await self._give_up(err)
                return
            affected = strategy.affected(list(self.children.values()), child)
            for c in reversed(affected):
                await c.park_and_wait()
            # A temporary child is never restarted, not even when a sibling's exit took it
            # down (OTP).
            for c in affected:
                if c is not child and c.restart is Restart.TEMPORARY:
                    await c.stop_and_wait("shutdown")
            if strategy.backoff is not None:
                await trio.sleep(strategy.backoff.delay(self._history.recent()))
            for c in affected:
                if c.state is not STOPPED:
                    await c.resume_and_wait(failure if c is child else None)

    def _accepting_restarts(self) -> bool:
        return True

    @abc.abstractmethod
    async def _give_up(self, err: RestartIntensityExceeded) -> None:
        """Fail after the intensity was exceeded (the children are stopped already)."""


class Cell(Supervisor):
    """The runtime state of one actor (see the module docstring)."""

    __slots__ = (
        "_after",
        "_first_start",
        "_history",
        "_last_hooked",
        "_parked",
        "_room",
        "_started",
        "_stopped",
        "_sup_lock",
        "_timers",
        "_wake",
        "capacity",
        "children",
        "control_tags",
        "deferred",
        "directive",
        "dropped",
        "exit_reason",
        "explicit",
        "factory",
        "failed",
        "high_water",
        "inflight",
        "instance",
        "mailbox",
        "name",
        "overflow",
        "parent",
        "processed",
        "received",
        "ref",
        "restart",
        "restarts",
        "resume",
        "scope",
        "started_once",
        "state",
        "system",
        "unbounded",
        "waiter",
        "watchers",
        "watching",
    )

    def __init__(
        self,
        system: ActorSystem,
        name: str,
        factory: Callable[[], Actor],
        parent: Supervisor,
        restart: Restart,
        mailbox_size: int | None,
        overflow: str | None,
    ) -> None:
        self.system = system
        self.name = name
        self.factory = factory
        self.parent = parent
        self.restart = restart
        # Until the first instance exists, the factory's class attributes (or the
        # defaults) bound the mailbox; then the instance's class decides (see _start).
        self.capacity = mailbox_size or getattr(factory, "mailbox_size", Actor.mailbox_size)
        self.overflow = overflow or getattr(factory, "overflow", Actor.overflow)
        self.explicit = (mailbox_size is not None, overflow is not None)
        self.control_tags: frozenset[str] = frozenset()  # see Actor.control_messages
        self.ref = ActorRef(Address(system.name, name), system, self)
        self.mailbox: deque[tuple[Any, bytes]] = deque()
        self.waiter = None
        self.state = STARTING
        self.instance: Actor | None = None
        self.children: dict[str, Cell] = {}
        self.directive: tuple[str, Any] | None = None
        self.scope: trio.CancelScope | None = None
        self.inflight: Reply | None = None
        self.deferred: dict[int, Reply] = {}
        self.watchers: dict[Address, ActorRef] | None = None
        self.watching: dict[Address, ActorRef] | None = None
        self.resume: tuple[BaseException | None] | None = None
        self.exit_reason: str | None = None
        self.received = self.processed = self.failed = self.dropped = 0
        self.restarts = self.high_water = 0
        # Messages in the mailbox outside the bound: timer ticks and Terminated.
        self.unbounded = 0
        self.started_once = False
        self._room: trio.lowlevel.ParkingLot | None = None
        self._timers: Timers | None = None
        self._history = None
        self._sup_lock = None
        self._parked: trio.Event | None = None
        self._started: trio.Event | None = None
        self._stopped: trio.Event | None = None
        self._wake: trio.Event | None = None
        # Siblings run their first start hooks in spawn order (as Erlang supervisors
        # start children): a cell waits for the sibling spawned before it, if that one's
        # hook has not returned yet. Classes that keep Actor's no-op ``started`` (known
        # only when the factory is the class itself) take no part: nothing to order.
        self._after: trio.Event | None = None
        self._first_start: trio.Event | None = None
        self._last_hooked: Cell | None = None
        if getattr(factory, "started", None) is not Actor.started:
            prev = parent._last_hooked
            if prev is not None and prev.state is STARTING:
                if prev._first_start is None:
                    prev._first_start = trio.Event()
                self._after = prev._first_start
            parent._last_hooked = self

    def __repr__(self) -> str:
        return f"<Cell {self.ref.address} {self.state}>"

    @property
    def strategy(self) -> Strategy:
        inst = self.instance
        return inst.supervision if inst is not None else Actor.supervision

    @property
    def timers(self) -> Timers:
        if self._timers is None:
            self._timers = Timers(self, self.system._timer_service)
        return self._timers

    # --- delivery (called from any task) -------------------------------------------------

    def full(self) -> bool:
        """Whether the bound is reached (timer messages do not count)."""
        return len(self.mailbox) - self.unbounded >= self.capacity

    def enqueue(self, reply: Reply | None, data: bytes) -> None:
        """Put one message in the mailbox, applying the overflow policy when full."""
        if self.state is STOPPED:
            self.system._dead_letter(self.ref.address, data, "actor stopped", reply)
            return
        mailbox = self.mailbox
        if len(mailbox) >= self.capacity and self.full():
            if reply is None and self.control_tags and wire_tag(data) in self.control_tags:
                self.enqueue_outside_bound(data)  # a control message (Actor's docstring)
                return
            overflow = self.overflow
            if overflow == Overflow.DROP_NEW:
                self.dropped += 1
                self.system._dead_letter(self.ref.address, data, "mailbox full", reply)
                return
            if overflow == Overflow.FAIL:
                raise MailboxFull(self.ref.address)
            # DROP_OLDEST: the oldest message inside the bound.
            index = 0
            while mailbox[index][0] is OUTSIDE or type(mailbox[index][0]) is Timer:
                index += 1
            old_reply, old_data = mailbox[index]
            del mailbox[index]
            self.dropped += 1
            self.system._dead_letter(self.ref.address, old_data, "mailbox full", old_reply)
        mailbox.append((reply, data))
        self.received += 1
        if len(mailbox) > self.high_water:
            self.high_water = len(mailbox)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            wake(waiter)

    def enqueue_outside_bound(self, data: bytes) -> None:
        """Deliver a message of the runtime's own (``Terminated``: at most one per watch,
        the system checks) or a control message of the actor's (a tell of one of its
        ``control_messages`` to a full mailbox): never dropped, never raising."""
        if self.state is STOPPED:
            return
        self.mailbox.append((OUTSIDE, data))
        self.unbounded += 1
        self.received += 1
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            wake(waiter)

    def enqueue_timer(self, timer: Timer) -> None:
        if self.state is STOPPED:
            return
        self.mailbox.append((timer, timer.data))
        self.unbounded += 1
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            wake(waiter)

    async def wait_for_room(self) -> None:
        """Wait while the mailbox is full (backpressure for ``send`` and ``ask``)."""
        while self.full() and self.state is not STOPPED:
            if self._room is None:
                self._room = trio.lowlevel.ParkingLot()
            await self._room.park()

    def _abort_wait(self, _: Any) -> Abort:
        self.waiter = None
        return Abort.SUCCEEDED

    # --- the task ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if self._after is not None:
                with trio.CancelScope() as self.scope:  # a stop must not wait for it
                    await self._after.wait()
                self.scope = None
                self._after = None
            start: tuple[BaseException | None, bool] | None = (None, True)
            while True:
                if start is not None and self.directive is not None and start[1]:
                    # Stopped or suspended before it ever started: no hooks now; a
                    # resume will run the first start (started, not restarted).
                    start = None
                if self.directive is None or start is not None:
                    await self._serve(start)
                    start = None
                kind, arg = self.directive
                self.directive = None
                if kind is STOP:
                    await self._teardown("actor stopped")
                    self._finish(arg)
                    return
                await self._teardown("actor restarted")
                if kind is not SUSPEND:
                    self.system._nursery.start_soon(
                        self.parent.supervise_child,
                        self,
                        arg,
                        self.restarts,
                        name=f"supervise {self.name}",
                    )
                if await self._park():
                    start = (self.resume[0], not self.started_once)
                    self.resume = None
        except BaseException:
            # Cancelled from outside (the system is torn down): no hooks, like a crash.
            self.state = STOPPED
            if self.parent.children.get(self.name) is self:
                del self.parent.children[self.name]
            self.system._unregister(self)
            for event in (self._stopped, self._first_start, self._started, self._parked):
                if event is not None:
                    event.set()
            raise

    async def _start(self, failure: BaseException | None, first: bool) -> None:
        """Make a fresh instance and run its start hook (inside _serve's cancel scope)."""
        # A first start stays STARTING until its hook returns (see _after above).
        self.state = STARTING if first else RUNNING
        self._parked = None
        self._history = None  # a new instance is a new supervisor (Erlang: a new process)
        try:
            inst = self.factory()
            inst.ref = self.ref
            inst.system = self.system
            inst.parent = getattr(self.parent, "ref", None)
            inst._cell = self
            self.instance = inst
            type(inst)._ensure_handlers()
            if first:
                self.control_tags = frozenset(message_tag(c) for c in inst.control_messages)
                if not self.explicit[0]:
                    self.capacity = inst.mailbox_size
                if not self.explicit[1]:
                    self.overflow = inst.overflow
                await inst.started()
            else:
                self.restarts += 1
                await inst.restarted(failure)
        except Exception as exc:
            self.failed += 1
            log.warning("actor %s failed to start", self.ref.address, exc_info=exc)
            self._set_directive(FAIL, exc)
        finally:
            if first:
                self.started_once = True
                self.state = RUNNING
                if self._first_start is not None:
                    self._first_start.set()
            if self._started is not None:
                self._started.set()

    async def _serve(self, start: tuple[BaseException | None, bool] | None) -> None:
        """Start an instance if asked, then handle messages until a directive is set.
        The hot path of the runtime."""
        with trio.CancelScope() as self.scope:
            if start is not None:
                await self._start(*start)
            await self._loop()
        self.scope = None
        reply = self.inflight
        if reply is not None:
            # Interrupted inside an async handler by a supervisor's or a stop's directive.
            self.inflight = None
            why = (
                "actor stopped"
                if self.directive and self.directive[0] is STOP
                else ("actor restarted")
            )
            reply.fail(Undeliverable(self.ref.address, why))

    async def _loop(self) -> None:
        if self.directive is not None:
            return  # the start failed, or a directive came during it
        mailbox = self.mailbox
        inst = self.instance
        cls = type(inst)
        dispatch = cls._dispatch
        resolve = self.system._resolve
        dead_letter = self.system._dead_letter
        has_idle = cls._has_idle
        # This task and the run loop's message for its idle wait, made once rather than
        # per wait.
        me = current_task()
        idle_trap = trap(self._abort_wait)
        busy = False  # handled something since the last idle()
        while self.directive is None:
            if not mailbox:
                if busy and has_idle:
                    busy = False
                    if not await self._idle(inst):
                        break
                    continue
                self.waiter = me
                await park(idle_trap)
                continue
            busy = True
            budget = BATCH
            while mailbox and budget and self.directive is None:
                budget -= 1
                reply, data = mailbox.popleft()
                if reply is not None:
                    if type(reply) is Timer:
                        self.unbounded -= 1
                        if not self._timers.fired(reply):
                            continue
                        reply = None
                    elif reply is OUTSIDE:
                        self.unbounded -= 1
                        reply = None
                try:
                    msg = decode_message(data, resolve)
                except DecodeError as exc:
                    self.dropped += 1
                    dead_letter(self.ref.address, data, f"undecodable: {exc}", reply)
                    continue
                mtype = type(msg)
                if mtype is Terminated and not self._still_watching(msg):
                    continue
                self.inflight = reply
                try:
                    entry = dispatch.get(mtype) or cls._handler_for(mtype)
                    if entry is None:
                        inst.unhandled(msg)
                        self._unanswered("unhandled message")
                        continue
                    func, is_async = entry
                    result = (await func(inst, msg)) if is_async else func(inst, msg)
                except Exception as exc:
                    self._handler_failed(exc)
                    break
                if self.inflight is not None and not self._reply(result):
                    break
                self.processed += 1
            if self._room is not None and len(self._room):
                self._room.unpark_all()
            if mailbox and not budget:
                # Under sustained load the mailbox never runs empty: idle() still runs
                # once per batch, so that batched work is never starved.
                if has_idle and busy and self.directive is None:
                    busy = False
                    if not await self._idle(inst):
                        break
                await trio.lowlevel.checkpoint()

    async def _idle(self, inst: Actor) -> bool:
        """Run the instance's ``idle`` hook like a handler; False if it failed."""
        try:
            await inst.idle()
        except Exception as exc:
            self._handler_failed(exc)
            return False
        return True

    def ask_inline(self, reply: LocalReply, data: bytes) -> bool:
        """Handle an ask at once, in the asking task, if that is indistinguishable from
        queueing it: the actor is idle (its task waits on an empty mailbox), nothing is
        pending, and all its handlers are plain functions (so the handler cannot await,
        and cannot see which task runs it). Saves the actor's task a wake-up: one trio
        scheduling pass instead of two per ask. False: nothing was done, queue it."""
        if self.waiter is None or self.mailbox or self.directive:
            return False
        inst = self.instance
        cls = type(inst)
        if not cls._all_sync or cls._has_idle:  # idle() runs in the actor's own loop
            return False
        try:
            msg = decode_message(data, self.system._resolve)
        except DecodeError:
            return False
        mtype = type(msg)
        if mtype is Terminated:
            return False
        entry = cls._dispatch.get(mtype)
        if entry is None:
            return False
        self.received += 1
        self.inflight = reply
        try:
            result = entry[0](inst, msg)
        except Exception as exc:
            self._handler_failed(exc)
        else:
            if self.inflight is None or self._reply(result):
                self.processed += 1
        if self.directive is not None:
            self.scope.cancel()  # the actor's own task acts on a failure or a stop
        return True

    def _reply(self, result: Any) -> bool:
        """Answer the message being handled with the handler's return value. False if
        the value cannot cross the wire: a failure of the handler, as if it had raised."""
        try:
            data = encode_value(result)
        except CodecError as exc:
            self._handler_failed(CodecError(f"reply could not be encoded: {exc}"))
            return False
        reply, self.inflight = self.inflight, None
        reply.send_bytes(data)
        return True

    def _unanswered(self, reason: str) -> None:
        """An ask that nothing answered (an ``unhandled`` override returned) fails."""
        reply = self.inflight
        if reply is not None:
            self.inflight = None
            reply.fail(Undeliverable(self.ref.address, reason))

    def _handler_failed(self, exc: Exception) -> None:
        self.failed += 1
        reply = self.inflight
        if reply is not None:
            self.inflight = None
            reply.fail(failure_of(self.ref, exc))
        log.warning("actor %s failed", self.ref.address, exc_info=exc)
        self._set_directive(FAIL, exc)

    def _still_watching(self, msg: Terminated) -> bool:
        watching = self.watching
        return watching is not None and watching.pop(msg.actor.address, None) is not None

    async def _teardown(self, why: str) -> None:
        """Take the instance down: timers, children (reverse start order), ``stopping``.
        Nothing can be spawned meanwhile, and timers started by ``stopping`` die too."""
        self.state = STOPPING
        if self._timers is not None:
            self._timers.cancel_all()
        while self.children:
            child = next(reversed(self.children.values()))
            if child.state is STOPPED:  # cancelled where it stood: nothing to wait for
                del self.children[child.name]
                continue
            await child.stop_and_wait("shutdown")
        for reply in list(self.deferred.values()):
            reply.fail(Undeliverable(self.ref.address, why))
        inst, self.instance = self.instance, None
        if inst is not None:
            try:
                await inst.stopping()
            except Exception as exc:
                log.warning("actor %s: stopping() raised", self.ref.address, exc_info=exc)
            if self._timers is not None:
                self._timers.cancel_all()

    async def _park(self) -> bool:
        """Wait for the supervisor: True to start a fresh instance, False to stop."""
        self.state = PARKED
        if self.directive is not None and self.directive[0] is SUSPEND:
            self.directive = None  # parking is what it asked for
        if self._parked is None:
            self._parked = trio.Event()
        self._parked.set()
        self._started = trio.Event()
        while True:
            if self.directive is not None and self.directive[0] is STOP:
                return False
            if self.resume is not None:
                return True
            self._wake = trio.Event()
            await self._wake.wait()

    def _finish(self, reason: str) -> None:
        """The cell is gone: dead-letter the mailbox, tell watchers, leave the registry."""
        self.state = STOPPED
        self.exit_reason = reason
        system = self.system
        self.unbounded = 0
        while self.mailbox:
            reply, data = self.mailbox.popleft()
            if type(reply) is Timer or reply is OUTSIDE:
                continue
            self.dropped += 1
            system._dead_letter(self.ref.address, data, "actor stopped", reply)
        if self._room is not None:
            self._room.unpark_all()
        if self.parent.children.get(self.name) is self:
            del self.parent.children[self.name]
        system._unregister(self)
        if self.watching:
            for ref in list(self.watching.values()):
                system._unwatch(self, ref)
        if self.watchers:
            for watcher in self.watchers.values():
                system._notify_terminated(watcher, self.ref, reason)
            self.watchers = None
        for event in (self._started, self._parked, self._stopped, self._first_start):
            if event is not None:
                event.set()

    # --- directives (called from other tasks, or from the actor's own handlers) ----------

    def _set_directive(self, kind: str, arg: Any) -> None:
        if self.directive is None or kind is STOP:
            self.directive = (kind, arg)

    def interrupt(self, kind: str, arg: Any) -> None:
        """Set a directive and get the cell's task to act on it."""
        self._set_directive(kind, arg)
        if self.scope is not None:
            self.scope.cancel()
        if self._wake is not None:
            self._wake.set()

    def request_self_stop(self) -> None:
        self._set_directive(EXIT, None)

    async def stop_and_wait(self, reason: str) -> None:
        if self.state is not STOPPED:
            if self._stopped is None:
                self._stopped = trio.Event()
            self.interrupt(STOP, reason)
            await self._stopped.wait()

    async def park_and_wait(self) -> None:
        """Have the cell tear its instance down and park (no-op if parked already)."""
        if self.state is PARKED or self.state is STOPPED:
            return
        self._parked = self._parked or trio.Event()
        if self.state is not STOPPING:  # else it is tearing down already: it will park
            self.interrupt(SUSPEND, None)
        await self._parked.wait()

    async def resume_and_wait(self, failure: BaseException | None) -> None:
        """Start a fresh instance in a parked cell and wait until its hook returned."""
        await self.park_and_wait()
        if self.state is STOPPED:
            return
        self.resume = (failure,)
        started = self._started
        self._wake.set()
        await started.wait()

    # --- things handlers call --------------------------------------------------------------

    def spawn_child(self, factory, name, restart, mailbox_size, overflow) -> ActorRef:
        if self.state is not RUNNING and self.state is not STARTING:
            raise ActorError(f"{self.ref.address} is {self.state}: it cannot spawn children")
        return self.system._spawn(factory, name, self, restart, mailbox_size, overflow)

    def defer_reply(self) -> Reply:
        reply = self.inflight
        if reply is None:
            return NoReply()
        self.inflight = None
        reply._owner = self
        self.deferred[id(reply)] = reply
        return reply

    def unhandled(self, msg: object) -> None:
        self.dropped += 1
        self.system._dead_letter_message(self.ref.address, msg, "unhandled message", self.inflight)
        self.inflight = None

    async def _give_up(self, err: RestartIntensityExceeded) -> None:
        self.interrupt(FAIL, err)

    def _accepting_restarts(self) -> bool:
        return self.state is RUNNING or self.state is STARTING
