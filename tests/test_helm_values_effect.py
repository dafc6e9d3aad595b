"""Every value the program passes to a chart changes what the chart renders.

Each leaf of each release's values is changed and that one release rendered again with the
Helm engine, unredacted (a value that only reaches a Secret counts); a value whose change
renders the same text is dead configuration. To keep the suite's CPU bounded, a chart and path
is tried once across both stacks, and string leaves and maps handed to Kubernetes whole are
first marked together in one render: a marker found in the output proves its leaf has an
effect. Only the other leaves are rendered one by one. The exceptions are NO_EFFECT.
"""

from __future__ import annotations

import fnmatch
import json
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from platformctl.charts import read_lock, verified
from platformctl.helm_render import ReleaseJob, cache_dir, cluster_api_versions, custom_api_versions, render_manifests
from platformctl.render import Render
from tests.test_helm_render import kubernetes_versions, releases

# (chart, dotted path) -> why the program sets a value the chart's output does not show.
NO_EFFECT: dict[tuple[str, str], str] = {
    # The released chart's templates/crds/ (generated at release) reads both; the source mirror
    # lacks that folder (../shared/upstream/chart-src/SOURCES.md), so here nothing reads them.
    ("external-secrets", "installCRDs"): "reads only templates/crds/, missing from the chart source",
    ("external-secrets", "crds.createClusterPushSecret"): "reads only templates/crds/, missing from the chart source",
    # Read besides only by the cert controller's rules, off while cert-manager issues the webhook's certificate.
    ("external-secrets", "crds.createClusterSecretStore"): "reads only templates/crds/, missing from the chart source",
    # Orchestra renders its directory ConfigMap (myvd) only when an upstream sign-in is set; the
    # login portal reads the values themselves. A leaf-by-leaf change cannot show that.
    ("orchestra", "oidc.*"): "orchestra reads only whether `oidc` is set",
    # Harbor tests only `eq .Values.database.type "internal"`: any other word renders as external.
    ("harbor", "database.type"): "the chart checks only for 'internal'; every other value means external",
    # Read with `lookup` when Helm installs (the Redis URL in Harbor's Secrets); the offline render
    # has no cluster to look the Secret up in.
    ("harbor", "redis.external.existingSecret"): "read by `lookup` at install time, which an offline render cannot do",
    # Conditions of subcharts the program turns off and charts/vendor/prometheus leaves out:
    # nothing renders either way here (the released chart would bundle them).
    ("prometheus", "kube-state-metrics.enabled"): "a condition of a subchart not in the chart source",
    ("prometheus", "prometheus-node-exporter.enabled"): "a condition of a subchart not in the chart source",
}

# Maps handed to Kubernetes whole: changed as one leaf.
_WHOLE = {"resources", "annotations", "labels", "nodeSelector", "podAnnotations", "podLabels"}


