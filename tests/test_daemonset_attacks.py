"""An attacker's review of the pods that run on every node (DaemonSets): whoever escapes a container
onto any node (a tenant's workload, a CI job) holds their service accounts' tokens, and can have the
kubelet mint new ones (the Node authorizer lets a node request a token for the account of any pod
bound to it, mounted or not). So no DaemonSet's account may hold more than its own namespace needs:
none may be cluster-admin, read Secrets cluster-wide, create pods, change or bind roles, impersonate
or mint tokens.

Each DaemonSet of both plans (rendered by the real Helm engine, or declared by the program) is
judged by the RBAC objects of its cluster in the plan, evaluated as Kubernetes does (rules are
additive; a verb, group and resource must each match; a RoleBinding grants only in its namespace).
The EKS add-ons' DaemonSets (vpc-cni's aws-node, kube-proxy, the EBS CSI node, the Pod Identity
agent) are AWS's and not in the plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.render import Render

RBAC = "rbac.authorization.k8s.io"
# The ClusterRoles Kubernetes itself defines that the plan binds: a binding to any other role the
# plan does not define is reported, never guessed.
BUILT_IN = {"cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
READ = ("get", "list", "watch")


@dataclass(frozen=True)
class Grant:
    """A role's rules as a binding grants them: cluster-wide (namespace None) or in one namespace."""

    namespace: str | None
    rules: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class DaemonSet:
    cluster: str
    namespace: str
    name: str
    account: str


def cluster_objects(plan: dict[str, Any], cluster: str) -> Iterator[dict[str, Any]]:
    """Every Kubernetes object the plan puts on `cluster`, its namespace filled in."""
    for resource in plan["resources"]:
        if resource.get("cluster") != cluster or not resource["type"].startswith("kubernetes:"):
            continue
        if resource["type"] == RELEASE_TYPE:
            for obj in resource.get("rendered") or []:
                namespace = object_namespace(obj, resource["inputs"]["namespace"])
                yield {**obj, "metadata": {**obj["metadata"], **({"namespace": namespace} if namespace else {})}}
        elif resource["inputs"].get("kind"):
            yield resource["inputs"]


def daemonsets(plan: dict[str, Any]) -> list[DaemonSet]:
    clusters = {r["cluster"] for r in plan["resources"] if r.get("cluster")}
    return [
        DaemonSet(cluster, obj["metadata"]["namespace"], obj["metadata"]["name"],
                  obj["spec"]["template"]["spec"].get("serviceAccountName") or "default")
        for cluster in sorted(clusters) for obj in cluster_objects(plan, cluster) if obj["kind"] == "DaemonSet"
    ]


def names(subject: dict[str, Any], where: str | None, namespace: str, account: str) -> bool:
    """Whether a binding's subject is service account `namespace/account`, by name or by a group it is in."""
    if subject["kind"] == "ServiceAccount":
        return subject["name"] == account and subject.get("namespace", where) == namespace
    return subject["kind"] == "Group" and subject["name"] in (
        "system:authenticated", "system:serviceaccounts", f"system:serviceaccounts:{namespace}")


def grants(plan: dict[str, Any], cluster: str, namespace: str, account: str) -> list[Grant]:
    """What the bindings on `cluster` grant service account `namespace/account`."""
    objects = list(cluster_objects(plan, cluster))
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o.get("rules") or []
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    found = []
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where = binding["metadata"].get("namespace")
        if not any(names(subject, where, namespace, account) for subject in binding.get("subjects") or []):
            continue
        ref = binding["roleRef"]
        key = (ref["kind"], where if ref["kind"] == "Role" else None, ref["name"])
        if key not in roles and ref["name"] not in BUILT_IN:
            raise AssertionError(f"{cluster} {binding['kind']} {binding['metadata']['name']}: binds {ref['kind']} {ref['name']}, "
                                 "which the plan does not define")
        found.append(Grant(where, tuple(roles.get(key, BUILT_IN.get(ref["name"], [])))))
    return found


def allows(grant: Grant, verb: str, group: str, resource: str, namespace: str | None) -> bool:
    """Whether `grant` allows `verb` on `group/resource` in `namespace` (None: cluster-wide)."""
    if grant.namespace is not None and grant.namespace != namespace:
        return False
    return any(
        (verb in rule.get("verbs", ()) or "*" in rule.get("verbs", ()))
        and (group in rule.get("apiGroups", ()) or "*" in rule.get("apiGroups", ()))
        and (resource in rule.get("resources", ()) or "*" in rule.get("resources", ()))
        for rule in grant.rules
    )


def anywhere(held: list[Grant], verb: str, group: str, resource: str) -> list[str]:
    """Where `verb group/resource` is allowed: 'cluster-wide' or the namespaces of the grants allowing it."""
    return sorted({g.namespace or "cluster-wide" for g in held if allows(g, verb, group, resource, g.namespace)})


