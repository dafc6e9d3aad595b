"""Composition: which components each cluster role receives, built from the validated config.

This is the only place (with `stacks.runtime`) that knows about stack configuration;
components receive typed Args.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi

from components.cluster import (
    ClusterHandle,
    cluster_credentials,
    EksCluster,
    EksClusterArgs,
    ExistingCluster,
    ExistingClusterArgs,
    NatGateways,
    NodeGroupArgs,
    Taint,
)
from components import alerting, image_verifier, netpol_check, velero
from components.common import AlertRoutes
from components.gitlab import SLICE as GITLAB
from components.harbor import SLICE as HARBOR
from components.vault import SLICE as VAULT
from components.backups import BackupStore
from components.inventory import CredentialInventory
from components import tls
from components.network import VpcNetwork
from components.service import WORKLOAD_CLUSTERS, AcmeSettings, CertificateAuthority, ClusterParts
from components.tenancy import TenantPlatform
from components.tenant_names import namespace_name
from policy.labels import TENANT_LABEL
from platformctl.backups import MARGIN as BACKUP_MARGIN, longest_interval
from platformctl.charts import ChartError, pinned_charts, verified
from stacks.config import ClusterSpec, ConfigError, PlatformConfig, dedicated_group_name
from stacks.backups import backup_expectations, build_backup_jobs
from stacks.control_plane import build_control_plane
from stacks.promotion import build_public_images
from stacks.tenants import build_tenants, tenant_platform
from stacks.federation import build_federation
from stacks.merge_request_bot import build_merge_request_bot
from stacks.services import CLUSTER_ADDONS, PLATFORM_NAMESPACES
from stacks.vault_federation import build_vault_federation

# PlatformConfig.clusters fields to the cluster names used in resource names and the plan.
CLUSTER_NAMES = {"control_plane": "control-plane", "dev": "dev", "prod": "prod"}


def spec_of(config: PlatformConfig, role: str) -> ClusterSpec:
    """The stack config's spec of the cluster named `role` (CLUSTER_NAMES)."""
    return getattr(config.clusters, next(field for field, name in CLUSTER_NAMES.items() if name == role))


def dedicated_namespaces(config: PlatformConfig, role: str) -> dict[str, str]:
    """A workload cluster's namespaces of tenants with nodes of their own -> their tenant (none on the control plane)."""
    if role not in WORKLOAD_CLUSTERS:
        return {}
    return {namespace_name(t.name, role): t.name for t in config.tenants if t.dedicated_nodes is not None}


def dedicated_node_groups(config: PlatformConfig) -> list[NodeGroupArgs]:
    """A workload cluster's group for each tenant with nodes of its own, `tenant-<tenant>`: tainted and labelled
    `platform.io/tenant=<tenant>`, which only that tenant's pods tolerate and select (components/gatekeeper.py)."""
    return [
        NodeGroupArgs(name=dedicated_group_name(t.name), **nodes.model_dump(), labels={TENANT_LABEL: t.name},
                      taints=[Taint(key=TENANT_LABEL, value=t.name, effect="NoSchedule")])
        for t in config.tenants if (nodes := t.dedicated_nodes) is not None
    ]


def cluster_from_spec(
    role: str, spec: ClusterSpec, protect: bool, reached_from: VpcNetwork | None = None, tenant_groups: Sequence[NodeGroupArgs] = (),
) -> ClusterHandle:
    """`reached_from`: the control plane's VPC, when it peers with this cluster's (EKS both). `tenant_groups`: the node
    groups of tenants with nodes of their own, on EKS (a kubeconfig cluster's nodes are the operator's)."""
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
            node_groups=[*(NodeGroupArgs(**group.model_dump(exclude={"taints"}), taints=list(group.taints)) for group in eks.node_groups),
                         *tenant_groups],
            admin_principal_arns=list(eks.admin_principal_arns),
            vpc_cidr=eks.vpc.cidr if eks.vpc else None,
            availability_zones=eks.availability_zones,
            nat_gateways=eks.vpc.nat_gateways if eks.vpc else NatGateways.PER_ZONE,
            private_subnet_ids=list(eks.subnets.private) if eks.subnets else [],
            public_subnet_ids=list(eks.subnets.public) if eks.subnets else [],
            endpoint_public=eks.endpoint_access.public,
            endpoint_private=eks.endpoint_access.private,
            public_access_cidrs=list(eks.endpoint_access.public_cidrs),
            protect=protect,
            reached_from=reached_from,
        ),
    ).handle


