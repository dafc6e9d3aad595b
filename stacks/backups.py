"""The platform's backups from `platform:backups`: the bucket (before the services, GitLab's chart
values name it) and the Vault and Harbor jobs (after Vault's federation, which logs the snapshot job in)."""

from __future__ import annotations

from typing import Any

import pulumi

from components.aws import bucket_name
from components.backup_jobs import RegistryBackup, RegistryBackupArgs, VaultSnapshots, VaultSnapshotsArgs
from components.backups import BackupSettings, BackupStore, BackupStoreArgs, WriterKey, watch_key_credential
from components.cluster import ClusterHandle
from components.harbor import RELEASE as HARBOR_RELEASE, Harbor
from components.inventory import CredentialInventory
from components.vault import API_PORT, NAMESPACE as VAULT_NAMESPACE, RELEASE as VAULT_RELEASE, TLS_SECRET, Vault
from components.vault_federation import VaultFederation
from stacks.config import PlatformConfig, writer_keys


def backup_settings(config: PlatformConfig) -> BackupSettings | None:
    backups = config.backups
    if backups is None:
        return None
    return BackupSettings(
        retention_days=backups.retention_days,
        schedules=backups.schedules.model_dump(),
        object_lock="COMPLIANCE" if backups.object_lock == "compliance" else "GOVERNANCE",
        target=backups.target.target() if backups.target else None,
        copy_region=backups.copy_region,
        writer_keys={
            writer: WriterKey(key.access_key_id, pulumi.Output.secret(key.secret_access_key.get_secret_value()))
            for writer, key in writer_keys(config).items()
        },
    )


def backup_store(config: PlatformConfig, cluster: ClusterHandle, inventory: CredentialInventory) -> BackupStore | None:
    """The stack's backup bucket, or None without `platform:backups`."""
    settings = backup_settings(config)
    if settings is None:
        return None
    for key, store in (("platform:backups.target", config.backups.target), ("platform:objectStore", config.object_store)):
        if store is not None and store.watch_key is not None:
            inventory.register(watch_key_credential(key, store.endpoint, store.bucket))
    return BackupStore(
        "backups",
        BackupStoreArgs(
            settings=settings,
            bucket_name=bucket_name(config.domain, "backups"),
            copy_bucket_name=bucket_name(config.domain, f"backups-{settings.copy_region}") if settings.copy_region else None,
            aws=cluster.aws_identity,
            protect=bool(config.protect),
            inventory=inventory,
        ),
    )


def build_backup_jobs(
    cluster: ClusterHandle, store: BackupStore | None, vault: Vault | None, harbor: Harbor | None,
    federation: VaultFederation | None,
) -> None:
    """Vault's snapshots and Harbor's registry copy, where backups and those services are on."""
    if store is None:
        return
    if vault is not None and federation is not None:
        VaultSnapshots("vault-snapshots", cluster, VaultSnapshotsArgs(
            store=store,
            provider=vault.provider,
            binder=federation,
            namespace=vault.namespace,
            address=f"https://{VAULT_RELEASE}-active.{VAULT_NAMESPACE}.svc:{API_PORT}",
            tls_secret=TLS_SECRET,
            depends_on=(vault.release,),
        ))
    # One `aws s3 sync` reads the registry and writes the copy with one identity: on EKS the job's
    # role; elsewhere Harbor's own key to the target, which reaches the registry only on the same endpoint.
    if harbor is not None and harbor.registry.endpoint == store.endpoint:
        RegistryBackup("harbor-registry-backup", cluster, RegistryBackupArgs(
            store=store,
            namespace=harbor.namespace,
            release=HARBOR_RELEASE,
            registry=harbor.registry,
            depends_on=(harbor.release,),
        ))


def backup_expectations(store: BackupStore | None) -> dict[str, pulumi.Output[list[dict[str, Any]]]]:
    """The stack output `backupExpectations`: every backup the program declares, with where it lands and
    when, which `platformctl backups check` compares with the store. Call it once every writer is declared."""
    if store is None:
        return {}
    entries = pulumi.Output.all(*[expected.output() for expected in store.expectations])
    # In the writers' order, not the tenants': reordering the tenants changes nothing.
    return {"backupExpectations": entries.apply(lambda found: sorted(found, key=lambda e: (e["writer"], e["prefix"])))}
