"""The config reference in the README, generated from the model so the two never drift.

`python -m stacks.reference` rewrites it in README.md; a test checks the README is current.
"""

from __future__ import annotations

import json
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from stacks.config import SECRET_FIELDS, PlatformConfig


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None))
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " or ".join(f"`{member.value}`" for member in annotation)
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation)).replace("SecretStr", "secret string")


def _model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model(arg)
        if found is not None:
            return found
    return None


def _default(field: Any, value: Any = PydanticUndefined) -> str:
    """The field's default, or `value` where the enclosing default object sets its own."""
    if value is PydanticUndefined:
        if field.is_required():
            return "**required**"
        value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value)}`"


def rows(model: type[BaseModel], prefix: str, defaults: BaseModel | None = None) -> list[str]:
    """Reference rows of `model`'s keys; `defaults`: the default object it sits in, whose values win."""
    fields = model.model_fields
    annotations = {f.annotation for f in fields.values()}
    if len(fields) > 1 and len(annotations) == 1 and _model(next(iter(annotations))):
        # Keys of one shape (the cluster roles): document the shape once.
        keys = ",".join(f.alias or n for n, f in fields.items())
        return rows(_model(next(iter(annotations))), f"{prefix}{{{keys}}}.")  # type: ignore[arg-type]
    lines = []
    for name, field in fields.items():
        key = f"{prefix}{field.alias or name}"
        value = getattr(defaults, name) if defaults is not None else PydanticUndefined
        lines.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field, value)} |")
        nested = _model(field.annotation)
        if nested is not None:
            is_list = typing.get_origin(field.annotation) is list
            default = value if value is not PydanticUndefined else field.get_default(call_default_factory=True)
            lines += rows(nested, f"{key}[]." if is_list else f"{key}.", default if isinstance(default, BaseModel) else None)
    return lines


def markdown() -> str:
    secret = ", ".join(f"`platform:{k}.…{f}`" for k, fields in SECRET_FIELDS.items() for f in fields)
    return "\n".join(
        [
            "| key | type | default |",
            "|---|---|---|",
            *rows(PlatformConfig, "platform:"),
            "",
            f"Set with `pulumi config set --secret --path`: {secret}. "
            "`platform:protect` unset means true in the `prod` stack and false elsewhere.",
        ]
    )


START, END = "<!-- config-reference:start -->\n", "<!-- config-reference:end -->"


def documented(readme: str) -> str:
    return readme[readme.index(START) + len(START) : readme.index(END)]


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "README.md"
    text = path.read_text()
    path.write_text(text.replace(documented(text), markdown() + "\n"))
