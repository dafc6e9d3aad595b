"""GitLab Runner: the Kubernetes executor for the platform's own pipelines and for every tenant's.

Runners are registered by the program with GitLab's runner-creation flow (pulumi-gitlab
`UserRunner`: no registration token exists anywhere). The runner authentication token it
returns is a Pulumi secret that goes only into the Secret `gitlab-runner-token` the chart
mounts (`runners.secret`), never into Helm values. Tokens rotate: a `pulumiverse_time.Rotating`
of TOKEN_ROTATION_DAYS is the runner's `replacement_trigger`, so the first `pulumi up --refresh`
after it expires registers a new runner (new token, new Secret, the pods restart on the runner
id annotation) and deletes the old one, which revokes its token. GitLab itself sets runner
tokens no expiry here: the instance's runner-token expiration setting is not something
pulumi-gitlab manages, so the rotation is the lifetime.

* The platform's repository (`platform:pipeline.projectPath`) gets two project runners: one for any
  ref in `gitlab-runner` (merge requests' jobs), one for protected refs only in
  `gitlab-runner-protected` (the jobs of main and the schedules, which carry PROTECTED_TAG). Their
  jobs (Pulumi, promote-image) need no image builds and run under Pod Security `restricted`, and
  reach the ingress controller, the internet and the clusters' API ports, no platform pod directly.
* Each tenant gets two group runners on its own GitLab group, as the platform has: one for any ref
  (its branches' builds) in `runner-<tenant>`, one for protected refs only in
  `runner-<tenant>-protected` (the jobs that hold its release credentials carry
  PROTECTED_RUNNER_TAG). Nothing in their namespaces is shared with another tenant (token, service
  account, cache: there is no distributed cache, a job's cache lives in its own pod), the job
  pods reach DNS and the ingress controller (GitLab, Harbor, Vault) only, images come from the
  tenant's own Harbor project and `approved` only, pulled Always. Jobs cannot change the
  namespace, service account, pod labels, annotations, node selector or tolerations (no overwrite
  allowed), and a node runs one runner's jobs at a time (`shareJobNodes`). A job pod holds at most
  JOB_SERVICES services' worth of memory and local disk, whatever its `services:` (a LimitRange).
* Where jobs run (JobNodes): each runner kind's jobs (tenants' any refs' and protected refs', the
  platform's merge requests' and its deploys') on nodes of their own, which no platform service
  tolerates (stacks/config.py checks this on EKS).

Rootless image builds (the starter pipeline's buildah, as the image's unprivileged `build` user)
need what Pod Security `restricted` forbids, on the build container only; BUILD_EXCEPTIONS says
what and why, in one place. Everything else in a job pod is `restricted`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any

import pulumi
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s
import pulumiverse_time as time
from pydantic import Field

from components import gatekeeper
from components.cluster import ApiServer, ClusterHandle, Taint
from components.egress import internet, to_api_server
from components.common import ConfigModel, quantity
from components.gitlab import SLICE as GITLAB_SLICE
from components.helm import metadata, namespace, release
from components.ingress import HTTPS_PORT, LoadBalancerCidr, egress_to_platform
from components.inventory import Credential, CredentialInventory, issued_token
from components.service import ClusterParts, ControlPlaneParts, PlatformNamespace, ServiceSettings, ServiceSlice, TenantParts
from components.tenant_supply_chain import APPROVED_PROJECT, BUILDAH_IMAGE, PROTECTED_RUNNER_TAG, approved
from components.versions import GITLAB_RUNNER_HELPER_IMAGE, GITLAB_RUNNER_IMAGE, GITLAB_RUNNER_TAG, PROMOTE_IMAGE
from components.tenant import NamespacePolicy, namespace_constraints
from policy.labels import TENANT_LABEL, managed_by, pod_security_admission

NAMESPACE = "gitlab-runner"  # the platform's own runner: merge requests' jobs (and main's test jobs)
RELEASE = "gitlab-runner"  # the platform's; a tenant's is gitlab-runner-<tenant> (one URN each)
# The platform's runner for protected refs only (GitLab's `ref_protected`): the jobs that hold deploy
# rights or make what a deploy applies carry PROTECTED_TAG, which no other runner has, so they never
# run where a merge request's code runs (runner, namespace, service account, job pods' policy).
PROTECTED_NAMESPACE = "gitlab-runner-protected"
PROTECTED_TAG = "platform-protected"
TOKEN_SECRET = "gitlab-runner-token"  # runner-token (and an empty runner-registration-token, as the chart reads it)
CA_SECRET = "gitlab-runner-ca"  # <gitlab host>.crt: the runner and its jobs trust the platform CA
TOKEN_ROTATION_DAYS = 30
RUNNER_ID_ANNOTATION = "platform.io/runner-id"  # a new runner (rotation) restarts the runner pod
JOB_LABEL = "platform.io/runner-job"  # on every job pod: what the job NetworkPolicy selects
# The platform's jobs on the internet: PyPI, Pulumi Cloud and its plugins, AWS (443); Debian's
# archive, whose packages apt verifies by signature, for promote-image's skopeo (80).
INTERNET_PORTS = (HTTPS_PORT, 80)
MAXIMUM_TIMEOUT = 3 * 3600  # a job runs 3 hours at most, whatever the project says
# How long a job's pod may wait for a node (the runner's default, 180 s, fails the job): while every
# CI node runs another tenant's jobs, or while the Cluster Autoscaler adds one.
POD_START_TIMEOUT = 1800
MANAGER_CPU_LIMIT = "500m"  # the runner itself (sizing sets no CPU limit; the tenant constraints want one)
# Its local disk (logs; config.toml is in memory): the namespace's LimitRange refuses a pod without a limit.
MANAGER_DISK = {"requests": "100Mi", "limits": "1Gi"}

# Job containers: requests and limits (the platform's constraints require them on every container).
# Local disk too: past its limit the kubelet evicts that job, not its neighbours on a full node (a
# build holds its image's layers; the helper clones, and packs caches and artifacts).
BUILD_RESOURCES = {"cpu_request": "500m", "memory_request": "1Gi", "ephemeral_storage_request": "1Gi",
                   "cpu_limit": "2", "memory_limit": "4Gi", "ephemeral_storage_limit": "20Gi"}
HELPER_RESOURCES = {"cpu_request": "100m", "memory_request": "128Mi", "ephemeral_storage_request": "100Mi",
                    "cpu_limit": "500m", "memory_limit": "256Mi", "ephemeral_storage_limit": "2Gi"}
SERVICE_RESOURCES = {"cpu_request": "100m", "memory_request": "128Mi", "ephemeral_storage_request": "100Mi",
                     "cpu_limit": "1", "memory_limit": "1Gi", "ephemeral_storage_limit": "2Gi"}
JOB_USER = 1000  # the buildah image's `build` user, with its subordinate id ranges in /etc/subuid
# A job's `services:`: the Kubernetes executor makes a container of each at SERVICE_RESOURCES and caps
# their number nowhere (Runner 18.9 executors/kubernetes/kubernetes.go preparePodServices; `services_limit`
# is the Docker executor's, common/config.go), so the per-container limits bound a pod only with this: a
# job pod may hold this many services' worth (job_pod_ceiling), by its namespace's LimitRange.
JOB_SERVICES = 4

# What a tenant job's build container needs beyond Pod Security `restricted`, and why; nothing
# else in any job pod departs from `restricted`. Rootless buildah (and any rootless builder) runs
# each RUN step in a user namespace of its own.
BUILD_EXCEPTIONS: dict[str, str] = {
    "seccompProfile Unconfined":
        "the runtime's default profile refuses unshare(CLONE_NEWUSER) and mount, which a rootless build needs",
    "appArmorProfile Unconfined":
        "the runtime's default AppArmor profile refuses mounts in that user namespace (nodes without AppArmor ignore it)",
    "allowPrivilegeEscalation true":
        "newuidmap and newgidmap map the build user's subordinate ids with file capabilities, which no_new_privs voids",
    "capabilities SETUID, SETGID added":
        "the bounding set must keep them for newuidmap and newgidmap (every other capability is dropped)",
}
# The Pod Security level the tenants' runner namespaces enforce: `baseline` and `restricted` both
# refuse an Unconfined profile, so `privileged`, warned and audited against `restricted`. The
# pods there are the runner's own (restricted) and the job pods its config.toml shapes; tenants
# get no access to the namespace.
BUILD_POD_SECURITY = "privileged"

RESTRICTED_CONTAINER = {
    "run_as_non_root": True,
    "allow_privilege_escalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}

# The Kubernetes executor's rights in its own namespace (docs.gitlab.com/runner/executors/kubernetes).
EXECUTOR_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/exec", "pods/attach"], "verbs": ["create", "delete", "get", "patch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "get", "update"]},
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list", "watch"]},
]


def job_pod_ceiling() -> dict[str, str]:
    """The memory and local disk a job pod's containers may hold together (a LimitRange `Pod` max): the
    build, the helper and JOB_SERVICES services at their limits."""
    sizes = (BUILD_RESOURCES, HELPER_RESOURCES, *[SERVICE_RESOURCES] * JOB_SERVICES)
    return {resource: f"{sum(quantity(size[f'{key}_limit']) or 0 for size in sizes) / 2**20:g}Mi"
            for resource, key in (("memory", "memory"), ("ephemeral-storage", "ephemeral_storage"))}


def tenant_namespace(tenant: str) -> str:
    """Where a tenant's runner and its job pods run, on the control-plane cluster (`tenant`: a
    tenant's name, or protected_owner's for its runner for protected refs)."""
    return f"runner-{tenant}"


def protected_owner(tenant: str) -> str:
    """The owner of a tenant's runner for protected refs (stacks/config.py: no tenant is named so)."""
    return f"{tenant}-protected"


