"""What the API server asks a kubelet, and how it serves ``pods/log`` with it
(kube-apiserver's kubelet client and its pod log REST).

Rules of this file:

- A kubelet names its server actor in its Node's ``kubelet.actorkube.io/server``
  annotation; the API server resolves that address (in-process or over TCP) and asks
  it ``ContainerLogs``. A node without it, or a kubelet that does not answer, is 503.
- ``GET pods/NAME/log``: the container is ``?container=``, or the pod's only
  container; Kubernetes' errors otherwise (400: "a container name must be specified
  for pod web, choose one of: [a b]", "container x is not valid for pod web", "pod web
  does not have a host assigned"). Options: ``previous``, ``timestamps``,
  ``sinceSeconds``/``sinceTime``, ``tailLines``, ``limitBytes``, ``follow``.
- Without ``follow`` the answer is the log bytes (text/plain). With ``follow`` the
  request carries a watcher (as a watch does) and the kubelet streams to it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs

from actorkube.actor import ActorError, ActorRef, message

from . import _errors as errors
from ._rest import is_true

SERVER_ANNOTATION = "kubelet.actorkube.io/server"
TEXT = "text/plain"
ASK_TIMEOUT = 30.0
T = TypeVar("T")


@message(tag="kubelet.ContainerLogs")
class ContainerLogs:
    namespace: str
    pod: str
    container: str
    previous: bool = False
    timestamps: bool = False
    since: float | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None
    follow: bool = False
    receiver: ActorRef | None = None
    stream_id: int = 0


@message(tag="kubelet.LogsReply")
class LogsReply:
    data: bytes = b""


@message(tag="kubelet.LogsError")
class LogsError:
    code: int
    message: str


@attrs.frozen
class PlainText:
    """An answer that is not JSON: bytes of ``content_type``."""

    data: bytes
    content_type: str = TEXT


def _flag(params: Mapping[str, str], name: str) -> bool:
    return is_true(params.get(name, ""))


def _number(params: Mapping[str, str], name: str, minimum: int) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise errors.bad_request(f"{name}: invalid value {raw!r}: must be an integer") from None
    if value < minimum:
        bound = "greater than or equal to 0" if minimum == 0 else f"greater than {minimum - 1}"
        raise errors.bad_request(f"{name}: Invalid value: {value}: must be {bound}")
    return value


def choose_container(pod: Mapping[str, Any], asked: str) -> str:
    spec = pod.get("spec") or {}
    name = (pod.get("metadata") or {}).get("name", "")
    apps = [c.get("name") for c in spec.get("containers") or ()]
    inits = [c.get("name") for c in spec.get("initContainers") or ()]
    if not asked:
        if len(apps) == 1:
            return apps[0]
        message = (f"a container name must be specified for pod {name}, "
                   f"choose one of: [{' '.join(apps)}]")  # fmt: skip
        if inits:
            message += f" or one of the init containers: [{' '.join(inits)}]"
        raise errors.bad_request(message)
    if asked not in apps and asked not in inits:
        raise errors.bad_request(f"container {asked} is not valid for pod {name}")
    return asked


def log_request(pod: Mapping[str, Any], params: Mapping[str, str], now: float) -> ContainerLogs:
    """The ``ContainerLogs`` a ``pods/log`` request with ``params`` asks for."""
    meta = pod.get("metadata") or {}
    container = choose_container(pod, str(params.get("container", "")))
    since: float | None = None
    seconds = _number(params, "sinceSeconds", 1)
    if seconds is not None:
        since = now - seconds
    if params.get("sinceTime"):
        if seconds is not None:
            raise errors.bad_request("at most one of sinceTime or sinceSeconds may be specified")
        try:
            since = datetime.datetime.fromisoformat(
                str(params["sinceTime"]).replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            raise errors.bad_request(f"sinceTime: invalid time {params['sinceTime']!r}") from None
    return ContainerLogs(
        namespace=meta.get("namespace", ""),
        pod=meta.get("name", ""),
        container=container,
        previous=_flag(params, "previous"),
        timestamps=_flag(params, "timestamps"),
        since=since,
        tail_lines=_number(params, "tailLines", 0),
        limit_bytes=_number(params, "limitBytes", 1),
        follow=_flag(params, "follow"),
    )


def kubelet_address(pod: Mapping[str, Any], node: Mapping[str, Any] | None) -> str:
    name = (pod.get("metadata") or {}).get("name", "")
    if not (pod.get("spec") or {}).get("nodeName"):
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    address = ((node or {}).get("metadata") or {}).get("annotations", {}).get(SERVER_ANNOTATION)
    if not address:
        node_name = pod["spec"]["nodeName"]
        raise errors.ApiError(errors.status(503, "ServiceUnavailable",
                                            f"no kubelet serves node {node_name}"))  # fmt: skip
    return address


async def ask_kubelet(kubelet: ActorRef, msg: object, expected: type[T]) -> T:
    """The kubelet's answer to ``msg`` (a ``ContainerLogs``: ``LogsReply``, whose bytes
    are empty for a follow, which streams to its receiver; an ``ExecRequest``:
    ``ExecAccepted``), which must be an ``expected``. Raises ``ApiError``."""
    try:
        answer = await kubelet.ask(msg, timeout=ASK_TIMEOUT)
    except ActorError as e:
        why = f"the kubelet did not answer: {e}"
        raise errors.ApiError(errors.status(503, "ServiceUnavailable", why)) from None
    if isinstance(answer, LogsError):
        reason = {400: "BadRequest", 404: "NotFound"}.get(answer.code, "InternalError")
        raise errors.ApiError(errors.status(answer.code, reason, answer.message))
    if not isinstance(answer, expected):
        what = f"the kubelet answered {type(answer).__name__}"
        raise errors.ApiError(errors.status(500, "InternalError", what))
    return answer
