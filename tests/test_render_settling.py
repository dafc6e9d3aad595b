"""Settling while the program declares: same plan as the stock flow, LateChild where it would not be."""

from __future__ import annotations

import contextvars

import pulumi
import pulumi_kubernetes as k8s
import pytest

from platformctl import render
from platformctl.render import LateChild, run_under_mocks


class Box(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("test:index:Box", name)
        k8s.core.v1.ConfigMap(f"{name}-first", opts=pulumi.ResourceOptions(parent=self))


def program(late_child: bool) -> None:
    box = Box("box")
    k8s.core.v1.ConfigMap("dependent", opts=pulumi.ResourceOptions(depends_on=[box]))
    k8s.core.v1.ConfigMap("next")  # top level: a checkpoint, so "dependent" expands box here
    if late_child:
        k8s.core.v1.ConfigMap("box-late", opts=pulumi.ResourceOptions(parent=box))
    for i in range(20):
        k8s.core.v1.ConfigMap(f"filler-{i}")


def run(late_child: bool, settle: bool) -> dict:
    result = contextvars.Context().run(run_under_mocks, lambda: program(late_child), stack="test", settle=settle)
    return result.plan


def depends_of(plan: dict, name: str) -> list[str]:
    return next(r["dependsOn"] for r in plan["resources"] if r["name"] == name)


def test_settling_gives_the_stock_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "SETTLE_EVERY", 1)
    settled, stock = run(False, settle=True), run(False, settle=False)
    assert settled == stock
    assert [d.rsplit("::", 1)[1] for d in depends_of(stock, "dependent")] == ["box-first"]


def test_a_child_added_after_its_component_was_expanded_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "SETTLE_EVERY", 1)
    stock = run(True, settle=False)
    # The stock flow expands "box" after the whole program: the late child is a dependency.
    assert sorted(d.rsplit("::", 1)[1] for d in depends_of(stock, "dependent")) == ["box-first", "box-late"]
    with pytest.raises(LateChild, match="box-late"):
        run(True, settle=True)
