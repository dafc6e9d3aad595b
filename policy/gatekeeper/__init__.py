"""Gatekeeper policy for every cluster of the platform: ConstraintTemplates and their Constraints.

The templates live as YAML files in `templates/` (one ConstraintTemplate each, Rego with
`import rego.v1`) and are applied unchanged; this module reads them and builds the Constraints
from stack configuration, so the program never writes Rego or match rules inline.

The scopes:
* cluster constraints, on every cluster: images from the platform's registry, no `latest` or
  untagged images and CPU/memory requests and limits everywhere except the platform's own
  namespaces; probes, pod security (baseline and restricted), pods the platform can move off a
  node and no `cluster-admin` RoleBinding in tenant namespaces;
* per tenant namespace, on its cluster: images from its own Harbor project and `approved` only,
  pulled Always, RoleBindings only for the tenant's own subjects, ingress hostnames only of the
  tenant's own (`<tenant>.<env>.<appsDomain>`), Services, Secrets and claims that cannot reach
  beyond the namespace, and analyses that measure only with a Job or the platform's Prometheus;
* one tenant constraint per tenant, where ArgoCD runs: its Applications and ApplicationSets stay
  within its own AppProjects, namespaces and clusters.
* where a node agent creates pods (Velero's, on the clusters whose volumes it copies): those pods
  stay on the agent's own node, account, images and host paths (`node_agent_constraint`).
"""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from policy.labels import ENVIRONMENT_LABEL, POD_SECURITY_LABEL, TENANT_LABEL, tenant_node_toleration

TEMPLATES_DIR = Path(__file__).parent / "templates"

CONSTRAINTS_API_VERSION = "constraints.gatekeeper.sh/v1beta1"

# The objects that carry a pod spec; the templates' Rego finds the spec in each of these.
POD_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "kinds": ["Pod", "ReplicationController"]},
    {"apiGroups": ["apps"], "kinds": ["DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"]},
    {"apiGroups": ["batch"], "kinds": ["CronJob", "Job"]},
    # Argo Rollouts' Deployment stand-in (progressive delivery on the workload clusters).
    {"apiGroups": ["argoproj.io"], "kinds": ["Rollout"]},
]
ROLEBINDING_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": ["rbac.authorization.k8s.io"], "kinds": ["RoleBinding"]},
]
# What publishes a hostname on a workload cluster's ingress controller.
INGRESS_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": ["networking.k8s.io"], "kinds": ["Ingress"]},
    {"apiGroups": ["traefik.io", "traefik.containo.us"], "kinds": ["IngressRoute"]},
]
TENANT_OBJECT_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": [""], "kinds": ["PersistentVolumeClaim", "Secret", "Service"]},
    {"apiGroups": ["policy"], "kinds": ["PodDisruptionBudget"]},
]
# Argo Rollouts' measurements, whose providers the controller calls from its own namespace.
ANALYSIS_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": ["argoproj.io"], "kinds": ["AnalysisTemplate", "AnalysisRun"]},
]
ARGO_KINDS: list[dict[str, list[str]]] = [
    {"apiGroups": ["argoproj.io"], "kinds": ["Application", "ApplicationSet"]},
]


# The longest grace period a tenant's pod may ask for: what the Cluster Autoscaler gives a pod when
# it removes a node (its --max-graceful-termination-sec default) before terminating the node anyway.
MAX_TERMINATION_GRACE_SECONDS = 600

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@cache
def _load_templates() -> tuple[str, ...]:
    # Cached as text so every caller gets its own freshly parsed dicts to mutate.
    return tuple(p.read_text() for p in sorted(TEMPLATES_DIR.glob("*.yaml")))


def templates() -> list[dict[str, Any]]:
    """Every ConstraintTemplate, parsed, in file-name order."""
    # libyaml's loader where PyYAML has it: the same documents, parsed 20 times as fast.
    return [yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) for text in _load_templates()]  # noqa: S506


def _registry_prefix() -> re.Pattern[str]:
    # The allowed-registries template's parameter schema is the one definition of a valid
    # prefix ("harbor.example.com", "harbor.example.com:8443/team-a/"): fail here, not at apply time.
    [template] = [t for t in templates() if t["spec"]["crd"]["spec"]["names"]["kind"] == "PlatformAllowedRegistries"]
    schema = template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]
    return re.compile(schema["properties"]["registries"]["items"]["pattern"])


