"""Running ``actorkube up`` in tests: the process, its kubeconfig once it says it is up,
and a stop by signal."""

from __future__ import annotations

import signal
import subprocess
import sys

import trio


async def start(data_dir, *args: str):
    """The running process and its kubeconfig, once it says it is up."""
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "actorkube", "up", "--data-dir", str(data_dir), "--port", "0",
         *args],
        stdout=subprocess.PIPE,
    )  # fmt: skip
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
