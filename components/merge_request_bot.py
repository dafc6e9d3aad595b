"""The merge-request bot: the one place PLATFORM_MR_TOKEN lives, apart from the code that merge requests run.

A merge request's pipeline runs its branch's own `.gitlab-ci.yml`, so whatever variable its jobs can
read, the branch can print. The token that writes the merge-request note and reads approvals (for
`platformctl comment` and `platformctl access`) therefore lives in a project of its own in the
platform's group, `<group>/<project>-mr-bot`, declared with the platform's runners (its jobs run on
the one for protected refs), as a protected, masked and hidden variable of its protected
`main`, whose `.gitlab-ci.yml` the program writes (merge-request-bot.gitlab-ci.yml). The platform
project's pipelines trigger it (`trigger:`, strategy depend) and pass it nothing;
`platformctl mrbot` finds the pipeline that did and refuses all but the platform project's
merge-request pipelines into its default branch and that branch's own.

What GitLab requires and what the project closes:
* whoever triggers a pipeline on a protected branch must be allowed to push or merge to it
  (Ci::CreateDownstreamPipelineService): the platform group's Developers may merge into the bot's
  `main`, nobody but the program (its admin) pushes; merge requests, forks, issues are off, so there
  is nothing to merge;
* nobody may set pipeline variables (`no_one_allowed`): a trigger job that would pass one (a
  `BASH_ENV`, a `CI_DEBUG_TRACE`) gets no pipeline at all, nor does "Run pipeline" or a schedule with
  variables; without them, the bot's pipelines are refused by the file's workflow and by mrbot;
* its jobs run on the platform's runner for protected refs only (tag platform-protected), enabled
  here: a branch a Developer pushes to this project gets neither the token nor a runner;
* its CI/CD job token allowlist names nobody: another project's job (a merge request's, acting as its
  author) cannot use its job token on the bot project.

The token is a group access token of the platform's top-level group (Reporter, `api`): it must read
pipelines of both projects (GraphQL shows an upstream only to who can read it), and GitLab lets a
project access token's bot into no other project. Keep the group to these two projects. It lives
30 days and is replaced by `pulumi up --refresh` from day 15.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gitlab as gitlab
import pulumiverse_time as time

from components.inventory import CredentialInventory, refreshed
from components.tenant_gitlab import MAIN, expires_after
from components.versions import MR_BOT_IMAGE

TOKEN_VARIABLE = "PLATFORM_MR_TOKEN"  # platformctl/gitlab_api.py DEFAULT_TOKEN_ENV
TOKEN_LIFETIME_DAYS = 30
TOKEN_ROTATION_DAYS = TOKEN_LIFETIME_DAYS // 2
CI_FILE = ".gitlab-ci.yml"
CI_TEMPLATE = Path(__file__).with_name("merge-request-bot.gitlab-ci.yml")


def bot_project_path(platform_project: str) -> str:
    """The bot project, in the platform's top-level group (the program's: components/gitlab.py);
    .gitlab-ci.yml triggers `$CI_PROJECT_ROOT_NAMESPACE/$CI_PROJECT_NAME-mr-bot`."""
    return f"{platform_project.split('/', 1)[0]}/{platform_project.rpartition('/')[2]}-mr-bot"


def bot_pipeline(platform_project: str) -> str:
    """The bot project's `.gitlab-ci.yml`."""
    return (CI_TEMPLATE.read_text().replace('"@PLATFORM_PROJECT@"', json.dumps(platform_project))
            .replace('"@IMAGE@"', json.dumps(MR_BOT_IMAGE)))


@dataclass(frozen=True)
class MergeRequestBotArgs:
    platform_project: str  # the platform project's path, `group/project`
    group: gitlab.Group  # the platform's top-level group (components/gitlab.py): the bot project and its token's
    protected_runner_id: pulumi.Input[str]  # the platform's runner for protected refs (components/gitlab_runner.py)
    provider: pulumi.ProviderResource  # the platform's GitLab, as its admin
    inventory: CredentialInventory


