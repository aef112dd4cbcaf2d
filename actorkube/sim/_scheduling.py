"""Seeded, deterministic task scheduling for trio.

trio runs the tasks that became runnable together (a *batch*) in a random order, so
that nobody comes to rely on an order. For tests, trio keeps a hook (used by its
Hypothesis plugin): when ``trio._core._run._ALLOW_DETERMINISTIC_SCHEDULING`` is true,
each batch is sorted by task creation order and shuffled with ``trio._core._run._r``.
With ``_r`` seeded, the order of every batch is a function of the seed.

Rules of this file:

- The hook is switched on and ``_r`` seeded only inside ``seeded_scheduling``; both are
  restored on the way out, whatever happens.
- If a future trio drops either attribute, ``DeterminismUnavailable`` says so instead
  of the simulation silently losing its determinism.
- ``_r`` is seeded with a string derived from the seed: Python seeds from a string by
  its SHA-512, which does not depend on PYTHONHASHSEED.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ._errors import DeterminismUnavailable

_FLAG = "_ALLOW_DETERMINISTIC_SCHEDULING"


def _trio_run_module():
    module = getattr(getattr(trio, "_core", None), "_run", None)
    rng = getattr(module, "_r", None)
    if module is None or not hasattr(module, _FLAG) or not isinstance(rng, random.Random):
        raise DeterminismUnavailable(
            f"trio {trio.__version__} has no trio._core._run.{_FLAG} / _r hook; the "
            "simulation cannot make trio's task scheduling deterministic with it"
        )
    return module


@contextmanager
def seeded_scheduling(seed: int) -> Iterator[None]:
    """Make trio's scheduling order a function of ``seed`` within the block.

    Enter it before ``trio.run`` (or at the start of the part of a run that must be
    deterministic) and leave it after. Raises ``DeterminismUnavailable`` if the
    installed trio lacks the hook.
    """
    module = _trio_run_module()
    saved_flag = getattr(module, _FLAG)
    saved_state = module._r.getstate()
    setattr(module, _FLAG, True)
    module._r.seed(f"actorkube.sim scheduler {seed}")
    try:
        yield
    finally:
        setattr(module, _FLAG, saved_flag)
        module._r.setstate(saved_state)
