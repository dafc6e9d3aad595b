"""An attacker's review of the pods that run on every node (DaemonSets): whoever escapes a container
onto any node (a tenant's workload, a CI job) holds their service accounts' tokens, and can have the
kubelet mint new ones (the Node authorizer lets a node request a token for the account of any pod
bound to it, mounted or not). So no DaemonSet's account may hold more than its own namespace needs:
none may be cluster-admin, read Secrets cluster-wide, create pods, change or bind roles, impersonate
or mint tokens.

Each DaemonSet of both plans (rendered by the real Helm engine, or declared by the program) is
judged by the RBAC objects of its cluster in the plan, evaluated as Kubernetes does (rules are
additive; a verb, group and resource must each match; a RoleBinding grants only in its namespace).
Creating pods in a namespace counts unless the cluster's admission, as the plan declares it
(Gatekeeper's constraints, evaluated by the real OPA engine), refuses every pod that would reach
beyond the node: another account, another image, another host path, another node (Velero's node
agent, which copies each volume in a pod it creates, is held so by PlatformNodeAgentPods).
The EKS add-ons' DaemonSets (vpc-cni's aws-node, kube-proxy, the EBS CSI node, the Pod Identity
agent) are AWS's and not in the plan.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from platformctl.helm_render import RELEASE_TYPE, object_namespace
from platformctl.render import Render
from tests.test_gatekeeper_plan import admission, cluster_views, webhook_exempt

RBAC = "rbac.authorization.k8s.io"
# The ClusterRoles Kubernetes itself defines that the plan binds: a binding to any other role the
# plan does not define is reported, never guessed.
BUILT_IN = {
    "cluster-admin": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
    # What an aggregated API server (metrics-server) is bound to: Kubernetes' bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
    "system:auth-delegator": [{"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
                              {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]}],
    "extension-apiserver-authentication-reader": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"],
                                                   "resourceNames": ["extension-apiserver-authentication"]}],
}
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
    pod: dict[str, Any]  # its pod template's spec


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
                  obj["spec"]["template"]["spec"].get("serviceAccountName") or "default", obj["spec"]["template"]["spec"])
        for cluster in sorted(clusters) for obj in cluster_objects(plan, cluster) if obj["kind"] == "DaemonSet"
    ]


def names(subject: dict[str, Any], where: str | None, namespace: str, account: str) -> bool:
    """Whether a binding's subject is service account `namespace/account`, by name or by a group it is in."""
    if subject["kind"] == "ServiceAccount":
        return subject["name"] == account and subject.get("namespace", where) == namespace
    return subject["kind"] == "Group" and subject["name"] in (
        "system:authenticated", "system:serviceaccounts", f"system:serviceaccounts:{namespace}")


def bindings(plan: dict[str, Any], cluster: str) -> Iterator[tuple[dict[str, Any], Grant | None]]:
    """Each RoleBinding and ClusterRoleBinding on `cluster`, with what it grants its subjects (None: it binds a role
    the plan does not define, which only its reader may call an error: a tenant's `view` binding in its own namespace)."""
    objects = list(cluster_objects(plan, cluster))
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o.get("rules") or []
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        where = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        key = (ref["kind"], where if ref["kind"] == "Role" else None, ref["name"])
        rules = roles[key] if key in roles else BUILT_IN.get(ref["name"])
        yield binding, None if rules is None else Grant(where, tuple(rules))


def undefined(cluster: str, binding: dict[str, Any]) -> AssertionError:
    ref = binding["roleRef"]
    return AssertionError(f"{cluster} {binding['kind']} {binding['metadata']['name']}: binds {ref['kind']} {ref['name']}, "
                          "which the plan does not define")


def grants(plan: dict[str, Any], cluster: str, namespace: str, account: str) -> list[Grant]:
    """What the bindings on `cluster` grant service account `namespace/account`."""
    found = []
    for binding, grant in bindings(plan, cluster):
        where = binding["metadata"].get("namespace")
        if not any(names(subject, where, namespace, account) for subject in binding.get("subjects") or []):
            continue
        if grant is None:
            raise undefined(cluster, binding)
        found.append(grant)
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


