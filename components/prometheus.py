"""Prometheus on a workload cluster: the ingress controller's request metrics, for canary analysis.

Lean on purpose: the prometheus-community chart's server alone (Alertmanager, kube-state-metrics,
node exporter and Pushgateway off) scraping itself and the ingress controller's pods, nothing
else (the chart's default jobs for API servers, nodes and annotated pods are off). Argo Rollouts'
AnalysisRuns query it in-cluster (components/tenant_rollout.py), only through a label-enforcing
proxy that scopes every query to the analysis's own namespace (components/prometheus_query.py);
it is not published.

Traefik names a Service `<namespace>-<service>-<port>@kubernetes` and carries no namespace label,
so the scrape derives `service_namespace` from that name: the longest prefix that is a namespace
of the cluster's environment (`<tenant>-<env>`) followed by a Service and port. One rule, whatever
the tenants (adding one changes nothing here). Longest, so that tenant `pay-dev-x`'s Services are
never `pay`'s (`pay-dev-x-dev-app-80`); a Service whose own name holds `-<env>-` is attributed to
the longer name, which is no tenant's: the stack config refuses a namespace that is another's and a
`-` more, whose Services Traefik would confuse (`pay`'s `x-dev-app` is `pay-dev-x`'s `app`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import argo_rollouts, prometheus_chart, prometheus_query, workload_ingress
from components.cluster import ClusterHandle
from components.common import checksum
from components.egress import Reach, pods, pods_in, tcp
from components.inventory import projected_token
from components.prometheus_query import QueryProxy, QueryProxyArgs
from components.service import (
    WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice, TenantParts,
)
from components.tenancy import Isolation
from policy.labels import VCLUSTER_MANAGED_BY_LABEL, VCLUSTER_NAMESPACE_LABEL

NAMESPACE = prometheus_query.PROXIES_NAMESPACE
RELEASE = "prometheus"
# The chart's server Service (`<release>-server`, port 80): the query proxies' upstream.
URL = f"http://{RELEASE}-server.{NAMESPACE}.svc.cluster.local"
SERVER_PORT = 9090  # the server container's port behind the Service (what NetworkPolicies admit)
SERVER_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/component": "server"}  # the chart's
# Where analyses send their queries instead: the cluster's proxy (inside a virtual cluster, the
# same name is the host's proxy of that virtual cluster, replicated in).
QUERY_URL = f"http://{prometheus_query.NAME}.{NAMESPACE}.svc.cluster.local"
SERVICE_NAMESPACE_LABEL = "service_namespace"  # the label the proxies enforce
SCRAPE_JOB = "ingress"
RETENTION = "15d"
CONFIG_CHECKSUM = "platform.io/scrape-config-checksum"  # a new scrape config restarts the server


def namespace_relabeling(environment: str) -> dict[str, Any]:
    """`service_namespace` from Traefik's `service` label (Prometheus anchors the regex at both ends; RE2)."""
    return {
        "source_labels": ["service"],
        "regex": f"([a-z0-9-]+-{environment})-[a-z0-9-]+-[a-z0-9]+@kubernetes",
        "target_label": SERVICE_NAMESPACE_LABEL,
        "replacement": "$1",
    }


def ingress_scrape_job(environment: str) -> dict[str, Any]:
    """Every ingress controller pod's `metrics` port, labelled with its namespace and pod, and
    each Service's series with the namespace of the Service."""
    return {
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [workload_ingress.NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
             "regex": workload_ingress.METRICS_PORT},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
        "metric_relabel_configs": [namespace_relabeling(environment)],
    }


@dataclass(frozen=True, kw_only=True)
class PrometheusArgs(AddOnArgs):
    environment: str  # whose tenant namespaces the cluster holds
    ingress: workload_ingress.WorkloadIngress | None = None  # the tenants' Traefik it scrapes, which admits it


