"""Durations as Kubernetes' flags and annotations write them: Go durations (``1h0m0s``,
``1m30s``, ``300ms``), plain seconds (``30``, ``2.5``), or ``forever``."""

from __future__ import annotations

import math
import re

_GO_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}  # fmt: skip
_PLAIN_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a Go duration without sign (``1h2m3.5s``, ``300ms``), plain
    seconds (``30``, ``2.5``), or ``forever`` (``inf``). Raises ValueError otherwise."""
    text = text.strip()
    if text == "forever":
        return math.inf
    if _PLAIN_SECONDS.fullmatch(text):
        return float(text)
    total, position = 0.0, 0
    while position < len(text):
        part = _GO_DURATION_PART.match(text, position)
        if part is None or part[1] in ("", "."):
            position = -1
            break
        total += float(part[1]) * _GO_UNITS[part[2]]
        position = part.end()
    if position <= 0:
        raise ValueError(
            f"{text!r} is not a duration (a Go duration such as 1m30s, seconds such as 2.5, "
            "or forever)"
        )
    return total
