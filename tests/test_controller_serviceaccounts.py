"""The service account controller against a real API server, in virtual time, as its
Kubernetes service account with its bootstrap RBAC role: every namespace gets a
``default`` ServiceAccount (so its pods are admitted), made again when deleted, and a
terminating namespace is not refilled."""

from __future__ import annotations

import trio
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.controllers import ServiceAccountController
from actorkube.etcd import start_group

TOKENS = ("admin-token,admin,1,system:masters\n"
          "sa-token,system:serviceaccount:kube-system:service-account-controller,2,"
          "system:serviceaccounts\n")  # fmt: skip


async def account(client: ApiClient, namespace: str) -> dict | None:
    try:
        return await client.get("serviceaccounts", "default", namespace=namespace)
    except ApiError as e:
        assert e.code == 404
        return None


async def test_every_namespace_gets_a_default_account_again_and_again(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file(TOKENS), seed=2)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token="admin-token")
        controller = ServiceAccountController(api.ref, token="sa-token")
        system.spawn(lambda: controller, name="service-account-controller")
        await client.create("namespaces", {"metadata": {"name": "team"}})
        first = await wait_for(lambda: account(client, "team"))
        pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        created = await client.create("pods", pod, namespace="team")
        assert created["spec"]["serviceAccountName"] == "default"  # admitted: it exists

        await client.delete("serviceaccounts", "default", namespace="team")
        again = await wait_for(lambda: account(client, "team"))
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            assert await wait_for(lambda name=name: account(client, name))
        assert controller.errors == 0

        # A namespace on its way out is not given one again.
        await client.create("namespaces", {"metadata": {"name": "going"}})
        await wait_for(lambda: account(client, "going"))
        ns = await client.get("namespaces", "going")
        await client.update("namespaces", {**ns, "status": {"phase": "Terminating"}},
                            subresource="status")  # fmt: skip
        await client.delete("serviceaccounts", "default", namespace="going")
        await trio.sleep(30)
        assert await account(client, "going") is None
