"""Offline checks of what the program emits, against pinned upstream contracts.

Tests call these on the plan (``platformctl.render.render_plan``):

* ``unknown_value_paths`` - Helm values keys the chart does not define (typos,
  keys moved between chart versions, values put under the wrong subchart).
* ``schema_errors`` - Helm values against the chart's own ``values.schema.json``.
* ``custom_resource_errors`` - a custom resource against its CRD schema, strict.
* ``kubernetes_errors`` - a built-in Kubernetes object, strict (kubernetes-validate).
* ``is_custom_resource`` - which of the last two applies.

Every contract file is a copy under ``tests/fixtures`` (source table in
``tests/fixtures/UPSTREAM.md``), so the checks need neither network nor the
shared upstream collection.  Nothing here evaluates chart templates, CEL rules
(``x-kubernetes-validations``) or OpenAPI ``format``s: those are out of reach
offline, and a test should not claim more than was checked.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

# kubernetes-validate reads and parses its schema files (the shared definitions are megabytes)
# and lists its schema versions again for every object it validates: two thirds of its CPU.
# Both are the same files each time and never changed by a caller, so each is read once.
for _name in ("schema_contents", "all_versions"):
    setattr(kubernetes_validate.utils, _name, functools.lru_cache(maxsize=None)(getattr(kubernetes_validate.utils, _name)))

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHARTS_DIR = FIXTURES / "charts"
SCHEMAS_DIR = FIXTURES / "schemas"

__all__ = [
    "MissingFixtureError",
    "available_charts",
    "custom_resource_errors",
    "is_custom_resource",
    "kubernetes_errors",
    "schema_errors",
    "unknown_value_paths",
]


class MissingFixtureError(LookupError):
    """No pinned upstream contract for what was asked: add the fixture, do not skip."""


# ---------------------------------------------------------------------------
# Helm values: unknown keys
# ---------------------------------------------------------------------------

# Keys (last path segment, case-insensitive) whose value is handed to Kubernetes
# as a whole, so any sub-key is legitimate.  Kept short on purpose: every entry
# is a place where a typo goes unnoticed.  securityContext is NOT here: vault
# gives it its own structure (securityContext.pod/.container).
_FREEFORM_NAMES = frozenset({"nodeselector", "resources", "env", "extraenv", "extraenvvars", "extraenvironmentvars"})
# Free-form only when the default is not a structured map: argo-cd's
# controller.metrics.applicationLabels is {enabled: false, labels: []} and GitLab's
# and argo-cd's `affinity` is {podAntiAffinity: ..., nodeAffinity: {key: ...}}.
_FREEFORM_SUFFIXES_UNLESS_STRUCTURED = ("annotations", "labels")


def _is_freeform_name(key: str, default: Any) -> bool:
    k = key.lower()
    if k in _FREEFORM_NAMES:
        return True
    if not (k == "affinity" or k.endswith(_FREEFORM_SUFFIXES_UNLESS_STRUCTURED)):
        return False
    return not (isinstance(default, dict) and any(not isinstance(x, str) for x in default.values()))


@dataclass
class _Doc:
    """One documented key of a chart's values."""

    default: Any = None
    children: dict[str, _Doc] = field(default_factory=dict)
    freeform: bool = False  # any sub-key accepted
    commented: bool = False  # documented only in a comment of values.yaml


def _doc_from_defaults(defaults: Mapping[str, Any]) -> dict[str, _Doc]:
    out: dict[str, _Doc] = {}
    for key, value in defaults.items():
        key = str(key)
        doc = _Doc(default=value)
        # An empty map default means "put what you like here".
        doc.freeform = value == {} or _is_freeform_name(key, value)
        if isinstance(value, dict):
            doc.children = _doc_from_defaults(value)
        out[key] = doc
    return out


