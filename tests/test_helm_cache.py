"""The cache of rendered Helm releases: a release renders once, and any change to what it reads renders it again."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from components.versions import CHARTS
from platformctl import helm_render
from platformctl.charts import verified
from platformctl.helm_render import RELEASE_TYPE, HelmRenderError, ReleaseJob, manifest_text, render_plan_releases, render_release

VERSIONS = {"dev": "1.33"}


def chart_dir(chart: str) -> Path:
    path = verified(CHARTS[chart].chart, CHARTS[chart].version)
    if path is None:
        message = "no local chart sources: python -m platformctl charts fetch --from-dir ../shared/upstream/chart-src"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)
    return path


def one_release(chart: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"resources": [
        {"urn": f"urn:{chart}", "type": RELEASE_TYPE, "name": chart, "cluster": "dev", "inputs": {
            "chart": CHARTS[chart].chart, "version": CHARTS[chart].version, "name": chart, "namespace": f"{chart}-system",
            "values": values,
        }},
        # A custom resource on the cluster: its API is in what the release is rendered for.
        {"urn": "urn:cr", "type": "kubernetes:example.com/v1:Widget", "name": "w", "cluster": "dev",
         "inputs": {"apiVersion": "example.com/v1", "kind": "Widget"}},
    ]}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """An empty cache for the test; records the keys of each child render."""
    monkeypatch.setenv(helm_render.CACHE_ENV, str(tmp_path / "cache"))
    rendered: list[list[str]] = []
    real = helm_render._render_missing

    def recording(jobs: dict[str, ReleaseJob], cache: Path) -> tuple[dict[str, str], float]:
        rendered.append(sorted(jobs))
        return real(jobs, cache)

    monkeypatch.setattr(helm_render, "_render_missing", recording)
    return rendered


def test_a_release_renders_once_and_a_values_change_renders_it_again(cache: list[list[str]]) -> None:
    chart = chart_dir("gatekeeper")
    plan = one_release("gatekeeper", {"replicas": 2})
    first = render_plan_releases(plan, VERSIONS)
    objects = plan["resources"][0]["rendered"]
    assert len(cache) == 1 and len(cache[0]) == 1
    # What the child rendered is what the engine renders in this process, with its manifest text.
    assert objects == render_release(
        chart, {"replicas": 2}, name="gatekeeper", namespace="gatekeeper-system", kubernetes_version="1.33",
        api_versions=[*helm_render.builtin_api_versions("1.33"), "example.com/v1", "example.com/v1/Widget"],
    )
    assert first.manifests == {"urn:gatekeeper": [manifest_text(obj) for obj in objects]}
    assert 0 < first.helm_peak_rss_mib < 1024

    again = one_release("gatekeeper", {"replicas": 2})
    assert render_plan_releases(again, VERSIONS) == first._replace(helm_peak_rss_mib=0.0) and len(cache) == 1  # from the cache
    assert again["resources"][0]["rendered"] == objects

    changed = one_release("gatekeeper", {"replicas": 4})
    render_plan_releases(changed, VERSIONS)
    assert len(cache) == 2 and cache[1] != cache[0]
    deployment = next(o for o in changed["resources"][0]["rendered"] if o["metadata"]["name"] == "gatekeeper-controller-manager")
    assert deployment["spec"]["replicas"] == 4


def test_the_cache_key_covers_everything_the_render_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    job = ReleaseJob(
        chart_dir="/charts/gatekeeper/3.23.0", chart_digest="sha256:aa", values={"replicas": 2}, name="gatekeeper",
        namespace="gatekeeper-system", kubernetes_version="1.33", custom_apis=("example.com/v1",),
    )
    changes = {
        "chart_digest": "sha256:bb", "values": {"replicas": 3}, "name": "other", "namespace": "other",
        "kubernetes_version": "1.34", "custom_apis": ("example.com/v1", "example.com/v1/Widget"),
    }
    assert set(changes) == {f.name for f in dataclasses.fields(ReleaseJob)} - {"chart_dir"}
    for field, value in changes.items():
        assert dataclasses.replace(job, **{field: value}).key() != job.key(), field
    # Where the verified chart happens to be is not part of what renders.
    assert dataclasses.replace(job, chart_dir="/elsewhere/gatekeeper/3.23.0").key() == job.key()
    # Nor is the engine: this module's code or its libraries' versions.
    key = job.key()
    monkeypatch.setattr(helm_render, "_engine", lambda: "another engine")
    assert job.key() != key


def test_a_chart_that_fails_to_render_names_its_release_and_caches_nothing(cache: list[list[str]], tmp_path: Path) -> None:
    chart_dir("traefik")
    plan = one_release("traefik", {"autoscaling": {"enabled": True}})
    with pytest.raises(HelmRenderError, match=r"urn:traefik: traefik 37\.4\.0 does not render: .*maxReplicas is required on HPA"):
        render_plan_releases(plan, VERSIONS)
    assert "rendered" not in plan["resources"][0]
    assert not list((tmp_path / "cache").glob("*.pickle"))
