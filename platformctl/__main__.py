"""`python -m platformctl <command>`: render, diff and comment on the offline plan; check access requests and backups; the merge-request bot."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

# The program's packages (stacks, components) live beside platformctl.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COMMANDS = ("render", "diff", "comment", "access", "charts", "mrbot", "backups")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m platformctl", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    # Only the command's own module when it is named: `charts fetch` need not import the program.
    for name in [c for c in COMMANDS if argv[:1] == [c]] or COMMANDS:
        importlib.import_module(f"platformctl.{name}").register(subparsers)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    # `platformctl render | head` should stop quietly, like any Unix tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code = main()
    # Everything is written and closed: leave without freeing a render's objects one by one at
    # interpreter exit, which cost about 0.9 s CPU after a dev render.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
