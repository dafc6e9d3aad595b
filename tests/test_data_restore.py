"""A rebuilt stack starts GitLab's and Harbor's databases from their backups
(`platform:services.dataStores.restore`), on the plans of both stacks with the key set.

Prod (EKS): each RDS instance is a point-in-time restore of the old instance's retained automated
backups (or of an instance that still exists). Dev (kubeconfig): each CloudNativePG cluster recovers
from the old cluster's object-store backups and archives to a folder of its own. Nothing else in
the plan changes, and the key can go once the databases exist: what it sets is ignored after
creation, so the engine sees no change and replaces nothing.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pulumi_aws as aws
import pytest
import yaml

from platformctl.mocks import REDACTED
from platformctl.render import ROOT, Render, render
from tests.test_config import DEV, PROD, setting
from tests.test_config import test_bad_config_names_key_and_file as names_key_and_file
from tests.test_config import test_bad_stack_files_through_the_render_command as refused_by_render
from tests.validation import custom_resource_errors

SERVICES = ("gitlab", "harbor")
RDS, CNPG = "aws:rds/instance:Instance", "kubernetes:postgresql.cnpg.io/v1:Cluster"
DS = "platform:services"
ARN = "arn:aws:rds:eu-west-1:123456789012:auto-backup:ab-abcdefghijklmnopqrstuvwxyz0123456789"
# Prod: GitLab from a deleted instance's retained backups at a time (given with an offset), Harbor
# from an instance that still exists at the latest restorable time.
PROD_RESTORE = {"gitlab": {"source": ARN, "time": "2026-12-06T23:00:00+01:00"}, "harbor": {"source": "harbor-data-postgres-1a2b3c4"}}
# Dev: GitLab from a folder of an earlier life of the stack, Harbor from the folder clusters archived to
# before folders carried the stack's id (the Cluster's name).
DEV_RESTORE = {"gitlab": {"source": "gitlab-postgres-0a1b2c3d", "time": "2026-12-06T23:00:00Z"}, "harbor": {"source": "harbor-postgres"}}


def _variant(tmp: Path, name: str, stack: str, **data_stores: Any) -> dict:
    """The plan of `stack`'s file with `data_stores` added to platform:services.dataStores (no chart renders)."""
    doc = copy.deepcopy(PROD if stack == "prod" else DEV)
    doc["config"][DS]["dataStores"].update(data_stores)
    path = tmp / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return render(path, stack).plan


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Both stacks' plans with the key set."""
    tmp = tmp_path_factory.mktemp("restore")
    return {"prod": _variant(tmp, "prod", "prod", restore=PROD_RESTORE), "dev": _variant(tmp, "dev", "dev", restore=DEV_RESTORE)}


def _by_urn(plan: dict) -> dict[str, dict]:
    return {r["urn"]: r for r in plan["resources"]}


def _databases(plan: dict, rtype: str) -> dict[str, dict]:
    return {r["name"]: r for r in plan["resources"] if r["type"] == rtype and r["name"] in {f"{s}-data-postgres" for s in SERVICES}}


def _paths(a: Any, b: Any, prefix: str = "") -> set[str]:
    """The dotted paths where `a` and `b` differ (down to the first key whose values differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {p for key in a.keys() | b.keys() for p in _paths(a.get(key), b.get(key), f"{prefix}{key}.")}
    return set() if a == b else {prefix.removesuffix(".")}


def _under(paths: set[str], prefixes: set[str]) -> bool:
    """Whether each path is one of `prefixes` or inside one (as ignoreChanges reads them)."""
    return all(any(p == q or p.startswith(f"{q}.") for q in prefixes) for p in paths)


WHAT_THE_ENGINE_COMPARES = ("type", "parent", "provider", "dependsOn", "options", "inputs", "secretPaths")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_key_changes_only_the_database_resources(renders: dict[str, Render], variants: dict[str, dict], stack: str) -> None:
    """Names, secrets and wiring stay: the same resources, the same Secrets the charts read, the
    same credential inventory; only the two database resources' inputs differ."""
    base, restored = _by_urn(renders[stack].plan), _by_urn(variants[stack])
    assert base.keys() == restored.keys()
    changed = {restored[urn]["name"]: _paths(base[urn]["inputs"], restored[urn]["inputs"])
               for urn in base if any(base[urn][k] != restored[urn][k] for k in WHAT_THE_ENGINE_COMPARES)}
    assert changed.keys() == {f"{s}-data-postgres" for s in SERVICES}, changed
    assert renders[stack].plan["outputs"] == variants[stack]["outputs"]
    expected = {"restoreToPointInTime"} if stack == "prod" else {"spec.bootstrap", "spec.externalClusters"}
    assert all(paths and _under(paths, expected) for paths in changed.values()), changed


