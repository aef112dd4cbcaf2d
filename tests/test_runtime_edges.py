"""Edges of the runtime found in review: replies, bounds, supervision races, shutdown."""

from __future__ import annotations

import asyncio
import enum
from typing import Any

import pytest
import trio
import trio.testing

from actorkube.actor import (
    Actor,
    ActorError,
    ActorSystem,
    AskTimeout,
    CodecError,
    HandlerFailed,
    OneForAll,
    OneForOne,
    Overflow,
    Restart,
    Terminated,
    Undeliverable,
    asyncio_actor_system,
    encode_message,
    handler,
    message,
)
from actorkube.sim import SimNetwork


@message(tag="test.edges.Q")
class Q:
    pass


@message(tag="test.edges.Flush")
class Flush:
    pass


@message(tag="test.edges.Other")
class Other:
    pass


@message(tag="test.edges.Boom")
class Boom:
    pass


@message(tag="test.edges.Tick")
class Tick:
    pass


@message(tag="test.edges.Work")
class Work:
    n: int


@message(tag="test.edges.AnyField")
class AnyField:
    value: Any


@message(tag="test.edges.IntField")
class IntField:
    value: int


@message(tag="test.edges.StrField")
class StrField:
    value: str


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


# --- replies -----------------------------------------------------------------------------


class Deferrer(Actor):
    def __init__(self) -> None:
        self.pending = []

    @handler
    def on_q(self, msg: Q) -> None:
        self.pending.append(self.defer_reply())

    @handler
    def on_flush(self, msg: Flush) -> None:
        for reply in self.pending:
            reply.send(1)
        self.pending.clear()


async def test_deferred_replies_of_timed_out_asks_are_forgotten(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Deferrer)
        for _ in range(3):
            with pytest.raises(AskTimeout):
                await ref.ask(Q(), timeout=1)
        assert ref._cell.deferred == {}
        ref.tell(Flush())  # late replies to asks nobody waits for: no effect, no error
        await settle()
        assert ref._cell.deferred == {}


class Lenient(Actor):
    def unhandled(self, msg: object) -> None:
        pass  # log and carry on, as an override may

    @handler
    def on_q(self, msg: Q) -> int:
        return 1


async def test_an_unhandled_override_that_returns_still_ends_the_ask(autojump_clock) -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Lenient)
        with pytest.raises(Undeliverable, match="unhandled message"):
            await ref.ask(Other(), timeout=None)


class Strict(Actor):
    def unhandled(self, msg: object) -> None:
        raise ValueError(f"unexpected {type(msg).__name__}")

    @handler
    def on_q(self, msg: Q) -> int:
        return 1


async def test_an_unhandled_override_that_raises_is_a_failure_of_the_actor() -> None:
    async with ActorSystem() as system:
        ref = system.spawn(Strict)
        with pytest.raises(HandlerFailed, match="unexpected Other"):
            await ref.ask(Other())
        assert await ref.ask(Q()) == 1
        assert system.stats().actors[ref.name].restarts == 1


class Unannotated(Actor):
    @handler
    def go(self, msg):
        return 1


async def test_a_handler_without_a_message_type_is_refused_at_spawn() -> None:
    async with ActorSystem() as system:
        with pytest.raises(ActorError, match="annotate the message parameter"):
            system.spawn(Unannotated)


class NotAMessage:
    pass


class Forwarder(Actor):
    @handler
    def go(self, msg: Q) -> int:
        self.ref.tell(NotAMessage())  # the handler's own mistake, not its reply's
        return 1


async def test_a_codec_error_inside_a_handler_is_reported_as_itself() -> None:
    async with ActorSystem() as system:
        with pytest.raises(HandlerFailed) as err:
            await system.spawn(Forwarder).ask(Q())
        assert err.value.error_type == "CodecError"
        assert "reply could not be encoded" not in err.value.error


@pytest.mark.parametrize(
    "msg",
    [AnyField({1, 2}), AnyField(object()), IntField(2**64), StrField("\ud800")],
    ids=["set-in-any", "object-in-any", "int-beyond-64-bits", "lone-surrogate"],
)
def test_values_msgpack_cannot_carry_raise_codec_error(msg: object) -> None:
    with pytest.raises(CodecError, match="cannot be encoded"):
        encode_message(msg)


