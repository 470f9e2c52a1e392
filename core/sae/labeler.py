"""Optional LLM labels for feature cards, from any OpenAI-compatible chat endpoint.

A label is a reading aid only: statistics never see it. Requests run concurrently; a feature
whose request fails keeps its token label, and an endpoint that fails every one of the first
requests is given up on at once (one line on stderr), so a wrong URL costs seconds, not hours.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Labeler:
    url: str
    """An OpenAI-compatible endpoint: `http://host:port/v1` or the full `/chat/completions` URL."""
    model: str = "default"
    """The `model` field of each request (vLLM and llama.cpp servers name their model here)."""
    workers: int = 8
    """Requests in flight at once."""
    timeout: float = 30.0
    """Seconds to wait for one answer."""

    @property
    def endpoint(self) -> str:
        url = self.url.rstrip("/")
        return url if url.endswith("/chat/completions") else url + "/chat/completions"


def prompt_for(row: dict[str, Any], contexts: int = 6) -> str:
    """What the LLM reads for one card: its over-represented tokens and top contexts."""
    shown = [
        f"{c['text_before']}[[{c['token']}]]{c['text_after']}"
        for c in json.loads(row["contexts"])[:contexts]
    ]
    return (
        "These text snippets show where one feature of a language model fires most "
        f"(the token in [[ ]]). Tokens over-represented there: {row['top_tokens']}.\n\n"
        + "\n".join(shown)
        + "\n\nName the concept in at most six words. Answer with the name only."
    )


def ask(labeler: Labeler, prompt: str) -> str:
    """One chat completion; raises OSError/ValueError/KeyError/IndexError when it fails."""
    body = json.dumps(
        {
            "model": labeler.model,
            "temperature": 0,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()
    request = urllib.request.Request(labeler.endpoint, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=labeler.timeout) as response:
        answer = json.load(response)["choices"][0]["message"]["content"]
    return str(answer).strip().splitlines()[0][:80] if str(answer).strip() else ""


def llm_labels(rows: list[dict[str, Any]], labeler: Labeler, progress: bool = True) -> int:
    """Replace token labels with the LLM's where it answers; returns how many were replaced."""
    from tqdm import tqdm

    def label(row: dict[str, Any]) -> str | Exception:
        try:
            return ask(labeler, prompt_for(row))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            return exc

    probe, rest = rows[: labeler.workers], rows[labeler.workers :]
    with ThreadPoolExecutor(labeler.workers) as pool:
        answers = list(pool.map(label, probe))
        if probe and all(isinstance(a, Exception) for a in answers):
            print(
                f"labeler {labeler.endpoint}: {_reason(answers[0])}; kept token labels "
                "(check the URL, or drop --labeler)",
                file=sys.stderr,
            )
            return 0
        bar = tqdm(
            pool.map(label, rest),
            total=len(rest),
            desc="labels",
            disable=not progress,
            file=sys.stderr,
        )
        answers += list(bar)
    replaced = 0
    for row, answer in zip(rows, answers, strict=True):
        if isinstance(answer, str) and answer:
            row["label"], row["label_source"] = answer, "llm"
            replaced += 1
    failed = sum(isinstance(a, Exception) for a in answers)
    if failed:
        print(
            f"labeler {labeler.endpoint}: {failed}/{len(rows)} requests failed "
            f"({_reason(next(a for a in answers if isinstance(a, Exception)))}); "
            "those cards keep token labels",
            file=sys.stderr,
        )
    return replaced


def _reason(exc: Any) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]
