"""The local image catalogue of the process runtime: what an image name means when
containers are processes of this machine.

Rules of this file:

- There are no image layers: every container sees this machine's filesystem. An image
  is only what its config would give a container: an entrypoint, a cmd (its default
  arguments) and an environment.
- Image references are looked up as Docker does: ``docker.io/`` and ``library/`` are
  implied, a missing tag is ``latest``. The catalogue is asked for ``repository:tag``
  first, then for the repository alone (an entry without a tag answers every tag).
- Built in: ``python`` (the interpreter this runtime runs under, ``sys.executable``,
  with its directory first on ``PATH`` so that ``python3`` and ``python`` name it);
  ``busybox``, ``alpine``, ``ubuntu``, ``debian`` (their images' cmd: a shell of this
  machine); ``registry.k8s.io/pause`` and ``k8s.gcr.io/pause`` (a process that sleeps
  until it is sent SIGTERM or SIGINT, then exits 0, as the pause binary does).
- A catalogue file (YAML or JSON) adds entries or replaces built-in ones::

      myorg/web:                 # or myorg/web:1.2 for one tag only
        entrypoint: ["/usr/bin/python3", "-m", "http.server"]
        cmd: ["8080"]
        env: {PYTHONUNBUFFERED: "1"}

- An image not in the catalogue can still be pulled: it is an image with no
  entrypoint, no cmd and the default ``PATH`` (the host's filesystem). A container of
  it must then give its own command.
- Kubernetes' rule for the command line: ``command`` replaces the entrypoint and drops
  the cmd; ``args`` replace the cmd; with neither, entrypoint + cmd.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping

import attrs
import yaml

from ._api import Image

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The pause container: sleeps until asked to stop, then exits 0 (as registry.k8s.io/pause).
PAUSE = (
    "import signal, sys\n"
    "for s in (signal.SIGTERM, signal.SIGINT):\n"
    "    signal.signal(s, lambda *_: sys.exit(0))\n"
    "while True:\n"
    "    signal.pause()\n"
)


@attrs.frozen
class ImageConfig:
    """One catalogued image: the parts of an OCI image config a process needs."""

    name: str
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = (("PATH", DEFAULT_PATH),)
    catalogued: bool = True

    @property
    def id(self) -> str:
        body = json.dumps([self.name, self.entrypoint, self.cmd, self.env, self.catalogued])
        return "sha256:" + hashlib.sha256(body.encode()).hexdigest()

    def image(self, names: tuple[str, ...] = ()) -> Image:
        return Image(id=self.id, names=(self.name, *(n for n in names if n != self.name)))


def reference(image: str) -> tuple[str, str]:
    """``(repository, tag)`` of an image reference, Docker's defaults applied
    (``python`` -> ``("python", "latest")``; a digest is dropped)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = "latest"
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    for registry in ("docker.io/", "index.docker.io/"):
        if name.startswith(registry):
            name = name[len(registry) :]
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    return name, tag


def builtin() -> dict[str, ImageConfig]:
    python_path = f"{os.path.dirname(sys.executable)}:{DEFAULT_PATH}"
    python = ImageConfig(
        "python", cmd=(sys.executable,), env=(("PATH", python_path), ("LANG", "C.UTF-8"))
    )
    pause = (sys.executable, "-I", "-S", "-c", PAUSE)
    return {
        "python": python,
        "busybox": ImageConfig("busybox", cmd=("sh",)),
        "alpine": ImageConfig("alpine", cmd=("/bin/sh",)),
        "ubuntu": ImageConfig("ubuntu", cmd=("/bin/bash",)),
        "debian": ImageConfig("debian", cmd=("bash",)),
        "registry.k8s.io/pause": ImageConfig("registry.k8s.io/pause", entrypoint=pause),
        "k8s.gcr.io/pause": ImageConfig("k8s.gcr.io/pause", entrypoint=pause),
    }


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


def parse_entry(key: str, body: object) -> ImageConfig:
    """One entry of a catalogue file; ``ValueError`` says what is wrong with it."""
    if not isinstance(body, Mapping):
        raise ValueError(f"image {key!r}: expected a mapping with entrypoint/cmd/env")
    unknown = set(body) - {"entrypoint", "cmd", "env"}
    if unknown:
        raise ValueError(f"image {key!r}: unknown fields {sorted(unknown)}")
    env = body.get("env") or {}
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and k and "=" not in k and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError(f"image {key!r}: env must map variable names to strings")
    env = {"PATH": DEFAULT_PATH, **env}
    return ImageConfig(
        name=key,
        entrypoint=_strings(body.get("entrypoint", []), f"image {key!r}: entrypoint"),
        cmd=_strings(body.get("cmd", []), f"image {key!r}: cmd"),
        env=tuple(env.items()),
    )


def _key(name: str) -> str:
    repository, tag = reference(name)
    return repository if ":" not in name.rsplit("/", 1)[-1] else f"{repository}:{tag}"


@attrs.define
class ImageCatalogue:
    """The images this runtime knows (see the module rules), and the unknown images
    pulled so far."""

    entries: dict[str, ImageConfig]
    pulled: dict[str, ImageConfig] = attrs.field(factory=dict)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> ImageCatalogue:
        """The built-in catalogue, extended by the file at ``path`` if given;
        ``ValueError`` for a file that cannot be read or is malformed."""
        entries = builtin()
        if path is None:
            return cls(entries)
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"image catalogue {os.fspath(path)!r} cannot be read: {e}") from e
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ValueError(f"image catalogue {os.fspath(path)!r} must map image names to entries")
        for name, body in data.items():
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"image catalogue: {name!r} is not an image name")
            key = _key(name)
            entries[key] = attrs.evolve(parse_entry(name, body), name=key)
        return cls(entries)

    def find(self, image: str) -> ImageConfig | None:
        """The catalogued image ``image`` names, else the unknown image pulled under
        that name, else None."""
        repository, tag = reference(image)
        found = self.entries.get(f"{repository}:{tag}") or self.entries.get(repository)
        return found or self.pulled.get(image)

    def pull(self, image: str) -> ImageConfig:
        """The image ``image`` names; an unknown one becomes an image without an
        entrypoint (the host's filesystem). The name is remembered for ``images``."""
        found = self.find(image) or ImageConfig(image, catalogued=False)
        self.pulled[image] = found
        return found

    def images(self) -> list[Image]:
        """Every catalogued image and every unknown one pulled, each with the names it
        was pulled by."""
        configs = {c.id: c for c in (*self.entries.values(), *self.pulled.values())}
        names: dict[str, list[str]] = {i: [] for i in configs}
        for ref, config in self.pulled.items():
            names[config.id].append(ref)
        return [c.image(tuple(names[i])) for i, c in configs.items()]


def command_line(
    image: ImageConfig, command: tuple[str, ...], args: tuple[str, ...]
) -> tuple[str, ...]:
    """The process's argv by Kubernetes' rule (see the module rules)."""
    if command:
        return (*command, *args)
    return (*image.entrypoint, *(args or image.cmd))
