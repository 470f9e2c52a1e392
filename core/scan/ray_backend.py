"""`sculpt scan --backend ray`: the same scan, its shards spread over a Ray cluster (DESIGN §7).

The driver reads `pairs`, has the workers tokenize them, and builds the very ScanRun the local
backend builds (same resume key, shard boundaries, staging folders and manifest record). Each Ray
actor holds one model replica (and re-creates the sinks from picklable factories) and runs the
local backend's per-shard code, writing Parquet shard files straight into the staging folders —
so the lake must be on storage every worker sees (a shared mount). Only the driver writes the
manifest: it records each shard as its result arrives, re-queues the shards of a worker that died
(Ray restarts the actor), and promotes once all are done. A scan started on one backend resumes
on the other.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.scan.config import ScanConfig
from sculpt.scan.ray_worker import (
    ModelCard,
    SaeSinkSpec,
    ScanWorker,
    ShardDone,
    ShardJob,
    SinkFactory,
)
from sculpt.scan.run import read_pairs
from sculpt.scan.shards import STAGE, ScanRun
from sculpt.scan.types import ScanReport

__all__ = ["SaeSinkSpec", "ScanWorkers", "SinkFactory", "connect", "scan_ray"]

IN_FLIGHT_PER_WORKER = 2
"""Shards queued on each actor, so a worker never idles on the driver's round trip."""


