"""An attacker's review of tenant isolation: each test is one thing a member, CI job or workload of
tenant `payments` could try against another tenant or the platform, tried on what the plan declares
(its constraints, templates and Namespace labels, evaluated by the real OPA engine; its RBAC as
Kubernetes evaluates it), and each must be refused.

The attacker holds `platform-tenant-admin` in `payments-dev` (a developer there: RBAC lets it create
what each attack needs, which the test checks first, so the refusal is Gatekeeper's and not a
missing verb) or deploys the same objects from its ops repository through ArgoCD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest
import yaml

from components import prometheus
from components.federation import DEPLOYABLE
from components.openunison import LOCAL_GROUPS_LABEL
from components.tenant_roles import RULES, TENANT_ADMIN
from components.vault import OIDC_PATH, OIDC_ROLE
from policy.labels import TENANT_NAMESPACE_LABEL
from stacks.config import quantity
from tests.test_gatekeeper_plan import admission
from tests.test_helm_render import containers
from tests.test_openunison_groups import needs_node, run_task
from tests.test_tenant_roles import allows

ATTACKER = "payments"  # isolation: namespace, in both example stacks
NAMESPACE = f"{ATTACKER}-dev"
METADATA_URL = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"


# --- analyses the Argo Rollouts controller runs --------------------------------------------------------

def analysis(kind: str, provider: dict[str, Any]) -> dict[str, Any]:
    """An AnalysisTemplate or AnalysisRun in the attacker's namespace with one metric of `provider`."""
    metric = {"name": "m", "provider": provider, "successCondition": "true"}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": kind, "metadata": {"name": "probe", "namespace": NAMESPACE},
            "spec": {"metrics": [metric]}}


# The Argo Rollouts controller runs every analysis of the cluster from its own namespace, which no
# NetworkPolicy holds: a provider that calls out is a request from there, past the tenant's
# default-deny policy, and its answer lands in the AnalysisRun's status, which the tenant reads.
SSRF = {
    "web provider to the cloud metadata service": {"web": {"url": METADATA_URL, "jsonPath": "{$.AccessKeyId}"}},
    "web provider PUT with headers (IMDSv2 token)": {"web": {
        "url": "http://169.254.169.254/latest/api/token", "method": "PUT",
        "headers": [{"key": "X-aws-ec2-metadata-token-ttl-seconds", "value": "60"}]}},
    "prometheus provider at an address of the tenant's choosing": {"prometheus": {
        "address": "http://vault.vault.svc:8200/v1/sys/internal/ui/mounts?", "query": "up"}},
    "prometheus provider with a templated address": {"prometheus": {"address": "{{args.address}}", "query": "up"}},
    "cloudwatch provider (the node's AWS identity)": {"cloudWatch": {"metricDataQueries": [{"id": "q", "expression": "x"}]}},
    "two providers in one metric": {"job": {"spec": {}}, "web": {"url": METADATA_URL}},
}


@pytest.mark.parametrize("kind", ["AnalysisTemplate", "AnalysisRun"])
@pytest.mark.parametrize("attack", SSRF)
def test_a_tenants_analysis_cannot_make_the_rollouts_controller_call_out(plan: dict, kind: str, attack: str) -> None:
    resource = f"{kind.lower()}s"
    assert allows(RULES[TENANT_ADMIN], "create", "argoproj.io", resource)  # the attacker may create it
    # ... and its ops repository through ArgoCD, whose federated user may write AnalysisTemplates.
    assert kind == "AnalysisRun" or any(g == "argoproj.io" and resource in r for g, r in DEPLOYABLE)
    selected, failures = admission(plan, "dev", analysis(kind, SSRF[attack]))
    assert "PlatformTenantAnalysis" in selected, selected
    assert any(f.startswith("PlatformTenantAnalysis: ") for f in failures), failures


@pytest.mark.parametrize("kind", ["AnalysisTemplate", "AnalysisRun"])
def test_the_platforms_prometheus_and_job_analyses_still_pass(plan: dict, kind: str) -> None:
    for provider in ({"prometheus": prometheus.analysis_provider(NAMESPACE, "up")},
                     {"job": {"spec": {"template": {"spec": {"containers": []}}}}}):
        selected, failures = admission(plan, "dev", analysis(kind, provider))
        assert "PlatformTenantAnalysis" in selected and failures == [], (provider, failures)


# --- the platform's certificate issuers --------------------------------------------------------------

# cert-manager's ingress-shim turns these annotations of any Ingress into a Certificate from the named
# issuer: the platform's (its CA, or its ACME account and DNS zone), with a subject and key usages of the
# annotator's choosing and the key in a Secret of the annotator's namespace.
SHIM_ANNOTATIONS = {
    "cert-manager.io/cluster-issuer": "platform-ca",
    "cert-manager.io/common-name": "vault.platform.example.com",
    "cert-manager.io/subject-organizations": "system:masters",
    "cert-manager.io/usages": "client auth",
}


