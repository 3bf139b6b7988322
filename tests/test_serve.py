"""elmo-fast serve: batched vectors equal single-sentence ones, bad input gets 4xx, full queue 503, SIGTERM exits 0."""
from __future__ import annotations

import asyncio
import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from serve_helpers import free_port, metric, running
from utils import random_sentences

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.serve import NPY_TYPE, NPZ_TYPE, DynamicBatcher, ServeConfig, create_app, select_layers  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(scope="module", params=["zero", "warm"])
def embedder(request):
    return ElmoEmbedder(state=request.param)


def _decode(response, n: int) -> list[np.ndarray]:
    kind = response.headers["content-type"]
    if kind.startswith(NPZ_TYPE):
        with np.load(io.BytesIO(response.content)) as f:
            return [f[str(i)] for i in range(n)]
    if kind.startswith(NPY_TYPE):
        lengths = [int(x) for x in response.headers["x-sentence-lengths"].split(",")]
        stacked = np.load(io.BytesIO(response.content))
        return np.split(stacked, np.cumsum(lengths)[:-1], axis=-2)
    return [np.asarray(e, dtype=np.float32) for e in response.json()["embeddings"]]


def test_concurrent_requests_get_their_single_sentence_vectors(embedder):
    """160 requests from 16 clients, batched together, each equal to embed_sentence at <= 1e-5."""
    clients, per_client = 16, 10
    rng = random.Random(7)
    pool = random_sentences(60, seed=11, max_len=30)
    requests = [[rng.sample(pool, rng.randint(1, 3)) for _ in range(per_client)] for _ in range(clients)]
    expected = {tuple(s): embedder.embed_sentence(s) for s in pool}
    accepts = ["application/json", NPZ_TYPE, NPY_TYPE]
    config = ServeConfig(max_batch_tokens=512, max_wait_ms=20.0)

    def client(c: int) -> float:
        worst = 0.0
        with httpx.Client(base_url=url, timeout=120) as http:
            for r, sentences in enumerate(requests[c]):
                accept = accepts[(c + r) % len(accepts)]
                response = http.post("/embed", json={"sentences": sentences}, headers={"accept": accept})
                assert response.status_code == 200, response.text
                for sentence, got in zip(sentences, _decode(response, len(sentences)), strict=True):
                    want = expected[tuple(sentence)]
                    if want.size == 0:
                        # An empty sentence: JSON has no shape for (L + 1, 0, 2P), only L + 1 empty lists.
                        assert got.size == 0 and got.shape[0] == want.shape[0]
                        continue
                    assert got.shape == want.shape
                    worst = max(worst, float(np.abs(got - want).max(initial=0.0)))
        return worst

    with running(create_app(embedder, config)) as url:
        with ThreadPoolExecutor(clients) as pool_:
            worst = max(pool_.map(client, range(clients)))
        text = httpx.get(url + "/metrics").text
    assert worst <= TOLERANCE
    sentences = sum(len(s) for reqs in requests for s in reqs)
    forwards = metric(text, "elmo_serve_batch_sentences_count")
    assert metric(text, "elmo_serve_sentences_total") == sentences
    # Requests did share forwards (otherwise this test would not have tested batching).
    assert forwards < sentences
    assert metric(text, "elmo_serve_queue_sentences") == 0


def test_layers_top_and_average(embedder):
    sentence = ["The", "bank", "of", "the", "river", "."]
    full = embedder.embed_sentence(sentence)
    with running(create_app(embedder)) as url:
        for layers, want in (("top", full[-1]), ("average", np.average(full, axis=0)), ("all", full)):
            response = httpx.post(url + "/embed", json={"sentences": [sentence], "layers": layers}, timeout=60)
            got = np.asarray(response.json()["embeddings"][0], dtype=np.float32)
            np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
            np.testing.assert_array_equal(select_layers(full, layers), want)


BAD_REQUESTS = [
    ("malformed JSON", b'{"sentences": [["a", "b"]', 400, "JSON"),
    ("wrong type", b'{"sentences": "a b c"}', 422, "sentences"),
    ("empty list", b'{"sentences": []}', 422, "at least 1"),
    ("token not a string", b'{"sentences": [["a", 3]]}', 422, "sentences.0.1"),
    ("unknown layers", b'{"sentences": [["a"]], "layers": "middle"}', 422, "layers"),
    ("sentence too long", b'{"sentences": [[' + b",".join([b'"w"'] * 9) + b"]]}", 413, "sentence 0 has 9 tokens"),
    ("too many sentences", b'{"sentences": [' + b",".join([b'["w"]'] * 5) + b"]}", 413, "5 sentences"),
]


