"""What each plugin command does: the plugin's composition root (the API client is built
here, from the user's kubeconfig), over ``fleet``, ``rollout`` and ``preflight``.

RBAC the user needs: nodes list; leases list in the agent's namespace; daemonsets
list/get (and patch for the switches); configmaps get (the agents' ConfigMap, and
kube-system/kube-proxy for preflight); for preflight also services and endpoints get,
pods list, namespaces get, validatingadmissionpolicies list.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from nodelocaldns_agent.errors import ConfigError
from nodelocaldns_agent.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from nodelocaldns_agent.fleet import MODE_ENV, mode_patch, node_rows, render_status
from nodelocaldns_agent.kube.api import (
    ADMISSION_POLICIES,
    CONFIGMAP,
    ENDPOINTS,
    LEASE_LABEL,
    LEASE_LABEL_VALUE,
    NAMESPACE,
    SERVICE,
    VERSION,
    ApiError,
    KubeApi,
    context_namespace,
    current_context,
    load_config,
)
from nodelocaldns_agent.kube.types import LeaseView
from nodelocaldns_agent.plugin import preflight, rollout
from nodelocaldns_agent.plugin.args import Args
from nodelocaldns_agent.settings import RunSettings, env_name
from nodelocaldns_agent.state import MODE_LABEL, Mode

APP = "nodelocaldns-agent"
#: where the chart's README installs it; used when neither -n nor the context names one
DEFAULT_NAMESPACE = "kube-system"
LIMIT_ENV = env_name("--max-concurrent-restarts")
UPSTREAM_DEFAULT = "kube-dns-upstream"
#: what each switch sets the agents' mode to
SWITCH_MODE = {"revert": Mode.REVERT, "pause": Mode.OBSERVE, "resume": Mode.MIGRATE}


def selector(component: str) -> str:
    return f"app.kubernetes.io/name={APP},app.kubernetes.io/component={component}"


@dataclass(frozen=True)
class Target:
    api: KubeApi
    namespace: str
    #: the namespace was named (-n) rather than taken from the context or the default
    named: bool


def connect(args: Args, environ: dict[str, str] | None = None) -> Target:
    """The API client as kubectl would build it: ``--kubeconfig``, else ``$KUBECONFIG``
    (``:``-separated files, merged), else ``~/.kube/config``; ``--context`` else the
    current context; ``-n`` else the context's namespace, else kube-system."""
    env = os.environ if environ is None else environ
    kubeconfig = (
        args.kubeconfig or env.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
    )
    context = args.context or current_context(kubeconfig)
    api = KubeApi(load_config(kubeconfig, context))
    if args.namespace:
        return Target(api, args.namespace, True)
    return Target(api, context_namespace(kubeconfig, context) or DEFAULT_NAMESPACE, False)


def find_daemonset(target: Target, name: str | None, component: str = "agent") -> dict[str, Any]:
    """The agent DaemonSet: by name, else the one labelled as the chart labels it; when the
    namespace came from the context and has none, kube-system is looked at too."""
    if name:
        return target.api.get_daemonset(target.namespace, name)
    namespaces = [target.namespace]
    if not target.named and target.namespace != DEFAULT_NAMESPACE:
        namespaces.append(DEFAULT_NAMESPACE)
    for namespace in namespaces:
        found = target.api.list_daemonsets(namespace, selector(component))
        if len(found) > 1:
            names = ", ".join(str(d["metadata"]["name"]) for d in found)
            raise ConfigError(
                f"several {component} DaemonSets in {namespace} ({names}): "
                "name one with --daemonset"
            )
        if found:
            return found[0]
    raise ConfigError(
        f"no DaemonSet labelled {selector(component)} in {' or '.join(namespaces)}: "
        "name the agent's namespace with -n (and its DaemonSet with --daemonset)"
    )


def _container_env(ds: dict[str, Any], name: str) -> tuple[str | None, list[str]]:
    """A variable's value in the DaemonSet's first container, and the ConfigMaps its
    ``envFrom`` reads (where the chart puts every other setting)."""
    containers = ds.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or [{}]
    first = containers[0]
    value = next((v.get("value") for v in first.get("env") or [] if v.get("name") == name), None)
    maps = [
        str(s["configMapRef"]["name"]) for s in first.get("envFrom") or [] if s.get("configMapRef")
    ]
    return value, maps


def agent_mode(ds: dict[str, Any]) -> str:
    value, _ = _container_env(ds, MODE_ENV)
    return value or RunSettings.mode.value


