"""Starting etcd members in an actor system: a whole group in one call, or one member
that starts a cluster with others or joins a running one (for a member in its own
process).

A member's start-up arguments say who is in the cluster at first (etcd's
``--initial-cluster``: node id -> peer address, ``ak://system/actor``) and whether the
cluster is new or exists already (``--initial-cluster-state``). They matter only at the
member's first start: afterwards it recovers its membership from its storage.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import trio

from actorkube.actor import (
    ActorRef,
    ActorSystem,
    Address,
    AskTimeout,
    Undeliverable,
    decode_message,
    encode_message,
)
from actorkube.raft import Config, DiskStorage, GetStatus, MemoryStorage, Query

from ._client import EtcdClient, Unavailable
from ._members import ClusterMismatch, JoinInfo, JoinInfoRequest, MemberRemoved, initial_member
from ._node import EtcdNode, _no_refs, is_fresh


class EtcdGroup:
    """The members started here (``members``: node id -> reference) and their storages."""

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
    again on the same directory carries on where it stopped, with the membership it had
    then); without, in memory. ``node_options`` go to ``EtcdNode`` (``snapshot_every``,
    ``progress_interval``, store options such as ``min_lease_ttl``)."""
    ids = tuple(range(1, size + 1))
    members: dict[int, ActorRef] = {}
    storages = {node: _open_storage(data_dir, node, fsync) for node in ids}
    for node in ids:
        # The factory runs in the member's own task, once every member is spawned:
        # ``members`` is complete by then. The same storage serves every restart of the
        # member: it is its disk.
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


async def start_member(
    system: ActorSystem,
    node_id: int,
    name: str,
    initial_cluster: Mapping[int, str],
    data_dir: str | Path | None = None,
    *,
    storage: Any = None,
    state: Literal["new", "existing"] = "new",
    fsync: bool = True,
    seed: int = 0,
    tick_interval: float = 0.1,
    join_timeout: float = 30.0,
    member_name: str = "",
    **node_options: Any,
) -> EtcdGroup:
    """Start member ``node_id`` as the actor ``name`` of ``system``; returns a group of
    that one member (its client learns the others). ``member_name``: the name it
    publishes (``member list``'s NAME; default ``name``).

    ``initial_cluster`` maps every member's id to its peer address, this one's included
    (it must be this actor's address). ``state="new"``: the members of
    ``initial_cluster`` start a cluster together (each started with the same map).
    ``state="existing"``: the member joins a running cluster that added it already
    (``EtcdClient.member_add``, which gave its id); ``initial_cluster`` then lists the
    cluster's members now, this one included, as etcd's ``--initial-cluster`` does. At
    its first start the member asks the others for the cluster's membership and refuses
    to start (``ClusterMismatch``, ``MemberRemoved``) if it does not match; it waits up
    to ``join_timeout`` seconds for an answer (``Unavailable`` after).

    Storage: ``data_dir/member-N`` (as ``start_group``; a restored snapshot's layout),
    or ``storage`` (any Raft storage, e.g. a ``MemoryStorage`` kept across restarts), or
    memory. Either way, once the member has started, its membership comes from its
    storage and the arguments only say where peers are."""
    if state not in ("new", "existing"):
        raise ValueError(f"state must be 'new' or 'existing', not {state!r}")
    address = str(Address(system.name, name))
    if initial_cluster.get(node_id) != address:
        raise ValueError(
            f"initial_cluster[{node_id}] must be this member's address {address!r}, "
            f"not {initial_cluster.get(node_id)!r}"
        )
    opened = storage is None
    if opened:
        storage = _open_storage(data_dir, node_id, fsync)
    peers = {node: system.ref(a) for node, a in initial_cluster.items()}
    initial = [initial_member(node, a) for node, a in sorted(initial_cluster.items())]
    if state == "existing" and is_fresh(storage.recover()):
        try:
            info = await _join_info(system, node_id, initial_cluster, join_timeout)
        except BaseException:
            if opened:
                storage.close()
            raise
        initial = list(info.initial)
    voters = tuple(m.id for m in initial if not m.is_learner)
    ref = system.spawn(
        lambda: EtcdNode(
            Config(node_id, voters, seed=seed),
            storage,
            peers,
            initial_members=initial,
            name=member_name or name,
            tick_interval=tick_interval,
            **node_options,
        ),
        name=name,
    )
    return EtcdGroup(system, {node_id: ref}, {node_id: storage})


def _open_storage(data_dir: str | Path | None, node: int, fsync: bool) -> Any:
    if data_dir is None:
        return MemoryStorage()
    return DiskStorage.open(Path(data_dir) / f"member-{node}", fsync=fsync)


async def _join_info(
    system: ActorSystem, node_id: int, initial_cluster: Mapping[int, str], timeout: float
) -> JoinInfo:
    """Ask the other members, in turn, for the cluster's membership (a linearizable read,
    so that a member added just before is in it), and check it against
    ``initial_cluster`` as etcd checks its ``--initial-cluster`` against its peers'."""
    others = [a for node, a in sorted(initial_cluster.items()) if node != node_id]
    if not others:
        raise ClusterMismatch(ClusterMismatch.CODE, ClusterMismatch.TEXT)
    query = Query(encode_message(JoinInfoRequest()))
    with trio.move_on_after(timeout):
        for attempt in itertools.count():
            ref = system.ref(others[attempt % len(others)])
            try:
                outcome = await ref.ask(query, timeout=1.0)
            except (AskTimeout, Undeliverable):
                outcome = None
            if outcome is not None and outcome.ok:
                info = decode_message(outcome.result, _no_refs)
                _check_join(info, node_id, initial_cluster)
                return info
            await trio.sleep(0.1)  # no leader yet, or that member is down: the next one
    raise Unavailable(f"no member of the cluster answered within {timeout} s")


def _check_join(info: JoinInfo, node_id: int, initial_cluster: Mapping[int, str]) -> None:
    if node_id in info.removed:
        raise MemberRemoved(MemberRemoved.CODE, MemberRemoved.TEXT)
    ours = dict(initial_cluster)
    theirs = {m.id: m.address for m in info.members}
    if ours != theirs:
        raise ClusterMismatch(
            ClusterMismatch.CODE,
            f"{ClusterMismatch.TEXT} (initial_cluster {ours}, the cluster's members {theirs})",
        )
