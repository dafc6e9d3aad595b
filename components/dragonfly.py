"""Dragonfly on a workload cluster: the platform's public images pulled peer to peer, and preheated by Harbor.

The dragonfly chart's manager, scheduler and seed peers, and its client (dfdaemon) on every node
as containerd's mirror for Harbor's host (dfinit writes containerd's `hosts.toml`), so a layer of the
public-read `approved` project a node pulls comes from the seed peers and Harbor serves it once per
cluster; a tenant project's layers go to Harbor on every pull, never into a cache (`approved_blobs`);
dfdaemon answers its own node alone, and the nodes share nothing with each other (`node_daemon_config`). The chart's
Bitnami MySQL and Redis stay off: the manager keeps its state in the platform's data stores
(components/data_stores.py: RDS and ElastiCache in the cluster's VPC on EKS, CloudNativePG and
Valkey elsewhere), PostgreSQL through the manager's `database.type: postgres`, which the chart's
template cannot say. So the manager and the scheduler read their configuration from a Secret of
ours (`MANAGER_CONFIG`, `SCHEDULER_CONFIG`: the `--config` flag's variables) holding the
database password, the Redis AUTH token and the manager's JWT key; the chart's ConfigMaps for
them hold no credential and are not read.

Harbor preheats (its `dragonfly` preheat provider calls the manager's open API): each cluster's
manager is published at `dragonfly.<cluster>.<domain>` on the tenants' ingress with only the two
paths Harbor calls (`/healthy`, `/oapi/v1/jobs`); the console stays inside the cluster. The open
API takes a personal access token the manager issues (scope `job`), which only a signed-in admin
can create once the manager runs: `platform:services.dragonfly.preheatTokens.<cluster>` hands it
to Harbor's preheat instance for that cluster (README, P2P distribution). The `approved` project
gets a preheat policy per instance (`preheat_approved`, components/harbor_preheat.py).

The manager seeds its console's `root` with the password `dragonfly`; a Job replaces it with a
generated one at once (`_replace_seeded_root`), kept in Secret `dragonfly-root-password`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumiverse_harbor as harbor
from pydantic import SecretStr

from components import data_stores, workload_ingress, yaml_text
from components.cluster import ClusterHandle
from components.common import ConfigModel, ObjectStoreTarget, S3Key, checksum
from components.data_stores import DataStoresArgs, OwnArchiveKey, ServiceStores
from components.egress import HTTPS, Admit, dns, from_anywhere, hold_egress, hold_namespace, networks_or_internet, registry_blobs, to_pods
from components.backup_jobs import pod_spec
from components.backups import WriterKey, restricted_container
from components.harbor_preheat import PreheatPolicy
from components.helm import disruption_budget, metadata, namespace, release, sized
from components.inventory import STATE, Credential, CredentialInventory, external_secret, generated_password, internal_secret, projected_token
from components.service import ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice
from components.tenancy import TenantPlatform
from components.tenant_supply_chain import APPROVED_PROJECT, approved
from components.versions import BUSYBOX_IMAGE, DRAGONFLY_TAGS
from policy.labels import TENANT_NODES_TOLERATION

NAMESPACE = "dragonfly-system"
RELEASE = "dragonfly"
MANAGER = f"{RELEASE}-manager"  # the chart's manager Deployment and Service
REST_PORT, GRPC_PORT = 8080, 65003  # the chart's defaults (manager.restPort, manager.grpcPort)
SCHEDULER_PORT = 8002  # the chart's default (scheduler.config.server.port)
# A seed peer's upload gRPC and piece server over TCP (the chart's seedClient.config upload.server.port, storage.server.tcpPort).
SEED_UPLOAD_PORT, SEED_PIECE_PORT = 4000, 4005
ROOT_PASSWORD_JOB = "root-password"  # its pods' `component` label (`tier`): what their egress policy selects
SCHEDULER_CLUSTER_ID = 1  # the scheduler cluster the manager seeds on its first start
CONFIG_SECRET = "dragonfly-config"  # manager.yaml and scheduler.yaml
CONFIG_DIR = "/etc/dragonfly-platform"
# What Harbor's dragonfly preheat provider calls on the manager, and nothing else is published.
PREHEAT_PATHS = (("/healthy", "Exact"), ("/oapi/v1/jobs", "Prefix"))
REPLICATED = ("manager", "scheduler", "seed-client")  # the chart's replicated tiers (their `component` label)
ROOT_PASSWORD_SECRET = "dragonfly-root-password"
HARBOR_CA = "dragonfly-harbor-ca"  # the ConfigMap with the CA Harbor's certificate chains to, when not public
HARBOR_CA_DIR = "/etc/dragonfly-platform/harbor-ca"
LOOPBACK = "127.0.0.1"  # where a dfdaemon listener answers its own host alone (`answers_its_host`)
# The client image's CA bundle (debian:bookworm-slim with ca-certificates: client ci/Dockerfile, v1.4.0). dfdaemon
# verifies Harbor's certificate on what it proxies only against a `registryMirror.cert`: without one, nothing
# (proxy/mod.rs `proxy_via_https`, NoVerifier), however public Harbor's certificate.
SYSTEM_ROOTS = "/etc/ssl/certs/ca-certificates.crt"
# The manager (v2.5.0, manager/permission/rbac/rbac.go) seeds `root`, user 1, with the password
# `dragonfly` when its user table is empty; `reset_password` takes the old password, no session, and
# answers 401 to a wrong one (manager/middlewares/error.go). Passwords are 8 to 20 characters.
# The bodies reach wget on stdin (printf is a shell builtin): a command line is anyone's to read on the node.
REPLACE_SEEDED_ROOT_SH = """\
set -u
users="http://$MANAGER:$REST_PORT/api/v1/users"
post() { printf '%s' "$2" | wget -q -O /dev/null --header 'Content-Type: application/json' --post-file /dev/stdin "$users/$1"; }
if post 1/reset_password "{\\"old_password\\":\\"dragonfly\\",\\"new_password\\":\\"$ROOT_PASSWORD\\"}"; then
  echo "replaced root's seeded password"; exit 0
