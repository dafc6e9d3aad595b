"""`platformctl comment`: post the merge-request preview as one note, updated in place.

The note is found again on every push by a hidden marker on its first line, so a
merge request carries exactly one platform note however many pipelines ran.
Inputs are already redacted renders; lines that still look like credentials are
masked anyway, because a note is readable by everyone who can see the MR.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import gitlab
import requests

from platformctl import gitlab_api
from platformctl.markdown import fence, inert

MARKER = "<!-- platform-bootstrap:preview -->"
# GitLab rejects notes longer than this many characters (Note validation).
NOTE_LIMIT = 1_000_000
# Cut well before the limit: the server may count differently than Python does
# (e.g. after normalising line endings), and 1 % of headroom costs reviewers nothing.
NOTE_MARGIN = 10_000
# Blocks longer than this are folded into <details> so the note stays scannable.
FOLD_LINES = 40
FOLD_CHARS = 4_000
DEFAULT_TITLE = "Platform preview"
EXIT_OK, EXIT_ERROR = 0, 2

# Credential formats that must never reach a note; a match masks the whole line.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "GitLab token": re.compile(
        r"\bgl(?:pat|dt|rt|ptt|oas|cbt|ft|imt|agent|soat|ffct|wt)-[0-9A-Za-z_-]{20,}"
        r"|\bGR1348941[0-9A-Za-z_-]{20,}"
    ),
    "private key": re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b"),
    "AWS secret key": re.compile(
        r"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{40}\b"
    ),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}|\bgithub_pat_[A-Za-z0-9_]{22,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "Pulumi token": re.compile(r"\bpul-[0-9a-f]{40}\b"),
    "Vault token": re.compile(r"\bhv[sbr]\.[A-Za-z0-9_-]{24,}"),
    "JSON web token": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"),
    "HTTP credentials": re.compile(r"(?i)\bauthorization:\s*(?:bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{8,}"),
}
_PEM_END = re.compile(r"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")


def mask_secrets(text: str) -> tuple[str, list[str]]:
    """Mask every line that looks like a credential; return the text and what was found.

    A PEM private key is masked from its BEGIN line through its END line, since the
    base64 body lines match no pattern on their own.
    """
    out: list[str] = []
    found: list[str] = []
    in_pem = False
    for line in text.splitlines(keepends=True):
        newline = line[len(line.rstrip("\r\n")):]
        kind = "private key" if in_pem else next(
            (name for name, pattern in SECRET_PATTERNS.items() if pattern.search(line)), None
        )
        if kind == "private key":
            begin = SECRET_PATTERNS["private key"].search(line)
            # Still inside the block unless this line closes it (after its BEGIN, if any).
            in_pem = not _PEM_END.search(line, begin.end() if begin else 0)
        if kind is None:
            out.append(line)
        else:
            found.append(kind)
            out.append(f"[masked: this line looked like a secret ({kind})]{newline}")
    return "".join(out), found


@dataclass(frozen=True)
class _Block:
    """One section of the note. Fold state and fence come from the full text, so
    they do not change when the text is cut (the size budget depends on them)."""

    label: str
    text: str
    code: bool  # previews are shown verbatim in a code fence; summaries are markdown
    folded: bool
    fence: str


def _block(label: str, text: str, code: bool) -> _Block:
    lines = text.count("\n") + 1
    folded = lines > FOLD_LINES or len(text) > FOLD_CHARS
    # The label sits inside HTML (<summary>): escape it.
    return _Block(html.escape(f"{label} ({lines} lines)"), text, code, folded, fence(text, 3))


def _cut_notice(shown: int, total: int) -> str:
    return (
        f"> :scissors: **Output cut:** showing the first {shown:,} of {total:,} characters "
        f"(GitLab notes are limited to {NOTE_LIMIT:,}). The full text is in the job artifacts."
    )


def _render_block(block: _Block, text: str, notice: str) -> str:
    if block.code:
        body = block.fence + "text\n" + text.rstrip("\n") + "\n" + block.fence
    else:
        body = text.strip("\n")
    if notice:
        body += f"\n\n{notice}"
    if block.folded:
        # Blank lines around the content let GitLab render markdown inside <details>.
        return f"<details><summary>{block.label}</summary>\n\n{body}\n\n</details>"
    return body


def _render(head: str, blocks: list[_Block], texts: list[str], notices: list[str]) -> str:
    parts = [head] + [_render_block(b, t, n) for b, t, n in zip(blocks, texts, notices)]
    return "\n\n".join(parts) + "\n"


def _shares(lengths: list[int], budget: int) -> list[int]:
    """Characters each block may keep: short blocks stay whole, the longest are cut evenly."""
    allowed = list(lengths)
    remaining = budget
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for position, index in enumerate(order):
        allowed[index] = min(lengths[index], remaining // (len(order) - position))
        remaining -= allowed[index]
    return allowed


def _cut(text: str, keep: int) -> str:
    if len(text) <= keep:
        return text
    head = text[:keep]
    newline = head.rfind("\n")
    return head[: newline + 1] if newline > 0 else head  # end on a whole line when possible


def build_note(
    summary: str,
    previews: list[tuple[str, str]],
    limit: int,
    title: str = DEFAULT_TITLE,
) -> str:
    """The complete note body: marker, title, summary, folded previews; at most `limit` characters.

    previews: (label, text) pairs, e.g. ("preview-dev.txt", <pulumi preview --diff output>).
    """
    found: list[str] = []
    title, kinds = mask_secrets(" ".join(title.split()) or DEFAULT_TITLE)
    found += kinds
    blocks: list[_Block] = []
    for label, text, code in [("Summary", summary, False)] + [(name, out, True) for name, out in previews]:
        masked, kinds = mask_secrets(inert(text))  # a branch writes these: nothing in them may act as the bot
        masked_label, label_kinds = mask_secrets(" ".join(label.split()))
        found += kinds + label_kinds
        blocks.append(_block(masked_label, masked, code))

    head = f"{MARKER}\n### {title}"
    if found:
        head += (
            f"\n\n> **Note:** {len(found)} line(s) that looked like secrets "
            f"({', '.join(sorted(set(found)))}) were masked."
        )

    texts = [b.text for b in blocks]
    body = _render(head, blocks, texts, [""] * len(blocks))
    if len(body) <= limit:
        return body

    # Everything but the texts, with the longest notice each block could get.
    worst = [_cut_notice(len(t), len(t)) for t in texts]
    overhead = len(_render(head, blocks, [""] * len(blocks), worst))
    if overhead >= limit:
        raise ValueError(f"limit {limit} is too small for the note's fixed parts ({overhead} characters)")
    keep = _shares([len(t) for t in texts], limit - overhead)
    cut = [_cut(t, k) for t, k in zip(texts, keep)]
    notices = [_cut_notice(len(c), len(t)) if c != t else "" for c, t in zip(cut, texts)]
    body = _render(head, blocks, cut, notices)
    assert len(body) <= limit, (len(body), limit)  # guaranteed by the overhead computation
    return body


def upsert_note(gl_project_mr: Any, body: str, author_id: int | None = None) -> str:
    """Update the MR's marked note in place, or create it; returns "created" or "updated".

    Only a note whose first line is the marker counts, and, when author_id is given,
    only one written by that user: a human who pasted the marker keeps their note.
    """
    if not body.startswith(MARKER):
        raise ValueError("note body must start with the marker, or it would never be found again")
    # Oldest first, so the note keeps its place in the discussion; iterator=True follows every page.
    for note in gl_project_mr.notes.list(iterator=True, sort="asc", order_by="created_at", per_page=100):
        if note.system or not note.body.startswith(MARKER):
            continue
        if author_id is not None and note.author.get("id") != author_id:
            continue
        note.body = body
        note.save()
        return "updated"
    gl_project_mr.notes.create({"body": body})
    return "created"


TOKEN_USE = "write merge-request notes"


def _target(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[gitlab_api.Location, int]:
    """Where to post: the GitLab location and the merge request's IID."""
    mr_iid = args.mr_iid or env.get("CI_MERGE_REQUEST_IID", "")
    where = gitlab_api.location(
        args, env, TOKEN_USE, also=[("merge request (CI_MERGE_REQUEST_IID or --mr-iid)", mr_iid)]
    )
    if not str(mr_iid).isdigit():
        raise gitlab_api.UsageError(f"merge request IID must be a number, got {mr_iid!r}")
    return where, int(mr_iid)


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        raise gitlab_api.UsageError(f"cannot read {what} file {path}: {err.strerror or err}") from None


