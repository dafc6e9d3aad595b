"""Main's plans and the drift schedules run in environments of their own (plan/<stack>), so that preview/<stack> holds
merge requests' jobs alone and can require a deployment approval of every one of them.

Why: GitLab checks a protected environment against the job's user, who is the pipeline's (ee/app/services/ee/ci/
process_build_service.rb `enqueue`: `protected_from?(processable.user)`), not against who played it: a pipeline a maintainer
creates on a merge request (Run pipeline, a rebase, a merge train) runs a branch's job in preview/* that is not manual
without anyone playing it, with the preview's Pulumi, Vault and AWS tokens. A deployment approval blocks every such job
whoever created the pipeline (the same file's `process`: `needs_approval?` makes it manual and `actionize!`s it), but
would block main's plans and drift checks too while they shared preview/<stack>. Held against the CI file and the real
OpenBao with each stack's plan applied."""

from __future__ import annotations

import re
from typing import Any, Callable

import pytest
import yaml

from components.vault import ADMIN_POLICY_NAME, READER_POLICY_NAME
from components.vault_federation import DEPLOY_ROLE, DRIFT_ROLE, GITLAB_PATH, PREVIEW_ROLE, SCHEDULED_DEPLOY_ROLE
from tests.openbao import PlanVault
from tests.test_ci_file import CI_FILE, GLOBAL_KEYWORDS, _resolve, _script
from tests.test_vault_access import gitlab_id_token
from tests.test_vault_attacks import DEPLOY_PROJECT, REFUSED

ROLES = (DEPLOY_ROLE, SCHEDULED_DEPLOY_ROLE, DRIFT_ROLE, PREVIEW_ROLE)


def _jobs() -> dict[str, dict[str, Any]]:
    ci = yaml.safe_load(CI_FILE.read_text())
    return {name: _resolve(ci, name) for name in ci if name not in GLOBAL_KEYWORDS and not name.startswith(".")}


def _merge_request_rule(rule: dict[str, Any]) -> bool:
    return '$CI_PIPELINE_SOURCE == "merge_request_event"' in rule.get("if", "")


def test_no_job_of_main_or_a_schedule_shares_an_environment_with_merge_requests() -> None:
    """Was open: plan-dev/plan-prod (every push to main) and drift-dev/drift-prod (schedules) ran in preview/<stack>, the
    merge requests' environments, so approvals required there would have held up every deploy and drift check."""
    merge_requests: dict[str, set[str]] = {}
    others: dict[str, set[str]] = {}
    for name, job in _jobs().items():
        if "environment" not in job:
            continue
        environment = job["environment"]["name"]
        for rule in job.get("rules", []):
            (merge_requests if _merge_request_rule(rule) else others).setdefault(environment, set()).add(name)
    shared = {environment: sorted(merge_requests[environment] | others[environment]) for environment in set(merge_requests) & set(others)}
    assert not shared, f"main's or a schedule's jobs share merge requests' environments: {shared}"
    assert set(merge_requests) == {"preview/dev", "preview/prod"}, merge_requests


