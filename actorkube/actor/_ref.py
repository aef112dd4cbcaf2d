"""Addresses and actor references.

An ``Address`` names an actor anywhere: the name of the actor system that hosts it and
the actor's name inside that system (``ak://system/name``). An ``ActorRef`` is how you
talk to an actor: ``tell`` (fire and forget), ``send`` (tell with backpressure) and
``ask`` (request and reply). A reference stays valid across restarts of its actor; once
the actor has stopped, what is sent to it goes to dead letters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
import trio

from ._codec import encode_message

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem

_SCHEME = "ak://"


@attrs.frozen(order=True)
class Address:
    """Where an actor lives: ``system`` (the hosting ActorSystem's name) and ``name``."""

    system: str
    name: str

    def __str__(self) -> str:
        return f"{_SCHEME}{self.system}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``ak://system/name``. Raises ``ValueError`` on anything else."""
        if not text.startswith(_SCHEME):
            raise ValueError(f"not an actor address: {text!r}")
        system, sep, name = text[len(_SCHEME) :].partition("/")
        if not sep or not system or not name:
            raise ValueError(f"not an actor address: {text!r}")
        return cls(system, name)


# Sentinel meaning "the system's default ask timeout".
DEFAULT_TIMEOUT: Any = object()


class ActorRef:
    """A handle on an actor, local or remote; equal when the addresses are equal.

    Messages must be registered message classes (``@message``); each one is encoded to
    msgpack bytes at the call, so the sender keeps nothing the receiver can see.
    """

    __slots__ = ("_cell", "_system", "address")

    def __init__(self, address: Address, system: ActorSystem, cell: Cell | None = None) -> None:
        self.address = address
        self._system = system
        self._cell = cell

    @property
    def name(self) -> str:
        return self.address.name

    @property
    def is_local(self) -> bool:
        return self._cell is not None

    def tell(self, msg: object) -> None:
        """Deliver ``msg`` without waiting; never blocks.

        If the mailbox is full, the actor's overflow policy decides: the message goes to
        dead letters (``DROP_NEW``), the oldest queued one does (``DROP_OLDEST``), or
        ``MailboxFull`` is raised (``FAIL``). Raises ``CodecError`` if ``msg`` is not a
        registered message with fields of the declared types.
        """
        data = encode_message(msg)
        cell = self._cell
        if cell is not None:
            cell.enqueue(None, data)
        else:
            self._system._remote_tell(self.address, data)

    async def send(self, msg: object) -> None:
        """Deliver ``msg``, waiting for room in a full mailbox (backpressure).

        A cancellation point; a schedule point only when it has to wait. For a remote
        actor it waits for room in the connection's send buffer instead.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        data = encode_message(msg)
        cell = self._cell
        if cell is not None:
            if len(cell.mailbox) >= cell.capacity:  # the cheap test first
                await cell.wait_for_room()
            cell.enqueue(None, data)
        else:
            await self._system._remote_send(self.address, data)

    async def ask(self, msg: object, *, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Send ``msg`` and return the handler's reply.

        Raises ``HandlerFailed`` if the handler raised, ``Undeliverable`` if the message
        cannot reach the actor or the actor stops before replying, and ``AskTimeout``
        after ``timeout`` seconds (the system's default when not given; ``None`` waits
        without limit, but still never hangs on a dead actor).
        """
        data = encode_message(msg)
        system = self._system
        if timeout is DEFAULT_TIMEOUT:
            timeout = system.ask_timeout
        return await system._ask(self, data, timeout)

    def _wire_address(self) -> list[str]:
        return [self.address.system, self.address.name]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __repr__(self) -> str:
        return f"ActorRef({self.address})"
