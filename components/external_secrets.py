"""External Secrets Operator on each workload cluster: syncs Vault secrets into tenant namespaces.

Its webhook's serving certificate comes from cert-manager (a self-signed Issuer in its namespace,
the CA injected into the webhook's configuration), not from the chart's cert controller, whose
ClusterRole reads every Secret of the cluster (external-secrets 2.9.0 templates/cert-controller-rbac.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import tls
from components.cluster import ClusterHandle
from components.egress import HTTPS, Reach, networks_or_internet
from components.inventory import cert_manager_certificate
from components.service import WORKLOAD_CLUSTERS, AddOnArgs, ChartAddOn, PlatformNamespace, ServiceSlice
from policy.labels import managed_by

NAMESPACE = "external-secrets"
CONTROLLER_LABELS = {"app.kubernetes.io/name": "external-secrets"}  # the chart's controller pods (the webhook's name differs)
WEBHOOK_ISSUER = "external-secrets-webhook"
CERTIFICATE_DAYS = 90  # cert-manager renews at two thirds


class ExternalSecrets(ChartAddOn[AddOnArgs]):
    type_token = "platform:external_secrets:ExternalSecrets"
    sized_at = ("", "webhook")
    # The webhook's `webhook` container port (`webhook.port`'s default: `--port`, its Service's targetPort; external-secrets 2.9.0
    # templates/webhook-deployment.yaml lines 73 and 107). The controller beside it, which holds every SecretStore's Vault session,
    # takes no connection: nothing scrapes its metrics (the kubelet's probes come from the node).
    webhook_port = 10250

    def values(self, args: AddOnArgs) -> dict[str, Any]:
        return {
            "replicaCount": args.settings.replicas,
            "installCRDs": True,
            # Stores are declared per tenant namespace: no cluster-wide store or push secret. The
            # chart requires their reconcilers off with their CRDs, or the manager fails to start.
            "crds": {"createClusterSecretStore": False, "createClusterPushSecret": False},
            "processClusterStore": False,
            "processClusterPushSecret": False,
            "webhook": {"certManager": {"enabled": True, "cert": {
                "issuerRef": {"group": "cert-manager.io", "kind": "Issuer", "name": WEBHOOK_ISSUER},
                "duration": f"{CERTIFICATE_DAYS * 24}h",
            }}},
        }

    def egress(self, args: AddOnArgs) -> Sequence[Reach]:
        """Beside its API server, the controller reaches Vault, where every tenant's SecretStore points (the program's
        vault.<domain>, components/tenant_secrets.py secret_store_spec): through the control plane's load balancer
        on HTTPS. The webhook checks a store's fields and references only (external-secrets providers/v1/vault/validate.go
        `ValidateStore`; the store's own check, `Validate`, calling Vault, is the controller's); no cert controller runs."""
        return [Reach("vault", CONTROLLER_LABELS, networks_or_internet(args.control_plane_ingress, [HTTPS]))]

    def extend(self, name: str, cluster: ClusterHandle, args: AddOnArgs) -> None:
        k8s.apiextensions.CustomResource(
            f"{name}-webhook-issuer", api_version="cert-manager.io/v1", kind="Issuer",
            metadata={"name": WEBHOOK_ISSUER, "namespace": NAMESPACE, "labels": managed_by()}, spec={"selfSigned": {}},
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[cluster.namespaces[NAMESPACE], *args.after]),
        )
        args.inventory.register(cert_manager_certificate(
            f"serving certificate of the External Secrets webhook on {cluster.name}",
            issuer=f"cert-manager on {cluster.name} (the self-signed Issuer {NAMESPACE}/{WEBHOOK_ISSUER})",
            holder=f"the External Secrets webhook ({NAMESPACE}) on {cluster.name}",
            scope="the webhook's TLS, which the API server verifies with the CA cert-manager injects",
            days=CERTIFICATE_DAYS,
            resources=(name,),
        ))


SLICE: ServiceSlice[ExternalSecrets] = ServiceSlice(
    key="external_secrets",
    namespace=PlatformNamespace(NAMESPACE, "the External Secrets operator, which syncs Vault into tenant namespaces"),
    chart="external-secrets",
    addon=ExternalSecrets,
    after=(tls.SLICE,),  # cert-manager issues its webhook's certificate (a Certificate in its chart)
    # Tenants' namespaces are on the workload clusters; the control plane has no store to sync, and
    # the operator would read every Secret there (its chart's ClusterRole) for nothing.
    clusters=WORKLOAD_CLUSTERS,
)
