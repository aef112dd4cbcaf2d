"""The controller manager: the controllers under one supervisor, run only by the replica
that holds the ``kube-system/kube-controller-manager`` Lease (kube-controller-manager's
leader election).

Rules of this file:

- ``controllers`` maps a controller's name to a function that makes it (each with its
  own credentials); the manager spawns them as its children, each restarted on failure
  by the manager's one-for-one supervision, only while it leads.
- With ``leader_elect`` (the default) the manager campaigns through ``LeaderElector``
  with Kubernetes' timings (lease 15 s, renew deadline 10 s, retry 2 s). Losing the
  Lease fails the manager: its children stop with it (no controller of a former leader
  keeps writing), and its own supervisor starts it again as a candidate, as
  kube-controller-manager exits and is restarted. A manager that stops releases the
  Lease so that a standby takes over at once.
- ``leading`` says whether the controllers run here now; ``children`` holds them by
  name while they do (tests read their counters).
- ``lease`` names the Lease in kube-system (kube-controller-manager's by default): the
  cloud controller manager is this manager with its own Lease and controllers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import trio

from actorkube.actor import Actor, ActorRef, Restart, handler, message
from actorkube.client import ApiClient
from actorkube.client._leader import LeaderElector

LEASE = "kube-controller-manager"


@message(tag="controllers.manager._Run")
class _Run:
    pass


class ControllerManager(Actor):
    """The controllers of one replica (see the module rules). ``token``: the manager's
    own credentials, for the Lease (Kubernetes' system:kube-controller-manager)."""

    def __init__(
        self,
        server: ActorRef,
        controllers: Mapping[str, Callable[[], Actor]],
        *,
        token: str,
        identity: str,
        leader_elect: bool = True,
        lease: str = LEASE,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        self.server = server
        self.controllers = dict(controllers)
        self.token = token
        self.identity = identity
        self.leader_elect = leader_elect
        self.lease = lease
        self.timings = (lease_duration, renew_deadline, retry_period)
        self.leading = False
        self.children: dict[str, Actor] = {}

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        if not self.leader_elect:
            await self._lead()
            return
        client = ApiClient(self.system, self.server, token=self.token)
        elector = LeaderElector(client, self.lease, self.identity, "kube-system", *self.timings)
        await elector.run(self._lead)

    async def _lead(self) -> None:
        self.leading = True
        try:
            for name, make in self.controllers.items():
                self.spawn(lambda name=name, make=make: self._made(name, make), name=name,
                           restart=Restart.PERMANENT)  # fmt: skip
            await trio.sleep_forever()
        finally:
            self.leading = False

    def _made(self, name: str, make: Callable[[], Actor]) -> Actor:
        controller = make()
        self.children[name] = controller
        return controller
