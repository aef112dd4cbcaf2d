"""``kill -USR1 PID``: a running actorkube process prints its trio task tree to stderr.

What a hang looks like from the inside: every task, nested under the nursery that owns
it, with the line where it waits now (the innermost frame of its coroutine chain that
is not trio's own). It is how a shutdown that never ended was found (a shielded wait
on an etcd that was already gone), and it costs nothing until the signal comes.
"""

from __future__ import annotations

import os
import signal
import sys
import types
from typing import TextIO

import trio

_TRIO = os.path.dirname(trio.__file__) + os.sep


def _where(coro: object) -> str:
    """Where a coroutine chain waits: its innermost frame outside trio itself (the
    caller's line, not trio's trap), as ``file:line in function``."""
    frame = None
    while coro is not None:
        # Coroutines expose their frame and what they await; generator-based
        # awaitables their frame and what they yield from.
        f = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if not isinstance(f, types.FrameType):
            break
        if frame is None or not f.f_code.co_filename.startswith(_TRIO):
            frame = f
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    if frame is None:
        return "?"
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"


def task_tree() -> str:
    """The current trio run's tasks, as an indented text tree."""
    lines: list[str] = []

    def walk(task: trio.lowlevel.Task, depth: int) -> None:
        lines.append(f"{'  ' * depth}{task.name}  [{_where(task.coro)}]")
        for nursery in task.child_nurseries:
            for child in sorted(nursery.child_tasks, key=lambda t: t.name):
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines)


async def dump_on_sigusr1(out: TextIO | None = None,
                          task_status=trio.TASK_STATUS_IGNORED) -> None:  # fmt: skip
    """Print ``task_tree()`` to ``out`` (stderr) at every SIGUSR1, until cancelled."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        task_status.started()
        async for _ in signals:
            print(f"--- trio tasks ---\n{task_tree()}\n---", file=out or sys.stderr, flush=True)
