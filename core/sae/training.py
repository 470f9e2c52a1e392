"""Train a BatchTopK SAE with sae-lens on the lake's `acts` (DESIGN §6).

Our own iterator (`ShuffledBatches`) feeds sae-lens' `SAETrainer` shuffled batches from the
sampled activations, with a held-out set of pairs for the quality figures (FVE, L0, dead share).
The trained SAE lands in the lake as core/sae/registry.py describes.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from sculpt.errors import UserError
from sculpt.lake.store import Lake, slug
from sculpt.sae.config import SaeTrainConfig
from sculpt.sae.registry import _finish, _staging


def default_sae_id(dataset: str, layer: int, width: int, k: int) -> str:
    return f"{dataset}-L{layer}-w{width}-k{k}"


def acts_partitions(lake: Lake, dataset: str) -> list[tuple[str, int]]:
    """(model partition, layer) of every `acts` partition scanned for `dataset`."""
    base = lake.partition_dir("acts", {"dataset": dataset})
    found = []
    for model_dir in sorted(base.glob("model=*")):
        for layer_dir in sorted(model_dir.glob("layer=*")):
            if any(layer_dir.rglob("*.parquet")):
                found.append((model_dir.name[6:], int(layer_dir.name[6:])))
    return found


def pick_acts(lake: Lake, dataset: str, model: str | None, layer: int | None) -> tuple[str, int]:
    """The one `acts` partition matching the filters, or a UserError that lists the choices."""
    found = acts_partitions(lake, dataset)
    if not found:
        raise UserError(f"dataset {dataset}: no `acts` yet; run `sculpt scan {dataset}` first")
    matches = [
        (m, lay)
        for m, lay in found
        if (model is None or m == slug(model)) and (layer is None or lay == layer)
    ]
    if len(matches) != 1:
        choices = ", ".join(f"--model {m} --layer {lay}" for m, lay in found)
        what = "no" if not matches else "several"
        raise UserError(f"dataset {dataset}: {what} `acts` match; pass one of: {choices}")
    return matches[0]


def read_acts(
    lake: Lake, dataset: str, model: str, layer: int, max_tokens: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, list[str]]:
    """Sampled activations (float16 [n, d_model]) and the pair_id of each row."""
    files = lake.files("acts", {"dataset": dataset, "model": model, "layer": layer})
    data = pq.ParquetDataset(files).read(columns=["pair_id", "act"])
    column = data.column("act").combine_chunks()
    width = column.type.list_size
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float16, copy=False)
    acts = torch.from_numpy(values.reshape(-1, width).copy())
    pair_ids = data.column("pair_id").to_pylist()
    if max_tokens is not None and len(pair_ids) > max_tokens:
        keep = torch.randperm(len(pair_ids), generator=torch.Generator().manual_seed(seed))
        keep = keep[:max_tokens].sort().values
        acts = acts[keep]
        pair_ids = [pair_ids[i] for i in keep.tolist()]
    return acts, pair_ids


def holdout_mask(pair_ids: list[str], fraction: float, seed: int) -> torch.Tensor:
    """True for rows whose pair is held out: a seeded hash, so a pair's tokens stay together."""

    def bucket(pair_id: str) -> float:
        digest = hashlib.sha256(f"{seed}:{pair_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    cache: dict[str, bool] = {}
    out = [cache.setdefault(p, bucket(p) < fraction) for p in pair_ids]
    return torch.tensor(out, dtype=torch.bool)


class ShuffledBatches(Iterator[torch.Tensor]):
    """Endless float32 batches drawn from `acts` without replacement, reshuffled every epoch."""

    def __init__(self, acts: torch.Tensor, batch_size: int, seed: int, device: str = "cpu"):
        if len(acts) < batch_size:
            raise UserError(
                f"only {len(acts)} training tokens for batch size {batch_size}; "
                "scan more pairs or pass a smaller --batch-size"
            )
        self.acts, self.batch_size, self.device = acts, batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(acts), generator=self.generator)
        self.cursor = 0

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> torch.Tensor:
        if self.cursor + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.acts), generator=self.generator)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + self.batch_size]
        self.cursor += self.batch_size
        return self.acts[index].to(self.device, torch.float32, non_blocking=True)


# ---- training ---------------------------------------------------------------------------------


