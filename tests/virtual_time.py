"""Waiting for a state in virtual time (tests under trio's MockClock with autojump):
polling costs no real time there, and the limit is in virtual seconds."""

from __future__ import annotations

import trio


async def wait_for(check, *, period: float = 0.5, limit: float = 600.0):
    """Polls ``check`` (async, no arguments) every ``period`` virtual seconds until it
    returns something true, and returns that; ``trio.TooSlowError`` after ``limit``."""
    with trio.fail_after(limit):
        while True:
            got = await check()
            if got:
                return got
            await trio.sleep(period)
