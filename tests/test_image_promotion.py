"""Promotion of public images into `approved` (issue #9): the promoter robot, its Vault path,
policy and CI role on both stacks' plans; the `promote-image-<stack>` jobs; and .ci/promote-image.py
itself, run against a fake Harbor and Vault."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import io
import json
import os
import re
import ssl
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pulumi
import pulumiverse_harbor as harbor
import pydantic
import pytest
import yaml

from components.harbor_robots import ROBOT_LIFETIME_DAYS, expiring_robot
from components.image_promotion import (
    DEFAULT_BRANCH,
    PROMOTER_SECRET_PATH,
    ROBOT_NAME,
    VAULT_POLICY,
    VAULT_ROLE,
    promoter_data_path,
)
from components.tenancy import Severity
from components.tenant_supply_chain import (
    APPROVED_PROJECT,
    BUILDAH_IMAGE,
    COSIGN_IMAGE,
    GIT_IMAGE,
    PUBLIC_REGISTRIES,
    TRIVY_IMAGE,
    approved,
    proxy_project_name,
)
from components.signing import PLATFORM_KEY
from components.vault_federation import CI_TOKEN_TTL, GITLAB_PATH, StackEnvironments
from components.tenant import virtual_cluster_registry
from components.versions import PROMOTE_IMAGE, SKOPEO_DEBIAN_VERSION, TRIVY_DATABASES
from platformctl.render import read_stack_file
from policy.pack.checks import check_harbor_robot_expires
from stacks.config import Tenant, load_platform_config
from tests.conftest import STACKS
from tests.harbor_fake import FakeHarbor, Registry, tools_missing
from tests.mock_program import run_program
from tests.test_signing_real import fed_to_verifier, rotation_of, verified
from tests.test_ci_file import _resolve
from tests.test_vault_real import pipeline_id_token

ROOT = Path(__file__).resolve().parent.parent
CI_FILE = ROOT / ".gitlab-ci.yml"
SCRIPT = ROOT / ".ci" / "promote-image.py"
JOB = "promote-image"  # promote-image-<stack>, one per stack

ROBOT = "harbor:index/robotAccount:RobotAccount"
PROJECT = "harbor:index/project:Project"
ROTATING = "time:index/rotating:Rotating"
KV_SECRET = "vault:kv/secretV2:SecretV2"
POLICY = "vault:index/policy:Policy"
JWT_ROLE = "vault:jwt/authBackendRole:AuthBackendRole"
MOCK_ROTATION_TIME = "2026-01-01T00:00:00Z"  # what platformctl's mocks give every Rotating


def config_of(plan: dict):
    raw, secrets = read_stack_file(ROOT / f"Pulumi.{plan['stack']}.yaml")
    return load_platform_config(raw, stack=plan["stack"], source=f"Pulumi.{plan['stack']}.yaml", secret_keys=secrets)


def of_type(plan: dict, type_: str) -> list[dict]:
    return [r for r in plan["resources"] if r["type"] == type_]


def named(plan: dict, type_: str, name: str) -> dict:
    [found] = [r for r in of_type(plan, type_) if r["name"] == name]
    return found


def promoter(plan: dict) -> dict:
    [robot] = [r for r in of_type(plan, ROBOT) if r["inputs"]["level"] == "system"]
    return robot


def _accesses(permission: dict) -> set[tuple[str, str]]:
    return {(a["action"], a["resource"]) for a in permission["accesses"]}


def _policy_paths(text: str) -> dict[str, list[str]]:
    return {m[0]: re.findall(r'"([a-z]+)"', m[1]) for m in re.findall(r'path "([^"]+)" \{ capabilities = \[([^\]]*)\] \}', text)}


# --- the plans ------------------------------------------------------------------------------------


def test_one_system_robot_with_pull_on_the_caches_and_push_only_on_approved(plan: dict) -> None:
    robot = promoter(plan)
    inputs = robot["inputs"]
    assert robot["name"] == f"image-promotion-{ROBOT_NAME}" and inputs["name"] == ROBOT_NAME
    caches = {proxy_project_name(host) for host in config_of(plan).supply_chain.public_registries}
    assert len(caches) >= 1
    permissions = {p["namespace"]: p for p in inputs["permissions"]}
    assert len(permissions) == len(inputs["permissions"])  # one entry per project
    assert set(permissions) == caches | {APPROVED_PROJECT}  # no wildcard, no tenant project
    for name, permission in permissions.items():
        assert permission["kind"] == "project"
        expected = {("push", "repository"), ("pull", "repository"), ("read", "artifact")} if name == APPROVED_PROJECT else {
            ("pull", "repository"), ("read", "artifact")}  # the image, and its scan results (in approved: which digest a tag names)
        assert _accesses(permission) == expected, name
    # No other robot may push to `approved`.
    for other in of_type(plan, ROBOT):
        if other["urn"] != robot["urn"]:
            assert all(p["namespace"] != APPROVED_PROJECT for p in other["inputs"]["permissions"]), other["name"]


def test_the_robot_waits_for_the_projects_it_names(plan: dict) -> None:
    # Harbor refuses a robot naming a project that does not exist yet (every rebuild of dev).
    names = {p["namespace"] for p in promoter(plan)["inputs"]["permissions"]}
    projects = {r["inputs"]["name"]: r["urn"] for r in of_type(plan, PROJECT)}
    assert names <= set(projects)
    assert {projects[n] for n in names} <= set(promoter(plan)["dependsOn"])


def test_the_robot_expires_within_30_days_and_is_recreated_at_half_life(plan: dict) -> None:
    robot = promoter(plan)
    inputs = robot["inputs"]
    assert 0 < inputs["duration"] <= 30
    assert check_harbor_robot_expires(ROBOT, inputs, robot["options"], {}) == []
    rotation = named(plan, ROTATING, f"{robot['name']}-rotation")
    assert rotation["urn"] in robot["dependsOn"] and rotation["parent"] == robot["parent"]
    assert rotation["inputs"]["rotationDays"] * 2 <= inputs["duration"]
    assert MOCK_ROTATION_TIME in inputs["description"]  # the rotation feeds the robot
    assert robot["options"]["deleteBeforeReplace"] is True  # robot names are unique in Harbor
    assert "secret" in robot["options"]["additionalSecretOutputs"]


def test_the_shared_helper_replaces_a_robot_when_its_rotation_moves() -> None:
    # The plan has no replacement triggers; the mock engine's record does.
    def program() -> harbor.RobotAccount:
        provider = harbor.Provider("harbor", url="https://harbor.test", username="admin", password="x", insecure=False)
        parent = pulumi.ComponentResource("test:index:Parent", "parent")
        return expiring_robot("robot", "promoter", "system", "test robot", [], parent, provider)

    run = run_program(program)
    robot, rotation = run.one(ROBOT, "robot"), run.one(ROTATING, "robot-rotation")
    assert run.triggers[robot["urn"]] == MOCK_ROTATION_TIME and rotation["urn"] in robot["dependsOn"]
    assert rotation["inputs"]["rotationDays"] * 2 == robot["inputs"]["duration"] == ROBOT_LIFETIME_DAYS <= 30
    assert robot["options"]["deleteBeforeReplace"] is True


def test_the_robot_secret_is_in_vault_at_the_platform_path(plan: dict) -> None:
    robot = promoter(plan)
    secret = named(plan, KV_SECRET, robot["name"])
    assert secret["inputs"]["name"] == PROMOTER_SECRET_PATH and secret["inputs"]["mount"] == "tenants"
    assert secret["inputs"]["dataJson"] == "[secret]" and "dataJson" in secret["secretPaths"]
    assert robot["urn"] in secret["dependsOn"] and secret["parent"] == robot["parent"]


def test_no_tenant_can_be_named_after_the_platform_path() -> None:
    prefix = PROMOTER_SECRET_PATH.split("/")[0]
    with pytest.raises(pydantic.ValidationError):
        Tenant.model_validate({"name": prefix, "owners": ["alice"]})
    Tenant.model_validate({"name": prefix.strip("_"), "owners": ["alice"]})  # the check is the underscore


def test_only_the_promotion_policy_reads_the_robot(plan: dict) -> None:
    readers = {}
    for policy in of_type(plan, POLICY):
        for path, capabilities in _policy_paths(policy["inputs"]["policy"]).items():
            if fnmatch.fnmatchcase(promoter_data_path(), path.replace("+", "*")):
                readers[policy["inputs"]["name"]] = (path, capabilities)
    assert readers == {VAULT_POLICY: (promoter_data_path(), ["read"])}
    [policy] = [p for p in of_type(plan, POLICY) if p["inputs"]["name"] == VAULT_POLICY]
    # That path, and signing with the platform's promotion key; nothing else.
    assert _policy_paths(policy["inputs"]["policy"]) == {
        promoter_data_path(): ["read"], f"transit/sign/{PLATFORM_KEY}": ["update"],
        f"transit/sign/{PLATFORM_KEY}/*": ["update"], f"transit/keys/{PLATFORM_KEY}": ["read"],
    }
    signers = {p["inputs"]["name"] for p in of_type(plan, POLICY) if f"transit/sign/{PLATFORM_KEY}" in p["inputs"]["policy"]}
    assert signers == {VAULT_POLICY}  # no tenant signs as the platform


def test_the_ci_role_binds_this_repository_on_the_default_branch_in_the_stacks_promote_environment_for_five_minutes(
        plan: dict) -> None:
    role = named(plan, JWT_ROLE, VAULT_ROLE)["inputs"]
    config = config_of(plan)
    assert role["backend"] == GITLAB_PATH and role["roleName"] == VAULT_ROLE
    assert role["boundClaims"] == {
        "project_path": config.pipeline.project_path, "ref": DEFAULT_BRANCH, "ref_type": "branch", "ref_protected": "true",
        "pipeline_source": "push,web,schedule", "environment": StackEnvironments(plan["stack"]).promote,
        "environment_protected": "true", "environment_action": "start",  # started by the protected environment's deployers
    }
    assert role["boundClaimsType"] == "string"  # exact values, no globs
    assert role["boundAudiences"] == [f"https://vault.{config.domain}"]
    assert 0 < role["tokenTtl"] <= 300 and 0 < role["tokenMaxTtl"] <= 300
    assert role["tokenPolicies"] == [VAULT_POLICY]


def test_the_inventory_lists_the_robot_and_its_ci_tokens(plan: dict) -> None:
    entries = {e["what"]: e for e in plan["outputs"]["credentials"]}
    robot = entries[f"Harbor system robot {ROBOT_NAME}"]
    assert (robot["category"], robot["lifetimeSeconds"]) == ("issued", 30 * 86400)
    assert robot["resources"] == [promoter(plan)["name"]]
    assert "pulumi up" in robot["rotation"] and "15 days" in robot["rotation"]
    assert PROMOTER_SECRET_PATH in robot["holder"]
    tokens = entries[f"Vault tokens of CI role {VAULT_ROLE}"]
    assert tokens["lifetimeSeconds"] == CI_TOKEN_TTL <= 300 and tokens["resources"] == [VAULT_ROLE]


# --- the job --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    return yaml.safe_load(CI_FILE.read_text())


@pytest.fixture(scope="module", params=STACKS)
def job(ci: dict[str, Any], request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each stack's job, as GitLab resolves it (`extends`), in its stack's promote environment."""
    job = _resolve(ci, f"{JOB}-{request.param}")
    assert job["environment"] == {"name": StackEnvironments(request.param).promote, "deployment_tier": "other"}
    return job


