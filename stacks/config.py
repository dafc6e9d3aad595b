"""The typed stack configuration: every key under the `platform:` namespace.

Stack YAML -> `load_platform_config` -> `PlatformConfig` (validated, frozen) -> components.
A bad file raises `ConfigError`, whose message has one line per problem naming the
stack file, the key path (`platform:tenants[2].owners`), what is wrong and what is allowed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import ipaddress
import json
import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal, Mapping, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    create_model,
    model_validator,
)
import pulumi
from cryptography import x509
from pydantic.alias_generators import to_camel, to_snake
from publicsuffixlist import PublicSuffixList

from components.tenancy import ROLES, Isolation, OpsLayout, Severity
from components.tenant_names import namespace_name, sandbox_name
from components.tenant_supply_chain import PUBLIC_REGISTRIES
from components.cluster import NatGateways, Taint
from components.backups import WRITER_GRANTS, BackupTarget, writer_key_path
from components.common import QUANTITY, ConfigModel, Ipv4Cidr, ObjectStoreTarget, S3Key, ipv4_network, quantity
from components.data_stores import SERVER_NAME
from components.service import ServiceSettings, ServiceSlice
from components.versions import EKS_ADDONS, VCLUSTER_KUBERNETES_TAGS
from platformctl.stack_file import NAMESPACE, PLACEHOLDER, ConfigError, offboarding_problems, parse_value as _parse
from policy.gatekeeper import EXCEPTION_CAPABILITIES, EXCEPTION_VOLUME_TYPES
from stacks.services import PLATFORM_NAMESPACES, SERVICES

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")
# Also a GitLab username: no '@', and not ending in '.' or '.git'.
_USER_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_-])?$")
_K8S_VERSION = re.compile(r"^1\.(2[89]|3[0-9])$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$")
_CHART_VERSION = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+$")


def _exactly_one(model: BaseModel, first: str, second: str, note: str = "") -> None:
    """Refuse a model that sets both or neither of two alternative fields."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"set exactly one of '{first}' and '{second}'{note}")


def _refuse_repeats(values: list[str], what: str) -> None:
    """One error naming every value listed more than once."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"each {what} may be listed once; repeated: {', '.join(repeated)}")


def _listed_once(what: str, by: str | None = None) -> AfterValidator:
    """A list's validator: `_refuse_repeats` on its entries, or on each entry's attribute `by`."""
    def check(entries: list[Any]) -> list[Any]:
        _refuse_repeats([getattr(e, by) if by else e for e in entries], what)
        return entries

    return AfterValidator(check)


def _check(pattern: re.Pattern[str], allowed: str):
    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not valid; allowed: {allowed}")
        return value

    return AfterValidator(check)


DnsLabel = Annotated[
    str,
    Field(max_length=40),
    _check(_DNS_LABEL, "a DNS-1123 label: lower-case letters, digits and '-', starting and ending alphanumeric"),
]
# Names made from a tenant's must fit their own limits; the longest is its protected runner's Helm
# release, gitlab-runner-<tenant>-protected, and Helm refuses release names over 53 characters
# (tests/test_names.py checks every name made from a tenant's, at this length).
TENANT_NAME_MAX = 29
TenantName = Annotated[str, _check(
    re.compile(rf"^(?=.{{1,{TENANT_NAME_MAX}}}$){_DNS_LABEL.pattern[1:]}"),
    f"a DNS-1123 label of at most {TENANT_NAME_MAX} characters (lower-case letters, digits and '-', starting and ending "
    "alphanumeric): the Helm release gitlab-runner-<tenant>-protected must fit Helm's 53",
)]
DnsName = Annotated[str, _check(_DNS_NAME, "a lower-case DNS name with at least two labels, e.g. 'platform.example.com'")]
Quantity = Annotated[str, _check(QUANTITY, "a Kubernetes quantity such as '8', '500m', '16Gi'")]
UserId = Annotated[str, _check(_USER_ID, "a user id of the identity source that is also a GitLab username: letters, digits, '.', '_', '-', not ending in '.'")]
KubernetesVersion = Annotated[str, _check(_K8S_VERSION, "a supported minor version '1.28' to '1.39', as a string")]
Region = Annotated[str, _check(_REGION, "an AWS region such as 'eu-west-1'")]
ChartVersion = Annotated[str, _check(_CHART_VERSION, "an exact chart version such as '1.19.1' (no ranges, no 'latest')")]
SubnetId = Annotated[str, _check(_SUBNET_ID, "an EC2 subnet id such as 'subnet-0abc12345def67890'")]
IamArn = Annotated[str, _check(_ARN, "an IAM role or user ARN such as 'arn:aws:iam::123456789012:role/admin'")]


def _cidr(value: str) -> str:
    if not 16 <= ipv4_network(value, "10.40.0.0/16").prefixlen <= 24:
        raise ValueError(f"{value!r} is not valid; allowed: an IPv4 network from /16 to /24")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]


def _public_cidr(value: str) -> str:
    ipv4_network(value, "203.0.113.0/24")
    return value


PublicCidr = Annotated[str, AfterValidator(_public_cidr)]


Model = ConfigModel  # stack YAML: camelCase keys, as Pulumi config writes them; unknown keys are errors


# --- clusters -------------------------------------------------------------------------


class NodeSizes(Model):
    """An EKS node group's instances and sizes (totals over the cluster's zones)."""

    instance_types: list[str] = Field(min_length=1)
    min_size: int = Field(ge=0, le=1000)
    max_size: int = Field(ge=1, le=1000)
    desired_size: int = Field(ge=0, le=1000)
    disk_size_gib: int = Field(default=50, ge=20, le=16384)

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if not self.min_size <= self.desired_size <= self.max_size:
            raise ValueError("sizes must satisfy minSize <= desiredSize <= maxSize")
        return self


class NodeGroup(NodeSizes):
    name: DnsLabel
    labels: dict[str, str] = {}
    taints: list[Taint] = []  # e.g. a group for CI jobs only (services.gitlabRunner.jobNodes)


class DedicatedNodes(NodeSizes):
    """A tenant's nodes of its own on the dev and prod clusters (README: Tenants). On EKS, a node group `tenant-<tenant>`
    of these sizes on each; kubeconfig clusters ignore them (the operator taints and labels nodes), so all may be unset."""

    instance_types: list[str] = []  # required on EKS (PlatformConfig checks it)
    min_size: int = Field(default=1, ge=0, le=1000)
    max_size: int = Field(default=3, ge=1, le=1000)
    desired_size: int = Field(default=1, ge=0, le=1000)


class ExistingSubnets(Model):
    private: list[SubnetId] = Field(min_length=2)
    public: list[SubnetId] = []


class NewVpc(Model):
    cidr: Cidr
    # Empty means the region's zones a, b and c.
    availability_zones: list[Annotated[str, _check(re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$"), "a zone such as 'eu-west-1a'")]] = Field(default=[], max_length=6)
    nat_gateways: Annotated[NatGateways, Strict(False)] = NatGateways.PER_ZONE


class EndpointAccess(Model):
    public: bool = False
    private: bool = True
    public_cidrs: list[PublicCidr] = []

    @model_validator(mode="after")
    def _some_access(self) -> EndpointAccess:
        if not (self.public or self.private):
            raise ValueError("at least one of public and private must be true")
        if self.public_cidrs and not self.public:
            raise ValueError("publicCidrs needs public: true")
        if self.public and not self.public_cidrs:
            raise ValueError("public: true needs publicCidrs, the networks allowed to reach the API server")
        return self


EksVersion = Annotated[
    str, _check(re.compile("^(" + "|".join(re.escape(v) for v in EKS_ADDONS) + ")$"), f"one of {', '.join(EKS_ADDONS)} (versions with pinned add-ons)")
]


class EksSpec(Model):
    region: Region
    kubernetes_version: EksVersion
    vpc: NewVpc | None = None
    subnets: ExistingSubnets | None = None
    node_groups: list[NodeGroup] = Field(min_length=1)
    endpoint_access: EndpointAccess = EndpointAccess()
    admin_principal_arns: list[IamArn] = Field(min_length=1)

    @property
    def availability_zones(self) -> list[str]:
        """A new VPC's zones: those configured, else the region's a, b and c."""
        return list(self.vpc.availability_zones or [f"{self.region}{zone}" for zone in "abc"]) if self.vpc else []

    @model_validator(mode="after")
    def _network(self) -> EksSpec:
        _exactly_one(self, "vpc", "subnets", " (a new VPC, or existing subnet ids)")
        _refuse_repeats([g.name for g in self.node_groups], "node group name")
        return self


def _ca_data(value: str) -> str:
    """Base64 of one or more PEM certificates, as a kubeconfig's certificate-authority-data."""
    try:
        certificates = x509.load_pem_x509_certificates(base64.b64decode(value, validate=True))
    except (ValueError, binascii.Error):
        certificates = []
    if not certificates:
        raise ValueError("is not valid; allowed: the base64 of a PEM CA certificate bundle, as in a kubeconfig's certificate-authority-data")
    return value


HttpsUrl = Annotated[str, _check(re.compile(r"^https://[^\s/]+(/[^\s]*)?$"), "an https:// URL")]


