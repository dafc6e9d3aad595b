"""Software supply chain on the dev plan: Harbor policy per tenant, quarantine of public images,
cosign keys in Vault transit, and starter content that passes the platform's own policies."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from components.tenancy import TENANT_NAMESPACE_LABEL, SupplyChainPolicy
from components.tenant_supply_chain import sign_policy, trivy_severities
from platformctl.render import read_stack_file
from policy.gatekeeper import cluster_constraints, templates
from stacks.config import SupplyChain, load_platform_config
from tests.opa import violations
from tests.validation import kubernetes_errors

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


def test_supply_chain_defaults_are_the_documented_ones() -> None:
    default = SupplyChain()
    assert (default.severity, default.keep_last, default.cve_allowlist) == ("high", 10, [])
    assert default.public_registries == ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]
    with pytest.raises(pydantic.ValidationError):
        SupplyChain.model_validate({"severity": "severe"})
    assert trivy_severities("high") == "HIGH,CRITICAL" and trivy_severities("none") == ""


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
    for project, path in [("app", ".gitlab-ci.yml"), ("ops", "app.yaml"), ("ops", ".gitlab-ci.yml"),
                          ("ops-dev", "app.yaml"), ("ops-dev", ".gitlab-ci.yml")]:
        file = _starter(plan, tenant, project, path)
        assert file["inputs"]["overwriteOnCreate"] is False and file["inputs"]["branch"] == "main"
        assert file["options"]["ignoreChanges"] == ["content"]
        # Written before main is protected (nobody may push to it afterwards).
        protection = named(plan, "gitlab:index/branchProtection:BranchProtection", f"{tenant}-repositories-{project}-main")
        assert file["urn"] in protection["dependsOn"]


CONSTRAINTS = cluster_constraints([HARBOR_HOST], {"matchLabels": {TENANT_NAMESPACE_LABEL: "true"}})
TEMPLATES = {t["spec"]["crd"]["spec"]["names"]["kind"]: t for t in templates()}


@pytest.mark.parametrize("tenant", TENANTS)
@pytest.mark.parametrize("project", ["ops", "ops-dev"])
def test_starter_manifests_are_valid_and_pass_every_constraint(plan: dict, tenant: str, project: str) -> None:
    documents = list(yaml.safe_load_all(_starter(plan, tenant, project, "app.yaml")["inputs"]["content"]))
    assert sorted(d["kind"] for d in documents) == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    for document in documents:
        assert kubernetes_errors(document) == [], document["kind"]
        admitted = {**document, "metadata": {**document["metadata"], "namespace": f"{tenant}-dev"}}
        for constraint in CONSTRAINTS:
            found = violations(TEMPLATES[constraint["kind"]], admitted, constraint["spec"].get("parameters"))
            assert found == [], (constraint["kind"], found)
    [deployment] = [d for d in documents if d["kind"] == "Deployment"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    image, _, tag = container["image"].rpartition(":")
    assert image == f"{HARBOR_HOST}/{tenant}/app" and re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", tag)


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
    return {k: v for k, v in pipeline.items() if isinstance(v, dict) and ("script" in v or "trigger" in v)}


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
    "VAULT_ID_TOKEN", "VAULT_TOKEN", "IMAGE", "IMAGE_TAG", "TAG", "TRIVY_SEVERITY", "ROBOT", "SECRET",
    "GITLAB_USER_NAME", "GITLAB_USER_EMAIL",
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
    assert pipeline["variables"]["TRIVY_SEVERITY"] == "HIGH,CRITICAL"
