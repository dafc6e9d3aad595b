"""Gatekeeper on the program's own objects: what the plan declares must pass its cluster's constraints.

Every pod-carrying object, RoleBinding, Application and ApplicationSet the program declares
directly is matched against every Constraint declared for its cluster, the way Gatekeeper
matches (kinds, scope, namespaces, excludedNamespaces, labelSelector, namespaceSelector against
the labels of the Namespace the plan declares, name), and each matching Constraint's template
(as declared in the plan) is evaluated on it by the real OPA engine (tests/opa.py). An object
must pass, or sit in a namespace exempt from Gatekeeper's webhook.

The matching follows gatekeeper pkg/mutation/match/match.go and pkg/util/wildcard.go. Webhook
exemption needs both halves Gatekeeper needs: the namespace listed in the release's
`--exempt-namespace` flags (`controllerManager.exemptNamespaces`, plus the release's own
namespace, which the chart always adds) and the `admission.gatekeeper.sh/ignore` label on it.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from platformctl.render import ROOT
from policy.gatekeeper import INGRESS_KINDS, POD_KINDS, TENANT_OBJECT_KINDS, cluster_constraints, templates, tenant_argo_constraint
from stacks.services import PLATFORM_NAMESPACES as SLICE_NAMESPACES
from tests.opa import evaluate, review

CONSTRAINTS_API = "constraints.gatekeeper.sh/"
IGNORE_LABEL = "admission.gatekeeper.sh/ignore"
NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every Namespace
TENANT_NAMESPACE_LABEL = "platform.io/tenant-namespace"
GUARDED_KINDS = {k for group in [*POD_KINDS, *TENANT_OBJECT_KINDS, *INGRESS_KINDS] for k in group["kinds"]} | {"RoleBinding", "Application", "ApplicationSet"}


# --- Gatekeeper's match, reimplemented ----------------------------------------------------------

def wildcard_matches(pattern: str, name: str) -> bool:
    """Gatekeeper's Wildcard: exact, "prefix-*", "*-suffix" or "*infix*"."""
    if pattern.startswith("*") and pattern.endswith("*") and len(pattern) > 1:
        return pattern[1:-1] in name
    if pattern.startswith("*"):
        return name.endswith(pattern[1:])
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions, ANDed)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            ok = key in labels and labels[key] in values
        elif operator == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif operator == "Exists":
            ok = key in labels
        elif operator == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError(f"unknown label selector operator {operator!r}")
        if not ok:
            return False
    return True


def _group(obj: dict[str, Any]) -> str:
    return obj["apiVersion"].rpartition("/")[0]


def _is_namespace(obj: dict[str, Any]) -> bool:
    return obj["kind"] == "Namespace" and _group(obj) == ""


def matches(match: dict[str, Any], obj: dict[str, Any], namespace: dict[str, Any] | None) -> bool:
    """Whether a Constraint's `spec.match` selects `obj`; `namespace` is its Namespace object, if any."""
    metadata = obj.get("metadata") or {}
    is_ns = _is_namespace(obj)
    ns_name = metadata.get("name") if is_ns else (namespace or {}).get("metadata", {}).get("name") or metadata.get("namespace")

    kinds = match.get("kinds") or []
    if kinds and not any(
        (not k.get("kinds") or "*" in k["kinds"] or obj["kind"] in k["kinds"])
        and (not k.get("apiGroups") or "*" in k["apiGroups"] or _group(obj) in k["apiGroups"])
        for k in kinds
    ):
        return False
    has_namespace = bool(metadata.get("namespace")) or namespace is not None
    scope = match.get("scope", "*")
    if scope == "Cluster" and not (is_ns or not has_namespace):
        return False
    if scope == "Namespaced" and not (not is_ns and has_namespace):
        return False
    # namespaces / excludedNamespaces cannot disqualify a cluster-scoped object.
    if match.get("namespaces") and ns_name and not any(wildcard_matches(p, ns_name) for p in match["namespaces"]):
        return False
    if ns_name and any(wildcard_matches(p, ns_name) for p in match.get("excludedNamespaces") or []):
        return False
    if "labelSelector" in match and not selector_matches(match["labelSelector"], metadata.get("labels") or {}):
        return False
    if "namespaceSelector" in match:
        if is_ns:
            labels = metadata.get("labels") or {}
        elif namespace is not None:
            labels = namespace["metadata"].get("labels") or {}
        elif not metadata.get("namespace"):
            labels = None  # cluster-scoped objects always match a namespaceSelector
        else:
            raise ValueError(f"{obj['kind']} {metadata.get('name')}: namespaceSelector needs its Namespace")
        if labels is not None and not selector_matches(match["namespaceSelector"], labels):
            return False
    return not match.get("name") or wildcard_matches(match["name"], metadata.get("name", ""))


