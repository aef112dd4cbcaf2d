"""The kubelet's pure cores against Kubernetes' documented behaviour: what a sync does
(computePodActions), the status it writes (phase, container states, conditions),
crash-loop backoff, probes' thresholds, the environment and admission."""

import base64

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from actorkube.node._backoff import Backoff
from actorkube.node._env import ConfigError, command_line, container_env, expand, service_env
from actorkube.node._nodestatus import NodeConfig, admit, node_status, status_changed
from actorkube.node._podstate import (
    CONTAINER_HASH,
    LIVENESS,
    STARTUP,
    PodRuntime,
    compute_actions,
    container_hash,
)
from actorkube.node._podstatus import phase, pod_status, qos_class
from actorkube.node._probes import READINESS, ProbeWorker
from actorkube.node.runtime import (
    ContainerConfig,
    ContainerState,
    ContainerStatus,
    PodSandboxConfig,
    SandboxState,
    SandboxStatus,
)

R, X, C = ContainerState.RUNNING, ContainerState.EXITED, ContainerState.CREATED


def pod(containers=("app",), inits=(), policy="Always", deleting=False, **spec):
    p = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "restartPolicy": policy,
            "containers": [{"name": n, "image": "img"} for n in containers],
            **spec,
        },
        "status": {"phase": "Pending"},
    }
    if inits:
        p["spec"]["initContainers"] = [{"name": n, "image": "img"} for n in inits]
    if deleting:
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return p


def sandbox(state=SandboxState.READY, attempt=0, ip="10.0.0.2", sid="s1"):
    return SandboxStatus(sid, PodSandboxConfig("p", "ns", "u1", attempt=attempt), state,
                         created_at=float(attempt), ip=ip)  # fmt: skip


def ctr(name, state, exit_code=0, attempt=0, cid=None, spec=None, reason=""):
    labels = {CONTAINER_HASH: container_hash(spec)} if spec is not None else {}
    return ContainerStatus(
        cid or f"{name}-{attempt}", "s1", ContainerConfig(name, "img", attempt=attempt,
                                                           labels=labels),
        state, created_at=float(attempt), started_at=100.0 + attempt,
        finished_at=200.0 + attempt if state is X else 0.0, exit_code=exit_code, reason=reason,
    )  # fmt: skip


def rt(*containers, sandboxes=None):
    return PodRuntime.of(list(sandboxes if sandboxes is not None else [sandbox()]),
                         list(containers))  # fmt: skip


# --- compute_actions ---------------------------------------------------------------------


def test_a_new_pod_gets_a_sandbox_and_its_containers():
    a = compute_actions(pod(("a", "b")), rt(sandboxes=[]))
    assert a.create_sandbox and a.kill_pod and a.attempt == 0
    assert a.start == ("a", "b") and not a.next_init


def test_init_containers_run_first_one_at_a_time_in_order():
    p = pod(inits=("i1", "i2"))
    assert compute_actions(p, rt(sandboxes=[])).next_init == "i1"
    assert compute_actions(p, rt()).next_init == "i1"
    running = compute_actions(p, rt(ctr("i1", R)))
    assert running.next_init == "" and running.start == () and not running.kill_pod
    assert compute_actions(p, rt(ctr("i1", X))).next_init == "i2"
    done = compute_actions(p, rt(ctr("i1", X), ctr("i2", X)))
    assert done.start == ("app",) and not done.next_init


def test_a_failed_init_container_is_retried_unless_the_policy_is_never():
    failed = rt(ctr("i1", X, exit_code=1))
    assert compute_actions(pod(inits=("i1",)), failed).next_init == "i1"
    assert compute_actions(pod(inits=("i1",), policy="OnFailure"), failed).next_init == "i1"
    never = compute_actions(pod(inits=("i1",), policy="Never"), failed)
    assert never.kill_pod and not never.next_init and not never.create_sandbox


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarted"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 0, False),
        ("Never", 1, False),
    ],
)
def test_restart_policies(policy, exit_code, restarted):
    a = compute_actions(pod(policy=policy), rt(ctr("app", X, exit_code=exit_code)))
    assert (a.start == ("app",)) is restarted
    # Nothing running and nothing to start: the pod is done, its sandbox goes.
    assert a.kill_pod is not restarted


