"""PostgreSQL and Redis for GitLab and Harbor, outside their charts.

On EKS, managed services in the control plane's VPC: per service an RDS PostgreSQL instance
(Multi-AZ, KMS-encrypted, automated backups, deletion protection and a final snapshot when the
stack is protected) and an ElastiCache replication group (a primary and replicas in other zones,
automatic failover, encrypted at rest and in transit, AUTH token). Only the cluster's nodes reach
them (security groups admitting the EKS cluster security group on the one port).

On kubeconfig stacks, the declared equivalent: the CloudNativePG operator and per service a
`Cluster` of `sizing.replicas` PostgreSQL instances spread over nodes, with base backups and WAL
archived to the stack's S3-compatible object store (`platform:objectStore`) and a daily
`ScheduledBackup`; Redis is a Valkey StatefulSet of one, with AUTH and an append-only file on its
volume (GitLab and Harbor keep queues and caches there, nothing that is not in PostgreSQL or Git).

Credentials are generated (pulumi_random), stay Pulumi secrets and reach the charts as Secrets in
the service's namespace; `ServiceStores.checksum` changes with them, so a pod annotation restarts
their readers when one is replaced.

A rebuilt stack creates a service's database from its backups instead of empty where
`platform:services.dataStores.restore.<service>` says so: RDS restores the old instance's (retained)
automated backups to a point in time, CloudNativePG recovers from the old cluster's object-store
backups. Both read the restore only when they create the database, so the key may go afterwards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Annotated, Any, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import AfterValidator, Field

from components import alerting
from components.aws import history_key_tags
from components.backups import BackupExpectation, BackupStore, WriterKey, writer_key_credential
from components.cluster import ClusterHandle
from components.common import ConfigModel, checksum
from components.egress import (
    Admit, dns, hold_egress, hold_namespace_egress, hold_webhook, pods, pods_in, store_egress, to_api_server, to_networks, to_pods,
    to_pods_in,
)
from components.network import VpcNetwork
from components.helm import metadata, namespace, release
from components.inventory import DAY, Credential, CredentialInventory, external_secret, internal_secret, projected_token
from components.service import ControlPlaneParts, ObjectStoreTarget, PlatformNamespace, ServiceSettings, ServiceSlice
from components.tenant_registry import storage_gib
from components.versions import (
    CNPG_POSTGRES_IMAGE,
    ELASTICACHE_PARAMETER_FAMILY,
    ELASTICACHE_REDIS_VERSION,
    RDS_POSTGRES_MAJOR,
    RDS_POSTGRES_PARAMETER_FAMILY,
    VALKEY_IMAGE,
)
from policy.labels import managed_by

NAMESPACE = "cnpg-system"
RELEASE = "cnpg"
POSTGRES_PORT = 5432
REDIS_PORT = 6379
OPERATOR_WEBHOOK_PORT = 9443  # the operator's `webhook-server` container port
INSTANCE_MANAGER_PORT = 8000  # CloudNativePG's instance manager: the operator reads each instance's status there
OPERATOR_LABELS = {"app.kubernetes.io/name": "cloudnative-pg"}  # the chart's operator pod
PASSWORD_KEY = "password"  # in the PostgreSQL Secret (kubernetes.io/basic-auth); Harbor requires this key
REDIS_PASSWORD_KEY = "REDIS_PASSWORD"  # in the Redis Secret; Harbor requires this key
VALKEY_CONFIG_KEY = "valkey.conf"
BACKUP_KEYS = ("ACCESS_KEY_ID", "ACCESS_SECRET_KEY")  # in the object-store Secret
# Six-field cron (seconds first), as CloudNativePG reads it; RDS takes a window.
BACKUP_SCHEDULE = "0 0 3 * * *"
RDS_BACKUP_WINDOW = "02:00-03:00"
RDS_MAINTENANCE_WINDOW = "sun:04:00-sun:05:00"
RDS_MIN_STORAGE_GIB = 20  # gp3's minimum
CNPG_CERTIFICATE_DAYS = 90  # the operator's server and replication certificates, renewed 7 days before expiry


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$")
# CloudNativePG's barman server name: a folder under s3://<bucket>/<prefix>/<service>/.
SERVER_NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


def _utc(value: str) -> str:
    """An RFC 3339 time as UTC with `Z`, the one form RDS takes (CloudNativePG takes it too)."""
    if not RFC3339.match(value):
        raise ValueError(f"{value!r} is not an RFC 3339 time; allowed: a time to the second with its offset, e.g. 2026-12-06T23:00:00Z")
    return datetime.fromisoformat(value).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Restore(ConfigModel):
    """`platform:services.dataStores.restore.<service>`: the service's database is created from its backups."""

    # EKS: the ARN of the old RDS instance's retained automated backups, or the identifier of an instance
    # that still exists; kubeconfig stacks: the old cluster's server name (stacks/config.py checks which).
    source: str = Field(min_length=1)
    time: Annotated[str, AfterValidator(_utc)] | None = None  # unset: the latest time the backups reach


class Restores(ConfigModel):
    """`platform:services.dataStores.restore`: the services whose database a stack restores."""

    gitlab: Restore | None = None
    harbor: Restore | None = None


@dataclass(frozen=True, kw_only=True)
class StoreEndpoint:
    """How a chart reaches one of its stores: where it listens, and the Secret holding its password."""

    host: pulumi.Output[str]
    port: int
    secret: str


