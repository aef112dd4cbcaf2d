"""``ActorSystem``: the nursery that owns every actor, the registry, and remote routing.

Rules of this file:

- The system is an async context manager; its nursery holds every actor task, the
  timer task and the supervision jobs. When the ``async with`` body ends normally, the
  actors are stopped gracefully (top-level actors in reverse spawn order, each after
  its children, each running ``stopping``); when it ends by an exception or a
  cancellation, every task is cancelled where it stands (as in a crash) and the
  exception propagates unchanged. Nothing keeps running after the block.
- Names are unique inside a system; an unnamed actor is called ``$<n>``.
- To reach another system the system hands frames (``_protocol``) to its transport
  (TCP or the simulated network); what arrives from a transport comes back through
  ``_on_frame``. Remote asks are matched to replies by correlation id; when a peer
  system goes away (``_peer_down``) its pending asks fail and watchers of its actors
  receive ``Terminated(reason="peer unreachable")``.
- A frame from a guest (a transport's guest connection, docs/tcp.md) may address only
  the actors the transport exports to guests; TELL and ASK to any other are dead
  letters ``GUEST_REFUSED`` (an ask gets ``Undeliverable``), a WATCH is answered with
  ``Terminated`` of that reason, an UNWATCH is ignored. Whether the actor exists is not
  told.
"""

from __future__ import annotations

import contextlib
import hmac
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Container
from contextlib import AsyncExitStack
from typing import Any, Protocol

import attrs
import msgpack
import trio

from . import _protocol as P
from ._actor import Actor
from ._cell import STOPPED, Cell, LocalReply, Reply, Supervisor
from ._codec import decode_message, encode_message, message_tag
from ._errors import (
    ActorError,
    AskTimeout,
    DecodeError,
    MailboxFull,
    ProtocolError,
    RestartIntensityExceeded,
    Undeliverable,
)
from ._groups import single_error
from ._messages import DeadLetter, Terminated
from ._ref import ActorRef, Address
from ._supervision import OneForOne, Restart, Strategy
from ._timers import Call, TimerService

log = logging.getLogger("actorkube.actor")

GUEST_REFUSED = "not permitted for guests"
GRANTED_PREFIX = "granted:"  # names guests may address (``ActorSystem.granted_name``)
# frame kind -> the index of the (local) actor name it addresses
_ADDRESSED = {P.TELL: 1, P.ASK: 1, P.WATCH: 2, P.UNWATCH: 2}


class WallClock:
    """Wall-clock time for timestamps (never for timeouts: those use trio's clock).

    The default reads the real time; ``WallClock(epoch=...)`` starts at a fixed epoch
    and advances with trio's clock, which makes timestamps deterministic under
    ``MockClock`` (the simulation uses it).
    """

    def __init__(self, epoch: float | None = None) -> None:
        self._epoch = epoch
        self._start: float | None = None

    def now(self) -> float:
        if self._epoch is None:
            return time.time()
        if self._start is None:
            self._start = trio.current_time()
        return self._epoch + (trio.current_time() - self._start)


@attrs.frozen
class ActorStats:
    """Counters of one actor (a snapshot)."""

    name: str
    received: int
    processed: int
    failed: int
    dropped: int
    restarts: int
    mailbox: int
    high_water: int


@attrs.frozen
class SystemStats:
    """A snapshot of a whole system: every actor's counters and the dead letters."""

    name: str
    actors: dict[str, ActorStats]
    dead_letters: int
    dead_letters_by_reason: dict[str, int]