fi
if post signin "{\\"name\\":\\"root\\",\\"password\\":\\"$ROOT_PASSWORD\\"}"; then
  echo "root's password is the platform's already"; exit 0
fi
echo "the manager did not answer, or root's password is neither the seeded one nor the platform's" >&2
exit 1
"""


def tier(component: str) -> dict[str, str]:
    """The labels of one of the chart's tiers' pods (manager, scheduler, seed-client), or of the root-password Job's."""
    return {"app": RELEASE, "component": component}


# What dfdaemon on every node (the host's network) connects to, besides what Dragonfly's own pods reach in their
# namespace: the manager's gRPC for its schedulers, the scheduler's to announce its host and peers, and a seed
# peer's upload gRPC (`sync_pieces`) and piece server over TCP (`download.protocol: tcp`; client v1.4.0
# dragonfly-client/src/resource/piece_collector.rs, piece_downloader.rs). None of them asks for a credential
# (README, P2P distribution), and the nodes' addresses are not the pods' to tell apart on EKS: every pod without
# an egress policy of its own reaches these four ports, and none of the tiers' others (metrics, health, QUIC).
NODE_CLIENTS = (
    from_anywhere("manager-grpc", tier("manager"), (GRPC_PORT,)),
    from_anywhere("scheduler-grpc", tier("scheduler"), (SCHEDULER_PORT,)),
    from_anywhere("seed-peer-pieces", tier("seed-client"), (SEED_UPLOAD_PORT, SEED_PIECE_PORT)),
)


class ArchiveKeys(ConfigModel):
    """`platform:services.dragonfly.archiveKeys` (kubeconfig clusters): each cluster's own key, which the object store's
    administrator confines to postgres/<cluster>/ (components/backups.py writer_key_policy), so a pod or node taken
    over there, where tenants run, holds no key of the control plane's (README, P2P distribution)."""

    dev: S3Key | None = None
    prod: S3Key | None = None


class PreheatTokens(ConfigModel):
    """`platform:services.dragonfly.preheatTokens`: each cluster's manager token for Harbor (scope `job`)."""

    dev: SecretStr | None = None
    prod: SecretStr | None = None


