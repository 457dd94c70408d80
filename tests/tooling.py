"""The external tools the tests run (installed by scripts/setup.sh into .tools/ or PATH)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = "run `bash scripts/setup.sh` (or `pip install -e '.[test]'` and `.ci/install-tools.sh`)"


def tool(name: str, *candidates: Path) -> str:
    """The first existing candidate, else ``name`` on PATH; a clear failure when missing."""
    for path in candidates:
        if path.is_file():
            return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} not found (looked in {[str(c) for c in candidates]} and PATH): {INSTALL}",
            pytrace=False,
        )
    return found


def checkov(*target: str, framework: str) -> dict[str, Any]:
    """checkov's JSON report over ``target`` (``-d DIR`` or ``-f FILE``), offline."""
    binary = tool("checkov", ROOT / ".tools" / "checkov" / "bin" / "checkov")
    proc = subprocess.run(
        [
            binary,
            *target,
            "--framework",
            framework,
            "--skip-download",
            "--quiet",
            "--compact",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report
