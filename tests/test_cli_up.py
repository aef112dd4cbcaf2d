"""``actorkube up`` as a user runs it: a process that starts a cluster on a data
directory, writes a kubeconfig the real kubectl uses, schedules pods and runs them on
its node, stops on Ctrl-C (SIGINT) with exit code 0 (SIGTERM too), and keeps its data,
CA and credentials when started again (its pods run again); a bad scheduler
configuration is refused before anything starts."""

from __future__ import annotations

import json
import signal
import sys

import trio
from kubectl_run import kubectl
from up_run import start, stop


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
        # The scheduler and the node run: a pod created with kubectl lands on the one
        # node, whose kubelet starts it as a process.
        code, out, err = await kubectl(config, cache, "run", "web", "--image=busybox", "--",
                                       "sleep", "3600")  # fmt: skip
        assert code == 0, err
        code, out, err = await kubectl(config, cache, "wait", "--for=condition=Ready",
                                       "pod/web", "--timeout=60s")  # fmt: skip
        assert code == 0, err
        code, nodes, err = await kubectl(config, cache, "get", "nodes", "-o", "name")
        code, out, err = await kubectl(config, cache, "get", "pod", "web", "-o",
                                       "jsonpath={.spec.nodeName}")  # fmt: skip
        assert (code, f"node/{out}") == (0, nodes.strip()), err
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
        # The pod's process stopped with the cluster; the kubelet starts it again.
        code, out, err = await kubectl(config, cache, "wait", "--for=condition=Ready",
                                       "pod/web", "--timeout=60s")  # fmt: skip
        assert code == 0, err
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
