"""API errors as Kubernetes reports them: an HTTP code and a ``Status`` object.

Rules of this file:

- Every failure the API server reports to a client is an ``ApiError`` carrying the
  ``Status`` object Kubernetes would send (``kind: Status``, ``status: Failure``,
  ``message``, ``reason``, ``details``, ``code``), worded as Kubernetes words it, so
  that kubectl and client libraries that match on reasons and messages behave alike.
- The constructors below are the only place those wordings live.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request failed; ``status`` is the Kubernetes ``Status`` object to return and
    ``code`` its HTTP status. Whose fault it is depends on ``reason``: the caller's for
    NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Forbidden, Unauthorized,
    Gone/Expired, MethodNotAllowed; the server's for InternalError, Timeout and
    ServiceUnavailable."""

    def __init__(self, status: dict[str, Any]) -> None:
        super().__init__(status["message"])
        self.status = status

    @property
    def code(self) -> int:
        return self.status["code"]

    @property
    def reason(self) -> str:
        return self.status["reason"]


def status(code: int, reason: str, message: str, details: dict | None = None) -> dict[str, Any]:
    """A failure ``Status`` object."""
    obj: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        obj["details"] = details
    return obj


def success_status(details: dict | None = None) -> dict[str, Any]:
    """What a delete that removed the object at once returns for some resources."""
    obj: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}}
    obj["status"] = "Success"
    if details is not None:
        obj["details"] = details
    return obj


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if group:
        details["group"] = group
    details["kind"] = kind
    return details


def qualified(resource: str, group: str) -> str:
    """``pods``, ``deployments.apps``: how Kubernetes names a resource in messages."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    what = qualified(resource, group)
    return ApiError(status(404, "NotFound", f'{what} "{name}" not found',
                           _details(name, group, resource)))  # fmt: skip


def already_exists(resource: str, group: str, name: str) -> ApiError:
    what = qualified(resource, group)
    return ApiError(status(409, "AlreadyExists", f'{what} "{name}" already exists',
                           _details(name, group, resource)))  # fmt: skip


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    what = qualified(resource, group)
    message = f'Operation cannot be fulfilled on {what} "{name}": {why}'
    return ApiError(status(409, "Conflict", message, _details(name, group, resource)))


MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"  # noqa: E501


def invalid(kind: str, group: str, name: str, errors: list) -> ApiError:
    """422 Invalid from a list of ``FieldError``s (objects with ``type``, ``field`` and
    ``message()``); each becomes a cause whose message is the error without its field,
    as Kubernetes' ErrorBody."""
    what = f"{kind}.{group}" if group else kind
    texts = [e.message() for e in errors]
    listed = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(name, group, kind)
    details["causes"] = [
        {"reason": e.type.value, "message": _body(e), "field": e.field} for e in errors
    ]
    return ApiError(status(422, "Invalid", f'{what} "{name}" is invalid: {listed}', details))


def _body(error) -> str:
    text = error.message()
    prefix = f"{error.field}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def no_route() -> ApiError:
    """Kubernetes' own answer for a path nothing serves."""
    return ApiError(status(404, "NotFound", "the server could not find the requested resource"))


def bad_request(message: str) -> ApiError:
    return ApiError(status(400, "BadRequest", message))


def method_not_allowed(message: str) -> ApiError:
    return ApiError(status(405, "MethodNotAllowed", message))


def gone(message: str) -> ApiError:
    """410: a resourceVersion older than the history kept."""
    return ApiError(status(410, "Expired", message))


def unauthorized() -> ApiError:
    return ApiError(status(401, "Unauthorized", "Unauthorized"))


def forbidden(user: str, verb: str, resource: str, group: str, namespace: str, name: str,
              subresource: str = "", why: str = "") -> ApiError:  # fmt: skip
    """403 in Kubernetes' words: ``pods "x" is forbidden: User "u" cannot get resource
    "pods" in API group "" in the namespace "ns"``."""
    what = qualified(resource, group)
    target = f'{what} "{name}"' if name else what
    res = f"{resource}/{subresource}" if subresource else resource
    scope = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    message = (
        f'{target} is forbidden: User "{user}" cannot {verb} resource "{res}" in API group '
        f'"{group}"{scope}'
    )
    if why:
        message += f": {why}"
    return ApiError(status(403, "Forbidden", message, _details(name, group, resource)))


def namespace_forbidden(resource: str, group: str, name: str, why: str) -> ApiError:
    """403 from admission (namespace lifecycle): ``pods "x" is forbidden: unable to
    create new content in namespace ns because it is being terminated``."""
    what = qualified(resource, group)
    target = f'{what} "{name}"' if name else what
    return ApiError(status(403, "Forbidden", f"{target} is forbidden: {why}",
                           _details(name, group, resource)))  # fmt: skip


def internal(message: str) -> ApiError:
    return ApiError(status(500, "InternalError", f"Internal error occurred: {message}"))


def unavailable(message: str) -> ApiError:
    return ApiError(status(503, "ServiceUnavailable", message))
