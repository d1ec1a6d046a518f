"""Training batches from a corpus: the endless stream of layout windows and document-aligned rows (train.py).

A corpus is a data/shards.Shards (a token shard directory memmapped, or a JSONL corpus packed in memory:
`open_corpus`). Each epoch e lays every document out in one layout (data/layout.sequence; the random layout's
coins are keyed by (seed, e)) in a permutation seeded by (seed, e), built on the fly one document at a time:
  Stream  the epochs concatenated and cut into consecutive T-token windows (nanoGPT's loader)
  Rows    documents packed into rows of T targets, each row starting at a document's BOS (pack 'docs')
Both are read by every rank, each taking only its own share of a global batch and skipping the others' by
document lengths (data/layout.sequence_length: no token read), so the data order does not depend on the
number of ranks. Batches are numpy int64 arrays (x, y) with y the next token and -1 where there is none.
"""
import os

import numpy as np

from data.corpus import read_docs
from data.layout import encode_doc, sequence, sequence_length
from data.shards import from_docs, open_shards


class Stream:
    """The endless training stream: epoch e = the layout sequences of all documents in a permutation seeded by
    (seed, e), concatenated, built on the fly from a data/shards.Shards corpus one document at a time. Held in
    memory: the permutations of at most two epochs, (n_docs,) int64 each, and the one document being read.
    The cursor is (epoch, pos) = token offset in the epoch, and (doc, off) = the doc-th document of the epoch's
    order and the offset into its sequence; all four are stored in checkpoints."""

    def __init__(self, tok, docs, layout, seed, epoch=0, pos=0, doc=0, off=0):
        self.tok, self.docs, self.layout, self.seed = tok, docs, layout, seed
        self.orders, self.seq, self.len = {}, (None, None), (None, None)
        self.epoch, self.pos, self.doc, self.off = epoch, pos, doc, off

    def order(self, e):
        if e not in self.orders:
            self.orders = {k: v for k, v in self.orders.items() if k >= e - 1}  # keep the current epoch
            self.orders[e] = np.random.default_rng([self.seed, e]).permutation(len(self.docs))  # (n_docs,) int64
        return self.orders[e]

    def sequence(self, e, k):
        """The k-th document of epoch e's order, laid out: (L,) int64."""
        if self.seq[0] != (e, k):
            d = self.docs.doc(self.order(e)[k])
            self.seq = ((e, k), np.asarray(sequence(self.tok, d, self.layout, self.seed, e), dtype=np.int64))
        return self.seq[1]

    def length(self, e, k):
        """len(self.sequence(e, k)) from the shard offsets, without reading tokens."""
        if self.seq[0] == (e, k):
            return len(self.seq[1])
        if self.len[0] != (e, k):
            self.len = ((e, k), sequence_length(*self.docs.lens(self.order(e)[k]), self.layout, self.seed, e))
        return self.len[1]

    def skip(self, n):
        """Advance the cursor n tokens, reading document lengths only (how a rank passes others' windows)."""
        while n > 0:
            step = min(n, self.length(self.epoch, self.doc) - self.off)
            self.off, self.pos, n = self.off + step, self.pos + step, n - step
            if self.off == self.length(self.epoch, self.doc):
                self.doc, self.off = self.doc + 1, 0
                if self.doc == len(self.docs):
                    self.epoch, self.doc, self.pos = self.epoch + 1, 0, 0

    def windows(self, n, T):
        """Next n windows: x, y (n, T) int64 with y = x shifted by one token; reads n*T + 1 tokens and advances
        the cursor n*T."""
        parts, need, e, k, off = [], n * T + 1, self.epoch, self.doc, self.off
        while need > 0:
            part = self.sequence(e, k)[off:off + need]
            parts.append(part)
            need, k, off = need - len(part), k + 1, 0
            if k == len(self.docs):
                e, k = e + 1, 0
        buf = np.concatenate(parts)
        self.skip(n * T)
        return buf[:-1].reshape(n, T), buf[1:].reshape(n, T)

    def cursor(self):
        return {"epoch": self.epoch, "pos": self.pos, "doc": self.doc, "off": self.off}


