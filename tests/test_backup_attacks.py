"""An attacker's review of the backups: who can delete, read or silently stop them. Each test is one attempt,
made against what the program really declares (the session renders), and must fail for the attacker.
The staleness check's own attacks (a failed Velero backup, a log without a backup) are in tests/test_backup_watch.py."""

from __future__ import annotations

import contextlib
import fnmatch
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from components.aws import HISTORY_TAG, history_key_tags
from tests.test_aws_attacks import _allows, _listed, _of_type, _role_policies
from tests.test_backup_watch import barman_backup_info, velero_backup_json, watch_keys, written
from tests.test_eks_storage import named

# What destroys every backup a KMS key encrypts, or keeps everyone from it: deleting the key (after its
# window), disabling it, a key policy that locks the account out, and a change of the tag that marks it.
KEY_KILLERS = ("kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:TagResource", "kms:UntagResource")
# The keys the history cannot be read without: the backup bucket's, Vault's unseal key (its snapshots are
# restored only with it) and each data store's (RDS's and ElastiCache's storage and snapshots: the platform's,
# and Dragonfly's managers' on the workload clusters).
HISTORY_KEYS = ("backups", "backups-copy", "control-plane-vault-unseal", "data-stores-key", "dev-dragonfly-stores-key",
                "prod-dragonfly-stores-key")


def _denied(policies: list[dict[str, Any]], action: str, tags: dict[str, str]) -> bool:
    """Whether an explicit Deny of `policies` refuses `action` on a KMS key with `tags` (Resource "*", and at
    most a StringEquals on the key's tags: any other condition fails the test rather than be guessed)."""
    for statement in (s for p in policies for s in p["Statement"]):
        if statement["Effect"] != "Deny" or not any(fnmatch.fnmatchcase(action, a) for a in _listed(statement["Action"])):
            continue
        assert statement["Resource"] == "*" and set(statement.get("Condition", {})) <= {"StringEquals"}, statement
        wanted = statement.get("Condition", {}).get("StringEquals", {})
        assert all(key.startswith("aws:ResourceTag/") for key in wanted), statement
        if all(tags.get(key.removeprefix("aws:ResourceTag/")) == value for key, value in wanted.items()):
            return True
    return False


def test_a_hijacked_deploy_cannot_delete_disable_or_lock_out_the_keys_that_decrypt_the_history(prod: dict[str, Any]) -> None:
    """The deploy role (AdministratorAccess, on main) is denied lifting the bucket's lock, but the bucket's
    objects are encrypted with a KMS key of the program's: kms:ScheduleKeyDeletion (7 to 30 days' notice),
    kms:DisableKey or a kms:PutKeyPolicy that drops the account makes every locked backup unreadable at once,
    and Vault's snapshots are restored only with Vault's unseal key. Every run of the program leaves these
    keys alone on a protected stack (Pulumi refuses to delete them), so the role is denied all of it there."""
    deploy = _role_policies(prod, named(prod, "platform-pipeline-deploy", "aws:iam/role:Role"))
    keys = {k["name"]: k["inputs"].get("tags") or {} for k in _of_type(prod, "aws:kms/key:Key")}
    assert set(HISTORY_KEYS) == set(keys)
    for name, tags in keys.items():
        for action in KEY_KILLERS:
            assert _allows(deploy[0], action, {}), action  # AdministratorAccess: only a Deny can stop it
            assert _denied(deploy, action, tags) == (name in HISTORY_KEYS), (name, action)


def test_the_keys_of_the_history_are_marked_only_on_a_protected_stack(renders: dict) -> None:
    """The mark is what the Deny reads: the protected prod stack's history keys carry it, and nothing else in either
    plan does; an unprotected stack's keys are not marked, so its destroy still deletes them."""
    assert history_key_tags(False) == {} and history_key_tags(True) == {HISTORY_TAG: "true"}
    for stack, plan in ((name, render.plan) for name, render in renders.items()):
        marked = sorted(k["name"] for k in _of_type(plan, "aws:kms/key:Key")
                        if (k["inputs"].get("tags") or {}).get("platform.io/keeps-history") == "true")
        assert marked == (sorted(HISTORY_KEYS) if stack == "prod" else []), stack
        assert json.dumps(plan).count("platform.io/keeps-history") == (len(HISTORY_KEYS) + 1 if stack == "prod" else 0), stack  # the Deny


# --- the backups schedule's watch keys (.ci/watch-keys) -----------------------------------------------------------


