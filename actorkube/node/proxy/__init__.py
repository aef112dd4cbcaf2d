"""kube-proxy: Service cluster IPs and node ports forwarded to their endpoints, in
userspace (see docs/node.md).

Everything public is re-exported here; the modules behind it are private.
"""

from ._balancer import Balancer as Balancer
from ._proxier import KubeProxy as KubeProxy
from ._stats import ProxyStats as ProxyStats
from ._table import Backend as Backend
from ._table import Entry as Entry
from ._table import Frontend as Frontend
from ._table import TableDiff as TableDiff
from ._table import build as build
from ._table import diff as diff
from ._table import listening as listening
