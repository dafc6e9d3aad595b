"""An attacker's review of the supply chain as it stands: can an image reach a tenant's prod without
being scanned, signed by that tenant's key and promoted through Git? Each test is one attempt,
made against what the program really creates (the plans, the Helm-rendered charts, the upstream
projects' own rules as their source states them), and must fail for the attacker."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from components.tenancy import Severity
from components.tenant_registry import RELEASE_TAGS
from components.tenant_supply_chain import (
    BUILDAH_IMAGE, GIT_IMAGE, PROTECTED_PUSH_RULE, RELEASE_TAG_RULE, TRIVY_IMAGE, trivy_severities,
)
from components.versions import TRIVY_DATABASES
from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import render
from policy.labels import SIGNATURE_POLICY_LABEL
from tests.conftest import ROOT
from tests.test_ci_attacks import RUNNER, _takes
from tests.test_image_promotion import load_script
from tests.test_policy_attacks import waits_for

MEMBER_GROUP = "harbor:index/projectMemberGroup:ProjectMemberGroup"
IMMUTABLE_RULE = "harbor:index/immutableTagRule:ImmutableTagRule"
NAMESPACE = "kubernetes:core/v1:Namespace"
ROLE_BINDING = "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"

# --- Harbor: what a tenant's people may do to the project the prod verifier trusts ----------------

# Harbor v2.15.1 (the harbor chart 1.19.1's appVersion), src/common/rbac/project/rbac_role.go: the
# project roles' permissions that change which bytes a tag names, or the project's own gates. A
# tenant's CI pushes with its robot (protected refs only); a person holding one of these writes to
# the project around that pipeline: a release tag squatted before CI pushes it (`tag create`,
# `repository push`), the immutability rule removed and `v1.2.3` moved to another signed build
# (`immutable-tag delete`: prod then runs what no merge request in ops named, and ArgoCD sees no
# change), or the retention policy rewritten and run at once (`tag-retention update/operate`),
# deleting the builds and the signatures prod runs on.
HARBOR_WRITES = {
    "projectAdmin": {("repository", "push"), ("tag", "create"), ("tag", "delete"), ("artifact", "delete"),
                     ("immutable-tag", "delete"), ("tag-retention", "update"), ("tag-retention", "operate"),
                     ("metadata", "update"), ("robot", "create"), ("member", "create")},
    "maintainer": {("repository", "push"), ("tag", "create"), ("tag", "delete"), ("artifact", "delete"),
                   ("immutable-tag", "delete"), ("tag-retention", "update"), ("tag-retention", "operate")},
    "developer": {("repository", "push"), ("tag", "create"), ("tag-retention", "update"), ("tag-retention", "operate")},
    "guest": set(),
    "limitedGuest": set(),
}
# pulumiverse-harbor's role names -> Harbor's.
HARBOR_ROLE = {"projectadmin": "projectAdmin", "maintainer": "maintainer", "developer": "developer", "guest": "guest",
               "limitedguest": "limitedGuest"}


def member_groups(plan: dict) -> dict[str, str]:
    """Every member group of a Harbor project (the tenants' role groups, the platform's readers) -> its role."""
    return {m["inputs"]["groupName"]: m["inputs"]["role"] for m in (r for r in plan["resources"] if r["type"] == MEMBER_GROUP)}


def test_no_tenant_member_can_write_to_the_project_prod_trusts_around_its_protected_pipeline(plan: dict) -> None:
    """A developer of tenant A (no merge, no protected job) signs in to Harbor with its CLI secret:
    it pushes `app:v1.4.0` (any signed build of main, re-tagged) before the owners' release
    pipeline does, or rewrites and runs the retention policy; an owner or ops member deletes the
    immutability rule and moves a release tag that prod runs to another build. Only the CI robot
    writes; people read."""
    members = member_groups(plan)
    assert members, "the plan has tenant member groups"
    writes = {group: sorted(HARBOR_WRITES[HARBOR_ROLE[role]]) for group, role in members.items() if HARBOR_WRITES[HARBOR_ROLE[role]]}
    assert not writes, f"tenant groups that write to their Harbor project: {writes}"


def test_release_tags_stay_immutable_for_every_tenant(plan: dict) -> None:
    """The other half of the above: with people reading only, the immutability rule (which only a
    maintainer or project admin could remove) holds every release tag to its first push."""
    rules = [r["inputs"] for r in plan["resources"] if r["type"] == IMMUTABLE_RULE and r["inputs"] not in project_rules(plan, "approved")]
    assert rules and all((r["repoMatching"], r["tagMatching"]) == ("**", RELEASE_TAGS) for r in rules)
    assert len(rules) == len([g for g in member_groups(plan) if g.endswith("-owners")])


# --- the verifier: a pod admitted before its webhook exists is never checked ----------------------


def test_a_tenant_gets_access_to_its_namespace_only_after_the_image_verifier_that_holds_it(plan: dict) -> None:
    """policy-controller checks a pod when it is admitted, never after (no audit of running pods).
    On a cluster built anew, ArgoCD syncs the tenant's ops repository as soon as its RoleBinding
    exists, and a virtual cluster's syncer creates pods as soon as it runs: were either before the
    verifier's release is ready (its webhook registered, serving), an image nobody signed with the
    tenant's key would run in prod for as long as its pod lives. Every grant of access to a tenant
    namespace waits for its cluster's verifier (tests/test_policy_attacks.py holds it to Gatekeeper)."""
    releases = [r for r in plan["resources"] if r["type"] == RELEASE_TYPE]
    verifiers = {r["cluster"]: r["urn"] for r in releases if r["inputs"]["chart"] == "policy-controller"}
    assert set(verifiers) == {"dev", "prod"}
    before = waits_for(plan)
    tenant_namespaces = {(r["cluster"], r["inputs"]["metadata"]["name"]) for r in plan["resources"] if r["type"] == NAMESPACE
                         and r["inputs"]["metadata"].get("labels", {}).get(SIGNATURE_POLICY_LABEL) == "true"}
    late = []
    for cluster, namespace in sorted(tenant_namespaces):
        grants = [r for r in plan["resources"] if r.get("cluster") == cluster and (
            (r["type"] == ROLE_BINDING and r["inputs"]["metadata"].get("namespace") == namespace)
            or (r["type"] == RELEASE_TYPE and r["inputs"]["chart"] == "vcluster" and r["inputs"]["namespace"] == namespace))]
        assert grants, (cluster, namespace)
        late += [f"{cluster}: {g['name']}" for g in grants if verifiers[cluster] not in before[g["urn"]]]
    assert not late, f"access granted before the image verifier is ready: {late}"


