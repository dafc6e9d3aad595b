"""The prometheus-community `prometheus` chart as the platform releases it: its server alone.

Both the canary Prometheus of the workload clusters (components/prometheus.py) and the platform's alerting one on every
cluster (components/alerting.py) turn off every subchart and every default scrape job of the chart (29.27.0's
values.yaml: API servers, nodes, cAdvisor, annotated endpoints, services and pods), keeping its `prometheus` job
(itself), and run no config-reload sidecar: without the lifecycle API it could not reload, so a new configuration
restarts the server (a checksum annotation on its pod, set by each).
"""

from __future__ import annotations

from typing import Any

CHART_JOBS = (
    "kubernetes-api-servers", "kubernetes-nodes", "kubernetes-nodes-cadvisor", "kubernetes-service-endpoints",
    "kubernetes-service-endpoints-slow", "prometheus-pushgateway", "kubernetes-services", "kubernetes-pods",
    "kubernetes-pods-slow",
)
SUBCHARTS = ("alertmanager", "kube-state-metrics", "prometheus-node-exporter", "prometheus-pushgateway")


def scrape_configs(jobs: dict[str, Any]) -> dict[str, Any]:
    """The chart's `scrapeConfigs`: its default jobs off, `jobs` (job name -> its configuration) on."""
    return {**{job: {"enabled": False} for job in CHART_JOBS}, **jobs}


def server_only(scrapes: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """The chart's values for its server alone with `server`'s settings, scraping `scrapes` (`scrape_configs`). Without
    the chart's ClusterRole (every ConfigMap, Service, Endpoint, Ingress, node and pod of the cluster): the caller
    grants what its scrapes discover (its add-on's `grants`)."""
    return {
        **{chart: {"enabled": False} for chart in SUBCHARTS},
        "server": server,
        "configmapReload": {"prometheus": {"enabled": False}},
        "scrapeConfigs": scrapes,
        "rbac": {"create": False},
    }