def test_rds_instances_are_point_in_time_restores_of_the_old_backups(variants: dict[str, dict]) -> None:
    """pulumi-aws's InstanceRestoreToPointInTimeArgs: one source, and a UTC time or the latest
    restorable time (never both). RDS's restore call takes no password: the provider sets the
    password input right after (ModifyDBInstance), so the generated one, a secret, is the one the
    chart's Secret holds. The KMS key is the old instance's (RDS takes none on a restore)."""
    fields = {getattr(p.fget, "_pulumi_name") for p in vars(aws.rds.InstanceRestoreToPointInTimeArgs).values() if isinstance(p, property)}
    instances = _databases(variants["prod"], RDS)
    for service, wanted in PROD_RESTORE.items():
        rds = instances[f"{service}-data-postgres"]
        restore = rds["inputs"]["restoreToPointInTime"]
        assert restore.keys() <= fields
        sources = [k for k in ("sourceDbInstanceAutomatedBackupsArn", "sourceDbInstanceIdentifier", "sourceDbiResourceId") if k in restore]
        assert [restore[k] for k in sources] == [wanted["source"]]
        assert ("restoreTime" in restore) != ("useLatestRestorableTime" in restore)
        if "restoreTime" in restore:
            assert restore["restoreTime"].endswith("Z")
            assert datetime.fromisoformat(restore["restoreTime"]) == datetime.fromisoformat(wanted["time"])
        assert rds["inputs"]["password"] == REDACTED and "password" in rds["secretPaths"]
        assert rds["inputs"]["username"] == rds["inputs"]["dbName"] == service
        assert rds["inputs"]["deleteAutomatedBackups"] is False and rds["options"]["protect"] is True


def test_cloudnativepg_clusters_recover_from_the_old_clusters_backups(variants: dict[str, dict]) -> None:
    """Valid for CloudNativePG's own CRD schema and its webhook's recovery rules: the recovery's
    source is an external cluster with an object store; it reads the folder the old cluster archived
    to (same bucket path), and the new cluster archives to another, as the operator's empty-archive
    check demands. The owner's password is the Secret's (the generated one) after the recovery."""
    clusters = _databases(variants["dev"], CNPG)
    for service, wanted in DEV_RESTORE.items():
        cluster = clusters[f"{service}-data-postgres"]
        assert custom_resource_errors(cluster["inputs"]) == []
        spec = cluster["inputs"]["spec"]
        recovery, (external,) = spec["bootstrap"]["recovery"], spec["externalClusters"]
        assert "initdb" not in spec["bootstrap"] and recovery["source"] == external["name"]
        assert recovery["owner"] == recovery["database"] == service and recovery["secret"] == {"name": f"{service}-postgres"}
        own, old = spec["backup"]["barmanObjectStore"], external["barmanObjectStore"]
        assert old["destinationPath"] == own["destinationPath"] and old["s3Credentials"] == own["s3Credentials"]
        assert old["serverName"] == wanted["source"] != own["serverName"]
        assert recovery.get("recoveryTarget") == ({"targetTime": wanted["time"]} if "time" in wanted else None)


def test_removing_the_key_afterwards_changes_nothing_the_engine_applies(renders: dict[str, Render], variants: dict[str, dict]) -> None:
    """Both read the restore only when they create the database. The Terraform provider behind
    pulumi-aws makes `restore_to_point_in_time` ForceNew (and `kms_key_id`: a restored instance keeps
    the old key), so removing the key would replace the restored instance; CloudNativePG's webhook
    accepts a changed bootstrap but never applies it. Every input the key changes is in the
    resource's ignoreChanges, which the engine fills from the state: no diff, no replacement."""
    for stack, rtype in (("prod", RDS), ("dev", CNPG)):
        for name, resource in _databases(variants[stack], rtype).items():
            without = _by_urn(renders[stack].plan)[resource["urn"]]
            ignored = set(resource["options"]["ignoreChanges"])
            assert {"restoreToPointInTime", "kmsKeyId"} <= ignored if stack == "prod" else {"spec.bootstrap", "spec.externalClusters"} <= ignored
            changed = _paths(resource["inputs"], without["inputs"])
            assert changed and _under(changed, ignored), (name, changed)
            assert without["options"] == resource["options"]


def test_without_the_key_the_databases_start_empty(renders: dict[str, Render]) -> None:
    for cluster in _databases(renders["dev"].plan, CNPG).values():
        spec = cluster["inputs"]["spec"]
        assert "initdb" in spec["bootstrap"] and "externalClusters" not in spec
    for rds in _databases(renders["prod"].plan, RDS).values():
        assert "restoreToPointInTime" not in rds["inputs"]


RANDOM_ID = "random:index/randomId:RandomId"