class JobNodes(ConfigModel):
    """Nodes of a runner's jobs, apart from the platform's services and every other runner's jobs:
    `platform:services.gitlabRunner.jobNodes` for the tenants' branches (a build container runs with
    seccomp and AppArmor unconfined, and SETUID/SETGID), `releaseJobNodes` for the tenants' protected
    refs (their release credentials), `platformJobNodes` for the platform repository's merge
    requests (a branch's code), `deployJobNodes` for its protected refs (every deploy right)."""

    node_selector: dict[str, str] = Field(min_length=1)  # labels only those nodes carry
    taints: list[Taint] = Field(min_length=1)  # what keeps every other pod off them; jobs tolerate it


@dataclass(frozen=True)
class RunnerSettings:
    """platform:services.gitlabRunner, as every runner is declared with it."""

    concurrent: int = 4  # jobs at once, per runner
    job_nodes: JobNodes | None = field(default=None, hash=False)  # tenants' any refs' jobs; None: on any node
    release_job_nodes: JobNodes | None = field(default=None, hash=False)  # tenants' protected refs' jobs
    platform_job_nodes: JobNodes | None = field(default=None, hash=False)  # the platform's merge requests'
    deploy_job_nodes: JobNodes | None = field(default=None, hash=False)  # the platform's protected refs'
    # False: a node runs one tenant runner's jobs at a time (an escaped build finds no other's job there).
    share_job_nodes: bool = False
    # Where job pods reach the platform's load balancer when the cluster does not short-circuit
    # its address to the ingress controller's pods: `loadBalancerCidrs`, and its own addresses where the
    # program owns them (`reaching`: the control plane's NLB on EKS). Empty: pods only.
    load_balancer_cidrs: tuple[pulumi.Input[str], ...] = ()
    chart_version: str | None = None
    resources: dict[str, Any] = field(default_factory=dict, hash=False)  # the runner manager's container

    def reaching(self, addresses: Sequence[pulumi.Input[str]]) -> RunnerSettings:
        """These settings, with the load balancer's own `addresses` (components/ingress.py `Ingress.addresses`)."""
        return replace(self, load_balancer_cidrs=(*self.load_balancer_cidrs, *addresses))


