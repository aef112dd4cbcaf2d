"""A small HTTPS client of the Kubernetes REST API, for what must happen before a
process can use the actor transport: a node joining with a bootstrap token.

Rules of this file:

- The same verbs as ``ApiClient`` for what a join needs (``get``, ``create``,
  ``watch``), over HTTP/1.1 (h11) on trio's TLS streams; one connection per request
  (a join makes a handful), and a watch holds its own for as long as it is open.
- TLS is checked against ``ca`` (PEM) alone, not the system's trust store, unless
  ``ca`` is None, which is only for the first, anonymous read of cluster-info (no
  credentials may be sent so), whose contents are then checked by their signature
  and the CA pin instead (kubeadm's token discovery). A client certificate
  (``client_cert``, ``client_key``: PEM) or a bearer ``token`` authenticates.
- A non-2xx answer raises ``ApiError`` with the server's Status, as ``ApiClient`` does;
  a connection that fails raises ``OSError``; an answer that is not JSON, or a body
  over ``MAX_BODY``, raises ``ApiError`` 502.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import h11
import trio

from actorkube.apiserver import ApiError
from actorkube.apiserver._errors import status

from ._client import preferred_version

MAX_BODY = 16 << 20
_READ = 65536


def resource_path(resource: str, *, namespace: str = "", name: str = "", group: str = "") -> str:
    """The URL path of a resource, a collection or one object."""
    version = preferred_version(group)
    base = f"/api/{version}" if not group else f"/apis/{group}/{version}"
    if namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{resource}"
    return f"{base}/{name}" if name else base


class HttpsClient:
    """The API server at ``server`` (``https://host:port``), see the module rules."""

    def __init__(self, server: str, *, ca: bytes | None, token: str = "",
                 client_cert: bytes = b"", client_key: bytes = b"",
                 timeout: float = 30.0) -> None:  # fmt: skip
        url = urllib.parse.urlsplit(server)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"{server!r} is not an https:// URL")
        self.host, self.port = url.hostname, url.port or 443
        self.token = token
        self.timeout = timeout
        # Only the cluster's CA, never the system's trust store (as client-go trusts
        # certificate-authority-data alone): a server with a certificate some public CA
        # signed for the same name must not get the token.
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if ca is None:
            if token or client_cert:
                raise ValueError("credentials are only sent to a server checked against "
                                 "the cluster's CA")  # fmt: skip
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE
        else:
            self.context.load_verify_locations(cadata=ca.decode())
        if client_cert:
            _load_chain(self.context, client_cert, client_key)

    async def status_of(self, path: str) -> int:
        """The HTTP status of ``GET path`` (a health check: ``/readyz``)."""
        with trio.fail_after(self.timeout), _as_os_errors():
            stream, conn = await self._open("GET", path)
            try:
                response = await _next_event(stream, conn)
            finally:
                await trio.aclose_forcefully(stream)
        if not isinstance(response, h11.Response):
            raise _bad_gateway("no response")
        return response.status_code

    async def get(self, resource: str, name: str, *, namespace: str = "",
                  group: str = "") -> dict:  # fmt: skip
        return await self._call("GET", resource_path(resource, namespace=namespace, name=name,
                                                     group=group))  # fmt: skip

    async def create(self, resource: str, body: dict, *, namespace: str = "",
                     group: str = "") -> dict:  # fmt: skip
        path = resource_path(resource, namespace=namespace, group=group)
        return await self._call("POST", path, body)

    @asynccontextmanager
    async def watch(self, resource: str, *, namespace: str = "", group: str = "",
                    field_selector: str = "", resource_version: str = "",
                    ) -> AsyncIterator[AsyncIterator[dict]]:  # fmt: skip
        """The watch's events (``{"type", "object"}``) until the server ends it."""
        query = {"watch": "1", "fieldSelector": field_selector,
                 "resourceVersion": resource_version}  # fmt: skip
        path = resource_path(resource, namespace=namespace, group=group)
        path += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        with _as_os_errors():
            stream, conn = await self._open("GET", path)
        try:
            response = await _next_event(stream, conn)
            if not isinstance(response, h11.Response):
                raise _bad_gateway("no response to the watch")
            if not 200 <= response.status_code < 300:
                raise ApiError(_json(await _body(stream, conn), response.status_code))
            yield _events(stream, conn)
        finally:
            await trio.aclose_forcefully(stream)

    async def _call(self, method: str, path: str, body: Any = None) -> dict:
        with trio.fail_after(self.timeout), _as_os_errors():
            stream, conn = await self._open(method, path, body)
            try:
                response = await _next_event(stream, conn)
                if not isinstance(response, h11.Response):
                    raise _bad_gateway("no response")
                answer = _json(await _body(stream, conn), response.status_code)
            finally:
                await trio.aclose_forcefully(stream)
        if not 200 <= response.status_code < 300:
            raise ApiError(answer)
        return answer

    async def _open(self, method: str, path: str, body: Any = None):
        stream = await trio.open_ssl_over_tcp_stream(self.host, self.port,
                                                     ssl_context=self.context)  # fmt: skip
        conn = h11.Connection(h11.CLIENT)
        data = json.dumps(body).encode() if body is not None else b""
        headers = [("Host", f"{self.host}:{self.port}"), ("Accept", "application/json"),
                   ("User-Agent", "actorkube-join"), ("Content-Length", str(len(data)))]
        if body is not None:
            headers.append(("Content-Type", "application/json"))
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        try:
            await stream.send_all(conn.send(h11.Request(method=method, target=path,
                                                        headers=headers)))  # fmt: skip
            if data:
                await stream.send_all(conn.send(h11.Data(data=data)))
            await stream.send_all(conn.send(h11.EndOfMessage()))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream, conn


@contextmanager
def _as_os_errors() -> Iterator[None]:
    """A connection that breaks (reset mid-handshake, closed under a request) is an
    ``OSError``, as the module promises, whichever layer of trio's streams saw it."""
    try:
        yield
    except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
        raise ConnectionError(f"the connection broke: {e}") from e


def _load_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    # ssl reads a certificate chain from files only: a private directory, gone after.
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem")
        for path, data in ((cert_file, cert), (key_file, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        context.load_cert_chain(cert_file, key_file)


async def _next_event(stream: trio.abc.Stream, conn: h11.Connection) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            raise _bad_gateway(f"malformed HTTP from the server: {e}") from None
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(_READ))


async def _body(stream: trio.abc.Stream, conn: h11.Connection) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise _bad_gateway(f"an answer over {MAX_BODY} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return b"".join(chunks)


async def _events(stream: trio.abc.Stream, conn: h11.Connection) -> AsyncIterator[dict]:
    """A watch's body: one JSON event per line."""
    pending = b""
    while True:
        event = await _next_event(stream, conn)
        if isinstance(event, h11.Data):
            pending += bytes(event.data)
            if len(pending) > MAX_BODY:
                raise _bad_gateway(f"a watch event over {MAX_BODY} bytes")
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield _json(line, 200)
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return


def _json(data: bytes, code: int) -> dict:
    try:
        value = json.loads(data)
    except ValueError:
        raise _bad_gateway(f"a {code} answer that is not JSON: {data[:200]!r}") from None
    if not isinstance(value, dict):
        raise _bad_gateway(f"a {code} answer that is not a JSON object")
    return value


def _bad_gateway(why: str) -> ApiError:
    return ApiError(status(502, "BadGateway", why))
