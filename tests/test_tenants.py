"""Tenants from stack config: each tenant's footprint, who gets what, isolation, and stable diffs."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from benchmarks.render_scale import stack_file, synthetic_tenants
from platformctl.diff import diff_renders
from platformctl import render as render_module
from platformctl.render import enclosing, read_stack_file, render
from stacks.config import Tenant as TenantConfig
from stacks.config import load_platform_config

ROOT = Path(__file__).resolve().parent.parent
ENVIRONMENTS = ("dev", "prod")
ADMIN, EDIT = "platform-tenant-admin", "platform-tenant-edit"
ROLE_CLUSTER_ROLES = {"owners": {"dev": ADMIN, "prod": ADMIN}, "developers": {"dev": ADMIN, "prod": "view"},
                      "ops": {"dev": ADMIN, "prod": EDIT}}
GITLAB_ACCESS = {"owners": "owner", "developers": "developer", "ops": "developer"}
HARBOR_ROLES = {"owners": "guest", "developers": "guest", "ops": "guest"}  # only CI's robot writes (tests/test_supply_attacks.py)


def dev_config():
    raw, secrets = read_stack_file(ROOT / "Pulumi.dev.yaml")
    return load_platform_config(raw, stack="dev", source="Pulumi.dev.yaml", secret_keys=secrets)


def tenant_of(plan: dict) -> dict[str, str | None]:
    """URN -> the tenant whose component (transitively) holds it."""
    return enclosing(plan, "platform:tenant:Tenant")


def resources_of(plan: dict, tenant: str) -> list[dict]:
    owners = tenant_of(plan)
    return [r for r in plan["resources"] if owners[r["urn"]] == tenant and r["custom"]]


def expected_types(tenant: TenantConfig) -> Counter:
    """What the tenants issue lists for one tenant on the dev stack (kubeconfig clusters), by type."""
    users = {*tenant.owners, *tenant.developers, *tenant.ops}
    roles_with_members = sum(1 for role in ("owners", "developers", "ops") if getattr(tenant, role))
    vcluster = tenant.isolation == "vcluster"
    per_environment = {
        # Kubernetes: namespace, access, quota, limits, default-deny policy (a vCluster binds inside).
        "kubernetes:core/v1:Namespace": 1,
        "kubernetes:core/v1:ResourceQuota": 1,
        "kubernetes:core/v1:LimitRange": 1,
        "kubernetes:networking.k8s.io/v1:NetworkPolicy": 1,
        # ...and ArgoCD's federated user may deploy into it (a vCluster binds both inside), and the host's Argo
        # Rollouts controller runs its Rollouts there (a vCluster's own controller runs them inside).
        "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": 0 if vcluster else roles_with_members + 2,
        # Its own images, RoleBinding subjects and ingress hosts.
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformAllowedRegistries": 1,
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantBindingSubjects": 1,
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantIngressHosts": 1,
        # ...and Services, token Secrets and volume claims that stay inside it.
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantObjects": 1,
        # ...and analyses the Rollouts controller runs by Job or with the cluster's Prometheus only.
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantAnalysis": 1,
        "kubernetes:helm.sh/v3:Release": 1 if vcluster else 0,
        "kubernetes:core/v1:ConfigMap": 1 if vcluster else 0,
        # A vCluster joins federation: its kube-oidc-proxy's certificate and TLS Secret, the
        # traffic its control plane and proxy need, OpenUnison's target and token URL, and
        # ArgoCD's cluster Secret (both on the control plane, but the tenant's).
        "tls:index/privateKey:PrivateKey": 1 if vcluster else 0,
        "tls:index/selfSignedCert:SelfSignedCert": 1 if vcluster else 0,
        "kubernetes:openunison.tremolo.io/v1:Target": 1 if vcluster else 0,
        "kubernetes:openunison.tremolo.io/v2:Application": 1 if vcluster else 0,
        "kubernetes:core/v1:Secret": 2 if vcluster else 0,
        # Secrets: the namespace's Vault identity, its store, the pull secret, the default account.
        "kubernetes:core/v1:ServiceAccount": 1,
        "kubernetes:external-secrets.io/v1:SecretStore": 1,
        "kubernetes:external-secrets.io/v1:ExternalSecret": 1,
        "kubernetes:core/v1:ServiceAccountPatch": 1,
        "vault:kubernetes/authBackendRole:AuthBackendRole": 1,
        "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding": 1,  # its token may review itself
        # ArgoCD and the Gatekeeper scope.
        "kubernetes:argoproj.io/v1alpha1:AppProject": 1,
        "kubernetes:argoproj.io/v1alpha1:ApplicationSet": 1,
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantArgoScope": 1,
        # The image verifier's policy for its Harbor project, on the environment's cluster.
        "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy": 1,
    }
    once = {
        # Vault: read, write and sign policies, the owners' group, the CI role, the cosign key.
        "vault:index/policy:Policy": 5,  # read per environment, write (owners), ci, sign
        "vault:transit/secretBackendKey:SecretBackendKey": 1,
        "vault:generic/endpoint:Endpoint": 2,  # the key's scheduled rotation, and the pruning after it
        "vault:identity/group:Group": 1,
        "vault:identity/groupAlias:GroupAlias": 1,
        "vault:jwt/authBackendRole:AuthBackendRole": 1,
        # GitLab: group, app/ops/ops-dev, members, protected main, CI variables, deploy keys, hooks.
        "gitlab:index/group:Group": 1,
        "gitlab:index/project:Project": 3,
        "gitlab:index/groupMembership:GroupMembership": len(users),
        "gitlab:index/branchProtection:BranchProtection": 3,
        "gitlab:index/tagProtection:TagProtection": 1,  # app's release tags: owners only
        "gitlab:index/projectVariable:ProjectVariable": 3 * 5,
        "gitlab:index/projectJobTokenScopes:ProjectJobTokenScopes": 3,  # each project's job token allowlist: itself only
        "gitlab:index/repositoryFile:RepositoryFile": 1 + 3 + 3,  # starter: app CI; ops and ops-dev CI + dev/ and prod/ manifests
        "tls:index/privateKey:PrivateKey": 2,
        "gitlab:index/deployKey:DeployKey": 2,
        "gitlab:index/projectHook:ProjectHook": 2,
        "kubernetes:core/v1:Secret": 2,  # ArgoCD repository secrets
        # Harbor: project, members by role, push and pull robots; their secrets and the keys' in Vault.
        "harbor:index/project:Project": 1,
        "harbor:index/projectMemberGroup:ProjectMemberGroup": 3 + len(dev_config().identity.system_approvers),
        "harbor:index/robotAccount:RobotAccount": 2,
        "harbor:index/immutableTagRule:ImmutableTagRule": 1,
        "harbor:index/retentionPolicy:RetentionPolicy": 1,
        "vault:kv/secretV2:SecretV2": 2 + 2,
        "time:index/rotating:Rotating": 2 + 2 + 1,  # robots, deploy keys and the cosign key
        # OpenUnison: the role groups in members' tokens (a ConfigMap its JIT reads).
        "kubernetes:core/v1:ConfigMap": 1,
        # Velero: its prod namespace's backup Schedule (platform:services.velero.environments).
        "kubernetes:velero.io/v1:Schedule": 1,
    }
    expected = Counter({t: n * len(ENVIRONMENTS) for t, n in per_environment.items()})
    # A virtual cluster's control plane, its federation proxy and its Argo Rollouts (to Prometheus).
    expected["kubernetes:networking.k8s.io/v1:NetworkPolicy"] += 3 * len(ENVIRONMENTS) if vcluster else 0
    # ...and the host's query proxy of each virtual cluster (its analyses pass no host constraint):
    # in the Prometheus namespace, reachable from that controller only (components/prometheus_query.py).
    for kind in ("kubernetes:apps/v1:Deployment", "kubernetes:core/v1:Service", "kubernetes:networking.k8s.io/v1:NetworkPolicy"):
        expected[kind] += len(ENVIRONMENTS) if vcluster else 0
    expected.update(once)
    # GitLab Runner: two group runners (any ref; protected refs) and, for each on the control plane,
    # its namespace with its own image and binding constraints (and no ingress hosts), the job
    # and manager traffic policies, the job pods' ceiling, token and CA Secrets, rotation and chart.
    expected.update({kind: 2 for kind in (
        "gitlab:index/userRunner:UserRunner",
        "kubernetes:core/v1:Namespace",
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformAllowedRegistries",
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantBindingSubjects",
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantIngressHosts",
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantObjects",
        "kubernetes:constraints.gatekeeper.sh/v1beta1:PlatformTenantAnalysis",
        "kubernetes:networking.k8s.io/v1:NetworkPolicy",
        "kubernetes:core/v1:LimitRange",
        "time:index/rotating:Rotating",
        "kubernetes:helm.sh/v3:Release",
    )})
    expected["kubernetes:core/v1:Secret"] += 2 * 2
    expected["kubernetes:networking.k8s.io/v1:NetworkPolicy"] += 2  # each runner's manager's
    return +expected  # drop zero counts


@pytest.fixture(scope="module")
def dev_plan(renders: dict) -> dict:
    return renders["dev"].plan


def test_the_dev_stack_has_three_tenants_one_of_them_a_vcluster() -> None:
    tenants = dev_config().tenants
    assert len(tenants) == 3 and [t.isolation for t in tenants].count("vcluster") == 1


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_each_tenant_has_exactly_the_resources_the_issue_lists(dev_plan: dict, tenant: TenantConfig) -> None:
    actual = Counter(r["type"] for r in resources_of(dev_plan, tenant.name))
    assert actual == expected_types(tenant)


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_tenant_resource_names_derive_from_the_tenant_name(dev_plan: dict, tenant: TenantConfig) -> None:
    own = re.compile(rf"(?<![a-z0-9]){re.escape(tenant.name)}(?![a-z0-9])")
    for resource in resources_of(dev_plan, tenant.name):
        assert own.search(resource["name"]), resource["name"]


def test_virtual_clusters_pull_their_own_images_through_harbor(dev_plan: dict) -> None:
    # Their host namespaces are tenant namespaces, where the allowed-registries constraint
    # admits only Harbor: the vCluster's syncer, distro and CoreDNS images come from `approved`.
    releases = [r for r in dev_plan["resources"] if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["chart"] == "vcluster"]
    assert len(releases) == len(ENVIRONMENTS)
    domain = dev_config().domain
    for release in releases:
        control_plane = release["inputs"]["values"]["controlPlane"]
        assert control_plane["advanced"]["defaultImageRegistry"] == f"harbor.{domain}/approved/vcluster"
        assert control_plane["statefulSet"]["image"] == {"repository": "loft-sh/vcluster-oss"}


def test_every_developer_gets_a_sandbox_on_dev(dev_plan: dict) -> None:
    developers = {d for t in dev_config().tenants for d in t.developers}
    sandboxes = {r["name"] for r in dev_plan["resources"] if r["type"] == "platform:tenant:Sandbox"}
    assert sandboxes == developers
    namespaces = {r["inputs"]["metadata"]["name"]: r for r in dev_plan["resources"]
                  if r["type"] == "kubernetes:core/v1:Namespace" and r["inputs"]["metadata"]["name"].startswith("sandbox-")}
    assert len(namespaces) == len(developers) and all(n["cluster"] == "dev" for n in namespaces.values())
    for developer in developers:
        binding = next(r for r in dev_plan["resources"] if r["type"] == "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"
                       and r["inputs"]["metadata"]["namespace"] == f"sandbox-{developer}-dev" and r["inputs"]["metadata"]["name"].startswith("tenant-"))
        assert [s["name"] for s in binding["inputs"]["subjects"]] == [developer]
        assert binding["inputs"]["roleRef"]["name"] == ADMIN


# --- role x system x environment ------------------------------------------------------------


def _bindings(plan: dict, tenant: TenantConfig, environment: str) -> dict[str, set[str]]:
    """ClusterRole -> users, for the tenant's environment (host RoleBindings or the vCluster's own)."""
    found: dict[str, set[str]] = {}
    namespace = f"{tenant.name}-{environment}"
    if tenant.isolation == "vcluster":
        release = next(r for r in resources_of(plan, tenant.name)
                       if r["type"] == "kubernetes:helm.sh/v3:Release" and r["inputs"]["namespace"] == namespace)
        manifests = release["inputs"]["values"]["experimental"]["deploy"]["vcluster"]["manifests"]
        for doc in yaml.safe_load_all(manifests):
            # The tenant's roles; the platform's federated ArgoCD user and proxy are checked in test_federation.
            if doc["kind"] == "RoleBinding" and doc["metadata"]["name"].startswith("tenant-"):
                assert doc["metadata"]["namespace"] == tenant.name  # never cluster-wide inside
                found.setdefault(doc["roleRef"]["name"], set()).update(s["name"] for s in doc["subjects"])
        return found
    for r in resources_of(plan, tenant.name):
        if (r["type"] == "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding" and r["inputs"]["metadata"]["namespace"] == namespace
                and r["inputs"]["metadata"]["name"].startswith("tenant-")):
            found.setdefault(r["inputs"]["roleRef"]["name"], set()).update(s["name"] for s in r["inputs"]["subjects"])
    return found


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_kubernetes_access_by_role_and_environment(dev_plan: dict, tenant: TenantConfig, environment: str) -> None:
    expected: dict[str, set[str]] = {}
    for role, per_environment in ROLE_CLUSTER_ROLES.items():
        for user in getattr(tenant, role):
            expected.setdefault(per_environment[environment], set()).add(user)
    assert _bindings(dev_plan, tenant, environment) == expected


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_gitlab_harbor_vault_and_argocd_access_by_role(dev_plan: dict, tenant: TenantConfig) -> None:
    mine = resources_of(dev_plan, tenant.name)
    memberships = {r["name"]: r["inputs"]["accessLevel"] for r in mine if r["type"] == "gitlab:index/groupMembership:GroupMembership"}
    expected_memberships = {user: GITLAB_ACCESS[role] for role in GITLAB_ACCESS for user in getattr(tenant, role)}
    assert {name.rsplit("-", 1)[-1]: level for name, level in memberships.items()} == expected_memberships
    groups = {r["inputs"]["groupName"]: r["inputs"]["role"] for r in mine if r["type"] == "harbor:index/projectMemberGroup:ProjectMemberGroup"}
    # The system approvers read every project: they approve what goes into it.
    assert groups == {**{f"{tenant.name}-{role}": HARBOR_ROLES[role] for role in HARBOR_ROLES},
                      **{group: "guest" for group in dev_config().identity.system_approvers}}
    (vault_group,) = [r for r in mine if r["type"] == "vault:identity/group:Group"]
    assert vault_group["inputs"]["name"] == f"{tenant.name}-owners" and vault_group["inputs"]["policies"] == [f"tenant-{tenant.name}-write"]
    for project in (r for r in mine if r["type"] == "kubernetes:argoproj.io/v1alpha1:AppProject"):
        roles = {role["name"]: set(role["groups"]) for role in project["inputs"]["spec"]["roles"]}
        assert roles == {"sync": {f"{tenant.name}-owners", f"{tenant.name}-ops"}, "read": {f"{tenant.name}-developers"}}


# --- isolation ------------------------------------------------------------------------------


def test_no_tenant_resource_references_another_tenant(dev_plan: dict) -> None:
    tenants = [t.name for t in dev_config().tenants]
    problems = []
    for tenant in tenants:
        text_by_resource = {r["name"]: json.dumps(r["inputs"]) + r["name"] for r in resources_of(dev_plan, tenant)}
        for other in tenants:
            if other == tenant:
                continue
            token = re.compile(rf"(?<![a-z0-9]){re.escape(other)}(?![a-z0-9])")
            problems += [f"{tenant}/{name} mentions {other}" for name, text in text_by_resource.items() if token.search(text)]
    assert not problems, "\n".join(problems)


def test_each_tenant_environment_is_held_to_its_own_scope(dev_plan: dict) -> None:
    for tenant in dev_config().tenants:
        for environment in ENVIRONMENTS:
            (constraint,) = [r for r in resources_of(dev_plan, tenant.name)
                             if r["type"].endswith(":PlatformTenantArgoScope") and r["inputs"]["metadata"]["name"].endswith(f"-{environment}-argo-scope")]
            params = constraint["inputs"]["spec"]["parameters"]
            assert params["project"] == [f"{tenant.name}-{environment}"]
            inner = tenant.name if tenant.isolation == "vcluster" else f"{tenant.name}-{environment}"
            assert params["namespaces"] == [inner]
            (appset,) = [r for r in resources_of(dev_plan, tenant.name) if r["type"].endswith(":ApplicationSet")
                         and r["inputs"]["metadata"]["name"] == f"{tenant.name}-{environment}"]
            selector = appset["inputs"]["spec"]["generators"][0]["clusters"]["selector"]["matchLabels"]
            assert selector == params["clusterLabels"]
            # The guard is in place before what it guards.
            assert constraint["urn"] in appset["dependsOn"]


# --- adding, removing and reordering tenants ------------------------------------------------


# The render settles (lets pending registrations complete) before a top-level resource such as
# a tenant once SETTLE_EVERY registrations were declared since the last time. Settling every
# SETTLE_OFTEN instead, fewer than one tenant declares, puts a checkpoint between every two of
# a few tenants: the smallest stack that shows tenants stay independent across checkpoints
# (and one in the middle to remove).
TENANTS = 4
SETTLE_OFTEN = 60


def _rendered(tmp_path: Path, tenants: list[dict]) -> tuple[dict, dict]:
    """The dev stack with `tenants` rendered, settling every SETTLE_OFTEN registrations; (plan, fingerprints)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(render_module, "SETTLE_EVERY", SETTLE_OFTEN)
        result = render(stack_file(tmp_path, tenants), "dev")
    return result.plan, result.fingerprints


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[dict, dict], list[dict]]:
    tenants = synthetic_tenants(TENANTS)
    base = _rendered(tmp_path_factory.mktemp("several"), tenants)
    owners = Counter(tenant_of(base[0]).values())
    assert all(owners[t["name"]] > SETTLE_OFTEN for t in tenants)  # a checkpoint between every two
    return base, tenants


