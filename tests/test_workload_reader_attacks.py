"""An attacker's review of the workload clusters' service accounts (dev and prod of both stacks: kubeconfig
on the dev stack, EKS on the prod stack). Every tenant's namespaces, Secrets and pods are there, and
several platform pods process tenant input (Traefik serves the internet; Argo Rollouts runs tenants'
analyses; External Secrets reads tenants' ExternalSecrets): whoever takes over one holds its token.
An account that reads every Secret, execs into any pod or is cluster-admin there reaches every
tenant. Only the accounts of READERS may, each for the reason it gives.

Every account of each workload cluster (ServiceAccounts the plan or a release's real Helm render
declares, and every account a binding names) is judged by that cluster's RBAC objects, evaluated as
Kubernetes does (tests/cluster_readers.py, tests/test_daemonset_attacks.py `grants`).
"""

from __future__ import annotations

from typing import Any

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.cluster_readers import CLUSTER_ADMIN, EXECS, READS_SECRETS, Readers, accounts, stale, table, unjustified
from tests.test_controlplane_reader_attacks import READERS as CONTROL_PLANE_READERS
from tests.test_controlplane_reader_attacks import rule_set
from tests.test_daemonset_attacks import READ, anywhere, grants

WORKLOAD_CLUSTERS = ("dev", "prod")

# The accounts that must keep a power cluster-wide on a workload cluster, with why no chart option takes it away.
READERS: Readers = {
    # As on the control plane: the Certificates' Secrets, the webhook's CA, the audit of PlatformTenantObjects.
    **{key: CONTROL_PLANE_READERS[key] for key in (
        ("cert-manager", "cert-manager"), ("cert-manager", "cert-manager-cainjector"), ("gatekeeper-system", "gatekeeper-admin"))},
    ("velero", "velero-server"): (frozenset({CLUSTER_ADMIN, READS_SECRETS, EXECS}), (
        "backs up every object of the tenants' namespaces, Secrets among them, and restores any kind into them; "
        "the chart binds it to cluster-admin (velero 12.1.0 templates/clusterrolebinding.yaml lines 1, 16-18, "
        "values.yaml rbac.clusterAdministrator lines 614-616), and any narrower role would have to list every "
        "kind a tenant may keep; its credential is in the inventory")),
    ("external-secrets", "external-secrets"): (frozenset({READS_SECRETS}), (
        "writes each tenant's ExternalSecret into a Secret of the tenant's namespace, which it must read back; "
        "`scopedRBAC` confines it to one namespace (`scopedNamespace`), not to every tenant's "
        "(external-secrets 2.9.0 templates/rbac.yaml lines 3-11 and 149-159, values.yaml lines 127-131)")),
    ("apps-ingress", "traefik"): (frozenset({READS_SECRETS}), (
        "serves the tenants' Ingresses, which are in every tenant namespace: its Ingress and CRD providers keep a "
        "Secret informer (list, watch) in each namespace they watch, which a `resourceNames` limit breaks "
        "(traefik/traefik#7097; traefik 37.4.0 templates/rbac/clusterrole.yaml lines 63-70, whose `rbac.secretResourceNames` "
        "upstream removed for that, traefik-helm-chart#1653, #1683). Watching a list of namespaces, as the control "
        "plane's Traefik does, would still read every tenant's Secrets and take only the platform's namespaces out of "
        "reach, at the price of upgrading this internet-facing Traefik on both clusters with each tenant added or "
        "removed: the tenancy refuses that (tests/test_tenants.py, a new tenant changes no existing resource) and a "
        "tenant namespace's PlatformTenantBindingSubjects admits no outside account's RoleBinding")),
    ("cosign-system", "policy-controller-webhook"): (frozenset({READS_SECRETS}), (
        "verifies each pod's images with the pull secrets its pod and service account name, in the pod's "
        "namespace (k8schain), so `get` on Secrets in every tenant namespace; the chart's ClusterRole is "
        "fixed (policy-controller 0.10.6 templates/webhook/clusterrole_webhook.yaml lines 37-43)")),
}


def test_the_review_sees_the_workload_clusters_accounts(charted: dict[str, Render]) -> None:
    """It judges the accounts the charts render and the platform declares, on every workload cluster of both stacks."""
    for result in charted.values():
        for cluster in WORKLOAD_CLUSTERS:
            seen = set(accounts(result.plan, cluster))
            assert {("apps-ingress", "traefik"), ("argo-rollouts", "argo-rollouts"), ("external-secrets", "external-secrets"),
                    ("cert-manager", "cert-manager"), ("velero", "velero-server"), ("monitoring", "prometheus-server"),
                    ("metrics-server", "metrics-server")} <= seen, cluster


