"""The HorizontalPodAutoscaler controller: keeps each HPA's target at the replica count
its metrics ask for (kube-controller-manager's horizontal-pod-autoscaler; the arithmetic
is ``_autoscaling``'s).

Rules of this file:

- Informers on HPAs (autoscaling/v2) and pods. Every HPA is looked at every
  ``sync_period`` (15 s), and an HPA added or changed waits for its next turn, as
  Kubernetes queues every HPA with the resync delay. A failed sync is logged and comes
  back at the next period too (no faster retry: the HPA's state is its status).
- One sync: the target's kind is mapped to its resource through discovery (remembered;
  discovered again when a kind is not found), its ``scale`` subresource read
  (FailedGetScale: an event and AbleToScale=False), the metrics API's PodMetrics for the
  scale's selector listed when a Resource or ContainerResource metric needs them, then
  ``_autoscaling.plan`` decides. A rescale writes the scale (SuccessfulRescale, or
  FailedRescale and AbleToScale=False FailedUpdateScale), then the status is written if
  it changed: currentReplicas, desiredReplicas, currentMetrics, lastScaleTime,
  conditions.
- The recommendations and scale events an HPA's behavior needs live in this actor (as
  in Kubernetes' controller): a restarted controller starts them afresh, with the
  current size as the first recommendation. A deleted HPA's are dropped.
- ``now`` (wall-clock seconds) comes from the actor system's clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from actorkube.actor import ActorRef
from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339
from actorkube.client import InformerFactory, object_key

from . import _autoscaling as hpa_math
from ._controller import Controller
from ._fields import meta as _meta
from ._fields import spec as _spec
from ._fields import status as _status
from ._namespace_content import served_resources
from .namespace import discover

log = logging.getLogger("actorkube.controllers")

CONTROLLER_NAME = "horizontal-pod-autoscaler"
GROUP, PLURAL = "autoscaling", "horizontalpodautoscalers"
METRICS_GROUP, METRICS_VERSION = "metrics.k8s.io", "v1beta1"


class TargetError(Exception):
    """The scale target's kind is served by no resource."""