@dataclass(frozen=True)
class DragonflyArgs:
    harbor_host: str  # harbor.<domain>: the registry the nodes mirror, and where the images come from
    hostname: str  # dragonfly.<cluster>.<appsDomain>: the manager's open API, for Harbor (under the tenants' wildcard)
    stores: DataStoresArgs  # platform:services.dataStores, for the manager's own stores
    settings: ServiceSettings  # replicas, storage (each seed peer's cache), chart version, sizing
    ingress: workload_ingress.WorkloadIngress  # the tenants' Traefik, which serves the preheat API
    preheat_token: pulumi.Output[str] | None = None  # a Pulumi secret; None: no preheat yet
    # PEM of the CA Harbor's certificate chains to when it is not public (the platform CA); None: system roots.
    harbor_ca: pulumi.Input[str] | None = None
    harbor_provider: pulumi.ProviderResource | None = None  # the control plane's Harbor, which preheats
    inventory: CredentialInventory = field(default_factory=CredentialInventory)
    control_plane_ingress: tuple[pulumi.Input[str], ...] = ()  # where harbor.<domain> is (ClusterParts.control_plane_ingress)
    object_store: ObjectStoreTarget | None = None  # where Harbor keeps images off EKS (platform:objectStore)


class Dragonfly(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: DragonflyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:dragonfly:Dragonfly", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        shared = data_stores.DataStores(f"{name}-stores", cluster, args.stores, pulumi.ResourceOptions(parent=self))
        stores = shared.for_service(RELEASE, ns, self, name=f"{name}-data")
        jwt_key = random.RandomPassword(f"{name}-jwt-key", length=48, special=False, opts=pulumi.ResourceOptions(parent=self))
        config = pulumi.Output.all(stores.postgres.password, stores.redis.token, jwt_key.result, stores.postgres.host, stores.redis.host)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        secret = k8s.core.v1.Secret(
            f"{name}-config",
            metadata=metadata(CONFIG_SECRET, ns),
            type="Opaque",
            string_data=config.apply(lambda c: config_files(stores, *c)),
            opts=k8s_opts,
        )
        trusted = [] if args.harbor_ca is None else [k8s.core.v1.ConfigMap(
            f"{name}-harbor-ca", metadata=metadata(HARBOR_CA, ns), data={"ca.crt": args.harbor_ca}, opts=k8s_opts,
        )]
        # The manager's REST API lets anyone sign up, and a signed-up guest reads every personal access token
        # (manager/router/router.go, rbac.go: guests read all): its own namespace and the ingress only
        # (`kubectl port-forward` reaches the console); from anywhere, only what the nodes call. In-cluster
        # stores (kubeconfig clusters): their operator, and the database the manager alone (the scheduler's is Redis).
        held = hold_namespace(name, ns, [
            Admit("manager-rest", tier("manager"), [workload_ingress.from_ingress_controller()], (REST_PORT,)),
            *NODE_CLIENTS, *stores.admits,
        ], pulumi.ResourceOptions(parent=self, provider=cluster.provider), stores.database_clients(RELEASE, [tier("manager")]))
        held += self._egress(name, ns, args, stores, pulumi.ResourceOptions(parent=self, provider=cluster.provider))
        self.release = release(
            RELEASE, "dragonfly", ns, chart_values(args, checksum(config.apply(json.dumps))), cluster, self,
            version=args.settings.chart_version, depends_on=[secret, *trusted, *stores.ready, *held],
        )
        self._publish(name, cluster, ns, args.hostname, args.ingress)
        self._replace_seeded_root(name, ns, args.harbor_host, k8s_opts)
        # The chart has no budgets: a drain keeps all but one manager, scheduler and seed peer serving.
        for component in REPLICATED:
            disruption_budget(f"{name}-{component}", f"{RELEASE}-{component}", ns, tier(component), k8s_opts)
        self.preheat = self._preheat_instance(name, cluster, args)
        args.inventory.register(*credentials(name, cluster.name))
        self.register_outputs({"manager": f"https://{args.hostname}"})

    @staticmethod
    def _egress(name: str, ns: k8s.core.v1.Namespace, args: DragonflyArgs, stores: ServiceStores,
                opts: pulumi.ResourceOptions) -> list[k8s.networking.v1.NetworkPolicy]:
        """Each tier connects to the DNS and what tests/test_workload_lateral_attacks.py NEEDED names, no further: the
        scheduler and the seed peers to the manager's gRPC (their `manager.addr`); a seed peer to the scheduler
        (announces) and to other seed peers (pieces, from the parent the scheduler names); the scheduler to a seed
        peer's upload gRPC (it triggers its download); the manager to its stores and the scheduler to Redis (its job
        queue); the manager to Harbor (a preheat resolves the image's manifest into layer URLs), a seed peer to Harbor
        and to where Harbor redirects blob reads (its object store: S3 on EKS). The root-password Job to the
        manager's REST. None reaches the nodes, the metadata or another namespace's pods."""
        harbor = networks_or_internet(args.control_plane_ingress, [HTTPS])
        blobs = registry_blobs(args.object_store)
        manager = to_pods([tier("manager")], [GRPC_PORT])
        tiers = {
            "manager": [*stores.reach(postgres=True), *harbor],
            "scheduler": [*stores.reach(postgres=False), *manager, *to_pods([tier("seed-client")], [SEED_UPLOAD_PORT])],
            "seed-client": [*manager, *to_pods([tier("scheduler")], [SCHEDULER_PORT]),
                            *to_pods([tier("seed-client")], [SEED_UPLOAD_PORT, SEED_PIECE_PORT]), *harbor, *blobs],
            ROOT_PASSWORD_JOB: to_pods([tier("manager")], [REST_PORT]),
        }
        return [hold_egress(name, ns, f"egress-{component}", tier(component), [dns(), *rules], opts) for component, rules in tiers.items()]

    def _publish(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace, hostname: str,
                 ingress: workload_ingress.WorkloadIngress) -> None:
        """The manager's preheat API on the tenants' ingress (its wildcard certificate), nothing more
        (in the cluster its REST port answers only its own namespace and that ingress, whose egress reaches it)."""
        backend = {"service": {"name": MANAGER, "port": {"number": REST_PORT}}}
        reached = ingress.route(RELEASE, NAMESPACE, tier("manager"), REST_PORT)
        k8s.networking.v1.Ingress(
            f"{name}-preheat-api",
            metadata=metadata(MANAGER, ns),
            spec={
                "ingressClassName": workload_ingress.INGRESS_CLASS,
                "tls": [{"hosts": [hostname]}],
                "rules": [{"host": hostname, "http": {"paths": [
                    {"path": path, "pathType": kind, "backend": backend} for path, kind in PREHEAT_PATHS
                ]}}],
            },
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release, reached]),
        )

    def _replace_seeded_root(self, name: str, ns: k8s.core.v1.Namespace, harbor_host: str, k8s_opts: pulumi.ResourceOptions) -> None:
        """A generated password for the console's `root` instead of the one every Dragonfly seeds."""
        password = random.RandomPassword(f"{name}-root-password", length=20, special=False, opts=pulumi.ResourceOptions(parent=self))
        secret = k8s.core.v1.Secret(
            f"{name}-root-password", metadata=metadata(ROOT_PASSWORD_SECRET, ns), type="Opaque",
            string_data={"password": password.result}, opts=k8s_opts,
        )
        container = k8s.core.v1.ContainerArgs(
            name="replace-seeded-root",
            image=approved(harbor_host, BUSYBOX_IMAGE.ref),
            command=["/bin/sh", "-c", REPLACE_SEEDED_ROOT_SH],
            env=[
                k8s.core.v1.EnvVarArgs(name="MANAGER", value=MANAGER),
                k8s.core.v1.EnvVarArgs(name="REST_PORT", value=str(REST_PORT)),
                k8s.core.v1.EnvVarArgs(name="ROOT_PASSWORD", value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=ROOT_PASSWORD_SECRET, key="password"))),
            ],
            security_context=restricted_container(),
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "10m", "memory": "16Mi"}, limits={"memory": "32Mi"}),
        )
        k8s.batch.v1.Job(
            f"{name}-root-password",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                namespace=ns.metadata.name,
                # Until the manager answers the Job fails; a failed Job is replaced on the next run.
                annotations={"pulumi.com/replaceUnready": "true"},
            ),
            spec=k8s.batch.v1.JobSpecArgs(
                backoff_limit=6,
                active_deadline_seconds=1800,
                template=k8s.core.v1.PodTemplateSpecArgs(metadata=k8s.meta.v1.ObjectMetaArgs(labels=tier(ROOT_PASSWORD_JOB)),
                                                         spec=pod_spec("default", [], container, [], user=65534)),
            ),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.release, secret])),
        )

    def _preheat_instance(self, name: str, cluster: ClusterHandle, args: DragonflyArgs) -> harbor.PreheatInstance | None:
        """Harbor's preheat instance for this cluster; None without a token (or without Harbor)."""
        if args.preheat_token is None or args.harbor_provider is None:
            return None
        args.inventory.register(preheat_credential(name, cluster.name))
        return harbor.PreheatInstance(
            f"{name}-preheat",
            name=f"dragonfly-{cluster.name}",
            description=f"Dragonfly on the {cluster.name} cluster",
            vendor="dragonfly",
            endpoint=f"https://{args.hostname}",
            auth_mode="OAUTH",
            token=args.preheat_token,
            enabled=True,
            insecure=False,
            opts=pulumi.ResourceOptions(parent=self, provider=args.harbor_provider, depends_on=[self.release]),
        )


