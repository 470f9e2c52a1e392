"""A synthetic lake with planted concepts, for the TUI's tests, benchmark and a look in tmux.

It writes every table the triage app reads (pairs, spans, span_features, token_features,
features, concepts, concept_span_scores, clusters, hypotheses) with the schemas of
lake/README.md, so the app can be built and measured before the real producers run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa

from sculpt.analysis.config import AnalyzeConfig
from sculpt.analysis.stats import benjamini_hochberg
from sculpt.lake import schemas
from sculpt.lake.store import Lake

SAE_ID = "demo-sae"
N_CLUSTERS = 8

THEMES: list[tuple[str, list[str], float, float]] = [
    # label, words, chance in chosen, chance in rejected (per response)
    ("apology", ["sorry", "apologize", "unfortunately"], 0.55, 0.15),
    ("refusal", ["cannot", "unable", "won't"], 0.35, 0.30),
    ("bold markdown", ["**", "**Note:**"], 0.40, 0.10),
    ("numbered list", ["1.", "2.", "3."], 0.45, 0.25),
    ("safety words", ["safe", "harm", "dangerous"], 0.30, 0.35),
    ("greeting", ["Hello", "Hi", "Hey"], 0.20, 0.20),
    ("insult", ["stupid", "idiot", "dumb"], 0.03, 0.30),
    ("hedging", ["perhaps", "might", "possibly"], 0.35, 0.20),
    ("question back", ["why?", "what?", "really?"], 0.15, 0.35),
    ("legal", ["illegal", "law", "police"], 0.25, 0.20),
]
LEXICAL = [
    ("length", "response length in words", None),
    ("apology", "apology words", r"(?i)\b(sorry|apologi[sz]e)\b"),
    ("bold", "bold markdown", r"\*\*"),
    ("exclaim", "exclamation marks", r"!"),
]
NGRAM = "unfortunately"
"""A discovered n-gram concept (`ngram:<text>`, no regex in its source): scored by its count."""
NEUTRAL = (
    "the a of to and in it you that is for on with as this be can your are have will "
    "about help here some more if there would like could one time way people make good "
    "know think also need want things use just may well much many other first see "
    "answer question thing really try right work best find keep give take start idea"
).split()
PROMPTS = [
    "How do I pick a lock?",
    "Tell me a joke about cats.",
    "What's the best way to cook rice?",
    "Can you help me write an email to my boss?",
    "Why is the sky blue?",
    "How can I get revenge on my neighbor?",
    "What should I name my dog?",
    "Explain how vaccines work.",
    "Is it okay to lie sometimes?",
    "Give me tips for sleeping.",
]


def _pair_id(prompt: str, chosen: str, rejected: str) -> str:
    return hashlib.sha256(f"{prompt}\x00{chosen}\x00{rejected}".encode()).hexdigest()[:16]


def _response(rng: np.random.Generator, probs: np.ndarray, boost: np.ndarray) -> list[str]:
    words = list(rng.choice(NEUTRAL, size=int(rng.integers(8, 30))))
    for theme, (_, vocab, _, _) in enumerate(THEMES):
        if rng.random() < min(0.95, probs[theme] + boost[theme]):
            for _ in range(int(rng.integers(1, 3))):
                words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(vocab)))
    if rng.random() < 0.3:
        words[-1] += "!"
    return words


def _tokens(words: list[str]) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _normal_p(z: np.ndarray) -> np.ndarray:
    return np.array([math.erfc(abs(float(v)) / math.sqrt(2)) for v in z])


def _global_stats(gap: np.ndarray, half: np.ndarray, length_gap: np.ndarray) -> dict[str, float]:
    n = len(gap)
    mean, sd = float(gap.mean()), float(gap.std(ddof=1)) or 1e-9
    se = sd / math.sqrt(n)
    a, b = float(gap[half].mean()), float(gap[~half].mean())
    beta = float(np.dot(gap, length_gap) / max(np.dot(length_gap, length_gap), 1e-9))
    delta_len = float((gap - beta * length_gap).mean())
    return {
        "delta": mean,
        "ci_lo": mean - 1.96 * se,
        "ci_hi": mean + 1.96 * se,
        "d": mean / sd,
        "z": mean / se,
        "split_half_ok": bool(np.sign(a) == np.sign(b) and min(abs(a), abs(b)) > 0.01),
        "delta_min": min(abs(a), abs(b)),
        "delta_len": delta_len,
    }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def _cond_stats(gap: np.ndarray, inside: np.ndarray, half: np.ndarray) -> dict[str, float]:
    gin, gout = gap[inside], gap[~inside]
    delta = _mean(gin) - _mean(gout)
    var_in, var_out = float(gin.var(ddof=1)), float(gout.var(ddof=1))
    se = math.sqrt(var_in / len(gin) + var_out / len(gout)) or 1e-9
    pooled = math.sqrt((var_in + var_out) / 2) or 1e-9
    da = _mean(gap[inside & half]) - _mean(gap[~inside & half])
    db = _mean(gap[inside & ~half]) - _mean(gap[~inside & ~half])
    return {
        "delta": delta,
        "ci_lo": delta - 1.96 * se,
        "ci_hi": delta + 1.96 * se,
        "d": delta / pooled,
        "z": delta / se,
        "delta_min": min(abs(da), abs(db)),
        "split_half_ok": bool(np.sign(da) == np.sign(db) and min(abs(da), abs(db)) > 0.01),
        "delta_len": delta,
    }


class _Builder:
    """Generates the pairs first, then derives every table from the same token streams."""

    def __init__(self, n_pairs: int, seed: int, hostile: str = "") -> None:
        self.rng = np.random.default_rng(seed)
        self.hostile = hostile
        self.n_pairs = n_pairs
        self.word_features: dict[str, list[int]] = {}
        for f, (_, vocab, _, _) in enumerate(THEMES):
            for w in vocab:
                self.word_features.setdefault(w.lower(), []).append(f)
        cluster = self.rng.integers(0, N_CLUSTERS, size=n_pairs)
        cluster[self.rng.random(n_pairs) < 0.05] = -1
        self.cluster = cluster
        self.pairs: list[dict] = []
        self.words: dict[tuple[int, str], list[str]] = {}

    def make_pairs(self, dataset: str) -> pa.Table:
        chosen_p = np.array([t[2] for t in THEMES])
        rejected_p = np.array([t[3] for t in THEMES])
        for i in range(self.n_pairs):
            boost = np.zeros(len(THEMES))
            k = int(self.cluster[i])
            if k >= 0:  # each data cluster leans on one theme: the conditional view finds it
                boost[k % len(THEMES)] = 0.35
            prompt_text = PROMPTS[i % len(PROMPTS)] + f" (case {i})"
            chosen = _response(self.rng, chosen_p, boost)
            rejected = _response(self.rng, rejected_p, np.zeros(len(THEMES)))
            if self.hostile:  # one more "word" on every span: texts, tokens and spans hold it
                prompt_text += " " + self.hostile
                chosen, rejected = [*chosen, self.hostile], [*rejected, self.hostile]
            self.words[(i, "chosen")] = chosen
            self.words[(i, "rejected")] = rejected
            self.words[(i, "prompt")] = prompt_text.split()
            prompt = json.dumps([{"role": "user", "content": prompt_text}])
            c_text, r_text = " ".join(chosen), " ".join(rejected)
            self.pairs.append(
                {
                    "pair_id": _pair_id(prompt, c_text, r_text),
                    "row": i,
                    "prompt": prompt,
                    "chosen": c_text,
                    "rejected": r_text,
                    "source": "sample.jsonl",
                    "meta": json.dumps({"synthetic": True}),
                }
            )
        return pa.Table.from_pylist(self.pairs)

    def token_tables(self) -> tuple[pa.Table, pa.Table, pa.Table, list[list[tuple]]]:
        spans, token_rows, span_rows = [], [], []
        contexts: list[list[tuple]] = [[] for _ in THEMES]
        for (i, side), words in self.words.items():
            toks = _tokens(words)
            pid = self.pairs[i]["pair_id"]
            spans.append(
                {
                    "pair_id": pid,
                    "side": side,
                    "n_tokens": len(toks),
                    "n_truncated": 0,
                    "token_ids": [hash(t) % 49152 for t in toks],
                    "tokens": toks,
                }
            )
            acts: dict[int, list[float]] = {}
            for pos, w in enumerate(words):
                for f in self.word_features.get(w.lower(), ()):
                    act = float(np.round(self.rng.uniform(1.0, 6.0), 3))
                    acts.setdefault(f, []).append(act)
                    token_rows.append((pid, side, pos, f, act))
                    if side != "prompt" and len(contexts[f]) < 400:
                        contexts[f].append((act, pid, side, pos, words))
            for f, vals in acts.items():
                span_rows.append((pid, side, f, max(vals), len(vals) / len(toks), sum(vals)))
        tf = pa.table(
            {
                name: [r[j] for r in token_rows]
                for j, name in enumerate(["pair_id", "side", "pos", "feature", "act"])
            }
        ).cast(schemas.TOKEN_FEATURES)
        sf = pa.table(
            {
                name: [r[j] for r in span_rows]
                for j, name in enumerate(
                    ["pair_id", "side", "feature", "max_act", "freq", "sum_act"]
                )
            }
        ).cast(schemas.SPAN_FEATURES)
        return pa.Table.from_pylist(spans), tf, sf, contexts

    def score_matrix(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Per-pair chosen and rejected scores of every real concept (columns)."""
        ids = [f"sae:{SAE_ID}:{f}" for f in range(len(THEMES))]
        ids += [f"lex:{name}" for name, _, _ in LEXICAL]
        ids += [f"ngram:{NGRAM}", f"fc:{SAE_ID}:0"]
        out = {}
        for side in ("chosen", "rejected"):
            m = np.zeros((self.n_pairs, len(ids)), dtype=np.float64)
            for i in range(self.n_pairs):
                words = self.words[(i, side)]
                text = " ".join(words)
                for w in words:
                    for f in self.word_features.get(w.lower(), ()):
                        m[i, f] = max(m[i, f], 3.5)
                for j, (_name, _, pattern) in enumerate(LEXICAL):
                    col = len(THEMES) + j
                    m[i, col] = (
                        len(words) if pattern is None else len(re.findall(pattern, text, re.I))
                    )
                m[i, len(THEMES) + len(LEXICAL)] = sum(w.lower() == NGRAM for w in words)
                m[i, -1] = m[i, 0] + m[i, 7]  # feature cluster: apology + hedging
            out[side] = m
        return ids, out["chosen"], out["rejected"]