def _merge_docs(into: dict[str, _Doc], other: dict[str, _Doc]) -> None:
    """Union of two documented trees (``into`` wins on defaults)."""
    for key, doc in other.items():
        mine = into.get(key)
        if mine is None:
            into[key] = copy.deepcopy(doc)
            continue
        mine.freeform = mine.freeform or doc.freeform
        mine.commented = mine.commented and doc.commented
        _merge_docs(mine.children, doc.children)


_KEY_LINE = re.compile(r"""^(?P<indent>\s*)(?P<key>[A-Za-z_][\w.\-/]*|"[^"]+"|'[^']+'):(?:\s|$)""")
_COMMENTED_KEY = re.compile(
    r"""^(?P<hash>\s*)\#(?P<gap>\s*)(?P<key>[a-z_][\w.\-/]*|"[^"]+"|'[^']+'):(?:\s|$)"""
)
_BLOCK_SCALAR = re.compile(r":\s*[|>][-+0-9]*\s*(?:#.*)?$")


def commented_key_paths(values_yaml: str) -> list[tuple[str, ...]]:
    """Key paths that values.yaml documents only in comments.

    Many charts document optional keys as commented-out YAML, e.g.::

        server:
          tolerations: []
          # priorityClassName: ""
          # resources:
          #   limits:
          #     memory: 256Mi

    Rule (deliberately simple and conservative):

    * A commented line ``<sp>#<gap><key>:`` counts as a key line; its
      indentation is the column of ``#`` plus the gap minus one (the usual
      ``# `` prefix), so ``  #   limits:`` sits at column 4.
    * Its parent is the chain of real (uncommented) keys above it with a smaller
      indentation, followed by the commented keys of the same comment block with
      a smaller indentation.  A real key line ends the comment block.
    * Only a lower-case-initial key right after ``#`` and spaces counts, so
      prose such as ``# Example:`` or ``## see: ...`` is not read as a key
      (lower-case prose like ``# ref: https://...`` is, harmlessly).  Text
      inside block scalars (``config: |``) is skipped.

    ``_add_commented`` then fits each path to the real defaults (under a list:
    dropped; under a scalar: re-homed as its sibling).  What is left over-accepts
    a little: prose such as ``#   runAsNonRoot: true`` after "The default is:"
    documents a key under whatever real key precedes it.  Such paths are odd ones
    nobody writes by mistake, a fair price for a rule this simple.
    """
    real: list[tuple[int, str]] = []  # (indent, key) of real keys above
    block: list[tuple[int, str]] = []  # commented keys of the current comment block
    scalar_indent: int | None = None  # inside a block scalar owned by a key at this indent
    found: list[tuple[str, ...]] = []
    for line in values_yaml.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if scalar_indent is not None:
            if not stripped or indent > scalar_indent:
                continue  # block scalar content, even if it looks like a comment
            scalar_indent = None
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = _COMMENTED_KEY.match(line)
            if not m:
                continue
            at = len(m["hash"]) + max(len(m["gap"]) - 1, 0)
            while block and block[-1][0] >= at:
                block.pop()
            base = block[0][0] if block else at  # the block hangs where its first key does
            parents = [k for i, k in real if i < base] + [k for _, k in block]
            key = m["key"].strip("\"'")
            found.append((*parents, key))
            block.append((at, key))
            continue
        block = []
        m = _KEY_LINE.match(line)
        if not m:
            continue  # list items, flow continuations: not key lines we track
        while real and real[-1][0] >= indent:
            real.pop()
        real.append((indent, m["key"].strip("\"'")))
        if _BLOCK_SCALAR.search(line):
            scalar_indent = indent
    return found


