"""The in-cluster API client: Kubernetes' verbs over actor messages to the API server.

Rules of this file:

- Every call is one ``ApiRequest`` ask; a response that is not 2xx raises ``ApiError``
  carrying the server's ``Status`` (so callers test ``e.code == 404``, ``e.reason ==
  "Conflict"`` as they would with client-go). An API server that does not answer in
  ``timeout`` seconds (or is gone) raises ``ApiError`` 503 / 504 as well: callers
  handle one exception type.
- The client holds no state but its credentials and the server's reference (or an
  ``ApiServers``, shared by a process's clients, that fails over between replicated
  servers): it works in-process and over the TCP transport alike.
- A watch is an async context manager yielding events; it ends (the iterator stops)
  when the server ends the watch, and the caller watches again from the last
  resourceVersion it saw, as client-go's reflector does. Leaving the block stops it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import random
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actorkube import _json as fastjson
from actorkube.actor import (
    Actor,
    ActorError,
    ActorRef,
    ActorSystem,
    AskTimeout,
    Terminated,
    handler,
)
from actorkube.apiserver import ApiError, ApiRequest, ApiResponse, StopWatch, WatchEvent
from actorkube.apiserver._errors import status
from actorkube.apiserver._watchcache import NOT_OLDER_THAN

MERGE_PATCH = "application/merge-patch+json"
WATCH_BUFFER = 1000  # events a watch stream holds for a reader that is behind
STREAK = 64  # ready events a watch stream hands out in a row without yielding
JSON_PATCH = "application/json-patch+json"


# The version a client speaks to each group at unless told otherwise: the one the API
# server prefers (its storage version), as a clientset's typed clients are generated for.
PREFERRED_VERSIONS = {"autoscaling": "v2", "metrics.k8s.io": "v1beta1"}


def preferred_version(group: str) -> str:
    return PREFERRED_VERSIONS.get(group, "v1")


LOST = "watch messages were lost"
# Requests that change nothing: one that failed is tried again on the next server at
# once. A write is not (the failed server may have applied it); its caller retries.
_READS = frozenset({"get", "list"})


class ApiServers:
    """Replicated API servers, and the one their clients use now.

    Kubernetes puts a load balancer in front of its API servers; components here reach
    the servers' actors directly (over the TCP transport), so the failover is the
    client's. Every ``ApiClient`` made on one ``ApiServers`` (a process's components
    share it) sends to ``current``; a server that failed a request (gone: its process
    died and the transport declared it unreachable; or it did not answer in time) is
    passed over and the next one becomes current, for every client at once. A server
    passed over is tried again only after every other one failed too. A process starts
    on a server of its own (``seed``: which, else at random), so that processes spread
    over the servers instead of all loading the first."""

    def __init__(self, refs: Sequence[ActorRef], *, seed: int | None = None) -> None:
        if not refs:
            raise ValueError("ApiServers needs at least one server")
        self.refs = tuple(refs)
        self._current = (random.randrange(len(refs)) if seed is None else seed) % len(refs)

    @property
    def current(self) -> ActorRef:
        return self.refs[self._current]

    def failed(self, ref: ActorRef) -> None:
        """``ref`` failed a request: move on, unless another client already did."""
        if self.refs[self._current] == ref:
            self._current = (self._current + 1) % len(self.refs)

    def __len__(self) -> int:
        return len(self.refs)


class ApiClient:
    """Talks to the API server at ``server`` (a reference, or ``ApiServers`` to fail over
    between replicas) as the user of ``token``, or of ``certificate`` (a DER client
    certificate the cluster's CA signed, as a node gets by joining; over the transport
    it proves nothing by itself: the transport's secret is what is trusted)."""

    def __init__(
        self,
        system: ActorSystem,
        server: ActorRef | ApiServers,
        *,
        token: str = "",
        certificate: bytes = b"",
        timeout: float = 30.0,
    ) -> None:
        self.system = system
        self.server = server  # as given: components hand it on to the clients they make
        self.servers = server if isinstance(server, ApiServers) else ApiServers((server,))
        self.token = token
        self.certificate = certificate
        self.timeout = timeout
        self._watch_ids = itertools.count(1)

    async def request(self, verb: str, resource: str, **fields: Any) -> Any:
        """One request; the body of a 2xx answer, else ``ApiError``."""
        fields.setdefault("version", preferred_version(fields.get("group", "")))
        answer = await self.send(ApiRequest(verb, resource, token=self.token,
                                            client_certificate=self.certificate, **fields))
        if not 200 <= answer.code < 300:
            raise ApiError(answer.body)
        return answer.body

    async def send(self, req: ApiRequest) -> ApiResponse:
        """``req`` as it is (its own token); the server's response whatever its code. An
        API server that does not answer in time is a 504, one that is gone a 503; either
        way the next request goes to the next server, and a read (get, list) is tried
        there at once, on each server at most once."""
        tries = len(self.servers) if req.verb in _READS and req.watcher is None else 1
        for _ in range(tries):
            answer, answered = await self._ask(self.servers.current, req)
            if answered:
                break
        return answer

    async def _ask(self, server: ActorRef, req: ApiRequest) -> tuple[ApiResponse, bool]:
        """``server``'s response and True; or, from a server that is gone, too slow or
        unavailable (a 503: starting, or its etcd is out of reach), now marked failed,
        the 503 or 504 that stands for it and False."""
        try:
            answer = await server.ask(req, timeout=self.timeout)
            if answer.code != 503:
                return answer, True
            failure = answer
        except AskTimeout:
            failure = ApiResponse(504, status(504, "Timeout",
                                              "the API server did not answer in time"))  # fmt: skip
        except ActorError as e:
            failure = ApiResponse(503, status(503, "ServiceUnavailable", f"API server: {e}"))
        self.servers.failed(server)
        return failure, False

    async def get(
        self,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        group: str = "",
        resource_version: str = "",
    ) -> dict:
        params = {"resourceVersion": resource_version} if resource_version else None
        return await self.request(
            "get", resource, group=group, namespace=namespace, name=name, params=params
        )

    async def get_if_exists(
        self, resource: str, name: str, *, namespace: str = "", group: str = ""
    ) -> dict | None:
        """``get``, but None for an object that does not exist (404)."""
        try:
            return await self.get(resource, name, namespace=namespace, group=group)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def list(
        self,
        resource: str,
        *,
        namespace: str = "",
        group: str = "",
        label_selector: str = "",
        field_selector: str = "",
        limit: int = 0,
        continue_token: str = "",
        resource_version: str = "",
    ) -> dict:
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            limit=str(limit) if limit else "",
            resourceVersion=resource_version,
            **{"continue": continue_token},
        )
        return await self.request("list", resource, group=group, namespace=namespace, params=params)

    async def create(
        self, resource: str, body: dict, *, namespace: str = "", group: str = ""
    ) -> dict:
        return await self.request("create", resource, group=group, namespace=namespace, body=body)

    async def update(
        self,
        resource: str,
        body: dict,
        *,
        namespace: str = "",
        group: str = "",
        subresource: str = "",
    ) -> dict:
        """PUT: ``body`` carries the resourceVersion it was based on (409 if stale)."""
        name = body.get("metadata", {}).get("name", "")
        return await self.request(
            "update",
            resource,
            group=group,
            namespace=namespace,
            name=name,
            subresource=subresource,
            body=body,
        )

    async def update_status(
        self, resource: str, body: dict, *, namespace: str = "", group: str = ""
    ) -> dict:
        return await self.update(
            resource, body, namespace=namespace, group=group, subresource="status"
        )

    async def patch(
        self,
        resource: str,
        name: str,
        patch: Any,
        *,
        namespace: str = "",
        group: str = "",
        content_type: str = MERGE_PATCH,
        subresource: str = "",
    ) -> dict:
        return await self.request(
            "patch",
            resource,
            group=group,
            namespace=namespace,
            name=name,
            subresource=subresource,
            body=patch,
            content_type=content_type,
        )

    async def delete(
        self,
        resource: str,
        name: str,
        *,
        namespace: str = "",
        group: str = "",
        grace_period: int | None = None,
        uid: str = "",
        resource_version: str = "",
        propagation_policy: str = "",
    ) -> dict:
        """DELETE, with DeleteOptions: a grace period, preconditions (``uid``,
        ``resource_version``), and ``propagation_policy`` (Background, Foreground or
        Orphan; "" leaves it to the resource's default)."""
        options: dict[str, Any] = {}
        if grace_period is not None:
            options["gracePeriodSeconds"] = grace_period
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        pre = _params(uid=uid, resourceVersion=resource_version)
        if pre:
            options["preconditions"] = pre
        return await self.request(
            "delete", resource, group=group, namespace=namespace, name=name, body=options or None
        )

    @asynccontextmanager
    async def watch(
        self,
        resource: str,
        *,
        namespace: str = "",
        group: str = "",
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str = "",
        bookmarks: bool = False,
        send_initial_events: bool = False,
    ) -> AsyncIterator[WatchStream]:
        """Watch ``resource`` from ``resource_version`` ("" or "0": the current state as
        ADDED events first). Raises ``ApiError`` (410 Gone when the version is too old).
        ``send_initial_events``: a streaming list (Kubernetes' sendInitialEvents, with
        bookmarks): the state at least as new as ``resource_version`` ("": as new as
        the server's storage now) as ADDED events, then a bookmark annotated
        ``k8s.io/initial-events-end`` carrying its resourceVersion, then the changes."""
        params = _params(
            labelSelector=label_selector,
            fieldSelector=field_selector,
            resourceVersion=resource_version,
            allowWatchBookmarks="true" if bookmarks or send_initial_events else "",
            sendInitialEvents="true" if send_initial_events else "",
            resourceVersionMatch=NOT_OLDER_THAN if send_initial_events else "",
        )
        req = ApiRequest("watch", resource, group=group, version=preferred_version(group),
                         namespace=namespace, params=params, token=self.token,
                         client_certificate=self.certificate)  # fmt: skip
        async with self.watch_request(req) as stream:
            yield stream

    @asynccontextmanager
    async def watch_request(self, req: ApiRequest) -> AsyncIterator[WatchStream]:
        """``watch`` for a request made elsewhere (the HTTP front end's, its own token).
        Raises ``ApiError`` if the server refuses it."""
        # Bounded: a reader that stops reading holds up the receiver, then the server's
        # pump, which ends the watch ("did not keep up") instead of buffering forever.
        send, receive = trio.open_memory_channel(WATCH_BUFFER)
        # One server holds the watch: the receiver watches it, the stop goes to it.
        server = self.servers.current
        gone = functools.partial(self.servers.failed, server)
        # A granted name: what it receives may come from a node (a followed container
        # log comes from the kubelet), which may message only such actors.
        receiver = self.system.spawn(
            lambda: _Receiver(send, server, gone), name=self.system.granted_name("watch")
        )
        watch_id = next(self._watch_ids)
        try:
            answer, _ = await self._ask(server, attrs.evolve(req, watcher=receiver,
                                                             watch_id=watch_id))  # fmt: skip
            if not 200 <= answer.code < 300:
                raise ApiError(answer.body)
            stream = WatchStream(receive)
            try:
                yield stream
            finally:
                if not stream.ended or stream.lost:  # the server may still be sending
                    server.tell(StopWatch(receiver, watch_id))
        finally:
            receive.close()  # a receiver waiting for room gives up
            await self.system.stop(receiver)


