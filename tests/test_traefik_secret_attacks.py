"""An attacker's review of what the control plane's Traefik reads: it parses every request from the
internet, so whoever takes it over holds its token, and every Secret that token reads is theirs.
Traefik's Ingress and CRD providers list and watch every Secret of each namespace they watch (Traefik
v3.6.2 pkg/provider/kubernetes/ingress/client.go and crd/client.go: one informer factory per watched
namespace, `Secrets().Informer()` in each), so the platform grants it Secrets there (components/ingress.py,
the `traefik` RoleBinding) and it watches its own namespace alone, where only the TLS material of its own
routes may be: the routes' certificates, the ServersTransports' CAs, the middlewares' secrets.

Every Secret the plan declares, every Secret the pinned charts' real Helm renders declare, every Secret
cert-manager writes for a Certificate or an Ingress's `tls`, the Secret Helm keeps each release in
(its values inside), and the Secrets the OpenUnison operator writes at run time (`operator_secrets`) is
judged by the cluster's RBAC objects as Kubernetes evaluates them (tests/cluster_readers.py `reads`).
"""

from __future__ import annotations

from collections.abc import Iterator
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
# The OpenUnison operator the pinned openunison-operator chart runs (its values.yaml: openunison-kubernetes-operator
# 1.0.8, built from OpenUnison/openunison-kubernetes-operator @ 7bf14ad, the last commit at 1.0.8) writes, for each
# OpenUnison object, Secrets no render shows (src/main/java/com/tremolosecurity/openunison/secret/Generator.java).
OPERATOR_WRITES = {
    "dest": "the keystore (unisonKeyStore.p12: every key pair's private key, the static keys) and ou.env (its password, "
            "every source-secret key: the upstream IdP's client secret or bind password); generateOpenUnisonSecret, "
            "lines 149-190, Secret `spec.dest_secret`",
    "static": "the static keys exported (session-unison, lastmile-oidc: the keys of sessions and of the last-mile "
              "codes); generateStaticKeys, lines 209-353, Secret `<object>-static-keys<suffix>` (lines 219, 312)",
    "pair": "the key pair's private key (tls.key) and certificate; processKeyPair, lines 446-458 (`tls_secret_name`, "
            "else the key's name, in `target_namespace`, else the object's) and 556-582",
}


