"""An attacker's review of the control plane's service accounts: whoever takes over one of their pods
(Traefik faces the internet, ArgoCD renders tenants' manifests) holds its token. The control plane
keeps Vault (its internal CA key, its TLS), GitLab's and Harbor's secrets, OpenUnison's keys and the
platform CA: an account that reads every Secret, execs into any pod or is cluster-admin there owns
the platform. Only the accounts of READERS may, each for the reason it gives.

Every account of the control-plane cluster in both plans (ServiceAccounts the plan or a release's
real Helm render declares, and every account a binding names) is judged by the cluster's RBAC
objects, evaluated as Kubernetes does (tests/test_daemonset_attacks.py `grants`).
"""

from __future__ import annotations

from typing import Any

import yaml

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.cluster_readers import (
    EXECS,
    POWERS,
    READS_CA_KEY,
    READS_SECRETS,
    Readers,
    accounts,
    ca_key_secrets,
    held,
    stale,
    table,
    unjustified,
)
from tests.test_daemonset_attacks import READ, Grant, anywhere, cluster_objects, grants

CONTROL_PLANE = "control-plane"

# Reading every Secret reads the platform root's key too (cert-manager/platform-ca, the ClusterIssuer's).
EVERY_SECRET = frozenset({READS_SECRETS, READS_CA_KEY})
# The accounts that must keep a power cluster-wide, with why no chart option takes it away.
READERS: Readers = {
    ("cert-manager", "cert-manager"): (EVERY_SECRET, (
        "signs with the platform CA's key (the ClusterIssuer's Secret); writes each Certificate's Secret where the Certificate is (ingress-shim in every exposed namespace) and "
        "reads its Issuers' Secrets; its --namespace takes one namespace and drops ClusterIssuers "
        "(cert-manager v1.21.1 templates/rbac.yaml lines 67, 93, 129, 171, 205: the controller-issuers, -clusterissuers, "
        "-certificates, -orders and -challenges ClusterRoles)")),
    ("cert-manager", "cert-manager-cainjector"): (EVERY_SECRET, (
        "injects cert-manager-webhook-ca into the webhook's configurations (cert-manager.io/inject-ca-from-secret); "
        "the chart's ClusterRole is fixed (cert-manager v1.21.1 templates/cainjector-rbac.yaml lines 17-19)")),
    ("cnpg-system", "cnpg-cloudnative-pg"): (EVERY_SECRET | {EXECS}, (
        "the databases are Clusters in gitlab and harbor (dev stack): the operator keeps their Secrets and execs "
        "into their instances; `config.clusterWide: false` confines it to its own namespace, not to theirs "
        "(cloudnative-pg 0.29.0 templates/rbac.yaml lines 52-54 and 80-96, _helpers.tpl lines 84, 115)")),
    ("gatekeeper-system", "gatekeeper-admin"): (EVERY_SECRET | {EXECS}, (
        "its audit lists every object of the kinds its constraints match, Secrets among them (PlatformTenantObjects); "
        "the chart grants get/list/watch on */*, so `get pods/exec` too, with no narrower option: `rbac.create: false` would "
        "mean the platform keeping a list of every kind audited "
        "(gatekeeper 3.23.0 templates/gatekeeper-manager-role-clusterrole.yaml lines 21-28)")),
}


def test_the_review_sees_the_control_planes_accounts(charted: dict[str, Render]) -> None:
    """It judges the accounts the charts render and the platform declares, on both stacks."""
    for result in charted.values():
        seen = accounts(result.plan, CONTROL_PLANE)
        assert {("argocd", "argocd-application-controller"), ("argocd", "argocd-server"), ("traefik", "traefik"),
                ("cert-manager", "cert-manager"), ("gatekeeper-system", "gatekeeper-admin"), ("vault", "vault")} <= set(seen)


