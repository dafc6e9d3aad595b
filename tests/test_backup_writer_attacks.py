"""An attacker's review of the backup writers' keys on kubeconfig stacks. Whoever takes over one writer (GitLab's
toolbox pod, which runs far more code than Vault's snapshot job) holds that writer's key. Were it another writer's
too, it could put a fresh-looking object under that writer's prefix, which keeps `platformctl backups check` green
while the real backups have stopped, or overwrite its latest backup where the target has no object lock. So every
writer holds a key that nothing else in the plan holds, and the target's administrator confines each key to its
writer's prefix (README: Backups and restore). Each test is one attempt: against the dev stack's session render,
the components under the mock engine (a target on the object store's endpoint), the stack file's config load, or
the policies the README hands the stores' administrators."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import pytest
from pulumi.runtime import rpc

from components.backups import WRITER_GRANTS, s3cmd_config, writer_key_policy
from components.common import ObjectStoreTarget
from components.gitlab import s3_connection
from components.velero import credentials_file
from platformctl.mocks import redact
from platformctl.stack_file import read_stack_file
from tests.test_aws_attacks import _allows, _objects
from tests.test_config import DEV, _problems, _write, deleting, setting
from tests.test_helm_render import pod_specs

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
        # Each database's archives: a database taken over must not reach the other's.
        "gitlab-data-backup-store": ("GitLab's database archives", barman),
        "harbor-data-backup-store": ("Harbor's database archives", barman),
        "dev-velero-s3": ("Velero on dev", lambda i, s: {"cloud": credentials_file(i, s)}),
        "prod-velero-s3": ("Velero on prod", lambda i, s: {"cloud": credentials_file(i, s)}),
        # On every node of prod, where tenants' code runs: never Velero's own key (tests/test_tenant_backups.py).
        "prod-velero-node-agent-s3": ("Velero's node agents on prod", lambda i, s: {"cloud": credentials_file(i, s)}),
        # The live data's key, which every GitLab pod and Harbor's registry hold: never a backup writer's.
        "gitlab-object-storage": ("GitLab's pods (live objects)", lambda i, s: {"connection": s3_connection(live(i), s)}),
        "harbor-registry-storage": ("Harbor's registry (live images)", lambda i, s: {
            "REGISTRY_STORAGE_S3_ACCESSKEY": i, "REGISTRY_STORAGE_S3_SECRETKEY": s}),
    }


def fingerprint(string_data: dict[str, str]) -> str:
    """The render's fingerprint of a Secret's stringData (a secret map), as platformctl.mocks makes it."""
    return redact(rpc.wrap_rpc_secret(string_data))[1][""]


def stack_config(config_file: Path) -> dict[str, Any]:
    return {key: json.loads(value) if value[:1] in "{[" else value for key, value in read_stack_file(config_file)[0].items()}


def held_keys(render: Any, config_file: Path) -> dict[str, tuple[str, str]]:
    """Secret name -> (who reads it, the config path of the key it holds), for each holder of the dev plan."""
    config, keys = stack_config(config_file), stack_keys(config_file)
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
    """The attack below is only as good as this: each listed holder is matched to exactly one key of the stack file
    (a holder whose format changed fails here), and no other Secret of the plan holds a key in any of these formats
    (a new holder fails here, not silently there)."""
    config_file = ROOT / "Pulumi.dev.yaml"
    found = held_keys(renders["dev"], config_file)
    assert found["gitlab-object-storage"][1] == found["harbor-registry-storage"][1] == "platform:objectStore"
    listed = holders(stack_config(config_file))
    known = {fingerprint(made_of(key_id, secret)) for _, made_of in listed.values() for key_id, secret in stack_keys(config_file).values()}
    unlisted = [r["name"] for r in renders["dev"].plan["resources"] if r["type"] == SECRET and r["name"] not in listed
                and renders["dev"].fingerprints.get(r["urn"], {}).get("stringData") in known]
    assert not unlisted, f"Secrets holding a key of the stack file, not reviewed here: {unlisted}"


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


def secrets_read(pod_spec: dict[str, Any]) -> set[str]:
    """Every Secret a pod spec reads, optional or not: volumes, projected sources, env and envFrom references."""
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            if key in ("secret", "secretKeyRef", "secretRef"):
                found.add(value.get("secretName") or value.get("name"))
            for child, item in value.items():
                walk(item, child)
        elif isinstance(value, list):
            for item in value:
                walk(item, key)

    walk(pod_spec)
    return found


def test_only_a_writers_own_pods_read_its_key(renders: dict) -> None:
    """What a pod taken over holds without any API access: the Secrets it mounts or takes into its environment.
    A writer's key is in its own pods only (CloudNativePG's instance pods, which the operator makes from the
    Cluster, read the archives' key: no pod template of the plan does), every workload declared or charted."""
    readers: dict[tuple[str, str], set[str]] = {
        ("vault", "platform-backup-s3"): set(), ("gitlab", "gitlab-backup-s3cfg"): set(),
        ("gitlab", "gitlab-backup-store"): set(), ("harbor", "harbor-backup-store"): set(),
    }
    for _, obj in _objects(renders["dev"].plan):
        namespace = obj["metadata"].get("namespace")
        for spec in pod_specs(obj):
            for secret in secrets_read(spec):
                readers.get((namespace, secret), set()).add(f"{obj['kind']} {obj['metadata']['name']}")
    assert readers == {
        ("vault", "platform-backup-s3"): {"CronJob vault-snapshot"},
        ("gitlab", "gitlab-backup-s3cfg"): {"CronJob gitlab-toolbox-backup", "Deployment gitlab-toolbox"},
        ("gitlab", "gitlab-backup-store"): set(), ("harbor", "harbor-backup-store"): set(),
    }

