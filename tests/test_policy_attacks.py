"""An attacker's review of the admission guardrails: a tenant member who wants out of its box.

The attacker holds what the plan binds a tenant's developers to in their dev namespace (read from
the plan's RoleBindings and ClusterRoles) and tries objects of the kinds that role may create or
update. Each attempt is admitted as Gatekeeper would admit it on that cluster: the plan's
constraints matched the Gatekeeper way, their templates evaluated by the real OPA on the
`input.review` Gatekeeper builds (tests/test_gatekeeper_plan.py `admission`). What Pod Security
admission refuses by the namespace's labels is said per attack: a finding must get past both.

Checked and found closed (so the next reviewer need not repeat it): ephemeral containers (the
tenant roles grant no `pods/ephemeralcontainers`; the webhook covers that subresource and the
templates check added ones); RoleBindings (tenant roles read RBAC only, and the AppProjects
refuse RoleBindings); Endpoints and EndpointSlices aimed elsewhere (read-only for tenants, and
inside a virtual cluster too); NodePort, externalIPs, LoadBalancer beyond the quota; Ingress hosts,
wildcards and cert-manager annotations; Traefik cross-namespace references (IngressRoutes and
Middlewares are not tenant kinds; the providers keep allowCrossNamespace and ExternalName
services off); a claim by volume name (also through ephemeral volumes and StatefulSet claim
templates: the claim itself is checked); service-account-token Secrets; nodeName, hostPath, host
namespaces, system priority classes; Namespace labels (tenants read Namespaces only).
The API server as a proxy (the tenant roles' `services/proxy`, `pods/proxy`, `pods/portforward`): it
connects only to a pod of the request's namespace, at an IP of that pod's status (kubernetes
pkg/registry/core/service/storage/storage.go ResourceLocation and isValidAddress: Endpoints only, so never
an ExternalName's name; pkg/registry/core/pod/strategy.go ResourceLocation, which also refuses addresses
that are not global unicast, the instance metadata's), and no tenant identity writes Endpoints or a Pod's
status (below). kube-oidc-proxy forwards a client's `Impersonate-*` headers only after a
SubjectAccessReview of the token's own user (TremoloSecurity/kube-oidc-proxy d534f69b
pkg/proxy/handlers.go:121-124) and passes no token it could not verify (`--token-passthrough` unset,
handlers.go:69-72); its own role impersonates the federated user and `system:authenticated` only.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.test_gatekeeper_plan import _pod, admission, declared
from tests.test_tenant_roles import allows

CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def tenant_member(plan: dict[str, Any], cluster: str = "dev") -> tuple[str, list[dict[str, Any]]]:
    """A tenant namespace on `cluster` where the plan binds the tenant's developers (a namespace
    tenant's, not a sandbox), and the rules of the ClusterRole they are bound to there."""
    bindings = sorted((r["inputs"]["metadata"]["namespace"], r["inputs"]["roleRef"]["name"]) for r in declared(plan)
                      if r["cluster"] == cluster and r["inputs"]["kind"] == "RoleBinding"
                      and r["inputs"]["metadata"]["name"] == "tenant-developers" and not r["inputs"]["metadata"]["namespace"].startswith("sandbox-"))
    namespace, role = bindings[0]
    [rules] = [r["inputs"]["rules"] for r in declared(plan) if r["cluster"] == cluster
               and r["inputs"]["kind"] == "ClusterRole" and r["inputs"]["metadata"]["name"] == role]
    return namespace, rules


def own_image(plan: dict[str, Any], cluster: str, namespace: str) -> str:
    """An image of the tenant's own Harbor project: what its namespace's registries constraint allows first."""
    [registries] = [r["inputs"]["spec"]["parameters"]["registries"] for r in declared(plan) if r["cluster"] == cluster
                    and r["inputs"]["kind"] == "PlatformAllowedRegistries" and r["inputs"]["metadata"]["name"] == f"{namespace}-registries"]
    return f"{registries[0].rstrip('/')}/web:1.0.0"


def refusals(plan: dict[str, Any], cluster: str, obj: dict[str, Any], **update: Any) -> list[str]:
    selected, failures = admission(plan, cluster, obj, **update)
    assert selected, f"no constraint selects {obj['kind']} {obj['metadata']}"
    return failures


