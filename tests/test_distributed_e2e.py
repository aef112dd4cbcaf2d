"""``actorkube up --distributed`` end to end: every component its own process, killed
with SIGKILL while a client keeps working through the API load balancer.

1. The etcd leader, an API server, the active controller manager and the active
   scheduler are killed one after the other, and another API server is hung (SIGSTOP:
   its sockets stay open): the client (the official Python client
   behind a retry policy, ``distributed_run.ZeroDowntimeClient``) sees no request fail
   beyond that policy, every acknowledged object is there, and the workload it scales
   converges (its last scale-up needs the new scheduler and controller manager). The
   longest gap between two successful requests is printed: that is the downtime.
2. The whole control plane killed at once during writes comes back (restarted by the
   supervisor) with every acknowledged write.
3. A node's processes killed and held down: its pods are evicted once the node is
   Unknown (grace period shortened by a flag) and their tolerations run out, and the
   Deployment's pods run on the other nodes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import sys

import trio
from distributed_run import (
    CONFLICT,
    ZeroDowntimeClient,
    as_a_node,
    distributed_cluster,
    etcd_leader,
    kill,
)
from kubectl_run import PortForward, kubectl, round_trip

PAUSE = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "load"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "load"}},
             "template": {"metadata": {"labels": {"app": "load"}},
                          "spec": {"terminationGracePeriodSeconds": 1,
                                   "containers": [{"name": "pause",
                                                   "image": "registry.k8s.io/pause:3.10"}]}}},
}  # fmt: skip


# What kubectl prints when its connection, not its request, failed (a server killed or
# hung under it): tried again, as the Python client's retry policy does.
_UNREACHED = ("Unable to connect to the server", "TLS handshake timeout", "connection refused",
              "connection reset", "EOF", "ServiceUnavailable")  # fmt: skip


def _k(config, cache, budget: float = 30.0):
    async def k(*args: str, stdin: bytes = b"") -> str:
        deadline = trio.current_time() + budget
        while True:
            code, out, err = await kubectl(config, cache, *args, stdin=stdin)
            if code == 0 or not any(text in err for text in _UNREACHED):
                break
            if trio.current_time() > deadline:
                break
            await trio.sleep(0.2)
        assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return out

    return k


async def _until(condition, what: str, timeout: float = 60.0) -> None:
    """Poll a real cluster's ``condition`` (an async callable) until it holds."""
    with trio.fail_after(timeout):
        while not await condition():
            await trio.sleep(0.2)


class Writer:
    """Creates ConfigMaps ``cm-0``, ``cm-1``, ... and reads each back; every fifth one
    it scales the ``load`` Deployment to ``replicas`` (when set)."""

    def __init__(self, client: ZeroDowntimeClient) -> None:
        self.client = client
        self.acknowledged: dict[str, dict] = {}
        self.replicas: int | None = None
        self.done = False

    async def run(self) -> None:
        i = 0
        while not self.done:
            name = f"cm-{i}"
            body = {"metadata": {"name": name}, "data": {"i": str(i)}}
            created = await self.client.call(f"create {name}",
                                             self.client.core.create_namespaced_config_map,
                                             "default", body, created=body)  # fmt: skip
            if created is not None:
                self.acknowledged[name] = body["data"]
                read = await self.client.call(f"read {name}",
                                              self.client.core.read_namespaced_config_map,
                                              name, "default")  # fmt: skip
                assert read is None or read.data == body["data"]
            if i % 5 == 0 and self.replicas is not None:
                await self.scale(self.replicas)
            i += 1

    async def scale(self, replicas: int) -> None:
        """Read, then write with the version read (see distributed_run)."""
        apps = self.client.apps
        while True:
            scale = await self.client.call("read scale", apps.read_namespaced_deployment_scale,
                                           "load", "default")  # fmt: skip
            if scale is None:
                return
            body = {"metadata": {"name": "load", "namespace": "default",
                                 "resourceVersion": scale.metadata.resource_version},
                    "spec": {"replicas": replicas}}  # fmt: skip
            done = await self.client.call("scale", apps.replace_namespaced_deployment_scale,
                                          "load", "default", body, conflict=True)  # fmt: skip
            if done is not CONFLICT:
                return

    async def wait_acks(self, more: int) -> None:
        target = len(self.acknowledged) + more
        await _until(lambda: _true(len(self.acknowledged) >= target), f"{more} writes", 90)


async def _true(value: bool) -> bool:
    return value


async def _holder_identity(k, lease: str) -> str:
    """The lease's holder: ``replica_host_uuid``, the uuid new in each process."""
    return await k("get", "lease", "-n", "kube-system", lease, "-o",
                   "jsonpath={.spec.holderIdentity}")  # fmt: skip


