"""Which etcd lease a write of an expiring object (an Event) attaches its key to: one
lease shared by the writes of a minute, as kube-apiserver's etcd3 lease manager.

Rules of this file:

- Objects of a resource with a TTL (``ResourceType.ttl``: events, kube-apiserver's
  --event-ttl, an hour by default) are stored under an etcd lease, and each write
  (create or update) attaches the key to a lease again: an object expires ``ttl``
  seconds after its last write, not sooner, and at most ``reuse`` seconds later.
- A lease is granted for ``ttl + reuse`` seconds and handed to every write of the
  next ``reuse`` seconds (``reuse``: 60 s, or 5% of the TTL if that is less), up to
  ``max_objects`` writes (1,000): a lease per write would be a grant and a revoke
  through Raft for each, and a single lease for everything would expire keys too early
  or too late. Kubernetes' defaults (--lease-reuse-duration-seconds).
- This core decides only; the store grants (``granted``) and forgets a lease etcd no
  longer knows (``forget``). Times are the actor system's monotonic seconds.
"""

from __future__ import annotations

REUSE_SECONDS = 60
REUSE_FRACTION = 0.05
MAX_OBJECTS = 1000


def reuse_seconds(ttl: int, *, most: int = REUSE_SECONDS, fraction: float = REUSE_FRACTION) -> int:
    """How long a lease for ``ttl`` seconds is handed out (Kubernetes' rule: the smaller
    of ``most`` and ``fraction`` of the TTL)."""
    return min(most, int(fraction * ttl))


class LeaseReuse:
    """The last lease granted and how much of it is left to hand out (see the module
    rules)."""

    def __init__(self, *, most: int = REUSE_SECONDS, max_objects: int = MAX_OBJECTS) -> None:
        self.most = most
        self.max_objects = max_objects
        self.lease = 0  # the last lease granted (0: none)
        self.expires = 0.0  # when it expires, as granted
        self.attached = 0  # writes it was handed to
        self.grants = 0  # leases granted so far

    def grant_ttl(self, ttl: int) -> int:
        """The TTL to grant a new lease with, for objects that live ``ttl`` seconds."""
        return ttl + reuse_seconds(ttl, most=self.most)

    def pick(self, ttl: int, now: float) -> int:
        """The lease a write at ``now`` of an object that lives ``ttl`` seconds attaches
        to (counted as handed out), or 0: grant a new one (then ``granted``)."""
        if not self.lease or self.attached >= self.max_objects:
            return 0
        # It must outlive the object (valid) and not by more than the reuse period
        # (sufficient): past that, a new lease.
        if not now + ttl < self.expires <= now + ttl + reuse_seconds(ttl, most=self.most):
            return 0
        self.attached += 1
        return self.lease

    def granted(self, lease: int, granted_ttl: int, at: float) -> None:
        """``lease`` was granted for ``granted_ttl`` seconds, asked for at ``at`` (its
        expiry is counted from the request, as etcd counts it from the grant, which
        is later), and handed to one write."""
        self.lease, self.expires, self.attached = lease, at + granted_ttl, 1
        self.grants += 1

    def forget(self, lease: int) -> None:
        """etcd does not know ``lease`` (it expired early, or was revoked): do not hand
        it out again."""
        if lease == self.lease:
            self.lease = 0
