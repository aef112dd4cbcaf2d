"""The cloud controller manager's node side: the kubelet registering for an external
cloud; the pure cores of the cloud node, cloud node lifecycle and route controllers
against Kubernetes' behaviour (k8s.io/cloud-provider); each controller against a real
API server and the in-memory cloud in virtual time, the cloud failing and slow; the
system:cloud-controller-manager role; and the whole cluster in the deterministic
simulation (nodes initialised before pods land on them, a terminated instance's node
deleted and its pods replaced, a shut-down instance's node tainted and cleared, routes
for every node, a standby manager taking over)."""

from __future__ import annotations

import contextlib

import attrs
import pytest
import trio
from sim_cluster import INSTANCE_TYPE, REGION, ZONE, SimCluster, pod_cidr
from virtual_time import wait_for

from actorkube.actor import ActorSystem, WallClock
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.apiserver._meta import parse_rfc3339, rfc3339
from actorkube.apiserver._rbac import (
    Attributes,
    RBACAuthorizer,
    UserInfo,
    default_cluster_role_bindings,
    default_cluster_roles,
)
from actorkube.client import ApiClient
from actorkube.cloud import InstanceMetadata, NodeAddress, Route
from actorkube.cloud import _cloudnode as cn
from actorkube.cloud import _cloudnodelifecycle as lc
from actorkube.cloud import _route_plan as rp
from actorkube.cloud import _wellknown as wk
from actorkube.cloud._memory import FOREVER, InMemoryCloud
from actorkube.cloud.manager import cloud_controllers
from actorkube.cloud.node import CloudNodeController
from actorkube.cloud.nodelifecycle import CloudNodeLifecycleController
from actorkube.cloud.route import RouteController
from actorkube.controllers.nodelifecycle import NodeLifecycleController
from actorkube.controllers.podgc import PodGCController
from actorkube.controllers.replicaset import ReplicaSetController
from actorkube.etcd import start_group
from actorkube.node._nodestatus import NodeConfig, node_object, node_status, reregistered
from actorkube.sim import SimNetwork, simulate

EPOCH = 1_700_000_000.0
NOW = 1_800_000_000.0
CCM_USER = "system:serviceaccount:kube-system:cloud-controller-manager"
SA_GROUPS = "system:serviceaccounts,system:serviceaccounts:kube-system"
TOKENS = f'admin-token,admin,1,system:masters\nccm-token,{CCM_USER},2,"{SA_GROUPS}"\n'
UNINITIALIZED = (wk.UNINITIALIZED, "NoSchedule")
SHUTDOWN = (wk.SHUTDOWN, "NoSchedule")


def taint_keys(node: dict) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or ()}


def condition(obj: dict, kind: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or ()
                 if c["type"] == kind), None)  # fmt: skip


def addresses(*pairs: tuple[str, str]) -> tuple[NodeAddress, ...]:
    return tuple(NodeAddress(t, a) for t, a in pairs)


# --- the kubelet for an external cloud --------------------------------------------------------

EXTERNAL = NodeConfig("n1", ip="10.0.0.5", external_cloud_provider=True)


def test_an_external_cloud_kubelet_registers_its_node_tainted_uninitialized():
    node = node_object(EXTERNAL, "ak://n1/kubelet")
    assert node["spec"]["taints"] == [{"key": wk.UNINITIALIZED, "value": "true",
                                       "effect": "NoSchedule"}]  # fmt: skip
    assert node["metadata"]["annotations"][wk.PROVIDED_NODE_IP] == "10.0.0.5"
    configured = attrs.evolve(EXTERNAL, taints=({"key": "a", "effect": "NoExecute"},))
    assert taint_keys(node_object(configured, "s")) == {("a", "NoExecute"), UNINITIALIZED}
    plain = node_object(NodeConfig("n1"), "s")  # without a cloud: neither
    assert "taints" not in plain["spec"]
    assert wk.PROVIDED_NODE_IP not in plain["metadata"]["annotations"]


