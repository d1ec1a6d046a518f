"""Evaluation: the answer rule (data/questions.py), the two IW-ELBO bounds on a hand-built case, raw arms asked
to reason, refusing another version's run directory, the combined report over seeds, and accuracy end to end on an
external corpus with a questions file."""
import json
import os
import math
from dataclasses import asdict, replace

import pytest

import accuracy as A
import em
from data import questions as Q
from data import rundir
from data import report as R
from data.config import EMConfig
from data.layout import encode_doc
from data.tokenizer import get_tokenizer
from conftest import ROOT, run_py
from test_em import run_em


@pytest.mark.parametrize("text, answer, regex, got, ok", [
    ("A: 5 for 7 ciqx", 5, None, "5", True),            # first number
    ("x = -3.5, then 2", -3.5, None, "-3.5", True),     # negative decimal
    ("-12 degrees", "-12", None, "-12", True),          # a number given as a string is still a number
    ("5.0 apples", 5, None, "5.0", True),               # compared as numbers
    ("the answer is 55", 5, None, "55", False),         # the whole number, not a prefix
    ("no digits here", 5, None, None, False),
    ("\n  Paris \nLondon", "Paris", None, "Paris", True),  # words: the first non-empty line, stripped
    ("paris", "Paris", None, "paris", False),
    ("", "Paris", None, None, False),                   # nothing written (e.g. nothing after EoL)
    ("", 5, None, None, False),
    ("junk A: 7\nQ: 1", 7, r"A: (\d+)", "7", True),     # regex: group 1
    ("A: 77", 7, r"A: (\d+)", "77", False),
    ("A: 05", 5, r"A: (\d+)", "05", False),             # a regex compares text, exactly as the world's checker
    ("yes, 3", "yes", r"yes|no", "yes", True),          # regex without groups: the whole match
    (" 7c8i5q7x5\n", 5, r"^\s*\d(?:[a-z]\d)*[a-z](\d)", "5", True),  # the world's walk rule
])
def test_answer_extraction(text, answer, regex, got, ok):
    assert Q.extract(text, answer, regex) == got
    assert Q.correct(Q.extract(text, answer, regex), answer, regex) is ok


