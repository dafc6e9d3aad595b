"""Software supply chain on the dev plan: Harbor policy per tenant, quarantine of public images,
cosign keys in Vault transit, and starter content that passes the platform's own policies."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from components.tenancy import Severity, SupplyChainPolicy
from policy.labels import TENANT_NAMESPACE_LABEL
from components.tenant_supply_chain import PROTECTED_PUSH_RULE, sign_policy, trivy_severities
from components.vault_federation import CI_PIPELINE_SOURCES
from components.versions import COSIGN_IMAGE as COSIGN_PIN
from platformctl.render import read_stack_file
from policy.gatekeeper import cluster_constraints, templates
from stacks.services import PLATFORM_NAMESPACES as SLICE_NAMESPACES
from stacks.config import SupplyChain, load_platform_config
from tests.opa import violations

PLATFORM_NAMESPACES = [n.name for n in SLICE_NAMESPACES]
ROOT = Path(__file__).resolve().parent.parent
PROJECT = "harbor:index/project:Project"
REPOSITORY_FILE = "gitlab:index/repositoryFile:RepositoryFile"


def dev_config():
    raw, secrets = read_stack_file(ROOT / "Pulumi.dev.yaml")
    return load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secrets)


CONFIG = dev_config()
TENANTS = [t.name for t in CONFIG.tenants]
HARBOR_HOST = f"harbor.{CONFIG.domain}"


@pytest.fixture(scope="module")
def plan(renders: dict) -> dict:
    return renders["dev"].plan


def of_type(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]


def named(plan: dict, type_: str, name: str) -> dict:
    [found] = [r for r in of_type(plan, type_) if r["name"] == name]
    return found


def test_the_dev_stack_has_three_tenants() -> None:
    assert len(TENANTS) == 3


# --- Harbor policy per tenant project ---------------------------------------------------------


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_tenant_project_scans_gates_on_severity_and_enforces_cosign(plan: dict, tenant: str) -> None:
    project = named(plan, PROJECT, f"{tenant}-registry-project")["inputs"]
    assert project["name"] == tenant
    assert project["vulnerabilityScanning"] is True
    assert project["deploymentSecurity"] == CONFIG.supply_chain.severity == "high"  # the documented default
    assert project["enableContentTrustCosign"] is True
    assert project["public"] is False


@pytest.mark.parametrize("tenant", TENANTS)
def test_every_tenant_project_has_immutable_release_tags_and_retention(plan: dict, tenant: str) -> None:
    project_urn = named(plan, PROJECT, f"{tenant}-registry-project")["urn"]
    rule = named(plan, "harbor:index/immutableTagRule:ImmutableTagRule", f"{tenant}-registry-immutable-releases")
    assert rule["inputs"]["tagMatching"] == "v*.*.*" and rule["inputs"]["repoMatching"] == "**"
    retention = named(plan, "harbor:index/retentionPolicy:RetentionPolicy", f"{tenant}-registry-retention")
    rules = retention["inputs"]["rules"]
    assert {"repoMatching": "**", "tagMatching": "**", "mostRecentlyPushed": 10} in rules
    assert {"repoMatching": "**", "tagMatching": "**", "nDaysSinceLastPull": 30} in rules
    assert retention["inputs"]["schedule"]
    # Both hang off the tenant's project (its id is their scope).
    for resource in (rule, retention):
        assert resource["parent"] == named(plan, PROJECT, f"{tenant}-registry-project")["parent"]
    assert project_urn


def test_harbor_rescans_everything_and_collects_garbage_on_a_schedule(plan: dict) -> None:
    [scan] = of_type(plan, "harbor:index/interrogationServices:InterrogationServices")
    [gc] = of_type(plan, "harbor:index/garbageCollection:GarbageCollection")
    assert scan["inputs"]["vulnerabilityScanPolicy"] and gc["inputs"]["schedule"]
    assert gc["inputs"]["deleteUntagged"] is True


def test_allowlist_entries_need_an_expiry_and_expired_ones_are_dropped() -> None:
    with pytest.raises(pydantic.ValidationError, match="expires"):
        SupplyChain.model_validate({"cveAllowlist": [{"id": "CVE-2024-12345"}]})
    with pytest.raises(pydantic.ValidationError, match="YYYY-MM-DD"):
        SupplyChain.model_validate({"cveAllowlist": [{"id": "CVE-2024-12345", "expires": "2026-02-30"}]})
    with pytest.raises(pydantic.ValidationError, match="CVE id"):
        SupplyChain.model_validate({"cveAllowlist": [{"id": "GHSA-xxxx", "expires": "2026-01-01"}]})
    config = SupplyChain.model_validate(
        {"cveAllowlist": [{"id": "CVE-2024-0001", "expires": "2026-03-01"}, {"id": "CVE-2024-0002", "expires": "2026-06-01"}]}
    )
    policy = SupplyChainPolicy(cve_allowlist=tuple((e.id, e.expires) for e in config.cve_allowlist))
    assert policy.active_cves(date(2026, 3, 1)) == ["CVE-2024-0001", "CVE-2024-0002"]  # the expiry day still counts
    assert policy.active_cves(date(2026, 3, 2)) == ["CVE-2024-0002"]
    assert policy.active_cves(date(2026, 6, 2)) == []
    # Harbor ends the list at the first second after the earliest active entry's day (UTC): 2026-03-02T00:00:00Z.
    assert policy.allowlist_expiry(date(2026, 3, 1)) == 1772409600
    assert policy.allowlist_expiry(date(2026, 3, 2)) == 1780358400  # 2026-06-02T00:00:00Z, once the first is dropped
    assert policy.allowlist_expiry(date(2026, 6, 2)) is None


def test_supply_chain_defaults_are_the_documented_ones() -> None:
    default = SupplyChain()
    assert (default.severity, default.keep_last, default.cve_allowlist) == ("high", 10, [])
    assert default.public_registries == ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]
    with pytest.raises(pydantic.ValidationError):
        SupplyChain.model_validate({"severity": "severe"})
    with pytest.raises(pydantic.ValidationError, match=r"publicRegistries\n.*must include ghcr.io: every scan reads Trivy's"):
        SupplyChain.model_validate({"publicRegistries": ["docker.io"]})
    assert trivy_severities(Severity.HIGH) == "UNKNOWN,HIGH,CRITICAL" and trivy_severities(Severity.NONE) == ""


# --- quarantine -------------------------------------------------------------------------------


def test_public_registries_are_proxied_into_private_caches(plan: dict) -> None:
    registries = {r["urn"]: r["inputs"] for r in of_type(plan, "harbor:index/registry:Registry")}
    assert sorted(i["name"] for i in registries.values()) == sorted(CONFIG.supply_chain.public_registries)
    for host in CONFIG.supply_chain.public_registries:
        project = named(plan, PROJECT, f"public-images-proxy-{host.replace('.', '-')}")
        assert project["inputs"]["public"] is False  # quarantine: no tenant pulls from a cache
        assert project["inputs"]["vulnerabilityScanning"] is True
        [registry] = [registries[u] for u in project["dependsOn"] if u in registries]
        assert registry["name"] == host and registry["endpointUrl"].startswith("https://")
        assert registry["insecure"] is False


def test_an_approved_project_holds_vetted_public_images(plan: dict) -> None:
    approved = named(plan, PROJECT, "public-images-approved")["inputs"]
    assert approved["name"] == "approved" and approved["vulnerabilityScanning"] is True
    assert approved["deploymentSecurity"] == "high"


# --- signing ----------------------------------------------------------------------------------


def test_one_transit_mount(plan: dict) -> None:
    mounts = [r["inputs"] for r in of_type(plan, "vault:index/mount:Mount") if r["inputs"]["type"] == "transit"]
    assert [m["path"] for m in mounts] == ["transit"]


@pytest.mark.parametrize("tenant", TENANTS)
def test_each_tenant_has_a_non_exportable_cosign_key(plan: dict, tenant: str) -> None:
    key = named(plan, "vault:transit/secretBackendKey:SecretBackendKey", f"{tenant}-secrets-cosign")["inputs"]
    assert key["backend"] == "transit" and key["name"] == f"{tenant}-cosign"
    assert key["type"] == "ecdsa-p256" and key["exportable"] is False


def _paths(policy: str) -> dict[str, list[str]]:
    return {m[0]: re.findall(r'"([a-z]+)"', m[1]) for m in re.findall(r'path "([^"]+)" \{ capabilities = \[([^\]]*)\] \}', policy)}


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_ci_role_signs_with_its_own_key_and_nothing_else(plan: dict, tenant: str) -> None:
    role = named(plan, "vault:jwt/authBackendRole:AuthBackendRole", f"{tenant}-ci")["inputs"]
    policies = {r["inputs"]["name"]: r["inputs"]["policy"] for r in of_type(plan, "vault:index/policy:Policy")}
    transit = {
        path: caps
        for name in role["tokenPolicies"]
        for path, caps in _paths(policies[name]).items()
        if path.startswith("transit/")
    }
    assert transit == {
        f"transit/sign/{tenant}-cosign": ["update"],
        f"transit/sign/{tenant}-cosign/*": ["update"],  # sign/<key>/<hash algorithm>
        f"transit/keys/{tenant}-cosign": ["read"],  # the public key, for `cosign verify`
    }
    assert f"tenant-{tenant}-sign" in role["tokenPolicies"]
    # No other tenant's policy grants this role anything.
    assert all(name.startswith(f"tenant-{tenant}-") for name in role["tokenPolicies"])


def test_sign_policy_text_is_exactly_three_paths() -> None:
    assert len(_paths(sign_policy("payments"))) == 3 and sign_policy("payments").count("path") == 3


# --- starter content --------------------------------------------------------------------------


def _starter(plan: dict, tenant: str, project: str, path: str) -> dict:
    [found] = [
        r for r in of_type(plan, REPOSITORY_FILE)
        if r["name"].startswith(f"{tenant}-repositories-{project}-starter-") and r["inputs"]["filePath"] == path
    ]
    return found


@pytest.mark.parametrize("tenant", TENANTS)
def test_starter_files_are_written_once_and_never_overwritten(plan: dict, tenant: str) -> None:
    for project, path in [("app", ".gitlab-ci.yml"), ("ops", "dev/app.yaml"), ("ops", "prod/app.yaml"), ("ops", ".gitlab-ci.yml"),
                          ("ops-dev", "dev/app.yaml"), ("ops-dev", "prod/app.yaml"), ("ops-dev", ".gitlab-ci.yml")]:
        file = _starter(plan, tenant, project, path)
        assert file["inputs"]["overwriteOnCreate"] is False and file["inputs"]["branch"] == "main"
        assert file["options"]["ignoreChanges"] == ["content"]
        # Written before main is protected (nobody may push to it afterwards).
        protection = named(plan, "gitlab:index/branchProtection:BranchProtection", f"{tenant}-repositories-{project}-main")
        assert file["urn"] in protection["dependsOn"]


CONSTRAINTS = cluster_constraints([HARBOR_HOST], {"matchLabels": {TENANT_NAMESPACE_LABEL: "true"}}, PLATFORM_NAMESPACES)
TEMPLATES = {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in templates()}


# The starter manifests themselves (Rollouts per environment) are checked against Argo Rollouts'
# CRDs and the plan's own constraints in tests/test_golden_path.py.


def test_the_constraints_can_fail_on_a_bad_starter() -> None:
    # The check above is not vacuous: an image from Docker Hub with `latest` and no probes fails.
    bad = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "namespace": "t-dev"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                 "spec": {"containers": [{"name": "x", "image": "nginx:latest"}]}}},
    }
    failing = {c["kind"] for c in CONSTRAINTS if violations(TEMPLATES[c["kind"]], bad, c["spec"].get("parameters"))}
    assert {"PlatformAllowedRegistries", "PlatformDisallowedTags", "PlatformRequiredProbes", "PlatformContainerResources"} <= failing


def _jobs(pipeline: dict) -> dict[str, dict]:
    """The pipeline's jobs (not hidden ones), each with its `extends` applied as GitLab does."""
    return {
        k: _resolved(pipeline, k) for k, v in pipeline.items()
        if not k.startswith(".") and isinstance(v, dict) and ("script" in v or "trigger" in v)
    }


