"""What the clusters receive from each Helm release: the chart rendered by the real Helm engine.

helm-python-sdk embeds Helm's own Go code (Helm v4); a release is rendered from the verified
local chart (platformctl.charts) with its values from the plan, for its cluster's Kubernetes
version and API list, as `helm install` would. Values come from the plan, where every secret
is already "[secret]", and the data of every rendered Secret is replaced by "[secret]" too
(charts also generate values of their own), so a render never holds a secret.

`render_plan_releases` keeps what each release rendered in a cache keyed by everything the
render reads (`ReleaseJob.key`: this module's code and its libraries' versions, the chart's
locked digest, the values, release name and namespace, Kubernetes version and the cluster's
custom APIs), so any change is a miss and an unchanged release is never rendered twice. What
is missing is rendered in child processes (`python -m platformctl.helm_render`): Helm's Go
runtime and the chart text never enter the render's process, and two charts render at once.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib.metadata
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from platformctl.charts import ROOT, ChartError, charts_dir, read_lock, verified
from platformctl.mocks import REDACTED

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# Kinds that live outside any namespace (for where a rendered object is filed).
_CLUSTER_SCOPED = frozenset({
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass",
    "IngressClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "PersistentVolume",
    "CSIDriver", "RuntimeClass", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConstraintTemplate",
})
CACHE_ENV = "PLATFORM_HELM_CACHE"
DEFAULT_CACHE = ROOT / "build" / "helm-renders"
# Cache entries kept (the most recently used): both stacks' releases many times over.
CACHE_ENTRIES = 400
# Child processes rendering the releases a run misses (each pays ~0.3 s CPU to start).
MAX_WORKERS = 2


# How Helm splits a template's output into documents (releaseutil.SplitManifests): "---#" separates too.
# libyaml's loader where PyYAML has it: the CRDs some charts template are megabytes of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


class HelmRenderError(Exception):
    """A chart failed to render with the program's values; the message names the release."""


@functools.lru_cache(maxsize=None)
def builtin_api_versions(kubernetes_version: str) -> tuple[str, ...]:
    """The GA built-in API group/versions and group/version/kinds of a Kubernetes minor version.

    Read from kubernetes-validate's copy of that version's OpenAPI schemas. Alpha and beta
    APIs are off by default on a new cluster, so they are left out.
    """
    import kubernetes_validate  # only where a release is rendered: cache hits need none of it

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{kubernetes_version}.0-local"
    found: set[str] = set()
    for path in schemas.glob("*.json"):
        for gvk in json.loads(path.read_text()).get("x-kubernetes-group-version-kind", []):
            if "alpha" in gvk["version"] or "beta" in gvk["version"] or gvk["kind"] in ("DeleteOptions", "WatchEvent"):
                continue
            group_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            found |= {group_version, f"{group_version}/{gvk['kind']}"}
    return tuple(sorted(found))


def _load(path: str) -> Any:
    """A chart loaded for one render. Not cached: Helm's render drops the subcharts the values
    disable from the loaded chart, so a later render that enables one (argo-cd's redis-ha in HA
    mode) would fail on a shared handle (tests/test_helm_render.py). A load costs a few ms."""
    from helm_python import Chart

    return Chart.load(path)


# Hook events Helm runs only on `helm test`: "test-success" is Helm 2's name, which Helm still
# reads as "test" (pkg/releaseutil/manifest_sorter.go); redis-ha's test pods use it.
TEST_HOOKS = frozenset({"test", "test-success"})


