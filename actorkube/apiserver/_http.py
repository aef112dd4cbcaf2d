"""The HTTP front end: Kubernetes' REST API as JSON over HTTP, for kubectl and the
official clients. An ASGI application, served by Hypercorn on trio (``serve_http``).

Rules of this file:

- A resource request becomes the ``ApiRequest`` the in-cluster client would send
  (``_rest.parse_request``), with the caller's credentials (the bearer token, the TLS
  client certificate, Impersonate-* headers); the API server does the rest
  (authentication, RBAC, decoding the body, admission, storage). The answer is written
  as it came: a list from the watch cache as its raw JSON, anything else encoded once
  here.
- A body is at most ``max_body`` bytes (kube-apiserver's limit is 3 MiB; 413 above).
  It goes to the API server as bytes (``ApiRequest.raw_body``), which decodes it only
  after authenticating and authorizing its sender (``_bodies.parse``: JSON, YAML for
  apply patches, protobuf; 400 malformed, 415 another type).
- A watch is one JSON event per line, chunked, until the watch ends; a client that
  goes away stops it.
- Any other GET (``/version``, ``/healthz``, discovery) is a non-resource request
  (``ApiRequest.path``): the API server authorizes it by URL, as RBAC's
  nonResourceURLs say, and answers it.
- Nothing a client sends can stop the front end: every failure is a ``Status``.
"""

from __future__ import annotations

import base64
import contextvars
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qsl, unquote

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import run as hypercorn_run
from hypercorn.trio import serve, tcp_server

from actorkube.actor import ActorRef, ActorSystem
from actorkube.client import ApiClient

from . import _errors as errors
from ._bodies import APPLY_PATCH
from ._execws import serve_exec
from ._messages import ApiRequest, ApiResponse
from ._metrics import CONTENT_TYPE
from ._portforwardws import serve_portforward
from ._registry import Registry
from ._rest import AGGREGATED, is_non_resource, is_true, parse_request
from ._wsstreams import refuse_websocket

log = logging.getLogger("actorkube.apiserver.http")

