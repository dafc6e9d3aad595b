"""What the control-plane cluster receives: TLS, ingress, the identity provider and the services."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import metallb, openunison
from components.cluster import ANYWHERE, ApiServer, ClusterHandle
from components.common import LdapUpstream, OidcUpstream, PlatformGroups
from components.inventory import CredentialInventory
from components.service import AcmeSettings, ControlPlaneParts, EdgeSettings, IngressController
from stacks.backups import backup_store
from stacks.config import ClusterSpec, Identity, PlatformConfig
from stacks.services import CONTROL_PLANE, FOUNDATION


@dataclass(frozen=True)
class ControlPlane:
    """The stack outputs of the shared services, and the services other stacks build on
    (`parts.get(<module>.SLICE)`: the declared service, or None when it is off)."""

    outputs: dict[str, pulumi.Input[object]]
    parts: ControlPlaneParts
    # Where the workload clusters' pods reach its load balancer (`control_plane_ingress`): Vault, Harbor, the issuer.
    ingress_networks: tuple[pulumi.Input[str], ...]


def edge_settings(config: PlatformConfig) -> EdgeSettings:
    """The platform-wide settings of the control plane's services, from the stack config."""
    dns = config.dns
    return EdgeSettings(
        domain=config.domain,
        groups=PlatformGroups(list(config.identity.cluster_admins), list(config.identity.system_approvers)),
        protect=bool(config.protect),
        upstream=upstream_identity(config.identity),
        acme=AcmeSettings(dns.acme_email, dns.acme_server, dns.hosted_zone_id) if dns is not None else None,
        object_store=config.object_store.target() if config.object_store else None,
        pipeline_project=config.pipeline.project_path,
        api_servers=api_servers(config),
    )


def api_servers(config: PlatformConfig) -> tuple[ApiServer, ...]:
    """Where the pipeline's Pulumi jobs reach each cluster's API server (`api_server`)."""
    return tuple(dict.fromkeys(api_server(spec) for spec in (config.clusters.control_plane, config.clusters.dev, config.clusters.prod)))


def api_server(spec: ClusterSpec) -> ApiServer:
    """Where pods reach a cluster's API server, from its spec (as its ClusterHandle has it)."""
    if spec.eks is not None:
        return ApiServer.of_eks(spec.eks.vpc.cidr if spec.eks.vpc else None)
    assert spec.kubeconfig is not None
    return ApiServer.of_server(spec.kubeconfig.server)


def control_plane_ingress(config: PlatformConfig, ingress: IngressController) -> tuple[pulumi.Input[str], ...]:
    """Where the workload clusters' pods reach the control plane's load balancer (its public names), given its declared
    `ingress`: on EKS its NLB's addresses (the EIPs the program owns, components/ingress.py); its MetalLB pool
    (kubeconfig stacks, on the hosts' network); anywhere but the metadata on a kubeconfig control plane without a pool
    (cloud-provider-kind's or a cloud's address, which no config names)."""
    if config.clusters.control_plane.eks is not None:
        return tuple(ingress.addresses)
    settings = config.services.settings(metallb.SLICE.key)
    pool = settings.options["addresses"].get("controlPlane", []) if settings.enabled else []
    return tuple(metallb.pool_networks(pool)) if pool else (ANYWHERE,)


def upstream_identity(identity: Identity) -> OidcUpstream | LdapUpstream:
    """OpenUnison's upstream identity source, its secret kept a Pulumi secret."""
    if identity.oidc is not None:
        oidc = identity.oidc
        return OidcUpstream(
            issuer=oidc.issuer,
            client_id=oidc.client_id,
            client_secret=pulumi.Output.secret(oidc.client_secret.get_secret_value()),
            scopes=tuple(oidc.scopes),
            user_claim=oidc.user_claim,
            groups_claim=oidc.groups_claim,
        )
    ldap = identity.ldap
    assert ldap is not None
    return LdapUpstream(
        url=ldap.url,
        bind_dn=ldap.bind_dn,
        bind_password=pulumi.Output.secret(ldap.bind_password.get_secret_value()),
        search_base=ldap.search_base,
        user_attribute=ldap.user_attribute,
        group_attribute=ldap.group_attribute,
    )


def build_control_plane(cluster: ClusterHandle, config: PlatformConfig, inventory: CredentialInventory) -> ControlPlane:
    """Declare every enabled control-plane service of the registry; returns them with their stack outputs."""
    parts = ControlPlaneParts(
        cluster=cluster,
        settings=edge_settings(config),
        inventory=inventory,
        service_settings=config.services.settings,
        slices=CONTROL_PLANE,
        foundation=FOUNDATION,
        backups=backup_store(config, cluster, inventory),
    )
    identity = parts.require(openunison.SLICE)
    outputs: dict[str, pulumi.Input[object]] = {
        "caBundle": parts.tls.ca_bundle,
        "issuerUrl": identity.issuer_url,
        "urls": {"openunison": identity.portal_url},
    }
    if parts.backups is not None:
        outputs["backupBucket"] = parts.backups.bucket  # the restore drills start there (README)
    for service in CONTROL_PLANE:
        component = parts.get(service)
        if component is not None and service.redirect_uris is not None:  # a service people sign in to
            outputs["urls"][service.key] = component.url
        if component is not None and service.outputs is not None:
            outputs.update(service.outputs(component))
    return ControlPlane(outputs, parts, control_plane_ingress(config, parts.ingress))
