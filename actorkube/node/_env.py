"""A container's environment, as the kubelet makes it (makeEnvironmentVariables).

Rules of this file:

- Order, later wins: the Service variables (every Service of the pod's namespace that
  has a ClusterIP, with ``enableServiceLinks``; the ``kubernetes`` Service of
  ``default`` always), ``POD_IP``, then ``envFrom`` sources in order, then ``env``.
- ``env`` values expand ``$(NAME)`` from what is defined before them (``$$`` is a
  literal ``$``; an undefined name stays as written), as do ``command`` and ``args``.
- ``valueFrom``: ``fieldRef`` (metadata.name, namespace, uid, labels['k'],
  annotations['k'], spec.nodeName, spec.serviceAccountName, status.hostIP,
  status.hostIPs, status.podIP, status.podIPs), ``resourceFieldRef`` (limits and
  requests of cpu and memory, with the divisor; a limit not set is the node's
  allocatable), ``configMapKeyRef``/``secretKeyRef``. A missing ConfigMap, Secret or
  key that is not ``optional`` is ``ConfigError`` (the container waits with
  CreateContainerConfigError).
- ConfigMaps and Secrets are looked up in ``sources``, fetched by the caller.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any

from actorkube.apiserver._quantity import InvalidQuantity, Quantity


class ConfigError(Exception):
    """The pod refers to configuration that does not exist: the pod's author's fault."""


def service_env(services: list[Mapping[str, Any]]) -> dict[str, str]:
    """Docker-links-style variables of ``services`` (Kubernetes' FromServices)."""
    env: dict[str, str] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        name = (svc.get("metadata") or {}).get("name", "").upper().replace("-", "_")
        ports = [p for p in spec.get("ports") or () if isinstance(p, dict)]
        env[f"{name}_SERVICE_HOST"] = ip
        if not ports:
            continue
        env[f"{name}_SERVICE_PORT"] = str(ports[0].get("port"))
        for p in ports:
            if p.get("name"):
                port_name = str(p["name"]).upper().replace("-", "_")
                env[f"{name}_SERVICE_PORT_{port_name}"] = str(p.get("port"))
        first = ports[0]
        proto = str(first.get("protocol", "TCP"))
        env[f"{name}_PORT"] = f"{proto.lower()}://{ip}:{first.get('port')}"
        for p in ports:
            proto = str(p.get("protocol", "TCP"))
            prefix = f"{name}_PORT_{p.get('port')}_{proto.upper()}"
            env[prefix] = f"{proto.lower()}://{ip}:{p.get('port')}"
            env[f"{prefix}_PROTO"] = proto.lower()
            env[f"{prefix}_PORT"] = str(p.get("port"))
            env[f"{prefix}_ADDR"] = ip
    return env


_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _REF.sub(one, text)


_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward API field of ``pod``."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    if path in ("status.hostIPs", "status.podIPs"):
        key = "hostIPs" if path == "status.hostIPs" else "podIPs"
        return ",".join(str(a.get("ip")) for a in status.get(key) or () if isinstance(a, dict))
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_value(
    container: Mapping[str, Any], ref: Mapping[str, Any], allocatable: Mapping[str, str]
) -> str:
    """A ``resourceFieldRef``'s value, rounded up in units of its divisor."""
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    values = (container.get("resources") or {}).get(kind) or {}
    raw = values.get(name)
    if raw is None and kind == "limits":
        raw = allocatable.get(name, "0")
    try:
        amount = Quantity.parse(str(raw or "0"))
        divisor = Quantity.parse(str(ref.get("divisor") or "1"))
    except (InvalidQuantity, ValueError) as e:
        raise ConfigError(f"resourceFieldRef {resource}: {e}") from None
    if divisor.milli_value() == 0:
        raise ConfigError(f"resourceFieldRef {resource}: divisor is zero")
    return str(math.ceil(amount.milli_value() / divisor.milli_value()))


def _source_value(
    kind: str, ref: Mapping[str, Any], namespace: str, sources: Mapping[tuple[str, str], dict]
) -> str | None:
    name = str(ref.get("name", ""))
    obj = sources.get((kind, name))
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    data = _data(kind, obj)
    key = str(ref.get("key", ""))
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {kind} {namespace}/{name}")
    return data[key]


def _data(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """A ConfigMap's or Secret's data as text (Secrets' values are base64)."""
    if kind == "ConfigMap":
        out = {k: str(v) for k, v in (obj.get("data") or {}).items()}
        for k, v in (obj.get("binaryData") or {}).items():
            out[k] = base64.b64decode(v).decode(errors="replace")
        return out
    return {
        k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()
    }


def referenced_sources(pod: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret the pod's env and volumes (projected
    ones' sources too) use."""
    refs: set[tuple[str, str]] = set()
    spec = pod.get("spec") or {}
    for field in ("containers", "initContainers"):
        for c in spec.get(field) or ():
            for e in c.get("env") or ():
                value_from = (e or {}).get("valueFrom") or {}
                if "configMapKeyRef" in value_from:
                    refs.add(("ConfigMap", str(value_from["configMapKeyRef"].get("name"))))
                if "secretKeyRef" in value_from:
                    refs.add(("Secret", str(value_from["secretKeyRef"].get("name"))))
            for source in c.get("envFrom") or ():
                if "configMapRef" in (source or {}):
                    refs.add(("ConfigMap", str(source["configMapRef"].get("name"))))
                if "secretRef" in (source or {}):
                    refs.add(("Secret", str(source["secretRef"].get("name"))))
    for v in spec.get("volumes") or ():
        if "configMap" in (v or {}):
            refs.add(("ConfigMap", str(v["configMap"].get("name"))))
        if "secret" in (v or {}):
            refs.add(("Secret", str(v["secret"].get("secretName"))))
        for source in ((v or {}).get("projected") or {}).get("sources") or ():
            if "configMap" in (source or {}):
                refs.add(("ConfigMap", str(source["configMap"].get("name"))))
            if "secret" in (source or {}):
                refs.add(("Secret", str(source["secret"].get("name"))))
    return refs


def _is_master(svc: Mapping[str, Any]) -> bool:
    meta = svc.get("metadata") or {}
    return meta.get("namespace") == "default" and meta.get("name") == "kubernetes"


def container_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    services: list[Mapping[str, Any]],
    sources: Mapping[tuple[str, str], dict],
    allocatable: Mapping[str, str],
) -> list[tuple[str, str]]:
    """The environment of ``container`` (see the module rules)."""
    spec = pod.get("spec") or {}
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    env: dict[str, str] = {}
    links = spec.get("enableServiceLinks", True)
    # The API server's own Service (default/kubernetes) is always there, links or not.
    env.update(service_env([s for s in services if links or _is_master(s)]))
    pod_ip = (pod.get("status") or {}).get("podIP")
    if pod_ip:
        env["POD_IP"] = pod_ip
    for source in container.get("envFrom") or ():
        source = source or {}
        prefix = str(source.get("prefix", ""))
        for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if field not in source:
                continue
            ref = source[field]
            obj = sources.get((kind, str(ref.get("name"))))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{kind} "{ref.get("name")}" not found')
            for k, v in _data(kind, obj).items():
                env[prefix + k] = v
    for e in container.get("env") or ():
        name = str(e.get("name", ""))
        value_from = e.get("valueFrom")
        if value_from is None:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        if "fieldRef" in value_from:
            value: str | None = field_value(pod, str(value_from["fieldRef"].get("fieldPath")))
        elif "resourceFieldRef" in value_from:
            value = resource_value(container, value_from["resourceFieldRef"], allocatable)
        elif "configMapKeyRef" in value_from:
            value = _source_value("ConfigMap", value_from["configMapKeyRef"], namespace, sources)
        elif "secretKeyRef" in value_from:
            value = _source_value("Secret", value_from["secretKeyRef"], namespace, sources)
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom")
        if value is not None:
            env[name] = value
    return list(env.items())


def command_line(
    container: Mapping[str, Any], env: list[tuple[str, str]]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``command`` and ``args`` with $(VAR) expanded from the container's env."""
    lookup = dict(env)
    command = tuple(expand(str(a), lookup) for a in container.get("command") or ())
    args = tuple(expand(str(a), lookup) for a in container.get("args") or ())
    return command, args