class DeadLetters:
    """Messages that could not be delivered: counted by reason, the last ones kept,
    and sent as ``DeadLetter`` messages to subscribers."""

    def __init__(self, keep: int = 100) -> None:
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.recent: deque[DeadLetter] = deque(maxlen=keep)
        self._subscribers: dict[Address, ActorRef] = {}

    def subscribe(self, ref: ActorRef) -> None:
        """Send every future dead letter to ``ref`` as a ``DeadLetter`` message.
        Dead letters of ``DeadLetter`` messages themselves are counted, not sent."""
        self._subscribers[ref.address] = ref

    def unsubscribe(self, ref: ActorRef) -> None:
        self._subscribers.pop(ref.address, None)

    def _record(self, letter: DeadLetter) -> None:
        self.count += 1
        reason = letter.reason.split(":", 1)[0]
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.recent.append(letter)
        if letter.message_type == "actorkube.DeadLetter":
            return
        for address, ref in list(self._subscribers.items()):
            cell = ref._cell
            if cell is not None and cell.state is STOPPED:
                del self._subscribers[address]  # a stopped subscriber unsubscribes
                continue
            # A full subscriber (policy FAIL) loses this one: it is counted above, and a
            # dead letter must never raise into whoever sent the undeliverable message.
            with contextlib.suppress(MailboxFull):
                ref.tell(letter)


class Transport(Protocol):
    """What a system needs from a transport: move frames to other systems."""

    def send_frame(self, system: str, payload: bytes, control: bool = False) -> bool:
        """Queue one frame for ``system``; False if it cannot be routed now.
        ``control``: the frame answers or tracks what the peer did (a REPLY, WATCH,
        UNWATCH, TERMINATED): a bounded queue should take it past the bound that
        holds new TELLs and ASKs back, or its peer waits on it for nothing."""

    async def send_frame_wait(self, system: str, payload: bytes) -> bool:
        """Queue one frame, waiting for buffer room (backpressure); False if it cannot
        be routed."""

    async def aclose(self) -> None:
        """Close connections and listeners."""


class _Root(Supervisor):
    """The guardian of the top-level actors; when it gives up, the system fails."""

    def __init__(self, system: ActorSystem, strategy: Strategy) -> None:
        self.system = system
        self.name = "/"
        self.children: dict[str, Cell] = {}
        self._strategy = strategy
        self._history = None
        self._sup_lock = None
        self._last_hooked = None
        self.closing = False

    @property
    def strategy(self) -> Strategy:
        return self._strategy

    def _accepting_restarts(self) -> bool:
        return not self.closing

    async def _give_up(self, err: RestartIntensityExceeded) -> None:
        raise err