def _merged(base: Any, override: Any) -> Any:
    # GitLab's `extends`: hashes merge key by key, anything else (lists included) is replaced.
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in override.items()}}
    return override


def _resolved(pipeline: dict, name: str) -> dict:
    job = pipeline[name]
    parents = job.get("extends", [])
    resolved: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        resolved = _merged(resolved, _resolved(pipeline, parent))
    return _merged(resolved, {k: v for k, v in job.items() if k != "extends"})


def _script_lines(pipeline: dict, job: dict) -> list[str]:
    """What the job's shell runs, in order (its before_script, else the default one)."""
    before = job.get("before_script", pipeline.get("default", {}).get("before_script", []))
    return [*before, *job.get("script", []), *job.get("after_script", [])]


def _all_strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *_all_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return [str(value)]


# Every variable a starter pipeline may use: GitLab's own, the project's (locations only, see
# components/tenant_gitlab.py), the file's, and shell variables filled from Vault at run time.
ALLOWED_VARIABLES = {
    "HARBOR_REGISTRY", "HARBOR_PROJECT", "VAULT_ADDR", "VAULT_AUTH_PATH", "VAULT_ROLE",  # project variables
    "VAULT_ID_TOKEN", "VAULT_TOKEN", "IMAGE", "IMAGE_TAG", "TAG", "TRIVY_SEVERITY", "ROBOT", "SECRET", "ROBOT_JSON",
    "SSL_CERT_FILE", "GITLAB_USER_NAME", "GITLAB_USER_EMAIL",
}


