"""External Secrets Operator on a cluster: syncs Vault secrets into namespaces."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.service import ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice

NAMESPACE = "external-secrets"


@dataclass(frozen=True)
class ExternalSecretsArgs:
    settings: ServiceSettings  # replicas, chart version, sizing


class ExternalSecrets(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: ExternalSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:external_secrets:ExternalSecrets", name, None, opts)
        self.release = SLICE.release(
            cluster,
            self,
            args.settings,
            {
                "replicaCount": args.settings.replicas,
                "installCRDs": True,
                # Stores are declared per tenant namespace: no cluster-wide store or push secret. The
                # chart requires their reconcilers off with their CRDs, or the manager fails to start.
                "crds": {"createClusterSecretStore": False, "createClusterPushSecret": False},
                "processClusterStore": False,
                "processClusterPushSecret": False,
            },
            "", "webhook", "certController",
        )
        self.register_outputs({"release": self.release.status})


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> ExternalSecrets:
    return ExternalSecrets(
        f"{parts.cluster.role}-external-secrets",
        parts.cluster,
        ExternalSecretsArgs(settings),
    )


SLICE: ServiceSlice[ExternalSecrets] = ServiceSlice(
    key="external_secrets",
    namespace=PlatformNamespace(NAMESPACE, "the External Secrets operator, which syncs Vault into tenant namespaces"),
    chart="external-secrets",
    on_cluster=on_cluster,
)
