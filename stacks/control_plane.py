"""What the control-plane cluster receives: TLS, ingress, the identity provider and the services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pulumi

from components import ingress as ingress_component
from components.argocd import ArgoCd, ArgoCdArgs
from components.gitlab import GitLab, GitLabArgs
from components.gitlab import redirect_uri as gitlab_redirect_uri
from components.harbor import Harbor, HarborArgs
from components.harbor import redirect_uri as harbor_redirect_uri
from components.cluster import ClusterHandle
from components.common import Exposure, PlatformGroups
from components.federation import CredentialPlugin
from components.ingress import Ingress, IngressArgs, Route53Args
from components.inventory import CredentialInventory
from components.openunison import ClientSpec, LdapUpstream, OidcUpstream, OpenUnison, OpenUnisonArgs
from components.tls import AcmeArgs, PlatformTls, PlatformTlsArgs
from components.vault import Vault, VaultArgs
from stacks.config import Identity, PlatformConfig

# Where each service sends people back after signing in with OpenUnison.
REDIRECTS: dict[str, Callable[[str], tuple[str, ...]]] = {
    "gitlab": lambda host: (gitlab_redirect_uri(host),),
    "harbor": lambda host: (harbor_redirect_uri(host),),
    "argocd": lambda host: (f"https://{host}/auth/callback",),
    # Vault's CLI (`vault login -method=oidc`) listens on localhost for its callback.
    "vault": lambda host: (f"https://{host}/ui/vault/auth/oidc/oidc/callback", "http://localhost:8250/oidc/callback"),
}


@dataclass(frozen=True)
class Edge:
    """TLS and ingress of the control plane: how a service gets a hostname and a certificate."""

    tls: PlatformTls
    ingress: Ingress
    domain: str

    def expose(self, service: str) -> Exposure:
        hostname = f"{service}.{self.domain}"
        self.ingress.publish(hostname)
        return Exposure(
            hostname=hostname,
            ingress_class=self.ingress.ingress_class,
            cluster_issuer=self.tls.issuer_name,
            ca_bundle=self.tls.ca_bundle,
        )


def build_edge(cluster: ClusterHandle, config: PlatformConfig) -> Edge:
    services = config.services
    identity = cluster.aws_identity
    acme = (
        AcmeArgs(config.dns.acme_email, config.dns.acme_server, config.dns.hosted_zone_id, identity)
        if identity is not None and config.dns is not None
        else None
    )
    tls = PlatformTls(
        "platform-tls",
        cluster,
        PlatformTlsArgs(domain=config.domain, acme=acme, chart_version=services.cert_manager.chart_version),
    )
    route53 = (
        Route53Args(config.dns.hosted_zone_id, identity.provider) if identity is not None and config.dns is not None else None
    )
    ingress = Ingress(
        "ingress",
        cluster,
        IngressArgs(
            replicas=services.ingress.sizing.replicas,
            chart_version=services.ingress.chart_version,
            route53=route53,
        ),
    )
    return Edge(tls, ingress, config.domain)


def upstream_identity(identity: Identity) -> dict[str, OidcUpstream | LdapUpstream]:
    """OpenUnison's upstream identity source, its secret kept a Pulumi secret."""
    if identity.oidc is not None:
        oidc = identity.oidc
        return {
            "oidc_upstream": OidcUpstream(
                issuer=oidc.issuer,
                client_id=oidc.client_id,
                client_secret=pulumi.Output.secret(oidc.client_secret.get_secret_value()),
                scopes=tuple(oidc.scopes),
                user_claim=oidc.user_claim,
                groups_claim=oidc.groups_claim,
            )
        }
    ldap = identity.ldap
    assert ldap is not None
    return {
        "ldap_upstream": LdapUpstream(
            url=ldap.url,
            bind_dn=ldap.bind_dn,
            bind_password=pulumi.Output.secret(ldap.bind_password.get_secret_value()),
            search_base=ldap.search_base,
            user_attribute=ldap.user_attribute,
            group_attribute=ldap.group_attribute,
        )
    }


