"""Prepare a dataset directory from a JSONL corpus (BoLT, Ruan et al. 2025; see data/corpus.py for the input).

    python -m data.prepare --corpus in.jsonl --out DIR [--tokenizer bytes|gpt2 --bpe-dir D
                           --max-chunk-tokens N --skip-bad]

writes
  DIR/docs.jsonl     one chunked document per line, {"id", "chunks": [{"suffix", "latent"}]} (latents kept): the
                     inspectable form, what em.py and people read
  DIR/*.bin          the same documents as token shards (data/shards.py): what `train.py --data DIR` memmaps
  DIR/manifest.json  tokenizer, counts of docs/chunks/tokens/latents, chunking parameters, source path and hash,
                     the shards' dtype, per-file sha256 and content hash
Everything is built in a hidden temporary directory beside DIR and moved in; the manifest is written last, so a
directory with a manifest is complete and a kill leaves none. Parsing, chunking and tokenising run on --workers
processes (default: all cores) with a progress line on stderr; memory stays bounded whatever the corpus size.

The data source is one of a mutually exclusive, required group of flags (`--corpus` here); another source
(e.g. the built-in world) adds its flag to that group in `build_parser` and a branch in `main`, and writes its
output with `write_dataset`.
"""
import argparse
import collections
import contextlib
import json
import math
import multiprocessing
import os
import sys
import time

from data import world
from data.cli import ascii_float, ascii_int, out_dir_error, parser_error
from data.corpus import doc_line, odd_doc, parse_line, sha256_file, shown_lines, unique_id
from data.layout import encode_doc
from data.shards import ShardWriter, flatten, token_dtype
from data.tokenizer import TOKENIZERS, get_tokenizer


def _write(out, tok, items, info, max_chunk_tokens=None):
    """items: (docs.jsonl line, data/shards.flatten tuple) per document, in order -> out/docs.jsonl, the token
    shards and out/manifest.json (written last, see data/shards.py); -> the manifest."""
    with ShardWriter(out, tok.name, tok.n_vocab) as w:
        over = 0
        with open(os.path.join(w.tmp, "docs.jsonl"), "wb") as f:
            for line, flat in items:
                f.write(line)
                w.add(*flat)
                over += 0 if max_chunk_tokens is None else int((flat[2] > max_chunk_tokens).sum())
            f.flush()
            os.fsync(f.fileno())
        w.stats["chunks_over_budget"] = over
        return w.finish({"docs_file": "docs.jsonl", **info})


def write_dataset(out, docs, tok, info, max_chunk_tokens=None):
    """Chunked documents in memory -> out/docs.jsonl, token shards, out/manifest.json (tokenizer, counts, the
    caller's `info`); -> manifest."""
    if not docs:
        raise ValueError("no documents to write")
    dtype = token_dtype(tok.n_vocab)
    return _write(out, tok, ((doc_line(d), flatten(encode_doc(tok, d), dtype)) for d in docs), info,
                  max_chunk_tokens)


# ----------------------------------------------------------------------------- parallel tokenisation

_worker = {}


def _init_worker(tokenizer, bpe_dir, chunk_kw):
    _worker["tok"] = tok = get_tokenizer(tokenizer, bpe_dir)
    _worker["kw"], _worker["dtype"] = dict(chunk_kw, tok=tok), token_dtype(tok.n_vocab)


def _work(batch):
    """[(lineno, line bytes)] -> [(lineno, error or None, docs.jsonl line, flatten tuple)]: parse, chunk and
    encode in a worker process (the slow part; numpy arrays travel back cheaply). A document with nothing to learn
    from (corpus.odd_doc) comes back as (lineno, None, None, None)."""
    tok, kw, out = _worker["tok"], _worker["kw"], []
    for lineno, line in batch:
        try:
            doc = parse_line(line, **kw)
            encoded = None if odd_doc(doc) else encode_doc(tok, doc)
        except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors; bad latent_ids
            out.append((lineno, str(e), None, None))
            continue
        out.append((lineno, None, None, None) if encoded is None else
                   (lineno, None, doc_line(doc), flatten(encoded, _worker["dtype"])))
    return out


