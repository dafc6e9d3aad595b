"""An attacker's review of credentials and the supply chain: each test is one attempt, made
against what the program really creates (the plans, .ci/promote-image.py, GitLab's rules as
the plan sets them), and must fail for the attacker."""

from __future__ import annotations

import fnmatch
import re

import pytest

from components.tenant_gitlab import ACCESS_LEVELS
from components.tenant_supply_chain import APPROVED_PROJECT, BUILDAH_IMAGE, PUBLIC_REGISTRIES, RELEASE_TAG_RULE
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