# --- the build that gets signed: on nodes where a branch's code runs? --------------------------------

REPOSITORY_FILE = "gitlab:index/repositoryFile:RepositoryFile"
NOT_MERGE_REQUEST = '$CI_PIPELINE_SOURCE != "merge_request_event"'
# The rule expressions of the starter pipeline, true or false in each kind of pipeline (an
# expression the pipeline gains that is not here fails the test rather than guess).
PIPELINES = {
    "release tag": {PROTECTED_PUSH_RULE: True, RELEASE_TAG_RULE: True, NOT_MERGE_REQUEST: True},
    "push to main": {PROTECTED_PUSH_RULE: True, RELEASE_TAG_RULE: False, NOT_MERGE_REQUEST: True},
    "a developer's branch": {PROTECTED_PUSH_RULE: False, RELEASE_TAG_RULE: False, NOT_MERGE_REQUEST: True},
    "merge request": {PROTECTED_PUSH_RULE: False, RELEASE_TAG_RULE: False, NOT_MERGE_REQUEST: False},
}


def runs(job: dict[str, Any], truth: dict[str, bool]) -> bool:
    """GitLab's rules: the first rule whose `if` holds (or that has none) decides; no rules: not
    in merge request pipelines (`only: [branches, tags]`)."""
    if "rules" not in job:
        return truth[NOT_MERGE_REQUEST]
    for rule in job["rules"]:
        if "if" not in rule or truth[rule["if"]]:
            return rule.get("when", "on_success") != "never"
    return False


