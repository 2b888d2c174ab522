"""Command line: ``python -m mltasks <command> ...``.

Every module in ``mltasks/commands`` that defines ``register(subparsers)`` adds one
or more sub-commands; ``register`` sets ``func`` on its parser, which receives the
parsed arguments and returns an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from mltasks import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mltasks", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
