"""Harbor on the control plane: the platform's registry, OIDC sign-in through OpenUnison,
Trivy scanning, S3 storage through workload identity on EKS.

Every secret the chart would otherwise randomize on each render (core, job service and
registry secrets, the XSRF key, the token-signing certificate, the registry's htpasswd) or
ship with a well-known default (admin and database passwords, the encryption key) comes from
`pulumi_random` / `pulumi_tls`, so upgrades are stable and nothing is guessable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls
import pulumiverse_harbor as harbor
from pydantic import Field, SecretStr

from components.aws import bucket_name, bucket_role, irsa_credential, private_bucket
from components.cluster import ClusterHandle
from components.common import Backend, ConfigModel, ObjectStoreTarget
from components.data_stores import SLICE as DATA_STORES, DataStores, ServiceStores, object_store_credential
from components.egress import Admit, dns, hold_egress, hold_namespace, object_stores, to_networks, to_pods
from components.helm import metadata, namespace, release, spread, workload_service_account, sized
from components.metallb import SLICE as METALLB, pool_networks
from components.ingress import HTTPS_PORT, UNSERVED_CLASS, LoadBalancerCidr, egress_to_platform, from_ingress_controller, load_balancer_networks, route
from components.inventory import STATE, Credential, CredentialInventory, external_secret, generated_password, internal_secret, program_certificate
from components.service import ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice, StatefulServiceArgs, TenantParts
from components.tenant_registry import TenantRegistry, TenantRegistryArgs, storage_gib
from components.tenant_supply_chain import trivy_databases

NAMESPACE = "harbor"
HTTP_PORT = 8080  # core's and the portal's container port (the chart's internalTLS off)


def tier(name: str) -> dict[str, str]:
    """The chart's labels of one Harbor tier's pods."""
    return {"app": "harbor", "component": name}


# Traefik reaches core and the portal, where harbor.<domain>'s routes go (`route`, PATHS); nothing outside
# the namespace reaches the database, Redis, the registry, the job service or Trivy.
INGRESS_ROUTED = [Admit(f"harbor-{name}-from-ingress", tier(name), [from_ingress_controller()], (HTTP_PORT,)) for name in ("core", "portal")]
# Harbor's tiers that use PostgreSQL: core (the chart's core-cm.yaml POSTGRESQL_*) and the job service
# (jobLoggers "database": job logs); not the registry, the portal or Trivy, which runs scanners over
# tenants' images.
DATABASE_CLIENTS = [tier(name) for name in ("core", "jobservice")]
# And Redis: core (core-cm.yaml _REDIS_URL_CORE), the job service (its config.yml redis_url), the registry
# (config.yml `redis`, its layer-info cache) and Trivy (Secret harbor-trivy redisURL: its job queue); not the portal.
REDIS_CLIENTS = [tier(name) for name in ("core", "jobservice", "registry", "trivy")]
REGISTRY_PORT, REGISTRY_CONTROLLER_PORT = 5000, 8080  # the registry pod's: the registry, registryctl
RELEASE = "harbor"
ADMIN_USER = "admin"
REGISTRY_USER = "harbor_registry_user"  # the chart's registry.credentials.username default
REGISTRY_SERVICE_ACCOUNT = "harbor-registry"  # on EKS: carries the IAM role for S3
CA_SECRET = "platform-ca"
CORE = Backend(f"{RELEASE}-core", NAMESPACE, 80)  # the chart's Services, plain HTTP
PORTAL = Backend(f"{RELEASE}-portal", NAMESPACE, 80)
# The paths of the chart's own Ingress (harbor 1.19.1 templates/ingress/ingress.yaml): the API, the token service
# (/service/token), the registry's v2 API and the OIDC callback (/c/) are core's; the rest the portal's.
PATHS = {"/api/": CORE, "/service/": CORE, "/v2/": CORE, "/c/": CORE, "/": PORTAL}

# Secrets the chart reads by name, with the keys it expects in each.
ADMIN_SECRET = ("harbor-admin", "HARBOR_ADMIN_PASSWORD")
SECRET_KEY_SECRET = ("harbor-secret-key", "secretKey")
CORE_SECRET = ("harbor-core", "secret")
XSRF_SECRET = ("harbor-xsrf", "CSRF_KEY")
JOBSERVICE_SECRET = ("harbor-jobservice", "JOBSERVICE_SECRET")
REGISTRY_HTTP_SECRET = ("harbor-registry-http", "REGISTRY_HTTP_SECRET")
REGISTRY_CREDENTIALS_SECRET = "harbor-registry-credentials"  # REGISTRY_PASSWD and REGISTRY_HTPASSWD
TOKEN_CERT_SECRET = "harbor-token-service"  # tls.crt and tls.key
REGISTRY_ROOT = "/harbor/registry"  # kubeconfig stacks: the registry's prefix in platform:objectStore
REGISTRY_STORAGE_SECRET = "harbor-registry-storage"  # kubeconfig stacks: the object store's keys, as the chart names them
# On the pods that read the database password or the Redis token at start.
DATA_STORES_CHECKSUM_ANNOTATION = "platform.io/data-stores-checksum"

OIDC_GROUPS_CLAIM = "groups"
# Harbor's six-field cron (seconds first): rescan everything nightly against the newest
# vulnerability data, collect garbage (incl. untagged artifacts retention left) weekly.
SCAN_ALL_SCHEDULE = "0 0 2 * * *"
GC_SCHEDULE = "0 0 4 * * 0"

TOKEN_CERT_VALIDITY_DAYS = 10 * 365
# Harbor's secrets among its own components, by resource suffix.
INTERNAL_SECRETS = ("secret-key", "core-secret", "xsrf-key", "jobservice-secret", "registry-http-secret", "registry-password")


def redirect_uri(hostname: str) -> str:
    """The OIDC redirect URI OpenUnison must allow for Harbor."""
    return f"https://{hostname}/c/oidc/callback"


class ReplicationTarget(ConfigModel):
    """One entry of `platform:services.harbor.replication`: a second registry every image is pushed to."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")]
    url: Annotated[str, Field(pattern=r"^https://[^\s/]+(/[^\s]*)?$")]
    # Harbor's adapter: another Harbor (e.g. in a second region), Amazon ECR, or any registry API v2.
    type: Literal["harbor", "aws-ecr", "docker-registry"] = "harbor"
    access_id: str = Field(min_length=1)  # a robot account's name on the target (ECR: an access key id)
    access_secret: SecretStr  # with `pulumi config set --secret --path`
    # event_based: each push is replicated as it lands; or a six-field Harbor cron.
    schedule: Annotated[str, Field(pattern=r"^(event_based|(\S+\s+){5}\S+)$")] = "event_based"


