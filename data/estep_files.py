"""The E-step's files (em.py's run directory; no torch): its work in resumable units sharded over ranks, and its
output, the chosen latents written next to the chunks.
  run_units      work cut into units (cut_units: from the shards' offsets), sharded over ranks, each saved
                 atomically: what makes the E-step resumable
  write_latents  the E-step's output streamed document by document: latents.jsonl (for reading) and the
                 latents as token shards (what the M-step trains on), with its diagnostics
"""
import os
import re
import time

import numpy as np

from data.corpus import doc_line, iter_docs, read_json, write_json
from data.shards import ShardWriter, flatten


# ----------------------------------------------------------------------------- work in resumable units

def cut_units(doc_off, unit=512, whole=False):
    """Unit boundaries over a corpus' chunks, from its (n_docs + 1,) document -> chunk offsets alone (no key
    list: O(n_units) memory whatever the corpus size): -> [lo_0 = 0, lo_1, ..., n_chunks], unit u holding global
    chunks lo_u:lo_(u+1). Every `unit` chunks; whole: at least `unit` chunks, cut only where a document starts
    (for work that samples a document's chunks in order)."""
    n = int(doc_off[-1])
    if not whole:
        return list(range(0, n, unit)) + [n] if n else [0]
    bounds = [0]
    while bounds[-1] < n:  # the first document start at least `unit` chunks on
        j = int(np.searchsorted(doc_off, bounds[-1] + unit, "left"))
        bounds.append(int(doc_off[min(j, len(doc_off) - 1)]))
    return bounds


def unit_keys(doc_off, lo, hi):
    """Global chunks lo:hi -> [(doc, chunk within the document)], (hi - lo) keys."""
    g = np.arange(lo, hi)
    d = np.searchsorted(doc_off, g, "right") - 1
    return [(int(a), int(b)) for a, b in zip(d, g - np.asarray(doc_off)[d])]


def run_units(n_units, out_dir, work, rank, world, sync, label):
    """Unit u of n_units runs on rank u % world as work(u) -> rows, saved atomically as out_dir/unit{u:05d}.json
    with a progress line and ETA. A unit already saved is skipped, so a killed run resumes.
    After sync() (every rank's units are written): an iterator over every unit's rows in unit order, reading one
    unit file at a time (memory: one unit, whatever the corpus size)."""
    os.makedirs(out_dir, exist_ok=True)
    t0, mine = time.time(), [u for u in range(n_units) if u % world == rank]
    for n, u in enumerate(mine):
        path = os.path.join(out_dir, f"unit{u:05d}.json")
        if os.path.exists(path):
            continue
        write_json(path, work(u))
        el = time.time() - t0
        print(f"  {label}: unit {n + 1}/{len(mine)} on rank {rank}, {el:.0f}s, "
              f"ETA {el / (n + 1) * (len(mine) - n - 1):.0f}s", flush=True)
    sync()
    return (r for u in range(n_units) for r in read_json(os.path.join(out_dir, f"unit{u:05d}.json")))


# ----------------------------------------------------------------------------- E-step output

def with_latents(docs, rows):
    """The documents (an iterable, in the E-step's order) with each chunk's chosen latent (text for reading,
    latent_ids for training: layout.encode_doc) from `rows` (estep's, in (doc, chunk) order): one at a time."""
    rows = iter(rows)
    for d, doc in enumerate(docs):
        new = {"id": doc["id"], "chunks": [dict(c) for c in doc["chunks"]]}
        for c in range(len(new["chunks"])):
            r = next(rows, None)
            if r is None or (r["doc"], r["chunk"]) != (d, c):
                got = r and (r["doc"], r["chunk"])
                raise ValueError(f"E-step rows do not match the documents: {got} at chunk ({d}, {c})")
            new["chunks"][c].update(latent=r["latent"], latent_ids=r["latent_ids"])
        yield new


def gold_checks(row, gold):
    """One chunk against the teacher's latent `gold` (diagnostics only: the E-step never saw it) -> (the chosen
    latent is the gold derivation, some sample among the K is, the chosen latent follows the problem: the gold's
    steps with every value left out, a digit right after a letter; for the built-in world the start and the
    operators, whatever facts it got wrong)."""
    steps = lambda z: re.sub(r"(?<=[^\d\s])\d", "#", z or "")
    return row["latent"] == gold, gold in row["samples"], steps(row["latent"]) == steps(gold)


def write_latents(cfg, data, rows, idir):
    """The E-step's output, streamed unit by unit: idir/latents.jsonl (for reading: the target documents with
    their chosen latents' text and ids) and idir/latents/, the same as token shards (X from the target shards,
    Z = the chosen ids), what the M-step trains on. Both are written beside and renamed into place, so a kill
    leaves neither half-written. -> (diagnostics, gold diagnostics: on chunks with a non-empty teacher latent
    only, an empty one would be a free match; target_gold.jsonl is read document by document, in the target's
    order)."""
    n = {"chunks": 0, "ess": 0.0, "capped": 0, "gold": [0, 0, 0, 0]}  # gold: chunks, gold_checks
    gold = iter_docs(data["gold"]) if data["gold"] is not None else None

    def seen(rows):  # every row passes here once, in (doc, chunk) order
        doc, glat = -1, None
        for r in rows:
            n["chunks"], n["ess"], n["capped"] = n["chunks"] + 1, n["ess"] + r["ess"], n["capped"] + r["capped"]
            if gold is not None:
                if r["doc"] != doc:
                    doc, g = r["doc"], next(gold)
                    if g["id"] != data["target"].doc_id(doc):
                        raise ValueError(f"{data['gold']}: document {g['id']!r} is not the target's {doc}th")
                    glat = [c["latent"] for c in g["chunks"]]
                if glat[r["chunk"]]:
                    n["gold"] = [a + b for a, b in zip(n["gold"], (1, *gold_checks(r, glat[r["chunk"]])))]
            yield r
    tok_name, n_vocab = data["target"].tokenizer, data["target"].n_vocab
    path, tmp = os.path.join(idir, "latents.jsonl"), os.path.join(idir, f".latents.jsonl.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f, ShardWriter(os.path.join(idir, "latents"), tok_name, n_vocab) as w:
            texts = iter_docs(os.path.join(cfg.out, "data", "target.jsonl"))
            for d, new in enumerate(with_latents(texts, seen(rows))):
                f.write(doc_line(new))
                x = data["target"].doc(d)["x"]  # the tokens the E-step read, not a re-encoding
                w.add(*flatten({"id": new["id"], "x": x, "z": [c["latent_ids"] for c in new["chunks"]]}))
            f.flush()
            os.fsync(f.fileno())
            w.finish({"estep": os.path.basename(idir)})
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    c, g = max(n["chunks"], 1), max(n["gold"][0], 1)
    diag = {"chunks": n["chunks"], "ess_mean": n["ess"] / c, "capped_frac": n["capped"] / (c * cfg.k)}
    return diag, {} if gold is None else {"gold_match": n["gold"][1] / g, "gold_exists": n["gold"][2] / g,
                                          "gold_steps": n["gold"][3] / g, "gold_chunks": n["gold"][0]}