def budget(namespace: str, **spec: Any) -> dict[str, Any]:
    """A PodDisruptionBudget in `namespace` over the pods labelled app=web."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec}}


# --- placement: a Pod's tolerations are the one part of its placement an UPDATE may change ---------

def test_a_tenant_cannot_add_a_toleration_to_its_pending_pod_to_land_on_the_control_planes_nodes(plan: dict) -> None:
    """A Pod's spec is immutable but for images, deadlines, scheduling gates (and a gated Pod's node
    selection) and tolerations, to which an UPDATE may add (Kubernetes ValidatePodUpdate). The developer creates a Pod that only
    the control plane's nodes would take (their nodeSelector label) and that therefore stays
    Pending, then patches in a toleration of their taint, or of every taint: the scheduler then
    places it beside the API server and etcd. The constraints refuse both tolerations on a new Pod
    but skipped every pod-level rule on a Pod UPDATE; Pod Security admission has no rule on
    tolerations at any level."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "", "pods") and allows(rules, "patch", "", "pods")
    pending = _pod(namespace, own_image(plan, cluster, namespace), nodeSelector={CONTROL_PLANE_TAINT: ""})
    assert refusals(plan, cluster, pending) == []
    for toleration in ({"operator": "Exists"}, {"key": CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"}):
        tolerating = copy.deepcopy(pending)
        tolerating["spec"]["tolerations"] = [toleration]
        assert refusals(plan, cluster, tolerating), f"a new Pod tolerating {toleration} was admitted"
        assert refusals(plan, cluster, tolerating, operation="UPDATE", old_object=pending), \
            f"an UPDATE adding the toleration {toleration} to a Pending Pod was admitted in {namespace}"
        # A Pod that already had it (created before the constraint) may still be updated otherwise.
        relabelled = copy.deepcopy(tolerating)
        relabelled["metadata"]["labels"] = {"release": "2"}
        assert refusals(plan, cluster, relabelled, operation="UPDATE", old_object=tolerating) == []
    # Tolerations the platform does not guard stay addable (the node controller's, with a key).
    unreachable = copy.deepcopy(pending)
    unreachable["spec"]["tolerations"] = [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                                           "tolerationSeconds": 60}]
    assert refusals(plan, cluster, unreachable, operation="UPDATE", old_object=pending) == []


# --- the kubelet as a proxy: probes and lifecycle hooks with a host --------------------------------

def test_a_tenants_probes_and_hooks_cannot_make_the_kubelet_connect_to_another_host(plan: dict) -> None:
    """The kubelet runs a container's httpGet and tcpSocket probes and lifecycle hooks itself, from
    the node's network namespace, to their `host` when one is set (the Pod's IP otherwise). A
    tenant's Pod may reach only its own namespace and DNS (its NetworkPolicy), but its probes would
    reach whatever the node reaches: other tenants' pods on any port, the platform's services, the
    node's own ports and the networks beyond, with the result in the probe events the tenant reads
    (a status code, or a redirect's body). Pod Security's baseline forbids `host` only from
    Kubernetes 1.34 (KEP-4940); the platform's clusters run 1.33, whose `latest` lacks the rule."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "", "pods")
    image = own_image(plan, cluster, namespace)
    assert refusals(plan, cluster, _pod(namespace, image, {"livenessProbe": {"httpGet": {
        "path": "/healthz", "port": 8080, "httpHeaders": [{"name": "Host", "value": "web.example.com"}]}}})) == []
    attempts = {
        "liveness-to-instance-metadata": {"livenessProbe": {"httpGet": {"host": "169.254.169.254", "path": "/latest/meta-data/", "port": 80}}},
        "readiness-to-the-kubelet": {"readinessProbe": {"tcpSocket": {"host": "127.0.0.1", "port": 10250}}},
        "startup-to-another-tenant": {"startupProbe": {"httpGet": {"host": "10.244.1.7", "path": "/admin", "port": 8081}}},
        "post-start-hook": {"lifecycle": {"postStart": {"httpGet": {"host": "prometheus-server.monitoring.svc.cluster.local",
                                                                    "path": "/api/v1/status/config", "port": 80}}}},
        "pre-stop-hook": {"lifecycle": {"preStop": {"tcpSocket": {"host": "10.96.0.1", "port": 443}}}},
    }
    for attempt, container in attempts.items():
        assert refusals(plan, cluster, _pod(namespace, image, container)), f"{attempt} was admitted in {namespace}"
        init = _pod(namespace, image, initContainers=[{**_pod(namespace, image, container)["spec"]["containers"][0], "name": "init",
                                                       "restartPolicy": "Always"}])
        assert refusals(plan, cluster, init), f"{attempt} in a sidecar init container was admitted in {namespace}"


# --- node drains: a disruption budget that allows no eviction ---------------------------------------

def test_a_tenants_disruption_budget_cannot_spell_zero_evictions_otherwise(plan: dict) -> None:
    """A PodDisruptionBudget that allows no eviction blocks every drain of the nodes its pods run on
    (upgrades, the autoscaler's scale-down), for the whole cluster. The constraint refuses
    maxUnavailable 0 and minAvailable 100%; Kubernetes reads a percentage's digits as a number
    (validation `^[0-9]+%$`, then Atoi), so "00%" is 0% and "0100%" is 100%."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "policy", "poddisruptionbudgets")
    for spec in ({"maxUnavailable": 1}, {"maxUnavailable": "10%"}, {"maxUnavailable": "50%"}):
        assert refusals(plan, cluster, budget(namespace, **spec)) == [], spec
    for spec in ({"maxUnavailable": "00%"}, {"maxUnavailable": "000%"}, {"minAvailable": "0100%"}):
        assert refusals(plan, cluster, budget(namespace, **spec)), f"a budget with {spec} was admitted in {namespace}"


# --- the ingress controller's certificates: one store for every tenant -------------------------------

def test_a_tenants_ingress_cannot_have_traefik_serve_its_certificate_for_other_tenants_hosts(plan: dict) -> None:
    """Traefik loads the Secret each Ingress names in `spec.tls` into one certificate store and
    answers every TLS handshake with the certificate whose names best match the server name
    (traefik pkg/tls/certificate_store.go GetBestCertificate); the platform's wildcard certificate is
    only the store's default, used when no loaded certificate matches, and an Ingress's own `tls`
    hosts play no part. The developer's Ingress serves its own host but names a Secret it made with
    a self-signed certificate for `*.<env>.<domain>` (or another tenant's host): Traefik then hands
    that certificate to every tenant's visitors on the cluster, whose clients refuse it. Pod
    Security has nothing to say on Ingresses."""
    cluster = "dev"
    namespace, rules = tenant_member(plan, cluster)
    assert allows(rules, "create", "networking.k8s.io", "ingresses") and allows(rules, "create", "", "secrets")
    [hosts] = [r["inputs"]["spec"]["parameters"]["hosts"] for r in declared(plan) if r["cluster"] == cluster
               and r["inputs"]["kind"] == "PlatformTenantIngressHosts" and r["inputs"]["metadata"]["name"] == f"{namespace}-ingress-hosts"]
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    ingress = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "namespace": namespace},
               "spec": {"tls": [{"hosts": hosts}],
                        "rules": [{"host": hosts[0], "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]}}
    assert refusals(plan, cluster, ingress) == []
    ingress["spec"]["tls"][0]["secretName"] = "wildcard-of-my-own"
    assert refusals(plan, cluster, ingress), f"an Ingress naming its own TLS Secret was admitted in {namespace}"


# --- images: references that read like the tenant's project but are pulled from elsewhere ----------

def test_image_references_that_only_look_like_the_tenants_project_are_refused(plan: dict) -> None:
    """The runtime pulls from the registry host before the first "/" (a user-info `@`, a port or a
    trailing dot makes another host; without a dot the host is Docker Hub), so the prefix rule must
    hold for each of these spellings of the tenant's own project (found closed: a regression guard)."""
    cluster = "dev"
    namespace, _ = tenant_member(plan, cluster)
    own = own_image(plan, cluster, namespace)
    host, _, path = own.partition("/")
    assert refusals(plan, cluster, _pod(namespace, own)) == []
    for image in (f"{host}@evil.example/{path}", f"{host}:443@evil.example/{path}", f"{host}:443/{path}", f"{host.upper()}/{path}",
                  f"{host}./{path}", f"docker.io/{own}", path, f"{host}/{path.split('/')[0]}-evil/{path.split('/', 1)[1]}"):
        assert refusals(plan, cluster, _pod(namespace, image)), f"{image} was admitted in {namespace}"


# --- what the guardrails above rely on: kinds no tenant identity may write ---------------------------

# Each would bypass an admission rule the platform relies on: Endpoints and EndpointSlices aim a
# Service (and the ingress controller) at any address (CVE-2021-25740); status subresources forge
# a Pod's IP for the API server's pod proxy, or a Service's or Ingress's load balancer; binding
# names a Pod's node; ephemeral containers and resize change a running Pod; token requests lend a
# service account's identity.
UNWRITABLE = [("", "endpoints"), ("discovery.k8s.io", "endpointslices"), ("", "pods/status"), ("", "pods/binding"),
              ("", "pods/ephemeralcontainers"), ("", "pods/resize"), ("", "services/status"), ("", "serviceaccounts/token"),
              ("networking.k8s.io", "ingresses/status"), ("", "namespaces"), ("rbac.authorization.k8s.io", "rolebindings")]


def test_no_role_a_tenant_or_its_delivery_holds_in_its_namespaces_writes_what_would_bypass_admission(plan: dict) -> None:
    """Every ClusterRole or Role the plan binds in a tenant namespace of a workload cluster (the
    people's roles, ArgoCD's federated role) is read for the resources above."""
    tenant_namespaces = {r["inputs"]["metadata"]["name"] for r in declared(plan) if r["inputs"]["kind"] == "Namespace"
                         and r["inputs"]["metadata"].get("labels", {}).get("platform.io/tenant-namespace") == "true"}
    roles = {(r["cluster"], r["inputs"]["kind"], r["inputs"]["metadata"]["name"]): r["inputs"]["rules"] for r in declared(plan)
             if r["inputs"]["kind"] in ("ClusterRole", "Role")}
    bound = {(r["cluster"], r["inputs"]["roleRef"]["kind"], r["inputs"]["roleRef"]["name"]) for r in declared(plan)
             if r["inputs"]["kind"] == "RoleBinding" and r["cluster"] in ("dev", "prod")
             and r["inputs"]["metadata"]["namespace"] in tenant_namespaces}
    assert {name for _, _, name in bound} >= {"platform-tenant-admin", "platform-tenant-edit", "view", "platform-argocd-federated"}
    for key in sorted(bound):
        if key[2] == "view":
            continue  # Kubernetes' own read-only role, not in the plan
        for group, resource in UNWRITABLE:
            for verb in ("create", "update", "patch"):
                assert not allows(roles[key], verb, group, resource), (key, verb, group, resource)


# --- order: a tenant's access comes after everything that holds it ---------------------------------

def waits_for(plan: dict) -> dict[str, set[str]]:
    """What each resource of `plan` waits for, directly or through what it waits for: the engine's
    order (a resource can depend only on one registered before it)."""
    closure: dict[str, set[str]] = {}
    for r in plan["resources"]:
        closure[r["urn"]] = set(r["dependsOn"]).union(*(closure.get(d, set()) for d in r["dependsOn"]))
    return closure


def test_a_tenant_gets_access_to_its_namespace_only_after_the_policies_that_hold_it(plan: dict) -> None:
    """What Gatekeeper admits is checked once: its audit only reports an object created before a
    constraint existed, and a ResourceQuota counts only what comes after it. ArgoCD syncs each
    tenant's ops repository into its namespaces (automated, self-healing) as soon as its RoleBinding
    there exists, and a tenant's people act as soon as theirs does. On a cluster built anew (the dev
    stack is rebuilt from scratch) the Gatekeeper release and its policies take minutes; a tenant
    whose repository holds what the policies refuse (another tenant's host, a NodePort, an
    unsigned image from elsewhere in Harbor) would have it applied in that window, and keep it. So
    every grant of access to a tenant namespace (its RoleBindings; a virtual cluster, whose syncer
    creates what its users ask for) waits for the cluster's Gatekeeper (templates, constraints,
    mutators) and the namespace's constraints, quota, limits and network policy."""
    resources = declared(plan) + [r for r in plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release"]
    tenant_namespaces = {(r["cluster"], r["inputs"]["metadata"]["name"]) for r in resources if r["inputs"].get("kind") == "Namespace"
                         and r["inputs"]["metadata"].get("labels", {}).get("platform.io/tenant-namespace") == "true"
                         and r["cluster"] in ("dev", "prod")}
    assert tenant_namespaces
    checked = 0
    before = waits_for(plan)
    for cluster, namespace in sorted(tenant_namespaces):
        here = [r for r in resources if r["cluster"] == cluster]
        cluster_policy = {r["urn"] for r in here if r["inputs"].get("apiVersion", "").startswith(("constraints.gatekeeper.sh/", "mutations.gatekeeper.sh/"))
                          and namespace in r["inputs"]["spec"]["match"].get("namespaces", [namespace])}
        guardrails = {r["urn"] for r in here if r["inputs"].get("kind") in ("ResourceQuota", "LimitRange", "NetworkPolicy")
                      and r["inputs"]["metadata"].get("namespace") == namespace}
        assert len(cluster_policy) > 10 and len(guardrails) >= 3, (cluster, namespace)
        grants = [r for r in here if (r["inputs"].get("kind") == "RoleBinding" and r["inputs"]["metadata"].get("namespace") == namespace)
                  or (r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"].get("chart") == "vcluster" and r["inputs"].get("namespace") == namespace)]
        assert grants, (cluster, namespace)
        for grant in grants:
            missing = (cluster_policy | guardrails) - before[grant["urn"]]
            assert not missing, f"{cluster}: {grant['name']} may be created before {sorted(u.rpartition('::')[2] for u in missing)}"
            checked += 1
    assert checked
