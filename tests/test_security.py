"""A lake, a plan or a dataset name cannot take over the machine: opening a lake runs no SQL it
names, nothing is unpickled, paths stay inside, two names never share data, a replaced partition
is read whole, and bad input gets one line and exit 2 (issue 14)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest
from lakes import cake_pairs, pairs_lake

from sculpt.cli.main import main
from sculpt.errors import UserError
from sculpt.lake import schemas
from sculpt.lake.store import Lake

FIXTURES = Path(__file__).parent / "fixtures"
HOSTILE = "x as select 1; copy (select 'pwned') to 'pwned.csv'; create view y"
"""A table name that, spliced into `create view NAME as …`, makes opening the lake write a file."""


def _one_error_line(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("sculpt ") and "error:" in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture
def bucket() -> Iterator[str]:
    uri = f"memory://security-{uuid.uuid4().hex[:8]}"
    yield uri
    fs = fsspec.filesystem("memory")
    if fs.exists(uri):
        fs.rm(uri, recursive=True)


# ---- 1. opening a lake runs nothing and writes nothing --------------------------------------


def test_a_folder_named_like_sql_is_ignored_not_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    lake = pairs_lake(tmp_path / "lake", cake_pairs(3))
    for name in (HOSTILE, "q\" as select 1; copy (select 2) to 'pwned.csv'; --"):
        (lake.root / name).mkdir()
        source = next(lake.root.joinpath("pairs").rglob("*.parquet"))
        (lake.root / name / "part-0.parquet").write_bytes(source.read_bytes())
    assert main(["lake", "sql", "select count(*) as n from pairs", "--lake", "lake"]) == 0
    out, err = capsys.readouterr()
    assert "3" in out
    assert not list(tmp_path.rglob("pwned*")), "opening the lake ran a statement it named"
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "not a sculpt table" in warnings[0]
    assert Lake(lake.root).tables() == ["pairs"]


def test_a_pushed_lake_with_hostile_keys_runs_nothing(tmp_path, capsys, monkeypatch, bucket):
    from sculpt.lake.remote import COMMIT, push

    monkeypatch.chdir(tmp_path)
    pairs_lake(tmp_path / "lake", cake_pairs(3))
    push(tmp_path / "lake", bucket, progress=False)
    fs = fsspec.filesystem("memory")
    commit = json.loads(fs.cat_file(f"{bucket}/{COMMIT}"))
    commit["tables"][HOSTILE] = commit["tables"]["pairs"]
    fs.pipe_file(f"{bucket}/{COMMIT}", json.dumps(commit).encode())
    assert main(["lake", "sql", "select count(*) as n from pairs", "--lake", bucket]) == 0
    assert not list(tmp_path.rglob("pwned*"))
    assert "not a sculpt table" in capsys.readouterr().err

    # a commit that names files outside its snapshot (or globs) is refused, not followed
    for path in ("pairs/../../other/x.parquet", "pairs/*.parquet", "/etc/x.parquet"):
        bad = json.loads(json.dumps(commit))
        bad["tables"]["pairs"]["files"][0]["path"] = path
        fs.pipe_file(f"{bucket}/{COMMIT}", json.dumps(bad).encode())
        assert main(["lake", "sql", "select 1", "--lake", bucket]) == 2
        _one_error_line(capsys, COMMIT, "push again")


# ---- 6. a name is one dataset ---------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("日本語", "中文"), ("team a", "team-a")])
def test_two_names_never_share_a_dataset(tmp_path, capsys, first, second):
    root = str(tmp_path / "lake")
    data = str(FIXTURES / "trl.jsonl")
    assert main(["ingest", data, "--name", "reference", "--lake", root, "--quiet"]) == 0
    codes = {}
    for name in (first, second):
        codes[name] = main(["ingest", data, "--name", name, "--lake", root, "--quiet"])
        if codes[name] == 2:
            _one_error_line(capsys, "use only ASCII letters")
        capsys.readouterr()
    lake = Lake(Path(root))
    rows = lake.read("pairs", {"dataset": "reference"}).num_rows
    for name in (n for n, code in codes.items() if code == 0):  # each its own rows, by its name
        found = lake.sql("select count(*) as n from pairs where dataset = ?", [name])
        assert found.to_pylist() == [{"n": rows}], name
    assert codes[first] == 2  # not already a safe name: refused, with the fix in the message


def test_a_refused_name_says_what_to_use():
    lake_root = Path("unused")
    with pytest.raises(UserError, match="e.g. 'team-a'"):
        Lake(lake_root).partition_dir("pairs", {"dataset": "team a"})


# ---- 8. replacing a partition is atomic for readers -----------------------------------------


SWAPS = 120


def _version(i: int) -> list[pa.Table]:
    """Version i of the partition: 1 to 3 files, every row saying `v<i>`."""
    rows = [{**r, "chosen": f"v{i}"} for r in cake_pairs(6)]
    table = pa.Table.from_pylist(rows, schema=schemas.PAIRS)
    parts = 1 + i % 3
    step = -(-table.num_rows // parts)
    return [table.slice(k * step, step) for k in range(parts)]


def test_readers_racing_a_writer_see_the_old_or_the_new_partition(tmp_path):
    lake = Lake.open(tmp_path / "lake")
    lake.replace_partition("pairs", {"dataset": "d"}, _version(0))
    errors: list[BaseException] = []
    seen: list[tuple[int, set[str]]] = []
    done = threading.Event()

    def write() -> None:
        try:
            for i in range(1, SWAPS + 1):
                lake.replace_partition("pairs", {"dataset": "d"}, _version(i))
        finally:
            done.set()

    def read() -> None:
        while not done.is_set():
            try:
                via_sql = lake.sql("select chosen from pairs where dataset = 'd'")
                via_arrow = lake.read("pairs", {"dataset": "d"})
            except BaseException as exc:  # noqa: BLE001 — the test collects what a reader hits
                errors.append(exc)
                continue
            for table in (via_sql, via_arrow):
                seen.append((table.num_rows, set(table.column("chosen").to_pylist())))

    writer = threading.Thread(target=write)
    readers = [threading.Thread(target=read) for _ in range(2)]
    for thread in (writer, *readers):
        thread.start()
    for thread in (writer, *readers):
        thread.join()
    assert not errors, f"{len(errors)} reads failed, e.g. {errors[0]!r}"
    assert seen and all(n == 6 for n, _ in seen), "a read saw part of a partition"
    assert all(len(versions) == 1 for _, versions in seen), "a read mixed two versions"
    assert lake.read("pairs", {"dataset": "d"}).column("chosen")[0].as_py() == f"v{SWAPS}"
    assert len(list((lake.root / "pairs" / ".v").iterdir())) == 1  # old versions are gone


# ---- 2. no pickle from a lake or a plan -----------------------------------------------------


class _Payload:
    """A pickle that, when loaded with a full unpickle, creates the file `path`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (self.path,))


