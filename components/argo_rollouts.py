"""Argo Rollouts on a workload cluster: canary and blue-green deployments with automated analysis.

The argo-helm chart with its CRDs (kept when the release goes), the controller only: no dashboard, and no RBAC for traffic-routing providers (the tenants'
canaries weigh by pod count behind the ingress controller, components/tenant_rollout.py).
The chart aggregates Rollout rights into the built-in admin, edit and view roles; the
platform's own tenant roles and ArgoCD's federated role list them themselves.

The controller holds the chart's ClusterRole's rules (granted by the platform with
`controller.createClusterRole: false`), each where it needs it: its reads cluster-wide (its informers
watch every namespace), its writes (ReplicaSets, Jobs, Services, pods' labels, ...) only in the
namespaces whose Rollouts it runs, the tenants' and the sandboxes' (`TENANT_ROLE`, bound there by
components/tenant.py through `serve`), and Secrets, ConfigMaps and its leader election Lease in its
own namespace only: its notification Secret and plugin headers are there (argo-rollouts v1.9.0
controller/controller.go, utils/plugin/downloader.go). It runs the tenants' analyses, so a controller
taken over must not reach past their namespaces: a ReplicaSet or Job it could create in a platform
namespace would run any image as any account there. An analysis argument from a tenant's Secret
(`valueFrom.secretKeyRef`, analysis/analysis.go resolveArgs) is refused; the tenants' analyses need
none (a Job mounts its own Secrets; the platform's Prometheus takes no credentials, PlatformTenantAnalysis).

Tenants with `isolation: vcluster` get the same chart inside each virtual cluster
(`virtual_cluster_deploy`, deployed by the virtual cluster itself at start): ArgoCD applies their
Rollouts there, where the host's controller cannot see them. Syncing Rollouts to the host instead
(vcluster's `sync.toHost.customResources`) cannot work: the controller rewrites the Services'
selectors, which on the host are the syncer's copies of the virtual Services, and it would create
ReplicaSets and pods on the host that the virtual cluster never sees.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import prometheus_query, yaml_text
from components.cluster import ClusterHandle
from components.egress import Reach, to_pods_in
from components.helm import READ, bind, chart_archive, grant, rbac_rule
from components.inventory import projected_token
from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice
from components.versions import CHARTS
from policy.labels import managed_by

NAMESPACE = "argo-rollouts"
ACCOUNT = {"kind": "ServiceAccount", "name": "argo-rollouts", "namespace": NAMESPACE}  # the chart's, named after the release
_ALL = ("create", "get", "list", "watch", "update", "patch", "delete")


# The chart's controller ClusterRole (argo-rollouts 2.41.0 templates/_helpers.tpl roleRules, `providerRBAC.enabled:
# false`: no traffic-routing provider's rights) without what only its own namespace holds: tests/test_workload_reader_attacks.py
# checks all the rules below against the real render.
_WORKLOAD_RULES = [
    rbac_rule(["argoproj.io"], ["rollouts", "rollouts/status", "rollouts/finalizers"], ("get", "list", "watch", "update", "patch")),
    rbac_rule(["argoproj.io"], ["analysisruns", "analysisruns/finalizers", "experiments", "experiments/finalizers"], _ALL),
    rbac_rule(["argoproj.io"], ["analysistemplates", "clusteranalysistemplates"], READ),
    rbac_rule(["apps"], ["replicasets"], _ALL),
    rbac_rule(["", "apps"], ["deployments", "podtemplates"], ("get", "list", "watch", "update")),
    rbac_rule([""], ["services"], ("get", "list", "watch", "patch", "create", "delete")),
    rbac_rule([""], ["pods"], ("list", "update", "watch")),
    rbac_rule([""], ["pods/eviction"], ("create",)),
    rbac_rule(["networking.k8s.io", "extensions"], ["ingresses"], ("create", "get", "list", "watch", "update", "patch")),
    rbac_rule(["batch"], ["jobs"], _ALL),
]
_EVENTS = rbac_rule([""], ["events"], ("create", "update", "patch"))  # the recorder's, on the object's namespace


def _verbs(rules: list[dict[str, Any]], reads: bool) -> list[dict[str, Any]]:
    """`rules` with only their reads (`reads`) or only their other verbs; rules left with none dropped."""
    return [{**rule, "verbs": verbs} for rule in rules if (verbs := [v for v in rule["verbs"] if (v in READ) == reads])]


# Cluster-wide, reads only: its informers list and watch every namespace (cmd/rollouts-controller/main.go
# lines 155-180, metav1.NamespaceAll unless --namespaced).
CLUSTER_RULES = _verbs(_WORKLOAD_RULES, reads=True)
# In each namespace whose Rollouts it runs (RoleBindings of TENANT_ROLE, `serve`): what it changes there.
TENANT_RULES = [*_verbs(_WORKLOAD_RULES, reads=False), _EVENTS]
TENANT_ROLE = "argo-rollouts-tenant"
# What a tenant namespace's PlatformTenantBindingSubjects lets a RoleBinding bind: the account, to TENANT_ROLE only.
TENANT_BINDING = {"namespace": NAMESPACE, "name": ACCOUNT["name"], "clusterRole": TENANT_ROLE}
# In its own namespace only: its notification Secret and ConfigMap, its configuration (utils/config/config.go
# line 37), its leader election Lease (controller/controller.go lines 503-506), its events.
NAMESPACE_RULES = [
    rbac_rule([""], ["secrets"], READ),
    rbac_rule([""], ["configmaps"], ("get", "list", "watch", "create", "update")),
    rbac_rule(["coordination.k8s.io"], ["leases"], ("create", "get", "update")),
    _EVENTS,
]


class ArgoRollouts(ChartAddOn[AddOnArgs]):
    type_token = "platform:argo_rollouts:ArgoRollouts"
    sized_at = ("controller",)
    # No webhook, no dashboard, and nothing scrapes its metrics (8090) or calls its health port (8080, the kubelet's
    # probes come from the node): no other pod connects to it. Its analyses are its own outgoing calls.
    own_pods_only = True

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        # Two replicas by default (leader election: a restart leaves one working). The chart's
        # defaults install the CRDs, keep them on uninstall and leave the dashboard off.
        # The chart's ClusterRole reads every Secret and writes in every namespace: `grants` places its rules instead (no provider's).
        return {"controller": {"replicas": args.settings.replicas, "createClusterRole": False}}

    def egress(self, args: AddOnArgs) -> Sequence[Reach]:
        """Beside its API server, the tenants' analyses: PlatformTenantAnalysis admits the job provider (its pods run in
        the tenant's namespace) and the prometheus provider at the host's query proxies only (prometheus.analysis_provider),
        no web, plugin or notification call; no plugin or notifier is configured (argo-rollouts v1.9.0
        utils/plugin/downloader.go downloads only what its ConfigMap names)."""
        return [Reach("analyses", {}, [to_pods_in(prometheus_query.PROXIES_NAMESPACE, prometheus_query.PROXY_LABELS, [prometheus_query.PORT])])]

    def grants(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace) -> list[pulumi.Resource]:
        """CLUSTER_RULES cluster-wide and NAMESPACE_RULES in its own namespace, for the chart's service account;
        TENANT_RULES as a ClusterRole that `serve` binds in each namespace whose Rollouts it runs."""
        opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        # Its Role was `<name>-secrets` when it held Secrets only: the same object, renamed in the program.
        own = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(name=f"{name}-secrets")]))
        self._tenant_role = k8s.rbac.v1.ClusterRole(
            f"{name}-tenant", metadata={"name": TENANT_ROLE, "labels": managed_by()}, rules=TENANT_RULES, opts=opts)
        return [grant(f"{name}-controller", "argo-rollouts-controller", ACCOUNT, CLUSTER_RULES, opts),
                grant(f"{name}-namespace", "argo-rollouts-controller", ACCOUNT, NAMESPACE_RULES, own, NAMESPACE)]

    def serve(self, name: str, namespace: str, opts: pulumi.ResourceOptions) -> pulumi.Resource:
        """Let the controller run the Rollouts of `namespace` (a tenant's or a sandbox's): TENANT_ROLE there."""
        return bind(name, ACCOUNT, self._tenant_role, opts, namespace, binding="argo-rollouts")

    def extend(self, name: str, cluster: ClusterHandle, args: AddOnArgs) -> None:
        # Inside a virtual cluster its syncer mints the controller's token (components/tenant.py `virtual_cluster_tokens`).
        args.inventory.register(projected_token(
            f"service-account token of Argo Rollouts on {cluster.name}",
            f"the {cluster.name} cluster's API server (projected service-account token)",
            f"the Argo Rollouts controller ({NAMESPACE}/argo-rollouts) on {cluster.name}",
            "the chart's ClusterRole's rules: reads Rollouts, their ReplicaSets, pods, Services, Ingresses and analyses' Jobs in every "
            f"namespace; changes them in the tenants' and sandboxes' namespaces only ({TENANT_ROLE}); Secrets, ConfigMaps and "
            f"its Lease in {NAMESPACE} only",
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


SLICE: ServiceSlice[ArgoRollouts] = ServiceSlice(
    key="argo_rollouts",
    namespace=PlatformNamespace(NAMESPACE, "the Argo Rollouts controller, which runs every tenant's Rollouts"),
    chart="argo-rollouts",
    default_replicas=2,
    addon=ArgoRollouts,
    clusters=WORKLOAD_CLUSTERS,
)
