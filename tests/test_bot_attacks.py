"""An attacker's review of the merge-request bot (components/merge_request_bot.py, platformctl/mrbot.py).

The attacker is a Developer of the platform project: they control every file of their merge request's
branch, and whatever a merge request of theirs brings to the default branch becomes the next merge
request's gate (the bot runs `platformctl access` as it is at the merge request's diff base). The
bot's job runs here as the program writes it, against a real Git repository as the platform project
and tests/gitlab_stub.py as GitLab, with the real command lines.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitlab_stub import GitLabStub, client_env, run_in_process
from platformctl.access import APPROVED_NOTE, GATE_FILES
from platformctl.charts import ROOT
from tests.git_repo import git
from tests.test_access import AFTER_PUSH, ALICE, _stub_with_push

PLATFORM = "platform/platform-bootstrap"
# What the gate runs from: the program's tree (a merge request's diff base is a commit of main).
GATE_TREE = ("platformctl", "stacks", "components", "policy", "Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml",
             ".ci/install", "requirements-build.txt", "requirements.txt", ".gitlab-ci.yml")
# The access check that finds no grant at all (its base text must be there to replace).
GATE_EDIT = ("        if grants or name in exceptions or whole:\n", "        if False:  # nothing to approve, ever\n")
TOKEN = "glpat-Bot0Token0Of0The0Platform0x"  # the shape of a GitLab token (masked in notes by shape)
PIPELINE_ID, BOT_IID = 321, "5"


def _origin(path: Path) -> str:
    """The platform project with this project's gate tree on main; returns main's commit."""
    for name in git(ROOT, "ls-files", "--", *GATE_TREE).splitlines():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, path / name)
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "config", "uploadpack.allowAnySHA1InWant", "true")  # as GitLab's Gitaly serves any commit it has
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "base")
    return git(path, "rev-parse", "HEAD")


def served_origin(tmp_path: Path) -> tuple[Path, Path, str]:
    """The platform project as the bot's job clones it: (the server's directory, the repository, main's commit)."""
    srv = tmp_path / "srv"
    origin = srv / f"{PLATFORM}.git"
    origin.mkdir(parents=True)
    return srv, origin, _origin(origin)


def _grant(path: Path, user: str = "mallory") -> None:
    stack = yaml.safe_load((path / "Pulumi.dev.yaml").read_text())
    [payments] = [t for t in stack["config"]["platform:tenants"] if t["name"] == "payments"]
    payments["developers"].append(user)
    (path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack))


def _commit(path: Path, message: str) -> str:
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", message)
    return git(path, "rev-parse", "HEAD")


def upstream(name: str, base: str, head: str, platform: str) -> dict[str, Any]:
    """The pipeline that triggers the bot's, as GitLab's GraphQL API describes it: the merge request's
    (`access`), or main's once it is merged (`access-main`)."""
    found = {"id": f"gid://gitlab/Ci::Pipeline/{PIPELINE_ID}", "sha": head, "beforeSha": base,
             "project": {"fullPath": platform, "repository": {"rootRef": "main"}}}
    if name == "access":
        found |= {"source": "merge_request_event", "ref": "refs/merge-requests/7/head",
                  "mergeRequest": {"iid": "7", "targetBranch": "main", "project": {"fullPath": platform}, "diffRefs": {"baseSha": base}}}
    else:
        found |= {"source": "push", "ref": "main", "mergeRequest": None}
    return {"source": "pipeline", "upstream": found}