def test_the_job_is_manual_and_runs_on_the_default_branch_only(ci: dict[str, Any], job: dict[str, Any]) -> None:
    [rule] = job["rules"]
    assert rule["when"] == "manual"
    assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in rule["if"] and "merge_request" not in rule["if"]
    assert " || " not in rule["if"]  # nothing widens it
    assert job["allow_failure"] is True  # optional: main pipelines do not wait for it
    assert job["stage"] in ci["stages"]


def test_the_job_reaches_vault_with_its_id_token_only(ci: dict[str, Any], job: dict[str, Any]) -> None:
    assert job["id_tokens"] == {"VAULT_ID_TOKEN": {"aud": "$VAULT_ADDR"}}
    variables = job["variables"]
    assert variables == {"VAULT_AUTH_PATH": GITLAB_PATH, "VAULT_ROLE": VAULT_ROLE, "PROMOTER_VAULT_PATH": promoter_data_path(),
                         "SIGN_WITH": PLATFORM_KEY}
    script = load_script()
    # Every variable the job or its script reads: GitLab's own, the file's, the ID token, and what
    # people set: IMAGE (what to promote), two options, and VAULT_ADDR (a location, in the header).
    text = json.dumps(job) + SCRIPT.read_text()
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", json.dumps(job)))
    used |= set(re.findall(r'environ(?:\.get\(|\[)"([A-Z_][A-Z0-9_]*)"', text)) | set(script.REQUIRED_VARIABLES)
    external = {v for v in used if not v.startswith("CI_")} - set(variables) - set(job["id_tokens"])
    assert external == {"IMAGE", "DATABASE", "VAULT_ADDR", "PROMOTE_SCAN_TIMEOUT", "APPROVED_PREFIX"}
    assert "CI_SERVER_TLS_CA_FILE" in SCRIPT.read_text()  # the runner's CA, read with os.environ
    header = "\n".join(line for line in CI_FILE.read_text().splitlines() if line.startswith("#"))
    assert re.search(r"#\s+VAULT_ADDR\s+https://vault\.<domain>", header)
    assert "secrets" not in job and "services" not in job  # no CI secret, no Docker daemon