@dataclass(frozen=True)
class RunnerScope:
    """What a runner serves: GitLab's runner type and the group or project it is registered on."""

    runner_type: str  # group_type or project_type
    description: str
    group_id: pulumi.Input[int] | None = None
    project_id: pulumi.Input[int] | None = None
    protected_tag: str | None = None  # set: protected refs' jobs only, and only those with this tag


@dataclass(frozen=True)
class GitLabRunnerArgs:
    owner: str  # "platform" or the tenant's name: in descriptions and the inventory
    namespace: str
    scope: RunnerScope
    gitlab_url: str  # https://gitlab.<domain>
    gitlab_provider: pulumi.ProviderResource
    settings: RunnerSettings
    ca_bundle: pulumi.Input[str]  # PEM the platform's endpoints are signed by; "" means public roots
    inventory: CredentialInventory | None
    # Tenants: images from Harbor only (the runner's own, the helper and the jobs'), rootless builds;
    # None: the platform's runner, which pulls the runner images from their registry (it promotes them).
    harbor_host: str | None = None
    platform_namespace: PlatformNamespace | None = None  # the platform's runner: its exempt namespace
    tenant: str | None = None  # a tenant's runner: its namespace is labelled and constrained as its own
    gatekeeper_templates: dict[str, pulumi.Resource] = field(default_factory=dict)
    admission: pulumi.Resource | None = None  # the control plane's policies in force: a tenant's jobs wait for them
    depends_on: tuple[pulumi.Resource, ...] = ()  # what the runner needs up (GitLab's release)
    api_servers: tuple[ApiServer, ...] = ()  # the platform's runner: where its Pulumi jobs reach the clusters
    job_nodes: JobNodes | None = None  # where this runner's jobs run; None: any node


