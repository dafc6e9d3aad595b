"""External Secrets Operator on each workload cluster: syncs Vault secrets into tenant namespaces."""

from __future__ import annotations

from typing import Any

from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice

NAMESPACE = "external-secrets"


class ExternalSecrets(ChartAddOn[AddOnArgs]):
    type_token = "platform:external_secrets:ExternalSecrets"
    sized_at = ("", "webhook", "certController")

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        return {
            "replicaCount": args.settings.replicas,
            "installCRDs": True,
            # Stores are declared per tenant namespace: no cluster-wide store or push secret. The
            # chart requires their reconcilers off with their CRDs, or the manager fails to start.
            "crds": {"createClusterSecretStore": False, "createClusterPushSecret": False},
            "processClusterStore": False,
            "processClusterPushSecret": False,
        }


SLICE: ServiceSlice[ExternalSecrets] = ServiceSlice(
    key="external_secrets",
    namespace=PlatformNamespace(NAMESPACE, "the External Secrets operator, which syncs Vault into tenant namespaces"),
    chart="external-secrets",
    addon=ExternalSecrets,
    # Tenants' namespaces are on the workload clusters; the control plane has no store to sync, and
    # the operator would read every Secret there (its chart's ClusterRole) for nothing.
    clusters=WORKLOAD_CLUSTERS,
)
