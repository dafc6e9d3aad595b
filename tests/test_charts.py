"""The pinned chart sources: digests, the lock, fetching from a mirror folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from components.versions import CHARTS
from platformctl import charts


def _mirror(tmp_path: Path) -> Path:
    """A mirror folder with a small chart under the pinned name and version of the Traefik chart."""
    pin = CHARTS["traefik"]
    chart = tmp_path / "mirror" / pin.chart
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {pin.chart}\nversion: {pin.version}\n")
    (chart / "templates" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    return tmp_path / "mirror"


def test_digest_depends_on_paths_and_contents_only(tmp_path: Path) -> None:
    chart = _mirror(tmp_path) / "traefik"
    first = charts.digest(chart)
    copy = tmp_path / "copy"
    shutil.copytree(chart, copy)
    (copy / "Chart.yaml").chmod(0o600)
    assert charts.digest(copy) == first
    (copy / "templates" / "cm.yaml").write_text("changed\n")
    assert charts.digest(copy) != first
    (copy / "templates" / "cm.yaml").rename(copy / "templates" / "cm2.yaml")
    assert charts.digest(copy) != first


def test_a_chart_that_differs_from_its_lock_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = _mirror(tmp_path)
    pin = CHARTS["traefik"]
    lock = {f"{pin.chart}@{pin.version}": {"chart": pin.chart, "version": pin.version, "repo": pin.repo,
                                            "digest": charts.digest(mirror / pin.chart)}}
    base = tmp_path / "charts"
    charts._install(mirror / pin.chart, charts.chart_path(pin.chart, pin.version, base))
    assert charts.verified(pin.chart, pin.version, base, lock) == base / pin.chart / pin.version
    (base / pin.chart / pin.version / "templates" / "cm.yaml").write_text("tampered\n")
    with pytest.raises(charts.ChartError, match="differs from charts.lock"):
        charts.verified(pin.chart, pin.version, base, lock)
    with pytest.raises(charts.ChartError, match="is not in charts.lock"):
        charts.verified(pin.chart, pin.version, base, {})
    assert charts.verified(pin.chart, "0.0.0-not-fetched", base, lock) is None


def test_fetch_from_dir_refuses_a_mirror_chart_that_differs_from_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = _mirror(tmp_path)
    monkeypatch.setattr(charts, "pinned_charts", lambda: [CHARTS["traefik"]])
    with pytest.raises(charts.ChartError, match="traefik.* differs from charts.lock"):
        # The repository's lock has the real Traefik chart's digest, not this small one's.
        charts.fetch_from_dir(mirror, tmp_path / "charts")
    assert not (tmp_path / "charts" / "traefik").exists()


def test_fetch_from_dir_leaves_a_local_chart_that_already_is_what_the_lock_says(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror = _mirror(tmp_path)
    pin = CHARTS["traefik"]
    digest = charts.digest(mirror / pin.chart)
    monkeypatch.setattr(charts, "read_lock", lambda *_: {f"{pin.chart}@{pin.version}": {"digest": digest}})
    monkeypatch.setattr(charts, "pinned_charts", lambda: [pin])
    target = charts.chart_path(pin.chart, pin.version, tmp_path / "charts")
    [fetched] = charts.fetch_from_dir(mirror, tmp_path / "charts")
    copied = (target / "Chart.yaml").stat().st_ino
    [again] = charts.fetch_from_dir(mirror, tmp_path / "charts")
    assert "already there" not in fetched and "already there" in again
    assert (target / "Chart.yaml").stat().st_ino == copied  # not copied again
    # A local copy changed by hand is replaced with the mirror's.
    (target / "templates" / "cm.yaml").write_text("changed\n")
    [replaced] = charts.fetch_from_dir(mirror, tmp_path / "charts")
    assert "already there" not in replaced and charts.digest(target) == digest


def test_fetch_from_dir_takes_a_chart_the_mirror_lacks_from_the_vendored_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vendor = _mirror(tmp_path)
    pin = CHARTS["traefik"]
    monkeypatch.setattr(charts, "pinned_charts", lambda: [pin])
    monkeypatch.setattr(charts, "VENDOR_DIR", vendor)
    (tmp_path / "empty").mkdir()
    charts.fetch_from_dir(tmp_path / "empty", tmp_path / "charts", check=False)
    assert (charts.chart_path(pin.chart, pin.version, tmp_path / "charts") / "templates" / "cm.yaml").is_file()
    monkeypatch.setattr(charts, "VENDOR_DIR", tmp_path / "nowhere")
    with pytest.raises(charts.ChartError, match="no chart directory traefik/, nor in"):
        charts.fetch_from_dir(tmp_path / "empty", tmp_path / "charts2", check=False)


def test_the_lock_covers_every_pinned_release_chart() -> None:
    lock = charts.read_lock()
    assert {f"{c.chart}@{c.version}" for c in charts.pinned_charts()} == set(lock)
    assert all(entry["digest"].startswith("sha256:") for entry in lock.values())


def _stack_with_local_charts(tmp_path: Path, local_dir: str) -> Path:
    import yaml

    document = yaml.safe_load((charts.ROOT / "Pulumi.dev.yaml").read_text())
    document["config"]["platform:charts"] = {"localDir": local_dir}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def air_gapped_plan(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The dev stack with `platform:charts.localDir` on the fetched charts."""
    from platformctl.render import render

    if charts.verified("traefik", CHARTS["traefik"].version) is None:
        message = "no local chart sources: python -m platformctl charts fetch --from-dir ../shared/upstream/chart-src"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
    return render(_stack_with_local_charts(tmp_path_factory.mktemp("air-gapped"), "build/charts"), "dev").plan


