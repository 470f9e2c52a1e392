"""The Ray side of a distributed scan: an actor holding one model replica that runs the local
backend's own per-shard code (`ScanRun._scan_shard`) and writes into the lake's staging folders.

Nothing here imports ray at module level: the actor class is wrapped by `ray.remote` in
core/scan/ray_backend.py, so this module is also importable (and type-checked) without ray.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.scan.config import ScanConfig
from sculpt.scan.models import LoadedModel, load_model
from sculpt.scan.run import tokenize_rows
from sculpt.scan.shards import ScanRun
from sculpt.scan.tokens import TokenizedPair
from sculpt.scan.types import Sink

SinkFactory = Callable[[Lake], Sink]
"""Builds a sink inside a worker (sinks hold models and buffers, so they are re-created there,
not shipped). Must be picklable: a module-level class or function, not a lambda."""


@dataclass(frozen=True)
class SaeSinkSpec:
    """The SAE encoder sink of `sculpt scan --sae`, re-created from its id in each worker."""

    sae_id: str
    dataset: str
    top_k: int = 20

    def __call__(self, lake: Lake) -> Sink:
        from sculpt.sae.encode import sae_sink  # the concepts module; heavy (sae_lens)

        sink: Sink = sae_sink(lake, self.sae_id, self.dataset, self.top_k)
        return sink


@dataclass(frozen=True)
class ModelCard:
    """What the driver needs to know about the workers' model without loading it itself."""

    name: str
    n_layers: int
    d_model: int
    dtype: torch.dtype
    tokenizer: Any

    def driver_model(self) -> LoadedModel:
        """A LoadedModel for the driver's bookkeeping (resume key, shard layout): it carries the
        tokenizer and the facts, never weights — the driver runs no forward."""
        return LoadedModel(
            model=cast(Any, None),
            tokenizer=self.tokenizer,
            name=self.name,
            n_layers=self.n_layers,
            d_model=self.d_model,
            device=torch.device("cpu"),
            dtype=self.dtype,
        )


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to rebuild the driver's ScanRun (also after a restart)."""

    lake_root: str
    dataset: str
    config: ScanConfig
    sinks: tuple[SinkFactory, ...]
    write_acts: bool
    key: str
    """The driver's scan key; a worker whose model or data disagree refuses to write."""
    call_id: str
    """Unique per `scan_ray` call: a worker rebuilds its ScanRun when this changes (the same key
    may be scanned into another lake, or with other sink factories)."""
    pairs: list[Any]
    """[ObjectRef of list[TokenizedPair]]: wrapped in a list so Ray does not resolve (and copy)
    the whole pair list on every call; a worker fetches it once per scan."""


@dataclass(frozen=True)
class ShardDone:
    shard: int
    pairs: int
    acts_rows: int
    seconds: float


class ScanWorker:
    """One model replica. Ray restarts it after a crash; its state is a cache, rebuilt on demand."""

    def __init__(self, model_spec: str | None, device: str | None, dtype: str | None) -> None:
        # A bad spec is the user's to fix: keep the message for the driver's first call, since
        # an actor whose constructor raises dies with the error buried in a traceback.
        self.load_error: UserError | None = None
        try:
            self._loaded: LoadedModel | None = load_model(model_spec, device, dtype)
        except UserError as exc:
            self._loaded, self.load_error = None, exc
        self.run: ScanRun | None = None
        self.call_id = ""

    @property
    def loaded(self) -> LoadedModel:
        if self._loaded is None:
            raise self.load_error or UserError("scan worker: no model loaded")
        return self._loaded

    def describe(self) -> ModelCard:
        loaded = self.loaded
        return ModelCard(
            loaded.name, loaded.n_layers, loaded.d_model, loaded.dtype, loaded.tokenizer
        )

    def tokenize(self, rows: Sequence[dict[str, Any]], config: ScanConfig) -> list[TokenizedPair]:
        return tokenize_rows(self.loaded, rows, config)

    def scan_shard(self, job: ShardJob, shard: int) -> ShardDone:
        """Forward one shard, feed the sinks, write its staging files (the local backend's code)."""
        start = time.perf_counter()
        run = self._run(job)
        acts_rows = run._scan_shard(shard, tqdm(disable=True))  # noqa: SLF001 — same code as local
        return ShardDone(shard, len(run.shards[shard]), acts_rows, time.perf_counter() - start)

    def _run(self, job: ShardJob) -> ScanRun:
        if self.run is not None and self.call_id == job.call_id:
            return self.run
        import ray

        pairs: list[TokenizedPair] = ray.get(job.pairs[0])
        lake = Lake(Path(job.lake_root))
        sinks = [make(lake) for make in job.sinks]
        run = ScanRun(lake, job.dataset, self.loaded, job.config, pairs, sinks, job.write_acts)
        if run.key != job.key:
            raise RuntimeError(
                f"worker scan key {run.key} differs from the driver's {job.key}: the workers "
                "loaded a different model or dtype than the driver expects"
            )
        self.run, self.call_id = run, job.call_id
        return run