def _hostile_pt(path: Path, marker: Path) -> Path:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"direction": _Payload(marker), "config": {"layer": 1}}, path)
    return path


def test_a_lake_vector_file_is_never_unpickled(tmp_path, capsys):
    from sculpt.concepts.vectors import load_vector

    lake = Lake.open(tmp_path / "lake")
    marker = tmp_path / "pwned"
    _hostile_pt(lake.root / "vectors" / "d" / "v.pt", marker)
    (lake.root / "vectors" / "d" / "v.json").write_text('{"config": {"layer": 1}}')
    with pytest.raises(UserError, match="not a direction file"):
        load_vector(lake, "d", "v")
    assert not marker.exists(), "loading the lake's vector ran its code"


def test_a_plan_direction_file_is_never_unpickled(tmp_path):
    from sculpt.plan.plan import Intervention, Plan, save_plan
    from sculpt.scan.models import tiny_model
    from sculpt.train.run import _policy_hooks

    marker = tmp_path / "pwned"
    _hostile_pt(tmp_path / "plan" / "direction.pt", marker)
    plan = Plan("d", [Intervention("vec:v", "ablation", layer=1, vector_file="direction.pt")])
    save_plan(plan, tmp_path / "plan" / "plan.yaml")
    with pytest.raises(UserError, match="not a direction file"):
        _policy_hooks(tiny_model().model, plan)
    assert not marker.exists()


def test_directions_are_stored_as_safetensors_and_old_tensor_files_still_read(tmp_path):
    import torch

    from sculpt.concepts.vectors import load_direction, save_direction

    direction = torch.arange(4, dtype=torch.float32)
    save_direction(direction, tmp_path / "d.safetensors")
    assert (tmp_path / "d.safetensors").read_bytes()[8:9] == b"{"  # a JSON header, no pickle
    assert torch.equal(load_direction(tmp_path / "d.safetensors"), direction)
    torch.save(direction[None, :], tmp_path / "old.pt")  # what an older `sculpt plan` wrote
    assert torch.equal(load_direction(tmp_path / "old.pt"), direction[None, :])


