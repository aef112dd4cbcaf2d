"""Parking a task until another task wakes it: ``trio.lowlevel.wait_task_rescheduled``'s
contract, with fewer objects per wait.

A call of ``wait_task_rescheduled(abort)`` makes a coroutine, a generator inside it, the
message it hands trio's run loop (``WaitTaskRescheduled(abort)``), and the
``reschedule`` that ends the wait an ``outcome.Value(None)``. The runtime parks a task
for every ask it waits on and every time an actor's mailbox runs dry, so those objects
are made tens of thousands of times a second; and a task that waits for seconds (an idle
actor of an idle node) keeps its set alive past the young collections, which scan them
until a full collection takes them. Here:

- ``trap(abort)`` makes the run loop's message once, for a parking place that always
  aborts with the same function (a cell's idle wait, every ask's wait);
- ``park(trap)`` is a generator-based awaitable that hands it over: one generator per
  wait, and one frame fewer than a coroutine calling a coroutine;
- ``wake(task)`` reschedules with one shared ``Value(None)``, which ``park`` recognises
  and never unwraps (an outcome may be unwrapped once).

Rules: a task parked with ``park`` is woken with ``wake`` (or aborted by trio: it then
raises ``Cancelled`` as ``wait_task_rescheduled`` does), and ``wake`` only wakes tasks
parked with ``park``: ``wait_task_rescheduled`` would unwrap the shared value, and the
next task woken with it would fail. The message's class is read from trio at import
(what the first step of ``wait_task_rescheduled`` yields), not imported from trio's
private modules; if trio ever hands the run loop something this module does not
recognise, these names fall back to trio's own functions, slower but the same.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import Any

import outcome
from trio.lowlevel import Abort, reschedule, wait_task_rescheduled

_WOKEN = outcome.Value(None)


def _never(_: Any) -> Abort:
    return Abort.FAILED


def _message_class() -> type | None:
    """The class of the message ``wait_task_rescheduled`` hands the run loop, if it is
    the one-field message this module expects; else None."""
    coro = wait_task_rescheduled(_never)
    try:
        msg = coro.send(None)
    except BaseException:
        return None
    finally:
        coro.close()
    cls = type(msg)
    try:
        if getattr(cls(_never), "abort_func", None) is not _never:
            return None
    except Exception:
        return None
    return cls


_Trap = _message_class()


@types.coroutine
def _park(trap: Any) -> Generator[Any, Any, None]:
    got = yield trap
    if got is not _WOKEN:
        got.unwrap()  # trio's Cancelled (or KeyboardInterrupt), or a plain reschedule's None


def _wake(task: Any) -> None:
    reschedule(task, _WOKEN)


def _trap_is_abort(abort: Callable[[Any], Abort]) -> Any:
    return abort


if _Trap is not None:
    trap: Callable[[Callable[[Any], Abort]], Any] = _Trap
    park: Callable[[Any], Any] = _park
    wake: Callable[[Any], None] = _wake
else:  # pragma: no cover - a trio whose run-loop protocol changed
    trap = _trap_is_abort
    park = wait_task_rescheduled
    wake = reschedule
