"""Ray scan: the same lake as the local scan, workers killed mid-shard are replaced, and a scan
resumes across backends. One local Ray cluster and one pair of workers serve the whole module
(starting them costs most of this file's run time on 2 cores)."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

ray = pytest.importorskip("ray")

from lakes import cake_pairs, pairs_lake  # noqa: E402

from sculpt.cli.main import main  # noqa: E402
from sculpt.lake.store import Lake, with_schema_version, write_parquet_atomic  # noqa: E402
from sculpt.scan.models import tiny_model  # noqa: E402
from sculpt.scan.ray_backend import ScanWorkers, scan_ray  # noqa: E402
from sculpt.scan.run import ScanConfig, SpanBatch, scan  # noqa: E402

LAYER = 2
CONFIG = ScanConfig(layer=LAYER, shard_size=4, sample_tokens=120, batch_tokens=256)
LOG_PARTITION = {"dataset": "demo"}


def make_lake(root: Path, n: int = 11) -> Lake:
    """Pairs of varied lengths (some multi-turn), so shards and batches differ in shape."""
    return pairs_lake(root, cake_pairs(n))


class SpanLog:
    """A sink that writes one row per span it saw (shard by shard, like the SAE sink), and can
    stop the scan (KeyboardInterrupt) or kill its own process at a chosen point."""

    key = "span-log"

    def __init__(self, spec: SpanLogSpec) -> None:
        self.spec = spec
        self.rows: list[dict[str, Any]] = []
        self.shards_ended = 0

    def consume(self, batch: SpanBatch) -> None:
        if self.spec.interrupt_at == self.shards_ended:
            raise KeyboardInterrupt
        marker = Path(self.spec.kill_marker) if self.spec.kill_marker else None
        if marker and not marker.exists() and set(batch.pair_ids) & set(self.spec.kill_pairs):
            marker.touch()
            os._exit(1)  # the worker process dies mid-shard, as on a lost node
        for i, (pair_id, side) in enumerate(zip(batch.pair_ids, batch.sides, strict=True)):
            span = batch.acts[int(batch.offsets[i]) : int(batch.offsets[i + 1])]
            self.rows.append(
                {"pair_id": pair_id, "side": side, "n": len(span), "act_sum": float(span.sum())}
            )

    def end_shard(self, lake: Lake, shard: int) -> None:
        table = with_schema_version(pa.Table.from_pylist(self.rows))
        write_parquet_atomic(table, self._staging(lake) / f"part-{shard:05d}.parquet")
        self.rows, self.shards_ended = [], self.shards_ended + 1

    def finish(self, lake: Lake) -> None:
        lake.promote(self._staging(lake), "span_log", LOG_PARTITION)

    def _staging(self, lake: Lake) -> Path:
        return lake.staging_dir("span_log", LOG_PARTITION, self.key)


@dataclass(frozen=True)
class SpanLogSpec:
    """The picklable factory Ray workers rebuild the sink from."""

    interrupt_at: int | None = None
    kill_marker: str | None = None
    kill_pairs: tuple[str, ...] = ()

    def __call__(self, lake: Lake) -> SpanLog:
        return SpanLog(self)


@pytest.fixture(scope="module")
def workers() -> Any:
    # Workers cannot import this test module: ship the sink classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    pool = ScanWorkers("tiny", num_workers=2, max_restarts=2)
    yield pool
    pool.close()
    ray.shutdown()


def contents(lake: Lake) -> dict[str, list[dict[str, Any]]]:
    name = tiny_model().name
    return {
        "spans": lake.read("spans", {"dataset": "demo", "model": name}).to_pylist(),
        "acts": lake.read("acts", {"dataset": "demo", "model": name, "layer": LAYER}).to_pylist(),
        "span_log": lake.read("span_log", LOG_PARTITION).to_pylist(),
    }


def assert_same_lake(ours: Lake, reference: Lake) -> None:
    """Equal rows; activations within fp16 rounding (1 vs 2 torch threads sum differently)."""
    got, want = contents(ours), contents(reference)
    assert got["spans"] == want["spans"]
    for table, value in (("acts", "act"), ("span_log", "act_sum")):
        strip = [{k: v for k, v in r.items() if k != value} for r in got[table]]
        assert strip == [{k: v for k, v in r.items() if k != value} for r in want[table]]
        np.testing.assert_allclose(
            np.array([r[value] for r in got[table]], np.float32),
            np.array([r[value] for r in want[table]], np.float32),
            rtol=2e-3,
            atol=2e-3,
        )


def manifest(lake: Lake) -> dict[str, Any]:
    [record] = [r for r in lake.manifest() if r["stage"] == "scan"]
    return record


def test_ray_scan_writes_the_same_lake_as_the_local_scan(tmp_path: Path, workers: Any) -> None:
    local, distributed = make_lake(tmp_path / "local"), make_lake(tmp_path / "ray")
    expected = scan(
        local, "demo", tiny_model(), CONFIG, sinks=[SpanLogSpec()(local)], progress=False
    )
    report = scan_ray(
        distributed, "demo", "tiny", CONFIG, [SpanLogSpec()], workers=workers, progress=False
    )
    assert_same_lake(distributed, local)
    assert (report.key, report.pairs, report.shards, report.acts_rows, report.tokens) == (
        expected.key,
        expected.pairs,
        expected.shards,
        expected.acts_rows,
        expected.tokens,
    )
    ours, theirs = manifest(distributed), manifest(local)
    assert ours["complete"] and ours["shards_done"] == theirs["shards_done"] == [0, 1, 2]
    assert ours["acts_rows"] == theirs["acts_rows"]
    assert not list(distributed.root.rglob("*.staging")), "every staging folder was promoted"
    again = scan_ray(
        distributed, "demo", "tiny", CONFIG, [SpanLogSpec()], workers=workers, progress=False
    )
    assert again.already_done


def test_ray_resumes_a_scan_the_local_backend_left_half_done(tmp_path: Path, workers: Any) -> None:
    reference, lake = make_lake(tmp_path / "reference"), make_lake(tmp_path / "resumed")
    scan(reference, "demo", tiny_model(), CONFIG, sinks=[SpanLogSpec()(reference)], progress=False)
    with pytest.raises(KeyboardInterrupt):
        scan(
            lake,
            "demo",
            tiny_model(),
            CONFIG,
            sinks=[SpanLogSpec(interrupt_at=1)(lake)],
            progress=False,
        )
    assert manifest(lake)["shards_done"] == [0] and not lake.has("spans")
    report = scan_ray(
        lake, "demo", "tiny", CONFIG, [SpanLogSpec()], workers=workers, progress=False
    )
    assert report.resumed_shards == 1 and report.scanned_pairs == 7
    assert_same_lake(lake, reference)


def test_bad_worker_options_are_user_errors(
    tmp_path: Path, workers: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    lake = make_lake(tmp_path / "lake", n=2)
    code = main(
        [
            "scan",
            "demo",
            "--lake",
            str(lake.root),
            "--model",
            "tiny",
            "--backend",
            "ray",
            "--workers",
            "0",
        ]
    )
    assert code == 2 and "--workers 0" in capsys.readouterr().err


def test_a_worker_killed_mid_shard_leaves_a_complete_duplicate_free_lake(
    tmp_path: Path, workers: Any
) -> None:
    reference, lake = make_lake(tmp_path / "reference"), make_lake(tmp_path / "killed")
    marker = tmp_path / "killed-once"
    # The pairs of shard 1 (rows 4..7): the worker dies on its first batch of that shard.
    spec = SpanLogSpec(kill_marker=str(marker), kill_pairs=tuple(f"{i:016x}" for i in range(4, 8)))
    report = scan_ray(lake, "demo", "tiny", CONFIG, [spec], workers=workers, progress=False)
    assert marker.exists(), "a worker really died"
    assert report.scanned_pairs == 11 and manifest(lake)["complete"]
    got = contents(lake)
    spans = [(r["pair_id"], r["side"]) for r in got["spans"]]
    assert len(spans) == len(set(spans)) == 3 * 11
    positions = [(r["pair_id"], r["side"], r["pos"]) for r in got["acts"]]
    assert len(positions) == len(set(positions))
    assert not list(lake.root.rglob("*.tmp"))
    scan(reference, "demo", tiny_model(), CONFIG, sinks=[spec(reference)], progress=False)
    assert_same_lake(lake, reference)
