"""`sculpt scan NAME`: read a dataset through a model's residual stream into the lake."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from sculpt.cli.options import add_config_flags, config_from_args
from sculpt.errors import UserError
from sculpt.lake.store import Lake


def register(add: Any) -> None:
    from sculpt.scan.config import ScanConfig

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
        "--sae",
        default=None,
        metavar="SAE_ID",
        help="encode with this SAE in the same pass (span_features); the scan reads its layer",
    )
    add_max_tokens_flag(parser)
    add_config_flags(parser, ScanConfig, dest="scan", skip=["share_prefix"])
    _add_ray_arguments(parser)
    parser.set_defaults(func=cmd_scan)


def add_max_tokens_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        metavar="N",
        help="shorthand for --max-prompt-tokens N --max-response-tokens N",
    )


def scan_config(args: argparse.Namespace, command: str = "scan") -> Any:
    """The ScanConfig of the flags given (`--max-tokens` caps both spans)."""
    from sculpt.scan.config import ScanConfig

    base = {}
    if args.max_tokens is not None:
        base = {"max_prompt_tokens": args.max_tokens, "max_response_tokens": args.max_tokens}
    return config_from_args(ScanConfig, args, dest="scan", command=command, base=base)


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
    from sculpt.scan.models import load_model
    from sculpt.scan.run import read_pairs, scan

    lake = Lake.open(args.lake)
    read_pairs(lake, args.name)  # the "run sculpt ingest" error before any loading
    config = scan_config(args)
    sink = None
    if args.sae:
        from sculpt.sae.encode import sae_sink
        from sculpt.sae.fit import sae_layer

        sink = sae_sink(lake, args.sae, args.name)
        config = config.at_layer(sae_layer(args.sae, sink.info, config.layer))
    if args.backend == "ray":
        return _scan_on_ray(args, lake, config)
    loaded = load_model(args.model, config.device, config.dtype)
    if sink is not None:
        from sculpt.sae.fit import check_sae_model

        check_sae_model(args.sae, sink.info, loaded.name)
    report = scan(lake, args.name, loaded, config, sinks=[sink] if sink else [])
    for line in report.summary():
        print(line)
    return 0


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
