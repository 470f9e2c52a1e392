"""Scan: activations equal the naive forward, resume gives the same lake, bad inputs are clear."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from lakes import cake_pairs, pairs_lake

from sculpt.cli.main import main
from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.scan.models import LoadedModel, tiny_model
from sculpt.scan.run import ScanConfig, SpanBatch, encode_pair_tokens, iter_span_batches, scan
from sculpt.scan.tokens import FALLBACK_SPLIT, encode_response, parse_prompt

LAYER = 2


def make_lake(tmp_path: Path, n: int = 12, dataset: str = "demo") -> Lake:
    return pairs_lake(tmp_path / "lake", cake_pairs(n), dataset)


def naive_span_acts(loaded: LoadedModel, row: dict[str, object], side: str, layer: int):
    """hidden_states[L+1] of the full model over prompt + response, split at the prompt."""
    ids, prompt_len = encode_pair_tokens(
        loaded.tokenizer, parse_prompt(str(row["prompt"])), str(row[side])
    )
    with torch.inference_mode():
        out = loaded.model(torch.tensor([ids]), output_hidden_states=True)
    hidden = out.hidden_states[layer + 1][0]
    return ids, prompt_len, hidden


@pytest.mark.parametrize("share_prefix", [True, False])
def test_span_acts_equal_naive_forward(share_prefix: bool) -> None:
    loaded = tiny_model()
    rows = cake_pairs(9)
    config = ScanConfig(layer=LAYER, batch_tokens=300, share_prefix=share_prefix)
    batches = list(iter_span_batches(loaded, rows, config))
    assert len(batches) > 1, "small batch_tokens must split the pairs into several batches"
    seen = set()
    by_id = {r["pair_id"]: r for r in rows}
    for batch in batches:
        for i, (pair_id, side) in enumerate(zip(batch.pair_ids, batch.sides, strict=True)):
            start, stop = int(batch.offsets[i]), int(batch.offsets[i + 1])
            reference_side = "chosen" if side == "prompt" else side
            ids, prompt_len, hidden = naive_span_acts(loaded, by_id[pair_id], reference_side, LAYER)
            span = slice(0, prompt_len) if side == "prompt" else slice(prompt_len, len(ids))
            assert batch.token_ids[start:stop].tolist() == ids[span]
            torch.testing.assert_close(batch.acts[start:stop], hidden[span], atol=1e-5, rtol=0)
            seen.add((pair_id, side))
    assert len(seen) == 3 * len(rows)


def test_last_block_is_the_residual_before_the_final_norm() -> None:
    loaded = tiny_model()
    row = cake_pairs(1)[0]
    captured = []
    last = loaded.model.model.layers[-1]
    handle = last.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        ids, prompt_len, _ = naive_span_acts(loaded, row, "chosen", loaded.n_layers - 1)
    finally:
        handle.remove()
    batch = next(iter_span_batches(loaded, [row], ScanConfig(layer=loaded.n_layers - 1)))
    expected = captured[0][0] if isinstance(captured[0], tuple) else captured[0][0]
    chosen = batch.sides.index("chosen")
    got = batch.acts[int(batch.offsets[chosen]) : int(batch.offsets[chosen + 1])]
    torch.testing.assert_close(got, expected[prompt_len:], atol=1e-5, rtol=0)


def test_scan_writes_spans_and_a_sample_of_exact_acts(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=6)
    loaded = tiny_model()
    report = scan(lake, "demo", loaded, ScanConfig(layer=LAYER, sample_tokens=50), progress=False)
    spans = lake.read("spans", {"dataset": "demo", "model": loaded.name}).to_pylist()
    assert len(spans) == 18 and report.pairs == 6
    assert all(len(s["token_ids"]) == s["n_tokens"] == len(s["tokens"]) for s in spans)
    assert "".join(spans[1]["tokens"]) == loaded.tokenizer.decode(spans[1]["token_ids"])
    acts = lake.read("acts", {"dataset": "demo", "model": loaded.name, "layer": LAYER})
    assert 25 <= acts.num_rows <= 80 and report.acts_rows == acts.num_rows
    row = acts.slice(0, 1).to_pylist()[0]
    batch = next(
        iter_span_batches(
            loaded,
            [r for r in cake_pairs(6) if r["pair_id"] == row["pair_id"]],
            ScanConfig(layer=LAYER),
        )
    )
    span = batch.sides.index(row["side"])
    expected = batch.acts[int(batch.offsets[span]) + row["pos"]]
    torch.testing.assert_close(
        torch.tensor(row["act"], dtype=torch.float32), expected, atol=2e-3, rtol=1e-3
    )
    assert not acts.filter(
        pa.compute.equal(acts["token_id"], loaded.tokenizer.eos_token_id)
    ).num_rows, "template markers are not sampled"


class InterruptingSink:
    """Counts the spans it sees; raises KeyboardInterrupt at the start of `interrupt_at` shard."""

    key = "test-sink"

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at = interrupt_at
        self.shards_ended: list[int] = []
        self.spans = 0
        self.finished = False

    def consume(self, batch: SpanBatch) -> None:
        if self.interrupt_at is not None and len(self.shards_ended) == self.interrupt_at:
            raise KeyboardInterrupt
        self.spans += len(batch.pair_ids)

    def end_shard(self, lake: Lake, shard: int) -> None:
        self.shards_ended.append(shard)

    def finish(self, lake: Lake) -> None:
        self.finished = True


def lake_contents(lake: Lake, loaded: LoadedModel) -> tuple[list[dict], list[dict]]:
    spans = lake.read("spans", {"dataset": "demo", "model": loaded.name}).to_pylist()
    acts = lake.read("acts", {"dataset": "demo", "model": loaded.name, "layer": LAYER})
    return spans, acts.to_pylist()


def test_resume_after_interrupt_gives_the_same_lake(tmp_path: Path) -> None:
    loaded = tiny_model()
    config = ScanConfig(layer=LAYER, shard_size=4, sample_tokens=120, batch_tokens=256)
    whole = make_lake(tmp_path / "whole", n=11)
    scan(whole, "demo", loaded, config, sinks=[InterruptingSink()], progress=False)

    lake = make_lake(tmp_path / "resumed", n=11)
    first = InterruptingSink(interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        scan(lake, "demo", loaded, config, sinks=[first], progress=False)
    assert first.shards_ended == [0] and not lake.has("acts"), "no half partition is visible"
    second = InterruptingSink()
    report = scan(lake, "demo", loaded, config, sinks=[second], progress=False)
    assert report.resumed_shards == 1 and report.scanned_pairs == 7
    assert second.shards_ended == [1, 2] and second.finished and second.spans == 3 * 7
    assert lake_contents(lake, loaded) == lake_contents(whole, loaded)
    assert scan(lake, "demo", loaded, config, sinks=[second], progress=False).already_done


def test_rerun_after_another_config_scans_again(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=3)
    loaded = tiny_model()
    first = ScanConfig(layer=1, seed=0, sample_tokens=40)
    other = ScanConfig(layer=1, seed=1, sample_tokens=40)
    partition = {"dataset": "demo", "model": loaded.name, "layer": 1}
    assert not scan(lake, "demo", loaded, first, progress=False).already_done
    sample = lake.read("acts", partition)
    assert scan(lake, "demo", loaded, first, progress=False).already_done
    assert not scan(lake, "demo", loaded, other, progress=False).already_done
    assert not lake.read("acts", partition).equals(sample)
    assert not scan(lake, "demo", loaded, first, progress=False).already_done, (
        "the partitions now hold the seed-1 sample, so the seed-0 scan must run again"
    )
    assert lake.read("acts", partition).equals(sample)


def test_truncation_keeps_prompt_end_and_response_start(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=5)
    loaded = tiny_model()
    config = ScanConfig(layer=1, max_prompt_tokens=10, max_response_tokens=7, sample_tokens=0)
    report = scan(lake, "demo", loaded, config, progress=False)
    spans = {
        (s["pair_id"], s["side"]): s
        for s in lake.read("spans", {"dataset": "demo", "model": loaded.name}).to_pylist()
    }
    row = cake_pairs(5)[0]
    ids, prompt_len = encode_pair_tokens(
        loaded.tokenizer, parse_prompt(row["prompt"]), row["chosen"]
    )
    assert spans[(row["pair_id"], "prompt")]["token_ids"] == ids[:prompt_len][-10:]
    assert spans[(row["pair_id"], "chosen")]["token_ids"] == ids[prompt_len:][:7]
    assert spans[(row["pair_id"], "chosen")]["n_truncated"] == len(ids) - prompt_len - 7
    assert report.truncated_spans["prompt"] == 5 and report.truncated_tokens["chosen"] > 0
    assert "keeps its end" in "\n".join(report.summary())
    assert "): prompt 5 spans /" in "\n".join(report.summary())
    assert not lake.has("acts"), "sample_tokens=0 writes no acts"


def test_bad_inputs_are_user_errors(tmp_path: Path) -> None:
    lake = make_lake(tmp_path)
    loaded = tiny_model()
    with pytest.raises(UserError, match="sculpt ingest"):
        scan(lake, "missing", loaded, ScanConfig(layer=1), progress=False)
    with pytest.raises(UserError, match=r"--layer 4: out of range .*0\.\.3"):
        scan(lake, "demo", loaded, ScanConfig(layer=4), progress=False)
    with pytest.raises(UserError, match="no such folder"):
        scan(lake, "demo", str(tmp_path / "nope"), ScanConfig(layer=1), progress=False)
    with pytest.raises(ValueError, match="max_response_tokens"):
        ScanConfig(max_response_tokens=0)


def test_tokenizer_without_chat_template(tmp_path: Path) -> None:
    lake = make_lake(tmp_path, n=3)
    base = tiny_model()
    tokenizer = copy.deepcopy(base.tokenizer)
    tokenizer.chat_template = None
    loaded = dataclasses.replace(base, tokenizer=tokenizer)
    with pytest.raises(UserError, match="no chat template.*--template plain"):
        scan(lake, "demo", loaded, ScanConfig(layer=1, template="chat"), progress=False)
    report = scan(lake, "demo", loaded, ScanConfig(layer=1), progress=False)
    assert len(report.fallbacks["plain"]) == 3
    assert any("role: content" in line for line in report.summary())
    prompt = lake.read("spans", {"dataset": "demo", "model": loaded.name}).to_pylist()[0]
    assert "".join(prompt["tokens"]).startswith("user: How do I bake")


def test_template_that_breaks_the_prompt_prefix_falls_back_to_split() -> None:
    tokenizer = copy.deepcopy(tiny_model().tokenizer)
    # The generation prompt says "assistant" but a finished turn says "bot": no shared prefix.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + ('bot' if m['role'] == 'assistant' "
        "else m['role']) + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    messages = [{"role": "user", "content": "hi"}]
    ids, prompt_len, how = encode_response(tokenizer, messages, "Sure!")
    assert how == FALLBACK_SPLIT
    assert tokenizer.decode(ids[:prompt_len]).endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(ids[prompt_len:]) == "Sure!<|im_end|>\n"


def test_scan_command_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = make_lake(tmp_path, n=4)
    code = main(
        [
            "scan",
            "demo",
            "--lake",
            str(lake.root),
            "--model",
            "tiny",
            "--layer",
            "1",
            "--sample-tokens",
            "20",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "4 pairs" in out and "pairs/s" in out and "truncated (" in out
    assert main(["scan", "nope", "--lake", str(lake.root), "--model", "tiny"]) == 2
    assert "sculpt ingest" in capsys.readouterr().err
