"""Shared fixtures: the offline renders of both stacks, made once per test session."""

from __future__ import annotations

import gc
import os
import socket
import sys
from pathlib import Path

import pulumi
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from platformctl.helm_render import values_only_note  # noqa: E402
from platformctl.render import Render, render, write_render  # noqa: E402

STACKS = ("dev", "prod")
# Socket calls the session renders attempted (each refused): test_render asserts there were none.
NETWORK_ATTEMPTS: list[tuple[str, tuple]] = []
# Warnings the providers logged while the session renders ran, such as a deprecated resource or
# argument the program uses (the SDKs log those with pulumi.log.warn): test_render asserts none.
ENGINE_WARNINGS: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_collection(session: pytest.Session):
    """Collect (import the program, its SDKs and the tests) with the garbage collector off, then
    freeze what stays: no later full collection walks the imported modules again. Why: the
    collections the imports triggered, and each later one over those objects, cost seconds."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()  # what the imports left as garbage is freed, not frozen
        gc.freeze()


def refusing(name: str):
    """A stand-in for socket call `name` that records the attempt and fails."""
    def refuse(*args: object, **kwargs: object) -> None:
        NETWORK_ATTEMPTS.append((name, args))
        raise AssertionError(f"network access attempted: {name}{args}")
    return refuse


@pytest.fixture(scope="session")
def renders() -> dict[str, Render]:
    """Both stacks rendered once, with the network refused and engine warnings recorded while the program runs."""
    # urllib3 (through hvac, which the program imports lazily) binds a socket to ::1 when it
    # is first imported, to probe IPv6 support: no traffic, and not the program's doing.
    import urllib3  # noqa: F401

    with pytest.MonkeyPatch.context() as patch:
        for name in ("connect", "connect_ex", "bind", "sendto"):
            patch.setattr(socket.socket, name, refusing(name))
        patch.setattr(socket, "create_connection", refusing("create_connection"))
        patch.setattr(socket, "getaddrinfo", refusing("getaddrinfo"))
        patch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: ENGINE_WARNINGS.append(message))
        # With the Helm engine: tests/test_helm_render.py checks what the charts make of the values.
        result = {stack: render(ROOT / f"Pulumi.{stack}.yaml", stack, charts=True) for stack in STACKS}
    # The renders live as long as the session: frozen, so that no later full collection walks
    # their millions of objects again. Collected once first, so that no garbage is frozen with
    # them; a later render leaves them frozen (platformctl.render._collecting_less).
    gc.collect()
    gc.freeze()
    return result


@pytest.fixture(scope="session")
def render_dirs(renders: dict[str, Render], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session renders written as `platformctl render` writes them (read them, don't change them)."""
    out = tmp_path_factory.mktemp("renders")
    for stack, result in renders.items():
        write_render(result, out / stack)
    return {stack: out / stack for stack in renders}


@pytest.fixture(scope="session", params=STACKS)
def plan(request: pytest.FixtureRequest, renders: dict[str, Render]) -> dict:
    """Each stack's plan.json document in turn."""
    return renders[request.param].plan


@pytest.fixture(scope="session")
def prod(renders: dict[str, Render]) -> dict:
    """The prod stack's plan (EKS clusters), for the tests that read only it."""
    return renders["prod"].plan


@pytest.fixture(scope="session")
def charted(renders: dict[str, Render]) -> dict[str, Render]:
    """Both stacks' renders, which must have rendered every Helm release with its chart.

    Without local chart sources (`python -m platformctl charts fetch`) the tests that need them
    skip on a developer machine and fail in CI (CI=true), so CI cannot pass without the charts.
    """
    for result in renders.values():
        if result.values_only:
            message = values_only_note(result.values_only)
            if os.environ.get("CI") == "true":
                pytest.fail(f"CI must render every chart: {message}")
            pytest.skip(message)
    return renders


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository whose first commit holds this project's dev and prod stack files (the access gate's tests)."""
    return stack_repo(tmp_path / "repo")


# --- a real Vault-compatible server (OpenBao) with each stack's Vault resources applied ---

from tests.certs import Tls, make_ca  # noqa: E402
from tests.git_repo import stack_repo  # noqa: E402
from tests.identity_peer import IdentityPeer  # noqa: E402
from tests.openbao import BaoServer, PlanVault  # noqa: E402


@pytest.fixture(scope="session")
def loopback_tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """One throwaway CA for every loopback TLS server: OpenBao and the identity peer."""
    return make_ca(tmp_path_factory.mktemp("loopback-tls"), "loopback")


@pytest.fixture(scope="session")
def identity_peer(loopback_tls: Tls) -> IdentityPeer:
    with IdentityPeer(loopback_tls) as peer:
        yield peer


@pytest.fixture(scope="session")
def plan_vaults(tmp_path_factory: pytest.TempPathFactory, loopback_tls: Tls, identity_peer: IdentityPeer, renders: dict[str, Render]):
    """stack -> a running OpenBao with that stack's plan applied, started on first use.

    One server per stack (the two plans use the same paths; OpenBao namespaces cannot hold
    audit devices or raft snapshots, which the tests need at the root)."""
    started: dict[str, PlanVault] = {}

    def get(stack: str) -> PlanVault:
        if stack not in started:
            server = BaoServer(tmp_path_factory.mktemp(f"openbao-{stack}"), loopback_tls).start()
            started[stack] = PlanVault.apply(server, renders[stack].plan["resources"], identity_peer)
        return started[stack]

    yield get
    for vault in started.values():
        vault.server.stop()
