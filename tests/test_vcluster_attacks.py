"""Attacks through a virtual cluster's host-side identities.

The attacker is tenant A: cluster-admin inside A's virtual cluster, or holding the token of a
ServiceAccount the vcluster chart creates on the host (the syncer's sits in the virtual control
plane's pod, one syncer bug away from the virtual API A administers). The goal: read or change
anything outside A's host namespace. What those accounts may do is read here from the real Helm
render of each vcluster release and every RBAC object declared on its host cluster (the plan's own
and every release's), as the API server's RBAC authorizer would combine them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.render import Render
from tests.test_gatekeeper_plan import admission

RBAC = "rbac.authorization.k8s.io/v1"
READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection", "bind", "escalate", "impersonate")
# What the syncer reads cluster-wide, and why it cannot be less: `networking.replicateServices.fromHost`
# (the Prometheus query proxy's Service, from the `prometheus` namespace) runs on a second host
# manager with no namespace restriction (vcluster v0.36.1 pkg/controllers/register.go:117, whose
# controller watches Services and Endpoints in every namespace, pkg/controllers/servicesync/servicesync.go:51-70).
CLUSTER_WIDE_READS = {("", "services"), ("", "endpoints")}


def cluster_objects(result: Render, cluster: str) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(object, namespace) for every Kubernetes object declared on `cluster`: the plan's and each release's render."""
    for resource in result.plan["resources"]:
        if resource.get("cluster") != cluster or not resource["type"].startswith("kubernetes:"):
            continue
        if resource["type"] == RELEASE_TYPE:
            for obj in resource.get("rendered") or []:
                yield obj, object_namespace(obj, resource["inputs"]["namespace"])
        elif "kind" in resource["inputs"]:
            yield resource["inputs"], object_namespace(resource["inputs"], "default")


def names(account: tuple[str, str]) -> set[tuple[str, str]]:
    """The subjects (kind, name) an account authenticates as: itself and the groups every token carries."""
    namespace, name = account
    return {("User", f"system:serviceaccount:{namespace}:{name}"), ("Group", "system:serviceaccounts"),
            ("Group", f"system:serviceaccounts:{namespace}"), ("Group", "system:authenticated")}


def bound(binding: dict[str, Any], binding_namespace: str | None, account: tuple[str, str]) -> bool:
    for subject in binding.get("subjects") or []:
        if subject["kind"] == "ServiceAccount":
            if (subject.get("namespace") or binding_namespace, subject["name"]) == account:
                return True
        elif (subject["kind"], subject["name"]) in names(account):
            return True
    return False


