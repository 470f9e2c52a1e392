"""What commands print: tables that fit, rounded numbers, data text shown and never obeyed."""

from __future__ import annotations

import io
import json

import pytest

from sculpt.cli.main import main
from sculpt.cli.output import human_bytes, json_line, print_rows, print_table
from sculpt.errors import UserError

HOSTILE = "x\x1b]0;pwned\x07\x1b[2J\x1b[6n\x9b1m\u202eevil\x00"


def test_a_table_fits_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = io.StringIO()
    rows = [[i, "concept-" + "x" * 60, "a label " * 12, 0.123456, 23.391] for i in range(3)]
    print_table(["#", "concept_id", "label", "delta", "d"], rows, out)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), max(map(len, lines))
    assert "0.123" in lines[2] and "0.123456" not in lines[2] and "23.391" in lines[2]


def test_table_and_csv_cells_show_control_characters():
    out = io.StringIO()
    print_table(["text"], [[HOSTILE]], out)
    shown = out.getvalue()
    assert "\x1b" not in shown and "\x9b" not in shown and "\u202e" not in shown
    assert "\x00" not in shown and "␛]0;pwned" in shown


def test_json_escapes_what_a_terminal_would_obey_and_reads_back_the_same():
    line = json_line({"text": HOSTILE, "label": "日本語 ✓"})
    assert "\x1b" not in line and "\x9b" not in line and "\u202e" not in line
    assert "日本語 ✓" in line
    assert json.loads(line)["text"] == HOSTILE
    out = io.StringIO()
    print_rows(["text"], [{"text": HOSTILE}], "json", out)
    assert json.loads(out.getvalue())["text"] == HOSTILE


def test_human_sizes():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KB"
    assert human_bytes(3 * 1024**3) == "3.0 GB"


def test_an_error_quoting_data_shows_it(monkeypatch, capsys, tmp_path):
    def fail(args):
        raise UserError(f"--map chosen={HOSTILE}: no such column")

    import sculpt.cli.lake as lake_cli

    monkeypatch.setattr(lake_cli, "cmd_ls", fail)
    assert main(["lake", "ls", "--lake", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x00" not in err and "␛" in err


def test_a_mistyped_command_gets_did_you_mean(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyse", "demo"])
    assert exit_info.value.code == 2
    assert "did you mean 'analyze'?" in capsys.readouterr().err


def test_an_unknown_flag_shows_the_subcommand_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--lr", "1e-4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: sculpt train" in err and "unrecognized arguments: --lr 1e-4" in err
    with pytest.raises(SystemExit):
        main(["hypotheses", "demo", "--tpo", "3"])
    assert "did you mean '--top'?" in capsys.readouterr().err


def test_an_error_is_one_line_even_when_a_library_breaks_lines():
    from sculpt.cli.main import one_line

    assert (
        one_line("x.parquet: not readable (Invalid data\n)\n")
        == "x.parquet: not readable (Invalid data )"
    )
    assert "\n" not in one_line("a\r\n\tb") and "\x1b" not in one_line("\x1b[2J")