def add_cluster_addons(
    cluster: ClusterHandle, config: PlatformConfig, inventory: CredentialInventory,
    acme: AcmeSettings | None = None, ca: CertificateAuthority | None = None,
    harbor_provider: pulumi.ProviderResource | None = None, backups: BackupStore | None = None,
    control_plane_ingress: tuple[pulumi.Input[str], ...] = (),
) -> dict[str, Any]:
    """The add-on slices enabled for this cluster, in registry order: slice key -> component. `control_plane_ingress`:
    a workload cluster's (ClusterParts.control_plane_ingress)."""
    parts = ClusterParts(
        cluster, config.domain, bool(config.protect), PLATFORM_NAMESPACES, inventory, acme=acme, ca=ca,
        service_settings=config.services.settings, object_store=config.object_store.target() if config.object_store else None,
        harbor_provider=harbor_provider, backups=backups,
        control_plane_ingress=control_plane_ingress, apps_domain=config.tenant_domain,
        dedicated_namespaces=dedicated_namespaces(config, cluster.role),
        alert_routes=alert_routes(config, cluster.role),
    )
    for service in CLUSTER_ADDONS:
        settings = config.services.settings(service.key)
        if settings.enabled and cluster.role in service.clusters:
            parts.declared[service.key] = service.declare_on(parts, settings)
    return parts.declared


def alert_routes(config: PlatformConfig, role: str) -> AlertRoutes:
    """Where cluster `role`'s alerts go (platform:alerting), and on a workload cluster with Velero how old its Schedules'
    last success may grow: their cron's longest gap and the margin `platformctl backups check` allows its stores."""
    alerting, velero_settings = config.alerting, config.services.settings(velero.SLICE.key)
    heartbeat = getattr(alerting.heartbeats, next(field for field, name in CLUSTER_NAMES.items() if name == role))
    max_age = (longest_interval(velero_settings.options["schedule"]) + BACKUP_MARGIN
               if velero_settings.enabled and role in velero.SLICE.clusters else None)
    return AlertRoutes(
        receiver=pulumi.Output.secret(alerting.receiver.url.get_secret_value()) if alerting.receiver else None,
        receiver_kind=alerting.receiver.kind if alerting.receiver else "webhook",
        heartbeat=pulumi.Output.secret(heartbeat.get_secret_value()) if heartbeat else None,
        backup_max_age_seconds=int(max_age.total_seconds()) if max_age is not None else None,
    )


def warn_unrouted_alerts(config: PlatformConfig) -> None:
    """Alerts without a receiver show in each cluster's Alertmanager and reach nobody."""
    if not config.services.settings(alerting.SLICE.key).enabled:
        return
    if config.alerting.receiver is None:
        pulumi.log.warn(
            "platform:alerting.receiver is unset: the platform's alerts (a failing backup, a sealed Vault, a node NotReady, "
            "an expiring certificate) evaluate and show in each cluster's Alertmanager but reach nobody. Set it with "
            "`pulumi config set --secret --path platform:alerting.receiver.url https://...` (README: Alerts)."
        )


def add_image_verifiers(config: PlatformConfig, platform: TenantPlatform, inventory: CredentialInventory) -> None:
    """The image verifier on each workload cluster, as one of its add-ons: declared once the
    control plane exists, whose CA it must trust to read signatures from Harbor."""
    settings = config.services.settings(image_verifier.SLICE.key)
    if not settings.enabled:
        return
    for name in image_verifier.SLICE.clusters:
        platform.addons.setdefault(name, {})[image_verifier.SLICE.key] = image_verifier.declare_on(
            platform.clusters[name], settings, platform.ca_bundle, PLATFORM_NAMESPACES, inventory,
            platform.control_plane_ingress, config.object_store.target() if config.object_store else None,
        )


