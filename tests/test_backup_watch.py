"""A backup that stops being taken is noticed: `platformctl backups check` against a real S3 API in-process
(moto), the expectations it checks derived from both stacks' plans, and the watch role of EKS stacks."""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from platformctl import backups
from platformctl.render import read_stack_file
from tests.test_aws_attacks import _allows, _role_policies
from tests.test_ci_file import CI_FILE, _resolve, _script
from tests.test_config import DEV, _problems, _write, setting
from tests.test_eks_storage import named

ROOT = Path(__file__).resolve().parent.parent
# Scheduled resources that write no backup, and why (a new writer must get an expectation or a reason here).
NOT_BACKUPS = {
    ("kubernetes:batch/v1:CronJob", "control-plane-openunison-sessions-cron-job"): "deletes expired OIDC sessions",
    ("kubernetes:batch/v1:CronJob", "gitlab-admin-token-probe"): "probes the admin token's expiry",
    ("harbor:index/garbageCollection:GarbageCollection", "harbor-gc"): "Harbor's registry garbage collection",
    ("harbor:index/retentionPolicy:RetentionPolicy", "*-registry-retention"): "a tenant project's tag retention",
    # A copy in another registry as each push lands (event-based): no time to hold it to, and not in a backup store.
    ("harbor:index/replication:Replication", "harbor-replicate-*"): "Harbor's replication to a second registry",
}


def expectations(plan: dict) -> list[dict[str, Any]]:
    """The stack's backups where they are written (their copies in another region: tests/test_backup_copy.py)."""
    return [e for e in plan["outputs"]["backupExpectations"] if not e["store"].endswith("-copy")]


def deployed(plan: dict) -> list[dict[str, Any]]:
    """The expectations as a deployed stack's outputs say them: each RDS instance's identifier, which RDS names at
    creation (the mock leaves it unknown), filled in."""
    return [e | ({"bucket": f"{e['writer'].split()[1]}-7f3a2c1"} if e["store"] == "rds" else {}) for e in expectations(plan)]


