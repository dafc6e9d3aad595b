"""Markdown for text that is not ours (plan values, keys, command output): shown, never interpreted."""

from __future__ import annotations

import re


def fence(text: str, shortest: int) -> str:
    """Backticks that `text` cannot close: more than its longest run of them (CommonMark)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(shortest, longest + 1)


def code(text: str) -> str:
    """`text` as one inline code span on one line: no backtick, Markdown or HTML in it takes effect."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")  # a line break could start a block of its own
    ticks = fence(text, 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""  # CommonMark strips one space each side
    return f"{ticks}{pad}{text}{pad}{ticks}"


def text(value: str) -> str:
    """`value` as plain text on one line: the characters that would start emphasis, code, a link, an
    HTML tag or a comment are escaped with a backslash, so a name shows as written."""
    return re.sub(r"([\\`*_\[\]<>~|!])", r"\\\1", value.replace("\r", "\\r").replace("\n", "\\n"))


# GitLab runs the quick actions (`/merge`, `/label`, ...) of a note as its author wherever a line starts with
# "/" outside what its extractor takes for a code or HTML block, and a line of exactly ``` ends its code
# block whatever fence opened it (gitlabhq lib/gitlab/quick_actions/extractor.rb, commands_regex). It
# deletes every "\r" first, while Markdown breaks a line there: both become "\n" here.
_LINE_START_SLASH = re.compile(r"^/", re.MULTILINE)


def inert(text: str) -> str:
    """`text` with no line GitLab would run as a quick action: a space before each line's leading "/",
    which Markdown drops in a paragraph and a code block shows."""
    return _LINE_START_SLASH.sub(" /", text.replace("\r\n", "\n").replace("\r", "\n"))