def _documents(manifests: Mapping[str, str]) -> list[dict[str, Any]]:
    """The objects of a render, in template order; NOTES and `helm test` hooks are not installed."""
    objects = []
    for template in sorted(manifests):
        if template.endswith("NOTES.txt"):
            continue
        for text in _SEPARATOR.split(manifests[template]):
            document = yaml.load(text, Loader=_LOADER)
            if not isinstance(document, dict) or not document:
                continue
            hooks = ((document.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
            if TEST_HOOKS & {h.strip() for h in hooks.split(",")}:
                continue
            objects.append(document)
    return objects


def _redact_secret(obj: dict[str, Any]) -> dict[str, Any]:
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(out.get(field), dict):
            out[field] = {key: REDACTED for key in out[field]}
    return out


def render_manifests(
    chart_dir: Path, values: Mapping[str, Any], *, name: str, namespace: str, kubernetes_version: str,
    api_versions: Iterable[str],
) -> dict[str, str]:
    """Template path -> rendered text, as `helm install` renders this release (nothing redacted)."""
    from helm_python import _native

    options = {
        "name": name, "namespace": namespace, "is_install": True,
        "kube_version": f"v{kubernetes_version}.0", "api_versions": sorted(set(api_versions)),
    }
    # helm-python-sdk's Chart.render does not expose kube_version and api_versions; its native
    # render call takes them (Helm's chartutil.Capabilities).
    with _load(str(chart_dir)) as chart:
        return json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(dict(values)), json.dumps(options)))


def render_release(
    chart_dir: Path, values: Mapping[str, Any], *, name: str, namespace: str, kubernetes_version: str,
    api_versions: Iterable[str],
) -> list[dict[str, Any]]:
    """Objects `helm install` would send for this release, Secret data redacted."""
    manifests = render_manifests(
        chart_dir, values, name=name, namespace=namespace, kubernetes_version=kubernetes_version, api_versions=api_versions
    )
    return [_redact_secret(obj) for obj in _documents(manifests)]


# libyaml's emitter where PyYAML has it (its wheels do), else PyYAML's own.
_MANIFEST_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def manifest_text(obj: Mapping[str, Any]) -> str:
    """An object as its file under manifests/ holds it: safe YAML, keys sorted, written by libyaml.

    Why libyaml for every file: PyYAML's own emitter took seconds on the objects with multi-line
    strings (CRDs' descriptions, config files); libyaml folds such strings at other points, which
    only the text shows. The program's own YAML, which lands in the plan, keeps PyYAML's text
    (components.yaml_text)."""
    return yaml.dump(obj, Dumper=_MANIFEST_DUMPER, sort_keys=True)


def object_namespace(obj: Mapping[str, Any], release_namespace: str) -> str | None:
    """The namespace an object lands in (None for a cluster-scoped kind)."""
    kind = str(obj.get("kind", ""))
    if kind in _CLUSTER_SCOPED or kind.startswith("Cluster"):
        return None
    return (obj.get("metadata") or {}).get("namespace") or release_namespace


def custom_api_versions(plan: Mapping[str, Any], cluster: str) -> list[str]:
    """The custom resource group/versions and group/version/kinds the plan declares on `cluster` (their CRDs are installed there)."""
    custom = set()
    for resource in plan["resources"]:
        inputs = resource.get("inputs") or {}
        if resource["cluster"] == cluster and resource["type"].startswith("kubernetes:") and "/" in str(inputs.get("apiVersion", "")):
            custom |= {inputs["apiVersion"], f"{inputs['apiVersion']}/{inputs.get('kind')}"}
    return sorted(custom)


def cluster_api_versions(plan: Mapping[str, Any], cluster: str, kubernetes_version: str) -> list[str]:
    """Built-in APIs plus the custom resource kinds the plan declares on `cluster`."""
    return sorted(set(builtin_api_versions(kubernetes_version)) | set(custom_api_versions(plan, cluster)))


@functools.lru_cache(maxsize=None)
def _engine() -> str:
    """What renders besides the inputs: this module's code and the versions of the libraries it renders with."""
    versions = [importlib.metadata.version(d) for d in ("helm-python-sdk", "PyYAML", "kubernetes-validate")]
    return hashlib.sha256(Path(__file__).read_bytes() + json.dumps(versions).encode()).hexdigest()