def operator_secrets(objects: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """(namespace, name) -> (key pair or "", what it holds) of each Secret the OpenUnison operator writes for the
    OpenUnison objects among `objects` (OPERATOR_WRITES)."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for o in objects:
        if o["kind"] != "OpenUnison":
            continue
        ns, spec = o["metadata"]["namespace"], o["spec"]
        env = {d["name"]: d.get("value") for d in spec.get("non_secret_data") or []}
        found[(ns, spec["dest_secret"])] = ("", OPERATOR_WRITES["dest"])
        found[(ns, f"{o['metadata']['name']}-static-keys{env.get('openunison.static-secret.suffix') or ''}")] = ("", OPERATOR_WRITES["static"])
        for key in spec["key_store"]["key_pairs"]["keys"]:
            where = (key.get("create_data") or {}).get("target_namespace") or ns
            found[(where, key.get("tls_secret_name") or key["name"])] = (key["name"], OPERATOR_WRITES["pair"])
    return found


def signing_keys(objects: list[dict[str, Any]]) -> set[str]:
    """The key pairs OpenUnison's identity providers sign ID tokens with: each OpenUnison Application's `jwtSigningKey`
    (orchestra-login-portal templates/openunison/applications/k8sidp.yaml: k8sIdp's is unison-saml2-rp-sig)."""
    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "jwtSigningKey" and isinstance(value, str):
                    yield value
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)
    return {key for o in objects if o["kind"] == "Application" and o["apiVersion"].startswith("openunison.tremolo.io/")
            for key in walk(o.get("spec"))}


def secrets(plan: dict[str, Any]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret that will be on the control plane: the plan's, the renders', cert-manager's
    (tests/test_helm_render.py `_available`, GitLab's shared-secrets Job's among them), Helm's release records and
    the OpenUnison operator's."""
    found = {(ns, name) for cluster, ns, kind, name in _available(plan) if cluster == CONTROL_PLANE and kind == "Secret"}
    # Helm keeps each release, values and all, in a Secret of the release's namespace (storage driver `secret`).
    found |= {(r["inputs"]["namespace"], f"sh.helm.release.v1.{r['inputs']['name']}.v1") for r in plan["resources"]
              if r.get("cluster") == CONTROL_PLANE and r["type"] == RELEASE_TYPE}
    objects = list(cluster_objects(plan, CONTROL_PLANE))
    return found | tls_secrets(objects) | set(operator_secrets(objects))


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
                   if reads(held, ns, name) and (ns, name) not in LEFT)
    namespaces = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    return found, {ns for ns in namespaces if reads(held, ns, "any")}


def test_traefik_reads_no_secret_but_its_routes_tls(charted: dict[str, Render]) -> None:
    """Taken over, the internet-facing Traefik must not hold GitLab's rails keys, the databases' passwords,
    Harbor's or OpenUnison's keys, ArgoCD's server secret: only the certificates and CAs its routes use."""
    found = {stack: readable(result)[0] for stack, result in charted.items()}
    assert not any(found.values()), "Traefik, taken over, reads:\n" + "\n".join(
        f"{stack}: {secret}" for stack, names in found.items() for secret in names)


def test_traefik_cannot_mint_openunison_tokens(charted: dict[str, Render]) -> None:
    """Taken over, Traefik must not hold what OpenUnison signs its ID tokens with (the key pair each identity
    provider names as its `jwtSigningKey`, and the keystore that holds it) nor any other key the operator writes:
    with the signing key it mints a token, for any user and any groups, that kube-oidc-proxy, Vault, ArgoCD, GitLab
    and Harbor take as OpenUnison's."""
    found = []
    for stack, result in charted.items():
        held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
        objects = list(cluster_objects(result.plan, CONTROL_PLANE))
        written, signing = operator_secrets(objects), signing_keys(objects)
        # The review sees the signing key among the operator's Secrets at all.
        assert signing and signing <= {pair for pair, _ in written.values()}, stack
        found += [f"{stack}: {ns}/{name}: {'ID-token signing key ' + pair + ': ' if pair in signing else ''}{what}"
                  for (ns, name), (pair, what) in sorted(written.items()) if reads(held, ns, name)]
    assert not found, "Traefik, taken over, reads the OpenUnison operator's Secrets:\n" + "\n".join(found)


def test_traefik_reads_secrets_only_where_nothing_else_runs(charted: dict[str, Render]) -> None:
    """A chart's Jobs write Secrets no render shows (GitLab's shared-secrets Job: Gitaly's, gitlab-shell's and
    workhorse's tokens), the OpenUnison operator others (`operator_secrets`): Traefik reads Secrets only in its own
    namespace, where nothing else runs."""
    for stack, result in charted.items():
        _, where = readable(result)
        running = {o["metadata"]["namespace"] for o in cluster_objects(result.plan, CONTROL_PLANE)
                   if o["kind"] in WORKLOADS and o["metadata"]["namespace"] != "traefik"}
        assert sorted(where & running) == [], f"{stack}: Traefik reads Secrets where these run"
        assert "traefik" in where, stack  # the review sees Traefik's grants at all
        assert where == {"traefik"}, f"{stack}: Traefik reads Secrets in {sorted(where)}"


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
    """An entry of LEFT that Traefik no longer reads on either stack is dropped, not kept."""
    for stack, result in charted.items():
        held = grants(result.plan, CONTROL_PLANE, "traefik", "traefik")
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
    provider keeps refusing ExternalName Services, as the tenants' Traefik, which shares its values, must."""
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
