"""Smoke test of benchmarks/run.py on the tiny config: it runs, and its JSON has the promised shape."""
from __future__ import annotations

import json
import math

import pytest

from utils import load_benchmark_script


@pytest.fixture(scope="module")
def run_module():
    return load_benchmark_script("run")


def test_run_writes_expected_json(run_module, tmp_path, capsys):
    out = tmp_path / "bench.json"
    returned = run_module.main(["--configs", "tiny", "--batches", "1,3", "--backends", "ref", "--repeats", "2", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))

    machine = written["machine"]
    for key in ("platform", "cpu_model", "cores", "torch", "numpy", "threads", "git", "date", "host_kind"):
        assert machine[key] not in (None, ""), key
    assert machine["threads"] >= 1 and machine["cores"] >= 1
    assert written["settings"]["backends"] == ["ref"]
    assert set(written["settings"]["configs"]) == {"tiny"}

    rows = written["results"]
    keys = {(r["config"], r["batch"], r["part"], r["backend"]) for r in rows}
    expected = {("tiny", b, p, "ref") for b in (1, 3) for p in ("embed", "lstm")}
    expected |= {("tiny", b, "lstm", "torch.nn.LSTM") for b in (1, 3)}
    assert keys == expected and len(rows) == len(expected)
    for row in rows:
        assert row["runs"] == 2 and len(row["times_ms"]) == 2
        assert all(t > 0 for t in row["times_ms"])
        assert row["min_ms"] == min(row["times_ms"]) and row["min_ms"] <= row["median_ms"] <= max(row["times_ms"])
        assert row["tokens"] >= 16 * row["batch"]
        assert math.isclose(row["tokens_per_s"], row["tokens"] / (row["median_ms"] / 1e3), rel_tol=1e-9)
        assert row["tokens_per_s_best"] >= row["tokens_per_s"] > 0

    table = capsys.readouterr().out
    assert "tokens/s" in table and "torch.nn.LSTM*" in table and str(out) in table


def test_run_rejects_unknown_config(run_module):
    with pytest.raises(SystemExit):
        run_module.main(["--configs", "huge", "--out", "unused.json"])


def test_bf16_rows_carry_their_error_and_the_json_grows_row_by_row(run_module, tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    seen = []
    print_row = run_module.print_row

    def spy(row):
        # printed before it is written: the file holds every earlier row, and is whole
        seen.append(len(json.loads(out.read_text())["results"]))
        print_row(row)

    monkeypatch.setattr(run_module, "print_row", spy)
    returned = run_module.main(["--configs", "tiny", "--batches", "2", "--backends", "ref", "--dtypes", "float32,bfloat16",
                                "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert seen == list(range(len(rows))) and json.loads(out.read_text())["complete"] is True
    assert rows == json.loads(json.dumps(returned["results"]))
    keys = {(r["part"], r["backend"], r["dtype"]) for r in rows}
    assert keys == {(p, b, d) for p, b in (("embed", "ref"), ("lstm", "ref"), ("lstm", "torch.nn.LSTM"))
                    for d in ("float32", "bfloat16")}
    (bf16,) = [r for r in rows if r["part"] == "embed" and r["dtype"] == "bfloat16"]
    assert bf16["error_vs"] == "ref fp32 float32" and not bf16["has_nan"]
    # bf16 keeps 8 significant bits: the output moves, but by far less than its own size
    assert 1e-5 < bf16["rel_err"] < 0.1 and bf16["max_elem_rel_err"] >= bf16["rel_err"] / 10
    (fp32,) = [r for r in rows if r["part"] == "embed" and r["dtype"] == "float32"]
    assert "rel_err" not in fp32  # the baseline itself


def test_a_failing_case_becomes_an_error_row_and_the_run_goes_on(run_module, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated kernel failure")

    monkeypatch.setattr(run_module.cases, "setup_anchor", broken)
    out = tmp_path / "bench.json"
    run_module.main(["--configs", "tiny", "--batches", "1,2", "--backends", "ref", "--repeats", "1", "--out", str(out)])
    rows = json.loads(out.read_text())["results"]
    failed = [r for r in rows if "error" in r]
    assert [(r["batch"], r["backend"]) for r in failed] == [(1, "torch.nn.LSTM"), (2, "torch.nn.LSTM")]
    assert "simulated kernel failure" in failed[0]["error"]
    assert len(rows) - len(failed) == 4  # embed and lstm rows of ref at both batches


def test_run_rejects_unknown_dtype(run_module):
    with pytest.raises(SystemExit):
        run_module.main(["--configs", "tiny", "--dtypes", "float16", "--out", "unused.json"])


def test_deploy_row_onnxruntime(run_module, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "bench.json"
    args = ["--configs", "tiny", "--batches", "2", "--backends", "ref", "--repeats", "1", "--no-anchor", "--onnx", "--out", str(out)]
    rows = run_module.main(args)["results"]
    deploy = [r for r in rows if r["backend"] == "onnxruntime"]
    assert len(deploy) == 1 and "error" not in deploy[0], deploy
    assert deploy[0]["error_vs"] == "ref fp32 float32" and deploy[0]["rel_err"] < 1e-5
