"""The metrics server (kubernetes-sigs/metrics-server): scrapes every kubelet's resource
metrics and answers the API server's metrics.k8s.io requests with the latest ones.

Rules of this file:

- ``MetricsServer`` holds what is kept (``MetricsStore``) and answers ``MetricsQuery``
  at once, whatever a scrape is doing: the scraping runs in a child actor
  (``_Scraper``), which tells it each scrape's result (``_Scraped``). A scraper that
  fails is restarted by it; a MetricsServer restarted starts empty.
- The scraper watches Nodes through the API (an informer, as the metrics server's own
  user) and scrapes right after its first list, then every ``metric_resolution``
  seconds (a ticker: a scrape that overran skips the ticks it missed). A scrape asks
  every node's kubelet (``GetResourceMetrics``) at once, at most ``max_parallel`` at a
  time, and waits ``scrape_timeout`` seconds at most (90% of the resolution by
  default, as metrics-server's): a kubelet that has not answered by then did not
  answer.
- Times are trio's (virtual under a MockClock); the samples carry the kubelets'
  timestamps.
"""

from __future__ import annotations

import logging
import math

import trio

from actorkube.actor import Actor, ActorError, ActorRef, handler, message
from actorkube.apiserver._metricsapi import MetricsAnswer, MetricsQuery
from actorkube.client import ApiClient, Informer

from ._messages import GetResourceMetrics, ResourceMetrics
from ._store import MetricsStore, accepted, targets

log = logging.getLogger("actorkube.metrics")

METRIC_RESOLUTION = 15.0  # seconds (metrics-server's --metric-resolution)
MAX_PARALLEL = 50  # kubelets asked at once


@message(tag="metrics._Scraped")
class _Scraped:
    """One scrape: the answers kept, and the nodes whose kubelet gave none to keep."""

    answers: tuple[ResourceMetrics, ...]
    failed: tuple[str, ...]


@message(tag="metrics._Run")
class _Run:
    pass


class MetricsServer(Actor):
    """The metrics server (see the module rules). ``server`` is the API server;
    ``token`` the metrics server's credentials (Kubernetes' service account
    kube-system/metrics-server, ClusterRole system:metrics-server). ``scrapes`` and
    ``failures`` count scrapes and the kubelets that gave nothing to keep in them."""

    def __init__(self, server: ActorRef, *, token: str,
                 metric_resolution: float = METRIC_RESOLUTION,
                 scrape_timeout: float | None = None,
                 max_parallel: int = MAX_PARALLEL) -> None:  # fmt: skip
        if not (isinstance(metric_resolution, int | float) and 0 < metric_resolution < math.inf):
            raise ValueError(f"metric_resolution must be a positive number of seconds, "
                             f"not {metric_resolution!r}")  # fmt: skip
        if scrape_timeout is None:
            scrape_timeout = 0.9 * metric_resolution
        if not (isinstance(scrape_timeout, int | float) and 0 < scrape_timeout < math.inf):
            raise ValueError(f"scrape_timeout must be a positive number of seconds, "
                             f"not {scrape_timeout!r}")  # fmt: skip
        if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
            raise ValueError(f"max_parallel must be a positive integer, not {max_parallel!r}")
        self.server = server
        self.token = token
        self.metric_resolution = float(metric_resolution)
        self.scrape_timeout = float(scrape_timeout)
        self.max_parallel = max_parallel
        self.store = MetricsStore()
        self.scrapes = 0
        self.failures = 0

    async def started(self) -> None:
        self.spawn(lambda: _Scraper(self), name=f"{self.ref.name}-scraper")

    @handler
    def on_scraped(self, msg: _Scraped) -> None:
        self.store.replace(msg.answers)
        self.scrapes += 1
        self.failures += len(msg.failed)

    @handler
    def on_query(self, msg: MetricsQuery) -> MetricsAnswer:
        return self.store.query(msg)


class _Scraper(Actor):
    """Scrapes for ``owner`` (see the module rules)."""

    def __init__(self, owner: MetricsServer) -> None:
        self.owner = owner.ref
        self.server = owner.server
        self.token = owner.token
        self.resolution = owner.metric_resolution
        self.timeout = owner.scrape_timeout
        self.max_parallel = owner.max_parallel

    async def started(self) -> None:
        self.ref.tell(_Run())

    @handler
    async def on_run(self, msg: _Run) -> None:
        nodes = Informer(ApiClient(self.system, self.server, token=self.token), "nodes")
        async with trio.open_nursery() as nursery:
            await nursery.start(nodes.run)
            tick = trio.current_time()
            while True:
                await self.owner.send(await self.scrape(targets(nodes.list())))
                now = trio.current_time()
                tick += self.resolution * (1 + math.floor((now - tick) / self.resolution))
                await trio.sleep_until(tick)

    async def scrape(self, kubelets: dict[str, str]) -> _Scraped:
        """Ask every kubelet in ``kubelets`` (node name -> address) at once."""
        kept: dict[str, ResourceMetrics] = {}
        limiter = trio.CapacityLimiter(self.max_parallel)

        async def one(node: str, address: str) -> None:
            async with limiter:
                answer = await self._ask(address)
            found = accepted(node, answer)
            if found is not None:
                kept[node] = found
            else:
                log.debug("no metrics from the kubelet of node %s: %r", node, answer)

        with trio.move_on_after(self.timeout):
            async with trio.open_nursery() as nursery:
                for node, address in sorted(kubelets.items()):
                    nursery.start_soon(one, node, address)
        failed = tuple(sorted(n for n in kubelets if n not in kept))
        return _Scraped(tuple(kept[n] for n in sorted(kept)), failed)

    async def _ask(self, address: str) -> object:
        try:
            return await self.system.ref(address).ask(GetResourceMetrics(), timeout=self.timeout)
        except (ActorError, ValueError) as e:  # gone, slow, or not an address
            return e
