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
from collections.abc import Iterator

from gradnap._version import __version__
from gradnap.errors import GradnapError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, ``(default: X)``, unless the help already
    says it (``"(default"`` in the text: a computed default, in words), the option takes no
    value (a flag) or its default is ``None`` (then the help says what happens)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "(default" in text
            or not action.option_strings
            or action.nargs == 0
            or action.default is None
            or action.default is argparse.SUPPRESS
        ):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The ``gradnap`` parser and, through ``add_subparsers``, every subcommand's: all of
    them show every option's default (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def iter_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``(command words, parser)`` of ``parser`` and every subcommand under it, depth first:
    ``((), gradnap)``, ``(("collect",), ...)``, ``(("corpus", "synth"), ...)``..."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from iter_parsers(sub, (*path, name))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
