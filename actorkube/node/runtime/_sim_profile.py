"""How a simulated container behaves: ``SimProfile``, chosen by image and overridden by
annotations.

Rules of this file:

- A profile is a value (``attrs.frozen``); every field has a default that behaves like
  a server: starts at once, runs forever, always healthy, writes nothing, exits 143 on
  SIGTERM (no handler: the signal's default action).
- Durations are seconds (float); ``math.inf`` means "never" where a field allows it.
- ``profile_for_image`` picks a profile: the image name exactly as written (or with
  the ``:latest`` a name without tag implies), else the name without its tag or
  digest, else the default profile.
- Annotations override any field but the pull fields (a pull is asked for by image
  name only, so nothing of a pod can reach it). The keys are
  ``sim.actorkube.io/<field>`` for every container of the pod and
  ``sim.actorkube.io/<field>.<container name>`` for one container, read from the
  sandbox config (the pod's annotations), then from the container config; a
  container-specific key beats a pod-wide one from the same config, and the container
  config beats the sandbox config. Values: durations as Go durations (``1m30s``,
  ``500ms``), plain seconds (``2.5``) or ``forever``; CPU and memory as Kubernetes
  quantities (``250m``, ``128Mi``); exit codes as integers 0-255; log lines as text,
  one line per ``\\n``; a load group (``load-group``) as its name.
- A key under the prefix with an unknown field, or a value that does not parse or
  does not fit the field, raises ``AnnotationError`` naming the key; keys meant for
  other containers are not parsed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from actorkube._duration import parse_duration as parse_duration
from actorkube.apiserver import InvalidQuantity, Quantity

ANNOTATION_PREFIX = "sim.actorkube.io/"
MIN_LOG_EVERY = 0.001  # seconds


class AnnotationError(ValueError):
    """A simulation annotation that cannot be used: the pod author's fault."""


# --- field checks --------------------------------------------------------------------------


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a duration in seconds is a number, not {value!r}")
    return float(value)