class KubeconfigSpec(Model):
    path: str | None = None
    content: SecretStr | None = None
    context: str | None = None
    # How the control plane reaches this API server, and the CA that signs it: what ArgoCD
    # and Vault need to trust the cluster, declared so the plan never reads a live kubeconfig.
    server: HttpsUrl
    ca_data: Annotated[str, Field(max_length=65536), AfterValidator(_ca_data)]
    service_account_issuer: HttpsUrl | None = None
    kubernetes_version: KubernetesVersion = "1.33"
    # The check at `pulumi up` that the cluster's CNI enforces NetworkPolicy (components/netpol_check.py). Off, nothing
    # notices a CNI that ignores the platform's policies (README, Network).
    network_policy_check: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> KubeconfigSpec:
        _exactly_one(self, "path", "content", " (content with `pulumi config set --secret`)")
        return self


class ClusterSpec(Model):
    eks: EksSpec | None = None
    kubeconfig: KubeconfigSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> ClusterSpec:
        _exactly_one(self, "eks", "kubeconfig")
        return self

    @property
    def kubernetes_version(self) -> str:
        spec = self.eks or self.kubeconfig
        assert spec is not None
        return spec.kubernetes_version


class Clusters(Model):
    control_plane: ClusterSpec
    dev: ClusterSpec
    prod: ClusterSpec


# --- identity -------------------------------------------------------------------------


class OidcSource(Model):
    issuer: Annotated[str, Field(pattern=r"^https://[^\s]+$")]
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scopes: list[str] = ["openid", "email", "profile", "groups"]
    user_claim: str = "sub"
    groups_claim: str = "groups"


class LdapSource(Model):
    url: Annotated[str, Field(pattern=r"^ldaps://[^\s]+$")]
    bind_dn: str = Field(min_length=1)
    bind_password: SecretStr
    search_base: str = Field(min_length=1)
    # OpenUnison's directory support is Active Directory's schema.
    user_attribute: Literal["sAMAccountName"] = "sAMAccountName"
    group_attribute: Literal["memberOf"] = "memberOf"


GroupName = Annotated[
    str, _check(re.compile(r"^\S(.{0,254}\S)?$"), "a group name of the identity source (or an LDAP DN), no leading or trailing spaces")
]


class Identity(Model):
    oidc: OidcSource | None = None
    ldap: LdapSource | None = None
    cluster_admins: list[GroupName] = Field(min_length=1)
    system_approvers: list[GroupName] = Field(min_length=1)
    # Tenant users' GitLab accounts get <user>@<emailDomain>, the address the identity
    # source asserts, so OIDC sign-in links them.
    email_domain: DnsName

    @field_validator("cluster_admins", "system_approvers")
    @classmethod
    def _unique(cls, groups: list[str]) -> list[str]:
        _refuse_repeats(groups, "group")
        return groups

    @model_validator(mode="after")
    def _one_source(self) -> Identity:
        _exactly_one(self, "oidc", "ldap", " (the upstream identity source)")
        return self


# --- services -------------------------------------------------------------------------


class Sizing(Model):
    replicas: int = Field(default=1, ge=1, le=9)
    storage: Quantity = "10Gi"
    # Per container of the service's chart: CPU and memory requests, and the memory limit.
    cpu: Quantity = "100m"
    memory: Quantity = "256Mi"
    memory_limit: Quantity = "1Gi"

    def resources(self) -> dict[str, dict[str, str]]:
        """A container's `resources` for this sizing."""
        return {"requests": {"cpu": self.cpu, "memory": self.memory}, "limits": {"memory": self.memory_limit}}


class Service(Model):
    enabled: bool = True
    chart_version: ChartVersion | None = None
    sizing: Sizing = Sizing()


# Services that refuse fewer replicas, and why.
MIN_REPLICAS = {
    # Its webhook fails closed for every non-platform namespace: one restart or drain must leave
    # two replicas answering (the chart's PDB is set to minAvailable 2).
    "gatekeeper": (3, "Gatekeeper's webhook fails closed, so fewer replicas block admission during a restart or a node drain"),
    # A primary and at least one standby: failover needs somewhere to go.
    "data_stores": (2, "PostgreSQL and Redis fail over to a standby"),
}


class ServicesBase(Model):
    def settings(self, key: str) -> ServiceSettings:
        """The typed settings of service `key` (a field of this model)."""
        service: Service = getattr(self, key)
        return ServiceSettings(
            enabled=service.enabled,
            chart_version=service.chart_version,
            replicas=service.sizing.replicas,
            storage=service.sizing.storage,
            resources=service.sizing.resources(),
            options={name: getattr(service, name) for name in type(service).model_fields if name not in Service.model_fields},
        )

    @field_validator(*MIN_REPLICAS, check_fields=False)
    @classmethod
    def _min_replicas(cls, service: Service, info: ValidationInfo) -> Service:
        minimum, why = MIN_REPLICAS[info.field_name]
        if service.enabled and service.sizing.replicas < minimum:
            raise ValueError(f"sizing.replicas must be at least {minimum}: {why}")
        return service

    @model_validator(mode="after")
    def _workload_certificates(self) -> ServicesBase:
        # The workload clusters' ingress, metrics-server and External Secrets' webhook take their certificates from cert-manager there.
        needing = [key for key in ("workload_ingress", "metrics_server", "external_secrets") if getattr(self, key).enabled]
        if needing and not self.cert_manager.enabled:  # type: ignore[attr-defined]
            raise ValueError(
                f"certManager.enabled must be true while {' and '.join(to_camel(k) for k in needing)} "
                "are enabled: their certificates come from cert-manager on the workload clusters"
            )
        return self

    @model_validator(mode="after")
    def _p2p(self) -> ServicesBase:
        # Dragonfly mirrors Harbor on the nodes and publishes its manager to Harbor on the tenants' ingress.
        missing = [to_camel(k) for k in ("harbor", "workload_ingress") if not getattr(self, k).enabled]
        if self.dragonfly.enabled and missing:  # type: ignore[attr-defined]
            raise ValueError(
                f"dragonfly.enabled must be false while {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                "disabled: Dragonfly mirrors Harbor on the workload clusters' nodes and Harbor reaches its manager through their ingress"
            )
        return self


def _service_model(service: ServiceSlice[Any]) -> type[Service]:
    """Service, with the slice's own settings (ServiceSlice.options) where it has some."""
    if not service.options:
        return Service
    return create_model(f"{to_camel(service.key).title()}Service", __base__=Service, **service.options)  # type: ignore[call-overload]


# One key per service of the registry (stacks/services.py), with its default sizing.
Services = create_model(
    "Services",
    __base__=ServicesBase,
    **{s.key: (m, m(sizing=Sizing(replicas=s.default_replicas))) for s, m in ((s, _service_model(s)) for s in SERVICES)},  # type: ignore[call-overload]
)


class S3Bucket(Model):
    """A bucket of an S3-compatible store (MinIO, Ceph RGW, a cloud's S3) of a kubeconfig stack."""

    endpoint: HttpsUrl
    region: str = Field(default="us-east-1", min_length=1)
    bucket: Annotated[str, _check(re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), "an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-'")]
    # Where the endpoint's address is when private: the pods that use the store and hold egress policies
    # (GitLab's Rails tiers, Harbor's tiers that read blobs) reach it there, on its port; otherwise only on
    # public addresses.
    networks: list[Ipv4Cidr] = Field(default=[], validate_default=True)

    @field_validator("networks")
    @classmethod
    def _private_endpoint_in_networks(cls, networks: list[str], info: ValidationInfo) -> list[str]:
        """An endpoint at a private address outside `networks` would be unreachable. (A host name's address is not
        known at preview.)"""
        host = urlsplit(info.data.get("endpoint") or "").hostname or ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return networks
        if address.is_private and not any(address in ipaddress.ip_network(n) for n in networks):
            raise ValueError(f"the endpoint {host} is a private address, which the pods that use the store reach only "
                             f"on these networks; allowed: networks holding it, such as ['{host}/32']")
        return networks


class DatabaseArchiveKeys(Model):
    """`platform:objectStore.archiveKeys`: each control-plane database's own key for its archives, which the object
    store's administrator confines to postgres/<service>/ (README: Backups and restore), so one database taken over
    can neither forge nor delete the other's archives; kubeconfig stacks with platform:backups."""

    gitlab: S3Key | None = None  # CloudNativePG's base backups and WAL of GitLab's database
    harbor: S3Key | None = None  # and of Harbor's


class ObjectStore(S3Bucket):
    """An S3-compatible object store for kubeconfig stacks: Harbor's images, GitLab's objects and the
    PostgreSQL backups (EKS stacks use S3 buckets of their own)."""

    access_key_id: str = Field(min_length=1)
    secret_access_key: SecretStr
    watch_key: S3Key | None = None  # list-only, for the backups schedule (.ci/watch-keys writes an AWS credentials file)
    archive_keys: DatabaseArchiveKeys = DatabaseArchiveKeys()

    @model_validator(mode="before")
    @classmethod
    def _no_shared_archive_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "writerKeys" in data:
            raise ValueError(
                "writerKeys.postgres, one key for both databases' archives (whoever takes over one database could delete "
                "or forge the other's), is refused; allowed: a key per database in archiveKeys (gitlab, harbor), then "
                "remove writerKeys (README: Backups and restore, moving to a key per writer)")
        return data

    def target(self) -> ObjectStoreTarget:
        """The bucket as the components take it, its secret key kept a Pulumi secret."""
        return ObjectStoreTarget(
            endpoint=self.endpoint,
            region=self.region,
            bucket=self.bucket,
            access_key_id=self.access_key_id,
            secret_access_key=pulumi.Output.secret(self.secret_access_key.get_secret_value()),
            networks=tuple(self.networks),
        )


