"""A region's bad day takes no backup with it: on EKS each has a copy in `platform:backups.copyRegion`.

The backup bucket, its KMS key and the RDS instances' automated backups all live in the stack's region: a
region-wide outage (or a lost key there) takes the live data and its every backup at once. With a copy region,
S3 replicates the whole bucket into a bucket of the same locks and lifecycle under a key of that region, RDS
replicates each instance's automated backups there, `platformctl backups check` holds the copies to the same
schedules, and the watch role may list them. Velero's EBS snapshots of the tenants' volumes, which no bucket holds,
have daily copies of their own (Data Lifecycle Manager).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from platformctl import backups
from tests.test_backup_watch import put, run, s3, written  # noqa: F401 (s3: the fixture)
from tests.test_backups import by_name
from tests.test_config import DEV, PROD, _problems, _write, setting

COPY = "eu-central-1"  # Pulumi.prod.yaml
SOURCE = "eu-west-1"


def provider_region(plan: dict, resource: dict) -> str:
    [provider] = [r for r in plan["resources"] if r["urn"] == resource["provider"]]
    return provider["inputs"]["region"]


def test_every_prod_backup_has_a_copy_in_another_region(prod: dict) -> None:
    """The attack is the weather: on `main` every expectation of the prod stack was in eu-west-1 alone."""
    regions: dict[tuple[str, str], set[str]] = {}
    for entry in prod["outputs"]["backupExpectations"]:
        if entry["store"] != "ebs-copy":  # the volumes' copies: a writer of the copy region alone (below)
            regions.setdefault((entry["writer"], entry["prefix"]), set()).add(entry["region"])
    assert len(regions) >= 9 and {where: found for where, found in regions.items() if found != {SOURCE, COPY}} == {}
    stores = {(e["store"], e["region"]) for e in prod["outputs"]["backupExpectations"]}
    assert stores == {("backups", SOURCE), ("backups-copy", COPY), ("rds", SOURCE), ("rds-copy", COPY), ("ebs-copy", COPY)}


def test_the_volumes_of_each_cluster_region_are_snapshotted_daily_and_copied(prod: dict) -> None:
    """Velero's backups of the tenants' volumes are EBS snapshots, which S3's replication does not carry: Data Lifecycle
    Manager snapshots every EBS CSI volume of the clusters' region each day and copies it under the copy's key."""
    [policy] = [r for r in prod["resources"] if r["type"] == "aws:dlm/lifecyclePolicy:LifecyclePolicy"]  # both clusters: one region
    assert policy["name"] == f"backups-volumes-{SOURCE}" and provider_region(prod, policy) == SOURCE
    details = policy["inputs"]["policyDetails"]
    assert details["resourceTypes"] == ["VOLUME"] and details["targetTags"] == {"ebs.csi.aws.com/cluster": "true"}
    [schedule] = details["schedules"]
    assert schedule["createRule"] == {"interval": 24, "intervalUnit": "HOURS", "times": "01:30"}
    [copy] = schedule["crossRegionCopyRules"]
    assert copy["target"] == COPY and copy["encrypted"] is True and copy["copyTags"] is True
    assert copy["cmkArn"].startswith(f"arn:aws:kms:{COPY}:") and copy["retainRule"] == {"interval": 35, "intervalUnit": "DAYS"}
    assert schedule["tagsToAdd"] == {"platform.io/backup-copy": policy["name"]} and schedule["copyTags"] is True
    role = by_name(prod, "aws:iam/role:Role", policy["name"])
    assert json.loads(role["inputs"]["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "dlm.amazonaws.com"}
    granted = json.loads(by_name(prod, "aws:iam/rolePolicy:RolePolicy", policy["name"])["inputs"]["policy"])["Statement"]
    assert not [r for r in prod["resources"] if r["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
                and r["inputs"]["role"].startswith(policy["name"])]  # AWS's managed policy deletes any snapshot
    [delete] = [s for s in granted if "ec2:DeleteSnapshot" in s["Action"]]
    assert delete == {"Effect": "Allow", "Action": ["ec2:DeleteSnapshot"], "Resource": "*",
                      "Condition": {"StringEquals": {"aws:ResourceTag/platform.io/backup-copy": policy["name"]}}}
    [key] = [s for s in granted if s["Resource"] == copy["cmkArn"]]
    assert not [a for a in key["Action"] if not a.startswith("kms:")]
    assert not [s for s in granted if any(a.startswith("kms:") for a in s["Action"]) and s["Resource"] != copy["cmkArn"]]
    [entry] = [e for e in prod["outputs"]["backupExpectations"] if e["store"] == "ebs-copy"]
    assert (entry["bucket"], entry["prefix"], entry["region"], entry["schedule"]) == (
        policy["name"], "platform.io/backup-copy", COPY, "30 1 * * *")


def test_a_volume_copy_that_stopped_fails_the_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """moto's EC2: the copies are the completed snapshots of the copy region that carry the policy's tag."""
    from moto import mock_aws

    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "none"))
    expected = backups.Expectation(f"LifecyclePolicy backups-volumes-{SOURCE}", "ebs-copy", f"backups-volumes-{SOURCE}", None, COPY,
                                   "platform.io/backup-copy", "", "30 1 * * *")
    with mock_aws():
        stores, now = backups.Stores(), datetime.now(timezone.utc)
        ok, line = backups.judge(expected, stores.list, stores.read, now)
        assert not ok and line == (f"MISSING ebs-copy:{expected.bucket} ({expected.writer}): no completed snapshot copies; "
                                   "allowed 31.0 h (schedule '30 1 * * *')")
        ec2 = boto3.client("ec2", region_name=COPY)
        volume = ec2.create_volume(AvailabilityZone=f"{COPY}a", Size=1)["VolumeId"]
        for value, fresh in (("another-policy", False), (expected.bucket, True)):  # another policy's copy counts for nothing
            ec2.create_snapshot(VolumeId=volume, TagSpecifications=[
                {"ResourceType": "snapshot", "Tags": [{"Key": "platform.io/backup-copy", "Value": value}]}])
            assert backups.judge(expected, stores.list, stores.read, now + timedelta(hours=1))[0] is fresh
        ok, line = backups.judge(expected, stores.list, stores.read, now + timedelta(hours=40))
        assert not ok and line.startswith(f"STALE ebs-copy:{expected.bucket} ({expected.writer}): newest "), line


def test_the_copy_bucket_is_locked_encrypted_in_its_region_and_kept_as_long(prod: dict) -> None:
    bucket = by_name(prod, "aws:s3/bucket:Bucket", "backups-copy")
    assert bucket["inputs"]["bucket"] == f"platform-example-com-backups-{COPY}" and bucket["inputs"]["objectLockEnabled"] is True
    assert bucket["options"]["protect"] is True and provider_region(prod, bucket) == COPY
    key = by_name(prod, "aws:kms/key:Key", "backups-copy")
    assert key["options"]["protect"] is True and key["inputs"]["enableKeyRotation"] is True and provider_region(prod, key) == COPY
    assert key["inputs"]["tags"]["platform.io/keeps-history"] == "true"  # the deploy role may not delete or disable it
    for kind in ("bucketObjectLockConfiguration:BucketObjectLockConfiguration", "bucketLifecycleConfiguration:BucketLifecycleConfiguration",
                 "bucketPublicAccessBlock:BucketPublicAccessBlock", "bucketPolicy:BucketPolicy"):
        source, copy = by_name(prod, f"aws:s3/{kind}", "backups"), by_name(prod, f"aws:s3/{kind}", "backups-copy")
        same = {k: v for k, v in source["inputs"].items() if k != "bucket"}
        assert {k: v for k, v in copy["inputs"].items() if k != "bucket"} == same or kind.startswith("bucketPolicy"), kind
        assert provider_region(prod, copy) == COPY
    policy = json.loads(by_name(prod, "aws:s3/bucketPolicy:BucketPolicy", "backups-copy")["inputs"]["policy"])
    assert f"platform-example-com-backups-{COPY}" in json.dumps(policy) and "aws:SecureTransport" in json.dumps(policy)


def test_s3_replicates_the_whole_bucket_its_deletions_as_markers_and_its_encrypted_objects(prod: dict) -> None:
    config = by_name(prod, "aws:s3/bucketReplicationConfig:BucketReplicationConfig", "backups")
    assert provider_region(prod, config) == SOURCE
    [rule] = config["inputs"]["rules"]
    assert rule["status"] == "Enabled" and rule["filter"] == {"prefix": ""}
    # A deletion arrives as a marker: the copy's locked versions stay, and expire with the source's lifecycle.
    assert rule["deleteMarkerReplication"] == {"status": "Enabled"}
    assert rule["sourceSelectionCriteria"]["sseKmsEncryptedObjects"] == {"status": "Enabled"}  # else KMS objects stay behind
    destination = rule["destination"]
    assert destination["bucket"] == f"arn:aws:s3:::platform-example-com-backups-{COPY}"
    assert destination["encryptionConfiguration"]["replicaKmsKeyId"].startswith(f"arn:aws:kms:{COPY}:")
    role = by_name(prod, "aws:iam/role:Role", "backups-replication")
    assert config["inputs"]["role"].startswith("arn:aws:iam::123456789012:role/backups-replication-")  # the mock's name for it
    assert json.loads(role["inputs"]["assumeRolePolicy"])["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_the_replication_role_reads_the_source_writes_the_copy_and_unlocks_nothing(prod: dict) -> None:
    granted = json.loads(by_name(prod, "aws:iam/rolePolicy:RolePolicy", "backups-replication")["inputs"]["policy"])["Statement"]
    source, copy = "arn:aws:s3:::platform-example-com-backups", f"arn:aws:s3:::platform-example-com-backups-{COPY}"
    actions = {(a, s["Resource"] if isinstance(s["Resource"], str) else tuple(s["Resource"])) for s in granted for a in s["Action"]}
    on_s3 = {(a, r) for a, r in actions if a.startswith("s3:")}
    assert on_s3 == {
        ("s3:GetReplicationConfiguration", source), ("s3:ListBucket", source),
        *((a, f"{source}/*") for a in ("s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
                                        "s3:GetObjectRetention", "s3:GetObjectLegalHold")),
        *((a, f"{copy}/*") for a in ("s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags")),
    }
    kms = {s["Action"][0]: s for s in granted if s["Action"][0].startswith("kms:")}
    assert set(kms) == {"kms:Decrypt", "kms:Encrypt"}
    assert kms["kms:Decrypt"]["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{SOURCE}.amazonaws.com"
    assert kms["kms:Encrypt"]["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{COPY}.amazonaws.com"
    assert kms["kms:Encrypt"]["Resource"].startswith(f"arn:aws:kms:{COPY}:")


def test_each_rds_instance_replicates_its_automated_backups_to_the_copy_region(prod: dict) -> None:
    instances = {r["name"]: r for r in prod["resources"] if r["type"] == "aws:rds/instance:Instance"}
    copies = {r["name"]: r for r in prod["resources"] if r["type"] == "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication"}
    assert len(instances) == 4 and set(copies) == {f"{name}-copy" for name in instances}
    for name, instance in instances.items():
        copy = copies[f"{name}-copy"]
        assert provider_region(prod, copy) == COPY and copy["options"]["protect"] is True
        assert copy["inputs"]["sourceDbInstanceArn"] == f"arn:aws:rds:{SOURCE}:123456789012:db:{name}-" + \
            copy["inputs"]["sourceDbInstanceArn"].rsplit("-", 1)[1]  # the mock's generated identifier
        assert copy["inputs"]["retentionPeriod"] == instance["inputs"]["backupRetentionPeriod"]
        assert copy["inputs"]["kmsKeyId"].startswith(f"arn:aws:kms:{COPY}:")  # the instances are encrypted


def test_the_watch_role_lists_the_copies_too(prod: dict) -> None:
    granted = json.loads(by_name(prod, "aws:iam/rolePolicy:RolePolicy", "platform-pipeline-backup-watch")["inputs"]["policy"])["Statement"]
    text = json.dumps(granted)
    assert f'"arn:aws:s3:::platform-example-com-backups-{COPY}"' in text and f"s3.{COPY}.amazonaws.com" in text
    assert "rds:DescribeDBInstanceAutomatedBackups" in text
    assert not [a for s in granted for a in s["Action"] if a.startswith("s3:") and a not in ("s3:ListBucket", "s3:GetObject")]


def test_the_s3_copies_are_checked_like_the_backups_and_a_stopped_replication_fails(
    prod: dict, s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str],  # noqa: F811 (the fixture imported above)
) -> None:
    """moto's S3: the copy bucket's objects are listed (and Velero's outcomes read) exactly as the source's. Replication
    that stopped (its role or key policy broken, the configuration deleted) leaves the copy behind: stale lines."""
    copies = [e for e in prod["outputs"]["backupExpectations"] if e["store"] == "backups-copy"]
    assert {(e["bucket"], e["region"], e["endpoint"]) for e in copies} == {(f"platform-example-com-backups-{COPY}", COPY, None)}
    assert len(copies) == len([e for e in prod["outputs"]["backupExpectations"] if e["store"] == "backups"]) == 5
    for entry in copies:
        put(s3, entry, written(entry))
    assert run("prod", {"backupExpectations": copies}, tmp_path) == 0
    assert "5 of 5 backups of stack prod fresh" in capsys.readouterr().out
    later = datetime.now(timezone.utc) + timedelta(days=2)
    assert run("prod", {"backupExpectations": copies}, tmp_path, later) == 1
    stale = [line for line in capsys.readouterr().out.splitlines() if line.startswith("STALE")]
    assert len(stale) == 5 and all(line.startswith(f"STALE s3://platform-example-com-backups-{COPY}/") for line in stale), stale


def test_a_copy_whose_replication_stopped_fails_the_check() -> None:
    """RDS's replicated automated backups, described in the copy region through botocore's own model (Stubber checks
    the request and the response against it): the newest restorable time of the copy is held to its schedule."""
    now = datetime(2026, 12, 8, 12, 0, tzinfo=timezone.utc)
    expected = backups.Expectation("DBInstance gitlab-data-postgres", "rds-copy", "gitlab-data-postgres-7f3a2c1", None, COPY, "", "",
                                   "*/5 * * * *")
    client = boto3.client("rds", region_name=COPY, aws_access_key_id="x", aws_secret_access_key="x")
    stores = backups.Stores()
    stores._clients[(expected.store, None, COPY)] = client

    def answer(latest: datetime | None) -> None:
        window = {"RestoreWindow": {"EarliestTime": now - timedelta(days=7), "LatestTime": latest}} if latest else {}
        stubber.add_response("describe_db_instance_automated_backups", {"DBInstanceAutomatedBackups": [
            {"DBInstanceIdentifier": expected.bucket, "Region": SOURCE, "Status": "replicating", "BackupRetentionPeriod": 35, **window}]},
            {"DBInstanceIdentifier": expected.bucket})

    with Stubber(client) as stubber:
        answer(now - timedelta(minutes=20))
        assert backups.judge(expected, stores.list, stores.read, now)[0] is True
        answer(now - timedelta(hours=9))
        ok, line = backups.judge(expected, stores.list, stores.read, now)
        assert not ok and line.startswith(f"STALE rds-copy:{expected.bucket} ({expected.writer}): newest ")
        answer(None)
        ok, line = backups.judge(expected, stores.list, stores.read, now)
        assert not ok and line.startswith(f"MISSING rds-copy:{expected.bucket} ({expected.writer}): no replicated automated backups")


@pytest.mark.parametrize(("case", "base", "mutate", "stack", "key", "words"), [
    ("a copy on a kubeconfig stack", DEV, setting("platform:backups", "copyRegion", value=COPY), "dev",
     "platform:backups.copyRegion", "only on an EKS control plane"),
    ("a copy in the stack's own region", PROD, setting("platform:backups", "copyRegion", value=SOURCE), "prod",
     "platform:backups.copyRegion", "another region than"),
    ("not a region", PROD, setting("platform:backups", "copyRegion", value="Frankfurt"), "prod",
     "platform:backups.copyRegion", "an AWS region"),
])
def test_bad_copy_config_names_the_key(tmp_path: Path, case: str, base: dict, mutate: Any, stack: str, key: str, words: str) -> None:
    lines = _problems(_write(tmp_path, base, mutate), stack)
    assert any(f": {key}:" in line and words in line for line in lines), lines
