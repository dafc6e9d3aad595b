"""The reader reviews' shared half (tests/test_controlplane_reader_attacks.py, tests/test_workload_reader_attacks.py):
which service accounts of a cluster hold, cluster-wide, a power that owns what the cluster keeps —
cluster-admin, reading every Secret, exec into any pod — judged by the cluster's RBAC objects in the
plan as Kubernetes evaluates them (tests/test_daemonset_attacks.py `grants`), against an allow-list
of the accounts that must, each with its reason. Reading a Secret that holds a CA private key is a power
of its own, wherever that Secret is (`ca_key_secrets`): its holder signs certificates that whatever
trusts the CA accepts."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from platformctl.render import Render
from tests.test_daemonset_attacks import READ, Grant, allows, anywhere, cluster_objects, grants

CLUSTER_ADMIN = "cluster-admin"
READS_SECRETS = "reads every Secret"
EXECS = "execs into any pod"
READS_CA_KEY = "reads a Secret holding a CA private key"
# Each power, and the (verb, group, resource) that give it cluster-wide. A websocket exec is a GET:
# Kubernetes before 1.35 (AuthorizePodWebsocketUpgradeCreatePermission) lets `get pods/exec` exec.
POWERS: dict[str, list[tuple[str, str, str]]] = {
    CLUSTER_ADMIN: [("*", "*", "*")],
    READS_SECRETS: [(verb, "", "secrets") for verb in READ],
    EXECS: [("create", "", "pods/exec"), ("get", "", "pods/exec")],
}
# (namespace, account) -> the powers it must keep cluster-wide, and why no chart option takes them away.
Readers = dict[tuple[str, str], tuple[frozenset[str], str]]


def accounts(plan: dict[str, Any], cluster: str) -> list[tuple[str, str]]:
    """Every service account on `cluster`: declared or rendered, or named by a binding."""
    objects = list(cluster_objects(plan, cluster))
    found = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"}
    found |= {(s.get("namespace", b["metadata"].get("namespace")), s["name"])
              for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
              for s in b.get("subjects") or [] if s["kind"] == "ServiceAccount"}
    return sorted(found)


def ca_key_secrets(plan: dict[str, Any], cluster: str) -> set[tuple[str, str]]:
    """(namespace, name) of each Secret on `cluster` that holds a CA private key: a cert-manager Certificate's with
    `isCA`, a CA Issuer's (a ClusterIssuer's is in cert-manager's cluster resource namespace, its own: `cert-manager`),
    and each Secret the program declares from the private key of a pulumi-tls CA certificate."""
    resources = [r for r in plan["resources"] if r.get("cluster") in (cluster, None)]
    requests = {r["urn"]: r for r in resources if r["type"] == "tls:index/certRequest:CertRequest"}
    ca_keys = {dep for r in resources if r["type"] == "tls:index/selfSignedCert:SelfSignedCert" and r["inputs"].get("isCaCertificate")
               for dep in r["dependsOn"]}
    ca_keys |= {dep for r in resources if r["type"] == "tls:index/locallySignedCert:LocallySignedCert" and r["inputs"].get("isCaCertificate")
                for request in r["dependsOn"] if request in requests for dep in requests[request]["dependsOn"]}
    found = {(r["inputs"]["metadata"]["namespace"], r["inputs"]["metadata"]["name"]) for r in resources
             if r.get("cluster") == cluster and r["type"] == "kubernetes:core/v1:Secret" and ca_keys & set(r["dependsOn"])}
    for o in cluster_objects(plan, cluster):
        spec = o.get("spec") or {}
        if o["kind"] == "Certificate" and spec.get("isCA"):
            found.add((o["metadata"]["namespace"], spec["secretName"]))
        elif o["kind"] in ("Issuer", "ClusterIssuer") and "ca" in spec:
            found.add((o["metadata"]["namespace"] if o["kind"] == "Issuer" else "cert-manager", spec["ca"]["secretName"]))
    return found


def held(grant_list: list[Grant], ca_keys: Collection[tuple[str, str]] = ()) -> set[str]:
    """The POWERS the grants give cluster-wide, and READS_CA_KEY where they read Secrets where one of `ca_keys` is."""
    found = {power for power, requests in POWERS.items()
             if any("cluster-wide" in anywhere(grant_list, *request) for request in requests)}
    if any(reads(grant_list, namespace, name) for namespace, name in ca_keys):
        found.add(READS_CA_KEY)
    return found


def reads(grant_list: list[Grant], namespace: str, name: str) -> bool:
    """Whether the grants let `get`, `list` or `watch` reach Secret `namespace/name`: a rule with `resourceNames`
    reaches only those (cert-manager's webhook reads its own CA Secret only, beside the platform root's)."""
    narrowed = [Grant(g.namespace, tuple(r for r in g.rules if name in (r.get("resourceNames") or [name]))) for g in grant_list]
    return any(allows(g, verb, "", "secrets", namespace) for g in narrowed for verb in READ)


def table(charted: dict[str, Render], clusters: tuple[str, ...]) -> dict[tuple[str, str, str, str], set[str]]:
    """(stack, cluster, namespace, account) -> the powers it holds there, for every account of `clusters` holding one."""
    found = {}
    for stack, result in charted.items():
        for cluster in clusters:
            ca_keys = ca_key_secrets(result.plan, cluster)
            for namespace, account in accounts(result.plan, cluster):
                if powers := held(grants(result.plan, cluster, namespace, account), ca_keys):
                    found[(stack, cluster, namespace, account)] = powers
    return found


def unjustified(found: dict[tuple[str, str, str, str], set[str]], readers: Readers) -> list[str]:
    """Each account of `found` holding a power its entry in `readers` does not name."""
    return [f"{stack} {cluster} {namespace}/{account}: {', '.join(sorted(powers))}"
            for (stack, cluster, namespace, account), powers in sorted(found.items())
            if not powers <= readers.get((namespace, account), (frozenset(), ""))[0]]


def stale(found: dict[tuple[str, str, str, str], set[str]], readers: Readers) -> dict[tuple[str, str], list[str]]:
    """The powers of each entry of `readers` that its account holds on none of `found`'s stacks and clusters."""
    holders: dict[tuple[str, str], set[str]] = {}
    for (_, _, namespace, account), powers in found.items():
        holders.setdefault((namespace, account), set()).update(powers)
    return {key: sorted(powers - holders.get(key, set())) for key, (powers, _) in readers.items() if not powers <= holders.get(key, set())}
