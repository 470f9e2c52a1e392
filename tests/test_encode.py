"""Encoding during a scan: span_features equal SAE.encode per span; top tokens; feature cards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_sae import LAYER, scanned_lake

from sculpt.cli.main import main
from sculpt.concepts.registry import read_concepts
from sculpt.lake.store import Lake
from sculpt.sae.cards import build_cards
from sculpt.sae.config import SaeTrainConfig
from sculpt.sae.encode import (
    Nonzeros,
    _TopTokens,
    encode,
    fast_encoder,
    span_reduce,
    top_per_feature,
)
from sculpt.sae.registry import load_sae
from sculpt.sae.training import train_sae
from sculpt.scan.models import tiny_model
from sculpt.scan.run import ScanConfig, iter_span_batches, read_pairs

CONFIG = SaeTrainConfig(width=64, k=6, epochs=5, batch_size=256, lr=3e-3)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, str]:
    lake = scanned_lake(tmp_path_factory.mktemp("encode") / "lake", n=40)
    sae_id = train_sae(lake, "toy", CONFIG, progress=False)["sae_id"]
    encode(
        lake,
        "toy",
        sae_id,
        tiny_model(),
        ScanConfig(layer=LAYER, shard_size=16),
        top_k=5,
        progress=False,
    )
    return lake, sae_id


def per_span_reference(lake: Lake, sae_id: str) -> dict[tuple[str, str, int], tuple[float, ...]]:
    """(max, freq, sum) per nonzero (pair, side, feature), by SAE.encode span by span."""
    sae, info = load_sae(lake, sae_id)
    out = {}
    config = ScanConfig(layer=LAYER)
    for batch in iter_span_batches(tiny_model(), read_pairs(lake, "toy"), config):
        for i in range(len(batch.pair_ids)):
            x = batch.acts[batch.offsets[i] : batch.offsets[i + 1]]
            with torch.no_grad():
                codes = sae.encode(x)
            codes[x.norm(dim=1) > info["norm_cap"]] = 0
            for f in torch.nonzero(codes.amax(0) > 0).flatten().tolist():
                col = codes[:, f]
                out[(batch.pair_ids[i], batch.sides[i], f)] = (
                    float(col.max()),
                    float((col > 0).float().mean()),
                    float(col.sum()),
                )
    return out


def test_span_features_match_sae_encode_per_span(encoded: tuple[Lake, str]) -> None:
    lake, sae_id = encoded
    table = lake.read("span_features", {"dataset": "toy", "sae": sae_id}).to_pylist()
    got = {
        (r["pair_id"], r["side"], r["feature"]): (r["max_act"], r["freq"], r["sum_act"])
        for r in table
    }
    expected = per_span_reference(lake, sae_id)
    assert got.keys() == expected.keys()
    for key, values in expected.items():
        assert got[key] == pytest.approx(values, rel=1e-4, abs=1e-4), key


def test_token_features_keep_the_top_activations_per_feature(encoded: tuple[Lake, str]) -> None:
    lake, sae_id = encoded
    tokens = lake.read("token_features", {"dataset": "toy", "sae": sae_id}).to_pylist()
    spans = lake.read("span_features", {"dataset": "toy", "sae": sae_id}).to_pylist()
    for feature in {r["feature"] for r in spans}:
        top = sorted((r["act"] for r in tokens if r["feature"] == feature), reverse=True)
        best = max(r["max_act"] for r in spans if r["feature"] == feature)
        assert 1 <= len(top) <= 5
        assert top[0] == pytest.approx(best)


def test_feature_cards_and_concepts(
    encoded: tuple[Lake, str], capsys: pytest.CaptureFixture[str]
) -> None:
    lake, sae_id = encoded
    cards = build_cards(lake, "toy", sae_id, contexts=3).to_pylist()
    assert cards and all(0 < c["density"] <= 1 and c["mean_act"] > 0 for c in cards)
    context = json.loads(cards[0]["contexts"])[0]
    assert {"pair_id", "side", "pos", "text_before", "token", "text_after", "act"} <= set(context)
    concepts = read_concepts(lake, "toy", f"sae-{sae_id}")
    assert {c["concept_id"] for c in concepts} == {f"sae:{sae_id}:{c['feature']}" for c in cards}
    scores = lake.sql("select count(*) as n from concept_scores where concept_id like 'sae:%'")
    assert scores.column("n")[0].as_py() > 0
    assert main(["features", "toy", "--sae", sae_id, "--lake", str(lake.root), "--top", "2"]) == 0
    assert "feature" in capsys.readouterr().out


def test_segment_reductions_on_a_known_case() -> None:
    codes = torch.tensor([[0.0, 2.0], [1.0, 0.0], [3.0, 4.0], [0.0, 0.0]])
    span, feature, maxima, freq, sums = span_reduce(codes, torch.tensor([0, 2, 4]))
    rows = sorted(
        zip(
            span.tolist(),
            feature.tolist(),
            maxima.tolist(),
            freq.tolist(),
            sums.tolist(),
            strict=True,
        )
    )
    assert rows == [
        (0, 0, 1.0, 0.5, 1.0),
        (0, 1, 2.0, 0.5, 2.0),
        (1, 0, 3.0, 0.5, 3.0),
        (1, 1, 4.0, 0.5, 4.0),
    ]
    keep = top_per_feature(torch.tensor([0, 0, 0, 1]), torch.tensor([1.0, 3.0, 2.0, 5.0]), 2)
    assert sorted(keep.tolist()) == [1, 2, 3]


def test_encode_command_needs_a_known_sae(tmp_path: Path) -> None:
    lake = scanned_lake(tmp_path / "lake", n=4)
    assert main(["encode", "toy", "--sae", "nope", "--lake", str(lake.root)]) == 2


def test_encode_from_acts_matches_the_scan(encoded: tuple[Lake, str]) -> None:
    from sculpt.sae.encode import encode_from_acts

    lake, sae_id = encoded
    scanned = lake.read("span_features", {"dataset": "toy", "sae": sae_id}).to_pylist()
    assert encode_from_acts(lake, "toy", sae_id, top_k=5) > 0
    again = lake.read("span_features", {"dataset": "toy", "sae": sae_id}).to_pylist()
    key = lambda r: (r["pair_id"], r["side"], r["feature"])  # noqa: E731
    first = {key(r): r["max_act"] for r in scanned}
    second = {key(r): r["max_act"] for r in again}
    shared = first.keys() & second.keys()
    assert len(shared) > 0.95 * len(first)  # fp16 sample: features at the threshold may flip
    assert all(abs(first[k] - second[k]) < 0.05 * (1 + first[k]) for k in shared)


def _random_sae(kind: str) -> Any:
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    if kind == "jumprelu":
        sae: Any = JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=64))
        sae.threshold.data = torch.rand(64) * 0.5 - 0.1  # some below zero: the ReLU still rules
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=64))
    for param in (sae.W_enc, sae.b_enc, sae.b_dec):
        param.data = torch.randn_like(param) * 0.5
    return sae.eval()


def _dense(nz: Nonzeros, rows: int) -> torch.Tensor:
    out = torch.zeros(rows, nz.width)
    out[nz.token, nz.feature] = nz.value
    return out


@pytest.mark.parametrize("kind", ["jumprelu", "standard"])
def test_fused_encoder_equals_sae_encode(kind: str) -> None:
    sae = _random_sae(kind)
    x = torch.randn(300, 16)
    with torch.no_grad():
        expected, got = sae.encode(x), _dense(fast_encoder(sae)(x), 300)
    assert torch.equal(expected > 0, got > 0)
    assert torch.allclose(expected, got, atol=1e-6)


def test_a_hooked_sae_keeps_its_own_encode() -> None:
    sae = _random_sae("jumprelu")
    sae.hook_sae_acts_post.register_forward_hook(lambda module, args, out: out * 2)
    x = torch.randn(50, 16)
    with torch.no_grad():
        assert torch.allclose(_dense(fast_encoder(sae)(x), 50), sae.encode(x))


def test_running_top_tokens_equal_the_exact_top_k_over_batches() -> None:
    torch.manual_seed(1)
    k, width, offsets = 3, 6, torch.tensor([0, 10, 25, 40])
    span_of = torch.repeat_interleave(torch.arange(3), offsets[1:] - offsets[:-1])
    top = _TopTokens(k, width, torch.device("cpu"))
    candidates = []  # (feature, act, pair_id, pos) of every nonzero code seen
    for batch in range(5):
        codes = torch.relu(torch.randn(40, width)) * (torch.rand(40, width) < 0.4)
        names = [(f"p{batch}-{i}", "chosen") for i in range(3)]
        top.add(Nonzeros.of(codes), offsets, names)
        for t, f in codes.nonzero().tolist():
            span = int(span_of[t])
            candidates.append((f, float(codes[t, f]), names[span][0], t - int(offsets[span])))
    expected = sorted(
        c
        for f in range(width)
        for c in sorted((c for c in candidates if c[0] == f), key=lambda c: -c[1])[:k]
    )
    got = sorted((r["feature"], r["act"], r["pair_id"], r["pos"]) for r in top.table().to_pylist())
    assert [(f, p, pos) for f, _, p, pos in got] == [(f, p, pos) for f, _, p, pos in expected]
    assert [a for _, a, _, _ in got] == pytest.approx([a for _, a, _, _ in expected])


def test_llm_labels_reach_cards_and_concepts_but_not_scores(
    encoded: tuple[Lake, str], capsys: pytest.CaptureFixture[str]
) -> None:
    from test_labeler import ChatServer

    lake, sae_id = encoded
    query = "select concept_id, pair_id, side, score from concept_scores order by all"
    before = lake.sql(query)
    server = ChatServer()
    try:
        args = ["features", "toy", "--sae", sae_id, "--lake", str(lake.root), "--top", "1"]
        assert main([*args, "--labeler", server.url, "--labeler-model", "m"]) == 0
    finally:
        server.close()
    cards = lake.read("features", {"sae": sae_id}).to_pylist()
    assert cards and all(c["label_source"] == "llm" for c in cards)
    assert all(c["label"].startswith("concept of ") for c in cards)
    labels = {c["concept_id"]: c["label"] for c in read_concepts(lake, "toy", f"sae-{sae_id}")}
    assert labels[f"sae:{sae_id}:{cards[0]['feature']}"] == cards[0]["label"]
    assert lake.sql(query).equals(before)
    assert "[llm]" in capsys.readouterr().out


def test_top_per_feature_orders_negative_and_tied_activations() -> None:
    """Codes of SAEs without a ReLU can be negative; ties keep their first occurrence."""
    g = torch.Generator().manual_seed(3)
    feature = torch.randint(0, 7, (400,), generator=g)
    act = torch.randn(400, generator=g).round(decimals=1)
    act[act == 0] = 0.5
    got = top_per_feature(feature, act, 3).tolist()
    expected = []
    for f in sorted(set(feature.tolist())):
        rows = [i for i in range(400) if feature[i] == f]
        expected += sorted(rows, key=lambda i: (-float(act[i]), i))[:3]
    assert got == expected