@pytest.mark.parametrize("stack", STACKS)
def test_trivys_databases_are_promoted_daily_by_the_same_job_on_main(ci: dict[str, Any], stack: str) -> None:
    assert ci[f"promote-trivy-db-{stack}"] == {"extends": [f"{JOB}-{stack}", ".promote-trivy-db"]}  # its environment too
    job = ci[".promote-trivy-db"]
    assert set(job) == {"rules", "allow_failure", "variables"}
    [rule] = job["rules"]
    assert {'$CI_PIPELINE_SOURCE == "schedule"', '$SCHEDULE_TASK == "trivy-db"', "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"} == set(
        rule["if"].split(" && ")) and "when" not in rule
    assert job["variables"] == {"DATABASE": " ".join(TRIVY_DATABASES)}
    assert re.search(r"#\s+SCHEDULE_TASK=trivy-db\s+daily", CI_FILE.read_text())


def test_the_job_runs_the_script_in_the_pinned_image_with_the_pinned_skopeo(job: dict[str, Any]) -> None:
    assert job["image"] == PROMOTE_IMAGE.ref and "bookworm" in PROMOTE_IMAGE.tag  # SKOPEO_DEBIAN_VERSION's release
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", PROMOTE_IMAGE.digest) and PROMOTE_IMAGE.tag not in ("", "latest")
    [install] = job["before_script"]
    assert re.search(rf"apt-get install .*\bskopeo={re.escape(SKOPEO_DEBIAN_VERSION)}$", install)
    assert job["script"] == ["python3 .ci/promote-image.py"] and SCRIPT.is_file()
    compile(SCRIPT.read_text(), str(SCRIPT), "exec")


