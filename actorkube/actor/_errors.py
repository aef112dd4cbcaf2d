"""The actor runtime's errors: a small flat hierarchy, each saying whose fault it is.

- caller: the code that called the runtime did something wrong (an unregistered
  message, a value that cannot be encoded);
- actor: the actor that handled the message failed;
- peer: another process sent something it should not have (bad frames, bad auth);
- environment: nothing was wrong with the request, but it could not be carried out
  (the target is gone, its mailbox is full, no reply came in time).
"""

from __future__ import annotations


class ActorError(Exception):
    """Base class of every error the actor runtime raises."""


class CodecError(ActorError):
    """A value could not be encoded (caller's fault) or decoded (the sender's fault).

    Raised by ``tell``/``ask`` when a message is not a registered message class, or a
    field holds a value of the wrong type; raised while decoding when bytes are not a
    valid frame of the wire format (docs/protocol.md).
    """


class DecodeError(CodecError):
    """Bytes received from somewhere else are not a valid encoding (peer's fault)."""


class Undeliverable(ActorError):
    """A message could not be delivered, or its reply cannot come (environment).

    ``reason`` is one of the dead-letter reasons: ``"no such actor"``,
    ``"mailbox full"``, ``"actor stopped"``, ``"actor restarted"``,
    ``"unhandled message"``, ``"peer unreachable"``, ``"not permitted for guests"`` (a
    guest connection addressed an actor its member system does not export to guests:
    docs/tcp.md, realms).
    """

    def __init__(self, target: object, reason: str) -> None:
        super().__init__(f"{target}: {reason}")
        self.target = target
        self.reason = reason


class MailboxFull(Undeliverable):
    """The target's bounded mailbox is full and its overflow policy is ``FAIL``."""

    def __init__(self, target: object) -> None:
        super().__init__(target, "mailbox full")


class AskTimeout(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout (environment).

    The request may still be processed later; its reply is then discarded.
    """


class HandlerFailed(ActorError):
    """The actor's handler raised while handling this ask (the actor's fault).

    Carries the exception's type name, its text and the formatted traceback, so that it
    means the same when the actor lives in another process. The actor's supervisor has
    been told of the failure as well.
    """

    def __init__(self, actor: object, error_type: str, error: str, traceback: str = "") -> None:
        super().__init__(f"{actor} failed: {error_type}: {error}")
        self.actor = actor
        self.error_type = error_type
        self.error = error
        self.traceback = traceback


class RestartIntensityExceeded(ActorError):
    """A supervisor saw more restarts than its intensity allows within its period.

    It stopped its children and itself, and this is the failure it reports to its own
    parent (escalation). When the system's root supervisor gives up, ``ActorSystem``
    raises this out of its ``async with`` block.
    """


class ProtocolError(ActorError):
    """A transport peer broke the wire protocol (peer's fault); its connection is closed."""


class AuthenticationError(ProtocolError):
    """A transport peer failed the shared-secret handshake (peer's fault)."""