# --- dead letters and runtime messages ---------------------------------------------------


class QuietSubscriber(Actor):
    @handler
    def on_q(self, msg: Q) -> int:
        return 1


async def test_a_subscriber_without_a_dead_letter_handler_does_not_loop() -> None:
    async with ActorSystem() as system:
        sub = system.spawn(QuietSubscriber)
        system.dead_letters.subscribe(sub)
        system.ref("ak://local/nobody").tell(Q())
        await settle()
        # The letter, then the subscriber's unhandled DeadLetter (counted, not re-sent).
        assert system.dead_letters.count == 2
        assert [d.message_type for d in system.dead_letters.recent] == [
            "test.edges.Q",
            "actorkube.DeadLetter",
        ]


async def test_a_stopped_subscriber_is_dropped() -> None:
    async with ActorSystem() as system:
        sub = system.spawn(QuietSubscriber)
        system.dead_letters.subscribe(sub)
        await system.stop(sub)
        for _ in range(10):
            system.ref("ak://local/nobody").tell(Q())
        assert system.dead_letters.count == 10


class BusyWatcher(Actor):
    mailbox_size = 2

    def __init__(self, target, log: list) -> None:
        self.target = target
        self.log = log

    async def started(self) -> None:
        self.watch(self.target)

    @handler
    async def on_q(self, msg: Q) -> None:
        await trio.sleep(10)

    @handler
    def on_other(self, msg: Other) -> None:
        pass

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        self.log.append(msg.reason)


@pytest.mark.parametrize("overflow", [Overflow.DROP_NEW, Overflow.FAIL])
async def test_terminated_is_delivered_past_a_full_mailbox(autojump_clock, overflow) -> None:
    log: list = []
    async with ActorSystem() as system:
        target = system.spawn(QuietSubscriber)
        watcher = system.spawn(lambda: BusyWatcher(target, log), overflow=overflow)
        await settle()
        watcher.tell(Q())  # busy for 10 s
        await settle()
        watcher.tell(Other())
        watcher.tell(Other())  # the mailbox is full now
        await system.stop(target)
        await trio.sleep(20)
        assert log == ["stopped"]


# --- timers and the mailbox bound ---------------------------------------------------------


class TimedBusy(Actor):
    mailbox_size = 1

    def __init__(self, log: list) -> None:
        self.log = log

    async def started(self) -> None:
        self.timers.start_single("deadline", Tick(), 1.0)

    @handler
    async def on_q(self, msg: Q) -> None:
        await trio.sleep(5)

    @handler
    def on_tick(self, msg: Tick) -> None:
        self.log.append("tick")

    @handler
    def on_work(self, msg: Work) -> None:
        self.log.append(msg.n)


@pytest.mark.parametrize("overflow", [Overflow.DROP_NEW, Overflow.DROP_OLDEST])
async def test_timer_messages_stay_outside_the_bound(autojump_clock, overflow) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: TimedBusy(log), overflow=overflow)
        await settle()
        ref.tell(Q())  # busy until t=5; the tick is queued at t=1
        await trio.sleep(2)
        ref.tell(Work(1))  # fits: the queued tick does not count
        await trio.sleep(10)
        assert log == ["tick", 1]
        assert system.dead_letters.count == 0
        assert not ref._cell.timers.is_active("deadline")


class TimerInStopping(Actor):
    def __init__(self, log: list) -> None:
        self.log = log

    async def stopping(self) -> None:
        self.timers.start_periodic("hb", Tick(), 1.0)

    @handler
    def on_tick(self, msg: Tick) -> None:
        self.log.append("tick")

    @handler
    def on_boom(self, msg: Boom) -> None:
        raise RuntimeError("boom")


async def test_timers_started_in_stopping_die_with_the_instance(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: TimerInStopping(log))
        await settle()
        ref.tell(Boom())
        await trio.sleep(3.5)
        assert log == []
        await system.stop(ref)
        await trio.sleep(3)
        assert [e for e in system._timer_service._heap if e[2].live] == []


# --- supervision --------------------------------------------------------------------------