def test_a_pod_being_deleted_restarts_nothing():
    a = compute_actions(pod(deleting=True), rt(ctr("app", X, exit_code=1)))
    assert a.start == () and a.kill_pod


def test_a_dead_sandbox_means_a_new_one_and_everything_again():
    dead = [sandbox(SandboxState.NOTREADY, attempt=0)]
    a = compute_actions(pod(("a", "b")), rt(ctr("a", R), sandboxes=dead))
    assert a.create_sandbox and a.kill_pod and a.attempt == 1 and a.start == ("a", "b")
    # Under Never, once the containers ran, the pod is not started again.
    never = compute_actions(pod(policy="Never"), rt(ctr("app", X), sandboxes=dead))
    assert never.kill_pod and not never.create_sandbox
    # Under OnFailure the ones that succeeded are not run again.
    on_failure = compute_actions(pod(("a", "b"), policy="OnFailure"),
                                 rt(ctr("a", X), ctr("b", X, 1), sandboxes=dead))  # fmt: skip
    assert on_failure.start == ("b",)
    # A sandbox without an IP, or two ready ones, is replaced too.
    assert compute_actions(pod(), rt(sandboxes=[sandbox(ip="")])).create_sandbox
    two = [sandbox(attempt=1, sid="s2"), sandbox(attempt=0)]
    assert compute_actions(pod(), rt(sandboxes=two)).attempt == 2


def test_liveness_or_startup_failure_kills_and_restarts_by_policy():
    running = ctr("app", R, cid="c1")
    a = compute_actions(pod(), rt(running), {"c1": {LIVENESS: False}})
    assert [k.container_id for k in a.kill] == ["c1"] and a.start == ("app",)
    assert a.kill[0].message == "Container app failed liveness probe, will be restarted"
    never = compute_actions(pod(policy="Never"), rt(running), {"c1": {STARTUP: False}})
    assert never.kill[0].message == "Container app failed startup probe" and never.start == ()
    healthy = compute_actions(pod(), rt(running), {"c1": {LIVENESS: True}})
    assert healthy.kill == () and healthy.start == () and not healthy.kill_pod


def test_a_changed_container_spec_is_restarted():
    p = pod()
    old = ctr("app", R, cid="c1", spec={"name": "app", "image": "old"})
    a = compute_actions(p, rt(old))
    assert a.kill[0].message == "Container app definition changed, will be restarted"
    same = ctr("app", R, cid="c1", spec=p["spec"]["containers"][0])
    assert compute_actions(p, rt(same)).kill == ()


# --- status ----------------------------------------------------------------------------



def _copied(c):
    """The same container status with its config an equal object, not the same one."""
    return attrs.evolve(c, config=attrs.evolve(c.config, labels=dict(c.config.labels)))


_statuses = st.lists(st.builds(ctr, st.sampled_from(["a", "b"]), st.sampled_from([R, X, C]),
                               exit_code=st.integers(0, 2), attempt=st.integers(0, 2),
                               reason=st.sampled_from(["", "Error"])), max_size=3)  # fmt: skip


@given(_statuses, _statuses, st.booleans(), st.sampled_from([None, "s2", "ip"]))
def test_pod_runtimes_are_equal_exactly_when_every_field_is(mine, theirs, copy, sandbox_change):
    # PodRuntime compares field tuples (a shared config is not looked into); the result
    # must be attrs' field-by-field equality's, for equal configs that are other objects
    # too.
    other_sandbox = sandbox(sid="s2") if sandbox_change == "s2" else (
        sandbox(ip="10.0.0.9") if sandbox_change == "ip" else sandbox())  # fmt: skip
    a = rt(*mine)
    b = rt(*(map(_copied, theirs) if copy else theirs), sandboxes=[other_sandbox])
    expected = a.sandboxes == b.sandboxes and a.containers == b.containers  # attrs' rule
    assert (a == b) is expected and (a != b) is not expected
    assert rt(*mine) == rt(*map(_copied, mine))


def status(p, runtime, **kw):
    return pod_status(p, runtime, runtime_name="sim", host_ip="127.0.0.1", now=1000.0, **kw)


def cond(s, kind):
    return next(c for c in s["conditions"] if c["type"] == kind)