class Charts(Model):
    """Where `pulumi up` takes the charts from."""

    # Air-gapped: install each release from <localDir>/<chart>/<version> (filled and verified by
    # `python -m platformctl charts fetch`), relative to the project directory, not from its repository.
    local_dir: str | None = Field(default=None, min_length=1)


# --- tenants --------------------------------------------------------------------------


# Harbor keeps a project's storage quota in bytes as an int64.
HARBOR_MAX_BYTES = 2**63 - 1


def _positive(value: str) -> str:
    amount = quantity(value)
    if amount is not None and amount <= 0:
        raise ValueError(f"{value!r} is not valid; allowed: a quantity greater than zero")
    return value


def _harbor_storage(value: str) -> str:
    amount = quantity(value)
    if amount is not None and amount > HARBOR_MAX_BYTES // 2:
        raise ValueError(f"{value!r} is not valid; allowed: at most 4Ei, what Harbor's storage quota can hold")
    return value


PositiveQuantity = Annotated[Quantity, AfterValidator(_positive)]


class Quota(Model):
    cpu: PositiveQuantity = "8"
    memory: PositiveQuantity = "16Gi"
    storage: Annotated[PositiveQuantity, AfterValidator(_harbor_storage)] = "100Gi"
    # The nodes' local disk its containers and emptyDir volumes may take (a virtual cluster's control plane: 10Gi of it).
    ephemeral_storage: PositiveQuantity = "40Gi"


def _nfs_server(value: str) -> str:
    # An IPv4 address reads as a DNS name here: the server is matched as written, never resolved.
    if not (_DNS_NAME.match(value) or _DNS_LABEL.match(value)):
        raise ValueError(f"{value!r} is not valid; allowed: a lower-case DNS name or an IPv4 address")
    return value


def _export_path(value: str) -> str:
    # Whole components only: an NFS client walks `..` on the server, out of the export declared.
    parts = value.split("/")
    if not value.startswith("/") or any(p in (".", "..") for p in parts) or "//" in value or value != "/" and value.endswith("/"):
        raise ValueError(f"{value!r} is not valid; allowed: an absolute path without '.', '..', '//' or a trailing '/'")
    return value


class NfsExport(Model):
    """An NFS export a tenant's pods may mount: its server, and the path at or under which they mount."""

    server: Annotated[str, AfterValidator(_nfs_server)]
    path: Annotated[str, AfterValidator(_export_path)]


class PodSecurityException(Model):
    """Pod Security `restricted` less the allowances listed, in the environments listed: those
    namespaces enforce `baseline` with Pod Security Admission, and Gatekeeper holds them to
    restricted but for these (README: pod security exception). A merge request that adds or
    changes one needs a tenant owner's and a system approver's approval (`platformctl access`)."""

    reason: str = Field(min_length=10, max_length=500)
    environments: list[Literal["dev", "prod"]] = Field(default=["dev", "prod"], min_length=1)
    capabilities: list[Literal[EXCEPTION_CAPABILITIES]] = []  # type: ignore[valid-type]  # added besides NET_BIND_SERVICE
    privilege_escalation: bool = False
    run_as_root: bool = False
    volume_types: list[Literal[EXCEPTION_VOLUME_TYPES]] = []  # type: ignore[valid-type]
    # With `nfs` in volumeTypes: the only exports its pods may mount (any other server or path is refused).
    nfs_exports: list[NfsExport] = []

    @model_validator(mode="after")
    def _allows_something(self) -> PodSecurityException:
        for key, values in (("environments", self.environments), ("capabilities", self.capabilities),
                            ("volumeTypes", self.volume_types), ("nfsExports", [f"{e.server}:{e.path}" for e in self.nfs_exports])):
            _refuse_repeats(list(values), f"entry of {key}")
        if not (self.capabilities or self.privilege_escalation or self.run_as_root or self.volume_types):
            raise ValueError("allows nothing; allowed: at least one of capabilities, privilegeEscalation, runAsRoot, volumeTypes")
        if ("nfs" in self.volume_types) != bool(self.nfs_exports):
            raise ValueError("nfsExports must list the exports its pods may mount (server and path) exactly when volumeTypes lists nfs")
        return self


class Tenant(Model):
    name: TenantName
    owners: list[UserId] = Field(min_length=1)
    developers: list[UserId] = []
    ops: list[UserId] = []
    isolation: Annotated[Isolation, Strict(False)] = Isolation.NAMESPACE
    quota: Quota = Quota()
    pod_security_exception: PodSecurityException | None = None
    # Nodes no other tenant's pod lands on: containerd reuses a node's unpacked layers by the chain id an image's config
    # claims (README: P2P distribution, containerd's own store), so images that must stay private need them.
    dedicated_nodes: DedicatedNodes | None = None
    # The tenant's name before a rename: its resources keep their state (Pulumi aliases), and
    # those whose real names derive from the tenant's name are replaced (README: renaming a tenant).
    renamed_from: DnsLabel | None = None
    # Tenants onboarded before the ops repositories' per-environment folders: `root` keeps them as
    # they were, `moved` once their files are moved by hand (README: Ops repositories).
    ops_layout: Annotated[OpsLayout, Strict(False)] = OpsLayout.ENVIRONMENTS

    @model_validator(mode="after")
    def _one_role_per_user(self) -> Tenant:
        seen: dict[str, str] = {}
        for role in ("owners", "developers", "ops"):
            for user in getattr(self, role):
                if user in seen:
                    raise ValueError(f"user {user!r} is listed in both {seen[user]} and {role}; give each user one role")
                seen[user] = role
        return self


class Offboarding(Model):
    """A tenant leaving `platform:tenants`, or switching its isolation: the change that says so
    on purpose. Its GitLab group stays and its projects are archived, its Harbor project and
    Vault signing key are left in place (README: offboarding); `platformctl access` refuses a
    removal or switch without one, and a new tenant may not take the name while the entry stands."""

    tenant: DnsLabel
    reason: str = Field(min_length=10, max_length=500)


# --- DNS and public certificates (EKS) ------------------------------------------------


HostedZoneId = Annotated[str, _check(re.compile(r"^Z[A-Z0-9]{6,31}$"), "a Route 53 hosted zone id such as 'Z0123456789ABCDEFGHIJ'")]


