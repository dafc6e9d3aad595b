"""A platform service as one self-describing slice (the add-on idea of the CDK EKS Blueprints, typed).

Each service module declares a `ServiceSlice`: its config key under `platform:services`, its
namespace and why the tenant policies skip it, its chart pin, the OIDC redirect URIs it needs
from OpenUnison, and how it is declared: on the control plane from the `ControlPlaneParts` it
needs (`declare`), on each cluster it runs on (an add-on: `addon`, a `ChartAddOn` class, or
`on_cluster`), and for each tenant (`tenant`). The registry (stacks/services.py) lists the slices; the composition loops over it.
Credentials are registered by the components themselves, next to the resources they describe.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

import pulumi
import pulumi_kubernetes as k8s

from components.aws import AwsWorkloadIdentity
from components.cluster import ApiServer, ClusterHandle
from components.backups import BackupStore
from components.egress import Reach, hold_namespace, hold_namespace_egress, hold_webhook
from components.common import AlertRoutes, Exposure, LdapUpstream, ObjectStoreTarget, OidcClient, OidcUpstream, PlatformGroups, PlatformNamespace, TcpEntrypoint
from components.helm import namespace, release, sized
from components.inventory import CredentialInventory
from components.tenancy import TenantArgs, TenantMembers, TenantPlatform



@dataclass(frozen=True)
class ServiceSettings:
    """A service's `platform:services.<key>` settings, validated by stacks/config.py."""

    enabled: bool = True
    chart_version: str | None = None
    replicas: int = 1
    storage: str = "10Gi"
    # Each container's requests and memory limit (sizing.cpu, .memory, .memoryLimit).
    resources: dict[str, Any] = field(default_factory=dict, hash=False)
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)  # the service's own settings (ServiceSlice.options)


@dataclass(frozen=True, kw_only=True)
class ServiceArgs:
    """What every service people sign in to shares: a hostname, an OIDC client, the groups, sizing."""

    exposure: Exposure
    oidc: OidcClient
    groups: PlatformGroups
    cert_manager: pulumi.Resource  # serves the ClusterIssuer named in exposure.cluster_issuer
    chart_version: str | None = None
    replicas: int = 1
    resources: dict[str, Any] = field(default_factory=dict)  # each container's requests and memory limit
    inventory: CredentialInventory = field(default_factory=CredentialInventory)  # where its credentials go

    @classmethod
    def extend(cls, base: ServiceArgs, **extra: Any) -> Self:
        """This service's Args: the shared ones of `base` and the service's own `extra`."""
        return cls(**{f.name: getattr(base, f.name) for f in fields(base)}, **extra)


@dataclass(frozen=True, kw_only=True)
class StatefulServiceArgs(ServiceArgs):
    """What GitLab, Harbor and Vault share beyond that: data to protect, storage, AWS."""

    protect: bool = False
    storage: str = "10Gi"
    aws: AwsWorkloadIdentity | None = None  # on EKS: S3 or KMS through workload identity
    backups: BackupStore | None = None  # where its scheduled backups go (platform:backups); None: none


C = TypeVar("C")

CLUSTERS = ("control-plane", "dev", "prod")  # the clusters' names (stacks/platform.py CLUSTER_NAMES)
WORKLOAD_CLUSTERS = ("dev", "prod")  # where tenants run, one per environment