def test_only_the_reasoned_few_read_every_secret_exec_or_are_cluster_admin(charted: dict[str, Render]) -> None:
    """No account of a workload cluster outside READERS holds a power cluster-wide, nor one its entry does not name."""
    found = unjustified(table(charted, WORKLOAD_CLUSTERS), READERS)
    assert not found, "a pod taken over reaches every tenant:\n" + "\n".join(found)


def test_every_reader_still_needs_its_place(charted: dict[str, Render]) -> None:
    """An entry of READERS whose account no longer holds its powers on any workload cluster is dropped, not kept."""
    assert not (dropped := stale(table(charted, WORKLOAD_CLUSTERS), READERS)), dropped


# --- how the services that could were narrowed, and that they keep working --------------------------

def release_on(result: Render, cluster: str, chart: str) -> dict[str, Any]:
    [release] = [r for r in result.plan["resources"] if r.get("cluster") == cluster and r["type"] == RELEASE_TYPE
                 and r["inputs"]["chart"] == chart]
    return release


def test_argo_rollouts_reads_secrets_in_its_namespace_only(charted: dict[str, Render]) -> None:
    """The controller's notification Secret and plugin headers are in `argo-rollouts`: it reads Secrets there,
    and keeps cluster-wide what else it manages (Rollouts, ReplicaSets, Services, analyses' Jobs)."""
    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            rendered = release_on(result, cluster, "argo-rollouts")["rendered"]
            assert [o["metadata"]["name"] for o in rendered if o["kind"] == "ClusterRoleBinding"] == [], (stack, cluster)
            held = grants(result.plan, cluster, "argo-rollouts", "argo-rollouts")
            assert [anywhere(held, verb, "", "secrets") for verb in READ] == [["argo-rollouts"]] * 3, (stack, cluster)
            for request in (("update", "argoproj.io", "rollouts"), ("create", "apps", "replicasets"), ("patch", "", "services"),
                            ("create", "batch", "jobs"), ("create", "coordination.k8s.io", "leases")):
                assert anywhere(held, *request) == ["cluster-wide"], (stack, cluster, request)


def test_argo_rollouts_grants_are_what_its_pinned_chart_grants_but_secrets(charted: dict[str, Render]) -> None:
    """The platform's ClusterRole for the controller is the pinned chart's own (`controller.createClusterRole: true`,
    rendered by the real Helm engine) without its Secrets rule; the Role in its namespace is that rule."""
    from components.argo_rollouts import CONTROLLER_RULES, SECRET_RULES
    from platformctl.charts import verified
    from platformctl.helm_render import cluster_api_versions, render_release
    from tests.test_helm_render import kubernetes_versions

    inputs, version = release_on(charted["dev"], "dev", "argo-rollouts")["inputs"], kubernetes_versions("dev")["dev"]
    values = {**inputs["values"], "controller": {**inputs["values"]["controller"], "createClusterRole": True},
              "providerRBAC": {"enabled": False}}  # the tenants' canaries weigh by pod count: no provider's rights
    objects = render_release(verified("argo-rollouts", inputs["version"]), values, name=inputs["name"], namespace=inputs["namespace"],
                             kubernetes_version=version, api_versions=cluster_api_versions(charted["dev"].plan, "dev", version))
    [role] = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "argo-rollouts"]
    assert rule_set(CONTROLLER_RULES) | rule_set(SECRET_RULES) == rule_set(role["rules"])
    assert rule_set(SECRET_RULES) == {("", "secrets", verb) for verb in READ}
    assert not {resource for _, resource, _ in rule_set(CONTROLLER_RULES)} & {"secrets", "*"}


def test_external_secrets_webhook_has_its_certificate_from_cert_manager_not_the_cert_controller(charted: dict[str, Render]) -> None:
    """The chart's cert controller read every Secret to keep one: a Certificate from a self-signed Issuer of the
    platform in its namespace takes its place, and cert-manager injects its CA into the webhook's configurations."""
    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            release = release_on(result, cluster, "external-secrets")
            rendered = release["rendered"]
            assert not [o for o in rendered if "cert-controller" in o["metadata"]["name"]], (stack, cluster)
            [certificate] = [o for o in rendered if o["kind"] == "Certificate"]
            issuers = [r["inputs"] for r in result.plan["resources"] if r.get("cluster") == cluster
                       and r["inputs"].get("kind") == "Issuer" and r["inputs"]["metadata"].get("namespace") == "external-secrets"]
            assert [i["metadata"]["name"] for i in issuers if i["spec"] == {"selfSigned": {}}] == [certificate["spec"]["issuerRef"]["name"]]
            webhooks = [o for o in rendered if o["kind"] == "ValidatingWebhookConfiguration"]
            assert webhooks and all(w["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
                                    == f"external-secrets/{certificate['metadata']['name']}" for w in webhooks)
            assert any("Release::" in d and "cert-manager" in d for d in release["dependsOn"]), (stack, cluster)