def unknown_variables(text: str) -> set[str]:
    used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
    return {v for v in used if v not in ALLOWED_VARIABLES and not v.startswith("CI_")}


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_app_pipeline_builds_rootless_scans_signs_and_uses_no_secret_variable(plan: dict, tenant: str) -> None:
    pipeline = yaml.safe_load(_starter(plan, tenant, "app", ".gitlab-ci.yml")["inputs"]["content"])
    jobs = _jobs(pipeline)
    assert {"build", "scan", "push", "sign", "bump-ops-dev"} <= set(jobs)
    text = "\n".join(_all_strings(pipeline))
    assert "docker:dind" not in text and "docker build" not in text and "services" not in text
    assert "DOCKER_HOST" not in text and "buildah build" in text
    assert "trivy image" in text and "--exit-code" in text
    assert "cosign sign" in text and f"hashivault://{tenant}-cosign" in text
    # Vault access only through the jobs' ID tokens; every variable used is a location or a job's own.
    for name in ("push", "sign"):
        assert jobs[name]["id_tokens"] == {"VAULT_ID_TOKEN": {"aud": "$VAULT_ADDR"}}
    assert unknown_variables(text) == set()
    assert "CI_JOB_TOKEN" not in text  # the app pipeline needs none; the ops-dev job pushes with its own
    assert jobs["bump-ops-dev"]["trigger"]["project"] == f"{tenant}/ops-dev"
    # Images: from the approved project, pinned, never latest.
    for job in jobs.values():
        image = job.get("image")
        if image is None:
            continue
        name = image["name"] if isinstance(image, dict) else image
        assert name.startswith(f"{HARBOR_HOST}/approved/") and not name.endswith(":latest") and ":" in name.split("/")[-1]


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_ops_pipeline_opens_a_merge_request_with_the_job_token(plan: dict, tenant: str) -> None:
    pipeline = yaml.safe_load(_starter(plan, tenant, "ops-dev", ".gitlab-ci.yml")["inputs"]["content"])
    [job] = _jobs(pipeline).values()
    script = "\n".join(job["script"])
    assert "merge_request.create" in script and "gitlab-ci-token:${CI_JOB_TOKEN}" in script
    assert unknown_variables("\n".join(_all_strings(pipeline))) == set()
    ops_dev = named(plan, "gitlab:index/project:Project", f"{tenant}-repositories-ops-dev")["inputs"]
    assert ops_dev["ciPushRepositoryForJobTokenAllowed"] is True


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_scan_gate_follows_the_config(plan: dict, tenant: str) -> None:
    pipeline = yaml.safe_load(_starter(plan, tenant, "app", ".gitlab-ci.yml")["inputs"]["content"])
    assert pipeline["variables"]["TRIVY_SEVERITY"] == "UNKNOWN,HIGH,CRITICAL"


