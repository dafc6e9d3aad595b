"""Prometheus on a workload cluster: the ingress controller's request metrics, for canary analysis.

Lean on purpose: the prometheus-community chart's server alone (Alertmanager, kube-state-metrics,
node exporter and Pushgateway off) scraping itself and the ingress controller's pods, nothing
else (the chart's default jobs for API servers, nodes and annotated pods are off). Argo Rollouts'
AnalysisRuns query it in-cluster (components/tenant_rollout.py); it is not published.
"""

from __future__ import annotations

import json
from typing import Any

from components import workload_ingress
from components.cluster import ClusterHandle
from components.common import checksum
from components.inventory import projected_token
from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice

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
CONFIG_CHECKSUM = "platform.io/scrape-config-checksum"  # a new scrape config restarts the server


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


class Prometheus(ChartAddOn[AddOnArgs]):
    type_token = "platform:prometheus:Prometheus"
    sized_at = ("server",)
    url: str = URL

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        scrape_configs = {**{job: {"enabled": False} for job in CHART_JOBS}, SCRAPE_JOB: ingress_scrape_job()}
        return {
            **{chart: {"enabled": False} for chart in SUBCHARTS},
            "server": {
                "retention": RETENTION,
                "persistentVolume": {"size": args.settings.storage},
                # No lifecycle API (the chart's web.enable-lifecycle): every Argo Rollouts controller
                # reaches Prometheus, a virtual cluster's too, where no constraint holds a tenant's
                # web provider, and a POST to /-/quit stopped it for every tenant's analyses. So no
                # config-reload sidecar either: a change of the scrape config restarts the server.
                "extraFlags": [],
                "podAnnotations": {CONFIG_CHECKSUM: checksum(json.dumps(scrape_configs, sort_keys=True))},
            },
            "configmapReload": {"prometheus": {"enabled": False}},
            "scrapeConfigs": scrape_configs,
        }

    def extend(self, name: str, cluster: ClusterHandle, args: AddOnArgs) -> None:
        args.inventory.register(projected_token(
            f"service-account token of Prometheus on {cluster.name}",
            issuer=f"the {cluster.name} cluster's API server (projected service-account token)",
            holder=f"Prometheus ({NAMESPACE}/{RELEASE}-server) on {cluster.name}",
            scope="list and watch pods, services and endpoints to find the ingress controller's pods (the chart's ClusterRole)",
            resources=(f"{cluster.role}-{RELEASE}",),
        ))

    def outputs(self) -> dict[str, Any]:
        return {"url": URL}


SLICE: ServiceSlice[Prometheus] = ServiceSlice(
    key="prometheus",
    namespace=PlatformNamespace(NAMESPACE, "Prometheus, which the canary analyses of every tenant query"),
    chart="prometheus",
    addon=Prometheus,
    clusters=WORKLOAD_CLUSTERS,
)
