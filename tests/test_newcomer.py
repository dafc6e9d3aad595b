"""A fresh clone as a newcomer meets it: the prerequisites README states, and `.ci/install`.

`.ci/install` is run against a stand-in virtualenv whose pip only logs its arguments: what
would be installed, and that a warm run (every requirement file as stamped) installs nothing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
INSTALL = ROOT / ".ci" / "install"
RENDER_SET = ["requirements-build.txt", "requirements.txt"]
TEST_SET = [*RENDER_SET, "requirements-test.txt", "requirements-opa.txt"]


def test_readme_states_the_prerequisites_install_checks() -> None:
    section = README.split("## Prerequisites", 1)[1].split("\n## ", 1)[0]
    script = INSTALL.read_text()
    assert "Python 3.11" in section and "sys.version_info[:2] != (3, 11)" in script
    assert "Linux x86_64" in section and "glibc 2.34" in section
    assert '"x86_64"' in script and "(2, 34)" in script
    assert "requirements-test.txt" in section and "requirements-opa.txt" in section


def test_readme_links_only_to_files_in_the_repository() -> None:
    # A fresh clone is all a reader has (the shared mirror is only where CI fetches charts from).
    links = [target for target in re.findall(r"\]\(([^)#]+)[^)]*\)", README) if "://" not in target]
    assert links and not [target for target in links if not (ROOT / target).exists()]


def pinned(name: str) -> dict[str, str]:
    """A requirements file's pins: normalized name to `name==version` (markers and hashes left out)."""
    found = {}
    for line in (ROOT / name).read_text().splitlines():
        requirement = line.split(";")[0].split(" --hash")[0].strip(" \\")
        if "==" in requirement and not line.lstrip().startswith("#"):
            project, version = requirement.split("==")
            found[re.sub(r"[-_.]+", "-", project.split("[")[0]).lower()] = version
    return found


def pins(name: str) -> set[str]:
    return set(pinned(name))


def test_every_test_only_pin_stays_out_of_the_render_set() -> None:
    render, tests = pins("requirements.in"), pins("requirements-test.in") | pins("requirements-opa.txt")
    assert {"pytest", "hypothesis", "opa-golib-python-bindings"} <= tests and not render & tests


def test_the_render_set_pins_every_package_the_program_and_platformctl_import() -> None:
    # ./quickstart installs requirements.txt alone: an import only the test set provides breaks it.
    distributions = importlib.metadata.packages_distributions()
    sources = [ROOT / "__main__.py", *(p for d in ("components", "stacks", "platformctl", "policy") for p in (ROOT / d).rglob("*.py"))]
    imported = {
        (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
        for source in sources
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.module and node.level == 0)
        for alias in (node.names if isinstance(node, ast.Import) else node.names[:1])
    }
    third_party = {name for name in imported if name in distributions and name not in sys.stdlib_module_names}
    needed = {dist.lower().replace("_", "-") for name in third_party for dist in distributions[name]}
    assert "kubernetes-validate" in needed and "pulumi" in needed
    assert needed - installed_with(pins("requirements.txt")) == set()


def installed_with(pinned: set[str]) -> set[str]:
    """The distributions pip installs for `pinned`: them and what they require, transitively (extras left out)."""
    found, pending = set(), list(pinned)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        try:
            requirements = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # a requirement whose environment marker does not hold here
        found.add(name)
        for requirement in requirements:
            if "extra ==" not in requirement:
                pending.append(re.sub(r"[-_.]+", "-", re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]).lower())
    return found


LOCKS = {"requirements.txt": "requirements.in", "requirements-build.txt": "requirements-build.in", "requirements-test.txt": "requirements-test.in",
         ".ci/uv.txt": ".ci/uv.in"}


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_no_dependency_floats_into_an_install(lock: str) -> None:
    """The attack: a new release of a package the pins only depend on (grpcio, semver, protobuf's
    users...) is on PyPI, and the next deploy job, which holds the deploy role, Vault's deploy token
    and Pulumi Cloud's, installs it. A lock pins every package pip installs for it, at one version."""
    locked = pins(lock) | (pins("requirements.txt") if lock != "requirements.txt" else set())
    assert installed_with(locked) - locked == set()


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_every_locked_package_names_the_hashes_of_its_files(lock: str) -> None:
    # pip then installs those bytes or nothing: not a file re-uploaded under a new platform tag, nor
    # what a poisoned pip cache holds for that version.
    entries = re.split(r"\n(?=[A-Za-z])", (ROOT / lock).read_text().split("\n", 2)[2])
    assert len(entries) == len(pinned(lock)) >= 1
    unhashed = [entry.split()[0] for entry in entries if not re.search(r"--hash=sha256:[0-9a-f]{64}", entry)]
    assert unhashed == []