def test_registering_again_never_puts_the_uninitialized_taint_back():
    initialised = {"metadata": {"name": "n1", "labels": {wk.ZONE: "z"}},
                   "spec": {"providerID": "p://1",
                            "taints": [dict(wk.SHUTDOWN_TAINT)]}}  # fmt: skip
    again = reregistered(EXTERNAL, initialised, "s")
    assert again["spec"]["taints"] == [dict(wk.SHUTDOWN_TAINT)]  # others' stay
    assert again["spec"]["providerID"] == "p://1" and again["metadata"]["labels"][wk.ZONE] == "z"
    assert again["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    # Configured taints apply when the Node is created only (as --register-with-taints):
    # registering again leaves the taints as they are; a node still uninitialised stays so.
    configured = attrs.evolve(EXTERNAL, taints=({"key": "a", "effect": "NoExecute"},))
    fresh = node_object(configured, "s")
    assert taint_keys(reregistered(configured, fresh, "s")) == {("a", "NoExecute"),
                                                                 UNINITIALIZED}  # fmt: skip
    assert reregistered(configured, initialised, "s")["spec"]["taints"] == [
        dict(wk.SHUTDOWN_TAINT)]


def test_the_kubelet_keeps_others_conditions_and_an_external_clouds_addresses():
    first = node_status(EXTERNAL, None, NOW, runtime_version="sim://1")
    assert first["addresses"] == [{"type": "InternalIP", "address": "10.0.0.5"},
                                  {"type": "Hostname", "address": "n1"}]  # fmt: skip
    network = {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
    cloud = [{"type": "InternalIP", "address": "10.0.0.5"},
             {"type": "ExternalIP", "address": "203.0.113.5"}]  # fmt: skip
    old = {**first, "conditions": [network, *first["conditions"]], "addresses": cloud}
    later = node_status(EXTERNAL, old, NOW + 10, runtime_version="sim://1")
    assert [c["type"] for c in later["conditions"]] == [
        "NetworkUnavailable", "MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    assert later["conditions"][0] == network and later["addresses"] == cloud
    without = node_status(NodeConfig("n1", ip="10.0.0.5"), old, NOW, runtime_version="sim://1")
    assert without["addresses"] == first["addresses"]  # no cloud: the kubelet's own


# --- the cloud node controller's core ------------------------------------------------------------

META = InstanceMetadata("inmemory://i-1", "m5.large", "zone-a", "region-1",
                        addresses(("InternalIP", "10.0.0.5"),
                                  ("ExternalIP", "203.0.113.5")))  # fmt: skip


def registered(**spec) -> dict:
    node = node_object(EXTERNAL, "s")
    node["metadata"]["uid"] = "uid-n1"
    node["spec"].update(spec)
    node["status"] = node_status(EXTERNAL, None, NOW, runtime_version="sim://1")
    return node


def test_initialising_writes_provider_id_labels_and_drops_only_the_cloud_taint():
    other = {"key": "example.com/gpu", "value": "yes", "effect": "NoSchedule"}
    node = registered(taints=[other, dict(wk.UNINITIALIZED_TAINT)])
    done = cn.initialized(node, META)
    assert done["spec"]["providerID"] == "inmemory://i-1"
    assert done["spec"]["taints"] == [other]
    labels = done["metadata"]["labels"]
    assert (labels[wk.INSTANCE_TYPE], labels[wk.ZONE], labels[wk.REGION]) == (
        "m5.large", "zone-a", "region-1")
    # Kubernetes still writes the beta labels beside the GA ones.
    assert (labels[wk.BETA_INSTANCE_TYPE], labels[wk.BETA_ZONE], labels[wk.BETA_REGION]) == (
        "m5.large", "zone-a", "region-1")
    assert labels["kubernetes.io/hostname"] == "n1"
    assert done["status"] == node["status"]  # addresses are a status write of their own
    assert cn.cloud_taint(done) is None and cn.cloud_taint(node) == wk.UNINITIALIZED_TAINT
    assert "taints" not in cn.initialized(registered(), META)["spec"]


def test_a_provider_id_once_set_is_kept_and_empty_metadata_labels_nothing():
    node = registered(providerID="kubelet://set-by-flag")
    del node["metadata"]["annotations"][wk.PROVIDED_NODE_IP]  # no --node-ip: no check
    done = cn.initialized(node, InstanceMetadata(""))
    assert done["spec"]["providerID"] == "kubelet://set-by-flag"
    assert not {wk.ZONE, wk.REGION, wk.INSTANCE_TYPE} & set(done["metadata"]["labels"])


def test_a_node_the_cloud_cannot_initialise_stays_as_it_is():
    with pytest.raises(cn.NodeInitError, match="does not set node provider ID for node n1"):
        cn.initialized(registered(), InstanceMetadata(""))
    elsewhere = attrs.evolve(META, addresses=addresses(("InternalIP", "10.9.9.9")))
    for cloud in (elsewhere, attrs.evolve(META, addresses=())):
        with pytest.raises(cn.NodeInitError, match=r"matches ip: 10\.0\.0\.5"):
            cn.initialized(registered(), cloud)


def test_addresses_come_from_the_cloud_with_the_nodes_hostname_and_ip_first():
    node = cn.initialized(registered(), META)
    assert cn.addresses(node, META) == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "ExternalIP", "address": "203.0.113.5"},
        {"type": "Hostname", "address": "n1"},  # the cloud gave none: the kubelet's stays
    ]
    # The provided node IP goes first and is the only address of its type.
    two = attrs.evolve(META, addresses=addresses(("InternalIP", "10.0.0.9"),
                                                 ("InternalIP", "10.0.0.5"),
                                                 ("Hostname", "n1.cloud.internal")))  # fmt: skip
    assert cn.addresses(node, two) == [
        {"type": "InternalIP", "address": "10.0.0.5"},
        {"type": "Hostname", "address": "n1.cloud.internal"}]  # fmt: skip
    # Not while tainted, not when the cloud has none, not when nothing changes (the
    # order alone is no change), not when the cloud lost the node's IP.
    assert cn.addresses(registered(), META) is None
    assert cn.addresses(node, InstanceMetadata("p://1")) is None
    same = {**node, "status": {"addresses": list(reversed(cn.addresses(node, META)))}}
    assert cn.addresses(same, META) is None
    lost = attrs.evolve(META, addresses=addresses(("InternalIP", "10.9.9.9")))
    assert cn.addresses(node, lost) is None


def test_ga_labels_follow_the_beta_ones():
    labels = {wk.BETA_ZONE: "a", wk.ZONE: "b", wk.BETA_REGION: "r", wk.INSTANCE_TYPE: "t"}
    assert cn.reconciled_labels(labels) == {wk.ZONE: "a", wk.REGION: "r"}
    assert cn.reconciled_labels({wk.BETA_ZONE: "a", wk.ZONE: "a"}) == {}


# --- the cloud node lifecycle controller's core ------------------------------------------------


def lifecycle_node(ready: str | None = "False", *, created: float = NOW - 3600,
                   provider_id: str = "p://1", taints=(), labels=None) -> dict:  # fmt: skip
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    spec = {"taints": [dict(t) for t in taints]}
    if provider_id:
        spec["providerID"] = provider_id
    return {"metadata": {"name": "n1", "labels": labels or {},
                         "creationTimestamp": rfc3339(created)},
            "spec": spec, "status": {"conditions": conditions}}  # fmt: skip


@pytest.mark.parametrize(("node", "step"), [
    (lifecycle_node("True"), lc.READY),
    (lifecycle_node("False"), lc.CHECK),
    (lifecycle_node("Unknown"), lc.CHECK),
    (lifecycle_node(None), lc.CHECK),  # no Ready condition: Unknown
    (lifecycle_node(labels={wk.EXCLUDE_FROM_LIFECYCLE: ""}), lc.EXCLUDED),
    # Uninitialised, no provider ID, younger than a minute: the cloud may not know it.
    (lifecycle_node(created=NOW - 30, provider_id="", taints=[wk.UNINITIALIZED_TAINT]), lc.WAIT),
    (lifecycle_node(created=NOW - 61, provider_id="", taints=[wk.UNINITIALIZED_TAINT]),
     lc.CHECK),
    (lifecycle_node(created=NOW - 30, taints=[wk.UNINITIALIZED_TAINT]), lc.CHECK),
    (lifecycle_node(created=NOW - 30, provider_id=""), lc.CHECK),
])  # fmt: skip
def test_what_a_monitor_pass_does_with_a_node(node, step):
    assert lc.look_at(node, NOW) == step


def test_the_shutdown_taint_is_added_once_and_removed_alone():
    other = {"key": "example.com/x", "effect": "NoSchedule"}
    added = lc.with_shutdown_taint(lifecycle_node(taints=[other]))
    assert added == [other, {"key": wk.SHUTDOWN, "effect": "NoSchedule"}]
    assert lc.with_shutdown_taint(lifecycle_node(taints=added)) is None
    assert lc.without_shutdown_taint(lifecycle_node(taints=added)) == [other]
    assert lc.without_shutdown_taint(lifecycle_node(taints=[other])) is None
    # A taint of that key with another effect is not the controller's.
    no_execute = {"key": wk.SHUTDOWN, "effect": "NoExecute"}
    assert lc.without_shutdown_taint(lifecycle_node(taints=[no_execute])) is None


# --- the route controller's core ---------------------------------------------------------------


def route_node(name: str, *cidrs: str, network: str | None = None) -> dict:
    spec = {"podCIDRs": list(cidrs), "podCIDR": cidrs[0]} if cidrs else {}
    conditions = [] if network is None else [{"type": "NetworkUnavailable", "status": network}]
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec,
            "status": {"conditions": conditions}}  # fmt: skip