@dataclass(frozen=True, kw_only=True)
class Postgres(StoreEndpoint):
    """A chart's database; the password is `PASSWORD_KEY` of Secret `secret`."""

    database: str
    username: str
    ssl_mode: str  # libpq's sslmode; Harbor's `database.external.sslmode`
    password: pulumi.Output[str]  # a Pulumi secret, for a service that takes it only in a config file (Dragonfly)


@dataclass(frozen=True, kw_only=True)
class Redis(StoreEndpoint):
    """A chart's Redis; the AUTH token is `REDIS_PASSWORD_KEY` of Secret `secret`."""

    tls: bool
    token: pulumi.Output[str]  # a Pulumi secret, for a service that takes it only in a config file (Dragonfly)


@dataclass(frozen=True)
class ServiceStores:
    postgres: Postgres
    redis: Redis
    checksum: pulumi.Output[str]  # of both credentials: a pod annotation that restarts their readers
    ready: list[pulumi.Resource]  # what the service's release waits for
    # Where they listen outside the cluster (EKS: the VPC's private subnets, RDS's and ElastiCache's
    # subnet groups); none: pods in the service's namespace.
    networks: tuple[str, ...] = ()
    # Who else connects to them in the service's namespace: CloudNativePG's operator, to its instances.
    admits: tuple[Admit, ...] = ()
    database_pods: dict[str, str] | None = None  # the in-cluster PostgreSQL's instances' label; None: RDS
    redis_pods: dict[str, str] | None = None  # the in-cluster Redis's label; None: ElastiCache

    def database_clients(self, service: str, clients: Sequence[dict[str, str]]) -> list[Admit]:
        """For hold_namespace's `private`: an in-cluster database takes the pods labelled `clients` on
        PostgreSQL's port and its own instances (replication) on any; none on RDS."""
        if self.database_pods is None:
            return []
        return [Admit(f"{service}-postgres-clients", self.database_pods, pods(*clients), (self.postgres.port,)),
                Admit(f"{service}-postgres-instances", self.database_pods, pods(self.database_pods), ())]

    def redis_clients(self, service: str, clients: Sequence[dict[str, str]]) -> list[Admit]:
        """For hold_namespace's `private`: an in-cluster Redis (one Valkey) takes the pods labelled `clients`
        on its port; none on ElastiCache."""
        if self.redis_pods is None:
            return []
        return [Admit(f"{service}-redis-clients", self.redis_pods, pods(*clients), (self.redis.port,))]

    def clients(self, service: str, database: Sequence[dict[str, str]], redis: Sequence[dict[str, str]]) -> list[Admit]:
        """For hold_namespace's `private`: `database_clients` and `redis_clients`."""
        return [*self.database_clients(service, database), *self.redis_clients(service, redis)]

    def reach(self, postgres: bool) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
        """Egress for a client of Redis and, with `postgres`, of PostgreSQL: the in-cluster stores' pods, or
        on EKS their networks on those ports alone."""
        if self.networks:
            return to_networks(self.networks, (self.postgres.port, self.redis.port) if postgres else (self.redis.port,))
        return [*to_pods([self.redis_pods] if self.redis_pods else [], (self.redis.port,)),
                *to_pods([self.database_pods] if postgres and self.database_pods else [], (self.postgres.port,))]

    def egress(self) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
        """What a NetworkPolicy admits for the service's pods to reach these stores outside the cluster:
        their networks on their two ports (the addresses are RDS's and ElastiCache's, unknown at preview)."""
        return to_networks(self.networks, (self.postgres.port, self.redis.port))


@dataclass(frozen=True)
class OwnArchiveKey:
    """A workload cluster's own key for its archives (Dragonfly's manager database), kept from the control plane's."""

    writer: str  # in components/backups.py WRITER_GRANTS: what its administrator confines it to
    key: WriterKey
    holder: str  # the Secret that holds it, for the inventory


@dataclass(frozen=True)
class DataStoresArgs:
    protect: bool
    # Replicas: CloudNativePG instances, or ElastiCache nodes (a primary and replicas); storage: per
    # PostgreSQL instance (on RDS at least RDS_MIN_STORAGE_GIB); sizing: each PostgreSQL and Valkey container's.
    settings: ServiceSettings
    backup_retention_days: int
    instance_class: str  # RDS
    node_type: str  # ElastiCache
    object_store: ObjectStoreTarget | None = None  # kubeconfig stacks: where backups go
    backup_prefix: str = "postgres"  # kubeconfig stacks: backups go under <prefix>/<service> (one per cluster)
    restore: Restores = field(default_factory=Restores)  # the databases created from backups instead of empty
    inventory: CredentialInventory = field(default_factory=CredentialInventory)
    backups: BackupStore | None = None  # kubeconfig stacks: where the archives' expectations are recorded
    own_archive_key: OwnArchiveKey | None = None  # a kubeconfig workload cluster's (archive_key)

    def restore_of(self, service: str) -> Restore | None:
        """What `service`'s database is restored from; None: it starts empty."""
        return getattr(self.restore, service, None)