def leaves(values: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(values, dict) and values and (not path or path[-1] not in _WHOLE):
        for key, value in values.items():
            yield from leaves(value, (*path, str(key)))
    elif isinstance(values, list) and values and all(isinstance(v, dict) for v in values):
        for index, value in enumerate(values):
            yield from leaves(value, (*path, str(index)))
    else:
        yield path, values


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x" if value else "x"
    if isinstance(value, list):
        return [*value, value[0] if value else "x"] if not value or not isinstance(value[0], str) else [*value[:-1], value[-1] + "x"]
    if isinstance(value, dict):
        return {**value, "platform.io/changed": "x"} if not value or all(isinstance(v, str) for v in value.values()) else {}
    return "x"


def with_leaf(values: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    if isinstance(values, list):
        index = int(path[0])
        return [with_leaf(v, path[1:], value) if i == index else v for i, v in enumerate(values)]
    return {**values, path[0]: with_leaf(values[path[0]], path[1:], value)}


def _exception(dead: str) -> tuple[str, str] | None:
    """The NO_EFFECT entry (a path may end in `*`) that explains a dead `chart path`."""
    chart, path = dead.split(" ", 1)
    return next(((c, p) for c, p in NO_EFFECT if c == chart and fnmatch.fnmatchcase(path, p)), None)


def _marked(values: Any, leaf_paths: list[tuple[str, ...]]) -> tuple[Any, dict[str, tuple[str, ...]]]:
    """`values` with a unique marker in each leaf of `leaf_paths` (a string's suffix, or a key
    added to a map handed to Kubernetes whole); marker -> path."""
    markers = {}
    for index, path in enumerate(leaf_paths):
        marker = f"platformmark{index:04d}z"
        markers[marker] = path
        leaf = _leaf(values, path)
        values = with_leaf(values, path, leaf + marker if isinstance(leaf, str) else {**leaf, marker: "x"})
    return values, markers


def _leaf(values: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        values = values[int(key)] if isinstance(values, list) else values[key]
    return values


@pytest.fixture(scope="session")
def dead_values(charted: dict[str, Render]) -> list[str]:
    """`chart path` of every leaf whose change leaves the release's rendered text as it was."""
    dead, seen = [], set()
    for stack, release in releases(charted):
        inputs = release["inputs"]
        todo = [(p, v) for p, v in leaves(inputs["values"]) if (inputs["chart"], ".".join(p)) not in seen]
        if not todo:
            continue
        seen |= {(inputs["chart"], ".".join(p)) for p, _ in todo}
        chart_dir = verified(inputs["chart"], inputs["version"])
        assert chart_dir is not None
        version = kubernetes_versions(stack)[release["cluster"]]
        api_versions = cluster_api_versions(charted[stack].plan, release["cluster"], version)
        job = ReleaseJob(
            chart_dir=str(chart_dir), chart_digest=read_lock()[f"{inputs['chart']}@{inputs['version']}"]["digest"],
            values=inputs["values"], name=inputs["name"], namespace=inputs["namespace"], kubernetes_version=version,
            custom_apis=tuple(custom_api_versions(charted[stack].plan, release["cluster"])),
        )
        dead += _remembered(job, todo, lambda: _dead_leaves(chart_dir, inputs, version, api_versions, todo))
    return dead


def _remembered(job: ReleaseJob, todo: list[tuple[tuple[str, ...], Any]], find: Callable[[], list[str]]) -> list[str]:
    """`find()`, kept in the Helm release cache under everything it reads: the release's cache key
    (locked chart, values, name, namespace, cluster APIs, Helm engine), the leaves to try and this
    module's code. Helm renders the same text from the same inputs (`stable` allows for generated
    secrets), so on a warm cache a kept answer is the answer and Helm need not run again."""
    key = hashlib.sha256(json.dumps([job.key(), [p for p, _ in todo], Path(__file__).read_text()]).encode()).hexdigest()
    entry = cache_dir() / "values-effect" / f"{key}.json"
    if entry.is_file():
        return json.loads(entry.read_text())
    found = find()
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = entry.with_suffix(f".{os.getpid()}.tmp")
    staging.write_text(json.dumps(found))
    os.replace(staging, entry)  # whole or not at all
    return found


def _dead_leaves(
    chart_dir: Path, inputs: dict[str, Any], version: str, api_versions: list[str], todo: list[tuple[tuple[str, ...], Any]]
) -> list[str]:
    """`chart path` of each leaf of `todo` whose change leaves this release's rendered text as it was."""
    def render(values: dict[str, Any]) -> dict[str, str]:
        try:
            return render_manifests(
                chart_dir, values, name=inputs["name"], namespace=inputs["namespace"],
                kubernetes_version=version, api_versions=api_versions,
            )
        except Exception as err:  # noqa: BLE001 a value the chart refuses is a value it reads
            return {"error": str(err)}

    base, again = render(inputs["values"]), render(inputs["values"])
    # Templates that differ between two identical renders (generated passwords, certificates).
    stable = sorted(t for t in base if again.get(t) == base[t])

    def same(values: dict[str, Any]) -> bool:
        other = render(values)
        return [other.get(t) for t in stable] == [base[t] for t in stable] and set(other) == set(base)

    markable = [p for p, v in todo if (isinstance(v, str) and v) or (isinstance(v, dict) and v and p[-1] in _WHOLE)]
    marked, markers = _marked(inputs["values"], markable)
    text = json.dumps(render(marked))
    proven = {path for marker, path in markers.items() if marker in text}
    dead = []
    for path, value in todo:
        if path not in proven and same(with_leaf(inputs["values"], path, changed(value))):
            dead.append(f"{inputs['chart']} {'.'.join(path)}")
    return dead


def test_every_value_the_program_sets_changes_the_rendered_output(dead_values: list[str]) -> None:
    unexplained = [d for d in dead_values if _exception(d) is None]
    assert not unexplained, "values with no effect on the chart's output:\n" + "\n".join(unexplained)


def test_every_listed_exception_still_has_no_effect(dead_values: list[str]) -> None:
    stale = [f"{chart} {path}" for chart, path in NO_EFFECT if not any(_exception(d) == (chart, path) for d in dead_values)]
    assert not stale, f"no longer without effect, remove from NO_EFFECT: {stale}"
