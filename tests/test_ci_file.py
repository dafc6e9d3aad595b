"""`.gitlab-ci.yml`: what can be checked without a GitLab instance.

Structure (jobs have scripts, images are pinned, keywords exist), wiring (every
`python -m platformctl <sub>` and repository path it names exists, pulumi
subcommands are known, deploys apply the plan a needed job saved) and the security
rules from the issue (AWS only through ID tokens, write role only on protected refs,
no secrets in the file).
"""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from platformctl.comment import mask_secrets

ROOT = Path(__file__).resolve().parent.parent
CI_FILE = ROOT / ".gitlab-ci.yml"

GLOBAL_KEYWORDS = {"default", "include", "stages", "variables", "workflow", "image", "services",
                   "cache", "before_script", "after_script", "spec"}
JOB_KEYWORDS = {"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
                "dast_configuration", "dependencies", "environment", "extends", "hooks", "id_tokens",
                "identity", "image", "inherit", "interruptible", "needs", "pages", "parallel", "release",
                "resource_group", "retry", "rules", "script", "secrets", "services", "stage", "tags",
                "timeout", "trigger", "variables", "when"}
KNOWN_PULUMI = {"preview", "up", "destroy", "stack", "login", "refresh"}
# Paths the pipeline itself creates; everything else it names must be in the repository.
GENERATED = ("build/", "venv/", ".cache/")
PATHLIKE_SUFFIX = re.compile(r"\.(?:ya?ml|py|txt|sh|json|toml|cfg|ini|md|lock)$")
PROTECTED_ONLY = re.compile(r"\$CI_COMMIT_BRANCH == \$CI_DEFAULT_BRANCH|\$CI_PIPELINE_SOURCE == \"schedule\"")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """GitLab's `extends`: hashes merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    document = yaml.safe_load(CI_FILE.read_text())
    assert isinstance(document, dict)
    return document


def _resolve(ci: dict[str, Any], name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    assert name not in seen, f"extends cycle: {seen + (name,)}"
    assert name in ci, f"{seen[-1] if seen else name}: extends unknown {name!r}"
    job = ci[name]
    parents = job.get("extends", [])
    merged: dict[str, Any] = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = _deep_merge(merged, _resolve(ci, parent, seen + (name,)))
    return _deep_merge(merged, {k: v for k, v in job.items() if k != "extends"})


@pytest.fixture(scope="module")
def jobs(ci: dict[str, Any]) -> dict[str, dict[str, Any]]:
    names = [k for k in ci if k not in GLOBAL_KEYWORDS and not k.startswith(".")]
    assert names, "no jobs"
    return {name: _resolve(ci, name) for name in names}


def _lines(value: Any) -> Iterator[str]:
    """Script lines, flattening nested lists and multi-line strings."""
    if isinstance(value, str):
        yield from value.splitlines()
    elif isinstance(value, list):
        for item in value:
            yield from _lines(item)


def _script(job: dict[str, Any]) -> list[str]:
    return [line for key in ("before_script", "script", "after_script") for line in _lines(job.get(key))]


def _all_lines(jobs: dict[str, dict[str, Any]]) -> list[str]:
    return [line for job in jobs.values() for line in _script(job)]


def _referenced_paths(lines: list[str]) -> set[str]:
    paths = set()
    for line in lines:
        for word in re.findall(r"[^\s\"'()|;&<>]+", line):  # split on shell punctuation too
            word = re.sub(r"^\w+=", "", word)  # `report=build/x.txt` names build/x.txt
            if "$" in word or "://" in word or word.startswith(("-", "/", "~", "+")):
                continue
            if ("/" in word or PATHLIKE_SUFFIX.search(word)) and not word.startswith(GENERATED):
                paths.add(word.rstrip("/"))
    return paths


def _images(ci: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in ci.items():
        if isinstance(value, dict):
            if "image" in value:
                yield key, value["image"]
            for service in value.get("services", []) or []:
                yield f"{key} service", service


# --- structure ------------------------------------------------------------------------


def test_every_job_has_a_script_and_known_keywords(ci: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    for name, job in jobs.items():
        # A trigger job (the merge-request bot's) runs nothing here: it has a downstream project, never a script.
        assert (_script(job) and job.get("script")) if "trigger" not in job else not _script(job) and job["trigger"]["project"], \
            f"{name}: no script"
        assert set(job) <= JOB_KEYWORDS, f"{name}: unknown keywords {set(job) - JOB_KEYWORDS}"
        assert job.get("stage") in ci["stages"], f"{name}: stage {job.get('stage')!r} not in stages"
    for key, value in ci.items():
        if key.startswith(".") and isinstance(value, dict) and key != ".rules":
            assert set(value) <= JOB_KEYWORDS, f"{key}: unknown keywords {set(value) - JOB_KEYWORDS}"


def test_images_have_an_exact_tag_never_latest(ci: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    images = list(_images(ci))
    assert images, "no image anywhere: jobs would run in the runner's default image"
    for where, image in images:
        ref = image["name"] if isinstance(image, dict) else image
        name, _, tag = ref.split("@")[0].rpartition(":")
        assert name and "/" not in tag, f"{where}: image {ref!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{where}: image {ref!r} is not an exact version"
    for name, job in jobs.items():  # no job falls back to the runner's default image
        assert "image" in job or "image" in ci.get("default", {}), f"{name}: no image"


# --- wiring ---------------------------------------------------------------------------------


def test_platformctl_subcommands_exist(jobs: dict[str, dict[str, Any]]) -> None:
    from components.merge_request_bot import bot_pipeline

    bot = yaml.safe_load(bot_pipeline("platform/platform-bootstrap"))  # the bot runs this project's code too
    lines = _all_lines(jobs) + _script(bot["bot"])
    used = {m.group(1) for line in lines for m in re.finditer(r"python3?\"?(?: -P)? -m platformctl (\w+)", line)}
    assert {"render", "diff", "comment", "access", "mrbot"} <= used
    for sub in sorted(used):
        module = ROOT / "platformctl" / f"{sub}.py"
        assert module.is_file(), f"`python -m platformctl {sub}`: {module.relative_to(ROOT)} does not exist"
        tree = ast.parse(module.read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "register" in functions, f"{module.relative_to(ROOT)} has no register(subparsers)"


def test_referenced_repository_paths_exist(jobs: dict[str, dict[str, Any]]) -> None:
    lines = _all_lines(jobs)
    paths = _referenced_paths(lines)
    assert {".ci/run", ".ci/install"} <= paths  # the extraction itself works
    stacks = {m.group(1) for line in lines for m in re.finditer(r"--stack[ =](\w+)", line)}
    assert stacks == {"dev", "prod"}
    paths |= {f"Pulumi.{stack}.yaml" for stack in stacks} | {"Pulumi.yaml"}
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, f"the CI file names paths that are not in the repository: {missing}"


def test_pulumi_subcommands_are_known(jobs: dict[str, dict[str, Any]]) -> None:
    used = {m.group(1) for line in _all_lines(jobs) for m in re.finditer(r"(?<![\w/.-])pulumi\s+([a-z][\w-]*)", line)}
    assert {"preview", "up", "destroy"} <= used
    assert used <= KNOWN_PULUMI, f"unknown pulumi subcommands: {used - KNOWN_PULUMI}"


def test_platformctl_diff_exit_1_is_not_a_failure(jobs: dict[str, dict[str, Any]]) -> None:
    diff_lines = [line for line in _all_lines(jobs) if "platformctl diff" in line]
    assert len(diff_lines) == 2
    for line in diff_lines:  # exit 1 means "different"; only 2 and above may fail the job
        assert "|| rc=$?" in line and 'test "$rc" -le 1' in line, line


def test_deploys_apply_the_plan_a_needed_preview_saved(jobs: dict[str, dict[str, Any]]) -> None:
    applied = 0
    for name, job in jobs.items():
        for line in _script(job):
            plan = re.search(r"pulumi up .*--plan[ =](\S+)", line)
            if not plan:
                continue
            applied += 1
            needs = [n if isinstance(n, str) else n["job"] for n in job.get("needs", [])]
            savers = [n for n in needs if any(f"--save-plan {plan.group(1)}" in l for l in _script(jobs[n]))]
            assert savers, f"{name}: applies {plan.group(1)} but no job in needs saves it"
            for saver in savers:  # and keeps it as an artifact, or the deploy has nothing to apply
                assert any(fnmatch(plan.group(1), p) for p in jobs[saver]["artifacts"]["paths"]), saver
    assert applied == 2


def test_prod_deploy_is_manual_in_the_protected_prod_environment(jobs: dict[str, dict[str, Any]]) -> None:
    prod = [j for j in jobs.values() if any(re.search(r"pulumi up .*--stack prod", l) for l in _script(j))]
    assert len(prod) == 1
    (job,) = prod
    assert job["environment"]["name"] == "prod"
    assert [rule.get("when") for rule in job["rules"]] == ["manual"]
    assert job.get("allow_failure") is False  # a manual job that can be skipped silently is no gate


def test_drift_detection_fails_on_changes_for_both_stacks(jobs: dict[str, dict[str, Any]]) -> None:
    drift = {}
    for job in jobs.values():
        for line in _script(job):
            if "pulumi preview" in line and "--refresh" in line and "--expect-no-changes" in line:
                drift[re.search(r"--stack (\w+)", line).group(1)] = job
    assert set(drift) == {"dev", "prod"}
    for job in drift.values():
        assert all('$CI_PIPELINE_SOURCE == "schedule"' in rule["if"] for rule in job["rules"])


def test_dev_rebuild_keeps_a_report(jobs: dict[str, dict[str, Any]]) -> None:
    (job,) = [j for j in jobs.values() if any("pulumi destroy" in l for l in _script(j))]
    script = "\n".join(_script(job))
    assert script.index("pulumi destroy --yes") < script.index("pulumi up --yes")
    assert "--stack dev" in script and "--stack prod" not in script
    assert job["artifacts"]["when"] == "always" and job["artifacts"]["paths"]


# --- security -------------------------------------------------------------------------------


def test_aws_access_only_through_id_tokens(jobs: dict[str, dict[str, Any]]) -> None:
    pulumi_jobs = {n: j for n, j in jobs.items() if any(re.search(r"\bpulumi\s", l) for l in _script(j))}
    assert pulumi_jobs
    for name, job in pulumi_jobs.items():
        variables = job.get("variables", {})
        # The backups schedule only reads the stack's outputs and lists the bucket: the watch role, no Vault.
        watch = variables.get("AWS_ROLE_ARN") == "$BACKUP_WATCH_ROLE_ARN"
        assert watch or variables.get("AWS_ROLE_ARN") in ("$PREVIEW_ROLE_ARN", "$PLAN_ROLE_ARN", "$DEPLOY_ROLE_ARN"), name
        assert not watch or not any(re.search(r"pulumi (up|preview|destroy|refresh)\b|vault-login", l) for l in _script(job)), name
        assert variables.get("AWS_WEB_IDENTITY_TOKEN_FILE"), name
        # AWS's token, Vault's for the provider's one-hour login (.ci/vault-login.py; not the backups jobs'), and Pulumi Cloud's.
        assert job["id_tokens"] == {
            "AWS_ID_TOKEN": {"aud": "sts.amazonaws.com"}, **({} if watch else {"VAULT_ID_TOKEN": {"aud": "$VAULT_ADDR"}}),
            "PULUMI_ID_TOKEN": {"aud": "urn:pulumi:org:$PULUMI_ORG"},
        }, name
        assert watch or any(".ci/vault-login.py" in l for l in _script(job)), f"{name}: no Vault login"
        assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in l for l in _script(job)), f"{name}: token file never written"


def test_pulumi_cloud_only_through_id_tokens_a_team_per_job_kind(ci: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    # No Pulumi access token anywhere (a long-lived credential between GitLab and Pulumi Cloud):
    # each Pulumi job exchanges its ID token for a team token of hours.
    assert "PULUMI_ACCESS_TOKEN" not in CI_FILE.read_text()
    pulumi_jobs = {n: j for n, j in jobs.items() if any(re.search(r"\bpulumi (up|preview|destroy|stack)\b", l) for l in _script(j))}
    assert pulumi_jobs
    for name, job in pulumi_jobs.items():
        logins = [l for l in _script(job) if l.startswith("pulumi login")]
        assert logins == ['pulumi login https://api.pulumi.com --oidc-token "file://$PULUMI_ID_TOKEN_FILE" --oidc-org "$PULUMI_ORG" '
                          '--oidc-team "$PULUMI_TEAM" --oidc-expiration "$PULUMI_LOGIN_EXPIRATION"'], name
        variables = job["variables"]
        writes = any(re.search(r"pulumi (up|destroy)\b", l) for l in _script(job))
        [stack] = set(re.findall(r"--stack (\w+)", " ".join(_script(job))))
        assert variables["PULUMI_TEAM"] == ("platform-deploy" if writes else f"platform-preview-{stack}"), name
        hours = int(variables["PULUMI_LOGIN_EXPIRATION"].removesuffix("h"))
        timeout = int(str(job.get("timeout", "1h")).removesuffix("h"))
        assert timeout < hours <= 4, f"{name}: its Pulumi token must outlast the job, and not by much"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_pulumi_cloud_tokens_are_in_the_credential_inventory(renders: dict, stack: str) -> None:
    entries = {e["what"]: e for e in renders[stack].plan["outputs"]["credentials"]}
    entry = entries["Pulumi Cloud team tokens of the platform pipeline"]
    assert entry["category"] == "federated" and entry["lifetimeSeconds"] == 2 * 3600
    expiration = yaml.safe_load(CI_FILE.read_text())[".pulumi"]["variables"]["PULUMI_LOGIN_EXPIRATION"]
    assert expiration == "2h"  # what the inventory says


def test_a_merge_request_preview_waits_for_a_maintainer_in_the_protected_preview_environment(jobs: dict[str, dict[str, Any]]) -> None:
    # A preview runs the branch's program with the stacks' decrypted state.
    for name in ("preview-dev", "preview-prod"):
        job = jobs[name]
        assert job["environment"]["name"] == f"preview/{name.removeprefix('preview-')}", name
        [merge_request] = [r for r in job["rules"] if "merge_request_event" in r["if"]]
        assert merge_request["when"] == "manual" and merge_request["allow_failure"] is True, name
        assert all("when" not in r for r in job["rules"] if r is not merge_request), f"{name}: main previews run by themselves"
    # The merge-request note (the bot's, with the check) does not wait for them; a second one adds them once both ran.
    assert jobs["access"]["needs"] == [{"job": "render", "artifacts": False}]
    assert jobs["comment-previews"]["needs"] == [{"job": n, "artifacts": False} for n in ("render", "preview-dev", "preview-prod")]
    assert jobs["comment-previews"]["trigger"] == jobs["access"]["trigger"]


def test_the_bot_may_read_the_previews_text_and_only_developers_an_update_plan(jobs: dict[str, dict[str, Any]]) -> None:
    """The note shows each preview's text, which its log already shows whoever may read the job; the
    bot (a Reporter) reads artifacts only where they are not for Developers. An update plan (`--save-plan`,
    the deploys apply it) describes the infrastructure in detail: it is saved on main only, for Developers."""
    from platformctl.mrbot import NOTE_FILES

    for name in ("preview-dev", "preview-prod"):
        artifacts = jobs[name]["artifacts"]
        assert artifacts.get("access", "all") == "all", name
        assert all(any(fnmatch(path, p) for p in artifacts["paths"]) for path in NOTE_FILES[name]), name
    savers = {name for name, job in jobs.items() if any("--save-plan" in line for line in _script(job))}
    assert savers == {"plan-dev", "plan-prod"}
    for name in savers:
        assert jobs[name]["artifacts"]["access"] == "developer" and "merge_request_event" not in str(jobs[name]["rules"]), name


def test_each_job_that_reaches_a_stacks_vault_runs_in_that_stacks_environments(jobs: dict[str, dict[str, Any]]) -> None:
    """Each stack's Vault binds its CI roles to the environments made from its name (StackEnvironments): the Pulumi jobs
    log in in <stack>, plan/<stack> or preview/<stack> and run `--stack <stack>`; the promote jobs (played with any
    variables) in promote/<stack> alone, which no Pulumi role takes, and are named after it. No other job has those
    environments, and no job that logs in lacks one."""
    from components.image_promotion import VAULT_ROLE as PROMOTE_ROLE
    from components.vault_federation import StackEnvironments
    from tests.conftest import STACKS

    pulumi_environments = {getattr(StackEnvironments(stack), kind): stack for stack in STACKS for kind in ("deploy", "plan", "preview")}
    promote_environments = {StackEnvironments(stack).promote: stack for stack in STACKS}
    promoters = set()
    for name, job in jobs.items():
        logs_in = any(".ci/vault-login.py" in line for line in _script(job))
        promotes = any(".ci/promote-image.py" in line for line in _script(job))
        environment = job.get("environment", {}).get("name")
        assert (environment in pulumi_environments) == logs_in, f"{name}: environment {environment!r}"
        assert (environment in promote_environments) == promotes, f"{name}: environment {environment!r}"
        if logs_in:
            assert set(re.findall(r"--stack (\S+)", " ".join(_script(job)))) == {pulumi_environments[environment]}, name
        if promotes:
            assert name.endswith(f"-{promote_environments[environment]}") and job["variables"]["VAULT_ROLE"] == PROMOTE_ROLE, name
            promoters.add(name)
    assert promoters == {f"{job}-{stack}" for job in ("promote-image", "promote-trivy-db") for stack in STACKS}


def test_scheduled_jobs_log_in_at_the_scheduled_role_and_only_they_do(jobs: dict[str, dict[str, Any]]) -> None:
    # platform-deploy takes push pipelines only; a schedule's job must name a role that takes schedules,
    # in one of that role's environments: rebuild-dev (destroy, up) platform-deploy-scheduled in its stack's own
    # environment, in a stack whose file says it is rebuilt (platform:pipeline.rebuildSchedule), the drift checks
    # (preview only) platform-drift in plan/<stack>.
    from components.vault_federation import DRIFT_ROLE, SCHEDULED_DEPLOY_ROLE, StackEnvironments
    from tests.conftest import STACKS

    rebuilt = {stack for stack in STACKS if (yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
                                            .get("platform:pipeline", {}).get("rebuildSchedule"))}
    assert rebuilt == {"dev"}
    roles = {SCHEDULED_DEPLOY_ROLE: {StackEnvironments(stack).deploy for stack in rebuilt},
             DRIFT_ROLE: {StackEnvironments(stack).plan for stack in STACKS}}
    for name, job in jobs.items():
        if not any(".ci/vault-login.py" in line for line in _script(job)):
            continue
        scheduled = all('$CI_PIPELINE_SOURCE == "schedule"' in rule["if"] for rule in job["rules"])
        role = job.get("variables", {}).get("VAULT_ROLE")
        assert (role in roles) == scheduled, name
        assert not scheduled or job["environment"]["name"] in roles[role], name
        writes = any(re.search(r"pulumi (up|destroy)\b", line) for line in _script(job))
        assert not scheduled or (role == SCHEDULED_DEPLOY_ROLE) == writes, name


def test_write_role_only_for_writes_and_only_on_protected_refs(jobs: dict[str, dict[str, Any]]) -> None:
    for name, job in jobs.items():
        writes = any(re.search(r"pulumi (up|destroy)\b", l) for l in _script(job))
        write_role = job.get("variables", {}).get("AWS_ROLE_ARN") == "$DEPLOY_ROLE_ARN"
        assert writes == write_role, f"{name}: write role {'missing' if writes else 'not needed'}"
        if writes:
            for rule in job["rules"]:
                assert PROTECTED_ONLY.search(rule["if"]) and "merge_request_event" not in rule["if"], name
            assert job.get("interruptible") is False, f"{name}: a running update must not be cancelled"
            assert job.get("resource_group"), f"{name}: concurrent updates of one stack"


def test_plan_role_only_for_mains_previews_and_the_drift_checks(jobs: dict[str, dict[str, Any]]) -> None:
    """The plan role reads every object of the EKS clusters, Secrets included (AmazonEKSAdminViewPolicy), and only
    main's ID tokens may assume it: only the jobs that save the deploys' plans and the drift checks name it, on
    protected refs and the protected runner, never on a merge request, whose branch's code the job runs."""
    planners = {name for name, job in jobs.items() if job.get("variables", {}).get("AWS_ROLE_ARN") == "$PLAN_ROLE_ARN"}
    assert planners == {"plan-dev", "plan-prod", "drift-dev", "drift-prod"}
    for name in planners:
        job = jobs[name]
        assert all(re.match(r"pulumi preview --refresh ", line) for line in job["script"]), name  # reads, never writes
        for rule in job["rules"]:
            # main's only: a schedule on another branch runs that branch's code (its ID token names it anyway).
            assert "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH" in rule["if"] and "merge_request_event" not in rule["if"], name
        assert job["tags"] == ["platform-protected"], name
    # A merge request's previews keep the preview role (no access entry: they see no EKS cluster's objects).
    for name, job in jobs.items():
        if "merge_request_event" in str(job.get("rules")) and "AWS_ROLE_ARN" in job.get("variables", {}):
            assert job["variables"]["AWS_ROLE_ARN"] == "$PREVIEW_ROLE_ARN", name
    # The header lists it with the other variables, protected.
    assert re.search(r"^#   PLAN_ROLE_ARN +protected: ", CI_FILE.read_text(), re.M)


