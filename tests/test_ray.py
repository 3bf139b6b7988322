"""The Ray engine on a local Ray instance: the single-process file, with workers killed and jobs resumed.

Skipped where Ray is not installed (``pip install 'elmo_fast[ray]'``), except the tests of what
happens without it. One Ray instance (2 CPUs, loopback) serves the whole module.
"""
from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close, random_sentences

from elmo_fast import ElmoEmbedder
from elmo_fast.cli import main
from elmo_fast.jobs import RayJobFailed, ResumeError, embed_file_ray, input_files

MODEL = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS)]
BATCH, SEGMENT = 8, 40
JOB = dict(batch_size=BATCH, segment_size=SEGMENT, progress=False)


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A directory of three files (one of a single line, one in a subfolder) and their concatenation."""
    root = tmp_path_factory.mktemp("corpus")
    lines = [" ".join(s) for s in random_sentences(300, seed=47, max_len=11) if s][:233]
    pieces = {"b.txt": lines[:101], "c/a.txt": lines[101:102], "d.txt": lines[102:]}
    for name, chunk in pieces.items():
        (root / "dir" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "dir" / name).write_text("".join(line + "\n" for line in chunk), encoding="utf-8")
    (root / "dir" / ".hidden").write_text("never read\n", encoding="utf-8")
    (root / "all.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def reference(corpus):
    """The single-process file per state, batched in line order."""
    out = {}
    for state in ("zero", "warm"):
        out[state] = corpus / f"reference-{state}.hdf5"
        ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state=state).embed_file(
            corpus / "all.txt", out[state], bucket=False, **JOB
        )
    return out


def assert_same_file(actual, expected, exact: bool = True, skip: frozenset[str] = frozenset()) -> None:
    """Same datasets and sentence map; arrays bit for bit (``exact``) or within the fp32 tolerance."""
    with h5py.File(actual) as fa, h5py.File(expected) as fe:
        assert set(fa.keys()) == set(fe.keys())
        assert json.loads(fa["sentence_to_index"][0]) == json.loads(fe["sentence_to_index"][0])
        for key in set(fe.keys()) - {"sentence_to_index"} - skip:
            assert fa[key].dtype == np.float32
            if exact:
                assert np.array_equal(fa[key][...], fe[key][...]), key
            else:
                assert_close(fa[key][...], fe[key][...], what=key)


def test_directory_key_order(corpus):
    assert [f.relative_to(corpus / "dir").as_posix() for f in input_files(corpus / "dir")] == ["b.txt", "c/a.txt", "d.txt"]


def test_same_file_as_single_process_bit_for_bit(tmp_path, corpus, reference, ray_local):
    out = tmp_path / "out.hdf5"
    report = embed_file_ray(corpus / "all.txt", out, FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", bucket=False, **JOB)
    assert (report.sentences, report.segments, report.reused, report.workers) == (233, 6, 0, 2)
    assert not (tmp_path / "out.hdf5.parts").exists()
    assert_same_file(out, reference["zero"])


def test_directory_warm_bucketed_from_the_command_line(tmp_path, corpus, reference, ray_local, capsys):
    out = tmp_path / "dir.hdf5"
    args = ["embed", str(corpus / "dir"), str(out), *MODEL, "--engine", "ray", "--state", "warm", "--quiet"]
    assert main([*args, "--batch-size", str(BATCH), "--checkpoint-every", str(SEGMENT)]) == 0, capsys.readouterr().err
    assert "6 segments on 2 Ray workers" in capsys.readouterr().err
    assert_same_file(out, reference["warm"], exact=False)


def test_int8_weights_from_the_command_line_and_resume_refuses_another_precision(tmp_path, corpus, ray_local, capsys):
    """``--engine ray --weight-precision int8``: every worker multiplies in int8, so the file is the
    local int8 one bit for bit (no bucketing); the precision is part of the model fingerprint, so a
    resumed run with another precision is refused."""
    local = tmp_path / "local.hdf5"
    ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state="zero", weight_precision="int8").embed_file(
        corpus / "all.txt", local, bucket=False, **JOB
    )
    out = tmp_path / "ray.hdf5"
    args = ["embed", str(corpus / "all.txt"), str(out), *MODEL, "--engine", "ray", "--state", "zero", "--no-bucket", "--quiet"]
    options = ["--batch-size", str(BATCH), "--checkpoint-every", str(SEGMENT)]
    assert main([*args, *options, "--weight-precision", "int8"]) == 0, capsys.readouterr().err
    assert_same_file(out, local)
    # An interrupted int8 run cannot be resumed in fp32.
    marker, again = tmp_path / "crashed", tmp_path / "again.hdf5"
    with pytest.raises(RayJobFailed):
        embed_file_ray(corpus / "all.txt", again, FIXTURE_OPTIONS, FIXTURE_WEIGHTS, weight_precision="int8", bucket=False,
                       max_retries=0, _crash_at=(str(marker), 2), **JOB)
    with pytest.raises(ResumeError, match="cannot resume: model differ"):
        embed_file_ray(corpus / "all.txt", again, FIXTURE_OPTIONS, FIXTURE_WEIGHTS, bucket=False, resume=True, **JOB)


def test_killed_worker_is_retried(tmp_path, corpus, reference, ray_local):
    marker = tmp_path / "crashed"
    out = tmp_path / "out.hdf5"
    embed_file_ray(
        corpus / "all.txt", out, FIXTURE_OPTIONS, FIXTURE_WEIGHTS, bucket=False, _crash_at=(str(marker), 2), **JOB
    )
    assert marker.exists(), "the worker was never killed"
    assert_same_file(out, reference["zero"])


def test_rerun_computes_only_unfinished_segments(tmp_path, corpus, reference, ray_local):
    out = tmp_path / "out.hdf5"
    parts = tmp_path / "out.hdf5.parts"
    marker = tmp_path / "crashed"
    args = (corpus / "all.txt", out, FIXTURE_OPTIONS, FIXTURE_WEIGHTS)
    with pytest.raises(RayJobFailed, match="died more than max_retries=0 times"):
        embed_file_ray(*args, bucket=False, max_retries=0, _crash_at=(str(marker), 2), **JOB)
    finished = sorted(int(p.stem.split("-")[1]) for p in parts.glob("segment-*.h5"))
    assert marker.exists() and not out.exists() and 2 not in finished and {0, 1} <= set(finished)
    # Mark a finished segment: the merged file shows it was reused, not recomputed.
    with h5py.File(parts / "segment-000000.h5", "r+") as seg:
        seg["flat"][...] = 7.0
    report = embed_file_ray(*args, bucket=False, resume=True, **JOB)
    assert (report.segments, report.reused) == (6, len(finished))
    first = {str(i) for i in range(SEGMENT)}
    with h5py.File(out) as f:
        assert all(np.all(f[key][...] == 7.0) for key in first)
    assert_same_file(out, reference["zero"], skip=frozenset(first))


def test_an_error_inside_a_worker_is_raised_as_itself(tmp_path, ray_local):
    path = tmp_path / "long.txt"
    path.write_text("fine\n" + "x " * 100_001 + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="exceeds max_sentence_length=100000"):
        embed_file_ray(path, tmp_path / "o.hdf5", FIXTURE_OPTIONS, FIXTURE_WEIGHTS, num_workers=1, **JOB)


def test_carry_and_misuse_are_clear_errors(tmp_path, corpus, capsys):
    out = str(tmp_path / "o.hdf5")
    assert main(["embed", str(corpus / "all.txt"), out, *MODEL, "--engine", "ray"]) == 2
    assert "--engine ray needs --state zero or --state warm, not carry" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no worker holds its predecessor's state"):
        embed_file_ray(corpus / "all.txt", out, state="carry")
    assert main(["embed", str(corpus / "dir"), out, *MODEL, "--state", "zero"]) == 2
    assert "directories are read by --engine ray" in capsys.readouterr().err
    assert main(["embed", str(corpus / "all.txt"), out, *MODEL, "--num-workers", "2"]) == 2
    assert "need --engine ray" in capsys.readouterr().err


def test_without_ray_the_flag_says_how_to_install(tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    args = ["embed", str(corpus / "all.txt"), str(tmp_path / "o.hdf5"), *MODEL, "--engine", "ray", "--state", "zero"]
    assert main(args) == 2
    assert "pip install 'elmo_fast[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "o.hdf5.parts").exists()
