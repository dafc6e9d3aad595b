"""An attacker's review of what the control plane's Traefik reads: it parses every request from the
internet, so whoever takes it over holds its token, and every Secret that token reads is theirs.
Traefik's Ingress and CRD providers list and watch every Secret of each namespace they watch (Traefik
v3.6.2 pkg/provider/kubernetes/ingress/client.go and crd/client.go: one informer factory per watched
namespace, `Secrets().Informer()` in each), so the platform grants it Secrets there (components/ingress.py
`serve`). In those namespaces only the TLS material of its own routes may be: the routes' certificates,
the ServersTransports' CAs, the middlewares' secrets.

Every Secret the plan declares, every Secret the pinned charts' real Helm renders declare, every Secret
cert-manager writes for a Certificate or an Ingress's `tls`, and the Secret Helm keeps each release in
(its values inside) is judged by the cluster's RBAC objects as Kubernetes evaluates them
(tests/cluster_readers.py `reads`).
"""

from __future__ import annotations

from typing import Any

from platformctl.helm_render import RELEASE_TYPE
from platformctl.render import Render
from tests.cluster_readers import reads
from tests.test_daemonset_attacks import cluster_objects, grants
from tests.test_helm_render import _available

CONTROL_PLANE = "control-plane"
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"}

# What Traefik may still read that is not its routes' TLS material, and why it is left.
LEFT: dict[tuple[str, str], str] = {
    ("traefik", "sh.helm.release.v1.traefik.v1"): "Traefik's own release: its values hold no secret",
}
# Namespaces Traefik still watches although they hold more than its routes: why, and what is left to do. GitLab's,
# Harbor's, ArgoCD's and Vault's routes are in Traefik's namespace (components/ingress.py `route`, `tcp_route`).
LEFT_NAMESPACES: dict[str, str] = {
    "openunison": (
        "with replicas a login's state lives in the pod that began it, so Traefik pins each browser to one pod by "
        "cookie (components/openunison.py STICKY_ANNOTATIONS): that needs the pods' EndpointSlices, which Traefik "
        "reads only where it watches, while an ExternalName Service is a single server that kube-proxy spreads. "
        "Traefik still reads orchestra-secrets-source, the OIDC clients' secrets and the releases' records there. To "
        "do: OpenUnison's login state shared by its pods, then its Ingress and redirect filter through `route`"),
}


