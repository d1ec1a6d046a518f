"""data/loader.py: the training stream and the document-aligned rows against a materialised reference, ranks
that skip each other's share, resuming at a saved cursor, and the held-out windows."""
import json

import numpy as np
import pytest

from data.corpus import read_docs
from data.layout import encode_doc, sequence
from data.loader import Rows, Stream, open_corpus, val_windows
from data.prepare import prepare_corpus
from data.shards import from_docs
from data.tokenizer import get_tokenizer


def reference_stream(tok, edocs, layout, seed, n):
    """The first n tokens of the stream as train.py defined it before shards (the spec the lazy Stream must
    match token for token): epoch e = every document's sequence(seed, e), in the order
    default_rng([seed, e]).permutation, materialised and concatenated, epoch after epoch."""
    out, e = [], 0
    while len(out) < n:
        for i in np.random.default_rng([seed, e]).permutation(len(edocs)):
            out += sequence(tok, edocs[i], layout, seed, e)
        e += 1
    return out[:n]


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
def test_stream_equals_materialised_reference_jsonl_and_shards(varied, layout):
    tok = get_tokenizer("bytes")
    path, shard_dir = varied
    edocs = [encode_doc(tok, d) for d in read_docs(path)]
    T, n, steps = 16, 3, 100
    ref = reference_stream(tok, edocs, layout, 5, steps * n * T + 1)
    for src in (open_corpus(tok, path), open_corpus(tok, shard_dir)):
        s = Stream(tok, src, layout, seed=5)
        xs, ys = zip(*(s.windows(n, T) for _ in range(steps)))
        x, y = np.concatenate(xs).flatten().tolist(), np.concatenate(ys).flatten().tolist()
        assert x == ref[:-1] and y == ref[1:]  # token for token, y shifted by one
        assert s.epoch >= 3  # several epochs (coins re-flipped, documents reshuffled) were compared


def test_stream_ranks_skip_and_resume(varied):
    """Two ranks reading only their own windows (skipping the other's) see the global batch's halves; a stream
    rebuilt at the saved cursor continues identically."""
    tok = get_tokenizer("bytes")
    docs = open_corpus(tok, varied[1])
    T, B, world, accum = 16, 2, 2, 3
    one, ranks = Stream(tok, docs, "random", 5), [Stream(tok, docs, "random", 5) for _ in range(world)]
    for step in range(12):
        glob = one.windows(accum * world * B, T)[0].reshape(accum, world, B, T)
        for r, s in enumerate(ranks):
            for i in range(accum):
                s.skip(r * B * T)
                assert np.array_equal(s.windows(B, T)[0], glob[i, r])
                s.skip((world - 1 - r) * B * T)
            assert s.cursor() == one.cursor()
    c = one.cursor()
    assert c["epoch"] >= 2 and c["pos"] > 0
    ahead = one.windows(5, T)
    again = Stream(tok, docs, "random", 5, **c)
    assert again.cursor() == c
    assert all(np.array_equal(a, b) for a, b in zip(ahead, again.windows(5, T)))


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


def test_val_windows_pad_targets_with_ignore(varied):
    tok = get_tokenizer("bytes")
    edocs = [encode_doc(tok, d) for d in read_docs(varied[0])][:3]
    ids = [t for d in edocs for t in sequence(tok, d, "raw")]
    x, y = val_windows(tok, from_docs(edocs, tok), "raw", 0, 32)
    assert x.flatten()[:len(ids) - 1].tolist() == ids[:-1]
    assert (y != -1).sum() == len(ids) - 1 and y.flatten()[:len(ids) - 1].tolist() == ids[1:]
