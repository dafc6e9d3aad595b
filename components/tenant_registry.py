"""A tenant's Harbor project: quota, scanning, members by role and two expiring robots.

The project `<tenant>` is private, scans every image on push and has a storage quota.
Members are the tenant's OIDC groups (as OpenUnison names them in tokens), every role a guest:
people pull and read scans; only the CI's push robot writes (`PROJECT_ROLES`).

Two robot accounts, the one static credential Kubernetes forces on us:
* `robot$<tenant>+push` (push and pull): CI jobs read it from Vault at `<tenant>/harbor-push`;
* `robot$<tenant>+pull` (pull only): External Secrets syncs it from Vault
  (`components.tenancy.harbor_pull_path`) into each tenant namespace as the image-pull secret.
Supply-chain policy (`TenantPlatform.supply_chain`, stack config `platform:supplyChain`):
* pulls of images with a vulnerability at or above `severity` are refused (`deployment_security`),
  except for the platform's accepted CVEs: the project has no list of its own, so Harbor judges it
  with its system allowlist, which the program keeps with an expiry Harbor enforces itself
  (components/tenant_supply_chain.CveExceptions);
* release tags `v*.*.*` are immutable (never re-pushed, never removed by retention);
* retention keeps the last `keepLast` pushed artifacts of each repository and everything pulled
  in the last 30 days (a pull is our proxy for "deployed"); the rest is removed daily;
* cosign: Harbor serves only images signed with cosign (`enable_content_trust_cosign`). One
  project serves dev and prod; the tenant's CI signs every image right after pushing it
  (its Vault transit key), so enforcing it for both costs nothing and keeps one promotion path.

Each expires after 30 days and is re-created past half its life, its new secret written to
Vault in the same run (components.harbor_robots.expiring_robot, shared with the platform's promoter).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import pulumi
import pulumi_vault as vault
import pulumiverse_harbor as harbor

from components import common
from components.harbor_robots import expiring_robot, project_permission, robot_credential
from components.tenancy import TenantPlatform, harbor_pull_path, tenant_group

# Tenant role -> Harbor project role: guest (pull, read) for all. The project is what the prod verifier
# trusts under the tenant's key, so only the push robot of protected pipelines writes to it: a
# developer (Harbor `developer`) could squat a release tag before CI pushes it or rewrite and run the
# retention policy, a `maintainer` could also delete the immutability rule and move a release tag
# prod runs to another signed build, and `projectadmin` creates robots of any lifetime and changes
# the project's gates (Harbor v2.15.1 src/common/rbac/project/rbac_role.go; tests/test_supply_attacks.py).
PROJECT_ROLES = {"owners": "guest", "ops": "guest", "developers": "guest"}

# Semantic-version release tags, in Harbor's doublestar syntax: immutable once pushed.
RELEASE_TAGS = "v*.*.*"
RETENTION_SCHEDULE = "Daily"

# Robot short name -> what it may do on the project's repositories.
ROBOT_ACTIONS = {"push": ("push", "pull"), "pull": ("pull",)}



def storage_gib(quantity: str) -> int:
    """A Kubernetes quantity as whole GiB, rounded up: the unit of Harbor's `storage_quota`
    (the provider multiplies it by 2^30). "100Gi" -> 100, "100G" -> 94, "1Ti" -> 1024."""
    size = common.quantity(quantity)
    if size is None:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    return max(1, math.ceil(size / 2**30))


def harbor_push_path(tenant: str) -> str:
    """Where CI finds the push robot's credentials (under the `tenants` KV mount)."""
    return f"{tenant}/harbor-push"


@dataclass(frozen=True)
class TenantRegistryArgs:
    tenant: str
    storage_gb: int  # GiB, see storage_gib()
    platform: TenantPlatform  # needs .harbor and .vault
    protect: bool = False  # the project holds the tenant's images: protect it on real stacks

    def group(self, role: str) -> str:
        """The role's group in people's tokens (OpenUnison's local groups)."""
        return tenant_group(self.tenant, role)


