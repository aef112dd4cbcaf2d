"""``python -m benchmarks.etcd --quick`` runs end to end and writes JSON of the
documented shape (no timing is asserted; every watcher must get every event, though:
that is a correctness property of the fan-out, not a speed)."""

from __future__ import annotations

from benchmark_run import by_name, run_quick


def test_the_quick_etcd_benchmark_runs(tmp_path) -> None:
    report, stdout = run_quick("etcd", tmp_path)
    results = by_name(report)
    assert report["benchmark"] == "etcd"
    for op in ("put", "range", "range_serializable", "txn"):
        for clients in (1, 10):
            for metric in ("throughput", "latency_p50", "latency_p99"):
                assert results[f"{op}.c{clients}.{metric}"]["value"] > 0
    assert results["watch_fanout.events_delivered"]["value"] > 0
    assert results["watch_fanout.lost"]["value"] == 0
    assert "watch fan-out" in stdout