# --- starter pipeline: TLS always verified ---------------------------------------------------------

# Anything in a pipeline that turns certificate verification off, or talks without TLS.
INSECURE = [
    re.compile(r"\bwget\b"),  # BusyBox wget (cosign's -dev image) verifies no certificate
    re.compile(r"(?<![\w-])-[A-Za-z]*k[A-Za-z]*(?![\w-])"),  # curl -k, -sk, -kL ...
    re.compile(r"insecure", re.I),  # --insecure, insecure-skip-tls-verify, --allow-insecure-registry ...
    re.compile(r"no-check-certificate", re.I),
    re.compile(r"skip[-_]?(tls[-_]?)?verify", re.I),  # VAULT_SKIP_VERIFY, --skip-tls-verify, tls_skip_verify
    re.compile(r"tls[-_]?verify\W*(false|0|no)\b", re.I),  # buildah/skopeo --tls-verify=false
    re.compile(r"ssl[-_]?(no[-_]?)?verify", re.I),  # GIT_SSL_NO_VERIFY, http.sslVerify
    re.compile(r"reject[-_]?unauthorized", re.I),  # NODE_TLS_REJECT_UNAUTHORIZED
    re.compile(r"allow-http", re.I),  # cosign --allow-http-registry
    re.compile(r"\bhttp://", re.I),
]
HTTP_CLIENTS = re.compile(r"\b(curl|wget|busybox|nc|ncat|socat|openssl|python3?|perl|ruby|node|vault)\b")
# The bundle the jobs verify with: the system roots of the (Fedora) buildah image plus the runner's
# CA (the platform CA on private-CA stacks), outside the project directory (never an artifact).
TRUST_BUNDLE = re.compile(
    # The system roots of the job's image (Fedora's in buildah's, Alpine's in trivy's) plus the runner's CA.
    r'^cat (?:/etc/pki/tls/certs/ca-bundle\.crt|/etc/ssl/certs/ca-certificates\.crt) '
    r'\$\{CI_SERVER_TLS_CA_FILE:\+"\$CI_SERVER_TLS_CA_FILE"\} > (/tmp/\S+)$'
)


