"""Prometheus on a workload cluster: the ingress controller's request metrics, for canary analysis.

Lean on purpose: the prometheus-community chart's server alone (Alertmanager, kube-state-metrics,
node exporter and Pushgateway off) scraping itself and the ingress controller's pods, nothing
else (the chart's default jobs for API servers, nodes and annotated pods are off). Argo Rollouts'
AnalysisRuns query it in-cluster (components/tenant_rollout.py); it is not published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import workload_ingress
from components.cluster import ClusterHandle
from components.inventory import CredentialInventory, projected_token
from components.service import WORKLOAD_CLUSTERS, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice

NAMESPACE = "monitoring"
RELEASE = "prometheus"
# The chart's server Service (`<release>-server`, port 80): where AnalysisRuns send their queries.
URL = f"http://{RELEASE}-server.{NAMESPACE}.svc.cluster.local"
SERVICE = f"{NAMESPACE}/{RELEASE}-server"  # the same, as vCluster names a host Service it replicates
SERVER_PORT = 9090  # the server container's port behind the Service (what NetworkPolicies admit)
SCRAPE_JOB = "ingress"
# The chart's default scrape jobs, all off: only the ingress controller's metrics are needed.
CHART_JOBS = (
    "kubernetes-api-servers", "kubernetes-nodes", "kubernetes-nodes-cadvisor", "kubernetes-service-endpoints",
    "kubernetes-service-endpoints-slow", "prometheus-pushgateway", "kubernetes-services", "kubernetes-pods",
    "kubernetes-pods-slow",
)
SUBCHARTS = ("alertmanager", "kube-state-metrics", "prometheus-node-exporter", "prometheus-pushgateway")
RETENTION = "15d"


def ingress_scrape_job() -> dict[str, Any]:
    """Every ingress controller pod's `metrics` port, labelled with its namespace and pod."""
    return {
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [workload_ingress.NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
             "regex": workload_ingress.METRICS_PORT},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


@dataclass(frozen=True)
class PrometheusArgs:
    settings: ServiceSettings  # storage, chart version, sizing
    inventory: CredentialInventory = field(default_factory=CredentialInventory)


class Prometheus(pulumi.ComponentResource):
    release: k8s.helm.v3.Release
    url: str = URL

    def __init__(self, name: str, cluster: ClusterHandle, args: PrometheusArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:prometheus:Prometheus", name, None, opts)
        values: dict[str, Any] = {
            **{chart: {"enabled": False} for chart in SUBCHARTS},
            "server": {"retention": RETENTION, "persistentVolume": {"size": args.settings.storage}},
            "scrapeConfigs": {**{job: {"enabled": False} for job in CHART_JOBS}, SCRAPE_JOB: ingress_scrape_job()},
        }
        self.release = SLICE.release(cluster, self, args.settings, values, "server", "configmapReload.prometheus")
        args.inventory.register(projected_token(
            f"service-account token of Prometheus on {cluster.name}",
            issuer=f"the {cluster.name} cluster's API server (projected service-account token)",
            holder=f"Prometheus ({NAMESPACE}/{RELEASE}-server) on {cluster.name}",
            scope="list and watch pods, services and endpoints to find the ingress controller's pods (the chart's ClusterRole)",
            resources=(f"{cluster.role}-{RELEASE}",),
        ))
        self.register_outputs({"url": URL})


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> Prometheus:
    return Prometheus(
        f"{parts.cluster.role}-prometheus",
        parts.cluster,
        PrometheusArgs(settings, parts.inventory),
    )


SLICE: ServiceSlice[Prometheus] = ServiceSlice(
    key="prometheus",
    namespace=PlatformNamespace(NAMESPACE, "Prometheus, which the canary analyses of every tenant query"),
    chart="prometheus",
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
)
