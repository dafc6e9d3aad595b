"""Tenants' GitLab repositories, Harbor projects and the GitLab users, under the mock engine.

One program builds a TenantPlatform with real (mocked) gitlab, harbor, vault and kubernetes
providers, `PlatformUsers` and, for two tenants, `TenantRepositories` and `TenantRegistry`,
then asserts on the recorded plan (secrets redacted, as in plan.json) and, where a test must
look inside a secret, on the inputs with secrets revealed (mock values only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import pulumi
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s
import pulumi_vault as vault
import pulumiverse_harbor as harbor
import pytest
from pulumi.runtime.mocks import MockResourceArgs

from components.platform_users import PlatformUsers, PlatformUsersArgs, distinct_users, gitlab_username_problem
from components.tenancy import (
    HARBOR_PULL_KEYS,
    ROLES,
    ArgoTenancy,
    GitLabTenancy,
    HarborTenancy,
    TenantMembers,
    TenantPlatform,
    VaultTenancy,
    harbor_pull_path,
)
from components.tenant_gitlab import ACCESS_LEVELS, TenantRepositories, TenantRepositoriesArgs, expires_after
from components.tenant_registry import TenantRegistry, TenantRegistryArgs, storage_gib
from platformctl.mocks import REDACTED, SECRET_MARK, PlatformMocks, _digest, is_redacted
from policy.pack.checks import check_harbor_robot_expires, check_no_insecure_tls, check_no_plain_secrets
from tests.mock_program import ProgramRun, control_plane_cluster, run_program

DOMAIN = "platform.example.com"
EMAIL_DOMAIN = "example.com"
CA_PEM = "-----BEGIN CERTIFICATE-----\nplatform-ca\n-----END CERTIFICATE-----\n"
WEBHOOK_SECRET = f"{SECRET_MARK}argocd-gitlab-webhook"
WEBHOOK_URL = f"https://argocd.{DOMAIN}/api/webhook"
# Two tenants; "olga" is in both (one GitLab user), "shop" has no ops.
TENANTS: dict[str, dict[str, Any]] = {
    "payments": {"owners": ["alice"], "developers": ["bob", "carol"], "ops": ["dave", "olga"], "storage": "100Gi"},
    "shop": {"owners": ["erin"], "developers": ["frank", "olga"], "ops": [], "storage": "20Gi"},
}

GITLAB_PROVIDER = "pulumi:providers:gitlab"
GROUP = "gitlab:index/group:Group"
PROJECT = "gitlab:index/project:Project"
USER = "gitlab:index/user:User"
MEMBERSHIP = "gitlab:index/groupMembership:GroupMembership"
PROTECTION = "gitlab:index/branchProtection:BranchProtection"
DEPLOY_KEY = "gitlab:index/deployKey:DeployKey"
HOOK = "gitlab:index/projectHook:ProjectHook"
VARIABLE = "gitlab:index/projectVariable:ProjectVariable"
HARBOR_PROJECT = "harbor:index/project:Project"
MEMBER_GROUP = "harbor:index/projectMemberGroup:ProjectMemberGroup"
ROBOT = "harbor:index/robotAccount:RobotAccount"
KV_SECRET = "vault:kv/secretV2:SecretV2"
ROTATING = "time:index/rotating:Rotating"
PRIVATE_KEY = "tls:index/privateKey:PrivateKey"
K8S_SECRET = "kubernetes:core/v1:Secret"


# --- the mock engine ------------------------------------------------------------------------


class _Mocks(PlatformMocks):
    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        resource_id, state = super().new_resource(args)
        if args.typ == ROTATING:
            # Test only: a distinct time per rotation, so a test can tell which one feeds what.
            state["rfc3339"] = _mock_time(args.name)
        return resource_id, state


def _mock_time(name: str) -> str:
    seconds = int(_digest(name, length=8), 16) % (28 * 86400)
    return f"2026-01-{1 + seconds // 86400:02d}T{seconds % 86400 // 3600:02d}:{seconds % 3600 // 60:02d}:00Z"


def _rfc3339(rotation: dict[str, Any]) -> str:
    """The rotation time the mock gave a Rotating record."""
    return _mock_time(rotation["name"])


Built = tuple[dict[str, TenantRepositories], dict[str, TenantRegistry]]


@dataclass
class Run:
    """A run of the tenants' program (tests/mock_program.py), with lookups by tenant."""

    program: ProgramRun[Built]

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.program.resources

    @property
    def repositories(self) -> dict[str, TenantRepositories]:
        return self.program.result[0]

    @property
    def registries(self) -> dict[str, TenantRegistry]:
        return self.program.result[1]

    def raw(self, record: dict[str, Any]) -> dict[str, Any]:
        return self.program.raw[record["urn"]]

    def id(self, record: dict[str, Any]) -> str:
        return self.program.ids[record["urn"]]

    def trigger(self, record: dict[str, Any]) -> Any:
        return self.program.triggers[record["urn"]]

    def all(self, typ: str) -> list[dict[str, Any]]:
        return self.program.of_type(typ)

    def one(self, typ: str, name: str | None = None) -> dict[str, Any]:
        return self.program.one(typ, name)

    def by_urn(self, urn: str) -> dict[str, Any]:
        return next(r for r in self.records if r["urn"] == urn)

    def of_tenant(self, tenant: str) -> list[dict[str, Any]]:
        """Every resource inside the tenant's TenantRepositories and TenantRegistry."""
        roots = {r["urn"] for r in self.records if r["name"] in (f"{tenant}-repositories", f"{tenant}-registry")}
        assert len(roots) == 2
        found, changed = set(roots), True
        while changed:
            new = {r["urn"] for r in self.records if r["parent"] in found} - found
            found |= new
            changed = bool(new)
        return [r for r in self.records if r["urn"] in found]

    def tenant_records(self, tenant: str, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.of_tenant(tenant) if r["type"] == typ]


