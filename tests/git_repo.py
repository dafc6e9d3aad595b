"""Git for the tests that run platformctl's access gate and the merge-request bot in a repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})
    return done.stdout.strip()


def stack_repo(path: Path) -> Path:
    """A repository at `path` whose first commit holds this project's dev and prod stack files."""
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch", "main")
    for stack in ("dev", "prod"):
        (path / f"Pulumi.{stack}.yaml").write_text((ROOT / f"Pulumi.{stack}.yaml").read_text())
    git(path, "add", ".")
    git(path, "commit", "--quiet", "-m", "base")
    return path
