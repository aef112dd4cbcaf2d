"""A load knob for simulated containers: ``SimLoad``, a CPU load per named group that
the running containers of the group share, across every ``SimRuntime`` given the same
``SimLoad`` (a Service's traffic spread over its pods, wherever they run).

Rules of this file:

- ``set(group, cpu_millis)`` sets a group's total load, in thousandths of a core; a
  group never set has 0. A container is in a group while it runs, if its profile's
  ``load_group`` names it (the ``sim.actorkube.io/load-group`` annotation).
- Each member's share is the total divided equally; the remainder goes one milli each
  to the members that joined first, so the shares add up to the total exactly. (The
  runtime caps a share at the container's CPU limit, as the CFS quota throttles it:
  then the group uses less than its total.)
- Members are counted in the order they joined; one leaves when its container stops
  running, or when its runtime is closed (a machine that died serves nothing).
- Plain state, no clock, no I/O: the runtimes ask it for shares when they report stats.
"""

from __future__ import annotations


class SimLoad:
    """Total CPU loads of named groups, shared by their running containers (see the
    module's rules). One instance is given to many ``SimRuntime``s
    (``SimRuntime(..., load=load)``)."""

    def __init__(self) -> None:
        self._totals: dict[str, int] = {}
        self._members: dict[str, dict[int, int]] = {}  # group -> member -> its rank
        self._next = 0

    def set(self, group: str, cpu_millis: int) -> None:
        """Make ``group``'s total load ``cpu_millis`` thousandths of a core from now on."""
        if not isinstance(group, str) or not group:
            raise ValueError(f"a load group is a non-empty name, not {group!r}")
        if isinstance(cpu_millis, bool) or not isinstance(cpu_millis, int) or cpu_millis < 0:
            raise ValueError(f"a load is an integer of at least 0 millicores, not {cpu_millis!r}")
        self._totals[group] = cpu_millis

    def total(self, group: str) -> int:
        """The total load of ``group`` (0 if never set)."""
        return self._totals.get(group, 0)

    def members(self, group: str) -> int:
        """How many running containers share ``group``'s load now."""
        return len(self._members.get(group, ()))

    def join(self, group: str) -> int:
        """A container of ``group`` starts running: its member number."""
        self._next += 1
        members = self._members.setdefault(group, {})
        members[self._next] = len(members)
        return self._next

    def leave(self, group: str, member: int) -> None:
        """Member ``member`` of ``group`` stopped running (once is enough; again is a
        no-op)."""
        members = self._members.get(group)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._members[group]
            return
        for rank, other in enumerate(members):  # joining order is kept by the dict
            members[other] = rank

    def share(self, group: str, member: int) -> int:
        """Member ``member``'s share of ``group``'s load now (0 if not a member)."""
        members = self._members.get(group)
        if not members or member not in members:
            return 0
        base, extra = divmod(self.total(group), len(members))
        return base + (1 if members[member] < extra else 0)
