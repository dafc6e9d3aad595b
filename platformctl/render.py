"""`platformctl render`: run the real program under the mock engine and write the plan.

Writes plan.json, manifests/<cluster>/... and graph.mmd into --out, and prints a summary.
No CLI, no network, no credentials: the stack file is read directly, `secure:` values
become placeholder secrets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import gc
import heapq
import json
import math
import re
import os
import runpy
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_string
from pathlib import Path
from typing import Any

import pulumi
import pulumi.resource as pulumi_resource
from pulumi.output import _OutputData
from pulumi.runtime import config as runtime_config
from pulumi.runtime import known_types, rpc
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import resource as runtime_resource
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.stack import run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _ensure_event_loop

from platformctl.charts import ChartError
from platformctl.helm_render import (
    RELEASE_TYPE, HelmRenderError, manifest_text, object_namespace, render_plan_releases, values_only_note,
)
from platformctl.mocks import REDACTED, PlatformMocks, RecordingMonitor, redact
from platformctl.stack_file import PROJECT, ConfigError, RenderError, parse_stack_file, read_stack_file
from stacks.config import load_platform_config
from stacks.platform import kubernetes_versions, local_charts

ROOT = Path(__file__).resolve().parent.parent
# While the program declares, pending registrations settle before a top-level resource once
# this many have been declared since the last time (see `_settling`).
SETTLE_EVERY = 500
# Young-generation threshold of the garbage collector while a program runs (see `_collecting_less`).
GC_YOUNG_THRESHOLD = 20_000
# Plain values: the SDK serializes them as they are and they hold no Unknown.
_PLAIN = frozenset({str, int, float, bool, type(None)})


class LateChild(RenderError):
    """A component got a child after a settled registration had expanded its children (`_settling`)."""


# The commit whose stack file a change starts from (CI: the merge base, or on main the commit
# before the push): tenants it lists may leave or switch isolation only with an offboarding entry.
BASE_REF_ENV = "PLATFORM_BASE_REF"
# Set while `render` runs the program: it compared the stack file with its base already.
BASE_CHECKED: contextvars.ContextVar[bool] = contextvars.ContextVar("platform_base_checked", default=False)


def base_config(path: Path, ref: str, *, required: bool) -> dict[str, str] | None:
    """Stack file `path` as it was at commit `ref` of its Git repository, read like `read_stack_file`.

    None when the file is new since `ref`, or, unless `required`, when `path` is not in a Git
    repository or `ref` is no commit there (a fresh repository, a file outside one).
    """
    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True, check=False)

    try:
        found = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except OSError as err:  # no git
        if required:
            raise RenderError(f"{path}: cannot read it at the base {ref!r}: {err.strerror or err}") from None
        return None
    if found.returncode != 0:
        if required:
            raise RenderError(f"{path}: cannot read it at the base {ref!r}: not a commit of its repository (a shallow clone?)")
        return None
    shown = git("show", f"{found.stdout.strip()}:./{path.name}")
    if shown.returncode != 0:
        return None  # new since the base: no tenants to keep
    return parse_stack_file(shown.stdout, f"{path.name} at {ref}")[0]


@dataclass(frozen=True)
class Render:
    plan: dict[str, Any]
    # Per URN, per secret input path: a hash of the mock value, for `platformctl diff`.
    fingerprints: dict[str, dict[str, str]]
    # "<chart> <version>" of the Helm releases left values-only: no local chart source.
    values_only: list[str] = field(default_factory=list)
    # Per Helm release URN, the manifest text of each object its chart rendered (`rendered`).
    manifests: dict[str, list[str]] = field(default_factory=dict)


def render_plan(config_file: Path, stack: str) -> dict[str, Any]:
    """The plan.json document for `stack` rendered from `config_file`."""
    return render(config_file, stack).plan


def render(
    config_file: Path, stack: str, *, charts: bool = False, charts_base: Path | None = None, base_ref: str | None = None
) -> Render:
    """Run the program for `stack` with `config_file` under mocks, and render its Helm releases.

    `charts=True` renders each release's chart with the Helm engine (`platformctl render` and the
    tests' session renders do; other renders skip it for speed); `charts_base` is the local charts
    directory (default: platformctl.charts.charts_dir()). `base_ref`: the commit whose version of
    `config_file` the change starts from (default: $PLATFORM_BASE_REF, else HEAD where the file is
    in a Git repository); its tenants leave or switch isolation only with an offboarding entry.
    """
    raw, secret_keys = read_stack_file(config_file)
    ref = base_ref or os.environ.get(BASE_REF_ENV)
    previous = base_config(config_file.resolve(), ref or "HEAD", required=ref is not None)
    # Validate before anything is registered, so a bad file registers nothing.
    config = load_platform_config(raw, stack=stack, source=str(config_file), secret_keys=secret_keys, previous=previous)
    local_charts(config, ROOT)  # an air-gapped stack's charts must be there and locked

    def run(settle: bool) -> Render:
        # A fresh context per render: Pulumi keeps its settings, config and root stack in
        # context variables, so renders in one process never see each other.
        def program() -> object:
            BASE_CHECKED.set(True)
            return runpy.run_path(str(ROOT / "__main__.py"), run_name="__pulumi_program__")

        return contextvars.Context().run(
            run_under_mocks,
            program,
            stack=stack,
            config=raw,
            secret_keys=secret_keys,
            settle=settle,
        )

    try:
        result = run(settle=True)
    except LateChild:
        # Settling would change a dependsOn; the program as `pulumi up` runs it (more memory).
        result = run(settle=False)
    if charts:
        try:
            releases = render_plan_releases(result.plan, kubernetes_versions(config), charts_base)
        except (ChartError, HelmRenderError) as err:
            raise RenderError(str(err)) from None
        return Render(result.plan, result.fingerprints, releases.missing, releases.manifests)
    return result


def run_under_mocks(
    program: Callable[[], object],
    *,
    stack: str,
    project: str = PROJECT,
    config: Mapping[str, str] | None = None,
    secret_keys: Iterable[str] = (),
    monitor: RecordingMonitor | None = None,
    settle: bool = True,
) -> Render:
    """Run `program` as a Pulumi program under the recording mock engine; what it declares.

    The one way to run a program offline, for `render` and for the tests' small programs
    (tests/mock_program.py). It configures Pulumi in the *current* context: call it in a fresh
    `contextvars.Context` (as `render` does). `config` holds fully qualified keys
    ("<project>:<key>") and string values; `monitor` defaults to a RecordingMonitor over
    PlatformMocks. `settle`: let registrations complete while the program declares (`_settling`);
    raises LateChild (after the run) where that changed a dependsOn: run again without.
    """
    loop = _ensure_event_loop()
    runtime_config.set_all_config(dict(config or {}), sorted(secret_keys))
    if monitor is None:
        monitor = RecordingMonitor(PlatformMocks())
    # With a monitor given, set_mocks only needs its mocks for the signature.
    runtime_mocks.set_mocks(monitor.mocks, project=project, stack=stack, preview=False, monitor=monitor)
    error: BaseException | None = None
    with (
        _without_stack_traces(), _collecting_less(), _acyclic_unknowns_check(), _output_properties_on_use(),
        _plain_values_as_they_are(), _settling(loop, settle) as late_children,
    ):
        # The program runs outside the event loop so that `_settling` can run the loop at its
        # checkpoints; run_pulumi_func then waits for what is left and raises the program's error.
        try:
            program()
        except BaseException as err:  # noqa: BLE001 re-raised below, once the RPCs are done
            error = err

        async def finish() -> None:
            if error is not None:
                raise error

        loop.run_until_complete(run_pulumi_func(finish))
        if late_children:
            raise LateChild(f"added after their component's children were expanded: {', '.join(late_children[:5])}")
        # Still inside: with the SDK restored and the collector back to its defaults, resolving
        # the outputs ran full collections over everything the render holds (1.4 s at 100 tenants).
        outputs = _stack_outputs(loop)
    resources = creation_order(monitor.records)
    plan = {"schema": 1, "project": project, "stack": stack, "resources": resources, "outputs": outputs}
    return Render(plan, dict(sorted(monitor.fingerprints.items())))


def _stack_outputs(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """The stack's outputs as the plan holds them: each resolved, a secret redacted."""
    stack_resource = pulumi.runtime.get_root_resource()
    assert stack_resource is not None
    outputs = {}
    for name, value in sorted(stack_resource.outputs.items()):
        output = pulumi.Output.from_input(value)
        resolved = loop.run_until_complete(output.future(with_unknowns=True))
        is_secret = loop.run_until_complete(output.is_secret())
        outputs[name] = REDACTED if is_secret else redact(resolved)[0]
    return outputs


