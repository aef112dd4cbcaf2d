"""Reading what a process writes: a container's stdout and stderr into its CRI log, an
exec'd command's into memory.

Rules of this file:

- A reader reads its pipe until EOF, which comes when every process holding the
  pipe's other end has exited (or closed it). A process that escaped its container
  can hold it open forever, so the caller waits for ``Drain.done`` only a bounded time
  after the container's end, then cancels the readers.
- Whatever way a log reader ends (EOF or cancelled), the unfinished line it holds is
  written as a partial entry.
- An exec'd command's output is kept up to ``limit`` bytes per stream; the rest is
  read and dropped, so the command never blocks on a full pipe.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from ._crilog import StreamLines


class Drain:
    """Counts a process's output readers down to zero (``done``)."""

    def __init__(self, readers: int) -> None:
        self.pending = readers
        self.done = trio.Event()

    def finished(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.done.set()


async def pump_log(
    fd: int, stream: str, write: Callable[[bytes], None], clock: Callable[[], float],
    drain: Drain,
) -> None:  # fmt: skip
    """Copies the pipe ``fd`` (closed here) into the log through ``write``, as CRI
    entries of ``stream`` (stdout or stderr) stamped by ``clock``."""
    lines = StreamLines(stream)
    try:
        async with trio.lowlevel.FdStream(fd) as pipe:
            while data := await pipe.receive_some(65536):
                write(lines.feed(data, clock()))
    finally:
        write(lines.close(clock()))
        drain.finished()


async def collect(fd: int, into: bytearray, limit: int, drain: Drain) -> None:
    """Appends what the pipe ``fd`` (closed here) carries to ``into``, up to
    ``limit`` bytes."""
    try:
        async with trio.lowlevel.FdStream(fd) as pipe:
            while data := await pipe.receive_some(65536):
                into += data[: max(0, limit - len(into))]
    finally:
        drain.finished()