def chart_values(args: DragonflyArgs, config_checksum: pulumi.Output[str]) -> dict[str, Any]:
    """The chart's values: images through `approved`, no bundled stores, dfdaemon mirroring Harbor."""
    # By digest alone: the chart ignores the tag once a digest is set.
    busybox = {"repository": BUSYBOX_IMAGE.repository.removeprefix("docker.io/"), "digest": BUSYBOX_IMAGE.digest}
    restart = {"podAnnotations": {"platform.io/config-checksum": config_checksum}}

    def reads_secret(component: str) -> dict[str, Any]:
        # The chart's default extra volume (logs) is kept beside the configuration Secret.
        return {
            "extraEnvVars": [{"name": f"{component.upper()}_CONFIG", "value": f"{CONFIG_DIR}/{component}.yaml"}],
            "extraVolumes": [
                {"name": "logs", "emptyDir": {}},
                {"name": "platform-config", "secret": {"secretName": CONFIG_SECRET, "items": [{"key": f"{component}.yaml", "path": f"{component}.yaml"}]}},
            ],
            "extraVolumeMounts": [
                {"name": "logs", "mountPath": f"/var/log/dragonfly/{component}"},
                {"name": "platform-config", "mountPath": CONFIG_DIR, "readOnly": True},
            ],
            **restart,
        }

    trust = {} if args.harbor_ca is None else harbor_ca_values(args.harbor_ca)  # else the image's CA bundle (SYSTEM_ROOTS)
    values: dict[str, Any] = {
        "global": {"imageRegistry": f"{args.harbor_host}/{APPROVED_PROJECT}/docker.io"},
        "mysql": {"enable": False},
        "redis": {"enable": False},
        "manager": {"replicas": args.settings.replicas, "image": {"tag": DRAGONFLY_TAGS["manager"]}, **reads_secret("manager")},
        "scheduler": {
            "replicas": args.settings.replicas, "image": {"tag": DRAGONFLY_TAGS["scheduler"]}, "initContainer": {"image": busybox},
            **reads_secret("scheduler"),
        },
        "seedClient": {
            "replicas": args.settings.replicas, "image": {"tag": DRAGONFLY_TAGS["client"]}, "initContainer": {"image": busybox},
            "persistence": {"size": args.settings.storage},
            # The seed peers serve pieces (upload, storage); their proxy, an open forward proxy inside this
            # namespace (which the manager's REST port admits) published by the chart's Service, and their
            # profiling answer the pod alone: nothing of the platform's uses them.
            "config": {"proxy": answers_its_host(), "stats": answers_its_host()},
        },
        "client": {
            "image": {"tag": DRAGONFLY_TAGS["client"]},
            "initContainer": {"image": busybox},
            # The platform's nodes pull from Harbor only: its host goes through dfdaemon, nothing else.
            "dfinit": {
                "enable": True,
                # containerd reads certs.d/<host>/hosts.toml at each pull (kind's and EKS's config_path is set):
                # no privileged init container restarting containerd on every node at each rollout.
                "restartContainerRuntime": False,
                "image": {"tag": DRAGONFLY_TAGS["dfinit"]},
                "config": {"containerRuntime": {"containerd": {
                    "proxyAllRegistries": False,
                    "registries": [{
                        "hostNamespace": args.harbor_host, "serverAddr": f"https://{args.harbor_host}",
                        "capabilities": ["pull", "resolve"], "skipVerify": False,
                    }],
                }}},
            },
            "config": node_daemon_config(args),
            "metrics": {"enable": False},  # its Service: nothing scrapes it, and the port answers the node alone
            # Every node pulls Harbor's images through it: tenants' dedicated nodes too (the chart sets no toleration).
            "tolerations": [dict(TENANT_NODES_TOLERATION)],
            **trust,
        },
    }

    return sized(
        values, args.settings.resources, "manager", "scheduler", "seedClient", "client",
        "scheduler.initContainer", "seedClient.initContainer", "client.initContainer",
    )


