"""The kubelet's server: what others ask a node for (the kubelet's HTTPS server on port
10250, as an actor): container logs, for the API server's ``pods/log``, commands run
in containers, for ``pods/exec`` (``ExecRequest``, see ``_execsession``), connections
to pods' ports, for ``pods/portforward`` (``PortForwardRequest``), and the
node's resource metrics, for a metrics server (``GetResourceMetrics``, see
``_resourcemetrics``).

Rules of this file:

- ``ContainerLogs`` names the pod (namespace, name) and the container; the server
  finds it among the containers this node's kubelet made (by their labels), the
  newest one, or the one before it with ``previous``. Errors are ``LogsError`` replies
  with an HTTP code and Kubernetes' wording, never failures of the server.
- Without ``follow`` the reply is ``LogsReply`` with the whole (option-filtered) log.
- With ``follow`` the reply is an empty ``LogsReply`` and the log streams to
  ``receiver`` as ``WatchEvent``s of ``stream_id`` (data: the next bytes), ended by
  one without data when the container has exited and everything was sent. Each
  stream is a child actor that pumps one chunk per message, so it notices between
  chunks that its receiver is gone (``Terminated``) and stops; each chunk is asked,
  so a slow receiver holds the stream back instead of its bytes being dropped (for
  ``FOLLOW_TIMEOUT`` seconds a chunk at most: then the stream ends, "did not keep
  up").
- ``ExecRequest`` needs the container running (a ``LogsError`` otherwise); a session
  actor per exec then answers it and streams to its receiver.
- ``PortForwardRequest`` needs a ready sandbox of the pod on this node (a
  ``LogsError`` 404 otherwise); a session actor per client session then answers it
  and carries its connections (see ``_portforward``).
- ``GetResourceMetrics`` is answered with ``ResourceMetrics``: a sample of every
  running container this node's kubelet made (this server is the only one that asks
  the runtime for container stats), or ``ResourceMetricsError`` if the runtime fails.
"""

from __future__ import annotations

import attrs
import trio

from actorkube.actor import (
    Actor,
    ActorError,
    ActorRef,
    AskTimeout,
    Restart,
    Terminated,
    handler,
    message,
)
from actorkube.apiserver import WatchEvent
from actorkube.apiserver._kubeletclient import ContainerLogs, LogsError, LogsReply
from actorkube.apiserver._portforward import PortForwardAccepted, PortForwardRequest
from actorkube.apiserver._remotecommand import ExecAccepted, ExecRequest
from actorkube.metrics._messages import (
    GetResourceMetrics,
    ResourceMetrics,
    ResourceMetricsError,
)

from ._execsession import ExecSession
from ._logs import LogOptions, LogReader, read_all
from ._podstate import CONTAINER_NAME, NODE, POD_NAME, POD_NAMESPACE, POD_UID
from ._portforward import PortForwardSession
from ._resourcemetrics import Sampler
from .runtime import (
    ContainerRuntime,
    ContainerState,
    ContainerStatus,
    CriError,
    NotFound,
    SandboxState,
)

QUIET_CHECK = 1.0  # seconds a follower waits for bytes before it looks at its receiver
FOLLOW_TIMEOUT = 60.0  # seconds a follower waits for its reader to take a chunk


@message(tag="kubelet._Pump")
class _Pump:
    pass


class KubeletServer(Actor):
    """Answers ``ContainerLogs`` and ``GetResourceMetrics`` for the containers of
    ``node`` in ``runtime``."""

    def __init__(self, runtime: ContainerRuntime, node: str) -> None:
        self.runtime = runtime
        self.node = node
        self.sampler = Sampler()

    async def _find(self, msg: ContainerLogs | ExecRequest) -> ContainerStatus | LogsError:
        labels = {NODE: self.node, POD_NAMESPACE: msg.namespace, POD_NAME: msg.pod,
                  CONTAINER_NAME: msg.container}  # fmt: skip
        found = sorted(await self.runtime.list_containers(labels),
                       key=lambda c: (c.config.attempt, c.created_at), reverse=True)  # fmt: skip
        if isinstance(msg, ContainerLogs) and msg.previous:
            if len(found) < 2:
                return LogsError(400, f'previous terminated container "{msg.container}" in '
                                      f'pod "{msg.pod}" not found')  # fmt: skip
            return found[1]
        if not found:
            return LogsError(400, f'container "{msg.container}" in pod "{msg.pod}" is waiting '
                                  "to start: ContainerCreating")  # fmt: skip
        return found[0]

    @handler
    async def on_logs(self, msg: ContainerLogs) -> LogsReply | LogsError:
        """Never a failure of the server: every error is a ``LogsError`` answer."""
        container = await self._find(msg)
        if isinstance(container, LogsError):
            return container
        if not msg.follow:
            try:
                data, _ = await _read_everything(self.runtime, container.id)
            except NotFound:
                return LogsError(404, f'container "{msg.container}" in pod "{msg.pod}" is gone')
            return LogsReply(read_all(data, _options(msg)))
        if msg.receiver is None:
            return LogsError(400, "follow needs a receiver")
        # A stream that fails ends (its receiver is told); it is never started again,
        # which would send the log twice.
        self.spawn(lambda: _LogStream(self.runtime, container.id, msg), restart=Restart.TEMPORARY)
        return LogsReply()

    @handler
    async def on_exec(self, msg: ExecRequest) -> ExecAccepted | LogsError | None:
        """Starts an ``ExecSession``, which answers (see ``_execsession``); never a
        failure of the server."""
        if msg.receiver is None:
            return LogsError(400, "exec needs a receiver")
        container = await self._find(msg)
        if isinstance(container, LogsError):
            return container
        if container.state is not ContainerState.RUNNING:
            return LogsError(400, f'container "{msg.container}" in pod "{msg.pod}" is not '
                                  f"running")  # fmt: skip
        reply = self.defer_reply()
        # A session that fails ends (its receiver is told); it is never started again,
        # which would run the command twice.
        self.spawn(lambda: ExecSession(self.runtime, container.id, msg, reply),
                   restart=Restart.TEMPORARY)  # fmt: skip
        return None

    @handler
    async def on_port_forward(
        self, msg: PortForwardRequest
    ) -> PortForwardAccepted | LogsError | None:
        """Starts a ``PortForwardSession`` for the pod's ready sandbox, which answers
        (see ``_portforward``); never a failure of the server."""
        if msg.receiver is None:
            return LogsError(400, "port-forward needs a receiver")
        labels = {NODE: self.node, POD_NAMESPACE: msg.namespace, POD_NAME: msg.pod}
        ready = [s for s in await self.runtime.list_pod_sandboxes(labels)
                 if s.state is SandboxState.READY
                 and (not msg.uid or s.labels.get(POD_UID) == msg.uid)]  # fmt: skip
        if not ready:
            return LogsError(404, f'pod "{msg.pod}" in namespace "{msg.namespace}" has no '
                                  "running sandbox on this node")  # fmt: skip
        sandbox = max(ready, key=lambda s: s.created_at)
        reply = self.defer_reply()
        self.spawn(lambda: PortForwardSession(self.runtime, sandbox.id, msg, reply),
                   restart=Restart.TEMPORARY)  # fmt: skip
        return None

    @handler
    async def on_resource_metrics(
        self, msg: GetResourceMetrics
    ) -> ResourceMetrics | ResourceMetricsError:
        """Never a failure of the server: a runtime that fails is an error answer."""
        cached = self.sampler.cached(trio.current_time())
        if cached is not None:
            return cached
        try:
            listed = await self.runtime.list_containers({NODE: self.node})
        except CriError as e:
            return ResourceMetricsError(f"the container runtime failed: {e}")
        samples = []
        for container in listed:
            if container.state is not ContainerState.RUNNING:
                continue
            try:
                samples.append((container, await self.runtime.container_stats(container.id)))
            except CriError:  # removed meanwhile, or the runtime closed: not measured
                continue
        return self.sampler.sample(self.node, samples, trio.current_time(),
                                   self.system.clock.now())  # fmt: skip


