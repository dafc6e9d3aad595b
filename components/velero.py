"""Velero on the workload clusters: scheduled backups of the tenants' namespaces, volumes included.

Each tenant's namespace of every environment in `options.environments` (prod by default) gets a
Velero `Schedule` in the `velero` namespace, kept `platform:backups.retentionDays`.

How volumes are captured:

* EKS: CSI snapshots of the EBS volumes. The EBS CSI driver (an EKS add-on of components/cluster.py)
  takes them, but only through the CSI snapshot API, which EKS does not serve by itself: the
  `snapshot-controller` add-on brings its CRDs and controller, and Velero picks the
  `VolumeSnapshotClass` labelled `velero.io/csi-volumesnapshot-class`. The snapshots stay in EBS,
  outside the bucket's lock: a locked Recycle Bin rule keeps a deleted one a week. Velero writes the
  namespace's objects and the snapshots' handles to the bucket.
* Kubeconfig clusters (kind's local-path volumes cannot be snapshotted): Velero's file-system
  backup, a kopia repository per namespace in the bucket, read by the node agent from the kubelet's
  pod volumes on each node (hostPath, as root). Its repository key is generated, not Velero's
  built-in default. The program declares the node agent with an account of its own
  (components/velero_node_agent.py: the chart's runs as the server's cluster-admin one), and only
  on a cluster whose namespaces are backed up (`Velero.node_agent`).

Where backups go: the stack's backup store (components/backups.py) under `velero/<cluster>/`. On EKS
Velero's IAM role (IRSA) may read, write and delete current objects there and nothing else: no other
prefix, no object versions, no retention settings. S3 Object Lock keeps every version `retentionDays`
and a delete only adds a delete marker, so Velero's own expiry (its `ttl`, the same days) hides a
backup exactly when its lock ends; the lifecycle rule of `velero/` then removes the old versions and
never expires current ones (a kopia repository keeps using old blobs). On kubeconfig stacks each
workload cluster's Velero holds a key of its own (`options.target_keys`), which the target's
administrator confines to that cluster's prefix (`target_policy`), never the control plane's backup
key; its node agents another (`options.node_agent_keys`), confined to the cluster's kopia repositories
(`node_agent_policy`). The node agents run on every workload node, where tenants' code runs: a node taken
over there must reach neither the control plane's backups, nor the other cluster's, nor the Backup
objects and tarballs of its own cluster (every tenant's Secrets, and what a restore applies as cluster-admin).

Tenants get no rights in `velero.io` (components/tenant_roles.py); a restore is a platform
administrator's (README: Tenants' volumes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random
from pydantic import Field
from pydantic.alias_generators import to_camel

from components import alerting
from components.aws import AwsWorkloadIdentity, irsa_credential, workload_role
from components.backups import BackupStore
from components.cluster import ClusterHandle
from components.common import ConfigModel, S3Key
from components.egress import Reach, hold_namespace, hold_namespace_egress
from components.gatekeeper import SLICE as GATEKEEPER, Gatekeeper
from components.helm import metadata, namespace, workload_service_account
from components.inventory import Credential, CredentialInventory, STATE, external_secret, generated_password, projected_token
from components.service import WORKLOAD_CLUSTERS, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice, TenantParts
from components.tenancy import ENVIRONMENTS
from components.tenant_supply_chain import approved
from components.velero_node_agent import NodeAgent, NodeAgentArgs, credential as node_agent_tokens
from components.versions import EKS_SNAPSHOT_CONTROLLER, VELERO_AWS_PLUGIN_IMAGE, VELERO_IMAGE, VELERO_TAG
from policy.labels import MANAGED_BY

NAMESPACE = "velero"
SERVICE_ACCOUNT = "velero-server"  # the chart's server account for release `velero`
LOCATION = "default"  # the BackupStorageLocation every Schedule writes to
CREDENTIALS_SECRET = "velero-s3"  # kubeconfig stacks: the target's key as an AWS credentials file
NODE_AGENT_SECRET = "velero-node-agent-s3"  # kubeconfig stacks: the node agents' own key, to the kopia repositories only
CREDENTIALS_KEY = "cloud"  # where the chart's mount expects it
REPOSITORY_SECRET = "velero-repo-credentials"  # Velero reads kopia's repository password from this Secret
REPOSITORY_KEY = "repository-password"
# Velero's plugin configuration for file-system restores: the labels it finds the ConfigMap by.
RESTORE_HELPER_CONFIG = "fs-restore-action-config"
RESTORE_HELPER_LABELS = {"velero.io/plugin-config": "", "velero.io/pod-volume-restore": "RestoreItemAction"}
SNAPSHOT_CLASS = "ebs-velero"
EBS_CSI_DRIVER = "ebs.csi.aws.com"
EBS_CSI_SNAPSHOT_TAG = ("ebs.csi.aws.com/cluster", "true")  # the tag the driver puts on every snapshot it takes
# A deleted CSI snapshot stays in the Recycle Bin this long, and the rule keeping it there cannot be
# changed or deleted sooner than this after someone asks to unlock it: a week to notice a deletion.
RECYCLE_DAYS = 7
API_VERSION = "velero.io/v1"
SNAPSHOT_API_VERSION = "snapshot.storage.k8s.io/v1"
CronSchedule = Annotated[str, Field(pattern=r"^(\S+\s+){4}\S+$", description="a five-field cron schedule such as '0 1 * * *'")]


def prefix(cluster: str) -> str:
    """Each cluster's Velero under a folder of its own, so one cluster's role cannot touch another's backups."""
    return f"velero/{cluster}"