class GitLabRunner(pulumi.ComponentResource):
    """One runner: its registration in GitLab, its token Secret, its namespace and the chart."""

    runner: gitlab.UserRunner
    release: k8s.helm.v3.Release

    def __init__(self, name: str, cluster: ClusterHandle, args: GitLabRunnerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:gitlab_runner:GitLabRunner", name, None, opts)
        rotation = time.Rotating(f"{name}-token-rotation", rotation_days=TOKEN_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self))
        scope = args.scope
        self.runner = gitlab.UserRunner(
            f"{name}-runner",
            runner_type=scope.runner_type,
            group_id=scope.group_id,
            project_id=scope.project_id,
            description=scope.description,
            # The starter pipelines carry no tags: the scope, not a tag, picks the runner.
            untagged=scope.protected_tag is None,
            tag_lists=[scope.protected_tag] if scope.protected_tag else None,
            locked=True,
            access_level="ref_protected" if scope.protected_tag else "not_protected",
            maximum_timeout=MAXIMUM_TIMEOUT,
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.gitlab_provider, depends_on=[rotation, *args.depends_on],
                replacement_trigger=rotation.rfc3339,
            ),
        )
        ns, constraints = self._namespace(name, cluster, args)
        in_ns = pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns])
        token = k8s.core.v1.Secret(
            f"{name}-token",
            metadata=metadata(TOKEN_SECRET, ns),
            type="Opaque",
            string_data={"runner-registration-token": "", "runner-token": self.runner.token},
            opts=in_ns,
        )
        host = args.gitlab_url.removeprefix("https://")
        ca = k8s.core.v1.Secret(
            f"{name}-ca", metadata=metadata(CA_SECRET, ns), type="Opaque", string_data={f"{host}.crt": args.ca_bundle}, opts=in_ns,
        )
        # A runner takes jobs as soon as it runs, and admission is checked once, when a job's pod is
        # created: the first jobs wait for everything that holds them.
        # gitlab-runner-<owner>: a tenant's name never starts with "platform-" (stacks/config.py), so none is the platform's.
        release_name = RELEASE if args.owner == "platform" else f"{RELEASE}-{args.owner}"
        holds = [self._job_traffic(name, ns, args, in_ns), self._manager_traffic(name, ns, args, release_name, cluster, in_ns),
                 self._job_ceiling(name, ns, in_ns), *constraints]
        self.release = release(
            release_name, "gitlab-runner", ns, chart_values(args, self.runner.id), cluster, self,
            version=args.settings.chart_version, depends_on=[token, ca, *holds],
        )
        if args.inventory is not None:
            args.inventory.register(token_credential(name, args))
        self.register_outputs({"runnerId": self.runner.id, "namespace": args.namespace})

    def _namespace(self, name: str, cluster: ClusterHandle, args: GitLabRunnerArgs) -> tuple[k8s.core.v1.Namespace, list[pulumi.Resource]]:
        """The runner's namespace, and what holds a tenant's jobs there (Gatekeeper and the namespace's constraints)."""
        if args.platform_namespace is not None:
            return namespace(args.platform_namespace, cluster, self, pod_security_admission("restricted")), []
        assert args.tenant is not None
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace, labels={**managed_by(), TENANT_LABEL: args.tenant, **pod_security_admission(BUILD_POD_SECURITY)},
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=cluster.policies_enforced),
        )
        assert args.harbor_host is not None
        registries = [f"{args.harbor_host}/{args.tenant}/", f"{args.harbor_host}/{APPROVED_PROJECT}/"]
        # Images from the tenant's own project and `approved` only, pulled Always; RoleBindings for
        # the namespace's own service accounts only (the runner's): as in its workload namespaces.
        if not args.gatekeeper_templates:  # Gatekeeper runs on the control plane
            return ns, []
        constraints = namespace_constraints(
            name, args.namespace, NamespacePolicy(registries, args.gatekeeper_templates), [], [],
            pulumi.ResourceOptions(parent=self, provider=cluster.provider, depends_on=[ns]),
        )
        return ns, [*constraints, *([args.admission] if args.admission is not None else [])]

    def _job_traffic(
        self, name: str, ns: k8s.core.v1.Namespace, args: GitLabRunnerArgs, in_ns: pulumi.ResourceOptions
    ) -> k8s.networking.v1.NetworkPolicy:
        """Job pods: nothing in. Out: DNS and the ingress controller (GitLab, Harbor, Vault), and for the
        platform's, which also runs any branch's merge-request jobs, what its Pulumi jobs need besides
        (pipeline_egress): never a platform service's pod directly."""
        egress = egress_to_platform([HTTPS_PORT], args.settings.load_balancer_cidrs)
        return k8s.networking.v1.NetworkPolicy(
            f"{name}-jobs",
            metadata=metadata("runner-jobs", ns),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={JOB_LABEL: args.owner}),
                policy_types=["Ingress", "Egress"],
                egress=egress if args.tenant is not None else [*egress, *pipeline_egress(args.api_servers)],
            ),
            opts=in_ns,
        )


    def _job_ceiling(self, name: str, ns: k8s.core.v1.Namespace, in_ns: pulumi.ResourceOptions) -> k8s.core.v1.LimitRange:
        """A job pod holds at most job_pod_ceiling()'s memory and local disk, whatever its `services:`: past
        a node's, the kubelet's evictions and the kernel's OOM killer would take what shares the node (the
        platform's services where jobs have no nodes of their own, other tenants' jobs with shareJobNodes)."""
        return k8s.core.v1.LimitRange(
            f"{name}-job-ceiling",
            metadata=metadata("runner-job-ceiling", ns),
            spec=k8s.core.v1.LimitRangeSpecArgs(limits=[k8s.core.v1.LimitRangeItemArgs(type="Pod", max=job_pod_ceiling())]),
            opts=in_ns,
        )

    def _manager_traffic(
        self, name: str, ns: k8s.core.v1.Namespace, args: GitLabRunnerArgs, release_name: str, cluster: ClusterHandle,
        in_ns: pulumi.ResourceOptions,
    ) -> k8s.networking.v1.NetworkPolicy:
        """The manager (the chart's Deployment, label `app: <release>`) runs no job's code but parses what
        GitLab sends and holds the runner's token: out, DNS and GitLab's public name (the ingress
        controller), and the API server, where the Kubernetes executor makes, attaches to and deletes its
        jobs' pods. Nothing in: it listens only for its metrics, which nothing scrapes."""
        return k8s.networking.v1.NetworkPolicy(
            f"{name}-manager",
            metadata=metadata("runner-manager", ns),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"app": release_name}),
                policy_types=["Ingress", "Egress"],
                egress=[*egress_to_platform([HTTPS_PORT], args.settings.load_balancer_cidrs), *to_api_server(cluster.api_server)],
            ),
            opts=in_ns,
        )