class Prometheus(ChartAddOn[PrometheusArgs]):
    type_token = "platform:prometheus:Prometheus"
    sized_at = ("server",)
    url: str = URL

    def egress(self, args: PrometheusArgs) -> Sequence[Reach]:
        """Beside its API server (the scrape's pod discovery): the server scrapes Traefik's `metrics` port alone
        (ingress_scrape_job, every chart job and subchart off), and the query proxies call the server."""
        return [
            Reach("scrape", SERVER_LABELS, [k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                to=[workload_ingress.from_ingress_controller()],
                ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=workload_ingress.METRICS_PORT)])]),
            Reach("upstream", prometheus_query.PROXY_LABELS, [k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                to=pods(SERVER_LABELS), ports=tcp(SERVER_PORT))]),
        ]

    def values(self, args: PrometheusArgs) -> dict[str, Any]:
        # Only the ingress controller's metrics are needed (prometheus_chart: every chart job and subchart off).
        scrape_configs = prometheus_chart.scrape_configs({SCRAPE_JOB: ingress_scrape_job(args.environment)})
        return prometheus_chart.server_only(scrape_configs, {
                "retention": RETENTION,
                "persistentVolume": {"size": args.settings.storage},
                # No lifecycle API (the chart's web.enable-lifecycle): every Argo Rollouts controller
                # reaches Prometheus (through a query proxy, which forwards no lifecycle path), a
                # virtual cluster's too, where no constraint holds a tenant's web provider, and a
                # POST to /-/quit stopped it for every tenant's analyses. So no
                # config-reload sidecar either: a change of the scrape config restarts the server.
                "extraFlags": [],
                "podAnnotations": {CONFIG_CHECKSUM: checksum(json.dumps(scrape_configs, sort_keys=True))},
        })

    def prepare(self, name: str, args: PrometheusArgs) -> None:
        self._ingress = args.ingress

    def grants(self, name: str, cluster: ClusterHandle, ns: k8s.core.v1.Namespace) -> Sequence[pulumi.Resource]:
        """The pods of Traefik's namespace to list and watch, what its one scrape discovers, instead of the chart's
        ClusterRole (every ConfigMap, Service, Endpoint, Ingress, node and pod of the cluster)."""
        if self._ingress is None:
            return []
        return [self._ingress.grant_discovery(RELEASE, {"kind": "ServiceAccount", "name": f"{RELEASE}-server", "namespace": NAMESPACE})]

    def extend(self, name: str, cluster: ClusterHandle, args: PrometheusArgs) -> None:
        if args.ingress is not None:
            args.ingress.admit_metrics("prometheus", pods_in(NAMESPACE, SERVER_LABELS))
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[self.release])
        # The proxies' pods only: no controller, tenant or platform pod queries Prometheus directly.
        k8s.networking.v1.NetworkPolicy(f"{name}-server-ingress", metadata={"name": f"{RELEASE}-server", "namespace": NAMESPACE}, spec={
            "podSelector": {"matchLabels": SERVER_LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": prometheus_query.PROXY_LABELS}}],
                         "ports": [{"protocol": "TCP", "port": SERVER_PORT}]}],
        }, opts=on_cluster)
        # The host's Rollouts controller, which runs the analyses Gatekeeper holds to their namespace's header.
        controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": argo_rollouts.NAMESPACE}},
                      "podSelector": {"matchLabels": {"app.kubernetes.io/name": "argo-rollouts"}}}
        QueryProxy(f"{name}-query", cluster, QueryProxyArgs(
            name=prometheus_query.NAME, namespace=NAMESPACE, upstream=URL, label=SERVICE_NAMESPACE_LABEL,
            clients=[controller], header=prometheus_query.HEADER, after=[self.release],
        ), pulumi.ResourceOptions(parent=self))
        args.inventory.register(projected_token(
            f"service-account token of Prometheus on {cluster.name}",
            issuer=f"the {cluster.name} cluster's API server (projected service-account token)",
            holder=f"Prometheus ({NAMESPACE}/{RELEASE}-server) on {cluster.name}",
            scope=f"list and watch the pods of {workload_ingress.NAMESPACE}, to find the ingress controller's (a Role there, not the "
                  "chart's ClusterRole)",
            resources=(f"{cluster.role}-{RELEASE}",),
        ))

    def outputs(self) -> dict[str, Any]:
        return {"url": URL}


def virtual_proxy_name(host_namespace: str) -> str:
    """The proxy of the virtual cluster in `host_namespace` (a DNS label: 17 + at most 34 characters)."""
    return f"{prometheus_query.NAME}-{host_namespace}"


def analysis_provider(namespace: str, query: str) -> dict[str, Any]:
    """The Prometheus provider of an analysis in `namespace`, as PlatformTenantAnalysis admits it."""
    return {"address": QUERY_URL, "headers": [{"key": prometheus_query.HEADER, "value": namespace}], "query": query}


def declare_on(parts: ClusterParts, settings: ServiceSettings) -> Prometheus:
    """The add-on on a workload cluster, whose role is the environment of its tenant namespaces."""
    name = f"{parts.cluster.role}-{SLICE.key}"
    return Prometheus(name, parts.cluster, SLICE, PrometheusArgs(settings=settings, inventory=parts.inventory, environment=parts.cluster.role,
                                                                  ingress=parts.get(workload_ingress.SLICE)))


def virtual_cluster_proxies(parts: TenantParts) -> dict[str, QueryProxy]:
    """A virtual cluster's analyses pass no host constraint: its controller, synced to the host
    namespace, reaches a proxy of its own whose value is that namespace, whatever a request says."""
    if parts.tenant.isolation is not Isolation.VCLUSTER:
        return {}
    proxies = {}
    for environment, host_namespace in parts.namespaces.items():
        prometheus = parts.addon(environment, SLICE)
        if prometheus is None:
            continue
        controller = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": host_namespace}},
                      "podSelector": {"matchLabels": {VCLUSTER_NAMESPACE_LABEL: argo_rollouts.NAMESPACE, VCLUSTER_MANAGED_BY_LABEL: host_namespace}}}
        proxies[environment] = QueryProxy(f"{host_namespace}-{prometheus_query.NAME}", parts.platform.clusters[environment], QueryProxyArgs(
            name=virtual_proxy_name(host_namespace), namespace=NAMESPACE, upstream=URL, label=SERVICE_NAMESPACE_LABEL,
            clients=[controller], value=host_namespace, after=[prometheus.release],
        ), parts.opts)
    return proxies


SLICE: ServiceSlice[Prometheus] = ServiceSlice(
    key="prometheus",
    namespace=PlatformNamespace(NAMESPACE, "Prometheus and its query proxies, which the canary analyses of every tenant query"),
    chart="prometheus",
    on_cluster=declare_on,
    clusters=WORKLOAD_CLUSTERS,
    tenant=virtual_cluster_proxies,
)
