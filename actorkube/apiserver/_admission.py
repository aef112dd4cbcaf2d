"""Admission: the checks and changes a write goes through after authorization and
before validation and storage, as kube-apiserver's default admission plugins make them.

Rules of this file:

- A plugin is an object with ``async admit(request) -> obj`` (mutating: may return a
  changed copy of the object) and/or ``async check(request)`` (validating: raises
  ApiError). The chain runs every mutation first, then every check, in order.
- Plugins read the cluster through ``Lookup`` (a namespace, a service account), which
  serves from the watch cache and falls back to storage on a miss, as Kubernetes'
  plugins fall back from their informers to a live read: an object created a moment
  ago is never refused for being missing from a cache that has not caught up.
- Plugins here: NamespaceLifecycle, ServiceAccount (defaulting, existence and the
  token volume), DefaultTolerationSeconds.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import attrs

from . import _errors as errors
from ._authn import EXTENDED_TOKEN_SECONDS
from ._meta import generate_name
from ._registry import ResourceType

# Namespaces Kubernetes never lets anyone delete.
TOKEN_VOLUME_PREFIX = "kube-api-access-"
TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
# Kubernetes' token lifetime for these volumes: an hour and 7 s, the odd 7 marking a
# token the API server extends to a year for clients that do not reread it.
TOKEN_EXPIRATION_SECONDS = EXTENDED_TOKEN_SECONDS
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
NAMESPACE_TERMINATING = "NamespaceTerminating"  # the cause of a refusal to fill one
IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public"})
DEFAULT_TOLERATION_SECONDS = 300
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"

Lookup = Callable[[str, str, str], Awaitable[dict | None]]  # (resource, namespace, name)


@attrs.frozen
class AdmissionRequest:
    """A write as admission sees it: ``operation`` CREATE, UPDATE or DELETE; ``obj`` the
    new object (None for DELETE), ``old`` the stored one (None for CREATE)."""

    operation: str
    rt: ResourceType
    namespace: str
    name: str
    obj: dict | None
    old: dict | None
    subresource: str = ""

    def with_obj(self, obj: dict | None) -> AdmissionRequest:
        """This request with ``obj`` (as ``attrs.evolve`` would make it, cheaper:
        admission makes one for each plugin that changed the object)."""
        if obj is self.obj:
            return self
        return AdmissionRequest(self.operation, self.rt, self.namespace, self.name, obj,
                                self.old, self.subresource)  # fmt: skip


class NamespaceLifecycle:
    """No new objects in a namespace that does not exist or is being terminated; the
    immortal namespaces cannot be deleted."""

    name = "NamespaceLifecycle"

    def __init__(self, lookup: Lookup) -> None:
        self.lookup = lookup

    async def check(self, req: AdmissionRequest) -> None:
        rt = req.rt
        if rt.plural == "namespaces" and not rt.group and req.operation == "DELETE":
            if req.name in IMMORTAL_NAMESPACES:
                raise errors.namespace_forbidden(
                    "namespaces", "", req.name, "this namespace may not be deleted"
                )
            return
        if not rt.namespaced or req.operation != "CREATE" or req.subresource:
            return
        namespace = await self.lookup("namespaces", "", req.namespace)
        if namespace is None:
            raise errors.not_found("namespaces", "", req.namespace)
        terminating = (namespace.get("metadata") or {}).get("deletionTimestamp") or (
            (namespace.get("status") or {}).get("phase") == "Terminating"
        )
        if terminating:
            why = (
                f"unable to create new content in namespace {req.namespace} because it is "
                "being terminated"
            )
            error = errors.namespace_forbidden(rt.plural, rt.group, req.name, why)
            # The cause Kubernetes adds, by which controllers tell this refusal from
            # RBAC's.
            error.status.setdefault("details", {})["causes"] = [{
                "reason": NAMESPACE_TERMINATING, "field": "metadata.namespace",
                "message": f"namespace {req.namespace} is being terminated"}]  # fmt: skip
            raise error


class ServiceAccountAdmission:
    """Pods run as a service account: ``default`` unless they name one, and it must
    exist in the pod's namespace. Unless the pod or else its account says
    ``automountServiceAccountToken: false``, the pod gets the ``kube-api-access-<5>``
    projected volume (a bound token of 3607 s, the cluster CA from ``kube-root-ca.crt``,
    the namespace), mounted read-only at ``TOKEN_MOUNT_PATH`` in every container and
    init container that mounts nothing there (a volume of that prefix the pod has
    already is used instead of a new one)."""

    name = "ServiceAccount"

    def __init__(self, lookup: Lookup, rng: random.Random | None = None) -> None:
        self.lookup = lookup
        self.rng = rng or random.Random()

    async def admit(self, req: AdmissionRequest) -> dict | None:
        if not _is_pod_create(req):
            return req.obj
        spec = dict(req.obj.get("spec") or {})
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = account
        spec["serviceAccount"] = account  # the deprecated alias Kubernetes keeps in step
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            found = await self.lookup("serviceaccounts", req.namespace, account)
            automount = (found or {}).get("automountServiceAccountToken")
        if automount is not False:
            _mount_token(spec, self.rng)
        return {**req.obj, "spec": spec}

    async def check(self, req: AdmissionRequest) -> None:
        if not _is_pod_create(req):
            return
        account = req.obj["spec"]["serviceAccountName"]
        if await self.lookup("serviceaccounts", req.namespace, account) is None:
            why = (
                f"error looking up service account {req.namespace}/{account}: "
                f'serviceaccount "{account}" not found'
            )
            raise errors.namespace_forbidden("pods", "", req.name, why)


def token_volume(name: str) -> dict[str, Any]:
    """The projected volume Kubernetes gives a pod for its service account."""
    return {
        "name": name,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS,
                                         "path": "token"}},
                {"configMap": {"name": ROOT_CA_CONFIGMAP,
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 0o644,
        },
    }  # fmt: skip


def _mount_token(spec: dict[str, Any], rng: random.Random) -> None:
    """``spec`` (a copy the caller owns) with the token volume and its mounts."""
    volumes = [v for v in spec.get("volumes") or () if isinstance(v, dict)]
    name = next((str(v.get("name")) for v in volumes
                 if str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX)), None)  # fmt: skip
    mount = {"name": name or generate_name(TOKEN_VOLUME_PREFIX, rng), "readOnly": True,
             "mountPath": TOKEN_MOUNT_PATH}  # fmt: skip
    needed = False
    for field in ("initContainers", "containers"):
        containers = spec.get(field)
        if not isinstance(containers, list):
            continue
        changed = []
        for c in containers:
            mounts = c.get("volumeMounts") if isinstance(c, dict) else None
            mounts = mounts if isinstance(mounts, list) else []
            if isinstance(c, dict) and not any(
                isinstance(m, dict) and m.get("mountPath") == TOKEN_MOUNT_PATH for m in mounts
            ):
                c = {**c, "volumeMounts": [*mounts, dict(mount)]}
                needed = True
            changed.append(c)
        spec[field] = changed
    if needed and name is None:
        spec["volumes"] = [*(spec.get("volumes") or ()), token_volume(mount["name"])]


class DefaultTolerationSeconds:
    """Pods tolerate a not-ready or unreachable node for 300 s unless they say otherwise:
    taint-based eviction then removes them from a lost node after five minutes."""

    name = "DefaultTolerationSeconds"

    def __init__(self, seconds: int = DEFAULT_TOLERATION_SECONDS) -> None:
        self.seconds = seconds

    async def admit(self, req: AdmissionRequest) -> dict | None:
        if not _is_pod_create(req):
            return req.obj
        spec = dict(req.obj.get("spec") or {})
        tolerations = list(spec.get("tolerations") or [])
        for key in (NOT_READY, UNREACHABLE):
            for toleration in tolerations:
                if _tolerates_no_execute(toleration, key):
                    break
            else:
                tolerations.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": self.seconds})  # fmt: skip
        spec["tolerations"] = tolerations
        return {**req.obj, "spec": spec}


def _tolerates_no_execute(toleration: Any, key: str) -> bool:
    if not isinstance(toleration, dict):
        return False
    effect = toleration.get("effect", "")
    if effect not in ("", "NoExecute"):
        return False
    if toleration.get("operator") == "Exists" and not toleration.get("key"):
        return True  # tolerates every taint
    return toleration.get("key") == key


def _is_pod_create(req: AdmissionRequest) -> bool:
    return (
        req.operation == "CREATE"
        and req.rt.plural == "pods"
        and not req.rt.group
        and not req.subresource
        and isinstance(req.obj, dict)
    )


class AdmissionChain:
    """Every plugin's ``admit`` in order, then every plugin's ``check``."""

    def __init__(self, plugins: list) -> None:
        self.plugins = plugins

    async def run(self, req: AdmissionRequest) -> dict | None:
        for plugin in self.plugins:
            admit = getattr(plugin, "admit", None)
            if admit is not None:
                req = req.with_obj(await admit(req))
        for plugin in self.plugins:
            check = getattr(plugin, "check", None)
            if check is not None:
                await check(req)
        return req.obj


# The plugins of ``default_chain``, by their kube-apiserver names, in order.
ADMISSION_PLUGINS = ("NamespaceLifecycle", "ServiceAccount", "DefaultTolerationSeconds")


def default_chain(lookup: Lookup, *, disabled: Iterable[str] = (),
                  rng: random.Random | None = None) -> AdmissionChain:  # fmt: skip
    """The plugins of this file, in kube-apiserver's order, but those named in
    ``disabled`` (--disable-admission-plugins; ``ValueError`` for a name not here).
    ``rng`` names the token volumes (seeded, for reproducible pods)."""
    plugins = [NamespaceLifecycle(lookup), ServiceAccountAdmission(lookup, rng),
               DefaultTolerationSeconds()]  # fmt: skip
    off = set(disabled)
    unknown = off - set(ADMISSION_PLUGINS)
    if unknown:
        raise ValueError(f"unknown admission plugins: {', '.join(sorted(unknown))} (known: "
                         f"{', '.join(ADMISSION_PLUGINS)})")  # fmt: skip
    return AdmissionChain([p for p in plugins if p.name not in off])