def test_the_jobs_that_refresh_a_stack_on_main_reach_its_eks_clusters(renders: dict, jobs: dict[str, dict[str, Any]]) -> None:
    """The clusters take Kubernetes identities from EKS access entries alone (authenticationMode API): every job that
    runs `pulumi preview`, `up` or `destroy` on main or a schedule (the plans the deploys apply, the deploys, the drift
    checks, rebuild-dev) assumes a role (its variable, as the stack output of that name) with an entry on every EKS
    cluster, through that cluster's provider; else each of its Kubernetes reads is Unauthorized and the job fails.
    A merge request's previews assume the preview role, which has none."""
    plan = renders["prod"].plan
    outputs = plan["outputs"]
    entries = [r for r in plan["resources"] if r["type"] == "aws:eks/accessEntry:AccessEntry"]
    reach: dict[str, set[str]] = {}
    for entry in entries:
        reach.setdefault(entry["inputs"]["principalArn"], set()).add(entry["inputs"]["clusterName"])
    # Each cluster's name (auto-named), from its configured admin's entry.
    clusters = {e["inputs"]["clusterName"] for e in entries if e["name"] in {f"{r['name']}-admin-0" for r in plan["resources"]
                                                                           if r["type"] == "aws:eks/cluster:Cluster"}}
    assert len(clusters) == 3

    def output(variable: str) -> str:  # $PLAN_ROLE_ARN -> planRoleArn
        first, *rest = variable.removeprefix("$").lower().split("_")
        return first + "".join(word.title() for word in rest)

    reached = set()
    for name, job in jobs.items():
        if not any(re.search(r"\bpulumi (preview|up|destroy)\b", line) for line in _script(job)):
            continue
        role = outputs[output(job["variables"]["AWS_ROLE_ARN"])]
        if all("merge_request_event" in rule["if"] for rule in job["rules"]):
            assert role == outputs["previewRoleArn"] and role not in reach, name
            continue
        assert reach.get(role) == set(clusters), f"{name}: {job['variables']['AWS_ROLE_ARN']} reaches {sorted(reach.get(role, ()))}"
        reached.add(name)
    assert reached == {"plan-dev", "plan-prod", "deploy-dev", "deploy-prod", "drift-dev", "drift-prod", "rebuild-dev"}


