"""The resource registry: what the API server knows about each kind of object.

Rules of this file:

- A resource is declared, not coded: a ``ResourceType`` entry names its group,
  version, kind, plural, scope, etcd key prefix, subresources and its strategy
  functions (validate, default, field labels). Adding a resource is adding an entry.
- Strategy functions are pure: ``default(obj) -> obj`` returns a new object;
  ``validate(obj, old) -> [FieldError]`` (``old`` None on create) never raises.
- Keys in etcd are Kubernetes' own: ``/registry/<prefix>/<namespace>/<name>`` for
  namespaced resources, ``/registry/<prefix>/<name>`` for cluster-scoped ones, with the
  historical prefixes (nodes under ``minions``, services under ``services/specs``).
- A resource is stored at one version (its ``version``) and may be served at others
  (``conversions``), as Kubernetes serves autoscaling/v1 HorizontalPodAutoscalers
  stored as autoscaling/v2: each other version converts to the storage version and
  back. ``at_version`` gives the resource as served at a version (a *view*: the same
  keys, strategy and cache, another apiVersion); the registry iterates storage types
  only, ``served()`` every view. A request's body is converted to the storage version
  as it comes in, so defaulting, admission, validation and storage only ever see that
  version; what goes out is converted to the version asked for.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

import attrs


def _no_errors(obj: dict, old: dict | None) -> list:
    return []


def _unchanged(obj: dict) -> dict:
    return obj


def _no_fields(obj: dict) -> dict[str, str]:
    return {}


@attrs.frozen
class Conversion:
    """A version a resource is served at besides its storage version: how an object of
    that version becomes one of the storage version (``to_storage``) and back
    (``from_storage``). Both are pure and total (what they cannot read they drop, as a
    Go conversion ignores what it cannot unmarshal), keep the metadata, and set the
    apiVersion and kind of the version they convert to."""

    version: str
    to_storage: Callable[[dict], dict]
    from_storage: Callable[[dict], dict]


@attrs.frozen
class ResourceType:
    """One kind of object the API server serves.

    ``plural`` is the resource name in URLs and RBAC rules; ``etcd_prefix`` the key
    prefix (the plural unless history says otherwise); ``subresources`` the ones it
    serves (``status``, ``scale``, ``binding``, ``eviction``, ``log``); ``generation``
    whether metadata.generation counts spec changes; ``graceful`` whether deletion waits
    for the object's grace period (pods); ``fields`` the field labels a field selector
    may use beyond metadata.name and metadata.namespace."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    etcd_prefix: str = ""
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    generation: bool = False
    graceful: bool = False
    validate: Callable[[dict, dict | None], list] = _no_errors
    default: Callable[[dict], dict] = _unchanged
    # What a new object gets once it has its name and uid, before it is validated
    # (Kubernetes' PrepareForCreate where it needs them: a Job's generated selector).
    prepare_create: Callable[[dict], dict] = _unchanged
    fields: Callable[[dict], dict[str, str]] = _no_fields
    # The name rule: a function returning Kubernetes' messages for a bad name.
    validate_name: Callable[[str], list[str]] | None = None
    # The verbs it serves (empty: all of them); a resource that is not ``stored`` is
    # answered by the server on each request (access reviews), never kept in etcd.
    verbs: tuple[str, ...] = ()
    stored: bool = True
    # Whether the API server keeps a watch cache of it; one that does not is listed and
    # watched from etcd (events, as Kubernetes' default watch cache sizes have it).
    watch_cached: bool = True
    # Whether its objects expire a while after their last write (events: the API
    # server's ``event_ttl``, kube-apiserver's --event-ttl), through etcd leases.
    ttl: bool = False
    # Whether a create keeps the status it was sent (Nodes: the kubelet registers its
    # node with its capacity); for every other kind the status is the controllers'.
    create_keeps_status: bool = False
    # The other versions it is served at, in Kubernetes' order of preference.
    conversions: tuple[Conversion, ...] = ()
    # On a view (``at_version``): the version objects are stored at ("" on the storage
    # type itself).
    storage_version: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def is_view(self) -> bool:
        """Whether this is the resource as served at a version it is not stored at."""
        return bool(self.storage_version)

    @property
    def served_versions(self) -> tuple[str, ...]:
        """Every version the resource is served at, the storage version first."""
        return (self.storage_version or self.version, *(c.version for c in self.conversions))

    def at_version(self, version: str) -> ResourceType | None:
        """The resource as served at ``version`` (itself at its storage version); None
        if it is not served there. Asked of the storage type."""
        if version == self.version:
            return self
        if any(c.version == version for c in self.conversions):
            return attrs.evolve(self, version=version, storage_version=self.version)
        return None

    def to_storage(self, obj: dict) -> dict:
        """An object of this version as the storage version has it."""
        return self._conversion().to_storage(obj) if self.storage_version else obj

    def from_storage(self, obj: dict) -> dict:
        """An object of the storage version as this version has it."""
        return self._conversion().from_storage(obj) if self.storage_version else obj

    def _conversion(self) -> Conversion:
        return next(c for c in self.conversions if c.version == self.version)

    def key(self, namespace: str, name: str) -> bytes:
        """The etcd key of one object."""
        return self.prefix(namespace) + name.encode()

    def prefix(self, namespace: str = "") -> bytes:
        """The etcd key prefix of every object (in ``namespace`` if given)."""
        return _prefix(self.etcd_prefix or self.plural, namespace if self.namespaced else "")

    def field_labels(self, obj: dict) -> dict[str, str]:
        """The fields a field selector sees: metadata.name, metadata.namespace (for
        namespaced resources) and the resource's own."""
        m = obj.get("metadata") or {}
        labels = {"metadata.name": m.get("name", "")}
        if self.namespaced:
            labels["metadata.namespace"] = m.get("namespace", "")
        labels.update(self.fields(obj))
        return labels