@dataclass(frozen=True)
class ReplicaRegistry:
    """A replication target as the component takes it: the secret a Pulumi secret."""

    name: str
    url: str
    kind: str  # Harbor's provider name
    access_id: str
    access_secret: pulumi.Output[str]
    schedule: str


def replica_registries(targets: Sequence[ReplicationTarget]) -> tuple[ReplicaRegistry, ...]:
    return tuple(
        ReplicaRegistry(t.name, t.url, t.type, t.access_id, pulumi.Output.secret(t.access_secret.get_secret_value()), t.schedule)
        for t in targets
    )


@dataclass(frozen=True, kw_only=True)
class HarborArgs(StatefulServiceArgs):
    # replicas: core, portal, job service and registry; aws: images on S3 (else on data_stores' object store)
    data_stores: DataStores  # PostgreSQL, Redis and (kubeconfig stacks) the object store, outside the chart
    depends_on: Sequence[pulumi.Resource] = ()  # e.g. the ingress controller
    replicas_elsewhere: tuple[ReplicaRegistry, ...] = ()  # registries every image is replicated to
    # Where the ingress load balancer's addresses are when the cluster does not hand them to Traefik's pods
    # itself (ingress.load_balancer_networks): core reaches OpenUnison, Trivy its databases on harbor.<domain>, through it.
    load_balancer_cidrs: Sequence[pulumi.Input[str]] = ()
    # Where the workload clusters' Dragonfly managers are when private (kubeconfig stacks: their MetalLB pools):
    # the job service reaches their preheat API there on HTTPS.
    preheat_cidrs: Sequence[str] = ()


@dataclass(frozen=True)
class RegistryStorage:
    """Where Harbor's registry keeps images."""

    url: pulumi.Output[str]  # s3://bucket[/prefix]
    endpoint: str | None  # an S3-compatible store's; None: AWS
    bucket: pulumi.Output[str] | None  # EKS: the registry's own bucket, which a backup role must be allowed to read