def run(build: Callable[[], Built]) -> Run:
    """Run `build` under the mock engine, as `platformctl render` runs the program."""
    return Run(run_program(build, mocks=_Mocks()))


class _NoFederation:
    """The Vault federation side (components/vault_federation.py): not used by these components."""

    def bind_workload(self, *args: Any, **kwargs: Any) -> pulumi.CustomResource:
        raise AssertionError("repositories and registries bind no Vault roles")

    bind_ci = bind_workload

    def auth_path(self, cluster: str) -> str:
        raise AssertionError("repositories and registries bind no Vault roles")


def platform_program() -> tuple[dict[str, TenantRepositories], dict[str, TenantRegistry]]:
    cluster = control_plane_cluster()
    argocd_release = k8s.core.v1.Namespace(  # stand-in for the argo-cd release
        "argocd-release-stand-in", metadata={"name": "argocd"}, opts=pulumi.ResourceOptions(provider=cluster.provider)
    )
    gitlab_provider = gitlab.Provider(
        "gitlab-provider", base_url=f"https://gitlab.{DOMAIN}/api/v4/", token=pulumi.Output.secret(f"{SECRET_MARK}glpat")
    )
    harbor_provider = harbor.Provider(
        "harbor-provider", url=f"https://harbor.{DOMAIN}", username="admin",
        password=pulumi.Output.secret(f"{SECRET_MARK}harbor-admin"), insecure=False,
    )
    vault_provider = vault.Provider(
        "vault-provider", address=f"https://vault.{DOMAIN}", token=pulumi.Output.secret(f"{SECRET_MARK}hvs")
    )
    kv = vault.Mount(
        "tenants-kv", path="tenants", type="kv", options={"version": "2"},
        opts=pulumi.ResourceOptions(provider=vault_provider),
    )
    users = PlatformUsers(
        "platform-users",
        PlatformUsersArgs(
            user_ids=[u for spec in TENANTS.values() for role in ROLES for u in spec[role]],
            email_domain=EMAIL_DOMAIN,
            provider=gitlab_provider,
        ),
    )
    platform = TenantPlatform(
        domain=DOMAIN,
        apps_domain="apps.example.net",
        clusters={"control-plane": cluster},
        ca_bundle=pulumi.Output.from_input(CA_PEM),
        issuer_url=f"https://k8sou.{DOMAIN}/auth/idp/k8sIdp",
        kubernetes_client_id="kubernetes",
        vault=VaultTenancy(provider=vault_provider, url=f"https://vault.{DOMAIN}", kv_mount=kv, federation=_NoFederation()),
        gitlab=GitLabTenancy(
            provider=gitlab_provider, url=f"https://gitlab.{DOMAIN}", ssh_host=f"gitlab.{DOMAIN}",
            users=dict(users.users),
        ),
        harbor=HarborTenancy(provider=harbor_provider, host=f"harbor.{DOMAIN}"),
        argocd=ArgoTenancy(
            release=argocd_release, provider=cluster.provider, namespace="argocd", url=f"https://argocd.{DOMAIN}",
            webhook_secret=pulumi.Output.secret(WEBHOOK_SECRET),
        ),
    )
    repositories, registries = {}, {}
    for tenant, spec in TENANTS.items():
        repositories[tenant] = TenantRepositories(
            f"{tenant}-repositories",
            TenantRepositoriesArgs(
                tenant=tenant, members=TenantMembers(tuple(spec["owners"]), tuple(spec["developers"]), tuple(spec["ops"])),
                platform=platform, webhook_url=WEBHOOK_URL,
            ),
        )
        registries[tenant] = TenantRegistry(
            f"{tenant}-registry",
            TenantRegistryArgs(
                tenant=tenant,
                storage_gb=storage_gib(spec["storage"]),
                platform=platform,
            ),
        )
    return repositories, registries