@pytest.mark.parametrize("lock", sorted(LOCKS))
def test_a_lock_keeps_the_exact_versions_its_input_pins(lock: str) -> None:
    wanted, locked = pinned(LOCKS[lock]), pinned(lock)
    assert {name: version for name, version in wanted.items() if locked.get(name) != version} == {}


@pytest.mark.parametrize("lock", ["requirements-build.txt", "requirements-test.txt"])
def test_the_other_locks_take_the_program_locks_versions(lock: str) -> None:
    program, other = pinned("requirements.txt"), pinned(lock)
    shared = program.keys() & other.keys()
    assert shared and {name for name in shared if program[name] != other[name]} == set()


def test_every_install_is_checked_and_builds_with_the_locked_setuptools(venv: tuple[Path, Path]) -> None:
    """The attack: pulumiverse-harbor and pulumiverse-time are sources only on PyPI (a setup.py). pip builds them in an
    isolated environment into which it installs the newest setuptools PyPI serves, unpinned and not hash-checked, and
    runs it: in the deploy job, with the deploy role. So .ci/install puts the locked setuptools in first, checked, and
    builds with it; the pipeline's jobs and the merge-request bot install only through .ci/install."""
    from components.merge_request_bot import CI_TEMPLATE

    path, log = venv
    _install(path, "--tests")
    calls = [line.split() for line in log.read_text().splitlines()]
    assert [call[-1].rsplit("/", 1)[-1] for call in calls] == TEST_SET
    assert all("install" in call and "--require-hashes" in call for call in calls)
    build, program, tests, opa = calls
    assert "--no-deps" in build and "--no-build-isolation" in program and "--no-build-isolation" in tests
    assert "--no-deps" in opa  # one wheel, nothing to build
    # The lock tool too: .ci/lock installs uv from its own lock.
    assert '"$tool/bin/pip" install --quiet --disable-pip-version-check --require-hashes -r .ci/uv.txt' in (ROOT / ".ci" / "lock").read_text()
    for pipeline in (ROOT / ".gitlab-ci.yml", CI_TEMPLATE):
        lines = pipeline.read_text().splitlines()
        assert not [line for line in lines if re.search(r"\bpip3? install|-m pip\b", line)], pipeline
        assert [line for line in lines if ".ci/install" in line and not line.lstrip().startswith("#")], pipeline


@pytest.fixture()
def venv(tmp_path: Path) -> tuple[Path, Path]:
    """A virtualenv stand-in: python exists, pip logs what it was asked to install."""
    log = tmp_path / "pip.log"
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "pip").write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    for tool in ("python", "pip"):
        (bin_dir / tool).chmod(0o755)
    return tmp_path / "venv", log


def _install(venv: Path, *flags: str) -> None:
    subprocess.run([str(INSTALL), *flags, str(venv)], cwd=ROOT, check=True, timeout=60, env=os.environ)


def _installed(log: Path) -> list[str]:
    text = log.read_text() if log.exists() else ""
    log.unlink(missing_ok=True)
    return sorted(Path(m).name for m in re.findall(r"-r (\S+)", text))


def test_render_only_install_leaves_out_the_test_pins_and_a_warm_one_installs_nothing(venv: tuple[Path, Path]) -> None:
    path, log = venv
    _install(path)
    assert _installed(log) == RENDER_SET
    _install(path)
    assert _installed(log) == []  # warm: nothing changed
    _install(path, "--tests")
    assert _installed(log) == sorted(TEST_SET)
    _install(path, "--tests")
    _install(path)
    assert _installed(log) == []


def test_a_changed_requirement_file_is_installed_again(venv: tuple[Path, Path]) -> None:
    path, log = venv
    _install(path, "--tests")
    _installed(log)
    stamp = path / ".requirements.sha256"
    stamp.write_text(stamp.read_text().replace(" ", "0 ", 1))  # requirements.txt's hash no longer matches
    _install(path)
    assert _installed(log) == RENDER_SET
    _install(path, "--tests")
    assert _installed(log) == []