class WatchStream:
    """The events of one watch, ``{"type": ..., "object": ...}`` each; iteration stops
    when the server ends the watch (``ended`` then says why)."""

    def __init__(self, receive: trio.MemoryReceiveChannel) -> None:
        self._receive = receive
        self.ended = ""
        self.lost = False  # ended by the receiver: a message of the watch was lost
        self._streak = 0  # events taken in a row without yielding
        self._more: deque[bytes] = deque()  # the rest of the last message's events

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> dict:
        data = await self.next_json()
        if data is None:
            raise StopAsyncIteration
        return fastjson.loads(data)

    async def next_json(self) -> bytes | None:
        """The next event as the server encoded it (JSON), None once the watch ended.

        Always a cancellation point. A schedule point when it waits for an event, and
        at least once every ``STREAK`` events it finds ready: yielding for each of a
        burst (as ``receive`` does) would cost a task switch per event."""
        if self.ended:
            return None
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._more:  # a message's events count as ready ones
            await self._took_ready()
            return self._more.popleft()
        try:
            msg = self._receive.receive_nowait()
        except trio.WouldBlock:
            # Waited for outside the handler: a wait inside it keeps the exception, its
            # traceback and their frames alive for as long as it lasts (an idle watch's:
            # seconds), so each wait of thousands of watches left a dozen objects for
            # the collector to scan and freeze.
            msg = None
        if msg is None:
            self._streak = 0
            msg = await self._receive.receive()
        else:
            await self._took_ready()
        if not msg.data:
            self.ended = msg.reason or "ended"
            self.lost = msg.reason.startswith(LOST)
            return None
        if msg.more:
            self._more.extend(msg.more)
        return msg.data

    async def _took_ready(self) -> None:
        """An event was ready: a schedule point once every ``STREAK`` of them."""
        self._streak += 1
        if self._streak >= STREAK:
            self._streak = 0
            await trio.lowlevel.cancel_shielded_checkpoint()