def test_status_of_a_running_pod():
    s = status(pod(), rt(ctr("app", R, cid="c1")))
    assert s["phase"] == "Running" and s["podIP"] == "10.0.0.2"
    (c,) = s["containerStatuses"]
    assert c["state"] == {"running": {"startedAt": "1970-01-01T00:01:40Z"}}
    assert c["ready"] and c["started"] and c["restartCount"] == 0
    assert c["containerID"] == "sim://c1"
    for kind in ("Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"):
        assert cond(s, kind)["status"] == "True"


def test_status_while_waiting_and_initializing():
    s = status(pod(inits=("i",)), rt(ctr("i", R)))
    assert s["phase"] == "Pending"
    assert s["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    init = cond(s, "Initialized")
    assert init["status"] == "False" and init["reason"] == "ContainersNotInitialized"
    assert init["message"] == "containers with incomplete status: [i]"
    fresh = status(pod(), rt())
    assert fresh["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert cond(fresh, "Ready")["message"] == "containers with unready status: [app]"


def test_crash_loop_status_shows_the_reason_and_the_last_termination():
    runtime = rt(ctr("app", X, exit_code=3, attempt=2))
    s = status(pod(), runtime, reasons={"app": ("CrashLoopBackOff", "back-off 40s ...")})
    (c,) = s["containerStatuses"]
    assert c["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s ..."}}
    assert c["lastState"]["terminated"]["exitCode"] == 3
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert c["restartCount"] == 2 and s["phase"] == "Running"


def test_last_state_is_the_previous_container():
    runtime = rt(ctr("app", R, attempt=1), ctr("app", X, exit_code=137, reason="OOMKilled"))
    (c,) = status(pod(), runtime)["containerStatuses"]
    assert "running" in c["state"] and c["restartCount"] == 1
    assert c["lastState"]["terminated"]["reason"] == "OOMKilled"


@pytest.mark.parametrize(
    ("policy", "codes", "expected"),
    [
        ("Never", (0, 0), "Succeeded"),
        ("Never", (0, 1), "Failed"),
        ("OnFailure", (0, 0), "Succeeded"),
        ("OnFailure", (0, 1), "Running"),  # being restarted
        ("Always", (0, 0), "Running"),
    ],
)
def test_phase_when_all_containers_exited(policy, codes, expected):
    runtime = rt(*(ctr(n, X, exit_code=c) for n, c in zip("ab", codes, strict=True)))
    assert status(pod(("a", "b"), policy=policy), runtime)["phase"] == expected


def test_a_terminal_phase_is_never_left_and_completed_pods_are_not_ready():
    p = pod(policy="Never")
    s = status(p, rt(ctr("app", X)))
    assert s["phase"] == "Succeeded" and cond(s, "Ready")["reason"] == "PodCompleted"
    p["status"] = s
    assert phase(p, [], [{"state": {"running": {}}, "lastState": {}, "restartCount": 0}]) == (
        "Succeeded"
    )


def test_failed_init_under_never_fails_the_pod():
    s = status(pod(inits=("i",), policy="Never"), rt(ctr("i", X, exit_code=1)))
    assert s["phase"] == "Failed"


def test_readiness_and_startup_results_set_ready_and_started():
    runtime = rt(ctr("app", R, cid="c1"))
    not_ready = status(pod(), runtime, ready={"c1": False})
    assert not not_ready["containerStatuses"][0]["ready"]
    assert cond(not_ready, "Ready")["status"] == "False"
    not_started = status(pod(), runtime, started={"c1": False}, ready={"c1": True})
    c = not_started["containerStatuses"][0]
    assert not c["started"] and not c["ready"]


def test_conditions_keep_their_transition_time_and_foreign_conditions_stay():
    p = pod()
    p["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "then"},
    ]
    s = status(p, rt(ctr("app", R)))
    assert cond(s, "PodScheduled") == {"type": "PodScheduled", "status": "True"}
    assert cond(s, "Ready")["lastTransitionTime"] == "then"
    flipped = status(p, rt(ctr("app", R, cid="c")), ready={"c": False})
    assert cond(flipped, "Ready")["lastTransitionTime"] != "then"


def test_qos_classes():
    def with_resources(**resources):
        return {"spec": {"containers": [{"name": "a", "resources": resources}]}}

    assert qos_class(with_resources()) == "BestEffort"
    same = {"cpu": "1", "memory": "1Gi"}
    assert qos_class(with_resources(limits=same, requests=same)) == "Guaranteed"
    assert qos_class(with_resources(limits=same)) == "Guaranteed"  # requests default to limits
    assert qos_class(with_resources(requests={"cpu": "1"})) == "Burstable"


# --- backoff -------------------------------------------------------------------------------


def test_crash_loop_backoff_doubles_to_five_minutes_and_resets_after_ten():
    b = Backoff()
    k = ("u", "app", "h")
    assert b.remaining(k, finished=0, now=0) == 0  # the first restart is immediate
    delays = [b.next(k, now=t) for t in range(0, 70, 10)]
    assert delays == [10, 20, 40, 80, 160, 300, 300]
    assert b.remaining(k, finished=60, now=100) == 260
    # Ten minutes without a restart: back to 10 s.
    assert b.get(k, now=60 + 601) == 0 and b.next(k, now=60 + 601) == 10
    b.forget("u")
    assert b.get(k, now=700) == 0


# --- probes ----------------------------------------------------------------------------------


def test_probe_thresholds():
    live = ProbeWorker.new(LIVENESS, {"failureThreshold": 3})
    assert live.result is True
    assert not live.record(False) and not live.record(False)
    assert live.record(False) and live.result is False
    assert live.record(True) and live.result is True  # successThreshold 1
    ready = ProbeWorker.new(READINESS, {"successThreshold": 2})
    assert ready.result is False
    assert not ready.record(True) and ready.record(True) and ready.result
    assert not ready.record(False)  # failures need 3 in a row (the default)
    assert not ready.record(True) and ready.result  # a success breaks the run of failures
    assert not ready.record(False) and not ready.record(False) and ready.record(False)
    startup = ProbeWorker.new(STARTUP, {"failureThreshold": 2})
    assert startup.result is None  # unknown: not a failure that kills the container
    assert not startup.record(False) and startup.record(False) and startup.result is False
    assert startup.record(True) and startup.done


# --- environment -------------------------------------------------------------------------


def test_service_links_follow_docker_links_names():
    svc = {"metadata": {"name": "redis-primary"},
           "spec": {"clusterIP": "127.96.0.9", "ports": [{"name": "db", "port": 6379}]}}
    env = service_env([svc, {"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}])
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "127.96.0.9"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_DB"] == "6379"
    assert env["REDIS_PRIMARY_PORT"] == "tcp://127.96.0.9:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == "127.96.0.9"
    assert not any(k.startswith("H_") for k in env)


def test_env_sources_and_expansion():
    p = pod()
    p["status"]["podIP"] = "10.1.2.3"
    p["metadata"]["labels"] = {"app": "web"}
    container = {
        "name": "app",
        "env": [
            {"name": "A", "value": "x"},
            {"name": "B", "value": "$(A)-$(MISSING)-$$(A)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                               "divisor": "1Mi"}}},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "x",
                                                           "optional": True}}},
        ],
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CFG_"}],
        "command": ["echo", "$(NAME)"],
    }  # fmt: skip
    sources = {("ConfigMap", "cm"): {"data": {"k": "v"}},
               ("Secret", "s"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}}}
    env = dict(container_env(p, container, services=[], sources=sources,
                             allocatable={"memory": "2Gi"}))  # fmt: skip
    assert env["B"] == "x-$(MISSING)-$(A)"
    assert env["NAME"] == "p" and env["APP"] == "web" and env["POD_IP"] == "10.1.2.3"
    assert env["MEM"] == "2048" and env["CM"] == "v" and env["S"] == "hunter2"
    assert env["CFG_k"] == "v" and "OPT" not in env
    assert command_line(container, list(env.items()))[0] == ("echo", "p")
    assert expand("$(A)$(A)", {"A": "1"}) == "11"


def test_missing_config_is_a_config_error():
    container = {"name": "a",
                 "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm",
                                                                         "key": "k"}}}]}
    with pytest.raises(ConfigError, match='ConfigMap "cm" not found'):
        container_env(pod(), container, services=[], sources={}, allocatable={})
    with pytest.raises(ConfigError, match="couldn't find key k in ConfigMap ns/cm"):
        container_env(pod(), container, services=[], sources={("ConfigMap", "cm"): {}},
                      allocatable={})  # fmt: skip