def test_no_secrets_in_the_file(ci: dict[str, Any]) -> None:
    _, found = mask_secrets(CI_FILE.read_text())
    assert found == []
    blocks = [ci.get("variables", {})] + [v.get("variables", {}) for v in ci.values() if isinstance(v, dict)]
    for variables in blocks:
        for key, value in variables.items():
            if re.search(r"TOKEN|PASSWORD|SECRET|_KEY", key) and not key.endswith("_FILE"):
                assert str(value).startswith("$"), f"{key} has a literal value in the CI file"


def test_tenant_grants_are_checked_on_merge_requests_and_before_dev_deploys(jobs: dict[str, dict[str, Any]]) -> None:
    """The check (`platformctl access`, which reads approvals with the bot's token) runs in the
    merge-request bot's pipeline, which `access` and `access-main` trigger and whose result they take."""
    from components.merge_request_bot import bot_pipeline, bot_project_path

    assert not [name for name, job in jobs.items() if any("platformctl access" in line for line in _script(job))]
    checks = {name: job for name, job in jobs.items() if "trigger" in job and "allow_failure" not in job}
    assert set(checks) == {"access", "access-main"}  # a check that may fail silently is no gate
    for job in checks.values():
        assert job["trigger"]["strategy"] == "depend"  # the job fails when the bot's pipeline does
        project = job["trigger"]["project"].replace("$CI_PROJECT_ROOT_NAMESPACE", "platform").replace("$CI_PROJECT_NAME", "platform-bootstrap")
        assert project == bot_project_path("platform/platform-bootstrap") and job["trigger"]["branch"] == "main"
    assert [r["if"] for r in checks["access"]["rules"]] == ['$CI_PIPELINE_SOURCE == "merge_request_event"']
    assert all(PROTECTED_ONLY.search(r["if"]) for r in checks["access-main"]["rules"])
    # The apply on main waits for it; prod waits for dev.
    assert "access-main" in jobs["deploy-dev"]["needs"] and "deploy-dev" in jobs["deploy-prod"]["needs"]
    # In the bot: the check as it is at the gate's commit (installed from there), on the upstream's stack
    # files, against the merge request mrbot found or, on main, the merged one of the upstream's commit.
    bot = _script(yaml.safe_load(bot_pipeline("platform/platform-bootstrap"))["bot"])
    (line,) = [line for line in bot if "platformctl access" in line]
    assert 'cd build/head && PYTHONPATH="$PWD/../gate"' in line and "-P -m platformctl access --no-validate" in line
    assert '--base-ref "$GATE_REF" "${which[@]}"' in line and line.endswith("|| rc=$?") and bot[-1].startswith('exit "$rc"')
    assert 'which=(--mr-iid "$MR_IID"); else which=(--commit "$UPSTREAM_SHA")' in "\n".join(bot)
    assert [line for line in bot if ".ci/install" in line] == ['bash .ci/install "$CI_PROJECT_DIR/bot"',
                                                               'bash build/gate/.ci/install "$CI_PROJECT_DIR/gate"']
    assert bot.index('git worktree add --quiet --detach build/gate "$GATE_REF"') > next(
        i for i, line in enumerate(bot) if "platformctl mrbot" in line)


