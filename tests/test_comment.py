"""`platformctl comment`: note building, secret masking, and the CLI against a stub GitLab.

The CLI runs as `python -m platformctl comment` in a subprocess, talking HTTP to
tests/gitlab_stub.py on 127.0.0.1: python-gitlab itself is never mocked.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import gitlab
import pytest

from platformctl.comment import (
    FOLD_LINES,
    MARKER,
    NOTE_LIMIT,
    NOTE_MARGIN,
    build_note,
    mask_secrets,
    upsert_note,
)
from gitlab_stub import BOT, GitLabStub, client_env

ROOT = Path(__file__).resolve().parent.parent
HUMAN = {"id": 5, "username": "alice", "name": "Alice"}
REVIEWER = {"id": 6, "username": "bob", "name": "Bob"}

# Fake credentials in the formats the masking must catch (split so no scanner flags this file).
GLPAT = "glpat-" + "Ab3dEf6hIj9kLm2nOp5q"
AKIA = "AKIA" + "IOSFODNN7EXAMPLE"
PEM = "\n".join(
    [
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB",
        "aFDrBz9vFqU4yL4Xq2Y9Zc6c6LZ3dG8w2l0bmF0aW9uYWwgc2VjcmV0IGtleSBib2R5",
        "-----END RSA " + "PRIVATE KEY-----",
    ]
)


# --- build_note ------------------------------------------------------------------


def test_note_starts_with_marker_and_shows_summary_and_preview() -> None:
    body = build_note("| stack | + | - |\n|---|---|---|\n| dev | 3 | 0 |", [("preview-dev.txt", "+ ns")], 10_000)
    assert body.startswith(MARKER + "\n")
    assert "### Platform preview" in body
    assert "| dev | 3 | 0 |" in body
    assert "```text\n+ ns\n```" in body
    assert "<details>" not in body  # short blocks are shown inline


def test_long_preview_is_folded_into_details() -> None:
    preview = "\n".join(f"    + kubernetes:core/v1:ConfigMap cm-{i} create" for i in range(FOLD_LINES + 5))
    body = build_note("summary", [("preview-prod.txt", preview)], 100_000)
    assert f"<details><summary>preview-prod.txt ({FOLD_LINES + 5} lines)</summary>\n\n```text\n" in body
    assert "cm-44 create\n```\n\n</details>" in body


def test_preview_label_cannot_inject_html() -> None:
    body = build_note("s", [("<img src=x>.txt", "line\n" * (FOLD_LINES + 1))], 10_000)
    assert f"<summary>&lt;img src=x&gt;.txt ({FOLD_LINES + 2} lines)</summary>" in body and "<img" not in body


def test_fence_is_longer_than_backticks_inside_the_preview() -> None:
    body = build_note("s", [("p", "before\n````\nafter")], 10_000)
    assert "`````text\nbefore\n````\nafter\n`````" in body


# GitLab's quick-action extractor (gitlabhq lib/gitlab/quick_actions/extractor.rb, `commands_regex`; Ruby's
# /m is Python's DOTALL, its ^ and $ always match at lines), for any command name. It deletes every "\r"
# first (`perform_regex`), then runs, as the note's author (the bot), each command found outside what it
# takes for a code block, an HTML block or a >>> quote: a line of exactly ``` ends such a code block,
# whatever fence opened it.
QUICK_ACTIONS = re.compile(
    r"""
      (?P<code> ^```  .+?  \n```$ )
    | (?P<html> ^<[^>]+?>\n  .+?  \n</[^>]+?>$ )
    | (?P<quote> ^>>>  .+?  \n>>>$ )
    | (?: ^/ (?P<cmd>\w+) (?: [ ] (?P<arg>[^\n]*) )? (?:\s*\n|$) )
    """,
    re.MULTILINE | re.DOTALL | re.VERBOSE | re.IGNORECASE,
)


def quick_actions(note: str) -> list[str]:
    return [m["cmd"] for m in QUICK_ACTIONS.finditer(note.replace("\r", "")) if m["cmd"]]


def test_the_extractor_finds_what_gitlab_runs() -> None:
    """The transcription above, on GitLab's own examples: a command line runs, one in a code block does not."""
    assert quick_actions("hello\n/labels ~foo ~\"bar baz\"\nworld") == ["labels"]
    assert quick_actions("```\n/close\n```") == [] and quick_actions(">>>\n/close\n>>>") == []


