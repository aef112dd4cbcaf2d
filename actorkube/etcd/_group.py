"""Starting an etcd group in an actor system: one call, in memory or on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actorkube.actor import ActorRef, ActorSystem
from actorkube.raft import Config, DiskStorage, GetStatus, MemoryStorage

from ._client import EtcdClient
from ._node import EtcdNode


class EtcdGroup:
    """The members of a group (``members``: node id -> reference) and their storages."""

    def __init__(self, system: ActorSystem, members: dict[int, ActorRef], storages: dict) -> None:
        self.system = system
        self.members = members
        self.storages = storages

    def client(self, name: str = "client", **options: Any) -> EtcdClient:
        return EtcdClient(self.system, self.members, name=name, **options)

    async def leader(self) -> int | None:
        """The member that says it leads (None if none does right now)."""
        for node, ref in self.members.items():
            status = await ref.ask(GetStatus())
            if status.role == "leader":
                return node
        return None

    async def stop(self) -> None:
        """Stop every member and close its storage."""
        for ref in self.members.values():
            await self.system.stop(ref)
        for storage in self.storages.values():
            storage.close()


def start_group(
    system: ActorSystem,
    size: int = 3,
    *,
    data_dir: str | Path | None = None,
    fsync: bool = True,
    name: str = "etcd",
    seed: int = 0,
    tick_interval: float = 0.1,
    **node_options: Any,
) -> EtcdGroup:
    """Spawn ``size`` members named ``{name}-1`` ... in ``system``. With ``data_dir``
    each member keeps its log and snapshots in ``data_dir/member-N`` (and a group started
    again on the same directory carries on where it stopped); without, in memory.
    ``node_options`` go to ``EtcdNode`` (``snapshot_every``, ``progress_interval``,
    store options such as ``min_lease_ttl``)."""
    ids = tuple(range(1, size + 1))
    members: dict[int, ActorRef] = {}
    storages: dict[int, Any] = {}
    for node in ids:
        if data_dir is None:
            storages[node] = MemoryStorage()
        else:
            storages[node] = DiskStorage.open(Path(data_dir) / f"member-{node}", fsync=fsync)
    for node in ids:
        # The same storage serves every restart of the member: it is its disk.
        members[node] = system.spawn(
            lambda node=node: EtcdNode(
                Config(node, ids, seed=seed),
                storages[node],
                members,
                tick_interval=tick_interval,
                **node_options,
            ),
            name=f"{name}-{node}",
        )
    return EtcdGroup(system, members, storages)
