"""data/shards.py and the shard half of data/prepare.py: round trip (ids, X/Z spans, no latent vs an empty one,
uint16/uint32), a writer interrupted mid-write leaves no manifest, prepare's parallel tokenisation equals the
serial one and the JSONL reader, and corrupted or unfinished directories are refused. CPU, seconds."""
import json
import os

import numpy as np
import pytest

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
