"""A distributed cluster (every component its own process) for end-to-end tests, and a
client that keeps working through it while processes are killed.

``ZeroDowntimeClient`` is the official Kubernetes Python client behind a retry policy:
a request that fails (no connection, a timeout, a 5xx or 429 answer) is tried again
after 0.2 s, for up to ``budget`` seconds; a create retried after an answer that never
came counts when the object is there with the data it sent (the first try was
applied). An update carries the resourceVersion it read, so a try whose answer was
lost but that a server applies later (one that was hung, then resumed) is refused
as a conflict instead of undoing what came after it. Anything else, or a request
still failing after the budget, is a failure. It records when each request
succeeded: the longest gap between two successes is the downtime a user saw.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

import trio
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from actorkube.actor import ActorSystem, Address
from actorkube.actor._tcp import TcpTransport
from actorkube.apiserver import ApiRequest
from actorkube.cli._cluster import transport as cluster_transport
from actorkube.cli.distributed import DistributedCluster
from actorkube.cli.etcdctl import MEMBER
from actorkube.raft import GetStatus

RETRYABLE = {429, 500, 502, 503, 504}
CONFLICT = object()


@asynccontextmanager
async def distributed_cluster(data_dir: Path, **options):
    """A ``DistributedCluster`` running (its load balancer on a free port) for the block;
    every process stopped after it. Yields (cluster, kubeconfig path)."""
    said: list[str] = []
    cluster = DistributedCluster(data_dir, port=0, say=said.append, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.run)
        try:
            yield cluster, data_dir / "admin.kubeconfig"
        finally:
            nursery.cancel_scope.cancel()
            print("\n".join(said))


def kill(cluster: DistributedCluster, name: str) -> int:
    """kill -9 the process ``name``; its pid."""
    pid = cluster.supervisor.pids[name]
    os.kill(pid, signal.SIGKILL)
    return pid


async def etcd_leader(cluster: DistributedCluster) -> int:
    """The id of the etcd member that says it leads, asked over the transport as any
    process of the cluster would (None answers are retried for up to 30 s)."""
    async with ActorSystem(name=f"test-{uuid.uuid4().hex[:8]}") as system:
        transport = cluster_transport(system, cluster.files)
        await transport.start()
        system.transport = transport
        with trio.fail_after(30):
            while True:
                for node, address in cluster.layout.etcd.items():
                    ref = system.ref(str(Address(address, MEMBER)))
                    try:
                        status = await ref.ask(GetStatus(), timeout=2)
                    except Exception:
                        continue
                    if status.role == "leader":
                        await transport.aclose()
                        return node
                await trio.sleep(0.2)


class ZeroDowntimeClient:
    """See the module."""

    def __init__(self, kubeconfig: Path, *, budget: float = 30.0) -> None:
        configuration = k8s.Configuration()
        k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.retries = False  # the retry policy is ours
        self.api = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api)
        self.apps = k8s.AppsV1Api(self.api)
        self.budget = budget
        self.successes: list[float] = []
        self.failures: list[str] = []
        self.retries = 0

    async def call(self, what: str, fn, *args, created: dict | None = None,
                   conflict: bool = False, **kwargs):  # fmt: skip
        """``fn(*args, **kwargs)`` in a thread under the retry policy; its result, or
        None once it failed for good (recorded in ``failures``). ``conflict``: a 409 is
        an answer (``CONFLICT``: the caller reads again), not a failure."""
        deadline = time.monotonic() + self.budget
        tried = False
        while True:
            try:
                result = await trio.to_thread.run_sync(
                    lambda: fn(*args, _request_timeout=5, **kwargs))
                self.successes.append(time.monotonic())
                return result
            except ApiException as e:
                if conflict and e.status == 409:
                    self.successes.append(time.monotonic())
                    return CONFLICT
                if created is not None and tried and e.status == 409:
                    # A create whose first answer was lost: it counts if what is there
                    # is what was sent.
                    name = created["metadata"]["name"]
                    there = await self.call(f"read back {name}",
                                            self.core.read_namespaced_config_map,
                                            name, "default")  # fmt: skip
                    if there is not None and there.data == created["data"]:
                        return there
                    self.failures.append(f"{what}: 409 and the object differs")
                    return None
                if e.status not in RETRYABLE:
                    self.failures.append(f"{what}: {e.status} {e.reason}: {e.body}")
                    return None
                error = f"{e.status} {e.reason}"
            except Exception as e:  # no connection, reset, timeout
                error = f"{type(e).__name__}: {e}"
            tried = True
            self.retries += 1
            if time.monotonic() > deadline:
                self.failures.append(f"{what}: still failing after {self.budget} s: {error}")
                return None
            await trio.sleep(0.2)

    def longest_gap(self) -> float:
        times = self.successes
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def kubectl_json(kubectl, config, cache, *args: str) -> dict:
    code, out, err = await kubectl(config, cache, *args, "-o", "json")
    assert code == 0, f"kubectl {' '.join(args)}: {err}"
    return json.loads(out)


async def as_a_node(cluster: DistributedCluster, token: bytes) -> dict[str, str]:
    """What a process holding a node's transport secret ``token`` gets when it asks an
    etcd member for its status, the API server's front actor for a version, and one of
    the API server's workers directly: each the answer's type or the error's text."""
    seen = {}
    async with ActorSystem(name=f"node-probe-{uuid.uuid4().hex[:8]}") as system:
        transport = TcpTransport(system, token=token, realm="guest", unreachable_after=2.0)
        await transport.start()
        system.transport = transport
        api = cluster.layout.apiservers[0]["listen"]
        member = next(iter(cluster.layout.etcd.values()))
        for what, address, msg in (
            ("etcd", str(Address(member, MEMBER)), GetStatus()),
            ("apiserver", str(Address(api, "apiserver")),
             ApiRequest("get", "", path="/version")),
            ("worker", str(Address(api, "apiserver-worker-0")),
             ApiRequest("get", "", path="/version")),
        ):  # fmt: skip
            try:
                seen[what] = type(await system.ref(address).ask(msg, timeout=10)).__name__
            except Exception as e:
                seen[what] = str(e)
        await transport.aclose()
    return seen