def a_tenant(plan: dict) -> str:
    """A tenant of the plan: the first whose group runner (`group <tenant>`) the plan registers."""
    return next(r["inputs"]["description"].removeprefix("group ") for r in plan["resources"]
                if r["type"] == RUNNER and r["inputs"]["description"].startswith("group ") and "(" not in r["inputs"]["description"])


def app_pipeline(plan: dict, tenant: str) -> dict[str, Any]:
    """The tenant's starter app pipeline (.gitlab-ci.yml) as the plan writes it."""
    [content] = [r["inputs"]["content"] for r in plan["resources"] if r["type"] == REPOSITORY_FILE
                 and r["name"].startswith(f"{tenant}-repositories-app-starter-") and r["inputs"]["filePath"] == ".gitlab-ci.yml"]
    return yaml.safe_load(content)


def app_jobs(plan: dict, tenant: str) -> dict[str, dict[str, Any]]:
    """The tenant's starter app pipeline's jobs, each with its `extends` applied."""
    pipeline = app_pipeline(plan, tenant)
    return {name: {**pipeline.get(job.get("extends", ""), {}), **job} for name, job in pipeline.items()
            if not name.startswith(".") and isinstance(job, dict) and ("script" in job or "trigger" in job)}


def test_what_a_protected_pipeline_pushes_and_signs_is_built_where_no_branchs_code_runs(plan: dict) -> None:
    """A developer's branch job runs any code on the tenant's runner for any ref, with the build
    container's unconfined seccomp and AppArmor, SETUID/SETGID and privilege escalation
    (gitlab_runner.BUILD_EXCEPTIONS): the kernel's whole surface. On main, `build` and `scan` ran on
    that same runner, on the same nodes, and `push` and `sign` then released their image.tar with
    the tenant's key: a branch job that escapes to its node rewrites the next main build (the
    buildah image's layers in the node's containerd, image.tar in the pod) and gets its own code
    signed, and run in prod. Every job of a protected push runs on the protected runner; branches
    still build and scan, on theirs."""
    runners = {r["inputs"]["description"]: r["inputs"] for r in plan["resources"] if r["type"] == RUNNER}
    tenant = a_tenant(plan)
    jobs = app_jobs(plan, tenant)
    branch_runner, protected_runner = runners[f"group {tenant}"], next(
        r for d, r in runners.items() if d.startswith(f"group {tenant} (protected refs"))
    for pipeline, truth in PIPELINES.items():
        ran = {name: job for name, job in jobs.items() if runs(job, truth) and "trigger" not in job}
        protected = truth[PROTECTED_PUSH_RULE]
        stages = {job["stage"] for job in ran.values()}
        assert {"build", "scan"} <= stages or pipeline == "merge request", (pipeline, sorted(ran))
        for name, job in ran.items():
            taken_by = [kind for kind, runner in (("branch", branch_runner), ("protected", protected_runner))
                        if _takes(runner, job, protected)]
            assert taken_by == (["protected"] if protected else ["branch"]), f"{pipeline}: {name} runs on {taken_by}"


# --- the scan gates: a vulnerability no source has rated yet -----------------------------------------

# Harbor v2.15.1 src/pkg/scan/vuln/severity.go `Code()`: None and Unknown are both 0, so the pull
# gate (`code >= the project's severity's code`) never refuses an image for an unrated vulnerability.
SEVERITIES = [s.value for s in Severity]


def unrated(count: int = 1) -> dict[str, Any]:
    """Harbor's scan overview of an image whose only vulnerabilities Trivy rated `Unknown`."""
    return {"application/vnd.security.vulnerability.report; version=1.1": {
        "scan_status": "Success", "severity": "Unknown", "summary": {"total": count, "summary": {"Unknown": count}}}}


