"""The scheduler's configuration file (KubeSchedulerConfiguration): profiles, plugins
enabled and disabled per extension point, weights, plugin args, leader election, and
clear errors for what it cannot use."""

from __future__ import annotations

import pytest

from actorkube.scheduler import NodeInfo
from actorkube.scheduler._config import ConfigError, load_config
from actorkube.scheduler._framework import ClusterView


def node(name: str, cpu: str = "4", used: str = "0", **spec) -> NodeInfo:
    info = NodeInfo({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "topology.kubernetes.io/zone": name}},
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": "32Gi", "pods": "110"}},
    })  # fmt: skip
    if used != "0":
        info.add_pod(pod(f"{name}-used", used))
    return info


def pod(name: str, cpu: str = "500m", labels=None, **spec) -> dict:
    c = {"name": "c", "image": "pause", "resources": {"requests": {"cpu": cpu}}}
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": {"containers": [c], **spec}}  # fmt: skip


NODES = [node("empty"), node("half", used="2")]

TWO_PROFILES = """
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 50
podInitialBackoffSeconds: 2
podMaxBackoffSeconds: 20
leaderElection:
  leaderElect: true
  leaseDuration: 30s
  renewDeadline: 20s
  retryPeriod: 500ms
  resourceName: my-scheduler
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      disabled: [{name: "*"}]
      enabled: [{name: NodeResourcesFit, weight: 5}]
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources: [{name: cpu, weight: 3}, {name: memory, weight: 1}]
"""


def test_two_profiles_spread_and_pack():
    config = load_config(TWO_PROFILES)
    assert set(config.profiles) == {"default-scheduler", "packer"}
    assert (config.lease_duration, config.renew_deadline, config.retry_period) == (30, 20, 0.5)
    assert config.lease_name == "my-scheduler" and config.lease_namespace == "kube-system"
    assert (config.initial_backoff, config.maximum_backoff) == (2, 20)
    spread = config.profiles["default-scheduler"]()
    packer = config.profiles["packer"]()
    assert spread.percentage == 50 and packer.weights == {"NodeResourcesFit": 5}
    assert spread.schedule(pod("p"), NODES).node == "empty"
    assert packer.schedule(pod("p"), NODES).node == "half"


def test_filters_can_be_turned_off_and_plugins_removed():
    tainted = node("tainted", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])
    config = load_config({"profiles": [{"plugins": {"filter": {"disabled": [
        {"name": "TaintToleration"}]}}}]})  # fmt: skip
    framework = config.profiles["default-scheduler"]()
    assert framework.feasible_nodes(pod("p"), [tainted]) == ["tainted"]
    no_preemption = load_config({"profiles": [{"plugins": {"postFilter": {"disabled": [
        {"name": "DefaultPreemption"}]}}}]}).profiles["default-scheduler"]()  # fmt: skip
    assert "DefaultPreemption" not in [p.name for p in no_preemption.plugins]
    only_fit = {"disabled": [{"name": "*"}],
                "enabled": [{"name": "NodeResourcesFit", "weight": 2}]}  # fmt: skip
    bare = load_config({"profiles": [{"plugins": {"multiPoint": only_fit}}]})
    assert [p.name for p in bare.profiles["default-scheduler"]().plugins] == ["NodeResourcesFit"]


def test_listed_default_spread_constraints():
    config = load_config({"profiles": [{"pluginConfig": [{"name": "PodTopologySpread", "args": {
        "defaultingType": "List",
        "defaultConstraints": [{"topologyKey": "topology.kubernetes.io/zone", "maxSkew": 1,
                                "whenUnsatisfiable": "DoNotSchedule"}]}}]}]})  # fmt: skip

    class Services(ClusterView):
        def services(self, namespace):
            return [{"spec": {"selector": {"app": "web"}}}]

    framework = config.profiles["default-scheduler"]()
    framework.cluster = Services()
    nodes = [node("a"), node("b")]
    nodes[0].add_pod(pod("w0", labels={"app": "web"}))
    # A hard default: the web pod may only go to the zone without one.
    assert framework.feasible_nodes(pod("w1", labels={"app": "web"}), nodes) == ["b"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("a: [", "not YAML or JSON"),
        ("- 1", "a KubeSchedulerConfiguration object is expected"),
        ({"apiVersion": "kubescheduler.config.k8s.io/v1beta3"}, "apiVersion"),
        ({"surprise": 1}, "unknown field 'surprise'"),
        ({"percentageOfNodesToScore": 101}, "percentageOfNodesToScore: 101 is out of range"),
        ({"percentageOfNodesToScore": "all"}, "is not an integer"),
        ({"leaderElection": {"leaseDuration": "soon"}}, "is not a duration"),
        ({"profiles": [{"plugins": {"score": {"enabled": [{"name": "Magic"}]}}}]},
         "unknown plugin 'Magic'"),
        ({"profiles": [{"plugins": {"everywhere": {}}}]}, "unknown extension point"),
        ({"profiles": [{}, {}]}, "is used twice"),
        ({"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
            "scoringStrategy": {"resources": [{"name": "nvidia.com/gpu"}]}}}]}]},
         "only cpu and memory are scored"),
        ({"profiles": [{"pluginConfig": [{"name": "NodeResourcesFit", "args": {
            "scoringStrategy": {"type": "Random"}}}]}]}, "unknown scoring strategy"),
        ({"profiles": [{"pluginConfig": [{"name": "PodTopologySpread", "args": {
            "defaultConstraints": [{"topologyKey": "zone"}]}}]}]}, "defaultingType List"),
    ],
)  # fmt: skip
def test_what_it_cannot_use_is_refused_with_a_reason(config, message):
    with pytest.raises(ConfigError) as e:
        load_config(config)
    assert message in str(e.value)