def test_the_review_sees_cluster_admin_secret_readers_and_websocket_exec() -> None:
    """The evaluation itself: `*/*/*` is every power; a Role's Secrets stay in its namespace; `get pods/exec` execs."""
    assert held([Grant(None, ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},))]) == set(POWERS)
    secrets = ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]},)
    assert held([Grant("vault", secrets)]) == set()
    assert held([Grant(None, secrets)]) == {READS_SECRETS}
    assert held([Grant(None, ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]},))]) == {READS_SECRETS, EXECS}
    ca_key = {("vault", "vault-internal-ca")}
    assert held([Grant("vault", secrets)], ca_key) == {READS_CA_KEY}
    assert held([Grant("argocd", secrets)], ca_key) == set()
    assert held([Grant(None, secrets)], ca_key) == {READS_SECRETS, READS_CA_KEY}
    named = ({"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["vault-ca"], "verbs": ["get", "list", "watch"]},)
    assert held([Grant("vault", named)], ca_key) == set()
    assert held([Grant("vault", named)], {("vault", "vault-ca")}) == {READS_CA_KEY}


def test_the_only_ca_key_on_the_control_plane_is_the_platform_roots(charted: dict[str, Render]) -> None:
    """On kubeconfig stacks the root's key is in cert-manager's namespace, where its ClusterIssuer reads it; the
    backends' internal CAs (Vault's, ArgoCD's) keep no key on the cluster. On EKS (ACME) there is no CA key at all."""
    for stack, result in charted.items():
        expected = {("cert-manager", "platform-ca")} if stack == "dev" else set()
        assert ca_key_secrets(result.plan, CONTROL_PLANE) == expected, stack
    # The program's own Secret is found from its pulumi-tls key alone, not only through the ClusterIssuer naming it.
    plan = charted["dev"].plan
    without_issuers = {**plan, "resources": [r for r in plan["resources"] if r["inputs"].get("kind") != "ClusterIssuer"]}
    assert ca_key_secrets(without_issuers, CONTROL_PLANE) == {("cert-manager", "platform-ca")}


def test_only_the_reasoned_few_read_every_secret_exec_or_are_cluster_admin(charted: dict[str, Render]) -> None:
    """No account of the control plane outside READERS holds a power cluster-wide, nor one its entry does not name."""
    found = unjustified(table(charted, (CONTROL_PLANE,)), READERS)
    assert not found, "a pod taken over owns the control plane:\n" + "\n".join(found)


def test_every_reader_still_needs_its_place(charted: dict[str, Render]) -> None:
    """An entry of READERS whose account no longer holds its powers on either stack is dropped, not kept."""
    assert not (dropped := stale(table(charted, (CONTROL_PLANE,)), READERS)), dropped


# --- how the services that could were narrowed, and that they keep working --------------------------

TRAEFIK_KINDS = {"Ingress", "IngressRoute", "IngressRouteTCP", "ServersTransport", "Middleware", "TLSStore", "TLSOption"}


def release_of(result: Render, chart: str) -> dict[str, Any]:
    [release] = [r for r in result.plan["resources"] if r.get("cluster") == CONTROL_PLANE and r["type"] == RELEASE_TYPE
                 and r["inputs"]["chart"] == chart]
    return release


def test_argocd_holds_its_namespace_only_and_deploys_nowhere_on_the_control_plane(charted: dict[str, Render]) -> None:
    """No ClusterRole: the controller and server read the cluster Secrets in `argocd` (their way to dev
    and prod) and nothing outside it; no Application may name the control plane (in-cluster)."""
    for result in charted.values():
        rendered = release_of(result, "argo-cd")["rendered"]
        assert [o["metadata"]["name"] for o in rendered if o["kind"] in ("ClusterRole", "ClusterRoleBinding")] == []
        [cm] = [o for o in rendered if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "argocd-cm"]
        assert cm["data"]["cluster.inClusterEnabled"] == "false"
        clusters = [r["inputs"]["metadata"] for r in result.plan["resources"] if r.get("cluster") == CONTROL_PLANE
                    and ((r["inputs"].get("metadata") or {}).get("labels") or {}).get("argocd.argoproj.io/secret-type") == "cluster"]
        assert clusters and {m["namespace"] for m in clusters} == {"argocd"}
        for account in ("argocd-application-controller", "argocd-server"):
            held = grants(result.plan, CONTROL_PLANE, "argocd", account)
            assert anywhere(held, "list", "", "secrets") == anywhere(held, "watch", "", "secrets") == ["argocd"], account


def test_traefik_reads_where_the_platform_exposes_services_and_nowhere_else(charted: dict[str, Render]) -> None:
    """Traefik watches and reads Secrets in its namespace and each namespace holding something it serves,
    each granted once that namespace exists; the IngressClasses and Nodes cluster-wide."""
    for stack, result in charted.items():
        # An Ingress of another class is no route of Traefik's (Harbor's chart's, of components.ingress.UNSERVED_CLASS).
        served = {o["metadata"]["namespace"] for o in cluster_objects(result.plan, CONTROL_PLANE) if o["kind"] in TRAEFIK_KINDS
                  and (o["kind"] != "Ingress" or o["spec"].get("ingressClassName") == "traefik")}
        values = release_of(result, "traefik")["inputs"]["values"]
        watched = values["providers"]["kubernetesIngress"]["namespaces"]
        assert sorted(watched) == sorted(served | {"traefik"}) == sorted(values["providers"]["kubernetesCRD"]["namespaces"]), stack
        held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
        assert anywhere(held, "list", "", "secrets") == sorted(watched)
        assert anywhere(held, "watch", "networking.k8s.io", "ingressclasses") == anywhere(held, "list", "", "nodes") == ["cluster-wide"]
        namespaces = {r["inputs"]["metadata"]["name"]: r["urn"] for r in result.plan["resources"]
                      if r.get("cluster") == CONTROL_PLANE and r["type"] == "kubernetes:core/v1:Namespace"}
        bindings = [r for r in result.plan["resources"] if r.get("cluster") == CONTROL_PLANE
                    and r["type"] == "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding" and r["inputs"]["metadata"]["name"] == "traefik"]
        assert sorted(b["inputs"]["metadata"]["namespace"] for b in bindings) == sorted(watched)
        assert all(namespaces[b["inputs"]["metadata"]["namespace"]] in b["dependsOn"] for b in bindings)


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


def test_traefiks_grants_are_what_its_pinned_chart_grants_but_every_secret(charted: dict[str, Render]) -> None:
    """The platform's rules for Traefik are the pinned chart's own, rendered by the real Helm engine: its
    namespaced Role (`rbac.namespaced`) in the namespace it watches; of its ClusterRole, only what is cluster-scoped."""
    from components.ingress import CLUSTER_SCOPE_RULES, NAMESPACED_RULES
    from platformctl.charts import verified
    from platformctl.helm_render import cluster_api_versions, render_release
    from tests.test_helm_render import kubernetes_versions

    release = release_of(charted["dev"], "traefik")
    inputs, version = release["inputs"], kubernetes_versions("dev")[CONTROL_PLANE]
    api_versions = cluster_api_versions(charted["dev"].plan, CONTROL_PLANE, version)
    [served] = inputs["values"]["providers"]["kubernetesIngress"]["namespaces"]  # its own: every route is there

    def chart_rules(kind: str, namespaced: bool) -> list[dict[str, Any]]:
        values = {**inputs["values"], "rbac": {"enabled": True, "namespaced": namespaced}}
        objects = render_release(verified("traefik", inputs["version"]), values, name=inputs["name"], namespace=inputs["namespace"],
                                 kubernetes_version=version, api_versions=api_versions)
        [role] = [o for o in objects if o["kind"] == kind and o["metadata"].get("namespace") in (None, served)]
        return role["rules"]

    assert rule_set(NAMESPACED_RULES) == rule_set(chart_rules("Role", namespaced=True))
    cluster_wide = rule_set(chart_rules("ClusterRole", namespaced=False))
    assert rule_set(CLUSTER_SCOPE_RULES) <= cluster_wide
    assert {("", "secrets", verb) for verb in READ} <= cluster_wide  # what the chart's ClusterRole would have granted


def test_traefik_trusts_the_backends_internal_cas_through_configmaps_of_their_certificates_alone(charted: dict[str, Render]) -> None:
    """Traefik v3.6 reads a ServersTransport's rootCAs from its informers' listers (pkg/provider/kubernetes/crd/client.go
    GetSecret, GetConfigMap), which list every Secret and ConfigMap of the namespace: each backend's CA reaches it as a
    ConfigMap holding the CA's certificate alone, made from a pulumi-tls CA whose key no object on the cluster holds.
    Each ServersTransport is valid against the pinned chart's CRD (rendered by its real Helm engine's sources)."""
    from platformctl.charts import verified
    from tests.validation import crd_errors

    for stack, result in charted.items():
        version = release_of(result, "traefik")["inputs"]["version"]
        chart = verified("traefik", version)
        assert chart is not None, "the charted fixture has the chart sources"
        crd = yaml.safe_load((chart / "crds/traefik.io_serverstransports.yaml").read_text())
        objects = list(cluster_objects(result.plan, CONTROL_PLANE))
        transports = [o for o in objects if o["kind"] == "ServersTransport"]
        assert {o["metadata"]["namespace"] for o in transports} == {"traefik"}, stack  # ArgoCD's and Vault's, beside their routes
        by_urn = {r["urn"]: r for r in result.plan["resources"]}
        for transport in transports:
            assert crd_errors(transport, crd) == [], (stack, transport["metadata"])
            [root] = transport["spec"]["rootCAs"]
            [bundle] = [r for r in result.plan["resources"] if r.get("cluster") == CONTROL_PLANE and r["type"] == "kubernetes:core/v1:ConfigMap"
                        and r["inputs"]["metadata"] == {"name": root["configMap"], "namespace": transport["metadata"]["namespace"]}]
            assert set(bundle["inputs"]["data"]) == {"ca.crt"}
            [ca] = [by_urn[u] for u in bundle["dependsOn"] if by_urn[u]["type"] == "tls:index/selfSignedCert:SelfSignedCert"]
            assert ca["inputs"]["isCaCertificate"] is True