def test_an_image_whose_only_vulnerability_nobody_has_rated_yet_passes_no_gate(plan: dict) -> None:
    """Whoever controls an upstream image ships it with a package whose CVE was published this
    morning: no source has rated it yet (NVD's backlog), so Trivy reports it `Unknown`. Harbor's pull
    gate ranks Unknown with None and never refuses it (at any configured severity); the platform's
    own gates (promote-image's verdict, the tenants' trivy step) passed it too. Those two fail
    closed on it wherever a gate is set; "none" still gates nothing."""
    script = load_script()
    for gate in SEVERITIES:
        verdict = script.scan_verdict(unrated(), gate)
        assert verdict.state == ("pass" if gate == "none" else "refuse"), (gate, verdict)
    gate = app_pipeline(plan, a_tenant(plan))["variables"]["TRIVY_SEVERITY"].split(",")
    assert "UNKNOWN" in gate, f"the starter scan fails only on {gate}"
    assert trivy_severities(Severity.NONE) == ""


# --- promotion: a platform image dressed as a build attestation ----------------------------------


def _index_layout(directory: Path, children: list[dict[str, Any]]) -> Path:
    """An OCI layout whose index lists `children` (descriptors; their manifests need not be stored)."""
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}).encode()
    digest = hashlib.sha256(index).hexdigest()
    (directory / "blobs" / "sha256").mkdir(parents=True)
    (directory / "blobs" / "sha256" / digest).write_bytes(index)
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}", "size": len(index)}]}))
    return directory


def containerd_may_run(child: dict[str, Any], os: str = "linux") -> bool:
    """containerd's pick from an index (core/images/image.go Manifest): every child whose platform
    matches the node's, or that has none; annotations play no part."""
    platform = child.get("platform")
    return platform is None or platform.get("os") == os


def test_a_platform_image_dressed_as_a_build_attestation_is_scanned_before_promotion(tmp_path: Path) -> None:
    """Whoever controls an upstream image publishes an index whose linux/amd64 image carries
    BuildKit's attestation annotation (`vnd.docker.reference.type: attestation-manifest`) beside a
    clean linux/arm64 one. promote-image waited for Harbor's verdict on the images it scans only,
    signed the index with the promotion key, and an amd64 node's containerd, which picks by platform
    alone, ran the image nobody judged (Harbor's pull gate would still refuse a CVE it finds, but no
    promotion gate decided). Every child a node may run is scanned; a genuine attestation (platform
    unknown/unknown) is not."""
    def child(name: str, platform: dict[str, str] | None, **annotations: str) -> dict[str, Any]:
        return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
                "digest": "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                **({"platform": platform} if platform else {}), **({"annotations": annotations} if annotations else {})}
    attestation = {"vnd.docker.reference.type": "attestation-manifest"}
    children = [
        child("disguised", {"os": "linux", "architecture": "amd64"}, **attestation),
        child("clean", {"os": "linux", "architecture": "arm64"}),
        child("no platform", None, **attestation),
        child("genuine attestation", {"os": "unknown", "architecture": "unknown"}, **attestation),
    ]
    _, manifests = load_script().layout_manifests(_index_layout(tmp_path, children))
    scanned = {m.digest for m in manifests if m.scan}
    unjudged = [c["digest"] for c in children if containerd_may_run(c) and c["digest"] not in scanned]
    assert not unjudged, f"children a node may run that promotion never waits a scan for: {unjudged}"
    assert children[3]["digest"] not in scanned  # nothing to scan in a genuine attestation


# --- Harbor's severity gate: whose CVE exceptions it honours, and until when ---------------------------

PROJECT = "harbor:index/project:Project"
SYSTEM_ALLOWLIST = "harbor:index/configSecurity:ConfigSecurity"
ACCEPTED_CVE = "CVE-2024-3094"


