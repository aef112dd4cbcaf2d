"""The real kubectl (found on PATH; the test fails loudly without it) against the API
server's HTTPS front end, with a kubeconfig made by ``actorkube.pki``: a cluster CA, a
serving certificate for 127.0.0.1, and the admin's bearer token. What kubectl prints is
what it prints for a real cluster."""

from __future__ import annotations

import contextlib
import json
import subprocess

import trio
from http_cluster import serve_cluster
from kubectl_run import kubectl

from actorkube.actor import ActorSystem
from actorkube.apiserver._messages import ApiRequest
from actorkube.pki import ClusterPki


async def test_kubectl_reads_and_writes_over_https_with_a_token(tmp_path):
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        assert served.url.startswith("https://")
        admin = served.kubeconfig(tmp_path / "admin.kubeconfig")
        alice = served.kubeconfig(tmp_path / "alice.kubeconfig", "alice", "alice-token")
        cache = tmp_path / "cache"

        code, out, err = await kubectl(admin, cache, "get", "namespaces")
        assert code == 0, err
        assert out.split("\n")[0].split() == ["NAME", "STATUS", "AGE"]  # the server's Table
        assert {line.split()[0] for line in out.strip().split("\n")[1:]} == {
            "default", "kube-node-lease", "kube-public", "kube-system"
        }  # fmt: skip
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"},
                    "metadata": {"name": "demo", "namespace": "default"}}  # fmt: skip
        create = ("create", "-f", "-")
        code, out, err = await kubectl(admin, cache, *create, stdin=json.dumps(manifest).encode())
        assert code == 0, err
        assert out.strip() == "configmap/demo created"
        code, out, err = await kubectl(admin, cache, "get", "configmap", "demo", "-o", "json")
        assert code == 0, err
        got = json.loads(out)
        assert got["data"] == {"a": "b"} and got["metadata"]["uid"]
        code, out, err = await kubectl(admin, cache, *create, stdin=json.dumps(manifest).encode())
        assert code == 1
        assert err.strip() == (
            'Error from server (AlreadyExists): error when creating "STDIN": configmaps "demo" '
            "already exists"
        )
        code, out, err = await kubectl(alice, cache, "get", "configmaps")
        assert code == 1
        assert err.strip() == (
            'Error from server (Forbidden): configmaps is forbidden: User "alice" cannot list '
            'resource "configmaps" in API group "" in the namespace "default"'
        )
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}  # fmt: skip
        code, out, err = await kubectl(admin, cache, *create, stdin=json.dumps(pod).encode())
        assert code == 0, err
        code, out, err = await kubectl(admin, cache, "get", "pods")
        assert code == 0, err
        header, row = out.strip().split("\n")
        assert header.split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        assert row.split()[:4] == ["web", "0/1", "Pending", "0"]
        code, out, err = await kubectl(admin, cache, "get", "pods", "-o", "wide")
        assert code == 0, err
        assert out.split("\n")[0].split() == [
            "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
            "READINESS", "GATES",
        ]  # fmt: skip
        code, out, err = await kubectl(admin, cache, "version", "-o", "json")
        assert code == 0, err
        assert json.loads(out)["serverVersion"]["gitVersion"] == "v1.32.0-actorkube"
        # A YAML manifest, a label selector, all namespaces, another namespace.
        yaml_pod = (
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  labels:\n    app: db\n"
            "spec:\n  containers:\n  - name: db\n    image: postgres:17\n"
        )
        code, out, err = await kubectl(admin, cache, *create, stdin=yaml_pod.encode())
        assert code == 0, err
        code, out, err = await kubectl(admin, cache, "get", "pods", "-l", "app=db", "-o", "name")
        assert (code, out.split()) == (0, ["pod/db"]), err
        code, out, err = await kubectl(admin, cache, "get", "serviceaccounts", "-A", "-o", "name")
        assert code == 0, err
        assert out.split().count("serviceaccount/default") == 4
        code, out, err = await kubectl(admin, cache, "-n", "kube-system", "get", "sa", "-o", "name")
        assert (code, out.split()) == (0, ["serviceaccount/default"]), err
        code, out, err = await kubectl(
            admin,
            cache,
            "patch",
            "pod",
            "db",
            "--type",
            "merge",
            "-p",
            '{"metadata":{"labels":{"tier":"data"}}}',
        )
        assert code == 0, err
        assert out.strip() == "pod/db patched"
        bad = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "Bad_Name"},
            "spec": {"containers": []},
        }
        code, out, err = await kubectl(admin, cache, *create, stdin=json.dumps(bad).encode())
        assert code == 1
        assert err.startswith('The Pod "Bad_Name" is invalid: ')
        assert "metadata.name: Invalid value" in err and "spec.containers: Required value" in err
        code, out, err = await kubectl(admin, cache, "delete", "configmap", "demo")
        assert code == 0, err
        assert out.strip() == 'configmap "demo" deleted'
        code, out, err = await kubectl(admin, cache, "get", "configmap", "demo")
        assert code == 1
        assert err.strip() == 'Error from server (NotFound): configmaps "demo" not found'
        nursery.cancel_scope.cancel()