@contextlib.contextmanager
def _patched(target: Any, **replacements: Any) -> Iterator[None]:
    """`target`'s attributes set to `replacements` while the block runs, restored afterwards."""
    originals = {name: getattr(target, name) for name in replacements}
    for name, value in replacements.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in originals.items():
            setattr(target, name, value)


def _without_stack_traces() -> contextlib.AbstractContextManager[None]:
    """Skip the SDK's per-registration stack capture while the program runs.

    Why: the SDK records a stack trace and source position for every resource
    (traceback.extract_stack, a source line read and a file URI per frame) for the engine's
    diagnostics; the mock engine and the plan never use them, and at 1,000 tenants that is
    ~10 % of the render's time. An empty StackTrace is what the SDK itself sends when it
    cannot find the caller's frame, so the registrations are otherwise unchanged.
    """
    return _patched(runtime_resource, _get_stack_trace=source_pb2.StackTrace)


@contextlib.contextmanager
def _collecting_less() -> Iterator[None]:
    """Run the garbage collector less often while the program runs; restored afterwards.

    Why: each registration allocates a few hundred containers (Outputs, futures, tasks, the
    record) that outlive the default 700-allocation young generation until their
    registration settles, so the collector scanned them over and over: about half of a
    render's CPU. Freezing what exists beforehand (the imported SDKs) keeps full collections
    off it, and a larger young generation lets most of them die before a scan. Collection
    order never shows in the plan: it holds no object identities. A caller that froze objects
    itself (the test session freezes its imports and its session renders) keeps them frozen: unfreeze() would
    thaw them all, as CPython cannot thaw only what the render froze.
    """
    thresholds = gc.get_threshold()
    caller_froze = gc.get_freeze_count() > 0
    if not caller_froze:
        gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if not caller_froze:
            gc.unfreeze()


