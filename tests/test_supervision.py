"""Supervision with Erlang semantics, restart intensity, backoff, and monitors."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from actorkube.actor import (
    Actor,
    ActorRef,
    ActorSystem,
    Backoff,
    OneForAll,
    OneForOne,
    Restart,
    RestartIntensityExceeded,
    RestForOne,
    Strategy,
    Terminated,
    handler,
    message,
)
from actorkube.actor._supervision import RestartHistory


@message(tag="test.sup.Crash")
class Crash:
    pass


@message(tag="test.sup.Quit")
class Quit:
    pass


@message(tag="test.sup.Count")
class Count:
    pass


@message(tag="test.sup.Watch")
class Watch:
    target: ActorRef


@message(tag="test.sup.Unwatch")
class Unwatch:
    target: ActorRef


class Worker(Actor):
    def __init__(self, name: str, log: list) -> None:
        self.name = name
        self.log = log
        self.count = 0

    async def started(self) -> None:
        self.log.append(("start", self.name))

    async def restarted(self, failure: BaseException | None) -> None:
        self.log.append(("restart", self.name, repr(failure) if failure else None))

    async def stopping(self) -> None:
        self.log.append(("stop", self.name))

    @handler
    def crash(self, msg: Crash) -> None:
        raise RuntimeError(f"{self.name} crashed")

    @handler
    def quit(self, msg: Quit) -> None:
        self.stop()

    @handler
    def count(self, msg: Count) -> int:
        self.count += 1
        return self.count


def supervisor(strategy: Strategy, names: list[str], log: list, restart=Restart.TRANSIENT):
    class Sup(Actor):
        supervision = strategy

        async def started(self) -> None:
            for name in names:
                self.spawn(functools.partial(Worker, name, log), name=name, restart=restart)

    return Sup


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def test_one_for_one_restarts_only_the_failed_child() -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(supervisor(OneForOne(intensity=5), ["a", "b", "c"], log))
        await settle()
        log.clear()
        b = system.lookup("b")
        assert await b.ask(Count()) == 1
        b.tell(Crash())
        # State does not survive the restart, but the mailbox and the reference do.
        assert await b.ask(Count()) == 1
        assert log == [("stop", "b"), ("restart", "b", "RuntimeError('b crashed')")]


async def test_one_for_all_stops_in_reverse_and_starts_in_order() -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(supervisor(OneForAll(intensity=5), ["a", "b", "c"], log))
        await settle()
        log.clear()
        system.lookup("b").tell(Crash())
        await settle()
        assert log == [
            ("stop", "b"),
            ("stop", "c"),
            ("stop", "a"),
            ("restart", "a", None),
            ("restart", "b", "RuntimeError('b crashed')"),
            ("restart", "c", None),
        ]


async def test_rest_for_one_restarts_the_failed_child_and_later_ones() -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(supervisor(RestForOne(intensity=5), ["a", "b", "c"], log))
        await settle()
        log.clear()
        system.lookup("b").tell(Crash())
        await settle()
        assert log == [
            ("stop", "b"),
            ("stop", "c"),
            ("restart", "b", "RuntimeError('b crashed')"),
            ("restart", "c", None),
        ]


async def test_intensity_exceeded_escalates_to_the_parent() -> None:
    log: list = []
    sup_starts = []

    class Sup(supervisor(OneForOne(intensity=2, period=5.0), ["a", "b"], log)):
        async def started(self) -> None:
            sup_starts.append(trio.current_time())
            await super().started()

    async with ActorSystem(supervision=OneForOne(intensity=10)) as system:
        sup = system.spawn(Sup, name="sup")
        await settle()
        for _ in range(3):
            system.lookup("a").tell(Crash())
            await settle()
        # Two restarts were allowed; the third failure made the supervisor stop its
        # children and fail; the root restarted it, and it started its children anew.
        assert log.count(("restart", "a", "RuntimeError('a crashed')")) == 2
        assert len(sup_starts) == 2
        # The failed child was torn down first, then its sibling; then a fresh start.
        assert log[-4:] == [("stop", "a"), ("stop", "b"), ("start", "a"), ("start", "b")]
        assert system.stats().actors["sup"].restarts == 1
        assert system.lookup("sup") == sup


async def test_root_supervisor_giving_up_fails_the_system() -> None:
    log: list = []
    with pytest.raises(RestartIntensityExceeded, match="more than 1 restart"):
        async with ActorSystem(supervision=OneForOne(intensity=1, period=5.0)) as system:
            ref = system.spawn(functools.partial(Worker, "w", log))
            ref.tell(Crash())
            await settle()
            ref.tell(Crash())
            await trio.sleep_forever()


async def test_restarts_outside_the_period_do_not_accumulate(autojump_clock) -> None:
    log: list = []
    async with ActorSystem(supervision=OneForOne(intensity=1, period=5.0)) as system:
        ref = system.spawn(functools.partial(Worker, "w", log))
        for _ in range(5):
            ref.tell(Crash())
            await trio.sleep(6.0)
        assert system.stats().actors[ref.name].restarts == 5


async def test_backoff_delays_restarts(autojump_clock) -> None:
    log: list = []
    times = []

    class Timed(Worker):
        async def restarted(self, failure: BaseException | None) -> None:
            times.append(trio.current_time())

    strategy = OneForOne(intensity=10, period=100.0, backoff=Backoff(min=1.0, max=3.0))
    async with ActorSystem(supervision=strategy) as system:
        ref = system.spawn(functools.partial(Timed, "w", log))
        start = trio.current_time()
        for _ in range(4):
            ref.tell(Crash())
            await ref.ask(Count())
        assert [round(t - start, 6) for t in times] == [1.0, 3.0, 6.0, 9.0]


async def test_messages_wait_in_the_mailbox_during_a_restart(autojump_clock) -> None:
    log: list = []
    strategy = OneForOne(intensity=10, backoff=Backoff(min=2.0))
    async with ActorSystem(supervision=strategy) as system:
        ref = system.spawn(functools.partial(Worker, "w", log))
        ref.tell(Crash())
        for _ in range(3):
            ref.tell(Count())
        assert await ref.ask(Count()) == 4


@pytest.mark.parametrize(
    ("restart", "msg", "restarted", "reason"),
    [
        (Restart.PERMANENT, Quit(), True, None),
        (Restart.PERMANENT, Crash(), True, None),
        (Restart.TRANSIENT, Quit(), False, "normal"),
        (Restart.TRANSIENT, Crash(), True, None),
        (Restart.TEMPORARY, Quit(), False, "normal"),
        (Restart.TEMPORARY, Crash(), False, "failed: RuntimeError('w crashed')"),
    ],
)
async def test_restart_types(restart, msg, restarted, reason) -> None:
    log: list = []
    terminated: list = []

    class Watcher(Actor):
        @handler
        def on_watch(self, m: Watch) -> None:
            self.watch(m.target)

        @handler
        def terminated(self, m: Terminated) -> None:
            terminated.append(m.reason)

    async with ActorSystem(supervision=OneForOne(intensity=5)) as system:
        ref = system.spawn(functools.partial(Worker, "w", log), name="w", restart=restart)
        watcher = system.spawn(Watcher)
        watcher.tell(Watch(ref))
        ref.tell(msg)
        await settle()
        assert (system.lookup("w") is not None) == restarted
        assert terminated == ([] if restarted else [reason])


async def test_monitors() -> None:
    log: list = []
    seen: list = []

    class Watcher(Actor):
        @handler
        def on_watch(self, m: Watch) -> None:
            self.watch(m.target)

        @handler
        def on_unwatch(self, m: Unwatch) -> None:
            self.unwatch(m.target)

        @handler
        def terminated(self, m: Terminated) -> None:
            seen.append((m.actor.name, m.reason))

    async with ActorSystem() as system:
        watcher = system.spawn(Watcher)
        a = system.spawn(functools.partial(Worker, "a", log), name="a")
        b = system.spawn(functools.partial(Worker, "b", log), name="b")
        for ref in (a, b):
            watcher.tell(Watch(ref))
        watcher.tell(Watch(system.ref("ak://local/ghost")))
        watcher.tell(Unwatch(b))
        await settle()
        await system.stop(a)
        await system.stop(b)
        watcher.tell(Watch(a))  # already gone: Terminated at once
        await settle()
        assert seen == [("ghost", "no such actor"), ("a", "stopped"), ("a", "no such actor")]


async def test_unwatch_discards_a_terminated_already_queued(autojump_clock) -> None:
    seen: list = []

    class Watcher(Actor):
        @handler
        def on_watch(self, m: Watch) -> None:
            self.watch(m.target)

        @handler
        async def nap_then_unwatch(self, m: Unwatch) -> None:
            await trio.sleep(1.0)
            self.unwatch(m.target)

        @handler
        def terminated(self, m: Terminated) -> None:
            seen.append(m.reason)

    async with ActorSystem() as system:
        watcher = system.spawn(Watcher)
        target = system.spawn(functools.partial(Worker, "t", []))
        watcher.tell(Watch(target))
        watcher.tell(Unwatch(target))
        await settle()
        # The target stops while the watcher naps: Terminated is queued, then the
        # watcher unwatches; the queued Terminated must not be handled.
        await system.stop(target)
        await trio.sleep(2.0)
        assert seen == []
        assert system.stats().actors[watcher.name].processed == 2


@given(
    st.integers(min_value=0, max_value=5),
    st.floats(min_value=0.5, max_value=20.0),
    st.lists(st.floats(min_value=0.0, max_value=10.0), max_size=30),
)
def test_restart_history_never_allows_more_than_intensity_in_a_period(
    intensity: int, period: float, gaps: list[float]
) -> None:
    strategy = OneForOne(intensity=intensity, period=period)
    history = RestartHistory()
    now = 0.0
    allowed: list[float] = []
    for gap in gaps:
        now += gap
        if history.allow(strategy, now):
            allowed.append(now)
        else:
            # Refused only when the window is really full.
            assert sum(1 for t in allowed if t > now - period) >= intensity
    for t in allowed:
        assert sum(1 for u in allowed if t - period < u <= t) <= intensity


def test_strategies_choose_the_right_children() -> None:
    kids = ["a", "b", "c", "d"]
    assert OneForOne().affected(kids, "b") == ["b"]
    assert OneForAll().affected(kids, "b") == kids
    assert RestForOne().affected(kids, "b") == ["b", "c", "d"]
    assert Backoff(min=0.5, max=3.0).delay(1) == 0.5
    assert Backoff(min=0.5, max=3.0).delay(3) == 2.0
    assert Backoff(min=0.5, max=3.0).delay(9) == 3.0


async def test_siblings_start_in_spawn_order(autojump_clock) -> None:
    log: list = []

    class SlowStart(Worker):
        async def started(self) -> None:
            # Later children would finish first if starts ran concurrently.
            await trio.sleep({"a": 3.0, "b": 2.0, "c": 1.0}[self.name])
            await super().started()

    class Sup(Actor):
        async def started(self) -> None:
            for name in "abc":
                self.spawn(functools.partial(SlowStart, name, log), name=name)

    async with ActorSystem() as system:
        system.spawn(Sup)
        await trio.sleep(10.0)
        assert log == [("start", "a"), ("start", "b"), ("start", "c")]
