"""The labels and tags the platform puts on what it creates, and its policies match on: defined once."""

MANAGED_BY = {"platform.io/managed-by": "platform-bootstrap"}
# Also the label and taint of a tenant's dedicated nodes (`platform.io/tenant=<tenant>:NoSchedule`,
# platform:tenants[].dedicatedNodes), which only that tenant's pods and the platform's DaemonSets tolerate.
TENANT_LABEL = "platform.io/tenant"
ENVIRONMENT_LABEL = "platform.io/environment"
CLUSTER_LABEL = "platform.io/cluster"
# What a platform DaemonSet that must run on every node carries to run on tenants' dedicated nodes too.
TENANT_NODES_TOLERATION = {"key": TENANT_LABEL, "operator": "Exists", "effect": "NoSchedule"}


def tenant_node_toleration(tenant: str) -> dict[str, str]:
    """What a pod of `tenant` carries to run on its dedicated nodes (with the node selector `TENANT_LABEL: tenant`)."""
    return {"key": TENANT_LABEL, "operator": "Equal", "value": tenant, "effect": "NoSchedule"}
# On every tenant namespace: what Gatekeeper's tenant-scoped constraints select.
TENANT_NAMESPACE_LABEL = "platform.io/tenant-namespace"
# A tenant namespace's Pod Security level: "restricted", or "baseline" where its tenant has an
# exception in stack config (`podSecurityException`); the cluster's restricted constraint skips
# only those, and their own constraint holds them to restricted but for the exception's allowances.
POD_SECURITY_LABEL = "platform.io/pod-security"


def managed_by(**extra: str) -> dict[str, str]:
    """The managed-by label (or AWS tag) with `extra` ones; a new dict each call."""
    return {**MANAGED_BY, **extra}
# On every tenant namespace: the image verifier (Sigstore policy-controller) checks signatures
# only in namespaces that opt in with this label (components/image_verifier.py).
SIGNATURE_POLICY_LABEL = "policy.sigstore.dev/include"


def pod_security_admission(level: str) -> dict[str, str]:
    """Namespace labels: Pod Security Admission enforces `level` and always warns and audits
    against `restricted`, so any exception stays visible."""
    return {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/warn-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/audit-version": "latest",
    }


# Labels a virtual cluster puts on the host copies of its pods (vcluster pkg/util/translate).
VCLUSTER_NAMESPACE_LABEL = "vcluster.loft.sh/namespace"
VCLUSTER_MANAGED_BY_LABEL = "vcluster.loft.sh/managed-by"
