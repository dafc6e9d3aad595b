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
RENDER_SET = ["requirements.txt"]
TEST_SET = ["requirements.txt", "requirements-test.txt", "requirements-opa.txt"]


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


def test_every_test_only_pin_stays_out_of_the_render_set() -> None:
    def pins(name: str) -> set[str]:
        return {line.split("==")[0].lower() for line in (ROOT / name).read_text().splitlines() if "==" in line and not line.startswith("#")}

    render, tests = pins("requirements.txt"), pins("requirements-test.txt") | pins("requirements-opa.txt")
    assert {"pytest", "hypothesis", "opa-golib-python-bindings"} <= tests and not render & tests


def test_the_render_set_pins_every_package_the_program_and_platformctl_import() -> None:
    # ./quickstart installs requirements.txt alone: an import only the test set provides breaks it.
    def pins(name: str) -> set[str]:
        return {line.split("==")[0].lower().replace("_", "-") for line in (ROOT / name).read_text().splitlines() if "==" in line and not line.startswith("#")}

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
                pending.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return found


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
