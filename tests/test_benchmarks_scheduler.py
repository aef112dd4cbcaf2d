"""``python -m benchmarks.scheduler_perf --quick`` runs every workload on a small
cluster and writes JSON of the documented shape. No timing is asserted; what is asserted
is what the benchmark measures: every measured pod bound, no node overcommitted, no
anti-affinity or spread rule broken, preemption used where the workload needs it."""

from __future__ import annotations

from benchmark_run import by_name, run_quick

WORKLOADS = ("SchedulingBasic", "SchedulingBasic.one_etcd_member", "SchedulingPodAntiAffinity",
             "SchedulingPodAffinity", "TopologySpreading", "PreemptionBasic",
             "Unschedulable")  # fmt: skip


def test_the_quick_scheduler_perf_benchmark_runs(tmp_path) -> None:
    report, stdout = run_quick("scheduler_perf", tmp_path, timeout=600)
    results = by_name(report)
    assert report["benchmark"] == "scheduler_perf"
    for name in WORKLOADS:
        assert results[f"{name}.throughput"]["value"] > 0
        bound = results[f"{name}.bound"]
        assert bound["value"] == report["parameters"]["workloads"][name]["measure_pods"]
        assert bound["correct"] and bound["overcommitted_nodes"] == 0
        assert bound["rule_violations"] == 0
    # Every node is full of low-priority pods: high-priority pods get in by preempting
    # (not necessarily each its own: room one preemption freed may serve another).
    assert results["PreemptionBasic.bound"]["preemptions"] > 0
    assert results["SchedulingBasic.throughput"]["kubernetes_floor"] == 270
    assert results["SchedulingBasic.throughput"]["etcd_members"] == 3
    one = results["SchedulingBasic.one_etcd_member.throughput"]
    assert one["etcd_members"] == 1 and one["kubernetes_floor"] == 270 and "met" not in one
    assert "Kubernetes' floor" in stdout
