"""Compacting etcd's history, as kube-apiserver does (its --etcd-compaction-interval,
5 minutes by default).

Rules of this file (k8s.io/apiserver storage/etcd3/compact.go):

- Every ``interval`` seconds each API server runs one round: a transaction that, if
  the ``compact_rev_key`` key still has the version this server saw last, writes the
  current revision into it; otherwise it reads the key. Only the server whose
  transaction succeeded compacts, and it compacts to the revision it recorded one
  round earlier, so every watcher always has at least one interval of history, and
  several API servers on one etcd compact once per interval, not once each.
- A failed round (etcd unavailable) is logged and retried at the next one; the
  compactor never stops the API server.
"""

from __future__ import annotations

import logging

import trio

from actorkube.actor import Actor, handler, message
from actorkube.etcd import (
    Compare,
    CompareResult,
    CompareTarget,
    EtcdClient,
    EtcdError,
    PutRequest,
    RangeRequest,
)

log = logging.getLogger("actorkube.apiserver")

COMPACT_REV_KEY = b"compact_rev_key"
DEFAULT_INTERVAL = 300.0


async def compact_round(etcd: EtcdClient, seen_version: int, last_revision: int) -> tuple[int, int]:
    """One round (see the module rules): the key's version and the revision to compact
    to at the next round."""
    same = Compare(COMPACT_REV_KEY, CompareTarget.VERSION, CompareResult.EQUAL,
                   version=seen_version)  # fmt: skip
    # The revision written is the one the transaction itself creates: what this round
    # leaves for the next to compact to.
    answer = await etcd.txn([same], [PutRequest(COMPACT_REV_KEY, str(last_revision).encode())],
                            [RangeRequest(COMPACT_REV_KEY)])  # fmt: skip
    revision = answer.header.revision
    if not answer.succeeded:
        kvs = answer.responses[0].kvs if answer.responses else ()
        return (kvs[0].version if kvs else 0), revision
    if last_revision:
        try:
            await etcd.compact(last_revision)
        except EtcdError as e:  # this round's compaction is lost; the next one goes on
            log.warning("etcd compaction to %d failed: %s", last_revision, e)
    return seen_version + 1, revision


@message(tag="apiserver._Compact")
class _Compact:
    pass


class Compactor(Actor):
    """Runs ``compact_round`` every ``interval`` seconds (see the module rules)."""

    def __init__(self, etcd: EtcdClient, interval: float = DEFAULT_INTERVAL) -> None:
        self.etcd = etcd
        self.interval = interval
        self.version = 0
        self.revision = 0
        self.compacted_to = 0  # the last revision this server compacted to

    async def started(self) -> None:
        self.ref.tell(_Compact())

    @handler
    async def on_compact(self, msg: _Compact) -> None:
        while True:
            await trio.sleep(self.interval)
            previous = self.revision
            try:
                version, self.revision = await compact_round(self.etcd, self.version, previous)
            except EtcdError as e:
                log.warning("etcd compaction failed: %s", e)
                continue
            if version == self.version + 1 and previous:
                self.compacted_to = previous
            self.version = version