def apps_acme(config: PlatformConfig, acme: AcmeSettings | None) -> AcmeSettings | None:
    """The workload clusters' ACME settings: the control plane's, in platform:appsDomain's own zone
    (platform:dns.appsHostedZoneId) where the tenants' apps have a domain of their own."""
    zone = config.dns.apps_hosted_zone_id if config.dns is not None else None
    return replace(acme, hosted_zone_id=zone) if acme is not None and zone is not None else acme


def warn_shared_site(config: PlatformConfig) -> None:
    """Without platform:appsDomain the tenants' apps stay under platform:domain, as stacks made before it had them."""
    if config.apps_domain is None:
        pulumi.log.warn(
            f"platform:appsDomain is unset: tenants' apps are served at <tenant>.<env>.{config.domain}, inside the platform's "
            "own site, so any tenant's app can set cookies for it that browsers send to GitLab, Harbor, ArgoCD, Vault and "
            "OpenUnison (a cookie bomb locks their users out; a tossed session cookie signs them in as the tenant). Set "
            "platform:appsDomain to a domain whose registrable domain differs from platform:domain's (README: Tenants' hosts "
            "and cookies)."
        )


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
    warn_shared_site(config)
    warn_unrouted_alerts(config)
    inventory = CredentialInventory()  # one per run: every part registers what it creates
    clusters: dict[str, ClusterHandle] = {}
    for field, name in CLUSTER_NAMES.items():  # the control plane first: the others' private paths start there
        hub = clusters["control-plane"].network if clusters else None
        spec = getattr(config.clusters, field)
        tenant_groups = dedicated_node_groups(config) if name in WORKLOAD_CLUSTERS else []
        handle = replace(cluster_from_spec(name, spec, bool(config.protect), reached_from=hub, tenant_groups=tenant_groups),
                         local_charts=charts_dir)
        # First on each cluster (EKS always): the check that its CNI enforces NetworkPolicy, which every namespace waits for.
        checked = spec.kubeconfig is None or spec.kubeconfig.network_policy_check
        clusters[name] = netpol_check.checked(handle) if checked else handle
    inventory.register(*cluster_credentials(clusters))
    addons = {"control-plane": add_cluster_addons(clusters["control-plane"], config, inventory)}
    plane = build_control_plane(clusters["control-plane"], config, inventory)
    # The workload clusters' add-ons after the control plane: their certificates chain to its CA.
    issuer, harbor = plane.parts.get(tls.SLICE), plane.parts.get(HARBOR)
    for name in WORKLOAD_CLUSTERS:
        addons[name] = add_cluster_addons(
            clusters[name], config, inventory, apps_acme(config, plane.parts.settings.acme), issuer.authority if issuer else None,
            harbor.provider if harbor else None, plane.parts.backups, plane.ingress_networks,
        )
    control_plane = plane.outputs
    argocd_federation = build_federation(clusters, config, plane, inventory)
    vault = plane.parts.get(VAULT)
    backups = plane.parts.backups
    federation = build_vault_federation(config, clusters, vault, plane.parts.get(GITLAB), inventory=inventory, backups=backups)
    build_backup_jobs(clusters["control-plane"], backups, vault, harbor, federation.vault)
    platform = tenant_platform(config, clusters, plane, federation.vault, addons, federation.inventory, argocd_federation)
    add_image_verifiers(config, platform, inventory)
    build_public_images(config, platform)  # the quarantine and the promoter (stacks/promotion.py)
    build_tenants(platform, config)
    build_merge_request_bot(config, plane, inventory)
    return {
        **control_plane,
        **federation.outputs(),  # last: tenants register their credentials first
        **backup_expectations(backups),  # after the tenants: their Velero schedules
        "clusters": {
            name: {"endpoint": handle.endpoint, "oidcIssuerUrl": handle.oidc_issuer_url, "eks": handle.is_eks,
                   # Where its nodes' traffic to the internet comes from, for partners' allowlists.
                   **({"egressAddresses": list(handle.network.egress_addresses)} if handle.network else {})}
            for name, handle in clusters.items()
        },
    }