def connect(address: str = "local", num_cpus: int | None = None) -> bool:
    """Join (or start) a Ray cluster unless this process already did; True if started here.

    `local` starts an in-process cluster (`num_cpus` cores; None: all), `auto` joins the cluster
    of `ray start` on this node, `ray://host:port` is a remote cluster through Ray Client.
    """
    import ray

    if ray.is_initialized():
        return False
    if address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
        raise UserError(f"--address {address}: Ray Client needs `pip install 'ray[client]'`")
    options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    try:
        if address == "local":
            ray.init(num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(
            f"--address {address}: cannot join a Ray cluster ({first}); start one with "
            "`ray start --head` and pass --address auto, or pass --address local"
        ) from None
    return True


def _ray_get(refs: Any) -> Any:
    """`ray.get`, with a worker's UserError re-raised as the plain one-line UserError."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, UserError):
            raise UserError(str(exc.cause)) from None
        raise


def check_worker_options(num_workers: int, num_gpus_per_worker: float) -> None:
    if num_workers < 1:
        raise UserError(f"--workers {num_workers}: pass at least 1")
    if num_gpus_per_worker < 0:
        raise UserError(f"--num-gpus-per-worker {num_gpus_per_worker}: pass 0 or more (0: CPU)")


class ScanWorkers:
    """`num_workers` Ray actors, each holding one replica of the model. Reusable across scans
    (loading a large model takes minutes); close() or a `with` block releases them."""

    def __init__(
        self,
        model_spec: str | None,
        num_workers: int = 2,
        num_gpus_per_worker: float = 0,
        num_cpus_per_worker: float = 1,
        device: str | None = None,
        dtype: str | None = None,
        max_restarts: int = 3,
    ) -> None:
        import ray

        check_worker_options(num_workers, num_gpus_per_worker)
        spec = model_spec
        if spec and Path(spec).expanduser().is_dir():
            spec = str(Path(spec).expanduser().resolve())  # workers may start in another folder
        actor = ray.remote(ScanWorker).options(
            num_cpus=num_cpus_per_worker,
            num_gpus=num_gpus_per_worker,
            max_restarts=max_restarts,
            max_task_retries=0,
        )
        self.actors: list[Any] = [actor.remote(spec, device, dtype) for _ in range(num_workers)]
        self.num_gpus_per_worker = num_gpus_per_worker
        self._card: ModelCard | None = None

    def card(self) -> ModelCard:
        """The workers' model (name, dtype, tokenizer): fixes the resume key on the driver."""
        if self._card is None:
            self._card = _ray_get(self.actors[0].describe.remote())
        return self._card

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors = []

    def __enter__(self) -> ScanWorkers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scan_ray(
    lake: Lake,
    dataset: str,
    model_spec: str | None,
    config: ScanConfig,
    sinks_spec: Sequence[SinkFactory] = (),
    address: str = "local",
    num_gpus_per_worker: float = 0,
    num_workers: int = 2,
    *,
    write_acts: bool = True,
    progress: bool = True,
    workers: ScanWorkers | None = None,
    max_retries: int = 3,
) -> ScanReport:
    """`sculpt.scan.run.scan` on a Ray cluster: same lake contents, same manifest, resumable.

    `workers` reuses live model replicas (then `model_spec`, `num_*` and the config's device and
    dtype are theirs); otherwise they are started here and released at the end. A shard whose
    worker died is re-queued up to `max_retries` times.
    """
    if workers is None:
        check_worker_options(num_workers, num_gpus_per_worker)
    rows = read_pairs(lake, dataset)
    started = connect(address)
    pool = workers or ScanWorkers(
        model_spec,
        num_workers,
        num_gpus_per_worker,
        device=config.device,
        dtype=config.dtype,
        max_restarts=max_retries,
    )
    try:
        return _scan_with(
            pool, lake, dataset, rows, config, sinks_spec, write_acts, progress, max_retries
        )
    finally:
        if workers is None:
            pool.close()
        if started:
            import ray

            ray.shutdown()


def _scan_with(
    pool: ScanWorkers,
    lake: Lake,
    dataset: str,
    rows: list[dict[str, Any]],
    config: ScanConfig,
    sinks_spec: Sequence[SinkFactory],
    write_acts: bool,
    progress: bool,
    max_retries: int,
) -> ScanReport:
    import ray

    shell = pool.card().driver_model()
    config = config.at_layer(shell.check_layer(config.layer))
    chunks = [rows[i :: len(pool.actors)] for i in range(len(pool.actors))]
    parts = _ray_get(
        [a.tokenize.remote(c, config) for a, c in zip(pool.actors, chunks, strict=True)]
    )
    pairs = [parts[i % len(parts)][i // len(parts)] for i in range(len(rows))]
    lake = Lake(lake.root.resolve())
    driver_sinks = [make(lake) for make in sinks_spec]
    run = ScanRun(lake, dataset, shell, config, pairs, driver_sinks, write_acts)
    progress_state = _Progress.resume(run)
    report = run._report()  # noqa: SLF001 — the driver shares the local run's bookkeeping
    if progress_state is None:
        report.already_done = True
        report.acts_rows = sum((lake.done(STAGE, run.key) or {}).get("acts_rows", {}).values())
        return report
    job = ShardJob(
        str(lake.root),
        dataset,
        config,
        tuple(sinks_spec),
        run.write_acts,
        run.key,
        uuid.uuid4().hex,
        [ray.put(pairs)],
    )
    report.resumed_shards = len(progress_state.done)
    start = time.perf_counter()
    try:
        report.scanned_pairs = _dispatch(pool, job, progress_state, progress, max_retries)
    finally:
        report.seconds = time.perf_counter() - start
    for table in run.partitions:
        _drop_leftover_tmp(run.staging(table))
    run._promote()  # noqa: SLF001
    for sink in driver_sinks:
        sink.finish(lake)
    run._record(progress_state.done, progress_state.acts_rows, complete=True)  # noqa: SLF001
    report.acts_rows = sum(progress_state.acts_rows.values())
    return report


@dataclass
class _Progress:
    """The shards done so far (from the manifest) and the manifest writer for new ones."""

    run: ScanRun
    done: set[int] = field(default_factory=set)
    acts_rows: dict[int, int] = field(default_factory=dict)

    @classmethod
    def resume(cls, run: ScanRun) -> _Progress | None:
        """Progress recorded by an earlier run of this key (either backend); None if complete."""
        record = run.lake.done(STAGE, run.key)
        if run.is_complete(record):
            return None
        if record is None:
            for table in run.partitions:
                shutil.rmtree(run.staging(table), ignore_errors=True)
        record = record or {}
        return cls(
            run,
            {int(s) for s in record.get("shards_done", [])},
            {int(k): int(v) for k, v in record.get("acts_rows", {}).items()},
        )

    def todo(self) -> list[int]:
        return [s for s in range(len(self.run.shards)) if s not in self.done]

    def add(self, result: ShardDone) -> None:
        self.done.add(result.shard)
        self.acts_rows[result.shard] = result.acts_rows
        self.run._record(self.done, self.acts_rows, complete=False)  # noqa: SLF001


def _dispatch(
    pool: ScanWorkers, job: ShardJob, state: _Progress, progress: bool, max_retries: int
) -> int:
    """Run the missing shards on the workers; return the pairs scanned."""
    run = state.run
    bar = tqdm(
        total=len(run.pairs),
        initial=sum(len(run.shards[s]) for s in state.done),
        unit="pair",
        desc=f"scan {run.dataset} L{run.config.layer} ray×{len(pool.actors)}",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    bar.set_postfix_str(f"shards {len(state.done)}/{len(run.shards)}")
    scanned = 0

    def shard_finished(result: ShardDone) -> None:
        nonlocal scanned
        state.add(result)
        scanned += result.pairs
        bar.update(result.pairs)
        bar.set_postfix_str(f"shards {len(state.done)}/{len(run.shards)}")

    try:
        _ShardQueue(pool, job, state.todo(), max_retries).run(shard_finished)
    finally:
        bar.close()
    return scanned


class _ShardQueue:
    """Hands shards to actors as they free up; a dead actor's shards go back to the queue, and
    the actor gets work again once Ray has restarted it."""

    def __init__(self, pool: ScanWorkers, job: ShardJob, todo: list[int], max_retries: int):
        self.pool, self.job, self.max_retries = pool, job, max_retries
        self.queue = deque(todo)
        self.attempts: Counter[int] = Counter()
        self.running: dict[Any, tuple[int, int | None]] = {}  # ref → (actor, shard | None=probe)
        self.alive = set(range(len(pool.actors)))

    def run(self, shard_finished: Callable[[ShardDone], None]) -> None:
        import ray

        for actor in sorted(self.alive):
            self._fill(actor)
        while self._pending():
            [ref], _ = ray.wait(list(self.running), num_returns=1)
            actor, shard = self.running.pop(ref)
            try:
                result = _ray_get(ref)
            except ray.exceptions.RayActorError as exc:
                self._worker_lost(actor, shard, exc)
                continue
            if shard is not None:
                shard_finished(result)
            self._fill(actor)
        if self.queue:
            raise UserError(
                "scan: every Ray worker died; finished shards are kept — re-run the "
                "same command to resume"
            )

    def _pending(self) -> bool:
        """Shards still running, or queued while some actor (maybe restarting) can take them."""
        shards_running = any(shard is not None for _, shard in self.running.values())
        return shards_running or bool(self.queue and self.running)

    def _fill(self, actor: int) -> None:
        busy = sum(1 for a, _ in self.running.values() if a == actor)
        while self.queue and busy < IN_FLIGHT_PER_WORKER:
            shard = self.queue.popleft()
            self.attempts[shard] += 1
            ref = self.pool.actors[actor].scan_shard.remote(self.job, shard)
            self.running[ref] = (actor, shard)
            busy += 1

    def _worker_lost(self, actor: int, shard: int | None, exc: Exception) -> None:
        if shard is None:  # the probe failed: Ray gave up restarting this actor
            self.alive.discard(actor)
            return
        if self.attempts[shard] > self.max_retries:
            cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(
                f"scan: shard {shard} lost its worker {self.attempts[shard]} times ({cause}); "
                "finished shards are kept — re-run the same command to resume"
            )
        self.queue.appendleft(shard)
        if not any(a == actor for a, _ in self.running.values()):
            # Wait for the restart with a cheap call; work resumes on it when it answers.
            self.running[self.pool.actors[actor].describe.remote()] = (actor, None)
        for other in sorted(self.alive - {actor}):
            self._fill(other)


def _drop_leftover_tmp(staging: Path) -> None:
    """Half-written files of a worker killed mid-write (atomic writes never rename them)."""
    if staging.exists():
        for path in staging.rglob("*.tmp"):
            path.unlink(missing_ok=True)
