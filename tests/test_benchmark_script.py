"""Smoke test of benchmarks/run.py on the tiny config: it runs, and its JSON has the promised shape."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run_module():
    spec = importlib.util.spec_from_file_location("elmo_fast_bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
