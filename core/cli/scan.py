"""`sculpt scan NAME`: read a dataset through a model's residual stream into the lake."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from sculpt.errors import UserError
from sculpt.lake.store import Lake

DEFAULT_LAYER = 15


def register(add: Any) -> None:
    parser = add(
        "scan",
        "Run a dataset through a model up to one layer: token spans to `spans`, a seeded sample "
        "of activations to `acts` (and SAE features with --sae). Resumes after Ctrl-C.",
        "sculpt scan demo --layer 15 --max-tokens 512 --sample-tokens 200000",
    )
    parser.add_argument("name", help="dataset name given to `sculpt ingest`")
    parser.add_argument(
        "--model",
        default=None,
        metavar="M",
        help="HF folder, cached hub id, 'tiny' (random test model) or 'smollm2' (default)",
    )
    parser.add_argument(
        "--layer",
        type=int,
        default=None,
        metavar="L",
        help=f"residual stream after block L (0-based; default {DEFAULT_LAYER}, or the SAE's)",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=512,
        metavar="N",
        help="cap per span: prompts keep their end, responses their start",
    )
    parser.add_argument(
        "--sample-tokens",
        type=int,
        default=200_000,
        metavar="S",
        help="token activations kept in `acts` for SAE training (0: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the token sample")
    parser.add_argument(
        "--template",
        choices=["auto", "chat", "plain"],
        default="auto",
        help="prompt rendering: chat template, plain `role: content` lines, or "
        "auto (chat template if the tokenizer has one)",
    )
    parser.add_argument("--device", default=None, metavar="D", help="cpu, cuda, cuda:N")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["fp32", "bf16", "fp16"],
        help="default bf16 on GPU, fp32 on CPU",
    )
    parser.add_argument(
        "--batch-tokens",
        type=int,
        default=0,
        metavar="T",
        help="padded tokens per forward batch (0: 4096 on CPU, 32768 on GPU)",
    )
    parser.add_argument(
        "--sae",
        default=None,
        metavar="SAE_ID",
        help="encode with this SAE in the same pass (span_features)",
    )
    _add_ray_arguments(parser)
    parser.set_defaults(func=cmd_scan)


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: this process; ray: shards over a Ray cluster, one model "
        "replica per worker (same lake contents; needs `pip install ray`)",
    )
    parser.add_argument(
        "--address",
        default="local",
        metavar="A",
        help="--backend ray: 'local' (in-process cluster), 'auto' (the cluster "
        "of `ray start` on this node) or ray://host:port",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="W",
        help="--backend ray: model replicas (Ray actors)",
    )
    parser.add_argument(
        "--num-gpus-per-worker",
        type=float,
        default=0,
        metavar="G",
        help="--backend ray: GPUs each worker holds (0: CPU workers)",
    )


def cmd_scan(args: argparse.Namespace) -> int:
    from sculpt.lake.store import slug
    from sculpt.scan.models import load_model
    from sculpt.scan.run import ScanConfig, read_pairs, scan

    lake = Lake.open(args.lake)
    if not lake.has("pairs", {"dataset": args.name}):
        read_pairs(lake, args.name)  # raises the "run sculpt ingest" error before any loading
    sink = _sae_sink(lake, args.sae, args.name) if args.sae else None
    layer = _layer(args, sink)
    try:
        config = ScanConfig(
            layer=layer,
            max_prompt_tokens=args.max_tokens,
            max_response_tokens=args.max_tokens,
            sample_tokens=args.sample_tokens,
            seed=args.seed,
            template=args.template,
            device=args.device,
            dtype=args.dtype,
            batch_tokens=args.batch_tokens,
        )
    except ValueError as exc:
        raise UserError(f"scan: {exc}") from None
    if args.backend == "ray":
        return _scan_on_ray(args, lake, config)
    loaded = load_model(args.model, args.device, args.dtype)
    expected = getattr(sink, "info", {}).get("model") if sink else None
    if expected and slug(str(expected)) != slug(loaded.name):
        raise UserError(
            f"--sae {args.sae}: trained on {expected}, not {loaded.name}; pass --model for it"
        )
    report = scan(lake, args.name, loaded, config, sinks=[sink] if sink else [])
    for line in report.summary():
        print(line)
    return 0


def _layer(args: argparse.Namespace, sink: Any) -> int:
    """--layer, or the SAE's layer with --sae (a different explicit --layer is an error)."""
    sae_layer = getattr(sink, "info", {}).get("layer") if sink else None
    if sae_layer is None:
        return DEFAULT_LAYER if args.layer is None else int(args.layer)
    if args.layer is not None and int(args.layer) != int(sae_layer):
        raise UserError(
            f"--sae {args.sae} reads layer {sae_layer}, not --layer {args.layer}; drop --layer"
        )
    return int(sae_layer)


def _sae_sink(lake: Lake, sae_id: str, dataset: str) -> Any:
    """The SAE encoder sink from core/sae/encode.py (the concepts module), imported lazily."""
    if importlib.util.find_spec("sculpt.sae.encode") is None:
        raise UserError(
            f"--sae {sae_id}: SAE encoding is not available in this build (core/sae/encode.py is "
            "missing); scan without --sae"
        )
    from sculpt.sae import encode

    return encode.sae_sink(lake, sae_id, dataset)


def _scan_on_ray(args: argparse.Namespace, lake: Lake, config: Any) -> int:
    """The same scan on Ray: workers load the model (and re-create the SAE sink) themselves."""
    if importlib.util.find_spec("ray") is None:
        raise UserError("--backend ray: Ray is not installed; `pip install 'ray>=2.9'`")
    from sculpt.scan.ray_backend import SaeSinkSpec, scan_ray

    sinks = [SaeSinkSpec(args.sae, args.name)] if args.sae else []
    report = scan_ray(
        lake,
        args.name,
        args.model,
        config,
        sinks,
        args.address,
        args.num_gpus_per_worker,
        args.workers,
    )
    for line in report.summary():
        print(line)
    return 0
