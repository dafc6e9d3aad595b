"""External Secrets Operator on a cluster: syncs Vault secrets into namespaces."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.helm import namespace, release
from components.service import PlatformNamespace, ServiceSlice

NAMESPACE = "external-secrets"


@dataclass(frozen=True)
class ExternalSecretsArgs:
    replicas: int = 1
    chart_version: str | None = None


class ExternalSecrets(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: ExternalSecretsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:external_secrets:ExternalSecrets", name, None, opts)
        ns = namespace(SLICE.namespace, cluster, self)
        self.release = release(
            "external-secrets",
            "external-secrets",
            ns,
            {
                "replicaCount": args.replicas,
                "installCRDs": True,
                # Stores are declared per tenant namespace; no cluster-wide store by default.
                "crds": {"createClusterSecretStore": False, "createClusterPushSecret": False},
            },
            cluster,
            self,
            version=args.chart_version,
        )
        self.register_outputs({"release": self.release.status})


SLICE: ServiceSlice[ExternalSecrets] = ServiceSlice(
    key="external_secrets",
    namespace=PlatformNamespace(NAMESPACE, "the External Secrets operator, which syncs Vault into tenant namespaces"),
    chart="external-secrets",
)
