"""``kill -USR1``: a process prints its trio task tree."""

from __future__ import annotations

import os
import signal

import trio

from actorkube.cli._debug import dump_on_sigusr1, task_tree


async def _parked(task_status=trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep_forever()


async def test_the_tree_names_every_task_where_it_waits() -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(_parked)
        tree = task_tree()
        nursery.cancel_scope.cancel()
    line = next(line for line in tree.splitlines() if "_parked" in line)
    assert line.startswith("  ")  # under the test's task
    assert "test_cli_debug.py" in line and "in _parked" in line


class _Out:
    def __init__(self) -> None:
        self.text = ""
        self.written = trio.Event()

    def write(self, text: str) -> None:
        self.text += text
        self.written.set()

    def flush(self) -> None:
        pass


async def test_sigusr1_prints_the_tree() -> None:
    out = _Out()
    async with trio.open_nursery() as nursery:
        await nursery.start(dump_on_sigusr1, out)
        os.kill(os.getpid(), signal.SIGUSR1)
        with trio.fail_after(10):
            await out.written.wait()
        nursery.cancel_scope.cancel()
    assert out.text.startswith("--- trio tasks ---") and "dump_on_sigusr1" in out.text