class Harbor(pulumi.ComponentResource):
    url: str
    oidc_redirect_uri: str
    release: k8s.helm.v3.Release
    admin_password: pulumi.Output[str]  # a Pulumi secret; not exported
    provider: harbor.Provider
    auth: harbor.ConfigAuth
    namespace: k8s.core.v1.Namespace
    registry: RegistryStorage  # where the registry keeps images (set by _registry_storage)

    def __init__(self, name: str, cluster: ClusterHandle, args: HarborArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:harbor:Harbor", name, None, opts)
        self.url = args.exposure.url
        self.oidc_redirect_uri = redirect_uri(args.exposure.hostname)
        ns = self.namespace = namespace(SLICE.namespace, cluster, self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        args.inventory.register(*credentials(name, args))

        self.admin_password, prerequisites = self._secrets(name, args, ns, k8s_opts)
        storage = self._storage(name, args, ns, k8s_opts, prerequisites)
        stores = args.data_stores.for_service(NAMESPACE, ns, self)
        held = hold_namespace(f"{name}-ingress", ns, [*INGRESS_ROUTED, *stores.admits], k8s_opts, stores.clients(NAMESPACE, DATABASE_CLIENTS, REDIS_CLIENTS))
        egress = HarborEgress(f"{name}-egress", cluster, HarborEgressArgs.of(args, ns, stores), pulumi.ResourceOptions(parent=self))
        prerequisites += [*stores.ready, *held, *egress.policies]

        self.release = release(
            RELEASE,
            "harbor",
            ns,
            sized(
                harbor_values(args, storage, stores), args.resources, "core", "portal", "jobservice", "registry.registry",
                "registry.controller", "trivy",
            ),
            cluster,
            self,
            version=args.chart_version,
            depends_on=[*prerequisites, args.cert_manager, *args.depends_on],
            # Trivy keeps its vulnerability database on a volume.
            protect=args.protect,
        )

        web = route(name, RELEASE, args.exposure, PATHS, pulumi.ResourceOptions(
            parent=self, provider=cluster.provider, depends_on=[args.cert_manager, *args.depends_on]))
        self._configure(name, args, web)
        self.register_outputs({"url": self.url, "release": self.release.status})

    def _secrets(
        self, name: str, args: HarborArgs, ns: k8s.core.v1.Namespace, k8s_opts: pulumi.ResourceOptions
    ) -> tuple[pulumi.Output[str], list[pulumi.Resource]]:
        """The admin password, and every Secret the release reads by name (the release waits for them)."""
        generated = pulumi.ResourceOptions(parent=self)

        def password(suffix: str, length: int) -> random.RandomPassword:
            # Letters and digits only: several of these must be exactly 16 or 32 characters
            # and end up in URLs, htpasswd lines and environment variables.
            return random.RandomPassword(f"{name}-{suffix}", length=length, special=False, opts=generated)

        def secret(
            suffix: str, secret_name: str, string_data: dict[str, pulumi.Input[str]], kind: str = "Opaque"
        ) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                f"{name}-{suffix}", metadata=metadata(secret_name, ns), type=kind, string_data=string_data, opts=k8s_opts
            )

        # The admin password only takes effect on the first start: it must never rotate.
        admin = random.RandomPassword(
            f"{name}-admin-password", length=32, special=False, min_upper=1, min_lower=1, min_numeric=1, opts=generated
        )
        registry_password = password("registry-password", 32)
        token_key = tls.PrivateKey(f"{name}-token-service", algorithm="RSA", rsa_bits=4096, opts=generated)
        token_cert = tls.SelfSignedCert(
            f"{name}-token-service",
            private_key_pem=token_key.private_key_pem,  # PKCS#1 for RSA, as Harbor's token service needs
            subject=tls.SelfSignedCertSubjectArgs(common_name="harbor-token-service"),
            validity_period_hours=TOKEN_CERT_VALIDITY_DAYS * 24,
            early_renewal_hours=30 * 24,
            allowed_uses=["digital_signature", "key_encipherment"],
            opts=generated,
        )
        # Everything the release reads by name, so it waits for all of it.
        prerequisites: list[pulumi.Resource] = [
            secret("admin", ADMIN_SECRET[0], {ADMIN_SECRET[1]: admin.result}),
            secret("secret-key", SECRET_KEY_SECRET[0], {SECRET_KEY_SECRET[1]: password("secret-key", 16).result}),
            secret("core", CORE_SECRET[0], {CORE_SECRET[1]: password("core-secret", 16).result}),
            secret("xsrf", XSRF_SECRET[0], {XSRF_SECRET[1]: password("xsrf-key", 32).result}),
            secret("jobservice", JOBSERVICE_SECRET[0], {JOBSERVICE_SECRET[1]: password("jobservice-secret", 16).result}),
            secret(
                "registry-http", REGISTRY_HTTP_SECRET[0], {REGISTRY_HTTP_SECRET[1]: password("registry-http-secret", 16).result}
            ),
            secret(
                "registry-credentials",
                REGISTRY_CREDENTIALS_SECRET,
                {
                    "REGISTRY_PASSWD": registry_password.result,
                    # bcrypt, the only scheme the registry accepts; stable, unlike the chart's htpasswd().
                    "REGISTRY_HTPASSWD": pulumi.Output.concat(f"{REGISTRY_USER}:", registry_password.bcrypt_hash),
                },
            ),
            secret(
                "token-service",
                TOKEN_CERT_SECRET,
                {"tls.crt": token_cert.cert_pem, "tls.key": token_key.private_key_pem},
                kind="kubernetes.io/tls",
            ),
            # Harbor core calls OpenUnison (OIDC) and verifies it against the platform CA.
            secret("platform-ca", CA_SECRET, {"ca.crt": args.exposure.ca_bundle}),
        ]
        return admin.result, prerequisites

    def _storage(
        self, name: str, args: HarborArgs, ns: k8s.core.v1.Namespace, k8s_opts: pulumi.ResourceOptions,
        prerequisites: list[pulumi.Resource],
    ) -> dict[str, Any]:
        """Where the registry keeps images: shared object storage, so every replica serves every image.

        On EKS a private bucket reached with workload identity; elsewhere the stack's S3-compatible
        object store, under `harbor/registry`, with its keys in a Secret."""
        if args.aws is not None:
            bucket = private_bucket(
                f"{name}-registry", bucket_name(args.exposure.hostname, "registry"), args.aws, args.protect, self
            )
            self.registry = RegistryStorage(bucket.bucket.apply(lambda b: f"s3://{b}"), None, bucket.bucket)
            role = bucket_role(f"{name}-registry", args.aws, NAMESPACE, REGISTRY_SERVICE_ACCOUNT, [bucket.bucket], self)
            prerequisites.append(workload_service_account(f"{name}-registry", REGISTRY_SERVICE_ACCOUNT, ns, role.arn, k8s_opts))
            # No access keys: the registry's AWS SDK takes the role from the projected token.
            return {"region": args.aws.region, "bucket": bucket.bucket, "encrypt": True, "secure": True, "v4auth": True}
        store = args.data_stores.args.object_store
        if store is None:
            raise ValueError("Harbor's registry on a kubeconfig cluster needs an object store: set platform:objectStore")
        prerequisites.append(k8s.core.v1.Secret(
            f"{name}-registry-storage",
            metadata=metadata(REGISTRY_STORAGE_SECRET, ns),
            type="Opaque",
            string_data={
                "REGISTRY_STORAGE_S3_ACCESSKEY": store.access_key_id,
                "REGISTRY_STORAGE_S3_SECRETKEY": pulumi.Output.secret(store.secret_access_key),
            },
            opts=k8s_opts,
        ))
        self.registry = RegistryStorage(pulumi.Output.from_input(f"s3://{store.bucket}{REGISTRY_ROOT}"), store.endpoint, None)
        return {
            "region": store.region, "bucket": store.bucket, "regionendpoint": store.endpoint,
            "rootdirectory": REGISTRY_ROOT, "existingSecret": REGISTRY_STORAGE_SECRET,
        }

    def _configure(self, name: str, args: HarborArgs, web: pulumi.Resource) -> None:
        """Harbor's own settings through its API: OIDC sign-in, admin-only projects, nightly scans, weekly GC."""
        # The pulumiverse-harbor SDK defaults `insecure` to true when it is not set: say false.
        self.provider = harbor.Provider(
            f"{name}-harbor",
            url=self.url,
            username=ADMIN_USER,
            password=self.admin_password,
            insecure=False,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, web]),
        )
        configured = pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=[self.release])
        scopes = list(dict.fromkeys([*args.oidc.scopes, "offline_access"]))  # refresh tokens for the CLI secret
        self.auth = harbor.ConfigAuth(
            f"{name}-auth",
            auth_mode="oidc_auth",
            primary_auth_mode=True,
            oidc_name="OpenUnison",
            oidc_endpoint=args.oidc.issuer_url,
            oidc_client_id=args.oidc.client_id,
            oidc_client_secret=pulumi.Output.secret(args.oidc.client_secret),
            oidc_scope=",".join(scopes),
            oidc_groups_claim=OIDC_GROUPS_CLAIM,
            oidc_admin_group=args.groups.cluster_admins[0] if args.groups.cluster_admins else None,
            oidc_user_claim="sub",
            oidc_verify_cert=True,
            oidc_auto_onboard=True,
            opts=configured,
        )
        harbor.ConfigSystem(f"{name}-system", project_creation_restriction="adminonly", opts=configured)
        harbor.InterrogationServices(f"{name}-scan-all", vulnerability_scan_policy=SCAN_ALL_SCHEDULE, opts=configured)
        harbor.GarbageCollection(
            f"{name}-gc", schedule=GC_SCHEDULE, delete_untagged=True, workers=1, opts=configured
        )
        for target in args.replicas_elsewhere:
            self._replicate(name, target, configured, args.inventory)

    def _replicate(self, name: str, target: ReplicaRegistry, configured: pulumi.ResourceOptions, inventory: CredentialInventory) -> None:
        """Push every repository of every project to `target`, keeping what Harbor deletes there."""
        registry = harbor.Registry(
            f"{name}-replica-{target.name}", name=target.name, endpoint_url=target.url, provider_name=target.kind,
            access_id=target.access_id, access_secret=target.access_secret, insecure=False,
            description="replication target (platform:services.harbor.replication)", opts=configured,
        )
        harbor.Replication(
            f"{name}-replicate-{target.name}",
            name=f"replicate-to-{target.name}",
            action="push",
            registry_id=registry.registry_id,
            filters=[harbor.ReplicationFilterArgs(name="**")],  # every repository of every project
            schedule=target.schedule,
            override=True,
            deletion=False,  # the copy is a backup: a deletion here does not reach it
            enabled=True,
            opts=configured,
        )
        inventory.register(external_secret(
            f"Harbor's credential on replication target {target.name}",
            issuer=f"the administrator of {target.url}",
            holder=f"Harbor (registry {target.name}) and {STATE}",
            scope=f"push to {target.url}: a robot account with push only, where the target is a Harbor",
            lifetime="set on the target (a robot account's expiry there)",
            rotation=f"a new one on the target, `pulumi config set --secret --path` the harbor replication entry {target.name}, `pulumi up`",
            resources=(f"{name}-replica-{target.name}",),
        ))


