"""``pods/exec``: what the API server, the HTTP front end and a kubelet say to each other
to run a command in a container with its streams open, and Kubernetes' remote command
protocol over a WebSocket (the ``v5.channel.k8s.io`` and ``v4.channel.k8s.io``
subprotocols that ``kubectl exec``, ``kubectl cp`` and the official clients speak).
Plain data and pure functions: the front end (``_execws``) and the kubelet
(``actorkube.node._execsession``) do the I/O.

Rules of this file:

- The request: ``command`` (one or more words: 400 "you must specify at least one
  command for the container" otherwise), ``container`` (as for logs: the pod's only
  container if not named), ``stdin``/``stdout``/``stderr``/``tty`` flags ("true" or
  "1"; at least one of the three streams, 400 otherwise; with ``tty`` there is no
  stderr, the terminal carries both, as the kubelet says).
- Between actors: the front end's receiver gets ``ExecOpened`` (where input goes),
  then ``ExecOutput`` chunks in order, then one ``ExecEnded`` (the exit code, or why
  the command could not run). Input goes to the session's input actor: ``ExecInput``
  (asked: the answer comes when the session has room for more, which is how a fast
  client is held back), ``ExecInputClosed`` (v5's end of stdin, asked likewise, after
  the input before it), ``ExecResize``,
  ``ExecCancel`` (the client went away: the command is killed).
- On the WebSocket every message is binary, its first byte the channel: 0 stdin, 1
  stdout, 2 stderr, 3 error, 4 resize (JSON ``{"Width": w, "Height": h}``); v5 adds
  ``[255, channel]``, the client's end of a channel (of stdin: EOF). At the end the
  server writes a ``Status`` on channel 3 (``Success``; ``NonZeroExitCode`` with the
  code as the ``ExitCode`` cause, from which kubectl takes its own exit code; an
  ``InternalError`` when the command could not run) and closes the socket normally.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from actorkube.actor import ActorRef, message

from . import _errors as errors
from ._rest import is_true

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
PROTOCOLS = (V5, V4)  # in the order of preference
STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE = 255  # v5: [CLOSE, channel] ends the client's side of a channel


@message(tag="kubelet.Exec")
class ExecRequest:
    """Run ``command`` in the pod's container; stream to ``receiver`` as
    ``stream_id``. Answered by ``ExecAccepted`` once the session exists, or by a
    ``LogsError`` (no such container, not running)."""

    namespace: str
    pod: str
    container: str
    command: tuple[str, ...]
    stdin: bool = False
    stdout: bool = True
    stderr: bool = True
    tty: bool = False
    receiver: ActorRef | None = None
    stream_id: int = 0


@message(tag="kubelet.ExecAccepted")
class ExecAccepted:
    pass


@message(tag="kubelet.ExecOpened")
class ExecOpened:
    """The session of ``stream_id`` runs; its input goes to ``input``."""

    stream_id: int
    input: ActorRef


@message(tag="kubelet.ExecOutput")
class ExecOutput:
    """Bytes the command wrote on ``channel`` (``STDOUT`` or ``STDERR``)."""

    stream_id: int
    channel: int
    data: bytes


@message(tag="kubelet.ExecEnded")
class ExecEnded:
    """The command exited with ``exit_code``, or never ran: ``error`` says why."""

    stream_id: int
    exit_code: int = 0
    error: str = ""


@message(tag="kubelet.ExecInput")
class ExecInput:
    data: bytes


@message(tag="kubelet.ExecInputTaken")
class ExecInputTaken:
    pass


@message(tag="kubelet.ExecInputClosed")
class ExecInputClosed:
    pass


@message(tag="kubelet.ExecResize")
class ExecResize:
    width: int
    height: int


@message(tag="kubelet.ExecCancel")
class ExecCancel:
    pass


def exec_request(pod: Mapping[str, Any], params: Mapping[str, Any], container: str) -> ExecRequest:
    """The ``ExecRequest`` a ``pods/exec`` request with ``params`` asks of ``container``
    (the receiver is added by whoever has one). Raises ``ApiError`` 400."""
    command = params.get("command")
    if isinstance(command, str):
        command = [command]
    if not isinstance(command, list | tuple) or not all(isinstance(w, str) for w in command):
        command = []
    if not command:
        raise errors.bad_request("you must specify at least one command for the container")
    stdin, stdout, stderr, tty = streams(params)
    if not (stdin or stdout or stderr):
        raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
    meta = pod.get("metadata") or {}
    return ExecRequest(meta.get("namespace", ""), meta.get("name", ""), container,
                       tuple(command), stdin, stdout, stderr, tty)  # fmt: skip


def streams(params: Mapping[str, Any]) -> tuple[bool, bool, bool, bool]:
    """``(stdin, stdout, stderr, tty)`` as a request's parameters ask for them (no
    stderr with a terminal, which carries it)."""
    tty = _flag(params, "tty")
    return (_flag(params, "stdin"), _flag(params, "stdout"),
            _flag(params, "stderr") and not tty, tty)  # fmt: skip


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name, "")
    return value == "1" or (isinstance(value, str) and is_true(value))


def choose_protocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to answer a client that offered ``offered`` (None: none we
    speak)."""
    for protocol in PROTOCOLS:
        if protocol in offered:
            return protocol
    return None


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def parse_frame(data: bytes, protocol: str) -> tuple[str, Any]:
    """What a client's message says: ``("stdin", bytes)``, ``("resize", (w, h))``,
    ``("close", channel)`` (v5), ``("ignore", why)`` for an empty message or one on a
    channel a client does not write; ``("error", why)`` for a message that breaks the
    protocol (the front end closes the connection)."""
    if not data:
        return "ignore", "an empty message"
    channel, payload = data[0], data[1:]
    if channel == CLOSE and protocol == V5:
        if len(payload) != 1:
            return "error", f"a close signal names one channel, not {len(payload)} bytes"
        return "close", payload[0]
    if channel == STDIN:
        return "stdin", payload
    if channel == RESIZE:
        try:
            size = json.loads(payload)
            width, height = int(size["Width"]), int(size["Height"])
        except (ValueError, TypeError, KeyError):
            return "error", f"a resize message is JSON with Width and Height, not {payload[:64]!r}"
        return "resize", (max(0, width), max(0, height))
    return "ignore", f"channel {channel} is not written by clients"


def success() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_status(command: Sequence[str], code: int) -> dict:
    """The Status the kubelet writes for a command that ended with ``code``."""
    if code == 0:
        return success()
    return {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: error executing command "
        f"[{' '.join(command)}], exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def failure(message: str) -> dict:
    """The Status of a command that could not run (an internal error, as Kubernetes')."""
    return errors.internal(message).status


def ended_status(command: Sequence[str], ended: ExecEnded) -> dict:
    return failure(ended.error) if ended.error else exit_status(command, ended.exit_code)