@pytest.fixture(scope="module")
def plan() -> Run:
    return run(platform_program)


# --- GitLab: users ----------------------------------------------------------------------------


def test_one_gitlab_user_per_person(plan: Run) -> None:
    users = plan.all(USER)
    expected = distinct_users(*(spec[role] for spec in TENANTS.values() for role in ROLES))
    assert sorted(u["inputs"]["username"] for u in users) == expected  # olga once
    for user in users:
        inputs = user["inputs"]
        name = inputs["username"]
        assert inputs["email"] == f"{name}@{EMAIL_DOMAIN}"
        assert inputs["forceRandomPassword"] is True and inputs["skipConfirmation"] is True
        assert "password" not in inputs and inputs["isAdmin"] is False
        assert user["options"]["ignoreChanges"] == ["name"]
        assert user["provider"] == plan.one(GITLAB_PROVIDER)["urn"]


def test_user_ids_gitlab_cannot_take_are_refused() -> None:
    for bad in ("alice@example.com", "bob.", "-carol", "dave.git", "eve smith"):
        assert gitlab_username_problem(bad), bad
    for good in ("alice", "bob.smith", "carol_1", "d-ave", "_e"):
        assert gitlab_username_problem(good) is None, good

    def program() -> tuple[dict, dict]:
        provider = gitlab.Provider("gitlab-provider", base_url="https://gitlab.example.com/api/v4/")
        PlatformUsers("users", PlatformUsersArgs(user_ids=["alice", "bob@example.com"], email_domain="x.org", provider=provider))
        return {}, {}

    with pytest.raises(Exception, match="bob@example.com"):
        run(program)


# --- GitLab: group, projects, access ----------------------------------------------------------


def _group(plan: Run, tenant: str) -> dict[str, Any]:
    [group] = plan.tenant_records(tenant, GROUP)
    return group


def _projects(plan: Run, tenant: str) -> dict[str, dict[str, Any]]:
    return {p["inputs"]["path"]: p for p in plan.tenant_records(tenant, PROJECT)}


def test_group_and_projects(plan: Run) -> None:
    for tenant in TENANTS:
        group = _group(plan, tenant)
        assert group["inputs"]["path"] == tenant and group["inputs"]["name"] == tenant
        assert group["inputs"]["visibilityLevel"] == "private"
        assert group["inputs"]["requestAccessEnabled"] is False
        # Only the tenant's owners (GitLab Owner) create projects and subgroups: GitLab's default lets Developers create a
        # project, which the group's runners serve, where the developer is a Maintainer and protects what branch they like,
        # with none of the settings the program puts on the tenant's projects (job-token allowlist, branch protection).
        assert ACCESS_LEVELS["developers"] == ACCESS_LEVELS["ops"] == "developer" and ACCESS_LEVELS["owners"] == "owner"
        assert (group["inputs"]["projectCreationLevel"], group["inputs"]["subgroupCreationLevel"]) == ("maintainer", "owner")
        projects = _projects(plan, tenant)
        assert set(projects) == {"app", "ops", "ops-dev"}
        for path, project in projects.items():
            inputs = project["inputs"]
            assert inputs["namespaceId"] == int(plan.id(group)), path
            assert inputs["visibilityLevel"] == "private" and inputs["defaultBranch"] == "main"
            assert project["provider"] == plan.one(GITLAB_PROVIDER)["urn"]
        # ops-dev is a fork of ops; app and ops start with a README (so `main` exists).
        assert projects["ops-dev"]["inputs"]["forkedFromProjectId"] == int(plan.id(projects["ops"]))
        assert projects["ops"]["urn"] in projects["ops-dev"]["dependsOn"]
        assert "initializeWithReadme" not in projects["ops-dev"]["inputs"]
        for path in ("app", "ops"):
            assert projects[path]["inputs"]["initializeWithReadme"] is True
            assert "forkedFromProjectId" not in projects[path]["inputs"]


