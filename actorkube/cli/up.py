"""``actorkube up``: the control plane in one process, for kubectl and the official
clients.

What it starts: a 3-member etcd group on disk (``DATA/etcd``), the API server on it,
the scheduler (user system:kube-scheduler, leader election on its Lease; profiles
from ``--scheduler-config``, a KubeSchedulerConfiguration, if given), and the API
server's HTTPS front end on ``HOST:PORT`` with the cluster's certificates
(``DATA/pki``: a CA made on the first start and kept). It writes an admin kubeconfig
(``DATA/admin.kubeconfig``: the CA and the admin's client certificate, user ``admin`` in
``system:masters``) and prints how to use it; ``DATA/tokens.csv`` (kube-apiserver's
token file format) holds bearer tokens for clients without a certificate. Ctrl-C stops it; started
again on the same directory it carries on with the same data, CA and credentials.
Controllers and nodes come with later issues.
"""

from __future__ import annotations

import secrets
import signal
import socket
import sys
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from actorkube.actor import ActorSystem
from actorkube.apiserver._authn import new_signing_key, parse_token_file
from actorkube.apiserver._http import HttpFrontEnd, serve_http
from actorkube.apiserver._start import start_apiserver
from actorkube.etcd import start_group
from actorkube.pki import SERVING_HOSTS, ClusterPki, kubeconfig, write_private
from actorkube.scheduler import Scheduler, SchedulerConfig

SCHEDULER_USER = "system:kube-scheduler"


def _secret_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """The contents of ``path``, made (readable by its owner only, whole or not at all)
    if missing."""
    if not path.exists():
        write_private(path, make())
    return path.read_bytes()


def _admin_token_file() -> bytes:
    return f"{secrets.token_urlsafe(32)},admin,admin,system:masters\n".encode()


async def run(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 6443,
    *,
    scheduler_config: SchedulerConfig | None = None,
    say: Callable[[str], None] = print,
) -> None:
    """Run the control plane on ``data_dir`` until Ctrl-C or SIGTERM (see the module)."""
    # The directory holds etcd's log (Secrets among it), keys and tokens: its owner's only.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    everywhere = host in ("0.0.0.0", "::", "")
    hosts = SERVING_HOSTS if everywhere or host in SERVING_HOSTS else (*SERVING_HOSTS, host)
    pki = ClusterPki.load_or_create(data_dir / "pki", hosts)
    tokens = parse_token_file(_secret_file(data_dir / "tokens.csv", _admin_token_file).decode())
    # The in-process components' own credentials: fresh at every start, never on disk.
    scheduler_token = secrets.token_urlsafe(32)
    tokens.update(parse_token_file(f"{scheduler_token},{SCHEDULER_USER},{SCHEDULER_USER}\n"))
    signing_key = _secret_file(data_dir / "pki" / "service-account.key", new_signing_key)
    async with trio.open_nursery() as outer:
        # Ctrl-C and SIGTERM are read as messages, not raised wherever the code happens
        # to be: the shutdown is a cancellation of the whole tree, at any moment, even
        # while the start waits for etcd.
        await outer.start(_stop_on_signal, outer.cancel_scope)
        async with ActorSystem() as system, trio.open_nursery() as nursery:
            group = start_group(system, 3, data_dir=data_dir / "etcd")
            api = await start_apiserver(
                system,
                group.client(name="apiserver", timeout=30),
                tokens=tokens,
                service_account_key=signing_key,
                client_ca=pki.ca.cert,
            )
            await api.ready()
            system.spawn(lambda: Scheduler(api.ref, token=scheduler_token,
                                           identity=f"{socket.gethostname()}_{uuid.uuid4()}",
                                           config=scheduler_config),
                         name="scheduler")  # fmt: skip
            app = HttpFrontEnd(system, api.ref, api.registry)
            serve = partial(serve_http, app, host, port, tls=pki.serving_files,
                            client_ca=pki.ca_file)  # fmt: skip
            urls = await nursery.start(serve)
            # A server listening everywhere is reached on this machine at 127.0.0.1.
            url = urls[0].replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]")
            config = data_dir / "admin.kubeconfig"
            # The admin authenticates with a client certificate, as kubeadm's admin.conf
            # does; the token in tokens.csv is for clients without one (curl).
            write_private(config, kubeconfig(url, pki.ca.cert, client=pki.admin).encode())
            say(f"actorkube is up: {url}")
            say(f"  kubeconfig: {config}")
            say(f"  try: kubectl --kubeconfig {config} get namespaces")
            say(f"Ctrl-C stops it; the data stays in {data_dir}.")
            sys.stdout.flush()  # whoever reads our output (a pipe) learns at once


async def _stop_on_signal(scope: trio.CancelScope, task_status=trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            scope.cancel()
            return
