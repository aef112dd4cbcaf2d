"""Checkers for tests of distributed systems built with actorkube (and of actorkube):
linearizability of histories, and etcd's watch guarantees. See docs/etcd.md."""

from ._linearizability import UNKNOWN as UNKNOWN
from ._linearizability import CheckResult as CheckResult
from ._linearizability import KVModel as KVModel
from ._linearizability import Model as Model
from ._linearizability import Operation as Operation
from ._linearizability import SearchExhausted as SearchExhausted
from ._linearizability import check_linearizable as check_linearizable
from ._linearizability import linearizable as linearizable
from ._watch import check_atomic as check_atomic
from ._watch import check_bookmarkable as check_bookmarkable
from ._watch import check_ordered as check_ordered
from ._watch import check_reliable as check_reliable
from ._watch import check_resumed as check_resumed
from ._watch import check_unique as check_unique
from ._watch import check_watch as check_watch
