"""The root CA publisher against a real API server, in virtual time, as its Kubernetes
service account with its bootstrap RBAC role: every namespace gets ``kube-root-ca.crt``
with the cluster's CA, put back when changed or deleted, never made in a terminating
namespace."""

from __future__ import annotations

import trio
from virtual_time import wait_for

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiError, parse_token_file, start_apiserver
from actorkube.client import ApiClient
from actorkube.controllers import RootCACertPublisher
from actorkube.controllers.rootca import DESCRIPTION, DESCRIPTION_ANNOTATION, published
from actorkube.etcd import start_group

TOKENS = ("admin-token,admin,1,system:masters\n"
          "ca-token,system:serviceaccount:kube-system:root-ca-cert-publisher,2,"
          "system:serviceaccounts\n")  # fmt: skip
CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


async def configmap(client: ApiClient, namespace: str) -> dict | None:
    try:
        return await client.get("configmaps", "kube-root-ca.crt", namespace=namespace)
    except ApiError as e:
        assert e.code == 404
        return None


def test_what_is_written_and_when():
    made = published(None, CA)
    assert made["data"] == {"ca.crt": CA}
    assert made["metadata"]["annotations"] == {DESCRIPTION_ANNOTATION: DESCRIPTION}
    assert published(made, CA) is None
    edited = {**made, "data": {"ca.crt": CA, "extra": "x"},
              "metadata": {**made["metadata"], "annotations": {"mine": "1"}}}  # fmt: skip
    fixed = published(edited, CA)
    assert fixed["data"] == {"ca.crt": CA}  # the data is replaced, not merged
    assert fixed["metadata"]["annotations"] == {"mine": "1", DESCRIPTION_ANNOTATION: DESCRIPTION}
    # A description of someone else's is kept.
    theirs = {**made, "metadata": {"annotations": {DESCRIPTION_ANNOTATION: "ours"}}}
    assert published(theirs, CA) is None


async def test_every_namespace_gets_the_ca_and_keeps_it(autojump_clock):
    async with ActorSystem() as system:
        group = start_group(system, 3)
        api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                    tokens=parse_token_file(TOKENS), seed=2)  # fmt: skip
        await api.ready()
        client = ApiClient(system, api.ref, token="admin-token")
        controller = RootCACertPublisher(api.ref, token="ca-token", root_ca=CA.encode())
        system.spawn(lambda: controller, name="root-ca-publisher")
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            found = await wait_for(lambda name=name: configmap(client, name))
            assert found["data"] == {"ca.crt": CA}
        await client.create("namespaces", {"metadata": {"name": "team"}})
        first = await wait_for(lambda: configmap(client, "team"))
        assert first["metadata"]["annotations"][DESCRIPTION_ANNOTATION] == DESCRIPTION

        await client.update("configmaps", {**first, "data": {"ca.crt": "forged"}},
                            namespace="team")  # fmt: skip

        async def restored() -> dict | None:
            found = await configmap(client, "team")
            return found if found and found["data"] == {"ca.crt": CA} else None

        await wait_for(restored)
        await client.delete("configmaps", "kube-root-ca.crt", namespace="team")
        again = await wait_for(lambda: configmap(client, "team"))
        assert again["metadata"]["uid"] != first["metadata"]["uid"]
        assert controller.errors == 0

        # A namespace on its way out is not given one again.
        await client.create("namespaces", {"metadata": {"name": "going"}})
        await wait_for(lambda: configmap(client, "going"))
        ns = await client.get("namespaces", "going")
        await client.update("namespaces", {**ns, "status": {"phase": "Terminating"}},
                            subresource="status")  # fmt: skip
        await client.delete("configmaps", "kube-root-ca.crt", namespace="going")
        await trio.sleep(30)
        assert await configmap(client, "going") is None