def make_trainer(
    train_acts: torch.Tensor, config: SaeTrainConfig, device: str, progress: bool = True
) -> Any:
    """An sae-lens SAETrainer for a fresh BatchTopK SAE, fed by `ShuffledBatches`."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    total = int(len(train_acts) * config.epochs) // config.batch_size * config.batch_size
    steps = total // config.batch_size
    torch.manual_seed(config.seed)
    sae_config = BatchTopKTrainingSAEConfig(
        d_in=train_acts.shape[1],
        d_sae=config.width,
        k=config.k,
        device=device,
        normalize_activations="expected_average_only_in",
        # The inference threshold is an EMA starting at 0: on a few hundred steps the default
        # rate (0.01) leaves it too low and inference L0 far above k.
        topk_threshold_lr=min(0.1, max(0.01, 20 / max(steps, 1))),
    )
    sae = BatchTopKTrainingSAE(sae_config)
    trainer_config = SAETrainerConfig(
        total_training_samples=total,
        train_batch_size_samples=config.batch_size,
        lr=config.lr,
        lr_end=config.lr / 10,
        lr_decay_steps=steps // 5,
        device=device,
        # A feature silent for a fifth of training counts as dead and gets the aux loss.
        dead_feature_window=max(10, steps // 5),
        feature_sampling_window=max(20, steps // 2),
        logger=LoggingConfig(log_to_wandb=False),
        n_batches_for_norm_estimate=max(1, min(50, len(train_acts) // config.batch_size)),
    )
    batches = ShuffledBatches(train_acts, config.batch_size, config.seed, device)
    trainer = SAETrainer(cfg=trainer_config, sae=sae, data_provider=batches)
    if not progress:
        trainer._update_pbar = lambda *args, **kwargs: None
    else:
        # sae-lens moves its bar every 100 steps by 100 batches, so it ends short of 100%.
        def update_pbar(step_output: Any, pbar: Any, update_interval: int = 100) -> None:
            pbar.update(min(trainer.n_training_samples, total) - pbar.n)
            if trainer.n_training_steps % update_interval == 0:
                loss = float(step_output.loss)
                pbar.set_description(
                    f"Training SAE ({trainer.n_training_steps} steps, loss {loss:.4f})"
                )

        trainer._update_pbar = update_pbar
    return trainer


@torch.no_grad()
def measure_quality(sae: Any, acts: torch.Tensor, chunk: int = 4096) -> dict[str, float]:
    """FVE (1 − SSE / total variance), mean L0 and the fraction of features that never fire."""
    device = next(sae.parameters()).device
    mean = acts.float().mean(0).to(device)
    sse = total = l0 = 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=device)
    for start in range(0, len(acts), chunk):
        x = acts[start : start + chunk].to(device, torch.float32)
        codes = sae.encode(x)
        sse += float(((sae.decode(codes) - x) ** 2).sum())
        total += float(((x - mean) ** 2).sum())
        active = codes > 0
        l0 += float(active.sum())
        fired |= active.any(0)
    return {
        "fve": 1.0 - sse / max(total, 1e-12),
        "l0": l0 / max(len(acts), 1),
        "dead_fraction": 1.0 - float(fired.float().mean()),
        "tokens": len(acts),
    }


def train_sae(
    lake: Lake,
    dataset: str,
    config: SaeTrainConfig,
    sae_id: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a BatchTopK SAE on `acts` [dataset, model, layer], save it, return its sculpt.json."""
    from sae_lens import SAE

    model, layer = pick_acts(lake, dataset, config.model, config.layer)
    sae_id = sae_id or default_sae_id(dataset, layer, config.width, config.k)
    device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
    acts, pair_ids = read_acts(lake, dataset, model, layer, config.tokens, config.seed)
    norms = acts.float().norm(dim=1)
    norm_cap = float(config.outlier_ratio * norms.median())
    typical = norms <= norm_cap
    acts, pair_ids = (
        acts[typical],
        [p for p, ok in zip(pair_ids, typical.tolist(), strict=True) if ok],
    )
    held = holdout_mask(pair_ids, config.holdout, config.seed)
    if held.all() or not held.any():
        held = torch.arange(len(acts)) % 10 == 0  # too few pairs to split by pair
    trainer = make_trainer(acts[~held], config, device, progress)
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    info = {
        "sae_id": sae_id,
        "source": "trained",
        "model": model,
        "layer": layer,
        "dataset": dataset,
        "d_in": int(acts.shape[1]),
        "width": config.width,
        "k": config.k,
        "tokens": trainer.n_training_samples,
        "unique_tokens": int((~held).sum()),
        "norm_cap": norm_cap,
        "outliers_left_out": int((~typical).sum()),
        "train_seconds": round(seconds, 2),
        "config": asdict(config),
        "created": time.time(),
    }
    folder = _staging(lake, sae_id)
    try:
        trainer.sae.save_inference_model(folder)
        inference = SAE.load_from_disk(folder, device=device)
        info["quality"] = measure_quality(inference, acts[held])
        info["quality"]["dead_fraction"] = measure_quality(inference, acts)["dead_fraction"]
        _finish(lake, folder, sae_id, info)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return info
