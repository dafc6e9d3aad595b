"""components.yaml_text writes PyYAML's safe_dump text, by libyaml only where that text is the same."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from components import yaml_text

_TEXT = st.one_of(st.text(max_size=12), st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=300))
_DOCUMENTS = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=20,
)
_OPTIONS = st.sampled_from([{}, {"sort_keys": False}, {"sort_keys": True}, {"sort_keys": False, "width": 1000}])


@settings(max_examples=300)
@given(_DOCUMENTS, _OPTIONS)
def test_a_document_is_written_as_safe_dump_writes_it(document: Any, options: dict[str, Any]) -> None:
    assert yaml_text.dump(document, **options) == yaml.safe_dump(document, **options)


@settings(max_examples=100)
@given(st.lists(_DOCUMENTS, max_size=3), _OPTIONS)
def test_documents_are_written_as_safe_dump_all_writes_them(documents: list[Any], options: dict[str, Any]) -> None:
    assert yaml_text.dump_all(iter(documents), **options) == yaml.safe_dump_all(documents, **options)


def test_libyaml_writes_only_one_line_ascii_documents() -> None:
    assert yaml_text._one_line_ascii({"a": ["b", 1, None, {"c": "d e"}]})
    for document in ({"a": "two\nlines"}, {"é": "x"}, ["tab\there"], {"a": {"b": "ü"}}, {"": None}):
        assert not yaml_text._one_line_ascii(document)
