"""The EndpointSlices a Service should have, and the writes that get there from the
slices it has (pure: the EndpointSlice controller's reconciler).

Rules of this file:

- Endpoints are grouped by their port list (pods whose named target ports differ land
  in different slices); each slice holds at most ``MAX_ENDPOINTS_PER_SLICE`` endpoints
  of one group, addressType IPv4, and carries the Service's labels, the labels
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by``, and an
  ownerReference to the Service (controller, blockOwnerDeletion).
- Churn is kept low, as Kubernetes' reconciler does: an endpoint stays in the slice that
  has it (updated in place if its conditions or address changed); endpoints gone are
  removed from their slice; new endpoints fill slices that change anyway, then slices
  with room, then new slices. A slice left with no endpoints is deleted, and so is a
  slice of a port list no endpoint has now.
- A Service with no endpoints keeps exactly one slice with no endpoints and no ports
  (Kubernetes' placeholder), so that "no endpoints" is said, not left unsaid.
- New slices are named by the API server (``generateName: <service>-``); ``plan``
  returns whole objects to create, update (with the resourceVersion they replace) and
  delete, in the order to write them: creates, then updates, then deletes, so that no
  endpoint is missing in between.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._pod_endpoints import PodEndpoint, owned_labels

MAX_ENDPOINTS_PER_SLICE = 100  # Kubernetes' --max-endpoints-per-slice default
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
DISCOVERY = "discovery.k8s.io"

PortsKey = tuple[tuple[Any, ...], ...]


def endpoint_json(ep: PodEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "addresses": [ep.ip],
        "conditions": {"ready": ep.ready, "serving": ep.serving, "terminating": ep.terminating},
    }
    if ep.hostname:
        out["hostname"] = ep.hostname
    out["targetRef"] = ep.target_ref()
    if ep.node_name:
        out["nodeName"] = ep.node_name
    return out


def _ports_key(ports: Any) -> PortsKey:
    """A slice's port list as a comparable value (order does not matter)."""
    found = []
    for p in ports if isinstance(ports, list) else ():
        if isinstance(p, dict):
            found.append((str(p.get("name") or ""), p.get("port"), p.get("protocol", "TCP"),
                          p.get("appProtocol")))  # fmt: skip
    return tuple(sorted(found, key=repr))


def _endpoint_key(ep: Any) -> str:
    """Which pod (else which address) an endpoint of a slice stands for."""
    ep = ep if isinstance(ep, dict) else {}
    ref = ep.get("targetRef") if isinstance(ep.get("targetRef"), dict) else {}
    if ref.get("name"):
        return f"{ref.get('namespace', '')}/{ref['name']}"
    return ",".join(str(a) for a in ep.get("addresses") or ())


def slice_metadata(svc: Mapping[str, Any]) -> dict[str, Any]:
    """The labels and owner every slice of ``svc`` carries."""
    m = svc.get("metadata") or {}
    labels = {**owned_labels(svc), SERVICE_NAME_LABEL: m.get("name", ""),
              MANAGED_BY_LABEL: MANAGED_BY}  # fmt: skip
    owner = {"apiVersion": "v1", "kind": "Service", "name": m.get("name", ""),
             "uid": m.get("uid", ""), "controller": True, "blockOwnerDeletion": True}  # fmt: skip
    return {"labels": labels, "ownerReferences": [owner]}


@attrs.frozen
class SlicePlan:
    """The writes that make a Service's slices what they should be (see the rules)."""

    create: tuple[dict, ...] = ()
    update: tuple[dict, ...] = ()
    delete: tuple[dict, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete)


@attrs.define
class _Slice:
    """A slice being planned: an existing one (``original`` set) or a new one."""

    ports: list[dict]
    endpoints: list[dict]
    original: dict | None = None
    changed: bool = False


def plan(svc: Mapping[str, Any], endpoints: Sequence[PodEndpoint],
         existing: Sequence[dict]) -> SlicePlan:  # fmt: skip
    """From the slices ``existing`` (this Service's, managed by the controller) to the
    slices of ``endpoints`` (see the module rules)."""
    wanted: dict[PortsKey, dict[str, dict]] = {}
    ports_of: dict[PortsKey, list[dict]] = {}
    for ep in endpoints:
        ports = [p.to_json() for p in ep.ports]
        key = _ports_key(ports)
        ports_of.setdefault(key, ports)
        wanted.setdefault(key, {})[ep.key] = endpoint_json(ep)
    if not wanted:
        wanted, ports_of = {(): {}}, {(): []}  # the placeholder's group
    meta = slice_metadata(svc)
    kept: dict[PortsKey, list[_Slice]] = {key: [] for key in wanted}
    deleted: list[dict] = []
    for original in sorted(existing, key=lambda s: (s.get("metadata") or {}).get("name", "")):
        key = _ports_key(original.get("ports"))
        group = wanted.get(key)
        old = [e for e in original.get("endpoints") or () if isinstance(e, dict)]
        stays = [group.pop(_endpoint_key(e)) for e in old
                 if group is not None and _endpoint_key(e) in group]  # fmt: skip
        placeholder = key == () and not kept[key] if key in kept else False
        if not stays and not placeholder:
            deleted.append(original)
            continue
        current = {k: (original.get("metadata") or {}).get(k) for k in meta}
        changed = (stays != old or current != meta or original.get("addressType") != "IPv4"
                   or (original.get("ports") or []) != ports_of[key])  # fmt: skip
        kept[key].append(_Slice(ports_of[key], stays, original, changed))
    for key, group in wanted.items():
        _place(list(group.values()), kept[key], ports_of[key])
    if endpoints:  # an empty slice kept for a group that has endpoints elsewhere goes
        for key, slices in kept.items():
            deleted += [s.original for s in slices if not s.endpoints and s.original]
            kept[key] = [s for s in slices if s.endpoints]
    elif not kept[()]:
        kept[()] = [_Slice([], [], None, True)]
    creates, updates = [], []
    for slices in kept.values():
        for s in slices:
            if s.original is None:
                creates.append(_new_slice(svc, meta, s))
            elif s.changed:
                updates.append(_updated_slice(s.original, meta, s))
    return SlicePlan(tuple(creates), tuple(updates), tuple(deleted))


def _place(new: list[dict], slices: list[_Slice], ports: list[dict]) -> None:
    """Put endpoints no slice has yet: into slices that change anyway, then slices with
    room, then new slices."""
    for s in sorted(slices, key=lambda s: not s.changed):
        room = MAX_ENDPOINTS_PER_SLICE - len(s.endpoints)
        if not new or room <= 0:
            continue
        s.endpoints.extend(new[:room])
        del new[:room]
        s.changed = True
    while new:
        slices.append(_Slice(ports, new[:MAX_ENDPOINTS_PER_SLICE], None, True))
        del new[:MAX_ENDPOINTS_PER_SLICE]


def _new_slice(svc: Mapping[str, Any], meta: dict, s: _Slice) -> dict:
    m = svc.get("metadata") or {}
    name, namespace = m.get("name", ""), m.get("namespace", "")
    return {
        "apiVersion": f"{DISCOVERY}/v1",
        "kind": "EndpointSlice",
        "metadata": {"generateName": f"{name}-", "namespace": namespace, **meta},
        "addressType": "IPv4",
        "endpoints": s.endpoints,
        "ports": s.ports,
    }


def _updated_slice(original: dict, meta: dict, s: _Slice) -> dict:
    return {**original, "metadata": {**(original.get("metadata") or {}), **meta},
            "addressType": "IPv4", "endpoints": s.endpoints, "ports": s.ports}  # fmt: skip