def insecure_findings(text: str) -> list[str]:
    return [p.pattern for p in INSECURE if p.search(text)]


def _verifying_curl(line: str) -> bool:
    """Every curl on the line: HTTPS only and the job's CA bundle; and no other HTTP client."""
    calls = [segment for segment in re.split(r"[|;&()]", line) if HTTP_CLIENTS.search(segment)]
    return bool(calls) and all(
        HTTP_CLIENTS.findall(segment) == ["curl"] and "--proto =https" in segment
        and '--cacert "$SSL_CERT_FILE"' in segment
        for segment in calls
    ) and not insecure_findings(line)


def tls_problems(pipeline: dict) -> list[str]:
    """Why this pipeline's TLS is not verified everywhere ([] when it is)."""
    problems = [f"insecure: {p}" for p in insecure_findings("\n".join(_all_strings(pipeline)))]
    for name, job in _jobs(pipeline).items():
        lines = _script_lines(pipeline, job)
        trusted_from = next((i for i, line in enumerate(lines) if line.startswith("export SSL_CERT_FILE=")), None)
        if trusted_from is not None:
            bundle = TRUST_BUNDLE.match(lines[trusted_from - 1]) if trusted_from else None
            if not bundle or lines[trusted_from] != f"export SSL_CERT_FILE={bundle.group(1)}":
                problems.append(f"{name}: SSL_CERT_FILE is not the system roots plus CI_SERVER_TLS_CA_FILE")
        for i, line in enumerate(lines):
            talks_to_vault = re.search(r"\$\{?VAULT_ADDR\b", line)
            if talks_to_vault and not _verifying_curl(line):
                problems.append(f"{name}: Vault call without a verifying client: {line}")
            if HTTP_CLIENTS.search(line) and not _verifying_curl(line):
                problems.append(f"{name}: HTTP client that does not verify with the job's CA bundle: {line}")
            # Go clients (buildah, cosign and its Vault client, trivy) verify with SSL_CERT_FILE: set it first.
            uses_tls = talks_to_vault or re.search(r"\b(buildah|cosign|trivy)\b", line)
            if uses_tls and (trusted_from is None or i < trusted_from):
                problems.append(f"{name}: TLS before the CA bundle is in place: {line}")
    return problems


