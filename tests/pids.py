"""Waiting in tests for a process to exit, on a pidfd (it need not be the test's child):
never by polling."""

from __future__ import annotations

import os

import trio


async def wait_exited(pid: int, limit: float = 30.0) -> None:
    """Returns once process ``pid`` has exited (at once if there is none); fails after
    ``limit`` seconds."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with trio.fail_after(limit):
            await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
