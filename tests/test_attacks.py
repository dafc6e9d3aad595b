"""An attacker's review of credentials and the supply chain: each test is one attempt, made
against what the program really creates (the plans, .ci/promote-image.py, GitLab's rules as
the plan sets them), and must fail for the attacker."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from typing import Any

import pytest

from components.gitlab_runner import JOB_LABEL
from components.tenant_gitlab import ACCESS_LEVELS
from components.tenant_supply_chain import APPROVED_PROJECT, BUILDAH_IMAGE, PUBLIC_REGISTRIES, RELEASE_TAG_RULE
from components.versions import TRIVY_DATABASES
from policy.labels import TENANT_NAMESPACE_LABEL
from tests.test_gatekeeper_plan import selector_matches
from tests.test_image_promotion import load_script


# --- promotion: an image under another registry's name in `approved` ----------------------------

@pytest.mark.parametrize("host", sorted(PUBLIC_REGISTRIES))
def test_a_promotion_cannot_land_under_another_registrys_name(host: str) -> None:
    """Whoever runs promote-image copies `docker.io/<name>` (Docker Hub names are first come, first
    served) with APPROVED_PREFIX set to another registry's host: the copy, scanned and signed with
    the promotion key, would sit at `approved/<host>/<name>`, where pods and the starter pipeline
    pull that registry's image (buildah from quay.io). A prefix is a name, never a host."""
    script = load_script()
    repository = BUILDAH_IMAGE.split("/", 1)[1].split(":")[0]  # buildah/stable
    with pytest.raises(script.PromotionError, match="APPROVED_PREFIX"):
        script.parse_image(f"docker.io/{repository}:v1.38.1", host)
    assert script.parse_image(f"docker.io/{repository}:v1.38.1", "vcluster").target == f"{APPROVED_PROJECT}/vcluster/{repository}"


# --- releases: who can mint the tag that CI pushes and signs ----------------------------------------

LEVELS = {"no one": 1000, "developer": 30, "maintainer": 40, "owner": 50}  # GitLab's access levels
RELEASE = "v1.2.3"  # a tag the starter pipeline releases (RELEASE_TAG_RULE)


def _tag_protections(plan: dict, tenant: str) -> list[dict]:
    """The protected-tag rules GitLab applies to the tenant's app project (matched by project id,
    as GitLab does: the app's `main` protection carries the same id)."""
    [main] = [r for r in plan["resources"] if r["type"] == "gitlab:index/branchProtection:BranchProtection"
              and r["name"] == f"{tenant}-repositories-app-main"]
    return [r["inputs"] for r in plan["resources"] if r["type"] == "gitlab:index/tagProtection:TagProtection"
            and r["inputs"]["project"] == main["inputs"]["project"]]


def tenants_of(plan: dict) -> list[str]:
    return [r["name"].removesuffix("-repositories-app") for r in plan["resources"]
            if r["type"] == "gitlab:index/project:Project" and r["name"].endswith("-repositories-app")]


def test_a_developer_cannot_mint_a_release_tag_and_an_owners_release_is_protected(plan: dict) -> None:
    """A tenant developer (GitLab developer: pushes branches, never merges) tags an unreviewed commit
    `v1.2.3`. Unprotected, the tag is theirs to create (and to move or delete later); and an owner's
    release is no better off: Vault's CI role answers protected refs only, so the release pipeline
    neither pushes nor signs while its bump merge request names the release. A `v*` rule that only
    maintainers (owners) reach makes the release protected and the owners' alone."""
    assert re.search(RELEASE_TAG_RULE.split("/")[1], RELEASE)  # the starter pipeline releases it
    assert tenants_of(plan)
    for tenant in tenants_of(plan):
        rules = [r for r in _tag_protections(plan, tenant) if fnmatch.fnmatchcase(RELEASE, r["tag"])]
        assert rules, f"{tenant}/app: release tag {RELEASE} is unprotected"
        for rule in rules:
            required = LEVELS[rule.get("createAccessLevel") or "maintainer"]
            assert LEVELS[ACCESS_LEVELS["developers"]] < required <= LEVELS[ACCESS_LEVELS["owners"]], rule
            assert not rule.get("allowedToCreates"), f"{tenant}/app: {rule['tag']} lets named users or groups create it"


