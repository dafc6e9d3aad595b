"""`platformctl mrbot`: the merge-request bot acts only for the pipeline that really triggered it.

The bot's pipeline holds PLATFORM_MR_TOKEN; the attacker is anyone who can start a pipeline there (a
Developer of the platform project must be able to, or the platform's pipelines could not trigger it):
by hand, through the API, from a project of their own, from a branch. Each attempt is a pipeline as
GitLab's GraphQL API describes it, served by tests/gitlab_stub.py over real HTTP, with a real Git
repository as the platform project's; the command runs in this process, as tests/test_access.py's do.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gitlab_stub import GitLabStub, client_env, run_in_process
from tests.git_repo import git

PLATFORM = "platform/platform-bootstrap"
BOT = "platform/platform-bootstrap-mr-bot"
PIPELINE_ID = 321  # the platform project's pipeline that triggers the bot's
BOT_PIPELINE_IID = "5"


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The platform project: main (base, then merged) and a merge request's head on a branch. It serves
    any commit it has by its id, as GitLab's Gitaly does (uploadpack.allowAnySHA1InWant)."""
    path = tmp_path_factory.mktemp("origin")
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "config", "uploadpack.allowAnySHA1InWant", "true")
    commits: dict[str, Any] = {"path": path}
    for name in ("base", "main"):
        (path / "Pulumi.dev.yaml").write_text(f"# {name}\n")
        git(path, "add", ".")
        git(path, "commit", "--quiet", "-m", name)
        commits[name] = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "-b", "feature", commits["base"])
    (path / "Pulumi.dev.yaml").write_text("# head\n")
    git(path, "commit", "--quiet", "-am", "head")
    commits["head"] = git(path, "rev-parse", "HEAD")
    git(path, "checkout", "--quiet", "main")
    return commits