def _line_batches(f, size=256):
    batch = []
    for lineno, line in enumerate(f, 1):
        if line.strip():  # blank lines are ignored, as read_docs does
            batch.append((lineno, line))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parsed(path, workers, init_args):
    """Every line's _work result, in file order, from `workers` processes with a bounded number of batches in
    flight (Pool.imap would read the whole file ahead into its queue). Progress on stderr every 10 s."""
    size, t0, last, done = os.path.getsize(path), time.time(), time.time(), 0
    with open(path, "rb") as f, contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.Pool(workers, _init_worker, init_args))
            submit, get = (lambda b: pool.apply_async(_work, (b,))), (lambda r: r.get())
        else:
            _init_worker(*init_args)
            submit, get = _work, (lambda r: r)
        pending = collections.deque()
        for b in _line_batches(f):
            pending.append(submit(b))
            if len(pending) < 4 * workers:
                continue
            yield from get(pending.popleft())
            done = f.tell()
            if time.time() - last > 10:
                last, rate = time.time(), done / (time.time() - t0)
                print(f"prepare: {done / size:4.0%} of {size / 1e6:,.0f} MB | {rate / 1e6:.1f} MB/s | "
                      f"eta {(size - done) / max(rate, 1):.0f}s", file=sys.stderr, flush=True)
        while pending:
            yield from get(pending.popleft())


def prepare_corpus(corpus, out, tokenizer="bytes", bpe_dir=None, max_chunk_tokens=None, mean_sentences=8,
                   max_sentences=20, skip_bad=False, workers=None):
    """Read, chunk and tokenise a JSONL corpus on `workers` processes (default: all cores), streaming, and write
    the dataset directory (docs.jsonl, token shards, manifest.json last); -> manifest dict. Memory: one dict
    entry per document id (to refuse duplicates), the rest is bounded."""
    tok = get_tokenizer(tokenizer, bpe_dir)
    workers = workers or os.cpu_count() or 1
    chunk_kw = {"max_tokens": max_chunk_tokens, "mean_sentences": mean_sentences, "max_sentences": max_sentences}
    bad, odd, ids, occurrences, repeated = [], [], set(), {}, [0]

    def items():
        for lineno, err, line, flat in _parsed(corpus, workers, (tokenizer, bpe_dir, chunk_kw)):
            if err is not None:
                if not skip_bad:
                    raise ValueError(f"{err} ({corpus}:{lineno})")
                bad.append(lineno)
                continue
            if line is None:  # whitespace only or NUL characters: skipped and counted, as read_docs does
                odd.append(lineno)
                continue
            doc_id, repeat = unique_id(flat[0], ids, occurrences)
            if repeat:  # kept under its new id, in docs.jsonl and in the shards alike (data/corpus.py)
                rec = json.loads(line)
                rec["id"] = doc_id
                line, flat, repeated[0] = doc_line(rec), (doc_id, *flat[1:]), repeated[0] + 1
            yield line, flat
        if not ids:
            raise ValueError(f"{corpus} holds no documents (--corpus)")
        if repeated[0]:
            print(f"prepare: kept {repeated[0]} repeated document(s) under ids <id>#n", file=sys.stderr)
        if odd:
            print(f"prepare: skipped {len(odd)} document(s) of whitespace only or with NUL characters "
                  f"(lines {shown_lines(odd)})", file=sys.stderr)
        # before _write's finish copies info into the manifest
        info["source"]["skipped_lines"], info["source"]["repeated_docs"] = len(bad), repeated[0]
        info["source"]["odd_docs"] = len(odd)

    info = {"source": {"kind": "corpus", "path": os.path.abspath(corpus), "sha256": sha256_file(corpus),
                       "skipped_lines": len(bad), "repeated_docs": 0, "odd_docs": 0},
            "chunking": {"method": "sentences, 1+Poisson(mean_sentences-1) per chunk, capped; "
                                   "RNG seeded by sha256 of the document text; {\"chunks\"} docs kept as given",
                         "mean_sentences": mean_sentences, "max_sentences": max_sentences,
                         "max_chunk_tokens": max_chunk_tokens}}
    manifest = _write(out, tok, items(), info, max_chunk_tokens)
    if bad:
        print(f"prepare: skipped {len(bad)} malformed line(s) in {corpus} (lines {shown_lines(bad)})", file=sys.stderr)
    over = manifest["counts"]["chunks_over_budget"]
    if over:  # only pre-chunked {"chunks"} docs can be over budget: a chunk with a latent is never re-split
        print(f"prepare: warning: {over} pre-chunked chunk(s) exceed --max-chunk-tokens {max_chunk_tokens} "
              "(the E-step truncates them from the right)", file=sys.stderr)
    return manifest


