"""Pod IP allocation out of a pod CIDR inside 127.0.0.0/8 (host-local IPAM, in memory).

Rules of this file:

- Linux routes all of 127.0.0.0/8 to the loopback device, so a process can bind any
  address of it without setup: that is what makes these addresses usable as pod IPs
  on one machine without network namespaces.
- The CIDR's network and broadcast addresses are never handed out, nor 127.0.0.1 (the
  node's own loopback address, used by everything on the host).
- An address is handed out once until it is released. Allocation goes round the range
  from the address after the last one handed out (as host-local IPAM does), so a
  released address is reused as late as possible: a client that still holds an old
  pod's IP meets no new pod there for a while.
"""

from __future__ import annotations

import ipaddress

import attrs

LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
NODE_ADDRESS = ipaddress.IPv4Address("127.0.0.1")


class PodIPsExhausted(Exception):
    """Every address of the pod CIDR is in use."""


@attrs.define
class PodIPAllocator:
    """Hands out the host addresses of ``network`` (a subnet of 127.0.0.0/8)."""

    network: ipaddress.IPv4Network
    used: set[ipaddress.IPv4Address] = attrs.field(factory=set)
    # the offset (from the network address) of the last address handed out
    last: int = 0

    @classmethod
    def from_cidr(cls, cidr: str) -> PodIPAllocator:
        """The allocator of ``cidr``; ``ValueError`` if it is not a subnet of
        127.0.0.0/8 with room for at least one pod."""
        if not isinstance(cidr, str):
            raise ValueError(f"pod CIDR must be a string like '127.244.0.0/16', not {cidr!r}")
        try:
            network = ipaddress.IPv4Network(cidr, strict=True)
        except ValueError as e:
            raise ValueError(f"pod CIDR {cidr!r} is not an IPv4 CIDR: {e}") from None
        if not network.subnet_of(LOOPBACK):
            raise ValueError(
                f"pod CIDR {cidr} is not inside 127.0.0.0/8: only loopback addresses can "
                "be bound by processes without network setup"
            )
        allocator = cls(network)
        if allocator.capacity() == 0:
            raise ValueError(f"pod CIDR {cidr} has no address for a pod")
        return allocator

    def capacity(self) -> int:
        """How many pods the range holds."""
        count = self.network.num_addresses - (2 if self.network.prefixlen < 31 else 0)
        node = int(NODE_ADDRESS) - int(self.network.network_address)
        if 0 <= node < self.network.num_addresses and self._host_offset(node):
            count -= 1
        return count

    def _host_offset(self, offset: int) -> bool:
        if self.network.prefixlen < 31:
            return 0 < offset < self.network.num_addresses - 1
        return True

    def _usable(self, offset: int) -> bool:
        address = self.network.network_address + offset
        return self._host_offset(offset) and address != NODE_ADDRESS

    def allocate(self) -> str:
        """A free address; ``PodIPsExhausted`` if there is none."""
        size = self.network.num_addresses
        for step in range(1, size + 1):
            offset = (self.last + step) % size
            address = self.network.network_address + offset
            if self._usable(offset) and address not in self.used:
                self.used.add(address)
                self.last = offset
                return str(address)
        raise PodIPsExhausted(f"no IP address left in the pod CIDR {self.network}")

    def reserve(self, ip: str) -> None:
        """Marks ``ip`` as used (a sandbox found again after a restart); an address out
        of the range is ignored, as it was never ours to hand out."""
        address = ipaddress.IPv4Address(ip)
        if address in self.network:
            self.used.add(address)

    def release(self, ip: str) -> None:
        self.used.discard(ipaddress.IPv4Address(ip))