class _Receiver(Actor):
    """Hands a watch's events to the stream; ends the stream if the API server goes
    away (its process crashed or its host is cut off), which would never say so."""

    def __init__(self, send: trio.MemorySendChannel, server: ActorRef,
                 gone: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.send = send
        self.server = server
        self.gone = gone  # tells the process's ApiServers that ``server`` is gone
        self.expected = 1  # the next ``seq`` of the watch's numbered messages
        self.broken = False

    async def started(self) -> None:
        self.watch(self.server)

    @handler
    async def on_event(self, msg: WatchEvent) -> None:
        if self.broken:
            return
        if msg.seq:
            if msg.seq != self.expected:
                # A lost message (a partition drops them; TCP would have reset the
                # connection): the stream ends, and its reader watches again from the
                # last resourceVersion it saw, so it misses nothing.
                self.broken = True
                msg = WatchEvent(msg.watch_id, b"", f"{LOST}: expected message "
                                                    f"{self.expected}, got {msg.seq}")
            self.expected += 1
        await self._hand_over(msg)

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        self.gone()  # the reader's next watch goes to another server
        await self._hand_over(WatchEvent(0, b"", f"the API server went away ({msg.reason})"))

    async def _hand_over(self, msg: WatchEvent) -> None:
        # Without waiting when the stream has room (nearly always): ``send`` would yield
        # to the scheduler for every event even then, a task switch per event. A full
        # stream waits for room (backpressure), as before.
        try:
            self.send.send_nowait(msg)
            return
        except trio.WouldBlock:
            pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.send.send(msg)


def _params(**values: str) -> dict[str, str] | None:
    kept = {k: v for k, v in values.items() if v}
    return kept or None
