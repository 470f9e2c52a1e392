"""Vector concepts: a direction in the residual stream from positive vs negative examples.

Difference of means at layer L (as persona vectors), or a logistic probe's direction (`probe`),
over every token of example responses, or at the last prompt token of example prompts (where a
model settles whether to refuse: Arditi et al.'s refusal direction). A span's score is its largest
(or mean, `score`) token projection onto the unit direction, z-scored over the dataset's spans. The direction is stored in `lake/vectors/<dataset>/<name>.safetensors` (+ `.json`
meta), so training can ablate or steer it (DESIGN §5). Direction files are tensors only: never a
pickle, since a lake or a plan may come from someone else.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sculpt.concepts.registry import Concept, Spans, score_table, write_concepts
from sculpt.errors import UserError
from sculpt.lake.store import Lake, check_name, slug, write_json_atomic

VECTOR_DIR = "vectors"
DIRECTION_KEY = "direction"
"""The tensor's name inside a direction file."""
Position = Literal["response", "last_prompt"]
POSITIONS: tuple[str, ...] = ("response", "last_prompt")
Summary = Literal["max", "mean"]
SUMMARIES: tuple[str, ...] = ("max", "mean")


@dataclass
class VectorConfig:
    """How to build a vector concept."""

    layer: int | None = None
    """Residual-stream layer (after block L); none: the model's default layer."""
    probe: bool = False
    """Fit a logistic probe on token activations instead of taking the difference of means."""
    seed: int = 0
    """Seed of the probe."""
    position: Position = "response"
    """Where the examples' activations are read: `response`, every token of each example as an
    assistant reply; `last_prompt`, each example is a user prompt and only its last prompt token
    counts (the one before the reply's first word), e.g. harmful vs benign requests for a
    refusal direction."""
    score: Summary = "max"
    """How a span's token projections become its score: the largest (a concept that shows in a
    few words), or the mean (a stance that colours a whole reply: a direction read at the last
    prompt token sits well below its peak on a reply's tokens, where one token's maximum is
    noisy)."""

    def __post_init__(self) -> None:
        if self.position not in POSITIONS:
            raise ValueError(f"position {self.position!r}: expected one of {', '.join(POSITIONS)}")
        if self.score not in SUMMARIES:
            raise ValueError(f"score {self.score!r}: expected one of {', '.join(SUMMARIES)}")


def read_examples(path: str | Path) -> list[str]:
    """Example texts: one per line (.txt), or a JSON list / JSONL of strings or {"text": ...}."""
    path = Path(path)
    try:
        raw = path.read_text()
    except OSError as exc:
        raise UserError(
            f"{path}: cannot read ({exc.strerror}); pass a text or JSONL file"
        ) from None
    texts: list[str] = []
    if path.suffix in (".json", ".jsonl"):
        try:
            items = (
                json.loads(raw)
                if path.suffix == ".json"
                else [json.loads(line) for line in raw.splitlines() if line.strip()]
            )
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: bad JSON ({exc.msg}, line {exc.lineno})") from None
        texts = [i["text"] if isinstance(i, dict) else str(i) for i in items]
    else:
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise UserError(f"{path}: no examples; put one example text per line")
    return texts


def example_pairs(
    texts: Sequence[str], tag: str, position: Position = "response"
) -> list[dict[str, Any]]:
    """Examples as `pairs` rows: the text is the assistant's response to an empty prompt, or
    (`last_prompt`) the user's prompt, answered by a one-word stub the direction never reads."""
    as_prompt = position == "last_prompt"
    return [
        {
            "pair_id": f"{tag}{i:012d}",
            "prompt": json.dumps([{"role": "user", "content": t if as_prompt else ""}]),
            "chosen": "x" if as_prompt else t,
            "rejected": "x" if as_prompt else t,
            "row": i,
        }
        for i, t in enumerate(texts)
    ]


