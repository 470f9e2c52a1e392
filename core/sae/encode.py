"""Encode every span through an SAE during a scan: `span_features` and `token_features` (DESIGN §3).

`SaeSink` receives each `SpanBatch` from the scan, encodes all its tokens in one `SAE.encode`
call (chunked for wide SAEs) and reduces per span with segment ops (scatter/index_add), never a
per-span Python loop. Each shard lands as a staging file; `finish` promotes `span_features` and
reduces the per-shard top token activations into `token_features` (top `top_k` per feature).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake, with_schema_version, write_parquet_atomic
from sculpt.sae.registry import load_sae

if TYPE_CHECKING:
    from sculpt.scan.run import ScanConfig, ScanReport, SpanBatch

SPAN_SCHEMA = schemas.SPAN_FEATURES
TOKEN_SCHEMA = schemas.TOKEN_FEATURES
CHUNK_ELEMENTS = 1 << 24
"""Tokens × features encoded at once: bounds memory for wide SAEs."""


@dataclass
class Nonzeros:
    """The nonzero codes of a batch as (token row, feature, value): what the span reductions and
    the top-token tracker read; the dense [tokens × features] codes are never kept."""

    token: torch.Tensor
    feature: torch.Tensor
    value: torch.Tensor
    width: int

    @classmethod
    def where(cls, active: torch.Tensor, values: torch.Tensor) -> Nonzeros:
        """The entries of `values` where `active`, in row-major order (flat indices: a 1-D
        nonzero and gather are cheaper than their 2-D forms)."""
        width = values.shape[1]
        flat = active.view(-1).nonzero().squeeze(1)
        return cls(flat // width, flat % width, values.reshape(-1).take(flat), width)

    @classmethod
    def above(cls, values: torch.Tensor, floor: torch.Tensor) -> Nonzeros:
        """The entries of `values` (tokens × features) above a per-feature `floor`. On a CPU,
        numpy's comparison and flatnonzero take half the time of torch's (the two passes over
        the dense pre-activations are most of what encoding adds to the matmul)."""
        if values.device.type != "cpu":
            return cls.where(values > floor, values)
        width = values.shape[1]
        flat = torch.from_numpy(np.flatnonzero(np.greater(values.numpy(), floor.numpy())))
        return cls(flat // width, flat % width, values.reshape(-1).take(flat), width)

    @classmethod
    def of(cls, codes: torch.Tensor) -> Nonzeros:
        return cls.where(codes != 0, codes)

    @classmethod
    def cat(cls, parts: list[Nonzeros], starts: list[int], width: int) -> Nonzeros:
        if len(parts) == 1:
            return parts[0]
        empty = torch.zeros(0, dtype=torch.long)
        return cls(
            torch.cat([p.token + start for p, start in zip(parts, starts, strict=True)] or [empty]),
            torch.cat([p.feature for p in parts] or [empty]),
            torch.cat([p.value for p in parts] or [torch.zeros(0)]),
            width,
        )


Encoder = Callable[[torch.Tensor], Nonzeros]


@contextmanager
def one_thread(device: torch.device) -> Iterator[None]:
    """Run the passes over a batch's nonzeros on one CPU thread. About 1e5 elements a batch gain
    nothing from a second thread, and on a busy machine waiting for a descheduled sibling costs
    far more than the op itself (300x for the segment reductions, measured on a shared 2-core
    machine). The matmul keeps every thread."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fast_encoder(sae: Any) -> Encoder:
    """The nonzero codes of `sae.encode(x)`, fused for plain JumpReLU and ReLU SAEs (ours, most
    releases).

    sae-lens' encode makes about six passes over the [tokens × features] pre-activations (bias,
    ReLU, threshold mask, cast, product, hooks); the fused form is one `addmm` (the bias rides
    in the matmul), one comparison and a gather of the survivors — the same arithmetic, equal to
    sae-lens' up to float rounding (tested). Any other SAE (TopK, normalizing, hooked,
    attention-z) runs its own `encode`.
    """
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE
    from sae_lens.saes.standard_sae import StandardSAE

    plain = type(sae) in (JumpReLUSAE, StandardSAE) and sae.cfg.normalize_activations == "none"
    hooked = any(m._forward_hooks or m._forward_pre_hooks for m in sae.modules())
    hook_name = getattr(getattr(sae.cfg, "metadata", None), "hook_name", None) or ""
    if not plain or hooked or hook_name.endswith("_z") or sae.W_enc.dtype != torch.float32:
        return lambda x: Nonzeros.of(sae.encode(x))
    weight, bias = sae.W_enc.detach(), sae.b_enc.detach()
    shift = sae.b_dec.detach() if sae.cfg.apply_b_dec_to_input else None
    # relu(pre) · 1{pre > θ} keeps pre exactly where pre > max(θ, 0)
    floor = (
        sae.threshold.detach().clamp(min=0)
        if isinstance(sae, JumpReLUSAE)
        else torch.zeros_like(bias)
    )

    def encode(x: torch.Tensor) -> Nonzeros:
        pre = torch.addmm(bias, x - shift if shift is not None else x, weight)
        with one_thread(pre.device):
            return Nonzeros.above(pre, floor)

    return encode