def target_policy(bucket: str, cluster: str) -> dict[str, Any]:
    """What Velero's object-store plugin needs under its prefix (upstream's velero-plugin-for-aws README,
    minus the EC2 snapshot rights: the CSI driver takes the snapshots): on a kubeconfig stack, the policy
    the target's administrator gives the cluster's key (README: Tenants' volumes)."""
    return _prefix_policy(bucket, prefix(cluster))


def node_agent_policy(bucket: str, cluster: str) -> dict[str, Any]:
    """The node agents' key on a kubeconfig stack: the cluster's kopia repositories, `<prefix>/kopia/<namespace>/`
    (vmware-tanzu/velero pkg/repository/provider/unified_repo.go getStorageVariables: path.Join(prefix,
    udmrepo.StoreOptionPrefixName, repoName)), which is all a volume's copy reads and writes. Never the Backup
    objects and tarballs beside them: a node taken over would read every tenant's Secrets there, or plant objects the
    next restore applies as Velero's cluster-admin."""
    return _prefix_policy(bucket, f"{prefix(cluster)}/kopia")


def _prefix_policy(bucket: str, own: str) -> dict[str, Any]:
    """Read, write and delete objects under `own`/ of `bucket` and list them; nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                                       "s3:ListMultipartUploadParts"],
         "Resource": f"arn:aws:s3:::{bucket}/{own}/*"},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": f"{own}/*"}}},
    ]}


def bucket_policy(bucket: str, kms_key_arn: str, cluster: str) -> dict[str, Any]:
    """Velero's role on EKS: `target_policy`, and the bucket's key."""
    policy = target_policy(bucket, cluster)
    policy["Statement"].append({"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": kms_key_arn})
    return policy


class TargetKeys(ConfigModel):
    """`platform:services.velero.targetKeys` (kubeconfig stacks): each workload cluster's own key to
    platform:backups.target, which its administrator confines to `velero/<cluster>/` (target_policy); and
    `nodeAgentKeys`: the node agents' own, confined to `velero/<cluster>/kopia/` (node_agent_policy)."""

    dev: S3Key | None = None
    prod: S3Key | None = None


def credentials_file(access_key_id: str, secret_access_key: str) -> str:
    """A key as the AWS credentials file Velero and its node agents read."""
    return f"[default]\naws_access_key_id={access_key_id}\naws_secret_access_key={secret_access_key}\n"


