"""``actorkube up --distributed``: a cluster whose every component is its own process on
this machine, kept running as systemd keeps Kubernetes' components running.

Rules of this file:

- The cluster's shape is decided once and kept in ``DATA/cluster.json`` (``Layout``):
  ``etcd_members`` etcd members (3, or 1 or 5), ``apiservers`` API servers, 2 replicas
  each of the controller manager, the scheduler and the cloud controller manager
  (leader-elected), one metrics server, ``nodes`` nodes (a kubelet and a kube-proxy
  process each; node IPs 127.1.0.1, ..., pod CIDRs 127.244.0.0/16, ...) and, as root,
  the cluster DNS. Every transport and HTTPS port is picked free, below the kernel's
  ephemeral range, when the layout is made, then kept: an etcd member is known to its
  peers by its address, so it must come back on it. Started again with another shape,
  the layout that exists wins (a cluster does not change shape by a flag), and says so.
  One supervisor per directory (a lock file).
- Every process runs ``actorkube COMPONENT`` (``process.py``) with its output appended
  to ``DATA/logs/NAME.log``. A process that exits while the cluster runs is started
  again after a pause that doubles from 1 s to 30 s (back to 1 s once it ran for a
  minute). ``DATA/processes.json`` names the pid of each process, rewritten at every
  start (tests and operators kill processes by it).
- The load balancer's address is bound first (a cluster nobody can reach is not
  started). The control plane comes next (etcd, then the API servers, waited for until
  one answers /readyz), then everything else; then what joining nodes read is
  published (``_join.publish``). The TCP load balancer on ``HOST:PORT`` (the address
  kubectl is given, not shared with another listener) forwards to the API servers'
  HTTPS ports that pass its health check (a TLS handshake and /readyz every second),
  trying the next one when a server does not accept (as haproxy in front of kubeadm's
  HA control plane); TLS goes through it untouched.
- Each child dies with this process: its stdin is a pipe from here that nobody writes,
  and a supervised child (``ACTORKUBE_SUPERVISED=1``) stops at its end of file.
  (``PR_SET_PDEATHSIG`` cannot serve: it fires when the *thread* that started the child
  ends, and trio starts processes from worker threads.) Ctrl-C or SIGTERM stops every
  child with SIGTERM, then SIGKILL after 10 s.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import socket
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from actorkube.apiserver import ApiError
from actorkube.client._https import HttpsClient
from actorkube.forwarding import Backend, Entry, Frontend, Listener, ProxyStats
from actorkube.pki import write_private

from ._cluster import ClusterFiles, component_users, node_name
from ._debug import dump_on_sigusr1
from ._join import admin_client, publish
from .up import announce, stop_on_signal

REPLICAS = 2  # of the controller manager, the scheduler and the cloud controller manager
ETCD_MEMBERS = 3  # the default; 1, 3 or 5 (etcd's advice: an odd number, 5 at most)
RESTART_MIN, RESTART_MAX, RESTART_RESET = 1.0, 30.0, 60.0
STOP_GRACE = 10.0
SUPERVISED = "ACTORKUBE_SUPERVISED"


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


class _FreePorts:
    """Free ports below the kernel's ephemeral range (a kept port in that range could be
    taken by any outgoing connection while its process is down, and it could not come
    back), each held (bound) until the block ends, so no two are the same."""

    def __enter__(self) -> _FreePorts:
        self.socks: list[socket.socket] = []
        self.high = _ephemeral_low()
        self.low = max(1024, self.high - 12000)
        return self

    def __call__(self, host: str) -> int:
        for _ in range(1000):
            port = random.randrange(self.low, self.high)
            s = socket.socket()
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            self.socks.append(s)
            return port
        raise StartError(f"no free port between {self.low} and {self.high} on {host}")

    def __exit__(self, *exc: object) -> None:
        for s in self.socks:
            s.close()


@attrs.frozen
class Layout:
    """Where every process of a distributed cluster listens (see the module rules)."""

    etcd: dict[int, str]  # member id -> transport address
    apiservers: list[dict[str, Any]]  # {"listen": transport address, "https": port}
    metrics: str
    nodes: list[dict[str, str]]  # {"name", "ip", "pod_cidr", "listen"}

    @classmethod
    def make(cls, nodes: int, apiservers: int, etcd_members: int = ETCD_MEMBERS) -> Layout:
        host = "127.0.0.1"
        with _FreePorts() as free:
            node_list = []
            for i in range(nodes):
                ip = f"127.1.0.{i + 1}"
                node_list.append({"name": node_name(i), "ip": ip, "listen": f"{ip}:{free(ip)}",
                                  "pod_cidr": f"127.{244 + i}.0.0/16"})  # fmt: skip
            apis = [{"listen": f"{host}:{free(host)}", "https": free(host)}
                    for _ in range(apiservers)]  # fmt: skip
            return cls(
                etcd={n: f"{host}:{free(host)}" for n in range(1, etcd_members + 1)},
                apiservers=apis,
                metrics=f"{host}:{free(host)}",
                nodes=node_list,
            )

    @classmethod
    def load(cls, path: Path) -> Layout:
        """The layout of the distributed cluster at ``path`` (``FileNotFoundError`` if the
        directory holds none)."""
        data = json.loads(path.read_text())
        data["etcd"] = {int(k): v for k, v in data["etcd"].items()}
        return cls(**data)

    @classmethod
    def load_or_make(cls, path: Path, nodes: int, apiservers: int,
                     etcd_members: int = ETCD_MEMBERS) -> Layout:  # fmt: skip
        if path.exists():
            return cls.load(path)
        layout = cls.make(nodes, apiservers, etcd_members)
        write_private(path, json.dumps(attrs.asdict(layout), indent=2).encode())
        return layout

    def processes(self, data_dir: Path, *, dns: bool) -> dict[str, list[str]]:
        """Every process of the cluster: name -> its ``actorkube`` arguments."""
        common = ["--data-dir", str(data_dir)]
        etcd = ",".join(f"{n}={a}" for n, a in sorted(self.etcd.items()))
        apis = ",".join(a["listen"] for a in self.apiservers)
        procs: dict[str, list[str]] = {}
        for n in sorted(self.etcd):
            procs[f"etcd-{n}"] = ["etcd", *common, "--id", str(n), "--initial-cluster", etcd]
        for i, a in enumerate(self.apiservers, start=1):
            procs[f"apiserver-{i}"] = ["apiserver", *common, "--listen", a["listen"],
                                       "--etcd-servers", etcd, "--secure-port", str(a["https"]),
                                       "--metrics-server", self.metrics]  # fmt: skip
        client = [*common, "--apiservers", apis]
        for i in range(1, REPLICAS + 1):
            for component in ("controller-manager", "scheduler", "cloud-controller-manager"):
                procs[f"{component}-{i}"] = [component, *client, "--name", f"{component}-{i}"]
                if component == "cloud-controller-manager" and self.nodes:
                    procs[f"{component}-{i}"] += [
                        "--instances", ",".join(f"{n['name']}={n['ip']}" for n in self.nodes)]
        procs["metrics-server"] = ["metrics-server", *client, "--listen", self.metrics]
        if dns:
            procs["cluster-dns"] = ["cluster-dns", *client]
        for n in self.nodes:
            procs[f"kubelet-{n['name']}"] = [
                "kubelet", *client, "--node-name", n["name"], "--node-ip", n["ip"],
                "--pod-cidr", n["pod_cidr"], "--listen", n["listen"], "--cloud-provider",
                "external", *(["--cluster-dns"] if dns else [])]  # fmt: skip
            procs[f"proxy-{n['name']}"] = ["proxy", *client, "--node-name", n["name"],
                                           "--node-ip", n["ip"]]  # fmt: skip
        return procs


class Supervisor:
    """Keeps the processes of one cluster running (see the module rules)."""

    def __init__(self, data_dir: Path, say: Callable[[str], None]) -> None:
        self.data_dir = data_dir
        self.say = say
        self.pids: dict[str, int] = {}
        self._held: dict[str, trio.Event] = {}
        (data_dir / "logs").mkdir(mode=0o700, exist_ok=True)

    def hold(self, name: str) -> None:
        """Do not start ``name`` again when it exits, until ``release(name)`` (a machine
        that stays down; the process itself is left running)."""
        self._held.setdefault(name, trio.Event())

    def release(self, name: str) -> None:
        """Start ``name`` again if it exited while held; keep it running from now on."""
        held = self._held.pop(name, None)
        if held is not None:
            held.set()

    def _write_pids(self) -> None:
        write_private(self.data_dir / "processes.json", json.dumps(self.pids, indent=2).encode())

    async def keep_running(self, name: str, argv: list[str],
                           task_status=trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
        """Run ``actorkube ARGV`` as ``name`` until cancelled, starting it again each
        time it exits; ``started`` once it first runs."""
        delay = RESTART_MIN
        command = [sys.executable, "-m", "actorkube", *argv]
        while True:
            with open(self.data_dir / "logs" / f"{name}.log", "ab") as log:
                # A session of its own: Ctrl-C in the terminal reaches this process only,
                # which then stops every child itself (SIGTERM, then SIGKILL).
                process = await trio.lowlevel.open_process(
                    command, stdin=subprocess.PIPE, stdout=log, stderr=log,
                    start_new_session=True, env={**os.environ, SUPERVISED: "1"})  # fmt: skip
            self.pids[name] = process.pid
            self._write_pids()
            task_status.started()
            task_status = trio.TASK_STATUS_IGNORED
            began = trio.current_time()
            try:
                code = await process.wait()
            finally:
                with trio.CancelScope(shield=True):
                    await _stop(process)
                    await process.stdin.aclose()
            # Gone: its pid may soon be another process's.
            del self.pids[name]
            self._write_pids()
            if trio.current_time() - began >= RESTART_RESET:
                delay = RESTART_MIN
            how = f"signal {-code}" if code < 0 else f"code {code}"
            held = self._held.get(name)
            if held is not None:
                self.say(f"actorkube: {name} exited ({how}); held down")
                await held.wait()
                continue
            self.say(f"actorkube: {name} exited ({how}); starting it again in {delay:g} s")
            await trio.sleep(delay)
            delay = min(delay * 2, RESTART_MAX)


async def _stop(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL after ``STOP_GRACE`` seconds (a no-op once it exited)."""
    if process.returncode is not None:
        return
    process.terminate()
    with trio.move_on_after(STOP_GRACE):
        await process.wait()
        return
    process.kill()
    await process.wait()