def test_routes_are_planned_for_each_cidr_and_removed_when_not_wanted():
    nodes = [route_node("a", "10.244.0.0/24"), route_node("b", "10.244.1.0/24"),
             route_node("c"), route_node("d", "10.244.3.0/24", "fd00:3::/64")]  # fmt: skip
    routes = [
        Route("r-a", "a", "10.244.0.0/24"),  # kept
        Route("r-b", "b", "10.244.9.0/24"),  # b's CIDR changed
        Route("r-gone", "gone", "10.244.2.0/24"),  # its node is gone
        Route("r-d", "d", "10.244.3.0/24", blackhole=True),  # a blackhole: made again
        Route("r-none", "", "10.244.7.0/24"),  # targets no node
    ]
    plan = rp.plan(nodes, routes)
    assert [r.name for r in plan.delete] == ["r-b", "r-gone", "r-d", "r-none"]
    assert [(c.node, c.name_hint, c.route.destination_cidr) for c in plan.create] == [
        ("b", "uid-b", "10.244.1.0/24"), ("d", "uid-d", "10.244.3.0/24"),
        ("d", "uid-d", "fd00:3::/64")]  # fmt: skip
    assert all(c.route.target_node == c.node for c in plan.create)
    # c has no CIDR and no route: nothing to say about it; "gone" is not a node.
    assert plan.nodes == {"a", "b", "d"}
    assert rp.plan([route_node("c")], [Route("r", "c", "10.244.2.0/24")]).nodes == {"c"}
    assert rp.pod_cidrs({"spec": {"podCIDR": "10.0.0.0/24"}}) == ("10.0.0.0/24",)


def test_network_unavailable_says_whether_the_nodes_routes_exist():
    made = rp.network_condition(route_node("a", "10.244.0.0/24"), True, NOW)
    assert made == {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated",
                    "message": "RouteController created a route",
                    "lastTransitionTime": rfc3339(NOW),
                    "lastHeartbeatTime": rfc3339(NOW)}  # fmt: skip
    failed = rp.network_condition(route_node("a", network="False"), False, NOW)
    assert (failed["status"], failed["reason"], failed["message"]) == (
        "True", "NoRouteCreated", "RouteController failed to create a route")
    assert rp.network_condition(route_node("a", network="False"), True, NOW) is None
    assert rp.network_condition(route_node("a", network="True"), False, NOW) is None