def token_acts(
    loaded: Any, rows: list[dict[str, Any]], layer: int, side: str = "chosen"
) -> list[torch.Tensor]:
    """Per-span activations ([n_tokens, d]) of one side of `rows`, in row order."""
    from sculpt.scan.run import ScanConfig, iter_span_batches

    config = ScanConfig(layer=layer, sample_tokens=0)
    out: dict[str, torch.Tensor] = {}
    for batch in iter_span_batches(loaded, rows, config):
        for i, (pair_id, span_side) in enumerate(zip(batch.pair_ids, batch.sides, strict=True)):
            if span_side == side:
                out[pair_id] = batch.acts[batch.offsets[i] : batch.offsets[i + 1]].float().cpu()
    return [out[r["pair_id"]] for r in rows]


def example_acts(
    loaded: Any, texts: Sequence[str], tag: str, layer: int, position: Position
) -> torch.Tensor:
    """The activations a direction is fit on ([n, d]): every response token of each example, or
    one row per example, its last prompt token (see `VectorConfig.position`)."""
    rows = example_pairs(texts, tag, position)
    if position == "response":
        return torch.cat(token_acts(loaded, rows, layer))
    return torch.stack([acts[-1] for acts in token_acts(loaded, rows, layer, side="prompt")])


def fit_direction(
    positive: torch.Tensor, negative: torch.Tensor, probe: bool, seed: int = 0
) -> torch.Tensor:
    """Unit direction separating positive from negative token activations."""
    if not probe:
        direction = positive.mean(0) - negative.mean(0)
    else:
        from sklearn.linear_model import LogisticRegression

        x = torch.cat([positive, negative]).numpy()
        y = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
        scale = x.std(0) + 1e-6
        fit = LogisticRegression(max_iter=2000, random_state=seed).fit(x / scale, y)
        direction = torch.from_numpy(fit.coef_[0] / scale).float()
    norm = direction.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise UserError("positive and negative examples give no direction; use distinct examples")
    return direction / norm


def span_scores(
    spans_acts: Sequence[torch.Tensor], direction: torch.Tensor, summary: Summary = "max"
) -> np.ndarray:
    """Max (or mean) token projection per span (0 for an empty span)."""
    lengths = torch.tensor([len(a) for a in spans_acts])
    flat = (
        torch.cat([a for a in spans_acts if len(a)])
        if any(len(a) for a in spans_acts)
        else torch.zeros(0, len(direction))
    )
    projection = flat @ direction
    owner = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    if summary == "mean":
        total = torch.zeros(len(lengths)).index_add(0, owner, projection)
        return (total / lengths.clamp_min(1)).numpy()
    best = torch.full((len(lengths),), -torch.inf).scatter_reduce(0, owner, projection, "amax")
    return torch.where(torch.isinf(best), torch.zeros_like(best), best).numpy()


def span_summary(meta: dict[str, Any]) -> Summary:
    """The span summary a stored vector was scored with (`max` for an older sculpt's meta), so
    generations are scored as its dataset was."""
    summary = meta.get("config", {}).get("score", "max")
    return "mean" if summary == "mean" else "max"


def vector_path(lake: Lake, dataset: str, name: str) -> Path:
    """`vectors/<dataset>/<name>.safetensors`: one file per name (names are checked, not mapped)."""
    return (
        lake.root / VECTOR_DIR / check_name(dataset) / f"{check_name(name, 'vector')}.safetensors"
    )


