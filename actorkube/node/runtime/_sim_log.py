"""A container's log kept in memory, in CRI's log format, bounded in size.

Rules of this file:

- Entries are CRI log lines: ``<RFC 3339 nano time> <stream> <F|P> <text>\\n``; text
  longer than ``MAX_LINE`` bytes is cut into partial (``P``) entries ended by a full
  (``F``) one, as containerd cuts at its max_container_log_line_size (16 KiB).
- Offsets are positions in the whole log as written since the container started; they
  never change when old entries are dropped. ``start`` is the offset of the oldest
  entry kept, ``end`` the offset after the newest.
- The kept bytes never exceed ``limit``: writing drops the oldest whole entries (an
  entry longer than the limit on its own is dropped too).
- Reading from an offset before ``start`` reads from ``start`` (those bytes are gone);
  from past ``end``, nothing.
"""

from __future__ import annotations

import datetime
import functools

MAX_LINE = 16 * 1024


@functools.lru_cache(maxsize=64)
def _second_text(second: int) -> str:
    # Entries come in bursts within a second; formatting a datetime costs microseconds.
    moment = datetime.datetime.fromtimestamp(second, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


def cri_time(at: float) -> str:
    """``at`` (seconds since the epoch) as Go's RFC3339Nano in UTC, trailing zeros of the
    fraction trimmed (``2016-10-06T00:17:09.669794Z``; none for a whole second). The
    fraction stops at microseconds: a float of seconds since 1970 holds no finer."""
    micros = round(at * 1e6)
    second, fraction = divmod(micros, 1_000_000)
    text = _second_text(second)
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return text + "Z"


def cri_entries(at: float, stream: str, text: str) -> bytes:
    """The CRI log entries for one line of ``text`` written to ``stream`` at ``at``."""
    data = text.encode()
    head = f"{cri_time(at)} {stream} ".encode()
    if len(data) <= MAX_LINE:
        return head + b"F " + data + b"\n"
    pieces = [data[i : i + MAX_LINE] for i in range(0, len(data), MAX_LINE)]
    tags = [b"P "] * (len(pieces) - 1) + [b"F "]
    return b"".join(head + tag + piece + b"\n" for tag, piece in zip(tags, pieces, strict=True))


class LogBuffer:
    """One container's log (see the module's rules)."""

    __slots__ = ("_data", "limit", "start")

    def __init__(self, limit: int) -> None:
        self._data = bytearray()
        self.limit = limit
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + len(self._data)

    def write(self, entries: bytes) -> None:
        """Append whole entries, then drop the oldest entries past the limit."""
        data = self._data
        data += entries
        excess = len(data) - self.limit
        if excess > 0:
            # The first entry boundary at or after the excess: drop up to it. Deleting
            # from a bytearray's front only moves its start, so this stays cheap.
            cut = data.find(b"\n", excess - 1) + 1
            del data[:cut]
            self.start += cut

    def read(self, offset: int) -> tuple[bytes, int]:
        """(bytes from ``offset`` to the end, the end offset)."""
        position = max(offset, self.start) - self.start
        return bytes(self._data[position:]), self.end
