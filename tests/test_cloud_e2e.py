"""The cloud controller manager in ``actorkube up``, with the real kubectl and real
processes: the node is initialised from its in-memory cloud instance (providerID,
zone and instance-type labels, the uninitialized taint gone), a Service of type
LoadBalancer gets an ingress IP where a client reaches the pods (load balancer ->
node port -> kube-proxy -> pod), and deleting the Service deletes its load balancer."""

from __future__ import annotations

import json

import trio
from kubectl_run import kubectl
from test_node_e2e import get_text
from up_run import start, stop

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{
                              "name": "web", "image": "python:3.11",
                              "command": ["sh", "-c",
                                          "exec python -u -m http.server 8080 --bind $POD_IP"],
                              "readinessProbe": {"tcpSocket": {"port": 8080},
                                                 "periodSeconds": 1}}]}}},
}  # fmt: skip


async def test_a_load_balancer_service_reaches_its_pods_and_goes_with_it(tmp_path):
    process, config = await start(tmp_path / "cluster")
    cache = tmp_path / "cache"

    async def k(*args: str, stdin: bytes = b"") -> str:
        code, out, err = await kubectl(config, cache, *args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out

    try:
        # The node, initialised by the cloud's node controller.
        await k("wait", "--for=jsonpath={.spec.providerID}=inmemory://i-00000001", "nodes",
                "--all", "--timeout=60s")  # fmt: skip
        [node] = json.loads(await k("get", "nodes", "-o", "json"))["items"]
        labels = node["metadata"]["labels"]
        assert labels["topology.kubernetes.io/zone"] == "local-a"
        assert labels["node.kubernetes.io/instance-type"] == "local.process"
        taints = [t["key"] for t in node["spec"].get("taints") or ()]
        assert "node.cloudprovider.kubernetes.io/uninitialized" not in taints

        await k("create", "-f", "-", stdin=json.dumps(DEPLOYMENT).encode())
        await k("expose", "deployment", "web", "--type=LoadBalancer", "--port=80",
                "--target-port=8080")  # fmt: skip
        await k("rollout", "status", "deployment/web", "--timeout=90s")
        await k("wait", "--for=jsonpath={.status.loadBalancer.ingress[0].ip}", "service/web",
                "--timeout=60s")  # fmt: skip
        ip = await k("get", "service", "web", "-o",
                     "jsonpath={.status.loadBalancer.ingress[0].ip}")  # fmt: skip
        assert ip.startswith("127.200."), ip
        row = (await k("get", "service", "web")).splitlines()[1].split()
        assert row[1] == "LoadBalancer" and row[3] == ip  # EXTERNAL-IP

        # Through the load balancer to a pod (once kube-proxy has the node port's
        # endpoints: a refused connection is retried, a wrong answer is not).
        with trio.fail_after(60):
            while True:
                try:
                    listing = await get_text(ip, 80)
                    break
                except OSError:
                    await trio.sleep(0.2)
        assert "Directory listing" in listing

        # Deleting the Service deletes its load balancer: nothing listens there then.
        await k("delete", "service", "web", "--timeout=60s")
        with trio.fail_after(30):
            while True:
                try:
                    await get_text(ip, 80)
                except OSError:
                    break
                await trio.sleep(0.2)
    finally:
        assert await stop(process) == 0
