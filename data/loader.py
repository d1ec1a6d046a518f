"""Training batches from a corpus: document-aligned rows (train.py).

A corpus is a data/shards.Shards (a token shard directory memmapped, or a JSONL corpus packed in memory:
`open_corpus`). Each epoch e lays every document out in one layout (data/layout.sequence; the random layout's
coins are keyed by (seed, e)) in a permutation seeded by (seed, e) and packs them into rows of T targets, each
row starting at a document's BOS (nanochat's and modded-nanogpt's BOS-aligned loaders). Every rank plans the same
rows from document lengths alone (data/layout.sequence_length: no token read) and reads only its own share of a
global batch, so the data order does not depend on the number of ranks. Batches are numpy int64 arrays (x, y)
with y the next token and -1 where there is none (padding).
"""
import os

import numpy as np

from data.corpus import read_docs
from data.layout import check_latent_ids, encode_doc, sequence, sequence_length
from data.shards import from_docs, open_shards


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
    """Held-out documents (a Shards) in one layout (epoch 0's coins and order) as the training rows lay them out
    (document-aligned, padding -1), so the held-out loss reads text at the positions training puts it.
    -> x, y (n, W). Held in memory: val sets are small."""
    rows = Rows(tok, docs, mode, seed, T)
    return rows.next_rows(len(rows.plan(0)))


def open_corpus(tok, path):
    """A corpus -> data/shards.Shards: a shard directory is memmapped (O(1), nothing read); a JSONL file is
    read, tokenised and packed into in-memory arrays (small corpora). Raises ValueError naming file:line."""
    if os.path.isdir(path):
        docs = open_shards(path)
        if (docs.tokenizer, docs.n_vocab) != (tok.name, tok.n_vocab):
            raise ValueError(f"{path}: shards were tokenised with {docs.tokenizer!r} ({docs.n_vocab} tokens), but "
                             f"--tokenizer is {tok.name!r} ({tok.n_vocab})")
        return docs
    docs = read_docs(path, check=lambda doc: check_latent_ids(tok, doc))  # refused with file:line
    if not docs:
        raise ValueError(f"{path} holds no documents")
    return from_docs((encode_doc(tok, d) for d in docs), tok)
