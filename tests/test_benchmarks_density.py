"""The density benchmark's measurement, on a few nodes so it stays quick: every pod
created is seen running by the watch, at the asked rate, with a latency for each. No
timing is asserted (``python -m benchmarks.density --quick`` is the 1,000-node run)."""

from __future__ import annotations

import math

import trio

from benchmarks.density import run


def test_the_density_measurement_sees_every_pod_start() -> None:
    got = trio.run(run, 4, 3, 40.0, 4)
    assert got["nodes"] == 4 and got["pods"] == 12
    for q in ("p50", "p90", "p99", "max"):
        assert 0 <= got[q] < math.inf
    assert got["p50"] <= got["p90"] <= got["p99"] <= got["max"]
    assert got["create_rate"] > 0 and got["syncs_per_pod"] >= 1
