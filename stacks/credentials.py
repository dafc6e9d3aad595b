"""The credentials of the services the composition builds, for the credential inventory.

The service components (TLS, OpenUnison, GitLab, Harbor, Vault) predate the inventory, so
their credentials are described here, next to the composition that decides which exist;
each entry names the plan resources it covers, and the plan check
(policy/inventory.py) fails if a credential-bearing resource is not named or a named one
is gone. Move an entry into its component when that component next changes.
Newer code (Vault federation, CI identity, tenants) registers its own credentials.
"""

from __future__ import annotations

import dataclasses

from components import gitlab as gitlab_component
from components import harbor as harbor_component
from components import openunison as openunison_component
from components import vault as vault_component
from components.cluster import ClusterHandle
from components.inventory import DAY, HOUR, Credential, CredentialInventory
from components.tls import PlatformTlsArgs
from stacks.config import PlatformConfig
from stacks.control_plane import REDIRECTS

CONTROL_PLANE = "control-plane"
VAULT_ROLE = CONTROL_PLANE  # Vault's resources are named after the cluster it runs on
STATE = "the stack's encrypted Pulumi state"
CERT_MANAGER_DEFAULT_DURATION = 90 * DAY  # cert-manager's default (2160h); ACME certificates: 90 days
PROVIDER_CHILD_TOKEN_SECONDS = 1200  # terraform-provider-vault's max_lease_ttl_seconds default
EKS_TOKEN_SECONDS = 900  # `aws eks get-token`: a presigned STS request valid for 15 minutes
IRSA_TOKEN_SECONDS = DAY  # the EKS pod identity webhook's projected token (expirationSeconds 86400)
CA_VALIDITY_SECONDS = next(f.default for f in dataclasses.fields(PlatformTlsArgs) if f.name == "ca_validity_hours") * HOUR


