"""Parking a task (``actorkube.actor._park``): trio's wait_task_rescheduled contract
with fewer objects, and the runtime's waits built on it (an ask's reply, an idle cell,
the timer service's sleep)."""

from __future__ import annotations

import trio
import trio.testing
from trio.lowlevel import Abort, current_task

from actorkube.actor import Actor, ActorSystem, _park, handler, message
from actorkube.actor._park import park, trap, wake


def test_the_fast_path_is_in_use_with_this_trio():
    # If trio changes what its run loop is handed, the module falls back to trio's own
    # functions (correct, slower): this says so instead of letting it pass unseen.
    assert _park._Trap is not None
    assert park is _park._park and wake is _park._wake


async def test_a_parked_task_is_woken_with_none():
    woken = []
    tasks = []
    aborted = []

    def abort(_):
        aborted.append(True)
        return Abort.SUCCEEDED

    message_ = trap(abort)

    async def sleeper():
        tasks.append(current_task())
        woken.append(await park(message_))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        wake(tasks[0])
    assert woken == [None] and not aborted


async def test_cancelling_a_parked_task_calls_abort_and_raises_cancelled():
    aborted = []

    def abort(_):
        aborted.append(True)
        return Abort.SUCCEEDED

    with trio.CancelScope() as scope:
        scope.cancel()
        await park(trap(abort))
    assert scope.cancelled_caught and aborted == [True]


async def test_a_plain_reschedule_wakes_a_parked_task_too():
    # Code that reschedules with trio's default outcome still works (it is unwrapped).
    tasks = []
    woken = []

    async def sleeper():
        tasks.append(current_task())
        woken.append(await park(trap(lambda _: Abort.SUCCEEDED)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sleeper)
        await trio.testing.wait_all_tasks_blocked()
        trio.lowlevel.reschedule(tasks[0])
    assert woken == [None]


@message(tag="test.park.Hold")
class Hold:
    n: int


@message(tag="test.park.Release")
class Release:
    n: int


class Holder(Actor):
    """Answers each Hold only when told to Release; ``held`` is shared with the test."""

    def __init__(self, held: list) -> None:
        self.held = held

    @handler
    def hold(self, msg: Hold) -> None:
        self.held.append((self.defer_reply(), msg.n))

    @handler
    def release(self, msg: Release) -> None:
        for reply, n in self.held:
            reply.send(n + msg.n)
        self.held.clear()


async def test_a_reply_in_the_instant_its_ask_is_cancelled_does_not_wake_the_asker_twice():
    # Every ask shares one abort function, which cannot forget the waiting task; the
    # asker's custom_sleep_data (cleared by trio when it reschedules the task with
    # Cancelled) is what tells the reply not to wake it again.
    async with ActorSystem() as system:
        held: list = []
        ref = system.spawn(lambda: Holder(held))
        outcome = []
        scope = trio.CancelScope()

        async def ask() -> None:
            with scope:
                outcome.append(await ref.ask(Hold(1)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            assert len(held) == 1
            scope.cancel()  # the asker is rescheduled with Cancelled ...
            held[0][0].send(5)  # ... and the reply comes before it runs
        assert scope.cancelled_caught and outcome == []
        # The runtime goes on: another ask is answered.
        async with trio.open_nursery() as nursery:

            async def ask_again() -> None:
                outcome.append(await ref.ask(Hold(2)))

            nursery.start_soon(ask_again)
            await trio.testing.wait_all_tasks_blocked()
            await ref.ask(Release(100))
        assert outcome == [102]