# --- where Harbor's pods connect ----------------------------------------------------------
#
# Each tier's configuration in the chart's render (harbor 1.19.1, tests/test_control_plane_isolation_attacks.py)
# names what it calls; Harbor 2.15's source the rest:
# * core: PostgreSQL and Redis (core-cm.yaml POSTGRESQL_*, _REDIS_URL_CORE), the registry and registryctl
#   (REGISTRY_URL :5000, REGISTRY_CONTROLLER_URL :8080), the job service and Trivy (JOBSERVICE_URL,
#   TRIVY_ADAPTER_URL), the portal (its health check, src/controller/health/checker.go); OpenUnison's public
#   name (OIDC sign-in) through the ingress controller; the internet on HTTPS: the proxy caches' upstream
#   registries (components/tenant_supply_chain.py PUBLIC_REGISTRIES, all https) and registry endpoints' pings.
# * the job service: core, the registry and registryctl (jobservice-env CORE_URL, REGISTRY_URL,
#   REGISTRY_CONTROLLER_URL: garbage collection), Trivy (scan jobs, src/pkg/scan/job.go), PostgreSQL (job
#   logs) and Redis (its queue); the internet on HTTPS: replication targets, webhooks, Dragonfly's preheat API
#   on the workload clusters' ingress (on kubeconfig stacks their MetalLB pools: `preheat_cidrs`).
# * the registry: Redis, and where it keeps images: S3 and STS's public endpoints (workload identity) on EKS,
#   platform:objectStore's endpoint elsewhere (its port; its `networks` where its address is private).
#   It authenticates with htpasswd and verifies core's tokens with its certificate: it calls no tier.
# * Trivy: Redis, core (the built-in scanner gets core's internal URL as the registry to pull from:
#   UseInternalAddr, src/core/main.go; src/controller/scan/base_controller.go) and harbor.<domain> through the
#   ingress controller, where its databases are (SCANNER_TRIVY_DB_REPOSITORY).
# * core, the job service and Trivy also the object store as the registry does: the registry answers a blob
#   read with a redirect to the store (storage.redirect on: distribution's registry/storage/blobserver.go
#   ServeBlob), which they follow: artifact processing, replication, scans and Trivy's databases.
# * the portal: nginx serving files: nothing, not even the DNS.
# Every tier but the portal the cluster DNS. Refused: every other namespace's pods, the nodes, the API
# server, the instance metadata, every private address but the stores' (EKS), the load balancer's and the
# object store's networks, the internet but on HTTPS and the object store's port. The databases' and
# Redis's pods hold their own (components/data_stores.py).


