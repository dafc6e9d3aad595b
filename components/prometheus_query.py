"""The one way into a workload cluster's Prometheus: prometheus-community's prom-label-proxy.

A tenant's canary analysis may send Prometheus any PromQL, and the answer lands in its AnalysisRun's
status. Every series of a tenant's traffic carries the namespace of its Service (components/prometheus.py
derives `service_namespace` at scrape time), and the proxy adds `service_namespace="<value>"` to every
selector of every query (replacing one the query names), so an analysis reads its own namespace only.
It forwards the query APIs only (query, query_range, query_exemplars, series and federate, all
scoped; rules and alerts filtered); the label APIs, admin, lifecycle and every other path get a 404.

Where the value comes from:
* the cluster's proxy reads it from the `X-Platform-Namespace` header, which Gatekeeper's
  PlatformTenantAnalysis pins to the analysis's own namespace (one header, that exact value); it
  takes connections from the host's Argo Rollouts controller only;
* a virtual cluster's controller runs analyses no host constraint sees, so each virtual cluster has
  a proxy of its own with its host namespace fixed (`-label-value`), which only that controller
  (its pod as the virtual cluster syncs it to the host) reaches.
Prometheus itself takes connections from these proxies only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.versions import PROM_LABEL_PROXY_IMAGE

NAME = "prometheus-query"
PROXIES_NAMESPACE = "monitoring"  # where the host's proxies run: beside Prometheus (components/prometheus.py NAMESPACE)
PORT = 8080
HEADER = "X-Platform-Namespace"  # Go's canonical form: the proxy reads r.Header[CanonicalHeaderKey(name)]
PROXY_LABELS = {"app.kubernetes.io/name": NAME}  # every proxy's pods: what Prometheus admits
_NOBODY = 65534  # the image's USER nobody, by number (runAsNonRoot cannot check a user name)


@dataclass(frozen=True)
class QueryProxyArgs:
    name: str  # its Deployment, Service and NetworkPolicy in `namespace`
    namespace: str
    upstream: str  # Prometheus' in-cluster URL
    label: str  # the label it enforces
    clients: Sequence[dict[str, Any]]  # NetworkPolicy peers that may connect
    header: str | None = None  # the label's value from this header...
    value: str | None = None  # ...or this one, whatever the request says
    after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        if (self.header is None) == (self.value is None):
            raise ValueError("a query proxy takes its value from a header or a fixed value, exactly one")


def container(args: QueryProxyArgs) -> dict[str, Any]:
    source = f"-header-name={args.header}" if args.header is not None else f"-label-value={args.value}"
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    return {
        "name": "prom-label-proxy",
        "image": PROM_LABEL_PROXY_IMAGE.ref,
        # No -enable-label-apis: /api/v1/labels and label values answer 404.
        "args": [f"-insecure-listen-address=:{PORT}", f"-upstream={args.upstream}", f"-label={args.label}", source],
        "ports": [{"name": "http", "containerPort": PORT}],
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "livenessProbe": {**probe, "initialDelaySeconds": 10},
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": _NOBODY, "runAsGroup": _NOBODY, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def pod_labels(name: str) -> dict[str, str]:
    """The labels of proxy `name`'s pods (what its Service and NetworkPolicies select)."""
    return {**PROXY_LABELS, "app.kubernetes.io/instance": name}


class QueryProxy(pulumi.ComponentResource):
    """One prom-label-proxy: Deployment, Service (port 80) and the NetworkPolicy naming its clients."""

    url: str

    def __init__(self, name: str, cluster: ClusterHandle, args: QueryProxyArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:prometheus_query:QueryProxy", name, None, opts)
        self.url = f"http://{args.name}.{args.namespace}.svc.cluster.local"
        labels = pod_labels(args.name)
        metadata = {"name": args.name, "namespace": args.namespace, "labels": labels}
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=list(args.after))
        k8s.apps.v1.Deployment(name, metadata=metadata, spec={
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "automountServiceAccountToken": False,  # it calls no Kubernetes API
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [container(args)],
            }},
        }, opts=on_cluster)
        k8s.core.v1.Service(name, metadata=metadata, spec={
            "selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        }, opts=on_cluster)
        k8s.networking.v1.NetworkPolicy(name, metadata=metadata, spec={
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": list(args.clients), "ports": [{"protocol": "TCP", "port": PORT}]}],
        }, opts=on_cluster)
        self.register_outputs({"url": self.url})
