"""Attacks through a virtual cluster's host-side identities.

The attacker is tenant A: cluster-admin inside A's virtual cluster, or holding the token of a
ServiceAccount the vcluster chart creates on the host (the syncer's sits in the virtual control
plane's pod, one syncer bug away from the virtual API A administers). The goal: read or change
anything outside A's host namespace. What those accounts may do is read here from the real Helm
render of each vcluster release and every RBAC object declared on its host cluster (the plan's own
and every release's), evaluated as Kubernetes does (tests/test_daemonset_attacks.py `grants`).

Then the attacker is a host identity that reads the host copies of the virtual cluster's objects (the
last part): what the syncer copies there must not hand it the virtual cluster's credentials.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import yaml

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.test_daemonset_attacks import Grant, allows, bindings, grants, undefined
from tests.test_gatekeeper_plan import admission, assigned

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


# --- the tokens of the virtual cluster's pods, on the host -------------------------------------------
# For each projected service-account token of a virtual pod the syncer asks the virtual API server for
# a token (vcluster v0.36.1 pkg/controllers/resources/pods/translate/translator.go:577-611: the virtual
# API server's audiences unless the volume names one, 10 years, bound to the virtual pod) and hands it
# to the host pod one of two ways (lines 618-660): in an annotation `vcluster.loft.sh/token-<random>` of
# the host pod, which a downwardAPI item mounts (`sync.toHost.pods.useSecretsForSATokens: false`, the
# chart's default), or in a host Secret `<pod>-sa-token` (its host name) the volume mounts instead
# (pkg/controllers/resources/pods/token/sa_token_secret.go:26-97). Whoever reads the one holds the
# virtual cluster's service accounts: the tenant's apps', its Argo Rollouts controller's, and the
# kube-oidc-proxy's, which impersonates ArgoCD's federated user inside.
TOKEN_STORES = {False: "pods", True: "secrets"}


def synced_config(stack: str, result: Render, release: dict[str, Any]) -> dict[str, Any]:
    """The configuration the syncer reads (the chart's Secret `vc-config-<release>`, all of `.Values`), as
    the real Helm engine renders it from the pinned chart and the plan's values, unredacted."""
    from platformctl.charts import verified
    from platformctl.helm_render import cluster_api_versions, render_manifests
    from tests.test_helm_render import kubernetes_versions

    inputs, cluster = release["inputs"], release["cluster"]
    version = kubernetes_versions(stack)[cluster]
    chart = verified(inputs["chart"], inputs["version"])
    assert chart is not None, "the vcluster chart is fetched (charted)"
    manifests = render_manifests(chart, inputs["values"], name=inputs["name"], namespace=inputs["namespace"], kubernetes_version=version,
                                 api_versions=cluster_api_versions(result.plan, cluster, version))
    [secret] = [yaml.safe_load(text) for template, text in manifests.items() if template.endswith("/config-secret.yaml")]
    assert secret["metadata"]["name"] == f"vc-config-{inputs['name']}"
    return yaml.safe_load(base64.b64decode(secret["data"]["config.yaml"]))


def readers(plan: dict[str, Any], cluster: str, namespace: str, resource: str) -> dict[str, set[str]]:
    """Every subject on `cluster` (account, user or group) that may get, list or watch core `resource` in
    `namespace`, with the bindings that let it. A rule limited to `resourceNames` reads only what it names,
    never the objects the syncer names after the tenant's pods."""
    found: dict[str, set[str]] = {}
    for binding, grant in bindings(plan, cluster):
        where = binding["metadata"].get("namespace")
        if where not in (None, namespace):
            continue
        if grant is None:
            raise undefined(cluster, binding)
        unnamed = Grant(grant.namespace, tuple(rule for rule in grant.rules if not rule.get("resourceNames")))
        if not any(allows(unnamed, verb, "", resource, namespace) for verb in READ):
            continue
        for subject in binding.get("subjects") or []:
            who = subject["name"] if subject["kind"] != "ServiceAccount" else f"{subject.get('namespace', where)}/{subject['name']}"
            found.setdefault(f"{subject['kind']} {who}", set()).add(f"{binding['kind']} {binding['metadata']['name']}")
    return found


def test_no_host_reader_of_a_virtual_clusters_objects_holds_its_service_account_tokens(charted: dict[str, Render]) -> None:
    """An attacker's test. The attacker holds a host identity that may read pods in a virtual cluster's host
    namespace but not its Secrets: ArgoCD's federated user (whose one-minute tokens the application controller
    gets, and which by design reads no Secret), the host's Argo Rollouts controller (which runs the tenants'
    analyses), metrics-server, Velero's node agent (Prometheus did until it lost the chart's ClusterRole). Reading the
    host copies of the virtual pods, it would hold their tokens, valid 10 years against the virtual API server on its LoadBalancer. Whoever reads the
    namespace's Secrets reads the tenant's credentials there anyway (the syncer, and the accounts
    tests/test_workload_reader_attacks.py READERS judges); nobody else may read where the tokens are. (On EKS the
    access entries add the cluster admins and the pipeline's plan roles, which read every Secret too.)"""
    leaks, checked = [], 0
    for stack, result, release in virtual_clusters(charted):
        cluster, namespace = release["cluster"], release["inputs"]["namespace"]
        store = TOKEN_STORES[synced_config(stack, result, release)["sync"]["toHost"]["pods"]["useSecretsForSATokens"]]
        holders, secret_readers = (readers(result.plan, cluster, namespace, r) for r in (store, "secrets"))
        assert f"ServiceAccount {namespace}/{syncer(release)}" in holders, (stack, namespace, sorted(holders))
        leaks += [f"{stack} {cluster} {namespace}: {who} reads {store} ({', '.join(sorted(via))}), so the tokens there"
                  for who, via in sorted(holders.items()) if who not in secret_readers]
        checked += 1
    assert checked >= 4
    assert not leaks, "a host reader holds the virtual clusters' service-account tokens:\n" + "\n".join(leaks)


def test_the_review_sees_who_reads_a_virtual_clusters_host_pods(charted: dict[str, Render]) -> None:
    """What keeps the attack above able to fail: with the tokens in pod annotations, these read them."""
    for stack, result, release in virtual_clusters(charted):
        cluster, namespace = release["cluster"], release["inputs"]["namespace"]
        pods, secrets = (set(readers(result.plan, cluster, namespace, r)) for r in ("pods", "secrets"))
        assert {"User openunison:platform-argocd", "ServiceAccount argo-rollouts/argo-rollouts",
                "ServiceAccount metrics-server/metrics-server"} <= pods - secrets, (stack, namespace)


def test_a_virtual_clusters_syncer_keeps_its_pods_tokens_in_host_secrets_the_host_admits(charted: dict[str, Render]) -> None:
    """The syncer may write the token Secrets (it deletes and creates one per pod, then makes the pod its owner:
    sa_token_secret.go:58-131), and Gatekeeper (the real OPA engine) admits the Secret as the syncer creates it and the
    host pod that mounts it, as it admits one that mounts the annotation."""
    from components.tenant_names import virtual_host_name
    from tests.golden_path import Plan

    checked = 0
    for stack, result, release in virtual_clusters(charted):
        cluster, namespace, name = release["cluster"], release["inputs"]["namespace"], release["inputs"]["name"]
        held = grants(result.plan, cluster, namespace, syncer(release))
        missing = [verb for verb in ("get", "create", "delete", "update") if not any(allows(g, verb, "", "secrets", namespace) for g in held)]
        assert not missing, (stack, namespace, missing)
        tenant = namespace.rsplit("-", 1)[0]
        token_secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                        "metadata": {"name": virtual_host_name("web-7d9f8-x2x4q-sa-token", tenant, name), "namespace": namespace,
                                     "annotations": {"vcluster.loft.sh/skip-backsync": "true"}},
                        "stringData": {"kube-api-access-x7k2p": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}}
        user = f"system:serviceaccount:{namespace}:{syncer(release)}"
        kinds, failures = admission(result.plan, cluster, token_secret, user=user)
        assert kinds and not failures, (stack, namespace, kinds, failures)
        # The host pod mounting it (translator.go:618-634) meets the host's pod constraints as the annotation's would.
        image = f"{Plan(result.plan).variable(tenant, 'app', 'HARBOR_REGISTRY')}/{tenant}/web:1.0.0"
        pods = [host_pod(image, namespace, virtual_host_name("web-7d9f8-x2x4q", tenant, name), source) for source in (
            {"secret": {"name": token_secret["metadata"]["name"], "items": [{"key": "kube-api-access-x7k2p", "path": "token", "mode": 0o644}]}},
            {"downwardAPI": {"items": [{"path": "token", "mode": 0o644,
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.annotations['vcluster.loft.sh/token-abcdefgh']"}}]}})]
        in_secret, in_annotation = (admission(result.plan, cluster, assigned(result.plan, cluster, pod), user=user) for pod in pods)
        assert "PlatformPodRestricted" in in_secret[0] and in_secret[1] == in_annotation[1] == [], (stack, namespace, in_secret, in_annotation)
        checked += 1
    assert checked >= 4


def test_who_reads_a_virtual_clusters_token_secrets_already_owns_it(charted: dict[str, Render]) -> None:
    """In the host namespace the Secrets (the tokens' among them) are read only by the syncer and the accounts that
    read every tenant's Secrets, each for its reason (tests/test_workload_reader_attacks.py READERS). Those already
    own the virtual cluster: vCluster keeps its PKI in the host Secret `<release>-certs` (the admin kubeconfig, its
    CAs' keys and the service-account signing key: vcluster v0.36.1 pkg/certs/ensure.go:122-200, 316-317,
    constants.go:144-185), and no option keeps it elsewhere but standalone mode (ensure.go:84-100). So the tokens
    there reach no one new; a new reader of Secrets in these namespaces fails here."""
    from tests.cluster_readers import CLUSTER_ADMIN, READS_SECRETS
    from tests.test_workload_reader_attacks import READERS

    allowed = {f"ServiceAccount {namespace}/{account}" for (namespace, account), (powers, _) in READERS.items()
               if powers & {READS_SECRETS, CLUSTER_ADMIN}}
    for stack, result, release in virtual_clusters(charted):
        cluster, namespace = release["cluster"], release["inputs"]["namespace"]
        found = set(readers(result.plan, cluster, namespace, "secrets"))
        assert f"ServiceAccount {namespace}/{syncer(release)}" in found, (stack, namespace)
        assert not (others := found - allowed - {f"ServiceAccount {namespace}/{syncer(release)}"}), (stack, namespace, sorted(others))


def host_pod(image: str, namespace: str, name: str, token_source: dict[str, Any]) -> dict[str, Any]:
    """A virtual pod's host copy as the host admits pods, its token mounted from `token_source`."""
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": {
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "web", "image": image, "imagePullPolicy": "Always", "livenessProbe": probe, "readinessProbe": probe,
                        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
                        "volumeMounts": [{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                                          "readOnly": True}],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [token_source]}}]}}
