"""A process runtime that crashes: ``crashing_runtime.py ROOT_DIR POD_CIDR``.

Starts a ProcessRuntime on ROOT_DIR, runs one container whose main process leaves a
child behind, prints ``main=<pid> child=<pid>`` once both run, then dies by SIGKILL
(no aclose, no finally), as a runtime whose process is killed.
"""

import os
import signal
import sys

import trio

from actorkube.node.runtime._api import ContainerConfig, PodSandboxConfig
from actorkube.node.runtime._process import ProcessRuntime


async def main(root_dir: str, pod_cidr: str) -> None:
    runtime = ProcessRuntime(root_dir, pod_cidr)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        pod = PodSandboxConfig(name="crash", namespace="default", uid="crash-uid")
        sandbox = await runtime.run_pod_sandbox(pod)
        script = "sleep 1000 & echo main=$$ child=$!; exec sleep 1000"
        config = ContainerConfig(name="c", image="busybox", command=("sh", "-c", script))
        container = await runtime.create_container(sandbox, config, pod)
        await runtime.start_container(container)
        await runtime.wait_log(container, 0)  # the one line, whole (the log has entries)
        line = (await runtime.read_log(container)).data.decode()
        print(" ".join(line.split()[-2:]), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2])
