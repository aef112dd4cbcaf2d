"""Actors, references, ask/tell, mailboxes, dead letters and the system's lifecycle."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from actorkube.actor import (
    Actor,
    ActorError,
    ActorRef,
    ActorSystem,
    Address,
    AskTimeout,
    CodecError,
    DeadLetter,
    HandlerFailed,
    MailboxFull,
    OneForOne,
    Overflow,
    Undeliverable,
    handler,
    message,
)


@message(tag="test.basic.Ping")
class Ping:
    n: int


@message(tag="test.basic.Sleep")
class Sleep:
    seconds: float


@message(tag="test.basic.Fail")
class Fail:
    text: str


@message(tag="test.basic.Get")
class Get:
    pass


@message(tag="test.basic.Unknown")
class Unknown:
    pass


@message(tag="test.basic.Later")
class Later:
    n: int


@message(tag="test.basic.Answer")
class Answer:
    n: int


@message(tag="test.basic.GiveRef")
class GiveRef:
    pass


class Echo(Actor):
    def __init__(self, log: list | None = None) -> None:
        self.log = log if log is not None else []
        self.pending = []

    async def started(self) -> None:
        self.log.append("started")

    async def stopping(self) -> None:
        self.log.append("stopping")

    @handler
    def ping(self, msg: Ping) -> int:
        self.log.append(msg.n)
        return msg.n + 1

    @handler
    async def sleep(self, msg: Sleep) -> str:
        self.log.append(("sleep", msg.seconds))
        await trio.sleep(msg.seconds)
        self.log.append(("woke", msg.seconds))
        return "slept"

    @handler
    def fail(self, msg: Fail) -> None:
        raise ValueError(msg.text)

    @handler
    def get(self, msg: Get) -> list:
        return [x for x in self.log if isinstance(x, int)]

    @handler
    def later(self, msg: Later) -> None:
        self.pending.append((self.defer_reply(), msg.n))

    @handler
    def answer(self, msg: Answer) -> None:
        for reply, n in self.pending:
            reply.send(Ping(n + msg.n))
        self.pending.clear()

    @handler
    def give_ref(self, msg: GiveRef) -> ActorRef:
        return self.ref


async def test_tell_and_ask_in_order() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo, name="echo")
        for i in range(100):
            ref.tell(Ping(i))
        assert await ref.ask(Get()) == list(range(100))
        assert await ref.ask(Ping(41)) == 42


async def test_handlers_run_one_message_at_a_time(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Echo(log))
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ref.ask, Sleep(2.0))
            nursery.start_soon(ref.ask, Sleep(1.0))
        # Whichever came first, the second sleep starts only after the first one woke.
        first, second = log[1][1], log[3][1]
        assert log[1:] == [("sleep", first), ("woke", first), ("sleep", second), ("woke", second)]
        assert trio.current_time() - start == pytest.approx(3.0)


async def test_lifecycle_hooks_and_stop() -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Echo(log), name="echo")
        await ref.ask(Ping(1))
        await system.stop(ref)
        assert log == ["started", 1, "stopping"]
        assert system.lookup("echo") is None
        ref.tell(Ping(2))
        with pytest.raises(Undeliverable) as err:
            await ref.ask(Ping(3))
        assert err.value.reason == "actor stopped"
        assert system.dead_letters.by_reason["actor stopped"] == 2


async def test_handler_exception_reaches_asker_as_typed_error() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        with pytest.raises(HandlerFailed) as err:
            await ref.ask(Fail("kaput"))
        assert err.value.error_type == "ValueError"
        assert err.value.error == "kaput"
        assert "ValueError: kaput" in err.value.traceback
        # The actor was restarted (one_for_one) and serves again.
        assert await ref.ask(Ping(1)) == 2
        stats = system.stats().actors[ref.name]
        assert (stats.failed, stats.restarts) == (1, 1)


async def test_ask_timeout(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(Sleep(10.0), timeout=1.0)
        assert trio.current_time() - start == pytest.approx(1.0)
        # The late reply is discarded and the actor keeps serving.
        assert await ref.ask(Ping(1), timeout=20.0) == 2


async def test_ask_timeout_covers_waiting_for_room_in_a_full_mailbox(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Slow)
        ref.tell(Sleep(100.0))
        await trio.testing.wait_all_tasks_blocked()
        for i in range(3):
            ref.tell(Ping(i))
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(Ping(9), timeout=2.0)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert len(ref._cell.mailbox) == 3


async def test_answered_asks_do_not_pile_up_in_the_timer_heap() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        for i in range(5000):
            await ref.ask(Ping(i), timeout=60.0)
        assert len(system._timer_service._heap) <= 2100


async def test_default_ask_timeout_comes_from_the_system(autojump_clock) -> None:
    async with ActorSystem(ask_timeout=3.0) as system:
        ref = system.spawn(Echo)
        start = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(Sleep(10.0))
        assert trio.current_time() - start == pytest.approx(3.0)


async def test_ask_of_an_actor_that_stops_meanwhile_does_not_hang(autojump_clock) -> None:
    reasons = []

    async def ask(ref: ActorRef, msg: object) -> None:
        try:
            await ref.ask(msg, timeout=None)
        except Undeliverable as exc:
            reasons.append(exc.reason)

    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, ref, Sleep(100.0))  # being handled when the stop comes
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, ref, Ping(1))  # still queued when the stop comes
            await trio.testing.wait_all_tasks_blocked()
            await system.stop(ref)
        assert trio.current_time() < 100.0
    assert reasons == ["actor stopped", "actor stopped"]


async def test_deferred_reply() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        async with trio.open_nursery() as nursery:
            results = []

            async def ask_later() -> None:
                results.append(await ref.ask(Later(1)))

            nursery.start_soon(ask_later)
            await trio.testing.wait_all_tasks_blocked()
            ref.tell(Answer(10))
        assert results == [Ping(11)]


async def test_deferred_reply_fails_when_the_actor_stops() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        async with trio.open_nursery() as nursery:
            errors = []

            async def ask_later() -> None:
                try:
                    await ref.ask(Later(1), timeout=None)
                except Undeliverable as exc:
                    errors.append(exc.reason)

            nursery.start_soon(ask_later)
            await trio.testing.wait_all_tasks_blocked()
            await system.stop(ref)
        assert errors == ["actor stopped"]


async def test_unhandled_message_goes_to_dead_letters() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        with pytest.raises(Undeliverable) as err:
            await ref.ask(Unknown())
        assert err.value.reason == "unhandled message"
        ref.tell(Unknown())
        await ref.ask(Ping(0))
        assert system.dead_letters.by_reason["unhandled message"] == 2
        assert system.stats().actors[ref.name].failed == 0


async def test_refs_cross_messages_and_replies() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Echo, name="e")
        got = await ref.ask(GiveRef())
        assert got == ref
        assert got.address == Address(system.name, "e")
        assert await got.ask(Ping(1)) == 2
        assert system.ref(str(ref.address)) == ref


async def test_unregistered_or_mistyped_messages_are_refused_at_the_sender() -> None:
    class NotAMessage:
        pass

    async with ActorSystem() as system:
        ref = system.spawn(Echo)
        with pytest.raises(CodecError):
            ref.tell(NotAMessage())
        with pytest.raises(CodecError, match=r"Ping\.n: expected int, got str"):
            ref.tell(Ping("one"))
        assert system.stats().actors[ref.name].received == 0


async def test_names_are_unique() -> None:
    async with ActorSystem() as system:
        system.spawn(Echo, name="x")
        with pytest.raises(ActorError, match="already exists"):
            system.spawn(Echo, name="x")
        assert system.lookup("x") is not None
        assert system.lookup("y") is None


class Slow(Actor):
    mailbox_size = 3

    @handler
    async def sleep(self, msg: Sleep) -> None:
        await trio.sleep(msg.seconds)

    @handler
    def ping(self, msg: Ping) -> int:
        return msg.n


async def busy_then_pings(ref: ActorRef, numbers: range) -> None:
    """Keep ``ref`` (a ``Slow``) busy for a second, then tell it ``Ping(n)`` for each
    of ``numbers`` while it is."""
    ref.tell(Sleep(1.0))
    await trio.testing.wait_all_tasks_blocked()
    for i in numbers:
        ref.tell(Ping(i))


@pytest.mark.parametrize(
    ("overflow", "kept"),
    [(Overflow.DROP_NEW, [0, 1, 2]), (Overflow.DROP_OLDEST, [2, 3, 4])],
)
async def test_overflow_policies_drop_to_dead_letters(autojump_clock, overflow, kept) -> None:
    handled = []

    class Recorder(Slow):
        @handler
        def ping(self, msg: Ping) -> None:
            handled.append(msg.n)

    async with ActorSystem() as system:
        ref = system.spawn(Recorder, overflow=overflow)
        await busy_then_pings(ref, range(5))
        await trio.sleep(2.0)
        assert handled == kept
        assert system.dead_letters.by_reason["mailbox full"] == 2
        stats = system.stats().actors[ref.name]
        assert (stats.dropped, stats.high_water) == (2, 3)


@pytest.mark.parametrize("overflow", [Overflow.DROP_NEW, Overflow.DROP_OLDEST, Overflow.FAIL])
async def test_control_messages_pass_a_full_mailbox_in_order(autojump_clock, overflow) -> None:
    # A child's "done" must reach its parent even when clients filled the mailbox: the
    # API server's front lost its workers this way, one dropped report at a time.
    handled = []

    class Pool(Slow):
        control_messages = (Later,)

        @handler
        def ping(self, msg: Ping) -> None:
            handled.append(msg.n)

        @handler
        def later(self, msg: Later) -> None:
            handled.append(-msg.n)

    async with ActorSystem() as system:
        ref = system.spawn(Pool, overflow=overflow)
        await busy_then_pings(ref, range(3))
        for n in (1, 2):  # the mailbox is full: these pass its bound
            ref.tell(Later(n))
        await trio.sleep(2.0)
        assert handled == [0, 1, 2, -1, -2]
        assert system.dead_letters.by_reason.get("mailbox full", 0) == 0
        await busy_then_pings(ref, range(3, 6))  # and the bound still holds for the rest
        if overflow == Overflow.FAIL:
            with pytest.raises(MailboxFull):
                ref.tell(Ping(6))
        else:
            ref.tell(Ping(6))
            assert system.dead_letters.by_reason["mailbox full"] == 1


async def test_overflow_fail_raises_at_the_sender(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Slow, overflow=Overflow.FAIL)
        await busy_then_pings(ref, range(3))
        with pytest.raises(MailboxFull):
            ref.tell(Ping(3))


async def test_send_waits_for_room(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Slow)
        ref.tell(Sleep(5.0))
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        for i in range(10):
            await ref.send(Ping(i))
        # The first three fit at once; the rest waited for the sleep to end.
        assert trio.current_time() - start == pytest.approx(5.0)
        assert system.dead_letters.count == 0
        assert system.stats().actors[ref.name].high_water == 3


async def test_dead_letters_are_observable_by_subscription() -> None:
    seen: list[DeadLetter] = []

    class Listener(Actor):
        @handler
        def dead(self, msg: DeadLetter) -> None:
            seen.append(msg)

    async with ActorSystem() as system:
        listener = system.spawn(Listener)
        system.dead_letters.subscribe(listener)
        gone = system.ref("ak://local/nobody")
        gone.tell(Ping(1))
        await trio.testing.wait_all_tasks_blocked()
        assert seen == [DeadLetter("ak://local/nobody", "test.basic.Ping", "no such actor")]
        assert list(system.dead_letters.recent) == seen


async def test_body_exception_propagates_unwrapped_and_nothing_keeps_running() -> None:
    log: list = []
    with pytest.raises(KeyError):
        async with ActorSystem() as system:
            system.spawn(lambda: Echo(log))
            await trio.testing.wait_all_tasks_blocked()
            raise KeyError("boom")
    # Torn down like a crash: no stopping hook ran.
    assert log == ["started"]


async def test_cancellation_is_not_swallowed(autojump_clock) -> None:
    with trio.move_on_after(1.0) as scope:
        async with ActorSystem() as system:
            ref = system.spawn(Echo)
            await ref.ask(Sleep(100.0), timeout=None)
    assert scope.cancelled_caught


async def test_graceful_exit_stops_actors_children_first() -> None:
    log: list = []

    class Parent(Actor):
        async def started(self) -> None:
            self.spawn(functools.partial(Named, "child-1", log), name="child-1")
            self.spawn(functools.partial(Named, "child-2", log), name="child-2")

        async def stopping(self) -> None:
            log.append("parent")

    async with ActorSystem() as system:
        system.spawn(functools.partial(Named, "first", log))
        system.spawn(Parent)
        await trio.testing.wait_all_tasks_blocked()
    assert log == ["child-2", "child-1", "parent", "first"]


class Named(Actor):
    def __init__(self, label: str, log: list) -> None:
        self.label = label
        self.log = log

    async def stopping(self) -> None:
        self.log.append(self.label)


async def test_spawn_outside_a_running_system_is_an_error() -> None:
    system = ActorSystem()
    with pytest.raises(ActorError, match="not running"):
        system.spawn(Echo)


async def test_one_handler_for_several_types_and_subclass_dispatch() -> None:
    class Multi(Actor):
        @handler(Ping, Later)
        def either(self, msg: object) -> str:
            return type(msg).__name__

    async with ActorSystem() as system:
        ref = system.spawn(Multi)
        assert await ref.ask(Ping(1)) == "Ping"
        assert await ref.ask(Later(1)) == "Later"
    with pytest.raises(TypeError, match="message classes"):
        handler("not a type")


def test_a_handler_may_not_hide_an_actor_method() -> None:
    with pytest.raises(TypeError, match=r"hides Actor\.watch"):

        class Bad(Actor):
            @handler
            def watch(self, msg: Ping) -> None:
                pass


async def test_nothing_keeps_running_after_exit() -> None:
    task = trio.lowlevel.current_task()
    async with ActorSystem() as system:
        refs = [system.spawn(Echo) for _ in range(10)]
        await refs[0].ask(Sleep(0.0))
        nursery = system._nursery
        assert nursery in task.child_nurseries
        assert len(nursery.child_tasks) == 11  # ten actors and the timer task
    assert nursery not in task.child_nurseries
    assert not nursery.child_tasks
    with pytest.raises(ActorError, match="not running"):
        system.spawn(Echo)


class SyncOnly(Actor):
    """All handlers are plain functions: asks to it when idle are handled inline."""

    def __init__(self) -> None:
        self.pending = []
        self.seen = 0

    @handler
    def ping(self, msg: Ping) -> int:
        self.seen += 1
        return self.seen

    @handler
    def fail(self, msg: Fail) -> None:
        raise ValueError(msg.text)

    @handler
    def later(self, msg: Later) -> None:
        self.pending.append(self.defer_reply())

    @handler
    def answer(self, msg: Answer) -> None:
        for reply in self.pending:
            reply.send(msg.n)

    @handler
    def quit(self, msg: Get) -> str:
        self.stop()
        return "bye"


async def test_asks_to_an_idle_synchronous_actor_keep_every_guarantee() -> None:
    async with ActorSystem(supervision=OneForOne(intensity=5)) as system:
        ref = system.spawn(SyncOnly)
        assert [await ref.ask(Ping(0)) for _ in range(3)] == [1, 2, 3]
        # A failure restarts the actor (fresh state) and the asker gets the error.
        with pytest.raises(HandlerFailed, match="ValueError: no"):
            await ref.ask(Fail("no"))
        assert await ref.ask(Ping(0)) == 1
        # A deferred reply waits for another message.
        async with trio.open_nursery() as nursery:
            got = []

            async def ask_later() -> None:
                got.append(await ref.ask(Later(0)))

            nursery.start_soon(ask_later)
            await trio.testing.wait_all_tasks_blocked()
            ref.tell(Answer(7))
        assert got == [7]
        stats = system.stats().actors[ref.name]
        assert (stats.received, stats.processed, stats.failed, stats.restarts) == (7, 6, 1, 1)
        # Stopping itself from an inline handler stops the actor.
        assert await ref.ask(Get()) == "bye"
        await trio.testing.wait_all_tasks_blocked()
        assert system.lookup(ref.name) is None


async def test_idle_synchronous_actors_answer_asks_inline(monkeypatch) -> None:
    from actorkube.actor._cell import Cell

    inline = []
    original = Cell.ask_inline

    def counting(self, reply, data):
        done = original(self, reply, data)
        inline.append(done)
        return done

    monkeypatch.setattr(Cell, "ask_inline", counting)
    async with ActorSystem() as system:
        sync_ref, async_ref = system.spawn(SyncOnly), system.spawn(Echo)
        for _ in range(3):
            await sync_ref.ask(Ping(0))
            await async_ref.ask(Ping(0))
    # The first ask of each finds the actor still starting; Echo has async handlers.
    assert inline == [False, False, True, False, True, False]


@message(tag="test.basic.Mark")
class Mark:
    n: int


class Batcher(Actor):
    """Marks work as due per message; does it once per burst, in idle()."""

    def __init__(self, flushes: list) -> None:
        self.flushes = flushes
        self.due: list[int] = []

    @handler
    def mark(self, msg: Mark) -> None:
        self.due.append(msg.n)

    async def idle(self) -> None:
        if self.due:
            self.flushes.append(self.due)
            self.due = []


async def test_idle_runs_once_per_burst_of_messages() -> None:
    flushes: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: Batcher(flushes))
        for i in range(5):
            ref.tell(Mark(i))
        await trio.testing.wait_all_tasks_blocked()
        ref.tell(Mark(5))
        await trio.testing.wait_all_tasks_blocked()
    assert flushes == [[0, 1, 2, 3, 4], [5]]


@message(tag="test.basic.Total")
class Total:
    pass


class AskedBatcher(Batcher):
    @handler
    def total(self, msg: Total) -> int:
        return sum(len(f) for f in self.flushes)


async def test_idle_runs_after_asks_too() -> None:
    # All handlers are plain functions, which lets asks to an idle actor run inline in
    # the asker's task; idle() must still run after them.
    flushes: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: AskedBatcher(flushes))
        ref.tell(Mark(0))
        await ref.ask(Total())  # the actor is started, has seen a Mark, and is idle
        await ref.ask(Mark(1))
        await trio.testing.wait_all_tasks_blocked()
        assert flushes == [[0], [1]]


class Counted(Actor):
    def __init__(self) -> None:
        self.idles = 0

    @handler
    def mark(self, msg: Mark) -> None:
        pass

    async def idle(self) -> None:
        self.idles += 1


async def test_idle_is_not_starved_by_sustained_load() -> None:
    instances: list[Counted] = []

    def make() -> Counted:
        instances.append(Counted())
        return instances[-1]

    async with ActorSystem() as system:
        ref = system.spawn(make, mailbox_size=10_000)
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(50):  # more than one batch arrives between two of its turns
            for i in range(300):
                ref.tell(Mark(i))
            await trio.lowlevel.checkpoint()
            if not len(ref._cell.mailbox):
                break
        assert instances[-1].idles > 0


async def test_a_reference_made_by_address_before_its_actor_exists_reaches_it_later(
    autojump_clock,
):
    """``system.ref("ak://local/name")`` taken before ``name`` is spawned (peers naming
    each other, as etcd members do) delivers once it exists, and is a dead letter
    while it does not."""
    async with ActorSystem() as system:
        early = system.ref(f"ak://{system.name}/later")
        with pytest.raises(Undeliverable, match="no such actor"):
            await early.ask(Ping(1))
        log: list = []
        system.spawn(lambda: Echo(log), name="later")
        assert await early.ask(Ping(1)) == 2
        early.tell(Ping(5))
        assert await early.ask(Ping(7)) == 8
        assert log == ["started", 1, 5, 7]
