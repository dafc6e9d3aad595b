"""YAML text: PyYAML's `safe_dump` text, written by libyaml where that text is the same.

libyaml's emitter is several times as fast as PyYAML's and writes the same text for
mappings and sequences whose strings (keys included) are all printable ASCII on one line, no key empty
(checked on every document of both stacks' plans and their charts, and on random documents
by tests/test_yaml_text.py); it folds long quoted strings differently and ends a lone scalar
document without PyYAML's "...", so other documents keep PyYAML's emitter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import yaml

_C_DUMPER = getattr(yaml, "CSafeDumper", None)
_ONE_LINE_ASCII = re.compile(r"[ -~]*\Z")


def dump(document: Any, **options: Any) -> str:
    """`yaml.safe_dump(document, **options)`'s text."""
    return dump_all([document], **options)


def dump_all(documents: Iterable[Any], **options: Any) -> str:
    """`yaml.safe_dump_all(documents, **options)`'s text."""
    documents = list(documents)
    fast = _C_DUMPER is not None and all(
        isinstance(document, (dict, list)) and _one_line_ascii(document) for document in documents
    )
    return yaml.dump_all(documents, Dumper=_C_DUMPER if fast else yaml.SafeDumper, **options)


def _one_line_ascii(value: Any) -> bool:
    """Whether every string in `value` (keys included, none empty) is printable ASCII on one line."""
    if isinstance(value, str):
        return _ONE_LINE_ASCII.match(value) is not None
    if isinstance(value, dict):
        # libyaml writes an empty key as a simple key, PyYAML as a complex one ("? ''").
        return all(k != "" and _one_line_ascii(k) and _one_line_ascii(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_one_line_ascii(v) for v in value)
    return True
