"""Composition of the merge-request bot (components/merge_request_bot.py): in the platform's group
(components/gitlab.py), on the platform's runner for protected refs, so with those two."""

from __future__ import annotations

from components import gitlab_runner
from components.gitlab import SLICE as GITLAB
from components.inventory import CredentialInventory
from components.merge_request_bot import MergeRequestBot, MergeRequestBotArgs
from stacks.config import PlatformConfig
from stacks.control_plane import ControlPlane


def build_merge_request_bot(config: PlatformConfig, plane: ControlPlane, inventory: CredentialInventory) -> MergeRequestBot | None:
    """The bot, once GitLab has the platform's group and the platform's runners exist (gitlabRunner.platformProjectId)."""
    platform_gitlab, runners = plane.parts.get(GITLAB), plane.parts.get(gitlab_runner.SLICE)
    if platform_gitlab is None or platform_gitlab.platform_group is None or runners is None:
        return None
    return MergeRequestBot("merge-request-bot", MergeRequestBotArgs(
        platform_project=config.pipeline.project_path,
        group=platform_gitlab.platform_group,
        protected_runner_id=runners.protected.runner.id,
        provider=platform_gitlab.provider,
        inventory=inventory,
    ))
