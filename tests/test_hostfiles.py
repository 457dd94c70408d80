"""Host paths under one root and atomic writes: symlinks (absolute targets re-rooted,
loops), non-regular files, size caps, mode/owner preservation, failures mid-write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodelocaldns_agent import hostpaths
from nodelocaldns_agent.errors import ConfigError, HostError, UnsafeWriteError
from nodelocaldns_agent.host.files import FileJournal, Record
from nodelocaldns_agent.hostpaths import MAX_FILE_BYTES, Expected, HostRoot


@pytest.fixture
def host(tmp_path: Path) -> HostRoot:
    (tmp_path / "etc/kubernetes").mkdir(parents=True)
    return HostRoot(tmp_path)


def test_absolute_symlink_is_rerooted(host: HostRoot) -> None:
    real = host.root / "etc/kubernetes/real.env"
    real.write_text("X=1\n")
    (host.root / "etc/kubernetes/kubelet").symlink_to("/etc/kubernetes/real.env")
    assert host.resolve("/etc/kubernetes/kubelet") == real
    assert host.read_bytes("/etc/kubernetes/kubelet") == b"X=1\n"


def test_symlinked_directory_and_dotdot_never_escape(host: HostRoot) -> None:
    (host.root / "opt/k").mkdir(parents=True)
    (host.root / "opt/k/c.yaml").write_text("a: 1\n")
    (host.root / "etc/kubernetes/conf").symlink_to("../../opt/k")
    assert host.resolve("/etc/kubernetes/conf/c.yaml") == host.root / "opt/k/c.yaml"
    (host.root / "etc/up").symlink_to("../../../../../etc")
    assert host.resolve("/etc/up/passwd") == host.root / "etc/passwd"


def test_symlink_loop_is_a_clear_error(host: HostRoot) -> None:
    (host.root / "etc/a").symlink_to("/etc/b")
    (host.root / "etc/b").symlink_to("/etc/a")
    with pytest.raises(ConfigError, match="symbolic links"):
        host.read_bytes("/etc/a")


def test_directory_fifo_and_huge_file_are_refused(host: HostRoot) -> None:
    with pytest.raises(ConfigError, match="found a directory"):
        host.read_bytes("/etc/kubernetes")
    os.mkfifo(host.root / "etc/fifo")
    with pytest.raises(ConfigError, match="not a regular file"):
        host.read_bytes("/etc/fifo")
    big = host.root / "etc/big"
    with big.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ConfigError, match="limit"):
        host.read_bytes("/etc/big")
    with pytest.raises(ConfigError, match="cannot open"):
        host.read_bytes("/etc/missing")
    with pytest.raises(ConfigError, match="absolute"):
        host.resolve("etc/relative")


def test_write_keeps_mode_and_owner(host: HostRoot) -> None:
    target = host.root / "etc/kubernetes/kubelet"
    target.write_bytes(b"old")
    os.chmod(target, 0o444)
    os.chown(target, 65534, 65534)
    host.write_file("/etc/kubernetes/kubelet", b"new", expect=Expected.of(b"old"))
    st_ = target.stat()
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(st_.st_mode) == 0o444
    assert (st_.st_uid, st_.st_gid) == (65534, 65534)
    assert [p.name for p in target.parent.iterdir()] == ["kubelet"]


def test_failed_rename_leaves_the_original_and_no_temp_file(
    host: HostRoot, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = host.root / "etc/kubernetes/kubelet"
    target.write_bytes(b"original")

    def boom(src: str, dst: str, **dir_fds: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hostpaths.os, "rename", boom)
    with pytest.raises(HostError, match="No space left"):
        host.write_file("/etc/kubernetes/kubelet", b"new", expect=Expected.of(b"original"))
    assert target.read_bytes() == b"original"
    assert [p.name for p in target.parent.iterdir()] == ["kubelet"]


def test_write_refuses_a_directory(host: HostRoot) -> None:
    (host.root / "etc/kubernetes/d").mkdir()
    with pytest.raises(UnsafeWriteError, match="regular file"):
        host.write_file("/etc/kubernetes/d", b"x", expect=Expected.of(None))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096))
def test_corrupt_journal_is_a_config_error(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        host = HostRoot(Path(d))
        journal = FileJournal(host, "/var/lib/nodelocaldns-agent")
        (Path(d) / "var/lib/nodelocaldns-agent").mkdir(parents=True)
        (Path(d) / "var/lib/nodelocaldns-agent/state.json").write_bytes(data)
        try:
            record = journal.load()
        except ConfigError as exc:
            assert "state.json" in str(exc)
        else:
            assert record is None or isinstance(record, Record)


def test_journal_round_trip_and_original_copies(host: HostRoot) -> None:
    journal = FileJournal(host, "/var/lib/nodelocaldns-agent")
    first = journal.keep_original("/etc/kubernetes/kubelet", b"A")
    assert journal.keep_original("/etc/kubernetes/kubelet", b"A") == first
    second = journal.keep_original("/etc/kubernetes/kubelet", b"B")
    assert first != second
    assert host.read_bytes(first) == b"A" and host.read_bytes(second) == b"B"
    assert journal.keep_original("/x", None) == ""
    rec = Record("/etc/kubernetes/kubelet", "env", ["10.96.0.10"], "abc", first, pending="migrate")
    journal.save(rec)
    assert journal.load() == rec
    mode = stat.S_IMODE((host.root / "var/lib/nodelocaldns-agent/state.json").stat().st_mode)
    assert mode == 0o600


def test_a_temp_file_left_by_a_killed_write_is_removed_by_the_next(host: HostRoot) -> None:
    directory = host.root / "etc/kubernetes"
    (directory / "kubelet").write_bytes(b"old")
    (directory / ".kubelet.abc123.tmp").write_bytes(b"half")
    (directory / ".other.abc123.tmp").write_bytes(b"not ours")
    host.write_file("/etc/kubernetes/kubelet", b"new", expect=Expected.of(b"old"))
    assert sorted(p.name for p in directory.iterdir()) == [".other.abc123.tmp", "kubelet"]