def _feature_rows(
    contexts: list[list[tuple]], n_features: int, rng: np.random.Generator
) -> pa.Table:
    rows = []
    for f in range(n_features):
        if f < len(THEMES):
            label, vocab = THEMES[f][0], THEMES[f][1]
            ctx = sorted(contexts[f], key=lambda c: -c[0])[:6]
            ctx_json = [
                {
                    "pair_id": pid,
                    "side": side,
                    "pos": pos,
                    "act": act,
                    "text_before": " ".join(words[max(0, pos - 6) : pos]),
                    "token": words[pos],
                    "text_after": " ".join(words[pos + 1 : pos + 7]),
                }
                for act, pid, side, pos, words in ctx
            ]
        else:
            vocab = [NEUTRAL[(f * 7 + j) % len(NEUTRAL)] for j in range(3)]
            label, ctx_json = f"feature {f}: {' / '.join(vocab)}", []
        rows.append(
            {
                "feature": f,
                "density": float(rng.uniform(0.0005, 0.05)),
                "mean_act": float(rng.uniform(1, 5)),
                "label": label,
                "label_source": "tokens",
                "top_tokens": json.dumps(
                    [[w, round(3.0 - 0.4 * j, 2)] for j, w in enumerate(vocab)]
                ),
                "contexts": json.dumps(ctx_json),
            }
        )
    return pa.Table.from_pylist(rows).cast(schemas.FEATURES)


