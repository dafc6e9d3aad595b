"""A tenant's footprint on the workload clusters, derived from its name only.

Per environment (dev, prod): a namespace labelled for the policies, RoleBindings by role,
a ResourceQuota, a LimitRange and a default-deny NetworkPolicy that allows DNS and
same-namespace traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.cluster import ClusterHandle
from components.tenancy import ENVIRONMENT_LABEL, ENVIRONMENTS, TENANT_LABEL, TENANT_NAMESPACE_LABEL

# Role -> the ClusterRole it is bound to, per environment.
ROLE_BINDINGS: dict[str, dict[str, str]] = {
    "owners": {"dev": "admin", "prod": "admin"},
    "developers": {"dev": "admin", "prod": "view"},
    "ops": {"dev": "admin", "prod": "edit"},
}


@dataclass(frozen=True)
class TenantQuota:
    cpu: str
    memory: str
    storage: str


@dataclass(frozen=True)
class TenantArgs:
    name: str
    owners: list[str]
    developers: list[str]
    ops: list[str]
    quota: TenantQuota
    isolation: str = "namespace"

    def members(self, role: str) -> list[str]:
        return list(getattr(self, role))


def namespace_name(tenant: str, environment: str) -> str:
    return f"{tenant}-{environment}"


class TenantNamespace(pulumi.ComponentResource):
    """One tenant environment on its cluster: namespace, access, quota, limits and isolation."""

    namespace: k8s.core.v1.Namespace

    def __init__(
        self, name: str, cluster: ClusterHandle, tenant: TenantArgs, environment: str, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("platform:tenant:TenantNamespace", name, None, opts)
        ns_name = namespace_name(tenant.name, environment)
        labels = {TENANT_LABEL: tenant.name, TENANT_NAMESPACE_LABEL: "true", ENVIRONMENT_LABEL: environment}
        on_cluster = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        self.namespace = k8s.core.v1.Namespace(
            name, metadata=k8s.meta.v1.ObjectMetaArgs(name=ns_name, labels=labels), opts=on_cluster
        )
        inside = pulumi.ResourceOptions.merge(on_cluster, pulumi.ResourceOptions(depends_on=[self.namespace]))

        def meta(object_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=object_name, namespace=ns_name, labels=labels)

        for role, per_environment in ROLE_BINDINGS.items():
            users = tenant.members(role)
            if not users:
                continue
            k8s.rbac.v1.RoleBinding(
                f"{name}-{role}",
                metadata=meta(f"tenant-{role}"),
                role_ref=k8s.rbac.v1.RoleRefArgs(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=per_environment[environment]
                ),
                subjects=[
                    k8s.rbac.v1.SubjectArgs(api_group="rbac.authorization.k8s.io", kind="User", name=user)
                    for user in sorted(users)
                ],
                opts=inside,
            )
        k8s.core.v1.ResourceQuota(
            f"{name}-quota",
            metadata=meta("tenant-quota"),
            spec=k8s.core.v1.ResourceQuotaSpecArgs(
                hard={
                    "requests.cpu": tenant.quota.cpu,
                    "limits.cpu": tenant.quota.cpu,
                    "requests.memory": tenant.quota.memory,
                    "limits.memory": tenant.quota.memory,
                    "requests.storage": tenant.quota.storage,
                }
            ),
            opts=inside,
        )
        # Defaults so that a container without requests and limits still fits the quota.
        k8s.core.v1.LimitRange(
            f"{name}-limits",
            metadata=meta("tenant-limits"),
            spec=k8s.core.v1.LimitRangeSpecArgs(
                limits=[
                    k8s.core.v1.LimitRangeItemArgs(
                        type="Container",
                        default={"cpu": "500m", "memory": "512Mi"},
                        default_request={"cpu": "100m", "memory": "128Mi"},
                    )
                ]
            ),
            opts=inside,
        )
        same_namespace = [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())]
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=meta("tenant-default-deny"),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                policy_types=["Ingress", "Egress"],
                ingress=[k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=same_namespace)],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=same_namespace),
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[
                            k8s.networking.v1.NetworkPolicyPeerArgs(
                                namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                                    match_labels={"kubernetes.io/metadata.name": "kube-system"}
                                ),
                                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
                            )
                        ],
                        ports=[
                            k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=53),
                            k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=53),
                        ],
                    ),
                ],
            ),
            opts=inside,
        )
        self.register_outputs({"namespace": ns_name})


class Tenant(pulumi.ComponentResource):
    """Everything a team needs, from its entry in `platform:tenants`."""

    namespaces: dict[str, TenantNamespace]

    def __init__(
        self, args: TenantArgs, clusters: dict[str, ClusterHandle], opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("platform:tenant:Tenant", args.name, None, opts)
        self.namespaces = {
            environment: TenantNamespace(
                f"{args.name}-{environment}",
                clusters[environment],
                args,
                environment,
                pulumi.ResourceOptions(parent=self),
            )
            for environment in ENVIRONMENTS
        }
        self.register_outputs({"namespaces": {e: n.namespace.metadata.name for e, n in self.namespaces.items()}})