def run(args: argparse.Namespace) -> int:
    step = "start"
    where: gitlab_api.Location | None = None
    try:
        where, mr_iid = _target(args, os.environ)
        summary = "\n\n".join(_read(p, "summary") for p in args.summary)
        previews = [(p.name, _read(p, "preview")) for p in args.preview]
        body = build_note(summary, previews, NOTE_LIMIT - NOTE_MARGIN, title=args.title)
        gl = gitlab_api.connect(where)
        step = "authenticate the token"
        gl.auth()  # also tells us who we are, so only our own note is ever updated
        step = f"read project {where.project}"
        project = gl.projects.get(where.project)
        step = f"read merge request !{mr_iid} of project {where.project}"
        mr = project.mergerequests.get(mr_iid)
        step = f"write the note on merge request !{mr_iid}"
        outcome = upsert_note(mr, body, author_id=gl.user.id if gl.user else None)
    except gitlab_api.UsageError as err:
        return _fail(str(err))
    except (gitlab.GitlabError, requests.RequestException) as err:
        assert where is not None  # API calls start only after the target is known
        return _fail(gitlab_api.failure(err, step, where))
    print(f"platformctl comment: {outcome} the note on merge request !{mr_iid} ({len(body):,} characters)")
    return EXIT_OK


def _fail(message: str) -> int:
    print(f"platformctl comment: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "comment",
        help="post the summary and previews as one merge-request note, updated in place",
        description=(
            "Post the platform summary (and Pulumi previews when present) as one note on the "
            "merge request, updating the same note on every push. GitLab location comes from "
            "CI_API_V4_URL or CI_SERVER_URL, CI_PROJECT_ID and CI_MERGE_REQUEST_IID unless given."
        ),
    )
    # action="extend" with nargs="+": `--summary a b` and `--summary a --summary b` both work.
    parser.add_argument("--summary", type=Path, nargs="+", action="extend", required=True,
                        metavar="FILE", help="markdown summary file(s), e.g. output of `platformctl diff`")
    parser.add_argument("--preview", type=Path, nargs="+", action="extend", default=[],
                        metavar="FILE", help="`pulumi preview --diff` output file(s), folded into <details>")
    parser.add_argument("--title", default=DEFAULT_TITLE, help=f"note heading (default: {DEFAULT_TITLE!r})")
    gitlab_api.add_arguments(parser, TOKEN_USE)
    parser.add_argument("--mr-iid", help="merge request IID (default: CI_MERGE_REQUEST_IID)")
    parser.set_defaults(run=run)