def build_parser():
    p = argparse.ArgumentParser(prog="python -m data.prepare", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", metavar="JSONL", help='corpus: one {"text"} or {"chunks": [...]} doc per line')
    src.add_argument("--world", action="store_true",
                     help="write the built-in table world instead (see `python -m data.world --help` for its knobs)")
    p.add_argument("--seed", type=ascii_int, default=0, help="--world: the world's seed")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (docs.jsonl, manifest.json)")
    p.add_argument("--tokenizer", default="bytes", choices=TOKENIZERS, help="token counts and budgets use it")
    p.add_argument("--bpe-dir", default=None, metavar="D", help="directory with GPT-2's vocab.bpe + encoder.json")
    p.add_argument("--max-chunk-tokens", type=ascii_int, default=None, metavar="N",
                   help="split {\"text\"} docs so no chunk has more than N tokens (default: no limit)")
    p.add_argument("--mean-sentences", type=ascii_float, default=8,
                   help="lambda: mean sentences per chunk (default 8)")
    p.add_argument("--max-sentences", type=ascii_int, default=20, help="cap on sentences per chunk (default 20)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed lines (counted) instead of stopping")
    p.add_argument("--workers", type=ascii_int, default=0, help="tokenising processes (default 0: all cores)")
    return p


def flag_errors(args):
    """Every flag checked before any work; -> one-line messages naming the flag."""
    errors = [out_dir_error(args.out)]
    if args.corpus is not None and not os.path.isfile(args.corpus):
        errors.append(f"{args.corpus} is a directory; --corpus takes a JSONL file (--corpus)"
                      if os.path.isdir(args.corpus) else f"{args.corpus}: no such file (--corpus)")
    if args.max_chunk_tokens is not None and args.max_chunk_tokens < 1:
        errors.append(f"must be >= 1, got {args.max_chunk_tokens} (--max-chunk-tokens)")
    if not (math.isfinite(args.mean_sentences) and args.mean_sentences >= 1):
        errors.append(f"must be a number >= 1, got {args.mean_sentences} (--mean-sentences)")
    if args.max_sentences < 1:
        errors.append(f"must be >= 1, got {args.max_sentences} (--max-sentences)")
    if args.workers < 0:
        errors.append(f"must be >= 0 (0 = all cores), got {args.workers} (--workers)")
    if args.workers > (os.cpu_count() or 1):  # each a process with its own tokenizer
        errors.append(f"{args.workers} processes for the {os.cpu_count() or 1} cores here: tokenising is CPU-bound, "
                      "the extra ones would only queue (--workers)")
    if args.max_sentences >= 1 and args.mean_sentences > args.max_sentences:
        errors.append(f"{args.mean_sentences} exceeds --max-sentences {args.max_sentences}, the cap on every chunk "
                      "(--mean-sentences)")
    if args.world:
        errors += world.check(world.WorldConfig(seed=args.seed))
    else:
        try:
            get_tokenizer(args.tokenizer, args.bpe_dir)
        except (ValueError, OSError) as e:
            errors.append(f"{e} (--tokenizer {args.tokenizer}, --bpe-dir)")
    return [e for e in errors if e]


def main(argv=None):
    p = build_parser()
    p.error = parser_error  # one line, exit code 2 (below), not argparse's usage block
    try:
        args = p.parse_args(argv)
        errors = flag_errors(args)
        if errors:
            raise ValueError("; ".join(errors))
        if args.world:  # the world's own files (base, target, warm, heldout, questions) + world.json
            meta = world.write(world.WorldConfig(seed=args.seed), args.out)
            print(f"prepare: wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in meta["counts"].items()))
            return meta
        # prepare_corpus checks every line as it streams; the manifest, written last, marks a complete directory
        m = prepare_corpus(args.corpus, args.out, args.tokenizer, args.bpe_dir, args.max_chunk_tokens,
                           args.mean_sentences, args.max_sentences, args.skip_bad, args.workers)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    c = m["counts"]
    print(f"prepare: wrote {args.out}: {c['docs']} docs, {c['chunks']} chunks, {c['tokens']} tokens, "
          f"{c['latents']} latents ({m['tokenizer']} tokenizer, {m['shards']['files']['x']['dtype']} shards)")
    return m


if __name__ == "__main__":
    main()
