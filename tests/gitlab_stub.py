"""A small stateful GitLab REST API on 127.0.0.1 for `platformctl comment` and `access` tests.

It implements just what python-gitlab calls for merge-request notes and approvals: GET /user,
GET project, GET merge request, list notes (paginated like GitLab: page/per_page,
X-* headers and a Link header), create note and update note, the merge request's diff
versions, and the merge requests of a commit; for the merge-request bot, GraphQL's pipeline and its
upstream (answered from `pipelines`, not parsed), a pipeline's jobs and a job's artifact file. Tokens, authorship,
GitLab's note size limit and forced failures behave like the real server, so the
client code is exercised over real HTTP rather than against mocks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

from tests.loopback import LoopbackServer

GITLAB_NOTE_LIMIT = 1_000_000  # GitLab's own validation, mirrored so oversized notes are rejected
BOT = {"id": 100, "username": "platform-bot", "name": "Platform Bot"}


@dataclass
class GitLabStub(LoopbackServer):
    token: str = "stub-token-not-a-secret"
    project_id: int = 42
    project_path: str = "platform/platform-bootstrap"
    mr_iid: int = 7
    user: dict[str, Any] = field(default_factory=lambda: dict(BOT))
    max_per_page: int = 100  # GitLab caps per_page at 100; lower it to force several pages
    fail_status: int | None = None  # answer every API request with this status
    notes: list[dict[str, Any]] = field(default_factory=list)
    # One diff version per push, as GitLab records them; `created_at` is the push time.
    versions: list[dict[str, Any]] = field(default_factory=lambda: [{"id": 1, "created_at": "2026-01-01T00:00:00Z"}])
    commit_merge_requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> MRs
    author: dict[str, Any] = field(default_factory=lambda: {"id": 99, "username": "mara", "name": "Mara"})
    # The merge request's approval rules as GET .../approval_state lists them.
    approval_rules: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path?query)
    # GraphQL `project(fullPath).pipeline(iid)`: (project path, iid) -> the Pipeline object it answers.
    pipelines: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pipeline_jobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # this project's pipeline id -> jobs
    # This project's pipelines, newest first, each with its trigger jobs (`bridges`: name and status).
    branch_pipelines: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[tuple[int, str], bytes] = field(default_factory=dict)  # (job id, path) -> content
    forbidden_jobs: set[int] = field(default_factory=set)  # jobs whose artifacts are for Developers (`access: developer`)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    # --- state -----------------------------------------------------------------
    def add_note(
        self, body: str, author: dict[str, Any], system: bool = False, at: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            note = {
                "id": 1000 + len(self.notes),
                "body": body,
                "author": dict(author),
                "system": system,
                "noteable_type": "MergeRequest",
                "noteable_iid": self.mr_iid,
                "created_at": at or f"2026-01-01T00:{len(self.notes) // 60:02d}:{len(self.notes) % 60:02d}Z",
            }
            self.notes.append(note)
            return note

    def push(self, at: str) -> None:
        """A push to the merge request's branch: GitLab records a new diff version."""
        with self._lock:
            self.versions.append({"id": len(self.versions) + 1, "created_at": at})

    def notes_by(self, user_id: int) -> list[dict[str, Any]]:
        return [n for n in self.notes if n["author"]["id"] == user_id]


def client_env(stub: GitLabStub | None, **extra: str) -> dict[str, str]:
    """The environment of a CI job talking to `stub` (or to no GitLab): this process's own,
    without its CI, GitLab and proxy settings, plus the variables GitLab gives a merge-request job."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CI_", "GITLAB_", "PLATFORM_MR_")) and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY")
    }
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    if stub is not None:
        env.update(
            CI_API_V4_URL=stub.api_url,
            CI_PROJECT_ID=str(stub.project_id),
            CI_MERGE_REQUEST_IID=str(stub.mr_iid),
            PLATFORM_MR_TOKEN=stub.token,
        )
    env.update(extra)
    return env


def run_in_process(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m platformctl <command>` in `cwd` with exactly the environment `env`, in this process
    (`platformctl.__main__.main`): a process of its own would import the whole program again, about a
    second of CPU per call. An exception escaping `main` (a traceback in the CLI) fails the test."""
    from platformctl.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        patch.chdir(cwd)
        for key in os.environ.keys() - env.keys():
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        code = main(command)
    return subprocess.CompletedProcess(command, code, out.getvalue(), err.getvalue())