class MergeRequestBot(pulumi.ComponentResource):
    project: gitlab.Project

    def __init__(self, name: str, args: MergeRequestBotArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:merge_request_bot:MergeRequestBot", name, None, opts)
        on_gitlab = pulumi.ResourceOptions(parent=self, provider=args.provider)
        group_path, _, project_path = bot_project_path(args.platform_project).rpartition("/")
        group_id = args.group.id.apply(int)
        self.project = gitlab.Project(
            f"{name}-project",
            name=project_path,
            path=project_path,
            namespace_id=group_id,
            description=f"The merge-request bot of {args.platform_project}: managed by platform-bootstrap",
            visibility_level="private",
            default_branch=MAIN,
            initialize_with_readme=True,  # creates main
            merge_requests_access_level="disabled",
            forking_access_level="disabled",
            issues_access_level="disabled",
            wiki_access_level="disabled",
            snippets_access_level="disabled",
            packages_enabled=False,
            shared_runners_enabled=False,  # the platform's protected runner only
            group_runners_enabled=False,
            public_jobs=False,
            request_access_enabled=False,
            # No pipeline variables, from anyone: not from a trigger job, "Run pipeline", a schedule or the API.
            ci_pipeline_variables_minimum_override_role="no_one_allowed",
            archive_on_destroy=True,
            opts=on_gitlab,
        )
        ci_file = gitlab.RepositoryFile(
            f"{name}-ci-file",
            project=self.project.id,
            branch=MAIN,
            file_path=CI_FILE,
            content=bot_pipeline(args.platform_project),
            encoding="text",
            overwrite_on_create=True,  # the program's file, not anyone's to keep
            commit_message=f"{CI_FILE}: the merge-request bot (platform-bootstrap)",
            opts=on_gitlab,
        )
        gitlab.BranchProtection(
            f"{name}-main",
            project=self.project.id,
            branch=MAIN,
            push_access_level="maintainer",  # the program's admin writes the file
            merge_access_level="developer",  # GitLab's condition for triggering a pipeline on main
            allow_force_push=False,
            opts=pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(depends_on=[ci_file])),  # the file first, as for tenants
        )
        # Only the bot's own jobs may use their job token on it: not a merge request's job, which acts as its author.
        gitlab.ProjectJobTokenScopes(
            f"{name}-job-token-scope", project=self.project.id, enabled=True, target_project_ids=[], target_group_ids=[],
            opts=on_gitlab,
        )
        gitlab.ProjectRunnerEnablement(
            f"{name}-runner", project=self.project.id, runner_id=pulumi.Output.from_input(args.protected_runner_id).apply(int),
            opts=on_gitlab,
        )
        self._token(name, args, group_id, group_path, on_gitlab)
        self.register_outputs({"projectPath": bot_project_path(args.platform_project)})

    def _token(self, name: str, args: MergeRequestBotArgs, group_id: pulumi.Output[int], group_path: str,
               on_gitlab: pulumi.ResourceOptions) -> None:
        """The group access token, rotated, in the bot project's protected, masked and hidden variable."""
        rotation = time.Rotating(f"{name}-token-rotation", rotation_days=TOKEN_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=self))
        token = gitlab.GroupAccessToken(
            f"{name}-token",
            group=group_id.apply(str),
            name="platform-mr-bot",
            description=f"{args.platform_project}'s merge-request notes and approvals (platform-bootstrap)",
            access_level="reporter",
            scopes=["api"],  # notes need api; Reporter reads approvals, pipelines and artifacts and writes notes, no code
            expires_at=rotation.rfc3339.apply(lambda t: expires_after(t, TOKEN_LIFETIME_DAYS)[:10]),
            opts=pulumi.ResourceOptions.merge(on_gitlab, pulumi.ResourceOptions(
                replacement_trigger=rotation.rfc3339, additional_secret_outputs=["token"])),
        )
        gitlab.ProjectVariable(
            f"{name}-token-variable",
            project=self.project.id,
            key=TOKEN_VARIABLE,
            value=pulumi.Output.secret(token.token),
            protected=True,  # main only: a branch pushed here gets nothing
            masked=True,
            hidden=True,
            raw=True,
            opts=on_gitlab,
        )
        args.inventory.register(refreshed(
            f"merge-request bot token ({TOKEN_VARIABLE})",
            issuer=f"GitLab (group access token of {group_path})",
            holder=f"the bot project {bot_project_path(args.platform_project)}'s protected, masked and hidden "
                   f"CI/CD variable {TOKEN_VARIABLE}, for jobs of its protected main only (no longer the platform project's)",
            scope=f"Reporter, api, on group {group_path}: merge-request notes and approvals, pipelines and artifacts",
            every_days=TOKEN_ROTATION_DAYS,
            lifetime_days=TOKEN_LIFETIME_DAYS,
            resources=(f"{name}-token",),
        ))