CREATES_PODS = "creates pods (and so runs as any account of their namespace)"
# What a token of the account must not do: each power, and the (verb, group, resource) that give it.
POWERS: dict[str, list[tuple[str, str, str]]] = {
    "cluster-admin (every verb on every resource)": [("*", "*", "*")],
    "reads Secrets cluster-wide": [(verb, "", "secrets") for verb in READ],
    CREATES_PODS: [("create", "", "pods")],
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


# --- the pods a DaemonSet's account may create, through the cluster's admission --------------------

NODE, OTHER_NODE = "worker-1", "worker-2"
OWNER_UID = "0b7d5a8e-5d1c-4b8e-9a51-2f6f0c3e9d41"  # the PodVolumeBackup's: Velero names the container and volume after it
# What the ServiceAccount admission plugin adds to every pod before the webhooks see it.
TOKEN_VOLUME = {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}


def requester(namespace: str, account: str, node: str | None = NODE) -> dict[str, Any]:
    """The userInfo of a request made with the account's token from a pod on `node` (None: a token bound to no pod)."""
    extra = {"authentication.kubernetes.io/pod-name": [f"{account}-abcde"], "authentication.kubernetes.io/node-name": [node]}
    return {"username": f"system:serviceaccount:{namespace}:{account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            **({"extra": extra} if node else {})}


def hosting_pod(agent: dict[str, Any], namespace: str, volume: str, restore: bool = False) -> dict[str, Any]:
    """The pod Velero v1.18.1's node agent creates to copy one volume (pkg/exposer/pod_volume.go
    createHostingPod, Linux), from its own DaemonSet's pod spec `agent` (getInheritedPodInfo), on the
    client pod's node, which is the agent's: `volume` is that pod's volume directory on the host."""
    agent = copy.deepcopy(agent)
    [container] = agent["containers"]
    name, kind = ("pvr-1", "restore") if restore else ("pvb-1", "backup")
    args = [f"--volume-path=/{OWNER_UID}", "--resource-timeout=10m0s", f"--pod-volume-{kind}={name}"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": namespace, "labels": {f"velero.io/pod-volume-{kind}": name},
        "ownerReferences": [{"apiVersion": "velero.io/v1", "kind": "PodVolumeRestore" if restore else "PodVolumeBackup",
                             "name": name, "uid": OWNER_UID, "controller": True}]},
        "spec": {
            "nodeName": NODE, "os": {"name": "linux"}, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "NotIn", "values": ["windows"]}]}]}}},
            "serviceAccountName": agent["serviceAccountName"], "securityContext": {"runAsUser": 0},
            "containers": [{
                "name": OWNER_UID, "image": container["image"], "imagePullPolicy": "Never",
                "command": ["/velero", "pod-volume", kind], "args": args + (["--cache-volume-path="] if restore else []),
                "env": container.get("env", []), "resources": {}, "securityContext": {"privileged": False},
                "volumeMounts": [{"name": OWNER_UID, "mountPath": f"/{OWNER_UID}", "mountPropagation": "HostToContainer"},
                                 *container["volumeMounts"], {"name": TOKEN_VOLUME["name"], "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
            }],
            "volumes": [{"name": OWNER_UID, "hostPath": {"path": volume}}, *agent["volumes"], TOKEN_VOLUME],
        }}


def volume_of_a_pod(agent: dict[str, Any]) -> str:
    """A tenant pod's volume directory below the agent's host-pods path (exposer.ExtractPodVolumeHostPath)."""
    [pods] = [v["hostPath"]["path"] for v in agent["volumes"] if v["name"] == "host-pods"]
    return f"{pods}/3f1c9a52-7a8e-4c55-b1c2-8d0e6f4a9b17/volumes/kubernetes.io~local-volume/pvc-6f2d"


