"""Container logs as ``kubectl logs`` shows them: CRI log entries read back with the
pod log options (the kubelet's ReadLogs).

Rules of this file:

- Input is CRI log bytes (``<time> <stream> <P|F> <text>\\n`` per entry); output is
  the text as the container wrote it: partial (``P``) entries joined to the full
  (``F``) one that ends the line. A malformed entry is skipped, never an error.
- ``timestamps``: each line is prefixed with its entry's time and a space.
- ``since``: only lines whose time is at or after it (seconds since the epoch).
- ``tail_lines``: only the last N lines; ``limit_bytes``: at most N bytes of output.
- ``LogReader`` does this incrementally, for ``-f``: feed it chunks as they come, it
  returns the output bytes each one completes.
"""

from __future__ import annotations

import datetime
import functools

import attrs


@attrs.frozen
class LogOptions:
    """PodLogOptions (the kubelet's part of them)."""

    timestamps: bool = False
    since: float | None = None
    tail_lines: int | None = None
    limit_bytes: int | None = None


@functools.lru_cache(maxsize=256)
def _parse_second(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.UTC
    ).timestamp()


def entry_time(stamp: bytes) -> float:
    """Seconds since the epoch of a CRI time (RFC 3339 with nanoseconds, UTC)."""
    text = stamp.decode().rstrip("Z")
    second, _, fraction = text.partition(".")
    return _parse_second(second) + (float(f"0.{fraction}") if fraction else 0.0)


@attrs.define
class LogReader:
    """Incremental reading of CRI log bytes (see the module rules)."""

    options: LogOptions = LogOptions()
    _rest: bytes = b""  # an entry not yet ended by a newline
    _line: bytes = b""  # partial entries of the current line
    _stamp: bytes = b""
    written: int = 0

    def feed(self, data: bytes) -> bytes:
        """Output for the whole lines ``data`` (with what came before) completes."""
        data = self._rest + data
        entries = data.split(b"\n")
        self._rest = entries.pop()
        out = []
        for entry in entries:
            line = self._entry(entry)
            if line is not None:
                out.append(line)
        return self._limit(b"".join(out))

    def _entry(self, entry: bytes) -> bytes | None:
        parts = entry.split(b" ", 3)
        if len(parts) < 3 or parts[2] not in (b"P", b"F"):
            return None
        stamp, tag = parts[0], parts[2]
        text = parts[3] if len(parts) == 4 else b""
        if not self._line:
            self._stamp = stamp
        self._line += text
        if tag == b"P":
            return None
        line, self._line = self._line, b""
        if self.options.since is not None:
            try:
                if entry_time(self._stamp) < self.options.since:
                    return None
            except ValueError:
                return None
        if self.options.timestamps:
            line = self._stamp + b" " + line
        return line + b"\n"

    def _limit(self, out: bytes) -> bytes:
        limit = self.options.limit_bytes
        if limit is not None:
            out = out[: max(0, limit - self.written)]
        self.written += len(out)
        return out

    @property
    def exhausted(self) -> bool:
        limit = self.options.limit_bytes
        return limit is not None and self.written >= limit


def read_all(data: bytes, options: LogOptions) -> bytes:
    """The whole log ``data`` as ``kubectl logs`` shows it (``tail_lines`` applied)."""
    reader = LogReader(attrs.evolve(options, limit_bytes=None))
    out = reader.feed(data if data.endswith(b"\n") or not data else data + b"\n")
    if options.tail_lines is not None:
        lines = out.splitlines(keepends=True)
        out = b"".join(lines[-options.tail_lines :]) if options.tail_lines > 0 else b""
    if options.limit_bytes is not None:
        out = out[: options.limit_bytes]
    return out