def test_memberships_by_role_and_nothing_else(plan: Run) -> None:
    user_of_id = {int(plan.id(u)): u["inputs"]["username"] for u in plan.all(USER)}
    for tenant, spec in TENANTS.items():
        group_id = int(plan.id(_group(plan, tenant)))
        granted = set()
        for membership in plan.tenant_records(tenant, MEMBERSHIP):
            inputs = membership["inputs"]
            assert inputs["groupId"] == group_id
            granted.add((user_of_id[inputs["userId"]], inputs["accessLevel"]))
        expected = {(u, "owner") for u in spec["owners"]}
        expected |= {(u, "developer") for u in spec["developers"] + spec["ops"]}
        assert granted == expected, tenant
        assert len(plan.tenant_records(tenant, MEMBERSHIP)) == len(expected)
    # Nobody but owners reaches the level that may merge into main.
    assert not [m for m in plan.all(MEMBERSHIP) if m["inputs"]["accessLevel"] == "maintainer"]


def test_main_is_protected_owners_merge_nobody_pushes(plan: Run) -> None:
    for tenant in TENANTS:
        projects = _projects(plan, tenant)
        protections = plan.tenant_records(tenant, PROTECTION)
        assert sorted(p["inputs"]["project"] for p in protections) == sorted(plan.id(p) for p in projects.values())
        for protection in protections:
            assert protection["inputs"]["branch"] == "main"
            assert protection["inputs"]["pushAccessLevel"] == "no one"
            assert protection["inputs"]["mergeAccessLevel"] == "maintainer"
            assert protection["inputs"]["allowForcePush"] is False


# --- GitLab: deploy keys, ArgoCD repositories, webhooks ------------------------------------------


def _private_key_value(key: dict[str, Any]) -> str:
    """The mock private key's own text (mock values derive from type and name)."""
    return f"{SECRET_MARK}{_digest(key['type'], key['name'], length=24)}"


def test_deploy_keys_are_read_only_ed25519(plan: Run) -> None:
    for tenant in TENANTS:
        projects = _projects(plan, tenant)
        keys = plan.tenant_records(tenant, DEPLOY_KEY)
        assert sorted(k["inputs"]["project"] for k in keys) == sorted(plan.id(projects[p]) for p in ("ops", "ops-dev"))
        for deploy_key in keys:
            assert deploy_key["inputs"]["canPush"] is False
            [private] = [k for k in plan.tenant_records(tenant, PRIVATE_KEY) if k["urn"] in deploy_key["dependsOn"]]
            assert private["inputs"]["algorithm"] == "ED25519"
            assert deploy_key["inputs"]["key"] == f"ssh-ed25519 AAAAmock{_digest(private['name'], length=16)}"


def test_private_halves_only_in_vault_and_argocd(plan: Run) -> None:
    for tenant in TENANTS:
        private_keys = plan.tenant_records(tenant, PRIVATE_KEY)
        assert len(private_keys) == 2
        for private in private_keys:
            value = _private_key_value(private)
            holders = [r for r in plan.records if value in json.dumps(plan.raw(r))]
            assert sorted(r["type"] for r in holders) == [K8S_SECRET, KV_SECRET], private["name"]
            for holder in holders:  # and both hold it as a secret
                field = "stringData" if holder["type"] == K8S_SECRET else "dataJson"
                assert is_redacted(holder["inputs"][field]) and field in holder["secretPaths"]
    # Nothing generated shows in the plan itself.
    assert SECRET_MARK not in json.dumps(plan.records)