# --- node ------------------------------------------------------------------------------------


def requests_pod(cpu="0", memory="0"):
    return {"spec": {"containers": [{"name": "a", "resources": {"requests": {
        "cpu": cpu, "memory": memory}}}]}}  # fmt: skip


def test_admission_rejects_what_does_not_fit_with_kubernetes_reasons():
    alloc = {"cpu": "1", "memory": "1Gi", "pods": "2"}
    assert admit(requests_pod("500m"), [requests_pod("500m")], alloc) is None
    reason, message = admit(requests_pod("600m"), [requests_pod("500m")], alloc)
    assert reason == "OutOfcpu"
    assert message == ("Pod was rejected: Node didn't have enough resource: cpu, "
                       "requested: 600, used: 500, capacity: 1000")  # fmt: skip
    assert admit(requests_pod(memory="2Gi"), [], alloc)[0] == "OutOfmemory"
    assert admit(requests_pod(), [requests_pod(), requests_pod()], alloc)[0] == "OutOfpods"


def test_node_status_conditions_and_change_detection():
    config = NodeConfig("n1", reserved={"cpu": "500m"})
    first = node_status(config, None, 1000.0, runtime_version="sim://0.1")
    assert first["allocatable"]["cpu"] == "3500m"
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "KubeletReady"
    later = node_status(config, first, 2000.0, runtime_version="sim://0.1")
    assert not status_changed(first, later)  # only heartbeats moved
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] != ready["lastHeartbeatTime"]
    down = node_status(config, later, 3000.0, runtime_version="sim://0.1",
                       ready=(False, "container runtime is down"))  # fmt: skip
    assert status_changed(later, down)


