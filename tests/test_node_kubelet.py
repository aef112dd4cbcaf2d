"""The kubelet actor against a real API server on a 3-member etcd group, with the
simulated runtime, in virtual time: registration and Lease, the pod state machine
(phases, restart policies, crash-loop backoff, init containers, probes), graceful
termination, admission, image pull errors, configuration errors, environment, logs
through pods/log, and a kubelet restart that finds its pods again."""

from __future__ import annotations

import itertools
import math

import jwt
import pytest
import trio
from root_ca import TEST_CA, publish_root_ca
from virtual_time import wait_for

from actorkube.actor import ActorSystem, WallClock
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.etcd import start_group
from actorkube.node._kubelet import Kubelet, KubeletConfig
from actorkube.node._nodestatus import NodeConfig
from actorkube.node._podstate import NODE, POD_NAME, POD_UID
from actorkube.node.runtime import Isolation
from actorkube.node.runtime._sim import SimRuntime
from actorkube.node.runtime._sim_profile import SimProfile

TOKENS = "admin-token,admin,1,system:masters\nnode-token,system:node:n1,2,system:nodes\n"
EPOCH = 1_700_000_000.0


class Cluster:
    def __init__(self, system, api, client, runtime):
        self.system, self.api, self.client, self.runtime = system, api, client, runtime
        self.kubelet = None

    def start_kubelet(self, **config):
        config.setdefault("node", NodeConfig("n1", capacity={"cpu": "2", "memory": "4Gi",
                                                            "pods": "10"}))  # fmt: skip
        kubelet = Kubelet(self.api.ref, self.runtime, KubeletConfig(**config), token="node-token")
        self.kubelet = self.system.spawn(lambda: kubelet, name=f"kubelet-{self.system.unique()}")
        return kubelet

    async def pod(self, name, *, containers=None, namespace="default", **spec):
        containers = containers or [{"name": "app", "image": "server"}]
        body = {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"nodeName": "n1", "containers": containers, **spec}}  # fmt: skip
        return await self.client.create("pods", body, namespace=namespace)

    async def get(self, name, namespace="default"):
        try:
            return await self.client.get("pods", name, namespace=namespace)
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    async def until_phase(self, name, phase):
        async def check():
            p = await self.get(name)
            return p if p and p.get("status", {}).get("phase") == phase else None

        return await wait_for(check)

    async def until(self, name, predicate):
        async def check():
            p = await self.get(name)
            return p if p and predicate(p) else None

        return await wait_for(check)


PROFILES = {
    "server": SimProfile(log_lines=("listening on :8080",)),
    "crash": SimProfile(run_for=1.0, exit_code=1),
    "done": SimProfile(run_for=2.0, exit_code=0),
    "fail": SimProfile(run_for=2.0, exit_code=3),
    "stubborn": SimProfile(term_delay=math.inf),
    "polite": SimProfile(term_delay=5.0, term_exit_code=0),
    "broken": SimProfile(pull_fails=True),
    "sick": SimProfile(healthy_for=20.0),
    "slow": SimProfile(ready_after=15.0),
    "sick-stubborn": SimProfile(healthy_for=20.0, term_delay=math.inf),
    "long-init": SimProfile(run_for=500.0, exit_code=0),
    "chatty": SimProfile(log_lines=("start",), periodic_log_line="tick", log_every=5.0,
                         run_for=12.0),
}


@pytest.fixture
async def cluster():
    async with ActorSystem(clock=WallClock(epoch=EPOCH)) as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file(TOKENS), seed=5)  # fmt: skip
        await api.ready()
        await publish_root_ca(system, api)
        runtime = SimRuntime("10.244.1.0/24", profiles=PROFILES, wall_clock=system.clock.now)
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime.run)  # the runtime runs beside the kubelet
            c = Cluster(system, api, ApiClient(system, api.ref, token="admin-token"), runtime)
            yield c
            if c.kubelet is not None:
                await system.stop(c.kubelet)
            await runtime.aclose()