def save_direction(direction: torch.Tensor, path: Path) -> None:
    """Write a direction file (safetensors: tensors only, atomically)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({DIRECTION_KEY: direction.detach().cpu().float().contiguous()}, str(tmp))
    tmp.replace(path)


def load_direction(path: Path) -> torch.Tensor:
    """A direction file's tensor: safetensors, or a tensor-only `.pt` of an older sculpt (read
    with `weights_only=True`, so a pickle that would run code is refused, not run)."""
    import pickle

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix == ".pt":
            saved = torch.load(path, map_location="cpu", weights_only=True)
            tensor = saved.get(DIRECTION_KEY) if isinstance(saved, dict) else saved
        else:
            tensor = load_file(str(path)).get(DIRECTION_KEY)
    except FileNotFoundError:
        raise UserError(f"{path}: no such direction file; re-run `sculpt plan`") from None
    except (pickle.UnpicklingError, SafetensorError, RuntimeError, OSError, ValueError) as exc:
        raise UserError(
            f"{path}: not a direction file sculpt reads ({str(exc).splitlines()[0][:120]}); "
            "rebuild it with `sculpt concept vector` or `sculpt plan`"
        ) from None
    if not isinstance(tensor, torch.Tensor) or tensor.dim() not in (1, 2):
        raise UserError(
            f"{path}: expected a tensor `{DIRECTION_KEY}` of shape [d_model] or [k, d_model]; "
            "rebuild it with `sculpt concept vector` or `sculpt plan`"
        )
    return tensor.float()


def build_vector(
    lake: Lake,
    dataset: str,
    name: str,
    positive: Sequence[str],
    negative: Sequence[str],
    config: VectorConfig,
    model: Any = None,
) -> dict[str, Any]:
    """Fit the direction, score every span of `pairs` [dataset], register `vec:`/`probe:<name>`."""
    from sculpt.scan.models import LoadedModel, load_model
    from sculpt.scan.run import read_pairs

    vector_path(lake, dataset, name)  # a name that is not one folder is refused before any work
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    layer = loaded.check_layer(config.layer)
    config = replace(config, layer=layer)
    pos = example_acts(loaded, positive, "p", layer, config.position)
    neg = example_acts(loaded, negative, "n", layer, config.position)
    direction = fit_direction(pos, neg, config.probe, config.seed)
    rows = read_pairs(lake, dataset)
    spans, per_span = _dataset_span_acts(loaded, rows, layer)
    raw = span_scores(per_span, direction, config.score)
    z = (raw - raw.mean()) / (raw.std() + 1e-12)
    kind = "probe" if config.probe else "vector"
    concept_id = f"{'probe' if config.probe else 'vec'}:{name}"
    meta = {
        "name": name,
        "concept_id": concept_id,
        "kind": kind,
        "dataset": dataset,
        "model": loaded.name,
        "d_model": loaded.d_model,
        "config": asdict(config),
        "n_positive": len(positive),
        "n_negative": len(negative),
        "score_mean": float(raw.mean()),
        "score_sd": float(raw.std()),
    }
    path = vector_path(lake, dataset, name)
    save_direction(direction, path)
    write_json_atomic(meta, path.with_suffix(".json"))
    concept = Concept(
        concept_id,
        kind,
        name,
        members=[name],
        source={
            "file": str(path.relative_to(lake.root)),
            "layer": layer,
            "model": loaded.name,
        },
    )
    write_concepts(
        lake,
        dataset,
        f"vector-{slug(name)}",
        [concept],
        score_table([concept_id], spans, z[None, :]),
    )
    return meta


def _dataset_span_acts(
    loaded: Any, rows: list[dict[str, Any]], layer: int
) -> tuple[Spans, list[torch.Tensor]]:
    from sculpt.scan.run import ScanConfig, iter_span_batches

    spans = Spans([], [], [])
    acts: list[torch.Tensor] = []
    for batch in iter_span_batches(loaded, rows, ScanConfig(layer=layer, sample_tokens=0)):
        for i in range(len(batch.pair_ids)):
            spans.pair_ids.append(batch.pair_ids[i])
            spans.sides.append(batch.sides[i])
            spans.texts.append("")
            acts.append(batch.acts[batch.offsets[i] : batch.offsets[i + 1]].float().cpu())
    return spans, acts


def load_vector(lake: Lake, dataset: str, name: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """(unit direction [d_model], meta incl. layer) of a stored vector concept."""
    path = vector_path(lake, dataset, name)
    legacy = path.with_suffix(".pt")  # an older sculpt's {"direction", **meta} file
    meta_path = path.with_suffix(".json")
    if not path.exists() and not legacy.exists():
        raise UserError(f"vector {name}: none for dataset {dataset}; run `sculpt concept vector`")
    direction = load_direction(path if path.exists() else legacy)
    try:
        meta = json.loads(meta_path.read_text())
        meta["layer"] = int(meta["config"]["layer"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(
            f"{meta_path}: missing or not the vector's meta (config.layer); rebuild it with "
            f"`sculpt concept vector {dataset} {name}`"
        ) from None
    return direction, meta
