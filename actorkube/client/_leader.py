"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does
for kube-scheduler and kube-controller-manager.

Rules of this file:

- Candidates share one Lease (``namespace/name``). A candidate takes it when it does
  not exist (create) or when its record has not changed for ``lease_duration``
  seconds *as this candidate observed it* (its own clock, never the timestamps in the
  record: clocks of different hosts do not agree); it then writes itself as
  holderIdentity, acquireTime and renewTime, and leaseTransitions + 1. Every write is
  an update at the resourceVersion read, so two candidates cannot both win.
- Trying again every ``retry_period`` seconds (client-go's jitter: up to 20% more).
- The leader renews every ``retry_period``; when no renewal has succeeded for
  ``renew_deadline`` seconds (a renewal still waiting for the API server is given up
  then) it has lost: ``lead`` is cancelled and
  ``LeadershipLost`` raised (kube-scheduler exits then; an actor fails and its
  supervisor starts it again as a candidate).
- Defaults are Kubernetes': lease 15 s, renew deadline 10 s, retry 2 s.
- On a normal end of ``lead`` (or cancellation) the leader releases the Lease
  (holderIdentity cleared, leaseDurationSeconds 1), so a standby takes over at once
  (client-go's ReleaseOnCancel).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable

import attrs
import trio

from actorkube.apiserver import ApiError
from actorkube.apiserver._meta import rfc3339_micro

from ._client import ApiClient

log = logging.getLogger("actorkube.client")

GROUP = "coordination.k8s.io"


class LeadershipLost(Exception):
    """The leader could not renew its Lease within the renew deadline."""


@attrs.define
class LeaderElector:
    """One candidate for ``namespace/name`` (see the module rules)."""

    client: ApiClient
    name: str
    identity: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    rng: random.Random = attrs.field(factory=random.Random)
    leading: bool = False
    _observed: dict | None = None  # the last Lease spec seen
    _observed_at: float = 0.0  # trio time it was first seen

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Campaign until elected, then run ``lead`` while renewing (see the rules)."""
        while not await self._try():
            await trio.sleep(self.retry_period * (1 + 0.2 * self.rng.random()))
        self.leading = True
        log.info("%s leads %s/%s", self.identity, self.namespace, self.name)
        lost = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._renew_loop, nursery.cancel_scope)

                async def leader() -> None:
                    await lead()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(leader)
            lost = not self.leading
        finally:
            if self.leading:
                self.leading = False
                with trio.CancelScope(shield=True), trio.move_on_after(self.retry_period):
                    await self._release()
        if lost:
            raise LeadershipLost(f"{self.identity} lost the lease {self.namespace}/{self.name}")

    async def _renew_loop(self, scope: trio.CancelScope) -> None:
        last = trio.current_time()
        while True:
            await trio.sleep(self.retry_period)
            renewed = False
            # A renewal that hangs must not outlive the deadline (client-go bounds it
            # by the same context): past it, a standby may take the lease.
            with trio.move_on_at(last + self.renew_deadline):
                renewed = await self._try()
            if renewed:
                last = trio.current_time()
            elif trio.current_time() - last >= self.renew_deadline:
                log.warning("%s lost %s/%s", self.identity, self.namespace, self.name)
                self.leading = False
                scope.cancel()
                return

    async def _try(self) -> bool:
        """One tryAcquireOrRenew: True when this candidate holds the Lease now."""
        now = trio.current_time()
        stamp = rfc3339_micro(self.client.system.clock.now())
        try:
            lease = await self.client.get(
                "leases", self.name, namespace=self.namespace, group=GROUP
            )
        except ApiError as e:
            if e.code != 404:
                return False
            spec = self._spec(stamp, stamp, 0)
            body = {
                "apiVersion": f"{GROUP}/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                await self.client.create("leases", body, namespace=self.namespace, group=GROUP)
            except ApiError:
                return False
            self._observed, self._observed_at = spec, now
            return True
        spec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self.lease_duration
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # another candidate holds it and is alive
        if holder == self.identity:
            fresh = self._spec(
                spec.get("acquireTime", stamp), stamp, spec.get("leaseTransitions") or 0
            )
        else:
            fresh = self._spec(stamp, stamp, (spec.get("leaseTransitions") or 0) + 1)
        try:
            await self.client.update(
                "leases", {**lease, "spec": fresh}, namespace=self.namespace, group=GROUP
            )
        except ApiError:
            return False
        self._observed, self._observed_at = fresh, now
        return True

    async def _release(self) -> None:
        try:
            lease = await self.client.get(
                "leases", self.name, namespace=self.namespace, group=GROUP
            )
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            released = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
            await self.client.update(
                "leases", {**lease, "spec": released}, namespace=self.namespace, group=GROUP
            )
        except ApiError as e:
            log.info("%s could not release %s/%s: %s", self.identity, self.namespace, self.name, e)

    def _spec(self, acquired: str, renewed: str, transitions: int) -> dict:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": acquired,
            "renewTime": renewed,
            "leaseTransitions": transitions,
        }