def test_an_air_gapped_stack_installs_every_release_from_the_verified_local_charts(air_gapped_plan: dict) -> None:
    from platformctl.helm_render import RELEASE_TYPE

    releases = [r for r in air_gapped_plan["resources"] if r["type"] == RELEASE_TYPE]
    assert len(releases) >= 17
    lock = charts.read_lock()
    for release in releases:
        inputs = release["inputs"]
        chart = Path(inputs["chart"])
        assert chart == charts.DEFAULT_DIR / chart.parent.name / inputs["version"]
        assert "repositoryOpts" not in inputs
        assert charts.digest(chart) == lock[f"{chart.parent.name}@{inputs['version']}"]["digest"]


def test_an_air_gapped_virtual_cluster_installs_argo_rollouts_from_the_verified_chart_it_carries(
    air_gapped_plan: dict, tmp_path: Path,
) -> None:
    # Not downloaded from the chart's repository when the virtual cluster starts: the bundle is
    # the local chart, which the real Helm engine renders as it renders the chart's folder.
    import base64

    import yaml

    from components import argo_rollouts
    from platformctl.helm_render import render_release

    pin = CHARTS["argo-rollouts"]
    virtual = [r for r in air_gapped_plan["resources"] if r["type"].endswith("Release") and r["inputs"]["chart"].endswith("/vcluster/" + CHARTS["vcluster"].version)]
    assert virtual, "the dev stack has a vCluster tenant"
    entries = [r["inputs"]["values"]["experimental"]["deploy"]["vcluster"]["helm"] for r in virtual]
    assert all(len(entry) == 1 and entry[0]["chart"]["version"] == pin.version for entry in entries)
    bundles = {entry[0]["bundle"] for entry in entries}
    assert len(bundles) == 1  # the same bytes for every tenant (and every run)
    archive = tmp_path / f"{pin.chart}-{pin.version}.tgz"
    archive.write_bytes(base64.b64decode(bundles.pop()))
    local = charts.verified(pin.chart, pin.version)
    assert local is not None
    release = {"values": yaml.safe_load(entries[0][0]["values"]), "name": "argo-rollouts", "namespace": argo_rollouts.NAMESPACE,
               "kubernetes_version": "1.33", "api_versions": ()}
    from_bundle, from_folder = render_release(archive, **release), render_release(local, **release)
    assert from_bundle == from_folder and any(o["kind"] == "Deployment" for o in from_bundle)


def test_an_online_virtual_cluster_pulls_argo_rollouts_from_its_pinned_repository(renders: dict) -> None:
    release = next(r for r in renders["dev"].plan["resources"] if r["type"].endswith("Release") and r["inputs"]["chart"] == "vcluster")
    [entry] = release["inputs"]["values"]["experimental"]["deploy"]["vcluster"]["helm"]
    pin = CHARTS["argo-rollouts"]
    assert entry["chart"] == {"name": pin.chart, "repo": pin.repo, "version": pin.version} and "bundle" not in entry


def test_an_air_gapped_stack_without_its_charts_is_refused_before_anything_registers(tmp_path: Path) -> None:
    from platformctl.render import render
    from stacks.config import ConfigError

    with pytest.raises(ConfigError, match=r"platform:charts.localDir: argo-cd 10.1.1 is not in .*: run `python -m platformctl charts fetch"):
        render(_stack_with_local_charts(tmp_path, str(tmp_path / "empty")), "dev")


def test_rendering_refuses_a_chart_that_changed_under_its_version(tmp_path: Path) -> None:
    from platformctl.helm_render import RELEASE_TYPE, render_plan_releases

    pin = CHARTS["traefik"]
    source = charts.verified(pin.chart, pin.version)
    if source is None:
        message = "no local chart sources: python -m platformctl charts fetch --from-dir ../shared/upstream/chart-src"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
    tampered = charts.chart_path(pin.chart, pin.version, tmp_path)
    shutil.copytree(source, tampered)
    with (tampered / "values.yaml").open("a") as values:
        values.write("# changed\n")
    plan = {"resources": [{
        "urn": "urn:release", "type": RELEASE_TYPE, "name": "traefik", "cluster": "dev",
        "inputs": {"chart": pin.chart, "version": pin.version, "name": "traefik", "namespace": "traefik", "values": {}},
    }]}
    with pytest.raises(charts.ChartError, match="traefik 37.4.0 in .* differs from charts.lock"):
        render_plan_releases(plan, {"dev": "1.33"}, tmp_path)
    assert "rendered" not in plan["resources"][0]
