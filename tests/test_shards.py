"""data/shards.py and the shard half of data/prepare.py: round trip (ids, X/Z spans, no latent vs an empty one,
uint16/uint32), a writer interrupted mid-write leaves no manifest, prepare's parallel tokenisation equals the
serial one and the JSONL reader, and corrupted or unfinished directories are refused. CPU, seconds."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest

from data import estep_files as E
from data import shards
from data.corpus import read_docs
from data.layout import encode_doc
from data.prepare import prepare_corpus
from data.shards import from_docs, is_shard_dir, open_shards, verify_shards, write_shards
from data.tokenizer import get_tokenizer

EDOCS = [  # no latent, an empty latent, a latent, an empty chunk, a non-ASCII id, a lone-chunk document
    {"id": "a", "x": [[1, 2, 3], [4]], "z": [None, []]},
    {"id": "Köln-é", "x": [[5], [], [6, 7]], "z": [[8, 9], None, [10]]},
    {"id": "7", "x": [[255, 260]], "z": [None]},
]


class BigVocab:  # a tokenizer stand-in whose ids do not fit uint16 (Llama 3 has 128,256)
    name, n_vocab = "big", 128_256


def test_round_trip_memmap_and_memory(tmp_path):
    tok = get_tokenizer("bytes")
    m = write_shards(tmp_path / "s", EDOCS, tok, extra={"note": "x"})
    assert m["tokenizer"] == "bytes" and m["note"] == "x" and is_shard_dir(tmp_path / "s")
    assert m["counts"] == {"docs": 3, "chunks": 6, "tokens": 9, "latents": 3, "latent_tokens": 3,
                           "max_chunk_tokens": 3}
    assert m["shards"]["files"]["x"]["dtype"] == "uint16"
    for sh in (open_shards(tmp_path / "s"), from_docs(EDOCS, tok)):
        assert len(sh) == 3 and [sh.doc(i) for i in range(3)] == EDOCS
        assert sh.doc(0)["z"][0] is None and sh.doc(0)["z"][1] == []  # "no latent" is not "empty latent"
        doc_id, xl, zl = sh.lens(1)
        assert doc_id == "Köln-é" and xl.tolist() == [1, 0, 2] and zl.tolist() == [2, -1, 1]
    assert isinstance(open_shards(tmp_path / "s").a["x"], np.memmap)
    assert verify_shards(tmp_path / "s") == m
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary directory left


def test_token_dtype_fits_the_vocabulary(tmp_path):
    assert shards.token_dtype(50261) == np.uint16 and shards.token_dtype(65536) == np.uint16
    assert shards.token_dtype(65537) == np.uint32
    big = [{"id": "b", "x": [[70_000, 1]], "z": [[128_255]]}]
    m = write_shards(tmp_path / "big", big, BigVocab)
    assert m["shards"]["files"]["x"]["dtype"] == "uint32" and open_shards(tmp_path / "big").doc(0) == big[0]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        write_shards(tmp_path / "small", big, get_tokenizer("bytes"))
    assert not os.path.exists(tmp_path / "small")


def test_interrupted_write_leaves_no_manifest(tmp_path, monkeypatch):
    tok = get_tokenizer("bytes")

    def dying(n):  # a kill during tokenisation: the document source dies after n documents
        for d in EDOCS[:n]:
            yield d
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "new", dying(2), tok)
    assert os.listdir(tmp_path) == []  # nothing that looks complete, and no temporary directory either
    # over a complete directory: it stays complete and unchanged
    old = write_shards(tmp_path / "s", EDOCS[:1], tok)
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "s", dying(3), tok)
    assert json.load(open(tmp_path / "s" / "manifest.json")) == old and open_shards(tmp_path / "s").doc(0) == EDOCS[0]
    # dying while the arrays are moved in (after the old manifest is gone): no manifest, so not a shard dir
    monkeypatch.setattr(shards, "write_json", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write_shards(tmp_path / "s", EDOCS, tok)
    assert not is_shard_dir(tmp_path / "s")
    with pytest.raises(ValueError, match="no manifest.json"):
        open_shards(tmp_path / "s")


def test_corrupt_or_truncated_shards_are_refused(tmp_path):
    tok = get_tokenizer("bytes")
    write_shards(tmp_path / "s", EDOCS, tok)
    with open(tmp_path / "s" / "x.bin", "r+b") as f:
        f.write(b"\x07")
    with pytest.raises(ValueError, match="x.bin: content differs"):
        verify_shards(tmp_path / "s")
    with open(tmp_path / "s" / "z.bin", "ab") as f:
        f.write(b"\x00\x00")
    with pytest.raises(ValueError, match="z.bin: 8 bytes, the manifest says 3 x uint16"):
        open_shards(tmp_path / "s")


def test_prepare_writes_shards_equal_to_the_jsonl_reader(tmp_path):
    """Serial and 2-process tokenisation give the same bytes; the shards hold exactly what train.py's JSONL path
    would tokenise, documents chunked by sentences included."""
    src = tmp_path / "in.jsonl"
    lines = [{"text": "One sentence. " * (3 + i % 5) + f"Doc {i}."} for i in range(40)]
    lines[3] = {"id": "L", "chunks": [{"suffix": "Hi. ", "latent": ""}, {"suffix": "Bye.", "latent": "wave"}]}
    src.write_text("".join(json.dumps(d) + "\n" for d in lines) + "\n")
    one = prepare_corpus(str(src), str(tmp_path / "one"), workers=1, max_chunk_tokens=30)
    two = prepare_corpus(str(src), str(tmp_path / "two"), workers=2, max_chunk_tokens=30)
    assert one["shards"] == two["shards"] and one["counts"] == two["counts"]
    tok = get_tokenizer("bytes")
    expect = [encode_doc(tok, d) for d in read_docs(src, tok=tok, max_tokens=30)]
    sh = open_shards(tmp_path / "two")
    assert [sh.doc(i) for i in range(len(sh))] == expect and len(expect) == 40
    assert read_docs(tmp_path / "two" / "docs.jsonl") == read_docs(src, tok=tok, max_tokens=30)
    assert sh.doc(3)["z"] == [[], tok.encode("wave")]


# ----------------------------------------------------------------------------- em.py's E-step on shards

def _estep_run(tmp_path, name):
    """A run directory holding out/data as em.py prepares it (target.jsonl, target_gold.jsonl, target/ shards)
    for 5 small documents -> (cfg, data)."""
    from data import config as C
    from data.corpus import write_docs
    from data.rundir import write_target_shards
    tok = get_tokenizer("bytes")
    gold = [{"id": f"d{i}", "chunks": [{"suffix": s, "latent": z} for s, z in
                                       (("ab. ", "x"), ("cd. ", ""), ("é f. ", "y"))[:1 + i % 3]]} for i in range(5)]
    ddir = tmp_path / name / "data"
    write_docs(ddir / "target_gold.jsonl", gold)
    write_docs(ddir / "target.jsonl", [{"id": d["id"], "chunks": [{"suffix": c["suffix"], "latent": None}
                                                                   for c in d["chunks"]]} for d in gold])
    write_target_shards(str(ddir), tok)
    cfg = C.EMConfig(out=str(tmp_path / name), k=2, max_latent=6, block_size=64, gen_batch=8)
    return cfg, {"target": open_shards(str(ddir / "target")), "gold": str(ddir / "target_gold.jsonl")}


@pytest.fixture
def estep_model(monkeypatch):
    import em
    from conftest import tiny_gpt
    model = tiny_gpt(seed=1).eval()
    monkeypatch.setattr(em, "load_checked", lambda ckpt, tok: (model, {}))  # run_estep's previous model
    return model


@pytest.mark.parametrize("mode", ["paper", "sequential"])
def test_estep_from_shards_equals_the_jsonl_documents(tmp_path, estep_model, mode):
    """The E-step reads out/data/target/ (token shards): the same token ids as layout.encode_doc on the JSONL,
    so the same latents, weights and picks as the E-step run on the JSONL's documents packed in memory."""
    import em
    from conftest import estep_docs
    tok = get_tokenizer("bytes")
    cfg, data = _estep_run(tmp_path, "run")
    cfg = replace(cfg, estep=mode)
    docs = read_docs(os.path.join(cfg.out, "data", "target.jsonl"))
    assert [data["target"].doc(i) for i in range(len(docs))] == [encode_doc(tok, d) for d in docs]
    rows = list(em.estep(estep_model, tok, cfg, data["target"], 1, str(tmp_path / "a"), unit=2))
    new, rows_j = estep_docs(estep_model, tok, cfg, docs, 1, str(tmp_path / "b"), unit=2)
    assert len(rows) == sum(len(d["chunks"]) for d in docs) == len(rows_j)
    for a, b in zip(rows, rows_j):
        assert (a["doc"], a["chunk"], a["pick"], a["latent_ids"]) == (b["doc"], b["chunk"], b["pick"], b["latent_ids"])
        assert a["log_w"] == pytest.approx(b["log_w"])
    assert all(r["latent_ids"] for r in rows)


