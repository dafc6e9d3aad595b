"""metrics-server on a workload cluster: the resource metrics the tenants' HorizontalPodAutoscalers scale on.

The chart's defaults would let the API server skip verifying metrics-server's certificate
(`apiService.insecureSkipTLSVerify`); here cert-manager issues the serving certificate from a
self-signed issuer of the release and injects its CA into the APIService, so the aggregation
layer verifies it. metrics-server verifies the kubelets' serving certificates against the
cluster CA (no `--kubelet-insecure-tls`): kubeconfig clusters need kubelet serving certificates
signed by it (`serverTLSBootstrap`), as EKS has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import pulumi
import pulumi_kubernetes as k8s

from components import tls
from components.cluster import ClusterHandle
from components.inventory import CERT_MANAGER_ROTATION, CredentialInventory, cert_manager_certificate
from components.service import WORKLOAD_CLUSTERS, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice

NAMESPACE = "metrics-server"
CERTIFICATE_DAYS = 90  # cert-manager renews at two thirds


@dataclass(frozen=True)
class MetricsServerArgs:
    cert_manager: pulumi.Resource  # serves the Certificate and injects the APIService's CA
    settings: ServiceSettings  # replicas, chart version, sizing
    inventory: CredentialInventory = field(default_factory=CredentialInventory)


class MetricsServer(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: MetricsServerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:metrics_server:MetricsServer", name, None, opts)
        values = {
            "replicas": args.settings.replicas,
            "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
            "apiService": {"insecureSkipTLSVerify": False},
            "tls": {"type": "cert-manager", "certManager": {"duration": f"{CERTIFICATE_DAYS * 24}h"}},
            # The chart's Issuer template writes these as its annotations: null otherwise, which is invalid.
            "additionalAnnotations": {},
        }
        self.release = SLICE.release(cluster, self, args.settings, values, "", depends_on=[args.cert_manager])
        args.inventory.register(cert_manager_certificate(
            f"serving certificate of metrics-server on {cluster.name}",
            issuer=f"cert-manager on {cluster.name} (the release's self-signed issuer)",
            holder=f"metrics-server ({NAMESPACE}) on {cluster.name}",
            scope="authenticates metrics-server to the API server's aggregation layer",
            days=CERTIFICATE_DAYS,
            rotation=f"{CERT_MANAGER_ROTATION} and re-injects the CA",
            resources=(f"{cluster.role}-metrics-server",),
        ))
        self.register_outputs({"release": self.release.status})


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> MetricsServer:
    issuer = parts.get(tls.SLICE)
    assert issuer is not None, "stacks.config refuses metricsServer without certManager"
    return MetricsServer(
        f"{parts.cluster.role}-metrics-server",
        parts.cluster,
        MetricsServerArgs(issuer.release, settings, parts.inventory),
    )


SLICE: ServiceSlice[MetricsServer] = ServiceSlice(
    key="metrics_server",
    namespace=PlatformNamespace(NAMESPACE, "the resource metrics API, which every HorizontalPodAutoscaler reads"),
    chart="metrics-server",
    default_replicas=2,
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
)
