"""A container's log kept in memory, in CRI's log format, bounded in size.

Rules of this file:

- Entries are CRI log lines, as ``_crilog`` makes them (``line_entries``).
- Offsets are positions in the whole log as written since the container started; they
  never change when old entries are dropped. ``start`` is the offset of the oldest
  entry kept, ``end`` the offset after the newest.
- The kept bytes never exceed ``limit``: writing drops the oldest whole entries (an
  entry longer than the limit on its own is dropped too).
- Reading from an offset before ``start`` reads from ``start`` (those bytes are gone);
  from past ``end``, nothing.
"""

from __future__ import annotations


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