class TenantRegistry(pulumi.ComponentResource):
    project: harbor.Project
    immutable_releases: harbor.ImmutableTagRule
    retention: harbor.RetentionPolicy
    robots: dict[str, harbor.RobotAccount]  # "push", "pull"
    secrets: dict[str, vault.kv.SecretV2]  # "push", "pull": their credentials in Vault
    pull_secret_path: str
    push_secret_path: str

    def __init__(self, name: str, args: TenantRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:TenantRegistry", name, None, opts)
        platform = args.platform
        if platform.harbor is None or platform.vault is None:
            raise ValueError(f"tenant {args.tenant}: the registry needs Harbor and Vault on the platform")
        if args.storage_gb < 1:
            raise ValueError(f"tenant {args.tenant}: storage quota {args.storage_gb} GiB must be at least 1")
        tenant = args.tenant
        on_harbor = pulumi.ResourceOptions(parent=self, provider=platform.harbor.provider)
        policy = platform.supply_chain

        self.project = harbor.Project(
            f"{name}-project",
            name=tenant,
            public=False,
            storage_quota=args.storage_gb,
            vulnerability_scanning=True,  # scan on push
            deployment_security=policy.severity.harbor_gate,
            # None of its own: pulumiverse-harbor then sets reuse_sys_cve_allowlist (terraform-provider-harbor
            # client/project.go:47-54), so Harbor judges pulls with its system list (CveExceptions), whose expiry
            # it enforces; a project's own list has no expiry the provider can set.
            cve_allowlists=[],
            enable_content_trust_cosign=True,  # only cosign-signed images are served
            force_destroy=False,  # Harbor refuses to delete a project that still holds images
            # Offboarding leaves the project and its images in Harbor (export or delete them by hand).
            opts=pulumi.ResourceOptions.merge(on_harbor, pulumi.ResourceOptions(protect=args.protect, retain_on_delete=True)),
        )
        self.immutable_releases = harbor.ImmutableTagRule(
            f"{name}-immutable-releases",
            project_id=self.project.id,
            repo_matching="**",
            tag_matching=RELEASE_TAGS,
            opts=on_harbor,
        )
        self.retention = harbor.RetentionPolicy(
            f"{name}-retention",
            scope=self.project.id,
            schedule=RETENTION_SCHEDULE,
            # Harbor keeps an artifact that any rule retains.
            rules=[
                harbor.RetentionPolicyRuleArgs(
                    repo_matching="**", tag_matching="**", most_recently_pushed=policy.keep_last
                ),
                harbor.RetentionPolicyRuleArgs(
                    repo_matching="**", tag_matching="**", n_days_since_last_pull=policy.pulled_within_days
                ),
            ],
            opts=on_harbor,
        )
        self._members(name, args, on_harbor)

        self.pull_secret_path = harbor_pull_path(tenant)
        self.push_secret_path = harbor_push_path(tenant)
        paths = {"push": self.push_secret_path, "pull": self.pull_secret_path}
        self.robots, self.secrets = {}, {}
        for robot, actions in ROBOT_ACTIONS.items():
            self._robot(name, args, robot, actions, paths[robot])

        self.register_outputs(
            {"project": self.project.name, "pullSecretPath": self.pull_secret_path, "pushSecretPath": self.push_secret_path}
        )

    def _members(self, name: str, args: TenantRegistryArgs, on_harbor: pulumi.ResourceOptions) -> None:
        """The tenant's role groups at their project roles, and the platform's readers as guests."""
        assert args.platform.harbor is not None
        for role, project_role in PROJECT_ROLES.items():
            harbor.ProjectMemberGroup(
                f"{name}-{role}",
                project_id=self.project.id,
                group_name=args.group(role),
                role=project_role,
                type="oidc",
                opts=on_harbor,
            )

        for group in args.platform.harbor.reader_groups:
            # Named by a hash: group names may be LDAP DNs, and reordering must not replace them.
            harbor.ProjectMemberGroup(
                f"{name}-reader-{hashlib.sha256(group.encode()).hexdigest()[:10]}",
                project_id=self.project.id,
                group_name=group,
                role="guest",  # read and pull, nothing else
                type="oidc",
                opts=on_harbor,
            )

    def _robot(self, name: str, args: TenantRegistryArgs, robot: str, actions: tuple[str, ...], path: str) -> None:
        """One expiring project robot, its credentials written to Vault at `path`, and its inventory entry."""
        platform, tenant = args.platform, args.tenant
        assert platform.harbor is not None and platform.vault is not None
        host = platform.harbor.host
        account = expiring_robot(
            f"{name}-{robot}",
            robot,
            "project",
            f"{robot} for tenant {tenant}; platform-bootstrap",
            [project_permission(self.project.name, [(action, "repository") for action in actions])],
            parent=self,
            provider=platform.harbor.provider,
        )
        self.robots[robot] = account
        # Both robots' credentials have the keys the pull secret is built from (HARBOR_PULL_KEYS).
        credentials = {"registry": host, "username": account.full_name, "password": account.secret}
        self.secrets[robot] = platform.vault.write(f"{name}-{robot}", path, credentials, self)
        if platform.inventory is not None:
            platform.inventory.register(robot_credential(
                f"Harbor {robot} robot of tenant {tenant}",
                holder=f"Vault ({path}); " + ("the tenant's CI jobs" if robot == "push" else "the tenant's namespaces, through External Secrets"),
                scope=f"{', '.join(actions)} on Harbor project {tenant}",
                resource_name=f"{name}-{robot}",
            ))