class Child(Actor):
    def __init__(self, name: str, log: list) -> None:
        self.name = name
        self.log = log

    async def restarted(self, failure: BaseException | None) -> None:
        self.log.append(("restarted", self.name, type(failure).__name__ if failure else None))

    @handler
    def on_boom(self, msg: Boom) -> None:
        raise RuntimeError(self.name)


class GroupParent(Actor):
    supervision = OneForAll(intensity=1, period=5.0)

    def __init__(self, log: list) -> None:
        self.log = log

    async def started(self) -> None:
        self.spawn(lambda: Child("a", self.log), name="a")
        self.spawn(lambda: Child("b", self.log), name="b")
        self.spawn(lambda: Child("t", self.log), name="t", restart=Restart.TEMPORARY)

    async def restarted(self, failure: BaseException | None) -> None:
        self.log.append(("restarted", "parent", type(failure).__name__))
        await self.started()


async def test_simultaneous_failures_in_a_group_cost_one_restart() -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(lambda: GroupParent(log))
        await settle()
        system.lookup("a").tell(Boom())
        system.lookup("b").tell(Boom())  # fails in the same batch as a
        await settle()
        # a's exit restarted the group; b's exit was consumed by it (as in OTP).
        assert ("restarted", "parent", "RestartIntensityExceeded") not in log
        assert sum(1 for e in log if e[:2] == ("restarted", "a")) == 1
        assert sum(1 for e in log if e[:2] == ("restarted", "b")) == 1


async def test_a_temporary_sibling_is_not_restarted_by_one_for_all() -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(lambda: GroupParent(log))
        await settle()
        system.lookup("a").tell(Boom())
        await settle()
        assert not any(e[:2] == ("restarted", "t") for e in log)
        assert system.lookup("t") is None
        assert system.lookup("b") is not None


class FailingChild(Actor):
    @handler
    def on_boom(self, msg: Boom) -> None:
        raise RuntimeError("c")


class FreshSupervisor(Actor):
    supervision = OneForOne(intensity=1, period=5.0)

    def __init__(self, log: list) -> None:
        self.log = log

    async def started(self) -> None:
        self.spawn(FailingChild, name="c")

    async def restarted(self, failure: BaseException | None) -> None:
        self.log.append(type(failure).__name__)
        await self.started()


async def test_a_restarted_supervisor_starts_with_an_empty_history(autojump_clock) -> None:
    log: list = []
    async with ActorSystem(supervision=OneForOne(intensity=1, period=5.0)) as system:
        system.spawn(lambda: FreshSupervisor(log))
        await settle()
        system.lookup("c").tell(Boom())  # t=0: restarted
        await trio.sleep(1)
        system.lookup("c").tell(Boom())  # t=1: the supervisor gives up; the root restarts it
        await trio.sleep(1)
        assert log == ["RestartIntensityExceeded"]
        system.lookup("c").tell(Boom())  # t=2: the new supervisor restarts c
        await trio.sleep(1)
        assert log == ["RestartIntensityExceeded"]
        assert system.lookup("c") is not None


class SpawnsInStopping(Actor):
    def __init__(self, errors: list) -> None:
        self.errors = errors

    async def stopping(self) -> None:
        try:
            self.spawn(FailingChild, name="late")
        except ActorError as exc:
            self.errors.append(str(exc))


async def test_no_children_are_spawned_during_teardown() -> None:
    errors: list = []
    async with ActorSystem() as system:
        ref = system.spawn(lambda: SpawnsInStopping(errors))
        await settle()
        await system.stop(ref)
        assert system.lookup("late") is None
        assert errors and "cannot spawn children" in errors[0]


class SlowStart(Actor):
    async def started(self) -> None:
        await trio.sleep(100)


class Later(Actor):
    def __init__(self, log: list) -> None:
        self.log = log

    async def started(self) -> None:
        self.log.append("started")


async def test_an_actor_waiting_for_its_elder_sibling_can_be_stopped(autojump_clock) -> None:
    log: list = []
    async with ActorSystem() as system:
        system.spawn(SlowStart)
        later = system.spawn(lambda: Later(log))
        await settle()
        with trio.fail_after(1):
            await system.stop(later)
        await trio.sleep(200)
        assert log == []  # stopped before it started: no hooks