def _contains_unknowns(value: Any) -> bool:
    """pulumi.runtime.rpc.contains_unknowns, the same walk without a recursive closure."""
    if type(value) in _PLAIN:  # most values the SDK asks about: no walk needed
        return False
    seen: set[int] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if known_types.is_unknown(item):
            return True
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            # dict.values, not item.values: input types are dicts whose fields may be named `values`.
            pending.extend(dict.values(item))
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _acyclic_unknowns_check() -> contextlib.AbstractContextManager[None]:
    """Use `_contains_unknowns` while the program runs.

    Why: the SDK's version defines a recursive inner function on every call, a reference
    cycle (function, cell, annotations) that only the garbage collector frees; Outputs call
    it ~30 times per registration, and collecting those cycles was a third of the
    collector's work. Same answer: both report whether an Unknown is reachable through dict
    values and list items.
    """
    return _patched(rpc, contains_unknowns=_contains_unknowns)


@contextlib.contextmanager
def _plain_values_as_they_are() -> Iterator[None]:
    """Serialize, deserialize and translate a plain value (text, number, bool, None) without the
    SDK's checks while the program runs.

    Why: the SDK passes every leaf of every input, and of every answer the engine echoes back,
    through a chain of checks (Outputs, resources, assets, input types, sequences, the unknown
    sentinel: ABC isinstance checks, type unwrapping, an import) before returning a plain value
    unchanged; a registration of the program has about 2.4 times the floor's leaves. Same
    answers: the SDK returns such a value as it is, unless asked for a protobuf Value, given
    the unknown sentinel or a type to convert it to, which go the SDK's way.
    """
    serialize, deserialize, translate = rpc.serialize_property, rpc.deserialize_property, rpc.translate_output_properties

    async def serialize_property(value: Any, *args: Any, **kwargs: Any) -> Any:
        if type(value) in _PLAIN and not kwargs.get("return_protobuf_value"):
            return value
        return await serialize(value, *args, **kwargs)

    def deserialize_property(value: Any, *args: Any, **kwargs: Any) -> Any:
        if type(value) in _PLAIN and value != rpc.UNKNOWN:
            return value
        return deserialize(value, *args, **kwargs)

    def translate_output_properties(output: Any, transformer: Any, typ: Any = None, *args: Any, **kwargs: Any) -> Any:
        if typ is None and type(output) in _PLAIN:  # no type to convert it to (an enum, an int)
            return output
        return translate(output, transformer, typ, *args, **kwargs)

    with _patched(
        rpc, serialize_property=serialize_property, deserialize_property=deserialize_property,
        translate_output_properties=translate_output_properties,
    ):
        yield


