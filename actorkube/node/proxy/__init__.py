"""kube-proxy: Service cluster IPs and node ports forwarded to their endpoints, in
userspace (see docs/node.md).

Everything public is re-exported here; the modules behind it are private. The
forwarding itself (TCP splices, UDP sessions, balancers) is ``actorkube.forwarding``'s,
which the in-memory cloud's load balancers share.
"""

from actorkube.forwarding import Backend as Backend
from actorkube.forwarding import Balancer as Balancer
from actorkube.forwarding import Entry as Entry
from actorkube.forwarding import Frontend as Frontend
from actorkube.forwarding import ProxyStats as ProxyStats

from ._proxier import KubeProxy as KubeProxy
from ._table import TableDiff as TableDiff
from ._table import build as build
from ._table import diff as diff
from ._table import listening as listening