# A branch writes its own render summary and preview (the upstream pipeline's artifacts): the bot posts them.
BRANCH_WRITTEN = [
    ("summary", "/approve\n/merge", []),
    ("summary, after a carriage return", "ok\n\r/label ~deploy", []),
    ("preview, inside the fence", "", [("preview-dev.txt", "+ ns\n/merge\n")]),
    ("preview, closing GitLab's idea of the fence", "", [("preview-dev.txt", "+ ns\n```\n/approve\n/unlabel ~hold\n```")]),
    # The marker opens what the extractor takes for an HTML block, up to the first line that is a closing tag.
    ("folded preview, after a closing tag", "", [("preview-prod.txt", "+ cm\n" * FOLD_LINES + "</pre>\n/assign_reviewer @me\n")]),
]


@pytest.mark.parametrize(("summary", "previews"), [case[1:] for case in BRANCH_WRITTEN], ids=[c[0] for c in BRANCH_WRITTEN])
def test_nothing_a_branch_writes_runs_as_a_quick_action_of_the_bot(summary: str, previews: list[tuple[str, str]]) -> None:
    body = build_note(summary, previews, 100_000)
    assert quick_actions(body) == []
    for command in ("approve", "merge", "label ~deploy", "unlabel ~hold", "assign_reviewer @me"):
        if command in summary + "".join(text for _, text in previews):
            assert f" /{command}" in body  # still shown, one space in