def test_on_the_object_stores_endpoint_the_registry_copy_and_backup_utility_hold_their_own_keys() -> None:
    """With the target on the object store's endpoint (no such stack file here: the components under the mock engine),
    Harbor's registry copy exists too: its job holds Harbor's writer key, backup-utility GitLab's, and the live data
    stays with the object store's key; no holder has two of them."""
    from components import gitlab as gitlab_component
    from tests.test_backups import _target_store, harbor_with_backups
    from tests.test_gitlab_harbor import OBJECT_STORE, _shared, run

    endpoint = OBJECT_STORE.endpoint

    def gitlab() -> None:
        s = _shared("gitlab", False)
        gitlab_component.GitLab("control-plane-gitlab", s["cluster"], gitlab_component.GitLabArgs(
            exposure=s["exposure"], oidc=s["oidc"], groups=s["groups"], cert_manager=s["cert_manager"],
            data_stores=s["data_stores"], backups=_target_store(endpoint),
        ))

    # Each key by its secret (tests/test_backups.py's writer keys, tests/test_gitlab_harbor.py's object store).
    keys = {**{writer: f"{writer}-secret" for writer in WRITER_GRANTS}, "live": "object-store-key"}
    held = {}
    for build in (lambda: harbor_with_backups(endpoint), gitlab):
        for r in run(build):
            if r["type"] == SECRET:
                text = json.dumps(r["raw"].get("stringData") or {})
                # "harbor-secret" is also the end of "postgres-harbor-secret".
                held[r["name"]] = sorted(owner for owner, secret in keys.items() if re.search(f"(?<!postgres-){secret}", text))
    assert held["backups-harbor-s3"] == ["harbor"] and held["control-plane-gitlab-backup-s3cfg"] == ["gitlab"]
    assert held["control-plane-gitlab-object-storage"] == held["control-plane-harbor-registry-storage"] == ["live"]
    assert all(len(owners) <= 1 for owners in held.values()), held


# --- the stack file: a key per writer, or nothing is registered (the config-load path, no render) ---------------

TARGET, STORE = ("platform:backups", "target"), ("platform:objectStore",)
KEY = {"accessKeyId": "another", "secretAccessKey": {"secure": "v1:another"}}
DRAGONFLY, ARCHIVES = ("platform:services", "dragonfly"), "platform:services.dragonfly.archiveKeys"


def dragonfly_on(**keys: Any) -> Callable[[dict], None]:
    """Dragonfly turned on (its kubeconfig clusters' archives), with `keys` over tests/test_dragonfly.py's archive keys
    (None: that cluster's key left out; a str: its access key id)."""
    from tests.test_dragonfly import ARCHIVE_KEYS

    archive_keys = {cluster: key if isinstance(key, dict) else {**ARCHIVE_KEYS[cluster], "accessKeyId": key}
                    for cluster, key in {**ARCHIVE_KEYS, **keys}.items() if key is not None}
    return setting(*DRAGONFLY, value={"enabled": True, "archiveKeys": archive_keys})