def node_daemon_config(args: DragonflyArgs) -> dict[str, Any]:
    """dfdaemon.yaml on the nodes (what the chart's defaults leave open to tenants: README, P2P distribution).

    dfdaemon runs on the host's network, and a pod always reaches its own node's addresses: Kubernetes'
    NetworkPolicies cannot refuse it, and EKS's network policy agent admits the node's IP from every pod
    (aws/aws-network-policy-agent#65). So every listener answers the node alone (client v1.4.0 binds
    0.0.0.0 unless told: dragonfly-client-config/src/dfdaemon.rs `Config::convert`): containerd reaches the
    mirror at 127.0.0.1 (dfinit's `proxy.addr`), the probes use the unix socket. The nodes share no
    pieces (`disableShared`: the scheduler never makes them a parent); the seed peers, which tenants'
    NetworkPolicies keep out, serve the cluster. A task is keyed by its blob's URL, repository
    included, not by its digest alone (the client's default), and only the `approved` project's blobs
    go peer to peer (`approved_blobs`).
    """
    mirror = {
        "addr": f"https://{args.harbor_host}", "enableTaskIDBasedBlobDigest": False,
        "cert": SYSTEM_ROOTS if args.harbor_ca is None else f"{HARBOR_CA_DIR}/ca.crt",
    }
    return {
        "proxy": {**answers_its_host(), "registryMirror": mirror, "rules": [{"regex": approved_blobs(args.harbor_host)}]},
        "upload": {**answers_its_host(), "disableShared": True},
        **{listener: answers_its_host() for listener in ("storage", "health", "metrics", "stats")},
    }


