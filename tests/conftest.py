"""Shared fixtures: the offline renders of both stacks, made once per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platformctl.helm_render import values_only_note  # noqa: E402
from platformctl.render import Render, render  # noqa: E402

STACKS = ("dev", "prod")


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    # With the Helm engine: tests/test_helm_render.py checks what the charts make of the values.
    return {stack: render(ROOT / f"Pulumi.{stack}.yaml", stack, charts=True) for stack in STACKS}


@pytest.fixture(scope="session", params=STACKS)
def plan(request: pytest.FixtureRequest, renders: dict[str, Render]) -> dict:
    """Each stack's plan.json document in turn."""
    return renders[request.param].plan


@pytest.fixture(scope="session")
def charted(renders: dict[str, Render]) -> dict[str, Render]:
    """Both stacks' renders, which must have rendered every Helm release with its chart.

    Without local chart sources (`python -m platformctl charts fetch`) the tests that need them
    skip on a developer machine and fail in CI (CI=true), so CI cannot pass without the charts.
    """
    for result in renders.values():
        if result.values_only:
            message = values_only_note(result.values_only)
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI must render every chart: {message}")
            pytest.skip(message)
    return renders
