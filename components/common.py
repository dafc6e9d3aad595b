"""Small typed values the service components share."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated

import pulumi
import pulumi_tls as tls
import pulumiverse_time as time
from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr
from pydantic.alias_generators import to_camel



# A Kubernetes quantity: a number and an optional suffix (decimal SI, binary, or `m` for thousandths).
QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_QUANTITY_FACTORS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
                     "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(value: str) -> float | None:
    """What a Kubernetes quantity stands for (bytes, cores), or None where `value` is not one."""
    match = QUANTITY.match(value)
    return float(match.group(1)) * _QUANTITY_FACTORS[match.group(3) or ""] if match else None


class ConfigModel(BaseModel):
    """A mapping of stack config: camelCase keys, as Pulumi config writes them; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False, frozen=True, strict=True)


def _s3_key_id(value: str) -> str:
    if not re.fullmatch(r"[!-~]+", value):
        raise ValueError(f"{value!r} is not valid; allowed: printable ASCII without spaces, as an S3 key id")
    return value


# An S3 access key id of the stack's config: written into AWS credentials files and s3cmd configurations
# (the watch keys, GitLab's backup-utility, Velero's), where a line break would add settings.
S3KeyId = Annotated[str, AfterValidator(_s3_key_id)]


class S3Key(ConfigModel):
    """An access key to an S3-compatible store from the stack's config, its secret set with `config --secret`: a
    backup writer's, a watch key, Velero's or Dragonfly's archives'. Its store's administrator confines it."""

    access_key_id: S3KeyId
    secret_access_key: SecretStr


@dataclass(frozen=True)
class Exposure:
    """How a service is published: its hostname behind the platform's ingress, with a platform certificate."""

    hostname: str
    cluster_issuer: str  # cert-manager ClusterIssuer that signs the certificate
    ca_bundle: pulumi.Output[str]  # PEM bundle clients must trust for it (the platform CA)

    @property
    def url(self) -> str:
        return f"https://{self.hostname}"


@dataclass(frozen=True)
class OidcClient:
    """A relying party of OpenUnison. The secret is generated once and handed to both sides."""

    client_id: str
    client_secret: pulumi.Output[str]  # a Pulumi secret
    issuer_url: str  # OpenUnison's issuer
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")


@dataclass(frozen=True)
class PlatformGroups:
    """The platform-wide groups of the upstream identity source."""

    cluster_admins: list[str]
    system_approvers: list[str]


def checksum(secret: pulumi.Input[str]) -> pulumi.Output[str]:
    """SHA-256 of a secret, for annotations that make its readers reload when it changes.

    Plain on purpose, as Helm's `checksum/...` annotations are: the hash of a value holding 48
    random characters reveals nothing, while one secret value inside `metadata` or Helm
    `values` would make the SDK send that whole property as a secret (unreadable in diffs
    and in the plan).
    """
    return pulumi.Output.unsecret(
        pulumi.Output.from_input(secret).apply(lambda value: hashlib.sha256(value.encode()).hexdigest())
    )


def rotated_key(
    name: str, rotation: time.Rotating, parent: pulumi.Resource, algorithm: str = "ED25519", ecdsa_curve: str | None = None
) -> tls.PrivateKey:
    """A key pair that is replaced whenever `rotation` starts a new period (`pulumi up --refresh`).

    The key has no input that could change, so the rotation's timestamp is its replacement
    trigger: a new timestamp means a new key pair, and everything built from the key changes
    in the same run.
    """
    return tls.PrivateKey(
        name,
        algorithm=algorithm,
        ecdsa_curve=ecdsa_curve,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[rotation], replacement_trigger=rotation.rfc3339),
    )


