"""An attacker's review of GitLab's instance settings as the program declares them: the plan's
`gitlab.ApplicationSettings` (held by every `pulumi up`, so a change in the admin area is reverted),
the chart's `appConfig` and the pulumi-gitlab resources, against the defaults of the pinned GitLab
(18.9: gitlab-org/gitlab app/models/application_setting_implementation.rb `defaults`, and
config/initializers/1_settings.rb for the `Settings.gitlab[...]` they read). Each test is one attempt by
someone who reaches GitLab's ingress, signs in while in no tenant, is another tenant's developer or
holds one token; each asserts what stops it and that the platform's own flows keep their way in.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from components.gitlab import OIDC_PROVIDER
from components.oidc_sessions import SESSION_MAX_SECONDS

SETTINGS = "gitlab:index/applicationSettings:ApplicationSettings"


def of_type(plan: dict, kind: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in plan["resources"] if r["type"] == kind]


def settings(plan: dict) -> dict[str, Any]:
    """The one ApplicationSettings resource's inputs."""
    [found] = of_type(plan, SETTINGS)
    return found


def app_config(plan: dict) -> dict[str, Any]:
    [release] = [r for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab"]
    return release["values"]["global"]["appConfig"]


def test_sign_up_stays_off_after_the_first_installation(plan: dict) -> None:
    """Anyone who reaches GitLab's ingress registers at /users/sign_up, with a password and no IdP.
    The chart's `initialDefaults.signupEnabled` only writes gitlab.yml, which GitLab reads when it
    creates its settings row (`signup_enabled: Settings.gitlab['signup_enabled']`, true unless set):
    after the first installation one click in the admin area opens sign-up for good."""
    assert app_config(plan)["initialDefaults"] == {"signupEnabled": False}
    assert settings(plan)["signupEnabled"] is False


def test_no_password_opens_an_account_beside_openunison(plan: dict) -> None:
    """bob, while still employed, gave his GitLab account a password (its profile's password page,
    which lets an account whose password GitLab made up set one, or "Forgot your password?"): once the
    IdP drops him, the password still opens his GitLab account on the web form (`?auto_sign_in=false`
    shows it past autoSignInWithProvider) and for git over HTTPS, past OpenUnison and its MFA; and the
    form answers anyone guessing root's. Or he never signs out: his "Remember me" session lives on and
    makes him a fresh personal access token whenever the last one nears its end. Defaults:
    `password_authentication_enabled_for_web` is `Settings.gitlab['signin_enabled']` (true), `_for_git`
    true. Both off; git still takes job, deploy and personal access tokens
    (Gitlab::Auth.find_for_git_client checks them before any password)."""
    found = settings(plan)
    assert found["passwordAuthenticationEnabledForWeb"] is False
    assert found["passwordAuthenticationEnabledForGit"] is False
    omniauth = app_config(plan)["omniauth"]  # the way in that stays: OpenUnison
    assert omniauth["enabled"] and omniauth["autoSignInWithProvider"] == OIDC_PROVIDER
    assert omniauth["allowSingleSignOn"] == [OIDC_PROVIDER]
    # Nor does a session outlive the sign-in: it ends with OpenUnison's (default: 10080 minutes of
    # inactivity, `Settings.gitlab['session_expire_delay']`, or never with "Remember me", default on).
    assert found["rememberMeEnabled"] is False and found["sessionExpireFromInit"] is True
    assert found["sessionExpireDelay"] * 60 == SESSION_MAX_SECONDS
    # The program's admin token needs no password: its Job runs gitlab-rails in the toolbox.
    [script] = [c["data"]["ensure-admin-token.sh"] for c in of_type(plan, "kubernetes:core/v1:ConfigMap")
                if c["metadata"]["name"] == "gitlab-platform-bot-script"]
    assert "gitlab-rails runner" in script


def test_a_leaked_registration_token_registers_no_runner(plan: dict) -> None:
    """A former owner of tenant payments kept the group's runner registration token (CI/CD settings; it
    lives until someone resets it) and registers a runner with the protected tag and `--access-level
    ref_protected`: it takes payments' release jobs, their job tokens and Vault ID tokens. Default
    `allow_runner_registration_token: true`. Off: the program registers every runner through the
    runner-creation API (UserRunner), and the chart's Secret carries no registration token. New access
    tokens must expire (`require_personal_access_token_expiry`, on by default since GitLab 17.3: held).
    A feed token, which never expires and travels in a calendar or RSS URL someone pasted into a ticket,
    reads the issue and merge request feeds of its owner's projects (`disable_feed_token` default false): off."""
    found = settings(plan)
    assert found["allowRunnerRegistrationToken"] is False
    assert found["requirePersonalAccessTokenExpiry"] is True
    assert found["disableFeedToken"] is True
    runners = of_type(plan, "gitlab:index/userRunner:UserRunner")
    assert {r["runnerType"] for r in runners} == {"group_type", "project_type"}
    charts = [r["values"] for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab-runner"]
    assert len(charts) == len(runners)
    assert all("runnerRegistrationToken" not in v and v["runners"]["secret"] == "gitlab-runner-token" for v in charts)


def test_no_account_registers_an_oauth_application(plan: dict) -> None:
    """mallory, in no tenant, registers an OAuth application under her profile ("Platform dashboard",
    scope `api`, her redirect URI) and sends a payments owner its authorize link, on the platform's own
    GitLab host. The owner, signed in through SSO, sees GitLab's real consent page and authorizes: mallory
    holds an `api` token as the owner (merges, release tags) and a refresh token that renews it long after
    every session and sign-in has ended. Default `user_oauth_applications: true` (the column's default):
    off, so only an administrator registers applications; the platform's sign-ins go through OpenUnison,
    not GitLab's OAuth, and the program declares no GitLab application."""
    assert settings(plan)["userOauthApplications"] is False
    assert not of_type(plan, "gitlab:index/application:Application")


def test_an_account_in_no_tenant_owns_no_project(plan: dict) -> None:
    """mallory, in no tenant, signs in through OpenUnison, and GitLab creates her account
    (allowSingleSignOn, blockAutoCreatedUsers false). With a personal project (`default_projects_limit`
    100000 in 1_settings.rb) she would be its owner: webhooks, integrations and push mirrors from
    GitLab's network position, imports, a fork of anything she can read. New accounts get no personal
    projects, and accounts whose highest role is Guest or none (hers, made before) create none; the
    tenants' members, declared by the program, have pulumi-gitlab's `projects_limit` 0."""
    assert app_config(plan)["omniauth"]["blockAutoCreatedUsers"] is False  # accounts for anyone the IdP knows
    found = settings(plan)
    assert found["defaultProjectsLimit"] == 0
    assert found["allowProjectCreationForGuestAndBelow"] is False
    assert found["canCreateGroup"] is False
    users = of_type(plan, "gitlab:index/user:User")
    assert users and all(u.get("projectsLimit", 0) == 0 for u in users)
    # A project outside the tenants' groups (a fork into a namespace of her own) would find no runner:
    # there are no instance runners, and the project runners are locked to the platform's projects.
    runners = of_type(plan, "gitlab:index/userRunner:UserRunner")
    assert runners and all(r["runnerType"] in ("group_type", "project_type") and r["locked"] for r in runners)


def test_another_tenants_people_read_no_internal_project(plan: dict) -> None:
    """An owner of payments sets `payments/app` or a snippet to `internal`, which GitLab shows to every
    signed-in account: billing's developers and accounts in no tenant read and clone it. Default
    restricted levels: none (`Settings.gitlab['restricted_visibility_levels']`, []). Only an
    administrator may choose `internal` or `public`; the program's groups and projects are private."""
    assert sorted(settings(plan)["restrictedVisibilityLevels"]) == ["internal", "public"]
    declared = of_type(plan, "gitlab:index/group:Group") + of_type(plan, "gitlab:index/project:Project")
    assert declared and {r["visibilityLevel"] for r in declared} == {"private"}


def metallb_pools(plan: dict) -> list[str]:
    return [a for r in plan["resources"] if r["type"].endswith(":IPAddressPool") for a in r["inputs"]["spec"]["addresses"]]


def test_a_webhook_reaches_no_platform_address_but_argocds(plan: dict) -> None:
    """A tenant's owner (Maintainer of its projects) adds a project hook or integration to
    http://vault.vault.svc:8200, a cluster's API server, http://169.254.169.254/ (the node's IAM role)
    or harbor-core.harbor.svc, sent from sidekiq, whose egress no NetworkPolicy narrows. GitLab's URL
    blocker refuses local and link-local addresses unless `allow_local_requests_from_web_hooks_and_services`
    (default false; held), and for system hooks unless `allow_local_requests_from_system_hooks` (default
    true: off), with DNS rebinding protection (held); mirrors, which a Maintainer points anywhere, are
    for administrators, and so is a direct-transfer import from another GitLab's URL (default off; held). The one exception is by name and port: ArgoCD's webhook host, which on dev is
    on MetalLB's private pool, where GitLab would refuse the program's own hooks ("Requests to the
    local network are not allowed")."""
    found = settings(plan)
    assert found["allowLocalRequestsFromWebHooksAndServices"] is False
    assert found["allowLocalRequestsFromSystemHooks"] is False
    assert found["dnsRebindingProtectionEnabled"] is True
    assert found["mirrorAvailable"] is False and found["bulkImportEnabled"] is False
    hooks = [urlsplit(h["url"]) for h in of_type(plan, "gitlab:index/projectHook:ProjectHook")]
    assert hooks and {h.scheme for h in hooks} == {"https"}
    assert found["outboundLocalRequestsWhitelists"] == sorted({f"{h.hostname}:{h.port or 443}" for h in hooks})
    assert found["outboundLocalRequestsWhitelists"] == [f"argocd.{plan_domain(plan)}:443"]
    if plan["stack"] == "dev":  # why the exception: the ingress's address is a private one
        pools = metallb_pools(plan)
        assert pools and all(ipaddress.ip_address(p.split("-")[0].split("/")[0]).is_private for p in pools)


def plan_domain(plan: dict) -> str:
    """The stack's platform:domain, as GitLab's host names it."""
    [release] = [r for r in of_type(plan, "kubernetes:helm.sh/v3:Release") if r["chart"] == "gitlab"]
    return release["values"]["global"]["hosts"]["domain"]


def test_a_weak_ssh_key_opens_no_repository(plan: dict) -> None:
    """A tenant owner still uploads the 1024-bit RSA (or DSA) key of an old laptop: whoever factors it
    (or recovers a DSA key from one reused signature nonce) pushes and merges as the owner over SSH.
    GitLab's default key restrictions are 0, any size (`default_min_key_size`, outside FIPS mode).
    DSA is refused and RSA needs 2048 bits; every key the program itself registers or serves (ArgoCD's
    deploy keys, gitlab-shell's host keys) is ed25519 or ECDSA P-256, which the restrictions leave alone."""
    found = settings(plan)
    assert found["dsaKeyRestriction"] == -1 and found["rsaKeyRestriction"] == 2048
    assert "ecdsaKeyRestriction" not in found and "ed25519KeyRestriction" not in found
    ssh = [r for r in plan["resources"] if r["type"] == "tls:index/privateKey:PrivateKey"
           and (r["name"].endswith("-deploy-key") or r["name"].startswith("gitlab-ssh-host-keys-"))]
    assert {r["name"].rpartition("-")[2] for r in ssh} >= {"key", "ed25519", "ecdsa"}  # deploy keys and both host keys
    assert {(r["inputs"]["algorithm"], r["inputs"].get("ecdsaCurve")) for r in ssh} == {("ED25519", None), ("ECDSA", "P256")}
