"""``actorkube up`` as a user runs it: a process that starts the control plane on a data
directory, writes a kubeconfig the real kubectl uses, schedules pods, stops on Ctrl-C
(SIGINT) with exit code 0 (SIGTERM too), and keeps its data, CA and credentials when
started again; a bad scheduler configuration is refused before anything starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import trio
from kubectl_run import kubectl


async def start(data_dir):
    """The running process and its kubeconfig, once it says it is up."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actorkube", "up", "--data-dir", str(data_dir), "--port", "0"],
        stdout=subprocess.PIPE,
    )
    lines = b""
    with trio.fail_after(60):
        while b"kubeconfig: " not in lines:
            chunk = await process.stdout.receive_some()
            assert chunk, f"actorkube up exited: {lines.decode()}"
            lines += chunk
    config = lines.decode().split("kubeconfig: ")[1].split()[0]
    return process, config


async def stop(process, sig=signal.SIGINT) -> int:
    process.send_signal(sig)
    with trio.fail_after(60):
        return await process.wait()


async def test_up_serves_kubectl_stops_on_ctrl_c_and_keeps_its_data(tmp_path):
    data = tmp_path / "cluster"
    cache = tmp_path / "cache"
    process, config = await start(data)
    try:
        code, out, err = await kubectl(config, cache, "get", "namespaces", "-o", "name")
        assert code == 0, err
        assert "namespace/kube-system" in out.split()
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"kept": "yes"},
                    "metadata": {"name": "survivor", "namespace": "default"}}  # fmt: skip
        code, out, err = await kubectl(config, cache, "create", "--validate=false", "-f", "-",
                                       stdin=json.dumps(manifest).encode())  # fmt: skip
        assert code == 0, err
        # The scheduler runs: a pod created with kubectl lands on the one node.
        resources = {"cpu": "2", "memory": "4Gi", "pods": "10"}
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker"},
                "status": {"capacity": resources, "allocatable": resources}}  # fmt: skip
        code, out, err = await kubectl(config, cache, "create", "-f", "-",
                                       stdin=json.dumps(node).encode())  # fmt: skip
        assert code == 0, err
        code, out, err = await kubectl(config, cache, "run", "web", "--image=nginx")
        assert code == 0, err
        code, out, err = await kubectl(config, cache, "wait", "--for=condition=PodScheduled",
                                       "pod/web", "--timeout=60s")  # fmt: skip
        assert code == 0, err
        code, out, err = await kubectl(config, cache, "get", "pod", "web", "-o",
                                       "jsonpath={.spec.nodeName}")  # fmt: skip
        assert (code, out) == (0, "worker"), err
    finally:
        assert await stop(process) == 0
    first_ca = (data / "pki" / "ca.crt").read_bytes()
    # etcd's log holds Secrets; the keys and tokens are credentials: the owner's only.
    assert data.stat().st_mode & 0o077 == 0
    assert (data / "tokens.csv").stat().st_mode & 0o077 == 0

    process, config = await start(data)
    try:
        code, out, err = await kubectl(config, cache, "get", "configmap", "survivor", "-o", "json")
        assert code == 0, err
        assert json.loads(out)["data"] == {"kept": "yes"}
    finally:
        assert await stop(process, signal.SIGTERM) == 0  # as a service manager stops it
    assert (data / "pki" / "ca.crt").read_bytes() == first_ca


async def test_a_bad_scheduler_configuration_is_refused(tmp_path):
    bad = tmp_path / "scheduler.yaml"
    bad.write_text("apiVersion: kubescheduler.config.k8s.io/v1\nprofiles: [{plugins: {x: {}}}]\n")
    done = await trio.run_process(
        [sys.executable, "-m", "actorkube", "up", "--data-dir", str(tmp_path / "c"),
         "--port", "0", "--scheduler-config", str(bad)],
        capture_stderr=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert b"unknown extension point 'x'" in done.stderr