# --- RBAC ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("verb", "target", "name", "allowed"), [
    ("watch", "nodes", "", True),
    ("update", "nodes", "n1", True),
    ("patch", "nodes", "n1", True),
    ("delete", "nodes", "n1", True),
    ("patch", "nodes/status", "n1", True),
    ("create", "nodes", "", False),  # the kubelet's, not the cloud's
    ("list", "services", "", True),
    ("patch", "services", "web", True),
    ("update", "services/status", "web", True),
    ("delete", "services", "web", False),
    ("create", "events", "", True),
    ("patch", "events.events.k8s.io", "e", True),
    ("create", "leases.coordination.k8s.io", "", True),
    ("update", "leases.coordination.k8s.io", "cloud-controller-manager", True),
    ("update", "leases.coordination.k8s.io", "kube-controller-manager", False),
    ("create", "serviceaccounts/token", "cloud-node-controller", False),  # no minting
    ("create", "endpoints", "", False),
    ("get", "secrets", "s", False),
    ("delete", "pods", "p", False),
])  # fmt: skip
def test_the_cloud_controller_managers_role(verb, target, name, allowed):
    rbac = RBACAuthorizer.from_objects([*default_cluster_roles(),
                                        *default_cluster_role_bindings()])  # fmt: skip
    user = UserInfo.service_account("kube-system", "cloud-controller-manager")
    resource, _, subresource = target.partition("/")
    resource, _, group = resource.partition(".")
    namespace = "kube-system" if resource in ("leases", "serviceaccounts") else ""
    request = Attributes(user, verb, namespace, group, "v1", resource, subresource, name)
    assert rbac.authorize(request).allowed == allowed


# --- the controllers against an API server and the in-memory cloud -----------------------------


class Env:
    """A real API server (3-member etcd group) with the cloud controller manager's
    account, an in-memory cloud, and the controllers a test starts."""

    def __init__(self, system: ActorSystem, server, cloud: InMemoryCloud) -> None:
        self.system, self.server, self.cloud = system, server, cloud
        self.client = ApiClient(system, server.ref, token="admin-token")

    def spawn(self, cls: type, **options):
        controller = cls(self.server.ref, token="ccm-token", cloud=self.cloud, **options)
        self.system.spawn(lambda: controller, name=f"{cls.name}-{self.system.unique()}")
        return controller

    def instance(self, name: str, ip: str):
        """An instance at ``ip`` (10.0.0.N), and 203.0.113.N outside."""
        outside = f"203.0.113.{ip.rsplit('.', 1)[1]}"
        return self.cloud.create_instance(
            name, instance_type="m5.large", zone="zone-a", region="region-1",
            addresses=addresses(("InternalIP", ip), ("ExternalIP", outside)))  # fmt: skip

    async def register(self, name: str, ip: str, *, ready: str = "True",
                       pod_cidr: str = "") -> dict:  # fmt: skip
        """The Node as a kubelet for an external cloud registers it."""
        config = NodeConfig(name, ip=ip, pod_cidr=pod_cidr, external_cloud_provider=True)
        node = await self.client.create("nodes", node_object(config, f"ak://{name}/kubelet"))
        status = node_status(config, None, self.system.clock.now(), runtime_version="sim://1",
                             ready=(ready == "True", "runtime down"))  # fmt: skip
        return await self.client.update_status("nodes", {**node, "status": status})

    async def node(self, name: str) -> dict | None:
        try:
            return await self.client.get("nodes", name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def events(self, reason: str) -> list[dict]:
        items = (await self.client.list("events", namespace="default"))["items"]
        return [e for e in items if e["reason"] == reason]


@contextlib.asynccontextmanager
async def cloud_env(**options):
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        group = start_group(system, 3)
        server = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                       tokens=parse_token_file(TOKENS), seed=4)  # fmt: skip
        await server.ready()
        yield Env(system, server, InMemoryCloud(real_load_balancers=False, **options))


async def test_a_node_is_initialised_from_its_instance_and_untainted(autojump_clock):
    async with cloud_env() as env:
        env.instance("n1", "10.0.0.1")
        await env.register("n1", "10.0.0.1")
        controller = env.spawn(CloudNodeController)

        async def initialised():
            n = await env.node("n1")
            return n if cn.cloud_taint(n) is None and len(n["status"]["addresses"]) == 3 else None

        node = await wait_for(initialised, period=0.1)
        instance = env.cloud.instance("n1")
        assert node["spec"]["providerID"] == instance.provider_id == "inmemory://i-00000001"
        labels = node["metadata"]["labels"]
        assert (labels[wk.INSTANCE_TYPE], labels[wk.ZONE], labels[wk.REGION]) == (
            "m5.large", "zone-a", "region-1")
        assert node["status"]["addresses"] == [
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "ExternalIP", "address": "203.0.113.1"},
            {"type": "Hostname", "address": "n1"}]  # fmt: skip
        assert node["spec"].get("taints") is None
        synced = await wait_for(lambda: env.events("Synced"))
        assert synced[0]["message"] == "Node synced successfully"
        assert synced[0]["source"]["component"] == "cloud-node-controller"
        assert controller.initialized == 1 and controller.errors == 0
        # Initialised, its labels are only reconciled: the cloud is not asked again.
        asked = env.cloud.call_counts()["instance_metadata"]
        await env.client.patch("nodes", "n1", {"metadata": {"labels": {wk.BETA_ZONE: "zone-b"}}})
        relabelled = await wait_for(
            lambda: _labelled(env, wk.ZONE, "zone-b"), period=0.1)  # fmt: skip
        assert relabelled["metadata"]["labels"][wk.ZONE] == "zone-b"
        assert env.cloud.call_counts()["instance_metadata"] == asked


async def _labelled(env: Env, key: str, value: str):
    n = await env.node("n1")
    return n if n["metadata"]["labels"].get(key) == value else None


