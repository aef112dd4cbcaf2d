"""Pod volumes on the node's disk, and the mounts a container gets from them (the
kubelet's volume manager, for the volume types that need no storage system).

Rules of this file:

- Each pod has a directory ``<root>/pods/<uid>/volumes/<plugin>/<name>``, as the
  kubelet lays it out. ``emptyDir``: an empty directory made once and shared by the
  pod's containers for the pod's life. ``configMap``/``secret``: one file per key (or
  per ``items`` entry, at its ``path``), mode ``defaultMode`` (0644), rewritten when
  the pod is synced again, so updates reach running containers. ``downwardAPI``:
  files of the pod's fields. ``projected``: one directory of the files of its sources
  (``configMap``, ``secret``, ``downwardAPI`` as above, ``serviceAccountToken``: the
  token the kubelet got for the pod, at ``path``). ``hostPath``: the host's path itself.
- A missing ConfigMap or Secret that is not ``optional``, or a token not (yet) issued,
  is ``ConfigError``: the pod waits (its containers are not started without their
  volumes).
- ``remove`` deletes the pod's directory once its containers are gone.
- Paths in ``items`` are relative, without ``..``: a path that escapes the volume is
  a ``ConfigError``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._env import ConfigError, _data, field_value
from .runtime import Mount

PLUGINS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}
TOKEN = "ServiceAccountToken"  # the kind of a token in ``sources``


def token_source_key(source: Mapping[str, Any]) -> tuple[str, str]:
    """Where a ``serviceAccountToken`` projection's token is in ``sources``: one token per
    audience and lifetime serves the pod's every projection that asks for the same."""
    return TOKEN, f"{source.get('audience') or ''}/{token_seconds(source)}"


def token_seconds(source: Mapping[str, Any]) -> int:
    seconds = source.get("expirationSeconds", 3600)
    return seconds if isinstance(seconds, int) and not isinstance(seconds, bool) else 3600


def pod_dir(root: Path, uid: str) -> Path:
    return root / "pods" / uid


def _safe(base: Path, relative: str) -> Path:
    if not relative or os.path.isabs(relative) or ".." in Path(relative).parts:
        raise ConfigError(f"volume item path {relative!r} must be relative, without '..'")
    return base / relative


def _write_files(base: Path, files: Mapping[str, bytes], mode: int) -> None:
    base.mkdir(parents=True, exist_ok=True)
    for relative, content in files.items():
        path = _safe(base, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(content)
        tmp.chmod(mode)
        tmp.replace(path)  # a reader sees the old file or the new one, never half of one


def _items(volume: Mapping[str, Any], data: Mapping[str, str], what: str) -> dict[str, bytes]:
    items = volume.get("items")
    if not items:
        return {k: v.encode() for k, v in data.items()}
    out = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if volume.get("optional"):
                continue
            raise ConfigError(f"configmap/secret {what}: key {key!r} not found")
        out[str(item.get("path", key))] = data[key].encode()
    return out


def prepare(
    root: Path | None, pod: Mapping[str, Any], sources: Mapping[tuple[str, str], dict]
) -> dict[str, str]:
    """Make (or refresh) the pod's volumes; the host path of each, by volume name. With
    no ``root`` (a simulated node) nothing is written, but a missing source is still
    an error."""
    uid = (pod.get("metadata") or {}).get("uid", "")
    paths: dict[str, str] = {}
    for volume in (pod.get("spec") or {}).get("volumes") or ():
        name = str(volume.get("name", ""))
        kind = next((k for k in (*PLUGINS, "hostPath") if k in volume), None)
        if kind is None:
            raise ConfigError(f"volume {name!r}: this node supports {', '.join(PLUGINS)}, "
                              "hostPath")  # fmt: skip
        if kind == "hostPath":
            paths[name] = str((volume["hostPath"] or {}).get("path", ""))
            continue
        base = pod_dir(root or Path("/"), uid) / "volumes" / PLUGINS[kind] / name
        spec = volume[kind] or {}
        mode = int(spec.get("defaultMode", 0o644))
        if kind == "projected":
            files: dict[str, bytes] = {}
            for source in spec.get("sources") or ():
                files.update(_projection(pod, source or {}, sources, projected=True))
        elif kind == "emptyDir":
            files = {}
        else:
            files = _projection(pod, {kind: spec}, sources)
        if root is None:
            pass  # a simulated node writes nothing
        elif kind == "emptyDir":
            base.mkdir(parents=True, exist_ok=True)
        else:
            _write_files(base, files, mode)
        paths[name] = str(base)
    return paths


def _projection(pod: Mapping[str, Any], source: Mapping[str, Any],
                sources: Mapping[tuple[str, str], dict], *,
                projected: bool = False) -> dict[str, bytes]:  # fmt: skip
    """The files of one source: a configMap, secret or downwardAPI volume, or
    (``projected``) one source of a projected volume, whose secret is named by
    ``name`` where a secret volume's is by ``secretName``."""
    if "serviceAccountToken" in source:
        token_spec = source["serviceAccountToken"] or {}
        found = sources.get(token_source_key(token_spec))
        if found is None:
            raise ConfigError("the service account token of the pod is not issued yet")
        return {str(token_spec.get("path") or "token"): found["token"].encode()}
    if "downwardAPI" in source:
        return {
            str(item.get("path")): field_value(pod, str((item.get("fieldRef") or {})
                                                        .get("fieldPath"))).encode()
            for item in (source["downwardAPI"] or {}).get("items") or ()
            if item.get("fieldRef")
        }  # fmt: skip
    kind = next((k for k in ("configMap", "secret") if k in source), None)
    if kind is None:
        return {}  # a kind of projection this node does not know (clusterTrustBundle)
    spec = source[kind] or {}
    # A missing source that is not optional stops the pod on any node.
    source_kind = "ConfigMap" if kind == "configMap" else "Secret"
    source_name = str(spec.get("name") if kind == "configMap" or projected
                      else spec.get("secretName"))  # fmt: skip
    obj = sources.get((source_kind, source_name))
    if obj is None:
        if not spec.get("optional"):
            raise ConfigError(f'{source_kind.lower()} "{source_name}" not found')
        return {}
    return _items(spec, _data(source_kind, obj), source_name)


def mounts(container: Mapping[str, Any], paths: Mapping[str, str]) -> tuple[Mount, ...]:
    """The container's ``volumeMounts`` as runtime mounts (``subPath`` inside the
    volume)."""
    out = []
    for m in container.get("volumeMounts") or ():
        name = str(m.get("name", ""))
        if name not in paths:
            raise ConfigError(f"volumeMount {name!r}: no volume of that name")
        host = paths[name]
        if m.get("subPath"):
            host = str(_safe(Path(host), str(m["subPath"])))
        out.append(Mount(str(m.get("mountPath", "")), host, bool(m.get("readOnly"))))
    return tuple(out)


def remove(root: Path, uid: str) -> None:
    shutil.rmtree(pod_dir(root, uid), ignore_errors=True)
