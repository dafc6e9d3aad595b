"""`platformctl mrbot`: the merge-request bot's check of who triggered it, in the bot project.

PLATFORM_MR_TOKEN lives only in the bot project (components/merge_request_bot.py), as a protected
variable of its protected `main`, whose `.gitlab-ci.yml` the program writes. The platform project's
pipelines trigger it (a multi-project `trigger:`) and pass it nothing: GitLab refuses a downstream
pipeline that would set a variable there (`no_one_allowed`). So what the bot acts on is what it
finds itself, with the token and GitLab's GraphQL API: the pipeline that triggered its own
(`upstream`), which must be the platform project's, and either a merge-request pipeline of a merge
request into the default branch, or a pipeline of the default branch. Anything else (run by hand,
by the API or a schedule, triggered from another project, from another branch) is refused, exit 2.

It runs from the platform project's default branch (reviewed code) and writes, into `--out`:
`upstream.env` (what the bot's next steps read: the upstream's commit, the gate's commit, the merge
request) and, for a merge request, the files its `render` and `preview-*` jobs left as artifacts. On the
default branch the gate is the last commit whose own check passed there (`last_checked`), not merely the one
before the push; a schedule's pipeline there (rebuild-dev's) is checked the same way.
It fetches the upstream's commit into the clone it runs in (by its id: GitLab's Gitaly serves any
commit it has; a pipeline's own ref, refs/pipelines/<id>, is gone once it completes, and a retried
job must still find it), and checks the gate's commit (the merge request's diff base, or on the
default branch its last checked commit, an ancestor of the upstream's) is one of the default branch's:
the access check runs from there. A merge request's base, which its author picks, must hold the default branch's check
(no gate file changed since). An artifact the token may not read (`access: developer`) is named in
WITHHELD instead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import gitlab
import requests

from platformctl import gitlab_api
from platformctl.access import gate_file

TOKEN_USE = "read pipelines and merge requests"
EXIT_OK, EXIT_REFUSED = 0, 2
# The upstream pipeline's jobs whose artifacts go into the note (job -> its files), as .gitlab-ci.yml names them.
NOTE_FILES = {
    "render": ("build/diff-dev.md", "build/diff-prod.md"),
    "preview-dev": ("build/preview-dev.txt",),
    "preview-prod": ("build/preview-prod.txt",),
}
# The platform project's job that has the bot check each push to the default branch (.gitlab-ci.yml).
CHECK_JOB = "access-main"
# An artifact is cut here: the note keeps less (platformctl/comment.py NOTE_LIMIT).
ARTIFACT_LIMIT = 2_000_000
WITHHELD = "withheld.md"  # what the note could not show, and why
SHA = re.compile(r"^[0-9a-f]{40}$")
QUERY = """
query($path: ID!, $iid: ID!) {
  project(fullPath: $path) {
    pipeline(iid: $iid) {
      source
      upstream {
        id source ref sha beforeSha
        project { fullPath repository { rootRef } }
        mergeRequest { iid targetBranch project { fullPath } diffRefs { baseSha } }
      }
    }
  }
}
"""


class Refused(gitlab_api.UsageError):
    """The bot's pipeline was not triggered by a pipeline it serves."""


@dataclass(frozen=True)
class Upstream:
    """The platform project's pipeline that triggered the bot's, as GitLab describes it."""

    pipeline_id: int
    sha: str
    gate_ref: str  # the commit whose access check judges it
    default_branch: str
    mr_iid: int | None  # None: a pipeline of the default branch
    scheduled: bool = False  # a schedule's pipeline of the default branch (rebuild-dev's), which no push started


