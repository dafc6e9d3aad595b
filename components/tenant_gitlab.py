"""A tenant's repositories in GitLab: its group, projects, access, deploy keys and webhooks.

Per tenant: a private group `<tenant>` holding `app` (the application), `ops` (what ArgoCD
deploys to prod) and `ops-dev`, a fork of `ops` in the same group (what ArgoCD deploys to
dev; changes are promoted by a merge request from `ops-dev` into `ops`).

Access is granted on the group, by role: owners are GitLab owners, developers and ops are
GitLab developers. `main` is protected in every project: nobody pushes to it, and merging
needs the maintainer level, which only owners hold, so only owners merge (approve) changes.
In `app`, release tags `v*` are protected the same way: only owners create them.

ArgoCD reads each ops project with a read-only deploy key (ed25519, pulumi_tls). The private
half goes to Vault (`tenants/<tenant>/deploy-keys/<project>`) and to ArgoCD's repository
Secret, nowhere else. Keys live 90 days and are replaced from 45 days on: a
`pulumiverse_time.Rotating` expires after 45 days, and on the next `pulumi up --refresh` its
new timestamp is the key's `replacement_trigger`, so a new key pair, deploy key, Vault
version and repository Secret are made in that run (the new deploy key exists before the
old one is deleted). A project webhook tells ArgoCD about pushes, authenticated with the
platform's shared GitLab webhook secret.

CI variables only say where things are (Harbor, Vault, the Vault role): jobs log in to Vault with their `id_tokens` and read their secrets there,
so no secret is a CI variable. Nobody sets pipeline variables of `app` or `ops`; in `ops-dev` only owners (the
release trigger's IMAGE_TAG).
Each project's CI/CD job token allowlist is on and names nobody else: only its own jobs' tokens work on it.

Starter content (components/tenant_supply_chain.starter_files) is committed once to a new
tenant's `main`, before it is protected: never overwritten, never updated afterwards. The
ops projects let their job token push (a branch and a merge request bumping the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, cast

import pulumi
import pulumi_gitlab as gitlab
import pulumi_kubernetes as k8s
import pulumiverse_time as time

from components.common import rotated_key
from components.inventory import refreshed

from components.tenancy import ROLES, ArgoTenancy, GitLabTenancy, HarborTenancy, OpsLayout, TenantMembers, TenantPlatform, VaultTenancy
from policy.labels import TENANT_LABEL
from components.tenant_supply_chain import starter_files

APP_PROJECT = "app"
OPS_PROJECT = "ops"  # prod
OPS_DEV_PROJECT = "ops-dev"  # dev: a fork of ops
PROJECTS = (APP_PROJECT, OPS_PROJECT, OPS_DEV_PROJECT)
# Ops project -> the environment ArgoCD deploys it to.
OPS_ENVIRONMENTS = {OPS_DEV_PROJECT: "dev", OPS_PROJECT: "prod"}
MAIN = "main"

# Tenant role -> GitLab access level on the group. Only owners reach "maintainer" (merge).
ACCESS_LEVELS = {"owners": "owner", "developers": "developer", "ops": "developer"}
MERGE_ACCESS_LEVEL = "maintainer"
PUSH_ACCESS_LEVEL = "no one"
# Who may set pipeline variables ("Run pipeline", a schedule's, the API's, a trigger job's), which reach the jobs
# unreviewed: in `app`, whose jobs log in to Vault to push and sign, and in `ops`, nobody; `ops-dev` takes the
# release pipeline's `IMAGE_TAG` from app's trigger job, which runs as whoever pushed the release tag (an owner).
# GitLab 18 restricts every project, so this role alone decides (gitlab app/models/project_ci_cd_setting.rb
# override_pipeline_variables_allowed?; lib/gitlab/background_migration/enable_restrict_user_defined_variables.rb).
PIPELINE_VARIABLES_ROLE = {APP_PROJECT: "no_one_allowed", OPS_PROJECT: "no_one_allowed", OPS_DEV_PROJECT: "owner"}
# Release tags (the starter pipeline's `v*.*.*`) are protected refs, which Vault's CI role requires to
# push and sign; only those who merge may create them, so a developer never releases unreviewed code.
RELEASE_TAGS = "v*"

DEPLOY_KEY_LIFETIME_DAYS = 90
DEPLOY_KEY_ROTATION_DAYS = DEPLOY_KEY_LIFETIME_DAYS // 2

# Where GitLab CI jobs log in to Vault (JWT auth with their id_token), shared with the Vault side.
VAULT_CI_AUTH_PATH = "jwt-gitlab"

ARGOCD_REPOSITORY_LABEL = {"argocd.argoproj.io/secret-type": "repository"}


def ci_role(tenant: str) -> str:
    """The Vault role a tenant's CI jobs log in with."""
    return f"{tenant}-ci"