async def test_a_failing_cloud_is_retried_with_backoff_and_never_in_a_tight_loop(autojump_clock):
    async with cloud_env() as env:
        env.instance("n1", "10.0.0.1")
        await env.register("n1", "10.0.0.1")
        env.cloud.fail("instance_metadata", FOREVER)
        controller = env.spawn(CloudNodeController)
        await trio.sleep(120)
        failed = env.cloud.call_counts()["instance_metadata"]
        # The work queue's backoff (5 ms doubling) allows some 15 attempts in two minutes,
        # the periodic address pass none (the node is not initialised): not a tight loop.
        assert 8 <= failed <= 16 and controller.errors == failed
        node = await env.node("n1")
        assert UNINITIALIZED in taint_keys(node) and "providerID" not in node["spec"]
        warnings = await env.events("FailedToInitializeNode")
        assert warnings[0]["type"] == "Warning" and warnings[0]["count"] >= 2
        assert warnings[0]["message"] == (
            "failed to get instance metadata for node n1: "
            "inmemory: instance_metadata failed (injected)")  # fmt: skip
        env.cloud.heal()
        started = trio.current_time()

        async def initialised():
            n = await env.node("n1")
            return n if cn.cloud_taint(n) is None else None

        await wait_for(initialised, limit=1200)
        # The next attempt comes at the key's next backoff (2^16 * 5 ms, 5.5 minutes).
        assert trio.current_time() - started <= 340


async def test_a_slow_cloud_delays_but_does_not_stop_initialisation(autojump_clock):
    async with cloud_env() as env:
        env.cloud.latency(3.0)
        for i in range(3):
            env.instance(f"n{i}", f"10.0.0.{i + 1}")
            await env.register(f"n{i}", f"10.0.0.{i + 1}")
        started = trio.current_time()
        env.spawn(CloudNodeController)

        async def all_initialised():
            nodes = (await env.client.list("nodes"))["items"]
            return all(cn.cloud_taint(n) is None for n in nodes)

        await wait_for(all_initialised, period=0.1)
        took = trio.current_time() - started
        # One node at a time (concurrent-node-syncs 1), 3 s each.
        assert 9 <= took <= 12


async def test_a_node_whose_ip_the_cloud_does_not_have_stays_uninitialised(autojump_clock):
    async with cloud_env() as env:
        env.instance("n1", "10.0.0.9")
        await env.register("n1", "10.0.0.1")
        env.spawn(CloudNodeController)
        warnings = await wait_for(lambda: env.events("FailedToInitializeNode"))
        assert warnings[0]["message"] == (
            "failed to get node modifiers from cloud provider: provided node ip for node "
            "'n1' is not valid: failed to get node address from cloud provider that matches "
            "ip: 10.0.0.1")  # fmt: skip
        assert UNINITIALIZED in taint_keys(await env.node("n1"))


async def test_addresses_follow_the_cloud_every_node_status_update_frequency(autojump_clock):
    async with cloud_env() as env:
        instance = env.instance("n1", "10.0.0.1")
        await env.register("n1", "10.0.0.1")
        env.spawn(CloudNodeController)
        await wait_for(lambda: _external_ip(env, "203.0.113.1"), period=0.1)
        moved = attrs.evolve(instance, addresses=addresses(
            ("InternalIP", "10.0.0.1"), ("ExternalIP", "198.51.100.7")))  # fmt: skip
        env.cloud.instances_by_id[instance.id] = moved
        changed = trio.current_time()
        await wait_for(lambda: _external_ip(env, "198.51.100.7"), period=1, limit=400)
        assert trio.current_time() - changed <= 301  # the next pass, 5 minutes at most


async def _external_ip(env: Env, ip: str):
    n = await env.node("n1")
    return {"type": "ExternalIP", "address": ip} in (n.get("status") or {}).get("addresses", [])


async def test_nodes_not_ready_are_deleted_when_their_instance_is_gone(autojump_clock):
    async with cloud_env() as env:
        for name, ip in (("gone", "10.0.0.1"), ("ready", "10.0.0.2"), ("young", "10.0.0.3")):
            env.instance(name, ip)
        for name, ip in (("gone", "10.0.0.1"), ("ready", "10.0.0.2")):
            await env.register(name, ip, ready="False" if name == "gone" else "True")
            initialised = {"spec": {"providerID": env.cloud.instance(name).provider_id,
                                    "taints": None}}  # fmt: skip
            await env.client.patch("nodes", name, initialised)
        controller = env.spawn(CloudNodeLifecycleController)
        await trio.sleep(12)
        assert controller.deleted == 0  # the instances exist
        for name in ("gone", "ready"):
            env.cloud.terminate(name)
        # Registered a moment ago, not Ready and not initialised: given a minute.
        await env.register("young", "10.0.0.3", ready="False")
        env.cloud.terminate("young")
        gone = await env.node("gone")
        await wait_for(lambda: _deleted(env, "gone"), period=0.5, limit=6)
        assert await env.node("ready") is not None  # Ready: never deleted
        assert await env.node("young") is not None
        await wait_for(lambda: _deleted(env, "young"), limit=70)
        events = await env.events("DeletingNode")
        assert {e["message"] for e in events} == {
            "Deleting node gone because it does not exist in the cloud provider",
            "Deleting node young because it does not exist in the cloud provider"}  # fmt: skip
        about = next(e for e in events if e["involvedObject"]["name"] == "gone")
        assert about["involvedObject"]["uid"] == gone["metadata"]["uid"]
        assert about["source"]["component"] == "cloud-node-lifecycle-controller"
        assert controller.deleted == 2 and controller.errors == 0


async def _deleted(env: Env, name: str) -> bool:
    return await env.node(name) is None


