"""What a forwarder forwards: frontends (where it listens), backends (where it
forwards to), and the entry that ties a frontend to its backends."""

from __future__ import annotations

import attrs


@attrs.frozen(order=True)
class Frontend:
    """Where the proxy listens: an address, a port, a protocol (``TCP`` or ``UDP``)."""

    ip: str
    port: int
    protocol: str

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}/{self.protocol}"


@attrs.frozen(order=True)
class Backend:
    """Where a connection is forwarded to: an endpoint's address and port."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


@attrs.frozen
class Entry:
    """One frontend's service port (``namespace/service:port-name``), its backends in a
    stable order, and its affinity timeout (None: no session affinity)."""

    name: str
    backends: tuple[Backend, ...]
    affinity: float | None = None