class DataStores(pulumi.ComponentResource):
    """What every service's stores share: on EKS network, key and parameters; elsewhere the operator."""

    cluster: ClusterHandle
    args: DataStoresArgs
    operator: k8s.helm.v3.Release | None
    namespace: k8s.core.v1.Namespace | None  # the operator's (kubeconfig stacks)

    def __init__(self, name: str, cluster: ClusterHandle, args: DataStoresArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:data_stores:DataStores", name, None, opts)
        self.cluster, self.args, self.operator, self.namespace = cluster, args, None, None
        self.managed: AwsShared | None = None  # on EKS
        # Kubeconfig clusters: service -> the folder its CloudNativePG cluster archives to (a restore's source).
        self.archives: dict[str, pulumi.Output[str]] = {}
        if cluster.is_eks:
            if cluster.network is None or cluster.aws_provider is None:
                raise ValueError("managed data stores go in the control plane's VPC: set platform:clusters.controlPlane.eks.vpc")
            self.managed = AwsShared(name, cluster.network, cluster.aws_provider, args.protect, self)
        else:
            if args.object_store is None:
                raise ValueError("data stores on a kubeconfig cluster back up to an object store: set platform:objectStore")
            ns = self.namespace = namespace(SLICE.namespace, cluster, self)
            k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
            # The operator connects to its API server and (ServiceDataStores: one policy per Cluster) to its instances.
            held = [hold_webhook(name, ns, OPERATOR_WEBHOOK_PORT, k8s_opts), *hold_namespace_egress(name, ns, cluster.api_server, (), k8s_opts)]
            # Protected with the data: its chart owns the CRDs, and uninstalling it deletes every Cluster.
            self.operator = release(
                RELEASE, "cloudnative-pg", ns, operator_values(args), cluster, self, version=args.settings.chart_version,
                protect=args.protect, depends_on=held,
            )
            args.inventory.register(*operator_credentials(cluster.name))
        self.register_outputs({})

    def for_service(self, service: str, ns: k8s.core.v1.Namespace, parent: pulumi.Resource, name: str | None = None) -> ServiceStores:
        """`service`'s PostgreSQL and Redis, their Secrets in `ns`; children of `parent` (the service).

        `name`: the resources' prefix when `service` has stores on several clusters (`<service>-data`)."""
        stores = ServiceDataStores(name or f"{service}-data", self, service, ns, pulumi.ResourceOptions(parent=parent))
        return stores.stores


def operator_admit(service: str) -> Admit:
    """The operator reaches every instance of a Cluster on the instance manager's port (8000) alone; instances carry
    `cnpg.io/cluster: <Cluster>`. Its docs (networking.md) name 5432 too, but in v1.30.0 (the chart's appVersion) the
    operator opens no PostgreSQL connection: no SQL client in internal/controller or pkg/reconciler; what it asks an
    instance goes through remote.InstanceClient to url.StatusPort (pkg/management/postgres/webserver/client/remote/
    instance.go:213, 271, 320, 402; backup.go:62-102)."""
    return Admit(f"{service}-postgres-operator", instance_labels(service), [pods_in(NAMESPACE, OPERATOR_LABELS)], (INSTANCE_MANAGER_PORT,))


def instance_egress(service: str, cluster: ClusterHandle, args: DataStoresArgs) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """Where the instances of `service`'s Cluster and its bootstrap Jobs (initdb, join, full-recovery: labelled with the
    Cluster too, pkg/specs/jobs.go:359-362) connect, per cloudnative-pg v1.30.0: the DNS (the -rw Service, the object
    store's name); the API server (the instance manager watches its Cluster and Secrets); the Cluster's other instances
    on PostgreSQL's port (streaming replication, a joining replica's pg_basebackup and pg_rewind, to the primary) and
    the instance manager's (the primary's liveness isolation check calls each peer's /failsafe,
    pkg/management/postgres/webserver/probes/pinger.go:86); the object store WAL and base backups go to (barman-cloud,
    `store_egress`: its `networks`, else the internet on its port). Nothing else: no metadata, node, other namespace."""
    assert args.object_store is not None
    store = args.object_store
    return [dns(), *to_api_server(cluster.api_server), *to_pods([instance_labels(service)], (POSTGRES_PORT, INSTANCE_MANAGER_PORT)),
            *store_egress(store.endpoint, store.networks)]


def instance_labels(service: str) -> dict[str, str]:
    """The label CloudNativePG gives every instance of `service`'s Cluster."""
    return {"cnpg.io/cluster": f"{service}-postgres"}


def redis_labels(service: str) -> dict[str, str]:
    """The label of `service`'s Valkey pod (one of the two its StatefulSet selects)."""
    return {"app.kubernetes.io/instance": f"{service}-redis"}


def operator_values(args: DataStoresArgs) -> dict[str, Any]:
    return {
        # The CRDs come with the chart; the Clusters depend on this release, so they go first on destroy.
        "crds": {"create": True},
        "resources": args.settings.resources,
    }


class AwsShared:
    """Subnet groups, security groups reachable from the cluster's nodes only, the KMS key, parameters."""

    def __init__(self, name: str, network: VpcNetwork, provider: aws.Provider, protect: bool, parent: pulumi.Resource):
        opts = pulumi.ResourceOptions(parent=parent, provider=provider)
        tags = managed_by()
        self.key = aws.kms.Key(
            f"{name}-key",
            description="platform data stores (RDS, ElastiCache): storage and snapshots",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags={**tags, **history_key_tags(protect)},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=protect)),
        )
        self.db_subnets = aws.rds.SubnetGroup(f"{name}-postgres", subnet_ids=list(network.private_subnet_ids), tags=tags, opts=opts)
        self.cache_subnets = aws.elasticache.SubnetGroup(
            f"{name}-redis", subnet_ids=list(network.private_subnet_ids), description="platform Redis", tags=tags, opts=opts
        )
        self.postgres_sg = _node_only_group(f"{name}-postgres", network, POSTGRES_PORT, opts)
        self.redis_sg = _node_only_group(f"{name}-redis", network, REDIS_PORT, opts)
        self.db_parameters = aws.rds.ParameterGroup(
            f"{name}-postgres",
            family=RDS_POSTGRES_PARAMETER_FAMILY,
            parameters=[aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1")],  # TLS only
            tags=tags,
            opts=opts,
        )
        self.cache_parameters = aws.elasticache.ParameterGroup(
            f"{name}-redis",
            family=ELASTICACHE_PARAMETER_FAMILY,
            # Sidekiq's and Harbor's job queues live here: refuse writes rather than evict a job.
            parameters=[aws.elasticache.ParameterGroupParameterArgs(name="maxmemory-policy", value="noeviction")],
            tags=tags,
            opts=opts,
        )


def _node_only_group(name: str, network: VpcNetwork, port: int, opts: pulumi.ResourceOptions) -> aws.ec2.SecurityGroup:
    group = aws.ec2.SecurityGroup(
        name, vpc_id=network.vpc_id, description=f"port {port} from the EKS cluster's nodes only", tags=managed_by(), opts=opts
    )
    aws.vpc.SecurityGroupIngressRule(
        name,
        security_group_id=group.id,
        referenced_security_group_id=network.cluster_security_group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        opts=opts,
    )
    return group


class ServiceDataStores(pulumi.ComponentResource):
    """One service's PostgreSQL and Redis, and the Secrets its chart reads."""

    stores: ServiceStores

    def __init__(self, name: str, shared: DataStores, service: str, ns: k8s.core.v1.Namespace, opts: pulumi.ResourceOptions):
        super().__init__("platform:data_stores:ServiceDataStores", name, None, opts)
        args, cluster = shared.args, shared.cluster
        generated = pulumi.ResourceOptions(parent=self)
        # Letters and digits: they end up in URLs (Harbor's Redis address) and a Valkey config line.
        db_password = random.RandomPassword(f"{name}-postgres-password", length=40, special=False, opts=generated)
        redis_token = random.RandomPassword(f"{name}-redis-token", length=64, special=False, opts=generated)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        username = database = service
        db_secret = k8s.core.v1.Secret(
            f"{name}-postgres",
            metadata=metadata(f"{service}-postgres", ns),
            type="kubernetes.io/basic-auth",  # what CloudNativePG's initdb takes
            string_data={"username": username, PASSWORD_KEY: db_password.result},
            opts=k8s_opts,
        )
        redis_data: dict[str, pulumi.Input[str]] = {REDIS_PASSWORD_KEY: redis_token.result}
        if shared.managed is None:
            redis_data[VALKEY_CONFIG_KEY] = pulumi.Output.concat(VALKEY_CONFIG, "requirepass ", redis_token.result, "\n")
        redis_secret = k8s.core.v1.Secret(
            f"{name}-redis", metadata=metadata(f"{service}-redis", ns), type="Opaque", string_data=redis_data, opts=k8s_opts
        )
        sum_ = checksum(pulumi.Output.all(db_password.result, redis_token.result).apply(json.dumps))
        ready: list[pulumi.Resource] = [db_secret, redis_secret]
        if shared.managed is not None:
            assert cluster.aws_provider is not None
            postgres, redis = _managed(name, service, shared.managed, args, db_password, redis_token, cluster.aws_provider, self)
            ready += [postgres, redis]
            if args.backups is not None and cluster.region is not None:
                args.backups.database(f"{name}-postgres", postgres, cluster.region, args.backup_retention_days, self, args.protect)
            host, redis_host = postgres.address, redis.primary_endpoint_address
            ssl_mode, tls = "require", True  # RDS forces TLS (rds.force_ssl); ElastiCache encrypts in transit
        else:
            assert args.object_store is not None
            backup = _backup_secret(name, service, ns, archive_key(args, name, service), k8s_opts)
            cluster_resources, shared.archives[service] = _in_cluster(name, service, ns, shared, [db_secret, backup], redis_secret, sum_, k8s_opts)
            if args.backups is not None:
                args.backups.expectations += archive_expectations(service, ns, args.object_store, shared.archives[service])
            ready += cluster_resources
            host = pulumi.Output.from_input(f"{service}-postgres-rw")  # the primary, wherever it runs
            redis_host = pulumi.Output.from_input(f"{service}-redis")
            ssl_mode, tls = "require", False  # CloudNativePG serves TLS with its own CA
        self.stores = ServiceStores(
            postgres=Postgres(
                host=host, port=POSTGRES_PORT, secret=f"{service}-postgres", database=database, username=username, ssl_mode=ssl_mode,
                password=db_password.result,
            ),
            redis=Redis(host=redis_host, port=REDIS_PORT, secret=f"{service}-redis", tls=tls, token=redis_token.result),
            checksum=sum_,
            ready=ready,
            networks=cluster.network.node_cidrs if shared.managed is not None and cluster.network is not None else (),
            admits=() if shared.managed is not None else (operator_admit(service), alerting.scrape_admit(alerting.POSTGRES_INSTANCES, alerting.POSTGRES_PORT)),
            database_pods=None if shared.managed is not None else instance_labels(service),
            redis_pods=None if shared.managed is not None else redis_labels(service),
        )
        title = TITLES.get(service, service) + ("" if cluster.role == "control-plane" else f" on {cluster.name}")
        args.inventory.register(*service_credentials(name, service, title, args, managed=shared.managed is not None))
        self.register_outputs({"postgres": host, "redis": redis_host})


def _managed(
    name: str, service: str, shared: AwsShared, args: DataStoresArgs, db_password: random.RandomPassword,
    redis_token: random.RandomPassword, provider: aws.Provider, parent: pulumi.Resource,
) -> tuple[aws.rds.Instance, aws.elasticache.ReplicationGroup]:
    """An RDS instance and an ElastiCache replication group, both Multi-AZ and encrypted with the shared key."""
    kept = pulumi.ResourceOptions(parent=parent, provider=provider, protect=args.protect)
    # RDS reads a restore only when it creates the instance (and the provider would replace it when the
    # key goes); a restored instance keeps the old instance's KMS key, which cannot change in place.
    restorable = pulumi.ResourceOptions.merge(kept, pulumi.ResourceOptions(ignore_changes=["restoreToPointInTime", "kmsKeyId"]))
    # The final snapshots' names must not collide with those of an earlier life of the stack: a destroy
    # after a rebuild would fail on them. A suffix generated with the stack's state is new on each rebuild.
    final = None
    if args.protect:
        final = random.RandomId(f"{name}-final-snapshot", byte_length=4, opts=pulumi.ResourceOptions(parent=parent)).hex
    postgres = aws.rds.Instance(
        f"{name}-postgres",
        engine="postgres",
        engine_version=RDS_POSTGRES_MAJOR,  # minor versions: RDS applies them in the maintenance window
        auto_minor_version_upgrade=True,
        instance_class=args.instance_class,
        allocated_storage=max(RDS_MIN_STORAGE_GIB, storage_gib(args.settings.storage)),
        max_allocated_storage=4 * max(RDS_MIN_STORAGE_GIB, storage_gib(args.settings.storage)),  # storage autoscaling
        storage_type="gp3",
        storage_encrypted=True,
        kms_key_id=shared.key.arn,
        multi_az=True,
        db_name=service,
        username=service,
        password=db_password.result,
        port=POSTGRES_PORT,
        db_subnet_group_name=shared.db_subnets.name,
        vpc_security_group_ids=[shared.postgres_sg.id],
        parameter_group_name=shared.db_parameters.name,
        publicly_accessible=False,
        backup_retention_period=args.backup_retention_days,
        backup_window=RDS_BACKUP_WINDOW,
        maintenance_window=RDS_MAINTENANCE_WINDOW,
        copy_tags_to_snapshot=True,
        # Whoever deletes the instance does not take its point-in-time history with it: RDS keeps
        # the automated backups for their retention, and a rebuilt stack restores from them.
        delete_automated_backups=False,
        deletion_protection=args.protect,
        skip_final_snapshot=not args.protect,
        final_snapshot_identifier=pulumi.Output.concat(f"{name}-final-", final) if final else None,
        restore_to_point_in_time=_point_in_time(args.restore_of(service)),
        tags=managed_by(),
        opts=restorable,
    )
    redis = aws.elasticache.ReplicationGroup(
        f"{name}-redis",
        description=f"{service}: Redis",
        engine="redis",
        engine_version=ELASTICACHE_REDIS_VERSION,
        node_type=args.node_type,
        num_cache_clusters=args.settings.replicas,
        automatic_failover_enabled=True,
        multi_az_enabled=True,
        at_rest_encryption_enabled=True,
        kms_key_id=shared.key.arn,
        transit_encryption_enabled=True,
        auth_token=redis_token.result,
        # A new token is added beside the old one, so clients holding the old one keep working.
        auth_token_update_strategy="ROTATE",
        port=REDIS_PORT,
        subnet_group_name=shared.cache_subnets.name,
        security_group_ids=[shared.redis_sg.id],
        parameter_group_name=shared.cache_parameters.name,
        snapshot_retention_limit=args.backup_retention_days,
        snapshot_window=RDS_BACKUP_WINDOW,
        final_snapshot_identifier=pulumi.Output.concat(f"{name}-redis-final-", final) if final else None,
        tags=managed_by(),
        opts=kept,
    )
    return postgres, redis


def _point_in_time(restore: Restore | None) -> aws.rds.InstanceRestoreToPointInTimeArgs | None:
    """The old instance's backups at `restore.time` (else the latest restorable time). The password is not in
    RDS's restore call: the provider sets the generated one right after (ModifyDBInstance)."""
    if restore is None:
        return None
    retained = restore.source.startswith("arn:")
    return aws.rds.InstanceRestoreToPointInTimeArgs(
        source_db_instance_automated_backups_arn=restore.source if retained else None,
        source_db_instance_identifier=None if retained else restore.source,
        restore_time=restore.time,
        use_latest_restorable_time=True if restore.time is None else None,
    )


def archive_key(args: DataStoresArgs, name: str, service: str) -> WriterKey | ObjectStoreTarget:
    """The key CloudNativePG archives `service`'s database with: a workload cluster's own (Dragonfly's manager:
    platform:services.dragonfly.archiveKeys.<cluster>), so no pod or node taken over there, where tenants run, holds
    a key of the control plane's; else this database's own archive key where the stack has backups
    (platform:objectStore.archiveKeys.<service>), so neither the other database nor GitLab's pods nor Harbor's
    registry, which hold the object store's key, can forge or overwrite the archives `platformctl backups check`
    watches; else the object store's."""
    own = args.own_archive_key
    if own is not None:
        args.inventory.register(writer_key_credential(own.writer, own.holder, resources=(f"{name}-backup-store",)))
        return own.key
    if args.backups is not None:
        return args.backups.writer_key(f"postgres-{service}", f"Secret {service}/{service}-backup-store (CloudNativePG's instances)",
                                       f"{name}-backup-store")
    assert args.object_store is not None
    return args.object_store


def _backup_secret(
    name: str, service: str, ns: k8s.core.v1.Namespace, key: WriterKey | ObjectStoreTarget, opts: pulumi.ResourceOptions
) -> k8s.core.v1.Secret:
    return k8s.core.v1.Secret(
        f"{name}-backup-store",
        metadata=metadata(f"{service}-backup-store", ns),
        type="Opaque",
        string_data=dict(zip(BACKUP_KEYS, (key.access_key_id, pulumi.Output.secret(key.secret_access_key)))),
        opts=opts,
    )


def _in_cluster(
    name: str, service: str, ns: k8s.core.v1.Namespace, shared: DataStores,
    secrets: list[pulumi.Resource], redis_secret: k8s.core.v1.Secret, sum_: pulumi.Output[str], opts: pulumi.ResourceOptions,
) -> tuple[list[pulumi.Resource], pulumi.Output[str]]:
    """A CloudNativePG Cluster with backups to the object store, and a Valkey of one; and where the Cluster archives.
    Its instances connect where `instance_egress` says, and the operator to them on the instance manager's port."""
    args = shared.args
    assert shared.operator is not None and shared.namespace is not None
    held = [hold_egress(name, ns, f"egress-{service}-postgres", instance_labels(service), instance_egress(service, shared.cluster, args), opts),
            hold_egress(name, shared.namespace, f"egress-to-{service}-postgres", OPERATOR_LABELS,
                        [to_pods_in(ns.metadata.name, instance_labels(service), [INSTANCE_MANAGER_PORT])], opts)]
    after_operator = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[shared.operator, *secrets, *held]))
    # CloudNativePG archives only into an empty folder, and the object store keeps the folders of a
    # destroyed stack: an id generated with the stack's state names a new folder on each rebuild.
    life = random.RandomId(f"{name}-archive", byte_length=4, opts=pulumi.ResourceOptions(parent=opts.parent))
    spec = cnpg_cluster_spec(service, args, pulumi.Output.concat(f"{service}-postgres-", life.hex))
    cluster = k8s.apiextensions.CustomResource(
        f"{name}-postgres",
        api_version="postgresql.cnpg.io/v1",
        kind="Cluster",
        metadata=metadata(f"{service}-postgres", ns),
        spec=spec,
        # CloudNativePG reads the bootstrap only when it creates the cluster: a restore's goes unapplied after.
        opts=pulumi.ResourceOptions.merge(after_operator, pulumi.ResourceOptions(
            protect=args.protect, ignore_changes=["spec.bootstrap", "spec.externalClusters"])),
    )
    k8s.apiextensions.CustomResource(
        f"{name}-postgres-daily",
        api_version="postgresql.cnpg.io/v1",
        kind="ScheduledBackup",
        metadata=metadata(f"{service}-postgres-daily", ns),
        spec={
            "schedule": BACKUP_SCHEDULE,
            "cluster": {"name": f"{service}-postgres"},
            "method": "barmanObjectStore",
            "backupOwnerReference": "self",
            "immediate": True,  # a base backup right after creation, not a day later
        },
        opts=pulumi.ResourceOptions.merge(after_operator, pulumi.ResourceOptions(depends_on=[cluster])),
    )
    own = spec["backup"]["barmanObjectStore"]
    return [cluster, *valkey(name, service, ns, args, redis_secret, sum_, opts)], pulumi.Output.concat(
        own["destinationPath"], "/", own["serverName"]
    )


