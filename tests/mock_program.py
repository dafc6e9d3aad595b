"""Run a small Pulumi program under the mock engine, the way `platformctl render` runs the real one.

`run_program(program)` runs `program` through `platformctl.render.run_under_mocks` (one way of
running a program for the render and the tests) in a fresh context and returns a `ProgramRun`:
the plan dict (plan.json's shape, secrets redacted), plus what only tests may see: each
registration's inputs with secrets revealed (mock values only), its id and its replacement
trigger, and whatever `program` returned.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

import pulumi
from google.protobuf import json_format
from pulumi.runtime import rpc
from pulumi.runtime.mocks import Mocks
from pulumi.runtime.sync_await import _ensure_event_loop

from components.cluster import ClusterHandle, ExistingCluster, ExistingClusterArgs
from platformctl.mocks import PlatformMocks, RecordingMonitor
from platformctl.render import PROJECT, run_under_mocks

T = TypeVar("T")


def reveal(value: Any) -> Any:
    """A deserialized property value with secrets unwrapped and integral numbers as ints (the
    wire carries every number as a double; the provider sends 60000, not 60000.0)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if rpc.is_rpc_secret(value):
        return reveal(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items() if not str(k).startswith("__")}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


class RevealingMonitor(RecordingMonitor):
    """The render's monitor, also keeping by URN the inputs with secrets revealed, the id and
    the replacement trigger: the plan redacts a Secret's whole `stringData` and has neither."""

    def __init__(self, mocks: Mocks):
        super().__init__(mocks)
        self.raw: dict[str, Any] = {}
        self.ids: dict[str, str] = {}
        self.triggers: dict[str, Any] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        self.raw[response.urn] = reveal(rpc.deserialize_properties(request.object, keep_unknowns=True))
        self.ids[response.urn] = response.id
        if request.HasField("replacement_trigger"):
            self.triggers[response.urn] = json_format.MessageToDict(request.replacement_trigger)
        return response


@dataclass
class ProgramRun(Generic[T]):
    plan: dict[str, Any]  # as `platformctl render` writes plan.json
    fingerprints: dict[str, dict[str, str]]
    raw: dict[str, Any]  # URN -> inputs with secrets revealed
    ids: dict[str, str]  # URN -> id
    triggers: dict[str, Any]  # URN -> replacement trigger, where one is set
    result: T  # what the program returned
    _context: contextvars.Context

    @property
    def resources(self) -> list[dict[str, Any]]:
        """The plan's resources, in creation order."""
        return self.plan["resources"]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == type_]

    def one(self, type_: str, name: str | None = None) -> dict[str, Any]:
        found = [r for r in self.of_type(type_) if name is None or r["name"] == name]
        assert len(found) == 1, f"expected one {type_} {name or ''}, found {[r['name'] for r in found]}"
        return found[0]

    def resolve(self, output: pulumi.Output[Any]) -> tuple[Any, bool]:
        """An Output of the program, resolved in the program's context: (value, is it secret)."""

        def in_context() -> tuple[Any, bool]:
            loop = _ensure_event_loop()
            return loop.run_until_complete(output.future()), loop.run_until_complete(output.is_secret())

        return self._context.run(in_context)


def run_program(
    program: Callable[[], T],
    *,
    stack: str = "test",
    project: str = PROJECT,
    mocks: Mocks | None = None,
    config: dict[str, str] | None = None,
) -> ProgramRun[T]:
    """Run `program` in a fresh context under `mocks` (default PlatformMocks) and `config`
    (fully qualified keys, string values; default none)."""
    context = contextvars.Context()
    monitor = RevealingMonitor(mocks or PlatformMocks())
    returned: list[T] = []
    render = context.run(
        run_under_mocks, lambda: returned.append(program()), stack=stack, project=project, config=config, monitor=monitor
    )
    return ProgramRun(render.plan, render.fingerprints, monitor.raw, monitor.ids, monitor.triggers, returned[0], context)


def control_plane_cluster(ca_data: str = "bW9jaw==") -> ClusterHandle:
    """A kubeconfig control-plane cluster for small programs (declare it inside the program)."""
    return ExistingCluster(
        "control-plane",
        ExistingClusterArgs(
            role="control-plane", server="https://control-plane:6443", ca_data=ca_data,
            kubernetes_version="1.33", kubeconfig_path="kubeconfig/test.yaml",
        ),
    ).handle
