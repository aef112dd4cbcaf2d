"""Messages the runtime itself sends to actors."""

from __future__ import annotations

from ._codec import message
from ._ref import ActorRef


@message(tag="actorkube.Terminated")
class Terminated:
    """Sent to every watcher of ``actor`` once it has stopped for good.

    ``reason`` is ``"normal"`` (it stopped itself), ``"stopped"`` (something stopped
    it), ``"failed: <error>"`` (its supervisor gave up on it or does not restart it),
    ``"shutdown"`` (its system or supervisor is shutting down), ``"no such actor"``
    (it was gone when the watch began) or ``"peer unreachable"`` (its system went away).
    A restart is not a termination.
    """

    actor: ActorRef
    reason: str


@message(tag="actorkube.DeadLetter")
class DeadLetter:
    """A message that could not be delivered (see ``DeadLetters``)."""

    recipient: str
    message_type: str
    reason: str
