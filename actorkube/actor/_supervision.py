"""Supervision decisions, as pure data and functions (Erlang/OTP semantics).

- A child's restart type says when it comes back: ``PERMANENT`` always, ``TRANSIENT``
  only after a failure (not after a normal stop), ``TEMPORARY`` never.
- A strategy says which children restart together when one fails: ``OneForOne`` the
  failed child alone; ``OneForAll`` every child; ``RestForOne`` the failed child and
  the ones started after it. Children are stopped in reverse start order and started
  again in start order.
- Restart intensity: at most ``intensity`` restarts within any ``period`` seconds. The
  restart that would exceed it is not made: the supervisor stops all its children and
  itself, and reports ``RestartIntensityExceeded`` to its own parent.
- Optional exponential backoff delays each restart: ``min * factor**(k - 1)`` seconds,
  capped at ``max``, where k counts the restarts still inside the intensity window.

Nothing here touches the clock: the caller passes ``now`` (trio's clock).
"""

from __future__ import annotations

import abc
import enum
from collections import deque
from collections.abc import Sequence
from typing import TypeVar

import attrs

T = TypeVar("T")


class Restart(enum.Enum):
    """When a child is restarted by its supervisor."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"

    def restarts_after(self, failed: bool) -> bool:
        """Whether a child of this type comes back after exiting (failed or not)."""
        if self is Restart.PERMANENT:
            return True
        return failed and self is Restart.TRANSIENT


@attrs.frozen
class Backoff:
    """Exponential delay between restarts of one supervisor's children."""

    min: float = 0.1
    max: float = 10.0
    factor: float = 2.0

    def delay(self, recent_restarts: int) -> float:
        """Delay before the restart that makes ``recent_restarts`` in the window."""
        return min(self.max, self.min * self.factor ** max(0, recent_restarts - 1))


@attrs.frozen
class Strategy(abc.ABC):
    """Base of the three Erlang strategies; see the module docstring."""

    intensity: int = 1
    period: float = 5.0
    backoff: Backoff | None = None

    @abc.abstractmethod
    def affected(self, children: Sequence[T], failed: T) -> list[T]:
        """The children to restart, in start order, when ``failed`` exits."""


@attrs.frozen
class OneForOne(Strategy):
    """Restart only the child that failed."""

    def affected(self, children: Sequence[T], failed: T) -> list[T]:
        return [failed]


@attrs.frozen
class OneForAll(Strategy):
    """Restart every child when one fails."""

    def affected(self, children: Sequence[T], failed: T) -> list[T]:
        return list(children)


@attrs.frozen
class RestForOne(Strategy):
    """Restart the failed child and every child started after it."""

    def affected(self, children: Sequence[T], failed: T) -> list[T]:
        children = list(children)
        return children[children.index(failed) :]


@attrs.define
class RestartHistory:
    """The restart times of one supervisor, for its intensity limit."""

    times: deque[float] = attrs.field(factory=deque)

    def allow(self, strategy: Strategy, now: float) -> bool:
        """Record a restart at ``now`` if the intensity allows it; False if it does not."""
        while self.times and self.times[0] <= now - strategy.period:
            self.times.popleft()
        if len(self.times) >= strategy.intensity:
            return False
        self.times.append(now)
        return True

    def recent(self) -> int:
        """Restarts inside the current window, the one just recorded included."""
        return len(self.times)