class StartError(Exception):
    """The cluster cannot start as asked (its address is taken, its directory is in use);
    the message says why in one line."""


async def _wait_any_ready(ports: list[int], ca: bytes) -> None:
    """Until one of the API servers on ``ports`` answers /readyz."""
    while True:
        for port in ports:
            if await _healthy(port, ca):
                return
        await trio.sleep(0.2)


async def _healthy(port: int, ca: bytes, timeout: float = 2.0) -> bool:
    """The API server on ``port`` finishes a TLS handshake and answers /readyz with 200
    within ``timeout`` (401 or 403 too: a server that refuses anonymous users is up)."""
    client = HttpsClient(f"https://127.0.0.1:{port}", ca=ca, timeout=timeout)
    try:
        return await client.status_of("/readyz") in (200, 401, 403)
    except (OSError, trio.TooSlowError, ApiError, ssl.SSLError, trio.BrokenResourceError):
        return False


async def _check_backends(listener: Listener, backends: tuple[Backend, ...], ca: bytes,
                          interval: float = 1.0) -> None:  # fmt: skip
    """Keep ``listener`` on the API servers that are healthy (all of them if none is), as
    a load balancer's health checks do: a server that is hung (its port still accepts,
    but nothing answers) or not ready gets no new connections."""
    while True:
        healthy = [b for b in backends if await _healthy(b.port, ca)]
        listener.balancer.update(tuple(healthy) or backends, None)
        await trio.sleep(interval)


