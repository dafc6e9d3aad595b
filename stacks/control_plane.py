"""What the control-plane cluster receives: TLS, ingress, the identity provider and the services."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components import openunison
from components.cluster import ClusterHandle
from components.common import LdapUpstream, OidcUpstream, PlatformGroups
from components.inventory import CredentialInventory
from components.service import AcmeSettings, ControlPlaneParts, EdgeSettings
from stacks.backups import backup_store
from stacks.config import Identity, PlatformConfig
from stacks.services import CONTROL_PLANE, FOUNDATION


@dataclass(frozen=True)
class ControlPlane:
    """The stack outputs of the shared services, and the services other stacks build on
    (`parts.get(<module>.SLICE)`: the declared service, or None when it is off)."""

    outputs: dict[str, pulumi.Input[object]]
    parts: ControlPlaneParts


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
    )


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
    return ControlPlane(outputs, parts)
