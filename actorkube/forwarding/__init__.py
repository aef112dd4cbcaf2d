"""Userspace forwarding, as kube-proxy's userspace mode does it: a TCP listener whose
connections are spliced to the backend a ``Balancer`` picks (dial timeouts and retries,
resets, half-closes), and a UDP socket whose clients each get a session to theirs (with
an idle timeout). kube-proxy (``actorkube.node.proxy``) and the in-memory cloud's load
balancers (``actorkube.cloud``) both forward with it; it knows nothing of Kubernetes
objects, so a caller keeps its own listeners, balancers and ``ProxyStats``.
"""

from ._balancer import Balancer as Balancer
from ._listener import Listener as Listener
from ._stats import ProxyStats as ProxyStats
from ._tcp import accept as accept_tcp
from ._tcp import listen as listen_tcp
from ._types import Backend as Backend
from ._types import Entry as Entry
from ._types import Frontend as Frontend
from ._udp import bind as bind_udp
from ._udp import serve as serve_udp

__all__ = ["Backend", "Balancer", "Entry", "Frontend", "Listener", "ProxyStats", "accept_tcp",
           "bind_udp", "listen_tcp", "serve_udp"]  # fmt: skip
