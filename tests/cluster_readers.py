"""The reader reviews' shared half (tests/test_controlplane_reader_attacks.py, tests/test_workload_reader_attacks.py):
which service accounts of a cluster hold, cluster-wide, a power that owns what the cluster keeps —
cluster-admin, reading every Secret, exec into any pod — judged by the cluster's RBAC objects in the
plan as Kubernetes evaluates them (tests/test_daemonset_attacks.py `grants`), against an allow-list
of the accounts that must, each with its reason."""

from __future__ import annotations

from typing import Any

from platformctl.render import Render
from tests.test_daemonset_attacks import READ, Grant, anywhere, cluster_objects, grants

CLUSTER_ADMIN = "cluster-admin"
READS_SECRETS = "reads every Secret"
EXECS = "execs into any pod"
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


def held(grant_list: list[Grant]) -> set[str]:
    """The POWERS the grants give cluster-wide."""
    return {power for power, requests in POWERS.items()
            if any("cluster-wide" in anywhere(grant_list, *request) for request in requests)}


def table(charted: dict[str, Render], clusters: tuple[str, ...]) -> dict[tuple[str, str, str, str], set[str]]:
    """(stack, cluster, namespace, account) -> the powers it holds there, for every account of `clusters` holding one."""
    found = {}
    for stack, result in charted.items():
        for cluster in clusters:
            for namespace, account in accounts(result.plan, cluster):
                if powers := held(grants(result.plan, cluster, namespace, account)):
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
