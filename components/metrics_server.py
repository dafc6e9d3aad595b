"""metrics-server on a workload cluster: the resource metrics the tenants' HorizontalPodAutoscalers scale on.

The chart's defaults would let the API server skip verifying metrics-server's certificate
(`apiService.insecureSkipTLSVerify`); here cert-manager issues the serving certificate from a
self-signed issuer of the release and injects its CA into the APIService, so the aggregation
layer verifies it. metrics-server verifies the kubelets' serving certificates against the
cluster CA (no `--kubelet-insecure-tls`): kubeconfig clusters need kubelet serving certificates
signed by it (`serverTLSBootstrap`), as EKS has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from components import tls
from components.cluster import ClusterHandle
from components.egress import NODE_NETWORKS, Reach, to_networks
from components.inventory import CERT_MANAGER_ROTATION, cert_manager_certificate
from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice

NAMESPACE = "metrics-server"
KUBELET_PORT = 10250
CERTIFICATE_DAYS = 90  # cert-manager renews at two thirds


class MetricsServer(ChartAddOn[AddOnArgs]):
    type_token = "platform:metrics_server:MetricsServer"

    def egress(self, args: AddOnArgs) -> Sequence[Reach]:
        """Beside its API server, every node's kubelet on 10250 (`--kubelet-preferred-address-types=InternalIP,...` and
        `--kubelet-use-node-status-port` in the real render): the nodes' private addresses, which on kubeconfig stacks
        no config names (kind's docker network), on EKS the VPC's subnets, never the link-local metadata."""
        return [Reach("kubelets", {}, to_networks(NODE_NETWORKS, [KUBELET_PORT]))]

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        return {
            "replicas": args.settings.replicas,
            "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
            "apiService": {"insecureSkipTLSVerify": False},
            "tls": {"type": "cert-manager", "certManager": {"duration": f"{CERTIFICATE_DAYS * 24}h"}},
            # The chart's Issuer template writes these as its annotations: null otherwise, which is invalid.
            "additionalAnnotations": {},
        }

    def extend(self, name: str, cluster: ClusterHandle, args: AddOnArgs) -> None:
        args.inventory.register(cert_manager_certificate(
            f"serving certificate of metrics-server on {cluster.name}",
            issuer=f"cert-manager on {cluster.name} (the release's self-signed issuer)",
            holder=f"metrics-server ({NAMESPACE}) on {cluster.name}",
            scope="authenticates metrics-server to the API server's aggregation layer",
            days=CERTIFICATE_DAYS,
            rotation=f"{CERT_MANAGER_ROTATION} and re-injects the CA",
            resources=(name,),
        ))



SLICE: ServiceSlice[MetricsServer] = ServiceSlice(
    key="metrics_server",
    namespace=PlatformNamespace(NAMESPACE, "the resource metrics API, which every HorizontalPodAutoscaler reads"),
    chart="metrics-server",
    default_replicas=2,
    addon=MetricsServer,
    after=(tls.SLICE,),  # cert-manager serves its Certificate and injects the APIService's CA
    clusters=WORKLOAD_CLUSTERS,
)
