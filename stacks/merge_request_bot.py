"""Composition of the merge-request bot (components/merge_request_bot.py): beside the platform
project, on the platform's runner for protected refs, once `platform:pipeline.groupId` names the group."""

from __future__ import annotations

from components import gitlab_runner
from components.gitlab import SLICE as GITLAB
from components.inventory import CredentialInventory
from components.merge_request_bot import MergeRequestBot, MergeRequestBotArgs
from stacks.config import PlatformConfig
from stacks.control_plane import ControlPlane


def build_merge_request_bot(config: PlatformConfig, plane: ControlPlane, inventory: CredentialInventory) -> MergeRequestBot | None:
    """The bot, when the config names the platform's group (stacks/config.py checks its runner is on)."""
    platform_gitlab, runners = plane.parts.get(GITLAB), plane.parts.get(gitlab_runner.SLICE)
    if config.pipeline.group_id is None or platform_gitlab is None or runners is None:
        return None
    return MergeRequestBot("merge-request-bot", MergeRequestBotArgs(
        platform_project=config.pipeline.project_path,
        group_id=config.pipeline.group_id,
        protected_runner_id=runners.protected.runner.id,
        provider=platform_gitlab.provider,
        inventory=inventory,
    ))
