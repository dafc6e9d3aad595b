"""Where `platformctl comment` and `platformctl access` reach GitLab, and how they report it.

The location comes from flags first and from the CI job's predefined variables second; the
token from an environment variable, never a flag (a flag would sit in the job log and in
`ps`). API refusals and connection failures become one line naming the step and the likely fix.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any, Mapping

import gitlab
import requests

DEFAULT_TOKEN_ENV = "PLATFORM_MR_TOKEN"


class UsageError(Exception):
    """A problem the user can fix (a missing setting, an unreadable file, a refused call);
    reported as one line, exit code 2, by `comment` and `access` alike."""


@dataclass(frozen=True)
class Location:
    url: str
    token: str
    token_env: str
    project: str


def add_arguments(parser: argparse.ArgumentParser, token_use: str) -> None:
    parser.add_argument("--token-env", default=DEFAULT_TOKEN_ENV, metavar="NAME",
                        help=f"environment variable holding the API token (default: {DEFAULT_TOKEN_ENV}); "
                        f"CI_JOB_TOKEN is refused because it cannot {token_use}")
    parser.add_argument("--gitlab-url", help="GitLab base URL (default: from CI_API_V4_URL or CI_SERVER_URL)")
    parser.add_argument("--project", help="project ID or path (default: CI_PROJECT_ID)")


def location(
    args: argparse.Namespace, env: Mapping[str, str], token_use: str, also: list[tuple[str, Any]] = ()
) -> Location:
    """The GitLab to talk to. `also` lists further (description, value) pairs that must be set."""
    if args.token_env == "CI_JOB_TOKEN":
        raise UsageError(
            f"CI_JOB_TOKEN cannot {token_use}; store a project access token "
            f"(api scope, Reporter) in a masked variable such as {DEFAULT_TOKEN_ENV}"
        )
    url = args.gitlab_url
    if not url and env.get("CI_API_V4_URL"):
        api = env["CI_API_V4_URL"].rstrip("/")
        if not api.endswith("/api/v4"):
            raise UsageError(f"CI_API_V4_URL does not end with /api/v4: {api}")
        url = api.removesuffix("/api/v4")
    url = url or env.get("CI_SERVER_URL", "")
    project = args.project or env.get("CI_PROJECT_ID", "")
    token = env.get(args.token_env, "")
    required = [
        ("GitLab URL (CI_API_V4_URL, CI_SERVER_URL or --gitlab-url)", url),
        ("project (CI_PROJECT_ID or --project)", project),
        *also,
        (f"token (environment variable {args.token_env})", token),
    ]
    missing = [what for what, value in required if not value]
    if missing:
        raise UsageError("missing " + "; ".join(missing))
    return Location(url.rstrip("/"), token, args.token_env, str(project))


def connect(where: Location) -> gitlab.Gitlab:
    return gitlab.Gitlab(where.url, private_token=where.token, timeout=30)


def one_line(message: Any, limit: int = 200) -> str:
    text = str(message)
    if "<html" in text.lower():  # a proxy's error page: its title is the only useful part
        title = re.search(r"<title>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure(err: gitlab.GitlabError | requests.RequestException, step: str, where: Location) -> str:
    """One line for a refused API call or an unreachable GitLab, naming the step and the likely fix."""
    if isinstance(err, requests.RequestException):
        return f"cannot reach GitLab at {where.url} to {step}: {type(err).__name__}"
    code = err.response_code
    hint = {
        401: f"the token in ${where.token_env} is invalid, expired or revoked",
        403: f"the token in ${where.token_env} lacks permission (needs api scope and Reporter on the project)",
        404: "not found, or not visible to this token",
    }.get(code or 0, "GitLab server error, retry the job" if (code or 0) >= 500 else "")
    status = f"HTTP {code}" if code else "no HTTP status"
    detail = one_line(err.error_message)
    return f"GitLab refused to {step} ({status}): {hint}{'; ' if hint and detail else ''}{detail}"
