"""Backups of the platform's data to object storage: where they go and who may write there.

One bucket per stack, a prefix per service (`vault/`, `gitlab/`, `harbor/`):

* EKS: the program makes the bucket (components/aws.py `private_bucket`): encrypted with a KMS
  key of its own (rotated yearly), versioned, S3 Object Lock with a default retention of
  `retentionDays` in the configured mode, and lifecycle rules that expire backups after the same
  retention. Each backup job reaches it through an IAM role for its own service account (IRSA)
  that may put objects under its own prefix and use the key for that, nothing else: no read, no
  listing of other prefixes, no deletion of object versions, so a compromised job cannot destroy
  what was backed up before.
* Kubeconfig stacks: an S3-compatible bucket from `platform:backups.target`, reached by each
  writer with a key of its own (`platform:backups.target.writerKeys.<writer>`, which the target's
  administrator confines to the writer's prefix), copied into a Secret in that writer's namespace
  only: a writer taken over cannot put a fresh-looking object under another's prefix, which would
  keep `platformctl backups check` green while that writer has stopped. Uploads ask for server-side
  encryption (SSE-S3), so a target that cannot encrypt refuses them instead of storing plain backups.

The jobs themselves live with what they back up: Vault's snapshots (components/vault_backup.py),
GitLab's backup-utility (components/gitlab.py, the chart's toolbox CronJob) and Harbor's
registry storage (components/harbor_backup.py).
"""

from __future__ import annotations

import json
from urllib.parse import urlparse
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Mapping

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.aws import AwsWorkloadIdentity, history_key_tags, irsa_credential, private_bucket, service_trust, workload_role
from components.cluster import ClusterHandle
from components.egress import store_egress
from components.helm import metadata, workload_service_account
from components.inventory import STATE, Credential, CredentialInventory, external_secret
from components.versions import AWS_CLI_IMAGE, AWS_CLI_TAG
from policy.labels import MANAGED_BY

SERVICES = ("vault", "gitlab", "harbor")
# Kubeconfig stacks: each writer's own key and what its store's administrator confines it to (README: Backups and
# restore). The target's writers, and the control plane's CloudNativePG archives in platform:objectStore.
WRITER_GRANTS = {
    "vault": "put objects under vault/ of the target, nothing else",
    "gitlab": "put objects under gitlab/ of the target and read them back (a restore); with the target on the object "
              "store's endpoint also read and write <objectStore bucket>/gitlab/, which it backs up and restores",
    "harbor": "put objects under harbor/ of the target and delete their current versions (a sync), and read "
              "<objectStore bucket>/harbor/, which it copies",
    # The control plane's databases, each its own: one taken over cannot delete or forge the other's archives.
    **{f"postgres-{service}": f"read, write and delete under postgres/{service}/ of the object store's bucket (barman-cloud "
                              f"archives of {service}'s database, prunes after the retention and restores), nothing else"
       for service in ("gitlab", "harbor")},
    # Dragonfly's manager database on a kubeconfig workload cluster, where tenants run: never the control plane's key.
    **{f"dragonfly-{cluster}": f"read, write and delete under postgres/{cluster}/ of the object store's bucket (barman-cloud "
                               f"archives of Dragonfly's manager database on {cluster}), nothing else" for cluster in ("dev", "prod")},
}
CREDENTIALS_SECRET = "platform-backup-s3"  # kubeconfig stacks: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
ABORT_UPLOADS_DAYS = 7  # multipart uploads a failed job left behind
VELERO_OUTCOMES = "velero/*/backups/*/velero-backup.json"  # each Velero backup's Backup object: how it ended, no data
BARMAN_OUTCOMES = "postgres/*/base/*/backup.info"  # each CloudNativePG base backup's status, LSNs and times: no data
# The tag the EBS CSI driver puts on every volume it creates (AWS's AmazonEBSCSIDriverPolicy requires it of CreateVolume).
EBS_CSI_VOLUME_TAG = ("ebs.csi.aws.com/cluster", "true")
# What Data Lifecycle Manager's copies need of the copy region's key (AWS: DLM User Guide, "Permissions for cross-Region
# copy of encrypted snapshots").
COPY_KEY_USE = ("kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey", "kms:CreateGrant")
VOLUME_COPY_TIME = "01:30"  # UTC, when DLM snapshots the volumes (it starts within the hour)
VOLUME_COPY_TAG = "platform.io/backup-copy"  # on the copies: the policy's name
# What a writer needs to put an object, in one part or in many: both its EKS role and its key elsewhere.
PUT = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")