def pipeline_egress(api_servers: Sequence[ApiServer]) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """The platform pipeline's jobs beyond the platform's public names: the internet on INTERNET_PORTS
    (no private range, so no pod, node or private endpoint) and each cluster's API server on its port
    only (where its address is a name, any address on that port), never the instance metadata."""
    return [internet(INTERNET_PORTS), *(rule for s in api_servers for rule in to_api_server(s))]


def _toml(value: Any) -> str:
    """A TOML value (JSON's strings, numbers, booleans and arrays are TOML's)."""
    return json.dumps(value)


def _key(key: str) -> str:
    """A TOML key: bare where it can be, else quoted (`"platform.io/runner-job"`)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _table(name: str, values: dict[str, Any]) -> list[str]:
    """`[name]` with its plain keys, then its sub-tables (dict values) as `[name.key]`."""
    lines = [f"[{name}]", *(f"  {_key(k)} = {_toml(v)}" for k, v in values.items() if not isinstance(v, dict))]
    for key, sub in values.items():
        if isinstance(sub, dict):
            lines += _table(f"{name}.{key}", sub)
    return lines


def job_pod_spec_patch(builds: bool, alone_as: str | None = None) -> str:
    """The strategic-merge patch the runner applies to every job pod (FF_USE_ADVANCED_POD_SPEC_
    CONFIGURATION): the seccomp and AppArmor profiles, which Runner 18.9's security-context
    settings do not cover. The pod's RuntimeDefault holds for every container but a tenant's
    build container (BUILD_EXCEPTIONS). `alone_as`: the job refuses a node where a job pod of
    another owner runs, and (the scheduler checks both ways) keeps those off its own node."""
    patch: dict[str, Any] = {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}
    if builds:
        patch["containers"] = [{
            "name": "build",
            "securityContext": {"seccompProfile": {"type": "Unconfined"}, "appArmorProfile": {"type": "Unconfined"}},
        }]
    if alone_as is not None:
        others = {"matchExpressions": [{"key": JOB_LABEL, "operator": "Exists"},
                                       {"key": JOB_LABEL, "operator": "NotIn", "values": [alone_as]}]}
        patch["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": others, "namespaceSelector": {}, "topologyKey": "kubernetes.io/hostname"},  # {}: every namespace
        ]}}
    return json.dumps(patch, sort_keys=True)


def runner_config(args: GitLabRunnerArgs) -> str:
    """config.toml's [[runners]] entry: the Kubernetes executor, its namespace, images and pod shape."""
    builds = args.harbor_host is not None
    build_context: dict[str, Any] = (
        {"run_as_non_root": True, "privileged": False, "allow_privilege_escalation": True,
         "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID"]}}
        if builds else dict(RESTRICTED_CONTAINER)
    )
    kubernetes: dict[str, Any] = {
        "namespace": args.namespace,
        "namespace_overwrite_allowed": "",
        "service_account_overwrite_allowed": "",
        "bearer_token_overwrite_allowed": False,
        "pod_annotations_overwrite_allowed": "",
        "pod_labels_overwrite_allowed": "",
        "node_selector_overwrite_allowed": "",
        "node_tolerations_overwrite_allowed": "",
        "automount_service_account_token": False,  # jobs never talk to the Kubernetes API
        "poll_timeout": POD_START_TIMEOUT,
        "pull_policy": ["always"],
        "allowed_pull_policies": ["always"],
        **{(f"{prefix}{k}" if prefix else k): v for prefix, sizes in (("", BUILD_RESOURCES), ("helper_", HELPER_RESOURCES),
                                                                       ("service_", SERVICE_RESOURCES)) for k, v in sizes.items()},
    }
    if not builds:
        kubernetes["image"] = PROMOTE_IMAGE.ref  # the platform pipeline's jobs each name theirs
    else:
        assert args.harbor_host is not None and args.tenant is not None
        images = [f"{args.harbor_host}/{APPROVED_PROJECT}/**/*", f"{args.harbor_host}/{args.tenant}/**/*"]
        kubernetes |= {
            "image": approved(args.harbor_host, BUILDAH_IMAGE),
            "helper_image": approved(args.harbor_host, f"{GITLAB_RUNNER_HELPER_IMAGE}:x86_64-v{GITLAB_RUNNER_TAG}"),
            "allowed_images": images,
            "allowed_services": images,
        }
    if args.job_nodes is not None:
        nodes = args.job_nodes
        kubernetes |= {
            "node_selector": dict(nodes.node_selector),
            "node_tolerations": {f"{t.key}={t.value}" if t.value else t.key: t.effect for t in nodes.taints},
        }
    kubernetes |= {
        "pod_labels": {JOB_LABEL: args.owner},
        "pod_security_context": {"run_as_non_root": True, "run_as_user": JOB_USER, "run_as_group": JOB_USER, "fs_group": JOB_USER},
        "build_container_security_context": build_context,
        "helper_container_security_context": dict(RESTRICTED_CONTAINER),
        "init_permissions_container_security_context": dict(RESTRICTED_CONTAINER),
        "service_container_security_context": dict(RESTRICTED_CONTAINER),
    }
    # A tenant runner's jobs never beside another runner's: another tenant's, or its tenant's other one.
    alone_as = args.owner if args.tenant is not None and not args.settings.share_job_nodes else None
    lines = [
        "[[runners]]",
        f"  name = {_toml(f'{args.owner} ({args.namespace})')}",
        '  executor = "kubernetes"',
        # Jobs run as JOB_USER, whom most tool images (trivy, git) do not list: a writable home.
        f"  environment = {_toml(['HOME=/tmp'])}",
        *_table("runners.feature_flags", {"FF_USE_ADVANCED_POD_SPEC_CONFIGURATION": True}),
        *_table("runners.kubernetes", kubernetes),
        "[[runners.kubernetes.pod_spec]]",
        '  name = "platform-security-profiles"',
        '  patch_type = "strategic"',
        f"  patch = {_toml(job_pod_spec_patch(builds, alone_as))}",
    ]
    return "\n".join(lines) + "\n"