def grants(result: Render, cluster: str, account: tuple[str, str]) -> list[tuple[str | None, dict[str, Any]]]:
    """(scope, rule) for every rule `account` holds on `cluster`: scope None is every namespace (a ClusterRoleBinding)."""
    everything = list(cluster_objects(result, cluster))
    roles = {(obj["kind"], namespace, obj["metadata"]["name"]): obj.get("rules") or []
             for obj, namespace in everything if obj.get("apiVersion") == RBAC and obj["kind"] in ("Role", "ClusterRole")}
    found = []
    for obj, namespace in everything:
        if obj.get("apiVersion") != RBAC or obj["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if bound(obj, namespace, account):
            ref = obj["roleRef"]
            rules = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
            found += [(namespace, rule) for rule in rules]
    return found


def allows(rule: dict[str, Any], verb: str, group: str, resource: str) -> bool:
    """Whether `rule` allows `verb` on `resource` of API `group`, for at least one object name."""
    return (
        any(v in (verb, "*") for v in rule.get("verbs") or [])
        and any(g in (group, "*") for g in rule.get("apiGroups") or [])
        and any(r in (resource, "*") for r in rule.get("resources") or [])
    )


def virtual_clusters(charted: dict[str, Render]) -> Iterator[tuple[str, Render, dict[str, Any]]]:
    for stack, result in charted.items():
        for resource in result.plan["resources"]:
            if resource["type"] == RELEASE_TYPE and resource["inputs"]["chart"] == "vcluster":
                yield stack, result, resource


def host_accounts(release: dict[str, Any]) -> list[tuple[str, str]]:
    """Every ServiceAccount the chart renders on the host, and every one its pods run as."""
    namespace = release["inputs"]["namespace"]
    accounts = {(namespace, obj["metadata"]["name"]) for obj in release["rendered"] if obj["kind"] == "ServiceAccount"}
    pods = [obj["spec"]["template"]["spec"] for obj in release["rendered"] if "template" in (obj.get("spec") or {})]
    return sorted(accounts | {(namespace, pod.get("serviceAccountName") or "default") for pod in pods})


def syncer(release: dict[str, Any]) -> str:
    """The ServiceAccount the virtual control plane (and its syncer) runs as."""
    [account] = [o["spec"]["template"]["spec"]["serviceAccountName"] for o in release["rendered"] if o["kind"] == "StatefulSet"]
    return account


def beyond(charted: dict[str, Render]) -> Iterator[tuple[str, tuple[str, str], str | None, dict[str, Any]]]:
    """(release, account, scope, rule) for every rule a virtual cluster's host account holds outside its own namespace."""
    checked = 0
    for stack, result, release in virtual_clusters(charted):
        for account in host_accounts(release):
            checked += 1
            for scope, rule in grants(result, release["cluster"], account):
                if scope != release["inputs"]["namespace"]:
                    yield f"{stack}/{release['cluster']}/{release['inputs']['name']}", account, scope, rule
    assert checked >= 4, "no virtual cluster's host accounts were checked"


def test_no_host_account_of_a_virtual_cluster_reads_a_secret_outside_its_namespace(charted: dict[str, Render]) -> None:
    # Not even by name: a `get` on `harbor-pull` in every namespace reads every tenant's pull secret.
    leaks = [
        f"{release} {account[1]} ({scope or 'every namespace'}): {rule}"
        for release, account, scope, rule in beyond(charted)
        if any(allows(rule, verb, "", "secrets") for verb in READ)
    ]
    assert not leaks, "\n".join(leaks)


def test_no_host_account_of_a_virtual_cluster_changes_anything_outside_its_namespace(charted: dict[str, Render]) -> None:
    writes = [
        f"{release} {account[1]} ({scope or 'every namespace'}): {rule}"
        for release, account, scope, rule in beyond(charted)
        if any(allows(rule, verb, group, resource) for verb in WRITE
               for group in rule.get("apiGroups") or [""] for resource in rule.get("resources") or [])
    ]
    assert not writes, "\n".join(writes)


def test_outside_its_namespace_a_virtual_cluster_reads_only_the_services_it_replicates(charted: dict[str, Render]) -> None:
    reads = {
        (release, account[1], group, resource)
        for release, account, _, rule in beyond(charted)
        for group in rule.get("apiGroups") or ["(non-resource)"]
        for resource in rule.get("resources") or rule.get("nonResourceURLs") or []
    }
    assert {(group, resource) for *_, group, resource in reads} == CLUSTER_WIDE_READS, sorted(reads)


def test_a_virtual_cluster_keeps_the_host_reads_its_features_need(charted: dict[str, Render]) -> None:
    # The Secrets it copies in (`sync.fromHost.secrets`) all come from its host namespace, where its
    # Role reads them; the Service it replicates (`networking.replicateServices.fromHost`) from any.
    for stack, result, release in virtual_clusters(charted):
        namespace = release["inputs"]["namespace"]
        values = release["inputs"]["values"]
        assert {key.split("/")[0] for key in values["sync"]["fromHost"]["secrets"]["mappings"]["byName"]} == {namespace}
        assert values["networking"]["replicateServices"]["fromHost"]  # what the cluster-wide reads are for
        held = grants(result, release["cluster"], (namespace, syncer(release)))
        needed = [(namespace, "secrets"), (None, "services"), (None, "endpoints")]
        missing = [(scope, resource, verb) for scope, resource in needed for verb in READ
                   if not any(allows(rule, verb, "", resource) for where, rule in held if where == scope)]
        assert not missing, f"{stack} {namespace}: {missing}"


def helm_secret(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "data": {"release": "H4sIAAAAAAAA"}}


def test_a_virtual_clusters_syncer_cannot_forge_or_alter_the_helm_release_in_its_host_namespace(charted: dict[str, Render]) -> None:
    # Tenant A, admin inside, creates a Secret labelled as revision 99 of the virtual cluster's own
    # release, whose manifest would list the host's `vault` Namespace, and mounts it in a pod: the syncer
    # copies it to the host namespace with its labels, and at the next upgrade Helm, with the
    # deployer's rights, would delete what that "release" lists and the chart no longer renders.
    checked = 0
    for stack, result, release in virtual_clusters(charted):
        namespace, name = release["inputs"]["namespace"], release["inputs"]["name"]
        user = f"system:serviceaccount:{namespace}:{syncer(release)}"
        revision = {"owner": "helm", "name": name, "status": "deployed", "version": "99"}
        forged = helm_secret(namespace, "sh.helm.release.v1.app-x-catalog-x-" + namespace, revision)
        current = helm_secret(namespace, f"sh.helm.release.v1.{name}.v1", {**revision, "version": "1"})
        stripped = {**current, "metadata": {**current["metadata"], "labels": {}}}
        ordinary = {**forged, "type": "Opaque", "metadata": {**forged["metadata"], "labels": {"app": "web"}}}

        def denied(obj: dict[str, Any], user: str, operation: str = "CREATE", old: dict[str, Any] | None = None) -> bool:
            kinds, failures = admission(result.plan, release["cluster"], obj, operation, old, user)
            assert "PlatformTenantObjects" in kinds
            return any("owner=helm" in failure for failure in failures)

        assert denied(forged, user), f"{stack} {namespace}: the syncer forges a release"
        assert denied(stripped, user, "UPDATE", current), f"{stack} {namespace}: the syncer strips the release's labels"
        assert not denied(ordinary, user), f"{stack} {namespace}: a tenant's own Secret"
        assert not denied(helm_secret(namespace, f"sh.helm.release.v1.{name}.v2", {**revision, "version": "2"}), "kubernetes-admin")
        checked += 1
    assert checked >= 4


def test_a_virtual_cluster_cannot_point_its_host_services_at_other_tenants_pods(charted: dict[str, Render]) -> None:
    # Tenant A writes, inside, a Service without a selector and its Endpoints (or EndpointSlices)
    # listing tenant B's pod addresses, and an Ingress to it on A's own host: synced to the host, the
    # ingress controller would forward A's visitors to B's pods, whose NetworkPolicy admits it
    # (CVE-2021-25740). Tenants in namespaces may only read Endpoints (components/tenant_roles.py).
    writes = [
        f"{stack} {release['inputs']['namespace']}: {rule}"
        for stack, result, release in virtual_clusters(charted)
        for scope, rule in grants(result, release["cluster"], (release["inputs"]["namespace"], syncer(release)))
        for group, resource in (("", "endpoints"), ("discovery.k8s.io", "endpointslices"))
        if any(allows(rule, verb, group, resource) for verb in WRITE)
    ]
    assert not writes, "\n".join(writes)