def test_the_script_never_turns_tls_verification_off() -> None:
    source = SCRIPT.read_text()
    for weakening in ("CERT_NONE", "_create_unverified_context", "check_hostname = False", "verify=False", "http://"):
        assert weakening not in source
    script = load_script()
    with pytest.raises(script.PromotionError, match="HTTPS only"):
        script.Https(script.tls_context()).call("GET", "http://harbor.test/api/v2.0/projects", {}, "test")
    assert script.tls_context().verify_mode.name == "CERT_REQUIRED" and script.tls_context().check_hostname
    assert "--src-tls-verify" not in source and "--dest-tls-verify" not in source and "--tls-verify" not in source


# --- the script -----------------------------------------------------------------------------------


def load_script():
    if "promote_image" not in sys.modules:  # dataclasses look their module up in sys.modules
        spec = importlib.util.spec_from_file_location("promote_image", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["promote_image"] = module
        spec.loader.exec_module(module)
    return sys.modules["promote_image"]


def test_the_script_agrees_with_the_components() -> None:
    script = load_script()
    assert script.SEVERITIES == tuple(Severity) and script.APPROVED_PROJECT == APPROVED_PROJECT
    for host in PUBLIC_REGISTRIES:
        assert script.proxy_project_name(host) == proxy_project_name(host)


def _report(status: str = "Success", **counts: int) -> dict:
    return {"application/vnd.security.vulnerability.report; version=1.1": {
        "scan_status": status, "severity": max(counts, key=lambda s: ("Low", "Medium", "High", "Critical").index(s)) if counts else "None",
        "summary": {"total": sum(counts.values()), "summary": counts},
    }}


@pytest.mark.parametrize("overview, threshold, state", [
    (_report(High=1, Low=3), "high", "refuse"),
    (_report(Critical=2), "high", "refuse"),
    (_report(Medium=4, Low=9), "high", "pass"),
    (_report(Medium=4), "medium", "refuse"),
    (_report(High=1), "critical", "pass"),
    (_report(Low=1), "low", "refuse"),
    (_report(Critical=5), "none", "pass"),  # "none" gates nothing, as the tenants' trivy step
    (_report(), "low", "pass"),
    (_report("Running"), "high", "wait"),
    (_report("Pending"), "high", "wait"),
    ({}, "high", "wait"),
    (None, "high", "wait"),
    (_report("Error"), "none", "refuse"),  # nothing vouches for it
    # Without counts, Harbor's overall rating decides.
    ({"x": {"scan_status": "Success", "severity": "Critical", "summary": {}}}, "high", "refuse"),
    ({"x": {"scan_status": "Success", "severity": "Low", "summary": {}}}, "high", "pass"),
])
def test_the_severity_decision(overview: Any, threshold: str, state: str) -> None:
    assert load_script().scan_verdict(overview, threshold).state == state


def test_an_unknown_gate_or_severity_is_an_error() -> None:
    script = load_script()
    with pytest.raises(script.PromotionError, match="severe"):
        script.scan_verdict(_report(High=1), "severe")
    with pytest.raises(script.PromotionError, match="Dire"):
        script.scan_verdict({"x": {"scan_status": "Success", "summary": {"summary": {"Dire": 1}}}}, "high")


@pytest.mark.parametrize("text, source, target, reference", [
    ("docker.io/library/nginx:1.27.3", "proxy-docker-io/library/nginx", "approved/docker.io/library/nginx", "1.27.3"),
    ("docker.io/nginx:1.27.3", "proxy-docker-io/library/nginx", "approved/docker.io/library/nginx", "1.27.3"),
    ("quay.io/buildah/stable:v1.38.1", "proxy-quay-io/buildah/stable", "approved/quay.io/buildah/stable", "v1.38.1"),
    ("ghcr.io/sigstore/cosign/cosign:v2.4.1-dev", "proxy-ghcr-io/sigstore/cosign/cosign",
     "approved/ghcr.io/sigstore/cosign/cosign", "v2.4.1-dev"),
    ("registry.k8s.io/pause:3.10@sha256:" + "b" * 64, "proxy-registry-k8s-io/pause", "approved/registry.k8s.io/pause",
     "sha256:" + "b" * 64),  # the digest is what is copied; the tag labels it
])
def test_image_names(text: str, source: str, target: str, reference: str) -> None:
    ref = load_script().parse_image(text)
    assert (ref.source, ref.target, ref.reference) == (source, target, reference)


def test_virtual_cluster_images_go_where_the_vcluster_chart_pulls_them() -> None:
    # components/tenant.py: `advanced.defaultImageRegistry` = <harbor>/approved/vcluster.
    script = load_script()
    for image, repository in (("ghcr.io/loft-sh/vcluster-oss:0.36.1", "loft-sh/vcluster-oss"),
                              ("docker.io/coredns/coredns:1.12.1", "coredns/coredns")):
        ref = script.parse_image(image, "vcluster")
        assert f"harbor.test/{ref.target}" == f"{virtual_cluster_registry('harbor.test')}/{repository}"
        assert ref.source == f"{proxy_project_name(image.split('/')[0])}/{repository}"
    with pytest.raises(script.PromotionError, match="APPROVED_PREFIX"):
        script.parse_image("ghcr.io/loft-sh/vcluster-oss:0.36.1", "../tenant")


@pytest.mark.parametrize("image", [BUILDAH_IMAGE, TRIVY_IMAGE, COSIGN_IMAGE, GIT_IMAGE])
def test_promoting_a_starter_tool_image_puts_it_where_the_starter_pipeline_pulls_it(image: str) -> None:
    ref = load_script().parse_image(image)
    assert f"harbor.test/{ref.target}:{ref.tag}" == approved("harbor.test", image)
    assert ref.registry in PUBLIC_REGISTRIES  # a registry a cache can exist for


@pytest.mark.parametrize("text", [
    "nginx:1.27.3",  # which registry?
    "docker.io/library/nginx",  # no tag, no digest
    "registry.k8s.io/pause@sha256:" + "a" * 64,  # untagged: garbage-collected within a week
    "docker.io/library/nginx:latest",
    "docker.io/library/NGINX:1",
    "docker.io/library/nginx@sha256:short",
])
def test_image_names_refused(text: str) -> None:
    script = load_script()
    with pytest.raises(script.PromotionError):
        script.parse_image(text)


# --- the script for real: skopeo, a real registry behind Harbor's API, OpenBao -----------------------


def _tar_gz(name: str, files: dict[str, bytes] | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for path, data in (files or {f"{name}.txt": f"file of {name}\n".encode()}).items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _upstream_layout(directory: Path, build: str = "") -> dict[str, str]:
    """An OCI layout of a multi-platform image with a build attestation, as upstream publishes one
    (`build`: other bytes under the same names, as a rebuilt tag)."""
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str, **extra: Any) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data), **extra}

    children, digests = [], {}
    for platform in ("amd64", "arm64", "attestation"):
        layer = put(_tar_gz(platform + build), "application/vnd.oci.image.layer.v1.tar+gzip")
        config = put(json.dumps({"architecture": platform, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode(),
                     "application/vnd.oci.image.config.v1+json")
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": config, "layers": [layer]}, indent=3).encode()  # not canonical: must stay byte for byte
        attestation = platform == "attestation"
        children.append(put(manifest, "application/vnd.oci.image.manifest.v1+json",
                            platform={"os": "unknown" if attestation else "linux", "architecture": "unknown" if attestation else platform},
                            **({"annotations": {"vnd.docker.reference.type": "attestation-manifest"}} if attestation else {})))
        digests[platform] = children[-1]["digest"]
    index = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}).encode(),
                "application/vnd.oci.image.index.v1+json", annotations={"org.opencontainers.image.ref.name": "1.0.0"})
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [index]}))
    return {**digests, "index": index["digest"]}


