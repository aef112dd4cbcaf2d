"""The kubelet: registers its node, keeps its Lease and status, and runs the pods bound
to it through a container runtime.

Rules of this file:

- Registration first (create the Node, or bring an existing one's labels, taints and
  annotations up to date: ``_nodestatus.reregistered``), retried with backoff; then,
  side by side: the Lease renewed every ``lease_duration / 4`` seconds (10 s of 40),
  the node status checked every ``status_update`` seconds and written when it changed
  or every ``status_report`` seconds, an informer on the pods with ``spec.nodeName`` =
  this node, an informer on Services (for the containers' environment), the runtime's
  container events, and the timers (probes, backoff expiries, periodic resync).
- The runtime runs on its own (its owner starts its ``run``, as containerd runs beside
  the kubelet): a kubelet that restarts finds its containers still running.
- One worker per pod. An informer event, a runtime event or a timer only marks the
  pod's worker dirty and wakes it; the worker syncs the pod, once per wake-up however
  many events came, in its own task, and no two syncs of one pod overlap. The task ends
  when nothing is left to do; timers wake it again.
- A sync (``_sync``): admission the first time a pod is seen (a pod that does not fit
  is Failed with OutOf<resource>); a pod that is being deleted, gone from the API, or
  terminal is terminated (its containers stopped with the pod's grace period, SIGTERM
  then SIGKILL, then its sandbox); otherwise ``compute_actions`` decides and the worker
  carries it out, holding each restart back by the crash-loop backoff. Then the status
  is written (status subresource, full status, optimistic concurrency; on a conflict
  the pod is read again).
- A pod with a deletionTimestamp, once its containers have stopped, is deleted by the
  kubelet with grace period 0 (uid precondition), as Kubernetes does; what the runtime
  held for it is removed then, and its volumes.
- The kubelet touches only sandboxes and containers labelled with its node
  (``kubelet.actorkube.io/node``): what others made in the same runtime is left alone.
  Sandboxes of pods the API no longer has (the kubelet was down when they were
  deleted) are stopped and removed at start.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.apiserver import ApiError
from actorkube.apiserver._admission import TOKEN_MOUNT_PATH, TOKEN_VOLUME_PREFIX
from actorkube.client import ApiClient, Informer
from actorkube.scheduler._nodeinfo import claims_of
from actorkube.scheduler._resources import amount

from ._backoff import Backoff
from ._dnsconfig import resolv_conf
from ._env import ConfigError, command_line, container_env, referenced_sources
from ._nodestatus import (
    LEASE_NAMESPACE,
    NodeConfig,
    admit,
    lease_object,
    node_object,
    node_status,
    reregistered,
    status_changed,
)
from ._podstate import (
    CONTAINER_HASH,
    CONTAINER_NAME,
    INIT,
    NODE,
    POD_NAME,
    POD_NAMESPACE,
    POD_UID,
    RESTART_COUNT,
    PodActions,
    PodRuntime,
    compute_actions,
    container_hash,
)
from ._podstatus import TERMINAL, pod_status
from ._probes import READINESS, STARTUP, NetworkProber, ProbeWorker, probe_specs
from ._server import KubeletServer
from ._tokens import TokenCache
from ._volumes import mounts, pod_dir, prepare, remove, token_seconds, token_source_key
from .runtime import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    CriError,
    ImagePullError,
    Mount,
    NotFound,
    PodSandboxConfig,
    PortMapping,
    ProbeResult,
    Resources,
    SandboxState,
)

log = logging.getLogger("actorkube.node")

RESOLV = "/etc/resolv.conf"
LEASE_JITTER = 0.04  # of the renew interval, as client-go's lease controller


@attrs.frozen
class KubeletConfig:
    """The kubelet's configuration (KubeletConfiguration's names, in seconds)."""

    node: NodeConfig
    root_dir: Path | None = None  # None: volumes are not written (simulated runtime)
    lease_duration: int = 40
    status_update: float = 10.0  # nodeStatusUpdateFrequency
    status_report: float = 300.0  # nodeStatusReportFrequency
    sync_frequency: float = 60.0  # syncFrequency: every pod is synced this often
    image_backoff: tuple[float, float] = (10.0, 300.0)
    crash_backoff: tuple[float, float] = (10.0, 300.0)
    cluster_dns: tuple[str, ...] = ()  # clusterDNS: the pods' nameservers
    cluster_domain: str = "cluster.local"  # clusterDomain


@message(tag="kubelet._Run")
class _Run:
    pass


class Kubelet(Actor):
    """The kubelet of one node (see the module rules). ``server`` is the API server;
    ``prober`` answers tcpSocket/httpGet probes (the runtime's own ``probe_network``
    when it has one, as the simulated runtime does; else the real network)."""

    def __init__(
        self,
        server: ActorRef,
        runtime: ContainerRuntime,
        config: KubeletConfig,
        *,
        token: str = "",
        certificate: bytes = b"",
    ) -> None:
        self.server = server
        self.runtime = runtime
        self.config = config
        self.token = token
        self.certificate = certificate  # a joined node's client certificate (DER)
        self.state: KubeletState | None = None

    async def started(self) -> None:
        # The server answers the API server (logs) while this actor runs the node.
        name = self.config.node.name
        self.kubelet_server = self.spawn(lambda: KubeletServer(self.runtime, name),
                                         name=f"kubelet-server-{name}")  # fmt: skip
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        client = ApiClient(self.system, self.server, token=self.token,
                           certificate=self.certificate)  # fmt: skip
        self.state = KubeletState(client, self.runtime, self.config, self.system.clock.now,
                                  server_address=str(self.kubelet_server.address))  # fmt: skip
        await self.state.run()


@attrs.define
class _Worker:
    uid: str
    pod: dict
    gone: bool = False  # deleted from the API
    admitted: bool = False
    rejected: bool = False
    dirty: bool = True
    busy: bool = False
    finished: bool = False  # terminated, nothing more to do but keep the status
    last_status: dict | None = None
    reasons: dict[str, tuple[str, str]] = attrs.field(factory=dict)
    probes: dict[str, dict[str, ProbeWorker]] = attrs.field(factory=dict)  # by container id
    names: dict[str, str] = attrs.field(factory=dict)  # container id -> container name
    pull_failed: dict[str, float] = attrs.field(factory=dict)  # container name -> when
    resync_pending: bool = False  # a periodic resync is due
    settled: tuple | None = None  # the inputs of the last sync that had nothing to do
    read: tuple = (None, None)  # (the pod object, what it asks of the node)

    def requests(self) -> Mapping[str, int]:
        """What the pod asks of the node (the scheduler's claims), read again only when
        the pod object changed: admission sums it over every running pod for each new
        one, and a pod's object changes a few times in its life (its status writes)."""
        pod, found = self.read
        if pod is not self.pod:
            found = claims_of(self.pod)[0]
            self.read = (self.pod, found)
        return found


class KubeletState:
    """The kubelet's running state (see the module rules)."""

    def __init__(self, client: ApiClient, runtime: ContainerRuntime, config: KubeletConfig,
                 now, *, server_address: str = "") -> None:  # fmt: skip
        self.client = client
        self.runtime = runtime
        self.config = config
        self.node = config.node
        self.now = now
        self.server_address = server_address
        self.workers: dict[str, _Worker] = {}
        self.crash = Backoff(*config.crash_backoff)
        self.tokens = TokenCache()  # pods' service-account tokens
        # The ConfigMaps and Secrets pods read, as last read: (namespace, kind, name).
        self.last_sources: dict[tuple[str, str, str], dict] = {}
        self.pulls = Backoff(*config.image_backoff)
        self.prober = (runtime if hasattr(runtime, "probe_network") else None)
        self.network_prober = NetworkProber(runtime)
        self.node_uid = ""
        self._nursery: trio.Nursery | None = None
        self.services: Informer | None = None
        self.sandbox_uids: dict[str, str] = {}  # sandbox id -> pod uid
        self._lease: dict | None = None  # the Lease as the last renewal left it
        self._status_checked: tuple | None = None  # (node, images) last found unchanged
        self._host_resolv = _read(RESOLV) if config.root_dir is not None else ""
        self.syncs = 0
        self.registered = trio.Event()
        # The periodic loops (Lease, node status) sleep on the actor system's timer
        # task: thousands of nodes' sleeps cost a quarter less there, and make nothing
        # for the collector to scan (see TimerService.sleep_until). The pods' timers
        # (resyncs, backoffs, probes) are calls on it too: a heap entry each, where a
        # timer task per kubelet cost a cancel scope and an event per wake-up.
        self.sleep = client.system.sleep
        self.call_later = client.system.call_later

    # --- running ----------------------------------------------------------------------

    async def run(self) -> None:
        pods = Informer(self.client, "pods", field_selector=f"spec.nodeName={self.node.name}")
        node = Informer(self.client, "nodes", field_selector=f"metadata.name={self.node.name}")
        self.services = Informer(self.client, "services")
        pods.add_handler(self._on_pod, self._on_pod_update, self._on_pod_gone)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._register()
                await nursery.start(self.services.run)
                await nursery.start(node.run)
                await nursery.start(pods.run)
                await self._clean_orphans(pods)
                nursery.start_soon(self._lease_loop)
                nursery.start_soon(self._status_loop, node)
                nursery.start_soon(self._runtime_events)
                self.registered.set()
        finally:
            self._nursery = None  # the pods' timers still due find the kubelet gone

    async def _retrying(self, what: str, call) -> Any:
        delay = 0.2
        while True:
            try:
                return await call()
            except ApiError as e:
                log.warning("kubelet %s: %s failed (%s); retrying", self.node.name, what, e)
            await trio.sleep(delay)
            delay = min(delay * 2, 7.0)  # the kubelet's registration backoff caps at 7 s

    async def _register(self) -> None:
        wanted = node_object(self.node, self.server_address)

        async def create() -> dict:
            try:
                return await self.client.create("nodes", wanted)
            except ApiError as e:
                if e.code != 409:
                    raise
            current = await self.client.get("nodes", self.node.name)
            return await self.client.update(
                "nodes", reregistered(self.node, current, self.server_address))

        node = await self._retrying("registering the node", create)
        self.node_uid = node["metadata"].get("uid", "")
        await self._write_node_status(node, force=True)

    async def _lease_loop(self) -> None:
        every = self.config.lease_duration / 4
        while True:
            await self._retrying("renewing the lease", self._renew)
            # Up to 4% later, as client-go's lease controller (JitterUntil, 0.04): nodes
            # that joined together drift apart instead of renewing in one wave.
            await self.sleep(every * (1 + LEASE_JITTER * random.random()))

    async def _renew(self) -> None:
        """Renew the node's Lease: an update of the copy from the last renewal, as
        client-go's lease controller does (a read only when that copy is stale)."""
        group, ns = "coordination.k8s.io", LEASE_NAMESPACE
        wanted = lease_object(self.node.name, self.node_uid, self.config.lease_duration,
                              self.now())  # fmt: skip
        if self._lease is None:
            try:
                self._lease = await self.client.get("leases", self.node.name, namespace=ns,
                                                    group=group)  # fmt: skip
            except ApiError as e:
                if e.code != 404:
                    raise
                self._lease = await self.client.create("leases", wanted, namespace=ns,
                                                       group=group)  # fmt: skip
                return
        body = {**self._lease, "spec": {**(self._lease.get("spec") or {}), **wanted["spec"]}}
        try:
            self._lease = await self.client.update("leases", body, namespace=ns, group=group)
        except ApiError as e:
            if e.code in (404, 409):
                self._lease = None  # read (or make) it again, at once
                await self._renew()
                return
            raise

    async def _status_loop(self, node: Informer) -> None:
        """Every ``status_update`` seconds, the node's status as it would be written now;
        written when it says something new, or when ``status_report`` has passed."""
        last_report = trio.current_time()
        while True:
            await self.sleep(self.config.status_update)
            current = node.get(self.node.name)
            if current is None:
                continue  # deleted: the kubelet registers again when it restarts
            force = trio.current_time() - last_report >= self.config.status_report
            try:
                if await self._write_node_status(current, force=force):
                    last_report = trio.current_time()
            except (ApiError, CriError) as e:
                log.warning("kubelet %s: node status: %s", self.node.name, e)

    async def _write_node_status(self, node: dict, *, force: bool) -> bool:
        images = [{"names": list(i.names), "sizeBytes": i.size_bytes}
                  for i in await self.runtime.list_images()]  # fmt: skip
        # Whether the status says something new depends on the node as read and the
        # images, not on the time (heartbeats aside): a node checked unchanged with these
        # is unchanged again (5,000 nodes check every 10 s).
        if not force and (node, images) == self._status_checked:
            return False
        status = node_status(self.node, node.get("status"), self.now(),
                             runtime_version=f"{self.runtime.name}://0.1.0",
                             images=images)  # fmt: skip
        if not force and not status_changed(node.get("status"), status):
            self._status_checked = (node, images)
            return False
        node = {**node, "status": status}

        async def write() -> bool:
            try:
                await self.client.update_status("nodes", node)
            except ApiError as e:
                if e.code != 409:
                    raise
                return False  # someone else wrote the node: the next round uses their copy
            return True

        return await self._retrying("writing the node status", write)

    # --- events into workers -------------------------------------------------------------

    def _on_pod(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is None:
            worker = self.workers[uid] = _Worker(uid, pod)
        else:
            worker.pod = pod
        self._kick(uid)

    def _on_pod_update(self, old: dict, new: dict) -> None:
        # The kubelet's own status writes come back as updates: only a change of what
        # the kubelet acts on (spec, labels, annotations, deletion) is worth a sync, as
        # the kubelet's pod config source decides.
        worker = self.workers.get(new["metadata"].get("uid", ""))
        if worker is not None and _sync_view(old) == _sync_view(new):
            worker.pod = new
            return
        self._on_pod(new)

    def _on_pod_gone(self, pod: dict) -> None:
        uid = pod["metadata"].get("uid", "")
        worker = self.workers.get(uid)
        if worker is not None:
            worker.gone = True
            self._kick(uid)

    def _kick(self, uid: str) -> None:
        worker = self.workers.get(uid)
        if worker is None:
            return
        worker.dirty = True
        if not worker.busy and self._nursery is not None:
            worker.busy = True
            self._nursery.start_soon(self._work, worker)

    async def _work(self, worker: _Worker) -> None:
        try:
            while worker.dirty:
                worker.dirty = False
                try:
                    await self._sync(worker)
                except (CriError, ApiError, OSError) as e:
                    log.warning("kubelet %s: sync of pod %s: %s", self.node.name,
                                _pod_name(worker.pod), e)  # fmt: skip
                    self._after(1.0, worker.uid)
                except Exception:
                    # A bug in one pod's sync must not stop the node's other pods: it
                    # is logged whole, and the pod is tried again later.
                    log.exception("kubelet %s: sync of pod %s failed", self.node.name,
                                  _pod_name(worker.pod))  # fmt: skip
                    self._after(10.0, worker.uid)
        finally:
            worker.busy = False

    def _after(self, delay: float, uid: str, what: str = "sync", container: str = "") -> None:
        """In ``delay`` seconds: sync the pod ``uid`` again (``sync``; ``resync``: the
        periodic one), or run its container's probe ``what``."""
        # A partial, not a closure: it waits up to 90 s (a resync), and a lambda's
        # function and four cells outlived the young collections, for every pod.
        self.call_later(delay, functools.partial(self._due, uid, what, container))

    def _due(self, uid: str, what: str, container: str) -> None:
        if self._nursery is None:
            return  # the kubelet stopped
        try:
            if what == "resync":
                worker = self.workers.get(uid)
                if worker is not None:
                    worker.resync_pending = False
                self._kick(uid)
            elif what == "sync":
                self._kick(uid)
            else:
                self._nursery.start_soon(self._probe, uid, container, what)
        except RuntimeError:
            pass  # the kubelet's nursery closed and ``run`` has not returned yet: stopped

    async def _runtime_events(self) -> None:
        async for event in self.runtime.events():
            uid = self.sandbox_uids.get(event.sandbox_id)
            if uid is not None:
                self._kick(uid)

    async def _clean_orphans(self, pods: Informer) -> None:
        """Sandboxes of this node whose pod the API no longer has go (see the rules)."""
        known = {p["metadata"].get("uid") for p in pods.list()}
        for sandbox in await self.runtime.list_pod_sandboxes({NODE: self.node.name}):
            uid = sandbox.labels.get(POD_UID, "")
            self.sandbox_uids[sandbox.id] = uid
            if uid in known:
                continue
            try:
                labels = {POD_UID: uid, NODE: self.node.name}
                for c in await self.runtime.list_containers(labels):
                    await self.runtime.stop_container(c.id, 0)
                    with contextlib.suppress(NotFound):  # gone meanwhile: as wanted
                        await self.runtime.remove_container(c.id)
                await self.runtime.stop_pod_sandbox(sandbox.id)
                with contextlib.suppress(NotFound):
                    await self.runtime.remove_pod_sandbox(sandbox.id)
            except CriError as e:  # left for the next start of the kubelet
                log.warning("kubelet %s: removing the orphaned pod %s: %s", self.node.name,
                            uid, e)  # fmt: skip

    # --- one pod's sync ------------------------------------------------------------------

    async def _pod_runtime(self, uid: str) -> PodRuntime:
        labels = {POD_UID: uid, NODE: self.node.name}
        return PodRuntime.of(await self.runtime.list_pod_sandboxes(labels),
                             await self.runtime.list_containers(labels))  # fmt: skip

    def _running_pods(self, but: str) -> list[_Worker]:
        return [w for w in self.workers.values()
                if w.uid != but and w.admitted and not w.rejected and not w.gone
                and (w.pod.get("status") or {}).get("phase") not in TERMINAL]  # fmt: skip

    async def _sync(self, worker: _Worker) -> None:
        self.syncs += 1
        pod = worker.pod
        if not worker.admitted and not worker.gone:
            worker.admitted = True
            refusal = None
            if (pod.get("status") or {}).get("phase") not in TERMINAL:
                refusal = admit(pod, self._running_pods(worker.uid), self.node.allocatable(),
                                _Worker.requests)  # fmt: skip
            if refusal is not None:
                worker.rejected = True
                failed = {**(pod.get("status") or {}), "phase": "Failed",
                          "reason": refusal[0], "message": refusal[1]}  # fmt: skip
                await self._write_status(worker, failed)
                return
        meta = pod.get("metadata") or {}
        if worker.rejected and not worker.gone and not meta.get("deletionTimestamp"):
            return
        runtime = await self._pod_runtime(worker.uid)
        # Probes of containers that are no longer running stop.
        running = {c.id for c in runtime.running()}
        for cid in [cid for cid in worker.probes if cid not in running]:
            del worker.probes[cid]
        phase = (pod.get("status") or {}).get("phase")
        if worker.gone or meta.get("deletionTimestamp") or phase in TERMINAL:
            await self._terminate(worker, runtime)
            return
        await self._refresh_volumes(pod)
        # What the actions and the status are made of. The same as when the last sync
        # settled (nothing to do, its status written): they would come out the same
        # (both are functions of these), so the periodic resync of a steady pod stops
        # here. A pod's echo of its own status write is new content, once.
        inputs = (_version(pod), runtime, self._probe_view(worker),
                  tuple(worker.reasons.items()))  # fmt: skip
        if inputs != worker.settled:
            worker.settled = None
            actions = compute_actions(pod, runtime, self._probe_results(worker))
            if not actions.none:  # else the runtime as read is the runtime now
                await self._carry_out(worker, actions, runtime)
                runtime = await self._pod_runtime(worker.uid)
            status = self._status(worker, runtime)
            written = await self._write_status(worker, status)
            if status["phase"] in TERMINAL:
                self._kick(worker.uid)  # stop the sandbox now that nothing will run again
                return
            if actions.none and written:
                worker.settled = inputs
        if self.config.sync_frequency and not worker.resync_pending:
            # Every pod is looked at again now and then (the kubelet's syncFrequency,
            # with its jitter): what no event announces (an image that appeared, a
            # changed ConfigMap of a volume, a status write that lost) is caught up.
            # One pending resync per pod, however many syncs ran meanwhile.
            worker.resync_pending = True
            delay = self.config.sync_frequency * (1 + 0.5 * random.random())
            self._after(delay, worker.uid, "resync")

    async def _refresh_volumes(self, pod: dict) -> None:
        """Rewrite the pod's configMap, secret, downwardAPI and projected volumes, so
        that running containers see updates and fresh tokens (a missing source is the
        container start's to report)."""
        kinds = ("configMap", "secret", "downwardAPI", "projected")
        volumes = (pod.get("spec") or {}).get("volumes") or ()
        if self.config.root_dir is None or not any(k in v for v in volumes for k in kinds):
            return
        with contextlib.suppress(ConfigError, ApiError):  # the files stay as they are
            prepare(self.config.root_dir, pod, await self._sources(pod))

    @staticmethod
    def _probe_view(worker: _Worker) -> tuple:
        """Each probe's result and (startup) whether it is done: what of the probes
        the pod's actions and status depend on."""
        return tuple((cid, kind, w.result, w.done) for cid, probes in worker.probes.items()
                     for kind, w in probes.items())  # fmt: skip

    def _probe_results(self, worker: _Worker) -> dict[str, dict[str, bool]]:
        return {cid: {kind: w.result for kind, w in probes.items()}
                for cid, probes in worker.probes.items()}  # fmt: skip

    def _status(self, worker: _Worker, runtime: PodRuntime, *, terminal: bool = False) -> dict:
        ready, started = {}, {}
        for cid, probes in worker.probes.items():
            if READINESS in probes:
                ready[cid] = probes[READINESS].result
            if STARTUP in probes:
                started[cid] = probes[STARTUP].done
        return pod_status(worker.pod, runtime, runtime_name=self.runtime.name,
                          host_ip=self.node.ip, now=self.now(), ready=ready,
                          started=started, reasons=worker.reasons,
                          terminal=terminal)  # fmt: skip

    async def _write_status(self, worker: _Worker, status: dict) -> bool:
        """Write the pod's status, unless it is the one last written; True when it is the
        last written (now or before)."""
        if worker.gone:
            return False
        if status == worker.last_status:
            return True
        pod = worker.pod
        for _ in range(5):
            body = {**pod, "status": status}
            try:
                worker.pod = await self.client.update_status(
                    "pods", body, namespace=pod["metadata"].get("namespace", "")
                )
                worker.last_status = status
                return True
            except ApiError as e:
                if e.code == 404:
                    return False
                if e.code != 409:
                    raise
            pod = await self.client.get("pods", pod["metadata"]["name"],
                                        namespace=pod["metadata"].get("namespace", ""))  # fmt: skip
            if pod["metadata"].get("uid") != worker.uid:
                return False
            worker.pod = pod
            ours = {x.get("type") for x in status.get("conditions") or ()}
            kept = [c for c in (pod.get("status") or {}).get("conditions") or ()
                    if c.get("type") not in ours]  # fmt: skip
            status = {**status, "conditions": kept + status.get("conditions", [])}
        return False

    def _grace(self, pod: dict) -> float:
        meta = pod.get("metadata") or {}
        grace = meta.get("deletionGracePeriodSeconds")
        if grace is None:
            grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
        return float(grace or 0)

    async def _stop(self, container_id: str, grace: float) -> None:
        """Stop one container; a runtime error is logged, not raised, so that the others
        of the pod are stopped all the same (the next sync tries again)."""
        try:
            await self.runtime.stop_container(container_id, grace)
        except CriError as e:
            log.warning("kubelet %s: stopping container %s: %s", self.node.name,
                        container_id, e)  # fmt: skip

    async def _kill_pod(self, worker: _Worker, runtime: PodRuntime, grace: float) -> None:
        async with trio.open_nursery() as n:
            for c in runtime.running():
                n.start_soon(self._stop, c.id, grace)
        for s in runtime.sandboxes:
            if s.state is SandboxState.READY:
                await self.runtime.stop_pod_sandbox(s.id)
        worker.probes.clear()

    async def _terminate(self, worker: _Worker, runtime: PodRuntime) -> None:
        pod = worker.pod
        await self._kill_pod(worker, runtime, self._grace(pod))
        runtime = await self._pod_runtime(worker.uid)
        meta = pod.get("metadata") or {}
        if not worker.gone and not worker.rejected:
            deleting = bool(meta.get("deletionTimestamp"))
            await self._write_status(worker, self._status(worker, runtime, terminal=deleting))
        if worker.gone or meta.get("deletionTimestamp"):
            if not worker.gone:
                try:
                    await self.client.delete("pods", meta["name"],
                                             namespace=meta.get("namespace", ""),
                                             grace_period=0, uid=worker.uid)  # fmt: skip
                except ApiError as e:
                    if e.code not in (404, 409):
                        raise
            for c in runtime.containers:
                with contextlib.suppress(NotFound):
                    await self.runtime.remove_container(c.id)
            for sandbox in runtime.sandboxes:
                with contextlib.suppress(NotFound):
                    await self.runtime.remove_pod_sandbox(sandbox.id)
                self.sandbox_uids.pop(sandbox.id, None)
            if self.config.root_dir is not None:
                remove(self.config.root_dir, worker.uid)
            self.crash.forget(worker.uid)
            self.pulls.forget(worker.uid)
            self.tokens.forget(worker.uid)
            if worker.gone:
                self.workers.pop(worker.uid, None)

    async def _carry_out(self, worker: _Worker, actions: PodActions, runtime: PodRuntime) -> None:
        pod = worker.pod
        sandbox_id = actions.sandbox_id
        if actions.kill_pod:
            await self._kill_pod(worker, runtime, self._grace(pod))
        if actions.create_sandbox:
            config = self._sandbox_config(pod, actions.attempt)
            sandbox_id = await self.runtime.run_pod_sandbox(config)
            self.sandbox_uids[sandbox_id] = worker.uid
        if not sandbox_id:
            return
        if actions.create_sandbox:
            # A new sandbox runs every init container again: the old ones go
            # (Kubernetes' purgeInitContainers).
            for c in runtime.containers:
                if c.labels.get(INIT) and c.state is not ContainerState.RUNNING:
                    with contextlib.suppress(NotFound):
                        await self.runtime.remove_container(c.id)
        for kill in actions.kill:
            await self._stop(kill.container_id, self._grace(pod))
            worker.probes.pop(kill.container_id, None)
        sandbox_status = await self.runtime.pod_sandbox_status(sandbox_id)
        sandbox = sandbox_status.config
        # The containers' environment and downward API read status.podIP and hostIP,
        # which the API has once this sync's status is written. The pod may have
        # changed while containers were stopped: the live copy is the one to extend.
        ip = sandbox_status.ip
        live = worker.pod
        status = {**(live.get("status") or {}), "podIP": ip, "podIPs": [{"ip": ip}],
                  "hostIP": self.node.ip}  # fmt: skip
        worker.pod = {**live, "status": status}
        for name, init in [(actions.next_init, True)] * bool(actions.next_init) + [
            (name, False) for name in actions.start
        ]:
            if worker.gone or (worker.pod.get("metadata") or {}).get("deletionTimestamp"):
                return  # deleted meantime: the next sync stops the pod instead
            await self._start(worker, sandbox_id, sandbox, name, init=init)

    def _sandbox_config(self, pod: dict, attempt: int) -> PodSandboxConfig:
        meta = pod["metadata"]
        ports = tuple(
            PortMapping(int(p.get("containerPort", 0)), str(p.get("protocol", "TCP")),
                        int(p.get("hostPort", 0)), str(p.get("hostIP", "")))
            for c in (pod.get("spec") or {}).get("containers") or ()
            for p in c.get("ports") or ()
        )  # fmt: skip
        return PodSandboxConfig(
            name=meta["name"], namespace=meta.get("namespace", ""), uid=meta["uid"],
            attempt=attempt, hostname=(pod.get("spec") or {}).get("hostname") or meta["name"],
            labels={**(meta.get("labels") or {}), POD_NAME: meta["name"],
                    POD_NAMESPACE: meta.get("namespace", ""), POD_UID: meta["uid"],
                    NODE: self.node.name},
            annotations=dict(meta.get("annotations") or {}),
            port_mappings=ports,
        )  # fmt: skip

    async def _sources(self, pod: dict) -> dict[tuple[str, str], dict]:
        """What the pod's env and volumes read: its ConfigMaps and Secrets (a missing
        one left out), and the service-account tokens of its projected volumes
        (``ConfigError`` if one cannot be had)."""
        namespace = pod["metadata"].get("namespace", "")
        out = {}
        for kind, name in referenced_sources(pod):
            resource = "configmaps" if kind == "ConfigMap" else "secrets"
            key = (namespace, kind, name)
            try:
                out[(kind, name)] = self.last_sources[key] = await self.client.get(
                    resource, name, namespace=namespace)
            except ApiError as e:
                if e.code == 404:
                    self.last_sources.pop(key, None)
                elif key in self.last_sources:
                    # The API server cannot answer now: what was read last serves (every
                    # pod reads kube-root-ca.crt, and a crashed container is restarted
                    # while the API server is down, as the kubelet's caches allow).
                    out[(kind, name)] = self.last_sources[key]
                else:
                    raise
        for volume in pod["spec"].get("volumes") or ():
            for source in ((volume or {}).get("projected") or {}).get("sources") or ():
                token_spec = (source or {}).get("serviceAccountToken")
                if not isinstance(token_spec, dict):
                    continue
                token_key = token_source_key(token_spec)
                if token_key not in out:
                    out[token_key] = {"token": await self._service_account_token(pod,
                                                                                 token_spec)}
        return out

    async def _service_account_token(self, pod: dict, token_spec: Mapping[str, Any]) -> str:
        """A token of the pod's service account bound to the pod, kept and refreshed as
        ``_tokens`` says."""
        meta, uid = pod["metadata"], pod["metadata"].get("uid", "")
        audience, seconds = str(token_spec.get("audience") or ""), token_seconds(token_spec)
        key, now = (uid, audience, seconds), trio.current_time()
        token = self.tokens.get(key, now)
        if token is not None:
            return token
        account = pod["spec"].get("serviceAccountName") or "default"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": [audience] if audience else [],
                         "expirationSeconds": seconds,
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                            "name": meta.get("name", ""), "uid": uid}}}  # fmt: skip
        try:
            answer = await self.client.request("create", "serviceaccounts", name=account,
                                               namespace=meta.get("namespace", ""),
                                               subresource="token", body=body)  # fmt: skip
        except ApiError as e:
            kept = self.tokens.still_valid(key, now)
            if kept is not None:  # renewal failed: the token it replaces still serves
                log.warning("pod %s/%s: failed to renew its token (the current one serves "
                            "until it expires): %s", meta.get("namespace", ""),
                            meta.get("name", ""), e)  # fmt: skip
                return kept
            raise ConfigError(f"failed to fetch token: {e}") from None
        lifetime = (answer.get("spec") or {}).get("expirationSeconds") or seconds
        token = str((answer.get("status") or {}).get("token", ""))
        self.tokens.put(key, token, float(lifetime), now)
        return token

    async def _start(self, worker: _Worker, sandbox_id: str, sandbox: PodSandboxConfig,
                     name: str, *, init: bool) -> None:  # fmt: skip
        pod = worker.pod
        field = "initContainers" if init else "containers"
        spec = next(c for c in pod["spec"].get(field) or () if c.get("name") == name)
        runtime = await self._pod_runtime(worker.uid)
        latest = runtime.latest(name)
        key = (worker.uid, name, container_hash(spec))
        now = self.now()
        if latest is not None and latest.state is ContainerState.EXITED:
            wait = self.crash.remaining(key, latest.finished_at, now)
            if wait > 0:
                meta = pod["metadata"]
                worker.reasons[name] = (
                    "CrashLoopBackOff",
                    f"back-off {self.crash.get(key, now):g}s restarting failed container={name} "
                    f"pod={meta['name']}_{meta.get('namespace', '')}({worker.uid})",
                )
                self._after(wait, worker.uid)
                return
            self.crash.next(key, now)
        image = str(spec.get("image", ""))
        pull_key = (worker.uid, name, image)
        try:
            image_ref = await self._pull(spec, image, pull_key, worker)
            if image_ref is None:
                return
            services = [s for s in self.services.list()
                        if s["metadata"].get("namespace") == pod["metadata"].get("namespace")
                        or (s["metadata"].get("namespace") == "default"
                            and s["metadata"].get("name") == "kubernetes")]  # fmt: skip
            sources = await self._sources(pod)
            env = container_env(pod, spec, services=services, sources=sources,
                                allocatable=self.node.allocatable())  # fmt: skip
            command, args = command_line(spec, env)
            paths = prepare(self.config.root_dir, pod, sources)
            config = ContainerConfig(
                name=name, image=image, attempt=latest.config.attempt + 1 if latest else 0,
                command=command, args=args, working_dir=str(spec.get("workingDir") or ""),
                envs=tuple(env), mounts=self._mounts(spec, paths) + self._resolv_mount(pod, spec),
                labels={POD_UID: worker.uid, POD_NAME: sandbox.name,
                        POD_NAMESPACE: sandbox.namespace, CONTAINER_NAME: name,
                        CONTAINER_HASH: container_hash(spec), NODE: self.node.name,
                        **({INIT: "true"} if init else {})},
                annotations={**sandbox.annotations,
                             RESTART_COUNT: str(latest.config.attempt + 1 if latest else 0)},
                resources=_resources(spec),
            )  # fmt: skip
        except ConfigError as e:
            worker.reasons[name] = ("CreateContainerConfigError", str(e))
            self._after(self.pulls.initial, worker.uid)
            return
        try:
            cid = await self.runtime.create_container(sandbox_id, config, sandbox)
        except ImagePullError as e:
            worker.reasons[name] = (e.reason, str(e))
            self._after(self.pulls.next(pull_key, now), worker.uid)
            return
        except CriError as e:
            worker.reasons[name] = ("CreateContainerError", str(e))
            self._after(self.crash.next(key, now), worker.uid)
            return
        try:
            await self.runtime.start_container(cid)
        except CriError as e:
            worker.reasons[name] = ("RunContainerError", str(e))
            self._after(self.crash.next(key, now), worker.uid)
            return
        worker.reasons.pop(name, None)
        worker.names[cid] = name
        self._watch_probes(worker, spec, cid, init)
        # Dead containers of this name beyond the one before the new container (what
        # `kubectl logs --previous` reads) go, as the kubelet's container GC keeps one.
        dead = [c for c in runtime.containers
                if c.name == name and c.state is ContainerState.EXITED]  # fmt: skip
        for c in dead[1:]:
            with contextlib.suppress(NotFound):
                await self.runtime.remove_container(c.id)

    def _mounts(self, spec: Mapping, paths: Mapping[str, str]) -> tuple[Mount, ...]:
        """The container's volume mounts; where the runtime cannot mount, without the
        service-account token volume the API server added to every pod (the pod still
        runs, without in-cluster credentials, as it runs with the host's resolv.conf)."""
        found = mounts(spec, paths)
        isolation = getattr(self.runtime, "isolation", None)
        if isolation is None or isolation.mount_namespaces:
            return found
        if not any(m.get("mountPath") == TOKEN_MOUNT_PATH
                   and str(m.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)
                   for m in spec.get("volumeMounts") or ()):  # fmt: skip
            return found
        return tuple(m for m in found if m.container_path != TOKEN_MOUNT_PATH)

    def _resolv_mount(self, pod: dict, spec: Mapping) -> tuple[Mount, ...]:
        """The pod's resolv.conf (``_dnsconfig``), written in its directory and mounted
        at /etc/resolv.conf; nothing when the host's serves or nothing is written here
        (a simulated node)."""
        if self.config.root_dir is None:
            return ()
        isolation = getattr(self.runtime, "isolation", None)
        if isolation is not None and not isolation.mount_namespaces:
            return ()  # the runtime cannot mount: the host's file serves, pods still run
        if any(m.get("mountPath") == RESOLV for m in spec.get("volumeMounts") or ()):
            return ()
        text = resolv_conf(pod, self.config.cluster_dns, self.config.cluster_domain,
                           self._host_resolv)  # fmt: skip
        if text is None:
            return ()
        path = pod_dir(self.config.root_dir, pod["metadata"]["uid"]) / "resolv.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".resolv.conf.tmp")
        tmp.write_text(text)
        tmp.replace(path)
        return (Mount(RESOLV, str(path), readonly=True),)

    async def _pull(self, spec: Mapping, image: str, key: tuple, worker: _Worker) -> str | None:
        now = self.now()
        policy = spec.get("imagePullPolicy") or (
            "Always" if image.endswith(":latest") or ":" not in image.rsplit("/", 1)[-1]
            else "IfNotPresent"
        )
        name = spec["name"]
        if policy != "Always":
            present = await self.runtime.image_status(image)
            if present is not None:
                return present.id
            if policy == "Never":
                worker.reasons[name] = ("ErrImageNeverPull", f'Container image "{image}" is '
                                        "not present with pull policy of Never")  # fmt: skip
                return None
        if self.pulls.get(key, now) and worker.reasons.get(name, ("",))[0] in (
            "ErrImagePull", "ImagePullBackOff"
        ):
            remaining = self.pulls.get(key, now) - (now - worker.pull_failed.get(name, 0.0))
            if remaining > 0:
                worker.reasons[name] = ("ImagePullBackOff",
                                        f'Back-off pulling image "{image}"')  # fmt: skip
                self._after(remaining, worker.uid)
                return None
        try:
            ref = await self.runtime.pull_image(image)
        except ImagePullError as e:
            worker.reasons[name] = ("ErrImagePull", str(e))
            worker.pull_failed[name] = now
            self.pulls.next(key, now)
            # Synced again at once, the container shows ImagePullBackOff until its
            # backoff ends and the next pull.
            self._after(1.0, worker.uid)
            return None
        self.pulls.forget_key(key)
        worker.pull_failed.pop(name, None)
        return ref

    # --- probes -------------------------------------------------------------------------

    def _watch_probes(self, worker: _Worker, spec: Mapping, cid: str, init: bool) -> None:
        if init:
            return
        specs = probe_specs(spec)
        if not specs:
            return
        workers = worker.probes[cid] = {k: ProbeWorker.new(k, s) for k, s in specs.items()}
        for kind, w in workers.items():
            if kind == STARTUP or STARTUP not in workers:
                self._after(w.initial_delay, worker.uid, kind, cid)

    async def _probe(self, uid: str, cid: str, kind: str) -> None:
        worker = self.workers.get(uid)
        if worker is None or cid not in worker.probes:
            return
        probes = worker.probes[cid]
        w = probes.get(kind)
        if w is None:
            return
        container = self._container_spec(worker, cid) or {}
        pod_ip = (worker.pod.get("status") or {}).get("podIP", "")
        try:
            result = await self._run_probe(container, cid, w.spec, pod_ip)
        except Exception as e:  # a probe that breaks is a failed probe, never the kubelet's end
            log.exception("kubelet %s: probe of %s", self.node.name, cid)
            result = ProbeResult(False, f"probe error: {e}")
        if cid not in worker.probes:
            return  # the container was stopped while the probe ran
        if w.record(result.success):
            if kind == STARTUP and w.done:
                for other, ow in probes.items():
                    if other != STARTUP:
                        self._after(ow.initial_delay, uid, other, cid)
            self._kick(uid)
        if not w.done:
            self._after(w.period, uid, kind, cid)

    def _container_spec(self, worker: _Worker, cid: str) -> Mapping | None:
        name = worker.names.get(cid)
        for c in worker.pod["spec"].get("containers") or ():
            if c.get("name") == name:
                return c
        return None

    async def _run_probe(self, container: Mapping, cid: str, spec: Mapping,
                         pod_ip: str) -> ProbeResult:  # fmt: skip
        if "exec" not in spec and self.prober is not None:
            return await self.prober.probe_network(cid, spec, pod_ip,
                                                   float(spec.get("timeoutSeconds") or 1))
        return await self.network_prober.probe(container, cid, spec, pod_ip)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _sync_view(pod: Mapping) -> tuple:
    meta = pod.get("metadata") or {}
    return (pod.get("spec"), meta.get("labels"), meta.get("annotations"),
            meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds"))  # fmt: skip


def _version(pod: dict) -> tuple | dict:
    """What a pod's content is known by: its uid and resourceVersion, which the API
    server changes with every write (so equal versions are equal pods); the pod itself
    if it has none. Pods compared whole (their managedFields, spec and status) were a
    third of a resync's cost, and an equal copy (the echo of a status write) compared
    whole once more after the sync that settled it."""
    m = pod.get("metadata") or {}
    version = m.get("resourceVersion")
    return (m.get("uid"), version) if version else pod


def _pod_name(pod: Mapping) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _resources(spec: Mapping) -> Resources:
    resources = spec.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    return Resources(
        cpu_millis=amount("cpu", limits["cpu"]) if "cpu" in limits else 0,
        memory_bytes=amount("memory", limits["memory"]) if "memory" in limits else 0,
        cpu_request_millis=amount("cpu", requests["cpu"]) if "cpu" in requests else 0,
    )