@pytest.mark.parametrize("prefix", ["plan", "drift"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mains_plans_and_the_drift_checks_run_in_their_stacks_plan_environment(prefix: str, stack: str) -> None:
    job = _jobs()[f"{prefix}-{stack}"]
    assert job["environment"]["name"] == f"plan/{stack}"
    assert set(re.findall(r"--stack (\w+)", " ".join(_script(job)))) == {stack}  # StackEnvironments: the environment is made from the stack
    assert not any(_merge_request_rule(rule) for rule in job["rules"])


def _login(vault: PlanVault, role: str, token: str) -> dict[str, Any] | None:
    try:
        return vault.login(GITLAB_PATH, role, token)
    except REFUSED:
        return None


def _main(vault: PlanVault, source: str, environment: str) -> str:
    return gitlab_id_token(vault, DEPLOY_PROJECT, "main", "branch", True, source=source, environment=environment)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_mains_plan_and_drift_jobs_log_in_in_plan_environments_and_not_in_preview(plan_vaults: Callable[[str], PlanVault],
                                                                                   stack: str) -> None:
    """plan-<stack> (a push on main, in plan/<stack>) logs in as platform-deploy (platform-admin: pulumi-vault's refresh
    and plan); drift-<stack> (a schedule on main) as platform-drift (reads). Main's jobs take nothing in preview/<stack>
    any more: that environment is the merge requests' alone."""
    vault = plan_vaults(stack)
    plan = _login(vault, DEPLOY_ROLE, _main(vault, "push", f"plan/{stack}"))
    drift = _login(vault, DRIFT_ROLE, _main(vault, "schedule", f"plan/{stack}"))
    in_preview = [(role, source) for role in ROLES for source in ("push", "web", "schedule")
                  if _login(vault, role, _main(vault, source, f"preview/{stack}")) is not None]
    shown = {f"plan-{stack} in plan/{stack}": plan and plan["token_policies"], f"drift-{stack} in plan/{stack}": drift and drift["token_policies"],
             f"main's jobs in preview/{stack}": in_preview}
    assert plan is not None and ADMIN_POLICY_NAME in plan["token_policies"], shown
    assert drift is not None and set(drift["token_policies"]) == {"default", READER_POLICY_NAME}, shown
    assert not in_preview, shown


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_merge_requests_job_in_a_plan_environment_gets_nothing(plan_vaults: Callable[[str], PlanVault], stack: str) -> None:
    """A branch's file may name plan/<stack> for a job of its own (and its merge request's pipeline may be protected: GitLab
    marks it so when both branches are). Every role refuses a merge-request pipeline there: platform-deploy and
    platform-drift take push and schedule pipelines only, platform-preview preview/<stack> only."""
    vault = plan_vaults(stack)
    admitted = [(role, ref) for role in ROLES for ref, protected in (("feature/x", False), ("release/1", True))
                if _login(vault, role, gitlab_id_token(vault, DEPLOY_PROJECT, ref, "branch", protected, source="merge_request_event",
                                                       environment=f"plan/{stack}")) is not None]
    assert not admitted, f"{stack}'s Vault takes a merge request's job in plan/{stack}: {admitted}"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_platform_preview_still_takes_a_merge_requests_job_in_preview_alone(plan_vaults: Callable[[str], PlanVault], stack: str) -> None:
    vault = plan_vaults(stack)
    merge_request = gitlab_id_token(vault, DEPLOY_PROJECT, "feature/x", "branch", False, source="merge_request_event",
                                    environment=f"preview/{stack}")
    assert _login(vault, PREVIEW_ROLE, merge_request) is not None
    for source in ("push", "schedule"):
        assert _login(vault, PREVIEW_ROLE, _main(vault, source, f"plan/{stack}")) is None, source


def test_vault_addr_is_documented_for_every_environment_whose_jobs_log_in_to_vault() -> None:
    """VAULT_ADDR is the audience of the Vault ID token (`.pulumi`, `.promote-image`), scoped per environment to that stack's
    Vault: a job in an environment the documented scope leaves out gets an empty audience and no Vault token (plan-* would fail)."""
    from tests.conftest import ROOT

    logging_in = {job["environment"]["name"] for job in _jobs().values() if "VAULT_ID_TOKEN" in job.get("id_tokens", {})}
    assert all("environment" in job for job in _jobs().values() if "VAULT_ID_TOKEN" in job.get("id_tokens", {}))
    readme = " ".join((ROOT / "README.md").read_text().split())
    [scope] = re.findall(r"scope that variable to the environments (.*?): each stack's Vault", readme)
    header = " ".join(line.lstrip("# ") for line in CI_FILE.read_text().splitlines() if line.startswith("#"))
    [ci_scope] = re.findall(r"scoped to the environments (.*?): each stack's Vault", header)
    assert set(re.findall(r"`([\w/]+)`", scope)) == logging_in, scope
    assert set(re.findall(r"[\w]+/?[\w]*", ci_scope)) - {"and"} == logging_in, ci_scope
