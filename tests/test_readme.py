"""The README agrees with the code: its command table with ``gradnap --help``, its Python
snippet with the library (run on a small result)."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from gradnap.cli import build_parser, iter_parsers

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(gradnap [^`]+)` \| (.*) \|$", re.M)
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def rows() -> list[tuple[str, str]]:
    """``(usage, description)`` of the README's command table."""
    return ROW.findall(README.read_text())


def leaf_commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable (sub)command: the parsers without subcommands of their own."""
    return {
        path: parser
        for path, parser in iter_parsers(build_parser())
        if path and not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    }


def check_usage(usage: str, description: str) -> tuple[tuple[str, ...], list[str]]:
    """The command a README row names and what is wrong with the row: options the command
    lacks, required options or positional arguments the row leaves out."""
    words = shlex.split(usage.replace("[", " ").replace("]", " "))[1:]
    path: list[str] = []
    parser = build_parser()
    while words and not words[0].startswith("-"):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or words[0] not in subs[0].choices:
            break
        parser = subs[0].choices[words[0]]
        path.append(words.pop(0))
    problems, seen, placeholders = [], set(), 0
    while words:
        word = words.pop(0)
        if not word.startswith("-"):
            placeholders += 1
            continue
        action = parser._option_string_actions.get(word)
        if action is None:
            problems.append(f"{word} is not an option of gradnap {' '.join(path)}")
            continue
        seen.add(action.dest)
        if action.nargs in ("*", "+"):
            while words and not words[0].startswith("-"):
                words.pop(0)
        elif action.nargs != 0 and words:
            words.pop(0)
    for action in parser._actions:
        if action.required and action.option_strings and action.dest not in seen:
            problems.append(f"leaves out the required {action.option_strings[0]}")
    positionals = [a for a in parser._actions if not a.option_strings]
    if placeholders < len(positionals):
        problems.append(f"names {placeholders} of {len(positionals)} positional arguments")
    for word in OPTION.findall(description):
        if word not in parser._option_string_actions:
            problems.append(f"its description names {word}, not an option of the command")
    return tuple(path), problems


def test_command_table_matches_help():
    table = rows()
    assert len(table) >= 10
    problems = {usage: check_usage(usage, what)[1] for usage, what in table}
    assert {u: p for u, p in problems.items() if p} == {}
    documented = {check_usage(usage, what)[0] for usage, what in table}
    assert set(leaf_commands()) - documented == set(), "commands without a README row"


def test_check_usage_catches_what_it_should():
    assert check_usage("gradnap plot action RESULT --out F", "")[1] == [
        "leaves out the required --group",
        "leaves out the required --layer",
    ]
    assert check_usage("gradnap merge --out F --nope", "`--resume`")[1] == [
        "--nope is not an option of gradnap merge",
        "names 0 of 1 positional arguments",
        "its description names --resume, not an option of the command",
    ]


def test_every_option_the_readme_names_exists():
    known = {
        option
        for _, parser in iter_parsers(build_parser())
        for option in parser._option_string_actions
    }
    # torchrun's own options (before "-m gradnap") are torchrun's, not gradnap's
    text = re.sub(r"torchrun .*?-m gradnap", "", README.read_text())
    assert set(OPTION.findall(text)) - known == set()


# --- the Python snippet ---------------------------------------------------------------------


def python_snippet() -> str:
    text = README.read_text()
    section = text[text.index("## Python") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_python_snippet_runs_on_a_small_result(tmp_path, monkeypatch):
    """The snippet as written, on a small corpus with the phoneme AE, a tiny model, and the
    demo's random-label groupings collected too (their labels must not make "AE"
    ambiguous)."""
    import matplotlib

    matplotlib.use("Agg")
    import gradnap
    from gradnap.report.demo import chance_groupings
    from helpers import tiny_model, write_corpus

    write_corpus(tmp_path / "my_corpus", n=3, seconds=1.0, phones=("SIL", "AE", "T", "AE"))
    model = tiny_model()
    monkeypatch.setattr(gradnap, "load_model", lambda name: model)

    class DemoLike(gradnap.GradNAP):
        """Adds the demo's chance groupings; small groups count (a small corpus)."""

        def __init__(self, model, **options):
            corpus = gradnap.read_corpus(tmp_path / "my_corpus")
            options["groupings"] = (*options["groupings"], *chance_groupings(corpus))
            super().__init__(model, min_count=1, **options)

    monkeypatch.setattr(gradnap, "GradNAP", DemoLike)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_snippet(), str(README), "exec"), namespace)
    result = namespace["result"]
    assert {"phoneme", "chance_phoneme"} <= set(result.groupings)
    assert "AE" in result.labels("chance_phoneme")
    assert namespace["profile"].shape == result.profile("layer2", "AE", "phoneme").shape
    assert (tmp_path / "run.npz").is_file() and namespace["fig"] is not None
