"""actorkube's etcd: an MVCC key-value store with etcd v3's semantics on Raft-lite
(see docs/etcd.md).

Everything public is re-exported here; the modules behind it are private.
"""

from ._client import EtcdClient as EtcdClient
from ._client import Unavailable as Unavailable
from ._concurrency import Held as Held
from ._concurrency import campaign as campaign
from ._concurrency import leader as leader
from ._concurrency import lock as lock
from ._concurrency import observe as observe
from ._concurrency import proclaim as proclaim
from ._concurrency import resign as resign
from ._concurrency import unlock as unlock
from ._group import EtcdGroup as EtcdGroup
from ._group import start_group as start_group
from ._mvcc import EtcdError as EtcdError
from ._mvcc import MVCCStore as MVCCStore
from ._node import CancelWatch as CancelWatch
from ._node import Command as Command
from ._node import EtcdNode as EtcdNode
from ._node import EtcdStateMachine as EtcdStateMachine
from ._node import LeaseKeepAliveResponse as LeaseKeepAliveResponse
from ._node import RequestProgress as RequestProgress
from ._node import Watch as Watch
from ._node import WatchResponse as WatchResponse
from ._types import Code as Code
from ._types import CompactionRequest as CompactionRequest
from ._types import CompactionResponse as CompactionResponse
from ._types import Compare as Compare
from ._types import CompareResult as CompareResult
from ._types import CompareTarget as CompareTarget
from ._types import DeleteRangeRequest as DeleteRangeRequest
from ._types import DeleteRangeResponse as DeleteRangeResponse
from ._types import Event as Event
from ._types import EventType as EventType
from ._types import Failure as Failure
from ._types import KeyValue as KeyValue
from ._types import LeaseGrantRequest as LeaseGrantRequest
from ._types import LeaseGrantResponse as LeaseGrantResponse
from ._types import LeaseLeasesRequest as LeaseLeasesRequest
from ._types import LeaseLeasesResponse as LeaseLeasesResponse
from ._types import LeaseRevokeRequest as LeaseRevokeRequest
from ._types import LeaseRevokeResponse as LeaseRevokeResponse
from ._types import LeaseTimeToLiveRequest as LeaseTimeToLiveRequest
from ._types import LeaseTimeToLiveResponse as LeaseTimeToLiveResponse
from ._types import PutRequest as PutRequest
from ._types import PutResponse as PutResponse
from ._types import RangeRequest as RangeRequest
from ._types import RangeResponse as RangeResponse
from ._types import ResponseHeader as ResponseHeader
from ._types import SortOrder as SortOrder
from ._types import SortTarget as SortTarget
from ._types import TxnRequest as TxnRequest
from ._types import TxnResponse as TxnResponse
from ._types import prefix_end as prefix_end