def app_project_name(tenant: str, environment: str) -> str:
    """The tenant's ArgoCD AppProject for an environment."""
    return f"{tenant}-{environment}"


def ssh_url(ssh_host: str, tenant: str, project: str) -> str:
    return f"git@{ssh_host}:{tenant}/{project}.git"


def deploy_key_path(tenant: str, project: str) -> str:
    """Where the private half of an ops project's deploy key is kept (under the `tenants` KV mount)."""
    return f"{tenant}/deploy-keys/{project}"


def expires_after(rfc3339: str, days: int) -> str:
    """`rfc3339` plus `days`, in the form the GitLab API takes (`2026-04-01T00:00:00Z`)."""
    start = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return (start + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class TenantRepositoriesArgs:
    tenant: str
    members: TenantMembers
    platform: TenantPlatform  # needs .gitlab (with .users), .vault, .harbor and .argocd (with .webhook_secret)
    webhook_url: str  # ArgoCD's webhook endpoint: https://argocd.<domain>/api/webhook
    protect: bool = False  # the group and projects hold the tenant's history: protect them on real stacks
    # Where and as whom CI jobs log in to Vault (must match the Vault side's GitLab JWT mount and CI role).
    vault_ci_auth_path: str = VAULT_CI_AUTH_PATH
    vault_ci_role: str | None = None  # default: ci_role(tenant)
    virtual: bool = False  # isolation vcluster: the starter manifests name what the virtual cluster syncs to the host
    ops_layout: OpsLayout = OpsLayout.ENVIRONMENTS  # where the ops repositories keep their manifests


class TenantRepositories(pulumi.ComponentResource):
    group: gitlab.Group
    projects: dict[str, gitlab.Project]  # app, ops, ops-dev
    argocd_repositories: dict[str, k8s.core.v1.Secret]  # "dev"/"prod" -> ArgoCD repository Secret
    ops_repo_urls: dict[str, str]  # "dev"/"prod" -> ssh URL of ops-dev/ops
    project_paths: list[str]  # <tenant>/app, <tenant>/ops, <tenant>/ops-dev

    def __init__(self, name: str, args: TenantRepositoriesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:TenantRepositories", name, None, opts)
        platform = args.platform
        if platform.gitlab is None or platform.vault is None or platform.argocd is None or platform.harbor is None:
            raise ValueError(f"tenant {args.tenant}: repositories need GitLab, Vault, Harbor and ArgoCD on the platform")
        if platform.argocd.webhook_secret is None:
            raise ValueError(f"tenant {args.tenant}: the ArgoCD webhook secret is missing; GitLab hooks must authenticate")
        tenant, gl = args.tenant, platform.gitlab
        on_gitlab = pulumi.ResourceOptions(parent=self, provider=gl.provider)
        # Removing a tenant (an offboarding entry in stack config) leaves its group in GitLab and
        # archives its projects: history is never deleted by a config change.
        kept = pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(protect=args.protect, retain_on_delete=True))

        self.group = gitlab.Group(
            f"{name}-group",
            name=tenant,
            path=tenant,
            description=f"Tenant {tenant}: managed by platform-bootstrap",
            visibility_level="private",
            default_branch=MAIN,
            request_access_enabled=False,  # members come from the stack config only
            # GitLab's default lets Developers create projects here, which the group's runners would serve with none of
            # the settings below (the developer a Maintainer there): only the tenant's owners create projects or subgroups.
            project_creation_level="maintainer",
            subgroup_creation_level="owner",
            opts=kept,
        )
        group_id = self.group.id.apply(int)

        self._members(name, args, gl, group_id, on_gitlab)
        self.projects = self._projects(name, args, platform.harbor, platform.vault, group_id, on_gitlab, kept)
        self.argocd_repositories, self.ops_repo_urls = {}, {}
        for project_name, environment in OPS_ENVIRONMENTS.items():
            self.ops_repo_urls[environment] = self._ops_repository(
                name, args, gl, platform.argocd, platform.vault, project_name, environment, on_gitlab
            )

        self.project_paths = [f"{tenant}/{p}" for p in PROJECTS]
        self.register_outputs({"opsRepoUrls": self.ops_repo_urls, "projectPaths": self.project_paths})

    def _members(
        self, name: str, args: TenantRepositoriesArgs, gl: GitLabTenancy, group_id: pulumi.Output[int],
        on_gitlab: pulumi.ResourceOptions,
    ) -> None:
        """The tenant's people in its group, each at the access level of their role."""
        tenant = args.tenant
        for role in ROLES:
            for user in sorted(args.members.of(role)):
                if user not in gl.users:
                    raise ValueError(f"tenant {tenant}: {role} member {user!r} has no GitLab user (PlatformUsers)")
                account = cast(pulumi.CustomResource, gl.users[user])
                # Named by user alone: moving someone to another role updates the membership in place.
                gitlab.GroupMembership(
                    f"{name}-member-{user}",
                    group_id=group_id,
                    user_id=account.id.apply(int),
                    access_level=ACCESS_LEVELS[role],
                    opts=on_gitlab,
                )

    def _projects(
        self, name: str, args: TenantRepositoriesArgs, harbor: HarborTenancy, vault: VaultTenancy,
        group_id: pulumi.Output[int], on_gitlab: pulumi.ResourceOptions, kept: pulumi.ResourceOptions,
    ) -> dict[str, gitlab.Project]:
        """The app, ops and ops-dev projects with their starter files, protected main and CI variables."""
        tenant = args.tenant

        def project(path: str, forked_from: gitlab.Project | None = None) -> gitlab.Project:
            return gitlab.Project(
                f"{name}-{path}",
                name=path,
                path=path,
                namespace_id=group_id,
                visibility_level="private",
                default_branch=MAIN,
                # A README creates `main` (nobody may push to it later); a fork copies it instead.
                initialize_with_readme=None if forked_from else True,
                forked_from_project_id=forked_from.id.apply(int) if forked_from else None,
                # Ops projects: the bump job pushes a branch with its job token (GitLab >= 17.2).
                ci_push_repository_for_job_token_allowed=True if path in OPS_ENVIRONMENTS else None,
                ci_pipeline_variables_minimum_override_role=PIPELINE_VARIABLES_ROLE[path],
                archive_on_destroy=True,
                opts=pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(protect=args.protect)),
            )

        ops = project(OPS_PROJECT)
        projects = {APP_PROJECT: project(APP_PROJECT), OPS_PROJECT: ops, OPS_DEV_PROJECT: project(OPS_DEV_PROJECT, forked_from=ops)}

        variables = {
            "HARBOR_REGISTRY": harbor.host,
            "HARBOR_PROJECT": tenant,
            "VAULT_ADDR": vault.url,
            "VAULT_AUTH_PATH": args.vault_ci_auth_path,
            "VAULT_ROLE": args.vault_ci_role or ci_role(tenant),
        }
        starter = starter_files(tenant, harbor.host, args.platform.supply_chain.severity, args.platform.apps_domain, args.virtual,
                                args.ops_layout)
        for project_name, resource in projects.items():
            _starter_then_protected(f"{name}-{project_name}", resource, starter[project_name], project_name == APP_PROJECT, on_gitlab)
            # Only the project's own jobs may use their job token on it: another project's job (another
            # tenant's, run by someone who is a member of both) gets nothing, and a project owner who
            # opens the allowlist is undone by the next `pulumi up` (the drift check reports it).
            gitlab.ProjectJobTokenScopes(
                f"{name}-{project_name}-job-token-scope", project=resource.id, enabled=True,
                target_project_ids=[], target_group_ids=[], opts=on_gitlab,
            )
            for key, value in variables.items():
                gitlab.ProjectVariable(
                    f"{name}-{project_name}-{key.lower()}",
                    project=resource.id,
                    key=key,
                    value=value,
                    masked=False,
                    protected=False,  # feature branches build too; nothing here is secret
                    raw=True,
                    opts=on_gitlab,
                )
        return projects

    def _ops_repository(
        self, name: str, args: TenantRepositoriesArgs, gl: GitLabTenancy, argocd: ArgoTenancy, vault: VaultTenancy,
        project_name: str, environment: str, on_gitlab: pulumi.ResourceOptions,
    ) -> str:
        """ArgoCD's read-only way into one ops project: a rotated deploy key, its repository Secret, a push webhook."""
        tenant, inventory = args.tenant, args.platform.inventory
        resource = self.projects[project_name]
        url = ssh_url(gl.ssh_host, tenant, project_name)
        self.ops_repo_urls[environment] = url
        prefix = f"{name}-{project_name}"

        rotation = time.Rotating(
            f"{prefix}-key-rotation", rotation_days=DEPLOY_KEY_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self)
        )
        key = rotated_key(f"{prefix}-deploy-key", rotation, self)
        gitlab.DeployKey(
            f"{prefix}-deploy-key",
            project=resource.id,
            title=f"argocd-{environment}",
            key=key.public_key_openssh.apply(lambda k: k.strip()),
            can_push=False,
            # Expires on its own should rotation stop; the key changes (and so does this) every 45 days.
            expires_at=rotation.rfc3339.apply(lambda t: expires_after(t, DEPLOY_KEY_LIFETIME_DAYS)),
            opts=on_gitlab,
        )
        vault.write(
            f"{prefix}-deploy-key",
            deploy_key_path(tenant, project_name),
            {"sshPrivateKey": key.private_key_openssh, "sshPublicKey": key.public_key_openssh, "url": url},
            self,
        )
        self.argocd_repositories[environment] = k8s.core.v1.Secret(
            f"{prefix}-argocd-repository",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"repo-{tenant}-{project_name}",
                namespace=argocd.namespace,
                labels={**ARGOCD_REPOSITORY_LABEL, TENANT_LABEL: tenant},
            ),
            type="Opaque",
            string_data={
                "type": "git",
                "url": url,
                "project": app_project_name(tenant, environment),
                "sshPrivateKey": key.private_key_openssh,
            },
            opts=pulumi.ResourceOptions(parent=self, provider=argocd.provider, depends_on=[argocd.release]),
        )
        if inventory is not None:
            inventory.register(refreshed(
                f"read-only deploy key of {tenant}/{project_name}",
                issuer="Pulumi (pulumi-tls ed25519), registered in GitLab",
                holder=f"ArgoCD (repository secret repo-{tenant}-{project_name}) and Vault",
                scope=f"read {tenant}/{project_name} over SSH",
                every_days=DEPLOY_KEY_ROTATION_DAYS,
                lifetime_days=DEPLOY_KEY_LIFETIME_DAYS,
                resources=(f"{prefix}-deploy-key",),
            ))
        # ArgoCD refreshes the applications of this repository on a push instead of polling.
        gitlab.ProjectHook(
            f"{prefix}-argocd-webhook",
            project=resource.id,
            url=args.webhook_url,
            token=pulumi.Output.secret(argocd.webhook_secret),
            push_events=True,
            tag_push_events=False,
            merge_requests_events=False,
            enable_ssl_verification=True,
            opts=on_gitlab,
        )
        return url


