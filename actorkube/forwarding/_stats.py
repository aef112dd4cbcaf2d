"""What the proxy did, counted (the numbers kube-proxy's metrics would export)."""

from __future__ import annotations

from collections import Counter

import attrs


@attrs.define
class ProxyStats:
    """Counters only ever go up. TCP: connections accepted, rejected (no backend),
    dials to a backend that failed (each try), connections spliced to a backend, bytes
    copied (both ways), connections that ended in an error. UDP: datagrams from clients
    to forward (counted as they arrive with a backend to go to), replies from backends
    to send back (as they arrive), datagrams dropped (no backend, or a send failed),
    sessions opened. ``connections`` counts TCP connections and UDP sessions per service
    port name. ``syncs``: tables applied; ``bind_errors``: listeners that could not be
    opened; ``serve_errors``: listeners whose serving failed unexpectedly (closed, then
    opened again)."""

    syncs: int = 0
    bind_errors: int = 0
    serve_errors: int = 0
    tcp_accepted: int = 0
    tcp_rejected: int = 0
    tcp_dial_errors: int = 0
    tcp_spliced: int = 0
    tcp_bytes: int = 0
    tcp_errors: int = 0
    udp_forwarded: int = 0
    udp_replies: int = 0
    udp_dropped: int = 0
    udp_sessions: int = 0
    connections: Counter[str] = attrs.field(factory=Counter)