def record_updates(cluster, plural, note):
    """A list that gets ``note(object written)`` for every update of ``plural`` (every
    write of an object goes through the API server's store)."""
    noted = []
    update = cluster.api.store.update

    async def counted(rt, namespace, name, change, **options):
        got = await update(rt, namespace, name, change, **options)
        if rt.plural == plural:
            noted.append(note(got))
        return got

    cluster.api.store.update = counted
    return noted


def cstatus(pod, name="app"):
    """The container's status; before the kubelet wrote one, an empty one."""
    for s in pod["status"].get("containerStatuses") or ():
        if s["name"] == name:
            return s
    return {"state": {}, "lastState": {}, "restartCount": -1, "ready": False}


def condition(pod, kind):
    return next((c for c in pod["status"].get("conditions", ()) if c["type"] == kind), {})


async def test_registers_the_node_and_renews_its_lease(autojump_clock, cluster):
    cluster.start_kubelet()

    async def node():
        try:
            return await cluster.client.get("nodes", "n1")
        except ApiError:
            return None

    n = await wait_for(node)
    assert n["metadata"]["labels"]["kubernetes.io/hostname"] == "n1"
    assert n["metadata"]["annotations"]["kubelet.actorkube.io/server"]
    n = await wait_for(lambda: _with_status(cluster))
    assert n["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "10"}
    ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")

    async def lease():
        try:
            return await cluster.client.get("leases", "n1", namespace="kube-node-lease",
                                            group="coordination.k8s.io")  # fmt: skip
        except ApiError:
            return None

    first = await wait_for(lease)
    assert first["spec"]["holderIdentity"] == "n1" and first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["kind"] == "Node"
    await trio.sleep(11)
    assert (await lease())["spec"]["renewTime"] > first["spec"]["renewTime"]


async def _with_status(cluster):
    n = await cluster.client.get("nodes", "n1")
    return n if n.get("status", {}).get("conditions") else None


async def test_a_pod_runs_and_is_ready_with_an_ip(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("web")
    p = await cluster.until("web", lambda p: condition(p, "Ready").get("status") == "True")
    assert p["status"]["phase"] == "Running"
    assert p["status"]["podIP"].startswith("10.244.1.") and p["status"]["hostIP"] == "127.0.0.1"
    s = cstatus(p)
    assert "running" in s["state"] and s["ready"] and s["started"] and s["restartCount"] == 0
    assert s["containerID"].startswith("sim://")
    for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady"):
        assert condition(p, kind)["status"] == "True"
    containers = await cluster.runtime.list_containers({NODE: "n1"})
    assert [c.name for c in containers] == ["app"]


async def test_crash_loop_backoff_doubles_between_restarts(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("crashy", containers=[{"name": "app", "image": "crash"}])
    starts = []
    seen = -1
    with trio.fail_after(400):
        while len(starts) < 5:
            p = await cluster.get("crashy")
            count = cstatus(p)["restartCount"] if p["status"].get("containerStatuses") else -1
            if count != seen and count >= 0:
                seen = count
                starts.append(trio.current_time())
            await trio.sleep(0.25)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Each run lasts 1 s; the first restart is at once (Kubernetes' backoff starts at
    # the first restart), then the kubelet waits 10, 20, 40 s before the next.
    for gap, backoff in zip(gaps, (0, 10, 20, 40), strict=True):
        assert backoff + 0.5 <= gap <= backoff + 3
    p = await cluster.until("crashy", lambda p: "waiting" in cstatus(p)["state"])
    s = cstatus(p)
    assert s["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off" in s["state"]["waiting"]["message"]
    assert s["lastState"]["terminated"]["exitCode"] == 1
    assert p["status"]["phase"] == "Running"


@pytest.mark.parametrize(("image", "phase", "code"), [("done", "Succeeded", 0),
                                                      ("fail", "Failed", 3)])  # fmt: skip
async def test_restart_policy_never_ends_in_a_terminal_phase(
    autojump_clock, cluster, image, phase, code
):
    cluster.start_kubelet()
    await cluster.pod("job", containers=[{"name": "app", "image": image}], restartPolicy="Never")
    p = await cluster.until_phase("job", phase)
    s = cstatus(p)
    assert s["state"]["terminated"]["exitCode"] == code and s["restartCount"] == 0
    assert condition(p, "Ready")["reason"] == "PodCompleted"
    await trio.sleep(30)
    assert (await cluster.get("job"))["status"]["phase"] == phase  # and it stays so


async def test_on_failure_restarts_failures_only(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("ok", containers=[{"name": "app", "image": "done"}],
                      restartPolicy="OnFailure")  # fmt: skip
    await cluster.pod("bad", containers=[{"name": "app", "image": "fail"}],
                      restartPolicy="OnFailure")  # fmt: skip
    await cluster.until_phase("ok", "Succeeded")
    p = await cluster.until("bad", lambda p: cstatus(p)["restartCount"] >= 2)
    assert p["status"]["phase"] == "Running"


async def test_init_containers_run_in_order_before_the_app(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("init", initContainers=[{"name": "one", "image": "done"},
                                              {"name": "two", "image": "done"}])  # fmt: skip
    p = await cluster.until("init", lambda p: condition(p, "Initialized").get("status") == "False")
    assert p["status"]["phase"] == "Pending"
    p = await cluster.until("init", lambda p: condition(p, "Ready").get("status") == "True")
    inits = {s["name"]: s for s in p["status"]["initContainerStatuses"]}
    one, two = inits["one"]["state"]["terminated"], inits["two"]["state"]["terminated"]
    assert one["finishedAt"] <= two["startedAt"]
    assert two["finishedAt"] <= cstatus(p)["state"]["running"]["startedAt"]


async def test_a_failing_init_container_under_never_fails_the_pod(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("bad-init", initContainers=[{"name": "one", "image": "fail"}],
                      restartPolicy="Never")  # fmt: skip
    p = await cluster.until_phase("bad-init", "Failed")
    assert "terminated" not in cstatus(p)["state"]  # the app never ran


async def test_liveness_failure_restarts_the_container(autojump_clock, cluster):
    cluster.start_kubelet()
    probe = {"tcpSocket": {"port": 8080}, "periodSeconds": 5, "failureThreshold": 3}
    await cluster.pod("sick", containers=[{"name": "app", "image": "sick",
                                           "livenessProbe": probe}])  # fmt: skip
    p = await cluster.until("sick", lambda p: cstatus(p)["restartCount"] >= 1)
    # Healthy for 20 s, then three failed probes 5 s apart: restarted at ~35 s.
    assert trio.current_time() >= 30
    assert cstatus(p)["lastState"]["terminated"]["exitCode"] in (0, 137, 143)


async def test_readiness_gates_the_ready_condition(autojump_clock, cluster):
    cluster.start_kubelet()
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2}
    await cluster.pod("slow", containers=[{"name": "app", "image": "slow",
                                           "readinessProbe": probe}])  # fmt: skip
    p = await cluster.until_phase("slow", "Running")
    assert not cstatus(p)["ready"] and condition(p, "Ready")["status"] == "False"
    started = trio.current_time()
    p = await cluster.until("slow", lambda p: cstatus(p)["ready"])
    assert trio.current_time() - started >= 10
    assert condition(p, "Ready")["status"] == "True"


async def test_graceful_deletion_waits_for_the_container_then_removes_it(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("polite", containers=[{"name": "app", "image": "polite"}])
    await cluster.until_phase("polite", "Running")
    await cluster.client.delete("pods", "polite", namespace="default")
    deleted_at = trio.current_time()
    await wait_for(lambda: _gone(cluster, "polite"))
    assert 5 <= trio.current_time() - deleted_at <= 8  # its own 5 s, not the 30 s grace
    assert await cluster.runtime.list_containers({NODE: "n1"}) == []
    assert await cluster.runtime.list_pod_sandboxes({NODE: "n1"}) == []


async def test_a_container_ignoring_sigterm_is_killed_at_the_grace_period(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("stubborn", containers=[{"name": "app", "image": "stubborn"}],
                      terminationGracePeriodSeconds=12)  # fmt: skip
    await cluster.until_phase("stubborn", "Running")
    await cluster.client.delete("pods", "stubborn", namespace="default")
    deleted_at = trio.current_time()
    await wait_for(lambda: _gone(cluster, "stubborn"))
    assert 12 <= trio.current_time() - deleted_at <= 15


async def _gone(cluster, name):
    return await cluster.get(name) is None


async def test_admission_rejects_a_pod_that_does_not_fit(autojump_clock, cluster):
    cluster.start_kubelet()
    big = [{"name": "app", "image": "server", "resources": {"requests": {"cpu": "3"}}}]
    await cluster.pod("big", containers=big)
    p = await cluster.until_phase("big", "Failed")
    assert p["status"]["reason"] == "OutOfcpu"
    assert p["status"]["message"].startswith("Pod was rejected: Node didn't have enough "
                                             "resource: cpu, requested: 3000")  # fmt: skip
    assert await cluster.runtime.list_containers({NODE: "n1"}) == []


async def test_admission_sums_the_running_pods_reading_each_pod_object_once(
    autojump_clock, cluster, monkeypatch
):  # fmt: skip
    import actorkube.node._kubelet as kubelet_module

    read = []
    claims = kubelet_module.claims_of

    def counted(pod):
        read.append(pod)  # kept: no id is reused while the test holds them
        return claims(pod)

    monkeypatch.setattr(kubelet_module, "claims_of", counted)
    cluster.start_kubelet()
    half = [{"name": "app", "image": "server", "resources": {"requests": {"cpu": "500m"}}}]
    for i in range(4):  # the node's 2 cpus, taken
        await cluster.pod(f"p{i}", containers=half)
        await cluster.until_phase(f"p{i}", "Running")
    await cluster.pod("one-more", containers=half)
    p = await cluster.until_phase("one-more", "Failed")
    assert p["status"]["reason"] == "OutOfcpu"
    assert "requested: 500, used: 2000, capacity: 2000" in p["status"]["message"]
    # Five admissions over 0-4 running pods; each pod object's requests read once.
    assert read and len(read) == len({id(pod) for pod in read})


async def test_image_pull_errors_back_off(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("pull", containers=[{"name": "app", "image": "broken"}])
    first = await cluster.until(
        "pull", lambda p: cstatus(p)["state"].get("waiting", {}).get("reason") == "ErrImagePull"
    )
    assert first["status"]["phase"] == "Pending"
    await cluster.until("pull", lambda p: cstatus(p)["state"].get("waiting", {}).get("reason")
                        == "ImagePullBackOff")  # fmt: skip


async def test_missing_configuration_waits_until_it_exists(autojump_clock, cluster):
    cluster.start_kubelet()
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}}]
    await cluster.pod("cfg", containers=[{"name": "app", "image": "server", "env": env}])
    p = await cluster.until("cfg", lambda p: cstatus(p)["state"].get("waiting", {}).get(
        "reason") == "CreateContainerConfigError")  # fmt: skip
    assert cstatus(p)["state"]["waiting"]["message"] == 'ConfigMap "cfg" not found'
    await cluster.client.create("configmaps", {"metadata": {"name": "cfg"},
                                               "data": {"mode": "fast"}},
                                namespace="default")  # fmt: skip
    await cluster.until_phase("cfg", "Running")
    (c,) = await cluster.runtime.list_containers({NODE: "n1"})
    assert ("MODE", "fast") in c.config.envs


async def test_environment_has_service_links_and_the_pod_ip(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.client.create("services", {
        "metadata": {"name": "db"},
        "spec": {"clusterIP": "127.96.0.50", "ports": [{"port": 5432}], "selector": {"a": "b"}},
    }, namespace="default")  # fmt: skip
    await cluster.pod("envy")
    p = await cluster.until_phase("envy", "Running")
    (c,) = await cluster.runtime.list_containers({NODE: "n1"})
    env = dict(c.config.envs)
    assert env["DB_SERVICE_HOST"] == "127.96.0.50" and env["DB_SERVICE_PORT"] == "5432"
    assert env["POD_IP"] == p["status"]["podIP"]


async def test_logs_through_the_api_server(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("talk")
    await cluster.until_phase("talk", "Running")
    response = await cluster.client.send(_log_request("talk"))
    assert response.code == 200 and response.raw == b"listening on :8080\n"
    stamped = await cluster.client.send(_log_request("talk", timestamps="true"))
    assert stamped.raw.decode().split(" ", 1)[1] == "listening on :8080\n"
    previous = await cluster.client.send(_log_request("talk", previous="true"))
    assert previous.code == 400 and "previous terminated container" in previous.body["message"]
    wrong = await cluster.client.send(_log_request("talk", container="nope"))
    assert wrong.code == 400 and wrong.body["message"] == "container nope is not valid for pod talk"


def _log_request(pod, **params):
    from actorkube.apiserver import ApiRequest

    return ApiRequest("get", "pods", namespace="default", name=pod, subresource="log",
                      params=params or None, token="admin-token")  # fmt: skip


async def test_a_restarted_kubelet_adopts_its_running_pods(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("keep")
    p = await cluster.until("keep", lambda p: condition(p, "Ready").get("status") == "True")
    before = cstatus(p)["containerID"]
    await cluster.system.stop(cluster.kubelet)
    cluster.start_kubelet()
    await trio.sleep(30)
    p = await cluster.get("keep")
    assert cstatus(p)["containerID"] == before and cstatus(p)["restartCount"] == 0
    assert len(await cluster.runtime.list_containers({NODE: "n1"})) == 1


async def test_a_rejected_pod_can_still_be_deleted(autojump_clock, cluster):
    cluster.start_kubelet()
    big = [{"name": "app", "image": "server", "resources": {"requests": {"cpu": "3"}}}]
    await cluster.pod("big", containers=big)
    await cluster.until_phase("big", "Failed")
    await cluster.client.delete("pods", "big", namespace="default")
    await wait_for(lambda: _gone(cluster, "big"))


async def test_a_new_sandbox_runs_every_init_container_again(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("ini", initContainers=[{"name": "i1", "image": "done"},
                                             {"name": "i2", "image": "done"}])  # fmt: skip
    p = await cluster.until_phase("ini", "Running")
    uid = p["metadata"]["uid"]
    (sandbox,) = await cluster.runtime.list_pod_sandboxes({POD_UID: uid})
    await cluster.runtime.stop_pod_sandbox(sandbox.id)  # the sandbox dies
    await cluster.until("ini", lambda p: cstatus(p)["restartCount"] == 1
                        and "running" in cstatus(p)["state"])  # fmt: skip
    containers = await cluster.runtime.list_containers({POD_UID: uid})
    sandboxes = await cluster.runtime.list_pod_sandboxes({POD_UID: uid})
    new = max(sandboxes, key=lambda s: s.config.attempt)
    mine = sorted((c for c in containers if c.sandbox_id == new.id), key=lambda c: c.started_at)
    assert [c.name for c in mine] == ["i1", "i2", "app"]
    assert mine[0].finished_at <= mine[1].started_at <= mine[1].finished_at <= mine[2].started_at


async def test_a_pod_deleted_during_a_sync_is_not_started_again(autojump_clock, cluster):
    kubelet = cluster.start_kubelet()
    probe = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    await cluster.pod("lv", containers=[{"name": "app", "image": "sick-stubborn",
                                         "livenessProbe": probe}],
                      terminationGracePeriodSeconds=30)  # fmt: skip
    p = await cluster.until_phase("lv", "Running")
    uid = p["metadata"]["uid"]
    # Healthy for 20 s, then the liveness kill waits the 30 s grace (SIGTERM ignored);
    # the pod is deleted in the middle of that kill.
    await wait_for(lambda: _busy(kubelet), period=0.25)
    await trio.sleep(5)
    await cluster.client.delete("pods", "lv", namespace="default")
    await wait_for(lambda: _gone(cluster, "lv"))
    assert await cluster.runtime.list_containers({POD_UID: uid}) == []
    # No container was made for it after its deletion (the only one has attempt 0).
    assert kubelet.state.workers == {}


async def _busy(cluster_kubelet):
    return any(w.busy for w in cluster_kubelet.state.workers.values())


async def test_probes_stop_with_their_containers_and_dead_ones_are_collected(
    autojump_clock, cluster
):
    kubelet = cluster.start_kubelet()
    probe = {"tcpSocket": {"port": 80}, "periodSeconds": 1}
    await cluster.pod("cr", containers=[{"name": "app", "image": "crash",
                                         "readinessProbe": probe}])  # fmt: skip
    p = await cluster.until("cr", lambda p: cstatus(p)["restartCount"] >= 5)
    (worker,) = kubelet.state.workers.values()
    assert len(worker.probes) <= 1  # at most the running container's
    containers = await cluster.runtime.list_containers({POD_UID: p["metadata"]["uid"]})
    assert len(containers) <= 2  # the newest and the one before it (kubectl logs -p)


async def test_a_deleted_pod_ends_in_a_terminal_phase(autojump_clock, cluster):
    kubelet = cluster.start_kubelet()
    await cluster.pod("srv")
    await cluster.until_phase("srv", "Running")
    written = []
    write = kubelet.state._write_status

    async def record(worker, status):
        written.append(status["phase"])
        await write(worker, status)

    kubelet.state._write_status = record
    await cluster.client.delete("pods", "srv", namespace="default")
    await wait_for(lambda: _gone(cluster, "srv"))
    assert written[-1] == "Failed"  # killed by SIGTERM: exit 143


async def test_the_periodic_resync_notices_an_image_that_appeared(autojump_clock, cluster):
    cluster.start_kubelet()
    never = [{"name": "app", "image": "server:v9", "imagePullPolicy": "Never"}]
    await cluster.pod("np", containers=never)
    await cluster.until("np", lambda p: cstatus(p)["state"].get("waiting", {}).get("reason")
                        == "ErrImageNeverPull")  # fmt: skip
    await cluster.runtime.pull_image("server:v9")  # someone loads the image on the node
    await cluster.until_phase("np", "Running")


async def test_logs_follow_until_the_container_exits(autojump_clock, cluster):
    cluster.start_kubelet()
    await cluster.pod("chat", containers=[{"name": "app", "image": "chatty"}],
                      restartPolicy="Never")  # fmt: skip
    await cluster.until_phase("chat", "Running")
    got = b""
    async with cluster.client.watch_request(_log_request("chat", follow="true")) as stream:
        while (chunk := await stream.next_json()) is not None:
            got += chunk
    # Everything so far, then each line as it is written, until the exit at 12 s.
    assert got == b"start\ntick\ntick\n"
    tail = b""
    async with cluster.client.watch_request(
        _log_request("chat", follow="true", tailLines="1")
    ) as stream:
        while (chunk := await stream.next_json()) is not None:
            tail += chunk
    assert tail == b"tick\n"  # the container has exited: the tail, then the end


async def test_a_steady_pod_is_written_when_it_changes_and_never_the_same_again(
    autojump_clock, cluster
):  # fmt: skip
    # Bound as the scheduler binds (PodScheduled set by the binding), then left alone:
    # the kubelet writes its status when it changes, never the same status again, even
    # though its copy of the pod comes back from the server with the server's own form.
    versions = record_updates(cluster, "pods", lambda got: got["metadata"]["resourceVersion"])
    kubelet = cluster.start_kubelet()
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "calm"},
            "spec": {"containers": [{"name": "app", "image": "server"}]}}  # fmt: skip
    await cluster.client.create("pods", body, namespace="default")
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "calm"},
               "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}  # fmt: skip
    await cluster.client.request("create", "pods", namespace="default", name="calm",
                                 subresource="binding", body=binding)  # fmt: skip
    await cluster.until("calm", lambda p: condition(p, "Ready").get("status") == "True")
    syncs = kubelet.state.syncs
    await trio.sleep(150)  # resyncs come and go
    assert kubelet.state.syncs > syncs
    assert len(versions) >= 2  # the binding, the kubelet's status
    assert len(set(versions)) == len(versions), "a write that changed nothing"


async def test_a_settled_pods_resync_decides_nothing_again_until_something_changed(
    autojump_clock, cluster, monkeypatch
):  # fmt: skip
    import actorkube.node._kubelet as kubelet_module

    decided = []
    compute = kubelet_module.compute_actions

    def counted(pod, runtime, probes=None):
        decided.append(pod["metadata"]["name"])
        return compute(pod, runtime, probes)

    monkeypatch.setattr(kubelet_module, "compute_actions", counted)
    kubelet = cluster.start_kubelet()
    await cluster.pod("calm")
    await cluster.until("calm", lambda p: condition(p, "Ready").get("status") == "True")
    await trio.sleep(100)  # the echo of the last status write, then a resync: settled
    syncs, before = kubelet.state.syncs, len(decided)
    await trio.sleep(400)
    # Resyncs ran (every 60-90 s) and found the pod's inputs as they had left them.
    assert kubelet.state.syncs >= syncs + 4 and len(decided) == before
    # The pod is known by its version, not walked whole at every resync (nor its equal
    # copies: the status write's answer and that write's echo).
    (worker,) = kubelet.state.workers.values()
    meta = worker.pod["metadata"]
    assert worker.settled[0] == (meta["uid"], meta["resourceVersion"])
    # A change of the runtime is a change of the inputs: the container killed from
    # outside is started again.
    labels = {POD_UID: (await cluster.get("calm"))["metadata"]["uid"]}
    (container,) = await cluster.runtime.list_containers(labels)
    await cluster.runtime.stop_container(container.id, 0)
    await cluster.until("calm", lambda p: cstatus(p)["restartCount"] == 1)
    assert len(decided) > before


async def test_node_status_is_written_when_it_says_something_new_or_every_report_period(
    autojump_clock, cluster
):  # fmt: skip
    writes = record_updates(cluster, "nodes", lambda got: trio.current_time())
    kubelet = cluster.start_kubelet(status_update=10.0, status_report=300.0)

    async def registered():
        return kubelet.state is not None and kubelet.state.registered.is_set()

    await wait_for(registered)
    await trio.sleep(15)
    start, before = trio.current_time(), len(writes)
    await trio.sleep(100)
    assert len(writes) == before  # checked ten times: nothing new
    await cluster.runtime.pull_image("server:v9")  # an image appears on the node
    await trio.sleep(10)
    assert len(writes) == before + 1
    node = await cluster.client.get("nodes", "n1")
    assert any("server:v9" in i["names"] for i in node["status"]["images"])
    await trio.sleep(300)  # nothing new, but the report period passed: written anyway
    assert len(writes) == before + 2 and writes[-1] - start >= 300


async def review(cluster, token: str, audiences=()) -> dict:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": list(audiences)}}  # fmt: skip
    return (await cluster.client.create("tokenreviews", body,
                                        group="authentication.k8s.io"))["status"]  # fmt: skip


async def test_the_token_volume_is_written_bound_to_the_pod(autojump_clock, cluster, tmp_path):
    kubelet = cluster.start_kubelet(root_dir=tmp_path)
    p = await cluster.pod("reader")
    uid = p["metadata"]["uid"]
    (volume,) = p["spec"]["volumes"]  # the ServiceAccount admission plugin's
    await cluster.until_phase("reader", "Running")
    files = tmp_path / "pods" / uid / "volumes" / "kubernetes.io~projected" / volume["name"]
    assert (files / "ca.crt").read_bytes() == TEST_CA
    assert (files / "namespace").read_text() == "default"
    (c,) = await cluster.runtime.list_containers({NODE: "n1"})
    assert [(m.container_path, m.host_path, m.readonly) for m in c.config.mounts] == [
        ("/var/run/secrets/kubernetes.io/serviceaccount", str(files), True)]
    token = (files / "token").read_text()
    status = await review(cluster, token)
    assert status["authenticated"] and status["user"]["username"] == (
        "system:serviceaccount:default:default")
    assert status["user"]["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    # Asked for 3607 s, it lives a year (Kubernetes' extension for clients that read the
    # file once), warning after the hour it was asked for.
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 365 * 24 * 3600
    assert claims["kubernetes.io"]["warnafter"] - claims["iat"] == 3607
    assert len(kubelet.state.tokens) == 1
    await cluster.client.delete("pods", "reader", namespace="default", grace_period=0)
    with trio.fail_after(60):
        while len(kubelet.state.tokens) or await cluster.get("reader") is not None:
            await trio.sleep(1)
    assert not (tmp_path / "pods" / uid).exists()
    assert not (await review(cluster, token))["authenticated"]  # its pod is gone


async def test_a_projected_token_is_replaced_at_80_percent_of_its_life(
    autojump_clock, cluster, tmp_path
):
    cluster.start_kubelet(root_dir=tmp_path)
    projection = {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 600,
                                          "path": "vault/token"}}  # fmt: skip
    volume = {"name": "vault", "projected": {"sources": [projection]}}
    app = {"name": "app", "image": "server",
           "volumeMounts": [{"name": "vault", "mountPath": "/vault"}]}  # fmt: skip
    p = await cluster.pod("vaulted", containers=[app], volumes=[volume],
                          automountServiceAccountToken=False)  # fmt: skip
    assert [v["name"] for v in p["spec"]["volumes"]] == ["vault"]
    await cluster.until_phase("vaulted", "Running")
    issued = trio.current_time()
    path = (tmp_path / "pods" / p["metadata"]["uid"] / "volumes" / "kubernetes.io~projected"
            / "vault" / "vault" / "token")  # fmt: skip
    first = path.read_text()
    assert (await review(cluster, first, ["vault"]))["authenticated"]
    assert not (await review(cluster, first))["authenticated"]  # not for the API server
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600  # not extended: not the API's audience
    with trio.fail_after(600):
        while path.read_text() == first:
            await trio.sleep(5)
    # Not before 80% of its 600 s, and by the first resync (60-90 s) after that.
    assert 480 <= trio.current_time() - issued <= 480 + 95
    assert (await review(cluster, path.read_text(), ["vault"]))["authenticated"]


async def test_a_runtime_that_cannot_mount_runs_pods_without_the_token(
    autojump_clock, cluster, tmp_path
):
    # As the process runtime when not root: the token volume the API server added to
    # every pod is left out (the pod runs, without in-cluster credentials); a volume the
    # pod asked for is still passed on (the process runtime would refuse that container,
    # as it should; this simulated one takes it).
    cluster.runtime.isolation = Isolation("rlimit", "", False, "not root")
    cluster.start_kubelet(root_dir=tmp_path)
    own = {"name": "app", "image": "server",
           "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}  # fmt: skip
    await cluster.pod("plain")
    await cluster.pod("scratchy", containers=[own], volumes=[{"name": "scratch",
                                                              "emptyDir": {}}])  # fmt: skip
    await cluster.until_phase("plain", "Running")
    await cluster.until_phase("scratchy", "Running")
    mounts = {c.config.labels[POD_NAME]: [m.container_path for m in c.config.mounts]
              for c in await cluster.runtime.list_containers({NODE: "n1"})}  # fmt: skip
    assert mounts == {"plain": [], "scratchy": ["/scratch"]}


async def test_a_token_that_cannot_be_renewed_serves_until_it_expires(
    autojump_clock, cluster, tmp_path
):
    cluster.start_kubelet(root_dir=tmp_path)
    projection = {"serviceAccountToken": {"expirationSeconds": 600, "path": "token"}}
    mount = [{"name": "t", "mountPath": "/t"}]
    # The app starts at 500 s, after its init container: its token is due for renewal
    # (80% of 600 s), and the renewal is refused.
    await cluster.pod("late", automountServiceAccountToken=False,
                      initContainers=[{"name": "init", "image": "long-init",
                                       "volumeMounts": mount}],
                      containers=[{"name": "app", "image": "crash", "volumeMounts": mount}],
                      volumes=[{"name": "t", "projected": {"sources": [projection]}}])  # fmt: skip
    issued = trio.current_time()
    await cluster.until("late", lambda p: "running" in (p["status"].get(
        "initContainerStatuses") or [{}])[0].get("state", {}))  # fmt: skip
    await cluster.client.delete("serviceaccounts", "default", namespace="default")
    p = await cluster.until("late", lambda p: cstatus(p).get("restartCount", 0) >= 1)
    assert trio.current_time() - issued < 600  # started (and restarted) on the old token
    # Once it has expired, the container waits for a token it cannot have.
    p = await cluster.until("late", lambda p: cstatus(p)["state"].get("waiting", {}).get(
        "reason") == "CreateContainerConfigError")  # fmt: skip
    assert "failed to fetch token" in cstatus(p)["state"]["waiting"]["message"]
    assert trio.current_time() - issued >= 600
