"""What every tenant hooks into: the platform's providers and shared settings, typed.

The composition (stacks/) builds one `TenantPlatform`; each `Tenant` component receives
it, so tenant code never reaches into the service components' internals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from enum import StrEnum
from typing import Any, Protocol, Sequence

import pulumi
import pulumi_vault as vault

from components.cluster import ClusterHandle
from components.federation import RemoteCluster
from components.inventory import CredentialInventory
from components.signing import KeyRotation

ENVIRONMENTS = ("dev", "prod")


class Isolation(StrEnum):
    """How a tenant environment is separated: a namespace, or a virtual cluster inside one."""

    NAMESPACE = "namespace"
    VCLUSTER = "vcluster"


class OpsLayout(StrEnum):
    """Where a tenant's ops repositories keep the manifests ArgoCD deploys (README: Ops repositories)."""

    ENVIRONMENTS = "environments"  # dev/ and prod/, seeded with the starter Rollouts
    ROOT = "root"  # app.yaml at the root: tenants onboarded before the per-environment folders, as they were
    MOVED = "moved"  # moved by hand from root to dev/ and prod/: nothing seeded there any more

    def source_path(self, environment: str) -> str:
        """The directory ArgoCD deploys `environment` from."""
        return "." if self is OpsLayout.ROOT else environment


class Severity(StrEnum):
    """The vulnerability scale of the severity gate, lowest first (Harbor's and Trivy's, in lower case)."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def harbor_gate(self) -> str:
        """A Harbor project's `deployment_security`: "" for NONE, as pulumiverse-harbor turns the pull gate on
        for any other value (terraform-provider-harbor client/project.go ProjectBody), "none" included."""
        return "" if self is Severity.NONE else self.value

    def and_above(self) -> list[Severity]:
        """This severity and every higher one; nothing for NONE (the gate refuses nothing)."""
        scale = list(Severity)
        return [] if self is Severity.NONE else scale[scale.index(self):]
ROLES = ("owners", "developers", "ops")

# Where tenants' secrets live in Vault (a KV v2 mount), and the keys of the Harbor pull
# credentials that the External Secrets pull secret is built from.
KV_MOUNT = "tenants"
HARBOR_PULL_KEYS = ("registry", "username", "password")


@dataclass(frozen=True)
class TenantQuota:
    cpu: str
    memory: str
    storage: str
    ephemeral_storage: str


@dataclass(frozen=True)
class TenantMembers:
    """Who holds each of a tenant's roles (platform:tenants[].owners, .developers, .ops)."""

    owners: tuple[str, ...]
    developers: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()

    def of(self, role: str) -> list[str]:
        """The users of `role` (one of ROLES), in config order."""
        return list(getattr(self, role))


@dataclass(frozen=True)
class PodSecurityException:
    """Restricted less these allowances, in these environments (a tenant's `podSecurityException`)."""

    environments: tuple[str, ...]
    capabilities: tuple[str, ...] = ()  # added besides NET_BIND_SERVICE
    privilege_escalation: bool = False
    run_as_root: bool = False
    volume_types: tuple[str, ...] = ()
    nfs_exports: tuple[tuple[str, str], ...] = ()  # (server, path): the only NFS exports its pods may mount

    def parameters(self) -> dict[str, object]:
        """The namespace's own PlatformPodRestricted constraint's parameters."""
        exports = {"nfsExports": [{"server": s, "path": p} for s, p in self.nfs_exports]} if self.nfs_exports else {}
        return {"allowedCapabilities": list(self.capabilities), "allowPrivilegeEscalation": self.privilege_escalation,
                "allowRoot": self.run_as_root, "allowedVolumeTypes": list(self.volume_types), **exports}


@dataclass(frozen=True)
class TenantArgs:
    name: str
    members: TenantMembers
    quota: TenantQuota
    isolation: Isolation = Isolation.NAMESPACE
    pod_security_exception: PodSecurityException | None = None  # granted in stack config
    renamed_from: str | None = None  # the tenant's former name, whose resources it keeps
    ops_layout: OpsLayout = OpsLayout.ENVIRONMENTS
    # Nodes of its own on the workload clusters (platform:tenants[].dedicatedNodes): its virtual clusters' control planes
    # are placed there as its other pods are (components/gatekeeper.py places and holds those).
    dedicated_nodes: bool = False


