"""Composition of the tenants: the shared `TenantPlatform`, GitLab users, sandboxes, and one
`Tenant` per entry of `platform:tenants`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_vault as vault

from components import gatekeeper
from components.argocd import NAMESPACE as ARGOCD_NAMESPACE, SLICE as ARGOCD
from components.cluster import ClusterHandle
from components.gitlab import SLICE as GITLAB
from components.harbor import SLICE as HARBOR
from components.inventory import CredentialInventory
from components.openunison import SLICE as OPENUNISON
from components.signing import KeyRotation
from components.platform_users import PlatformUsers, PlatformUsersArgs, distinct_users
from components.tenancy import (
    ENVIRONMENTS,
    KV_MOUNT,
    TRANSIT_MOUNT,
    ArgoTenancy,
    FederationTenancy,
    GitLabTenancy,
    IdentityTenancy,
    HarborTenancy,
    PodSecurityException,
    SupplyChainPolicy,
    TenantArgs,
    TenantMembers,
    TenantPlatform,
    TenantQuota,
    VaultTenancy,
)
from components.tenant import Sandbox, Tenant
from components.tenant_roles import TenantRoles
from components.vault import SLICE as VAULT
from components.vault_federation import VaultFederation
from stacks.config import PlatformConfig
from stacks.config import PodSecurityException as PodSecurityExceptionConfig
from stacks.control_plane import ControlPlane
from stacks.federation import ClusterFederation
from stacks.services import SERVICES

def tenant_platform(
    config: PlatformConfig,
    clusters: dict[str, ClusterHandle],
    plane: ControlPlane,
    federation: VaultFederation | None,
    addons: dict[str, dict[str, Any]],
    inventory: CredentialInventory,
    argocd_federation: ClusterFederation,
) -> TenantPlatform:
    """What every tenant hooks into; a service that is disabled leaves its part out."""
    policy_templates = {name: a[gatekeeper.SLICE.key].templates for name, a in addons.items() if gatekeeper.SLICE.key in a}
    users = distinct_users(*(t.owners for t in config.tenants), *(t.developers for t in config.tenants),
                           *(t.ops for t in config.tenants))
    vault_part = _vault_tenancy(config, plane, federation)
    supply_chain = SupplyChainPolicy(
        severity=config.supply_chain.severity,
        cve_allowlist=tuple((e.id, e.expires) for e in config.supply_chain.cve_allowlist),
        keep_last=config.supply_chain.keep_last,
        key_rotation=KeyRotation(config.supply_chain.signing_keys.rotation_days, config.supply_chain.signing_keys.trusted_versions),
    )
    gitlab, argocd, harbor = plane.parts.get(GITLAB), plane.parts.get(ARGOCD), plane.parts.get(HARBOR)
    identity = plane.parts.require(OPENUNISON)
    gitlab_part = None
    if gitlab is not None:
        platform_users = PlatformUsers(
            "platform-users", PlatformUsersArgs(users, config.identity.email_domain, gitlab.provider)
        )
        gitlab_part = GitLabTenancy(gitlab.provider, gitlab.url, gitlab.ssh_host, dict(platform_users.users))
    argocd_part = None
    if argocd is not None:
        argocd_part = ArgoTenancy(
            argocd.release, clusters["control-plane"].provider, ARGOCD_NAMESPACE, argocd.url,
            argocd.webhook_secret,
        )
    return TenantPlatform(
        domain=config.domain,
        apps_domain=config.tenant_domain,
        clusters=clusters,
        ca_bundle=plane.parts.tls.ca_bundle,
        ingress_addresses=tuple(plane.parts.ingress.addresses),
        control_plane_ingress=plane.ingress_networks,
        issuer_url=identity.issuer_url,
        kubernetes_client_id=identity.kubernetes_client_id,
        vault=vault_part,
        gitlab=gitlab_part,
        harbor=(
            HarborTenancy(
                harbor.provider, f"harbor.{config.domain}", tuple(config.identity.system_approvers),
                admin_password=harbor.admin_password,
            )
            if harbor is not None
            else None
        ),
        argocd=argocd_part,
        gatekeeper_templates=policy_templates.get("control-plane", {}),
        policy_templates=policy_templates,
        addons=addons,
        tenant_slices=tuple(s for s in SERVICES if s.tenant is not None),
        inventory=inventory,
        federation=(
            FederationTenancy(argocd_federation, argocd_federation.openunison.issuer_url, argocd_federation.openunison.ca_bundle)
            if argocd_federation.enabled and argocd_federation.openunison
            else None
        ),
        identity=IdentityTenancy(clusters["control-plane"], identity.portal_release),
        protect=bool(config.protect),
        supply_chain=supply_chain,
    )


def _vault_tenancy(config: PlatformConfig, plane: ControlPlane, federation: VaultFederation | None) -> VaultTenancy | None:
    """The tenants' KV and transit mounts in Vault, and how their halves log in; None without Vault."""
    service = plane.parts.get(VAULT)
    if service is None or federation is None:
        return None
    kv = vault.Mount(
        "tenants-kv",
        path=KV_MOUNT,
        type="kv",
        options={"version": "2"},
        description="Tenants' secrets: tenants/<tenant>/...",
        opts=pulumi.ResourceOptions(provider=service.provider, protect=bool(config.protect)),
    )
    # Tenants' cosign keys (one per tenant, components/tenant_secrets.py).
    transit = vault.Mount(
        "tenants-transit",
        path=TRANSIT_MOUNT,
        type="transit",
        description="Tenants' signing keys: transit/keys/<tenant>-cosign",
        opts=pulumi.ResourceOptions(provider=service.provider, protect=bool(config.protect)),
    )
    return VaultTenancy(service.provider, service.url, kv, federation, service.oidc.accessor, transit_mount=transit)


def build_tenants(platform: TenantPlatform, config: PlatformConfig) -> None:
    for environment in ENVIRONMENTS:
        TenantRoles(f"{environment}-tenant-roles", platform.clusters[environment])
    for developer in distinct_users(*(t.developers for t in config.tenants)):
        Sandbox(developer, platform)
    for tenant in config.tenants:
        Tenant(
            TenantArgs(
                name=tenant.name,
                members=TenantMembers(tuple(tenant.owners), tuple(tenant.developers), tuple(tenant.ops)),
                quota=TenantQuota(tenant.quota.cpu, tenant.quota.memory, tenant.quota.storage, tenant.quota.ephemeral_storage),
                isolation=tenant.isolation,
                pod_security_exception=pod_security_exception(tenant.pod_security_exception),
                renamed_from=tenant.renamed_from,
                ops_layout=tenant.ops_layout,
                dedicated_nodes=tenant.dedicated_nodes is not None,
            ),
            platform,
        )


def pod_security_exception(config: PodSecurityExceptionConfig | None) -> PodSecurityException | None:
    if config is None:
        return None
    return PodSecurityException(
        environments=tuple(config.environments), capabilities=tuple(config.capabilities),
        privilege_escalation=config.privilege_escalation, run_as_root=config.run_as_root, volume_types=tuple(config.volume_types),
        nfs_exports=tuple((e.server, e.path) for e in config.nfs_exports),
    )
