"""Raft's values: log entries, hard state, configuration, snapshots, messages.

All frozen attrs classes registered with the actor codec, so that the replica actor can
send them as they are and the write-ahead log can store them with the same encoding.

Node ids are positive ints; 0 means "none" (no vote, no known leader).
"""

from __future__ import annotations

import enum

import attrs

from actorkube.actor import message

NONE = 0


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


@message(tag="raft.Entry")
class Entry:
    """One log entry. ``data`` is the application's command (or an encoded ConfChange
    for ``CONF_CHANGE``); an empty NORMAL entry is what a new leader appends."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@message(tag="raft.HardState")
class HardState:
    """What must be on disk before any message that depends on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@message(tag="raft.ConfState")
class ConfState:
    """The membership: voters decide elections and commits; learners only replicate."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


class ConfChangeType(enum.IntEnum):
    ADD_LEARNER = 0  # a new node that replicates but does not vote
    PROMOTE = 1  # a learner that has caught up becomes a voter
    REMOVE = 2  # a voter or a learner leaves


@message(tag="raft.ConfChange")
class ConfChange:
    """One membership change. ``context`` is the application's, opaque to Raft: it
    travels in the log with the change and is handed back when the change is applied
    (etcd carries the member's record, its name and address, there)."""

    type: ConfChangeType
    node: int
    context: bytes = b""


@message(tag="raft.SnapshotMeta")
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf: ConfState = attrs.Factory(ConfState)


@message(tag="raft.Snapshot")
class Snapshot:
    """The application's state as of ``meta.index`` (``data`` is opaque to Raft)."""

    meta: SnapshotMeta = attrs.Factory(SnapshotMeta)
    data: bytes = b""


class MsgType(enum.IntEnum):
    APP = 1  # leader -> follower: entries after (index, log_term), and the commit index
    APP_RESP = 2  # follower -> leader: matched up to index, or reject with a hint
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5  # "would you vote for me at term + 1?" (the sender's term is unchanged)
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7  # leader -> follower: commit index, and a read-index context
    HEARTBEAT_RESP = 8
    SNAP = 9  # leader -> follower that fell behind the leader's first log index
    TIMEOUT_NOW = 10  # leadership transfer: campaign now, skipping pre-vote
    READ_INDEX = 11  # follower -> leader: a linearizable read request (context)
    READ_INDEX_RESP = 12  # leader -> follower: the read index for that context


@message(tag="raft.Message")
class Message:
    """Every message between Raft nodes (the fields that matter depend on ``type``)."""

    type: MsgType
    to: int
    frm: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: Snapshot | None = None


@attrs.frozen
class ReadState:
    """A linearizable read may be served once the state machine applied ``index``."""

    index: int
    context: bytes