def harbor_honours(plan: dict, project: str, cve: str, at: datetime) -> bool:
    """Whether Harbor's pull gate skips `cve` in `project` at `at`, from what the plan sets, as the
    provider and Harbor read it. pulumiverse-harbor (terraform-provider-harbor client/project.go:47-54)
    sends a project's non-empty list with reuse_sys_cve_allowlist "false" and an empty one as "true",
    and has no expiry for a project's list; Harbor v2.15.1 judges a project that reuses with the system
    list (src/controller/project/controller.go:307-321), and ignores an allowlist from its expires_at on,
    never when it has none (src/pkg/allowlist/models/cve_allowlist.go:52-57, src/controller/scan/
    base_controller.go:829)."""
    [own] = [r["inputs"].get("cveAllowlists") or [] for r in plan["resources"] if r["type"] == PROJECT and r["inputs"]["name"] == project]
    if own:
        return cve in own  # no expiry: honoured until a `pulumi up` takes it out
    [system] = [r["inputs"] for r in plan["resources"] if r["type"] == SYSTEM_ALLOWLIST]
    expires_at = system.get("expiresAt")
    return cve in system["cveAllowlists"] and (expires_at is None or at.timestamp() < expires_at)


def test_every_project_that_takes_harbors_system_allowlist_takes_the_programs(plan: dict) -> None:
    """A project with no CVE list of its own (`approved`, the proxy caches, every tenant while the
    config accepts no CVE) is judged with Harbor's system allowlist (harbor_honours). Unless the
    program declares it, that list is whatever a Harbor admin once typed in the UI, with no expiry,
    applied to every tenant's prod pulls and shown by no preview or drift check."""
    reusing = [r["inputs"]["name"] for r in plan["resources"] if r["type"] == PROJECT and not r["inputs"].get("cveAllowlists")]
    assert reusing, "no project takes Harbor's system allowlist"
    declared = [r["inputs"] for r in plan["resources"] if r["type"] == SYSTEM_ALLOWLIST]
    assert len(declared) == 1, f"Harbor's system CVE allowlist is not the program's, yet {', '.join(reusing)} are judged by it"
    assert declared[0]["cveAllowlists"] == [] and declared[0].get("expiresAt") is None  # the stacks accept no CVE


def test_a_cve_exception_ends_in_harbor_on_its_expiry_day_without_a_pulumi_up(tmp_path: Path) -> None:
    """A tenant's owner gets CVE-2024-3094 accepted until a date to ship a release. From the day
    after, Harbor must refuse to pull that release again (a restart, a rollout, a new node), whether
    or not anyone has run `pulumi up` since: prod's deploy is a person's manual job (.gitlab-ci.yml),
    and the drift schedule only reports the change."""
    expires = date.today() + timedelta(days=30)
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    supply_chain = document["config"].setdefault("platform:supplyChain", {})
    supply_chain["cveAllowlist"] = [{"id": ACCEPTED_CVE, "expires": expires.isoformat()}]
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    plan = render(tmp_path / "Pulumi.dev.yaml", "dev").plan
    last_second = datetime.combine(expires, datetime.max.time(), tzinfo=timezone.utc).replace(microsecond=0)
    tenants = [r["inputs"]["name"] for r in plan["resources"] if r["type"] == PROJECT and "registryId" not in r["inputs"]
               and r["inputs"]["name"] != "approved"]
    assert len(tenants) >= 2
    for project in tenants:
        assert harbor_honours(plan, project, ACCEPTED_CVE, last_second), f"{project}: the exception ends before its day is out"
        after = last_second + timedelta(seconds=1)
        assert not harbor_honours(plan, project, ACCEPTED_CVE, after), (
            f"{project}: Harbor still honours {ACCEPTED_CVE} at {after.isoformat()}, after its exception expired on {expires}")


def test_severity_none_leaves_harbors_pull_gate_off(tmp_path: Path) -> None:
    """'none' gates nothing (README, Scanning gate; allowed on dev only). pulumiverse-harbor turns the gate on
    for any non-empty deployment_security (terraform-provider-harbor client/project.go ProjectBody: prevent_vul
    "true" with that severity), so sending "none" made Harbor refuse every image with a finding, and every image
    not yet scanned, on a stack that asked for no gate: the platform's own images in `approved` included."""
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    document["config"].setdefault("platform:supplyChain", {})["severity"] = "none"
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    plan = render(tmp_path / "Pulumi.dev.yaml", "dev").plan
    gated = {r["inputs"]["name"]: r["inputs"].get("deploymentSecurity") for r in plan["resources"] if r["type"] == PROJECT}
    assert len(gated) >= 5 and {name: gate for name, gate in gated.items() if gate} == {}


