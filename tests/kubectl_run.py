"""Running the real kubectl in tests: it must be on PATH (the tests that use it fail
loudly without it), with a kubeconfig and a discovery cache directory of the test's own
(kubectl caches discovery for ten minutes)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import trio


async def kubectl(config, cache, *args: str, stdin: bytes = b"", env: dict | None = None):
    """(exit code, stdout, stderr) of one kubectl run (``env``: added to the
    environment, as ``EDITOR`` for kubectl edit)."""
    binary = shutil.which("kubectl")
    assert binary, "kubectl is not on PATH: these tests drive the real one"
    done = await trio.run_process(
        [binary, f"--kubeconfig={config}", f"--cache-dir={cache}", *args],
        stdin=stdin,
        env={**os.environ, **(env or {})},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortForward:
    """``kubectl port-forward TARGET LOCAL:REMOTE`` running in the background while
    ``async with`` lasts, ``LOCAL`` a free port (``.local``)."""

    def __init__(self, config, cache, target: str, remote: int, wait: float = 60) -> None:
        self.local = free_port()
        binary = shutil.which("kubectl")
        assert binary, "kubectl is not on PATH: these tests drive the real one"
        self.args = [binary, f"--kubeconfig={config}", f"--cache-dir={cache}", "port-forward",
                     target, f"{self.local}:{remote}", "--address=127.0.0.1"]  # fmt: skip
        self.wait = wait
        self.stdout = b""
        self.stderr = b""

    async def __aenter__(self) -> PortForward:
        self.process = await trio.lowlevel.open_process(
            self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        return self

    async def ready(self) -> None:
        """Until kubectl listens (it prints "Forwarding from")."""
        with trio.fail_after(self.wait):
            while b"Forwarding from" not in self.stdout:
                chunk = await self.process.stdout.receive_some(4096)
                assert chunk, f"kubectl ended: {self.stdout!r} {await self.rest_of_stderr()!r}"
                self.stdout += chunk

    async def rest_of_stderr(self) -> bytes:
        while chunk := await self.process.stderr.receive_some(4096):
            self.stderr += chunk
        return self.stderr

    async def __aexit__(self, *exc) -> None:
        if self.process.returncode is None:
            self.process.terminate()
        with trio.fail_after(self.wait):
            await self.process.wait()
        await self.process.stdout.aclose()
        await self.process.stderr.aclose()


async def round_trip(port: int, data: bytes) -> bytes:
    """Sends ``data`` to a local port, ends it, and returns all that comes back."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    got = bytearray()
    async with stream, trio.open_nursery() as nursery:

        async def write() -> None:
            await stream.send_all(data)
            await stream.send_eof()

        nursery.start_soon(write)
        while chunk := await stream.receive_some(65536):
            got += chunk
    return bytes(got)
