"""Raft-lite: a sans-IO Raft core (see docs/raft.md for its contract).

Everything public is re-exported here; the modules behind it are private.
"""

from ._core import Config as Config
from ._core import NotLeader as NotLeader
from ._core import ProposalDropped as ProposalDropped
from ._core import RaftError as RaftError
from ._core import RaftNode as RaftNode
from ._core import Ready as Ready
from ._core import Role as Role
from ._replica import GetStatus as GetStatus
from ._replica import Outcome as Outcome
from ._replica import Propose as Propose
from ._replica import ProposeChange as ProposeChange
from ._replica import Query as Query
from ._replica import RaftReplica as RaftReplica
from ._replica import SetPeer as SetPeer
from ._replica import StateMachine as StateMachine
from ._replica import Status as Status
from ._replica import TransferLeadership as TransferLeadership
from ._storage import CorruptLog as CorruptLog
from ._storage import InvalidWrite as InvalidWrite
from ._storage import MemoryStorage as MemoryStorage
from ._storage import Recovered as Recovered
from ._storage import Storage as Storage
from ._storage import StorageClosed as StorageClosed
from ._storage import StorageError as StorageError
from ._types import ConfChange as ConfChange
from ._types import ConfChangeType as ConfChangeType
from ._types import ConfState as ConfState
from ._types import Entry as Entry
from ._types import EntryType as EntryType
from ._types import HardState as HardState
from ._types import Message as Message
from ._types import MsgType as MsgType
from ._types import ReadState as ReadState
from ._types import Snapshot as Snapshot
from ._types import SnapshotMeta as SnapshotMeta
from ._wal import DiskStorage as DiskStorage
