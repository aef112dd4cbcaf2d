"""Server-side printing: the columns and cells ``kubectl get`` shows, as Kubernetes'
printers make them (pkg/printers/internalversion), and HumanDuration's ages
(k8s.io/apimachinery/pkg/util/duration)."""

from __future__ import annotations

from datetime import datetime

import pytest

from actorkube.apiserver._printers import human_duration, table

NOW = datetime.fromisoformat("2026-11-26T12:00:00+00:00").timestamp()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-2, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (121, "2m1s"),
        (599, "9m59s"),
        (600, "10m"),
        (179 * 60 + 59, "179m"),
        (3 * 3600, "3h"),
        (7 * 3600 + 59 * 60, "7h59m"),
        (8 * 3600 + 30 * 60, "8h"),
        (47 * 3600, "47h"),
        (48 * 3600, "2d"),
        (49 * 3600, "2d1h"),
        (8 * 86400, "8d"),
        (729 * 86400, "729d"),
        (730 * 86400, "2y"),
        (731 * 86400, "2y1d"),
        (8 * 365 * 86400, "8y"),
    ],
)
def test_ages_read_as_kubernetes_prints_them(seconds, shown):
    assert human_duration(seconds) == shown


def meta(name: str, age: float, **extra) -> dict:
    created = datetime.fromtimestamp(NOW - age).isoformat().split(".")[0] + "Z"
    return {"name": name, "namespace": "default", "creationTimestamp": created, **extra}


def cells(group, resource, obj):
    t = table(group, resource, [obj], NOW)
    return {
        c["name"]: cell
        for c, cell in zip(t["columnDefinitions"], t["rows"][0]["cells"], strict=True)
    }


def test_a_pod_row():
    pod = {
        "metadata": meta("web", 300),
        "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
        "status": {
            "phase": "Running",
            "podIP": "10.0.0.5",
            "containerStatuses": [
                {"ready": True, "restartCount": 2, "state": {"running": {}}},
                {
                    "ready": False,
                    "restartCount": 1,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                },
            ],
        },
    }
    row = cells("", "pods", pod)
    assert row == {
        "Name": "web",
        "Ready": "1/2",
        "Status": "CrashLoopBackOff",
        "Restarts": 3,
        "Age": "5m",
        "IP": "10.0.0.5",
        "Node": "n1",
        "Nominated Node": "<none>",
        "Readiness Gates": "<none>",
    }
    pod["metadata"]["deletionTimestamp"] = "2026-11-26T12:00:30Z"
    assert cells("", "pods", pod)["Status"] == "Terminating"
    pending = {
        "metadata": meta("p", 5),
        "spec": {"containers": [{}]},
        "status": {"phase": "Pending"},
    }
    assert cells("", "pods", pending)["Status"] == "Pending"
    init = {
        "metadata": meta("i", 5),
        "spec": {"containers": [{}], "initContainers": [{}, {}]},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [
                {"state": {"terminated": {"exitCode": 0}}},
                {"state": {"running": {}}},
            ],
        },
    }
    assert cells("", "pods", init)["Status"] == "Init:1/2"


def test_rows_carry_the_object_metadata_and_wide_columns_have_priority_one():
    svc = {
        "metadata": meta("db", 90, labels={"app": "db"}),
        "spec": {
            "type": "NodePort",
            "clusterIP": "10.96.0.10",
            "selector": {"app": "db"},
            "ports": [{"port": 5432, "nodePort": 30432, "protocol": "TCP"}],
        },
    }
    t = table("", "services", [svc], NOW, "42")
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "42"}
    wide = [c["name"] for c in t["columnDefinitions"] if c["priority"] == 1]
    assert wide == ["Selector"]
    assert t["rows"][0]["cells"] == [
        "db",
        "NodePort",
        "10.96.0.10",
        "<none>",
        "5432:30432/TCP",
        "90s",
        "app=db",
    ]
    assert t["rows"][0]["object"] == {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": svc["metadata"],
    }


def test_nodes_deployments_bindings_and_the_default():
    node = {
        "metadata": meta("n1", 3 * 86400, labels={"node-role.kubernetes.io/control-plane": ""}),
        "spec": {"unschedulable": True},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
        },
    }
    row = cells("", "nodes", node)
    assert (row["Status"], row["Roles"], row["Age"], row["Version"]) == (
        "Ready,SchedulingDisabled",
        "control-plane",
        "3d",
        "v1.32.0",
    )
    deploy = {
        "metadata": meta("web", 60),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "app", "image": "nginx"}]}},
        },
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    row = cells("apps", "deployments", deploy)
    assert (row["Ready"], row["Up-to-date"], row["Available"]) == ("2/3", 3, 2)
    assert (row["Containers"], row["Images"], row["Selector"]) == ("app", "nginx", "app=web")
    binding = {
        "metadata": meta("b", 10),
        "roleRef": {"kind": "ClusterRole", "name": "view"},
        "subjects": [
            {"kind": "User", "name": "alice"},
            {"kind": "ServiceAccount", "name": "ci", "namespace": "build"},
        ],
    }
    row = cells("rbac.authorization.k8s.io", "rolebindings", binding)
    assert (row["Role"], row["Users"], row["ServiceAccounts"]) == (
        "ClusterRole/view",
        "alice",
        "build/ci",
    )
    assert list(cells("example.com", "widgets", {"metadata": meta("w", 1)})) == [
        "Name",
        "Created At",
    ]


def test_a_pod_disruption_budget_row():
    pdb = {"metadata": meta("web", 60), "spec": {"minAvailable": "50%"},
           "status": {"disruptionsAllowed": 2}}  # fmt: skip
    assert cells("policy", "poddisruptionbudgets", pdb) == {
        "Name": "web", "Min Available": "50%", "Max Unavailable": "N/A",
        "Allowed Disruptions": 2, "Age": "60s"}  # fmt: skip
