"""The front end's backlog of a client's input (exec's stdin, port-forward's
connections): in order, joined up to a size, bounded, a filler that gives up when
nothing is taken, and a closed backlog that drops."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actorkube.apiserver._wsstreams import Backlog, Stalled


async def test_what_waits_is_joined_up_to_a_size_and_the_end_stands_alone():
    backlog = Backlog(1 << 20)
    for item in (b"ab", b"cd", b"efghij", None, b"k"):
        await backlog.put(item)
    assert await backlog.get(5) == b"abcde"  # the rest of "efghij" stays in front
    assert await backlog.get(5) == b"fghij"
    assert await backlog.get(5) is None
    assert await backlog.get(5) == b"k"
    assert backlog.size == 0


async def test_a_full_backlog_holds_its_filler_until_something_is_taken(autojump_clock):
    backlog = Backlog(4)
    await backlog.put(b"1234")
    done = []

    async def fill() -> None:
        await backlog.put(b"5")
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fill)
        await trio.testing.wait_all_tasks_blocked()
        assert done == []
        assert await backlog.get() == b"1234"
    assert done == [True] and await backlog.get() == b"5"


async def test_a_filler_gives_up_when_nothing_is_taken_and_a_closed_one_drops(autojump_clock):
    backlog = Backlog(4)
    await backlog.put(b"1234")
    started = trio.current_time()
    with pytest.raises(Stalled):
        await backlog.put(b"5", patience=30)
    assert trio.current_time() - started == pytest.approx(30)
    backlog.close()
    await backlog.put(b"6")  # at once, and dropped
    assert backlog.size == 4