def answers_its_host() -> dict[str, Any]:
    """A dfdaemon listener's section bound to the loopback address (client v1.4.0 binds 0.0.0.0 unless told)."""
    return {"server": {"ip": LOOPBACK}}


def approved_blobs(harbor_host: str) -> str:
    """The proxy rule's regex (Rust's `regex`, matched against the parsed URL without its query, dot segments
    resolved: proxy/mod.rs `find_matching_rule`): blobs by sha256 of the public-read `approved` project only.

    What goes peer to peer stays on the node as a task keyed by its URL, and dfdaemon serves a task it holds
    to any request for that URL without asking Harbor (resource/task.rs `download_started`, client v1.4.0),
    credential or none; containerd on the node makes such a request for whoever's image names the URL in a
    layer's `urls`, which Harbor's registry accepts (tests/test_p2p_attacks.py). So a tenant project's
    blobs, private, are forwarded to Harbor with the puller's credentials on every pull instead."""
    return f"^https://{re.escape(harbor_host)}/v2/{APPROVED_PROJECT}/.+/blobs/sha256:[0-9a-f]{{64}}$"


def harbor_ca_values(pem: pulumi.Input[str]) -> dict[str, Any]:
    """The CA (the ConfigMap) in dfdaemon's pods, where its `registryMirror.cert` names it.

    It covers what dfdaemon proxies itself (manifests: all but the layers); the layers it fetches for peers are
    fetched without verifying Harbor's certificate at all in client v1.4.0 (README, P2P distribution).
    """
    return {
        "podAnnotations": {"platform.io/harbor-ca-checksum": checksum(pem)},  # dfdaemon reads it at start
        # The chart's own extra volumes (storage, logs) are kept beside the CA.
        "extraVolumes": [
            {"name": "storage", "emptyDir": {}}, {"name": "logs", "emptyDir": {}},
            {"name": "harbor-ca", "configMap": {"name": HARBOR_CA}},
        ],
        "extraVolumeMounts": [
            {"name": "storage", "mountPath": "/var/lib/dragonfly/"}, {"name": "logs", "mountPath": "/var/log/dragonfly/dfdaemon/"},
            {"name": "harbor-ca", "mountPath": HARBOR_CA_DIR, "readOnly": True},
        ],
    }