@dataclass(frozen=True)
class VeleroArgs:
    settings: ServiceSettings  # its options: schedule, environments
    store: BackupStore
    inventory: CredentialInventory
    harbor_host: str  # where the restore helper's image is pulled from (its `approved` project)
    eks: tuple[AwsWorkloadIdentity, pulumi.Output[str]] | None = None  # the cluster's identity and EKS name
    gatekeeper: Gatekeeper | None = None  # the cluster's, which holds the pods the node agent creates


class Velero(pulumi.ComponentResource):
    """Velero on one workload cluster, its backup location, and on EKS the CSI snapshot pieces."""

    release: k8s.helm.v3.Release
    location: k8s.apiextensions.CustomResource

    def __init__(self, name: str, cluster: ClusterHandle, args: VeleroArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:velero:Velero", name, None, opts)
        self.cluster, self.args = cluster, args
        ns = namespace(SLICE.namespace, cluster, self)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        if args.eks is not None:
            ready = self._csi_snapshots(name, ns, args.eks, k8s_opts)
        else:
            ready = self._file_system_backup(name, ns, k8s_opts)
        # The server and the node agents take their own namespace's connections only (they work through the API
        # server), and the platform Prometheus the server's metrics port (8085), for the backup alerts.
        held = hold_namespace(name, ns, [alerting.scrape_admit(alerting.VELERO.pods, alerting.VELERO.port)], pulumi.ResourceOptions(parent=self, provider=cluster.provider))
        # They connect to the API server and the backup store only (the server, the node agents, the CRD upgrade Job):
        # the AWS plugin to S3 and STS, the node agents' Kopia to the same store; the EBS snapshots are the CSI
        # driver's calls (kube-system), the restore helper's image the kubelet's pull.
        held += hold_namespace_egress(name, ns, cluster.api_server, [Reach("backups", {}, args.store.egress())],
                                      pulumi.ResourceOptions(parent=self, provider=cluster.provider))
        self.release = SLICE.release(cluster, self, args.settings, self.values(), "", ns=ns, depends_on=[*ready, *held])
        if self.node_agent:
            assert args.gatekeeper is not None, "stacks/config.py: services.velero.environments on kubeconfig clusters need Gatekeeper"
            NodeAgent(f"{name}-node-agent", cluster, ns, NodeAgentArgs(
                namespace=NAMESPACE, resources=args.settings.resources, credentials_secret=NODE_AGENT_SECRET,
                repository_secret=REPOSITORY_SECRET, gatekeeper=args.gatekeeper,
            ), after=[self.release], opts=pulumi.ResourceOptions(parent=self))
        self.location = k8s.apiextensions.CustomResource(
            f"{name}-location",
            api_version=API_VERSION,
            kind="BackupStorageLocation",
            metadata=metadata(LOCATION, ns),
            spec=self.location_spec(),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[self.release])),  # its CRD
        )
        args.inventory.register(*self.credentials(name))
        self.register_outputs({"release": self.release.status})

    @property
    def file_system(self) -> bool:
        """Volumes by file-system backup (kubeconfig clusters), else by CSI snapshot (EKS)."""
        return self.args.eks is None

    @property
    def node_agent(self) -> bool:
        """File-system backups of this cluster's tenant volumes are declared (`options.environments`): a
        cluster with nothing to copy runs no root pod with the kubelet's directories on every node."""
        return self.file_system and self.cluster.name in self.args.settings.options["environments"]

    def _csi_snapshots(
        self, name: str, ns: k8s.core.v1.Namespace, eks: tuple[AwsWorkloadIdentity, pulumi.Output[str]], opts: pulumi.ResourceOptions,
    ) -> list[pulumi.Resource]:
        """Velero's role and its service account, the snapshot-controller add-on, the snapshot class and
        the Recycle Bin rule."""
        identity, eks_name = eks
        policy = pulumi.Output.all(self.args.store.bucket, self.args.store.kms_key_arn).apply(
            lambda a: json.dumps(bucket_policy(a[0], a[1], self.cluster.name)))
        role = workload_role(name, identity, NAMESPACE, SERVICE_ACCOUNT, policy, self)
        addon = aws.eks.Addon(
            f"{name}-snapshot-controller",
            cluster_name=eks_name,
            addon_name="snapshot-controller",
            addon_version=EKS_SNAPSHOT_CONTROLLER[self.cluster.kubernetes_version],
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="PRESERVE",
            tags=dict(MANAGED_BY),
            # After the nodes, where its controller runs: the namespace comes through the cluster's
            # Kubernetes provider, which waits for the node groups.
            opts=pulumi.ResourceOptions(parent=self, provider=identity.provider, depends_on=[ns]),
        )
        snapshot_class(name, pulumi.ResourceOptions(parent=self, provider=self.cluster.provider, depends_on=[addon]))
        recycle_bin(name, pulumi.ResourceOptions(parent=self, provider=identity.provider))
        self.args.store.copy_volumes(identity.region, identity.provider)
        # The program's account, not the chart's: the chart copies its account's annotations onto its
        # CRD upgrade job's account, which would hand that job the role's environment too.
        return [workload_service_account(name, SERVICE_ACCOUNT, ns, role.arn, opts)]

    def _credentials_file(self, option: str = "target_keys") -> pulumi.Output[str]:
        """Kubeconfig clusters: the cluster's own key to the target, Velero's (`target_keys`) or its node agents'
        (`node_agent_keys`), which stacks/config.py requires; a Pulumi secret."""
        key: S3Key | None = getattr(self.args.settings.options[option], self.cluster.name)
        assert key is not None, f"stacks/config.py: platform:services.velero.{to_camel(option)}.{self.cluster.name} is required"
        return pulumi.Output.secret(key.secret_access_key.get_secret_value()).apply(
            lambda secret: credentials_file(key.access_key_id, secret))

    def _file_system_backup(self, name: str, ns: k8s.core.v1.Namespace, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The cluster's key to the target, kopia's generated repository password (else Velero uses a
        built-in one), and the restore helper's image."""
        keys = k8s.core.v1.Secret(f"{name}-s3", metadata=metadata(CREDENTIALS_SECRET, ns), type="Opaque",
                                  string_data={CREDENTIALS_KEY: self._credentials_file()}, opts=opts)
        # The node agents run on every node tenants' code runs on: they get a key of their own, to the kopia
        # repositories only (node_agent_policy), never the server's.
        agents = [k8s.core.v1.Secret(f"{name}-node-agent-s3", metadata=metadata(NODE_AGENT_SECRET, ns), type="Opaque",
                                     string_data={CREDENTIALS_KEY: self._credentials_file("node_agent_keys")}, opts=opts)
                  ] if self.node_agent else []
        password = random.RandomPassword(f"{name}-repository-password", length=40, special=False,
                                         opts=pulumi.ResourceOptions(parent=self))
        repository = k8s.core.v1.Secret(f"{name}-repository", metadata=metadata(REPOSITORY_SECRET, ns), type="Opaque",
                                        string_data={REPOSITORY_KEY: password.result}, opts=opts)
        # A file-system restore adds an init container to each restored pod, in the tenant's namespace:
        # its image must be what the namespace admits (Harbor's `approved`, signed), not Velero's own.
        helper = k8s.core.v1.ConfigMap(
            f"{name}-restore-helper",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=RESTORE_HELPER_CONFIG, namespace=ns.metadata.name,
                                                labels={**MANAGED_BY, **RESTORE_HELPER_LABELS}),
            data={"image": approved(self.args.harbor_host, f"{VELERO_IMAGE}:{VELERO_TAG}")},
            opts=opts,
        )
        return [keys, *agents, repository, helper]

    def values(self) -> dict[str, Any]:
        settings, eks = self.args.settings, not self.file_system
        restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
        values: dict[str, Any] = {
            "image": {"repository": VELERO_IMAGE, "tag": VELERO_TAG},
            "initContainers": [{
                "name": "velero-plugin-for-aws",
                "image": VELERO_AWS_PLUGIN_IMAGE,
                "volumeMounts": [{"mountPath": "/target", "name": "plugins"}],
                "resources": settings.resources,
                "securityContext": restricted,
            }],
            "containerSecurityContext": restricted,
            "upgradeJobResources": settings.resources,  # the hook Job that applies the CRDs of a new chart
            # The location is the program's (location_spec), and CSI snapshots need no snapshot location.
            "backupsEnabled": False,
            "snapshotsEnabled": False,
            # The chart's would run as the server's cluster-admin account (helm-charts#606): NodeAgent instead.
            "deployNodeAgent": False,
        }
        if eks:
            values["configuration"] = {"features": "EnableCSI"}
            values["credentials"] = {"useSecret": False}  # IRSA: no key anywhere
            values["serviceAccount"] = {"server": {"create": False, "name": SERVICE_ACCOUNT}}
        else:
            values["credentials"] = {"existingSecret": CREDENTIALS_SECRET}
            # The Jobs Velero starts to maintain the kopia repositories, sized like its other containers.
            requests, limits = settings.resources["requests"], settings.resources["limits"]
            pod = {"cpuRequest": requests["cpu"], "memoryRequest": requests["memory"], "memoryLimit": limits["memory"]}
            values["configuration"] = {"repositoryMaintenanceJob": {"repositoryConfigData": {"global": {"podResources": pod}}}}
        return values

    def location_spec(self) -> dict[str, Any]:
        """The store's bucket under this cluster's prefix. Uploads carry a CRC32 checksum, which S3 requires
        of every write into a bucket with Object Lock; a kubeconfig target is asked for SSE-S3 (as the
        platform's other backups) and addressed by path."""
        store = self.args.store
        config: dict[str, Any] = {"region": store.region, "checksumAlgorithm": "CRC32"}
        if store.endpoint is not None:
            config |= {"s3Url": store.endpoint, "s3ForcePathStyle": "true", "serverSideEncryption": "AES256"}
        return {
            "provider": "aws",
            "default": True,
            "objectStorage": {"bucket": store.bucket, "prefix": prefix(self.cluster.name)},
            "config": config,
        }

    def schedule(self, tenant: str, host_namespace: str, after: pulumi.Resource, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        """A tenant namespace's Schedule: every object and volume in it, kept as long as the store's lock."""
        options, days = self.args.settings.options, self.args.store.settings.retention_days
        # Velero's layout (pkg/persistence/object_store_layout.go): <prefix>/backups/<schedule>-<YYYYmmddHHMMSS>/...; its
        # velero-backup.json stays only once the tarball is uploaded (PutBackup), and records how the backup ended.
        self.args.store.expect(f"Schedule {NAMESPACE}/{host_namespace}", f"{prefix(self.cluster.name)}/backups/{host_namespace}-",
                               r"^[0-9]{14}/velero-backup\.json$", options["schedule"], outcome="velero")
        template: dict[str, Any] = {
            "includedNamespaces": [host_namespace],
            "storageLocation": LOCATION,
            "ttl": f"{days * 24}h0m0s",
            **({"defaultVolumesToFsBackup": True} if self.file_system else {"snapshotVolumes": True}),
        }
        return k8s.apiextensions.CustomResource(
            f"{tenant}-{self.cluster.name}-backups",
            api_version=API_VERSION,
            kind="Schedule",
            metadata={"name": host_namespace, "namespace": NAMESPACE, "labels": {**MANAGED_BY, "platform.io/tenant": tenant}},
            # Backups outlive their Schedule: an offboarded tenant's stay restorable until their ttl.
            spec={"schedule": options["schedule"], "useOwnerReferencesInBackup": False, "template": template},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
                provider=self.cluster.provider, depends_on=[self.release, self.location, after])),
        )

    def credentials(self, name: str) -> list[Credential]:
        """Its service account's tokens (cluster-admin, as Velero needs to read and restore anything), and
        what reaches the bucket: the IRSA sessions on EKS, else the target's key and kopia's password."""
        cluster = self.cluster.name
        tokens = projected_token(
            f"service-account tokens of Velero on {cluster}",
            issuer=f"the {cluster} cluster's service-account issuer",
            holder=f"Velero's server ({NAMESPACE}/{SERVICE_ACCOUNT}) on {cluster}",
            scope="cluster-admin (the chart's ClusterRoleBinding): reads every object of every namespace, Secrets included, "
                  "and restores into any",
        )
        agent = [node_agent_tokens(cluster, NAMESPACE)] if self.node_agent else []
        return [tokens, *agent, *self._store_credentials(name)]

    def _store_credentials(self, name: str) -> list[Credential]:
        cluster = self.cluster.name
        if not self.file_system:
            return [replace(irsa_credential(
                name, f"{NAMESPACE}/{SERVICE_ACCOUNT}", cluster,
                f"read, write and delete current objects under s3://<backups>/{prefix(cluster)}/ and use the bucket's key; "
                "no other prefix, never an object version or its retention",
            ), what=f"AWS sessions of Velero on {cluster} (IRSA)")]
        target = self.args.store.settings.target

        def key(what: str, secret: str, holder: str, under: str, option: str, restart: str) -> Credential:
            """A key of the cluster's to the target (kubeconfig stacks), which its administrator confines to `under`."""
            assert target is not None
            return external_secret(
                what, issuer=f"the administrator of {target.endpoint}",
                holder=f"Secret {NAMESPACE}/{secret} on {cluster} ({holder}), and {STATE}",
                scope=f"what the target's administrator grants it on bucket {target.bucket}: read, write and delete under "
                      f"{under}, nothing else",
                lifetime="set by the target's administrator",
                rotation=f"issue a new key, `pulumi config set --secret --path platform:services.velero.{option}.{cluster}.secretAccessKey` "
                         f"(and its accessKeyId), `pulumi up`, then restart {restart}",
                resources=(f"{name}-{secret.removeprefix('velero-')}",),
            )

        agent = [key(f"{cluster}'s node agents' own access key to the backup target", NODE_AGENT_SECRET,
                     "mounted by the node agent on every node and the pods it starts there",
                     f"{prefix(cluster)}/kopia/ (velero.node_agent_policy)", "nodeAgentKeys", "the node agents")] if self.node_agent else []
        return [key(f"{cluster}'s own access key to the backup target, held by Velero there", CREDENTIALS_SECRET,
                    "Velero's server and the repository maintenance Jobs it starts", f"{prefix(cluster)}/ (velero.target_policy)",
                    "targetKeys", "Velero"), *agent, generated_password(
            f"Velero's kopia repository password on {cluster}",
            holder=f"Secret {NAMESPACE}/{REPOSITORY_SECRET} on {cluster}, and {STATE}",
            scope="decrypts every file-system backup of this cluster's tenant volumes",
            rotation="none in place: kopia keeps the password it created its repositories with; a new one needs new repositories "
                     "(a new prefix), the old backups readable with the old password until they expire",
            resource=f"{name}-repository-password",
        )]


