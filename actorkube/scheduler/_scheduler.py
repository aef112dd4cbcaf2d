"""The scheduler actor: watches nodes and pods through the API server, schedules each
pending pod with the framework, and binds it (kube-scheduler's scheduleOne).

Rules of this file:

- Informers feed two places. Pods with a node (and not finished) go to the cache;
  pending pods whose ``spec.schedulerName`` names one of this scheduler's profiles,
  and that are not being deleted, go to the queue. A pod that gets its node leaves
  the queue. Cluster events that could make room (a node added or changed, a bound pod
  deleted) move every unschedulable pod back (``SchedulingQueue.move_all``).
- One pod at a time is scheduled, synchronously against the cache (the cache is the
  snapshot: nothing else runs during a cycle). A chosen pod is assumed in the cache at
  once and bound in its own task (POST pods/binding), so the next cycle starts while
  the bind is in flight (kube-scheduler's binding cycle). A bind that fails forgets
  the pod and sends it to backoff; an assumed pod whose bind was never confirmed by
  the informer expires (``SchedulerCache.cleanup``).
- The binding cycle, after the choice: Reserve (a failure undoes every Reserve),
  Permit (a refusal parks the pod; a wait registers it at once: every waiting plugin
  must ``allow`` it before its timeout, a ``reject``, its deletion or the timeout turn
  it away), PreBind, Bind plugins, the DefaultBinder, PostBind. After a failure the
  pod is unreserved, forgotten and requeued (unschedulable, or backoff for errors,
  with PodScheduled=False), each step acting on that pod only (its uid).
- A pod no node fits gets ``PodScheduled=False`` (reason Unschedulable, the FitError
  message) through the status subresource, and a Warning event FailedScheduling with
  the same message; a bound pod gets a Normal event Scheduled ("Successfully assigned
  ns/pod to node"). Events are best effort (``EventRecorder``).
- When DefaultPreemption finds victims, each gets the DisruptionTarget condition
  (PreemptionByScheduler) and a Preempted event, then is deleted (its own grace
  period); the preemptor's ``status.nominatedNodeName`` names the node, whose room the
  cache holds for it (``SchedulerCache.nominate``) until it is tried again. The
  victims' deletion moves it back to the active queue.
- Only the leader schedules (``LeaderElector`` on the Lease ``kube-system/
  kube-scheduler``, when ``leader_elect``). Losing the lease fails the actor: its
  supervisor starts it again, as a candidate with a fresh cache, as kube-scheduler's
  process restarts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339
from actorkube.client import ApiClient, Informer, InformerFactory
from actorkube.client._events import EventRecorder
from actorkube.client._leader import LeaderElector

from ._cache import SchedulerCache, node_name_of
from ._framework import ClusterView, Code, CycleState, FitError, Framework, Status
from ._nodeinfo import pod_key
from ._preemption import Preemption, waits_for_victims
from ._profiles import default_framework
from ._queue import SchedulingQueue

log = logging.getLogger("actorkube.scheduler")

DEFAULT_SCHEDULER = "default-scheduler"
CLEANUP_PERIOD = 1.0  # kube-scheduler's cleanAssumedPeriod
STRATEGIC = "application/strategic-merge-patch+json"


@attrs.frozen
class SchedulerConfig:
    """What kube-scheduler's KubeSchedulerConfiguration and flags say."""

    profiles: Mapping[str, Callable[[], Framework]] = attrs.field(
        factory=lambda: {DEFAULT_SCHEDULER: default_framework}
    )
    leader_elect: bool = True
    lease_name: str = "kube-scheduler"
    lease_namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    initial_backoff: float = 1.0
    maximum_backoff: float = 10.0
    assumed_ttl: float = 15 * 60.0


