"""What people do with kubectl every day, against the API server's HTTPS front end, with
the real kubectl (found on PATH; the tests fail loudly without it): apply (client- and
server-side, with conflicts), the generator commands (which send protobuf), describe,
label, annotate, scale, the three patch types, edit, delete with each cascade (the
garbage collector running), auth, explain, api-resources; and the errors as kubectl
shows them for a real cluster."""

from __future__ import annotations

import json
import sys

import trio
import yaml
from http_cluster import serve_cluster
from kubectl_run import kubectl

from actorkube.actor import ActorSystem
from actorkube.controllers import DisruptionController
from actorkube.controllers.garbagecollector import GarbageCollector

DEPLOYMENT_V1 = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, tier: fe}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: a
        image: nginx:1
        env: [{name: X, value: "1"}, {name: Z, value: "2"}]
        ports: [{containerPort: 80}, {containerPort: 443}]
      - name: b
        image: busybox
      tolerations: [{key: k1, operator: Exists}]
"""
# Label tier, container b, env Z and port 443 gone; another image; other tolerations.
DEPLOYMENT_V2 = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: a
        image: nginx:2
        env: [{name: X, value: "1"}]
        ports: [{containerPort: 80}]
      tolerations: [{key: k2, operator: Exists}]
"""


async def _cluster(tmp_path, nursery, system, *, garbage_collector: bool = False,
                   disruption: bool = False):  # fmt: skip
    served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
    if garbage_collector:  # cascading deletion needs it (as admin: the test's token file)
        collector = GarbageCollector(served.api.ref, token="admin-token")
        system.spawn(lambda: collector, name="generic-garbage-collector")
    if disruption:  # PodDisruptionBudgets' status
        controller = DisruptionController(served.api.ref, token="admin-token")
        system.spawn(lambda: controller, name="disruption-controller")
    admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
    alice = served.kubeconfig(tmp_path / "alice.kubeconfig", "alice", "alice-token")
    cache = tmp_path / "cache"

    async def run(*args: str, stdin: str = "", config=admin, env=None, ok: bool = True):
        code, out, err = await kubectl(config, cache, *args, stdin=stdin.encode(), env=env)
        if ok:
            assert code == 0, f"kubectl {' '.join(args)}: {err}"
        return code, out, err

    return run, alice


async def get_json(run, *what: str) -> dict:
    return json.loads((await run("get", *what, "-o", "json"))[1])


async def test_client_side_apply_creates_configures_and_leaves_unchanged(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system)
        _, out, _ = await run("apply", "-f", "-", stdin=DEPLOYMENT_V1)
        assert out.strip() == "deployment.apps/web created"
        _, out, _ = await run("apply", "-f", "-", stdin=DEPLOYMENT_V2)
        assert out.strip() == "deployment.apps/web configured"
        web = await get_json(run, "deployment", "web")
        assert web["metadata"]["labels"] == {"app": "web"}
        assert "kubectl.kubernetes.io/last-applied-configuration" in web["metadata"]["annotations"]
        spec = web["spec"]["template"]["spec"]
        [container] = spec["containers"]
        assert (container["name"], container["image"]) == ("a", "nginx:2")
        assert container["env"] == [{"name": "X", "value": "1"}]
        assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
        assert spec["tolerations"] == [{"key": "k2", "operator": "Exists"}]
        _, out, _ = await run("apply", "-f", "-", stdin=DEPLOYMENT_V2)
        assert out.strip() == "deployment.apps/web unchanged"
        # kubectl validates against the OpenAPI document and the server's strict decoding.
        code, _, err = await run(
            "apply", "-f", "-", ok=False, stdin=DEPLOYMENT_V2.replace("image: nginx:2", "imagee: x")
        )
        assert code == 1
        assert 'unknown field "spec.template.spec.containers[0].imagee"' in err
        nursery.cancel_scope.cancel()


async def test_server_side_apply_owns_fields_and_reports_conflicts(tmp_path):
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata: {k1: v1, k2: v2}\n"
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system)
        _, out, _ = await run("apply", "--server-side", "-f", "-", stdin=config)
        assert out.strip() == "configmap/cfg serverside-applied"
        cm = await get_json(run, "configmap", "cfg", "--show-managed-fields")
        [entry] = cm["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"]) == ("kubectl", "Apply")
        assert entry["fieldsV1"] == {"f:data": {"f:k1": {}, "f:k2": {}}}
        await run("patch", "configmap", "cfg", "--type", "merge", "-p", '{"data":{"k1":"mine"}}')
        code, _, err = await run("apply", "--server-side", "-f", "-", stdin=config, ok=False)
        assert code == 1
        assert err.startswith(
            'error: Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.k1'
        )
        await run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=config)
        assert (await get_json(run, "configmap", "cfg"))["data"] == {"k1": "v1", "k2": "v2"}
        # A field the manager stops applying goes.
        await run("apply", "--server-side", "-f", "-", stdin=config.replace(", k2: v2", ""))
        assert (await get_json(run, "configmap", "cfg"))["data"] == {"k1": "v1"}
        nursery.cancel_scope.cancel()


