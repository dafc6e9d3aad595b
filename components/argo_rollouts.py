"""Argo Rollouts on a workload cluster: canary and blue-green deployments with automated analysis.

The argo-helm chart with its CRDs (kept when the release goes), the controller only: no dashboard, and no RBAC for traffic-routing providers (the tenants'
canaries weigh by pod count behind the ingress controller, components/tenant_rollout.py).
The chart aggregates Rollout rights into the built-in admin, edit and view roles; the
platform's own tenant roles and ArgoCD's federated role list them themselves.

The controller holds the chart's ClusterRole but Secrets (`CONTROLLER_RULES`, granted by the
platform with `controller.createClusterRole: false`), and reads Secrets in its own namespace only:
its notification Secret and plugin headers are there (argo-rollouts v1.9.0 controller/controller.go,
utils/plugin/downloader.go). An analysis argument from a tenant's Secret (`valueFrom.secretKeyRef`,
analysis/analysis.go resolveArgs) is refused; the tenants' analyses need none (a Job mounts its own
Secrets; the platform's Prometheus takes no credentials, PlatformTenantAnalysis).

Tenants with `isolation: vcluster` get the same chart inside each virtual cluster
(`virtual_cluster_deploy`, deployed by the virtual cluster itself at start): ArgoCD applies their
Rollouts there, where the host's controller cannot see them. Syncing Rollouts to the host instead
(vcluster's `sync.toHost.customResources`) cannot work: the controller rewrites the Services'
selectors, which on the host are the syncer's copies of the virtual Services, and it would create
ReplicaSets and pods on the host that the virtual cluster never sees.
"""

from __future__ import annotations

import base64
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import yaml_text
from components.cluster import ClusterHandle
from components.helm import READ, RBAC_GROUP, chart_archive, rbac_rule
from components.inventory import Credential, projected_token
from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice
from components.versions import CHARTS
from policy.labels import managed_by

NAMESPACE = "argo-rollouts"
ACCOUNT = {"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": NAMESPACE}  # the chart's, named after the release
_ALL = ("create", "get", "list", "watch", "update", "patch", "delete")


# The chart's controller ClusterRole (argo-rollouts 2.41.0 templates/_helpers.tpl roleRules, `providerRBAC.enabled:
# false`: no traffic-routing provider's rights) without its Secrets rule: tests/test_workload_reader_attacks.py checks it against the real render.
CONTROLLER_RULES = [
    rbac_rule(["argoproj.io"], ["rollouts", "rollouts/status", "rollouts/finalizers"], ("get", "list", "watch", "update", "patch")),
    rbac_rule(["argoproj.io"], ["analysisruns", "analysisruns/finalizers", "experiments", "experiments/finalizers"], _ALL),
    rbac_rule(["argoproj.io"], ["analysistemplates", "clusteranalysistemplates"], READ),
    rbac_rule(["apps"], ["replicasets"], _ALL),
    rbac_rule(["", "apps"], ["deployments", "podtemplates"], ("get", "list", "watch", "update")),
    rbac_rule([""], ["services"], ("get", "list", "watch", "patch", "create", "delete")),
    rbac_rule(["coordination.k8s.io"], ["leases"], ("create", "get", "update")),
    rbac_rule([""], ["configmaps"], ("get", "list", "watch", "create", "update")),
    rbac_rule([""], ["pods"], ("list", "update", "watch")),
    rbac_rule([""], ["pods/eviction"], ("create",)),
    rbac_rule([""], ["events"], ("create", "update", "patch")),
    rbac_rule(["networking.k8s.io", "extensions"], ["ingresses"], ("create", "get", "list", "watch", "update", "patch")),
    rbac_rule(["batch"], ["jobs"], _ALL),
]
SECRET_RULES = [rbac_rule([""], ["secrets"], READ)]  # in NAMESPACE only