def gitlab_ci_schema_errors(document: Any) -> list[str]:
    """What GitLab's own CI schema (app/assets/javascripts/editor/schema/ci.json, as check-jsonschema
    vendors it) finds wrong with a pipeline document."""
    import json
    from importlib.resources import files

    import jsonschema

    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("gitlab-ci.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]


def test_the_file_is_valid_against_gitlabs_ci_schema(ci: dict[str, Any]) -> None:
    assert gitlab_ci_schema_errors(ci) == []
    assert gitlab_ci_schema_errors({"job": {"script": "x", "tagz": ["x"]}}), "the schema refuses an unknown keyword"


def test_the_merge_request_bots_pipeline_is_valid_against_gitlabs_ci_schema() -> None:
    from components.merge_request_bot import bot_pipeline

    assert gitlab_ci_schema_errors(yaml.safe_load(bot_pipeline("platform/platform-bootstrap"))) == []


def test_the_tenants_starter_pipelines_are_valid_against_gitlabs_ci_schema(plan: dict) -> None:
    pipelines = {r["name"]: yaml.safe_load(r["inputs"]["content"]) for r in plan["resources"]
                 if r["type"] == "gitlab:index/repositoryFile:RepositoryFile" and r["inputs"].get("filePath") == CI_FILE.name}
    assert pipelines
    assert {name: errors for name, pipeline in pipelines.items() if (errors := gitlab_ci_schema_errors(pipeline))} == {}