@dataclass(frozen=True)
class WriterKey:
    """A backup writer's own access key (kubeconfig stacks)."""

    access_key_id: str
    secret_access_key: pulumi.Input[str]  # a Pulumi secret


@dataclass(frozen=True)
class BackupTarget:
    """`platform:backups.target` (kubeconfig stacks): an S3-compatible bucket; each writer brings its own key."""

    endpoint: str
    region: str
    bucket: str
    networks: tuple[str, ...] = ()  # where the endpoint's address is when private (its pods' egress)


@dataclass(frozen=True)
class BackupSettings:
    """`platform:backups`, validated by stacks/config.py."""

    retention_days: int
    schedules: Mapping[str, str] = field(hash=False)  # service -> five-field cron schedule
    object_lock: Literal["GOVERNANCE", "COMPLIANCE"] = "GOVERNANCE"
    target: BackupTarget | None = None
    # Kubeconfig stacks: writer (WRITER_GRANTS) -> its own key; stacks/config.py requires one per writer the stack declares.
    writer_keys: Mapping[str, WriterKey] = field(default_factory=dict, hash=False)
    copy_region: str | None = None  # EKS: where S3 and RDS keep a copy of every backup


@dataclass(frozen=True)
class BackupCopy:
    """EKS: the copy of the bucket's backups and the databases' in `region` (`platform:backups.copyRegion`): a bucket locked
    like the stack's, which S3 replicates the whole backup bucket into, under a key of that region, which also encrypts
    RDS's replicated backups and the volumes' daily snapshot copies (copy_volumes)."""

    provider: pulumi.ProviderResource
    region: str
    bucket: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]


@dataclass(frozen=True)
class BackupStoreArgs:
    settings: BackupSettings
    bucket_name: str  # EKS: the bucket the program creates; ignored with an external target
    aws: AwsWorkloadIdentity | None  # the control plane's, on EKS
    protect: bool
    inventory: CredentialInventory
    copy_bucket_name: str | None = None  # EKS with settings.copy_region: the copy's bucket


@dataclass(frozen=True)
class BucketAccess:
    """What a backup job's IAM role may do beyond putting objects under its prefix (EKS)."""

    sync: bool = False  # also delete current objects under its prefix (their versions stay, locked)
    restore: bool = False  # also read its prefix back
    read_buckets: tuple[pulumi.Input[str], ...] = ()  # the service's buckets it copies from
    write_buckets: tuple[pulumi.Input[str], ...] = ()  # the service's buckets a restore writes into

    def describe(self, prefix: str) -> str:
        parts = [f"put objects under s3://<backups>/{prefix}"]
        parts += ["delete their current versions (a sync)"] if self.sync else []
        parts += ["read them back (restore)"] if self.restore else []
        parts += ["read the service's own buckets"] if self.read_buckets else []
        parts += ["read and write the service's own buckets (restore)"] if self.write_buckets else []
        return "; ".join(parts) + "; never delete an object version"


@dataclass(frozen=True)
class BackupExpectation:
    """What a backup writer promises, for `platformctl backups check`: at least one object under `prefix`
    whose key (after the prefix) matches `pattern`, new since the last run of `schedule` (five-field cron, UTC);
    with `outcome` "velero", the newest is a Velero backup's velero-backup.json, whose phase must be Completed."""

    writer: pulumi.Input[str]  # "<kind> <namespace>/<name>" of what writes it
    # "backups" (platform:backups), "objectStore" (platform:objectStore), "rds" (an RDS instance's own), "backups-copy",
    # "rds-copy" and "ebs-copy" (their copies and the volumes' in platform:backups.copyRegion)
    store: str
    bucket: pulumi.Input[str]  # "rds", "rds-copy": the instance's identifier; "ebs-copy": the copies' tag's value
    endpoint: str | None  # an S3-compatible store's; None: AWS
    region: str
    prefix: pulumi.Input[str]  # "ebs-copy": the tag's key
    pattern: str
    schedule: str
    outcome: str | None = None

    def output(self) -> pulumi.Output[dict[str, Any]]:
        """The stack output's entry (`backupExpectations`)."""
        return pulumi.Output.all(self.writer, self.bucket, self.prefix).apply(lambda resolved: {
            "writer": resolved[0], "store": self.store, "bucket": resolved[1], "endpoint": self.endpoint,
            "region": self.region, "prefix": resolved[2], "pattern": self.pattern, "schedule": self.schedule,
            "outcome": self.outcome,
        })


