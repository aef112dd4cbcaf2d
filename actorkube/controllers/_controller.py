"""A Kubernetes controller as an actor: informers, a rate-limited work queue, workers.

Rules of this file:

- ``watch(factory)`` (the subclass's) asks the informer factory for the informers it
  needs and adds handlers that only compute keys and ``enqueue`` them; nothing else
  happens in a handler.
- ``reconcile(key)`` (the subclass's) re-reads what it needs (informers, or the API for
  what must be current) and writes. It returning is success: the key's backoff is
  forgotten. Any exception is a failure: it is logged, counted in ``errors``, and the key
  comes back after the rate limiter's delay (client-go's default: 5 ms doubling to
  1000 s per key, 10 per second overall). A failure never stops the controller.
- ``workers`` tasks reconcile at once; the work queue never gives one key to two of them.
- Reconciles start only once every informer has listed (Kubernetes' WaitForCacheSync),
  so a first reconcile never mistakes a cache still filling for a cluster without pods.
- A controller that creates or deletes records what it expects to see in
  ``expectations`` and acts again for a key only once they are met (see
  ``_expectations``). ``events`` records Kubernetes Events as the controller's
  component; ``requeue_after(key, seconds)`` looks at a key again later (a deadline,
  minReadySeconds).
- ``synced`` is set then; ``reconciles`` and ``errors`` count what the workers did (for
  metrics), and ``wait_until(predicate)`` waits until a reconcile leaves the predicate
  true (for tests and callers that need a state, not a delay).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from actorkube.actor import Actor, ActorRef, handler, message
from actorkube.apiserver import ApiError
from actorkube.client import (
    ApiClient,
    EventRecorder,
    InformerFactory,
    RateLimitingQueue,
    ShutDown,
    default_controller_rate_limiter,
)

from ._expectations import Expectations

log = logging.getLogger("actorkube.controllers")


def namespace_active(namespace: dict | None) -> bool:
    """True if ``namespace`` exists and is not being deleted: Kubernetes' controllers
    make nothing in a terminating namespace (it must empty, not refill)."""
    if namespace is None or (namespace.get("status") or {}).get("phase") == "Terminating":
        return False
    return not namespace["metadata"].get("deletionTimestamp")


@message(tag="controllers._Run")
class _Run:
    pass


class Controller(Actor):
    """The shape every controller here shares (see the module rules). ``server`` is the
    API server, ``token`` the controller's credentials. A subclass defines
    ``watch_cluster(factory)`` and ``async reconcile(key)``; ``client`` is set before
    either is called."""

    name = "controller"

    def __init__(self, server: ActorRef, *, token: str, workers: int = 5) -> None:
        self.server = server
        self.token = token
        self.workers = workers
        self.client: ApiClient | None = None
        self.queue: RateLimitingQueue[str] = RateLimitingQueue(
            rate_limiter=default_controller_rate_limiter()
        )
        self.expectations = Expectations()
        self.events: EventRecorder | None = None
        self.synced = trio.Event()
        self.reconciles = 0
        self.errors = 0
        self._reconciled = trio.lowlevel.ParkingLot()

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        self.client = ApiClient(self.system, self.server, token=self.token)
        self.events = EventRecorder(self.client, self.name)
        factory = InformerFactory(self.client)
        self.watch_cluster(factory)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.events.run)
            await factory.start(nursery)
            self.synced.set()
            for _ in range(self.workers):
                nursery.start_soon(self._worker)

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def requeue_after(self, key: str, seconds: float) -> None:
        self.queue.add_after(key, seconds)

    async def write_status(self, resource: str, group: str, obj: dict,
                           status_of: Callable[[dict], dict | None]) -> None:  # fmt: skip
        """Write ``status_of(obj)`` through the status subresource (None: nothing to
        write); on a conflict once more, onto a fresh read, as Kubernetes' controllers
        do (updateReplicaSetStatus, storeDaemonSetStatus). What the status says of the
        spec (observedGeneration) stays what this sync saw: the change that moved the
        object enqueued the next sync. An object gone is not an error."""
        m = obj.get("metadata") or {}
        name, namespace = m.get("name", ""), m.get("namespace", "")
        for attempt in range(2):
            status = status_of(obj)
            if status is None:
                return
            try:
                await self.client.update_status(resource, {**obj, "status": status},
                                                namespace=namespace, group=group)  # fmt: skip
                return
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409 or attempt:
                    raise
            obj = await self.client.get_if_exists(resource, name, namespace=namespace,
                                                  group=group)  # fmt: skip
            if obj is None:
                return

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, checked now and after each reconcile."""
        while not predicate():
            await self._reconciled.park()

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.reconcile(key)
            except Exception as e:
                self.errors += 1
                log.warning("%s: reconciling %s failed (%s: %s); retrying", self.name, key,
                            type(e).__name__, e)  # fmt: skip
                self.queue.add_rate_limited(key)
            else:
                self.queue.forget(key)
            finally:
                self.reconciles += 1
                self.queue.done(key)
                self._reconciled.unpark_all()

