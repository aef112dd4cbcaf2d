"""``actorkube etcd member ...`` and ``actorkube etcd snapshot ...``: what etcd's operators
do with etcdctl and etcdutl, for the etcd members of a distributed cluster.

- ``member list | add ADDRESS [--learner] | promote ID | remove ID`` and ``snapshot save
  FILE`` talk to the running members over the transport (``--endpoints``, by default
  the members in the cluster directory's ``cluster.json``), as etcdctl does.
- ``snapshot status FILE`` checks a file; ``snapshot restore FILE`` writes new member
  directories from it (``--initial-cluster``, by default the cluster's members), into
  ``DATA/etcd`` unless ``--output-dir`` says otherwise, as etcdutl does. The restored
  cluster keeps the snapshot's keys and revision. Restore into a cluster that is
  stopped; ``actorkube up --distributed`` then starts it on the restored data.
- A member added here is not one of ``up --distributed``'s processes: start it with the
  command ``member add`` prints (``--initial-cluster-state existing``).
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Callable
from pathlib import Path

from actorkube.actor import ActorSystem, Address
from actorkube.actor._tcp import format_endpoint
from actorkube.etcd import (
    EtcdClient,
    Member,
    restore_snapshot,
    save_snapshot,
    snapshot_status,
)

from ._cluster import ClusterFiles
from ._cluster import transport as cluster_transport


def add_subcommands(p: argparse.ArgumentParser,
                    members: Callable[[str], dict[int, tuple[str, int]]]) -> None:  # fmt: skip
    """``member`` and ``snapshot`` under the ``etcd`` parser ``p``; ``members`` parses
    ``ID=HOST:PORT,...``."""
    ops = p.add_subparsers(dest="etcd_command", metavar="{member,snapshot}")
    member = ops.add_parser("member", help="list, add, promote or remove members")
    member_ops = member.add_subparsers(dest="member_command", required=True)
    for name, text in (("list", "every member"), ("add", "add a member (then start it)"),
                       ("promote", "make a learner a voter"), ("remove", "remove a member")):
        op = member_ops.add_parser(name, help=text)
        op.add_argument("--endpoints", type=members, metavar="ID=HOST:PORT,...",
                        help="the members to ask (default: the cluster's)")  # fmt: skip
        if name == "add":
            op.add_argument("address", metavar="HOST:PORT",
                            help="the new member's transport address")  # fmt: skip
            op.add_argument("--learner", action="store_true", help="add it as a learner")
        elif name in ("promote", "remove"):
            op.add_argument("id", type=int)
    snapshot = ops.add_parser("snapshot", help="save, check or restore a backup")
    snapshot_ops = snapshot.add_subparsers(dest="snapshot_command", required=True)
    op = snapshot_ops.add_parser("save", help="save the leader's data to FILE")
    op.add_argument("file", type=Path)
    op.add_argument("--endpoints", type=members, metavar="ID=HOST:PORT,...")
    op = snapshot_ops.add_parser("status", help="check FILE and say what it holds")
    op.add_argument("file", type=Path)
    op = snapshot_ops.add_parser("restore", help="new member directories from FILE")
    op.add_argument("file", type=Path)
    op.add_argument("--initial-cluster", type=members, metavar="ID=HOST:PORT,...",
                    help="the restored cluster's members (default: the cluster's)")  # fmt: skip
    op.add_argument("--output-dir", type=Path,
                    help="where the member-N directories go (default: DATA/etcd)")  # fmt: skip
    op.add_argument("--id", type=int, help="restore this member only (default: every one)")


def _layout_members(files: ClusterFiles) -> dict[int, tuple[str, int]]:
    from .distributed import Layout
    from .process import _endpoint

    layout = Layout.load(files.data_dir / "cluster.json")
    return {node: _endpoint(address) for node, address in layout.etcd.items()}


MEMBER = "etcd"  # a member's actor name in its process (one member per process)


def member_address(endpoint: tuple[str, int]) -> str:
    """The actor address of the member in the process listening on ``endpoint``."""
    return str(Address(format_endpoint(*endpoint), MEMBER))


def _show(members: tuple[Member, ...]) -> str:
    rows = [("ID", "STATUS", "NAME", "PEER ADDRS", "IS LEARNER")]
    rows += [(str(m.id), "started" if m.started else "unstarted", m.name, m.address,
              str(m.is_learner).lower()) for m in members]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


async def run(files: ClusterFiles, args: argparse.Namespace) -> None:
    """One ``member`` or ``snapshot`` operation; prints its outcome."""
    if args.etcd_command == "snapshot" and args.snapshot_command == "status":
        info = snapshot_status(args.file)
        print(f"revision {info.revision}, {info.size} bytes, sha256 {info.sha256}")
        return
    if args.etcd_command == "snapshot" and args.snapshot_command == "restore":
        cluster = args.initial_cluster or _layout_members(files)
        info = restore_snapshot(args.file, args.output_dir or files.data_dir / "etcd",
                                initial_cluster={n: member_address(e)
                                                 for n, e in cluster.items()},
                                member=args.id)  # fmt: skip
        print(f"restored revision {info.revision} for members "
              f"{sorted(cluster) if args.id is None else [args.id]}")  # fmt: skip
        return
    endpoints = args.endpoints or _layout_members(files)
    async with ActorSystem(name=f"etcdctl-{uuid.uuid4().hex[:12]}") as system:
        transport = cluster_transport(system, files, args.peer_timeout)
        await transport.start()
        system.transport = transport
        client = EtcdClient(system, {n: system.ref(member_address(e))
                                     for n, e in endpoints.items()},
                            name="etcdctl", timeout=30)  # fmt: skip
        try:
            await _operate(client, endpoints, args)
        finally:
            await transport.aclose()


async def _operate(client: EtcdClient, endpoints: dict[int, tuple[str, int]],
                   args: argparse.Namespace) -> None:  # fmt: skip
    if args.etcd_command == "snapshot":
        info = await save_snapshot(client, args.file)
        print(f"saved revision {info.revision} to {args.file} ({info.size} bytes, "
              f"sha256 {info.sha256})")  # fmt: skip
        return
    command = args.member_command
    if command == "list":
        print(_show(await client.member_list()))
    elif command == "add":
        from .process import _endpoint

        added = await client.member_add(member_address(_endpoint(args.address)),
                                        learner=args.learner)  # fmt: skip
        cluster = {m.id: m.address for m in await client.member_list()}
        flags = ",".join(f"{n}={Address.parse(a).system}" for n, a in sorted(cluster.items()))
        print(f"added member {added}; start it with:\n  actorkube etcd --id {added} "
              f"--initial-cluster {flags} --initial-cluster-state existing")  # fmt: skip
    elif command == "promote":
        print(_show(await client.member_promote(args.id)))
    else:
        print(_show(await client.member_remove(args.id)))