@pytest.fixture(scope="module")
def promotion_site(tmp_path_factory: pytest.TempPathFactory, loopback_tls, plan_vaults) -> Any:
    """Harbor (a real registry behind its API) holding an upstream image in the docker.io cache,
    the dev plan's Vault on OpenBao with the robot's credentials written as `pulumi up` writes them."""
    missing = tools_missing()
    if missing:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(f"{', '.join(missing)} not installed (.ci/install --tests)")
    base = tmp_path_factory.mktemp("promotion")
    registry = Registry(base)
    vulnerable: set[str] = set()
    harbor_site = FakeHarbor(loopback_tls, registry, lambda d: {"High": 2} if d in vulnerable else {"Medium": 1})
    with harbor_site:
        digests = _upstream_layout(base / "upstream")
        ca_file = base / "ca.pem"
        ca_file.write_text(loopback_tls.ca_pem)
        env = {**os.environ, "SSL_CERT_FILE": str(ca_file)}
        subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", f"oci:{base / 'upstream'}:1.0.0",
                        f"docker://{harbor_site.host}/proxy-docker-io/library/demo:1.0.0"], check=True, env=env, capture_output=True)
        vault = plan_vaults("dev")
        vault.client(vault.root_token).write_data(f"tenants/data/{PROMOTER_SECRET_PATH}", data={"data": {
            "registry": harbor_site.host, "username": "robot$promoter", "password": "robot-secret"}})
        yield SimpleNamespace(harbor=harbor_site, vault=vault, digests=digests, vulnerable=vulnerable, ca_file=str(ca_file))
    registry.stop()