class Rows:
    """Document-aligned training rows (nanochat's and modded-nanogpt's BOS-aligned loaders): epoch e lays every
    document out in --layout in a permutation seeded by (seed, e) and packs them into rows of T targets, each row
    starting at a document's BOS. A row takes the oldest waiting document, then best-fit the largest waiting ones
    that still fit (a window of `look` documents), and pads the rest (target -1): no document is cut unless it is
    longer than T + 1 tokens, which is split into consecutive T-target pieces. So a chunk's latent is always in a
    window with the text before it in its document (up to T). The plan is built from lengths alone (no token
    read); the cursor is (epoch, row)."""

    def __init__(self, tok, docs, layout, seed, T, epoch=0, row=0, look=64):
        self.tok, self.docs, self.layout, self.seed, self.T, self.look = tok, docs, layout, seed, T, look
        self.epoch, self.row, self.plans = epoch, row, {}

    def plan(self, e):
        """Epoch e's rows: a list of rows, each a list of (doc index, start, end) token pieces with
        sum(end - start - 1) <= T."""
        if e not in self.plans:
            self.plans = {k: v for k, v in self.plans.items() if k >= e - 1}
            order = np.random.default_rng([self.seed, e]).permutation(len(self.docs))  # (n_docs,) int64
            pieces = []  # (doc, start, end): x = seq[start:end-1], y = seq[start+1:end]
            for d in order:
                L = sequence_length(*self.docs.lens(d), self.layout, self.seed, e)
                pieces += [(int(d), s, min(s + self.T + 1, L)) for s in range(0, L - 1, self.T)]
            rows, wait, nxt = [], [], 0
            while wait or nxt < len(pieces):
                while len(wait) < self.look and nxt < len(pieces):
                    wait.append(pieces[nxt])
                    nxt += 1
                row = [wait.pop(0)]
                room = self.T - (row[0][2] - row[0][1] - 1)
                while True:
                    fit = [i for i, p in enumerate(wait) if p[2] - p[1] - 1 <= room]
                    if not fit:
                        break
                    i = max(fit, key=lambda i: (wait[i][2] - wait[i][1], -i))
                    room -= wait[i][2] - wait[i][1] - 1
                    row.append(wait.pop(i))
                rows.append(row)
            self.plans[e] = rows
        return self.plans[e]

    def next_rows(self, n):
        """The next n rows (x, y: (n, W) int64, W <= T the longest row's length, padding: x 0, y -1) and advance
        the cursor."""
        x = np.zeros((n, self.T), dtype=np.int64)
        y = np.full((n, self.T), -1, dtype=np.int64)
        for r in range(n):
            if self.row == len(self.plan(self.epoch)):
                self.epoch, self.row = self.epoch + 1, 0
            at = 0
            for d, s, t in self.plan(self.epoch)[self.row]:
                seq = np.asarray(sequence(self.tok, self.docs.doc(d), self.layout, self.seed, self.epoch))[s:t]
                x[r, at:at + len(seq) - 1], y[r, at:at + len(seq) - 1] = seq[:-1], seq[1:]
                at += len(seq) - 1
            self.row += 1
        w = max(int((y >= 0).sum(1).max()), 1)  # trim the batch to its longest row: padding costs no compute
        return x[:, :w], y[:, :w]

    def skip(self, n):
        for _ in range(n):
            if self.row == len(self.plan(self.epoch)):
                self.epoch, self.row = self.epoch + 1, 0
            self.row += 1

    def cursor(self):
        return {"epoch": self.epoch, "row": self.row}


def val_windows(tok, docs, mode, seed, T):
    """Held-out documents (a Shards) in one layout (epoch 0 coins), concatenated in file order and cut into
    windows; the last window's missing targets are -1. -> x, y (n, T). Held in memory: val sets are small."""
    ids = np.concatenate([np.asarray(sequence(tok, docs.doc(i), mode, seed, 0), dtype=np.int64)
                          for i in range(len(docs))])
    n = -(-(len(ids) - 1) // T)
    x = np.zeros(n * T, dtype=np.int64)
    y = np.full(n * T, -1, dtype=np.int64)
    x[:len(ids) - 1], y[:len(ids) - 1] = ids[:-1], ids[1:]
    return x.reshape(n, T), y.reshape(n, T)


def open_corpus(tok, path):
    """A corpus -> data/shards.Shards: a shard directory is memmapped (O(1), nothing read); a JSONL file is
    read, tokenised and packed into in-memory arrays (small corpora). Raises ValueError naming file:line."""
    if os.path.isdir(path):
        docs = open_shards(path)
        if (docs.tokenizer, docs.n_vocab) != (tok.name, tok.n_vocab):
            raise ValueError(f"{path}: shards were tokenised with {docs.tokenizer!r} ({docs.n_vocab} tokens), but "
                             f"--tokenizer is {tok.name!r} ({tok.n_vocab})")
        return docs
    docs = read_docs(path)
    if not docs:
        raise ValueError(f"{path} holds no documents")
    return from_docs((encode_doc(tok, d) for d in docs), tok)