def tenant_group(tenant: str, role: str) -> str:
    """The identity group of a tenant role, as OpenUnison puts it in tokens: `payments-owners`."""
    return f"{tenant}-{role}"


def harbor_pull_path(tenant: str) -> str:
    return f"{tenant}/harbor-pull"


# Where the tenants' cosign keys live in Vault (a transit mount, one key per tenant).
TRANSIT_MOUNT = "transit"


def cosign_key(tenant: str) -> str:
    """The tenant's signing key in the transit mount; cosign names it `hashivault://<this>`."""
    return f"{tenant}-cosign"


@dataclass(frozen=True)
class SupplyChainPolicy:
    """Registry policy for every tenant project (stack config `platform:supplyChain`)."""

    severity: Severity = Severity.HIGH  # Harbor refuses pulls of images with a vulnerability at or above it
    cve_allowlist: tuple[tuple[str, str], ...] = ()  # (CVE id, expiry YYYY-MM-DD inclusive)
    keep_last: int = 10  # retention: the N most recently pushed artifacts per repository
    pulled_within_days: int = 30  # retention: and whatever was pulled in this many days ("deployed")
    key_rotation: KeyRotation = KeyRotation()  # the cosign keys' rotation and trusted versions

    def _active(self, today: date) -> dict[str, date]:
        return {cve: day for cve, expires in self.cve_allowlist if (day := date.fromisoformat(expires)) >= today}

    def active_cves(self, today: date) -> list[str]:
        """The allowlisted CVEs not yet expired on `today`: each `pulumi up` drops what has expired."""
        return sorted(self._active(today))

    def allowlist_expiry(self, today: date) -> int | None:
        """When Harbor itself stops honouring the active CVEs (seconds since the epoch): the end, in
        UTC, of the earliest one's last day; None when none is active. Harbor's allowlist has one
        expiry for all its entries, so the later ones lapse with it (refused, never admitted) until
        the next `pulumi up` sets the list again without the expired one."""
        ends = self._active(today).values()
        if not ends:
            return None
        return int(datetime.combine(min(ends) + timedelta(days=1), time(), tzinfo=timezone.utc).timestamp())


class WorkloadBinder(Protocol):
    """Vault roles trusting short-lived identities (components/vault_federation.py)."""

    def bind_workload(
        self, resource_name: str, cluster: str, namespaces: list[str], service_accounts: list[str],
        policies: list[str], parent: pulumi.Resource,
    ) -> pulumi.CustomResource: ...

    def bind_ci(
        self, resource_name: str, project_paths: list[str], refs: list[str] | None, policies: list[str],
        parent: pulumi.Resource, ttl: int = ..., environments: list[str] | None = ..., pipeline_sources: Sequence[str] = ...,
        protected_environments: bool = ...,
    ) -> pulumi.CustomResource: ...

    def auth_path(self, cluster: str) -> str: ...


@dataclass(frozen=True)
class VaultTenancy:
    provider: vault.Provider
    url: str
    kv_mount: pulumi.Resource  # the `tenants` KV v2 mount
    federation: WorkloadBinder
    oidc_accessor: pulumi.Output[str] | None = None  # people's OIDC mount, for tenant group aliases
    transit_mount: pulumi.Resource | None = None  # the `transit` mount holding tenants' cosign keys

    def write(self, name: str, path: str, data: pulumi.Input[dict[str, Any]], parent: pulumi.Resource) -> vault.kv.SecretV2:
        """Store `data` (kept secret) at `tenants/<path>`."""
        return vault.kv.SecretV2(
            name,
            mount=KV_MOUNT,
            name=path,
            data_json=pulumi.Output.secret(pulumi.Output.from_input(data).apply(lambda d: json.dumps(d, sort_keys=True))),
            opts=pulumi.ResourceOptions(parent=parent, provider=self.provider, depends_on=[self.kv_mount]),
        )


