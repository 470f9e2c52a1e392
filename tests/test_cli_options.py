"""Command flags come from the config dataclasses: one definition of each setting and its help."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sculpt.analysis.config import AnalyzeConfig
from sculpt.audit import AuditConfig
from sculpt.cli.main import build_parser, main
from sculpt.cli.options import config_from_args
from sculpt.configs import field_docs
from sculpt.errors import UserError
from sculpt.sae.config import SaeTrainConfig
from sculpt.scan.config import ScanConfig, default_layer
from sculpt.train.config import TrainConfig


def _sub(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


@pytest.mark.parametrize(
    ("path", "cls", "skip"),
    [
        (("scan",), ScanConfig, {"share_prefix"}),
        (("sae", "train"), SaeTrainConfig, set()),
        (("analyze",), AnalyzeConfig, set()),
        (("train",), TrainConfig, set()),
    ],
)
def test_every_config_field_is_a_flag_whose_help_is_its_docstring(path, cls, skip):
    flags = _flags(_sub(*path))
    docs = field_docs(cls)
    for item in dataclasses.fields(cls):
        if item.name in skip:
            continue
        flag = "--" + item.name.replace("_", "-")
        assert flag in flags, f"sculpt {' '.join(path)}: no {flag} for {cls.__name__}.{item.name}"
        first_words = " ".join(docs[item.name].split()[:3])
        assert first_words in " ".join(flags[flag].help.split()), flag


def test_help_states_the_code_defaults():
    help_text = " ".join(_sub("scan").format_help().split())
    assert "2048 on CPU" in help_text and "4096 on CPU" not in help_text
    assert "95% CI" in " ".join(_sub("hypotheses").format_help().split())


def test_audit_nests_the_stage_configs():
    args = _sub("audit").parse_args(
        [
            "data.jsonl",
            "--name",
            "x",
            "--layer",
            "3",
            "--max-tokens",
            "64",
            "--sae-width",
            "512",
            "--n-boot",
            "200",
            "--seed",
            "7",
            "--format",
            "hh",
        ]
    )
    from sculpt.cli.report import audit_config

    config = audit_config(args)
    assert config.scan.layer == 3
    assert config.scan.max_prompt_tokens == config.scan.max_response_tokens == 64
    assert (
        config.sae_train.width == 512 and config.sae_train.epochs == AuditConfig().sae_train.epochs
    )
    assert config.analyze.n_boot == 200
    assert config.scan.seed == config.sae_train.seed == config.analyze.seed == 7
    assert config.fmt == "hh"


def test_a_bad_value_names_the_flag():
    args = _sub("analyze").parse_args(["toy", "--n-boot", "many"])
    with pytest.raises(UserError, match="--n-boot many"):
        config_from_args(AnalyzeConfig, args, dest="analyze", command="analyze")
    args = _sub("analyze").parse_args(["toy", "--n-boot", "10"])
    with pytest.raises(UserError, match="n_boot must be"):
        config_from_args(AnalyzeConfig, args, dest="analyze", command="analyze")


def test_bad_flag_value_is_one_line_exit_2(tmp_path, capsys):
    assert main(["analyze", "toy", "--lake", str(tmp_path), "--n-boot", "many"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--n-boot" in err


def test_one_default_layer_rule():
    assert ScanConfig().layer is None and AuditConfig().scan.layer is None
    assert default_layer(30) == 15  # SmolLM2-135M: the layer the docs and examples read
    from sculpt.scan.models import tiny_model

    loaded = tiny_model(n_layers=4)
    assert loaded.check_layer(None) == default_layer(4) == 2


@pytest.mark.parametrize("command", [["triage", "nope"], ["plan", "nope", "-o", "plan.yaml"]])
def test_a_dataset_not_in_the_lake_is_exit_2(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err.strip()
    assert "'nope': not in lake" in err and err.count("\n") == 0
    assert not (tmp_path / "plan.yaml").exists()
