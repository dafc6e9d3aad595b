"""Each stack's Vault takes the platform pipeline's jobs of that stack alone, told apart by their GitLab environments,
whatever the stack is called.

The attacker runs a job on protected `main` of the platform project (a Maintainer: a "Run pipeline" with variables of
their own, BASH_ENV among them, a schedule they own, a deploy they may start) and picks its ID token's audience, and so
the Vault it logs in to, by `VAULT_ADDR`. Held against the real OpenBao with each stack's plan applied (`plan_vaults`),
and a third stack's plan rendered from a copy of Pulumi.dev.yaml."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import yaml

from components.image_promotion import VAULT_POLICY as PROMOTE_POLICY, VAULT_ROLE as PROMOTE_ROLE
from components.vault_federation import DEPLOY_ROLE, DRIFT_ROLE, GITLAB_PATH, PREVIEW_ROLE, SCHEDULED_DEPLOY_ROLE
from platformctl.render import render
from tests.conftest import ROOT, STACKS
from tests.openbao import BaoServer, PlanVault
from tests.test_vault_access import gitlab_id_token
from tests.test_vault_attacks import DEPLOY_PROJECT, REFUSED

SOURCES = ("push", "web", "schedule")  # what a job on protected main runs in (a manual play is its pipeline's)


def _login(vault: PlanVault, role: str, token: str) -> dict[str, Any] | None:
    try:
        return vault.login(GITLAB_PATH, role, token)
    except REFUSED:
        return None


def _main_job(vault: PlanVault, source: str, environment: str | None, protected: bool = True, action: str = "start") -> str:
    """The ID token of a job on protected main of the platform project."""
    return gitlab_id_token(vault, DEPLOY_PROJECT, "main", "branch", True, source, environment, protected, action)


@pytest.mark.parametrize("stack", STACKS)
def test_only_its_stacks_promote_job_gets_the_promoter_robot_and_the_promotion_key(plan_vaults: Callable[[str], PlanVault],
                                                                                   stack: str) -> None:
    """platform-promote-image reads Harbor's promoter robot (push to `approved`) and signs with platform-cosign, the key
    every cluster's image verifier trusts for `approved`. Was open: the role bound no environment, so every job on main
    with a Vault ID token (deploy-*, plan-*, drift-*, rebuild-dev, a "Run pipeline" with BASH_ENV) logged in as it, in
    either stack's Vault (dev's jobs into prod's). Now the role takes the jobs of its stack's own protected environment
    promote/<stack> alone, started as a deployment (environment_action start: GitLab has considered letting Developers
    run access and verify jobs in protected environments, gitlab-org/gitlab#437142)."""
    vault = plan_vaults(stack)
    other = {"dev": "prod", "prod": "dev"}[stack]
    attempts = {(source, environment, True, "start") for source in SOURCES
                for environment in (None, stack, f"plan/{stack}", other, f"plan/{other}", f"promote/{other}")}
    attempts |= {("push", f"promote/{stack}", False, "start"), ("push", f"promote/{stack}", True, "access"),
                 ("push", f"promote/{stack}", True, "verify")}
    admitted = sorted((attempt for attempt in attempts if _login(vault, PROMOTE_ROLE, _main_job(vault, *attempt))),
                      key=lambda attempt: tuple(map(str, attempt)))
    assert not admitted, f"{stack}'s Vault hands the promoter robot and key to (source, environment, protected, action): {admitted}"
    for source in SOURCES:  # promote-image-<stack> played in a push or "Run pipeline" pipeline; promote-trivy-db-<stack>'s schedule
        auth = _login(vault, PROMOTE_ROLE, _main_job(vault, source, f"promote/{stack}"))
        assert auth is not None and set(auth["token_policies"]) == {"default", PROMOTE_POLICY}, source
        assert 0 < auth["lease_duration"] <= 300
        vault.client(auth["client_token"]).auth.token.revoke_self()  # as the job does: the session's Vault keeps no promoter token


def _values(claim: str | list[str]) -> list[str]:
    return claim if isinstance(claim, list) else claim.split(",")


@pytest.fixture(scope="module")
def staging_vault(tmp_path_factory: pytest.TempPathFactory, loopback_tls: Any, identity_peer: Any) -> PlanVault:
    """A third stack, `staging`, rendered from a copy of Pulumi.dev.yaml with a domain of its own, on an OpenBao of its own."""
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["platform:domain"] = "staging.platform.example.com"
    doc["config"].pop("platform:pipeline", None)  # dev's rebuild schedule: no rebuild-staging job
    stack_file = tmp_path_factory.mktemp("staging") / "Pulumi.staging.yaml"
    stack_file.write_text(yaml.safe_dump(doc))
    plan = render(stack_file, "staging").plan
    server = BaoServer(tmp_path_factory.mktemp("openbao-staging"), loopback_tls).start()
    try:
        yield PlanVault.apply(server, plan["resources"], identity_peer)
    finally:
        server.stop()


def test_a_stack_of_another_name_gets_its_own_ci_roles_bound_to_its_own_environments(staging_vault: PlanVault) -> None:
    """Was open: the roles' environments were tuples naming dev and prod, filtered by the stack's name, so a `staging`
    stack's Vault had no deploy, drift or preview role (nothing said so): no pipeline could log in to it, and its
    promoter took any job on main. Now each role's environments are made from the stack's name."""
    root = staging_vault.client(staging_vault.root_token)
    roles = {name: root.read(f"auth/{GITLAB_PATH}/role/{name}")["data"] for name in root.list(f"auth/{GITLAB_PATH}/role")["data"]["keys"]}
    roles = {name: role for name, role in roles.items() if _values(role["bound_claims"]["project_path"]) == [DEPLOY_PROJECT]}  # not tenants'
    bound = {name: sorted(_values(role["bound_claims"].get("environment", "(any)"))) for name, role in roles.items()}
    assert bound == {DEPLOY_ROLE: ["plan/staging", "staging"], DRIFT_ROLE: ["plan/staging"], PREVIEW_ROLE: ["preview/staging"],
                     PROMOTE_ROLE: ["promote/staging"]}, f"staging's Vault binds: {bound}"
    assert SCHEDULED_DEPLOY_ROLE not in roles  # no rebuild schedule of staging (.gitlab-ci.yml rebuild-dev)
    # deploy-staging, as a user adds it (.gitlab-ci.yml deploy-dev with `staging`), logs in.
    assert _login(staging_vault, DEPLOY_ROLE, _main_job(staging_vault, "push", "staging")) is not None