MAX_BODY = 3 * 1024 * 1024
_TEXT = b"text/plain; charset=utf-8"
METRICS_TYPE = CONTENT_TYPE.encode()
_DISCOVERY = "APIGroupDiscoveryList"
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class HttpFrontEnd:
    """The ASGI application. ``api``: the API server's reference; ``registry`` its
    resources (for routes and discovery); ``timeout`` how long a request may take."""

    def __init__(
        self,
        system: ActorSystem,
        api: ActorRef,
        registry: Registry,
        *,
        max_body: int = MAX_BODY,
        timeout: float = 60.0,
    ) -> None:
        # The in-cluster client does the asking (and the watching) for every request.
        self.client = ApiClient(system, api, timeout=timeout)
        self.registry = registry
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            await self._serve(scope, receive, send)
        except Exception:  # the front end keeps serving; the client learns what broke
            log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            await _respond(send, 500, errors.internal("the request could not be served").status)

    async def _websocket(self, scope: dict, receive: Receive, send: Send) -> None:
        """A WebSocket: ``pods/exec`` (``_execws``) or ``pods/portforward``
        (``_portforwardws``); anything else is refused."""
        try:
            req = parse_request(self.registry, "GET", scope["path"], _query(scope))
            if req.subresource not in ("exec", "portforward"):
                raise errors.bad_request(f"{scope['path']} is not served over a WebSocket")
        except errors.ApiError as e:
            await receive()  # the connect
            await refuse_websocket(scope, send, e.code, e.status)
            return
        req = attrs.evolve(req, **_caller(scope))
        serve = serve_exec if req.subresource == "exec" else serve_portforward
        try:
            await serve(self.client, req, scope, receive, send)
        except Exception:  # the front end keeps serving
            log.exception("%s %s failed", req.subresource, scope.get("path"))

    async def _serve(self, scope: dict, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        query = _query(scope)
        try:
            if is_non_resource(path):
                if method != "GET":
                    raise errors.method_not_allowed(f"the method {method} is not supported")
                req = ApiRequest("get", "", path=path)
            else:
                req = parse_request(self.registry, method, path, query)
            headers = dict(scope["headers"])
            content_type = headers.get(b"content-type", b"").decode("latin-1")
            content_type = content_type.split(";")[0].strip()
            raw = await self._body(receive)
        except errors.ApiError as e:
            await _respond(send, e.code, e.status)
            return
        if req.subresource in ("exec", "portforward"):
            # asked as create whatever the method (a WebSocket's is GET), as Kubernetes
            # 1.35 authorizes it; without an upgrade the server answers what it checked
            req = attrs.evolve(req, verb="create")
        params = req.params
        if req.verb in ("create", "update", "patch") and content_type != APPLY_PATCH:
            # Kubernetes names the manager of a write after its client's User-Agent.
            agent = headers.get(b"user-agent", b"").decode("latin-1").split("/")[0]
            if agent and not (params or {}).get("fieldManager"):
                params = {**(params or {}), "fieldManager": agent[:128]}
        req = attrs.evolve(
            req,
            raw_body=raw,
            params=params,
            accept=headers.get(b"accept", b"").decode("latin-1") if req.path else "",
            content_type=content_type,
            **_caller(scope),
            as_table=b"as=Table" in headers.get(b"accept", b""),
        )
        if req.verb == "watch":
            await self._watch(req, receive, send)
            return
        if req.subresource == "log" and is_true((req.params or {}).get("follow", "")):
            await self._watch(req, receive, send, kind=_TEXT, separator=b"")
            return
        text = METRICS_TYPE if path.rstrip("/") == "/metrics" else _TEXT
        response = await self.client.send(req)
        content = response.content
        if isinstance(content, dict) and content.get("kind") == "APIVersions" and scope["server"]:
            # The address this client reached us at is the one to tell it.
            host, port = scope["server"][:2]
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            cidrs = [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}]
            content = {**content, "serverAddressByClientCIDRs": cidrs}
            response = attrs.evolve(response, content=content)
        await _respond_with(send, response, text)

    async def _body(self, receive: Receive) -> bytes:
        """The body's bytes, at most ``max_body`` (413 above). They are decoded by the
        API server once it knows who sent them (``_bodies.parse``): nobody makes the
        server parse anything before it has authenticated them."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise errors.bad_request("the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                too_large = f"the request is larger than {self.max_body} bytes"
                raise errors.ApiError(errors.status(413, "RequestEntityTooLarge", too_large))
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _watch(
        self, req: ApiRequest, receive: Receive, send: Send,
        kind: bytes = b"application/json", separator: bytes = b"\n",
    ) -> None:  # fmt: skip
        """A stream of chunks until the server ends it or the client goes: watch events
        (one JSON per line), or a followed container log (its bytes as they come)."""
        try:
            async with self.client.watch_request(req) as stream:
                headers = [(b"content-type", kind)]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_until_disconnect, receive, nursery.cancel_scope)
                    while (event := await stream.next_json()) is not None:
                        chunk = {"type": "http.response.body", "body": event + separator}
                        await send(chunk | {"more_body": True})
                    nursery.cancel_scope.cancel()
                await send({"type": "http.response.body", "body": b""})
        except errors.ApiError as e:
            await _respond(send, e.code, e.status)


def _query(scope: dict) -> dict:
    """The query's parameters, the last non-empty value of each, but every ``command``
    (an exec's words, in order, empty ones too) and every ``ports`` (a port-forward's,
    joined with commas, as it may also give them)."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    query: dict = {name: value for name, value in pairs if value}
    commands = [value for name, value in pairs if name == "command"]
    if commands:  # an empty word is a word of the command (sh -c 'x' '' y)
        query["command"] = commands
    ports = [value for name, value in pairs if name == "ports" and value]
    if ports:
        query["ports"] = ",".join(ports)
    return query


def _caller(scope: dict) -> dict:
    """Who the request says it comes from, as ``ApiRequest`` fields: its bearer token
    (from a WebSocket, which a browser cannot give headers, the
    ``base64url.bearer.authorization.k8s.io.<token>`` subprotocol as well), its TLS
    client certificate, whom it asks to impersonate."""
    token = _bearer(dict(scope["headers"]).get(b"authorization", b""))
    prefix = "base64url.bearer.authorization.k8s.io."
    for protocol in scope.get("subprotocols") or []:
        if protocol.startswith(prefix) and not token:
            token = _unbase64url(protocol[len(prefix) :])
    return {"token": token, "client_certificate": PEER_CERTIFICATE.get(),
            "impersonate": _impersonation(scope["headers"])}  # fmt: skip


