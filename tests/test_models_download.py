"""The model registry's download and cache against a real HTTP server on 127.0.0.1.

The server (``http.server`` in a thread) serves bytes the test makes, honours ``Range`` requests,
and can cut a response short, fail with 404, or ignore ranges.
"""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from elmo_fast.models import ModelEntry, ModelFile, ModelUnavailable, register, resolve
from elmo_fast.models import registry as registry_module
from elmo_fast.models.download import DownloadError, download
from utils import FIXTURE_DIR, FIXTURE_OPTIONS, FIXTURE_WEIGHTS


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.cut_once: dict[str, int] = {}
        self.ignore_range = False

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        self.server.requests.append((self.path, header))
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if header and not self.server.ignore_range:
            start = int(header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut = self.server.cut_once.pop(self.path, None)
        if cut is not None:
            # Promise the whole body, send part of it, drop the connection.
            self.wfile.write(body[start:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture()
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ELMO_FAST_CACHE", str(root))
    monkeypatch.delenv("ELMO_FAST_OFFLINE", raising=False)
    return root


@pytest.fixture()
def tiny_model(server, monkeypatch) -> ModelEntry:
    """The fixture model served by ``server`` and registered as ``tiny-test``."""
    server.files["/m/options.json"] = FIXTURE_OPTIONS.read_bytes()
    server.files["/m/weights.hdf5"] = FIXTURE_WEIGHTS.read_bytes()
    entry = ModelEntry(
        name="tiny-test", language="English", domain="test", size="-", format="allennlp",
        files=(ModelFile("options.json", server.url("/m/options.json")), ModelFile("weights.hdf5", server.url("/m/weights.hdf5"))),
        source="made by the test",
    )
    monkeypatch.setattr(registry_module, "REGISTRY", dict(registry_module.REGISTRY))
    register(entry)
    return entry


def test_registry_names_the_published_models():
    names = set(registry_module.REGISTRY)
    assert {"small", "medium", "original", "original-5.5B", "pubmed", "seqvec"} <= names
    assert len([n for n in names if n.startswith("manylangs-")]) == 44
    for entry in registry_module.REGISTRY.values():
        assert entry.source and all(f.url.startswith(("http://", "https://")) for f in entry.files)
    assert all(f.md5 for f in registry_module.REGISTRY["seqvec"].files)


def test_download_then_cached_reuse(server, cache, tiny_model):
    options, weights = resolve("tiny-test", progress=False)
    assert options.read_bytes() == FIXTURE_OPTIONS.read_bytes()
    assert weights.read_bytes() == FIXTURE_WEIGHTS.read_bytes()
    assert (options.parent / "checksums.json").is_file()
    served = len(server.requests)
    assert resolve("tiny-test", progress=False) == (options, weights)
    assert resolve("tiny-test", offline=True, progress=False) == (options, weights)
    assert len(server.requests) == served


def test_name_works_where_files_are_taken(server, cache, tiny_model):
    from elmo_fast import Elmo, ElmoEmbedder, batch_to_ids

    by_name = ElmoEmbedder("tiny-test", state="zero", backend="ref")
    by_files = ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", backend="ref")
    sentence = ["The", "cat", "sat", "."]
    np.testing.assert_array_equal(by_name.embed_sentence(sentence), by_files.embed_sentence(sentence))
    elmo = Elmo("tiny-test", None, 2, dropout=0.0, state="zero", backend="ref")
    assert len(elmo(batch_to_ids([sentence]))["elmo_representations"]) == 2


def test_embed_cli_takes_a_model_name(server, cache, tiny_model, tmp_path):
    from elmo_fast.cli import main

    text = tmp_path / "in.txt"
    text.write_text("The cat sat .\n", encoding="utf-8")
    assert main(["embed", str(text), str(tmp_path / "out.hdf5"), "--model", "tiny-test", "--quiet"]) == 0
    assert (tmp_path / "out.hdf5").is_file()


def test_interrupted_download_resumes_with_range(server, cache, tiny_model):
    size = len(server.files["/m/weights.hdf5"])
    server.cut_once["/m/weights.hdf5"] = size // 3
    _, weights = resolve("tiny-test", progress=False)
    assert weights.read_bytes() == FIXTURE_WEIGHTS.read_bytes()
    ranges = [r for p, r in server.requests if p == "/m/weights.hdf5"]
    assert ranges == [None, f"bytes={size // 3}-"]


def test_partial_file_from_an_earlier_run_is_resumed(server, tmp_path):
    body = bytes(range(256)) * 1000
    server.files["/f.bin"] = body
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(body[:1234])
    download(server.url("/f.bin"), dest, progress=False)
    assert dest.read_bytes() == body
    assert server.requests == [("/f.bin", "bytes=1234-")]
    assert not (tmp_path / "f.bin.part").exists()


def test_server_that_ignores_range_restarts_from_zero(server, tmp_path):
    body = b"abcdefghij" * 500
    server.files["/f.bin"] = body
    server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(b"XXXX")
    download(server.url("/f.bin"), tmp_path / "f.bin", progress=False)
    assert (tmp_path / "f.bin").read_bytes() == body


def test_published_md5_mismatch_is_refused(server, cache, tiny_model, monkeypatch):
    bad = ModelEntry(
        name="tiny-pinned", language="-", domain="-", size="-", format="allennlp",
        files=(ModelFile("options.json", server.url("/m/options.json"), md5=hashlib.md5(b"other").hexdigest()),
               ModelFile("weights.hdf5", server.url("/m/weights.hdf5"), md5=hashlib.md5(FIXTURE_WEIGHTS.read_bytes()).hexdigest())),
        source="test",
    )
    register(bad)
    with pytest.raises(ModelUnavailable, match="publishes"):
        resolve("tiny-pinned", progress=False)


def test_file_changed_after_download_is_refused(server, cache, tiny_model):
    _, weights = resolve("tiny-test", progress=False)
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="sha256"):
        resolve("tiny-test", progress=False)


def test_404_names_the_url(server, cache, tiny_model):
    del server.files["/m/weights.hdf5"]
    with pytest.raises(ModelUnavailable, match=r"HTTP 404.*weights\.hdf5|weights\.hdf5.*HTTP 404"):
        resolve("tiny-test", progress=False)
    assert not (cache / "tiny-test" / "weights.hdf5").exists()


def test_offline_fails_without_a_request_and_says_where_to_put_the_files(server, cache, tiny_model, monkeypatch):
    monkeypatch.setenv("ELMO_FAST_OFFLINE", "1")
    with pytest.raises(ModelUnavailable) as info:
        resolve("tiny-test", progress=False)
    assert server.requests == []
    message = str(info.value)
    assert "tiny-test" in message and tiny_model.files[1].url in message
    assert str(cache / "tiny-test" / "weights.hdf5") in message


def test_unreachable_server_fails_on_the_first_short_attempt(cache, monkeypatch):
    import socket

    from elmo_fast.models import download as download_module

    attempts = []
    real_open = download_module._open

    def counting_open(url, offset, timeout):
        attempts.append(timeout)
        return real_open(url, offset, timeout)

    monkeypatch.setattr(download_module, "_open", counting_open)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    entry = ModelEntry(
        name="tiny-down", language="-", domain="-", size="-", format="allennlp",
        files=(ModelFile("options.json", f"http://127.0.0.1:{port}/options.json"),), source="test",
    )
    monkeypatch.setattr(registry_module, "REGISTRY", dict(registry_module.REGISTRY))
    register(entry)
    with pytest.raises(ModelUnavailable, match="tiny-down.*127.0.0.1"):
        resolve("tiny-down", progress=False)
    # One connection attempt (no retry when no byte arrived), with the short connect timeout.
    assert attempts == [download_module.CONNECT_TIMEOUT_S] and download_module.CONNECT_TIMEOUT_S <= 10


def test_unknown_name_lists_the_models(cache):
    with pytest.raises(ValueError, match="original-5.5B"):
        resolve("no-such-model")


def test_a_folder_resolves_to_its_files():
    assert resolve(FIXTURE_DIR) == (FIXTURE_OPTIONS, FIXTURE_WEIGHTS)


def test_download_error_is_an_oserror():
    assert issubclass(DownloadError, OSError) and issubclass(ModelUnavailable, OSError)


def test_readme_table_is_the_models_list_output():
    from elmo_fast.models.cli import format_table

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    assert format_table() in readme
