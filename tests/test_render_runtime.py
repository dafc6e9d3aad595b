"""What the render changes in the SDK while a program runs gives the SDK's answers."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import io
import json
from pathlib import Path
from typing import Any

import pulumi
import pulumi_random as random
import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from pulumi.output import UNKNOWN, Unknown
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _ensure_event_loop

from platformctl import render
from platformctl.render import Render, _contains_unknowns, _PropertyOutput, _write_json, run_under_mocks, write_render
from tests.mock_program import ProgramRun, run_program

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


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=15,
)


@settings(max_examples=100)
@given(_JSON)
def test_plan_json_is_written_as_the_standard_encoder_writes_it(value: Any) -> None:
    file = io.StringIO()
    _write_json(value, file)
    assert file.getvalue() == json.dumps(value, indent=1)


def test_what_only_the_standard_encoder_writes_falls_back_to_it(tmp_path: Path) -> None:
    for value in ({"key": ("a", "tuple")}, {1: "an int key"}):
        with pytest.raises(TypeError):
            _write_json(value, io.StringIO())
        write_render(Render(plan={"resources": [], "odd": value}, fingerprints={}), tmp_path)
        assert (tmp_path / "plan.json").read_text() == json.dumps({"resources": [], "odd": value}, indent=1) + "\n"


@pytest.mark.parametrize("caller_froze", [False, True])
def test_the_sdk_and_the_collector_are_restored_after_a_run(caller_froze: bool) -> None:
    """Also when the caller froze objects of its own, as the test session freezes its renders
    (conftest): they stay frozen, and the run freezes nothing of the caller's after them."""
    def state() -> tuple[Any, ...]:
        return (gc.get_threshold(), gc.get_freeze_count() > 0, rpc.contains_unknowns, rpc.transfer_properties,
                rpc.serialize_property, rpc.deserialize_property, rpc.translate_output_properties)

    session_froze = gc.get_freeze_count() > 0
    frozen: list[object] = []
    gc.freeze() if caller_froze else gc.unfreeze()
    later: list[object] = []
    try:
        before = state()
        contextvars.Context().run(run_under_mocks, lambda: None, stack="test")
        after = state()
        collected = {id(o) for o in gc.get_objects()}  # the permanent generation's objects are not listed
    finally:  # the session's renders frozen again, as conftest left them
        gc.unfreeze()
        if session_froze:
            gc.collect()
            gc.freeze()
    assert after == before and before[1] == caller_froze
    assert (id(frozen) in collected, id(later) in collected) == (not caller_froze, True)


def test_patched_attributes_are_restored_when_the_block_raises() -> None:
    target = type("Target", (), {"first": 1, "second": 2})
    with pytest.raises(RuntimeError, match="the program failed"), render._patched(target, first=10, second=20):
        assert (target.first, target.second) == (10, 20)
        raise RuntimeError("the program failed")
    assert (target.first, target.second) == (1, 2)


@settings(max_examples=200)
@given(st.one_of(_JSON, _VALUES), st.booleans())
def test_values_serialize_as_the_sdk_serializes_them(value: Any, protobuf: bool) -> None:
    loop = _ensure_event_loop()
    stock_deps: list[Any] = []
    stock = loop.run_until_complete(rpc.serialize_property(value, stock_deps, "key", return_protobuf_value=protobuf))
    original = rpc.serialize_property
    with render._plain_values_as_they_are():
        assert rpc.serialize_property is not original  # the render's, for the leaves too (the SDK recurses through rpc)
        deps: list[Any] = []
        fast = loop.run_until_complete(rpc.serialize_property(value, deps, "key", return_protobuf_value=protobuf))
    assert (fast, deps) == (stock, stock_deps)


def _passwords() -> dict[str, pulumi.Output[Any]]:
    """Output properties read before and after the engine answers, secret and not, set and never set."""
    password = random.RandomPassword("pw", length=12)
    early = password.result  # made before the engine answered
    other = random.RandomString("other", length=password.length, keepers={"pw": early})
    return {"result": early, "length": password.length, "unset": password.override_special,
            "keepers": other.keepers, "other": other.result}


def _seen(run: ProgramRun[dict[str, pulumi.Output[Any]]]) -> dict[str, tuple[Any, ...]]:
    """Each output's value, known and secret flags and the names of the resources it depends on."""
    def state(output: pulumi.Output[Any]) -> tuple[Any, ...]:
        loop = _ensure_event_loop()
        answers = [loop.run_until_complete(c) for c in (output.future(), output.is_known(), output.is_secret(), output.resources())]
        return (*answers[:3], sorted(r._name for r in answers[3]))
    return {name: run._context.run(state, output) for name, output in run.result.items()}


def test_output_properties_made_on_use_answer_as_the_sdks(monkeypatch: pytest.MonkeyPatch) -> None:
    lazy = run_program(_passwords)
    assert all(isinstance(o, _PropertyOutput) for o in lazy.result.values())  # what this test is about
    monkeypatch.setattr(render, "_output_properties_on_use", contextlib.nullcontext)
    stock = run_program(_passwords)
    assert not any(isinstance(o, _PropertyOutput) for o in stock.result.values())
    assert _seen(lazy) == _seen(stock)
    assert _seen(lazy)["result"][2] is True and _seen(lazy)["unset"][0] is None  # a secret, a property never set
    assert lazy.plan == stock.plan


def _known(value: Any) -> Any:
    """`value` with each Unknown (a fresh object per deserialization) as a comparable marker."""
    if isinstance(value, dict):
        return {k: _known(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_known(v) for v in value]
    return "<unknown>" if isinstance(value, Unknown) else value


# What the engine sends back: JSON with the unknown sentinel among the strings.
_WIRE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4), st.just(rpc.UNKNOWN)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=15,
)


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=3), _WIRE, max_size=4), st.booleans())
def test_values_deserialize_and_translate_as_the_sdks(value: dict[str, Any], keep_unknowns: bool) -> None:
    props = struct_pb2.Struct()
    props.update(value)
    stock = rpc.deserialize_properties(props, keep_unknowns)
    stock_translated = rpc.translate_output_properties(stock, str.upper)
    original = rpc.deserialize_property, rpc.translate_output_properties
    with render._plain_values_as_they_are():
        assert (rpc.deserialize_property, rpc.translate_output_properties) != original  # the render's, nested values too
        fast = rpc.deserialize_properties(props, keep_unknowns)
        translated = rpc.translate_output_properties(fast, str.upper)
        assert rpc.translate_output_properties(60000.0, str.upper, int) == 60000  # a type to convert to: the SDK's way
    assert _known(fast) == _known(stock)
    assert _known(translated) == _known(stock_translated)