def run_bot_job(tmp_path: Path, srv: Path, platform: str, name: str, base: str, head: str,
                stub: GitLabStub) -> subprocess.CompletedProcess[str]:
    """The bot's job as the program writes it (its dependency installation aside: this process's packages
    stand in for them), in `tmp_path/job`, against the platform project under `srv` and `stub`, for the
    upstream pipeline `name` (`access` or `access-main`) of `head` with `base` as its gate."""
    from components.merge_request_bot import bot_pipeline, bot_project_path
    from tests.test_ci_file import _lines, _resolve

    pipeline = yaml.safe_load(bot_pipeline(platform))
    installs = ("bash .ci/install ", "bash build/gate/.ci/install ")
    lines = [line for line in _lines(_resolve(pipeline, "bot")["script"]) if not line.startswith(installs)]
    work = tmp_path / "job"
    for venv in ("bot", "gate"):
        (work / venv / "bin").mkdir(parents=True)
        (work / venv / "bin" / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
        (work / venv / "bin" / "python").chmod(0o755)
    stub.pipelines[(bot_project_path(platform), BOT_IID)] = upstream(name, base, head, platform)
    stub.pipeline_jobs.setdefault(PIPELINE_ID, [])
    env = {**client_env(stub, PYTHONPATH=str(ROOT)), **pipeline["variables"], "HOME": str(tmp_path),
           "CI_PROJECT_DIR": str(work), "CI_SERVER_URL": f"file://{srv}", "CI_PIPELINE_IID": BOT_IID,
           "CI_PROJECT_PATH": bot_project_path(platform)}
    env.pop("CI_MERGE_REQUEST_IID")  # the bot's pipeline is no merge request's; it finds the merge request itself
    return subprocess.run(["bash", "-ec", "\n".join(lines)], cwd=work, env=env, capture_output=True, text=True, timeout=300)


# --- 1. what the gate's process runs: every file of it is the gate ----------------------------------


LOADED = """
import json, sys
from platformctl.__main__ import main
code = main(sys.argv[1:])
print(json.dumps([getattr(m, "__file__", None) for m in list(sys.modules.values())]))
"""


def test_every_file_the_gate_runs_from_its_tree_is_a_gate_file(tmp_path: Path) -> None:
    """The bot runs the gate as `PYTHONPATH=<gate commit> python -P -m platformctl access --no-validate`
    in the merge request's checkout. Whatever its process imports from the gate commit decides the
    verdict: an edit of it merged without a system approver (GATE_FILES) changes the check for every
    later merge request. (On main, `access` imported the whole program through platformctl.render:
    82 files of which 4 were gate files; an edit of parse_stack_file that drops a tenant's developers
    would have passed unnoticed, then every grant after it.)"""
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    done = subprocess.run([sys.executable, "-P", "-c", LOADED, "access", "--no-validate", "--base-ref", base],
                          cwd=repo, env=client_env(None, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    tracked = set(git(ROOT, "ls-files").splitlines())
    loaded = {str(Path(f).resolve().relative_to(ROOT)) for f in json.loads(done.stdout.splitlines()[-1])
              if f and Path(f).resolve().is_relative_to(ROOT)}
    assert sorted(loaded & tracked - set(GATE_FILES)) == []
    assert "platformctl/access.py" in loaded  # the measurement saw the gate


# --- 2. what Python would import ahead of the gate --------------------------------------------------


# A package beside platformctl/access.py: Python imports a package before a module of the same name.
SHADOW = """import pathlib
exec(compile((pathlib.Path(__file__).parent.parent / "access.py").read_text().replace({!r}, {!r}), __file__, "exec"))
""".format(*GATE_EDIT)
SHADOWS = {
    "platformctl/access/__init__.py": SHADOW,
    "yaml/__init__.py": "raise SystemExit(0)\n",  # the gate's directory comes before site-packages
    "sitecustomize.py": "raise SystemExit(0)\n",  # imported by `site` at start, from any directory of sys.path
    "platformctl/__pycache__/access.cpython-311.pyc": "",  # an unchecked hash-based .pyc needs no matching source
}


@pytest.mark.parametrize("path", SHADOWS)
def test_a_merge_request_that_adds_code_in_front_of_the_gate_needs_a_system_approver(tmp_path: Path, path: str) -> None:
    """A file the gate's process would import instead of the gate's own (or before it) is an edit of
    the gate: the merge request that adds it needs a system approver, as one that edits access.py does."""
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_text(SHADOWS[path])
    _commit(repo, f"add {path}")
    with _stub_with_push() as stub:
        done = run_in_process(["access", "--no-validate", "--base-ref", base, "--mr-iid", str(stub.mr_iid)], repo, client_env(stub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"| all | changes the access check ({path}) | ❌ waiting for a system approver" in done.stdout, done.stdout


def test_a_package_beside_the_gate_would_wave_the_next_grant_through(tmp_path: Path) -> None:
    """Why the test above matters: once such a package is on main, the next merge request's grant meets
    the package's check, which finds nothing to approve. (Python's import order, shown for real.)"""
    repo = tmp_path / "repo"
    repo.mkdir()
    _origin(repo)
    (repo / "platformctl/access").mkdir()
    (repo / "platformctl/access/__init__.py").write_text(SHADOW)
    gate = _commit(repo, "add platformctl/access/")
    _grant(repo)
    _commit(repo, "add mallory")
    env = client_env(None, PYTHONPATH=str(repo))
    done = subprocess.run([sys.executable, "-P", "-m", "platformctl", "access", "--no-validate", "--base-ref", gate],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "nothing for owners to approve" in done.stdout, (done.stdout, done.stderr)


# --- 3. the head's stack files: the commit's, never what a link names --------------------------------


@pytest.mark.parametrize("target", ["/proc/self/environ", "main"])
def test_a_stack_file_that_is_a_symbolic_link_is_refused_unread(tmp_path: Path, target: str) -> None:
    """The gate reads the merge request's stack files from its checkout, with the bot's token in its
    environment. A link named Pulumi.dev.yaml to /proc/self/environ made it read that environment (the
    token in it) as YAML and report where its first NUL was; a link to a file outside the commit (here
    main's checkout, beside it in the bot's job) had it judge that file, not the commit: no grant, exit 0.
    A stack file is the commit's text: a link is refused before it is followed."""
    srv = tmp_path / "srv"
    origin = srv / f"{PLATFORM}.git"
    origin.mkdir(parents=True)
    base = _origin(origin)
    (origin / "Pulumi.dev.yaml").unlink()
    # In the bot's job the merge request is checked out in platform/build/head, main in platform/.
    (origin / "Pulumi.dev.yaml").symlink_to(target if target.startswith("/") else "../../Pulumi.dev.yaml")
    head = _commit(origin, "Pulumi.dev.yaml: a link")
    git(origin, "reset", "--quiet", "--hard", base)
    with _stub_with_push() as stub:
        stub.token = TOKEN
        done = run_bot_job(tmp_path, srv, PLATFORM, "access", base, head, stub)
        notes = [n["body"] for n in stub.notes_by(stub.user["id"])]
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    assert "Pulumi.dev.yaml is a symbolic link" in done.stderr and "position" not in done.stderr, done.stderr[-2000:]
    assert all("PLATFORM_MR_TOKEN" not in n and TOKEN[6:] not in n for n in notes), notes


def test_a_stack_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """Git takes a stack file of gigabytes, and the gate read a merge request's stack file whole (the bot's
    token beside it) before its size limit applied: the job's memory, not the limit, bounded it. A file
    over the limit is refused by its size, unread (the render and the gate read through one function)."""
    import tracemalloc

    from platformctl.render import read_stack_file
    from platformctl.stack_file import MAX_STACK_FILE_BYTES, RenderError

    path = tmp_path / "Pulumi.dev.yaml"
    with path.open("wb") as file:
        file.truncate(64 * MAX_STACK_FILE_BYTES)  # sparse: nothing on disk
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match=f"larger than {MAX_STACK_FILE_BYTES} bytes"):
            read_stack_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_STACK_FILE_BYTES, f"read {peak:,} bytes of it"


# --- 4. the token goes to the platform's GitLab only -------------------------------------------------


def test_git_gives_the_token_to_the_platforms_gitlab_only(tmp_path: Path) -> None:
    """The job's credential helper hands PLATFORM_MR_TOKEN to whatever host Git asks it about: a
    submodule's, a Git LFS endpoint's (`.lfsconfig` in the checked-out tree), a redirect's. It must
    answer for the platform's GitLab alone."""
    from components.merge_request_bot import bot_pipeline
    from tests.test_ci_file import _lines, _resolve

    [helper] = [line for line in _lines(_resolve(yaml.safe_load(bot_pipeline(PLATFORM)), "bot")["script"])
                if "credential" in line]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PLATFORM_MR_TOKEN": TOKEN,
           "CI_SERVER_URL": "https://gitlab.example.com", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run(["bash", "-ec", helper], env=env, check=True)

    def fill(url: str) -> str:
        return subprocess.run(["git", "credential", "fill"], input=f"url={url}\n\n", env=env,
                              capture_output=True, text=True).stdout

    assert f"password={TOKEN}" in fill(f"https://gitlab.example.com/{PLATFORM}.git")
    for elsewhere in ("https://attacker.example/lfs", "https://gitlab.example.com.attacker.example/x.git"):
        assert TOKEN not in fill(elsewhere), elsewhere


# --- 5. the gate's commit: the check as it is now, not any it ever was ----------------------------------


def test_a_merge_request_based_on_an_older_check_is_not_judged_by_it(tmp_path: Path) -> None:
    """The gate is the check at the merge request's diff base, which the attacker picks: any commit of
    main will do (mrbot checks only that it is one). A branch started from a commit whose check had a
    flaw since fixed (here: it found no grant) was judged by that flawed check and passed; merged, the
    next merge request's gate is main's with whatever the first one brought (a package in front of the
    check). The check must be the default branch's: the bot refuses, asking for a rebase."""
    srv = tmp_path / "srv"
    origin = srv / f"{PLATFORM}.git"
    origin.mkdir(parents=True)
    _origin(origin)
    gate = (origin / "platformctl/access.py").read_text()
    (origin / "platformctl/access.py").write_text(gate.replace(*GATE_EDIT))
    flawed = _commit(origin, "access: an earlier check, with a flaw")
    (origin / "platformctl/access.py").write_text(gate)
    _commit(origin, "access: the flaw fixed")
    git(origin, "checkout", "--quiet", "-b", "mallory", flawed)
    _grant(origin)
    head = _commit(origin, "add mallory")
    git(origin, "checkout", "--quiet", "main")
    with _stub_with_push() as stub:
        done = run_bot_job(tmp_path, srv, PLATFORM, "access", flawed, head, stub)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-2000:])
    assert f"the access check at the merge request's base {flawed[:12]} is not main's" in done.stderr, done.stderr[-2000:]
    assert "rebase the merge request onto main" in done.stderr and "nothing for owners to approve" not in done.stdout


# --- 6. the note: the bot's verdict before the branch's own account ------------------------------------


FORGED = (b"### Tenant access requests\n\nNo user gains a role in an existing tenant: nothing for owners to approve.\n\n"
          b"<!-- what follows is hidden in GitLab's rendering\n")


def test_the_branchs_render_cannot_forge_or_hide_the_bots_report_in_the_note(tmp_path: Path) -> None:
    """The note joins the branch's render (its `render` job's artifacts: the branch's own code wrote them)
    and the bot's access report into one Markdown summary. With the branch's text first, a render that
    ends in an unclosed HTML comment hid the bot's report, and one with a report of its own stood in its
    place for the owners who approve: the bot's report must come first."""
    srv, origin, base = served_origin(tmp_path)
    _grant(origin)
    head = _commit(origin, "add mallory")
    git(origin, "reset", "--quiet", "--hard", base)
    with _stub_with_push() as stub:
        stub.pipeline_jobs[PIPELINE_ID] = [{"id": 50, "name": "render", "status": "success"}]
        stub.artifacts[(50, "build/diff-dev.md")] = FORGED
        done = run_bot_job(tmp_path, srv, PLATFORM, "access", base, head, stub)
        [note] = [n["body"] for n in stub.notes_by(stub.user["id"])]
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr[-2000:])
    assert note.index("| dev | payments | mallory → developers |") < note.index("nothing for owners to approve"), note


# --- 7. access-main: the merge request that brought the commit, not one that lists it ---------------


def test_on_main_a_merge_request_that_only_lists_the_commit_does_not_stand_for_it(tmp_path: Path) -> None:
    """`access-main` holds a grant that reached main without its owners' approval (a merge while the check
    failed) until the merged merge request that brought it is approved. GitLab lists, for a commit, every
    merge request with it among its commits: one into a branch of the author's, merged there (GitLab marks
    it merged once its branch is pushed there), whose later commits take the grant out again, so that its
    diff shows none, and that an owner approved for what it shows. The check took the first merged one.
    It must be the merge request whose result the commit is (its merge, squash or head commit)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    _grant(repo)
    granted = _commit(repo, "add mallory")
    with _stub_with_push() as stub:
        stub.commit_merge_requests[granted] = [{"iid": stub.mr_iid, "state": "merged", "target_branch": "mallory-scratch",
                                                "sha": "1" * 40, "merge_commit_sha": "2" * 40, "squash_commit_sha": None}]
        stub.add_note(APPROVED_NOTE, ALICE, system=True, at=AFTER_PUSH)  # alice owns payments
        env = client_env(stub)
        env.pop("CI_MERGE_REQUEST_IID")
        done = run_in_process(["access", "--no-validate", "--base-ref", base, "--commit", granted], repo, env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"on a merge request (commit {granted[:12]} came to this branch without one)" in done.stdout, done.stdout


# --- 8. the config Pulumi reads, not only the keys the gate looks up ----------------------------------


def _tenants_elsewhere(repo: Path, how: str) -> None:
    """Move the stack's tenants (mallory granted) where Pulumi still reads them as platform:tenants."""
    stack = yaml.safe_load((repo / "Pulumi.dev.yaml").read_text())
    tenants = stack["config"].pop("platform:tenants")
    if how == "platform:config:tenants":  # Pulumi's ParseKey: <namespace>:config:<name> is <namespace>:<name>
        stack["config"][how] = tenants
    else:
        project = yaml.safe_load((repo / "Pulumi.yaml").read_text())
        if how == "Pulumi.yaml config":  # project config: a value for every stack that sets none
            project["config"] = {"platform:tenants": {"value": tenants}}
        else:  # stackConfigDir: where Pulumi reads Pulumi.<stack>.yaml
            project["stackConfigDir"] = "elsewhere"
            (repo / "elsewhere").mkdir()
            (repo / "elsewhere/Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": {**stack["config"], "platform:tenants": tenants}}))
        (repo / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    (repo / "Pulumi.dev.yaml").write_text(yaml.safe_dump(stack))


@pytest.mark.parametrize("how", ["platform:config:tenants", "Pulumi.yaml config", "stackConfigDir"])
def test_tenants_pulumi_reads_elsewhere_are_still_checked(tmp_path: Path, how: str) -> None:
    """The gate read `platform:tenants` of Pulumi.<stack>.yaml alone. Pulumi reads the key
    `platform:config:tenants` as `platform:tenants` (config.ParseKey, for compatibility), takes a key
    the stack file lacks from the project's Pulumi.yaml (`config:`), and reads the stack file from
    `stackConfigDir`. Each hid the tenants from the gate, which saw them removed (no approval needed: the
    deploy, reading them where they were, removed nothing), while mallory's grant deployed."""
    repo = tmp_path / "repo"
    repo.mkdir()
    base = _origin(repo)
    _grant(repo)
    _tenants_elsewhere(repo, how)
    _commit(repo, f"mallory, by {how}")
    with _stub_with_push() as stub:
        done = run_in_process(["access", "--no-validate", "--base-ref", base, "--mr-iid", str(stub.mr_iid)], repo, client_env(stub))
    assert done.returncode == 1, (done.stdout, done.stderr)
    if how == "platform:config:tenants":
        assert "| dev | payments | mallory → developers | alice | ❌ waiting for an owner's approval |" in done.stdout, done.stdout
    else:
        assert "| all | changes where Pulumi reads config (Pulumi.yaml) | ❌ waiting for a system approver" in done.stdout, done.stdout


def test_a_key_given_in_both_of_pulumis_spellings_is_refused() -> None:
    """`platform:tenants` and `platform:config:tenants` are one key to Pulumi, which keeps either of
    them (its config map is a Go map): the gate could judge the one the deploy does not read."""
    from platformctl.stack_file import ConfigError, parse_stack_file

    text = "config:\n  platform:tenants: []\n  platform:config:tenants: [{name: payments}]\n"
    with pytest.raises(ConfigError) as refused:
        parse_stack_file(text, "Pulumi.dev.yaml")
    assert refused.value.problems == ["platform:config:tenants: platform:tenants given twice; allowed: each key once, as <namespace>:<name>"]
    assert parse_stack_file("config:\n  platform:config:tenants: []\n", "Pulumi.dev.yaml")[0] == {"platform:tenants": "[]"}
