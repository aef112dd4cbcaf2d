"""Which watches take a key: the member's index of its watches by key range.

Rules of this file:

- A watch names one key (``range_end`` empty), a range ``[key, range_end)``, every key
  from ``key`` on (``range_end`` ``b"\\0"``), or every key (both ``b"\\0"``): etcd's
  ranges. A range whose end is not past its key takes no key.
- ``takers(key)`` answers in time that does not grow with the number of watches that do
  not take the key: single keys by a map, ranges by the elementary intervals between
  every range's ends (etcd's watcherGroup keeps a map and an interval tree the same
  way). Without it every new event was compared with every watch's range, and an API
  server watches each of its ~50 resources on one member.
- The index is built once from a set of watches and not changed: the member builds a
  new one when its watches change (rare), and keeps it while only events come.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

EVERY_KEY = b"\0"


class Ranged(Protocol):
    key: bytes
    range_end: bytes


W = TypeVar("W", bound=Ranged)


class WatchIndex(Generic[W]):
    """The watches given, indexed by their ranges."""

    __slots__ = ("_bounds", "_segments", "_single")

    def __init__(self, watches: Iterable[W]) -> None:
        self._single: dict[bytes, list[W]] = {}
        ranges: list[tuple[bytes, bytes | None, W]] = []
        for w in watches:
            key, end = w.key, w.range_end
            if not end:
                self._single.setdefault(key, []).append(w)
            elif end != EVERY_KEY:
                if key < end:
                    ranges.append((key, end, w))
            else:
                ranges.append((b"" if key == EVERY_KEY else key, None, w))
        # Every start and end splits the key space into intervals, each taken by one
        # fixed list of ranges: the interval holding a key is one bisection away.
        bounds = sorted({start for start, _, _ in ranges} | {e for _, e, _ in ranges if e})
        segments: list[list[W]] = [[] for _ in bounds]
        for start, end, w in ranges:
            first = bisect.bisect_left(bounds, start)
            last = len(bounds) if end is None else bisect.bisect_left(bounds, end)
            for i in range(first, last):
                segments[i].append(w)
        self._bounds = bounds
        self._segments = segments

    def takers(self, key: bytes) -> list[W]:
        """The watches whose range holds ``key``: those on that one key first, then the
        ranges, each in the order given."""
        single = self._single.get(key)
        at = bisect.bisect_right(self._bounds, key) - 1
        ranged = self._segments[at] if at >= 0 else []
        if single is None:
            return ranged
        return single + ranged if ranged else single
