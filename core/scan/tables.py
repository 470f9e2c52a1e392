"""Arrow tables a scan writes: `spans` (tokens of every span) and `acts` (a seeded token sample)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from sculpt.scan.tokens import SIDES, TokenizedPair


def spans_schema() -> pa.Schema:
    return pa.schema(
        [
            ("pair_id", pa.string()),
            ("side", pa.string()),
            ("n_tokens", pa.int32()),
            ("n_truncated", pa.int32()),
            ("token_ids", pa.list_(pa.int32())),
            ("tokens", pa.list_(pa.string())),
        ]
    )


def acts_schema(d_model: int) -> pa.Schema:
    return pa.schema(
        [
            ("pair_id", pa.string()),
            ("side", pa.string()),
            ("pos", pa.int32()),
            ("token_id", pa.int32()),
            ("act", pa.list_(pa.float16(), d_model)),
        ]
    )


class TokenText:
    """Each token decoded alone (for highlighting), memoized per token id."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.cache: dict[int, str] = {}

    def __call__(self, ids: Sequence[int]) -> list[str]:
        missing = sorted({i for i in ids if i not in self.cache})
        if missing:
            texts = self.tokenizer.batch_decode([[i] for i in missing])
            self.cache.update(zip(missing, texts, strict=True))
        return [self.cache[i] for i in ids]


def spans_table(pairs: Sequence[TokenizedPair], token_text: TokenText) -> pa.Table:
    rows: dict[str, list[Any]] = {name: [] for name in spans_schema().names}
    for pair in pairs:
        for side in SIDES:
            ids = pair.side(side)
            rows["pair_id"].append(pair.pair_id)
            rows["side"].append(side)
            rows["n_tokens"].append(len(ids))
            rows["n_truncated"].append(pair.truncated.get(side, 0))
            rows["token_ids"].append(ids)
            rows["tokens"].append(token_text(ids))
    return pa.Table.from_pydict(rows, schema=spans_schema())


def sample_masks(
    pairs: Sequence[TokenizedPair], rate: float, seed: int, shard: int, skip_ids: set[int]
) -> list[dict[str, np.ndarray]]:
    """Which tokens of each span go to `acts`: seeded by (seed, shard), so a resumed run draws the
    same sample. Special tokens (template markers) are never sampled."""
    rng = np.random.default_rng([seed, shard])
    masks = []
    for pair in pairs:
        per_side = {}
        for side in SIDES:
            ids = np.asarray(pair.side(side), dtype=np.int64)
            keep = rng.random(len(ids)) < rate
            if skip_ids and len(ids):
                keep &= ~np.isin(ids, list(skip_ids))
            per_side[side] = keep
        masks.append(per_side)
    return masks


class ActsSample:
    """Collects the sampled token activations of one shard; writes them in pair order."""

    def __init__(self, d_model: int) -> None:
        self.d_model = d_model
        self.parts: dict[int, list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]] = {}

    def add(
        self, index: int, pair: TokenizedPair, side: str, acts: torch.Tensor, keep: np.ndarray
    ) -> None:
        if not keep.any():
            return
        pos = np.flatnonzero(keep)
        chosen = acts if len(pos) == len(acts) else acts[torch.from_numpy(keep).to(acts.device)]
        values = chosen.to(torch.float16).cpu().numpy()
        token_ids = np.asarray(pair.side(side), dtype=np.int32)[pos]
        self.parts.setdefault(index, []).append((side, pos.astype(np.int32), token_ids, values))

    def table(self, pair_ids: Sequence[str]) -> pa.Table:
        columns: dict[str, list[Any]] = {"pair_id": [], "side": [], "pos": [], "token_id": []}
        blocks = []
        for index in sorted(self.parts):
            for side, pos, token_ids, values in sorted(
                self.parts[index], key=lambda part: SIDES.index(part[0])
            ):
                columns["pair_id"].extend([pair_ids[index]] * len(pos))
                columns["side"].extend([side] * len(pos))
                columns["pos"].extend(pos.tolist())
                columns["token_id"].extend(token_ids.tolist())
                blocks.append(values)
        flat = np.concatenate(blocks).reshape(-1) if blocks else np.zeros(0, np.float16)
        act = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float16()), self.d_model)
        schema = acts_schema(self.d_model)
        arrays = [pa.array(columns[name], schema.field(name).type) for name in columns]
        return pa.Table.from_arrays([*arrays, act], schema=schema)

    def __len__(self) -> int:
        return sum(len(part[1]) for parts in self.parts.values() for part in parts)
