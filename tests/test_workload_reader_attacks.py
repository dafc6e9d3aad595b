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
from tests.cluster_readers import CLUSTER_ADMIN, EXECS, READS_CA_KEY, READS_SECRETS, Readers, accounts, ca_key_secrets, stale, table, unjustified
from tests.test_controlplane_reader_attacks import READERS as CONTROL_PLANE_READERS
from tests.test_controlplane_reader_attacks import rule_set
from tests.test_daemonset_attacks import RBAC, READ, allows, anywhere, cluster_objects, grants
from tests.test_gatekeeper_plan import TENANT_NAMESPACE_LABEL, admission

WORKLOAD_CLUSTERS = ("dev", "prod")

# The accounts that must keep a power cluster-wide on a workload cluster, with why no chart option takes it away.
READERS: Readers = {
    # As on the control plane: the Certificates' Secrets, the webhook's CA, the audit of PlatformTenantObjects. No
    # workload cluster keeps a CA key the plan declares (test_no_workload_cluster_keeps_a_ca_key), so none reads one;
    # a virtual cluster's own PKI Secret, which these read, is its alone (tests/test_vcluster_attacks.py).
    **{key: (CONTROL_PLANE_READERS[key][0] - {READS_CA_KEY}, CONTROL_PLANE_READERS[key][1]) for key in (
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


def test_no_workload_cluster_keeps_a_ca_key(charted: dict[str, Render]) -> None:
    """Traefik here serves the internet and reads every Secret (READERS), as do Velero, External Secrets, the image
    verifier and Gatekeeper: a CA key on the cluster would be theirs. A CA the platform root signs would sign any
    name every platform client accepts (Vault's, GitLab's, the OIDC issuer's on the control plane): none is kept."""
    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            assert ca_key_secrets(result.plan, cluster) == set(), (stack, cluster)


# --- how the services that could were narrowed, and that they keep working --------------------------

def release_on(result: Render, cluster: str, chart: str) -> dict[str, Any]:
    [release] = [r for r in result.plan["resources"] if r.get("cluster") == cluster and r["type"] == RELEASE_TYPE
                 and r["inputs"]["chart"] == chart]
    return release


ROLLOUTS = ("argo-rollouts", "argo-rollouts")  # the controller's account (the chart's)
WRITES = ("create", "update", "patch", "delete", "deletecollection")
# Its own namespace's objects it changes: its leader election Lease and its ConfigMaps (controller/controller.go
# lines 503-506, utils/config/config.go line 37, v1.9.0), its events.
OWN_WRITES = {("coordination.k8s.io", "leases"), ("", "configmaps"), ("", "events")}


def rollout_namespaces(plan: dict[str, Any], cluster: str) -> set[str]:
    """The namespaces on `cluster` whose Rollouts the host's controller runs: the tenants' and the sandboxes',
    but a virtual cluster's (its Rollouts are inside, run by its own controller)."""
    objects = list(cluster_objects(plan, cluster))
    virtual = {r["inputs"]["namespace"] for r in plan["resources"] if r.get("cluster") == cluster and r["type"] == RELEASE_TYPE
               and r["inputs"]["chart"].endswith("vcluster")}
    return {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"
            and o["metadata"].get("labels", {}).get(TENANT_NAMESPACE_LABEL) == "true"} - virtual


def test_argo_rollouts_changes_nothing_outside_the_namespaces_whose_rollouts_it_runs(charted: dict[str, Render]) -> None:
    """An attacker's test. The controller runs the tenants' analyses (it calls their providers, reads their Jobs'
    results): taken over, each write it holds outside the tenants' namespaces is a way out of them. A ReplicaSet or
    a Job it creates in a platform namespace runs any image as any account there (in `velero`, the server's,
    cluster-admin; Gatekeeper's webhook skips the exempt namespaces), a Deployment it updates runs another image
    as a platform server, a pod it relabels joins another Service or leaves a NetworkPolicy, a Service it patches
    takes a platform Service's traffic, a Lease it takes stops another controller. So it may change objects only in
    the namespaces whose Rollouts it runs, and in its own only its Lease, ConfigMaps and events."""
    found = []
    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            tenants = rollout_namespaces(result.plan, cluster)
            for grant in grants(result.plan, cluster, *ROLLOUTS):
                place = grant.namespace or "cluster-wide"
                for group, resource, verb in sorted(rule_set(list(grant.rules))):
                    if (verb in WRITES or verb == "*") and not (
                            place in tenants or (place == ROLLOUTS[0] and (group, resource) in OWN_WRITES)):
                        found.append(f"{stack} {cluster} {place}: {verb} {group or 'core'}/{resource}")
    assert not found, "the Rollouts controller taken over changes, outside the tenants' namespaces:\n" + "\n".join(found)


# What the controller calls for the canary and blue-green Rollouts with analysis the platform ships
# (components/tenant_rollout.py), read from argo-rollouts v1.9.0: (verb, group, resource).
ROLLOUT_CALLS = [
    ("update", "argoproj.io", "rollouts"), ("patch", "argoproj.io", "rollouts/status"),  # rollout/sync.go
    # rollout/analysis.go; an AnalysisRun has no status subresource (the chart's CRD: `subresources: {}`)
    ("create", "argoproj.io", "analysisruns"), ("update", "argoproj.io", "analysisruns"), ("create", "argoproj.io", "experiments"),
    ("create", "apps", "replicasets"), ("update", "apps", "replicasets"), ("patch", "apps", "replicasets"),  # rollout/sync.go line 195
    ("patch", "", "services"), ("create", "", "services"), ("delete", "", "services"),  # the selectors; experiments/service.go
    ("create", "batch", "jobs"), ("delete", "batch", "jobs"),  # a Job metric, metricproviders/job/job.go lines 150, 255
    ("update", "", "pods"),  # ephemeral metadata, rollout/ephemeralmetadata.go line 134
    ("create", "", "pods/eviction"),  # restartAt, rollout/restart.go line 115
    ("update", "apps", "deployments"),  # a workloadRef's scale-down, rollout/scale_utils.go
    ("create", "", "events"), ("patch", "", "events"),  # the recorder, on the Rollout
]
# Its informers watch every namespace (cmd/rollouts-controller/main.go lines 155-180: metav1.NamespaceAll).
CLUSTER_READS = [(verb, group, resource) for verb in ("list", "watch") for group, resource in (
    ("argoproj.io", "rollouts"), ("argoproj.io", "analysisruns"), ("argoproj.io", "experiments"), ("argoproj.io", "analysistemplates"),
    ("argoproj.io", "clusteranalysistemplates"), ("apps", "replicasets"), ("", "services"), ("", "pods"), ("batch", "jobs"),
    ("networking.k8s.io", "ingresses"))]
OWN_CALLS = [("create", "coordination.k8s.io", "leases"), ("get", "coordination.k8s.io", "leases"), ("update", "coordination.k8s.io", "leases"),
             *((verb, "", resource) for verb in READ for resource in ("configmaps", "secrets"))]


def test_argo_rollouts_may_run_the_platforms_rollouts_where_the_tenants_run_them(charted: dict[str, Render]) -> None:
    """The canaries and blue-green Rollouts with analysis keep working: in every namespace whose Rollouts the host's
    controller runs it holds what it calls there; it watches every namespace, elects its leader and reads its
    notification Secret in its own; it reads Secrets nowhere else."""
    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            held = grants(result.plan, cluster, *ROLLOUTS)
            tenants = rollout_namespaces(result.plan, cluster)
            assert tenants, (stack, cluster)
            missing = [(ns, call) for ns in sorted(tenants) for call in ROLLOUT_CALLS if not any(allows(g, *call, ns) for g in held)]
            missing += [("cluster-wide", call) for call in CLUSTER_READS if "cluster-wide" not in anywhere(held, *call)]
            missing += [(ROLLOUTS[0], call) for call in OWN_CALLS if not any(allows(g, *call, ROLLOUTS[0]) for g in held)]
            assert not missing, (stack, cluster, missing)
            assert [anywhere(held, verb, "", "secrets") for verb in READ] == [[ROLLOUTS[0]]] * 3, (stack, cluster)


def test_argo_rollouts_grants_are_what_its_pinned_chart_grants(charted: dict[str, Render]) -> None:
    """The platform's rules for the controller, wherever each holds, are the pinned chart's own ClusterRole
    (`controller.createClusterRole: true`, rendered by the real Helm engine): none added, none lost."""
    from components.argo_rollouts import CLUSTER_RULES, NAMESPACE_RULES, TENANT_RULES
    from platformctl.charts import verified
    from platformctl.helm_render import cluster_api_versions, render_release
    from tests.test_helm_render import kubernetes_versions

    inputs, version = release_on(charted["dev"], "dev", "argo-rollouts")["inputs"], kubernetes_versions("dev")["dev"]
    values = {**inputs["values"], "controller": {**inputs["values"]["controller"], "createClusterRole": True},
              "providerRBAC": {"enabled": False}}  # the tenants' canaries weigh by pod count: no provider's rights
    objects = render_release(verified("argo-rollouts", inputs["version"]), values, name=inputs["name"], namespace=inputs["namespace"],
                             kubernetes_version=version, api_versions=cluster_api_versions(charted["dev"].plan, "dev", version))
    [role] = [o for o in objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "argo-rollouts"]
    assert rule_set(CLUSTER_RULES) | rule_set(TENANT_RULES) | rule_set(NAMESPACE_RULES) == rule_set(role["rules"])
    assert {verb for _, _, verb in rule_set(CLUSTER_RULES)} <= set(READ)
    assert not {resource for _, resource, _ in rule_set(CLUSTER_RULES) | rule_set(TENANT_RULES)} & {"secrets", "*"}


def test_a_tenant_binds_the_rollouts_controller_to_nothing_but_its_role(charted: dict[str, Render]) -> None:
    """A tenant namespace's PlatformTenantBindingSubjects (the real OPA engine) lets the controller's account be
    bound there to its own ClusterRole only: an owner binding it to `admin` would hand a controller taken over
    the namespace's Secrets."""
    from components.argo_rollouts import TENANT_ROLE

    plan = charted["dev"].plan
    namespace = sorted(rollout_namespaces(plan, "dev"))[0]
    binding = {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": {"name": "rollouts", "namespace": namespace},
               "subjects": [{"kind": "ServiceAccount", "name": ROLLOUTS[1], "namespace": ROLLOUTS[0]}],
               "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": TENANT_ROLE}}
    assert admission(plan, "dev", binding)[1] == []
    for kind, role in (("ClusterRole", "admin"), ("ClusterRole", "edit"), ("Role", TENANT_ROLE)):
        attack = {**binding, "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role}}
        assert [v for v in admission(plan, "dev", attack)[1] if v.startswith("PlatformTenantBindingSubjects")], (kind, role)


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


def test_the_canary_prometheus_lists_the_ingress_controllers_pods_and_nothing_else(charted: dict[str, Render]) -> None:
    """The canary Prometheus parses Traefik's metrics and answers every tenant's analyses (through the query proxies):
    who takes it over holds its token. Its one scrape discovers the pods of Traefik's namespace; the chart's ClusterRole
    let the token read every ConfigMap, Service, Endpoint(Slice), Ingress, node and pod (their specs, literal env values
    included) of the cluster."""
    from components import workload_ingress
    from components.prometheus import NAMESPACE, RELEASE

    for stack, result in charted.items():
        for cluster in WORKLOAD_CLUSTERS:
            held = grants(result.plan, cluster, NAMESPACE, f"{RELEASE}-server")
            rights = {(g.namespace or "cluster-wide", group, resource, verb) for g in held for rule in g.rules
                      for group in rule.get("apiGroups", ()) for resource in rule.get("resources", ()) for verb in rule.get("verbs", ())}
            assert rights == {(workload_ingress.NAMESPACE, "", "pods", verb) for verb in ("list", "watch")}, (stack, cluster, sorted(rights))
