"""Ops repositories' layouts (issue 18): per-environment folders for new tenants, and the way there
for tenants onboarded before them, on the plan.

Before the folders, each ops repository held one `app.yaml` at its root (resource
`<tenant>-repositories-<project>-starter-app-yaml`) and ArgoCD deployed `.`. A path is a
replacement for pulumi-gitlab's RepositoryFile, and any commit to the protected `main` fails, so
the program never moves a tenant's files: `opsLayout: root` declares exactly what such a tenant
has, and `moved` (after the tenant moved its files by hand, README: Ops repositories) seeds none.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from platformctl.render import ROOT, ConfigError, render
from tests.golden_path import walk

FILE = "gitlab:index/repositoryFile:RepositoryFile"
APPLICATION_SET = "kubernetes:argoproj.io/v1alpha1:ApplicationSet"
LAYOUTS = {"payments": "root", "checkout": "moved", "catalog": "environments"}


def _stack(tmp_path: Path, layouts: dict[str, str]) -> Path:
    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    for tenant in document["config"]["platform:tenants"]:
        if tenant["name"] in layouts:
            tenant["opsLayout"] = layouts[tenant["name"]]
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def plan(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return render(_stack(tmp_path_factory.mktemp("layouts"), LAYOUTS), "dev").plan


def _files(plan: dict, tenant: str, project: str) -> dict[str, dict]:
    """File path -> the starter RepositoryFile of one of the tenant's projects."""
    prefix = f"{tenant}-repositories-{project}-starter-"
    return {r["inputs"]["filePath"]: r for r in plan["resources"] if r["type"] == FILE and r["name"].startswith(prefix)}


def _deployed(plan: dict, tenant: str) -> dict[str, str]:
    """Environment -> the directory its ApplicationSet deploys."""
    return {environment: r["inputs"]["spec"]["template"]["spec"]["source"]["path"] for environment in ("dev", "prod")
            for r in plan["resources"] if r["type"] == APPLICATION_SET and r["name"] == f"{tenant}-delivery-{environment}-apps"}


def _bumped(file: dict) -> str:
    """The bump job's sed line: the files it rewrites the image in."""
    [sed] = [line for line in yaml.safe_load(file["inputs"]["content"])["bump-image"]["script"] if line.startswith("sed -i")]
    return sed


def test_a_tenant_onboarded_before_the_folders_keeps_exactly_what_it_has(plan: dict) -> None:
    # The resource names, paths and ArgoCD paths of before the folders: its state matches, nothing moves.
    for project, environment in (("ops", "prod"), ("ops-dev", "dev")):
        files = _files(plan, "payments", project)
        assert sorted(files) == [".gitlab-ci.yml", "app.yaml"]
        assert files["app.yaml"]["name"] == f"payments-repositories-{project}-starter-app-yaml"
        assert files["app.yaml"]["inputs"]["commitMessage"] == "Add app.yaml (platform starter)"
        kinds = [d["kind"] for d in yaml.safe_load_all(files["app.yaml"]["inputs"]["content"])]
        assert ("AnalysisTemplate" in kinds) == (environment == "prod")  # the repository's own environment
        assert _bumped(files[".gitlab-ci.yml"]).endswith(" app.yaml")
    assert _deployed(plan, "payments") == {"dev": ".", "prod": "."}


def test_a_moved_tenant_gets_no_manifest_and_argocd_follows_the_folders(plan: dict) -> None:
    for project in ("ops", "ops-dev"):
        files = _files(plan, "checkout", project)
        assert sorted(files) == [".gitlab-ci.yml"]  # its moved files are its own; the root one is dropped, kept
        assert _bumped(files[".gitlab-ci.yml"]).endswith(" dev/app.yaml prod/app.yaml")
    assert _deployed(plan, "checkout") == {"dev": "dev", "prod": "prod"}


@pytest.mark.parametrize("tenant", list(LAYOUTS))
def test_argocd_deploys_where_the_files_are_and_dropping_a_file_never_deletes_it(plan: dict, tenant: str) -> None:
    files = {project: _files(plan, tenant, project) for project in ("ops", "ops-dev")}
    for environment, path in _deployed(plan, tenant).items():
        repository = files["ops" if environment == "prod" else "ops-dev"]
        manifests = [p for p in repository if p.endswith(".yaml") and p != ".gitlab-ci.yml"]
        if LAYOUTS[tenant] != "moved":  # the seeded manifest of that environment is in the folder ArgoCD deploys
            assert [p for p in manifests if str(Path(p).parent) == path] == [f"{path}/app.yaml".removeprefix("./")]
    for project in ("app", "ops", "ops-dev"):
        for file in _files(plan, tenant, project).values():
            assert file["options"]["retainOnDelete"] is True and file["options"]["ignoreChanges"] == ["content"]


def test_a_bad_layout_names_the_key_and_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"platform:tenants\[0\]\.opsLayout: Input should be 'environments', 'root' or 'moved'"):
        render(_stack(tmp_path, {"payments": "flat"}), "dev")


def test_the_walker_tells_a_tenant_off_the_folders_from_one_on_them(plan: dict) -> None:
    # Not yet moved: its bump job edits the root file, not the folders the golden path deploys.
    assert walk(plan, "payments").hop == "tag bump in ops-dev"
    # Moved: its manifests are its own, which the plan does not hold, so the walk cannot vouch for its Rollout.
    gap = walk(plan, "checkout")
    assert gap.hop == "dev Rollout" and "a Rollout in checkout/ops-dev dev/app.yaml" in gap.missing