def upstream_of(pipeline: Mapping[str, Any] | None, platform: str) -> Upstream:
    """The upstream of the bot's own pipeline (GraphQL `Pipeline`), or Refused saying why not."""
    if not pipeline:
        raise Refused("GitLab shows no pipeline of the bot's: the token cannot read it")
    if pipeline.get("source") != "pipeline":
        raise Refused(f"this pipeline's source is {pipeline.get('source')!r}, not a pipeline of {platform}: "
                      "the bot runs only when the platform project's pipelines trigger it")
    upstream = pipeline.get("upstream")
    if not upstream:
        raise Refused("no upstream pipeline (or one the token cannot read): the bot serves the platform project only")
    project = (upstream.get("project") or {}).get("fullPath")
    if project != platform:
        raise Refused(f"triggered from {project!r}, not {platform!r}")
    default = ((upstream.get("project") or {}).get("repository") or {}).get("rootRef")
    pipeline_id = int(str(upstream.get("id", "")).rpartition("/")[2] or 0)
    source, sha = upstream.get("source"), str(upstream.get("sha"))
    if source == "merge_request_event":
        mr = upstream.get("mergeRequest") or {}
        if (mr.get("project") or {}).get("fullPath") != platform or mr.get("targetBranch") != default:
            raise Refused(f"the merge request of the upstream pipeline does not go into {platform}'s {default!r}")
        if not str(mr.get("iid")).isdigit():
            raise Refused(f"GitLab gave {mr.get('iid')!r} where the merge request's number was expected")
        return Upstream(pipeline_id, sha, str((mr.get("diffRefs") or {}).get("baseSha")), default, int(mr["iid"]))
    if source == "push" and upstream.get("ref") == default:
        return Upstream(pipeline_id, sha, str(upstream.get("beforeSha")), default, None)
    if source == "schedule" and upstream.get("ref") == default:  # its gate is last_checked's: no push, no commit before it
        return Upstream(pipeline_id, sha, sha, default, None, scheduled=True)
    raise Refused(f"the upstream is a {source!r} pipeline of {upstream.get('ref')!r}: the bot serves merge requests "
                  f"into {default!r} and that branch's own pipelines")


def query_pipeline(where: gitlab_api.Location, bot: str, iid: str) -> Mapping[str, Any] | None:
    """The bot's pipeline `iid` and its upstream, by GraphQL (the REST API does not show the upstream)."""
    response = requests.post(f"{where.url}/api/graphql", json={"query": QUERY, "variables": {"path": bot, "iid": iid}},
                             headers={"Authorization": f"Bearer {where.token}"}, timeout=30)
    if response.status_code != 200:
        raise gitlab.GitlabHttpError(response.text, response_code=response.status_code)
    body = response.json()
    if body.get("errors"):
        raise gitlab_api.UsageError(f"GitLab's GraphQL API refused the query: {gitlab_api.one_line(body['errors'])}")
    return ((body.get("data") or {}).get("project") or {}).get("pipeline")


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise Refused(f"git {' '.join(args)}: {gitlab_api.one_line(done.stderr)}")
    return done.stdout.strip()


def fetch(upstream: Upstream) -> None:
    """The upstream's commit into this clone; the gate's commit must be on the default branch."""
    for sha in (upstream.sha, upstream.gate_ref):
        if not SHA.match(sha):
            raise Refused(f"GitLab gave {sha!r} where a commit was expected")
    _git("fetch", "--quiet", "origin", upstream.sha, f"+refs/heads/{upstream.default_branch}:refs/upstream/default")
    ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", upstream.gate_ref, "refs/upstream/default"], check=False)
    if ancestor.returncode != 0:
        raise Refused(f"the gate's commit {upstream.gate_ref[:12]} is not on {upstream.default_branch}: its code is not reviewed")
    if upstream.mr_iid is None:
        return  # last_checked picks the gate, an ancestor of the upstream's commit
    # A merge request's diff base is any commit of the default branch its author starts from: its check
    # may be one since fixed. The check there must be the default branch's.
    changed = _git("diff", "--no-renames", "--name-only", "-z", upstream.gate_ref, "refs/upstream/default")
    older = [path for path in changed.split("\0") if path and gate_file(path)]
    if older:
        raise Refused(f"the access check at the merge request's base {upstream.gate_ref[:12]} is not "
                      f"{upstream.default_branch}'s ({', '.join(older)} changed since): rebase the merge request "
                      f"onto {upstream.default_branch}")


def last_checked(project: Any, upstream: Upstream) -> str:
    """The gate of a pipeline of the default branch, its code and what it is compared with: the newest commit of
    that branch, before it, whose own push pipeline passed the access check (its CHECK_JOB succeeded, a retry after
    an approval included). Not the commit before the push: once a change failed its check (deploy-dev waits for it),
    the next push, anyone's, would pass and deploy both, judged by the check as that change left it. Until the check
    has passed once on the branch (a new bot), a push's commit before it; a schedule's is refused."""
    checked = False
    for pipeline in project.pipelines.list(ref=upstream.default_branch, source="push", order_by="id", sort="desc", iterator=True):
        if pipeline.id >= upstream.pipeline_id:
            continue
        bridges = [b for b in project.pipelines.get(pipeline.id, lazy=True).bridges.list(get_all=True) if b.name == CHECK_JOB]
        if not any(bridge.status == "success" for bridge in bridges):
            continue
        checked = True
        ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", pipeline.sha, upstream.sha], capture_output=True, check=False)
        if ancestor.returncode == 0:
            return str(pipeline.sha)
    if checked or upstream.scheduled:  # passed only on commits the branch no longer holds (history rewritten), or never
        raise Refused(f"no commit of {upstream.default_branch} before {upstream.sha[:12]} passed the access check "
                      f"({CHECK_JOB}): revert what came since the last that did, or ask an administrator")
    return upstream.gate_ref


