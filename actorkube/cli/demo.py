"""``actorkube demo``: a supervised word-count pipeline that survives a crash.

A ``Counter`` actor counts words sent by a ``Splitter``; both run under a one_for_one
supervisor. Half-way through, a poison line makes the counter fail: the supervisor
restarts it (its state is lost, as with any restart; the splitter's totals show it),
the asker of the poison line gets a typed error, and the pipeline keeps going.
"""

from __future__ import annotations

import time

from actorkube.actor import (
    Actor,
    ActorSystem,
    HandlerFailed,
    OneForOne,
    handler,
    message,
)


@message(tag="demo.Line")
class Line:
    text: str


@message(tag="demo.Words")
class Words:
    words: list[str]


@message(tag="demo.Total")
class Total:
    pass


class Counter(Actor):
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    @handler
    def words(self, msg: Words) -> int:
        if "poison" in msg.words:
            raise ValueError("poison word")
        for word in msg.words:
            self.counts[word] = self.counts.get(word, 0) + 1
        return len(msg.words)

    @handler
    def total(self, msg: Total) -> dict[str, int]:
        return self.counts


class Splitter(Actor):
    def __init__(self) -> None:
        self.lines = 0

    @handler
    async def line(self, msg: Line) -> int:
        self.lines += 1
        counter = self.system.lookup("counter")
        await counter.send(Words(msg.text.split()))
        return self.lines


@message(tag="demo.Members")
class Members:
    pass


class Pipeline(Actor):
    supervision = OneForOne(intensity=3, period=5.0)

    async def started(self) -> None:
        self.counter = self.spawn(Counter, name="counter")
        self.splitter = self.spawn(Splitter, name="splitter")

    @handler
    def members(self, msg: Members) -> list:
        # Handled only after started() returned, so the children exist.
        return [self.counter.name, self.splitter.name]


async def run(messages: int) -> None:
    async with ActorSystem(name="demo") as system:
        pipeline = system.spawn(Pipeline, name="pipeline")
        counter_name, splitter_name = await pipeline.ask(Members())
        counter, splitter = system.lookup(counter_name), system.lookup(splitter_name)
        start = time.perf_counter()
        for i in range(messages):
            await splitter.send(Line(f"the quick brown fox {i % 10}"))
            if i == messages // 2:
                try:
                    await counter.ask(Words(["poison"]))
                except HandlerFailed as exc:
                    print(f"counter failed as planned: {exc.error_type}: {exc.error}")
        # The splitter forwards each line before it answers, so once it has answered
        # for all of them, the counter's mailbox holds them all ahead of Total.
        lines = await splitter.ask(Line(""))
        totals = await counter.ask(Total())
        elapsed = time.perf_counter() - start
        print(
            f"{messages:,} lines through 2 actors in {elapsed:.2f} s "
            f"({messages / elapsed:,.0f} lines/s)"
        )
        print(
            f"splitter saw {lines:,} lines; the counter was restarted once and counted "
            f"'fox' {totals.get('fox', 0):,} times since (state does not survive a restart)"
        )
        stats = system.stats()
        print(
            f"{'actor':<10} {'received':>10} {'processed':>10} {'failed':>7} "
            f"{'restarts':>8} {'high water':>10}"
        )
        for name, s in stats.actors.items():
            print(
                f"{name:<10} {s.received:>10,} {s.processed:>10,} {s.failed:>7} "
                f"{s.restarts:>8} {s.high_water:>10}"
            )
        print(f"dead letters: {stats.dead_letters}")
