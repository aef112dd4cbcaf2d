"""What every benchmark shares: its command line, its table and its JSON file.

Rules of this file:

- Every benchmark runs as ``python -m benchmarks.NAME [--quick] [--json PATH]``
  (``parse_args``). ``--quick`` is a smoke run (small counts, one repetition) whose
  numbers are not to be quoted; without ``--json`` only the table is printed.
- A benchmark builds one ``Report`` (pure data) and gives it to ``print_report`` and
  ``write_json``; nothing here measures anything.
- The JSON shape is the contract other tools read::

      {"benchmark": NAME,
       "results": [{"name": ..., "value": ..., "unit": ..., **extra}, ...],
       "environment": {...}, "parameters": {...}, "notes": {...}, "summary": [...]}

  ``name`` is unique within a report, ``value`` is a number, ``unit`` a short string.
  The extra keys of a result never shadow ``name``, ``value`` or ``unit``.
- ``write_json`` replaces the file atomically (a ``.json.tmp`` sibling renamed over it),
  so a reader never sees half a report.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.table import Table

_RESERVED = frozenset({"name", "value", "unit"})


def _no_reserved_keys(_: Any, __: Any, extra: Mapping[str, Any]) -> None:
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"extra keys may not be {sorted(clash)}")


@attrs.frozen
class Result:
    """One measured (or derived) number. ``extra`` holds context: the system, the
    method, a note; ``note`` is shown in the table's last column."""

    name: str
    value: float
    unit: str
    extra: Mapping[str, Any] = attrs.field(factory=dict, validator=_no_reserved_keys)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, **self.extra}


@attrs.frozen
class Report:
    """A whole benchmark run: its results, where it ran, with which parameters, how the
    numbers were taken (``notes``) and the verdict lines (``summary``)."""

    benchmark: str
    results: tuple[Result, ...]
    environment: Mapping[str, Any]
    parameters: Mapping[str, Any]
    notes: Mapping[str, str] = attrs.field(factory=dict)
    summary: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        names = [r.name for r in self.results]
        if len(names) != len(set(names)):
            raise ValueError("result names must be unique within a report")

    def to_json(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "results": [r.to_json() for r in self.results],
            "environment": dict(self.environment),
            "parameters": dict(self.parameters),
            "notes": dict(self.notes),
            "summary": list(self.summary),
        }


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The common command line: ``quick`` (bool) and ``json`` (a path or None)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small counts and one repetition (a smoke run)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    return parser.parse_args(argv)


def environment(packages: Iterable[str]) -> dict[str, Any]:
    """Where the numbers come from: date, Python, machine, cores and package versions.

    ``cores`` is what the OS reports; ``usable_cores`` is what this process may run on
    (they differ inside a container with a CPU set); ``load_average`` (1, 5, 15 min) at
    the start tells whether something else was busy on the machine.
    """
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        **interpreter(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": versions,
    }


def interpreter() -> dict[str, Any]:
    """Which build of Python ran, and how fast it runs plain Python code right now.

    Two CPython builds of one version can differ by a third on the same machine: a
    distribution's (Debian's python3.11: profile-guided, link-time optimised, the
    interpreter linked into the executable) against a default source build (pyenv's:
    neither, and libpython a shared library, whose calls between its own functions go
    through the PLT). ``libpython`` says which linking ran ("shared" when a libpython
    shared object is mapped into this process). ``python_speed_ms`` is the best of five
    timings of a fixed pure-Python workload (``_speed_probe``), taken when the report is
    made: it moves with the interpreter build and with whatever else slows the machine
    that hour, so two reports' numbers compare only next to it.
    """
    return {
        "executable": os.path.realpath(sys.executable),
        "build": " ".join(platform.python_build()),
        "compiler": platform.python_compiler(),
        "libpython": _libpython_linking(),
        "python_speed_ms": round(min(_speed_probe() for _ in range(5)) * 1000, 1),
    }


def _libpython_linking() -> str:
    """"shared", "static", or "unknown" where /proc/self/maps cannot be read."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return "unknown"
    return "shared" if "/libpython" in maps else "static"


def _speed_probe() -> float:
    """Seconds for a fixed workload of the kinds this project's code does most: small
    dicts and lists built and read, attribute access, method calls, string formatting
    (no C extension, no allocation that lives past it)."""

    class Item:
        __slots__ = ("labels", "name")

        def __init__(self, name: str, labels: dict[str, str]) -> None:
            self.name = name
            self.labels = labels

        def matches(self, key: str, value: str) -> bool:
            return self.labels.get(key) == value

    started = time.perf_counter()
    hits = 0
    for i in range(20_000):
        item = Item(f"pod-{i}", {"app": "web" if i % 3 else "db", "tier": str(i % 5)})
        meta = {"name": item.name, "labels": item.labels, "finalizers": [item.name]}
        hits += item.matches("app", "web") + len(meta["finalizers"])
    if hits <= 0:  # keeps the loop's result used
        raise AssertionError("speed probe lost its work")
    return time.perf_counter() - started


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-quantile (0 < q <= 1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_results(prefix: str, samples: list[float], elapsed: float | None) -> list[Result]:
    """``prefix.throughput`` (if ``elapsed``), ``.latency_p50`` and ``.latency_p99`` of
    latency ``samples`` in seconds."""
    results = []
    if elapsed:
        results.append(Result(f"{prefix}.throughput", len(samples) / elapsed, "requests/s"))
    results += [
        Result(f"{prefix}.latency_p50", percentile(samples, 0.5) * 1e3, "ms"),
        Result(f"{prefix}.latency_p99", percentile(samples, 0.99) * 1e3, "ms",
               {"samples": len(samples)}),
    ]  # fmt: skip
    return results


def format_value(value: float) -> str:
    """A number as a person reads it: thousands separators, about three significant
    digits below 100, no spurious decimals above."""
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.3g}"


def print_report(report: Report, console: Console | None = None) -> None:
    """Print the results as a table, then the notes and the summary lines."""
    console = console or Console()
    if not console.is_terminal:
        # A pipe or a log file has no width; rich would assume 80 and squeeze the notes.
        console.width = max(console.width, 120)
    env = report.environment
    table = Table(
        title=f"{report.benchmark} (Python {env.get('python')}, {env.get('cores')} cores)",
        title_justify="left",
    )
    # Names and numbers never wrap (they are what people grep for); notes take the rest.
    table.add_column("result", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    table.add_column("note", overflow="fold", ratio=1)
    for r in report.results:
        table.add_row(r.name, format_value(r.value), r.unit, str(r.extra.get("note", "")))
    console.print(table)
    for key, text in report.notes.items():
        console.print(f"{key}: {text}", style="dim", markup=False, highlight=False)
    for line in report.summary:
        # Verdicts stay one line each, whatever the width: scripts grep for them.
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def write_json(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the report as JSON to ``path`` (parents created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return target


def fan_out_line(events_per_second: float, watchers: int, lost: float) -> str:
    """The summary line of a watch fan-out, the same in every benchmark that has one."""
    return (
        f"watch fan-out: {events_per_second:,.0f} events/s to {watchers} watchers, {lost:.0f} lost"
    )


def run_main(description: str, build: Callable[[bool], Report], argv=None) -> int:
    """The body of every benchmark's ``main``: parse ``--quick``/``--json``, build the
    report (``build(quick)``), print it, write the JSON if asked."""
    args = parse_args(description, argv)
    report = build(args.quick)
    print_report(report)
    if args.json:
        write_json(report, args.json)
    return 0
