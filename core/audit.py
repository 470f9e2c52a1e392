"""`sculpt audit`: ingest → scan → SAE → encode → cards → lexical + n-grams → analyze → report.

Each stage records a hash of its inputs in the manifest (`audit__<dataset>-<stage>`); a stage
whose hash matches a finished record, and whose outputs are still in the lake, is skipped, so a
second audit of the same data reuses the lake. A changed input re-runs that stage and every stage
downstream of it. Heavy libraries are imported inside the stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sculpt.analysis.config import AnalyzeConfig
from sculpt.errors import UserError
from sculpt.lake.store import Lake, slug
from sculpt.sae.config import SaeTrainConfig
from sculpt.scan.config import ScanConfig, default_layer

STAGE = "audit"


def _audit_sae() -> SaeTrainConfig:
    # 1024 features × 3 epochs keep the demo's SAE to a couple of minutes on 2 CPU cores;
    # `sculpt sae train` has wider defaults.
    return SaeTrainConfig(width=1024, k=32, epochs=3.0)


@dataclass
class AuditConfig:
    """What `sculpt audit` runs: each stage's own config, nested, and what ties them together.
    All fields but `progress` and `out` enter the stage hashes."""

    model: str | None = None
    """Model spec: omit for the default (SmolLM2-135M-Instruct), `tiny` for a test model, a local
    Hugging Face folder, or a hub id already in the local cache."""
    sae: str | None = None
    """An SAE already in the lake (`sculpt sae train` / `sculpt sae load`); default: train one."""
    fmt: Literal["auto", "trl", "conversational", "hh", "pairwise"] = "auto"
    """Input format for ingest."""
    mapping: str | None = None
    """Column mapping for ingest, e.g. `chosen=preferred,rejected=dispreferred`."""
    seed: int = 0
    """Seed of every random step: set on the scan, the SAE and the analysis."""
    device: str | None = None
    """cpu, cuda, cuda:N (default: cuda if available); set on the scan and the SAE."""
    out: Path | None = None
    """Report file (default: <lake>/reports/<name>.html)."""
    progress: bool = True
    """Progress bars on stderr."""
    scan: ScanConfig = field(default_factory=ScanConfig)
    """The scan (layer none: the SAE's layer, else the one a previous audit of this model
    read, else `default_layer`)."""
    sae_train: SaeTrainConfig = field(default_factory=_audit_sae)
    """The SAE trained when `sae` is not given."""
    analyze: AnalyzeConfig = field(default_factory=AnalyzeConfig)
    """The analysis."""

    def __post_init__(self) -> None:
        self.scan = dataclasses.replace(self.scan, seed=self.seed, device=self.device)
        self.sae_train = dataclasses.replace(self.sae_train, seed=self.seed, device=self.device)
        self.analyze = dataclasses.replace(self.analyze, seed=self.seed)
        if min(self.scan.max_prompt_tokens, self.scan.max_response_tokens) < 8:
            raise ValueError("max tokens per span: need at least 8")


@dataclass
class StageTime:
    name: str
    seconds: float
    skipped: bool
    note: str = ""

    @property
    def state(self) -> str:
        return "reused" if self.skipped else "ran"


@dataclass
class AuditReport:
    dataset: str
    report: Path
    stages: list[StageTime] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def lines(self) -> list[str]:
        """Per-stage times for the end of the run."""
        width = max(len(s.name) for s in self.stages)
        out = []
        for s in self.stages:
            note = f"  {s.note}" if s.note else ""
            out.append(f"  {s.name.ljust(width)}  {s.seconds:7.1f} s  {s.state}{note}")
        out.append(f"  {'total'.ljust(width)}  {self.seconds:7.1f} s")
        return out


def _without(config: Any, *names: str) -> dict[str, Any]:
    """A config's fields as a dict, less those that don't change a stage's output."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in names}


