"""Protein FASTA input: parity with embed_sentence(list(sequence)), per-protein reduction, the hdf5
layout, refusals with line numbers (nothing written), resume, and the command line."""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("Bio")

from elmo_fast import ElmoEmbedder  # noqa: E402
from elmo_fast.cli import main  # noqa: E402
from elmo_fast.jobs import ResumeError  # noqa: E402
from elmo_fast.fasta import FastaError, clean_sequence, hdf5_key, scan_fasta  # noqa: E402
from elmo_fast.jobs.fasta import embed_pairs, reduce_per_protein, run_embed_fasta  # noqa: E402
from utils import FIXTURE_OPTIONS, FIXTURE_WEIGHTS, assert_close  # noqa: E402

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def embedder(state: str = "zero", backend: str = "auto") -> ElmoEmbedder:
    return ElmoEmbedder(FIXTURE_OPTIONS, FIXTURE_WEIGHTS, state=state, backend=backend)


def protein(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(AMINO) for _ in range(length))


def write_fasta(path: Path, seed: int = 0) -> dict[str, tuple[str, str]]:
    """A FASTA file with odd records; returns id -> (header, cleaned sequence)."""
    rng = random.Random(seed)
    body = {
        "sp|P12345|NAME_HUMAN": ("sp|P12345|NAME_HUMAN Some protein OS=Homo sapiens", protein(rng, 187)),
        "short": ("short", "M"),
        "Q9XYZ1/23-187": ("Q9XYZ1/23-187 a Pfam-style domain id", protein(rng, 65)),
        "odd%id": ("odd%id", "XBZUO" + protein(rng, 10)),
        ".": (". a dot alone", protein(rng, 12)),
        "long": ("long", protein(rng, 301)),
        "lower": ("lower\tcase and stop", protein(rng, 40)),
    }
    lines = []
    for record_id, (header, sequence) in body.items():
        lines.append(f">{header}")
        text = sequence.lower() + "*" if record_id == "lower" else sequence
        # 60 residues a line, one line with inner spaces, blank line between records
        chunks = [text[i : i + 60] for i in range(0, len(text), 60)]
        chunks[0] = " ".join(chunks[0][i : i + 7] for i in range(0, len(chunks[0]), 7))
        lines += chunks + [""]
    path.write_text("\n".join(lines))
    return body


@pytest.fixture(scope="module")
def zero_embedder() -> ElmoEmbedder:
    return embedder()


def test_clean_sequence_rules():
    assert clean_sequence(" mk v*\n") == "MKV"
    assert clean_sequence("XBZUO") == "XBZUO"
    for bad in ("MK-V", "MK1", "MK.V"):
        with pytest.raises(ValueError, match="not residues"):
            clean_sequence(bad)
    assert hdf5_key("a/b%c|d") == "a%2Fb%25c|d"
    assert [hdf5_key(k) for k in (".", "..", ".x")] == ["%2E", "..", ".x"]


@pytest.mark.parametrize("backend", ["ref", "cpp"])
def test_file_equals_embed_sentence_per_record(tmp_path, backend):
    model = embedder(backend=backend)
    body = write_fasta(tmp_path / "in.fa")
    out = tmp_path / "out.h5"
    # A budget below the longest protein and windows of ~2 proteins: several batches, windows and segments.
    run_embed_fasta(model, tmp_path / "in.fa", out, max_tokens=200, batch_size=3, window_residues=150, progress=False)
    with h5py.File(out, "r") as h5:
        assert sorted(h5.keys()) == sorted(hdf5_key(k) for k in body)
        for record_id, (header, sequence) in body.items():
            dataset = h5[hdf5_key(record_id)]
            assert dataset.attrs["original_id"] == record_id
            assert dataset.attrs["header"] == header
            expected = model.embed_sentence(list(sequence))
            assert dataset.shape == (3, len(sequence), model.elmo_bilm.get_output_dim())
            assert_close(dataset[...], expected, what=record_id)
    assert not (tmp_path / "out.h5.parts").exists()


