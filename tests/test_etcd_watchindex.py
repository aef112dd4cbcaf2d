"""The member's watch index against the plain rule: a watch takes a key when its range
holds it (one key, [key, end), from key on, or every key), whatever else is indexed."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from actorkube.etcd._watchindex import WatchIndex

KEYS = [b"\0", b"a", b"a\0", b"ab", b"b", b"c", b"cc", b"d"]
ENDS = [b"", b"\0", b"a", b"b", b"b\0", b"c", b"e"]


@attrs.define(eq=False)
class W:
    key: bytes
    range_end: bytes


def _holds(w: W, key: bytes) -> bool:
    if not w.range_end:
        return key == w.key
    if w.range_end == b"\0":
        return w.key == b"\0" or key >= w.key
    return w.key <= key < w.range_end


watches = st.lists(st.builds(W, st.sampled_from(KEYS), st.sampled_from(ENDS)), max_size=12)


@given(watches, st.lists(st.sampled_from([*KEYS, b"aa", b"bz", b"zz"]), min_size=1))
def test_takers_are_the_watches_whose_range_holds_the_key(ws: list[W], probes: list[bytes]):
    index = WatchIndex(ws)
    for key in probes:
        want = [w for w in ws if _holds(w, key)]
        got = index.takers(key)
        # Each once; single-key watches first, then ranges, each in the order given.
        assert got == [w for w in want if not w.range_end] + [w for w in want if w.range_end]


def test_an_empty_or_backward_range_takes_nothing() -> None:
    index = WatchIndex([W(b"b", b"b"), W(b"c", b"a")])
    assert [index.takers(k) for k in (b"a", b"b", b"c")] == [[], [], []]


def test_no_watches_take_nothing() -> None:
    assert WatchIndex([]).takers(b"a") == []