def snapshot_class(name: str, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """The VolumeSnapshotClass Velero uses for EBS volumes (the label picks it); the snapshot goes with its backup.
    Its fields sit beside `metadata`, not in a `spec`, which k8s.apiextensions.CustomResource cannot say in Python."""
    return pulumi.CustomResource(f"kubernetes:{SNAPSHOT_API_VERSION}:VolumeSnapshotClass", f"{name}-snapshot-class", {
        "apiVersion": SNAPSHOT_API_VERSION,
        "kind": "VolumeSnapshotClass",
        "metadata": {"name": SNAPSHOT_CLASS, "labels": {**MANAGED_BY, "velero.io/csi-volumesnapshot-class": "true"}},
        "driver": EBS_CSI_DRIVER,
        "deletionPolicy": "Delete",
    }, opts)


def recycle_bin(name: str, opts: pulumi.ResourceOptions) -> aws.rbin.Rule:
    """The EBS snapshots outside the bucket's Object Lock: one deleted (by Velero at its ttl, or by
    anyone who may delete snapshots) stays recoverable RECYCLE_DAYS in the Recycle Bin. The rule is
    locked, and kept when the stack is destroyed, since a locked rule cannot be deleted at once."""
    key, value = EBS_CSI_SNAPSHOT_TAG
    return aws.rbin.Rule(
        f"{name}-snapshots",
        description="EBS CSI snapshots (Velero's backups of the tenants' volumes) deleted in this region",
        resource_type="EBS_SNAPSHOT",
        resource_tags=[aws.rbin.RuleResourceTagArgs(resource_tag_key=key, resource_tag_value=value)],
        retention_period=aws.rbin.RuleRetentionPeriodArgs(retention_period_value=RECYCLE_DAYS, retention_period_unit="DAYS"),
        lock_configuration=aws.rbin.RuleLockConfigurationArgs(unlock_delay=aws.rbin.RuleLockConfigurationUnlockDelayArgs(
            unlock_delay_value=RECYCLE_DAYS, unlock_delay_unit="DAYS")),
        tags=dict(MANAGED_BY),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True)),
    )


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> Velero:
    if parts.backups is None:
        raise ValueError("platform:services.velero: the tenants' backups go to the backup store; set platform:backups "
                         "or services.velero.enabled: false")
    return Velero(f"{parts.cluster.role}-velero", parts.cluster, VeleroArgs(
        settings=settings, store=parts.backups, inventory=parts.inventory, harbor_host=f"harbor.{parts.domain}",
        eks=parts.eks, gatekeeper=parts.get(GATEKEEPER)))