@dataclass(frozen=True)
class HarborEgressArgs:
    namespace: k8s.core.v1.Namespace
    stores: ServiceStores
    load_balancer_cidrs: tuple[pulumi.Input[str], ...]
    object_stores: tuple[ObjectStoreTarget, ...]  # platform:objectStore off EKS (on EKS none: S3, on HTTPS)
    preheat_cidrs: tuple[str, ...]

    @staticmethod
    def of(args: HarborArgs, ns: k8s.core.v1.Namespace, stores: ServiceStores) -> HarborEgressArgs:
        store = args.data_stores.args.object_store if args.aws is None else None
        return HarborEgressArgs(
            namespace=ns, stores=stores, load_balancer_cidrs=tuple(args.load_balancer_cidrs),
            object_stores=(store,) if store else (),
            preheat_cidrs=tuple(args.preheat_cidrs),
        )


class HarborEgress(pulumi.ComponentResource):
    """Where each Harbor tier's pods may connect: one NetworkPolicy per tier. The release waits for them."""

    policies: list[k8s.networking.v1.NetworkPolicy]

    def __init__(self, name: str, cluster: ClusterHandle, args: HarborEgressArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:harbor:HarborEgress", name, None, opts)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        stores, public_names = args.stores, egress_to_platform([HTTPS_PORT], args.load_balancer_cidrs)
        registry = to_pods([tier("registry")], (REGISTRY_PORT, REGISTRY_CONTROLLER_PORT))
        # The object store (and the internet on HTTPS): its ports on public addresses, and on its private networks.
        objects = object_stores(args.object_stores)
        needs = {
            "core": [*public_names, *to_pods([tier(t) for t in ("jobservice", "trivy", "portal")], (HTTP_PORT,)), *registry,
                     *stores.reach(postgres=True), *objects],
            "jobservice": [dns(), *to_pods([tier(t) for t in ("core", "trivy")], (HTTP_PORT,)), *registry, *stores.reach(postgres=True), *objects,
                           *to_networks(args.preheat_cidrs, [HTTPS_PORT])],
            "registry": [dns(), *stores.reach(postgres=False), *objects],
            "trivy": [*public_names, *to_pods([tier("core")], (HTTP_PORT,)), *stores.reach(postgres=False), *objects],
            "portal": [],
        }
        self.policies = [hold_egress(name, args.namespace, f"{RELEASE}-{t}-egress", tier(t), rules, in_ns) for t, rules in needs.items()]
        self.register_outputs({})


def harbor_values(args: HarborArgs, s3: dict[str, Any], stores: ServiceStores) -> dict[str, Any]:
    """The chart values: every generated secret by reference, none by value; replicated stateless tiers."""
    exposure = args.exposure
    restart = {DATA_STORES_CHECKSUM_ANNOTATION: stores.checksum}
    registry: dict[str, Any] = {
        "existingSecret": REGISTRY_HTTP_SECRET[0],
        "existingSecretKey": REGISTRY_HTTP_SECRET[1],
        "credentials": {"username": REGISTRY_USER, "existingSecret": REGISTRY_CREDENTIALS_SECRET},
        "podAnnotations": restart,  # the registry keeps its blob cache and upload state in Redis
        **replicated(args.replicas),
    }
    if args.aws is not None:
        registry["serviceAccountName"] = REGISTRY_SERVICE_ACCOUNT
    trivy_db, trivy_java_db = trivy_databases(exposure.hostname)
    return {
        "externalURL": exposure.url,
        "expose": {
            # The platform routes to core and the portal from Traefik's namespace (`route`, PATHS): the chart's Ingress,
            # in Harbor's namespace, would have Traefik watch the Secrets there. The chart has no switch for it (every
            # other type brings its own nginx or a Gateway API route), so it names an IngressClass no controller has:
            # Traefik serves no Ingress whose class it does not have (Traefik v3.6.2 ingress/kubernetes.go lines 499-505),
            # nor watches this namespace; no issuer annotation, so no certificate either.
            "type": "ingress",
            "ingress": {"hosts": {"core": exposure.hostname}, "className": UNSERVED_CLASS},
            # The route presents the certificate; TLS on keeps the core pod's CA download (`caSecretName`).
            "tls": {"enabled": True, "certSource": "none"},
        },
        "caBundleSecretName": CA_SECRET,
        # The CA that Harbor's portal offers for download: the platform CA, which signs the route's certificate
        # (Secret `harbor-tls` in Traefik's namespace). Without it the chart renders the core pod's `ca-download`
        # volume with no source at all.
        "caSecretName": CA_SECRET,
        "existingSecretAdminPassword": ADMIN_SECRET[0],
        "existingSecretAdminPasswordKey": ADMIN_SECRET[1],
        "existingSecretSecretKey": SECRET_KEY_SECRET[0],
        "core": {
            "existingSecret": CORE_SECRET[0],
            "secretName": TOKEN_CERT_SECRET,
            "existingXsrfSecret": XSRF_SECRET[0],
            "existingXsrfSecretKey": XSRF_SECRET[1],
            "podAnnotations": restart,
            **replicated(args.replicas),
        },
        "portal": replicated(args.replicas),
        "jobservice": {
            # Job logs in the database: no ReadWriteOnce log volume pinning the job service.
            "jobLoggers": ["database"],
            "existingSecret": JOBSERVICE_SECRET[0],
            "existingSecretKey": JOBSERVICE_SECRET[1],
            "podAnnotations": restart,
            **replicated(args.replicas),
        },
        "registry": registry,
        # The adapter queues scans in Redis. Its databases are the copies in `approved` (the
        # promote-trivy-db schedule): the ones the tenants' scan jobs read, so both gates judge alike.
        "trivy": {"enabled": True, "podAnnotations": restart, "dbRepository": [trivy_db], "javaDBRepository": [trivy_java_db]},
        **external_stores(stores),
        "persistence": {
            "enabled": True,
            # Images in object storage: no registry volume (the chart then makes none).
            "imageChartStorage": {"type": "s3", "s3": s3},
        },
        # No ReadWriteOnce volume in any Deployment (images in object storage, job logs and state in
        # PostgreSQL and Redis): new pods start before old ones stop.
        "updateStrategy": {"type": "RollingUpdate"},
    }


def replicated(replicas: int) -> dict[str, Any]:
    """A stateless Harbor tier: its replicas, spread over zones and nodes, and (with two or more) a PDB."""
    return {
        "replicas": replicas,
        "topologySpreadConstraints": spread(),  # the chart adds each tier's own label selector
        **({"podDisruptionBudget": {"enabled": True}} if replicas > 1 else {}),  # minAvailable 1, the chart's default
    }


def external_stores(stores: ServiceStores) -> dict[str, Any]:
    """`database` and `redis`: Harbor's own, outside the chart, their secrets by reference."""
    postgres, redis = stores.postgres, stores.redis
    return {
        "database": {"type": "external", "external": {
            "host": postgres.host,
            "port": str(postgres.port),
            "username": postgres.username,
            "coreDatabase": postgres.database,
            "existingSecret": postgres.secret,
            "sslmode": postgres.ssl_mode,
        }},
        "redis": {"type": "external", "external": {
            "addr": pulumi.Output.concat(redis.host, f":{redis.port}"),
            "existingSecret": redis.secret,
            **({"tlsOptions": {"enable": True}} if redis.tls else {}),
        }},
    }



def credentials(name: str, args: HarborArgs) -> list[Credential]:
    """Harbor's admin password, its components' shared secrets, its token-service key and its S3 sessions."""
    entries = [generated_password(
        "Harbor admin password",
        holder=f"the Pulumi harbor provider ({STATE}) and Harbor (Secret {NAMESPACE}/{ADMIN_SECRET[0]})",
        scope="Harbor's local admin: configures Harbor from `pulumi up`; break-glass sign-in",
        rotation="never automatically: Harbor reads it only at its first start",
        resource=f"{name}-admin-password",
    ), program_certificate(
        "Harbor token-service key",
        signed="self-signed certificate",
        holder=f"Harbor core (Secret {NAMESPACE}/{TOKEN_CERT_SECRET}) and {STATE}",
        scope="signs the registry tokens Harbor core hands to clients; the registry verifies them",
        hours=TOKEN_CERT_VALIDITY_DAYS * 24,
        rotation="re-created by `pulumi up` 30 days before the certificate expires; Harbor restarts with it",
        category="signing-key",
        resources=(f"{name}-token-service",),
    )]
    entries += [internal_secret(
        "Harbor", f"Harbor {suffix.replace('-', ' ')}",
        scope="between Harbor's own components (core, job service, registry)",
        rotation="by hand, with a Harbor restart: replace the resource",
        resources=(f"{name}-{suffix}",),
    ) for suffix in INTERNAL_SECRETS]
    if args.aws is not None:
        account = f"{NAMESPACE}/{REGISTRY_SERVICE_ACCOUNT}"
        entries.append(irsa_credential(f"{name}-registry", account, "control-plane", "Harbor's registry bucket"))
    else:
        entries.append(object_store_credential(
            "Harbor's registry", f"Harbor's registry (Secret {NAMESPACE}/{REGISTRY_STORAGE_SECRET})", "harbor/registry"
        ))
    return entries


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> Harbor:
    return Harbor("harbor", parts.cluster, HarborArgs.extend(
        parts.stateful(SLICE, settings), depends_on=[parts.ingress.release], data_stores=parts.require(DATA_STORES),
        replicas_elsewhere=replica_registries(settings.options["replication"]),
        load_balancer_cidrs=load_balancer_networks(parts, settings),
        # The one setting of platform:objectStore's private networks, which GitLab's Rails tiers reach too.
        preheat_cidrs=preheat_networks(parts),
    ))


def preheat_networks(parts: ControlPlaneParts) -> tuple[str, ...]:
    """With Dragonfly on (components/dragonfly.py, which imports this module: its key by name), the workload
    clusters' MetalLB pools, where their ingress answers dragonfly.<cluster>.<domain>; EKS clusters have none."""
    if not parts.service_settings("dragonfly").enabled:
        return ()
    pools = parts.service_settings(METALLB.key).options["addresses"]
    return tuple(n for cluster, ranges in pools.items() if cluster != "controlPlane" for n in pool_networks(ranges))


def tenant(parts: TenantParts) -> TenantRegistry | None:
    """The tenant's project and robots; the robots' secrets go to Vault."""
    platform = parts.platform
    if not (platform.harbor and platform.vault):
        return None
    return TenantRegistry(
        f"{parts.name}-registry",
        TenantRegistryArgs(
            tenant=parts.name, storage_gb=storage_gib(parts.tenant.quota.storage), platform=platform, protect=platform.protect
        ),
        parts.opts,
    )


SLICE: ServiceSlice[Harbor] = ServiceSlice(
    key="harbor",
    namespace=PlatformNamespace(NAMESPACE, "Harbor, the registry the other constraints point at"),
    chart="harbor",
    declare=declare,
    redirect_uris=lambda host: (redirect_uri(host),),
    tenant=tenant,
    # Second registries every image is pushed to (another Harbor, e.g. in a second region, or ECR).
    options={"replication": (list[ReplicationTarget], []), "load_balancer_cidrs": (list[LoadBalancerCidr], [])},
)