def restart_limit(target: Target, ds: dict[str, Any]) -> int | None:
    """``--max-concurrent-restarts`` of the agents: in the pod spec, else their ConfigMap,
    else the default; None when it is no number."""
    value, maps = _container_env(ds, LIMIT_ENV)
    namespace = str(ds["metadata"].get("namespace") or target.namespace)
    for name in maps if value is None else []:
        try:
            cm = target.api.read(CONFIGMAP, namespace=namespace, name=name) or {}
        except ApiError as exc:
            if exc.status != 403:
                raise
            return None  # no right to read the ConfigMap: shown as "?"
        value = (cm.get("data") or {}).get(LIMIT_ENV, value)
    try:
        return int(value) if value is not None else RunSettings.max_concurrent_restarts
    except ValueError:
        return None


# ---------------------------------------------------------------- status
@dataclass
class Snapshot:
    nodes: list[dict[str, Any]]
    leases: list[LeaseView]
    limit: int | None


def read_fleet(target: Target, ds: dict[str, Any] | None) -> Snapshot:
    namespace = str(ds["metadata"].get("namespace")) if ds else target.namespace
    leases, _ = target.api.list_leases(namespace, f"{LEASE_LABEL}={LEASE_LABEL_VALUE}")
    limit = restart_limit(target, ds) if ds else None
    return Snapshot(target.api.list_nodes(), leases, limit)


def render(snap: Snapshot, output: str, now: float) -> tuple[str, bool]:
    """``status -o``: the table (with the rollout line), wide, JSON or YAML."""
    r = rollout.summarize(node_rows(snap.nodes), snap.leases, snap.limit, now)
    if output in ("json", "yaml"):
        body = {
            "nodes": node_rows(snap.nodes),
            "summary": dict(r.counts),
            "rollout": r.as_dict(),
        }
        text = json.dumps(body, indent=2) if output == "json" else yaml.safe_dump(body)
        return text.rstrip("\n"), bool(r.failed)
    table, failed = render_status(snap.nodes, output)
    return f"{table}\n{rollout.plain_line(r)}", failed


class Viewer(Protocol):
    def show(self, r: rollout.Rollout) -> None: ...
    def close(self) -> None: ...


#: lines shown under the rollout on every redraw (a caller's own facts, e.g. the demo's
#: per-node states and its pods' lookup counter); read once per view
Footer = Callable[[], Sequence[str]]


def no_footer() -> Sequence[str]:
    return ()


class LineViewer:
    """Not a terminal: one plain line per change (the footer's lines joined onto it),
    nothing redrawn."""

    def __init__(self, stream: TextIO, footer: Footer = no_footer) -> None:
        self.stream = stream
        self.footer = footer
        self.last = ""

    def show(self, r: rollout.Rollout) -> None:
        line = " | ".join([rollout.plain_line(r), *self.footer()])
        if line != self.last:
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {line}", file=self.stream, flush=True)
            self.last = line

    def close(self) -> None:
        pass


class LiveViewer:
    """A terminal: one view, redrawn in place (``rich.live.Live``)."""

    def __init__(self, console: Any, title: str, footer: Footer = no_footer) -> None:
        from rich.live import Live

        self.title = title
        self.footer = footer
        self.live = Live(console=console, auto_refresh=False)
        self.live.start()

    def show(self, r: rollout.Rollout) -> None:
        from rich.console import Group
        from rich.text import Text

        view = rollout.renderable(r, self.title)
        lines = [Text(line) for line in self.footer()]
        self.live.update(Group(view, *lines) if lines else view, refresh=True)

    def close(self) -> None:
        self.live.stop()


def viewer_for(stream: TextIO, title: str, footer: Footer = no_footer) -> Viewer:
    """The live view on a terminal when ``rich`` is installed (the ``plugin`` extra);
    plain lines otherwise. ``footer``: extra lines under the view (none for ``status -w``)."""
    if not stream.isatty():
        return LineViewer(stream, footer)
    try:
        from rich.console import Console
    except ImportError:
        print(
            "note: the live view needs rich: pip install 'nodelocaldns-agent[plugin]'",
            file=sys.stderr,
        )
        return LineViewer(stream, footer)
    return LiveViewer(Console(file=stream), title, footer)


def watch(
    read: Callable[[], Snapshot],
    viewer: Viewer,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
    rounds: int | None = None,
) -> int:
    """Read, show, sleep, until interrupted (or ``rounds`` reads); the exit code of the
    last view: 1 when a node is failed."""
    timer = rollout.RestartTimer()
    failed = False
    done = 0
    try:
        while rounds is None or done < rounds:
            snap = read()
            rows = node_rows(snap.nodes)
            timer.observe(rows)
            r = rollout.summarize(rows, snap.leases, snap.limit, clock(), timer.mean)
            failed = bool(r.failed)  # before it is shown: Ctrl-C may come right after
            viewer.show(r)
            done += 1
            if rounds is None or done < rounds:
                sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.close()
    return EXIT_FAILED if failed else EXIT_OK


