"""The stack-config model: bad files fail clearly, with the key path and the file, and register nothing."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from platformctl.render import read_stack_file, render_plan
from stacks.config import ConfigError, load_platform_config

ROOT = Path(__file__).resolve().parent.parent
DEV = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
PROD = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())


def _set(doc: dict[str, Any], path: list[Any], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _delete(doc: dict[str, Any], path: list[Any]) -> None:
    for part in path[:-1]:
        doc = doc[part]
    del doc[path[-1]]


def setting(*path: Any, value: Any) -> Callable[[dict], None]:
    return lambda doc: _set(doc["config"], list(path), value)


def deleting(*path: Any) -> Callable[[dict], None]:
    return lambda doc: _delete(doc["config"], list(path))


C = "platform:clusters"
T = "platform:tenants"
I = "platform:identity"

# (case, base document, mutation, key path expected in the message, words expected in the message)
BAD_CONFIGS = [
    ("domain missing", DEV, deleting("platform:domain"), "platform:domain", "required"),
    ("domain not a DNS name", DEV, setting("platform:domain", value="Not A Domain"), "platform:domain", "allowed"),
    ("unknown top-level key", DEV, setting("platform:colour", value="blue"), "platform:colour", "unknown key"),
    ("unknown nested key", DEV, setting(C, "dev", "kubeconfig", "flavour", value="x"),
     "platform:clusters.dev.kubeconfig.flavour", "allowed: caData"),
    ("cluster role missing", DEV, deleting(C, "prod"), "platform:clusters.prod", "required"),
    ("unknown cluster role", DEV, setting(C, "staging", value={"kubeconfig": {}}), "platform:clusters.staging",
     "allowed: controlPlane, dev, prod"),
    ("cluster with both kinds", PROD, setting(C, "dev", "kubeconfig", value={"path": "x", "server": "https://a.b",
     "caData": DEV["config"][C]["dev"]["kubeconfig"]["caData"]}), "platform:clusters.dev", "exactly one of 'eks' and 'kubeconfig'"),
    ("cluster with neither kind", DEV, setting(C, "dev", value={}), "platform:clusters.dev",
     "exactly one of 'eks' and 'kubeconfig'"),
    ("kubeconfig without path or content", DEV, deleting(C, "dev", "kubeconfig", "path"),
     "platform:clusters.dev.kubeconfig", "exactly one of 'path' and 'content'"),
    ("kubeconfig server not https", DEV, setting(C, "dev", "kubeconfig", "server", value="http://dev:6443"),
     "platform:clusters.dev.kubeconfig.server", "https://"),
    ("kubeconfig content in plain text", DEV, lambda d: (_delete(d["config"], [C, "dev", "kubeconfig", "path"]),
     _set(d["config"], [C, "dev", "kubeconfig", "content"], "apiVersion: v1")), "platform:clusters",
     "config set --secret"),
    ("EKS without VPC or subnets", PROD, deleting(C, "dev", "eks", "vpc"), "platform:clusters.dev.eks",
     "exactly one of 'vpc'"),
    ("EKS with VPC and subnets", PROD, setting(C, "dev", "eks", "subnets", value={
     "private": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]}), "platform:clusters.dev.eks",
     "exactly one of 'vpc'"),
    ("EKS bad subnet id", PROD, lambda d: (_delete(d["config"], [C, "dev", "eks", "vpc"]), _set(
     d["config"], [C, "dev", "eks", "subnets"], {"private": ["sn-1", "subnet-0123456789abcdef1"]})),
     "platform:clusters.dev.eks.subnets.private[0]", "subnet id"),
    ("EKS bad CIDR", PROD, setting(C, "dev", "eks", "vpc", "cidr", value="10.0.0.0/33"),
     "platform:clusters.dev.eks.vpc.cidr", "CIDR"),
    ("EKS unpinned Kubernetes version", PROD, setting(C, "prod", "eks", "kubernetesVersion", value="1.20"),
     "platform:clusters.prod.eks.kubernetesVersion", "pinned add-ons"),
    ("EKS version as a number", PROD, setting(C, "prod", "eks", "kubernetesVersion", value=1.33),
     "platform:clusters.prod.eks.kubernetesVersion", "a string"),
    ("EKS no node groups", PROD, setting(C, "prod", "eks", "nodeGroups", value=[]),
     "platform:clusters.prod.eks.nodeGroups", "at least 1"),
    ("node group sizes inverted", PROD, setting(C, "prod", "eks", "nodeGroups", 0, "minSize", value=30),
     "platform:clusters.prod.eks.nodeGroups[0]", "minSize <= desiredSize <= maxSize"),
    ("node group size not a number", PROD, setting(C, "prod", "eks", "nodeGroups", 0, "maxSize", value="many"),
     "platform:clusters.prod.eks.nodeGroups[0].maxSize", "whole number"),
    ("EKS region invalid", PROD, setting(C, "prod", "eks", "region", value="mars-1"),
     "platform:clusters.prod.eks.region", "AWS region"),
    ("EKS admin ARN invalid", PROD, setting(C, "prod", "eks", "adminPrincipalArns", value=["admin"]),
     "platform:clusters.prod.eks.adminPrincipalArns[0]", "ARN"),
    ("identity with no source", DEV, deleting(I, "oidc"), "platform:identity", "exactly one of 'oidc' and 'ldap'"),
    ("identity issuer not https", DEV, setting(I, "oidc", "issuer", value="http://login"),
     "platform:identity.oidc.issuer", "https"),
    ("identity group listed twice", DEV, setting(I, "clusterAdmins", value=["admins", "admins"]),
     "platform:identity.clusterAdmins", "listed once"),
    ("identity group empty", DEV, setting(I, "systemApprovers", value=[""]), "platform:identity.systemApprovers[0]",
     "group name"),
    ("identity without cluster admins", DEV, deleting(I, "clusterAdmins"), "platform:identity.clusterAdmins",
     "required"),
    ("service chart version range", DEV, setting("platform:services", "harbor", value={"chartVersion": "^1.0"}),
     "platform:services.harbor.chartVersion", "exact chart version"),
    ("unknown service", DEV, setting("platform:services", "jenkins", value={"enabled": True}),
     "platform:services.jenkins", "unknown key"),
    ("tenants not a list", DEV, setting(T, value={"name": "x"}), "platform:tenants", "a list"),
    ("tenant name invalid", DEV, setting(T, 0, "name", value="Payments_Team"), "platform:tenants[0].name",
     "DNS-1123"),
    ("tenant without owners", DEV, deleting(T, 1, "owners"), "platform:tenants[1].owners", "required"),
    ("tenant owners empty", DEV, setting(T, 1, "owners", value=[]), "platform:tenants[1].owners", "at least 1"),
    ("tenant unknown role key", DEV, setting(T, 0, "admins", value=["zoe"]), "platform:tenants[0].admins",
     "allowed: developers, isolation, name, ops, owners, podSecurityException, quota"),
    ("tenant isolation unknown", DEV, setting(T, 0, "isolation", value="cluster"), "platform:tenants[0].isolation",
     "'namespace' or 'vcluster'"),
    ("duplicate tenant names", DEV, setting(T, 1, "name", value="payments"), "platform:tenants", "repeated: payments"),
    ("user in two roles", DEV, setting(T, 0, "ops", value=["alice"]), "platform:tenants[0]",
     "both owners and ops"),
    ("quota not a quantity", DEV, setting(T, 0, "quota", "memory", value="lots"), "platform:tenants[0].quota.memory",
     "Kubernetes quantity"),
    ("user id invalid", DEV, setting(T, 0, "developers", value=["bob smith"]), "platform:tenants[0].developers[0]",
     "user id"),
    ("user id not a GitLab username", DEV, setting(T, 0, "owners", value=["alice@example.com"]),
     "platform:tenants[0].owners[0]", "GitLab username"),
    ("identity without e-mail domain", DEV, deleting(I, "emailDomain"), "platform:identity.emailDomain", "required"),
    ("protect not a boolean", DEV, setting("platform:protect", value="sometimes"), "platform:protect", "true or false"),
    ("gatekeeper below three replicas", DEV, setting("platform:services", "gatekeeper", value={"sizing": {"replicas": 2}}),
     "platform:services.gatekeeper", "at least 3"),
    ("workload ingress without cert-manager", DEV, setting("platform:services", "certManager", value={"enabled": False}),
     "platform:services", "certManager.enabled must be true while workloadIngress and metricsServer are enabled"),
    ("sizing memory not a quantity", DEV, setting("platform:services", "harbor", value={"sizing": {"memory": "big"}}),
     "platform:services.harbor.sizing.memory", "Kubernetes quantity"),
    ("vCluster tenants on a host without a pinned vCluster Kubernetes", DEV,
     setting(C, "dev", "kubeconfig", "kubernetesVersion", value="1.34"), "platform", "no pinned vCluster Kubernetes image"),
    ("local charts directory empty", DEV, setting("platform:charts", value={"localDir": ""}),
     "platform:charts.localDir", "at least 1"),
    # --- adversarial input (issue 17) ---
    ("top-level namespace typo", DEV, lambda d: d["config"].__setitem__("platfrom:tenants", d["config"].pop(T)),
     "platfrom:tenants", "unknown key"),
    ("key without a namespace", DEV, setting("tenants", value=[]), "platform-bootstrap:tenants", "unknown key"),
    ("plain secret beside a secure one", DEV, lambda d: (
        _set(d["config"], [I, "oidc", "clientSecret"], "plain-text"),
        _set(d["config"], [C, "dev", "kubeconfig", "content"], {"secure": "v1:abc"}),
        _delete(d["config"], [C, "dev", "kubeconfig", "path"])), "platform:identity.oidc.clientSecret", "plain text"),
    ("tenant named like the approved project", DEV, setting(T, 0, "name", value="approved"), "platform:tenants[0].name", "reserved"),
    ("tenant named like a proxy cache", DEV, setting(T, 0, "name", value="proxy-docker-io"), "platform:tenants[0].name", "reserved"),
    ("tenant named like the platform group", DEV, setting(T, 0, "name", value="platform"), "platform:tenants[0].name", "reserved"),
    ("tenant named like a GitLab route", DEV, setting(T, 0, "name", value="api"), "platform:tenants[0].name", "reserved"),
    ("tenant named like Harbor's library", DEV, setting(T, 0, "name", value="library"), "platform:tenants[0].name", "reserved"),
    ("tenant named like the platform's host in its subdomain", DEV, setting(T, 0, "name", value="oumgmt-proxy"),
     "platform:tenants[0].name", "reserved"),
    ("tenant group is a platform group", DEV, setting(I, "clusterAdmins", value=["payments-ops"]), "platform:tenants[0].name",
     "disjoint"),
    ("tenant group is a system approver group", DEV, setting(I, "systemApprovers", value=["Payments-Owners"]),
     "platform:tenants[0].name", "disjoint"),
    ("user root", DEV, setting(T, 0, "developers", value=["root"]), "platform:tenants[0].developers[0]", "platform or GitLab account"),
    ("user platform-bot", DEV, setting(T, 0, "ops", value=["platform-bot"]), "platform:tenants[0].ops[0]", "platform or GitLab account"),
    ("user named like a tenant's GitLab group", DEV, setting(T, 0, "developers", value=["Checkout"]), "platform:tenants[0].developers[0]",
     "GitLab group path"),
    ("users differing in case", DEV, setting(T, 1, "developers", value=["Alice"]), "platform:tenants[1].developers[0]",
     "only in case"),
    ("tenant namespace is a sandbox", DEV, lambda d: d["config"][T].append({"name": "sandbox-bob", "owners": ["zed"]}),
     "platform:tenants", "reserved"),
    ("sandbox names colliding", DEV, setting(T, 0, "developers", value=["Zed", "zed-" + __import__("hashlib").sha256(b"Zed").hexdigest()[:6]]),
     "platform:tenants[0].developers[1]", "sandbox namespace"),
    ("latest chart version in capitals", DEV, setting("platform:services", "harbor", value={"chartVersion": "LATEST"}),
     "platform:services.harbor.chartVersion", "exact chart version"),
    ("caData not a certificate", DEV, setting(C, "dev", "kubeconfig", "caData", value="QUJD"),
     "platform:clusters.dev.kubeconfig.caData", "PEM CA certificate"),
    ("zero quota", DEV, setting(T, 0, "quota", value={"cpu": "0"}), "platform:tenants[0].quota.cpu", "greater than zero"),
    ("quota past Harbor's int64", DEV, setting(T, 0, "quota", value={"storage": "99999999Ei"}), "platform:tenants[0].quota.storage",
     "Harbor"),
    ("CVE allowlist until 9999", DEV, setting("platform:supplyChain", value={"cveAllowlist": [{"id": "CVE-2024-1234", "expires": "9999-12-31"}]}),
     "platform:supplyChain.cveAllowlist[0].expires", "days from today"),
    ("public EKS endpoint without CIDRs", PROD, setting(C, "prod", "eks", "endpointAccess", value={"public": True}),
     "platform:clusters.prod.eks.endpointAccess", "needs publicCidrs"),
    ("public workload endpoint behind an EKS control plane", PROD, setting(C, "prod", "eks", "endpointAccess",
     value={"public": True, "publicCidrs": ["203.0.113.0/24"]}), "platform:clusters.prod.eks.endpointAccess", "public: false"),
    ("private endpoint off behind an EKS control plane", PROD, setting(C, "dev", "eks", "endpointAccess",
     value={"public": True, "private": False, "publicCidrs": ["203.0.113.0/24"]}), "platform:clusters.dev.eks.endpointAccess", "private: true"),
    ("existing workload subnets behind an EKS control plane", PROD, lambda d: (_delete(d["config"], [C, "dev", "eks", "vpc"]),
     _set(d["config"], [C, "dev", "eks", "subnets"], {"private": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]})),
     "platform:clusters.dev.eks.subnets", "allowed here: eks.vpc"),
    ("existing control-plane subnets", PROD, lambda d: (_delete(d["config"], [C, "controlPlane", "eks", "vpc"]),
     _set(d["config"], [C, "controlPlane", "eks", "subnets"], {"private": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]})),
     "platform:clusters.controlPlane.eks.subnets", "VPC peering"),
    ("MetalLB pool for an EKS cluster", PROD, setting("platform:services", value={"metallb": {"addresses": {"prod": ["10.42.255.0/28"]}}}),
     "platform:services.metallb.addresses.prod", "kubeconfig clusters only"),
    ("overlapping VPC CIDRs", PROD, lambda d: (_set(d["config"], [C, "dev", "eks", "vpc", "cidr"], "10.0.0.0/16"),
                                               _set(d["config"], [C, "prod", "eks", "vpc", "cidr"], "10.0.0.0/20")),
     "platform:clusters.prod.eks.vpc.cidr", "overlaps"),
    ("pod security exception without a reason", DEV, setting(T, 0, "podSecurityException", value={"level": "baseline"}),
     "platform:tenants[0].podSecurityException.reason", "required"),
]

PROD_ONLY = [
    ("severity none in prod", setting("platform:supplyChain", value={"severity": "none"}), "platform:supplyChain.severity"),
    ("endpoint open to the internet in prod", setting(C, "controlPlane", "eks", "endpointAccess", value={"public": True, "publicCidrs": ["0.0.0.0/0"]}),
     "platform:clusters.controlPlane.eks.endpointAccess.publicCidrs[0]"),
]


@pytest.mark.parametrize(("case", "mutate", "key"), PROD_ONLY, ids=[c[0] for c in PROD_ONLY])
def test_prod_refuses_what_dev_may_use(tmp_path: Path, case: str, mutate, key: str) -> None:
    path = _write(tmp_path, PROD, mutate)
    assert any(f": {key}:" in line for line in _problems(path, "prod"))
    raw, secret_keys = read_stack_file(path)
    load_platform_config(raw, stack="dev", source=str(path), secret_keys=secret_keys)  # dev accepts it


ALIAS_BOMB = "config:\n  platform:domain: x\n  a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"  a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]\n" for i in range(1, 10))


@pytest.mark.parametrize(("case", "text", "words"), [
    ("alias bomb", ALIAS_BOMB, "more than 50 aliases"),
    ("duplicate key", (ROOT / "Pulumi.dev.yaml").read_text() + "  platform:domain: other.example.com\n", "'platform:domain' repeated"),
    ("duplicate nested key", "config:\n  platform:identity:\n    clusterAdmins: [a]\n    clusterAdmins: [b]\n", "'clusterAdmins' repeated"),
    ("unknown stack file key", "config: {}\nconfg: {}\n", "confg: unknown stack file key"),
    ("nested too deeply", "config:\n  platform:domain: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
    ("too large", "config:\n  platform:domain: " + "a" * (1 << 20) + "\n", "larger than 1048576 bytes"),
])
def test_bad_stack_file_fails_fast_through_render(tmp_path: Path, case: str, text: str, words: str) -> None:
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(text)
    out = tmp_path / "render"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "platformctl", "render", "--stack", "dev", "--config-file", str(path), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert words in proc.stderr and str(path) in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not out.exists()
    assert time.monotonic() - started < 10  # the interpreter's start included; the check itself is milliseconds


def _write(tmp_path: Path, base: dict, mutate: Callable[[dict], Any]) -> Path:
    doc = copy.deepcopy(base)
    mutate(doc)
    path = tmp_path / "Pulumi.bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _problems(path: Path, stack: str = "dev") -> list[str]:
    raw, secret_keys = read_stack_file(path)
    with pytest.raises(ConfigError) as caught:
        load_platform_config(raw, stack=stack, source=str(path), secret_keys=secret_keys)
    return str(caught.value).splitlines()


def test_enough_bad_configs() -> None:
    assert len(BAD_CONFIGS) >= 20


@pytest.mark.parametrize(("case", "base", "mutate", "key", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_key_and_file(tmp_path: Path, case: str, base: dict, mutate, key: str, words: str) -> None:
    path = _write(tmp_path, base, mutate)
    lines = _problems(path)
    matching = [line for line in lines if f": {key}:" in line or f": {key}[" in line or f": {key}." in line]
    assert matching, f"no line names {key}: {lines}"
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any(words in line for line in matching), lines


def test_each_problem_on_its_own_line(tmp_path: Path) -> None:
    def two_problems(doc: dict) -> None:
        doc["config"]["platform:domain"] = "x"
        doc["config"][T][0]["name"] = "Bad"

    lines = _problems(_write(tmp_path, DEV, two_problems))
    assert len(lines) == 2
    assert "platform:domain" in lines[0] and "platform:tenants[0].name" in lines[1]


@pytest.mark.parametrize("case", [BAD_CONFIGS[0], BAD_CONFIGS[11], BAD_CONFIGS[34]], ids=lambda c: c[0])
def test_cli_fails_without_traceback_and_writes_nothing(tmp_path: Path, case) -> None:
    _, base, mutate, key, _ = case
    path = _write(tmp_path, base, mutate)
    out = tmp_path / "render"
    stack = "prod" if base is PROD else "dev"
    proc = subprocess.run(
        [sys.executable, "-m", "platformctl", "render", "--stack", stack, "--config-file", str(path), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert key in proc.stderr and str(path) in proc.stderr
    assert not out.exists(), "a failed render must not write a plan"


def test_dates_stay_text_and_merge_keys_still_work() -> None:
    from platformctl.render import parse_stack_file

    text = "config:\n  platform:a: &base {expires: 2026-06-30}\n  platform:b: {<<: *base, id: CVE-2024-1234}\n"
    raw, _ = parse_stack_file(text, "x")
    assert json.loads(raw["platform:b"]) == {"expires": "2026-06-30", "id": "CVE-2024-1234"}


def test_protect_defaults_to_true_only_in_prod() -> None:
    raw, secrets = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw.pop("platform:protect", None)
    assert load_platform_config(raw, stack="prod", source="x", secret_keys=secrets).protect is True
    assert load_platform_config(raw, stack="dev", source="x", secret_keys=secrets).protect is False


# --- random mutations never produce a traceback --------------------------------------------

_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100000), st.floats(allow_nan=False),
    st.text(max_size=12), st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _mutated(data: st.DataObject, base: dict) -> dict:
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = _paths(doc["config"])
        path = list(data.draw(st.sampled_from(paths)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            _set(doc["config"], path, data.draw(_LEAVES))
        elif action == "delete":
            _delete(doc["config"], path)
        else:
            parent = doc["config"]
            for part in path[:-1]:
                parent = parent[part]
            if isinstance(parent, dict):
                parent[data.draw(st.text(min_size=1, max_size=8))] = data.draw(_LEAVES)
    return doc


def _load(tmp_path: Path, doc: dict, stack: str) -> Path:
    """Write `doc` as a stack file and validate it as the render does; ConfigError if invalid."""
    file = tmp_path / "Pulumi.random.yaml"
    file.write_text(yaml.safe_dump(doc))
    raw, secrets = read_stack_file(file)
    load_platform_config(raw, stack=stack, source=str(file), secret_keys=secrets)
    return file


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), base=st.sampled_from([DEV, PROD]))
def test_random_mutations_fail_cleanly(tmp_path: Path, data: st.DataObject, base: dict) -> None:
    doc = _mutated(data, base)
    try:
        _load(tmp_path, doc, "prod" if base is PROD else "dev")
    except ConfigError as err:
        # Each line names a key: a platform key path, or a key of another namespace, refused.
        keys = [str(k) for k in doc["config"]]
        assert err.problems and all(p.startswith("platform") or any(p.startswith(f"{k}: ") for k in keys) for p in err.problems)


# Mutations that stay valid must run the whole program; a render costs about a second, so
# this draws until it has rendered a bounded number of them (invalid draws cost nothing).
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(data=st.data(), base=st.sampled_from([DEV, PROD]))
def test_random_mutations_that_stay_valid_render(tmp_path: Path, data: st.DataObject, base: dict) -> None:
    stack = "prod" if base is PROD else "dev"
    try:
        file = _load(tmp_path, _mutated(data, base), stack)
    except ConfigError:
        assume(False)
    assert render_plan(file, stack)["resources"]


def test_readme_documents_every_key() -> None:
    from stacks.reference import documented, markdown

    current = documented((ROOT / "README.md").read_text())
    assert current.strip() == markdown().strip(), "README config reference is stale: run python -m stacks.reference"