def _environ(site: Any, **extra: str) -> dict[str, str]:
    return {"IMAGE": "docker.io/demo:1.0.0", "VAULT_ADDR": site.vault.server.url, "VAULT_AUTH_PATH": GITLAB_PATH,
            "VAULT_ROLE": VAULT_ROLE, "VAULT_ID_TOKEN": pipeline_id_token(site.vault, source="web", environment="promote/dev"),
            "PROMOTER_VAULT_PATH": promoter_data_path(),
            "SIGN_WITH": PLATFORM_KEY, **extra}


def _live_promotion_tokens(site: Any) -> list[str]:
    """Accessors of Vault tokens of the promotion role still alive: the script revokes its own."""
    root = site.vault.client(site.vault.root_token)
    accessors = root.list("auth/token/accessors")["data"]["keys"]
    return [a for a in accessors if (root.auth.token.lookup_accessor(a)["data"].get("meta") or {}).get("role") == VAULT_ROLE]


def _registry_blob(site: Any, repository: str, reference: str) -> tuple[dict[str, Any], Any]:
    """A manifest from the registry and a reader of its blobs."""
    def get(path: str) -> bytes:
        request = urllib.request.Request(f"{site.harbor.url}/v2/{repository}/{path}",
                                         headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"})
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=site.ca_file)) as response:
            return response.read()
    return json.loads(get(f"manifests/{reference}")), lambda digest: get(f"blobs/{digest}")


def test_a_clean_image_is_copied_by_digest_with_every_platform_and_signed_with_the_promotion_key(
        promotion_site: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    assert load_script().main(_environ(site), sleep=_no_wait) == 0
    index = site.digests["index"]
    target = f"{site.harbor.host}/approved/docker.io/library/demo"
    assert f"promoted: {target}:1.0.0@{index}" in capsys.readouterr().out
    assert _live_promotion_tokens(site) == []
    repository = "approved/docker.io/library/demo"
    top, _ = _registry_blob(site, repository, "1.0.0")  # the same digest as upstream, every child with it
    assert {m["digest"] for m in top["manifests"]} == {site.digests[p] for p in ("amd64", "arm64", "attestation")}
    assert set(site.harbor.scans) == {site.digests["amd64"], site.digests["arm64"]}  # attestations are not scanned
    # The signature, where cosign and the image verifier look, by the key the verifier trusts for `approved`.
    signature, blob = _registry_blob(site, repository, f"{index.replace(':', '-')}.sig")
    [layer] = signature["layers"]
    payload = blob(layer["digest"])
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == index
    der = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    trusted = fed_to_verifier(rotation_of(site.vault, PLATFORM_KEY).read)
    assert verified(payload, der, trusted)
    assert not verified(payload.replace(index.encode(), site.digests["amd64"].encode()), der, trusted)


def test_a_vulnerable_image_is_refused_and_nothing_is_pushed_or_signed(
        promotion_site: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    site.vulnerable.add(site.digests["arm64"])
    try:
        environ = _environ(site, APPROVED_PREFIX="vcluster")  # a repository nothing was pushed to yet
        assert load_script().main(environ, sleep=_no_wait) == 1
    finally:
        site.vulnerable.clear()
    error = capsys.readouterr().err
    assert "refused" in error and "2 High at or above high" in error and site.digests["arm64"] in error
    assert _live_promotion_tokens(site) == []  # revoked on failure too
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _registry_blob(site, "approved/vcluster/library/demo", site.digests["index"])


def test_only_protected_main_gets_the_robot_and_the_key(promotion_site: Any, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    for refused in (pipeline_id_token(site.vault, "feature/x", protected=False), pipeline_id_token(site.vault, "release/1")):
        assert load_script().main({**_environ(site), "VAULT_ID_TOKEN": refused}, sleep=_no_wait) == 1
        assert "Vault login as platform-promote-image" in capsys.readouterr().err


def _database_layout(directory: Path, built: datetime | None = None) -> str:
    """An OCI layout shaped as Trivy publishes its database (aquasecurity/trivy-db), built at `built` (an
    hour ago): db.tar.gz holds trivy.db and metadata.json, NextUpdate a day after UpdatedAt (trivy-db
    Makefile:93 and :104, pkg/vulndb/db.go:88-91); its manifest digest."""
    built = built or datetime.now(timezone.utc) - timedelta(hours=1)
    metadata = {"Version": 2, "NextUpdate": (built + timedelta(hours=24)).isoformat().replace("+00:00", "Z"),
                "UpdatedAt": built.isoformat().replace("+00:00", "Z"), "DownloadedAt": "0001-01-01T00:00:00Z"}
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes, media_type: str) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}

    manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": put(b"{}", "application/vnd.aquasec.trivy.config.v1+json"),
                               "layers": [put(_tar_gz("db", {"trivy.db": b"bolt", "metadata.json": json.dumps(metadata).encode()}),
                                              "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip")]}).encode(),
                   "application/vnd.oci.image.manifest.v1+json")
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {**manifest, "annotations": {"org.opencontainers.image.ref.name": "2"}}]}))
    return manifest["digest"]