@dataclass(frozen=True)
class BackupWriter:
    """What a backup job's pod needs to write its prefix: its service account, environment and `aws s3` flags."""

    service_account: str
    env: list[k8s.core.v1.EnvVarArgs]
    prerequisites: list[pulumi.Resource]  # the service account and, on kubeconfig stacks, the key Secret


def upload_env(bucket: pulumi.Input[str], prefix: str, region: str, endpoint: str | None) -> list[k8s.core.v1.EnvVarArgs]:
    """BUCKET, PREFIX, the region, the endpoint (aws-cli 2 reads AWS_ENDPOINT_URL) and UPLOAD_ARGS.

    Every upload carries a checksum, which S3 requires of each PutObject into a bucket with Object
    Lock. EKS buckets encrypt every object with their KMS key by default, so uploads name no key;
    S3-compatible targets are asked for SSE-S3 on every upload.
    """
    upload = "--checksum-algorithm CRC32" + (" --sse AES256" if endpoint else "")
    env = {"BUCKET": bucket, "PREFIX": prefix, "AWS_REGION": region, "UPLOAD_ARGS": upload}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return [k8s.core.v1.EnvVarArgs(name=k, value=v) for k, v in env.items()]


class BackupStore(pulumi.ComponentResource):
    """The stack's backup bucket (EKS) or the configured target, and the writers of each prefix."""

    bucket: pulumi.Output[str]
    region: str
    endpoint: str | None  # an S3-compatible target's; None: AWS
    kms_key_arn: pulumi.Output[str] | None  # EKS only
    copy: BackupCopy | None  # EKS with platform:backups.copyRegion
    settings: BackupSettings

    def __init__(self, name: str, args: BackupStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:backups:BackupStore", name, None, opts)
        self.settings = args.settings
        self._args = args
        self._name = name
        # Every backup of the stack, this store's and the databases' own archives: `backupExpectations`.
        self.expectations: list[BackupExpectation] = []
        self._copied_regions: set[str] = set()  # the regions whose EBS volumes are copied (copy_volumes)
        target = args.settings.target
        self.kms_key_arn, self.copy = None, None
        self.endpoint = None
        self.networks: tuple[str, ...] = ()
        if args.aws is not None:
            self.region = args.aws.region
            self.bucket, self.kms_key_arn = self._bucket(name, args.bucket_name, args, args.aws)
            if args.settings.copy_region is not None:
                assert args.copy_bucket_name is not None, "stacks/backups.py names the copy's bucket"
                self.copy = self._copy(name, args.settings.copy_region, args.copy_bucket_name, args, args.aws)
        elif target is not None:
            self.region, self.endpoint, self.networks = target.region, target.endpoint, target.networks
            self.bucket = pulumi.Output.from_input(target.bucket)
        else:
            raise ValueError("platform:backups: a kubeconfig control plane needs backups.target (an S3-compatible bucket)")
        self.register_outputs({"bucket": self.bucket})

    def egress(self) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
        """Where a writer's pods reach the store: the target's `networks` where its address is private, else the
        internet on its port (S3 and STS on EKS: HTTPS)."""
        return store_egress(self.endpoint, self.networks)

    def expect(self, writer: str, prefix: str, pattern: str, schedule: str, outcome: str | None = None) -> None:
        """Record that `writer` puts a key matching `pattern` under `prefix` of this store on `schedule` (and that S3
        copies it to the copy region, where it is held to the same schedule)."""
        self.expectations.append(
            BackupExpectation(writer, "backups", self.bucket, self.endpoint, self.region, prefix, pattern, schedule, outcome))
        if self.copy is not None:
            self.expectations.append(
                BackupExpectation(writer, "backups-copy", self.copy.bucket, None, self.copy.region, prefix, pattern, schedule, outcome))

    def database(self, name: str, instance: aws.rds.Instance, region: str, retention_days: int, parent: pulumi.Resource,
                 protect: bool) -> None:
        """An RDS instance's automated backups, its only point-in-time history: held to RDS's 5-minute archiving of the
        transaction log (its LatestRestorableTime; none while they are off), and with a copy region, replicated there
        under the copy's key and held to the same."""
        every_5_minutes = "*/5 * * * *"
        self.expectations.append(BackupExpectation(
            f"DBInstance {name}", "rds", instance.identifier, None, region, "", "", every_5_minutes))
        if self.copy is None:
            return
        aws.rds.InstanceAutomatedBackupsReplication(
            f"{name}-copy",
            source_db_instance_arn=instance.arn,
            kms_key_id=self.copy.kms_key_arn,  # the instances are encrypted: a key of the copy's region
            retention_period=retention_days,
            opts=pulumi.ResourceOptions(parent=parent, provider=self.copy.provider, protect=protect),
        )
        self.expectations.append(BackupExpectation(
            f"DBInstance {name}", "rds-copy", instance.identifier, None, self.copy.region, "", "", every_5_minutes))

    def writer_key(self, writer: str, holder: str, secret: str) -> WriterKey:
        """Kubeconfig stacks: `writer`'s own key, registered in the inventory as `holder` keeps it in the Secret named
        `secret` in the plan."""
        key = self.settings.writer_keys.get(writer)
        assert key is not None, f"stacks/config.py requires {writer_key_path(writer)} on kubeconfig stacks"
        self._args.inventory.register(writer_key_credential(writer, holder, (secret,)))
        return key

    def s3cmd_config(self, writer: str, holder: str, secret: str) -> pulumi.Output[str]:
        """An s3cmd configuration (GitLab's backup-utility) for the bucket: on EKS without keys (s3cmd
        takes the IRSA role from the environment), elsewhere with `writer`'s own key (a Pulumi secret)."""
        target = self.settings.target
        if target is None:
            host = f"s3.{self.region}.amazonaws.com"
            return pulumi.Output.from_input(s3cmd_config(self.region, host, f"%(bucket)s.{host}", None))
        host, key = urlparse(target.endpoint).netloc, self.writer_key(writer, holder, secret)
        return pulumi.Output.secret(key.secret_access_key).apply(
            lambda secret: s3cmd_config(target.region, host, host, (key.access_key_id, secret))
        )

    def copy_volumes(self, region: str, provider: pulumi.ProviderResource) -> None:
        """EKS with a copy region: the EBS CSI driver's volumes of `region` (every volume it made there: the tenants', the
        platform's), snapshotted daily by Data Lifecycle Manager and copied to the copy region under its key, kept the
        retention there. Velero's snapshots of them stay in their region; these copies are what a restore in the copy
        region starts the volumes from (README). One policy per region, however many clusters are there."""
        if self.copy is None or region in self._copied_regions:
            return
        self._copied_regions.add(region)
        name, days = f"{self._name}-volumes-{region}", self.settings.retention_days
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        role = aws.iam.Role(name, assume_role_policy=json.dumps(service_trust("dlm.amazonaws.com")), tags=MANAGED_BY, opts=opts)
        aws.iam.RolePolicy(name, role=role.name, opts=opts,
                           policy=self.copy.kms_key_arn.apply(lambda key: json.dumps(volume_copy_policy(name, key))))
        key, value = EBS_CSI_VOLUME_TAG
        aws.dlm.LifecyclePolicy(
            name,
            description=f"EBS CSI volumes of {region}: daily snapshots, copied to {self.copy.region}",
            execution_role_arn=role.arn,
            state="ENABLED",
            policy_details=aws.dlm.LifecyclePolicyPolicyDetailsArgs(
                resource_types=["VOLUME"],
                target_tags={key: value},
                schedules=[aws.dlm.LifecyclePolicyPolicyDetailsScheduleArgs(
                    name="copy-region",
                    create_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCreateRuleArgs(
                        interval=24, interval_unit="HOURS", times=VOLUME_COPY_TIME),
                    # The copies are the point: the region's own snapshot goes after two days (Velero keeps its own).
                    retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleRetainRuleArgs(interval=2, interval_unit="DAYS"),
                    copy_tags=True,
                    tags_to_add={VOLUME_COPY_TAG: name},  # what the backups check finds the copies by
                    cross_region_copy_rules=[aws.dlm.LifecyclePolicyPolicyDetailsScheduleCrossRegionCopyRuleArgs(
                        target=self.copy.region, encrypted=True, cmk_arn=self.copy.kms_key_arn, copy_tags=True,
                        retain_rule=aws.dlm.LifecyclePolicyPolicyDetailsScheduleCrossRegionCopyRuleRetainRuleArgs(
                            interval=days, interval_unit="DAYS"),
                    )],
                )],
            ),
            tags=MANAGED_BY,
            opts=opts,
        )
        hour, minute = VOLUME_COPY_TIME.split(":")
        self.expectations.append(BackupExpectation(
            f"LifecyclePolicy {name}", "ebs-copy", name, None, self.copy.region, VOLUME_COPY_TAG, "", f"{int(minute)} {int(hour)} * * *"))

    def _bucket(
        self, name: str, bucket_name: str, args: BackupStoreArgs, identity: AwsWorkloadIdentity
    ) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
        """A bucket in `identity`'s region: KMS-encrypted with a key of its own, versioned, locked for the retention,
        expiring after it."""
        days, opts = args.settings.retention_days, pulumi.ResourceOptions(parent=self, provider=identity.provider)
        key = aws.kms.Key(
            name,
            description="Encrypts the platform's backups",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags={**MANAGED_BY, **history_key_tags(args.protect)},
            # Losing the key loses every backup.
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=args.protect)),
        )
        bucket = private_bucket(name, bucket_name, identity, args.protect, self, kms_key_arn=key.arn, object_lock=True)
        aws.s3.BucketObjectLockConfiguration(
            name,
            bucket=bucket.bucket,
            object_lock_enabled="Enabled",
            rule=aws.s3.BucketObjectLockConfigurationRuleArgs(
                default_retention=aws.s3.BucketObjectLockConfigurationRuleDefaultRetentionArgs(
                    mode=args.settings.object_lock, days=days
                )
            ),
            opts=opts,
        )
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.bucket, rules=lifecycle_rules(days), opts=opts)
        return bucket.bucket, key.arn

    def _copy(self, name: str, region: str, bucket_name: str, args: BackupStoreArgs, identity: AwsWorkloadIdentity) -> BackupCopy:
        """The copy region's bucket, locked and kept as long as the stack's, and S3's replication of the whole backup
        bucket into it. Deletions arrive as delete markers: the copy's versions stay, locked, and expire as the
        source's do. S3 replicates what is written from now on (README: S3 Batch Replication copies what was there)."""
        provider = aws.Provider(f"{name}-copy", region=region, opts=pulumi.ResourceOptions(parent=self))
        bucket, key_arn = self._bucket(f"{name}-copy", bucket_name, args, replace(identity, provider=provider, region=region))
        opts = pulumi.ResourceOptions(parent=self, provider=identity.provider)
        role = aws.iam.Role(f"{name}-replication", assume_role_policy=json.dumps(service_trust("s3.amazonaws.com")),
                            tags=MANAGED_BY, opts=opts)
        policy = pulumi.Output.all(self.bucket, self.kms_key_arn, bucket, key_arn).apply(
            lambda a: json.dumps(replication_policy(a[0], a[1], identity.region, a[2], a[3], region)))
        aws.iam.RolePolicy(f"{name}-replication", role=role.name, policy=policy, opts=opts)
        aws.s3.BucketReplicationConfig(
            name,
            bucket=self.bucket,
            role=role.arn,
            rules=[aws.s3.BucketReplicationConfigRuleArgs(
                id="copy-region",
                status="Enabled",
                filter=aws.s3.BucketReplicationConfigRuleFilterArgs(prefix=""),  # the whole bucket
                delete_marker_replication=aws.s3.BucketReplicationConfigRuleDeleteMarkerReplicationArgs(status="Enabled"),
                # Every object is encrypted with the stack's key: S3 replicates none of them unless told to.
                source_selection_criteria=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaArgs(
                    sse_kms_encrypted_objects=aws.s3.BucketReplicationConfigRuleSourceSelectionCriteriaSseKmsEncryptedObjectsArgs(
                        status="Enabled")),
                destination=aws.s3.BucketReplicationConfigRuleDestinationArgs(
                    bucket=bucket.apply(lambda b: f"arn:aws:s3:::{b}"),
                    encryption_configuration=aws.s3.BucketReplicationConfigRuleDestinationEncryptionConfigurationArgs(
                        replica_kms_key_id=key_arn)),
            )],
            # Both buckets are versioned from their creation (Object Lock turns versioning on), as replication needs.
            opts=opts,
        )
        return BackupCopy(provider, region, bucket, key_arn)

    def writer(
        self,
        service: str,
        cluster: ClusterHandle,
        ns: k8s.core.v1.Namespace,
        namespace: str,  # ns's name (IAM trust policies need it as a string)
        account: str,
        parent: pulumi.Resource,
        access: BucketAccess | None = None,
    ) -> BackupWriter:
        """Service account `account` in `ns`, which may put objects under `<service>/` of the bucket,
        and on EKS what `access` adds."""
        if service not in SERVICES:
            raise ValueError(f"backups: unknown service {service!r}; one of {', '.join(SERVICES)}")
        name, prefix, access = f"{self._name}-{service}", f"{service}/", access or BucketAccess()
        opts = pulumi.ResourceOptions(parent=parent, provider=cluster.provider, depends_on=[ns])
        env = upload_env(self.bucket, prefix, self.region, self.endpoint)
        identity = self._args.aws
        if identity is not None:
            assert self.kms_key_arn is not None
            policy = pulumi.Output.all(
                self.bucket, self.kms_key_arn, list(access.read_buckets), list(access.write_buckets)
            ).apply(lambda a: json.dumps(writer_policy(a[0], prefix, a[1], access, a[2], a[3])))
            role = workload_role(name, identity, namespace, account, policy, parent)
            sa = workload_service_account(name, account, ns, role.arn, opts)
            self._args.inventory.register(irsa_credential(name, f"{namespace}/{account}", cluster.name, access.describe(prefix)))
            return BackupWriter(account, env, [sa])
        key = self.writer_key(service, f"Secret {namespace}/{CREDENTIALS_SECRET}, read by {account}'s backup job", f"{name}-s3")
        sa = k8s.core.v1.ServiceAccount(name, metadata=metadata(account, ns), automount_service_account_token=False, opts=opts)
        keys = k8s.core.v1.Secret(
            f"{name}-s3",
            metadata=metadata(CREDENTIALS_SECRET, ns),
            type="Opaque",
            string_data={"AWS_ACCESS_KEY_ID": key.access_key_id, "AWS_SECRET_ACCESS_KEY": key.secret_access_key},
            opts=opts,
        )
        env += [
            k8s.core.v1.EnvVarArgs(
                name=key,
                value_from=k8s.core.v1.EnvVarSourceArgs(
                    secret_key_ref=k8s.core.v1.SecretKeySelectorArgs(name=CREDENTIALS_SECRET, key=key)
                ),
            )
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ]
        return BackupWriter(account, env, [sa, keys])