def cnpg_cluster_spec(service: str, args: DataStoresArgs, server_name: pulumi.Input[str]) -> dict[str, Any]:
    """The Cluster's spec; it archives to the folder `server_name` under the service's backup path."""
    store = args.object_store
    assert store is not None
    secret = f"{service}-backup-store"
    barman = {
        "destinationPath": f"s3://{store.bucket}/{args.backup_prefix}/{service}",
        "endpointURL": store.endpoint,
        "s3Credentials": {
            "accessKeyId": {"name": secret, "key": BACKUP_KEYS[0]},
            "secretAccessKey": {"name": secret, "key": BACKUP_KEYS[1]},
        },
    }
    owner = {"database": service, "owner": service, "secret": {"name": f"{service}-postgres"}}
    restore = args.restore_of(service)
    return {
        "instances": args.settings.replicas,
        "imageName": CNPG_POSTGRES_IMAGE.ref,
        "primaryUpdateStrategy": "unsupervised",
        "enableSuperuserAccess": False,
        "storage": {"size": args.settings.storage},
        **({"resources": args.settings.resources} if args.settings.resources else {}),
        # One instance per node where the nodes allow it (a kind cluster may have one node).
        "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname", "podAntiAffinityType": "preferred"},
        **(_recovery(restore, barman, owner) if restore else {"bootstrap": {"initdb": owner}}),
        # A managed role: the operator sets the owner's password again whenever the Secret changes.
        "managed": {"roles": [{
            "name": service, "ensure": "present", "login": True, "passwordSecret": {"name": f"{service}-postgres"},
        }]},
        "backup": {
            "retentionPolicy": f"{args.backup_retention_days}d",
            "barmanObjectStore": {
                **barman,
                "serverName": server_name,
                "wal": {"compression": "gzip"},
                "data": {"compression": "gzip"},
            },
        },
    }