@dataclass(frozen=True)
class ServiceSlice(Generic[C]):
    """One platform service: what the composition and the policies need to know about it."""

    key: str  # platform:services.<key>, in snake case (the stack file says it in camelCase)
    namespace: PlatformNamespace
    chart: str  # key of components.versions.CHARTS
    # How the control plane gets it (None: not a control-plane service).
    declare: Callable[[ControlPlaneParts, ServiceSettings], C] | None = None
    # How each cluster in `clusters` gets it, as an add-on (None: not an add-on, or `addon` says).
    on_cluster: Callable[[ClusterParts, ServiceSettings], Any] | None = None
    # Or: on each cluster in `clusters`, this component with the shared AddOnArgs, its release after
    # those of the `after` slices on the same cluster (earlier in the registry; stacks/config.py requires them).
    addon: type[ChartAddOn[Any]] | None = None
    after: tuple[ServiceSlice[Any], ...] = ()
    clusters: tuple[str, ...] = CLUSTERS
    # What it declares for each tenant (None: nothing per tenant).
    tenant: Callable[[TenantParts], object] | None = None
    default_replicas: int = 1
    # The OIDC redirect URIs it registers with OpenUnison, given its hostname; None: not a client.
    redirect_uris: Callable[[str], tuple[str, ...]] | None = None
    # Stack outputs beyond its URL.
    outputs: Callable[[C], Mapping[str, pulumi.Input[object]]] | None = None
    # Its own settings under platform:services.<key>, beyond the shared ones: snake-case name ->
    # (type, default), validated by stacks/config.py and handed to `declare` in ServiceSettings.options.
    options: Mapping[str, tuple[Any, Any]] = field(default_factory=dict, hash=False)

    @property
    def is_add_on(self) -> bool:
        return self.on_cluster is not None or self.addon is not None

    def declare_on(self, parts: ClusterParts, settings: ServiceSettings) -> Any:
        """What it declares on `parts.cluster`: its `on_cluster`, else its `addon` named after its key."""
        if self.on_cluster is not None:
            return self.on_cluster(parts, settings)
        assert self.addon is not None, f"{self.key} is not an add-on"
        name = f"{parts.cluster.role}-{self.key.replace('_', '-')}"
        before = [parts.get(service) for service in self.after]
        assert None not in before, f"stacks/config.py refuses {self.key} without {', '.join(s.key for s in self.after)}"
        after = [component.release for component in before]
        return self.addon(name, parts.cluster, self, AddOnArgs(settings=settings, inventory=parts.inventory, after=after,
                                                               control_plane_ingress=parts.control_plane_ingress))

    def release(
        self,
        cluster: ClusterHandle,
        parent: pulumi.Resource,
        settings: ServiceSettings,
        values: dict[str, Any],
        *sized_at: str,
        ns: k8s.core.v1.Namespace | None = None,
        depends_on: Sequence[pulumi.Resource] = (),
    ) -> k8s.helm.v3.Release:
        """The slice's chart released under its own name in the slice's namespace (`ns`, else a new one), at
        the settings' chart version, with their resources at each `sized_at` path (components.helm.sized)."""
        ns = ns if ns is not None else namespace(self.namespace, cluster, parent)
        return release(
            self.chart, self.chart, ns, sized(values, settings.resources, *sized_at), cluster, parent,
            version=settings.chart_version, depends_on=depends_on,
        )