def tenant(parts: TenantParts) -> list[k8s.apiextensions.CustomResource]:
    """A Schedule of the tenant's namespace in each environment the options name."""
    schedules = []
    for environment in ENVIRONMENTS:
        velero: Velero | None = parts.addon(environment, SLICE)
        if velero is None or environment not in velero.args.settings.options["environments"]:
            continue
        schedules.append(velero.schedule(
            parts.name, parts.namespaces[environment], parts.namespace_resources[environment], parts.opts))
    return schedules


SLICE: ServiceSlice[Velero] = ServiceSlice(
    key="velero",
    namespace=PlatformNamespace(
        NAMESPACE,
        "Velero, which reads and restores every namespace (cluster-admin) and holds its cluster's key to the backup store; on kubeconfig "
        "clusters its node agent, and the pods it starts to copy each volume, run as root with the kubelet's pod and plugin "
        "directories mounted from the host (hostPath) to copy the tenants' volumes. Gatekeeper's webhook still reviews it: "
        "it holds the pods the node agent creates (PlatformNodeAgentPods)",
        webhook_exempt=False,
    ),
    chart="velero",
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
    tenant=tenant,
    options={
        # When each tenant namespace is backed up (UTC): nightly, after the platform's own backups.
        "schedule": (CronSchedule, "0 4 * * *"),
        # The environments whose tenant namespaces are backed up: dev's are rebuilt from Git by ArgoCD.
        "environments": (list[Literal["dev", "prod"]], ["prod"]),
        # Kubeconfig stacks: each workload cluster's own key to platform:backups.target (TargetKeys).
        "target_keys": (TargetKeys, TargetKeys()),
        # Kubeconfig stacks: the node agents' own key on each cluster they run on, to its kopia repositories only.
        "node_agent_keys": (TargetKeys, TargetKeys()),
    },
)