async def test_a_shut_down_instance_taints_its_node_until_it_is_ready(autojump_clock):
    async with cloud_env() as env:
        instance = env.instance("n1", "10.0.0.1")
        await env.register("n1", "10.0.0.1", ready="Unknown")
        await env.client.patch("nodes", "n1", {"spec": {"providerID": instance.provider_id}})
        controller = env.spawn(CloudNodeLifecycleController, node_monitor_period=2.0)
        env.cloud.shutdown("n1")
        tainted = await wait_for(lambda: _tainted(env, SHUTDOWN), period=0.5, limit=3)
        assert tainted["spec"]["taints"][-1] == {"key": wk.SHUTDOWN, "effect": "NoSchedule"}
        # Started again but not Ready yet: the taint stays (Kubernetes removes it from
        # Ready nodes only).
        env.cloud.start("n1")
        await trio.sleep(5)
        assert SHUTDOWN in taint_keys(await env.node("n1"))
        node = await env.node("n1")
        ready = node_status(NodeConfig("n1", external_cloud_provider=True), node["status"],
                            env.system.clock.now(), runtime_version="sim://1")  # fmt: skip
        await env.client.update_status("nodes", {**node, "status": ready})
        await wait_for(lambda: _untainted(env, SHUTDOWN), period=0.5, limit=3)
        assert UNINITIALIZED in taint_keys(await env.node("n1"))  # others' taints stay
        assert controller.deleted == 0


async def _tainted(env: Env, taint: tuple[str, str]):
    n = await env.node("n1")
    return n if taint in taint_keys(n) else None


async def _untainted(env: Env, taint: tuple[str, str]):
    n = await env.node("n1")
    return n if taint not in taint_keys(n) else None


async def test_the_lifecycle_controller_skips_what_the_cloud_cannot_answer(autojump_clock):
    async with cloud_env() as env:
        instance = env.instance("n1", "10.0.0.1")
        await env.register("n1", "10.0.0.1", ready="False")
        await env.client.patch("nodes", "n1", {"spec": {"providerID": instance.provider_id}})
        env.cloud.terminate("n1")
        env.cloud.fail("instance_exists", 3)
        started = trio.current_time()
        controller = env.spawn(CloudNodeLifecycleController)
        await wait_for(lambda: _deleted(env, "n1"), limit=30)
        assert controller.cloud_errors == 3 and controller.errors == 0
        # One question per pass: the three failed passes took their 5 s each.
        assert env.cloud.call_counts()["instance_exists"] == 4
        assert 15 <= trio.current_time() - started <= 17


async def test_routes_for_every_pod_cidr_and_network_available_once_made(autojump_clock):
    async with cloud_env() as env:
        for i in range(3):
            env.instance(f"n{i}", f"10.0.0.{i + 1}")
            await env.register(f"n{i}", f"10.0.0.{i + 1}", pod_cidr=pod_cidr(i))
        env.cloud.fail("create_route", 1)
        controller = env.spawn(RouteController, cluster_name="prod")

        async def routed(count: int):
            nodes = (await env.client.list("nodes"))["items"]
            conditions = [condition(n, "NetworkUnavailable") for n in nodes]
            ok = all(c is not None and c["status"] == "False" for c in conditions)
            return nodes if ok and len(nodes) == count else None

        # The one creation that failed is an event and NoRouteCreated, then retried.
        failed = await wait_for(lambda: env.events("FailedToCreateRoute"), period=0.05)
        nodes = await wait_for(lambda: routed(3), period=0.1)
        uids = {n["metadata"]["name"]: n["metadata"]["uid"] for n in nodes}
        name = failed[0]["involvedObject"]["name"]
        i = int(name[1:])
        assert failed[0]["message"] == (
            f"Could not create route {uids[name]} {pod_cidr(i)} for node {name} after 0.000s: "
            "inmemory: create_route failed (injected)")  # fmt: skip
        routes = await env.cloud.list_routes("prod")
        assert sorted((r.target_node, r.destination_cidr) for r in routes) == [
            (f"n{i}", pod_cidr(i)) for i in range(3)]
        cidrs = {n: pod_cidr(int(n[1:])) for n in uids}
        assert {r.name for r in routes} == {f"prod-{uid}-{cidrs[n].replace('/', '-')}"
                                            for n, uid in uids.items()}  # fmt: skip
        c = condition(nodes[0], "NetworkUnavailable")
        assert (c["reason"], c["message"]) == ("RouteCreated", "RouteController created a route")
        assert await env.cloud.list_routes("kubernetes") == []  # another cluster's: none
        # A node gone: its route goes at once (a node deleted is a node change).
        await env.client.delete("nodes", "n1")

        async def two_routes():
            routes = await env.cloud.list_routes("prod")
            return routes if len(routes) == 2 else None

        left = await wait_for(two_routes, period=0.1, limit=2)
        assert {r.target_node for r in left} == {"n0", "n2"}
        assert controller.created == 3 and controller.deleted == 1 and controller.errors == 1


async def test_a_slow_cloud_still_creates_every_route_at_once(autojump_clock):
    async with cloud_env() as env:
        for i in range(20):
            await env.register(f"n{i}", f"10.0.0.{i + 1}", pod_cidr=pod_cidr(i))
        env.cloud.latency(2.0)
        started = trio.current_time()
        env.spawn(RouteController)

        async def all_routed():
            return len(await env.cloud.list_routes("kubernetes")) == 20

        await wait_for(all_routed, period=0.25)
        # A list (2 s), then the 20 creations side by side (2 s), then the check's list.
        assert trio.current_time() - started <= 7


# --- the manager ----------------------------------------------------------------------------------


class NoRoutes(InMemoryCloud):
    def routes(self):
        return None

    def load_balancer(self):
        return None