def _app_pipeline(plan: dict, tenant: str) -> dict:
    return yaml.safe_load(_starter(plan, tenant, "app", ".gitlab-ci.yml")["inputs"]["content"])


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_app_pipeline_verifies_tls_everywhere(plan: dict, tenant: str) -> None:
    pipeline = _app_pipeline(plan, tenant)
    assert tls_problems(pipeline) == []
    jobs = _jobs(pipeline)
    # Not vacuous: push and sign log in to Vault and read the robot, each with the verifying curl.
    for name in ("push", "sign"):
        vault_lines = [line for line in _script_lines(pipeline, jobs[name]) if "$VAULT_ADDR" in line]
        assert len(vault_lines) == 2 and all(_verifying_curl(line) for line in vault_lines), name
    # One Vault login in the file, shared by push and sign (`extends`), not one per job.
    text = yaml.safe_dump(pipeline)
    assert text.count("/login") == 1 and text.count("harbor-push") == 1


@pytest.mark.parametrize("tenant", TENANTS)
def test_cosign_comes_from_its_pinned_release_image_through_approved(plan: dict, tenant: str) -> None:
    pipeline = _app_pipeline(plan, tenant)
    sign = _jobs(pipeline)["sign"]
    assert sign["image"] == _jobs(pipeline)["build"]["image"]  # the buildah image: curl verifies TLS
    [extract] = [line for line in sign["script"] if "FROM " in line]
    source = f"{HARBOR_HOST}/approved/{COSIGN_PIN.repository}@{COSIGN_PIN.digest}"
    assert f"FROM {source} AS cosign" in extract and re.fullmatch(r"sha256:[0-9a-f]{64}", COSIGN_PIN.digest)
    assert "COPY --from=cosign /ko-app/cosign " in extract and "buildah build" in extract
    assert "RUN" not in extract  # no RUN step: works wherever the (rootless) build job works
    # Nothing is downloaded at job time: the only host the job names is Harbor (Vault is $VAULT_ADDR).
    script = "\n".join(_script_lines(pipeline, sign))
    hosts = set(re.findall(r"\b(?:https?|docker|oci|git|ssh)://([^/\s\"'$]+)", script) + re.findall(r"\bFROM ([^/\s]+)/", script))
    assert hosts == {HARBOR_HOST}


