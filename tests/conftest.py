"""Shared fixtures: the offline renders of both stacks, made once per test session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platformctl.render import Render, render  # noqa: E402

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    return {stack: render(ROOT / f"Pulumi.{stack}.yaml", stack) for stack in STACKS}


@pytest.fixture(scope="session", params=STACKS)
def plan(request: pytest.FixtureRequest, renders: dict[str, Render]) -> dict:
    """Each stack's plan.json document in turn."""
    return renders[request.param].plan
