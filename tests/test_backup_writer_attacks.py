"""An attacker's review of the backup writers' keys on kubeconfig stacks. Whoever takes over one writer (GitLab's
toolbox pod, which runs far more code than Vault's snapshot job) holds that writer's key. Were it another writer's
too, it could put a fresh-looking object under that writer's prefix, which keeps `platformctl backups check` green
while the real backups have stopped, or overwrite its latest backup where the target has no object lock. So every
writer holds a key that nothing else in the plan holds, and the target's administrator confines each key to its
writer's prefix (README: Backups and restore). Each test is one attempt against the dev stack's session render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from pulumi.runtime import rpc

from components.backups import s3cmd_config
from components.common import ObjectStoreTarget
from components.gitlab import s3_connection
from components.velero import credentials_file
from platformctl.mocks import redact
from platformctl.stack_file import read_stack_file

ROOT = Path(__file__).resolve().parent.parent
SECRET = "kubernetes:core/v1:Secret"


def stack_keys(path: Path) -> dict[str, tuple[str, str]]:
    """Config path -> (access key id, the secret as the render sees it) of every S3 key in the stack file."""
    found: dict[str, tuple[str, str]] = {}

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            if "accessKeyId" in value and "secretAccessKey" in value:
                found[where] = (value["accessKeyId"], value["secretAccessKey"])
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")

    raw, _ = read_stack_file(path)
    for key, text in raw.items():
        try:
            walk(json.loads(text), key)
        except ValueError:
            continue  # a plain string: no key in it
    return found


def holders(config: dict[str, Any]) -> dict[str, tuple[str, Callable[[str, str], dict[str, str]]]]:
    """Each Secret of the dev plan that holds an S3 key -> (who reads it, its stringData made of a key), in the
    format its reader takes: the env of an aws-cli step, s3cmd's configuration, CloudNativePG's keys, Velero's AWS
    credentials file, GitLab's object-storage connection, the registry's storage settings."""
    target, store = config["platform:backups"]["target"], config["platform:objectStore"]
    host = urlparse(target["endpoint"]).netloc
    region = target.get("region", "us-east-1")

    def env(key_id: str, secret: str) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def barman(key_id: str, secret: str) -> dict[str, str]:
        return {"ACCESS_KEY_ID": key_id, "ACCESS_SECRET_KEY": secret}

    def live(key_id: str) -> ObjectStoreTarget:
        return ObjectStoreTarget(store["endpoint"], store.get("region", "us-east-1"), store["bucket"], key_id, "")

    return {
        "backups-vault-s3": ("Vault's snapshot job", env),
        "gitlab-backup-s3cfg": ("GitLab's backup-utility", lambda i, s: {"config": s3cmd_config(region, host, host, (i, s))}),
        "gitlab-data-backup-store": ("the PostgreSQL archives", barman),
        "harbor-data-backup-store": ("the PostgreSQL archives", barman),
        "dev-velero-s3": ("Velero on dev", lambda i, s: {"cloud": credentials_file(i, s)}),
        "prod-velero-s3": ("Velero on prod", lambda i, s: {"cloud": credentials_file(i, s)}),
        # The live data's key, which every GitLab pod and Harbor's registry hold: never a backup writer's.
        "gitlab-object-storage": ("GitLab's pods (live objects)", lambda i, s: {"connection": s3_connection(live(i), s)}),
        "harbor-registry-storage": ("Harbor's registry (live images)", lambda i, s: {
            "REGISTRY_STORAGE_S3_ACCESSKEY": i, "REGISTRY_STORAGE_S3_SECRETKEY": s}),
    }


def fingerprint(string_data: dict[str, str]) -> str:
    """The render's fingerprint of a Secret's stringData (a secret map), as platformctl.mocks makes it."""
    return redact(rpc.wrap_rpc_secret(string_data))[1][""]


def held_keys(render: Any, config_file: Path) -> dict[str, tuple[str, str]]:
    """Secret name -> (who reads it, the config path of the key it holds), for each holder of the dev plan."""
    config = {key: json.loads(value) if value[:1] in "{[" else value for key, value in read_stack_file(config_file)[0].items()}
    keys = stack_keys(config_file)
    secrets = {r["name"]: r for r in render.plan["resources"] if r["type"] == SECRET and r["cluster"] is not None}
    found = {}
    for name, (reader, made_of) in holders(config).items():
        assert name in secrets, f"no Secret {name} in the dev plan: the holders changed, review them"
        printed = render.fingerprints[secrets[name]["urn"]]["stringData"]
        matches = [path for path, (key_id, secret) in keys.items() if fingerprint(made_of(key_id, secret)) == printed]
        assert len(matches) == 1, f"Secret {name} ({reader}) holds {matches or 'no key of the stack file'}"
        found[name] = (reader, matches[0])
    return found


def test_every_key_holder_of_the_dev_plan_is_identified(renders: dict) -> None:
    """The attack below is only as good as this: each Secret that carries an S3 key is matched to exactly one key of
    the stack file (a new format or a new holder fails here, not silently there)."""
    found = held_keys(renders["dev"], ROOT / "Pulumi.dev.yaml")
    assert found["gitlab-object-storage"][1] == found["harbor-registry-storage"][1] == "platform:objectStore"


def test_a_taken_over_backup_writer_holds_no_key_of_another_writer(renders: dict) -> None:
    """Each backup writer's key is held by that writer alone: not by another writer, not by GitLab's or Harbor's
    pods through the live data's key, so a takeover of any of them cannot write under another writer's prefix."""
    found = held_keys(renders["dev"], ROOT / "Pulumi.dev.yaml")
    shared = []
    for name, (reader, key) in found.items():
        others = sorted({f"{other} ({who})" for other, (who, held) in found.items() if held == key and who != reader})
        if reader.startswith(("GitLab's pods", "Harbor's registry")):
            continue  # the live data's holders: their key must only not be a writer's (checked from the writer's side)
        if others:
            shared.append(f"{name} ({reader}) holds {key}, which {', '.join(others)} also hold")
    assert not shared, "\n".join(shared)