@pytest.mark.parametrize("tenant", TENANTS)
def test_vault_tokens_and_robot_secrets_never_reach_a_file(plan: dict, tenant: str) -> None:
    pipeline = _app_pipeline(plan, tenant)
    for name, job in _jobs(pipeline).items():
        for line in _script_lines(pipeline, job):
            if re.search(r"VAULT_TOKEN|VAULT_ID_TOKEN|ROBOT_JSON|\$SECRET|\$ROBOT\b", line):
                assert not re.search(r">|\btee\b", line), (name, line)
        assert set(job.get("artifacts", {}).get("paths", [])) <= {"image.tar", "digest"}, name


@pytest.mark.parametrize("tenant", TENANTS)
def test_the_robot_secret_reaches_the_registry_tools_on_stdin_never_on_a_command_line(plan: dict, tenant: str) -> None:
    pipeline = _app_pipeline(plan, tenant)
    jobs = _jobs(pipeline)
    for name in ("push", "sign"):
        lines = _script_lines(pipeline, jobs[name])
        uses = [line for line in lines if re.search(r"\$\{?(SECRET|ROBOT_JSON)\b", line)]
        # Filled from Vault, then handed over by printf (a shell builtin, so no process's argv).
        assert all(re.match(r"(SECRET|ROBOT|ROBOT_JSON)=\"\$\(printf |printf '%s' \"\$SECRET\" \| ", line) for line in uses), uses
        [login] = [line for line in lines if "buildah login" in line]
        assert "--password-stdin" in login and login.startswith("printf '%s' \"$SECRET\" | ")
        assert lines.index("unset SECRET ROBOT_JSON") == lines.index(login) + 1
        # buildah and cosign read the one auth file, outside the project directory (never an artifact).
        [auth] = [line for line in lines if "REGISTRY_AUTH_FILE=" in line]
        config_dir = re.search(r"DOCKER_CONFIG=(\S+)", auth).group(1)
        assert f"REGISTRY_AUTH_FILE={config_dir}/config.json" in auth and config_dir.startswith("/tmp/")
        assert lines.index(auth) < lines.index(login)
        assert not any(re.search(r"--creds|cosign login|\blogin\b.*\s(-p|--password)[\s=]", line) for line in lines), name


@pytest.mark.parametrize("line", [
    'export VAULT_TOKEN="$(wget -qO- --post-data "$BODY" "$VAULT_ADDR/v1/auth/jwt/login")"',
    'curl -sk --proto =https --cacert "$SSL_CERT_FILE" "$VAULT_ADDR/v1/x"',
    'curl -k "$VAULT_ADDR/v1/x"',
    'curl --insecure --proto =https --cacert "$SSL_CERT_FILE" "$VAULT_ADDR/v1/x"',
    'curl --silent --fail "$VAULT_ADDR/v1/x"',  # the system trust only: no platform CA
    'curl --cacert "$SSL_CERT_FILE" "$VAULT_ADDR/v1/x"',  # would follow an http:// VAULT_ADDR
    'printf x | curl --proto =https --cacert "$SSL_CERT_FILE" -d @- "$VAULT_ADDR/v1/x" | python3 -c "print(1)"',
    'curl --proto =https --cacert "$SSL_CERT_FILE" http://example.test/x',
    'buildah push --tls-verify=false oci-archive:image.tar "docker://$IMAGE:$TAG"',
    'cosign sign --allow-insecure-registry --key hashivault://k "$IMAGE@x"',
    'cosign sign --allow-http-registry --key hashivault://k "$IMAGE@x"',
    'export VAULT_SKIP_VERIFY=true',
    'kubectl --insecure-skip-tls-verify get pods',
    'wget --no-check-certificate https://vault.test/',
    'git -c http.sslVerify=false clone https://gitlab.test/x.git',
])
def test_the_tls_check_catches_every_way_to_skip_verification(line: str) -> None:
    pipeline = {"job": {"image": "x", "script": [
        'cat /etc/pki/tls/certs/ca-bundle.crt ${CI_SERVER_TLS_CA_FILE:+"$CI_SERVER_TLS_CA_FILE"} > /tmp/ca.pem',
        "export SSL_CERT_FILE=/tmp/ca.pem",
        line,
    ]}}
    assert tls_problems(pipeline) != []


