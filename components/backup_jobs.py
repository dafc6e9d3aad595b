"""The scheduled backup jobs of Vault and Harbor (GitLab's is its chart's toolbox CronJob, components/gitlab.py).

* Vault: a CronJob in the `vault` namespace takes a raft snapshot with a Vault identity of its
  own: its service account logs in at the control plane's auth mount (`kubernetes-control-plane`,
  or `jwt-control-plane` on EKS) to the role `vault-snapshot`, whose only policy
  (`platform-raft-snapshot`) reads `sys/storage/raft/snapshot`; its token lives 15 minutes and is
  revoked when the snapshot is written. The snapshot is Vault's storage as it is on disk, so it is
  encrypted by Vault's barrier: useless without the unseal (or, on EKS, KMS and recovery) keys.
  The upload step then writes it under `vault/` of the backup bucket.
* Harbor: a CronJob syncs the registry's storage (its S3 bucket on EKS, its volume elsewhere)
  to `harbor/registry/` of the backup bucket; the bucket's versions keep what a sync replaced or
  removed for the retention. Harbor's database belongs to the database service (RDS automated
  backups, or the operator's object-storage backups on kubeconfig stacks).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_vault as vault

from components.backups import BackupStore, BucketAccess, aws_cli_container, backup_cron_job, restricted_container
from components.cluster import ClusterHandle
from components.harbor import NAMESPACE as HARBOR_NAMESPACE, RegistryStorage
from components.tenancy import WorkloadBinder
from components.vault import NAMESPACE as VAULT_NAMESPACE
from components.versions import VAULT_IMAGE, VAULT_TAG

SNAPSHOT_ROLE = "vault-snapshot"  # the Vault role, the service account and the CronJob
SNAPSHOT_POLICY_NAME = "platform-raft-snapshot"
# Exactly what `vault operator raft snapshot save` needs, nothing else: not even listing.
SNAPSHOT_POLICY = """\
# platform-raft-snapshot: take raft snapshots, for the backup job only.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
"""
TOKEN_DIR = "/var/run/secrets/vault-snapshot"  # the projected service-account token
SNAPSHOT_FILE = "/backup/vault.snap"
TOKEN_SECONDS = 600

# The snapshot step, in Vault's image. The service-account token is passed as a file (`@`), never
# on a command line; the Vault token lives in the shell's environment and is revoked at the end.
SNAPSHOT_SH = f"""set -eu
VAULT_TOKEN=$(vault write -field=token "auth/$AUTH_PATH/login" role="$ROLE" jwt=@{TOKEN_DIR}/token)
export VAULT_TOKEN
vault operator raft snapshot save "$SNAPSHOT_FILE"
vault token revoke -self >/dev/null
echo "raft snapshot of $(wc -c < "$SNAPSHOT_FILE") bytes"
"""
SNAPSHOT_KEY = r"^vault-[0-9]{8}T[0-9]{6}Z\.snap$"  # VAULT_UPLOAD_SH's keys, after the prefix
VAULT_UPLOAD_SH = """set -eu
key="${PREFIX}vault-$(date -u +%Y%m%dT%H%M%SZ).snap"
aws s3 cp "$SNAPSHOT_FILE" "s3://$BUCKET/$key" $UPLOAD_ARGS --only-show-errors
echo "uploaded s3://$BUCKET/$key"
"""
# Harbor's registry: its bucket (EKS) or prefix of the object store to harbor/registry/, removed blobs removed there too
# (their versions stay for the retention).
# A sync that found nothing new writes nothing: the marker's time says when the last one succeeded.
SYNC_MARKER = "registry-synced"
REGISTRY_SYNC_SH = f"""set -eu
aws s3 sync "$SOURCE" "s3://$BUCKET/${{PREFIX}}registry/" --delete $UPLOAD_ARGS --only-show-errors
date -u +%Y-%m-%dT%H:%M:%SZ | aws s3 cp - "s3://$BUCKET/${{PREFIX}}{SYNC_MARKER}" $UPLOAD_ARGS --only-show-errors
echo "synced $SOURCE to s3://$BUCKET/${{PREFIX}}registry/"
"""


@dataclass(frozen=True)
class VaultSnapshotsArgs:
    store: BackupStore
    provider: vault.Provider  # the platform Vault's
    binder: WorkloadBinder  # logs the job's service account in (components/vault_federation.py)
    namespace: k8s.core.v1.Namespace  # Vault's
    address: str  # in-cluster URL of the active node
    tls_secret: str  # the Secret with Vault's internal CA as `ca.crt`
    depends_on: tuple[pulumi.Resource, ...] = ()  # the Vault release


class VaultSnapshots(pulumi.ComponentResource):
    """Raft snapshots on the backups' schedule, taken with a token that can do nothing else."""

    def __init__(self, name: str, cluster: ClusterHandle, args: VaultSnapshotsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:backup_jobs:VaultSnapshots", name, None, opts)
        ns_name = VAULT_NAMESPACE
        policy = vault.Policy(
            f"{name}-policy", name=SNAPSHOT_POLICY_NAME, policy=SNAPSHOT_POLICY,
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        role = args.binder.bind_workload(SNAPSHOT_ROLE, cluster.name, [ns_name], [SNAPSHOT_ROLE], [SNAPSHOT_POLICY_NAME], self)
        writer = args.store.writer("vault", cluster, args.namespace, ns_name, SNAPSHOT_ROLE, self)
        env = [
            k8s.core.v1.EnvVarArgs(name="VAULT_ADDR", value=args.address),
            k8s.core.v1.EnvVarArgs(name="VAULT_CACERT", value="/vault/tls/ca.crt"),
            k8s.core.v1.EnvVarArgs(name="AUTH_PATH", value=args.binder.auth_path(cluster.name)),
            k8s.core.v1.EnvVarArgs(name="ROLE", value=SNAPSHOT_ROLE),
            k8s.core.v1.EnvVarArgs(name="SNAPSHOT_FILE", value=SNAPSHOT_FILE),
            k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp"),
        ]
        backup = k8s.core.v1.VolumeMountArgs(name="backup", mount_path="/backup")
        snapshot = k8s.core.v1.ContainerArgs(
            name="snapshot",
            image=f"{VAULT_IMAGE}:{VAULT_TAG}",
            command=["/bin/sh", "-c", SNAPSHOT_SH],
            env=env,
            security_context=restricted_container(),
            resources=k8s.core.v1.ResourceRequirementsArgs(requests={"cpu": "50m", "memory": "64Mi"}, limits={"memory": "256Mi"}),
            volume_mounts=[
                backup,
                k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp"),
                k8s.core.v1.VolumeMountArgs(name="vault-ca", mount_path="/vault/tls", read_only=True),
                k8s.core.v1.VolumeMountArgs(name="token", mount_path=TOKEN_DIR, read_only=True),
            ],
        )
        upload = aws_cli_container(
            "upload", VAULT_UPLOAD_SH, [*writer.env, k8s.core.v1.EnvVarArgs(name="SNAPSHOT_FILE", value=SNAPSHOT_FILE)],
            [k8s.core.v1.VolumeMountArgs(name="backup", mount_path="/backup", read_only=True)],
        )
        # EKS verifies the token at jwt-<cluster>, bound to the `vault` audience; Kubernetes auth
        # presents it to the TokenReview API, so it keeps the API server's audience (no audience).
        token = k8s.core.v1.ServiceAccountTokenProjectionArgs(
            path="token", expiration_seconds=TOKEN_SECONDS, audience="vault" if cluster.is_eks else None
        )
        volumes = [
            k8s.core.v1.VolumeArgs(name="backup", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs()),
            # Only the CA: the Secret also holds Vault's serving key.
            k8s.core.v1.VolumeArgs(name="vault-ca", secret=k8s.core.v1.SecretVolumeSourceArgs(
                secret_name=args.tls_secret, items=[k8s.core.v1.KeyToPathArgs(key="ca.crt", path="ca.crt")])),
            k8s.core.v1.VolumeArgs(name="token", projected=k8s.core.v1.ProjectedVolumeSourceArgs(
                sources=[k8s.core.v1.VolumeProjectionArgs(service_account_token=token)])),
        ]
        schedule = args.store.settings.schedules["vault"]
        args.store.expect(f"CronJob {ns_name}/{SNAPSHOT_ROLE}", "vault/", SNAPSHOT_KEY, schedule)
        self.cron_job = backup_cron_job(
            f"{name}-cron", SNAPSHOT_ROLE, args.namespace, schedule,
            pod_spec(writer.service_account, [snapshot], upload, volumes, user=100),
            pulumi.ResourceOptions(
                parent=self, provider=cluster.provider,
                depends_on=[args.namespace, policy, role, *writer.prerequisites, *args.depends_on],
            ),
        )
        self.register_outputs({"schedule": self.cron_job.spec.schedule})


@dataclass(frozen=True)
class RegistryBackupArgs:
    store: BackupStore
    namespace: k8s.core.v1.Namespace  # Harbor's
    release: str  # Harbor's release name: the backup's service account is `<release>-backup`
    registry: RegistryStorage  # on the backup store's own endpoint: one set of keys (or one role) reads it and writes the copy
    depends_on: tuple[pulumi.Resource, ...] = ()


class RegistryBackup(pulumi.ComponentResource):
    """Harbor's registry storage copied to the backup bucket on the backups' schedule."""

    def __init__(self, name: str, cluster: ClusterHandle, args: RegistryBackupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:backup_jobs:RegistryBackup", name, None, opts)
        account = f"{args.release}-backup"
        access = BucketAccess(sync=True, read_buckets=(args.registry.bucket,) if args.registry.bucket is not None else ())
        writer = args.store.writer("harbor", cluster, args.namespace, HARBOR_NAMESPACE, account, self, access)
        volumes = [k8s.core.v1.VolumeArgs(name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs())]
        sync = aws_cli_container("sync", REGISTRY_SYNC_SH, [*writer.env, k8s.core.v1.EnvVarArgs(name="SOURCE", value=args.registry.url)], [])
        schedule = args.store.settings.schedules["harbor"]
        # The marker's own key as the prefix: a listing of harbor/ would page through every blob of the copy.
        args.store.expect(f"CronJob {HARBOR_NAMESPACE}/{account}", f"harbor/{SYNC_MARKER}", "^$", schedule)
        self.cron_job = backup_cron_job(
            f"{name}-cron", account, args.namespace, schedule,
            pod_spec(writer.service_account, [], sync, volumes, user=10000),
            pulumi.ResourceOptions(parent=self, provider=cluster.provider,
                                   depends_on=[args.namespace, *writer.prerequisites, *args.depends_on]),
        )
        self.register_outputs({"schedule": self.cron_job.spec.schedule})


def pod_spec(
    account: str,
    init: list[k8s.core.v1.ContainerArgs],
    main: k8s.core.v1.ContainerArgs,
    volumes: list[k8s.core.v1.VolumeArgs],
    user: int,
    restart_policy: str = "Never",  # a Deployment's pods: "Always"
) -> k8s.core.v1.PodSpecArgs:
    return k8s.core.v1.PodSpecArgs(
        service_account_name=account,
        automount_service_account_token=False,  # only the projected tokens it needs
        restart_policy=restart_policy,
        security_context=k8s.core.v1.PodSecurityContextArgs(
            run_as_non_root=True, run_as_user=user, run_as_group=user, fs_group=user,
            seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault"),
        ),
        init_containers=init or None,
        containers=[main],
        volumes=volumes,
    )