class Dns(Model):
    """Route 53 zone for the platform's hostnames and ACME DNS-01 (needed when the control plane is EKS)."""

    hosted_zone_id: HostedZoneId
    # The zone of platform:appsDomain (another site's, so another zone): the workload clusters' wildcard records and
    # their DNS-01 challenges. Required with platform:appsDomain.
    apps_hosted_zone_id: HostedZoneId | None = None
    acme_email: Annotated[str, _check(re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"), "an e-mail address for the ACME account")]
    acme_server: HttpsUrl = "https://acme-v02.api.letsencrypt.org/directory"


# --- backups --------------------------------------------------------------------------

# Kubernetes CronJob schedules: five fields, no seconds, no "@every".
CronSchedule = Annotated[
    str, _check(re.compile(r"^(\S+\s+){4}\S+$"), "a five-field cron schedule such as '17 * * * *'")
]


class BackupSchedules(Model):
    vault: CronSchedule = "17 * * * *"  # raft snapshots hourly
    gitlab: CronSchedule = "0 2 * * *"  # backup-utility nightly
    harbor: CronSchedule = "30 3 * * *"  # the registry's storage nightly


class WriterKeys(Model):
    """`platform:backups.target.writerKeys`: each backup writer's own key to the target, which its administrator
    confines to the writer's prefix (README: Backups and restore), so a writer taken over cannot forge or overwrite
    another's backups. One per writer the stack declares: Vault's snapshots, GitLab's backup-utility and, with the
    target on the object store's endpoint, Harbor's registry copy."""

    vault: S3Key | None = None
    gitlab: S3Key | None = None
    harbor: S3Key | None = None


class BackupsTarget(S3Bucket):
    """`platform:backups.target`: the kubeconfig stack's backup bucket, apart from platform:objectStore's live data."""

    writer_keys: WriterKeys = WriterKeys()
    watch_key: S3Key | None = None  # list-only, for the backups schedule (.ci/watch-keys writes an AWS credentials file)

    @model_validator(mode="before")
    @classmethod
    def _no_shared_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"accessKeyId", "secretAccessKey"} & set(data):
            raise ValueError(
                "accessKeyId and secretAccessKey, one key for every backup writer (whoever takes over one could forge "
                "or overwrite the others' backups), are refused; allowed: a key per writer in writerKeys (vault, gitlab, "
                "harbor) and for the databases' archives platform:objectStore.archiveKeys (gitlab, harbor), then remove the "
                "shared key (README: Backups and restore, moving to a key per writer)")
        return data

    def target(self) -> BackupTarget:
        return BackupTarget(endpoint=self.endpoint, region=self.region, bucket=self.bucket, networks=tuple(self.networks))


class Backups(Model):
    """Scheduled, encrypted backups of Vault, GitLab and Harbor to object storage (components/backups.py)."""

    retention_days: int = Field(default=30, ge=1, le=3650)
    schedules: BackupSchedules = BackupSchedules()
    # EKS: the S3 Object Lock mode of the backup bucket (README: Backups and restore).
    object_lock: Literal["governance", "compliance"] = "governance"
    # Kubeconfig stacks: where the backups go, apart from platform:objectStore's live data.
    target: BackupsTarget | None = None
    # EKS: a second region where S3 and RDS keep a copy of every backup (README: Backups and restore).
    copy_region: Region | None = None


# --- alerting -------------------------------------------------------------------------


def _https_url(value: SecretStr) -> SecretStr:
    """A receiver's URL: HTTPS on 443, what Alertmanager's egress allows (components/alerting.py). The message never
    quotes the value: it is a secret."""
    if value.get_secret_value().startswith(PLACEHOLDER):
        return value  # a `secure:` value read offline (platformctl/stack_file.py): Pulumi checks the real one
    url = urlsplit(value.get_secret_value())
    try:
        port = url.port or 443
    except ValueError:
        port = 0
    if url.scheme != "https" or not url.hostname or port != 443:
        raise ValueError("not an https:// URL on port 443 (Alertmanager connects out on HTTPS 443 alone); "
                         "allowed: https://<host>/<path>, set with `pulumi config set --secret --path`")
    return value


HttpsUrl = Annotated[SecretStr, AfterValidator(_https_url)]


class AlertReceiver(Model):
    """Where every alert but the Watchdog goes: a webhook that takes Alertmanager's JSON, or a Slack incoming webhook."""

    url: HttpsUrl
    kind: Literal["webhook", "slack"] = "webhook"


class Heartbeats(Model):
    """Each cluster's dead man's switch (a healthchecks.io-style check URL): its Watchdog calls it every 5 minutes."""

    control_plane: HttpsUrl | None = None
    dev: HttpsUrl | None = None
    prod: HttpsUrl | None = None


class Alerting(Model):
    """platform:alerting: where the platform's alerts go (README: Alerts). Unset: they fire in Alertmanager alone."""

    receiver: AlertReceiver | None = None
    heartbeats: Heartbeats = Heartbeats()


# --- the platform's own pipeline ------------------------------------------------------

GitLabProjectPath = Annotated[
    str,
    _check(
        re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*(/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$"),
        "a GitLab project path 'group/project' (subgroups allowed)",
    ),
]


class Pipeline(Model):
    """This repository in the platform's GitLab: on EKS its pipelines get the preview and deploy roles."""

    project_path: GitLabProjectPath = "platform/platform-bootstrap"
    # The pipeline destroys and rebuilds this stack on a schedule (.gitlab-ci.yml rebuild-dev): its Vault then lets that
    # schedule's job, in the stack's own environment, log in as platform-admin (platform-deploy-scheduled). Dev's only.
    rebuild_schedule: bool = False


# --- software supply chain -------------------------------------------------------------

# The public registries the platform can proxy-cache.
PublicRegistry = Literal[tuple(PUBLIC_REGISTRIES)]  # type: ignore[valid-type]


def _iso_date(value: str) -> str:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not valid; allowed: a date YYYY-MM-DD such as '2026-06-30'") from None
    return value


# An accepted vulnerability is reviewed at least this often: no allowlist entry lives longer.
CVE_HORIZON_DAYS = 366


def _within_horizon(value: str) -> str:
    if date.fromisoformat(value) > date.today() + timedelta(days=CVE_HORIZON_DAYS):
        raise ValueError(f"{value!r} is too far ahead; allowed: a date at most {CVE_HORIZON_DAYS} days from today")
    return value


class CveException(Model):
    """One accepted vulnerability: ignored by the severity gate until `expires` (inclusive)."""

    id: Annotated[str, _check(re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$"), "a CVE id such as 'CVE-2024-12345'")]
    expires: Annotated[
        str, _check(re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), "a date YYYY-MM-DD"), AfterValidator(_iso_date),
        AfterValidator(_within_horizon),
    ]


class SigningKeys(Model):
    """How the cosign keys in Vault transit rotate, and how many versions the image verifier trusts
    (components/signing.py): an image signed just before a rotation keeps verifying for
    (trustedVersions - 1) x rotationDays at least."""

    rotation_days: int = Field(default=90, ge=7, le=365)
    # At least 2: with one, every rotation would refuse every running image's next pod.
    trusted_versions: int = Field(default=2, ge=2, le=12)


class SupplyChain(Model):
    """Harbor policy for every tenant project, the public registries proxied into quarantine, and signing keys."""

    severity: Annotated[Severity, Strict(False)] = Severity.HIGH  # pulls of images with a vulnerability at or above it are refused
    cve_allowlist: Annotated[list[CveException], _listed_once("CVE", by="id")] = []
    keep_last: int = Field(default=10, ge=1, le=1000)  # retention: the N most recently pushed per repository
    public_registries: Annotated[list[PublicRegistry], _listed_once("registry")] = ["docker.io", "ghcr.io", "quay.io", "registry.k8s.io"]
    signing_keys: SigningKeys = SigningKeys()

    @field_validator("public_registries")
    @classmethod
    def _keeps_trivy_databases(cls, registries: list[str]) -> list[str]:
        if "ghcr.io" not in registries:  # Trivy's databases are promoted from its cache (promote-trivy-db)
            raise ValueError("must include ghcr.io: every scan reads Trivy's vulnerability databases, promoted from its proxy cache")
        return registries


# --- the whole platform ---------------------------------------------------------------


class PlatformConfig(Model):
    domain: DnsName
    # Where tenants' apps are served (`<tenant>.<env>.<appsDomain>`): a site of its own, so that no cookie a tenant's app
    # sets reaches the platform's hosts (`_apps_domain_rules`). Unset: under `domain`, as before, with a warning.
    apps_domain: DnsName | None = None
    clusters: Clusters
    identity: Identity
    dns: Dns | None = None
    services: Services = Services()
    tenants: Annotated[list[Tenant], _listed_once("tenant name", by="name")] = []
    offboarding: Annotated[list[Offboarding], _listed_once("offboarded tenant", by="tenant")] = []
    protect: bool | None = None
    pipeline: Pipeline = Pipeline()
    supply_chain: SupplyChain = SupplyChain()
    charts: Charts = Charts()
    object_store: ObjectStore | None = None
    backups: Backups | None = None
    alerting: Alerting = Alerting()

    @property
    def tenant_domain(self) -> str:
        """The domain under which tenants' apps are served: `<tenant>.<env>.<tenant_domain>`."""
        return self.apps_domain or self.domain

    def virtual_cluster_versions(self) -> list[str]:
        """Workload clusters whose Kubernetes has no pinned vCluster image, when a tenant needs one."""
        if not any(t.isolation == "vcluster" for t in self.tenants):
            return []
        return [
            f"{NAMESPACE}:clusters.{name}.{'eks' if spec.eks else 'kubeconfig'}.kubernetesVersion: Kubernetes "
            f"{spec.kubernetes_version} has no pinned vCluster Kubernetes image for tenants with isolation 'vcluster'; "
            f"allowed: {', '.join(VCLUSTER_KUBERNETES_TAGS)}"
            for name, spec in (("dev", self.clusters.dev), ("prod", self.clusters.prod))
            if spec.kubernetes_version not in VCLUSTER_KUBERNETES_TAGS
        ]

    @field_validator("tenants")
    @classmethod
    def _renames(cls, tenants: list[Tenant]) -> list[Tenant]:
        names = {t.name for t in tenants}
        for tenant in tenants:
            if tenant.renamed_from in names:
                raise ValueError(f"tenant {tenant.name!r} is renamed from {tenant.renamed_from!r}, which is a tenant too; "
                                 "allowed: the former name of a tenant no longer listed")
        _refuse_repeats([t.renamed_from for t in tenants if t.renamed_from], "former tenant name (renamedFrom)")
        return tenants

    def collisions(self) -> list[str]:
        """What no single key shows: colliding names, overlapping networks, private paths, pools on EKS,
        node groups smaller than their zones, unpinned vCluster versions; a line each."""
        return [*_name_collisions(self), *_network_overlaps(self), *_private_paths(self), *_pools_on_eks(self),
                *_zone_groups(self), *self.virtual_cluster_versions()]


# Names a tenant may not take: Harbor's own and the platform's projects (`approved`, the
# proxy caches `proxy-*`), GitLab's reserved top-level paths, and what the platform names itself.
RESERVED_TENANT_NAMES = frozenset({
    "library", "approved", "platform", "sandbox",
    # GitLab reserved top-level paths (lib/gitlab/path_regex.rb TOP_LEVEL_ROUTES, the ones a DNS label can spell)
    "admin", "api", "assets", "dashboard", "explore", "favicon", "files", "groups", "health", "help", "import",
    "jwt", "login", "oauth", "profile", "projects", "public", "robots", "s", "search", "sent-notifications",
    "slash-command-logo", "snippets", "unsubscribes", "uploads", "users", "v2", "abuse-reports", "invites",
    "notification-settings", "ci", "toolbox", "-",
    # The platform's own name in each environment's subdomain, beside the tenants' hosts
    # <tenant>.<env>.<domain> where platform:appsDomain is unset: the management proxy oumgmt-proxy.<cluster>.<domain>.
    "oumgmt-proxy",
    # Dragonfly's manager, for Harbor's preheat, beside them on their ingress: dragonfly.<cluster>.<appsDomain>.
    "dragonfly",
})
RESERVED_TENANT_PREFIXES = ("proxy-", "sandbox-", "kube-", "platform-")
# A tenant's runner for protected refs is `<tenant>-protected` (components/gitlab_runner.py).
RESERVED_TENANT_SUFFIXES = ("-protected",)
# Accounts the platform holds in GitLab (and GitLab's own): no tenant member may take one.
RESERVED_USERS = frozenset({"root", "admin", "administrator", "platform-bot", "ghost", "support-bot", "alert-bot",
                            "security-bot", "automation-bot", "project_bot", "gitlab", "openunison", "argocd"})


def _name_collisions(config: PlatformConfig) -> list[str]:
    problems: list[str] = []
    platform_group = config.pipeline.project_path.split("/", 1)[0].lower()
    platform_groups = {g.lower(): f"identity.{key}" for key in ("clusterAdmins", "systemApprovers")
                       for g in getattr(config.identity, "cluster_admins" if key == "clusterAdmins" else "system_approvers")}
    first_user: dict[str, str] = {}
    namespaces: dict[str, str] = {}
    group_paths = {name: "reserved" for name in RESERVED_TENANT_NAMES} | {platform_group: "the platform's group"} | {
        t.name: f"tenant {t.name}" for t in config.tenants}
    for i, tenant in enumerate(config.tenants):
        where = f"{NAMESPACE}:tenants[{i}]"
        if (tenant.name in RESERVED_TENANT_NAMES | RESERVED_USERS or tenant.name.startswith(RESERVED_TENANT_PREFIXES)
                or tenant.name.endswith(RESERVED_TENANT_SUFFIXES) or tenant.name == platform_group):
            problems.append(
                f"{where}.name: {tenant.name!r} is reserved (a Harbor or GitLab system name or account, the platform's own group "
                f"{platform_group!r}, a prefix {', '.join(RESERVED_TENANT_PREFIXES)} or a suffix "
                f"{', '.join(RESERVED_TENANT_SUFFIXES)}); allowed: another name"
            )
        for role in ROLES:
            group = f"{tenant.name}-{role}".lower()
            if group in platform_groups:
                problems.append(
                    f"{where}.name: the tenant group {group!r} is also platform group {platform_groups[group]}; "
                    "allowed: platform groups and tenant groups disjoint"
                )
            for j, user in enumerate(getattr(tenant, role)):
                key = user.lower()
                if key in RESERVED_USERS:
                    problems.append(f"{where}.{role}[{j}]: {user!r} is a platform or GitLab account; allowed: a person's own id")
                elif key in group_paths:
                    # GitLab users and groups share one namespace of top-level paths.
                    problems.append(f"{where}.{role}[{j}]: {user!r} is also a GitLab group path ({group_paths[key]}); allowed: another id")
                elif key in first_user and first_user[key] != user:
                    problems.append(
                        f"{where}.{role}[{j}]: {user!r} differs from {first_user[key]!r} only in case, and GitLab usernames "
                        "ignore case; allowed: one spelling per user"
                    )
                first_user.setdefault(key, user)
        for environment in ("dev", "prod"):
            namespaces.setdefault(namespace_name(tenant.name, environment), f"{where}.name")
    developers = {u: f"{NAMESPACE}:tenants[{i}].developers[{j}]" for i, t in reversed(list(enumerate(config.tenants)))
                  for j, u in reversed(list(enumerate(t.developers)))}
    for user, where in sorted(developers.items(), key=lambda item: item[1]):
        sandbox = namespace_name(sandbox_name(user), "dev")
        if sandbox in namespaces:
            problems.append(f"{where}: {user!r}'s sandbox namespace {sandbox!r} is already {namespaces[sandbox]}'s; allowed: another name")
        namespaces.setdefault(sandbox, where)
    for namespace, where in namespaces.items():
        if namespace in {n.name for n in PLATFORM_NAMESPACES}:
            problems.append(f"{where}: the namespace {namespace!r} is the platform's; allowed: another name")
    # Tenants' namespaces only: a sandbox serves no host (its PlatformTenantIngressHosts allows none).
    tenant_namespaces = {namespace_name(t.name, e): f"{NAMESPACE}:tenants[{i}].name"
                         for i, t in enumerate(config.tenants) for e in ("dev", "prod")}
    for namespace, where in tenant_namespaces.items():
        problems += _extended_namespace(namespace, where, tenant_namespaces)
    return problems


def _extended_namespace(namespace: str, where: str, namespaces: Mapping[str, str]) -> list[str]:
    """A tenant's namespace that is another's and a '-' more: the tenants' Traefik names an
    Ingress's backend `<namespace>-<service>-<port>` and keeps one server list per name (traefik v3.6.2
    pkg/provider/kubernetes/ingress/kubernetes.go:354-355, the later replaces the earlier), so the
    shorter's Service `<rest>-<s>` would be the longer's `<s>`: both hosts served by one tenant's pods,
    and one tenant's traffic counted as the other's in the canary analyses (components/prometheus.py)."""
    parts = namespace.split("-")
    return [
        f"{where}: its namespace {namespace!r} begins with {prefix!r} ({namespaces[prefix]}) and a '-', on the same cluster, "
        f"so Traefik would take that namespace's Service '{namespace[len(prefix) + 1:]}-<name>' for this one's '<name>'; "
        f"allowed: a name whose namespaces do not begin with another tenant's namespace and a '-'"
        # Both end in their environment (namespace_name): the same one, the same cluster.
        for prefix in ("-".join(parts[:i]) for i in range(1, len(parts)) if parts[i - 1] == parts[-1]) if prefix in namespaces
    ]


@functools.cache
def public_suffixes() -> PublicSuffixList:
    """The Public Suffix List the pinned package ships (no fetch), parsed once and only where an appsDomain is checked."""
    return PublicSuffixList()


def _apps_domain_rules(config: PlatformConfig) -> list[str]:
    """platform:appsDomain must be a site other than platform:domain's: browsers let a page set cookies for any parent
    of its host that is no public suffix (RFC 6265 5.3 step 5, the Public Suffix List), and send them to every host
    below it, so within one registrable domain a tenant's app reaches the platform's (tests/test_cookie_attacks.py)."""
    apps, dns = config.apps_domain, config.dns
    problems = []
    if apps is not None:
        site, platform_site = public_suffixes().privatesuffix(apps), public_suffixes().privatesuffix(config.domain)
        if site is None or site == platform_site:
            what = "is a public suffix" if site is None else f"is under {site}, platform:domain's registrable domain too"
            problems.append(
                f"{NAMESPACE}:appsDomain: {apps!r} {what}; allowed: a DNS name whose registrable domain (by the Public "
                f"Suffix List) differs from {platform_site!r}, such as a domain registered for the tenants' apps alone; a "
                "tenant's app could otherwise set cookies that every platform service receives"
            )
    if dns is not None and apps is not None and dns.apps_hosted_zone_id is None:
        problems.append(f"{NAMESPACE}:dns.appsHostedZoneId: required with platform:appsDomain and platform:dns; allowed: the "
                        "Route 53 hosted zone id of appsDomain's zone, where the workload clusters' wildcard records and ACME "
                        "challenges go")
    if dns is not None and apps is None and dns.apps_hosted_zone_id is not None:
        problems.append(f"{NAMESPACE}:dns.appsHostedZoneId: set without platform:appsDomain; allowed: unset, or set "
                        "platform:appsDomain too")
    return problems


def _eks_clusters(config: PlatformConfig) -> list[tuple[str, EksSpec]]:
    """(config key, spec) of each EKS cluster."""
    clusters = config.clusters
    found = [("controlPlane", clusters.control_plane.eks), ("dev", clusters.dev.eks), ("prod", clusters.prod.eks)]
    return [(key, spec) for key, spec in found if spec is not None]


def _network_overlaps(config: PlatformConfig) -> list[str]:
    problems: list[str] = []
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for key, spec in _eks_clusters(config):
        if spec.vpc is None:
            continue
        network = ipaddress.ip_network(spec.vpc.cidr)
        for other, other_network in seen:
            if network.overlaps(other_network):
                problems.append(
                    f"{NAMESPACE}:clusters.{key}.eks.vpc.cidr: {spec.vpc.cidr} overlaps clusters.{other}.eks.vpc.cidr "
                    f"{other_network}; allowed: VPC networks that do not overlap (they are peered and routed)"
                )
        seen.append((key, network))
    return problems


def _private_paths(config: PlatformConfig) -> list[str]:
    """Behind an EKS control plane, each EKS workload cluster is reached at its private endpoint
    through a VPC peering the program declares (components/network.py)."""
    control_plane = config.clusters.control_plane.eks
    if control_plane is None:
        return []
    workloads = [(key, spec) for key, spec in _eks_clusters(config) if key != "controlPlane"]
    problems = []
    for key, spec in ([("controlPlane", control_plane)] if workloads else []) + workloads:
        if spec.subnets is not None:
            problems.append(
                f"{NAMESPACE}:clusters.{key}.eks.subnets: the control plane reaches each EKS workload cluster's private "
                "endpoint through a VPC peering between VPCs the program creates; allowed here: eks.vpc"
            )
    for key, spec in workloads:
        access = spec.endpoint_access
        if access.public or not access.private:
            problems.append(
                f"{NAMESPACE}:clusters.{key}.eks.endpointAccess: the control plane reaches it through the VPC peering, "
                "and EKS publishes the private addresses under the endpoint's name only when public access is off; "
                "allowed behind an EKS control plane: private: true, public: false"
            )
    return problems


def dedicated_group_name(tenant: str) -> str:
    """The node group of a tenant with nodes of its own, on each EKS workload cluster."""
    return f"tenant-{tenant}"


def _zone_groups(config: PlatformConfig) -> list[str]:
    """Each node group is one per zone (components/cluster.py `_node_groups`), each of at most maxSize's share
    and at least one node: a maxSize below the zones would be raised unasked. The workload clusters' include each
    dedicated tenant's group (`tenant-<tenant>`, stacks/platform.py `dedicated_node_groups`)."""
    problems = []
    for key, spec in _eks_clusters(config):
        zones = len(spec.availability_zones) if spec.vpc else len(spec.subnets.private if spec.subnets else [])
        for i, group in enumerate(spec.node_groups):
            if group.max_size < zones:
                problems.append(
                    f"{NAMESPACE}:clusters.{key}.eks.nodeGroups[{i}].maxSize: {group.max_size} is below the cluster's {zones} "
                    f"zones; the group has a node group in each zone, of at least one node; allowed: {zones} or more"
                )
        if key == "controlPlane":
            continue
        for i, tenant in enumerate(config.tenants):
            nodes, where = tenant.dedicated_nodes, f"{NAMESPACE}:tenants[{i}].dedicatedNodes"
            if nodes is None:
                continue
            if not nodes.instance_types:
                problems.append(f"{where}.instanceTypes: empty; clusters.{key} is EKS, where the tenant gets a node group of "
                                "its own; allowed: one or more instance types such as m7i.large")
            if nodes.max_size < zones:
                problems.append(f"{where}.maxSize: {nodes.max_size} is below clusters.{key}'s {zones} zones; the tenant's group "
                                f"has a node group in each zone, of at least one node; allowed: {zones} or more")
            if (name := dedicated_group_name(tenant.name)) in {g.name for g in spec.node_groups}:
                problems.append(f"{NAMESPACE}:clusters.{key}.eks.nodeGroups: the name {name} is that of the group of "
                                f"tenants[{i}].dedicatedNodes; allowed: another name")
    return problems


def _pools_on_eks(config: PlatformConfig) -> list[str]:
    """MetalLB serves kubeconfig clusters only; EKS has the AWS Load Balancer Controller."""
    eks = {key for key, _ in _eks_clusters(config)}
    return [
        f"{NAMESPACE}:services.metallb.addresses.{key}: {key} is an EKS cluster, whose load balancers are the AWS Load "
        "Balancer Controller's; allowed: pools for kubeconfig clusters only"
        for key in config.services.settings("metallb").options["addresses"] if key in eks
    ]


def _stack_rules(config: PlatformConfig, stack: str) -> list[str]:
    """What only prod refuses."""
    if stack != "prod":
        return []
    problems = []
    if config.supply_chain.severity == "none":
        problems.append(f"{NAMESPACE}:supplyChain.severity: 'none' turns the vulnerability gate off; allowed in prod: low, medium, high, critical")
    for key, spec in _eks_clusters(config):
        for i, cidr in enumerate(spec.endpoint_access.public_cidrs):
            if ipaddress.ip_network(cidr).prefixlen == 0:
                problems.append(
                    f"{NAMESPACE}:clusters.{key}.eks.endpointAccess.publicCidrs[{i}]: {cidr} opens the API server to the "
                    "internet; allowed in prod: the networks that administer it"
                )
    return problems


def _data_store_rules(config: PlatformConfig) -> list[str]:
    """Where GitLab's and Harbor's data goes: on EKS the control plane's own VPC (RDS, ElastiCache);
    on a kubeconfig control plane platform:objectStore (Harbor's images, GitLab's objects, the database backups)."""
    users = [key for key in ("gitlab", "harbor") if config.services.settings(key).enabled]
    eks = config.clusters.control_plane.eks
    if not users:
        return []
    if eks is not None:
        return [] if eks.subnets is None else [
            f"{NAMESPACE}:clusters.controlPlane.eks.subnets: {' and '.join(users)}'s PostgreSQL and Redis (RDS, "
            "ElastiCache) go in the control plane's private subnets of a VPC the program creates; allowed: eks.vpc"
        ]
    if config.object_store is not None:
        return []
    return [
        f"{NAMESPACE}:objectStore: required when clusters.controlPlane is a kubeconfig cluster and {' or '.join(users)} is "
        "enabled (their PostgreSQL backups, Harbor's images and GitLab's objects go there); allowed: a mapping with endpoint, bucket, "
        "accessKeyId and secretAccessKey (set with `pulumi config set --secret`)"
    ]


# What names an RDS instance's backups: the ARN of its retained automated backups, or the identifier of
# an instance that still exists.
RDS_BACKUPS_ARN = re.compile(r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:auto-backup:ab-[a-z0-9]+$")
RDS_IDENTIFIER = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{0,61}[a-z0-9]$")


def _restore_rules(config: PlatformConfig) -> list[str]:
    """A restore names a database this stack declares, and backups of the kind its clusters keep."""
    settings = config.services.settings("data_stores")
    restores = settings.options["restore"]
    key, on_eks = f"{NAMESPACE}:services.dataStores", config.clusters.control_plane.eks is not None
    problems: list[str] = []
    for service in type(restores).model_fields:
        restore = getattr(restores, service)
        if restore is None:
            continue
        where = f"{key}.restore.{service}"
        if not (settings.enabled and config.services.settings(service).enabled):
            off = "dataStores" if not settings.enabled else service
            problems.append(f"{where}: services.{off} is disabled on this stack, so there is no database to restore; "
                            f"allowed: remove restore.{service}, or enable services.{off}")
        elif on_eks and not (RDS_BACKUPS_ARN.match(restore.source) or RDS_IDENTIFIER.match(restore.source)):
            problems.append(f"{where}.source: {restore.source!r} names no RDS backups; allowed: the ARN of the old instance's "
                            "retained automated backups (arn:aws:rds:<region>:<account>:auto-backup:ab-...), or the identifier "
                            "of an instance that still exists")
        elif not on_eks and not re.match(SERVER_NAME, restore.source):
            problems.append(f"{where}.source: {restore.source!r} is not a CloudNativePG server name; allowed: the old cluster's "
                            f"folder under s3://<objectStore bucket>/postgres/{service}/, the last part of the old stack's "
                            f"`databaseArchives.{service}` output (lower-case letters, digits, '-')")
    return problems


# Each runner's jobs, as `services.gitlabRunner` places them: the option and its config key.
JOB_PLACEMENTS = {"job_nodes": "jobNodes", "release_job_nodes": "releaseJobNodes", "platform_job_nodes": "platformJobNodes",
                  "deploy_job_nodes": "deployJobNodes"}


def _job_node_rules(config: PlatformConfig) -> list[str]:
    """CI jobs on nodes of their own: on an EKS control plane, each runner's jobs (tenants' any refs',
    tenants' protected refs', the platform's merge requests', its deploys') on a node group that
    carries their labels and taints, where neither the platform's services nor another runner's
    jobs can run, and a group without taints for everything else."""
    runner = config.services.settings("gitlab_runner")
    eks = config.clusters.control_plane.eks
    if not runner.enabled or eks is None:
        return []
    problems, hosting = [], {}
    for option, name in JOB_PLACEMENTS.items():
        key, nodes = f"{NAMESPACE}:services.gitlabRunner.{name}", runner.options[option]
        if nodes is None:
            if option in ("job_nodes", "release_job_nodes") or runner.options["platform_project_id"] is not None:  # that runner exists
                problems.append(f"{key}: required when clusters.controlPlane is EKS (builds and branches' code run apart "
                                "from the platform's services and from each other); allowed: a nodeSelector and taints that a "
                                "nodeGroups entry of its own carries (Pulumi.prod.yaml)")
            continue
        # Where these jobs can land: the selector's labels, and no taint they do not tolerate.
        hosting[name] = [g.name for g in eks.node_groups if nodes.node_selector.items() <= g.labels.items() and set(g.taints) <= set(nodes.taints)]
        if not [g for g in eks.node_groups if g.name in hosting[name] and set(nodes.taints) <= set(g.taints)]:
            problems.append(f"{key}: no node group of clusters.controlPlane.eks carries its nodeSelector labels and its taints; "
                            "allowed: a nodeGroups entry with those labels and taints")
        untainted = [g.name for g in eks.node_groups if g.name in hosting[name] and not g.taints]
        if untainted:
            problems.append(f"{key}: its jobs could run on {untainted}, beside the platform's services; allowed: a nodeSelector "
                            "only tainted groups carry")
    for one, other in itertools.combinations(hosting, 2):
        if shared := sorted(set(hosting[one]) & set(hosting[other])):
            problems.append(f"{NAMESPACE}:services.gitlabRunner.{other}: its jobs could run on {shared} beside those of "
                            f"services.gitlabRunner.{one}; allowed: labels and taints that set their node groups apart")
    if all(g.taints for g in eks.node_groups):
        problems.append(f"{NAMESPACE}:clusters.controlPlane.eks.nodeGroups: every group is tainted, so the platform's services "
                        "have no node; allowed: at least one group without taints")
    return problems


def _ingress_subnet_rules(config: PlatformConfig) -> list[str]:
    """The control plane's ingress on EKS is an internet-facing NLB at an EIP of the program's in each public subnet
    (components/ingress.py): existing subnets need public ones."""
    eks = config.clusters.control_plane.eks
    if eks is None or eks.subnets is None or eks.subnets.public:
        return []
    return [f"{NAMESPACE}:clusters.controlPlane.eks.subnets.public: required when clusters.controlPlane is EKS (its ingress "
            "is an internet-facing NLB, with an Elastic IP in each public subnet); allowed: the ids of public subnets "
            "(routed to an internet gateway) of the cluster's VPC, one per availability zone, such as ['subnet-0abc12345def67890']"]


def _p2p_store_rules(config: PlatformConfig) -> list[str]:
    """Dragonfly's manager keeps its stores on its own cluster: an EKS one in a VPC the program creates,
    a kubeconfig one backing up to platform:objectStore."""
    if not config.services.settings("dragonfly").enabled:
        return []
    problems = []
    for key in ("dev", "prod"):
        eks = getattr(config.clusters, key).eks
        if eks is not None and eks.vpc is None:
            problems.append(
                f"{NAMESPACE}:clusters.{key}.eks: Dragonfly's PostgreSQL and Redis (RDS, ElastiCache) go in the cluster's "
                "private subnets of a VPC the program creates; allowed: eks.vpc, or services.dragonfly.enabled: false"
            )
        if eks is None and config.object_store is None:
            problems.append(
                f"{NAMESPACE}:objectStore: required while services.dragonfly is enabled on the kubeconfig cluster "
                f"clusters.{key} (its PostgreSQL backs up there); allowed: a mapping with endpoint, bucket, accessKeyId "
                "and secretAccessKey, or services.dragonfly.enabled: false"
            )
    return problems


def _backup_rules(config: PlatformConfig, stack: str) -> list[str]:
    """Where the backups go: EKS stacks make their own bucket, kubeconfig stacks name one; prod has backups."""
    backups, on_eks = config.backups, config.clusters.control_plane.eks is not None
    if backups is None:
        return [f"{NAMESPACE}:backups: required in prod; allowed: a mapping (retentionDays, schedules, ...)"] if stack == "prod" else []
    if on_eks and backups.target is not None:
        return [f"{NAMESPACE}:backups.target: the EKS control plane gets its own encrypted, locked S3 bucket; allowed: unset"]
    if not on_eks and backups.target is None:
        return [f"{NAMESPACE}:backups.target: required on a kubeconfig control plane; allowed: a mapping with endpoint, bucket, accessKeyId, secretAccessKey"]
    return _copy_region_rules(config, on_eks) + _watch_key_rules(config)


def _copy_region_rules(config: PlatformConfig, on_eks: bool) -> list[str]:
    """The copy is S3's and RDS's cross-region replication of what the program makes: EKS only, and elsewhere than
    every cluster (a copy in a cluster's region is lost with that cluster's region)."""
    region = config.backups.copy_region if config.backups else None
    if region is None:
        return []
    key = f"{NAMESPACE}:backups.copyRegion"
    if not on_eks:
        return [f"{key}: only on an EKS control plane (S3 and RDS replicate the bucket and databases it makes); allowed: unset, "
                "and the target's own replication (README: Backups and restore)"]
    regions = sorted({spec.eks.region for spec in (config.clusters.control_plane, config.clusters.dev, config.clusters.prod) if spec.eks})
    if region in regions:
        return [f"{key}: {region!r} holds a cluster; allowed: another region than {', '.join(regions)}"]
    return []


def _writing_keys(config: PlatformConfig) -> dict[str, str]:
    """Config key -> access key id of every key the stack holds that writes to a store: the object
    store's, the backup writers' (Dragonfly's archives' included) and each cluster's Velero and node agents' keys, in that order."""
    keys = {f"{NAMESPACE}:objectStore": config.object_store.access_key_id} if config.object_store else {}
    keys |= {writer_key_path(writer): key.access_key_id for writer, key in (writer_keys(config) | archive_keys(config)).items()}
    velero = config.services.settings("velero").options
    return keys | {f"{NAMESPACE}:services.velero.{option}.{cluster}": key.access_key_id for option in ("targetKeys", "nodeAgentKeys")
                   for cluster in ("dev", "prod") if (key := getattr(velero[to_snake(option)], cluster)) is not None}


def writer_keys(config: PlatformConfig) -> dict[str, S3Key]:
    """Writer -> its own key, as the stack sets them (platform:backups.target.writerKeys; platform:objectStore.archiveKeys
    as `postgres-<service>`)."""
    target, store = config.backups.target if config.backups else None, config.object_store
    keys = {f"postgres-{service}": key for service, key in store.archive_keys} if store is not None else {}
    keys |= dict(target.writer_keys) if target is not None else {}
    return {writer: key for writer, key in keys.items() if key is not None}


def archive_keys(config: PlatformConfig) -> dict[str, S3Key]:
    """Writer (`dragonfly-<cluster>`) -> its own key, as platform:services.dragonfly.archiveKeys sets them."""
    keys = config.services.settings("dragonfly").options["archive_keys"]
    return {f"dragonfly-{cluster}": key for cluster in ("dev", "prod") if (key := getattr(keys, cluster)) is not None}


def _backup_writers(config: PlatformConfig) -> dict[str, str]:
    """Writer -> what it is, for each backup writer of a kubeconfig stack that needs a key of its own (components/backups.py).
    Dragonfly's archives on a kubeconfig workload cluster need one with backups or without: else the control plane's
    key (the archives' writer key, or the object store's own) would be in that cluster, where tenants run."""
    target, store = config.backups.target if config.backups else None, config.object_store
    archives = {
        f"dragonfly-{cluster}": f"the archives of Dragonfly's manager database on {cluster} (CloudNativePG there, where "
                                "tenants run: never a key of the control plane's)"
        for cluster in ("dev", "prod")
        if config.services.settings("dragonfly").enabled and getattr(config.clusters, cluster).eks is None
    }
    if target is None:
        return archives  # EKS: each writer's own IAM role; no backups: no writer but Dragonfly's archives
    enabled = {key: config.services.settings(key).enabled for key in ("vault", "gitlab", "harbor", "data_stores")}
    writers = {
        "vault": "Vault's snapshot job" if enabled["vault"] else None,
        "gitlab": "GitLab's backup-utility" if enabled["gitlab"] else None,
        "harbor": "Harbor's registry copy (the target is on the object store's endpoint)"
                  if enabled["harbor"] and store is not None and store.endpoint == target.endpoint else None,
        **{f"postgres-{service}": f"the archives of {title}'s PostgreSQL (CloudNativePG)"
           if enabled["data_stores"] and store is not None and enabled[service] else None
           for service, title in (("gitlab", "GitLab"), ("harbor", "Harbor"))},
    }
    return {writer: what for writer, what in writers.items() if what is not None} | archives


def _writer_key_rules(config: PlatformConfig) -> list[str]:
    """Kubeconfig stacks with backups (Dragonfly's archives without too): each writer has a key of its own, which no
    other key of the stack repeats, so a writer taken over cannot put objects under another's prefix (README: Backups
    and restore)."""
    needed, given = _backup_writers(config), writer_keys(config) | archive_keys(config)
    problems = [
        f"{writer_key_path(writer)}: required for {needed[writer]}; allowed: a mapping with accessKeyId and secretAccessKey, "
        f"a key of its own that the store's administrator confines to: {WRITER_GRANTS[writer]} (README: Backups and restore)"
        for writer in needed if writer not in given
    ] + [
        f"{writer_key_path(writer)}: no such backup writer on this stack; allowed: unset, or keys for {', '.join(needed) or 'none'}"
        for writer in given if writer not in needed
    ]
    writing = list(_writing_keys(config).items())
    for index, (path, key_id) in enumerate(writing):
        # Reported once, on the later of two keys (the object store's comes first, Velero's have their own rule).
        earlier = [other for other, other_id in writing[:index] if other_id == key_id]
        if (".writerKeys." in path or ".archiveKeys." in path) and earlier:
            problems.append(f"{path}.accessKeyId: the key of {earlier[0]}; allowed: a key of {path.rsplit('.', 1)[1]}'s own")
    return problems


def _watch_key_rules(config: PlatformConfig) -> list[str]:
    """A watch key lists only: never a key of the stack that writes (the stores' own, Velero's)."""
    writers = {key_id: path for path, key_id in reversed(_writing_keys(config).items())}  # the first path holding it
    stores = {"objectStore": config.object_store, "backups.target": config.backups.target if config.backups else None}
    return [
        f"{NAMESPACE}:{path}.watchKey.accessKeyId: the key of {writers[store.watch_key.access_key_id]}, which writes; "
        "allowed: a key of its own that may only list the bucket (README: Backups and restore)"
        for path, store in stores.items()
        if store is not None and store.watch_key is not None and store.watch_key.access_key_id in writers
    ]


def _tenant_backup_rules(config: PlatformConfig) -> list[str]:
    """Velero writes the tenants' backups to the stack's backup store: it needs one, reached the way the
    control plane's kind allows (an EKS bucket through IRSA, a kubeconfig stack's target with its key)."""
    if not config.services.settings("velero").enabled:
        return []
    if config.backups is None:
        return [f"{NAMESPACE}:services.velero: the tenants' backups go to the stack's backup store, which platform:backups "
                "declares; allowed: platform:backups set, or services.velero.enabled: false"]
    on_eks = config.clusters.control_plane.eks is not None
    store = "the EKS control plane's bucket, reached through IRSA" if on_eks else "platform:backups.target, reached with its key"
    problems = [
        f"{NAMESPACE}:services.velero: clusters.{key} is {'a kubeconfig' if on_eks else 'an EKS'} cluster, and Velero there "
        f"cannot write to {store}; allowed: workload clusters of the control plane's kind, or services.velero.enabled: false"
        for key in ("dev", "prod") if (getattr(config.clusters, key).eks is not None) != on_eks
    ]
    return problems + _node_agent_rules(config, on_eks) + _velero_key_rules(config, on_eks)


def _node_agent_rules(config: PlatformConfig, on_eks: bool) -> list[str]:
    """Kubeconfig clusters whose volumes Velero copies run its node agent, whose pods only Gatekeeper holds
    to the requester's node (PlatformNodeAgentPods), which it reads from the token: Kubernetes 1.32+ always puts it there."""
    environments = config.services.settings("velero").options["environments"]
    if on_eks or not environments:
        return []
    where = f"{NAMESPACE}:services.velero.environments"
    problems = [] if config.services.settings("gatekeeper").enabled else [
        f"{where}: on kubeconfig clusters Velero's node agent copies their volumes in pods it creates, which only Gatekeeper "
        "holds to its node, account and image (PlatformNodeAgentPods), and services.gatekeeper.enabled is false; allowed: "
        "Gatekeeper enabled, environments: [], or services.velero.enabled: false"]
    return problems + [
        f"{NAMESPACE}:clusters.{name}.kubeconfig.kubernetesVersion: {version}, and Velero's node agent there (in {where}) is held "
        "to its own node by the node name in its token, which Kubernetes puts there for certain from 1.32; allowed: '1.32' or later"
        for name in environments
        if tuple(map(int, (version := getattr(config.clusters, name).kubernetes_version).split("."))) < (1, 32)]


def _velero_key_rules(config: PlatformConfig, on_eks: bool) -> list[str]:
    """Kubeconfig stacks: each workload cluster's Velero has a key of its own to the backup target, and its node
    agents (where `environments` runs them) another, never one the stack holds for another store, cluster or for
    the other of the two: the node agents run on every node tenants' code runs on."""
    velero = config.services.settings("velero").options
    needed = {"targetKeys": (("dev", "prod"), "velero/{cluster}/"),
              "nodeAgentKeys": (tuple(velero["environments"]), "velero/{cluster}/kopia/, its node agents' alone")}
    problems, writing = [], list(_writing_keys(config).items())
    for option, (clusters, confined) in needed.items():
        keys, where = velero[to_snake(option)], f"{NAMESPACE}:services.velero.{option}"
        if on_eks:
            problems += [f"{where}: Velero on EKS reaches the bucket through IRSA; allowed: unset"] if keys.dev or keys.prod else []
            continue
        for cluster in clusters:
            key = getattr(keys, cluster)
            if key is None:
                problems.append(
                    f"{where}.{cluster}: required on kubeconfig stacks; allowed: a mapping with accessKeyId and secretAccessKey, a key of "
                    f"{cluster}'s own that the target's administrator confines to {confined.format(cluster=cluster)} (README: Tenants' volumes)")
                continue
            # Reported once, on the later of two keys (the stores' come first).
            earlier = [path for path, key_id in writing[:writing.index((f"{where}.{cluster}", key.access_key_id))] if key_id == key.access_key_id]
            if earlier:
                problems.append(f"{where}.{cluster}.accessKeyId: the key of {earlier[0]}; allowed: a key of {cluster}'s own")
    return problems


def _secret_leaves(model: BaseModel, path: str) -> list[str]:
    """The key paths of every secret value set in `model` (`identity.oidc.clientSecret`)."""
    found: list[str] = []
    for name, field in type(model).model_fields.items():
        value, key = getattr(model, name), f"{path}.{field.alias or name}"
        values = value if isinstance(value, list) else [value]
        for i, item in enumerate(values):
            item_key = f"{key}[{i}]" if isinstance(value, list) else key
            if isinstance(item, SecretStr):
                found.append(item_key)
            elif isinstance(item, BaseModel):
                found += _secret_leaves(item, item_key)
    return found


# Secret-bearing fields (documented in the README's reference); every SecretStr is checked.
SECRET_FIELDS = {
    "clusters": ("kubeconfig.content",),
    "identity": ("oidc.clientSecret", "ldap.bindPassword"),
    "objectStore": ("secretAccessKey", "watchKey.secretAccessKey", "archiveKeys.{gitlab,harbor}.secretAccessKey"),
    "backups": ("target.writerKeys.{vault,gitlab,harbor}.secretAccessKey", "target.watchKey.secretAccessKey"),
    "alerting": ("receiver.url", "heartbeats.{controlPlane,dev,prod}"),
    "services": ("harbor.replication[].accessSecret", "gitlab.railsSecret.*", "dragonfly.preheatTokens.dev", "dragonfly.preheatTokens.prod",
                 "velero.targetKeys.dev.secretAccessKey", "velero.targetKeys.prod.secretAccessKey",
                 "velero.nodeAgentKeys.dev.secretAccessKey", "velero.nodeAgentKeys.prod.secretAccessKey",
                 "dragonfly.archiveKeys.dev.secretAccessKey", "dragonfly.archiveKeys.prod.secretAccessKey"),
}


def _key_path(loc: tuple[Any, ...]) -> str:
    path = f"{NAMESPACE}:{loc[0]}" if loc else f"{NAMESPACE}"
    for part in loc[1:]:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at the parent of `loc`, for 'unknown key' messages."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind in _TYPE_NAMES:
        return f"got {type(error['input']).__name__} {json.dumps(error['input'], default=str)[:60]}; allowed: {_TYPE_NAMES[kind]}"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def load_platform_config(
    raw: Mapping[str, Any], *, stack: str, source: str, secret_keys: set[str],
    previous: Mapping[str, Any] | None = None,
) -> PlatformConfig:
    """Validate the `platform:*` entries of a stack's config.

    `raw` maps fully qualified keys (`platform:domain`) to their values as Pulumi hands
    them over; keys of other namespaces are ignored. `secret_keys` are the keys set with
    `--secret`. `previous`: the same stack's config at the base of the change (its stack
    file at a base commit, read the same way), whose tenants this one may remove or switch
    only with an offboarding entry. Raises ConfigError with every problem found.
    """
    values = {k.split(":", 1)[1]: _parse(v) for k, v in raw.items() if k.startswith(f"{NAMESPACE}:")}
    # Another namespace is a typo (`platfrom:tenants`) that would otherwise render as if the key were absent.
    problems: list[str] = [
        f"{key}: unknown key; allowed: keys of the '{NAMESPACE}' namespace "
        f"({', '.join(sorted(f.alias or n for n, f in PlatformConfig.model_fields.items()))})"
        for key in sorted(raw) if not key.startswith(f"{NAMESPACE}:")
    ]
    try:
        config = PlatformConfig.model_validate(values)
    except ValidationError as err:
        for e in err.errors():
            loc = tuple(e["loc"])
            line = f"{_key_path(loc)}: {_describe(e)}"
            if e["type"] == "extra_forbidden":
                allowed = _allowed_keys(PlatformConfig, loc)
                line = f"{_key_path(loc)}: unknown key; allowed: {', '.join(allowed)}"
            problems.append(line)
        raise ConfigError(source, problems) from None
    if config.protect is None:
        config = config.model_copy(update={"protect": stack == "prod"})

    # Each secret value must itself be secret: per leaf where the stack file says which leaves
    # are (`platform:identity.oidc.clientSecret`), per key where only the runtime's key secrecy is known.
    for leaf in _secret_leaves(config, ""):
        leaf = f"{NAMESPACE}:{leaf.removeprefix('.')}"
        key = re.split(r"[.\[]", leaf, maxsplit=1)[0]
        leaf_known = any(s.startswith(f"{key}.") or s.startswith(f"{key}[") for s in secret_keys)
        if (leaf not in secret_keys) if leaf_known else (key not in secret_keys):
            problems.append(
                f"{leaf}: holds a secret in plain text; allowed: set it with `pulumi config set --secret --path '{leaf}'`"
            )
    problems += config.collisions() + _stack_rules(config, stack)
    problems += _backup_rules(config, stack)
    if config.pipeline.rebuild_schedule and config.protect:
        problems.append(f"{NAMESPACE}:pipeline.rebuildSchedule: stack {stack} is protected (platform:protect), so no schedule may "
                        "destroy it nor log in to its Vault as platform-admin; allowed: false")
    if previous is not None:
        problems += offboarding_problems(dict(previous), dict(raw))
    if config.clusters.control_plane.eks is not None and config.dns is None:
        problems.append(f"{NAMESPACE}:dns: required when clusters.controlPlane is EKS; allowed: a mapping with hostedZoneId and acmeEmail")
    problems += _apps_domain_rules(config)
    problems += _data_store_rules(config)
    problems += _restore_rules(config)
    problems += _p2p_store_rules(config)
    problems += _job_node_rules(config)
    problems += _ingress_subnet_rules(config)
    problems += _tenant_backup_rules(config)
    problems += _writer_key_rules(config)
    if problems:
        raise ConfigError(source, problems)
    return config