def test_the_pki_keeps_its_ca_across_restarts(tmp_path):
    first = ClusterPki.load_or_create(tmp_path)
    again = ClusterPki.load_or_create(tmp_path)
    assert again.ca == first.ca and again.serving == first.serving
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    # A host the serving certificate does not name, or a CA made again (its key lost):
    # the serving certificate is issued again, by the CA there is.
    wider = ClusterPki.load_or_create(tmp_path, hosts=("localhost", "10.1.2.3"))
    assert wider.ca == first.ca and wider.serving != first.serving
    (tmp_path / "ca.key").unlink()
    remade = ClusterPki.load_or_create(tmp_path, hosts=("localhost", "10.1.2.3"))
    assert remade.ca != first.ca and remade.serving != wider.serving
    assert not list(tmp_path.glob("*.partial"))


@contextlib.asynccontextmanager
async def _kubectl_watching(tmp_path, *what: str):
    """A cluster served over HTTP, and ``kubectl get <what> -w --output-watch-events``
    running against it: (the served cluster, the kubectl process)."""
    async with ActorSystem() as system, trio.open_nursery() as nursery:
        served = await serve_cluster(system, nursery, pki_dir=tmp_path / "pki")
        config = served.kubeconfig(tmp_path / "admin.kubeconfig")
        watching = await trio.lowlevel.open_process(
            ["kubectl", f"--kubeconfig={config}", f"--cache-dir={tmp_path / 'cache'}",
             "get", *what, "-w", "--output-watch-events"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            yield served, watching
        finally:
            watching.kill()
            await watching.wait()
        nursery.cancel_scope.cancel()


async def test_kubectl_get_watch_prints_rows_as_objects_change(tmp_path):
    # kubectl get -w asks for Tables on the watch too: each event one row.
    async with _kubectl_watching(tmp_path, "namespaces") as (served, watching):
        seen = b""
        with trio.fail_after(30):
            while b"kube-system" not in seen:  # the list first
                seen += await watching.stdout.receive_some()
            await served.api.ref.ask(
                ApiRequest("create", "namespaces", token="admin-token",
                           body={"metadata": {"name": "team-x"}})
            )  # fmt: skip
            while b"team-x" not in seen:
                seen += await watching.stdout.receive_some()
        lines = seen.decode().strip().split("\n")
        assert lines[0].split() == ["EVENT", "NAME", "STATUS", "AGE"]
        added = next(line for line in lines if "team-x" in line)
        assert added.split()[:3] == ["ADDED", "team-x", "Active"]


async def test_kubectl_watches_events_which_are_served_from_etcd(tmp_path):
    # Events have no watch cache: kubectl's watch of them is an etcd watch of its own.
    def event(name: str, message: str) -> dict:
        return {"metadata": {"name": name}, "reason": "Pulled", "type": "Normal",
                "message": message, "involvedObject": {
                    "kind": "Pod", "name": "web", "namespace": "default"}}  # fmt: skip

    async with _kubectl_watching(tmp_path, "events", "-n", "default") as (served, watching):

        async def create(body: dict) -> None:
            made = await served.api.ref.ask(ApiRequest("create", "events", namespace="default",
                                                       token="admin-token", body=body))  # fmt: skip
            assert made.code in (201, 409), made.body

        seen = b""
        with trio.fail_after(30):
            # The first one in kubectl's list or its watch, whichever is first ...
            while b"first-pull" not in seen:
                await create(event("web.1", "first-pull"))
                with trio.move_on_after(1):
                    seen += await watching.stdout.receive_some()
            # ... the second after the list was printed: through the watch.
            await create(event("web.2", "second-pull"))
            while b"second-pull" not in seen:
                seen += await watching.stdout.receive_some()
        row = next(line for line in seen.decode().split("\n") if "second-pull" in line)
        assert row.split()[0] == "ADDED" and "Pulled" in row.split()


def test_certificates_near_their_end_are_issued_again(tmp_path):
    from actorkube.pki import issue

    first = ClusterPki.load_or_create(tmp_path)
    issue(first.ca, "admin", organizations=("system:masters",), days=10).write(tmp_path, "admin")
    again = ClusterPki.load_or_create(tmp_path)
    assert again.admin != first.admin and again.ca == first.ca
    assert ClusterPki.load_or_create(tmp_path).admin == again.admin  # a year's: kept