def test_per_protein_is_seqvec_reduction(tmp_path, zero_embedder):
    body = write_fasta(tmp_path / "in.fa")
    out = tmp_path / "out.h5"
    run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, per_protein=True, key_by="md5", progress=False)
    with h5py.File(out, "r") as h5:
        assert len(h5) == len(body)
        for record_id, (_, sequence) in body.items():
            dataset = h5[hashlib.md5(sequence.encode()).hexdigest()]
            assert dataset.attrs["original_id"] == record_id
            full = zero_embedder.embed_sentence(list(sequence)).astype(np.float64)
            assert dataset.shape == (full.shape[-1],)
            assert_close(dataset[...], full.sum(axis=0).mean(axis=0), what=record_id)


@pytest.mark.parametrize("output_format", ["top", "average"])
def test_top_and_average(tmp_path, zero_embedder, output_format):
    body = write_fasta(tmp_path / "in.fa", seed=1)
    out = tmp_path / "out.h5"
    run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, output_format=output_format, progress=False)
    with h5py.File(out, "r") as h5:
        for record_id, (_, sequence) in body.items():
            full = zero_embedder.embed_sentence(list(sequence))
            expected = full[-1] if output_format == "top" else full.mean(axis=0)
            assert_close(h5[hdf5_key(record_id)][...], expected, what=record_id)


def test_embed_pairs_in_input_order_and_embed_fasta(tmp_path, zero_embedder):
    rng = random.Random(3)
    pairs = [(f"p{i}", protein(rng, n)) for i, n in enumerate([50, 3, 120, 1, 77, 9])]
    got = list(embed_pairs(zero_embedder, iter(pairs), max_tokens=100, window_residues=64, per_protein=True))
    assert [k for k, _ in got] == [k for k, _ in pairs]
    for (_, sequence), (_, vector) in zip(pairs, got):
        assert_close(vector, reduce_per_protein(zero_embedder.embed_sentence(list(sequence))))
    body = write_fasta(tmp_path / "in.fa")
    ids = [record_id for record_id, _ in zero_embedder.embed_fasta(tmp_path / "in.fa", output_format="top")]
    assert ids == list(body)


def test_warm_state_is_batch_independent_too(tmp_path):
    warm = embedder("warm")
    body = write_fasta(tmp_path / "in.fa", seed=2)
    got = dict(embed_pairs(warm, [(k, s) for k, (_, s) in body.items()], max_tokens=128))
    for record_id, (_, sequence) in body.items():
        assert_close(got[record_id], warm.embed_sentence(list(sequence)), what=record_id)