def test_the_controllers_that_run_are_what_the_cloud_offers():
    server = object()
    everything = cloud_controllers(server, InMemoryCloud(real_load_balancers=False), token="t")
    assert set(everything) == {"cloud-node-controller", "cloud-node-lifecycle-controller",
                               "node-route-controller", "service-lb-controller"}  # fmt: skip
    assert set(cloud_controllers(server, NoRoutes(real_load_balancers=False), token="t")) == {
        "cloud-node-controller", "cloud-node-lifecycle-controller"}
    made = everything["node-route-controller"]()
    assert isinstance(made, RouteController) and made.cluster_name == "kubernetes"


# --- the whole cluster in the simulation ------------------------------------------------------


def replica_set(name: str, count: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"replicas": count, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "pause"}],
                                           "terminationGracePeriodSeconds": 5}}}}  # fmt: skip


async def running(cluster: SimCluster, count: int):
    pods = await cluster.running_pods()
    return pods if len(pods) == count else None


async def node_named(cluster: SimCluster, name: str) -> dict | None:
    try:
        return await cluster.client.get("nodes", name)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def initialised_nodes(cluster: SimCluster, count: int):
    nodes = (await cluster.client.list("nodes"))["items"]
    done = [n for n in nodes if cn.cloud_taint(n) is None and n["spec"].get("providerID")]
    return nodes if len(done) == count == len(nodes) else None


async def events(cluster: SimCluster, reason: str) -> list[dict]:
    items = (await cluster.client.list("events", namespace="default"))["items"]
    return [e for e in items if e["reason"] == reason]


@pytest.mark.parametrize("seed", [1, 2])
def test_nodes_join_uninitialised_and_take_pods_only_once_the_cloud_knows_them(seed):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3, cloud=True)
        client = cluster.client
        joined = (await client.list("nodes"))["items"]
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        await client.create("replicasets", replica_set("web", 6), namespace="default",
                            group="apps")  # fmt: skip
        await trio.sleep(30)
        waiting = await cluster.pods()
        manager = await cluster.spawn_cloud_controller_manager()
        initialised = await wait_for(lambda: initialised_nodes(cluster, 3), limit=60)
        pods = await wait_for(lambda: running(cluster, 6), limit=120)

        async def routed():
            nodes = (await client.list("nodes"))["items"]
            return nodes if all((condition(n, "NetworkUnavailable") or {}).get("status")
                                == "False" for n in nodes) else None  # fmt: skip

        nodes = await wait_for(routed, limit=30)
        return {"joined": joined, "waiting": waiting, "initialised": initialised,
                "pods": pods, "nodes": nodes, "synced": await events(cluster, "Synced"),
                "routes": await cluster.cloud.list_routes("kubernetes"),
                "children": sorted(manager.children),
                "errors": {n: c.errors for n, c in manager.children.items()}}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    assert len(r["joined"]) == 3
    for node in r["joined"]:
        assert UNINITIALIZED in taint_keys(node) and "providerID" not in node["spec"]
    # No pod lands on a node the cloud has not initialised.
    assert len(r["waiting"]) == 6 and not any(p["spec"].get("nodeName") for p in r["waiting"])
    unschedulable = condition(r["waiting"][0], "PodScheduled")
    assert unschedulable["status"] == "False" and wk.UNINITIALIZED in unschedulable["message"]
    synced_at = {e["involvedObject"]["name"]: parse_rfc3339(e["firstTimestamp"])
                 for e in r["synced"]}  # fmt: skip
    assert set(synced_at) == {"node-0", "node-1", "node-2"}
    for pod in r["pods"]:
        scheduled = parse_rfc3339(condition(pod, "PodScheduled")["lastTransitionTime"])
        assert scheduled >= synced_at[pod["spec"]["nodeName"]] - 1  # stamps are to the second
    for node in r["nodes"]:
        name = node["metadata"]["name"]
        i = int(name.rsplit("-", 1)[1])
        assert node["spec"]["providerID"].startswith("inmemory://i-")
        labels = node["metadata"]["labels"]
        assert (labels[wk.INSTANCE_TYPE], labels[wk.ZONE], labels[wk.REGION]) == (
            INSTANCE_TYPE, ZONE, REGION)
        assert node["status"]["addresses"] == [
            {"type": "InternalIP", "address": f"127.1.0.{i + 1}"},
            {"type": "Hostname", "address": name}]  # fmt: skip
        network = condition(node, "NetworkUnavailable")
        assert (network["reason"], network["message"]) == ("RouteCreated",
                                                           "RouteController created a route")
        assert condition(node, "Ready")["status"] == "True"  # the kubelet kept it beside its own
    assert sorted((r.target_node, r.destination_cidr) for r in r["routes"]) == [
        (f"node-{i}", pod_cidr(i)) for i in range(3)]
    assert r["children"] == ["cloud-node-controller", "cloud-node-lifecycle-controller",
                             "node-route-controller", "service-lb-controller"]  # fmt: skip
    assert set(r["errors"].values()) == {0}