def test_argocd_repository_secrets(plan: Run) -> None:
    control_plane = plan.one("pulumi:providers:kubernetes", "control-plane-k8s")
    release = plan.one("kubernetes:core/v1:Namespace", "argocd-release-stand-in")
    for tenant in TENANTS:
        secrets = {s["raw"]["stringData"]["project"]: s for s in _with_raw(plan, plan.tenant_records(tenant, K8S_SECRET))}
        assert set(secrets) == {f"{tenant}-dev", f"{tenant}-prod"}
        for app_project, project_path in ((f"{tenant}-dev", "ops-dev"), (f"{tenant}-prod", "ops")):
            secret = secrets[app_project]
            assert secret["cluster"] == "control-plane" and secret["provider"] == control_plane["urn"]
            assert release["urn"] in secret["dependsOn"]
            metadata = secret["inputs"]["metadata"]
            assert metadata["namespace"] == "argocd"
            assert metadata["labels"] == {"argocd.argoproj.io/secret-type": "repository", "platform.io/tenant": tenant}
            data = secret["raw"]["stringData"]
            assert data["type"] == "git" and data["url"] == f"git@gitlab.{DOMAIN}:{tenant}/{project_path}.git"
            private = plan.one(PRIVATE_KEY, f"{tenant}-repositories-{project_path}-deploy-key")
            assert _private_key_value(private) in data["sshPrivateKey"]
        repositories = plan.repositories[tenant]
        assert repositories.ops_repo_urls == {
            "dev": f"git@gitlab.{DOMAIN}:{tenant}/ops-dev.git", "prod": f"git@gitlab.{DOMAIN}:{tenant}/ops.git"
        }
        assert repositories.project_paths == [f"{tenant}/app", f"{tenant}/ops", f"{tenant}/ops-dev"]


def _with_raw(plan: Run, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "raw": plan.raw(r)} for r in records]


def test_deploy_keys_in_vault(plan: Run) -> None:
    kv = plan.one("vault:index/mount:Mount", "tenants-kv")
    vault_provider = plan.one("pulumi:providers:vault")
    for tenant in TENANTS:
        stored = {s["inputs"]["name"]: s for s in plan.tenant_records(tenant, KV_SECRET)}
        for project_path in ("ops", "ops-dev"):
            secret = stored[f"{tenant}/deploy-keys/{project_path}"]
            assert secret["inputs"]["mount"] == "tenants" and kv["urn"] in secret["dependsOn"]
            assert secret["provider"] == vault_provider["urn"]
            data = json.loads(plan.raw(secret)["dataJson"])
            assert set(data) == {"sshPrivateKey", "sshPublicKey", "url"}
            assert data["url"] == f"git@gitlab.{DOMAIN}:{tenant}/{project_path}.git"


def test_deploy_keys_rotate_at_half_their_life(plan: Run) -> None:
    for tenant in TENANTS:
        rotations = {r["urn"]: r for r in plan.tenant_records(tenant, ROTATING) if "key-rotation" in r["name"]}
        assert len(rotations) == 2
        for private in plan.tenant_records(tenant, PRIVATE_KEY):
            [rotation_urn] = [d for d in private["dependsOn"] if d in rotations]
            rotated_at = _rfc3339(rotations[rotation_urn])
            assert rotations[rotation_urn]["inputs"]["rotationDays"] == 45
            # A new rotation timestamp replaces the key pair ...
            assert plan.trigger(private) == rotated_at
            # ... and the deploy key built from it, which also expires on its own after 90 days.
            [deploy_key] = [k for k in plan.tenant_records(tenant, DEPLOY_KEY) if private["urn"] in k["dependsOn"]]
            assert rotation_urn in deploy_key["dependsOn"]
            assert deploy_key["inputs"]["expiresAt"] == expires_after(rotated_at, 90)
    assert expires_after("2026-01-01T10:20:00Z", 90) == "2026-04-01T10:20:00Z"




def test_rotation_times_are_distinct(plan: Run) -> None:
    """The checks above can tell rotations apart only if their mock times differ."""
    times = [_rfc3339(r) for r in plan.all(ROTATING)]
    assert len(set(times)) == len(times) == 4 * len(TENANTS)


def test_webhooks_to_argocd(plan: Run) -> None:
    for tenant in TENANTS:
        projects = _projects(plan, tenant)
        hooks = plan.tenant_records(tenant, HOOK)
        assert sorted(h["inputs"]["project"] for h in hooks) == sorted(plan.id(projects[p]) for p in ("ops", "ops-dev"))
        for hook in hooks:
            inputs = hook["inputs"]
            assert inputs["url"] == WEBHOOK_URL
            assert inputs["token"] == REDACTED and "token" in hook["secretPaths"]
            assert plan.raw(hook)["token"] == WEBHOOK_SECRET
            assert inputs["enableSslVerification"] is True
            assert inputs["pushEvents"] is True
            others = {k: v for k, v in inputs.items() if k.endswith("Events") and k != "pushEvents"}
            assert others and not any(others.values()), others