def lifecycle_rules(days: int) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
    """Full backups (Vault, GitLab) expire `days` after they were written; Harbor's synced registry
    keeps what it still holds and drops what left it (noncurrent versions) after `days`, as Velero's prefix does."""
    expiry = aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(days=days)
    noncurrent = aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(noncurrent_days=days)
    abort = aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=ABORT_UPLOADS_DAYS)

    def rule(service: str, **kwargs: Any) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
        return aws.s3.BucketLifecycleConfigurationRuleArgs(
            id=f"{service}-retention",
            status="Enabled",
            filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=f"{service}/"),
            noncurrent_version_expiration=noncurrent,
            abort_incomplete_multipart_upload=abort,
            **kwargs,
        )

    # Velero (components/velero.py) deletes its own backups when their ttl ends, and its kopia repositories
    # keep using old blobs: only what it deleted (noncurrent versions) expires here.
    return [rule("vault", expiration=expiry), rule("gitlab", expiration=expiry), rule("harbor"), rule("velero")]


def replication_policy(source: str, source_key: str, source_region: str, copy: str, copy_key: str, copy_region: str) -> dict[str, Any]:
    """S3's replication role (AWS: S3 User Guide, "Setting up permissions for live replication", with Object Lock and
    SSE-KMS): read the source's object versions with their locks, decrypt them through S3 there, encrypt them through
    S3 in the copy's region, and write them into the copy. Nothing that deletes a version or lifts a lock."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetReplicationConfiguration", "s3:ListBucket"], "Resource": f"arn:aws:s3:::{source}"},
        {"Effect": "Allow", "Action": ["s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
                                       "s3:GetObjectRetention", "s3:GetObjectLegalHold"], "Resource": f"arn:aws:s3:::{source}/*"},
        {"Effect": "Allow", "Action": ["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"], "Resource": f"arn:aws:s3:::{copy}/*"},
        {"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": source_key,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{source_region}.amazonaws.com"}}},
        {"Effect": "Allow", "Action": ["kms:Encrypt"], "Resource": copy_key,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{copy_region}.amazonaws.com"}}},
    ]}


def volume_copy_policy(name: str, copy_key: str) -> dict[str, Any]:
    """Data Lifecycle Manager's role for policy `name`: AWSDataLifecycleManagerServiceRole's snapshot actions (v9), but
    deleting only the snapshots that carry the policy's tag, which its own do: the managed policy may delete any snapshot
    of the account, Velero's and the final ones included. No fast snapshot restore, no archive tier, no EventBridge rule."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Resource": "*", "Action": [
            "ec2:CreateSnapshot", "ec2:CreateSnapshots", "ec2:CopySnapshot", "ec2:DescribeInstances", "ec2:DescribeVolumes",
            "ec2:DescribeSnapshots", "ec2:DescribeSnapshotAttribute", "ec2:DescribeAvailabilityZones"]},
        {"Effect": "Allow", "Action": ["ec2:CreateTags"], "Resource": "arn:aws:ec2:*::snapshot/*"},
        {"Effect": "Allow", "Action": ["ec2:DeleteSnapshot"], "Resource": "*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{VOLUME_COPY_TAG}": name}}},
        {"Effect": "Allow", "Action": list(COPY_KEY_USE), "Resource": copy_key},
    ]}


