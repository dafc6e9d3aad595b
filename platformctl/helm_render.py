"""What the clusters receive from each Helm release: the chart rendered by the real Helm engine.

helm-python-sdk embeds Helm's own Go code (Helm v4); a release is rendered from the verified
local chart (platformctl.charts) with its values from the plan, for its cluster's Kubernetes
version and API list, as `helm install` would. Values come from the plan, where every secret
is already "[secret]", and the data of every rendered Secret is replaced by "[secret]" too
(charts also generate values of their own), so a render never holds a secret.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from helm_python import Chart, _native

from platformctl.charts import ChartError, charts_dir, read_lock, verified
from platformctl.mocks import REDACTED

RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# Kinds that live outside any namespace (for where a rendered object is filed).
_CLUSTER_SCOPED = frozenset({
    "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass",
    "IngressClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "APIService", "PersistentVolume",
    "CSIDriver", "RuntimeClass", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ConstraintTemplate",
})


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
    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{kubernetes_version}.0-local"
    found: set[str] = set()
    for path in schemas.glob("*.json"):
        for gvk in json.loads(path.read_text()).get("x-kubernetes-group-version-kind", []):
            if "alpha" in gvk["version"] or "beta" in gvk["version"] or gvk["kind"] in ("DeleteOptions", "WatchEvent"):
                continue
            group_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            found |= {group_version, f"{group_version}/{gvk['kind']}"}
    return tuple(sorted(found))


@functools.lru_cache(maxsize=None)
def _load(path: str) -> Chart:
    return Chart.load(path)


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
            if "test" in {h.strip() for h in hooks.split(",")}:
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
    options = {
        "name": name, "namespace": namespace, "is_install": True,
        "kube_version": f"v{kubernetes_version}.0", "api_versions": sorted(set(api_versions)),
    }
    # helm-python-sdk's Chart.render does not expose kube_version and api_versions; its native
    # render call takes them (Helm's chartutil.Capabilities).
    return json.loads(_native.call_string("helm_render", _load(str(chart_dir))._raw(), json.dumps(dict(values)), json.dumps(options)))


def render_release(
    chart_dir: Path, values: Mapping[str, Any], *, name: str, namespace: str, kubernetes_version: str,
    api_versions: Iterable[str],
) -> list[dict[str, Any]]:
    """Objects `helm install` would send for this release, Secret data redacted."""
    manifests = render_manifests(
        chart_dir, values, name=name, namespace=namespace, kubernetes_version=kubernetes_version, api_versions=api_versions
    )
    return [_redact_secret(obj) for obj in _documents(manifests)]


def object_namespace(obj: Mapping[str, Any], release_namespace: str) -> str | None:
    """The namespace an object lands in (None for a cluster-scoped kind)."""
    kind = str(obj.get("kind", ""))
    if kind in _CLUSTER_SCOPED or kind.startswith("Cluster"):
        return None
    return (obj.get("metadata") or {}).get("namespace") or release_namespace


def cluster_api_versions(plan: Mapping[str, Any], cluster: str, kubernetes_version: str) -> list[str]:
    """Built-in APIs plus the custom resource kinds the plan declares on `cluster` (their CRDs are installed there)."""
    custom = set()
    for resource in plan["resources"]:
        inputs = resource.get("inputs") or {}
        if resource["cluster"] == cluster and resource["type"].startswith("kubernetes:") and "/" in str(inputs.get("apiVersion", "")):
            custom |= {inputs["apiVersion"], f"{inputs['apiVersion']}/{inputs.get('kind')}"}
    return sorted(set(builtin_api_versions(kubernetes_version)) | custom)


def render_plan_releases(plan: dict[str, Any], kubernetes_versions: Mapping[str, str], base: Path | None = None) -> list[str]:
    """Render every Helm release of the plan into its `rendered` entry; returns the charts not available (values-only).

    Raises ChartError for a chart that differs from its lock and HelmRenderError for a chart
    that does not render.
    """
    lock = read_lock()
    missing: list[str] = []
    api_cache: dict[str, list[str]] = {}
    for resource in plan["resources"]:
        if resource["type"] != RELEASE_TYPE:
            continue
        inputs = resource["inputs"]
        chart, version = str(inputs.get("chart")), str(inputs.get("version"))
        # Air-gapped stacks name the local chart directory itself: <dir>/<chart>/<version>.
        local = Path(chart)
        chart_dir = verified(local.parent.name, local.name, local.parent.parent, lock) if local.is_absolute() else verified(chart, version, base, lock)
        if chart_dir is None:
            missing.append(f"{chart} {version}")
            continue
        cluster = resource["cluster"]
        if cluster not in api_cache:
            api_cache[cluster] = cluster_api_versions(plan, cluster, kubernetes_versions[cluster])
        try:
            resource["rendered"] = render_release(
                chart_dir, inputs.get("values") or {}, name=inputs.get("name") or resource["name"],
                namespace=inputs.get("namespace", "default"), kubernetes_version=kubernetes_versions[cluster],
                api_versions=api_cache[cluster],
            )
        except Exception as err:  # noqa: BLE001 helm-python-sdk raises its own error classes; name the release
            raise HelmRenderError(f"{resource['urn']}: {chart} {version} does not render: {err}") from None
    return sorted(set(missing))


def values_only_note(missing: list[str], base: Path | None = None) -> str:
    return (
        f"Helm releases are values-only for {', '.join(missing)}: no chart source in {base or charts_dir()} "
        "(fetch them with `python -m platformctl charts fetch [--from-dir MIRROR]`)."
    )


__all__ = ["ChartError", "HelmRenderError", "render_plan_releases", "render_release", "values_only_note"]
