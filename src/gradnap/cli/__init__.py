"""The ``gradnap`` command line.

Each module in this package that defines ``register(subparsers)`` adds one subcommand;
the subcommand's handler takes the parsed arguments and returns an exit status.
User errors (:class:`~gradnap.errors.GradnapError`) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from gradnap._version import __version__
from gradnap.errors import GradnapError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradnap",
        description="Gradient-adjusted Neuron Activation Profiles for speech recognition models.",
    )
    parser.add_argument("--version", action="version", version=f"gradnap {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except GradnapError as exc:
        print(f"gradnap: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradnap: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