class ActorSystem:
    """A group of actors sharing one nursery, one registry and one transport.

    Parameters:
      name: the system's name, part of every address (``ak://name/actor``); with TCP,
        name it after the ``host:port`` it listens on, so that peers can dial it by name.
      supervision: the strategy of the root supervisor of top-level actors. If the
        root gives up, ``RestartIntensityExceeded`` is raised out of ``async with``.
      ask_timeout: the default timeout of ``ask``, in seconds (trio's clock).
      clock: the wall clock for timestamps (``WallClock``).
      timer_slack: how late (seconds) the system's timers, sleeps and ask deadlines may
        come, so that deadlines close together are served by one wake-up of its timer
        task (Linux's timer slack). 0, the default, keeps every deadline exactly;
        thousands of nodes' timers in one process are cheaper with a few milliseconds.
      grant_key: the secret that makes ``granted_name``'s names (random by default; a
        simulation that wants the same names each run gives one, never sent).
    """

    def __init__(
        self,
        name: str = "local",
        *,
        supervision: Strategy | None = None,
        ask_timeout: float = 5.0,
        clock: WallClock | None = None,
        incarnation: bytes | None = None,
        timer_slack: float = 0.0,
        grant_key: bytes | None = None,
    ) -> None:
        self.name = name
        self.ask_timeout = ask_timeout
        self.clock = clock or WallClock()
        self.incarnation = incarnation or os.urandom(8)
        self.dead_letters = DeadLetters()
        self.transport: Transport | None = None
        self._root = _Root(self, supervision or OneForOne())
        self._names: dict[str, Cell] = {}
        self._ids = itertools.count(1)
        self._unique = itertools.count(1)
        # Keys the names of granted actors (``granted_name``): never sent to anyone.
        self._grant_key = grant_key or os.urandom(32)
        self._grants = itertools.count(1)
        self._timer_service = TimerService(timer_slack)
        # trio's clock: trio.current_time() until the system runs, then the clock's own
        # method (the same time, without trio's lookup of the run, once per ask).
        self._now: Callable[[], float] = trio.current_time
        self._nursery: trio.Nursery | None = None
        self._stack: AsyncExitStack | None = None
        # Correlation ids start where the incarnation says, so a late reply meant for an
        # earlier incarnation of this system never matches an ask of this one.
        self._corr = itertools.count(int.from_bytes(self.incarnation[:8], "big") >> 1 | 1)
        self._asks: dict[int, tuple[LocalReply, str]] = {}
        # remote actors watched by local ones: system -> {(watcher, target name)}
        self._remote_watches: dict[str, dict[tuple[str, str], None]] = {}

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        if self._stack is not None:
            raise ActorError("an ActorSystem can be entered once")
        self._stack = AsyncExitStack()
        self._nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._now = trio.lowlevel.current_clock().current_time
        self.clock.now()  # a fixed-epoch clock counts from the system's start
        self._nursery.start_soon(self._timer_service.run, name="actor timers")
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        try:
            with single_error():  # the body's own exception, or the root supervisor's
                shutdown_error = None
                if exc_type is None:
                    try:
                        await self._shutdown()
                    except BaseException as error:  # cancelled, or an actor crashed it
                        shutdown_error = error
                        exc_type, exc, tb = type(error), error, error.__traceback__
                self._nursery.cancel_scope.cancel()
                suppressed = await self._stack.__aexit__(exc_type, exc, tb)
                if shutdown_error is not None and not suppressed:
                    raise shutdown_error
                return suppressed
        finally:
            self._nursery = None  # spawn after exit: ActorError, not trio's closed nursery

    async def _shutdown(self) -> None:
        self._root.closing = True
        for cell in reversed(list(self._root.children.values())):
            await cell.stop_and_wait("shutdown")
        if self.transport is not None:
            await self.transport.aclose()

    # --- actors ------------------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        restart: Restart = Restart.TRANSIENT,
        mailbox_size: int | None = None,
        overflow: str | None = None,
    ) -> ActorRef:
        """Start a top-level actor and return its reference at once.

        ``factory`` builds the actor instance (the class itself, or a lambda or
        ``functools.partial`` for arguments); it is called again for every restart.
        ``restart`` is the child restart type (``Restart``); ``mailbox_size`` and
        ``overflow`` override the class attributes. ``started`` runs in the actor's
        own task; messages sent before it finishes wait in the mailbox.
        """
        return self._spawn(factory, name, self._root, restart, mailbox_size, overflow)

    def _spawn(self, factory, name, parent, restart, mailbox_size, overflow) -> ActorRef:
        if self._nursery is None:
            raise ActorError("the ActorSystem is not running (use `async with`)")
        if parent is self._root and self._root.closing:
            raise ActorError(f"{self.name} is shutting down: no new actors")
        if isinstance(factory, type) and issubclass(factory, Actor):
            factory._ensure_handlers()  # a handler that cannot be resolved: caller's fault
        if name is None:
            name = f"${next(self._ids)}"
        elif name in self._names:
            raise ActorError(f"an actor named {name!r} already exists in {self.name}")
        cell = Cell(self, name, factory, parent, restart, mailbox_size, overflow)
        self._names[name] = cell
        parent.children[name] = cell
        self._nursery.start_soon(cell.run, name=name)
        return cell.ref

    async def stop(self, ref: ActorRef) -> None:
        """Stop a local actor (after its current message) and its children; wait for it.

        Its remaining messages go to dead letters; watchers get ``Terminated`` with
        reason ``"stopped"``. A stopped actor is not restarted by its supervisor.
        """
        cell = ref._cell
        if cell is None:
            raise ActorError(f"{ref} is not a local actor")
        await cell.stop_and_wait("stopped")

    async def sleep(self, seconds: float) -> None:
        """``trio.sleep(seconds)`` on the system's timer task: the same contract (a
        checkpoint, cancellable, on trio's clock, so MockClock's autojump reaches it),
        cheaper when thousands of tasks sleep for seconds at a time (see
        ``TimerService.sleep_until``). Only while the system runs."""
        if seconds < 0:
            raise ValueError(f"sleep length must be non-negative, not {seconds}")
        await self._timer_service.sleep_until(trio.current_time() + seconds)

    def call_at(self, deadline: float, fn: Callable[[], object]) -> Call:
        """Call ``fn()`` once trio's clock reaches ``deadline`` (at most ``timer_slack``
        later; MockClock's autojump reaches it), from the system's timer task; returns
        a handle whose ``cancel()`` stops it. For work that thousands of objects
        schedule, such as the kubelets' pod resyncs and backoffs: a heap entry each,
        not a task or cancel scope each.

        ``fn`` runs synchronously and must not block: it tells an actor, sets an event,
        or starts a task in a nursery of its own. Calls due together run in deadline
        order, then in the order they were made. An exception from ``fn`` is logged
        and the other timers go on. Only while the system runs."""
        return self._timer_service.call_at(deadline, fn)

    def call_later(self, delay: float, fn: Callable[[], object]) -> Call:
        """``call_at(now + delay, fn)``."""
        return self._timer_service.call_at(trio.current_time() + delay, fn)

    def unique(self) -> str:
        """A string never returned before by this system or any other: its incarnation
        and a counter. Deterministic under simulation (the incarnation is seeded)."""
        return f"{self.incarnation.hex()}-{next(self._unique)}"

    def granted_name(self, label: str) -> str:
        """A name for an actor that a guest of this system's transport (docs/tcp.md) may
        message, watch and ask once it has been told the name, as a member may: a
        capability, 128 bits no peer can guess. For what a node answers into, such as a
        receiver a kubelet streams a container's output to."""
        n = str(next(self._grants)).encode()
        return f"{GRANTED_PREFIX}{label}-{hmac.new(self._grant_key, n, 'sha256').hexdigest()[:32]}"

    def lookup(self, name: str) -> ActorRef | None:
        """The reference of the local actor called ``name``, or None."""
        cell = self._names.get(name)
        return cell.ref if cell is not None else None

    def ref(self, address: Address | str) -> ActorRef:
        """A reference to the actor at ``address`` (``Address`` or ``ak://system/name``),
        local or remote. No check is made that it exists."""
        if isinstance(address, str):
            address = Address.parse(address)
        return self._resolve(address.system, address.name)

    def _resolve(self, system: str, name: str) -> ActorRef:
        if system == self.name:
            cell = self._names.get(name)
            if cell is not None:
                return cell.ref
        return ActorRef(Address(system, name), self)

    def _unregister(self, cell: Cell) -> None:
        if self._names.get(cell.name) is cell:
            del self._names[cell.name]

    def stats(self) -> SystemStats:
        """Counters of every live actor and of dead letters."""
        actors = {
            name: ActorStats(
                name,
                c.received,
                c.processed,
                c.failed,
                c.dropped,
                c.restarts,
                len(c.mailbox),
                c.high_water,
            )
            for name, c in self._names.items()
        }
        d = self.dead_letters
        return SystemStats(self.name, actors, d.count, dict(d.by_reason))

    # --- dead letters ------------------------------------------------------------------

    def _dead_letter(self, target: Address, data: bytes, reason: str, reply: Any) -> None:
        try:
            head = msgpack.unpackb(data, raw=False)
            tag = head[0] if isinstance(head, list) and head and isinstance(head[0], str) else "?"
        except Exception:
            tag = "?"
        self._record_dead_letter(target, tag, reason, reply)

    def _dead_letter_message(self, target: Address, msg: object, reason: str, reply) -> None:
        self._record_dead_letter(target, message_tag(type(msg)), reason, reply)

    def _record_dead_letter(self, target: Address, tag: str, reason: str, reply) -> None:
        if reply is not None and isinstance(reply, Reply):
            reply.fail(Undeliverable(target, reason))
        self.dead_letters._record(DeadLetter(str(target), tag, reason))

    # --- ask ---------------------------------------------------------------------------

    async def _ask(self, ref: ActorRef, data: bytes, timeout: float | None) -> Any:
        slot = LocalReply()
        cell = ref._cell
        inline = cell is not None and cell.ask_inline(slot, data)
        if inline and slot.done:
            await trio.lowlevel.checkpoint()
            return slot.result(self._resolve)
        timers = self._timer_service
        if timeout is not None:
            slot.deadline = self._now() + timeout
            timers.schedule_ask(slot, timeout)
        corr = 0
        try:
            if cell is None:
                corr = self._remote_ask(ref.address, data, slot)
            elif inline:
                pass  # handled inline, with the reply deferred: wait for it
            elif len(cell.mailbox) < cell.capacity or not cell.full():  # the cheap test first
                cell.enqueue(slot, data)
            else:
                with trio.CancelScope(
                    deadline=slot.deadline if timeout is not None else math.inf
                ) as room:
                    await cell.wait_for_room()
                if room.cancelled_caught and not slot.done:
                    timers.forget(slot)
                    slot.fire(timers, slot.deadline)
                elif not slot.done:
                    cell.enqueue(slot, data)
            await slot.wait()
        finally:
            if corr:
                self._asks.pop(corr, None)
            if not slot.done:  # cancelled from outside while waiting
                slot._settle()
                if timeout is not None:
                    timers.forget(slot)
        if slot.timed_out:
            raise AskTimeout(f"no reply from {ref.address} within {timeout} s")
        if timeout is not None:
            timers.forget(slot)
        return slot.result(self._resolve)

    # --- watches -----------------------------------------------------------------------

    def _watch(self, watcher: Cell, target: ActorRef) -> None:
        if watcher.watching is None:
            watcher.watching = {}
        if target.address in watcher.watching:
            return
        watcher.watching[target.address] = target
        cell = target._cell
        if cell is not None:
            if cell.state is STOPPED:
                self._notify_terminated(watcher.ref, target, cell.exit_reason or "stopped")
                return
            if cell.watchers is None:
                cell.watchers = {}
            cell.watchers[watcher.ref.address] = watcher.ref
        elif target.address.system == self.name:
            self._notify_terminated(watcher.ref, target, "no such actor")
        else:
            peer = target.address.system
            self._remote_watches.setdefault(peer, {})[(watcher.name, target.name)] = None
            if not self._send(peer, P.pack_frame(P.WATCH, watcher.name, target.name), True):
                self._remote_watches[peer].pop((watcher.name, target.name), None)
                self._peer_lost_watch(peer, watcher.name, target.name)

    def _unwatch(self, watcher: Cell, target: ActorRef) -> None:
        if not watcher.watching or watcher.watching.pop(target.address, None) is None:
            return
        cell = target._cell
        if cell is not None:
            if cell.watchers:
                cell.watchers.pop(watcher.ref.address, None)
        elif target.address.system != self.name:
            peer = target.address.system
            self._remote_watches.get(peer, {}).pop((watcher.name, target.name), None)
            self._send(peer, P.pack_frame(P.UNWATCH, watcher.name, target.name), True)

    def _notify_terminated(self, watcher: ActorRef, target: ActorRef, reason: str) -> None:
        if watcher.address.system == self.name:
            self._deliver_terminated(watcher.name, target, reason)
        else:
            self._send(
                watcher.address.system,
                P.pack_frame(P.TERMINATED, watcher.name, target.name, reason),
                True,
            )

    def _peer_lost_watch(self, peer: str, watcher: str, target: str) -> None:
        self._deliver_terminated(watcher, ActorRef(Address(peer, target), self), "peer unreachable")

    def _deliver_terminated(self, watcher: str, target: ActorRef, reason: str) -> None:
        """Terminated goes past the watcher's mailbox bound: it must not be lost."""
        cell = self._names.get(watcher)
        if cell is not None:
            cell.enqueue_outside_bound(encode_message(Terminated(target, reason)))

    # --- remote routing ----------------------------------------------------------------

    def _send(self, peer: str, payload: bytes, control: bool = False) -> bool:
        transport = self.transport
        return transport is not None and transport.send_frame(peer, payload, control)

    def _remote_tell(self, address: Address, data: bytes) -> None:
        if address.system == self.name:
            # A reference made by address before its actor was spawned: resolved now.
            cell = self._names.get(address.name)
            if cell is not None:
                cell.enqueue(None, data)
            else:
                self._dead_letter(address, data, "no such actor", None)
        elif not self._send(address.system, P.pack_frame(P.TELL, address.name, data)):
            self._dead_letter(address, data, "peer unreachable", None)

    async def _remote_send(self, address: Address, data: bytes) -> None:
        if address.system == self.name or self.transport is None:
            self._remote_tell(address, data)
            return
        if not await self.transport.send_frame_wait(
            address.system, P.pack_frame(P.TELL, address.name, data)
        ):
            self._dead_letter(address, data, "peer unreachable", None)

    def _frame_lost(self, peer: str, payload: bytes) -> None:
        """A transport lost a frame it had accepted for ``peer`` (the peer went down with
        it still queued): a TELL becomes a dead letter. Asks and watches need nothing
        here: ``_peer_down`` fails them."""
        frame = P.parse_frame(payload)
        if frame[0] == P.TELL:
            self._dead_letter(Address(peer, frame[1]), frame[2], "peer unreachable", None)

    def _remote_ask(self, address: Address, data: bytes, slot: LocalReply) -> int:
        if address.system == self.name:
            # A reference made by address before its actor was spawned: resolved now.
            cell = self._names.get(address.name)
            if cell is not None:
                cell.enqueue(slot, data)
            else:
                self._dead_letter(address, data, "no such actor", slot)
            return 0
        corr = next(self._corr)
        self._asks[corr] = (slot, address.system)
        if not self._send(address.system, P.pack_frame(P.ASK, address.name, data, corr)):
            del self._asks[corr]
            self._dead_letter(address, data, "peer unreachable", slot)
            return 0
        return corr

    def _on_frame(
        self, peer: str, payload: bytes, guest_exports: Container[str] | None = None
    ) -> None:
        """Handle one frame from system ``peer``. Raises ``ProtocolError`` on a bad frame
        (the transport then closes that connection); a well-formed frame for an actor
        that does not exist is a dead letter, not an error. ``guest_exports``: the frame
        came from a guest, which may address only the actors named there."""
        frame = P.parse_frame(payload)
        kind = frame[0]
        index = _ADDRESSED.get(kind)
        if (guest_exports is not None and index and frame[index] not in guest_exports
                and not frame[index].startswith(GRANTED_PREFIX)):  # fmt: skip
            self._refuse_guest(peer, frame)
            return
        if kind == P.TELL or kind == P.ASK:
            target, data = frame[1], frame[2]
            self._check_message(target, data)
            reply = _RemoteReply(self, peer, frame[3]) if kind == P.ASK else None
            cell = self._names.get(target)
            if cell is None:
                self._dead_letter(Address(self.name, target), data, "no such actor", reply)
                return
            try:
                cell.enqueue(reply, data)
            except MailboxFull:
                self._dead_letter(cell.ref.address, data, "mailbox full", reply)
        elif kind == P.REPLY:
            self._on_reply(peer, frame[1], frame[2], frame[3])
        elif kind == P.WATCH:
            watcher = ActorRef(Address(peer, frame[1]), self)
            cell = self._names.get(frame[2])
            target = ActorRef(Address(self.name, frame[2]), self)
            if cell is None or cell.state is STOPPED:
                self._notify_terminated(watcher, target, "no such actor")
            else:
                if cell.watchers is None:
                    cell.watchers = {}
                cell.watchers[watcher.address] = watcher
        elif kind == P.UNWATCH:
            cell = self._names.get(frame[2])
            if cell is not None and cell.watchers:
                cell.watchers.pop(Address(peer, frame[1]), None)
        elif kind == P.TERMINATED:
            watcher, target, reason = frame[1], frame[2], frame[3]
            # Only for a watch we hold: a duplicate or unsolicited TERMINATED is ignored
            # (Terminated goes past the mailbox bound, so it must stay one per watch).
            if (watcher, target) in self._remote_watches.get(peer, {}):
                del self._remote_watches[peer][(watcher, target)]
                self._deliver_terminated(watcher, ActorRef(Address(peer, target), self), reason)
        else:
            raise ProtocolError(f"frame kind {kind} is not valid after the handshake")

    def _check_message(self, target: str, data: bytes) -> None:
        """Decode once on arrival: bad bytes are the sender's fault, not a mailbox's."""
        try:
            decode_message(data, self._resolve)
        except DecodeError as exc:
            raise ProtocolError(f"bad message for {target}: {exc}") from None

    def _refuse_guest(self, peer: str, frame: list) -> None:
        """A guest addressed an actor it may not: the guest loses this frame, not its
        connection (a bad message still costs it the connection, as from anyone)."""
        kind = frame[0]
        if kind == P.TELL or kind == P.ASK:
            target, data = frame[1], frame[2]
            self._check_message(target, data)
            reply = _RemoteReply(self, peer, frame[3]) if kind == P.ASK else None
            self._dead_letter(Address(self.name, target), data, GUEST_REFUSED, reply)
        elif kind == P.WATCH:
            # Answered, so that the guest's watcher does not wait for ever.
            watcher = ActorRef(Address(peer, frame[1]), self)
            target = ActorRef(Address(self.name, frame[2]), self)
            self._notify_terminated(watcher, target, GUEST_REFUSED)

    def _on_reply(self, peer: str, corr: int, ok: bool, value: Any) -> None:
        if ok and type(value) is not bytes:
            raise ProtocolError("a reply value must be bytes")
        err = None if ok else P.error_from_wire(value)
        entry = self._asks.get(corr)
        if entry is None or entry[1] != peer:
            return  # the ask timed out already, or this peer was not asked
        del self._asks[corr]
        slot, _ = entry
        if ok:
            slot.send_bytes(value)
        else:
            slot.fail(err)

    def _peer_up(self, peer: str) -> None:
        """Called by a transport when a connection to ``peer`` is (re)established: watch
        again what we watch there (WATCH is idempotent on the other side)."""
        for watcher, target in self._remote_watches.get(peer, {}):
            self._send(peer, P.pack_frame(P.WATCH, watcher, target), True)

    def _peer_down(self, peer: str) -> None:
        """Called by the transport when ``peer`` is gone for good (or restarted)."""
        for corr, (slot, system) in list(self._asks.items()):
            if system == peer:
                del self._asks[corr]
                slot.fail(Undeliverable(peer, "peer unreachable"))
        for watcher, target in self._remote_watches.pop(peer, {}):
            self._peer_lost_watch(peer, watcher, target)
        for cell in list(self._names.values()):
            if cell.watchers:
                for address in [a for a in cell.watchers if a.system == peer]:
                    del cell.watchers[address]


class _RemoteReply(Reply):
    """A reply that goes back over the transport to the asking system."""

    __slots__ = ("_corr", "_peer", "_system")

    def __init__(self, system: ActorSystem, peer: str, corr: int) -> None:
        super().__init__()
        self._system = system
        self._peer = peer
        self._corr = corr

    def _ok(self, data: bytes) -> None:
        self._system._send(self._peer, P.pack_frame(P.REPLY, self._corr, True, data), True)

    def _error(self, exc: ActorError) -> None:
        self._system._send(
            self._peer, P.pack_frame(P.REPLY, self._corr, False, P.error_to_wire(exc)), True
        )
