"""Composition of Harbor's platform-wide supply chain: the accepted CVEs, the quarantine (proxy caches,
`approved`, which Dragonfly's preheat policies watch) and the promotion of public images.

stacks/platform.py calls `build_public_images` once, after `tenant_platform` (it takes the
Harbor and Vault parts and the inventory from the `TenantPlatform`) and before the stack
outputs are built (the promoter registers its credentials in the inventory).

The quarantine is declared here, with the same resource name it had in stacks/tenants.py
(so its URNs do not change), because the promoter robot's permissions name its projects and
must wait for them: Harbor refuses a robot whose permissions name a project that does not
exist yet, which would break every rebuild of the dev stack.
"""

from __future__ import annotations

import pulumi

from components.image_promotion import ImagePromotion, ImagePromotionArgs
from components.tenancy import TenantPlatform
from components import dragonfly, image_verifier
from components.image_verifier import project_images
from components.tenant_supply_chain import (
    APPROVED_PROJECT, CveExceptions, CveExceptionsArgs, PublicImageQuarantine, PublicImageQuarantineArgs,
)
from components.vault_federation import StackEnvironments
from stacks.config import PlatformConfig


def build_public_images(config: PlatformConfig, platform: TenantPlatform) -> None:
    """Declare, with Harbor, the accepted CVEs (every project's pull gate skips these, and only these) and the
    quarantine and, when Vault and GitLab are on, the promoter (without them nothing could use the robot)."""
    if platform.harbor is None:
        return
    CveExceptions("cve-exceptions", platform.harbor.provider, CveExceptionsArgs(platform.supply_chain))
    quarantine = PublicImageQuarantine(
        "public-images",
        platform.harbor.provider,
        PublicImageQuarantineArgs(list(config.supply_chain.public_registries), platform.supply_chain),
    )
    dragonfly.preheat_approved(platform, quarantine.approved)  # what goes peer to peer: approved's blobs
    if platform.vault is not None and platform.gitlab is not None and quarantine.proxies:
        promotion = ImagePromotion(
            "image-promotion",
            platform.harbor.provider,
            ImagePromotionArgs(
                proxies=quarantine.proxies,
                approved=quarantine.approved,
                registry_host=platform.harbor.host,
                vault=platform.vault,
                pipeline_project=config.pipeline.project_path,
                environment=StackEnvironments(pulumi.get_stack()).promote,  # this stack's promote-image-<stack> alone
                inventory=platform.inventory,
                key_rotation=platform.supply_chain.key_rotation,
            ),
        )
        # Tenants' namespaces admit images of `approved` only when promote-image signed them.
        approved = [project_images(platform.harbor.host, APPROVED_PROJECT)]
        for addons in platform.addons.values():
            if (verifier := addons.get(image_verifier.SLICE.key)) is not None:
                verifier.trust("platform-approved", approved, promotion.signing.public_keys, promotion)