def _add_commented(tree: dict[str, _Doc], path: tuple[str, ...]) -> None:
    """Add one commented path, fitted to the real defaults it sits under.

    Comment indentation is only a hint (``# For example:`` / ``#  strategy:``
    above ``strategy: {}`` is indented by style, not nesting), so: under a real
    key whose default is a list the comment describes list items - ignore it;
    under a real scalar key it cannot be a child - read it as a sibling.
    """
    node = tree
    for depth, key in enumerate(path):
        doc = node.get(key)
        last = depth == len(path) - 1
        if doc is not None and not doc.commented and not last:
            if isinstance(doc.default, list):
                return
            if doc.default is not None and not isinstance(doc.default, dict):
                continue  # scalar parent: stay at this level
        if doc is None:
            doc = node[key] = _Doc(commented=True)
        node = doc.children


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@dataclass(frozen=True)
class _Dependency:
    key: str  # where its values live in the parent: alias or name
    chart_dir: Path | None  # None: not vendored upstream (external repository)
    condition: str | None


def _dependencies(chart_dir: Path) -> list[_Dependency]:
    """Subcharts as Helm sees them: every dir in charts/ plus Chart.yaml dependencies."""
    meta = _load_yaml(chart_dir / "Chart.yaml") or {}
    local_dirs = {p.parent.name: p.parent for p in sorted((chart_dir / "charts").glob("*/Chart.yaml"))}
    deps: dict[str, _Dependency] = {}
    listed: set[str] = set()
    for dep in meta.get("dependencies") or []:
        name, key = dep["name"], dep.get("alias") or dep["name"]
        listed.add(name)
        deps[key] = _Dependency(key, local_dirs.get(name), dep.get("condition"))
    for name, path in local_dirs.items():
        # Helm loads every chart in charts/; unlisted ones have no alias/condition.
        if name not in listed:
            deps[name] = _Dependency(name, path, None)
    return list(deps.values())


@functools.lru_cache(maxsize=None)
def _documented(chart_dir: Path) -> dict[str, _Doc]:
    """Documented values tree of a chart, its subcharts and their globals."""
    text = (chart_dir / "values.yaml").read_text(encoding="utf-8")
    tree = _doc_from_defaults(yaml.safe_load(text) or {})
    for path in commented_key_paths(text):
        _add_commented(tree, path)
    for dep in _dependencies(chart_dir):
        if dep.chart_dir is None:
            # Chart from an external repository, not vendored here: its keys
            # cannot be checked, so accept them rather than guess.
            tree.setdefault(dep.key, _Doc(default={})).freeform = True
            continue
        sub = copy.deepcopy(_documented(dep.chart_dir))
        # `global` is shared by the whole chart tree: a global that only a
        # subchart reads is still set at the top (Helm copies globals down).
        if "global" in sub:
            _merge_docs(tree.setdefault("global", _Doc(default={})).children, sub["global"].children)
        _merge_docs(tree.setdefault(dep.key, _Doc(default={})).children, sub)
    return tree


def _chart_dir(chart: str) -> Path:
    path = CHARTS_DIR / chart
    if not (path / "values.yaml").is_file():
        raise MissingFixtureError(
            f"no chart fixture {chart!r} under {CHARTS_DIR} (have: {', '.join(available_charts())})"
        )
    return path


def available_charts() -> list[str]:
    return sorted(p.parent.name for p in CHARTS_DIR.glob("*/values.yaml"))


def unknown_value_paths(chart: str, values: dict[str, Any], freeform: Iterable[str] = ()) -> list[str]:
    """Dotted paths in ``values`` that the chart does not define.

    A key is defined when it is in the chart's ``values.yaml`` defaults, or in a
    subchart's defaults under the subchart's key (GitLab: ``gitlab.webservice.minReplicas``
    comes from charts/gitlab/charts/webservice/values.yaml), or under ``global``
    in any chart of the tree, or documented as a commented key line under its
    parent (see ``commented_key_paths``).

    Below a defined key:

    * default is a non-empty map: sub-keys are checked recursively;
    * default is ``{}``, or the key is a pass-through (nodeSelector, resources,
      env, extraEnv...; ``*Annotations``, ``*Labels`` and ``affinity`` unless
      the default is a structured map rather than a string map), or the
      path matches a glob in ``freeform`` (fnmatch on the dotted path, ``*``
      crosses dots): anything below is accepted; ``freeform`` also accepts the
      matched key itself, as the caller's explicit, reviewed exception;
    * the key belongs to a dependency whose chart is not vendored here (for
      example GitLab's ``postgresql``, argo-cd's ``redis-ha``): accepted,
      because there is nothing to check against;
    * default is a list: any value accepted (Helm replaces lists whole);
    * default is a scalar or null but the value is a map: sub-keys are
      accepted only where values.yaml documents them in comments, otherwise
      each sub-key is reported.  The chart gives no structure to trust there.

    List items are not looked into.  Keys containing dots are joined as they
    are, so ``podAnnotations.iam.amazonaws.com/role`` is one key under
    ``podAnnotations``.
    """
    tree = _documented(_chart_dir(chart))
    patterns = tuple(freeform)
    found: list[str] = []
    _unknown(values, tree, "", patterns, found)
    return found