class ArgoRollouts(ChartAddOn[AddOnArgs]):
    type_token = "platform:argo_rollouts:ArgoRollouts"
    sized_at = ("controller",)

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        # Two replicas by default (leader election: a restart leaves one working). The chart's
        # defaults install the CRDs, keep them on uninstall and leave the dashboard off.
        # The chart's ClusterRole reads every Secret: `grants` holds its rules but that one (and no provider's).
        return {"controller": {"replicas": args.settings.replicas, "createClusterRole": False}}

    def grants(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace) -> list[pulumi.Resource]:
        """CONTROLLER_RULES cluster-wide and SECRET_RULES in its own namespace, for the chart's service account."""
        opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        meta = {"name": "argo-rollouts-controller", "labels": managed_by()}
        role = k8s.rbac.v1.ClusterRole(f"{name}-controller", metadata=meta, rules=CONTROLLER_RULES, opts=opts)
        secrets = k8s.rbac.v1.Role(f"{name}-secrets", metadata={**meta, "namespace": NAMESPACE}, rules=SECRET_RULES, opts=opts)
        return [
            k8s.rbac.v1.ClusterRoleBinding(f"{name}-controller", metadata=meta, subjects=[ACCOUNT], opts=opts,
                                           role_ref={"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role.metadata.name}),
            k8s.rbac.v1.RoleBinding(f"{name}-secrets", metadata={**meta, "namespace": NAMESPACE}, subjects=[ACCOUNT], opts=opts,
                                    role_ref={"apiGroup": RBAC_GROUP, "kind": "Role", "name": secrets.metadata.name}),
        ]

    def extend(self, name: str, cluster: ClusterHandle, args: AddOnArgs) -> None:
        args.inventory.register(controller_credential(
            f"on {cluster.name}",
            f"the {cluster.name} cluster's API server (projected service-account token)",
            "the chart's ClusterRole but Secrets: Rollouts, their ReplicaSets, Services, Ingresses and analyses in every "
            f"namespace; Secrets in {NAMESPACE} only",
        ))


# The controller inside a virtual cluster: its pod is synced to the tenant's host namespace, so it
# takes the tenant's quota and constraints (image from Harbor, pulled Always, a CPU limit).
VIRTUAL_CONTROLLER_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}


def virtual_cluster_values(registry: str) -> dict[str, Any]:
    """The chart's values inside a virtual cluster: one controller, its image from `registry`
    (promote quay.io/argoproj/argo-rollouts:<appVersion> with APPROVED_PREFIX=vcluster)."""
    controller = {"replicas": 1, "image": {"registry": registry, "pullPolicy": "Always"}, "resources": VIRTUAL_CONTROLLER_RESOURCES}
    return {"controller": controller, "providerRBAC": {"enabled": False}}


def virtual_cluster_deploy(registry: str, local_charts: str | None = None) -> dict[str, Any]:
    """vCluster's `experimental.deploy.vcluster.helm` entry: the pinned chart, installed by the
    virtual cluster into its `argo-rollouts` namespace, CRDs included. Air-gapped (`local_charts`):
    the verified local chart itself goes in the entry (`bundle`, base64 of the .tgz, which vCluster
    installs instead of pulling the chart; loft-sh/vcluster pkg/controllers/deploy/deploy.go)."""
    chart = CHARTS["argo-rollouts"]
    entry = {
        "chart": {"name": chart.chart, "repo": chart.repo, "version": chart.version},
        "release": {"name": "argo-rollouts", "namespace": NAMESPACE},
        "values": yaml_text.dump(virtual_cluster_values(registry), sort_keys=True),
    }
    if local_charts is not None:
        entry["bundle"] = base64.b64encode(chart_archive(f"{local_charts}/{chart.chart}/{chart.version}")).decode()
    return entry


def controller_credential(
    where: str, issuer: str, scope: str, *, runs: str | None = None, resources: tuple[str, ...] = ()
) -> Credential:
    """The controller's projected service-account token `where` (on a cluster, or inside a virtual
    cluster on it); `runs`: where the holder runs, if said shorter than `where`."""
    return projected_token(
        f"service-account token of Argo Rollouts {where}", issuer,
        f"the Argo Rollouts controller ({NAMESPACE}/argo-rollouts) {runs or where}", scope, resources=resources,
    )


def virtual_cluster_credential(virtual_cluster: str, cluster: str, release_resource: str) -> Credential:
    """The controller's own token inside a virtual cluster (`release_resource`: the vcluster release)."""
    return controller_credential(
        f"inside the virtual cluster {virtual_cluster} on {cluster}",
        f"the virtual cluster {virtual_cluster}'s API server (projected service-account token)",
        "the chart's ClusterRole inside that virtual cluster only (Rollouts, their ReplicaSets, Services and analyses); "
        "nothing on the host",
        runs=f"inside {virtual_cluster}",
        resources=(release_resource,),
    )


SLICE: ServiceSlice[ArgoRollouts] = ServiceSlice(
    key="argo_rollouts",
    namespace=PlatformNamespace(NAMESPACE, "the Argo Rollouts controller, which runs every tenant's Rollouts"),
    chart="argo-rollouts",
    default_replicas=2,
    addon=ArgoRollouts,
    clusters=WORKLOAD_CLUSTERS,
)