def test_estep_latents_shard_is_latents_jsonl(tmp_path, estep_model):
    """run_estep writes iter1/latents.jsonl and iter1/latents/ (what the M-step trains on): document by document
    the shard holds the target's X tokens and the chosen latent_ids, exactly what encode_doc gives on
    latents.jsonl; train.py streams the same tokens from either."""
    import em
    from data.layout import sequence
    from data.loader import open_corpus
    tok = get_tokenizer("bytes")
    cfg, data = _estep_run(tmp_path, "run")
    path, diag = em.run_estep(cfg, tok, data, 1, "unused")
    assert path == os.path.join(cfg.out, "iter1", "latents") and verify_shards(path)
    docs, sh = read_docs(os.path.join(cfg.out, "iter1", "latents.jsonl")), open_shards(path)
    assert len(sh) == len(docs) == 5 and diag["chunks"] == sum(len(d["chunks"]) for d in docs)
    for i, d in enumerate(docs):
        assert sh.doc(i) == encode_doc(tok, d)
        assert sh.doc(i)["z"] == [c.get("latent_ids") for c in d["chunks"]]
    assert all(z is not None for i in range(5) for z in sh.doc(i)["z"])
    assert diag["gold_chunks"] == sum(bool(c["latent"]) for d in read_docs(data["gold"]) for c in d["chunks"])
    jsonl = open_corpus(tok, os.path.join(cfg.out, "iter1", "latents.jsonl"))
    assert all(sequence(tok, sh.doc(i), "random", 3, 1) == sequence(tok, jsonl.doc(i), "random", 3, 1)
               for i in range(5))
    assert em.run_estep(cfg, tok, data, 1, "unused") == (path, diag)  # done: read back, nothing redone