def scheduled(value: Any) -> Iterator[str]:
    """Every `schedule` string anywhere in a resource's inputs."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "schedule" and isinstance(item, str):
                yield item
            else:
                yield from scheduled(item)
    elif isinstance(value, list):
        for item in value:
            yield from scheduled(item)


def writer_of(resource: dict) -> tuple[str, str | None] | None:
    """(writer, five-field schedule; None: its base backups') the plan says `resource` writes backups as, or None."""
    inputs, kind = resource["inputs"], resource["type"].rsplit(":", 1)[-1]
    if resource["type"] == "aws:rds/instance:Instance":  # automated backups: the transaction log every 5 minutes
        return (f"DBInstance {resource['name']}", "*/5 * * * *") if inputs["backupRetentionPeriod"] > 0 else None
    if resource["type"] == "kubernetes:helm.sh/v3:Release" and inputs.get("chart") == "gitlab":
        cron = inputs["values"]["gitlab"]["toolbox"].get("backups", {}).get("cron", {})
        return (f"CronJob {inputs['namespace']}/{inputs['name']}-toolbox-backup", cron["schedule"]) if cron.get("enabled") else None
    if kind not in ("ScheduledBackup", "Cluster", "CronJob", "Schedule") or not resource["type"].startswith("kubernetes:"):
        return None
    name = f"{kind} {inputs['metadata']['namespace']}/{inputs['metadata']['name']}"
    if kind == "ScheduledBackup":
        return name, " ".join(inputs["spec"]["schedule"].split()[1:])  # CloudNativePG's seconds first
    if kind == "Cluster":  # CloudNativePG's WAL archive: continuous, held to its daily base backup's schedule
        return (name, None) if "backup" in inputs["spec"] else None
    return name, inputs["spec"]["schedule"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_backup_writer_the_plan_declares_has_an_expectation_and_nothing_else_does(renders: dict, stack: str) -> None:
    plan = renders[stack].plan
    expected = {e["writer"]: e for e in expectations(plan)}
    writers: dict[str, str | None] = {}
    for resource in plan["resources"]:
        reason = next((why for (type_, name), why in NOT_BACKUPS.items()
                       if resource["type"] == type_ and re.fullmatch(name.replace("*", ".*"), resource["name"])), None)
        found = writer_of(resource)
        if reason is None and found is not None:
            writers[found[0]] = found[1]
        elif reason is None:
            assert not list(scheduled(resource["inputs"])), f"{resource['type']} {resource['name']}: scheduled, but no expectation nor reason"
    assert sorted(writers) == sorted(expected)
    cnpg = {e["writer"].split("/")[1]: e["schedule"] for e in expected.values() if e["writer"].startswith("ScheduledBackup")}
    for writer, schedule in writers.items():
        assert expected[writer]["schedule"] == (schedule or cnpg[f"{writer.split('/')[1]}-daily"]), writer
        assert backups.longest_interval(expected[writer]["schedule"]) <= timedelta(days=1), writer  # noticed within a day
    assert len(writers) >= (9 if stack == "dev" else 5)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_each_expectation_points_where_its_writer_writes(renders: dict, stack: str) -> None:
    """The prefixes are the ones the jobs, Velero's location and CloudNativePG's archive really use."""
    plan = renders[stack].plan
    by_writer = {e["writer"]: e for e in expectations(plan)}
    bucket = plan["outputs"]["backupBucket"]
    for resource in plan["resources"]:
        found = writer_of(resource)
        if found is None or found[0] not in by_writer:
            continue
        entry, inputs = by_writer[found[0]], resource["inputs"]
        if resource["type"] == "kubernetes:batch/v1:CronJob":
            env = {e["name"]: e.get("value") for c in inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"] for e in c["env"]}
            assert (entry["bucket"], entry["store"]) == (env["BUCKET"], "backups") and entry["prefix"].startswith(env["PREFIX"]), found[0]
        elif resource["type"] == "kubernetes:velero.io/v1:Schedule":
            assert (entry["bucket"], entry["prefix"]) == (bucket, f"velero/{resource['cluster']}/backups/{inputs['metadata']['name']}-")
        elif resource["type"].endswith(":ScheduledBackup"):  # the base backups of its Cluster's folder
            wals = by_writer[f"Cluster {inputs['metadata']['namespace']}/{inputs['spec']['cluster']['name']}"]
            assert (entry["bucket"], entry["prefix"]) == (wals["bucket"], wals["prefix"].removesuffix("wals/") + "base/")
        elif resource["type"] == "aws:rds/instance:Instance":  # described by its identifier, in its cluster's region
            assert (entry["store"], entry["endpoint"], entry["region"]) == ("rds", None, "eu-west-1"), found[0]
        elif found[0].startswith("Cluster"):
            store = inputs["spec"]["backup"]["barmanObjectStore"]
            folder = f"{store['destinationPath']}/{store['serverName']}/wals/"
            assert f"s3://{entry['bucket']}/{entry['prefix']}" == folder and entry["endpoint"] == store["endpointURL"]
            assert f"s3://{entry['bucket']}/{entry['prefix'].removesuffix('/wals/')}" in plan["outputs"]["databaseArchives"].values()
    assert all(e["store"] == "backups" and e["bucket"] == bucket for e in by_writer.values()
               if not e["writer"].startswith(("Cluster", "ScheduledBackup", "DBInstance")))


@pytest.mark.parametrize(("schedule", "longest"), [
    ("17 * * * *", timedelta(hours=1)),
    ("0 2 * * *", timedelta(days=1)),
    ("0 4 * * 1-5", timedelta(days=3)),  # Friday to Monday
    ("*/5 0 * * *", timedelta(hours=23, minutes=5)),  # the night's last run to the next night's first
    ("0 3 1 * *", timedelta(days=31)),
])
def test_the_longest_interval_comes_from_the_cron_expression(schedule: str, longest: timedelta) -> None:
    assert backups.longest_interval(schedule) == longest


def test_the_margin_is_what_a_backup_jobs_run_may_take(prod: dict) -> None:
    """Late by its starting deadline, running up to its active deadline: the plan's backup CronJobs bound a run so."""
    for writer in ("vault-snapshots-cron", "harbor-registry-backup-cron"):
        spec = named(prod, writer, "kubernetes:batch/v1:CronJob")["inputs"]["spec"]
        bound = spec["startingDeadlineSeconds"] + spec["jobTemplate"]["spec"]["activeDeadlineSeconds"]
        assert backups.MARGIN == timedelta(seconds=bound), writer


# --- the check against S3 (moto) ---------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _one_botocore_loader() -> Iterator[None]:
    """The module's boto3 sessions read AWS's service models through one loader.

    Why: each new session parses the same JSON models (endpoints, S3, RDS) again, which was most of
    this file's CPU (botocore/session.py `_register_data_loader` makes a loader per session); the
    check makes a session per store and these tests run the check many times."""
    import botocore.session

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", functools.lru_cache(maxsize=None)(botocore.session.create_loader))
        yield


@pytest.fixture
def s3(renders: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """moto's S3 for AWS and the stacks' S3-compatible endpoints, with no AWS configuration from the machine."""
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    endpoints = {e["endpoint"] for result in renders.values() for e in expectations(result.plan) if e["endpoint"]}
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", ",".join(sorted(endpoints)))
    import boto3
    from moto import mock_aws

    clients: dict[str | None, Any] = {}

    def client(endpoint: str | None) -> Any:
        if endpoint not in clients:
            clients[endpoint] = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        return clients[endpoint]

    with mock_aws():
        yield client


def put(s3: Any, entry: dict[str, Any], suffix: str, phase: str = "Completed") -> None:
    if entry["store"] == "rds":  # an instance with automated backups: moto's LatestRestorableTime is always now
        import boto3

        boto3.client("rds", region_name=entry["region"]).create_db_instance(
            DBInstanceIdentifier=entry["bucket"], Engine="postgres", DBInstanceClass="db.t4g.medium", BackupRetentionPeriod=7,
            AllocatedStorage=20, MasterUsername="x", MasterUserPassword="x" * 12)
        return
    client = s3(entry["endpoint"])
    if entry["bucket"] not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=entry["bucket"])
    body = velero_backup_json(entry["prefix"] + suffix, phase) if suffix.endswith("/velero-backup.json") else b"x"
    body = barman_backup_info(suffix, phase) if suffix.endswith("/backup.info") else body
    client.put_object(Bucket=entry["bucket"], Key=entry["prefix"] + suffix, Body=body)


def barman_backup_info(key: str, phase: str) -> bytes:
    """backup.info as barman-cloud-backup uploads it once a base backup ends (barman/cloud.py _coordinate_backup, its
    `finally`): BackupInfo's fields as sorted name=value lines (barman/infofile.py save), status DONE or FAILED."""
    backup_id = key.split("/")[-2]
    status = "DONE" if phase == "Completed" else phase
    fields = {"backup_id": backup_id, "backup_label": "None", "begin_time": "2026-12-07 03:00:01.123456+00:00",
              "begin_wal": "000000010000000000000003", "begin_xlog": "0/3000028", "compression": "gzip",
              "end_time": "2026-12-07 03:00:09.654321+00:00", "end_wal": "000000010000000000000003", "mode": "concurrent",
              "pgdata": "/var/lib/postgresql/data/pgdata", "server_name": "cloud", "status": status, "systemid": "7445091826462253079",
              "timeline": "1", "version": "170006", **({"error": "failure uploading data (connection reset)"} if status == "FAILED" else {})}
    return "".join(f"{name}={value}\n" for name, value in sorted(fields.items())).encode()


def velero_backup_json(key: str, phase: str) -> bytes:
    """velero-backup.json as Velero 1.18.1 writes it: the Backup object, pretty JSON (pkg/util/encode), first by
    persistBackup (pkg/controller/backup_controller.go: Failed, Finalizing, FinalizingPartiallyFailed or
    WaitingForPluginOperations*), again by the finalizer (backup_finalizer_controller.go: Completed, PartiallyFailed)."""
    name = key.split("/")[-2]
    schedule, stamp = name.rsplit("-", 1)
    started = datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)
    at = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    status: dict[str, Any] = {
        "version": 1, "formatVersion": "1.1.0", "expiration": at(started + timedelta(days=7)), "phase": phase,
        "startTimestamp": at(started), "progress": {"totalItems": 42, "itemsBackedUp": 42 if phase == "Completed" else 40},
        **({"completionTimestamp": at(started + timedelta(minutes=3))} if phase in ("Completed", "PartiallyFailed", "Failed") else {}),
        **({"errors": 2} if "Failed" in phase else {}),
        **({"failureReason": "found a backup with status \"InProgress\" during the server starting"} if phase == "Failed" else {}),
    }
    backup = {
        "kind": "Backup", "apiVersion": "velero.io/v1",
        "metadata": {"name": name, "namespace": "velero", "uid": "8b4f3b3e-5d0c-4c5e-9a57-3b8e2f0c1d2a", "resourceVersion": "123456",
                     "generation": 5, "creationTimestamp": at(started),
                     "labels": {"velero.io/schedule-name": schedule, "velero.io/storage-location": "default"},
                     "annotations": {"velero.io/resource-timeout": "10m0s", "velero.io/source-cluster-k8s-major-version": "1"}},
        "spec": {"metadata": {}, "includedNamespaces": [schedule], "ttl": "168h0m0s", "storageLocation": "default",
                 "defaultVolumesToFsBackup": True, "csiSnapshotTimeout": "10m0s", "itemOperationTimeout": "4h0m0s"},
        "status": status,
    }
    return json.dumps(backup, indent=2).encode()


# A key each writer really writes, after its prefix.
WRITTEN = {
    "CronJob vault/vault-snapshot": "vault-20261207T041700Z.snap",
    "CronJob gitlab/gitlab-toolbox-backup": "1796616000_2026_12_07_18.6.1_gitlab_backup.tar",
    "CronJob harbor/harbor-backup": "",  # the marker is the prefix itself
    "Schedule": "{stamp}/velero-backup.json",
    "ScheduledBackup": "20261207T030000/backup.info",
    "Cluster": "0000000100000000/000000010000000000000004.gz",
    "DBInstance": "",
}


def written(entry: dict[str, Any], when: datetime | None = None) -> str:
    key = WRITTEN[entry["writer"]] if entry["writer"] in WRITTEN else WRITTEN[entry["writer"].split()[0]]
    return key.format(name=entry["writer"].split("/")[-1], stamp=f"{when or datetime.now(timezone.utc):%Y%m%d%H%M%S}")


def run(stack: str, outputs: Any, tmp_path: Path, now: datetime | None = None) -> int:
    """The command as the CI job runs it, on the stack's outputs as `pulumi stack output --json` writes them."""
    (tmp_path / "outputs.json").write_text(json.dumps(outputs))
    return backups.run(argparse.Namespace(stack=stack, outputs=str(tmp_path / "outputs.json")), now=now)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_fresh_backups_pass_and_each_stale_or_missing_one_fails_on_a_line_of_its_own(
    renders: dict, stack: str, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    entries = deployed(renders[stack].plan)
    for entry in entries:
        put(s3, entry, written(entry))
    outputs = {"backupExpectations": entries}
    assert run(stack, outputs, tmp_path) == 0
    assert f"{len(entries)} of {len(entries)} backups of stack {stack} fresh" in capsys.readouterr().out

    # Ten hours on, the hourly Vault snapshots are stale (1 h and the 7 h margin), and so is each RDS instance's
    # restorable time (5 minutes and the margin); the nightly ones are not.
    later = datetime.now(timezone.utc) + timedelta(hours=10)
    assert run(stack, outputs, tmp_path, later) == 1
    lines = capsys.readouterr().out.splitlines()
    [stale, *databases] = [line for line in lines if not line.startswith("ok ")][:-1]
    assert re.fullmatch(r"STALE s3://[a-z0-9.-]+/vault/ \(CronJob vault/vault-snapshot\): newest \S+Z, 10\.0 h old; "
                        r"allowed 8\.0 h \(schedule '17 \* \* \* \*'\)", stale), stale
    assert len(databases) == (4 if stack == "prod" else 0) and all(
        re.fullmatch(r"STALE rds:\S+ \(DBInstance \S+\): newest \S+Z, 10\.0 h old; allowed 7\.1 h \(schedule '\*/5 \* \* \* \*'\)", line)
        for line in databases), databases

    # Two days on, every backup is stale, one line each.
    assert run(stack, outputs, tmp_path, later + timedelta(days=2)) == 1
    out = capsys.readouterr().out.splitlines()
    assert len([line for line in out if line.startswith("STALE")]) == len(entries)


def test_a_missing_backup_and_keys_that_only_look_like_one_fail(renders: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """Velero's folders of another schedule whose name starts the same, a restore's parked GitLab objects, a
    base backup's folder without its data and CloudNativePG's other files are not backups of the writer."""
    entries = expectations(renders["dev"].plan)
    decoys = {
        "Schedule velero/payments-prod": "x-20261207040000/payments-prod-x-20261207040000.tar.gz",  # tenant payments-prod-x
        "CronJob gitlab/gitlab-toolbox-backup": "tmp/builds/1.tar",
        "ScheduledBackup gitlab/gitlab-postgres-daily": "20261207T030000/data.tar.gz",  # no backup.info: it never ended
        "Cluster gitlab/gitlab-postgres": "0000000100000000/00000001.history",
    }
    for entry in entries:
        put(s3, entry, decoys.get(entry["writer"], written(entry)))
    target = next(e for e in entries if e["store"] == "backups")
    put(s3, {**target, "prefix": ""}, "velero/dev/backups/payments-prod-20261207040000/x.tar.gz")  # another cluster's
    assert run("dev", {"backupExpectations": entries}, tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    missing = sorted(line.split("(")[1].split(")")[0] for line in out if line.startswith("MISSING"))
    assert missing == sorted(decoys)
    assert any(line.startswith("MISSING s3://platform-dev-backups/velero/prod/backups/payments-prod- (Schedule velero/payments-prod): "
                               "no object matches ^[0-9]{14}/velero-backup\\.json$; allowed 31.0 h (schedule '0 4 * * *')") for line in out)


def _velero_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in entries if e["writer"].startswith("Schedule "))


@pytest.mark.parametrize("phase", ["Failed", "PartiallyFailed", "FinalizingPartiallyFailed", "WaitingForPluginOperationsPartiallyFailed"])
def test_a_velero_backup_that_did_not_complete_is_not_fresh(renders: dict, s3: Any, tmp_path: Path, capsys, phase: str) -> None:
    """Velero uploads a Failed backup's tarball and log too, and a PartiallyFailed one is missing volumes or objects:
    the newest backup's velero-backup.json says so (status.phase), and the check fails on it, naming the backup."""
    entries = expectations(renders["dev"].plan)
    for entry in entries:
        put(s3, entry, written(entry))
    velero = _velero_entry(entries)
    name = f"{velero['writer'].split('/')[1]}-{datetime.now(timezone.utc) + timedelta(minutes=1):%Y%m%d%H%M%S}"
    for suffix in ("velero-backup.json", f"{name}.tar.gz", f"{name}-logs.gz"):  # as PutBackup uploads them
        put(s3, velero, f"{name.rsplit('-', 1)[1]}/{suffix}", phase)
    assert run("dev", {"backupExpectations": entries}, tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("ok ")][:-1] == [
        f"FAILED s3://{velero['bucket']}/{velero['prefix']} ({velero['writer']}): newest backup {name} is {phase}, "
        f"not Completed (velero backup describe {name} --details)"]


def test_a_base_backup_that_failed_is_not_fresh(renders: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """barman-cloud-backup uploads data.tar before it stops the backup and uploads the label, then backup.info with
    status FAILED if anything after failed: the newest base backup's backup.info must say DONE."""
    entries = expectations(renders["dev"].plan)
    for entry in entries:
        put(s3, entry, written(entry))
    base = next(e for e in entries if e["writer"].startswith("ScheduledBackup "))
    backup_id = f"{datetime.now(timezone.utc) + timedelta(minutes=1):%Y%m%dT%H%M%S}"
    put(s3, base, f"{backup_id}/data.tar.gz")
    put(s3, base, f"{backup_id}/backup.info", "FAILED")
    assert run("dev", {"backupExpectations": entries}, tmp_path) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("ok ")][:-1] == [
        f"FAILED s3://{base['bucket']}/{base['prefix']} ({base['writer']}): newest backup {backup_id} is FAILED, not DONE"]


def test_a_velero_backup_whose_upload_failed_is_not_fresh(renders: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """When the tarball's upload fails Velero deletes the backup's velero-backup.json and leaves its log
    (pkg/persistence/object_store.go PutBackup): no backup, however new the log."""
    entries = expectations(renders["dev"].plan)
    velero = _velero_entry(entries)
    for entry in entries:
        if entry is not velero:
            put(s3, entry, written(entry))
    name = f"{velero['writer'].split('/')[1]}-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"
    put(s3, velero, f"{name.rsplit('-', 1)[1]}/{name}-logs.gz")
    assert run("dev", {"backupExpectations": entries}, tmp_path) == 1
    assert f"MISSING s3://{velero['bucket']}/{velero['prefix']} ({velero['writer']})" in capsys.readouterr().out


def test_only_the_newest_velero_backup_is_read_and_a_finishing_one_is_not_yet_a_failure(renders: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """An older failure does not matter once a newer backup completed; a backup still finishing its plugin operations
    (CSI snapshots) is fine while it is younger than the margin, a failure after it. One object read per Schedule."""
    entries = [e for e in expectations(renders["dev"].plan) if e["writer"].startswith("Schedule ")]
    velero = entries[0]
    now = datetime.now(timezone.utc)
    for entry in entries:
        put(s3, entry, written(entry, now - timedelta(days=1)), "Failed")
        put(s3, entry, written(entry, now - timedelta(hours=1)))
    put(s3, velero, written(velero, now), "WaitingForPluginOperations")
    reads: list[str] = []
    listing = backups.Stores()

    def reader(expected: backups.Expectation, key: str) -> bytes:
        reads.append(key)
        return listing.read(expected, key)

    found = backups.expectations({"backupExpectations": entries}, "dev")
    problems, fresh = backups.check(found, listing.list, now + timedelta(minutes=5), reader)
    assert problems == [] and len(fresh) == len(entries) and len(reads) == len(entries)
    problems, _ = backups.check(found, listing.list, now + backups.MARGIN + timedelta(minutes=5), reader)
    assert problems[0].startswith(f"FAILED s3://{velero['bucket']}/{velero['prefix']} ({velero['writer']}): newest backup ") and \
        "is WaitingForPluginOperations, not Completed" in problems[0]


def test_a_database_whose_rds_automated_backups_stopped_fails_the_check(prod: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """RDS's automated backups are the EKS databases' only point-in-time history, and a hijacked deploy may turn them
    off (ModifyDBInstance to a retention of 0: IAM cannot refuse it, README). Each RDS instance is an expectation:
    its LatestRestorableTime (RDS archives the transaction log every 5 minutes) is held to its own schedule; an
    instance without automated backups, or gone, fails the check. moto's RDS, as the watch role describes it."""
    import boto3

    entries = deployed(prod)
    databases = [e for e in entries if e["store"] == "rds"]
    instances = [r for r in prod["resources"] if r["type"] == "aws:rds/instance:Instance"]
    assert sorted(e["writer"] for e in databases) == sorted(f"DBInstance {r['name']}" for r in instances) and len(instances) == 4
    assert all((e["schedule"], e["prefix"], e["pattern"]) == ("*/5 * * * *", "", "") for e in databases)
    for entry in entries:
        put(s3, entry, written(entry))
    assert run("prod", {"backupExpectations": entries}, tmp_path) == 0
    assert f"ok rds:{databases[0]['bucket']} ({databases[0]['writer']}): newest " in capsys.readouterr().out

    rds = boto3.client("rds", region_name=databases[0]["region"])
    rds.modify_db_instance(DBInstanceIdentifier=databases[0]["bucket"], BackupRetentionPeriod=0, ApplyImmediately=True)
    rds.delete_db_instance(DBInstanceIdentifier=databases[1]["bucket"], SkipFinalSnapshot=True)
    assert run("prod", {"backupExpectations": entries}, tmp_path) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("ok ")][:-1]
    assert problems == sorted([
        f"MISSING rds:{databases[0]['bucket']} ({databases[0]['writer']}): automated backups are off (backup retention 0); "
        "allowed 7.1 h (schedule '*/5 * * * *')",
        f"UNREADABLE rds:{databases[1]['bucket']} ({databases[1]['writer']}): An error occurred (DBInstanceNotFound) when calling the "
        f"DescribeDBInstances operation: DBInstance {databases[1]['bucket']} not found.",
    ], key=lambda line: line.split()[1])


def test_an_unreadable_store_fails_naming_it(renders: dict, s3: Any, tmp_path: Path, capsys) -> None:
    """A bucket that is gone (or a key that may not list it) is a failure, not a pass."""
    entries = deployed(renders["prod"].plan)
    assert run("prod", {"backupExpectations": entries}, tmp_path) == 1
    out = capsys.readouterr().out
    databases = [e for e in entries if e["store"] == "rds"]
    assert out.count("UNREADABLE s3://platform-example-com-backups/") == len(entries) - len(databases) and "NoSuchBucket" in out
    assert out.count("UNREADABLE rds:") == len(databases) == 4 and "DBInstanceNotFound" in out


# --- bad input: a clear error, exit 2, no traceback, nothing listed -------------------------------------


@pytest.mark.parametrize(("outputs", "words"), [
    ({}, "stack dev has no output backupExpectations"),
    ({"backupExpectations": []}, "lists no backups"),
    ({"backupExpectations": [{"writer": "x"}]}, "backupExpectations[0] is not an expectation; allowed: a mapping of writer, store"),
    ("not json", "--outputs"),
    ({"backupExpectations": [dict.fromkeys(backups.FIELDS, "x") | {"pattern": "^[0-9"}]}, "backupExpectations[0].pattern '^[0-9' is not a"),
])
def test_bad_outputs_name_the_problem(outputs: Any, words: str, tmp_path: Path, capsys) -> None:
    path = tmp_path / "outputs.json"
    path.write_text(outputs if isinstance(outputs, str) else json.dumps(outputs))

    def never(_: Any) -> list:
        raise AssertionError("listed a store despite bad input")

    assert backups.run(argparse.Namespace(stack="dev", outputs=str(path)), lister=never) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_a_bad_schedule_names_it(tmp_path: Path, capsys) -> None:
    entry = dict.fromkeys(backups.FIELDS, "x") | {"schedule": "61 * * * *", "endpoint": None, "outcome": None}
    (tmp_path / "o.json").write_text(json.dumps({"backupExpectations": [entry]}))
    assert backups.run(argparse.Namespace(stack="dev", outputs=str(tmp_path / "o.json")), lister=lambda e: []) == 2
    assert "schedule '61 * * * *' is not a cron schedule" in capsys.readouterr().err


@pytest.mark.parametrize(("answer", "words"), [
    ("echo '{}'", "error: stack dev has no output backupExpectations: it declares no backups (platform:backups unset) or was last deployed"),
    ("echo \"error: no stack named 'dev' found\" >&2; exit 255", "error: pulumi stack output --stack dev failed: error: no stack named 'dev' found"),
    ("echo 'Current stack outputs (0):'", "error: pulumi stack output --stack dev printed no JSON"),
])
def test_without_outputs_file_the_command_asks_pulumi(tmp_path: Path, answer: str, words: str) -> None:
    """As on a machine with the Pulumi CLI: `pulumi stack output --json --stack dev` (here a stand-in that answers `answer`)."""
    (tmp_path / "pulumi").write_text(f'#!/bin/sh\n[ "$*" = "stack output --json --stack dev" ] || exit 99\n{answer}\n')
    (tmp_path / "pulumi").chmod(0o755)
    done = subprocess.run([sys.executable, "-m", "platformctl", "backups", "check", "--stack", "dev"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert done.returncode == 2 and done.stderr.startswith(words) and "Traceback" not in done.stderr, done.stderr


def test_an_unknown_stack_is_refused_by_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "platformctl", "backups", "check", "--stack", "staging"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "error: unknown stack 'staging'; allowed: dev, prod (a Pulumi.<stack>.yaml)\n"


# --- EKS: the watch role ------------------------------------------------------------------------------


def test_the_watch_role_lists_the_backup_bucket_and_does_nothing_else(prod: dict) -> None:
    role = named(prod, "platform-pipeline-backup-watch", "aws:iam/role:Role")
    trust = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    [subject] = [v for s in trust for k, v in s["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert subject == "project_path:platform/platform-bootstrap:ref_type:branch:ref:main"  # as the deploy role: main only
    assert all("StringLike" not in s["Condition"] for s in trust)
    policies = _role_policies(prod, role)
    bucket = f"arn:aws:s3:::{prod['outputs']['backupBucket']}"
    assert any(_allows(p, "s3:ListBucket", {}, bucket) for p in policies)
    for action, resource in (("s3:ListBucket", "arn:aws:s3:::platform-example-com-gitlab-artifacts"),
                             ("s3:GetObject", f"{bucket}/vault/vault-20261207T041700Z.snap"), ("s3:ListBucketVersions", bucket),
                             ("s3:GetObject", f"{bucket}/velero/prod/backups/payments-prod-20261207040000/payments-prod-20261207040000.tar.gz"),
                             ("s3:GetObject", f"{bucket}/velero/prod/kopia/payments-prod/kopia.repository"),
                             ("s3:GetObjectVersion", f"{bucket}/vault/x"), ("s3:PutObject", f"{bucket}/vault/x"),
                             ("s3:DeleteObject", f"{bucket}/vault/x"), ("s3:BypassGovernanceRetention", f"{bucket}/vault/x"),
                             ("kms:Decrypt", "*"), ("sts:AssumeRole", "*"), ("rds:ModifyDBInstance", "*"),
                             ("rds:DownloadDBLogFilePortion", "*"), ("rds:CopyDBSnapshot", "*"), ("rds:RestoreDBInstanceToPointInTime", "*")):
        assert not any(_allows(p, action, {}, resource) for p in policies), (action, resource)
    assert _allows(policies[0], "s3:GetObject", {}, f"{bucket}/velero/prod/backups/payments-prod-20261207040000/velero-backup.json")
    velero = json.loads(named(prod, "prod-velero", "aws:iam/rolePolicy:RolePolicy")["inputs"]["policy"])["Statement"]
    [key] = [s["Resource"] for s in velero if s["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]]  # the bucket's key
    # The same of the copy in eu-central-1 (tests/test_backup_copy.py), under its own key.
    [rule] = named(prod, "backups", "aws:s3/bucketReplicationConfig:BucketReplicationConfig")["inputs"]["rules"]
    copy, copy_key = f"{bucket}-eu-central-1", rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"]
    assert [(s["Effect"], s["Action"], s["Resource"], s.get("Condition")) for p in policies for s in p["Statement"]] == [
        ("Allow", ["s3:ListBucket"], [bucket, copy], None),
        ("Allow", ["s3:GetObject"], [f"{b}/velero/*/backups/*/velero-backup.json" for b in (bucket, copy)], None),
        # The key decrypts for the role only inside an S3 request, which the statement above confines.
        ("Allow", ["kms:Decrypt"], [key, copy_key],
         {"StringEquals": {"kms:ViaService": ["s3.eu-west-1.amazonaws.com", "s3.eu-central-1.amazonaws.com"]}}),
        # The automated backups' restorable time, and their copies': a description, no data.
        ("Allow", ["rds:DescribeDBInstances", "rds:DescribeDBInstanceAutomatedBackups", "ec2:DescribeSnapshots"], "*", None),
    ]
    [entry] = [c for c in prod["outputs"]["credentials"] if c["resources"] == ["platform-pipeline-backup-watch"]]
    assert entry["category"] == "federated" and entry["lifetimeSeconds"] == 3600
    assert "platform-pipeline-backup-watch" in prod["outputs"]["backupWatchRoleArn"]  # BACKUP_WATCH_ROLE_ARN


# --- the schedule in the platform's pipeline ------------------------------------------------------------


def test_the_backups_schedule_checks_both_stacks_on_main_with_list_only_identities() -> None:
    import yaml

    text = CI_FILE.read_text()
    ci = yaml.safe_load(text)
    assert "SCHEDULE_TASK=backups" in text.split("workflow:")[0]  # the header's schedule table
    for stack in ("dev", "prod"):
        job = _resolve(ci, f"backups-{stack}")
        assert job["rules"] == [{"if": '$CI_PIPELINE_SOURCE == "schedule" && $SCHEDULE_TASK == "backups" && '
                                       "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"}]
        assert job["tags"] == ["platform-protected"] and "environment" not in job and "when" not in job
        assert job["variables"]["AWS_ROLE_ARN"] == "$BACKUP_WATCH_ROLE_ARN"
        assert job["variables"]["PULUMI_TEAM"] == f"platform-preview-{stack}"  # reads the stack's outputs and config
        # Only the tokens it uses: AWS's (the watch role) and Pulumi Cloud's. Not Vault's: an ID token for Vault's
        # audience is what the deploy jobs log in to Vault with, and no line of this job needs it.
        assert job["id_tokens"] == {"AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}, "PULUMI_ID_TOKEN": {"aud": "urn:pulumi:org:$PULUMI_ORG"}}
        assert "VAULT_ADDR" not in json.dumps(job) and "VAULT_ID_TOKEN" not in json.dumps(job)
        script = _script(job)
        assert not any("vault-login" in line for line in script)
        assert script[-3:] == [
            f"pulumi stack output --json --stack {stack} > build/outputs-{stack}.json",
            f".ci/watch-keys {stack}",
            f"venv/bin/python -m platformctl backups check --stack {stack} --outputs build/outputs-{stack}.json 2>&1 "
            f"| tee build/backups-{stack}.txt",
        ]
        assert "set -o pipefail" in script  # the check's exit status, not tee's, is the job's
        assert job["artifacts"]["paths"] == ["build/backups-*.txt"]  # the report, never the outputs


# --- kubeconfig stacks: the stores' watch keys -------------------------------------------------------


@pytest.mark.parametrize(("path", "key_id", "owner"), [
    (("platform:backups", "target", "watchKey", "accessKeyId"), "platform-dev-backups-vault", "platform:backups.target.writerKeys.vault"),
    (("platform:backups", "target", "watchKey", "accessKeyId"), "platform-dev-harbor-archives", "platform:objectStore.archiveKeys.harbor"),
    (("platform:objectStore", "watchKey", "accessKeyId"), "velero-dev", "platform:services.velero.targetKeys.dev"),
    (("platform:objectStore", "watchKey", "accessKeyId"), "platform-dev", "platform:objectStore"),
])
def test_a_watch_key_that_is_a_writing_key_is_refused_naming_it(tmp_path: Path, path: tuple, key_id: str, owner: str) -> None:
    lines = _problems(_write(tmp_path, DEV, setting(*path, value=key_id)))
    assert any(f": {'.'.join(path)}: the key of {owner}, which writes; allowed: a key of its own" in line for line in lines), lines


def test_a_watch_key_in_plain_text_is_refused(tmp_path: Path) -> None:
    lines = _problems(_write(tmp_path, DEV, setting("platform:backups", "target", "watchKey", "secretAccessKey", value="plain")))
    assert any(": platform:backups.target.watchKey.secretAccessKey: holds a secret in plain text" in line for line in lines), lines


def test_the_watch_keys_are_in_the_inventory_and_never_in_the_plan(renders: dict) -> None:
    plan = renders["dev"].plan
    entries = {c["what"]: c for c in plan["outputs"]["credentials"]}
    for bucket, grant in (("platform-dev", "s3:ListBucket, and s3:GetObject of postgres/*/base/*/backup.info only "
                                           "(no other object read, no write)"),
                          ("platform-dev-backups", "s3:ListBucket, and s3:GetObject of velero/*/backups/*/velero-backup.json only "
                                                   "(no other object read, no write)")):
        entry = entries[f"list-only watch key of bucket {bucket}"]
        assert entry["category"] == "external" and f"should be {grant};" in entry["scope"]
    # The program keeps no copy of the keys (the job reads them from the config): no resource has either.
    raw, _ = read_stack_file(ROOT / "Pulumi.dev.yaml")
    config = {key: json.loads(value) for key, value in raw.items() if key in ("platform:objectStore", "platform:backups")}
    watch = [config["platform:objectStore"]["watchKey"], config["platform:backups"]["target"]["watchKey"]]
    text = json.dumps(plan["resources"])
    assert not [value for key in watch for value in key.values() if value in text]


# --- Harbor's copy: a sync with nothing new writes nothing, so it leaves a marker ----------------------


@pytest.mark.parametrize("sync_fails", [False, True])
def test_the_registry_copy_rewrites_its_marker_only_after_a_sync_that_succeeded(prod: dict, tmp_path: Path, sync_fails: bool) -> None:
    """The plan's own script, with an `aws` that records its calls (and fails the sync when asked)."""
    cron = named(prod, "harbor-registry-backup-cron", "kubernetes:batch/v1:CronJob")
    [container] = cron["inputs"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    (tmp_path / "aws").write_text(f'#!/bin/sh\necho "$* <$(cat)" >> {tmp_path}/calls\n[ "$1 $2" != "s3 sync" ] || [ -z "$FAIL" ]\n')
    (tmp_path / "aws").chmod(0o755)
    environment = {**env, "PATH": f"{tmp_path}:/usr/bin:/bin", **({"FAIL": "1"} if sync_fails else {})}
    done = subprocess.run(container["command"], env=environment, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=30)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0].startswith(f"s3 sync {env['SOURCE']} s3://{env['BUCKET']}/harbor/registry/ --delete")
    if sync_fails:
        assert done.returncode != 0 and len(calls) == 1
    else:
        assert done.returncode == 0, done.stderr
        [marker] = calls[1:]
        assert re.fullmatch(rf"s3 cp - s3://{env['BUCKET']}/harbor/registry-synced --checksum-algorithm CRC32 --only-show-errors "
                            r"<\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", marker), marker
        [harbor] = [e for e in expectations(prod) if e["writer"] == "CronJob harbor/harbor-backup"]
        assert (harbor["prefix"], re.fullmatch(harbor["pattern"], "") is not None) == ("harbor/registry-synced", True)


def watch_keys(tmp_path: Path, config: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    """.ci/watch-keys dev with a stand-in `pulumi config get` answering `config` (else: not found), and its file."""
    cases = "".join(f"  \"config get --path {key} --stack dev\") printf '%s\\n' {shlex.quote(value)} ;;\n" for key, value in config.items())
    (tmp_path / "pulumi").write_text(f'#!/bin/sh\ncase "$*" in\n{cases}  *) echo "error: configuration key not found" >&2; exit 255 ;;\nesac\n')
    (tmp_path / "pulumi").chmod(0o755)
    keys = tmp_path / "aws-watch-keys"
    done = subprocess.run([str(ROOT / ".ci" / "watch-keys"), "dev"], capture_output=True, text=True, timeout=30,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "AWS_SHARED_CREDENTIALS_FILE": str(keys)})
    return done, keys


def test_the_ci_job_hands_each_stores_watch_key_to_the_check_as_its_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """.ci/watch-keys with a stand-in `pulumi config get` that knows the target's watch key only (as a stack whose
    object store has none): one profile, named after its store as the check looks it up, readable by its owner only."""
    config = {"platform:backups.target.watchKey.accessKeyId": "dev-watch", "platform:backups.target.watchKey.secretAccessKey": "s3cr3t"}
    done, keys = watch_keys(tmp_path, config)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "watch key dev-watch for the backups store\n" and "s3cr3t" not in done.stdout + done.stderr
    assert keys.read_text() == "[backups]\naws_access_key_id = dev-watch\naws_secret_access_key = s3cr3t\n"
    assert keys.stat().st_mode & 0o077 == 0
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(keys))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/elsewhere")  # as in the job: the profile wins
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(tmp_path / "token"))
    import boto3

    target = backups.Expectation("w", "backups", "b", "https://s3.backups.example.com", "us-east-1", "p/", ".", "0 2 * * *")
    client = backups.store_client(target, boto3.Session().available_profiles)
    assert client.meta.endpoint_url == "https://s3.backups.example.com"
    assert client._request_signer._credentials.access_key == "dev-watch"
    other = backups.store_client(backups.Expectation(**{**target.__dict__, "store": "objectStore"}), boto3.Session().available_profiles)
    assert type(other._request_signer._credentials).__name__ == "DeferredRefreshableCredentials"  # the web identity's
