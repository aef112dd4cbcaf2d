"""``python -m benchmarks.http_api --quick`` starts ``actorkube up`` in a process of its
own, drives it over HTTPS and writes JSON of the documented shape. No timing is
asserted; what is asserted is that every request of the run was answered with a 2xx
and the watch delivered every event it waited for."""

from __future__ import annotations

from benchmark_run import by_name, run_quick


def test_the_quick_http_api_benchmark_runs(tmp_path) -> None:
    report, stdout = run_quick("http_api", tmp_path, timeout=300)
    results = by_name(report)
    assert report["benchmark"] == "http_api"
    clients = report["parameters"]["clients"]
    for op in ("get", "list", "create", "update"):
        for c in (1, clients):
            assert results[f"{op}.c{c}.throughput"]["value"] > 0
            assert results[f"{op}.c{c}.latency_p99"]["value"] > 0
            assert results[f"{op}.c{c}.errors"]["value"] == 0
    watch = results["watch.delivery_p99"]
    assert watch["events"] == report["parameters"]["watch_events"]
    assert "over HTTPS" in stdout and "watch delivery" in stdout
