"""A cluster served over HTTP(S), for the tests that talk to it as outside clients do:
a 3-member etcd group, the API server with a static token file (an admin and alice, who
has no role), and its front end on a free loopback port."""

from __future__ import annotations

from pathlib import Path

import attrs
import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiServerHandle
from actorkube.apiserver._authn import parse_token_file
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group
from actorkube.pki import ClusterPki, KeyPair, kubeconfig

TOKENS = "admin-token,admin,1,system:masters\nalice-token,alice,2\n"


@attrs.frozen
class Served:
    api: ApiServerHandle
    url: str
    pki: ClusterPki | None

    def kubeconfig(self, path: Path, user: str = "admin", token: str = "admin-token",
                   client: KeyPair | None = None) -> Path:  # fmt: skip
        """A kubeconfig for ``user`` at ``path`` (HTTPS only: it carries the CA), with
        its bearer ``token`` or a ``client`` certificate."""
        text = kubeconfig(self.url, self.pki.ca.cert, user=user, token=token, client=client)
        path.write_text(text)
        return path


async def serve_cluster(
    system: ActorSystem,
    nursery: trio.Nursery,
    *,
    pki_dir: Path | None = None,
    anonymous: bool = False,
) -> Served:
    """Start it; HTTPS with certificates under ``pki_dir``, else plain HTTP."""
    pki = ClusterPki.load_or_create(pki_dir) if pki_dir is not None else None
    group = start_group(system, 3, tick_interval=0.05)
    api = await start_apiserver(
        system,
        group.client(name="apiserver", timeout=30),
        tokens=parse_token_file(TOKENS),
        anonymous=anonymous,
        client_ca=pki.ca.cert if pki is not None else None,
        seed=1,
    )
    await api.ready()
    return Served(api, await serve_front_end(system, nursery, api, pki), pki)


async def serve_front_end(system: ActorSystem, nursery: trio.Nursery, api: ApiServerHandle,
                          pki: ClusterPki | None) -> str:  # fmt: skip
    """``api``'s HTTP front end on a free loopback port, in ``nursery``: HTTPS with
    ``pki``'s serving certificate and client CA, else plain HTTP. Its URL."""
    app = HttpFrontEnd(system, api.ref, api.registry)
    tls = pki.serving_files if pki is not None else None
    ca = pki.ca_file if pki is not None else None

    async def serve(task_status=trio.TASK_STATUS_IGNORED) -> None:
        await serve_http(app, "127.0.0.1", 0, tls=tls, client_ca=ca, task_status=task_status)

    return (await nursery.start(serve))[0]
