"""Container probes: when each runs, what its results add up to, and the real
network prober (the kubelet's prober and its workers).

Rules of this file:

- A probe's timing is its spec's: first run ``initialDelaySeconds`` after the container
  started, then every ``periodSeconds`` (10); each run may take ``timeoutSeconds`` (1).
  A result counts after ``successThreshold`` (1) successes or ``failureThreshold`` (3)
  failures in a row; until then the last counted result stays.
- Initial results: readiness starts failed (a container is not ready until it proves
  it), liveness successful, startup unknown (neither started nor failed).
- Liveness and readiness probes do not run until the startup probe (if any) has
  succeeded; the startup probe stops once it has.
- ``NetworkProber`` runs exec probes through the runtime, tcpSocket by connecting to
  the pod's IP, httpGet by an HTTP/1.1 GET (status 200-399 is success) with h11. A
  named port is looked up in the container's ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import h11
import trio

from .runtime import ContainerRuntime, CriError, ProbeResult

LIVENESS, READINESS, STARTUP = "liveness", "readiness", "startup"
FIELDS = {LIVENESS: "livenessProbe", READINESS: "readinessProbe", STARTUP: "startupProbe"}


@attrs.define
class ProbeWorker:
    """One probe of one container: its spec and its counted result (None: unknown)."""

    kind: str
    spec: Mapping[str, Any]
    result: bool | None
    last: bool | None = None  # the last run's answer
    run: int = 0  # how many runs in a row gave it
    done: bool = False  # a startup probe that succeeded runs no more

    @classmethod
    def new(cls, kind: str, spec: Mapping[str, Any]) -> ProbeWorker:
        initial = {LIVENESS: True, READINESS: False, STARTUP: None}[kind]
        return cls(kind, spec, result=initial)

    @property
    def initial_delay(self) -> float:
        return float(self.spec.get("initialDelaySeconds") or 0)

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    def record(self, success: bool) -> bool:
        """Count one run's answer; True when the counted result changed."""
        if success == self.last:
            self.run += 1
        else:
            self.last, self.run = success, 1
        field = "successThreshold" if success else "failureThreshold"
        if self.run < int(self.spec.get(field) or (1 if success else 3)):
            return False
        changed = self.result != success
        self.result = success
        if self.kind == STARTUP and success:
            self.done = True
        return changed


def probe_specs(container: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {kind: container[f] for kind, f in FIELDS.items() if isinstance(container.get(f), dict)}


def resolve_port(container: Mapping[str, Any], port: Any) -> int:
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for p in container.get("ports") or ():
        if p.get("name") == port:
            return int(p.get("containerPort", 0))
    raise ValueError(f"port {port!r} is not a number nor a named port of the container")


@attrs.frozen
class NetworkProber:
    """Probes against the real pod IP (see the module rules)."""

    runtime: ContainerRuntime

    async def probe(
        self, container: Mapping[str, Any], container_id: str, spec: Mapping[str, Any],
        pod_ip: str,
    ) -> ProbeResult:  # fmt: skip
        timeout = float(spec.get("timeoutSeconds") or 1)
        try:
            if "exec" in spec:
                command = tuple(str(a) for a in (spec["exec"] or {}).get("command") or ())
                result = await self.runtime.exec_sync(container_id, command, timeout)
                if result.exit_code == 0:
                    return ProbeResult(True)
                out = (result.stdout + result.stderr).decode(errors="replace").strip()
                return ProbeResult(False, f"command {list(command)} exited with "
                                          f"{result.exit_code}: {out}")  # fmt: skip
            with trio.move_on_after(timeout) as scope:
                if "tcpSocket" in spec:
                    return await self._tcp(container, spec["tcpSocket"] or {}, pod_ip)
                if "httpGet" in spec:
                    return await self._http(container, spec["httpGet"] or {}, pod_ip)
                return ProbeResult(False, "probe has no exec, tcpSocket nor httpGet")
            if scope.cancelled_caught:
                return ProbeResult(False, f"probe timed out after {timeout:g}s")
        except (OSError, ValueError, h11.ProtocolError, CriError, trio.BrokenResourceError) as e:
            # A container that exits or goes while it is probed fails its probe.
            return ProbeResult(False, str(e))
        return ProbeResult(False, "probe gave no answer")

    async def _tcp(self, container, action, pod_ip) -> ProbeResult:
        host = action.get("host") or pod_ip
        port = resolve_port(container, action.get("port"))
        stream = await trio.open_tcp_stream(host, port)
        await stream.aclose()
        return ProbeResult(True)

    async def _http(self, container, action, pod_ip) -> ProbeResult:
        host = action.get("host") or pod_ip
        port = resolve_port(container, action.get("port"))
        path = action.get("path") or "/"
        headers = [("Host", f"{host}:{port}"), ("User-Agent", "kube-probe/1.32"),
                   ("Accept", "*/*"), ("Connection", "close")]  # fmt: skip
        for h in action.get("httpHeaders") or ():
            headers.append((str(h.get("name")), str(h.get("value"))))
        conn = h11.Connection(h11.CLIENT)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(conn.send(h11.Request(method="GET", target=path,
                                                        headers=headers)))  # fmt: skip
            await stream.send_all(conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(65536))
                    continue
                if isinstance(event, h11.Response):
                    if 200 <= event.status_code < 400:
                        return ProbeResult(True)
                    return ProbeResult(False, f"HTTP probe failed with statuscode: "
                                              f"{event.status_code}")  # fmt: skip
                if isinstance(event, h11.ConnectionClosed):
                    return ProbeResult(False, "connection closed before a response")
