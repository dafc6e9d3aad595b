"""What tenants' people may do in their namespaces: the platform's ClusterRoles, evaluated as
Kubernetes RBAC does (rules are additive; a verb, group and resource must each match)."""

from __future__ import annotations

from typing import Any

import pytest

from components.kube_oidc_proxy import NAMESPACE as PROXY_NAMESPACE
from components.tenancy import Isolation, TenantArgs, TenantMembers, TenantQuota
from components.tenant import ROLE_BINDINGS, virtual_cluster_documents
from components.tenant_roles import RULES, TENANT_ADMIN, TENANT_EDIT, tenant_role_manifests


def allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str) -> bool:
    return any(
        (verb in r["verbs"] or "*" in r["verbs"])
        and (group in r["apiGroups"] or "*" in r["apiGroups"])
        and (resource in r["resources"] or "*" in r["resources"])
        for r in rules
    )


GUARDRAILS = [
    ("networking.k8s.io", "networkpolicies"),
    ("", "resourcequotas"),
    ("", "limitranges"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "roles"),
    ("", "namespaces"),
]


@pytest.mark.parametrize("role", sorted(RULES))
@pytest.mark.parametrize(("group", "resource"), GUARDRAILS)
@pytest.mark.parametrize("verb", ["create", "update", "patch", "delete", "deletecollection"])
def test_tenant_roles_cannot_change_the_platforms_guardrails(role: str, group: str, resource: str, verb: str) -> None:
    assert not allows(RULES[role], verb, group, resource)


@pytest.mark.parametrize("role", sorted(RULES))
def test_tenant_roles_cannot_escalate_bind_or_impersonate(role: str) -> None:
    rules = RULES[role]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["apiGroups"] + rule["resources"], rule
        assert not {"bind", "escalate", "impersonate"} & set(rule["verbs"]), rule
    assert not allows(rules, "create", "", "serviceaccounts/token")


@pytest.mark.parametrize("role", sorted(RULES))
def test_tenant_roles_still_run_workloads(role: str) -> None:
    for group, resource in [("apps", "deployments"), ("", "pods"), ("", "secrets"), ("", "services"), ("batch", "jobs"),
                            ("networking.k8s.io", "ingresses"), ("external-secrets.io", "externalsecrets")]:
        assert allows(RULES[role], "create", group, resource)
    assert allows(RULES[role], "get", "networking.k8s.io", "networkpolicies")


def test_people_are_bound_only_to_the_platforms_roles_never_to_admin_or_edit() -> None:
    bound = {role for per_environment in ROLE_BINDINGS.values() for role in per_environment.values()}
    assert bound == {TENANT_ADMIN, TENANT_EDIT, "view"}
    assert {m["metadata"]["name"] for m in tenant_role_manifests()} == {TENANT_ADMIN, TENANT_EDIT}


def test_inside_a_virtual_cluster_nothing_of_the_tenants_reaches_the_proxy_namespace() -> None:
    tenant = TenantArgs("team-a", TenantMembers(("alice",), ("bob",), ("dave",)), TenantQuota("1", "1Gi", "1Gi", "1Gi"), isolation=Isolation.VCLUSTER)
    for environment in ("dev", "prod"):
        documents = virtual_cluster_documents(tenant, environment, federated=True)
        bindings = [d for d in documents if d["kind"] in ("RoleBinding", "ClusterRoleBinding")]
        people = {"alice", "bob", "dave"}
        for binding in bindings:
            subjects = {s["name"] for s in binding["subjects"]}
            if binding["kind"] == "ClusterRoleBinding":
                # Cluster-wide only ArgoCD's read role; never a person.
                assert not subjects & people and binding["roleRef"]["name"].endswith("-read"), binding
            else:
                assert binding["metadata"]["namespace"] == "team-a" != PROXY_NAMESPACE, binding
        assert people <= {s["name"] for b in bindings if b["kind"] == "RoleBinding" for s in b["subjects"]}