def _restricted_parameters() -> dict[str, Any]:
    [template] = [t for t in templates() if t["spec"]["crd"]["spec"]["names"]["kind"] == "PlatformPodRestricted"]
    return template["spec"]["crd"]["spec"]["validation"]["openAPIV3Schema"]["properties"]


# What a tenant's pod security exception may allow beyond the restricted level: the
# restricted template's parameter schema is the one definition.
EXCEPTION_CAPABILITIES: tuple[str, ...] = tuple(_restricted_parameters()["allowedCapabilities"]["items"]["enum"])
EXCEPTION_VOLUME_TYPES: tuple[str, ...] = tuple(_restricted_parameters()["allowedVolumeTypes"]["items"]["enum"])


def _constraint(
    kind: str, name: str, match: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    # Deep copies: callers get objects that share nothing with each other or this module.
    spec: dict[str, Any] = {"enforcementAction": "deny", "match": copy.deepcopy(match)}
    if parameters is not None:
        spec["parameters"] = copy.deepcopy(parameters)
    return {"apiVersion": CONSTRAINTS_API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


def cluster_constraints(
    allowed_registries: list[str], tenant_namespace_selector: dict[str, Any], platform_namespaces: Sequence[str],
    platform_service_accounts: Sequence[str] = (), dedicated_namespaces: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The Constraints every cluster gets.

    `allowed_registries`: image prefixes, e.g. ["harbor.example.com"] (a trailing "/" is implied).
    `tenant_namespace_selector`: a label selector for tenant namespaces, e.g.
    {"matchLabels": {"platform.io/tenant-namespace": "true"}}.
    `platform_namespaces`: the platform's own namespaces, outside every constraint here (their
    charts pull from upstream registries, and some legitimately need host access).
    `platform_service_accounts`: the platform's accounts in tenant namespaces, which no tenant pod may run as.
    `dedicated_namespaces`: tenant namespace -> its tenant, for tenants with nodes of their own (tainted and
    labelled `TENANT_LABEL=<tenant>`): their pods must select and tolerate those nodes, and no other pod may.
    """
    if not allowed_registries:
        raise ValueError("allowed_registries must name at least one registry")
    valid = _registry_prefix()
    for prefix in allowed_registries:
        if not valid.match(prefix):
            raise ValueError(f"allowed registry {prefix!r} is not a host[:port][/path] prefix such as 'harbor.example.com'")
    if not (tenant_namespace_selector.get("matchLabels") or tenant_namespace_selector.get("matchExpressions")):
        # An empty selector matches every namespace, which would hold the whole cluster to tenant rules.
        raise ValueError("tenant_namespace_selector must have matchLabels or matchExpressions")

    # Platform namespaces are excluded by name from the tenant constraints too, so a stray
    # tenant label can never hold the platform's own workloads to tenant rules.
    excluded = list(platform_namespaces)
    everywhere = {"kinds": POD_KINDS, "excludedNamespaces": excluded}
    tenants = {"namespaceSelector": tenant_namespace_selector, "excludedNamespaces": excluded}
    tenant_pods = {"kinds": POD_KINDS, **tenants}
    # Namespaces without the label are held to restricted too: the exception must be explicit.
    not_excepted = {"key": POD_SECURITY_LABEL, "operator": "NotIn", "values": ["baseline"]}
    restricted_selector = {
        **tenant_namespace_selector,
        "matchExpressions": [*tenant_namespace_selector.get("matchExpressions", []), not_excepted],
    }
    restricted_pods = {"kinds": POD_KINDS, "namespaceSelector": restricted_selector, "excludedNamespaces": excluded}
    tenant_bindings = {"kinds": ROLEBINDING_KINDS, **tenants}
    registries = {"registries": list(allowed_registries)}
    return [
        _constraint("PlatformAllowedRegistries", "platform-allowed-registries", everywhere, registries),
        _constraint("PlatformDisallowedTags", "platform-disallowed-tags", everywhere),
        _constraint("PlatformContainerResources", "platform-container-resources", everywhere),
        _constraint("PlatformRequiredProbes", "platform-required-probes", tenant_pods),
        _constraint("PlatformPodSecurity", "platform-pod-security", tenant_pods, {
            "serviceAccounts": list(platform_service_accounts), "tenantNodeKey": TENANT_LABEL,
            "dedicatedNamespaces": dict(sorted((dedicated_namespaces or {}).items()))}),
        _constraint("PlatformPodRestricted", "platform-pod-restricted", restricted_pods),
        _constraint("PlatformPodDisruption", "platform-pod-disruption", tenant_pods,
                    {"maxTerminationGracePeriodSeconds": MAX_TERMINATION_GRACE_SECONDS}),
        _constraint("PlatformNoClusterAdminBinding", "platform-no-cluster-admin-binding", tenant_bindings),
    ]


MUTATIONS_API_VERSION = "mutations.gatekeeper.sh/v1"


# Where each pod-carrying kind keeps its pod spec, for the mutators: (group, version, kinds, path).
_POD_SPEC_LOCATIONS: list[tuple[str, str, list[str], str]] = [
    ("", "v1", ["Pod"], "spec"),
    ("", "v1", ["ReplicationController"], "spec.template.spec"),
    ("apps", "v1", ["DaemonSet", "Deployment", "ReplicaSet", "StatefulSet"], "spec.template.spec"),
    ("batch", "v1", ["Job"], "spec.template.spec"),
    ("batch", "v1", ["CronJob"], "spec.jobTemplate.spec.template.spec"),
    ("argoproj.io", "v1alpha1", ["Rollout"], "spec.template.spec"),
]


def cluster_mutations(tenant_namespace_selector: dict[str, Any], platform_namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """Assign mutators setting imagePullPolicy Always on every container and init container of
    a Pod or workload template in a tenant namespace, before the constraints see it, so what a
    controller or a virtual cluster creates passes the pull-Always rule as it is."""
    mutations = []
    for group, version, kinds, path in _POD_SPEC_LOCATIONS:
        for field_name in ("containers", "initContainers"):
            mutations.append({
                "apiVersion": MUTATIONS_API_VERSION,
                "kind": "Assign",
                "metadata": {"name": f"tenant-{kinds[0].lower()}-{field_name.lower()}-pull-always"},
                "spec": {
                    "applyTo": [{"groups": [group], "kinds": list(kinds), "versions": [version]}],
                    "match": {
                        "scope": "Namespaced",
                        "kinds": [{"apiGroups": [group], "kinds": list(kinds)}],
                        "namespaceSelector": copy.deepcopy(tenant_namespace_selector),
                        "excludedNamespaces": list(platform_namespaces),
                    },
                    "location": f"{path}.{field_name}[name: *].imagePullPolicy",
                    "parameters": {"assign": {"value": "Always"}},
                },
            })
    return mutations


def tenant_node_mutations(namespace: str, tenant: str) -> list[dict[str, Any]]:
    """Assign mutators placing every Pod and workload template of `namespace` on the nodes of `tenant`, tainted and
    labelled `TENANT_LABEL=<tenant>`: the node selector and the toleration, replacing any toleration of that key. The
    webhook fails open, so PlatformPodSecurity (`dedicatedNamespaces`) refuses a pod without them. A quoted path
    element may hold `.` and `/` (gatekeeper pkg/mutation/path/token/scanner.go `readString`)."""
    if not _DNS_LABEL.match(namespace) or not _DNS_LABEL.match(tenant):
        raise ValueError(f"{namespace}/{tenant} is not a namespace and tenant name")
    placements = (("node-selector", "nodeSelector.\"{key}\"", tenant),
                  ("toleration", 'tolerations[key: "{key}"]', tenant_node_toleration(tenant)))
    return [
        {
            "apiVersion": MUTATIONS_API_VERSION,
            "kind": "Assign",
            "metadata": {"name": f"{namespace}-{kinds[0].lower()}-tenant-{what}"},
            "spec": {
                "applyTo": [{"groups": [group], "kinds": list(kinds), "versions": [version]}],
                "match": {"scope": "Namespaced", "kinds": [{"apiGroups": [group], "kinds": list(kinds)}], "namespaces": [namespace]},
                "location": f"{path}.{field.format(key=TENANT_LABEL)}",
                "parameters": {"assign": {"value": copy.deepcopy(value)}},
            },
        }
        for group, version, kinds, path in _POD_SPEC_LOCATIONS
        for what, field, value in placements
    ]


def local_volume_mutation(tenant_namespace_selector: dict[str, Any], platform_namespaces: Sequence[str]) -> dict[str, Any]:
    """An AssignMetadata mutator annotating every PersistentVolumeClaim in a tenant namespace `volumeType: local`,
    for kubeconfig clusters, where Velero copies tenant volumes file by file. local-path-provisioner (kind's default class,
    k3s's) makes hostPath volumes unless the class or the claim says `local` (rancher/local-path-provisioner
    v0.0.34 provisioner.go:52, 442-449), and Velero's file-system backup skips hostPath volumes (v1.18.1
    pkg/podvolume/backupper.go:339-347) but copies local ones. Other provisioners ignore the annotation; a claim
    that sets it keeps its own (AssignMetadata adds, never changes)."""
    return {
        "apiVersion": MUTATIONS_API_VERSION,
        "kind": "AssignMetadata",
        "metadata": {"name": "tenant-persistentvolumeclaim-local-volume"},
        "spec": {
            "match": {
                "scope": "Namespaced",
                "kinds": [{"apiGroups": [""], "kinds": ["PersistentVolumeClaim"]}],
                "namespaceSelector": copy.deepcopy(tenant_namespace_selector),
                "excludedNamespaces": list(platform_namespaces),
            },
            "location": "metadata.annotations.volumeType",
            "parameters": {"assign": {"value": "local"}},
        },
    }


def sync_config(namespace: str) -> dict[str, Any]:
    """Gatekeeper's Config, in Gatekeeper's `namespace`: the objects it replicates for the templates
    that read others (`data.inventory`): PodDisruptionBudgets, which PlatformTenantObjects compares a
    new one with."""
    return {
        "apiVersion": "config.gatekeeper.sh/v1alpha1",
        "kind": "Config",
        # Gatekeeper reads this one name in its own namespace only.
        "metadata": {"name": "config", "namespace": namespace},
        "spec": {"sync": {"syncOnly": [{"group": "policy", "version": "v1", "kind": "PodDisruptionBudget"}]}},
    }


def disruption_budget_mutation(tenant_namespace_selector: dict[str, Any], platform_namespaces: Sequence[str]) -> dict[str, Any]:
    """An Assign mutator giving every PodDisruptionBudget in a tenant namespace that sets none
    `unhealthyPodEvictionPolicy: AlwaysAllow`: under the default (IfHealthyBudget) pods that never
    become ready cannot be evicted while the budget is short of healthy ones, so a workload kept
    unready would block every drain of its nodes. PlatformTenantObjects refuses the other value."""
    location = "spec.unhealthyPodEvictionPolicy"
    return {
        "apiVersion": MUTATIONS_API_VERSION,
        "kind": "Assign",
        "metadata": {"name": "tenant-poddisruptionbudget-unhealthy-pods-evictable"},
        "spec": {
            "applyTo": [{"groups": ["policy"], "kinds": ["PodDisruptionBudget"], "versions": ["v1"]}],
            "match": {
                "scope": "Namespaced",
                "kinds": [{"apiGroups": ["policy"], "kinds": ["PodDisruptionBudget"]}],
                "namespaceSelector": copy.deepcopy(tenant_namespace_selector),
                "excludedNamespaces": list(platform_namespaces),
            },
            "location": location,
            "parameters": {"assign": {"value": "AlwaysAllow"}, "pathTests": [{"subPath": location, "condition": "MustNotExist"}]},
        },
    }


def tenant_namespace_constraints(
    namespace: str, registries: list[str], users: list[str], groups: list[str], hosts: Sequence[str] = (),
    pod_security_exception: dict[str, Any] | None = None, prometheus_addresses: Sequence[str] = (),
    prometheus_header: str | None = None, controllers: Sequence[dict[str, str]] = (),
) -> list[dict[str, Any]]:
    """The Constraints of one tenant namespace: images only from `registries` (its own Harbor
    project and `approved`), pulled Always; RoleBindings only for `users`, `groups`, the
    namespace's own service accounts and `controllers` (the platform's, each {namespace, name,
    clusterRole}: its account, to that ClusterRole only); Ingresses only for `hosts` (none: no host), no IngressRoute;
    no externalIPs, NodePorts, service-account-token Secrets, Helm release Secrets from a virtual
    cluster's syncer or claims of a volume by name;
    Argo Rollouts analyses by Job or by the Prometheus at `prometheus_addresses` only, sending
    exactly the header `prometheus_header` with the namespace when one is given.

    `pod_security_exception`: the PlatformPodRestricted parameters of a namespace labelled for
    an exception (which the cluster's restricted constraint skips): restricted, but for those.
    """
    if not _DNS_LABEL.match(namespace):
        raise ValueError(f"namespace {namespace!r} is not a DNS label")
    only = {"namespaces": [namespace]}
    excepted = [] if pod_security_exception is None else [_constraint(
        "PlatformPodRestricted", f"{namespace}-pod-restricted", {"kinds": POD_KINDS, **only}, pod_security_exception,
    )]
    return [
        *excepted,
        _constraint(
            "PlatformAllowedRegistries", f"{namespace}-registries", {"kinds": POD_KINDS, **only},
            {"registries": list(registries), "requirePullAlways": True},
        ),
        _constraint(
            "PlatformTenantBindingSubjects", f"{namespace}-binding-subjects", {"kinds": ROLEBINDING_KINDS, **only},
            {"users": sorted(users), "groups": sorted(groups), "serviceAccountNamespaces": [namespace],
             **({"controllers": list(controllers)} if controllers else {})},
        ),
        _constraint(
            "PlatformTenantIngressHosts", f"{namespace}-ingress-hosts", {"kinds": INGRESS_KINDS, **only},
            {"hosts": list(hosts)},
        ),
        _constraint("PlatformTenantObjects", f"{namespace}-objects", {"kinds": TENANT_OBJECT_KINDS, **only}),
        _constraint(
            "PlatformTenantAnalysis", f"{namespace}-analysis", {"kinds": ANALYSIS_KINDS, **only},
            {"prometheusAddresses": list(prometheus_addresses), **({"namespaceHeader": prometheus_header} if prometheus_header else {})},
        ),
    ]


def tenant_argo_constraint(
    tenant: str,
    projects: list[str],
    namespaces: list[str],
    cluster_labels: dict[str, str],
    clusters: list[str],
    argocd_namespace: str,
    environment: str | None = None,
) -> dict[str, Any]:
    """The Constraint holding tenant `tenant`'s ArgoCD Applications and ApplicationSets to its scope.

    It matches objects in the ArgoCD namespace labelled `platform.io/tenant: <tenant>` (and, with
    `environment`, `platform.io/environment: <environment>`: one constraint per environment, whose
    clusters carry different labels). An empty `cluster_labels` forbids any clusters generator.
    """
    if not _DNS_LABEL.match(tenant):
        raise ValueError(f"tenant {tenant!r} is not a DNS label")
    labels = {TENANT_LABEL: tenant, **({ENVIRONMENT_LABEL: environment} if environment else {})}
    match = {
        "kinds": ARGO_KINDS,
        "namespaces": [argocd_namespace],
        "labelSelector": {"matchLabels": labels},
    }
    parameters = {
        "project": list(projects),
        "namespaces": list(namespaces),
        "clusterLabels": dict(cluster_labels),
        "clusters": list(clusters),
    }
    name = f"tenant-{tenant}-{environment}-argo-scope" if environment else f"tenant-{tenant}-argo-scope"
    return _constraint("PlatformTenantArgoScope", name, match, parameters)


def node_agent_constraint(
    namespace: str, service_account: str, images: Sequence[str], host_paths: Sequence[str], secrets: Sequence[str],
) -> dict[str, Any]:
    """The Constraint on the pods node agent `namespace/service_account` creates in its namespace: on
    its own node, as itself, its `images` only, mounting only `host_paths` (or below), emptyDirs,
    its token and `secrets` (PlatformNodeAgentPods)."""
    if not _DNS_LABEL.match(namespace) or not _DNS_LABEL.match(service_account):
        raise ValueError(f"{namespace}/{service_account} is not a namespace and service account name")
    return _constraint(
        "PlatformNodeAgentPods", f"{service_account}-pods",
        {"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}], "namespaces": [namespace]},
        {"username": f"system:serviceaccount:{namespace}:{service_account}", "serviceAccountName": service_account,
         "images": list(images), "hostPaths": list(host_paths), "secrets": list(secrets)},
    )
