"""Every command has help and an `Example:`; `sculpt --help` works and stays light."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from sculpt.cli.main import build_parser, main


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"sculpt {' '.join((*path, name))}: no help line"
                yield from _walk(sub, (*path, name))


def test_every_command_has_help_and_an_example():
    commands = list(_walk(build_parser()))
    names = {" ".join(path) for path, _ in commands}
    assert {"ingest", "lake", "lake ls", "lake sql", "demo-data", "env"} <= names
    problems = []
    for path, parser in commands:
        label = " ".join(("sculpt", *path))
        if not parser.epilog or "sculpt" not in parser.epilog.partition("Example:")[2]:
            problems.append(f"{label}: no `Example: sculpt …` in its epilog")
        try:
            text = parser.format_help()  # argparse %-formats help strings: a bare % breaks --help
        except (ValueError, TypeError, KeyError) as exc:
            problems.append(f"{label} --help fails: {exc}")
            continue
        if path and not parser.description:
            problems.append(f"{label}: no description")
        if "Example:" not in text:
            problems.append(f"{label}: --help shows no Example")
    assert problems == []


def test_sculpt_help_works(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "ingest" in out and "Example:" in out


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from sculpt.cli.main import build_parser; build_parser(); "
        "print([m for m in ('torch', 'transformers', 'sae_lens', 'trl', 'textual', 'jinja2') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_env_reports_versions_and_device(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in (
        "python",
        "torch",
        "transformers",
        "sae-lens",
        "trl",
        "textual",
        "duckdb",
        "pyarrow",
        "peft",
        "device",
        "cpu_cores",
    ):
        assert info.get(key), key
    assert info["device"].startswith(("cpu", "cuda", "mps"))
    assert main(["env", "--json", "--torch"]) == 0
    assert json.loads(capsys.readouterr().out)["device"].startswith(("cpu", "cuda", "mps"))
