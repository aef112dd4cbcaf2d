"""The root CA publisher in a test cluster without a controller manager: pods get the
service-account token volume, whose ``kube-root-ca.crt`` ConfigMap it publishes."""

from __future__ import annotations

import trio

from actorkube.actor import ActorSystem
from actorkube.controllers import RootCACertPublisher

TEST_CA = b"-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"


async def publish_root_ca(system: ActorSystem, api, ca: bytes = TEST_CA,
                          token: str = "admin-token") -> RootCACertPublisher:  # fmt: skip
    """Start the publisher (as ``token``) and return once its informer has ``default``'s
    ConfigMap (so the API server has it)."""
    publisher = RootCACertPublisher(api.ref, token=token, root_ca=ca)
    system.spawn(lambda: publisher, name=f"root-ca-publisher-{system.unique()}")
    await publisher.synced.wait()
    seen = trio.Event()

    def added(configmap: dict) -> None:
        m = configmap["metadata"]
        if (m.get("namespace"), m.get("name")) == ("default", "kube-root-ca.crt"):
            seen.set()

    publisher.configmaps.add_handler(added)  # told of what it has already, too
    await seen.wait()
    return publisher
