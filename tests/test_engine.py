"""The engine over real files in a temporary host root, with test doubles for the probes,
the process table and the restart command (the sandbox tests run the real ones)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.host.probes import DnsAnswer, HttpResult
from nodelocaldns_agent.plan import Action, Blocker, Goal
from nodelocaldns_agent.state import Result, Stage
from testing.fakenode import TKE_ENV, FakeNode, tke_node


@pytest.fixture
def tke(tmp_path: Path) -> FakeNode:
    return tke_node(tmp_path)


def test_check_reports_facts_and_diff(tke: FakeNode) -> None:
    rep = tke.engine().check()
    assert rep["proxy_mode"] == "ipvs"
    assert rep["local_dns"]["healthy"] is True
    assert rep["kubelet"]["source"] == "/etc/kubernetes/kubelet"
    assert rep["kubelet"]["format"] == "env"
    assert rep["kubelet"]["cluster_dns"] == ["10.96.0.10"]
    assert rep["kubelet"]["variable"] == "CLUSTER_DNS"
    assert rep["action"] == "migrate"
    assert '-CLUSTER_DNS="--cluster-dns=10.96.0.10"' in rep["diff"]
    assert '+CLUSTER_DNS="--cluster-dns=169.254.20.10"' in rep["diff"]
    assert tke.runner.calls == []
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV


def test_migrate_then_noop_then_revert_is_byte_exact(tke: FakeNode) -> None:
    os.chmod(tke.root / "etc/kubernetes/kubelet", 0o640)
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    migrated = tke.read("/etc/kubernetes/kubelet")
    assert migrated == TKE_ENV.replace(b"=10.96.0.10", b"=169.254.20.10")
    assert (tke.root / "etc/kubernetes/kubelet").stat().st_mode & 0o777 == 0o640
    assert tke.runner.calls == [("restart-kubelet",)]
    journal = json.loads(tke.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["pending"] is None and journal["original_cluster_dns"] == ["10.96.0.10"]
    assert tke.read(journal["backup"]) == TKE_ENV

    again = tke.engine().reconcile(Goal.MIGRATE)
    assert again.state is Result.MIGRATED and again.plan.action is Action.NONE
    assert len(tke.runner.calls) == 1

    back = tke.engine().reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert len(tke.runner.calls) == 2


def test_kubelet_not_coming_back_rolls_back(tke: FakeNode) -> None:
    tke.kubelet_comes_back = False
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.exit_code == 1
    assert out.rolled_back
    assert "not healthy within 5s" in out.error
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert len(tke.runner.calls) == 2  # the change, then the rollback
    journal = json.loads(tke.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["state"] == "failed" and journal["pending"] is None


def killed_after_the_write(tke: FakeNode) -> None:
    """The state a migration leaves when killed right after the rename: the file is
    migrated, the journal says a restart is pending."""
    engine = tke.engine()
    facts = engine.facts()
    assert facts.kubelet is not None
    record = engine._record_for(None, facts.kubelet, Goal.MIGRATE)
    record.pending = "migrate"
    engine.journal.save(record)
    tke.write("/etc/kubernetes/kubelet", TKE_ENV.replace(b"=10.96.0.10", b"=169.254.20.10"))


def test_restart_owed_after_crash_between_write_and_restart(tke: FakeNode) -> None:
    killed_after_the_write(tke)
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED
    assert out.plan.write is False and "restart owed" in out.plan.reason
    assert len(tke.runner.calls) == 1


def test_dns_down_blocks_without_touching_anything(tke: FakeNode) -> None:
    tke.prober.answer = DnsAnswer(False, None, "timeout", "no answer within 2s")
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.BLOCKED and out.exit_code == 3
    assert tke.runner.calls == []
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert not (tke.root / "var/lib/nodelocaldns-agent").exists()


def test_unbound_address_is_never_probed(tke: FakeNode) -> None:
    tke.interfaces.table.pop("nodelocaldns")
    rep = tke.engine().check()
    assert rep["local_dns"]["bound"] is False and rep["action"] == "blocked"
    assert tke.prober.calls == []


def test_symlink_with_absolute_target_is_followed_inside_the_root(tke: FakeNode) -> None:
    link = tke.root / "etc/kubernetes/kubelet"
    link.unlink()
    tke.write("/etc/kubernetes/real/kubelet.env", TKE_ENV)
    link.symlink_to("/etc/kubernetes/real/kubelet.env")
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert link.is_symlink() and os.readlink(link) == "/etc/kubernetes/real/kubelet.env"
    assert b"169.254.20.10" in tke.read("/etc/kubernetes/real/kubelet.env")


def test_config_dir_gets_our_own_dropin_and_revert_removes_it(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.write(
        "/var/lib/kubelet/config.yaml",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
        "clusterDNS:\n- 10.96.0.10\n",
    )
    node.write("/etc/kubernetes/kubelet.conf.d/10-base.conf", "maxPods: 110\n")
    kubelet = node.run_kubelet(
        "/usr/bin/kubelet",
        "--config=/var/lib/kubelet/config.yaml",
        "--config-dir=/etc/kubernetes/kubelet.conf.d",
    )

    def restart(argv: tuple[str, ...]) -> None:
        node.clock.now += 1
        node.run_kubelet(*kubelet.argv)

    node.runner.on_run = restart
    out = node.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    ours = tmp_path / "etc/kubernetes/kubelet.conf.d/99-nodelocaldns-agent.conf"
    assert b"169.254.20.10" in ours.read_bytes()
    assert b"10.96.0.10" in node.read("/var/lib/kubelet/config.yaml")
    out = node.engine().reconcile(Goal.REVERT)
    assert out.state is Result.REVERTED, out.error
    assert not ours.exists()


def test_unparseable_config_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    node = FakeNode(tmp_path)
    node.write("/var/lib/kubelet/config.yaml", "clusterDNS: [10.96.0.10\n")
    with pytest.raises(ConfigError, match=r"/var/lib/kubelet/config\.yaml"):
        node.engine().reconcile(Goal.MIGRATE)
    assert node.runner.calls == []


def test_iptables_node_is_not_needed(tke: FakeNode) -> None:
    tke.interfaces.table.pop("kube-ipvs0")
    tke.http.routes["http://127.0.0.1:10249/proxyMode"] = HttpResult(200, "iptables")
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.NOT_NEEDED and tke.runner.calls == []
    forced = tke.engine(force=True).reconcile(Goal.MIGRATE)
    assert forced.state is Result.MIGRATED


def test_failed_owed_restart_puts_the_journal_original_back(tke: FakeNode) -> None:
    killed_after_the_write(tke)
    tke.kubelet_comes_back = False
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.rolled_back and out.stage is Stage.VERIFY
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV


def test_write_failure_changes_nothing_and_restarts_nothing(
    tke: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nodelocaldns_agent import hostpaths

    real_rename = hostpaths.os.rename

    def rename(src: str, dst: str, **dir_fds: int) -> None:
        if dst == "kubelet":
            raise OSError(28, "No space left on device")
        real_rename(src, dst, **dir_fds)

    monkeypatch.setattr(hostpaths.os, "rename", rename)
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.FAILED and out.stage is Stage.WRITE and not out.restarted
    assert "No space left" in out.error
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV
    assert tke.runner.calls == []


# ---------------------------------------------------------------- dual-stack
DUAL_ENV = TKE_ENV.replace(b"=10.96.0.10", b"=10.96.0.10,fd00:10:96::a")


def test_dual_stack_moves_each_family_to_its_local_address(tke: FakeNode) -> None:
    tke.write("/etc/kubernetes/kubelet", DUAL_ENV)
    tke.interfaces.table["nodelocaldns"] = ("169.254.20.10", "fd00::a")
    rep = tke.engine(local_dns_ipv6="fd00::a").check()
    assert rep["local_dns"]["address"] == "169.254.20.10,fd00::a"
    assert [one["address"] for one in rep["local_dns"]["addresses"]] == [
        "169.254.20.10",
        "fd00::a",
    ]
    assert [server for server, _ in tke.prober.calls] == ["169.254.20.10", "fd00::a"]

    out = tke.engine(local_dns_ipv6="fd00::a").reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV.replace(
        b"=10.96.0.10", b"=169.254.20.10,fd00::a"
    )
    again = tke.engine(local_dns_ipv6="fd00::a").reconcile(Goal.MIGRATE)
    assert again.plan.action is Action.NONE and again.state is Result.MIGRATED
    back = tke.engine(local_dns_ipv6="fd00::a").reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED
    assert tke.read("/etc/kubernetes/kubelet") == DUAL_ENV


def test_dual_stack_waits_for_the_ipv6_listener_too(tke: FakeNode) -> None:
    tke.write("/etc/kubernetes/kubelet", DUAL_ENV)
    rep = tke.engine(local_dns_ipv6="fd00::a").check()
    assert rep["action"] == "blocked" and rep["local_dns"]["bound"] is False
    assert "fd00::a is not bound" in rep["reason"]
    assert [server for server, _ in tke.prober.calls] == ["169.254.20.10"]


def test_dual_stack_without_a_local_ipv6_is_refused_untouched(tke: FakeNode) -> None:
    tke.write("/etc/kubernetes/kubelet", DUAL_ENV)
    out = tke.engine().reconcile(Goal.MIGRATE)
    assert out.state is Result.BLOCKED and out.plan.blocker is Blocker.IP_FAMILY
    assert tke.read("/etc/kubernetes/kubelet") == DUAL_ENV
    assert tke.runner.calls == []


FALLBACK_ENV = TKE_ENV.replace(b"=10.96.0.10", b"=169.254.20.10,10.96.0.10")


def test_fallback_nameserver_migrates_and_reverts_byte_exact(tke: FakeNode) -> None:
    out = tke.engine(fallback_nameserver=True).reconcile(Goal.MIGRATE)
    assert out.state is Result.MIGRATED, out.error
    assert tke.read("/etc/kubernetes/kubelet") == FALLBACK_ENV
    assert tke.processes.running[0].argv[-1] == "--cluster-dns=169.254.20.10,10.96.0.10"
    journal = json.loads(tke.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["original_cluster_dns"] == ["10.96.0.10"]
    again = tke.engine(fallback_nameserver=True).reconcile(Goal.MIGRATE)
    assert again.plan.action is Action.NONE and again.state is Result.MIGRATED
    assert len(tke.runner.calls) == 1
    back = tke.engine(fallback_nameserver=True).reconcile(Goal.REVERT)
    assert back.state is Result.REVERTED
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV


def test_fallback_toggled_converges_and_keeps_the_original(tke: FakeNode) -> None:
    """Turning the setting on or off on a migrated node is a normal change (one restart)
    to the configured form; the journal's original never becomes the migrated value."""
    assert tke.engine().reconcile(Goal.MIGRATE).state is Result.MIGRATED
    on = tke.engine(fallback_nameserver=True).reconcile(Goal.MIGRATE)
    assert on.state is Result.MIGRATED and on.plan.write, on.error
    assert tke.read("/etc/kubernetes/kubelet") == FALLBACK_ENV
    off = tke.engine().reconcile(Goal.MIGRATE)
    assert off.state is Result.MIGRATED and off.plan.write, off.error
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV.replace(b"=10.96.0.10", b"=169.254.20.10")
    assert len(tke.runner.calls) == 3
    journal = json.loads(tke.read("/var/lib/nodelocaldns-agent/state.json"))
    assert journal["original_cluster_dns"] == ["10.96.0.10"]
    assert tke.read(journal["backup"]) == TKE_ENV
    tke.engine(fallback_nameserver=True).reconcile(Goal.MIGRATE)
    assert tke.engine().reconcile(Goal.REVERT).state is Result.REVERTED
    assert tke.read("/etc/kubernetes/kubelet") == TKE_ENV


def test_fallback_on_a_node_migrated_by_hand_is_refused_untouched(tke: FakeNode) -> None:
    by_hand = TKE_ENV.replace(b"=10.96.0.10", b"=169.254.20.10")
    tke.write("/etc/kubernetes/kubelet", by_hand)
    out = tke.engine(fallback_nameserver=True).reconcile(Goal.MIGRATE)
    assert out.state is Result.BLOCKED and out.plan.blocker is Blocker.NO_ORIGINAL
    assert "--fallback-nameserver" in out.plan.reason
    assert tke.read("/etc/kubernetes/kubelet") == by_hand and tke.runner.calls == []
