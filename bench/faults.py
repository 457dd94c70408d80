"""Crash at any point: SIGKILL ``migrate --once`` / ``revert --once`` mid-flight (not a test).

On one sandbox node (:class:`FaultNode`, a ``testing.sandbox.SandboxNode``: its own
pid/mount/net namespaces, the TKE layout under a fake host root, the real node-cache on
169.254.20.10 (configured by the chart, a dnsmasq behind it as the cluster DNS), a kubelet
stand-in serving /healthz, a recording ``systemctl``), every run:

1. resets the node to its starting state (original bytes for ``migrate``; the state left by
   a clean migration for ``revert``) with kubelet running on it;
2. runs ``python -m nodelocaldns_agent <goal> --once --log-format json`` in the node and
   SIGKILLs it either right after it logs a given ``step=`` (journal, backup, written, restart,
   restarted, verified, done, rollback, restored; ``restart#2`` is the second one, during a
   rollback) or after a random delay. The restart command is a stand-in that sleeps
   ``--restart-delay`` seconds before ``systemctl restart kubelet``, so that kills land
   during the restart and during the verification; in "rollback" runs the first kubelet
   it starts does not come back, so the rollback steps are reached;
3. checks the kubelet file is exactly the original or exactly the migrated bytes, and that
   the original is recoverable (the file is the original, or the journal names a backup
   copy holding exactly the original bytes);
4. runs the agent again without faults and checks it converges (exit 0, the goal's bytes,
   kubelet running with the goal's cluster DNS) with at most one kubelet restart.

    python bench/faults.py --runs 200 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import JSON, emit, machine
from testing.sandbox.constants import CLUSTER_DNS, DEFAULT_RESTART, LOCAL_DNS, STATE_DIR
from testing.sandbox.node import RunResult, SandboxNode

#: steps each path logs, in order (``#2``: the second time, i.e. the rollback's restart;
#: with a kubelet that fails, the first ``verified`` is the rollback's)
_RESTART = ["written", "restart", "restarted"]
_ROLLBACK = ["rollback", "restored", "restart#2", "restarted#2", "verified"]
STEPS = {
    ("migrate", False): ["backup", "journal", *_RESTART, "verified", "done"],
    ("migrate", True): ["backup", "journal", *_RESTART, *_ROLLBACK],
    ("revert", False): ["journal", *_RESTART, "verified", "done"],
    ("revert", True): ["journal", *_RESTART, *_ROLLBACK],
}
#: what runs in a quiet node (see FaultNode.wait_quiet)
NODE_DAEMONS = (
    "kubelet_standin",
    "standins.py",
    "node-cache",
    "dnsmasq",
    "init.sh",
    "sleep 3600",
)
STANDIN = """#!/bin/sh
# The agent's restart command in bench/faults.py: wait, then restart kubelet through the
# node's systemctl. With {fail_next} present, the kubelet it starts does not come back.
echo "$$" >> {log}
sleep "$(cat {delay} 2>/dev/null || echo 0)"
if [ -e {fail_next} ]; then rm -f {fail_next}; echo fault > {kubelet_fail}
else rm -f {kubelet_fail}; fi
exec {restart}
"""


@dataclass(frozen=True)
class Plan:
    goal: str
    failing: bool
    #: "step:<name>[#n]" or "delay:<seconds>"
    kill: str


class FaultNode(SandboxNode):
    """A TKE sandbox node whose agent restarts kubelet through a slow stand-in that can
    make the next kubelet fail; plus the states and checks of the crash harness."""

    def __init__(self, workdir: Path, restart_delay: float, verify_timeout: float) -> None:
        super().__init__(workdir / "node", name="faults-node", layout="tke")
        self.verify_timeout = verify_timeout
        self.restart_delay = restart_delay
        self.fail_next = self.workdir / "fail-next-restart"
        self.delay_file = self.workdir / "restart-delay"
        self.standin = self.files.bin / "restart-standin"
        self.state_dir = self.path(STATE_DIR)
        self.migrated = b""
        self.migrated_state: dict[str, bytes] = {}

    def _install_standins(self) -> None:
        super()._install_standins()
        self.standin.write_text(
            STANDIN.format(
                log=self.files.log("restart-standin"),
                delay=self.delay_file,
                fail_next=self.fail_next,
                kubelet_fail=self.files.kubelet_fail,
                restart=shlex.join(DEFAULT_RESTART),
            )
        )
        self.standin.chmod(0o755)
        self.delay_file.write_text(f"{self.restart_delay}\n")

    # ------------------------------------------------------------ the agent
    def argv(self, goal: str, verify_timeout: float | None = None) -> list[str]:
        return self.agent_argv(
            goal,
            "--once",
            "--restart-command",
            str(self.standin),
            "--verify-timeout",
            str(verify_timeout or self.verify_timeout),
            "--log-format",
            "json",
            "--json",
        )

    def converge(self, goal: str) -> RunResult:
        """The agent run to the goal without faults."""
        return self.run_agent(self.argv(goal, verify_timeout=20.0), timeout=120)

    # ------------------------------------------------------------ states
    def prepare(self) -> float:
        """A clean migration, to learn the migrated bytes and state; returns its seconds."""
        t0 = time.monotonic()
        result = self.converge("migrate")
        took = time.monotonic() - t0
        if result.returncode != 0:
            raise RuntimeError(f"clean migrate failed: {result.stdout}{result.stderr}")
        self.migrated = self.dns_file.read_bytes()
        self.migrated_state = {
            str(p.relative_to(self.state_dir)): p.read_bytes()
            for p in self.state_dir.rglob("*")
            if p.is_file()
        }
        return took

    def reset(self, goal: str) -> None:
        """Original (migrate) or cleanly migrated (revert) files, kubelet running on them."""
        self.wait_quiet()
        self.fail_next.unlink(missing_ok=True)
        self.set_kubelet_fault(False)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        if goal == "migrate":
            self.dns_file.write_bytes(self.original)
        else:
            self.dns_file.write_bytes(self.migrated)
            for rel, data in self.migrated_state.items():
                path = self.state_dir / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        want = [LOCAL_DNS] if goal == "revert" else [CLUSTER_DNS]
        report = self.kubelet() or {}
        if self.kubelet_dns() != want or not report.get("healthz") or self.kubelet_pid() is None:
            self.systemctl("restart", "kubelet", quiet=True, check=True)
            self.wait_kubelet(previous_pid=report.get("pid"))

    def wait_quiet(self, timeout: float = 20.0) -> bool:
        """Wait until nothing the killed agent started still runs in the node: its restart
        stand-in finishes the restart like systemd finishes a job whoever asked for it
        (a fork not yet exec'd still looks like the agent, so only the node's own daemons
        count as quiet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            with contextlib.suppress(psutil.Error):
                for proc in psutil.Process(self.init_pid).children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        line = " ".join(proc.cmdline())
                        if proc.status() != psutil.STATUS_ZOMBIE and not any(
                            daemon in line for daemon in NODE_DAEMONS
                        ):
                            busy = True
                            break
            if not busy:
                return True
            time.sleep(0.02)
        return False

    # ------------------------------------------------------------ checks
    def check_after_kill(self) -> list[str]:
        """Problems with the node as the killed agent left it ([] when none)."""
        problems = []
        data = self.dns_file.read_bytes() if self.dns_file.exists() else None
        if data not in (self.original, self.migrated):
            problems.append(f"kubelet file is neither original nor migrated: {data!r:.120}")
        if data != self.original:
            record = self.journal()
            backup = (record or {}).get("backup") or ""
            copy = self.path(backup) if backup else None
            if record is None or record.get("corrupt"):
                problems.append(f"original not recoverable: journal {record}")
            elif copy is None or not copy.is_file() or copy.read_bytes() != self.original:
                problems.append(f"original not recoverable: backup {backup!r} missing or different")
        return problems

    def leftover_temp_files(self, remove: bool = False) -> int:
        """Temporary files of an interrupted atomic write next to the kubelet file or in the
        state directory (harmless: the real files are never touched by them)."""
        found = [
            p
            for d in (self.dns_file.parent, self.state_dir)
            if d.is_dir()
            for p in d.rglob(".*.tmp")
        ]
        if remove:
            for path in found:
                path.unlink(missing_ok=True)
        return len(found)


def read_lines(stream: Any, out: queue.Queue[tuple[float, str]]) -> None:
    for line in iter(stream.readline, ""):
        out.put((time.monotonic(), line))
    out.put((time.monotonic(), ""))


def step_of(line: str) -> str | None:
    try:
        body = json.loads(line)
    except ValueError:
        return None
    return body.get("step") if isinstance(body, dict) else None


def faulted_run(fn: FaultNode, plan: Plan) -> JSON:
    """Start the agent, kill it as planned; what happened."""
    if plan.failing:
        fn.fail_next.write_text("1\n")
    proc = fn.spawn_agent(fn.argv(plan.goal), stdout=subprocess.PIPE)
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    t0 = time.monotonic()
    kind, _, what = plan.kill.partition(":")
    name, _, nth = what.partition("#")
    wanted = int(nth or 1)
    deadline = t0 + (float(what) if kind == "delay" else 60.0)
    seen: list[str] = []
    killed_at = ""
    while True:
        timeout = deadline - time.monotonic()
        try:
            _, line = lines.get(timeout=max(timeout, 0.0)) if timeout > 0 else (0.0, None)
        except queue.Empty:
            line = None
        if line is None:  # the deadline
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed_at = f"after {seen[-1]}" if seen else "before any step"
            break
        if line == "":  # the agent exited by itself
            break
        step = step_of(line)
        if step:
            seen.append(step)
            if kind == "step" and step == name and seen.count(step) == wanted:
                proc.send_signal(signal.SIGKILL)
                killed_at = f"at {plan.kill.partition(':')[2]}"
                break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    reader.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return {
        "killed": bool(killed_at),
        "killed_at": killed_at or "exited",
        "steps": seen,
        "seconds": round(time.monotonic() - t0, 3),
        "returncode": proc.returncode,
    }


def one_run(fn: FaultNode, plan: Plan) -> JSON:
    fn.reset(plan.goal)
    faulted = faulted_run(fn, plan)
    quiet = fn.wait_quiet()
    problems = fn.check_after_kill()
    temp_files = fn.leftover_temp_files()
    if not quiet:
        problems.append("a restart of the killed agent was still running after 20 s")
    fn.fail_next.unlink(missing_ok=True)
    before = len(fn.restarts())
    result = fn.converge(plan.goal)
    restarts = len(fn.restarts()) - before
    want = fn.migrated if plan.goal == "migrate" else fn.original
    want_dns = [LOCAL_DNS] if plan.goal == "migrate" else [CLUSTER_DNS]
    if result.returncode != 0:
        problems.append(f"converging run exited {result.returncode}: {result.stdout[-300:]}")
    if fn.dns_file.read_bytes() != want:
        problems.append("converging run left the wrong bytes")
    if fn.kubelet_dns() != want_dns:
        problems.append(
            f"kubelet runs with {fn.kubelet_dns()} after converging, expected {want_dns}"
        )
    if restarts > 1:
        problems.append(f"converging run restarted kubelet {restarts} times")
    return {
        **faulted,
        "restarts_to_converge": restarts,
        "problems": problems,
        "temp_files_left": temp_files,
        # the agent removes its own leftovers on its next write into that directory
        "temp_files_after_converge": fn.leftover_temp_files(remove=True),
    }


def make_plans(runs: int, rng: random.Random, typical: float) -> list[Plan]:
    """Every step of every path in turn, interleaved with random-delay kills (1 in 3)."""
    steps = [
        Plan(goal, failing, f"step:{s}") for (goal, failing), names in STEPS.items() for s in names
    ]
    plans: list[Plan] = []
    cursor = 0
    for i in range(runs):
        if i % 3 == 2:
            goal = rng.choice(("migrate", "revert"))
            failing = rng.random() < 0.25
            limit = typical * (2.5 if failing else 1.2)
            plans.append(Plan(goal, failing, f"delay:{rng.uniform(0.0, limit):.3f}"))
        else:
            plans.append(steps[cursor % len(steps)])
            cursor += 1
    return plans


def kill_point(run: JSON, plan: Plan) -> str:
    """``<goal> <step>`` (``+fail``: kubelet does not come back, so the rollback runs),
    or ``<goal> random: after <last step logged>``."""
    where = f"{plan.goal}{'+fail' if plan.failing else ''}"
    if plan.kill.startswith("step:"):
        step = plan.kill.partition(":")[2]
        return f"{where} {step}" if run["killed"] else f"{where} {step}: exited before it"
    if not run["killed"]:
        return f"{where} random: exited first"
    return f"{where} random: {run['killed_at']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--restart-delay",
        type=float,
        default=0.3,
        help="seconds the restart stand-in waits before restarting kubelet",
    )
    p.add_argument(
        "--verify-timeout",
        type=float,
        default=2.0,
        help="--verify-timeout of the faulted runs (rollback runs wait for it)",
    )
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)  # noqa: S311 - reproducible plans, not crypto
    workdir = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    started = time.monotonic()
    fn = FaultNode(workdir, args.restart_delay, args.verify_timeout)
    try:
        fn.start()
        typical = fn.prepare()
        plans = make_plans(args.runs, rng, typical)
        runs: list[JSON] = []
        for i, plan in enumerate(plans):
            run = one_run(fn, plan)
            run.update(
                goal=plan.goal,
                failing=plan.failing,
                plan=plan.kill,
                kill_point=kill_point(run, plan),
            )
            runs.append(run)
            if not args.quiet and (run["problems"] or (i + 1) % 20 == 0):
                print(
                    f"faults: {i + 1}/{len(plans)} {plan} -> {run['killed_at']}"
                    f"{' PROBLEMS ' + str(run['problems']) if run['problems'] else ''}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        fn.close()
        shutil.rmtree(workdir, ignore_errors=True)
    bad = [r for r in runs if r["problems"]]
    points = Counter(r["kill_point"] for r in runs)
    result = {
        "benchmark": "faults",
        "runs": len(runs),
        "killed": sum(1 for r in runs if r["killed"]),
        "bad_states": len(bad),
        "max_restarts_to_converge": max((r["restarts_to_converge"] for r in runs), default=0),
        "kill_points": dict(sorted(points.items())),
        "by_goal": dict(
            Counter(f"{r['goal']}{' (kubelet fails)' if r['failing'] else ''}" for r in runs)
        ),
        "temp_files_left_by_kills": sum(r["temp_files_left"] for r in runs),
        "temp_files_left_after_converging": sum(r["temp_files_after_converge"] for r in runs),
        "restarts_to_converge": dict(
            sorted(Counter(str(r["restarts_to_converge"]) for r in runs).items())
        ),
        "problems": [
            {
                "plan": r["plan"],
                "goal": r["goal"],
                "failing": r["failing"],
                "steps": r["steps"],
                "problems": r["problems"],
            }
            for r in bad[:10]
        ],
        "settings": {
            "restart_delay": args.restart_delay,
            "verify_timeout": args.verify_timeout,
            "seed": args.seed,
            "clean_migrate_seconds": round(typical, 2),
        },
        "targets": {"bad_states": "== 0", "max_restarts_to_converge": "<= 1"},
        "verdict": {
            "bad_states": "pass" if not bad else "FAIL",
            "max_restarts_to_converge": "pass"
            if all(r["restarts_to_converge"] <= 1 for r in runs)
            else "FAIL",
        },
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine(),
    }
    emit(result, args.json)
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
