"""`python -m platformctl <command>`: render, diff and comment on the offline plan; check access requests."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

# The program's packages (stacks, components) live beside platformctl.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from platformctl import access, charts, comment, diff, render  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m platformctl", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (render, diff, comment, access, charts):
        module.register(subparsers)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    # `platformctl render | head` should stop quietly, like any Unix tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