def config_files(stores: ServiceStores, db_password: str, redis_token: str, jwt_key: str, db_host: str, redis_host: str) -> dict[str, str]:
    """manager.yaml and scheduler.yaml: what the chart cannot template (PostgreSQL) and every credential."""
    redis = {
        "addrs": [f"{redis_host}:{stores.redis.port}"], "password": redis_token, "db": 0, "brokerDB": 1, "backendDB": 2,
        # ElastiCache encrypts in transit: verified against the system roots (Amazon's CAs).
        **({"tls": {"insecureSkipVerify": False}} if stores.redis.tls else {}),
    }
    manager = {
        "server": {"rest": {"addr": f":{REST_PORT}"}, "grpc": {"port": {"start": GRPC_PORT, "end": GRPC_PORT}}},
        "auth": {"jwt": {"key": jwt_key}},
        "database": {
            "type": "postgres",
            "postgres": {
                "host": db_host, "port": stores.postgres.port, "user": stores.postgres.username, "password": db_password,
                "dbname": stores.postgres.database, "sslMode": stores.postgres.ssl_mode, "timezone": "UTC", "migrate": True,
            },
            "redis": redis,
        },
        "metrics": {"enable": True, "addr": ":8000"},
        "console": True,
    }
    scheduler = {
        "manager": {
            "addr": f"{MANAGER}.{NAMESPACE}.svc.cluster.local:{GRPC_PORT}", "schedulerClusterID": SCHEDULER_CLUSTER_ID,
            "keepAlive": {"interval": "5s"},
        },
        "database": {"redis": redis},
        "job": {"redis": redis},
        "seedPeer": {"enable": True},
        "metrics": {"enable": True, "addr": ":8000"},
        "console": True,
    }
    return {"manager.yaml": yaml_text.dump(manager, sort_keys=False), "scheduler.yaml": yaml_text.dump(scheduler, sort_keys=False)}


def credentials(name: str, cluster: str) -> list[Credential]:
    """The console's root password, the manager's JWT key and the peers' service-account tokens
    (the stores register their own)."""
    return [generated_password(
        f"Dragonfly console root password on {cluster}",
        holder=f"{STATE} and Secret {NAMESPACE}/{ROOT_PASSWORD_SECRET}",
        scope="the manager's console and REST API as root: every cluster, user and token of this Dragonfly",
        rotation="change it in the console by hand (the Job replaces only the password the manager seeds)",
        resource=f"{name}-root-password",
    ), internal_secret(
        f"Dragonfly on {cluster}", f"Dragonfly manager JWT signing key on {cluster}",
        scope=f"signs the console's sign-in sessions (48 hours each); kept in Secret {NAMESPACE}/{CONFIG_SECRET}",
        rotation="`pulumi up --replace` the key resource: the Secret changes and the manager restarts (checksum); sessions sign in again",
        resources=(f"{name}-jwt-key",),
    ), projected_token(
        f"service-account tokens of Dragonfly on {cluster}",
        issuer=f"the {cluster} cluster's API server (projected service-account token)",
        holder=f"Dragonfly's manager, scheduler and peers ({NAMESPACE}) on {cluster}",
        scope="none granted: the chart binds no role",
    )]