@pytest.fixture
def clone(origin: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """The bot's clone of the platform project, as its job makes it."""
    work = tmp_path / "platform"
    subprocess.run(["git", "clone", "--quiet", str(origin["path"]), str(work)], check=True)
    return {**origin, "work": work}


def _pipeline(source: str = "pipeline", upstream: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    return {"source": source, "upstream": upstream, **changes}


def _merge_request_pipeline(commits: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The platform project's merge-request pipeline of !7, into main, at its head."""
    upstream = {
        "id": f"gid://gitlab/Ci::Pipeline/{PIPELINE_ID}", "source": "merge_request_event", "ref": "refs/merge-requests/7/head",
        "sha": commits["head"], "beforeSha": "0" * 40,
        "project": {"fullPath": PLATFORM, "repository": {"rootRef": "main"}},
        "mergeRequest": {"iid": "7", "targetBranch": "main", "project": {"fullPath": PLATFORM},
                         "diffRefs": {"baseSha": commits["base"]}},
    }
    return _pipeline(upstream={**upstream, **changes})


def _run(stub: GitLabStub, work: Path, out: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = client_env(stub, CI_PIPELINE_IID=BOT_PIPELINE_IID, CI_PROJECT_PATH=BOT, PATH=os.environ["PATH"], **extra)
    env.pop("CI_MERGE_REQUEST_IID")  # the bot's pipeline is no merge request's
    return run_in_process(["mrbot", "--platform-project", PLATFORM, "--out", str(out)], work, env)


def _stub(pipeline: dict[str, Any] | None) -> GitLabStub:
    stub = GitLabStub(project_path=PLATFORM)
    if pipeline is not None:
        stub.pipelines[(BOT, BOT_PIPELINE_IID)] = pipeline
    stub.pipeline_jobs[PIPELINE_ID] = [{"id": 40, "name": "render", "status": "success"},
                                       {"id": 41, "name": "render", "status": "failed"},  # retried: 41 is the latest
                                       {"id": 42, "name": "test", "status": "success"}]
    stub.artifacts[(41, "build/diff-dev.md")] = b"### Plan diff: dev\n"
    stub.artifacts[(41, "build/diff-prod.md")] = b"### Plan diff: prod\n"
    stub.artifacts[(40, "build/diff-dev.md")] = b"stale\n"
    return stub


def test_the_previews_text_goes_into_the_note(clone: dict[str, Any], tmp_path: Path) -> None:
    """A merge request's preview jobs keep their text as artifacts anyone who reads the job may read
    (.gitlab-ci.yml; tests/test_ci_file.py): the bot takes the latest run of each."""
    out = tmp_path / "out"
    with _stub(_merge_request_pipeline(clone)) as stub:
        stub.pipeline_jobs[PIPELINE_ID].append({"id": 43, "name": "preview-dev", "status": "success"})
        stub.artifacts[(43, "build/preview-dev.txt")] = b"~ kubernetes:apps/v1:Deployment\n"
        result = _run(stub, clone["work"], out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["diff-dev.md", "diff-prod.md", "preview-dev.txt", "upstream.env"]
    assert (out / "preview-dev.txt").read_bytes() == b"~ kubernetes:apps/v1:Deployment\n"


def test_previews_the_token_may_not_read_are_named_in_the_note_not_a_refusal(clone: dict[str, Any], tmp_path: Path) -> None:
    """Artifacts kept for Developers (`access: developer`, as the previews' were before their update plans
    moved to main) are not the bot's to read: its token is a Reporter's. Their output stays out of the
    note, which says so; the bot still serves the merge request."""
    out = tmp_path / "out"
    with _stub(_merge_request_pipeline(clone)) as stub:
        stub.pipeline_jobs[PIPELINE_ID].append({"id": 43, "name": "preview-dev", "status": "success"})
        stub.forbidden_jobs.add(43)
        result = _run(stub, clone["work"], out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["diff-dev.md", "diff-prod.md", "upstream.env", "withheld.md"]
    assert (out / "withheld.md").read_text().startswith("Not in this note: `build/preview-dev.txt` of job preview-dev; only Developers")


REFUSED = {
    # "Run pipeline" in the bot project, by a Developer allowed to merge into its main.
    "run by hand": (lambda c: _pipeline("web"), "this pipeline's source is 'web'"),
    # The pipelines API, or a pipeline trigger token.
    "API": (lambda c: _pipeline("api"), "this pipeline's source is 'api'"),
    "trigger token": (lambda c: _pipeline("trigger"), "this pipeline's source is 'trigger'"),
    "schedule": (lambda c: _pipeline("schedule"), "this pipeline's source is 'schedule'"),
    # A multi-project pipeline GitLab shows no upstream for (or the token cannot read).
    "no upstream": (lambda c: _pipeline(), "no upstream pipeline"),
    "no pipeline": (lambda c: None, "GitLab shows no pipeline"),
    # Triggered from a project of the attacker's own, whose pipelines say what they like.
    "another project": (lambda c: _merge_request_pipeline(c, project={"fullPath": "mallory/platform-bootstrap",
                                                                    "repository": {"rootRef": "main"}}),
                        "triggered from 'mallory/platform-bootstrap'"),
    # The platform project's pipeline of a feature branch (its .gitlab-ci.yml is the branch's).
    "branch pipeline": (lambda c: _merge_request_pipeline(c, source="push", ref="feature", mergeRequest=None),
                        "the upstream is a 'push' pipeline of 'feature'"),
    "branch schedule": (lambda c: _merge_request_pipeline(c, source="schedule", ref="feature", mergeRequest=None),
                        "the upstream is a 'schedule' pipeline of 'feature'"),
    # A schedule of main (rebuild-dev's) before the check ever passed there: no commit to compare with.
    "schedule never checked": (lambda c: _merge_request_pipeline(c, source="schedule", ref="main", sha=c["main"], mergeRequest=None),
                               "passed the access check (access-main)"),
    # A merge request into a branch of the author's, whose commit would be the gate's code.
    "merge request into another branch": (
        lambda c: _merge_request_pipeline(c, mergeRequest={"iid": "7", "targetBranch": "feature", "project": {"fullPath": PLATFORM},
                                                           "diffRefs": {"baseSha": c["head"]}}),
        "does not go into platform/platform-bootstrap's 'main'"),
    # A merge request of the platform project whose diff base is no commit of main.
    "gate off main": (
        lambda c: _merge_request_pipeline(c, mergeRequest={"iid": "7", "targetBranch": "main", "project": {"fullPath": PLATFORM},
                                                           "diffRefs": {"baseSha": c["head"]}}),
        "is not on main: its code is not reviewed"),
    # GitLab's answer names a commit the platform project does not have, or something else.
    "unknown commit": (lambda c: _merge_request_pipeline(c, sha="0123456789" * 4), "git fetch --quiet origin 0123456789"),
    "no commit": (lambda c: _merge_request_pipeline(c, sha="main"), "GitLab gave 'main' where a commit was expected"),
}


@pytest.mark.parametrize("attempt", REFUSED)
def test_the_bot_refuses_a_pipeline_it_does_not_serve(clone: dict[str, Any], tmp_path: Path, attempt: str) -> None:
    make, why = REFUSED[attempt]
    out = tmp_path / "out"
    with _stub(make(clone)) as stub:
        result = _run(stub, clone["work"], out)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("platformctl mrbot: refused: ") and why in result.stderr, result.stderr
    assert not (out / "upstream.env").exists()  # the job's next steps have nothing to act on
    assert not any(method == "GET" and "/jobs" in path for method, path in stub.requests)  # nor its artifacts


def test_a_merge_request_pipeline_of_the_platform_project_gets_its_note_files_and_its_base_as_the_gate(
        clone: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with _stub(_merge_request_pipeline(clone)) as stub:
        result = _run(stub, clone["work"], out)
    assert result.returncode == 0, result.stderr
    assert (out / "upstream.env").read_text() == f"UPSTREAM_SHA={clone['head']}\nGATE_REF={clone['base']}\nMR_IID=7\n"
    assert (out / "diff-dev.md").read_text() == "### Plan diff: dev\n"  # the latest run of render, not the retried one
    assert sorted(p.name for p in out.iterdir()) == ["diff-dev.md", "diff-prod.md", "upstream.env"]
    assert git(clone["work"], "cat-file", "-t", clone["head"]) == "commit"  # for the access check's worktree
    assert "for merge request !7; gate" in result.stdout


def test_a_pipeline_of_the_default_branch_is_checked_against_the_commit_before_its_push(
        clone: dict[str, Any], tmp_path: Path) -> None:
    pipeline = _merge_request_pipeline(clone, source="push", ref="main", sha=clone["main"], beforeSha=clone["base"], mergeRequest=None)
    out = tmp_path / "out"
    with _stub(pipeline) as stub:
        result = _run(stub, clone["work"], out)
    assert result.returncode == 0, result.stderr
    # No earlier pipeline of main passed access-main (a new bot): compared with the commit before the push.
    assert (out / "upstream.env").read_text() == (
        f"UPSTREAM_SHA={clone['main']}\nGATE_REF={clone['base']}\nMR_IID=\n")
    assert [p.name for p in out.iterdir()] == ["upstream.env"]  # no note on main


def test_a_schedule_of_the_default_branch_is_checked_against_its_last_checked_commit(
        clone: dict[str, Any], tmp_path: Path) -> None:
    """rebuild-dev's schedule: main's head, judged and compared as a push after main's last commit whose check passed."""
    pipeline = _merge_request_pipeline(clone, source="schedule", ref="main", sha=clone["main"], mergeRequest=None)
    out = tmp_path / "out"
    with _stub(pipeline) as stub:
        stub.branch_pipelines[:] = [{"id": 300, "sha": clone["base"], "ref": "main", "source": "push",
                                     "bridges": [{"name": "access-main", "status": "success"}]}]
        result = _run(stub, clone["work"], out)
    assert result.returncode == 0, result.stderr
    assert (out / "upstream.env").read_text() == f"UPSTREAM_SHA={clone['main']}\nGATE_REF={clone['base']}\nMR_IID=\n"


def test_a_token_gitlab_refuses_is_a_refusal_that_names_the_variable(clone: dict[str, Any], tmp_path: Path) -> None:
    with _stub(_merge_request_pipeline(clone)) as stub:
        result = _run(stub, clone["work"], tmp_path / "out", PLATFORM_MR_TOKEN="revoked")
    assert result.returncode == 2 and "(HTTP 401): the token in $PLATFORM_MR_TOKEN is invalid" in result.stderr, result.stderr