async def test_generator_commands_send_protobuf_and_it_is_read(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system)
        await run("create", "namespace", "shop")
        await run("-n", "shop", "create", "configmap", "settings", "--from-literal=color=blue")
        await run("-n", "shop", "create", "secret", "generic", "creds", "--from-literal=pw=s3cr3t")
        await run(
            "-n",
            "shop",
            "create",
            "deployment",
            "cart",
            "--image=nginx:1.27",
            "--replicas=3",
            "--port=8080",
        )
        await run("-n", "shop", "create", "service", "clusterip", "cart", "--tcp=80:8080")
        await run("-n", "shop", "create", "serviceaccount", "robot")
        # A pointer set to its zero value is set (protobuf writes it; replicas stays 0).
        await run("-n", "shop", "create", "deployment", "idle", "--image=nginx", "--replicas=0")
        assert (await get_json(run, "-n", "shop", "deployment", "idle"))["spec"]["replicas"] == 0
        assert (await get_json(run, "-n", "shop", "configmap", "settings"))["data"] == {
            "color": "blue"
        }
        secret = await get_json(run, "-n", "shop", "secret", "creds")
        assert secret["data"] == {"pw": "czNjcjN0"} and secret["type"] == "Opaque"
        cart = await get_json(run, "-n", "shop", "deployment", "cart")
        assert cart["spec"]["replicas"] == 3
        [container] = cart["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "nginx:1.27"
        assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        assert cart["spec"]["template"]["spec"]["containers"][0]["resources"] == {}
        svc = await get_json(run, "-n", "shop", "service", "cart")
        assert (
            svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == 8080
        )
        _, out, _ = await run("-n", "shop", "get", "deploy,svc,cm,sa", "-o", "name")
        assert {
            "deployment.apps/cart",
            "service/cart",
            "configmap/settings",
            "serviceaccount/robot",
        } <= set(out.split())
        nursery.cancel_scope.cancel()


async def test_everyday_edits_describe_and_delete(tmp_path):
    editor = (
        f'{sys.executable} -c "import sys,pathlib; p=pathlib.Path(sys.argv[1]); '
        f"p.write_text(p.read_text().replace('nginx:3', 'nginx:4'))\""
    )
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system, garbage_collector=True)
        await run("apply", "-f", "-", stdin=DEPLOYMENT_V2)
        _, out, _ = await run("scale", "deployment", "web", "--replicas=5")
        assert out.strip() == "deployment.apps/web scaled"
        _, out, _ = await run("label", "deployment", "web", "env=prod")
        assert out.strip() == "deployment.apps/web labeled"
        _, out, _ = await run("annotate", "deployment", "web", "note=hello")
        assert out.strip() == "deployment.apps/web annotated"
        await run("label", "deployment", "web", "tier-")  # removing a label that is not there
        patch = '{"spec":{"template":{"spec":{"containers":[{"name":"a","image":"nginx:3"}]}}}}'
        await run("patch", "deployment", "web", "-p", patch)  # strategic, kubectl's default
        await run(
            "patch",
            "deployment",
            "web",
            "--type",
            "json",
            "-p",
            '[{"op":"add","path":"/spec/minReadySeconds","value":5}]',
        )
        await run(
            "patch",
            "deployment",
            "web",
            "--type",
            "merge",
            "-p",
            '{"metadata":{"labels":{"env":null}}}',
        )
        _, out, _ = await run("edit", "deployment", "web", env={"EDITOR": editor})
        assert out.strip() == "deployment.apps/web edited"
        web = await get_json(run, "deployment", "web")
        assert web["spec"]["replicas"] == 5 and web["spec"]["minReadySeconds"] == 5
        assert web["metadata"]["labels"] == {"app": "web"}
        assert web["metadata"]["annotations"]["note"] == "hello"
        [container] = web["spec"]["template"]["spec"]["containers"]
        assert container["image"] == "nginx:4" and container["env"] == [{"name": "X", "value": "1"}]
        _, out, _ = await run("get", "deployment", "web", "-o", "yaml")
        [shown] = yaml.safe_load(out)["spec"]["template"]["spec"]["containers"]
        assert shown["image"] == "nginx:4"
        _, out, _ = await run("describe", "deployment", "web")
        fields = dict(
            line.split(":", 1)
            for line in out.splitlines()
            if ":" in line and not line.startswith(" ")
        )
        assert fields["Name"].strip() == "web" and fields["Namespace"].strip() == "default"
        assert fields["Replicas"].strip().startswith("5 desired")
        assert "Image:      nginx:4" in out and "Tolerations:     k2 op=Exists" in out
        # describe finds the object's events by field selectors on involvedObject.
        event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1"},
                 "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment",
                                    "name": "web", "namespace": "default",
                                    "uid": web["metadata"]["uid"]},
                 "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-1",
                 "type": "Normal", "source": {"component": "deployment-controller"}}  # fmt: skip
        await run("create", "-f", "-", stdin=json.dumps(event))
        _, out, _ = await run("describe", "deployment", "web")
        assert "ScalingReplicaSet" in out.split("Events:", 1)[1], out
        _, out, _ = await run("get", "events", "--field-selector",
                              "involvedObject.kind=Deployment,reason=ScalingReplicaSet",
                              "-o", "name")  # fmt: skip
        assert out.split() == ["event/web.1"]
        # Each cascade mode, on an owner with a dependent (kubectl waits until the owner
        # is gone): orphan keeps the dependent without its reference, foreground deletes
        # the dependent first, background deletes it after.
        for mode in ("orphan", "foreground", "background"):
            await owner_and_dependent(run, f"owner-{mode}", f"dep-{mode}")
            _, out, _ = await run("delete", "configmap", f"owner-{mode}", f"--cascade={mode}")
            assert out.strip() == f'configmap "owner-{mode}" deleted'
        orphan = (await get_json(run, "configmap", "dep-orphan"))["metadata"]
        assert not orphan.get("ownerReferences")  # ([] here: see docs/apiserver.md)
        code, _, err = await run("get", "configmap", "dep-foreground", ok=False)
        assert code == 1 and "NotFound" in err
        await run("wait", "--for=delete", "configmap/dep-background", "--timeout=60s")
        # Foreground half-way: the owner waits, marked, while a finalizer holds its dependent.
        await owner_and_dependent(run, "owner-held", "dep-held", "example.com/hold")
        _, out, _ = await run("delete", "configmap", "owner-held", "--cascade=foreground",
                              "--wait=false")  # fmt: skip
        assert out.strip() == 'configmap "owner-held" deleted'
        owner = (await get_json(run, "configmap", "owner-held"))["metadata"]
        assert owner["finalizers"] == ["foregroundDeletion"] and owner["deletionTimestamp"]
        with trio.fail_after(60):  # the garbage collector deletes the dependent
            while "deletionTimestamp" not in (await get_json(run, "configmap",
                                                             "dep-held"))["metadata"]:  # fmt: skip
                await trio.sleep(0.2)
        await run("patch", "configmap", "dep-held", "--type=json",
                  "-p", '[{"op":"remove","path":"/metadata/finalizers"}]')  # fmt: skip
        await run("wait", "--for=delete", "configmap/owner-held", "--timeout=60s")
        _, out, _ = await run("get", "configmaps", "-o", "name")
        assert out.split() == ["configmap/dep-orphan"]
        nursery.cancel_scope.cancel()


