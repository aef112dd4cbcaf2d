"""A node end to end, as a user meets it: ``actorkube up`` (one node whose pods are real
processes) driven by the real kubectl. A Deployment of three pods of a small HTTP server
behind a Service: 300 requests to the cluster IP spread evenly over them; a killed container
process is restarted and its restartCount goes up; a failing liveness probe restarts a
container; ``kubectl logs`` shows the server's output; a pod resolves the Service's
name through the cluster DNS; the official Python client in a pod reaches the API
server with its in-cluster configuration; deleting a pod stops its process with SIGTERM (the
server's own handler runs) and removes it, and the Deployment replaces it;
``kubectl rollout restart``, ``history``, ``undo`` and ``status`` work."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import trio
from kubectl_run import kubectl
from up_run import start, stop

SERVER = str(Path(__file__).parent / "node_programs" / "echo_server.py")


def echo_pod(name: str, marker_dir: str, *, sick: bool = False) -> dict:
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           {"name": "MARKER_DIR", "value": "/markers"}]  # fmt: skip
    if sick:
        env.append({"name": "SICK", "value": "1"})
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1,
             "failureThreshold": 2}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "sick" if sick else "echo"}},
        "spec": {
            "containers": [{
                "name": "server", "image": "python:3.11",
                "command": ["python", "-u", SERVER, "8080"],
                "ports": [{"name": "http", "containerPort": 8080}],
                "env": env,
                "livenessProbe": probe,
                "readinessProbe": {**probe, "failureThreshold": 1},
                "volumeMounts": [{"name": "markers", "mountPath": "/markers"}],
            }],
            "volumes": [{"name": "markers", "hostPath": {"path": marker_dir}}],
            "terminationGracePeriodSeconds": 20,
        },
    }  # fmt: skip


IN_CLUSTER = """
import os
from kubernetes import client, config
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(client.V1SelfSubjectReview())
print(review.status.user_info.username)
print(open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read())
print(os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"])
"""
IN_CLUSTER_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "in-cluster"},
                  "spec": {"restartPolicy": "Never", "containers": [{
                      "name": "client", "image": "python:3.11",
                      "command": ["python", "-c", IN_CLUSTER]}]}}  # fmt: skip


def echo_deployment(marker_dir: str) -> dict:
    pod = echo_pod("", marker_dir)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "echo"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "echo"}},
                     "template": {"metadata": {"labels": {"app": "echo"}},
                                  "spec": pod["spec"]}}}  # fmt: skip


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "echo"},
    "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": "http"}]},
}


async def get_text(ip: str, port: int, path: str = "/") -> str:
    """One HTTP/1.0 GET on a new connection; the body."""
    stream = await trio.open_tcp_stream(ip, port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


async def test_pods_behind_a_service_with_restarts_probes_logs_and_deletion(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    cache = tmp_path / "cache"
    process, config = await start(tmp_path / "cluster")

    async def k(*args: str, stdin: bytes = b"") -> str:
        code, out, err = await kubectl(config, cache, *args, stdin=stdin)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out

    async def jsonpath(kind: str, name: str, path: str) -> str:
        return await k("get", kind, name, "-o", f"jsonpath={path}")

    try:
        manifests = [echo_deployment(str(markers)), SERVICE,
                     echo_pod("sick", str(markers), sick=True)]  # fmt: skip
        for m in manifests:
            await k("create", "-f", "-", stdin=json.dumps(m).encode())
        rolled = await k("rollout", "status", "deployment/echo", "--timeout=90s")
        assert 'deployment "echo" successfully rolled out' in rolled
        names = (await k("get", "pods", "-l", "app=echo", "-o",
                         "jsonpath={.items[*].metadata.name}")).split()  # fmt: skip
        assert len(names) == 3 and all(n.startswith("echo-") for n in names)
        ip = await jsonpath("service", "echo", "{.spec.clusterIP}")
        assert ip.startswith("127.")

        # Once kube-proxy has all three endpoints, round robin spreads 300 requests.
        with trio.fail_after(60):
            while len((await jsonpath("endpoints", "echo", "{.subsets[*].addresses[*].ip}"))
                      .split()) < 3:  # fmt: skip
                await k("wait", "--for=jsonpath={.subsets[0].addresses[2].ip}",
                        "endpoints/echo", "--timeout=30s")  # fmt: skip
            while True:  # the proxy programs the service a moment after the endpoints
                try:
                    seen = Counter([await get_text(ip, 80)])
                    break
                except OSError:
                    await trio.sleep(0.1)
            for _ in range(300):
                seen[await get_text(ip, 80)] += 1
        assert set(seen) == set(names)
        for name in names:
            assert 90 <= seen[name] <= 112, seen

        # kubectl logs shows what the server wrote.
        logs = await k("logs", names[0])
        assert "listening on " in logs and "served /" in logs

        # A killed container process is restarted, and counted.
        pod_ip = await jsonpath("pod", names[1], "{.status.podIP}")
        killed = _kill_server(pod_ip)
        assert killed
        await k("wait", "--for=jsonpath={.status.containerStatuses[0].restartCount}=1",
                f"pod/{names[1]}", "--timeout=60s")  # fmt: skip
        last = json.loads(await jsonpath("pod", names[1],
                                         "{.status.containerStatuses[0].lastState}"))  # fmt: skip
        assert last["terminated"]["exitCode"] == 137
        assert "listening" in await k("logs", names[1], "--previous")

        # A failing liveness probe restarts its container.
        await k("wait", "--for=jsonpath={.status.containerStatuses[0].restartCount}=1",
                "pod/sick", "--timeout=60s")  # fmt: skip

        # The cluster DNS: a pod finds the Service by its full name and by the short one
        # its resolv.conf's search path completes.
        lookup = ("import socket; print(socket.gethostbyname('echo.default.svc.cluster.local'));"
                  " print(socket.gethostbyname('echo'))")  # fmt: skip
        resolver = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "resolver"},
                    "spec": {"restartPolicy": "Never", "containers": [{
                        "name": "lookup", "image": "python:3.11",
                        "command": ["python", "-c", lookup]}]}}  # fmt: skip
        await k("create", "-f", "-", stdin=json.dumps(resolver).encode())
        await k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/resolver",
                "--timeout=60s")  # fmt: skip
        assert (await k("logs", "resolver")).split() == [ip, ip]

        # An in-cluster client: the official Python client's in-cluster configuration
        # (KUBERNETES_SERVICE_HOST/PORT, the mounted token and CA) reaches the API server
        # through the kubernetes Service's cluster IP, as the pod's service account.
        await k("create", "-f", "-", stdin=json.dumps(IN_CLUSTER_POD).encode())
        await k("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/in-cluster",
                "--timeout=60s")  # fmt: skip
        said = (await k("logs", "in-cluster")).split()
        assert said == ["system:serviceaccount:default:default", "default", "127.96.0.1:443"]

        # Deletion: SIGTERM, the server's handler runs (its marker), then the pod goes.
        doomed_ip = await jsonpath("pod", names[2], "{.status.podIP}")
        assert _server_pids(doomed_ip)
        started = trio.current_time()
        await k("delete", "pod", names[2], "--wait=true", "--timeout=60s")
        assert trio.current_time() - started < 20  # its own 1 s, not the 20 s grace
        assert (markers / names[2]).read_text() == "SIGTERM\n"
        assert not _server_pids(doomed_ip)

        # The Deployment replaced it; a restart rolls every pod, and undo rolls back.
        await k("rollout", "status", "deployment/echo", "--timeout=90s")
        await k("rollout", "restart", "deployment/echo")
        await k("rollout", "status", "deployment/echo", "--timeout=120s")
        history = await k("rollout", "history", "deployment/echo")
        assert history.split()[-2:] == ["2", "<none>"], history
        await k("rollout", "undo", "deployment/echo")
        await k("rollout", "status", "deployment/echo", "--timeout=120s")
        annotation = "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        assert await jsonpath("deployment", "echo", annotation) == "3"
        assert await jsonpath("deployment", "echo", "{.status.availableReplicas}") == "3"
    finally:
        assert await stop(process) == 0
    assert not _server_pids(None), "a pod's process outlived the cluster"


def _server_pids(pod_ip: str | None) -> list[int]:
    """Processes running the echo server (those bound to ``pod_ip``, or all)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if SERVER.encode() not in cmdline or str(os.getpid()) == entry:
            continue
        if pod_ip is None or f"POD_IP={pod_ip}".encode() in environ:
            pids.append(int(entry))
    return pids


def _kill_server(pod_ip: str) -> bool:
    pids = _server_pids(pod_ip)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return bool(pids)