def test_ci_variables_hold_no_secret(plan: Run) -> None:
    for tenant in TENANTS:
        projects = _projects(plan, tenant)
        for path, project in projects.items():
            variables = [v for v in plan.tenant_records(tenant, VARIABLE) if v["inputs"]["project"] == plan.id(project)]
            values = {v["inputs"]["key"]: v["inputs"]["value"] for v in variables}
            assert values == {
                "HARBOR_REGISTRY": f"harbor.{DOMAIN}",
                "HARBOR_PROJECT": tenant,
                "VAULT_ADDR": f"https://vault.{DOMAIN}",
                "VAULT_AUTH_PATH": "jwt-gitlab",
                "VAULT_ROLE": f"{tenant}-ci",
            }, path
            for variable in variables:
                assert variable["secretPaths"] == []
                assert variable["inputs"]["masked"] is False and variable["inputs"]["protected"] is False
                assert variable["inputs"]["raw"] is True
                value = plan.raw(variable)["value"]
                assert not any(marker in value for marker in (SECRET_MARK, "BEGIN", "glpat-", "hvs.", "robot$"))


# --- Harbor -----------------------------------------------------------------------------------


def test_storage_quota_in_gib() -> None:
    assert storage_gib("100Gi") == 100
    assert storage_gib("100G") == 94  # 10^11 bytes, rounded up to whole GiB
    assert storage_gib("1Ti") == 1024
    assert storage_gib("512Mi") == 1 and storage_gib("1.5Gi") == 2
    with pytest.raises(ValueError):
        storage_gib("100GB")


def test_harbor_project(plan: Run) -> None:
    harbor_provider = plan.one("pulumi:providers:harbor")
    for tenant, spec in TENANTS.items():
        [project] = plan.tenant_records(tenant, HARBOR_PROJECT)
        inputs = project["inputs"]
        assert inputs["name"] == tenant and inputs["public"] is False
        assert inputs["storageQuota"] == storage_gib(spec["storage"])
        assert inputs["vulnerabilityScanning"] is True and inputs["forceDestroy"] is False
        assert project["provider"] == harbor_provider["urn"]
    assert [p["inputs"]["storageQuota"] for p in plan.all(HARBOR_PROJECT)] == [100, 20]


def test_harbor_members_by_role(plan: Run) -> None:
    for tenant in TENANTS:
        [project] = plan.tenant_records(tenant, HARBOR_PROJECT)
        members = plan.tenant_records(tenant, MEMBER_GROUP)
        assert {(m["inputs"]["groupName"], m["inputs"]["role"]) for m in members} == {
            (f"{tenant}-owners", "guest"), (f"{tenant}-ops", "guest"), (f"{tenant}-developers", "guest"),
        }
        assert len(members) == 3
        for member in members:
            assert member["inputs"]["type"] == "oidc" and member["inputs"]["projectId"] == plan.id(project)


def _robots(plan: Run, tenant: str) -> dict[str, dict[str, Any]]:
    return {r["inputs"]["name"]: r for r in plan.tenant_records(tenant, ROBOT)}


def test_robots_permissions_and_expiry(plan: Run) -> None:
    for tenant in TENANTS:
        robots = _robots(plan, tenant)
        assert set(robots) == {"push", "pull"}
        for robot_name, actions in (("push", {"push", "pull"}), ("pull", {"pull"})):
            robot = robots[robot_name]
            inputs = robot["inputs"]
            assert inputs["level"] == "project"
            assert 0 < inputs["duration"] <= 30
            assert check_harbor_robot_expires(ROBOT, inputs, robot["options"], {}) == []
            [permission] = inputs["permissions"]
            assert permission["kind"] == "project" and permission["namespace"] == tenant
            assert {(a["action"], a["resource"]) for a in permission["accesses"]} == {(a, "repository") for a in actions}
            # Harbor keeps robot names unique: the old one goes first.
            assert robot["options"]["deleteBeforeReplace"] is True
            assert "secret" in robot["options"]["additionalSecretOutputs"] and "secret" not in inputs