def _unknown(values: Mapping[str, Any], tree: dict[str, _Doc], prefix: str, patterns: tuple[str, ...],
             found: list[str]) -> None:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if any(fnmatch.fnmatchcase(path, p) for p in patterns):
            continue
        doc = tree.get(str(key))
        if doc is None:
            found.append(path)
        elif isinstance(value, dict) and not doc.freeform:
            _unknown(value, doc.children, f"{path}.", patterns, found)


# ---------------------------------------------------------------------------
# Helm values: values.schema.json
# ---------------------------------------------------------------------------

def _validator_class(schema: Mapping[str, Any]) -> type[jsonschema.protocols.Validator]:
    """The draft named by ``$schema``; Helm's default (2020-12) when there is none.

    jsonschema only knows the ``http://`` meta-schema ids; vault writes
    ``https://json-schema.org/draft-07/schema#``, so compare without scheme.
    """
    declared = _schema_id(schema.get("$schema", ""))
    for cls in _DRAFTS:
        if declared and _schema_id(cls.META_SCHEMA.get("$id") or cls.META_SCHEMA.get("id", "")) == declared:
            return cls
    return jsonschema.Draft202012Validator


_DRAFTS = (
    jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator,
    jsonschema.Draft201909Validator, jsonschema.Draft202012Validator,
)


def _schema_id(uri: object) -> str:
    return str(uri).split("://", 1)[-1].rstrip("#/")