def _user_names(number: int) -> set[str]:
    return {f"{role}{number:04d}" for role in ("owner", "dev", "ops")}


def test_adding_a_tenant_adds_only_its_resources(tmp_path: Path, several) -> None:
    base, _ = several
    head = _rendered(tmp_path, synthetic_tenants(TENANTS + 1))
    result = diff_renders(base, head)
    assert not result.removed and not result.changed, [r["name"] for r, _ in result.changed][:10]
    owners = tenant_of(head[0])
    newcomer, newcomers = f"team{TENANTS + 1:04d}", _user_names(TENANTS + 1)
    for resource in result.added:
        assert owners[resource["urn"]] == newcomer or any(u in resource["name"] for u in newcomers), resource["name"]
    assert len(result.added) > 50


def test_removing_a_tenant_removes_only_its_resources(tmp_path: Path, several) -> None:
    base, tenants = several
    head = _rendered(tmp_path, [t for t in tenants if t["name"] != "team0002"])
    result = diff_renders(base, head)
    assert not result.added and not result.changed
    owners = tenant_of(base[0])
    leavers = _user_names(2)
    assert result.removed
    for resource in result.removed:
        assert owners[resource["urn"]] == "team0002" or any(u in resource["name"] for u in leavers), resource["name"]


def test_reordering_tenants_changes_nothing(tmp_path: Path, several) -> None:
    base, tenants = several
    result = diff_renders(base, _rendered(tmp_path, list(reversed(tenants))))
    assert result.empty, (len(result.added), len(result.removed), [r["name"] for r, _ in result.changed][:5])


