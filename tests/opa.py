"""Evaluate a Gatekeeper ConstraintTemplate's Rego with the real OPA engine, the way Gatekeeper does.

Gatekeeper hands a template's Rego `input.review` (the admission request: `kind`, `object`,
`operation`, ...) and `input.parameters` (the Constraint's `spec.parameters`) and reads the
`violation` set of the template's package. `violations()` does the same with
`opa-golib-python-bindings`, which embeds OPA itself, so the Rego is parsed and evaluated
exactly as OPA would (Rego v1 only: templates need `import rego.v1`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from opa_bindings import OpaEngine

_PACKAGE = re.compile(r"^package\s+([\w.]+)\s*$", re.MULTILINE)


def review(obj: dict[str, Any], operation: str = "CREATE", old_object: dict[str, Any] | None = None,
           user_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The `input.review` Gatekeeper builds for an admission request about `obj` (by `user_info`, if given)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    metadata = obj.get("metadata", {})
    request: dict[str, Any] = {
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "operation": operation,
        "name": metadata.get("name", ""),
        "object": obj,
    }
    if "namespace" in metadata:
        request["namespace"] = metadata["namespace"]
    if old_object is not None:
        request["oldObject"] = old_object
    if user_info is not None:
        request["userInfo"] = user_info
    return request


def _package(rego: str) -> str:
    match = _PACKAGE.search(rego)
    if match is None:
        raise ValueError("Rego module has no package line")
    return match.group(1)


def _new_engine(rego: str, libs: tuple[str, ...]) -> OpaEngine:
    engine = OpaEngine()
    engine.add_policy("template.rego", rego)
    for i, lib in enumerate(libs):
        engine.add_policy(f"lib{i}.rego", lib)
    return engine


@cache
def _engine(rego: str, libs: tuple[str, ...]) -> OpaEngine:
    # One engine per template: templates may carry libs with the same package, which
    # Gatekeeper keeps apart per template too. Compiling once keeps the tests fast.
    return _new_engine(rego, libs)


def evaluate(template: dict[str, Any], review_input: dict[str, Any], parameters: dict[str, Any] | None = None,
             inventory: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The violations `template` reports for an admission `review_input` (see `review()`).

    `parameters` is the Constraint's `spec.parameters`; None leaves `input.parameters` unset,
    as for a Constraint without parameters. `inventory` is what Gatekeeper replicates
    (`data.inventory`, e.g. {"namespace": {ns: {"policy/v1": {"PodDisruptionBudget": {name: obj}}}}}).
    """
    target = template["spec"]["targets"][0]
    rego = target["rego"]
    gk_input: dict[str, Any] = {"review": review_input}
    if parameters is not None:
        gk_input["parameters"] = parameters
    libs = tuple(target.get("libs", []))
    engine = _engine(rego, libs)
    if inventory is not None:  # an engine of its own: the cached ones hold no data
        engine = _new_engine(rego, libs)
        engine.add_data({"inventory": inventory})
    # eval_document raises if the package has no `violation` rule, so a broken template cannot pass.
    return list(engine.eval_document(f"{_package(rego)}.violation", gk_input))


def violations(
    template: dict[str, Any],
    obj: dict[str, Any],
    parameters: dict[str, Any] | None = None,
    operation: str = "CREATE",
    old_object: dict[str, Any] | None = None,
    user_info: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The violations `template` reports when `obj` is admitted with `operation` (by `user_info`)."""
    return evaluate(template, review(obj, operation, old_object, user_info), parameters)