# --- `approved`: a promoted tag names the bytes that were scanned and signed, for good -------------

APPROVED_REFERENCE = re.compile(r"harbor\.[a-z0-9.-]+/approved/([a-z0-9][a-z0-9._/-]*[a-z0-9]):([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")


def doublestar(pattern: str, name: str) -> bool:
    """bmatcuk/doublestar v1.3.4's Match (Harbor v2.15.1's go.mod; src/lib/selector/selectors/doublestar/
    selector.go:164-168), for the syntax the program uses: a whole `**` component matches any number of
    components (doublestar.go:292-305), `*` any run of non-`/` characters, `?` one, `{a,b}` either
    (doublestar.go:195-215, 621-650); any other syntax fails the test rather than be guessed."""
    if any(c in pattern for c in "[\\") or re.search(r"\{[^}]*[/{]", pattern):
        raise AssertionError(f"doublestar syntax not ported here: {pattern!r}")

    def component(p: str) -> str:
        out, i = "", 0
        while i < len(p):
            if p[i] == "{":
                end = p.index("}", i)
                out += "(?:" + "|".join(component(alt) for alt in p[i + 1:end].split(",")) + ")"
                i = end + 1
            else:
                out += {"*": "[^/]*", "?": "[^/]"}.get(p[i], re.escape(p[i]))
                i += 1
        return out

    def components(parts: list[str], names: list[str]) -> bool:
        if not parts:
            return not names
        if parts[0] == "**":  # the last: whatever remains; else tried against each remainder
            return len(parts) == 1 or any(components(parts[1:], names[i:]) for i in range(len(names)))
        return bool(names) and re.fullmatch(component(parts[0]), names[0]) is not None and components(parts[1:], names[1:])

    return components(pattern.split("/"), name.split("/"))


def immutable(rules: list[dict[str, Any]], repository: str, tag: str) -> bool:
    """Whether Harbor refuses to point `repository:tag` (within its project) at other bytes. pulumiverse-harbor
    sends one repository and one tag selector per rule, `*Excluding` over `*Matching` (terraform-provider-harbor
    client/immutable_tag_rule.go:24-53); Harbor makes a tag immutable when any enabled rule selects both
    (src/pkg/immutable/match/rule/match.go:40-86, by the repository without its project:
    src/controller/tag/controller.go:227-232), and then refuses a push to it (src/server/middleware/
    immutable/pushmf.go:69-75, on every manifest PUT: src/server/registry/route.go:79) and any move
    of it (src/controller/tag/controller.go:97-101), whoever asks: robots, admins, replication."""
    def selects(rule: dict[str, Any], kind: str, value: str) -> bool:
        if rule.get(f"{kind}Excluding"):
            return not doublestar(rule[f"{kind}Excluding"], value)
        assert rule.get(f"{kind}Matching"), f"a rule without a {kind} pattern: {rule}"
        return doublestar(rule[f"{kind}Matching"], value)
    return any(not r.get("disabled") and selects(r, "repo", repository) and selects(r, "tag", tag) for r in rules)


def project_rules(plan: dict, project: str) -> list[dict[str, Any]]:
    """The immutability rules of one Harbor project (each depends on the project whose id it takes)."""
    [urn] = [r["urn"] for r in plan["resources"] if r["type"] == PROJECT and r["inputs"]["name"] == project]
    return [r["inputs"] for r in plan["resources"] if r["type"] == IMMUTABLE_RULE and urn in r["dependsOn"]]


