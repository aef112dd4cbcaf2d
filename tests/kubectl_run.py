"""Running the real kubectl in tests: it must be on PATH (the tests that use it fail
loudly without it), with a kubeconfig and a discovery cache directory of the test's own
(kubectl caches discovery for ten minutes)."""

from __future__ import annotations

import shutil

import trio


async def kubectl(config, cache, *args: str, stdin: bytes = b""):
    """(exit code, stdout, stderr) of one kubectl run."""
    binary = shutil.which("kubectl")
    assert binary, "kubectl is not on PATH: these tests drive the real one"
    done = await trio.run_process(
        [binary, f"--kubeconfig={config}", f"--cache-dir={cache}", *args],
        stdin=stdin,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()
