"""An attacker's review of the backups: who can delete, read or silently stop them. Each test is one attempt,
made against what the program really declares (the session renders), and must fail for the attacker.
The staleness check's own attacks (a failed Velero backup, a log without a backup) are in tests/test_backup_watch.py."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from components.aws import HISTORY_TAG, history_key_tags
from tests.test_aws_attacks import _allows, _listed, _of_type, _role_policies
from tests.test_eks_storage import named

# What destroys every backup a KMS key encrypts, or keeps everyone from it: deleting the key (after its
# window), disabling it, a key policy that locks the account out, and a change of the tag that marks it.
KEY_KILLERS = ("kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:TagResource", "kms:UntagResource")
# The keys the history cannot be read without: the backup bucket's, Vault's unseal key (its snapshots are
# restored only with it) and each data store's (RDS's and ElastiCache's storage and snapshots: the platform's,
# and Dragonfly's managers' on the workload clusters).
HISTORY_KEYS = ("backups", "control-plane-vault-unseal", "data-stores-key", "dev-dragonfly-stores-key", "prod-dragonfly-stores-key")


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