def archive_expectations(
    service: str, ns: k8s.core.v1.Namespace, store: ObjectStoreTarget, archive: pulumi.Output[str],
) -> list[BackupExpectation]:
    """The folder's base backups and WAL (barman-cloud's layout: base/<backup id>/data.tar[.gz] and backup.info,
    wals/<timeline and log>/<segment>[.gz]), both new at least once a day: the daily base backup ends by switching
    to a new WAL segment. A base backup counts by its backup.info, uploaded when it ends with its status (DONE, FAILED)."""
    folder = archive.apply(lambda url: url.removeprefix(f"s3://{store.bucket}/") + "/")
    schedule = " ".join(BACKUP_SCHEDULE.split()[1:])  # without CloudNativePG's leading seconds
    return [
        BackupExpectation(
            writer=pulumi.Output.concat(f"{kind} ", ns.metadata.name, f"/{service}-postgres{suffix}"), store="objectStore",
            bucket=store.bucket, endpoint=store.endpoint, region=store.region, prefix=folder.apply(lambda f, sub=sub: f + sub),
            pattern=pattern, schedule=schedule, outcome=outcome,
        )
        for kind, suffix, sub, pattern, outcome in (
            ("ScheduledBackup", "-daily", "base/", r"^[^/]+/backup\.info$", "barman"),
            ("Cluster", "", "wals/", r"^[0-9A-F]{16}/[0-9A-F]{24}", None),
        )
    ]


