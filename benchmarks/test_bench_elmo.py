"""pytest-benchmark cases for the small config (not part of the default test run).

    pytest benchmarks/ --benchmark-only

Every case is built by one setup factory from ``cases.py`` (the same ones ``run.py`` uses), warmed
up once outside the timed region, then timed over a fixed number of rounds. Each backend usable on
each available device gets its own case. ``extra_info["tokens"]`` holds the real tokens per call.
"""
from __future__ import annotations

import pytest
import torch

import cases
from elmo_fast.modules.elmo import load_bilm

pytest.importorskip("pytest_benchmark")

# The anchor measures torch's default LSTM kernel on purpose; torch warns that oneDNN lacks proj_size.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

ROUNDS = 5
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
TARGETS = [(device, backend) for device in DEVICES for backend in cases.usable_backends(device)[0]]
TARGET_IDS = [f"{device}-{backend}" for device, backend in TARGETS]


@pytest.fixture(scope="session")
def small_files(tmp_path_factory):
    """The small config as a random-weight model in the original bilm-tf layout."""
    return cases.model_files("small", tmp_path_factory.mktemp("small"))


@pytest.fixture(scope="session")
def small_weights(small_files):
    """``device -> ElmoWeights`` of the small model, loaded through the public path on that device."""
    return {device: load_bilm(*small_files, state="zero", device=device).weights() for device in DEVICES}


def _bench(benchmark, case: cases.Case):
    def call():
        result = case.fn()
        case.sync()
        return result

    benchmark.extra_info["tokens"] = case.tokens
    result = benchmark.pedantic(call, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    first = result[0] if isinstance(result, (tuple, list)) else result
    assert torch.isfinite(first).all(), "the benchmarked call produced NaN or Inf"


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_embed_small(benchmark, small_files, target, batch):
    device, backend = target
    _bench(benchmark, cases.setup_embed(cases.load_embedder(small_files, backend, torch.device(device)), batch))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_token_encoder_small(benchmark, small_weights, target):
    device, backend = target
    _bench(benchmark, cases.setup_token_encoder(small_weights[device], 8, backend, torch.device(device)))


@pytest.mark.parametrize("target", TARGETS, ids=TARGET_IDS)
def test_lstmp_small(benchmark, small_weights, target):
    device, backend = target
    _bench(benchmark, cases.setup_lstm(small_weights[device], 8, backend, torch.device(device)))


@pytest.mark.parametrize("device", DEVICES)
def test_lstm_anchor_small(benchmark, device):
    """``torch.nn.LSTM(proj_size=P)`` on the LSTM part's shapes: an approximate anchor (no clipping)."""
    _bench(benchmark, cases.setup_anchor(cases.BENCH_CONFIGS["small"], 8, torch.device(device)))