class _Handler(BaseHTTPRequestHandler):
    state: GitLabStub

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    # --- plumbing ----------------------------------------------------------------
    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        ctype = "text/html" if isinstance(payload, str) else "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        if "json" in (self.headers.get("Content-Type") or ""):
            return json.loads(raw)
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def _dispatch(self, method: str) -> None:
        st = self.state
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body()
        with st._lock:
            st.requests.append((method, self.path))
        if st.fail_status is not None:
            if st.fail_status >= 500:  # a proxy's HTML error page, as GitLab's nginx sends
                page = f"<html>\n<head><title>{st.fail_status} Internal Server Error</title></head>\n</html>\n"
                return self._send(st.fail_status, page)
            return self._send(st.fail_status, {"message": f"{st.fail_status} Forced failure"})
        if url.path == "/api/graphql" and method == "POST":
            return self._graphql(body)
        if self.headers.get("PRIVATE-TOKEN") != st.token:
            return self._send(401, {"message": "401 Unauthorized"})

        # Split before unquoting: a project path arrives URL-encoded as one segment.
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:2] != ["api", "v4"]:
            return self._send(404, {"error": "404 Not Found"})
        route = parts[2:]
        if route == ["user"] and method == "GET":
            return self._send(200, st.user)
        if len(route) < 2 or route[0] != "projects" or route[1] not in (str(st.project_id), st.project_path):
            return self._send(404, {"message": "404 Project Not Found"})
        project = {"id": st.project_id, "path_with_namespace": st.project_path}
        if len(route) == 2 and method == "GET":
            return self._send(200, project)
        if route[2:4] == ["repository", "commits"] and route[5:] == ["merge_requests"] and method == "GET":
            return self._send(200, st.commit_merge_requests.get(route[4], []))
        if route[2:] == ["pipelines"] and method == "GET":  # filtered as GitLab does by ref and source
            listed = [{k: v for k, v in p.items() if k != "bridges"} for p in st.branch_pipelines
                      if all(p.get(key) == query[key] for key in ("ref", "source") if key in query)]
            return self._send(200, listed)
        if route[2:3] == ["pipelines"] and route[4:] == ["bridges"] and method == "GET":
            return self._send(200, next((p["bridges"] for p in st.branch_pipelines if p["id"] == int(route[3])), []))
        if route[2:3] == ["pipelines"] and route[4:] == ["jobs"] and method == "GET":
            return self._send(200, st.pipeline_jobs.get(int(route[3]), []))
        if route[2:3] == ["jobs"] and route[4:5] == ["artifacts"] and method == "GET" and int(route[3]) in st.forbidden_jobs:
            return self._send(403, {"message": "403 Forbidden"})
        if route[2:3] == ["jobs"] and route[4:5] == ["artifacts"] and method == "GET":
            found = st.artifacts.get((int(route[3]), "/".join(route[5:])))
            return self._send(404, {"message": "404 Not Found"}) if found is None else self._send_bytes(found)
        if route[2:3] != ["merge_requests"] or route[3:4] != [str(st.mr_iid)]:
            return self._send(404, {"message": "404 Not found"})
        mr = {"id": 9000 + st.mr_iid, "iid": st.mr_iid, "project_id": st.project_id, "state": "opened", "author": st.author}
        rest = route[4:]
        if rest == [] and method == "GET":
            return self._send(200, mr)
        if rest == ["approval_state"] and method == "GET":
            return self._send(200, {"approval_rules_overwritten": False, "rules": st.approval_rules})
        if rest == ["versions"] and method == "GET":  # newest first, like GitLab
            return self._send(200, sorted(st.versions, key=lambda v: v["id"], reverse=True))
        if rest == ["notes"] and method == "GET":
            return self._list_notes(url.path, query)
        if rest == ["notes"] and method == "POST":
            return self._write_note(None, body)
        if len(rest) == 2 and rest[0] == "notes" and method == "PUT":
            return self._write_note(int(rest[1]), body)
        return self._send(404, {"error": "404 Not Found"})

    def _send_bytes(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _graphql(self, body: dict[str, Any]) -> None:
        """GitLab answers a query with a token it does not know with 401, a pipeline it cannot see with null."""
        st = self.state
        if self.headers.get("Authorization") != f"Bearer {st.token}":
            return self._send(401, {"errors": [{"message": "Invalid token"}]})
        variables = body.get("variables") or {}
        pipeline = st.pipelines.get((variables.get("path"), variables.get("iid")))
        return self._send(200, {"data": {"project": {"pipeline": pipeline}}})

    def _list_notes(self, path: str, query: dict[str, str]) -> None:
        st = self.state
        per_page = min(int(query.get("per_page", 20)), st.max_per_page)
        page = max(int(query.get("page", 1)), 1)
        with st._lock:
            by_time = query.get("order_by") == "created_at"
            notes = sorted(
                st.notes,
                key=lambda n: (n["created_at"], n["id"]) if by_time else (n["id"],),
                reverse=query.get("sort", "desc") == "desc",
            )
        total_pages = max(1, -(-len(notes) // per_page))
        chunk = notes[(page - 1) * per_page : page * per_page]

        def link(to_page: int) -> str:
            return f"{st.url}{path}?{urlencode({**query, 'page': to_page, 'per_page': per_page})}"

        links = [f'<{link(1)}>; rel="first"', f'<{link(total_pages)}>; rel="last"']
        if page < total_pages:
            links.insert(0, f'<{link(page + 1)}>; rel="next"')
        if page > 1:
            links.insert(0, f'<{link(page - 1)}>; rel="prev"')
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(notes)),
            "X-Total-Pages": str(total_pages),
            "X-Next-Page": str(page + 1) if page < total_pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
            "Link": ", ".join(links),
        }
        self._send(200, chunk, headers)

    def _write_note(self, note_id: int | None, body: dict[str, Any]) -> None:
        st = self.state
        text = body.get("body")
        if not text:
            return self._send(400, {"message": "400 Bad request - body is missing"})
        if len(text) > GITLAB_NOTE_LIMIT:
            return self._send(400, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}})
        if note_id is None:
            return self._send(201, st.add_note(text, st.user))
        with st._lock:
            note = next((n for n in st.notes if n["id"] == note_id), None)
            if note is None:
                return self._send(404, {"message": "404 Not found"})
            if note["author"]["id"] != st.user["id"]:  # GitLab lets only the author edit a note
                return self._send(403, {"message": "403 Forbidden"})
            note["body"] = text
        return self._send(200, note)
