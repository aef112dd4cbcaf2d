"""``kubectl autoscale``, which kubectl v1.32 makes as an autoscaling/v1
HorizontalPodAutoscaler, against the API server that stores autoscaling/v2 ones: the
real kubectl (found on PATH; the tests fail loudly without it) over HTTPS, reading the
object back at both versions, printing it, and explaining the v1 kind."""

from __future__ import annotations

import json

import trio
from http_cluster import serve_cluster
from kubectl_run import kubectl

from actorkube.actor import ActorSystem


async def test_kubectl_autoscale_makes_a_v1_hpa_read_at_both_versions(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
        cache = tmp_path / "cache"
        code, out, err = await kubectl(admin, cache, "create", "deployment", "web", "--image=x")
        assert code == 0, err
        code, out, err = await kubectl(admin, cache, "autoscale", "deployment", "web",
                                       "--cpu-percent=50", "--min=1", "--max=5")  # fmt: skip
        assert (code, out.strip()) == (0, "horizontalpodautoscaler.autoscaling/web autoscaled"), err

        code, out, err = await kubectl(admin, cache, "get", "hpa", "web")
        assert code == 0, err
        header, row = out.strip().split("\n")
        assert header.split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS",
                                  "REPLICAS", "AGE"]  # fmt: skip
        cells = row.split()
        assert (cells[0], cells[1], cells[-4], cells[-3]) == ("web", "Deployment/web", "1", "5")

        # (By its full name: kubectl 1.32 drops the version of a short name it expands,
        # so "hpa.v1.autoscaling" asks for the preferred version, v2.)
        code, out, err = await kubectl(admin, cache, "get",
                                       "horizontalpodautoscalers.v1.autoscaling", "web",
                                       "-o", "json", "--show-managed-fields")  # fmt: skip
        assert code == 0, err
        v1 = json.loads(out)
        assert v1["apiVersion"] == "autoscaling/v1"
        assert v1["spec"] == {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": "web"},
                              "minReplicas": 1, "maxReplicas": 5,
                              "targetCPUUtilizationPercentage": 50}  # fmt: skip
        assert "annotations" not in v1["metadata"]  # nothing v1 cannot say
        # kubectl recorded its fields at the version it wrote at, in that version's terms.
        (entry,) = v1["metadata"]["managedFields"]
        assert (entry["manager"], entry["apiVersion"]) == ("kubectl-autoscale", "autoscaling/v1")
        assert "f:targetCPUUtilizationPercentage" in entry["fieldsV1"]["f:spec"]

        code, out, err = await kubectl(admin, cache, "get", "hpa", "web", "-o", "json")
        assert code == 0, err
        v2 = json.loads(out)
        assert v2["apiVersion"] == "autoscaling/v2"
        assert v2["metadata"]["uid"] == v1["metadata"]["uid"]
        assert v2["metadata"]["resourceVersion"] == v1["metadata"]["resourceVersion"]
        target = {"type": "Utilization", "averageUtilization": 50}
        assert v2["spec"]["metrics"] == [{"type": "Resource", "resource": {"name": "cpu",
                                                                           "target": target}}]
        nursery.cancel_scope.cancel()


async def test_kubectl_edits_a_v2_hpa_at_v1_and_explains_the_v1_kind(tmp_path):
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "api"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": "api"},
                    "minReplicas": 2, "maxReplicas": 9,
                    "metrics": [
                        {"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": 60}}},
                        {"type": "Resource", "resource": {"name": "memory", "target": {
                            "type": "AverageValue", "averageValue": "500Mi"}}}]}}  # fmt: skip
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
        cache = tmp_path / "cache"
        code, out, err = await kubectl(admin, cache, "create", "-f", "-",
                                       stdin=json.dumps(hpa).encode())  # fmt: skip
        assert code == 0, err
        # A patch at v1 (kubectl reads the object at v1, patches, sends the patch) keeps
        # the memory metric v1 cannot show but in its annotation.
        patch = '{"spec":{"targetCPUUtilizationPercentage":75}}'
        code, out, err = await kubectl(admin, cache, "patch",
                                       "horizontalpodautoscalers.v1.autoscaling", "api",
                                       "--type=merge", "-p", patch)  # fmt: skip
        assert code == 0, err
        code, out, err = await kubectl(admin, cache, "get", "hpa", "api", "-o", "json")
        metrics = json.loads(out)["spec"]["metrics"]
        assert [m["resource"]["name"] for m in metrics] == ["cpu", "memory"]
        assert metrics[0]["resource"]["target"]["averageUtilization"] == 75
        assert metrics[1]["resource"]["target"] == {"type": "AverageValue",
                                                    "averageValue": "500Mi"}  # fmt: skip

        code, out, err = await kubectl(admin, cache, "explain",
                                       "hpa.spec.targetCPUUtilizationPercentage",
                                       "--api-version=autoscaling/v1")  # fmt: skip
        assert code == 0, err
        assert "GROUP:      autoscaling" in out and "VERSION:    v1" in out
        assert "FIELD: targetCPUUtilizationPercentage <integer>" in out
        nursery.cancel_scope.cancel()