def both(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    return lambda doc: [mutate(doc) for mutate in mutations]


@pytest.mark.parametrize(("case", "mutate", "key", "words"), [
    ("the one shared key of old", setting(*TARGET, "accessKeyId", value="platform-dev-backups"), "platform:backups.target",
     "one key for every backup writer"),
    ("no key for Vault's snapshots", deleting(*TARGET, "writerKeys", "vault"), "platform:backups.target.writerKeys.vault",
     "required for Vault's snapshot job; allowed: a mapping with accessKeyId and secretAccessKey"),
    ("no key for GitLab's database archives", deleting(*STORE, "archiveKeys", "gitlab"), "platform:objectStore.archiveKeys.gitlab",
     "required for the archives of GitLab's PostgreSQL"),
    ("the one archive key of old", setting(*STORE, "writerKeys", value={"postgres": KEY}), "platform:objectStore",
     "one key for both databases' archives"),
    ("Harbor's database archives with GitLab's", setting(*STORE, "archiveKeys", "harbor", "accessKeyId", value="platform-dev-gitlab-archives"),
     "platform:objectStore.archiveKeys.harbor.accessKeyId", "the key of platform:objectStore.archiveKeys.gitlab"),
    ("Harbor's copy on the object store's endpoint", setting(*TARGET, "endpoint", value="https://minio.dev.platform.example.com"),
     "platform:backups.target.writerKeys.harbor", "required for Harbor's registry copy"),
    ("a key for a copy the stack does not make", setting(*TARGET, "writerKeys", "harbor", value=KEY),
     "platform:backups.target.writerKeys.harbor", "no such backup writer on this stack; allowed: unset"),
    ("GitLab with Vault's key", setting(*TARGET, "writerKeys", "gitlab", "accessKeyId", value="platform-dev-backups-vault"),
     "platform:backups.target.writerKeys.gitlab.accessKeyId",
     "the key of platform:backups.target.writerKeys.vault; allowed: a key of gitlab's own"),
    ("Vault with the object store's key", setting(*TARGET, "writerKeys", "vault", "accessKeyId", value="platform-dev"),
     "platform:backups.target.writerKeys.vault.accessKeyId", "the key of platform:objectStore; allowed: a key of vault's own"),
    ("the archives with GitLab's key", setting(*STORE, "archiveKeys", "gitlab", "accessKeyId", value="platform-dev-backups-gitlab"),
     "platform:backups.target.writerKeys.gitlab.accessKeyId", "the key of platform:objectStore.archiveKeys.gitlab"),
    ("Velero with GitLab's key", setting("platform:services", "velero", "targetKeys", "dev", "accessKeyId", value="platform-dev-backups-gitlab"),
     "platform:services.velero.targetKeys.dev.accessKeyId", "the key of platform:backups.target.writerKeys.gitlab"),
    ("a writer with the watch key", setting(*TARGET, "writerKeys", "vault", "accessKeyId", value="platform-dev-backups-watch"),
     "platform:backups.target.watchKey.accessKeyId", "the key of platform:backups.target.writerKeys.vault, which writes"),
    ("a writer's secret in plain text", setting(*TARGET, "writerKeys", "gitlab", "secretAccessKey", value="s3cr3t"),
     "platform:backups.target.writerKeys.gitlab.secretAccessKey", "holds a secret in plain text"),
    ("an s3cmd setting smuggled into GitLab's key id", setting(*TARGET, "writerKeys", "gitlab", "accessKeyId", value="id\nhost_base = evil.example"),
     "platform:backups.target.writerKeys.gitlab.accessKeyId", "allowed: printable ASCII without spaces"),
    ("Dragonfly's archives on dev without dev's own key", dragonfly_on(dev=None), f"{ARCHIVES}.dev",
     "required for the archives of Dragonfly's manager database on dev"),
    ("nor without backups, where the object store's key would go to the workload clusters",
     both(deleting("platform:backups"), dragonfly_on(prod=None)), f"{ARCHIVES}.prod", "never a key of the control plane's"),
    ("Dragonfly's archives on dev with the control plane's archive key", dragonfly_on(dev="platform-dev-harbor-archives"),
     f"{ARCHIVES}.dev.accessKeyId", "the key of platform:objectStore.archiveKeys.harbor; allowed: a key of dev's own"),
    ("Dragonfly's archives on dev with the object store's key", dragonfly_on(dev="platform-dev"),
     f"{ARCHIVES}.dev.accessKeyId", "the key of platform:objectStore; allowed"),
    ("prod's archives with dev's key", dragonfly_on(prod="platform-dev-dragonfly-dev-archives"),
     f"{ARCHIVES}.prod.accessKeyId", f"the key of {ARCHIVES}.dev"),
    ("Velero on dev with Dragonfly's key there", both(dragonfly_on(), setting(
        "platform:services", "velero", "targetKeys", "dev", "accessKeyId", value="platform-dev-dragonfly-dev-archives")),
     "platform:services.velero.targetKeys.dev.accessKeyId", f"the key of {ARCHIVES}.dev"),
    ("the watch key as Dragonfly's", dragonfly_on(prod="platform-dev-watch"),
     "platform:objectStore.watchKey.accessKeyId", f"the key of {ARCHIVES}.prod, which writes"),
    ("Dragonfly's secret in plain text", dragonfly_on(dev={"accessKeyId": "platform-dev-dragonfly-dev-archives", "secretAccessKey": "s3cr3t"}),
     f"{ARCHIVES}.dev.secretAccessKey", "holds a secret in plain text"),
    ("an archive key with Dragonfly off", setting(*DRAGONFLY, "archiveKeys", value={"dev": KEY}),
     f"{ARCHIVES}.dev", "no such backup writer on this stack; allowed: unset"),
    # Velero's key id goes into its AWS credentials file, where a line break would add settings (credential_process).
    ("a profile setting smuggled into Velero's key id",
     setting("platform:services", "velero", "targetKeys", "prod", "accessKeyId", value="id\ncredential_process = touch /tmp/x"),
     "platform:services.velero.targetKeys.prod.accessKeyId", "allowed: printable ASCII without spaces"),
    ("a line break in Dragonfly's key id", dragonfly_on(dev="id\nx"), f"{ARCHIVES}.dev.accessKeyId",
     "allowed: printable ASCII without spaces"),
])
def test_a_stack_without_a_key_of_each_writers_own_is_refused_naming_the_key(tmp_path: Path, case: str, mutate, key: str, words: str) -> None:
    lines = _problems(_write(tmp_path, DEV, mutate))
    assert any(f": {key}: " in line and words in line for line in lines), lines
    assert all("s3cr3t" not in line for line in lines)


# --- what the stores' administrators grant each key (README: Backups and restore) -----------------------------

TARGET_BUCKET, STORE_BUCKET = "platform-dev-backups", "platform-dev"  # Pulumi.dev.yaml's
# A backup each writer puts, as `platformctl backups check` finds it (tests/test_backup_watch.py's layouts).
NEWEST = {
    "vault": f"{TARGET_BUCKET}/vault/vault-20261207T041709Z.snap",
    "gitlab": f"{TARGET_BUCKET}/gitlab/1733540400_2026_12_07_18.6.1_gitlab_backup.tar",
    "harbor": f"{TARGET_BUCKET}/harbor/registry-synced",
    **{f"postgres-{service}": f"{STORE_BUCKET}/postgres/{service}/{service}-postgres-1a2b/base/20261207T030000/backup.info"
       for service in ("gitlab", "harbor")},
    **{f"dragonfly-{cluster}": f"{STORE_BUCKET}/postgres/{cluster}/dragonfly/dragonfly-postgres-3c4d/base/20261207T030000/backup.info"
       for cluster in ("dev", "prod")},
}


@pytest.mark.parametrize("writer", sorted(WRITER_GRANTS))
def test_each_writers_policy_puts_its_own_backups_and_nobody_elses(writer: str) -> None:
    """With every grant a key may get (the target on the object store's endpoint), a writer's key puts its own
    newest backup and can neither put nor delete another writer's, nor the other database's archives."""
    policy = writer_key_policy(writer, TARGET_BUCKET, STORE_BUCKET, on_store_endpoint=True)
    assert _allows(policy, "s3:PutObject", {}, f"arn:aws:s3:::{NEWEST[writer]}")
    for other, key in NEWEST.items():
        if other != writer:
            for action in ("s3:PutObject", "s3:DeleteObject"):
                assert not _allows(policy, action, {}, f"arn:aws:s3:::{key}"), (writer, action, key)
    assert not _allows(policy, "s3:PutObject", {}, f"arn:aws:s3:::{TARGET_BUCKET}/velero/dev/backups/payments-prod-20261207040000/x")
    assert json.dumps(policy).count("DeleteObjectVersion") == 0 and "PutObjectRetention" not in json.dumps(policy)


@pytest.mark.parametrize(("tag", "writer", "on_store_endpoint"), [
    ("vault", "vault", False), ("gitlab", "gitlab", False), ("postgres-gitlab", "postgres-gitlab", False),
    ("gitlab on the object store's endpoint", "gitlab", True), ("harbor", "harbor", True), ("dragonfly-dev", "dragonfly-dev", False),
])
def test_the_readme_gives_the_stores_administrators_each_writers_policy(tag: str, writer: str, on_store_endpoint: bool) -> None:
    raw = read_stack_file(ROOT / "Pulumi.dev.yaml")[0]
    assert (json.loads(raw["platform:backups"])["target"]["bucket"], json.loads(raw["platform:objectStore"])["bucket"]) == (
        TARGET_BUCKET, STORE_BUCKET)
    block = (ROOT / "README.md").read_text().split(f"<!-- backup writer policy: {tag} -->\n  ```json\n", 1)[1].split("```", 1)[0]
    assert json.loads(block) == writer_key_policy(writer, TARGET_BUCKET, STORE_BUCKET, on_store_endpoint)
