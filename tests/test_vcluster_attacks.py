"""Attacks through a virtual cluster's host-side identities.

The attacker is tenant A: cluster-admin inside A's virtual cluster, or holding the token of a
ServiceAccount the vcluster chart creates on the host (the syncer's sits in the virtual control
plane's pod, one syncer bug away from the virtual API A administers). The goal: read or change
anything outside A's host namespace. What those accounts may do is read here from the real Helm
render of each vcluster release and every RBAC object declared on its host cluster (the plan's own
and every release's), evaluated as Kubernetes does (tests/test_daemonset_attacks.py `grants`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.test_daemonset_attacks import Grant, allows, grants
from tests.test_gatekeeper_plan import admission

READ = ("get", "list", "watch")
WRITE = ("create", "update", "patch", "delete", "deletecollection", "bind", "escalate", "impersonate", "*")
# What the syncer reads cluster-wide, and why it cannot be less: `networking.replicateServices.fromHost`
# (the Prometheus query proxy's Service, from the `prometheus` namespace) runs on a second host
# manager with no namespace restriction (vcluster v0.36.1 pkg/controllers/register.go:117, whose
# controller watches Services and Endpoints in every namespace, pkg/controllers/servicesync/servicesync.go:51-70).
CLUSTER_WIDE_READS = {("", "services"), ("", "endpoints")}


def offending(grant: Grant, verbs: tuple[str, ...], group: str, resource: str) -> list[dict[str, Any]]:
    """The rules of `grant` that allow one of `verbs` on `group/resource`."""
    return [rule for rule in grant.rules
            if any(allows(Grant(grant.namespace, (rule,)), verb, group, resource, grant.namespace) for verb in verbs)]


def virtual_clusters(charted: dict[str, Render]) -> Iterator[tuple[str, Render, dict[str, Any]]]:
    for stack, result in charted.items():
        for resource in result.plan["resources"]:
            if resource["type"] == RELEASE_TYPE and resource["inputs"]["chart"] == "vcluster":
                yield stack, result, resource


def host_accounts(release: dict[str, Any]) -> list[str]:
    """Every ServiceAccount the chart renders on the host, and every one its pods run as."""
    accounts = {obj["metadata"]["name"] for obj in release["rendered"] if obj["kind"] == "ServiceAccount"}
    pods = [obj["spec"]["template"]["spec"] for obj in release["rendered"] if "template" in (obj.get("spec") or {})]
    return sorted(accounts | {pod.get("serviceAccountName") or "default" for pod in pods})


def syncer(release: dict[str, Any]) -> str:
    """The ServiceAccount the virtual control plane (and its syncer) runs as."""
    [account] = [o["spec"]["template"]["spec"]["serviceAccountName"] for o in release["rendered"] if o["kind"] == "StatefulSet"]
    return account


def beyond(charted: dict[str, Render]) -> Iterator[tuple[str, Grant]]:
    """("<release> <account> (<where>)", grant) for every grant a virtual cluster's host account holds outside its own namespace."""
    checked = 0
    for stack, result, release in virtual_clusters(charted):
        namespace = release["inputs"]["namespace"]
        for account in host_accounts(release):
            checked += 1
            for grant in grants(result.plan, release["cluster"], namespace, account):
                if grant.namespace != namespace:
                    yield f"{stack}/{release['cluster']}/{namespace} {account} ({grant.namespace or 'every namespace'})", grant
    assert checked >= 4, "no virtual cluster's host accounts were checked"


def test_no_host_account_of_a_virtual_cluster_reads_a_secret_outside_its_namespace(charted: dict[str, Render]) -> None:
    # Not even by name: a `get` on `harbor-pull` in every namespace reads every tenant's pull secret.
    leaks = [f"{who}: {rule}" for who, grant in beyond(charted) for rule in offending(grant, READ, "", "secrets")]
    assert not leaks, "\n".join(leaks)


def test_no_host_account_of_a_virtual_cluster_changes_anything_outside_its_namespace(charted: dict[str, Render]) -> None:
    writes = [f"{who}: {rule}" for who, grant in beyond(charted) for rule in grant.rules if set(rule.get("verbs", ())) & set(WRITE)]
    assert not writes, "\n".join(writes)


def test_outside_its_namespace_a_virtual_cluster_reads_only_the_services_it_replicates(charted: dict[str, Render]) -> None:
    reads = {
        (who, group, resource)
        for who, grant in beyond(charted) for rule in grant.rules
        for group in rule.get("apiGroups") or ["(non-resource)"]
        for resource in rule.get("resources") or rule.get("nonResourceURLs") or []
    }
    assert {(group, resource) for _, group, resource in reads} == CLUSTER_WIDE_READS, sorted(reads)


def test_a_virtual_cluster_keeps_the_host_reads_its_features_need(charted: dict[str, Render]) -> None:
    # The Secrets it copies in (`sync.fromHost.secrets`) all come from its host namespace, where its
    # Role reads them; the Service it replicates (`networking.replicateServices.fromHost`) from any.
    for stack, result, release in virtual_clusters(charted):
        namespace = release["inputs"]["namespace"]
        values = release["inputs"]["values"]
        assert {key.split("/")[0] for key in values["sync"]["fromHost"]["secrets"]["mappings"]["byName"]} == {namespace}
        assert values["networking"]["replicateServices"]["fromHost"]  # what the cluster-wide reads are for
        held = grants(result.plan, release["cluster"], namespace, syncer(release))
        needed = [(namespace, "secrets"), (None, "services"), (None, "endpoints")]
        missing = [(scope, resource, verb) for scope, resource in needed for verb in READ
                   if not any(allows(grant, verb, "", resource, scope) for grant in held)]
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
        for grant in grants(result.plan, release["cluster"], release["inputs"]["namespace"], syncer(release))
        for group, resource in (("", "endpoints"), ("discovery.k8s.io", "endpointslices"))
        for rule in offending(grant, WRITE, group, resource)
    ]
    assert not writes, "\n".join(writes)