# ---- 3. paths stay inside ------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["../../x", "ABSOLUTE/x", "a/b", "..", "x" * 300])
def test_a_run_id_cannot_leave_the_runs_folder(tmp_path, capsys, monkeypatch, run_id):
    monkeypatch.chdir(tmp_path)
    run_id = run_id.replace("ABSOLUTE", str(tmp_path))
    argv = ["train", "--dataset", "d", "--run-id", run_id, "--runs-dir", "deep/runs"]
    assert main([*argv, "--lake", "lake"]) == 2
    _one_error_line(capsys, "run_id")
    assert not (tmp_path / "x").exists() and not (tmp_path / "deep").exists()


@pytest.mark.parametrize("where", ["../secret.bin", "/etc/hostname", "link/secret.bin"])
def test_a_plan_names_only_files_beside_it(tmp_path, capsys, where):
    from sculpt.plan.plan import load_plan

    (tmp_path / "secret.bin").write_text("not yours")
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "link").symlink_to(tmp_path)
    body = (
        "dataset: d\ninterventions:\n"
        f"- {{concept_id: 'vec:v', method: steering, layer: 1, vector_file: '{where}'}}\n"
    )
    (folder / "plan.yaml").write_text(body)
    with pytest.raises(UserError, match="outside the plan's folder"):
        load_plan(folder / "plan.yaml")
    (folder / "scored.yaml").write_text(f"dataset: d\nscores_file: '{where}'\n")
    with pytest.raises(UserError, match="scores_file"):
        load_plan(folder / "scored.yaml")


def test_a_report_holds_no_absolute_path_from_a_run(tmp_path):
    from sculpt.reports.render import write_report
    from sculpt.testing.sample_report import write_sample

    lake = Lake.open(tmp_path / "lake")
    write_sample(lake, "sample", n_pairs=20, n_concepts=5)
    config = {"runs_dir": "/mnt/elsewhere/runs", "plan": "/srv/plans/plan.yaml", "beta": 0.1}
    lake.append_log(
        "runs",
        [
            {
                "run_id": "far-away",
                "ts": 2e9,
                "status": "failed",
                "dataset": "sample",
                "config": json.dumps(config),
                "plan": "{}",
                "dir": "/mnt/elsewhere/runs/far-away",
                "metrics": json.dumps({"error": "/mnt/elsewhere/runs/far-away/x.bin: disk full"}),
            }
        ],
    )
    html = write_report(lake, "sample", tmp_path / "out.html").read_text(encoding="utf-8")
    assert "far-away" in html
    assert "/mnt/elsewhere" not in html and "/srv/plans" not in html


# ---- 9. bad input is one line and exit 2 --------------------------------------------------


def test_an_sae_folder_with_a_bad_config_or_no_weights_is_one_line(tmp_path, capsys):
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig

    good = tmp_path / "good"
    BatchTopKTrainingSAE(BatchTopKTrainingSAEConfig(d_in=64, d_sae=128, k=4)).save_inference_model(
        good
    )
    cases = {
        "cfg.json": lambda f: (f / "cfg.json").write_text("{not json"),
        "no cfg.json": lambda f: (f / "cfg.json").unlink(),
        "sae_weights.safetensors": lambda f: (f / "sae_weights.safetensors").write_bytes(b"junk"),
        "no sae_weights.safetensors": lambda f: (f / "sae_weights.safetensors").unlink(),
        "not an SAE": lambda f: (f / "cfg.json").write_text('{"d_in": "many"}'),
    }
    for name, damage in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        shutil.copytree(good, folder)
        damage(folder)
        argv = ["sae", "load", str(folder), "--layer", "1", "--model", "tiny"]
        assert main([*argv, "--lake", str(tmp_path / "lake")]) == 2, name
        _one_error_line(capsys, str(folder))


def test_a_lake_under_a_file_or_read_only_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    assert main(["lake", "ls", "--lake", str(tmp_path / "file" / "lake")]) == 2
    _one_error_line(capsys, "--lake")

    root = tmp_path / "ro"
    root.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != root and real(p, mode))
    data = str(FIXTURES / "trl.jsonl")
    assert main(["ingest", data, "--name", "d", "--lake", str(root), "--quiet"]) == 2
    _one_error_line(capsys, "read-only")
    assert not list(root.iterdir())


def test_a_name_over_the_file_name_limit_is_one_line(tmp_path, capsys):
    data = str(FIXTURES / "trl.jsonl")
    assert main(["ingest", data, "--name", "a" * 300, "--lake", str(tmp_path), "--quiet"]) == 2
    _one_error_line(capsys, "at most 200")


@pytest.mark.parametrize("command", [["plan", "nope"], ["triage", "nope"]])
def test_a_dataset_not_in_the_lake_is_exit_2(tmp_path, capsys, command):
    pairs_lake(tmp_path / "lake", cake_pairs(3))
    assert main([*command, "--lake", str(tmp_path / "lake")]) == 2
    _one_error_line(capsys, "nope", "demo")