def chart_values(args: GitLabRunnerArgs, runner_id: pulumi.Input[str]) -> dict[str, Any]:
    """The gitlab-runner chart's values: no secret in them (the token is the Secret `runners.secret` names)."""
    tenant_images = args.harbor_host is not None
    values: dict[str, Any] = {
        "gitlabUrl": f"{args.gitlab_url}/",
        # GitLab owns the registration (Pulumi): unregistering on shutdown would delete the runner.
        "unregisterRunners": False,
        "concurrent": args.settings.concurrent,
        "certsSecretName": CA_SECRET,
        "imagePullPolicy": "Always",
        "rbac": {"create": True, "rules": EXECUTOR_RULES},
        "podAnnotations": {RUNNER_ID_ANNOTATION: runner_id},
        "podSecurityContext": {"runAsUser": 100, "fsGroup": 65533, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "securityContext": {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False, "runAsNonRoot": True, "privileged": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
        },
        "runners": {"secret": TOKEN_SECRET, "executor": "kubernetes", "config": runner_config(args)},
    }
    if tenant_images:
        assert args.harbor_host is not None
        values["image"] = {
            "registry": args.harbor_host, "image": f"{APPROVED_PROJECT}/{GITLAB_RUNNER_IMAGE}", "tag": f"alpine-v{GITLAB_RUNNER_TAG}",
        }
    resources = args.settings.resources or {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    values["resources"] = {kind: {**({"cpu": MANAGER_CPU_LIMIT} if kind == "limits" else {}), "ephemeral-storage": MANAGER_DISK[kind],
                                  **resources.get(kind, {})} for kind in ("requests", "limits")}
    return values


def token_credential(name: str, args: GitLabRunnerArgs) -> Credential:
    return issued_token(
        f"GitLab runner authentication token of {args.owner}",
        issuer="GitLab (pulumi-gitlab UserRunner)",
        holder=f"the gitlab-runner in {args.namespace} (Secret {TOKEN_SECRET})",
        scope=f"pick up and report the jobs of the {args.scope.description}",
        days=TOKEN_ROTATION_DAYS,
        lifetime=f"{TOKEN_ROTATION_DAYS} days (GitLab sets it no expiry of its own: the rotation ends it)",
        rotation=(f"a new runner on the first `pulumi up --refresh` after {TOKEN_ROTATION_DAYS} days; "
                  "the old one is deleted, which revokes its token"),
        resources=(f"{name}-runner",),
    )


def settings_of(settings: ServiceSettings) -> RunnerSettings:
    options = settings.options
    return RunnerSettings(
        concurrent=options.get("concurrent", RunnerSettings.concurrent),
        job_nodes=options.get("job_nodes"),
        release_job_nodes=options.get("release_job_nodes"),
        platform_job_nodes=options.get("platform_job_nodes"),
        deploy_job_nodes=options.get("deploy_job_nodes"),
        share_job_nodes=options.get("share_job_nodes", RunnerSettings.share_job_nodes),
        load_balancer_cidrs=tuple(options.get("load_balancer_cidrs", ())),
        chart_version=settings.chart_version,
        resources=settings.resources,
    )


def _described(scope: str, tag: str | None) -> str:
    """A runner's description in GitLab: what it serves, and for protected refs, which tag."""
    return scope + (f" (protected refs, tag {tag})" if tag else "")


@dataclass(frozen=True)
class PlatformRunners:
    """The platform repository's runners: one for any ref (merge requests), one for protected refs."""

    any_ref: GitLabRunner
    protected: GitLabRunner


def declare(parts: ControlPlaneParts, settings: ServiceSettings) -> PlatformRunners | None:
    """The platform repository's own runners, when GitLab is on."""
    platform_gitlab = parts.get(GITLAB_SLICE)
    project_id = settings.options.get("platform_project_id")
    if platform_gitlab is None or project_id is None:
        return None
    path = parts.settings.pipeline_project
    runners = settings_of(settings).reaching(parts.ingress.addresses)

    def runner(name: str, owner: str, namespace: PlatformNamespace, tag: str | None, nodes: JobNodes | None) -> GitLabRunner:
        description = _described(f"project {path}", tag)
        return GitLabRunner(name, parts.cluster, GitLabRunnerArgs(
            owner=owner,
            namespace=namespace.name,
            scope=RunnerScope("project_type", description, project_id=project_id, protected_tag=tag),
            gitlab_url=platform_gitlab.url,
            gitlab_provider=platform_gitlab.provider,
            settings=runners,
            ca_bundle=parts.tls.ca_bundle,
            inventory=parts.inventory,
            platform_namespace=namespace,
            depends_on=(platform_gitlab.release,),
            api_servers=parts.settings.api_servers,
            job_nodes=nodes,
        ))

    return PlatformRunners(
        runner("platform-runner", "platform", SLICE.namespace, None, runners.platform_job_nodes),
        runner("platform-protected-runner", "platform-protected", PROTECTED_PLATFORM_NAMESPACE, PROTECTED_TAG, runners.deploy_job_nodes),
    )


def on_cluster(parts: ClusterParts, settings: ServiceSettings) -> RunnerSettings:
    """The control plane's runner settings, as the tenants' runners read them (`TenantParts.addon`)."""
    return settings_of(settings)


@dataclass(frozen=True)
class TenantRunners:
    """A tenant's group runners: one for any ref (branch builds), one for protected refs (its releases)."""

    any_ref: GitLabRunner
    protected: GitLabRunner


def tenant(parts: TenantParts) -> TenantRunners | None:
    """The tenant's group runners, their jobs in `runner-<tenant>` and `runner-<tenant>-protected` on the control plane."""
    settings = parts.addon("control-plane", SLICE)
    platform = parts.platform
    repositories = parts.get(GITLAB_SLICE)  # the tenant's group (GitLab's half)
    if settings is None or platform.gitlab is None or platform.harbor is None or repositories is None:
        return None
    settings = settings.reaching(platform.ingress_addresses)
    group = repositories.group
    # Both runners' group and policies in force: one each per tenant.
    group_id = group.id.apply(int)
    admission = gatekeeper.in_force(platform.addons.get("control-plane", {}))

    def runner(owner: str, tag: str | None, nodes: JobNodes | None) -> GitLabRunner:
        description = _described(f"group {parts.name}", tag)
        return GitLabRunner(
            f"{owner}-runner",
            platform.clusters["control-plane"],
            GitLabRunnerArgs(
                owner=owner,
                namespace=tenant_namespace(owner),
                scope=RunnerScope("group_type", description, group_id=group_id, protected_tag=tag),
                gitlab_url=platform.gitlab.url,
                gitlab_provider=platform.gitlab.provider,
                settings=settings,
                ca_bundle=platform.ca_bundle,
                inventory=platform.inventory,
                harbor_host=platform.harbor.host,
                tenant=parts.name,
                gatekeeper_templates=platform.gatekeeper_templates,
                admission=admission,
                depends_on=(group,),
                job_nodes=nodes,
            ),
            parts.opts,
        )

    return TenantRunners(
        runner(parts.name, None, settings.job_nodes),
        runner(protected_owner(parts.name), PROTECTED_RUNNER_TAG, settings.release_job_nodes),
    )


PROTECTED_PLATFORM_NAMESPACE = PlatformNamespace(
    PROTECTED_NAMESPACE, "the platform repository's runner for protected refs: main's plans and deploys, schedules, promotions",
)
SLICE: ServiceSlice[PlatformRunners | None] = ServiceSlice(
    key="gitlab_runner",
    namespace=PlatformNamespace(NAMESPACE, "the platform repository's runner for any ref: its jobs run the platform's own pipeline"),
    chart="gitlab-runner",
    declare=declare,
    on_cluster=on_cluster,
    clusters=("control-plane",),
    tenant=tenant,
    options={
        "concurrent": (Annotated[int, Field(ge=1, le=50)], 4),
        "load_balancer_cidrs": (list[LoadBalancerCidr], []),
        "job_nodes": (JobNodes | None, None),
        "release_job_nodes": (JobNodes | None, None),
        "platform_job_nodes": (JobNodes | None, None),
        "deploy_job_nodes": (JobNodes | None, None),
        "share_job_nodes": (bool, False),
        # The GitLab id of platform:pipeline.projectPath (its Settings > General page): the repository
        # exists before its runner can (it runs `pulumi up`); unset, the platform has no runner yet.
        "platform_project_id": (Annotated[int, Field(ge=1)] | None, None),
    },
)
