"""Promotion of public images out of quarantine: the promoter robot and who may use it.

Public images reach Harbor only through the proxy-cache projects `proxy-<registry>`
(components/tenant_supply_chain.PublicImageQuarantine); clusters and tenants' builds take
them from `approved`. The `promote-image` job of this repository's pipeline moves one there
(.ci/promote-image.py): it copies the image out of the cache with skopeo (Harbor caches and
scans it), refuses it at or above the configured severity, pushes the same manifests, by
digest, to `approved/<registry>/<repository>` and signs that digest with the platform's
promotion key.

What it needs, and nothing long-lived:
* the Harbor system robot `robot$promoter`: pull and artifact read (the scan results) on the
  proxy caches, push, pull and artifact read (which digest a tag names: a promoted tag never moves)
  on `approved`, nothing else. It expires after 30 days and is
  re-created past half its life (components.harbor_robots.expiring_robot, as tenants' robots are);
* its credentials in Vault, written the way tenants' robots are (`VaultTenancy.write`), at
  `PROMOTER_SECRET_PATH`, a path no tenant can be named after;
* a policy reading that one path, bound to a `jwt-gitlab` role for this repository's jobs on
  the default branch in the stack's own protected environment `promote/<stack>` only (the promote-image
  and promote-trivy-db jobs of that stack, started by its deployers: no other job on main, and no other
  stack's); tokens live five minutes (VaultFederation.bind_ci);
* the platform's promotion key `platform-cosign` in Vault transit (components/signing.py), which
  the same policy lets the job sign with: the image verifiers admit images of `approved` only
  with its signature (stacks/promotion.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_vault as vault
import pulumiverse_harbor as harbor

from components.harbor_robots import expiring_robot, project_permission, robot_credential
from components.inventory import CredentialInventory
from components.signing import PLATFORM_KEY, KeyRotation, SigningKey, sign_rules, signing_key, signing_key_credential
from components.tenancy import KV_MOUNT, TRANSIT_MOUNT, VaultTenancy
from components.tenant_supply_chain import APPROVED_PROJECT, proxy_project_name

ROBOT_NAME = "promoter"  # Harbor calls a system robot `robot$<name>`
# Under the `tenants` KV mount, but tenants are DNS labels: none can be called `_platform`,
# so no tenant policy (`tenants/data/<tenant>/*`) ever covers it.
PROMOTER_SECRET_PATH = "_platform/harbor-promoter"
VAULT_ROLE = "platform-promote-image"  # on the jwt-gitlab mount; .gitlab-ci.yml names it
VAULT_POLICY = "platform-promote-image"
DEFAULT_BRANCH = "main"  # the protected branch whose jobs may promote (ci_identity's deploy branch too)

SOURCE_ACCESSES = (("pull", "repository"), ("read", "artifact"))  # the image and its scan results
# ...and which digest a tag of `approved` already names (a promoted tag never moves). Robots get no public-project
# reads: only their own accesses (Harbor v2.15.1 src/common/security/robot/context.go:101-117; artifact read:
# src/server/v2.0/handler/artifact.go:127).
TARGET_ACCESSES = (("push", "repository"), ("pull", "repository"), ("read", "artifact"))


def promoter_data_path() -> str:
    """The KV v2 API path of the robot's credentials: what the policy allows and the job reads."""
    return f"{KV_MOUNT}/data/{PROMOTER_SECRET_PATH}"


def promote_policy() -> str:
    """Read the robot, sign with the platform's promotion key (and read its public key); nothing else."""
    return f'path "{promoter_data_path()}" {{ capabilities = ["read"] }}\n' + sign_rules(TRANSIT_MOUNT, PLATFORM_KEY)


@dataclass(frozen=True)
class ImagePromotionArgs:
    proxies: Mapping[str, harbor.Project]  # public registry host -> its proxy-cache project
    approved: harbor.Project
    registry_host: str  # harbor.<domain>
    vault: VaultTenancy  # where the credentials go; its federation binds the CI role
    pipeline_project: str  # this repository in the platform's GitLab (platform:pipeline.projectPath)
    environment: str  # the promote jobs' protected GitLab environment (StackEnvironments.promote)
    branch: str = DEFAULT_BRANCH
    inventory: CredentialInventory | None = None
    key_rotation: KeyRotation = KeyRotation()  # of the promotion key


class ImagePromotion(pulumi.ComponentResource):
    robot: harbor.RobotAccount
    secret: vault.kv.SecretV2
    policy: vault.Policy
    role: pulumi.CustomResource
    signing: SigningKey  # the platform's promotion key: images in `approved` are signed with it

    def __init__(self, name: str, provider: pulumi.ProviderResource, args: ImagePromotionArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:image_promotion:ImagePromotion", name, None, opts)
        if not args.proxies:
            raise ValueError("image promotion: no proxy-cache project to promote from (platform:supplyChain.publicRegistries)")
        # Project names as the projects' outputs: the robot waits for them (Harbor checks they exist).
        self.robot = expiring_robot(
            f"{name}-{ROBOT_NAME}",
            ROBOT_NAME,
            "system",
            f"promotes vetted public images into {APPROVED_PROJECT}; platform-bootstrap",
            [project_permission(project.name, SOURCE_ACCESSES) for project in args.proxies.values()]
            + [project_permission(args.approved.name, TARGET_ACCESSES)],
            parent=self,
            provider=provider,
        )
        credentials = {"registry": args.registry_host, "username": self.robot.full_name, "password": self.robot.secret}
        self.secret = args.vault.write(f"{name}-{ROBOT_NAME}", PROMOTER_SECRET_PATH, credentials, self)
        if args.vault.transit_mount is None:
            raise ValueError("image promotion: Vault has no transit mount for the promotion key")
        self.signing = signing_key(f"{name}-cosign", PLATFORM_KEY, TRANSIT_MOUNT, args.key_rotation, args.vault.provider,
                                   [args.vault.transit_mount], self)
        self.policy = vault.Policy(
            f"{name}-read",
            name=VAULT_POLICY,
            policy=promote_policy(),
            opts=pulumi.ResourceOptions(parent=self, provider=args.vault.provider, depends_on=[self.signing.key]),
        )
        self.role = args.vault.federation.bind_ci(VAULT_ROLE, [args.pipeline_project], [args.branch], [VAULT_POLICY], self,
                                                  environments=[args.environment], protected_environments=True)
        if args.inventory is not None:
            args.inventory.register(robot_credential(
                f"Harbor system robot {ROBOT_NAME}",
                holder=f"Vault ({KV_MOUNT}/{PROMOTER_SECRET_PATH}); the promote jobs of {args.pipeline_project} on {args.branch} in {args.environment}",
                scope=(
                    f"pull and read artifacts (scan results) on {', '.join(sorted(map(proxy_project_name, args.proxies)))}; "
                    f"push, pull and read artifacts on {APPROVED_PROJECT}"
                ),
                resource_name=f"{name}-{ROBOT_NAME}",
            ))
            args.inventory.register(signing_key_credential(
                PLATFORM_KEY, f"Vault; the promote-image job of {args.pipeline_project} on protected {args.branch} in {args.environment} signs with it",
                f"cosign signatures that admit images of the Harbor project {APPROVED_PROJECT} in every tenant namespace",
                args.key_rotation, f"{name}-cosign",
            ))
        self.register_outputs({"robot": self.robot.full_name, "secretPath": PROMOTER_SECRET_PATH, "vaultRole": VAULT_ROLE})