def _upstream(site: Any, layout: Path, repository: str) -> None:
    """`layout` is what the proxy cache now serves as `repository` (`proxy-<registry>/...:<tag>`)."""
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", f"oci:{layout}:{repository.rsplit(':', 1)[1]}",
                    f"docker://{site.harbor.host}/{repository}"], check=True, env={**os.environ, "SSL_CERT_FILE": site.ca_file},
                   capture_output=True)


def test_trivys_database_is_copied_unscanned_and_an_image_is_no_database(
        promotion_site: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    digest = _database_layout(tmp_path / "db")
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", f"oci:{tmp_path / 'db'}:2",
                    f"docker://{site.harbor.host}/proxy-ghcr-io/aquasecurity/trivy-db:2"],
                   check=True, env={**os.environ, "SSL_CERT_FILE": site.ca_file}, capture_output=True)
    scanned = dict(site.harbor.scans)
    assert load_script().main({**_environ(site), "IMAGE": "", "DATABASE": "ghcr.io/aquasecurity/trivy-db:2"}, sleep=_no_wait) == 0
    repository = "approved/ghcr.io/aquasecurity/trivy-db"
    assert f"promoted: {site.harbor.host}/{repository}:2@{digest}" in capsys.readouterr().out
    manifest, _ = _registry_blob(site, repository, "2")  # under the schema tag Trivy asks for, byte for byte
    assert manifest["config"]["mediaType"] == "application/vnd.aquasec.trivy.config.v1+json"
    assert site.harbor.scans == scanned  # data: no scan asked for, none awaited
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _registry_blob(site, repository, f"{digest.replace(':', '-')}.sig")
    assert _live_promotion_tokens(site) == []
    # An image named as a database is refused: images reach `approved` through the scan gate only;
    # also one served under a Trivy database's own name (checked by media type after the pull).
    subprocess.run(["skopeo", "copy", "--all", "--preserve-digests", f"docker://{site.harbor.host}/proxy-docker-io/library/demo:1.0.0",
                    f"docker://{site.harbor.host}/proxy-ghcr-io/aquasecurity/trivy-java-db:1"],
                   check=True, env={**os.environ, "SSL_CERT_FILE": site.ca_file}, capture_output=True)
    for database, why in (("docker.io/demo:1.0.0", "the platform reads"), ("ghcr.io/aquasecurity/trivy-java-db:1", "(config")):
        assert load_script().main({**_environ(site), "IMAGE": "", "DATABASE": database}, sleep=_no_wait) == 1
        refused = capsys.readouterr()
        assert f"is not a Trivy database {why}" in refused.err and "copying" not in refused.out  # refused before any push


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    script = load_script()
    environ = {"IMAGE": "docker.io/demo:1.0.0", "VAULT_ADDR": "https://vault.test", "VAULT_AUTH_PATH": GITLAB_PATH,
               "VAULT_ROLE": VAULT_ROLE, "PROMOTER_VAULT_PATH": promoter_data_path(), "SIGN_WITH": PLATFORM_KEY}
    assert script.main({**environ, "IMAGE": ""}) == 2
    assert script.main(environ) == 2
    assert "VAULT_ID_TOKEN" in capsys.readouterr().err


def _no_wait(seconds: float) -> None:
    pass