def _non_negative(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ValueError(f"{attribute.name} must be at least 0, not {value}")


def _finite(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    if math.isinf(value):
        raise ValueError(f"{attribute.name} must be finite")


def _log_interval(_instance: object, attribute: attrs.Attribute, value: float) -> None:
    # A floor, so that a periodic line cannot keep the timer task busy for ever.
    if not value >= MIN_LOG_EVERY:
        raise ValueError(f"{attribute.name} must be at least {MIN_LOG_EVERY * 1000:g}ms, "
                         f"not {value:g} seconds")


def _exit_code(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise ValueError(f"{attribute.name} must be an integer from 0 to 255, not {value!r}")


def _amount(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an integer of at least 0, not {value!r}")


def _lines(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    lines: list[str] = []
    for text in value:
        if not isinstance(text, str):
            raise TypeError(f"log lines are text, not {text!r}")
        lines.extend(text.split("\n"))
    return tuple(lines)


def _text(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} is text, not {value!r}")


_delay = [_non_negative, _finite]


@attrs.frozen
class SimProfile:
    """What a simulated container (and its image) does.

    - ``pull_delay`` seconds to pull the image; ``pull_fails``: every pull ends in
      ImagePullError after that delay; ``image_size`` bytes (Node status.images).
    - ``start_delay``: ``start_container`` takes that long before the container runs.
    - ``run_for``: seconds from start to exit with ``exit_code`` (reason ``Completed``
      for 0, else ``Error``); ``inf`` runs until stopped.
    - ``cpu_millis`` and ``memory_bytes``: what ``container_stats`` reports while it
      runs (CPU is capped at the container's CPU limit). Memory above the container's
      memory limit gets it killed as it starts: ``OOMKilled``, exit 137.
    - ``load_group``: while it runs, its CPU is its share of that group's load in the
      runtime's ``SimLoad`` instead of ``cpu_millis`` (if the runtime has one).
    - ``log_lines``: written to stdout as it starts; ``periodic_log_line`` is written
      every ``log_every`` seconds (at least 1 ms) while it runs.
    - ``term_delay``: seconds from SIGTERM to exiting with ``term_exit_code``; ``inf``
      ignores SIGTERM. If the stop timeout comes first, SIGKILL: exit 137.
    - ``ready_after`` and ``healthy_for``: probes (tcpSocket, httpGet, exec) succeed
      while ``ready_after <= time running < healthy_for``.
    """

    pull_delay: float = attrs.field(default=0.0, converter=_seconds, validator=_delay)
    pull_fails: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    image_size: int = attrs.field(default=0, validator=_amount)
    start_delay: float = attrs.field(default=0.0, converter=_seconds, validator=_delay)
    run_for: float = attrs.field(default=math.inf, converter=_seconds, validator=_non_negative)
    exit_code: int = attrs.field(default=0, validator=_exit_code)
    cpu_millis: int = attrs.field(default=0, validator=_amount)
    memory_bytes: int = attrs.field(default=0, validator=_amount)
    load_group: str = attrs.field(default="", validator=_text)
    log_lines: tuple[str, ...] = attrs.field(default=(), converter=_lines)
    periodic_log_line: str = attrs.field(default="", validator=_text)
    log_every: float = attrs.field(default=math.inf, converter=_seconds, validator=_log_interval)
    term_delay: float = attrs.field(default=0.0, converter=_seconds, validator=_non_negative)
    term_exit_code: int = attrs.field(default=143, validator=_exit_code)
    ready_after: float = attrs.field(default=0.0, converter=_seconds, validator=_non_negative)
    healthy_for: float = attrs.field(
        default=math.inf, converter=_seconds, validator=_non_negative
    )


# --- choosing by image ----------------------------------------------------------------------


def image_repository(image: str) -> str:
    """``image`` without its tag or digest (``registry:5000/app:v1`` -> ``registry:5000/app``)."""
    name = image.partition("@")[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def image_name(image: str) -> str:
    """``image`` with ``:latest`` added when it has neither tag nor digest."""
    if "@" in image or ":" in image[image.rfind("/") + 1 :]:
        return image
    return image + ":latest"


def profile_for_image(
    image: str, profiles: Mapping[str, SimProfile], default: SimProfile
) -> SimProfile:
    """The profile for ``image``: by its name as written, else with the ``:latest`` it
    implies, else by its repository, else ``default``."""
    for key in (image, image_name(image), image_repository(image)):
        found = profiles.get(key)
        if found is not None:
            return found
    return default


# --- annotations ----------------------------------------------------------------------------


def _parse_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,3}", text.strip()):
        raise ValueError(f"{text!r} is not an exit code (an integer from 0 to 255)")
    return int(text)


def _parse_cpu(text: str) -> int:
    try:
        return Quantity.parse(text.strip()).milli_value()
    except InvalidQuantity as error:
        raise ValueError(str(error)) from None


def _parse_memory(text: str) -> int:
    try:
        return Quantity.parse(text.strip()).value()
    except InvalidQuantity as error:
        raise ValueError(str(error)) from None


# annotation field -> (SimProfile attribute, parser of the annotation's text)
_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "start-delay": ("start_delay", parse_duration),
    "run-for": ("run_for", parse_duration),
    "exit-code": ("exit_code", _parse_int),
    "cpu": ("cpu_millis", _parse_cpu),
    "memory": ("memory_bytes", _parse_memory),
    "load-group": ("load_group", str.strip),
    "log-lines": ("log_lines", str),
    "periodic-log-line": ("periodic_log_line", str),
    "log-every": ("log_every", parse_duration),
    "term-delay": ("term_delay", parse_duration),
    "term-exit-code": ("term_exit_code", _parse_int),
    "ready-after": ("ready_after", parse_duration),
    "healthy-for": ("healthy_for", parse_duration),
}
_IMAGE_ONLY = ("pull-delay", "pull-fails", "image-size")


def with_annotations(
    profile: SimProfile, container_name: str, sources: Iterable[Mapping[str, str]]
) -> SimProfile:
    """``profile`` with the simulation annotations of ``sources`` (the sandbox config's,
    then the container config's) applied for container ``container_name``."""
    chosen: dict[str, tuple[str, Any]] = {}  # attribute -> (key, value)
    for source in sources:
        pod_wide: dict[str, tuple[str, Any]] = {}
        specific: dict[str, tuple[str, Any]] = {}
        for key, text in source.items():
            if not key.startswith(ANNOTATION_PREFIX):
                continue
            field, _, target = key[len(ANNOTATION_PREFIX) :].partition(".")
            attribute, parse = _field(key, field)
            if target and target != container_name:
                continue
            if not isinstance(text, str):
                raise AnnotationError(f"{key}: the value must be text, not {text!r}")
            try:
                value = parse(text)
            except ValueError as error:
                raise AnnotationError(f"{key}: {error}") from None
            (specific if target else pod_wide)[attribute] = (key, value)
        chosen |= pod_wide
        chosen |= specific
    for attribute, (key, value) in chosen.items():
        try:
            profile = attrs.evolve(profile, **{attribute: value})
        except (ValueError, TypeError) as error:
            raise AnnotationError(f"{key}: {error}") from None
    return profile


def _field(key: str, field: str) -> tuple[str, Callable[[str], Any]]:
    if field in _FIELDS:
        return _FIELDS[field]
    if field in _IMAGE_ONLY:
        raise AnnotationError(
            f"{key}: {field} belongs to the image's profile (pulls are per image) and "
            "cannot be set for a pod"
        )
    known = ", ".join(_FIELDS)
    raise AnnotationError(f"{key}: unknown simulation field {field!r} (known: {known})")
