"""GitLab accounts for everyone a tenant names, before they first sign in.

Memberships need users that exist, so each distinct user id in the tenants' role lists gets a
`gitlab.User`: username = the user id, e-mail = `<user id>@<email domain>`, confirmed, with a
random password nobody knows. People sign in only through OpenUnison (OmniAuth OIDC); GitLab
finds the account by its `openid_connect` identity, whose extern_uid is the user id (the `sub`
OpenUnison asserts), declared here with the account. Never by e-mail (GitLab's autoLinkUser): the
e-mail comes from the upstream source, where a person may be able to set anyone's address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import pulumi
import pulumi_gitlab as gitlab

from components.gitlab import OIDC_PROVIDER

# What GitLab accepts as a username: letters, digits, '_', '-', '.', not starting with
# '-' or '.', not ending with '.', '.git' or '.atom'.
_GITLAB_USERNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def gitlab_username_problem(user: str) -> str | None:
    """Why `user` cannot be a GitLab username, or None."""
    if not _GITLAB_USERNAME.match(user):
        return "only letters, digits, '_', '-' and '.' are allowed, starting with a letter, digit or '_'"
    if user.endswith((".", ".git", ".atom")):
        return "it may not end with '.', '.git' or '.atom'"
    return None


def distinct_users(*role_lists: Iterable[str]) -> list[str]:
    """Every user id named in any of the lists, once, sorted (stable resource order)."""
    return sorted({user for users in role_lists for user in users})


@dataclass(frozen=True)
class PlatformUsersArgs:
    user_ids: Iterable[str]  # every tenant's owners, developers and ops; repeats are fine
    email_domain: str  # platform:identity.emailDomain
    provider: pulumi.ProviderResource  # the gitlab.Provider of the platform's GitLab


class PlatformUsers(pulumi.ComponentResource):
    users: dict[str, gitlab.User]  # user id -> account

    def __init__(self, name: str, args: PlatformUsersArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("platform:tenant:PlatformUsers", name, None, opts)
        user_ids = distinct_users(args.user_ids)
        problems = [f"{user!r}: {problem}" for user in user_ids if (problem := gitlab_username_problem(user))]
        if problems:
            raise ValueError("user ids that cannot be GitLab usernames: " + "; ".join(problems))
        self.users = {
            user: gitlab.User(
                f"{name}-{user}",
                username=user,
                name=user,
                email=f"{user}@{args.email_domain}",
                force_random_password=True,  # sign-in is through OpenUnison only
                skip_confirmation=True,  # a confirmed e-mail, so the OIDC sign-in links to it
                is_admin=False,
                can_create_group=False,  # groups are tenants, declared here
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=args.provider,
                    # GitLab takes the display name from the identity provider at sign-in.
                    ignore_changes=["name"],
                ),
            )
            for user in user_ids
        }
        for user, account in self.users.items():
            # OpenUnison's `sub` is the user id: GitLab signs this person in to this account only.
            gitlab.UserIdentity(
                f"{name}-{user}-identity",
                user_id=account.id.apply(int),
                external_provider=OIDC_PROVIDER,  # GitLab's OmniAuth provider for OpenUnison
                external_uid=user,
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
            )
        self.register_outputs({"users": sorted(self.users)})
