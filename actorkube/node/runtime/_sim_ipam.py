"""Pod IPs from a node's pod CIDR, handed out as CNI's host-local IPAM does.

Rules of this file:

- The first address after the network's is the gateway (the node's bridge) and is
  never given; neither is the network's own address nor its last (the broadcast
  address, which host-local also keeps back in IPv6 ranges). A ``/24`` gives
  ``.2`` to ``.254``.
- Allocation goes round the range from just after the last address given, so a
  released address is reused as late as possible (a stale connection to an old pod's
  IP does not reach a new pod at once).
- ``allocate`` raises ``PodIPsExhausted`` when every address is in use; ``release``
  of an address not in use is a no-op.
"""

from __future__ import annotations

import ipaddress


class PodIPsExhausted(Exception):
    """Every address of the pod CIDR is in use."""


class PodIPs:
    """The addresses of one pod CIDR (see the module's rules)."""

    __slots__ = ("_first", "_last_given", "_network", "_size", "_used")

    def __init__(self, cidr: str) -> None:
        network = ipaddress.ip_network(cidr, strict=True)
        if network.num_addresses < 4:
            raise ValueError(f"pod CIDR {cidr} has no room for pods (it needs 4 addresses)")
        self._network = network
        self._first = int(network.network_address) + 2
        self._size = network.num_addresses - 3
        self._last_given = self._size - 1  # so the first allocation is the first address
        self._used: set[int] = set()

    @property
    def cidr(self) -> str:
        return str(self._network)

    @property
    def in_use(self) -> int:
        return len(self._used)

    def allocate(self) -> str:
        if len(self._used) >= self._size:
            raise PodIPsExhausted(f"no IP addresses available in range {self._network}")
        index = self._last_given
        while True:
            index = (index + 1) % self._size
            if index not in self._used:
                break
        self._used.add(index)
        self._last_given = index
        return str(ipaddress.ip_address(self._first + index))

    def release(self, address: str) -> None:
        self._used.discard(int(ipaddress.ip_address(address)) - self._first)
