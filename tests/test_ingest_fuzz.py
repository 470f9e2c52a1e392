"""Generated malformed records and files for `sculpt ingest`: each ends with exit 0 or one line and
exit 2, never a traceback, and an exit 2 leaves the lake byte-identical (issue 14, item 10).

Runs `main()` in this process, so an example costs milliseconds; the crash classes a child
process would show (a segfault, a FIFO that blocks) have their own tests in test_ingest.py.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sculpt.cli.main import main
from sculpt.data.ingest import ingest
from sculpt.lake.store import Lake

FIXTURES = Path(__file__).parent / "fixtures"

KEYS = ["prompt", "chosen", "rejected", "response_a", "response_b", "winner", "meta", "role"]
TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", " ", "\n\nHuman: hi\n\nAssistant: yo", "a", "b", "tie", "assistant", "user", '[{"role"']
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "bot", "x"]), "content": SCALARS}
)
VALUES = st.recursive(
    SCALARS | st.lists(MESSAGE, max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
RECORD = st.dictionaries(st.sampled_from(KEYS) | TEXT, VALUES, max_size=6)
GOOD = st.builds(
    lambda i, extra: {"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}", **extra},
    st.integers(0, 10**6),
    st.dictionaries(st.sampled_from(["id", "score", "n"]), SCALARS, max_size=2),
)

# What broken files hold: quotes, brackets, escapes, bad UTF-8, lone surrogates, NUL, long numbers.
NOISE = st.sampled_from(
    [b'"', b"{", b"[", b"]", b"}", b"\\", b"\n", b",", b"\xff", b"\xc3", b"\\ud800", b"\x00"]
    + [b"9" * 5000, b"[" * 3000, b"\r\n", b'""', b"\xef\xbb\xbf"]
) | st.binary(max_size=4)


def _jsonl(records: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _csv(records: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["prompt", "chosen", "rejected"])
    for r in records:
        values = r.values() if isinstance(r, dict) else [r]
        writer.writerow([v if isinstance(v, str) else json.dumps(v) for v in values][:3])
    return out.getvalue().encode("utf-8", "surrogatepass")


def _columns(records: list[Any]) -> Any:
    import pyarrow as pa

    def cell(r: Any, key: str) -> str | None:
        value = r.get(key) if isinstance(r, dict) else r
        text = value if isinstance(value, str) or value is None else json.dumps(value)
        return None if text is None else text.encode("utf-8", "replace").decode()

    return pa.table({k: [cell(r, k) for r in records] for k in ("prompt", "chosen", "rejected")})


def _parquet(records: list[Any]) -> bytes:
    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(_columns(records), out)
    return out.getvalue()


def _arrow(records: list[Any]) -> bytes:
    import pyarrow as pa

    table, out = _columns(records), io.BytesIO()
    with pa.ipc.new_stream(out, table.schema) as writer:
        writer.write_table(table)
    return out.getvalue()


ENCODERS = {
    "parquet": _parquet,
    "arrow": _arrow,
    "jsonl": _jsonl,
    "json": lambda records: json.dumps(records).encode(),
    "csv": _csv,
    "jsonl.gz": lambda records: gzip.compress(_jsonl(records)),
}


@st.composite
def broken_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """(suffix, bytes): good and bad records in one container, then bytes cut, inserted or
    replaced."""
    records = draw(st.lists(GOOD | RECORD | VALUES, max_size=6))
    suffix = draw(st.sampled_from(sorted(ENCODERS)))
    data = bytearray(ENCODERS[suffix](records))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "replace", "cut"]))
        if action == "cut":
            del data[at:]
        else:
            noise = draw(NOISE)
            data[at : at + (len(noise) if action == "replace" else 0)] = noise
    return suffix, bytes(data)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz") / "lake"
    ingest(Lake.open(root), FIXTURES / "hh.jsonl", "keep")
    return root


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=broken_files())
def test_any_file_ends_in_a_report_or_one_line_and_an_untouched_lake(
    lake_root: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, bytes]
) -> None:
    suffix, data = case
    before = _snapshot(lake_root)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data.{suffix}"
        path.write_bytes(data)
        code = main(["ingest", str(path), "--name", "keep", "--lake", str(lake_root), "--quiet"])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("sculpt ingest: error: "), err
        assert _snapshot(lake_root) == before
    else:
        assert err == "", err