def _starter_then_protected(
    prefix: str, project: gitlab.Project, files: Mapping[str, str], release_tags: bool, on_gitlab: pulumi.ResourceOptions,
) -> None:
    """The starter `files` on main, then main protected (and, where `release_tags`, the release tags)."""
    written = [
        gitlab.RepositoryFile(
            f"{prefix}-starter-{path.strip('.').replace('.', '-').replace('/', '-')}",
            project=project.id,
            branch=MAIN,
            file_path=path,
            content=content,
            encoding="text",
            overwrite_on_create=False,  # never replace what a tenant already has
            commit_message=f"Add {path} (platform starter)",
            # Written once: later edits are the tenant's. Dropping one from the program leaves the
            # file (deleting it would be a commit to the protected main, which fails anyway).
            opts=pulumi.ResourceOptions.merge(
                on_gitlab, pulumi.ResourceOptions(ignore_changes=["content"], retain_on_delete=True)
            ),
        )
        for path, content in files.items()
    ]
    gitlab.BranchProtection(
        f"{prefix}-main",
        project=project.id,
        branch=MAIN,
        push_access_level=PUSH_ACCESS_LEVEL,
        merge_access_level=MERGE_ACCESS_LEVEL,
        allow_force_push=False,
        # Nobody may push to a protected main, so the starter files go in first.
        opts=pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(depends_on=written)),
    )
    if release_tags:
        gitlab.TagProtection(
            f"{prefix}-release-tags", project=project.id, tag=RELEASE_TAGS, create_access_level=MERGE_ACCESS_LEVEL, opts=on_gitlab,
        )