RESTORE_SOURCE = "origin"  # the externalClusters entry a recovery reads


def _recovery(restore: Restore, barman: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A new cluster recovered from the old one's base backups and WAL (`restore.source`: its server name)
    to `restore.time`, else to the end of its WAL; the owner's password is then the Secret's again."""
    target = {"recoveryTarget": {"targetTime": restore.time}} if restore.time else {}
    return {
        "bootstrap": {"recovery": {"source": RESTORE_SOURCE, **owner, **target}},
        "externalClusters": [{"name": RESTORE_SOURCE, "barmanObjectStore": {**barman, "serverName": restore.source}}],
    }


# Valkey's settings beside the AUTH line: persistence to its volume, and no eviction (job queues).
VALKEY_CONFIG = "dir /data\nappendonly yes\nmaxmemory-policy noeviction\n"
VALKEY_UID, VALKEY_GID = 999, 1000  # the image's valkey user
VALKEY_STORAGE = "1Gi"  # its append-only file: queues and caches, small


def valkey(
    name: str, service: str, ns: k8s.core.v1.Namespace, args: DataStoresArgs, secret: k8s.core.v1.Secret,
    sum_: pulumi.Output[str], opts: pulumi.ResourceOptions,
) -> list[pulumi.Resource]:
    """One Valkey with AUTH, its data on a volume; restarted (checksum) when its token changes. It connects nowhere: no
    replica or cluster bus, `valkey-server <config>` in place of the image's entrypoint, probes from the kubelet."""
    labels = {"app.kubernetes.io/name": "valkey", **redis_labels(service)}
    held = hold_egress(name, ns, f"egress-{service}-redis", redis_labels(service), [], opts)
    service_obj = k8s.core.v1.Service(
        f"{name}-redis",
        metadata=metadata(f"{service}-redis", ns),
        spec=k8s.core.v1.ServiceSpecArgs(
            cluster_ip="None", selector=labels, ports=[k8s.core.v1.ServicePortArgs(name="redis", port=REDIS_PORT)]
        ),
        opts=opts,
    )
    container = k8s.core.v1.ContainerArgs(
        name="valkey",
        image=VALKEY_IMAGE.ref,
        command=["valkey-server", f"/config/{VALKEY_CONFIG_KEY}"],
        ports=[k8s.core.v1.ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
        readiness_probe=k8s.core.v1.ProbeArgs(tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=REDIS_PORT), period_seconds=10),
        liveness_probe=k8s.core.v1.ProbeArgs(
            tcp_socket=k8s.core.v1.TCPSocketActionArgs(port=REDIS_PORT), initial_delay_seconds=30, period_seconds=20
        ),
        resources=args.settings.resources or None,
        security_context=k8s.core.v1.SecurityContextArgs(
            allow_privilege_escalation=False, read_only_root_filesystem=True, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])
        ),
        volume_mounts=[
            k8s.core.v1.VolumeMountArgs(name="data", mount_path="/data"),
            k8s.core.v1.VolumeMountArgs(name="config", mount_path="/config", read_only=True),
        ],
    )
    statefulset = k8s.apps.v1.StatefulSet(
        f"{name}-redis",
        metadata=metadata(f"{service}-redis", ns),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            service_name=f"{service}-redis",
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels, annotations={"platform.io/credentials-checksum": sum_}),
                spec=k8s.core.v1.PodSpecArgs(
                    automount_service_account_token=False,
                    security_context=k8s.core.v1.PodSecurityContextArgs(
                        run_as_non_root=True, run_as_user=VALKEY_UID, run_as_group=VALKEY_GID, fs_group=VALKEY_GID,
                        seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
                    ),
                    containers=[container],
                    volumes=[k8s.core.v1.VolumeArgs(
                        name="config",
                        secret=k8s.core.v1.SecretVolumeSourceArgs(
                            secret_name=f"{service}-redis", items=[k8s.core.v1.KeyToPathArgs(key=VALKEY_CONFIG_KEY, path=VALKEY_CONFIG_KEY)]
                        ),
                    )],
                ),
            ),
            volume_claim_templates=[k8s.core.v1.PersistentVolumeClaimArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(name="data"),
                spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                    access_modes=["ReadWriteOnce"], resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": VALKEY_STORAGE})
                ),
            )],
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[secret, service_obj, held])),
    )
    return [statefulset]