@torch.no_grad()
def encode_tokens(
    sae: Any, acts: torch.Tensor, norm_cap: float | None = None, encoder: Encoder | None = None
) -> Nonzeros:
    """Nonzero codes of every row, chunked; rows above `norm_cap` (attention sinks) encode to 0."""
    width = sae.cfg.d_sae
    rows = max(1, CHUNK_ELEMENTS // width)
    device = next(sae.parameters()).device
    encoder = encoder or fast_encoder(sae)
    parts, starts = [], []
    for start in range(0, len(acts), rows):
        x = acts[start : start + rows].to(device, torch.float32)
        nz = encoder(x)
        if norm_cap is not None:
            keep = (x.norm(dim=1) <= norm_cap)[nz.token]
            nz = Nonzeros(nz.token[keep], nz.feature[keep], nz.value[keep], width)
        parts.append(nz)
        starts.append(start)
    return Nonzeros.cat(parts, starts, width)


def span_reduce(
    codes: torch.Tensor | Nonzeros, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(span, feature, max, freq, sum) for every nonzero (span, feature).

    Segment reductions over the nonzero codes only (scatter_reduce / index_add / bincount into a
    [spans × features] grid): one pass over the sparse activations, no sort, no per-span loop.
    """
    nz = codes if isinstance(codes, Nonzeros) else Nonzeros.of(codes)
    device, width = nz.value.device, nz.width
    lengths = (offsets[1:] - offsets[:-1]).to(device)
    n_spans = len(lengths)
    span_of_token = torch.repeat_interleave(torch.arange(n_spans, device=device), lengths)
    key = span_of_token[nz.token] * width + nz.feature
    grid = torch.zeros(n_spans * width, device=device)
    maxima = grid.scatter_reduce(0, key, nz.value, "amax")
    sums = grid.index_add(0, key, nz.value)
    counts = torch.bincount(key, minlength=n_spans * width)
    hit = counts.nonzero().flatten()
    span = hit // width
    freq = counts[hit].float() / lengths[span].float()
    return span, hit % width, maxima[hit], freq, sums[hit]


def _by_feature_then_value(feature: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """The order of the entries by feature, then by act descending, ties by position: one
    stable sort on a 64-bit key (feature, then the float's bits made order-preserving)."""
    bits = act.float().contiguous().view(torch.int32).long()
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # signed ints in float order
    key = feature.long() * (1 << 32) + ((1 << 31) - 1 - ordered)
    return torch.sort(key, stable=True).indices


def top_per_feature(feature: torch.Tensor, act: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the `k` largest `act` within each feature group."""
    order = _by_feature_then_value(feature, act)
    grouped = feature[order]
    first = torch.searchsorted(grouped, grouped, right=False)
    rank = torch.arange(len(grouped), device=grouped.device) - first
    return order[rank < k]


def sparse_topk(
    nz: Nonzeros, k: int, floor: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense [k, width] (values, token rows) of each feature's top-k among the nonzeros.

    `floor` (per feature) drops candidates that cannot enter a running top-k before sorting:
    after the first batches almost every nonzero falls below its feature's k-th best so far.
    """
    token, feature, values = nz.token, nz.feature, nz.value
    if floor is not None:
        keep = (values > floor.take(feature)).nonzero().squeeze(1)
        token, feature, values = token.take(keep), feature.take(keep), values.take(keep)
    order = _by_feature_then_value(feature, values)
    grouped = feature[order]
    rank = torch.arange(len(order), device=values.device) - torch.searchsorted(grouped, grouped)
    keep = rank < k
    picks, rank = order[keep], rank[keep]
    top_values = torch.zeros(k, nz.width, device=values.device)
    top_tokens = torch.zeros(k, nz.width, dtype=torch.long, device=values.device)
    top_values[rank, feature[picks]] = values[picks]
    top_tokens[rank, feature[picks]] = token[picks]
    return top_values, top_tokens


class _TopTokens:
    """Running top-k token activations per feature within a shard, as dense [k, width] tensors."""

    def __init__(self, k: int, width: int, device: torch.device) -> None:
        self.k = k
        self.act = torch.zeros(k, width, device=device)
        self.span = torch.full((k, width), -1, dtype=torch.long, device=device)
        self.pos = torch.zeros(k, width, dtype=torch.long, device=device)
        self.spans: list[tuple[str, str]] = []

    def add(self, nz: Nonzeros, offsets: torch.Tensor, spans: list[tuple[str, str]]) -> None:
        """Merge a batch's top-k per feature (one dense topk, no per-span work)."""
        values, token = sparse_topk(nz, self.k, floor=self.act[-1])
        offsets = offsets.to(values.device)
        local = torch.searchsorted(offsets, token, right=True) - 1
        pos = token - offsets[local]
        merged = torch.cat([self.act, values])
        best, pick = merged.topk(self.k, dim=0)
        self.span = torch.cat([self.span, local + len(self.spans)]).gather(0, pick)
        self.pos = torch.cat([self.pos, pos]).gather(0, pick)
        self.act = best
        self.spans.extend(spans)

    def table(self) -> pa.Table:
        rank, feature = (self.act > 0).nonzero(as_tuple=True)
        span = self.span[rank, feature].cpu().numpy()
        keys = np.asarray(self.spans + [("", "")], dtype=object).reshape(-1, 2)
        return pa.table(
            {
                "pair_id": pa.array(keys[span, 0], pa.string()),
                "side": pa.array(keys[span, 1], pa.string()),
                "pos": pa.array(self.pos[rank, feature].cpu().numpy().astype(np.int32)),
                "feature": pa.array(feature.cpu().numpy().astype(np.int32)),
                "act": pa.array(self.act[rank, feature].cpu().numpy().astype(np.float32)),
            },
            schema=TOKEN_SCHEMA,
        )


class SaeSink:
    """A scan sink that writes `span_features` and `token_features` [dataset, sae]."""

    def __init__(
        self, lake: Lake, sae_id: str, dataset: str, top_k: int = 20, device: str | None = None
    ) -> None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.sae, self.info = load_sae(lake, sae_id, device)
        self.sae_id, self.dataset, self.top_k = sae_id, dataset, top_k
        self.key = f"sae={sae_id}"
        self.partition = {"dataset": dataset, "sae": sae_id}
        self.norm_cap = self.info.get("norm_cap")
        self.encoder = fast_encoder(self.sae)
        self._reset()

    def _reset(self) -> None:
        self.span_parts: list[pa.Table] = []
        device = next(self.sae.parameters()).device
        self.top = _TopTokens(self.top_k, self.sae.cfg.d_sae, device)

    def _staging(self, lake: Lake, table: str) -> Any:
        return lake.staging_dir(table, self.partition, self.key)

    def consume(self, batch: SpanBatch) -> None:
        if batch.acts.shape[1] != self.sae.cfg.d_in:
            raise UserError(
                f"sae {self.sae_id}: d_in {self.sae.cfg.d_in} but the scan gives "
                f"{batch.acts.shape[1]}-dim activations; scan with the SAE's model"
            )
        nz = encode_tokens(self.sae, batch.acts, self.norm_cap, self.encoder)
        with one_thread(nz.value.device):
            self._reduce(batch, nz)

    def _reduce(self, batch: SpanBatch, nz: Nonzeros) -> None:
        """A batch's span_features rows and its top tokens, from its nonzero codes."""
        span, feature, maxima, freq, sums = span_reduce(nz, batch.offsets)
        spans = pa.array(span.cpu().numpy())
        self.span_parts.append(
            pa.table(
                {
                    "pair_id": pa.array(batch.pair_ids, pa.string()).take(spans),
                    "side": pa.array(batch.sides, pa.string()).take(spans),
                    "feature": pa.array(feature.cpu().numpy().astype(np.int32)),
                    "max_act": pa.array(maxima.cpu().numpy().astype(np.float32)),
                    "freq": pa.array(freq.cpu().numpy().astype(np.float32)),
                    "sum_act": pa.array(sums.cpu().numpy().astype(np.float32)),
                },
                schema=SPAN_SCHEMA,
            )
        )
        self.top.add(nz, batch.offsets, list(zip(batch.pair_ids, batch.sides, strict=True)))

    def end_shard(self, lake: Lake, shard: int) -> None:
        spans = pa.concat_tables(self.span_parts) if self.span_parts else SPAN_SCHEMA.empty_table()
        name = f"part-{shard:05d}.parquet"
        write_parquet_atomic(
            with_schema_version(spans), self._staging(lake, "span_features") / name
        )
        tokens = with_schema_version(self.top.table())
        write_parquet_atomic(tokens, self._staging(lake, "token_features") / name)
        self._reset()

    def finish(self, lake: Lake) -> None:
        token_dir = self._staging(lake, "token_features")
        files = sorted(token_dir.glob("*.parquet"))
        shards = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
        lake.promote(self._staging(lake, "span_features"), "span_features", self.partition)
        lake.replace_partition("token_features", self.partition, reduce_top(shards, self.top_k))
        shutil.rmtree(token_dir, ignore_errors=True)


def reduce_top(shards: pa.Table | None, k: int) -> pa.Table:
    """The top `k` rows per feature across the shards' candidates."""
    if shards is None or shards.num_rows == 0:
        return TOKEN_SCHEMA.empty_table()
    shards = shards.select(TOKEN_SCHEMA.names)
    feature = torch.from_numpy(shards.column("feature").to_numpy().astype(np.int64))
    act = torch.from_numpy(shards.column("act").to_numpy().astype(np.float32))
    keep = top_per_feature(feature, act, k)
    table = shards.take(pa.array(keep.numpy()))
    return table.sort_by([("feature", "ascending"), ("act", "descending")])


def sae_sink(lake: Lake, sae_id: str, dataset: str, top_k: int = 20) -> SaeSink:
    """The SAE sink for `sculpt.scan.run.scan(..., sinks=[...])`."""
    return SaeSink(lake, sae_id, dataset, top_k)


def encode(
    lake: Lake,
    dataset: str,
    sae_id: str,
    model: Any = None,
    config: ScanConfig | None = None,
    top_k: int = 20,
    progress: bool = True,
) -> ScanReport:
    """Scan `dataset` through the SAE's model and layer with only the SAE sink (no `acts`)."""
    from sculpt.sae.fit import check_sae_model, sae_layer
    from sculpt.scan.models import LoadedModel, load_model
    from sculpt.scan.run import ScanConfig, scan

    sink = sae_sink(lake, sae_id, dataset, top_k)
    config = config or ScanConfig()
    config = config.at_layer(sae_layer(sae_id, sink.info, config.layer))
    loaded = (
        model if isinstance(model, LoadedModel) else load_model(model, config.device, config.dtype)
    )
    check_sae_model(sae_id, sink.info, loaded.name)
    return scan(lake, dataset, loaded, config, sinks=[sink], write_acts=False, progress=progress)


def encode_from_acts(lake: Lake, dataset: str, sae_id: str, top_k: int = 20) -> int:
    """Encode from the stored `acts` when they hold every sampled-able token (no forward pass).

    A scan never samples special (template) tokens, so here they carry no features and `freq`
    is over a span's content tokens; the sample is fp16, so values differ from a scan's fp32
    encoding in the last bits. Returns the number of spans encoded.
    """
    from sculpt.sae.training import read_acts
    from sculpt.scan.run import SpanBatch

    sink = sae_sink(lake, sae_id, dataset, top_k)
    model, layer = str(sink.info["model"]), int(sink.info["layer"])
    acts, _ = read_acts(lake, dataset, model, layer)
    files = lake.files("acts", {"dataset": dataset, "model": model, "layer": layer})
    keys = pq.ParquetDataset(files).read(columns=["pair_id", "side", "pos", "token_id"])
    total = content_tokens(lake, dataset, model)
    if keys.num_rows != total:
        raise UserError(
            f"acts of {dataset} hold {keys.num_rows} of {total} content tokens; run `sculpt "
            "encode` without --from-acts, or scan with --sample-tokens above the token count"
        )
    order = pc.sort_indices(
        keys, [("pair_id", "ascending"), ("side", "ascending"), ("pos", "ascending")]
    ).to_numpy()
    keys = keys.take(pa.array(order))
    acts = acts[torch.from_numpy(order.astype(np.int64))]
    pair_ids = np.asarray(keys.column("pair_id").to_pylist(), dtype=object)
    sides = np.asarray(keys.column("side").to_pylist(), dtype=object)
    starts = np.flatnonzero(
        np.r_[True, (pair_ids[1:] != pair_ids[:-1]) | (sides[1:] != sides[:-1])]
    )
    bounds = np.r_[starts, len(pair_ids)]
    token_ids = torch.from_numpy(keys.column("token_id").to_numpy().astype(np.int64))
    per_batch, batches_per_shard = 64, 8
    shard = 0
    for n, first in enumerate(range(0, len(starts), per_batch)):
        edges = bounds[first : first + per_batch + 1]
        lo, hi = int(edges[0]), int(edges[-1])
        sink.consume(
            SpanBatch(
                pair_ids=list(pair_ids[edges[:-1]]),
                sides=list(sides[edges[:-1]]),
                offsets=torch.from_numpy(edges - lo),
                token_ids=token_ids[lo:hi],
                acts=acts[lo:hi].float(),
            )
        )
        if (n + 1) % batches_per_shard == 0:
            sink.end_shard(lake, shard)
            shard += 1
    sink.end_shard(lake, shard)
    sink.finish(lake)
    return len(starts)


def content_tokens(lake: Lake, dataset: str, model: str) -> int:
    """Tokens of `spans` [dataset, model] that a scan may sample (all but special tokens)."""
    from sculpt.scan import models

    spec = {"tiny-llama": models.TINY_MODEL, models.DEFAULT_MODEL_NAME: None}.get(model, model)
    special = set(models.load_model(spec).tokenizer.all_special_ids)
    ids = lake.read("spans", {"dataset": dataset, "model": model}).column("token_ids")
    flat = pc.list_flatten(ids).to_numpy()
    return int((~np.isin(flat, list(special))).sum())