# --- Harbor: a tenant's own credentials and gates in its project -------------------------------------

# Harbor 2.15's project roles (goharbor/harbor src/common/rbac/project/rbac_role.go): only
# `projectadmin` may update the project itself (its metadata: public, prevent_vul and severity,
# cosign content trust, scan on push, and its CVE allowlist) and create robot accounts, with any
# duration, -1 ("never") included (src/server/v2.0/handler/robot.go).
HARBOR_PROJECT_ADMIN = "projectadmin"


def test_no_tenant_member_can_mint_robots_or_switch_off_its_projects_gates(plan: dict) -> None:
    """A tenant owner, Harbor project admin of `<tenant>`, creates a project robot that never
    expires (a long-lived credential between systems the inventory never lists and no rotation
    ends), or turns off the project's pull gate, cosign content trust or scan on push, or makes the
    project public: the platform's severity gate holds until the next `pulumi up`, if drift is noticed.
    Project settings, members and robots are the platform's: no member group is project admin."""
    members = [r["inputs"] for r in plan["resources"] if r["type"] == "harbor:index/projectMemberGroup:ProjectMemberGroup"]
    assert {m["groupName"] for m in members} >= {f"{t}-owners" for t in tenants_of(plan)}
    admins = sorted(m["groupName"] for m in members if m["role"] == HARBOR_PROJECT_ADMIN)
    assert not admins, f"Harbor project admins (robots of any lifetime, the project's gates): {admins}"


# --- the node's instance metadata: node credentials for whoever runs code in a pod ---------------------

IMDS = ipaddress.ip_address("169.254.169.254")  # EC2's instance metadata: the node role's credentials
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"


def _egress_allowed(plan: dict, cluster: str, namespace: str, labels: dict[str, str] | None, ip: Any, port: int) -> bool:
    """Kubernetes' NetworkPolicy rule for traffic from a pod to an address outside the cluster: free
    unless an Egress policy selects the pod; then some rule of one of them must admit it (an empty
    `to` admits every address; of the peers only an ipBlock, less its excepts, can hold one).
    `labels` None: the attacker labels the pod, so any policy of the namespace may select it, and
    only one that selects every pod (`podSelector: {}`) confines it."""
    policies = [r["inputs"]["spec"] for r in plan["resources"] if r["type"] == NETWORK_POLICY and r.get("cluster") == cluster
                and r["inputs"]["metadata"].get("namespace") == namespace
                and "Egress" in r["inputs"]["spec"].get("policyTypes", ["Ingress"])]
    if labels is None:
        confined = any(not (p["podSelector"].get("matchLabels") or p["podSelector"].get("matchExpressions")) for p in policies)
    else:
        policies = [p for p in policies if selector_matches(p["podSelector"], labels)]
        confined = bool(policies)

    def admits(rule: dict) -> bool:
        ports = rule.get("ports") or [{"port": port}]
        blocks = [peer["ipBlock"] for peer in rule.get("to", [{"ipBlock": {"cidr": "0.0.0.0/0"}}]) if "ipBlock" in peer]
        return any(p.get("port", port) == port and p.get("protocol", "TCP") == "TCP" for p in ports) and any(
            ip in ipaddress.ip_network(b["cidr"]) and not any(ip in ipaddress.ip_network(e) for e in b.get("except", []))
            for b in blocks)
    return not confined or any(admits(rule) for spec in policies for rule in spec.get("egress", []))


def _attackers_pods(plan: dict) -> list[tuple[str, str, dict[str, str] | None]]:
    """(cluster, namespace, pod labels) of every pod whose code a tenant or a merge request writes:
    tenant and sandbox workloads, tenants' CI jobs and the platform repository's (any branch's) jobs."""
    pods: list[tuple[str, str, dict[str, str] | None]] = [
        (r["cluster"], r["inputs"]["metadata"]["name"], None) for r in plan["resources"]
            if r["type"] == "kubernetes:core/v1:Namespace" and (r["inputs"]["metadata"].get("labels") or {}).get(TENANT_NAMESPACE_LABEL) == "true"]
    for runner in (r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "gitlab-runner"):
        owner = re.search(r'"platform.io/runner-job" = "([^"]+)"', runner["inputs"]["values"]["runners"]["config"])
        assert owner, runner["name"]
        pods.append((runner["cluster"], runner["inputs"]["namespace"], {JOB_LABEL: owner[1]}))
    return pods