# --- the plan as Gatekeeper on each cluster sees it ------------------------------------------------

def declared(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Kubernetes objects the program declares directly (not Helm releases, not reads)."""
    return [r for r in plan["resources"]
            if r["type"].startswith("kubernetes:") and "kind" in r["inputs"] and "helm.sh" not in r["type"]]


@dataclass
class ClusterView:
    constraints: list[dict[str, Any]] = field(default_factory=list)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)  # constraint kind -> template
    namespaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    exempt_flags: set[str] = field(default_factory=set)  # --exempt-namespace values
    objects: list[dict[str, Any]] = field(default_factory=list)


def cluster_views(plan: dict[str, Any]) -> dict[str, ClusterView]:
    views: dict[str, ClusterView] = {}
    for resource in declared(plan):
        view = views.setdefault(resource["cluster"], ClusterView())
        obj = resource["inputs"]
        if obj["apiVersion"].startswith(CONSTRAINTS_API):
            view.constraints.append(obj)
        elif obj["kind"] == "ConstraintTemplate":
            view.templates[obj["spec"]["crd"]["spec"]["names"]["kind"]] = obj
        elif _is_namespace(obj):
            namespace = copy.deepcopy(obj)
            namespace["metadata"].setdefault("labels", {})[NAME_LABEL] = obj["metadata"]["name"]
            view.namespaces[obj["metadata"]["name"]] = namespace
        elif obj["kind"] in GUARDED_KINDS:
            view.objects.append(obj)
    for resource in plan["resources"]:
        if resource["type"].startswith("kubernetes:helm.sh/") and resource["inputs"].get("chart") == "gatekeeper":
            values = resource["inputs"].get("values") or {}
            flags = (values.get("controllerManager") or {}).get("exemptNamespaces") or []
            view = views.setdefault(resource["cluster"], ClusterView())
            view.exempt_flags |= {resource["inputs"].get("namespace", "default"), *flags}
    return views


def admission(plan: dict[str, Any], cluster: str, obj: dict[str, Any], operation: str = "CREATE",
              old_object: dict[str, Any] | None = None, user: str | dict[str, Any] | None = None,
              inventory: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(the kinds of the constraints that select `obj`, their violations) when `obj` is created (or
    admitted with `operation`, replacing `old_object`, by `user` (a name, or the whole userInfo), with Gatekeeper's replicated
    `inventory`) on `cluster`, with the constraints, templates and Namespace labels the plan declares there."""
    view = cluster_views(plan)[cluster]
    namespace = view.namespaces[obj["metadata"]["namespace"]]
    selected = [c for c in view.constraints if matches(c["spec"]["match"], obj, namespace)]
    request = review(obj, operation, old_object, {"username": user} if isinstance(user, str) else user)
    failures = [f"{c['kind']}: {v.get('msg')}" for c in selected
                for v in evaluate(view.templates[c["kind"]], request, c["spec"].get("parameters"), inventory)]
    return [c["kind"] for c in selected], failures


def assigned(plan: dict[str, Any], cluster: str, obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as the node placement mutators the plan declares on `cluster` leave it (dedicated tenant nodes): a map key
    (`spec.nodeSelector."<key>"`) and a list item by its key (`spec.tolerations[key: "<key>"]`, which replaces it). The
    other mutators (pull Always, budgets, volumes) are left out."""
    namespace = cluster_views(plan)[cluster].namespaces[obj["metadata"]["namespace"]]
    obj = copy.deepcopy(obj)
    for mutator in (r["inputs"] for r in declared(plan) if r["cluster"] == cluster and r["inputs"]["kind"] == "Assign"):
        spec = mutator["spec"]
        if not any(obj["kind"] in a["kinds"] for a in spec["applyTo"]) or not matches(spec["match"], obj, namespace):
            continue
        location, value = spec["location"], spec["parameters"]["assign"]["value"]
        if ".nodeSelector." in location:
            path, key = location.split(".nodeSelector.")
            node = obj
            for part in path.split("."):
                node = node.setdefault(part, {})
            node.setdefault("nodeSelector", {})[key.strip('"')] = value
        elif ".tolerations[" in location:
            path, selector = location.split(".tolerations[")
            field, wanted = (s.strip().strip('"') for s in selector.rstrip("]").split(":", 1))
            node = obj
            for part in path.split("."):
                node = node.setdefault(part, {})
            kept = [t for t in node.get("tolerations") or [] if t.get(field) != wanted]
            node["tolerations"] = [*kept, value]
    return obj


def webhook_exempt(view: ClusterView, namespace: str) -> bool:
    labels = view.namespaces.get(namespace, {}).get("metadata", {}).get("labels", {})
    return namespace in view.exempt_flags and IGNORE_LABEL in labels


@dataclass
class Verdicts:
    passed: list[str] = field(default_factory=list)  # "<kind> <ns>/<name> vs <constraint>"
    exempt: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # objects no constraint selects
    unguarded: list[str] = field(default_factory=list)  # objects on a cluster without constraints


def gatekeeper_verdicts(plan: dict[str, Any]) -> Verdicts:
    verdicts = Verdicts()
    for cluster, view in sorted(cluster_views(plan).items(), key=lambda item: str(item[0])):
        for obj in view.objects:
            obj = copy.deepcopy(obj)
            # The Kubernetes provider puts an object without a namespace into "default".
            ns = obj["metadata"].setdefault("namespace", "default")
            where = f"{cluster}: {obj['kind']} {ns}/{obj['metadata'].get('name', '<auto-named>')}"
            if not view.constraints:
                verdicts.unguarded.append(where)
                continue
            namespace = view.namespaces.get(ns, {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": ns, "labels": {NAME_LABEL: ns}}})
            selected = [c for c in view.constraints if matches(c["spec"]["match"], obj, namespace)]
            if not selected:
                verdicts.unmatched.append(where)
            for constraint in selected:
                template = view.templates[constraint["kind"]]  # a constraint without its template is a plan bug
                found = evaluate(template, review(obj), constraint["spec"].get("parameters"))
                line = f"{where} vs {constraint['kind']}/{constraint['metadata']['name']}"
                if not found:
                    verdicts.passed.append(line)
                elif webhook_exempt(view, ns):
                    verdicts.exempt.append(line)
                else:
                    verdicts.failed.append(f"{line}: {[v.get('msg') for v in found]}")
    return verdicts


def test_every_declared_object_passes_its_clusters_constraints(plan: dict) -> None:
    verdicts = gatekeeper_verdicts(plan)
    assert not verdicts.failed, "\n".join(verdicts.failed)
    # Not vacuous: at least one object was evaluated against a constraint that selects it.
    assert verdicts.passed or verdicts.exempt, f"{plan['stack']}: no declared object is selected by any constraint"
    counts = Counter(line.split(": ", 1)[1].split(" ", 1)[0] for line in verdicts.passed + verdicts.exempt)
    print(f"\n{plan['stack']}: {len(verdicts.passed)} passed, {len(verdicts.exempt)} exempt, "
          f"{len(verdicts.unmatched)} unmatched, {len(verdicts.unguarded)} unguarded; evaluated by kind {dict(counts)}")


def test_a_cluster_admin_binding_in_the_plan_would_be_denied(plan: dict) -> None:
    # The same check on the real plan, with one tenant RoleBinding of the tenant's people turned into cluster-admin
    # (the Argo Rollouts controller's would also break PlatformTenantBindingSubjects: test_workload_reader_attacks).
    mutated = copy.deepcopy(plan)
    tenant_namespaces = {(r["cluster"], r["inputs"]["metadata"]["name"]) for r in declared(mutated)
                         if r["inputs"]["kind"] == "Namespace" and TENANT_NAMESPACE_LABEL in r["inputs"]["metadata"].get("labels", {})}
    bindings = [r for r in declared(mutated) if r["inputs"]["kind"] == "RoleBinding"
                and (r["cluster"], r["inputs"]["metadata"].get("namespace")) in tenant_namespaces
                and r["inputs"]["metadata"]["name"].startswith("tenant-")]
    assert bindings, "the plan declares no tenant RoleBinding"
    bindings[0]["inputs"]["roleRef"]["name"] = "cluster-admin"
    [failure] = gatekeeper_verdicts(mutated).failed
    assert "PlatformNoClusterAdminBinding" in failure and "must not grant ClusterRole <cluster-admin>" in failure


def test_every_constraint_in_the_plan_has_its_template_on_its_cluster(plan: dict) -> None:
    for cluster, view in cluster_views(plan).items():
        missing = {c["kind"] for c in view.constraints} - set(view.templates)
        assert not missing, f"{cluster}: constraints without templates: {missing}"


# --- the machinery on a synthetic plan, so the test above can fail ---------------------------------

HARBOR = "harbor.example.com"
TENANT = {"platform.io/tenant-namespace": "true", "platform.io/tenant": "team-a"}


def _entry(obj: dict[str, Any], cluster: str = "dev") -> dict[str, Any]:
    group_version = obj["apiVersion"] if "/" in obj["apiVersion"] else f"core/{obj['apiVersion']}"
    return {"type": f"kubernetes:{group_version}:{obj['kind']}", "cluster": cluster, "inputs": obj}


def _namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def _deployment(namespace: str, image: str, name: str = "web", **container: Any) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    resources = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    restricted = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                  "seccompProfile": {"type": "RuntimeDefault"}}
    spec = {"containers": [{"name": "app", "image": image, "resources": resources, "securityContext": restricted,
                            "livenessProbe": probe, "readinessProbe": probe, **container}]}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def _role_binding(namespace: str, role: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": f"bind-{role}", "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "Group", "name": "team-a-developers", "apiGroup": "rbac.authorization.k8s.io"}]}


def _application(project: str) -> dict[str, Any]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"team-a-{project}", "namespace": "argocd", "labels": {"platform.io/tenant": "team-a"}},
            "spec": {"project": project, "source": {"repoURL": "https://gitlab.example.com/team-a/ops.git", "path": "dev"},
                     "destination": {"name": "dev", "namespace": "team-a-dev"}}}


def synthetic_plan() -> dict[str, Any]:
    constraints = [*cluster_constraints([HARBOR], {"matchLabels": {"platform.io/tenant-namespace": "true"}}, [n.name for n in SLICE_NAMESPACES]),
                   tenant_argo_constraint("team-a", ["team-a"], ["team-a-dev"], {"platform.io/tenant-team-a": "true"}, ["dev"], argocd_namespace="argocd")]
    good = f"{HARBOR}/team-a/web:1.0.0"
    objects = [
        *templates(), *constraints,
        _namespace("team-a-dev", TENANT), _namespace("kube-system"), _namespace("argocd"),
        _namespace("gatekeeper-system", {IGNORE_LABEL: "no-self-managing"}),
        _namespace("break-glass", {IGNORE_LABEL: "incident"}), _namespace("labelled-only", {IGNORE_LABEL: "sneaky"}),
        _deployment("team-a-dev", good, "good"),
        _deployment("team-a-dev", "nginx:latest", "bad"),
        _deployment("kube-system", "registry.k8s.io/coredns:v1.12.0", "dns", securityContext={"privileged": True}),
        _deployment("break-glass", "busybox:1.36", "debug"),
        _deployment("labelled-only", "busybox:1.36", "sneaky"),
        _role_binding("team-a-dev", "edit"),
        _role_binding("team-a-dev", "cluster-admin"),
        _application("team-a"),
        _application("default"),
    ]
    gatekeeper = {"type": "kubernetes:helm.sh/v3:Release", "cluster": "dev",
                  "inputs": {"chart": "gatekeeper", "namespace": "gatekeeper-system",
                             "values": {"controllerManager": {"exemptNamespaces": ["break-glass", "kube-system"]}}}}
    return {"stack": "synthetic", "resources": [_entry(o) for o in objects] + [gatekeeper,
            _entry(_deployment("default", "nginx:latest", "vcluster-app"), cluster="team-a-vcluster")]}


def test_synthetic_plan_verdicts() -> None:
    verdicts = gatekeeper_verdicts(synthetic_plan())
    failed = Counter(line.split(" vs ", 1)[0] for line in verdicts.failed)
    assert failed == {
        "dev: Deployment team-a-dev/bad": 2,  # allowed registries and disallowed tags
        # the label alone does not exempt: the namespace is not among the --exempt-namespace flags
        "dev: Deployment labelled-only/sneaky": 1,
        "dev: RoleBinding team-a-dev/bind-cluster-admin": 1,
        "dev: Application argocd/team-a-default": 1,
    }, verdicts.failed
    assert {line.split(" vs ", 1)[0] for line in verdicts.exempt} == {"dev: Deployment break-glass/debug"}
    assert "dev: Deployment kube-system/dns" in verdicts.unmatched  # excluded by every constraint
    assert verdicts.unguarded == ["team-a-vcluster: Deployment default/vcluster-app"]
    passed = Counter(line.split(" vs ", 1)[0] for line in verdicts.passed)
    assert passed["dev: Deployment team-a-dev/good"] == 7  # all seven pod constraints select a tenant namespace
    assert passed["dev: RoleBinding team-a-dev/bind-edit"] == 1
    assert passed["dev: Application argocd/team-a-team-a"] == 1


# --- the match function against Gatekeeper's semantics ---------------------------------------------

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "team-a-dev", "labels": {"app": "web"}}}
NS = _namespace("team-a-dev", {**TENANT, NAME_LABEL: "team-a-dev"})
CLUSTER_ROLE = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "viewer"}}
NS_OBJ = _namespace("kube-system", {NAME_LABEL: "kube-system"})


@pytest.mark.parametrize(("match", "obj", "namespace", "expected"), [
    pytest.param({}, POD, NS, True, id="empty-match-selects-everything"),
    pytest.param({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]}, POD, NS, True, id="kind"),
    pytest.param({"kinds": [{"apiGroups": ["apps"], "kinds": ["Pod"]}]}, POD, NS, False, id="kind-in-other-group"),
    pytest.param({"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}]}, POD, NS, True, id="kind-wildcards"),
    pytest.param({"kinds": [{"kinds": ["Deployment"]}, {"apiGroups": [""]}]}, POD, NS, True, id="any-kinds-entry"),
    pytest.param({"namespaces": ["team-*"]}, POD, NS, True, id="namespace-prefix-glob"),
    pytest.param({"namespaces": ["*-prod"]}, POD, NS, False, id="namespace-suffix-glob"),
    pytest.param({"excludedNamespaces": ["*-dev"]}, POD, NS, False, id="excluded-suffix-glob"),
    pytest.param({"excludedNamespaces": ["kube-system"]}, NS_OBJ, None, False, id="namespace-object-excluded-by-own-name"),
    pytest.param({"namespaces": ["team-a-dev"]}, CLUSTER_ROLE, None, True, id="cluster-scoped-ignores-namespaces"),
    pytest.param({"scope": "Namespaced"}, CLUSTER_ROLE, None, False, id="scope-namespaced"),
    pytest.param({"scope": "Cluster"}, NS_OBJ, None, True, id="scope-cluster-includes-namespaces"),
    pytest.param({"labelSelector": {"matchLabels": {"app": "web"}}}, POD, NS, True, id="label-selector"),
    pytest.param({"labelSelector": {"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]}},
                 POD, NS, False, id="label-selector-not-in"),
    pytest.param({"labelSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}},
                 POD, NS, True, id="label-selector-does-not-exist"),
    pytest.param({"namespaceSelector": {"matchLabels": {"platform.io/tenant-namespace": "true"}}}, POD, NS, True,
                 id="namespace-selector-on-namespace-labels"),
    pytest.param({"namespaceSelector": {"matchExpressions": [{"key": "platform.io/tenant", "operator": "In", "values": ["team-b"]}]}},
                 POD, NS, False, id="namespace-selector-in"),
    pytest.param({"namespaceSelector": {"matchLabels": {NAME_LABEL: "kube-system"}}}, NS_OBJ, None, True,
                 id="namespace-selector-on-namespace-itself"),
    pytest.param({"namespaceSelector": {"matchLabels": {"x": "y"}}}, CLUSTER_ROLE, None, True,
                 id="namespace-selector-ignores-cluster-scoped"),
    pytest.param({"name": "we*"}, POD, NS, True, id="name-glob"),
    pytest.param({"name": "api"}, POD, NS, False, id="name"),
])
def test_match(match: dict[str, Any], obj: dict[str, Any], namespace: dict[str, Any] | None, expected: bool) -> None:
    assert matches(match, obj, namespace) is expected


def test_namespace_selector_needs_the_namespace() -> None:
    with pytest.raises(ValueError, match="needs its Namespace"):
        matches({"namespaceSelector": {"matchLabels": {"x": "y"}}}, POD, None)


@pytest.mark.parametrize(("pattern", "name", "expected"), [
    ("kube-*", "kube-system", True), ("*-system", "gatekeeper-system", True), ("*gate*", "gatekeeper-system", True),
    ("kube-system", "kube-system", True), ("kube", "kube-system", False), ("*-system", "system-x", False),
])
def test_wildcard(pattern: str, name: str, expected: bool) -> None:
    assert wildcard_matches(pattern, name) is expected


# --- what a tenant might try, against the real plan's constraints ----------------------------------

RESTRICTED = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}


def _tenant_namespace(plan: dict[str, Any], isolation_label: str | None = None) -> tuple[str, str, str]:
    """(cluster, namespace, tenant) of a tenant namespace the plan declares on dev."""
    for resource in declared(plan):
        labels = resource["inputs"]["metadata"].get("labels", {})
        if resource["inputs"]["kind"] == "Namespace" and resource["cluster"] == "dev" and labels.get(TENANT_NAMESPACE_LABEL) == "true" \
                and not resource["inputs"]["metadata"]["name"].startswith("sandbox-"):
            return resource["cluster"], resource["inputs"]["metadata"]["name"], labels["platform.io/tenant"]
    raise AssertionError("no tenant namespace on dev")


def _pod(namespace: str, image: str, container: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}}
    base = {"name": "app", "image": image, "imagePullPolicy": "Always", "securityContext": dict(RESTRICTED),
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
            "livenessProbe": probe, "readinessProbe": probe}
    # As its ReplicaSet makes it: a Pod no controller recreates is refused on its own (tests/test_eviction_attacks.py).
    owner = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "p-7d4b9c", "uid": "0b6c4e1a", "controller": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": namespace, "ownerReferences": [owner]},
            "spec": {"containers": [{**base, **(container or {})}], **spec}}


def _verdicts_with(plan: dict[str, Any], cluster: str, obj: dict[str, Any]) -> Verdicts:
    mutated = {**plan, "resources": [*plan["resources"], _entry(obj, cluster)]}
    return gatekeeper_verdicts(mutated)


def _attempts(harbor: str, tenant: str, namespace: str) -> dict[str, dict[str, Any]]:
    own = f"{harbor}/{tenant}/web:1.0.0"
    return {
        "sys-admin": _pod(namespace, own, {"securityContext": {**RESTRICTED, "capabilities": {"drop": ["ALL"], "add": ["SYS_ADMIN"]}}}),
        "all-capabilities": _pod(namespace, own, {"securityContext": {**RESTRICTED, "capabilities": {"add": ["ALL"]}}}),
        "root-with-escalation": _pod(namespace, own, {"securityContext": {"runAsUser": 0, "allowPrivilegeEscalation": True}}),
        "host-port": _pod(namespace, own, {"ports": [{"containerPort": 80, "hostPort": 80}]}),
        "unmasked-proc": _pod(namespace, own, {"securityContext": {**RESTRICTED, "procMount": "Unmasked"}}),
        "unconfined-seccomp": _pod(namespace, own, {"securityContext": {**RESTRICTED, "seccompProfile": {"type": "Unconfined"}}}),
        "unconfined-apparmor": _pod(namespace, own, {"securityContext": {**RESTRICTED, "appArmorProfile": {"type": "Unconfined"}}}),
        "ephemeral-sys-admin": _pod(namespace, own, ephemeralContainers=[{"name": "debug", "image": own, "imagePullPolicy": "Always",
                                                                          "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}]),
        "other-tenants-project": _pod(namespace, f"{harbor}/someone-else/web:1.0.0"),
        "proxy-cache-project": _pod(namespace, f"{harbor}/proxy-docker-io/library/nginx:1.27"),
        "look-alike-host": _pod(namespace, f"{harbor}.evil.io/{tenant}/web:1.0.0"),
        "cached-image-without-pull": _pod(namespace, own, {"imagePullPolicy": "IfNotPresent"}),
        "pinned-to-a-node": _pod(namespace, own, nodeName="control-plane-1"),
        "system-priority": _pod(namespace, own, priorityClassName="system-cluster-critical"),
        "tolerating-everything": _pod(namespace, own, tolerations=[{"operator": "Exists"}]),
        # External Secrets' account: its token logs in to Vault and may review any token of the cluster.
        "as-the-vault-account": _pod(namespace, own, serviceAccountName="vault-secrets", automountServiceAccountToken=True),
        "external-ips": {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "dns", "namespace": namespace},
                         "spec": {"externalIPs": ["10.96.0.10"], "ports": [{"port": 53}]}},
        "vault-hostname": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": namespace},
                           "spec": {"rules": [{"host": harbor.replace("harbor.", "vault.", 1)}]}},
        "token-secret": {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                         "metadata": {"name": "t", "namespace": namespace, "annotations": {"kubernetes.io/service-account.name": "vault-secrets"}}},
        "bind-everyone": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                          "metadata": {"name": "open", "namespace": namespace},
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                          "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}]},
    }


def test_what_a_tenant_might_try_is_denied_in_its_namespace(renders: dict) -> None:
    plan = renders["dev"].plan
    cluster, namespace, tenant = _tenant_namespace(plan)
    harbor = next(c for c in declared(plan) if c["inputs"]["kind"] == "PlatformAllowedRegistries"
                  and c["inputs"]["metadata"]["name"] == "platform-allowed-registries")["inputs"]["spec"]["parameters"]["registries"][0]
    assert _verdicts_with(plan, cluster, _pod(namespace, f"{harbor}/{tenant}/web:1.0.0")).failed == []
    assert _verdicts_with(plan, cluster, _pod(namespace, f"{harbor}/approved/nginx:1.27")).failed == []
    domain = harbor.removeprefix("harbor.")
    apps_domain = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]["platform:appsDomain"]

    def serving(host: str) -> dict[str, Any]:
        return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": namespace},
                "spec": {"rules": [{"host": host}]}}

    assert _verdicts_with(plan, cluster, serving(f"{tenant}.{cluster}.{apps_domain}")).failed == []
    # Its host of old, under the platform's own site (tests/test_cookie_attacks.py): refused.
    assert _verdicts_with(plan, cluster, serving(f"{tenant}.{cluster}.{domain}")).failed
    for attempt, obj in _attempts(harbor, tenant, namespace).items():
        assert _verdicts_with(plan, cluster, obj).failed, f"{attempt} was admitted in {namespace}"


def test_a_pod_security_exception_relaxes_restricted_only_where_and_as_far_as_it_says(tmp_path) -> None:
    from platformctl.render import render

    document = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    tenant = next(t for t in document["config"]["platform:tenants"] if t.get("isolation", "namespace") == "namespace")
    tenant["podSecurityException"] = {"reason": "the legacy agent chowns its data as root", "environments": ["dev"],
                                      "capabilities": ["CHOWN"], "runAsRoot": True}
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(document))
    plan = render(path, "dev").plan
    name = tenant["name"]
    labels = {r["inputs"]["metadata"]["name"]: r["inputs"]["metadata"]["labels"] for r in declared(plan) if r["inputs"]["kind"] == "Namespace"}
    assert labels[f"{name}-dev"]["pod-security.kubernetes.io/enforce"] == "baseline"  # PSA has no finer level
    assert labels[f"{name}-dev"]["pod-security.kubernetes.io/warn"] == "restricted"  # still visible
    assert labels[f"{name}-prod"]["pod-security.kubernetes.io/enforce"] == "restricted"  # only the environments listed
    [own] = [r for r in declared(plan) if r["inputs"]["kind"] == "PlatformPodRestricted" and r["inputs"]["metadata"]["name"] == f"{name}-dev-pod-restricted"]
    assert own["inputs"]["spec"]["parameters"] == {"allowedCapabilities": ["CHOWN"], "allowPrivilegeEscalation": False,
                                                   "allowRoot": True, "allowedVolumeTypes": []}
    harbor = f"harbor.{document['config']['platform:domain']}"

    def attempt(namespace: str, container: dict[str, Any], kind: str = "Pod") -> list:
        obj = _pod(namespace, f"{harbor}/{namespace.rsplit('-', 1)[0]}/web:1.0.0", container)
        if kind == "Deployment":
            obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": obj["metadata"], "spec": {
                "selector": {"matchLabels": {"app": "w"}}, "template": {"metadata": {"labels": {"app": "w"}}, "spec": obj["spec"]}}}
        return _verdicts_with(plan, namespace.rsplit("-", 1)[1], obj).failed  # its cluster: dev or prod

    def adding(*capabilities: str, **context: Any) -> dict[str, Any]:
        return {"securityContext": {**RESTRICTED, "capabilities": {"drop": ["ALL"], "add": list(capabilities)}, **context}}

    assert attempt(f"{name}-dev", adding("CHOWN")) == []
    assert attempt(f"{name}-dev", adding("CHOWN", runAsNonRoot=False, runAsUser=0)) == []
    # What it does not list stays refused: other capabilities, escalation, host access.
    assert attempt(f"{name}-dev", adding("SETUID"))
    assert attempt(f"{name}-dev", adding("NET_RAW"))
    assert attempt(f"{name}-dev", adding("SYS_ADMIN"), kind="Deployment")  # PSA never sees templates; Gatekeeper does
    assert attempt(f"{name}-dev", adding("CHOWN", allowPrivilegeEscalation=True))
    assert attempt(f"{name}-dev", {"ports": [{"containerPort": 80, "hostPort": 80}]})
    # Elsewhere nothing changes: its prod namespace and other tenants keep restricted.
    assert attempt(f"{name}-prod", adding("CHOWN"))
    other = next(t["name"] for t in document["config"]["platform:tenants"] if t is not tenant and t.get("isolation", "namespace") == "namespace")
    assert attempt(f"{other}-dev", adding("CHOWN"))