def terminal(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def deleting(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def _node_view(node: Mapping[str, Any]) -> tuple:
    """What a node update must change to possibly make room: spec (taints,
    unschedulable), labels, allocatable, images."""
    status = node.get("status") or {}
    labels = (node.get("metadata") or {}).get("labels")
    return node.get("spec"), labels, status.get("allocatable"), status.get("images")


def _scheduling_view(pod: Mapping[str, Any]) -> tuple:
    """What a pod update must change to be worth another attempt: not its status,
    resourceVersion or managedFields (kube-scheduler's isPodUpdated)."""
    m = {
        k: v
        for k, v in (pod.get("metadata") or {}).items()
        if k not in ("resourceVersion", "managedFields", "generation")
    }
    return m, pod.get("spec")


@message(tag="scheduler._Run")
class _Run:
    pass


class Scheduler(Actor):
    """kube-scheduler as an actor (see the module rules). ``identity`` names this
    replica in the Lease."""

    def __init__(
        self,
        server: ActorRef,
        *,
        token: str,
        identity: str,
        config: SchedulerConfig | None = None,
    ) -> None:
        self.server = server
        self.token = token
        self.identity = identity
        self.config = config or SchedulerConfig()
        self.state: SchedulingState | None = None

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        client = ApiClient(self.system, self.server, token=self.token)
        if not self.config.leader_elect:
            await self._lead(client)
            return
        c = self.config
        elector = LeaderElector(
            client,
            c.lease_name,
            self.identity,
            c.lease_namespace,
            c.lease_duration,
            c.renew_deadline,
            c.retry_period,
        )
        await elector.run(lambda: self._lead(client))

    async def _lead(self, client: ApiClient) -> None:
        self.state = SchedulingState(client, self.config, self.identity)
        await self.state.run()


@attrs.define
class _Waiting:
    """A pod a Permit plugin holds: released when no plugin is pending, turned away
    with ``refusal`` (plugin, why), or timed out."""

    uid: str
    pending: set[str]
    refusal: tuple[str, str] | None = None
    done: trio.Event = attrs.field(factory=trio.Event)


class InformerView(ClusterView):
    """What plugins read besides nodes and pods, from the scheduler's informers."""

    def __init__(self, services: Informer, namespaces: Informer,
                 workloads: dict[str, Informer], budgets: Informer) -> None:  # fmt: skip
        self._services = services
        self._namespaces = namespaces
        self._workloads = workloads
        self._budgets = budgets

    def pod_disruption_budgets(self) -> list[Mapping[str, Any]]:
        return self._budgets.list()

    def services(self, namespace: str) -> list[Mapping[str, Any]]:
        return self._services.by_index("namespace", namespace)

    def get(self, resource: str, namespace: str, name: str) -> Mapping[str, Any] | None:
        informer = self._workloads.get(resource)
        return informer.get(f"{namespace}/{name}") if informer is not None else None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        found = self._namespaces.get(namespace)
        return None if found is None else (found.get("metadata") or {}).get("labels") or {}

    def namespace_names(self) -> list[str]:
        return list(self._namespaces.items)


class SchedulingState:
    """The leader's work: informers, queue, cache, the scheduling loop and binds."""

    def __init__(self, client: ApiClient, config: SchedulerConfig, identity: str) -> None:
        self.client = client
        self.config = config
        self.frameworks = {name: make() for name, make in config.profiles.items()}
        self.queue = SchedulingQueue(
            initial_backoff=config.initial_backoff, maximum_backoff=config.maximum_backoff
        )
        self.cache = SchedulerCache(ttl=config.assumed_ttl)
        self.events = EventRecorder(client, DEFAULT_SCHEDULER, host=identity)
        self.scheduled = 0  # binds confirmed by the API server
        self.attempts = 0
        self.failed_binds = 0
        self.preemptions = 0
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._waiting: dict[str, _Waiting] = {}  # pods a Permit plugin holds, by key

    async def run(self) -> None:
        factory = InformerFactory(self.client)
        nodes = factory.informer("nodes")
        pods = factory.informer("pods")
        replicasets = factory.informer("replicasets", group="apps")
        view = InformerView(factory.informer("services"), factory.informer("namespaces"),
                            {"replicasets": replicasets},
                            factory.informer("poddisruptionbudgets", group="policy"))  # fmt: skip
        for framework in self.frameworks.values():
            framework.cluster = view
        nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.events.run)
            await factory.start(nursery)
            nursery.start_soon(self._cleanup_loop)
            await self._loop()

    # --- informer handlers (they only record and wake the loop) -----------------------

    def _node_added(self, node: dict) -> None:
        self.cache.add_node(node)
        self._moved("NodeAdd")

    def _node_updated(self, old: dict, new: dict) -> None:
        self.cache.update_node(new)
        if _node_view(old) != _node_view(new):
            self._moved("NodeUpdate")

    def _node_deleted(self, node: dict) -> None:
        self.cache.remove_node(node)

    def _responsible(self, pod: dict) -> bool:
        name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        return name in self.frameworks

    def _pod_added(self, pod: dict) -> None:
        if node_name_of(pod):
            if not terminal(pod):
                self.cache.add_pod(pod)
                self._moved("AssignedPodAdd")
            return
        if self._responsible(pod) and not deleting(pod):
            self._pending(pod, changed=True)

    def _pod_updated(self, old: dict, new: dict) -> None:
        if node_name_of(new):
            self.queue.delete(new)
            self.cache.unnominate(new)
            if terminal(new):
                self._pod_deleted(new)
                return
            self.cache.update_pod(old, new)
            if not node_name_of(old):
                self._moved("AssignedPodAdd")
            elif (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get(
                "labels"
            ):
                self._moved("AssignedPodUpdate")
            return
        if node_name_of(old):  # bound, then pending: another pod of that name (a relist)
            self._forget_bound(old)
        if deleting(new):
            self.queue.delete(new)
            self.cache.unnominate(new)
        elif self._responsible(new):
            self._pending(new, changed=_scheduling_view(old) != _scheduling_view(new))

    def _pending(self, pod: dict, changed: bool) -> None:
        """A pending pod of ours arrived or changed: queue it; hold the room of a node
        it is nominated to (after a failover the API server is what remembers)."""
        self.queue.add(pod, trio.current_time(), changed=changed)
        nominated = (pod.get("status") or {}).get("nominatedNodeName")
        if nominated and self.cache.nominated(pod) is None and self.cache.node(nominated):
            self.cache.nominate(pod, nominated)
        self._wake.set()

    def _pod_deleted(self, pod: dict) -> None:
        self.reject(pod, "pod deleted")  # one waiting at Permit goes at once
        self.queue.delete(pod)
        self.cache.unnominate(pod)
        if node_name_of(pod) or self.cache.is_assumed(pod):
            self._forget_bound(pod)

    def _forget_bound(self, pod: Mapping[str, Any]) -> None:
        self.cache.remove_pod(pod)
        self._moved("AssignedPodDelete")

    def _moved(self, event: str) -> None:
        if self.queue.move_all(trio.current_time(), event):
            self._wake.set()

    # --- the loop -----------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            pod = self.queue.pop(trio.current_time())
            if pod is None:
                self._wake = trio.Event()
                ready = self.queue.next_ready()
                with trio.move_on_at(math.inf if ready is None else ready):
                    await self._wake.wait()
                continue
            self.schedule_one(pod)
            await trio.sleep(0)  # binds and informers run between cycles

    def schedule_one(self, pod: dict) -> None:
        """One scheduling cycle for ``pod`` (see the module rules)."""
        now = trio.current_time()
        if self.cache.is_assumed(pod) or deleting(pod):
            self.queue.done(pod)
            return
        cached_uid = self.cache.uid_of(pod)
        if cached_uid is not None:
            if cached_uid == pod["metadata"].get("uid"):
                self.queue.done(pod)  # bound already; the informer is behind
                return
            self.cache.remove_pod(pod)  # an earlier pod of that name, gone since
        self.attempts += 1
        name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER
        framework = self.frameworks[name]
        held = self.cache.nominated(pod)
        self.cache.unnominate(pod)  # its own held room must not keep it out
        status = pod.get("status") or {}
        if held is not None:  # the nomination as we know it, before the API says so
            pod = {**pod, "status": {**status, "nominatedNodeName": held}}
        try:
            result = framework.schedule(pod, self.cache.table())
        except FitError as e:
            self.queue.unschedulable(pod, now, e.plugins)
            assert self._nursery is not None
            if e.preemption is not None:
                self.preemptions += 1
                self._start_preemption(pod, e)
                return
            if held is not None and self._waits_for_victims(pod, held):
                self.cache.nominate(pod, held)  # its victims are still going
                nominated = held
            else:
                nominated = ""  # a nomination that no longer helps is cleared
            self._nursery.start_soon(self._unschedulable, pod, e.message(), nominated)
            return
        assumed = self.cache.assume(pod, result.node)
        state = result.state if result.state is not None else CycleState()
        status = framework.reserve(state, pod, result.node)
        if status.ok:
            permit = framework.permit(state, pod, result.node)
            if permit.ok or permit.code is Code.WAIT:
                waiting = None
                if permit.code is Code.WAIT:  # registered now: allow() works at once
                    waiting = _Waiting(pod["metadata"].get("uid", ""), set(permit.reasons))
                    self._waiting[pod_key(pod)] = waiting
                assert self._nursery is not None
                self._nursery.start_soon(self._bind, pod, assumed, result.node, framework,
                                         state, permit, waiting)  # fmt: skip
                return
            framework.unreserve(state, pod, result.node)
            why = (f'rejected pod "{pod["metadata"]["name"]}" by Permit plugin '
                   f'"{permit.plugin}": {", ".join(permit.reasons)}')  # fmt: skip
            status = permit
        else:
            why = f'running Reserve plugin "{status.plugin}": {", ".join(status.reasons)}'
        self.cache.forget(assumed)
        self.queue.unschedulable(pod, now, frozenset({status.plugin}))
        assert self._nursery is not None
        self._nursery.start_soon(self._unschedulable, pod, why)

    def _waits_for_victims(self, pod: Mapping[str, Any], node: str) -> bool:
        info = self.cache.node(node)
        return info is not None and waits_for_victims(pod, info)

    def _start_preemption(self, pod: dict, e: FitError) -> None:
        preemption = e.preemption
        when = rfc3339(self.client.system.clock.now())
        waiting = [v for v in preemption.victims
                   if self.reject(v, "preempted", "DefaultPreemption")]  # fmt: skip
        # A victim held at Permit is not running: turned away, not deleted (Kubernetes).
        preemption = attrs.evolve(preemption, victims=tuple(
            v for v in preemption.victims if not any(v is w for w in waiting)))  # fmt: skip
        for victim in preemption.victims:
            self.cache.mark_deleting(victim, when)
        for other in preemption.displaced:
            self.cache.unnominate(other)  # it was not running: its nomination goes
        self.cache.nominate(pod, preemption.node)
        assert self._nursery is not None
        self._nursery.start_soon(self._preempt, pod, preemption, e.message())

    # --- the binding cycle: permit's wait, pre-bind, bind, post-bind --------------------

    def allow(self, pod: Mapping[str, Any], plugin: str = "") -> bool:
        """A Permit plugin that holds the pod lets it go (``plugin`` "": all of them);
        it binds once none holds it. False: no such pod waits."""
        waiting = self._waiting_for(pod)
        if waiting is None:
            return False
        waiting.pending = set() if not plugin else waiting.pending - {plugin}
        if not waiting.pending:
            waiting.done.set()
        return True

    def reject(self, pod: Mapping[str, Any], reason: str, plugin: str = "") -> bool:
        """Turn away a pod a Permit plugin holds (False: no such pod waits)."""
        waiting = self._waiting_for(pod)
        if waiting is None:
            return False
        waiting.refusal = (plugin or "Permit", reason or "rejected")
        waiting.done.set()
        return True

    def _waiting_for(self, pod: Mapping[str, Any]) -> _Waiting | None:
        waiting = self._waiting.get(pod_key(pod))
        uid = (pod.get("metadata") or {}).get("uid")
        if waiting is None or (uid and waiting.uid and uid != waiting.uid):
            return None  # none, or another pod of that name
        return waiting

    def waiting_pods(self) -> list[str]:
        return list(self._waiting)

    async def _bind(self, pod: dict, assumed: Mapping[str, Any], node: str,
                    framework: Framework, state: CycleState, permit: Status,
                    waiting: _Waiting | None) -> None:  # fmt: skip
        """The binding cycle (see the module rules). Every step after a failure acts on
        this pod only (its uid): another pod of the same name may be queued by then."""
        m = pod["metadata"]
        refusal: tuple[str, str, str] | None = None  # (kind, plugin, message)
        if waiting is not None:
            with trio.move_on_after(permit.timeout):
                await waiting.done.wait()
            if self._waiting.get(pod_key(pod)) is waiting:
                del self._waiting[pod_key(pod)]
            if waiting.refusal is not None:
                plugin, why = waiting.refusal
                refusal = ("unschedulable", plugin, f'rejected pod "{m["name"]}" by Permit '
                           f'plugin "{plugin}": {why}')  # fmt: skip
            elif waiting.pending:
                plugin = sorted(waiting.pending)[0]
                refusal = ("unschedulable", plugin, f"rejected due to timeout after waiting "
                           f"{permit.timeout:g}s at plugin {plugin}")  # fmt: skip
        if refusal is None:
            refusal = await self._pre_bind_and_bind(pod, node, framework, state)
        if refusal is not None:
            kind, plugin, text = refusal
            framework.unreserve(state, pod, node)
            self.cache.forget(assumed)
            self._moved("AssignedPodDelete")  # the room it held is free again
            if kind == "gone":
                self.queue.delete(pod)
                return
            log.info("scheduling %s on %s failed: %s", pod_key(pod), node, text)
            if kind == "unschedulable":
                self.queue.unschedulable(pod, trio.current_time(), frozenset({plugin}))
            else:
                self.queue.error(pod, trio.current_time())
            self._wake.set()
            reason = "Unschedulable" if kind == "unschedulable" else "SchedulerError"
            await self._unschedulable(pod, text, reason=reason)
            return
        self.scheduled += 1
        self.cache.finish_binding(assumed, trio.current_time())
        self.cache.unnominate(pod)
        self.queue.done(pod)
        for p in framework.plugins:
            post = getattr(p, "post_bind", None)
            if post is not None:
                post(state, pod, node)
        self.events.event(
            pod,
            "Normal",
            "Scheduled",
            f"Successfully assigned {m['namespace']}/{m['name']} to {node}",
        )

    async def _pre_bind_and_bind(self, pod: dict, node: str, framework: Framework,
                                 state: CycleState) -> tuple[str, str, str] | None:  # fmt: skip
        """PreBind, then the first Bind plugin that does not skip, else the
        DefaultBinder. None when bound; else (kind: "gone" or "error", plugin, why)."""
        for p in framework.plugins:
            pre = getattr(p, "pre_bind", None)
            if pre is not None:
                status = await pre(state, pod, node)
                if not status.ok:
                    why = f"running PreBind plugin {p.name!r}: {', '.join(status.reasons)}"
                    return "error", p.name, why
        for p in framework.binders():
            status = await p.bind(state, pod, node)
            if status.code is Code.SKIP:
                continue
            if status.ok:
                return None
            return "error", p.name, f"binding by {p.name!r}: {', '.join(status.reasons)}"
        m = pod["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m.get("uid", "")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        }
        try:
            await self.client.request("create", "pods", namespace=m["namespace"], name=m["name"],
                                      subresource="binding", body=binding)  # fmt: skip
        except ApiError as e:
            self.failed_binds += 1
            if e.code == 404:
                return "gone", "DefaultBinder", str(e)
            return "error", "DefaultBinder", f"binding rejected: {e}"
        return None

    async def _unschedulable(self, pod: dict, text: str, nominated: str = "",
                             reason: str = "Unschedulable") -> None:  # fmt: skip
        self.events.event(pod, "Warning", "FailedScheduling", text)
        status = pod.get("status") or {}
        for c in status.get("conditions") or ():
            if (
                c.get("type") == "PodScheduled"
                and c.get("status") == "False"
                and c.get("message") == text
                and c.get("reason") == reason
                and status.get("nominatedNodeName", "") == nominated
            ):
                return  # already says so
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": reason,
            "message": text,
            "lastProbeTime": None,
            "lastTransitionTime": rfc3339(self.client.system.clock.now()),
        }
        patch: dict = {"conditions": [condition]}
        if nominated:
            patch["nominatedNodeName"] = nominated
        elif status.get("nominatedNodeName"):
            patch["nominatedNodeName"] = None
        await self._patch_status(pod, patch)

    async def _patch_status(self, pod: Mapping[str, Any], status: dict) -> bool:
        m = pod["metadata"]
        try:
            await self.client.patch("pods", m["name"], {"status": status},
                                    namespace=m["namespace"], subresource="status",
                                    content_type=STRATEGIC)  # fmt: skip
        except ApiError as e:
            log.debug("status of %s not updated: %s", pod_key(pod), e)
            return False
        return True

    async def _evict(self, victim: Mapping[str, Any], condition: dict, message: str) -> None:
        """DisruptionTarget, then delete (the victim's own grace period), then the
        Preempted event; a victim that cannot be evicted counts as it was."""
        vm = victim["metadata"]
        if not await self._patch_status(victim, {"conditions": [condition]}):
            self.cache.unmark(victim)  # gone already, or not ours to touch now
            return
        try:
            await self.client.delete("pods", vm["name"], namespace=vm["namespace"])
        except ApiError as e:
            if e.code != 404:  # gone already is what we wanted
                log.info("preempting %s failed: %s", pod_key(victim), e)
                self.cache.unmark(victim)
            return
        self.events.event(victim, "Normal", "Preempted", message)

    async def _preempt(self, pod: dict, preemption: Preemption, text: str) -> None:
        """Evict the victims, then say where the preemptor is nominated."""
        uid = pod["metadata"].get("uid", "")
        condition = {
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "PreemptionByScheduler",
            "message": f"{DEFAULT_SCHEDULER}: preempting to accommodate a higher priority pod",
            "lastTransitionTime": rfc3339(self.client.system.clock.now()),
        }
        for other in preemption.displaced:
            await self._patch_status(other, {"nominatedNodeName": None})
        message = f"Preempted by pod {uid} on node {preemption.node}"
        async with trio.open_nursery() as nursery:  # victims go in parallel, as Kubernetes'
            for victim in preemption.victims:
                nursery.start_soon(self._evict, victim, condition, message)
        await self._unschedulable(pod, text, nominated=preemption.node)

    async def _cleanup_loop(self) -> None:
        while True:
            await trio.sleep(CLEANUP_PERIOD)
            for pod in self.cache.cleanup(trio.current_time()):
                log.warning("assumed pod %s expired: its bind was never confirmed", pod_key(pod))
                self._moved("AssignedPodDelete")