def _options(msg: ContainerLogs) -> LogOptions:
    return LogOptions(msg.timestamps, msg.since, msg.tail_lines, msg.limit_bytes)


async def _read_everything(runtime: ContainerRuntime, container_id: str) -> tuple[bytes, int]:
    """The log kept so far, and the offset after it."""
    chunks = []
    offset = 0
    while True:
        chunk = await runtime.read_log(container_id, offset)
        if not chunk.data:
            return b"".join(chunks), offset
        chunks.append(chunk.data)
        offset = chunk.next_offset


class _LogStream(Actor):
    """One ``kubectl logs -f`` (see the module rules)."""

    def __init__(self, runtime: ContainerRuntime, container_id: str, msg: ContainerLogs) -> None:
        self.runtime = runtime
        self.container_id = container_id
        self.msg = msg
        self.receiver: ActorRef = msg.receiver
        self.reader = LogReader(attrs.evolve(_options(msg), tail_lines=None))
        self.offset = 0

    async def started(self) -> None:
        self.watch(self.receiver)
        if self.msg.tail_lines is not None:
            # The tail first, then everything written after what it covered.
            try:
                data, self.offset = await _read_everything(self.runtime, self.container_id)
            except CriError as e:
                await self._end(f"the container's log cannot be read: {e}")
                return
            tail = read_all(data, _options(self.msg))
            self.reader.written = len(tail)  # limitBytes counts the tail too
            await self._send(tail)
            if self.reader.exhausted:
                await self._end()
                return
        self.ref.tell(_Pump())

    async def _send(self, data: bytes) -> None:
        if data:
            await self._deliver(WatchEvent(self.msg.stream_id, data))

    async def _end(self, why: str = "") -> None:
        await self._deliver(WatchEvent(self.msg.stream_id, b"", why or "the log ended"))
        self.stop()

    async def _deliver(self, event: WatchEvent) -> None:
        # Asked: answered once the receiver has handed it on, so a slow reader holds the
        # log back and nothing waits in its mailbox, which (a remote one) drops what
        # does not fit. A receiver that is gone, or whose reader took nothing for
        # FOLLOW_TIMEOUT seconds, stops the stream (bounded: a reply lost on the way
        # would otherwise hold this follower for as long as its peer seems up).
        try:
            await self.receiver.ask(event, timeout=FOLLOW_TIMEOUT)
        except AskTimeout:
            self.receiver.tell(WatchEvent(self.msg.stream_id, b"",
                                          "the log's reader did not keep up"))  # fmt: skip
            self.stop()
        except ActorError:
            self.stop()

    @handler
    async def on_pump(self, msg: _Pump) -> None:
        try:
            chunk = await self.runtime.read_log(self.container_id, self.offset)
            if chunk.data:
                self.offset = chunk.next_offset
                await self._send(self.reader.feed(chunk.data))
                if self.reader.exhausted:
                    await self._end()
                    return
                self.ref.tell(msg)
                return
            status = await self.runtime.container_status(self.container_id)
            if status.state is ContainerState.EXITED:
                # Nothing past the offset and nothing more will come.
                await self._end()
                return
            with trio.move_on_after(QUIET_CHECK):
                await self.runtime.wait_log(self.container_id, self.offset)
        except CriError as e:
            await self._end(f"the container's log cannot be read: {e}")
            return
        self.ref.tell(msg)

    @handler
    async def on_terminated(self, msg: Terminated) -> None:
        self.stop()
