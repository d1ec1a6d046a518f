"""Prepare a dataset directory from a JSONL corpus (BoLT, Ruan et al. 2025; see data/corpus.py for the input).

    python -m data.prepare --corpus in.jsonl --out DIR [--tokenizer bytes|gpt2 --bpe-dir D
                           --max-chunk-tokens N --skip-bad]

writes, in the simple inspectable form train.py and em.py read:
  DIR/docs.jsonl     one chunked document per line, {"id", "chunks": [{"suffix", "latent"}]} (latents kept)
  DIR/manifest.json  tokenizer, counts of docs/chunks/tokens/latents, chunking parameters, source path
The manifest is written last, so a directory with a manifest is complete.

The data source is one of a mutually exclusive, required group of flags (`--corpus` here); another source
(e.g. the built-in world) adds its flag to that group in `build_parser` and a branch in `main`, and writes its
output with `write_dataset`.
"""
import argparse
import math
import os
import sys

from data import world
from data.corpus import out_dir_error, parser_error, read_docs, sha256_file, write_docs, write_json
from data.tokenizer import TOKENIZERS, get_tokenizer


def count_tokens(tok, docs, max_chunk_tokens=None):
    """Counts for the manifest: docs, chunks, raw tokens, latents and their tokens, longest chunk, over-budget."""
    c = {"docs": len(docs), "chunks": 0, "tokens": 0, "latents": 0, "latent_tokens": 0, "max_chunk_tokens": 0}
    over = 0
    for d in docs:
        for ch in d["chunks"]:
            n = len(tok.encode(ch["suffix"]))
            c["chunks"] += 1
            c["tokens"] += n
            c["max_chunk_tokens"] = max(c["max_chunk_tokens"], n)
            over += max_chunk_tokens is not None and n > max_chunk_tokens
            if ch.get("latent") is not None:
                c["latents"] += 1
                c["latent_tokens"] += len(tok.encode(ch["latent"]))
    c["chunks_over_budget"] = over
    return c


def write_dataset(out, docs, tok, info, max_chunk_tokens=None):
    """Write out/docs.jsonl then out/manifest.json (tokenizer, counts, and the caller's `info`); -> manifest."""
    os.makedirs(out, exist_ok=True)
    write_docs(os.path.join(out, "docs.jsonl"), docs)
    manifest = {"tokenizer": tok.name, "n_vocab": tok.n_vocab, "docs_file": "docs.jsonl",
                "counts": count_tokens(tok, docs, max_chunk_tokens), **info}
    write_json(os.path.join(out, "manifest.json"), manifest)
    return manifest


def prepare_corpus(corpus, out, tokenizer="bytes", bpe_dir=None, max_chunk_tokens=None, mean_sentences=8,
                   max_sentences=20, skip_bad=False):
    """Read and chunk a JSONL corpus and write the dataset directory; -> manifest dict."""
    tok = get_tokenizer(tokenizer, bpe_dir)
    stats = {}
    docs = read_docs(corpus, skip_bad=skip_bad, stats=stats, tok=tok, max_tokens=max_chunk_tokens,
                     mean_sentences=mean_sentences, max_sentences=max_sentences)
    if not docs:
        raise ValueError(f"{corpus} holds no documents (--corpus)")
    info = {"source": {"kind": "corpus", "path": os.path.abspath(corpus), "sha256": sha256_file(corpus),
                       "skipped_lines": stats["skipped"], "repeated_docs": stats["repeated"]},
            "chunking": {"method": "sentences, 1+Poisson(mean_sentences-1) per chunk, capped; "
                                   "RNG seeded by sha256 of the document text; {\"chunks\"} docs kept as given",
                         "mean_sentences": mean_sentences, "max_sentences": max_sentences,
                         "max_chunk_tokens": max_chunk_tokens}}
    manifest = write_dataset(out, docs, tok, info, max_chunk_tokens)
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
    p.add_argument("--seed", type=int, default=0, help="--world: the world's seed")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (docs.jsonl, manifest.json)")
    p.add_argument("--tokenizer", default="bytes", choices=TOKENIZERS, help="token counts and budgets use it")
    p.add_argument("--bpe-dir", default=None, metavar="D", help="directory with GPT-2's vocab.bpe + encoder.json")
    p.add_argument("--max-chunk-tokens", type=int, default=None, metavar="N",
                   help="split {\"text\"} docs so no chunk has more than N tokens (default: no limit)")
    p.add_argument("--mean-sentences", type=float, default=8, help="lambda: mean sentences per chunk (default 8)")
    p.add_argument("--max-sentences", type=int, default=20, help="cap on sentences per chunk (default 20)")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed lines (counted) instead of stopping")
    return p


def flag_errors(args):
    """Every flag checked before any work; -> one-line messages naming the flag."""
    errors = [out_dir_error(args.out)]
    if args.corpus is not None and not os.path.isfile(args.corpus):
        errors.append(f"{args.corpus}: no such file (--corpus)")
    if args.max_chunk_tokens is not None and args.max_chunk_tokens < 1:
        errors.append(f"must be >= 1, got {args.max_chunk_tokens} (--max-chunk-tokens)")
    if not (math.isfinite(args.mean_sentences) and args.mean_sentences >= 1):
        errors.append(f"must be a number >= 1, got {args.mean_sentences} (--mean-sentences)")
    if args.max_sentences < 1:
        errors.append(f"must be >= 1, got {args.max_sentences} (--max-sentences)")
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
        # prepare_corpus reads and checks every line before it writes anything
        m = prepare_corpus(args.corpus, args.out, args.tokenizer, args.bpe_dir, args.max_chunk_tokens,
                           args.mean_sentences, args.max_sentences, args.skip_bad)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    c = m["counts"]
    print(f"prepare: wrote {args.out}: {c['docs']} docs, {c['chunks']} chunks, {c['tokens']} tokens, "
          f"{c['latents']} latents ({m['tokenizer']} tokenizer)")
    return m


if __name__ == "__main__":
    main()