@dataclass(frozen=True)
class OidcUpstream:
    """An upstream OpenID Connect provider OpenUnison sends users to."""

    issuer: str  # https://...; OpenUnison reads <issuer>/.well-known/openid-configuration
    client_id: str
    client_secret: pulumi.Output[str]  # a Pulumi secret
    scopes: tuple[str, ...] = ("openid", "email", "profile", "groups")
    user_claim: str = "sub"
    groups_claim: str = "groups"
    ca_bundle: pulumi.Input[str] | None = None  # PEM, when the provider's CA is not the platform's


@dataclass(frozen=True)
class LdapUpstream:
    """An upstream LDAP directory, through the charts' `active_directory` (ldaps) support.

    That support maps users by sAMAccountName and reads groups from memberOf (MyVD's
    ADLdapInsert); other schemas need a MyVD configuration of their own, so other
    attribute names are rejected rather than silently ignored.
    """

    url: str  # ldaps://host[:port]
    bind_dn: str
    bind_password: pulumi.Output[str]  # a Pulumi secret
    search_base: str
    user_attribute: str = "sAMAccountName"
    group_attribute: str = "memberOf"
    ca_bundle: pulumi.Input[str] | None = None  # PEM, when the directory's CA is not the platform's


@dataclass(frozen=True)
class TcpEntrypoint:
    """A Traefik entrypoint for plain TCP routes, exposed on the ingress load balancer."""

    name: str
    port: int  # the port clients connect to on the load balancer
    controller: pulumi.Resource  # the Traefik release: serves the entrypoint, installs the IngressRouteTCP CRD


@dataclass(frozen=True)
class Backend:
    """A Service the ingress routes to, reached by its in-cluster name (components/ingress.py `route`)."""

    service: str
    namespace: str
    port: int
    # A ServersTransport of this name in Traefik's namespace: Traefik speaks HTTPS to the backend and verifies it
    # there (components/backend_tls.py). None: plain HTTP (or TCP).
    transport: str | None = None

    @property
    def dns_name(self) -> str:
        return f"{self.service}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class PlatformNamespace:
    """A namespace of the platform itself, exempt from the tenant policies, and why."""

    name: str
    reason: str
    # False: Gatekeeper's webhook still reviews it (ArgoCD's, where tenant Applications live; Velero's,
    # where its node agent creates pods).
    webhook_exempt: bool = True


@dataclass(frozen=True)
class ObjectStoreTarget:
    """An S3-compatible bucket of a kubeconfig stack: platform:objectStore (live data) or platform:backups.target."""

    endpoint: str
    region: str
    bucket: str
    access_key_id: str
    secret_access_key: pulumi.Input[str]  # a Pulumi secret
    networks: tuple[str, ...] = ()  # where the endpoint's address is when private (its pods' egress)


@dataclass(frozen=True)
class AlertRoutes:
    """Where one cluster's Alertmanager sends (platform:alerting, components/alerting.py), its URLs Pulumi secrets."""

    receiver: pulumi.Input[str] | None = None  # every alert but the Watchdog; None: they reach nobody
    receiver_kind: str = "webhook"  # webhook (Alertmanager's JSON) or slack (an incoming webhook)
    heartbeat: pulumi.Input[str] | None = None  # this cluster's dead man's switch, which the Watchdog calls
    # The longest a workload cluster's Velero Schedules may go without a successful backup (their cron's longest gap
    # and a margin, as `platformctl backups check` allows); None: Velero is off.
    backup_max_age_seconds: int | None = None


def ipv4_network(value: str, example: str) -> ipaddress.IPv4Network:
    """`value` as an IPv4 network in CIDR form (no host bits set), or a config error naming what is allowed."""
    try:
        return ipaddress.IPv4Network(value)
    except ValueError:
        raise ValueError(f"{value!r} is not valid; allowed: an IPv4 network in CIDR form such as {example!r}") from None


def _ipv4_cidr(value: str) -> str:
    ipv4_network(value, "10.40.0.0/16")
    return value


Ipv4Cidr = Annotated[str, AfterValidator(_ipv4_cidr)]  # config: an IPv4 network in CIDR form