TITLES = {"gitlab": "GitLab", "harbor": "Harbor", "dragonfly": "Dragonfly"}  # services by name, in the inventory


def service_credentials(name: str, service: str, title: str, args: DataStoresArgs, managed: bool) -> list[Credential]:
    """The service's database password and Redis AUTH token: between the service and its own stores."""
    where = ("RDS PostgreSQL" if managed else "CloudNativePG PostgreSQL", "ElastiCache" if managed else "Valkey")
    rotation = (
        "`pulumi up --replace` the password resource: the same run sets it in {store}, rewrites the Secret and "
        "restarts {title}'s pods (checksum annotation){extra}"
    )
    entries = [internal_secret(
        title, f"{title} PostgreSQL password",
        scope=f"owner of {title}'s database `{service}` on its {where[0]}, nothing else",
        rotation=rotation.format(store=where[0], title=title, extra=(
            "; CloudNativePG applies the new password from the Secret" if not managed else
            "; connections opened before keep working until the pods restart")),
        resources=(f"{name}-postgres-password",),
    ), internal_secret(
        title, f"{title} Redis AUTH token",
        scope=f"{title}'s own {where[1]}: caches, sessions and job queues",
        rotation=rotation.format(store=where[1], title=title, extra=(
            "; ElastiCache keeps the old token valid beside the new one (ROTATE)" if managed else "")),
        resources=(f"{name}-redis-token",),
    )]
    if not managed and args.backups is None and args.own_archive_key is None:  # else archive_key registered a writer's own key
        entries.append(object_store_credential(
            f"{title}'s database backups",
            f"CloudNativePG's backups of {title}'s database (Secret {service}/{service}-backup-store)",
            f"s3://<bucket>/{args.backup_prefix}/{service}",
        ))
    return entries