@pytest.mark.parametrize("embedder", ["zero"], indirect=True)
def test_bad_requests_get_4xx_and_the_server_keeps_serving(embedder):
    config = ServeConfig(max_request_sentences=4, max_sentence_length=8)
    with running(create_app(embedder, config)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for what, body, status, words in BAD_REQUESTS:
            response = http.post("/embed", content=body, headers={"content-type": "application/json"})
            assert response.status_code == status, (what, response.text)
            assert words in response.json()["error"], (what, response.json())
        good = http.post("/embed", json={"sentences": [["still", "serving"]]})
        assert good.status_code == 200
        assert np.asarray(good.json()["embeddings"][0]).shape == (embedder.num_layers, 2, 128)
        assert http.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("embedder", ["zero"], indirect=True)
def test_full_queue_answers_503_with_retry_after(embedder):
    config = ServeConfig(max_queue_sentences=4, max_request_sentences=4, max_wait_ms=3000, max_batch_tokens=10_000)
    with running(create_app(embedder, config)) as url, httpx.Client(base_url=url, timeout=60) as http:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(http.post, "/embed", json={"sentences": [["a"], ["b"], ["c"]]})
            while http.get("/health").json()["queue_sentences"] < 3:
                time.sleep(0.01)
            refused = http.post("/embed", json={"sentences": [["d"], ["e"]]})
            assert refused.status_code == 503
            assert int(refused.headers["retry-after"]) >= 1
            assert "max-queue-sentences" in refused.json()["error"]
            assert first.result().status_code == 200
        assert "elmo_serve_rejected_queue_full_total 1" in http.get("/metrics").text


def test_batcher_plans_within_the_token_budget():
    """Concurrent calls share a collection until the token budget, cut by length into batches of <= max_batch_tokens."""
    plans: list[list[list[int]]] = []

    def fake(sentences, plan):
        plans.append([[len(sentences[i]) for i in rows] for rows in plan])
        return [np.full((1, len(s), 1), len(s), np.float32) for s in sentences]

    async def scenario():
        batcher = DynamicBatcher(fake, max_batch_tokens=12, max_wait_ms=200, max_queue_sentences=100)
        batcher.start()
        calls = [[["w"] * n for n in lengths] for lengths in ([1, 5], [3], [5, 1, 2], [20])]
        results = await asyncio.gather(*(batcher.embed(c) for c in calls))
        await batcher.stop()
        return calls, results

    calls, results = asyncio.run(scenario())
    for call, result in zip(calls, results):
        assert [r.shape[1] for r in result] == [len(s) for s in call]
    # The first three calls reach the 12-token budget (17 tokens), so collection stops there and the
    # fourth call is a collection of its own; inside a collection batches are by length, each within budget.
    assert [sorted(n for b in plan for n in b) for plan in plans] == [[1, 1, 2, 3, 5, 5], [20]]
    for batches in plans:
        assert all(len(b) * max(b) <= 12 or len(b) == 1 for b in batches)
        assert [n for b in batches for n in b] == sorted(n for b in batches for n in b)


@pytest.mark.parametrize("embedder", ["zero"], indirect=True)
def test_carry_is_refused(embedder):
    with pytest.raises(ValueError, match="zero' or 'warm"):
        create_app(ElmoEmbedder(state="carry"))
    done = subprocess.run([sys.executable, "-m", "elmo_fast", "serve", "--state", "carry"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "cannot be served" in done.stderr and "previous batch" in done.stderr


def test_model_name_offline_refused_with_the_files_to_place(tmp_path):
    """`serve --model NAME --offline` with an empty cache: exit 2, naming the model and where its files go."""
    env = {**os.environ, "ELMO_FAST_CACHE": str(tmp_path)}
    cmd = [sys.executable, "-m", "elmo_fast", "serve", "--model", "small", "--offline"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert "'small' is not in the cache" in done.stderr and str(tmp_path / "small" / "weights.hdf5") in done.stderr
    both = subprocess.run([*cmd, "--options", "o.json", "--weights", "w.hdf5"], capture_output=True, text=True, env=env)
    assert both.returncode == 2 and "not both" in both.stderr


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("elmo-fast")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "elmo_fast"]


def test_sigterm_finishes_in_flight_requests_and_exits_0():
    """A real `elmo-fast serve` process: requests waiting in the batcher are answered, then status 0."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*_cli(), "serve", "--port", str(port), "--max-wait-ms", "5000", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not come up"
            time.sleep(0.2)
        results: list = []

        def post(i: int) -> None:
            results.append(httpx.post(url + "/embed", json={"sentences": [["in", "flight", str(i)]]}, timeout=60))

        threads = [threading.Thread(target=post, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        # The first request waits --max-wait-ms (5 s) for company, long enough for the other two to
        # join it even on a loaded machine; all three are then in the batcher's queue.
        deadline = time.monotonic() + 4.5
        while httpx.get(url + "/health", timeout=5).json()["queue_sentences"] < 3:
            assert time.monotonic() < deadline, "the three requests were not queued together"
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0, proc.stdout.read().decode()
        assert [r.status_code for r in results] == [200, 200, 200]
        assert all(np.asarray(r.json()["embeddings"][0]).shape[1] == 3 for r in results)
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_int8_server_batches_without_changing_vectors():
    """``serve --weight-precision int8``: activations are quantised per row, so a sentence batched
    with others gets the vectors it gets alone (zero state), and /health says the precision."""
    embedder = ElmoEmbedder(state="zero", weight_precision="int8")
    pool = [s for s in random_sentences(14, seed=5, max_len=20) if s][:12]
    expected = [embedder.embed_sentence(s) for s in pool]
    with running(create_app(embedder, ServeConfig(max_batch_tokens=512, max_wait_ms=50.0))) as url:
        health = httpx.get(url + "/health").json()
        assert (health["weight_precision"], health["projection_precision"]) == ("int8", "bf16")
        with ThreadPoolExecutor(4) as workers:
            answers = list(workers.map(lambda s: httpx.post(url + "/embed", json={"sentences": [s]}, timeout=60), pool))
        text = httpx.get(url + "/metrics").text
    for response, want in zip(answers, expected, strict=True):
        got = np.asarray(response.json()["embeddings"][0], dtype=np.float32)
        np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)
    assert metric(text, "elmo_serve_batch_sentences_count") < len(pool)


def test_serve_command_passes_the_weight_precision(monkeypatch):
    import elmo_fast.serve as serve_module
    from elmo_fast.cli import main as cli_main

    seen = {}
    monkeypatch.setattr(serve_module, "run_server", lambda embedder, config, **kw: seen.update(precision=embedder.elmo_bilm.weight_precision) or 0)
    assert cli_main(["serve", "--weight-precision", "bf16"]) == 0
    assert seen == {"precision": "bf16"}