@pytest.mark.parametrize("script", [
    # Vault (or a registry) before the bundle exists, or a bundle without the system roots or the runner's CA.
    ['curl --proto =https --cacert "$SSL_CERT_FILE" "$VAULT_ADDR/v1/x"', "export SSL_CERT_FILE=/tmp/ca.pem"],
    ["buildah push oci-archive:image.tar docker://x"],
    ['cat "$CI_SERVER_TLS_CA_FILE" > /tmp/ca.pem', "export SSL_CERT_FILE=/tmp/ca.pem", "cosign sign x"],
    ["cat /etc/pki/tls/certs/ca-bundle.crt > /tmp/ca.pem", "export SSL_CERT_FILE=/tmp/ca.pem", "cosign sign x"],
    ['cat /etc/pki/tls/certs/ca-bundle.crt ${CI_SERVER_TLS_CA_FILE:+"$CI_SERVER_TLS_CA_FILE"} > ca.pem',
     "export SSL_CERT_FILE=ca.pem", "cosign sign x"],  # in the project directory: could become an artifact
])
def test_the_tls_check_catches_a_missing_or_late_ca_bundle(script: list[str]) -> None:
    assert tls_problems({"job": {"image": "x", "script": script}}) != []


def test_the_tls_check_accepts_the_verifying_forms() -> None:
    pipeline = {"job": {"image": "x", "script": [
        'cat /etc/pki/tls/certs/ca-bundle.crt ${CI_SERVER_TLS_CA_FILE:+"$CI_SERVER_TLS_CA_FILE"} > /tmp/ca.pem',
        "export SSL_CERT_FILE=/tmp/ca.pem",
        'T="$(printf x | curl --silent --proto =https --cacert "$SSL_CERT_FILE" --data @- "$VAULT_ADDR/v1/x" | sed -n p)"',
        "cosign sign --key hashivault://payments-cosign x",
    ]}}
    assert tls_problems(pipeline) == []


@pytest.mark.parametrize("tenant", TENANTS)
def test_only_jobs_vault_answers_log_in_to_it(plan: dict, tenant: str) -> None:
    """push and sign run where Vault's CI role answers: protected refs of the pipelines it
    accepts. Elsewhere (a feature branch, a merge request) the image is built and scanned only."""
    pipeline = _app_pipeline(plan, tenant)
    assert re.search(r"/\^\((.*)\)\$/", PROTECTED_PUSH_RULE).group(1).split("|") == list(CI_PIPELINE_SOURCES)
    assert '$CI_COMMIT_REF_PROTECTED == "true"' in PROTECTED_PUSH_RULE
    jobs = _jobs(pipeline)
    logging_in = {name for name, job in jobs.items() if "VAULT_ID_TOKEN" in json.dumps(job)}
    assert logging_in == {"push", "sign"}
    assert all(jobs[name]["rules"] == [{"if": PROTECTED_PUSH_RULE}] for name in logging_in)


def test_every_image_pinned_by_tag_only_is_listed_with_how_to_pin_it() -> None:
    from components import versions

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### Images pinned by tag only", 1)[1].split("\n## ", 1)[0]
    tag_only = [name for name, value in vars(versions).items() if name.isupper() and (
        name.endswith(("_TAG", "_TAGS")) or (isinstance(value, str) and re.fullmatch(r"[\w.-]+(/[\w.-]+)+:[\w.-]+", value)))]
    assert {"GITLAB_RUNNER_TAG", "AWS_CLI_TAG", "BUILDAH_IMAGE"} <= set(tag_only)
    assert [name for name in tag_only if f"`{name}`" not in section] == []
    assert "crane digest" in section and "skopeo inspect" in section
