"""Harbor robot accounts that expire: tenants' push and pull robots and the platform's promoter.

Each expires after ROBOT_LIFETIME_DAYS and is re-created past half its life (`expiring_robot`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumiverse_harbor as harbor
import pulumiverse_time as time

from components.inventory import Credential, issued_token

ROBOT_LIFETIME_DAYS = 30
ROBOT_ROTATION_DAYS = ROBOT_LIFETIME_DAYS // 2
ROBOT_ROTATION = f"replaced by `pulumi up --refresh` past {ROBOT_ROTATION_DAYS} days"  # for the credential inventory


def robot_credential(what: str, holder: str, scope: str, resource_name: str) -> Credential:
    """The inventory entry of an `expiring_robot` (`resource_name`): Harbor issues it for ROBOT_LIFETIME_DAYS."""
    return issued_token(what, "Harbor", holder, scope, ROBOT_LIFETIME_DAYS, ROBOT_ROTATION, resources=(resource_name,))


def project_permission(project: pulumi.Input[str], accesses: Sequence[tuple[str, str]]) -> harbor.RobotAccountPermissionArgs:
    """A robot's permission on one project: (action, resource) pairs, e.g. ("push", "repository")."""
    return harbor.RobotAccountPermissionArgs(
        kind="project",
        namespace=project,
        accesses=[harbor.RobotAccountPermissionAccessArgs(action=action, resource=resource) for action, resource in accesses],
    )


def expiring_robot(
    resource_name: str,
    robot_name: str,
    level: str,
    description: str,
    permissions: Sequence[harbor.RobotAccountPermissionArgs],
    parent: pulumi.Resource,
    provider: pulumi.ProviderResource,
) -> harbor.RobotAccount:
    """A robot account that expires after ROBOT_LIFETIME_DAYS and is replaced at half its life.

    A `pulumiverse_time.Rotating` of ROBOT_ROTATION_DAYS is the robot's `replacement_trigger`:
    the first `pulumi up --refresh` past it deletes the robot and creates it again (Harbor robot
    names are unique, hence delete before replace) with a new secret and a new expiry; whatever
    stores `.secret` (Vault) is updated in the same run. The rotation time is in the description,
    so Harbor's UI shows which rotation a robot belongs to.
    """
    rotation = time.Rotating(
        f"{resource_name}-rotation", rotation_days=ROBOT_ROTATION_DAYS, opts=pulumi.ResourceOptions(parent=parent)
    )
    return harbor.RobotAccount(
        resource_name,
        name=robot_name,
        level=level,
        description=rotation.rfc3339.apply(lambda t: f"{description}, rotation of {t}"),
        duration=ROBOT_LIFETIME_DAYS,
        permissions=list(permissions),
        opts=pulumi.ResourceOptions(
            parent=parent,
            provider=provider,
            replacement_trigger=rotation.rfc3339,
            delete_before_replace=True,  # the name is taken until the old robot is gone
        ),
    )