def pod_attacks(pod: dict[str, Any], accounts: list[str]) -> dict[str, tuple[dict[str, Any], str | None]]:
    """Pods that would reach beyond the node, each changed from `pod`, with the node its request comes from."""
    def changed(change: Any) -> dict[str, Any]:
        attack = copy.deepcopy(pod)
        change(attack["spec"], attack["spec"]["containers"][0])
        return attack
    own = pod["spec"]["serviceAccountName"]
    attacks = {f"runs as {account}": changed(lambda s, c, a=account: s.update(serviceAccountName=a)) for account in accounts if account != own}
    attacks |= {
        "runs as the namespace's default account": changed(lambda s, c: s.pop("serviceAccountName")),
        "on another node": changed(lambda s, c: s.update(nodeName=OTHER_NODE)),
        "left to the scheduler": changed(lambda s, c: s.pop("nodeName")),
        "another image": changed(lambda s, c: c.update(image="docker.io/library/busybox:1.37.0")),
        "the host's /": changed(lambda s, c: s["volumes"][0]["hostPath"].update(path="/")),
        "the kubelet's directory": changed(lambda s, c: s["volumes"][0]["hostPath"].update(path="/var/lib/kubelet")),
        "a path out of the pods' directory": changed(lambda s, c: s["volumes"][0]["hostPath"].update(
            path=volume_of_a_pod(pod["spec"]).replace("/volumes/", "/../../../../etc/"))),
        "another Secret as a volume": changed(lambda s, c: s["volumes"].append({"name": "x", "secret": {"secretName": "velero-server-token"}})),
        "another Secret through env": changed(lambda s, c: c["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "velero-server-token", "key": "token"}}})),
        "a claim": changed(lambda s, c: s["volumes"].append({"name": "x", "persistentVolumeClaim": {"claimName": "data"}})),
        "privileged": changed(lambda s, c: c["securityContext"].update(privileged=True)),
        "the host's processes": changed(lambda s, c: s.update(hostPID=True)),
    }
    return {name: (attack, NODE) for name, attack in attacks.items()} | {"with a token bound to no node": (pod, None)}


def admitted_pod_attacks(plan: dict[str, Any], ds: DaemonSet, namespace: str) -> list[str]:
    """The attacks of `pod_attacks` that the cluster's admission (the plan's constraints) lets the
    DaemonSet's account create in `namespace`, as a pod of the DaemonSet's shape would be created."""
    if webhook_exempt(cluster_views(plan)[ds.cluster], namespace):
        return ["any pod (Gatekeeper's webhook skips the namespace)"]
    accounts = sorted({o["metadata"]["name"] for o in cluster_objects(plan, ds.cluster)
                       if o["kind"] == "ServiceAccount" and o["metadata"].get("namespace") == namespace} | {"default"})
    pod = hosting_pod(ds.pod, namespace, volume_of_a_pod(ds.pod))
    return [name for name, (attack, node) in pod_attacks(pod, accounts).items()
            if not admission(plan, ds.cluster, attack, user=requester(ds.namespace, ds.account, node))[1]]


def judged(plan: dict[str, Any], ds: DaemonSet, held: list[Grant]) -> dict[str, list[str]]:
    """The POWERS `held` gives `ds`'s account, creating pods only where admission lets through an attack (named)."""
    found = powers(held)
    places = [f"{place}: {', '.join(admitted)}" for place in found.pop(CREATES_PODS, [])
              if (admitted := ["any pod"] if place == "cluster-wide" else admitted_pod_attacks(plan, ds, place))]
    return found | ({CREATES_PODS: places} if places else {})


def rule_text(rule: dict[str, Any]) -> str:
    targets = [f"{group}/{resource}" if group else resource for group in rule.get("apiGroups", []) for resource in rule.get("resources", [])]
    return f"{'/'.join(rule.get('verbs', []))} {','.join(targets or rule.get('nonResourceURLs', []))}"


def report(stack: str, ds: DaemonSet, held_powers: dict[str, list[str]], held: list[Grant]) -> str:
    """A DaemonSet's account, the powers it holds and every rule granted it: what a failure shows."""
    held_powers = "; ".join(f"{power} [{', '.join(places)}]" for power, places in held_powers.items())
    rules = "; ".join(f"{g.namespace or 'cluster-wide'}: {', '.join(map(rule_text, g.rules))}" for g in held) or "nothing"
    return f"{stack} {ds.cluster} DaemonSet {ds.namespace}/{ds.name} (account {ds.namespace}/{ds.account}): {held_powers}\n    rules: {rules}"


def every_daemonset(renders: dict[str, Render]) -> list[tuple[str, DaemonSet, list[Grant]]]:
    return [(stack, ds, grants(result.plan, ds.cluster, ds.namespace, ds.account))
            for stack, result in renders.items() for ds in daemonsets(result.plan)]


def findings(renders: dict[str, Render], chosen: Any) -> list[str]:
    """The report of each DaemonSet `chosen(ds)` picks that holds a power."""
    return [report(stack, ds, found, held) for stack, ds, held in every_daemonset(renders)
            if chosen(ds) and (found := judged(renders[stack].plan, ds, held))]


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


VELERO_AGENT = ("velero", "node-agent")


def test_no_daemonset_holds_more_than_a_node_should(charted: dict[str, Render]) -> None:
    """A node taken over yields every DaemonSet's account: none may be a way to the rest of the cluster."""
    found = findings(charted, lambda ds: (ds.namespace, ds.name) != VELERO_AGENT)
    assert not found, "a node taken over yields:\n" + "\n".join(found)


def test_velero_node_agent_holds_no_more_than_a_node_should(charted: dict[str, Render]) -> None:
    """The same, for Velero's node agent (the dev stack's prod cluster): an account of its own, whose pods
    in `velero` admission holds to its node, account, image and the kubelet's directories."""
    agents = [ds for _, ds, _ in every_daemonset(charted) if (ds.namespace, ds.name) == VELERO_AGENT]
    assert [(ds.cluster, ds.account) for ds in agents] == [("prod", "velero-node-agent")]
    found = findings(charted, lambda ds: (ds.namespace, ds.name) == VELERO_AGENT)
    assert not found, "a node taken over yields:\n" + "\n".join(found)


# What Velero v1.18.1's node agent and the pods it starts call (verb, group, resource, namespace; None:
# cluster-wide), read from its source: each must be granted, or file-system backups and restores stop.
NODE_AGENT_CALLS = [
    *((verb, "", "pods", None) for verb in READ),  # the manager's pod cache by spec.nodeName (cli/nodeagent/server.go)
    ("get", "", "persistentvolumeclaims", "payments-prod"), ("get", "", "persistentvolumes", None),  # kube.GetVolumeDirectory
    ("get", "", "nodes", None),  # kube.GetNodeOS
    *((verb, "velero.io", resource, None) for verb in ("list", "watch")
      for resource in ("podvolumebackups", "podvolumerestores", "datauploads", "datadownloads")),  # the controllers' caches
    ("list", "", "events", None), ("watch", "", "events", None),  # datapath/micro_service_watcher.go
    ("create", "", "pods", "velero"), ("delete", "", "pods", "velero"),  # exposer.createHostingPod, CleanUp
    ("get", "", "pods/log", "velero"),  # kube.CollectPodLogs
    ("create", "", "events", "velero"), ("patch", "", "events", "velero"),  # kube.NewEventRecorder
    ("get", "apps", "daemonsets", "velero"),  # nodeagent.GetPodSpec, GetHostPodPath
    *((verb, "velero.io", resource, "velero") for verb in ("update", "patch")
      for resource in ("podvolumebackups", "podvolumebackups/status", "podvolumerestores", "podvolumerestores/status")),
    ("get", "velero.io", "backupstoragelocations", "velero"), ("get", "velero.io", "backuprepositories", "velero"),
    ("create", "velero.io", "backuprepositories", "velero"),  # repository.Ensurer
    ("get", "", "secrets", "velero"),  # kopia's repository password (credentials.NewNamespacedSecretStore)
]


def test_velero_node_agent_may_make_the_calls_velero_makes_and_start_its_copies(charted: dict[str, Render]) -> None:
    """File-system backups and restores keep working: the account holds every call the node agent makes, Secrets
    only kopia's password, and admission lets through the pods it creates to copy a volume, as Velero builds them."""
    plan = charted["dev"].plan
    [ds] = [ds for ds in daemonsets(plan) if (ds.namespace, ds.name) == VELERO_AGENT]
    held = grants(plan, ds.cluster, ds.namespace, ds.account)
    assert [call for call in NODE_AGENT_CALLS if not any(allows(g, *call) for g in held)] == []
    secrets = [rule for g in held for rule in g.rules if "secrets" in rule["resources"]]
    assert secrets == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["velero-repo-credentials"], "verbs": ["get"]}]
    for restore in (False, True):
        pod = hosting_pod(ds.pod, ds.namespace, volume_of_a_pod(ds.pod), restore)
        assert admission(plan, ds.cluster, pod, user=requester(ds.namespace, ds.account)) == (["PlatformNodeAgentPods"], [])
    # What the server relies on: it finds the agent on a node by its pods' label role=node-agent.
    [agent] = [r for r in plan["resources"] if r["cluster"] == ds.cluster and r["inputs"].get("kind") == "DaemonSet"
               and r["inputs"]["metadata"]["name"] == "node-agent"]
    assert agent["inputs"]["spec"]["template"]["metadata"]["labels"]["role"] == "node-agent"
    # It starts only once the Constraint on its pods exists (which waits for its template).
    assert any(d.endswith(f"PlatformNodeAgentPods::{ds.cluster}-velero-node-agent-pods") for d in agent["dependsOn"])