async def _all_there(client: ZeroDowntimeClient, acknowledged: dict[str, dict]) -> None:
    items = await client.call("list", client.core.list_namespaced_config_map, "default")
    assert items is not None
    found = {cm.metadata.name: cm.data for cm in items.items}
    lost = {n for n, data in acknowledged.items() if found.get(n) != data}
    assert not lost, f"acknowledged writes lost: {sorted(lost)}"


async def test_killing_each_leader_in_turn_fails_no_request(tmp_path):
    async with distributed_cluster(tmp_path / "cluster", nodes=3, apiservers=3) as (cluster,
                                                                                     config):
        k = _k(config, tmp_path / "cache")
        await k("create", "-f", "-", stdin=json.dumps(PAUSE).encode())
        await k("rollout", "status", "deployment/load", "--timeout=120s")
        # Pods find every API server through the kubernetes Service: one subset (and
        # port) per server, all on 127.0.0.1 here.
        await k("wait", "--for=jsonpath={.subsets[2].ports[0].name}=https",
                "endpoints/kubernetes", "--timeout=60s")  # fmt: skip
        endpoints = json.loads(await k("get", "endpoints", "kubernetes", "-o", "json"))
        assert sorted(s["ports"][0]["port"] for s in endpoints["subsets"]) == sorted(
            a["https"] for a in cluster.layout.apiservers)
        client = ZeroDowntimeClient(config)
        writer = Writer(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.wait_acks(10)
            writer.replicas = 3
            killed = []
            held: dict[str, str] = {}  # lease -> the identity that held it when killed
            for victim in ("etcd", "apiserver", "hung", "kube-controller-manager",
                           "kube-scheduler"):  # fmt: skip
                # Each looked up just before it is killed: leadership may have moved.
                if victim == "etcd":
                    name = f"etcd-{await etcd_leader(cluster)}"
                elif victim == "apiserver":
                    name = "apiserver-1"
                elif victim == "hung":
                    name = "apiserver-2"
                else:
                    held[victim] = await _holder_identity(k, victim)
                    name = held[victim].split("_")[0]
                    assert name, f"nobody holds the {victim} lease"
                if victim == "hung":
                    # Stopped, not dead: its sockets stay open and accept. Heartbeats and
                    # the load balancer's health checks must tell.
                    os.kill(cluster.supervisor.pids[name], signal.SIGSTOP)
                else:
                    # The API server stays down while the others are killed: clients
                    # must fail over, not reconnect to a new process on its address.
                    if victim == "apiserver":
                        cluster.supervisor.hold(name)
                    kill(cluster, name)
                killed.append(name)
                await writer.wait_acks(20)
            # A scale-up after every kill: new pods need the new leaders.
            writer.replicas = 5
            await writer.wait_acks(20)
            os.kill(cluster.supervisor.pids["apiserver-2"], signal.SIGCONT)
            cluster.supervisor.release("apiserver-1")
            await writer.wait_acks(10)
            writer.done = True
        print(f"killed {killed}; {len(client.successes)} requests succeeded, "
              f"{client.retries} retried; longest gap {client.longest_gap():.2f} s")
        assert not client.failures, client.failures
        # Not a timing test, a bound on an outage: failing over takes the transport's
        # peer timeout (2 s) and a retry, not a lease or a restart.
        assert client.longest_gap() < 15.0
        await _all_there(client, writer.acknowledged)
        # The scale to 5 stands (a late write would have undone it) and is carried out.
        # Watched, not read once: a watch served by the API server that was hung starts
        # from its cache, which may lag for a moment after it resumes (Kubernetes' watch
        # caches lag the same way), so "rollout status" may see an older generation's
        # completion first.
        deployment = json.loads(await k("get", "deployment", "load", "-o", "json"))
        assert deployment["spec"]["replicas"] == 5
        await k("wait", "--for=jsonpath={.status.readyReplicas}=5", "deployment/load",
                "--timeout=120s")  # fmt: skip
        # The killed leaders were replaced: the leases name other processes now (the
        # standby, or the killed replica restarted by the supervisor, which may win the
        # expired lease first: its identity is new).
        for lease in ("kube-controller-manager", "kube-scheduler"):
            now = await _holder_identity(k, lease)
            assert now and now != held[lease], (lease, now)


async def test_the_whole_control_plane_killed_during_writes_loses_nothing_acknowledged(tmp_path):
    async with distributed_cluster(tmp_path / "cluster", nodes=1, apiservers=2) as (cluster,
                                                                                     config):
        client = ZeroDowntimeClient(config, budget=90.0)
        writer = Writer(client)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.wait_acks(30)
            control_plane = [n for n in cluster.processes
                             if n.startswith(("etcd-", "apiserver-", "controller-manager-",
                                              "scheduler-"))]  # fmt: skip
            for name in control_plane:
                kill(cluster, name)
            await writer.wait_acks(30)
            writer.done = True
        print(f"{len(writer.acknowledged)} writes acknowledged; longest gap "
              f"{client.longest_gap():.2f} s")
        assert not client.failures, client.failures
        await _all_there(client, writer.acknowledged)


async def test_a_killed_node_has_its_pods_rescheduled(tmp_path):
    grace = {"controller-manager": ["--node-monitor-grace-period", "8"]}
    async with distributed_cluster(tmp_path / "cluster", nodes=3, apiservers=1,
                                   extra_args=grace) as (cluster, config):  # fmt: skip
        k = _k(config, tmp_path / "cache")
        deployment = json.loads(json.dumps(PAUSE))
        spec = deployment["spec"]
        spec["replicas"] = 4
        spec["template"]["spec"]["tolerations"] = [
            {"key": f"node.kubernetes.io/{key}", "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": 2} for key in ("not-ready", "unreachable")]  # fmt: skip
        await k("create", "-f", "-", stdin=json.dumps(deployment).encode())
        await k("rollout", "status", "deployment/load", "--timeout=120s")
        pods = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
        victim = pods[0]["spec"]["nodeName"]
        on_victim = {p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == victim}
        for name in (f"kubelet-{victim}", f"proxy-{victim}"):
            cluster.supervisor.hold(name)
            kill(cluster, name)

        async def moved() -> bool:
            items = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
            running = [p for p in items if not p["metadata"].get("deletionTimestamp")
                       and p["status"].get("phase") == "Running"
                       and any(c["type"] == "Ready" and c["status"] == "True"
                               for c in p["status"].get("conditions") or ())]  # fmt: skip
            return len(running) == 4 and all(p["spec"]["nodeName"] != victim for p in running)

        await _until(moved, "the pods to run elsewhere", timeout=120)
        node = json.loads(await k("get", "node", victim, "-o", "json"))
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "Unknown"
        taints = {t["key"] for t in node["spec"].get("taints") or ()}
        assert "node.kubernetes.io/unreachable" in taints
        # The victim's pods were evicted: gone, or Terminating until the node answers
        # again (nobody can confirm they stopped), as in Kubernetes.
        items = json.loads(await k("get", "pods", "-l", "app=load", "-o", "json"))["items"]
        assert on_victim
        assert all(p["metadata"].get("deletionTimestamp") for p in items
                   if p["metadata"]["name"] in on_victim)  # fmt: skip


async def _actorkube(*args: str) -> tuple[int, str]:
    done = await trio.run_process([sys.executable, "-m", "actorkube", *args], check=False,
                                  capture_stdout=True, capture_stderr=True)  # fmt: skip
    return done.returncode, (done.stdout + done.stderr).decode()


async def test_a_node_joins_with_a_bootstrap_token(tmp_path):
    async with distributed_cluster(tmp_path / "cluster", nodes=1, apiservers=1) as (cluster,
                                                                                     config):
        k = _k(config, tmp_path / "cache")
        code, out = await _actorkube("token", "create", "--data-dir", str(cluster.data_dir))
        assert code == 0, out
        join = out.split()  # actorkube join URL --token T --discovery-token-ca-cert-hash H
        assert join[:2] == ["actorkube", "join"] and join[3] == "--token", join
        node_dir = tmp_path / "node"
        flags = ["--data-dir", str(node_dir), "--node-name", "joined", "--node-ip", "127.1.0.9",
                 "--pod-cidr", "127.250.0.0/16"]  # fmt: skip

        # A wrong CA pin is refused before anything is sent with the token.
        code, out = await _actorkube(*join[1:-1], "sha256:" + "0" * 64, *flags)
        assert code == 1 and "are pinned" in out, out
        assert not (node_dir / "nodes" / "joined" / "join.json").exists()

        async def run_node(*args: str):
            return await trio.lowlevel.open_process(
                [sys.executable, "-m", "actorkube", *args, *flags])

        node = await run_node(*join[1:])
        try:
            async def registered() -> bool:
                code, _, _ = await kubectl(config, tmp_path / "cache", "get", "node", "joined")
                return code == 0

            await _until(registered, "the joined node's Node", timeout=60)
            try:
                await k("wait", "--for=condition=Ready", "node/joined", "--timeout=60s")
            except AssertionError:  # say what the node reported
                print(await k("get", "node", "joined", "-o", "yaml"))
                raise
            [csr] = json.loads(await k("get", "csr", "-o", "json"))["items"]
            assert csr["spec"]["username"] == f"system:bootstrap:{join[4].split('.')[0]}"
            assert csr["status"]["certificate"]
            assert {c["type"] for c in csr["status"]["conditions"]} == {"Approved"}
            await _runs_a_pod(k, "there", config, tmp_path / "cache")
        finally:
            node.terminate()
            await node.wait()
        # The node's transport secret reaches the API server's front actor only: not
        # etcd, not the API server's other actors.
        token = (node_dir / "pki" / "node-transport.token").read_bytes()
        seen = await as_a_node(cluster, token)
        assert seen["apiserver"] == "ApiResponse", seen
        assert "not permitted for guests" in seen["worker"], seen
        assert seen["etcd"] != "Status", seen
        assert not (node_dir / "pki" / "transport.token").exists()
        # Started again it has its credentials: no token needed (it may have expired).
        node = await run_node(*join[1:3])
        try:
            await _runs_a_pod(k, "again", config, tmp_path / "cache")
        finally:
            node.terminate()
            await node.wait()


ECHO = """
import os, socket
server = socket.create_server((os.environ["POD_IP"], 7000))
while True:
    conn = server.accept()[0]
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.close()
"""


async def _runs_a_pod(k, name: str, config, cache) -> None:
    """A pod on the joined node gets Ready, with an address of the node's pod CIDR, and
    what it logged comes back through the API server (from the node's kubelet, over the
    transport), followed too; kubectl exec runs a command in it, and kubectl
    port-forward reaches what it serves."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"nodeName": "joined", "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "c", "image": "python:3.11", "command": [
                        "sh", "-c", "echo hello from $POD_IP; exec python3 -c \"$0\"",
                        ECHO], "readinessProbe": {"tcpSocket": {"port": 7000},
                                                  "periodSeconds": 1}}]}}  # fmt: skip
    await k("create", "-f", "-", stdin=json.dumps(pod).encode())
    await k("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s")
    ip = json.loads(await k("get", "pod", name, "-o", "json"))["status"]["podIP"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("127.250.0.0/16")
    assert (await k("logs", name)).strip() == f"hello from {ip}"
    # Streams from the node's kubelet into the API server's process: a followed log
    # (ended by its byte limit), and a command run in the container with its stdin.
    with trio.fail_after(60):
        assert await k("logs", "-f", name, "--limit-bytes=5") == "hello"
        assert await k("exec", "-i", name, "--", "sh", "-c", "cat; echo $HOSTNAME",
                       stdin=b"to the node\n") == f"to the node\n{name}\n"  # fmt: skip
        data = os.urandom(1_000_000)
        async with PortForward(config, cache, f"pod/{name}", 7000) as forward:
            await forward.ready()
            assert await round_trip(forward.local, data) == data


async def test_etcd_members_change_and_a_snapshot_restores_the_cluster(tmp_path):
    data, backup = tmp_path / "cluster", tmp_path / "backup.db"

    async def etcd(*args: str) -> str:
        code, out = await _actorkube("etcd", "--data-dir", str(data), *args)
        assert code == 0, out
        return out

    async def members() -> list[list[str]]:
        return [row.split() for row in (await etcd("member", "list")).splitlines()[1:]]

    async with distributed_cluster(data, nodes=0, apiservers=1) as (_, config):
        k = _k(config, tmp_path / "cache")
        await k("create", "configmap", "before", "--from-literal=a=1")
        assert "saved revision" in await etcd("snapshot", "save", str(backup))
        await k("create", "configmap", "after", "--from-literal=a=2")

        # A fourth member: added, started as a process of its own, caught up and made a
        # voter; then removed, and its process ends.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        start = (await etcd("member", "add", f"127.0.0.1:{port}")).splitlines()[-1].split()
        assert start[:4] == ["actorkube", "etcd", "--id", "4"], start
        fourth = await trio.lowlevel.open_process(
            [sys.executable, "-m", *start, "--data-dir", str(data)])
        try:
            async def voting() -> bool:
                return ["4", "started", "etcd-4", f"ak://127.0.0.1:{port}/etcd",
                        "false"] in await members()  # fmt: skip

            await _until(voting, "member 4 to vote", timeout=60)
            await k("create", "configmap", "with-four", "--from-literal=a=3")
            await etcd("member", "remove", "4")
            with trio.fail_after(30):
                assert await fourth.wait() == 0
        finally:
            fourth.kill()
        assert [m[0] for m in await members()] == ["1", "2", "3"]
        await k("create", "configmap", "without-four", "--from-literal=a=4")

    # Restored into the stopped cluster: what the backup held, nothing after it, and
    # resourceVersions go on from the backup's revision.
    (data / "etcd").rename(tmp_path / "etcd-before-restore")
    assert "restored revision" in await etcd("snapshot", "restore", str(backup))
    async with distributed_cluster(data, nodes=0, apiservers=1) as (_, config):
        k = _k(config, tmp_path / "cache")
        names = json.loads(await k("get", "configmaps", "-o", "json"))["items"]
        names = {c["metadata"]["name"] for c in names}
        assert "before" in names and not names & {"after", "with-four", "without-four"}
        made = json.loads(await k("create", "configmap", "later", "-o", "json"))
        assert int(made["metadata"]["resourceVersion"]) > 0