@dataclass(frozen=True)
class ReleaseJob:
    """One release to render: everything its rendered objects depend on."""

    chart_dir: str
    chart_digest: str  # the locked digest chart_dir was verified against
    values: dict[str, Any]
    name: str
    namespace: str
    kubernetes_version: str
    custom_apis: tuple[str, ...]

    def key(self) -> str:
        """The cache key: every input but where the chart happens to be, and the engine."""
        inputs = {k: v for k, v in asdict(self).items() if k != "chart_dir"}
        return hashlib.sha256(json.dumps([_engine(), inputs], sort_keys=True).encode()).hexdigest()

    def render(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The release's objects (Secret data redacted) and each object's manifest text."""
        objects = render_release(
            Path(self.chart_dir), self.values, name=self.name, namespace=self.namespace,
            kubernetes_version=self.kubernetes_version,
            api_versions=[*builtin_api_versions(self.kubernetes_version), *self.custom_apis],
        )
        return objects, [manifest_text(obj) for obj in objects]


def cache_dir() -> Path:
    """Where rendered releases are kept: $PLATFORM_HELM_CACHE, else build/helm-renders in the repository."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def _entry(cache: Path, key: str) -> Path:
    return cache / f"{key}.pickle"


def _store(cache: Path, key: str, rendered: tuple[list[dict[str, Any]], list[str]]) -> None:
    """Write an entry whole or not at all (a reader never sees half of one)."""
    cache.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(dir=cache, prefix=".entry-")
    with os.fdopen(handle, "wb") as file:
        pickle.dump(rendered, file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(staging, _entry(cache, key))


def _unpickled(data: bytes) -> Any:
    """A cache entry's objects, with the garbage collector paused while they are made.

    Why: unpickling makes tens of thousands of dicts, lists and strings (no cycles), and each
    young collection it triggers walks the render's whole live object graph; that was three
    quarters of reading the cache."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(data)  # noqa: S301 written by _store
    finally:
        if enabled:
            gc.enable()


def _prune(cache: Path, keep: int = CACHE_ENTRIES) -> None:
    entries = sorted(cache.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)


def _render_missing(jobs: Mapping[str, ReleaseJob], cache: Path) -> tuple[dict[str, str], float]:
    """Render `jobs` (key -> job) into the cache in child processes: key -> error of each that failed, and the
    largest peak RSS of a child in MiB."""
    keys = sorted(jobs)
    workers = min(len(keys), MAX_WORKERS, os.cpu_count() or 1)
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "platformctl.helm_render", str(cache)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(workers)
    ]
    # Every child gets its share before any is read, so they render at the same time.
    for child, share in zip(children, (keys[i::workers] for i in range(workers))):
        assert child.stdin is not None
        child.stdin.write(json.dumps({key: asdict(jobs[key]) for key in share}))
        child.stdin.close()
    reports = [child.stdout.read() for child in children if child.stdout is not None]
    for child in children:
        child.wait()
    if any(child.returncode != 0 for child in children):
        codes = ", ".join(str(child.returncode) for child in children)
        raise HelmRenderError(f"the Helm render processes failed (exit {codes}); see their output above")
    # The report is the last line a child prints (Helm logs its warnings to stderr).
    parsed = [json.loads(report.splitlines()[-1]) for report in reports]
    return {key: error for report in parsed for key, error in report["errors"].items()}, max(r["peak_rss_mib"] for r in parsed)


class Releases(NamedTuple):
    missing: list[str]  # "<chart> <version>" of the releases left values-only: no local chart source
    manifests: dict[str, list[str]]  # release URN -> the manifest text of each rendered object
    helm_peak_rss_mib: float = 0.0  # the largest peak RSS of a Helm render process (0 when all were cached)


def _jobs(plan: dict[str, Any], kubernetes_versions: Mapping[str, str], base: Path | None) -> tuple[dict[str, ReleaseJob], list[str]]:
    """URN -> the job of each release whose chart is there (verified against the lock), and the charts that are not."""
    lock = read_lock()
    jobs: dict[str, ReleaseJob] = {}
    missing: list[str] = []
    custom_apis: dict[str, tuple[str, ...]] = {}
    checked: dict[tuple[str, str, Path | None], Path | None] = {}
    for resource in plan["resources"]:
        if resource["type"] != RELEASE_TYPE:
            continue
        inputs = resource["inputs"]
        chart, version = str(inputs.get("chart")), str(inputs.get("version"))
        # Air-gapped stacks name the local chart directory itself: <dir>/<chart>/<version>.
        local = Path(chart)
        name, version, where = (local.parent.name, local.name, local.parent.parent) if local.is_absolute() else (chart, version, base)
        if (name, version, where) not in checked:  # a chart many releases use is hashed once
            checked[name, version, where] = verified(name, version, where, lock)
        chart_dir = checked[name, version, where]
        if chart_dir is None:
            missing.append(f"{chart} {inputs.get('version')}")
            continue
        cluster = resource["cluster"]
        if cluster not in custom_apis:
            custom_apis[cluster] = tuple(custom_api_versions(plan, cluster))
        jobs[resource["urn"]] = ReleaseJob(
            chart_dir=str(chart_dir.resolve()), chart_digest=lock[f"{name}@{version}"]["digest"],
            values=inputs.get("values") or {}, name=inputs.get("name") or resource["name"],
            namespace=inputs.get("namespace", "default"), kubernetes_version=kubernetes_versions[cluster],
            custom_apis=custom_apis[cluster],
        )
    return jobs, sorted(set(missing))


def render_plan_releases(plan: dict[str, Any], kubernetes_versions: Mapping[str, str], base: Path | None = None) -> Releases:
    """Render every Helm release of the plan into its `rendered` entry, from the cache where it has it.

    Raises ChartError for a chart that differs from its lock and HelmRenderError for a chart
    that does not render.
    """
    jobs, missing = _jobs(plan, kubernetes_versions, base)
    cache = cache_dir()
    keys = {urn: job.key() for urn, job in jobs.items()}
    absent = {keys[urn]: job for urn, job in jobs.items() if not _entry(cache, keys[urn]).is_file()}
    errors, helm_peak_rss_mib = _render_missing(absent, cache) if absent else ({}, 0.0)
    manifests: dict[str, list[str]] = {}
    for resource in plan["resources"]:
        key = keys.get(resource["urn"])
        if key is None:
            continue
        if key in errors:
            inputs = resource["inputs"]
            raise HelmRenderError(f"{resource['urn']}: {inputs.get('chart')} {inputs.get('version')} does not render: {errors[key]}")
        entry = _entry(cache, key)
        resource["rendered"], manifests[resource["urn"]] = _unpickled(entry.read_bytes())
        os.utime(entry)  # recently used: kept by _prune
    if absent:
        _prune(cache)
    return Releases(missing, manifests, helm_peak_rss_mib)


def values_only_note(missing: list[str], base: Path | None = None) -> str:
    return (
        f"Helm releases are values-only for {', '.join(missing)}: no chart source in {base or charts_dir()} "
        "(fetch them with `python -m platformctl charts fetch [--from-dir MIRROR]`)."
    )


def _child(cache: Path) -> int:
    """`python -m platformctl.helm_render CACHE`: render the jobs on stdin (key -> job) into CACHE; prints key -> error
    and the process's peak RSS."""
    errors = {}
    for key, fields in json.load(sys.stdin).items():
        job = ReleaseJob(**{**fields, "custom_apis": tuple(fields["custom_apis"])})
        try:
            _store(cache, key, job.render())
        except Exception as err:  # noqa: BLE001 helm-python-sdk raises its own error classes; the parent names the release
            errors[key] = str(err)
    print(json.dumps({"errors": errors, "peak_rss_mib": _own_peak_rss_mib()}))
    return 0


def _own_peak_rss_mib() -> float:
    """Peak RSS since this process started its program (ru_maxrss would count the parent it was forked from)."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return 0.0
    peak = next((line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:")), "0")
    return int(peak) / 1024


__all__ = ["ChartError", "HelmRenderError", "render_plan_releases", "render_release", "values_only_note"]


if __name__ == "__main__":
    raise SystemExit(_child(Path(sys.argv[1])))