def test_each_life_of_a_kubeconfig_stack_archives_to_folders_of_its_own(renders: dict[str, Render]) -> None:
    """CloudNativePG archives only into an empty folder, and the object store keeps a destroyed
    cluster's folder: a rebuild (the scheduled `rebuild-dev`: destroy, then up, a new state) that
    archived where the last life did would stop at its first WAL, and with it every backup. Each
    cluster's folder carries an id generated with the stack's state (no keepers: it never changes
    while the state lives), and the stack output `databaseArchives` says where, for a later restore."""
    plan = renders["dev"].plan
    by_urn = _by_urn(plan)
    archives = plan["outputs"]["databaseArchives"]
    assert archives.keys() == set(SERVICES)
    for name, cluster in _databases(plan, CNPG).items():
        service = name.removesuffix("-data-postgres")
        own = cluster["inputs"]["spec"]["backup"]["barmanObjectStore"]
        (stamp,) = [by_urn[d] for d in cluster["dependsOn"] if by_urn[d]["type"] == RANDOM_ID]
        assert stamp["inputs"] == {"byteLength": 4} and stamp["parent"] == cluster["parent"]
        assert re.fullmatch(rf"{service}-postgres-[0-9a-f]{{8}}", own["serverName"]), own
        assert archives[service] == f"{own['destinationPath']}/{own['serverName']}"
    folders = [c["inputs"]["spec"]["backup"]["barmanObjectStore"]["serverName"] for c in _databases(plan, CNPG).values()]
    assert len(set(folders)) == len(folders)
    assert "databaseArchives" not in renders["prod"].plan["outputs"]  # RDS keeps its own backups


R = ("platform:services", "dataStores", "restore")
# (case, base document, mutation, key path expected in the message, words expected in the message)
BAD_RESTORES = [
    ("restore time not RFC 3339", DEV, setting(*R, value={"gitlab": {"source": "gitlab-postgres-old", "time": "2026-12-06 23:00"}}),
     "platform:services.dataStores.restore.gitlab.time", "RFC 3339"),
    ("restore without a source", PROD, setting(*R, value={"harbor": {"time": "2026-12-06T23:00:00Z"}}),
     "platform:services.dataStores.restore.harbor.source", "required"),
    ("restore of a disabled service", DEV, lambda doc: (setting(*R, value={"gitlab": {"source": "gitlab-postgres-old"}})(doc),
                                                         setting("platform:services", "gitlab", value={"enabled": False})(doc)),
     "platform:services.dataStores.restore.gitlab", "disabled"),
    ("restore of an unknown service", DEV, setting(*R, value={"vault": {"source": "vault"}}),
     "platform:services.dataStores.restore.vault", "allowed: gitlab, harbor"),
    ("RDS restore from something that names no backups", PROD, setting(*R, value={"gitlab": {"source": "s3://bucket/gitlab"}}),
     "platform:services.dataStores.restore.gitlab.source", "retained automated backups"),
    ("CloudNativePG restore from something that names no folder", DEV, setting(*R, value={"gitlab": {"source": "s3://bucket/gitlab"}}),
     "platform:services.dataStores.restore.gitlab.source", "databaseArchives.gitlab"),
    # The folders are named by the stack's state now: the key a restore once needed beside it is gone.
    ("server names", DEV, setting("platform:services", "dataStores", "serverNames", value={"gitlab": "gitlab-postgres-2"}),
     "platform:services.dataStores.serverNames", "allowed"),
]


@pytest.mark.parametrize(("case", "base", "mutate", "key", "words"), BAD_RESTORES, ids=[c[0] for c in BAD_RESTORES])
def test_bad_restores_are_refused_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, case: str, base: dict, mutate, key: str,
    words: str,
) -> None:
    """tests/test_config.py's two checks: the message names the key and what is allowed, and
    `platformctl render` stops before the program runs (nothing registered), without a traceback."""
    for where in ("load", "render"):
        (tmp_path / where).mkdir()
    names_key_and_file(tmp_path / "load", case, base, mutate, key, words)
    refused_by_render(tmp_path / "render", capsys, monkeypatch, case, base, mutate, key, words)


def test_the_scheduled_rebuild_records_where_the_old_databases_archived_before_destroying() -> None:
    """After `rebuild-dev` the old state is gone, and with it the only record of the old folders'
    ids: the report (the job's artifact, kept 90 days) must say them, taken before the destroy."""
    script = yaml.safe_load((ROOT / ".gitlab-ci.yml").read_text())["rebuild-dev"]["script"]
    recorded = [i for i, line in enumerate(script) if "pulumi stack output databaseArchives" in line and "$report" in line]
    destroyed = [i for i, line in enumerate(script) if line.lstrip("- ").startswith("pulumi destroy")]
    assert recorded and destroyed and recorded[0] < destroyed[0], script