class _PropertyOutput(pulumi.Output):
    """A resource's output property whose future is made when the program first uses it.

    The SDK's Output for each property is four futures and a task (`rpc.transfer_properties`),
    made for every property a resource type declares (82 for a gitlab.Project) though a program
    reads a few. This one holds the engine's answer until then; once made, its future holds what
    the SDK's would: the same value, known and secret flags, and the resource among its deps.
    """

    def __init__(self, resource: Any) -> None:  # no Output.__init__: no task and no futures yet
        self._resource = resource
        self._answer: tuple[Any, bool, bool, Any, Exception | None] | None = None
        self._made: asyncio.Future[Any] | None = None

    @property
    def _data(self) -> asyncio.Future[Any]:  # type: ignore[override]
        if self._made is None:
            self._made = asyncio.get_event_loop().create_future()
            if self._answer is not None:
                self._settle()
        return self._made

    def _untrack(self) -> None:
        """Never tracked: the engine's answer (or its failure) always comes, through `_resolve`."""

    def _resolve(self, value: Any, is_known: bool, is_secret: bool, deps: Any, failed: Exception | None) -> None:
        self._answer = (value, is_known, is_secret, deps, failed)
        if self._made is not None:
            self._settle()

    def _settle(self) -> None:
        assert self._made is not None and self._answer is not None
        value, is_known, is_secret, deps, failed = self._answer
        if failed is not None:
            self._made.set_exception(failed)
            return
        resources = {*(deps or ()), self._resource}
        self._made.set_result(_OutputData(resources=resources, value=value, is_known=is_known, is_secret=is_secret))


def _transfer_properties(res: Any, props: Mapping[str, Any], custom: bool) -> dict[str, Callable[..., None]]:
    """rpc.transfer_properties with a `_PropertyOutput` for each property: the same resolvers' contract."""
    resolvers = {}
    for name in props:
        if name == "urn" or (name == "id" and custom):
            continue  # set by the SDK itself
        output = _PropertyOutput(res)
        resolvers[name] = output._resolve
        res.__dict__[name] = output
    return resolvers


def _output_properties_on_use() -> contextlib.AbstractContextManager[None]:
    """Use `_transfer_properties` while the program runs: a fifth of a render's CPU was the Output
    machinery of properties no one reads. The plan is the same (the tests render both stacks and
    compare); `pulumi up` runs the SDK's own."""
    return _patched(rpc, transfer_properties=_transfer_properties)


class _Children(set[Any]):
    """A component's child Resources, noting a child added after the SDK expanded the component."""

    __slots__ = ("expanded", "late")

    def __init__(self, late: list[str]):
        super().__init__()
        self.expanded = False
        self.late = late  # the run's list of late children

    def copy(self) -> set[Any]:
        # The SDK copies the set to expand a dependency on the component into its children.
        self.expanded = True
        return set(self)

    def add(self, child: Any) -> None:
        if self.expanded:
            self.late.append(f"{child._type} {child._name}")
        super().add(child)


@contextlib.contextmanager
def _settling(loop: asyncio.AbstractEventLoop, enabled: bool) -> Iterator[list[str]]:
    """Let pending registrations complete while the program is still declaring; yields the late children.

    Why: the program is synchronous, so under the stock flow the SDK holds every registration
    pending (per input property an Output, four futures and a task; per resource its prepare
    and register coroutines) until the whole platform is declared: ~55 KB per registration,
    6.2 GiB at 1,000 tenants. Before a top-level resource (where a unit such as a tenant
    begins), once SETTLE_EVERY have been declared since the last time, the mock engine
    answers everything pending, and the SDK drops what it held (1.2 GiB at 1,000 tenants).

    The plan is the same: the mocks answer from the request alone and the plan is put in
    creation_order, so when a registration is sent does not matter, with one exception: the
    SDK expands a dependency on a component into the component's children *when it prepares
    the dependent*, which the stock flow does after the whole program. A child added to a
    component after such an expansion (`_Children`) makes the run raise LateChild, and
    `render` runs the program again without settling.
    """
    original = pulumi_resource.register_resource
    late: list[str] = []
    declared = 0

    def register(
        res: Any, ty: str, name: str, custom: bool, remote: bool, new_dependency: Any, props: Any, opts: Any, *rest: Any
    ) -> None:
        nonlocal declared
        top_level = opts is None or opts.parent is None
        if declared >= SETTLE_EVERY and top_level and not loop.is_running():
            loop.run_until_complete(_settle())
            declared = 0
        declared += 1
        if not custom:
            res._childResources = _Children(late)
        original(res, ty, name, custom, remote, new_dependency, props, opts, *rest)

    with _patched(pulumi_resource, register_resource=register) if enabled else contextlib.nullcontext():
        yield late