@pytest.mark.parametrize("field", ["accessKeyId", "secretAccessKey"])
def test_a_watch_key_cannot_smuggle_a_command_into_the_backups_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, field: str) -> None:
    """The job writes each watch key into an AWS credentials file, which botocore reads as INI: a value with a
    line break adds settings to the profile, and `credential_process` is a command botocore runs for credentials.
    The secret is ciphertext in the stack file (a "rotation" nobody can read in review), and the job runs on the
    protected runner with the preview team's Pulumi token, which decrypts every secret of the stacks."""
    proof = tmp_path / "ran"
    # The profile assumes a role with the credentials of a profile of the value's own, which runs the command.
    smuggled = f"x\nrole_arn = arn:aws:iam::123456789012:role/any\nsource_profile = next\n[next]\ncredential_process = touch {proof}"
    key = {"accessKeyId": "dev-watch", "secretAccessKey": "s3cr3t", field: smuggled}
    done, keys = watch_keys(tmp_path, {f"platform:backups.target.watchKey.{name}": value for name, value in key.items()})
    assert done.returncode != 0 and "platform:backups.target.watchKey" in done.stderr and "s3cr3t" not in done.stdout + done.stderr
    written = keys.read_text() if keys.exists() else ""
    assert "credential_process" not in written and "source_profile" not in written
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(keys))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    import boto3
    from botocore.exceptions import BotoCoreError

    with contextlib.suppress(BotoCoreError, ValueError):  # the stand-in command prints no credentials
        boto3.Session(profile_name="backups").get_credentials()
    assert not proof.exists(), "botocore ran the command the watch key carried"


def test_a_plain_watch_key_still_becomes_its_stores_profile(tmp_path: Path) -> None:
    """What the refusal leaves: AWS's and MinIO's key ids and secrets (letters, digits, + / = . _ -)."""
    done, keys = watch_keys(tmp_path, {"platform:objectStore.watchKey.accessKeyId": "AKIA0123456789ABCDEF",
                                        "platform:objectStore.watchKey.secretAccessKey": "wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY"})
    assert done.returncode == 0, done.stderr
    assert keys.read_text() == ("[objectStore]\naws_access_key_id = AKIA0123456789ABCDEF\n"
                                "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCY=EXAMPLEKEY\n")


def test_a_watch_key_id_with_a_line_break_is_refused_by_the_stack_file_naming_it(tmp_path: Path) -> None:
    """The key id is plain text in the stack file: refused there, before any job writes it."""
    from tests.test_config import DEV, _problems, _write, setting

    lines = _problems(_write(tmp_path, DEV, setting("platform:backups", "target", "watchKey", "accessKeyId",
                                                    value="dev-watch\nrole_arn = arn:aws:iam::123456789012:role/any")))
    assert any(": platform:backups.target.watchKey.accessKeyId: " in line and "allowed: printable ASCII without spaces" in line
               for line in lines), lines


# --- the staleness check (platformctl/backups.py) --------------------------------------------------------------


def test_an_object_dated_in_the_future_fails_the_check_instead_of_keeping_a_stopped_backup_fresh(renders: dict, tmp_path: Path,
                                                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The check trusts the store's LastModified and its runner's clock. An object dated ahead of the check (a target
    whose clock runs ahead, a runner whose clock lags, or anyone who may set an object's time on an S3-compatible
    store, such as a replication key) would be the newest for as long as that date is ahead: the writer could stop
    for a month and every check pass. Every other object is fresh here; the one from the future must fail."""
    from platformctl import backups

    entries = renders["dev"].plan["outputs"]["backupExpectations"]
    now = datetime.now(timezone.utc)
    [vault] = [e for e in entries if e["writer"] == "CronJob vault/vault-snapshot"]
    keys = {e["writer"]: e["prefix"] + written(e) for e in entries}

    def listing(expected: backups.Expectation) -> list[dict[str, Any]]:
        ahead = timedelta(days=30) if expected.writer == vault["writer"] else timedelta(0)
        return [{"Key": keys[expected.writer], "LastModified": now - timedelta(hours=1) + ahead}]

    def read(expected: backups.Expectation, key: str) -> bytes:
        return (barman_backup_info if expected.outcome == "barman" else velero_backup_json)(key, "Completed")

    found = backups.expectations({"backupExpectations": entries}, "dev")
    problems, fresh = backups.check(found, listing, now, read)
    assert len(fresh) == len(entries) - 1
    assert problems == [f"FUTURE s3://{vault['bucket']}/vault/ (CronJob vault/vault-snapshot): newest "
                        f"{(now + timedelta(days=30, hours=-1)):%Y-%m-%dT%H:%M:%SZ} is 719.0 h ahead of this check's clock, more "
                        f"than 0.2 h: the store's or the runner's clock is wrong, or the object's time was set"]