@dataclass
class ClusterParts:
    """One cluster as its add-ons are declared on it, in registry order."""

    cluster: ClusterHandle
    domain: str
    protect: bool
    platform_namespaces: tuple[PlatformNamespace, ...]
    inventory: CredentialInventory
    declared: dict[str, Any] = field(default_factory=dict)  # slice key -> what on_cluster returned
    # Workload clusters (declared after the control plane): public certificates by ACME DNS-01
    # (EKS with platform:dns), else the control plane's root CA, with which the program signs their wildcard.
    acme: AcmeSettings | None = None
    ca: CertificateAuthority | None = None
    # Another slice's settings by key (an add-on with stores of its own reads `data_stores`'), and
    # the kubeconfig stack's object store (platform:objectStore), where in-cluster stores back up.
    service_settings: Callable[[str], ServiceSettings] | None = None
    object_store: ObjectStoreTarget | None = None
    # Workload clusters: the control plane's Harbor provider (None: Harbor is off), for add-ons Harbor talks to.
    harbor_provider: pulumi.ProviderResource | None = None
    # Workload clusters: the stack's backup store (platform:backups; None: unset), where Velero writes.
    backups: BackupStore | None = None
    # Workload clusters: where the control plane's load balancer is (vault.<domain> and the other public names):
    # stacks/control_plane.py control_plane_ingress (EKS: its NLB's addresses; kubeconfig stacks: its MetalLB pool).
    control_plane_ingress: tuple[pulumi.Input[str], ...] = ()
    # Workload clusters: the domain their ingress serves, `<tenant>.<env>.<apps_domain>` (platform:appsDomain, another
    # site than `domain`'s so that tenants' cookies never reach the platform; `domain` on stacks without it). `acme`
    # there is that domain's zone.
    apps_domain: str | None = None
    # Workload clusters: tenant namespace -> its tenant, for tenants with nodes of their own (platform:tenants[].dedicatedNodes).
    dedicated_namespaces: Mapping[str, str] = field(default_factory=dict)
    # Where this cluster's alerts go (platform:alerting; components/alerting.py).
    alert_routes: AlertRoutes = field(default_factory=AlertRoutes)

    @property
    def served_domain(self) -> str:
        """`apps_domain`, which every workload cluster's parts name."""
        assert self.apps_domain is not None, "stacks.platform names the apps' domain for every workload cluster"
        return self.apps_domain

    def get(self, service: ServiceSlice[Any]) -> Any | None:
        """What `service` declared on this cluster (earlier in the registry), or None."""
        return self.declared.get(service.key)

    @property
    def eks(self) -> tuple[AwsWorkloadIdentity, pulumi.Output[str]] | None:
        """On EKS, what an add-on calling AWS needs: the cluster's workload identity and EKS name; else None."""
        identity, name = self.cluster.aws_identity, self.cluster.eks_cluster_name
        return (identity, name) if identity is not None and name is not None else None


A = TypeVar("A", bound="AddOnArgs")


@dataclass(frozen=True, kw_only=True)
class AddOnArgs:
    """What a chart add-on is declared with on a cluster; an add-on that needs more extends it."""

    settings: ServiceSettings  # replicas, chart version, sizing, its options
    inventory: CredentialInventory = field(default_factory=CredentialInventory)  # where its credentials go
    after: Sequence[pulumi.Resource] = ()  # what its release waits for
    control_plane_ingress: tuple[pulumi.Input[str], ...] = ()  # ClusterParts.control_plane_ingress