async def _settle() -> None:
    await asyncio.sleep(0)  # start the registrations declared since the last checkpoint
    await wait_for_rpcs(await_all_outstanding_tasks=False)


def creation_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Parents and dependencies before dependents, ties by URN.

    The SDK's own registration order varies between runs (it keeps dependencies in sets of
    resources hashed by identity), so the plan uses this canonical order instead.
    """
    by_urn = {r["urn"]: r for r in records}
    waiting_on = {urn: {d for d in [r["parent"], r["provider"], *r["dependsOn"]] if d in by_urn} for urn, r in by_urn.items()}
    dependents: dict[str, list[str]] = {urn: [] for urn in by_urn}
    for urn, before in waiting_on.items():
        for other in before:
            dependents[other].append(urn)
    ready = [urn for urn, before in waiting_on.items() if not before]
    heapq.heapify(ready)
    ordered = []
    while ready:
        urn = heapq.heappop(ready)
        ordered.append(by_urn[urn])
        for dependent in dependents[urn]:
            waiting_on[dependent].discard(urn)
            if not waiting_on[dependent]:
                heapq.heappush(ready, dependent)
    assert len(ordered) == len(records), "dependency cycle in the plan"
    return ordered


def _rendered_files(resource: dict[str, Any], texts: list[str] | None = None) -> list[tuple[str, str]]:
    """Where each object a Helm release's chart rendered goes: <cluster>/<namespace>/helm-<release>/<Kind>-<name>.yaml.

    `texts`: each object's manifest text where the render has it (`Render.manifests`)."""
    rendered = resource.get("rendered", [])
    files = []
    release_namespace = resource["inputs"].get("namespace", "default")
    for obj, text in zip(rendered, texts or map(manifest_text, rendered)):
        namespace = object_namespace(obj, release_namespace) or "_cluster"
        name = (obj.get("metadata") or {}).get("name", "unnamed")
        files.append((f"{resource['cluster']}/{namespace}/helm-{resource['name']}/{obj.get('kind')}-{name}.yaml", text))
    return files


def _object_file(resource: dict[str, Any]) -> tuple[str, str] | tuple[None, None]:
    """Where a declared Kubernetes object or Helm release goes under manifests/, and its text."""
    inputs, cluster = resource["inputs"], resource["cluster"] or "_unbound"
    if resource["type"].startswith("kubernetes:helm.sh/"):
        namespace = inputs.get("namespace", "default")
        repo = (inputs.get("repositoryOpts") or {}).get("repo", "")
        header = f"# chart: {inputs.get('chart')}\n# repository: {repo}\n# version: {inputs.get('version')}\n"
        body = manifest_text(inputs.get("values") or {})
        return f"{cluster}/{namespace}/helm-{resource['name']}.values.yaml", header + body
    if not resource["type"].startswith("kubernetes:") or "kind" not in inputs:
        return None, None
    metadata = inputs.get("metadata") or {}
    namespace = metadata.get("namespace", "_cluster")
    name = metadata.get("name", resource["name"])
    return f"{cluster}/{namespace}/{inputs['kind']}-{name}.yaml", manifest_text(inputs)


def _component_of(resource: dict[str, Any], by_urn: dict[str, dict[str, Any]]) -> str | None:
    """The URN of the nearest enclosing platform component."""
    current = resource
    while current is not None:
        if current["type"].startswith("platform:"):
            return current["urn"]
        current = by_urn.get(current["parent"] or "")
    return None