# Every write and every lookup makes keys of a few resources in a few namespaces.
@functools.lru_cache(maxsize=4096)
def _prefix(resource: str, namespace: str) -> bytes:
    base = "/registry/" + resource + "/"
    if namespace:
        base += namespace + "/"
    return base.encode()


class UnknownResource(LookupError):
    """The caller named a resource the registry does not have (a 404 for clients)."""


class Registry:
    """Every ``ResourceType`` the server serves, found by (group, plural), by
    (apiVersion, kind) or by a short name; iterated as the storage types (one per
    resource), ``served()`` as every version of each."""

    def __init__(self, types: Iterable[ResourceType] = ()) -> None:
        self._by_resource: dict[tuple[str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        self._by_alias: dict[str, ResourceType] = {}
        self._views: dict[tuple[str, str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_resource[(rt.group, rt.plural)] = rt
        for version in rt.served_versions:
            view = rt.at_version(version)
            self._views[(rt.group, rt.plural, version)] = view
            self._by_kind[(view.api_version, view.kind)] = view
        for alias in (rt.plural, rt.singular or rt.kind.lower(), *rt.short_names):
            self._by_alias.setdefault(alias, rt)

    def __iter__(self):
        return iter(self._by_resource.values())

    def served(self):
        """Every resource at every version it is served at (views after their storage
        type)."""
        return iter(self._views.values())

    def at_version(self, rt: ResourceType, version: str) -> ResourceType | None:
        """``rt.at_version(version)``, made once."""
        return self._views.get((rt.group, rt.plural, version))

    def resource(self, group: str, plural: str) -> ResourceType:
        try:
            return self._by_resource[(group, plural)]
        except KeyError:
            raise UnknownResource(f"the server could not find the requested resource "
                                  f"({group or 'core'}/{plural})") from None  # fmt: skip

    def kind(self, api_version: str, kind: str) -> ResourceType:
        try:
            return self._by_kind[(api_version, kind)]
        except KeyError:
            raise UnknownResource(f'no kind "{kind}" is registered for version '
                                  f'"{api_version}"') from None  # fmt: skip

    def alias(self, name: str) -> ResourceType:
        """By plural, singular or short name (``po``, ``deploy``), as kubectl resolves."""
        try:
            return self._by_alias[name.lower()]
        except KeyError:
            raise UnknownResource(f'the server doesn\'t have a resource type "{name}"') from None
