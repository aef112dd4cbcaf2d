"""The ``Actor`` base class and the ``@handler`` decorator.

An actor handles one message at a time. Its handlers are chosen by the message's type
(the most specific registered base class wins). A handler may be a plain function or a
coroutine function; its return value is the reply to an ``ask`` (ignored for a
``tell``). An exception from a handler is a failure of the actor: the asker gets
``HandlerFailed`` and the supervisor decides (restart, stop, escalate).

While an async handler awaits, the actor takes no other message; asking an actor that
is asking you back therefore waits until one ask times out.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from ._errors import ActorError
from ._supervision import OneForOne, Restart, Strategy

if TYPE_CHECKING:
    from ._cell import Cell, Reply
    from ._ref import ActorRef
    from ._system import ActorSystem
    from ._timers import Timers


class Overflow:
    """What a full mailbox does with one more ``tell`` (``send`` and ``ask`` wait instead).

    ``DROP_NEW``: the new message goes to dead letters (the default).
    ``DROP_OLDEST``: the oldest queued message goes to dead letters, the new one is kept.
    ``FAIL``: ``tell`` raises ``MailboxFull``.
    """

    DROP_NEW = "drop_new"
    DROP_OLDEST = "drop_oldest"
    FAIL = "fail"


def handler(arg: Any = None, *more: type) -> Any:
    """Mark a method as the handler of a message type.

    ``@handler`` takes the type from the annotation of the message parameter;
    ``@handler(Ping)`` or ``@handler(Ping, Pong)`` names the types explicitly.
    """
    if callable(arg) and not isinstance(arg, type):
        arg._actor_handles = None  # resolved from the annotation on first use
        return arg
    types = (arg, *more)
    if not all(isinstance(tp, type) for tp in types):
        raise TypeError("@handler takes message classes")

    def mark(func: Callable) -> Callable:
        func._actor_handles = types
        return func

    return mark


def _handled_types(func: Callable) -> tuple[type, ...]:
    if func._actor_handles is not None:
        return func._actor_handles
    params = list(inspect.signature(func).parameters)
    if len(params) < 2:
        raise ActorError(f"handler {func.__qualname__} takes no message parameter")
    try:
        hints = typing.get_type_hints(func)
    except NameError as exc:
        raise ActorError(
            f"cannot resolve the message type of handler {func.__qualname__} ({exc}); "
            "use @handler(MessageType)"
        ) from None
    tp = hints.get(params[1])
    if tp is None:
        raise ActorError(f"handler {func.__qualname__}: annotate the message parameter")
    return typing.get_args(tp) if typing.get_origin(tp) is not None else (tp,)


class Actor:
    """Base class of actors. Subclass it, add ``@handler`` methods, spawn it.

    Class attributes tune the runtime: ``mailbox_size`` (bounded), ``overflow`` (see
    ``Overflow``), ``supervision`` (the strategy applied to this actor's children) and
    ``control_messages``: message classes that a full mailbox still takes when they
    come as tells, outside the bound (as the runtime's own ``Terminated``; Akka calls
    them control messages). They are for reports that a drop would lose for good, a
    child's "done" that returns it to its parent's pool, say, never for what clients
    send: the actor must bound them itself (one outstanding report per child).

    The runtime sets ``ref``, ``system`` and ``parent`` before ``started`` runs; the
    constructor must not use them. A restart makes a new instance with the same
    factory, so state does not survive a failure (it lives in the mailbox, the
    messages, or a store).
    """

    mailbox_size: ClassVar[int] = 1000
    overflow: ClassVar[str] = Overflow.DROP_NEW
    supervision: ClassVar[Strategy] = OneForOne()
    control_messages: ClassVar[tuple[type, ...]] = ()

    ref: ActorRef
    system: ActorSystem
    parent: ActorRef | None
    _cell: Cell

    # Handlers by the exact type they were declared for, and a cache by message type.
    _handlers: ClassVar[dict[type, tuple[Callable, bool]] | None] = None
    _dispatch: ClassVar[dict[type, tuple[Callable, bool]]] = {}
    # True when every handler is a plain function (asks may then run inline: see Cell).
    _all_sync: ClassVar[bool] = False
    # True when the class overrides ``idle`` (the cell then calls it).
    _has_idle: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, attr in vars(cls).items():
            if hasattr(attr, "_actor_handles") and name in vars(Actor):
                raise TypeError(f"handler {cls.__qualname__}.{name} hides Actor.{name}; rename it")
        cls._handlers = None
        cls._dispatch = {}
        cls._all_sync = False
        cls._has_idle = cls.idle is not Actor.idle

    # --- lifecycle hooks ----------------------------------------------------------------

    async def started(self) -> None:
        """Called once before the first message; spawn children and start timers here."""

    async def stopping(self) -> None:
        """Called when the actor stops or before a restart replaces it."""

    async def idle(self) -> None:
        """Called when the mailbox has run empty after handling messages, before the
        actor waits for more, and under sustained load at least once per batch of
        messages the actor takes in one go: the place to do once, for a whole burst,
        work that each message only marked as due (flushing a batch to disk, say). It
        runs like a handler: an exception is a failure of the actor."""

    async def restarted(self, failure: BaseException | None) -> None:
        """Called on the new instance after a restart instead of ``started``.

        ``failure`` is the exception that made this actor fail, or None when it was
        restarted because a sibling failed (one_for_all, rest_for_one) or because it
        exited normally as a permanent child. The default calls ``started``.
        """
        await self.started()

    def unhandled(self, msg: object) -> None:
        """Called for a message no handler takes. The default sends it to dead letters
        (and an asker gets ``Undeliverable("unhandled message")``)."""
        self._cell.unhandled(msg)

    # --- what an actor can do -------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        restart: Restart = Restart.TRANSIENT,
        mailbox_size: int | None = None,
        overflow: str | None = None,
    ) -> ActorRef:
        """Start a child supervised by this actor (see ``ActorSystem.spawn``)."""
        return self._cell.spawn_child(factory, name, restart, mailbox_size, overflow)

    def stop(self) -> None:
        """Stop this actor once the current handler returns (exit reason ``normal``)."""
        self._cell.request_self_stop()

    def watch(self, ref: ActorRef) -> None:
        """Receive ``Terminated(ref, reason)`` when ``ref`` stops for good."""
        self.system._watch(self._cell, ref)

    def unwatch(self, ref: ActorRef) -> None:
        """Stop watching ``ref``; no ``Terminated`` for it will arrive after this."""
        self.system._unwatch(self._cell, ref)

    @property
    def timers(self) -> Timers:
        """One-shot and periodic messages to self (see ``Timers``)."""
        return self._cell.timers

    def defer_reply(self) -> Reply:
        """Take over the reply to the message being handled.

        The handler's return value is then not the reply; call ``send(value)`` or
        ``fail(exc)`` on the returned object later (from any handler). If the actor
        stops or restarts first, the asker gets ``Undeliverable``. For a ``tell`` the
        object is inert.
        """
        return self._cell.defer_reply()

    # --- dispatch -----------------------------------------------------------------------

    @classmethod
    def _ensure_handlers(cls) -> dict[type, tuple[Callable, bool]]:
        """Build the table of handlers by declared type, once per class.

        A method marked ``@handler`` in a base class and overridden (with or without the
        decorator) in a subclass dispatches to the override, as Python methods do.
        Raises ``ActorError`` for a handler whose message type cannot be resolved.
        """
        handlers = cls._handlers
        if handlers is None:
            handlers = {}
            for klass in reversed(cls.__mro__):
                for name, attr in vars(klass).items():
                    if callable(attr) and hasattr(attr, "_actor_handles"):
                        func = getattr(cls, name)
                        is_async = inspect.iscoroutinefunction(func)
                        for tp in _handled_types(attr):
                            handlers[tp] = (func, is_async)
            cls._all_sync = not any(is_async for _, is_async in handlers.values())
            cls._handlers = handlers
        return handlers

    @classmethod
    def _handler_for(cls, msg_type: type) -> tuple[Callable, bool] | None:
        """The handler of ``msg_type`` (most specific base wins), cached per class."""
        handlers = cls._ensure_handlers()
        for tp in msg_type.__mro__:
            entry = handlers.get(tp)
            if entry is not None:
                cls._dispatch[msg_type] = entry
                return entry
        return None
