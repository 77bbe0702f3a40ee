"""The ``gradnap`` command line: every option of every subcommand is documented."""

import argparse

from gradnap.cli import HelpFormatter, build_parser, iter_parsers


def options():
    """``(command, action)`` of every argument of every (sub)command but -h and --version."""
    for path, parser in iter_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                continue
            yield " ".join(("gradnap", *path)), action


def test_walk_reaches_every_subcommand():
    commands = {" ".join(path) for path, _ in iter_parsers(build_parser())}
    assert {"collect", "corpus synth", "plot action", "report", "demo"} <= commands


def test_every_option_has_help_and_shows_its_default():
    formatter = HelpFormatter("gradnap")
    missing, no_default = [], []
    for command, action in options():
        name = action.option_strings[-1] if action.option_strings else action.dest
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{command} {name}")
        elif action.option_strings and action.nargs != 0 and not action.required:
            if "(default" not in formatter._get_help_string(action):
                no_default.append(f"{command} {name}")
    assert missing == [], "options without help"
    assert no_default == [], "options whose help does not say their default"


def test_every_help_renders():
    for path, parser in iter_parsers(build_parser()):
        text = parser.format_help()  # a stray % in a help string raises here
        assert isinstance(parser.formatter_class, type)
        assert issubclass(parser.formatter_class, HelpFormatter), path
        assert "usage: gradnap" in text


def test_defaults_are_shown_in_help():
    parsers = dict(iter_parsers(build_parser()))
    text = " ".join(parsers[("report",)].format_help().split())
    assert "--percentile PERCENTILE" in text or "--percentile" in text
    assert "(default: 85.0)" in text and "(default: phoneme)" in text
    collect = " ".join(parsers[("collect",)].format_help().split())
    assert "(default: default)" in collect  # --model, the shipped checkpoint
