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

import functools
import os
import time

from ._api import LogChunk

MAX_LINE = 16 * 1024  # containerd's default max_container_log_line_size
PAGE = 256 * 1024


@functools.lru_cache(maxsize=64)
def _second_text(second: int) -> str:
    # Entries come in bursts within a second; formatting the second costs microseconds.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def timestamp(seconds: float) -> bytes:
    """``seconds`` since the epoch as Go's RFC3339Nano in UTC, as containerd writes it:
    trailing zeros of the fraction trimmed (``2016-10-06T00:17:09.669794Z``; none for a
    whole second). The fraction stops at microseconds: a float of seconds since 1970
    holds no finer."""
    micros = round(seconds * 1e6)
    whole, fraction = divmod(micros, 1_000_000)
    text = _second_text(whole)
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return (text + "Z").encode()


def entry(at: float, stream: str, tag: bytes, text: bytes) -> bytes:
    return b"%s %s %s %s\n" % (timestamp(at), stream.encode(), tag, text)


def line_entries(at: float, stream: str, text: bytes) -> bytes:
    """The entries of one whole line of ``text`` written to ``stream`` at ``at``: cut
    into ``P`` pieces of ``MAX_LINE`` bytes ended by an ``F`` one."""
    if len(text) <= MAX_LINE:
        return entry(at, stream, b"F", text)
    pieces = [text[i : i + MAX_LINE] for i in range(0, len(text), MAX_LINE)]
    tags = [b"P"] * (len(pieces) - 1) + [b"F"]
    return b"".join(entry(at, stream, tag, piece) for tag, piece in zip(tags, pieces, strict=True))


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