def writer_policy(
    bucket: str, prefix: str, kms_key_arn: str, access: BucketAccess, read_buckets: list[str], write_buckets: list[str]
) -> dict[str, Any]:
    """Put under `prefix` only, the KMS key for that, and what `access` adds (resolved bucket names)."""
    own = [*PUT]
    own += (["s3:DeleteObject"] if access.sync else []) + (["s3:GetObject"] if access.restore else [])
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": own, "Resource": f"arn:aws:s3:::{bucket}/{prefix}*"},
        {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": kms_key_arn},
    ]
    if access.sync or access.restore:  # a sync compares with what is there; a restore finds the latest
        statements.append({"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
                           "Condition": {"StringLike": {"s3:prefix": f"{prefix}*"}}})
    for buckets, actions in ((read_buckets, ["s3:GetObject"]), (write_buckets, ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"])):
        if buckets:
            statements += [
                {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": [f"arn:aws:s3:::{b}" for b in buckets]},
                {"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{b}/*" for b in buckets]},
            ]
    return {"Version": "2012-10-17", "Statement": statements}


def writer_key_policy(writer: str, target_bucket: str, store_bucket: str, on_store_endpoint: bool) -> dict[str, Any]:
    """Kubeconfig stacks: the policy the store's administrator gives `writer`'s own key (WRITER_GRANTS; README: Backups
    and restore), in IAM's form, which MinIO and Ceph RGW take too: the EKS roles' grants (writer_policy) without a KMS
    key. `on_store_endpoint`: the target shares platform:objectStore's endpoint, where GitLab's and Harbor's jobs also
    reach the live data with it."""
    put = list(PUT)

    def grant(bucket: str, prefixes: list[str], actions: list[str]) -> list[dict[str, Any]]:
        return [{"Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{bucket}/{p}*" for p in prefixes]},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}",
                 "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in prefixes]}}}]

    statements = {
        "vault": grant(target_bucket, ["vault/"], put)[:1],  # puts only: not even a listing
        "gitlab": grant(target_bucket, ["gitlab/"], [*put, "s3:GetObject"])
                  + (grant(store_bucket, ["gitlab/"], ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]) if on_store_endpoint else []),
        "harbor": grant(target_bucket, ["harbor/"], [*put, "s3:DeleteObject"]) + grant(store_bucket, ["harbor/"], ["s3:GetObject"]),
        # Each database's archives (`postgres-<service>`, `dragonfly-<cluster>`) under postgres/<service or cluster>/.
        **{writer: grant(store_bucket, [f"postgres/{writer.split('-', 1)[1]}/"], [*put, "s3:GetObject", "s3:DeleteObject"])
           for writer in WRITER_GRANTS if writer.startswith(("postgres-", "dragonfly-"))},
    }[writer]
    return {"Version": "2012-10-17", "Statement": statements}


