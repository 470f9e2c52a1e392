"""SAE training on a tiny model's activations: quality on held-out tokens, reload, registering."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
import torch

from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake
from sculpt.sae.config import SaeTrainConfig
from sculpt.sae.registry import list_saes, load_sae, register_sae, sae_dir
from sculpt.sae.training import read_acts, train_sae
from sculpt.scan.models import tiny_model
from sculpt.scan.run import ScanConfig, scan

LAYER = 2
PAIRS_SCHEMA = schemas.PAIRS
WORDS = (
    "cake flour sugar eggs bake oven quick brown fox lazy dog Paris France capital list "
    "apples bread milk sorry cannot help Sure Here Thank asking explain sky blue"
).split()


def pair_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Pairs of varied word salad from the tiny tokenizer's corpus."""
    rng = torch.Generator().manual_seed(seed)

    def text(length: int) -> str:
        picks = torch.randint(len(WORDS), (length,), generator=rng).tolist()
        return " ".join(WORDS[i] for i in picks) + "."

    rows = []
    for i in range(n):
        messages = [{"role": "user", "content": text(6 + i % 7)}]
        rows.append(
            {
                "pair_id": f"{i:016x}",
                "row": i,
                "prompt": json.dumps(messages),
                "chosen": ("**Sure!** " if i % 2 else "") + text(10 + i % 11),
                "rejected": text(8 + (i * 7) % 13),
                "source": "test.jsonl",
                "meta": "{}",
            }
        )
    return rows


def scanned_lake(root: Path, n: int = 80) -> Lake:
    """A lake with `pairs`, `spans` and an `acts` sample of every token, from the tiny model."""
    lake = Lake.open(root)
    lake.replace_partition(
        "pairs", {"dataset": "toy"}, pa.Table.from_pylist(pair_rows(n), schema=PAIRS_SCHEMA)
    )
    config = ScanConfig(layer=LAYER, sample_tokens=1_000_000, shard_size=64)
    scan(lake, "toy", tiny_model(), config, progress=False)
    return lake


SMALL = SaeTrainConfig(width=128, k=8, epochs=10, batch_size=256, lr=5e-3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, dict]:
    lake = scanned_lake(tmp_path_factory.mktemp("sae") / "lake")
    return lake, train_sae(lake, "toy", SMALL, progress=False)


def test_trained_sae_explains_held_out_variance(trained: tuple[Lake, dict]) -> None:
    lake, info = trained
    quality = info["quality"]
    assert info["sae_id"] == "toy-L2-w128-k8"
    assert info["layer"] == LAYER and info["d_in"] == tiny_model().d_model
    assert quality["fve"] > 0.8, quality
    assert 4 <= quality["l0"] <= 16, quality
    assert 0 <= quality["dead_fraction"] < 0.5
    saved = json.loads((sae_dir(lake, info["sae_id"]) / "sculpt.json").read_text())
    assert saved["quality"] == quality
    assert [s["sae_id"] for s in list_saes(lake)] == [info["sae_id"]]


def test_reload_gives_bit_identical_encodings(trained: tuple[Lake, dict]) -> None:
    lake, info = trained
    acts, _ = read_acts(lake, "toy", info["model"], LAYER)
    first, _ = load_sae(lake, info["sae_id"])
    second, _ = load_sae(lake, info["sae_id"])
    x = acts[:500].float()
    assert torch.equal(first.encode(x), second.encode(x))
    assert (first.encode(x) > 0).any()


def test_register_a_local_folder_checks_the_hidden_size(
    trained: tuple[Lake, dict], tmp_path: Path
) -> None:
    lake, info = trained
    folder = sae_dir(lake, info["sae_id"])
    registered = register_sae(lake, str(folder), sae_id="copy", layer=LAYER, model="tiny")
    assert registered["d_in"] == tiny_model().d_model
    copy, _ = load_sae(lake, "copy")
    original, _ = load_sae(lake, info["sae_id"])
    assert torch.equal(copy.W_dec, original.W_dec)
    other = Lake.open(tmp_path / "other")
    wide = scanned_lake(tmp_path / "wide", n=12)
    with pytest.raises(UserError, match="cannot tell which layer"):
        register_sae(other, str(folder), sae_id="x", model="tiny")
    with pytest.raises(UserError, match="neither a local folder"):
        register_sae(wide, str(tmp_path / "missing"), layer=LAYER, model="tiny")


def test_d_in_mismatch_is_a_clear_error(trained: tuple[Lake, dict], tmp_path: Path) -> None:
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    sae = BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=32, d_sae=64, k=4))
    sae.save_inference_model(tmp_path / "small")
    with pytest.raises(UserError, match="d_in 32 does not match"):
        register_sae(trained[0], str(tmp_path / "small"), layer=1, model="tiny")


def test_unknown_sae_and_missing_acts_are_user_errors(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "empty")
    with pytest.raises(UserError, match="no `acts` yet"):
        train_sae(lake, "toy", SMALL)
    with pytest.raises(UserError, match="not in lake"):
        load_sae(lake, "nope")


def test_a_release_that_cannot_be_fetched_offline_says_so(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "lake")
    with pytest.raises(UserError, match="pass --release-id"):
        register_sae(lake, "gpt2-small-res-jb", model="tiny")
    with pytest.raises(UserError, match="cannot be fetched here"):
        register_sae(lake, "gpt2-small-res-jb", release_id="blocks.8.hook_resid_pre", model="tiny")