def preheat_credential(name: str, cluster: str) -> Credential:
    return external_secret(
        f"Dragonfly preheat token for Harbor on {cluster}",
        issuer=f"Dragonfly's manager on {cluster} (a personal access token a platform admin creates)",
        holder=f"Harbor (preheat instance dragonfly-{cluster}) and the Pulumi state",
        scope="the manager's open API, scope `job`: create and read preheat jobs",
        lifetime="the expiry chosen when it was created (90 days at most, README)",
        rotation=f"create a new token in the console, `pulumi config set --secret --path platform:services.dragonfly.preheatTokens.{cluster}`, `pulumi up`",
        resources=(f"{name}-preheat",),
    )


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> Dragonfly:
    assert parts.service_settings is not None, "stacks/platform.py hands the add-ons every service's settings"
    name, cluster = f"{parts.cluster.role}-dragonfly", parts.cluster
    stores = data_stores.stores_args(
        parts.service_settings(data_stores.SLICE.key), parts.protect, parts.object_store, parts.inventory,
        backup_prefix=f"postgres/{cluster.name}",  # each cluster's manager database apart from the others
        backups=parts.backups,
        own_archive_key=None if cluster.is_eks else archive_key(cluster.name, settings.options["archive_keys"]),
    )
    token = getattr(settings.options["preheat_tokens"], cluster.name)
    ingress = parts.get(workload_ingress.SLICE)
    assert ingress is not None, "stacks.config refuses dragonfly without workloadIngress"
    return Dragonfly(name, cluster, DragonflyArgs(
        harbor_host=f"harbor.{parts.domain}",
        hostname=f"{RELEASE}.{cluster.name}.{parts.served_domain}",  # on the tenants' ingress, under its wildcard
        stores=stores,
        settings=settings,
        ingress=ingress,
        preheat_token=pulumi.Output.secret(token.get_secret_value()) if token is not None else None,
        harbor_provider=parts.harbor_provider,
        harbor_ca=parts.ca.cert_pem if parts.ca is not None else None,  # Harbor's certificate chains to the platform CA
        inventory=parts.inventory,
        control_plane_ingress=parts.control_plane_ingress,
        object_store=parts.object_store,
    ))


def archive_key(cluster: str, keys: ArchiveKeys) -> OwnArchiveKey:
    """The cluster's own key for its manager database's archives (stacks/config.py requires it on kubeconfig clusters)."""
    key: S3Key | None = getattr(keys, cluster)
    assert key is not None, f"stacks/config.py: platform:services.dragonfly.archiveKeys.{cluster} is required"
    return OwnArchiveKey(
        writer=f"dragonfly-{cluster}",
        key=WriterKey(key.access_key_id, pulumi.Output.secret(key.secret_access_key.get_secret_value())),
        holder=f"Secret {NAMESPACE}/{RELEASE}-backup-store on {cluster} (CloudNativePG's instances there)",
    )


def preheat_approved(platform: TenantPlatform, project: pulumi.Resource) -> list[PreheatPolicy]:
    """A preheat policy on the `approved` project per cluster whose Dragonfly has a preheat instance: what goes peer
    to peer (`approved_blobs`), so a promoted image is on that cluster's seed peers before a node asks for it."""
    if platform.harbor is None or platform.harbor.admin_password is None:
        return []
    policies = []
    for cluster in SLICE.clusters:
        dragonfly: Dragonfly | None = platform.addons.get(cluster, {}).get(SLICE.key)
        instance = dragonfly.preheat if dragonfly is not None else None
        if instance is None:
            continue
        policies.append(PreheatPolicy(
            f"{APPROVED_PROJECT}-preheat-{cluster}",
            harbor_url=f"https://{platform.harbor.host}",
            ca_bundle=platform.ca_bundle,
            username=platform.harbor.admin_user,
            password=platform.harbor.admin_password,
            project=APPROVED_PROJECT,
            instance=instance.name,
            name=f"p2p-{cluster}",
            tags="**",  # promotion pushes upstream tags (v1.4.0, 1.36.1, 3.21): every one
            opts=pulumi.ResourceOptions(parent=dragonfly, depends_on=[instance, project]),
        ))
    return policies


SLICE: ServiceSlice[Dragonfly] = ServiceSlice(
    key="dragonfly",
    namespace=PlatformNamespace(
        NAMESPACE,
        "Dragonfly, whose dfdaemon on every node needs the host's network, PID and IPC namespaces and host paths "
        "(containerd's config and a socket directory) to serve as containerd's registry mirror; nothing privileged, "
        "and nothing else runs there",
    ),
    chart="dragonfly",
    default_replicas=3,
    on_cluster=on_cluster,
    clusters=("dev", "prod"),
    options={
        # Each workload cluster's manager token for Harbor's preheat; unset: P2P pulls without preheat.
        "preheat_tokens": (PreheatTokens, PreheatTokens()),
        # Kubeconfig clusters: each one's own key for its manager database's archives in platform:objectStore.
        "archive_keys": (ArchiveKeys, ArchiveKeys()),
    },
)