def test_questions_file_is_validated_with_its_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question": "Q: 1", "answer": 2}\n\n{"question": "Q: 2"}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:3"):
        Q.read_questions(str(p))
    p.write_text('{"question": "Q: 1", "answer": 2, "answer_regex": "A: ("}\n')
    with pytest.raises(ValueError, match="bad answer regex"):
        Q.read_questions(str(p))
    r = run_em(["--questions", str(p), "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and "q.jsonl:1" in r.stderr and "Traceback" not in r.stderr
    p.write_text("\n")
    with pytest.raises(ValueError, match="holds no questions"):
        Q.read_questions(str(p))
    p.write_bytes(b'{"question": "\xff", "answer": 1}\n')
    with pytest.raises(ValueError, match=r"not UTF-8 \(.*q.jsonl:1\)"):
        Q.read_questions(str(p))
    r = run_em(["--seeds", "0,x", "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and "--seeds" in r.stderr


def fake_model(monkeypatch, tok, lq, lp, marks):
    """generate -> latent 'z' EoL with summed log q lq[j]; score -> per token [marks..., lp[j]] for sample j."""
    K = len(lq)

    def fake_generate(model, prompts, max_new, stop_tokens=(), ids=None, **kw):
        return [{"tokens": [tok.encode("z")[0], tok.eol], "logprobs": [lq[i % K], 0.0], "raw_logprobs": [0, 0],
                 "stopped": True} for i in range(len(prompts))]

    def fake_score(model, prefixes, conts, batch_size=64):
        return [{"sum": sum(marks) + lp[i % K], "logprobs": [*marks, lp[i % K]]} for i in range(len(prefixes))]
    monkeypatch.setattr(em, "generate", fake_generate)
    monkeypatch.setattr(em, "score", fake_score)


def test_iw_elbo_both_bounds_by_hand(monkeypatch):
    """Two samples per chunk, log q = (-1, -2), log p without marks = (-3, -5), marks SoL 0.7 and PRIOR 0.2 nats.
    Per chunk: K=1 log w = -2 (first sample only); K=2 log((e^-2 + e^-3) / 2). The spec's bound adds both marks'
    -0.9 to every log p; the PRIOR-conditional one SoL's -0.7 alone; each mark's cost per chunk is reported, and
    the standard error over documents is the ratio estimator's (two documents of 5 and 2 tokens)."""
    tok = get_tokenizer("bytes")
    fake_model(monkeypatch, tok, lq=[-1.0, -2.0], lp=[-3.0, -5.0], marks=[-0.7, -0.2])
    docs = [{"id": "a", "chunks": [{"suffix": "xy", "latent": None}, {"suffix": "uvw", "latent": None}]},
            {"id": "b", "chunks": [{"suffix": "pq", "latent": None}]}]
    cfg = EMConfig(max_latent=8, block_size=64, estep="paper")  # K samples per chunk in one batch, as faked
    per_doc = []
    m = em.eval_nll(None, tok, cfg, docs, True, [1, 2], per_doc=per_doc)
    n_tok, chunks = 7, 3
    k1 = -2.0
    k2 = math.log((math.exp(-2.0) + math.exp(-3.0)) / 2)
    for k, lw in ((1, k1), (2, k2)):
        assert m[f"nll_k{k}"] == pytest.approx(-chunks * (lw - 0.9) / n_tok)
        assert m[f"nll_np_k{k}"] == pytest.approx(-chunks * (lw - 0.7) / n_tok)
        # per document log-likelihoods l = 2 x, x (x per chunk): residuals -x/7, x/7, so se = 2|x| / 49
        assert m[f"nll_k{k}_se"] == pytest.approx(2 * abs(lw - 0.9) / 49)
    assert m["bpb_k2"] == pytest.approx(-chunks * (k2 - 0.9) / math.log(2) / 7)  # 7 bytes of text
    assert m["sol_nats"] == pytest.approx(0.7) and m["prior_nats"] == pytest.approx(0.2)
    assert m["nll_k2"] - m["nll_np_k2"] == pytest.approx(m["prior_nats"] * chunks / n_tok)
    assert [(d["id"], d["n_tok"], d["chunks"]) for d in per_doc] == [("a", 5, 2), ("b", 2, 1)]
    assert per_doc[0]["nll_k2"] == pytest.approx(2 * (k2 - 0.9))
    # the E-step's weights leave both marks out: exactly log p - log q; its pick is the same with either mark in
    res = em.propose(None, tok, cfg, [encode_doc(tok, docs[0])], [(0, 0)], 2, "t")
    assert [s.without_marks() - s.log_q for s in res[0]] == [-2.0, -3.0]
    assert em.pick(tok, res[0], (0, 0))["log_w"] == [-2.0, -3.0]
    assert [s.log_p for s in res[0]] == pytest.approx([-3.9, -5.9]) and res[0][0].marks == [-0.7, -0.2]
    for log_p in (em.Sample.without_prior, lambda s: s.log_p):
        for c in range(50):
            assert em.resample(em.importance_weights([log_p(s) for s in res[0]], [s.log_q for s in res[0]]),
                               (0, c)) == em.resample([-2.0, -3.0], (0, c))


def test_raw_arms_reason_with_the_prompt_and_its_rule(monkeypatch):
    """A raw model is asked the question directly (DIRECT_TOKENS tokens, answer rule) and, to reason, its "prompt"
    (max_latent + 8 tokens, prompt rule); a latent model's answer is the text after its EoL."""
    tok = get_tokenizer("bytes")
    seen = []

    def fake_generate(model, prompts, max_new, stop_tokens=(), **kw):
        seen.append((prompts, max_new, set(stop_tokens)))
        text = " 1a2b9\nA: 2" if max_new > A.DIRECT_TOKENS else "A: 2 for"
        return [{"tokens": tok.encode(text), "logprobs": [], "raw_logprobs": [], "stopped": False} for _ in prompts]
    monkeypatch.setattr(A, "generate", fake_generate)
    cfg = EMConfig(max_latent=24, block_size=64)
    qs = [{"question": "Q: 1 ab\n", "answer": 9, "prompt": "0 cd: 0c1d2\n1 ab:", "answer_regex": r"A: (\d+)",
           "prompt_regex": r"^\s*\d(?:[a-z]\d)*[a-z](\d)", "prompt_stop": "\n"}]
    m, rows = A.eval_questions(None, tok, cfg, qs, "reason")
    assert seen[-1] == ([[tok.bos] + tok.encode("0 cd: 0c1d2\n1 ab:")], 32, {tok.eos, tok.encode("\n")[0]})
    assert m["acc_reason"] == 1.0 and rows[0]["extracted"] == "9" and rows[0]["mode"] == "reason"
    m, rows = A.eval_questions(None, tok, cfg, qs, "direct")
    assert seen[-1] == ([[tok.bos] + tok.encode("Q: 1 ab\n")], A.DIRECT_TOKENS, {tok.eos})
    assert m["acc"] == 0.0 and rows[0]["extracted"] == "2" and not rows[0]["correct"]
    # --answer-regex overrides the file's rules
    m, _ = A.eval_questions(None, tok, EMConfig(max_latent=24, block_size=64, answer_regex=r"(\d)\n"), qs,
                            "reason")
    assert m["acc_reason"] == 1.0
    with pytest.raises(ValueError, match="prompt_stop"):
        A.eval_questions(None, tok, cfg, [{**qs[0], "prompt_stop": "ab"}], "reason")


def test_a_latent_model_thinks_before_every_chunk_as_training_lays_it_out(monkeypatch):
    """A latent model writes a thought before each chunk of a question in turn (each round sees the thoughts
    before), the last before the chunk holding the answer: the question's last chunk when "open" (the answer
    continues it), else a chunk of its own; the rule reads what it writes after that; the answer's text is scored
    there (ans_nll); a thought that never closes leaves no answer."""
    tok = get_tokenizer("bytes")
    S, P, E, enc = tok.sol, tok.prior, tok.eol, tok.encode
    seen, scored = [], []

    def fake_generate(model, prompts, max_new, stop_tokens=(), **kw):
        seen.append((prompts, max_new, set(stop_tokens)))
        if stop_tokens == (tok.eol,):  # a thought: "t<round>", closed unless the prompt says "never"
            return [{"tokens": enc(f"t{len(seen)}") + ([] if "never" in tok.decode(p) else [E]), "logprobs": [],
                     "raw_logprobs": [], "stopped": "never" not in tok.decode(p)} for p in prompts]
        return [{"tokens": enc("7. Next") + [S], "logprobs": [], "raw_logprobs": [], "stopped": True} for _ in prompts]

    def fake_score(model, prefixes, conts, batch_size=64):
        scored.extend(zip(prefixes, conts))
        return [{"sum": -0.5 * len(c), "logprobs": [-0.5] * len(c)} for c in conts]
    monkeypatch.setattr(A, "generate", fake_generate)
    monkeypatch.setattr(A, "score", fake_score)
    cfg = EMConfig(max_latent=24, block_size=256)
    qs = [{"question": "Start. Apply c. The result is ", "chunks": ["Start. ", "Apply c. The result is "],
           "open": True, "answer": 7, "answer_text": "7.", "answer_regex": r"^(\d)\."},
          {"question": "Q: 1 ab\n", "answer": 7, "answer_text": "A: 7\n"},
          {"question": "never", "answer": 7}]
    m, rows = A.eval_questions(None, tok, cfg, qs, "latent")
    rounds, answers = seen[:2], seen[2]
    assert len(seen) == 3 and [r[1:] for r in rounds] == [(24, {E})] * 2 and answers[1:] == (A.DIRECT_TOKENS,
                                                                                           {tok.eos, S})
    assert rounds[0][0] == [[tok.bos, S, P]] * 3  # the first thought comes before the first chunk
    assert rounds[1][0][:2] == [[tok.bos, S, P, *enc("t1"), E, *enc("Start. "), S, P],
                                [tok.bos, S, P, *enc("t1"), E, *enc("Q: 1 ab\n"), S, P]]
    assert answers[0][:2] == [rounds[1][0][0] + [*enc("t2"), E, *enc("Apply c. The result is ")],  # open: continued
                              rounds[1][0][1] + [*enc("t2"), E]]  # the answer opens a chunk of its own
    assert scored[:2] == [(answers[0][0], enc("7.")), (answers[0][1], enc("A: 7\n"))]
    assert [r["thoughts"] for r in rows] == [["t1", "t2"]] * 3 and [r["closed"] for r in rows] == [True, True, False]
    assert [r["extracted"] for r in rows] == ["7", "7", None]  # a thought never closed: no answer
    assert [r["correct"] for r in rows] == [True, True, False]
    assert m["acc"] == pytest.approx(2 / 3) and m["ans_nll"] == pytest.approx((1.0 + 2.5 + 0.5) / 3)


def test_an_out_of_another_version_is_refused_and_a_stale_eval_recomputed(monkeypatch, tmp_path):
    """config.json or data/DONE lacking what this em.py writes: refused in one line naming a fresh --out; the
    eval-only fields may change; an eval.json without this evaluation's eval_id is re-evaluated."""
    cfg = EMConfig(out=str(tmp_path), questions="", seeds="")
    (tmp_path / "config.json").write_text(json.dumps(asdict(cfg)))
    assert rundir.out_errors(replace(cfg, answer_regex=r"A: (\d+)"), None) == []  # the same run
    assert "another configuration" in rundir.out_errors(replace(cfg, k=2), None)[0]
    old = {k: v for k, v in asdict(cfg).items() if k != "estep"}
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert rundir.out_errors(cfg, None) == [f"{tmp_path / 'config.json'} was written by another version of em.py: "
                                            "use a fresh --out (--out)"]
    (tmp_path / "config.json").unlink()
    (tmp_path / "data").mkdir()
    (tmp_path / "data/DONE").write_text(json.dumps({"counts": {}}))  # no fingerprint
    fp = rundir.data_fingerprint(cfg)
    assert rundir.out_errors(cfg, fp) == [rundir.other_version(str(tmp_path / "data/DONE"))]
    (tmp_path / "data/DONE").write_text(json.dumps({"fingerprint": fp}))
    assert rundir.out_errors(cfg, fp) == []
    (tmp_path / "warm").mkdir()
    (tmp_path / "warm/eval.json").write_text(json.dumps({"nll_k1": 1.0, "acc": 0.5}))
    calls = []
    monkeypatch.setattr(em, "load_checked", lambda *a: (None, {}))
    monkeypatch.setattr(em, "evaluate", lambda *a: calls.append(1) or ({"nll_k1": 2.0, "nll_np_k1": 1.0}, [{"q": 1}],
                                                                        [{"id": "d", "nll_k1": -3.0}]))
    tok, data = get_tokenizer("bytes"), {"questions": [{"question": "Q", "answer": 1}]}
    m = em.run_eval(cfg, "warm", "ckpt", tok, data, True)
    assert calls == [1] and m["nll_k1"] == 2.0 and "eval_id" not in m
    assert (tmp_path / "warm/eval_questions.jsonl").read_text() == '{"q": 1}\n'
    assert (tmp_path / "warm/eval_docs.jsonl").read_text() == '{"id": "d", "nll_k1": -3.0}\n'
    assert em.run_eval(cfg, "warm", "ckpt", tok, data, True) == m and calls == [1]  # cached now
    em.run_eval(replace(cfg, answer_regex="x"), "warm", "ckpt", tok, data, True)  # another rule: again
    assert calls == [1, 1]


def test_combined_report_mean_and_sd(tmp_path):
    row = lambda it, acc, nll: {"name": f"BoLT iter {it}", "iter": it, "acc": acc, "acc_se": 0.01,
                                "nll_k1": nll, "nll_np_k1": nll - 0.5}
    raw = lambda acc, reason: {"name": "raw, token-matched (3.0 epochs)", "baseline": "raw_tokens", "nll": 2.0,
                               "acc": acc, "acc_se": 0.01, "acc_reason": reason, "acc_reason_se": 0.01}
    per = {0: [row(0, 0.2, 3.0), row(1, 0.4, 2.0), raw(0.1, 0.3)],
           1: [row(0, 0.3, 3.2), row(1, 0.6, 1.0), {**raw(0.2, 0.1), "name": "raw, token-matched (3.1 epochs)"}]}
    text = R.combined_report(str(tmp_path), per, [1], "test.")
    sd = math.sqrt(2 * 0.1 ** 2)  # two seeds 0.4 and 0.6: sample sd
    assert f"50.0% ± {100 * sd:.1f}" in text and "1.5000 ± 0.7071" in text
    # the raw arm's accuracy is the mean of each seed's better prompt: (0.3 + 0.2) / 2
    assert "| raw, token-matched | 25.0% ± 7.1 | - | 15.0% ± 7.1 / 20.0% ± 14.1 |" in text
    assert "## seed 1" in text and (tmp_path / "plot.svg").read_text().startswith("<svg")
    means = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert means[1]["nll_k1"] == pytest.approx(1.5) and means[2]["acc_best"] == pytest.approx(0.25)


def test_report_compares_against_the_strongest_raw_arm_of_every_arm(tmp_path):
    """The claims line picks the best raw arm by its better prompt among the base model and every raw_* arm
    (replay ones included), never the oracle or a latent row, on the dev questions when there are some; every arm
    gets a table row."""
    row = lambda name, key, acc, reason=None: {"name": name, "baseline": key, "acc": acc, "acc_se": 0.01, "nll": 1.0,
                                               **({} if reason is None else {"acc_reason": reason,
                                                                              "acc_reason_se": 0.02})}
    rows = [{"name": "BoLT iter 1", "iter": 1, "acc": 0.5, "acc_se": 0.01, "nll_k1": 2.0, "nll_mc_k1": 1.5},
            row("base (no target training)", "base", 0.0, 0.2), row("raw, FLOP-matched (one M-step)", "raw_flops", 0.1, 0.0),
            row("raw + warm walks inline, base replay (one M-step)", "raw_inline_replay", 0.05, 0.3),
            row("warm start, then raw (one M-step)", "raw_warm", 0.25, 0.1),
            {"name": "oracle (gold walks)", "baseline": "oracle", "acc": 1.0, "acc_se": 0.0, "nll_k1": 0.5}]
    assert R.best_raw(rows) == (rows[3], False)  # no dev questions: the best on test
    assert R.best_raw(rows[:1] + rows[-1:])[0] is None
    text = R.report(str(tmp_path), rows, [1], "test.")
    assert ("- Accuracy: BoLT iter 1 50.0% vs the best raw arm, raw + warm walks inline, base replay (one "
            "M-step) asked to reason, 30.0%: +20.0 points ± 2.2 (unpaired standard error).") in text
    assert "| warm start, then raw (one M-step) | 25.0% ± 1.0 (direct) | - | 25.0% / 10.0% |" in text
    assert "| oracle (gold walks) | 100.0% ± 0.0 |" in text
    rows[3]["acc_reason"] = 0.2  # now the warm arm, asked directly, is the strongest
    assert "vs the best raw arm, warm start, then raw (one M-step) asked directly, 25.0%" in \
        R.report(str(tmp_path), rows, [1], "test.")
    for r in rows[1:5]:  # with dev questions the arm is chosen on them: the FLOP-matched one, asked directly
        r.update(dev_acc=0.9 if r["baseline"] == "raw_flops" else 0.1, dev_acc_se=0.01)
    assert R.best_raw(rows) == (rows[2], True)
    assert "vs the raw arm best on dev, raw, FLOP-matched (one M-step) asked directly, 10.0%" in \
        R.report(str(tmp_path), rows, [1], "test.")


@pytest.mark.slow
def test_external_corpus_with_questions_every_arm_gets_accuracy(tmp_path):
    """--corpus/--teacher-latents/--val/--questions/--dev-questions on a tiny corpus: every arm has a test and a
    dev accuracy, each the mean of its rows' rule (a question no model can answer is scored wrong everywhere,
    one read by a regex right exactly where the regex finds the answer, a latent model's only when all its
    thoughts closed); raw arms are also asked with the few-shot prefix."""
    from train import TrainConfig, train
    text = ["The cat sat on the mat. ", "It was warm. ", "Then the dog came in. "]
    write = lambda p, rows: p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(tmp_path / "corpus.jsonl", [{"id": f"c{i}", "chunks": [{"suffix": t, "latent": "so " + t[:5]}
                                                                  for t in text]} for i in range(6)])
    write(tmp_path / "teacher.jsonl", [{"id": f"t{i}", "chunks": [{"suffix": t, "latent": "why " + t[:4]}
                                                                   for t in text[::-1]]} for i in range(3)])
    write(tmp_path / "val.jsonl", [{"id": "v0", "chunks": [{"suffix": t, "latent": None} for t in text[:2]]}])
    write(tmp_path / "q.jsonl", [{"question": "Where? ", "answer": "on the moon, 42 times"},
                                 {"question": "Who? ", "answer": "t", "answer_regex": "(t)", "prompt": "Who:",
                                  "prompt_regex": "(t)"}])
    write(tmp_path / "dev.jsonl", [{"question": "Why? ", "answer": "t", "answer_regex": "(t)"}])
    base = train(TrainConfig(data=str(tmp_path / "corpus.jsonl"), layout="raw", out=str(tmp_path / "base"),
                             n_layer=1, n_head=2, n_embd=32, block_size=96, max_steps=2, batch_size=2,
                             total_batch_tokens=192, warmup_steps=1, log_every=1, ckpt_every=50))["ckpt"]
    out = tmp_path / "run"
    r = run_em(["--init", base, "--corpus", str(tmp_path / "corpus.jsonl"), "--teacher-latents",
                str(tmp_path / "teacher.jsonl"), "--val", str(tmp_path / "val.jsonl"), "--questions",
                str(tmp_path / "q.jsonl"), "--dev-questions", str(tmp_path / "dev.jsonl"),
                "--iters", "1",
                "--k", "2", "--out", str(out), "--warm-steps", "2", "--m-steps", "2", "--block-size", "96",
                "--raw-arms", "tokens,flops,inline,warm,pipeline", "--oracle",
                "--batch-size", "2", "--max-latent", "12", "--n-layer", "1", "--n-head", "2", "--n-embd", "32"],
               timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = {m.get("baseline", m["name"]): m for m in map(json.loads, open(out / "metrics.jsonl"))}
    raw_arms = ("raw_tokens", "raw_flops", "raw_inline", "raw_warm", "raw_pipeline")
    if "raw_flops" not in metrics:  # the token-matched arm trained what the FLOP-matched one would: trained once
        assert "FLOP" in metrics["raw_tokens"]["name"]
        raw_arms = tuple(a for a in raw_arms if a != "raw_flops")
    assert set(metrics) == {"warm start", "BoLT iter 1", "base", *raw_arms, "oracle"}
    for name, m in metrics.items():
        raw = name in ("base", *raw_arms)
        assert ("acc_reason" in m) is raw and ("nll" in m) is raw and ("nll_k1" in m) is not raw
        assert m["n_questions"] == 2 and m["dev_n_questions"] == 1 and ("ans_nll" in m) is not raw
        phase = {"warm start": "warm", "BoLT iter 1": "iter1"}.get(name, m.get("phase", name))
        rows = [json.loads(line) for line in open(out / phase / "eval_questions.jsonl")]
        test = [r for r in rows if r["split"] == "test" and r["mode"] == ("direct" if raw else "latent")]
        dev = [r for r in rows if r["split"] == "dev" and r["mode"] == ("direct" if raw else "latent")]
        # '(t)': right exactly where a "t" was written after the question (a latent model: after its thoughts)
        closed = [raw or r["closed"] for r in test + dev]
        assert [r["correct"] for r in test + dev] == [False] + [ok and "t" in r["answer_text"]
                                                             for ok, r in zip(closed[1:], test[1:] + dev)]
        assert m["acc"] == sum(r["correct"] for r in test) / 2 and m["dev_acc"] == dev[0]["correct"]
        if not raw:
            assert m["ans_nll"] == pytest.approx(-sum(r["ans_logp"] for r in test) / 2) and m["ans_nll"] > 0
        assert not any(r["correct"] for r in rows if r["answer"] == "on the moon, 42 times"), name
        reason = [r for r in rows if r["mode"] == "reason" and r["split"] == "test"]
        if raw:
            assert m["acc_reason"] == sum(r["correct"] for r in reason) / 2
            assert [r["correct"] for r in reason] == [False, "t" in reason[1]["answer_text"]]
            assert {r["prompt"] for r in reason} == {"Where? ", "Who:"}
        else:
            assert not reason
    report = (out / "report.md").read_text()
    assert "raw: direct / reasoning" in report and "PRIOR-cond. NLL K=1" in report


def test_combined_report_counts_bootstrapped_seeds_and_pairs_questions_and_documents(tmp_path):
    """Every seed is in the verdict ("k of n"): a seed bootstrapped when each step warm -> 1 -> 2 gains more than
    twice its paired standard error; differences are paired over the same questions (a raw arm asked the way it
    is better on dev) and, for the bound, over the same documents."""
    n = 100
    write = lambda path, rows: (path.parent.mkdir(parents=True, exist_ok=True),
                                path.write_text("".join(json.dumps(r) + "\n" for r in rows)))
    qrows = lambda mode, right: [{"split": "test", "mode": mode, "q": q, "correct": q in right} for q in range(n)]
    right = {0: [range(30), range(60), range(90)], 1: [range(30), range(60), range(3, 63)]}
    per = {}
    for s, sets in right.items():
        d = tmp_path / f"seed{s}"
        rows = [{"name": "warm start" if t == 0 else f"BoLT iter {t}", "iter": t, "acc": len(r) / n,
                 "acc_se": 0.05, "nll_k1": 1.0} for t, r in enumerate(sets)]
        for t, r in enumerate(sets):
            write(d / ("warm" if t == 0 else f"iter{t}") / "eval_questions.jsonl",
                  qrows("latent", set(r)) + [{"split": "dev", "mode": "latent", "q": 0, "correct": False}])
        # a raw arm better asked to reason on test (20 vs 10) but directly on dev: it is scored asked directly
        rows.append({"name": "raw, FLOP-matched", "baseline": "raw_flops", "nll": 2.0, "acc": 0.1, "acc_se": 0.03,
                     "acc_reason": 0.2, "acc_reason_se": 0.04, "dev_acc": 0.5, "dev_acc_se": 0.05,
                     "dev_acc_reason": 0.1, "dev_acc_reason_se": 0.03})
        write(d / "raw_flops" / "eval_questions.jsonl",
              qrows("direct", set(range(10))) + qrows("reason", set(range(20))))
        for phase, lls in (("warm", (-20.0, -60.0)), ("iter2", (-15.0, -50.0))):
            write(d / phase / "eval_docs.jsonl", [{"id": f"d{i}", "n_tok": nt, "nll_k1": ll}
                                                  for i, (nt, ll) in enumerate(zip((10, 30), lls))])
        per[s] = rows
    text = R.combined_report(str(tmp_path), per, [1], "test.")
    assert "**Bootstrapped on 1 of 2 seeds**" in text and "over all 2 seeds: 75.0% ± 21.2" in text
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line[:4] in ("| 0 ", "| 1 ")}
    se = lambda p: 100 * math.sqrt(p * (1 - p) * n / (n - 1)) / math.sqrt(n)  # sd of 0/1 differences / sqrt(n)
    assert rows["0"][1:5] == ["30.0%", "60.0%", "90.0%", "-"] and rows["0"][5:7] == [f"+30.0 ± {se(0.3):.1f} (paired)",
                                                                                      "yes"]
    assert rows["1"][5:7] == ["+0.0 ± 2.5 (paired)", "NO"]  # 60 right at iterations 1 and 2, 3 of them others
    # the raw arm is asked directly (better on dev), not to reason (better on test)
    assert rows["0"][7:10] == ["raw, FLOP-matched, 10.0%", f"+80.0 ± {se(0.8):.1f} (paired)", "yes"]
    assert rows["0"][10] == f"+60.0 ± {se(0.6):.1f} (paired)"
    # per document: deltas 5 and 10 nats over 10 and 30 tokens: -0.375 per token, residuals +-1.25
    assert rows["0"][11] == f"-0.3750 ± {math.sqrt(2 * 1.25 ** 2 * 2) / 40:.4f} |"
    assert "seed 1 (seed1/report.md)" in text and "(paired standard error)" in text


def test_k_curve_from_finished_runs(tmp_path):
    """python -m data.report --k-curve: the last iteration of each run, ordered by its config's K."""
    for k, acc in ((4, 0.6), (1, 0.3)):
        d = tmp_path / f"k{k}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"k": k}))
        rows = [{"name": "warm start", "iter": 0, "acc": 0.2, "acc_se": 0.01, "nll_k1": 3.0},
                {"name": "BoLT iter 1", "iter": 1, "acc": acc / 2, "acc_se": 0.01, "nll_k1": 2.5},
                {"name": "BoLT iter 2", "iter": 2, "acc": acc, "acc_se": 0.01, "nll_k1": 2.0 + k / 10}]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = R.k_curve([str(tmp_path / "k4"), str(tmp_path / "k1")], str(tmp_path / "curve"))
    lines = [line for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 4 ")]
    assert lines[0].startswith("| 1 ") and "| 2 | 30.0% ± 1.0 | 2.1000 | 20.0% |" in lines[0]
    assert lines[1].startswith("| 4 ") and "60.0%" in lines[1]
    assert (tmp_path / "curve/kcurve.svg").read_text().startswith("<svg")
    at1 = R.k_curve([str(tmp_path / "k4"), str(tmp_path / "k1")], str(tmp_path / "c1"), iteration=1)
    assert "at iteration 1" in at1 and "| 1 | 15.0% ± 1.0 | 2.5000 |" in at1 and "| 1 | 30.0% ± 1.0 | 2.5000 |" in at1
    with pytest.raises(ValueError):
        R.k_curve([str(tmp_path / "k4")], str(tmp_path / "c3"), iteration=3)
    r = run_py(["-m", "data.report", "--k-curve", str(tmp_path / "nope"), "--out", str(tmp_path / "c")])
    assert r.returncode == 2 and r.stderr.startswith("error:") and "nope" in r.stderr


def test_compare_puts_runs_side_by_side(tmp_path):
    """python -m data.report --compare: one row per model, per run its columns, labelled by what differs."""
    for estep, acc, base in (("sequential", 0.8, True), ("paper", 0.4, False)):
        d = tmp_path / estep
        d.mkdir()
        (d / "config.json").write_text(json.dumps({"estep": estep, "k": 4, "seed": 0, "out": str(d)}))
        rows = [{"name": "warm start", "iter": 0, "acc": 0.5, "acc_se": 0.01, "nll_k4": 0.3, "nll_np_k4": 0.2},
                {"name": "BoLT iter 1", "iter": 1, "acc": acc, "acc_se": 0.02, "nll_k4": 0.25, "nll_np_k4": 0.19,
                 "estep_gold_match": acc / 2, "estep_gold_steps": 0.9}]
        rows += [{"name": "raw, FLOP-matched", "baseline": "raw_flops", "acc": 0.1, "acc_se": 0.01,
                  "acc_reason": 0.2, "acc_reason_se": 0.01, "nll": 0.22}] if base else []
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = R.compare([str(tmp_path / "sequential"), str(tmp_path / "paper")], str(tmp_path / "cmp"))
    rows = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith("| ")}
    assert "estep=sequential: accuracy" in rows["model"] and "estep=paper: accuracy" in rows["model"]
    assert "out=" not in rows["model"]  # the dirs differ, but that is not what tells the runs apart
    assert rows["BoLT iter 1"].endswith("| 80.0% ± 2.0 | 0.2500 | 0.1900 | 40.0% (steps 90.0%) | 40.0% ± 2.0 | "
                                        "0.2500 | 0.1900 | 20.0% (steps 90.0%) |")
    assert rows["raw, FLOP-matched"] == "| raw, FLOP-matched | 20.0% ± 1.0 | 0.2200 | - | - | - | - | - | - |"
    assert list(rows)[1:] == ["warm start", "BoLT iter 1", "raw, FLOP-matched"]
    assert (tmp_path / "cmp/compare.svg").read_text().startswith("<svg")
    r = run_py(["-m", "data.report", "--compare", str(tmp_path / "paper"), "--iter", "1", "--out", str(tmp_path / "c")])
    assert r.returncode == 2 and "--iter" in r.stderr
    (tmp_path / "paper/metrics.jsonl").write_text("")  # an empty run: one line, no traceback
    r = run_py(["-m", "data.report", "--compare", str(tmp_path / "paper"), "--out", str(tmp_path / "c")])
    assert r.returncode == 2 and r.stderr.startswith("error: no latent model's bound") and "Traceback" not in r.stderr


def test_world_questions_carry_their_rules(tmp_path):
    """The world's rules read its own formats: the answer line after the question, the walk after the prompt
    (the base text's format)."""
    from data import world as W
    cfg = W.WorldConfig(n_base=5, n_target=5, n_warm=5, n_heldout=5, n_questions=20)
    W.write(cfg, str(tmp_path))
    qs = Q.load_prepared(str(tmp_path))
    for q in qs:
        start, ops = q["prompt"][:-1].split()
        problem = (int(start), ops)
        assert q["question"] == W.question_text(problem)
        walk = " " + q["gold"] + "\n"  # what the base text writes after "7 ciqx:"
        assert Q.correct(Q.extract(walk, q["answer"], q["prompt_regex"]), q["answer"], q["prompt_regex"])
        right, wrong = W.answer_text(problem, q["answer"]), W.answer_text(problem, (q["answer"] + 1) % 10)
        assert Q.correct(Q.extract(right, q["answer"], q["answer_regex"]), q["answer"], q["answer_regex"])
        assert not Q.correct(Q.extract(wrong, q["answer"], q["answer_regex"]), q["answer"], q["answer_regex"])


@pytest.mark.slow
def test_seeds_run_each_seed_apart_then_a_combined_report(tmp_path):
    """--seeds 0,1: one resumable run per seed in out/seed{S}, then out/report.md with mean ± sd over the seeds;
    a second invocation trains nothing and writes the same combined numbers."""
    out = tmp_path / "s"
    args = ["--quick", "--iters", "1", "--no-baselines", "--seeds", "0,1", "--out", str(out)]
    r = run_em(args)
    assert r.returncode == 0, r.stderr[-2000:]
    per = {s: [json.loads(line) for line in open(out / f"seed{s}" / "metrics.jsonl")] for s in (0, 1)}
    assert per[0] != per[1]  # two seeds, two different runs
    assert json.load(open(out / "seed1" / "config.json"))["seed"] == 1
    text = (out / "report.md").read_text()
    a, b = per[0][1]["nll_k1"], per[1][1]["nll_k1"]
    assert f"{(a + b) / 2:.4f} ± {math.sqrt((a - b) ** 2 / 2):.4f}" in text
    again = run_em(args)
    assert again.returncode == 0 and "] training " not in again.stdout  # no phase trains again
    assert [json.loads(line) for line in open(out / "seed0" / "metrics.jsonl")] == per[0]


def test_seed_criteria_paired_steps_and_raw_arm(tmp_path):
    """(b) needs every step up by > 2 paired SE, (d) the last iteration above the strongest raw arm (at its better
    prompt) by > 2 paired SE; a seed that misses either is counted as not bootstrapped."""
    from data import report as R

    def write(seed, name, mode, correct):
        d = tmp_path / f"seed{seed}" / name
        d.mkdir(parents=True)
        rows = [{"split": "test", "mode": mode, "q": i, "correct": c} for i, c in enumerate(correct)]
        (d / "eval_questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    n = 200
    per = {}
    for seed, accs in ((0, (0.2, 0.5, 0.8)), (1, (0.2, 0.5, 0.51))):  # seed 1: last step +1 point, 2 SE = 1.4
        rows = []
        for it, a in enumerate(accs):
            write(seed, "warm" if it == 0 else f"iter{it}", "latent", [int(i < a * n) for i in range(n)])
            rows.append({"name": f"it{it}", "iter": it, "acc": a})
        write(seed, "base", "reason", [int(i < 0.3 * n) for i in range(n)])
        with open(tmp_path / f"seed{seed}" / "base" / "eval_questions.jsonl", "a") as f:
            f.write("".join(json.dumps({"split": "test", "mode": "direct", "q": i, "correct": 0}) + "\n"
                            for i in range(n)))
        rows.append({"name": "base", "baseline": "base", "acc": 0.0, "acc_reason": 0.3})
        per[seed] = rows
    lines, ok = R.seed_criteria(str(tmp_path), per, [1])
    assert ok == {0: True, 1: False}
    assert "1 of 2 seeds" in lines[0] and "base, 30.0%" in lines[-2]


def test_k_curve_over_seeds_pairs_each_seed_on_the_same_questions(tmp_path):
    """--k-curve with --seeds dirs: mean ± sd over the seeds per K, and per seed (c) from the questions' files."""
    for k, correct in ((4, {0: [1, 1, 1, 0] * 25, 1: [1, 0] * 50}), (1, {0: [1, 0, 0, 0] * 25, 1: [0, 1] * 50})):
        for s, qs in correct.items():
            d = tmp_path / f"k{k}" / f"seed{s}"
            (d / "iter2").mkdir(parents=True)
            (d / "config.json").write_text(json.dumps({"k": k}))
            acc = sum(qs) / len(qs)
            rows = [{"name": "warm start", "iter": 0, "acc": 0.2, "acc_se": 0.01},
                    {"name": "BoLT iter 2", "iter": 2, "acc": acc, "acc_se": 0.05, "nll_k1": 2.0, "nll_k1_se": 0.1}]
            (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            (d / "iter2" / "eval_questions.jsonl").write_text("".join(
                json.dumps({"split": "test", "mode": "latent", "q": i, "correct": bool(c)}) + "\n"
                for i, c in enumerate(qs)))
    text = R.k_curve([str(tmp_path / "k4"), str(tmp_path / "k1")], str(tmp_path / "curve"))
    k4 = next(line for line in text.splitlines() if line.startswith("| 4 "))
    assert "(seeds 0, 1)" in k4 and f"62.5% ± {100 * math.sqrt(2 * 0.125 ** 2):.1f}" in k4
    seeds = {line.split(" | ")[0][2:]: line for line in text.splitlines() if line.startswith(("| 0 ", "| 1 "))}
    # seed 0: +50 points, every question's difference 0 or 1 (paired); seed 1: the same accuracy, (c) fails
    assert "| 25.0% | 75.0% | +50.0 ± 5.0 (paired) | yes |" in seeds["0"]  # columns K=1, K=4
    assert "| 50.0% | 50.0% | +0.0 ±" in seeds["1"] and seeds["1"].endswith("| NO |")
    r = run_py(["-m", "data.report", "--k-curve", str(tmp_path / "k4"), str(tmp_path / "k1"), "--out",
                str(tmp_path / "c2")])
    assert r.returncode == 0, r.stderr


def _docs_module(name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "docs", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_result_apart_cuts_only_open_chunks_with_text_before_the_marker(tmp_path):
    ra = _docs_module("result_apart")
    q1 = {"question": "x", "answer": 0, "open": True, "chunks": ["Start from 5. ", "Apply m. The result is "]}
    q2 = {"question": "y", "answer": 1, "open": True, "chunks": ["Start from 5. Apply m. ", "The result is "]}
    q3 = {"question": "z", "answer": 2, "chunks": ["Apply m. The result is "]}  # not open: the answer has its own
    assert ra.result_apart(q1, "The result is ")["chunks"] == ["Start from 5. ", "Apply m. ", "The result is "]
    assert ra.result_apart(q2, "The result is ") is q2 and ra.result_apart(q3, "The result is ") is q3
    src, out = tmp_path / "q.jsonl", tmp_path / "apart.jsonl"
    src.write_text("".join(json.dumps(q) + "\n" for q in (q1, q2, q3)))
    r = run_py([os.path.join("docs", "result_apart.py"), str(src), str(out)])
    assert r.returncode == 0 and "1 of 3 questions" in r.stdout
    assert [json.loads(line)["chunks"] for line in out.read_text().splitlines()][1:] == [q2["chunks"], q3["chunks"]]
    bad = run_py([os.path.join("docs", "result_apart.py"), str(tmp_path / "nope.jsonl"), str(out)])
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_thoughts_reads_the_last_thought_against_the_gold_walk():
    th = _docs_module("thoughts")
    questions = [{"gold": "7c8i5", "answer": 5}, {"gold": "2a3b9", "answer": 9}, {"answer": 1}]
    rows = [{"split": "test", "mode": "latent", "q": 0, "thoughts": ["", "7c8i5"], "extracted": "5", "correct": True},
            {"split": "test", "mode": "latent", "q": 1, "thoughts": ["", "2a4b6"], "extracted": "6", "correct": False},
            {"split": "dev", "mode": "latent", "q": 0, "thoughts": ["x"], "extracted": "1", "correct": False},
            {"split": "test", "mode": "latent", "q": 2, "thoughts": ["1"], "extracted": "1", "correct": True}]
    stats, n = th.phase_stats(rows, questions)
    assert n == 2 and stats == {"thought = gold": 0.5, "start right": 1.0, "operators right": 1.0,
                                "answer follows": 1.0, "accuracy": 0.5}
    questions[0]["position"], questions[1]["position"] = 0, 1  # split by the problem's place in its document
    first, n1 = th.phase_stats(rows, questions, 0)
    second, n2 = th.phase_stats(rows, questions, 1)
    assert (n1, n2) == (1, 1) and first["thought = gold"] == 1.0 and second["thought = gold"] == 0.0