class HorizontalPodAutoscalerController(Controller):
    """The HPA controller (see the module rules)."""

    name = CONTROLLER_NAME

    def __init__(
        self, server: ActorRef, *, token: str, workers: int = 5,
        sync_period: float = hpa_math.SYNC_PERIOD, tolerance: float = hpa_math.TOLERANCE,
    ) -> None:  # fmt: skip
        super().__init__(server, token=token, workers=workers)
        self.sync_period = sync_period
        self.tolerance = tolerance
        self.histories: dict[str, hpa_math.History] = {}
        self._resources: dict[tuple[str, str], tuple[str, str, str]] = {}

    def watch_cluster(self, factory: InformerFactory) -> None:
        self.hpas = factory.informer(PLURAL, group=GROUP)
        self.pods = factory.informer("pods")
        self.hpas.add_handler(self._hpa_changed, self._hpa_updated, self._hpa_deleted)

    def now(self) -> float:
        return self.system.clock.now()

    # --- events to keys ----------------------------------------------------------------

    def _hpa_changed(self, hpa: dict) -> None:
        self.requeue_after(object_key(hpa), self.sync_period)

    def _hpa_updated(self, old: dict, new: dict) -> None:
        self._hpa_changed(new)

    def _hpa_deleted(self, hpa: dict) -> None:
        self.histories.pop(object_key(hpa), None)

    # --- the sync ----------------------------------------------------------------------

    async def reconcile(self, key: str) -> None:
        hpa = self.hpas.get(key)
        if hpa is None:
            self.histories.pop(key, None)
            return
        try:
            await self._sync(key, hpa)
        except Exception as e:
            self.errors += 1
            log.warning("%s: syncing %s failed (%s: %s)", self.name, key, type(e).__name__, e)
        finally:
            if self.hpas.get(key) is not None:
                self.requeue_after(key, self.sync_period)

    async def _target(self, ref: Mapping[str, Any]) -> tuple[str, str, str]:
        """(resource, group, version) serving the scale target's kind; discovery is read
        again when the kind is not among what it gave before."""
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        group = api_version.rpartition("/")[0]
        wanted = (group, kind)
        if wanted not in self._resources:
            for r in served_resources(await discover(self.client)).resources:
                self._resources[(r.group, r.kind)] = (r.resource, r.group, r.version)
        if wanted not in self._resources:
            raise TargetError("unable to determine resource for scale target reference: "
                              f'no matches for kind "{kind}" in group "{group}"')  # fmt: skip
        return self._resources[wanted]

    async def _pod_metrics(self, namespace: str, selector: str) -> tuple[list | None, str]:
        try:
            answer = await self.client.request(
                "list", "pods", group=METRICS_GROUP, version=METRICS_VERSION,
                namespace=namespace, params={"labelSelector": selector} if selector else None,
            )  # fmt: skip
        except ApiError as e:
            return None, f"{e} (get pods.{METRICS_GROUP})"
        return list(answer.get("items") or ()), ""

    def _others(self, key: str, namespace: str) -> dict[str, Any]:
        """The selectors of the namespace's other HPAs, as last seen."""
        prefix = f"{namespace}/"
        return {k[len(prefix):]: h.selector for k, h in self.histories.items()
                if k.startswith(prefix) and k != key and h.selector is not None}  # fmt: skip

    async def _sync(self, key: str, hpa: dict) -> None:
        namespace = _meta(hpa).get("namespace", "")
        ref = _spec(hpa).get("scaleTargetRef") or {}
        history = self.histories.setdefault(key, hpa_math.History())
        old = dict(_status(hpa))
        conditions = list(old.get("conditions") or ())
        now = self.now()

        def condition(type_: str, status: str, reason: str, message: str) -> None:
            nonlocal conditions
            conditions = hpa_math.set_condition(
                conditions, hpa_math.Condition(type_, status, reason, message), now)

        async def write(status: dict) -> None:
            status = {k: v for k, v in {**status, "conditions": conditions}.items()
                      if v is not None}  # fmt: skip
            if status != old:
                await self.write_status(PLURAL, GROUP, hpa, lambda current: status)

        try:
            resource, group, version = await self._target(ref)
            scale = await self.client.request(
                "get", resource, group=group, version=version, namespace=namespace,
                name=ref.get("name", ""), subresource="scale")  # fmt: skip
        except (TargetError, ApiError) as e:
            self.events.event(hpa, "Warning", "FailedGetScale", str(e))
            condition(hpa_math.ABLE_TO_SCALE, "False", "FailedGetScale",
                      f"the HPA controller was unable to get the target's current scale: {e}")
            await write(old)
            raise
        condition(hpa_math.ABLE_TO_SCALE, "True", "SucceededGetScale",
                  "the HPA controller was able to get the target's current scale")
        pod_metrics, metrics_error = None, ""
        if hpa_math.needs_pod_metrics(hpa) and _spec(scale).get("replicas"):
            pod_metrics, metrics_error = await self._pod_metrics(
                namespace, _status(scale).get("selector") or "")
        inputs = hpa_math.MetricInputs(self.pods.by_index("namespace", namespace), pod_metrics,
                                       metrics_error)  # fmt: skip
        others = self._others(key, namespace)
        plan = hpa_math.plan(hpa, scale, inputs, history, now, others=others,
                             tolerance=self.tolerance)  # fmt: skip
        for event in plan.events:
            self.events.event(hpa, event.type, event.reason, event.message)
        for c in plan.conditions:
            condition(c.type, c.status, c.reason, c.message)
        current = {**old, "currentReplicas": plan.current, "currentMetrics": plan.statuses}
        if plan.stop:
            await write(current)
            raise RuntimeError(f"failed to compute desired number of replicas based on listed "
                               f"metrics for {ref.get('kind')}/{namespace}/{ref.get('name')}: "
                               f"{plan.error}")  # fmt: skip
        desired = plan.current
        if plan.rescale:
            try:
                await self.client.update(resource, {**scale, "spec": {
                    **_spec(scale), "replicas": plan.desired}}, namespace=namespace,
                    group=group, subresource="scale")  # fmt: skip
            except ApiError as e:
                self.events.event(hpa, "Warning", "FailedRescale",
                                  f"New size: {plan.desired}; reason: {plan.reason}; error: {e}")
                condition(hpa_math.ABLE_TO_SCALE, "False", "FailedUpdateScale",
                          f"the HPA controller was unable to update the target scale: {e}")
                await write(current)
                raise
            condition(hpa_math.ABLE_TO_SCALE, "True", "SucceededRescale",
                      f"the HPA controller was able to update the target scale to {plan.desired}")
            self.events.event(hpa, "Normal", "SuccessfulRescale",
                              f"New size: {plan.desired}; reason: {plan.reason}")
            history.scaled(_spec(hpa).get("behavior"), plan.current, plan.desired, now)
            desired = plan.desired
            current["lastScaleTime"] = rfc3339(now)
        await write({**current, "desiredReplicas": desired})
        if plan.error:
            raise RuntimeError(plan.error)
