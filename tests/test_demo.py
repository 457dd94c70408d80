"""The README's main job: ``bash scripts/demo.sh`` runs ``python -m testing.demo``, which
must migrate three sandboxed nodes, revert them and leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.netns


def _left_over(workdir: Path) -> list[str]:
    """Processes still running from the demo's work directory (its nodes, agents, relays
    and API server all start there)."""
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(workdir) in cmdline:
            left.append(cmdline)
    return left


@pytest.mark.timeout(300)
def test_demo_migrates_reverts_and_cleans_up(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "testing.demo", "--workdir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"{out}\n{proc.stderr}"
    for name in ("node-1", "node-2", "node-3"):
        assert f"{name}: kubelet now runs with --cluster-dns=169.254.20.10" in out, out
        assert f"{name}: kubelet back on --cluster-dns=10.96.0.10" in out, out
    assert "node-3 waits: its local DNS does not answer" in out
    assert _left_over(workdir) == []


def test_demo_help_starts_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "testing.demo", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "--prometheus" in proc.stdout and "--workdir" in proc.stdout