def test_robots_are_recreated_past_half_their_life(plan: Run) -> None:
    for tenant in TENANTS:
        rotations = {r["urn"]: r for r in plan.tenant_records(tenant, ROTATING) if "key-rotation" not in r["name"]}
        assert len(rotations) == 2
        fed = set()
        for robot in _robots(plan, tenant).values():
            [rotation_urn] = [d for d in robot["dependsOn"] if d in rotations]
            rotation = rotations[rotation_urn]
            assert rotation["inputs"]["rotationDays"] * 2 <= robot["inputs"]["duration"]
            assert plan.trigger(robot) == _rfc3339(rotation)
            assert _rfc3339(rotation) in robot["inputs"]["description"]
            fed.add(rotation_urn)
        assert fed == set(rotations)  # one rotation per robot


def test_robot_credentials_in_vault(plan: Run) -> None:
    vault_provider = plan.one("pulumi:providers:vault")
    for tenant in TENANTS:
        robots = _robots(plan, tenant)
        stored = {s["inputs"]["name"]: s for s in plan.tenant_records(tenant, KV_SECRET)}
        for robot_name, path in (("pull", harbor_pull_path(tenant)), ("push", f"{tenant}/harbor-push")):
            secret = stored[path]
            assert secret["inputs"]["mount"] == "tenants" and secret["provider"] == vault_provider["urn"]
            assert secret["inputs"]["dataJson"] == REDACTED and "dataJson" in secret["secretPaths"]
            assert robots[robot_name]["urn"] in secret["dependsOn"]
            data = json.loads(plan.raw(secret)["dataJson"])
            assert set(data) == set(HARBOR_PULL_KEYS)
            assert data["registry"] == f"harbor.{DOMAIN}"
            assert data["username"] == f"robot${tenant}+{robot_name}"
            assert data["password"] == f"{SECRET_MARK}{_digest(ROBOT, robots[robot_name]['name'], length=24)}"
        registry = plan.registries[tenant]
        assert (registry.pull_secret_path, registry.push_secret_path) == (harbor_pull_path(tenant), f"{tenant}/harbor-push")


# --- across both ------------------------------------------------------------------------------


def test_tenants_do_not_reference_each_other(plan: Run) -> None:
    for tenant in TENANTS:
        mine = plan.of_tenant(tenant)
        assert len(mine) > 30
        for other in set(TENANTS) - {tenant}:
            for record in mine:
                text = json.dumps([record["name"], plan.raw(record), record["dependsOn"], record["parent"]])
                assert other not in text, f"{record['name']} mentions {other}"
                # Dependencies stay within the tenant or on shared platform resources.
                for dependency in record["dependsOn"]:
                    assert plan.by_urn(dependency) not in plan.of_tenant(other), record["name"]


def test_explicit_providers(plan: Run) -> None:
    expected = {
        "gitlab": plan.one(GITLAB_PROVIDER)["urn"],
        "harbor": plan.one("pulumi:providers:harbor")["urn"],
        "vault": plan.one("pulumi:providers:vault")["urn"],
        "kubernetes": plan.one("pulumi:providers:kubernetes", "control-plane-k8s")["urn"],
    }
    checked = 0
    for tenant in TENANTS:
        for record in plan.of_tenant(tenant):
            package = record["type"].split(":")[0]
            if package in expected:
                assert record["provider"] == expected[package], record["name"]
                checked += 1
    assert checked > 40


def test_policy_pack_rules_pass(plan: Run) -> None:
    problems = []
    for record in plan.records:
        for check in (check_no_plain_secrets, check_no_insecure_tls, check_harbor_robot_expires):
            problems += [f"{record['name']}: {p}" for p in check(record["type"], record["inputs"], record["options"], {})]
    assert not problems, "\n".join(problems)


def test_components_refuse_a_platform_without_the_services() -> None:
    def program() -> tuple[dict, dict]:
        bare = TenantPlatform(
            domain=DOMAIN, apps_domain="apps.example.net", clusters={}, ca_bundle=pulumi.Output.from_input(""), issuer_url="https://x", kubernetes_client_id="k"
        )
        TenantRegistry("t-registry", TenantRegistryArgs("t", 10, bare))
        return {}, {}

    with pytest.raises(Exception, match="needs Harbor and Vault"):
        run(program)