def s3cmd_config(region: str, host: str, host_bucket: str, keys: tuple[str, str] | None) -> str:
    """An s3cmd `[default]` section; `keys` (access key id, secret) or None for the environment's identity.
    With keys, the target is asked for SSE-S3 on every upload (EKS buckets encrypt by default)."""
    lines = {
        "bucket_location": region, "host_base": host, "host_bucket": host_bucket, "use_https": "True",
        "signature_v2": "False", "multipart_chunk_size_mb": "128",
        "server_side_encryption": "True" if keys else "False",
        **({"access_key": keys[0], "secret_key": keys[1]} if keys else {}),
    }
    return "[default]\n" + "".join(f"{key} = {value}\n" for key, value in lines.items())


def writer_key_path(writer: str) -> str:
    """The config key of `writer`'s own key: the target's writers', a control-plane database's archives' in the object
    store (`postgres-<service>`), or a workload cluster's Dragonfly archives' (`dragonfly-<cluster>`)."""
    kind, _, which = writer.partition("-")
    return {"dragonfly": f"platform:services.dragonfly.archiveKeys.{which}",
            "postgres": f"platform:objectStore.archiveKeys.{which}"}.get(kind, f"platform:backups.target.writerKeys.{writer}")


def writer_key_credential(writer: str, holder: str, resources: tuple[str, ...] = ()) -> Credential:
    """A backup writer's own key (kubeconfig stacks), as `holder` keeps it in `resources`."""
    on_target = writer in SERVICES  # the target's writers; the archives' keys are to the object store
    store = "the backup target" if on_target else "the object store"
    return external_secret(
        f"{writer}'s own backup key to {store}",
        issuer=f"the administrator of {store} (platform:{'backups.target' if on_target else 'objectStore'})",
        holder=f"{holder}, and {STATE}",
        scope=f"what the administrator grants it: {WRITER_GRANTS[writer]}; no other writer holds it, never an object "
              "version's deletion (README: Backups and restore)",
        lifetime="set by the store's administrator",
        rotation=f"issue a new key, `pulumi config set --secret --path {writer_key_path(writer)}.secretAccessKey` "
                 "and its accessKeyId, `pulumi up`",
        resources=resources,
    )


