"""A cluster for the real kubectl to drive streams into pods (exec, cp, port-forward):
an HTTPS API server, a one-member etcd group and one node, ``n1``, whose pods are real
processes (``ProcessRuntime``)."""

from __future__ import annotations

import json

import trio
from http_cluster import serve_front_end
from kubectl_run import kubectl
from root_ca import publish_root_ca

from actorkube.actor import ActorSystem
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node.runtime import ProcessRuntime
from actorkube.pki import ClusterPki, kubeconfig

TOKENS = """\
admin-token,admin,1,system:masters
alice-token,alice,2
node-token,system:node:n1,3,system:nodes
"""
WAIT = 60


async def node_cluster(tmp_path, nursery: trio.Nursery, pod: dict):
    """The cluster with ``pod`` (on ``n1``) ready: ``(run, alice, url, pki)``, where
    ``run(*args)`` runs kubectl as the admin (or as alice, who has no role, with
    ``config=alice``)."""
    system = await nursery.start(_system)
    pki = ClusterPki.load_or_create(tmp_path / "pki")
    api = await start_apiserver(
        system, start_group(system, 1, tick_interval=0.05).client(name="apiserver", timeout=30),
        tokens=parse_token_file(TOKENS), client_ca=pki.ca.cert, seed=1,
    )  # fmt: skip
    await api.ready()
    await publish_root_ca(system, api, pki.ca.cert)
    runtime = ProcessRuntime(tmp_path / "runtime", "127.77.0.0/24",
                             wall_clock=system.clock.now)
    await nursery.start(runtime.run)
    node = NodeConfig("n1", capacity={"cpu": "2", "memory": "4Gi", "pods": "10"})
    config = KubeletConfig(node, root_dir=tmp_path / "kubelet")
    system.spawn(lambda: Kubelet(api.ref, runtime, config, token="node-token"), name="kubelet")

    url = await serve_front_end(system, nursery, api, pki)
    admin = tmp_path / "admin.kubeconfig"
    admin.write_text(kubeconfig(url, pki.ca.cert, user="admin", token="admin-token"))
    alice = tmp_path / "alice.kubeconfig"
    alice.write_text(kubeconfig(url, pki.ca.cert, user="alice", token="alice-token"))

    async def run(*args: str, stdin: bytes = b"", config=admin):
        return await kubectl(config, tmp_path / "cache", *args, stdin=stdin)

    code, _, err = await run("create", "-f", "-", stdin=json.dumps(pod).encode())
    assert code == 0, err
    name = pod["metadata"]["name"]
    code, _, err = await run("wait", "--for=condition=Ready", f"pod/{name}", f"--timeout={WAIT}s")
    assert code == 0, err
    return run, alice, url, pki


async def _system(task_status=trio.TASK_STATUS_IGNORED):
    async with ActorSystem(name="kubectl-node-test") as system:
        task_status.started(system)
        await trio.sleep_forever()