def test_oversized_preview_is_cut_with_notice_and_note_stays_under_the_limit() -> None:
    limit = NOTE_LIMIT - NOTE_MARGIN
    line = "    ~ kubernetes:apps/v1:Deployment  [diff: ~spec]  " + "x" * 70 + "\n"
    huge = line * (2 * NOTE_LIMIT // len(line))  # about twice GitLab's limit
    small = "+ platform:tenant:Tenant team-a create\n"
    body = build_note("## dev: 1 changed", [("preview-dev.txt", huge), ("preview-prod.txt", small)], limit)
    assert len(body) <= limit
    assert len(body) > limit - 5_000  # the budget is used, not thrown away
    assert body.count("Output cut:") == 1  # only the oversized block is cut
    assert f"of {len(huge):,} characters" in body
    assert small in body  # the small preview is kept whole
    assert "## dev: 1 changed" in body
    assert "<details><summary>preview-dev.txt" in body
    assert "The full text is in the job artifacts.\n\n</details>" in body  # the notice sits inside the fold
    # the cut ends on a whole line and the code fence is still closed
    assert line + "```\n\n> :scissors: **Output cut:**" in body


def test_several_oversized_blocks_share_the_budget() -> None:
    limit = 50_000
    blocks = [("a", "a" * 100_000 + "\n"), ("b", "b\n" * 100_000)]
    body = build_note("s" * 100_000, blocks, limit)
    assert len(body) <= limit
    assert body.count("Output cut:") == 3
    # each block keeps about a third of what is left after the fixed parts
    assert "a" * 15_000 in body and "b\n" * 7_500 in body and "s" * 15_000 in body


def test_limit_too_small_for_the_fixed_parts_is_an_error() -> None:
    with pytest.raises(ValueError, match="too small"):
        build_note("x" * 500, [], 50)


# --- secret masking ----------------------------------------------------------------


def test_lines_that_look_like_secrets_are_masked() -> None:
    text = "\n".join(
        [
            "keep: before",
            f"token: {GLPAT}",
            PEM,
            f"aws_access_key_id = {AKIA}",
            'password: "[secret]"',  # an already-redacted value is fine
            "keep: after",
        ]
    )
    masked, found = mask_secrets(text)
    assert GLPAT not in masked and AKIA not in masked
    assert "MIIEpAIBAAKCAQEA" not in masked and "bmF0aW9uYWwg" not in masked  # the key body too
    assert "PRIVATE KEY" not in masked
    assert masked.splitlines()[0] == "keep: before" and masked.splitlines()[-1] == "keep: after"
    assert 'password: "[secret]"' in masked
    assert found == ["GitLab token"] + ["private key"] * 4 + ["AWS access key"]


def test_single_line_pem_masks_only_that_line() -> None:
    masked, found = mask_secrets('"key": "-----BEGIN ' + 'PRIVATE KEY-----\\nMIIE\\n-----END PRIVATE KEY-----"\nnext line')
    assert masked.endswith("\nnext line") and found == ["private key"]


def test_build_note_masks_secrets_and_says_so() -> None:
    body = build_note(f"summary {GLPAT}", [("preview-dev.txt", PEM)], 10_000, title=f"t {AKIA}")
    for secret in (GLPAT, AKIA, "MIIEpAIBAAKCAQEA"):
        assert secret not in body
    assert "6 line(s) that looked like secrets (AWS access key, GitLab token, private key) were masked" in body


# --- upsert_note against the stub (in process) -----------------------------------


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment must not intercept calls to the local stub.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def _mr(stub: GitLabStub) -> tuple[gitlab.Gitlab, object]:
    gl = gitlab.Gitlab(stub.url, private_token=stub.token)
    gl.auth()
    return gl, gl.projects.get(stub.project_id).mergerequests.get(stub.mr_iid)


def test_upsert_creates_then_updates_across_pages_and_skips_other_authors_marker() -> None:
    with GitLabStub(max_per_page=3) as stub:
        stub.add_note(f"{MARKER}\npasted by a human", HUMAN)  # same marker, other author: leave it
        for i in range(4):
            stub.add_note(f"review {i}", REVIEWER)
        gl, mr = _mr(stub)
        assert upsert_note(mr, f"{MARKER}\nfirst", author_id=gl.user.id) == "created"
        for i in range(4):
            stub.add_note(f"later review {i}", REVIEWER)
        assert upsert_note(mr, f"{MARKER}\nsecond", author_id=gl.user.id) == "updated"

        mine = stub.notes_by(BOT["id"])
        assert [n["body"] for n in mine] == [f"{MARKER}\nsecond"]
        assert stub.notes[0]["body"] == f"{MARKER}\npasted by a human"
        # our note (6th of 10, 3 a page) is on page 2: the search really paginated
        assert any("page=2" in path for method, path in stub.requests if method == "GET")


def test_upsert_refuses_a_body_without_marker() -> None:
    with GitLabStub() as stub:
        _, mr = _mr(stub)
        with pytest.raises(ValueError, match="marker"):
            upsert_note(mr, "no marker here")
        assert stub.notes == []


# --- the CLI in a subprocess ----------------------------------------------------------


def _cli(env: dict[str, str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "platformctl", "comment", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _files(tmp_path: Path, summary: str, preview: str) -> tuple[Path, Path, Path]:
    dev, prod, plan = tmp_path / "diff-dev.md", tmp_path / "diff-prod.md", tmp_path / "preview-dev.txt"
    dev.write_text(summary)
    prod.write_text("## prod\nno changes\n")
    plan.write_text(preview)
    return dev, prod, plan


def test_cli_creates_then_updates_one_note(tmp_path: Path) -> None:
    with GitLabStub(max_per_page=4) as stub:
        for i in range(6):
            stub.add_note(f"looks good {i}", REVIEWER if i % 2 else HUMAN)
        dev, prod, plan = _files(tmp_path, "## dev\n3 to create\n", "+ ns team-a\n")

        first = _cli(client_env(stub), "--summary", dev, prod, "--preview", plan, "--title", "Platform diff")
        assert first.returncode == 0, first.stderr
        assert "created the note on merge request !7" in first.stdout
        (note,) = stub.notes_by(BOT["id"])
        assert note["body"].startswith(MARKER) and "## dev\n3 to create" in note["body"]
        assert "## prod\nno changes" in note["body"] and "+ ns team-a" in note["body"]

        for i in range(6):  # more discussion: our note is now on page 2 of 4 notes a page
            stub.add_note(f"another comment {i}", REVIEWER)
        dev.write_text("## dev\n4 to create\n")
        second = _cli(client_env(stub), "--summary", dev, "--summary", prod, "--preview", plan)
        assert second.returncode == 0, second.stderr
        assert "updated the note on merge request !7" in second.stdout
        (updated,) = stub.notes_by(BOT["id"])
        assert updated["id"] == note["id"]
        assert "4 to create" in updated["body"] and "3 to create" not in updated["body"]
        assert len(stub.notes) == 13


def test_cli_oversized_preview_is_accepted_by_gitlab(tmp_path: Path) -> None:
    # The stub rejects notes over GitLab's 1,000,000 characters, like the real server.
    huge = "    + kubernetes:core/v1:ConfigMap big create\n" * 40_000  # about 1.8 million characters
    with GitLabStub() as stub:
        dev, _, plan = _files(tmp_path, "## dev\nbig\n", huge)
        result = _cli(client_env(stub), "--summary", dev, "--preview", plan)
        assert result.returncode == 0, result.stderr
        (note,) = stub.notes
        assert NOTE_LIMIT - NOTE_MARGIN - 5_000 < len(note["body"]) <= NOTE_LIMIT - NOTE_MARGIN
        assert "<details><summary>preview-dev.txt (40001 lines)</summary>" in note["body"]
        assert "Output cut:" in note["body"]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        ({"token": "another-token"}, "GitLab refused to authenticate the token (HTTP 401): the token in $PLATFORM_MR_TOKEN is invalid"),
        ({"mr_iid": 8}, "GitLab refused to read merge request !7 of project 42 (HTTP 404): not found"),
        ({"fail_status": 500}, "GitLab refused to authenticate the token (HTTP 500): GitLab server error"),
        ({"fail_status": 403}, "(HTTP 403): the token in $PLATFORM_MR_TOKEN lacks permission"),
    ],
    ids=["401", "404", "500", "403"],
)
def test_cli_api_refusal_is_one_clear_line_and_exit_2(
    tmp_path: Path, break_it: dict[str, object], expected: str
) -> None:
    dev, _, _ = _files(tmp_path, "s", "p")
    with GitLabStub() as stub:
        env = client_env(stub)  # the client keeps the original token and MR
        for key, value in break_it.items():
            setattr(stub, key, value)
        result = _cli(env, "--summary", dev)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("platformctl comment: error: "), result.stderr
    assert expected in lines[0]
    assert env["PLATFORM_MR_TOKEN"] not in result.stderr and "<html>" not in result.stderr


def test_cli_unreachable_gitlab_is_exit_2(tmp_path: Path) -> None:
    dev, _, _ = _files(tmp_path, "s", "p")
    with GitLabStub() as stub:
        env = client_env(stub)
    result = _cli(env, "--summary", dev)  # the stub is stopped: connection refused
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot reach GitLab at {stub.url}" in result.stderr


@pytest.mark.parametrize(
    ("drop", "args", "expected"),
    [
        ("PLATFORM_MR_TOKEN", [], "missing token (environment variable PLATFORM_MR_TOKEN)"),
        ("CI_MERGE_REQUEST_IID", [], "missing merge request (CI_MERGE_REQUEST_IID or --mr-iid)"),
        ("CI_API_V4_URL", [], "missing GitLab URL"),
        (None, ["--token-env", "CI_JOB_TOKEN"], "CI_JOB_TOKEN cannot write merge-request notes"),
        (None, ["--preview", "no-such-preview.txt"], "cannot read preview file no-such-preview.txt"),
    ],
    ids=["no-token", "no-mr", "no-url", "job-token", "missing-file"],
)
def test_cli_missing_configuration_is_exit_2_without_calling_gitlab(
    tmp_path: Path, drop: str | None, args: list[str], expected: str
) -> None:
    dev, _, _ = _files(tmp_path, "s", "p")
    with GitLabStub() as stub:
        env = client_env(stub, CI_JOB_TOKEN="job-token")
        env.pop(drop or "", None)
        result = _cli(env, "--summary", dev, *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert expected in result.stderr
    assert stub.requests == []


def test_cli_flags_override_the_ci_environment(tmp_path: Path) -> None:
    dev, _, _ = _files(tmp_path, "s", "p")
    with GitLabStub(mr_iid=12) as stub:
        env = client_env(stub, MY_TOKEN=stub.token)
        env.pop("PLATFORM_MR_TOKEN")
        env["CI_API_V4_URL"] = "http://127.0.0.1:9/api/v4"  # wrong on purpose: the flag wins
        result = _cli(env, "--summary", dev, "--gitlab-url", stub.url, "--project", stub.project_path,
                      "--mr-iid", "12", "--token-env", "MY_TOKEN")
        assert result.returncode == 0, result.stderr
        assert len(stub.notes) == 1