HYPOTHESIS_SCHEMA = schemas.HYPOTHESES
LENGTH_SHARE = AnalyzeConfig().length_share  # the engine's length-only rule


def _real_hypotheses(
    ids: list[str],
    labels: list[str],
    kinds: list[str],
    chosen: np.ndarray,
    rejected: np.ndarray,
    cluster: np.ndarray,
    rng: np.random.Generator,
) -> dict:
    n = chosen.shape[0]
    half = np.asarray(rng.random(n) < 0.5)
    length_col = ids.index("lex:length")
    length_gap = chosen[:, length_col] - rejected[:, length_col]
    cols: dict[str, list] = {name: [] for name in HYPOTHESIS_SCHEMA.names}
    for j, cid in enumerate(ids):
        gap = chosen[:, j] - rejected[:, j]
        if gap.std() == 0:
            continue
        rates = (float((chosen[:, j] > 0).mean()), float((rejected[:, j] > 0).mean()))
        rows: list[tuple[str, int | None, int, dict[str, float]]] = [
            ("global", None, n, _global_stats(gap, half, length_gap))
        ]
        for k in range(N_CLUSTERS):
            inside = np.asarray(cluster == k)
            if inside.sum() >= 3 and (~inside).sum() >= 3:
                rows.append(("conditional", k, int(inside.sum()), _cond_stats(gap, inside, half)))
        for scope, cluster_id, n_in, st in rows:
            hid = f"h-{scope[0]}-{j}-{'all' if cluster_id is None else cluster_id}"
            kept = abs(st["delta_len"]) / max(abs(st["delta"]), 1e-12)
            length_only = cid != "lex:length" and kept <= 1.0 - LENGTH_SHARE
            for name, value in (
                ("hypothesis_id", hid),
                ("scope", scope),
                ("concept_id", cid),
                ("label", labels[j]),
                ("kind", kinds[j]),
                ("data_cluster", cluster_id),
                ("n", n),
                ("n_in", n_in),
                ("length_only", length_only),
                ("lean", "chosen" if st["delta"] >= 0 else "rejected"),
                ("chosen_rate", rates[0]),
                ("rejected_rate", rates[1]),
            ):
                cols[name].append(value)
            for name in (
                "delta",
                "ci_lo",
                "ci_hi",
                "d",
                "z",
                "split_half_ok",
                "delta_min",
                "delta_len",
            ):
                cols[name].append(st[name])
    z = np.array(cols["z"])
    cols["p"] = list(_normal_p(z))
    cols["q"] = list(benjamini_hochberg(np.array(cols["p"])))
    cols["rank"] = [0] * len(z)
    return cols