@dataclass(frozen=True)
class ControlPlane:
    """The stack outputs of the shared services, and the services other stacks build on."""

    outputs: dict[str, pulumi.Input[object]]
    edge: Edge
    identity: OpenUnison
    argocd: ArgoCd | None = None
    vault: Vault | None = None
    gitlab: GitLab | None = None
    harbor: Harbor | None = None


def build_control_plane(
    cluster: ClusterHandle, config: PlatformConfig, inventory: CredentialInventory | None = None
) -> ControlPlane:
    """Declare the shared services; returns them with their stack outputs. Services that
    register their own credentials (GitLab's SSH host keys) register them in `inventory`."""
    services = config.services
    edge = build_edge(cluster, config)
    groups = PlatformGroups(list(config.identity.cluster_admins), list(config.identity.system_approvers))
    clients = {
        client: ClientSpec(uris(f"{client}.{config.domain}"))
        for client, uris in REDIRECTS.items()
        if getattr(services, client).enabled
    }
    identity = OpenUnison(
        "openunison",
        cluster,
        OpenUnisonArgs(
            domain=config.domain,
            exposure=edge.expose("k8sou"),
            clients=clients,
            cert_manager=edge.tls.release,
            ingress_namespace=ingress_component.NAMESPACE,
            operator_chart_version=services.openunison.chart_version,
            protect=bool(config.protect),
            **upstream_identity(config.identity),
        ),
    )
    outputs: dict[str, pulumi.Input[object]] = {
        "caBundle": edge.tls.ca_bundle,
        "issuerUrl": identity.issuer_url,
        "urls": {"openunison": identity.portal_url},
    }
    def stateful(name: str) -> dict:
        """What GitLab, Harbor and Vault share: a hostname, an OIDC client, sizing, storage."""
        service = getattr(services, name)
        return dict(
            exposure=edge.expose(name),
            oidc=identity.clients[name],
            groups=groups,
            cert_manager=edge.tls.release,
            protect=bool(config.protect),
            chart_version=service.chart_version,
            replicas=service.sizing.replicas,
            storage=service.sizing.storage,
            aws=cluster.aws_identity,
        )

    gitlab = harbor = vault = argocd = None
    if services.gitlab.enabled:
        gitlab = GitLab(
            "gitlab",
            cluster,
            GitLabArgs(
                **stateful("gitlab"), depends_on=[edge.ingress.release], ssh=edge.ingress.ssh, inventory=inventory
            ),
        )
        outputs["urls"]["gitlab"] = gitlab.url
        # For people's ~/.ssh/known_hosts: the keys to expect, also after each rotation.
        outputs["sshKnownHosts"] = gitlab.ssh_known_hosts
    if services.harbor.enabled:
        harbor = Harbor("harbor", cluster, HarborArgs(**stateful("harbor"), depends_on=[edge.ingress.release]))
        outputs["urls"]["harbor"] = harbor.url
    if services.vault.enabled:
        vault = Vault("vault", cluster, VaultArgs(**stateful("vault"), ingress_controller=edge.ingress.release))
        outputs["urls"]["vault"] = vault.url
    if services.argocd.enabled:
        argocd = ArgoCd(
            "argocd",
            cluster,
            ArgoCdArgs(
                exposure=edge.expose("argocd"),
                oidc=identity.clients["argocd"],
                groups=groups,
                replicas=services.argocd.sizing.replicas,
                chart_version=services.argocd.chart_version,
                # ArgoCD reaches the remote clusters with OpenUnison's short-lived tokens.
                credential_plugin=CredentialPlugin(identity.portal_url.rstrip("/"), edge.tls.ca_bundle),
                # and reads the tenants' repositories over SSH, trusting GitLab's own host keys.
                ssh_known_hosts=gitlab.ssh_known_hosts if gitlab is not None else None,
            ),
        )
        outputs["urls"]["argocd"] = argocd.url
    return ControlPlane(outputs, edge, identity, argocd, vault, gitlab, harbor)