def test_velero_node_agent_deletes_any_pod_of_velero_which_neither_rbac_nor_gatekeeper_can_narrow(charted: dict[str, Render]) -> None:
    """Left, with why: a node taken over may delete any pod in `velero`, the server's too (its backups stop while
    it restarts, and again each time). Velero v1.18.1's node agent deletes the pod that copied a volume by that
    copy's name (pkg/exposer/pod_volume.go line 213, the pod is named after its PodVolumeBackup or PodVolumeRestore,
    which the server names per backup; lines 338-342, CleanUp), so `resourceNames` cannot list them, and RBAC matches
    no label. Gatekeeper could hold the agent to its copies' labels only if its webhook reviewed DELETE, which the
    platform's does not (gatekeeper 3.23.0 values.yaml line 41, `enableDeleteOperations: false`): turning it on
    sends every delete of every kind in every reviewed namespace to a webhook whose failure policy is Fail, so a
    Gatekeeper outage would stop deletes cluster-wide. When that changes, hold the agent's deletes in
    PlatformNodeAgentPods and drop this test."""
    plan = charted["dev"].plan
    [ds] = [ds for ds in daemonsets(plan) if (ds.namespace, ds.name) == VELERO_AGENT]
    held = grants(plan, ds.cluster, ds.namespace, ds.account)
    assert anywhere(held, "delete", "", "pods") == ["velero"]
    assert [rule.get("resourceNames") for g in held for rule in g.rules if "pods" in rule["resources"] and "delete" in rule["verbs"]] == [None]
    servers = [o for o in cluster_objects(plan, ds.cluster) if o["kind"] == "Deployment" and o["metadata"]["namespace"] == "velero"]
    assert [o["metadata"]["name"] for o in servers] == ["velero"]
    webhooks = [w for o in cluster_objects(plan, ds.cluster) if o["kind"] == "ValidatingWebhookConfiguration"
                and o["metadata"]["name"].startswith("gatekeeper") for w in o["webhooks"]]
    assert webhooks and all("DELETE" not in rule["operations"] for w in webhooks for rule in w["rules"]), (
        "Gatekeeper now reviews DELETE: hold the node agent's deletes to its copies' pods in PlatformNodeAgentPods")
