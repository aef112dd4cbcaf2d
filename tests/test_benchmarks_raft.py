"""``python -m benchmarks.raft --quick`` runs end to end and writes JSON of the documented
shape.

Benchmarks are not tests: nothing here asserts a timing or a ratio's size. What is
checked is that the quick run works in a second process (PySyncObj's nodes in processes
of their own), prints its table and verdicts, and writes every expected result as a
positive number.
"""

from __future__ import annotations

import math
import sys

import pytest
from benchmark_run import by_name, run_quick

SETUPS = (
    "actorkube.memory",
    "actorkube.disk_nofsync",
    "actorkube.disk_fsync",
    "pysyncobj.memory",
    "pysyncobj.file",
    "pysyncobj_default.memory",
    "pysyncobj_1proc.memory",
)
METRICS = {
    "proposals": "proposals/s",
    "latency_p50": "us",
    "latency_p99": "us",
    "cpu_per_proposal": "us",
}
PROPOSERS = (1, 10, 100)
BINDING_RATIOS = (
    "actorkube.memory_vs_pysyncobj.memory",
    "actorkube.disk_nofsync_vs_pysyncobj.file",
)
REFERENCE_RATIOS = (
    "actorkube.disk_fsync_vs_pysyncobj.file",
    "actorkube.memory_vs_pysyncobj_default.memory",
    "actorkube.memory_vs_pysyncobj_1proc.memory",
)


@pytest.fixture(scope="module")
def raft_bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """Run the quick benchmark once for the whole module: (its JSON, its stdout)."""
    return run_quick("raft", tmp_path_factory.mktemp("bench"))


def _ratio_names(pairs: tuple[str, ...]) -> list[str]:
    return [f"ratio.proposals.c{n}.{pair}" for pair in pairs for n in PROPOSERS]


def test_json_has_the_documented_shape(raft_bench: tuple[dict, str]) -> None:
    report, _ = raft_bench
    assert report["benchmark"] == "raft"
    assert set(report) == {"benchmark", "results", "environment", "parameters", "notes", "summary"}
    for result in report["results"]:
        assert isinstance(result["name"], str)
        assert isinstance(result["value"], int | float)
        assert isinstance(result["unit"], str) and result["unit"]
    names = [r["name"] for r in report["results"]]
    assert len(names) == len(set(names))


def test_every_setup_metric_and_proposer_count_is_a_positive_number(
    raft_bench: tuple[dict, str],
) -> None:
    results = by_name(raft_bench[0])
    expected = {
        f"{metric}.{setup}.c{n}": unit
        for metric, unit in METRICS.items()
        for setup in SETUPS
        for n in PROPOSERS
    }
    missing = [name for name in expected if name not in results]
    assert not missing
    for name, unit in expected.items():
        result = results[name]
        assert math.isfinite(result["value"]) and result["value"] > 0, (name, result["value"])
        assert result["unit"] == unit
        assert result["repetitions"] and all(v > 0 for v in result["repetitions"])
        assert result["proposers"] == int(name.rsplit(".c", 1)[1])


def test_ratios_carry_their_target_and_verdict(raft_bench: tuple[dict, str]) -> None:
    report, stdout = raft_bench
    results = by_name(report)
    for name in _ratio_names(BINDING_RATIOS) + _ratio_names(REFERENCE_RATIOS):
        ratio = results[name]
        assert ratio["unit"] == "x"
        assert math.isfinite(ratio["value"]) and ratio["value"] > 0
        assert ratio["target"] == 2.0
        assert ratio["met"] is (ratio["value"] >= ratio["target"])
        assert ratio["binding"] is (name in _ratio_names(BINDING_RATIOS))
    assert len(report["summary"]) == len(_ratio_names(BINDING_RATIOS))
    for line in report["summary"]:
        assert line.endswith(("): met", "): NOT met"))
        assert line in stdout


def test_parameters_and_environment_say_how_the_numbers_were_taken(
    raft_bench: tuple[dict, str],
) -> None:
    report, _ = raft_bench
    params, env = report["parameters"], report["environment"]
    assert params["quick"] is True
    assert params["proposers"] == list(PROPOSERS)
    assert params["payload_bytes"] == 100
    assert params["nodes"] == 3
    assert set(params["setups"]) == set(SETUPS)
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cores"] >= 1
    for package in ("actorkube", "trio", "pysyncobj"):
        assert env["packages"][package] != "not installed"
    for key in ("actorkube", "pysyncobj", "fairness"):
        assert report["notes"][key]