async def owner_and_dependent(run, owner: str, dependent: str, *finalizers: str) -> None:
    """ConfigMap ``owner``, and ``dependent`` naming it in a blocking ownerReference."""
    await run("create", "configmap", owner)
    uid = (await get_json(run, "configmap", owner))["metadata"]["uid"]
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid,
                 "blockOwnerDeletion": True}  # fmt: skip
    m = {"name": dependent, "ownerReferences": [reference]}
    if finalizers:
        m["finalizers"] = list(finalizers)
    await run("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                                                     "metadata": m}))  # fmt: skip


async def test_auth_explain_api_resources_and_errors(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, alice = await _cluster(tmp_path, nursery, system)
        _, out, _ = await run("auth", "can-i", "create", "pods")
        assert out.strip() == "yes"
        code, out, _ = await run("auth", "can-i", "create", "pods", config=alice, ok=False)
        assert (code, out.strip()) == (1, "no")
        # Impersonation: the admin may act as anyone, alice may not.
        code, out, _ = await run("auth", "can-i", "create", "pods", "--as=alice", ok=False)
        assert (code, out.strip()) == (1, "no")
        _, out, _ = await run("auth", "can-i", "create", "pods", "--as=bob",
                              "--as-group=system:masters")  # fmt: skip
        assert out.strip() == "yes"
        code, _, err = await run("get", "pods", "--as=admin", config=alice, ok=False)
        assert err.strip() == (
            'Error from server (Forbidden): users "admin" is forbidden: User "alice" cannot '
            'impersonate resource "users" in API group "" at the cluster scope'
        )
        _, out, _ = await run("auth", "whoami", "-o", "json")
        assert json.loads(out)["status"]["userInfo"]["username"] == "admin"
        _, out, _ = await run("auth", "can-i", "--list")
        assert out.split("\n")[1].split() == ["*.*", "[]", "[]", "[*]"]
        _, out, _ = await run("explain", "pods.spec.containers.ports")
        assert (
            "FIELD: ports <[]ContainerPort>" in out and "containerPort\t<integer> -required-" in out
        )
        _, out, _ = await run("api-resources", "--api-group=apps", "-o", "name")
        assert out.split() == ["controllerrevisions.apps", "daemonsets.apps", "deployments.apps",
                               "replicasets.apps"]  # fmt: skip
        # Errors as kubectl shows them for a real cluster.
        await run("create", "configmap", "cfg", "--from-literal=a=1")
        stale = await get_json(run, "configmap", "cfg")
        await run("patch", "configmap", "cfg", "--type", "merge", "-p", '{"data":{"a":"2"}}')
        code, _, err = await run("replace", "-f", "-", stdin=json.dumps(stale), ok=False)
        assert code == 1
        assert err.strip() == (
            'Error from server (Conflict): error when replacing "STDIN": Operation cannot be '
            'fulfilled on configmaps "cfg": the object has been modified; please apply your '
            "changes to the latest version and try again"
        )
        code, _, err = await run("get", "deployment", "nothing", ok=False)
        assert err.strip() == 'Error from server (NotFound): deployments.apps "nothing" not found'
        code, _, err = await run("create", "configmap", "Bad_Name", ok=False)
        assert err.startswith(
            'error: failed to create configmap: ConfigMap "Bad_Name" is invalid: metadata.name: '
            'Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain'
        )
        code, _, err = await run("delete", "configmap", "cfg", config=alice, ok=False)
        assert err.strip() == (
            'Error from server (Forbidden): configmaps "cfg" is forbidden: User "alice" cannot '
            'delete resource "configmaps" in API group "" in the namespace "default"'
        )
        nursery.cancel_scope.cancel()


async def test_client_certificates_authenticate_and_others_are_refused(tmp_path):
    from actorkube.pki import issue, new_ca

    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        cache = tmp_path / "cache"
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig", token="", client=served.pki.admin)
        code, out, err = await kubectl(admin, cache, "auth", "whoami", "-o", "json")
        assert code == 0, err
        info = json.loads(out)["status"]["userInfo"]
        assert info == {"username": "admin", "groups": ["system:masters", "system:authenticated"]}
        dev = issue(served.pki.ca, "dana", organizations=("devs", "oncall"))
        config = served.kubeconfig(tmp_path / "dana.kubeconfig", "dana", token="", client=dev)
        code, out, err = await kubectl(config, cache, "get", "pods")
        assert code == 1
        assert err.strip() == (
            'Error from server (Forbidden): pods is forbidden: User "dana" cannot list '
            'resource "pods" in API group "" in the namespace "default"'
        )
        # A certificate another CA signed is refused, even with a valid token beside it:
        # TLS itself turns it away (Python's TLS cannot ask for a certificate without
        # checking it, so this is a failed handshake where kube-apiserver answers 401).
        stranger = issue(new_ca("elsewhere"), "admin", organizations=("system:masters",))
        config = served.kubeconfig(tmp_path / "x.kubeconfig", client=stranger)
        code, out, err = await kubectl(config, cache, "get", "pods")
        assert (code, out) == (1, "")
        # How Go words a refused handshake depends on timing (a reset, a broken pipe,
        # an unexpected EOF, a TLS alert); that kubectl got nothing does not (a list it
        # was allowed would exit 0, even empty).
        assert "No resources found" not in err
        code, out, err = await kubectl(admin, cache, "get", "pods")
        assert code == 0, err  # and the server serves on
        nursery.cancel_scope.cancel()


async def test_server_side_dry_runs_go_through_everything_and_store_nothing(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system)
        _, out, _ = await run("create", "configmap", "ghost", "--from-literal=a=1",
                              "--dry-run=server", "-o", "json")  # fmt: skip
        ghost = json.loads(out)
        assert ghost["data"] == {"a": "1"} and ghost["metadata"]["uid"]
        code, _, err = await run("get", "configmap", "ghost", ok=False)
        assert code == 1 and "NotFound" in err
        code, _, err = await run("create", "configmap", "Bad_Name", "--dry-run=server", ok=False)
        assert code == 1 and "is invalid" in err  # validated all the same
        await run("apply", "-f", "-", stdin=DEPLOYMENT_V1)
        before = await get_json(run, "deployment", "web")
        _, out, _ = await run("apply", "--dry-run=server", "-f", "-", stdin=DEPLOYMENT_V2)
        assert out.strip() == "deployment.apps/web configured (server dry run)"
        await run("apply", "--server-side", "--dry-run=server", "--force-conflicts", "-f", "-",
                  stdin=DEPLOYMENT_V2)  # fmt: skip
        await run("scale", "deployment", "web", "--replicas=9", "--dry-run=server")
        _, out, _ = await run("delete", "deployment", "web", "--dry-run=server")
        assert out.strip() == 'deployment.apps "web" deleted (server dry run)'
        assert await get_json(run, "deployment", "web") == before
        nursery.cancel_scope.cancel()


async def test_create_token_gives_a_token_the_server_accepts_and_binding_ends_it(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system)
        await run("create", "serviceaccount", "bot")
        _, token, _ = await run("create", "token", "bot", "--duration=20m")
        _, out, _ = await run("auth", "whoami", "--token", token.strip(), "-o", "json")
        user = json.loads(out)["status"]["userInfo"]
        assert user["username"] == "system:serviceaccount:default:bot"
        assert "system:serviceaccounts:default" in user["groups"]
        code, _, err = await run("create", "token", "bot", "--duration=5m", ok=False)
        assert code != 0 and "may not specify a duration less than 10 minutes" in err
        code, _, err = await run("create", "token", "nobody", ok=False)
        assert code != 0 and 'serviceaccounts "nobody" not found' in err

        # A token bound to a pod dies with the pod.
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "holder"},
               "spec": {"serviceAccountName": "bot",
                        "containers": [{"name": "c", "image": "pause"}]}}  # fmt: skip
        await run("create", "-f", "-", stdin=json.dumps(pod))
        _, bound, _ = await run("create", "token", "bot", "--bound-object-kind=Pod",
                                "--bound-object-name=holder")  # fmt: skip
        await run("auth", "whoami", "--token", bound.strip())
        await run("delete", "pod", "holder", "--grace-period=0", "--force")

        async def rejected() -> bool:
            code, _, err = await run("auth", "whoami", "--token", bound.strip(), ok=False)
            return code != 0 and "Unauthorized" in err

        with trio.fail_after(30):
            while not await rejected():  # the watch cache learns of the deletion
                await trio.sleep(0.1)
        await run("auth", "whoami", "--token", token.strip())  # the unbound one lives on
        nursery.cancel_scope.cancel()


