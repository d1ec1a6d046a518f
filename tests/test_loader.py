"""data/loader.py: document-aligned rows (the same from JSONL and shards, reshuffled per epoch, every target once,
ranks that skip each other's share, resuming at a saved cursor) and the held-out rows."""
import json

import numpy as np
import pytest

from data.corpus import read_docs
from data.layout import encode_doc, sequence
from data.loader import Rows, open_corpus, val_windows
from data.prepare import prepare_corpus
from data.shards import from_docs
from data.tokenizer import get_tokenizer


def write_varied_corpus(path, n=13):
    """1-4 chunks per document, latents missing, empty or of any length; uneven lengths so windows straddle
    documents and epochs at every offset."""
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for i in range(n):
            chunks = [{"suffix": "x%d." % k * int(rng.integers(1, 6)),
                       "latent": [None, "", "think " * int(rng.integers(1, 4))][int(rng.integers(3))]}
                      for k in range(int(rng.integers(1, 5)))]
            f.write(json.dumps({"id": f"v{i}", "chunks": chunks}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def varied(tmp_path_factory):
    """The same corpus as JSONL and as a shard directory (data.prepare)."""
    d = tmp_path_factory.mktemp("varied")
    path = write_varied_corpus(d / "docs.jsonl")
    prepare_corpus(path, str(d / "shards"), workers=1)
    return path, str(d / "shards")


@pytest.mark.parametrize("layout", ["random", "posterior", "raw"])
def test_rows_same_from_jsonl_and_shards_and_reshuffled_per_epoch(varied, layout):
    """A JSONL corpus and its shard directory give the same rows token for token over several epochs; each epoch
    reshuffles the documents (and re-flips the random layout's coins)."""
    tok = get_tokenizer("bytes")
    path, shard_dir = varied
    a, b = (Rows(tok, open_corpus(tok, src), layout, 5, 16) for src in (path, shard_dir))
    n = 3 * len(a.plan(0))
    assert all(np.array_equal(u, v) for u, v in zip(a.next_rows(n), b.next_rows(n))) and a.epoch >= 2
    first = lambda e: [p[0] for row in a.plan(e) for p in row]
    assert set(first(0)) == set(first(1)) == set(range(len(a.docs))) and first(0) != first(1)


@pytest.mark.parametrize("layout", ["random", "raw"])
def test_rows_document_aligned_every_target_once(varied, layout):
    """Each epoch's rows hold every document's targets exactly once; every row starts at a BOS (a document's
    start), documents that fit are never cut, longer ones are split into consecutive T-target pieces; no target
    crosses from one document into the next."""
    tok = get_tokenizer("bytes")
    docs = open_corpus(tok, varied[1])
    for T in (12, 40):
        r = Rows(tok, docs, layout, 5, T)
        plan = r.plan(0)
        n_rows = len(plan)
        x, y = r.next_rows(n_rows)
        assert r.cursor() == {"epoch": 0, "row": n_rows} and x.shape[1] <= T
        seqs = [sequence(tok, docs.doc(i), layout, 5, 0) for i in range(len(docs))]
        want = sorted((a, b) for s in seqs for a, b in zip(s[:-1], s[1:]))  # every (input, target) pair
        got = sorted((a, b) for a, b in zip(x.flatten().tolist(), y.flatten().tolist()) if b >= 0)
        assert got == want
        for row, xr in zip(plan, x):
            assert xr[0] == tok.bos or row[0][1] > 0  # a row opens a document, or a long one's next piece
            for d, s, e in row:
                assert e - s - 1 <= T and (s == 0 or len(seqs[d]) > T + 1)
        assert all(len(s) > T + 1 or sum(1 for row in plan for p in row if p[0] == d) == 1
                   for d, s in enumerate(seqs))


def test_rows_ranks_skip_and_resume(varied):
    """Ranks reading only their own rows see the global batch's parts; a Rows rebuilt at the saved cursor
    continues identically, across epochs."""
    tok = get_tokenizer("bytes")
    docs = open_corpus(tok, varied[1])
    T, B, world = 16, 2, 2
    one, ranks = Rows(tok, docs, "random", 5, T), [Rows(tok, docs, "random", 5, T)
                                                             for _ in range(world)]
    for step in range(15):
        glob = one.next_rows(world * B)[1]
        for r, s in enumerate(ranks):
            s.skip(r * B)
            part = s.next_rows(B)[1]
            assert np.array_equal(part, glob[r * B:(r + 1) * B, :part.shape[1]])
            assert (glob[r * B:(r + 1) * B, part.shape[1]:] == -1).all()
            s.skip((world - 1 - r) * B)
            assert s.cursor() == one.cursor()
    c = one.cursor()
    assert c["epoch"] >= 1
    ahead = one.next_rows(5)
    again = Rows(tok, docs, "random", 5, T, **c).next_rows(5)
    assert all(np.array_equal(a, b) for a, b in zip(ahead, again))


def test_val_windows_are_the_rows_of_one_epoch(varied):
    tok = get_tokenizer("bytes")
    edocs = [encode_doc(tok, d) for d in read_docs(varied[0])][:3]
    x, y = val_windows(tok, from_docs(edocs, tok), "raw", 0, 32)
    seqs = [sequence(tok, d, "raw") for d in edocs]
    assert (y != -1).sum() == sum(len(s) - 1 for s in seqs)  # every target once, padding ignored
    assert all(row[0] == tok.bos for row in x)  # these documents fit a row each: every row opens one
