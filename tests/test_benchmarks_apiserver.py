"""``python -m benchmarks.apiserver --quick`` runs end to end and writes JSON of the
documented shape. No timing is asserted; what is asserted is correctness: every request
of the run succeeded (the benchmark stops on a failed one) and every watcher got every
event."""

from __future__ import annotations

from benchmark_run import by_name, run_quick


def test_the_quick_apiserver_benchmark_runs(tmp_path) -> None:
    report, stdout = run_quick("apiserver", tmp_path)
    results = by_name(report)
    assert report["benchmark"] == "apiserver"
    assert report["parameters"]["pods"] == 2000
    assert results["load.create.throughput"]["value"] > 0
    for row in ("get", "update", "create", "delete"):
        for clients in (1, 10):
            for metric in ("throughput", "latency_p50", "latency_p99"):
                assert results[f"{row}.c{clients}.{metric}"]["value"] > 0
    for category in ("mutating", "read_single", "list_namespace", "list_cluster"):
        slo = results[f"slo.{category}.latency_p99"]
        assert slo["samples"] > 0 and slo["slo_ms"] >= 1000 and isinstance(slo["met"], bool)
    assert results["watch_fanout.lost"]["value"] == 0
    assert results["watch_fanout.lost"]["watches_ended"] == 0
    assert "SLO mutating" in stdout and "watch fan-out" in stdout
