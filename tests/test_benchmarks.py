"""The benchmarks run end to end and write JSON of the documented shape.

Benchmarks are not tests: nothing here asserts a timing or a ratio's size. What is
checked is that ``python -m benchmarks.actor_messaging --quick`` runs in a second
process, prints its table, and writes every expected result as a positive number.
"""

from __future__ import annotations

import math
import os
import sys

import pytest
from benchmark_run import by_name, run_quick

SYSTEMS = ("actorkube", "pykka", "thespian")
METRICS = (
    "tell_one_sender",
    "tell_many_senders",
    "ask_p50",
    "ask_p99",
    "idle_actors",
    "idle_spawn_total",
    "idle_spawn_per_actor",
    "idle_memory_per_actor",
)
RATIOS = (
    "ratio.tell_one_sender.actorkube_vs_pykka",
    "ratio.tell_many_senders.actorkube_vs_pykka",
    "ratio.ask_p50.pykka_vs_actorkube",
)


@pytest.fixture(scope="module")
def actor_messaging(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """Run the quick benchmark once for the whole module: (its JSON, its stdout)."""
    return run_quick("actor_messaging", tmp_path_factory.mktemp("bench"))


def test_json_has_the_documented_shape(actor_messaging: tuple[dict, str]) -> None:
    report, _ = actor_messaging
    assert report["benchmark"] == "actor_messaging"
    assert isinstance(report["results"], list)
    for result in report["results"]:
        assert isinstance(result["name"], str)
        assert isinstance(result["value"], int | float)
        assert isinstance(result["unit"], str) and result["unit"]
    names = [r["name"] for r in report["results"]]
    assert len(names) == len(set(names))


def test_every_expected_result_is_a_positive_number(actor_messaging: tuple[dict, str]) -> None:
    results = by_name(actor_messaging[0])
    expected = [f"{metric}.{system}" for metric in METRICS for system in SYSTEMS]
    expected += RATIOS
    missing = [name for name in expected if name not in results]
    assert not missing
    for name in expected:
        value = results[name]["value"]
        assert math.isfinite(value) and value > 0, (name, value)


def test_quick_run_spawns_the_quick_number_of_idle_actors(
    actor_messaging: tuple[dict, str],
) -> None:
    report, _ = actor_messaging
    results = by_name(report)
    assert report["parameters"]["quick"] is True
    for system in SYSTEMS:
        assert results[f"idle_actors.{system}"]["value"] == report["parameters"]["idle_actors"]


def test_ratios_carry_their_target_and_verdict(actor_messaging: tuple[dict, str]) -> None:
    report, stdout = actor_messaging
    results = by_name(report)
    for name in RATIOS:
        ratio = results[name]
        assert ratio["unit"] == "x"
        assert ratio["met"] is (ratio["value"] >= ratio["target"])
    assert len(report["summary"]) == len(RATIOS)
    for line in report["summary"]:
        assert line.endswith(("): met", "): NOT met"))
        assert line in stdout


def test_environment_records_python_cores_and_package_versions(
    actor_messaging: tuple[dict, str],
) -> None:
    env = actor_messaging[0]["environment"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["cores"] >= 1
    # Which build of that Python ran (builds of one version differ by a third in speed).
    assert env["executable"] == os.path.realpath(sys.executable)
    assert env["libpython"] in ("shared", "static", "unknown")
    assert env["python_speed_ms"] > 0
    for package in ("actorkube", "trio", "pykka", "thespian"):
        assert env["packages"][package] != "not installed"
