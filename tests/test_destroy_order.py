"""Destroy in one go: the engine deletes dependents first, so the plan's dependency graph
must put every custom resource after the release that installs its CRD, every namespaced
object after its namespace, and ArgoCD's objects after ArgoCD. Nothing then waits on a
finalizer whose controller is already gone.
"""

from __future__ import annotations

from functools import cache

import pytest

# The chart that installs each API group's CRDs.
CRD_INSTALLERS = {
    "cert-manager.io": "cert-manager",
    "acme.cert-manager.io": "cert-manager",
    "templates.gatekeeper.sh": "gatekeeper",
    "constraints.gatekeeper.sh": "gatekeeper",
    "config.gatekeeper.sh": "gatekeeper",
    "external-secrets.io": "external-secrets",
    "argoproj.io": "argo-cd",
    "openunison.tremolo.io": "openunison-operator",
    "postgresql.cnpg.io": "cloudnative-pg",
}


def _closure(plan: dict) -> dict[str, set[str]]:
    """For each URN, everything it depends on, directly or not."""
    direct = {r["urn"]: set(r["dependsOn"]) for r in plan["resources"]}

    @cache
    def reach(urn: str) -> frozenset[str]:
        found: set[str] = set()
        for dep in direct.get(urn, ()):
            found |= {dep} | reach(dep)
        return frozenset(found)

    return {urn: set(reach(urn)) for urn in direct}


def _kubernetes(plan: dict) -> list[dict]:
    return [r for r in plan["resources"] if r["type"].startswith("kubernetes:") and r["custom"] and "id" not in r["inputs"]]


def _group(resource: dict) -> str:
    api_version = resource["inputs"].get("apiVersion", "")
    return api_version.split("/")[0] if "/" in api_version else ""


def _namespace(resource: dict) -> str | None:
    if resource["type"] == "kubernetes:helm.sh/v3:Release":
        return resource["inputs"].get("namespace")
    return (resource["inputs"].get("metadata") or {}).get("namespace")


def test_custom_resources_are_deleted_before_their_crd_installer(plan: dict) -> None:
    closure = _closure(plan)
    installers = {
        (r["cluster"], r["inputs"]["chart"]): r["urn"]
        for r in _kubernetes(plan)
        if r["type"] == "kubernetes:helm.sh/v3:Release"
    }
    checked, problems = 0, []
    for resource in _kubernetes(plan):
        group = _group(resource)
        if group not in CRD_INSTALLERS:
            continue
        checked += 1
        installer = installers.get((resource["cluster"], CRD_INSTALLERS[group]))
        if installer is None or installer not in closure[resource["urn"]]:
            problems.append(f"{resource['cluster']}/{resource['name']} ({group}) does not depend on {CRD_INSTALLERS[group]}")
    assert checked, "no custom resources in the plan"
    assert not problems, "\n".join(problems)


def test_namespaced_objects_are_deleted_before_their_namespace(plan: dict) -> None:
    closure = _closure(plan)
    namespaces = {
        (r["cluster"], r["inputs"]["metadata"]["name"]): r["urn"]
        for r in _kubernetes(plan)
        if r["type"] == "kubernetes:core/v1:Namespace"
    }
    checked, problems = 0, []
    for resource in _kubernetes(plan):
        namespace = _namespace(resource)
        if namespace is None or resource["type"] == "kubernetes:core/v1:Namespace":
            continue
        checked += 1
        owner = namespaces.get((resource["cluster"], namespace))
        if owner is None:
            problems.append(f"{resource['cluster']}/{resource['name']}: namespace {namespace} is not declared")
        elif owner not in closure[resource["urn"]]:
            problems.append(f"{resource['cluster']}/{resource['name']} does not depend on namespace {namespace}")
    assert checked, "no namespaced objects in the plan"
    assert not problems, "\n".join(problems)


def test_argocd_objects_are_deleted_before_argocd(plan: dict) -> None:
    closure = _closure(plan)
    argocd = [r["urn"] for r in _kubernetes(plan) if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "argo-cd"]
    for resource in _kubernetes(plan):
        labels = (resource["inputs"].get("metadata") or {}).get("labels") or {}
        if _group(resource) == "argoproj.io" or labels.get("argocd.argoproj.io/secret-type"):
            assert argocd and argocd[0] in closure[resource["urn"]], resource["name"]


def test_the_closure_sees_indirect_dependencies() -> None:
    plan = {"resources": [
        {"urn": "a", "dependsOn": []}, {"urn": "b", "dependsOn": ["a"]}, {"urn": "c", "dependsOn": ["b"]},
    ]}
    assert _closure(plan)["c"] == {"a", "b"}


def test_the_argocd_check_fails_without_the_dependency() -> None:
    release = {"urn": "argocd", "name": "argocd", "type": "kubernetes:helm.sh/v3:Release", "custom": True, "dependsOn": [],
               "inputs": {"chart": "argo-cd", "namespace": "argocd"}, "cluster": "control-plane"}
    app = {"urn": "app", "name": "p", "type": "kubernetes:argoproj.io/v1alpha1:AppProject", "custom": True, "dependsOn": [],
           "inputs": {"apiVersion": "argoproj.io/v1alpha1", "metadata": {"name": "p", "namespace": "argocd"}},
           "cluster": "control-plane"}
    with pytest.raises(AssertionError):
        test_argocd_objects_are_deleted_before_argocd({"resources": [release, app]})
    app["dependsOn"] = ["argocd"]
    test_argocd_objects_are_deleted_before_argocd({"resources": [release, app]})