# What a token of the account must not do: each power, and the (verb, group, resource) that give it.
POWERS: dict[str, list[tuple[str, str, str]]] = {
    "cluster-admin (every verb on every resource)": [("*", "*", "*")],
    "reads Secrets cluster-wide": [(verb, "", "secrets") for verb in READ],
    "creates pods (and so runs as any account of their namespace)": [("create", "", "pods")],
    "changes or binds roles": [(verb, RBAC, resource) for resource in ("roles", "clusterroles", "rolebindings", "clusterrolebindings")
                               for verb in ("create", "update", "patch", "bind", "escalate")],
    "impersonates": [("impersonate", "", resource) for resource in ("users", "groups", "serviceaccounts")],
    "mints tokens": [("create", "", "serviceaccounts/token")],
}


def powers(held: list[Grant]) -> dict[str, list[str]]:
    """The POWERS `held` gives, each with where (cluster-wide or namespaces)."""
    found = {}
    for power, requests in POWERS.items():
        places = sorted({place for verb, group, resource in requests for place in anywhere(held, verb, group, resource)})
        if power == "reads Secrets cluster-wide":
            places = [p for p in places if p == "cluster-wide"]
        if places:
            found[power] = places
    return found


def rule_text(rule: dict[str, Any]) -> str:
    targets = [f"{group}/{resource}" if group else resource for group in rule.get("apiGroups", []) for resource in rule.get("resources", [])]
    return f"{'/'.join(rule.get('verbs', []))} {','.join(targets or rule.get('nonResourceURLs', []))}"


def report(stack: str, ds: DaemonSet, held: list[Grant]) -> str:
    """A DaemonSet's account, the powers it holds and every rule granted it: what a failure shows."""
    held_powers = "; ".join(f"{power} [{', '.join(places)}]" for power, places in powers(held).items())
    rules = "; ".join(f"{g.namespace or 'cluster-wide'}: {', '.join(map(rule_text, g.rules))}" for g in held) or "nothing"
    return f"{stack} {ds.cluster} DaemonSet {ds.namespace}/{ds.name} (account {ds.namespace}/{ds.account}): {held_powers}\n    rules: {rules}"


def every_daemonset(renders: dict[str, Render]) -> list[tuple[str, DaemonSet, list[Grant]]]:
    return [(stack, ds, grants(result.plan, ds.cluster, ds.namespace, ds.account))
            for stack, result in renders.items() for ds in daemonsets(result.plan)]


def test_the_plans_have_daemonsets_to_judge(charted: dict[str, Render]) -> None:
    """The review sees the node agents: Velero's on the kubeconfig cluster it backs up, MetalLB's speakers, Dragonfly's dfdaemon."""
    seen = {(stack, ds.cluster, f"{ds.namespace}/{ds.name}") for stack, ds, _ in every_daemonset(charted)}
    assert {("dev", "prod", "velero/node-agent"),
            ("dev", "control-plane", "metallb-system/metallb-speaker"), ("prod", "prod", "dragonfly-system/dragonfly-client")} <= seen, seen
    # Velero's node agent only on the cluster whose volumes it backs up (environments: [prod]).
    assert {(stack, cluster) for stack, cluster, name in seen if name == "velero/node-agent"} == {("dev", "prod")}


def test_the_review_sees_a_cluster_admin_and_a_namespaced_secret_reader() -> None:
    """The evaluation itself: cluster-admin is every power; a Role's Secrets stay in its namespace; a
    group of accounts binds its members, a subject without a namespace is the binding's."""
    admin = [Grant(None, tuple(BUILT_IN["cluster-admin"]))]
    assert set(powers(admin)) == set(POWERS)
    namespaced = [Grant("velero", ({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]},))]
    assert powers(namespaced) == {}
    assert powers([Grant(None, namespaced[0].rules)]) == {"reads Secrets cluster-wide": ["cluster-wide"]}
    assert names({"kind": "Group", "name": "system:serviceaccounts:velero"}, None, "velero", "node-agent")
    assert not names({"kind": "ServiceAccount", "name": "node-agent"}, "other", "velero", "node-agent")
    assert powers([Grant("x", ({"apiGroups": [""], "resources": ["pods"], "verbs": ["create"]},))]) == {
        "creates pods (and so runs as any account of their namespace)": ["x"]}


# Velero's node agent (chart 12.1.0) runs as the server's account, which backs up and restores whole
# namespaces: the chart has no account of its own for it (vmware-tanzu/helm-charts#606). It runs only
# on a cluster whose namespaces are backed up (components/velero.py, Velero.node_agent).
OPEN = {("velero", "node-agent")}


def test_no_daemonset_holds_more_than_a_node_should(charted: dict[str, Render]) -> None:
    """A node taken over yields every DaemonSet's account: none may be a way to the rest of the cluster."""
    found = [report(stack, ds, held) for stack, ds, held in every_daemonset(charted)
             if (ds.namespace, ds.name) not in OPEN and powers(held)]
    assert not found, "a node taken over yields:\n" + "\n".join(found)


@pytest.mark.xfail(strict=True, reason="open: Velero's node agent holds the server's cluster-admin account (helm-charts#606)")
def test_velero_node_agent_holds_no_more_than_a_node_should(charted: dict[str, Render]) -> None:
    """The same, for Velero's node agent: where it runs (the dev stack's prod cluster) it still fails."""
    held = [(stack, ds, g) for stack, ds, g in every_daemonset(charted) if (ds.namespace, ds.name) in OPEN]
    found = [report(stack, ds, g) for stack, ds, g in held if powers(g)]
    assert not found, "a node taken over yields:\n" + "\n".join(found)
