"""The Helm chart, rendered by the real helm: lint, schema, Kubernetes API schemas, checkov,
and what the rendered objects must say (IPVS form, agent pod, RBAC, monitoring, hooks).

Tools: helm from `.tools/bin` (or PATH), kubernetes-validate (Python package), promtool and
checkov (`.tools/checkov`), all installed by `.ci/install-tools.sh`. A missing tool fails
the test with the command to run; nothing here is skipped.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from nodelocaldns_agent.cli.parser import COMMANDS
from nodelocaldns_agent.fleet import mode_patch
from nodelocaldns_agent.hostpaths import DEFAULT_WRITABLE_DIRS
from nodelocaldns_agent.kube.api import _lease_body
from tests.tooling import checkov, tool

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "chart"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
ALERTS = CHART / "files" / "alerts.yaml"
NAMESPACE = "nodelocaldns"
RELEASE = "nlda"
KUBE_DNS = "10.96.0.10"
UPSTREAM_IP = "10.96.0.53"
LOCAL_IP = "169.254.20.10"
LOCAL_IP6 = "fd00::a"
#: the oldest Kubernetes the chart claims (Chart.yaml kubeVersion)
OLDEST = "1.25.0"
#: kinds no Kubernetes schema knows (monitoring.coreos.com CRDs): checked structurally
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
#: admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy exists from 1.30 on
VAP_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
VAP_CAPABILITY = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

Doc = dict[str, Any]


# ----------------------------------------------------------------------------- tools
@pytest.fixture(scope="session")
def helm_bin() -> str:
    return tool("helm", ROOT / ".tools" / "bin" / "helm")


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_helm(helm_bin: str, *args: str) -> Result:
    proc = subprocess.run(
        [helm_bin, *args], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def template(helm_bin: str, *args: str, release: str = RELEASE) -> Result:
    return run_helm(helm_bin, "template", release, str(CHART), "--namespace", NAMESPACE, *args)


def render(helm_bin: str, *args: str, release: str = RELEASE) -> list[Doc]:
    result = template(helm_bin, *args, release=release)
    assert result.returncode == 0, f"helm template {' '.join(args)} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def sets(values: dict[str, Any]) -> list[str]:
    """`--set-json key=<json>` for each item (keys are dotted value paths)."""
    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


#: the image every render needs (agent.image.repository has no default: issue 13, finding 8)
IMAGE = "registry.example.com/platform/nodelocaldns-agent"
#: what `helm template` cannot know: the kube-dns IP and the image, but not the cluster's APIs
NO_CLUSTER_ARGS = (
    "--set",
    f"nodeLocalDNS.kubeDNSServiceIP={KUBE_DNS}",
    "--set",
    f"agent.image.repository={IMAGE}",
    # the release namespace is not kube-system: the upstream Service's address is set
    "--set",
    f"nodeLocalDNS.upstreamService.clusterIP={UPSTREAM_IP}",
)
#: ... and a cluster >= 1.30 that serves ValidatingAdmissionPolicy (as Argo CD passes it)
DEFAULT_ARGS = (*NO_CLUSTER_ARGS, "--api-versions", VAP_CAPABILITY)


# ----------------------------------------------------------------------------- renders
@pytest.fixture(scope="module")
def scenarios(helm_bin: str) -> dict[str, list[Doc]]:
    """Every chart/ci/*-values.yaml, rendered once (capabilities as `helm template` has)."""
    assert len(CI_VALUES) >= 7, "the chart/ci scenarios are missing"
    return {
        path.name.removesuffix("-values.yaml"): render(helm_bin, "-f", str(path))
        for path in CI_VALUES
    }


@pytest.fixture(scope="module")
def default(scenarios: dict[str, list[Doc]]) -> list[Doc]:
    return scenarios["default"]


def find(docs: Iterable[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def component(docs: Iterable[Doc], kind: str, comp: str) -> list[Doc]:
    return [
        d
        for d in find(docs, kind)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == comp
    ]


def agent_ds(docs: list[Doc]) -> Doc:
    (ds,) = component(docs, "DaemonSet", "agent")
    return ds


def node_cache_ds(docs: list[Doc]) -> Doc:
    (ds,) = component(docs, "DaemonSet", "node-cache")
    return ds


def container(ds: Doc) -> Doc:
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    return c


def corefile(docs: list[Doc]) -> str:
    (cm,) = component(docs, "ConfigMap", "node-cache")
    return str(cm["data"]["Corefile"])


def arg_after(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def agent_config(docs: list[Doc]) -> dict[str, str]:
    ds = agent_ds(docs)
    (source,) = container(ds)["envFrom"]
    return dict(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])


# ----------------------------------------------------------------------------- lint
@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(helm_bin: str, values: Path) -> None:
    result = run_helm(helm_bin, "lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_ci_scenario_renders_objects(scenarios: dict[str, list[Doc]]) -> None:
    expected = {
        "default",
        "iptables",
        "node-cache-disabled",
        "monitoring",
        "stale-pods",
        "privileged",
        "china-mirror",
    }
    assert expected <= set(scenarios)
    for name, docs in scenarios.items():
        assert agent_ds(docs), name
        for doc in docs:
            if doc["kind"] in {"ClusterRole", "ClusterRoleBinding", *VAP_KINDS}:
                continue
            # the Node Events' Role and binding live where the Events go, the upstream
            # Service where the cluster DNS pods are
            comp = doc["metadata"]["labels"]["app.kubernetes.io/component"]
            expected_ns = {"agent-events": "default", "dns-upstream": "kube-system"}.get(
                comp, NAMESPACE
            )
            assert doc["metadata"]["namespace"] == expected_ns, (name, doc["kind"])


# ----------------------------------------------------------------------------- API schemas
@pytest.fixture(scope="module")
def kube_versions() -> tuple[str, str]:
    try:
        from kubernetes_validate.utils import latest_version
    except ImportError:
        pytest.fail("kubernetes-validate is not installed: pip install -e '.[test]'", pytrace=False)
    return OLDEST, f"{latest_version()}.0"


def test_rendered_objects_match_the_kubernetes_schemas(
    scenarios: dict[str, list[Doc]], kube_versions: tuple[str, str]
) -> None:
    """kubernetes-validate --strict (unknown fields rejected) for the oldest and newest
    Kubernetes; a kind it does not know is an error here, except the CRD kinds."""
    from kubernetes_validate.utils import (
        SchemaNotFoundError,
        ValidationError,
        validate,
    )

    problems: list[str] = []
    checked = 0
    for name, docs in scenarios.items():
        for doc in docs:
            if doc["kind"] in CRD_KINDS:
                continue
            for version in kube_versions:
                if doc["kind"] in VAP_KINDS and version < "1.30":
                    continue
                where = f"{name}: {doc['kind']}/{doc['metadata']['name']} @ {version}"
                try:
                    validate(doc, version, strict=True)
                    checked += 1
                except ValidationError as exc:
                    path = ".".join(str(p) for p in exc.path)
                    problems.append(f"{where}: {path}: {exc.message}")
                except SchemaNotFoundError as exc:
                    problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)
    assert checked > 100


#: What Helm puts in .Capabilities without a cluster (helm template, --dry-run=client, lint):
#: its default KubeVersion (v1.35.0 for Helm 4.1: helm pkg/chart/common/capabilities.go,
#: from its client-go) and group/versions without Kinds; --kube-version and
#: --api-versions change them. With a cluster, discovery lists group/version/Kind entries
#: (pkg/action/action.go GetVersionSet): "apps/v1/DaemonSet" stands for that here.
#: The node-name claim: ServiceAccountTokenPodNodeInfo alpha (off) 1.29, beta (on) 1.30,
#: GA 1.32 (kubernetes/kubernetes pkg/features/versioned_kube_features.go).
DISCOVERED = ("--api-versions", "apps/v1/DaemonSet")
ADMISSION_CASES = [
    # (mode, extra helm args, policies rendered, or the error text)
    ("auto", (), "cannot tell whether the cluster serves"),
    ("auto", ("--api-versions", VAP_CAPABILITY), True),
    ("auto", ("--kube-version", "1.30.0", "--api-versions", VAP_CAPABILITY), True),
    (
        "auto",
        ("--kube-version", "v1.31.2-eks-7f9249a", *DISCOVERED, "--api-versions", VAP_CAPABILITY),
        True,
    ),
    ("auto", ("--kube-version", "1.29.4"), False),
    ("auto", ("--kube-version", "1.29.4", *DISCOVERED), False),
    ("auto", DISCOVERED, False),  # a cluster >= 1.30 with the API switched off
    ("auto", ("--kube-version", "1.29.4", "--api-versions", VAP_CAPABILITY), "is listed but"),
    ("always", (), True),
    ("always", ("--kube-version", "1.30.0"), True),
    ("always", ("--kube-version", "1.29.9"), "Kubernetes version is v1.29.9"),
    ("always", ("--kube-version", "1.25.0", *DISCOVERED), "Kubernetes version is v1.25.0"),
    ("never", ("--api-versions", VAP_CAPABILITY), False),
    ("never", (), False),
]


@pytest.mark.parametrize(("mode", "args", "want"), ADMISSION_CASES)
def test_admission_policy_decision(
    helm_bin: str, mode: str, args: tuple[str, ...], want: Any
) -> None:
    """auto never renders nothing silently: it decides from what Helm was told about the
    cluster and fails when a render without a cluster says nothing (issue 13, finding 3)."""
    result = template(
        helm_bin, *NO_CLUSTER_ARGS, "--set", f"agent.nodeAdmissionPolicy={mode}", *args
    )
    if isinstance(want, str):
        assert result.returncode != 0, f"{mode} {args} rendered"
        assert want in result.stderr, result.stderr
        assert "agent.nodeAdmissionPolicy" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(result.stdout) if d]
    # own Node, restart slots, uninstall hook: a policy and a binding each
    assert kinds.count("ValidatingAdmissionPolicy") == (3 if want else 0), (mode, args)
    assert kinds.count("ValidatingAdmissionPolicyBinding") == (3 if want else 0), (mode, args)


def test_the_cannot_tell_message_says_what_to_do(helm_bin: str) -> None:
    result = template(helm_bin, *NO_CLUSTER_ARGS)
    assert result.returncode != 0
    for advice in (
        f"--api-versions {VAP_CAPABILITY}",
        "agent.nodeAdmissionPolicy=always",
        "agent.nodeAdmissionPolicy=never",
        "v1.35.0 is only Helm's assumption",
    ):
        assert advice in result.stderr, advice


def notes(helm_bin: str, *args: str) -> str:
    """NOTES.txt as `helm install --dry-run=client` prints it (helm template omits it)."""
    result = run_helm(
        helm_bin,
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        *args,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_warn_whenever_the_policies_are_absent(helm_bin: str) -> None:
    warning = "WARNING: no admission policies"
    never = notes(helm_bin, *NO_CLUSTER_ARGS, "--set", "agent.nodeAdmissionPolicy=never")
    assert warning in never
    assert "patch EVERY Node" in " ".join(never.split())
    always = notes(helm_bin, *NO_CLUSTER_ARGS, "--set", "agent.nodeAdmissionPolicy=always")
    assert warning not in always


def test_admission_policy_limits_the_agent_to_its_own_node(helm_bin: str) -> None:
    docs = render(helm_bin, *DEFAULT_ARGS)
    policy = one(docs, "ValidatingAdmissionPolicy", f"{RELEASE}-nodelocaldns-agent-own-node")
    binding = one(docs, "ValidatingAdmissionPolicyBinding", policy["metadata"]["name"])
    sa = container_sa(docs)
    assert binding["spec"] == {
        "policyName": policy["metadata"]["name"],
        "validationActions": ["Deny"],
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]}
    ]
    (cond,) = spec["matchConditions"]
    assert cond["expression"] == (
        f"request.userInfo.username == 'system:serviceaccount:{NAMESPACE}:{sa}'"
    )
    exprs = [v["expression"] for v in spec["validations"]]
    assert (
        "request.userInfo.extra['authentication.kubernetes.io/node-name'] == "
        "[object.metadata.name]" in " ".join(exprs[0].split())
    )
    labels_expr, annotations_expr = exprs[1], exprs[2]
    for expr in (labels_expr, annotations_expr):
        # exactly the keys the agent writes; not the administrator's opt-out/mode labels
        assert "k in ['nodelocaldns-agent.io/state', 'nodelocaldns-agent.io/detail']" in expr
    assert "object.spec == oldObject.spec" in exprs[3]
    assert all(v["reason"] == "Forbidden" and v["message"] for v in spec["validations"])


#: Evaluates the policy's CEL (matchConditions, variables, validations) for each case with
#: cel-python, a CEL interpreter (not the API server's, which also type-checks): stdin
#: {"policy": spec, "cases": [{"object", "oldObject", "request"}]}, stdout a list per case:
#: null when the policy does not match, else one true/false/"error: ..." per validation.
#: Variables are evaluated in order into `variables` (the API server evaluates them lazily,
#: with the same results). An error denies the request (failurePolicy: Fail).
CEL_EVAL = """
import json, sys
import celpy
data = json.load(sys.stdin)
env = celpy.Environment()
def run(expr, activation):
    return env.program(env.compile(expr)).evaluate(celpy.json_to_cel(activation))
out = []
for case in data["cases"]:
    if not all(run(c["expression"], case) for c in data["policy"].get("matchConditions", [])):
        out.append(None)
        continue
    variables = {}
    for var in data["policy"].get("variables", []):
        variables[var["name"]] = json.loads(json.dumps(
            run(var["expression"], {**case, "variables": variables}), default=lambda v: v
        ))
    results = []
    for v in data["policy"]["validations"]:
        try:
            results.append(bool(run(v["expression"], {**case, "variables": variables})))
        except Exception as exc:
            results.append(f"error: {exc}")
    out.append(results)
print(json.dumps(out))
"""


def evaluate_policy(policy: Doc, cases: list[Doc]) -> list[Any]:
    """CEL_EVAL's answer for ``cases`` ({"object", "oldObject", "request"} each)."""
    cel = tool("cel-python", ROOT / ".tools" / "cel" / "bin" / "python")
    proc = subprocess.run(
        [cel, "-c", CEL_EVAL],
        input=json.dumps({"policy": policy, "cases": cases}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    results: list[Any] = json.loads(proc.stdout)
    return results


def admitted(result: Any) -> bool:
    """The API server's verdict: no matching policy, or every validation true."""
    return result is None or all(r is True for r in result)


def test_admission_policy_semantics(helm_bin: str, tmp_path: Path) -> None:
    """Own node, own keys: allowed. Another node, no node claim, a foreign label or
    annotation, the opt-out or mode label, any other key under our prefix, the spec:
    denied by the matching validation."""
    docs = render(helm_bin, *DEFAULT_ARGS)
    policy = one(docs, "ValidatingAdmissionPolicy", f"{RELEASE}-nodelocaldns-agent-own-node")[
        "spec"
    ]
    agent = f"system:serviceaccount:{NAMESPACE}:{container_sa(docs)}"
    old = {
        "metadata": {
            "name": "node-a",
            "labels": {"kubernetes.io/hostname": "node-a", "nodelocaldns-agent.io/opt-out": "no"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {"podCIDR": "10.244.1.0/24"},
    }

    def request(user: str = agent, node: str | None = "node-a") -> Doc:
        info: Doc = {"username": user}
        if node is not None:
            info["extra"] = {"authentication.kubernetes.io/node-name": [node]}
        return {"userInfo": info}

    def changed(**edits: Any) -> Doc:
        new = json.loads(json.dumps(old))
        new["metadata"]["labels"]["nodelocaldns-agent.io/state"] = "migrated"
        new["metadata"]["annotations"]["nodelocaldns-agent.io/state"] = "migrated"
        new["metadata"]["annotations"]["nodelocaldns-agent.io/detail"] = "{}"
        for where, (key, value) in edits.items():
            section = new["spec"] if where == "spec" else new["metadata"][where]
            if value is None:
                del section[key]
            else:
                section[key] = value
        return new

    ok = [True, True, True, True]
    cases: list[tuple[str, Doc, Doc, Any]] = [
        ("own node, own keys", changed(), request(), ok),
        ("another node", changed(), request(node="node-b"), [False, True, True, True]),
        ("no node claim", changed(), request(node=None), [False, True, True, True]),
        ("foreign label", changed(labels=("team", "x")), request(), [True, False, True, True]),
        (
            "opt-out label",
            changed(labels=("nodelocaldns-agent.io/opt-out", "true")),
            request(),
            [True, False, True, True],
        ),
        (
            "mode label",
            changed(labels=("nodelocaldns-agent.io/mode", "migrate")),
            request(),
            [True, False, True, True],
        ),
        (
            "another key under our prefix",
            changed(annotations=("nodelocaldns-agent.io/other", "x")),
            request(),
            [True, True, False, True],
        ),
        (
            "foreign annotation changed",
            changed(annotations=("node.alpha.kubernetes.io/ttl", "5")),
            request(),
            [True, True, False, True],
        ),
        (
            "foreign annotation removed",
            changed(annotations=("node.alpha.kubernetes.io/ttl", None)),
            request(),
            [True, True, False, True],
        ),
        ("spec", changed(spec=("unschedulable", True)), request(), [True, True, True, False]),
        ("someone else", changed(spec=("unschedulable", True)), request(user="admin"), None),
    ]
    bare = {"metadata": {"name": "node-a"}, "spec": {}}
    first = {
        "metadata": {
            "name": "node-a",
            "labels": {"nodelocaldns-agent.io/state": "pending"},
            "annotations": {"nodelocaldns-agent.io/state": "pending"},
        },
        "spec": {},
    }
    results = evaluate_policy(
        policy,
        [{"object": new, "oldObject": old, "request": req} for _, new, req, _ in cases]
        + [{"object": first, "oldObject": bare, "request": request()}],
    )
    for (name, *_, want), got in zip(cases, results, strict=False):
        assert got == want, name
    assert results[-1] == ok, "first write to a node without labels or annotations"


def user(name: str, node: str | None) -> Doc:
    info: Doc = {"username": name}
    if node is not None:
        info["extra"] = {"authentication.kubernetes.io/node-name": [node]}
    return info


def test_lease_policy_admits_exactly_what_the_lock_sends(helm_bin: str) -> None:
    """The restart-slot Leases (issue 13, finding 5). The requests are those of
    nodelocaldns_agent/kube/lock.py through kube/api.py: create (POST, holder = own node),
    take over an expired slot (PUT with the seen resourceVersion; CEL has no clock, so the
    policy cannot tell expired from live), renew (merge patch, UPDATE in admission), release
    (DELETE with a resourceVersion precondition: object null, oldObject the stored Lease)."""
    docs = render(helm_bin, *DEFAULT_ARGS, "--set", "agent.maxConcurrentRestarts=2")
    policy = one(docs, "ValidatingAdmissionPolicy", f"{RELEASE}-nodelocaldns-agent-slots")
    binding = one(docs, "ValidatingAdmissionPolicyBinding", policy["metadata"]["name"])
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["leases"],
        }
    ]
    agent = f"system:serviceaccount:{NAMESPACE}:{container_sa(docs)}"

    def stored(name: str, holder: str, rv: str = "41") -> Doc:
        body = _lease_body(name, holder, 60, None)
        body["metadata"].update(namespace=NAMESPACE, resourceVersion=rv, uid="u-1")
        return body

    def sent(name: str, holder: str, rv: str | None = None) -> Doc:
        body = _lease_body(name, holder, 60, rv)
        body["metadata"]["namespace"] = NAMESPACE
        return body

    def renewed(lease: Doc, holder: str) -> Doc:
        merged = json.loads(json.dumps(lease))
        merged["spec"].update(holderIdentity=holder, renewTime="2026-01-01T00:00:01.000000Z")
        return merged

    def req(
        op: str, name: str, node: str | None = "node-a", who: str = agent, ns: str = NAMESPACE
    ) -> Doc:
        return {"operation": op, "namespace": ns, "name": name, "userInfo": user(who, node)}

    slot, other = "nodelocaldns-agent-slot-0", "nodelocaldns-agent-slot-1"
    cases: list[tuple[str, Doc | None, Doc | None, Doc, bool]] = [
        # (what, object, oldObject, request, admitted)
        ("create a free slot", sent(slot, "node-a"), None, req("CREATE", slot), True),
        ("create the second slot", sent(other, "node-a"), None, req("CREATE", other), True),
        (
            "take over an expired slot",
            sent(slot, "node-a", "41"),
            stored(slot, "node-b"),
            req("UPDATE", slot),
            True,
        ),
        (
            "re-take its own slot",
            sent(slot, "node-a", "41"),
            stored(slot, "node-a"),
            req("UPDATE", slot),
            True,
        ),
        (
            "renew",
            renewed(stored(slot, "node-a"), "node-a"),
            stored(slot, "node-a"),
            req("UPDATE", slot),
            True,
        ),
        ("release", None, stored(slot, "node-a"), req("DELETE", slot), True),
        (
            "someone else",
            sent("kube-scheduler", "x"),
            None,
            req("CREATE", "kube-scheduler", who="admin"),
            True,
        ),
        # refused
        ("create in another node's name", sent(slot, "node-b"), None, req("CREATE", slot), False),
        (
            "create a slot beyond the limit",
            sent("nodelocaldns-agent-slot-2", "node-a"),
            None,
            req("CREATE", "nodelocaldns-agent-slot-2"),
            False,
        ),
        (
            "create another component's Lease",
            sent("kube-scheduler", "node-a"),
            None,
            req("CREATE", "kube-scheduler"),
            False,
        ),
        (
            "create in another namespace",
            sent(slot, "node-a"),
            None,
            req("CREATE", slot, ns="kube-system"),
            False,
        ),
        (
            "take over for another node",
            sent(slot, "node-c", "41"),
            stored(slot, "node-b"),
            req("UPDATE", slot),
            False,
        ),
        (
            "renew another node's slot",
            renewed(stored(slot, "node-b"), "node-b"),
            stored(slot, "node-b"),
            req("UPDATE", slot),
            False,
        ),
        ("release another node's slot", None, stored(slot, "node-b"), req("DELETE", slot), False),
        (
            "a holder-less slot",
            {"metadata": {"name": slot}, "spec": {}},
            None,
            req("CREATE", slot),
            False,
        ),
        (
            "no node claim (< 1.30)",
            sent(slot, "node-a"),
            None,
            req("CREATE", slot, node=None),
            False,
        ),
        (
            "no node claim, release",
            None,
            stored(slot, "node-a"),
            req("DELETE", slot, node=None),
            False,
        ),
    ]
    results = evaluate_policy(
        spec, [{"object": o, "oldObject": old, "request": r} for _, o, old, r, _ in cases]
    )
    for (what, *_, want), got in zip(cases, results, strict=True):
        assert admitted(got) is want, (what, got)
        assert all(not isinstance(r, str) for r in got or []), (what, got)


def agent_daemonset_as_stored(docs: list[Doc]) -> Doc:
    """The agent DaemonSet as the API server holds it: with the template generation
    annotation of apps/v1 and a status."""
    ds = json.loads(json.dumps(agent_ds(docs)))
    ds["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = "1"
    ds["metadata"].update(generation=1, resourceVersion="100", uid="u-ds")
    ds["status"] = {"desiredNumberScheduled": 3, "numberReady": 3}
    return ds


def apply_json_patch(doc: Doc, ops: list[Doc]) -> Doc:
    """RFC 6902 test/replace/add (what fleet.mode_patch produces), on a copy."""
    out = json.loads(json.dumps(doc))
    for op in ops:
        *parents, last = [part for part in op["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if op["op"] == "test":
            assert node[int(last) if isinstance(node, list) else last] == op["value"]
        elif isinstance(node, list):
            if last == "-":
                node.append(op["value"])
            elif op["op"] == "add":
                node.insert(int(last), op["value"])
            else:
                node[int(last)] = op["value"]
        else:
            node[last] = op["value"]
    return out


def test_uninstall_hook_may_only_set_revert(helm_bin: str) -> None:
    """The hook's patch right on the agent DaemonSet (issue 13, finding 6): the policy admits
    the JSON patch `revert-fleet` sends (nodelocaldns_agent/fleet.py mode_patch) as the API
    server hands it to admission (the template generation annotation bumped: kubernetes
    pkg/registry/apps/daemonset/strategy.go, pkg/apis/apps/v1/conversion.go), and refuses
    any other change."""
    docs = render(helm_bin, *DEFAULT_ARGS)
    policy = one(docs, "ValidatingAdmissionPolicy", f"{RELEASE}-nodelocaldns-agent-revert-guard")
    one(docs, "ValidatingAdmissionPolicyBinding", policy["metadata"]["name"])
    spec = policy["spec"]
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "operations": ["UPDATE"],
            "resources": ["daemonsets"],
        }
    ]
    (hook_sa,) = component(docs, "ServiceAccount", "revert")
    hook = f"system:serviceaccount:{NAMESPACE}:{hook_sa['metadata']['name']}"
    old = agent_daemonset_as_stored(docs)
    name = old["metadata"]["name"]

    def changed(edit: Any = None, mode: str = "revert") -> Doc:
        new = apply_json_patch(old, mode_patch(old, mode))
        new["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = "2"
        new["metadata"]["generation"] = 2
        if edit is not None:
            edit(new)
        return new

    def pod(d: Doc) -> Doc:
        return d["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    def agent_c(d: Doc) -> Doc:
        return pod(d)["containers"][0]  # type: ignore[no-any-return]

    def env_var(d: Doc, var: str) -> Doc:
        return next(e for e in agent_c(d)["env"] if e["name"] == var)

    cases: list[tuple[str, Doc, str, str, bool]] = [
        # (what, new object, user, DaemonSet name, admitted)
        ("revert-fleet's patch", changed(), hook, name, True),
        (
            "the same patch again",
            apply_json_patch(changed(), mode_patch(changed(), "revert")),
            hook,
            name,
            True,
        ),
        (
            "helm upgrade by its user",
            changed(lambda d: agent_c(d).update(image="x")),
            "admin",
            name,
            True,
        ),
        ("mode migrate", changed(mode="migrate"), hook, name, False),
        (
            "mode from a ConfigMap",
            changed(
                lambda d: env_var(d, "NODELOCALDNS_AGENT_MODE").update(
                    valueFrom={"configMapKeyRef": {"name": "x", "key": "y"}}
                )
            ),
            hook,
            name,
            False,
        ),
        (
            "image",
            changed(lambda d: agent_c(d).update(image="evil.example.com/x:1")),
            hook,
            name,
            False,
        ),
        (
            "command",
            changed(lambda d: agent_c(d).update(command=["sh", "-c", "id"])),
            hook,
            name,
            False,
        ),
        ("args", changed(lambda d: agent_c(d).update(args=["observe"])), hook, name, False),
        (
            "another variable",
            changed(lambda d: env_var(d, "NODE_NAME").update(value="x")),
            hook,
            name,
            False,
        ),
        (
            "a new variable",
            changed(lambda d: agent_c(d)["env"].append({"name": "LD_PRELOAD", "value": "/x"})),
            hook,
            name,
            False,
        ),
        (
            "privileged",
            changed(lambda d: agent_c(d)["securityContext"].update(privileged=True)),
            hook,
            name,
            False,
        ),
        (
            "a volume mount",
            changed(
                lambda d: agent_c(d)["volumeMounts"].append({"name": "tmp", "mountPath": "/x"})
            ),
            hook,
            name,
            False,
        ),
        (
            "a hostPath volume",
            changed(
                lambda d: pod(d)["volumes"].append({"name": "root", "hostPath": {"path": "/"}})
            ),
            hook,
            name,
            False,
        ),
        (
            "a second container",
            changed(
                lambda d: pod(d)["containers"].append({"name": "x", "image": "evil.example.com/x"})
            ),
            hook,
            name,
            False,
        ),
        (
            "an init container",
            changed(
                lambda d: pod(d).update(
                    initContainers=[{"name": "x", "image": "evil.example.com/x"}]
                )
            ),
            hook,
            name,
            False,
        ),
        (
            "the service account",
            changed(lambda d: pod(d).update(serviceAccountName="default")),
            hook,
            name,
            False,
        ),
        (
            "the node selector",
            changed(lambda d: pod(d).update(nodeSelector={"a": "b"})),
            hook,
            name,
            False,
        ),
        (
            "the pod's labels",
            changed(lambda d: d["spec"]["template"]["metadata"]["labels"].update(x="y")),
            hook,
            name,
            False,
        ),
        (
            "the update strategy",
            changed(lambda d: d["spec"].update(updateStrategy={"type": "OnDelete"})),
            hook,
            name,
            False,
        ),
        (
            "the DaemonSet's labels",
            changed(lambda d: d["metadata"]["labels"].update(x="y")),
            hook,
            name,
            False,
        ),
        (
            "an annotation",
            changed(lambda d: d["metadata"]["annotations"].update(x="y")),
            hook,
            name,
            False,
        ),
        ("another DaemonSet", changed(), hook, "kube-proxy", False),
    ]
    results = evaluate_policy(
        spec,
        [
            {
                "object": new,
                "oldObject": old,
                "request": {
                    "operation": "UPDATE",
                    "namespace": NAMESPACE,
                    "name": ds_name,
                    "userInfo": {"username": who},
                },
            }
            for _, new, who, ds_name, _ in cases
        ],
    )
    for (what, *_, want), got in zip(cases, results, strict=True):
        assert admitted(got) is want, (what, got)
        assert all(not isinstance(r, str) for r in got or []), (what, got)


def test_revert_guard_compares_every_field_kubernetes_knows(helm_bin: str) -> None:
    """CEL compares by field name: every field of the newest DaemonSetSpec, PodSpec and
    Container in kubernetes-validate's schemas is compared (but the template, the
    containers and env, which the policy checks element by element)."""
    import kubernetes_validate
    from kubernetes_validate.utils import latest_version

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    defs = json.loads(
        (schemas / f"v{latest_version()}-local-strict" / "_definitions.json").read_text()
    )["$defs"]
    spec = one(
        render(helm_bin, *DEFAULT_ARGS),
        "ValidatingAdmissionPolicy",
        f"{RELEASE}-nodelocaldns-agent-revert-guard",
    )["spec"]
    text = " ".join(v["expression"] for v in spec["validations"])

    def compared(prefix: str) -> set[str]:
        return set(re.findall(rf"has\({re.escape(prefix)}\.(\w+)\) ==", text))

    def fields(kind: str) -> set[str]:
        return set(defs[f"io.k8s.api.{kind}"]["properties"])

    assert compared("object.spec") == fields("apps.v1.DaemonSetSpec") - {"template"}
    assert compared("object.spec.template") == {"metadata"}
    assert compared("variables.new") == fields("core.v1.PodSpec") - {"containers"}
    assert compared("c") == fields("core.v1.Container") - {"env"}


def container_sa(docs: list[Doc]) -> str:
    return str(agent_ds(docs)["spec"]["template"]["spec"]["serviceAccountName"])


# ----------------------------------------------------------------------------- CRDs
def check_duration(value: str) -> None:
    assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", value), value


def check_monitor_common(doc: Doc) -> None:
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    meta = doc["metadata"]
    assert meta["namespace"] == NAMESPACE and DNS_LABEL.match(meta["name"])
    spec = doc["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert set(spec["selector"]) == {"matchLabels"}


def check_endpoints(endpoints: list[Doc]) -> None:
    (ep,) = endpoints
    assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "relabelings"}
    assert ep["port"] == "metrics" and ep["path"] == "/metrics"
    check_duration(ep["interval"])
    check_duration(ep["scrapeTimeout"])
    for relabel in ep["relabelings"]:
        assert set(relabel) <= {
            "action",
            "sourceLabels",
            "targetLabel",
            "replacement",
            "regex",
            "separator",
            "modulus",
        }
    assert {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
        "targetLabel": "node",
    } in ep["relabelings"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_monitors_are_well_formed(scenarios: dict[str, list[Doc]]) -> None:
    docs = scenarios["monitoring"]
    monitors = find(docs, "ServiceMonitor")
    assert len(monitors) == 2  # agent and node-cache
    jobs = set()
    for sm in monitors:
        check_monitor_common(sm)
        assert set(sm["spec"]) == {"namespaceSelector", "selector", "endpoints"}
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        check_endpoints(sm["spec"]["endpoints"])
        (svc,) = [
            s
            for s in find(docs, "Service")
            if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
        ]
        assert "metrics" in {p["name"] for p in svc["spec"]["ports"]}
        assert svc["spec"]["clusterIP"] == "None"
        jobs |= {
            r["replacement"]
            for r in sm["spec"]["endpoints"][0]["relabelings"]
            if r.get("targetLabel") == "job"
        }
    assert jobs == {"nodelocaldns-agent", "node-local-dns"}


def test_pod_monitors_are_well_formed(scenarios: dict[str, list[Doc]]) -> None:
    docs = scenarios["podmonitor"]
    monitors = find(docs, "PodMonitor")
    assert len(monitors) == 2
    assert not find(docs, "ServiceMonitor")
    for pm in monitors:
        check_monitor_common(pm)
        assert set(pm["spec"]) == {"namespaceSelector", "selector", "podMetricsEndpoints"}
        (ds,) = [
            d
            for d in find(docs, "DaemonSet")
            if selects(
                pm["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]
            )
        ]
        (ep,) = pm["spec"]["podMetricsEndpoints"]
        if "ports" in container(ds):
            check_endpoints([ep])
            assert "metrics" in {p["name"] for p in container(ds)["ports"]}
        else:
            # node-cache declares no ports: Prometheus makes a port-free target per
            # container, kept for the node-cache container and given the metrics port
            check_endpoints([{**ep, "port": "metrics"}])
            assert "port" not in ep
            keep, address, address6 = ep["relabelings"][:3]
            assert keep == {
                "action": "keep",
                "sourceLabels": ["__meta_kubernetes_pod_container_name"],
                "regex": "node-cache",
            }
            assert address["targetLabel"] == "__address__"
            assert address["sourceLabels"] == ["__meta_kubernetes_pod_ip"]
            assert (address["regex"], address["replacement"]) == ("([^:]+)", "$1:9253")
            # a hostNetwork pod's IP is the node's: IPv6 in brackets
            assert address6["targetLabel"] == "__address__"
            assert (address6["regex"], address6["replacement"]) == ("(.*:.*)", "[$1]:9253")


def test_prometheus_rule_ships_alerts_yaml(scenarios: dict[str, list[Doc]], tmp_path: Path) -> None:
    """The PrometheusRule holds files/alerts.yaml (plus ruleLabels), and promtool accepts
    what is rendered (files/alerts.yaml itself: tests/test_alerts.py)."""
    promtool = tool("promtool")
    source = yaml.safe_load(ALERTS.read_text())
    rule = one(scenarios["monitoring"], "PrometheusRule")
    check_monitor_common(
        {
            **rule,
            "spec": {
                "namespaceSelector": {"matchNames": [NAMESPACE]},
                "selector": {"matchLabels": {}},
            },
        }
    )
    assert set(rule["spec"]) == {"groups"}
    rendered = rule["spec"]["groups"]
    assert [g["name"] for g in rendered] == [g["name"] for g in source["groups"]]
    for got_group, want_group in zip(rendered, source["groups"], strict=True):
        for got, want in zip(got_group["rules"], want_group["rules"], strict=True):
            assert got["labels"] == {**want["labels"], "team": "platform"}
            assert {k: v for k, v in got.items() if k != "labels"} == {
                k: v for k, v in want.items() if k != "labels"
            }
    plain = one(scenarios["podmonitor"], "PrometheusRule")["spec"]
    assert plain == source
    out = tmp_path / "rendered-rules.yaml"
    out.write_text(yaml.safe_dump(rule["spec"]))
    check = subprocess.run(
        [promtool, "check", "rules", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_monitoring_objects_only_when_enabled(scenarios: dict[str, list[Doc]]) -> None:
    for name, docs in scenarios.items():
        kinds = {d["kind"] for d in docs}
        if name not in {"monitoring", "podmonitor"}:
            assert not kinds & CRD_KINDS, name
            assert not component(docs, "Service", "agent"), name
        dashboards = [
            d
            for d in find(docs, "ConfigMap")
            if d["metadata"]["labels"].get("grafana_dashboard") == "1"
        ]
        assert len(dashboards) == (1 if name == "monitoring" else 0), name
    (dashboard,) = [
        d
        for d in find(scenarios["monitoring"], "ConfigMap")
        if "grafana_dashboard" in d["metadata"]["labels"]
    ]
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "DNS"}
    board = json.loads(dashboard["data"]["nodelocaldns-agent.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    assert "nodelocaldns_agent_migration_state" in exprs
    assert "nodelocaldns_agent_local_dns_healthy" in exprs


def test_service_monitor_and_pod_monitor_together_fail(helm_bin: str) -> None:
    result = template(
        helm_bin,
        *DEFAULT_ARGS,
        *sets({"metrics.serviceMonitor.enabled": True, "metrics.podMonitor.enabled": True}),
    )
    assert result.returncode != 0
    assert "enable one of them" in result.stderr


# ----------------------------------------------------------------------------- node-cache
def bind_lines(text: str) -> list[str]:
    return [line.split()[1:] for line in text.splitlines() if line.strip().startswith("bind ")]


def forwards(text: str) -> dict[str, list[str]]:
    """zone -> forward targets, from the Corefile's server blocks."""
    out: dict[str, list[str]] = {}
    zone = ""
    for line in text.splitlines():
        if re.match(r"^\S+:53 \{$", line):
            zone = line.split(":")[0]
        elif line.strip().startswith("forward . "):
            out[zone] = line.strip().removesuffix("{").split()[2:]
    return out


def test_node_cache_is_the_ipvs_form(default: list[Doc]) -> None:
    """IPVS: node-cache cannot bind the kube-dns ClusterIP (kube-ipvs0 holds it): it
    listens on the local IP only, and forwards cluster zones to __PILLAR__CLUSTER__DNS__,
    filled in by node-cache at start from -upstreamsvc kube-dns-upstream."""
    args = container(node_cache_ds(default))["args"]
    assert arg_after(args, "-localip") == LOCAL_IP
    text = corefile(default)
    assert bind_lines(text) == [[LOCAL_IP]] * 4
    zones = forwards(text)
    assert set(zones) == {"cluster.local", "in-addr.arpa", "ip6.arpa", "."}
    for zone in ("cluster.local", "in-addr.arpa", "ip6.arpa"):
        assert zones[zone] == ["__PILLAR__CLUSTER__DNS__"]
    assert zones["."] == ["__PILLAR__UPSTREAM__SERVERS__"]
    assert KUBE_DNS not in text
    assert f"health {LOCAL_IP}:8080" in text
    assert "prometheus :9253" in text
    assert "__PILLAR__LOCAL__DNS__" not in text and "__PILLAR__DNS__" not in text


def test_node_cache_iptables_form_also_binds_kube_dns(scenarios: dict[str, list[Doc]]) -> None:
    docs = scenarios["iptables"]
    args = container(node_cache_ds(docs))["args"]
    assert arg_after(args, "-localip") == f"{LOCAL_IP},{KUBE_DNS}"
    text = corefile(docs)
    assert bind_lines(text) == [[LOCAL_IP, KUBE_DNS]] * 4
    zones = forwards(text)
    # the ClusterIP is intercepted here: cluster zones go to kube-dns-upstream instead
    assert zones["cluster.local"] == ["__PILLAR__CLUSTER__DNS__"]
    assert zones["."] == ["8.8.8.8", "1.1.1.1"]


def test_node_cache_daemonset(default: list[Doc]) -> None:
    ds = node_cache_ds(default)
    pod = ds["spec"]["template"]["spec"]
    c = container(ds)
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "Default"
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is True  # -upstreamsvc reads <NAME>_SERVICE_HOST
    assert c["image"] == "registry.k8s.io/dns/k8s-dns-node-cache:1.25.0"
    assert "NET_ADMIN" in c["securityContext"]["capabilities"]["add"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert arg_after(c["args"], "-conf") == "/etc/Corefile"
    assert arg_after(c["args"], "-upstreamsvc") == "kube-dns-upstream"
    assert arg_after(c["args"], "-health-port") == "8080"
    assert c["livenessProbe"]["httpGet"] == {"host": LOCAL_IP, "path": "/health", "port": 8080}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["xtables-lock"]["hostPath"] == {
        "path": "/run/xtables.lock",
        "type": "FileOrCreate",
    }
    assert {"name": "xtables-lock", "mountPath": "/run/xtables.lock"} in c["volumeMounts"]
    assert volumes["config"]["configMap"]["items"] == [{"key": "Corefile", "path": "Corefile.base"}]
    # no declared ports: on a hostNetwork pod they are host ports (surge pod unschedulable)
    assert "ports" not in c
    upstream = one(default, "Service", "kube-dns-upstream")
    assert upstream["metadata"]["namespace"] == "kube-system"
    assert upstream["spec"]["selector"] == {"k8s-app": "kube-dns"}
    assert {(p["port"], p["protocol"]) for p in upstream["spec"]["ports"]} == {
        (53, "UDP"),
        (53, "TCP"),
    }
    (metrics,) = component(default, "Service", "node-cache")
    assert metrics["spec"]["ports"][0]["port"] == 9253
    assert metrics["spec"]["ports"][0]["targetPort"] == 9253  # a number: no port names


def init_containers(docs: list[Doc]) -> list[Doc]:
    return list(node_cache_ds(docs)["spec"]["template"]["spec"].get("initContainers", []))


def test_fast_refusal_is_a_privileged_init_container_only_when_enabled(
    scenarios: dict[str, list[Doc]],
) -> None:
    """nodeLocalDNS.fastRefusal: the agent's ``fast-refusal`` before node-cache starts.
    Not the pod's securityContext.sysctls: kubelet refuses a net.* sysctl in a
    hostNetwork pod ("Using sysctls in a Kubernetes Cluster", kubernetes.io; kubelet
    pkg/kubelet/sysctl/allowlist.go validateSysctl: "%q not allowed with host %s enabled"
    for a net-namespaced sysctl when HostNetwork), and icmp_ratemask is not on the safe
    list either (pkg/kubelet/sysctl/safe_sysctls.go). Privileged: containerd and CRI-O
    list /proc/sys in the OCI spec's readonlyPaths of every unprivileged container, and
    ``procMount: Unmasked`` needs a user namespace (hostUsers: false), which a hostNetwork
    pod cannot have."""
    for name, docs in node_cache_scenarios(scenarios).items():
        assert bool(init_containers(docs)) == (name == "fast-refusal"), name
    docs = scenarios["fast-refusal"]
    (init,) = init_containers(docs)
    assert init["name"] == "fast-refusal"
    assert init["image"] == container(agent_ds(docs))["image"]
    assert init["args"] == ["fast-refusal"] and init["args"][0] in COMMANDS
    assert init["securityContext"] == {
        "privileged": True,
        "runAsUser": 0,
        "runAsGroup": 0,
        "runAsNonRoot": False,
        "readOnlyRootFilesystem": True,
    }
    assert init["resources"]["limits"] == {"memory": "64Mi"}
    pod = node_cache_ds(docs)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and "sysctls" not in pod["securityContext"]
    # node-cache itself keeps its capabilities, nothing more
    assert container(node_cache_ds(docs)) == container(node_cache_ds(scenarios["default"]))


def test_fast_refusal_rolls_node_cache_only_when_its_image_changes(helm_bin: str) -> None:
    """The init container is part of node-cache's pod template: turning the option on or
    off, or a new agent image, rolls node-cache (a surge update); agent settings and
    Corefile edits still do not."""

    def pod_template(*args: str) -> Doc:
        docs = render(
            helm_bin, *DEFAULT_ARGS, "--set", "nodeLocalDNS.fastRefusal.enabled=true", *args
        )
        return dict(node_cache_ds(docs)["spec"]["template"])

    base = pod_template()
    assert pod_template("--set", "agent.logLevel=debug", "--set", "agent.logFormat=text") == base
    assert pod_template("--set", "nodeLocalDNS.cache.ttl=60") == base
    assert pod_template("--set", "agent.image.tag=2.0.0") != base


def test_node_cache_dual_stack_runs_an_ipv6_listener(scenarios: dict[str, list[Doc]]) -> None:
    """Upstream node-cache refuses -localip addresses of two families in one process
    (kubernetes/dns cmd/node-cache/main.go: "unexpected IP Family for localIP"), so the
    IPv6 address gets a second container: its own interface (each process removes its own
    when it exits), Corefile and ports; the IPv4 container is the single-stack one."""
    docs = scenarios["dual-stack"]
    pod = node_cache_ds(docs)["spec"]["template"]["spec"]
    v4, v6 = pod["containers"]
    assert v4 == container(node_cache_ds(scenarios["default"]))
    assert v6["name"] == "node-cache-ipv6" and v6["image"] == v4["image"]
    args = v6["args"]
    assert arg_after(args, "-localip") == LOCAL_IP6
    assert arg_after(args, "-interfacename") == "nodelocaldns6"
    assert arg_after(args, "-basecorefile") == "/etc/coredns/Corefile-ipv6.base"
    assert arg_after(args, "-conf") == "/etc/Corefile"
    assert arg_after(args, "-upstreamsvc") == "kube-dns-upstream"
    # node-cache's own metrics: Go's 0.0.0.0:9353 of the IPv4 process holds [::]:9353 too
    assert arg_after(args, "-metrics-listen-address") == "0.0.0.0:9354"
    for probe in ("livenessProbe", "readinessProbe"):
        assert v6[probe]["httpGet"] == {"host": LOCAL_IP6, "path": "/health", "port": 8080}
    assert "ports" not in v6  # host ports would make a surge pod unschedulable
    assert v6["securityContext"] == v4["securityContext"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["items"] == [
        {"key": "Corefile", "path": "Corefile.base"},
        {"key": "Corefile-ipv6", "path": "Corefile-ipv6.base"},
    ]
    assert corefile(docs) == corefile(scenarios["default"])
    (cm,) = component(docs, "ConfigMap", "node-cache")
    text = str(cm["data"]["Corefile-ipv6"])
    assert bind_lines(text) == [[LOCAL_IP6]] * 4
    assert forwards(text)["cluster.local"] == ["__PILLAR__CLUSTER__DNS__"]
    # CoreDNS takes an IPv6 host:port in brackets (the kubernetes.io NodeLocal DNSCache page)
    assert f"health [{LOCAL_IP6}]:8080" in text
    assert "prometheus :9254" in text and "prometheus :9253" not in text
    assert agent_config(docs)["NODELOCALDNS_AGENT_LOCAL_DNS_IPV6"] == LOCAL_IP6
    assert "NODELOCALDNS_AGENT_LOCAL_DNS_IPV6" not in agent_config(scenarios["default"])


def test_a_link_local_ipv6_address_fails_the_render(helm_bin: str) -> None:
    result = template(helm_bin, *DEFAULT_ARGS, "--set", "nodeLocalDNS.localIPv6=FE80::a")
    assert result.returncode != 0
    assert "nodeLocalDNS.localIPv6=FE80::a is link-local" in result.stderr


# ----------------------------------------------------------------------------- node-cache updates
def node_cache_scenarios(scenarios: dict[str, list[Doc]]) -> dict[str, list[Doc]]:
    return {
        name: docs for name, docs in scenarios.items() if component(docs, "DaemonSet", "node-cache")
    }


def test_node_cache_rolls_only_on_its_own_spec(helm_bin: str, tmp_path: Path) -> None:
    """A new pod template restarts node-cache on every node. Neither a chart bump, nor an
    agent-only change, nor a Corefile edit may change it: node-cache polls the directory of
    its mounted Corefile.base every 10 s and rewrites /etc/Corefile (kubernetes/dns
    cmd/node-cache/app/configmap.go initDNSConfigSync, DefaultConfigSyncPeriod), which the
    `reload` plugin applies. Only node-cache's own spec rolls it."""

    def pod_template(*args: str, chart: Path = CHART) -> Doc:
        result = run_helm(
            helm_bin,
            "template",
            RELEASE,
            str(chart),
            "--namespace",
            NAMESPACE,
            *DEFAULT_ARGS,
            *args,
        )
        assert result.returncode == 0, result.stderr
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return dict(node_cache_ds(docs)["spec"]["template"])

    base = pod_template()
    bumped = tmp_path / "chart"
    subprocess.run(["cp", "-r", str(CHART), str(bumped)], check=True, timeout=30)
    meta = yaml.safe_load((bumped / "Chart.yaml").read_text())
    meta["version"], meta["appVersion"] = "9.9.9", "9.9.9"
    (bumped / "Chart.yaml").write_text(yaml.safe_dump(meta))
    unchanged = {
        "chart and agent version": pod_template(chart=bumped),
        "agent only": pod_template(
            "--set", "agent.image.tag=2.0.0", "--set", "agent.logLevel=debug"
        ),
        "Corefile": pod_template(
            "--set",
            "nodeLocalDNS.cache.ttl=60",
            "--set",
            "nodeLocalDNS.cache.serveStale.enabled=true",
        ),
    }
    for change, template_ in unchanged.items():
        assert template_ == base, change
    assert pod_template("--set", "nodeLocalDNS.image.tag=1.26.0") != base
    assert pod_template("--set", "nodeLocalDNS.healthPort=8081") != base


def test_node_cache_updates_by_surge(scenarios: dict[str, list[Doc]], helm_bin: str) -> None:
    """The new pod serves before the old one stops, and the old one removes nothing:
    - DaemonSet maxSurge with maxUnavailable 0: the old pod is deleted once the new one is
      available (Ready for minReadySeconds; kubernetes pkg/controller/daemon/update.go);
    - no declared ports: a hostNetwork pod's container ports are host ports (defaulted
      hostPort = containerPort, pkg/apis/core/v1/defaults.go), and the scheduler's NodePorts
      filter refuses a pod whose host ports another pod on the node holds: the surge pod
      would stay Pending;
    - -skipteardown in IPVS mode: without it the old process's SIGTERM deletes the
      interface holding localIP (cmd/node-cache/app/cache_app.go TeardownNetworking);
    - -pidfile: the NOTRACK/ACCEPT rules as soon as CoreDNS listens, not after the first
      60 s sync (cache_app.go runPeriodic)."""
    checked = node_cache_scenarios(scenarios)
    assert {"default", "iptables", "dual-stack"} <= set(checked)
    for name, docs in checked.items():
        ds = node_cache_ds(docs)
        assert ds["spec"]["updateStrategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0},
        }, name
        assert ds["spec"]["minReadySeconds"] == 10, name
        pod = ds["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        for c in pod["containers"]:
            assert "ports" not in c, (name, c["name"])
            assert arg_after(c["args"], "-pidfile") == "/etc/coredns.pid"
            ipvs = name != "iptables"
            assert ("-skipteardown=true" in c["args"]) is ipvs, (name, c["name"])
        labels = ds["spec"]["template"]["metadata"]["labels"]
        assert not {"helm.sh/chart", "app.kubernetes.io/version"} & set(labels)
        assert "checksum/config" not in ds["spec"]["template"]["metadata"].get("annotations", {})
    off = render(helm_bin, *DEFAULT_ARGS, "--set", "nodeLocalDNS.skipTeardown=false")
    assert "-skipteardown=true" not in container(node_cache_ds(off))["args"]
    refused = template(
        helm_bin,
        *DEFAULT_ARGS,
        "--set",
        "nodeLocalDNS.proxyMode=iptables",
        "--set",
        "nodeLocalDNS.skipTeardown=true",
    )
    assert refused.returncode != 0
    assert "nodeLocalDNS.skipTeardown=true with proxyMode=iptables" in refused.stderr
    assert "kube-dns ClusterIP" in refused.stderr


def test_upstream_service_lives_with_the_cluster_dns(helm_bin: str) -> None:
    """A Service selects pods of its own namespace only: kube-dns-upstream goes where
    CoreDNS runs. node-cache takes its address from $<NAME>_SERVICE_HOST (kubernetes/dns
    cmd/node-cache/app/cache_app.go toSvcEnv), and kubelet injects those for the Services
    of the pod's own namespace only (kubernetes pkg/kubelet/kubelet_pods.go
    getServiceEnvVarMap): installed elsewhere, the chart sets the variable itself."""
    same = run_helm(
        helm_bin,
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        "kube-system",
        *NO_CLUSTER_ARGS[:4],
        "--api-versions",
        VAP_CAPABILITY,
    )
    assert same.returncode == 0, same.stderr
    docs = [d for d in yaml.safe_load_all(same.stdout) if d]
    svc = one(docs, "Service", "kube-dns-upstream")
    assert svc["metadata"]["namespace"] == "kube-system"
    assert "clusterIP" not in svc["spec"]
    assert "env" not in container(node_cache_ds(docs))  # the service link gives it

    refused = template(helm_bin, *DEFAULT_ARGS[:4], "--api-versions", VAP_CAPABILITY)
    assert refused.returncode != 0
    for part in (
        "nodeLocalDNS.upstreamService.clusterIP is required",
        f"the release namespace is {NAMESPACE}",
        "KUBE_DNS_UPSTREAM_SERVICE_HOST",
        "helm install -n kube-system",
    ):
        assert part in refused.stderr, part

    for scenario in ("default", "dual-stack"):
        docs = render(helm_bin, "-f", str(CHART / "ci" / f"{scenario}-values.yaml"))
        svc = one(docs, "Service", "kube-dns-upstream")
        assert svc["metadata"]["namespace"] == "kube-system"
        assert svc["spec"]["clusterIP"] == UPSTREAM_IP
        for c in node_cache_ds(docs)["spec"]["template"]["spec"]["containers"]:
            assert c["env"] == [{"name": "KUBE_DNS_UPSTREAM_SERVICE_HOST", "value": UPSTREAM_IP}]
            assert arg_after(c["args"], "-upstreamsvc") == "kube-dns-upstream"

    docs = render(
        helm_bin,
        *DEFAULT_ARGS,
        "--set",
        "nodeLocalDNS.upstreamService.name=coredns-upstream",
        "--set",
        "nodeLocalDNS.upstreamService.namespace=dns",
    )
    svc = one(docs, "Service", "coredns-upstream")
    assert svc["metadata"]["namespace"] == "dns"
    c = container(node_cache_ds(docs))
    assert c["env"] == [{"name": "COREDNS_UPSTREAM_SERVICE_HOST", "value": UPSTREAM_IP}]
    assert arg_after(c["args"], "-upstreamsvc") == "coredns-upstream"


def server_blocks(text: str) -> dict[str, list[str]]:
    """Server block header -> its directive lines (stripped)."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    depth = 0
    for line in text.splitlines():
        stripped = line.strip()
        if depth == 0 and stripped.endswith("{"):
            current = blocks.setdefault(stripped[:-1].strip(), [])
            depth = 1
            continue
        depth += stripped.count("{") - stripped.count("}")
        if depth > 0 and current is not None:
            current.append(stripped)
    return blocks


def test_corefile_options(scenarios: dict[str, list[Doc]], helm_bin: str) -> None:
    """The deliveryhero chart's node-cache options, as CoreDNS's cache plugin
    (success/denial/prefetch/serve_stale) and forward plugin (force_tcp/prefer_udp) take
    them; every extra server block binds the listening addresses."""
    assert corefile(scenarios["default"]).count("force_tcp") == 3  # the cluster zones only
    blocks = server_blocks(corefile(scenarios["tuned"]))
    cluster = blocks["cluster.local:53"]
    assert cluster[:8] == [
        "errors",
        "cache {",
        "success 9984 10",
        "denial 9984 5",
        "prefetch 3 1m 10%",
        "serve_stale 1h verify",
        "}",
        "reload",
    ]
    assert "forward . __PILLAR__CLUSTER__DNS__ {" in cluster and "prefer_udp" in cluster
    assert blocks[".:53"][1] == "cache 60 {"
    assert "forward . __PILLAR__UPSTREAM__SERVERS__ {" in blocks[".:53"]
    assert "force_tcp" in blocks[".:53"]
    stub = blocks["corp.example.com:53"]
    assert stub[1] == "cache 300 {"
    assert f"bind {LOCAL_IP}" in stub
    assert "forward . 10.0.0.53 10.0.1.53" in stub

    iptables = render(
        helm_bin,
        *DEFAULT_ARGS,
        "--set",
        "nodeLocalDNS.proxyMode=iptables",
        "--set-json",
        'nodeLocalDNS.extraServerBlocks=[{"zones":["a.example","b.example"],"forward":["10.0.0.1"],'
        '"protocol":"force_tcp"},{"zones":["c.example"],"forward":["10.0.0.2"],'
        '"bind":["169.254.20.11"]}]',
    )
    blocks = server_blocks(corefile(iptables))
    assert f"bind {LOCAL_IP} {KUBE_DNS}" in blocks["a.example:53 b.example:53"]
    assert "force_tcp" in blocks["a.example:53 b.example:53"]
    assert "bind 169.254.20.11" in blocks["c.example:53"]

    override = "custom:53 {\n    bind 169.254.20.10\n    health 169.254.20.10:8080\n}"
    docs = render(
        helm_bin,
        *DEFAULT_ARGS,
        "--set-json",
        f"nodeLocalDNS.corefileOverride={json.dumps(override)}",
    )
    assert corefile(docs).strip() == override


@pytest.mark.netns
@pytest.mark.parametrize("scenario", ["default", "tuned"])
def test_the_real_node_cache_serves_the_rendered_corefile(scenario: str) -> None:
    """The rendered Corefile and arguments, run by the real node-cache in a sandbox node
    (bench/dns_availability.py, its steady scenario with ``-f``): it starts, adds its
    iptables rules at once (-pidfile) and a pod's glibc resolves a cluster and an outside
    name through it."""
    values = CHART / "ci" / f"{scenario}-values.yaml"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "dns_availability.py"),
            *("--scenario", "steady-glibc", "--steady", "1", "--before", "0.5", "--after", "0"),
            *("--json", "--quiet", "-f", str(values)),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["glibc"]["failed"] == 0, result
    assert result["glibc"]["lookups"] > 10
    assert result["iptables_rules"] > 0  # -pidfile: not the 60 s sync


def test_node_cache_disabled_renders_only_the_agent(scenarios: dict[str, list[Doc]]) -> None:
    docs = scenarios["node-cache-disabled"]
    for kind in ("DaemonSet", "ConfigMap", "Service", "ServiceAccount"):
        assert not component(docs, kind, "node-cache"), kind
    assert not find(docs, "Service", "kube-dns-upstream")
    assert container(agent_ds(docs))["env"][0] == {
        "name": "NODELOCALDNS_AGENT_MODE",
        "value": "observe",
    }


def test_china_mirror_switches_only_the_image(scenarios: dict[str, list[Doc]]) -> None:
    docs = scenarios["china-mirror"]
    assert container(node_cache_ds(docs))["image"] == "k8smirror/k8s-dns-node-cache:1.25.0"
    assert forwards(corefile(docs))["cluster.local"] == ["__PILLAR__CLUSTER__DNS__"]
    volumes = {v["name"] for v in agent_ds(docs)["spec"]["template"]["spec"]["volumes"]}
    assert "etc-sysconfig" not in volumes


def test_ipvs_form_needs_no_kube_dns_ip(helm_bin: str) -> None:
    docs = render(helm_bin, *DEFAULT_ARGS[2:])
    assert bind_lines(corefile(docs)) == [[LOCAL_IP]] * 4


def test_missing_kube_dns_ip_fails_with_a_clear_message(helm_bin: str) -> None:
    result = template(helm_bin, *DEFAULT_ARGS[2:], "--set", "nodeLocalDNS.proxyMode=iptables")
    assert result.returncode != 0
    assert "nodeLocalDNS.kubeDNSServiceIP is required" in result.stderr
    assert (
        "kubectl -n kube-system get svc kube-dns -o jsonpath='{.spec.clusterIP}'" in result.stderr
    )


# ----------------------------------------------------------------------------- agent
#: nsenter (SYS_*), keeping kubelet files' owner and mode (CHOWN, FOWNER, DAC_OVERRIDE),
#: check's iptables-save of node-cache's rules (NET_ADMIN; NET_RAW for iptables-legacy)
AGENT_CAPS = {
    *("SYS_ADMIN", "SYS_PTRACE", "SYS_CHROOT", "CHOWN", "FOWNER", "DAC_OVERRIDE"),
    *("NET_ADMIN", "NET_RAW"),
}


def test_agent_daemonset(default: list[Doc]) -> None:
    ds = agent_ds(default)
    pod = ds["spec"]["template"]["spec"]
    c = container(ds)
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["dnsPolicy"] == "Default"  # never the cluster DNS it is changing
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["terminationGracePeriodSeconds"] >= 2 * (90 + 120)  # change + its rollback
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "10%"},
    }
    assert c["args"] == ["run"]
    sc = c["securityContext"]
    assert sc["privileged"] is False
    assert sc["runAsUser"] == 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == AGENT_CAPS
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9779, "protocol": "TCP"}]
    assert c["resources"] == {
        "requests": {"cpu": "10m", "memory": "56Mi"},
        "limits": {"memory": "128Mi"},
    }
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["NODELOCALDNS_AGENT_MODE"]["value"] == "migrate"
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9779"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


#: host directories every layout mounts read-only (the agent reads them: kubeletconfig/
#: unitfile.py UNIT_DIRS, detect/network.py CNI_DIR) and its state directory (read-write)
READ_ONLY_DIRS = {
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/local/lib/systemd/system",
    "/etc/cni/net.d",
}
STATE_DIR = "/var/lib/nodelocaldns-agent"
#: what each layout writes (README "Compatibility", detect/kubelet.py WELL_KNOWN_*)
#: kubelet.service's drop-in directory: the agent's own drop-in where a unit's Environment= or
#: ExecStart= sets --cluster-dns (ACK's kubeadm drop-in, EKS AL2's extra args)
UNIT_DROPINS = "/etc/systemd/system/kubelet.service.d"
LAYOUT_WRITES = {
    "kubeadm": {"/var/lib/kubelet", "/etc/default", "/etc/sysconfig", UNIT_DROPINS},
    "eks": {"/etc/kubernetes/kubelet", UNIT_DROPINS},
    "tke": {"/etc/kubernetes"},
    "all": {"/etc/kubernetes", "/var/lib/kubelet", "/etc/default", "/etc/sysconfig", UNIT_DROPINS},
    # embedded kubelets (nodelocaldns_agent/detect/embedded.py, hostpaths.py
    # EMBEDDED_WRITABLE_DIRS): only their own configuration directories
    "k3s": {"/etc/rancher/k3s", "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d"},
    "rke2": {"/etc/rancher/rke2", "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d"},
    "microk8s": {"/var/snap/microk8s"},
}


def host_mounts(docs: list[Doc]) -> dict[str, bool]:
    """host path -> read-only, of the agent's hostPath volumes."""
    ds = agent_ds(docs)
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    out = {}
    for mount in container(ds)["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "hostPath" in volume:
            assert mount["mountPath"] == "/host" + volume["hostPath"]["path"]
            out[volume["hostPath"]["path"]] = bool(mount["readOnly"])
    return out


@pytest.mark.parametrize("layout", sorted(LAYOUT_WRITES))
def test_agent_writes_only_where_its_layout_needs(helm_bin: str, layout: str) -> None:
    """issue 13, finding 7: read-write only the layout's directories (and the state dir),
    everything else the agent reads read-only; NODELOCALDNS_AGENT_WRITABLE_DIRS says the
    same as the mounts (the state dir is the agent's own, never a kubelet file's)."""
    docs = render(helm_bin, *DEFAULT_ARGS, "--set", f"agent.layout={layout}")
    mounts = host_mounts(docs)
    writable = {path for path, read_only in mounts.items() if not read_only}
    assert writable == LAYOUT_WRITES[layout] | {STATE_DIR}
    assert set(mounts) >= READ_ONLY_DIRS
    assert mounts["/etc/os-release"] is True  # a file, read-only: detect/hostos.py
    # the other layouts' directories stay visible, read-only: the agent reports them
    assert {"/etc/kubernetes", "/var/lib/kubelet", "/etc/default", "/etc/sysconfig"} <= set(mounts)
    config = agent_config(docs)
    assert set(config["NODELOCALDNS_AGENT_WRITABLE_DIRS"].split(",")) == LAYOUT_WRITES[layout]
    if layout != "tke":
        # manifests/ and pki/ under /etc/kubernetes: never writable but with tke (whose
        # env file lives directly in /etc/kubernetes) or all
        assert mounts["/etc/kubernetes"] is (layout != "all")


def test_agent_host_paths(default: list[Doc], helm_bin: str) -> None:
    ds = agent_ds(default)
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container(ds)["volumeMounts"]}
    assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
    assert mounts["var-lib-kubelet"]["mountPropagation"] == "None"
    # its existence tells programs that systemd is running: never create it
    assert volumes["run-systemd-system"]["hostPath"]["type"] == "Directory"
    # the default layout is every supported one
    assert {p for p, ro in host_mounts(default).items() if not ro} == LAYOUT_WRITES["all"] | {
        STATE_DIR
    }
    eks = agent_ds(render(helm_bin, *DEFAULT_ARGS, "--set", "agent.layout=eks"))
    eks_volumes = {v["name"]: v for v in eks["spec"]["template"]["spec"]["volumes"]}
    # never created: where it is missing (or TKE's file of that name) it is no EKS node
    assert eks_volumes["etc-kubernetes-kubelet"]["hostPath"] == {
        "path": "/etc/kubernetes/kubelet",
        "type": "Directory",
    }

    # a kubelet configuration elsewhere: one more entry; an entry can be switched off,
    # made read-only or dropped
    docs = render(
        helm_bin,
        *DEFAULT_ARGS,
        *sets(
            {
                "agent.hostPaths.opt-kubelet": {
                    "path": "/opt/kubelet",
                    "readOnly": False,
                    "type": "Directory",
                },
                "agent.hostPaths.etc-sysconfig.enabled": False,
                "agent.hostPaths.etc-default.readOnly": True,
                "agent.hostPaths.etc-cni-net-d": None,
            }
        ),
    )
    pod = agent_ds(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["opt-kubelet"]["hostPath"] == {"path": "/opt/kubelet", "type": "Directory"}
    assert "etc-sysconfig" not in volumes
    assert "etc-cni-net-d" not in volumes
    assert {
        "name": "opt-kubelet",
        "mountPath": "/host/opt/kubelet",
        "readOnly": False,
    } in container(agent_ds(docs))["volumeMounts"]
    assert agent_config(docs)["NODELOCALDNS_AGENT_WRITABLE_DIRS"] == (
        "/etc/kubernetes,/var/lib/kubelet,/etc/systemd/system/kubelet.service.d,/opt/kubelet"
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"agent.hostPaths.opt-kubelet": {"readOnly": False}}, "needs path and type"),
        ({"agent.hostPaths.opt-kubelet": {"path": "/opt/../etc", "type": "Directory"}}, "path"),
        ({"agent.hostPaths.opt-kubelet": {"path": "/opt/kubelet/", "type": "Directory"}}, "path"),
        ({"agent.layout": "k0s"}, "layout"),
    ],
)
def test_bad_host_paths_fail(helm_bin: str, values: dict[str, Any], message: str) -> None:
    result = template(helm_bin, *DEFAULT_ARGS, *sets(values))
    assert result.returncode != 0, values
    assert message in result.stderr, result.stderr


def test_agent_stays_off_control_plane_nodes(default: list[Doc], helm_bin: str) -> None:
    """Their /etc/kubernetes holds the static pod manifests and the cluster's keys; the
    agent tolerates every taint (tainted worker pools too), so a node affinity keeps it
    off kubeadm's control-plane nodes unless agent.affinity is replaced."""
    pod = agent_ds(default)["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {
        "matchExpressions": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}
        ]
    }
    # `{}` would merge with the default (Helm coalesces maps): null drops it
    everywhere = agent_ds(render(helm_bin, *DEFAULT_ARGS, *sets({"agent.affinity": None})))
    assert "affinity" not in everywhere["spec"]["template"]["spec"]


def test_agent_privileged_only_when_asked(scenarios: dict[str, list[Doc]]) -> None:
    for name, docs in scenarios.items():
        sc = container(agent_ds(docs))["securityContext"]
        assert sc["privileged"] is (name == "privileged"), name
        assert set(sc["capabilities"]["add"]) == AGENT_CAPS, name


def run_flag_env_names() -> set[str]:
    """The NODELOCALDNS_AGENT_* variables `nodelocaldns-agent run` reads (from its --help)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nodelocaldns_agent", "run", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    return set(re.findall(r"\$(NODELOCALDNS_AGENT_[A-Z0-9_]+)", proc.stdout))


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        ("any", "0.0.0.0:9779"),
        ("anyIPv6", "[::]:9779"),
        ("hostIP", "$(HOST_IP):9779"),
        ("hostIPv6", "[$(HOST_IP)]:9779"),
    ],
)
def test_metrics_bind_address(helm_bin: str, bind: str, address: str) -> None:
    """issue 13, finding 4 (chart half): the node's own address from the downward API,
    expanded by the kubelet in the pod's env (not from a ConfigMap, where $(VAR) stays as
    is); IPv6 in brackets (metrics/server.py parse_address). The probes keep reaching it:
    a host-network pod's IP is the node's."""
    docs = render(helm_bin, *DEFAULT_ARGS, "--set", f"metrics.bindAddress={bind}")
    c = container(agent_ds(docs))
    env = [e["name"] for e in c["env"]]
    config = agent_config(docs)
    if bind.startswith("host"):
        assert "NODELOCALDNS_AGENT_METRICS_ADDRESS" not in config
        host_ip = next(e for e in c["env"] if e["name"] == "HOST_IP")
        assert host_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
        (metrics,) = [e for e in c["env"] if e["name"] == "NODELOCALDNS_AGENT_METRICS_ADDRESS"]
        assert metrics["value"] == address
        # $(HOST_IP) expands only when HOST_IP is defined earlier in the list
        assert env.index("HOST_IP") < env.index("NODELOCALDNS_AGENT_METRICS_ADDRESS")
    else:
        assert "HOST_IP" not in env
        assert config["NODELOCALDNS_AGENT_METRICS_ADDRESS"] == address
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert agent_ds(docs)["spec"]["template"]["spec"]["hostNetwork"] is True


def test_agent_settings_come_from_values(scenarios: dict[str, list[Doc]]) -> None:
    known = run_flag_env_names()
    default = agent_config(scenarios["default"])
    assert default == {
        "NODELOCALDNS_AGENT_HOST_ROOT": "/host",
        "NODELOCALDNS_AGENT_PROBE_NAME": "kubernetes.default.svc.cluster.local",
        "NODELOCALDNS_AGENT_LOCAL_DNS": LOCAL_IP,
        "NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS": "1",
        "NODELOCALDNS_AGENT_FAILSAFE_AFTER": "300",
        "NODELOCALDNS_AGENT_RECOVER_AFTER": "600",
        "NODELOCALDNS_AGENT_FAILSAFE_MAX_FLIPS_PER_HOUR": "2",
        "NODELOCALDNS_AGENT_OPT_OUT_LABEL": "nodelocaldns-agent.io/opt-out",
        "NODELOCALDNS_AGENT_RESYNC_INTERVAL": "600",
        "NODELOCALDNS_AGENT_VERIFY_TIMEOUT": "120",
        "NODELOCALDNS_AGENT_METRICS_ADDRESS": "0.0.0.0:9779",
        # the classic layouts (hostpaths.py DEFAULT_WRITABLE_DIRS; the CLI default adds
        # EMBEDDED_WRITABLE_DIRS, which only the k3s, rke2 and microk8s layouts mount)
        "NODELOCALDNS_AGENT_WRITABLE_DIRS": ",".join(DEFAULT_WRITABLE_DIRS),
        "NODELOCALDNS_AGENT_NODE_CACHE_HEALTH_PORT": "8080",
        "NODELOCALDNS_AGENT_LOG_FORMAT": "json",
        "NODELOCALDNS_AGENT_LOG_LEVEL": "info",
    }
    stale = agent_config(scenarios["stale-pods"])
    assert stale["NODELOCALDNS_AGENT_RESTART_STALE_PODS"] == "true"
    assert stale["NODELOCALDNS_AGENT_FALLBACK_NAMESERVER"] == "true"
    assert stale["NODELOCALDNS_AGENT_NO_FAILSAFE"] == "true"
    assert stale["NODELOCALDNS_AGENT_MAX_CONCURRENT_RESTARTS"] == "2"
    assert stale["NODELOCALDNS_AGENT_LOG_FORMAT"] == "text"
    privileged = agent_config(scenarios["privileged"])
    assert privileged["NODELOCALDNS_AGENT_RESTART_COMMAND"].endswith(
        "systemctl restart kubelet.service"
    )
    assert privileged["NODELOCALDNS_AGENT_SYSTEMCTL_COMMAND"].endswith("-- systemctl")
    assert "NODELOCALDNS_AGENT_SYSTEMCTL_COMMAND" not in agent_config(scenarios["default"])
    for name, docs in scenarios.items():
        env = {e["name"] for e in container(agent_ds(docs))["env"]}
        names = set(agent_config(docs)) | (env - {"NODE_NAME", "POD_NAMESPACE", "HOST_IP"})
        assert names <= known, f"{name}: the agent reads no {sorted(names - known)}"


def test_checksum_rolls_the_agent_only_on_agent_settings(helm_bin: str) -> None:
    def checksum(*args: str) -> str:
        ds = agent_ds(render(helm_bin, *DEFAULT_ARGS, *args))
        return str(ds["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum()
    assert checksum("--set", "agent.failsafe.afterSeconds=301") != base
    assert checksum("--set", "agent.restartStalePods=true") != base
    assert checksum("--set", "nodeLocalDNS.localIP=169.254.0.53") != base
    assert checksum("--set", "nodeLocalDNS.image.tag=1.25.1") == base


def test_grace_period_follows_the_verify_timeout(helm_bin: str) -> None:
    ds = agent_ds(render(helm_bin, *DEFAULT_ARGS, "--set", "agent.verifyTimeoutSeconds=600"))
    # restart (90 s) + verify, then the rollback's restart + verify, + 60 s margin
    assert ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 2 * (90 + 600) + 60


# ----------------------------------------------------------------------------- RBAC
def rules_of(
    docs: list[Doc], kind: str, comp: str
) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """(apiGroup, resource, resourceNames) -> verbs, for one Role/ClusterRole."""
    (role,) = component(docs, kind, comp)
    out: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(rule.get("resourceNames", ())))
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_no_wildcards_anywhere(scenarios: dict[str, list[Doc]]) -> None:
    for name, docs in scenarios.items():
        for role in find(docs, "Role") + find(docs, "ClusterRole"):
            for rule in role["rules"]:
                for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                    assert "*" not in rule.get(field, []), (name, role["metadata"]["name"])
        text = yaml.safe_dump_all(find(docs, "ValidatingAdmissionPolicy"))
        assert "'*'" not in text, name


def test_agent_rbac_is_least_privilege(scenarios: dict[str, list[Doc]]) -> None:
    slot = ("nodelocaldns-agent-slot-0",)
    assert rules_of(scenarios["default"], "ClusterRole", "agent") == {
        ("", "nodes", ()): {"list", "watch", "patch"},
    }
    assert rules_of(scenarios["default"], "Role", "agent") == {
        ("coordination.k8s.io", "leases", ()): {"create", "list", "watch"},
        ("coordination.k8s.io", "leases", slot): {"get", "update", "patch", "delete"},
    }
    # Node Events: only in "default" (the one namespace kube-apiserver accepts for them)
    assert rules_of(scenarios["default"], "Role", "agent-events") == {
        ("", "events", ()): {"create", "patch"},
    }
    (events_role,) = component(scenarios["default"], "Role", "agent-events")
    (events_binding,) = component(scenarios["default"], "RoleBinding", "agent-events")
    (sa,) = component(scenarios["default"], "ServiceAccount", "agent")
    assert events_role["metadata"]["namespace"] == events_binding["metadata"]["namespace"]
    assert events_role["metadata"]["namespace"] == "default"
    assert events_binding["roleRef"]["name"] == events_role["metadata"]["name"]
    assert events_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    assert rules_of(scenarios["stale-pods"], "ClusterRole", "agent") == {
        ("", "nodes", ()): {"list", "watch", "patch"},
        ("", "pods", ()): {"list"},
        ("", "pods/eviction", ()): {"create"},
    }
    # one named Lease per allowed concurrent restart
    assert (
        "coordination.k8s.io",
        "leases",
        ("nodelocaldns-agent-slot-0", "nodelocaldns-agent-slot-1"),
    ) in rules_of(scenarios["stale-pods"], "Role", "agent")
    for name, docs in scenarios.items():
        if name != "stale-pods":
            resources = {key[1] for key in rules_of(docs, "ClusterRole", "agent")}
            assert not resources & {"pods", "pods/eviction"}, name


def test_bindings_point_at_the_right_service_accounts(default: list[Doc]) -> None:
    for comp in ("agent", "revert"):
        (sa,) = component(default, "ServiceAccount", comp)
        for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
            (binding,) = component(default, kind, comp)
            (role,) = component(default, role_kind, comp)
            assert binding["roleRef"] == {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": role_kind,
                "name": role["metadata"]["name"],
            }
            assert binding["subjects"] == [
                {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
            ]


# ----------------------------------------------------------------------------- uninstall
HOOK = {
    "helm.sh/hook": "pre-delete",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded,hook-failed",
}
#: a failed Job stays for `kubectl logs`; its ServiceAccount and RBAC do not (issue 13,
#: finding 6): hook-failed on them, and Helm >= 3.19 deletes the earlier hooks of a failed
#: one by their hook-succeeded policy (helm pkg/action/hooks.go)
JOB_HOOK = {
    "helm.sh/hook": "pre-delete",
    "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded",
}


def test_pre_delete_hook_reverts_the_fleet(default: list[Doc]) -> None:
    revert = [
        d
        for d in default
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "revert"
        and d["kind"] not in VAP_KINDS  # the revert guard is no hook: it outlives them
    ]
    assert {d["kind"] for d in revert} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Job",
    }
    for doc in revert:
        annotations = doc["metadata"]["annotations"]
        want = JOB_HOOK if doc["kind"] == "Job" else HOOK
        assert {k: annotations[k] for k in want} == want, doc["kind"]
        assert int(annotations["helm.sh/hook-weight"]) == (0 if doc["kind"] == "Job" else -10)
    job = one(revert, "Job")
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] > 1800
    pod = job["spec"]["template"]["spec"]
    c = container(job)
    assert c["image"] == container(agent_ds(default))["image"]
    assert c["args"] == [
        "revert-fleet",
        "--daemonset",
        agent_ds(default)["metadata"]["name"],
        "--namespace",
        NAMESPACE,
        "--timeout",
        "1800",
    ]
    assert "command" not in c  # the image's entry point
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert rules_of(default, "Role", "revert") == {
        ("apps", "daemonsets", (agent_ds(default)["metadata"]["name"],)): {"get", "patch"}
    }
    assert rules_of(default, "ClusterRole", "revert") == {("", "nodes", ()): {"list"}}


def test_no_pre_upgrade_hook_without_a_cluster(helm_bin: str) -> None:
    """pre-upgrade runs only when an upgrade drops node-cache that `lookup` still finds;
    `helm template` finds nothing, so the agent keeps its mode and only pre-delete renders."""
    docs = render(
        helm_bin, *DEFAULT_ARGS[2:], "--set", "nodeLocalDNS.enabled=false", "--is-upgrade"
    )
    job = one(docs, "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-delete"
    assert container(agent_ds(docs))["env"][0]["value"] == "migrate"
    off = render(helm_bin, *DEFAULT_ARGS, "--set", "agent.uninstall.enabled=false")
    assert not component(off, "Job", "revert")


# ----------------------------------------------------------------------------- schema
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "bogus=1"], "bogus"),
        (["--set", "agent.bogus=1"], "bogus"),
        (["--set", "nodeLocalDNS.image.bogus=x"], "bogus"),
        (["--set", "agent.hostPaths.etc-kubernetes.bogus=x"], "bogus"),
        (["--set", "agent.mode=yolo"], "mode"),
        (["--set-string", "agent.maxConcurrentRestarts=two"], "maxConcurrentRestarts"),
        (["--set", "agent.maxConcurrentRestarts=0"], "maxConcurrentRestarts"),
        (["--set", "nodeLocalDNS.localIP=169.254.20.300"], "localIP"),
        (["--set", "nodeLocalDNS.localIPv6=169.254.20.11"], "localIPv6"),
        (["--set", "nodeLocalDNS.kubeDNSServiceIP=kube-dns"], "kubeDNSServiceIP"),
        (["--set", "nodeLocalDNS.proxyMode=nftables"], "proxyMode"),
        (["--set", "agent.failsafe.afterSeconds=-1"], "afterSeconds"),
        (["--set-string", "metrics.serviceMonitor.enabled=yes"], "enabled"),
        (["--set", "agent.updateStrategy.maxUnavailable=0"], "maxUnavailable"),
    ],
)
def test_schema_rejects_bad_values(helm_bin: str, args: list[str], message: str) -> None:
    result = template(helm_bin, *DEFAULT_ARGS, *args)
    assert result.returncode != 0, f"accepted {args}"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr


def test_schema_is_strict_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, path
            assert isinstance(value, dict), path
            assert set(value) <= set(node["properties"]), (path, set(value))
            for key, sub in value.items():
                walk(node["properties"][key], sub, f"{path}.{key}")

    walk(schema, values, "")


# ----------------------------------------------------------------------------- image
def test_agent_image_needs_an_explicit_repository(helm_bin: str) -> None:
    """issue 13, finding 8: no default image (a bare name is docker.io/library/...)."""
    result = template(helm_bin, *DEFAULT_ARGS[:2], *DEFAULT_ARGS[4:])
    assert result.returncode != 0
    assert "agent.image.repository is required" in result.stderr
    assert "docker.io/library" in result.stderr


@pytest.mark.parametrize(
    "repository",
    [
        "nodelocaldns-agent",
        "myorg/nodelocaldns-agent",
        "https://registry.example.com/x",
        "Registry.example.com/X",
    ],
)
def test_agent_image_repository_names_its_registry(helm_bin: str, repository: str) -> None:
    result = template(helm_bin, *DEFAULT_ARGS, "--set", f"agent.image.repository={repository}")
    assert result.returncode != 0, repository
    assert "/agent/image/repository" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "repository",
    [
        IMAGE,
        "localhost:5000/nodelocaldns-agent",
        "registry.example.com:5000/a/b/c",
        "ghcr.io/org/agent",
    ],
)
def test_agent_image_by_tag_or_digest(helm_bin: str, repository: str) -> None:
    digest = "sha256:" + "ab" * 32
    by_tag = render(helm_bin, *DEFAULT_ARGS, "--set", f"agent.image.repository={repository}")
    assert container(agent_ds(by_tag))["image"] == f"{repository}:0.1.0"
    pinned = render(
        helm_bin,
        *DEFAULT_ARGS,
        "--set",
        f"agent.image.repository={repository}",
        "--set",
        f"agent.image.digest={digest}",
    )
    assert container(agent_ds(pinned))["image"] == f"{repository}@{digest}"
    assert container(one(pinned, "Job"))["image"] == f"{repository}@{digest}"


# ----------------------------------------------------------------------------- Pod Security
#: Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards):
#: the capabilities baseline allows to add, and the volume types restricted allows
BASELINE_CAPS = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def pod_security_level(pod: Doc) -> str:
    """The least privileged Pod Security level that admits ``pod`` (the controls this
    chart's pods can touch: host namespaces, privileged, capabilities, host paths and
    ports; for restricted also volume types, privilege escalation, non-root, seccomp)."""
    containers = pod["containers"] + pod.get("initContainers", [])
    contexts = [c.get("securityContext", {}) for c in containers]
    volumes = pod.get("volumes", [])
    if (
        any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
        or any(sc.get("privileged") for sc in contexts)
        or any(set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPS for sc in contexts)
        or any("hostPath" in v for v in volumes)
        or any(port.get("hostPort") for c in containers for port in c.get("ports", []))
    ):
        return "privileged"
    pod_sc = pod.get("securityContext", {})
    seccomp = pod_sc.get("seccompProfile", {}).get("type")
    restricted = (
        all(set(v) - {"name"} <= RESTRICTED_VOLUMES for v in volumes)
        and all(sc.get("allowPrivilegeEscalation") is False for sc in contexts)
        and all(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True for sc in contexts)
        and all(sc.get("runAsUser", pod_sc.get("runAsUser")) != 0 for sc in contexts)
        and all(
            sc.get("seccompProfile", {}).get("type", seccomp) in {"RuntimeDefault", "Localhost"}
            for sc in contexts
        )
        and all(sc.get("capabilities", {}).get("drop") == ["ALL"] for sc in contexts)
        and all(
            set(sc.get("capabilities", {}).get("add", [])) <= {"NET_BIND_SERVICE"}
            for sc in contexts
        )
    )
    return "restricted" if restricted else "baseline"


def test_pod_security_levels_in_the_readme(default: list[Doc]) -> None:
    """The levels chart/README.md ("Pod Security") gives, from the rendered pods."""
    levels = {
        "agent": pod_security_level(agent_ds(default)["spec"]["template"]["spec"]),
        "node-cache": pod_security_level(node_cache_ds(default)["spec"]["template"]["spec"]),
        "uninstall hook": pod_security_level(one(default, "Job")["spec"]["template"]["spec"]),
    }
    assert levels == {
        "agent": "privileged",
        "node-cache": "privileged",
        "uninstall hook": "restricted",
    }
    readme = (CHART / "README.md").read_text()
    for name, level in levels.items():
        assert f"| {name} | {level} |" in readme, name


# ----------------------------------------------------------------------------- README
def test_readme_values_table_matches_values_yaml() -> None:
    """Every row of chart/README.md's values table is a key of values.yaml with that
    default, and every value is in the table (itself or a map above it)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    table = readme.split("\n## Values\n", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([A-Za-z0-9_.-]+)` \| ([^|]+) \|", table, re.M))
    missing = object()

    def lookup(path: str) -> Any:
        node: Any = values
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return missing
            node = node[part]
        return node

    for key, default in rows.items():
        value = lookup(key)
        assert value is not missing, f"README documents {key}, values.yaml has no such key"
        shown = re.fullmatch(r"`([^`]*)`(?: \(required\))?", default.strip())
        if shown:
            assert json.loads(shown[1]) == value, (key, shown[1], value)

    def leaves(node: Any, path: str) -> Iterable[str]:
        if isinstance(node, dict) and node:
            for key, sub in node.items():
                yield from leaves(sub, f"{path}.{key}" if path else key)
        else:
            yield path

    for leaf in leaves(values, ""):
        parts = leaf.split(".")
        assert any(".".join(parts[:i]) in rows for i in range(1, len(parts) + 1)), (
            f"{leaf} is not in the README's values table"
        )


# ----------------------------------------------------------------------------- names
def test_names_fit_in_63_characters(helm_bin: str) -> None:
    release = "a-very-long-release-name-for-testing-name-truncation"  # 52: Helm allows 53
    docs = render(
        helm_bin,
        "-f",
        str(CHART / "ci" / "monitoring-values.yaml"),
        "--api-versions",
        VAP_CAPABILITY,
        release=release,
    )
    names = set()
    for doc in docs:
        name = doc["metadata"]["name"]
        assert len(name) <= 63 and DNS_LABEL.match(name), name
        names.add((doc["kind"], name))
        for value in doc["metadata"].get("labels", {}).values():
            assert len(value) <= 63, value
    assert len(names) == len(docs), "two objects of one kind got the same name"


# ----------------------------------------------------------------------------- NOTES
def test_notes_tell_how_to_watch_the_rollout(helm_bin: str) -> None:
    text = notes(helm_bin, *NO_CLUSTER_ARGS, "--set", "agent.nodeAdmissionPolicy=always")
    agent = f"{RELEASE}-nodelocaldns-agent"
    assert "kubectl get nodes -L nodelocaldns-agent.io/state" in text
    assert f"kubectl -n {NAMESPACE} exec ds/{agent} -- nodelocaldns-agent status" in text
    assert "nodelocaldns_agent_migration_state" in text


# ----------------------------------------------------------------------------- checkov
def test_checkov_finds_nothing_unexplained(scenarios: dict[str, list[Doc]], tmp_path: Path) -> None:
    """Every finding is fixed or skipped in place (checkov.io/skipN: ID=reason)."""
    for name, docs in scenarios.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
        for doc in docs:
            for key, value in doc["metadata"].get("annotations", {}).items():
                if key.startswith("checkov.io/skip"):
                    check, _, reason = value.partition("=")
                    assert re.fullmatch(r"CKV2?_K8S_\d+", check) and len(reason) > 15, value
    report = checkov("-d", str(tmp_path), framework="kubernetes")
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert not failed, "\n".join(failed)
    assert report["summary"]["passed"] > 500
