"""The simulation's errors: a small flat hierarchy, each saying whose fault it is."""

from __future__ import annotations


class SimError(Exception):
    """Base class of every error the simulation itself raises."""


class ScenarioError(SimError):
    """The scenario used the simulated network wrongly (caller's fault): an unknown
    host, a host added twice, a restart of a host that is up, a crash of one that is
    down."""


class DeterminismUnavailable(SimError):
    """The installed trio lacks the hook that makes its scheduling deterministic
    (environment): the simulation refuses to run rather than lose its guarantee."""
