"""Container logs in CRI's log format: turning a stream's bytes into entries, and
reading a log file back page by page.

Rules of this file (containerd's CRI logger, which the kubelet's log reader expects):

- One entry per line: ``<time> <stream> <tag> <text>\\n``. ``time`` is RFC 3339 in UTC
  with nanoseconds, ``stream`` is ``stdout`` or ``stderr``, ``tag`` is ``F`` for a full
  line and ``P`` for a partial one (continued by the stream's next entry).
- A line ends at ``\\n``; the ``\\n`` (and a ``\\r`` before it) is not part of the text.
- A line longer than ``MAX_LINE`` bytes is cut into ``P`` entries of ``MAX_LINE`` bytes
  and ends with an ``F`` entry: a process that never writes a newline still reaches the
  log, in bounded pieces.
- Bytes without a newline wait for the rest of their line; at the end of the stream
  they are written as a ``P`` entry (the line was never finished).
- Pages of the log (``read_page``) end after a whole entry, so a reader never sees half
  of one.
"""

from __future__ import annotations

import os
import time

from ._api import LogChunk

MAX_LINE = 16 * 1024  # containerd's default max_container_log_line_size
PAGE = 256 * 1024


def timestamp(seconds: float) -> bytes:
    """``seconds`` since the epoch as RFC 3339 with nanoseconds, in UTC."""
    nanos = round(seconds * 1e9)
    whole, fraction = divmod(nanos, 1_000_000_000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{fraction:09d}Z".encode()


def entry(at: float, stream: str, tag: bytes, text: bytes) -> bytes:
    return b"%s %s %s %s\n" % (timestamp(at), stream.encode(), tag, text)


class StreamLines:
    """Cuts one stream (stdout or stderr) into log entries (see the module rules)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._pending = bytearray()

    def feed(self, data: bytes, at: float) -> bytes:
        """The entries that ``data`` completes, stamped ``at``."""
        self._pending += data
        out = []
        while True:
            end = self._pending.find(b"\n")
            if end < 0 or end > MAX_LINE:
                if len(self._pending) <= MAX_LINE:
                    break
                out.append(entry(at, self.stream, b"P", bytes(self._pending[:MAX_LINE])))
                del self._pending[:MAX_LINE]
                continue
            text = bytes(self._pending[:end])
            del self._pending[: end + 1]
            if text.endswith(b"\r"):
                text = text[:-1]
            out.append(entry(at, self.stream, b"F", text))
        return b"".join(out)

    def close(self, at: float) -> bytes:
        """The unfinished line left at the end of the stream, as a ``P`` entry."""
        if not self._pending:
            return b""
        text = bytes(self._pending)
        self._pending.clear()
        return entry(at, self.stream, b"P", text)


def read_page(path: str, offset: int, limit: int = PAGE) -> LogChunk:
    """The whole entries of the log at ``path`` from byte ``offset``, up to about
    ``limit`` bytes. A missing file reads as empty (nothing was written yet)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        return LogChunk(b"", offset)
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) == limit:
        # one entry longer than a page (it cannot be, as lines are cut at MAX_LINE,
        # unless the file was written by something else): hand it over whole
        with open(path, "rb") as f:
            f.seek(offset)
            line = f.readline()
        return LogChunk(line, offset + len(line))
    return LogChunk(data[:end], offset + end)


def size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