def test_init_containers_are_ready_once_completed():
    s = status(pod(inits=("i",)), rt(ctr("i", R)))
    assert not s["initContainerStatuses"][0]["ready"]
    done = status(pod(inits=("i",)), rt(ctr("i", X), ctr("app", R)))
    assert done["initContainerStatuses"][0]["ready"]


def test_readiness_gates_hold_ready_back():
    p = pod(readinessGates=[{"conditionType": "example.com/lb"}])
    s = status(p, rt(ctr("app", R)))
    assert cond(s, "ContainersReady")["status"] == "True"
    ready = cond(s, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadinessGatesNotReady")
    assert ready["message"] == ('corresponding condition of pod readiness gate '
                                '"example.com/lb" does not exist.')  # fmt: skip
    p["status"]["conditions"] = [{"type": "example.com/lb", "status": "True"}]
    assert cond(status(p, rt(ctr("app", R))), "Ready")["status"] == "True"


def test_the_reason_of_a_phase_stays_with_it():
    p = pod()
    p["status"] = {"phase": "Failed", "reason": "OutOfcpu", "message": "Pod was rejected"}
    s = status(p, rt(sandboxes=[]))
    assert (s["phase"], s["reason"], s["message"]) == ("Failed", "OutOfcpu", "Pod was rejected")


def test_a_pod_stopped_for_good_is_terminal_even_under_always():
    killed = rt(ctr("a", X, exit_code=143), ctr("b", X))
    assert status(pod(("a", "b")), killed, terminal=True)["phase"] == "Failed"
    clean = rt(ctr("a", X), ctr("b", X))
    assert status(pod(("a", "b")), clean, terminal=True)["phase"] == "Succeeded"
    assert status(pod(("a", "b")), clean)["phase"] == "Running"  # Always restarts them


def test_the_master_service_is_in_every_environment():
    master = {"metadata": {"name": "kubernetes", "namespace": "default"},
              "spec": {"clusterIP": "127.96.0.1", "ports": [{"name": "https", "port": 443}]}}
    other = {"metadata": {"name": "db", "namespace": "ns"},
             "spec": {"clusterIP": "127.96.0.9", "ports": [{"port": 5432}]}}  # fmt: skip
    p = pod(enableServiceLinks=False)
    env = dict(container_env(p, {"name": "app"}, services=[master, other], sources={},
                             allocatable={}))  # fmt: skip
    assert env["KUBERNETES_SERVICE_HOST"] == "127.96.0.1"
    assert "DB_SERVICE_HOST" not in env
