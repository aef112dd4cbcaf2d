"""The API server's messages: one request in, one response out, watch events pushed.

A request is what kube-apiserver's request info holds after parsing a URL (verb,
group, version, resource, subresource, namespace, name) plus the body, the query
parameters and the caller's bearer token, so that the HTTP front end and the in-cluster
client send the same thing. Bodies are JSON-like data (dicts, lists, str, int, float,
bool, None) in Kubernetes' JSON shape.
"""

from __future__ import annotations

import json
from typing import Any

from actorkube.actor import ActorRef, message
from actorkube.actor._codec import LARGE_PAYLOAD
from actorkube.heap import collector_paused


@message(tag="apiserver.Request")
class ApiRequest:
    """``verb``: get, list, watch, create, update, patch, delete (Kubernetes' request
    verbs). ``params``: the query parameters as strings (labelSelector, fieldSelector,
    limit, continue, resourceVersion, allowWatchBookmarks, gracePeriodSeconds, ...).
    ``content_type`` says what a patch body is (application/merge-patch+json or
    application/json-patch+json). For watch, ``watcher`` receives ``WatchEvent``s under
    ``watch_id``. A request with a ``path`` (and no resource) is for a URL that is not
    a resource: discovery (``/api``, ``/apis/apps/v1``), ``/version``, ``/healthz``.
    ``as_table``: answer a get or list as a ``meta.k8s.io/v1`` Table (what ``kubectl
    get`` asks for with ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).
    ``impersonate``: who the caller asks to act as (``{"user", "groups", "uid",
    "extra"}``, what the Impersonate-* headers say). ``accept``: the media types the
    client takes, where they choose the answer (aggregated discovery).
    ``client_certificate``: the DER certificate the client presented over TLS (the API
    server checks it against its client CA itself). ``duplicate_fields``: fields the
    JSON body gave twice (the last one counts; strict field validation refuses them).
    ``raw_body``: a body as the HTTP front end received it (bytes in ``content_type``),
    which the API server decodes into ``body`` once it has authenticated the caller."""

    verb: str
    resource: str
    group: str = ""
    version: str = "v1"
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    body: Any = None
    params: Any = None
    token: str = ""
    content_type: str = ""
    watcher: ActorRef | None = None
    watch_id: int = 0
    path: str = ""
    as_table: bool = False
    impersonate: Any = None
    accept: str = ""
    client_certificate: bytes = b""
    duplicate_fields: tuple[str, ...] = ()
    raw_body: bytes = b""


@message(tag="apiserver.Response")
class ApiResponse:
    """``code`` an HTTP status; ``body`` the object, list or ``Status``. A list served
    from the watch cache comes as ``raw``, its JSON (spliced from each object's JSON,
    which the cache encodes once per version, and what the HTTP front end writes);
    ``body`` decodes it (each time it is read). ``warnings``: what the client should be
    told without failing the request (unknown fields dropped), as HTTP ``Warning``
    headers carry them. ``content_type``: what ``raw`` is when it is not JSON (a
    container's log is text/plain)."""

    code: int
    content: Any = None
    raw: bytes = b""
    warnings: tuple[str, ...] = ()
    content_type: str = ""

    @property
    def body(self) -> Any:
        if not self.raw:
            return self.content
        if len(self.raw) < LARGE_PAYLOAD:
            return json.loads(self.raw)
        with collector_paused():
            return json.loads(self.raw)


@message(tag="apiserver.WatchEvent")
class WatchEvent:
    """One event of watch ``watch_id``, as the JSON of ``{"type": ..., "object": ...}``
    (the watch cache encodes an event once for all its watchers, and it is what the
    HTTP front end writes); ``event`` decodes it. No ``data`` means the watch ended
    (``reason`` says why: the client watches again from the last resourceVersion it
    saw). ``seq`` numbers a watch's messages 1, 2, 3, ... (0: not numbered): actor
    messages may be lost (a network partition), and a watch that lost one must end,
    since its watcher's view would silently miss a change; the receiver sees the gap.
    ``more``: the events that follow ``data``, in order, in the same message (a pump
    sends what its watcher has queued at once: a message per event cost as much as
    the rest of the event's way from etcd)."""

    watch_id: int
    data: bytes = b""
    reason: str = ""
    seq: int = 0
    more: tuple[bytes, ...] = ()

    @property
    def event(self) -> dict | None:
        return json.loads(self.data) if self.data else None


@message(tag="apiserver.StopWatch")
class StopWatch:
    """The watcher no longer wants watch ``watch_id``."""

    watcher: ActorRef
    watch_id: int