class ChartAddOn(pulumi.ComponentResource, Generic[A], metaclass=ABCMeta):
    """An add-on that is its slice's chart release on a cluster (the CDK EKS Blueprints' HelmAddOn).

    A subclass gives its type token, the chart's values and the paths its sizing goes to, in
    `prepare` what the values name (an IAM role), and in `extend` what it declares beside the
    release (its credentials, objects of the chart's CRDs).
    """

    type_token: ClassVar[str]  # platform:<module>:<Class>
    sized_at: ClassVar[tuple[str, ...]] = ("",)  # where the settings' resources go (components.helm.sized)
    # An admission webhook's container port: its namespace then takes connections there only (egress.hold_webhook).
    webhook_port: ClassVar[int | None] = None
    # No webhook, and no other pod needs to connect to it: its namespace takes its own pods only (egress.hold_namespace).
    own_pods_only: ClassVar[bool] = False
    release: k8s.helm.v3.Release

    def __init__(
        self, name: str, cluster: ClusterHandle, service: ServiceSlice[Any], args: A, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__(self.type_token, name, None, opts)
        self.prepare(name, args)
        values = self.values(args)
        ns = namespace(service.namespace, cluster, self)
        held = self._hold(name, cluster, ns, args)
        self.release = service.release(
            cluster, self, args.settings, values, *self.sized_at, ns=ns, depends_on=[*args.after, *self.grants(name, cluster, ns), *held])
        self.extend(name, cluster, args)
        self.register_outputs(self.outputs())

    def _hold(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace, args: A) -> list[k8s.networking.v1.NetworkPolicy]:
        opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        held = hold_namespace_egress(name, ns, cluster.api_server, self.egress(args), opts)
        if self.webhook_port:
            return [*held, hold_webhook(name, ns, self.webhook_port, opts)]
        return [*held, *hold_namespace(name, ns, (), opts)] if self.own_pods_only else held

    @abstractmethod
    def egress(self, args: A) -> Sequence[Reach]:
        """Where its namespace's pods connect beyond the cluster DNS and its API server (egress.hold_namespace_egress),
        each with the reason its service needs it."""

    @abstractmethod
    def values(self, args: A) -> dict[str, Any]:
        """The chart's values for `args`."""

    def prepare(self, name: str, args: A) -> None:
        """What it declares before the release, for its values to name: nothing unless the subclass says."""

    def extend(self, name: str, cluster: ClusterHandle, args: A) -> None:
        """What it declares beside the release: nothing unless the subclass says."""

    def grants(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace) -> Sequence[pulumi.Resource]:
        """The rights it holds instead of the chart's (in `ns`, its namespace, or cluster-wide), which the release
        waits for: none unless the subclass says."""
        return ()

    def outputs(self) -> dict[str, Any]:
        return {"release": self.release.status}


@dataclass(frozen=True)
class TenantParts:
    """One tenant as the slices' tenant halves see it; their resources are children of `opts`' parent.

    `get` declares a slice's half the first time something needs it (ArgoCD's needs GitLab's
    repositories), so the registry's order does not have to follow the halves' dependencies.
    """

    tenant: TenantArgs
    namespaces: Mapping[str, str]  # environment -> the tenant's host namespace
    namespace_resources: Mapping[str, pulumi.Resource]  # environment -> what its resources wait for
    platform: TenantPlatform
    opts: pulumi.ResourceOptions
    _declared: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.tenant.name

    @property
    def members(self) -> TenantMembers:
        return self.tenant.members

    def get(self, service: ServiceSlice[C]) -> Any | None:
        """What `service` declared for this tenant, or None (it has no tenant half, or it is off)."""
        if service.key not in self._declared:
            self._declared[service.key] = service.tenant(self) if service.tenant is not None else None
        return self._declared[service.key]

    def addon(self, cluster: str, service: ServiceSlice[Any]) -> Any | None:
        """The add-on `service` declared on `cluster`, or None."""
        return self.platform.addons.get(cluster, {}).get(service.key)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA of the program's: the platform root (kubeconfig stacks), which signs the workload clusters' wildcards, or a
    backend's internal CA (components/backend_tls.py). Its key is a Pulumi secret no cluster object holds, but the
    root's ClusterIssuer Secret on the control plane."""

    key_pem: pulumi.Output[str]  # a Pulumi secret
    cert_pem: pulumi.Output[str]


@dataclass(frozen=True)
class AcmeSettings:
    """Public certificates by ACME DNS-01 in a Route 53 zone (EKS control planes)."""

    email: str
    server: str
    hosted_zone_id: str


@dataclass(frozen=True)
class PublicDns:
    """ACME settings and the AWS identity that reaches Route 53 with them."""

    acme: AcmeSettings
    aws: AwsWorkloadIdentity


@dataclass(frozen=True)
class EdgeSettings:
    """The platform-wide settings the control plane's services are declared with."""

    domain: str
    groups: PlatformGroups
    protect: bool
    upstream: OidcUpstream | LdapUpstream  # OpenUnison's identity source
    acme: AcmeSettings | None  # None: the platform's own CA signs every certificate
    object_store: ObjectStoreTarget | None = None  # kubeconfig stacks: Harbor's images, database backups
    pipeline_project: str = "platform/platform-bootstrap"  # this repository in the platform's GitLab
    api_servers: tuple[ApiServer, ...] = ()  # every cluster's, where the platform's pipeline runs Pulumi


class CertificateIssuer(Protocol):
    """cert-manager with the platform's ClusterIssuer (components/tls.py)."""

    release: pulumi.Resource
    issuer_name: str
    ca_bundle: pulumi.Output[str]


class IngressController(Protocol):
    """The platform's ingress (components/ingress.py)."""

    release: pulumi.Resource
    ssh: TcpEntrypoint
    addresses: Sequence[pulumi.Output[str]]  # its load balancer's, as /32 CIDRs, where the program owns them (EKS)

    def publish(self, hostname: str) -> None: ...

    def serve(self, namespaces: Sequence[str]) -> Sequence[pulumi.Resource]: ...


class IdentityProvider(Protocol):
    """OpenUnison (components/openunison.py): the OIDC clients it registered, and its portal."""

    clients: Mapping[str, OidcClient]
    portal_url: str
    # What must exist before the issuer serves its discovery document, which relying parties
    # such as Vault fetch when they are configured.
    discovery_ready: Sequence[pulumi.Resource]


@dataclass(frozen=True)
class Foundation:
    """The slices every exposed service stands on; the registry names them."""

    tls: ServiceSlice[CertificateIssuer]
    ingress: ServiceSlice[IngressController]
    identity: ServiceSlice[IdentityProvider]


@dataclass
class ControlPlaneParts:
    """The control plane as it is declared: each slice asks for the parts it needs by slice.

    `get` declares a service the first time something needs it, so the registry's order does
    not have to follow the services' dependencies.
    """

    cluster: ClusterHandle
    settings: EdgeSettings
    inventory: CredentialInventory
    service_settings: Callable[[str], ServiceSettings]
    slices: tuple[ServiceSlice[Any], ...]
    foundation: Foundation
    backups: BackupStore | None = None  # the stack's backup bucket (platform:backups)
    _declared: dict[str, Any] = field(default_factory=dict)

    def get(self, service: ServiceSlice[C]) -> C | None:
        """The declared service, or None when its config disables it."""
        if service.key not in self._declared:
            settings = self.service_settings(service.key)
            if service.declare is None:
                raise ValueError(f"{service.key} is not a control-plane service")
            self._declared[service.key] = service.declare(self, settings) if settings.enabled else None
        return self._declared[service.key]

    def require(self, service: ServiceSlice[C]) -> C:
        declared = self.get(service)
        if declared is None:
            raise ValueError(f"platform:services.{service.key} cannot be disabled: the control plane needs it")
        return declared

    @property
    def public_dns(self) -> PublicDns | None:
        """Public names and certificates in Route 53 (ACME DNS-01): an EKS control plane with a hosted zone."""
        identity, acme = self.cluster.aws_identity, self.settings.acme
        return PublicDns(acme, identity) if identity is not None and acme is not None else None

    @property
    def tls(self) -> CertificateIssuer:
        return self.require(self.foundation.tls)

    @property
    def ingress(self) -> IngressController:
        return self.require(self.foundation.ingress)

    @property
    def identity(self) -> IdentityProvider:
        return self.require(self.foundation.identity)

    def expose(self, service: str) -> Exposure:
        """A hostname `<service>.<domain>` behind the platform's ingress, with a platform certificate."""
        hostname = f"{service}.{self.settings.domain}"
        self.ingress.publish(hostname)
        return Exposure(
            hostname=hostname,
            cluster_issuer=self.tls.issuer_name,
            ca_bundle=self.tls.ca_bundle,
        )

    def service(self, service: ServiceSlice[Any], settings: ServiceSettings) -> ServiceArgs:
        """The Args every service people sign in to shares, for `service`."""
        return ServiceArgs(
            exposure=self.expose(service.key),
            oidc=self.identity.clients[service.key],
            groups=self.settings.groups,
            cert_manager=self.tls.release,
            chart_version=settings.chart_version,
            replicas=settings.replicas,
            resources=settings.resources,
            inventory=self.inventory,
        )

    def stateful(self, service: ServiceSlice[Any], settings: ServiceSettings) -> StatefulServiceArgs:
        """The Args every stateful service shares, for `service`."""
        return StatefulServiceArgs.extend(
            self.service(service, settings),
            protect=self.settings.protect,
            storage=settings.storage,
            aws=self.cluster.aws_identity,
            backups=self.backups,
        )

    def oidc_clients(self) -> dict[str, tuple[str, ...]]:
        """Redirect URIs by client, for every enabled service that signs people in with OpenUnison."""
        return {
            s.key: s.redirect_uris(f"{s.key}.{self.settings.domain}")
            for s in self.slices
            if s.redirect_uris is not None and self.service_settings(s.key).enabled
        }

