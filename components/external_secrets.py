"""External Secrets Operator on a cluster: syncs Vault secrets into namespaces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.helm import namespace, release, sized
from components.service import ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice

NAMESPACE = "external-secrets"


@dataclass(frozen=True)
class ExternalSecretsArgs:
    replicas: int = 1
    chart_version: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # each container's requests and memory limit


class ExternalSecrets(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: ExternalSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:external_secrets:ExternalSecrets", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        self.release = release(
            "external-secrets",
            "external-secrets",
            ns,
            sized({
                "replicaCount": args.replicas,
                "installCRDs": True,
                # Stores are declared per tenant namespace: no cluster-wide store or push secret. The
                # chart requires their reconcilers off with their CRDs, or the manager fails to start.
                "crds": {"createClusterSecretStore": False, "createClusterPushSecret": False},
                "processClusterStore": False,
                "processClusterPushSecret": False,
            }, args.resources, "", "webhook", "certController"),
            cluster,
            self,
            version=args.chart_version,
        )
        self.register_outputs({"release": self.release.status})


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> ExternalSecrets:
    return ExternalSecrets(
        f"{parts.cluster.role}-external-secrets",
        parts.cluster,
        ExternalSecretsArgs(replicas=settings.replicas, chart_version=settings.chart_version, resources=settings.resources),
    )


SLICE: ServiceSlice[ExternalSecrets] = ServiceSlice(
    key="external_secrets",
    namespace=PlatformNamespace(NAMESPACE, "the External Secrets operator, which syncs Vault into tenant namespaces"),
    chart="external-secrets",
    on_cluster=on_cluster,
)
