"""Promotion of public images into `approved` (issue #9): the promoter robot, its Vault path,
policy and CI role on both stacks' plans; the `promote-image` job; and .ci/promote-image.py
itself, run against a fake Harbor and Vault."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import io
import json
import re
import sys
import urllib.parse
from pathlib import Path
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
from components.vault_federation import CI_TOKEN_TTL, GITLAB_PATH
from components.tenant import virtual_cluster_registry
from components.versions import PROMOTE_IMAGE
from platformctl.render import read_stack_file
from policy.pack.checks import check_harbor_robot_expires
from stacks.config import Tenant, load_platform_config
from tests.mock_program import run_program

ROOT = Path(__file__).resolve().parent.parent
CI_FILE = ROOT / ".gitlab-ci.yml"
SCRIPT = ROOT / ".ci" / "promote-image.py"
JOB = "promote-image"

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
        expected = {("push", "repository"), ("pull", "repository")} if name == APPROVED_PROJECT else {
            ("pull", "repository"), ("read", "artifact")}  # the image, and its scan results
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
    assert _policy_paths(policy["inputs"]["policy"]) == {promoter_data_path(): ["read"]}  # that path only


def test_the_ci_role_binds_this_repository_on_the_default_branch_for_five_minutes(plan: dict) -> None:
    role = named(plan, JWT_ROLE, VAULT_ROLE)["inputs"]
    config = config_of(plan)
    assert role["backend"] == GITLAB_PATH and role["roleName"] == VAULT_ROLE
    assert role["boundClaims"] == {
        "project_path": config.pipeline.project_path, "ref": DEFAULT_BRANCH, "ref_type": "branch", "ref_protected": "true",
        "pipeline_source": "push,web,schedule",
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


@pytest.fixture(scope="module")
def job(ci: dict[str, Any]) -> dict[str, Any]:
    assert "extends" not in ci[JOB]  # what is checked below is the whole job
    return ci[JOB]


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
    assert variables == {"VAULT_AUTH_PATH": GITLAB_PATH, "VAULT_ROLE": VAULT_ROLE, "PROMOTER_VAULT_PATH": promoter_data_path()}
    script = load_script()
    # Every variable the job or its script reads: GitLab's own, the file's, the ID token, and what
    # people set: IMAGE (what to promote), two options, and VAULT_ADDR (a location, in the header).
    text = json.dumps(job) + SCRIPT.read_text()
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", json.dumps(job)))
    used |= set(re.findall(r'environ(?:\.get\(|\[)"([A-Z_][A-Z0-9_]*)"', text)) | set(script.REQUIRED_VARIABLES)
    external = {v for v in used if not v.startswith("CI_")} - set(variables) - set(job["id_tokens"])
    assert external == {"IMAGE", "VAULT_ADDR", "PROMOTE_SCAN_TIMEOUT", "APPROVED_PREFIX"}
    header = "\n".join(line for line in CI_FILE.read_text().splitlines() if line.startswith("#"))
    assert re.search(r"#\s+VAULT_ADDR\s+https://vault\.<domain>", header)
    assert "secrets" not in job and "services" not in job  # no CI secret, no Docker daemon


def test_the_job_runs_the_script_in_the_pinned_image(job: dict[str, Any]) -> None:
    assert job["image"] == PROMOTE_IMAGE.ref
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", PROMOTE_IMAGE.digest) and PROMOTE_IMAGE.tag not in ("", "latest")
    assert job["script"] == ["python3 .ci/promote-image.py"] and SCRIPT.is_file()
    compile(SCRIPT.read_text(), str(SCRIPT), "exec")


def test_the_script_never_turns_tls_verification_off() -> None:
    source = SCRIPT.read_text()
    for weakening in ("CERT_NONE", "_create_unverified_context", "check_hostname = False", "verify=False", "http://"):
        assert weakening not in source
    script = load_script()
    with pytest.raises(script.PromotionError, match="HTTPS only"):
        script.Http(lambda *a: pytest.fail("sent")).request("GET", "http://harbor.test/v2/")


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
    ("registry.k8s.io/pause@sha256:" + "a" * 64, "proxy-registry-k8s-io/pause", "approved/registry.k8s.io/pause",
     "sha256:" + "a" * 64),
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
    "docker.io/library/nginx:latest",
    "docker.io/library/NGINX:1",
    "docker.io/library/nginx@sha256:short",
])
def test_image_names_refused(text: str) -> None:
    script = load_script()
    with pytest.raises(script.PromotionError):
        script.parse_image(text)


# --- the script against a fake Harbor and Vault ----------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _image(name: str) -> tuple[dict[str, bytes], bytes]:
    blobs = {_digest(b): b for b in (f"config {name}".encode(), f"layer {name}".encode(), b"shared base layer")}
    config, layer, base = blobs
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": len(blobs[config])},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(blobs[d])}
                   for d in (base, layer)],
    }, indent=3).encode()  # not canonical JSON: re-encoding would change the digest
    return blobs, manifest


class FakePlatform:
    """Vault and Harbor as the script sees them, over a transport; the upstream registry is
    behind Harbor's proxy cache. Blobs of the second platform image come through a redirect to
    an object store, as Harbor on S3 sends them."""

    def __init__(self, vulnerable: bool = False):
        self.blobs: dict[str, bytes] = {}
        self.upstream: dict[str, bytes] = {}  # manifests by digest
        children = []
        for platform in ("amd64", "arm64", "attestation"):
            blobs, manifest = _image(platform)
            self.blobs.update(blobs)
            self.upstream[_digest(manifest)] = manifest
            descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
                          "size": len(manifest), "platform": {"os": "linux", "architecture": platform}}
            if platform == "attestation":
                descriptor["platform"] = {"os": "unknown", "architecture": "unknown"}
                descriptor["annotations"] = {"vnd.docker.reference.type": "attestation-manifest"}
            children.append(descriptor)
        self.index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                 "manifests": children}).encode()
        self.upstream[_digest(self.index)] = self.index
        self.tags = {"1.0.0": _digest(self.index)}
        self.amd64, self.arm64, self.attestation = (c["digest"] for c in children)
        self.cached: set[str] = set()  # what went through the proxy
        self.target_blobs: dict[str, bytes] = {}
        self.target_manifests: dict[str, bytes] = {}
        self.target_tags: dict[str, str] = {}
        self.scan_calls: dict[str, int] = {}
        self.vulnerable = vulnerable
        self.revoked = False
        self.mounted = 0

    def __call__(self, method: str, url: str, headers: dict, body: Any):
        script = load_script()
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        auth = headers.get("Authorization", "")

        def reply(status: int, payload: Any = b"", **extra: str):
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            return script.Response(status, {k.replace("_", "-"): v for k, v in extra.items()}, io.BytesIO(data))

        if parts.netloc == "vault.test":
            if parts.path == "/v1/auth/jwt-gitlab/login":
                sent = json.loads(body)
                assert sent == {"role": VAULT_ROLE, "jwt": "the-id-token"}
                return reply(200, {"auth": {"client_token": "vault-token"}})
            assert headers["X-Vault-Token"] == "vault-token"
            if parts.path == "/v1/auth/token/revoke-self":
                self.revoked = True
                return reply(204)
            assert parts.path == f"/v1/{promoter_data_path()}"
            return reply(200, {"data": {"data": {"registry": "harbor.test", "username": "robot$promoter", "password": "pw"}}})
        if parts.netloc == "objects.test":  # the object store: never our credentials
            assert not auth
            return reply(200, self.blobs[parts.path.removeprefix("/")])
        assert parts.netloc == "harbor.test"
        if parts.path.startswith("/api/v2.0/"):
            assert auth.startswith("Basic ")
            return self._api(parts.path.removeprefix("/api/v2.0/"), reply)
        if parts.path == "/v2/":
            return reply(401, www_authenticate='Bearer realm="https://harbor.test/service/token",service="harbor-registry"')
        if parts.path == "/service/token":
            assert auth.startswith("Basic ") and query["service"] == ["harbor-registry"]
            return reply(200, {"token": "bearer"})
        assert auth == "Bearer bearer"
        repo, kind, rest = re.match(r"^/v2/(.+)/(manifests|blobs/uploads|blobs)/(.*)$", parts.path).groups()
        source = repo.startswith("proxy-docker-io/")
        if kind == "manifests" and method == "GET":
            assert source
            digest = self.tags.get(rest, rest)
            self.cached.add(digest)
            return reply(200, self.upstream[digest], docker_content_digest=digest)
        if kind == "manifests" and method == "PUT":
            document = json.loads(body)
            needed = [m["digest"] for m in document.get("manifests", [])]
            assert all(d in self.target_manifests for d in needed), "an index before its children"
            blobs = [document["config"]["digest"], *[l["digest"] for l in document.get("layers", [])]] if "config" in document else []
            assert all(d in self.target_blobs for d in blobs), "a manifest before its blobs"
            digest = _digest(body)
            if rest.startswith("sha256:"):
                assert rest == digest
                self.target_manifests[digest] = body
            else:
                self.target_tags[rest] = digest
            return reply(201, docker_content_digest=digest)
        if kind == "blobs" and method == "GET":
            assert source
            self.cached.add(rest)
            if rest in self.blobs and b"arm64" in self.blobs[rest]:
                return reply(307, location=f"https://objects.test/{rest}")
            return reply(200, self.blobs[rest])
        if kind == "blobs" and method == "HEAD":
            return reply(200 if rest in self.target_blobs else 404)
        if kind == "blobs/uploads" and method == "POST":
            digest = query["mount"][0]
            if digest in self.cached and b"layer amd64" in self.blobs[digest]:  # the cache holds it: mount
                self.target_blobs[digest] = self.blobs[digest]
                self.mounted += 1
                return reply(201)
            return reply(202, location=f"/v2/{repo}/blobs/uploads/session-1?state=x")
        if kind == "blobs/uploads" and method == "PUT":
            data = body.read()
            assert _digest(data) == query["digest"][0] and query["state"] == ["x"]
            self.target_blobs[query["digest"][0]] = data
            return reply(201)
        raise AssertionError(f"unexpected {method} {url}")

    def _api(self, path: str, reply):
        if path == "projects/approved":
            return reply(200, {"name": "approved", "metadata": {"prevent_vul": "true", "severity": "high", "public": "true"}})
        match = re.match(r"^projects/proxy-docker-io/repositories/library%252Fdemo/artifacts/(sha256:[0-9a-f]+)$", path)
        assert match, path
        digest = match.group(1)
        if digest not in self.cached:
            return reply(404)
        self.scan_calls[digest] = self.scan_calls.get(digest, 0) + 1
        if self.scan_calls[digest] == 1:
            return reply(200, {"scan_overview": _report("Running")})
        counts = {"High": 2} if self.vulnerable and digest == self.arm64 else {"Medium": 1}
        return reply(200, {"scan_overview": _report(**counts)})


ENV = {
    "IMAGE": "docker.io/demo:1.0.0",
    "VAULT_ADDR": "https://vault.test",
    "VAULT_AUTH_PATH": "jwt-gitlab",
    "VAULT_ROLE": VAULT_ROLE,
    "VAULT_ID_TOKEN": "the-id-token",
    "PROMOTER_VAULT_PATH": promoter_data_path(),
}


def _no_wait(seconds: float) -> None:
    pass


def test_a_clean_image_is_copied_by_digest_with_every_platform(capsys: pytest.CaptureFixture) -> None:
    fake = FakePlatform()
    assert load_script().main(ENV, transport=fake, sleep=_no_wait) == 0
    index = _digest(fake.index)
    assert fake.target_tags == {"1.0.0": index}  # same digest as upstream
    assert set(fake.target_manifests) == {index, fake.amd64, fake.arm64, fake.attestation}
    assert fake.target_manifests[index] == fake.index  # byte for byte
    assert fake.target_blobs == fake.blobs
    assert fake.mounted == 1  # a blob the cache holds is mounted, the rest uploaded
    assert set(fake.scan_calls) == {fake.amd64, fake.arm64}  # attestations are not images to scan
    assert fake.revoked
    assert f"promoted: harbor.test/approved/docker.io/library/demo:1.0.0@{index}" in capsys.readouterr().out


def test_a_vulnerable_image_is_refused_and_nothing_is_pushed(capsys: pytest.CaptureFixture) -> None:
    fake = FakePlatform(vulnerable=True)
    assert load_script().main(ENV, transport=fake, sleep=_no_wait) == 1
    assert fake.target_manifests == {} and fake.target_tags == {} and fake.target_blobs == {}
    error = capsys.readouterr().err
    assert "refused" in error and "2 High at or above high" in error and fake.arm64 in error


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    script = load_script()
    assert script.main({**ENV, "IMAGE": ""}, transport=lambda *a: pytest.fail("sent")) == 2
    assert script.main({k: v for k, v in ENV.items() if k != "VAULT_ID_TOKEN"}, transport=lambda *a: pytest.fail("sent")) == 2
    assert "VAULT_ID_TOKEN" in capsys.readouterr().err