def download_note_files(project: Any, pipeline_id: int, out: Path) -> list[str]:
    """The note's files the upstream's jobs left (the latest run of each job); returns their names.
    A file the token may not read (`artifacts:access: developer`: the token is a Reporter's) is named in
    WITHHELD instead, which the note shows."""
    latest: dict[str, Any] = {}
    for job in project.pipelines.get(pipeline_id, lazy=True).jobs.list(get_all=True):
        if job.name in NOTE_FILES and (job.name not in latest or job.id > latest[job.name].id):
            latest[job.name] = job
    found, withheld = [], []
    for name, job in sorted(latest.items()):
        for path in NOTE_FILES[name]:
            try:
                data = bytearray()
                for chunk in project.jobs.get(job.id, lazy=True).artifact(path, iterator=True):
                    data += chunk[: ARTIFACT_LIMIT - len(data)]
                    if len(data) >= ARTIFACT_LIMIT:
                        break
            except gitlab.GitlabGetError as err:
                if err.response_code == 403:
                    withheld.append(f"`{path}` of job {name}")
                elif err.response_code != 404:  # 404: a job that did not write it (not run, or failed before)
                    raise
                continue
            (out / Path(path).name).write_bytes(bytes(data))
            found.append(Path(path).name)
    if withheld:
        (out / WITHHELD).write_text(f"Not in this note: {', '.join(withheld)}; only Developers may read those jobs' "
                                    "artifacts (`artifacts:access: developer`), and the bot is a Reporter.\n")
        found.append(WITHHELD)
    return sorted(found)


def run(args: argparse.Namespace) -> int:
    step, where = "start", None
    try:
        iid = os.environ.get("CI_PIPELINE_IID", "")
        where = gitlab_api.location(args, os.environ, TOKEN_USE, also=[("the bot's pipeline (CI_PIPELINE_IID)", iid)])
        step = f"read pipeline {iid} of {args.bot_project} and its upstream"
        upstream = upstream_of(query_pipeline(where, args.bot_project, iid), args.platform_project)
        fetch(upstream)
        args.out.mkdir(parents=True, exist_ok=True)
        files: list[str] = []
        platform = gitlab_api.connect(where).projects.get(args.platform_project, lazy=True)
        if upstream.mr_iid is not None:
            step = f"read the artifacts of pipeline {upstream.pipeline_id} of {args.platform_project}"
            files = download_note_files(platform, upstream.pipeline_id, args.out)
        else:
            step = f"read the pipelines of {args.platform_project}'s {upstream.default_branch}"
            upstream = replace(upstream, gate_ref=last_checked(platform, upstream))
    except gitlab_api.UsageError as err:
        print(f"platformctl mrbot: refused: {err}", file=sys.stderr)
        return EXIT_REFUSED
    except (gitlab.GitlabError, requests.RequestException) as err:
        assert where is not None
        print(f"platformctl mrbot: refused: {gitlab_api.failure(err, step, where)}", file=sys.stderr)
        return EXIT_REFUSED
    (args.out / "upstream.env").write_text(
        f"UPSTREAM_SHA={upstream.sha}\nGATE_REF={upstream.gate_ref}\nMR_IID={upstream.mr_iid or ''}\n")
    target = f"merge request !{upstream.mr_iid}" if upstream.mr_iid else f"{upstream.default_branch} at {upstream.sha[:12]}"
    print(f"platformctl mrbot: pipeline {upstream.pipeline_id} of {args.platform_project}, for {target}; "
          f"gate {upstream.gate_ref[:12]}; note files: {', '.join(files) or 'none'}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mrbot", help="in the bot project: verify the platform pipeline that triggered this one and fetch its results",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--platform-project", required=True, metavar="PATH", help="the platform project's full path")
    parser.add_argument("--bot-project", default=os.environ.get("CI_PROJECT_PATH"), metavar="PATH",
                        help="the bot project's full path (default: CI_PROJECT_PATH)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where upstream.env and the note's files go")
    gitlab_api.add_arguments(parser, TOKEN_USE)
    parser.set_defaults(run=run)