@pytest.mark.parametrize("seed", [3, 4])
def test_a_terminated_instances_node_is_deleted_and_its_pods_replaced(seed):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=3, cloud=True)
        client = cluster.client
        manager = await cluster.spawn_cloud_controller_manager()
        await wait_for(lambda: initialised_nodes(cluster, 3), limit=60)
        cluster.spawn_controller(ReplicaSetController, "replicaset-controller")
        cluster.spawn_controller(NodeLifecycleController, "node-lifecycle-controller",
                                 account="node-controller")  # fmt: skip
        cluster.spawn_controller(PodGCController, "pod-garbage-collector")
        await client.create("replicasets", replica_set("web", 6), namespace="default",
                            group="apps")  # fmt: skip
        before = await wait_for(lambda: running(cluster, 6), limit=120)
        dead = before[0]["spec"]["nodeName"]
        on_dead = {p["metadata"]["name"] for p in before if p["spec"]["nodeName"] == dead}
        uid = (await client.get("nodes", dead))["metadata"]["uid"]
        routes_before = await cluster.cloud.list_routes("kubernetes")
        crashed = net.now()
        await cluster.terminate_instance(dead)

        async def deleted():
            return await node_named(cluster, dead) is None

        await wait_for(deleted, period=0.25, limit=120)
        deleted_after = net.now() - crashed

        async def moved():
            pods = await running(cluster, 6)
            return pods if pods and not {p["metadata"]["name"] for p in pods} & on_dead else None

        after = await wait_for(moved, limit=300)

        async def route_gone():
            routes = await cluster.cloud.list_routes("kubernetes")
            return routes if len(routes) == 2 else None

        routes_after = await wait_for(route_gone, limit=30)
        return {"dead": dead, "uid": uid, "deleted_after": deleted_after, "after": after,
                "on_dead": on_dead, "deleting": await events(cluster, "DeletingNode"),
                "routes_before": routes_before, "routes_after": routes_after,
                "lifecycle": manager.children[
                    "cloud-node-lifecycle-controller"].deleted}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    # Unknown once its last renewal is 50 s old (node-monitor-grace-period), then at the
    # next 5 s pass of the cloud node lifecycle controller.
    assert 40 <= r["deleted_after"] <= 62
    (event,) = r["deleting"]
    assert event["message"] == (f"Deleting node {r['dead']} because it does not exist in the "
                                f"cloud provider")  # fmt: skip
    assert event["involvedObject"]["uid"] == r["uid"] and r["lifecycle"] == 1
    assert r["dead"] not in {p["spec"]["nodeName"] for p in r["after"]}
    assert len({p["metadata"]["name"] for p in r["after"]} - r["on_dead"]) == 6
    assert len(r["routes_before"]) == 3
    assert r["dead"] not in {route.target_node for route in r["routes_after"]}


@pytest.mark.parametrize("seed", [5, 6])
def test_a_shut_down_instances_node_is_tainted_until_it_runs_again(seed):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2, cloud=True)
        client = cluster.client
        await cluster.spawn_cloud_controller_manager()
        await wait_for(lambda: initialised_nodes(cluster, 2), limit=60)
        cluster.spawn_controller(NodeLifecycleController, "node-lifecycle-controller",
                                 account="node-controller")  # fmt: skip
        initialised = await client.get("nodes", "node-1")
        stopped = net.now()
        await cluster.shutdown_instance("node-1")

        async def tainted():
            n = await client.get("nodes", "node-1")
            return n if SHUTDOWN in taint_keys(n) else None

        shut = await wait_for(tainted, period=0.25, limit=120)
        tainted_after = net.now() - stopped
        await trio.sleep(60)
        still = await client.get("nodes", "node-1")  # shut down is not gone: never deleted
        await cluster.start_instance("node-1")

        async def cleared():
            n = await client.get("nodes", "node-1")
            ready = (condition(n, "Ready") or {}).get("status") == "True"
            return n if ready and SHUTDOWN not in taint_keys(n) else None

        back = await wait_for(cleared, period=0.25, limit=60)
        return {"initialised": initialised, "shut": shut, "tainted_after": tainted_after,
                "still": still, "back": back}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    assert 40 <= r["tainted_after"] <= 62
    assert condition(r["shut"], "Ready")["status"] == "Unknown"
    assert SHUTDOWN in taint_keys(r["still"])
    uid = r["initialised"]["metadata"]["uid"]
    assert r["still"]["metadata"]["uid"] == r["back"]["metadata"]["uid"] == uid
    # The kubelet registering again puts no uninitialized taint back.
    assert UNINITIALIZED not in taint_keys(r["back"])
    assert r["back"]["spec"]["providerID"] == r["initialised"]["spec"]["providerID"]


@pytest.mark.parametrize("seed", [7, 8])
def test_a_standby_cloud_controller_manager_takes_over_when_the_leader_dies(seed):
    async def scenario(net: SimNetwork) -> dict:
        cluster = await SimCluster.start(net, nodes=2, cloud=True)
        client = cluster.client
        await cluster.spawn_cloud_controller_manager("cloud-1")
        await cluster.spawn_cloud_controller_manager("cloud-2")

        async def holder():
            try:
                lease = await client.get("leases", "cloud-controller-manager",
                                         namespace="kube-system", group="coordination.k8s.io")
            except ApiError:
                return None
            return lease["spec"].get("holderIdentity")

        first = await wait_for(holder)
        await wait_for(lambda: initialised_nodes(cluster, 2), limit=60)
        standby = "cloud-2" if first == "cloud-1" else "cloud-1"
        leading = {h: m.leading for h, m in cluster.cloud_managers.items()}
        await net.crash(first)
        crashed = net.now()
        joined = await cluster.add_node()

        async def initialised():
            n = await node_named(cluster, joined)
            return n if n is not None and cn.cloud_taint(n) is None else None

        node = await wait_for(initialised, period=0.25, limit=60)
        return {"first": first, "standby": standby, "leading": leading,
                "second": await holder(), "took": net.now() - crashed, "node": node,
                "now_leading": cluster.cloud_managers[standby].leading}  # fmt: skip

    r = simulate(scenario, seed=seed).value
    assert r["leading"] == {r["first"]: True, r["standby"]: False}
    assert r["second"] == r["standby"] and r["now_leading"]
    assert r["node"]["spec"]["providerID"].startswith("inmemory://")
    assert r["took"] <= 15 + 2 * 2 + 5  # the lease runs out, a retry, the work
