"""The registry of service slices (stacks/services.py) and what the program derives from it."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from components.service import ControlPlaneParts, ServiceSettings
from components.versions import CHARTS
from stacks.config import ConfigError, Services, load_platform_config
from stacks.services import CONTROL_PLANE, FOUNDATION, PLATFORM_NAMESPACES, SERVICES, SYSTEM_NAMESPACES

ROOT = Path(__file__).resolve().parent.parent


def test_every_slice_is_a_config_key_with_its_chart_and_namespace() -> None:
    keys = [s.key for s in SERVICES]
    assert len(set(keys)) == len(keys)
    assert list(Services.model_fields) == keys  # platform:services.<key>, one per slice
    for service in SERVICES:
        assert service.chart in CHARTS, service.key
        assert service.namespace.reason.strip(), service.key
    assert Services().settings("vault").replicas == 3  # a slice's default sizing reaches the config


def test_platform_namespaces_come_from_the_slices_once_each() -> None:
    names = [n.name for n in PLATFORM_NAMESPACES]
    assert len(set(names)) == len(names)
    assert names[: len(SYSTEM_NAMESPACES)] == ["kube-system", "kube-public", "kube-node-lease"]
    assert {s.namespace.name for s in SERVICES} <= set(names)
    # Only these stay under Gatekeeper's webhook: ArgoCD's, where tenant Applications live, and Velero's,
    # where its node agent creates pods (PlatformNodeAgentPods).
    assert [n.name for n in PLATFORM_NAMESPACES if not n.webhook_exempt] == ["argocd", "velero"]


def test_every_component_namespace_belongs_to_a_slice_or_the_federation() -> None:
    modules = [importlib.import_module(f"components.{p.stem}") for p in sorted((ROOT / "components").glob("*.py"))]
    declared = {m.__name__: m.NAMESPACE for m in modules if isinstance(getattr(m, "NAMESPACE", None), str)}
    assert {m: ns for m, ns in declared.items() if ns not in {n.name for n in PLATFORM_NAMESPACES}} == {}
    sliced = {m.__name__ for m in modules if getattr(m, "SLICE", None) in SERVICES}
    assert set(declared) - sliced == {"components.kube_oidc_proxy"}  # declared by the federation, per workload cluster


def test_the_control_plane_declares_its_slices_and_the_rest_run_everywhere() -> None:
    assert {s.key for s in CONTROL_PLANE} == {
        "cert_manager", "ingress", "openunison", "gitlab", "harbor", "vault", "argocd", "data_stores", "gitlab_runner",
    }
    assert {FOUNDATION.tls, FOUNDATION.ingress, FOUNDATION.identity} <= set(CONTROL_PLANE)
    # The image verifier: a workload-cluster add-on declared once the control plane's CA exists.
    assert {s.key for s in SERVICES if s.declare is None} == {
        "gatekeeper", "external_secrets", "aws_load_balancer_controller", "cluster_autoscaler", "metallb", "image_verifier",
        "workload_ingress", "argo_rollouts", "metrics_server", "prometheus", "dragonfly", "velero", "alerting"}
    # The runner's add-on on the control plane carries its settings to the tenants' runners.
    assert {s.key for s in SERVICES if s.is_add_on} == {
        "gatekeeper", "external_secrets", "aws_load_balancer_controller", "cluster_autoscaler", "metallb", "gitlab_runner",
        "cert_manager", "workload_ingress", "argo_rollouts", "metrics_server", "prometheus", "dragonfly", "velero", "alerting"}
    # The golden path's add-ons run where tenants do (cert-manager also on the control plane, as a service).
    assert {s.key for s in SERVICES if s.is_add_on and s.clusters == ("dev", "prod")} == {
        "cert_manager", "workload_ingress", "argo_rollouts", "metrics_server", "prometheus", "dragonfly", "velero",
        "external_secrets"}  # the tenants' stores are there; none on the control plane
    assert {s.key for s in SERVICES if s.tenant is not None} == {
        "argocd", "vault", "gitlab", "harbor", "openunison", "image_verifier", "gitlab_runner", "velero",
        "prometheus"}  # a query proxy per virtual-cluster tenant environment (Dragonfly's preheat: `approved`'s, not a tenant's)


def test_a_chart_add_on_is_its_release_on_each_cluster_it_names(plan: dict) -> None:
    """`addon=`: the slice's component on each of its clusters, named `<cluster>-<key>`, with the
    slice's chart released in the slice's namespace as its child."""
    addons = [s for s in SERVICES if s.addon is not None]
    assert {s.key for s in addons} == {"argo_rollouts", "metrics_server", "external_secrets"}  # Prometheus' Args name its environment
    by_urn = {r["urn"]: r for r in plan["resources"]}
    releases_of = {(r["cluster"], r["inputs"]["chart"]): r["urn"] for r in by_urn.values() if r["type"] == "kubernetes:helm.sh/v3:Release"}
    for service in addons:
        components = [r for r in plan["resources"] if r["type"] == service.addon.type_token]
        assert sorted(r["name"] for r in components) == sorted(f"{c}-{service.key.replace('_', '-')}" for c in service.clusters)
        for component in components:
            releases = [r for r in by_urn.values()
                        if r["parent"] == component["urn"] and r["type"] == "kubernetes:helm.sh/v3:Release"]
            assert [(r["inputs"]["chart"], r["inputs"]["namespace"]) for r in releases] == [
                (service.chart, service.namespace.name)], component["name"]
            # `after=`: its release waits for those slices' releases on the same cluster (cert-manager's).
            for before in service.after:
                assert releases_of[(releases[0]["cluster"], before.chart)] in releases[0]["dependsOn"], (component["name"], before.key)
    assert {s.key: [a.key for a in s.after] for s in addons if s.after} == {
        "metrics_server": ["cert_manager"], "external_secrets": ["cert_manager"]}


def test_signed_in_services_get_an_oidc_client_and_a_url(plan: dict) -> None:
    signed_in = {s.key for s in CONTROL_PLANE if s.redirect_uris is not None}
    assert signed_in == {"gitlab", "harbor", "vault", "argocd"}
    clients = {r["name"].removeprefix("oidc-") for r in plan["resources"]
               if r["type"] == "random:index/randomPassword:RandomPassword" and r["name"].startswith("oidc-")}
    assert clients == signed_in
    assert set(plan["outputs"]["urls"]) == signed_in | {"openunison"}


def test_a_disabled_service_is_left_out_and_the_foundation_cannot_be() -> None:
    parts = ControlPlaneParts(
        cluster=None,  # type: ignore[arg-type]  # never reached: nothing is declared
        settings=None,  # type: ignore[arg-type]
        inventory=None,  # type: ignore[arg-type]
        service_settings=lambda key: ServiceSettings(enabled=False),
        slices=CONTROL_PLANE,
        foundation=FOUNDATION,
    )
    gitlab = next(s for s in CONTROL_PLANE if s.key == "gitlab")
    assert parts.get(gitlab) is None
    assert parts.oidc_clients() == {}
    with pytest.raises(ValueError, match="platform:services.cert_manager cannot be disabled"):
        parts.tls


def test_a_service_key_outside_the_registry_is_a_config_error() -> None:
    from platformctl.render import read_stack_file

    raw, secret_keys = read_stack_file(ROOT / "Pulumi.dev.yaml")
    raw["platform:services"] = '{"logging": {"enabled": true}}'
    with pytest.raises(ConfigError, match=r"platform:services\.logging"):
        load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secret_keys)


def test_an_add_on_is_declared_on_the_clusters_it_names_in_registry_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from components import external_secrets, gatekeeper
    from components.inventory import CredentialInventory
    from platformctl.render import read_stack_file
    from stacks import platform
    from tests.mock_program import control_plane_cluster, run_program

    raw, secret_keys = read_stack_file(ROOT / "Pulumi.dev.yaml")
    config = load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secret_keys)
    seen: list[object] = []

    def after_gatekeeper(parts, settings):  # type: ignore[no-untyped-def]
        seen.append(parts.get(gatekeeper.SLICE))  # declared earlier on the same cluster
        return "declared"

    only_workloads = replace(external_secrets.SLICE, on_cluster=after_gatekeeper, clusters=("dev", "prod"))
    monkeypatch.setattr(platform, "CLUSTER_ADDONS", (gatekeeper.SLICE, only_workloads))

    def program() -> dict[str, dict[str, object]]:
        cluster = control_plane_cluster()
        return {
            role: platform.add_cluster_addons(replace(cluster, role=role), config, CredentialInventory())
            for role in ("control-plane", "dev")
        }

    declared = run_program(program).result
    assert set(declared["control-plane"]) == {"gatekeeper"}
    assert declared["dev"]["external_secrets"] == "declared"
    assert seen == [declared["dev"]["gatekeeper"]]


def test_each_tenant_part_comes_from_its_services_slice_and_hangs_under_the_tenant(plan: dict) -> None:
    tenants = {r["name"] for r in plan["resources"] if r["type"] == "platform:tenant:Tenant"}
    assert tenants
    children = {(r["type"], r["name"]) for r in plan["resources"] if "::platform:tenant:Tenant$" in r["urn"]}
    for suffix in ("-repositories", "-registry", "-secrets", "-delivery", "-groups"):  # GitLab, Harbor, Vault, ArgoCD, OpenUnison
        found = {(kind, name) for kind, name in children if name.endswith(suffix)}
        assert {name for _, name in found} == {t + suffix for t in tenants}, suffix
        assert all(kind.startswith("platform:") for kind, _ in found), found
