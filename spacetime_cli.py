"""The ``spacetime`` command: curate, recaption, train, generate, report, demo.

Each stage package exposes ``register(subparsers)``, which adds its sub-command(s) and
sets ``func`` (``args -> exit code``) as the parser default.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# module, in the order the sub-commands are listed in --help
_COMMAND_MODULES = ("curate.cli", "recaption.cli", "train.cli", "report.cli", "common.demo")

log = logging.getLogger("spacetime")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="spacetime",
        description=(
            "Turn raw footage into a text-to-video training set and train a video diffusion "
            "transformer on it. Start with `spacetime demo` (offline, one machine)."
        ),
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
