"""Test-session setup and the helpers every test file shares.

Triton kernels run in the interpreter on CPU tensors (no GPU on any of our machines): set before anything
imports triton, since @triton.jit reads it when a kernel is defined. Tests use tiny tensors: one thread avoids
OpenMP spin-waiting, which costs 100x on a busy 2-core machine (and up to 8x for two threads, measured).

Shared (import them: `from conftest import ROOT, run_py, tiny_gpt`):
  ROOT      the repository root (the cwd of every subprocess)
  run_py    python ARGS in a fresh process at ROOT, output captured as text
  tiny_gpt  a tiny GPT whose init is fixed by its seed
  marks_gpt   a tiny GPT that writes the layout marks almost always (what sampling a latent must refuse)
  estep_docs  em.estep on documents in memory (packed as token shards, as out/data/target/ holds them)
  check_bounds  a finished run's NLL metrics against its per-document files
"""
import os
import subprocess
import sys

os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_GPT = dict(block_size=64, vocab_size=261, n_layer=2, n_head=2, n_embd=32)


def run_py(args, env=None, unset=(), **kw):
    """`python *args` in a fresh process at ROOT -> CompletedProcess (stdout/stderr as text). env: variables
    added to this process's environment; unset: variables removed from it."""
    full = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**full, **(env or {})}, **kw)


def tiny_gpt(seed=0, **config):
    """A GPT with TINY_GPT's shape unless `config` overrides it; torch.manual_seed(seed) fixes its init."""
    from model import GPT, GPTConfig
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY_GPT, **config}))


def marks_gpt(tok, seed=0, eol=3.0, **config):
    """A tiny GPT for `tok` biased to write the layout marks: ln_f's first unit is a constant 1 that lm_head
    reads with weight 8 for BOS/EOS, SoL, PRIOR, POST and `eol` for EoL, so at every position the marks hold ~98%
    of the mass (a warm start that has not learned the thought format), EoL comes next, the bytes share the rest."""
    m = tiny_gpt(seed, vocab_size=tok.n_vocab, **config)
    with torch.no_grad():
        m.transformer.ln_f.weight[0], m.transformer.ln_f.bias[0] = 0.0, 1.0  # h[..., 0] = 1 at every position
        w = m.lm_head.weight  # (V, C), tied with wte: the first embedding unit changes too, harmless here
        w[:, 0] = 0.0
        w[[tok.bos, tok.eos, tok.sol, tok.prior, tok.post], 0] = 8.0
        w[tok.eol, 0] = eol
    return m


def estep_docs(model, tok, cfg, docs, it, out_dir, unit=512):
    """em.estep over `docs` ({'id', 'chunks'}) as in-memory shards -> (docs with latents, rows)."""
    import em
    from data import rundir as D
    from data.layout import encode_doc
    from data.shards import from_docs
    rows = list(em.estep(model, tok, cfg, from_docs([encode_doc(tok, d) for d in docs], tok), it, out_dir, unit))
    return list(D.with_latents(docs, rows)), rows


def check_bounds(out, rows):
    """Every metrics row of a run under `out` states the NLL its eval_docs.jsonl sums to (per raw token over the
    held-out documents), and a latent model's spec bound is its PRIOR-conditional one plus PRIOR's cost per chunk:
    what the report says is what the documents scored."""
    import json
    import pytest
    for r in rows:
        phase = "warm" if r.get("iter") == 0 else f"iter{r['iter']}" if "iter" in r else r["baseline"]
        with open(os.path.join(out, phase, "eval_docs.jsonl")) as f:
            docs = [json.loads(line) for line in f]
        n = sum(d["n_tok"] for d in docs)
        keys = [k for k in docs[0] if k.startswith("nll")]
        assert keys and all(r[k] == pytest.approx(-sum(d[k] for d in docs) / n) for k in keys), phase
        if "prior" in docs[0]:
            k = max(int(key[len("nll_k"):]) for key in keys if key.startswith("nll_k"))
            chunks = sum(d["chunks"] for d in docs)
            assert r[f"nll_k{k}"] - r[f"nll_np_k{k}"] == pytest.approx(r["prior_nats"] * chunks / n), phase
            assert r["prior_nats"] > 0 and r["sol_nats"] > 0, phase