@functools.lru_cache(maxsize=None)
def _values_validator(schema_file: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    cls = _validator_class(schema)
    cls.check_schema(schema)
    return cls(schema)


@functools.lru_cache(maxsize=None)
def _defaults(chart_dir: Path) -> dict[str, Any]:
    return _load_yaml(chart_dir / "values.yaml") or {}


def _coalesce(defaults: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over chart defaults.

    null deletes a default; where this chart has no such default the null is
    kept, as Helm does, so it can still delete a subchart's default below.
    """
    out = copy.deepcopy(dict(defaults))
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _coalesce(out[key], value)
        elif value is None and key in out:
            del out[key]
        else:
            out[key] = copy.deepcopy(value)
    return out


def _lookup(values: Mapping[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _enabled(dep: _Dependency, values: Mapping[str, Any]) -> bool:
    """Helm's `condition`: the first path that resolves to a bool decides; none: enabled."""
    for cond in (dep.condition or "").split(","):
        value = _lookup(values, cond.strip()) if cond.strip() else None
        if isinstance(value, bool):
            return value
    return True


def schema_errors(chart: str, values: dict[str, Any]) -> list[str]:
    """Errors of ``values`` against the chart's ``values.schema.json`` files.

    As Helm does it: the user values are merged over the chart defaults first
    (so ``required`` keys with defaults pass), then checked against the chart's
    schema and, for each enabled vendored subchart that ships one (GitLab's
    webservice and gitlab-shell), the subchart's merged values with the parent's
    ``global``.  The JSON-schema draft comes from ``$schema`` (Helm's default,
    2020-12, when absent).  ``format`` is not asserted.  [] when no schema ships.
    """
    errors: list[str] = []
    _schema_errors(_chart_dir(chart), dict(values), "", errors)
    return errors


def _schema_errors(chart_dir: Path, values: Mapping[str, Any], prefix: str, errors: list[str]) -> None:
    merged = _coalesce(_defaults(chart_dir), values)
    schema_file = chart_dir / "values.schema.json"
    if schema_file.is_file():
        validator = _values_validator(schema_file)
        for err in sorted(validator.iter_errors(merged), key=lambda e: list(map(str, e.absolute_path))):
            errors.append(f"{prefix}{_dotted(err.absolute_path) or '<root>'}: {err.message}")
    for dep in _dependencies(chart_dir):
        if dep.chart_dir is None or not _enabled(dep, merged):
            continue
        sub_values = dict(merged.get(dep.key) or {})
        # Parent globals win over the subchart's own global defaults.
        sub_values["global"] = _coalesce(
            _coalesce(_defaults(dep.chart_dir).get("global") or {}, sub_values.get("global") or {}),
            merged.get("global") or {},
        )
        _schema_errors(dep.chart_dir, sub_values, f"{prefix}{dep.key}.", errors)


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path)


# ---------------------------------------------------------------------------
# Custom resources: CRD schemas, strict
# ---------------------------------------------------------------------------

# Minimal ObjectMeta the program may set; anything else (uid, generateName,
# ownerReferences, ...) in an emitted object is a mistake we want to see.
_OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string", "minLength": 1},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


@dataclass(frozen=True)
class _CrdSchema:
    file: str
    scope: str  # "Namespaced" | "Cluster"


@functools.lru_cache(maxsize=None)
def _crd_index(schemas_dir: Path = SCHEMAS_DIR) -> dict[tuple[str, str], _CrdSchema]:
    entries = json.loads((schemas_dir / "index.json").read_text(encoding="utf-8"))
    return {(e["apiVersion"], e["kind"]): _CrdSchema(e["schema"], e["scope"]) for e in entries}


def _strict(node: Any, root: bool = False) -> Any:
    """A CRD openAPIV3Schema made strict, the way the API server treats fields.

    * ``type: object`` without ``additionalProperties`` and without
      ``x-kubernetes-preserve-unknown-fields`` is closed: the API server prunes
      (strict field validation: rejects) any field it does not declare.
    * ``nullable: true`` admits null; ``x-kubernetes-int-or-string`` admits both.
    * The root always admits apiVersion, kind and a minimal ObjectMeta.
    Only schema positions are rewritten (never ``default``/``enum``/examples).
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _strict(out["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(key), list):
            out[key] = [_strict(s) for s in out[key]]
    if isinstance(out.get("not"), dict):
        out["not"] = _strict(out["not"])
    if out.get("x-kubernetes-int-or-string") and "type" not in out and "anyOf" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
        if isinstance(out.get("enum"), list):
            out["enum"] = [*out["enum"], None]
    if root:
        props = out.setdefault("properties", {})
        props["apiVersion"] = {"type": "string"}
        props["kind"] = {"type": "string"}
        props["metadata"] = _OBJECT_META
        out.setdefault("type", "object")
    if (
        out.get("type") == "object"
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        props = out.setdefault("properties", {})
        if out.get("x-kubernetes-embedded-resource"):
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        out["additionalProperties"] = False
    return out


@functools.lru_cache(maxsize=None)
def _crd_validator(schema_file: str, schemas_dir: Path = SCHEMAS_DIR) -> jsonschema.protocols.Validator:
    raw = json.loads((schemas_dir / schema_file).read_text(encoding="utf-8"))
    # Draft 4: CRD schemas are OpenAPI 3.0 schema objects, a draft-4 dialect.
    return jsonschema.Draft4Validator(_strict(raw, root=True))


def custom_resource_errors(obj: dict[str, Any], schemas_dir: Path = SCHEMAS_DIR) -> list[str]:
    """Strict errors of a custom resource against its pinned CRD schema ([] when valid).

    Unknown fields are errors (see ``_strict``), metadata may hold only
    name/namespace/labels/annotations/finalizers, and a cluster-scoped kind
    must not carry a namespace.  CEL rules, list-type uniqueness and formats are
    not checked.  Raises ``MissingFixtureError`` for a kind/apiVersion without a
    schema fixture, so a missing fixture is loud rather than a silent pass.
    ``schemas_dir``: another collection of the same layout (index.json), such as
    ``../shared/upstream/schemas`` for what charts render.
    """
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    entry = _crd_index(schemas_dir).get((str(api_version), str(kind)))
    if entry is None:
        known = sorted(f"{k} {a}" for a, k in _crd_index(schemas_dir))
        raise MissingFixtureError(
            f"no CRD schema fixture for kind {kind!r} apiVersion {api_version!r} in {schemas_dir}; "
            f"copy it from the upstream schemas and add it to index.json (have: {', '.join(known)})"
        )
    validator = _crd_validator(entry.file, schemas_dir)
    errors = [
        f"{_dotted(e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    metadata = obj.get("metadata")
    if entry.scope == "Cluster" and isinstance(metadata, dict) and "namespace" in metadata:
        errors.append(f"metadata.namespace: {kind} is cluster-scoped and takes no namespace")
    return errors


def crd_errors(obj: dict[str, Any], crd: Mapping[str, Any]) -> list[str]:
    """Strict errors of a custom resource against a CRD object itself (the version `obj` names),
    such as a CRD a chart renders: the same rules as ``custom_resource_errors``."""
    version = str(obj.get("apiVersion", "")).rpartition("/")[2]
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
    validator = jsonschema.Draft4Validator(_strict(served["schema"]["openAPIV3Schema"], root=True))
    return [
        f"{_dotted(e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]


# ---------------------------------------------------------------------------
# Built-in Kubernetes objects
# ---------------------------------------------------------------------------

# API groups served by kube-apiserver itself in Kubernetes 1.25-1.37 (as listed
# by kubernetes-validate's schemas; a test keeps this in step).  "" is core
# (apiVersion "v1").  Anything else - including *.k8s.io groups served by CRDs,
# like gateway.networking.k8s.io or snapshot.storage.k8s.io - is custom.
BUILTIN_GROUPS = frozenset({
    "", "admission.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io",
    "apiregistration.k8s.io", "apps", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "batch", "certificates.k8s.io", "coordination.k8s.io", "discovery.k8s.io",
    "events.k8s.io", "extensions", "flowcontrol.apiserver.k8s.io", "imagepolicy.k8s.io",
    "internal.apiserver.k8s.io", "lifecycle.k8s.io", "networking.k8s.io", "node.k8s.io",
    "policy", "rbac.authorization.k8s.io", "resource.k8s.io", "scheduling.k8s.io",
    "storage.k8s.io", "storagemigration.k8s.io",
})


def _group(obj: Mapping[str, Any]) -> str:
    api_version = str(obj.get("apiVersion", ""))
    return api_version.rpartition("/")[0]


def is_custom_resource(obj: Mapping[str, Any]) -> bool:
    """True when the object's API group is not one kube-apiserver serves itself."""
    return _group(obj) not in BUILTIN_GROUPS


def kubernetes_errors(obj: dict[str, Any], k8s_version: str = "1.33") -> list[str]:
    """Strict kubernetes-validate errors for a built-in object ([] when valid).

    kubernetes-validate reports only its best-matching error, so the list has at
    most one entry.  Raises ``ValueError`` for a custom resource (kubernetes-validate
    keeps only the first label of a group, so ``apps.example.com/v1`` would be
    checked as ``apps/v1``) and ``MissingFixtureError`` when it has no schema.
    """
    if is_custom_resource(obj):
        raise ValueError(f"{obj.get('apiVersion')} {obj.get('kind')} is a custom resource: use custom_resource_errors")
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{_dotted(e.absolute_path) or '<root>'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        raise MissingFixtureError(e.message) from None
    return []