def test_killed_estep_leaves_no_latents_and_resumes_to_the_same(tmp_path, estep_model, monkeypatch):
    """An exception after the first unit (a kill), then one while the latents are being written: neither
    leaves a latents shard directory, a latents.jsonl or a temporary file; the resumed E-step reuses the
    finished units and ends byte for byte where an uninterrupted one does."""
    import functools
    import em
    tok = get_tokenizer("bytes")
    monkeypatch.setattr(em, "estep", functools.partial(em.estep, unit=2))  # several units
    cfg, data = _estep_run(tmp_path, "whole")
    em.run_estep(cfg, tok, data, 1, "unused")
    cfg_k, data_k = _estep_run(tmp_path, "killed")
    idir = os.path.join(cfg_k.out, "iter1")
    work, ran = em.unit_work, []

    def recording(*a, die=None):
        w = work(*a)

        def unit(u):
            ran.append(u)
            if u == die:
                raise KeyboardInterrupt("killed")
            return w(u)
        return unit
    monkeypatch.setattr(em, "unit_work", functools.partial(recording, die=1))
    with pytest.raises(KeyboardInterrupt):
        em.run_estep(cfg_k, tok, data_k, 1, "unused")
    assert ran == [0, 1] and sorted(os.listdir(idir)) == ["estep_units"]
    assert os.listdir(os.path.join(idir, "estep_units")) == ["unit00000.json"]
    ran.clear()
    monkeypatch.setattr(em, "unit_work", recording)
    line = E.doc_line
    monkeypatch.setattr(E, "doc_line", lambda d: line(d) if d["id"] != "d3" else 1 / 0)  # dies mid-write
    with pytest.raises(ZeroDivisionError):
        em.run_estep(cfg_k, tok, data_k, 1, "unused")
    assert ran[0] == 1 and 0 not in ran  # the finished unit was reused
    assert sorted(os.listdir(idir)) == ["estep_units"]  # no latents/, no latents.jsonl, no temporary file
    monkeypatch.setattr(E, "doc_line", line)
    ran.clear()
    path, diag = em.run_estep(cfg_k, tok, data_k, 1, "unused")
    assert ran == [] and sorted(os.listdir(idir)) == ["estep.json", "estep_units", "latents", "latents.jsonl"]
    whole = os.path.join(cfg.out, "iter1")
    for f in ["latents.jsonl"] + [f"latents/{n}.bin" for n in shards.ARRAYS] + ["latents/manifest.json"]:
        assert open(os.path.join(idir, f), "rb").read() == open(os.path.join(whole, f), "rb").read(), f
    assert {k: v for k, v in diag.items() if k != "seconds"} == \
        {k: v for k, v in em.read_json(os.path.join(whole, "estep.json")).items() if k != "seconds"}
