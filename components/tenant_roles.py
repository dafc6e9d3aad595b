"""The ClusterRoles tenants' people are bound to, in place of Kubernetes' built-in admin and edit.

The built-in roles let a tenant delete the platform's guardrails in its own namespace (its
NetworkPolicy, and with admin its RoleBindings) and bind itself or anyone, `system:authenticated`
included, to what it holds. These roles give the same day-to-day access to workloads, but leave
NetworkPolicies, ResourceQuotas, LimitRanges and all RBAC read-only (people's access is stack
config, changed by merge request), and drop edit's impersonation of service accounts and token
minting, which would lend a tenant the rights of the platform's service accounts in its namespace.
The same roles are applied inside virtual clusters (components/tenant.py).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle

READ = ["get", "list", "watch"]
WRITE = [*READ, "create", "update", "patch", "delete", "deletecollection"]

TENANT_EDIT = "platform-tenant-edit"
TENANT_ADMIN = "platform-tenant-admin"
VIEW = "view"  # the built-in one: read-only, no Secrets

_EDIT_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": [
        "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "configmaps", "persistentvolumeclaims",
        "replicationcontrollers", "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy",
    ], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": [
        "endpoints", "events", "limitranges", "namespaces", "namespaces/status", "pods/log", "pods/status",
        "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
    ], "verbs": READ},
    {"apiGroups": ["apps"], "resources": [
        "daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets", "replicasets/scale",
        "statefulsets", "statefulsets/scale",
    ], "verbs": WRITE},
    {"apiGroups": ["apps"], "resources": ["controllerrevisions"], "verbs": READ},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
    {"apiGroups": ["batch"], "resources": ["cronjobs", "jobs"], "verbs": WRITE},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": READ},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    {"apiGroups": ["external-secrets.io"], "resources": ["externalsecrets"], "verbs": WRITE},
    {"apiGroups": ["external-secrets.io"], "resources": ["secretstores"], "verbs": READ},
    # Progressive delivery: promote, abort or retry a Rollout (its status), and its analyses.
    {"apiGroups": ["argoproj.io"], "resources": [
        "rollouts", "rollouts/status", "rollouts/scale", "analysistemplates", "analysisruns", "experiments",
    ], "verbs": WRITE},
]
_ADMIN_RULES: list[dict[str, Any]] = [
    *_EDIT_RULES,
    {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": READ},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]},
]
RULES: dict[str, list[dict[str, Any]]] = {TENANT_EDIT: _EDIT_RULES, TENANT_ADMIN: _ADMIN_RULES}


def tenant_role_manifests() -> list[dict[str, Any]]:
    """The roles as manifests, for a virtual cluster to apply itself."""
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}, "rules": rules}
        for name, rules in RULES.items()
    ]


class TenantRoles(pulumi.ComponentResource):
    """The tenant ClusterRoles on a workload cluster."""

    def __init__(self, name: str, cluster: ClusterHandle, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant_roles:TenantRoles", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        self.roles = {
            manifest["metadata"]["name"]: k8s.rbac.v1.ClusterRole(
                f"{name}-{manifest['metadata']['name']}", metadata=manifest["metadata"], rules=manifest["rules"], opts=child
            )
            for manifest in tenant_role_manifests()
        }
        self.register_outputs({"roles": sorted(self.roles)})