def _hash(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> list[Any]:
    """Name and content hash of the data file(s): changed data re-runs the audit from ingest."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder; pass a preference dataset file")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out: list[Any] = []
    for file in files:
        digest = hashlib.sha256()
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):  # noqa: B023 - fh is this loop's
                digest.update(chunk)
        out.append([file.name, digest.hexdigest()[:16]])
    return out


class Audit:
    """One audit of one dataset: runs the stages in order, skipping those already done."""

    def __init__(self, lake: Lake, data: Path | None, name: str, config: AuditConfig) -> None:
        self.lake, self.data, self.name, self.config = lake, data, name, config
        self.hashes: dict[str, str] = {}
        self.report = AuditReport(dataset=name, report=Path())
        self._loaded: Any = None
        self.layer: int | None = config.scan.layer
        self.sae_id: str | None = config.sae
        self.analysis: str | None = None

    # ---- the stage loop ---------------------------------------------------------------------
    def stage(
        self,
        name: str,
        inputs: list[str],
        params: dict[str, Any],
        run: Callable[[], str],
        outputs_exist: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run `run` unless a finished record with the same input hash exists and outputs remain."""
        digest = _hash(params, [self.hashes.get(i, "") for i in inputs])
        self.hashes[name] = digest
        key = f"{self.name}-{name}"
        record = self.lake.done(STAGE, key)
        started = time.perf_counter()
        if record and record.get("hash") == digest:
            self._restore(record.get("state", {}))
        if record and record.get("hash") == digest and outputs_exist():
            self.report.stages.append(StageTime(name, time.perf_counter() - started, True))
            return
        self._say(f"── {name}")
        note = run()
        self.lake.mark_done(STAGE, key, {"hash": digest, "state": self._state(), "note": note})
        self.report.stages.append(StageTime(name, time.perf_counter() - started, False, note))

    def _restore(self, state: dict[str, Any]) -> None:
        for key in ("layer", "sae_id", "analysis"):  # what later stages need from skipped ones
            if state.get(key) is not None and getattr(self, key) is None:
                setattr(self, key, state[key])

    def _say(self, text: str) -> None:
        if self.config.progress:
            print(text, file=sys.stderr, flush=True)

    def model(self) -> Any:
        """The loaded model, once per audit (only stages that need it pay for it)."""
        if self._loaded is None:
            from sculpt.scan.models import load_model

            self._loaded = load_model(self.config.model, self.config.device)
        return self._loaded

    def model_name(self) -> str:
        return str(self.model().name)

    # ---- stages -----------------------------------------------------------------------------
    def run(self) -> AuditReport:
        """Every stage up to the analysis; the caller renders the report (core never imports it)."""
        cfg = self.config
        self._ingest_stage()
        sae_params = {"sae": cfg.sae, **_without(cfg.sae_train, "device", "layer", "model")}
        if cfg.sae:  # a given SAE is encoded in the scan's own pass: one forward over the data
            self.stage("sae", [], sae_params, self._sae, self._sae_exists)
        self._resolve_layer()
        scan_params = {
            "model": cfg.model,
            "sae": cfg.sae,
            **_without(cfg.scan, "device"),
            "layer": self.layer,
        }
        self.stage("scan", ["ingest", "sae"], scan_params, self._scan, self._scanned)
        if not cfg.sae:
            self.stage("sae", ["scan"], sae_params, self._sae, self._sae_exists)
            self.stage("encode", ["sae"], {}, self._encode, self._encoded)
        self.stage("features", ["scan", "encode"], {}, self._features, self._carded)
        self.stage("lexical", ["ingest"], {}, self._lexical)
        self.stage("ngrams", ["ingest"], {"seed": cfg.seed}, self._ngrams)
        inputs = ["scan", "encode", "features", "lexical", "ngrams"]
        params = _without(cfg.analyze, "sae")
        self.stage("analyze", inputs, params, self._analyze, self._analyzed)
        return self.report

    def _ingest_stage(self) -> None:
        if self.data is None:
            if not self.lake.has("pairs", {"dataset": self.name}):
                raise UserError(f"dataset {self.name}: not in the lake; pass its data file")
            return
        cfg = self.config
        params = {"data": file_fingerprint(self.data), "fmt": cfg.fmt, "map": cfg.mapping}
        ingested = lambda: self.lake.has("pairs", {"dataset": self.name})  # noqa: E731
        self.stage("ingest", [], params, self._ingest, ingested)

    # ---- what each stage leaves in the lake (a reused stage must still find it there) -------
    def _scanned(self) -> bool:
        return self.lake.has("spans", {"dataset": self.name})

    def _carded(self) -> bool:
        return self.lake.has("features", {"sae": str(self.sae_id)})

    def _analyzed(self) -> bool:
        partition = {"dataset": self.name, "analysis": str(self.analysis)}
        return bool(self.analysis) and self.lake.has("hypotheses", partition)

    def _encoded(self) -> bool:
        return self.lake.has("span_features", {"dataset": self.name, "sae": str(self.sae_id)})

    def _resolve_layer(self) -> None:
        """The layer to read: given, else the one a previous audit of this model used, else mid."""
        if self.layer is not None:
            return
        if self.config.sae:
            from sculpt.sae.registry import load_sae

            self.layer = int(load_sae(self.lake, self.config.sae)[1]["layer"])
            return
        record = self.lake.done(STAGE, f"{self.name}-scan") or {}
        state = record.get("state", {})
        if state.get("layer") is not None and state.get("model_spec") == self.config.model:
            self.layer = int(state["layer"])
        else:
            self.layer = default_layer(int(self.model().n_layers))

    def _state(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "sae_id": self.sae_id,
            "analysis": self.analysis,
            "model_spec": self.config.model,
        }

    def _ingest(self) -> str:
        from sculpt.data.ingest import ingest

        assert self.data is not None
        found = ingest(
            self.lake,
            self.data,
            self.name,
            self.config.fmt,
            self.config.mapping,
            progress=self.config.progress,
        )
        rejected = sum(found.rejected.values())
        return f"{found.kept:,} pairs kept, {rejected:,} rejected"

    def _scan_config(self) -> ScanConfig:
        return self.config.scan.at_layer(int(self.layer or 0))

    def _sae_sink(self) -> Any:
        from sculpt.sae.encode import sae_sink

        return sae_sink(self.lake, str(self.sae_id), self.name)

    def _scan(self) -> str:
        from sculpt.scan.run import scan

        sinks = [self._sae_sink()] if self.config.sae else []
        found = scan(
            self.lake,
            self.name,
            self.model(),
            self._scan_config(),
            sinks=sinks,
            progress=self.config.progress,
        )
        tokens = sum(found.tokens.values())
        encoded = f", encoded with {self.sae_id}" if sinks else ""
        return (
            f"{found.model} layer {found.layer}: {found.pairs:,} pairs, {tokens:,} tokens read "
            f"(prompts + both responses, after truncation){encoded}"
        )

    def _sae_exists(self) -> bool:
        # The lake layout (lake/README.md), checked without importing torch for a reused stage.
        folder = self.lake.root / "saes" / slug(str(self.sae_id))
        return bool(self.sae_id) and (folder / "sculpt.json").exists()

    def _sae(self) -> str:
        from sculpt.sae.registry import load_sae
        from sculpt.sae.training import train_sae

        cfg = self.config
        if cfg.sae:
            _, info = load_sae(self.lake, cfg.sae)
            self.sae_id = cfg.sae
            return f"given: {cfg.sae} (layer {info.get('layer')})"
        train_config = dataclasses.replace(cfg.sae_train, layer=self.layer)
        info = train_sae(self.lake, self.name, train_config, progress=cfg.progress)
        self.sae_id = str(info["sae_id"])
        quality = info.get("quality", {})
        shown = ", ".join(f"{k} {v:.3g}" for k, v in quality.items() if isinstance(v, int | float))
        return f"trained {self.sae_id}: {shown}"

    def _encode(self) -> str:
        """Encode every span with the trained SAE: from the scan's activations when they hold
        every token (no second forward pass), else through a second forward pass."""
        from sculpt.sae.encode import encode
        from sculpt.sae.encode_acts import acts_cover_spans, encode_from_acts

        info = json.loads(
            (self.lake.root / "saes" / slug(str(self.sae_id)) / "sculpt.json").read_text()
        )
        model, layer = slug(str(info["model"])), int(info["layer"])
        if acts_cover_spans(self.lake, self.name, model, layer, self.config.scan.sample_tokens):
            tokens = encode_from_acts(
                self.lake, self.name, str(self.sae_id), model, layer, self.config.progress
            )
            return f"{tokens:,} tokens from the scan's activations (no second forward pass)"
        encode(
            self.lake,
            self.name,
            str(self.sae_id),
            model=self.model(),
            config=self._scan_config(),
            progress=self.config.progress,
        )
        return f"second forward pass: span_features and token_features for {self.sae_id}"

    def _lexical(self) -> str:
        from sculpt.concepts.lexical import score_dataset

        found = score_dataset(self.lake, self.name)
        return f"{len(found):,} built-in detectors scored"

    def _features(self) -> str:
        from sculpt.sae.cards import build_cards

        cards = build_cards(self.lake, self.name, str(self.sae_id))
        return f"{cards.num_rows:,} feature cards (contexts, top tokens, labels)"

    def _ngrams(self) -> str:
        from sculpt.concepts.ngrams import NgramConfig, discover_ngrams

        found = discover_ngrams(self.lake, self.name, NgramConfig())
        shown = ", ".join(repr(r.text) for r in found[:3]) if found else "none"
        return f"{len(found):,} n-grams registered (top: {shown})"

    def _analyze(self) -> str:
        from sculpt.analysis.analyze import analyze

        sae = self.sae_id if self.sae_id and self._encoded() else None
        config = dataclasses.replace(self.config.analyze, sae=sae)
        found = analyze(self.lake, self.name, config, progress=self.config.progress)
        self.analysis = found.analysis
        return f"{found.n_tested:,} concepts tested, {found.n_significant:,} with q < 0.05"


def audit(
    lake: Lake, data: Path | None, name: str, config: AuditConfig | None = None
) -> AuditReport:
    """Run the audit stages for `name` (ingesting `data` first); a second run reuses the lake."""
    return Audit(lake, data, name, config or AuditConfig()).run()
