"""TrainConfig: YAML sets, flags override, bad keys and values fail with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from sculpt.cli.main import main
from sculpt.configs import field_docs
from sculpt.errors import UserError
from sculpt.train.config import TrainConfig, load_config


def _yaml(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_yaml_sets_and_flags_override(tmp_path):
    path = _yaml(tmp_path, "dataset: demo\nbeta: 0.2\nfinetune: full\nmax_steps: 10\n")
    config = load_config(path, {"max-steps": "25", "beta": "0.05", "plan": "none"})
    assert (config.dataset, config.finetune, config.max_steps, config.beta) == (
        "demo",
        "full",
        25,
        0.05,
    )
    assert config.plan is None


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        ("dataset: demo\nlr: 0.1\n", {}, "unknown key 'lr'"),
        ("dataset: demo\n", {"max_step": "3"}, "did you mean 'max_steps'"),
        ("dataset: demo\nmax_steps: lots\n", {}, "max_steps='lots': expected a number"),
        ("dataset: demo\n", {"max_steps": "2.5"}, "expected a whole number"),
        ("dataset: demo\nfinetune: qlora\n", {}, "finetune='qlora': expected one of lora, full"),
        ("dataset: demo\nholdout: 1.5\n", {}, "holdout=1.5: pass a share in [0, 1)"),
        ("- a\n- b\n", {}, "expected a mapping"),
    ],
)
def test_config_errors_say_what_and_how(tmp_path, text, flags, message):
    with pytest.raises(
        UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        load_config(_yaml(tmp_path, text), flags)


def test_every_field_has_help_and_the_cli_reports_errors(tmp_path, capsys):
    docs = field_docs(TrainConfig)
    assert set(docs) == set(TrainConfig.__dataclass_fields__)
    assert main(["train", "--config", str(_yaml(tmp_path, "datset: x\n"))]) == 2
    assert "unknown key 'datset'; did you mean 'dataset'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "DPO temperature" in capsys.readouterr().out


def test_the_sample_config_in_examples_loads() -> None:
    sample = Path(__file__).resolve().parents[1] / "examples" / "run.yaml"
    config = load_config(sample, {"max_steps": "3"})
    assert (config.dataset, config.plan, config.finetune, config.max_steps) == (
        "demo",
        "plan.yaml",
        "lora",
        3,
    )