# --- offboarding keeps data -------------------------------------------------------------------


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_a_removed_tenants_data_stays(dev_plan: dict, tenant: TenantConfig) -> None:
    """Removing a tenant (an offboarding entry) completes in one `up` and deletes no data:
    stateful resources are retained (left in their service) or archived."""
    mine = resources_of(dev_plan, tenant.name)
    retained = {r["type"] for r in mine if r["options"]["retainOnDelete"]}
    # Starter files too: written once, then the tenant's (tests/test_ops_layout.py).
    assert retained == {"harbor:index/project:Project", "gitlab:index/group:Group",
                        "vault:transit/secretBackendKey:SecretBackendKey", "gitlab:index/repositoryFile:RepositoryFile"}
    projects = [r for r in mine if r["type"] == "gitlab:index/project:Project"]
    assert projects and all(p["inputs"]["archiveOnDestroy"] is True for p in projects)


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_tenant_namespaces_enforce_pod_security_restricted(dev_plan: dict, tenant: TenantConfig) -> None:
    # Its workload namespaces (its runner's, on the control plane, states its own: tests/test_gitlab_runner.py).
    namespaces = [r for r in resources_of(dev_plan, tenant.name)
                  if r["type"] == "kubernetes:core/v1:Namespace" and r["cluster"] != "control-plane"]
    assert len(namespaces) == 2
    for namespace in namespaces:
        labels = namespace["inputs"]["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"
        assert labels["platform.io/pod-security"] == "restricted"


def _before(plan: dict) -> dict[str, set[str]]:
    """URN -> every URN it depends on, transitively (dependsOn and parent): what the engine deletes after it."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    closure: dict[str, set[str]] = {}
    for resource in plan["resources"]:  # creation order: dependencies come first
        direct = {d for d in [*resource["dependsOn"], resource["parent"]] if d in by_urn}
        closure[resource["urn"]] = set(direct).union(*(closure[d] for d in direct))
    return closure


@pytest.mark.parametrize("tenant", dev_config().tenants, ids=lambda t: t.name)
def test_offboarding_completes_in_one_up_in_the_documented_end_state(dev_plan: dict, tenant: TenantConfig) -> None:
    """What `pulumi up` does on dev once the tenant leaves `platform:tenants`, read from the plan:
    nothing protected, nothing outside the tenant depends on it, everything inside a namespace or a
    GitLab project goes before its container, and its people's own Vault data is no resource at all."""
    mine = resources_of(dev_plan, tenant.name)
    urns = {r["urn"] for r in mine}
    before = _before(dev_plan)
    assert not [r["name"] for r in mine if r["options"]["protect"]]  # dev: nothing blocks the delete
    outside = [r["name"] for r in dev_plan["resources"] if r["urn"] not in urns and before[r["urn"]] & urns
               and tenant_of(dev_plan)[r["urn"]] != tenant.name]
    assert outside == [], "a resource that stays depends on the tenant: the delete would be refused"
    namespaces = {r["inputs"]["metadata"]["name"]: r["urn"] for r in mine if r["type"] == "kubernetes:core/v1:Namespace"}
    assert set(namespaces) == {f"{tenant.name}-dev", f"{tenant.name}-prod", f"runner-{tenant.name}", f"runner-{tenant.name}-protected"}
    for resource in mine:
        inside = ((resource["inputs"].get("metadata") or {}).get("namespace") or resource["inputs"].get("namespace"))
        if resource["type"].startswith("kubernetes:") and inside in namespaces:
            assert namespaces[inside] in before[resource["urn"]], f"{resource['name']} is deleted after its namespace"
    projects = {r["urn"] for r in mine if r["type"] == "gitlab:index/project:Project"}
    assert projects and all(r["inputs"]["archiveOnDestroy"] is True for r in mine if r["urn"] in projects)
    for resource in mine:
        if resource["type"].startswith("gitlab:") and resource["type"] != "gitlab:index/project:Project" and "project" in resource["inputs"]:
            # Files, variables, keys, hooks and branch rules go while the project is writable, before it is archived.
            assert before[resource["urn"]] & projects, resource["name"]
    # The Harbor project (images), the GitLab group, the signing key and the starter files (the
    # tenant's since written, archived with their project) stay; the KV data the tenant's people
    # write (tenants/<tenant>/<env>/*) is never a resource, so no `up` deletes it.
    retained = {r["type"] for r in mine if r["options"]["retainOnDelete"]}
    assert retained == {"harbor:index/project:Project", "gitlab:index/group:Group", "vault:transit/secretBackendKey:SecretBackendKey",
                        "gitlab:index/repositoryFile:RepositoryFile"}
    written = [r["inputs"]["name"] for r in mine if r["type"] == "vault:kv/secretV2:SecretV2"]
    assert written and not [p for p in written if p.startswith((f"{tenant.name}/dev/", f"{tenant.name}/prod/"))], written


# --- renaming a tenant ----------------------------------------------------------------------------


def _alias_urns(plan: dict) -> dict[str, set[str]]:
    """URN -> the former URNs the engine matches it with: its own aliases (a former name under the
    same parent types) and those it inherits from its parent's, whose name replaces the parent's
    as the prefix of its own (pulumi/pulumi pkg/resource/deploy/step_generator.go, inheritedChildAlias)."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    found: dict[str, set[str]] = {}

    def named(urn: str, name: str) -> str:
        return urn[: urn.rfind("::") + 2] + name

    for resource in plan["resources"]:  # parents first
        urn, name, parent = resource["urn"], resource["name"], by_urn.get(resource["parent"] or "")
        aliases = {named(urn, a["name"]) for a in resource["options"].get("aliases", []) if "name" in a}
        for former in found.get(parent["urn"], set()) if parent else set():
            former_parent = former[former.rfind("::") + 2:]
            aliases.add(named(urn, former_parent + name[len(parent["name"]):] if name.startswith(parent["name"]) else name))
        found[urn] = aliases
    return found


def test_a_renamed_tenant_keeps_its_resources_through_aliases(dev_plan: dict, tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    [entry] = [t for t in doc["config"]["platform:tenants"] if t["name"] == "payments"]
    entry.update(name="billing", renamedFrom="payments")
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(yaml.safe_dump(doc))
    plan = render(path, "dev").plan
    [tenant] = [r for r in plan["resources"] if r["type"] == "platform:tenant:Tenant" and r["name"] == "billing"]
    assert tenant["options"]["aliases"] == [{"name": "payments"}]
    before = {r["urn"]: r for r in resources_of(dev_plan, "payments")}
    after = {r["urn"]: r for r in resources_of(plan, "billing")}
    matched = {former: urn for urn, formers in _alias_urns(plan).items() if urn in after for former in formers if former in before}
    # Each of the tenant's resources keeps its state, but for a few named apart from their parent:
    # Vault's auth roles, the token-review bindings and the image policies, stateless and replaced
    # anyway (their real names are the tenant's).
    unmatched = {before[u]["type"] for u in before.keys() - matched.keys()}
    assert unmatched == {"vault:jwt/authBackendRole:AuthBackendRole", "vault:kubernetes/authBackendRole:AuthBackendRole",
                         "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
                         "kubernetes:policy.sigstore.dev/v1beta1:ClusterImagePolicy",
                         "kubernetes:helm.sh/v3:Release"}  # the tenant's runner charts, named for their cluster
    assert len(before) - len(matched) == 9 and len(set(matched.values())) == len(matched)  # 3 roles, 2 bindings, 2 policies, 2 runner charts

    def changed(kind: str) -> set[str]:
        """The input keys that differ between the former and the renamed resources of `kind`."""
        return {key for former, urn in matched.items() if before[former]["type"] == kind
                for key in before[former]["inputs"].keys() | after[urn]["inputs"].keys()
                if before[former]["inputs"].get(key) != after[urn]["inputs"].get(key)}

    # Updated in place: the GitLab group's path and name (GitLab moves its projects along); the
    # projects change only where they refer to the group's id, which an in-place update keeps.
    assert changed("gitlab:index/group:Group") == {"path", "name", "description"}
    assert changed("gitlab:index/project:Project") <= {"namespaceId", "forkedFromProjectId"}
    # Kept as they are: the deploy keys' private halves and the rotation clocks.
    assert changed("tls:index/privateKey:PrivateKey") == changed("time:index/rotating:Rotating") == set()
    # Replaced, because the real name is the tenant's: namespaces (and what is in them), the Harbor
    # project (the old one is retained with its images), Vault paths and the signing key (retained).
    assert changed("kubernetes:core/v1:Namespace") == {"metadata"}
    assert changed("harbor:index/project:Project") == {"name"}
    assert changed("vault:kv/secretV2:SecretV2") == changed("vault:transit/secretBackendKey:SecretBackendKey") == {"name"}
