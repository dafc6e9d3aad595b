"""Composition: which components each cluster role receives, built from the validated config.

This is the only place (with `stacks.runtime`) that knows about stack configuration;
components receive typed Args.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pulumi

from components.cluster import (
    ClusterHandle,
    cluster_credentials,
    EksCluster,
    EksClusterArgs,
    ExistingCluster,
    ExistingClusterArgs,
    NodeGroupArgs,
)
from components.external_secrets import ExternalSecrets, ExternalSecretsArgs
from components.gatekeeper import Gatekeeper, GatekeeperArgs
from components.inventory import CredentialInventory
from policy.labels import TENANT_NAMESPACE_LABEL
from platformctl.charts import ChartError, pinned_charts, verified
from stacks.config import ClusterSpec, ConfigError, PlatformConfig
from stacks.control_plane import build_control_plane
from stacks.promotion import build_public_images
from stacks.tenants import build_tenants, tenant_platform
from stacks.federation import build_federation
from stacks.services import PLATFORM_NAMESPACES
from stacks.vault_federation import build_vault_federation

# PlatformConfig.clusters fields to the cluster names used in resource names and the plan.
CLUSTER_NAMES = {"control_plane": "control-plane", "dev": "dev", "prod": "prod"}


def cluster_from_spec(role: str, spec: ClusterSpec, protect: bool) -> ClusterHandle:
    if spec.kubeconfig is not None:
        kc = spec.kubeconfig
        return ExistingCluster(
            role,
            ExistingClusterArgs(
                role=role,
                server=kc.server,
                ca_data=kc.ca_data,
                kubernetes_version=kc.kubernetes_version,
                kubeconfig_path=kc.path,
                kubeconfig_content=pulumi.Output.secret(kc.content.get_secret_value()) if kc.content else None,
                context=kc.context,
                service_account_issuer=kc.service_account_issuer,
            ),
        ).handle
    eks = spec.eks
    assert eks is not None
    return EksCluster(
        role,
        EksClusterArgs(
            role=role,
            region=eks.region,
            kubernetes_version=eks.kubernetes_version,
            node_groups=[NodeGroupArgs(**group.model_dump()) for group in eks.node_groups],
            admin_principal_arns=list(eks.admin_principal_arns),
            vpc_cidr=eks.vpc.cidr if eks.vpc else None,
            availability_zones=(
                list(eks.vpc.availability_zones or [f"{eks.region}{zone}" for zone in "abc"]) if eks.vpc else []
            ),
            private_subnet_ids=list(eks.subnets.private) if eks.subnets else [],
            public_subnet_ids=list(eks.subnets.public) if eks.subnets else [],
            endpoint_public=eks.endpoint_access.public,
            endpoint_private=eks.endpoint_access.private,
            public_access_cidrs=list(eks.endpoint_access.public_cidrs),
            protect=protect,
        ),
    ).handle


@dataclass(frozen=True)
class Baseline:
    gatekeeper: Gatekeeper | None
    external_secrets: ExternalSecrets | None


def add_cluster_baseline(cluster: ClusterHandle, config: PlatformConfig) -> Baseline:
    """What every cluster receives: policy and secret sync."""
    gatekeeper = external_secrets = None
    policy, sync = config.services.settings("gatekeeper"), config.services.settings("external_secrets")
    if policy.enabled:
        gatekeeper = Gatekeeper(
            f"{cluster.role}-gatekeeper",
            cluster,
            GatekeeperArgs(
                allowed_registries=[f"harbor.{config.domain}"],
                tenant_namespace_selector={"matchLabels": {TENANT_NAMESPACE_LABEL: "true"}},
                platform_namespaces=PLATFORM_NAMESPACES,
                replicas=policy.replicas,
                chart_version=policy.chart_version,
                resources=policy.resources,
            ),
        )
    if sync.enabled:
        external_secrets = ExternalSecrets(
            f"{cluster.role}-external-secrets",
            cluster,
            ExternalSecretsArgs(
                replicas=sync.replicas,
                chart_version=sync.chart_version,
                resources=sync.resources,
            ),
        )
    return Baseline(gatekeeper, external_secrets)


def kubernetes_versions(config: PlatformConfig) -> dict[str, str]:
    """Each cluster's Kubernetes minor version, by cluster name (what its charts render for)."""
    return {name: getattr(config.clusters, field).kubernetes_version for field, name in CLUSTER_NAMES.items()}


def local_charts(config: PlatformConfig, project_dir: Path) -> str | None:
    """The air-gapped chart directory (absolute), every pinned chart in it checked against charts.lock.

    Raises ConfigError naming `platform:charts.localDir` when a chart is missing or differs.
    """
    if config.charts.local_dir is None:
        return None
    base = (project_dir / config.charts.local_dir).resolve()
    problems = []
    for chart in pinned_charts():
        try:
            if verified(chart.chart, chart.version, base) is None:
                problems.append(f"{chart.chart} {chart.version} is not in {base}: run `python -m platformctl charts fetch --charts-dir {base}`")
        except ChartError as err:
            problems.append(str(err))
    if problems:
        raise ConfigError("platform:charts.localDir", problems)
    return str(base)


def build_platform(config: PlatformConfig, charts_dir: str | None = None) -> dict[str, pulumi.Input[object]]:
    """Declare the whole platform; returns the stack outputs. `charts_dir`: see `local_charts`."""
    inventory = CredentialInventory()  # one per run: every part registers what it creates
    clusters = {
        name: replace(
            cluster_from_spec(name, getattr(config.clusters, field), bool(config.protect)),
            local_charts=charts_dir,
        )
        for field, name in CLUSTER_NAMES.items()
    }
    inventory.register(*cluster_credentials(clusters))
    baselines = {name: add_cluster_baseline(handle, config) for name, handle in clusters.items()}
    plane = build_control_plane(clusters["control-plane"], config, inventory)
    control_plane = plane.outputs
    argocd_federation = build_federation(clusters, config, plane, inventory)
    federation = build_vault_federation(config, clusters, plane.vault, plane.gitlab, inventory=inventory)
    policies = {name: b.gatekeeper.templates for name, b in baselines.items() if b.gatekeeper is not None}
    platform = tenant_platform(config, clusters, plane, federation.vault, policies, federation.inventory, argocd_federation)
    build_public_images(config, platform)  # the quarantine and the promoter (stacks/promotion.py)
    build_tenants(
        platform,
        config,
        {e: b.external_secrets.release for e, b in baselines.items() if b.external_secrets is not None},
    )
    return {
        **control_plane,
        **federation.outputs(),  # last: tenants register their credentials first
        "clusters": {
            name: {"endpoint": handle.endpoint, "oidcIssuerUrl": handle.oidc_issuer_url, "eks": handle.is_eks}
            for name, handle in clusters.items()
        },
    }
