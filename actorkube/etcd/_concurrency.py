"""Locks and elections on etcd, the way etcd's concurrency package builds them.

Rules of this file:

- A contender is a key ``{name}/{lease id in hex}``, created (only if absent) with the
  contender's lease, so it vanishes when the contender's lease does.
- The contenders are ordered by their key's create revision: the lowest holds the lock
  (leads the election). A waiter watches only the contender just before it, for its
  deletion: no thundering herd.
- The holder's create revision is its **fencing token**: it only grows from one holder
  to the next. A lock alone cannot stop a holder that paused past its lease from acting
  (Jepsen found exactly this with etcd's locks); the resource it protects must refuse
  writes carrying a token older than one it has seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs

from ._client import EtcdClient
from ._mvcc import EtcdError
from ._types import (
    Code,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    EventType,
    KeyValue,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    prefix_end,
)

NOT_LEADER = "election: not leader"
NO_LEADER = "election: no leader"


@attrs.frozen
class Held:
    """A held lock, or a won election: ``key`` is the contender's key, ``revision`` its
    create revision (the fencing token)."""

    name: bytes
    key: bytes
    revision: int
    lease: int


async def _contend(client: EtcdClient, name: bytes, lease: int, value: bytes) -> Held:
    """Join the contenders of ``name`` and wait until first among them."""
    prefix = name + b"/"
    key = prefix + b"%x" % lease
    absent = Compare(key, CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0)
    answer = await client.txn(
        [absent], [PutRequest(key, value, lease=lease)], [RangeRequest(key)]
    )
    if answer.succeeded:
        mine = answer.header.revision
    else:  # this lease contends already (a retry): carry on with its key
        mine = answer.responses[0].kvs[0].create_revision
    end = prefix_end(prefix)
    while True:
        # The contender just before us, if any: wait for it to go.
        before = await client.get(
            prefix,
            end,
            max_create_revision=mine - 1,
            sort_order=SortOrder.DESCEND,
            sort_target=SortTarget.CREATE,
            limit=1,
        )
        if not before.kvs:
            return Held(name, key, mine, lease)
        await _wait_deleted(client, before.kvs[0].key, before.header.revision + 1)


async def _wait_deleted(client: EtcdClient, key: bytes, since: int) -> None:
    try:
        async with client.watch(key, start_revision=since, no_put=True) as stream:
            async for response in stream:
                if any(e.type is EventType.DELETE for e in response.events):
                    return
    except EtcdError as exc:
        if exc.code != Code.OUT_OF_RANGE:
            raise
        # Compacted past ``since``: look again from now.


async def lock(client: EtcdClient, name: bytes, lease: int) -> Held:
    """Wait until the lock ``name`` is held with ``lease``; the ``Held.revision`` is the
    fencing token to hand to whatever the lock protects."""
    return await _contend(client, name, lease, b"")


async def unlock(client: EtcdClient, held: Held) -> None:
    await client.delete(held.key)


async def campaign(client: EtcdClient, name: bytes, lease: int, value: bytes) -> Held:
    """Wait until elected leader of ``name`` (announcing ``value``)."""
    return await _contend(client, name, lease, value)


async def proclaim(client: EtcdClient, held: Held, value: bytes) -> None:
    """Announce a new value, as leader; ``EtcdError`` if no longer the leader."""
    answer = await client.txn([_still(held)], [PutRequest(held.key, value, lease=held.lease)])
    if not answer.succeeded:
        raise EtcdError(Code.FAILED_PRECONDITION, NOT_LEADER)


async def resign(client: EtcdClient, held: Held) -> None:
    """Give up leadership (a no-op if it was lost already)."""
    await client.txn([_still(held)], [DeleteRangeRequest(held.key)])


def _still(held: Held) -> Compare:
    """The contender's key is still the one it created."""
    same = CompareResult.EQUAL
    return Compare(held.key, CompareTarget.CREATE, same, create_revision=held.revision)


async def leader(client: EtcdClient, name: bytes) -> KeyValue:
    """The current leader's key and value; ``EtcdError`` if there is none."""
    prefix = name + b"/"
    first = await client.get(
        prefix,
        prefix_end(prefix),
        sort_order=SortOrder.ASCEND,
        sort_target=SortTarget.CREATE,
        limit=1,
    )
    if not first.kvs:
        raise EtcdError(Code.NOT_FOUND, NO_LEADER)
    return first.kvs[0]


async def observe(client: EtcdClient, name: bytes) -> AsyncIterator[KeyValue]:
    """The leader of ``name`` and every change of it (a new leader, or a new value
    proclaimed), in order, for as long as the caller iterates."""
    prefix = name + b"/"
    last: KeyValue | None = None
    while True:
        try:
            current = await leader(client, name)
        except EtcdError:
            current = None
        if current is not None and current != last:
            last = current
            yield current
        revision = (await client.get(prefix, prefix_end(prefix), count_only=True)).header.revision
        async with client.watch(prefix, prefix_end(prefix), start_revision=revision + 1) as s:
            await s.receive()  # something changed among the contenders: look again