@dataclass(frozen=True)
class IdentityTenancy:
    """Where tenants declare their role groups to OpenUnison (components/openunison.py LocalGroups)."""

    cluster: ClusterHandle  # the control plane
    ready: pulumi.Resource  # the login portal's release


class RemoteClusters(Protocol):
    """ArgoCD's federated clusters and OpenUnison's targets (stacks/federation.py)."""

    def add_remote_cluster(self, remote: RemoteCluster) -> Any: ...


@dataclass(frozen=True)
class FederationTenancy:
    """How a tenant's virtual cluster joins token federation."""

    clusters: RemoteClusters
    issuer_url: str  # OpenUnison's remotek8s issuer: the tokens ArgoCD presents
    issuer_ca_bundle: pulumi.Output[str]  # PEM that signs the issuer's certificate; "" = public roots


@dataclass(frozen=True)
class GitLabTenancy:
    provider: pulumi.ProviderResource
    url: str  # https://gitlab.<domain>
    ssh_host: str  # gitlab.<domain>
    users: dict[str, pulumi.Resource] = field(default_factory=dict)  # user id -> gitlab.User


@dataclass(frozen=True)
class HarborTenancy:
    provider: pulumi.ProviderResource
    host: str  # harbor.<domain>
    # Groups that read every tenant project (the system approvers, who approve what is in them).
    reader_groups: tuple[str, ...] = ()
    # The admin the harbor provider signs in as (a Pulumi secret): for what the provider cannot declare.
    admin_user: str = "admin"
    admin_password: pulumi.Output[str] | None = None


@dataclass(frozen=True)
class ArgoTenancy:
    release: pulumi.Resource  # the argo-cd release: every ArgoCD object depends on it
    provider: pulumi.ProviderResource  # the control-plane cluster's Kubernetes provider
    namespace: str
    url: str
    webhook_secret: pulumi.Output[str] | None = None  # shared with GitLab's webhooks; a Pulumi secret


@dataclass(frozen=True)
class TenantPlatform:
    domain: str
    apps_domain: str  # where tenants' apps are served, `<tenant>.<env>.<apps_domain>` (stacks: PlatformConfig.tenant_domain)
    clusters: dict[str, ClusterHandle]  # control-plane, dev, prod
    ca_bundle: pulumi.Output[str]  # PEM the platform's endpoints are signed by; "" means public roots
    issuer_url: str  # OpenUnison, trusted by virtual clusters
    kubernetes_client_id: str
    # The control plane's load balancer's own addresses (EKS: its NLB's EIPs, components/ingress.py), which
    # the pods that reach the platform's public names connect to.
    ingress_addresses: tuple[pulumi.Output[str], ...] = ()
    # Where the workload clusters' pods reach that load balancer (stacks/control_plane.py control_plane_ingress):
    # the virtual clusters' issuer.
    control_plane_ingress: tuple[pulumi.Input[str], ...] = ()
    vault: VaultTenancy | None = None
    gitlab: GitLabTenancy | None = None
    harbor: HarborTenancy | None = None
    argocd: ArgoTenancy | None = None
    # The control plane's Gatekeeper template resources by constraint kind: each tenant's
    # constraint waits for its template.
    gatekeeper_templates: dict[str, pulumi.Resource] = field(default_factory=dict)
    # Every cluster's Gatekeeper templates (cluster -> constraint kind -> template): each tenant
    # namespace's own constraints wait for theirs.
    policy_templates: dict[str, dict[str, pulumi.Resource]] = field(default_factory=dict)
    inventory: CredentialInventory | None = None  # tenants register the credentials they create
    federation: FederationTenancy | None = None  # None: ArgoCD is off, nothing asks for tokens
    identity: IdentityTenancy | None = None
    supply_chain: SupplyChainPolicy = SupplyChainPolicy()
    protect: bool = False  # protect tenants' repositories and registry projects
    # Each cluster's add-ons (cluster -> slice key -> component), and the slices with a tenant
    # half (components/service.py ServiceSlice.tenant), which every Tenant declares in this order.
    addons: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenant_slices: tuple[Any, ...] = ()
