"""A tenant's delivery: ArgoCD AppProjects and ApplicationSets per environment, and the
Gatekeeper constraint that keeps them on the tenant's own clusters and namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.tenancy import Isolation, TenantPlatform, tenant_group
from components.tenant_gitlab import MAIN
from components.tenant_names import namespace_name
from policy.labels import CLUSTER_LABEL, ENVIRONMENT_LABEL, TENANT_LABEL
from policy.gatekeeper import tenant_argo_constraint

# Namespaced kinds a tenant may not manage through ArgoCD: the platform owns them.
PLATFORM_OWNED_KINDS = [
    {"group": "rbac.authorization.k8s.io", "kind": "RoleBinding"},
    {"group": "", "kind": "ResourceQuota"},
    {"group": "", "kind": "LimitRange"},
    {"group": "networking.k8s.io", "kind": "NetworkPolicy"},
]

TARGET_REVISION = f"refs/heads/{MAIN}"  # what each environment deploys: its ops repository's protected main


@dataclass(frozen=True)
class Destination:
    """Where one environment of a tenant deploys."""

    cluster: str  # the ArgoCD cluster name: dev, prod, or the tenant's virtual cluster
    namespace: str
    cluster_labels: dict[str, str]  # what selects that cluster's ArgoCD Secret
    repo_url: str  # the ops repository this environment follows
    path: str  # the directory of it ArgoCD deploys (OpsLayout.source_path)


def destination(tenant: str, isolation: Isolation, environment: str, repo_url: str, path: str) -> Destination:
    """Where a tenant environment deploys: its namespace, or the namespace inside its virtual cluster."""
    if isolation is Isolation.VCLUSTER:
        name = namespace_name(tenant, environment)
        return Destination(name, tenant, {CLUSTER_LABEL: name, TENANT_LABEL: tenant}, repo_url, path)
    return Destination(environment, namespace_name(tenant, environment), {CLUSTER_LABEL: environment}, repo_url, path)


@dataclass(frozen=True)
class TenantDeliveryArgs:
    tenant: str
    destinations: dict[str, Destination]  # environment -> destination
    platform: TenantPlatform


def app_project_spec(tenant: str, environment: str, destination: Destination) -> dict[str, Any]:
    project = f"{tenant}-{environment}"
    return {
        "description": f"{tenant} in {environment}",
        "sourceRepos": [destination.repo_url],
        "destinations": [{"name": destination.cluster, "namespace": destination.namespace}],
        "clusterResourceWhitelist": [],
        "namespaceResourceBlacklist": PLATFORM_OWNED_KINDS,
        "roles": [
            {
                # Owners and ops sync; in prod that is their "edit".
                "name": "sync",
                "groups": [tenant_group(tenant, "owners"), tenant_group(tenant, "ops")],
                "policies": [
                    f"p, proj:{project}:sync, applications, get, {project}/*, allow",
                    f"p, proj:{project}:sync, applications, sync, {project}/*, allow",
                ],
            },
            {
                "name": "read",
                "groups": [tenant_group(tenant, "developers")],
                "policies": [f"p, proj:{project}:read, applications, get, {project}/*, allow"],
            },
        ],
    }


def application_set_spec(tenant: str, environment: str, destination: Destination) -> dict[str, Any]:
    project = f"{tenant}-{environment}"
    sync: dict[str, Any] = {"syncOptions": ["CreateNamespace=false"]}
    if environment == "dev":
        sync["automated"] = {"prune": True, "selfHeal": True}
    return {
        "generators": [{"clusters": {"selector": {"matchLabels": dict(destination.cluster_labels)}}}],
        "template": {
            "metadata": {
                "name": f"{project}-{{{{name}}}}",
                "labels": {TENANT_LABEL: tenant, ENVIRONMENT_LABEL: environment},
            },
            "spec": {
                "project": project,
                # Each environment's directory (components/tenant_rollout.py): ops-dev and ops hold both.
                # The branch by its full name: ArgoCD matches a short one against tags too, and a
                # developer may push a tag `main` at an unreviewed commit (util/git/client.go lsRemote).
                "source": {"repoURL": destination.repo_url, "targetRevision": TARGET_REVISION, "path": destination.path},
                "destination": {"name": "{{name}}", "namespace": destination.namespace},
                "syncPolicy": sync,
            },
        },
    }


class TenantDelivery(pulumi.ComponentResource):
    def __init__(self, name: str, args: TenantDeliveryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:TenantDelivery", name, None, opts)
        platform, tenant = args.platform, args.tenant
        assert platform.argocd is not None
        argocd = platform.argocd
        in_argocd = pulumi.ResourceOptions(parent=self, provider=argocd.provider, depends_on=[argocd.release])
        control_plane = platform.clusters["control-plane"]
        for environment, destination in args.destinations.items():
            project = f"{tenant}-{environment}"
            labels = {TENANT_LABEL: tenant, ENVIRONMENT_LABEL: environment}
            app_project = k8s.apiextensions.CustomResource(
                f"{name}-{environment}-project",
                api_version="argoproj.io/v1alpha1",
                kind="AppProject",
                metadata={"name": project, "namespace": argocd.namespace, "labels": labels},
                spec=app_project_spec(tenant, environment, destination),
                opts=in_argocd,
            )
            constraint = tenant_argo_constraint(
                tenant,
                projects=[project],
                namespaces=[destination.namespace],
                cluster_labels=destination.cluster_labels,
                clusters=[destination.cluster],
                argocd_namespace=argocd.namespace,
                environment=environment,
            )
            # The constraint must exist before the objects it guards.
            guard = k8s.apiextensions.CustomResource(
                f"{name}-{environment}-argo-scope",
                api_version=constraint["apiVersion"],
                kind=constraint["kind"],
                metadata=constraint["metadata"],
                spec=constraint["spec"],
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=control_plane.provider,
                    depends_on=[platform.gatekeeper_templates[constraint["kind"]]],
                ),
            )
            k8s.apiextensions.CustomResource(
                f"{name}-{environment}-apps",
                api_version="argoproj.io/v1alpha1",
                kind="ApplicationSet",
                metadata={"name": project, "namespace": argocd.namespace, "labels": labels},
                spec=application_set_spec(tenant, environment, destination),
                opts=pulumi.ResourceOptions.merge(in_argocd, pulumi.ResourceOptions(depends_on=[app_project, guard])),
            )
        self.register_outputs({})