def secrets(plan: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret that will be on the control plane: the plan's, the renders', cert-manager's
    (tests/test_helm_render.py `_available`, GitLab's shared-secrets Job's among them) and Helm's release records."""
    found = {(ns, name) for cluster, ns, kind, name in _available(plan) if cluster == CONTROL_PLANE and kind == "Secret"}
    # Helm keeps each release, values and all, in a Secret of the release's namespace (storage driver `secret`).
    found |= {(r["inputs"]["namespace"], f"sh.helm.release.v1.{r['inputs']['name']}.v1") for r in plan["resources"]
              if r.get("cluster") == CONTROL_PLANE and r["type"] == RELEASE_TYPE}
    return found | tls_secrets(list(cluster_objects(plan, CONTROL_PLANE)))


def tls_secrets(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The certificates Traefik's routes present (an Ingress's `tls`, an IngressRoute's `tls.secretName`)."""
    found = set()
    for o in objects:
        ns, spec = o["metadata"].get("namespace"), o.get("spec") or {}
        if o["kind"] == "Ingress":
            found |= {(ns, t["secretName"]) for t in spec.get("tls") or [] if t.get("secretName")}
        elif o["kind"] in ("IngressRoute", "IngressRouteTCP") and (spec.get("tls") or {}).get("secretName"):
            found.add((ns, spec["tls"]["secretName"]))
    return found


def route_material(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """The Secrets Traefik needs to serve its routes: their certificates, the ServersTransports' CAs and
    client certificates, the middlewares' secrets (basic auth, forward auth's TLS)."""
    found = tls_secrets(objects)
    for o in objects:
        ns, spec = o["metadata"].get("namespace"), o.get("spec") or {}
        if o["kind"] == "ServersTransport":
            found |= {(ns, ca["secret"]) for ca in spec.get("rootCAs") or [] if "secret" in ca}
            found |= {(ns, s) for s in spec.get("certificatesSecrets") or []}
        elif o["kind"] == "Middleware":
            auth = spec.get("basicAuth") or spec.get("digestAuth") or {}
            found |= {(ns, auth["secret"])} if "secret" in auth else set()
            found |= {(ns, v) for k, v in ((spec.get("forwardAuth") or {}).get("tls") or {}).items() if k in ("caSecret", "certSecret")}
    return found


def readable(result: Render) -> tuple[list[str], set[str]]:
    """Every Secret Traefik's account reads that is not its routes' TLS material, nor LEFT; and the namespaces
    where it reads Secrets."""
    held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
    objects = list(cluster_objects(result.plan, CONTROL_PLANE))
    own = route_material(objects)
    found = sorted(f"{ns}/{name}" for ns, name in secrets(result.plan) - own
                   if reads(held, ns, name) and (ns, name) not in LEFT and ns not in LEFT_NAMESPACES)
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    return found, {ns for ns in namespaces if reads(held, ns, "any")}


def test_traefik_reads_no_secret_but_its_routes_tls(charted: dict[str, Render]) -> None:
    """Taken over, the internet-facing Traefik must not hold GitLab's rails keys, the databases' passwords,
    Harbor's or OpenUnison's keys, ArgoCD's server secret: only the certificates and CAs its routes use."""
    found = {stack: readable(result)[0] for stack, result in charted.items()}
    assert not any(found.values()), "Traefik, taken over, reads:\n" + "\n".join(
        f"{stack}: {secret}" for stack, names in found.items() for secret in names)


def test_traefik_reads_secrets_only_where_nothing_else_runs(charted: dict[str, Render]) -> None:
    """A chart's Jobs write Secrets no render shows (GitLab's shared-secrets Job: Gitaly's, gitlab-shell's and
    workhorse's tokens): Traefik reads Secrets only in namespaces running nothing but Traefik (or LEFT_NAMESPACES)."""
    for stack, result in charted.items():
        _, where = readable(result)
        running = {o["metadata"]["namespace"] for o in cluster_objects(result.plan, CONTROL_PLANE)
                   if o["kind"] in WORKLOADS and o["metadata"]["namespace"] != "traefik"}
        assert sorted(where & running - set(LEFT_NAMESPACES)) == [], f"{stack}: Traefik reads Secrets where these run"
        assert "traefik" in where, stack  # the review sees Traefik's grants at all
        assert where == {"traefik", *LEFT_NAMESPACES}, f"{stack}: Traefik reads Secrets in {sorted(where)}"


def test_the_review_judges_a_secret_as_traefik_would_read_it(charted: dict[str, Render]) -> None:
    """The review itself: a Secret put beside a route's certificate in Traefik's namespace is found; the
    certificate is not."""
    result = charted["dev"]
    secret = {"type": "kubernetes:core/v1:Secret", "cluster": CONTROL_PLANE, "urn": "planted", "dependsOn": [],
              "inputs": {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "planted", "namespace": "traefik"}}}
    planted = Render(**{**result.__dict__, "plan": {**result.plan, "resources": [*result.plan["resources"], secret]}})
    assert "traefik/planted" in readable(planted)[0]
    # The routes' certificates are in Traefik's namespace, which it reads, and pass as its routes' TLS material.
    certificates = {s for s in route_material(list(cluster_objects(result.plan, CONTROL_PLANE))) if s[0] == "traefik"}
    assert {"gitlab-tls", "harbor-tls", "argocd-tls", "vault-public-tls"} <= {name for _, name in certificates} and certificates <= secrets(result.plan)
    held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
    assert all(reads(held, *certificate) for certificate in certificates)


def test_what_is_left_is_still_there(charted: dict[str, Render]) -> None:
    """An entry of LEFT or LEFT_NAMESPACES that Traefik no longer reads on either stack is dropped, not kept."""
    for stack, result in charted.items():
        held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
        assert all(reads(held, ns, "any") for ns in LEFT_NAMESPACES), stack
        assert all(reads(held, *secret) and secret in secrets(result.plan) for secret in LEFT), stack


ROUTES = [("traefik.io", kind) for kind in ("ingressroutes", "ingressroutetcps", "traefikservices")]
CHANGES = ("create", "update", "patch")
# Accounts that may change Services in Traefik's namespace although they hold no READERS power, and why that gives
# them nothing they lack.
RETARGETS: dict[tuple[str, str], str] = {
    ("aws-load-balancer-controller", "aws-load-balancer-controller"): (
        "EKS: it updates every Service (finalizers, status; the chart's ClusterRole), Traefik's LoadBalancer Service in "
        "`traefik` among them, and through its AWS role it already sets where the public NLB sends each connection"),
}


def test_only_the_platform_points_traefik_at_a_name(charted: dict[str, Render]) -> None:
    """Traefik's CRD provider follows ExternalName Services (the routes in its namespace reach their backends so): an
    account that makes a Traefik route where Traefik watches sends the internet to any name, and one that changes a
    Service in Traefik's namespace retargets a route. None may but those that already hold the whole control plane
    (test_controlplane_reader_attacks READERS: cert-manager's ACME solvers, the database operator) and RETARGETS. The Ingress
    provider keeps refusing ExternalName Services: OpenUnison's operator makes Ingresses and Services in its
    namespace, which Traefik watches."""
    from tests.cluster_readers import accounts
    from tests.test_controlplane_reader_attacks import READERS, release_of
    from tests.test_daemonset_attacks import allows

    for stack, result in charted.items():
        providers = release_of(result, "traefik")["inputs"]["values"]["providers"]
        assert providers["kubernetesCRD"]["allowExternalNameServices"] is True
        assert "allowExternalNameServices" not in providers["kubernetesIngress"]
        _, watched = readable(result)
        found = []
        for namespace, account in accounts(result.plan, CONTROL_PLANE):
            held = grants(result.plan, CONTROL_PLANE, namespace, account)
            reach = [(verb, resource, where) for where in sorted(watched) for verb in CHANGES for group, resource in ROUTES
                     if any(allows(g, verb, group, resource, where) for g in held)]
            reach += [(verb, "services", "traefik") for verb in CHANGES if any(allows(g, verb, "", "services", "traefik") for g in held)]
            if reach and (namespace, account) not in READERS and not (reach == [(v, "services", "traefik") for v in ("update", "patch")]
                                                                      and (namespace, account) in RETARGETS):
                found.append(f"{stack} {namespace}/{account}: {reach}")
        assert not found, "\n".join(found)
