"""`sculpt sae train|load|ls`, `sculpt encode`, `sculpt features`, `sculpt concept lexical|ngrams|vector`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sculpt.cli.options import add_config_flags, config_from_args
from sculpt.cli.output import print_table
from sculpt.errors import UserError
from sculpt.lake.store import Lake
from sculpt.sae.config import SaeTrainConfig
from sculpt.terminal import visible


def register(add: Any) -> None:
    _register_sae(add)
    encode = add(
        "encode",
        "Encode every span through an SAE: span_features, token_features, feature cards.",
        "sculpt encode demo --sae demo-L15-w2048-k32",
    )
    encode.add_argument("name", help="dataset name")
    encode.add_argument(
        "--sae", required=True, metavar="SAE_ID", help="an SAE from `sculpt sae ls`"
    )
    encode.add_argument(
        "--model", default=None, metavar="M", help="the SAE's model (default smollm2)"
    )
    encode.add_argument(
        "--top-k", type=int, default=20, help="top token activations kept per feature"
    )
    encode.add_argument(
        "--from-acts",
        action="store_true",
        help="encode the stored fp16 `acts` (when they hold every token) instead of re-scanning",
    )
    encode.set_defaults(func=cmd_encode)

    features = add(
        "features",
        "Print feature cards (built from the encoding if missing).",
        "sculpt features demo --sae demo-L15-w2048-k32 --feature 12 --feature 40",
    )
    features.add_argument("name", help="dataset name")
    features.add_argument("--sae", required=True, metavar="SAE_ID")
    features.add_argument("--feature", type=int, action="append", help="only these features")
    features.add_argument("--top", type=int, default=10, help="cards to print (densest first)")
    features.add_argument("--rebuild", action="store_true", help="rebuild the cards first")
    features.add_argument(
        "--labeler",
        default=None,
        metavar="URL",
        help="OpenAI-compatible chat endpoint for labels, e.g. http://localhost:8000/v1 "
        "(optional; labels never feed statistics)",
    )
    features.add_argument(
        "--labeler-model", default="default", help="the `model` field sent to the labeler"
    )
    features.set_defaults(func=cmd_features)
    _register_concept(add)


def _register_sae(add: Any) -> None:
    group = add("sae", "Train, register and list SAEs.", "sculpt sae train demo --layer 15")
    sub = group.add_subparsers(dest="sae_command", metavar="SUBCOMMAND")
    train = add(
        "train",
        "Train a BatchTopK SAE (sae-lens) on the dataset's sampled `acts`.",
        "sculpt sae train demo --layer 15 --width 2048 --k 32",
        parent=sub,
    )
    train.add_argument("name", help="dataset name (scanned first with `sculpt scan`)")
    add_config_flags(train, SaeTrainConfig, dest="sae")
    train.add_argument(
        "--id",
        dest="sae_id",
        default=None,
        help="SAE id (default <dataset>-L<layer>-w<width>-k<k>)",
    )
    train.set_defaults(func=cmd_sae_train)
    load = add(
        "load",
        "Register a local sae-lens folder or a sae-lens release.",
        "sculpt sae load ./my-sae --id mine --layer 15",
        parent=sub,
    )
    load.add_argument("source", help="folder with cfg.json + sae_weights.safetensors, or a release")
    load.add_argument("--id", dest="sae_id", default=None, help="id in this lake")
    load.add_argument("--release-id", default=None, help="the SAE's id within a release")
    load.add_argument(
        "--layer", type=int, default=None, help="layer it reads (default: from its hook)"
    )
    load.add_argument("--model", default=None, help="model it reads (default smollm2)")
    load.set_defaults(func=cmd_sae_load)
    ls = add("ls", "List the lake's SAEs with their quality.", "sculpt sae ls", parent=sub)
    ls.set_defaults(func=cmd_sae_ls)
    group.set_defaults(func=lambda args: group.print_help())


def _register_concept(add: Any) -> None:
    group = add("concept", "Lexical, n-gram and vector concepts.", "sculpt concept lexical demo")
    sub = group.add_subparsers(dest="concept_command", metavar="SUBCOMMAND")
    lexical = add(
        "lexical",
        "Score built-in detectors (+ your regexes) on every span.",
        "sculpt concept lexical demo --file concepts.yaml",
        parent=sub,
    )
    lexical.add_argument("name", help="dataset name")
    lexical.add_argument("--file", default=None, help="YAML: `name: REGEX` per concept")
    lexical.set_defaults(func=cmd_lexical)
    ngrams = add(
        "ngrams",
        "Discover n-grams that separate chosen from rejected (Fightin' Words).",
        "sculpt concept ngrams demo --top 25 --min-count 10",
        parent=sub,
    )
    ngrams.add_argument("name", help="dataset name")
    ngrams.add_argument("--top", type=int, default=25, help="concepts kept each way")
    ngrams.add_argument("--min-count", type=int, default=10, help="minimum occurrences")
    ngrams.add_argument("--max-n", type=int, default=4, help="longest n-gram in words")
    ngrams.set_defaults(func=cmd_ngrams)
    vector = add(
        "vector",
        "A direction from positive vs negative examples, scored on every span.",
        "sculpt concept vector demo flattery --positive pos.txt --negative neg.txt",
        parent=sub,
    )
    vector.add_argument("name", help="dataset name")
    vector.add_argument("concept", help="concept name (vec:<name> or probe:<name>)")
    vector.add_argument("--positive", required=True, help="examples that show it, one per line")
    vector.add_argument("--negative", required=True, help="examples that don't, one per line")
    vector.add_argument(
        "--layer", type=int, default=None, help="residual layer (default: the model's middle block)"
    )
    vector.add_argument("--model", default=None, help="model (default smollm2)")
    vector.add_argument("--probe", action="store_true", help="logistic probe, not mean difference")
    vector.add_argument(
        "--position",
        choices=("response", "last_prompt"),
        default="response",
        help="examples are replies (every token) or prompts (last prompt token: refusal)",
    )
    vector.add_argument(
        "--score", choices=("max", "mean"), default="max", help="span score: max or mean projection"
    )
    vector.set_defaults(func=cmd_vector)
    group.set_defaults(func=lambda args: group.print_help())


def cmd_sae_train(args: argparse.Namespace) -> int:
    from sculpt.sae.training import train_sae

    config = config_from_args(SaeTrainConfig, args, dest="sae", command="sae train")
    info = train_sae(Lake.open(args.lake), args.name, config, args.sae_id)
    q = info["quality"]
    print(
        f"sae {info['sae_id']}: {info['width']} features, k {info['k']}, layer {info['layer']} "
        f"of {info['model']}; {info['tokens']} tokens in {info['train_seconds']:.0f} s"
    )
    print(
        f"held-out ({q['tokens']} tokens): FVE {q['fve']:.3f}, L0 {q['l0']:.1f}, "
        f"dead {q['dead_fraction']:.1%}"
    )
    return 0


def cmd_sae_load(args: argparse.Namespace) -> int:
    from sculpt.sae.registry import register_sae

    info = register_sae(
        Lake.open(args.lake), args.source, args.sae_id, args.layer, args.model, args.release_id
    )
    print(
        f"sae {info['sae_id']}: registered ({info['width']} features, d_in {info['d_in']}, "
        f"layer {info['layer']} of {info['model']})"
    )
    return 0


def cmd_sae_ls(args: argparse.Namespace) -> int:
    from sculpt.sae.registry import list_saes

    saes = list_saes(Lake.open(args.lake))
    if not saes:
        print("no SAEs yet (`sculpt sae train NAME` or `sculpt sae load FOLDER`)")
        return 0
    rows = []
    for s in saes:
        q = s.get("quality") or {}
        rows.append(
            [
                s["sae_id"],
                s["model"],
                s["layer"],
                s["width"],
                s.get("k"),
                _fmt(q.get("fve")),
                _fmt(q.get("l0"), 1),
                _fmt(q.get("dead_fraction")),
            ]
        )
    print_table(["sae", "model", "layer", "width", "k", "fve", "l0", "dead"], rows)
    return 0


def _fmt(value: Any, digits: int = 3) -> Any:
    return None if value is None else round(float(value), digits)


def cmd_encode(args: argparse.Namespace) -> int:
    from sculpt.sae.cards import build_cards
    from sculpt.sae.encode import encode, encode_from_acts

    lake = Lake.open(args.lake)
    if args.from_acts:
        spans = encode_from_acts(lake, args.name, args.sae, top_k=args.top_k)
        print(f"encoded {spans} spans of {args.name} from the stored acts")
    else:
        report = encode(lake, args.name, args.sae, args.model, top_k=args.top_k)
        for line in report.summary():
            print(line)
    cards = build_cards(lake, args.name, args.sae)
    print(
        f"features: {cards.num_rows} cards written (`sculpt features {args.name} --sae {args.sae}`)"
    )
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    from sculpt.sae.cards import build_cards
    from sculpt.sae.labeler import Labeler

    lake = Lake.open(args.lake)
    labeler = Labeler(args.labeler, args.labeler_model) if args.labeler else None
    if args.rebuild or labeler or not lake.has("features", {"sae": args.sae}):
        build_cards(lake, args.name, args.sae, labeler=labeler)
    rows = lake.read("features", {"sae": args.sae}).to_pylist()
    if args.feature:
        rows = [r for r in rows if r["feature"] in set(args.feature)]
    else:
        rows = sorted(rows, key=lambda r: -r["density"])[: args.top]
    for row in rows:
        print_card(row)
    return 0


def print_card(row: dict[str, Any], contexts: int = 5) -> None:
    """One card: id, label, density, mean activation, over-represented tokens, contexts."""
    tokens = ", ".join(f"{t!r} {z:+.1f}" for t, z in json.loads(row["top_tokens"])[:6])
    label = visible(row["label"], newlines=False)
    print(f"feature {row['feature']}: {label}  [{row['label_source']}]")
    print(f"  density {row['density']:.4f}  mean act {row['mean_act']:.2f}  tokens: {tokens}")
    for c in json.loads(row["contexts"])[:contexts]:
        text = f"{c['text_before']}⟦{c['token']}⟧{c['text_after']}"
        print(f"  {c['act']:7.2f}  {visible(text, newlines=False).replace('␊', '⏎')}")


def cmd_lexical(args: argparse.Namespace) -> int:
    from sculpt.concepts.lexical import score_dataset

    written = score_dataset(Lake.open(args.lake), args.name, args.file)
    print(f"lexical: {len(written)} concepts scored on every span of {args.name}")
    return 0


def cmd_ngrams(args: argparse.Namespace) -> int:
    from sculpt.concepts.ngrams import NgramConfig, discover_ngrams

    try:
        config = NgramConfig(max_n=args.max_n, top=args.top, min_count=args.min_count)
    except ValueError as exc:
        raise UserError(f"concept ngrams: {exc}") from None
    results = discover_ngrams(Lake.open(args.lake), args.name, config)
    print_table(
        ["ngram", "z", "chosen", "rejected"],
        [[r.text, round(r.z, 2), r.chosen_count, r.rejected_count] for r in results],
    )
    return 0


def cmd_vector(args: argparse.Namespace) -> int:
    from sculpt.concepts.vectors import VectorConfig, build_vector, read_examples

    positive, negative = read_examples(args.positive), read_examples(args.negative)
    meta = build_vector(
        Lake.open(args.lake),
        args.name,
        args.concept,
        positive,
        negative,
        VectorConfig(layer=args.layer, probe=args.probe, position=args.position, score=args.score),
        args.model,
    )
    print(
        f"{meta['concept_id']}: {meta['n_positive']} positive / {meta['n_negative']} negative "
        f"examples at layer {meta['config']['layer']} of {meta['model']}; spans scored (z)"
    )
    return 0