def watch_key_credential(config_key: str, endpoint: str, bucket: str) -> Credential:
    """A kubeconfig store's key for the backups schedule (`<config_key>.watchKey`): in the config, not in the plan.
    It also reads how each backup there ended: the target's Velero's velero-backup.json files, the object store's
    CloudNativePG base backups' backup.info files."""
    reads = VELERO_OUTCOMES if config_key == "platform:backups.target" else BARMAN_OUTCOMES
    grant = f"s3:ListBucket, and s3:GetObject of {reads} only (no other object read, no write)"
    return external_secret(
        f"list-only watch key of bucket {bucket}",
        issuer=f"the administrator of {endpoint}",
        holder="the stack's encrypted config, and the backups schedule's jobs while they run (.ci/watch-keys, an AWS profile in /tmp)",
        scope=f"what the administrator grants it on bucket {bucket}: should be {grant}; "
              "never a key of the stack that writes (stacks/config.py refuses one)",
        lifetime="set by the store's administrator",
        rotation=f"issue a new key, `pulumi config set --secret --path {config_key}.watchKey.secretAccessKey` and its accessKeyId",
    )


def aws_cli_container(name: str, script: str, env: list[k8s.core.v1.EnvVarArgs], mounts: list[k8s.core.v1.VolumeMountArgs]) -> k8s.core.v1.ContainerArgs:
    """The upload step: aws-cli running `script`, unprivileged, HOME on the scratch volume."""
    return k8s.core.v1.ContainerArgs(
        name=name,
        image=f"{AWS_CLI_IMAGE}:{AWS_CLI_TAG}",
        command=["/bin/sh", "-c", script],
        env=[*env, k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],
        security_context=restricted_container(),
        resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "128Mi"}, limits={"memory": "512Mi"}),
        volume_mounts=[*mounts, k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
    )