def status(args: Args, target: Target) -> int:
    try:
        ds: dict[str, Any] | None = find_daemonset(target, args.daemonset)
    except ConfigError as exc:
        print(f"warning: {exc}; the restart limit is unknown", file=sys.stderr)
        ds = None
    if not args.watch:
        text, failed = render(read_fleet(target, ds), args.output, time.time())
        print(text)
        return EXIT_FAILED if failed else EXIT_OK
    where = f"{ds['metadata']['namespace']}/{ds['metadata']['name']}" if ds else target.namespace
    mode = agent_mode(ds) if ds else "?"
    title = f"nodelocaldns-agent {where} (mode {mode}), every {args.interval:g}s; Ctrl-C ends"
    return watch(lambda: read_fleet(target, ds), viewer_for(sys.stdout, title), args.interval)


# ---------------------------------------------------------------- revert, pause, resume
def confirm_on_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ConfigError("stdin is not a terminal: confirm with --yes (or try --dry-run)")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def switch(args: Args, target: Target, confirm: Callable[[str], bool] = confirm_on_terminal) -> int:
    """Set the agents' ``NODELOCALDNS_AGENT_MODE`` in their DaemonSet (``fleet.mode_patch``,
    as the chart's uninstall hook does): the pods roll out with the new mode."""
    wanted = SWITCH_MODE[args.command]
    ds = find_daemonset(target, args.daemonset)
    namespace, name = str(ds["metadata"]["namespace"]), str(ds["metadata"]["name"])
    current = agent_mode(ds)
    if current == wanted:
        print(f"daemonset {namespace}/{name} is already in {wanted} mode; nothing to do")
        return EXIT_OK
    ops = mode_patch(ds, wanted)
    overridden = [
        str(n["metadata"]["name"])
        for n in target.api.list_nodes()
        if MODE_LABEL in (n["metadata"].get("labels") or {})
    ]
    what = f"daemonset {namespace}/{name}: mode {current} -> {wanted}"
    if overridden and wanted is not Mode.REVERT:
        print(
            f"warning: {len(overridden)} node(s) carry {MODE_LABEL}, which wins over this "
            f"switch: {', '.join(overridden[:10])}",
            file=sys.stderr,
        )
    if args.dry_run:
        print(f"{what} (dry run, nothing changed); JSON patch:")
        print(json.dumps(ops, indent=2))
        return EXIT_OK
    if not args.yes and not confirm(f"{what}: every agent pod restarts with it. Go on?"):
        print("nothing changed")
        return EXIT_CONFIG
    target.api.json_patch_daemonset(namespace, name, ops)
    print(
        f"{what}. The agent pods roll out with it; follow with `kubectl nodelocaldns status "
        f"-w`. `helm upgrade` sets the chart's agent.mode again."
    )
    return EXIT_OK


# ---------------------------------------------------------------- preflight
def _upstream_name(target: Target, namespace: str) -> str:
    for ds in target.api.list_daemonsets(namespace, selector("node-cache")):
        for container in ds["spec"]["template"]["spec"].get("containers") or []:
            argv = [str(a) for a in container.get("args") or []]
            if "-upstreamsvc" in argv[:-1]:
                return argv[argv.index("-upstreamsvc") + 1]
    return UPSTREAM_DEFAULT


def gather(target: Target, daemonset: str | None) -> preflight.ClusterFacts:
    api = target.api
    ds = find_daemonset(target, daemonset)
    namespace = str(ds["metadata"]["namespace"])
    upstream = _upstream_name(target, namespace)
    policies = api.read(ADMISSION_POLICIES) or {}
    nodes = api.list_nodes()
    return preflight.ClusterFacts(
        namespace=namespace,
        app=APP,
        nodes=nodes,
        rows=node_rows(nodes),
        kube_proxy=api.read(CONFIGMAP, namespace="kube-system", name="kube-proxy"),
        kube_dns=api.read(SERVICE, namespace="kube-system", name="kube-dns"),
        upstream_name=upstream,
        upstream_endpoints=api.read(ENDPOINTS, namespace=namespace, name=upstream),
        node_cache_pods=api.list_pods(namespace, selector("node-cache")),
        agent_pods=api.list_pods(namespace, selector("agent")),
        admission_policies=list(policies.get("items") or []),
        version=api.read(VERSION) or {},
        namespace_object=api.read(NAMESPACE, name=namespace),
    )


def run_preflight(args: Args, target: Target) -> int:
    text, failed = preflight.report(preflight.run_checks(gather(target, args.daemonset)))
    print(text)
    return EXIT_FAILED if failed else EXIT_OK


def run(args: Args) -> int:
    target = connect(args)
    if args.command == "status":
        return status(args, target)
    if args.command == "preflight":
        return run_preflight(args, target)
    return switch(args, target)
