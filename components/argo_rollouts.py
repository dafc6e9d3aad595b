"""Argo Rollouts on a workload cluster: canary and blue-green deployments with automated analysis.

The argo-helm chart with its CRDs (kept when the release goes), the controller only: no dashboard, and no RBAC for traffic-routing providers (the tenants'
canaries weigh by pod count behind the ingress controller, components/tenant_rollout.py).
The chart aggregates Rollout rights into the built-in admin, edit and view roles; the
platform's own tenant roles and ArgoCD's federated role list them themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.service import WORKLOAD_CLUSTERS, ClusterParts, PlatformNamespace, ServiceSettings, ServiceSlice

NAMESPACE = "argo-rollouts"


@dataclass(frozen=True)
class ArgoRolloutsArgs:
    settings: ServiceSettings  # replicas (2 by default, leader election: a restart leaves one working), chart version, sizing


class ArgoRollouts(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: ArgoRolloutsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:argo_rollouts:ArgoRollouts", name, None, opts)
        # The chart's defaults install the CRDs, keep them on uninstall and leave the dashboard off.
        values = {"controller": {"replicas": args.settings.replicas}, "providerRBAC": {"enabled": False}}
        self.release = SLICE.release(cluster, self, args.settings, values, "controller")
        self.register_outputs({"release": self.release.status})


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> ArgoRollouts:
    return ArgoRollouts(
        f"{parts.cluster.role}-argo-rollouts",
        parts.cluster,
        ArgoRolloutsArgs(settings),
    )


SLICE: ServiceSlice[ArgoRollouts] = ServiceSlice(
    key="argo_rollouts",
    namespace=PlatformNamespace(NAMESPACE, "the Argo Rollouts controller, which runs every tenant's Rollouts"),
    chart="argo-rollouts",
    default_replicas=2,
    on_cluster=on_cluster,
    clusters=WORKLOAD_CLUSTERS,
)
