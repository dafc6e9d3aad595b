"""`platformctl charts`: the pinned chart sources, fetched into a local directory and verified.

The pins (chart, repository, version) are `components.versions.CHARTS`; `charts.lock` in the
repository records a content digest per pinned chart. `charts fetch` fills the local charts
directory (`build/charts/<chart>/<version>/`, or $PLATFORM_CHARTS_DIR) from the upstream
repositories or from a mirror folder of chart directories (`--from-dir`; a chart the mirror lacks
is taken from `charts/vendor/`, the sources this repository carries as test data, see its
SOURCES.md), and refuses a chart whose content differs from its lock; `charts lock` records the digests of what is there now.
`platformctl render` and the air-gapped install (`platform:charts.localDir`) read the same
directory, and every load checks the digest, so what is installed is what the tests rendered.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from components.versions import CHARTS, Chart

ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = ROOT / "charts.lock"
DEFAULT_DIR = ROOT / "build" / "charts"
VENDOR_DIR = ROOT / "charts" / "vendor"
ENV_DIR = "PLATFORM_CHARTS_DIR"


class ChartError(Exception):
    """A chart source is missing, unlocked or not what its lock says; the message says which."""


def charts_dir() -> Path:
    """The local charts directory: $PLATFORM_CHARTS_DIR, else build/charts in the repository."""
    return Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)


def chart_path(chart: str, version: str, base: Path | None = None) -> Path:
    return (base or charts_dir()) / chart / version


def digest(directory: Path) -> str:
    """sha256 over every file's relative path and content, in path order (independent of mtimes and modes)."""
    outer = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        outer.update(f"{relative}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return f"sha256:{outer.hexdigest()}"


def _key(chart: str, version: str) -> str:
    return f"{chart}@{version}"


def read_lock(lock_file: Path = LOCK_FILE) -> dict[str, dict[str, str]]:
    try:
        return json.loads(lock_file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise ChartError(f"{lock_file}: not a chart lock ({err})") from None


def write_lock(entries: dict[str, dict[str, str]], lock_file: Path = LOCK_FILE) -> None:
    lock_file.write_text(json.dumps(dict(sorted(entries.items())), indent=1, sort_keys=True) + "\n")


def verified(chart: str, version: str, base: Path | None = None, lock: dict[str, dict[str, str]] | None = None) -> Path | None:
    """The local directory of chart@version after checking it against the lock; None when not fetched.

    Raises ChartError when it is there but unlocked or different from its lock.
    """
    path = chart_path(chart, version, base)
    if not (path / "Chart.yaml").is_file():
        return None
    _check(path, chart, version, read_lock() if lock is None else lock)
    return path


def _check(directory: Path, chart: str, version: str, lock: dict[str, dict[str, str]]) -> None:
    """Raise ChartError unless `directory` holds exactly what the lock records for chart@version."""
    entry = lock.get(_key(chart, version))
    if entry is None:
        raise ChartError(f"{chart} {version} in {directory} is not in {LOCK_FILE.name}: run `python -m platformctl charts lock`")
    found = digest(directory)
    if found != entry["digest"]:
        raise ChartError(
            f"{chart} {version} in {directory} differs from {LOCK_FILE.name} (locked {entry['digest']}, found {found}): "
            "a chart changed under the same version; fetch it again, or re-lock with `python -m platformctl charts lock` "
            "after reviewing the change"
        )


def pinned_charts() -> list[Chart]:
    """Every chart a Helm release installs (kube-oidc-proxy's chart is not installed: the program declares its objects)."""
    return [chart for key, chart in sorted(CHARTS.items()) if key != "kube-oidc-proxy"]


def _chart_yaml_version(directory: Path) -> tuple[str, str]:
    meta = yaml.safe_load((directory / "Chart.yaml").read_text()) or {}
    return str(meta.get("name")), str(meta.get("version"))


def _install(source: Path, target: Path) -> None:
    """Copy a chart directory into place through a temporary sibling, so a failed copy leaves nothing half-written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        shutil.copytree(source, staging / "chart", symlinks=False)
        if target.exists():
            shutil.rmtree(target)
        (staging / "chart").rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_from_dir(mirror: Path, base: Path | None = None, check: bool = True) -> list[str]:
    """Copy each pinned chart from `mirror/<chart>/`, else `charts/vendor/<chart>/` (its Chart.yaml must name the
    pinned version); returns report lines.

    With `check`, a chart whose local copy already is what the lock records is left as it is
    (the source is checked too, so a mirror that changed is still refused).
    """
    lock = read_lock()
    lines = []
    for chart in pinned_charts():
        source = next((d / chart.chart for d in (mirror, VENDOR_DIR) if (d / chart.chart / "Chart.yaml").is_file()), None)
        if source is None:
            raise ChartError(f"{mirror}: no chart directory {chart.chart}/, nor in {VENDOR_DIR} (pinned {chart.chart} {chart.version})")
        name, version = _chart_yaml_version(source)
        if (name, version) != (chart.chart, chart.version):
            raise ChartError(f"{source}: Chart.yaml says {name} {version}, the pin is {chart.chart} {chart.version}")
        target = chart_path(chart.chart, chart.version, base)
        if check:
            _check(source, chart.chart, chart.version, lock)  # before copying anything of it
            locked = lock[_key(chart.chart, chart.version)]["digest"]
            if (target / "Chart.yaml").is_file() and digest(target) == locked:
                lines.append(f"{chart.chart} {chart.version}: {target} (already there, {locked})")
                continue
        _install(source, target)
        lines.append(f"{chart.chart} {chart.version}: {target} ({digest(target)})")
    return lines


def fetch_from_repositories(base: Path | None = None) -> list[str]:
    """`helm pull --untar` of each pinned chart from its repository (helm-python-sdk), then verify it against the lock."""
    from helm_python import registry

    lines = []
    for chart in pinned_charts():
        target = chart_path(chart.chart, chart.version, base)
        with tempfile.TemporaryDirectory() as work:
            ref = f"{chart.repo.rstrip('/')}/{chart.chart}" if chart.repo.startswith("oci://") else chart.chart
            registry.pull(
                ref, version=chart.version, repo_url=None if chart.repo.startswith("oci://") else chart.repo,
                untar=True, untar_dir=work, destination=work,
            )
            _install(Path(work) / chart.chart, target)
        verified(chart.chart, chart.version, base)
        lines.append(f"{chart.chart} {chart.version}: {target} ({digest(target)})")
    return lines


def lock(base: Path | None = None) -> list[str]:
    """Record the digest of every pinned chart present in the local charts directory."""
    entries = read_lock()
    lines = []
    for chart in pinned_charts():
        path = chart_path(chart.chart, chart.version, base)
        if not (path / "Chart.yaml").is_file():
            raise ChartError(f"{chart.chart} {chart.version}: not in {path.parent}; fetch it before locking")
        new = digest(path)
        old = entries.get(_key(chart.chart, chart.version), {}).get("digest")
        entries[_key(chart.chart, chart.version)] = {"chart": chart.chart, "version": chart.version, "repo": chart.repo, "digest": new}
        lines.append(f"{chart.chart} {chart.version}: {new}" + ("" if old in (None, new) else f" (was {old})"))
    pinned = {_key(c.chart, c.version) for c in pinned_charts()}
    write_lock({k: v for k, v in entries.items() if k in pinned})
    return lines


def run(args: argparse.Namespace) -> int:
    base = Path(args.charts_dir) if args.charts_dir else None
    try:
        if args.action == "lock":
            lines = (fetch_from_dir(Path(args.from_dir), base, check=False) if args.from_dir else []) + lock(base)
        elif args.from_dir:
            lines = fetch_from_dir(Path(args.from_dir), base)
        else:
            lines = fetch_from_repositories(base)
    except ChartError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 helm-python-sdk's errors (network, repository) end the command cleanly
        print(f"error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("charts", help="fetch the pinned chart sources into the local charts directory, or re-lock them")
    parser.add_argument("action", choices=("fetch", "lock"))
    parser.add_argument("--from-dir", help="copy from this mirror folder of chart directories instead of the repositories")
    parser.add_argument("--charts-dir", help=f"local charts directory (default: ${ENV_DIR} or build/charts)")
    parser.set_defaults(run=run)