def test_a_re_promotion_never_moves_a_promoted_tag(promotion_site: Any, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Upstream re-points `moved:1.0.0` to a rebuild (no CVE Harbor knows) after the platform promoted it;
    the platform team re-runs promote-image with the same IMAGE to re-sign, as the README says after a key
    rotation. The tag in `approved` kept its first bytes, and the run says why; the same bytes re-promoted
    are re-signed without a push over their tag (Harbor refuses any push to an existing immutable tag, even
    of the bytes it holds: src/server/middleware/immutable/pushmf.go:69-75)."""
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    first, rebuilt = _upstream_layout(tmp_path / "first"), _upstream_layout(tmp_path / "rebuilt", build="-rebuilt")
    cached, repository = "proxy-docker-io/library/moved:1.0.0", "approved/docker.io/library/moved"
    environ = _environ(site, IMAGE="docker.io/moved:1.0.0")
    _upstream(site, tmp_path / "first", cached)
    assert load_script().main(environ, sleep=_no_wait) == 0
    capsys.readouterr()

    _upstream(site, tmp_path / "rebuilt", cached)
    assert load_script().main(environ, sleep=_no_wait) == 1
    refused = capsys.readouterr().err
    assert f"{repository}:1.0.0 names {first['index']}" in refused and rebuilt["index"] in refused
    top, _ = _registry_blob(site, repository, "1.0.0")
    assert {m["digest"] for m in top["manifests"]} == {first[p] for p in ("amd64", "arm64", "attestation")}
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _registry_blob(site, repository, f"{rebuilt['index'].replace(':', '-')}.sig")

    _upstream(site, tmp_path / "first", cached)
    site.harbor.pushed.clear()
    assert load_script().main(environ, sleep=_no_wait) == 0
    assert f"promoted: {site.harbor.host}/{repository}:1.0.0@{first['index']}" in capsys.readouterr().out
    assert site.harbor.pushed == [f"{repository}:{first['index'].replace(':', '-')}.sig"]  # the signature only


def test_a_stale_trivy_database_is_never_promoted(promotion_site: Any, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """Nobody signs Trivy's databases (aquasecurity/trivy-db .github/workflows/cron.yml:117-119 pushes them with
    oras, no signature; its PR #230 to sign them is open), so nothing the platform holds can tell a tampered
    one from the real one; what it can tell is age. Whoever holds the network between Harbor and ghcr.io drops
    its connections, or ghcr.io rate-limits the cache: Harbor's proxy then serves its old copy of `trivy-db:2`
    (an unhealthy registry: src/server/middleware/repoproxy/proxy.go:222-225, 299-311; rate-limited:
    src/controller/proxy/controller.go:184-187), the daily schedule re-promotes it green, and every scanner
    of the platform judges new images without any CVE published since: the severity gates pass them. A
    database past its own NextUpdate (upstream rebuilds every 6 hours, cron.yml:5) is refused, loudly."""
    site = promotion_site
    monkeypatch.setenv("CI_SERVER_TLS_CA_FILE", site.ca_file)
    environ = {**_environ(site), "IMAGE": "", "DATABASE": "ghcr.io/aquasecurity/trivy-db:2"}
    stale = _database_layout(tmp_path / "stale", built=datetime.now(timezone.utc) - timedelta(days=9))
    _upstream(site, tmp_path / "stale", "proxy-ghcr-io/aquasecurity/trivy-db:2")
    site.harbor.pushed.clear()
    assert load_script().main(environ, sleep=_no_wait) == 1
    refused = capsys.readouterr()
    assert f"{stale}" in refused.err and "NextUpdate" in refused.err and "copying" not in refused.out
    assert site.harbor.pushed == []
    fresh = _database_layout(tmp_path / "fresh")
    _upstream(site, tmp_path / "fresh", "proxy-ghcr-io/aquasecurity/trivy-db:2")
    assert load_script().main(environ, sleep=_no_wait) == 0
    assert f"promoted: {site.harbor.host}/approved/ghcr.io/aquasecurity/trivy-db:2@{fresh}" in capsys.readouterr().out


def test_an_image_promoted_without_a_tag_is_refused_before_garbage_collection_deletes_it(plan: dict) -> None:
    """Harbor's weekly garbage collection deletes every untagged artifact of every project (delete_untagged: Harbor
    v2.15.1 src/jobservice/job/impl/gc/garbage_collection.go:544-585), and its signature with it (a hard
    accessory: src/pkg/accessory/model/cosign/cosign.go:29, src/controller/artifact/controller.go:382-397).
    An image promoted by digest alone was pushed untagged: whatever pinned it (a chart value, a vcluster
    image) ran until the next Sunday, then no new node could pull it. Promotion takes a tag, and the
    digest it must name when one is pinned."""
    [gc] = of_type(plan, "harbor:index/garbageCollection:GarbageCollection")
    assert gc["inputs"]["deleteUntagged"] is True
    script = load_script()
    with pytest.raises(script.PromotionError, match="garbage collection"):
        script.parse_image("registry.k8s.io/pause@sha256:" + "a" * 64)
    ref = script.parse_image("registry.k8s.io/pause:3.10@sha256:" + "a" * 64)
    assert (ref.tag, ref.reference) == ("3.10", "sha256:" + "a" * 64)