class DistributedCluster:
    """A cluster of processes on ``data_dir`` (see the module rules). ``extra_args``:
    more arguments for every process of a component (``{"controller-manager":
    ["--node-monitor-grace-period", "10"]}``). Raises ``StartError`` if another
    supervisor runs on ``data_dir``."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int = 6443, *,
                 nodes: int = 1, apiservers: int = 2, etcd_members: int = ETCD_MEMBERS,
                 extra_args: dict[str, list[str]] | None = None,
                 say: Callable[[str], None] = print) -> None:  # fmt: skip
        self.data_dir = data_dir
        self.host, self.port = host, port
        self.files = ClusterFiles(data_dir)
        self.files.prepare()
        self._lock = open(data_dir / "supervisor.lock", "a")  # noqa: SIM115 (held while we run)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StartError(f"another actorkube up --distributed runs on {data_dir}") from None
        self.layout = Layout.load_or_make(data_dir / "cluster.json", nodes, apiservers,
                                          etcd_members)  # fmt: skip
        # A member whose data is gone must not start again as a fresh voter of a cluster
        # that has data: it would vote with no log and could lose committed writes
        # (etcd refuses it too). The operator removes it and adds it back.
        present = [(data_dir / "etcd" / f"member-{n}").exists() for n in self.layout.etcd]
        if any(present) and not all(present):
            gone = [n for n, here in zip(self.layout.etcd, present, strict=True) if not here]
            self.close()
            raise StartError(f"the data of etcd member(s) {gone} in {data_dir / 'etcd'} is "
                             "gone while the others have theirs, and a member must not come "
                             "back as a new voter: restore a backup (actorkube etcd snapshot "
                             "restore), or run the others by hand, remove it (actorkube etcd "
                             "member remove) and add it back")  # fmt: skip
        shape = (len(self.layout.nodes), len(self.layout.apiservers), len(self.layout.etcd))
        if shape != (nodes, apiservers, etcd_members):
            say(f"actorkube: the cluster in {data_dir} has {shape[0]} node(s), {shape[1]} API "
                f"server(s) and {shape[2]} etcd member(s); it keeps that shape")  # fmt: skip
        dns = os.geteuid() == 0  # the cluster DNS serves port 53, which only root may bind
        self.processes = self.layout.processes(data_dir, dns=dns)
        for argv in self.processes.values():
            argv += (extra_args or {}).get(argv[0], [])
        self.say = say
        self.supervisor = Supervisor(data_dir, say)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Start every process and the API load balancer, ``started`` with the cluster's
        URL once the API servers answer; keep them running until cancelled. Raises
        ``StartError`` if the load balancer's address cannot be bound."""
        files = self.files
        pki = files.pki(self.host)
        files.people_tokens()
        files.signing_key()
        files.transport_token()
        files.node_transport_token()
        files.write_credentials(component_users(n["name"] for n in self.layout.nodes))
        backends = tuple(Backend("127.0.0.1", a["https"]) for a in self.layout.apiservers)
        # Bound first: a cluster that cannot be reached is not started at all.
        try:
            listener = await Listener.open(Frontend(self.host, self.port, "TCP"),
                                           Entry("kube-apiserver", backends),
                                           shared=False)  # fmt: skip
        except OSError as e:
            self.close()
            raise StartError(f"cannot listen on {self.host}:{self.port}: {e.strerror}") from None
        try:
            async with trio.open_nursery() as nursery:
                await self._start(nursery, listener, backends, pki, task_status)
        finally:
            listener.close()
            self.close()

    def close(self) -> None:
        """Let another supervisor have the directory (``run`` does this when it ends)."""
        self._lock.close()

    async def _start(self, nursery: trio.Nursery, listener: Listener,
                     backends: tuple[Backend, ...], pki, task_status) -> None:  # fmt: skip
        control_plane = [n for n in self.processes if n.startswith(("etcd-", "apiserver-"))]
        for name in control_plane:
            await nursery.start(self.supervisor.keep_running, name, self.processes[name])
        with trio.fail_after(120):
            await _wait_any_ready([b.port for b in backends], pki.ca.cert)
        for name, argv in self.processes.items():
            if name not in control_plane:
                await nursery.start(self.supervisor.keep_running, name, argv)
        nursery.start_soon(listener.serve, nursery, ProxyStats(), 30.0, "the API load balancer")
        nursery.start_soon(_check_backends, listener, backends, pki.ca.cert)
        bound = listener.sock.getsockname()
        url = f"https://{bound[0]}:{bound[1]}".replace("0.0.0.0", "127.0.0.1")
        with trio.fail_after(120):
            await self._publish(url, pki.ca.cert)
        announce(self.data_dir, pki, url, self.say)
        self.say(f"  {len(self.processes)} processes; logs in {self.data_dir / 'logs'}, "
                 f"pids in {self.data_dir / 'processes.json'}")  # fmt: skip
        task_status.started(url)

    async def _publish(self, url: str, ca: bytes) -> None:
        """What joining nodes read (``_join.publish``), once the API servers take it."""
        apiservers = [a["listen"] for a in self.layout.apiservers]
        async with admin_client(self.files, apiservers) as client:
            while True:
                try:
                    await publish(client, url=url, ca=ca, apiservers=apiservers,
                                  transport_token=self.files.node_transport_token())  # fmt: skip
                    return
                except ApiError as e:
                    if e.code < 500:
                        raise
                await trio.sleep(0.5)


async def run(data_dir: Path, host: str = "127.0.0.1", port: int = 6443, *, nodes: int = 1,
              apiservers: int = 2, etcd_members: int = ETCD_MEMBERS,
              extra_args: dict[str, list[str]] | None = None,
              say: Callable[[str], None] = print) -> None:  # fmt: skip
    """``actorkube up --distributed``: the cluster until Ctrl-C or SIGTERM."""
    cluster = DistributedCluster(data_dir, host, port, nodes=nodes, apiservers=apiservers,
                                 etcd_members=etcd_members, extra_args=extra_args,
                                 say=say)  # fmt: skip
    async with trio.open_nursery() as outer:
        await outer.start(stop_on_signal, outer.cancel_scope)
        await outer.start(dump_on_sigusr1)
        await outer.start(cluster.run)