def restricted_container() -> k8s.core.v1.SecurityContextArgs:
    return k8s.core.v1.SecurityContextArgs(
        allow_privilege_escalation=False, read_only_root_filesystem=True, capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])
    )


def backup_cron_job(
    name: str,
    object_name: str,
    ns: k8s.core.v1.Namespace,
    schedule: str,
    pod: k8s.core.v1.PodSpecArgs,
    opts: pulumi.ResourceOptions,
) -> k8s.batch.v1.CronJob:
    """A CronJob that runs `pod` on `schedule`, one at a time, keeping the last runs' pods for their logs."""
    return k8s.batch.v1.CronJob(
        name,
        metadata=metadata(object_name, ns),
        spec=k8s.batch.v1.CronJobSpecArgs(
            schedule=schedule,
            concurrency_policy="Forbid",
            starting_deadline_seconds=3600,
            successful_jobs_history_limit=3,
            failed_jobs_history_limit=3,
            job_template=k8s.batch.v1.JobTemplateSpecArgs(
                spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=3,
                    active_deadline_seconds=6 * 3600,
                    template=k8s.core.v1.PodTemplateSpecArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(labels={"app.kubernetes.io/name": object_name}), spec=pod
                    ),
                )
            ),
        ),
        opts=opts,
    )
