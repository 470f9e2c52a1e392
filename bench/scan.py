"""Scan speed: the naive loop vs `sculpt scan`, same HH-RLHF pairs, default model, layer 15.

(i) naive: full-model forward with output_hidden_states over prompt+chosen and prompt+rejected
    separately, batches of 8 in file order (all 30 blocks and the LM head run);
(ii) ours: `sculpt.scan.run.scan` into a temporary lake (blocks ≤ L only, prompt computed once per pair,
    length-batched).
Prints pairs/s of each and the ratio, the max abs difference of the activations, and our achieved
FLOP rate as a fraction of a dense fp32 matmul measured in the same run.

    .venv/bin/python bench/scan.py --pairs 200
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import torch

from sculpt.lake.store import Lake
from sculpt.scan.forward import iter_pair_acts
from sculpt.scan.models import LoadedModel, decoder_layers, load_model
from sculpt.scan.run import ScanConfig, scan, tokenize_rows
from sculpt.scan.tokens import TokenizedPair

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless-base-test.jsonl.gz"
)
TURN = re.compile(r"\n\n(Human|Assistant): ")


def hh_messages(text: str) -> list[dict[str, str]]:
    parts = TURN.split(text)
    roles = {"Human": "user", "Assistant": "assistant"}
    return [
        {"role": roles[r], "content": c.strip()}
        for r, c in zip(parts[1::2], parts[2::2], strict=True)
    ]


def hh_rows(n: int) -> list[dict[str, object]]:
    """prompt = everything up to the last "\\n\\nAssistant:", split into turns."""
    rows = []
    with gzip.open(DATA, "rt") as fh:
        for i, line in enumerate(fh):
            if len(rows) == n:
                break
            record = json.loads(line)
            cut = record["chosen"].rfind("\n\nAssistant:")
            prompt = hh_messages(record["chosen"][:cut])
            chosen = record["chosen"][cut + len("\n\nAssistant:") :].strip()
            rejected = record["rejected"][
                record["rejected"].rfind("\n\nAssistant:") + len("\n\nAssistant:") :
            ].strip()
            rows.append(
                {
                    "pair_id": f"{i:016x}",
                    "row": i,
                    "prompt": json.dumps(prompt),
                    "chosen": chosen,
                    "rejected": rejected,
                    "source": DATA.name,
                    "meta": "{}",
                }
            )
    return rows


class Clock:
    """Wall seconds and CPU seconds (all threads): the CPU is shared, so both are shown."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def naive_loop(
    loaded: LoadedModel, pairs: list[TokenizedPair], layer: int
) -> dict[tuple[str, str], torch.Tensor]:
    """Full forward per side, batches of 8 in file order; returns the span activations."""
    out: dict[tuple[str, str], torch.Tensor] = {}
    pad = loaded.tokenizer.pad_token_id
    with torch.inference_mode():
        for b in range(0, len(pairs), 8):
            batch = pairs[b : b + 8]
            for side in ("chosen", "rejected"):
                seqs = [p.prompt + p.side(side) for p in batch]
                width = max(map(len, seqs))
                ids = torch.full((len(seqs), width), pad, dtype=torch.long)
                mask = torch.zeros((len(seqs), width), dtype=torch.long)
                for i, s in enumerate(seqs):
                    ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
                hidden = loaded.model(
                    ids, attention_mask=mask, output_hidden_states=True
                ).hidden_states[layer + 1]
                for i, p in enumerate(batch):
                    n_p = len(p.prompt)
                    out[(p.pair_id, "prompt")] = hidden[i, :n_p].clone()
                    out[(p.pair_id, side)] = hidden[i, n_p : len(seqs[i])].clone()
    return out


def useful_flops(loaded: LoadedModel, pairs: list[TokenizedPair], layer: int) -> float:
    """Matmul FLOPs the shared-prefix forward must do: weights of blocks ≤ L × tokens, plus
    attention scores and values over the keys each query sees."""
    blocks = decoder_layers(loaded.model)[: layer + 1]
    weights = sum(p.numel() for blk in blocks for n, p in blk.named_parameters() if p.dim() == 2)
    cfg = loaded.model.config
    attn_width = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    tokens = keys = 0
    for p in pairs:
        n_p, n_c, n_r = len(p.prompt), len(p.chosen), len(p.rejected)
        tokens += n_p + n_c + n_r
        keys += sum(range(1, n_p + n_c + 1)) + sum(range(n_p + 1, n_p + n_r + 1))
    return 2.0 * weights * tokens + (layer + 1) * 4.0 * attn_width * keys


def matmul_rate(size: int = 1024, repeats: int = 20) -> tuple[float, float]:
    """FLOP/s of a dense fp32 square matmul: (per wall second, per CPU second), over all runs
    (a best-of-runs minimum would flatter the peak, since CPU-time accounting is coarse)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    with Clock() as clock:
        for _ in range(repeats):
            torch.mm(a, b)
    flops = 2.0 * size**3 * repeats
    return flops / clock.wall, flops / max(clock.cpu, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    if not DATA.exists():
        sys.exit(f"missing {DATA}")
    loaded = load_model(args.model, device="cpu", dtype="fp32")
    rows = hh_rows(args.pairs)
    config = ScanConfig(layer=args.layer)
    pairs = tokenize_rows(loaded, rows, config)
    print(
        f"{len(pairs)} pairs, {loaded.name}, layer {args.layer}, {torch.get_num_threads()} threads"
    )

    with Clock() as naive_clock:
        naive = naive_loop(loaded, pairs, args.layer)
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake.open(tmp)
        lake.replace_partition("pairs", {"dataset": "bench"}, pa.Table.from_pylist(rows))
        with Clock() as ours_clock:
            report = scan(lake, "bench", loaded, config, progress=False)
    n = len(pairs)
    for what, naive_s, ours_s in (
        ("wall", naive_clock.wall, ours_clock.wall),
        ("cpu", naive_clock.cpu, ours_clock.cpu),
    ):
        print(
            f"[{what:4} s] naive {naive_s:7.1f} s = {n / naive_s:6.2f} pairs/s | sculpt scan "
            f"{ours_s:7.1f} s = {n / ours_s:6.2f} pairs/s | ratio {naive_s / ours_s:.2f}x "
            "(goal ≥ 3.0)"
        )

    max_diff = 0.0
    with Clock() as forward_clock:
        results = [
            r
            for batch in iter_pair_acts(
                loaded, args.layer, pairs, config.batch_tokens_for(loaded.device)
            )
            for r in batch
        ]
    for r in results:
        for side, acts in r.acts.items():
            diff = (acts - naive[(pairs[r.index].pair_id, side)]).abs().max().item()
            max_diff = max(max_diff, diff)
    print(
        f"max abs difference vs naive hidden_states[{args.layer + 1}]: {max_diff:.2e} "
        "(fp32; goal < 1e-3)"
    )
    flops = useful_flops(loaded, pairs, args.layer)
    peak_wall, peak_cpu = matmul_rate()
    for what, peak, forward_s, scan_s in (
        ("wall", peak_wall, forward_clock.wall, ours_clock.wall),
        ("cpu", peak_cpu, forward_clock.cpu, ours_clock.cpu),
    ):
        print(
            f"[{what:4} s] dense fp32 matmul {peak / 1e9:5.1f} GFLOP/s | our forward "
            f"{flops / forward_s / 1e9:5.1f} GFLOP/s = {flops / forward_s / peak:.0%} | "
            f"scan end to end {flops / scan_s / peak:.0%} (goal ≥ 50%)"
        )
    print("\n".join(report.summary()))


if __name__ == "__main__":
    main()