def enclosing(plan: dict[str, Any], component_type: str) -> dict[str, str | None]:
    """URN -> the name of the nearest enclosing component of `component_type` (or None)."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    found: dict[str, str | None] = {}
    for resource in plan["resources"]:
        current, name = resource, None
        while current is not None:
            if current["type"] == component_type:
                name = current["name"]
                break
            current = by_urn.get(current["parent"] or "")
        found[resource["urn"]] = name
    return found


def mermaid_graph(plan: dict[str, Any]) -> str:
    """Components as nodes; an edge where something in one depends on something in another."""
    by_urn = {r["urn"]: r for r in plan["resources"]}
    ids: dict[str, str] = {}
    lines = ["graph LR"]
    for resource in plan["resources"]:
        if resource["type"].startswith("platform:"):
            ids[resource["urn"]] = f"c{len(ids)}"
            lines.append(f'  {ids[resource["urn"]]}["{resource["name"]}<br/>{resource["type"]}"]')
    edges = set()
    for resource in plan["resources"]:
        source = _component_of(resource, by_urn)
        for dependency in resource["dependsOn"]:
            target = _component_of(by_urn[dependency], by_urn) if dependency in by_urn else None
            if source and target and source != target:
                edges.add((ids[source], ids[target]))
    lines += [f"  {a} --> {b}" for a, b in sorted(edges)]
    return "\n".join(lines) + "\n"


FINGERPRINTS = "secret-fingerprints.json"


def write_render(result: Render, out: Path) -> None:
    plan = result.plan
    out.mkdir(parents=True, exist_ok=True)
    with (out / "plan.json").open("w") as file:
        try:
            _write_json(plan, file)
        except TypeError:  # a value only the standard encoder knows how to write: start again with it
            file.seek(0)
            file.truncate()
            json.dump(plan, file, indent=1)
        file.write("\n")
    (out / FINGERPRINTS).write_text(json.dumps(result.fingerprints, indent=1) + "\n")
    files = {
        relative: text
        for resource in plan["resources"]
        for relative, text in [_object_file(resource), *_rendered_files(resource, result.manifests.get(resource["urn"]))]
        if relative
    }
    _write_tree(out / "manifests", files)
    (out / "graph.mmd").write_text(mermaid_graph(plan))


def _write_json(document: Any, file: Any) -> None:
    """`json.dump(document, file, indent=1)`'s text, five times as fast, streamed (at 1,000 tenants
    the text is ~150 MB); TypeError for anything but str-keyed dicts, lists, str, int, float,
    bool and None of exactly those types (the standard encoder then writes it).

    Why: the standard encoder indents in pure Python, checking every container for cycles
    (the plan has none: it was deserialized from the engine's answers)."""
    chunks: list[str] = []
    write = chunks.append

    def encode(value: Any, depth: int) -> None:
        kind = type(value)
        if kind is str:
            write(_json_string(value))
        elif kind is dict or kind is list:
            if not value:
                write("{}" if kind is dict else "[]")
                return
            inner, items = "\n" + " " * (depth + 1), value.items() if kind is dict else value
            write("{" if kind is dict else "[")
            for index, item in enumerate(items):
                write(inner if index == 0 else "," + inner)
                if kind is dict:
                    if type(item[0]) is not str:
                        raise TypeError(f"a {type(item[0]).__name__} key")
                    write(_json_string(item[0]) + ": ")
                    item = item[1]
                encode(item, depth + 1)
            write("\n" + " " * depth + ("}" if kind is dict else "]"))
            if len(chunks) > 65_536:
                file.write("".join(chunks))
                chunks.clear()
        elif value is None or kind is bool:
            write("null" if value is None else "true" if value else "false")
        elif kind is int or (kind is float and math.isfinite(value)):
            write(repr(value))
        elif kind is float:
            write(json.dumps(value))  # NaN, Infinity
        else:
            raise TypeError(f"a {kind.__name__}")

    encode(document, 0)
    file.write("".join(chunks))


def _write_tree(root: Path, files: Mapping[str, str]) -> None:
    """Make `root` hold exactly `files` (relative path -> text), writing only those that differ.

    Why: a render again after a small change writes ~1,300 files, nearly all as they were;
    removing and writing them all again was a fifth of a warm render's CPU.
    """
    existing = {path.relative_to(root).as_posix(): path for path in root.rglob("*") if path.is_file()} if root.exists() else {}
    for relative, text in files.items():
        path = root / relative
        old = existing.pop(relative, None)
        if old is None or old.read_bytes() != text.encode():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    for stale in existing.values():
        stale.unlink()
    if existing:
        for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
            if not any(directory.iterdir()):
                directory.rmdir()


def summary(result: Render, out: Path, charts_base: Path | None = None) -> str:
    plan = result.plan
    releases = [r for r in plan["resources"] if r["type"] == RELEASE_TYPE]
    rendered = [r for r in releases if "rendered" in r]
    helm = (
        f"Helm releases: {len(rendered)} of {len(releases)} rendered by the Helm engine "
        f"({sum(len(r['rendered']) for r in rendered)} objects)."
    )
    if result.values_only:
        helm += "\n" + values_only_note(result.values_only, charts_base)
    by_urn = {r["urn"]: r for r in plan["resources"]}
    clusters = Counter(r["cluster"] or "(not Kubernetes)" for r in plan["resources"] if r["custom"])
    components = Counter()
    for resource in plan["resources"]:
        if resource["custom"]:
            component = _component_of(resource, by_urn)
            components[by_urn[component]["type"] if component else "(top level)"] += 1
    lines = [
        f"Rendered stack '{plan['stack']}': {sum(clusters.values())} resources, "
        f"{len(plan['resources'])} registrations including components.",
        "By cluster:",
        *(f"  {name:<24} {count:>6}" for name, count in sorted(clusters.items())),
        "By component:",
        *(f"  {name:<40} {count:>6}" for name, count in sorted(components.items())),
        helm,
        f"Plan: {out / 'plan.json'}",
        f"Manifests: {out / 'manifests'}",
        f"Graph: {out / 'graph.mmd'}",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    charts_base = Path(args.charts_dir) if args.charts_dir else None
    try:
        stack, config_file = _stack_and_file(args.stack, args.config_file)
        out = Path(args.out) if args.out else Path("build") / "render" / stack
        _refuse_other_stacks_output(out, stack)
        result = render(config_file, stack, charts=not args.values_only, charts_base=charts_base, base_ref=args.base_ref)
    except ConfigError as err:
        print(str(err), file=sys.stderr)
        return 2
    except RenderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_render(result, out)
    print(summary(result, out, charts_base))
    return 0


def _stack_and_file(stack: str | None, config_file: str | None) -> tuple[str, Path]:
    """--stack, or the stack a `Pulumi.<stack>.yaml` --config-file names; dev when neither is given."""
    if config_file is None:
        stack = stack or "dev"
        return stack, ROOT / f"Pulumi.{stack}.yaml"
    path = Path(config_file)
    if stack is None:
        named = re.fullmatch(r"Pulumi\.([^.]+)\.ya?ml", path.name)
        if not named:
            raise RenderError(f"{path}: cannot tell the stack from the file name; allowed: Pulumi.<stack>.yaml, or pass --stack")
        stack = named.group(1)
    return stack, path


def _refuse_other_stacks_output(out: Path, stack: str) -> None:
    """A render directory belongs to one stack: rendering another into it would mix them up."""
    try:
        with (out / "plan.json").open() as file:
            head = file.read(4096)
    except (OSError, ValueError):
        return
    # The stack is near the start of the file (`write_render`): no need to parse megabytes for it.
    found = re.search(r'^ "stack": ("(?:[^"\\]|\\.)*"),$', head, re.MULTILINE)
    if found is None:
        return
    existing = json.loads(found.group(1))
    if existing != stack:
        raise RenderError(f"{out} holds a render of stack '{existing}', not '{stack}'; allowed: another --out, or remove it first")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("render", help="render a stack offline into plan.json, manifests and a graph")
    parser.add_argument("--stack", help="stack name (default: from a Pulumi.<stack>.yaml --config-file, else dev)")
    parser.add_argument("--config-file", help="stack file to render (default: Pulumi.<stack>.yaml)")
    parser.add_argument("--out", default=None, help="output directory (default: build/render/<stack>)")
    parser.add_argument("--charts-dir", help="local chart sources (default: $PLATFORM_CHARTS_DIR or build/charts)")
    parser.add_argument("--values-only", action="store_true", help="skip the Helm engine: releases as their values only")
    parser.add_argument("--base-ref", metavar="REF",
                        help=f"commit the change starts from: its tenants leave only with an offboarding entry "
                             f"(default: ${BASE_REF_ENV}, else HEAD)")
    parser.set_defaults(run=run)
