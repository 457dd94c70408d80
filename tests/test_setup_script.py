"""scripts/setup.sh and scripts/demo.sh on what a stock Debian 12 leaves behind (issue 16).

On a stock Debian 12 ``python3 -m venv .venv`` fails ("ensurepip is not available") after
making ``.venv/bin/python``; the old setup then reused that half-made venv
(``.venv/bin/pip: No such file or directory``). ``demo.sh --help`` ran the whole setup
before printing anything. The scripts run here in a copy of the repository's scripts with
stand-ins on PATH for ``dpkg-query`` and ``python3`` (nothing is installed);
``.ci/fresh-debian.sh`` proves the same on a real stock Debian 12.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a Python whose every command works (``--version`` prints one); logs its argv
GOOD_PY = """#!/bin/bash
echo "venv-python $*" >> "$SETUP_LOG"
[ "$1" = --version ] && echo "Python 3.11.2"
exit 0
"""
#: the half-made venv's interpreter after a failed ``python3 -m venv``: nothing runs
BROKEN_PY = "#!/bin/bash\nexit 1\n"
#: ``python3``: ``-m venv DIR`` makes DIR/bin/python a GOOD_PY
PYTHON3 = """#!/bin/bash
echo "python3 $*" >> "$SETUP_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$GOOD_PY" "$3/bin/python"; fi
"""
#: every Debian package counts as installed
DPKG_QUERY = "#!/bin/bash\nprintf 'install ok installed'\n"
#: ``.ci/install-tools.sh``: logs what it was asked for
INSTALL_TOOLS = """#!/bin/bash
echo "install-tools $*" >> "$SETUP_LOG"
"""


def _script(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the scripts with a pyproject.toml, and stand-ins on PATH."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    _script(copy / ".ci" / "install-tools.sh", INSTALL_TOOLS)
    (copy / "pyproject.toml").write_text("", encoding="utf-8")
    stubs = tmp_path / "stubs"
    _script(stubs / "python3", PYTHON3)
    _script(stubs / "dpkg-query", DPKG_QUERY)
    _script(tmp_path / "good-python", GOOD_PY)
    return copy


def _run(repo: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    tmp = repo.parent
    env = {
        "PATH": f"{tmp / 'stubs'}:{os.environ['PATH']}",
        "SETUP_LOG": str(tmp / "log"),
        "GOOD_PY": str(tmp / "good-python"),
    }
    return subprocess.run(
        ["bash", *argv],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _log(repo: Path) -> list[str]:
    log = repo.parent / "log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


@pytest.mark.parametrize(
    ("venv_python", "expected_step", "made_anew"),
    [
        (None, "setup: python3 -m venv .venv", True),
        (BROKEN_PY, "setup: .venv has no working python/pip", True),
        (GOOD_PY, "setup: .venv present (Python 3.11.2)", False),
    ],
    ids=["no-venv", "half-made-venv", "working-venv"],
)
def test_setup_demo_makes_a_working_venv(
    repo: Path, venv_python: str | None, expected_step: str, made_anew: bool
) -> None:
    if venv_python is not None:
        _script(repo / ".venv/bin/python", venv_python)
    proc = _run(repo, "scripts/setup.sh", "demo")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert any(line.startswith(expected_step) for line in lines), lines
    assert all(line.startswith("setup: ") for line in lines), lines  # one line per step
    assert ("python3 -m venv .venv" in _log(repo)) is made_anew
    # the demo's packages only: rich for its live view, no test extras, and of the test
    # tools helm alone (its nodes run node-cache with the Corefile and arguments rendered
    # from the chart)
    assert any(
        entry.startswith("venv-python -m pip install") and entry.endswith("-e .[plugin]")
        for entry in _log(repo)
    ), _log(repo)
    assert [e for e in _log(repo) if e.startswith("install-tools")] == ["install-tools helm"]
    assert (repo / ".venv/.installed-demo").exists()


def test_setup_demo_second_run_only_checks(repo: Path) -> None:
    assert _run(repo, "scripts/setup.sh", "demo").returncode == 0
    (repo.parent / "log").unlink()
    proc = _run(repo, "scripts/setup.sh", "demo")
    assert proc.returncode == 0, proc.stderr
    assert "setup: pip: .venv up to date for demo" in proc.stderr.splitlines()
    # nothing installed again (install-tools.sh itself only checks a present, verified helm)
    assert not any("pip install" in e or "-m venv" in e for e in _log(repo)), _log(repo)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_demo_help_sets_nothing_up(repo: Path, flag: str) -> None:
    proc = _run(repo, "scripts/demo.sh", flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert _log(repo) == []
    assert not (repo / ".venv").exists()
    text = proc.stdout
    for needed in ("usage: bash scripts/demo.sh", "How long", "ends by itself", "Ctrl-C"):
        assert needed in text, text


def test_setup_test_installs_the_docs_extra(repo: Path) -> None:
    """The pictures' test (tests/test_pictures.py) needs matplotlib: the test setup
    installs the ``docs`` extra beside ``test``; the demo's does not (it never draws)."""
    proc = _run(repo, "scripts/setup.sh", "test")
    assert proc.returncode == 0, proc.stderr
    installs = [e for e in _log(repo) if e.startswith("venv-python -m pip install")]
    assert any(e.endswith("-e .[test,docs]") for e in installs), installs


def test_matplotlib_only_in_the_docs_extra() -> None:
    """Not a runtime dependency of the agent (nor in its image's lock), not the demo's."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert [d for d in extras["docs"] if d.startswith("matplotlib")]
    others = [*project["dependencies"], *extras["plugin"]]
    assert not [d for d in others if "matplotlib" in d]
    assert "matplotlib" not in (ROOT / "requirements.lock").read_text()