@pytest.mark.parametrize("annotation", [*SHIM_ANNOTATIONS, "acme.cert-manager.io/http01-edit-in-place", "kubernetes.io/tls-acme"])
def test_a_tenants_ingress_cannot_have_the_platforms_issuers_sign_for_it(plan: dict, annotation: str) -> None:
    assert allows(RULES[TENANT_ADMIN], "create", "networking.k8s.io", "ingresses")
    host = f"{ATTACKER}.dev.{plan_domain(plan)}"
    ingress = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "own-host", "namespace": NAMESPACE, "annotations": {annotation: SHIM_ANNOTATIONS.get(annotation, "true")}},
        "spec": {"tls": [{"hosts": [host], "secretName": "own-host-tls"}], "rules": [{"host": host}]},
    }
    selected, failures = admission(plan, "dev", ingress)
    assert "PlatformTenantIngressHosts" in selected, selected
    # Refused for the annotation, not its host (and for naming the TLS Secret cert-manager would fill:
    # Traefik would serve its certificate to other tenants' hosts, tests/test_policy_attacks.py).
    assert any(annotation in f for f in failures), failures
    assert all(annotation in f or "must not name the TLS Secret <own-host-tls>" in f for f in failures), failures
    del ingress["metadata"]["annotations"], ingress["spec"]["tls"][0]["secretName"]
    assert admission(plan, "dev", ingress)[1] == []


def plan_domain(plan: dict) -> str:
    """The stack's domain, as its tenants' Ingress host constraint names it."""
    [hosts] = [r["inputs"]["spec"]["parameters"]["hosts"] for r in plan["resources"]
               if r["inputs"].get("kind") == "PlatformTenantIngressHosts" and r["inputs"]["metadata"]["name"] == f"{NAMESPACE}-ingress-hosts"]
    return hosts[0].removeprefix(f"{ATTACKER}.dev.")

# --- the shared address pool ------------------------------------------------------------------------

def tenant_namespaces(plan: dict) -> list[tuple[str, str]]:
    """(cluster, name) of every tenant namespace (and sandbox) the plan declares."""
    return [(r["cluster"], r["inputs"]["metadata"]["name"]) for r in plan["resources"]
            if r["type"] == "kubernetes:core/v1:Namespace" and TENANT_NAMESPACE_LABEL in r["inputs"]["metadata"].get("labels", {})]


def platform_objects(plan: dict, cluster: str, namespace: str) -> list[dict[str, Any]]:
    """What the platform puts in `namespace`: declared there, rendered by a release there, or applied
    inside the virtual cluster a release there runs (its syncer copies Services to the namespace)."""
    found: list[dict[str, Any]] = []
    for r in plan["resources"]:
        inputs = r["inputs"]
        if r.get("cluster") != cluster or not r["type"].startswith("kubernetes:"):
            continue
        if r["type"] == "kubernetes:helm.sh/v3:Release" and inputs.get("namespace") == namespace:
            inside = (((inputs.get("values") or {}).get("experimental") or {}).get("deploy") or {}).get("vcluster") or {}
            found += [*(r.get("rendered") or []), *(d for d in yaml.safe_load_all(inside.get("manifests") or "") if d)]
        elif (inputs.get("metadata") or {}).get("namespace") == namespace:
            found.append(inputs)
    return found


def test_a_tenant_cannot_take_the_clusters_load_balancer_addresses(plan: dict) -> None:
    """Each LoadBalancer Service takes an address of the cluster's shared pool (MetalLB) or a cloud load
    balancer, and a node port on every node (the NodePort the tenant constraint refuses): a tenant
    creating them without end would leave none for another tenant's virtual cluster or the platform."""
    assert allows(RULES[TENANT_ADMIN], "create", "", "services")
    checked = []
    for cluster, namespace in tenant_namespaces(plan):
        objects = platform_objects(plan, cluster, namespace)
        own = sum(o.get("kind") == "Service" and (o.get("spec") or {}).get("type") == "LoadBalancer" for o in objects)
        [quota] = [o for o in objects if o.get("kind") == "ResourceQuota"]
        assert quota["spec"]["hard"].get("services.loadbalancers") == str(own), (cluster, namespace, quota["spec"]["hard"], own)
        checked.append(own)
    assert 0 in checked and max(checked) > 0, checked  # namespaces with and without a virtual cluster


def test_a_tenant_cannot_fill_its_nodes_disks(plan: dict) -> None:
    """A container writing to its own filesystem or an emptyDir without end fills the node's disk, and the
    kubelet then evicts whatever runs there, other tenants' pods and the platform's among them. Every
    container gets a disk limit (past it, the kubelet evicts that pod alone), and the namespace's
    limits are capped, with room left after the platform's own pods there (a virtual control plane)."""
    for cluster, namespace in tenant_namespaces(plan):
        objects = platform_objects(plan, cluster, namespace)
        [hard] = [o["spec"]["hard"] for o in objects if o.get("kind") == "ResourceQuota"]
        [container] = [item for o in objects if o.get("kind") == "LimitRange" for item in o["spec"]["limits"] if item["type"] == "Container"]
        assert container["default"]["ephemeral-storage"] and container["defaultRequest"]["ephemeral-storage"], (cluster, namespace)
        cap = quantity(hard["limits.ephemeral-storage"])
        assert cap and quantity(hard["requests.ephemeral-storage"]) == cap, (cluster, namespace, hard)
        own = sum(quantity(c.get("resources", {}).get("limits", {}).get("ephemeral-storage", container["default"]["ephemeral-storage"]))
                  for o in objects for c in containers(o))
        assert own < cap, (cluster, namespace, own, cap)


