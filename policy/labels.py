"""The labels and tags the platform puts on what it creates, and its policies match on: defined once."""

MANAGED_BY = {"platform.io/managed-by": "platform-bootstrap"}
TENANT_LABEL = "platform.io/tenant"
ENVIRONMENT_LABEL = "platform.io/environment"
CLUSTER_LABEL = "platform.io/cluster"
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