# --- the system's lifecycle ----------------------------------------------------------------


class SlowStopper(Actor):
    async def stopping(self) -> None:
        await trio.sleep(10)


async def test_cancelled_during_graceful_shutdown(autojump_clock) -> None:
    with trio.move_on_after(1) as outer:
        async with ActorSystem() as system:
            system.spawn(SlowStopper)
            await settle()
    assert outer.cancelled_caught


async def test_no_top_level_spawn_while_shutting_down(autojump_clock) -> None:
    errors: list = []

    class Spawner(Actor):
        async def stopping(self) -> None:
            try:
                self.system.spawn(Lenient)
            except ActorError as exc:
                errors.append(str(exc))

    async with ActorSystem() as system:
        system.spawn(Spawner)
        await settle()
    assert errors == ["local is shutting down: no new actors"]


async def test_the_body_exception_keeps_its_cause() -> None:
    with pytest.raises(ValueError) as err:
        async with ActorSystem():
            try:
                {}["k"]
            except KeyError as cause:
                raise ValueError("x") from cause
    assert isinstance(err.value.__cause__, KeyError)


def test_a_guest_call_pending_at_exit_is_cancelled_in_asyncio() -> None:
    seen = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        async def forever() -> None:
            loop.call_soon(started.set_result, None)
            await trio.sleep_forever()

        async with asyncio_actor_system() as guest:
            task = asyncio.ensure_future(guest.call(forever))
            await started
        try:
            await task
        except BaseException as exc:
            seen.append(type(exc))

    asyncio.run(main())
    assert seen == [asyncio.CancelledError]


# --- remote replies across incarnations ----------------------------------------------------


class SlowWorker(Actor):
    @handler
    async def work(self, msg: Work) -> int:
        await trio.sleep(10)
        return msg.n


async def test_a_late_reply_never_answers_a_new_incarnations_ask(autojump_clock) -> None:
    async with SimNetwork(seed=1) as net:
        await net.add_host("a", lambda system: None)
        await net.add_host("b", lambda system: system.spawn(SlowWorker, name="slow"))
        with pytest.raises(AskTimeout):
            await net.system("a").ref("ak://b/slow").ask(Work(1), timeout=0.5)
        await net.crash("a")
        await net.restart("a")
        # The reply to the crashed incarnation's ask arrives first and must be ignored.
        assert await net.system("a").ref("ak://b/slow").ask(Work(2), timeout=60) == 2


class Middle(Actor):
    @handler
    async def on_q(self, msg: Q) -> None:
        await self.system.lookup("strict").ask(Other())  # raises HandlerFailed


async def test_a_failure_passed_up_from_a_nested_ask_names_the_actor_that_failed() -> None:
    async with ActorSystem() as system:
        system.spawn(Strict, name="strict")
        middle = system.spawn(Middle, name="middle")
        with pytest.raises(HandlerFailed) as err:
            await middle.ask(Q())
        assert err.value.actor == middle.address
        assert err.value.error_type == "HandlerFailed"
        assert "strict failed: ValueError: unexpected Other" in err.value.error


def test_reply_kinds_must_be_integers() -> None:
    import msgpack

    from actorkube.actor import DecodeError
    from actorkube.actor._codec import decode_value

    with pytest.raises(DecodeError, match="unknown value kind"):
        decode_value(msgpack.packb([True, ["test.edges.Q"]]), lambda s, n: None)


# --- second review ---------------------------------------------------------------------------


@message(tag="test.edges.Note")
class Note:
    n: int


class BusyOldestFirst(Actor):
    mailbox_size = 2
    overflow = Overflow.DROP_OLDEST

    def __init__(self, gate: trio.Event, seen: list) -> None:
        self.gate = gate
        self.seen = seen

    @handler
    def on_watch(self, msg: Work) -> None:
        self.watch(self.system.lookup("target"))

    @handler
    async def on_q(self, msg: Q) -> None:
        await self.gate.wait()

    @handler
    def on_note(self, msg: Note) -> None:
        self.seen.append(msg.n)

    @handler
    def on_terminated(self, msg: Terminated) -> None:
        self.seen.append("terminated")


