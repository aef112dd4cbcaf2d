"""Running the real kubectl in tests: it must be on PATH (the tests that use it fail
loudly without it), with a kubeconfig and a discovery cache directory of the test's own
(kubectl caches discovery for ten minutes)."""

from __future__ import annotations

import os
import shutil

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