BAD_FILES = {
    "duplicate": (">a\nMK\n>b\nMV\n\n>a second\nMW\n", "line 6 repeats the id 'a' first seen at line 1"),
    "empty record": (">a\nMK\n>b\n>c\nMV\n", "record 'b' \\(header at line 3\\) has no residues"),
    "only a stop": (">a\nMK\n>b\n*\n", "record 'b' \\(header at line 3\\) has no residues"),
    "not fasta": ("the cat sat on the mat\n>a\nMK\n", "line 1 is not a FASTA header"),
    "text after blank lines": ("\n\nMKV\n", "line 3 is not a FASTA header"),
    "no records": ("\n\n", "no FASTA record"),
    "no id": (">a\nMK\n>\nMV\n", "line 3: a header without an id"),
    "gap": (">a\nMK\n>b desc\nMK-V\n", "record 'b' \\(header at line 3\\): characters '-'"),
    "binary": (b"\x89HDF\r\n\x1a\n\xff\xfe\x00", "line 1 is not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_fasta_refused_with_line_number_and_nothing_written(tmp_path, zero_embedder, case):
    content, message = BAD_FILES[case]
    path = tmp_path / "in.fa"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    out = tmp_path / "out.h5"
    with pytest.raises(FastaError, match=message):
        run_embed_fasta(zero_embedder, path, out, progress=False)
    assert list(tmp_path.iterdir()) == [path]


def test_md5_keys_refuse_identical_sequences(tmp_path):
    path = tmp_path / "in.fa"
    path.write_text(">a\nMKV\n>b\nmkv*\n")
    assert scan_fasta(path).lengths == (3, 3)
    with pytest.raises(FastaError, match="line 3 repeats the sequence of 'b'"):
        scan_fasta(path, key_by="md5")


def test_carry_state_refused(tmp_path):
    write_fasta(tmp_path / "in.fa")
    with pytest.raises(ValueError, match="needs state 'zero'"):
        run_embed_fasta(embedder("carry"), tmp_path / "in.fa", tmp_path / "out.h5", progress=False)
    with pytest.raises(ValueError, match="needs state 'zero'"):
        list(embed_pairs(embedder("carry"), [("a", "MKV")]))


def test_resume_after_a_kill_gives_the_same_file(tmp_path, zero_embedder, monkeypatch):
    import elmo_fast.jobs.fasta as fasta_job

    write_fasta(tmp_path / "in.fa")
    options = dict(max_tokens=200, window_residues=150, progress=False)
    run_embed_fasta(zero_embedder, tmp_path / "in.fa", tmp_path / "whole.h5", **options)

    real, calls = fasta_job.embed_window, []

    def dies_on_third_window(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(fasta_job, "embed_window", dies_on_third_window)
    out = tmp_path / "out.h5"
    with pytest.raises(KeyboardInterrupt):
        run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, **options)
    monkeypatch.setattr(fasta_job, "embed_window", real)
    assert not out.exists() and len(list((tmp_path / "out.h5.parts").glob("segment-*.h5"))) == 2
    with pytest.raises(ResumeError, match="per_protein"):
        run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, resume=True, per_protein=True, **options)
    with pytest.raises(ResumeError, match="interrupted run"):
        run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, **options)
    calls.clear()
    monkeypatch.setattr(fasta_job, "embed_window", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_embed_fasta(zero_embedder, tmp_path / "in.fa", out, resume=True, **options)
    assert calls and len(calls) < 4
    with h5py.File(tmp_path / "whole.h5", "r") as whole, h5py.File(out, "r") as resumed:
        assert sorted(whole) == sorted(resumed)
        for key in whole:
            np.testing.assert_array_equal(whole[key][...], resumed[key][...])


def test_command_line(tmp_path, capsys):
    body = write_fasta(tmp_path / "in.fa")
    out = tmp_path / "out.h5"
    model = ["--options", str(FIXTURE_OPTIONS), "--weights", str(FIXTURE_WEIGHTS), "--quiet"]
    assert main(["embed", str(tmp_path / "in.fa"), str(out), "--input-format", "fasta", "--per-protein", *model]) == 0
    with h5py.File(out, "r") as h5:
        assert sorted(h5) == sorted(hdf5_key(k) for k in body)
        reference = embedder()
        sequence = body["long"][1]
        assert_close(h5["long"][...], reduce_per_protein(reference.embed_sentence(list(sequence))))
    refusals = {
        ("--input-format", "fasta", "--state", "carry"): "needs state 'zero'",
        ("--input-format", "fasta", "--use-sentence-keys"): "--use-sentence-keys: only with --input-format text",
        ("--per-protein",): "--per-protein: only with --input-format fasta",
        ("--input-format", "fasta", "--top", "--per-protein"): "does not combine",
        ("--input-format", "fasta", "--engine", "ray", "--state", "zero"): "local engine",
    }
    for extra, message in refusals.items():
        capsys.readouterr()
        assert main(["embed", str(tmp_path / "in.fa"), str(tmp_path / "x.h5"), *model, *extra]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "bad.fa").write_text(">a\nMK\n>a\nMV\n")
    assert main(["embed", str(tmp_path / "bad.fa"), str(tmp_path / "y.h5"), "--input-format", "fasta", *model]) == 2
    assert "line 3 repeats the id 'a'" in capsys.readouterr().err
    assert not (tmp_path / "y.h5").exists() and not (tmp_path / "y.h5.parts").exists()
