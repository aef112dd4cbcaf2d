"""Running a benchmark's --quick mode from a test (no timing is ever asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_quick(module: str, directory: Path, timeout: float = 120) -> tuple[dict, str]:
    """Run ``python -m benchmarks.<module> --quick --json``: (its JSON, its stdout)."""
    out = directory / f"{module}.json"
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--quick", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def by_name(report: dict) -> dict[str, dict]:
    return {r["name"]: r for r in report["results"]}
