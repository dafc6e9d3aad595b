"""The plan's Vault resources on a real OpenBao server: accepted, and read back as written."""

from __future__ import annotations

import pytest

from tests.conftest import STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_every_vault_resource_of_the_plan_is_accepted_and_reads_back_equal(plan_vaults, renders, stack: str) -> None:
    vault = plan_vaults(stack)
    planned = [r for r in renders[stack].plan["resources"] if r["type"].startswith("vault:")]
    assert [a.name for a in vault.applied] == [r["name"] for r in planned]
    assert {a.name: a.mismatches() for a in vault.applied if a.mismatches()} == {}
