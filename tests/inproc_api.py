"""An API server in process (a 3-member etcd group under it), asked directly with
``ApiRequest``s as the admin: for tests of what the server answers."""

from __future__ import annotations

from actorkube.actor import ActorSystem
from actorkube.apiserver import ApiRequest, parse_token_file, start_apiserver
from actorkube.etcd import start_group

TOKENS = "admin-token,admin,1,system:masters\n"


async def start_api(system: ActorSystem, tokens: str = TOKENS, seed: int = 1, **options):
    """The server's handle, once it serves (``options``: start_apiserver's)."""
    group = start_group(system, 3)
    api = await start_apiserver(system, group.client(name="apiserver", timeout=30),
                                tokens=parse_token_file(tokens), seed=seed,
                                **options)  # fmt: skip
    await api.ready()
    return api


async def call(api, verb: str, resource: str, **fields):
    """The server's ``ApiResponse`` to one request, made as the admin."""
    return await api.ref.ask(ApiRequest(verb, resource, token="admin-token", **fields),
                             timeout=60)  # fmt: skip