async def test_drain_evicts_what_the_pod_disruption_budget_allows(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        run, _ = await _cluster(tmp_path, nursery, system, disruption=True)
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}
        await run("create", "-f", "-", stdin=json.dumps(node))
        ready = json.dumps({"status": {"phase": "Running",
                                       "conditions": [{"type": "Ready", "status": "True"}]}})
        for name in ("a", "b"):
            pod = {"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "labels": {"app": "web"}},
                   "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "pause"}]}}
            await run("create", "-f", "-", stdin=json.dumps(pod))
            await run("patch", "pod", name, "--subresource=status", "--type=merge", "-p", ready)
        await run("create", "poddisruptionbudget", "web", "--selector=app=web",
                  "--min-available=1")  # fmt: skip

        async def allowed() -> str:
            _, out, _ = await run("get", "pdb", "web", "-o",
                                  "jsonpath={.status.disruptionsAllowed}")  # fmt: skip
            return out

        with trio.fail_after(30):
            while await allowed() != "1":  # the disruption controller counts the pods
                await trio.sleep(0.1)
        _, out, _ = await run("get", "pdb", "web")
        assert out.split("\n")[1].split()[:4] == ["web", "1", "N/A", "1"]
        # Both pods are evicted at once; the budget lets one go and refuses the other
        # until drain gives up.
        code, out, err = await run("drain", "n1", "--force", "--grace-period=0",
                                   "--timeout=3s", ok=False)  # fmt: skip
        assert code != 0, out
        assert "Cannot evict pod as it would violate the pod's disruption budget." in err
        _, out, _ = await run("get", "pods", "-o", "name")
        assert len(out.split()) == 1, out
        _, out, _ = await run("get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}")
        assert out == "true"  # cordoned first
        nursery.cancel_scope.cancel()