def object_store_credential(user: str, holder: str, prefix: str) -> Credential:
    """The inventory entry of platform:objectStore's access key, as `user` holds it."""
    return external_secret(
        f"object-store access key of {user}",
        issuer="the object store's administrator (platform:objectStore)",
        holder=holder,
        scope=f"what the object store grants that key; {user} write under {prefix}",
        lifetime="set by whoever issued the key",
        rotation="issue a new key, `pulumi config set --secret --path platform:objectStore.secretAccessKey`, `pulumi up`",
    )


def operator_credentials(cluster: str) -> list[Credential]:
    """The CloudNativePG operator's identity and the certificates it issues to its clusters."""
    where = "" if cluster == "control-plane" else f" on {cluster}"
    return [projected_token(
        f"service-account tokens of the CloudNativePG operator{where}",
        issuer=f"the {cluster} cluster's service-account issuer",
        holder=f"the CloudNativePG operator ({NAMESPACE}){where}",
        scope="its ClusterRole: PostgreSQL clusters, their pods, services, secrets and volumes, in every namespace",
    ), internal_secret(
        "CloudNativePG", f"CloudNativePG server and replication certificates{where}",
        scope="TLS of each PostgreSQL cluster's instances, and the streaming_replica user between them",
        rotation="the operator renews each 7 days before it expires",
        seconds=CNPG_CERTIFICATE_DAYS * DAY,
    )]


def stores_args(
    settings: ServiceSettings, protect: bool, object_store: ObjectStoreTarget | None, inventory: CredentialInventory,
    backup_prefix: str = "postgres", backups: BackupStore | None = None, own_archive_key: OwnArchiveKey | None = None,
) -> DataStoresArgs:
    """The stores' Args from `platform:services.dataStores`, on whichever cluster they run."""
    options = settings.options
    return DataStoresArgs(
        protect=protect,
        settings=settings,
        backup_retention_days=options["backup_retention_days"],
        instance_class=options["instance_class"],
        node_type=options["node_type"],
        object_store=object_store,
        inventory=inventory,
        backup_prefix=backup_prefix,
        restore=options["restore"],
        backups=backups,
        own_archive_key=own_archive_key,
    )


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> DataStores:
    return DataStores("data-stores", parts.cluster, stores_args(
        settings, parts.settings.protect, parts.settings.object_store, parts.inventory, backups=parts.backups))


SLICE: ServiceSlice[DataStores] = ServiceSlice(
    key="data_stores",
    namespace=PlatformNamespace(NAMESPACE, "the CloudNativePG operator, which runs GitLab's and Harbor's PostgreSQL"),
    chart="cloudnative-pg",
    declare=declare,
    default_replicas=3,
    options={
        # Days of backups kept: RDS allows 1 to 35; CloudNativePG's retention policy.
        "backup_retention_days": (Annotated[int, Field(ge=1, le=35)], 7),
        "instance_class": (str, "db.m7g.large"),
        "node_type": (str, "cache.m7g.large"),
        # Databases a rebuilt stack creates from their backups instead of empty; read only at creation.
        "restore": (Restores, Restores()),
    },
    # Where each database archives on a kubeconfig stack: what a restore after a rebuild names as its source.
    outputs=lambda stores: {"databaseArchives": dict(stores.archives)} if stores.archives else {},
)
