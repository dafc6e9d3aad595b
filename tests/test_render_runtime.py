"""What the render changes in the SDK while a program runs gives the SDK's answers."""

from __future__ import annotations

import contextvars
import gc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi.output import UNKNOWN
from pulumi.runtime import rpc

from platformctl.render import _contains_unknowns, run_under_mocks

_VALUES = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(max_size=3), st.just(UNKNOWN)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_VALUES)
def test_contains_unknowns_answers_as_the_sdk(value: Any) -> None:
    assert _contains_unknowns(value) == rpc.contains_unknowns(value)


def test_contains_unknowns_with_shared_and_cyclic_values() -> None:
    shared: list[Any] = [1]
    cyclic: dict[str, Any] = {"a": shared}
    cyclic["self"] = cyclic
    for value in ([shared, shared], cyclic, [cyclic, UNKNOWN], {"x": [shared, {"y": UNKNOWN}]}):
        assert _contains_unknowns(value) == rpc.contains_unknowns(value)


def test_the_sdk_and_the_collector_are_restored_after_a_run() -> None:
    before = gc.get_threshold(), gc.get_freeze_count(), rpc.contains_unknowns
    contextvars.Context().run(run_under_mocks, lambda: None, stack="test")
    assert (gc.get_threshold(), gc.get_freeze_count(), rpc.contains_unknowns) == before