async def test_drop_oldest_never_drops_terminated() -> None:
    gate, seen = trio.Event(), []
    async with ActorSystem() as system:
        system.spawn(QuietSubscriber, name="target")
        busy = system.spawn(lambda: BusyOldestFirst(gate, seen))
        busy.tell(Work(0))  # watch the target
        busy.tell(Q())  # then block
        await settle()
        await system.stop(system.lookup("target"))  # Terminated queued
        busy.tell(Note(1))
        busy.tell(Note(2))  # the bound is 2: Terminated does not count, nothing drops
        gate.set()
        await settle()
    assert seen == ["terminated", 1, 2]


class Recorder(Actor):
    def __init__(self, name: str, log: list, hold: trio.Event | None = None) -> None:
        self.name = name
        self.log = log
        self.hold = hold

    async def started(self) -> None:
        self.log.append(f"{self.name} started begins")
        if self.hold is not None:
            await self.hold.wait()
        self.log.append(f"{self.name} started returns")

    @handler
    def on_boom(self, msg: Boom) -> None:
        raise RuntimeError("boom")


class HeldGroup(Actor):
    supervision = OneForAll(intensity=10)

    def __init__(self, log: list, hold: trio.Event) -> None:
        self.log = log
        self.hold = hold

    async def started(self) -> None:
        self.spawn(lambda: Recorder("x", self.log), name="x")
        await trio.sleep(1)
        self.spawn(lambda: Recorder("a", self.log, self.hold), name="a")
        self.spawn(lambda: Recorder("b", self.log), name="b")


async def test_a_group_restart_keeps_first_starts_in_order(autojump_clock) -> None:
    log, hold = [], trio.Event()
    async with ActorSystem() as system:
        system.spawn(lambda: HeldGroup(log, hold))
        await trio.sleep(2)  # a is inside its start hook; b waits for it
        assert log[-1] == "a started begins"
        system.lookup("x").tell(Boom())  # one_for_all: x, a and b restart
        await trio.sleep(1)
        assert not [e for e in log if e.startswith("b")]
        hold.set()
        await settle()
    assert [e for e in log if e.startswith("b")] == ["b started begins", "b started returns"]


CRASH_WHILE_STOPPING = """
import trio, trio.testing
from actorkube.actor import Actor, ActorSystem

class C(Actor):
    def __init__(self, n, flag):
        self.n, self.flag = n, flag
    async def stopping(self):
        if self.n == 2:
            self.flag.append(1)

class P(Actor):
    def __init__(self, flag):
        self.flag = flag
    async def started(self):
        self.spawn(lambda: C(1, self.flag), name="c1")
        self.spawn(lambda: C(2, self.flag), name="c2")

async def once():
    flag = []
    with trio.CancelScope() as scope:
        async with ActorSystem() as system:
            parent = system.spawn(lambda: P(flag))
            await trio.testing.wait_all_tasks_blocked()
            system._nursery.start_soon(system.stop, parent)
            while not flag:
                await trio.lowlevel.checkpoint()
            scope.cancel()  # as a crash of its host in the simulation does
            await trio.lowlevel.checkpoint()

for _ in range(200):
    trio.run(once)
print("ok")
"""


def test_a_crash_while_a_parent_stops_its_children_ends() -> None:
    # A regression here spins without a checkpoint, which no trio timeout can stop:
    # run it in a process of its own, with a deadline.
    import subprocess
    import sys

    try:
        out = subprocess.run(
            [sys.executable, "-c", CRASH_WHILE_STOPPING],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("a parent spun forever stopping children that had crashed") from None
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


class Pair(enum.Enum):
    A = (1, 2)


@message(tag="test.edges.PairField")
class PairField:
    value: Pair


def test_map_keys_and_enum_values_must_be_able_to_come_back() -> None:
    with pytest.raises(CodecError, match="map keys must be scalars"):
        encode_message(AnyField({(1, 2): "x"}))
    with pytest.raises(CodecError, match="map keys must be scalars"):
        encode_message(AnyField([{"ok": {(1,): 2}}]))
    with pytest.raises(CodecError, match="member values must be scalars"):
        encode_message(PairField(Pair.A))