# --- the API server's storage and the nodes' pod slots ------------------------------------------------

def plural(kind: str) -> str:
    """The resource name of `kind`, for the kinds the tenant roles name (Ingress: ingresses)."""
    return kind.lower() + ("es" if kind.endswith("s") else "s")


def creatable(role: str) -> set[str]:
    """The quota's name of each kind `role` may create: `count/<resource>[.<group>]`."""
    return {f"count/{resource}" + (f".{rule_group}" if rule_group else "")
            for rule in RULES[role] if "create" in rule["verbs"]
            for rule_group in rule["apiGroups"] for resource in rule["resources"] if "/" not in resource}


def test_a_tenant_cannot_flood_the_api_server_or_the_nodes_pod_slots(plan: dict) -> None:
    """CPU and memory quotas do not bound how many objects a tenant makes: without a LimitRange
    minimum a pod may request 1m, and a ConfigMap or Secret holds up to a megabyte. The API server's
    storage and the nodes' pod slots are every tenant's, so every kind a tenant may create is counted,
    with room for what the platform itself puts in the namespace."""
    # Access reviews are answered, not stored: nothing to count.
    kinds = {k for k in creatable(TENANT_ADMIN) if not k.endswith(".authorization.k8s.io")}
    assert {"count/pods", "count/configmaps", "count/secrets", "count/deployments.apps"} <= kinds
    for cluster, namespace in tenant_namespaces(plan):
        objects = platform_objects(plan, cluster, namespace)
        [quota] = [o["spec"]["hard"] for o in objects if o.get("kind") == "ResourceQuota"]
        assert kinds <= set(quota), (cluster, namespace, sorted(kinds - set(quota)))
        for kind in kinds:
            resource, _, group = kind.removeprefix("count/").partition(".")
            own = sum(1 for o in objects if o.get("apiVersion", "").rpartition("/")[0] == group
                      and plural(o.get("kind", "")) == resource)
            assert own < int(quota[kind]), (cluster, namespace, kind, own, quota[kind])


# --- a group name spelled otherwise ------------------------------------------------------------------

SIGN_IN_ROLE = "attacker-sign-in"  # the `platform` role's twin that takes an id token directly (no browser)


def signed_in(vault: Any, groups: list[str]) -> Any:
    """A Vault client of someone who signed in through OpenUnison with `groups` in the token."""
    root = vault.client(vault.root_token)
    platform_role = root.read(f"auth/{OIDC_PATH}/role/{OIDC_ROLE}")["data"]
    root.write_data(f"auth/{OIDC_PATH}/role/{SIGN_IN_ROLE}", data={
        "role_type": "jwt", **{k: platform_role[k] for k in ("user_claim", "groups_claim", "bound_audiences", "token_policies")}})
    token = vault.identity.sign(OIDC_PATH, {"sub": "mallory", "aud": platform_role["bound_audiences"][0], "groups": groups})
    return vault.client(vault.login(OIDC_PATH, SIGN_IN_ROLE, token)["client_token"])


def writes(client: Any, path: str) -> bool:
    try:
        client.write_data(f"tenants/data/{path}", data={"data": {"owned": "by mallory"}})
        return True
    except hvac.exceptions.Forbidden:
        return False


@needs_node
def test_an_upstream_group_spelled_otherwise_grants_no_tenant_role(plan_vaults: Any, renders: dict, tmp_path: Path) -> None:
    """Only the stack grants a tenant's role groups: OpenUnison's JIT drops an upstream group of the
    same name. Vault matches group aliases without regard to case, so an upstream `Checkout-Owners`
    (a directory's own spelling, or one mallory made) is the checkout owners' group there, and no
    `system:` group may reach a virtual cluster's API server, which takes the groups claim as it is."""
    local_groups = [r["inputs"] for r in renders["dev"].plan["resources"] if r["type"] == "kubernetes:core/v1:ConfigMap"
                    and LOCAL_GROUPS_LABEL in r["inputs"]["metadata"].get("labels", {})]
    assert any("checkout-owners" in c["data"] for c in local_groups)
    upstream = ["Checkout-Owners", "CHECKOUT-OWNERS", "system:masters", "System:Masters", "staff"]
    state = run_task(tmp_path, uid="mallory", groups=upstream, answer={"kind": "ConfigMapList", "items": local_groups})
    assert state["error"] is None
    vault = plan_vaults("dev")
    assert writes(signed_in(vault, ["checkout-owners"]), "checkout/dev/attacker-probe")  # the group itself writes there
    assert not writes(signed_in(vault, state["groups"]), "checkout/dev/attacker-probe"), state["groups"]
    assert state["groups"] == ["staff"]
