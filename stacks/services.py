"""The registry of platform services: one line per slice, and what is derived from the list.

Adding a service is one module in components/ with its `SLICE` (components/service.py) and
one line here; its config key, namespace, policy exemption and OIDC client follow.
"""

from __future__ import annotations

from typing import Any

from components import argocd, data_stores, external_secrets, gatekeeper, gitlab, harbor, ingress, kube_oidc_proxy, openunison, tls, vault
from components import aws_load_balancer_controller, cluster_autoscaler, metallb
from components import image_verifier
from components import gitlab_runner
from components import argo_rollouts, metrics_server, prometheus, workload_ingress  # the golden path (issue 18)
from components import dragonfly
from components import netpol_check
from components import velero
from components import alerting
from components.service import Foundation, PlatformNamespace, ServiceSlice

# Every platform service; the policies list their namespaces in this order.
SERVICES: tuple[ServiceSlice[Any], ...] = (
    gatekeeper.SLICE,
    tls.SLICE,
    external_secrets.SLICE,
    argocd.SLICE,
    vault.SLICE,
    gitlab.SLICE,
    harbor.SLICE,
    openunison.SLICE,
    ingress.SLICE,
    aws_load_balancer_controller.SLICE,
    cluster_autoscaler.SLICE,
    metallb.SLICE,
    image_verifier.SLICE,
    data_stores.SLICE,
    gitlab_runner.SLICE,
    workload_ingress.SLICE,
    argo_rollouts.SLICE,
    metrics_server.SLICE,
    prometheus.SLICE,
    dragonfly.SLICE,  # after workload_ingress: its manager's preheat API is published there
    velero.SLICE,  # the tenants' volumes backed up (its tenant half: each namespace's Schedule)
    alerting.SLICE,  # the platform's alerts, on every cluster (after what it scrapes)
)

# What every exposed service stands on: certificates, ingress and sign-in.
FOUNDATION = Foundation(tls=tls.SLICE, ingress=ingress.SLICE, identity=openunison.SLICE)
CONTROL_PLANE: tuple[ServiceSlice[Any], ...] = tuple(s for s in SERVICES if s.declare is not None)
CLUSTER_ADDONS: tuple[ServiceSlice[Any], ...] = tuple(s for s in SERVICES if s.is_add_on)

# Kubernetes' own namespaces, on every cluster.
SYSTEM_NAMESPACES = (
    PlatformNamespace("kube-system", "Kubernetes and the cluster add-ons (CNI, DNS, kube-proxy, CSI)"),
    PlatformNamespace("kube-public", "cluster-info, readable by everyone"),
    PlatformNamespace("kube-node-lease", "node heartbeats"),
)
# The namespaces of the platform itself, outside the tenant policies (each says why).
PLATFORM_NAMESPACES: tuple[PlatformNamespace, ...] = (
    *SYSTEM_NAMESPACES,
    *(service.namespace for service in SERVICES),
    kube_oidc_proxy.PLATFORM_NAMESPACE,
    gitlab_runner.PROTECTED_PLATFORM_NAMESPACE,
    netpol_check.PLATFORM_NAMESPACE,
)
