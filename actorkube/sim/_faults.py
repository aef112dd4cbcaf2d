"""Fault settings and the pure decision of what happens to one frame.

Rules of this file:

- ``Faults`` is a value: probabilities in [0, 1], a delay range ``(low, high)`` with
  ``0 <= low <= high``. It describes one directed link (or the default of all links).
- ``plan_copies`` is the whole fault model for one frame sent over a link that is not
  cut: it draws from the network's ``random.Random`` in a fixed order and returns, for
  each copy (one, or two when duplicated), either the delay after which it arrives or
  ``None`` when that copy is lost. It reads no clock and keeps no state, so the same
  generator state and settings always give the same plan.
- ``Links`` holds what the scenario changed: the default faults, per-link overrides and
  the cut (partitioned or blocked) directed links. Only membership is ever asked of the
  cut links, never their order.
"""

from __future__ import annotations

import random

import attrs


def _probability(_: object, attribute: attrs.Attribute, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be a probability in [0, 1], got {value!r}")


def _delay_range(_: object, attribute: attrs.Attribute, value: tuple[float, float]) -> None:
    low, high = value
    if not 0.0 <= low <= high:
        raise ValueError(f"{attribute.name} must be (low, high) with 0 <= low <= high")


def _non_negative(_: object, attribute: attrs.Attribute, value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen
class Faults:
    """What the network does to frames on a link.

    - ``drop``: probability that a copy of a frame is lost;
    - ``duplicate``: probability that a frame is delivered twice (each copy is then
      dropped and delayed independently);
    - ``delay``: ``(low, high)`` seconds of virtual time, drawn uniformly per copy;
      frames sent close together on one link can therefore arrive out of order;
    - ``reorder``: probability that a copy is held back by an extra delay drawn
      uniformly from ``[0, reorder_delay]``, so that frames sent after it overtake it
      even when ``delay`` is narrow.

    The default is a perfect link: every frame arrives once, in order, at once.
    """

    drop: float = attrs.field(default=0.0, validator=_probability)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    delay: tuple[float, float] = attrs.field(
        default=(0.0, 0.0), converter=lambda v: (float(v[0]), float(v[1])), validator=_delay_range
    )
    reorder: float = attrs.field(default=0.0, validator=_probability)
    reorder_delay: float = attrs.field(default=0.1, validator=_non_negative)


PERFECT = Faults()


@attrs.frozen
class Copy:
    """One copy of a sent frame: lost (``delay is None``) or arriving after ``delay``
    seconds; ``held`` tells that the reorder hold-back was added to the delay."""

    delay: float | None
    held: bool = False


def plan_copies(faults: Faults, rng: random.Random) -> tuple[Copy, ...]:
    """Decide the fate of one frame on a link that is not cut (see the module rules).

    The draws happen in a fixed order (duplicate, then per copy: drop, delay, reorder,
    hold-back) and only for the knobs that are switched on, so a perfect link consumes
    no randomness.
    """
    copies = 2 if faults.duplicate and rng.random() < faults.duplicate else 1
    return tuple(_plan_copy(faults, rng) for _ in range(copies))


def _plan_copy(faults: Faults, rng: random.Random) -> Copy:
    if faults.drop and rng.random() < faults.drop:
        return Copy(None)
    low, high = faults.delay
    delay = rng.uniform(low, high) if high > low else low
    if faults.reorder and rng.random() < faults.reorder:
        return Copy(delay + rng.uniform(0.0, faults.reorder_delay), held=True)
    return Copy(delay)


@attrs.define
class Links:
    """The mutable link state of a network: default faults, overrides, cuts."""

    default: Faults = PERFECT
    overrides: dict[tuple[str, str], Faults] = attrs.field(factory=dict)
    cut: dict[tuple[str, str], None] = attrs.field(factory=dict)

    def faults_for(self, src: str, dst: str) -> Faults:
        return self.overrides.get((src, dst), self.default)

    def is_cut(self, src: str, dst: str) -> bool:
        return (src, dst) in self.cut