def register_platform_credentials(
    inventory: CredentialInventory, config: PlatformConfig, clusters: dict[str, ClusterHandle]
) -> None:
    """Register what the control plane's services and the clusters create or configure."""
    control_plane = clusters[CONTROL_PLANE]
    on_eks = control_plane.aws_identity is not None
    acme = on_eks and config.dns is not None  # as stacks/control_plane.build_edge decides
    services = config.services
    add = inventory.register

    # --- clusters ------------------------------------------------------------------------
    for name, handle in clusters.items():
        if handle.is_eks:
            add(Credential(
                what=f"EKS tokens of the Pulumi kubernetes provider for {name}",
                category="federated",
                issuer="AWS STS (`aws eks get-token`, a presigned GetCallerIdentity)",
                holder="the Pulumi kubernetes provider, as the AWS principal running the program",
                scope=f"the {name} cluster, as far as that principal's EKS access entry allows",
                lifetime_seconds=EKS_TOKEN_SECONDS,
                rotation="a new token for every use (exec credential)",
            ))
        else:
            add(Credential(
                what=f"kubeconfig credential of the {name} cluster",
                category="external",
                issuer=f"the {name} cluster's administrator (platform:clusters.{name}.kubeconfig)",
                holder="the Pulumi kubernetes provider (path on the machine, or a Pulumi config secret)",
                scope=f"whatever the kubeconfig's user may do on {name} (usually cluster-admin)",
                lifetime_seconds=None,
                lifetime="set by whoever issued the kubeconfig (kind: a client certificate for 1 year)",
                rotation="replace the kubeconfig; prefer an exec credential plugin with short-lived tokens",
            ))
    if on_eks:
        node_roles = tuple(f"{name}-{kind}" for name, h in clusters.items() if h.is_eks for kind in ("cluster", "node"))
        add(Credential(
            what="AWS credentials of the EKS control planes and node groups",
            category="federated",
            issuer="AWS STS (service roles and EC2 instance profiles)",
            holder="EKS and the nodes' kubelet, CNI and image pulls",
            scope="AmazonEKSClusterPolicy; worker node, CNI and ECR read-only policies",
            lifetime_seconds=6 * HOUR,
            lifetime="temporary credentials AWS issues and rotates itself (hours)",
            rotation="AWS replaces them before they expire",
            resources=node_roles,
        ))
        add(Credential(
            what="projected web-identity tokens of IRSA service accounts",
            category="federated",
            issuer="each EKS cluster's service-account issuer (EKS pod identity webhook)",
            holder="pods of service accounts annotated with an IAM role",
            scope="AssumeRoleWithWebIdentity for that role only (audience sts.amazonaws.com)",
            lifetime_seconds=IRSA_TOKEN_SECONDS,
            rotation="the kubelet refreshes the projected token before it expires",
        ))

    def irsa(role: str, account: str, scope: str) -> None:
        add(Credential(
            what=f"AWS sessions of {account} (IRSA)",
            category="federated",
            issuer="AWS STS, trusting the control plane's OIDC issuer",
            holder=f"service account {account} on {CONTROL_PLANE}",
            scope=scope,
            lifetime_seconds=HOUR,
            rotation="the AWS SDK assumes the role again with the projected token",
            resources=(role,),
        ))

    # --- TLS -----------------------------------------------------------------------------
    if acme:
        irsa("platform-tls-route53", "cert-manager/cert-manager", "Route 53 records of the platform's hosted zone")
        add(Credential(
            what="ACME account key",
            category="external",
            issuer="the ACME server (platform:dns.acmeServer)",
            holder="cert-manager (Secret cert-manager/platform-acme-account)",
            scope="order and revoke certificates for the platform's names (DNS-01 proves control)",
            lifetime_seconds=None,
            lifetime="as long as the ACME server keeps the account (no expiry)",
            rotation="delete the Secret: cert-manager registers a new account",
        ))
    else:
        add(Credential(
            what="platform CA key",
            category="signing-key",
            issuer="the program (pulumi_tls, self-signed root)",
            holder=f"cert-manager (Secret cert-manager/platform-ca) and {STATE}",
            scope="signs the platform's TLS certificates; never presented to anyone",
            lifetime_seconds=CA_VALIDITY_SECONDS,
            rotation="re-created by `pulumi up` 30 days before it expires; clients take the new caBundle output",
            resources=("platform-tls-ca",),
        ))
    add(Credential(
        what="TLS certificates of the platform's names and of Vault's listener",
        category="issued",
        issuer="cert-manager (platform ClusterIssuer; Vault's internal CA for Vault's own listener)",
        holder="Traefik (ingress certificates) and the Vault pods",
        scope="authenticate the service's hostname to clients",
        lifetime_seconds=CERT_MANAGER_DEFAULT_DURATION,
        rotation="cert-manager renews at two thirds of the lifetime",
        resources=(f"{VAULT_ROLE}-vault-tls", f"{VAULT_ROLE}-vault-public-tls") if services.vault.enabled else (),
    ))

    # --- identity (OpenUnison) -------------------------------------------------------------
    add(Credential(
        what="OpenUnison tokens",
        category="federated",
        issuer="OpenUnison (k8sIdp)",
        holder="people's kubectl and the sessions of GitLab, Harbor, ArgoCD and Vault sign-in",
        scope="the signed-in person and their groups",
        lifetime_seconds=openunison_component.TOKEN_LIFETIME_MILLIS // 1000,
        rotation="refreshed by the client; a new sign-in when the session ends",
    ))
    rotation_days = openunison_component.CLIENT_SECRET_ROTATION_DAYS
    for client in sorted(c for c in REDIRECTS if getattr(services, c).enabled):
        add(Credential(
            what=f"OIDC client secret of {client}",
            category="issued",
            issuer="the program (pulumi_random), registered in OpenUnison's Trust",
            holder=f"{client} and OpenUnison (Secret openunison/oidc-client-{client})",
            scope=f"{client} redeems sign-in codes at OpenUnison's token endpoint",
            lifetime_seconds=rotation_days * DAY,
            # Nothing expires it on its own: the 30 days hold as long as refreshes run.
            lifetime=f"{rotation_days} days, as long as `pulumi up --refresh` runs (OpenUnison sets no expiry)",
            rotation=f"replaced by `pulumi up --refresh` every {rotation_days} days; both sides take it in that run",
            resources=(f"oidc-{client}",),
        ))
    for resource, what in (
        ("openunison-k8s-db-secret", "client secret of OpenUnison's internal trusts"),
        ("openunison-keystore-password", "password of OpenUnison's keystore"),
    ):
        add(Credential(
            what=what, category="internal", issuer="OpenUnison", holder="OpenUnison",
            scope="OpenUnison's own components (Secret openunison/orchestra-secrets-source)",
            lifetime_seconds=None, rotation="by hand: replace the resource; OpenUnison restarts with it",
            resources=(resource,),
        ))
    upstream = config.identity
    add(Credential(
        what="upstream OIDC client secret" if upstream.oidc else "LDAP bind password",
        category="external",
        issuer=upstream.oidc.issuer if upstream.oidc else (upstream.ldap.url if upstream.ldap else "the directory"),
        holder="OpenUnison (Secret openunison/orchestra-secrets-source), from a Pulumi config secret",
        scope="OpenUnison signs people in against the upstream identity source",
        lifetime_seconds=None,
        lifetime="set by the upstream identity source's administrators",
        rotation="`pulumi config set --secret --path platform:identity...` then `pulumi up`",
    ))

    # --- GitLab ------------------------------------------------------------------------------
    if services.gitlab.enabled:
        gl = gitlab_component
        add(Credential(
            what="GitLab root password",
            category="bootstrap",
            issuer="the program (pulumi_random)",
            holder=f"{STATE} and GitLab (Secret gitlab/{gl.ROOT_PASSWORD_SECRET})",
            scope="GitLab's root user; takes effect at the first installation only",
            lifetime_seconds=None,
            rotation="change it in GitLab by hand (the Secret only seeds the first start)",
            resources=("gitlab-root-password",),
        ))
        add(Credential(
            what=f"GitLab {gl.BOT_USERNAME} personal access token",
            category="issued",
            issuer="GitLab",
            holder=f"the Pulumi gitlab provider ({STATE}) and Secret {gl.NAMESPACE}/{gl.TOKEN_SECRET}",
            scope=f"{', '.join(gl.TOKEN_SCOPES)}, as an administrator",
            lifetime_seconds=gl.TOKEN_LIFETIME_DAYS * DAY,
            rotation=f"an hourly CronJob makes a new one with {gl.TOKEN_MIN_DAYS_LEFT} days or less left",
            resources=("gitlab-admin-token-holder",),
        ))
        add(Credential(
            what="GitLab CI ID tokens",
            category="federated",
            issuer=f"GitLab (https://gitlab.{config.domain})",
            holder="CI jobs that declare id_tokens",
            scope="the audience the job names (Vault, AWS STS), with the job's project and ref as claims",
            lifetime_seconds=3 * HOUR,
            lifetime="the job's timeout: 1 hour by default, 3 hours for rebuild-dev",
            rotation="a new token for every job",
        ))
        if on_eks:
            irsa("gitlab-object-storage", f"{gl.NAMESPACE}/{gl.SERVICE_ACCOUNT}", "GitLab's object-storage buckets")

    # --- Harbor ------------------------------------------------------------------------------
    if services.harbor.enabled:
        hb = harbor_component
        add(Credential(
            what="Harbor admin password",
            category="bootstrap",
            issuer="the program (pulumi_random)",
            holder=f"the Pulumi harbor provider ({STATE}) and Harbor (Secret harbor/{hb.ADMIN_SECRET[0]})",
            scope="Harbor's local admin: configures Harbor from `pulumi up`; break-glass sign-in",
            lifetime_seconds=None,
            rotation="never automatically: Harbor reads it only at its first start",
            resources=("harbor-admin-password",),
        ))
        for suffix in (
            "secret-key", "core-secret", "xsrf-key", "jobservice-secret", "registry-http-secret",
            "registry-password", "database-password",
        ):
            add(Credential(
                what=f"Harbor {suffix.replace('-', ' ')}",
                category="internal",
                issuer="Harbor",
                holder="Harbor",
                scope="between Harbor's own components (core, job service, registry, database)",
                lifetime_seconds=None,
                rotation="by hand, with a Harbor restart: replace the resource",
                resources=(f"harbor-{suffix}",),
            ))
        add(Credential(
            what="Harbor token-service key",
            category="signing-key",
            issuer="the program (pulumi_tls, self-signed certificate)",
            holder=f"Harbor core (Secret harbor/{hb.TOKEN_CERT_SECRET}) and {STATE}",
            scope="signs the registry tokens Harbor core hands to clients; the registry verifies them",
            lifetime_seconds=10 * 365 * DAY,
            rotation="re-created by `pulumi up` 30 days before the certificate expires; Harbor restarts with it",
            resources=("harbor-token-service",),
        ))
        if on_eks:
            irsa("harbor-registry", f"{hb.NAMESPACE}/{hb.REGISTRY_SERVICE_ACCOUNT}", "Harbor's registry bucket")

    # --- Vault -------------------------------------------------------------------------------
    if services.vault.enabled:
        va = vault_component
        init = f"{VAULT_ROLE}-vault-init"
        add(Credential(
            what="Vault root token",
            category="bootstrap",
            issuer="Vault (operator init)",
            holder=f"{STATE} (vault-init output); the pulumi-vault provider mints its child tokens from it",
            scope="root",
            lifetime_seconds=None,
            rotation="revoke it after bootstrap; `vault operator generate-root` when needed (README)",
            resources=(init,),
        ))
        add(Credential(
            what="Vault recovery keys" if on_eks else "Vault unseal keys",
            category="bootstrap",
            issuer="Vault (operator init)",
            holder=f"{STATE} (vault-init output)",
            scope="generate-root" + ("" if on_eks else " and unsealing each raft peer"),
            lifetime_seconds=None,
            rotation="`vault operator rekey` by their holders",
            resources=(init,),
        ))
        add(Credential(
            what="child tokens of the pulumi-vault provider",
            category="federated",
            issuer="Vault, from the root token",
            holder="the pulumi-vault provider during one Pulumi run",
            scope="what the root token may do",
            lifetime_seconds=PROVIDER_CHILD_TOKEN_SECONDS,
            rotation="a new one for every run",
            resources=(f"{VAULT_ROLE}-vault",),
        ))
        add(Credential(
            what="Vault tokens of people (OIDC sign-in)",
            category="federated",
            issuer="Vault, auth/oidc (OpenUnison)",
            holder="people signed in to Vault",
            scope="policies of their platform groups",
            lifetime_seconds=va.TOKEN_TTL_SECONDS,
            rotation="sign in again",
            resources=(f"{VAULT_ROLE}-vault-oidc-{va.OIDC_ROLE}",),
        ))
        add(Credential(
            what="Vault's internal CA key",
            category="signing-key",
            issuer="cert-manager (self-signed Issuer in the vault namespace)",
            holder=f"cert-manager (Secret vault/{va.INTERNAL_CA_SECRET})",
            scope="signs Vault's listener and raft certificates; never presented to anyone",
            lifetime_seconds=3650 * DAY,
            rotation="cert-manager renews it 30 days before it expires; Vault and Traefik read the new ca.crt",
            resources=(f"{VAULT_ROLE}-vault-internal-ca",),
        ))
        if on_eks:
            irsa(f"{VAULT_ROLE}-vault-unseal", f"{va.NAMESPACE}/{va.SERVICE_ACCOUNT}", "Vault's auto-unseal KMS key")