def approved_tags(result: Any) -> set[tuple[str, str]]:
    """Every `<harbor>/approved/<repository>:<tag>` in a stack's plan and its charts' renders: what the
    platform's pods, runners, virtual clusters, pipelines and scanners take from `approved` by tag."""
    texts = [json.dumps(result.plan), *(text for texts in result.manifests.values() for text in texts)]
    return {match for text in texts for match in APPROVED_REFERENCE.findall(text)}


def test_a_promoted_tag_never_moves_to_other_bytes(charted: dict[str, Any]) -> None:
    """Upstream re-points `quay.io/buildah/stable:v1.38.1` (a compromised release account, or a registry
    that rebuilds tags), and the platform team re-runs promote-image with the same IMAGE, as the README
    says to re-sign. The new bytes have no CVE Harbor knows, so the scan gate passes, and the promotion key
    signs them: the verifier admits them. Or a Harbor admin pushes over the tag by hand. Every runner's job
    (the release jobs that hold the tenants' push robots and Vault tokens), the runner itself and its helper,
    Velero's restore helper and the virtual clusters take these by tag, most in platform namespaces the
    verifier never checks: they run what nobody promoted on their next pull. A tag in `approved` stays on
    the bytes it was promoted with: Harbor refuses any push that would move it."""
    script = load_script()
    for stack, result in charted.items():
        rules = project_rules(result.plan, "approved")
        databases = {tuple(d.rsplit(":", 1)) for d in TRIVY_DATABASES}
        taken = approved_tags(result) - databases
        tools = {(script.parse_image(i).target.removeprefix("approved/"), script.parse_image(i).tag)
                 for i in (BUILDAH_IMAGE, TRIVY_IMAGE, GIT_IMAGE, "docker.io/library/nginx:1.27.3")}
        assert {t for t in tools if "nginx" not in t[0]} <= taken, f"{stack}: the starter tool images are not found in the plan"
        movable = sorted(f"approved/{repository}:{tag}" for repository, tag in taken | tools if not immutable(rules, repository, tag))
        assert not movable, f"{stack}: Harbor lets a push move these tags to other bytes: {', '.join(movable)}"


def test_what_must_move_in_approved_still_moves(plan: dict) -> None:
    """The other half: Trivy's databases are republished under their schema tag (the daily schedule moves
    it), and a re-signature replaces `sha256-<digest>.sig` (a key rotation's `re-sign what runs longer`).
    Were these immutable, the scanners would judge with a database frozen on its first day."""
    rules = project_rules(plan, "approved")
    assert rules, "the approved project has no immutability rule"
    for database in TRIVY_DATABASES:
        repository, tag = database.rsplit(":", 1)
        assert not immutable(rules, repository, tag), f"{database} can never be refreshed"
    for repository in ("quay.io/buildah/stable", "vcluster/loft-sh/vcluster-oss"):
        assert not immutable(rules, repository, f"sha256-{'a' * 64}.sig"), f"{repository}: no re-signature possible"


def test_no_image_is_promoted_under_a_tag_left_movable_for_signatures(plan: dict) -> None:
    """The one tag shape `approved` leaves movable is cosign's signature tag. Upstream publishes its own
    cosign signature of an image as `<repo>:sha256-<digest>.sig` (cosign's images do), and the platform team
    promotes that name: the promoted artifact sits under a tag any later promotion may move, and it replaces
    the platform's signature of `<digest>` in that repository, so the verifier refuses the image it signed.
    promote-image refuses such a tag as an image's; Harbor's rule and the script judge the same tags."""
    script = load_script()
    [rule] = project_rules(plan, "approved")
    for tag in (f"sha256-{'a' * 64}.sig", "sha256-x.sig", "v1.38.1", "sha256-a.att", "1.0.sig"):
        movable = not immutable([rule], "ghcr.io/sigstore/cosign/cosign", tag)
        try:
            script.parse_image(f"ghcr.io/sigstore/cosign/cosign:{tag}")
            promoted = True
        except script.PromotionError:
            promoted = False
        assert not (movable and promoted), f"promote-image takes {tag!r}, a tag Harbor leaves movable in approved"