def test_no_attackers_pod_reaches_the_nodes_instance_metadata(plan: dict) -> None:
    """Code a tenant deploys, a tenant's CI job, or any branch's merge-request job of the platform
    repository (the platform runner takes unprotected jobs) asks 169.254.169.254 for the node role's
    credentials (on EKS: ENI management, ECR reads). Every such pod must be refused by a NetworkPolicy,
    and on EKS the VPC CNI must enforce NetworkPolicies at all (its network policy agent is off unless
    the add-on's `enableNetworkPolicy` is on)."""
    pods = _attackers_pods(plan)
    assert {JOB_LABEL} <= {k for _, _, labels in pods for k in labels or {}} and len(pods) > len(tenants_of(plan))
    open_ = [(c, ns, labels) for c, ns, labels in pods if _egress_allowed(plan, c, ns, labels, IMDS, 80)]
    assert not open_, f"pods that reach the instance metadata endpoint: {open_}"
    for addon in (r for r in plan["resources"] if r["type"] == "aws:eks/addon:Addon" and r["inputs"]["addonName"] == "vpc-cni"):
        settings = json.loads(addon["inputs"].get("configurationValues") or "{}")
        assert settings.get("enableNetworkPolicy") == "true", f"{addon['name']}: NetworkPolicies are not enforced"


def test_on_eks_no_pod_of_any_namespace_reaches_the_instance_metadata(renders: dict) -> None:
    """Platform pods have no NetworkPolicy keeping them from 169.254.169.254: on EKS the nodes
    answer IMDSv2 only (a PUT for a session token first) and one hop away, which a pod's packet,
    one hop further, never makes; host-network pods (the CNI, kube-proxy) are the node itself."""
    plan = renders["prod"].plan
    groups = [r for r in plan["resources"] if r["type"] == "aws:eks/nodeGroup:NodeGroup"]
    templates = {r["urn"]: r for r in plan["resources"] if r["type"] == "aws:ec2/launchTemplate:LaunchTemplate"}
    assert len(groups) >= 3
    for group in groups:
        [template] = [templates[urn] for urn in group["dependsOn"] if urn in templates]
        assert template["inputs"]["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}, group["name"]
        assert group["inputs"]["launchTemplate"]["version"] == "1"  # the template's latest version, never $Latest
        assert "diskSize" not in group["inputs"]  # EKS refuses it beside a launch template: the root volume is the template's
        [root] = template["inputs"]["blockDeviceMappings"]
        assert root["deviceName"] == "/dev/xvda" and root["ebs"]["encrypted"] == "true" and root["ebs"]["volumeType"] == "gp3"


# --- promotion: the unscanned path is Trivy's databases only ---------------------------------------

def test_the_unscanned_database_path_takes_trivys_databases_only(capsys: pytest.CaptureFixture) -> None:
    """Whoever plays the manual promote-image job sets DATABASE (any variable can be set then) to an
    artifact of their own typed as a Trivy database: it would land in `approved`, unscanned and
    unsigned, under any name. Only the databases the platform names (TRIVY_DATABASES) go that way."""
    script = load_script()
    for text in ("ghcr.io/attacker/trivy-db:2", "docker.io/aquasecurity/trivy-db:2", "ghcr.io/aquasecurity/trivy-db-x:2"):
        assert script.main({"IMAGE": "", "DATABASE": text}) == 1  # refused before any login or copy
        assert "is not a Trivy database" in capsys.readouterr().err
    assert {script.parse_database(text).repository for text in TRIVY_DATABASES} == {"aquasecurity/trivy-db", "aquasecurity/trivy-java-db"}