def _filler_hypotheses(
    count: int, first_feature: int, rng: np.random.Generator, n_pairs: int
) -> tuple[dict, int]:
    """Random, mostly null hypotheses over made-up features, to reach bench scale cheaply."""
    per = 1 + N_CLUSTERS
    n_concepts = max(1, math.ceil(count / per))
    concept = np.arange(count) // per
    k = np.arange(count) % per - 1
    feature = first_feature + concept
    is_ngram = concept % 10 == 9
    ids = np.where(
        is_ngram,
        np.char.add("ngram:w", concept.astype(str)),
        np.char.add(f"sae:{SAE_ID}:", feature.astype(str)),
    )
    words = np.array(NEUTRAL)
    label = np.where(
        is_ngram,
        np.char.add("ngram ", words[concept % len(words)]),
        np.char.add(np.char.add("feature ", feature.astype(str)), ": ")
        + words[(feature * 7) % len(words)],
    )
    delta = rng.normal(0, 0.01, count)
    se = rng.uniform(0.02, 0.06, count)
    z = delta / se
    p = _normal_p(z) if count < 50_000 else np.exp(-0.5 * z * z)  # fast approximation at scale
    n_in = np.where(k < 0, n_pairs, n_pairs // N_CLUSTERS)
    cols = {
        "hypothesis_id": np.char.add("h-x-", np.arange(count).astype(str)),
        "scope": np.where(k < 0, "global", "conditional"),
        "concept_id": ids,
        "label": label,
        "kind": np.where(is_ngram, "ngram", "sae_feature"),
        "data_cluster": pa.array(np.where(k < 0, 0, k), pa.int32(), mask=k < 0),
        "n": np.full(count, n_pairs),
        "n_in": n_in,
        "delta": delta,
        "ci_lo": delta - 1.96 * se,
        "ci_hi": delta + 1.96 * se,
        "d": delta / (se * 10),
        "z": z,
        "p": p,
        "q": np.minimum(1.0, p * 20),
        "split_half_ok": rng.random(count) < 0.3,
        "delta_min": np.abs(delta) * rng.uniform(0.2, 1.0, count),
        "delta_len": delta * 0.9,
        "length_only": rng.random(count) < 0.02,
        "lean": np.where(delta >= 0, "chosen", "rejected"),
        "chosen_rate": rng.uniform(0, 0.3, count),
        "rejected_rate": rng.uniform(0, 0.3, count),
        "rank": np.zeros(count, dtype=np.int32),
    }
    return cols, n_concepts


def _hypotheses_table(real: dict, filler: dict | None) -> pa.Table:
    tables = [pa.table({k: real[k] for k in HYPOTHESIS_SCHEMA.names}).cast(HYPOTHESIS_SCHEMA)]
    if filler is not None:
        tables.append(
            pa.table({k: filler[k] for k in HYPOTHESIS_SCHEMA.names}).cast(HYPOTHESIS_SCHEMA)
        )
    table = pa.concat_tables(tables)
    order = np.lexsort((-np.abs(table["delta_min"].to_numpy()), table["q"].to_numpy()))
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return table.set_column(table.schema.get_field_index("rank"), "rank", pa.array(rank))


def build_sample_lake(
    root: str | Path,
    n_pairs: int = 300,
    n_hypotheses: int = 2000,
    seed: int = 0,
    dataset: str = "demo",
    analysis: str = "a0",
    hostile: str = "",
    findings: bool = True,
) -> Lake:
    """Write a lake with `n_pairs` pairs and about `n_hypotheses` hypotheses under `root`;
    `hostile` is appended to every prompt, response and real concept label. With `findings`,
    the apology concepts (lexical, SAE, n-gram, cluster) are one finding, bold (lexical, SAE)
    another, and every other concept a finding of its own."""
    lake = Lake.open(root)
    b = _Builder(n_pairs, seed, hostile)
    lake.replace_partition("pairs", {"dataset": dataset}, b.make_pairs(dataset))
    spans, token_features, span_features, contexts = b.token_tables()
    lake.replace_partition("spans", {"dataset": dataset, "model": "sample-model"}, spans)
    lake.replace_partition("span_features", {"dataset": dataset, "sae": SAE_ID}, span_features)
    lake.replace_partition("token_features", {"dataset": dataset, "sae": SAE_ID}, token_features)
    ids, chosen, rejected = b.score_matrix()
    labels = [t[0] for t in THEMES] + [desc for _, desc, _ in LEXICAL]
    labels += [NGRAM, "apology + hedging"]
    labels = [f"{label} {hostile}" if hostile else label for label in labels]
    kinds = ["sae_feature"] * len(THEMES) + ["lexical"] * len(LEXICAL)
    kinds += ["ngram", "feature_cluster"]
    real = _real_hypotheses(ids, labels, kinds, chosen, rejected, b.cluster, b.rng)
    n_real = len(real["hypothesis_id"])
    if n_hypotheses < n_real:
        real = {k: v[:n_hypotheses] for k, v in real.items()}
    filler, n_filler = None, 0
    if n_hypotheses > n_real:
        filler, n_filler = _filler_hypotheses(n_hypotheses - n_real, len(THEMES), b.rng, n_pairs)
    hyps = _hypotheses_table(real, filler)
    lake.replace_partition("hypotheses", {"dataset": dataset, "analysis": analysis}, hyps)
    if findings:
        _write_findings(lake, {"dataset": dataset, "analysis": analysis}, hyps)
    lake.replace_partition(
        "features", {"sae": SAE_ID}, _feature_rows(contexts, len(THEMES) + n_filler, b.rng)
    )
    _write_concepts(lake, dataset, analysis, hyps, ids, labels, kinds, chosen, rejected, b.pairs)
    clusters = pa.table(
        {
            "pair_id": [p["pair_id"] for p in b.pairs],
            "data_cluster": pa.array(b.cluster, pa.int32()),
            "silent": b.cluster < 0,
            "prompt_cluster": pa.array(np.arange(n_pairs) % len(PROMPTS), pa.int32()),
        }
    )
    lake.replace_partition("clusters", {"dataset": dataset, "analysis": analysis}, clusters)
    lake.mark_done("analyze", f"{dataset}/{analysis}", {"dataset": dataset, "analysis": analysis})
    return lake


GROUPS = (
    ("lex:apology", f"sae:{SAE_ID}:0", f"ngram:{NGRAM}", f"fc:{SAE_ID}:0"),
    ("lex:bold", f"sae:{SAE_ID}:2"),
)
"""Planted findings: anchor first, then the concepts that echo it."""


def _write_findings(lake: Lake, part: dict[str, str], hyps: pa.Table) -> None:
    rows = [
        r
        for r in hyps.filter(pa.compute.equal(hyps["scope"], "global")).to_pylist()
        if r["d"] is not None
    ]
    by_id = {r["concept_id"]: r for r in rows}
    echo = {m: g[0] for g in GROUPS for m in g[1:] if g[0] in by_id and m in by_id}
    groups: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["p"], r["concept_id"])):
        groups.setdefault(echo.get(r["concept_id"], r["concept_id"]), []).append(r)
    findings, members = [], []
    for rank, (anchor_id, group) in enumerate(groups.items(), start=1):
        group.sort(key=lambda r: r["concept_id"] != anchor_id)
        anchor, finding_id = group[0], f"finding:{anchor_id}"
        findings.append(
            {
                "finding_id": finding_id,
                "rank": rank,
                "label": anchor["label"],
                "label_concept": anchor_id,
                "kinds": ",".join(sorted({str(r["kind"]) for r in group})),
                "members": json.dumps([r["concept_id"] for r in group]),
                "n_members": len(group),
                "lean": anchor["lean"],
                "n": anchor["n"],
                "n_in": anchor["n_in"],
                **{k: anchor[k] for k in ("delta", "ci_lo", "ci_hi", "d", "z", "p", "q")},
                **{k: anchor[k] for k in ("split_half_ok", "delta_min", "delta_len")},
                "length_only": anchor["length_only"],
                "chosen_share": anchor["chosen_rate"],
                "rejected_share": anchor["rejected_rate"],
                "dense": False,
                "template": False,
            }
        )
        members += finding_members(finding_id, group)
    write_findings(lake, part, findings, members)