def _unbase64url(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def _impersonation(headers: list[tuple[bytes, bytes]]) -> dict | None:
    """Who the Impersonate-* headers ask to act as (None: nobody)."""
    asked: dict = {}
    for name, value in headers:
        if not name.startswith(b"impersonate-"):
            continue
        text = value.decode("latin-1")
        what = name[len(b"impersonate-") :].decode("latin-1")
        if what == "user":
            asked["user"] = text
        elif what == "uid":
            asked["uid"] = text
        elif what == "group":
            asked.setdefault("groups", []).append(text)
        elif what.startswith("extra-"):
            key = unquote(what[len("extra-") :])
            asked.setdefault("extra", {}).setdefault(key, []).append(text)
    return asked or None


async def _until_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _bearer(header: bytes) -> str:
    scheme, _, token = header.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def _respond_with(send: Send, response: ApiResponse, text: bytes = _TEXT) -> None:
    """``response`` as it came; a text one (a health check's "ok", the metrics) as
    ``text``."""
    if isinstance(response.content, str):
        await _send(send, response.code, response.content.encode(), text)
        return
    if response.content_type:
        await _send(send, response.code, response.raw, response.content_type.encode())
        return
    data = response.raw or json.dumps(response.content, separators=(",", ":")).encode()
    warnings = [(b"warning", _warning(w)) for w in response.warnings]
    if isinstance(response.content, dict) and response.code in (429, 500, 503, 504):
        # A Status that says when to come back says it in Retry-After too, which
        # client-go honours by retrying (Kubernetes' responsewriters do the same).
        retry = (response.content.get("details") or {}).get("retryAfterSeconds")
        if isinstance(retry, int) and retry > 0:
            warnings.append((b"retry-after", str(retry).encode()))
    kind = b"application/json"
    if isinstance(response.content, dict) and response.content.get("kind") == _DISCOVERY:
        kind = AGGREGATED.encode()  # clients check this exact type before reading it
    await _send(send, response.code, data, kind, extra=warnings)


def _warning(text: str) -> bytes:
    """An HTTP Warning header value, as kube-apiserver writes them (code 299)."""
    return b"299 - " + json.dumps(text).encode()


async def _respond(send: Send, code: int, body: object) -> None:
    if isinstance(body, str):
        await _send(send, code, body.encode(), _TEXT)
        return
    await _send(send, code, json.dumps(body, separators=(",", ":")).encode())


async def _send(send: Send, code: int, data: bytes, kind: bytes = b"application/json",
                extra: list[tuple[bytes, bytes]] = ()) -> None:  # fmt: skip
    headers = [(b"content-type", kind), (b"content-length", str(len(data)).encode()), *extra]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": data})


# The DER certificate the client of this connection presented (b"": none). Hypercorn
# runs each connection in a task of its own and the requests of a connection in tasks it
# starts, so a context variable set when the connection opens is each request's.
PEER_CERTIFICATE: contextvars.ContextVar[bytes] = contextvars.ContextVar(
    "actorkube_peer_certificate", default=b""
)


class _CertificateTCPServer(tcp_server.TCPServer):
    """Hypercorn's connection, which notes the client's certificate before serving it
    (Hypercorn does not give it to the application: its ASGI scope has no TLS
    extension)."""

    async def run(self) -> None:
        if isinstance(self.stream, trio.SSLStream):
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()  # hypercorn's own call is then a no-op
            except (trio.BrokenResourceError, trio.TooSlowError):
                return
            PEER_CERTIFICATE.set(self.stream.getpeercert(binary_form=True) or b"")
        await super().run()


async def serve_http(
    app: HttpFrontEnd,
    host: str = "127.0.0.1",
    port: int = 6443,
    *,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
    task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until cancelled: HTTPS with
    ``tls`` (the serving certificate and key files, ``actorkube.pki``), else plain HTTP
    (kubectl sends no bearer token over plain HTTP). With ``client_ca`` (a PEM file),
    clients may present a certificate it signed (those without one are asked for a
    token). ``task_status.started`` gets the URLs it listens on."""
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's messages go through logging like ours (its default adds a handler of
    # its own, and every message came out twice).
    config.errorlog = logging.getLogger("hypercorn.error")
    if tls is not None:
        config.certfile, config.keyfile = str(tls[0]), str(tls[1])
        if client_ca is not None:
            config.ca_certs = str(client_ca)
            config.verify_mode = ssl.CERT_OPTIONAL
            hypercorn_run.TCPServer = _CertificateTCPServer
    await serve(app, config, task_status=task_status)
