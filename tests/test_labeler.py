"""LLM labels for feature cards against a real local HTTP server speaking the OpenAI chat API."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sculpt.sae.labeler import Labeler, llm_labels


class ChatServer:
    """POST /v1/chat/completions: answers "concept of <token>" for the first [[token]] in the
    prompt, or HTTP 500 when that token is in `fail_on`."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_on = fail_on or set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, **body})
                prompt = body["messages"][0]["content"]
                token = re.findall(r"\[\[(.*?)\]\]", prompt.split("\n\n", 1)[1], re.S)[0]
                if token in outer.fail_on:
                    self.send_response(500)
                    self.end_headers()
                    return
                answer = {"choices": [{"message": {"content": f"concept of {token}\nextra"}}]}
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ChatServer]:
    srv = ChatServer(fail_on={"tok3"})
    yield srv
    srv.close()


def cards(n: int) -> list[dict[str, Any]]:
    return [
        {
            "feature": i,
            "label": f"tokens {i}",
            "label_source": "tokens",
            "top_tokens": json.dumps([[f"tok{i}", 3.0]]),
            "contexts": json.dumps(
                [{"text_before": "a ", "token": f"tok{i}", "text_after": " b", "act": 1.0}]
            ),
        }
        for i in range(n)
    ]


def test_labels_come_from_the_endpoint_and_failures_keep_token_labels(
    server: ChatServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = cards(12)
    replaced = llm_labels(rows, Labeler(server.url, model="my-model", workers=4), progress=False)
    assert replaced == 11
    assert rows[0]["label"] == "concept of tok0" and rows[0]["label_source"] == "llm"
    assert rows[3]["label"] == "tokens 3" and rows[3]["label_source"] == "tokens"
    assert {r["path"] for r in server.requests} == {"/v1/chat/completions"}
    assert {r["model"] for r in server.requests} == {"my-model"}
    assert "a [[tok5]] b" in next(
        r["messages"][0]["content"]
        for r in server.requests
        if "tok5" in r["messages"][0]["content"]
    )
    err = capsys.readouterr().err
    assert "1/12 requests failed (HTTP 500)" in err and "\n" == err[-1] and err.count("\n") == 1


def test_an_unreachable_endpoint_is_given_up_on_after_the_first_requests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = ChatServer()
    url = dead.url
    dead.close()  # nothing listens there now
    rows = cards(50)
    assert llm_labels(rows, Labeler(url, workers=4, timeout=2), progress=False) == 0
    assert all(r["label_source"] == "tokens" for r in rows)
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"labeler {url}/chat/completions: ") and "kept token labels" in err
    assert "\n" not in err