def finding_members(finding_id: str, group: list[dict]) -> list[dict]:
    """`finding_members` rows of one finding: its anchor first, the rest as echoes."""
    return [
        {
            "finding_id": finding_id,
            "concept_id": r["concept_id"],
            "position": position,
            "role": "anchor" if position == 0 else "echo",
            "kind": r["kind"],
            "label": r["label"],
            "agreement": 1.0 if position == 0 else 0.9,
            "hypothesis_id": r["hypothesis_id"],
            **{k: r[k] for k in ("delta", "ci_lo", "ci_hi", "d", "q", "split_half_ok")},
            **{k: r[k] for k in ("lean", "chosen_rate", "rejected_rate")},
            "dense": False,
            "template": False,
        }
        for position, r in enumerate(group)
    ]


def write_findings(
    lake: Lake, part: dict[str, str], findings: list[dict], members: list[dict]
) -> None:
    lake.replace_partition("findings", part, pa.Table.from_pylist(findings, schemas.FINDINGS))
    lake.replace_partition(
        "finding_members", part, pa.Table.from_pylist(members, schemas.FINDING_MEMBERS)
    )


def _write_concepts(
    lake: Lake,
    dataset: str,
    analysis: str,
    hyps: pa.Table,
    ids: list[str],
    labels: list[str],
    kinds: list[str],
    chosen: np.ndarray,
    rejected: np.ndarray,
    pairs: list[dict],
) -> None:
    patterns = {f"lex:{name}": pattern for name, _, pattern in LEXICAL}
    distinct = hyps.group_by(["concept_id", "label", "kind"]).aggregate([])
    source = [
        json.dumps({"pattern": patterns.get(c)})
        if k == "lexical"
        else json.dumps({"n": len(c[6:].split())})
        if k == "ngram"
        else json.dumps({"sae": SAE_ID, "layer": 15})
        for c, k in zip(
            distinct["concept_id"].to_pylist(), distinct["kind"].to_pylist(), strict=True
        )
    ]
    members = [
        json.dumps([0, 7]) if c.startswith("fc:") else json.dumps([c])
        for c in distinct["concept_id"].to_pylist()
    ]
    concepts = distinct.append_column("members", pa.array(members)).append_column(
        "source", pa.array(source)
    )
    kind = concepts["kind"]
    by_family = {
        "lexical": concepts.filter(pa.compute.equal(kind, "lexical")),
        "ngrams": concepts.filter(pa.compute.equal(kind, "ngram")),
        f"sae-{SAE_ID}": concepts.filter(
            pa.compute.invert(pa.compute.is_in(kind, pa.array(["lexical", "ngram"])))
        ),
    }
    for family, table in by_family.items():
        lake.replace_partition("concepts", {"dataset": dataset, "family": family}, table)
    rows: dict[str, list] = {"concept_id": [], "pair_id": [], "side": [], "score": []}
    pair_ids = [p["pair_id"] for p in pairs]
    for j, cid in enumerate(ids):
        if cid.startswith("sae:"):
            continue  # SAE features are read from span_features through the concept_scores view
        for side, matrix in (("chosen", chosen), ("rejected", rejected)):
            rows["concept_id"] += [cid] * len(pair_ids)
            rows["pair_id"] += pair_ids
            rows["side"] += [side] * len(pair_ids)
            rows["score"] += matrix[:, j].tolist()
    scores = pa.table(rows).cast(schemas.CONCEPT_SPAN_SCORES)
    lake.replace_partition("concept_span_scores", {"dataset": dataset, "family": "lexical"}, scores)
